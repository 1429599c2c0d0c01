"""A compiled reader of the nuScenes results JSON straight into arrays (no Python object per box).

A val-split results file holds millions of numbers: building them as Python dicts, lists and floats
(``json``/``orjson``) and then copying them into arrays costs most of an end-to-end evaluation.
``scan_results`` instead walks the file's bytes once with a numba kernel that checks the JSON
grammar and the results schema and writes, per box, the class and attribute index, ``num_pts``
and the position of each of its 13 numbers in a compact copy of their text; pyarrow then converts
all that text to float64 in one call (``fast_float``: correctly rounded, so every value is the
float Python's ``float()`` and ``json`` give).

It is a fast path, not a second definition of the format: for any file outside the common shape
it returns None and the caller reads the file with ``json`` (whose result, or error message, is
then the answer). The common shape: a UTF-8 top-level object with one ``"meta"`` object and one
``"results"`` object (other top-level members skipped) mapping distinct sample tokens to lists of
box objects; strings pure ASCII without escapes; in a box, ``translation``/``size``/``rotation``/
``velocity`` lists of exactly 3/3/4/2 numbers, ``detection_name`` and ``attribute_name`` (optional)
among the official names, ``detection_score`` (optional) a number, ``num_pts`` (optional) an
integer of at most 18 digits, ``sample_token`` (optional) equal to the sample's key, no key twice;
other members of a box are skipped. Numbers follow JSON's grammar, plus ``NaN``, ``Infinity`` and
``-Infinity`` (which Python's ``json`` accepts and ``json.dumps`` writes).
"""

from __future__ import annotations

import numba
import numpy as np

# Slots of a box's numbers: translation 0-2, size 3-5, rotation 6-9, velocity 10-11, score 12.
NUM_SLOTS = 13
_FIELD_WIDTH = np.array([3, 3, 4, 2], np.int64)
_FIELD_SLOT = np.array([0, 3, 6, 10], np.int64)
_SCORE_SLOT = 12
# Box keys, in the order of their codes (0-3: number lists; then the rest).
_BOX_KEYS = (
    "translation",
    "size",
    "rotation",
    "velocity",
    "detection_name",
    "detection_score",
    "attribute_name",
    "num_pts",
    "sample_token",
)
_REQUIRED = 0b11111  # the four lists and detection_name


def _table(words) -> tuple[np.ndarray, np.ndarray]:
    """Words as one uint8 buffer and ``(len + 1,)`` int64 offsets (for the kernel)."""
    data = [w.encode("ascii") for w in words]
    return np.frombuffer(b"".join(data) or b"\0", np.uint8).copy(), np.cumsum([0] + [len(d) for d in data])


_KEYS_BUF, _KEYS_OFF = _table(_BOX_KEYS)
_TOP_BUF, _TOP_OFF = _table(("meta", "results"))
_LITERALS_BUF, _LITERALS_OFF = _table(("true", "false", "null", "NaN", "Infinity", "-Infinity"))

_Q, _BS, _COLON, _COMMA = 34, 92, 58, 44
_LBRACE, _RBRACE, _LBRACK, _RBRACK = 123, 125, 91, 93
_MAX_DEPTH = 256


@numba.njit(cache=True, nogil=True)
def _ws(buf, i):  # pragma: no cover (jitted)
    n = buf.shape[0]
    while i < n:
        c = buf[i]
        if c != 32 and c != 10 and c != 13 and c != 9:
            break
        i += 1
    return i


@numba.njit(cache=True, nogil=True)
def _string_end(buf, i):  # pragma: no cover (jitted)
    """``buf[i]`` is a quote: the index after the closing quote, or -1 (escapes, control or
    non-ASCII bytes, or no end: outside the fast path)."""
    n = buf.shape[0]
    j = i + 1
    while j < n:
        c = buf[j]
        if c == _Q:
            return j + 1
        if c == _BS or c < 32 or c >= 128:
            return -1
        j += 1
    return -1


