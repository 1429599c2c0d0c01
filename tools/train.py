#!/usr/bin/env python
"""Train a detector.

python tools/train.py --cfg waymo_flatformer.yaml
python tools/train.py --cfg waymo_flatformer.yaml --set train.epochs=12 --work-dir work_dirs/ff12 --resume
torchrun --nproc_per_node 8 tools/train.py --cfg waymo_flatformer.yaml
"""

from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from pointformer.utils.threads import prepare_environment  # noqa: E402

# OMP_WAIT_POLICY=PASSIVE unless set, before torch loads (README 'CPU threads').
prepare_environment()

from pointformer.runs.train_cli import main  # noqa: E402
from pointformer.utils.cli import run_tool  # noqa: E402

if __name__ == "__main__":
    sys.exit(run_tool(main))
