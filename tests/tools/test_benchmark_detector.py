"""tools/benchmark.py detector: every stage of the demo detector gets its rows; stages a model
lacks are skipped; the per-row time budget of ``time_rounds``."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import torch
from torch import nn

from pointformer.config import load_config
from pointformer.models.necks.identity import IdentityNeck
from pointformer.utils.benchmark import RunConfig
from pointformer.utils.benchmark_detector import _present, detector_stages, load_model, make_frame, time_rounds

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "tools" / "benchmark.py"
DEMO = "configs/demo/waymo_flatformer_demo.yaml"
HEADING = "## detector waymo_flatformer_demo (cpu)"
STAGES = ("voxelize", "voxel encoder (DynamicVFE)", "partition (FlatFormer, 4 layouts)", "3D backbone (FlatFormer)",
          "BEV (ScatterToBEV)", "2D backbone (SECOND)", "neck (SECONDFPN)", "head (CenterHead)", "decode + NMS",
          "inference total", "training step")  # fmt: skip


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
        assert [r[1] for r in mine] == ["pure-PyTorch reference", "pointformer native"], stage
        assert mine[0][4] == "baseline" and mine[1][4].endswith("x"), stage
        assert all(float(r[2]) > 0 for r in mine), stage
    parts = [r for r in rows if r[0].startswith("↳")]  # the 3D backbone's parts, per variant
    assert [r[0] for r in parts[::2]] == ["↳ blocks (4 x PostNormAttentionLayer)", "↳ rest (outside these parts)"]
    assert len(rows) == 2 * len(STAGES) + len(parts)
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
