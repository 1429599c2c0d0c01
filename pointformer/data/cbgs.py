"""Class-balanced grouped sampling (CBGS; CenterPoint's "DS sampling", OpenPCDet's
``BALANCED_RESAMPLING``, mmdet3d's ``CBGSDataset``) as a dataset wrapper.

The resampling of Zhu et al. (2019): with ``n_c`` the number of frames holding class ``c``
(a frame counts once for each class it holds) and ``D = sum_c n_c``, class ``c``'s frames are
drawn ``int(n_c * (1/K) / (n_c / D))`` (about ``D / K``) times with replacement, ``K`` classes,
and the draws of all classes concatenated. Each class then has the same number of draws, and
frames with rare classes (bicycles, construction vehicles) are seen about as often as frames with
cars (a drawn frame shows its other classes too, so the classes' frame counts come closer
together without becoming equal).

Differences from the originals, on purpose:

* ``K`` counts the classes that occur in the frames (the originals divide by zero for an absent
  class; with every class present, as on nuScenes, this is the same);
* the draws are repeated every epoch from ``(seed, epoch)`` (the originals draw once per process
  from the global generator), so a run is reproducible, resumes identically and sees more of
  the data over its epochs; the length is the same every epoch;
* each draw's position is handed to the dataset as the key of its randomness (``LayoutDataset.get``),
  so that a frame drawn several times in one epoch gets different augmentations.

The training loader's ``DistributedSampler`` shuffles and shards the drawn list as it would the
frames.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch.utils.data

from pointformer.data.layout import FrameRecord

# Spawn key of the draws' seed sequence: keeps them apart from the per-frame generators that
# ``LayoutDataset`` seeds with ``[seed, epoch, index]``.
_CBGS_SPAWN_KEY = 0xCB65


def frame_classes(frames: Sequence[FrameRecord], class_names: Sequence[str], min_points: int = 0) -> list[np.ndarray]:
    """Per frame, the sorted distinct class indices (into ``class_names``) of its labelled boxes
    with at least ``min_points`` points (the dataset's ``min_points_in_box``: the boxes training
    sees before augmentation)."""
    index = {n: i for i, n in enumerate(class_names)}
    out = []
    for rec in frames:
        keep = rec.num_points_in_box >= min_points if min_points > 0 else np.ones(len(rec.names), bool)
        present = {index[n] for n in rec.names[keep].tolist() if n in index}
        out.append(np.array(sorted(present), np.int64))
    return out


def balanced_indices(classes: Sequence[np.ndarray], num_classes: int, rng: np.random.Generator) -> np.ndarray:
    """One resampling (see the module docstring): ``(L,)`` int64 frame indices, the draws of class
    0, then class 1, ... (a class without frames draws none).

    Args:
        classes: per frame, the class indices it holds (``frame_classes``).
        num_classes: number of class indices.
        rng: the generator of the draws.
    """
    per_class = _frames_per_class(classes, num_classes)
    draws = [
        rng.choice(np.asarray(frames, np.int64), n, replace=True)
        for frames, n in zip(per_class, class_draw_counts(classes, num_classes).tolist(), strict=True)
        if frames
    ]
    return np.concatenate(draws).astype(np.int64)


def _frames_per_class(classes: Sequence[np.ndarray], num_classes: int) -> list[list[int]]:
    per_class: list[list[int]] = [[] for _ in range(num_classes)]
    for frame, cs in enumerate(classes):
        for c in np.asarray(cs).tolist():
            per_class[c].append(frame)
    return per_class


def class_draw_counts(classes: Sequence[np.ndarray], num_classes: int) -> np.ndarray:
    """``(num_classes,)`` int64: draws of each class per epoch, ``int(n_c * (1/K) / (n_c / D))``
    (0 for a class without frames). Raises ValueError when no frame holds any class."""
    per_class = _frames_per_class(classes, num_classes)
    duplicated = sum(len(f) for f in per_class)
    present = sum(1 for f in per_class if f)
    if duplicated == 0:
        raise ValueError("class-balanced sampling needs frames with labelled boxes of the classes; none has one")
    frac = 1.0 / present
    # The originals' arithmetic, float rounding included.
    return np.array([int(len(f) * (frac / (len(f) / duplicated))) if f else 0 for f in per_class], np.int64)


class ClassBalancedDataset(torch.utils.data.Dataset):
    """``dataset`` resampled class-balanced, drawn again each epoch (see the module docstring).

    Args:
        dataset: a map-style dataset; with a ``get(index, key)`` method (``LayoutDataset``,
            ``runs.data.FrameSubset``) each draw's position is passed as ``key``; ``set_epoch`` is
            passed on.
        classes: per frame of ``dataset``, the class indices it holds (``frame_classes``).
        num_classes: number of class indices.
        seed: with the epoch, seeds the draws.
    """

    def __init__(self, dataset, classes: Sequence[np.ndarray], num_classes: int, seed: int = 0) -> None:
        if len(classes) != len(dataset):
            raise ValueError(f"{len(classes)} per-frame class lists for a dataset of {len(dataset)} frames")
        self.dataset = dataset
        self.classes = [np.asarray(c, np.int64) for c in classes]
        self.num_classes = int(num_classes)
        self.seed = int(seed)
        self.epoch = 0
        self.indices = self._draw(0)

    def _draw(self, epoch: int) -> np.ndarray:
        seq = np.random.SeedSequence([self.seed, int(epoch)], spawn_key=(_CBGS_SPAWN_KEY,))
        return balanced_indices(self.classes, self.num_classes, np.random.Generator(np.random.PCG64(seq)))

    def set_epoch(self, epoch: int) -> None:
        """Draws epoch ``epoch``'s frames and passes the epoch on to the wrapped dataset."""
        self.epoch = int(epoch)
        self.indices = self._draw(self.epoch)
        if hasattr(self.dataset, "set_epoch"):
            self.dataset.set_epoch(epoch)

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int):
        if not 0 <= i < len(self.indices):
            raise IndexError(f"draw {i} out of range for {len(self.indices)} draws")
        frame = int(self.indices[i])
        get = getattr(self.dataset, "get", None)
        return get(frame, key=i) if get is not None else self.dataset[frame]

    def class_frame_counts(self) -> np.ndarray:
        """``(num_classes,)`` int64: how many of this epoch's draws show each class (the quantity
        CBGS balances)."""
        counts = np.zeros(self.num_classes, np.int64)
        for frame in self.indices.tolist():
            counts[self.classes[frame]] += 1
        return counts
