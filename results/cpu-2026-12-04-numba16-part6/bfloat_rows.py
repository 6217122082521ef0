"""The channels-last normalize's row loop (16-bit bits in and out, ``x * a + c`` per
channel) in cache, 2 threads over blocks of 256 rows (part 6): bfloat16 in and out with the
kernels' integer rounding (emul), the same with vcvtneps2bf16 (LLVM's ``fptrunc`` to
``bfloat``; native), float16 in and out by F16C (f16), and the two mixtures (bfloat16
widening with F16C narrowing, F16C widening with the bfloat16 rounding), which split the
difference between widening and narrowing. The inputs are bits below 0x4000 (finite,
positive, in both formats). Run from the repo root:

    python results/cpu-2026-12-04-numba16-part6/bfloat_rows.py

Minimum over 3 rounds of the median of 0.5 s of calls."""

import numba
import numpy as np

from _bfloat_native import H, median_ms, native_of, row_bits


def _rows(widen, narrow):
    """A parallel runner of the row loop ``narrow(widen(x) * scale + shift)`` per channel,
    over blocks of rows."""

    @numba.njit(fastmath={"contract"})
    def rows(source, target, scale, shift):
        for p in range(source.shape[0]):
            row, into = source[p], target[p]
            for j in range(scale.shape[0]):
                into[j] = narrow(widen(row[j]) * scale[j] + shift[j])

    @numba.njit(parallel=True)
    def run(x, out, scale, shift, block):
        for t in numba.prange(x.shape[0] // block):
            rows(x[t * block:(t + 1) * block], out[t * block:(t + 1) * block], scale, shift)

    return run


VARIANTS = {"emul": _rows(H.bfloat_value, H.bfloat_of), "native": _rows(H.bfloat_value, native_of),
            "f16": _rows(H.half_value, H.half_of), "bf-widen+f16-narrow": _rows(H.bfloat_value, H.half_of),
            "f16-widen+bf-narrow": _rows(H.half_value, H.bfloat_of)}
for P, C in [(8192, 320), (16384, 512), (512, 512)]:
    x = row_bits(0, P, C)
    scale, shift = np.random.default_rng(1).standard_normal((2, C)).astype(np.float32)
    out = x.copy()
    best = {name: float("inf") for name in VARIANTS}
    for _ in range(3):
        for name, run in VARIANTS.items():
            best[name] = min(best[name], median_ms(lambda: run(x, out, scale, shift, min(256, P)), 0.5))
    print(P, C, " | ".join(f"{name} {ms * 1e6 / (P * C):.3f} ns/el" for name, ms in best.items()), flush=True)
