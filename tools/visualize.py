#!/usr/bin/env python
"""Visualizations: a dataset frame with its boxes (3D with Open3D, or bird's-eye view), and a
frame's pillars coloured by group for each grouping layout.

python tools/visualize.py frame --data segment-X_with_camera_labels.tfrecord --frame 0            # window
python tools/visualize.py frame --data segment-X_with_camera_labels.tfrecord --frame 0 --save f.png
python tools/visualize.py frame --data datasets/waymo_v2 --split training --frame 3 --bev --save f.png
python tools/visualize.py frame --data datasets/nuscenes --version v1.0-mini --frame 0 --pred pred.json
python tools/visualize.py partition --layout flattened-x --out outputs/flattened-x.png
python tools/visualize.py partition --layout all --out outputs/partitions/

--pred takes a JSON file {"boxes": [[x, y, z, dx, dy, dz, heading], ...], "scores": [...], "names": [...]}
in the frame of the points. Without a display (or with --save) the 3D view is rendered off-screen.
"""

from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from pointformer.data.synthetic.scatter import make_lidar_frame  # noqa: E402
from pointformer.utils.cli import KNOWN_ERRORS, add_debug_argument, run_tool  # noqa: E402
from pointformer.utils.errors import InputError  # noqa: E402
from pointformer.vis.cli import FRAME_ERRORS, add_frame_arguments, run_frame  # noqa: E402
from pointformer.vis.partitions import LAYOUTS, render_layout  # noqa: E402


class FrameInputError(InputError):
    """A frame the viewer cannot show: an unreadable source, or Open3D missing."""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    part = sub.add_parser("partition", help="BEV picture of a synthetic frame's pillars coloured by group")
    part.add_argument("--layout", required=True, choices=[*LAYOUTS, "all"])
    part.add_argument("--out", required=True, help="PNG file, or a folder with --layout all")
    part.add_argument("--points", type=int, default=180_000, help="points in the synthetic frame")
    part.add_argument("--seed", type=int, default=0)
    part.add_argument("--scale", type=int, default=2, help="pixels per pillar")
    frame = sub.add_parser("frame", help="a dataset frame with its ground truth and predictions (3D or BEV)")
    add_frame_arguments(frame)
    add_debug_argument(parser)
    args = parser.parse_args(argv)

    if args.command == "frame":
        try:
            return run_frame(args)
        except FRAME_ERRORS as e:
            if isinstance(e, KNOWN_ERRORS):
                raise  # reported by run_tool
            # A frame source the viewer cannot read (a ValueError) or Open3D not installed.
            raise FrameInputError(f"visualize frame: {e}") from e
    points = make_lidar_frame(args.points, seed=args.seed)
    layouts = list(LAYOUTS) if args.layout == "all" else [args.layout]
    for layout in layouts:
        path = os.path.join(args.out, f"{layout}.png") if args.layout == "all" else args.out
        partition = render_layout(points, layout, path, scale=args.scale)
        print(f"{layout}: {partition.num_voxels} pillars in {partition.num_groups} groups -> {path}")
    return 0


if __name__ == "__main__":
    sys.exit(run_tool(main))
