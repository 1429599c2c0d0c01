"""Eval-mode fast path of a detector's dense BEV stages (2D backbone, neck, head) and its voxel encoder.

``fast_inference_copy(model)`` returns a copy of a ``Detector`` for inference only, whose dense
stages and voxel encoder compute the same function (to float32 rounding) in fewer, larger operations:

- a ``DynamicVFE``'s per-point layers have their BatchNorm1d folded into the Linear before them, and
  its last layer forms its product with the previous layer's pooled features once per voxel
  instead of once per point (``fast_voxel_encoder``): about half the per-point work of
  waymo_flatformer's two-layer encoder, and no ``(P, 256)`` gathered copy;

- every BatchNorm2d directly after a Conv2d / ConvTranspose2d (in an ``nn.Sequential``, or a
  ``BasicBlock2d``'s ``convN``/``bnN`` pairs) is folded into that convolution's weight and bias with
  its running statistics (eval mode only: training normalises with the batch's statistics);
- ``CenterHead``, off the CPU (and in the ONNX export): the separate heads of all tasks read the
  same map (the shared conv's output), so their first convs become one convolution with the
  branches' filters stacked, and every further conv of the branches one grouped convolution (a group
  per branch; the last layer's groups padded with zero filters to the widest branch, whose extra
  outputs are dropped). On the CPU the branches run one after the other (``ContiguousBranches``):
  with the caching allocator (``pointformer.ops.cpu_cache``) that measured 5-7 % faster on the
  waymo_flatformer head (1202-1267 against 1271-1362 ms) and keeps one 64-channel map instead of the
  stacked 448-channel one (392 MB on the Waymo canvas);
- the dense stages run in the channels-last memory format (oneDNN's native layout for convolutions
  on the CPU, so no reorder around each call), chosen by measurement (docs/benchmarks.md); a
  ``ScatterToBEV`` canvas is created channels-last, so the map is never converted;
- on the CPU, a conv or transposed conv followed by a ReLU (and ``BasicBlock2d``'s conv + shortcut
  add + ReLU) runs as one oneDNN convolution with the ReLU (and the add) as post-ops
  (``torch.ops.mkldnn._convolution_pointwise``, the kernel inductor's CPU fusions call), so the
  output map is written once instead of being re-read and re-written per elementwise op; elsewhere
  (CUDA, autograd, a torch without the op) the same module runs the plain ops.

The original model is left untouched, so its state dict keeps its meaning and loads unchanged; the
copy (every part copied, so that its eval mode never touches the original) refuses train mode.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from pointformer.models.bev.scatter import ScatterToBEV
from pointformer.models.detector import Detector
from pointformer.models.encoders.dynamic_vfe import DynamicVFE
from pointformer.models.heads.center_head import CenterHead, SeparateHead
from pointformer.models.layers.basic_block2d import BasicBlock2d

_CONVS = (nn.Conv2d, nn.ConvTranspose2d)


def fold_batchnorm(conv: nn.Conv2d | nn.ConvTranspose2d | nn.Linear, bn: nn.BatchNorm2d | nn.BatchNorm1d):
    """A convolution (or linear layer) computing ``bn(conv(x))`` with ``bn``'s running statistics
    (eval mode).

    ``scale = gamma / sqrt(running_var + eps)`` multiplies each output channel's filter (dim 0 of a
    Conv2d or Linear weight, dim 1 of a ConvTranspose2d's, per group), and the bias becomes
    ``(bias - running_mean) * scale + beta``. Computed in float64, stored in the conv's dtype.
    """
    if not bn.track_running_stats or bn.running_mean is None or bn.running_var is None:
        raise ValueError("fold_batchnorm: the BatchNorm2d has no running statistics to fold")
    fused = copy.deepcopy(conv)
    weight = conv.weight.detach().double()
    mean, var = bn.running_mean.double(), bn.running_var.double()
    gamma = bn.weight.detach().double() if bn.weight is not None else torch.ones_like(mean)
    beta = bn.bias.detach().double() if bn.bias is not None else torch.zeros_like(mean)
    scale = gamma / torch.sqrt(var + bn.eps)
    if isinstance(conv, nn.ConvTranspose2d):
        # weight (in, out / groups, kh, kw): output channel g * (out / groups) + j is weight[g-th block, j].
        groups, per_group = conv.groups, weight.shape[1]
        w = weight.reshape(groups, weight.shape[0] // groups, per_group, *weight.shape[2:])
        w = w * scale.reshape(groups, 1, per_group, 1, 1)
        weight = w.reshape(conv.weight.shape)
    else:
        weight = weight * scale.reshape(-1, *[1] * (weight.dim() - 1))
    bias = conv.bias.detach().double() if conv.bias is not None else torch.zeros_like(mean)
    fused.weight = nn.Parameter(weight.to(conv.weight.dtype), requires_grad=False)
    fused.bias = nn.Parameter(((bias - mean) * scale + beta).to(conv.weight.dtype), requires_grad=False)
    return fused


def fold_batchnorms(module: nn.Module) -> int:
    """Folds, in place, every BatchNorm2d that directly follows a convolution in ``module`` (an
    ``nn.Sequential``'s consecutive children, ``BasicBlock2d``'s conv1/bn1 and conv2/bn2); the
    folded norms become ``nn.Identity``. Returns how many were folded."""
    folded = 0
    for m in list(module.modules()):
        if isinstance(m, nn.Sequential):
            names = list(m._modules)
            for a, b in zip(names, names[1:], strict=False):
                conv, bn = m._modules[a], m._modules[b]
                if isinstance(conv, _CONVS) and type(bn) is nn.BatchNorm2d:
                    m._modules[a], m._modules[b] = fold_batchnorm(conv, bn), nn.Identity()
                    folded += 1
        elif isinstance(m, BasicBlock2d):
            for conv_name, bn_name in (("conv1", "bn1"), ("conv2", "bn2")):
                conv, bn = getattr(m, conv_name), getattr(m, bn_name)
                if type(bn) is nn.BatchNorm2d:
                    setattr(m, conv_name, fold_batchnorm(conv, bn))
                    setattr(m, bn_name, nn.Identity())
                    folded += 1
    return folded


def fast_voxel_encoder(encoder: nn.Module) -> int:
    """Prepares, in place, a ``DynamicVFE`` (or subclass) for eval-mode inference: the BatchNorm1d
    of every layer but the last folded into the Linear before it, and the last layer's product with
    the previous layer's pooled features taken per voxel (``per_voxel_shared_inputs``). The last
    layer keeps its BatchNorm: its pooled form applies it to the voxels' maxima. Returns how many
    norms were folded (0 for another encoder, which is left as it is)."""
    if not isinstance(encoder, DynamicVFE):
        return 0
    folded = 0
    for layer in encoder.layers[:-1]:
        if isinstance(layer[0], nn.Linear) and type(layer[1]) is nn.BatchNorm1d:
            layer[0], layer[1] = fold_batchnorm(layer[0], layer[1]), nn.Identity()
            folded += 1
    encoder.per_voxel_shared_inputs = True
    return folded


def _layers(head: nn.Sequential) -> list[tuple[nn.Conv2d, bool]]:
    """The (folded) convs of one separate-head tower with whether a ReLU follows each."""
    out: list[tuple[nn.Conv2d, bool]] = []
    for unit in head:
        if isinstance(unit, nn.Conv2d):
            out.append((unit, False))
            continue
        convs = [m for m in unit if isinstance(m, nn.Conv2d)]
        others = [m for m in unit if not isinstance(m, (nn.Conv2d, nn.Identity, nn.ReLU))]
        if len(convs) != 1 or others:
            raise ValueError(f"fused heads: unexpected tower unit {unit} (fold the BatchNorms first)")
        out.append((convs[0], any(isinstance(m, nn.ReLU) for m in unit)))
    return out


def _tracing() -> bool:
    """Under torch.compile / torch.export / TorchScript tracing: the plain ops, which every backend
    and exporter knows (ONNX has no oneDNN post-op convolution)."""
    compiler = getattr(torch, "compiler", None)
    for name in ("is_compiling", "is_exporting", "is_dynamo_compiling"):
        check = getattr(compiler, name, None)
        if check is not None and check():
            return True
    return torch.jit.is_tracing() or torch.jit.is_scripting()


def _pointwise_available(x: torch.Tensor, conv: nn.Conv2d) -> bool:
    """Whether oneDNN's fused conv + post-op kernel can run this call (CPU float32, no autograd)."""
    return (
        not _tracing()
        and x.device.type == "cpu"
        and x.dtype == torch.float32
        and conv.weight.dtype == torch.float32
        and isinstance(conv.padding, tuple)  # not 'same'/'valid'
        and conv.padding_mode == "zeros"
        and not (torch.is_grad_enabled() and (x.requires_grad or conv.weight.requires_grad))
        and torch.backends.mkldnn.is_available()
        and hasattr(torch.ops.mkldnn, "_convolution_pointwise")
    )


