#!/usr/bin/env python
"""Evaluate a trained detector on a converted split: the official Waymo table or the nuScenes summary
(by the config's eval.metric), optional submission files and pictures.

python tools/test.py --cfg waymo_flatformer.yaml --ckpt work_dirs/waymo_flatformer/checkpoints/epoch_24.pt
python tools/test.py --cfg demo/waymo_flatformer_demo.yaml --ckpt CKPT --submission outputs/pred.bin \
    --gt-file outputs/gt.bin --render 4 --out-dir outputs/test
python tools/test.py --cfg nuscenes_flatformer.yaml --ckpt CKPT --submission outputs/results_nusc.json \
    --out-dir outputs/test   # metrics.json and the devkit's metrics_summary.json
"""

from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from pointformer.utils.threads import prepare_environment  # noqa: E402

# OMP_WAIT_POLICY=PASSIVE unless set, before torch loads (README 'CPU threads').
prepare_environment()

from pointformer.runs.evaluate_cli import main  # noqa: E402
from pointformer.utils.cli import run_tool  # noqa: E402

if __name__ == "__main__":
    sys.exit(run_tool(main))
