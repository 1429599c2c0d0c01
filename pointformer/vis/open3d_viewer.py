"""Open3D drawing of a ``FrameScene``: an interactive window (``show``) and headless PNGs
(``render_offscreen``).

Open3D is optional and imported only here, inside the functions (``import_open3d`` names what to
install when it is missing). Off-screen rendering uses the legacy ``Visualizer`` with an invisible
window: with no display, Open3D 0.20 falls back to an EGL off-screen context (Mesa's software
rasterizer on a machine without GPU), so it needs neither X nor Vulkan. (``rendering.
OffscreenRenderer``, the newer Filament path, would need Debian's ``libvulkan1`` and
``mesa-vulkan-drivers``; it is not used.)
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass

import numpy as np

from pointformer.vis.bev import write_png
from pointformer.vis.scene import BACKGROUND_DARK, GT_COLOR, PRED_COLOR, FrameScene, box_wireframes, point_colors

__all__ = ["VIEWS", "CameraView", "import_open3d", "render_offscreen", "scene_geometries", "show"]

INSTALL_HINT = (
    "the 3D viewer needs Open3D: `pip install open3d-cpu==0.20.0` (or `make deps`), and on Debian/Ubuntu "
    "the system library libusb: `apt-get install -y libusb-1.0-0`. "
    "The bird's-eye view (`--bev`) needs neither."
)


def import_open3d():
    """``import open3d``, or an ImportError that says how to install it."""
    try:
        import open3d
    except (ImportError, OSError) as e:  # OSError: a shared library (libusb) is missing
        raise ImportError(f"{INSTALL_HINT} (import open3d failed: {e})") from e
    return open3d


@dataclass(frozen=True)
class CameraView:
    """A pinhole camera looking from ``eye`` at ``target`` (metres, vehicle frame), ``up`` giving
    the picture's up direction, ``fov_deg`` the vertical field of view."""

    eye: tuple[float, float, float]
    target: tuple[float, float, float]
    up: tuple[float, float, float] = (0.0, 0.0, 1.0)
    fov_deg: float = 60.0

    def extrinsic(self) -> np.ndarray:
        """``(4, 4)`` world -> camera, in Open3D's camera axes (x right, y down, z forward)."""
        eye, target, up = (np.asarray(v, dtype=np.float64) for v in (self.eye, self.target, self.up))
        forward = target - eye
        forward /= np.linalg.norm(forward)
        right = np.cross(forward, up)
        if np.linalg.norm(right) < 1e-9:
            raise ValueError(f"camera up {self.up} is parallel to the viewing direction")
        right /= np.linalg.norm(right)
        down = np.cross(forward, right)
        m = np.eye(4)
        m[:3, :3] = np.stack([right, down, forward])
        m[:3, 3] = -m[:3, :3] @ eye
        return m


# Named views. "chase": behind and above the ego, looking forward (the default); "top": straight
# down with forward up the picture; "front": ahead of the ego looking back at it.
VIEWS = {
    "chase": CameraView(eye=(-22.0, 0.0, 14.0), target=(22.0, 0.0, 0.0), fov_deg=60.0),
    "top": CameraView(eye=(0.0, 0.0, 110.0), target=(0.0, 0.0, 0.0), up=(1.0, 0.0, 0.0), fov_deg=60.0),
    "front": CameraView(eye=(30.0, 0.0, 12.0), target=(0.0, 0.0, 0.0), fov_deg=60.0),
}


def _line_set(o3d, boxes: np.ndarray, color) -> object:
    vertices, lines = box_wireframes(boxes)
    ls = o3d.geometry.LineSet(o3d.utility.Vector3dVector(vertices), o3d.utility.Vector2iVector(lines.astype(np.int32)))
    ls.colors = o3d.utility.Vector3dVector(np.tile(np.asarray(color, np.float64), (len(lines), 1)))
    return ls


