"""The training loop on a toy model: exact resume after a kill, checkpoints, evaluation, logging, clipping."""

from __future__ import annotations

import json
import random

import numpy as np
import pytest
import torch
from engine_toy import ToyDataset, ToyModel, collate, mse_of

from pointformer.engine import (
    OneCycleSchedule,
    Trainer,
    build_optimizer,
    build_train_loader,
    list_checkpoints,
    load_checkpoint,
    resolve_amp,
)

EPOCHS = 2
BATCH = 2


def _make(work_dir, dataset, epochs=EPOCHS, model_seed=0, **kwargs):
    torch.manual_seed(model_seed)
    model = ToyModel(dropout=0.2)
    optimizer = build_optimizer(model, name="adamw", lr=0.05, weight_decay=0.01)
    loader = build_train_loader(dataset, batch_size=BATCH, collate_fn=collate, seed=7)
    # The schedule spans the whole training (EPOCHS), whatever epoch count this Trainer stops at.
    scheduler = OneCycleSchedule(
        optimizer, EPOCHS * len(loader), div_factor=10, pct_start=0.3, momentum_range=(0.95, 0.85)
    )
    defaults = dict(grad_clip=1.0, log_interval=3, seed=5, progress=False, tensorboard=False)
    defaults.update(kwargs)
    return Trainer(model, optimizer, loader, work_dir, epochs, scheduler=scheduler, **defaults)


def test_killed_run_resumes_identically(tmp_path):
    straight = _make(tmp_path / "straight", ToyDataset(augment=True))
    straight.train()

    # Killed in the middle of epoch 2: the dataset raises after 1.5 epochs of samples.
    killed = _make(tmp_path / "killed", ToyDataset(augment=True, fail_at=24))
    with pytest.raises(KeyboardInterrupt):
        killed.train()
    assert [e for e, _ in list_checkpoints(tmp_path / "killed")] == [1]

    # A new process: a different model init and scrambled generators, all to be replaced by the checkpoint.
    random.seed(123)
    np.random.seed(123)
    torch.manual_seed(123)
    resumed = _make(tmp_path / "killed", ToyDataset(augment=True), model_seed=42)
    resumed.train(resume=True)

    assert resumed.epoch == straight.epoch == EPOCHS
    assert resumed.iteration == straight.iteration == EPOCHS * 8
    for (name, a), (_, b) in zip(straight.module.named_parameters(), resumed.module.named_parameters(), strict=True):
        assert torch.equal(a, b), name
    assert resumed.optimizer.param_groups[0]["lr"] == straight.optimizer.param_groups[0]["lr"]
    assert resumed.scheduler.last_step == straight.scheduler.last_step
    # The generators end in the same state, too.
    final = load_checkpoint(tmp_path / "killed" / "epoch_002.pth")
    reference = load_checkpoint(tmp_path / "straight" / "epoch_002.pth")
    assert torch.equal(final["rng"][0]["torch"], reference["rng"][0]["torch"])


def test_resume_without_checkpoint_starts_fresh(tmp_path):
    trainer = _make(tmp_path, ToyDataset(), epochs=1)
    trainer.train(resume=True)
    assert trainer.epoch == 1 and trainer.iteration == 8


