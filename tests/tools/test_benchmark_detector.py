"""tools/benchmark.py detector: every stage of the demo detector gets its rows; stages a model
lacks are skipped; the per-row time budget of ``time_rounds``."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import torch
from torch import nn

from pointformer.benchmarks.core import RunConfig
from pointformer.benchmarks.detector import _present, detector_stages, load_model, time_rounds
from pointformer.config import load_config
from pointformer.models.necks.identity import IdentityNeck
from pointformer.runs.synthetic_frame import make_frame

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "tools" / "benchmark.py"
DEMO = "configs/demo/waymo_flatformer_demo.yaml"
HEADING = "## detector waymo_flatformer_demo (cpu)"
STAGES = ("voxelize", "voxel encoder (DynamicVFE)", "partition (FlatFormer, 4 layouts)", "3D backbone (FlatFormer)",
          "BEV (ScatterToBEV)", "2D backbone (SECOND)", "neck (SECONDFPN)", "head (CenterHead)", "decode + NMS",
          "inference total", "training step")  # fmt: skip
FAST = ("2D backbone (SECOND)", "neck (SECONDFPN)", "head (CenterHead)", "inference total")  # + a fast-path row


def _cells(line: str) -> list[str]:
    return [c.strip() for c in line.strip().strip("|").split("|")]


def test_detector_quick_times_every_stage_native_and_reference(tmp_path: Path) -> None:
    path = tmp_path / "bench.md"
    # Few NMS candidates: with random weights every class would fill pre_max_sizes (2048/1024/1024), and the
    # reference NMS of that many boxes takes over a minute.
    command = [sys.executable, str(SCRIPT), "detector", "--cfg", DEMO, "--quick", "--repeats", "1", "--warmup", "0",
               "--set", "model.head.pre_max_sizes=[48,24,24]", "--write", str(path)]  # fmt: skip
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    text = path.read_text()
    assert text.count(HEADING) == 1
    rows = [_cells(line) for line in text.splitlines() if line.startswith("| ") and not line.startswith("| case")]
    for stage in STAGES:
        mine = [r for r in rows if r[0].startswith(stage)]
        # on the CPU the fast path runs with the caching allocator; the whole inference and the training
        # step also run eager with the cache alone (the split of the gain)
        cached = ["pointformer native, CPU cache"] if stage in ("inference total", "training step") else []
        fast = ["pointformer native, fast path, CPU cache"] if stage in FAST else []
        # the training step also runs with the head's branches one by one (before their stacking)
        unstacked = ["pointformer native, head branches one by one"] if stage == "training step" else []
        assert [r[1] for r in mine] == ["pure-PyTorch reference", "pointformer native", *cached, *fast, *unstacked]
        assert mine[0][4] == "baseline" and all(r[4].endswith("x") for r in mine[1:]), stage
        assert all(float(r[2]) > 0 for r in mine), stage
        for row in mine[2 : len(mine) - len(unstacked)]:  # the fast path's / the cache's speedup over native eager
            assert row[5].startswith("**") and "x native eager**" in row[5], stage
        for row in mine[len(mine) - len(unstacked) :]:  # native eager's speedup over the unstacked head
            assert row[5].startswith("**native eager (stacked branches) ") and "x this**" in row[5], stage
    parts = [r for r in rows if r[0].startswith("↳")]  # the 3D backbone's parts, per variant
    assert [r[0] for r in parts[::2]] == ["↳ blocks (4 x PostNormAttentionLayer)", "↳ rest (outside these parts)"]
    assert len(rows) == 2 * len(STAGES) + len(FAST) + 3 + len(parts)
    decode = next(r for r in rows if r[0] == "decode + NMS")
    assert "~96 candidates into NMS" in decode[5]  # every class fills its (overridden) cap
    assert "groups per layout" in next(r for r in rows if r[0].startswith("partition"))[5]
    assert "Load average (1 min)" in text and "pre_max_sizes=[48,24,24]" in text


def test_stages_skip_a_missing_3d_backbone() -> None:
    conf = load_config(DEMO)
    frame = make_frame(conf, quick=True)
    model = load_model(conf, torch.device("cpu"))
    with torch.no_grad():
        full = [s.case for s in detector_stages(model, frame.batch)]
        model.backbone3d = nn.Identity()  # VFE width = FlatFormer width: the detector still runs
        reduced = [s.case for s in detector_stages(model, frame.batch)]
    assert full[2:4] == ["partition (FlatFormer, 4 layouts)", "3D backbone (FlatFormer)"]
    assert reduced == full[:2] + full[4:]
    assert not _present(IdentityNeck(64)) and not _present(nn.Identity()) and _present(model.neck)
    assert not frame.random_labels and frame.batch.boxes.shape[0] > 0
    assert frame.batch.points.shape[1] == 5 and float(frame.batch.points[:, 3].abs().max()) < 1.0  # tanh

    scatter = make_frame(conf, quick=True, kind="scatter")
    assert scatter.random_labels and scatter.batch.boxes.shape[0] > 0
    assert int(scatter.batch.labels.max()) < 3 and scatter.batch.points.shape == (scatter.batch.points.shape[0], 5)


def _counting(calls: list[str], name: str, seconds: float = 0.0):
    def fn() -> None:
        calls.append(name)
        if seconds:
            import time

            time.sleep(seconds)

    return fn


def test_time_rounds_interleaves_and_respects_the_budget() -> None:
    cpu = torch.device("cpu")
    calls: list[str] = []
    timings = time_rounds([_counting(calls, "a"), _counting(calls, "b")], RunConfig(cpu, repeats=3, warmup=2))
    assert calls == ["a", "b"] * 5 and [t.repeats for t in timings] == [3, 3] and not timings[0].reduced

    calls.clear()  # rounds of ~20 ms against a 50 ms budget: no warm-up, the first round and one more
    slow = RunConfig(cpu, repeats=5, warmup=2, budget_s=0.05)
    timings = time_rounds([_counting(calls, "a", 0.01), _counting(calls, "b", 0.01)], slow)
    assert calls == ["a", "b"] * 2 and [t.repeats for t in timings] == [2, 2] and timings[0].reduced

    calls.clear()  # one round over the budget: it is the only sample
    tight = RunConfig(cpu, repeats=5, warmup=2, budget_s=0.005)
    timings = time_rounds([_counting(calls, "a", 0.01)], tight)
    assert calls == ["a"] and timings[0].repeats == 1 and timings[0].reduced

    calls.clear()  # a single requested round is never reduced
    timings = time_rounds([_counting(calls, "a", 0.01)], RunConfig(cpu, repeats=1, warmup=0, budget_s=0.005))
    assert calls == ["a"] and not timings[0].reduced


# --- every config, and the 3D backbones against CenterPoint's ----------------------------------

# Half ranges (m) that each model's windows, strides and pooling divide (see tests/models/test_configs.py):
# DSVT and ScatterFormer 72 cells of 0.32 m; FlatFormer 80; CenterPoint 256 cells of 0.1 m (32 at stride 8);
# nuScenes DSVT-P 60 cells of 0.3 m (windows of 30, BEV stride 4); nuScenes CenterPoint 320 of 0.075 m;
# nuScenes ScatterFormer 80 cells of 0.3 m (windows of 20, a 40-cell BEV the DED strides divide);
# the pillar CenterPoints 80 pillars of 0.32 m (Waymo, BEV strides 1/2/2) and 128 of 0.2 m (nuScenes, 2/2/2).
HALF_RANGE = {"waymo_flatformer": 12.8, "waymo_dsvt_pillar": 11.52, "waymo_dsvt_voxel": 11.52,
              "waymo_scatterformer": 11.52, "waymo_centerpoint": 12.8, "nuscenes_flatformer": 12.8,
              "nuscenes_dsvt_pillar": 9.0, "nuscenes_dsvt_pillar_centerhead": 9.0, "nuscenes_centerpoint": 12.0,
              "nuscenes_scatterformer": 12.0, "waymo_centerpoint_pillar": 12.8,
              "nuscenes_centerpoint_pillar": 12.8}  # fmt: skip
NO_BACKBONE_3D = ("waymo_centerpoint_pillar", "nuscenes_centerpoint_pillar")  # pillars straight to the BEV
WAYMO = [name for name in HALF_RANGE if name.startswith("waymo") and name not in NO_BACKBONE_3D]


def small(name: str) -> list[str]:
    """The config's published model over a +-HALF_RANGE m range (z as configured)."""
    conf = load_config(name)
    h, (z0, z1) = HALF_RANGE[name], (conf.grid.point_cloud_range[2], conf.grid.point_cloud_range[5])
    return [f"{s}.point_cloud_range=[{-h},{-h},{z0},{h},{h},{z1}]" for s in ("voxelization", "dataset")]


