"""TransFusionHead: TransFusion-L's query head (OpenPCDet / DSVT / ScatterFormer nuScenes models).

Dense BEV features ``(B, C, H, W)`` -> a shared 3x3 conv (with bias, no norm) -> a dense heatmap head
(conv+BN+ReLU, conv: one logit map per class). Object queries are initialised from that heatmap:
sigmoid, a local-maximum filter (a ``nms_kernel_size`` max-pool; the ``single_cell_classes`` such as
nuScenes' pedestrian and traffic cone keep every cell), the top ``num_proposals`` (cell, class) pairs
over all classes, each query taking the shared feature of its cell plus a learned encoding of its
class (a 1x1 conv of the one-hot class). One transformer decoder layer refines the queries
(self-attention among the queries, cross-attention to the BEV cells, FFN; post-norm), both
attentions with learned position embeddings of the cell centres (an MLP of ``(x, y)`` in cells).
Per query, 1x1-conv branches predict the class logits (``heatmap``), the centre (an offset added to
the query's cell centre, in cells), the height, the log size, (sin, cos) of the heading, the
velocity and the IoU.

Two variants of the cross-attention, as the official heads:

* ``query_radius: None`` (OpenPCDet's ``transfusion_head.py``): every query attends to every cell of
  the map and the self-attention runs among all queries of a frame.
* ``query_radius: r`` (the DSVT repository's head, ScatterFormer's ``QUERY_LOCAL``): each query
  attends only to the ``(2r + 1)^2`` cells around its own, and attends to itself alone in the
  self-attention (the official runs every query as its own sequence). The window is cut on the
  flattened map index, as the official does: cells past the map's edge along the fast axis wrap
  into the neighbouring row instead of being masked (only indices outside the whole map are).

``xy_layout`` (the DSVT and ScatterFormer heads): the official transposes the BEV map to
``(B, C, X, Y)`` before the first conv, so its conv weights act on that layout; pointformer does the
same so that their weights give the same outputs. The dense heatmap is returned in pointformer's
``(B, K, H, W)`` = ``(Y, X)`` layout either way.

Training (``loss``): Hungarian assignment of the queries to the ground truth (``hungarian.py``),
sigmoid focal loss on the query classes, code-weighted L1 on the boxes of the matched queries,
gaussian focal loss on the dense heatmap, and optionally the IoU branch's L1 (against ``2 IoU - 1``)
and a distance-IoU box loss. Inference (``decode``): score = query class probability x its heatmap
score, score threshold, post-centre range, IoU rectification, NMS per listed class.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from pointformer.models.heads.query_decode import QUERY_CODE_SIZE, QueryDecodeSettings, decode_queries
from pointformer.models.outputs import Detections
from pointformer.structures import VoxelGrid

HEATMAP_INIT_BIAS = -2.19


@dataclass(frozen=True, eq=False)
class TransFusionOutputs:
    """The head's outputs for ``B`` frames, ``K`` classes, ``P`` queries (float32 unless said).

    Attributes:
        dense_heatmap: ``(B, K, H, W)`` logits of the dense heatmap (rows along y).
        query_labels: ``(B, P)`` int64 class of each query's heatmap peak.
        query_cells: ``(B, P)`` int64 map cell of each query, ``iy * W + ix``.
        query_score: ``(B, K, P)`` the local-maximum-filtered heatmap probabilities at the query's cell.
        heatmap: ``(B, K, P)`` class logits of the queries.
        center: ``(B, 2, P)`` box centre (x, y) in map cells from the map's low corner.
        height: ``(B, 1, P)`` box top z (centre z + dz / 2) in metres, the official encoding.
        dim: ``(B, 3, P)`` log (dx, dy, dz) in metres.
        rot: ``(B, 2, P)`` (sin, cos) of the heading.
        vel: ``(B, 2, P)`` (vx, vy) m/s, or None.
        iou: ``(B, 1, P)`` predicted ``2 IoU - 1``, or None.
    """

    dense_heatmap: torch.Tensor
    query_labels: torch.Tensor
    query_cells: torch.Tensor
    query_score: torch.Tensor
    heatmap: torch.Tensor
    center: torch.Tensor
    height: torch.Tensor
    dim: torch.Tensor
    rot: torch.Tensor
    vel: torch.Tensor | None = None
    iou: torch.Tensor | None = None

    @property
    def batch_size(self) -> int:
        return self.heatmap.shape[0]

    def code(self) -> torch.Tensor:
        """``(B, 8|10, P)``: center, height, dim, rot(, vel) (the official ``HEAD_ORDER``)."""
        maps = [self.center, self.height, self.dim, self.rot] + ([self.vel] if self.vel is not None else [])
        return torch.cat(maps, dim=1)


def _conv_bn_relu(conv: nn.Module, channels: int, norm: type, momentum: float) -> nn.Sequential:
    return nn.Sequential(conv, norm(channels, momentum=momentum), nn.ReLU(inplace=True))


class PositionEmbedding(nn.Module):
    """A learned embedding of 2D positions: ``mlp`` = Conv1d(2, C), BatchNorm1d, ReLU, Conv1d(C, C)."""

    def __init__(self, channels: int, momentum: float) -> None:
        super().__init__()
        self.mlp = nn.Sequential(
            nn.Conv1d(2, channels, 1), nn.BatchNorm1d(channels, momentum=momentum), nn.ReLU(inplace=True),
            nn.Conv1d(channels, channels, 1),
        )  # fmt: skip

    def forward(self, xy: torch.Tensor) -> torch.Tensor:
        """``(N, L, 2)`` positions -> ``(L, N, C)`` embeddings (sequence first)."""
        return self.mlp(xy.transpose(1, 2)).permute(2, 0, 1)


class QueryDecoderLayer(nn.Module):
    """One post-norm transformer decoder layer over sequence-first ``(L, N, C)`` tensors.

    ``q = norm1(q + selfattn(q + pe_q))``, ``q = norm2(q + crossattn(q + pe_q, k + pe_k, k + pe_k))``
    (the values carry the key position embedding too, as the official), ``q = norm3(q + ffn(q))``.
    """

    def __init__(self, channels: int, num_heads: int, ffn_channels: int, dropout: float, activation: str,
                 momentum: float) -> None:  # fmt: skip
        super().__init__()
        if activation not in ("relu", "gelu"):
            raise ValueError(f"activation must be 'relu' or 'gelu', got {activation!r}")
        self.self_attn = nn.MultiheadAttention(channels, num_heads, dropout=dropout)
        self.cross_attn = nn.MultiheadAttention(channels, num_heads, dropout=dropout)
        self.linear1 = nn.Linear(channels, ffn_channels)
        self.linear2 = nn.Linear(ffn_channels, channels)
        self.norm1 = nn.LayerNorm(channels)
        self.norm2 = nn.LayerNorm(channels)
        self.norm3 = nn.LayerNorm(channels)
        self.dropout = nn.Dropout(dropout)
        self.dropout1 = nn.Dropout(dropout)
        self.dropout2 = nn.Dropout(dropout)
        self.dropout3 = nn.Dropout(dropout)
        self.activation = F.relu if activation == "relu" else F.gelu
        self.query_pos_embed = PositionEmbedding(channels, momentum)
        self.key_pos_embed = PositionEmbedding(channels, momentum)

    def forward(
        self,
        query: torch.Tensor,
        key: torch.Tensor,
        query_pos: torch.Tensor,
        key_pos: torch.Tensor,
        key_padding_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """``query (N, C, Lq)``, ``key (N, C, Lk)``, positions ``(N, L, 2)``, mask ``(N, Lk)`` (True:
        ignored) -> ``(N, C, Lq)``."""
        qpe = self.query_pos_embed(query_pos)
        kpe = self.key_pos_embed(key_pos)
        q = query.permute(2, 0, 1)
        k = key.permute(2, 0, 1) + kpe
        x = q + qpe
        q = self.norm1(q + self.dropout1(self.self_attn(x, x, x, need_weights=False)[0]))
        att = self.cross_attn(q + qpe, k, k, key_padding_mask=key_padding_mask, need_weights=False)[0]
        q = self.norm2(q + self.dropout2(att))
        q = self.norm3(q + self.dropout3(self.linear2(self.dropout(self.activation(self.linear1(q))))))
        return q.permute(1, 2, 0)


class TransFusionHead(nn.Module):
    """TransFusion-L's head (module docstring).

    Args:
        in_channels: channels of the BEV feature map.
        class_names: the classes in label order (the builder passes the dataset's).
        grid: the voxel grid; the head map is its (Y, X) plane downsampled by ``out_size_factor``.
        out_size_factor: stride of the head map in voxels (OpenPCDet ``FEATURE_MAP_STRIDE``).
        hidden_channels, num_heads, ffn_channels, dropout, activation: the decoder layer (and the
            shared conv's output channels).
        num_proposals: queries per frame.
        nms_kernel_size: the local-maximum window of the query selection (odd).
        single_cell_classes: classes whose heatmap is not local-maximum filtered (small objects:
            nuScenes pedestrian and traffic cone, Waymo pedestrian and cyclist).
        query_radius: None for global cross-attention, else the half-size of the local window.
        xy_layout: run the convs on the transposed ``(X, Y)`` map (the DSVT/ScatterFormer heads).
        head_channels: hidden channels of the prediction branches.
        num_heatmap_convs: convs of the query class branch (official ``NUM_HM_CONV``); the box
            branches have 2.
        with_velocity, with_iou: the velocity and IoU branches.
        bias_before_norm: the heatmap head's and prediction branches' hidden convs carry a bias
            although a BatchNorm follows (the DSVT head hard-codes it, OpenPCDet's follows
            ``USE_BIAS_BEFORE_NORM``).
        norm_momentum: every BatchNorm's momentum (``BN_MOMENTUM``).
        code_weights: L1 weights of (x, y, z, log dx, log dy, log dz, sin, cos(, vx, vy)).
        cls_weight, bbox_weight, heatmap_weight, iou_weight, iou_reg_weight: loss weights (0 turns
            the IoU and DIoU losses off).
        focal_alpha, focal_gamma: the query classification focal loss.
        cost_cls, cost_reg, cost_iou: Hungarian matching cost weights (focal, normalized-BEV L1, -IoU).
        gaussian_overlap, min_radius: the dense heatmap targets (as CenterHead's).
        score_threshold: detections need a score above it (strictly, as the official).
        iou_rectifier: per class or one: ``score^(1 - a) * iou^a`` with the IoU branch; 0 turns it off.
        nms_iou_thresholds: ``{class: IoU}``: rotated BEV NMS among the detections of that class
            alone; classes not named keep every detection (the official nuScenes tasks: NMS only for
            pedestrian and traffic cone).
        nms_pre_max_size, nms_post_max_size: NMS candidates and survivors per NMS class.
        post_center_range: ``(x_min, y_min, z_min, x_max, y_max, z_max)`` metres; None keeps all.
    """

    def __init__(
        self,
        in_channels: int,
        class_names: Sequence[str],
        grid: VoxelGrid,
        out_size_factor: int = 2,
        hidden_channels: int = 128,
        num_proposals: int = 200,
        num_heads: int = 8,
        ffn_channels: int = 256,
        dropout: float = 0.0,
        activation: str = "relu",
        nms_kernel_size: int = 3,
        single_cell_classes: Sequence[str] = ("pedestrian", "traffic_cone"),
        query_radius: int | None = None,
        xy_layout: bool = False,
        head_channels: int = 64,
        num_heatmap_convs: int = 2,
        with_velocity: bool = True,
        with_iou: bool = False,
        bias_before_norm: bool = False,
        norm_momentum: float = 0.1,
        code_weights: Sequence[float] = (1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 0.2, 0.2),
        cls_weight: float = 1.0,
        bbox_weight: float = 0.25,
        heatmap_weight: float = 1.0,
        iou_weight: float = 0.0,
        iou_reg_weight: float = 0.0,
        focal_alpha: float = 0.25,
        focal_gamma: float = 2.0,
        cost_cls: float = 0.15,
        cost_reg: float = 0.25,
        cost_iou: float = 0.25,
        gaussian_overlap: float = 0.1,
        min_radius: int = 2,
        score_threshold: float = 0.0,
        iou_rectifier: float | Sequence[float] = 0.0,
        nms_iou_thresholds: Mapping[str, float] | None = None,
        nms_pre_max_size: int = 1000,
        nms_post_max_size: int = 100,
        post_center_range: Sequence[float] | None = (-61.2, -61.2, -10.0, 61.2, 61.2, 10.0),
    ) -> None:
        super().__init__()
        self.class_names = tuple(str(n) for n in class_names)
        if not self.class_names or len(set(self.class_names)) != len(self.class_names):
            raise ValueError(f"class_names must be non-empty and unique, got {list(self.class_names)}")
        k = len(self.class_names)
        unknown = sorted(set(single_cell_classes) - set(self.class_names))
        if unknown:
            raise ValueError(f"single_cell_classes {unknown} are not among the classes {list(self.class_names)}")
        self.single_cell = tuple(i for i, n in enumerate(self.class_names) if n in set(single_cell_classes))
        nms = dict(nms_iou_thresholds or {})
        unknown = sorted(set(nms) - set(self.class_names))
        if unknown:
            raise ValueError(f"nms_iou_thresholds names {unknown}, not among the classes {list(self.class_names)}")
        if nms_kernel_size < 1 or nms_kernel_size % 2 == 0:
            raise ValueError(f"nms_kernel_size must be odd and >= 1, got {nms_kernel_size}")
        if num_heatmap_convs < 1:
            raise ValueError(f"num_heatmap_convs must be >= 1, got {num_heatmap_convs}")
        if query_radius is not None and int(query_radius) < 0:
            raise ValueError(f"query_radius must be None or >= 0, got {query_radius}")
        self.grid = grid
        self.out_size_factor = int(out_size_factor)
        if self.out_size_factor < 1:
            raise ValueError(f"out_size_factor must be >= 1, got {out_size_factor}")
        self.num_proposals = int(num_proposals)
        self.nms_kernel_size = int(nms_kernel_size)
        self.query_radius = None if query_radius is None else int(query_radius)
        self.xy_layout = bool(xy_layout)
        self.hidden_channels = int(hidden_channels)
        self.with_velocity = bool(with_velocity)
        self.with_iou = bool(with_iou)
        self.code_size = QUERY_CODE_SIZE if self.with_velocity else QUERY_CODE_SIZE - 2
        weights = tuple(float(v) for v in code_weights)
        if len(weights) < self.code_size:
            raise ValueError(f"code_weights needs {self.code_size} values, got {len(weights)}")
        self.register_buffer("code_weights", torch.tensor(weights[: self.code_size]), persistent=False)
        self.cls_weight, self.bbox_weight = float(cls_weight), float(bbox_weight)
        self.heatmap_weight, self.iou_weight, self.iou_reg_weight = (
            float(heatmap_weight), float(iou_weight), float(iou_reg_weight)
        )  # fmt: skip
        if self.iou_weight > 0 and not self.with_iou:
            raise ValueError("iou_weight > 0 needs with_iou: true")
        self.focal_alpha, self.focal_gamma = float(focal_alpha), float(focal_gamma)
        self.costs = (float(cost_cls), float(cost_reg), float(cost_iou))
        self.gaussian_overlap, self.min_radius = float(gaussian_overlap), int(min_radius)
        if isinstance(iou_rectifier, (int, float)):
            rect = (float(iou_rectifier),) * k
        else:
            rect = tuple(float(v) for v in iou_rectifier)
            if len(rect) == 1:
                rect = rect * k
            if len(rect) != k:
                raise ValueError(f"iou_rectifier needs one value or one per class ({k}), got {len(rect)}")
        if post_center_range is not None:
            post_center_range = tuple(float(v) for v in post_center_range)
            if len(post_center_range) != 6:
                raise ValueError(f"post_center_range needs 6 numbers, got {post_center_range}")
        vx, vy = grid.voxel_size[0], grid.voxel_size[1]
        self._decode = QueryDecodeSettings(
            range_min=(grid.range_min[0], grid.range_min[1]),
            cell_size=(vx * self.out_size_factor, vy * self.out_size_factor),
            score_threshold=float(score_threshold),
            iou_rectifier=rect if self.with_iou else (0.0,) * k,
            nms_iou_thresholds=tuple(float(nms[n]) if n in nms else -1.0 for n in self.class_names),
            nms_pre_max_size=int(nms_pre_max_size),
            nms_post_max_size=int(nms_post_max_size),
            post_center_range=post_center_range,
        )

        c, m = self.hidden_channels, float(norm_momentum)
        self.shared_conv = nn.Conv2d(in_channels, c, 3, padding=1)
        self.heatmap_head = nn.Sequential(
            _conv_bn_relu(nn.Conv2d(c, c, 3, padding=1, bias=bool(bias_before_norm)), c, nn.BatchNorm2d, m),
            nn.Conv2d(c, k, 3, padding=1),
        )
        self.class_encoding = nn.Conv1d(k, c, 1)
        self.decoder = QueryDecoderLayer(c, num_heads, ffn_channels, float(dropout), activation, m)
        branches = {"center": 2, "height": 1, "dim": 3, "rot": 2}
        if self.with_velocity:
            branches["vel"] = 2
        if self.with_iou:
            branches["iou"] = 1
        branches["heatmap"] = k
        self.prediction_head = nn.ModuleDict()
        for name, out in branches.items():
            n_convs = int(num_heatmap_convs) if name == "heatmap" else 2
            layers: list[nn.Module] = []
            for _ in range(n_convs - 1):
                # The official's hidden convs all read the hidden channels (its loop never updates them).
                layers.append(_conv_bn_relu(nn.Conv1d(c, head_channels, 1, bias=bool(bias_before_norm)),
                                            head_channels, nn.BatchNorm1d, m))  # fmt: skip
            layers.append(nn.Conv1d(head_channels if n_convs > 1 else c, out, 1))
            self.prediction_head[name] = nn.Sequential(*layers)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        # As the official: xavier-uniform on the decoder's matrices, the class branch's bias at the
        # heatmap prior. The official leaves the dense heatmap's last bias at PyTorch's default; here it
        # starts at the prior too, so that the first steps' heatmap loss is not dominated by the many
        # negatives (an initialisation only: a converted checkpoint overwrites it).
        for p in self.decoder.parameters():
            if p.dim() > 1:
                nn.init.xavier_uniform_(p)
        nn.init.constant_(self.prediction_head["heatmap"][-1].bias, HEATMAP_INIT_BIAS)
        nn.init.constant_(self.heatmap_head[-1].bias, HEATMAP_INIT_BIAS)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def map_size(self) -> tuple[int, int]:
        """``(H, W)`` of the head map."""
        _, gy, gx = self.grid.shape
        f = self.out_size_factor
        return -(-gy // f), -(-gx // f)

    def forward(self, features: torch.Tensor) -> TransFusionOutputs:
        """``features``: ``(B, in_channels, H, W)`` BEV map (rows along y, columns along x)."""
        b, _, h, w = features.shape
        if (h, w) != self.map_size():
            raise ValueError(f"TransFusionHead: the map is {h}x{w} (HxW) but the grid gives {self.map_size()}")
        x = features.transpose(2, 3) if self.xy_layout else features
        feat = self.shared_conv(x)
        rows, cols = feat.shape[-2:]
        flat_feat = feat.flatten(2)  # (B, C, rows * cols)
        dense = self.heatmap_head(feat)  # (B, K, rows, cols)
        prob = dense.detach().sigmoid()
        pad = self.nms_kernel_size // 2
        if pad > 0:
            # Local maxima in the interior; the border cells never count as maxima (the official).
            inner = F.max_pool2d(prob, self.nms_kernel_size, stride=1, padding=0)
            local_max = F.pad(inner, (pad, pad, pad, pad))
        else:
            local_max = prob
        if self.single_cell:
            keep_all = torch.zeros(self.num_classes, dtype=torch.bool, device=prob.device)
            keep_all[list(self.single_cell)] = True
            local_max = torch.where(keep_all[None, :, None, None], prob, local_max)
        peaks = (prob * (prob == local_max)).flatten(2)  # (B, K, rows * cols)
        n_cells = rows * cols
        p = min(self.num_proposals, self.num_classes * n_cells)
        top = peaks.flatten(1).topk(p, dim=1).indices  # (B, P)
        labels = torch.div(top, n_cells, rounding_mode="floor")
        index = top % n_cells  # flat index in the (rows, cols) layout
        query = flat_feat.gather(2, index[:, None, :].expand(-1, flat_feat.shape[1], -1))
        one_hot = (labels[:, None, :] == torch.arange(self.num_classes, device=labels.device)[None, :, None]).to(
            query.dtype
        )
        query = query + self.class_encoding(one_hot)
        r_idx = torch.div(index, cols, rounding_mode="floor")
        c_idx = index % cols
        # Cell centres in cells, (x, y) order.
        ix, iy = (r_idx, c_idx) if self.xy_layout else (c_idx, r_idx)
        query_pos = torch.stack([ix, iy], dim=-1).to(query.dtype) + 0.5  # (B, P, 2)

        if self.query_radius is None:
            ar_r = torch.arange(rows, device=feat.device, dtype=query.dtype)
            ar_c = torch.arange(cols, device=feat.device, dtype=query.dtype)
            gr, gc = torch.meshgrid(ar_r, ar_c, indexing="ij")
            gx, gy = (gr, gc) if self.xy_layout else (gc, gr)
            key_pos = (torch.stack([gx.reshape(-1), gy.reshape(-1)], dim=-1) + 0.5)[None].expand(b, -1, -1)
            query = self.decoder(query, flat_feat, query_pos, key_pos)
        else:
            r = self.query_radius
            off = torch.arange(-r, r + 1, device=feat.device)
            d_r, d_c = torch.meshgrid(off, off, indexing="ij")
            # The official cuts the window on the flat index: only indices outside the map are masked.
            key_index = (r_idx[:, :, None] + d_r.reshape(1, 1, -1)) * cols + c_idx[:, :, None] + d_c.reshape(1, 1, -1)
            key_mask = (key_index < 0) | (key_index >= n_cells)
            key_index = key_index.clamp(0, n_cells - 1)  # (B, P, L)
            nk = key_index.shape[-1]
            keys = flat_feat.gather(2, key_index.reshape(b, 1, -1).expand(-1, flat_feat.shape[1], -1))
            keys = keys.view(b, -1, p, nk).permute(0, 2, 1, 3).reshape(b * p, -1, nk)
            kr = torch.div(key_index, cols, rounding_mode="floor")
            kc = key_index % cols
            kx, ky = (kr, kc) if self.xy_layout else (kc, kr)
            key_pos = (torch.stack([kx, ky], dim=-1).to(query.dtype) + 0.5).reshape(b * p, nk, 2)
            q = query.permute(0, 2, 1).reshape(b * p, -1, 1)
            q = self.decoder(q, keys, query_pos.reshape(b * p, 1, 2), key_pos, key_mask.reshape(b * p, nk))
            query = q.reshape(b, p, -1).permute(0, 2, 1)

        pred = {name: branch(query) for name, branch in self.prediction_head.items()}
        center = pred["center"] + query_pos.permute(0, 2, 1)
        query_score = peaks.gather(2, index[:, None, :].expand(-1, self.num_classes, -1))
        if self.xy_layout:
            dense = dense.transpose(2, 3)
            query_cells = c_idx * w + r_idx
        else:
            query_cells = index
        return TransFusionOutputs(
            dense_heatmap=dense, query_labels=labels, query_cells=query_cells, query_score=query_score,
            heatmap=pred["heatmap"], center=center, height=pred["height"], dim=pred["dim"], rot=pred["rot"],
            vel=pred.get("vel"), iou=pred.get("iou"),
        )  # fmt: skip

    def loss(
        self,
        outputs: TransFusionOutputs,
        boxes: torch.Tensor,
        labels: torch.Tensor,
        box_batch_index: torch.Tensor,
        batch_size: int,
    ) -> dict[str, torch.Tensor]:
        """Weighted losses (the trainer sums them): ``loss_heatmap``, ``loss_cls``, ``loss_bbox``, with
        ``iou_weight`` ``loss_iou``, with ``iou_reg_weight`` ``loss_iou_reg``.

        Args:
            boxes: ``(M, 7|9)`` ground truth ``[x, y, z, dx, dy, dz, heading(, vx, vy)]``.
            labels: ``(M,)`` 0-based over ``class_names``.
            box_batch_index: ``(M,)`` frame of each box.
        """
        from pointformer.models.heads.transfusion_loss import transfusion_loss

        if outputs.batch_size != batch_size:
            raise ValueError(f"outputs have batch size {outputs.batch_size}, but batch_size is {batch_size}")
        return transfusion_loss(self, outputs, boxes, labels, box_batch_index, batch_size)

    def decode_settings(self) -> QueryDecodeSettings:
        """Everything ``decode`` needs besides the outputs (plain numbers: exported as JSON)."""
        return self._decode

    def export_output_names(self) -> list[str]:
        """The names ``export_outputs`` returns, in order (the exported graph's outputs)."""
        return ["query_heatmap", "query_score", "query_labels", "query_code"] + (["query_iou"] if self.with_iou else [])

    def export_outputs(self, outputs: TransFusionOutputs) -> dict[str, torch.Tensor]:
        """The tensors ``decode_queries`` reads, by graph output name (one frame or more)."""
        named = {
            "query_heatmap": outputs.heatmap,
            "query_score": outputs.query_score,
            "query_labels": outputs.query_labels,
            "query_code": outputs.code(),
        }
        if self.with_iou:
            named["query_iou"] = outputs.iou
        return named

    @torch.no_grad()
    def decode(self, outputs: TransFusionOutputs) -> list[Detections]:
        """Detections per frame: boxes ``(M, 9)`` with velocity (``(M, 7)`` without), scores, labels."""
        return decode_queries(self.export_outputs(outputs), self._decode)
