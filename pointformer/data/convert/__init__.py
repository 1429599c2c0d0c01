"""Dataset conversion into the layout of ``pointformer.data.layout`` (``tools/create_data.py``).

``sequences`` holds the machinery every dataset shares (format-neutral ``LabelledFrame``s per
``SequenceSource``, ``convert_sequences``: workers, resume, gt database, merged tables, meta); the
dataset modules adapt their format onto it (``waymo``: v1 TFRecord and v2 parquet; ``nuscenes``);
``cli`` is the command line over them. The parts import downward only: cli -> datasets -> sequences.
"""

from pointformer.data.convert.cli import DATASETS, main
from pointformer.data.convert.nuscenes import convert_nuscenes, discover_nuscenes
from pointformer.data.convert.sequences import (
    ConvertSummary,
    LabelledFrame,
    LabelledSweep,
    SequenceSource,
    convert_sequences,
)
from pointformer.data.convert.waymo import (
    WAYMO_CLASS_NAMES,
    WAYMO_POINT_FEATURES,
    WAYMO_SPLIT_ALIASES,
    convert_waymo,
    discover_waymo,
)

__all__ = [
    "DATASETS",
    "WAYMO_CLASS_NAMES",
    "WAYMO_POINT_FEATURES",
    "WAYMO_SPLIT_ALIASES",
    "ConvertSummary",
    "LabelledFrame",
    "LabelledSweep",
    "SequenceSource",
    "convert_nuscenes",
    "convert_sequences",
    "convert_waymo",
    "discover_nuscenes",
    "discover_waymo",
    "main",
]
