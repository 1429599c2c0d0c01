"""CenterHead: CenterPoint's anchor-free BEV head with FlatFormer's IoU branch.

Dense BEV features ``(B, C, H, W)`` -> a shared 3x3 conv -> per task (class group) one separate head
per output map: heatmap (one channel per class), centre offset (2), height (1), log size (3),
sin/cos heading (2), optionally velocity (2) and IoU (1). Each separate head is
``num_head_convs - 1`` x (conv(final_kernel) + BN + ReLU) then a conv(final_kernel) with bias.

Training (``loss``): gaussian focal loss on the heatmaps, code-weighted L1 on the regression values
at the object centres, and L1 of the IoU map against the rotated 3D IoU of the decoded box with its
ground truth. Inference (``decode``): IoU-rectified scores, top-k, per-class rotated NMS.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING

import torch
from torch import nn

from pointformer.models.heads.coder import CODE_SIZE, CODE_SIZE_NO_VELOCITY, BEVCoder
from pointformer.models.heads.decode import DecodeSettings, decode_detections
from pointformer.models.heads.stacked_branches import stackable, stacked_branches
from pointformer.models.outputs import Detections
from pointformer.structures import VoxelGrid

if TYPE_CHECKING:
    from pointformer.models.heads.targets import TaskTargets

# CenterNet's heatmap prior: sigmoid(-2.19) ~ 0.1, so the focal loss starts small on the many negatives.
HEATMAP_INIT_BIAS = -2.19


@dataclass(frozen=True, eq=False)
class TaskOutputs:
    """Dense predictions of one task on the ``(H, W)`` head map (float, B frames, K classes).

    Attributes:
        heatmap: ``(B, K, H, W)`` logits.
        center: ``(B, 2, H, W)`` sub-cell offset of the centre, in cells (x, y).
        height: ``(B, 1, H, W)`` box centre z in metres.
        dim: ``(B, 3, H, W)`` log of (dx, dy, dz) in metres.
        rot: ``(B, 2, H, W)`` (sin, cos) of the heading.
        vel: ``(B, 2, H, W)`` (vx, vy) in m/s, or None without a velocity branch.
        iou: ``(B, 1, H, W)`` predicted 3D IoU of the cell's box with its object, or None.
    """

    heatmap: torch.Tensor
    center: torch.Tensor
    height: torch.Tensor
    dim: torch.Tensor
    rot: torch.Tensor
    vel: torch.Tensor | None = None
    iou: torch.Tensor | None = None

    def code(self) -> torch.Tensor:
        """``(B, 8|10, H, W)`` regression maps in ``BEVCoder`` column order."""
        maps = [self.center, self.height, self.dim, self.rot] + ([self.vel] if self.vel is not None else [])
        return torch.cat(maps, dim=1)


@dataclass(frozen=True, eq=False)
class CenterHeadOutputs:
    """The head's dense outputs: one ``TaskOutputs`` per task, in task order."""

    tasks: tuple[TaskOutputs, ...]

    @property
    def batch_size(self) -> int:
        return self.tasks[0].heatmap.shape[0]


def _conv_bn_relu(
    in_channels: int, out_channels: int, kernel: int, eps: float, momentum: float, bias: bool = False
) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, kernel, padding=kernel // 2, bias=bias),
        nn.BatchNorm2d(out_channels, eps=eps, momentum=momentum),
        nn.ReLU(inplace=True),
    )


