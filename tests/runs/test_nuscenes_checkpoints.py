"""The nuScenes models with official counterparts through the documented commands: an official-format
checkpoint (OpenPCDet layout, the reverse conversion of a random model: every official name and shape)
-> tools/convert_checkpoint.py -> tools/test.py --ckpt on the tiny synthetic nuScenes data (the devkit's
metric lines). Published widths, a reduced range (the parameters are unchanged): the released DSVT-P
and ScatterFormer, OpenPCDet's CenterPoint at 0.075 m and (with the README's --set) 0.1 m voxels, and
CenterPoint-PointPillar. Slow: about 45 s (DSVT-P) and 60 s (ScatterFormer) on a loaded 2-core machine."""

from __future__ import annotations

import os
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import torch

from pointformer.checkpoints import to_official
from pointformer.config import load_config
from pointformer.models.build import build_detector

REPO = Path(__file__).resolve().parents[2]
# Per run: the config, the half range (m) and further --set values. DSVT-P: 60 pillars of 0.3 m
# (windows 30); ScatterFormer: 80 cells of 0.3 m, windows 20 at stride 1 and 2 (80/40 cells), a 40 x
# 40 BEV at stride 2 that the DED strides (1, 2, 2) divide; CenterPoint: 160 voxels of 0.075 m (20 at
# stride 8 and 10 after SECOND's stride 2), or 0.1 m voxels for cbgs_voxel01_res3d_centerpoint.yaml
# (the README's --set); CenterPoint-PointPillar: 128 pillars of 0.2 m, BEV strides 2/2/2 -> 64/32/16.
VOXEL01 = ["voxelization.voxel_size=[0.1,0.1,0.2]", "voxelization.max_voxels=60000"]
RUNS = {
    "nuscenes_dsvt_pillar": ("nuscenes_dsvt_pillar", 9.0, []),
    "nuscenes_scatterformer": ("nuscenes_scatterformer", 12.0, []),
    "nuscenes_centerpoint": ("nuscenes_centerpoint", 6.0, []),
    "nuscenes_centerpoint_voxel01": ("nuscenes_centerpoint", 6.4, VOXEL01),
    "nuscenes_centerpoint_pillar": ("nuscenes_centerpoint_pillar", 12.8, []),
}


@pytest.mark.slow
@pytest.mark.parametrize("run_id", sorted(RUNS))
def test_convert_then_test_on_tiny_nuscenes(run_id, tiny_nuscenes, tmp_path) -> None:
    name, h, extra = RUNS[run_id]
    sets = [f"voxelization.point_cloud_range=[-{h},-{h},-5.0,{h},{h},3.0]",
            f"dataset.point_cloud_range=[-{h},-{h},-5.0,{h},{h},3.0]",
            f"model.head.post_center_range=[-{h},-{h},-10.0,{h},{h},10.0]", *extra]  # fmt: skip
    args = [a for s in sets for a in ("--set", s)]
    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        det = build_detector(load_config(f"{name}.yaml", sets))
    src = tmp_path / "official.pth"
    torch.save({"model_state": to_official(det.state_dict(), det, "openpcdet"), "epoch": 20}, src)
    out = tmp_path / "converted.pth"
    run = subprocess.run([sys.executable, "tools/convert_checkpoint.py", "--from", "openpcdet", "--cfg",
                          f"{name}.yaml", *args, str(src), str(out)],
                         cwd=REPO, capture_output=True, text=True)  # fmt: skip
    assert run.returncode == 0, run.stderr
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    run = subprocess.run([sys.executable, "tools/test.py", "--cfg", f"{name}.yaml", "--ckpt", str(out), *args,
                          "--set", f"dataset.root={tiny_nuscenes.root}", "--set", "dataset.val_split=b",
                          "--max-frames", "1", "--device", "cpu", "--no-progress", "--out-dir", str(tmp_path / "t")],
                         cwd=REPO, capture_output=True, text=True, env=env)  # fmt: skip
    assert run.returncode == 0, run.stdout + run.stderr
    assert "NDS" in run.stdout + run.stderr
