"""Atomic file writing: a reader sees the old file or the whole new one, never a partial one.

Every writer in pointformer (converted datasets, checkpoints, exported models, result files,
benchmark documents, PNG renderings) goes through here, so a run killed mid-write never leaves a
half-written file under a final name.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO

# The process umask, read once at import: ``os.umask`` can only be read by setting it, which is
# not safe once worker threads run.
_UMASK = os.umask(0)
os.umask(_UMASK)
# Temporary files are ``.<final name>.<random>.tmp`` in the final file's folder.
TEMP_SUFFIX = ".tmp"


def _final_mode(path: Path) -> int:
    """The permission bits the written file gets: those of the file it replaces, else those of a
    new file under the umask (``mkstemp`` itself creates 0600 files)."""
    try:
        return path.stat().st_mode & 0o777
    except FileNotFoundError:
        return 0o666 & ~_UMASK


def _fsync(path: str | os.PathLike) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, durable: bool = True) -> Iterator[Path]:
    """A temporary path in ``path``'s folder that is renamed over ``path`` when the block completes
    without error, and removed otherwise. For writers that want a file name rather than a file
    object (``onnx``'s ``save``, say). The folder is created if missing.

    ``durable=False`` skips the fsync before the rename: the rename is still atomic while the
    system runs, but after a power loss the file may be empty or missing. Use it only where the
    caller makes the data durable later (:func:`fsync_files`) before recording it as complete.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=TEMP_SUFFIX, dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        if durable:
            _fsync(tmp)
        os.chmod(tmp, _final_mode(path))
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


@contextlib.contextmanager
def atomic_file(path: str | os.PathLike, mode: str = "wb", durable: bool = True) -> Iterator[IO]:
    """A file object (``mode`` ``"wb"`` or ``"w"``, text as UTF-8) that becomes ``path`` only when
    the block completes without error; see :func:`atomic_path` for ``durable``."""
    if mode not in ("wb", "w"):
        raise ValueError(f"atomic_file: mode must be 'wb' or 'w', got {mode!r}")
    with atomic_path(path, durable=False) as tmp:
        with open(tmp, mode, encoding=None if "b" in mode else "utf-8") as f:
            yield f
            f.flush()
            if durable:
                os.fsync(f.fileno())


def write_atomic(path: str | os.PathLike, data: bytes | bytearray | memoryview | str, durable: bool = True) -> Path:
    """Writes ``data`` (bytes, or text as UTF-8) to ``path`` atomically and returns ``path``."""
    with atomic_file(path, "w" if isinstance(data, str) else "wb", durable=durable) as f:
        f.write(data)
    return Path(path)


def fsync_files(paths: Iterable[str | os.PathLike]) -> None:
    """Flushes the data of ``paths`` (files written with ``durable=False``), then their folders (so
    the renames are on disk too), to stable storage."""
    folders = []
    for p in paths:
        _fsync(p)
        folders.append(os.path.dirname(os.path.abspath(p)))
    for d in dict.fromkeys(folders):
        _fsync(d)


def remove_stale_temporaries(folder: str | os.PathLike, final_name: str = "*") -> list[Path]:
    """Removes the temporary files that writers killed mid-write left in ``folder`` (those of final
    files matching the glob ``final_name``); returns them. Call it only where no writer of the same
    folder runs at the same time (at the start of a run, before its workers)."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    stale = sorted(p for p in folder.glob(f".{final_name}.*{TEMP_SUFFIX}") if p.is_file())
    for p in stale:
        with contextlib.suppress(FileNotFoundError):
            p.unlink()
    return stale
