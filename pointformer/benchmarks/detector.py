"""The ``detector`` benchmark: per-stage latency of a config's detector on a Waymo-scale frame, and
the time of one training step, with the native ops and with the pure-PyTorch references.

The detector is ``build_detector(load_config(cfg))``; its stages are run one by one as
``Detector.forward`` composes them (voxelize, voxel encoder, the 3D backbone's partitions, the 3D
backbone with its partitions cached, BEV mapping, 2D backbone, neck, head, decode + NMS), each on
the output of the previous stage computed once beforehand, so that a row times that stage alone.
Every stage runs under each *variant*: native ops or ``pointformer.ops.reference_only()``, in fp32
and, on CUDA, also under bf16 autocast; the variants of a stage are timed interleaved, round by
round (a loaded machine slows them alike). A stage the model lacks (an ``nn.Identity`` part, a 3D
backbone without partitions) has no row.

The input is one frame ray-cast by ``pointformer.data.synthetic`` (Waymo's five lasers, ~180k
points; ``--quick``: an eighth of the azimuth columns), with the config's point features and
transforms, cropped to its range, and the frame's own labels for the training step.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import os
import statistics
import time
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import numpy as np
import torch
from torch import nn

from pointformer.benchmarks.core import (
    Report,
    Row,
    RunConfig,
    Timing,
    load_average,
    load_note,
    peak_memory_mib,
    synchronize,
    with_speedups,
)
from pointformer.config import Config, load_config
from pointformer.data.collate import FrameBatch
from pointformer.models.detector import Detector
from pointformer.models.fastpath import ChannelsLast, fast_inference_copy
from pointformer.ops import reference_only
from pointformer.ops.cpu_cache import available as cpu_cache_available
from pointformer.ops.cpu_cache import cpu_cache
from pointformer.runs.synthetic_frame import SCATTER_BOXES, BenchFrame, make_frame
from pointformer.structures import SparseVoxels

T = TypeVar("T")
DEFAULT_CONFIG = "waymo_flatformer.yaml"


# --- variants -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Variant:
    """How a stage runs: native ops or the pure-PyTorch references, fp32 or an autocast dtype."""

    reference: bool
    autocast: torch.dtype | None = None
    fast: bool = False  # the eval-mode fast path of the dense stages (pointformer.models.fastpath)
    cpu_cache: bool = False  # large CPU blocks from pointformer.ops.cpu_cache (what the tools switch on)
    # Training: CenterHead's branches stacked (pointformer.models.heads.stacked_branches); False: one by one.
    stacked_head: bool = True

    @property
    def name(self) -> str:
        ops = "pure-PyTorch reference" if self.reference else "pointformer native"
        ops = f"{ops}, fast path" if self.fast else ops
        ops = f"{ops}, CPU cache" if self.cpu_cache else ops
        ops = ops if self.stacked_head else f"{ops}, head branches one by one"
        return ops if self.autocast is None else f"{ops}, {str(self.autocast).removeprefix('torch.')} autocast"

    def memory(self) -> contextlib.AbstractContextManager:
        """The caching CPU allocator on for a ``cpu_cache`` variant and off otherwise (its idle blocks
        stay between calls, so each variant keeps its own steady state)."""
        return cpu_cache(self.cpu_cache) if cpu_cache_available() else contextlib.nullcontext()

    def ops(self) -> contextlib.AbstractContextManager:
        """``reference_only()`` for a reference variant (forward and backward alike)."""
        return reference_only() if self.reference else contextlib.nullcontext()

    def autocasting(self, device: torch.device) -> contextlib.AbstractContextManager:
        """Autocast to the variant's dtype (forward passes only, as the trainer does)."""
        if self.autocast is None:
            return contextlib.nullcontext()
        return torch.autocast(device.type, dtype=self.autocast)


