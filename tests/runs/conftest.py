"""A tiny synthetic nuScenes dataroot (two scenes of 3 keyframes, splits ``a`` and ``b`` in
``splits.json``) converted with the real converter (9 listed sweeps: the 10-sweep input)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

VERSION = "v1.0-mini"
SCENES = ("scene-0103", "scene-0916")
TRAIN, VAL = "a", "b"


@dataclasses.dataclass(frozen=True)
class TinyNuScenes:
    dataroot: Path  # raw nuScenes tables and sweeps
    root: Path  # the converted layout


@pytest.fixture(scope="session")
def tiny_nuscenes(tmp_path_factory) -> TinyNuScenes:
    from pointformer.data.convert.nuscenes import convert_nuscenes
    from pointformer.data.formats.nuscenes_writer import write_nuscenes
    from pointformer.data.synthetic import generate_sequence, nuscenes_lidars

    base = tmp_path_factory.mktemp("tiny_nuscenes")
    spec = dataclasses.replace(nuscenes_lidars()[0], width=240)
    seqs = [generate_sequence(seed, 21, "nuscenes", lidars=(spec,), density=0.5) for seed in (5, 6)]
    write_nuscenes(base / "raw", seqs, version=VERSION, scene_names=SCENES,
                   splits={TRAIN: [SCENES[0]], VAL: [SCENES[1]]})  # fmt: skip
    convert_nuscenes(base / "raw", base / "converted", version=VERSION, splits=(TRAIN, VAL), sweeps=9,
                     gt_database_splits=(TRAIN,), progress=False)  # fmt: skip
    return TinyNuScenes(base / "raw", base / "converted")


@pytest.fixture(scope="session")
def tiny_overrides(tiny_nuscenes):
    """``overrides(half_range=80.0)``: ``--set`` values pointing ``nuscenes_flatformer.yaml`` at the
    tiny data (splits a/b, the gt database of a) with the dataset's range ``+-half_range`` m (80:
    every labelled box)."""

    def overrides(half_range: float = 80.0) -> list[str]:
        r, d = half_range, tiny_nuscenes
        return [f"dataset.root={d.root}", f"dataset.train_split={TRAIN}", f"dataset.val_split={VAL}",
                f"dataset.gt_sampling.database_split={TRAIN}", f"dataset.point_cloud_range=[-{r},-{r},-5,{r},{r},3]",
                "train.workers=0"]  # fmt: skip

    return overrides


@pytest.fixture(scope="session")
def reduced_flatformer(tiny_overrides):
    """``overrides(half_range)``: ``tiny_overrides`` plus a ``+-half_range`` m grid and the demo's
    narrower FlatFormer (the same parts: one block of the four orders, 9 x 9 windows, groups of 64;
    the 2D backbone and head at stride 2) for ``nuscenes_flatformer.yaml``."""

    def overrides(half_range: float) -> list[str]:
        h = half_range
        return tiny_overrides(h) + [
            f"voxelization.point_cloud_range=[-{h},-{h},-5,{h},{h},3]",
            f"model.head.post_center_range=[-{h},-{h},-10,{h},{h},10]",
            "model.voxel_encoder.feat_channels=[32]", "model.backbone3d.num_heads=4", "model.backbone3d.num_blocks=1",
            "model.backbone3d.window_shape=[9,9]", "model.backbone3d.group_size=64", "model.backbone3d.ffn_channels=64",
            "model.backbone2d.out_channels=[32,64]", "model.backbone2d.strides=[2,2]",
            "model.backbone2d.layer_nums=[1,1]", "model.neck.out_channels=[32,32]", "model.head.out_size_factor=2",
            "model.head.shared_channels=16", "model.head.head_channels=16",
        ]  # fmt: skip

    return overrides
