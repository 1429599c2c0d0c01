"""The ``eval`` benchmark: the detection metrics on Waymo- and nuScenes-scale inputs.

``run_eval`` concatenates the reports of ``EVAL_REPORTS`` (each metric suite appends its report
function there).
"""

from __future__ import annotations

from collections.abc import Callable

from pointformer.benchmarks.core import Report, RunConfig
from pointformer.benchmarks.eval_nuscenes import nuscenes_eval_report
from pointformer.benchmarks.eval_waymo import waymo_eval_report

# Report functions of the metric suites, run in this order by ``run_eval``.
EVAL_REPORTS: tuple[Callable[[RunConfig, bool], Report], ...] = (waymo_eval_report, nuscenes_eval_report)


def run_eval(cfg: RunConfig, quick: bool) -> Report:
    """Every report of ``EVAL_REPORTS``, concatenated."""
    report = Report()
    for make in EVAL_REPORTS:
        part = make(cfg, quick)
        report.rows += part.rows
        report.footnotes += part.footnotes
    return report
