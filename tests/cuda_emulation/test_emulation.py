"""The CUDA emulation itself: indices, barriers, shared memory and its poisoning, launch limits,
the shared-memory opt-in, atomics, divergent barriers, error reporting (drivers/emulation_checks.cpp),
bit-exact half/bfloat16 conversions, warp intrinsics as compile errors, and the source rewrite."""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch
from cuda_emulation import build

pytestmark = pytest.mark.cuda_emulated
DRIVERS = Path(__file__).resolve().parent / "drivers"
CHECKS = [
    "indices",
    "barrier_and_static_shared",
    "shared_poisoned_between_blocks",
    "dynamic_shared_48k",
    "dynamic_shared_over_default",
    "dynamic_shared_opt_in",
    "dynamic_shared_device_limit",
    "invalid_configurations",
    "last_error_resets",
    "atomics",
    "divergent_barrier",
    "uniform_exit_before_barrier",
]


@pytest.fixture(scope="module")
def checks() -> Path:
    return build.build_program("emulation_checks", DRIVERS / "emulation_checks.cpp")


def test_execution_model(checks):
    result = subprocess.run([str(checks)], capture_output=True, text=True, timeout=120)
    lines = result.stdout.splitlines()
    assert lines == [f"ok {name}" for name in CHECKS], result.stdout + result.stderr
    assert result.returncode == 0


def test_half_conversions_are_bit_identical(checks, tmp_path):
    gen = torch.Generator().manual_seed(0)
    # Every rounding regime: random bit patterns (normals, subnormals, inf, NaN), values around the
    # half and bfloat16 ties, the half overflow threshold and the subnormal range.
    bits = torch.randint(-(2**31), 2**31 - 1, (200_000,), generator=gen, dtype=torch.int64).to(torch.int32)
    values = [bits.view(torch.float32)]
    half_grid = torch.arange(-(2**15), 2**15, dtype=torch.int32).to(torch.int16).view(torch.float16).float()
    finite = half_grid[torch.isfinite(half_grid)]
    values += [finite, torch.nextafter(finite, torch.tensor(float("inf"))), (finite[:-1] + finite[1:]) / 2]
    values.append(torch.tensor([65504.0, 65519.0, 65520.0, 65536.0, 2.0**-24, 2.0**-25, 3 * 2.0**-26, 1e-8]))
    values = torch.cat(values).contiguous()
    source, target = tmp_path / "in.bin", tmp_path / "out.bin"
    values.numpy().tofile(source)
    subprocess.run([str(checks), "convert", str(source), str(target)], check=True, timeout=120)
    out = np.fromfile(target, dtype=np.uint8)
    n = values.numel()
    pairs = torch.from_numpy(out[: 4 * n].copy()).view(torch.int16).view(n, 2)
    nan = torch.isnan(values)
    want_half = values.to(torch.float16).view(torch.int16)
    want_bf16 = values.to(torch.bfloat16).view(torch.int16)
    assert torch.equal(pairs[~nan, 0], want_half[~nan])
    assert torch.equal(pairs[~nan, 1], want_bf16[~nan])
    assert (
        torch.isnan(pairs[nan, 0].view(torch.float16)).all() and torch.isnan(pairs[nan, 1].view(torch.bfloat16)).all()
    )
    back = torch.from_numpy(out[4 * n :].copy()).view(torch.float32).view(2, 65536)
    every = torch.arange(-(2**15), 2**15, dtype=torch.int32).to(torch.int16)
    every = torch.cat([every[2**15 :], every[: 2**15]])  # bit patterns 0 .. 65535 in order
    for got, dtype in ((back[0], torch.float16), (back[1], torch.bfloat16)):
        want = every.view(dtype).float()
        same = (got == want) | (torch.isnan(got) & torch.isnan(want))
        assert same.all(), dtype


def test_warp_intrinsics_do_not_compile(tmp_path):
    source = tmp_path / "warp.cpp"
    source.write_text(
        "#include <cuda_runtime.h>\n"
        "__global__ void k(float* x) { x[threadIdx.x] = __shfl_down_sync(0xffffffffu, x[threadIdx.x], 1); }\n"
        "int main() { return 0; }\n"
    )
    result = subprocess.run(
        ["c++", "-std=c++20", "-fsyntax-only", f"-I{build.INCLUDE}", str(source)], capture_output=True, text=True
    )
    assert result.returncode != 0
    assert "__shfl_down_sync: warp-level intrinsics are not emulated" in result.stderr
    source.write_text("#include <cuda_runtime.h>\nint lanes() { return warpSize; }\n")
    result = subprocess.run(
        ["c++", "-std=c++20", "-fsyntax-only", f"-I{build.INCLUDE}", str(source)], capture_output=True, text=True
    )
    assert result.returncode != 0 and "warpSize: warp-level behaviour is not emulated" in result.stderr


def test_rewrite_preserves_lines_and_fails_loudly():
    text = (
        "__global__ void k(int* x) {\n"
        "  __shared__ float tile[4][5];  // note\n"
        "  extern __shared__ __align__(16) unsigned char raw[];\n"
        "}\n"
        "void go(int* x, cudaStream_t s) {\n"
        "  k<T, 4>\n"
        "      <<<grid_for(n), 64, 0, s>>>(x);\n"
        "}\n"
    )
    out = build.rewrite(text, Path("/src/k.cu")).splitlines()
    assert out[0] == '#line 1 "/src/k.cu"' and len(out) == text.count("\n") + 1
    assert out[2].startswith("  static float tile[4][5]; static const bool pf_emu_registered_tile = ")
    assert out[3] == "  unsigned char* raw = ::pf_emu::dynamic_shared<unsigned char>();"
    assert out[6] == "  ::pf_emu::launch("
    assert out[7] == '      "k<T, 4>", k<T, 4>, grid_for(n), 64, 0, s)(x);'
    with pytest.raises(build.RewriteError, match="cannot rewrite '__shared__'"):
        build.rewrite("__shared__ int a, b;\n", Path("/src/bad.cu"))
