"""A lead for the next part (not in the kernels): the channels-last normalize's row loop
written with explicit 16- and 32-lane intrinsics (widen, FMA with per-lane scale and
shift, narrow, one store), bfloat16 narrowed by the kernels' integer rounding (emul) or by
vcvtneps2bf16 (native: LLVM's ``fptrunc`` to ``bfloat`` on a 16- or 32-lane vector), and
float16 by F16C (half). In cache, 2 threads over blocks of 256 rows; inputs below 0x4000.
native is NOT bit-exact: it flushes float32 subnormals to zero (``bfloat-narrowing.txt``),
so a kernel would need the emulation on vectors that hold any. Run from the repo root:

    python results/cpu-2026-12-04-numba16-part6/bfloat_lanes.py

Minimum over 3 rounds of the median of 0.5 s of calls, ns an element."""

import pathlib
import sys
import time

import numba
import numpy as np

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[2]))
from llvmlite import ir
from llvmlite.ir import types as irt
from numba import types
from numba.extending import intrinsic
from backends import _numba_halves as H  # noqa: E402
from backends._numba_stores import _operand  # noqa: E402
class BFloatType(irt._BaseFloatType):
    null = "0.0"; intrinsic_name = "bf16"
    def __str__(self): return "bfloat"
    def format_constant(self, value): return irt._format_double(value)
BFloatType._create_instance()
def _native(builder, floats):
    return builder.bitcast(builder.fptrunc(floats, H._shaped(floats.type, BFloatType())), H._shaped(floats.type, ir.IntType(16)))
def make(narrow, lanes, widen=H._from_bfloat):
    @intrinsic
    def aff(typingctx, source, at, bits, a, c):
        def codegen(context, builder, sig, args):
            wide = widen(builder, H._load_bits(context, builder, sig.args[0], args[0], args[1], lanes))
            sc = _operand(context, builder, sig.args[3], args[3], wide.type, lanes)
            sh = _operand(context, builder, sig.args[4], args[4], wide.type, lanes)
            y = builder.fadd(builder.fmul(wide, sc, flags=["contract"]), sh, flags=["contract"])
            H._store_bits(context, builder, sig.args[2], args[2], args[1], narrow(builder, y))
            return context.get_dummy_value()
        return types.void(source, at, bits, a, c), codegen
    return aff
emul16 = make(H._to_bfloat, 16); native16 = make(_native, 16); half16 = make(H._to_half, 16, H._from_half)
emul32 = make(H._to_bfloat, 32); native32 = make(_native, 32)
def rows(f, lanes):
    @numba.njit
    def r(source, target, scale, shift):
        C = source.shape[1]
        for p in range(source.shape[0]):
            row = source[p]; into = target[p]
            for j in range(0, C - C % lanes, lanes):
                f(row, j, into, scale[j:], shift[j:])
    @numba.njit(parallel=True)
    def run(x, out, sc, sh, block):
        for t in numba.prange(x.shape[0] // block):
            r(x[t * block:(t + 1) * block], out[t * block:(t + 1) * block], sc, sh)
    return run
variants = {"emul16": rows(emul16, 16), "native16": rows(native16, 16), "half16": rows(half16, 16), "emul32": rows(emul32, 32), "native32": rows(native32, 32)}
def med(f, s=0.5):
    f(); ts = []; end = time.perf_counter() + s
    while time.perf_counter() < end:
        t = time.perf_counter(); f(); ts.append(time.perf_counter() - t)
    return np.median(ts) * 1e3
rng = np.random.default_rng(0)
for P, C in [(8192, 320), (16384, 512)]:
    x = (rng.standard_normal((P, C)).astype(np.float32).view(np.uint32) >> 16).astype(np.uint16) & np.uint16(0x3FFF)
    out = np.empty_like(x); sc = rng.standard_normal(C + 32).astype(np.float32); sh = rng.standard_normal(C + 32).astype(np.float32)
    res = {n: [] for n in variants}
    for rep in range(3):
        for n, r in variants.items(): res[n].append(med(lambda: r(x, out, sc, sh, 256)))
    print(P, C, " | ".join("%s %.3f" % (n, min(v) * 1e6 / (P * C)) for n, v in res.items()), "ns/el", flush=True)