def scene_geometries(scene: FrameScene, color: str = "height", value_range=None) -> list:
    """Open3D geometries of a scene: the point cloud, then the ground-truth and predicted boxes'
    wireframes (``LineSet``s with heading marks), each only when non-empty."""
    o3d = import_open3d()
    pcd = o3d.geometry.PointCloud(o3d.utility.Vector3dVector(scene.xyz.astype(np.float64)))
    pcd.colors = o3d.utility.Vector3dVector(point_colors(scene, color, value_range).astype(np.float64))
    geometries = [pcd]
    if len(scene.gt_boxes):
        geometries.append(_line_set(o3d, scene.gt_boxes, GT_COLOR))
    if len(scene.pred_boxes):
        geometries.append(_line_set(o3d, scene.pred_boxes, PRED_COLOR))
    return geometries


def _apply_view(o3d, vis, view: CameraView, width: int, height: int) -> None:
    f = 0.5 * height / math.tan(math.radians(view.fov_deg) / 2)
    params = o3d.camera.PinholeCameraParameters()
    params.intrinsic = o3d.camera.PinholeCameraIntrinsic(width, height, f, f, width / 2 - 0.5, height / 2 - 0.5)
    params.extrinsic = view.extrinsic()
    vis.get_view_control().convert_from_pinhole_camera_parameters(params, allow_arbitrary=True)


def _setup(vis, scene: FrameScene, color, value_range, background, point_size) -> None:
    for g in scene_geometries(scene, color, value_range):
        vis.add_geometry(g)
    opt = vis.get_render_option()
    opt.background_color = np.asarray(background, dtype=np.float64)
    opt.point_size = float(point_size)
    opt.light_on = False  # colours as given: no shading of points or lines


def _view(view: str | CameraView) -> CameraView:
    if isinstance(view, CameraView):
        return view
    if view not in VIEWS:
        raise ValueError(f"view must be one of {sorted(VIEWS)} or a CameraView, got {view!r}")
    return VIEWS[view]


def render_offscreen(
    scene: FrameScene,
    path: str | os.PathLike | None = None,
    width: int = 1280,
    height: int = 720,
    view: str | CameraView = "chase",
    color: str = "height",
    value_range: tuple[float, float] | None = None,
    background=BACKGROUND_DARK,
    point_size: float = 2.0,
) -> np.ndarray:
    """Renders ``scene`` without a window and returns the ``(height, width, 3)`` uint8 picture,
    also written to ``path`` (PNG, atomically) when given.

    ``view``: a name in ``VIEWS`` (default ``"chase"``: behind and above the ego, looking forward)
    or a ``CameraView``. Works with no display (EGL off-screen context; see the module docstring).
    """
    o3d = import_open3d()
    cam = _view(view)
    vis = o3d.visualization.Visualizer()
    if not vis.create_window(window_name=scene.title or "pointformer", width=width, height=height, visible=False):
        raise RuntimeError("Open3D could not create an off-screen window (no display and no EGL context)")
    try:
        _setup(vis, scene, color, value_range, background, point_size)
        _apply_view(o3d, vis, cam, width, height)
        vis.poll_events()
        vis.update_renderer()
        buffer = np.asarray(vis.capture_screen_float_buffer(do_render=True))
    finally:
        vis.destroy_window()
    image = np.ascontiguousarray((np.clip(buffer, 0.0, 1.0) * 255).round().astype(np.uint8))
    if path is not None:
        write_png(os.fspath(path), image)
    return image


def show(
    scene: FrameScene,
    width: int = 1600,
    height: int = 900,
    view: str | CameraView = "chase",
    color: str = "height",
    value_range: tuple[float, float] | None = None,
    background=BACKGROUND_DARK,
    point_size: float = 2.0,
) -> None:
    """Opens an interactive Open3D window on ``scene`` (blocks until it is closed). Needs a display.

    Mouse: drag to rotate, shift-drag to pan, wheel to zoom; ``-``/``+`` change the point size,
    ``H`` lists Open3D's keys.
    """
    o3d = import_open3d()
    vis = o3d.visualization.Visualizer()
    if not vis.create_window(window_name=scene.title or "pointformer", width=width, height=height):
        raise RuntimeError("Open3D could not open a window: is there a display? (render_offscreen needs none)")
    try:
        _setup(vis, scene, color, value_range, background, point_size)
        _apply_view(o3d, vis, _view(view), width, height)
        vis.run()
    finally:
        vis.destroy_window()
