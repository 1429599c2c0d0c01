"""``tools/create_data.py``: one command line over the dataset converters (``DATASETS``)."""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable

from pointformer.data.convert.nuscenes import nuscenes_main
from pointformer.data.convert.sequences import ConvertSummary
from pointformer.data.convert.waymo import waymo_main
from pointformer.utils.cli import add_debug_argument
from pointformer.utils.errors import InputError

# Dataset name -> CLI entry (argparse namespace -> summary).
DATASETS: dict[str, Callable[[argparse.Namespace], ConvertSummary]] = {
    "waymo": waymo_main,
    "nuscenes": nuscenes_main,
}


class ConvertError(InputError, ValueError):
    """A conversion the arguments rule out (an unknown split, another dataset's conversion in ``--out``)."""


def main(argv: list[str] | None = None) -> int:
    """Runs the command; bad inputs raise ``InputError`` subclasses (``tools/create_data.py``'s boundary
    reports them: one line on stderr, exit status 2)."""
    parser = argparse.ArgumentParser(
        prog="create_data.py",
        description="Convert a dataset into pointformer's layout (points .npy, parquet frame tables, gt database).",
    )
    parser.add_argument("--dataset", required=True, choices=sorted(DATASETS))
    parser.add_argument("--root", required=True, help="input root (see pointformer/data/convert/)")
    parser.add_argument("--out", required=True, help="output root")
    parser.add_argument("--format", default="v1", choices=["v1", "v2"], help="Waymo: v1 TFRecord or v2 parquet")
    parser.add_argument("--version", default="v1.0-mini", help="nuScenes: table folder (default v1.0-mini)")
    parser.add_argument(
        "--splits",
        nargs="+",
        help="splits to convert (Waymo default: training validation; nuScenes: by version, e.g. mini_train "
        "mini_val, train val, or names in <root>/<version>/splits.json)",
    )
    parser.add_argument("--workers", type=int, default=min(8, os.cpu_count() or 1), help="processes (0: in-process)")
    parser.add_argument(
        "--sweeps",
        type=int,
        help="previous frames listed per frame (Waymo default 4; nuScenes: LIDAR_TOP sweeps before each "
        "keyframe, default 9 = OpenPCDet's 10 with the keyframe)",
    )
    parser.add_argument(
        "--gt-database-splits", nargs="*", help="splits with a gt database (default: training / train, mini_train)"
    )
    parser.add_argument("--gt-min-points", type=int, default=1)
    parser.add_argument("--on-error", choices=["raise", "skip"], default="raise", help="for a malformed sequence")
    parser.add_argument("--no-progress", action="store_true")
    add_debug_argument(parser)
    args = parser.parse_args(argv)
    try:
        summary = DATASETS[args.dataset](args)
    except ValueError as e:
        if isinstance(e, InputError):
            raise  # reported by the tool's boundary (pointformer.utils.cli)
        # The converters' own argument checks (an unknown split, a conversion of another dataset in --out).
        raise ConvertError(str(e)) from e
    print(summary)
    return 0
