"""OpenPCDet's checkpoint names (and those of its forks: the DSVT and ScatterFormer repositories).

OpenPCDet's detectors hold their parts as ``vfe``, ``backbone_3d``, ``map_to_bev_module``,
``backbone_2d`` and ``dense_head``; a checkpoint is ``torch.save({"model_state": state_dict,
"optimizer_state": ..., "epoch": int, "it": int, "version": str})``. Its detector also registers a
``global_step`` buffer (a 1-element int64 tensor counting training steps) that pointformer has no use
for: it is consumed on the way in and written (from the checkpoint's iteration, else 0) on the way out.

Official modules, as read from OpenPCDet's sources, and the pointformer parts they correspond to:

* ``DynamicVoxelVFE`` / ``DynamicPillarVFE`` (``DynPillarVFE``) / DSVT's ``DynPillarVFE3D``
  (``vfe.pfn_layers.<i>``: ``PFNLayerV2`` with ``linear`` (no bias) and ``norm`` BatchNorm1d) =
  ``DynamicVFE`` ``layers.<i>.{0,1}``. Both order a point's inputs as its features, the offset to the
  voxel's point mean, the offset to the voxel centre.
* ``PillarVFE`` (``vfe.pfn_layers.<i>``: ``PFNLayer``, the same ``linear`` and ``norm`` tensors) =
  ``PillarVFE``, which pools the zero padding rows of OpenPCDet's ``(M, T, F)`` pillars as it does.
* ``MeanVFE``, ``HeightCompression``, ``PointPillarScatter`` / ``PointPillarScatter3d``: no tensors;
  pillar detectors have no ``backbone_3d`` (pointformer ``IdentityBackbone3D``).
* ``DSVT`` (``backbone_3d``): per stage ``stage_<s>.<b>`` blocks of two ``encoder_list.<l>`` layers
  (``win_attn`` = ``SetAttention``: ``self_attn`` nn.MultiheadAttention, ``linear1``/``linear2`` FFN,
  ``norm1`` after attention, ``norm2`` after the FFN; then the layer's ``norm``), a
  ``residual_norm_stage_<s>.<b>`` LayerNorm around each block, ``stage_<s>_reduction`` attention
  pooling (``self_attn``, ``norm``, ``pos_embedding (P, C)``) and the input layer's
  ``posembed_layers.<s>.<b>.<shift>.position_embedding_head`` (Linear, BatchNorm1d, ReLU, Linear).
* ``VoxelResBackBone8x``: the same names as pointformer's (``conv_input``, ``conv1``-``conv4``,
  ``conv_out``); sparse-conv weights in the checkpoint's spconv layout.
* ``BaseBEVResBackbone`` (``backbone_2d``): ``blocks.<i>.<j>`` ``BasicBlock`` (``conv1``, ``bn1``,
  ``conv2``, ``bn2``, ``downsample_layer.{0,1}``) and the upsampling ``deblocks.<i>.{0,1}``
  (ConvTranspose2d, BatchNorm2d) = ``BEVResBackbone`` + the ``SECONDFPN`` neck.
* ``BaseBEVBackbone``: ``blocks.<i>`` = ZeroPad2d, then (Conv2d, BatchNorm2d, ReLU) triples, so unit
  ``j`` of stage ``i`` has its conv at ``blocks.<i>.<1 + 3j>`` and its norm at ``<2 + 3j>`` = ``SECOND``
  (``residual: false``) + ``SECONDFPN``.
* ScatterFormer's ``ScatterFormer`` (``backbone_3d``): the sparse-conv stem ``cpe`` (pointformer
  ``stem``), ``stage1`` = [``ScatterFormerLayer3x`` (per block ``norm_layers.<i>`` BatchNorm1d,
  ``attn_layers.<i>`` (``qkv`` without bias, ``proj``), ``cffn_layers.<i>`` (``bn``, depthwise sparse
  convs ``conv_k`` 3x3x3 / ``conv_h`` (1, 1, K) along x / ``conv_w`` (1, K, 1) along y, each weight
  ``(kz, ky, kx, C/4)``, ``bn2``, ``fc1``, ``fc2``)), BatchNorm1d, the strided ``SparseConv3d``],
  ``stage2`` = [layers, BatchNorm1d], and the pillar pooling ``app`` (``self_attn``, ``norm``,
  ``pos_embedding`` nn.Embedding(Z, C)).
* HEDNet's ``CascadeDEDBackbone`` (ScatterFormer's ``backbone_2d``): ``layers.<l>`` ``DEDBackbone`` with
  ``encoder.<i>.<j>`` BasicBlocks (``downsample_layer`` = pointformer ``projection``), ``decoder.<i>``
  (ConvTranspose2d, BatchNorm2d) and ``decoder_norm.<i>``: pointformer's names otherwise.
* ``CenterHead`` (``dense_head``): ``shared_conv.{0,1}`` and per class group
  ``heads_list.<t>.<name>`` towers with the same layout as pointformer's, named ``hm`` (pointformer
  ``heatmap``), ``center``, ``center_z`` (``height``), ``dim``, ``rot``, ``vel``, ``iou``. OpenPCDet's
  heading output is ``(cos, sin)``, pointformer's ``(sin, cos)``: the last conv of ``rot`` has its two
  output channels swapped.
* ``TransFusionHead`` (``dense_head``; OpenPCDet's and the DSVT repository's ``transfusion_head.py``):
  ``shared_conv``, ``heatmap_head.0`` (``BasicBlock2D``: ``conv``, ``bn``; pointformer ``0.0``, ``0.1``)
  and ``heatmap_head.1``, ``class_encoding``, ``decoder`` (``self_attn``, ``multihead_attn``
  (pointformer ``cross_attn``), ``linear1``/``linear2``, ``norm1``-``norm3``, ``self_posembed`` /
  ``cross_posembed`` ``.position_embedding_head`` (pointformer ``query_pos_embed`` / ``key_pos_embed``
  ``.mlp``)) and ``prediction_head.<name>`` towers with pointformer's layout. Its heading is
  ``(sin, cos)`` like pointformer's: no channel is reordered.
"""

