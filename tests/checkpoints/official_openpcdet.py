"""OpenPCDet's modules written out for the parity tests: the official module tree (so its
``state_dict`` has the official key names and shapes) and the official forward of each part.

Written from reading OpenPCDet's ``dynamic_voxel_vfe.py`` / ``dynamic_pillar_vfe.py`` (PFNLayerV2),
``pillar_vfe.py`` (PillarVFE, PFNLayer over zero-padded pillars),
``backbones_3d/dsvt.py``, ``model_utils/dsvt_utils.py``, ``backbones_2d/base_bev_backbone.py``
(BaseBEVBackbone, BaseBEVResBackbone with its BasicBlock) and ``dense_heads/center_head.py``; not
copied. The DSVT forward takes its sets from pointformer's partition op (checked against the official
partition by tests/ops/grouping/test_rotated_sets.py): what is tested here is the official parameter
naming and the official arithmetic around it.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from pointformer.ops import partition_rotated_sets


def randomise(module: nn.Module, generator: torch.Generator, scale: float = 0.2) -> nn.Module:
    """Every parameter random (biases too), BatchNorm statistics random: comparisons see every tensor."""
    with torch.no_grad():
        for name, p in module.named_parameters():
            p.copy_(scale * torch.randn(p.shape, generator=generator, dtype=p.dtype))
            if name.endswith("weight") and p.dim() == 1:  # norm scales around 1
                p.add_(1.0)
        for m in module.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.running_mean.copy_(0.3 * torch.randn(m.running_mean.shape, generator=generator))
                m.running_var.copy_(0.5 + torch.rand(m.running_var.shape, generator=generator))
                m.num_batches_tracked.fill_(7)
    return module


# --- VFE -------------------------------------------------------------------------------------------


class PFNLayerV2(nn.Module):
    def __init__(self, cin: int, cout: int, last: bool) -> None:
        super().__init__()
        self.last = last
        width = cout if last else cout // 2
        self.linear = nn.Linear(cin, width, bias=False)
        self.norm = nn.BatchNorm1d(width, eps=1e-3, momentum=0.01)

    def forward(self, x: torch.Tensor, inverse: torch.Tensor, num: int) -> torch.Tensor:
        y = F.relu(self.norm(self.linear(x)))
        top = y.new_full((num, y.shape[1]), -torch.inf).scatter_reduce(0, inverse[:, None].expand_as(y), y, "amax")
        return top if self.last else torch.cat([y, top[inverse]], dim=1)


class DynamicVoxelVFE(nn.Module):
    """``vfe``: inputs [point features, xyz - voxel point mean, xyz - voxel centre], PFNLayerV2s."""

    def __init__(self, num_point_features: int, num_filters: list[int]) -> None:
        super().__init__()
        widths = [num_point_features + 6, *num_filters]
        self.pfn_layers = nn.ModuleList(
            PFNLayerV2(widths[i], widths[i + 1], i == len(num_filters) - 1) for i in range(len(num_filters))
        )

    def forward(self, points, inverse, cell_xyz, num, voxel_size, range_min) -> torch.Tensor:
        xyz = points[:, :3]
        counts = torch.zeros(num, dtype=points.dtype).index_add_(0, inverse, torch.ones_like(xyz[:, 0]))
        mean = torch.zeros(num, 3, dtype=points.dtype).index_add_(0, inverse, xyz) / counts[:, None]
        centre = cell_xyz.to(points.dtype) * voxel_size + voxel_size / 2 + range_min
        x = torch.cat([points, xyz - mean[inverse], xyz - centre], dim=1)
        for layer in self.pfn_layers:
            x = layer(x, inverse, num)
        return x


class PFNLayer(nn.Module):
    """``pillar_vfe.py``'s layer: the same tensors as PFNLayerV2, over ``(M, T, C)`` padded pillars."""

    def __init__(self, cin: int, cout: int, last: bool) -> None:
        super().__init__()
        self.last = last
        width = cout if last else cout // 2
        self.linear = nn.Linear(cin, width, bias=False)
        self.norm = nn.BatchNorm1d(width, eps=1e-3, momentum=0.01)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        m, t, _ = x.shape
        y = self.linear(x)
        y = F.relu(self.norm(y.reshape(m * t, -1)).reshape(m, t, -1))  # every row, padding included
        top = y.max(dim=1, keepdim=True).values
        return top if self.last else torch.cat([y, top.expand(-1, t, -1)], dim=2)


