"""FlatFormer (its mmdetection3d 0.15 fork) checkpoints -> pointformer and back.

An mmcv-format state dict of the official module trees (official_mmdet3d.py), every tensor random,
is converted, loaded strictly, and the VFE, SECOND + FPN and CenterHead outputs are compared with
the written-out official forwards in float64. The head's size and heading channels are converted
from mmdetection3d 0.15's KITTI-style boxes ((w, l, h), yaw -r - pi/2), so the test checks
pointformer's outputs against the official ones transformed the same way, and the decoded heading.
"""

from __future__ import annotations

import math
import warnings

import official_mmdet3d as off
import official_openpcdet as opc
import pytest
import torch

from pointformer.checkpoints import ConversionError, to_official, to_pointformer
from pointformer.checkpoints.cli import main
from pointformer.config import load_config
from pointformer.engine.checkpoint import load_checkpoint
from pointformer.models.build import build_detector

HEADS = {"reg": (2, 2), "height": (1, 2), "dim": (3, 2), "rot": (2, 2), "vel": (2, 2), "iou": (1, 2)}


def _parts(generator) -> dict[str, torch.nn.Module]:
    parts = {
        "voxel_encoder.": off.DynamicVFE(5, [64, 128]),
        "middle_encoder.": off.FlatFormer(),
        "backbone.": off.SECOND(128, [64, 128], [3, 3], [1, 2], residual=True),
        "neck.": off.SECONDFPN([64, 128], [128, 128], [1, 2]),
        "bbox_head.": off.CenterHead(256, [3], HEADS),
    }
    return {k: opc.randomise(m, generator).double().eval() for k, m in parts.items()}


@pytest.fixture(scope="module")
def flatformer():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return build_detector(load_config("waymo_flatformer.yaml")).double().eval()


def test_flatformer_parity_and_round_trip(flatformer, generator) -> None:
    det = flatformer
    parts = _parts(generator)
    official = {p + k: v for p, m in parts.items() for k, v in m.state_dict().items()}
    converted = to_pointformer(official, det, "mmdet3d")
    assert converted.ignored == [] and converted.unfilled == [] and converted.spconv_layout is None
    det.load_state_dict(converted.state, strict=True)
    sd = det.state_dict()
    # The four orders of a block keep their positions (x, x_shift, y, y_shift).
    for k in range(4):
        key = f"middle_encoder.block_list.1.block.{k}.attn.attn.in_proj_weight"
        assert torch.equal(sd[f"backbone3d.blocks.1.{k}.attn.in_proj_weight"], official[key])
    assert torch.equal(
        sd["backbone3d.blocks.0.2.norm2.bias"], official["middle_encoder.block_list.0.block.2.norm2.bias"]
    )

    points = torch.rand(300, 5, generator=generator, dtype=torch.float64)
    points[:, :3] = points[:, :3] * 4 - 2
    vox = det.voxelize(points, torch.zeros(300, dtype=torch.long), 1)
    kept = vox.point_to_voxel >= 0
    inverse = vox.point_to_voxel[kept].long()
    size, low = det.voxel_encoder.voxel_size.double(), det.voxel_encoder.range_min.double()
    theirs = parts["voxel_encoder."](
        points[kept], inverse, vox.coords[inverse][:, [3, 2, 1]], vox.num_voxels, size, low
    )
    torch.testing.assert_close(det.voxel_encoder(points, vox).features, theirs, rtol=1e-10, atol=1e-10)

    bev = torch.randn(2, 128, 10, 12, generator=generator, dtype=torch.float64)
    ours = det.neck(det.backbone2d(bev))
    torch.testing.assert_close(ours, parts["neck."](parts["backbone."](bev)), rtol=1e-10, atol=1e-10)

    x = torch.randn(2, 256, 6, 7, generator=generator, dtype=torch.float64)
    a, b = det.head(x).tasks[0], parts["bbox_head."](x)[0]
    close = dict(rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(a.heatmap, b["heatmap"], **close)
    torch.testing.assert_close(a.center, b["reg"], **close)
    torch.testing.assert_close(a.height, b["height"], **close)
    torch.testing.assert_close(a.vel, b["vel"], **close)
    torch.testing.assert_close(a.iou, b["iou"], **close)
    # Sizes: official (log w, log l, log h) -> pointformer (log dx = log l, log dy = log w, log dz).
    torch.testing.assert_close(a.dim, b["dim"][:, [1, 0, 2]], **close)
    # Heading: the official yaw is r_k = -r - pi/2; pointformer's decoded yaw is r.
    r_kitti = torch.atan2(b["rot"][:, 0], b["rot"][:, 1])
    r_ours = torch.atan2(a.rot[:, 0], a.rot[:, 1])
    wrapped = torch.remainder(r_ours - (-r_kitti - math.pi / 2) + math.pi, 2 * math.pi) - math.pi
    assert wrapped.abs().max() < 1e-9

    back = to_official(det.state_dict(), det, "mmdet3d")
    assert back.keys() == official.keys() and all(torch.equal(back[k], v) for k, v in official.items())


def test_mmcv_file_through_the_cli(flatformer, generator, tmp_path, capsys) -> None:
    official = {p + k: v.float() for p, m in _parts(generator).items() for k, v in m.state_dict().items()}
    src = tmp_path / "flatformer.pth"
    torch.save({"state_dict": official, "meta": {"epoch": 24, "iter": 9000}}, src)
    out = tmp_path / "ours.pth"
    assert main(["--from", "mmdet3d", "--cfg", "waymo_flatformer.yaml", str(src), str(out)]) == 0
    state = load_checkpoint(out)
    assert state["converted_from"]["epoch"] == 24 and state["converted_from"]["iteration"] == 9000
    assert state["model"]["head.task_heads.0.heads.center.1.bias"].dtype == torch.float32
    back = tmp_path / "back.pth"
    assert main(["--from", "mmdet3d", "--cfg", "waymo_flatformer.yaml", "--reverse", str(out), str(back)]) == 0
    written = torch.load(back, weights_only=True)
    assert written["meta"]["iter"] == 9000
    assert all(torch.equal(written["state_dict"][k], v) for k, v in official.items())
    # An OpenPCDet file given as mmdet3d: nothing matches, every tensor is listed.
    with pytest.raises(ConversionError, match="not used by the pointformer model"):
        to_pointformer({"vfe.pfn_layers.0.linear.weight": torch.zeros(64, 11), **official}, flatformer, "mmdet3d")
