"""Bird's-eye-view rendering of voxel groupings, written as PNG without plotting libraries."""

from __future__ import annotations

import os
import struct
import tempfile
import zlib

import numpy as np
import torch

from pointformer.structures.partition import Partition

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
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, suffix=".png.tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise
