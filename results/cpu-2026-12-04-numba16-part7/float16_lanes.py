"""float16 in cache, single thread: the backward's dx and the forward's affine step 8, 16
or 32 lanes a call (the kernels' intrinsics, ``_numba_halves._gradient_bits`` /
``_affine_bits`` with ``lanes``), planes of 256, 1024 and 4096 elements; inputs below
0x4000. Minimum over 5 rounds of the median of 0.3 s of calls, microseconds for all the
planes. Why the kernels keep float16's dx at 8 lanes and take its affine step 32 at a
time. Run from the repo root:

    python results/cpu-2026-12-04-numba16-part7/float16_lanes.py"""

import pathlib
import sys

import numba
import numpy as np

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from row_loops import H, bits, median_ms  # noqa: E402


def _dx(gradient, lanes):
    @numba.njit
    def run(x, dy, target, planes, n):
        for p in range(planes):
            s, g, d = x[p * n:(p + 1) * n], dy[p * n:(p + 1) * n], target[p * n:(p + 1) * n]
            for i in range(0, n, lanes):
                gradient(s, g, i, d, np.float32(0.9), np.float32(1.1), np.float32(0.01), np.float32(-0.02),
                         np.float32(0.03), np.float32(0.001))
    return run


def _affine(affine, lanes):
    @numba.njit
    def run(x, dy, target, planes, n):
        for p in range(planes):
            s, d = x[p * n:(p + 1) * n], target[p * n:(p + 1) * n]
            for i in range(0, n, lanes):
                affine(s, i, d, i, np.float32(1.3), np.float32(0.2))
    return run


if H.F16C:
    numba.set_num_threads(1)
    VARIANTS = {f"{name}{lanes}": make(factory(H._from_half, H._to_half, lanes=lanes), lanes)
                for name, make, factory in (("dx", _dx, H._gradient_bits), ("affine", _affine, H._affine_bits))
                for lanes in (8, 16, 32)}
    rng = np.random.default_rng(0)
    for n, planes in [(256, 640), (1024, 160), (4096, 40)]:
        x, dy = bits(rng, n * planes), bits(rng, n * planes)
        target = np.empty_like(x)
        best = dict.fromkeys(VARIANTS, float("inf"))
        for _ in range(5):
            for name, run in VARIANTS.items():
                best[name] = min(best[name], median_ms(lambda: run(x, dy, target, planes, n), 0.3))
        print(f"planes of {n}: " + " | ".join(f"{name} {ms * 1e3:.1f}" for name, ms in best.items()) + " us",
              flush=True)
else:
    print("this CPU has no F16C: the kernels' float16 is scalar code; nothing to compare")
