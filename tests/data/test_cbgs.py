"""Class-balanced grouped sampling: equal draws per class (the CBGS formula), rare classes seen
far more often, determinism per seed and epoch, draw keys, set_epoch, and the training loader."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch

from pointformer.data.cbgs import ClassBalancedDataset, balanced_indices, class_draw_counts, frame_classes
from pointformer.engine import build_train_loader

NAMES = ("car", "pedestrian", "bicycle", "bus")


def imbalanced_frames(n: int = 200, seed: int = 0):
    """Frame records with cars in every frame, pedestrians in half, bicycles in 1 of 20, buses in 1 of 50
    (and boxes of a class outside NAMES, and boxes without points)."""
    rng = np.random.default_rng(seed)
    frames = []
    for i in range(n):
        names = ["car"] * int(rng.integers(1, 4))
        names += ["pedestrian"] * (i % 2 == 0)
        names += ["bicycle"] * (i % 20 == 0)
        names += ["bus"] * (i % 50 == 7)
        names += ["tram"]
        points = np.full(len(names), 10, np.int32)
        if i % 50 == 7:
            points[names.index("bus")] = 0 if i == 7 else 10  # frame 7's bus has no points
        frames.append(SimpleNamespace(names=np.asarray(names, np.str_), num_points_in_box=points))
    return frames


class ToyDataset(torch.utils.data.Dataset):
    """Returns (frame, key); records set_epoch."""

    def __init__(self, n: int):
        self.n = n
        self.epochs = []

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        return self.get(i)

    def get(self, i, key=None):
        return (i, key)

    def set_epoch(self, epoch):
        self.epochs.append(epoch)


def test_frame_classes_counts_the_boxes_training_sees():
    frames = imbalanced_frames()
    classes = frame_classes(frames, NAMES, min_points=1)
    assert classes[0].tolist() == [0, 1, 2]  # car, pedestrian, bicycle; the tram is not a class
    assert classes[1].tolist() == [0]
    assert classes[7].tolist() == [0]  # its bus has no points
    assert classes[57].tolist() == [0, 3]
    assert frame_classes(frames, NAMES)[7].tolist() == [0, 3]  # min_points 0 counts it


def test_each_class_gets_the_same_number_of_draws():
    classes = frame_classes(imbalanced_frames(), NAMES, min_points=1)
    n = np.array([sum(c in cs for cs in classes) for c in range(4)])  # frames per class
    assert n.tolist() == [200, 100, 10, 3]
    counts = class_draw_counts(classes, 4)
    duplicated = n.sum()
    assert (np.abs(counts - duplicated / 4) <= 1).all()  # int(n_c * (1/K) / (n_c / D)) ~ D / K
    idx = balanced_indices(classes, 4, np.random.default_rng(0))
    assert len(idx) == counts.sum()
    # The draws come class by class, each block from the frames holding its class.
    start = 0
    for c, k in enumerate(counts.tolist()):
        block = idx[start : start + k]
        assert all(c in classes[f] for f in block.tolist())
        start += k


def test_rare_classes_are_seen_far_more_often():
    classes = frame_classes(imbalanced_frames(), NAMES, min_points=1)
    ds = ClassBalancedDataset(ToyDataset(200), classes, 4, seed=0)
    before = np.array([sum(c in cs for cs in classes) for c in range(4)]) / 200
    after = ds.class_frame_counts() / len(ds)
    assert after[3] > 10 * before[3] and after[2] > 3 * before[2]  # bus and bicycle frames
    assert after[0] == pytest.approx(1.0)  # every frame still has a car
    ratio = lambda f: f.max() / f.min()  # noqa: E731
    assert ratio(after) < ratio(before) / 10


def test_deterministic_per_seed_and_epoch():
    classes = frame_classes(imbalanced_frames(), NAMES, min_points=1)
    a = ClassBalancedDataset(ToyDataset(200), classes, 4, seed=3)
    b = ClassBalancedDataset(ToyDataset(200), classes, 4, seed=3)
    c = ClassBalancedDataset(ToyDataset(200), classes, 4, seed=4)
    assert np.array_equal(a.indices, b.indices) and not np.array_equal(a.indices, c.indices)
    first = a.indices.copy()
    a.set_epoch(1)
    assert len(a.indices) == len(first) and not np.array_equal(a.indices, first)  # new draws, same length
    b.set_epoch(5)
    b.set_epoch(1)
    assert np.array_equal(a.indices, b.indices)  # the epoch alone decides (a resumed run repeats it)
    a.set_epoch(0)
    assert np.array_equal(a.indices, first)
    assert a.dataset.epochs == [1, 0]  # passed on


def test_items_pass_the_draw_position_as_key():
    classes = [np.array([0]), np.array([1])] * 3
    ds = ClassBalancedDataset(ToyDataset(6), classes, 2, seed=0)
    for i in range(len(ds)):
        assert ds[i] == (int(ds.indices[i]), i)
    with pytest.raises(IndexError):
        ds[len(ds)]
    plain = ClassBalancedDataset([10, 11, 12, 13, 14, 15], classes, 2)  # no get(): plain indexing
    assert plain[0] == 10 + int(plain.indices[0])


def test_errors():
    with pytest.raises(ValueError, match="none has one"):
        ClassBalancedDataset(ToyDataset(2), [np.zeros(0, np.int64)] * 2, 3)
    with pytest.raises(ValueError, match="2 per-frame class lists"):
        ClassBalancedDataset(ToyDataset(3), [np.array([0])] * 2, 1)


def test_training_loader_over_the_draws():
    """The engine's loader (a DistributedSampler) shuffles the draws; set_epoch on the dataset and
    the sampler (what the trainer does) gives each epoch's draws in a per-epoch order."""
    classes = frame_classes(imbalanced_frames(40), NAMES, min_points=1)
    ds = ClassBalancedDataset(ToyDataset(40), classes, 4, seed=0)
    loader = build_train_loader(ds, 4, lambda items: items, 0, seed=0)
    seen = []
    for epoch in (0, 1):
        loader.sampler.set_epoch(epoch)
        loader.dataset.set_epoch(epoch)
        items = [it for batch in loader for it in batch]
        assert len(items) == len(ds) // 4 * 4
        assert len({k for _, k in items}) == len(items)  # each draw once
        assert all(ds.indices[k] == f for f, k in items)
        seen.append(items)
    assert seen[0] != seen[1]
