"""tools/visualize.py partition: every layout renders a BEV picture of a frame."""

from __future__ import annotations

import struct
import subprocess
import sys
from pathlib import Path

from pointformer.vis.partitions import LAYOUTS

ROOT = Path(__file__).resolve().parents[2]


def test_partition_pictures_for_every_layout(tmp_path: Path) -> None:
    command = [sys.executable, str(ROOT / "tools" / "visualize.py"), "partition", "--layout", "all",
               "--out", str(tmp_path), "--points", "20000", "--scale", "1"]  # fmt: skip
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    assert len(result.stdout.splitlines()) == len(LAYOUTS)
    for layout in LAYOUTS:
        data = (tmp_path / f"{layout}.png").read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n"
        width, height = struct.unpack(">II", data[16:24])
        assert (width, height) == (468, 468), layout


def test_unknown_layout_is_rejected(tmp_path: Path) -> None:
    command = [sys.executable, str(ROOT / "tools" / "visualize.py"), "partition", "--layout", "nope",
               "--out", str(tmp_path / "x.png")]  # fmt: skip
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode != 0 and "invalid choice" in result.stderr
