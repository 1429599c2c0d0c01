"""Typed containers passed between pointformer's stages."""

from pointformer.structures.boxes import Boxes3D, rotation_z, wrap_angle
from pointformer.structures.grid import VoxelGrid
from pointformer.structures.partition import Partition
from pointformer.structures.sparse_voxels import SparseVoxels

__all__ = ["Boxes3D", "Partition", "SparseVoxels", "VoxelGrid", "rotation_z", "wrap_angle"]
