"""Name maps between pointformer's state dicts and another toolkit's: explicit per-part rules.

A rule is a regular expression over a key inside one pointformer part (``backbone3d``'s
``stages.0.1.norm.weight``) and the official key it becomes (``residual_norm_stage_0.1.weight``), with
the transform that turns the official tensor into pointformer's (and back). The pairs of a whole
detector are derived from the detector's own state dict, so every pointformer tensor has exactly one
official name or the conversion fails naming the key no rule covers.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from pointformer.checkpoints.spconv_layout import from_krsc, to_krsc
from pointformer.utils.errors import InputError


class ConversionError(InputError, ValueError):
    """A checkpoint cannot be converted: the message names the file, keys and what was expected."""


@dataclass(frozen=True)
class Transform:
    """How an official tensor becomes pointformer's (``to_pointformer``) and back (``to_official``).

    ``kind``:
      * ``"copy"``: the same tensor;
      * ``"rows"``: the output channels (dim 0) of a last conv reordered and signed: pointformer's
        channel ``i`` is ``sign[i] *`` official channel ``order[i]`` (weight rows and bias alike, so
        the conv's outputs are reordered and signed exactly). E.g. OpenPCDet's heading ``(cos, sin)``
        vs pointformer's ``(sin, cos)``;
      * ``"spconv"``: a sparse-conv weight, between the checkpoint's spconv layout and KRSC.
    """

    kind: str = "copy"
    order: tuple[int, ...] = ()
    sign: tuple[float, ...] = ()

    def to_pointformer(self, tensor: torch.Tensor, layout: str | None) -> torch.Tensor:
        if self.kind == "rows":
            self._check(tensor)
            signs = tensor.new_tensor(self.sign).reshape(-1, *([1] * (tensor.dim() - 1)))
            return (tensor[list(self.order)] * signs).contiguous()
        if self.kind == "spconv":
            return to_krsc(tensor, layout or "KRSC")
        return tensor

    def to_official(self, tensor: torch.Tensor, layout: str | None) -> torch.Tensor:
        if self.kind == "rows":
            self._check(tensor)
            signs = tensor.new_tensor(self.sign).reshape(-1, *([1] * (tensor.dim() - 1)))
            out = torch.empty_like(tensor)
            out[list(self.order)] = tensor * signs  # signs are +-1: their own inverse
            return out
        if self.kind == "spconv":
            return from_krsc(tensor, layout or "KRSC")
        return tensor

    def _check(self, tensor: torch.Tensor) -> None:
        if tensor.dim() < 1 or tensor.shape[0] != len(self.order):
            raise ConversionError(
                f"expected {len(self.order)} output channels to reorder, got shape {list(tensor.shape)}"
            )


def rows(order: tuple[int, ...], sign: tuple[float, ...] | None = None) -> Transform:
    """The ``"rows"`` transform (``sign`` default all +1)."""
    return Transform("rows", tuple(order), tuple(sign) if sign is not None else (1.0,) * len(order))


COPY = Transform("copy")
SWAP01 = rows((1, 0))
SPCONV = Transform("spconv")


@dataclass(frozen=True)
class Rule:
    """``pattern`` (a full match over a key inside the part) -> ``official`` (a ``re`` template or a
    function of the match), with ``transform``."""

    pattern: str
    official: str | Callable[[re.Match], str]
    transform: Transform = COPY

    def apply(self, key: str) -> str | None:
        match = re.fullmatch(self.pattern, key)
        if match is None:
            return None
        return self.official(match) if callable(self.official) else match.expand(self.official)


@dataclass(frozen=True)
class Pair:
    """One tensor: its pointformer key, its official key, and the transform between them."""

    pointformer: str
    official: str
    transform: Transform


def part_pairs(part: str, part_type: str, keys: Sequence[str], prefix: str, rules: Sequence[Rule]) -> list[Pair]:
    """The pairs of one pointformer part (``part``, e.g. ``"head"``, whose module is ``part_type``).

    ``keys`` are the part's state-dict keys (without ``part.``); each official key is ``prefix`` + the
    first matching rule's result. A key no rule matches is a ``ConversionError`` (a structure the
    converter does not know)."""
    pairs, missing = [], []
    for key in keys:
        for rule in rules:
            official = rule.apply(key)
            if official is not None:
                pairs.append(Pair(f"{part}.{key}", prefix + official, rule.transform))
                break
        else:
            missing.append(key)
    if missing:
        raise ConversionError(
            f"{part} ({part_type}): no conversion rule for {len(missing)} tensors: {_listing(missing)}"
        )
    return pairs


def _listing(items: Sequence[str], limit: int = 12) -> str:
    items = list(items)
    shown = ", ".join(items[:limit])
    return shown + (f", ... ({len(items) - limit} more)" if len(items) > limit else "")


listing = _listing
