"""The command line of the benchmark suite (``tools/benchmark.py``): one subcommand per suite
module, registered in ``SUBCOMMANDS`` with its own options in ``SUBCOMMAND_OPTIONS``, all sharing the
common options (``--quick``, ``--repeats``, ``--warmup``, ``--device``, ``--write``)."""

from __future__ import annotations

import argparse
import os
import shlex
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import torch

from pointformer.benchmarks.attention import run_attention
from pointformer.benchmarks.backbones import DEFAULT_BASELINE, run_comparison
from pointformer.benchmarks.core import (
    Report,
    RunConfig,
    format_section,
    high_load_flag,
    load_average,
    load_warning,
    write_section,
)
from pointformer.benchmarks.data import run_data
from pointformer.benchmarks.detector import run_detector
from pointformer.benchmarks.eval import run_eval
from pointformer.benchmarks.export import DEFAULT_CONFIGS, run_export
from pointformer.benchmarks.grouping import run_grouping
from pointformer.benchmarks.ops import OpsSizes, run_ops
from pointformer.benchmarks.train_load import DEMO_CONFIG, run_train_load
from pointformer.config import CONFIG_DIR, load_config, resolve_config_path
from pointformer.runs.synthetic_frame import FRAMES


def _run_config(args: argparse.Namespace) -> RunConfig:
    repeats = args.repeats if args.repeats is not None else (5 if args.quick else 20)
    warmup = args.warmup if args.warmup is not None else (1 if args.quick else 3)
    # --quick: a slow reference row runs once when its runs would take more than 2 s.
    budget = (2.0, 1) if args.quick else (60.0, 3)
    return RunConfig(torch.device(args.device), repeats, warmup, *budget)


def run_and_report(args: argparse.Namespace, command: str, name: str, run: Callable[[RunConfig, bool], Report]) -> int:
    """Runs one benchmark, prints its section and, with ``--write``, upserts it into the file."""
    cfg = _run_config(args)
    warning = load_warning()
    if warning:
        print(warning, file=sys.stderr)
    before = load_average()
    if args.max_load is not None and before is not None and before > args.max_load:
        print(f"error: load average {before:.1f} is above --max-load {args.max_load:g}: not measuring "
              f"{name} on a busy machine", file=sys.stderr)  # fmt: skip
        return 3
    start = time.perf_counter()
    report = run(cfg, args.quick)
    elapsed = time.perf_counter() - start
    heading = f"## {name} ({cfg.device.type})"
    flag = high_load_flag(before, load_average())
    section = format_section(heading, cfg.device, command, report, flag)
    print(section, end="")
    print(f"\n(benchmark took {elapsed:.1f} s; repeats {cfg.repeats}, warm-up {cfg.warmup})", file=sys.stderr)
    if args.write:
        write_section(args.write, heading, section, group="## " + name.split()[0])
        print(f"wrote {heading!r} to {args.write}", file=sys.stderr)
    return 0


def ops_command(args: argparse.Namespace, command: str) -> int:
    """``ops``: native ops against references and baselines."""
    return run_and_report(args, command, "ops", lambda cfg, quick: run_ops(cfg, OpsSizes.for_run(quick)))


def grouping_command(args: argparse.Namespace, command: str) -> int:
    """``grouping``: building each partition layout, native against the reference."""
    return run_and_report(args, command, "grouping", run_grouping)


def data_command(args: argparse.Namespace, command: str) -> int:
    """``data``: conversion throughput and the per-frame training data path on one core."""
    return run_and_report(args, command, "data", run_data)


def attention_command(args: argparse.Namespace, command: str) -> int:
    """``attention``: attention inside Waymo-scale partitions, per backend."""
    return run_and_report(args, command, "attention", run_attention)


def eval_command(args: argparse.Namespace, command: str) -> int:
    """``eval``: the detection metrics on Waymo- and nuScenes-scale inputs."""
    return run_and_report(args, command, "eval", run_eval)


def detector_configs(names: Sequence[str]) -> list[str]:
    """``--cfg`` values as config paths, in order, each once; ``all``: every config directly under configs/."""
    out: list[str] = []
    for name in names:
        paths = sorted(str(p) for p in CONFIG_DIR.glob("*.yaml")) if name == "all" else [str(resolve_config_path(name))]
        out += [p for p in paths if p not in out]
    return out


