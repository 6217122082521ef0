"""AVX512-BF16's vcvtneps2bf16 against numba-cpu's integer round-to-nearest-even for
float32 -> bfloat16 (part 6). Run from the repo root:

    python results/cpu-2026-12-04-numba16-part6/bfloat_narrowing.py

LLVM lowers ``fptrunc <N x float> to <N x bfloat>`` to vcvtneps2bf16 on a CPU with
AVX512-BF16 (this one has it). Compared bit for bit with ``_numba_halves.bfloat_of`` (the
emulation the kernels use, equal to ml_dtypes) over 2^24 float32 patterns in each of
eight exponent/sign ranges, then both timed on 8192 values in L1 (scalar loops that LLVM
vectorizes)."""

import time

import numba
import numpy as np

from _bfloat_native import H, native_of

@numba.njit
def native(values, out):
    for i in range(values.size):
        out[i] = native_of(values[i])


@numba.njit
def emulated(values, out):
    for i in range(values.size):
        out[i] = H.bfloat_of(values[i])


low = np.arange(1 << 24, dtype=np.uint32)
a, b = np.empty(low.size, np.uint16), np.empty(low.size, np.uint16)
for high in (0x00, 0x01, 0x3F, 0x7F, 0x80, 0x81, 0xBF, 0xFF):
    values = (low | np.uint32(high << 24)).view(np.float32)
    native(values, a)
    emulated(values, b)
    differ = np.nonzero(a != b)[0]
    example = [(hex(int(values.view(np.uint32)[i])), hex(int(a[i])), hex(int(b[i]))) for i in differ[:2]]
    print(f"float32 bits 0x{high:02x}xxxxxx: {differ.size} of {low.size} differ (bits, vcvtneps2bf16, emulation): {example}")
assembly = next(iter(native.inspect_asm().values()))
print("vcvtneps2bf16 in the machine code:", "vcvtneps2bf16" in assembly)
values = np.random.default_rng(0).standard_normal(1 << 13).astype(np.float32)
out = np.empty(values.size, np.uint16)
for name, call in (("vcvtneps2bf16", native), ("emulation", emulated)):
    call(values, out)
    start = time.perf_counter()
    for _ in range(20000):
        call(values, out)
    print(f"{name:14} {(time.perf_counter() - start) / 20000 / values.size * 1e9:.3f} ns an element (in L1)")
