"""The emulated op tests again, built with AddressSanitizer and UndefinedBehaviorSanitizer: the
kernels' and wrappers' out-of-bounds accesses (global memory, static and dynamic shared memory,
torch tensors' buffers) and undefined behaviour (overflow, misaligned or null access, bad shifts)
abort the run with a report. Python is not instrumented, so the sanitizer's runtime is preloaded
into a pytest subprocess."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from cuda_emulation import build

ASAN_OPTIONS = ":".join([
    "detect_leaks=0",  # CPython and torch keep allocations alive until exit by design
    "halt_on_error=1",
    "abort_on_error=0",
    "detect_odr_violation=0",  # the extension and pointformer._C share inline functions of headers
])  # fmt: skip
# Every emulated op test except the repetitions of the same launches that the plain run already
# covers (gradcheck's hundreds of evaluations, opcheck's fake/compile passes, determinism reruns):
# under ASan on this 2-core machine they would triple the run.
SELECTION = "not gradcheck and not opcheck and not deterministic and not compile"


def sanitizer_runtime(name: str) -> str:
    path = subprocess.run(["c++", f"-print-file-name={name}"], capture_output=True, text=True, check=True).stdout
    return path.strip()


@pytest.mark.slow
@pytest.mark.cuda_emulated
@pytest.mark.timeout(2400)
def test_emulated_op_tests_under_asan_and_ubsan():
    env = dict(os.environ)
    env.update(
        # libstdc++ too: loaded later (by torch), its __cxa_throw would be unknown to ASan's
        # interceptor, which then aborts at the first C++ exception (every TORCH_CHECK test).
        LD_PRELOAD=f"{sanitizer_runtime('libasan.so')} {sanitizer_runtime('libstdc++.so.6')}",
        PF_CUDA_EMULATION="asan",
        ASAN_OPTIONS=ASAN_OPTIONS,
        UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1",
        OMP_NUM_THREADS="1",
    )
    command = [
        sys.executable,
        "-m",
        "pytest",
        "-p",
        "no:cacheprovider",
        "-m",
        "cuda_emulated and not slow",
        "-k",
        SELECTION,
        "tests/ops",
    ]
    result = subprocess.run(command, cwd=build.ROOT, env=env, capture_output=True, text=True, timeout=2300)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-8000:]
    assert "cuda emulation: asan build" in output, "the subprocess did not run the sanitized build"
    assert " passed" in output and " failed" not in output
