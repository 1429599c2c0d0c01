"""Fuzzed readers: every input gives a valid result or the reader's own error type.

Readers: the TFRecord framing, the protobuf decoder (Waymo ``Frame`` and the full v1 frame decode),
the evaluator's ``Objects`` ``.bin`` reader, the Waymo v2 parquet reader, the nuScenes table reader
and the config loader. Inputs: valid files with edits (``fuzz_helpers.mutated``), arbitrary bytes,
and structured damage (a parquet column of another type or with nulls, a JSON field of another
type, a config value of another type). See ``conftest.py`` for the profiles and
``test_regressions.py`` for the saved inputs.
"""

from __future__ import annotations

import io
import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml
from fuzz_helpers import Tally, check, examples, mutated
from fuzz_targets import (
    ALLOWED,
    decode_frame,
    load_config_bytes,
    read_nuscenes_with,
    read_tfrecord_frames,
    read_v2_with,
)
from hypothesis import given, settings
from hypothesis import strategies as st

from pointformer.config import CONFIG_DIR
from pointformer.data.formats import waymo_v2
from pointformer.data.formats.nuscenes_tables import TABLE_NAMES
from pointformer.data.formats.tfrecord import frame_record
from pointformer.data.formats.waymo_objects import WaymoObjects, decode_objects, encode_objects

TALLIES: dict[str, Tally] = {}


def tally(reader: str) -> Tally:
    return TALLIES.setdefault(reader, Tally(reader))


@pytest.fixture(scope="module", autouse=True)
def _report():
    yield
    for t in TALLIES.values():
        print(t)


# --- TFRecord framing + the protobuf decoder -------------------------------------------------


@settings(max_examples=examples())
@given(st.data())
def test_tfrecord_and_frame_decoder(waymo, data):
    seed = b"".join(frame_record(r) for r in waymo["records"])
    blob = data.draw(st.one_of(mutated(seed), st.binary(max_size=256)))
    tally("tfrecord+frame").add(check("tfrecord", blob, read_tfrecord_frames, ALLOWED["tfrecord"]))


@settings(max_examples=examples())
@given(st.data())
def test_protobuf_frame_decoder(waymo, data):
    # Without the framing's checksums every edit reaches the decoder.
    blob = data.draw(st.one_of(mutated(waymo["records"][0], max_edits=4), st.binary(max_size=512)))
    tally("protobuf").add(check("protobuf", blob, decode_frame, ALLOWED["protobuf"]))


# --- the evaluator's Objects .bin -------------------------------------------------------------


def _objects_seed() -> bytes:
    rng = np.random.default_rng(0)
    m = 6
    objects = WaymoObjects.from_arrays(
        ["ctx_a"] * 3 + ["ctx_b"] * 3,
        np.repeat([10, 20], 3),
        rng.normal(size=(m, 7)),
        rng.integers(1, 5, m),
        rng.uniform(0, 1, m).astype(np.float32),
        num_lidar_points_in_box=rng.integers(0, 50, m),
        ids=[f"id{i}" for i in range(m)],
        speed=rng.normal(size=(m, 3)),
    )
    return encode_objects(objects)


OBJECTS_SEED = _objects_seed()


@settings(max_examples=examples())
@given(st.one_of(mutated(OBJECTS_SEED), st.binary(max_size=256)))
def test_objects_reader(blob):
    tally("objects .bin").add(check("objects", blob, decode_objects, ALLOWED["objects"]))


# --- Waymo v2 parquet ---------------------------------------------------------------------------

COMPONENTS = ("lidar", "lidar_calibration", "lidar_pose", "vehicle_pose", "lidar_box", "stats")


def _v2_check(waymo, component: str, blob: bytes) -> str:
    return check(
        f"v2_{component}", blob, lambda b: read_v2_with(waymo["v2"], waymo["context"], component, b), ALLOWED["v2"]
    )


@settings(max_examples=examples())
@given(st.data())
def test_v2_parquet_bytes(waymo, data):
    component = data.draw(st.sampled_from(COMPONENTS))
    seed = waymo_v2.component_path(waymo["v2"], "training", component, waymo["context"]).read_bytes()
    tally("v2 parquet bytes").add(_v2_check(waymo, component, data.draw(mutated(seed))))


