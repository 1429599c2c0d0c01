#!/usr/bin/env python
"""The demo behind `make demo`: synthetic Waymo-format data, conversion, FlatFormer training on the
CPU, the official Waymo table and pictures of the detections (see pointformer/runs/demo.py)."""

from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from pointformer.utils.threads import prepare_environment  # noqa: E402

# OMP_WAIT_POLICY=PASSIVE unless set, before torch loads (README 'CPU threads').
prepare_environment()

from pointformer.runs.demo import main  # noqa: E402
from pointformer.utils.cli import run_tool  # noqa: E402

if __name__ == "__main__":
    sys.exit(run_tool(main))