class SeparateHead(nn.Module):
    """One small conv tower per output map (``outputs``: name -> channels)."""

    def __init__(
        self,
        in_channels: int,
        outputs: dict[str, int],
        head_channels: int,
        num_convs: int,
        final_kernel: int,
        norm_eps: float,
        norm_momentum: float,
        bias_before_norm: bool = False,
    ) -> None:
        super().__init__()
        if num_convs < 1:
            raise ValueError(f"num_head_convs must be >= 1, got {num_convs}")
        self.heads = nn.ModuleDict()
        for name, channels in outputs.items():
            layers: list[nn.Module] = []
            c = in_channels
            for _ in range(num_convs - 1):
                layers.append(_conv_bn_relu(c, head_channels, final_kernel, norm_eps, norm_momentum, bias_before_norm))
                c = head_channels
            layers.append(nn.Conv2d(c, channels, final_kernel, padding=final_kernel // 2, bias=True))
            self.heads[name] = nn.Sequential(*layers)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        # As CenterPoint: the heatmap's last bias starts at the prior; the regression towers use
        # Kaiming-normal (fan_out) convs with zero bias; the heatmap tower keeps PyTorch's default.
        for name, head in self.heads.items():
            if name == "heatmap":
                nn.init.constant_(head[-1].bias, HEATMAP_INIT_BIAS)
                continue
            for m in head.modules():
                if isinstance(m, nn.Conv2d):
                    nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                    if m.bias is not None:
                        nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return {name: head(x) for name, head in self.heads.items()}


def _per_class(value, num_classes: int, name: str, cast=float) -> tuple:
    """A scalar broadcast to every class, or a sequence with one value per class."""
    if isinstance(value, (int, float)):
        return (cast(value),) * num_classes
    values = tuple(cast(v) for v in value)
    if len(values) != num_classes:
        raise ValueError(f"{name} needs one value per class ({num_classes}), got {len(values)}: {values}")
    return values


class CenterHead(nn.Module):
    """CenterPoint head with IoU-aware rescoring (FlatFormer / DSVT), one or several class groups.

    Args:
        in_channels: channels of the BEV feature map.
        tasks: class names per task; each task has its own separate head and heatmap. Labels are
            0-based over the concatenation of all tasks' names (``class_names``).
        grid: the voxel grid; the head map is its (Y, X) plane downsampled by ``out_size_factor``.
        out_size_factor: stride of the head map in voxels.
        shared_channels: output channels of the shared 3x3 conv (+BN+ReLU).
        head_channels: channels of the hidden convs of each separate head.
        num_head_convs: convs per separate head, the last one included.
        final_kernel: kernel size of every separate-head conv.
        with_velocity: add the (vx, vy) branch and regress the boxes' velocity columns.
        with_iou: add the IoU branch (trained against rotated 3D IoU, used to rescore).
        code_weights: L1 weights of (off_x, off_y, z, log dx, log dy, log dz, sin, cos, vx, vy);
            without velocity the last two are ignored (8 values are accepted too). FlatFormer trains
            no velocity: its weights are 0.
        heatmap_weight, bbox_weight, iou_weight: loss weights (FlatFormer: 1, 2, 1).
        iou_reg_weight: weight of a distance-IoU box loss (``1 - DIoU`` of the decoded box with its
            target, headings ignored; OpenPCDet's ``IOU_REG_LOSS``, weighted by its ``loc_weight``:
            DSVT and ScatterFormer 2); 0: off (FlatFormer, CenterPoint).
        gaussian_overlap, min_radius: gaussian radius of the heatmap targets (CenterPoint's
            ``gaussian_radius`` of the box in map cells, floored, at least ``min_radius``).
        max_objects: at most this many objects per frame and task get targets.
        score_threshold: minimum heatmap probability of a detection.
        score_power, iou_power: per class (over all classes) or one for all: the test score is
            ``prob^score_power * iou^iou_power``. FlatFormer: 1 and 2. DSVT (OpenPCDet rectifier
            ``alpha``): ``1 - alpha`` and ``alpha``.
        iou_signed: the IoU branch predicts ``2 IoU - 1`` (OpenPCDet/DSVT) instead of IoU (FlatFormer).
        nms_iou_thresholds, pre_max_sizes, post_max_sizes: per class (or one for all): rotated BEV
            NMS threshold, candidates before NMS, detections kept after NMS.
        post_center_range: ``(x_min, y_min, z_min, x_max, y_max, z_max)`` in metres; detections whose
            centre is outside are dropped. None keeps all.
        norm_eps, norm_momentum: BatchNorm2d settings.
        bias_before_norm: the shared conv and the hidden convs of the separate heads get a bias
            although a BatchNorm follows (OpenPCDet's ``USE_BIAS_BEFORE_NORM``: CenterPoint's Waymo
            config; 486,731 parameters at 512 inputs without IoU and velocity branches).
    """

    def __init__(
        self,
        in_channels: int,
        tasks: Sequence[Sequence[str]],
        grid: VoxelGrid,
        out_size_factor: int = 1,
        shared_channels: int = 64,
        head_channels: int = 64,
        num_head_convs: int = 2,
        final_kernel: int = 3,
        with_velocity: bool = True,
        with_iou: bool = True,
        code_weights: Sequence[float] = (1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 0.0, 0.0),
        heatmap_weight: float = 1.0,
        bbox_weight: float = 2.0,
        iou_weight: float = 1.0,
        iou_reg_weight: float = 0.0,
        gaussian_overlap: float = 0.1,
        min_radius: int = 1,
        max_objects: int = 500,
        score_threshold: float = 0.1,
        score_power: float | Sequence[float] = 1.0,
        iou_power: float | Sequence[float] = 2.0,
        iou_signed: bool = False,
        nms_iou_thresholds: float | Sequence[float] = (0.8, 0.55, 0.55),
        pre_max_sizes: int | Sequence[int] = (2048, 1024, 1024),
        post_max_sizes: int | Sequence[int] = (300, 100, 100),
        post_center_range: Sequence[float] | None = (-74.88, -74.88, -10.0, 74.88, 74.88, 10.0),
        norm_eps: float = 1e-3,
        norm_momentum: float = 0.01,
        bias_before_norm: bool = False,
    ) -> None:
        super().__init__()
        self.tasks = tuple(tuple(str(n) for n in task) for task in tasks)
        if not self.tasks or any(len(t) == 0 for t in self.tasks):
            raise ValueError(f"tasks must be a non-empty list of non-empty class-name lists, got {tasks}")
        self.class_names = tuple(n for task in self.tasks for n in task)
        if len(set(self.class_names)) != len(self.class_names):
            raise ValueError(f"class names must be unique across tasks, got {self.class_names}")
        num_classes = len(self.class_names)
        offsets, start = [], 0
        for task in self.tasks:
            offsets.append(start)
            start += len(task)
        self.class_offsets = tuple(offsets)

        self.grid = grid
        self.out_size_factor = int(out_size_factor)
        if self.out_size_factor < 1:
            raise ValueError(f"out_size_factor must be >= 1, got {out_size_factor}")
        self.coder = BEVCoder.from_grid(grid, self.out_size_factor)
        self.with_velocity = bool(with_velocity)
        self.with_iou = bool(with_iou)
        self.code_size = CODE_SIZE if self.with_velocity else CODE_SIZE_NO_VELOCITY
        weights = tuple(float(v) for v in code_weights)
        if len(weights) not in (CODE_SIZE, CODE_SIZE_NO_VELOCITY) or len(weights) < self.code_size:
            raise ValueError(
                f"code_weights needs {self.code_size} values (x, y, z, dx, dy, dz, sin, cos"
                f"{', vx, vy' if self.with_velocity else ''}), got {len(weights)}"
            )
        self.register_buffer("code_weights", torch.tensor(weights[: self.code_size]), persistent=False)
        self.heatmap_weight = float(heatmap_weight)
        self.bbox_weight = float(bbox_weight)
        self.iou_weight = float(iou_weight)
        self.iou_reg_weight = float(iou_reg_weight)
        if self.iou_reg_weight < 0:
            raise ValueError(f"iou_reg_weight must be >= 0, got {iou_reg_weight}")
        self.gaussian_overlap = float(gaussian_overlap)
        self.min_radius = int(min_radius)
        self.max_objects = int(max_objects)
        self.score_threshold = float(score_threshold)
        self.iou_signed = bool(iou_signed)
        self.register_buffer(
            "score_power", torch.tensor(_per_class(score_power, num_classes, "score_power")), persistent=False
        )
        self.register_buffer(
            "iou_power", torch.tensor(_per_class(iou_power, num_classes, "iou_power")), persistent=False
        )
        self.nms_iou_thresholds = _per_class(nms_iou_thresholds, num_classes, "nms_iou_thresholds")
        self.pre_max_sizes = _per_class(pre_max_sizes, num_classes, "pre_max_sizes", int)
        self.post_max_sizes = _per_class(post_max_sizes, num_classes, "post_max_sizes", int)
        if post_center_range is not None:
            post_center_range = tuple(float(v) for v in post_center_range)
            if len(post_center_range) != 6:
                raise ValueError(f"post_center_range needs 6 numbers, got {post_center_range}")
        self.post_center_range = post_center_range

        self.bias_before_norm = bool(bias_before_norm)
        self.shared_conv = _conv_bn_relu(
            in_channels, shared_channels, 3, norm_eps, norm_momentum, self.bias_before_norm
        )
        # Train-mode forward through stacked_branches (False: the branches one by one, e.g. to time both).
        self.stack_branches = True
        self.task_heads = nn.ModuleList()
        for task in self.tasks:
            outputs = {"center": 2, "height": 1, "dim": 3, "rot": 2}
            if self.with_velocity:
                outputs["vel"] = 2
            if self.with_iou:
                outputs["iou"] = 1
            outputs["heatmap"] = len(task)
            self.task_heads.append(
                SeparateHead(
                    shared_channels,
                    outputs,
                    head_channels,
                    num_head_convs,
                    final_kernel,
                    norm_eps,
                    norm_momentum,
                    self.bias_before_norm,
                )
            )

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def _task_slice(self, t: int) -> slice:
        return slice(self.class_offsets[t], self.class_offsets[t] + len(self.tasks[t]))

    def forward(self, features: torch.Tensor) -> CenterHeadOutputs:
        """``features``: ``(B, in_channels, H, W)`` BEV map (rows along y, columns along x)."""
        x = self.shared_conv(features)
        names = {f.name for f in fields(TaskOutputs)}
        # An eval-mode fast-path copy (pointformer.models.fastpath) computes every task's branches
        # as one conv tower; it returns what the separate heads would.
        fused = getattr(self, "fused_branches", None)
        if fused is not None:
            per_task = fused(x)
        elif self.training and self.stack_branches and (towers := stackable(self.task_heads)) is not None:
            # Training: the branches as a few stacked convolutions, same parameters and math
            # (pointformer.models.heads.stacked_branches).
            per_task = stacked_branches(self.task_heads, towers, x)
        else:
            per_task = [head(x) for head in self.task_heads]
        return CenterHeadOutputs(tuple(TaskOutputs(**{k: v for k, v in o.items() if k in names}) for o in per_task))

    def _check_map(self, outputs: CenterHeadOutputs) -> tuple[int, int]:
        h, w = outputs.tasks[0].heatmap.shape[-2:]
        _, gy, gx = self.grid.shape
        f = self.out_size_factor
        # The map covers the grid: ceil(grid / factor) cells (a strided conv rounds up).
        if (h, w) != (-(-gy // f), -(-gx // f)):
            raise ValueError(
                f"head map is {h}x{w} (HxW) but the grid {gy}x{gx} (YxX) at out_size_factor {f} gives "
                f"{-(-gy // f)}x{-(-gx // f)}"
            )
        return h, w

    def targets(
        self,
        outputs: CenterHeadOutputs,
        boxes: torch.Tensor,
        labels: torch.Tensor,
        box_batch_index: torch.Tensor,
        batch_size: int,
    ) -> list[TaskTargets]:
        """Training targets per task (see ``build_task_targets``); labels are over all class names."""
        # Training-only modules load here, so that inference imports none of them.
        from pointformer.models.heads.targets import build_task_targets

        h, w = self._check_map(outputs)
        result = []
        for t, task in enumerate(self.tasks):
            local = labels.long() - self.class_offsets[t]
            local = torch.where((local >= 0) & (local < len(task)), local, torch.full_like(local, -1))
            result.append(
                build_task_targets(
                    boxes, local, box_batch_index, batch_size, len(task), (h, w), self.coder,
                    self.gaussian_overlap, self.min_radius, self.max_objects, self.with_velocity,
                )
            )  # fmt: skip
        return result

    def loss(
        self,
        outputs: CenterHeadOutputs,
        boxes: torch.Tensor,
        labels: torch.Tensor,
        box_batch_index: torch.Tensor,
        batch_size: int,
    ) -> dict[str, torch.Tensor]:
        """Weighted losses (the trainer sums them).

        Args:
            boxes: ``(M, 7|9)`` ground truth ``[x, y, z, dx, dy, dz, heading(, vx, vy)]`` of the batch.
            labels: ``(M,)`` 0-based over ``class_names`` (all tasks).
            box_batch_index: ``(M,)`` frame of each box.

        Returns:
            ``loss_heatmap``, ``loss_bbox``, with the IoU branch ``loss_iou``, with ``iou_reg_weight``
            ``loss_iou_reg``; with several tasks
            each name gets a ``_task{t}`` suffix. Heatmap: focal loss over the map divided by the number
            of object centres (at least 1). Box and IoU: summed over objects, divided by their number.
        """
        if outputs.batch_size != batch_size:
            raise ValueError(f"outputs have batch size {outputs.batch_size}, but batch_size is {batch_size}")
        from pointformer.models.heads.losses import (
            axis_aligned_diou_3d,
            clamped_sigmoid,
            gaussian_focal_loss,
            paired_iou_3d,
            weighted_l1_loss,
        )

        all_targets = self.targets(outputs, boxes, labels, box_batch_index, batch_size)
        losses: dict[str, torch.Tensor] = {}
        for t, (out, tgt) in enumerate(zip(outputs.tasks, all_targets, strict=True)):
            suffix = f"_task{t}" if len(self.tasks) > 1 else ""
            num_peaks = tgt.heatmap.eq(1).sum().clamp(min=1).float()
            prob = clamped_sigmoid(out.heatmap.float())
            losses["loss_heatmap" + suffix] = self.heatmap_weight * gaussian_focal_loss(
                prob, tgt.heatmap, normalizer=num_peaks
            )

            code = out.code().float().flatten(2)  # (B, D, H*W)
            pred = code[tgt.batch_index, :, tgt.cell_index]  # (N, D)
            # The small epsilon keeps an empty batch at 0 rather than 0/0 (CenterPoint's).
            normalizer = tgt.num_objects + 1e-4
            losses["loss_bbox" + suffix] = self.bbox_weight * weighted_l1_loss(
                pred, tgt.box_targets, self.code_weights[None], normalizer
            )
            if self.with_iou or self.iou_reg_weight > 0:
                cells, w = tgt.cell_index, out.heatmap.shape[-1]
                # Differentiable (the DIoU loss trains through it); the IoU target detaches it.
                pred_boxes = self.coder.decode(pred, cells % w, torch.div(cells, w, rounding_mode="floor"))
            if self.iou_reg_weight > 0:
                diou = axis_aligned_diou_3d(pred_boxes, tgt.boxes)
                losses["loss_iou_reg" + suffix] = self.iou_reg_weight * (1 - diou).sum() / normalizer
            if self.with_iou:
                iou_pred = out.iou.float().flatten(2)[tgt.batch_index, 0, tgt.cell_index]  # (N,)
                with torch.no_grad():
                    iou_target = paired_iou_3d(pred_boxes.detach(), tgt.boxes)
                    if self.iou_signed:
                        iou_target = 2 * iou_target - 1
                losses["loss_iou" + suffix] = self.iou_weight * (iou_pred - iou_target).abs().sum() / normalizer
        return losses

    def decode_settings(self) -> DecodeSettings:
        """Everything ``decode`` needs besides the dense outputs (plain numbers: exported as JSON)."""
        return DecodeSettings(
            task_sizes=tuple(len(t) for t in self.tasks),
            range_min=self.coder.range_min,
            cell_size=self.coder.cell_size,
            score_power=tuple(float(v) for v in self.score_power.tolist()),
            iou_power=tuple(float(v) for v in self.iou_power.tolist()),
            with_iou=self.with_iou,
            iou_signed=self.iou_signed,
            score_threshold=self.score_threshold,
            pre_max_sizes=self.pre_max_sizes,
            post_max_sizes=self.post_max_sizes,
            nms_iou_thresholds=self.nms_iou_thresholds,
            post_center_range=self.post_center_range,
        )

    @torch.no_grad()
    def decode(self, outputs: CenterHeadOutputs) -> list[Detections]:
        """Detections per frame: boxes ``(M, 9)`` with velocity (``(M, 7)`` without), scores, labels over
        all class names."""
        maps = [(out.heatmap, out.code(), out.iou) for out in outputs.tasks]
        return decode_detections(maps, self.decode_settings())
