"""The training data loader: a per-epoch reproducible shuffle, shared between one and many processes."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from torch.utils.data import DataLoader, Dataset, DistributedSampler

from pointformer.engine.distributed import get_rank, get_world_size


def build_train_loader(
    dataset: Dataset,
    batch_size: int,
    collate_fn: Callable[[list[Any]], Any] | None = None,
    num_workers: int = 0,
    shuffle: bool = True,
    seed: int = 0,
    drop_last: bool = True,
    pin_memory: bool = False,
) -> DataLoader:
    """A DataLoader over ``dataset`` with ``batch_size`` frames per process.

    The order comes from a ``DistributedSampler`` in every case (``num_replicas=1`` in a single process):
    epoch ``e`` is the permutation drawn from ``seed + e``, so the order depends on the epoch alone (a
    resumed run sees the same batches) and ``R`` processes with batch ``b`` together see exactly the
    batches of one process with batch ``R * b`` (rank ``r`` takes every ``R``-th index of the permutation).
    The trainer calls ``loader.sampler.set_epoch(epoch)`` before each epoch.

    Workers (``num_workers > 0``) are started afresh each epoch (not persistent) on purpose: each epoch's
    workers seed their torch, ``random`` and numpy generators from a base seed the DataLoader draws from
    torch's global generator at the start of the epoch, and the checkpoint saves that generator, so a
    resumed run's augmentations equal those of an uninterrupted one. Persistent workers would carry their
    generators over from the previous epoch, which a resumed run cannot reproduce.
    """
    sampler = DistributedSampler(
        dataset, num_replicas=get_world_size(), rank=get_rank(), shuffle=shuffle, seed=seed, drop_last=drop_last
    )
    return DataLoader(
        dataset,
        batch_size=batch_size,
        sampler=sampler,
        collate_fn=collate_fn,
        num_workers=num_workers,
        pin_memory=pin_memory,
        drop_last=drop_last,
        persistent_workers=False,
    )
