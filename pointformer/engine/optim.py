"""Optimizers with per-parameter weight decay, and the one-cycle learning-rate schedule.

Two published recipes are the same schedule with different arguments (see ``OneCycleSchedule``):

- FlatFormer / SST (mmcv ``policy="cyclic"``, ``target_ratio=(100, 1e-3)``, ``step_ratio_up=0.1``): AdamW with
  base lr 1e-5 rising to 1e-3 over the first 10 % of the iterations, then cosine annealing to 1e-8;
  ``OneCycleSchedule.from_mmcv_cyclic(opt, total, base_lr=1e-5, target_ratio=(100, 1e-3), step_ratio_up=0.1)``.
- OpenPCDet ``adam_onecycle`` (DSVT: lr 0.003 or 0.005, ``DIV_FACTOR`` 10, ``PCT_START`` 0.4, ``MOMS``
  (0.95, 0.85)): Adam with decoupled weight decay, betas (0.9, 0.99), lr from lr/10 up to lr, then down to
  lr/10/1e4, with beta1 cycled 0.95 -> 0.85 -> 0.95; ``OneCycleSchedule.openpcdet(opt, total, ...)``.

Both phases use cosine interpolation (mmcv's default ``anneal_strategy="cos"`` and OpenPCDet's
``annealing_cos``), and the schedule is indexed by the number of optimizer steps taken so far.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

# Normalisation layers: their affine parameters get no weight decay (shrinking a norm's scale towards 0
# is not regularisation, it changes the layer's output scale).
_NORM_TYPES: tuple[type[nn.Module], ...] = (
    nn.modules.batchnorm._NormBase,  # BatchNorm{1,2,3}d, SyncBatchNorm, InstanceNorm*
    nn.LayerNorm,
    nn.GroupNorm,
    nn.LocalResponseNorm,
    nn.RMSNorm,
)


def parameter_groups(
    model: nn.Module, weight_decay: float, no_decay_norm: bool = True, no_decay_bias: bool = True
) -> list[dict[str, Any]]:
    """Split the trainable parameters into a decayed group and a ``weight_decay=0`` group.

    A parameter goes to the no-decay group when it belongs to a normalisation layer (``no_decay_norm``;
    the official FlatFormer config matches names containing ``norm``, here the layer type decides) or is
    a bias (``no_decay_bias``: any parameter whose name ends in ``bias``). Empty groups are dropped.
    Parameters shared between modules appear once.
    """
    decay, no_decay, seen = [], [], set()
    for module in model.modules():
        is_norm = isinstance(module, _NORM_TYPES)
        for name, param in module.named_parameters(recurse=False):
            if not param.requires_grad or id(param) in seen:
                continue
            seen.add(id(param))
            if (no_decay_norm and is_norm) or (no_decay_bias and name.endswith("bias")):
                no_decay.append(param)
            else:
                decay.append(param)
    groups = [
        {"params": decay, "weight_decay": weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    return [g for g in groups if g["params"]]


def build_optimizer(
    model: nn.Module,
    name: str = "adamw",
    lr: float = 1e-3,
    weight_decay: float = 0.0,
    betas: Sequence[float] = (0.9, 0.999),
    momentum: float = 0.9,
    eps: float = 1e-8,
    no_decay_norm: bool = True,
    no_decay_bias: bool = True,
) -> torch.optim.Optimizer:
    """An optimizer over ``model``'s trainable parameters with weight decay split by ``parameter_groups``.

    Args:
        name: ``"adamw"`` (decoupled weight decay), ``"adam"`` (L2 added to the gradient) or ``"sgd"``
            (with ``momentum``, Nesterov off).
        lr: the learning rate (with ``OneCycleSchedule`` the schedule overwrites it from the first step).
        weight_decay: the decay of the decayed group.
        betas: Adam's (beta1, beta2); ignored by SGD.
        momentum: SGD's momentum; ignored by Adam.
        eps: Adam's epsilon.
    """
    groups = parameter_groups(model, weight_decay, no_decay_norm=no_decay_norm, no_decay_bias=no_decay_bias)
    if not groups:
        raise ValueError("build_optimizer: the model has no trainable parameters")
    key = name.lower()
    if key == "adamw":
        return torch.optim.AdamW(groups, lr=lr, betas=tuple(betas), eps=eps)
    if key == "adam":
        return torch.optim.Adam(groups, lr=lr, betas=tuple(betas), eps=eps)
    if key == "sgd":
        return torch.optim.SGD(groups, lr=lr, momentum=momentum)
    raise ValueError(f"build_optimizer: unknown optimizer {name!r}; expected 'adamw', 'adam' or 'sgd'")


def _cos_interp(start: float, end: float, fraction: float) -> float:
    """Cosine interpolation: ``start`` at fraction 0, ``end`` at fraction 1, flat at both ends."""
    return end + (start - end) / 2.0 * (math.cos(math.pi * fraction) + 1.0)


class OneCycleSchedule:
    """One cosine cycle of the learning rate (and optionally the momentum) over the whole training, per step.

    With ``T = total_steps`` and ``U = int(pct_start * T)`` (the up-phase length), at step ``t`` (optimizer
    steps taken so far, 0 for the first step):

    - ``t < U``:  lr = cos_interp(peak / div_factor, peak, t / U)
    - ``t >= U``: lr = cos_interp(peak, peak / div_factor / final_div_factor, (t - U) / (T - U))

    With ``momentum_range=(m_max, m_min)`` the momentum (SGD's ``momentum`` or Adam's beta1) moves the
    other way: m_max -> m_min in the up phase, back to m_max in the down phase (OpenPCDet's ``MOMS``).

    Each parameter group keeps its own peak (the group's ``lr`` when the schedule is built, unless
    ``peak_lr`` is given), so groups with different learning rates keep their ratio.

    Call ``step()`` once after every ``optimizer.step()``; the constructor already sets the lr of step 0.
    """

    def __init__(
        self,
        optimizer: torch.optim.Optimizer,
        total_steps: int,
        peak_lr: float | Sequence[float] | None = None,
        div_factor: float = 100.0,
        final_div_factor: float = 1e3,
        pct_start: float = 0.1,
        momentum_range: tuple[float, float] | None = None,
    ) -> None:
        if total_steps < 1:
            raise ValueError(f"OneCycleSchedule: total_steps must be >= 1, got {total_steps}")
        if not 0.0 <= pct_start < 1.0:
            raise ValueError(f"OneCycleSchedule: pct_start must be in [0, 1), got {pct_start}")
        if div_factor <= 0 or final_div_factor <= 0:
            raise ValueError("OneCycleSchedule: div_factor and final_div_factor must be positive")
        self.optimizer = optimizer
        self.total_steps = int(total_steps)
        self.div_factor = float(div_factor)
        self.final_div_factor = float(final_div_factor)
        self.pct_start = float(pct_start)
        self.up_steps = int(pct_start * total_steps)
        self.momentum_range = tuple(momentum_range) if momentum_range is not None else None
        n = len(optimizer.param_groups)
        if peak_lr is None:
            self.peak_lrs = [float(g["lr"]) for g in optimizer.param_groups]
        elif isinstance(peak_lr, int | float):
            self.peak_lrs = [float(peak_lr)] * n
        else:
            self.peak_lrs = [float(v) for v in peak_lr]
            if len(self.peak_lrs) != n:
                raise ValueError(f"OneCycleSchedule: {len(self.peak_lrs)} peak lrs for {n} parameter groups")
        if self.momentum_range is not None:
            group = optimizer.param_groups[0]
            if "betas" not in group and "momentum" not in group:
                raise ValueError("OneCycleSchedule: momentum_range needs an optimizer with betas or momentum")
        self.last_step = 0
        self._apply()

    @classmethod
    def from_mmcv_cyclic(
        cls,
        optimizer: torch.optim.Optimizer,
        total_steps: int,
        base_lr: float,
        target_ratio: tuple[float, float] = (10.0, 1e-4),
        step_ratio_up: float = 0.4,
    ) -> OneCycleSchedule:
        """mmcv's ``CyclicLrUpdaterHook`` with ``cyclic_times=1``: base_lr -> base_lr * r0 -> base_lr * r1.

        FlatFormer: ``base_lr=1e-5, target_ratio=(100, 1e-3), step_ratio_up=0.1`` (1e-5 -> 1e-3 -> 1e-8).
        """
        up, final = target_ratio
        return cls(
            optimizer,
            total_steps,
            peak_lr=base_lr * up,
            div_factor=up,
            final_div_factor=1.0 / final,
            pct_start=step_ratio_up,
        )

    @classmethod
    def openpcdet(
        cls,
        optimizer: torch.optim.Optimizer,
        total_steps: int,
        lr: float,
        div_factor: float = 10.0,
        pct_start: float = 0.4,
        moms: tuple[float, float] = (0.95, 0.85),
    ) -> OneCycleSchedule:
        """OpenPCDet's ``adam_onecycle`` schedule: lr/div -> lr -> lr/div/1e4, beta1 cycled over ``moms``."""
        return cls(
            optimizer,
            total_steps,
            peak_lr=lr,
            div_factor=div_factor,
            final_div_factor=1e4,
            pct_start=pct_start,
            momentum_range=moms,
        )

    def fraction(self, step: int) -> tuple[bool, float]:
        """(in the up phase, fraction of that phase done) at ``step``, clamped to the end of the cycle."""
        if step < self.up_steps:
            return True, step / self.up_steps
        down = max(self.total_steps - self.up_steps, 1)
        return False, min(max(step - self.up_steps, 0) / down, 1.0)

    def lr_at(self, step: int) -> list[float]:
        """The learning rate of every parameter group at ``step``."""
        up, frac = self.fraction(step)
        lrs = []
        for peak in self.peak_lrs:
            low = peak / self.div_factor
            lrs.append(_cos_interp(low, peak, frac) if up else _cos_interp(peak, low / self.final_div_factor, frac))
        return lrs

    def momentum_at(self, step: int) -> float | None:
        """The momentum (beta1) at ``step``, or None without ``momentum_range``."""
        if self.momentum_range is None:
            return None
        high, low = self.momentum_range
        up, frac = self.fraction(step)
        return _cos_interp(high, low, frac) if up else _cos_interp(low, high, frac)

    def _apply(self) -> None:
        momentum = self.momentum_at(self.last_step)
        for group, lr in zip(self.optimizer.param_groups, self.lr_at(self.last_step), strict=True):
            group["lr"] = lr
            if momentum is not None:
                if "betas" in group:
                    group["betas"] = (momentum, group["betas"][1])
                else:
                    group["momentum"] = momentum

    def step(self) -> None:
        """Advance one optimizer step and set the next step's lr (and momentum)."""
        self.last_step += 1
        self._apply()

    def get_last_lr(self) -> list[float]:
        """The learning rates currently set (as torch's schedulers name it)."""
        return [float(g["lr"]) for g in self.optimizer.param_groups]

    def state_dict(self) -> dict[str, Any]:
        return {
            "last_step": self.last_step,
            "total_steps": self.total_steps,
            "peak_lrs": list(self.peak_lrs),
            "div_factor": self.div_factor,
            "final_div_factor": self.final_div_factor,
            "pct_start": self.pct_start,
            "momentum_range": self.momentum_range,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore the position in the cycle and set the optimizer's lr to match.

        The cycle itself (total steps, peaks, factors) stays the one this schedule was built with,
        i.e. the current run's: a run resumed with more epochs stretches the remaining cycle over
        them instead of training on at the old cycle's final lr. A changed cycle is warned about;
        a killed run resumed with the same settings continues exactly.
        """
        saved = {
            "total_steps": int(state["total_steps"]),
            "peak_lrs": [float(v) for v in state["peak_lrs"]],
            "div_factor": float(state["div_factor"]),
            "final_div_factor": float(state["final_div_factor"]),
            "pct_start": float(state["pct_start"]),
            "momentum_range": tuple(state["momentum_range"]) if state["momentum_range"] is not None else None,
        }
        current = {k: getattr(self, k) for k in saved}
        current["peak_lrs"] = list(self.peak_lrs)
        changed = {k: (saved[k], current[k]) for k in saved if saved[k] != current[k]}
        if changed:
            import warnings

            details = ", ".join(f"{k} {old} -> {new}" for k, (old, new) in changed.items())
            warnings.warn(f"OneCycleSchedule: resuming into a different cycle ({details}); the current one is "
                          "followed from the saved step", stacklevel=2)  # fmt: skip
        self.last_step = min(int(state["last_step"]), self.total_steps)
        self._apply()
