"""Point and voxel encoders: from points to per-voxel features."""

from pointformer.models.encoders.dynamic_vfe import DynamicVFE

__all__ = ["DynamicVFE"]
