"""Type and range of every scalar config value, checked before anything is built from it.

A wrong value otherwise fails late and far from its key (``optimizer.lr: fast`` inside torch,
``train.epochs: two`` as "'<' not supported between 'str' and 'int'") or not at all
(``train.epochs: 1.7`` trained one epoch). ``section_problem`` checks a section's mapping against
its table here and says what is wrong, naming the dotted key, the expected type and range, and the
value given (``pointformer.config`` raises it as a ``ConfigError`` with the file). The tables cover
the typed sections (``train``, ``eval``), the optimizer and the schedule; model parts are checked
against their constructors' keyword arguments at build time.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

__all__ = [
    "DATASET_VALUES",
    "EVAL_VALUES",
    "OPTIMIZER_VALUES",
    "SCHEDULE_VALUES",
    "TRAIN_VALUES",
    "Value",
    "positive",
    "positive_pair",
    "section_problem",
]


@dataclass(frozen=True)
class Value:
    """What one config value may be.

    Attributes:
        kind: ``int`` (not a bool, not a float), ``float`` (an int or float, finite), ``bool`` or ``str``.
        low, high: inclusive bounds (None: unbounded); ``low_open`` / ``high_open`` make them exclusive.
        optional: None is allowed too.
        length: the value is a list of exactly ``length`` such items.
        choices: the allowed strings (``kind`` str).
    """

    kind: type
    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False
    optional: bool = False
    length: int | None = None
    choices: tuple[str, ...] = ()

    def describe(self) -> str:
        if self.kind is bool:
            text = "true or false"
        elif self.kind is str:
            text = "one of " + ", ".join(self.choices) if self.choices else "a string"
        else:
            text = "an integer" if self.kind is int else "a finite number"
            if self.low is not None and self.high is not None:
                text += (
                    f" in {'(' if self.low_open else '['}{self.low:g}, {self.high:g}{')' if self.high_open else ']'}"
                )
            elif self.low is not None:
                text += f" {'>' if self.low_open else '>='} {self.low:g}"
        if self.length is not None:
            text = f"a list of {self.length} items, each {text}"
        return text + (" (or null)" if self.optional else "")

    def _item_ok(self, v: Any) -> bool:
        if self.kind is bool:
            return isinstance(v, bool)
        if self.kind is str:
            return isinstance(v, str) and (not self.choices or v in self.choices)
        if isinstance(v, bool) or not isinstance(v, int | float):
            return False
        if self.kind is int and not isinstance(v, int):
            return False
        if not math.isfinite(v):
            return False
        if self.low is not None and (v <= self.low if self.low_open else v < self.low):
            return False
        return not (self.high is not None and (v >= self.high if self.high_open else v > self.high))

    def ok(self, value: Any) -> bool:
        if value is None:
            return self.optional
        if self.length is not None:
            return (
                isinstance(value, list | tuple) and len(value) == self.length and all(self._item_ok(v) for v in value)
            )
        return self._item_ok(value)


def positive(optional: bool = False) -> Value:
    """A finite number > 0."""
    return Value(float, low=0.0, low_open=True, optional=optional)


def positive_pair(optional: bool = False) -> Value:
    """A list of two finite numbers > 0."""
    return Value(float, low=0.0, low_open=True, length=2, optional=optional)


TRAIN_VALUES: dict[str, Value] = {
    "epochs": Value(int, low=1),
    "batch_size": Value(int, low=1),
    "workers": Value(int, low=0),
    "grad_clip": positive(optional=True),
    "amp": Value(str, choices=("auto", "bf16", "fp16", "off")),
    "seed": Value(int, low=0),
    "checkpoint_keep": Value(int, low=1),
    "eval_interval": Value(int, low=0),
    "log_interval": Value(int, low=1),
    "sync_bn": Value(bool),
    "max_frames": Value(int, low=1, optional=True),
    "cbgs": Value(bool),
}
EVAL_VALUES: dict[str, Value] = {
    "batch_size": Value(int, low=1),
    "max_frames": Value(int, low=1, optional=True),
    "metric": Value(str, choices=("waymo", "nuscenes", "none")),
}
# The scalar ``dataset`` options (``pointformer.data.dataset.DatasetConfig``; the others, class and
# feature names, transforms and gt sampling, are checked by DatasetConfig itself).
DATASET_VALUES: dict[str, Value] = {
    "num_sweeps": Value(int, low=0),
    "close_point_radius": Value(float, low=0.0),
    "close_points_in_frame": Value(bool),
    "min_points_in_box": Value(int, low=0),
    "flip_probability": Value(float, low=0.0, high=1.0),
    "rotation_range": Value(float, length=2, optional=True),
    "scaling_range": positive_pair(optional=True),
    "translation_std": Value(float, low=0.0, length=3, optional=True),
    "shuffle_points": Value(bool),
    "disable_augmentation_after_epoch": Value(int, low=0, optional=True),
    "seed": Value(int, low=0),
}
# ``pointformer.engine.optim.build_optimizer``'s options.
OPTIMIZER_VALUES: dict[str, Value] = {
    "type": Value(str, choices=("adamw", "adam", "sgd")),
    "lr": positive(),
    "weight_decay": Value(float, low=0.0),
    "betas": Value(float, low=0.0, high=1.0, high_open=True, length=2),
    "momentum": Value(float, low=0.0, high=1.0),
    "eps": positive(),
    "no_decay_norm": Value(bool),
    "no_decay_bias": Value(bool),
}
# ``schedule.type`` and ``pointformer.engine.optim.OneCycleSchedule``'s options.
SCHEDULE_VALUES: dict[str, Value] = {
    "type": Value(str, choices=("one_cycle", "constant")),
    "peak_lr": positive(optional=True),
    "div_factor": positive(),
    "final_div_factor": positive(),
    "pct_start": Value(float, low=0.0, high=1.0, high_open=True),
    "momentum_range": Value(float, low=0.0, high=1.0, length=2, optional=True),
}


def section_problem(
    section: Mapping[str, Any], values: Mapping[str, Value], name: str, partial: bool = False
) -> str | None:
    """What is wrong with the config section ``name`` against ``values`` (None: nothing): unknown keys
    (unless ``partial``: then keys without an entry are left to their consumer), or the first value of
    the wrong type or range, as ``name.key must be <type and range>, got <value>``."""
    unknown = sorted(set(section) - set(values))
    if unknown and not partial:
        return f"{name}: unknown keys {unknown}; known: {sorted(values)}"
    for key, value in section.items():
        spec = values.get(key)
        if spec is not None and not spec.ok(value):
            return f"{name}.{key} must be {spec.describe()}, got {value!r} ({type(value).__name__})"
    return None