class PillarVFE(nn.Module):
    """``vfe`` of OpenPCDet's hard-voxelized pillars: ``(M, T, F)`` points, rows past each pillar's
    count zero; inputs [point features, xyz - pillar point mean, xyz - pillar centre], zeroed on the
    padding rows, then the PFNLayers on every row."""

    def __init__(self, num_point_features: int, num_filters: list[int]) -> None:
        super().__init__()
        widths = [num_point_features + 6, *num_filters]
        self.pfn_layers = nn.ModuleList(
            PFNLayer(widths[i], widths[i + 1], i == len(num_filters) - 1) for i in range(len(num_filters))
        )

    def forward(self, voxels, num_points, coords, voxel_size, range_min) -> torch.Tensor:
        xyz = voxels[:, :, :3]
        mean = xyz.sum(dim=1, keepdim=True) / num_points.to(voxels.dtype).view(-1, 1, 1)
        # coords (b, z, y, x): the centre of cell (x, y, z)
        centre = coords[:, [3, 2, 1]].to(voxels.dtype) * voxel_size + voxel_size / 2 + range_min
        x = torch.cat([voxels, xyz - mean, xyz - centre[:, None, :]], dim=2)
        x = x * (torch.arange(voxels.shape[1])[None, :] < num_points[:, None]).to(x.dtype)[..., None]
        for layer in self.pfn_layers:
            x = layer(x)
        return x.squeeze(1)


def pillar_scatter(features, coords, batch_size: int, ny: int, nx: int) -> torch.Tensor:
    """``map_to_bev_module`` PointPillarScatter: per sample a ``(C, nx * ny)`` canvas of zeros, pillar
    ``(b, z, y, x)`` written at ``z + y * nx + x``, viewed as ``(B, C, ny, nx)``."""
    canvases = []
    for b in range(batch_size):
        mine = coords[:, 0] == b
        c = coords[mine].long()
        canvas = features.new_zeros(features.shape[1], nx * ny)
        canvas[:, c[:, 1] + c[:, 2] * nx + c[:, 3]] = features[mine].t()
        canvases.append(canvas)
    return torch.stack(canvases).view(batch_size, features.shape[1], ny, nx)


# --- DSVT ------------------------------------------------------------------------------------------


class SetAttention(nn.Module):
    def __init__(self, c: int, heads: int, ffn: int) -> None:
        super().__init__()
        self.self_attn = nn.MultiheadAttention(c, heads, batch_first=True)
        self.linear1 = nn.Linear(c, ffn)
        self.linear2 = nn.Linear(ffn, c)
        self.norm1 = nn.LayerNorm(c)
        self.norm2 = nn.LayerNorm(c)

    def forward(self, src, pos, mask, inds):
        feats, set_pos = src[inds], pos[inds]
        out = self.self_attn(feats + set_pos, feats + set_pos, feats, key_padding_mask=mask, need_weights=False)[0]
        flat = inds.reshape(-1)
        # each voxel from its first slot
        first = torch.full((src.shape[0],), flat.shape[0]).scatter_reduce(0, flat, torch.arange(flat.shape[0]), "amin")
        x = self.norm1(src + out.reshape(-1, src.shape[1])[first])
        return self.norm2(x + self.linear2(F.gelu(self.linear1(x))))