def detector_command(args: argparse.Namespace, command: str) -> int:
    """``detector``: per config, per-stage latency and the training step of its detector, native vs
    reference; then the 3D backbones and inference against the baseline config's."""
    configs = detector_configs(args.cfg or [DEFAULT_DETECTOR_CONFIG])
    frame = "" if args.frame == "raycast" else f", {args.frame} frame"
    kind = " ".join(k for k, on in (("native", not args.reference), ("inference", not args.train_step)) if on)
    kind = f", {kind}" if kind else ""
    if args.compare_only and not args.compare:
        raise SystemExit("detector: --compare-only and --no-compare leave nothing to run")
    for config in configs if not args.compare_only else ():
        name = f"detector {Path(config).stem}{frame}{kind}"

        def run(cfg: RunConfig, quick: bool, config: str = config) -> Report:
            return run_detector(
                cfg, quick, config, args.overrides, args.frame, args.reference, args.train_step, args.fast_path
            )

        run_and_report(args, command, name, run)
    if not args.compare:
        return 0
    for baseline in args.baselines or [DEFAULT_BASELINE]:
        base = str(resolve_config_path(baseline))
        metric = load_config(base, args.overrides).eval.metric
        group = [c for c in configs if load_config(c, args.overrides).eval.metric == metric]
        if base not in configs or len(group) < 2:
            continue  # the baseline not asked for, or nothing to compare it with
        pairs = {c: args.overrides for c in group}
        name = f"detector 3D backbones vs {Path(base).stem}{frame}"

        def compare(cfg: RunConfig, quick: bool, pairs: dict = pairs, base: str = base) -> Report:
            return run_comparison(cfg, quick, pairs, base, args.frame)

        run_and_report(args, command, name, compare)
    return 0


DEFAULT_DETECTOR_CONFIG = "waymo_flatformer.yaml"


def export_command(args: argparse.Namespace, command: str) -> int:
    """``export``: onnxruntime vs PyTorch on each config's exported network and pipeline."""
    configs = tuple(args.cfg or DEFAULT_CONFIGS)
    return run_and_report(args, command, "export", lambda cfg, quick: run_export(cfg, quick, configs))


def train_load_command(args: argparse.Namespace, command: str) -> int:
    """``train-load``: demo training steps alone and beside busy processes, threading before/after."""
    config = args.cfg or DEMO_CONFIG
    if args.busy < 1:
        raise SystemExit(f"train-load: --busy must be >= 1, got {args.busy}")

    def run(cfg: RunConfig, quick: bool) -> Report:
        return run_train_load(cfg, quick, config, args.steps, args.busy)

    return run_and_report(args, command, "train-load", run)


def _train_load_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--cfg", default=None, help=f"config (default {DEMO_CONFIG}, the make demo model)")
    parser.add_argument("--steps", type=_positive, default=None, help="timed steps per process (default 5, 2 quick)")
    parser.add_argument("--busy", type=int, default=2, help="busy-looping processes of the competing load")


def _export_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--cfg", nargs="+", action="extend", metavar="CFG",
                        help="configs to export (default: every Waymo config)")  # fmt: skip


def _detector_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--cfg", nargs="+", action="extend", metavar="CFG",
                        help="config files or names under configs/, or 'all' (every config there); default "
                             f"{DEFAULT_DETECTOR_CONFIG}; one section per config")  # fmt: skip
    parser.add_argument("--no-reference", dest="reference", action="store_false",
                        help="native ops only: no pure-PyTorch reference rows")  # fmt: skip
    parser.add_argument("--no-train-step", dest="train_step", action="store_false",
                        help="inference only: no training-step rows")  # fmt: skip
    parser.add_argument("--no-fast-path", dest="fast_path", action="store_false",
                        help="no rows of the eval-mode fast path of the dense stages (folded BatchNorm, fused "
                             "head branches, channels-last), which otherwise run interleaved with the eager "
                             "rows")  # fmt: skip
    parser.add_argument("--baseline", dest="baselines", action="append", metavar="CFG",
                        help=f"when this config and others of its metric are among --cfg, a section compares their "
                             f"3D backbones and inference with its, on the same frame (default {DEFAULT_BASELINE}; "
                             "repeatable, e.g. also nuscenes_centerpoint.yaml)")  # fmt: skip
    parser.add_argument("--no-compare", dest="compare", action="store_false",
                        help="no comparison section")  # fmt: skip
    parser.add_argument("--compare-only", action="store_true",
                        help="only the comparison section (no per-config stage sections)")  # fmt: skip
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config key, e.g. --set model.head.score_threshold=0.3 (repeatable)",
    )
    parser.add_argument("--frame", choices=FRAMES, default=FRAMES[0],
                        help="raycast: a frame ray-cast by pointformer.data.synthetic (its labels, ~8k pillars); "
                             "scatter: make_lidar_frame's scattered points (~46k pillars), random boxes")  # fmt: skip


