"""From sparse voxels to dense bird's-eye-view maps."""

from pointformer.models.bev.scatter import ScatterToBEV

__all__ = ["ScatterToBEV"]