def test_every_config_gets_its_stage_rows_and_the_waymo_backbones_their_ratio_to_centerpoint() -> None:
    from pointformer.benchmarks.backbones import run_comparison
    from pointformer.benchmarks.detector import PART_MARK, run_detector

    cpu = torch.device("cpu")
    once = RunConfig(cpu, repeats=1, warmup=0)
    assert sorted(HALF_RANGE) == sorted(p.stem for p in (ROOT / "configs").glob("*.yaml"))  # every full config
    for name in HALF_RANGE:
        report = run_detector(once, True, name, small(name), reference=False, train_step=False, fast_path=False)
        cases = [r.case for r in report.rows]
        assert {r.implementation for r in report.rows} == {"pointformer native"}, name
        assert all(r.timing is not None and r.timing.median_ms > 0 for r in report.rows if PART_MARK not in r.case)
        assert cases[0] == "voxelize" and cases[-1].startswith("inference total") and "training step" not in cases[-1]
        if name in NO_BACKBONE_3D:
            assert not any(c.startswith(("3D backbone", PART_MARK, "partition")) for c in cases), cases
            assert cases[2] == "BEV (ScatterToBEV)", cases
            continue
        backbone = next(i for i, c in enumerate(cases) if c.startswith("3D backbone"))
        parts = [c for c in cases[backbone + 1 :] if c.startswith(PART_MARK)]  # its parts, then 'rest'
        assert len(parts) >= 2 and parts[-1] == PART_MARK + "rest (outside these parts)", (name, cases)
        assert all(r.speedup == "" for r in report.rows)  # one variant: no speedups

    report = run_comparison(once, True, {n: small(n) for n in WAYMO}, "waymo_centerpoint")
    rows = report.rows
    assert len(rows) == 2 * len(WAYMO)  # a 3D backbone row and an inference row per config (fp32 on the CPU)
    for title in ("3D backbone", "inference total"):
        mine = [r for r in rows if r.case.startswith(title)]
        assert mine[0].case == f"{title}: VoxelResBackBone8x (waymo_centerpoint)" and mine[0].speedup == "baseline"
        assert [r.case.split("(")[-1].rstrip(")") for r in mine] == WAYMO[-1:] + WAYMO[:-1]
        for r in mine[1:]:
            speedup, ratio = float(r.speedup.rstrip("x")), float(r.notes.split("latency ")[1].split("x")[0])
            # Both printed to two decimals: reciprocal up to that rounding (0.15x against 6.52x is 0.978).
            assert speedup > 0 and ratio > 0 and abs(speedup * ratio - 1) <= 0.005 * (speedup + ratio) + 1e-3, r
    assert "same points for every config" in report.footnotes[0] and "GPU rows await" in " ".join(report.footnotes)


