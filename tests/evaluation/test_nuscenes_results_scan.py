"""The compiled results-JSON reader: the same boxes as ``json`` + ``results_from_json`` on every file
of the usual shape, bit for bit, and the ``json`` path (same boxes or same error) for any other."""

from __future__ import annotations

import json
import math
import random
import re

import numpy as np
import pytest

from pointformer.data.formats.nuscenes_tables import ATTRIBUTE_NAMES, DETECTION_NAMES
from pointformer.evaluation.nuscenes import NuScenesEvalError, read_results, results_from_json
from pointformer.evaluation.nuscenes_results_scan import scan_results

FIELDS = ("translation", "size", "rotation", "velocity", "names", "attributes", "scores", "num_pts", "offsets")
# Decimal texts whose nearest double is hard to get right (17 digits, halfway cases, subnormals,
# overflow), and JSON's number forms.
HARD_NUMBERS = [
    "0", "-0", "-0.0", "1", "-1", "1e5", "1E5", "1e+5", "1e-5", "1.5E-300", "0.1", "0.30000000000000004",
    "9007199254740993", "1.00000000000000011102230246251565404236316680908203125", "2.2250738585072011e-308",
    "2.2250738585072012e-308", "4.9e-324", "2.4703282292062327e-324", "1.7976931348623157e308", "1e400",
    "-1e400", "123456789012345678901234567890", "7.2057594037927933e16", "NaN", "Infinity", "-Infinity",
]  # fmt: skip


def _box(rng, token, **kw):
    name = DETECTION_NAMES[rng.integers(len(DETECTION_NAMES))]
    box = {
        "sample_token": token,
        "translation": rng.normal(0, 30, 3).tolist(),
        "size": rng.uniform(0.3, 5, 3).tolist(),
        "rotation": rng.normal(0, 1, 4).tolist(),
        "velocity": rng.normal(0, 3, 2).tolist(),
        "detection_name": name,
        "detection_score": float(rng.random()),
        "attribute_name": ATTRIBUTE_NAMES[rng.integers(len(ATTRIBUTE_NAMES))] if rng.random() < 0.8 else "",
    }
    box.update(kw)
    return box


def _results(seed=0, samples=6, per_sample=5):
    rng = np.random.default_rng(seed)
    results = {f"tok{s:03d}": [_box(rng, f"tok{s:03d}") for _ in range(per_sample)] for s in range(samples)}
    return {"meta": {"use_camera": False, "use_lidar": True, "note": "x"}, "results": results}


def _slow(text: str):
    return results_from_json(json.loads(text))


def _assert_same_boxes(a, b):
    assert a.meta == b.meta
    assert a.boxes.sample_tokens == b.boxes.sample_tokens
    for f in FIELDS:
        x, y = getattr(a.boxes, f), getattr(b.boxes, f)
        assert x.shape == y.shape, f
        if x.dtype.kind == "f":  # bit for bit (NaN == NaN, -0.0 != 0.0)
            np.testing.assert_array_equal(x.view(np.int64), y.view(np.int64), err_msg=f)
        else:
            np.testing.assert_array_equal(x, y, err_msg=f)


def _read(tmp_path, text: str, fast: bool | None = True):
    """read_results of ``text``; checks whether the compiled path took it when ``fast`` is set."""
    path = tmp_path / "results.json"
    path.write_bytes(text.encode("utf-8") if isinstance(text, str) else text)
    if fast is not None:
        taken = scan_results(path.read_bytes(), DETECTION_NAMES, ATTRIBUTE_NAMES) is not None
        assert taken == fast, f"compiled path taken: {taken}, expected {fast}"
    return read_results(path)


@pytest.mark.parametrize(
    "dump",
    [
        lambda d: json.dumps(d),
        lambda d: json.dumps(d, indent=2),
        lambda d: json.dumps(d, separators=(",", ":")),
        lambda d: json.dumps(d, indent="\t").replace("\n", "\r\n"),
    ],
    ids=["default", "indent", "compact", "tabs-crlf"],
)
def test_same_boxes_as_json(tmp_path, dump):
    data = _results()
    _assert_same_boxes(_read(tmp_path, dump(data)), _slow(dump(data)))


