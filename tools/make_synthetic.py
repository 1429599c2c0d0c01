#!/usr/bin/env python
"""Synthetic LiDAR sequences in a real dataset format (the logic: pointformer.data.synthetic.cli).

python tools/make_synthetic.py --format waymo-v1 --frames 20 --seed 0 --out data/synthetic_waymo
python tools/make_synthetic.py --format waymo-v2 --frames 20 --sequences 4 --split validation --seed 1000 \
    --out data/synthetic_waymo
"""

from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from pointformer.data.synthetic.cli import main  # noqa: E402
from pointformer.utils.cli import run_tool  # noqa: E402

if __name__ == "__main__":
    sys.exit(run_tool(main))
