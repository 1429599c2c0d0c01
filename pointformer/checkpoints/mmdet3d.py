"""FlatFormer's checkpoint names (its fork of mmdetection3d 0.15, ``DynamicCenterPoint``).

An mmcv checkpoint is ``torch.save({"state_dict": state_dict, "meta": {...}, "optimizer": ...})``. The
detector holds ``voxel_encoder``, ``middle_encoder``, ``backbone``, ``neck`` and ``bbox_head``.
Official modules, as read from the FlatFormer repository (configs/flatformer/
flatformer_waymo_D1_2x_3class.py and mmdet3d/models/...), and their pointformer counterparts:

* ``DynamicVFE``: ``vfe_layers.<i>`` = (Linear without bias, BatchNorm1d, ReLU): pointformer's
  ``DynamicVFE`` ``layers.<i>``; inputs ordered [point features, cluster offset, voxel-centre offset].
* ``FlatFormer`` (``middle_encoder``): ``block_list.<b>.block.<k>`` layers (``attn.attn`` an
  nn.MultiheadAttention, ``fc1``, ``fc2``, ``norm1``, ``norm2``), the four orders ``x``, ``x_shift``,
  ``y``, ``y_shift`` in that order: pointformer's ``blocks.<b>.<k>`` (``attn`` holds the
  MultiheadAttention tensors itself).
* ``SECOND`` (``backbone``, FlatFormer's residual variant): ``blocks.<i>.<j>`` = (Conv2d, BN, ReLU):
  pointformer's ``SECOND`` ``stages.<i>.<j>``. ``SECONDFPN`` (``neck``): ``deblocks.<i>``.
* ``CenterHead`` (``bbox_head``): ``shared_conv`` and the hidden convs of each tower are mmcv
  ``ConvModule``s (``conv``, ``bn``), the last conv of a tower a plain Conv2d; towers ``reg``
  (pointformer ``center``), ``height``, ``dim``, ``rot``, ``vel``, ``iou``, ``heatmap``.

Box convention: mmdetection3d 0.15 LiDAR boxes are KITTI-style, sizes ``(w, l, h)`` and yaw
``r_kitti = -r - pi/2`` (FlatFormer's ``waymo2kitti_box``); pointformer's are ``(dx = l, dy = w, dz)`` and
``r``. So the last conv of ``dim`` has its first two output channels swapped (log sizes), and that of
``rot``, whose outputs are ``(sin r_kitti, cos r_kitti) = (-cos r, -sin r)``, is swapped and negated to
give ``(sin r, cos r)``. Centre offsets, height (box centre z), velocity and IoU carry over unchanged.
"""

from __future__ import annotations

from torch import nn

from pointformer.checkpoints.mapping import Rule, rows

FORMAT = "mmdet3d"
STATE_KEY = "state_dict"
IGNORED_KEYS: tuple[str, ...] = ()

PART_PREFIX = {
    "voxel_encoder": "voxel_encoder.",
    "backbone3d": "middle_encoder.",
    "bev": "middle_encoder.",
    "backbone2d": "backbone.",
    "neck": "neck.",
    "head": "bbox_head.",
}

_HEAD_NAMES = {"center": "reg"}
DIM = rows((1, 0, 2))  # (log w, log l, log h) -> (log l, log w, log h)
ROT = rows((1, 0), (-1.0, -1.0))  # (sin r_k, cos r_k) = (-cos r, -sin r) -> (sin r, cos r)


def _head_rules() -> list[Rule]:
    def name(m) -> str:
        return _HEAD_NAMES.get(m.group(2), m.group(2))

    def hidden(m) -> str:
        part = "conv" if m.group(4) == "0" else "bn"
        return f"task_heads.{m.group(1)}.{name(m)}.{m.group(3)}.{part}.{m.group(5)}"

    def last(m) -> str:
        return f"task_heads.{m.group(1)}.{name(m)}.{m.group(3)}.{m.group(4)}"

    tower = r"task_heads\.(\d+)\.heads\.(\w+)"
    return [
        Rule(r"shared_conv\.0\.(.+)", r"shared_conv.conv.\1"),
        Rule(r"shared_conv\.1\.(.+)", r"shared_conv.bn.\1"),
        Rule(tower + r"\.(\d+)\.([01])\.(.+)", hidden),
        Rule(r"task_heads\.(\d+)\.heads\.(dim)\.(\d+)\.(weight|bias)", last, DIM),
        Rule(r"task_heads\.(\d+)\.heads\.(rot)\.(\d+)\.(weight|bias)", last, ROT),
        Rule(tower + r"\.(\d+)\.(weight|bias)", last),
    ]


RULES: dict[str, list[Rule]] = {
    "DynamicVFE": [Rule(r"layers\.(\d+)\.(.+)", r"vfe_layers.\1.\2")],
    "FlatFormer": [
        Rule(r"blocks\.(\d+)\.(\d+)\.attn\.(.+)", r"block_list.\1.block.\2.attn.attn.\3"),
        Rule(r"blocks\.(\d+)\.(\d+)\.((?:fc|norm)[12]\..+)", r"block_list.\1.block.\2.\3"),
    ],
    "ScatterToBEV": [],
    "IdentityNeck": [],
    "SECOND": [Rule(r"stages\.(\d+)\.(\d+)\.(.+)", r"blocks.\1.\2.\3")],
    "SECONDFPN": [Rule(r"blocks\.(.+)", r"deblocks.\1")],
    "CenterHead": _head_rules(),
}


def rules_for(part: str, module: nn.Module) -> list[Rule]:
    """The rules of ``module`` (pointformer part ``part``); KeyError for a type with no counterpart here."""
    return RULES[type(module).__name__]


def extra_official_tensors(iteration: int = 0) -> dict:
    """mmdetection3d detectors hold no tensors beyond their parts."""
    return {}


def wrap(state: dict, epoch: int = 0, iteration: int = 0) -> dict:
    """An mmcv checkpoint file's dict around ``state`` (what ``mmcv.runner.load_checkpoint`` reads)."""
    return {"state_dict": state, "meta": {"epoch": int(epoch), "iter": int(iteration), "source": "pointformer"}}
