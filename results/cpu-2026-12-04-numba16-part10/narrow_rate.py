"""The 16-bit channels-last normalize (_lane_rows_bits) alone, one thread, C = 512, on a
block kept in cache (64 and 4096 positions), bfloat16 and float16, plain and streaming
stores: ns per element. Run: python results/cpu-2026-12-04-numba16-part10/narrow_rate.py"""
import sys, time, numpy as np, numba
import pathlib
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[2]))
from backends import _numba_cpu_kernels as K
C = 512
@numba.njit
def rep(x, y, s, bfloat, stream, n):
    for _ in range(n):
        K._lane_rows_bits(x, y, s, s, bfloat, stream)
for P in (64, 4096):
    x = (np.random.default_rng(0).standard_normal((P, C)).astype(np.float32).view(np.uint32) >> 16).astype(np.uint16)
    y = np.empty_like(x); s = np.ones(C + 32, np.float32)
    for bfloat in (True, False):
        for stream in (False, True):
            n = max(1, (1 << 26) // x.size)
            rep(x, y, s, bfloat, stream, 1)
            t = time.perf_counter(); rep(x, y, s, bfloat, stream, n); dt = time.perf_counter() - t
            print(f"P={P} ({x.nbytes>>10} KiB) bfloat={bfloat} stream={stream}: {dt / (n * x.size) * 1e9:.3f} ns/element (1 thread)")
