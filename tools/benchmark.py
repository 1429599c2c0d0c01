#!/usr/bin/env python
"""Benchmarks pointformer; the logic lives in ``pointformer.benchmarks`` (``cli``).

python tools/benchmark.py ops [--quick] [--repeats N] [--warmup N] [--device cpu|cuda] [--write docs/benchmarks.md]
python tools/benchmark.py detector --cfg waymo_flatformer.yaml [--frame raycast|scatter] [--set KEY=VALUE] [...]
python tools/benchmark.py detector --cfg all --no-reference --no-train-step --repeats 3  # + vs CenterPoint
python tools/benchmark.py export [--cfg waymo_flatformer ...] [--device cuda]  # onnxruntime vs PyTorch
"""

from __future__ import annotations

import os
import sys

# Run from a checkout without an installed package: put the repository root on the path.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from pointformer.utils.threads import prepare_environment  # noqa: E402

# OMP_WAIT_POLICY=PASSIVE unless set, before torch loads (README 'CPU threads').
prepare_environment()

from pointformer.benchmarks.cli import main  # noqa: E402
from pointformer.utils.cli import run_tool  # noqa: E402

if __name__ == "__main__":
    sys.exit(run_tool(lambda argv: main(argv, script=sys.argv[0])))
