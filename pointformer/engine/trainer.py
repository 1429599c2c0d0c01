"""The training loop: data, forward, summed losses, backward, clip, step; checkpoints, evaluation, logging.

Model contract: ``model(batch)`` returns a ``dict[str, Tensor]`` of already-weighted scalar losses in
``train()`` mode (the trainer sums them); batches have ``.to(device)`` and ``.batch_size`` (frames).
In a distributed run each loss must be a mean over this rank's frames: DDP averages gradients over ranks,
so R ranks with batch b then step exactly as one process with batch R * b (BatchNorm aside; use
``sync_batchnorm``).

A killed run resumes at the last completed epoch: the checkpoint holds the model, optimizer, schedule,
gradient scaler, epoch, iteration and every rank's random generators, and the loader's order depends on
the epoch alone (``build_train_loader``), so ``train(resume=True)`` continues exactly as the run would have.
A newest checkpoint that cannot be used (truncated, or of another model) is moved aside to
``<name>.damaged`` with a warning and the next older one is tried. Temporary files of checkpoints
killed mid-write are removed at the start of a run, and ``scalars.jsonl`` drops the rows past the
resumed iteration, so it holds each step once.
"""

from __future__ import annotations

import math
import os
import random
import time
import warnings
from collections.abc import Callable, Mapping
from contextlib import nullcontext
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from pointformer.engine import distributed as dist_utils
from pointformer.engine.checkpoint import (
    CheckpointError,
    checkpoint_path,
    list_checkpoints,
    load_checkpoint,
    model_state,
    prune_checkpoints,
    rng_state,
    save_checkpoint,
    set_rng_state,
    state_mismatch,
)
from pointformer.engine.log import ScalarLog, attach_log_file, get_logger, setup_logging
from pointformer.utils.atomic import remove_stale_temporaries
from pointformer.utils.threads import ThreadGovernor

AmpMode = Literal["auto", "bf16", "fp16", "off"]
# evaluate(model, epoch) -> named scalar metrics; the model is unwrapped and in eval mode, under no_grad.
EvaluateFn = Callable[[nn.Module, int], Mapping[str, float]]


