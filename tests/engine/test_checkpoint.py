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


# --- the one loader's errors (issue 18) ---------------------------------------------------------


class _RunsCode:
    def __reduce__(self):
        import os

        return (os.getpid, ())


def test_load_checkpoint_errors_name_the_file(tmp_path):
    good = ckpt.save_checkpoint({"model": {"w": torch.ones(3)}}, tmp_path / "good.pth")
    data = good.read_bytes()
    (tmp_path / "truncated.pth").write_bytes(data[: len(data) // 2])
    (tmp_path / "empty.pth").write_bytes(b"")
    (tmp_path / "text.pth").write_text("hello")
    torch.save({"model": _RunsCode()}, tmp_path / "code.pth")
    torch.save([1, 2], tmp_path / "list.pth")
    cases = {
        "missing.pth": "not found",
        "empty.pth": "empty file",
        "text.pth": "not loadable: truncated, or not a file of torch.save",
        "truncated.pth": "not loadable",
        "code.pth": "weights_only loading refuses",
        "list.pth": "holds a list",
    }
    for name, text in cases.items():
        with pytest.raises(ckpt.CheckpointError, match=text) as error:
            ckpt.load_checkpoint(tmp_path / name)
        assert str(tmp_path / name) in str(error.value) and "\n" not in str(error.value)


def test_load_model_weights_checks_every_shape_first(tmp_path):
    model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Linear(8, 2))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    other = torch.nn.Sequential(torch.nn.Linear(4, 16), torch.nn.Linear(16, 2), torch.nn.Linear(2, 2))
    path = ckpt.save_checkpoint({"model": other.state_dict()}, tmp_path / "other.pth")
    with pytest.raises(ckpt.CheckpointError) as error:
        ckpt.load_model_weights(model, path, config="mine.yaml")
    message = str(error.value)
    assert "do not fit the model of mine.yaml" in message
    assert "3 shape mismatch: 0.weight (checkpoint [16, 4], model [8, 4])" in message
    assert "unexpected keys: 2.weight, 2.bias" in message
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())  # unchanged
    bare = ckpt.save_checkpoint(model.state_dict(), tmp_path / "bare.pth")
    with pytest.raises(ckpt.CheckpointError, match="no 'model' state dict"):
        ckpt.load_model_weights(model, bare)
    fits = ckpt.save_checkpoint({"model": {k: v + 1 for k, v in before.items()}, "epoch": 3}, tmp_path / "fits.pth")
    assert ckpt.load_model_weights(model, fits)["epoch"] == 3
    assert torch.equal(model.state_dict()["0.bias"], before["0.bias"] + 1)


def test_config_of_state_finds_the_config_by_its_model_section():
    from pointformer.config import load_config

    cfg = load_config("waymo_flatformer.yaml")
    assert ckpt.config_of_state({"config": dict(cfg.raw)}) == "waymo_flatformer.yaml"
    assert ckpt.config_of_state({"config": {"model": {"head": {"type": "Nothing"}}}}) is None
    assert ckpt.config_of_state({}) is None
