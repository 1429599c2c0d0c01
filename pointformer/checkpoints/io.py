"""Reading other toolkits' checkpoint files and writing converted ones.

Official files are read with ``torch.load(weights_only=True)``: no code in them runs. Files that
need more (an mmcv ``meta`` holding numpy scalars, an OpenPCDet optimizer state pickled with
classes) fail that load; the error names what the file asks to unpickle, and ``trust_pickle=True``
(the CLI's ``--trust-pickle``) is the explicit opt-in to the full unpickler, for files the user
trusts. There is no silent fallback.
"""

from __future__ import annotations

import os
import pickle
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from pointformer.checkpoints.mapping import ConversionError, listing

# Where the state dict sits in each toolkit's file, in the order tried.
STATE_KEYS = ("model_state", "state_dict", "model")


@dataclass
class LoadedCheckpoint:
    """A state dict read from ``path`` (found under ``key``, or the file itself when ``key`` is None)
    and the file's scalar metadata (epoch, iteration, version)."""

    path: Path
    state: dict[str, torch.Tensor]
    key: str | None
    meta: dict[str, Any] = field(default_factory=dict)


def load_file(path: str | os.PathLike, trust_pickle: bool = False) -> Any:
    """``torch.load`` of ``path`` on the CPU, ``weights_only`` unless ``trust_pickle``."""
    path = Path(path)
    if not path.is_file():
        raise ConversionError(f"{path}: no such checkpoint file")
    try:
        return torch.load(path, map_location="cpu", weights_only=not trust_pickle)
    except pickle.UnpicklingError as e:
        # weights_only names the classes and functions a file asks for ("Unsupported global: GLOBAL x");
        # anything else is a file torch cannot read at all.
        wanted = sorted(set(re.findall(r"GLOBAL ([\w.]+)", str(e))))
        if trust_pickle or not wanted:
            raise ConversionError(f"{path}: not a readable torch checkpoint ({_first_line(e)})") from None
        raise ConversionError(
            f"{path}: cannot be read with torch.load(weights_only=True): it asks to unpickle {', '.join(wanted)}. "
            "Loading it fully can run code stored in the file; if you trust where it came from, pass "
            "--trust-pickle (trust_pickle=True)"
        ) from None
    except (RuntimeError, EOFError, OSError, ValueError) as e:
        raise ConversionError(f"{path}: not a readable torch checkpoint ({_first_line(e)})") from None


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def read_checkpoint(path: str | os.PathLike, trust_pickle: bool = False) -> LoadedCheckpoint:
    """The state dict of an OpenPCDet (``model_state``), mmcv (``state_dict``) or pointformer
    (``model``) checkpoint, or of a file that is a bare state dict. A ``module.`` prefix on every key
    (a model saved inside DistributedDataParallel) is removed."""
    path = Path(path)
    data = load_file(path, trust_pickle)
    if not isinstance(data, dict):
        raise ConversionError(f"{path}: expected a dict (a checkpoint), got {type(data).__name__}")
    key = next((k for k in STATE_KEYS if isinstance(data.get(k), dict)), None)
    state = data[key] if key is not None else data
    bad = [str(k) for k, v in state.items() if not isinstance(v, torch.Tensor)]
    if bad or not state:
        where = f"its {key!r} entry" if key else "the file"
        what = f"non-tensor entries {listing(bad)}" if bad else "no tensors"
        raise ConversionError(
            f"{path}: {where} is not a state dict ({what}); expected a dict with one of {list(STATE_KEYS)} "
            "holding the model's tensors"
        )
    keys = list(state)
    if all(k.startswith("module.") for k in keys):
        state = {k[len("module.") :]: v for k, v in state.items()}
    meta = {}
    # Top level (OpenPCDet, pointformer's trainer), mmcv's "meta", a converted file's "converted_from".
    sources = [data.get("converted_from"), data.get("meta"), data] if key is not None else []
    for source in sources:
        for name in ("epoch", "it", "iter", "iteration", "version"):
            value = source.get(name) if isinstance(source, dict) else None
            if isinstance(value, (int, float, str)) and not isinstance(value, bool):
                meta[{"it": "iteration", "iter": "iteration"}.get(name, name)] = value
    return LoadedCheckpoint(path, dict(state), key, meta)