def test_checkpoints_eval_hook_and_scalars(tmp_path):
    dataset = ToyDataset()
    calls = []

    def evaluate(model, epoch):
        assert not model.training and not torch.is_grad_enabled()
        torch.rand(100)  # evaluation randomness must not leak into training
        calls.append(epoch)
        return {"mse": mse_of(model, dataset)}

    trainer = _make(
        tmp_path, dataset, epochs=3, checkpoint_keep=2, eval_interval=2, evaluate=evaluate, tensorboard=True
    )
    initial_mse = mse_of(trainer.module.eval(), dataset)
    trainer.module.train()
    metrics = trainer.train()
    assert calls == [2, 3]  # every 2 epochs and after the last
    assert metrics["mse"] == trainer.eval_history[-1]["metrics"]["mse"] < initial_mse
    assert trainer.module.training
    assert dataset.epochs_seen == [0, 1, 2]
    assert [e for e, _ in list_checkpoints(tmp_path)] == [2, 3]
    state = load_checkpoint(tmp_path / "epoch_003.pth")
    assert set(state) == {"model", "optimizer", "scheduler", "scaler", "epoch", "iteration", "rng", "config"}
    assert state["epoch"] == 3 and state["iteration"] == 24 and state["scaler"] is None

    records = [json.loads(line) for line in (tmp_path / "scalars.jsonl").read_text().splitlines()]
    train_steps = [r["step"] for r in records if "train/loss" in r]
    assert train_steps == [3, 6, 8, 9, 12, 15, 16, 18, 21, 24]  # every 3 iterations and each epoch's end
    first = next(r for r in records if "train/loss" in r)
    assert first["train/loss"] == pytest.approx(first["train/mse"] + first["train/l1"], rel=1e-5)
    assert {"train/lr", "train/frames_per_s", "train/grad_norm"} <= set(first)
    assert [r["eval/mse"] for r in records if "eval/mse" in r] == [h["metrics"]["mse"] for h in trainer.eval_history]
    assert list((tmp_path / "tensorboard").glob("events.out.tfevents.*"))
    log = (tmp_path / "train.log").read_text()  # the trainer sets up logging when the caller has not
    assert "evaluation after epoch 3" in log and "saved checkpoint" in log


def test_gradient_clipping_bounds_the_update(tmp_path):
    torch.manual_seed(0)
    model = ToyModel()
    before = torch.cat([p.detach().flatten().clone() for p in model.parameters()])
    optimizer = torch.optim.SGD(model.parameters(), lr=1.0)
    loader = build_train_loader(ToyDataset(n=4), batch_size=4, collate_fn=collate)
    trainer = Trainer(model, optimizer, loader, tmp_path, 1, grad_clip=1e-3, progress=False, tensorboard=False)
    trainer.train()
    after = torch.cat([p.detach().flatten() for p in model.parameters()])
    assert 0 < float((after - before).norm()) <= 1e-3 * (1 + 1e-5)


def test_bad_losses_raise(tmp_path):
    class NaNModel(ToyModel):
        def forward(self, batch):
            return {"loss": super().forward(batch)["mse"] * float("nan")}

    class ListModel(ToyModel):
        def forward(self, batch):
            return [super().forward(batch)["mse"]]

    loader = build_train_loader(ToyDataset(n=4), batch_size=2, collate_fn=collate)
    for cls, error in ((NaNModel, FloatingPointError), (ListModel, TypeError)):
        model = cls()
        trainer = Trainer(
            model,
            torch.optim.SGD(model.parameters(), lr=0.1),
            loader,
            tmp_path / cls.__name__,
            1,
            progress=False,
            tensorboard=False,
            log_interval=1,
        )
        with pytest.raises(error):
            trainer.train()


def test_progress_bar_runs(tmp_path, capsys):
    trainer = _make(tmp_path, ToyDataset(), epochs=1, progress=True, log_interval=2)
    trainer.train()
    assert "epoch 1/1" in capsys.readouterr().err


def test_resolve_amp_on_cpu():
    cpu = torch.device("cpu")
    assert resolve_amp("auto", cpu) is None and resolve_amp("off", cpu) is None
    with pytest.warns(UserWarning, match="fp32"):
        assert resolve_amp("bf16", cpu) is None
    with pytest.raises(ValueError, match="amp"):
        resolve_amp("int8", cpu)


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("amp", ["bf16", "fp16"])
def test_mixed_precision_on_cuda(tmp_path, amp):
    dataset = ToyDataset()
    trainer = _make(tmp_path, dataset, epochs=1, amp=amp, device="cuda")
    assert trainer.amp_dtype == (torch.bfloat16 if amp == "bf16" else torch.float16)
    assert (trainer.scaler is not None) == (amp == "fp16")
    trainer.train()
    state = load_checkpoint(tmp_path / "epoch_001.pth")
    assert (state["scaler"] is not None) == (amp == "fp16")
    assert all(torch.isfinite(p).all() for p in trainer.module.parameters())
    assert all(p.dtype == torch.float32 for p in trainer.module.parameters())  # autocast keeps fp32 weights