def seed_everything(seed: int) -> None:
    """Seed Python's ``random``, numpy's global generator and torch (CPU and every CUDA device)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def resolve_amp(amp: AmpMode | str | None, device: torch.device) -> torch.dtype | None:
    """The autocast dtype for ``amp`` on ``device``: None means fp32.

    ``"auto"`` is bf16 on a CUDA device that supports it, fp16 on an older one, fp32 on CPU. Asking for
    bf16 or fp16 on CPU falls back to fp32 with a warning (a GPU config stays usable on a CPU machine).
    """
    if amp in (None, "off", False):
        return None
    if amp not in ("auto", "bf16", "fp16"):
        raise ValueError(f"amp must be 'auto', 'bf16', 'fp16' or 'off', got {amp!r}")
    if device.type != "cuda":
        if amp != "auto":
            warnings.warn(f"amp={amp!r} is for CUDA; training in fp32 on {device.type}", stacklevel=3)
        return None
    if amp == "auto":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.bfloat16 if amp == "bf16" else torch.float16


class Trainer:
    """Epoch-based training of a model that follows the contract in this module's docstring.

    Args:
        model: the plain model (not yet wrapped in DDP; the trainer moves it to ``device`` and wraps it when
            ``torch.distributed`` is initialised, converting BatchNorm to SyncBatchNorm if
            ``sync_batchnorm``). The optimizer must hold this model's parameters.
        optimizer: any torch optimizer.
        train_loader: yields batches; ideally from ``build_train_loader`` (reproducible, distributed).
        work_dir: checkpoints (``epoch_NNN.pth``), ``train.log``, ``scalars.jsonl`` and ``tensorboard/``.
        epochs: total number of epochs.
        scheduler: stepped once after every optimizer step (``OneCycleSchedule`` or a torch scheduler).
        grad_clip: max total gradient L2 norm, or None for no clipping.
        amp: ``"auto"`` (bf16 on CUDA when supported, else fp16 with loss scaling; fp32 on CPU),
            ``"bf16"``, ``"fp16"`` or ``"off"``.
        fp16_init_scale: the GradScaler's initial loss scale for fp16 (the scale then adapts).
        checkpoint_keep: how many epoch checkpoints to keep (None or 0: all).
        eval_interval: evaluate after every ``eval_interval`` epochs (0: only after the last epoch).
        evaluate: ``evaluate(model, epoch) -> {name: float}``, called on rank 0 only (other ranks wait),
            after the checkpoint; its metrics are logged as ``eval/<name>``. Random generators are restored
            afterwards, so evaluation does not change the training that follows.
        log_interval: log (console, TensorBoard, ``scalars.jsonl``) every this many iterations.
        seed: seeds every generator with ``seed + rank`` at the start of a fresh run (a resumed run
            restores the generators instead). Seed before building the model too (``seed_everything``).
        device: the training device; default ``cuda:LOCAL_RANK`` when CUDA is available, else CPU.
        progress: show a tqdm progress bar (rank 0) with loss, lr and frames/s.
        tensorboard: write TensorBoard scalars (rank 0).
        config: a plain dict stored in every checkpoint (e.g. the resolved YAML config).
        find_unused_parameters: passed to DDP.
    """

    def __init__(
        self,
        model: nn.Module,
        optimizer: torch.optim.Optimizer,
        train_loader: Any,
        work_dir: str | os.PathLike,
        epochs: int,
        scheduler: Any | None = None,
        grad_clip: float | None = None,
        amp: AmpMode = "auto",
        fp16_init_scale: float = 2.0**16,
        checkpoint_keep: int | None = None,
        eval_interval: int = 0,
        evaluate: EvaluateFn | None = None,
        log_interval: int = 50,
        seed: int | None = None,
        device: str | torch.device | None = None,
        progress: bool = True,
        tensorboard: bool = True,
        config: Mapping[str, Any] | None = None,
        sync_batchnorm: bool = False,
        find_unused_parameters: bool = False,
        threads: ThreadGovernor | None = None,
    ) -> None:
        if epochs < 1:
            raise ValueError(f"Trainer: epochs must be >= 1, got {epochs}")
        self.rank = dist_utils.get_rank()
        self.world_size = dist_utils.get_world_size()
        if device is None:
            local_rank = int(os.environ.get("LOCAL_RANK", "0"))
            device = torch.device("cuda", local_rank) if torch.cuda.is_available() else torch.device("cpu")
        self.device = torch.device(device)
        self.model = dist_utils.wrap_model(
            model, self.device, sync_batchnorm=sync_batchnorm, find_unused_parameters=find_unused_parameters
        )
        self.optimizer = optimizer
        self.scheduler = scheduler
        self.train_loader = train_loader
        self.work_dir = Path(work_dir)
        self.epochs = int(epochs)
        self.grad_clip = grad_clip
        self.amp_dtype = resolve_amp(amp, self.device)
        self.scaler = (
            torch.amp.GradScaler(self.device.type, init_scale=fp16_init_scale)
            if self.amp_dtype == torch.float16
            else None
        )
        self.checkpoint_keep = checkpoint_keep
        self.eval_interval = int(eval_interval)
        self.evaluate = evaluate
        self.log_interval = max(int(log_interval), 1)
        self.seed = seed
        self.progress = progress
        self.tensorboard = tensorboard
        self.config = dict(config) if config is not None else {}
        self.epoch = 0  # epochs completed
        self.iteration = 0  # optimizer steps taken
        self.threads = threads
        self.eval_history: list[dict[str, Any]] = []
        self.logger = get_logger()
        self._scalars: ScalarLog | None = None

    # ----------------------------------------------------------------------------------------------
    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def module(self) -> nn.Module:
        """The plain model (DDP and compile wrappers removed)."""
        return dist_utils.unwrap_model(self.model)

    def state_dict(self) -> dict[str, Any]:
        """The checkpoint (see ``pointformer.engine.checkpoint``); collective: every rank must call it."""
        return {
            "model": self.module.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict() if self.scheduler is not None else None,
            "scaler": self.scaler.state_dict() if self.scaler is not None else None,
            "epoch": self.epoch,
            "iteration": self.iteration,
            "rng": dist_utils.all_gather_object(rng_state()),
            "config": self.config,
        }

    def load_state_dict(self, state: Mapping[str, Any], path: str | os.PathLike = "<state>") -> None:
        """Restores a checkpoint; ``CheckpointError`` (model unchanged) when its weights do not fit."""
        weights = model_state(dict(state), path)
        problem = state_mismatch(self.module, weights)
        if problem is not None:
            raise CheckpointError(f"checkpoint {path}: the weights do not fit this model: {problem}")
        self.module.load_state_dict(weights)
        self.optimizer.load_state_dict(state["optimizer"])
        if self.scheduler is not None and state.get("scheduler") is not None:
            self.scheduler.load_state_dict(state["scheduler"])
        if self.scaler is not None and state.get("scaler") is not None:
            self.scaler.load_state_dict(state["scaler"])
        self.epoch = int(state["epoch"])
        self.iteration = int(state["iteration"])
        rng = state.get("rng") or []
        if len(rng) == self.world_size:
            set_rng_state(rng[self.rank])
        else:
            self.logger.warning(
                "checkpoint has random states for %d ranks, this run has %d: reseeding instead",
                len(rng),
                self.world_size,
            )
            seed_everything((self.seed or 0) + self.rank + 1000 * self.epoch)

    def save(self) -> Path | None:
        """Checkpoint the completed epochs (rank 0 writes; all ranks must call). Returns the path on rank 0."""
        state = self.state_dict()
        path = None
        if self.is_main:
            path = save_checkpoint(state, checkpoint_path(self.work_dir, self.epoch))
            prune_checkpoints(self.work_dir, self.checkpoint_keep)
            self.logger.info("saved checkpoint %s", path)
        dist_utils.barrier()
        return path

    def resume(self, path: str | os.PathLike | None = None) -> bool:
        """Load ``path``, or the newest usable checkpoint in ``work_dir``; False when there is none.

        Without ``path``, a checkpoint that cannot be used (not loadable, no model state, weights of
        another model, an optimizer state that does not fit) is skipped with a warning, moved aside to
        ``<name>.damaged`` (rank 0) so that later runs do not take it for the newest, and the next older
        one is tried. ``CheckpointError`` when checkpoints exist but none is usable (starting from scratch
        would overwrite them).
        """
        if path is not None:
            self._load_checkpoint_file(Path(path))
            return True
        found = list_checkpoints(self.work_dir)
        if not found:
            return False
        problems = []
        for _, candidate in reversed(found):
            try:
                self._load_checkpoint_file(candidate)
                return True
            except CheckpointError as e:
                problems.append(str(e))
                self.logger.warning("skipping checkpoint %s: %s", candidate.name, e)
                dist_utils.barrier()  # every rank has read it before rank 0 moves it
                if self.is_main:
                    candidate.replace(candidate.with_name(candidate.name + ".damaged"))
        raise CheckpointError(
            f"--resume: no usable checkpoint in {self.work_dir} ({len(found)} tried, each moved aside to "
            f"<name>.damaged): {problems[-1]}"
        )

    def _load_checkpoint_file(self, path: Path) -> None:
        state = load_checkpoint(path, map_location="cpu")
        try:
            self.load_state_dict(state, path)
        except (KeyError, TypeError, ValueError, RuntimeError) as e:
            if isinstance(e, CheckpointError):
                raise
            # The model fitted but the optimizer, schedule or counters did not (another optimizer config).
            raise CheckpointError(f"checkpoint {path}: its training state does not fit this run: {e}") from e
        self.logger.info("resumed from %s (epoch %d, iteration %d)", path, self.epoch, self.iteration)

    # ----------------------------------------------------------------------------------------------
    def train(self, resume: bool | str | os.PathLike = False) -> dict[str, float]:
        """Train until ``epochs`` epochs are complete; returns the last evaluation's metrics ({} if none).

        ``resume``: True continues from the latest checkpoint in ``work_dir`` (a fresh start when there is
        none); a path continues from that checkpoint; False starts fresh.
        """
        if not self.logger.handlers:  # the caller has not configured logging
            setup_logging(None, self.rank)
        log_file = attach_log_file(self.work_dir / "train.log") if self.is_main else None
        try:
            return self._train(resume)
        finally:
            if log_file is not None:
                self.logger.removeHandler(log_file)
                log_file.close()

    def _train(self, resume: bool | str | os.PathLike) -> dict[str, float]:
        resumed = False
        if self.is_main:
            remove_stale_temporaries(self.work_dir)
        if resume:
            resumed = self.resume(None if resume is True else resume)
            if not resumed:
                self.logger.info("no checkpoint in %s: starting from scratch", self.work_dir)
        if not resumed and self.seed is not None:
            seed_everything(self.seed + self.rank)
        if len(self.train_loader) == 0:
            raise ValueError("Trainer: the training loader is empty (dataset smaller than one batch?)")
        if self.is_main:
            # Rows past the checkpoint's iteration are from the killed part of the run (a fresh run
            # keeps none): the resumed run writes those steps again.
            self._scalars = ScalarLog(
                self.work_dir, tensorboard=self.tensorboard, keep_until=self.iteration if resumed else -1
            )
            amp = {None: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16 (loss scaling)"}[self.amp_dtype]
            self.logger.info(
                "training epochs %d-%d on %s x %d, %s, %d iterations per epoch",
                self.epoch + 1,
                self.epochs,
                self.device,
                self.world_size,
                amp,
                len(self.train_loader),
            )
        metrics: dict[str, float] = self.eval_history[-1]["metrics"] if self.eval_history else {}
        try:
            while self.epoch < self.epochs:
                self._train_epoch()
                self.epoch += 1
                self.save()
                last = self.epoch == self.epochs
                if self.evaluate is not None and (
                    last or (self.eval_interval > 0 and self.epoch % self.eval_interval == 0)
                ):
                    metrics = self._evaluate()
        finally:
            if self._scalars is not None:
                self._scalars.close()
                self._scalars = None
        return metrics

    def _evaluate(self) -> dict[str, float]:
        metrics: dict[str, float] = {}
        if self.is_main:
            saved = rng_state()
            module = self.module
            module.eval()
            start = time.perf_counter()
            try:
                with torch.no_grad():
                    metrics = {k: float(v) for k, v in self.evaluate(module, self.epoch).items()}
            finally:
                module.train()
                set_rng_state(saved)
            self.logger.info(
                "evaluation after epoch %d (%.1f s): %s",
                self.epoch,
                time.perf_counter() - start,
                ", ".join(f"{k} {v:.4f}" for k, v in metrics.items()),
            )
            self.eval_history.append({"epoch": self.epoch, "iteration": self.iteration, "metrics": metrics})
            if self._scalars is not None:
                self._scalars.log({f"eval/{k}": v for k, v in metrics.items()}, self.iteration, epoch=self.epoch)
        dist_utils.barrier()
        return metrics

    def _set_epoch(self, epoch: int) -> None:
        loader = self.train_loader
        for obj in (
            getattr(loader, "sampler", None),
            getattr(getattr(loader, "batch_sampler", None), "sampler", None),
            getattr(loader, "dataset", None),
        ):
            if obj is not None and hasattr(obj, "set_epoch"):
                obj.set_epoch(epoch)

    def _autocast(self):
        if self.amp_dtype is None:
            return nullcontext()
        return torch.autocast(self.device.type, dtype=self.amp_dtype)

    def _train_epoch(self) -> None:
        epoch = self.epoch
        self._set_epoch(epoch)
        self.model.train()
        n = len(self.train_loader)
        bar = tqdm(
            total=n,
            desc=f"epoch {epoch + 1}/{self.epochs}",
            disable=not (self.progress and self.is_main),
            dynamic_ncols=True,
            leave=False,
        )
        window_start, window_frames = time.perf_counter(), 0
        window_losses: dict[str, torch.Tensor] = {}
        window_steps = 0
        try:
            for i, batch in enumerate(self.train_loader):
                batch = batch.to(self.device)
                if self.threads is not None:
                    self.threads.update()  # between steps: this process's OpenMP workers are asleep
                losses, total, grad_norm = self._step(batch)
                window_frames += int(batch.batch_size)
                window_steps += 1
                for name, value in losses.items():
                    value = value.detach().float()
                    window_losses[name] = window_losses[name] + value if name in window_losses else value
                total_d = total.detach()
                window_losses["loss"] = window_losses["loss"] + total_d if "loss" in window_losses else total_d
                bar.update(1)
                if self.iteration % self.log_interval == 0 or i == n - 1:
                    self._log(window_losses, window_steps, window_frames, window_start, grad_norm, bar)
                    window_start, window_frames, window_losses, window_steps = time.perf_counter(), 0, {}, 0
        finally:
            bar.close()

    def _step(self, batch: Any) -> tuple[Mapping[str, torch.Tensor], torch.Tensor, torch.Tensor | None]:
        with self._autocast():
            losses = self.model(batch)
        if not isinstance(losses, Mapping) or not losses:
            raise TypeError(
                f"in train mode the model must return a non-empty dict of losses, got {type(losses).__name__}"
            )
        total = sum(v.float() for v in losses.values())
        self.optimizer.zero_grad(set_to_none=True)
        grad_norm = None
        if self.scaler is not None:
            self.scaler.scale(total).backward()
            if self.grad_clip is not None:
                self.scaler.unscale_(self.optimizer)  # clip the true gradients, not the scaled ones
                grad_norm = nn.utils.clip_grad_norm_(self.model.parameters(), self.grad_clip)
            self.scaler.step(self.optimizer)  # skipped when the gradients overflowed
            self.scaler.update()
        else:
            total.backward()
            if self.grad_clip is not None:
                grad_norm = nn.utils.clip_grad_norm_(self.model.parameters(), self.grad_clip)
            self.optimizer.step()
        if self.scheduler is not None:
            self.scheduler.step()
        self.iteration += 1
        return losses, total, grad_norm

    def _log(
        self,
        window_losses: dict[str, torch.Tensor],
        steps: int,
        frames: int,
        start: float,
        grad_norm: torch.Tensor | None,
        bar: tqdm,
    ) -> None:
        # Collective: every rank reaches this at the same iterations, and the losses are averaged over ranks.
        values = {k: v / steps for k, v in window_losses.items()}
        if grad_norm is not None:
            values["grad_norm"] = grad_norm.detach().float()
        values = {k: float(v) for k, v in dist_utils.all_reduce_mean(values).items()}
        if self.scaler is None and not math.isfinite(values["loss"]):
            raise FloatingPointError(
                f"non-finite loss {values['loss']} at epoch {self.epoch + 1}, iteration {self.iteration}: "
                "lower the learning rate, enable grad_clip, or check the data"
            )
        elapsed = max(time.perf_counter() - start, 1e-9)
        fps = frames * self.world_size / elapsed
        lr = float(self.optimizer.param_groups[0]["lr"])
        if not self.is_main:
            return
        bar.set_postfix(loss=f"{values['loss']:.4f}", lr=f"{lr:.3g}", fps=f"{fps:.1f}", refresh=False)
        scalars = {f"train/{k}": v for k, v in values.items()}
        scalars["train/lr"] = lr
        scalars["train/frames_per_s"] = fps
        if self.scaler is not None:
            scalars["train/loss_scale"] = float(self.scaler.get_scale())
        if self._scalars is not None:
            self._scalars.log(scalars, self.iteration, epoch=self.epoch + 1)
        terms = " ".join(f"{k} {v:.4f}" for k, v in values.items() if k != "loss")
        self.logger.info(
            "epoch %d iter %d loss %.4f (%s) lr %.3g %.1f frames/s",
            self.epoch + 1,
            self.iteration,
            values["loss"],
            terms,
            lr,
            fps,
        )
