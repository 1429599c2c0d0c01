"""Checkpoints of other toolkits (OpenPCDet and its DSVT / ScatterFormer forks, FlatFormer's mmdet3d
fork) converted into pointformer checkpoints, and back: explicit per-part name rules, the transforms
where conventions differ, spconv weight-layout detection, and errors listing every unused or unfilled
tensor. The command line is ``tools/convert_checkpoint.py`` (``pointformer.checkpoints.cli``)."""

from pointformer.checkpoints.convert import FORMATS, Converted, detector_pairs, to_official, to_pointformer
from pointformer.checkpoints.io import read_checkpoint
from pointformer.checkpoints.mapping import ConversionError

__all__ = [
    "FORMATS",
    "ConversionError",
    "Converted",
    "detector_pairs",
    "read_checkpoint",
    "to_official",
    "to_pointformer",
]
