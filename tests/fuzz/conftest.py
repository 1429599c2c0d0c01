"""Fuzzing of the input readers with Hypothesis (property: every input gives a valid result or the
reader's own error type; never another exception, a hang or a crash).

Two profiles, chosen by ``POINTFORMER_FUZZ`` (``make test`` uses the first, ``make fuzz`` the second):

* ``ci`` (default): derandomized (the same inputs every run, so CI is reproducible), few examples
  per reader, about 60 s for all readers on a 2-core machine;
* ``long``: random, many more examples (``POINTFORMER_FUZZ_EXAMPLES``, default 2000 per reader);
  an input that breaks the property is saved under ``tests/fuzz/regressions/<reader>/`` (see
  ``fuzz_helpers.check``), where ``test_regressions.py`` replays it in every later run.
"""

from __future__ import annotations

import os

import pytest
from fuzz_targets import nuscenes_seed, waymo_seeds
from hypothesis import HealthCheck, settings

_COMMON = {"deadline": None, "database": None, "suppress_health_check": [HealthCheck.too_slow,
           HealthCheck.function_scoped_fixture, HealthCheck.data_too_large, HealthCheck.filter_too_much]}  # fmt: skip
settings.register_profile("ci", derandomize=True, print_blob=True, **_COMMON)
settings.register_profile(
    "long", max_examples=int(os.environ.get("POINTFORMER_FUZZ_EXAMPLES", "2000")), print_blob=True, **_COMMON
)
settings.load_profile(os.environ.get("POINTFORMER_FUZZ", "ci"))


@pytest.fixture(scope="session")
def waymo(tmp_path_factory):
    """Seed Waymo inputs (``fuzz_targets.waymo_seeds``)."""
    return waymo_seeds(tmp_path_factory.mktemp("fuzz_waymo"))


@pytest.fixture(scope="session")
def nuscenes_root(tmp_path_factory):
    """A seed nuScenes dataroot (``fuzz_targets.nuscenes_seed``)."""
    return nuscenes_seed(tmp_path_factory.mktemp("fuzz_nusc"))
