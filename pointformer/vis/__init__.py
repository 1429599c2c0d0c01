"""Visualization: what to draw (``scene.FrameScene``), bird's-eye-view pictures (PNG, numpy only)
and the Open3D viewer (``open3d_viewer``: imported on demand, Open3D is optional)."""

from pointformer.vis.bev import BevGrid, partition_colors, read_png, render_frame_bev, render_partition_bev, write_png
from pointformer.vis.scene import FrameScene, box_corners, box_wireframes, colormap, point_colors

__all__ = [
    "BevGrid",
    "FrameScene",
    "box_corners",
    "box_wireframes",
    "colormap",
    "partition_colors",
    "point_colors",
    "read_png",
    "render_frame_bev",
    "render_partition_bev",
    "write_png",
]
