#!/usr/bin/env python
"""Differential test of pointformer's Waymo metrics against the official TF op (``make crosscheck-waymo``);
the logic lives in ``pointformer.evaluation.waymo_crosscheck_cli``.

python tools/crosscheck_waymo.py --official-python .venv-waymo/bin/python [--cases 600] [--first-seed 0]
python tools/crosscheck_waymo.py --official-python ... --save-regression tests/evaluation/data/waymo_official_cases.npz
python tools/crosscheck_waymo.py --official-python ... --objects PRED.bin GT.bin
"""

from __future__ import annotations

import os
import sys

# Run from a checkout without an installed package: put the repository root on the path.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from pointformer.evaluation.waymo_crosscheck_cli import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
