#!/usr/bin/env python
"""Convert a dataset into pointformer's layout (see pointformer/data/layout.py).

python tools/create_data.py --dataset waymo --root data/waymo --out datasets/waymo --format v1 \
    --splits training validation --workers 8 --sweeps 4
python tools/create_data.py --dataset nuscenes --root data/nuscenes --out datasets/nuscenes \
    --version v1.0-trainval --splits train val --workers 8 --sweeps 9
"""

from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from pointformer.data.convert import main  # noqa: E402
from pointformer.utils.cli import run_tool  # noqa: E402

if __name__ == "__main__":
    sys.exit(run_tool(main))