def _damaged_column(draw, n: int) -> pa.Array | None:
    kind = draw(st.sampled_from(["nulls", "strings", "ints", "floats", "empty_lists", "fewer_rows"]))
    if kind == "nulls":
        return None, "nulls"
    if kind == "strings":
        return pa.array([draw(st.text(max_size=4)) for _ in range(n)], pa.string()), kind
    if kind == "ints":
        return pa.array([draw(st.integers(-(2**40), 2**40)) for _ in range(n)], pa.int64()), kind
    if kind == "floats":
        return pa.array([draw(st.floats()) for _ in range(n)], pa.float64()), kind
    if kind == "empty_lists":
        return pa.array([[] for _ in range(n)], pa.list_(pa.float32())), kind
    return None, kind


@settings(max_examples=examples())
@given(st.data())
def test_v2_parquet_columns(waymo, data):
    component = data.draw(st.sampled_from(COMPONENTS))
    table = pq.read_table(waymo_v2.component_path(waymo["v2"], "training", component, waymo["context"]))
    name = data.draw(st.sampled_from(table.column_names))
    replacement, kind = _damaged_column(data.draw, table.num_rows)
    if kind == "fewer_rows":
        table = table.slice(0, data.draw(st.integers(0, max(table.num_rows - 1, 0))))
    else:
        if replacement is None:
            replacement = pa.nulls(table.num_rows, table.column(name).type)
        i = table.column_names.index(name)
        table = table.set_column(i, pa.field(name, replacement.type), replacement)
    sink = io.BytesIO()
    pq.write_table(table, sink)
    tally("v2 parquet columns").add(_v2_check(waymo, component, sink.getvalue()))


# --- nuScenes tables --------------------------------------------------------------------------

JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**63) | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=6), children, max_size=3),
    max_leaves=8,
)


@settings(max_examples=examples())
@given(st.data())
def test_nuscenes_tables(nuscenes_root, data):
    table = data.draw(st.sampled_from(TABLE_NAMES))
    text = (nuscenes_root / "v1.0-mini" / f"{table}.json").read_bytes()
    records = json.loads(text)
    how = data.draw(st.sampled_from(["field", "drop_key", "record", "bytes"]))
    if how == "bytes":
        blob = data.draw(mutated(text))
    else:
        if records:
            i = data.draw(st.integers(0, len(records) - 1))
            if how == "record":
                records[i] = data.draw(JSON)
            else:
                key = data.draw(st.sampled_from(sorted(records[i])))
                if how == "field":
                    records[i][key] = data.draw(JSON)
                else:
                    del records[i][key]
        blob = json.dumps(records).encode()
    outcome = check(f"nuscenes_{table}", blob, lambda b: read_nuscenes_with(nuscenes_root, table, b),
                    ALLOWED["nuscenes"])  # fmt: skip
    tally("nuscenes tables").add(outcome)


# --- the config loader --------------------------------------------------------------------------

BASE = CONFIG_DIR / "demo" / "waymo_flatformer_demo.yaml"
BASE_CONFIG = yaml.safe_load(BASE.read_text())
SECTION_KEYS = {
    "train": ["epochs", "batch_size", "workers", "grad_clip", "amp", "seed", "max_frames", "cbgs"],
    "eval": ["batch_size", "max_frames", "metric"],
    "optimizer": ["type", "lr", "weight_decay", "betas", "momentum"],
    "schedule": ["type", "pct_start", "div_factor", "momentum_range"],
    "voxelization": ["point_cloud_range", "voxel_size", "max_points_per_voxel", "max_voxels"],
    "dataset": ["root", "class_names", "point_features", "shuffle_points"],
    "model": ["head", "backbone3d", "voxel_encoder"],
}


@settings(max_examples=examples())
@given(st.data())
def test_config_loader(data):
    how = data.draw(st.sampled_from(["value", "section", "text"]))
    header = f"_base_: {BASE}\n"
    if how == "text":
        blob = data.draw(st.one_of(st.text(max_size=200).map(str.encode), mutated(header.encode())))
    else:
        cfg = json.loads(json.dumps(BASE_CONFIG))
        cfg.pop("_base_", None)
        section = data.draw(st.sampled_from(sorted(SECTION_KEYS)))
        if how == "section":
            cfg[section] = data.draw(JSON)
        else:
            if not isinstance(cfg.get(section), dict):
                cfg[section] = {}
            cfg[section][data.draw(st.sampled_from(SECTION_KEYS[section]))] = data.draw(JSON)
        blob = (header + yaml.safe_dump(cfg)).encode()
    tally("config").add(check("config", blob, load_config_bytes, ALLOWED["config"]))
