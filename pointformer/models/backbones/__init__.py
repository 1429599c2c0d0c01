"""Backbones: sparse voxel encoders (FlatFormer) and dense BEV backbones (SECOND)."""

from pointformer.models.backbones.flatformer import FlatFormer
from pointformer.models.backbones.second import SECOND

__all__ = ["SECOND", "FlatFormer"]
