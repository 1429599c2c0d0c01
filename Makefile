# The README's set-up commands. Every target creates what it needs and is idempotent: a second
# run reuses the environment and rebuilds only what changed (ninja).
PYTHON ?= python3
VENV   ?= .venv
VPY    := $(VENV)/bin/python
TORCH_PIN := torch==2.13.0
PYTEST_ARGS ?=

.PHONY: venv deps build test test-fast fuzz demo bench lint clean crosscheck-waymo tsan gpu-check

$(VPY):
	$(PYTHON) -m venv $(VENV)

venv: $(VPY)

# torch goes first and alone, pinned: any later requirement that names torch is then satisfied
# by the local CPU wheel instead of pulling the CUDA builds from the registry.
$(VENV)/.deps: requirements.txt requirements-nodeps.txt | $(VPY)
	ldconfig -p | grep -q libusb-1.0 || (apt-get update -qq && apt-get install -y -qq libusb-1.0-0)
	$(VPY) -c "import torch" 2>/dev/null || $(VPY) -m pip install -q $(TORCH_PIN)
	$(VPY) -m pip install -q -r requirements.txt
	$(VPY) -m pip install -q --no-deps -r requirements-nodeps.txt
	touch $@

deps: $(VENV)/.deps

# Editable install once (puts tools/ and tests on the package), then an in-place build of
# pointformer._C on every call: ninja makes the second build a no-op.
$(VENV)/.installed: setup.py | $(VENV)/.deps
	POINTFORMER_NO_EXT=1 $(VPY) -m pip install -q --no-build-isolation --no-deps -e .
	touch $@

build: $(VENV)/.deps $(VENV)/.installed
	$(VPY) setup.py -q build_ext --inplace

# Lint first (style and the import layers), so a submission with a style or layering error fails
# before the suite runs.
test: lint build
	$(VPY) -m pytest $(PYTEST_ARGS)

# glibc hands every freed block over 32 MiB back to the kernel, so each CPU training step would
# page-fault its large per-point tensors in anew (about 10 % of a demo step): keep freed memory in
# the heap instead (the CPU-training advice of PyTorch's performance guide, without jemalloc).
CPU_MALLOC_ENV := MALLOC_MMAP_MAX_=0 MALLOC_TRIM_THRESHOLD_=68719476736

# The README's main command: synthetic Waymo-format data, conversion, FlatFormer training on this
# CPU, the official Waymo table and pictures of the detections (pointformer/runs/demo.py).
# tools/demo.py chooses the threading (README "CPU threads"): OMP_WAIT_POLICY=PASSIVE only when other
# work already runs on the CPUs (on a quiet machine it cost the demo ~40 % of its speed), auto threads.
demo: build
	$(CPU_MALLOC_ENV) $(VPY) tools/demo.py

test-fast: build
	$(VPY) -m pytest -m "not slow" $(PYTEST_ARGS)

# The readers' fuzzers at length (random, FUZZ_EXAMPLES inputs per reader; `make test` runs a short,
# derandomized pass). Inputs that break a reader are saved under tests/fuzz/regressions/.
FUZZ_EXAMPLES ?= 5000
fuzz: build
	POINTFORMER_FUZZ=long POINTFORMER_FUZZ_EXAMPLES=$(FUZZ_EXAMPLES) $(VPY) -m pytest tests/fuzz -s $(PYTEST_ARGS)

bench: build
	$(VPY) tools/benchmark.py ops --write docs/benchmarks.md
	$(VPY) tools/benchmark.py grouping --write docs/benchmarks.md
	$(VPY) tools/benchmark.py attention --repeats 5 --warmup 1 --write docs/benchmarks.md
	$(VPY) tools/benchmark.py data --write docs/benchmarks.md
	$(VPY) tools/benchmark.py eval --write docs/benchmarks.md
	$(VPY) tools/benchmark.py detector --cfg waymo_flatformer.yaml --repeats 3 --warmup 1 --write docs/benchmarks.md
	$(VPY) tools/benchmark.py train-load --write docs/benchmarks.md

# The differential test of the Waymo metrics against the official TF op (not part of `make test`):
# the op lives in its own environment, created on first use (about 2.8 GB, TensorFlow 2.13,
# numpy < 2); the cases and the comparison run in pointformer's. CROSSCHECK_ARGS passes options,
# e.g. CROSSCHECK_ARGS="--cases 2000 --first-seed 1000" or "--objects PRED.bin GT.bin".
WAYMO_VENV ?= .venv-waymo
CROSSCHECK_ARGS ?=

$(WAYMO_VENV)/.official: requirements-waymo-official.txt
	$(PYTHON) -m venv $(WAYMO_VENV)
	$(WAYMO_VENV)/bin/python -m pip install -q -r requirements-waymo-official.txt
	touch $@

crosscheck-waymo: build $(WAYMO_VENV)/.official
	$(VPY) tools/crosscheck_waymo.py --official-python $(WAYMO_VENV)/bin/python $(CROSSCHECK_ARGS)

# The op tests' CUDA cases under the emulation built with ThreadSanitizer (tests/cuda_emulation):
# optional and slow (minutes). tsan.supp explains each suppression.
tsan: build
	LD_PRELOAD="$$(c++ -print-file-name=libtsan.so) $$(c++ -print-file-name=libstdc++.so.6)" PF_CUDA_EMULATION=tsan OMP_NUM_THREADS=1 \
	TSAN_OPTIONS="halt_on_error=1 suppressions=$(CURDIR)/tests/cuda_emulation/tsan.supp" \
	$(VPY) -m pytest -p no:cacheprovider -m "cuda_emulated and not slow" tests/ops $(PYTEST_ARGS)

# On a machine with a GPU, a CUDA torch and nvcc (its own Python, not this venv): CUDA build in
# place, CUDA tests, CUDA benchmark rows, one results file (tools/gpu_check.sh; under 8 min on an H100).
gpu-check:
	tools/gpu_check.sh $(GPU_CHECK_RESULTS)

# Linters are development tools, not dependencies: installed into the environment on demand.
# lint-imports checks the package's layers and cycles (the contracts in pyproject.toml); it reads
# the source from the working directory, so it needs no build. import-linter 2.15 is the newest
# release that still installs on Python 3.10 (the README's minimum); grimp is its graph builder.
LINTERS := ruff==0.17.5 clang-format==23.1.5 import-linter==2.15 grimp==3.18

lint: $(VENV)/.deps
	$(VPY) -m pip install -q $(LINTERS)
	$(VENV)/bin/ruff check pointformer tools tests setup.py
	$(VENV)/bin/ruff format --check pointformer tools tests setup.py
	$(VENV)/bin/clang-format --dry-run --Werror $$(find csrc tests/cuda_emulation -name '*.h' -o -name '*.cuh' -o -name '*.cpp' -o -name '*.cu')
	$(VENV)/bin/lint-imports --no-cache

clean:
	rm -rf build pointformer/_C*.so *.egg-info
