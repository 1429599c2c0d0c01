#!/usr/bin/env python
"""Convert an official checkpoint (OpenPCDet, the DSVT / ScatterFormer forks, FlatFormer's mmdet3d
fork) into a pointformer checkpoint, or back with --reverse.

python tools/convert_checkpoint.py --from openpcdet --cfg waymo_dsvt_pillar.yaml dsvt_pillar.pth dsvt_p.pth
python tools/convert_checkpoint.py --from openpcdet --cfg waymo_dsvt_pillar.yaml --reverse dsvt_p.pth back.pth
"""

from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from pointformer.checkpoints.cli import main  # noqa: E402
from pointformer.utils.cli import run_tool  # noqa: E402

if __name__ == "__main__":
    sys.exit(run_tool(main))
