"""OpenPCDet checkpoints -> pointformer and back, for DSVT-P, DSVT-V, CenterPoint and ScatterFormer
(Waymo), and the released nuScenes DSVT-P and ScatterFormer with their TransFusion heads.

For each config: an official-format state dict (the official module tree written out in
official_openpcdet.py, every tensor random) is converted, loaded strictly into the pointformer
detector, and every part's output is compared with the written-out official forward in float64:
VFE, DSVT backbone (position embeddings, set attention, attention pooling), BEV backbone + neck and
the CenterHead (whose heading channels are reordered). The reverse conversion gives the official
dict back exactly. CenterPoint's sparse backbone runs spconv itself: its weights, written in the
spconv 1.x and 2.x layouts, give the same outputs after conversion.
"""

from __future__ import annotations

import copy
import warnings

import official_openpcdet as off
import pytest
import torch

from pointformer.checkpoints import to_official, to_pointformer
from pointformer.config import load_config
from pointformer.models.build import build_detector
from pointformer.models.encoders import DynamicVFE
from pointformer.structures import SparseVoxels

DSVT_CONFIGS = {
    # config: (blocks per stage, pooling strides (x, y, z), embeddings with z per stage)
    "waymo_dsvt_pillar.yaml": ([4], [], [False]),
    "waymo_dsvt_voxel.yaml": ([1, 1, 1, 1], [(1, 1, 4), (1, 1, 4), (1, 1, 2)], [True, True, True, False]),
}
WAYMO_HEADS = {"center": 2, "center_z": 1, "dim": 3, "rot": 2}


def _detector(name: str):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cfg = load_config(name)
        return build_detector(cfg).double().eval()


def _official_dsvt_model(name: str, generator) -> dict[str, torch.nn.Module]:
    blocks, strides, with_z = DSVT_CONFIGS[name]
    parts = {
        "vfe.": off.DynamicVoxelVFE(5, [192, 192]),
        "backbone_3d.": off.DSVT(192, 8, 384, blocks, strides, with_z),
        "backbone_2d.": off.BEVBackbone(192, [1, 2, 2], [1, 2, 2], [128, 128, 256], [1, 2, 4], [128] * 3, True),
        "dense_head.": off.CenterHead(
            384, [["Vehicle", "Pedestrian", "Cyclist"]], {**WAYMO_HEADS, "iou": 1}, eps=1e-3, momentum=0.01
        ),  # fmt: skip  (BN_EPS 0.001, BN_MOM 0.01)
    }
    return {k: off.randomise(m, generator).double().eval() for k, m in parts.items()}


def _official_state(parts: dict) -> dict[str, torch.Tensor]:
    state = {"global_step": torch.tensor([1234], dtype=torch.int64)}
    for prefix, module in parts.items():
        state.update(off.prefixed(prefix, module))
    return state


def _by_coords(coords: torch.Tensor, features: torch.Tensor):
    c = coords.long()
    order = torch.argsort(((c[:, 0] * 64 + c[:, 1]) * 4096 + c[:, 2]) * 4096 + c[:, 3])
    return coords[order], features[order]


