"""A dataset adapter whose sequences take long to read (for the kill test): importable by the
converter's worker processes through PYTHONPATH, and runnable as the command that gets killed.

python slow_source.py OUT_DIR WORKERS
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator

import numpy as np

from pointformer.data.convert import LabelledFrame, SequenceSource, convert_sequences


def read_slowly(source: SequenceSource) -> Iterator[LabelledFrame]:
    """One frame per second, ``source.args[0]`` frames, each writing a little memory."""
    (frames,) = source.args
    for i in range(frames):
        time.sleep(1.0)
        yield LabelledFrame(
            timestamp_micros=i,
            pose=np.eye(4),
            points=np.zeros((10, 5), np.float32),
            boxes=np.zeros((0, 9), np.float32),
            names=np.zeros(0, np.str_),
            difficulty=np.zeros(0, np.int8),
            tracking_difficulty=np.zeros(0, np.int8),
            num_points_in_box=np.zeros(0, np.int32),
            object_ids=np.zeros(0, np.str_),
            speed_global=np.zeros((0, 3), np.float32),
            accel_global=np.zeros((0, 3), np.float32),
        )


def main(out: str, workers: int) -> None:
    sources = [
        SequenceSource("training", f"slow{i}", "slow_source:read_slowly", __file__, (600,), fingerprint=f"slow{i}")
        for i in range(workers)
    ]
    convert_sequences(sources, out, dataset="slow", source_format="test", point_features="xyzie",
                      class_names=[], workers=workers, progress=False)  # fmt: skip


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]))
