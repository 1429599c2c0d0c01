"""``tools/train.py``: train a detector from a config (see ``pointformer.runs.train``)."""

from __future__ import annotations

import argparse
from pathlib import Path

from pointformer.config import ConfigError, load_config
from pointformer.ops.cpu_cache import enable_from_env
from pointformer.utils.cli import add_debug_argument
from pointformer.utils.threads import requested_threads


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description="Train a detector (tools/train.py).")
    p.add_argument("--cfg", required=True, help="config path, or a name under configs/ (waymo_flatformer.yaml)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config key, e.g. --set train.epochs=2 (repeatable)")  # fmt: skip
    p.add_argument("--work-dir", type=Path, default=None, help="default: work_dirs/<config name>")
    p.add_argument("--resume", action="store_true", help="continue from the latest checkpoint in the work dir")
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:1 (default: cuda when available)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    add_debug_argument(p)
    p.add_argument("--threads", default=None, metavar="N|auto",
                   help="CPU intra-op threads (default: POINTFORMER_THREADS, else OMP_NUM_THREADS, else auto: the "
                        "free CPUs, re-checked every few seconds; README 'CPU threads')")  # fmt: skip
    return p


def main(argv: list[str] | None = None) -> int:
    """Runs the command; bad inputs raise ``InputError`` subclasses (``tools/train.py``'s boundary reports them)."""
    args = parser().parse_args(argv)
    cfg = load_config(args.cfg, args.overrides)
    try:
        requested_threads(args.threads)  # a bad --threads / POINTFORMER_THREADS fails before any work
    except ValueError as e:
        raise ConfigError(str(e)) from e
    enable_from_env()  # large CPU blocks reused across steps (README 'CPU memory')
    from pointformer.runs.train import run_training

    work_dir = args.work_dir or Path("work_dirs") / cfg.name
    scalars = run_training(
        cfg, work_dir, resume=args.resume, device=args.device, progress=not args.no_progress, threads=args.threads
    )
    if scalars:
        print("final evaluation: " + ", ".join(f"{k} {v:.4f}" for k, v in sorted(scalars.items())))
    print(f"work dir: {work_dir}")
    return 0
