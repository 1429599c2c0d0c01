"""Point and voxel encoders: from points to per-voxel features."""

from pointformer.models.encoders.dynamic_vfe import DynamicVFE
from pointformer.models.encoders.pillar_vfe import PillarVFE

__all__ = ["DynamicVFE", "PillarVFE"]