def test_key_order_optional_members_and_extras(tmp_path):
    rng = random.Random(0)
    data = _results(1, samples=5, per_sample=8)
    boxes = [b for bs in data["results"].values() for b in bs]
    for i, b in enumerate(boxes):
        if i % 3 == 0:
            del b["detection_score"]  # defaults to -1
        if i % 4 == 0:
            del b["attribute_name"]  # defaults to ""
        if i % 5 == 0:
            del b["sample_token"]
        if i % 2 == 0:
            b["num_pts"] = i - 3
        if i % 6 == 0:  # members the reader ignores, of every JSON type
            b["extra"] = {"a": [1, 2.5, None, True, False, "s", {"b": []}], "c": {}}
            b["tracking_id"] = "t"
        items = list(b.items())
        rng.shuffle(items)
        b.clear()
        b.update(items)
    data["results"]["empty"] = []
    data["other"] = [{"x": [[]]}, -1.5e-3, "y"]
    data = dict(reversed(list(data.items())))  # results before meta
    text = json.dumps(data)
    fast = _read(tmp_path, text)
    _assert_same_boxes(fast, _slow(text))
    assert (fast.boxes.scores == -1).sum() == len(range(0, len(boxes), 3))
    assert set(fast.boxes.num_pts.tolist()) >= {-1, -3, 1}


def test_numbers_are_the_floats_python_reads(tmp_path):
    boxes = []
    for k, num in enumerate(HARD_NUMBERS):
        finite = math.isfinite(float(num))
        box = json.dumps(_box(np.random.default_rng(k), "t", translation="TR", velocity="VEL"))
        boxes.append(box.replace('"TR"', f"[{num if finite else 0}, 2, -3e0]").replace('"VEL"', f"[{num}, 0]"))
    text = '{"meta": {}, "results": {"t": [' + ", ".join(boxes) + "]}}"
    fast = _read(tmp_path, text)
    _assert_same_boxes(fast, _slow(text))
    expect = np.array([float(json.loads(x)) for x in HARD_NUMBERS])  # the integer -0 reads as 0
    np.testing.assert_array_equal(fast.boxes.velocity[:, 0].view(np.int64), expect.view(np.int64))


def test_many_random_numbers_bit_exact(tmp_path):
    rng = np.random.default_rng(3)
    data = _results(3, samples=20, per_sample=50)
    for bs in data["results"].values():
        for b in bs:
            scale = 10.0 ** rng.integers(-300, 300)
            b["translation"] = (rng.normal(0, 1, 3) * scale).tolist()
            b["velocity"] = (rng.normal(0, 1, 2) * 10.0 ** rng.integers(-20, 20)).tolist()
    text = json.dumps(data)
    _assert_same_boxes(_read(tmp_path, text), _slow(text))


def test_empty_results(tmp_path):
    text = json.dumps({"meta": {}, "results": {}})
    fast = _read(tmp_path, text)
    _assert_same_boxes(fast, _slow(text))
    assert len(fast.boxes) == 0


def _outcome(fn):
    try:
        return fn()
    except NuScenesEvalError as e:
        return e


