"""A compiled reader of the nuScenes results JSON straight into arrays (no Python object per box).

A val-split results file holds millions of numbers: building them as Python dicts, lists and floats
(``json``/``orjson``) and then copying them into arrays costs most of an end-to-end evaluation.
``scan_results`` instead walks the file's bytes once in native code (``csrc/standalone/
results_scan.cpp``, a plain C library loaded with ctypes: no torch, no numba, loaded in a
millisecond) that checks the JSON grammar and the results schema and writes, per box, its 13
numbers (correctly rounded: every value is the float Python's ``float()`` and ``json`` give), the
class and attribute index and ``num_pts``. Large files are read in two halves at once (ctypes
releases the GIL around each call).

It is a fast path, not a second definition of the format: for any file outside the common shape,
or where the library was not built, it returns None and the caller reads the file with ``json``
(whose result, or error message, is then the answer). The common shape: a UTF-8 top-level object
with one ``"meta"`` object and one ``"results"`` object (other top-level members skipped) mapping
distinct sample tokens to lists of box objects; strings pure ASCII without escapes; in a box,
``translation``/``size``/``rotation``/``velocity`` lists of exactly 3/3/4/2 numbers,
``detection_name`` and ``attribute_name`` (optional) among the official names, ``detection_score``
(optional) a number, ``num_pts`` (optional) an integer of at most 18 digits, ``sample_token``
(optional) equal to the sample's key, no key twice; other members of a box are skipped. Numbers
follow JSON's grammar, plus ``NaN``, ``Infinity`` and ``-Infinity`` (which Python's ``json``
accepts and ``json.dumps`` writes).
"""

from __future__ import annotations

import ctypes
import functools
import importlib.machinery
import re
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

NUM_SLOTS = 13  # a box's numbers: translation 0-2, size 3-5, rotation 6-9, velocity 10-11, score 12
_LIBRARY_STEM = "_results_scan"


def _table(words) -> tuple[np.ndarray, np.ndarray, int]:
    """Words as one uint8 buffer, ``(len + 1,)`` int64 offsets and their number (for the library)."""
    data = [w.encode("ascii") for w in words]
    buf = np.frombuffer(b"".join(data) or b"\0", np.uint8).copy()
    return buf, np.cumsum([0] + [len(d) for d in data]).astype(np.int64), len(data)


@functools.cache
def _library() -> ctypes.CDLL | None:
    """The compiled reader (built beside this package by ``setup.py build_ext``), or None."""
    package = Path(__file__).resolve().parent.parent
    for suffix in importlib.machinery.EXTENSION_SUFFIXES:
        path = package / (_LIBRARY_STEM + suffix)
        if path.is_file():
            lib = ctypes.CDLL(str(path))  # CDLL: the GIL is released during each call
            i64, ptr = ctypes.c_int64, ctypes.c_void_p
            lib.pf_count_open.argtypes = [ptr, i64, i64, ptr, ptr]
            lib.pf_count_open.restype = None
            lib.pf_results_scan.argtypes = [ptr, i64, i64, i64, ptr, ptr, i64, ptr, ptr, i64, i64, i64] + [ptr] * 7
            lib.pf_results_scan.restype = ctypes.c_int
            return lib
    return None


def _address(a: np.ndarray) -> int:
    return a.ctypes.data


# Files at least this large are read in two halves at once (below it, a second thread costs more
# than it saves).
SPLIT_MIN_BYTES = 4 << 20
# Where the second half starts: the comma between two samples' box lists (``], "token": [{``),
# the first one after the middle. A guess (the bytes could sit inside another member's value):
# the first half confirms it by stopping exactly there in the state between two samples, and
# where it does not, the whole file is read in one piece instead.
_SAMPLE_SEPARATOR = re.compile(rb'][ \t\n\r]*(,)[ \t\n\r]*"[^"\\]{0,256}"[ \t\n\r]*:[ \t\n\r]*\[[ \t\n\r]*{')


@dataclass(frozen=True)
class _Part:
    """What ``_scan`` read of one part of the file, numbers converted (see ``scan_results``)."""

    stopped: bool
    meta: np.ndarray
    spans: np.ndarray
    counts: np.ndarray
    numbers: np.ndarray
    name: np.ndarray
    attr: np.ndarray
    npts: np.ndarray


