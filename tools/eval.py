#!/usr/bin/env python
"""Evaluates detections with the official metrics; the logic lives in ``pointformer.evaluation``.

python tools/eval.py waymo PRED.bin GT.bin [--json OUT]
python tools/eval.py nuscenes RESULTS.json --dataroot ROOT --version VERSION --split SPLIT [--output-dir DIR]
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

# Run from a checkout without an installed package: put the repository root on the path.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from pointformer.utils.cli import add_debug_argument, run_tool  # noqa: E402

# subcommand -> its CLI module (``add_arguments``, ``run``). Only the chosen one is imported: the
# Waymo metrics need torch (box overlaps), the nuScenes ones do not, and importing torch would be
# a large part of a nuScenes evaluation's start-up.
SUBCOMMANDS = {
    "waymo": "pointformer.evaluation.waymo_cli",
    "nuscenes": "pointformer.evaluation.nuscenes_cli",
}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_debug_argument(parser)
    sub = parser.add_subparsers(dest="command", required=True)
    chosen = [argv[0]] if argv and argv[0] in SUBCOMMANDS else list(SUBCOMMANDS)
    modules = {}
    for name, module_name in SUBCOMMANDS.items():
        sub_parser = sub.add_parser(name)
        if name in chosen:
            modules[name] = importlib.import_module(module_name)
            modules[name].add_arguments(sub_parser)
    args = parser.parse_args(argv)
    return modules[args.command].run(args)


if __name__ == "__main__":
    sys.exit(run_tool(main))