@pytest.mark.parametrize(
    "edit",
    [
        # Outside the fast shape but valid: same boxes through json.
        lambda t: t.replace('"tok001"', '"tok\\u003001"'),  # escapes
        lambda t: t.replace('"note": "x"', '"note": "caf\u00e9"'),  # non-ASCII
        lambda t: t.replace('"tok002"', '"tok000"'),  # a sample twice: json keeps the last list, first place
        lambda t: t.replace('"detection_score": ', '"detection_score": 0.5, "detection_score": ', 1),  # a key twice
        lambda t: t.replace('"detection_score": ', '"num_pts": 3.0, "detection_score": ', 1),  # a float num_pts
        lambda t: t.replace('"detection_score": ', '"num_pts": true, "detection_score": ', 1),
        lambda t: t.replace('"sample_token": "tok000"', '"sample_token": null', 1),
        lambda t: t.replace('"detection_score": ', '"detection_score": true, "x": ', 1),
        lambda t: re.sub(r'"size": \[[^\]]*\]', '"size": [true, 1, 2]', t, count=1),
        # Refused: the json path's error.
        lambda t: t.replace('"detection_name": "', '"detection_name": "x', 1),
        lambda t: t.replace('"detection_score": ', '"detection_score": "high", "x": ', 1),
        lambda t: t.replace('"size": [', '"size": [1.0, ', 1),
        lambda t: t.replace('"size": [', '"size": [true, 1, ', 1),
        lambda t: t.replace('"velocity": [', '"velocity": [[0], ', 1),
        lambda t: t.replace('"sample_token": "tok000"', '"sample_token": "tok001"', 1),
        lambda t: t.replace('"detection_name": ', '"name": ', 1),
        lambda t: t.replace('"meta": {', '"meta": [{', 1).replace(', "results"', '], "results"', 1),
        lambda t: t.replace('"meta": ', '"mota": ', 1),
        lambda t: t.replace('"results": ', '"result": ', 1),
        lambda t: t.replace('"results": {', '"results": [{', 1)[:-1] + "]}",
        lambda t: t.replace("[{", "[1, {", 1),
    ],
)
def test_other_shapes_read_as_json_reads_them(tmp_path, edit):
    text = edit(json.dumps(_results(4, samples=3, per_sample=3)))
    json.loads(text)  # still valid JSON
    fast, slow = _outcome(lambda: _read(tmp_path, text, fast=None)), _outcome(lambda: _slow(text))
    if isinstance(slow, Exception):
        assert type(fast) is type(slow) and str(fast) == str(slow)
    else:
        _assert_same_boxes(fast, slow)
    assert scan_results(text.encode(), DETECTION_NAMES, ATTRIBUTE_NAMES) is None


@pytest.mark.parametrize(
    "edit",
    [
        lambda t: t[:-1],  # truncated
        lambda t: t + "x",  # trailing data
        lambda t: t.replace("}]", "},]", 1),  # trailing comma
        lambda t: t.replace('"size": [', '"size": [01, ', 1),  # leading zero
        lambda t: t.replace('"size": [', '"size": [+1, ', 1),
        lambda t: t.replace('"size": [', '"size": [.5, ', 1),
        lambda t: t.replace('"size": [', '"size": [1., ', 1),
        lambda t: t.replace('"size": [', '"size": [-NaN, ', 1),
        lambda t: t.replace('"note": "x"', '"note": "a\x01b"', 1),  # control character in a string
        lambda t: t.replace(": ", " ", 1),
        lambda t: "\ufeff" + t,  # byte order mark
        lambda t: t.replace('"use_lidar": true', '"use_lidar": tru', 1),
    ],
)
def test_invalid_json_is_refused(tmp_path, edit):
    text = edit(json.dumps(_results(5, samples=2, per_sample=2)))
    with pytest.raises(ValueError):
        json.loads(text)
    assert scan_results(text.encode(), DETECTION_NAMES, ATTRIBUTE_NAMES) is None
    with pytest.raises(NuScenesEvalError, match="not valid JSON"):
        _read(tmp_path, text, fast=None)


def test_invalid_utf8_is_refused(tmp_path):
    data = json.dumps(_results(6, samples=2, per_sample=2)).encode().replace(b'"x"', b'"\xff"')
    assert scan_results(data, DETECTION_NAMES, ATTRIBUTE_NAMES) is None
    with pytest.raises(NuScenesEvalError, match="not valid JSON"):
        _read(tmp_path, data, fast=None)


# Reading in two halves at once (files of SPLIT_MIN_BYTES or more): the same arrays as one reading,
# or the same refusal, wherever the split falls.
def _scans(text: str):
    data = text.encode()
    whole = scan_results(data, DETECTION_NAMES, ATTRIBUTE_NAMES, split_min_bytes=len(data) + 1)
    halves = scan_results(data, DETECTION_NAMES, ATTRIBUTE_NAMES, split_min_bytes=0)
    return whole, halves


