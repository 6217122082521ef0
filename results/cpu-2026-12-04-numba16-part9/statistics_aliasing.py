"""Does the channels-last statistics pass alias too? The row-by-row loop of
``_sums_along_channels`` (float32, sums u1/u2 in L1, 16 rows at a time), copied here with
u1 and u2 passed in, on a 512 KiB block from L2 (one thread), u1 at each offset from x
modulo 4 KiB (u2 half a page from u1). Prints the median time over offsets and the six
worst offsets. Run from the repo root:

    python results/cpu-2026-12-04-numba16-part9/statistics_aliasing.py

Output: ``statistics-aliasing.txt``. (The kernel allocates its u1/u2 per block, so they land
wherever NRT puts them.)
"""
import sys
import time
sys.path.insert(0, "results/cpu-2026-12-04-numba16-part8")
import numba, numpy as np
from _interleaved import race
from backends import _numba_cpu_kernels as K

@numba.njit(cache=False)
def rows_loop(block, centre, u1, u2, reps):
    positions, channels = block.shape
    for r in range(reps):
        for first in range(0, positions, 16):
            u1[:] = 0.0
            u2[:] = 0.0
            for p in range(first, min(first + 16, positions)):
                row = block[p]
                for c in range(channels):
                    d = row[c] - centre[c]
                    u1[c] += d
                    u2[c] += d * d
    return u1[0]

def run(C, positions, reps=20):
    nb = positions * C * 4
    arena = np.empty(nb + 3 * 8192 + 4096, np.uint8)
    base = (-arena.ctypes.data) % 4096
    x = arena[base:base + nb].view(np.float32).reshape(positions, C); x[...] = np.random.default_rng(0).standard_normal((positions, C))
    side = np.empty(4 * 8192, np.uint8)
    sbase = (-side.ctypes.data) % 4096
    centre = np.zeros(C, np.float32)
    res = {}
    for off in range(0, 4096, 64) if C * 4 >= 4096 else range(0, 4096, 32):
        u1 = side[sbase + off: sbase + off + C * 4].view(np.float32)
        u2 = side[sbase + 8192 + ((off + 2048) % 4096): sbase + 8192 + ((off + 2048) % 4096) + C * 4].view(np.float32)
        rows_loop(x, centre, u1, u2, 2)
        ts = []
        for _ in range(7):
            t0 = time.perf_counter(); rows_loop(x, centre, u1, u2, reps); ts.append(time.perf_counter() - t0)
        res[off] = np.median(ts) / reps
    med = np.median(list(res.values()))
    worst = sorted(res.items(), key=lambda kv: -kv[1])[:6]
    best = min(res.values())
    gb = nb / med / 1e9
    print(f"C={C} positions={positions} (block {nb >> 10} KiB, from L2): median {med*1e6:.1f} us ({gb:.1f} GB/s one thread), best {med/best:.2f}x faster than median; worst offsets (u1 - x mod 4096):",
          [(o, round(t / med, 2)) for o, t in worst], flush=True)

for C, positions in [(128, 1024), (64, 2048), (512, 256), (320, 400)]:
    run(C, positions)
