"""Backbones: sparse voxel encoders (FlatFormer, DSVT; the spconv-based ScatterFormer and
VoxelResBackBone8x from their own modules) and dense BEV backbones (SECOND, BEVResBackbone,
CascadeDEDBackbone)."""

from pointformer.models.backbones.bev_res import BEVResBackbone
from pointformer.models.backbones.cascade_ded import CascadeDEDBackbone
from pointformer.models.backbones.dsvt import DSVT
from pointformer.models.backbones.flatformer import FlatFormer
from pointformer.models.backbones.second import SECOND

__all__ = ["DSVT", "SECOND", "BEVResBackbone", "CascadeDEDBackbone", "FlatFormer"]
