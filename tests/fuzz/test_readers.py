"""Fuzzed readers: every input gives a valid result or the reader's own error type.

Readers: the TFRecord framing, the protobuf decoder (Waymo ``Frame`` and the full v1 frame decode),
the evaluator's ``Objects`` ``.bin`` reader, the Waymo v2 parquet reader, the nuScenes table reader
and the config loader. Inputs: valid files with edits (``fuzz_helpers.mutated``), arbitrary bytes,
and structured damage (a parquet column of another type or with nulls, a JSON field of another
type, a config value of another type). See ``conftest.py`` for the profiles and
``test_regressions.py`` for the saved inputs.
"""

from __future__ import annotations

import json
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml
from fuzz_helpers import Tally, check, examples, mutated
from hypothesis import given, settings
from hypothesis import strategies as st

from pointformer.config import CONFIG_DIR, ConfigError, load_config
from pointformer.data.formats import waymo_proto as pb
from pointformer.data.formats import waymo_v1, waymo_v2
from pointformer.data.formats.errors import DataFormatError
from pointformer.data.formats.nuscenes import NuScenesReader
from pointformer.data.formats.nuscenes_tables import TABLE_NAMES, load_tables
from pointformer.data.formats.tfrecord import frame_record, iter_records
from pointformer.data.formats.waymo_objects import WaymoObjects, decode_objects, encode_objects

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "data"))
import tiny_waymo  # noqa: E402

TALLIES: dict[str, Tally] = {}


def tally(reader: str) -> Tally:
    return TALLIES.setdefault(reader, Tally(reader))


@pytest.fixture(scope="module", autouse=True)
def _report():
    yield
    for t in TALLIES.values():
        print(t)


class Seeds(dict):
    """Seed inputs (short repr: Hypothesis prints the arguments of a failing example)."""

    def __repr__(self) -> str:
        return f"Seeds({sorted(self)})"


@pytest.fixture(scope="module")
def waymo(tmp_path_factory) -> Seeds:
    """A two-frame Waymo segment: v1 record bytes and a v2 dataset."""
    base = tmp_path_factory.mktemp("fuzz_waymo")
    frames = tiny_waymo.tiny_sequence("1000_0000_000_0020_000", 2, 0)
    records = [waymo_v1.encode_frame(f, compression_level=1) for f in frames]
    waymo_v2.write_segment(base / "v2", "training", frames)
    return Seeds(records=records, v2=base / "v2", context=frames[0].context_name)


def _scratch() -> Path:
    return Path(tempfile.mkdtemp(prefix="pointformer_fuzz_"))


# --- TFRecord framing + the protobuf decoder -------------------------------------------------


def _read_tfrecord_frames(data: bytes) -> None:
    folder = _scratch()
    try:
        path = folder / "segment.tfrecord"
        path.write_bytes(data)
        for record in iter_records(path):
            waymo_v1.decode_frame(record)
    finally:
        shutil.rmtree(folder)


@settings(max_examples=examples())
@given(st.data())
def test_tfrecord_and_frame_decoder(waymo, data):
    seed = b"".join(frame_record(r) for r in waymo["records"])
    blob = data.draw(st.one_of(mutated(seed), st.binary(max_size=256)))
    tally("tfrecord+frame").add(check("tfrecord", blob, _read_tfrecord_frames, (DataFormatError,)))


@settings(max_examples=examples())
@given(st.data())
def test_protobuf_frame_decoder(waymo, data):
    # Without the framing's checksums every edit reaches the decoder.
    blob = data.draw(st.one_of(mutated(waymo["records"][0], max_edits=4), st.binary(max_size=512)))

    def run(b: bytes) -> None:
        pb.Frame.decode(b)
        waymo_v1.decode_frame(b)

    tally("protobuf").add(check("protobuf", blob, run, (DataFormatError,)))


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
    tally("objects .bin").add(check("objects", blob, decode_objects, (DataFormatError,)))


# --- Waymo v2 parquet ---------------------------------------------------------------------------


def _copy_v2(src: Path) -> Path:
    dst = _scratch() / "v2"
    shutil.copytree(src, dst)
    return dst


def _read_v2(root: Path, context: str) -> None:
    for _ in waymo_v2.read_frames(root, "training", context):
        pass


COMPONENTS = ("lidar", "lidar_calibration", "lidar_pose", "vehicle_pose", "lidar_box", "stats")


@settings(max_examples=examples())
@given(st.data())
def test_v2_parquet_bytes(waymo, data):
    component = data.draw(st.sampled_from(COMPONENTS))
    root = _copy_v2(waymo["v2"])
    try:
        path = waymo_v2.component_path(root, "training", component, waymo["context"])
        blob = data.draw(mutated(path.read_bytes()))
        path.write_bytes(blob)
        outcome = check(f"v2_{component}", blob, lambda _: _read_v2(root, waymo["context"]), (DataFormatError,))
        tally("v2 parquet bytes").add(outcome)
    finally:
        shutil.rmtree(root.parent)


def _damaged_column(draw, column: pa.ChunkedArray) -> pa.Array:
    n = len(column)
    kind = draw(st.sampled_from(["nulls", "strings", "ints", "floats", "empty_lists", "drop_rows"]))
    if kind == "nulls":
        return pa.nulls(n, column.type)
    if kind == "strings":
        return pa.array([draw(st.text(max_size=4)) for _ in range(n)], pa.string())
    if kind == "ints":
        return pa.array([draw(st.integers(-(2**40), 2**40)) for _ in range(n)], pa.int64())
    if kind == "floats":
        return pa.array([draw(st.floats(allow_nan=True, allow_infinity=True)) for _ in range(n)], pa.float64())
    if kind == "empty_lists":
        return pa.array([[] for _ in range(n)], pa.list_(pa.float32()))
    return None


