"""The ``detector`` benchmark's cross-model comparison: on one frame (the same points for every
config), each config's 3D backbone forward and whole-network inference, against a baseline config's
(by default CenterPoint's sparse-convolution ``VoxelResBackBone8x``, ``waymo_centerpoint.yaml``).

Each config crops the frame to its own range and voxelizes it with its own grid, so the models see
the same points but different voxels (FlatFormer and DSVT-P: 0.32 m pillars; DSVT-V and
ScatterFormer: 0.32 x 0.32 x 0.1875 m voxels; CenterPoint: 0.1 x 0.1 x 0.15 m): the comparison is
of the published models on one scene, as their papers compare them, not of equal voxel counts.

The 3D backbone row calls ``detector.backbone3d`` on a fresh copy of the config's encoded voxels
(its voxel encoder's output, computed once): nothing cached, so partitions (FlatFormer's orders,
DSVT's sets) and spconv's index pairs are built inside every call, as in ``model(batch)``. The
configs' calls of a row are timed interleaved, round by round, so a loaded machine slows them alike.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from pointformer.benchmarks.core import Report, Row, RunConfig, load_average, load_note, with_speedups
from pointformer.benchmarks.detector import Stage, _inference_call, _reduced_note, load_model, time_rounds, variants
from pointformer.config import Config, load_config
from pointformer.data.collate import FrameBatch
from pointformer.models.detector import Detector
from pointformer.runs.synthetic_frame import BenchFrame, make_frame
from pointformer.structures import SparseVoxels

DEFAULT_BASELINE = "waymo_centerpoint.yaml"
FASTER_NOTE = "speedup = the baseline's median / the row's median (above 1: faster than the baseline)"


@dataclass(frozen=True)
class Contender:
    """One config of the comparison: its name (the config file's stem), model, frame and encoded voxels."""

    name: str
    conf: Config
    model: Detector
    frame: BenchFrame
    batch: FrameBatch
    encoded: SparseVoxels

    @property
    def backbone(self) -> str:
        return type(self.model.backbone3d).__name__

    def fresh_voxels(self) -> SparseVoxels:
        """The encoded voxels without any cached partition or index pairs."""
        v = self.encoded
        return SparseVoxels(v.features, v.coords, v.spatial_shape, v.batch_size, v.stride)


def contender(config: str, overrides: Sequence[str], quick: bool, frame_kind: str, device: torch.device) -> Contender:
    """``config`` (with ``--set`` style ``overrides``) built (seed 0 weights, eval mode) with its frame."""
    conf = load_config(config, overrides)
    frame = make_frame(conf, quick, kind=frame_kind)
    batch = frame.batch.to(device)
    model = load_model(conf, device)
    with torch.no_grad():
        encoded = model.encode_voxels(batch)
    name = Path(conf.path or config).stem
    return Contender(name, conf, model, frame, batch, encoded)


def _grid(c: Contender) -> str:
    g = c.conf.grid
    z, y, x = g.shape
    size = " x ".join(f"{v:g}" for v in g.voxel_size)
    r = g.point_cloud_range
    return f"{x} x {y} x {z} voxels of {size} m over x {r[0]:g}..{r[3]:g}, z {r[2]:g}..{r[5]:g}"


def run_comparison(
    cfg: RunConfig,
    quick: bool,
    configs: Mapping[str, Sequence[str]],
    baseline: str = DEFAULT_BASELINE,
    frame_kind: str = "raycast",
) -> Report:
    """Rows of each config's 3D backbone forward and inference total (``model(batch)``, eval) on
    one frame, with speedups against ``baseline`` (a key of ``configs``: config -> its overrides).
    Native ops only (fp32; on CUDA also bf16 autocast)."""
    if baseline not in configs:
        raise ValueError(f"baseline {baseline!r} is not among the compared configs {list(configs)}")
    load_before = load_average()
    order = [baseline] + [c for c in configs if c != baseline]
    contenders = [contender(c, configs[c], quick, frame_kind, cfg.device) for c in order]
    # A row times every config once per round: its budget grows with them.
    row_cfg = dataclasses.replace(cfg, budget_s=cfg.budget_s * len(contenders))
    base = contenders[0]
    report = Report()

    def backbone_call(c: Contender) -> Callable[[], object]:
        return lambda: c.model.backbone3d(c.fresh_voxels())

    def inference_call(c: Contender) -> Callable[[], object]:
        return lambda: c.model(c.batch)

    cases = (
        ("3D backbone", backbone_call, f"{base.backbone}'s"),
        ("inference total", inference_call, f"{base.name}'s"),
    )
    for title, call, whose in cases:
        for variant in variants(cfg.device, reference=False):
            fns = [_inference_call(Stage(title, call(c)), variant, cfg.device) for c in contenders]
            timings = time_rounds(fns, row_cfg)
            rows = []
            for c, timing in zip(contenders, timings, strict=True):
                ratio = timing.median_ms / timings[0].median_ms
                notes = [f"latency {ratio:.2f}x {whose}" if c is not base else "baseline latency",
                         f"{c.encoded.num_voxels} voxels in", _reduced_note(timing)]  # fmt: skip
                case = f"{title}: {c.backbone} ({c.name})"
                rows.append(Row(case, variant.name, timing, "; ".join(n for n in notes if n)))
            report.rows += with_speedups(rows, baseline=0)

    report.footnotes += _footnotes(contenders, cfg, quick, load_before)
    return report


def _footnotes(contenders: Sequence[Contender], cfg: RunConfig, quick: bool, load: float | None) -> list[str]:
    base = contenders[0]
    frame = base.frame
    source = (
        "one frame ray-cast by `pointformer.data.synthetic` (`generate_sequence(0, 1, 'waymo')`, five lasers, two "
        f"returns, {'an eighth of the azimuth columns (--quick)' if quick else 'full resolution'})"
        if frame.kind == "raycast"
        else "one `make_lidar_frame` frame (seed 0, points scattered with 1/r range density)"
    )
    per_config = "; ".join(
        f"{c.name}: {c.batch.points.shape[0]} points inside its range, {c.encoded.num_voxels} voxels ({_grid(c)})"
        for c in contenders
    )
    return [
        f"Input (`--frame {frame.kind}`): {source}, {frame.raw_points} points: the same points for every config. "
        "Each config crops them to its own range and voxelizes them with its own grid, so the models see the same "
        f"scene through different voxels: {per_config}.",
        "Weights random from seed 0, eval mode, `torch.no_grad()`, batch of one frame. '3D backbone' = "
        "`detector.backbone3d` on the config's own voxel-encoder output (computed once) in a fresh `SparseVoxels` "
        "(nothing cached: partitions, sets and spconv index pairs are built inside every call, as in `model(batch)`); "
        "'inference total' = `model(batch)` (voxelize to decode + NMS; with random weights every class fills its "
        "`pre_max_sizes`, NMS's worst case, see the per-config sections).",
        f"Baseline: {base.name} ({base.backbone}). {FASTER_NOTE}; the notes give the latency ratio (the row's median "
        "/ the baseline's). The configs of a row are timed interleaved, round by round; native ops, fp32"
        + (", and bf16 autocast rows on CUDA." if cfg.device.type == "cuda" else " (bf16 autocast rows: CUDA only)."),
        "The FlatFormer paper's claim (1.4x faster than CenterPoint) is a GPU figure; on a CPU the sparse "
        "convolutions and the attention kernels weigh differently, so these rows do not test it. GPU rows await a "
        "lent GPU (`--device cuda`).",
        f"Time budget {cfg.budget_s:g} s per config in a row (the row's configs run together).",
        load_note(load),
    ]
