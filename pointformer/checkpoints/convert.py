"""Official state dict <-> pointformer state dict, for a detector built from a pointformer config.

``to_pointformer`` maps every official tensor to its pointformer name by the format's per-part rules
(``openpcdet``, ``mmdet3d``), transforms it where the conventions differ, checks its shape, and fails
listing every official tensor left unused and every pointformer tensor left unfilled (the format's
documented ignorable keys aside; options allow a documented subset). ``to_official`` is the reverse.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from types import ModuleType

import torch
from torch import nn

from pointformer.checkpoints import mmdet3d, openpcdet
from pointformer.checkpoints.mapping import SPCONV, ConversionError, Pair, listing, part_pairs
from pointformer.checkpoints.spconv_layout import LAYOUTS, SPCONV_VERSIONS, LayoutError, detect_layout

_FORMAT_MODULES = {"openpcdet": openpcdet, "mmdet3d": mmdet3d}
FORMATS = tuple(_FORMAT_MODULES)
PARTS = ("voxel_encoder", "backbone3d", "bev", "backbone2d", "neck", "head")


def format_module(fmt: str) -> ModuleType:
    """The module holding ``fmt``'s names (``pointformer.checkpoints.<fmt>``)."""
    if fmt not in _FORMAT_MODULES:
        raise ConversionError(f"unknown checkpoint format {fmt!r}; known: {', '.join(FORMATS)}")
    return _FORMAT_MODULES[fmt]


def detector_pairs(detector: nn.Module, fmt: str) -> list[Pair]:
    """Every tensor of ``detector``'s state dict with its official name in ``fmt``."""
    module = format_module(fmt)
    state = detector.state_dict()
    pairs: list[Pair] = []
    for part in PARTS:
        sub = getattr(detector, part)
        keys = [k[len(part) + 1 :] for k in state if k.startswith(part + ".")]
        try:
            rules = module.rules_for(part, sub)
        except KeyError:
            if not keys:
                continue
            raise ConversionError(
                f"{part} ({type(sub).__name__}) has no {fmt} counterpart in the converter; formats and the parts "
                f"they cover are listed in the README's 'Checkpoints from other toolkits'"
            ) from None
        found = part_pairs(part, type(sub).__name__, keys, module.PART_PREFIX[part], rules)
        # Sparse-conv weights (5-D) carry the checkpoint's spconv layout.
        pairs += [Pair(p.pointformer, p.official, SPCONV) if state[p.pointformer].dim() == 5 else p for p in found]
    covered = {p.pointformer for p in pairs}
    stray = [k for k in state if k not in covered]
    if stray:
        raise ConversionError(f"tensors outside the detector's parts: {listing(stray)}")
    officials = [p.official for p in pairs]
    if len(set(officials)) != len(officials):
        dup = sorted({o for o in officials if officials.count(o) > 1})
        raise ConversionError(f"two pointformer tensors map to the same {fmt} name: {listing(dup)}")
    return pairs


@dataclass
class Converted:
    """A conversion's result: the state dict and what was decided on the way."""

    state: dict[str, torch.Tensor]
    spconv_layout: str | None = None
    ignored: list[str] = field(default_factory=list)  # official tensors consumed without use (documented)
    unfilled: list[str] = field(default_factory=list)  # pointformer tensors left at their init (allowed)


def _in_parts(key: str, parts: Iterable[str]) -> bool:
    return any(key == p or key.startswith(p + ".") for p in parts)


