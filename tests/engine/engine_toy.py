"""A toy model, dataset and batch that follow the engine's contract (no detector involved).

Imported by the engine tests and, by module name, by the processes the distributed test spawns.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from torch.utils.data import Dataset


@dataclass
class ToyBatch:
    """x (B, 4) float32 inputs, y (B, 1) float32 targets."""

    x: torch.Tensor
    y: torch.Tensor

    def to(self, device: torch.device | str) -> ToyBatch:
        return ToyBatch(self.x.to(device), self.y.to(device))

    @property
    def batch_size(self) -> int:
        return int(self.x.shape[0])


def collate(samples: list[tuple[torch.Tensor, torch.Tensor]]) -> ToyBatch:
    xs, ys = zip(*samples, strict=True)
    return ToyBatch(torch.stack(xs), torch.stack(ys))


class ToyDataset(Dataset):
    """``n`` fixed samples of a noisy linear function; ``augment`` adds noise drawn from the global
    ``random``, numpy and torch generators (so a resumed run matches only if all three are restored).
    ``fail_at``: raise after this many ``__getitem__`` calls (a run killed mid-epoch)."""

    def __init__(self, n: int = 16, augment: bool = False, fail_at: int | None = None) -> None:
        g = torch.Generator().manual_seed(1234)
        self.x = torch.randn(n, 4, generator=g)
        w = torch.tensor([[1.0], [-2.0], [0.5], [3.0]])
        self.y = self.x @ w + 0.1 * torch.randn(n, 1, generator=g)
        self.augment = augment
        self.fail_at = fail_at
        self.calls = 0
        self.epochs_seen: list[int] = []

    def set_epoch(self, epoch: int) -> None:
        self.epochs_seen.append(epoch)

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        self.calls += 1
        if self.fail_at is not None and self.calls > self.fail_at:
            raise KeyboardInterrupt("simulated kill")
        x = self.x[i].clone()
        if self.augment:
            scale = 1.0 + 0.05 * random.uniform(-1, 1) + 0.05 * float(np.random.uniform(-1, 1))
            x = x * scale + 0.01 * torch.randn(4)
        return x, self.y[i]


class ToyModel(nn.Module):
    """MLP regressor: weighted mean losses in train mode, per-frame predictions in eval mode."""

    def __init__(self, dropout: float = 0.0, batchnorm: bool = False) -> None:
        super().__init__()
        self.fc1 = nn.Linear(4, 16)
        self.norm = nn.BatchNorm1d(16) if batchnorm else nn.Identity()
        self.drop = nn.Dropout(dropout)
        self.fc2 = nn.Linear(16, 1)

    def forward(self, batch: ToyBatch) -> dict[str, torch.Tensor] | list[torch.Tensor]:
        pred = self.fc2(self.drop(torch.relu(self.norm(self.fc1(batch.x)))))
        if not self.training:
            return list(pred.float().unbind(0))
        err = pred.float() - batch.y
        return {"mse": (err**2).mean(), "l1": 0.1 * err.abs().mean()}


def mse_of(model: nn.Module, dataset: ToyDataset) -> float:
    """Mean squared error of ``model`` on ``dataset`` (un-augmented inputs)."""
    device = next(model.parameters()).device
    with torch.no_grad():
        preds = torch.stack(model(ToyBatch(dataset.x, dataset.y).to(device))).cpu()
    return float(((preds - dataset.y) ** 2).mean())


def train_toy(work_dir, batch_size: int, epochs: int = 2, batchnorm: bool = True, **trainer_kwargs):
    """Train a fresh ``ToyModel`` (seed 0, no dropout) on 8 samples; returns the trainer.

    Used by the distributed test in a single process (``batch_size`` 2) and in each of 2 ranks (1).
    """
    from pointformer.engine import OneCycleSchedule, Trainer, build_optimizer, build_train_loader

    torch.manual_seed(0)
    model = ToyModel(batchnorm=batchnorm)
    optimizer = build_optimizer(model, name="adamw", lr=0.02, weight_decay=0.01)
    loader = build_train_loader(ToyDataset(n=8), batch_size=batch_size, collate_fn=collate, seed=3)
    scheduler = OneCycleSchedule(optimizer, epochs * len(loader), div_factor=10, pct_start=0.3)
    trainer = Trainer(
        model,
        optimizer,
        loader,
        work_dir,
        epochs,
        scheduler=scheduler,
        grad_clip=1.0,
        log_interval=2,
        progress=False,
        tensorboard=False,
        **trainer_kwargs,
    )
    trainer.train()
    return trainer


def distributed_worker(rank: int, world_size: int, port: int, work_dir: str, out_dir: str) -> None:
    """One rank of the distributed test (started by ``torch.multiprocessing.spawn``): joins a gloo group
    through the same environment variables torchrun sets, trains, and saves its parameters."""
    import os

    from pointformer.engine import cleanup_distributed, init_distributed

    os.environ.update(
        RANK=str(rank),
        WORLD_SIZE=str(world_size),
        LOCAL_RANK=str(rank),
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
    )
    torch.set_num_threads(1)
    info = init_distributed(device="cpu")
    assert info.world_size == world_size and info.rank == rank
    try:
        # BatchNorm off: DDP supports SyncBatchNorm on CUDA only (the trainer warns and keeps plain BN).
        trainer = train_toy(work_dir, batch_size=1, batchnorm=False)
        assert trainer.world_size == world_size
        assert isinstance(trainer.model, torch.nn.parallel.DistributedDataParallel)
        state = {k: v.detach().clone() for k, v in trainer.module.state_dict().items()}
        torch.save(state, os.path.join(out_dir, f"rank{rank}.pth"))
    finally:
        cleanup_distributed()