def _assert_same_scan(a, b):
    assert (a is None) == (b is None)
    if a is None:
        return
    assert a[0] == b[0] and a[1] == b[1]
    for x, y in zip(a[2:], b[2:], strict=True):
        assert x.dtype == y.dtype and x.shape == y.shape
        np.testing.assert_array_equal(x.view(np.int64) if x.dtype.kind == "f" else x,
                                      y.view(np.int64) if y.dtype.kind == "f" else y)  # fmt: skip


def _split_at(text: str) -> int:
    from pointformer.evaluation.nuscenes_results_scan import _split_point

    return _split_point(text.encode(), 0)


@pytest.mark.parametrize("indent", [None, 2, "\t"])
def test_halves_read_what_one_reading_reads(tmp_path, indent):
    data = _results(7, samples=30, per_sample=4)
    for token in ("tok013", "tok014", "tok015", "tok016"):  # empty samples about the middle
        data["results"][token] = []
    data = {"results": data["results"], "other": [{"x": [[]]}], "meta": data["meta"]}  # meta after the results
    text = json.dumps(data, indent=indent)
    assert 0 < _split_at(text) < len(text)
    whole, halves = _scans(text)
    assert whole is not None
    _assert_same_scan(whole, halves)
    _assert_same_boxes(_read(tmp_path, text), _slow(text))


def test_a_wrong_split_guess_reads_the_whole_file(tmp_path):
    # Every box carries a member whose bytes look like the boundary between two samples, so the
    # guess falls inside a box; the first half does not stop there and the file is read in one piece.
    data = _results(8, samples=10, per_sample=4)
    for boxes in data["results"].values():
        for b in boxes:
            b["extra"] = {"a": [1], "b": [{"c": 1}]}
    text = json.dumps(data)
    split = _split_at(text)
    assert text[split : split + 6] == ', "b":'
    whole, halves = _scans(text)
    assert whole is not None
    _assert_same_scan(whole, halves)


def _last(t: str, old: str, new: str) -> str:
    head, _, tail = t.rpartition(old)
    return head + new + tail


@pytest.mark.parametrize(
    "edit",
    [
        lambda t: _last(t, '"tok019"', '"tok000"'),  # a sample token in both halves
        lambda t: t[:-1] + ', "meta": {}}',  # a second meta, after the results
        lambda t: t.replace('"meta": {', '"other": {', 1),  # no meta at all
        lambda t: _last(t, '"detection_name": "', '"detection_name": "x'),  # a bad name in the second half
        lambda t: _last(t, '"size": [', '"size": [1.0, '),
        lambda t: _last(t, "}]", "},]"),  # invalid JSON in the second half
        lambda t: t + "x",
        lambda t: t[:-1] + ', "results": {}}',  # a second results
    ],
)
def test_halves_refuse_what_one_reading_refuses(edit):
    text = edit(json.dumps(_results(9, samples=20, per_sample=3)))
    assert 0 < _split_at(text) < len(text)
    whole, halves = _scans(text)
    assert whole is None and halves is None


def test_many_empty_samples_fit(tmp_path):
    # More samples than opening braces: the kernel's sample table is sized by the brackets.
    text = json.dumps({"meta": {}, "results": {f"t{i}": [] for i in range(50)}})
    whole, halves = _scans(text)
    assert whole is not None and len(whole[1]) == 50
    _assert_same_scan(whole, halves)
    _assert_same_boxes(_read(tmp_path, text), _slow(text))


def test_without_the_library_files_are_read_with_json(tmp_path, monkeypatch):
    import pointformer.evaluation.nuscenes_results_scan as scan

    assert scan._library() is not None, "make build builds pointformer/_results_scan*.so"
    text = json.dumps(_results(10))
    monkeypatch.setattr(scan, "_library", lambda: None)
    _assert_same_boxes(_read(tmp_path, text, fast=False), _slow(text))