def conv_relu(conv: nn.Conv2d | nn.ConvTranspose2d, x: torch.Tensor) -> torch.Tensor:
    """``relu(conv(x))`` for a Conv2d or a ConvTranspose2d, fused on the CPU (module docstring)."""
    if _pointwise_available(x, conv):
        c = conv
        if isinstance(c, nn.ConvTranspose2d):
            if hasattr(torch.ops.mkldnn, "_convolution_transpose_pointwise"):
                return torch.ops.mkldnn._convolution_transpose_pointwise(
                    x, c.weight, c.bias, list(c.padding), list(c.output_padding), list(c.stride),
                    list(c.dilation), c.groups, "relu", [], "",
                )  # fmt: skip
        else:
            return torch.ops.mkldnn._convolution_pointwise(
                x, c.weight, c.bias, list(c.padding), list(c.stride), list(c.dilation), c.groups, "relu", [], ""
            )
    return torch.relu_(conv(x))


def conv_add_relu(conv: nn.Conv2d, x: torch.Tensor, other: torch.Tensor) -> torch.Tensor:
    """``relu(conv(x) + other)``, fused on the CPU (module docstring)."""
    if _pointwise_available(x, conv) and other.shape[:1] == x.shape[:1] and other.dtype == x.dtype:
        c = conv
        other = (
            other.contiguous(memory_format=torch.channels_last)
            if x.is_contiguous(memory_format=torch.channels_last)
            else other.contiguous()
        )
        return torch.ops.mkldnn._convolution_pointwise.binary(
            x, other, c.weight, c.bias, list(c.padding), list(c.stride), list(c.dilation), c.groups,
            "add", 1.0, "relu", [], "",
        )  # fmt: skip
    return torch.relu_(conv(x) + other)


