"""pointformer.utils.atomic: a failed write leaves the old file and no temporary behind."""

from __future__ import annotations

import os
import stat

import pytest

from pointformer.utils import atomic
from pointformer.utils.atomic import atomic_file, atomic_path, fsync_files, write_atomic


def test_write_atomic_bytes_and_text(tmp_path):
    assert write_atomic(tmp_path / "a.bin", b"\x00\x01") == tmp_path / "a.bin"
    assert (tmp_path / "a.bin").read_bytes() == b"\x00\x01"
    write_atomic(tmp_path / "b.txt", "grüße\n")
    assert (tmp_path / "b.txt").read_bytes() == "grüße\n".encode()


def test_creates_missing_folders(tmp_path):
    write_atomic(tmp_path / "x" / "y" / "z.json", b"{}")
    assert (tmp_path / "x" / "y" / "z.json").read_bytes() == b"{}"


@pytest.mark.parametrize("durable", [True, False])
def test_failure_keeps_old_file_and_leaves_no_temporary(tmp_path, durable):
    path = tmp_path / "c.bin"
    write_atomic(path, b"old")
    with pytest.raises(RuntimeError, match="half-way"):
        with atomic_file(path, durable=durable) as f:
            f.write(b"new, partial")
            raise RuntimeError("failed half-way")
    assert path.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["c.bin"]


def test_atomic_path_for_writers_that_take_a_name(tmp_path):
    path = tmp_path / "model.onnx"
    with atomic_path(path) as tmp:
        assert tmp.parent == tmp_path and tmp != path
        tmp.write_bytes(b"graph")
        assert not path.exists()  # nothing under the final name until the block completes
    assert path.read_bytes() == b"graph"
    with pytest.raises(KeyboardInterrupt):
        with atomic_path(path) as tmp:
            tmp.write_bytes(b"other")
            raise KeyboardInterrupt
    assert path.read_bytes() == b"graph"
    assert [p.name for p in tmp_path.iterdir()] == ["model.onnx"]


def test_permissions_are_a_normal_files_or_the_replaced_ones(tmp_path):
    # mkstemp makes 0600 files; the result must look like any other file the process writes.
    write_atomic(tmp_path / "new.bin", b"1")
    assert stat.S_IMODE((tmp_path / "new.bin").stat().st_mode) == 0o666 & ~atomic._UMASK
    os.chmod(tmp_path / "new.bin", 0o640)
    write_atomic(tmp_path / "new.bin", b"2")
    assert stat.S_IMODE((tmp_path / "new.bin").stat().st_mode) == 0o640


def test_mode_is_checked(tmp_path):
    with pytest.raises(ValueError, match="mode must be"):
        with atomic_file(tmp_path / "d", "ab"):
            pass


def test_fsync_files(tmp_path):
    paths = [write_atomic(tmp_path / f"{i}.bin", b"x", durable=False) for i in range(3)]
    fsync_files(paths)  # flushes the files and their folder without error
    with pytest.raises(FileNotFoundError):
        fsync_files([tmp_path / "missing.bin"])