def test_detector_command_several_configs_and_the_comparison_section(tmp_path: Path) -> None:
    path = tmp_path / "bench.md"
    path.write_text("# Benchmarks\n\n## detector waymo_flatformer (cpu)\n\nold\n\n## demo (cpu)\n\nx\n")
    h = 12.8  # FlatFormer's 80 pillars, CenterPoint's 256 cells
    ranges = [f"{s}.point_cloud_range=[{-h},{-h},-2,{h},{h},4]" for s in ("voxelization", "dataset")]
    command = [sys.executable, str(SCRIPT), "detector", "--cfg", "waymo_centerpoint", "--cfg", "waymo_flatformer.yaml",
               "--quick", "--repeats", "1", "--warmup", "0", "--no-reference", "--no-train-step",
               "--set", ranges[0], "--set", ranges[1], "--write", str(path)]  # fmt: skip
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    headings = [line for line in path.read_text().splitlines() if line.startswith("## ")]
    assert headings == ["## detector waymo_flatformer (cpu)", "## detector waymo_centerpoint, native inference (cpu)",
                        "## detector waymo_flatformer, native inference (cpu)",
                        "## detector 3D backbones vs waymo_centerpoint (cpu)", "## demo (cpu)"]  # fmt: skip
    text = path.read_text()
    assert "| 3D backbone: FlatFormer (waymo_flatformer) | pointformer native |" in text
    assert "latency" in text and "old" in text

    # --compare-only: the comparison section alone, rewritten in place
    only = [c for c in command if c != "--no-train-step"] + ["--compare-only"]
    result = subprocess.run(only, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("## ") == 1 and "## detector 3D backbones vs waymo_centerpoint (cpu)" in result.stdout
    assert [line for line in path.read_text().splitlines() if line.startswith("## ")] == headings


def test_detector_configs_expand_all_once_in_order() -> None:
    from pointformer.benchmarks.cli import detector_configs

    every = detector_configs(["all"])
    assert [Path(p).stem for p in every] == sorted(HALF_RANGE)  # the full configs, not configs/demo
    again = detector_configs(["waymo_centerpoint", "all", "configs/waymo_centerpoint.yaml"])
    assert again[0] == str(ROOT / "configs" / "waymo_centerpoint.yaml") and sorted(again) == sorted(every)
