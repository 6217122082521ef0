"""The channels-last statistics' row-by-row loop with and without software prefetch, on
x read from DRAM (part 6). Run from the repo root:

    python results/cpu-2026-12-04-numba16-part6/prefetch_rows.py

Each (shape, dtype) is one sample's channels-last memory (P, C) cut into the blocks the
kernel uses; every block's per-channel sums are taken by the loop of
``_sums_along_channels`` (row by row, ``tiles`` off), prefetching each row's lines
``ahead`` bytes ahead, or not at all (ahead = 0). Minimum over 4 interleaved rounds of the
median of 0.6 s of calls, 2 threads, pinned allocator."""

import ml_dtypes
import numba
import numpy as np

from _bfloat_native import median_ms  # the repo on the path, and the timing helper
from backends import _numba_cpu_kernels as K
from backends._numba_stores import prefetch
from harness.timing import pin_allocator


@numba.njit
def _sums(block, k, s1, s2, bfloat, ahead_bytes):
    positions, channels = block.shape
    flat = block.reshape(-1)
    ahead = ahead_bytes // flat.itemsize
    t1, t2 = np.zeros(channels, k.dtype), np.zeros(channels, k.dtype)
    for first in range(0, positions, K.ROWS):
        t1[:] = 0.0
        t2[:] = 0.0
        for p in range(first, min(first + K.ROWS, positions)):
            if ahead and (p + 1) * channels + ahead <= flat.size:
                for e in range(p * channels + ahead, (p + 1) * channels + ahead, 64 // flat.itemsize):
                    prefetch(flat, e)
            row = block[p]
            for c in range(channels):
                d = K._widened(row[c], bfloat) - k[c]
                t1[c] += d
                t2[c] += d * d
        for c in range(channels):
            s1[c] += t1[c]
            s2[c] += t2[c]


@numba.njit(parallel=True)
def _statistics(x, block, bfloat, ahead_bytes):
    positions, channels = x.shape
    blocks = positions // block
    out = np.zeros((blocks, channels))
    for task in numba.prange(blocks):
        b = x[task * block:(task + 1) * block]
        k = K._floats_for(b, channels)
        k[:] = 0.0
        s1, s2 = np.zeros(channels), np.zeros(channels)
        _sums(b, k, s1, s2, bfloat, ahead_bytes)
        out[task] = s1
    return out


pin_allocator()
threads = numba.get_num_threads()
rng = np.random.default_rng(0)
print(f"{threads} threads; ms for all blocks' sums (min over 4 rounds)")
for shape, dtype in [((1, 512, 256, 256), "bfloat16"), ((1, 512, 256, 256), "float16"),
                     ((1, 512, 128, 128), "bfloat16"), ((1, 128, 512, 512), "float32")]:
    n, channels = shape[:2]
    positions = int(np.prod(shape[2:]))
    values = rng.standard_normal((positions, channels), dtype=np.float32)
    x = values if dtype == "float32" else values.astype(ml_dtypes.bfloat16 if dtype == "bfloat16" else np.float16).view(np.uint16)
    block = K._wave_plan(x.reshape(1, positions, channels), threads)[0]
    best = {ahead: np.inf for ahead in (0, 2048, 4096)}
    for _ in range(4):
        for ahead in best:
            best[ahead] = min(best[ahead], median_ms(lambda: _statistics(x, block, dtype == "bfloat16", ahead), 0.6) / 1e3)
    print(f"{'x'.join(map(str, shape)):>15} {dtype:9} block {block:5}  " +
          "  ".join(f"ahead {ahead:4}: {t * 1e3:7.3f}" for ahead, t in best.items()), flush=True)
