"""A small protobuf (proto2) wire-format codec with declarative message schemas.

Messages are dataclasses deriving from ``Message``; each field is declared with ``pb_field``
giving its field number and kind::

    @dataclass(eq=False)
    class MatrixShape(Message):
        dims: np.ndarray = pb_field(1, "int32", repeated=True)

Kinds: ``int32, int64, uint32, uint64, bool, enum`` (varint), ``fixed32, sfixed32, float``
(32-bit), ``fixed64, sfixed64, double`` (64-bit), ``string, bytes`` and ``message`` (length
delimited). ``sint32/sint64`` (zigzag) are not needed by any schema here and not supported.

Python values:
  * singular scalars: ``int``/``float``/``bool``/``str``/``bytes``, defaulting to the proto default
    (0, 0.0, False, "", b"" or the declared ``default``). Proto2 presence is not tracked: the
    encoder omits a scalar equal to its default, which a decoder reads back as the same value;
  * singular messages: an instance or ``None`` (absent);
  * repeated numeric fields: a 1-D numpy array (int32/int64/uint32/uint64/bool/float32/float64).
    Packed fields are decoded with numpy in one pass (fixed-width: ``frombuffer``; varint: a
    vectorized decoder), so a 700k-float range image costs a copy, not a Python loop;
  * repeated strings, bytes and messages: lists.

Decoding accepts packed and unpacked encodings of any repeated numeric field (as protobuf does)
and skips unknown fields; encoding uses the declared ``packed`` flag. Malformed input (bad or
truncated varint, a length past the end, a wrong wire type for a known field, an end-group tag)
raises ``DataFormatError`` naming the message type and field path.
"""

from __future__ import annotations

import dataclasses
import struct
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from pointformer.data.formats.errors import DataFormatError

VARINT, I64, LEN, SGROUP, EGROUP, I32 = 0, 1, 2, 3, 4, 5
_WIRE_NAMES = {0: "varint", 1: "64-bit", 2: "length-delimited", 3: "start-group", 4: "end-group", 5: "32-bit"}

# kind -> (wire type, numpy dtype of repeated values, default)
_KINDS: dict[str, tuple[int, Any, Any]] = {
    "int32": (VARINT, np.int32, 0),
    "int64": (VARINT, np.int64, 0),
    "uint32": (VARINT, np.uint32, 0),
    "uint64": (VARINT, np.uint64, 0),
    "bool": (VARINT, np.bool_, False),
    "enum": (VARINT, np.int32, 0),
    "fixed32": (I32, np.dtype("<u4"), 0),
    "sfixed32": (I32, np.dtype("<i4"), 0),
    "float": (I32, np.dtype("<f4"), 0.0),
    "fixed64": (I64, np.dtype("<u8"), 0),
    "sfixed64": (I64, np.dtype("<i8"), 0),
    "double": (I64, np.dtype("<f8"), 0.0),
    "string": (LEN, None, ""),
    "bytes": (LEN, None, b""),
    "message": (LEN, None, None),
}
_STRUCTS = {
    "fixed32": struct.Struct("<I"),
    "sfixed32": struct.Struct("<i"),
    "float": struct.Struct("<f"),
    "fixed64": struct.Struct("<Q"),
    "sfixed64": struct.Struct("<q"),
    "double": struct.Struct("<d"),
}


