"""Builds pointformer, its native extension pointformer._C and the plain C library
pointformer._results_scan (csrc/standalone/: no torch, no Python API; loaded with ctypes by the
nuScenes results reader, so that `tools/eval.py nuscenes` needs no torch).

A CppExtension when the installed torch has no CUDA, a CUDAExtension (sm_80 and sm_90 unless
TORCH_CUDA_ARCH_LIST says otherwise) when it has CUDA or FORCE_CUDA=1. CUDA-only sources are the
`*.cu` kernels and the `*_cuda.cpp` wrappers that turn tensors into pointers for them.
"""

from __future__ import annotations

import os
from pathlib import Path

from setuptools import Extension, find_packages, setup

ROOT = Path(__file__).resolve().parent
CSRC = ROOT / "csrc"
STANDALONE = CSRC / "standalone"


def _wants_cuda() -> bool:
    import torch
    from torch.utils.cpp_extension import CUDA_HOME

    if os.environ.get("FORCE_CUDA", "0") == "1":
        return True
    return torch.version.cuda is not None and CUDA_HOME is not None


def _sources(with_cuda: bool) -> list[str]:
    sources = []
    for path in sorted(CSRC.rglob("*")):
        if path.suffix not in (".cpp", ".cu") or STANDALONE in path.parents:
            continue
        cuda_only = path.suffix == ".cu" or path.stem.endswith("_cuda")
        if cuda_only and not with_cuda:
            continue
        sources.append(str(path.relative_to(ROOT)))
    return sources


def _extensions():
    # The Makefile's editable install only registers the package; the extension is then built
    # once, in place, by `setup.py build_ext --inplace` (building it in both steps compiled twice).
    if os.environ.get("POINTFORMER_NO_EXT", "0") == "1":
        return []
    from torch.utils.cpp_extension import CppExtension, CUDAExtension

    # A plain library (a C ABI, no Python module init): built as an extension only so that
    # build_ext puts it beside the package.
    standalone = Extension(
        "pointformer._results_scan",
        [str((STANDALONE / "results_scan.cpp").relative_to(ROOT))],
        extra_compile_args={"cxx": ["-O3", "-std=c++20"]},
        language="c++",
    )
    with_cuda = _wants_cuda()
    # torch 2.13's headers need C++20. The extension defines PyInit__C itself and registers ops
    # through TORCH_LIBRARY only (no pybind), so it is built against the limited Python ABI.
    cxx = ["-O3", "-std=c++20"]
    define_macros = []
    if with_cuda:
        os.environ.setdefault("TORCH_CUDA_ARCH_LIST", "8.0;9.0")
        nvcc = ["-O3", "-std=c++20", "--expt-relaxed-constexpr", "-lineinfo"]
        define_macros.append(("POINTFORMER_WITH_CUDA", None))
        return [
            standalone,
            CUDAExtension(
                "pointformer._C",
                _sources(True),
                extra_compile_args={"cxx": cxx, "nvcc": nvcc},
                define_macros=define_macros,
                py_limited_api=True,
            ),
        ]
    return [
        standalone,
        CppExtension(
            "pointformer._C",
            _sources(False),
            extra_compile_args={"cxx": cxx},
            define_macros=define_macros,
            py_limited_api=True,
        ),
    ]


def _cmdclass():
    from torch.utils.cpp_extension import BuildExtension

    return {"build_ext": BuildExtension.with_options(use_ninja=True)}


setup(
    name="pointformer",
    version="0.1.0",
    description="Sparse voxel transformers for LiDAR 3D perception",
    packages=find_packages(include=["pointformer", "pointformer.*"]),
    python_requires=">=3.10",
    ext_modules=_extensions(),
    cmdclass=_cmdclass(),
)