from __future__ import annotations

import torch
from torch import nn

from pointformer.checkpoints.mapping import SWAP01, Rule

FORMAT = "openpcdet"
STATE_KEY = "model_state"
# Tensors an official checkpoint carries that pointformer has no use for, and how to recreate them.
IGNORED_KEYS = ("global_step",)

PART_PREFIX = {
    "voxel_encoder": "vfe.",
    "backbone3d": "backbone_3d.",
    "bev": "map_to_bev_module.",
    "backbone2d": "backbone_2d.",
    "neck": "backbone_2d.",
    "head": "dense_head.",
}

_HEAD_NAMES = {"heatmap": "hm", "height": "center_z"}


def _head_rules() -> list[Rule]:
    def tower(m) -> str:
        name = m.group(2)
        return f"heads_list.{m.group(1)}.{_HEAD_NAMES.get(name, name)}.{m.group(3)}"

    return [
        Rule(r"shared_conv\.(.+)", r"shared_conv.\1"),
        # The last conv of the heading tower is a direct child (hidden convs are Sequential(conv, bn, relu)).
        Rule(r"task_heads\.(\d+)\.heads\.(rot)\.(\d+\.(?:weight|bias))", tower, SWAP01),
        Rule(r"task_heads\.(\d+)\.heads\.(\w+)\.(.+)", tower),
    ]


def _second_rules() -> list[Rule]:
    def unit(m) -> str:
        stage, j, layer, rest = int(m.group(1)), int(m.group(2)), int(m.group(3)), m.group(4)
        if layer not in (0, 1):
            raise ValueError(f"unexpected SECOND unit layer {layer}")
        return f"blocks.{stage}.{1 + 3 * j + layer}.{rest}"

    return [Rule(r"stages\.(\d+)\.(\d+)\.([01])\.(.+)", unit)]


_PFN_RULES = [
    Rule(r"layers\.(\d+)\.0\.(.+)", r"pfn_layers.\1.linear.\2"),
    Rule(r"layers\.(\d+)\.1\.(.+)", r"pfn_layers.\1.norm.\2"),
]