class EncoderLayer(nn.Module):
    def __init__(self, c: int, heads: int, ffn: int) -> None:
        super().__init__()
        self.win_attn = SetAttention(c, heads, ffn)
        self.norm = nn.LayerNorm(c)

    def forward(self, src, inds, mask, pos):
        return self.norm(self.win_attn(src, pos, mask, inds) + src)


class DSVTBlock(nn.Module):
    def __init__(self, c: int, heads: int, ffn: int) -> None:
        super().__init__()
        self.encoder_list = nn.ModuleList([EncoderLayer(c, heads, ffn), EncoderLayer(c, heads, ffn)])


class PositionEmbeddingLearned(nn.Module):
    def __init__(self, d: int, c: int) -> None:
        super().__init__()
        self.position_embedding_head = nn.Sequential(nn.Linear(d, c), nn.BatchNorm1d(c), nn.ReLU(), nn.Linear(c, c))

    def forward(self, x):
        return self.position_embedding_head(x)


class ReductionAtt(nn.Module):
    def __init__(self, c: int, pool_volume: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(c)
        self.self_attn = nn.MultiheadAttention(c, 8, batch_first=True)
        self.pos_embedding = nn.Parameter(torch.randn(pool_volume, c))

    def forward(self, holder):  # holder (M, P, C), zeros in empty slots
        query = holder.max(dim=1, keepdim=True).values
        key = holder + self.pos_embedding[None]
        no_mask = torch.zeros(holder.shape[:2], dtype=torch.bool)
        out = self.self_attn(query, key, holder, key_padding_mask=no_mask, need_weights=False)[0]
        return self.norm(out + query).squeeze(1)


class InputLayer(nn.Module):
    def __init__(self, c: int, blocks: list[int], with_z: list[bool]) -> None:
        super().__init__()
        self.posembed_layers = nn.ModuleList(
            nn.ModuleList(nn.ModuleList(PositionEmbeddingLearned(3 if z else 2, c) for _ in range(2)) for _ in range(n))
            for n, z in zip(blocks, with_z, strict=True)
        )


class DSVT(nn.Module):
    """``backbone_3d``. ``geometry`` is the pointformer DSVT of the same config (window configs,
    set sizes, strides); only its geometry is read."""

    def __init__(self, c, heads, ffn, blocks, strides, with_z) -> None:
        super().__init__()
        self.input_layer = InputLayer(c, blocks, with_z)
        self.stages = len(blocks)
        for s, n in enumerate(blocks):
            setattr(self, f"stage_{s}", nn.ModuleList(DSVTBlock(c, heads, ffn) for _ in range(n)))
            setattr(self, f"residual_norm_stage_{s}", nn.ModuleList(nn.LayerNorm(c) for _ in range(n)))
            if s < len(blocks) - 1:
                sx, sy, sz = strides[s]
                setattr(self, f"stage_{s}_reduction", ReductionAtt(c, sx * sy * sz))

    def forward(self, x, coords, shape, batch_size, geometry):
        block_id = 0
        for s in range(self.stages):
            sets = [
                partition_rotated_sets(coords, batch_size, shape, w, geometry.set_sizes[s], sh)
                for w, sh in geometry.window_configs[s]
            ]
            for b, block in enumerate(getattr(self, f"stage_{s}")):
                shift_id = block_id % 2
                out = x
                for i, layer in enumerate(block.encoder_list):
                    (wz, wy, wx), shift = sets[i].window_shape, sets[i].shift  # official: shift i's coords
                    inw = (coords[:, 1:].long() + torch.tensor(shift)) % torch.tensor([wz, wy, wx])
                    loc = [inw[:, 2] - wx / 2, inw[:, 1] - wy / 2] + ([inw[:, 0] - wz / 2] if shape[0] > 1 else [])
                    pos = self.input_layer.posembed_layers[s][b][i](torch.stack(loc, 1).to(x.dtype))
                    inds, mask = sets[shift_id].set_voxel_index[i], sets[shift_id].key_mask[i]
                    out = layer(out, inds, mask, pos)
                x = getattr(self, f"residual_norm_stage_{s}")[b](out + x)
                block_id += 1
            if s < self.stages - 1:
                x, coords, shape = self._pool(s, x, coords, shape, geometry.downsample_strides[s])
        return x, coords, shape

    def _pool(self, s, x, coords, shape, stride):
        # get_pooling_index: cells numbered (batch, x, y, z), slots x-major; zero placeholder.
        (sz, sy, sx), (nz, ny, nx) = stride, tuple(-(-n // k) for n, k in zip(shape, stride, strict=True))
        b, z, y, xx = coords.long().unbind(1)
        window = b * (nx * ny * nz) + (xx // sx) * ny * nz + (y // sy) * nz + z // sz
        cells, cell = torch.unique(window, return_inverse=True)
        slot = (xx % sx) * sy * sz + (y % sy) * sz + z % sz
        holder = x.new_zeros(cells.shape[0], sz * sy * sx, x.shape[1])
        holder[cell, slot] = x
        pooled = getattr(self, f"stage_{s}_reduction")(holder)
        first = torch.full((cells.shape[0],), b.shape[0]).scatter_reduce(0, cell, torch.arange(b.shape[0]), "amin")
        new = torch.stack([b[first], z[first] // sz, y[first] // sy, xx[first] // sx], 1).int()
        return pooled, new, (-(-shape[0] // sz), -(-shape[1] // sy), -(-shape[2] // sx))


# --- BEV backbones ---------------------------------------------------------------------------------


def _bn2d(c: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(c, eps=1e-3, momentum=0.01)


class BasicBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int = 1, downsample: bool = False) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False)
        self.bn1 = _bn2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1, bias=False)
        self.bn2 = _bn2d(cout)
        self.downsample = downsample
        if downsample:
            self.downsample_layer = nn.Sequential(nn.Conv2d(cin, cout, 1, stride=stride, bias=False), _bn2d(cout))

    def forward(self, x):
        identity = self.downsample_layer(x) if self.downsample else x
        out = self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x)))))
        return F.relu(out + identity)


def _deblocks(filters, up_strides, up_filters) -> nn.ModuleList:
    # stride >= 1: ConvTranspose2d(kernel = stride = s); below 1: Conv2d(kernel = stride = 1 / s)
    def resample(f, s, u):
        if s >= 1:
            return nn.ConvTranspose2d(f, u, int(s), stride=int(s), bias=False)
        return nn.Conv2d(f, u, round(1 / s), stride=round(1 / s), bias=False)

    return nn.ModuleList(
        nn.Sequential(resample(f, s, u), _bn2d(u), nn.ReLU())
        for f, s, u in zip(filters, up_strides, up_filters, strict=True)
    )


class BEVBackbone(nn.Module):
    """``backbone_2d``: BaseBEVResBackbone (``residual``) or BaseBEVBackbone."""

    def __init__(self, cin, layer_nums, strides, filters, up_strides, up_filters, residual: bool) -> None:
        super().__init__()
        self.blocks = nn.ModuleList()
        for i, (n, s, f) in enumerate(zip(layer_nums, strides, filters, strict=True)):
            c = cin if i == 0 else filters[i - 1]
            if residual:
                layers = [BasicBlock(c, f, s, True)] + [BasicBlock(f, f) for _ in range(n)]
            else:
                layers = [nn.ZeroPad2d(1), nn.Conv2d(c, f, 3, stride=s, padding=0, bias=False), _bn2d(f), nn.ReLU()]
                for _ in range(n):
                    layers += [nn.Conv2d(f, f, 3, padding=1, bias=False), _bn2d(f), nn.ReLU()]
            self.blocks.append(nn.Sequential(*layers))
        self.deblocks = _deblocks(filters, up_strides, up_filters)

    def forward(self, x):
        ups = []
        for block, deblock in zip(self.blocks, self.deblocks, strict=True):
            x = block(x)
            ups.append(deblock(x))
        return torch.cat(ups, dim=1)


# --- CenterHead ------------------------------------------------------------------------------------


class SeparateHead(nn.Module):
    def __init__(self, c: int, heads: dict[str, int], num_conv: int, bias: bool, eps: float, momentum: float):
        super().__init__()
        self.names = list(heads)
        for name, out in heads.items():
            layers = [
                nn.Sequential(
                    nn.Conv2d(c, c, 3, padding=1, bias=bias), nn.BatchNorm2d(c, eps=eps, momentum=momentum), nn.ReLU()
                )  # fmt: skip
                for _ in range(num_conv - 1)
            ]
            setattr(self, name, nn.Sequential(*layers, nn.Conv2d(c, out, 3, padding=1, bias=True)))

    def forward(self, x):
        return {n: getattr(self, n)(x) for n in self.names}


class CenterHead(nn.Module):
    """``dense_head``; ``heads``: the official HEAD_DICT names and widths (``hm`` added per group)."""

    def __init__(self, cin, groups, heads, shared=64, num_conv=2, bias=False, eps=1e-5, momentum=0.1):
        super().__init__()
        self.shared_conv = nn.Sequential(
            nn.Conv2d(cin, shared, 3, padding=1, bias=bias), nn.BatchNorm2d(shared, eps=eps, momentum=momentum),
            nn.ReLU(),
        )  # fmt: skip
        self.heads_list = nn.ModuleList(
            SeparateHead(shared, {**heads, "hm": len(g)}, num_conv, bias, eps, momentum) for g in groups
        )

    def forward(self, x):
        x = self.shared_conv(x)
        return [h(x) for h in self.heads_list]


def prefixed(prefix: str, module: nn.Module) -> dict[str, torch.Tensor]:
    return {prefix + k: v for k, v in module.state_dict().items()}


# --- ScatterFormer (its OpenPCDet fork) --------------------------------------------------------------


class _Weight(nn.Module):
    """A sparse conv's tensors only (spconv's ``weight`` in KRSC, or the depthwise ``(kz, ky, kx, C)``)."""

    def __init__(self, *shape: int, bias: bool = False) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(shape))
        if bias:
            self.bias = nn.Parameter(torch.zeros(shape[0]))


