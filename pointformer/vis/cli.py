"""``tools/visualize.py frame``: one frame of a dataset, its ground truth and predictions.

Sources (``load_frame_scene`` dispatches on what ``data`` is; adding a source is one branch):

* a Waymo v1 ``.tfrecord`` file: ``frame`` is the frame's index in the file;
* a Waymo v2 root (``<root>/<split>/<component>/<context>.parquet``): ``split`` and ``context``
  are required where the root holds several splits / the split several segments; ``frame`` is the
  frame's index in the segment (time order);
* a nuScenes dataroot (``<root>/<version>/sample.json``): ``frame`` is a sample token or an index
  into the samples (scene by scene, in time order); ``nsweeps`` sweeps are accumulated.
* a converted root (``<root>/meta.json``, ``tools/create_data.py``; any dataset): ``split`` is
  required where the root holds several; ``frame`` is a frame id (``<sequence>_<index:04d>``), a
  nuScenes sample token, or an index into the split's frame table; ``nsweeps - 1`` of the frame's
  listed sweeps are moved into its frame (``inv(pose) @ sweep pose``) and accumulated.

Predictions (``--pred``) are a JSON file for that frame, boxes in the same frame as the points
(Waymo: vehicle frame; nuScenes: LIDAR_TOP frame; a converted root: the frame's points frame)::

    {"boxes": [[x, y, z, dx, dy, dz, heading], ...],   # metres, radians; z = box centre
     "scores": [0.9, ...],                              # optional (default 1)
     "names": ["vehicle", ...]}                         # optional
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import time
from pathlib import Path

import numpy as np

from pointformer.data.formats.errors import DataFormatError
from pointformer.utils.errors import InputError
from pointformer.vis.scene import FrameScene

__all__ = [
    "FRAME_ERRORS",
    "FrameNotFoundError",
    "add_frame_arguments",
    "has_display",
    "load_frame_scene",
    "load_predictions",
    "run_frame",
]

# Waymo Label.Type -> name.
WAYMO_CLASS_NAMES = {0: "unknown", 1: "vehicle", 2: "pedestrian", 3: "sign", 4: "cyclist"}


class FrameNotFoundError(InputError, LookupError):
    """The requested frame is not in the source (index out of range, unknown token)."""


# What ``run_frame`` raises for a bad input (reported as one line, not a traceback): a missing
# file or frame, an unrecognized source, a malformed file, Open3D not installed.
FRAME_ERRORS = (FrameNotFoundError, FileNotFoundError, ValueError, ImportError)


def _waymo_scene(frame, title: str) -> FrameScene:
    names = tuple(WAYMO_CLASS_NAMES.get(int(t), str(int(t))) for t in frame.labels.types)
    return FrameScene(
        points=frame.points, intensity=frame.points[:, 3], gt_boxes=frame.labels.boxes, gt_names=names, title=title
    )


def _index(frame: int | str) -> int:
    try:
        index = int(frame)
    except ValueError:
        raise FrameNotFoundError(f"frame must be an index here, got {frame!r}") from None
    if index < 0:
        raise FrameNotFoundError(f"frame index must be >= 0, got {index}")
    return index


def _load_waymo_v1(path: Path, frame: int | str) -> FrameScene:
    from pointformer.data.formats.tfrecord import iter_record_spans
    from pointformer.data.formats.waymo_v1 import decode_frame

    index = _index(frame)
    count = 0
    # Only the wanted record is decoded; the others are just framed (and their CRCs checked).
    for i, offset, data in iter_record_spans(path):
        count += 1
        if i == index:
            try:
                waymo = decode_frame(data).to_frame()
            except DataFormatError as e:
                raise DataFormatError(f"{path}: record {i} at byte {offset}: {e}") from None
            return _waymo_scene(waymo, f"{path.name} frame {index}")
    raise FrameNotFoundError(f"frame {index} out of range: {path} holds {count} frames (0..{count - 1})")


def _load_waymo_v2(root: Path, frame: int | str, split: str | None, context: str | None) -> FrameScene:
    from pointformer.data.formats import waymo_v2

    if split is None:
        splits = sorted(p.name for p in root.iterdir() if (p / "vehicle_pose").is_dir())
        if len(splits) != 1:
            raise ValueError(f"{root} is a Waymo v2 root with several splits: pass --split (one of {splits})")
        split = splits[0]
    contexts = waymo_v2.context_names(root, split)
    if context is None:
        if len(contexts) != 1:
            raise ValueError(f"{root}/{split} holds {len(contexts)} segments: pass --context (one of {contexts[:10]})")
        context = contexts[0]
    elif context not in contexts:
        raise FrameNotFoundError(f"no segment {context!r} in {root}/{split} (has {contexts[:10]})")
    index = _index(frame)
    frames = waymo_v2.read_frames(root, split, context)
    found = next(itertools.islice(frames, index, None), None)
    if found is None:
        count = sum(1 for _ in waymo_v2.read_range_image_frames(root, split, context, labels=False))
        raise FrameNotFoundError(f"frame {index} out of range: segment {context} holds {count} frames")
    return _waymo_scene(found, f"{context} frame {index}")


def _load_nuscenes(root: Path, frame: int | str, version: str, nsweeps: int) -> FrameScene:
    from pointformer.data.formats.nuscenes import NuScenesReader

    reader = NuScenesReader(root, version)
    tokens = reader.sample_tokens()
    if str(frame) in set(tokens):
        token = str(frame)
    else:
        try:
            index = _index(frame)
        except FrameNotFoundError:
            message = f"{frame!r} is neither a sample token nor an index of {root} ({version})"
            raise FrameNotFoundError(message) from None
        if index >= len(tokens):
            raise FrameNotFoundError(f"frame {index} out of range: {root} ({version}) holds {len(tokens)} samples")
        token = tokens[index]
    sample = reader.sample(token, nsweeps=nsweeps)
    return FrameScene(
        points=sample.points,
        intensity=sample.points[:, 3],
        gt_boxes=sample.boxes[:, :7],
        gt_names=tuple(n or c for n, c in zip(sample.names, sample.category_names, strict=True)),
        title=f"{sample.scene_name} sample {token}",
    )


def _load_converted(root: Path, frame: int | str, split: str | None, nsweeps: int) -> FrameScene:
    from pointformer.data import layout as L

    meta = L.read_meta(root)
    splits = sorted(meta.get("splits", {}))
    if split is None:
        if len(splits) != 1:
            raise ValueError(f"{root} is a converted root with several splits: pass --split (one of {splits})")
        split = splits[0]
    elif split not in splits:
        raise FrameNotFoundError(f"no split {split!r} in {root} (has {splits})")
    records = L.read_frame_table(root, split)
    key = str(frame)
    if key in records.frame_id:
        index = records.frame_id.index(key)
    else:
        tokens = []
        if meta.get("dataset") == "nuscenes":
            tokens = L.read_frame_columns(root, split, ["sample_token"])["sample_token"]
        if key in tokens:
            index = tokens.index(key)
        else:
            try:
                index = _index(frame)
            except FrameNotFoundError:
                message = f"{frame!r} is neither a frame id, a sample token nor an index of {root} ({split})"
                raise FrameNotFoundError(message) from None
            if index >= len(records):
                raise FrameNotFoundError(f"frame {index} out of range: {root} ({split}) holds {len(records)} frames")
    rec = records[index]
    points = L.load_points(root, rec)
    chunks = [points]
    to_frame = np.linalg.inv(rec.pose)
    for sweep in rec.sweeps[: max(nsweeps - 1, 0)]:
        pts = L.load_points(root, sweep).copy()
        m = to_frame @ sweep.pose
        pts[:, :3] = (pts[:, :3].astype(np.float64) @ m[:3, :3].T + m[:3, 3]).astype(np.float32)
        chunks.append(pts)
    points = np.concatenate(chunks)
    intensity = points[:, 3] if "intensity" in meta.get("point_features", ()) else None
    return FrameScene(
        points=points,
        intensity=intensity,
        gt_boxes=rec.boxes[:, :7],
        gt_names=tuple(str(n) for n in rec.names),
        title=f"{rec.frame_id} ({meta.get('dataset', '?')} {split})",
    )


def load_frame_scene(
    data: str | os.PathLike,
    frame: int | str,
    *,
    split: str | None = None,
    context: str | None = None,
    version: str = "v1.0-mini",
    nsweeps: int = 1,
) -> FrameScene:
    """The ``FrameScene`` (points and ground truth) of one frame of ``data``; see the module
    docstring for the sources and what ``frame`` means for each.

    Raises:
        FileNotFoundError: ``data`` does not exist.
        FrameNotFoundError: no such frame.
        ValueError: ``data`` is not a recognized source, or ``split``/``context`` are missing.
        DataFormatError: the files are malformed.
    """
    path = Path(data)
    if not path.exists():
        raise FileNotFoundError(f"no such file or directory: {path}")
    if path.is_file() and path.suffix == ".tfrecord":
        return _load_waymo_v1(path, frame)
    if path.is_dir() and (path / "meta.json").is_file():
        return _load_converted(path, frame, split, nsweeps)
    if path.is_dir() and (path / version / "sample.json").is_file():
        return _load_nuscenes(path, frame, version, nsweeps)
    if path.is_dir() and any((p / "vehicle_pose").is_dir() for p in path.iterdir()):
        return _load_waymo_v2(path, frame, split, context)
    raise ValueError(
        f"{path}: not a Waymo v1 .tfrecord file, a Waymo v2 root (<root>/<split>/vehicle_pose/), a nuScenes "
        f"dataroot (<root>/{version}/sample.json) or a converted root (<root>/meta.json)"
    )


def load_predictions(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray, tuple[str, ...]]:
    """``(boxes (K, 7) float32, scores (K,) float32, names)`` from a predictions JSON file (format in
    the module docstring). Raises ValueError naming the file on a malformed one."""
    try:
        with open(path) as f:
            obj = json.load(f)
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: not JSON: {e}") from None
    if not isinstance(obj, dict) or "boxes" not in obj:
        raise ValueError(f'{path}: expected an object {{"boxes": [[x, y, z, dx, dy, dz, heading], ...], ...}}')
    try:
        boxes = np.asarray(obj["boxes"], dtype=np.float32).reshape(-1, 7) if obj["boxes"] else np.zeros((0, 7))
    except (ValueError, TypeError):
        raise ValueError(f"{path}: boxes must be a list of [x, y, z, dx, dy, dz, heading]") from None
    k = len(boxes)
    scores = np.asarray(obj.get("scores", [1.0] * k), dtype=np.float32).reshape(-1)
    names = tuple(str(n) for n in obj.get("names", [""] * k))
    if len(scores) != k or len(names) != k:
        raise ValueError(f"{path}: {k} boxes but {len(scores)} scores and {len(names)} names")
    return boxes.astype(np.float32), scores, names


def has_display() -> bool:
    """Whether a window can be opened (an X or Wayland display is set)."""
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


def add_frame_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--data", required=True, help="Waymo v1 .tfrecord, Waymo v2 root, nuScenes dataroot or converted root"
    )
    parser.add_argument(
        "--frame", required=True, help="frame index (nuScenes: sample token or index; converted: also a frame id)"
    )
    parser.add_argument("--split", help="Waymo v2 / converted root: the split (e.g. training)")
    parser.add_argument("--context", help="Waymo v2: the segment (context name); needed if the split has several")
    parser.add_argument("--version", default="v1.0-mini", help="nuScenes: table version (default v1.0-mini)")
    parser.add_argument(
        "--nsweeps", type=int, default=1, help="nuScenes / converted: sweeps to accumulate, frame included (default 1)"
    )
    parser.add_argument("--pred", help="predictions JSON for this frame: {boxes: [[x,y,z,dx,dy,dz,heading],...], "
                        "scores: [...], names: [...]}")  # fmt: skip
    parser.add_argument("--min-score", type=float, default=0.0, help="hide predictions scored below this")
    parser.add_argument("--save", help="write a PNG here instead of opening a window")
    parser.add_argument("--bev", action="store_true", help="bird's-eye-view picture (no Open3D needed)")
    parser.add_argument("--color", choices=("height", "intensity"), default="height", help="point colours")
    parser.add_argument("--view", choices=("chase", "top", "front"), default="chase",
                        help="3D camera: behind and above the ego (chase, default), above, ahead")  # fmt: skip
    parser.add_argument("--width", type=int, default=1280, help="3D picture width (pixels)")
    parser.add_argument("--height", type=int, default=720, help="3D picture height (pixels)")
    parser.add_argument("--range", type=float, default=75.0, help="BEV: half-extent in metres (default 75)")
    parser.add_argument("--scale", type=float, default=6.0, help="BEV: pixels per metre (default 6)")


def run_frame(args: argparse.Namespace) -> int:
    """Loads the frame, adds predictions, and draws it: a BEV PNG (``--bev``), an off-screen PNG
    (``--save``, or when there is no display), or an Open3D window."""
    scene = load_frame_scene(
        args.data, args.frame, split=args.split, context=args.context, version=args.version, nsweeps=args.nsweeps
    )
    if args.pred:
        scene = scene.with_predictions(*load_predictions(args.pred)).filter_predictions(args.min_score)
    counts = f"{len(scene.points)} points, {len(scene.gt_boxes)} GT boxes, {len(scene.pred_boxes)} predictions"
    summary = f"{scene.title}: {counts}"
    save = args.save
    if save is None and (args.bev or not has_display()):
        stem = f"frame-{args.frame}" if len(str(args.frame)) <= 12 else f"frame-{str(args.frame)[:12]}"
        save = os.path.join("outputs", f"{stem}{'-bev' if args.bev else ''}.png")
    start = time.perf_counter()
    if args.bev:
        from pointformer.vis.bev import BevGrid, render_frame_bev, write_png

        r = args.range
        image = render_frame_bev(scene, BevGrid((-r, r), (-r, r), args.scale), color=args.color)
        write_png(save, image)
    elif save is not None:
        from pointformer.vis.open3d_viewer import render_offscreen

        image = render_offscreen(scene, save, args.width, args.height, view=args.view, color=args.color)
    else:
        from pointformer.vis.open3d_viewer import show

        print(summary)
        show(scene, view=args.view, color=args.color)
        return 0
    print(f"{summary} -> {save} ({image.shape[1]}x{image.shape[0]}, {time.perf_counter() - start:.2f} s)")
    return 0
