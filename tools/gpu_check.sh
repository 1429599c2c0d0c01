#!/usr/bin/env bash
# One-call GPU check (`make gpu-check`): on a machine with a CUDA torch, nvcc and a GPU, builds
# pointformer._C with its CUDA kernels in place, runs the CUDA op tests, then the CUDA benchmark
# rows that docs/benchmarks.md lists under "cuda (not yet measured)", and writes everything to one
# results file. Sized for at most 8 minutes on an H100 including the build: every step has its own
# time limit, and a step that runs out is recorded as such while the later steps still run.
#
#   tools/gpu_check.sh [RESULTS]    RESULTS defaults to $OUT/gpu_check.md when $OUT is set (the
#                                   device tool's folder), else gpu_check.md
#
# Environment: PYTHON (default python3), MAX_JOBS (default: the number of CPUs), and the step
# limits below in seconds (BUILD_S, TEST_S, OPS_S, GROUPING_S, ATTENTION_S, DETECTOR_S, COMPARE_S).
set -u -o pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
RESULTS=${1:-${OUT:+$OUT/}gpu_check.md}
LOG_DIR=$(mktemp -d)
BUILD_S=${BUILD_S:-210} TEST_S=${TEST_S:-75} OPS_S=${OPS_S:-25} GROUPING_S=${GROUPING_S:-25}
ATTENTION_S=${ATTENTION_S:-40} DETECTOR_S=${DETECTOR_S:-45} COMPARE_S=${COMPARE_S:-45}
export MAX_JOBS=${MAX_JOBS:-$(nproc)} PYTHONUNBUFFERED=1 PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
STATUS=0

# The device must be there before anything is built: no GPU, no check.
if ! ARCH=$("$PYTHON" -c 'import torch; assert torch.cuda.is_available(), "no CUDA device"; print("%d.%d" % torch.cuda.get_device_capability())'); then
  echo "gpu_check: $PYTHON's torch sees no CUDA device; this check needs a GPU machine" >&2
  exit 2
fi
export TORCH_CUDA_ARCH_LIST=$ARCH FORCE_CUDA=1

{
  echo "# pointformer GPU check"
  echo
  echo "Date: $(date -u '+%Y-%m-%d %H:%M UTC')  "
  echo "Commit: $(git rev-parse --short HEAD 2>/dev/null || echo unknown)$(git diff --quiet 2>/dev/null || echo ' (with local changes)')  "
  echo "Device: $(nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null || echo unknown)  "
  echo "Torch: $("$PYTHON" -c 'import torch; print(torch.__version__, "CUDA", torch.version.cuda)'), nvcc: $(nvcc --version 2>/dev/null | tail -1), TORCH_CUDA_ARCH_LIST=$ARCH  "
  echo "Command: tools/gpu_check.sh (make gpu-check)"
  echo
  echo "| step | result | seconds |"
  echo "| --- | --- | --- |"
} >"$RESULTS"

# step NAME LIMIT COMMAND...: runs COMMAND with a time limit, logs its output, adds a table row.
step() {
  local name=$1 limit=$2
  shift 2
  local start=$SECONDS rc
  echo "gpu_check: $name (limit ${limit}s)" >&2
  timeout --kill-after=10 "$limit" "$@" >"$LOG_DIR/$name.log" 2>&1
  rc=$?
  local result="ok"
  if [ $rc -eq 124 ] || [ $rc -eq 137 ]; then result="timed out after ${limit}s"; STATUS=1
  elif [ $rc -ne 0 ]; then result="failed (exit $rc)"; STATUS=1; fi
  echo "| $name | $result | $((SECONDS - start)) |" >>"$RESULTS"
  return $rc
}

BENCH=("$PYTHON" tools/benchmark.py)
if step build "$BUILD_S" "$PYTHON" setup.py -q build_ext --inplace; then
  # The device tests only (ids name the device): the cpu and cuda-emulated cases run in CI anyway.
  step tests "$TEST_S" "$PYTHON" -m pytest -q -p no:cacheprovider tests/ops tests/structures -m "not slow" \
    -k "cuda and not emulated" -o addopts="" -rfEs
  step ops "$OPS_S" "${BENCH[@]}" ops --device cuda --repeats 10 --warmup 3 --write "$RESULTS"
  step grouping "$GROUPING_S" "${BENCH[@]}" grouping --device cuda --repeats 10 --warmup 3 --write "$RESULTS"
  step attention "$ATTENTION_S" "${BENCH[@]}" attention --device cuda --repeats 10 --warmup 3 --write "$RESULTS"
  # FlatFormer's detector per stage, fp32 and bf16 rows (the benchmark's own precision rows).
  step detector "$DETECTOR_S" "${BENCH[@]}" detector --cfg waymo_flatformer.yaml --device cuda --repeats 5 \
    --warmup 2 --write "$RESULTS"
  # Each 3D backbone against CenterPoint's VoxelResBackBone8x on the same frame.
  step backbones "$COMPARE_S" "${BENCH[@]}" detector --cfg waymo_flatformer.yaml waymo_dsvt_pillar.yaml \
    waymo_dsvt_voxel.yaml waymo_scatterformer.yaml waymo_centerpoint.yaml --compare-only --repeats 5 \
    --warmup 2 --device cuda --write "$RESULTS"
fi

{
  echo
  echo "## logs"
  for log in "$LOG_DIR"/*.log; do
    echo
    echo "### $(basename "$log" .log) (last 60 lines)"
    echo
    echo '```'
    tail -n 60 "$log"
    echo '```'
  done
} >>"$RESULTS"
echo "gpu_check: results in $RESULTS (status $STATUS, ${SECONDS}s)" >&2
exit $STATUS