# name -> (help, function(args, command) -> exit code).
SUBCOMMANDS: dict[str, tuple[str, Callable[[argparse.Namespace, str], int]]] = {
    "ops": ("native ops vs references and baselines (voxelize, segment_reduce, boxes_iou_bev, nms_bev)",
            ops_command),
    "grouping": ("building each grouping layout (partition) for a Waymo-scale frame, native vs reference",
                 grouping_command),
    "attention": ("attention inside Waymo-scale partitions (FlatFormer groups, DSVT sets): fused vs sdpa vs reference",
                  attention_command),
    "data": ("dataset conversion throughput and the per-frame training data path (load, augment, voxelize) "
             "on one core", data_command),
    "eval": ("detection metrics: Waymo (1,000 frames x 100 GT / 200 predictions), nuScenes (1,000 samples x 400 "
             "predictions, tools/eval.py vs nuscenes-devkit as whole processes)", eval_command),
    "detector": ("per-stage latency (voxelize to NMS) and training step of a config's detector on a ray-cast "
                 "Waymo-scale frame, native vs reference ops", detector_command),
    "train-load": ("demo training steps alone and beside busy processes it starts and stops, with the threading "
                   "before and after pointformer.utils.threads (OMP wait policy, auto threads)", train_load_command),
    "export": ("onnxruntime vs PyTorch on each config's exported network (and points -> boxes) on a ray-cast "
               "Waymo-scale frame", export_command),
}  # fmt: skip

# name -> function adding the subcommand's own options to its parser (besides the common ones).
SUBCOMMAND_OPTIONS: dict[str, Callable[[argparse.ArgumentParser], None]] = {
    "detector": _detector_options,
    "export": _export_options,
    "train-load": _train_load_options,
}


def _non_negative(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {value}")
    return value


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def _common_options() -> argparse.ArgumentParser:
    """Options shared by every subcommand."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--quick", action="store_true", help="small sizes and fewer repeats (a few seconds)")
    common.add_argument("--repeats", type=_positive, help="timed runs per row (default 20, 5 with --quick)")
    common.add_argument("--warmup", type=_non_negative, help="untimed runs first (default 3, 1 with --quick)")
    common.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    common.add_argument("--write", metavar="PATH", help="upsert the section into this markdown file")
    common.add_argument("--max-load", type=float, default=None, metavar="L",
                        help="refuse to run (exit 3) when the 1-min load average is above L (e.g. 0.5 for a "
                             "quiet-machine figure); a section measured at a load of at least the core count is "
                             "flagged HIGH LOAD either way")  # fmt: skip
    return common


def build_parser(prog: str | None = None) -> argparse.ArgumentParser:
    """The ``tools/benchmark.py`` parser, one subparser per entry of ``SUBCOMMANDS``."""
    parser = argparse.ArgumentParser(prog=prog, description="pointformer benchmarks (median of timed runs)")
    sub = parser.add_subparsers(dest="benchmark", required=True, metavar="BENCHMARK")
    common = _common_options()
    for name, (help_text, func) in SUBCOMMANDS.items():
        parser_of = sub.add_parser(name, parents=[common], help=help_text, description=help_text)
        parser_of.set_defaults(func=func)
        if name in SUBCOMMAND_OPTIONS:
            SUBCOMMAND_OPTIONS[name](parser_of)
    return parser


def command_line(script: str, argv: Sequence[str]) -> str:
    """The command as run, with the script path relative to the repository root when inside it."""
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    path = os.path.abspath(script)
    shown = os.path.relpath(path, root) if path.startswith(root + os.sep) else script
    return shlex.join(["python", shown, *argv])


def main(argv: Sequence[str] | None = None, script: str = "tools/benchmark.py") -> int:
    """Parses ``argv`` (default ``sys.argv[1:]``) and runs the chosen benchmark."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser(prog=os.path.basename(script))
    args = parser.parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: no CUDA device is available")
    return args.func(args, command_line(script, argv))
