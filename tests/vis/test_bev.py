"""BEV partition pictures: the PNG encoding and the colouring by group."""

import struct
import zlib

import numpy as np
import pytest
import torch

from pointformer.ops.grouping import partition_from_sorted
from pointformer.vis import partition_colors, render_partition_bev, write_png


def read_png(path) -> np.ndarray:
    """A minimal decoder for what write_png writes (8-bit RGB, filter 0)."""
    data = open(path, "rb").read()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, chunks = 8, {}
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind, body = data[pos + 4 : pos + 8], data[pos + 8 : pos + 8 + length]
        (crc,) = struct.unpack(">I", data[pos + 8 + length : pos + 12 + length])
        assert crc == zlib.crc32(kind + body) & 0xFFFFFFFF
        chunks[kind] = chunks.get(kind, b"") + body
        pos += 12 + length
    width, height, depth, color_type = struct.unpack(">IIBB", chunks[b"IHDR"][:10])
    assert (depth, color_type) == (8, 2)
    raw = np.frombuffer(zlib.decompress(chunks[b"IDAT"]), dtype=np.uint8).reshape(height, 1 + 3 * width)
    assert np.all(raw[:, 0] == 0)
    return raw[:, 1:].reshape(height, width, 3)


def test_png_round_trip(tmp_path):
    image = np.random.default_rng(0).integers(0, 256, (7, 11, 3), dtype=np.uint8)
    path = tmp_path / "sub" / "image.png"
    write_png(str(path), image)
    assert np.array_equal(read_png(path), image)
    assert [p.name for p in path.parent.iterdir()] == ["image.png"], "no temporary file left behind"
    with pytest.raises(ValueError, match=r"\(H, W, 3\) uint8"):
        write_png(str(path), image.astype(np.float32))


def test_each_group_has_one_colour():
    # Two samples on a 4 x 6 grid; groups of 5 over sample 0 in row-major order.
    ys, xs = torch.meshgrid(torch.arange(4), torch.arange(6), indexing="ij")
    coords0 = torch.stack(
        [torch.zeros(24, dtype=torch.long), torch.zeros(24, dtype=torch.long), ys.flatten(), xs.flatten()], 1
    )
    coords = torch.cat([coords0, torch.tensor([[1, 0, 0, 0]])]).int()
    sample = coords[:, 0].long()
    p = partition_from_sorted(torch.arange(25), sample, 2, 5)
    image = render_partition_bev(coords, p, (1, 4, 6), sample=0, scale=1)[::-1]  # back to y up = row index
    colors = partition_colors(p.num_groups)
    for voxel in range(24):
        group = voxel // 5
        assert np.array_equal(image[coords[voxel, 2], coords[voxel, 3]], colors[group])
    assert len({tuple(c) for c in colors[:5]}) == 5, "groups get distinct colours"
    empty = render_partition_bev(coords, p, (1, 4, 6), sample=1, scale=3)
    assert empty.shape == (12, 18, 3) and (empty != 255).any(axis=2).sum() == 9  # one voxel, 3 x 3 pixels
