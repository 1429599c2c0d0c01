"""Training checkpoints: atomic writes, the last N kept, loadable with ``torch.load(weights_only=True)``.

A checkpoint is a plain dict of tensors, numbers, strings, lists, tuples and dicts (nothing that needs
unpickling arbitrary classes), so ``weights_only=True`` loads it. The trainer's state is::

    {"model": state_dict, "optimizer": state_dict, "scheduler": state_dict | None,
     "scaler": state_dict | None, "epoch": int (epochs completed), "iteration": int (optimizer steps done),
     "rng": [per-rank RNG state (see ``rng_state``)], "config": dict}

Files are ``<dir>/epoch_<NNN>.pth`` where NNN is the number of completed epochs.
"""

from __future__ import annotations

import os
import random
import re
from pathlib import Path
from typing import Any

import numpy as np
import torch

from pointformer.utils.atomic import atomic_file

_NAME = re.compile(r"^epoch_(\d+)\.pth$")


def checkpoint_path(directory: str | os.PathLike, epoch: int) -> Path:
    """The file name of the checkpoint taken after ``epoch`` completed epochs."""
    return Path(directory) / f"epoch_{epoch:03d}.pth"


def list_checkpoints(directory: str | os.PathLike) -> list[tuple[int, Path]]:
    """``(epoch, path)`` of every epoch checkpoint in ``directory``, oldest first (empty if none)."""
    directory = Path(directory)
    if not directory.is_dir():
        return []
    found = []
    for path in directory.iterdir():
        match = _NAME.match(path.name)
        if match:
            found.append((int(match.group(1)), path))
    return sorted(found)


def latest_checkpoint(directory: str | os.PathLike) -> Path | None:
    """The checkpoint with the most completed epochs in ``directory``, or None."""
    found = list_checkpoints(directory)
    return found[-1][1] if found else None


def save_checkpoint(state: dict[str, Any], path: str | os.PathLike) -> Path:
    """Write ``state`` to ``path`` atomically.

    The bytes go to a temporary file in the same directory, are flushed to disk, and the file is renamed
    over ``path``: a run killed mid-write leaves the previous checkpoint intact and no half-written file
    under a checkpoint name.
    """
    path = Path(path)
    with atomic_file(path) as f:
        torch.save(state, f)
    return path


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device | None = "cpu") -> dict[str, Any]:
    """Load a checkpoint with ``torch.load(weights_only=True)`` (no arbitrary code runs on load)."""
    return torch.load(path, map_location=map_location, weights_only=True)


def prune_checkpoints(directory: str | os.PathLike, keep: int | None) -> list[Path]:
    """Delete all but the ``keep`` newest epoch checkpoints (``keep`` None or <= 0 keeps all); returns the deleted."""
    if not keep or keep <= 0:
        return []
    old = list_checkpoints(directory)[:-keep]
    for _, path in old:
        path.unlink(missing_ok=True)
    return [path for _, path in old]


def rng_state() -> dict[str, Any]:
    """The state of every random generator a training step may draw from, in ``weights_only``-safe types.

    Python's ``random`` (a tuple of ints), numpy's global legacy generator (its key as an int64 tensor),
    torch's CPU generator and, when CUDA is initialised, every CUDA device's generator.
    """
    np_state = np.random.get_state(legacy=False)
    state: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": {
            "key": torch.from_numpy(np_state["state"]["key"].astype(np.int64)),
            "pos": int(np_state["state"]["pos"]),
            "has_gauss": int(np_state["has_gauss"]),
            "gauss": float(np_state["gauss"]),
        },
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore the generators saved by ``rng_state`` (CUDA only when both the state and CUDA are present)."""
    random.setstate(_as_tuples(state["python"]))
    np_state = state["numpy"]
    np.random.set_state(
        {
            "bit_generator": "MT19937",
            "state": {"key": np_state["key"].numpy().astype(np.uint32), "pos": int(np_state["pos"])},
            "has_gauss": int(np_state["has_gauss"]),
            "gauss": float(np_state["gauss"]),
        }
    )
    torch.set_rng_state(state["torch"].cpu())
    if "cuda" in state and torch.cuda.is_available():
        cuda_states = [s.cpu() for s in state["cuda"]]
        if len(cuda_states) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(cuda_states)


def _as_tuples(value: Any) -> Any:
    # random.setstate wants tuples; a round trip through some serialisers turns them into lists.
    if isinstance(value, list | tuple):
        return tuple(_as_tuples(v) for v in value)
    return value
