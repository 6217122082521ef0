"""The channels-last normalize's row loop (16-bit bits in and out, ``x * a + c`` per
channel) in cache, 2 threads over blocks of 256 rows (part 6): bfloat16 in and out with the
kernels' integer rounding (emul), the same with vcvtneps2bf16 (LLVM's ``fptrunc`` to
``bfloat``; native), float16 in and out by F16C (f16), and the two mixtures (bfloat16
widening with F16C narrowing, F16C widening with the bfloat16 rounding), which split the
difference between widening and narrowing. The inputs are bits below 0x4000 (finite,
positive, in both formats). Run from the repo root:

    python results/cpu-2026-12-04-numba16-part6/bfloat_rows.py

Minimum over 3 rounds of the median of 0.5 s of calls."""

import pathlib
import sys
import time

import numba
import numpy as np

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[2]))
from llvmlite import ir
from llvmlite.ir import types as irt
from numba import types
from backends import _numba_halves as H  # noqa: E402
class BFloatType(irt._BaseFloatType):
    null = "0.0"; intrinsic_name = "bf16"
    def __str__(self): return "bfloat"
    def format_constant(self, value): return irt._format_double(value)
BFloatType._create_instance()
def _native(builder, floats):
    return builder.bitcast(builder.fptrunc(floats, H._shaped(floats.type, BFloatType())), H._shaped(floats.type, ir.IntType(16)))
native_of = H._one(_native, types.uint16, types.float32)

@numba.njit(fastmath={"contract"})
def rows_emul(source, target, scale, shift):
    for p in range(source.shape[0]):
        row = source[p]; into = target[p]
        for j in range(scale.shape[0]):
            into[j] = H.bfloat_of(H.bfloat_value(row[j]) * scale[j] + shift[j])

@numba.njit(fastmath={"contract"})
def rows_native(source, target, scale, shift):
    for p in range(source.shape[0]):
        row = source[p]; into = target[p]
        for j in range(scale.shape[0]):
            into[j] = native_of(H.bfloat_value(row[j]) * scale[j] + shift[j])

@numba.njit(fastmath={"contract"})
def rows_half(source, target, scale, shift):
    for p in range(source.shape[0]):
        row = source[p]; into = target[p]
        for j in range(scale.shape[0]):
            into[j] = H.half_of(H.half_value(row[j]) * scale[j] + shift[j])

@numba.njit(fastmath={"contract"})
def rows_bwiden_hnarrow(source, target, scale, shift):
    for p in range(source.shape[0]):
        row = source[p]; into = target[p]
        for j in range(scale.shape[0]):
            into[j] = H.half_of(H.bfloat_value(row[j]) * scale[j] + shift[j])

@numba.njit(fastmath={"contract"})
def rows_hwiden_bnarrow(source, target, scale, shift):
    for p in range(source.shape[0]):
        row = source[p]; into = target[p]
        for j in range(scale.shape[0]):
            into[j] = H.bfloat_of(H.half_value(row[j]) * scale[j] + shift[j])

@numba.njit(parallel=True)
def run(f_id, x, out, scale, shift, block):
    blocks = x.shape[0] // block
    for t in numba.prange(blocks):
        s, e = t * block, (t + 1) * block
        if f_id == 0: rows_emul(x[s:e], out[s:e], scale, shift)
        elif f_id == 1: rows_native(x[s:e], out[s:e], scale, shift)
        elif f_id == 2: rows_half(x[s:e], out[s:e], scale, shift)
        elif f_id == 3: rows_bwiden_hnarrow(x[s:e], out[s:e], scale, shift)
        else: rows_hwiden_bnarrow(x[s:e], out[s:e], scale, shift)

def med(f, s=1.0):
    f(); ts = []; end = time.perf_counter() + s
    while time.perf_counter() < end:
        t = time.perf_counter(); f(); ts.append(time.perf_counter() - t)
    return np.median(ts) * 1e3
rng = np.random.default_rng(0)
for P, C in [(8192, 320), (16384, 512), (512, 512)]:
    x = (rng.standard_normal((P, C)).astype(np.float32).view(np.uint32) >> 16).astype(np.uint16) & np.uint16(0x3FFF)
    out = np.empty_like(x); sc = rng.standard_normal(C).astype(np.float32); sh = rng.standard_normal(C).astype(np.float32)
    blk = 256 if P >= 512 else P
    r = {n: [] for n in ("emul", "native", "f16", "bf-widen+f16-narrow", "f16-widen+bf-narrow")}
    for rep in range(3):
        for i, n in enumerate(r): r[n].append(med(lambda: run(i, x, out, sc, sh, blk), 0.5))
    print(P, C, " | ".join("%s %.3f ns/el" % (n, min(v) * 1e6 / (P * C)) for n, v in r.items()), flush=True)
