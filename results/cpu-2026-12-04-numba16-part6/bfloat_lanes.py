"""A lead for the next part (not in the kernels): the channels-last normalize's row loop
written with explicit 16- and 32-lane intrinsics (widen, FMA with per-lane scale and
shift, narrow, one store), bfloat16 narrowed by the kernels' integer rounding (emul) or by
vcvtneps2bf16 (native: LLVM's ``fptrunc`` to ``bfloat`` on a 16- or 32-lane vector), and
float16 by F16C (half). In cache, 2 threads over blocks of 256 rows; inputs below 0x4000.
native is NOT bit-exact: it flushes float32 subnormals to zero (``bfloat-narrowing.txt``),
so a kernel would need the emulation on vectors that hold any. Run from the repo root:

    python results/cpu-2026-12-04-numba16-part6/bfloat_lanes.py

Minimum over 3 rounds of the median of 0.5 s of calls, ns an element."""

import numba
import numpy as np
from numba import types
from numba.extending import intrinsic

from _bfloat_native import H, median_ms, row_bits, to_bfloat_native
from backends._numba_stores import _operand


def _affine(narrow, lanes, widen=H._from_bfloat):
    """An intrinsic ``(source, at, bits, a, c)``: bits[at:at + lanes] = ``narrow`` of
    ``widen(source[at:at + lanes]) * a[:lanes] + c[:lanes]`` (as the kernels' ``_affine_bits``)."""

    @intrinsic
    def affine(typingctx, source, at, bits, a, c):
        def codegen(context, builder, signature, args):
            wide = widen(builder, H._load_bits(context, builder, signature.args[0], args[0], args[1], lanes))
            scale, shift = (_operand(context, builder, signature.args[i], args[i], wide.type, lanes) for i in (3, 4))
            y = builder.fadd(builder.fmul(wide, scale, flags=["contract"]), shift, flags=["contract"])
            H._store_bits(context, builder, signature.args[2], args[2], args[1], narrow(builder, y))
            return context.get_dummy_value()

        return types.void(source, at, bits, a, c), codegen

    return affine


def _rows(affine, lanes):
    """A parallel runner of the row loop, ``lanes`` channels a call, over blocks of rows."""

    @numba.njit
    def rows(source, target, scale, shift):
        channels = source.shape[1]
        for p in range(source.shape[0]):
            row, into = source[p], target[p]
            for j in range(0, channels - channels % lanes, lanes):
                affine(row, j, into, scale[j:], shift[j:])

    @numba.njit(parallel=True)
    def run(x, out, scale, shift, block):
        for t in numba.prange(x.shape[0] // block):
            rows(x[t * block:(t + 1) * block], out[t * block:(t + 1) * block], scale, shift)

    return run


VARIANTS = {f"{name}{lanes}": _rows(_affine(narrow, lanes, widen), lanes)
            for name, narrow, widen, widths in (("emul", H._to_bfloat, H._from_bfloat, (16, 32)),
                                                ("native", to_bfloat_native, H._from_bfloat, (16, 32)),
                                                ("half", H._to_half, H._from_half, (16,)))
            for lanes in widths}
for P, C in [(8192, 320), (16384, 512)]:
    x = row_bits(0, P, C)
    scale, shift = np.random.default_rng(1).standard_normal((2, C + 32)).astype(np.float32)
    out = x.copy()
    best = {name: float("inf") for name in VARIANTS}
    for _ in range(3):
        for name, run in VARIANTS.items():
            best[name] = min(best[name], median_ms(lambda: run(x, out, scale, shift, 256), 0.5))
    print(P, C, " | ".join(f"{name} {ms * 1e6 / (P * C):.3f}" for name, ms in best.items()), "ns/el", flush=True)
