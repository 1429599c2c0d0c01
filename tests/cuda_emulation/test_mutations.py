"""Mutation tests: the harness can fail. Each case builds a copy of a real kernel file with one
injected bug of a kind a CUDA kernel can have, runs it under the emulation build that should
catch that kind (plain: result checks and barrier counting; asan: AddressSanitizer and
UndefinedBehaviorSanitizer; tsan: ThreadSanitizer), and asserts the report. The unmutated file
must pass the same driver under the same build, so each report is the mutation's doing."""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest
from cuda_emulation import build

pytestmark = pytest.mark.cuda_emulated
HERE = Path(__file__).resolve().parent
DRIVERS = HERE / "drivers"
BOXES = build.CSRC / "boxes" / "boxes_cuda.cu"
SEGMENT = build.CSRC / "reduce" / "segment_reduce_cuda.cu"


@dataclass(frozen=True)
class Mutant:
    kernel: Path
    driver: str
    variant: str
    old: str  # must occur exactly once in the kernel file
    new: str
    report: str  # a line of the expected report


MUTANTS = {
    # Reads one box past the end of the boxes array (global memory) for the last box.
    "out_of_bounds_read": Mutant(
        BOXES,
        "boxes_driver.cpp",
        "asan",
        "mask[idx] = point_in_box(points + i * stride_p, boxes + j * stride_b);",
        "mask[idx] = point_in_box(points + i * stride_p, boxes + (j + 1) * stride_b);",
        "ERROR: AddressSanitizer: heap-buffer-overflow",
    ),
    # Clears one word past the dynamic shared buffer of the NMS keep pass.
    "shared_out_of_bounds_write": Mutant(
        BOXES,
        "boxes_driver.cpp",
        "asan",
        "for (int64_t w = threadIdx.x; w < words; w += blockDim.x) removed[w] = 0;",
        "for (int64_t w = threadIdx.x; w <= words; w += blockDim.x) removed[w] = 0;",
        "ERROR: AddressSanitizer: heap-buffer-overflow",
    ),
    # Threads read the staged column boxes before the other threads wrote them.
    "missing_syncthreads": Mutant(
        BOXES,
        "boxes_driver.cpp",
        "tsan",
        "  __syncthreads();\n  const int64_t i = row_block * kNmsBlock + threadIdx.x;",
        "  const int64_t i = row_block * kNmsBlock + threadIdx.x;",
        "WARNING: ThreadSanitizer: data race",
    ),
    # The same bug on the fiber engine: thread 0 reads the staged boxes before threads 1.. wrote
    # them, so it compares against poisoned shared memory (NaN) and the mask comes out wrong.
    "missing_syncthreads_fibers": Mutant(
        BOXES,
        "boxes_driver.cpp",
        "plain",
        "  __syncthreads();\n  const int64_t i = row_block * kNmsBlock + threadIdx.x;",
        "  const int64_t i = row_block * kNmsBlock + threadIdx.x;",
        "boxes_driver: nms mask differs",
    ),
    # The barrier moves inside `if (threadIdx.x < cols)`: threads past a partial column block skip it.
    "barrier_in_divergent_code": Mutant(
        BOXES,
        "boxes_driver.cpp",
        "plain",
        "boxes[(col_start + threadIdx.x) * stride + f];\n  }\n  __syncthreads();",
        "boxes[(col_start + threadIdx.x) * stride + f];\n    __syncthreads();\n  }",
        "divergent __syncthreads in kernel nms_mask_kernel<T>",
    ),
    # The sum runs one row into the next segment (and past the row list for the last segment).
    "off_by_one_loop_bound": Mutant(
        SEGMENT,
        "segment_driver.cpp",
        "asan",
        "for (int64_t r = r0; r < r1; ++r) sum +=",
        "for (int64_t r = r0; r <= r1; ++r) sum +=",
        "ERROR: AddressSanitizer: heap-buffer-overflow",
    ),
}


def run(executable: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    env.pop("LD_PRELOAD", None)
    env["TSAN_OPTIONS"] = f"halt_on_error=1 suppressions={HERE / 'tsan.supp'}"
    env["ASAN_OPTIONS"] = "detect_leaks=0"
    return subprocess.run([str(executable)], capture_output=True, text=True, timeout=300, env=env)


@pytest.mark.parametrize("name", list(MUTANTS))
def test_mutant_is_reported(name):
    mutant = MUTANTS[name]
    text = mutant.kernel.read_text()
    assert text.count(mutant.old) == 1, f"{name}: the code to mutate changed in {mutant.kernel}; update the mutant"
    driver = DRIVERS / mutant.driver
    stem = Path(mutant.driver).stem
    original = build.build_program(f"{stem}_original", driver, mutant.variant, (mutant.kernel, text))
    control = run(original)
    assert control.returncode == 0, f"the unmutated kernel fails its driver:\n{control.stdout}{control.stderr}"
    mutated = build.build_program(
        f"{stem}_{name}", driver, mutant.variant, (mutant.kernel, text.replace(mutant.old, mutant.new))
    )
    result = run(mutated)
    assert result.returncode != 0, f"{name} was not reported:\n{result.stdout}{result.stderr}"
    assert mutant.report in result.stdout + result.stderr, result.stdout + result.stderr[-4000:]