@numba.njit(cache=True, nogil=True)
def _find(buf, start, end, words, offsets):  # pragma: no cover (jitted)
    """Index of ``buf[start:end]`` among the words (see ``_table``), or -1."""
    length = end - start
    for w in range(offsets.shape[0] - 1):
        a = offsets[w]
        if offsets[w + 1] - a != length:
            continue
        same = True
        for k in range(length):
            if buf[start + k] != words[a + k]:
                same = False
                break
        if same:
            return w
    return -1


@numba.njit(cache=True, nogil=True)
def _starts_with(buf, i, w, words, offsets):  # pragma: no cover (jitted)
    a, b = offsets[w], offsets[w + 1]
    if i + (b - a) > buf.shape[0]:
        return False
    for k in range(b - a):
        if buf[i + k] != words[a + k]:
            return False
    return True


@numba.njit(cache=True, nogil=True)
def _number_end(buf, i):  # pragma: no cover (jitted)
    """End of the number at ``i`` (JSON grammar, ``NaN``, ``Infinity``, ``-Infinity``) or -1."""
    n = buf.shape[0]
    if _starts_with(buf, i, 3, _LITERALS_BUF, _LITERALS_OFF):
        return i + 3
    if _starts_with(buf, i, 4, _LITERALS_BUF, _LITERALS_OFF):
        return i + 8
    if _starts_with(buf, i, 5, _LITERALS_BUF, _LITERALS_OFF):
        return i + 9
    j = i
    if j < n and buf[j] == 45:  # -
        j += 1
    if j >= n:
        return -1
    if buf[j] == 48:  # 0
        j += 1
    elif 49 <= buf[j] <= 57:
        while j < n and 48 <= buf[j] <= 57:
            j += 1
    else:
        return -1
    if j < n and buf[j] == 46:  # .
        j += 1
        if j >= n or not 48 <= buf[j] <= 57:
            return -1
        while j < n and 48 <= buf[j] <= 57:
            j += 1
    if j < n and (buf[j] == 101 or buf[j] == 69):  # e E
        j += 1
        if j < n and (buf[j] == 43 or buf[j] == 45):
            j += 1
        if j >= n or not 48 <= buf[j] <= 57:
            return -1
        while j < n and 48 <= buf[j] <= 57:
            j += 1
    return j


@numba.njit(cache=True, nogil=True)
def _key(buf, i):  # pragma: no cover (jitted)
    """A member name at ``i`` (after whitespace) and its colon: ``(start, end, next)`` with the
    name in ``buf[start:end]`` and ``next`` the index after the colon and whitespace; -1s if none."""
    i = _ws(buf, i)
    if i >= buf.shape[0] or buf[i] != _Q:
        return -1, -1, -1
    e = _string_end(buf, i)
    if e < 0:
        return -1, -1, -1
    j = _ws(buf, e)
    if j >= buf.shape[0] or buf[j] != _COLON:
        return -1, -1, -1
    j = _ws(buf, j + 1)
    if j >= buf.shape[0]:
        return -1, -1, -1
    return i + 1, e - 1, j


@numba.njit(cache=True, nogil=True)
def _scalar_end(buf, i):  # pragma: no cover (jitted)
    """End of the string, literal or number at ``i``, or -1."""
    if buf[i] == _Q:
        return _string_end(buf, i)
    for w in range(3):  # true false null
        if _starts_with(buf, i, w, _LITERALS_BUF, _LITERALS_OFF):
            return i + _LITERALS_OFF[w + 1] - _LITERALS_OFF[w]
    return _number_end(buf, i)