def _bn1d(c: int) -> nn.BatchNorm1d:
    return nn.BatchNorm1d(c, eps=1e-3, momentum=0.01)


class _SparseBasicBlock(nn.Module):
    def __init__(self, c: int) -> None:
        super().__init__()
        self.conv1, self.bn1 = _Weight(c, 3, 3, 3, c, bias=True), _bn1d(c)
        self.conv2, self.bn2 = _Weight(c, 3, 3, 3, c, bias=True), _bn1d(c)


class _SLALayer(nn.Module):
    def __init__(self, c: int) -> None:
        super().__init__()
        self.qkv = nn.Linear(c, 3 * c, bias=False)
        self.proj = nn.Linear(c, c)


class _CWIFFN(nn.Module):
    def __init__(self, c: int, k: int) -> None:
        super().__init__()
        g = c // 4
        self.bn = _bn1d(c)
        self.conv_k, self.conv_h, self.conv_w = _Weight(3, 3, 3, g), _Weight(1, 1, k, g), _Weight(1, k, 1, g)
        self.bn2 = _bn1d(c)
        self.fc1, self.fc2 = nn.Linear(c, 2 * c), nn.Linear(2 * c, c)


class _Layer3x(nn.Module):
    def __init__(self, c: int, n: int, win: int) -> None:
        super().__init__()
        self.norm_layers = nn.ModuleList(_bn1d(c) for _ in range(n))
        self.attn_layers = nn.ModuleList(_SLALayer(c) for _ in range(n))
        self.cffn_layers = nn.ModuleList(_CWIFFN(c, win + 1) for _ in range(n))


