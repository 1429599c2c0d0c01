"""Builds the project's CUDA code (the ``*.cu`` kernels and the torch-facing ``*_cuda.cpp``
wrappers) as host C++ against the CUDA emulation in ``include/``, into a test-only extension that
registers every op under ``torch.ops.pointformer_emu`` for CPU tensors.

The sources are copied into ``build/cuda_emulation/<variant>/src`` (the tree of ``csrc/``) with a
small, line-preserving rewrite of what macros cannot express:

- ``kernel<<<grid, block, smem, stream>>>(args)`` becomes
  ``::pf_emu::launch("kernel", kernel, grid, block, smem, stream)(args)``;
- ``extern __shared__ T name[];`` becomes a pointer to the launch's dynamic shared buffer;
- ``__shared__ T name[...];`` becomes a static array registered with the emulation (which poisons
  it before every block);
- ``TORCH_LIBRARY(pointformer, ...)`` / ``TORCH_LIBRARY_IMPL(pointformer, CUDA, ...)`` register
  under ``pointformer_emu`` for the CPU key, and the wrappers' ``.is_cuda()`` checks accept CPU
  tensors (the emulation has no device memory).

Each rewritten file starts with a ``#line`` directive naming the original, so compiler messages
and sanitizer reports point into ``csrc/``. Files are only rewritten when their text changes, and
ninja (through ``torch.utils.cpp_extension``) rebuilds only what changed.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CSRC = ROOT / "csrc"
INCLUDE = Path(__file__).resolve().parent / "include"
BUILD = ROOT / "build" / "cuda_emulation"
NAMESPACE = "pointformer_emu"

# Compiler flags of each build variant. -O1 keeps the compile time of the 20 translation units
# small while the emulated kernels still run fast enough for the tests' small inputs.
COMMON_FLAGS = ["-std=c++20", "-O1", "-fvisibility=hidden", "-DPF_CUDA_EMULATION"]
VARIANTS: dict[str, list[str]] = {
    "plain": [],
    "asan": ["-g", "-fno-omit-frame-pointer", "-fsanitize=address,undefined", "-fno-sanitize-recover=all"],
    "tsan": ["-g", "-fsanitize=thread"],
}
# The sanitizer runtime each variant needs preloaded into the Python process.
RUNTIMES = {"asan": "libasan.so", "tsan": "libtsan.so"}

_LAUNCH = re.compile(
    r"(?P<kernel>[A-Za-z_]\w*(?:<[^<>;(){}]*>)?)(?P<space>\s*)<<<(?P<config>.*?)>>>",
    re.DOTALL,
)
_EXTERN_SHARED = re.compile(
    r"extern\s+__shared__\s+(?:__align__\s*\(\s*\d+\s*\)\s+)?(?P<type>[\w:]+(?:\s+[\w:]+)*?)\s+(?P<name>\w+)\s*\[\s*\]\s*;"
)
_STATIC_SHARED = re.compile(r"__shared__\s+(?P<type>[\w:<>\s]+?)\s+(?P<name>\w+)\s*(?P<dims>(?:\[[^\]\n]*\])*)\s*;")


class RewriteError(RuntimeError):
    """A construct of the CUDA sources that the rewrite does not understand."""


def _launch(match: re.Match) -> str:
    kernel, config = match["kernel"], match["config"]
    # Newlines between the kernel and <<< move inside the call, so every line keeps its number.
    return f'::pf_emu::launch({match["space"]}"{kernel}", {kernel}, {config})'


def _extern_shared(match: re.Match) -> str:
    return f"{match['type']}* {match['name']} = ::pf_emu::dynamic_shared<{match['type']}>();"


def _static_shared(match: re.Match) -> str:
    name = match["name"]
    return (
        f"static {match['type']} {name}{match['dims']}; "
        f"static const bool pf_emu_registered_{name} = ::pf_emu::register_shared(&{name}, sizeof({name}));"
    )


def rewrite(text: str, path: Path) -> str:
    """The emulation's version of one csrc file (same number of lines)."""
    out = _LAUNCH.sub(_launch, text)
    out = _EXTERN_SHARED.sub(_extern_shared, out)
    out = _STATIC_SHARED.sub(_static_shared, out)
    out = out.replace("TORCH_LIBRARY(pointformer,", f"TORCH_LIBRARY({NAMESPACE},")
    out = out.replace("TORCH_LIBRARY_IMPL(pointformer, CUDA,", f"TORCH_LIBRARY_IMPL({NAMESPACE}, CPU,")
    if path.name.endswith("_cuda.cpp"):
        out = out.replace(".is_cuda()", ".is_cpu()")
    for leftover in ("<<<", "__shared__"):
        for number, line in enumerate(out.splitlines(), 1):
            if leftover in line and not line.lstrip().startswith("//"):
                raise RewriteError(f"{path}:{number}: cannot rewrite {leftover!r} for the emulation: {line.strip()}")
    if out.count("\n") != text.count("\n"):
        raise RewriteError(f"{path}: the rewrite changed the number of lines")
    return f'#line 1 "{path}"\n{out}'


