"""The ``train-load`` benchmark: demo training steps alone and beside a fixed competing load, with
the threading before and after ``pointformer.utils.threads``.

OpenMP reads its wait policy once per process, so every measurement is a child process
(``python -c CHILD_MAIN --child ...``) that builds the config's detector,
makes one ray-cast frame (``make_frame``, the detector benchmark's input, cropped to the config's
range), runs warm-up steps and then times ``steps`` training steps (forward, summed losses,
backward, clip, optimizer step: ``detector._training_step``). Two threadings:

- *before*: OpenMP's default (active) waiting and torch's default thread count (every CPU), as the
  tools ran before pointformer chose its threading;
- *after*: ``pointformer.utils.threads`` as ``tools/train.py`` and ``make demo`` run: the wait policy
  of ``prepare_environment`` (``OMP_WAIT_POLICY=PASSIVE`` when other work runs at the process's
  start, OpenMP's default on a quiet machine; decided when the child starts, so beside the load or
  not) and ``ThreadGovernor`` (auto threads, updated before each step).

Each round runs both threadings quiet, then starts ``busy`` busy-looping processes (the competing
load), runs both again beside them and stops them; rounds interleave, medians over rounds. The
ratio that matters is loaded / quiet throughput per threading (target: at least 1/3 beside two busy
processes on two cores).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass

from pointformer.benchmarks.core import Report, Row, RunConfig, Timing, load_average, load_note

DEMO_CONFIG = "demo/waymo_flatformer_demo.yaml"
BUSY_LOOP = "while True:\n    pass\n"
# A child's entry: the tools' wait-policy choice comes before anything imports torch (OpenMP reads
# the policy once, when torch loads; this module's own imports load torch).
CHILD_MAIN = (
    "import sys\n"
    "from pointformer.utils.threads import prepare_environment\n"
    "if '--tools-threading' in sys.argv:\n"
    "    prepare_environment()\n"
    "from pointformer.benchmarks.train_load import _child\n"
    "sys.exit(_child(sys.argv[1:]))\n"
)


@dataclass(frozen=True)
class Threading:
    """How a child process threads: whether it chooses its wait policy and thread count as the tools
    do (``pointformer.utils.threads``) or keeps OpenMP's and torch's defaults."""

    name: str
    tools: bool


THREADINGS = (
    Threading("before: OpenMP default (active) wait, torch default threads", False),
    Threading("after: the tools' threading (wait policy by load, auto threads)", True),
)


def child_env(threading: Threading) -> dict[str, str]:
    """The child's environment: the threading knobs unset (the child's own choice then decides)."""
    env = dict(os.environ)
    for key in ("OMP_NUM_THREADS", "POINTFORMER_THREADS", "OMP_WAIT_POLICY", "GOMP_SPINCOUNT"):
        env.pop(key, None)
    return env


def run_child(config: str, steps: int, warmup: int, quick: bool, threading: Threading) -> dict:
    """One child process's measurement: ``{"step_s": [...], "frames": int, "threads": [...],
    "wait_policy": str}``."""
    cmd = [sys.executable, "-c", CHILD_MAIN, "--child", "--config", config, "--steps", str(steps),
           "--warmup", str(warmup)]  # fmt: skip
    cmd += ["--quick"] if quick else []
    cmd += ["--tools-threading"] if threading.tools else []
    done = subprocess.run(cmd, env=child_env(threading), capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"train-load child failed ({done.returncode}): {done.stderr.strip()[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


class BusyLoad:
    """``count`` busy-looping Python processes, started on enter and killed on exit."""

    def __init__(self, count: int) -> None:
        self.count = count
        self.procs: list[subprocess.Popen] = []

    def __enter__(self) -> BusyLoad:
        self.procs = [subprocess.Popen([sys.executable, "-c", BUSY_LOOP]) for _ in range(self.count)]
        time.sleep(0.5)  # let them start spinning
        return self

    def __exit__(self, *exc: object) -> None:
        for p in self.procs:
            p.kill()
        for p in self.procs:
            p.wait()
        self.procs = []


def run_train_load(
    cfg: RunConfig, quick: bool, config: str = DEMO_CONFIG, steps: int | None = None, busy: int = 2
) -> Report:
    """Rows per threading: frames/s alone and beside ``busy`` busy processes (module docstring)."""
    load_before = load_average()
    steps = steps if steps is not None else (2 if quick else 5)
    rounds = max(1, min(cfg.repeats, 2 if quick else 3))
    warmup = max(1, min(cfg.warmup, 2))
    results: dict[tuple[str, bool], list[dict]] = {(t.name, b): [] for t in THREADINGS for b in (False, True)}
    for _ in range(rounds):
        for loaded in (False, True):
            with BusyLoad(busy if loaded else 0):
                for threading in THREADINGS:
                    results[(threading.name, loaded)].append(run_child(config, steps, warmup, quick, threading))
    report = Report()
    quiet_fps: dict[str, float] = {}
    for loaded in (False, True):
        case = f"demo training step beside {busy} busy processes" if loaded else "demo training step, no added load"
        for threading in THREADINGS:
            runs = results[(threading.name, loaded)]
            step_ms = statistics.median(s * 1e3 for r in runs for s in r["step_s"])
            fps = 1e3 / step_ms * runs[0]["frames"]
            threads = sorted({n for r in runs for n in r["threads"]})
            policies = sorted({r["wait_policy"] for r in runs})
            note = f"{fps:.2f} frames/s; torch threads {', '.join(map(str, threads))}; wait {', '.join(policies)}"
            if loaded:
                note += f"; **{fps / quiet_fps[threading.name]:.2f} of its quiet throughput**"
            else:
                quiet_fps[threading.name] = fps
            timing = Timing(step_ms, min(s * 1e3 for r in runs for s in r["step_s"]), len(runs) * steps)
            report.rows.append(Row(case, threading.name, timing, note))
    report.footnotes += [
        f"Config `{config}` (the `make demo` model), one ray-cast frame cropped to its range (`make_frame`), "
        f"batch of one frame; each measurement is a fresh process: {warmup} warm-up step(s), then {steps} timed "
        f"training steps (forward, summed losses, backward, clip, optimizer step); {rounds} round(s), each running "
        "both threadings quiet and then beside the load, medians over every timed step.",
        f"Competing load: {busy} busy-looping Python processes (`while True: pass`) started before and killed after "
        "the loaded measurements of a round.",
        "before = the threading the tools had (OpenMP's default wait policy, torch's default thread count); after = "
        "`pointformer.utils.threads` as `tools/train.py` and `make demo` run (`prepare_environment`: "
        "OMP_WAIT_POLICY=PASSIVE when other work runs as the process starts, OpenMP's default otherwise; "
        "ThreadGovernor: threads = CPUs - other runnable tasks, re-checked between steps); the notes give the wait "
        "policy each child ran with.",
        load_note(load_before),
    ]
    return report


def _child(argv: Sequence[str]) -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--child", action="store_true")
    p.add_argument("--config", required=True)
    p.add_argument("--steps", type=int, required=True)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--quick", action="store_true")
    p.add_argument("--tools-threading", action="store_true")
    args = p.parse_args(argv)

    wait_policy = os.environ.get("OMP_WAIT_POLICY", "default (active)")  # as CHILD_MAIN left it

    import torch

    from pointformer.benchmarks.detector import Variant, _training_step, load_model
    from pointformer.config import load_config
    from pointformer.runs.synthetic_frame import make_frame
    from pointformer.utils.threads import ThreadGovernor

    governor = ThreadGovernor() if args.tools_threading else None
    conf = load_config(args.config)
    device = torch.device("cpu")
    batch = make_frame(conf, args.quick).batch
    step = _training_step(load_model(conf, device), conf, batch, Variant(False), device)
    times, threads = [], [torch.get_num_threads()]
    for i in range(args.warmup + args.steps):
        if governor is not None:
            threads.append(governor.update())
        start = time.perf_counter()
        step()
        if i >= args.warmup:
            times.append(time.perf_counter() - start)
    print(json.dumps({"step_s": times, "frames": int(batch.batch_size), "threads": sorted(set(threads)),
                      "wait_policy": wait_policy}))  # fmt: skip
    return 0
