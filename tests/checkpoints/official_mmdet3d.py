"""FlatFormer's mmdetection3d 0.15 modules written out for the parity tests: the module trees (so
``state_dict`` has the official names and shapes) and the forwards of the VFE, SECOND (FlatFormer's
residual variant), SECONDFPN and CenterHead (mmcv ConvModules). Written from reading the FlatFormer
repository's configs/flatformer/flatformer_waymo_D1_2x_3class.py and mmdet3d/models/...; not copied."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class DynamicVFE(nn.Module):
    def __init__(self, in_channels: int, feat_channels: list[int]) -> None:
        super().__init__()
        widths = [in_channels + 6, *feat_channels]
        self.vfe_layers = nn.ModuleList(
            nn.Sequential(
                nn.Linear(widths[i] if i == 0 else 2 * widths[i], widths[i + 1], bias=False),
                nn.BatchNorm1d(widths[i + 1], eps=1e-3, momentum=0.01),
                nn.ReLU(inplace=True),
            )
            for i in range(len(feat_channels))
        )

    def forward(self, points, inverse, cell_xyz, num, voxel_size, range_min):
        xyz = points[:, :3]
        counts = torch.zeros(num, dtype=points.dtype).index_add_(0, inverse, torch.ones_like(xyz[:, 0]))
        mean = torch.zeros(num, 3, dtype=points.dtype).index_add_(0, inverse, xyz) / counts[:, None]
        centre = cell_xyz.to(points.dtype) * voxel_size + voxel_size / 2 + range_min
        x = torch.cat([points, xyz - mean[inverse], xyz - centre], dim=1)
        for i, layer in enumerate(self.vfe_layers):
            y = layer(x)
            top = y.new_full((num, y.shape[1]), -torch.inf).scatter_reduce(0, inverse[:, None].expand_as(y), y, "amax")
            x = top if i == len(self.vfe_layers) - 1 else torch.cat([y, top[inverse]], dim=1)
        return x


class _Attn(nn.Module):  # GroupAttention: holds its FlashAttention (an nn.MultiheadAttention) as ``attn``
    def __init__(self, c: int, heads: int) -> None:
        super().__init__()
        self.attn = nn.MultiheadAttention(c, heads)


class _BasicLayer(nn.Module):
    def __init__(self, c: int, heads: int) -> None:
        super().__init__()
        self.attn = _Attn(c, heads)
        self.fc1, self.fc2 = nn.Linear(c, 2 * c), nn.Linear(2 * c, c)
        self.norm1, self.norm2 = nn.LayerNorm(c), nn.LayerNorm(c)


class _BasicBlock(nn.Module):
    def __init__(self, c: int, heads: int) -> None:
        super().__init__()
        self.block = nn.ModuleList(_BasicLayer(c, heads) for _ in range(4))  # x, x_shift, y, y_shift


class FlatFormer(nn.Module):
    def __init__(self, c: int = 128, heads: int = 8, blocks: int = 2) -> None:
        super().__init__()
        self.block_list = nn.ModuleList(_BasicBlock(c, heads) for _ in range(blocks))


def _bn2d(c: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(c, eps=1e-3, momentum=0.01)


class SECOND(nn.Module):
    def __init__(self, cin, out_channels, layer_nums, strides, residual: bool) -> None:
        super().__init__()
        self.residual = residual
        self.blocks = nn.ModuleList()
        for i, (c, n, s) in enumerate(zip(out_channels, layer_nums, strides, strict=True)):
            c_in = cin if i == 0 else out_channels[i - 1]
            units = [nn.Sequential(nn.Conv2d(c_in, c, 3, stride=s, padding=1, bias=False), _bn2d(c), nn.ReLU())]
            units += [nn.Sequential(nn.Conv2d(c, c, 3, padding=1, bias=False), _bn2d(c), nn.ReLU()) for _ in range(n)]
            self.blocks.append(nn.ModuleList(units))

    def forward(self, x):
        outs = []
        for block in self.blocks:
            for unit in block:
                y = unit(x)
                x = y + x if self.residual and y.shape == x.shape else y
            outs.append(x)
        return outs


class SECONDFPN(nn.Module):
    def __init__(self, in_channels, out_channels, strides) -> None:
        super().__init__()
        self.deblocks = nn.ModuleList(
            nn.Sequential(nn.ConvTranspose2d(i, o, s, stride=s, bias=False), _bn2d(o), nn.ReLU())
            for i, o, s in zip(in_channels, out_channels, strides, strict=True)
        )

    def forward(self, feats):
        return torch.cat([d(x) for d, x in zip(self.deblocks, feats, strict=True)], dim=1)


class ConvModule(nn.Module):
    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, 3, padding=1, bias=False)  # bias="auto": none before a norm
        self.bn = _bn2d(cout)

    def forward(self, x):
        return F.relu(self.bn(self.conv(x)))


class SeparateHead(nn.Module):
    def __init__(self, c: int, heads: dict[str, tuple[int, int]]) -> None:
        super().__init__()
        self.names = list(heads)
        for name, (out, num_conv) in heads.items():
            layers = [ConvModule(c, c) for _ in range(num_conv - 1)] + [nn.Conv2d(c, out, 3, padding=1, bias=True)]
            setattr(self, name, nn.Sequential(*layers))

    def forward(self, x):
        return {n: getattr(self, n)(x) for n in self.names}


class CenterHead(nn.Module):
    def __init__(self, cin: int, num_classes: list[int], common_heads: dict[str, tuple[int, int]]) -> None:
        super().__init__()
        self.shared_conv = ConvModule(cin, 64)
        self.task_heads = nn.ModuleList(SeparateHead(64, {**common_heads, "heatmap": (n, 2)}) for n in num_classes)

    def forward(self, x):
        x = self.shared_conv(x)
        return [h(x) for h in self.task_heads]
