"""Training checkpoints: atomic writes, the last N kept, loadable with ``torch.load(weights_only=True)``.

A checkpoint is a plain dict of tensors, numbers, strings, lists, tuples and dicts (nothing that needs
unpickling arbitrary classes), so ``weights_only=True`` loads it. The trainer's state is::

    {"model": state_dict, "optimizer": state_dict, "scheduler": state_dict | None,
     "scaler": state_dict | None, "epoch": int (epochs completed), "iteration": int (optimizer steps done),
     "rng": [per-rank RNG state (see ``rng_state``)], "config": dict}

Files are ``<dir>/epoch_<NNN>.pth`` where NNN is the number of completed epochs.

Loading goes through one place for every command (test, export, train's resume, the demo):
``load_checkpoint`` (a file ``torch.load(weights_only=True)`` can read) and ``load_model_weights``
(its ``model`` state dict, with every tensor's shape checked against the model first). Both raise
``CheckpointError`` naming the file and what was wrong: not found, not loadable (truncated, not a
checkpoint, a pickle that would run code), no model state, or weights of another model (the
first mismatching keys with both shapes, and the config each side seems to come from).
"""

from __future__ import annotations

import os
import random
import re
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from pointformer.config import CONFIG_DIR, ConfigError, read_yaml_with_bases
from pointformer.utils.atomic import atomic_file
from pointformer.utils.errors import InputError

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


class CheckpointError(InputError, ValueError):
    """A checkpoint that cannot be used: missing, not loadable, without model state, or of another model."""


# How many mismatching keys a message lists.
_LISTED_KEYS = 5


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device | None = "cpu") -> dict[str, Any]:
    """Load a checkpoint with ``torch.load(weights_only=True)`` (no arbitrary code runs on load).

    Raises:
        CheckpointError naming the file: not found, or not loadable (truncated or empty, not a
        torch file, a pickle holding objects that ``weights_only`` refuses), or not a dict.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path}: " + ("is a directory" if path.is_dir() else "not found"))
    if path.stat().st_size == 0:
        raise CheckpointError(f"checkpoint {path}: empty file (0 bytes), not a checkpoint of tools/train.py")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # noqa: BLE001 - zip, pickle and tensor errors of any kind: the file is unusable
        raise CheckpointError(f"checkpoint {path}: not loadable: {_load_reason(e)}") from e
    if not isinstance(state, dict):
        raise CheckpointError(
            f"checkpoint {path}: holds a {type(state).__name__}, expected a dict with a 'model' state"
        )
    return state


def _load_reason(error: Exception) -> str:
    """One line on why ``torch.load`` failed (its weights_only message runs over many lines)."""
    first = next((line.strip() for line in str(error).splitlines() if line.strip()), type(error).__name__)
    if "weights_only" in str(error) or "Unsupported global" in str(error):
        return ("it holds Python objects that weights_only loading refuses (a pickle that could run code, "
                f"not a checkpoint of tools/train.py): {first}")  # fmt: skip
    return f"truncated, or not a file of torch.save ({type(error).__name__}: {first})"


def model_state(state: dict[str, Any], path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """The checkpoint's ``model`` state dict (``CheckpointError`` when there is none)."""
    model = state.get("model")
    if not isinstance(model, dict) or not all(isinstance(v, torch.Tensor) for v in model.values()):
        keys = sorted(map(str, state))[:_LISTED_KEYS]
        raise CheckpointError(
            f"checkpoint {path}: no 'model' state dict of tensors (top-level keys {keys}); "
            "a checkpoint of tools/train.py has one"
        )
    return model


def state_mismatch(model: nn.Module, weights: dict[str, torch.Tensor]) -> str | None:
    """What keeps ``weights`` from loading into ``model`` strictly (None when they fit): tensors of
    another shape (first ones, both shapes), missing and unexpected keys."""
    own = model.state_dict()
    shapes = [
        f"{k} (checkpoint {list(weights[k].shape)}, model {list(v.shape)})"
        for k, v in own.items()
        if k in weights and weights[k].shape != v.shape
    ]
    missing = [k for k in own if k not in weights]
    unexpected = [k for k in weights if k not in own]
    parts = []
    for label, items in (("shape mismatch", shapes), ("missing keys", missing), ("unexpected keys", unexpected)):
        if items:
            more = f" and {len(items) - _LISTED_KEYS} more" if len(items) > _LISTED_KEYS else ""
            parts.append(f"{len(items)} {label}: {', '.join(items[:_LISTED_KEYS])}{more}")
    return "; ".join(parts) or None


def config_of_state(state: dict[str, Any]) -> str | None:
    """The config under ``configs/`` whose ``model`` section equals the checkpoint's saved one
    (``state["config"]``, the trainer's resolved YAML), or None when none matches or none was saved."""
    saved = state.get("config")
    if not isinstance(saved, dict) or not isinstance(saved.get("model"), dict):
        return None
    for path in sorted(CONFIG_DIR.rglob("*.yaml")) if CONFIG_DIR.is_dir() else ():
        try:
            if read_yaml_with_bases(path.resolve()).get("model") == saved["model"]:
                return str(path.relative_to(CONFIG_DIR))
        except (ConfigError, OSError):
            continue
    return None


def load_model_weights(
    model: nn.Module, path: str | os.PathLike, config: str | None = None, state: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Loads the checkpoint's model weights into ``model`` (strictly: every key, every shape) and
    returns the whole checkpoint. ``config`` names the model's config in messages; ``state`` skips
    reading the file again.

    Raises:
        CheckpointError: see ``load_checkpoint``; no model state; weights that do not fit the model.
        The model is unchanged when it is raised.
    """
    state = load_checkpoint(path) if state is None else state
    weights = model_state(state, path)
    problem = state_mismatch(model, weights)
    if problem is not None:
        seems = config_of_state(state)
        origin = f"; the checkpoint seems to be from {seems}" if seems else ""
        target = f" of {config}" if config else ""
        raise CheckpointError(f"checkpoint {path}: the weights do not fit the model{target}: {problem}{origin}")
    model.load_state_dict(weights)
    return state


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