class ConvReLU(nn.Module):
    """A (folded) Conv2d and the ReLU after it, as one call (``conv_relu``)."""

    def __init__(self, conv: nn.Conv2d | nn.ConvTranspose2d) -> None:
        super().__init__()
        self.conv = conv

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return conv_relu(self.conv, x)


class ConvTransposeReLU(ConvReLU):
    """A (folded) ConvTranspose2d and the ReLU after it, as one call (``conv_relu``)."""


class FusedBasicBlock(nn.Module):
    """A folded ``BasicBlock2d``: ``conv_add_relu(conv2, conv_relu(conv1, x), shortcut(x))``."""

    def __init__(self, block: BasicBlock2d) -> None:
        super().__init__()
        if not (isinstance(block.bn1, nn.Identity) and isinstance(block.bn2, nn.Identity)):
            raise ValueError("FusedBasicBlock: fold the block's BatchNorms first")
        self.conv1, self.conv2, self.projection = block.conv1, block.conv2, block.projection

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x if self.projection is None else self.projection(x)
        return conv_add_relu(self.conv2, conv_relu(self.conv1, x), shortcut)


def fuse_activations(module: nn.Module) -> int:
    """In place, after ``fold_batchnorms``: every ``nn.Sequential``'s Conv2d (+ folded Identity) +
    ReLU becomes ``ConvReLU`` (+ Identity), a ConvTranspose2d + ReLU ``ConvTransposeReLU`` (SECONDFPN's
    upsampling), every folded ``BasicBlock2d`` a ``FusedBasicBlock``.
    Returns how many were fused."""
    fused = 0
    for m in list(module.modules()):
        if isinstance(m, nn.Sequential):
            names = list(m._modules)
            for i, name in enumerate(names):
                conv = m._modules[name]
                if type(conv) not in (nn.Conv2d, nn.ConvTranspose2d):
                    continue
                j = i + 1
                while j < len(names) and isinstance(m._modules[names[j]], nn.Identity):
                    j += 1
                if j < len(names) and isinstance(m._modules[names[j]], nn.ReLU):
                    unit = ConvReLU(conv) if type(conv) is nn.Conv2d else ConvTransposeReLU(conv)
                    m._modules[name], m._modules[names[j]] = unit, nn.Identity()
                    fused += 1
        for child_name, child in list(m.named_children()):
            if (
                isinstance(child, BasicBlock2d)
                and isinstance(child.bn1, nn.Identity)
                and isinstance(child.bn2, nn.Identity)
            ):
                setattr(m, child_name, FusedBasicBlock(child))
                fused += 1
    return fused


