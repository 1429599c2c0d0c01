"""tools/benchmark.py: the ops benchmark runs end to end and upserts its markdown section."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from pointformer.benchmarks.core import TITLE, upsert_section

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "tools" / "benchmark.py"
HEADING = "## ops (cpu)"


def _run_quick(path: Path) -> subprocess.CompletedProcess:
    command = [sys.executable, str(SCRIPT), "ops", "--quick", "--repeats", "1", "--warmup", "0", "--write", str(path)]
    return subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=600)


def _table_rows(text: str, prefix: str) -> list[str]:
    return [line for line in text.splitlines() if line.startswith(f"| {prefix}")]


def test_ops_quick_writes_and_replaces_its_section(tmp_path: Path) -> None:
    path = tmp_path / "bench.md"
    other = "## attention (cpu)\n\nkeep me\n"
    path.write_text(f"# Benchmarks\n\nintro\n\n{HEADING}\n\nstale figures\n\n{other}")

    first = _run_quick(path)
    assert first.returncode == 0, first.stderr
    assert HEADING in first.stdout
    text = path.read_text()
    section = text[text.index(HEADING) : text.index("## attention")]
    for line in ("Machine: ", "Date: ", "Command: "):
        assert f"\n{line}" in section, line
    assert "--quick" in section
    for case in ("voxelize", "segment_reduce", "nms_bev", "boxes_iou_bev", "VFE layer"):
        assert _table_rows(section, case), case
    assert "DIFFERS" not in section
    assert "stale figures" not in text
    assert text.startswith("# Benchmarks\n\nintro\n")

    second = _run_quick(path)
    assert second.returncode == 0, second.stderr
    text = path.read_text()
    assert text.count(HEADING) == 1
    assert text.count(other) == 1
    assert len(_table_rows(text, "voxelize")) == 10  # 2 grids x 5 implementations, not duplicated
    peers = [line for line in _table_rows(text, "voxelize") if "straightforward torch (dynamic) |" in line]
    assert len(peers) == 2 and all("same coords, point_to_voxel, num_points" in line for line in peers)


def test_upsert_section_creates_appends_and_replaces() -> None:
    new = upsert_section(None, HEADING, f"{HEADING}\n\nfirst\n")
    assert new.startswith(TITLE) and new.count(HEADING) == 1
    appended = upsert_section("# Benchmarks\n\n## export (cpu)\n\nx\n", HEADING, f"{HEADING}\n\nfirst\n")
    assert appended == "# Benchmarks\n\n## export (cpu)\n\nx\n\n## ops (cpu)\n\nfirst\n"
    replaced = upsert_section(appended, HEADING, f"{HEADING}\n\nsecond\n")
    assert replaced == "# Benchmarks\n\n## export (cpu)\n\nx\n\n## ops (cpu)\n\nsecond\n"
    middle = upsert_section(f"# B\n\n{HEADING}\n\nold\n\n## export (cpu)\n\nx\n", HEADING, f"{HEADING}\n\nnew\n")
    assert middle == f"# B\n\n{HEADING}\n\nnew\n\n## export (cpu)\n\nx\n"
    # A new section of a group goes after the group's last section, not at the end.
    doc = "# B\n\n## detector a (cpu)\n\na\n\n## detector b (cpu)\n\nb\n\n## demo (cpu)\n\nd\n"
    grouped = upsert_section(doc, "## detector c (cpu)", "## detector c (cpu)\n\nc\n", group="## detector")
    assert grouped == doc.replace("## demo", "## detector c (cpu)\n\nc\n\n## demo")
    alone = upsert_section(doc, "## eval (cpu)", "## eval (cpu)\n\ne\n", group="## eval")
    assert alone == doc + "\n## eval (cpu)\n\ne\n"


def test_grouping_quick_covers_every_layout_and_agrees_with_the_reference(tmp_path: Path) -> None:
    path = tmp_path / "bench.md"
    command = [sys.executable, str(SCRIPT), "grouping", "--quick", "--repeats", "1", "--warmup", "0",
               "--write", str(path)]  # fmt: skip
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    text = path.read_text()
    assert "## grouping (cpu)" in text
    for layout in ("flattened-x", "rotated-sets-y", "scattered", "serialized-hilbert"):
        assert _table_rows(text, layout), layout
    assert "DIFFERS" not in text
    native_rows = [line for line in text.splitlines() if "pointformer native" in line]
    assert len(native_rows) == 19  # 18 layouts, and FlatFormer's four orders of a frame together
    assert sum("identical to reference" in line for line in native_rows) == 18
    assert sum("x vs official-style PyTorch mapping" in line for line in native_rows) == 5
    peers = [line for line in text.splitlines() if "| official-style PyTorch mapping |" in line]
    assert len(peers) == 5 and all("same order and groups as native" in line for line in peers)


def test_data_quick_times_every_stage() -> None:
    command = [sys.executable, str(SCRIPT), "data", "--quick", "--repeats", "2", "--warmup", "0"]
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    assert "## data (cpu)" in result.stdout
    rows = _table_rows(result.stdout, "convert") + _table_rows(result.stdout, "training frame")
    assert len(rows) == 3 + 9
    for row in rows:
        median = row.split("|")[3].strip()
        assert float(median) > 0, row
    for stage in ("load", "gt sampling", "global augmentations", "voxelize", "end to end"):
        assert any(stage in row for row in rows), stage
    assert "Target 60 ms per frame on one core: " in result.stdout


def test_attention_quick_has_every_backend_row(tmp_path: Path) -> None:
    path = tmp_path / "bench.md"
    command = [sys.executable, str(SCRIPT), "attention", "--quick", "--repeats", "1", "--warmup", "0",
               "--write", str(path)]  # fmt: skip
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    text = path.read_text()
    assert "## attention (cpu)" in text
    for case in ("FlatFormer groups of 144", "DSVT sets of 36"):
        rows = _table_rows(text, case)
        assert len(rows) == 5, rows  # forward: reference, fused, sdpa; forward + backward: fused, sdpa
        assert all(" — " not in row for row in rows)


def test_eval_quick_times_the_waymo_metrics() -> None:
    command = [sys.executable, str(SCRIPT), "eval", "--quick", "--repeats", "1", "--warmup", "0"]
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    assert "## eval (cpu)" in result.stdout
    rows = [line for line in result.stdout.splitlines() if line.startswith("|") and "waymo" in line.lower()]
    assert rows and all(float(row.split("|")[3].strip()) > 0 for row in rows), rows
