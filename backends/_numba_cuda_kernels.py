"""The numba-cuda GroupNorm kernels (imported only when the ``numba-cuda`` backend runs,
or by the tests, under the CUDA simulator or for PTX compilation).

Every kernel reads x through a flat 1-D buffer and explicit element strides
``(stride_n, stride_c, stride_s)`` over the logical (N, C, S) view of the input
(S = the product of the spatial dims, which the backend collapses): one kernel serves
contiguous, channels-last and strided inputs and device arrays of any framework
(``__cuda_array_interface__``), without a copy. Indices are 64-bit.

Within a group of ``cpg`` channels x S positions, element ``e`` is
``(channel e // S, position e % S)``, or ``(channel e % cpg, position e // cpg)`` when the
channel stride is the smaller one (channels-last): consecutive threads touch consecutive
addresses in both layouts.

Statistics: each thread runs Welford over its elements in the accumulation type (float32
for half inputs and float32, float64 for float64); a block merges its threads' triples
with Chan's formula in a fixed tree order; partial triples of a split group are merged in
chunk order. NaN and Inf propagate (a NaN/Inf mean or M2 reaches every element of the
group); a constant group has M2 = 0 exactly, so y = bias.

Kernels (built per (x kind, parameter kind, threads) by :func:`build`):

* ``fused``: one block per (sample, group); statistics, then normalize and affine in the
  same block, whose second read of the group comes from L2 (the backend only routes
  groups small enough that the blocks in flight keep their groups in L2).
* ``partial_stats`` + ``normalize_split``: a group split into ``chunks`` blocks of
  ``chunk`` elements; the first writes one (count, mean, M2) per block, the second merges
  its group's partials (every block the same order: identical statistics) and
  normalizes its chunk. The backend launches them per wave of groups whose bytes fit in
  half the L2, so the second read comes from L2.

bfloat16 travels as its 16 raw bits (``uint16``): Numba has no bfloat16 array type.
It widens exactly (bits << 16) and narrows with round-to-nearest-even, NaN kept quiet.
"""

from __future__ import annotations

import math

import numpy as np
from numba import config, cuda
from numba.core.types import float16, float32, float64, int32, int64, uint16

SIMULATOR = bool(config.ENABLE_CUDASIM)

if SIMULATOR:  # the simulator runs kernels as Python: the bit casts are NumPy views there

    def _int_as_float(bits):
        return np.array(bits, np.int32).view(np.float32)[()]

    def _float_as_int(value):
        return int(np.array(value, np.float32).view(np.int32)[()])

else:
    _int_as_float = cuda.libdevice.int_as_float
    _float_as_int = cuda.libdevice.float_as_int


@cuda.jit(device=True, inline=True)
def bf16_to_float(bits):
    """The float32 value of bfloat16 raw bits (exact)."""
    return _int_as_float(int32(bits) << 16)


@cuda.jit(device=True, inline=True)
def float_to_bf16(value):
    """bfloat16 raw bits of a float32: round to nearest even; NaN stays a quiet NaN."""
    bits = int64(_float_as_int(float32(value))) & 0xFFFFFFFF
    if (bits & 0x7FFFFFFF) > 0x7F800000:
        return uint16((bits >> 16) | 0x40)
    bits += 0x7FFF + ((bits >> 16) & 1)
    return uint16((bits >> 16) & 0xFFFF)


KINDS = ("float16", "bfloat16", "float32", "float64")


def _loader(kind, acc):
    if kind == "bfloat16":
        return bf16_to_float

    @cuda.jit(device=True, inline=True)
    def load(value):
        return acc(value)

    return load


def _storer(kind):
    if kind == "bfloat16":
        return float_to_bf16
    cast = {"float16": float16, "float32": float32, "float64": float64}[kind]

    @cuda.jit(device=True, inline=True)
    def store(value):
        return cast(value)

    return store


def accumulation(kind):
    """The numba type statistics are computed in for an input kind."""
    return float64 if kind == "float64" else float32