class FusedSeparateHeads(nn.Module):
    """All branches of a ``CenterHead``'s separate heads (every task) as one conv tower.

    Layer 0: one Conv2d whose filters are the branches' first filters stacked (every branch reads
    the same input). Layer ``k > 0``: one grouped Conv2d, a group per branch, reading its branch's
    channels of layer ``k - 1``; in the last layer each group is padded with zero filters to the
    widest branch and the padding outputs are dropped. Built from folded towers whose convs share
    kernel size, padding and (hidden) width, as ``SeparateHead`` builds them.

    ``forward(x (B, C, H, W))`` -> per task a dict name -> ``(B, channels, H, W)``, as the separate
    heads return.
    """

    def __init__(self, heads: list[SeparateHead]) -> None:
        super().__init__()
        self.branches: list[tuple[int, str, int]] = []  # (task, name, channels)
        towers = []
        for t, head in enumerate(heads):
            for name, tower in head.heads.items():
                layers = _layers(tower)
                towers.append(layers)
                self.branches.append((t, name, layers[-1][0].out_channels))
        depth = len(towers[0])
        if any(len(tw) != depth for tw in towers):
            raise ValueError("fused heads: the branches have different depths")
        n = len(towers)
        self.widest = max(c for _, _, c in self.branches)
        self.relus = [towers[0][k][1] for k in range(depth)]
        convs = []
        with torch.no_grad():
            for k in range(depth):
                first = towers[0][k][0]
                kernel, padding = first.kernel_size, first.padding
                if any(tw[k][0].kernel_size != kernel or tw[k][0].padding != padding for tw in towers):
                    raise ValueError("fused heads: the branches' convs differ in kernel size or padding")
                last = k == depth - 1
                width = self.widest if last else first.out_channels
                in_per = first.in_channels
                if not last and any(tw[k][0].out_channels != width for tw in towers):
                    raise ValueError("fused heads: the branches' hidden convs differ in width")
                groups = 1 if k == 0 else n
                in_channels = in_per if k == 0 else in_per * n
                conv = nn.Conv2d(in_channels, width * n, kernel, padding=padding, groups=groups, bias=True)
                conv.weight.zero_()
                conv.bias.zero_()
                for b, tw in enumerate(towers):
                    src = tw[k][0]
                    rows = slice(b * width, b * width + src.out_channels)
                    conv.weight[rows] = src.weight
                    if src.bias is not None:
                        conv.bias[rows] = src.bias
                conv.requires_grad_(False)
                convs.append(conv)
        self.convs = nn.ModuleList(convs)
        self.num_tasks = len(heads)
        self.fuse = True  # conv + ReLU as one oneDNN call where it can (conv_relu)

    def forward(self, x: torch.Tensor) -> list[dict[str, torch.Tensor]]:
        for conv, relu in zip(self.convs, self.relus, strict=True):
            x = conv_relu(conv, x) if relu and self.fuse else conv(x)
            if relu and not self.fuse:
                x = torch.relu_(x)
        out: list[dict[str, torch.Tensor]] = [{} for _ in range(self.num_tasks)]
        for b, (t, name, channels) in enumerate(self.branches):
            # contiguous: decode and the exporters expect plain (NCHW) maps.
            out[t][name] = x[:, b * self.widest : b * self.widest + channels].contiguous()
        return out