def to_pointformer(
    official: Mapping[str, torch.Tensor],
    detector: nn.Module,
    fmt: str,
    spconv_layout: str = "auto",
    allow_unfilled: Sequence[str] = (),
    ignore_unused: Sequence[str] = (),
    source: str = "the checkpoint",
) -> Converted:
    """``official`` (a ``fmt`` state dict) as a state dict of ``detector``.

    Args:
        official: the official tensors by name.
        detector: a pointformer detector built from the config that corresponds to the official one.
        fmt: ``"openpcdet"`` or ``"mmdet3d"``.
        spconv_layout: ``"auto"`` (decided from all sparse-conv weights together) or one of
            ``KRSC``/``RSKC``/``RSCK`` (see ``spconv_layout``).
        allow_unfilled: pointformer parts (``"head"``, ``"backbone2d"``, ...) that may be missing
            from the official file (e.g. a backbone-only checkpoint for fine-tuning); their tensors
            keep ``detector``'s values and are listed in ``Converted.unfilled``.
        ignore_unused: official key prefixes that may be left unused (e.g. a second stage
            pointformer has no counterpart of), listed in ``Converted.ignored``.
        source: the file's name, for the messages.

    Raises ``ConversionError`` listing unused official tensors, unfilled pointformer tensors and
    shape mismatches (official shape, transformed shape, expected shape).
    """
    module = format_module(fmt)
    unknown = sorted(set(allow_unfilled) - set(PARTS))
    if unknown:
        raise ConversionError(f"allow_unfilled: unknown parts {unknown}; parts: {', '.join(PARTS)}")
    pairs = detector_pairs(detector, fmt)
    target = detector.state_dict()
    layout = _layout(official, pairs, target, spconv_layout, source)
    out: dict[str, torch.Tensor] = {}
    used: set[str] = set()
    unfilled, shapes = [], []
    for pair in pairs:
        expected = target[pair.pointformer]
        if pair.official not in official:
            if pair.pointformer.endswith("num_batches_tracked"):
                # Older PyTorch wrote no BatchNorm step counter; it changes no output (momentum is set).
                out[pair.pointformer] = expected.clone()
                continue
            unfilled.append(pair)
            continue
        used.add(pair.official)
        tensor = official[pair.official]
        try:
            value = pair.transform.to_pointformer(tensor, layout)
        except (ConversionError, RuntimeError) as e:
            shapes.append(f"{pair.official} {list(tensor.shape)}: {e}")
            continue
        if tuple(value.shape) != tuple(expected.shape):
            note = f" (as {list(value.shape)})" if pair.transform is SPCONV else ""
            shapes.append(
                f"{pair.official} {list(tensor.shape)}{note} -> {pair.pointformer} expects {list(expected.shape)}"
            )
            continue
        out[pair.pointformer] = value.to(expected.dtype)  # e.g. fp16 checkpoints into a float32 model
    ignorable = tuple(module.IGNORED_KEYS)
    ignored = [k for k in official if k not in used and (k in ignorable or k.startswith(tuple(ignore_unused)))]
    unused = [k for k in official if k not in used and k not in ignored]
    allowed = [p for p in unfilled if _in_parts(p.pointformer, allow_unfilled)]
    missing = [p for p in unfilled if p not in allowed]
    problems = []
    if shapes:
        problems.append(f"{len(shapes)} tensors have the wrong shape: " + "; ".join(shapes[:12]))
    if unused:
        problems.append(f"{len(unused)} {fmt} tensors are not used by the pointformer model: {listing(unused)}")
    if missing:
        problems.append(
            f"{len(missing)} pointformer tensors are not filled (their {fmt} names are absent): "
            + listing([f"{p.pointformer} <- {p.official}" for p in missing])
        )
    if problems:
        hint = (
            " Check that the config corresponds to the official one that trained the checkpoint "
            "(README: 'Checkpoints from other toolkits')."
        )
        raise ConversionError(f"{source}: cannot convert to pointformer: " + " | ".join(problems) + hint)
    for pair in allowed:
        out[pair.pointformer] = target[pair.pointformer].clone()
    return Converted(out, layout, ignored, [p.pointformer for p in allowed])


def _layout(official, pairs, target, requested: str, source: str) -> str | None:
    sparse = [p for p in pairs if p.transform is SPCONV and p.official in official]
    if requested != "auto":
        if requested not in LAYOUTS:
            raise ConversionError(f"spconv layout {requested!r}: expected auto or one of {', '.join(LAYOUTS)}")
        return requested if sparse else None
    try:
        return detect_layout((p.official, official[p.official].shape, target[p.pointformer].shape) for p in sparse)
    except LayoutError as e:
        raise ConversionError(f"{source}: {e}") from None


def to_official(
    state: Mapping[str, torch.Tensor],
    detector: nn.Module,
    fmt: str,
    spconv_layout: str = "KRSC",
    iteration: int = 0,
    source: str = "the checkpoint",
) -> dict[str, torch.Tensor]:
    """A pointformer state dict of ``detector`` as a ``fmt`` state dict (the reverse of
    ``to_pointformer``); sparse-conv weights written in ``spconv_layout`` (default KRSC, spconv 2.x).
    ``iteration`` fills the format's step counter where it has one (OpenPCDet's ``global_step``)."""
    module = format_module(fmt)
    if spconv_layout not in LAYOUTS:
        raise ConversionError(
            f"spconv layout {spconv_layout!r}: expected one of "
            + ", ".join(f"{k} ({v})" for k, v in SPCONV_VERSIONS.items())
        )
    pairs = detector_pairs(detector, fmt)
    target = detector.state_dict()
    covered = {p.pointformer for p in pairs}
    unused = [k for k in state if k not in covered]
    missing = [p.pointformer for p in pairs if p.pointformer not in state]
    shapes = [
        f"{p.pointformer} {list(state[p.pointformer].shape)}, expected {list(target[p.pointformer].shape)}"
        for p in pairs
        if p.pointformer in state and tuple(state[p.pointformer].shape) != tuple(target[p.pointformer].shape)
    ]
    problems = []
    if unused:
        problems.append(f"{len(unused)} tensors are not part of the config's model: {listing(unused)}")
    if missing:
        problems.append(f"{len(missing)} tensors of the config's model are missing: {listing(missing)}")
    if shapes:
        problems.append(f"{len(shapes)} tensors have the wrong shape: " + "; ".join(shapes[:12]))
    if problems:
        raise ConversionError(f"{source}: cannot convert to {fmt}: " + " | ".join(problems))
    out = {p.official: p.transform.to_official(state[p.pointformer], spconv_layout) for p in pairs}
    out.update(module.extra_official_tensors(iteration))
    return out
