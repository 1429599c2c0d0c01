"""Resume when checkpoints are damaged (issue 18): a truncated newest checkpoint, or one of another
model, is skipped with a warning and moved aside, and training continues from the last good one
exactly as an uninterrupted run; none usable is an error, not a silent fresh start. Temporary
files of killed writes go at the start, and scalars.jsonl holds each step once after a resume."""

from __future__ import annotations

import json
import logging

import pytest
import torch
from engine_toy import ToyDataset, ToyModel
from test_trainer import EPOCHS, _make

from pointformer.engine import list_checkpoints
from pointformer.engine.checkpoint import CheckpointError, checkpoint_path, load_checkpoint, save_checkpoint


@pytest.fixture(scope="module")
def straight(tmp_path_factory):
    """An uninterrupted run of EPOCHS epochs (the reference)."""
    trainer = _make(tmp_path_factory.mktemp("straight"), ToyDataset(augment=True))
    trainer.train()
    return trainer


def _finished(work_dir):
    trainer = _make(work_dir, ToyDataset(augment=True))
    trainer.train()
    assert [e for e, _ in list_checkpoints(work_dir)] == [1, 2]
    return work_dir


def _truncate(path):
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _other_model(path):
    state = load_checkpoint(path)
    state["model"] = ToyModel(batchnorm=True).state_dict()  # another config: more keys
    state["model"]["fc1.weight"] = torch.zeros(32, 4)  # and another shape
    save_checkpoint(state, path)


class _Records(logging.Handler):
    """The records of the ``pointformer`` logger (it does not propagate to pytest's caplog)."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.mark.parametrize("damage", [_truncate, _other_model], ids=["truncated", "other-model"])
def test_damaged_newest_is_skipped(tmp_path, straight, damage):
    work_dir = _finished(tmp_path)
    newest = checkpoint_path(work_dir, 2)
    damage(newest)
    resumed = _make(work_dir, ToyDataset(augment=True), model_seed=42)
    records = _Records()
    logging.getLogger("pointformer").addHandler(records)
    try:
        resumed.train(resume=True)
    finally:
        logging.getLogger("pointformer").removeHandler(records)
    warning = [r.getMessage() for r in records.records if r.levelno == logging.WARNING]
    assert any("skipping checkpoint epoch_002.pth" in w for w in warning), warning
    assert (work_dir / "epoch_002.pth.damaged").is_file()
    # Continued from epoch 1, as the uninterrupted run did.
    assert resumed.epoch == EPOCHS and resumed.iteration == straight.iteration
    for (name, a), (_, b) in zip(straight.module.named_parameters(), resumed.module.named_parameters(), strict=True):
        assert torch.equal(a, b), name
    assert load_checkpoint(newest)["epoch"] == 2  # rewritten whole


def test_none_usable_is_an_error(tmp_path):
    work_dir = _finished(tmp_path)
    for _, path in list_checkpoints(work_dir):
        _truncate(path)
    with pytest.raises(CheckpointError, match="no usable checkpoint"):
        _make(work_dir, ToyDataset(augment=True)).train(resume=True)


def test_damaged_explicit_path_is_an_error(tmp_path):
    work_dir = _finished(tmp_path)
    _truncate(checkpoint_path(work_dir, 2))
    with pytest.raises(CheckpointError, match="not loadable"):
        _make(work_dir, ToyDataset(augment=True)).train(resume=checkpoint_path(work_dir, 2))


def _steps(work_dir):
    return [json.loads(line)["step"] for line in (work_dir / "scalars.jsonl").read_text().splitlines()]


def test_scalars_have_each_step_once_after_a_resume(tmp_path, straight):
    work_dir = tmp_path / "killed"
    with pytest.raises(KeyboardInterrupt):  # killed in epoch 2, after logging some of its steps
        _make(work_dir, ToyDataset(augment=True, fail_at=24)).train()
    killed_steps = _steps(work_dir)
    assert max(killed_steps) > 8  # rows past the epoch-1 checkpoint (iteration 8) exist
    (work_dir / "scalars.jsonl").open("a").write('{"step": 9, "torn')  # and a torn last line
    _make(work_dir, ToyDataset(augment=True)).train(resume=True)
    steps = _steps(work_dir)
    assert len(steps) == len(set(steps)) and steps == sorted(steps)
    assert steps == _steps(straight.work_dir)
    # A fresh run in the same folder starts the log anew.
    _make(work_dir, ToyDataset(augment=True)).train()
    assert _steps(work_dir) == _steps(straight.work_dir)


def test_stale_temporaries_are_removed_at_start(tmp_path):
    stale = tmp_path / ".epoch_001.pth.abc123.tmp"
    tmp_path.mkdir(exist_ok=True)
    stale.write_bytes(b"half a checkpoint")
    other = tmp_path / "notes.tmp"  # not a temporary of ours
    other.write_text("keep")
    _make(tmp_path, ToyDataset(augment=True), epochs=1).train()
    assert not stale.exists() and other.exists()