@numba.njit(cache=True, nogil=True)
def _skip_value(buf, i):  # pragma: no cover (jitted)
    """The index after the JSON value at ``i`` (whitespace first), or -1 if it is not valid."""
    n = buf.shape[0]
    stack = np.empty(_MAX_DEPTH, np.uint8)
    depth = 0
    i = _ws(buf, i)
    while True:
        # A value starts at i.
        if i >= n:
            return -1
        c = buf[i]
        opened = False
        if c == _LBRACE or c == _LBRACK:
            close = _RBRACE if c == _LBRACE else _RBRACK
            j = _ws(buf, i + 1)
            if j < n and buf[j] == close:
                i = j + 1
            else:
                if depth == _MAX_DEPTH:
                    return -1
                stack[depth] = c
                depth += 1
                opened = True
                if c == _LBRACE:
                    s, e, j = _key(buf, j)
                    if s < 0:
                        return -1
                i = j
        else:
            i = _scalar_end(buf, i)
            if i < 0:
                return -1
        if opened:
            continue
        # A value ended at i: close containers or move to the next member.
        while True:
            if depth == 0:
                return i
            i = _ws(buf, i)
            if i >= n:
                return -1
            top = stack[depth - 1]
            if buf[i] == _COMMA:
                if top == _LBRACE:
                    s, e, i = _key(buf, i + 1)
                    if s < 0:
                        return -1
                else:
                    i = _ws(buf, i + 1)
                break
            if (top == _LBRACE and buf[i] == _RBRACE) or (top == _LBRACK and buf[i] == _RBRACK):
                depth -= 1
                i += 1
            else:
                return -1


@numba.njit(cache=True, nogil=True)
def _copy_number(buf, s, e, text, text_end, offsets, k):  # pragma: no cover (jitted)
    """Appends the number ``buf[s:e]`` to ``text`` as number ``k``; returns the new end, or -1
    for an integer literal of more than 300 digits (Python's ``float()`` of such an int may
    overflow, where the text would read as infinity)."""
    integer = True
    for q in range(s, e):
        c = buf[q]
        if c == 46 or c == 101 or c == 69 or c == 78 or c == 73:  # . e E N(aN) I(nfinity)
            integer = False
    if integer and e - s > 300:
        return -1
    if integer and e - s == 2 and buf[s] == 45 and buf[s + 1] == 48:
        s += 1  # the integer -0 is 0 (json reads an int), not the float -0.0
    for q in range(s, e):
        text[text_end + q - s] = buf[q]
    offsets[k + 1] = text_end + e - s
    return text_end + e - s