RULES: dict[str, list[Rule]] = {
    "DynamicVFE": _PFN_RULES,
    "PillarVFE": _PFN_RULES,
    "MeanVFE": [],
    "IdentityBackbone3D": [],
    "ScatterToBEV": [],
    "IdentityNeck": [],
    "DSVT": [
        Rule(
            r"stages\.(\d+)\.(\d+)\.layers\.(\d+)\.attn\.attn\.(.+)",
            r"stage_\1.\2.encoder_list.\3.win_attn.self_attn.\4",
        ),
        Rule(
            r"stages\.(\d+)\.(\d+)\.layers\.(\d+)\.attn\.fc1\.(.+)", r"stage_\1.\2.encoder_list.\3.win_attn.linear1.\4"
        ),
        Rule(
            r"stages\.(\d+)\.(\d+)\.layers\.(\d+)\.attn\.fc2\.(.+)", r"stage_\1.\2.encoder_list.\3.win_attn.linear2.\4"
        ),
        Rule(
            r"stages\.(\d+)\.(\d+)\.layers\.(\d+)\.attn\.(norm[12])\.(.+)",
            r"stage_\1.\2.encoder_list.\3.win_attn.\4.\5",
        ),
        Rule(r"stages\.(\d+)\.(\d+)\.layers\.(\d+)\.norm\.(.+)", r"stage_\1.\2.encoder_list.\3.norm.\4"),
        Rule(r"stages\.(\d+)\.(\d+)\.norm\.(.+)", r"residual_norm_stage_\1.\2.\3"),
        Rule(
            r"pos_embeds\.(\d+)\.(\d+)\.(\d+)\.mlp\.(.+)",
            r"input_layer.posembed_layers.\1.\2.\3.position_embedding_head.\4",
        ),
        Rule(r"poolings\.(\d+)\.(in_proj_weight|in_proj_bias|out_proj\..+)", r"stage_\1_reduction.self_attn.\2"),
        Rule(r"poolings\.(\d+)\.(norm\..+|pos_embedding)", r"stage_\1_reduction.\2"),
    ],  # fmt: skip
    # Same names; its 5-D sparse-conv weights get the spconv layout transform (``convert``).
    "VoxelResBackBone8x": [Rule(r"(.+)", r"\1")],
    "BEVResBackbone": [
        Rule(r"stages\.(\d+)\.(\d+)\.projection\.(.+)", r"blocks.\1.\2.downsample_layer.\3"),
        Rule(r"stages\.(\d+)\.(\d+)\.((?:conv|bn)[12]\..+)", r"blocks.\1.\2.\3"),
    ],
    "SECOND": _second_rules(),
    "SECONDFPN": [Rule(r"blocks\.(\d+)\.([01])\.(.+)", r"deblocks.\1.\2.\3")],
    "ScatterFormer": [
        Rule(r"stem\.(.+)", r"cpe.\1"),
        Rule(r"stage([12])\.blocks\.(\d+)\.norm\.(.+)", r"stage\1.0.norm_layers.\2.\3"),
        Rule(r"stage([12])\.blocks\.(\d+)\.attn\.(.+)", r"stage\1.0.attn_layers.\2.\3"),
        Rule(r"stage([12])\.blocks\.(\d+)\.cwi\.norm\.(.+)", r"stage\1.0.cffn_layers.\2.bn.\3"),
        Rule(r"stage([12])\.blocks\.(\d+)\.cwi\.ffn_norm\.(.+)", r"stage\1.0.cffn_layers.\2.bn2.\3"),
        Rule(r"stage([12])\.blocks\.(\d+)\.cwi\.conv_xyz\.(.+)", r"stage\1.0.cffn_layers.\2.conv_k.\3"),
        Rule(r"stage([12])\.blocks\.(\d+)\.cwi\.conv_x\.(.+)", r"stage\1.0.cffn_layers.\2.conv_h.\3"),
        Rule(r"stage([12])\.blocks\.(\d+)\.cwi\.conv_y\.(.+)", r"stage\1.0.cffn_layers.\2.conv_w.\3"),
        Rule(r"stage([12])\.blocks\.(\d+)\.cwi\.(fc[12]\..+)", r"stage\1.0.cffn_layers.\2.\3"),
        Rule(r"stage([12])_norm\.(.+)", r"stage\1.1.\2"),
        Rule(r"downsample\.(.+)", r"stage1.2.\1"),
        Rule(r"pillar_pool\.attn\.(.+)", r"app.self_attn.\1"),
        Rule(r"pillar_pool\.(norm\..+|pos_embedding\.weight)", r"app.\1"),
    ],
    "CascadeDEDBackbone": [
        Rule(r"(layers\.\d+\.encoder\.\d+\.\d+)\.projection\.(.+)", r"\1.downsample_layer.\2"),
        Rule(r"(layers\.\d+\.(?:encoder|decoder|decoder_norm)\..+)", r"\1"),
    ],
    "CenterHead": _head_rules(),
    "TransFusionHead": [
        Rule(r"heatmap_head\.0\.0\.(.+)", r"heatmap_head.0.conv.\1"),
        Rule(r"heatmap_head\.0\.1\.(.+)", r"heatmap_head.0.bn.\1"),
        Rule(r"decoder\.cross_attn\.(.+)", r"decoder.multihead_attn.\1"),
        Rule(r"decoder\.query_pos_embed\.mlp\.(.+)", r"decoder.self_posembed.position_embedding_head.\1"),
        Rule(r"decoder\.key_pos_embed\.mlp\.(.+)", r"decoder.cross_posembed.position_embedding_head.\1"),
        Rule(r"((?:shared_conv|heatmap_head\.1|class_encoding|prediction_head)\..+)", r"\1"),
        Rule(r"(decoder\.(?:self_attn|linear[12]|norm[123])\..+)", r"\1"),
    ],
}


def rules_for(part: str, module: nn.Module) -> list[Rule]:
    """The rules of ``module`` (pointformer part ``part``); KeyError for a type OpenPCDet has no
    counterpart of here."""
    name = type(module).__name__
    rules = RULES[name]
    if name == "SECOND" and getattr(module, "residual", False):
        # FlatFormer's residual SECOND has no OpenPCDet counterpart.
        raise KeyError(name + " (residual)")
    return rules


def extra_official_tensors(iteration: int = 0) -> dict:
    """Tensors an OpenPCDet detector holds beyond its parts: ``global_step`` (int64, shape (1,))."""
    return {"global_step": torch.tensor([int(iteration)], dtype=torch.int64)}


def wrap(state: dict, epoch: int = 0, iteration: int = 0) -> dict:
    """An OpenPCDet checkpoint file's dict around ``state`` (what its ``load_params_from_file`` reads)."""
    return {"model_state": state, "optimizer_state": None, "epoch": int(epoch), "it": int(iteration),
            "version": "pointformer"}  # fmt: skip