@settings(max_examples=examples())
@given(st.data())
def test_v2_parquet_columns(waymo, data):
    component = data.draw(st.sampled_from(COMPONENTS))
    root = _copy_v2(waymo["v2"])
    try:
        path = waymo_v2.component_path(root, "training", component, waymo["context"])
        table = pq.read_table(path)
        name = data.draw(st.sampled_from(table.column_names))
        replacement = _damaged_column(data.draw, table.column(name))
        if replacement is None:  # fewer rows
            table = table.slice(0, data.draw(st.integers(0, max(table.num_rows - 1, 0))))
        else:
            i = table.column_names.index(name)
            table = table.set_column(i, pa.field(name, replacement.type), replacement)
        pq.write_table(table, path)
        outcome = check(
            f"v2_{component}", path.read_bytes(), lambda _: _read_v2(root, waymo["context"]), (DataFormatError,)
        )
        tally("v2 parquet columns").add(outcome)
    finally:
        shutil.rmtree(root.parent)


# --- nuScenes tables --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def nuscenes_root(tmp_path_factory) -> Path:
    import dataclasses

    from pointformer.data.formats.nuscenes_writer import write_nuscenes
    from pointformer.data.synthetic import generate_sequence, nuscenes_lidars

    spec = dataclasses.replace(nuscenes_lidars()[0], width=90)
    root = tmp_path_factory.mktemp("fuzz_nusc")
    write_nuscenes(root, [generate_sequence(0, 2, "nuscenes", lidars=(spec,), density=0.2)])
    return root


JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**63) | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=6), children, max_size=3),
    max_leaves=8,
)


def _read_nuscenes(root: Path) -> None:
    tables = load_tables(root, "v1.0-mini")
    reader = NuScenesReader(root, "v1.0-mini")
    for sample in tables.tables["sample"][:2]:
        reader.sample(sample["token"], nsweeps=2)


@settings(max_examples=examples())
@given(st.data())
def test_nuscenes_tables(nuscenes_root, data):
    folder = _scratch()
    root = folder / "nusc"
    shutil.copytree(nuscenes_root / "v1.0-mini", root / "v1.0-mini")
    # The LiDAR files stay where they are: link the folders, the tables are what is fuzzed.
    for sub in ("samples", "sweeps"):
        (root / sub).symlink_to(nuscenes_root / sub)
    try:
        table = data.draw(st.sampled_from(TABLE_NAMES))
        path = root / "v1.0-mini" / f"{table}.json"
        records = json.loads(path.read_text())
        how = data.draw(st.sampled_from(["field", "drop_key", "record", "bytes"]))
        if how == "bytes":
            path.write_bytes(data.draw(mutated(path.read_bytes())))
        elif records:
            i = data.draw(st.integers(0, len(records) - 1))
            if how == "record":
                records[i] = data.draw(JSON)
            else:
                key = data.draw(st.sampled_from(sorted(records[i])))
                if how == "field":
                    records[i][key] = data.draw(JSON)
                else:
                    del records[i][key]
            path.write_text(json.dumps(records))
        outcome = check(f"nuscenes_{table}", path.read_bytes(), lambda _: _read_nuscenes(root), (DataFormatError,))
        tally("nuscenes tables").add(outcome)
    finally:
        shutil.rmtree(folder)


# --- the config loader --------------------------------------------------------------------------

BASE_CONFIG = yaml.safe_load((CONFIG_DIR / "demo" / "waymo_flatformer_demo.yaml").read_text())
SECTION_KEYS = {
    "train": ["epochs", "batch_size", "workers", "grad_clip", "amp", "seed", "max_frames", "cbgs"],
    "eval": ["batch_size", "max_frames", "metric"],
    "optimizer": ["type", "lr", "weight_decay", "betas", "momentum"],
    "schedule": ["type", "pct_start", "div_factor", "momentum_range"],
    "voxelization": ["point_cloud_range", "voxel_size", "max_points_per_voxel", "max_voxels"],
    "dataset": ["root", "class_names", "point_features", "shuffle_points"],
    "model": ["head", "backbone3d", "voxel_encoder"],
}


def _load_config_text(text: str) -> None:
    folder = _scratch()
    try:
        (folder / "fuzzed.yaml").write_text(text)
        load_config(folder / "fuzzed.yaml")
    finally:
        shutil.rmtree(folder)


@settings(max_examples=examples())
@given(st.data())
def test_config_loader(data):
    how = data.draw(st.sampled_from(["value", "section", "text"]))
    if how == "text":
        base = "_base_: " + str(CONFIG_DIR / "demo" / "waymo_flatformer_demo.yaml") + "\n"
        text = data.draw(st.one_of(st.text(max_size=200), mutated(base.encode()).map(lambda b: b.decode("latin-1"))))
    else:
        cfg = json.loads(json.dumps(BASE_CONFIG))
        cfg.pop("_base_", None)
        section = data.draw(st.sampled_from(sorted(SECTION_KEYS)))
        if how == "section":
            cfg[section] = data.draw(JSON)
        else:
            cfg.setdefault(section, {})
            if not isinstance(cfg[section], dict):
                cfg[section] = {}
            cfg[section][data.draw(st.sampled_from(SECTION_KEYS[section]))] = data.draw(JSON)
        text = "_base_: " + str(CONFIG_DIR / "demo" / "waymo_flatformer_demo.yaml") + "\n" + yaml.safe_dump(cfg)
    tally("config").add(check("config", text.encode("utf-8", "surrogatepass"), lambda _: _load_config_text(text),
                              (ConfigError,)))  # fmt: skip
