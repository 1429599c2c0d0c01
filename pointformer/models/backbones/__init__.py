"""Backbones: sparse voxel encoders (FlatFormer, DSVT) and dense BEV backbones (SECOND)."""

from pointformer.models.backbones.dsvt import DSVT
from pointformer.models.backbones.flatformer import FlatFormer
from pointformer.models.backbones.second import SECOND

__all__ = ["DSVT", "SECOND", "FlatFormer"]
