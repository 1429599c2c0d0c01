"""Rank-0 logging for training: console lines that do not break the progress bar, a log file, scalars.

``ScalarLog`` writes every logged scalar twice: to TensorBoard (when enabled and installed) and to
``scalars.jsonl`` in the work directory (one JSON object per line), which needs nothing to read back.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

from tqdm import tqdm

from pointformer.utils.atomic import write_atomic

LOGGER_NAME = "pointformer"
_TAG = "_pointformer_engine_handler"


class _TqdmHandler(logging.StreamHandler):
    """Console lines through ``tqdm.write``, so an active progress bar is redrawn below them."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            tqdm.write(self.format(record), file=self.stream)
        except Exception:  # logging must never take training down
            self.handleError(record)


def setup_logging(
    work_dir: str | os.PathLike | None = None, rank: int = 0, level: int = logging.INFO
) -> logging.Logger:
    """Configure the ``pointformer`` logger: INFO to the console and to ``work_dir/train.log`` on rank 0,
    warnings only on other ranks. Calling it again replaces the handlers it added before."""
    logger = close_logging()
    fmt = logging.Formatter("%(asctime)s %(levelname)s %(message)s", datefmt="%Y-%m-%d %H:%M:%S")
    console = _TqdmHandler()
    console.setFormatter(fmt)
    handlers: list[logging.Handler] = [console]
    if rank == 0 and work_dir is not None:
        Path(work_dir).mkdir(parents=True, exist_ok=True)
        file_handler = logging.FileHandler(Path(work_dir) / "train.log")
        file_handler.setFormatter(fmt)
        handlers.append(file_handler)
    for handler in handlers:
        setattr(handler, _TAG, True)
        logger.addHandler(handler)
    logger.setLevel(level if rank == 0 else logging.WARNING)
    logger.propagate = False
    return logger


def close_logging() -> logging.Logger:
    """Remove and close the handlers ``setup_logging`` added (console and ``train.log``), e.g. after a
    run inside a notebook or a test, so that later records go to neither; returns the logger."""
    logger = logging.getLogger(LOGGER_NAME)
    for handler in [h for h in logger.handlers if getattr(h, _TAG, False)]:
        logger.removeHandler(handler)
        handler.close()
    return logger


def get_logger() -> logging.Logger:
    return logging.getLogger(LOGGER_NAME)


def attach_log_file(path: str | os.PathLike) -> logging.Handler | None:
    """Also write the ``pointformer`` logger to ``path``; returns the new handler (to remove when done), or
    None when a handler already writes that file."""
    logger = get_logger()
    path = Path(path).resolve()
    if any(getattr(h, "baseFilename", None) == str(path) for h in logger.handlers):
        return None
    path.parent.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(path)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s", datefmt="%Y-%m-%d %H:%M:%S"))
    logger.addHandler(handler)
    return handler


def _truncate_steps(path: Path, keep_until: int) -> None:
    """Rewrites ``scalars.jsonl`` (atomically) without the rows past step ``keep_until`` and without a
    torn last line (a run killed mid-write)."""
    kept, changed = [], False
    for line in path.read_text().splitlines():
        try:
            step = json.loads(line)["step"]
        except (ValueError, KeyError, TypeError):
            changed = True
            continue
        if isinstance(step, int) and step <= keep_until:
            kept.append(line)
        else:
            changed = True
    if changed:
        write_atomic(path, "".join(f"{line}\n" for line in kept))


class ScalarLog:
    """Scalars to TensorBoard (``work_dir/tensorboard``) and ``work_dir/scalars.jsonl``; use on rank 0 only.

    ``SummaryWriter`` is imported here, lazily, so the engine imports without TensorBoard installed;
    asking for TensorBoard without the package raises an ImportError saying what to install.
    """

    def __init__(self, work_dir: str | os.PathLike, tensorboard: bool = True, keep_until: int | None = None) -> None:
        """``keep_until``: keep only the existing rows with ``step <= keep_until`` (a resumed run passes
        its checkpoint's iteration, a fresh run -1: no row is then written twice); None keeps all."""
        self.work_dir = Path(work_dir)
        self.work_dir.mkdir(parents=True, exist_ok=True)
        path = self.work_dir / "scalars.jsonl"
        if keep_until is not None and path.is_file():
            _truncate_steps(path, keep_until)
        self._jsonl = open(path, "a")  # noqa: SIM115 - closed in close()
        self._writer = None
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError as error:
                raise ImportError(
                    "TensorBoard logging needs the tensorboard package: `pip install tensorboard==2.21.0` "
                    "(see requirements.txt), or turn TensorBoard off (Trainer(tensorboard=False))."
                ) from error
            self._writer = SummaryWriter(log_dir=str(self.work_dir / "tensorboard"))

    def log(self, scalars: dict[str, float], step: int, **fields: Any) -> None:
        """Record ``scalars`` (names like ``train/loss``) at global ``step``; ``fields`` go to the JSON line only."""
        if self._writer is not None:
            for name, value in scalars.items():
                self._writer.add_scalar(name, value, step)
        record = {"step": step, **fields, **scalars}
        self._jsonl.write(json.dumps(record) + "\n")
        self._jsonl.flush()

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None
        if not self._jsonl.closed:
            self._jsonl.close()
