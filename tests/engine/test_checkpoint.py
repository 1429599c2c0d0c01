"""Atomic checkpoint files, pruning, weights_only loading and the random-generator state."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch

from pointformer.engine import checkpoint as ckpt


def test_save_is_atomic_and_weights_only_loadable(tmp_path):
    state = {"model": {"w": torch.arange(3.0)}, "epoch": 2, "rng": [ckpt.rng_state()], "config": {"a": [1, 2]}}
    path = ckpt.save_checkpoint(state, ckpt.checkpoint_path(tmp_path, 2))
    assert path.name == "epoch_002.pth"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["epoch_002.pth"]  # no temporary file left
    loaded = ckpt.load_checkpoint(path)
    assert torch.equal(loaded["model"]["w"], torch.arange(3.0))
    assert loaded["epoch"] == 2 and loaded["config"] == {"a": [1, 2]}
    torch.load(path, weights_only=True)  # the contract, stated directly


def test_failed_save_keeps_previous_file(tmp_path, monkeypatch):
    path = ckpt.checkpoint_path(tmp_path, 1)
    ckpt.save_checkpoint({"v": torch.tensor(1)}, path)

    def broken_save(obj, f):
        f.write(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", broken_save)
    with pytest.raises(OSError, match="disk full"):
        ckpt.save_checkpoint({"v": torch.tensor(2)}, path)
    monkeypatch.undo()
    assert ckpt.load_checkpoint(path)["v"].item() == 1
    assert [p.name for p in tmp_path.iterdir()] == ["epoch_001.pth"]


def test_list_latest_and_prune(tmp_path):
    assert ckpt.latest_checkpoint(tmp_path / "missing") is None
    for epoch in (1, 2, 3, 10):
        ckpt.save_checkpoint({"epoch": epoch}, ckpt.checkpoint_path(tmp_path, epoch))
    (tmp_path / "notes.txt").write_text("not a checkpoint")
    assert [e for e, _ in ckpt.list_checkpoints(tmp_path)] == [1, 2, 3, 10]
    assert ckpt.latest_checkpoint(tmp_path).name == "epoch_010.pth"
    assert ckpt.prune_checkpoints(tmp_path, None) == []
    removed = ckpt.prune_checkpoints(tmp_path, 2)
    assert [p.name for p in removed] == ["epoch_001.pth", "epoch_002.pth"]
    assert [e for e, _ in ckpt.list_checkpoints(tmp_path)] == [3, 10]


def _draw():
    return (random.random(), float(np.random.rand()), float(np.random.randn()), torch.rand(3).tolist())


def test_rng_state_round_trip_through_a_file(tmp_path):
    random.seed(1)
    np.random.seed(2)
    torch.manual_seed(3)
    np.random.randn()  # leaves a cached Gaussian in numpy's state
    path = ckpt.save_checkpoint({"rng": ckpt.rng_state()}, tmp_path / "rng.pth")
    expected = _draw()
    random.seed(99)
    np.random.seed(99)
    torch.manual_seed(99)
    assert _draw() != expected
    ckpt.set_rng_state(ckpt.load_checkpoint(path)["rng"])
    assert _draw() == expected
