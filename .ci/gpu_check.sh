#!/usr/bin/env bash
# The prepared GPU check for a session lent a machine (see ../shared/device/README.md):
#   run  command: bash .ci/gpu_check.sh   (timeout_s 300)
# It writes one archive, $OUT/gpu-results.tgz, to unpack under results/<gpu>-<date>/.
set -uo pipefail
export PYTHONUNBUFFERED=1 XLA_PYTHON_CLIENT_PREALLOCATE=false
R="${OUT:-/tmp/gnbench-out}/r"; mkdir -p "$R"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv > "$R/gpu.csv" 2>&1
python3 -c "import torch, jax, numpy, cupy, numba, numba_cuda; print('torch', torch.__version__, 'jax', jax.__version__, 'numpy', numpy.__version__, 'cupy', cupy.__version__, 'numba', numba.__version__, 'numba-cuda', numba_cuda.__version__)" > "$R/versions.txt" 2>&1
python3 -m harness list > "$R/list.txt" 2>&1
timeout 100 python3 -m harness verify --suite default --devices cuda --out "$R" > "$R/verify-default.txt" 2>&1
timeout 90 python3 -m harness bench --suite sd-unet,sd-vae,kernelbench --devices cuda --budget 0.5 --out "$R" > "$R/bench.txt" 2>&1
timeout 60 python3 -m harness verify --suite adversarial --backends torch,cupy,numba-cuda --devices cuda --out "$R" > "$R/verify-adversarial.txt" 2>&1
# our kernels under compute-sanitizer: one case of each path (fused, split in waves), memcheck and racecheck
for tool in memcheck racecheck; do
  timeout 60 compute-sanitizer --tool $tool --error-exitcode 9 python3 -m harness verify --backends cupy,numba-cuda --devices cuda \
    --case 2x320x16x16-g32-float32-contiguous-normal-s0 --case 1x64x128x128-g32-float16-channels_last-normal-s0 \
    --in-process --out "$R/sanitizer-$tool" > "$R/sanitizer-$tool.txt" 2>&1; echo "compute-sanitizer $tool exit $?" >> "$R/sanitizer-$tool.txt"
done
# dram bytes of the split path (SD VAE shape): one read + one write means ~2x the tensor's bytes
timeout 60 ncu --metrics dram__bytes_read.sum,dram__bytes_write.sum --target-processes all python3 -m harness verify \
  --backends cupy,numba-cuda --devices cuda --case 1x512x128x128-g32-float32-contiguous-normal-s0 --in-process \
  --out "$R/ncu" > "$R/ncu-dram.txt" 2>&1
# the drop-in module on CUDA: zero-copy bridges, torch's current stream, autocast, every CUDA backend vs the oracle
timeout 60 python3 -m pytest -q -p no:cacheprovider -rs tests/test_dropin_cuda.py > "$R/dropin-cuda.txt" 2>&1
timeout 40 python3 -m harness.crosscheck --device cuda --budget 1 --rounds 2 > "$R/crosscheck-cuda.txt" 2>&1
tail -n 25 "$R"/*.txt
tar -czf "${OUT:-/tmp/gnbench-out}/gpu-results.tgz" -C "$(dirname "$R")" r && rm -rf "$R"
