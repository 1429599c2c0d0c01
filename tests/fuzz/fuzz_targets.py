"""What each fuzzed reader is asked to do with an input, shared by the fuzz tests and the replay
of the saved regression inputs. Each target takes the input's bytes (and the seed data it edits)."""

from __future__ import annotations

import shutil
import sys
import tempfile
from pathlib import Path

from pointformer.config import ConfigError, load_config
from pointformer.data.formats import waymo_proto as pb
from pointformer.data.formats import waymo_v1, waymo_v2
from pointformer.data.formats.errors import DataFormatError
from pointformer.data.formats.nuscenes import NuScenesReader
from pointformer.data.formats.nuscenes_tables import load_tables
from pointformer.data.formats.tfrecord import iter_records
from pointformer.data.formats.waymo_objects import decode_objects

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "data"))
import tiny_waymo  # noqa: E402

NUSCENES_VERSION = "v1.0-mini"


class Seeds(dict):
    """Seed inputs (short repr: Hypothesis prints the arguments of a failing example)."""

    def __repr__(self) -> str:
        return f"Seeds({sorted(self)})"


def waymo_seeds(base: Path) -> Seeds:
    """A two-frame Waymo segment: v1 record bytes and a v2 dataset under ``base``."""
    frames = tiny_waymo.tiny_sequence("1000_0000_000_0020_000", 2, 0)
    records = [waymo_v1.encode_frame(f, compression_level=1) for f in frames]
    waymo_v2.write_segment(base / "v2", "training", frames)
    return Seeds(records=records, v2=base / "v2", context=frames[0].context_name)


def nuscenes_seed(base: Path) -> Path:
    """A two-keyframe synthetic nuScenes dataroot (deterministic tokens, so saved tables replay)."""
    import dataclasses

    from pointformer.data.formats.nuscenes_writer import write_nuscenes
    from pointformer.data.synthetic import generate_sequence, nuscenes_lidars

    spec = dataclasses.replace(nuscenes_lidars()[0], width=90)
    write_nuscenes(base, [generate_sequence(0, 2, "nuscenes", lidars=(spec,), density=0.2)])
    return base


def scratch() -> Path:
    return Path(tempfile.mkdtemp(prefix="pointformer_fuzz_"))


def read_tfrecord_frames(data: bytes) -> None:
    """The TFRecord framing, then the v1 frame decoder on each record."""
    folder = scratch()
    try:
        path = folder / "segment.tfrecord"
        path.write_bytes(data)
        for record in iter_records(path):
            waymo_v1.decode_frame(record)
    finally:
        shutil.rmtree(folder)


def decode_frame(data: bytes) -> None:
    """The protobuf decoder (``Frame``), then the full v1 frame decode (range images, labels)."""
    pb.Frame.decode(data)
    waymo_v1.decode_frame(data)


def read_v2_with(seed_root: Path, context: str, component: str, data: bytes) -> None:
    """Every frame of the v2 segment, with ``component``'s file replaced by ``data``."""
    folder = scratch()
    try:
        root = folder / "v2"
        shutil.copytree(seed_root, root)
        waymo_v2.component_path(root, "training", component, context).write_bytes(data)
        for _ in waymo_v2.read_frames(root, "training", context):
            pass
    finally:
        shutil.rmtree(folder)


def read_nuscenes_with(seed_root: Path, table: str, data: bytes) -> None:
    """The tables (``load_tables``) and every keyframe (``NuScenesReader.sample``, two sweeps),
    with ``table``'s JSON file replaced by ``data``; the LiDAR files are the seed's."""
    folder = scratch()
    try:
        root = folder / "nusc"
        shutil.copytree(seed_root / NUSCENES_VERSION, root / NUSCENES_VERSION)
        for sub in ("samples", "sweeps"):
            (root / sub).symlink_to(seed_root / sub)
        (root / NUSCENES_VERSION / f"{table}.json").write_bytes(data)
        tables = load_tables(root, NUSCENES_VERSION)
        reader = NuScenesReader(root, NUSCENES_VERSION)
        for sample in tables.tables["sample"]:
            reader.sample(sample["token"], nsweeps=2)
    finally:
        shutil.rmtree(folder)


def load_config_bytes(data: bytes) -> None:
    folder = scratch()
    try:
        (folder / "fuzzed.yaml").write_bytes(data)
        load_config(folder / "fuzzed.yaml")
    finally:
        shutil.rmtree(folder)


# The error type each reader may raise (anything else breaks the property).
ALLOWED = {
    "tfrecord": (DataFormatError,),
    "protobuf": (DataFormatError,),
    "objects": (DataFormatError,),
    "v2": (DataFormatError,),
    "nuscenes": (DataFormatError,),
    "config": (ConfigError,),
}
__all__ = ["ALLOWED", "decode_objects"]