@numba.njit(cache=True, nogil=True)
def _scan(buf, cap, names, names_off, attrs, attrs_off):  # pragma: no cover (jitted)
    """The kernel of ``scan_results`` (``cap``: the number of opening braces, a bound on the
    number of boxes). Returns ``(ok, meta span, sample key spans, boxes per sample, slot -> number
    index, number text, number offsets, name, attribute, num_pts, number of boxes, number of
    numbers)``."""
    n = buf.shape[0]
    samples = np.zeros((cap + 1, 2), np.int64)
    counts = np.zeros(cap + 1, np.int64)
    slots = np.full((cap, NUM_SLOTS), -1, np.int64)
    text = np.empty(n, np.uint8)
    offsets = np.zeros(cap * NUM_SLOTS + 1, np.int64)
    name = np.zeros(cap, np.int64)
    attr = np.zeros(cap, np.int64)
    npts = np.full(cap, -1, np.int64)
    meta = np.full(2, -1, np.int64)
    nb, ns, nn, text_end = 0, 0, 0, 0
    # Every return has the same types: the failures return empty slices.
    fail = (False, meta, samples[:0], counts[:0], slots[:0], text[:0], offsets[:1], name[:0], attr[:0], npts[:0], 0, 0)

    i = _ws(buf, 0)
    if i >= n or buf[i] != _LBRACE:
        return fail
    seen_results = False
    i = _ws(buf, i + 1)
    if i < n and buf[i] == _RBRACE:
        return fail  # no meta, no results
    i -= 1  # the loop below steps over the brace or comma before each member
    while True:
        s, e, i = _key(buf, i + 1)
        if s < 0:
            return fail
        top = _find(buf, s, e, _TOP_BUF, _TOP_OFF)
        if top == 0:  # meta
            if meta[0] >= 0 or buf[i] != _LBRACE:
                return fail
            j = _skip_value(buf, i)
            if j < 0:
                return fail
            meta[0], meta[1] = i, j
            i = j
        elif top == 1:  # results
            if seen_results or buf[i] != _LBRACE:
                return fail
            seen_results = True
            i = _ws(buf, i + 1)
            if i < n and buf[i] == _RBRACE:
                i += 1
            else:
                i -= 1
                while True:  # samples
                    ks, ke, i = _key(buf, i + 1)
                    if ks < 0 or buf[i] != _LBRACK:
                        return fail
                    samples[ns, 0], samples[ns, 1] = ks, ke
                    i = _ws(buf, i + 1)
                    if i < n and buf[i] == _RBRACK:
                        i += 1
                    else:
                        i -= 1
                        while True:  # boxes
                            i = _ws(buf, i + 1)
                            if i >= n or buf[i] != _LBRACE:
                                return fail
                            seen = 0
                            while True:  # members of a box
                                bs, be, i = _key(buf, i + 1)
                                if bs < 0 or i >= n:
                                    return fail
                                code = _find(buf, bs, be, _KEYS_BUF, _KEYS_OFF)
                                if code >= 0:
                                    if seen & (1 << code):
                                        return fail
                                    seen |= 1 << code
                                if 0 <= code <= 3:
                                    if buf[i] != _LBRACK:
                                        return fail
                                    for c in range(_FIELD_WIDTH[code]):
                                        i = _ws(buf, i + 1)
                                        j = _number_end(buf, i)
                                        if j < 0:
                                            return fail
                                        slots[nb, _FIELD_SLOT[code] + c] = nn
                                        text_end = _copy_number(buf, i, j, text, text_end, offsets, nn)
                                        if text_end < 0:
                                            return fail
                                        nn += 1
                                        i = _ws(buf, j)
                                        last = c == _FIELD_WIDTH[code] - 1
                                        if i >= n or buf[i] != (_RBRACK if last else _COMMA):
                                            return fail
                                    i += 1
                                elif code == 4 or code == 6 or code == 8:  # strings
                                    if buf[i] != _Q:
                                        return fail
                                    j = _string_end(buf, i)
                                    if j < 0:
                                        return fail
                                    if code == 4:
                                        name[nb] = _find(buf, i + 1, j - 1, names, names_off)
                                        if name[nb] < 0:
                                            return fail
                                    elif code == 6:
                                        attr[nb] = _find(buf, i + 1, j - 1, attrs, attrs_off)
                                        if attr[nb] < 0:
                                            return fail
                                    else:
                                        if j - 1 - (i + 1) != ke - ks:
                                            return fail
                                        for q in range(ke - ks):
                                            if buf[i + 1 + q] != buf[ks + q]:
                                                return fail
                                    i = j
                                elif code == 5:  # detection_score
                                    j = _number_end(buf, i)
                                    if j < 0:
                                        return fail
                                    slots[nb, _SCORE_SLOT] = nn
                                    text_end = _copy_number(buf, i, j, text, text_end, offsets, nn)
                                    if text_end < 0:
                                        return fail
                                    nn += 1
                                    i = j
                                elif code == 7:  # num_pts: an integer literal
                                    j = i + 1 if buf[i] == 45 else i
                                    v = 0
                                    while j < n and 48 <= buf[j] <= 57 and j - i < 18:
                                        v = 10 * v + (buf[j] - 48)
                                        j += 1
                                    if j == i or _number_end(buf, i) != j:
                                        return fail
                                    npts[nb] = -v if buf[i] == 45 else v
                                    i = j
                                else:  # another member: skipped
                                    i = _skip_value(buf, i)
                                    if i < 0:
                                        return fail
                                i = _ws(buf, i)
                                if i >= n:
                                    return fail
                                if buf[i] == _RBRACE:
                                    break
                                if buf[i] != _COMMA:
                                    return fail
                            if seen & _REQUIRED != _REQUIRED:
                                return fail
                            nb += 1
                            counts[ns] += 1
                            i = _ws(buf, i + 1)
                            if i >= n:
                                return fail
                            if buf[i] == _RBRACK:
                                i += 1
                                break
                            if buf[i] != _COMMA:
                                return fail
                    ns += 1
                    i = _ws(buf, i)
                    if i >= n:
                        return fail
                    if buf[i] == _RBRACE:
                        i += 1
                        break
                    if buf[i] != _COMMA:
                        return fail
        else:
            i = _skip_value(buf, i)
            if i < 0:
                return fail
        i = _ws(buf, i)
        if i >= n:
            return fail
        if buf[i] == _RBRACE:
            break
        if buf[i] != _COMMA:
            return fail
    if _ws(buf, i + 1) != n or not seen_results or meta[0] < 0:
        return fail
    return True, meta, samples[:ns], counts[:ns], slots[:nb], text[:text_end], offsets[: nn + 1], name[:nb], \
        attr[:nb], npts[:nb], nb, nn  # fmt: skip


