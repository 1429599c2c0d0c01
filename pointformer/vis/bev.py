"""Bird's-eye-view pictures written as PNG without plotting libraries: voxel groupings
(``render_partition_bev``) and frames with their boxes (``render_frame_bev``)."""

from __future__ import annotations

import os
import struct
import zlib
from dataclasses import dataclass

import numpy as np
import torch

from pointformer.structures.partition import Partition
from pointformer.utils.atomic import write_atomic
from pointformer.vis.scene import BACKGROUND_DARK, GT_COLOR, PRED_COLOR, box_corners, point_colors

_BACKGROUND = (255, 255, 255)


def partition_colors(num_groups: int, seed: int = 0) -> np.ndarray:
    """``(G, 3)`` uint8 colours: random hues at high saturation, so neighbouring groups differ."""
    rng = np.random.default_rng(seed)
    hue = rng.permutation(num_groups) / max(num_groups, 1)
    sat = 0.55 + 0.35 * rng.random(num_groups)
    val = 0.65 + 0.3 * rng.random(num_groups)
    return (_hsv_to_rgb(hue, sat, val) * 255).astype(np.uint8)


def _hsv_to_rgb(h: np.ndarray, s: np.ndarray, v: np.ndarray) -> np.ndarray:
    i = np.floor(h * 6).astype(int) % 6
    f = h * 6 - np.floor(h * 6)
    p, q, t = v * (1 - s), v * (1 - f * s), v * (1 - (1 - f) * s)
    table = np.stack([np.stack(c, axis=1) for c in ((v, t, p), (q, v, p), (p, v, t), (p, q, v), (t, p, v), (v, p, q))])
    return table[i, np.arange(h.shape[0])]


def render_partition_bev(
    coords: torch.Tensor, partition: Partition, spatial_shape: tuple[int, int, int], sample: int = 0, scale: int = 2
) -> np.ndarray:
    """``(Y * scale, X * scale, 3)`` uint8 picture of one sample's voxels, coloured by group.

    Rows are y (flipped so that +y, the vehicle's left, is up) and columns x (forward to the right).
    Voxels stacked in z are drawn by the last one listed; each voxel's group is the group whose
    variable-length view holds it.
    """
    _, size_y, size_x = spatial_shape
    group_of_voxel = torch.empty(partition.num_voxels, dtype=torch.int64)
    group_ids = torch.repeat_interleave(torch.arange(partition.num_groups), partition.group_lengths.cpu())
    group_of_voxel[partition.permutation.cpu()] = group_ids
    c = coords.cpu().long()
    mine = c[:, 0] == sample
    colors = partition_colors(partition.num_groups)
    image = np.empty((size_y, size_x, 3), dtype=np.uint8)
    image[:] = _BACKGROUND
    image[c[mine, 2].numpy(), c[mine, 3].numpy()] = colors[group_of_voxel[mine].numpy()]
    image = image[::-1]
    return np.repeat(np.repeat(image, scale, axis=0), scale, axis=1)


def write_png(path: str, image: np.ndarray) -> None:
    """Writes an ``(H, W, 3)`` uint8 image as PNG, atomically (temporary file, then rename)."""
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"write_png needs an (H, W, 3) uint8 image, got {image.dtype} {image.shape}")
    height, width = image.shape[:2]
    raw = b"".join(b"\x00" + image[row].tobytes() for row in range(height))  # filter 0 per row

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)  # 8-bit RGB
    data = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw, 6)) + chunk(b"IEND", b"")
    write_atomic(path, data)


def read_png(path: str | os.PathLike) -> np.ndarray:
    """Reads an ``(H, W, 3)`` uint8 image written by ``write_png`` (8-bit RGB, no interlace, filter 0
    on every row; CRCs checked). Not a general PNG decoder: other PNGs raise ValueError."""
    with open(path, "rb") as f:
        data = f.read()
    if data[:8] != b"\x89PNG\r\n\x1a\n":
        raise ValueError(f"{path}: not a PNG file")
    pos, chunks = 8, {}
    while pos + 12 <= len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind, body = data[pos + 4 : pos + 8], data[pos + 8 : pos + 8 + length]
        (crc,) = struct.unpack(">I", data[pos + 8 + length : pos + 12 + length])
        if crc != zlib.crc32(kind + body) & 0xFFFFFFFF:
            raise ValueError(f"{path}: bad CRC in chunk {kind!r}")
        chunks[kind] = chunks.get(kind, b"") + body
        pos += 12 + length
    width, height, depth, color_type, _, _, interlace = struct.unpack(">IIBBBBB", chunks[b"IHDR"])
    if (depth, color_type, interlace) != (8, 2, 0):
        raise ValueError(f"{path}: only 8-bit RGB non-interlaced PNGs are read, got {depth=} {color_type=}")
    raw = np.frombuffer(zlib.decompress(chunks[b"IDAT"]), dtype=np.uint8).reshape(height, 1 + 3 * width)
    if np.any(raw[:, 0] != 0):
        raise ValueError(f"{path}: only PNG filter 0 (none) is supported")
    return raw[:, 1:].reshape(height, width, 3).copy()