def _write_if_changed(path: Path, text: str) -> None:
    if path.exists() and path.read_text() == text:
        return  # an unchanged mtime keeps ninja's objects valid
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def rewrite_tree(csrc: Path, dest: Path) -> list[Path]:
    """Rewrites every file of ``csrc`` into ``dest`` (same layout, ``.cu`` as ``.cu.cpp``) and
    returns the translation units of the emulated extension: each kernel file, and one unity file
    that includes every torch-facing wrapper and the schema registration (torch's headers are
    then parsed once instead of ten times: most of the build's cost)."""
    kernels, torch_files = [], []
    for path in sorted(csrc.rglob("*")):
        if path.suffix not in (".h", ".cuh", ".cpp", ".cu"):
            continue
        rel = path.relative_to(csrc)
        target = dest / (str(rel) + ".cpp" if path.suffix == ".cu" else rel)
        _write_if_changed(target, rewrite(path.read_text(), path))
        if path.suffix == ".cu":
            kernels.append(target)
        elif path.name.endswith("_cuda.cpp") or path.name == "registration.cpp":
            torch_files.append(target)
    unity = dest / "torch_unity.cpp"
    lines = ["// Generated by tests/cuda_emulation/build.py: the wrappers and the schemas in one unit."]
    lines += [f'#include "{t.relative_to(dest)}"' for t in torch_files]
    _write_if_changed(unity, "\n".join(lines) + "\n")
    return [*kernels, unity]


def _ninja_file(name: str, sources: list[Path], flags: list[str], ldflags: list[str], directory: Path) -> str:
    import sysconfig

    import torch
    from torch.utils.cpp_extension import include_paths, library_paths

    includes = [f"-I{INCLUDE}"] + [f"-isystem {p}" for p in include_paths()]
    includes.append(f"-isystem {sysconfig.get_paths()['include']}")
    abi = int(torch._C._GLIBCXX_USE_CXX11_ABI)
    cflags = [*flags, "-fPIC", f"-D_GLIBCXX_USE_CXX11_ABI={abi}", f"-DTORCH_EXTENSION_NAME={name}", *includes]
    libs = [f"-L{p}" for p in library_paths()] + ["-lc10", "-ltorch_cpu", "-ltorch"]
    lines = [
        "ninja_required_version = 1.3",
        f"cflags = {' '.join(cflags)}",
        f"ldflags = -shared {' '.join(ldflags)} {' '.join(libs)}",
        "rule compile",
        "  command = c++ -MMD -MF $out.d $cflags -c $in -o $out",
        "  depfile = $out.d",
        "  deps = gcc",
        "rule link",
        "  command = c++ $in $ldflags -o $out",
    ]
    objects = []
    for source in sources:
        obj = directory / "obj" / (str(source.relative_to(directory / "src")).replace("/", "__") + ".o")
        objects.append(obj)
        lines.append(f"build {obj}: compile {source}")
    lines.append(f"build {directory / (name + '.so')}: link {' '.join(map(str, objects))}")
    lines.append(f"default {directory / (name + '.so')}")
    return "\n".join(lines) + "\n"