class _WireError(Exception):
    """Internal: malformed input; ``path`` collects field names while unwinding."""

    def __init__(self, message: str, path: list[str] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.path = path or []


@dataclass(frozen=True)
class FieldSpec:
    name: str
    number: int
    kind: str
    wire_type: int
    repeated: bool
    packed: bool
    message: type | None
    default: Any

    @property
    def numeric(self) -> bool:
        return self.kind not in ("string", "bytes", "message")


def pb_field(
    number: int,
    kind: str,
    *,
    repeated: bool = False,
    packed: bool = False,
    message: type | None = None,
    default: Any = dataclasses.MISSING,
) -> Any:
    """Declares a message field: its number, kind, and for ``kind="message"`` the message class."""
    if kind not in _KINDS:
        raise ValueError(f"unknown protobuf field kind {kind!r}")
    if (kind == "message") != (message is not None):
        raise ValueError("message= is required for kind 'message' and only for it")
    if packed and (not repeated or kind in ("string", "bytes", "message")):
        raise ValueError("only repeated numeric fields can be packed")
    wire, dtype, kind_default = _KINDS[kind]
    meta = {"pb": (number, kind, repeated, packed, message)}
    if repeated:
        if dtype is not None:
            return dataclasses.field(default_factory=lambda: np.zeros(0, dtype), metadata=meta)
        return dataclasses.field(default_factory=list, metadata=meta)
    value = kind_default if default is dataclasses.MISSING else default
    return dataclasses.field(default=value, metadata={**meta, "pb_default": value})


class Message:
    """Base of schema-declared protobuf messages (subclasses are ``@dataclass(eq=False)``).

    ``PROTO_NAME`` is the message's full proto name, used in error messages.
    """

    PROTO_NAME: ClassVar[str] = ""
    _specs: ClassVar[dict[int, FieldSpec]]
    _ordered: ClassVar[tuple[FieldSpec, ...]]

    @classmethod
    def _schema(cls) -> dict[int, FieldSpec]:
        specs = cls.__dict__.get("_specs")
        if specs is None:
            specs = {}
            for f in dataclasses.fields(cls):
                if "pb" not in f.metadata:
                    continue
                number, kind, repeated, packed, message = f.metadata["pb"]
                if number in specs:
                    raise TypeError(f"{cls.__name__}: field number {number} declared twice")
                specs[number] = FieldSpec(
                    f.name, number, kind, _KINDS[kind][0], repeated, packed, message, f.metadata.get("pb_default")
                )
            cls._specs = specs
            cls._ordered = tuple(specs[n] for n in sorted(specs))
        return specs

    @classmethod
    def type_name(cls) -> str:
        return cls.PROTO_NAME or cls.__name__

    # -- decoding ------------------------------------------------------------------------------
    @classmethod
    def decode(cls, data: bytes | bytearray | memoryview):
        """Parses serialized bytes; raises ``DataFormatError`` on malformed input."""
        buf = bytes(data) if not isinstance(data, bytes) else data
        try:
            return _decode(cls, buf, 0, len(buf))
        except _WireError as e:
            where = ".".join([cls.type_name(), *reversed(e.path)])
            raise DataFormatError(f"malformed {cls.type_name()} at {where}: {e.message}") from None

    # -- encoding ------------------------------------------------------------------------------
    def encode(self) -> bytes:
        """Serializes the message (fields in number order)."""
        out = bytearray()
        _encode(self, out)
        return bytes(out)

    # -- comparison ----------------------------------------------------------------------------
    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        for spec in self._schema().values():
            a, b = getattr(self, spec.name), getattr(other, spec.name)
            if spec.repeated and spec.numeric:
                if not np.array_equal(np.asarray(a), np.asarray(b)):
                    return False
            elif a != b:
                return False
        return True

    __hash__ = None  # type: ignore[assignment]


# ---------------------------------------------------------------------------------------------
# Varints
# ---------------------------------------------------------------------------------------------


def _read_varint(buf: bytes, pos: int, end: int) -> tuple[int, int]:
    result = 0
    shift = 0
    while True:
        if pos >= end:
            raise _WireError("truncated varint")
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if b < 0x80:
            if shift == 63 and b > 1:
                raise _WireError("varint overflows 64 bits")
            return result, pos
        shift += 7
        if shift > 63:
            raise _WireError("bad varint: more than 10 bytes")


def encode_varint(value: int) -> bytes:
    """Varint bytes of an integer; negative values are encoded as 64-bit two's complement."""
    value &= 0xFFFFFFFFFFFFFFFF
    out = bytearray()
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _varint_to_kind(value: int, kind: str) -> int | bool:
    if kind in ("int32", "enum"):
        return ((value + 0x80000000) & 0xFFFFFFFF) - 0x80000000
    if kind == "int64":
        return value - (1 << 64) if value >= (1 << 63) else value
    if kind == "uint32":
        return value & 0xFFFFFFFF
    if kind == "bool":
        return value != 0
    return value  # uint64


def decode_packed_varints(data: bytes | memoryview, dtype) -> np.ndarray:
    """Vectorized decoding of concatenated varints into ``dtype`` (values truncated to its width,
    as protobuf does for int32)."""
    b = np.frombuffer(data, dtype=np.uint8)
    if b.size == 0:
        return np.zeros(0, dtype)
    if b[-1] & 0x80:
        raise _WireError("truncated varint in packed array")
    ends = np.flatnonzero(b < 0x80)
    if ends.size == b.size:  # every value is a single byte: the common case for small ints
        raw = b.astype(np.uint64)
    else:
        starts = np.empty_like(ends)
        starts[0] = 0
        starts[1:] = ends[:-1] + 1
        lengths = ends - starts + 1
        if lengths.max() > 10:
            raise _WireError("bad varint in packed array: more than 10 bytes")
        position = np.arange(b.size) - np.repeat(starts, lengths)
        # Bits of different bytes do not overlap, so the grouped sum is the bitwise or; shifts past
        # bit 63 (the 10th byte) drop out of uint64 as they do in protobuf.
        parts = (b & 0x7F).astype(np.uint64) << (7 * position).astype(np.uint64)
        raw = np.add.reduceat(parts, starts)
    dtype = np.dtype(dtype)
    if dtype == np.bool_:
        return raw != 0
    # Two's complement truncation to the target width.
    return raw.astype(np.uint64).view(np.int64).astype(dtype) if dtype.kind == "i" else raw.astype(dtype)


def encode_packed_varints(values: np.ndarray) -> bytes:
    """Vectorized varint encoding; signed values are sign-extended to 64 bits first (so a negative
    int32 takes 10 bytes, as in protobuf)."""
    values = np.asarray(values)
    if values.size == 0:
        return b""
    if values.dtype.kind in "ib":
        u = values.astype(np.int64).view(np.uint64)
    else:
        u = values.astype(np.uint64)
    if not (u >> np.uint64(7)).any():  # every value fits one byte (e.g. all-zero camera projections)
        return u.astype(np.uint8).tobytes()
    nbytes = np.ones(u.shape, dtype=np.int64)
    for k in range(1, 10):
        nbytes += u >= np.uint64(1 << (7 * k))
    starts = np.zeros(u.shape, dtype=np.int64)
    np.cumsum(nbytes[:-1], out=starts[1:])
    out = np.empty(int(nbytes.sum()), dtype=np.uint8)
    for k in range(int(nbytes.max())):
        sel = np.flatnonzero(nbytes > k)
        byte = ((u[sel] >> np.uint64(7 * k)) & np.uint64(0x7F)).astype(np.uint8)
        byte |= np.where(nbytes[sel] > k + 1, np.uint8(0x80), np.uint8(0))
        out[starts[sel] + k] = byte
    return out.tobytes()


# ---------------------------------------------------------------------------------------------
# Decoding
# ---------------------------------------------------------------------------------------------


def _skip(buf: bytes, pos: int, end: int, wire: int) -> int:
    if wire == VARINT:
        return _read_varint(buf, pos, end)[1]
    if wire == I64:
        pos += 8
    elif wire == I32:
        pos += 4
    elif wire == LEN:
        length, pos = _read_varint(buf, pos, end)
        pos += length
    elif wire == SGROUP:
        # Deprecated groups: skip nested fields up to the matching end-group tag.
        while True:
            if pos >= end:
                raise _WireError("unterminated group")
            key, pos = _read_varint(buf, pos, end)
            if key & 7 == EGROUP:
                return pos
            pos = _skip(buf, pos, end, key & 7)
    else:
        raise _WireError(f"invalid wire type {wire}")
    if pos > end:
        raise _WireError("field runs past the end of the message")
    return pos


def _decode(cls: type[Message], buf: bytes, pos: int, end: int) -> Message:
    specs = cls._schema()
    values: dict[str, Any] = {}
    chunks: dict[str, list] = {}  # repeated numeric: arrays and scalars in wire order
    while pos < end:
        key, pos = _read_varint(buf, pos, end)
        number, wire = key >> 3, key & 7
        if number == 0:
            raise _WireError("field number 0")
        spec = specs.get(number)
        if spec is None:
            if wire == EGROUP:
                raise _WireError(f"unexpected end-group tag (field {number})")
            try:
                pos = _skip(buf, pos, end, wire)
            except _WireError as e:
                e.path.append(f"<unknown field {number}>")
                raise
            continue
        try:
            if spec.repeated and spec.numeric and wire == LEN and spec.wire_type != LEN:
                length, pos = _read_varint(buf, pos, end)
                stop = pos + length
                if stop > end:
                    raise _WireError(f"packed length {length} runs past the end of the message")
                chunks.setdefault(spec.name, []).append(_decode_packed(spec, buf, pos, stop))
                pos = stop
                continue
            if wire != spec.wire_type:
                raise _WireError(
                    f"wire type {_WIRE_NAMES.get(wire, wire)} for a {spec.kind} field "
                    f"(expected {_WIRE_NAMES[spec.wire_type]})"
                )
            if wire == VARINT:
                raw, pos = _read_varint(buf, pos, end)
                value = _varint_to_kind(raw, spec.kind)
            elif wire == LEN:
                length, pos = _read_varint(buf, pos, end)
                stop = pos + length
                if stop > end:
                    raise _WireError(f"length {length} runs past the end of the message")
                if spec.kind == "message":
                    value = _decode(spec.message, buf, pos, stop)
                elif spec.kind == "string":
                    try:
                        value = buf[pos:stop].decode("utf-8")
                    except UnicodeDecodeError as e:
                        raise _WireError(f"invalid UTF-8 in string: {e}") from None
                else:
                    value = buf[pos:stop]
                pos = stop
            else:
                s = _STRUCTS[spec.kind]
                if pos + s.size > end:
                    raise _WireError("fixed-width value runs past the end of the message")
                value = s.unpack_from(buf, pos)[0]
                pos += s.size
        except _WireError as e:
            index = f"[{len(values.get(spec.name, ()))}]" if spec.repeated and not spec.numeric else ""
            e.path.append(f"{spec.name}{index} (field {number})")
            raise
        if spec.repeated:
            if spec.numeric:
                chunks.setdefault(spec.name, []).append(value)
            else:
                values.setdefault(spec.name, []).append(value)
        elif spec.kind == "message" and spec.name in values:
            # A repeated occurrence of a singular message merges into the earlier one.
            values[spec.name] = _merge(values[spec.name], value)
        else:
            values[spec.name] = value
    for name, parts in chunks.items():
        values[name] = _join_numeric(specs, name, parts)
    return cls(**values)


def _decode_packed(spec: FieldSpec, buf: bytes, pos: int, stop: int) -> np.ndarray:
    dtype = _KINDS[spec.kind][1]
    if spec.wire_type == VARINT:
        return decode_packed_varints(memoryview(buf)[pos:stop], dtype)
    width = np.dtype(dtype).itemsize
    if (stop - pos) % width:
        raise _WireError(f"packed {spec.kind} payload of {stop - pos} bytes is not a multiple of {width}")
    return np.frombuffer(buf, dtype=dtype, count=(stop - pos) // width, offset=pos).astype(
        np.dtype(dtype).newbyteorder("="), copy=True
    )


def _join_numeric(specs: dict[int, FieldSpec], name: str, parts: list) -> np.ndarray:
    spec = next(s for s in specs.values() if s.name == name)
    dtype = np.dtype(_KINDS[spec.kind][1]).newbyteorder("=")
    if len(parts) == 1 and isinstance(parts[0], np.ndarray):
        return parts[0]
    if not any(isinstance(p, np.ndarray) for p in parts):
        return np.array(parts, dtype=dtype)
    return np.concatenate([p if isinstance(p, np.ndarray) else np.array([p], dtype=dtype) for p in parts])


def _merge(a: Message, b: Message) -> Message:
    """Protobuf merge semantics: set scalars of ``b`` override, repeated fields concatenate,
    messages merge recursively."""
    updates = {}
    for spec in a._schema().values():
        va, vb = getattr(a, spec.name), getattr(b, spec.name)
        if spec.repeated:
            updates[spec.name] = np.concatenate([va, vb]) if spec.numeric else [*va, *vb]
        elif spec.kind == "message":
            updates[spec.name] = vb if va is None else va if vb is None else _merge(va, vb)
        elif vb != spec.default:
            updates[spec.name] = vb
    return dataclasses.replace(a, **updates)


# ---------------------------------------------------------------------------------------------
# Encoding
# ---------------------------------------------------------------------------------------------


def _encode(msg: Message, out: bytearray) -> None:
    msg._schema()
    for spec in type(msg)._ordered:
        value = getattr(msg, spec.name)
        if spec.repeated:
            if spec.numeric:
                _encode_repeated_numeric(spec, value, out)
            else:
                for item in value:
                    _encode_singular(spec, item, out)
        elif value is None or (spec.kind != "message" and value == spec.default):
            continue
        else:
            _encode_singular(spec, value, out)


def _encode_singular(spec: FieldSpec, value: Any, out: bytearray) -> None:
    out += encode_varint((spec.number << 3) | spec.wire_type)
    if spec.wire_type == VARINT:
        out += encode_varint(int(value))
    elif spec.wire_type == LEN:
        if spec.kind == "message":
            if not isinstance(value, spec.message):
                raise TypeError(f"field {spec.name} expects {spec.message.__name__}, got {type(value).__name__}")
            payload = value.encode()
        elif spec.kind == "string":
            payload = value.encode("utf-8")
        else:
            payload = bytes(value)
        out += encode_varint(len(payload))
        out += payload
    else:
        out += _STRUCTS[spec.kind].pack(value)


def _encode_repeated_numeric(spec: FieldSpec, value: Any, out: bytearray) -> None:
    dtype = _KINDS[spec.kind][1]
    arr = np.asarray(value)
    if arr.size == 0:
        return
    if arr.ndim != 1:
        raise ValueError(f"repeated field {spec.name} expects a 1-D array, got shape {arr.shape}")
    if spec.wire_type == VARINT:
        payloads = encode_packed_varints(arr.astype(dtype))
    else:
        payloads = arr.astype(np.dtype(dtype)).tobytes()  # dtype is little-endian
    if spec.packed:
        out += encode_varint((spec.number << 3) | LEN)
        out += encode_varint(len(payloads))
        out += payloads
        return
    tag = encode_varint((spec.number << 3) | spec.wire_type)
    if spec.wire_type == VARINT:
        for item in arr.astype(dtype).tolist():
            out += tag
            out += encode_varint(int(item))
    else:
        width = np.dtype(dtype).itemsize
        for i in range(0, len(payloads), width):
            out += tag
            out += payloads[i : i + width]
