"""load_json: orjson when installed, the standard library for what orjson refuses (NaN literals),
the same values either way, and a ValueError for invalid JSON."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from pointformer.utils import jsonio


@pytest.mark.parametrize("use_orjson", [True, False])
def test_same_values_with_and_without_orjson(tmp_path: Path, monkeypatch, use_orjson: bool) -> None:
    if use_orjson and jsonio.orjson is None:
        pytest.skip("orjson is not installed")
    if not use_orjson:
        monkeypatch.setattr(jsonio, "orjson", None)
    value = {"results": {"a": [{"translation": [1.5, -2.0, 0.25], "name": "car", "score": 0.9}]}, "n": 3}
    path = tmp_path / "x.json"
    path.write_text(json.dumps(value))
    assert jsonio.load_json(path) == value


def test_nan_literals_fall_back_to_the_standard_library(tmp_path: Path) -> None:
    path = tmp_path / "nan.json"
    path.write_text(json.dumps({"velocity": [float("nan"), 1.0]}))  # writes the NaN literal
    velocity = jsonio.load_json(path)["velocity"]
    assert math.isnan(velocity[0]) and velocity[1] == 1.0


def test_invalid_json_raises_a_decode_error(tmp_path: Path) -> None:
    path = tmp_path / "bad.json"
    path.write_text('{"a": [1, 2')
    with pytest.raises(json.JSONDecodeError):
        jsonio.load_json(path)
