#!/usr/bin/env bash
# The prepared GPU check for a lent GPU machine (one command, tiers that fit a short loan; docs/install.md).
#
#   bash .ci/gpu_check.sh 1,2      # first `run` command, timeout_s 300: tiers 1 and 2 (270 s)
#   bash .ci/gpu_check.sh 3        # a second command if device time is left (240 s)
#   GPU_CHECK_DRY=1 bash .ci/gpu_check.sh 1,2,3   # print the steps and budgets, run nothing
#
# Tiers, each with its own budget (a step's timeout is cut to what is left of its tier, so
# a tier never overruns):
#   1 (120 s) default-suite verification of cupy and numba-cuda on cuda (torch beside
#             them), one bench of sd-unet / sd-vae / kernelbench against torch.
#   2 (150 s) compute-sanitizer memcheck and racecheck on one case per kernel path (fused
#             items, split + ticketed merge in one wave and in three, channels-last
#             vectorized, scalar 7x7), ncu DRAM bytes of the large shape with
#             --cache-control none and a kernel filter (one read + one write: about 2x
#             the tensor), launch counts.
#   3 (240 s) adversarial suite, torch-compile, the drop-in module's CUDA tests, crosscheck.
# Results are archived after every step ($OUT/gpu-results.tgz, unpack under
# results/<gpu>-<date>/), so a command cut short still returns what finished.
set -uo pipefail
export PYTHONUNBUFFERED=1 XLA_PYTHON_CLIENT_PREALLOCATE=false
TIERS="${1:-1,2}"
OUTDIR="${OUT:-/tmp/gnbench-out}"
R="$OUTDIR/r"; mkdir -p "$R"
DRY="${GPU_CHECK_DRY:-}"
declare -A BUDGET=([1]=120 [2]=150 [3]=240)
TIER_END=0

archive() { [ -n "$DRY" ] || tar -czf "$OUTDIR/gpu-results.tgz" -C "$OUTDIR" r; }

# step NAME SECONDS COMMAND...: run under min(SECONDS, what is left of the tier), log to $R/NAME.txt
step() {
  local name="$1" limit="$2"; shift 2
  local left=$(( TIER_END - $(date +%s) ))
  (( limit > left )) && limit=$left
  if [ -n "$DRY" ]; then echo "  step $name: ${limit}s: $*"; return 0; fi
  if (( limit < 5 )); then echo "skipped: tier budget spent" > "$R/$name.txt"; archive; return 0; fi
  local start=$(date +%s)
  timeout "$limit" "$@" > "$R/$name.txt" 2>&1
  local rc=$?
  echo "[$name exit $rc after $(( $(date +%s) - start ))s of ${limit}s]" >> "$R/$name.txt"
  echo "$name: exit $rc, $(( $(date +%s) - start ))s"
  archive
}

tier() {  # tier N: start its clock
  TIER_END=$(( $(date +%s) + BUDGET[$1] ))
  echo "tier $1 (${BUDGET[$1]} s)"
}

# one case per kernel path (plans as harness.launches computes them for an H100/H200)
FUSED=8x256x32x32-g32-float16-contiguous-normal-s0              # fused items, 128-bit (8 x half)
SPLIT_ONE_WAVE=2x320x64x64-g32-float16-contiguous-normal-s0     # split, 3 chunks a group, one wave
SPLIT_WAVES=1x512x128x128-g32-float32-contiguous-normal-s0      # sd-vae float32: split, 32 chunks, 3 waves
CHANNELS_LAST=2x320x64x64-g32-float16-channels_last-normal-s0   # channels-last: items of 2 channels, split
SCALAR=2x512x7x7-g32-float32-contiguous-normal-s0               # S = 49: items of one element (fused)
LARGE=8x128x256x256-g8-float32-contiguous-normal-s0             # 256 MiB: 128 chunks a group, waves of 3

if [ -z "$DRY" ]; then
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv > "$R/gpu.csv" 2>&1
  python3 -c "import torch, jax, numpy, cupy, numba, numba_cuda; print('torch', torch.__version__, 'jax', jax.__version__, 'numpy', numpy.__version__, 'cupy', cupy.__version__, 'numba', numba.__version__, 'numba-cuda', numba_cuda.__version__)" > "$R/versions.txt" 2>&1
  git log -1 --format='%H %cI' > "$R/commit.txt" 2>/dev/null || true
  date -u +%FT%TZ > "$R/date.txt"
fi

if [[ ",$TIERS," == *",1,"* ]]; then
  tier 1
  step verify-default 70 python3 -m harness verify --suite default --backends torch,cupy,numba-cuda --devices cuda --out "$R/verify-default"
  step bench 50 python3 -m harness bench --suite sd-unet,sd-vae,kernelbench --backends torch,cupy,numba-cuda --devices cuda --budget 0.25 --out "$R/bench"
fi

if [[ ",$TIERS," == *",2,"* ]]; then
  tier 2
  for tool in memcheck racecheck; do
    step "sanitizer-$tool" 45 compute-sanitizer --tool $tool --error-exitcode 9 python3 -m harness verify --backends cupy,numba-cuda --devices cuda \
      --case "$FUSED" --case "$SPLIT_ONE_WAVE" --case "$SPLIT_WAVES" --case "$CHANNELS_LAST" --case "$SCALAR" --in-process --out "$R/sanitizer-$tool"
  done
  step ncu-dram 45 ncu --cache-control none --kernel-name regex:gn_ --metrics dram__bytes_read.sum,dram__bytes_write.sum,gpu__time_duration.sum \
    --target-processes all python3 -m harness verify --backends cupy --devices cuda --case "$LARGE" --case "$SPLIT_WAVES" --in-process --out "$R/ncu"
  step launches 15 python3 -m harness.launches --device cuda
fi

if [[ ",$TIERS," == *",3,"* ]]; then
  tier 3
  step verify-adversarial 90 python3 -m harness verify --suite adversarial --backends torch,cupy,numba-cuda --devices cuda --out "$R/verify-adversarial"
  step torch-compile 60 python3 -m harness verify --suite default --backends torch-compile --devices cuda --out "$R/verify-compile"
  step dropin-cuda 50 python3 -m pytest -o addopts="" -q -p no:cacheprovider -rs tests/test_dropin_cuda.py
  step crosscheck 35 python3 -m harness.crosscheck --device cuda --budget 1 --rounds 2
fi

[ -n "$DRY" ] || { tail -n 6 "$R"/*.txt; archive; }
