"""Training a detector from a config: data, model, optimizer, schedule, the engine's ``Trainer``,
evaluation with the official metric (``tools/train.py``)."""

from __future__ import annotations

import logging
from pathlib import Path

import torch

from pointformer.config import Config
from pointformer.data.collate import collate_frames
from pointformer.engine import (
    OneCycleSchedule,
    Trainer,
    build_optimizer,
    build_train_loader,
    cleanup_distributed,
    init_distributed,
    seed_everything,
    setup_logging,
)
from pointformer.models import build_detector
from pointformer.runs.data import build_dataset, training_data
from pointformer.utils.threads import ThreadGovernor, requested_threads

log = logging.getLogger("pointformer.train")


def build_schedule(cfg: Config, optimizer: torch.optim.Optimizer, total_steps: int):
    """The ``schedule`` section: ``one_cycle`` (``OneCycleSchedule`` options) or ``constant``."""
    options = dict(cfg.schedule)
    kind = options.pop("type", "one_cycle")
    if kind == "constant":
        return None
    if kind != "one_cycle":
        raise ValueError(f"{cfg.path}: schedule.type must be one_cycle or constant, got {kind!r}")
    if "momentum_range" in options:
        options["momentum_range"] = tuple(options["momentum_range"])
    return OneCycleSchedule(optimizer, total_steps, **options)


def build_optimizer_from(cfg: Config, model: torch.nn.Module) -> torch.optim.Optimizer:
    """The ``optimizer`` section: ``type`` (adamw, adam, sgd) and ``build_optimizer`` options."""
    options = dict(cfg.optimizer)
    name = options.pop("type", "adamw")
    if "betas" in options:
        options["betas"] = tuple(options["betas"])
    return build_optimizer(model, name, **options)


def run_training(
    cfg: Config,
    work_dir: str | Path,
    resume: bool = False,
    device: str | None = None,
    progress: bool = True,
    threads: str | int | None = None,
) -> dict[str, float]:
    """Trains ``cfg``'s detector on its training split into ``work_dir`` (checkpoints, logs,
    TensorBoard) and evaluates it on the validation split every ``train.eval_interval`` epochs
    and at the end. Returns the last evaluation's scalars. Works under ``torchrun`` (one process
    per device, batch ``train.batch_size`` per process).

    ``threads``: on the CPU, the intra-op thread count: a number, or ``auto``/None (then
    ``POINTFORMER_THREADS`` / ``OMP_NUM_THREADS`` if set, else adaptive to the free CPUs;
    ``pointformer.utils.threads``)."""
    info = init_distributed(device)
    threads_before = torch.get_num_threads()  # the governor's count ends with the run
    try:
        work_dir = Path(work_dir)
        setup_logging(work_dir, info.rank)
        seed_everything(cfg.train.seed)
        dataset = build_dataset(cfg, cfg.data.train_split, training=True)
        train_data = training_data(cfg, dataset)
        if cfg.eval.metric == "nuscenes":
            from pointformer.runs.nuscenes_eval import nuscenes_source

            nuscenes_source(cfg, cfg.data.val_split)  # fail now, not after training, on a missing dataroot
        model = build_detector(cfg)
        if info.rank == 0:
            log.info("config %s, %d training frames%s, device %s, %d process(es)\n%s", cfg.path, len(train_data),
                     " (class-balanced draws per epoch)" if cfg.train.cbgs else "", info.device, info.world_size,
                     model.summary())  # fmt: skip
        loader = build_train_loader(train_data, cfg.train.batch_size, collate_frames, cfg.train.workers,
                                    seed=cfg.train.seed)  # fmt: skip
        if len(loader) == 0:
            raise ValueError(
                f"{len(train_data)} training frames give no full batch of {cfg.train.batch_size} per process "
                f"({info.world_size} processes)"
            )
        optimizer = build_optimizer_from(cfg, model)
        schedule = build_schedule(cfg, optimizer, cfg.train.epochs * len(loader))

        def evaluate(net: torch.nn.Module, epoch: int) -> dict[str, float]:
            from pointformer.runs.evaluate import evaluate_model

            result = evaluate_model(net, cfg, device=info.device, progress=progress)
            for line in result.lines:
                log.info(line)
            return result.scalars

        trainer = Trainer(
            model,
            optimizer,
            loader,
            work_dir,
            cfg.train.epochs,
            scheduler=schedule,
            grad_clip=cfg.train.grad_clip,
            amp=cfg.train.amp,
            checkpoint_keep=cfg.train.checkpoint_keep,
            eval_interval=cfg.train.eval_interval,
            evaluate=evaluate if cfg.eval.metric != "none" else None,
            log_interval=cfg.train.log_interval,
            seed=cfg.train.seed,
            device=info.device,
            progress=progress,
            config=dict(cfg.raw),
            sync_batchnorm=cfg.train.sync_bn,
            threads=ThreadGovernor(requested_threads(threads)) if info.device.type == "cpu" else None,
        )
        return trainer.train(resume=resume)
    finally:
        torch.set_num_threads(threads_before)
        cleanup_distributed()
