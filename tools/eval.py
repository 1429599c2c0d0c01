#!/usr/bin/env python
"""Evaluates detections with the official metrics; the logic lives in ``pointformer.evaluation``.

python tools/eval.py waymo PRED.bin GT.bin [--json OUT]
python tools/eval.py nuscenes RESULTS.json --dataroot ROOT --version VERSION --split SPLIT [--output-dir DIR]
"""

from __future__ import annotations

import argparse
import os
import sys

# Run from a checkout without an installed package: put the repository root on the path.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from pointformer.evaluation import nuscenes_cli, waymo_cli  # noqa: E402
from pointformer.utils.cli import add_debug_argument, run_tool  # noqa: E402

# subcommand -> (add_arguments, run)
SUBCOMMANDS = {
    "waymo": (waymo_cli.add_arguments, waymo_cli.run),
    "nuscenes": (nuscenes_cli.add_arguments, nuscenes_cli.run),
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_debug_argument(parser)
    sub = parser.add_subparsers(dest="command", required=True)
    for name, (add_arguments, _) in SUBCOMMANDS.items():
        add_arguments(sub.add_parser(name))
    args = parser.parse_args(argv)
    return SUBCOMMANDS[args.command][1](args)


if __name__ == "__main__":
    sys.exit(run_tool(main))
