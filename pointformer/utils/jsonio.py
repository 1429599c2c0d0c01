"""JSON files read with orjson when it is installed (about 2x faster than the standard library on
the nuScenes tables and results files, which reach hundreds of MB), else with ``json``."""

from __future__ import annotations

import json
import os
from typing import Any

try:
    import orjson
except ImportError:  # optional: the standard library gives the same values
    orjson = None


def load_json(path: str | os.PathLike) -> Any:
    """The JSON value in ``path``. Raises ``json.JSONDecodeError`` (a ``ValueError``) for invalid
    JSON and ``UnicodeDecodeError`` for bad UTF-8.

    orjson refuses the ``NaN`` literal that Python's ``json`` writes (nuScenes results carry NaN
    velocities), so a file orjson rejects is read again with ``json``, which accepts it."""
    with open(path, "rb") as f:
        return loads_json(f.read())


def loads_json(data: bytes) -> Any:
    """The JSON value of ``data`` (UTF-8 bytes); see ``load_json``."""
    if orjson is not None:
        try:
            return orjson.loads(data)
        except orjson.JSONDecodeError:
            pass  # NaN / Infinity literals, or truly invalid: json decides and reports
    return json.loads(data.decode("utf-8"))