def _compare_head(det, official_head, generator, channels: int) -> None:
    x = torch.randn(2, channels, 6, 7, generator=generator, dtype=torch.float64)
    ours = det.head(x).tasks
    theirs = official_head(x)
    for t, (a, b) in enumerate(zip(ours, theirs, strict=True)):
        torch.testing.assert_close(a.heatmap, b["hm"], rtol=1e-10, atol=1e-10)
        torch.testing.assert_close(a.center, b["center"], rtol=1e-10, atol=1e-10)
        torch.testing.assert_close(a.height, b["center_z"], rtol=1e-10, atol=1e-10)
        torch.testing.assert_close(a.dim, b["dim"], rtol=1e-10, atol=1e-10)
        # OpenPCDet's heading is (cos, sin); pointformer's (sin, cos).
        torch.testing.assert_close(a.rot, b["rot"].flip(1), rtol=1e-10, atol=1e-10)
        assert not torch.allclose(a.rot, b["rot"]), f"task {t}: a heading conv with equal channels tests nothing"
        if "iou" in b:
            torch.testing.assert_close(a.iou, b["iou"], rtol=1e-10, atol=1e-10)
        if "vel" in b:
            torch.testing.assert_close(a.vel, b["vel"], rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("name", sorted(DSVT_CONFIGS))
def test_dsvt_parity_and_round_trip(name: str, generator) -> None:
    det = _detector(name)
    parts = _official_dsvt_model(name, generator)
    official = _official_state(parts)
    converted = to_pointformer(official, det, "openpcdet")
    assert converted.ignored == ["global_step"] and converted.unfilled == []
    det.load_state_dict(converted.state, strict=True)
    assert len(converted.state) == len(official) - 1

    # VFE: random points, the detector's own voxelization.
    points = torch.rand(300, 5, generator=generator, dtype=torch.float64)
    points[:, :2] = points[:, :2] * 6 - 3  # a few metres around the origin: voxels with several points
    points[:, 2] = points[:, 2] * 4 - 1.5
    vox = det.voxelize(points, torch.zeros(300, dtype=torch.long), 1)
    ours = det.voxel_encoder(points, vox).features
    kept = vox.point_to_voxel >= 0
    inverse = vox.point_to_voxel[kept].long()
    cell_xyz = vox.coords[inverse][:, [3, 2, 1]]
    # The grid constants as the model holds them (float32, as OpenPCDet's float32 arithmetic rounds them).
    size, low = det.voxel_encoder.voxel_size.double(), det.voxel_encoder.range_min.double()
    theirs = parts["vfe."](points[kept], inverse, cell_xyz, vox.num_voxels, size, low)
    torch.testing.assert_close(ours, theirs, rtol=1e-10, atol=1e-10)

    # Backbone: clustered voxels on the real grid, two samples.
    grid = det.grid.shape
    rows = []
    for b in range(2):
        cells = torch.randperm(grid[0] * 30 * 30, generator=generator)[:150]
        z, rest = cells // 900, cells % 900
        rows.append(torch.stack([torch.full_like(z, b), z, 200 + rest // 30, 220 + rest % 30], 1))
    coords = torch.cat(rows).int()
    voxels = SparseVoxels(torch.randn(coords.shape[0], 192, generator=generator, dtype=torch.float64), coords, grid, 2)
    out = det.backbone3d(voxels)
    x, c, shape = parts["backbone_3d."](voxels.features, coords, grid, 2, det.backbone3d)
    assert out.spatial_shape == shape
    oc, of = _by_coords(out.coords, out.features)
    tc, tf = _by_coords(c, x)
    assert torch.equal(oc, tc)
    torch.testing.assert_close(of, tf, rtol=1e-9, atol=1e-9)

    bev = torch.randn(2, 192, 12, 12, generator=generator, dtype=torch.float64)
    torch.testing.assert_close(det.neck(det.backbone2d(bev)), parts["backbone_2d."](bev), rtol=1e-10, atol=1e-10)
    _compare_head(det, parts["dense_head."], generator, 384)

    back = to_official(det.state_dict(), det, "openpcdet", iteration=1234)
    assert back.keys() == official.keys()
    for k, v in official.items():
        assert torch.equal(back[k], v), k


def _official_centerpoint(generator) -> dict[str, torch.nn.Module]:
    parts = {
        "backbone_2d.": off.BEVBackbone(256, [5, 5], [1, 2], [128, 256], [1, 2], [256, 256], False),
        # USE_BIAS_BEFORE_NORM, and OpenPCDet's default BatchNorm2d (no BN_EPS in centerpoint.yaml)
        "dense_head.": off.CenterHead(512, [["Vehicle", "Pedestrian", "Cyclist"]], WAYMO_HEADS, bias=True),
    }
    return {k: off.randomise(m, generator).double().eval() for k, m in parts.items()}


def _krsc_to(layout: str, w: torch.Tensor) -> torch.Tensor:
    # (K, k1, k2, k3, C) written the way each spconv version stores it
    return {"KRSC": w, "RSKC": w.permute(1, 2, 3, 0, 4), "RSCK": w.permute(1, 2, 3, 4, 0)}[layout].contiguous()


@pytest.mark.parametrize("layout", ["RSCK", "RSKC", "KRSC"])
def test_centerpoint_parity_spconv_layouts(layout: str, generator, one_thread) -> None:
    det = _detector("waymo_centerpoint.yaml")
    parts = _official_centerpoint(generator)
    # The sparse backbone: OpenPCDet's VoxelResBackBone8x has pointformer's names (conv_input, conv1..4,
    # conv_out, SparseBasicBlock conv1/bn1/conv2/bn2); its values random, its convs in `layout`.
    reference = off.randomise(det.backbone3d, generator)
    backbone = {f"backbone_3d.{k}": (_krsc_to(layout, v) if v.dim() == 5 else v.clone())
                for k, v in reference.state_dict().items()}  # fmt: skip
    expected_keys = {"backbone_3d.conv_input.0.weight", "backbone_3d.conv1.0.conv1.bias",
                     "backbone_3d.conv2.0.0.weight", "backbone_3d.conv4.2.bn2.running_var",
                     "backbone_3d.conv_out.0.weight", "backbone_3d.conv_out.1.num_batches_tracked"}  # fmt: skip
    assert expected_keys <= backbone.keys()
    official = {**_official_state(parts), **backbone}
    features, coords = _distinct(generator)
    voxels = SparseVoxels(features, coords, det.grid.shape, 1)
    expected = det.backbone3d(voxels)

    converted = to_pointformer(official, det, "openpcdet")
    assert converted.spconv_layout == layout
    det.load_state_dict(converted.state, strict=True)
    got = det.backbone3d(voxels)
    assert torch.equal(got.coords, expected.coords)
    torch.testing.assert_close(got.features, expected.features, rtol=1e-10, atol=1e-10)

    bev = torch.randn(1, 256, 16, 16, generator=generator, dtype=torch.float64)
    torch.testing.assert_close(det.neck(det.backbone2d(bev)), parts["backbone_2d."](bev), rtol=1e-10, atol=1e-10)
    _compare_head(det, parts["dense_head."], generator, 512)

    back = to_official(det.state_dict(), det, "openpcdet", spconv_layout=layout, iteration=1234)
    assert back.keys() == official.keys()
    for k, v in official.items():
        assert torch.equal(back[k], v), k


def _distinct(generator) -> tuple:
    cells = torch.randperm(40 * 40 * 40, generator=generator)[:150]
    coords = torch.stack([torch.zeros_like(cells), cells // 1600, 700 + cells // 40 % 40, 700 + cells % 40], 1).int()
    return torch.randn(150, 5, generator=generator, dtype=torch.float64), coords


def test_scatterformer_parity_and_round_trip(generator, one_thread) -> None:
    """ScatterFormer (its OpenPCDet fork): every backbone_3d name and shape from the official module tree,
    the VFE (64 filters), HEDNet's cascade and the head against their official forwards."""
    det = _detector("waymo_scatterformer.yaml")
    parts = {
        "vfe.": off.DynamicVoxelVFE(5, [64, 64]),
        "backbone_3d.": off.ScatterFormerBackbone(64),
        "backbone_2d.": off.CascadeDEDBackbone(),
        "dense_head.": off.CenterHead(
            128, [["Vehicle", "Pedestrian", "Cyclist"]], {**WAYMO_HEADS, "iou": 1}, eps=1e-3, momentum=0.01
        ),  # fmt: skip
    }
    parts = {k: off.randomise(m, generator).double().eval() for k, m in parts.items()}
    official = _official_state(parts)
    converted = to_pointformer(official, det, "openpcdet")
    assert converted.spconv_layout == "KRSC" and converted.ignored == ["global_step"]
    det.load_state_dict(converted.state, strict=True)
    # Names that say what goes where (the official CWI's conv_h runs along x, conv_w along y).
    sd = det.state_dict()
    named = {
        "backbone3d.stage1.blocks.2.cwi.conv_x.weight": "backbone_3d.stage1.0.cffn_layers.2.conv_h.weight",
        "backbone3d.stage2.blocks.0.cwi.conv_y.weight": "backbone_3d.stage2.0.cffn_layers.0.conv_w.weight",
        "backbone3d.downsample.weight": "backbone_3d.stage1.2.weight",
        "backbone3d.stage2_norm.running_var": "backbone_3d.stage2.1.running_var",
        "backbone3d.pillar_pool.pos_embedding.weight": "backbone_3d.app.pos_embedding.weight",
    }
    for ours, theirs in named.items():
        assert torch.equal(sd[ours], official[theirs]), ours

    points = torch.rand(200, 5, generator=generator, dtype=torch.float64) * 4 - 2
    vox = det.voxelize(points, torch.zeros(200, dtype=torch.long), 1)
    kept = vox.point_to_voxel >= 0
    inverse = vox.point_to_voxel[kept].long()
    size, low = det.voxel_encoder.voxel_size.double(), det.voxel_encoder.range_min.double()
    theirs = parts["vfe."](points[kept], inverse, vox.coords[inverse][:, [3, 2, 1]], vox.num_voxels, size, low)
    torch.testing.assert_close(det.voxel_encoder(points, vox).features, theirs, rtol=1e-10, atol=1e-10)

    bev = torch.randn(1, 128, 12, 12, generator=generator, dtype=torch.float64)
    torch.testing.assert_close(det.neck(det.backbone2d(bev)), parts["backbone_2d."](bev), rtol=1e-10, atol=1e-10)
    _compare_head(det, parts["dense_head."], generator, 128)

    back = to_official(det.state_dict(), det, "openpcdet", iteration=1234)
    assert back.keys() == official.keys() and all(torch.equal(back[k], v) for k, v in official.items())


def test_nuscenes_centerpoint_parity_and_round_trip(generator) -> None:
    """OpenPCDet's cbgs_voxel0075_res3d_centerpoint.yaml: 6 class groups with velocity, biased convs
    before the head's default BatchNorms; the sparse backbone as Waymo's (tested above)."""
    det = _detector("nuscenes_centerpoint.yaml")
    groups = [["car"], ["truck", "construction_vehicle"], ["bus", "trailer"], ["barrier"], ["motorcycle", "bicycle"],
              ["pedestrian", "traffic_cone"]]  # fmt: skip
    parts = {
        "backbone_2d.": off.BEVBackbone(256, [5, 5], [1, 2], [128, 256], [1, 2], [256, 256], False),
        "dense_head.": off.CenterHead(512, groups, {**WAYMO_HEADS, "vel": 2}, bias=True),
    }
    parts = {k: off.randomise(m, generator).double().eval() for k, m in parts.items()}
    backbone = {f"backbone_3d.{k}": v for k, v in det.backbone3d.state_dict().items()}
    official = {**_official_state(parts), **backbone}
    det.load_state_dict(to_pointformer(official, det, "openpcdet").state, strict=True)
    bev = torch.randn(1, 256, 16, 16, generator=generator, dtype=torch.float64)
    torch.testing.assert_close(det.neck(det.backbone2d(bev)), parts["backbone_2d."](bev), rtol=1e-10, atol=1e-10)
    _compare_head(det, parts["dense_head."], generator, 512)
    back = to_official(det.state_dict(), det, "openpcdet", iteration=1234)
    assert back.keys() == official.keys() and all(torch.equal(back[k], v) for k, v in official.items())


def _compare_transfusion(det, official_head, generator, channels: int, size: int = 16) -> None:
    """Head outputs and decoded detections against the official forward and get_bboxes (float64).

    The released settings (200 queries, 41 x 41 windows) cost about a minute in float64 on one CPU
    thread; the comparison runs both heads with 40 queries and 7 x 7 windows on a 16 x 16 map
    (settings, not tensors: every weight still takes part), which keeps windows that cross the map's
    edges (the official's flat-index wrap) in the test."""
    from pointformer.ops import nms_bev

    det.head.grid = type(det.grid).from_config([-size * 0.3, -size * 0.3, -5.0, size * 0.3, size * 0.3, 3.0],
                                               det.grid.voxel_size)  # fmt: skip
    det.head.num_proposals = official_head.num_proposals = 40
    det.head.query_radius = official_head.radius = 3
    x = torch.randn(2, channels, size, size, generator=generator, dtype=torch.float64)
    ours = det.head(x)
    theirs = official_head(x)
    # The official's queries come out of argsort, ours out of topk: the same peaks, the same order
    # (random maps have no ties among their 200 best peaks).
    assert torch.equal(ours.query_labels, theirs["query_labels"])
    torch.testing.assert_close(ours.dense_heatmap, theirs["dense_heatmap"].transpose(2, 3), rtol=1e-10, atol=1e-10)
    for name in ("heatmap", "center", "height", "dim", "rot", "vel", "iou"):
        torch.testing.assert_close(getattr(ours, name), theirs[name], rtol=1e-9, atol=1e-9, msg=name)
    torch.testing.assert_close(ours.query_score, theirs["query_heatmap_score"], rtol=1e-10, atol=1e-10)
    cell = det.head.decode_settings().cell_size
    lo = det.grid.range_min
    mine = det.head.decode(ours)
    ref = off.transfusion_get_bboxes(theirs, cell, lo, det.head.decode_settings().post_center_range,
                                     nms=lambda b, s, t: nms_bev(b.float(), s.float(), t))  # fmt: skip
    for d, (boxes, scores, labels) in zip(mine, ref, strict=True):
        assert len(d) == boxes.shape[0] > 0
        key = lambda lb, sc: torch.argsort(lb.double() * 10 - sc.double())  # noqa: E731  class, then score
        a, b = key(d.labels, d.scores), key(labels, scores)
        assert torch.equal(d.labels[a], labels[b])
        torch.testing.assert_close(d.scores[a].double(), scores[b], rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(d.boxes[a].double(), boxes[b], rtol=1e-5, atol=1e-5)


def test_nuscenes_dsvt_pillar_parity_and_round_trip(generator) -> None:
    """The released nuScenes DSVT-P (DSVT repo dsvt_plain_1f_onestage_nusences.yaml) with its
    TransFusion head: every official tensor used, every pointformer tensor filled; VFE, backbone, BEV
    and the head (outputs and detections) against the official forwards."""
    det = _detector("nuscenes_dsvt_pillar.yaml")
    parts = {
        "vfe.": off.DynamicVoxelVFE(5, [128, 128]),  # DynPillarVFE: the same tensors and inputs on one z cell
        "backbone_3d.": off.DSVT(128, 8, 256, [4], [], [False]),
        "backbone_2d.": off.BEVBackbone(128, [1, 2, 2], [1, 2, 2], [128, 128, 256], [0.5, 1, 2], [128] * 3, True),
        "dense_head.": off.TransFusionHead(384),
    }
    # The head's weights small: a saturated sigmoid would tie heatmap peaks at exactly 1.
    parts = {k: off.randomise(m, generator, 0.03 if k == "dense_head." else 0.2).double().eval()
             for k, m in parts.items()}  # fmt: skip
    official = _official_state(parts)
    converted = to_pointformer(official, det, "openpcdet")
    assert converted.ignored == ["global_step"] and converted.unfilled == []
    det.load_state_dict(converted.state, strict=True)
    n_official = sum(v.numel() for k, v in official.items() if k != "global_step" and "running" not in k
                     and "num_batches" not in k)  # fmt: skip
    assert det.parameter_counts()["total"] == n_official == 7_118_559

    grid = det.grid.shape
    cells = torch.randperm(40 * 40, generator=generator)[:200]
    coords = torch.stack([torch.zeros_like(cells), torch.zeros_like(cells), 150 + cells // 40, 150 + cells % 40], 1)
    voxels = SparseVoxels(torch.randn(200, 128, generator=generator, dtype=torch.float64), coords.int(), grid, 1)
    out = det.backbone3d(voxels)
    x, c, _ = parts["backbone_3d."](voxels.features, voxels.coords, grid, 1, det.backbone3d)
    torch.testing.assert_close(_by_coords(out.coords, out.features)[1], _by_coords(c, x)[1], rtol=1e-9, atol=1e-9)
    bev = torch.randn(1, 128, 12, 12, generator=generator, dtype=torch.float64)
    torch.testing.assert_close(det.neck(det.backbone2d(bev)), parts["backbone_2d."](bev), rtol=1e-10, atol=1e-10)
    _compare_transfusion(det, parts["dense_head."], generator, 384)

    back = to_official(det.state_dict(), det, "openpcdet", iteration=1234)
    assert back.keys() == official.keys() and all(torch.equal(back[k], v) for k, v in official.items())


def test_nuscenes_scatterformer_converts(generator, one_thread) -> None:
    """ScatterFormer's nuScenes model (tools/cfgs/nuscenes_models/scatterformer.yaml): the official
    tensors (VFE [64, 64], backbone with 20 x 20 windows and the pillar pooling's (Z + 1) // 4 = 10
    z embeddings, HEDNet's cascade, the TransFusion head) convert with none unused or unfilled, and the
    head and BEV backbone match their official forwards."""
    det = _detector("nuscenes_scatterformer.yaml")
    z = det.grid.shape[0]
    parts = {
        "vfe.": off.DynamicVoxelVFE(5, [64, 64]),
        "backbone_3d.": off.ScatterFormerBackbone(64, win=20, pillar_z=(z + 1) // 4),
        "backbone_2d.": off.CascadeDEDBackbone(),
        "dense_head.": off.TransFusionHead(128),
    }
    parts = {k: off.randomise(m, generator, 0.03 if k == "dense_head." else 0.2).double().eval()
             for k, m in parts.items()}  # fmt: skip
    official = _official_state(parts)
    converted = to_pointformer(official, det, "openpcdet")
    assert converted.ignored == ["global_step"] and converted.unfilled == []
    det.load_state_dict(converted.state, strict=True)
    bev = torch.randn(1, 128, 12, 12, generator=generator, dtype=torch.float64)
    torch.testing.assert_close(det.neck(det.backbone2d(bev)), parts["backbone_2d."](bev), rtol=1e-10, atol=1e-10)
    _compare_transfusion(det, parts["dense_head."], generator, 128)
    back = to_official(det.state_dict(), det, "openpcdet", iteration=1234)
    assert back.keys() == official.keys() and all(torch.equal(back[k], v) for k, v in official.items())


# --- pillar CenterPoint (no 3D backbone) -------------------------------------------------------------


def _padded_pillars(points: torch.Tensor, vox, cap: int) -> tuple[torch.Tensor, torch.Tensor]:
    """OpenPCDet's hard-voxelization output for the kept points: ``(M, cap, F)`` with each pillar's
    points in arrival order and zero rows after them, and the ``(M,)`` counts."""
    kept = torch.nonzero(vox.point_to_voxel >= 0).squeeze(1)
    pillar = vox.point_to_voxel[kept]
    order = torch.argsort(pillar, stable=True)
    pillar, kept = pillar[order], kept[order]
    counts = torch.bincount(pillar, minlength=vox.num_voxels)
    starts = torch.cumsum(counts, 0) - counts
    slot = torch.arange(pillar.shape[0]) - starts[pillar]
    voxels = points.new_zeros(vox.num_voxels, cap, points.shape[1])
    voxels[pillar, slot] = points[kept]
    return voxels, counts


def _pillar_points(generator) -> torch.Tensor:
    """Dense clumps (pillars past the 20-point cap) and a sparse spread (pillars of 1-3 points)."""
    dense = torch.rand(500, 5, generator=generator, dtype=torch.float64)
    dense[:, :2] = dense[:, :2] * 0.9 + 0.02
    sparse = torch.rand(250, 5, generator=generator, dtype=torch.float64)
    sparse[:, :2] = sparse[:, :2] * 6 - 3
    points = torch.cat([dense, sparse])[torch.randperm(750, generator=generator)]
    points[:, 2] = points[:, 2] * 4 - 1.5  # inside both z ranges (Waymo -2..4 m, nuScenes -5..3 m)
    return points


def test_waymo_centerpoint_pillar_parity_and_round_trip(generator, one_thread) -> None:
    """OpenPCDet's centerpoint_pillar_1x.yaml: PillarVFE with its zero-padded pillars (eval and training
    BatchNorm), no 3D backbone, PointPillarScatter, BaseBEVBackbone, CenterHead at stride 1; the
    official parameter count; the dynamic-pillar sibling's tensors into the same config."""
    det = _detector("waymo_centerpoint_pillar.yaml")
    parts = {
        "vfe.": off.PillarVFE(5, [64, 64]),
        "backbone_2d.": off.BEVBackbone(64, [3, 5, 5], [1, 2, 2], [64, 128, 256], [1, 2, 4], [128] * 3, False),
        "dense_head.": off.CenterHead(384, [["Vehicle", "Pedestrian", "Cyclist"]], WAYMO_HEADS, bias=True),
    }
    parts = {k: off.randomise(m, generator).double().eval() for k, m in parts.items()}
    official = _official_state(parts)
    converted = to_pointformer(official, det, "openpcdet")
    assert converted.ignored == ["global_step"] and converted.unfilled == []
    det.load_state_dict(converted.state, strict=True)
    n_official = sum(p.numel() for m in parts.values() for p in m.parameters())
    assert det.parameter_counts()["total"] == n_official == 5_224_043 and det.parameter_counts()["backbone3d"] == 0

    points = _pillar_points(generator)
    vox = det.voxelize(points, torch.zeros(points.shape[0], dtype=torch.long), 1)
    counts = vox.num_points.long()
    assert (counts == 20).any() and (counts < 20).any() and (vox.point_to_voxel < 0).any()  # capped and padded
    padded, n = _padded_pillars(points, vox, 20)
    assert torch.equal(n, counts)
    size, low = det.voxel_encoder.voxel_size.double(), det.voxel_encoder.range_min.double()
    theirs = parts["vfe."](padded, n, vox.coords, size, low)
    ours = det.voxel_encoder(points, vox)
    torch.testing.assert_close(ours.features, theirs, rtol=1e-10, atol=1e-10)
    # The padding rows matter: without them (DynamicVFE's pooling) the pillars below the cap differ.
    unpadded = DynamicVFE.forward(det.voxel_encoder, points, vox).features
    short = counts < 20
    assert torch.allclose(unpadded[~short], theirs[~short]) and not torch.allclose(unpadded[short], theirs[short])

    # Training: the BatchNorm batch statistics over every padding row, as OpenPCDet's, and the same update.
    vfe_ours, vfe_theirs = copy.deepcopy(det.voxel_encoder).train(), copy.deepcopy(parts["vfe."]).train()
    torch.testing.assert_close(vfe_ours(points, vox).features, vfe_theirs(padded, n, vox.coords, size, low),
                               rtol=1e-9, atol=1e-9)  # fmt: skip
    for i in range(2):
        a, b = vfe_ours.layers[i][1], vfe_theirs.pfn_layers[i].norm
        torch.testing.assert_close(a.running_mean, b.running_mean, rtol=1e-9, atol=1e-12)
        torch.testing.assert_close(a.running_var, b.running_var, rtol=1e-9, atol=1e-12)

    bev = det.bev(det.backbone3d(ours))
    assert torch.equal(bev, off.pillar_scatter(ours.features, vox.coords, 1, 468, 468))
    x = torch.randn(1, 64, 16, 16, generator=generator, dtype=torch.float64)
    torch.testing.assert_close(det.neck(det.backbone2d(x)), parts["backbone_2d."](x), rtol=1e-10, atol=1e-10)
    _compare_head(det, parts["dense_head."], generator, 384)

    back = to_official(det.state_dict(), det, "openpcdet", iteration=1234)
    assert back.keys() == official.keys() and all(torch.equal(back[k], v) for k, v in official.items())

    # centerpoint_dyn_pillar_1x.yaml (DynPillarVFE: the same tensors, dynamic pillars) with the README's --set.
    dyn = build_detector(load_config("waymo_centerpoint_pillar.yaml", DYN_PILLAR_SETS)).double().eval()
    dyn.load_state_dict(to_pointformer(official, dyn, "openpcdet").state, strict=True)
    vox = dyn.voxelize(points, torch.zeros(points.shape[0], dtype=torch.long), 1)
    inverse = vox.point_to_voxel.long()
    assert (inverse >= 0).all()
    theirs = off.DynamicVoxelVFE(5, [64, 64]).double().eval()
    theirs.load_state_dict({k[4:]: v for k, v in official.items() if k.startswith("vfe.")})
    expected = theirs(points, inverse, vox.coords[inverse][:, [3, 2, 1]], vox.num_voxels, size, low)
    torch.testing.assert_close(dyn.voxel_encoder(points, vox).features, expected, rtol=1e-10, atol=1e-10)


DYN_PILLAR_SETS = ["model.voxel_encoder.type=DynamicVFE", "voxelization.max_points_per_voxel=-1",
                   "voxelization.max_voxels=-1"]  # fmt: skip


def test_nuscenes_centerpoint_pillar_parity_and_round_trip(generator, one_thread) -> None:
    """OpenPCDet's released cbgs_dyn_pp_centerpoint.yaml: DynPillarVFE, no 3D backbone,
    PointPillarScatter, BaseBEVBackbone with strides 2/2/2 and the FPN's 0.5 (a strided conv), the
    6-group CenterHead with velocity at stride 4; the official parameter count."""
    det = _detector("nuscenes_centerpoint_pillar.yaml")
    groups = [["car"], ["truck", "construction_vehicle"], ["bus", "trailer"], ["barrier"], ["motorcycle", "bicycle"],
              ["pedestrian", "traffic_cone"]]  # fmt: skip
    parts = {
        "vfe.": off.DynamicVoxelVFE(5, [64, 64]),  # DynamicPillarVFE: the same tensors and inputs on one z cell
        "backbone_2d.": off.BEVBackbone(64, [3, 5, 5], [2, 2, 2], [64, 128, 256], [0.5, 1, 2], [128] * 3, False),
        "dense_head.": off.CenterHead(384, groups, {**WAYMO_HEADS, "vel": 2}, bias=True),
    }
    parts = {k: off.randomise(m, generator).double().eval() for k, m in parts.items()}
    official = _official_state(parts)
    converted = to_pointformer(official, det, "openpcdet")
    assert converted.ignored == ["global_step"] and converted.unfilled == []
    det.load_state_dict(converted.state, strict=True)
    n_official = sum(p.numel() for m in parts.values() for p in m.parameters())
    assert det.parameter_counts()["total"] == n_official == 5_989_030

    points = _pillar_points(generator)
    vox = det.voxelize(points, torch.zeros(points.shape[0], dtype=torch.long), 1)
    inverse = vox.point_to_voxel.long()
    assert (inverse >= 0).all() and vox.num_points.max() > 20  # dynamic: no cap
    size, low = det.voxel_encoder.voxel_size.double(), det.voxel_encoder.range_min.double()
    theirs = parts["vfe."](points, inverse, vox.coords[inverse][:, [3, 2, 1]], vox.num_voxels, size, low)
    ours = det.voxel_encoder(points, vox)
    torch.testing.assert_close(ours.features, theirs, rtol=1e-10, atol=1e-10)
    assert torch.equal(det.bev(det.backbone3d(ours)), off.pillar_scatter(ours.features, vox.coords, 1, 512, 512))
    x = torch.randn(1, 64, 16, 16, generator=generator, dtype=torch.float64)
    torch.testing.assert_close(det.neck(det.backbone2d(x)), parts["backbone_2d."](x), rtol=1e-10, atol=1e-10)
    _compare_head(det, parts["dense_head."], generator, 384)

    back = to_official(det.state_dict(), det, "openpcdet", iteration=1234)
    assert back.keys() == official.keys() and all(torch.equal(back[k], v) for k, v in official.items())
