"""Distributed data parallel training under ``torchrun``: process group, rank helpers, DDP wrapping.

``torchrun --nproc_per_node=G tools/train.py ...`` sets ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``,
``MASTER_ADDR`` and ``MASTER_PORT``; ``init_distributed`` reads them and joins the group (NCCL when CUDA
is available, gloo on CPU). Without those variables everything here degrades to a single process
(rank 0 of 1), so the same training script runs with or without torchrun.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import torch
import torch.distributed as dist
from torch import nn


@dataclass(frozen=True)
class DistInfo:
    """Where this process sits: ``rank`` of ``world_size``, ``local_rank`` on its node, and its device."""

    rank: int
    world_size: int
    local_rank: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def init_distributed(
    device: str | torch.device | None = None, backend: str | None = None, timeout_minutes: float = 120.0
) -> DistInfo:
    """Join the process group described by torchrun's environment, or return a single-process ``DistInfo``.

    Args:
        device: ``"cpu"``, ``"cuda"`` or None (CUDA when available). Under torchrun with CUDA each process
            takes ``cuda:LOCAL_RANK``.
        backend: the process-group backend; default NCCL for CUDA, gloo for CPU.
        timeout_minutes: how long a collective may wait; long because the other ranks wait in a barrier
            while rank 0 evaluates.
    """
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(device)
    if device.type == "cuda":
        index = local_rank if device.index is None else device.index
        torch.cuda.set_device(index)
        device = torch.device("cuda", index)
    if world_size > 1 and not dist.is_initialized():
        backend = backend or ("nccl" if device.type == "cuda" else "gloo")
        kwargs: dict[str, Any] = {}
        if backend == "nccl":
            kwargs["device_id"] = device  # binds the communicator to this rank's GPU up front
        dist.init_process_group(
            backend=backend, rank=rank, world_size=world_size, timeout=timedelta(minutes=timeout_minutes), **kwargs
        )
    return DistInfo(rank=rank, world_size=world_size, local_rank=local_rank, device=device)


def cleanup_distributed() -> None:
    """Leave the process group, if one was joined."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def is_distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def get_rank() -> int:
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def get_world_size() -> int:
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def is_main_process() -> bool:
    """True on rank 0 (and in a single process): the one that logs and writes checkpoints."""
    return get_rank() == 0


def barrier() -> None:
    """Wait for every rank (no-op in a single process)."""
    if is_distributed():
        dist.barrier()


def all_reduce_mean(values: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The mean over ranks of each scalar tensor (one collective for the whole dict); identity alone."""
    if not is_distributed() or not values:
        return values
    keys = sorted(values)
    stacked = torch.stack([values[k].detach().float().reshape(()) for k in keys])
    dist.all_reduce(stacked, op=dist.ReduceOp.SUM)
    stacked /= dist.get_world_size()
    return dict(zip(keys, stacked.unbind(0), strict=True))


def all_gather_object(obj: Any) -> list[Any]:
    """Every rank's ``obj``, in rank order (``[obj]`` in a single process)."""
    if not is_distributed():
        return [obj]
    out: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out


def wrap_model(
    model: nn.Module,
    device: torch.device,
    sync_batchnorm: bool = False,
    find_unused_parameters: bool = False,
) -> nn.Module:
    """Move ``model`` to ``device`` and, when distributed, wrap it in ``DistributedDataParallel``.

    ``sync_batchnorm`` converts every BatchNorm to ``SyncBatchNorm`` first (statistics over the global
    batch, as FlatFormer's naiveSyncBN); it is skipped in a single process, where it would be a plain BN,
    and on CPU (with a warning), where DDP does not support it. The converted layers reuse the original
    parameter tensors, so an optimizer built before the conversion still holds them.
    ``find_unused_parameters`` is needed only when some parameters get no gradient in a step.
    """
    model = model.to(device)
    if not is_distributed():
        return model
    if sync_batchnorm and device.type != "cuda":
        # DDP refuses SyncBatchNorm on CPU modules; per-rank statistics are the only option there.
        warnings.warn("SyncBatchNorm needs CUDA: keeping per-rank BatchNorm on CPU", stacklevel=2)
    elif sync_batchnorm:
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    device_ids = [device.index] if device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(
        model, device_ids=device_ids, find_unused_parameters=find_unused_parameters
    )


def unwrap_model(model: nn.Module) -> nn.Module:
    """The plain module inside DDP and/or ``torch.compile`` wrappers (what checkpoints store)."""
    while True:
        if isinstance(model, nn.parallel.DistributedDataParallel | nn.DataParallel):
            model = model.module
        elif hasattr(model, "_orig_mod"):
            model = model._orig_mod
        else:
            return model