class _AttnPillarPool(nn.Module):
    def __init__(self, c: int, z: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(c)
        self.self_attn = nn.MultiheadAttention(c, 8, batch_first=True)
        self.pos_embedding = nn.Embedding(z, c)


class ScatterFormerBackbone(nn.Module):
    """``backbone_3d`` of the ScatterFormer fork (its module tree; the tensors only)."""

    def __init__(self, cin: int, c: int = 128, blocks: int = 3, win: int = 12, pillar_z: int = 8) -> None:
        super().__init__()
        self.cpe = nn.Sequential(
            nn.Sequential(_Weight(c, 3, 3, 3, cin), _bn1d(c), nn.ReLU()),
            *(_SparseBasicBlock(c) for _ in range(3)),
            nn.Sequential(_Weight(c, 3, 1, 1, c), _bn1d(c), nn.ReLU()),
        )
        self.stage1 = nn.Sequential(_Layer3x(c, blocks, win), _bn1d(c), _Weight(c, 3, 3, 3, c))
        self.stage2 = nn.Sequential(_Layer3x(c, blocks, win), _bn1d(c))
        self.app = _AttnPillarPool(c, pillar_z)


class DEDBackbone(nn.Module):
    def __init__(self, c: int, num_sbb, strides) -> None:
        super().__init__()
        self.encoder = nn.ModuleList([nn.Sequential(*(BasicBlock(c, c) for _ in range(num_sbb[0])))])
        for n, s in zip(num_sbb[1:], strides[1:], strict=True):
            self.encoder.append(nn.Sequential(BasicBlock(c, c, s, True), *(BasicBlock(c, c) for _ in range(n))))
        self.decoder = nn.ModuleList(
            nn.Sequential(nn.ConvTranspose2d(c, c, s, s, bias=False), _bn2d(c), nn.ReLU()) for s in strides[:0:-1]
        )
        self.decoder_norm = nn.ModuleList(_bn2d(c) for _ in strides[1:])

    def forward(self, x):
        feats = []
        for level in self.encoder:
            x = level(x)
            feats.append(x)
        for deconv, norm, skip in zip(self.decoder, self.decoder_norm, feats[:-1][::-1], strict=True):
            x = norm(deconv(x) + skip)
        return x


class CascadeDEDBackbone(nn.Module):
    def __init__(self, c: int = 128, num_layers: int = 4, num_sbb=(2, 1, 1), strides=(1, 2, 2)) -> None:
        super().__init__()
        self.layers = nn.ModuleList(DEDBackbone(c, num_sbb, strides) for _ in range(num_layers))

    def forward(self, x):
        for layer in self.layers:
            x = layer(x)
        return x


# --- TransFusionHead (the DSVT repository's dense_heads/transfusion_head.py) -------------------------


class _BasicBlock2D(nn.Module):
    def __init__(self, c: int, bias: bool) -> None:
        super().__init__()
        self.conv = nn.Conv2d(c, c, 3, padding=1, bias=bias)
        self.bn = nn.BatchNorm2d(c)
        self.relu = nn.ReLU()

    def forward(self, x):
        return self.relu(self.bn(self.conv(x)))


class _PosEmbed(nn.Module):
    def __init__(self, c: int) -> None:
        super().__init__()
        self.position_embedding_head = nn.Sequential(
            nn.Conv1d(2, c, 1), nn.BatchNorm1d(c), nn.ReLU(), nn.Conv1d(c, c, 1)
        )

    def forward(self, xyz):
        return self.position_embedding_head(xyz.transpose(1, 2))


class _DecoderLayer(nn.Module):
    def __init__(self, c: int, heads: int, ffn: int) -> None:
        super().__init__()
        self.self_attn = nn.MultiheadAttention(c, heads)
        self.multihead_attn = nn.MultiheadAttention(c, heads)
        self.linear1, self.linear2 = nn.Linear(c, ffn), nn.Linear(ffn, c)
        self.norm1, self.norm2, self.norm3 = nn.LayerNorm(c), nn.LayerNorm(c), nn.LayerNorm(c)
        self.self_posembed, self.cross_posembed = _PosEmbed(c), _PosEmbed(c)

    def forward(self, query, key, query_pos, key_pos, key_padding_mask=None):
        # N x C x P -> P x N x C; the values carry the key position embedding.
        qpe = self.self_posembed(query_pos).permute(2, 0, 1)
        kpe = self.cross_posembed(key_pos).permute(2, 0, 1)
        query, key = query.permute(2, 0, 1), key.permute(2, 0, 1)
        q = query + qpe
        query = self.norm1(query + self.self_attn(q, q, value=q)[0])
        att = self.multihead_attn(query + qpe, key + kpe, value=key + kpe, key_padding_mask=key_padding_mask)[0]
        query = self.norm2(query + att)
        query = self.norm3(query + self.linear2(F.relu(self.linear1(query))))
        return query.permute(1, 2, 0)


class TransFusionHead(nn.Module):
    """``dense_head`` of the DSVT repository's nuScenes model (bias before the norms, local queries)."""

    def __init__(self, cin: int, num_class: int = 10, hidden: int = 128, heads: int = 8, ffn: int = 256,
                 num_proposals: int = 200, radius: int = 20, with_iou: bool = True) -> None:  # fmt: skip
        super().__init__()
        self.num_class, self.num_proposals, self.radius = num_class, num_proposals, radius
        self.shared_conv = nn.Conv2d(cin, hidden, 3, padding=1)
        self.heatmap_head = nn.Sequential(_BasicBlock2D(hidden, True), nn.Conv2d(hidden, num_class, 3, padding=1))
        self.class_encoding = nn.Conv1d(num_class, hidden, 1)
        self.decoder = _DecoderLayer(hidden, heads, ffn)
        outs = {"center": 2, "height": 1, "dim": 3, "rot": 2, "vel": 2, **({"iou": 1} if with_iou else {}),
                "heatmap": num_class}  # fmt: skip
        self.prediction_head = nn.Module()
        self.names = list(outs)
        for name, out in outs.items():
            tower = nn.Sequential(
                nn.Sequential(nn.Conv1d(hidden, 64, 1, bias=True), nn.BatchNorm1d(64), nn.ReLU()), nn.Conv1d(64, out, 1)
            )  # fmt: skip
            setattr(self.prediction_head, name, tower)

    def forward(self, feats):
        """``feats`` (B, C, Y, X) -> the official result dict (its maps in the official (X, Y) layout)."""
        feats = feats.permute(0, 1, 3, 2)  # [y, x] -> [x, y]
        b = feats.shape[0]
        lidar = self.shared_conv(feats)
        flat = lidar.view(b, lidar.shape[1], -1)
        x_size, y_size = lidar.shape[-2:]
        bx, by = torch.meshgrid(torch.arange(x_size, dtype=feats.dtype), torch.arange(y_size, dtype=feats.dtype),
                                indexing="ij")  # fmt: skip
        bev_pos = torch.cat([bx[None] + 0.5, by[None] + 0.5], 0)[None].view(1, 2, -1).permute(0, 2, 1).repeat(b, 1, 1)
        dense = self.heatmap_head(lidar)
        heat = dense.detach().sigmoid()
        local_max = torch.zeros_like(heat)
        local_max[:, :, 1:-1, 1:-1] = F.max_pool2d(heat, 3, stride=1, padding=0)
        local_max[:, 8] = heat[:, 8]  # pedestrian
        local_max[:, 9] = heat[:, 9]  # traffic cone
        heat = (heat * (heat == local_max)).view(b, self.num_class, -1)
        top = heat.view(b, -1).argsort(dim=-1, descending=True)[..., : self.num_proposals]
        labels, index = top // heat.shape[-1], top % heat.shape[-1]
        query = flat.gather(2, index[:, None, :].expand(-1, flat.shape[1], -1))
        query = query + self.class_encoding(F.one_hot(labels, self.num_class).permute(0, 2, 1).to(query.dtype))
        query_pos = bev_pos.gather(1, index[:, :, None].expand(-1, -1, 2))
        r = torch.arange(-self.radius, self.radius + 1)
        rx, ry = torch.meshgrid(r, r, indexing="ij")
        px, py = index // x_size, index % y_size
        kidx = (px[:, :, None, None] + rx).view(b, index.shape[1], -1) * x_size + (py[:, :, None, None] + ry).view(
            b, index.shape[1], -1
        )
        mask = (kidx < 0) | (kidx >= x_size * y_size)
        kidx = kidx.clamp(0, x_size * y_size - 1)
        p, c = index.shape[1], flat.shape[1]
        key = flat.gather(2, kidx.view(b, 1, -1).expand(-1, c, -1)).view(b, c, p, -1)
        key_pos = bev_pos.gather(1, kidx.view(b, -1, 1).expand(-1, -1, 2)).view(b, p, -1, 2)
        key = key.permute(0, 2, 1, 3).reshape(b * p, c, -1)
        q = self.decoder(query.permute(0, 2, 1).reshape(b * p, c, 1), key, query_pos.view(-1, 1, 2),
                         key_pos.view(b * p, -1, 2), mask.view(b * p, -1))  # fmt: skip
        query = q.reshape(b, p, c).permute(0, 2, 1)
        res = {n: getattr(self.prediction_head, n)(query) for n in self.names}
        res["center"] = res["center"] + query_pos.permute(0, 2, 1)
        res["query_heatmap_score"] = heat.gather(2, index[:, None, :].expand(-1, self.num_class, -1))
        res["dense_heatmap"] = dense
        res["query_labels"] = labels
        return res


def transfusion_get_bboxes(res, stride_voxel, pc_min, post_center_range, rectifier=0.5, nms=None):
    """The official ``get_bboxes`` (score threshold 0, nuScenes tasks: NMS for classes 8 and 9 only);
    ``nms(boxes, scores, thresh)`` -> kept indices. Returns per frame (boxes, scores, labels 0-based)."""
    k = res["heatmap"].shape[1]
    score = res["heatmap"].sigmoid() * res["query_heatmap_score"] * F.one_hot(res["query_labels"], k).permute(0, 2, 1)
    labels, scores = score.max(1).indices, score.max(1).values
    center = res["center"].clone()
    center[:, 0] = center[:, 0] * stride_voxel[0] + pc_min[0]
    center[:, 1] = center[:, 1] * stride_voxel[1] + pc_min[1]
    dim = res["dim"].exp()
    height = res["height"] - dim[:, 2:3] * 0.5
    rot = torch.atan2(res["rot"][:, 0:1], res["rot"][:, 1:2])
    boxes = torch.cat([center, height, dim, rot, res["vel"]], 1).permute(0, 2, 1)
    rng = torch.tensor(post_center_range, dtype=boxes.dtype)
    keep = (scores > 0) & (boxes[..., :3] >= rng[:3]).all(2) & (boxes[..., :3] <= rng[3:]).all(2)
    out = []
    for i in range(boxes.shape[0]):
        bx, sc, lb = boxes[i, keep[i]], scores[i, keep[i]], labels[i, keep[i]]
        iou = ((res["iou"][i, 0, keep[i]] + 1) * 0.5).clamp(0, 1)
        sc = sc.pow(1 - rectifier) * iou.pow(rectifier)
        keep_mask = torch.zeros_like(sc, dtype=torch.bool)
        keep_mask[lb < 8] = True
        for cls in (8, 9):
            idx = torch.nonzero(lb == cls).squeeze(1)
            if idx.numel():
                order = sc[idx].argsort(descending=True)[:1000]
                kept = nms(bx[idx][order][:, :7], sc[idx][order], 0.175)[:100]
                keep_mask[idx[order][kept]] = True
        out.append((bx[keep_mask], sc[keep_mask], lb[keep_mask]))
    return out
