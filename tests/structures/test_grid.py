"""VoxelGrid: the grid shape is derived once, and bad ranges are rejected with clear errors."""

import pytest

from pointformer.structures import VoxelGrid


def test_waymo_pillar_and_voxel_grids():
    pillars = VoxelGrid((-74.88, -74.88, -2, 74.88, 74.88, 4.0), (0.32, 0.32, 6.0))
    assert pillars.shape == (1, 468, 468) and pillars.shape_xyz == (468, 468, 1)
    voxels = VoxelGrid((-75.2, -75.2, -2, 75.2, 75.2, 4.0), (0.1, 0.1, 0.15))
    assert voxels.shape == (40, 1504, 1504)
    assert voxels.num_cells == 40 * 1504 * 1504
    assert voxels.range_min == (-75.2, -75.2, -2.0) and voxels.range_max == (75.2, 75.2, 4.0)


@pytest.mark.parametrize(
    "rng,size,message",
    [
        (
            (-74.88, -74.88, -2, 74.88, 74.88, 4),
            (0.1, 0.1, 0.15),
            r"voxel_size\[0\] = 0.1 does not divide the x extent",
        ),
        ((0, 0, 0, 10, 10, 10), (1, 1, 0), r"voxel_size\[2\] \(z\) must be > 0"),
        ((0, 5, 0, 10, 5, 10), (1, 1, 1), "y_max .* must be greater than y_min"),
        ((0, 0, 0, 10, 10), (1, 1, 1), "point_cloud_range must have 6 numbers"),
        ((0, 0, 0, 10, 10, 10), (1, 1), "voxel_size must have 3 numbers"),
        ((0, 0, 0, float("nan"), 10, 10), (1, 1, 1), "must be finite"),
    ],
)
def test_invalid_grids(rng, size, message):
    with pytest.raises(ValueError, match=message):
        VoxelGrid(rng, size)
