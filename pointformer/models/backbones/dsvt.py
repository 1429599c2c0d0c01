"""DSVT (Wang et al., CVPR 2023): dynamic sparse voxel transformer with rotated sets.

One module covers both published variants through its arguments:

* DSVT-P (pillars): one stage on a ``Z = 1`` grid, 4 blocks, sets of 36, windows 12 x 12 and
  24 x 24 (shift 6), no pooling;
* DSVT-V (voxels): 4 stages on a ``Z = 32`` grid, 1 block each, sets of 48, full-height windows
  (12 x 12 x 32, x 8, x 2, x 1 and their 24 x 24 hybrids), attention pooling in z between stages
  (strides 4, 4, 2), ending on ``Z = 1``.

Argument order: shapes in the arguments follow the official YAML, ``(x, y, z)``
(``window_shapes``, ``hybrid_factor``, ``shifts``, ``downsample_strides``); ``sparse_shape`` is the
grid's ``(Z, Y, X)`` (``VoxelGrid.shape``, passed by the builder). Everything inside is ``(z, y, x)``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from pointformer.models.layers.attention_pooling import AttentionPooling
from pointformer.models.layers.learned_position import LearnedPositionEmbedding, window_relative_location
from pointformer.models.layers.set_attention import DSVTBlock
from pointformer.ops import RotatedSets, dsvt_pooling_map, dsvt_window_configs, partition_rotated_sets
from pointformer.ops.grouping import PoolingMap
from pointformer.structures import SparseVoxels

Triple = tuple[int, int, int]


def _zyx(values: Sequence[int], name: str) -> Triple:
    """An official ``(x, y, z)`` triple as ``(z, y, x)``."""
    v = tuple(int(i) for i in values)
    if len(v) != 3:
        raise ValueError(f"DSVT: {name} must have 3 entries (x, y, z), got {list(values)}")
    return (v[2], v[1], v[0])


class DSVT(nn.Module):
    """DSVT's sparse backbone: stages of DSVT blocks over dynamic rotated sets, with attention
    pooling between stages (DSVT-V). ``(N, C)`` voxel features in, ``(N', C)`` out.

    Per stage ``s`` (grid ``shape_s``, set size ``tau_s``), the two window configurations are
    ``window_shapes[s]`` and ``window_shapes[s] * hybrid_factor`` with ``shifts[s]``
    (``dsvt_window_configs``); each gives y-major and x-major sets (``partition_rotated_sets``,
    computed once per forward and layout). Block ``g`` (counted over all stages, as the official
    code does, so DSVT-V's single-block stages alternate configurations 0, 1, 0, 1) attends in
    configuration ``g % 2``: its layer 0 in the y-major sets, layer 1 in the x-major sets.

    Positional embedding: every (stage, block, layer) has its own ``LearnedPositionEmbedding`` of
    the in-window coordinates minus half the window (``(x, y)`` on pillar stages, ``(x, y, z)``
    where the stage grid has ``Z > 1``), added to queries and keys. As in the official code (its
    known indexing quirk, kept by the authors for reproducibility), layer ``i`` embeds the
    coordinates of configuration ``i``, which are not the windows it attends in when ``i != g % 2``;
    ``match_pos_embed_windows=True`` embeds the attended configuration's coordinates instead (same
    parameters).

    Between stages, ``AttentionPooling`` merges each ``downsample_strides[s]`` cell into one voxel
    (``dsvt_pooling_map``); the output's ``spatial_shape`` and ``stride`` follow
    (``out_spatial_shape``, ``out_stride``). Every parameter with more than one dimension is
    Xavier-uniform initialised (the official ``_reset_parameters``), the slot embeddings of the
    pooling included.

    Args:
        in_channels: ``C``, kept by every stage (the official ``d_model``, equal to the VFE width).
        sparse_shape: the input grid ``(Z, Y, X)`` cells.
        set_sizes: ``tau`` per stage (the first entry of the official ``set_info``).
        num_blocks: blocks per stage (the second entry of ``set_info``).
        window_shapes: ``(wx, wy, wz)`` per stage.
        hybrid_factor: ``(x, y, z)`` factors of the second window configuration.
        shifts: per stage, the ``(x, y, z)`` shifts of the two configurations; None for the
            official defaults (the window for config 0, half the hybrid window for config 1). A
            window spanning the stage's whole height is never shifted in z.
        downsample_strides: ``(sx, sy, sz)`` pooling stride after each stage but the last.
        num_heads: attention heads of the set attention.
        ffn_channels: feed-forward hidden width.
        activation: ``"gelu"`` or ``"relu"``.
        pooling_heads: attention heads of the pooling (the official block fixes 8).
        match_pos_embed_windows: see above (default False: the official behaviour).
        use_checkpoint: activation checkpointing per block in training (OpenPCDet's
            ``USE_CHECKPOINT``); same results, less memory, one more forward.
        attention_backend: ``grouped_attention`` / ``indexed_attention`` backend (None: default).

    Parameters at the published Waymo configs (C = 192, 8 heads, FFN 384): DSVT-P 2,684,928,
    DSVT-V 3,133,824.
    """

    def __init__(
        self,
        in_channels: int,
        sparse_shape: Sequence[int],
        set_sizes: Sequence[int] = (36,),
        num_blocks: Sequence[int] = (4,),
        window_shapes: Sequence[Sequence[int]] = ((12, 12, 1),),
        hybrid_factor: Sequence[int] = (2, 2, 1),
        shifts: Sequence[Sequence[Sequence[int]]] | None = (((0, 0, 0), (6, 6, 0)),),
        downsample_strides: Sequence[Sequence[int]] = (),
        num_heads: int = 8,
        ffn_channels: int = 384,
        activation: str = "gelu",
        pooling_heads: int = 8,
        match_pos_embed_windows: bool = False,
        use_checkpoint: bool = False,
        attention_backend: str | None = None,
    ) -> None:
        super().__init__()
        num_stages = len(set_sizes)
        if num_stages < 1:
            raise ValueError("DSVT: set_sizes must name at least one stage")
        lengths = {
            "num_blocks": len(num_blocks),
            "window_shapes": len(window_shapes),
            "downsample_strides": len(downsample_strides) + 1,
        }
        if shifts is not None:
            lengths["shifts"] = len(shifts)
        if any(n != num_stages for n in lengths.values()):
            raise ValueError(
                f"DSVT: set_sizes gives {num_stages} stages; num_blocks, window_shapes and shifts need one entry "
                f"per stage and downsample_strides one per stage but the last, got {lengths} (counted as stages)"
            )
        if min(set_sizes) < 1 or min(num_blocks) < 1:
            raise ValueError(f"DSVT: set sizes and block counts must be >= 1, got {set_sizes}, {num_blocks}")
        shape = tuple(int(s) for s in sparse_shape)
        if len(shape) != 3 or min(shape) < 1:
            raise ValueError(f"DSVT: sparse_shape must be (Z, Y, X) cells, got {list(sparse_shape)}")
        hybrid = _zyx(hybrid_factor, "hybrid_factor")
        strides = [_zyx(s, f"downsample_strides[{i}]") for i, s in enumerate(downsample_strides)]
        if any(min(s) < 1 for s in strides):
            raise ValueError(f"DSVT: downsample strides must be >= 1, got {list(downsample_strides)}")

        self.in_channels = self.out_channels = int(in_channels)
        self.set_sizes = tuple(int(t) for t in set_sizes)
        self.num_blocks = tuple(int(b) for b in num_blocks)
        self.downsample_strides: tuple[Triple, ...] = tuple(strides)
        self.match_pos_embed_windows = bool(match_pos_embed_windows)
        self.use_checkpoint = bool(use_checkpoint)
        # Grid of every stage: ceil-divided by the pooling strides (the official sparse_shape_list).
        self.stage_shapes: tuple[Triple, ...] = (shape,)  # type: ignore[assignment]
        for s in strides:
            self.stage_shapes += (tuple(-(-n // k) for n, k in zip(self.stage_shapes[-1], s, strict=True)),)
        self.out_spatial_shape: Triple = self.stage_shapes[-1]
        self.out_stride: Triple = tuple(math.prod(s[a] for s in strides) for a in range(3))  # type: ignore[assignment]
        # The two (window, shift) configurations of every stage, (z, y, x).
        self.window_configs = tuple(
            dsvt_window_configs(
                _zyx(window_shapes[s], f"window_shapes[{s}]"),
                hybrid,
                None if shifts is None else [_zyx(v, f"shifts[{s}]") for v in shifts[s]],
            )
            for s in range(num_stages)
        )
        # Embedding input: (x, y, z) where the stage grid has height (official), so 3D windows.
        self.pos_with_z = tuple(self.stage_shapes[s][0] > 1 for s in range(num_stages))
        for s, configs in enumerate(self.window_configs):
            for window, _ in configs:
                if self.pos_with_z[s] != (window[0] > 1):
                    raise ValueError(
                        f"DSVT: stage {s} has {self.stage_shapes[s][0]} z cells but a window of {window[0]} z cells "
                        f"(window (z, y, x) {window}): windows must be 3D (wz > 1) on stages with z cells and "
                        "flat (wz = 1) on pillar stages, as the embedding's input has z exactly on the former"
                    )

        self.stages = nn.ModuleList(
            nn.ModuleList(
                DSVTBlock(in_channels, num_heads, ffn_channels, activation, attention_backend) for _ in range(blocks)
            )
            for blocks in self.num_blocks
        )
        # One embedding per (stage, block, layer) (the official posembed_layers[stage][block][shift]).
        self.pos_embeds = nn.ModuleList(
            nn.ModuleList(
                nn.ModuleList(LearnedPositionEmbedding(3 if self.pos_with_z[s] else 2, in_channels) for _ in range(2))
                for _ in range(self.num_blocks[s])
            )
            for s in range(num_stages)
        )
        self.poolings = nn.ModuleList(
            AttentionPooling(in_channels, math.prod(s), pooling_heads, attention_backend) for s in strides
        )
        for p in self.parameters():
            if p.dim() > 1:
                nn.init.xavier_uniform_(p)

    # --- layout ------------------------------------------------------------------------------------

    def sets(self, voxels: SparseVoxels, stage: int, config: int) -> RotatedSets:
        """The rotated sets of window configuration ``config`` on stage ``stage``'s voxels, computed
        once per voxel layout (cached on ``voxels``)."""
        window, shift = self.window_configs[stage][config]
        tau = self.set_sizes[stage]
        return voxels.cached(
            self.sets_key(stage, config),
            lambda: partition_rotated_sets(voxels.coords, voxels.batch_size, voxels.spatial_shape, window, tau, shift),
        )

    def sets_key(self, stage: int, config: int) -> tuple:
        """The ``SparseVoxels.cached`` key of ``sets(voxels, stage, config)`` (export gives it precomputed)."""
        window, shift = self.window_configs[stage][config]
        return ("dsvt_sets", window, shift, self.set_sizes[stage])

    def pooling_key(self, stage: int) -> tuple:
        """The ``SparseVoxels.cached`` key of ``pooling_map(voxels, stage)``."""
        return ("dsvt_pooling", self.downsample_strides[stage])

    @staticmethod
    def pooled_cache_key(stage: int) -> tuple:
        """The key, in stage ``stage``'s cache, of the cache of the voxels pooled after it."""
        return ("dsvt_pooled", stage)

    def configs_attended(self, stage: int) -> tuple[int, ...]:
        """The window configurations whose partitions the blocks of ``stage`` attend in."""
        first = sum(self.num_blocks[:stage])
        return tuple(sorted({(first + b) % 2 for b in range(self.num_blocks[stage])}))

    def pooling_map(self, voxels: SparseVoxels, stage: int) -> PoolingMap:
        """Where stage ``stage``'s voxels go in the pooling after it (cached on ``voxels``)."""
        stride = self.downsample_strides[stage]
        return voxels.cached(
            self.pooling_key(stage),
            lambda: dsvt_pooling_map(voxels.coords, voxels.batch_size, voxels.spatial_shape, stride),
        )

    # --- forward -----------------------------------------------------------------------------------

    def forward(self, voxels: SparseVoxels) -> SparseVoxels:
        """``voxels``: ``(N, C)`` features, unique ``(batch, z, y, x)`` coords on ``sparse_shape``.
        Returns the last stage's voxels: ``(N', C)`` features, coords on ``out_spatial_shape``,
        stride multiplied by ``out_stride`` (DSVT-P: the same voxels)."""
        if voxels.num_channels != self.in_channels:
            raise ValueError(f"DSVT: expected {self.in_channels} channels, got {voxels.num_channels}")
        if voxels.spatial_shape != self.stage_shapes[0]:
            raise ValueError(f"DSVT: built for a {self.stage_shapes[0]} (Z, Y, X) grid, got {voxels.spatial_shape}")
        x = voxels.features
        global_block = 0
        for stage, blocks in enumerate(self.stages):
            for block_in_stage, block in enumerate(blocks):
                config = global_block % 2
                sets = self.sets(voxels, stage, config)
                pes = tuple(
                    self.position_embedding(
                        voxels, stage, block_in_stage, layer, config if self.match_pos_embed_windows else layer
                    )
                    for layer in range(2)
                )
                if self.use_checkpoint and self.training and torch.is_grad_enabled():
                    x = checkpoint(block, x, pes, sets.partitions, use_reentrant=False)
                else:
                    x = block(x, pes, sets.partitions)
                global_block += 1
            if stage < len(self.poolings):
                pooling = self.pooling_map(voxels, stage)
                x = self.poolings[stage](x, pooling)
                stride = tuple(a * b for a, b in zip(voxels.stride, pooling.stride, strict=True))
                # The pooled layout is derived from this one: its cache (the next stage's sets) lives
                # in this layout's cache, so that it is built once per input layout (and can be given).
                cache = voxels.cached(self.pooled_cache_key(stage), dict)
                voxels = SparseVoxels(x, pooling.coords, pooling.spatial_shape, voxels.batch_size, stride, cache)
        return voxels.replace_features(x)

    def position_embedding(self, voxels: SparseVoxels, stage: int, block: int, layer: int, config: int) -> torch.Tensor:
        """``(N, C)`` embedding of layer ``layer`` of block ``block`` (counted within ``stage``), from
        the in-window coordinates of window configuration ``config``."""
        sets = self.sets(voxels, stage, config)
        location = window_relative_location(sets.coords_in_window, sets.window_shape, self.pos_with_z[stage])
        return self.pos_embeds[stage][block][layer](location)
