#!/usr/bin/env python
"""Export a trained detector for deployment: ONNX model + deploy.json (+ TensorRT engine).

python tools/export.py --cfg waymo_flatformer.yaml --ckpt work_dirs/waymo_flatformer/epoch_024.pth --out deploy/ff
python tools/export.py --cfg waymo_dsvt_pillar.yaml --ckpt CKPT --out deploy/dsvt --fp16 --opset 18 --tensorrt
"""

from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from pointformer.export.cli import main  # noqa: E402
from pointformer.utils.cli import run_tool  # noqa: E402

if __name__ == "__main__":
    sys.exit(run_tool(main))
