"""What part 6's scripts share (``bfloat_narrowing.py``, ``bfloat_rows.py``,
``bfloat_lanes.py``; ``prefetch_rows.py`` its timing): vcvtneps2bf16 as LLVM emits it (``fptrunc`` to ``bfloat``: llvmlite
has no bfloat type, so a minimal one that prints its IR name), the repo's kernels helpers
on the path, and a timing helper. Not part of the kernels."""

import pathlib
import sys
import time

import numpy as np
from llvmlite import ir
from numba import types

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[2]))
from backends import _numba_halves as H  # noqa: E402


BFLOAT = H.BFLOAT  # LLVM's bfloat type (the kernels' own since part 7; this file defined it before)


def to_bfloat_native(builder, floats):
    """bfloat16 bits (i16, or a vector of them) of float32 by ``fptrunc``: vcvtneps2bf16
    on a CPU with AVX512-BF16 (subnormals flushed to zero)."""
    return builder.bitcast(builder.fptrunc(floats, H._shaped(floats.type, BFLOAT)),
                           H._shaped(floats.type, ir.IntType(16)))


native_of = H._one(to_bfloat_native, types.uint16, types.float32)  # one element, as H.bfloat_of


def median_ms(call, seconds):
    """Median milliseconds of ``call`` over ``seconds`` of calls (after one warm-up call)."""
    call()
    times, end = [], time.perf_counter() + seconds
    while time.perf_counter() < end:
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return float(np.median(times)) * 1e3


def row_bits(seed=0, rows=1, channels=1):
    """(rows, channels) uint16 bits below 0x4000: finite, positive values in both 16-bit
    formats (the high halves of standard-normal float32 values, masked)."""
    values = np.random.default_rng(seed).standard_normal((rows, channels)).astype(np.float32)
    return (values.view(np.uint32) >> 16).astype(np.uint16) & np.uint16(0x3FFF)
