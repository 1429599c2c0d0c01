"""Pictures of detections next to ground truth: bird's-eye view (numpy only) and an Open3D
off-screen 3D view when Open3D is installed."""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from pointformer.data.layout import load_points
from pointformer.runs.inference import FramePredictions


def render_detections(
    root: str,
    frames: Sequence,
    predictions: Sequence[FramePredictions],
    out_dir: str | Path,
    score_threshold: float = 0.3,
    point_cloud_range: Sequence[float] | None = None,
    open3d: bool = True,
) -> list[Path]:
    """Writes ``<frame_id>_bev.png`` (and ``<frame_id>_3d.png`` with Open3D) for each frame:
    points coloured by height, ground truth in green, predictions with a score of at least
    ``score_threshold`` in orange. Returns the written paths."""
    from pointformer.vis.bev import BevGrid, render_frame_bev, write_png
    from pointformer.vis.scene import FrameScene

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    by_id = {p.frame_id: p for p in predictions}
    grid = BevGrid()
    if point_cloud_range is not None:
        r = [float(v) for v in point_cloud_range]
        grid = BevGrid(x_range=(r[0], r[3]), y_range=(r[1], r[4]), pixels_per_metre=8.0)
    written: list[Path] = []
    use_open3d = open3d
    for rec in frames:
        pred = by_id[rec.frame_id]
        keep = pred.scores >= score_threshold
        scene = FrameScene(
            points=load_points(root, rec),
            gt_boxes=rec.boxes[:, :7],
            gt_names=tuple(str(n) for n in rec.names),
            pred_boxes=pred.boxes[keep, :7],
            pred_scores=pred.scores[keep],
            pred_names=tuple(str(n) for n in pred.names[keep]),
            title=rec.frame_id,
        )
        bev = out / f"{rec.frame_id}_bev.png"
        write_png(str(bev), render_frame_bev(scene, grid))
        written.append(bev)
        if use_open3d:
            try:
                from pointformer.vis.open3d_viewer import render_offscreen

                path = out / f"{rec.frame_id}_3d.png"
                render_offscreen(scene, path, view="chase")
                written.append(path)
            except (ImportError, RuntimeError) as e:
                warnings.warn(f"no Open3D rendering ({e}); bird's-eye views only", stacklevel=2)
                use_open3d = False
    return written


def frames_with_boxes(frames: Sequence, count: int) -> list:
    """The first ``count`` frames, preferring frames with ground truth."""
    ordered = sorted(range(len(frames)), key=lambda i: (len(frames[i].boxes) == 0, i))
    return [frames[i] for i in np.asarray(ordered[:count], np.int64).tolist()]
