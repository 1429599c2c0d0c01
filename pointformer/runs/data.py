"""Datasets and loaders of a config's splits."""

from __future__ import annotations

from pathlib import Path

import torch.utils.data

from pointformer.config import Config
from pointformer.data.collate import collate_frames
from pointformer.data.dataset import LayoutDataset
from pointformer.data.layout import frame_table_path
from pointformer.utils.errors import InputError


class DatasetMissingError(InputError, FileNotFoundError):
    """The converted split a run needs is not there; the message says how to make it."""


def _require_split(root: str, split: str) -> None:
    meta = Path(root) / "meta.json"
    table = frame_table_path(root, split)
    if meta.is_file() and table.is_file():
        return
    raise DatasetMissingError(
        f"no converted {split!r} split under {root!r} (looked for {meta} and {table}).\n"
        f"Convert real Waymo data:\n"
        f"  python tools/create_data.py --dataset waymo --root data/waymo --out {root} --splits {split}\n"
        f"or generate synthetic Waymo-format data and convert it:\n"
        f"  python tools/make_synthetic.py --format waymo-v1 --frames 20 --sequences 4 --split {split} "
        f"--seed 0 --out data/synthetic_waymo\n"
        f"  python tools/create_data.py --dataset waymo --root data/synthetic_waymo --out {root} --splits {split}\n"
        f"(or point the config at another root: --set dataset.root=PATH)"
    )


def build_dataset(cfg: Config, split: str, training: bool) -> LayoutDataset:
    """The ``LayoutDataset`` of ``split`` with the config's options (augmentation when
    ``training``; the config's seed seeds the per-frame generators)."""
    _require_split(cfg.data.root, split)
    options = dict(cfg.data.options)
    options.setdefault("seed", cfg.train.seed)
    return LayoutDataset(cfg.data.root, split, options, training=training)


class FrameSubset(torch.utils.data.Subset):
    """A ``Subset`` of a ``LayoutDataset`` that passes ``set_epoch`` on (the trainer calls it on the
    loader's dataset; a plain ``Subset`` would drop it, and every epoch would repeat epoch 0's
    augmentations and never reach ``disable_augmentation_after_epoch``)."""

    def set_epoch(self, epoch: int) -> None:
        self.dataset.set_epoch(epoch)

    def get(self, index: int, key: int | None = None):
        """``LayoutDataset.get`` of the subset's frame ``index`` (the draw key passes through)."""
        return self.dataset.get(self.indices[index], key=key)


def subset(dataset: LayoutDataset, max_frames: int | None) -> torch.utils.data.Dataset:
    """The first ``max_frames`` frames (all when None)."""
    if max_frames is None or max_frames >= len(dataset):
        return dataset
    return FrameSubset(dataset, range(max_frames))


def training_data(cfg: Config, dataset: LayoutDataset) -> torch.utils.data.Dataset:
    """The frames one training epoch draws from: the first ``train.max_frames`` frames, resampled
    class-balanced each epoch with ``train.cbgs`` (``pointformer.data.cbgs``, seeded by
    ``train.seed``)."""
    data = subset(dataset, cfg.train.max_frames)
    if not cfg.train.cbgs:
        return data
    from pointformer.data.cbgs import ClassBalancedDataset, frame_classes

    names = dataset.config.class_names
    classes = frame_classes([dataset.frames[i] for i in range(len(data))], names, dataset.config.min_points_in_box)
    return ClassBalancedDataset(data, classes, len(names), seed=cfg.train.seed)


def inference_loader(dataset: torch.utils.data.Dataset, batch_size: int, workers: int) -> torch.utils.data.DataLoader:
    """Frames in order, collated into ``FrameBatch``."""
    return torch.utils.data.DataLoader(
        dataset, batch_size=batch_size, shuffle=False, num_workers=workers, collate_fn=collate_frames
    )
