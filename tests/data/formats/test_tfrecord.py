"""TFRecord framing: CRC-32C vectors, round trips, truncation and corruption."""

from __future__ import annotations

import os
import struct

import pytest

from pointformer.data.formats import DataFormatError
from pointformer.data.formats.tfrecord import crc32c, iter_record_spans, iter_records, masked_crc32c, write_records


@pytest.mark.parametrize(
    "data, expected",
    [
        (b"", 0x00000000),
        (b"123456789", 0xE3069283),  # the standard check value
        (b"a", 0xC1D04330),
        (bytes(32), 0x8A9136AA),  # RFC 3720 B.4: 32 bytes of zeros
        (b"\xff" * 32, 0x62A8AB43),  # RFC 3720 B.4: 32 bytes of ones
        (bytes(range(32)), 0x46DD794E),  # RFC 3720 B.4: incrementing
        (bytes(range(31, -1, -1)), 0x113FDB5C),  # RFC 3720 B.4: decrementing
    ],
)
def test_crc32c_vectors(data, expected):
    assert crc32c(data) == expected


def test_crc32c_incremental_and_all_tail_lengths():
    data = os.urandom(1000)
    for n in range(17):  # lengths around the 8-byte slicing boundary
        whole = crc32c(data[: 100 + n])
        assert crc32c(data[100 : 100 + n], crc32c(data[:100])) == whole


def test_masked_crc_formula():
    c = crc32c(b"abc")
    assert masked_crc32c(b"abc") == ((((c >> 15) | (c << 17)) & 0xFFFFFFFF) + 0xA282EAD8) & 0xFFFFFFFF


def _records():
    return [b"", b"x", bytes(range(250)) * 4, b"hello world" * 100]


def test_round_trip(tmp_path):
    path = tmp_path / "a.tfrecord"
    assert write_records(path, _records()) == 4
    assert list(iter_records(path)) == _records()
    spans = list(iter_record_spans(path))
    assert [s[0] for s in spans] == [0, 1, 2, 3]
    assert [s[1] for s in spans] == [0, 16, 33, 1049]
    # framing of one record, byte for byte
    raw = path.read_bytes()
    assert raw[:8] == struct.pack("<Q", 0)
    assert raw[8:12] == struct.pack("<I", masked_crc32c(raw[:8]))
    assert raw[12:16] == struct.pack("<I", masked_crc32c(b""))
    assert oct(path.stat().st_mode & 0o777) == oct(0o644)


def test_empty_file(tmp_path):
    path = tmp_path / "empty.tfrecord"
    write_records(path, [])
    assert path.read_bytes() == b""
    assert list(iter_records(path)) == []


def test_atomic_write_keeps_old_file_on_failure(tmp_path):
    path = tmp_path / "a.tfrecord"
    write_records(path, [b"old"])

    def failing():
        yield b"new"
        raise RuntimeError("generator failed")

    with pytest.raises(RuntimeError):
        write_records(path, failing())
    assert list(iter_records(path)) == [b"old"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.tfrecord"]


@pytest.mark.parametrize("cut", [1, 7, 11, 12, 13, 500, 1015])
def test_truncation(tmp_path, cut):
    path = tmp_path / "a.tfrecord"
    write_records(path, [b"first", os.urandom(1000)])
    raw = path.read_bytes()
    second = 12 + 5 + 4  # the first record: header, data, data checksum
    path.write_bytes(raw[: second + cut])
    it = iter_records(path)
    assert next(it) == b"first"
    with pytest.raises(DataFormatError, match=r"a\.tfrecord: record 1 at byte 21: truncated"):
        next(it)


@pytest.mark.parametrize(
    "where, match", [(3, "length checksum"), (9, "length checksum"), (30, "data checksum"), (-1, "data checksum")]
)
def test_flipped_bytes(tmp_path, where, match):
    path = tmp_path / "a.tfrecord"
    write_records(path, [os.urandom(100)])
    raw = bytearray(path.read_bytes())
    raw[where] ^= 0x40
    path.write_bytes(bytes(raw))
    with pytest.raises(DataFormatError, match=f"record 0 at byte 0: {match}"):
        list(iter_records(path))
    if "data" in match:
        assert len(list(iter_records(path, verify=False))) == 1