def build(x_kind: str, param_kind: str, threads: int):
    """The three kernels for inputs of ``x_kind`` and weight/bias of ``param_kind``,
    launched with ``threads`` threads a block (a power of two, at least 32)."""
    if threads < 32 or threads & (threads - 1):
        raise ValueError(f"threads must be a power of two >= 32; got {threads}")
    acc = accumulation(x_kind)
    load_x = _loader(x_kind, acc)
    load_p = _loader(param_kind, acc)
    store_y = _storer(x_kind)

    @cuda.jit(device=True, inline=True)
    def merge(count_a, mean_a, m2_a, count_b, mean_b, m2_b):
        """Chan et al.: the (count, mean, M2) of two disjoint sets."""
        count = count_a + count_b
        if count_b == 0:
            return count_a, mean_a, m2_a
        if count_a == 0:
            return count_b, mean_b, m2_b
        delta = mean_b - mean_a
        share = count_b / count
        return count, mean_a + delta * share, m2_a + m2_b + delta * delta * count_a * share

    @cuda.jit(device=True, inline=True)
    def address(e, n, c0, cpg, positions, stride_n, stride_c, stride_s, channels_inner):
        if channels_inner:
            c = c0 + e % cpg
            s = e // cpg
        else:
            c = c0 + e // positions
            s = e % positions
        return n * stride_n + c * stride_c + s * stride_s, c

    @cuda.jit(device=True, inline=True)
    def thread_welford(x, n, c0, cpg, positions, sx_n, sx_c, sx_s, inner, start, stop):
        count = acc(0)
        mean = acc(0)
        m2 = acc(0)
        for e in range(start, stop, threads):
            i, _ = address(e, n, c0, cpg, positions, sx_n, sx_c, sx_s, inner)
            value = load_x(x[i])
            count += 1
            delta = value - mean
            mean += delta / count
            m2 += delta * (value - mean)
        return count, mean, m2

    @cuda.jit(device=True, inline=True)
    def block_merge(count, mean, m2, counts, means, m2s):
        """Merge every thread's triple; all threads get the block's triple."""
        t = cuda.threadIdx.x
        counts[t] = count
        means[t] = mean
        m2s[t] = m2
        cuda.syncthreads()
        width = threads // 2
        while width > 0:
            if t < width:
                c, m, q = merge(counts[t], means[t], m2s[t], counts[t + width], means[t + width], m2s[t + width])
                counts[t] = c
                means[t] = m
                m2s[t] = q
            cuda.syncthreads()
            width //= 2
        return counts[0], means[0], m2s[0]

    @cuda.jit(device=True, inline=True)
    def normalize_range(x, w, b, y, n, c0, cpg, positions, sx_n, sx_c, sx_s, sy_n, sy_c, sy_s,
                        inner, start, stop, mean, rstd):
        for e in range(start, stop, threads):
            i, c = address(e, n, c0, cpg, positions, sx_n, sx_c, sx_s, inner)
            o, _ = address(e, n, c0, cpg, positions, sy_n, sy_c, sy_s, inner)
            scale = rstd * load_p(w[c])
            y[o] = store_y((load_x(x[i]) - mean) * scale + load_p(b[c]))

    @cuda.jit(device=True, inline=True)
    def rstd_of(count, m2, eps):
        return acc(1) / math.sqrt(m2 / count + eps)

    @cuda.jit
    def fused(x, w, b, y, groups, positions, sx_n, sx_c, sx_s, sy_n, sy_c, sy_s, inner, eps):
        """One block per (sample, group): statistics, then normalize + affine."""
        counts = cuda.shared.array(threads, acc)
        means = cuda.shared.array(threads, acc)
        m2s = cuda.shared.array(threads, acc)
        block = int64(cuda.blockIdx.x)
        n = block // groups
        cpg = w.shape[0] // groups
        c0 = (block % groups) * cpg
        size = cpg * positions
        t = int64(cuda.threadIdx.x)
        count, mean, m2 = thread_welford(x, n, c0, cpg, positions, sx_n, sx_c, sx_s, inner, t, size)
        count, mean, m2 = block_merge(count, mean, m2, counts, means, m2s)
        normalize_range(x, w, b, y, n, c0, cpg, positions, sx_n, sx_c, sx_s, sy_n, sy_c, sy_s,
                        inner, t, size, mean, rstd_of(count, m2, eps))

    @cuda.jit
    def partial_stats(x, partial, first, groups, channels, chunks, chunk, positions, sx_n, sx_c, sx_s, inner):
        """Block (group - first) * chunks + k: the (count, mean, M2) of chunk k of its group."""
        counts = cuda.shared.array(threads, acc)
        means = cuda.shared.array(threads, acc)
        m2s = cuda.shared.array(threads, acc)
        block = int64(cuda.blockIdx.x)
        group = first + block // chunks
        cpg = channels // groups
        start = (block % chunks) * chunk
        stop = min(start + chunk, cpg * positions)
        t = int64(cuda.threadIdx.x)
        count, mean, m2 = thread_welford(
            x, group // groups, (group % groups) * cpg, cpg, positions, sx_n, sx_c, sx_s, inner, start + t, stop
        )
        count, mean, m2 = block_merge(count, mean, m2, counts, means, m2s)
        if t == 0:
            partial[block, 0] = count
            partial[block, 1] = mean
            partial[block, 2] = m2

    @cuda.jit
    def normalize_split(x, w, b, y, partial, first, groups, chunks, chunk, positions,
                        sx_n, sx_c, sx_s, sy_n, sy_c, sy_s, inner, eps):
        """Block (group - first) * chunks + k: merge the group's partials in chunk order,
        then normalize + affine chunk k."""
        stats = cuda.shared.array(2, acc)
        block = int64(cuda.blockIdx.x)
        group = first + block // chunks
        cpg = w.shape[0] // groups
        t = int64(cuda.threadIdx.x)
        if t == 0:
            base = (block // chunks) * chunks
            count = acc(0)
            mean = acc(0)
            m2 = acc(0)
            for k in range(chunks):
                count, mean, m2 = merge(count, mean, m2, partial[base + k, 0], partial[base + k, 1],
                                        partial[base + k, 2])
            stats[0] = mean
            stats[1] = rstd_of(count, m2, eps)
        cuda.syncthreads()
        start = (block % chunks) * chunk
        stop = min(start + chunk, cpg * positions)
        normalize_range(x, w, b, y, group // groups, (group % groups) * cpg, cpg, positions,
                        sx_n, sx_c, sx_s, sy_n, sy_c, sy_s, inner, start + t, stop, stats[0], stats[1])

    return fused, partial_stats, normalize_split