def variants(device: torch.device, reference: bool = True) -> list[Variant]:
    """fp32 reference then native; on CUDA also both under bf16 autocast (the reference fp32 row is
    every speedup's baseline). ``reference=False``: the native variants only."""
    out = [Variant(True), Variant(False)]
    if device.type == "cuda":
        out += [Variant(True, torch.bfloat16), Variant(False, torch.bfloat16)]
    return out if reference else [v for v in out if not v.reference]


# --- timing -------------------------------------------------------------------------------------


def time_rounds(fns: Sequence[Callable[[], object]], cfg: RunConfig) -> list[Timing]:
    """Interleaved rounds (each calls every ``fn`` once, in turn), median and min per ``fn`` (ms),
    within the run's time budget ``cfg.budget_s`` per row.

    The first round is the first warm-up round (the first timed one when ``cfg.warmup`` is 0).
    When it shows that the remaining warm-up and repeats would take longer than the budget, the
    warm-up is dropped, the first round becomes the first sample and the row runs as many rounds
    as fit in the budget (at least that one; at most ``cfg.repeats``), with ``Timing.reduced``
    set. Such rounds take seconds, beside which a first call's one-time costs are small.
    """

    def round_ms() -> list[float]:
        out = []
        for fn in fns:
            synchronize(cfg.device)
            start = time.perf_counter()
            fn()
            synchronize(cfg.device)
            out.append((time.perf_counter() - start) * 1e3)
        return out

    first = round_ms()
    first_s = sum(first) / 1e3
    samples: list[list[float]] = [[] for _ in fns] if cfg.warmup > 0 else [[ms] for ms in first]
    warmup_left, repeats = max(cfg.warmup - 1, 0), max(cfg.repeats, 1)
    reduced = first_s * (warmup_left + repeats - len(samples[0])) > cfg.budget_s and (cfg.warmup > 0 or repeats > 1)
    if reduced:
        fit = int(cfg.budget_s // first_s) if first_s > 0 else repeats
        samples, warmup_left, repeats = [[ms] for ms in first], 0, max(1, min(repeats, fit))
    for _ in range(warmup_left):
        round_ms()
    while len(samples[0]) < repeats:
        for i, ms in enumerate(round_ms()):
            samples[i].append(ms)
    return [Timing(statistics.median(ms), min(ms), len(ms), reduced) for ms in samples]


def _reduced_note(timing: Timing) -> str:
    if not timing.reduced:
        return ""
    return f"{timing.repeats} round{'s' if timing.repeats > 1 else ''}, no warm-up (time budget)"


# --- stages -------------------------------------------------------------------------------------


def _present(module: nn.Module | None) -> bool:
    """Whether a part does work (not absent, not an identity such as ``nn.Identity`` or ``IdentityNeck``)."""
    return (
        module is not None and not isinstance(module, nn.Identity) and not type(module).__name__.startswith("Identity")
    )


@dataclass(frozen=True, eq=False)
class RecordingVoxels(SparseVoxels):
    """``SparseVoxels`` that remembers how each entry of its derived-data cache is computed.

    A 3D backbone's forward on it records the partitions (and whatever else) it caches on its
    input layout (FlatFormer: the four orders' partitions; DSVT: the first stage's rotated sets
    and pooling map; layouts a backbone derives inside its forward are not this object and are
    not recorded). ``rebuild()`` computes them all again, for timing.
    """

    builds: list[tuple[Hashable, Callable[[], Any]]] = field(default_factory=list, repr=False)

    def cached(self, key: Hashable, compute: Callable[[], T]) -> T:
        if key not in self._cache:
            self.builds.append((key, compute))
        return super().cached(key, compute)

    def rebuild(self) -> list[Any]:
        """Every recorded cache entry computed again (the cache itself is left as it is)."""
        return [compute() for _, compute in self.builds]


def _describe(entries: Sequence[Any]) -> str:
    """Group counts of the recorded partitions, for a row's notes."""
    out = []
    for entry in entries:
        groups = getattr(entry, "num_groups", None)
        if groups is None and getattr(entry, "partitions", None) is not None:
            groups = "+".join(str(getattr(p, "num_groups", "?")) for p in entry.partitions)
        out.append(str(groups) if groups is not None else type(entry).__name__)
    return ", ".join(out)


@dataclass(frozen=True)
class Stage:
    """One timed stage: a row title, the call (run under no_grad and the variant), a note, and the
    parts of the stage's module timed inside its calls (``module_parts``; empty: none)."""

    case: str
    run: Callable[[], object]
    note: str = ""
    parts: Sequence[tuple[str, Sequence[nn.Module]]] = ()
    dense: bool = False  # a dense BEV stage (2D backbone, neck, head): timed on the fast path too


def module_parts(module: nn.Module) -> list[tuple[str, list[nn.Module]]]:
    """The parts of ``module`` a breakdown times: its direct children in registration order, the
    members of a ``ModuleList``/``ModuleDict`` child (nested ones flattened) together under the child's
    name (a container is never called itself). Labels name the type: ``"stem (SparseChain)"``,
    ``"blocks (8 x FlatFormerLayer)"``."""
    containers = (nn.ModuleList, nn.ModuleDict)

    def called(m: nn.Module) -> list[nn.Module]:  # the modules inside nested containers
        return [x for c in m.children() for x in called(c)] if isinstance(m, containers) else [m]

    out = []
    for name, child in module.named_children():
        if isinstance(child, containers):
            members = called(child)
            if not members:
                continue
            types = sorted({type(m).__name__ for m in members})
            out.append((f"{name} ({len(members)} x {'/'.join(types)})", members))
        else:
            out.append((f"{name} ({type(child).__name__})", [child]))
    return out


class PartClock:
    """Times the parts of a module inside each call of ``fn`` (forward pre-hooks and hooks,
    synchronizing the device at each part's start and end): ``calls`` holds, per call of the
    wrapper, the milliseconds of each part label (a part called several times: the sum) and
    ``"total"``. A part not called in a call has 0 there.

    The hooks are attached only while the wrapper runs. Parts are siblings, so their times add
    up; the rest of the call (``total`` minus their sum) is the module's own code between them.
    """

    def __init__(self, fn: Callable[[], object], parts: Sequence[tuple[str, Sequence[nn.Module]]],
                 device: torch.device) -> None:  # fmt: skip
        self.fn, self.parts, self.device = fn, list(parts), device
        self.calls: list[dict[str, float]] = []

    def __call__(self) -> object:
        times = {label: 0.0 for label, _ in self.parts}
        started: dict[int, float] = {}
        handles = []

        def pre(module: nn.Module, args: object) -> None:
            synchronize(self.device)
            started[id(module)] = time.perf_counter()

        def post(label: str) -> Callable[..., None]:
            def hook(module: nn.Module, args: object, output: object) -> None:
                synchronize(self.device)
                times[label] += (time.perf_counter() - started.pop(id(module))) * 1e3

            return hook

        for label, members in self.parts:
            for member in members:
                handles.append(member.register_forward_pre_hook(pre))
                handles.append(member.register_forward_hook(post(label)))
        try:
            synchronize(self.device)
            start = time.perf_counter()
            out = self.fn()
            synchronize(self.device)
            times["total"] = (time.perf_counter() - start) * 1e3
        finally:
            for handle in handles:
                handle.remove()
        self.calls.append(times)
        return out

    def medians(self, last: int) -> dict[str, float]:
        """Per part label, and ``"rest"`` (total minus the parts), the median over the last ``last`` calls."""
        calls = self.calls[-last:]
        out = {label: statistics.median(c[label] for c in calls) for label, _ in self.parts}
        out["rest"] = statistics.median(c["total"] - sum(c[label] for label, _ in self.parts) for c in calls)
        return out


def _shape(t: torch.Tensor) -> str:
    return "(" + ", ".join(str(s) for s in t.shape) + ")"


def _count(n: int) -> str:
    return f"{n / 1000:.0f}k" if n >= 10_000 else str(n)


def detector_stages(model: Detector, batch: FrameBatch) -> list[Stage]:
    """The stages of ``model`` (eval mode) in flow order, each fed the previous stage's output
    computed once here with the native ops in fp32 (bound into the stage's call)."""
    stages: list[Stage] = []

    def add(case: str, fn: Callable[..., object], *args: object, note: str = "", dense: bool = False) -> None:
        stages.append(Stage(case, functools.partial(fn, *args), note, dense=dense))

    def name(part: nn.Module) -> str:
        return type(part.module if isinstance(part, ChannelsLast) else part).__name__

    points, index, size = batch.points, batch.batch_index, batch.batch_size
    with torch.no_grad():
        voxelization = model.voxelize(points, index, size)
        note = f"{_count(points.shape[0])} points -> {_count(voxelization.num_voxels)} voxels"
        add("voxelize", model.voxelize, points, index, size, note=note)
        encoded = model.voxel_encoder(points, voxelization)
        add(f"voxel encoder ({name(model.voxel_encoder)})", model.voxel_encoder, points, voxelization,
            note=f"-> {_shape(encoded.features)} features")  # fmt: skip
        voxels = model.backbone3d(encoded) if not _present(model.backbone3d) else encoded
        if _present(model.backbone3d):
            backbone = model.backbone3d
            cached = RecordingVoxels(encoded.features, encoded.coords, encoded.spatial_shape, encoded.batch_size,
                                     encoded.stride)  # fmt: skip
            voxels = backbone(cached)  # records and fills the layout's cache
            if cached.builds:
                add(f"partition ({name(backbone)}, {len(cached.builds)} layouts)", cached.rebuild,
                    note=f"groups per layout: {_describe(cached.rebuild())}")  # fmt: skip
            note = (
                "partitions cached (built in the row above)"
                if cached.builds
                else "caches nothing on its input: all inside"
            )
            stages.append(Stage(f"3D backbone ({name(backbone)})", functools.partial(backbone, cached), note,
                                module_parts(backbone)))  # fmt: skip
        bev = model.bev(voxels)
        add(f"BEV ({name(model.bev)})", model.bev, voxels, note=f"-> {_shape(bev)}")
        # An identity 2D backbone or neck still runs (IdentityNeck unpacks the list), without a row.
        maps = model.backbone2d(bev)
        maps = [maps] if isinstance(maps, torch.Tensor) else maps
        if _present(model.backbone2d):
            add(f"2D backbone ({name(model.backbone2d)})", model.backbone2d, bev,
                note="-> " + ", ".join(_shape(m) for m in maps), dense=True)  # fmt: skip
        features = model.neck(maps)
        if _present(model.neck):
            add(f"neck ({name(model.neck)})", model.neck, maps, note=f"-> {_shape(features)}", dense=True)
        outputs = model.head(features)
        add(f"head ({name(model.head)})", model.head, features, dense=True)
        detections = model.head.decode(outputs)
        kept = sum(len(d.scores) for d in detections)
        candidates = nms_candidates(model.head, outputs)
        into = "" if candidates is None else f"~{candidates} candidates into NMS, "
        add("decode + NMS", model.head.decode, outputs, note=f"{into}{kept} boxes kept")
    return stages


def nms_candidates(head: nn.Module, outputs: object) -> int | None:
    """Boxes a CenterHead-like decode hands to NMS: per class the heatmap cells at or above
    ``score_threshold``, capped at the class's ``pre_max_sizes`` (before ``post_center_range``);
    None for a head without those attributes."""
    tasks = getattr(outputs, "tasks", None)
    threshold, caps = getattr(head, "score_threshold", None), getattr(head, "pre_max_sizes", None)
    if tasks is None or threshold is None or caps is None:
        return None
    heatmaps = torch.cat([t.heatmap for t in tasks], dim=1).float().sigmoid()  # (B, K, H, W), classes in order
    per_class = (heatmaps >= threshold).flatten(2).sum(dim=2)  # (B, K)
    cap = torch.as_tensor(list(caps), device=per_class.device)
    return int(torch.minimum(per_class, cap).sum())


def _inference_call(stage: Stage, variant: Variant, device: torch.device) -> Callable[[], object]:
    def run():
        with torch.no_grad(), variant.memory(), variant.ops(), variant.autocasting(device):
            return stage.run()

    return run


def _training_step(model: Detector, cfg: Config, batch: FrameBatch, variant: Variant, device: torch.device):
    """One training step of a private copy of ``model`` (train mode): forward with the summed
    losses, zero_grad, backward, gradient clip (``train.grad_clip``), optimizer step (the config's
    optimizer, no schedule)."""
    from pointformer.runs.train import build_optimizer_from

    model = copy.deepcopy(model).train()
    if hasattr(model.head, "stack_branches"):
        model.head.stack_branches = variant.stacked_head
    optimizer = build_optimizer_from(cfg, model)
    clip = cfg.train.grad_clip

    def step() -> None:
        with variant.memory(), variant.ops():
            with variant.autocasting(device):
                losses = model(batch)
            total = sum(v.float() for v in losses.values())
            optimizer.zero_grad(set_to_none=True)
            total.backward()
            if clip is not None:
                nn.utils.clip_grad_norm_(model.parameters(), clip)
            optimizer.step()

    return step


def _fast_note(note: str, eager: Timing, fast: Timing) -> str:
    """The fast-path row's note: its speedup over the native eager row of the same round."""
    return "; ".join(n for n in (f"**{eager.median_ms / fast.median_ms:.2f}x native eager**", note) if n)


def _gain_notes(used: list[Variant], kinds: list[Variant], timings: list[Timing], notes: list[str]) -> list[str]:
    """``notes`` with the speedup over the native eager row added to the fast-path and CPU-cache rows,
    and the native eager row's speedup over a row with the head's branches one by one."""
    eager = timings[kinds.index(Variant(False))]

    def note_of(v: Variant, t: Timing, note: str) -> str:
        if not v.stacked_head:
            return "; ".join(n for n in (f"**native eager (stacked branches) {t.median_ms / eager.median_ms:.2f}x "
                                         "this**", note) if n)  # fmt: skip
        return _fast_note(note, eager, t) if v.fast or v.cpu_cache else note

    return [note_of(v, t, note) for v, t, note in zip(used, timings, notes, strict=True)]


def _memory_notes(fns: Sequence[Callable[[], object]], device: torch.device) -> list[str]:
    peaks = [peak_memory_mib(fn, device) for fn in fns]
    return ["" if p is None else f"peak {p:.0f} MiB" for p in peaks]


def _rows(case: str, names: list[str], timings: list[Timing], notes: list[str]) -> list[Row]:
    """One row per variant; speedups against the first when there are several."""
    rows = [
        Row(case, name, timing, "; ".join(n for n in (note, _reduced_note(timing)) if n))
        for name, timing, note in zip(names, timings, notes, strict=True)
    ]
    return with_speedups(rows, baseline=0) if len(rows) > 1 else rows


PART_MARK = "  ↳ "  # prefix of a part row's case, under its stage's rows


def _part_rows(stage: Stage, names: list[str], clocks: list[PartClock], timings: list[Timing]) -> list[Row]:
    """A row per part of ``stage`` (and the rest of its calls) per variant: medians over the same
    calls as the stage's rows."""
    medians = [clock.medians(t.repeats) for clock, t in zip(clocks, timings, strict=True)]
    labels = [label for label, _ in stage.parts] + ["rest"]
    rows = []
    for label in labels:
        if label != "rest" and all(m[label] == 0.0 for m in medians):
            continue  # a part never called (an unused branch)
        case = PART_MARK + (label if label != "rest" else "rest (outside these parts)")
        timings_of = [Timing(m[label], m[label], t.repeats, t.reduced) for m, t in zip(medians, timings, strict=True)]
        rows += _rows(case, names, timings_of, ["median of the stage's calls, min = median"] * len(names))
    return rows


def run_detector(
    cfg: RunConfig,
    quick: bool,
    config: str = DEFAULT_CONFIG,
    overrides: Sequence[str] = (),
    frame_kind: str = "raycast",
    reference: bool = True,
    train_step: bool = True,
    fast_path: bool = True,
) -> Report:
    """Per-stage, total-inference and training-step rows of ``config``'s detector (with ``--set``
    style ``overrides``) on a ``frame_kind`` frame (see ``make_frame`` and the module docstring).

    ``reference=False``: the native variants only; ``train_step=False``: no training-step rows;
    ``fast_path=False``: no fast-path rows (the dense stages and the total inference of the
    eval-mode fast path, ``pointformer.models.fastpath``, timed interleaved with the eager rows).
    """
    load_before = load_average()
    conf = load_config(config, overrides)
    frame = make_frame(conf, quick, kind=frame_kind)
    batch = frame.batch.to(cfg.device)
    torch.manual_seed(0)
    model = load_model(conf, cfg.device)
    kinds = variants(cfg.device, reference)
    report = Report()

    stages = detector_stages(model, batch)
    on_cpu = cfg.device.type == "cpu" and cpu_cache_available()
    fast_kind = Variant(False, fast=True, cpu_cache=on_cpu)
    fast = fast_inference_copy(model) if fast_path else None
    fast_stages = {s.case: s for s in detector_stages(fast, batch) if s.dense} if fast is not None else {}
    stage_sums = [0.0] * (len(kinds) + (fast is not None))
    for stage in stages:
        fns = [_inference_call(stage, v, cfg.device) for v in kinds]
        own = [v.name for v in kinds]
        if stage.case in fast_stages:
            fns.append(_inference_call(fast_stages[stage.case], fast_kind, cfg.device))
            own.append(fast_kind.name)
        clocks = [PartClock(fn, stage.parts, cfg.device) for fn in fns] if stage.parts else []
        timings = time_rounds(clocks or fns, cfg)
        # A stage without a fast-path row (the sparse ones) counts the same time on the fast path.
        medians = [t.median_ms for t in timings] + [timings[kinds.index(Variant(False))].median_ms] * (
            len(stage_sums) - len(timings)
        )
        stage_sums = [s + m for s, m in zip(stage_sums, medians, strict=True)]
        notes = [stage.note] * len(fns)
        if len(fns) > len(kinds):
            notes[-1] = _fast_note(stage.note, timings[kinds.index(Variant(False))], timings[-1])
        report.rows += _rows(stage.case, own, timings, notes)
        if clocks:
            report.rows += _part_rows(stage, own, clocks, timings)

    total = Stage("inference total (model(batch), eval)", lambda: model(batch))
    sums = dict(zip(kinds + [fast_kind], stage_sums, strict=False))  # fast_kind's only with a fast path
    # On the CPU the eager model also runs with the CPU cache alone, to split the fast path's gain.
    calls = [(v, total) for v in kinds + ([Variant(False, cpu_cache=True)] if on_cpu and fast is not None else [])]
    if fast is not None:
        calls.append((fast_kind, Stage(total.case, lambda: fast(batch))))
    fns = [_inference_call(stage, v, cfg.device) for v, stage in calls]
    timings = time_rounds(fns, cfg)
    notes = [
        "; ".join(n for n in (f"sum of the stage medians {sums[v]:.0f} ms" if v in sums else "", memory) if n)
        for (v, _), memory in zip(calls, _memory_notes(fns, cfg.device), strict=True)
    ]
    report.rows += _rows(
        total.case, [v.name for v, _ in calls], timings, _gain_notes([v for v, _ in calls], kinds, timings, notes)
    )

    if train_step:
        train_model = load_model(conf, cfg.device)  # the same weights (seeded), a separate copy per variant
        step_kinds = kinds + ([Variant(False, cpu_cache=True)] if on_cpu else []) + [Variant(False, stacked_head=False)]
        steps = [_training_step(train_model, conf, batch, v, cfg.device) for v in step_kinds]
        del train_model
        timings = time_rounds(steps, cfg)
        notes = _gain_notes(step_kinds, kinds, timings, _memory_notes(steps, cfg.device))
        case = "training step (forward + loss + backward + clip + optimizer)"
        report.rows += _rows(case, [v.name for v in step_kinds], timings, notes)

    report.footnotes += _footnotes(conf, model, frame, batch, cfg, quick, load_before, reference, train_step)
    if fast is not None:
        report.footnotes.append(FAST_PATH_NOTE)
    return report


FAST_PATH_NOTE = (
    "Fast path (`pointformer.models.fastpath.fast_inference_copy`, what `tools/test.py` and the "
    "trainer's evaluations run unless `--no-fast-path`): an eval-mode copy whose dense stages have every "
    "BatchNorm folded into the "
    "convolution before it, the head's branches one after the other on the CPU (off it one stacked conv plus one "
    "grouped conv), and channels-last maps; "
    "native ops, fp32; on the CPU with the caching allocator for large blocks (`pointformer.ops.cpu_cache`, which "
    "the tools switch on: no page faults for maps re-allocated every call), and the eager rows without it (today's "
    "eager path); the 'native, CPU cache' total row is the eager model with the cache alone. Its rows (the 2D "
    "backbone, neck and head, and the whole inference) run interleaved with the "
    "eager rows, round by round; their note gives the speedup over the native eager row. Its outputs equal the "
    "eager path's to float32 rounding (tests/models/test_fastpath.py)."
)


def load_model(conf: Config, device: torch.device) -> Detector:
    """The config's detector (weights from ``torch.manual_seed(0)``) on ``device``, eval mode."""
    from pointformer.models import build_detector

    torch.manual_seed(0)
    return build_detector(conf).to(device).eval()


def _footnotes(
    conf: Config,
    model: Detector,
    frame: BenchFrame,
    batch: FrameBatch,
    cfg: RunConfig,
    quick: bool,
    load: float | None,
    reference: bool = True,
    train_step: bool = True,
) -> list[str]:
    grid = conf.grid
    z, y, x = grid.shape
    params = model.parameter_counts()
    counts = np.bincount(batch.labels.cpu().numpy(), minlength=len(model.class_names))
    per_class = ", ".join(f"{n} {c}" for n, c in zip(model.class_names, counts.tolist(), strict=True))
    if frame.kind == "raycast":
        lasers = "an eighth of the azimuth columns (--quick)" if quick else "full resolution"
        labels = "cyclic labels (no class of the frame is among the config's)" if frame.random_labels else "its labels"
        source = (f"one frame ray-cast by `pointformer.data.synthetic` (`generate_sequence(0, 1, 'waymo')`, five "
                  f"lasers, two returns, {lasers}; on the flat synthetic ground the returns bunch into rings, so it "
                  "has far fewer pillars per point than `--frame scatter`)")  # fmt: skip
    else:
        labels = "random labels"
        source = ("one `make_lidar_frame` frame (seed 0: points scattered with 1/r range density, as the ops, "
                  f"grouping and attention benchmarks use) with {SCATTER_BOXES} random `make_boxes` boxes")  # fmt: skip
    num_voxels = model.voxelize(batch.points, batch.batch_index, batch.batch_size).num_voxels
    budget = (f"Time budget {cfg.budget_s:g} s per row: when a row's first round (all its variants once) shows that "
              "its warm-up and repeats would take longer, the warm-up is dropped, that round counts, and the row runs "
              "as many rounds as fit in the budget (at least that one); its notes say so.")  # fmt: skip
    return [
        f"Config: `{os.path.relpath(conf.path) if conf.path else conf.name}` ({params['total']:,} parameters, "
        f"weights random from seed 0); grid {x} x {y} x {z} voxels of {tuple(grid.voxel_size)} m.",
        f"Input (`--frame {frame.kind}`): {source}: {frame.raw_points} points, {batch.points.shape[0]} inside the "
        f"range, {num_voxels} non-empty voxels; features {', '.join(batch.point_features)} with the config's "
        f"transforms; {batch.boxes.shape[0]} boxes ({per_class}, {labels}) for the training step. Batch of one frame.",
        "Stage rows run one stage of `Detector.forward` on the previous stage's output (computed once, native fp32), "
        "under `torch.no_grad()` in eval mode; 'partition' rebuilds every layout the 3D backbone caches on its input "
        "voxels (`SparseVoxels.cached`; FlatFormer: the x, x-shifted, y, y-shifted orders), and the 3D backbone row "
        "reuses them from the cache, as the layers after the first use of a layout do (layouts a backbone derives "
        "inside its forward, DSVT's later stages say, stay in its row). 'inference total' is `model(batch)` in eval "
        "mode (voxelize to decode, partitions built inside).",
        f"'{PART_MARK.strip()}' rows: the 3D backbone row's own calls split by its parts (its direct children; the "
        "members of a ModuleList together), timed by forward hooks that synchronize the device at each part's start "
        "and end; 'rest' is the backbone's code between the parts (DSVT's later-stage partitions and its BEV "
        "placement, say). Medians per part over the same calls; the parts' medians need not add up exactly.",
        "Training step: a train-mode copy of the model (same initial weights per variant), `model(batch)` -> summed "
        f"losses, zero_grad, backward, clip to {conf.train.grad_clip} (train.grad_clip), one "
        f"{conf.optimizer.get('type', 'adamw')} step (no schedule); the reference variant also runs the backward "
        "inside `reference_only()`. 'head branches one by one': CenterHead's separate heads run module by module, "
        "as before their train-mode stacking (`pointformer.models.heads.stacked_branches`); its note gives the "
        "native row's speedup over it."
        if train_step
        else "No training-step rows (`--no-train-step`).",
        "Reference = the same calls inside `pointformer.ops.reference_only()`: every pointformer op (voxelize, "
        "segment_reduce, partitions, grouped attention, NMS) on its pure-PyTorch reference; the torch parts (linear "
        "layers, convolutions, norms) are the same in both. Native attention = the device's default backend of "
        "`grouped_attention`. The variants of a row are timed interleaved, round by round; speedup = the fp32 "
        "reference's median / the row's median."
        if reference
        else "Native ops only (`--no-reference`: no pure-PyTorch reference rows, no speedups). Native attention = the "
        "device's default backend of `grouped_attention`.",
        "decode + NMS: with random weights the heatmap probabilities sit near the head's initial prior (CenterHead: "
        "sigmoid(-2.19) = 0.1), so most cells pass `score_threshold` and every class fills its `pre_max_sizes` "
        "(the candidate count is in the row's notes): NMS's worst case for this config. The reference NMS (the full "
        "rotated IoU matrix, then a Python greedy loop) then dominates the reference inference; a trained model "
        "hands NMS fewer candidates." + ("" if reference else " (The reference NMS is not run here.)"),
        budget,
        "bf16 rows (CUDA only): the same calls under `torch.autocast('cuda', torch.bfloat16)` (forward only; the "
        "backward outside it, as the trainer does)."
        if cfg.device.type == "cuda"
        else "fp32 on the CPU (no autocast rows: they are measured on CUDA only). Peak memory: CUDA only.",
        load_note(load),
    ]