def _read_part(buf: np.ndarray, start: int, stop: int, names: tuple, attrs: tuple) -> _Part | None:
    """The library's reading of ``buf`` from ``start`` to ``stop`` (see ``pf_results_scan`` in
    ``csrc/standalone/results_scan.cpp``), or None where it fails."""
    lib = _library()
    end = len(buf) if stop < 0 else stop
    cap, lists = ctypes.c_int64(), ctypes.c_int64()
    lib.pf_count_open(_address(buf), start, end, ctypes.byref(cap), ctypes.byref(lists))
    cap, lists = cap.value, lists.value
    spans = np.empty((lists + 1, 2), np.int64)
    counts = np.empty(lists + 1, np.int64)
    numbers = np.empty((cap, NUM_SLOTS), np.float64)
    name, attr, npts = (np.empty(cap, np.int64) for _ in range(3))
    sizes = np.empty(4, np.int64)
    status = lib.pf_results_scan(
        _address(buf), len(buf), start, stop, _address(names[0]), _address(names[1]), names[2],
        _address(attrs[0]), _address(attrs[1]), attrs[2], cap, lists, _address(spans), _address(counts),
        _address(numbers), _address(name), _address(attr), _address(npts), _address(sizes),
    )  # fmt: skip
    if status == 0:
        return None
    nb, ns = int(sizes[0]), int(sizes[1])
    return _Part(status == 2, sizes[2:], spans[:ns], counts[:ns], numbers[:nb], name[:nb], attr[:nb], npts[:nb])


def _split_point(data: bytes, min_bytes: int) -> int:
    """The index of the comma where the second half starts (see ``_SAMPLE_SEPARATOR``), or -1."""
    if len(data) < max(min_bytes, 2):
        return -1
    found = _SAMPLE_SEPARATOR.search(data, len(data) // 2)
    return found.start(1) if found else -1


def _read_parts(buf: np.ndarray, split: int, names: tuple, attrs: tuple) -> list[_Part] | None:
    """The parts of the file read (one, or two at once when ``split`` >= 0), or None where it fails."""
    if split >= 0:
        # ctypes releases the GIL around the library's calls: the halves run on two cores.
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="nuscenes-results-half") as pool:
            pending = pool.submit(_read_part, buf, split, -1, names, attrs)
            first = _read_part(buf, 0, split, names, attrs)
            second = pending.result()
        if first is not None and not first.stopped:
            return [first]  # the results ended before the split: the first half read it all
        if first is not None:
            return None if second is None else [first, second]
        # The first half failed: the file is malformed, or the split was a wrong guess.
    whole = _read_part(buf, 0, -1, names, attrs)
    return None if whole is None else [whole]


def scan_results(data: bytes, detection_names, attribute_names, split_min_bytes: int | None = None):
    """The results JSON ``data`` as arrays, or None when it is outside the fast path (see the
    module docstring).

    Args:
        data: the file's bytes.
        detection_names, attribute_names: the accepted names (a box's attribute may also be ``""``).
        split_min_bytes: files of at least this size are read in two halves at once (default
            ``SPLIT_MIN_BYTES``).

    Returns:
        ``(meta_bytes, sample_tokens, counts, numbers, name_index, attribute_index, num_pts)``:
        the ``meta`` object's text, the sample tokens (file order), ``(S,)`` int64 boxes per
        sample, ``(N, 13)`` float64 translation, size ``[w, l, h]``, rotation ``[w, x, y, z]``,
        velocity and score (-1 where absent), ``(N,)`` int64 indices into ``detection_names`` and
        into ``("", *attribute_names)``, ``(N,)`` int64 ``num_pts`` (-1 where absent).
    """
    if _library() is None:
        return None
    buf = np.frombuffer(data, np.uint8)
    names, attrs = _table(detection_names), _table(("", *attribute_names))
    split = _split_point(data, SPLIT_MIN_BYTES if split_min_bytes is None else split_min_bytes)
    parts = _read_parts(buf, split, names, attrs)
    if parts is None:
        return None
    metas = [p.meta for p in parts if p.meta[0] >= 0]
    if len(metas) != 1:
        return None  # no meta, or (one in each half) two
    spans = np.concatenate([p.spans for p in parts])
    tokens = [data[s:e].decode("ascii") for s, e in spans.tolist()]
    if len(set(tokens)) != len(tokens):
        return None  # a sample listed twice: json keeps the last list at the first position
    meta = metas[0]

    def joined(field: str) -> np.ndarray:
        arrays = [getattr(p, field) for p in parts]
        return arrays[0] if len(arrays) == 1 else np.concatenate(arrays)

    return (data[meta[0] : meta[1]], tokens, joined("counts"), joined("numbers"), joined("name"), joined("attr"),
            joined("npts"))  # fmt: skip