class ContiguousBranches(nn.Module):
    """The separate heads unfused, their outputs made plain (NCHW-contiguous) maps: a channels-last
    head without ``FusedSeparateHeads``."""

    def __init__(self, heads: list[SeparateHead]) -> None:
        super().__init__()
        self.heads = nn.ModuleList(heads)

    def forward(self, x: torch.Tensor) -> list[dict[str, torch.Tensor]]:
        return [{k: v.contiguous() for k, v in head(x).items()} for head in self.heads]


class ChannelsLast(nn.Module):
    """Runs ``module`` on its input in the channels-last memory format (values unchanged)."""

    def __init__(self, module: nn.Module) -> None:
        super().__init__()
        self.module = module.to(memory_format=torch.channels_last)

    def forward(self, x: torch.Tensor) -> object:
        return self.module(x.contiguous(memory_format=torch.channels_last))


class InferenceOnly(Detector):
    """A ``Detector`` that refuses train mode (its folded norms cannot train)."""

    def train(self, mode: bool = True) -> InferenceOnly:
        if mode:
            raise RuntimeError(
                "this detector is an eval-mode fast-path copy (BatchNorm folded): train the original model"
            )
        return super().train(False)


def fast_inference_copy(
    model: Detector,
    channels_last: bool = True,
    fuse_heads: bool | None = None,
    fuse_activations_: bool = True,
) -> Detector:
    """An eval-mode copy of ``model`` with the dense stages optimised (module docstring).

    Every part is copied (the 3D backbone and BEV mapping unchanged); the voxel encoder
    (``fast_voxel_encoder``), the 2D backbone, the neck and the head are transformed. Outputs equal the eager
    model's in eval mode to float32 rounding (tests/models/test_fastpath.py).
    """
    if fuse_heads is None:  # stacked branches off the CPU, one after the other on it (module docstring)
        fuse_heads = next(model.parameters()).device.type != "cpu"
    backbone2d, neck, head = (copy.deepcopy(m).eval() for m in (model.backbone2d, model.neck, model.head))
    # Channels-last maps reach the head's outputs; only CenterHead's branches are known to hand back
    # plain maps (other heads' decode may view their outputs), so another head keeps NCHW throughout.
    channels_last = channels_last and isinstance(head, CenterHead)
    for part in (backbone2d, neck, head):
        fold_batchnorms(part)
    if isinstance(head, CenterHead) and (fuse_heads or channels_last):
        branches = FusedSeparateHeads if fuse_heads else ContiguousBranches
        head.fused_branches = branches(list(head.task_heads))
        if not fuse_activations_ and fuse_heads:
            head.fused_branches.fuse = False
    if fuse_activations_:
        for part in (backbone2d, neck, head):
            fuse_activations(part)
    if channels_last:
        # The map stays channels-last from the 2D backbone's input to the head's convs (convs and
        # elementwise ops keep the format), and FusedSeparateHeads hands back plain maps.
        backbone2d = ChannelsLast(backbone2d)
    voxel_encoder = copy.deepcopy(model.voxel_encoder).eval()
    fast_voxel_encoder(voxel_encoder)
    fast = InferenceOnly(
        model.grid,
        model.class_names,
        voxel_encoder,
        copy.deepcopy(model.backbone3d),
        copy.deepcopy(model.bev),
        backbone2d,
        neck,
        head,
        max_points_per_voxel=model.max_points_per_voxel,
        max_voxels=model.max_voxels,
    )
    if channels_last:
        if isinstance(fast.bev, ScatterToBEV):
            fast.bev.channels_last = True  # the canvas is born channels-last: no conversion copy
        fast.neck.to(memory_format=torch.channels_last)
        fast.head.to(memory_format=torch.channels_last)
    fast.requires_grad_(False)  # inference only (and the fused oneDNN calls have no backward)
    return fast.eval()
