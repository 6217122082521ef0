#!/usr/bin/env bash
# The prepared GPU check for a session lent a machine (see ../shared/device/README.md):
#   run  command: bash .ci/gpu_check.sh   (timeout_s 300)
# It writes one archive, $OUT/gpu-results.tgz, to unpack under results/<gpu>-<date>/.
set -uo pipefail
export PYTHONUNBUFFERED=1 XLA_PYTHON_CLIENT_PREALLOCATE=false
R="${OUT:-/tmp/gnbench-out}/r"; mkdir -p "$R"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv > "$R/gpu.csv" 2>&1
python3 -c "import torch, jax, numpy; print('torch', torch.__version__, 'jax', jax.__version__, 'numpy', numpy.__version__)" > "$R/versions.txt" 2>&1
python3 -m harness list > "$R/list.txt" 2>&1
timeout 100 python3 -m harness verify --suite default --devices cuda --out "$R" > "$R/verify-default.txt" 2>&1
timeout 90 python3 -m harness bench --suite sd-unet,sd-vae,kernelbench --devices cuda --budget 0.5 --out "$R" > "$R/bench.txt" 2>&1
timeout 40 python3 -m harness.crosscheck --device cuda --budget 1 --rounds 2 > "$R/crosscheck-cuda.txt" 2>&1
tail -n 25 "$R"/*.txt
tar -czf "${OUT:-/tmp/gnbench-out}/gpu-results.tgz" -C "$(dirname "$R")" r && rm -rf "$R"