def scan_results(data: bytes, detection_names, attribute_names):
    """The results JSON ``data`` as arrays, or None when it is outside the fast path (see the
    module docstring).

    Args:
        data: the file's bytes.
        detection_names, attribute_names: the accepted names (a box's attribute may also be ``""``).

    Returns:
        ``(meta_bytes, sample_tokens, counts, numbers, name_index, attribute_index, num_pts)``:
        the ``meta`` object's text, the sample tokens (file order), ``(S,)`` int64 boxes per
        sample, ``(N, 13)`` float64 translation, size ``[w, l, h]``, rotation ``[w, x, y, z]``,
        velocity and score (-1 where absent), ``(N,)`` int64 indices into ``detection_names`` and
        into ``("", *attribute_names)``, ``(N,)`` int64 ``num_pts`` (-1 where absent).
    """
    import pyarrow as pa
    import pyarrow.compute as pc

    buf = np.frombuffer(data, np.uint8)
    names_buf, names_off = _table(detection_names)
    attrs_buf, attrs_off = _table(("", *attribute_names))
    cap = data.count(b"{")  # boxes are objects: at most one per opening brace
    ok, meta, spans, counts, slots, text, offsets, name, attr, npts, nb, nn = _scan(
        buf, cap, names_buf, names_off, attrs_buf, attrs_off
    )
    if not ok:
        return None
    tokens = [data[s:e].decode("ascii") for s, e in spans.tolist()]
    if len(set(tokens)) != len(tokens):
        return None  # a sample listed twice: json keeps the last list at the first position
    if nn:
        strings = pa.Array.from_buffers(pa.large_utf8(), nn, [None, pa.py_buffer(offsets), pa.py_buffer(text)])
        try:
            values = pc.cast(strings, pa.float64()).to_numpy(zero_copy_only=False)
        except pa.ArrowInvalid:
            return None
    else:
        values = np.zeros(0)
    numbers = np.append(values, -1.0)[slots]  # slot -1 (an absent score) reads the default -1
    return data[meta[0] : meta[1]], tokens, counts, numbers, name, attr, npts


def warm_cache() -> None:
    """Compiles the scanner into numba's on-disk cache (beside this file) if it is not there yet.

    ``make build`` calls this, so that the first ``tools/eval.py nuscenes`` of a new checkout loads
    the compiled kernel (well under a second) instead of compiling it (half a minute or more on a
    busy 2-core machine); later processes load it from the cache either way."""
    box = (
        b'{"sample_token": "s", "translation": [1.5, 2, 3], "size": [1, 2, 3], "rotation": [1, 0, 0, 0], '
        b'"velocity": [0, 0], "detection_name": "car", "detection_score": 0.5, "attribute_name": "", "num_pts": 3}'
    )
    scanned = scan_results(b'{"meta": {}, "results": {"s": [' + box + b"]}}", ("car",), ())
    if scanned is None:
        raise RuntimeError("the results scanner rejected its own warm-up document")