def _ninja() -> str:
    """The environment's ninja (requirements.txt pins it), else the one on PATH."""
    beside = Path(sys.executable).with_name("ninja")
    found = str(beside) if beside.exists() else shutil.which("ninja")
    if found is None:
        raise RuntimeError("ninja is needed to build the CUDA emulation: pip install ninja (requirements.txt)")
    return found


def build(variant: str = "plain") -> Path:
    """Builds (or reuses) the emulated extension of ``variant`` and returns the library's path,
    without loading it: a sanitized build loads only into a process that preloaded the
    sanitizer's runtime. Raises ``RuntimeError`` with the compiler's output when the build fails."""
    if variant not in VARIANTS:
        raise ValueError(f"cuda emulation variant must be one of {sorted(VARIANTS)}, got {variant!r}")
    directory = BUILD / variant
    sources = rewrite_tree(CSRC, directory / "src")
    name = f"pointformer_emu_{variant}"
    ldflags = [f for f in VARIANTS[variant] if f.startswith("-fsanitize")]
    _write_if_changed(
        directory / "build.ninja", _ninja_file(name, sources, COMMON_FLAGS + VARIANTS[variant], ldflags, directory)
    )
    # The children must not inherit a preloaded sanitizer runtime (the compiler is not instrumented).
    env = {k: v for k, v in os.environ.items() if k != "LD_PRELOAD"}
    jobs = os.environ.get("MAX_JOBS", str(os.cpu_count() or 1))
    result = subprocess.run([_ninja(), "-C", str(directory), "-j", jobs], env=env, capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"building the {variant} CUDA emulation failed:\n{(result.stdout + result.stderr)[-6000:]}")
    return directory / f"{name}.so"


def build_program(name: str, driver: Path, variant: str = "plain", kernel: tuple[Path, str] | None = None) -> Path:
    """Compiles a standalone emulated program (no torch): ``driver`` (rewritten like the kernels)
    and, when given, ``kernel = (original .cu path, text)`` (the original's text or a mutant of it),
    which the driver includes as ``KERNEL_SOURCE``. Reuses the executable when nothing changed."""
    if variant not in VARIANTS:
        raise ValueError(f"cuda emulation variant must be one of {sorted(VARIANTS)}, got {variant!r}")
    directory = BUILD / "programs"
    rewrite_tree(CSRC, directory / "src")  # the headers the kernel files include relatively
    flags = ["-std=c++20", "-O1", "-pthread", "-DPF_CUDA_EMULATION", f"-I{INCLUDE}", *VARIANTS[variant]]
    if kernel is not None:
        original, text = kernel
        rel = original.relative_to(CSRC)
        target = directory / "src" / rel.parent / f"{name}.cu.cpp"
        _write_if_changed(target, rewrite(text, original))
        flags.append(f'-DKERNEL_SOURCE="{target}"')
    source = directory / "drivers" / f"{name}.cpp"
    _write_if_changed(source, rewrite(driver.read_text(), driver))
    executable = directory / f"{name}_{variant}"
    stamp = executable.with_suffix(".cmd")
    command = ["c++", *flags, str(source), "-o", str(executable)]
    inputs = "\n".join([" ".join(command), source.read_text(), *(kernel[1:] if kernel else [])])
    fresh = _newer(executable, INCLUDE) and _newer(executable, directory / "src")
    if executable.exists() and stamp.exists() and stamp.read_text() == inputs and fresh:
        return executable
    env = {k: v for k, v in os.environ.items() if k != "LD_PRELOAD"}
    result = subprocess.run(command, env=env, capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"building {executable.name} failed:\n{result.stderr[-6000:]}")
    stamp.write_text(inputs)
    return executable


def _newer(path: Path, headers: Path) -> bool:
    """Whether ``path`` exists and is newer than every header under ``headers``."""
    if not path.exists():
        return False
    built = path.stat().st_mtime
    return all(h.stat().st_mtime <= built for h in headers.rglob("*") if h.suffix in (".h", ".cuh"))