# ---------------------------------------------------------------------------------------------
# Frames: points, ground-truth and predicted boxes seen from above
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class BevGrid:
    """Maps vehicle-frame metres to pixels of a bird's-eye-view picture.

    Columns are x (forward to the right), rows are y flipped (+y, the vehicle's left, is up), as
    in ``render_partition_bev``. ``x_range`` / ``y_range`` are ``(min, max)`` metres;
    ``pixels_per_metre`` the scale.
    """

    x_range: tuple[float, float] = (-75.0, 75.0)
    y_range: tuple[float, float] = (-75.0, 75.0)
    pixels_per_metre: float = 6.0

    @property
    def shape(self) -> tuple[int, int]:
        """``(H, W)`` pixels."""
        s = self.pixels_per_metre
        return (
            max(1, int(round((self.y_range[1] - self.y_range[0]) * s))),
            max(1, int(round((self.x_range[1] - self.x_range[0]) * s))),
        )

    def to_pixels(self, xy: np.ndarray) -> np.ndarray:
        """``(..., 2)`` float64 ``(row, col)`` pixel coordinates (not rounded) of ``(..., 2)`` metres."""
        xy = np.asarray(xy, dtype=np.float64)
        col = (xy[..., 0] - self.x_range[0]) * self.pixels_per_metre
        row = (self.y_range[1] - xy[..., 1]) * self.pixels_per_metre
        return np.stack([row, col], axis=-1)


def _to_uint8(color) -> np.ndarray:
    return np.clip(np.round(np.asarray(color, dtype=np.float64) * 255), 0, 255).astype(np.uint8)


def draw_segments(image: np.ndarray, start: np.ndarray, end: np.ndarray, color, thickness: int = 1) -> None:
    """Draws ``(L, 2)`` -> ``(L, 2)`` ``(row, col)`` pixel segments into ``image`` in place.

    Each segment is sampled every half pixel; ``thickness`` > 1 widens it to a square brush.
    Parts outside the image are clipped.
    """
    start, end = np.asarray(start, np.float64).reshape(-1, 2), np.asarray(end, np.float64).reshape(-1, 2)
    if len(start) == 0:
        return
    steps = int(np.ceil(np.abs(end - start).max() * 2)) + 1
    t = np.linspace(0.0, 1.0, steps)[None, :, None]
    pts = np.round(start[:, None] + (end - start)[:, None] * t).reshape(-1, 2).astype(np.int64)
    if thickness > 1:
        lo = -(thickness // 2)
        offsets = np.stack(np.meshgrid(np.arange(lo, lo + thickness), np.arange(lo, lo + thickness)), -1).reshape(-1, 2)
        pts = (pts[:, None] + offsets[None]).reshape(-1, 2)
    h, w = image.shape[:2]
    inside = (pts[:, 0] >= 0) & (pts[:, 0] < h) & (pts[:, 1] >= 0) & (pts[:, 1] < w)
    image[pts[inside, 0], pts[inside, 1]] = _to_uint8(color)


def draw_bev_boxes(image: np.ndarray, grid: BevGrid, boxes: np.ndarray, color, thickness: int = 2) -> None:
    """Draws ``(M, 7)`` boxes as rotated rectangles with a heading tick (centre -> front edge's
    midpoint), in place."""
    if len(boxes) == 0:
        return
    corners = grid.to_pixels(box_corners(boxes)[:, :4, :2])  # (M, 4, 2) counter-clockwise
    start = corners.reshape(-1, 2)
    end = np.roll(corners, -1, axis=1).reshape(-1, 2)
    centre = corners.mean(axis=1)
    front = corners[:, 1:3].mean(axis=1)  # corners 1, 2: front-right, front-left
    draw_segments(image, np.concatenate([start, centre]), np.concatenate([end, front]), color, thickness)


def render_frame_bev(
    scene,
    grid: BevGrid | None = None,
    color: str = "height",
    value_range: tuple[float, float] | None = None,
    background=BACKGROUND_DARK,
    point_size: int = 1,
    box_thickness: int = 2,
) -> np.ndarray:
    """``(H, W, 3)`` uint8 bird's-eye view of a ``FrameScene``.

    Points are coloured by ``scene.point_colors`` (height or intensity) and drawn highest
    last (so roofs cover the ground below them); then ground-truth boxes (``GT_COLOR``), then
    predictions (``PRED_COLOR``) as rotated rectangles with a tick from the centre to the front
    edge. Orientation and scale: see ``BevGrid``.
    """
    grid = grid or BevGrid()
    h, w = grid.shape
    image = np.empty((h, w, 3), dtype=np.uint8)
    image[:] = _to_uint8(background)
    xyz = scene.xyz
    if len(xyz):
        colors = (np.clip(point_colors(scene, color, value_range), 0, 1) * 255).round().astype(np.uint8)
        order = np.argsort(xyz[:, 2], kind="stable")
        rc = np.floor(grid.to_pixels(xyz[order, :2])).astype(np.int64)
        colors = colors[order]
        lo = -(point_size // 2)
        for dr in range(lo, lo + point_size):
            for dc in range(lo, lo + point_size):
                r, c = rc[:, 0] + dr, rc[:, 1] + dc
                inside = (r >= 0) & (r < h) & (c >= 0) & (c < w)
                image[r[inside], c[inside]] = colors[inside]
    draw_bev_boxes(image, grid, scene.gt_boxes, GT_COLOR, box_thickness)
    draw_bev_boxes(image, grid, scene.pred_boxes, PRED_COLOR, box_thickness)
    return image
