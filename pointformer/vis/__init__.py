"""Visualization: bird's-eye-view pictures (PNG); the Open3D viewer arrives with the data issue."""

from pointformer.vis.bev import partition_colors, render_partition_bev, write_png

__all__ = ["partition_colors", "render_partition_bev", "write_png"]
