#!/usr/bin/env python
"""Visualizations. Today: a frame's pillars coloured by group, for each grouping layout.

python tools/visualize.py partition --layout flattened-x --out outputs/flattened-x.png
python tools/visualize.py partition --layout all --out outputs/partitions/
"""

from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from pointformer.utils.benchmark import make_lidar_frame  # noqa: E402
from pointformer.vis.partitions import LAYOUTS, render_layout  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    part = sub.add_parser("partition", help="BEV picture of a synthetic frame's pillars coloured by group")
    part.add_argument("--layout", required=True, choices=[*LAYOUTS, "all"])
    part.add_argument("--out", required=True, help="PNG file, or a folder with --layout all")
    part.add_argument("--points", type=int, default=180_000, help="points in the synthetic frame")
    part.add_argument("--seed", type=int, default=0)
    part.add_argument("--scale", type=int, default=2, help="pixels per pillar")
    args = parser.parse_args(argv)

    points = make_lidar_frame(args.points, seed=args.seed)
    layouts = list(LAYOUTS) if args.layout == "all" else [args.layout]
    for layout in layouts:
        path = os.path.join(args.out, f"{layout}.png") if args.layout == "all" else args.out
        partition = render_layout(points, layout, path, scale=args.scale)
        print(f"{layout}: {partition.num_voxels} pillars in {partition.num_groups} groups -> {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
