"""``build_detector``: a validated ``Config`` -> a ``Detector``.

The builder derives what follows from other parts, so a config never types it twice: input
channels of each part from the previous part's ``out_channels``, the voxel encoder's input from
the dataset's point features, the grid from ``voxelization``, the head's classes from its tasks
(checked against the dataset's).
"""

from __future__ import annotations

from pointformer.config import Config
from pointformer.models.detector import Detector
from pointformer.models.registry import BACKBONES_2D, BACKBONES_3D, BEV_MAPPERS, HEADS, NECKS, VOXEL_ENCODERS


def _register_builtin() -> None:
    # Imported here, not at module import, so that registries stay cheap to import and the parts
    # can import the registry if they register themselves.
    from pointformer.models.backbones.bev_res import BEVResBackbone
    from pointformer.models.backbones.cascade_ded import CascadeDEDBackbone
    from pointformer.models.backbones.dsvt import DSVT
    from pointformer.models.backbones.flatformer import FlatFormer
    from pointformer.models.backbones.identity import IdentityBackbone3D
    from pointformer.models.backbones.scatterformer import ScatterFormer
    from pointformer.models.backbones.second import SECOND
    from pointformer.models.backbones.sparse_resnet import VoxelResBackBone8x
    from pointformer.models.bev.scatter import ScatterToBEV
    from pointformer.models.encoders.dynamic_vfe import DynamicVFE
    from pointformer.models.encoders.mean_vfe import MeanVFE
    from pointformer.models.encoders.pillar_vfe import PillarVFE
    from pointformer.models.heads.center_head import CenterHead
    from pointformer.models.heads.transfusion_head import TransFusionHead
    from pointformer.models.necks.identity import IdentityNeck
    from pointformer.models.necks.second_fpn import SECONDFPN

    # ScatterFormer's attention pillar pooling is part of its 3D backbone (the official BACKBONE_3D
    # scope), not a BEV mapper: its BEV mapping is a plain ScatterToBEV of the pooled pillars.
    for registry, cls in (
        (VOXEL_ENCODERS, DynamicVFE),
        (VOXEL_ENCODERS, MeanVFE),
        (VOXEL_ENCODERS, PillarVFE),
        (BACKBONES_3D, FlatFormer),
        (BACKBONES_3D, DSVT),
        (BACKBONES_3D, ScatterFormer),
        (BACKBONES_3D, VoxelResBackBone8x),
        (BACKBONES_3D, IdentityBackbone3D),
        (BEV_MAPPERS, ScatterToBEV),
        (BACKBONES_2D, SECOND),
        (BACKBONES_2D, BEVResBackbone),
        (BACKBONES_2D, CascadeDEDBackbone),
        (NECKS, SECONDFPN),
        (NECKS, IdentityNeck),
        (HEADS, CenterHead),
        (HEADS, TransFusionHead),
    ):
        if cls.__name__ not in registry.names():
            registry.register(cls)


def build_detector(cfg: Config) -> Detector:
    """The detector of ``cfg`` (parts named in ``cfg.model``, see ``pointformer.config``)."""
    _register_builtin()
    m, where = cfg.model, cfg.path or "<config>"
    features = tuple(cfg.data.options.get("point_features", ("x", "y", "z", "intensity", "elongation")))
    # PillarVFE pads each pillar to the voxelization's point cap: it takes the cap from there.
    vfe = VOXEL_ENCODERS.build(m["voxel_encoder"], f"{where}: model.voxel_encoder", in_channels=len(features),
                               grid=cfg.grid, max_points_per_voxel=cfg.max_points_per_voxel)  # fmt: skip
    backbone3d = BACKBONES_3D.build(m["backbone3d"], f"{where}: model.backbone3d", in_channels=vfe.out_channels,
                                    sparse_shape=cfg.grid.shape)  # fmt: skip
    bev = BEV_MAPPERS.build(m["bev"], f"{where}: model.bev", in_channels=backbone3d.out_channels,
                            num_z=getattr(backbone3d, "out_spatial_shape", cfg.grid.shape)[0],
                            sparse_shape=cfg.grid.shape)  # fmt: skip
    backbone2d = BACKBONES_2D.build(m["backbone2d"], f"{where}: model.backbone2d", in_channels=bev.out_channels)
    neck = NECKS.build(m["neck"], f"{where}: model.neck", in_channels=backbone2d.out_channels)
    class_names = cfg.class_names or tuple(n for task in m["head"].get("tasks", ()) for n in task)
    # A head that takes class_names (TransFusionHead) gets the dataset's; CenterHead has its tasks.
    head = HEADS.build(m["head"], f"{where}: model.head", in_channels=neck.out_channels, grid=cfg.grid,
                       class_names=class_names)  # fmt: skip
    return Detector(
        cfg.grid, class_names, vfe, backbone3d, bev, backbone2d, neck, head,
        max_points_per_voxel=cfg.max_points_per_voxel, max_voxels=cfg.max_voxels,
    )  # fmt: skip
