"""The converters' checks of what they read and what they wrote.

* ``drop_non_finite``: points with a NaN or infinite value are dropped (a model given one NaN
  coordinate trains on NaN), with one message per input file naming it and the count.
* ``file_record`` / ``verify_file``: each written ``.npy`` file's size, recorded at write time in
  its sequence's part table, and checked on resume together with a readable ``.npy`` header whose
  shape and dtype account for exactly that size, so a points file truncated or overwritten after
  the conversion is found and its sequence converted again (an existence test would keep it).
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path

import numpy as np
from numpy.lib import format as npy_format

# np.save writes format 1.0 (2.0 for headers over 64 KiB); both readers parse the header only.
_HEADER_READERS = {(1, 0): npy_format.read_array_header_1_0, (2, 0): npy_format.read_array_header_2_0}

__all__ = ["drop_non_finite", "file_record", "records_from_json", "records_to_json", "verify_file"]


def drop_non_finite(points: np.ndarray, where: str) -> tuple[np.ndarray, str | None]:
    """``points`` without the rows holding a NaN or infinite value, and a message naming ``where``
    (the input file) and the count, or None when every row is finite."""
    finite = np.isfinite(points).all(axis=1) if points.size else np.ones(len(points), bool)
    dropped = int(len(points) - finite.sum())
    if dropped == 0:
        return points, None
    message = f"{where}: dropped {dropped} of {len(points)} points with NaN or infinite values"
    return np.ascontiguousarray(points[finite]), message


def file_record(path: str | os.PathLike) -> int:
    """What is recorded of a written file: its size in bytes."""
    return os.path.getsize(path)


def records_to_json(records: Mapping[str, int]) -> bytes:
    return json.dumps(dict(records), sort_keys=True, separators=(",", ":")).encode()


def records_from_json(data: bytes | None) -> dict[str, int] | None:
    """The records of a part table (None for a part written before sizes were recorded)."""
    if data is None:
        return None
    try:
        records = json.loads(data)
    except ValueError:
        return {}  # unreadable: nothing verifies, the sequence is converted again
    return records if isinstance(records, dict) else {}


def verify_file(path: Path, size: int | None) -> bool:
    """Whether ``path`` is a whole ``.npy`` file: it exists, has the recorded ``size`` (None: not
    recorded) and a readable header whose shape and dtype account for every byte."""
    try:
        actual = path.stat().st_size
        if size is not None and actual != size:
            return False
        if path.suffix != ".npy":
            return True
        with open(path, "rb") as f:
            read_header = _HEADER_READERS.get(npy_format.read_magic(f))
            if read_header is None:
                return False
            shape, _, dtype = read_header(f)
            header = f.tell()
    except (OSError, ValueError):
        return False
    return dtype.hasobject is False and header + int(np.prod(shape)) * dtype.itemsize == actual
