"""Replays the inputs saved under ``regressions/<reader>/`` (found by fuzzing, see conftest.py):
each must give a valid result or the reader's own error type, as in the fuzz tests. The folder
name says the reader: ``tfrecord``, ``protobuf``, ``objects``, ``config``, ``v2_<component>``
(that component's parquet file), ``nuscenes_<table>`` (that table's JSON file)."""

from __future__ import annotations

import pytest
from fuzz_helpers import REGRESSIONS
from fuzz_targets import (
    ALLOWED,
    decode_frame,
    decode_objects,
    load_config_bytes,
    read_nuscenes_with,
    read_tfrecord_frames,
    read_v2_with,
)

INPUTS = sorted(REGRESSIONS.glob("*/*.bin"))


def test_the_corpus_is_there():
    # The inputs fuzzing found in the change that added the fuzzers (issue 18); a test that
    # passes on an empty folder would hide a lost corpus.
    assert len(INPUTS) >= 7, INPUTS


@pytest.mark.parametrize("path", INPUTS, ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_saved_input(path, waymo, nuscenes_root):
    reader = path.parent.name
    data = path.read_bytes()
    if reader.startswith("v2_"):
        kind, run = "v2", lambda: read_v2_with(waymo["v2"], waymo["context"], reader[3:], data)
    elif reader.startswith("nuscenes_"):
        kind, run = "nuscenes", lambda: read_nuscenes_with(nuscenes_root, reader[len("nuscenes_") :], data)
    else:
        targets = {"tfrecord": read_tfrecord_frames, "protobuf": decode_frame, "objects": decode_objects,
                   "config": load_config_bytes}  # fmt: skip
        kind, run = reader, lambda: targets[reader](data)
    try:
        run()
    except ALLOWED[kind]:
        pass
