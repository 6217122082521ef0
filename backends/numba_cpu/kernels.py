"""The numba-cpu kernels (imported only when the ``numba-cpu`` backend runs).

Module-level so Numba can cache their machine code on disk (``cache=True``).

Statistics of a group are built from chunks of at most ``CHUNK`` elements, then the
chunks' (n, mean, M2) merged in float64 with Chan's formula, in chunk order. No running
sum spans more than one chunk, so a group of 10^7 elements keeps full accuracy.

A chunk's moments are sums of ``d = x - k`` in the input's precision, vectorized
(``fastmath`` reassociation within a chunk only): ``mean_c = k + sum(d)/n`` and
``M2_c = sum(d^2) - sum(d)^2/n`` (the corrected form of Chan, Golub & LeVeque 1983). In
one pass, the centre ``k`` is the mean of the chunk's first :data:`PIVOT` elements: one
read of the chunk, so the statistics run at the speed of a bare read of x. The result is
kept when ``k`` is close to the chunk mean, ``sum(d)^2/n <= sum(d^2)/4`` (that is
``n (mean_c - k)^2 <= M2_c / 3``): then ``sum(d^2) <= 4/3 M2_c`` and the rounding error is
at most 4/3 that of centring on the mean itself. Otherwise (a step or an outlier among
the first elements, NaN, Inf, overflow) the chunk, still in L1, is summed again by the
two-pass method: ``k`` = its mean rounded to the input's precision, so x - k is exact
for x near the mean and a large offset is harmless.
"""

import numba
import numpy as np
from numba import types
from numba.extending import overload

from .halves import (
    F16C,
    STREAM_LANES,
    affine_bfloat_bits32,
    affine_bfloat_bits32_stream,
    affine_bits,
    affine_half_bits32,
    affine_half_bits32_stream,
    bfloat_of,
    bfloat_value,
    gradient_bits,
    half_of,
    half_value,
    narrow_bfloat8,
    narrow_f16c,
    stream_span,
    widen_bfloat8,
    widen_f16c,
)
from .stores import LINE, address, advise_huge_pages, prefetch, stream_affine, stream_fence, stream_gradient
from .tiles import LANES, TILE_ROWS, tile_sums

CHUNK = 1 << 12


SMALL = 64  # a chunk of fewer elements is summed in float64: free at that size, and tiny groups stay exact


@numba.njit(cache=True)
def _rounded(value, dtype_of):
    """``value`` rounded to the dtype of the array ``dtype_of``."""
    scratch = np.empty(1, dtype_of.dtype)
    scratch[0] = value
    return scratch[0]


@numba.njit(fastmath={"reassoc", "contract"}, cache=True)
def _two_pass(chunk, zero):
    """(n, mean, M2) of ``chunk``: corrected two-pass, the sums in ``zero``'s precision;
    the mean they are centered on is rounded to the chunk's dtype (so x - mean is exact
    for x near the mean)."""
    n = chunk.size
    total = zero
    for i in range(n):  # range(0, n): no negative-index wraparound check, so LLVM vectorizes
        total += chunk[i]
    mean = _rounded(total / n, chunk)  # the chunk mean in the row's precision
    deviations = zero
    squares = zero
    for i in range(n):
        d = chunk[i] - mean
        deviations += d
        squares += d * d
    m2 = np.float64(squares) - np.float64(deviations) * np.float64(deviations) / n
    return n, np.float64(mean) + np.float64(deviations) / n, m2


PIVOT = 16  # the first elements of a chunk, whose mean centres its one-pass sums


@numba.njit(fastmath={"reassoc", "contract"}, cache=True)
def _centred_sums(chunk, k):
    """(sum(d), sum(d^2)) over ``chunk``, d = x - k, in the chunk's precision."""
    total = chunk[0] - chunk[0]
    squares = total
    for i in range(chunk.size):
        d = chunk[i] - k
        total += d
        squares += d * d
    return total, squares


@numba.njit(cache=True)
def one_pass_moments(chunk):
    """(accepted, mean, M2) of ``chunk`` (at least :data:`PIVOT` elements) in one pass,
    centred on the mean of its first :data:`PIVOT` elements rounded to its dtype;
    ``accepted`` is False where that centre is too far from the chunk mean for the
    result to be as accurate as a two-pass one (see the module text), or the sums are
    not finite."""
    head = 0.0
    for i in range(PIVOT):
        head += chunk[i]
    k = _rounded(head / PIVOT, chunk)
    total, squares = _centred_sums(chunk, k)
    return _judged(k, total, squares, chunk.size)


@numba.njit(cache=True)
def _judged(k, total, squares, n):
    """(accepted, mean, M2) of a chunk of ``n`` from its one-pass sums about ``k``:
    accepted when ``sum(d)^2/n <= sum(d^2)/4`` and the sums are finite (module text)."""
    correction = np.float64(total) * np.float64(total) / n
    accepted = np.isfinite(squares) and correction * 4.0 <= squares
    return accepted, np.float64(k) + np.float64(total) / n, np.float64(squares) - correction


@numba.njit(cache=True)
def chunk_moments(row, start, stop):
    """(n, mean, M2) of row[start:stop], summed in the row's precision (8 float32 lanes a
    vector): one pass where :func:`one_pass_moments` accepts, else corrected two-pass;
    below :data:`SMALL` elements two-pass in float64. The two-pass zero is taken from the
    first element, so a NaN/Inf there makes the sums NaN (as the group's)."""
    chunk = row[start:stop]
    if chunk.size < SMALL:
        return _two_pass(chunk, np.float64(chunk[0]) - np.float64(chunk[0]))
    accepted, mean, m2 = one_pass_moments(chunk)
    if accepted:
        return chunk.size, mean, m2
    return _two_pass(chunk, chunk[0] - chunk[0])


@numba.njit(cache=True)
def merge(count_a, mean_a, m2_a, count_b, mean_b, m2_b):
    """Chan et al.: (count, mean, M2) of two disjoint sets, in float64."""
    count = count_a + count_b
    if count_a == 0:
        return count_b, mean_b, m2_b
    delta = mean_b - mean_a
    share = count_b / count
    return count, mean_a + delta * share, m2_a + m2_b + delta * delta * count_a * share


@numba.njit(cache=True)
def group_moments(row, start, stop):
    """(count, mean, M2) of row[start:stop], chunk by chunk in order."""
    count, mean, m2 = 0, 0.0, 0.0
    for first in range(start, stop, CHUNK):
        n, chunk_mean, chunk_m2 = chunk_moments(row, first, min(first + CHUNK, stop))
        count, mean, m2 = merge(count, mean, m2, n, chunk_mean, chunk_m2)
    return count, mean, m2


@numba.njit(cache=True)
def rstd_of(count, m2, eps):
    variance = m2 / count
    if variance < 0.0:  # rounding of the correction term; NaN passes through
        variance = 0.0
    return 1.0 / np.sqrt(variance + eps)


@numba.njit(cache=True)
def coefficients(weight, bias, c0, cpg, mean, rstd, dtype_of):
    """Per channel of one group, ``a = rstd * w`` and ``c = b - mean * a`` (a in float64)
    in the precision of ``dtype_of`` (an array): y = x * a + c."""
    scale = np.empty(cpg, dtype_of.dtype)
    shift = np.empty(cpg, dtype_of.dtype)
    for j in range(cpg):
        a = rstd * weight[c0 + j]
        scale[j] = a
        shift[j] = bias[c0 + j] - mean * a
    return scale, shift


@numba.njit(fastmath={"contract"}, cache=True)
def _scale_shift(source, target, scale, shift, positions, offset):
    """target[i] = source[i] * scale[j] + shift[j], j = (offset + i) // positions: a span
    of a group row starting at element ``offset``, plane by plane. Each plane is a
    0-based slice, so the inner loop has no wraparound check and vectorizes."""
    count = source.size
    i = 0
    while i < count:
        j = (offset + i) // positions
        stop = min(count, (j + 1) * positions - offset)
        a = scale[j]
        c = shift[j]
        plane = source[i:stop]
        into = target[i:stop]
        for k in range(stop - i):
            into[k] = plane[k] * a + c
        i = stop


# Streaming stores (``stores``): with ``stream``, the kernels write y (and the
# backward dx) a 64-byte line at a time with non-temporal stores, from the span's first
# line boundary (head and tail through ordinary stores), and end each parallel task with
# a fence. The backend streams where x and y together exceed the last-level cache. Same
# arithmetic, same bits.


@numba.njit(cache=True)
def _line_head(target):
    """Elements of the 1-D contiguous ``target`` before its first 64-byte boundary (all of
    it where there is none, or where its address is not a multiple of its item size)."""
    size = target.itemsize
    start = address(target)
    if start % size:
        return target.size
    return min(target.size, (-start) % LINE // size)


# Where an output lies relative to what is read beside it. A load whose address matches
# an earlier, still pending store's in its low 12 bits waits for that store (4K aliasing).
# Where y starts a few lines past x modulo 4 KiB, every load of x in a normalize hits the
# stores to y just before it: the 1x512x128x128 bfloat16 channels-last forward took 2.1
# against 1.2 ms, and the normalize pass alone 1.3 against 0.46 ms, with y 48 or 80 bytes
# past x (a large NumPy x lies 16 bytes past a page, NRT's y 64: y - x = 48 every call).
# So every output is placed half a page from its input (:func:`empty_apart`), and one of
# HUGE_BYTES or more is advised onto huge pages before its first touch
# (:func:`advise_huge_pages`).

PAGE = 4096
CLEAR = 512  # bytes past a read array's address (modulo PAGE) where an output must not start
HUGE_BYTES = 4 << 20  # NumPy's threshold for the same advice


@numba.njit(cache=True)
def empty_apart(source, other):
    """np.empty_like(``source``), C-contiguous, placed so its address lies half a page
    (or a quarter, or three quarters) past ``source``'s modulo :data:`PAGE`, and at least
    :data:`CLEAR` bytes past ``other``'s (a second array read beside it, the backward's
    dy; ``source`` itself in a forward). A view of a buffer one page larger; where
    ``source``'s address is not a multiple of its item size, the buffer as it comes. A
    buffer of :data:`HUGE_BYTES` or more is advised onto huge pages first (Linux)."""
    size = source.itemsize
    flat = np.empty(source.size + PAGE // size, source.dtype)
    if flat.size * size >= HUGE_BYTES:
        advise_huge_pages(flat)
    start = address(flat)
    want = start
    if address(source) % size == 0:
        for quarter in (2, 1, 3):
            at = address(source) + quarter * (PAGE // 4)
            if (at - address(other)) % PAGE >= CLEAR:
                want = at
                break
    skip = (want - start) % PAGE // size
    return flat[skip:skip + source.size].reshape(source.shape)


@numba.njit(fastmath={"contract"}, cache=True)
def _stream_plane(source, target, a, c):
    """target = source * a + c (1-D contiguous spans; ``a``, ``c`` of their dtype), the
    lines from target's first 64-byte boundary in streaming stores: the arithmetic of
    :func:`_scale_shift`'s loop (an FMA), so the same bits."""
    count = source.size
    lanes = LINE // target.itemsize
    head = _line_head(target)
    body = head + (count - head) // lanes * lanes
    for i in range(head):
        target[i] = source[i] * a + c
    for i in range(head, body, lanes):
        stream_affine(source, target, i, a, c)
    for i in range(body, count):
        target[i] = source[i] * a + c


@numba.njit(cache=True)
def _normalize_planes(source, target, scale, shift, positions, stream):
    """target = source * scale[j] + shift[j] for plane j (``positions`` elements) of a
    group row: :func:`_scale_shift`, or plane by plane with :func:`_stream_plane`."""
    if not stream:
        _scale_shift(source, target, scale, shift, positions, 0)
        return
    for j in range(source.size // positions):
        plane = slice(j * positions, (j + 1) * positions)
        _stream_plane(source[plane], target[plane], scale[j], shift[j])


@numba.njit(parallel=True, cache=True)
def group_norm_by_group(rows, num_groups, weight, bias, eps, stream):
    """Parallel over (sample, group): statistics, then normalize the same group while it
    is still in cache. ``rows`` is (N * G, group size); weight/bias float64 of length C;
    ``stream``: write y with streaming stores (see above).
    Returns y and each group's (mean, rstd) in float64 (N * G, 2), for the backward."""
    total, size = rows.shape
    cpg = weight.shape[0] // num_groups
    positions = size // cpg
    out = empty_apart(rows, rows)
    stats = np.empty((total, 2), np.float64)
    for g in numba.prange(total):
        count, mean, m2 = group_moments(rows[g], 0, size)
        stats[g, 0] = mean
        stats[g, 1] = rstd_of(count, m2, eps)
        scale, shift = coefficients(weight, bias, (g % num_groups) * cpg, cpg, mean, stats[g, 1], rows)
        _normalize_planes(rows[g], out[g], scale, shift, positions, stream)
        if stream:
            stream_fence()
    return out, stats


@numba.njit(parallel=True, cache=True)
def group_norm_by_chunk(rows, num_groups, weight, bias, eps, tasks_per_group, stream):
    """For fewer groups than threads: each group's statistics in ``tasks_per_group``
    parallel pieces (merged in order), then normalization parallel over (group, channel)
    (``stream`` as for :func:`group_norm_by_group`).
    Returns y and (mean, rstd) per group, as :func:`group_norm_by_group`."""
    total, size = rows.shape
    cpg = weight.shape[0] // num_groups
    positions = size // cpg
    piece = -(-size // tasks_per_group)
    piece = -(-piece // CHUNK) * CHUNK
    partial = np.zeros((total * tasks_per_group, 3), np.float64)
    for task in numba.prange(total * tasks_per_group):
        g = task // tasks_per_group
        start = (task % tasks_per_group) * piece
        stop = min(start + piece, size)
        if start < stop:
            count, mean, m2 = group_moments(rows[g], start, stop)
            partial[task, 0] = count
            partial[task, 1] = mean
            partial[task, 2] = m2
    scales = np.empty((total, cpg), rows.dtype)
    shifts = np.empty((total, cpg), rows.dtype)
    stats = np.empty((total, 2), np.float64)
    for g in range(total):
        count, mean, m2 = 0, 0.0, 0.0
        for k in range(tasks_per_group):
            n = int(partial[g * tasks_per_group + k, 0])
            if n:
                count, mean, m2 = merge(count, mean, m2, n, partial[g * tasks_per_group + k, 1],
                                        partial[g * tasks_per_group + k, 2])
        stats[g, 0] = mean
        stats[g, 1] = rstd_of(count, m2, eps)
        scale, shift = coefficients(weight, bias, (g % num_groups) * cpg, cpg, mean, stats[g, 1], rows)
        scales[g] = scale
        shifts[g] = shift
    out = empty_apart(rows, rows)
    for plane in numba.prange(total * cpg):
        g = plane // cpg
        j = plane % cpg
        first, stop = j * positions, (j + 1) * positions
        if stream:
            _stream_plane(rows[g][first:stop], out[g][first:stop], scales[g][j], shifts[g][j])
            stream_fence()
        else:
            _scale_shift(rows[g][first:stop], out[g][first:stop], scales[g], shifts[g], positions, first)
    return out, stats


# 16-bit floats. Numba has no float16 or bfloat16 type on the CPU, so 16-bit inputs are
# handled as their raw bits (uint16): widened to float32 exactly, and the float32 result
# narrowed with round-to-nearest-even, both in parallel (NumPy's own conversions are
# single-threaded and took 11 of the 12 ms of a 2.6M-element float16 call here).


@numba.njit(cache=True)
def widen_half_scalar(bits, table, values):
    """values = float32 of float16 ``bits`` through ``table``, the 65536 float32 values of
    every float16 bit pattern (exact: NumPy builds it): the path without F16C."""
    for i in range(bits.size):
        values[i] = table[bits[i]]


@numba.njit(parallel=True, cache=True)
def widen_half(bits, table):
    """float32 values of float16 ``bits`` (flat uint16): F16C's conversion where the CPU
    has it, else :func:`widen_half_scalar`; parallel over chunks."""
    out = np.empty(bits.size, np.float32)
    for k in numba.prange(-(-bits.size // CHUNK)):
        first, stop = k * CHUNK, min((k + 1) * CHUNK, bits.size)
        if F16C:
            widen_f16c(bits[first:stop], out[first:stop])
        else:
            widen_half_scalar(bits[first:stop], table, out[first:stop])
    return out


@numba.njit(parallel=True, cache=True)
def widen_bfloat(bits):
    """float32 values of bfloat16 ``bits`` (flat uint16): the 16 high bits of a float32
    (:func:`halves.widen_bfloat8`); parallel over chunks."""
    out = np.empty(bits.size, np.float32)
    for k in numba.prange(-(-bits.size // CHUNK)):
        first, stop = k * CHUNK, min((k + 1) * CHUNK, bits.size)
        widen_bfloat8(bits[first:stop], out[first:stop])
    return out


@numba.njit(inline="always")
def half_bits(f, value):
    """float16 bits of the float32 ``value`` whose bits are ``f``: round to nearest even;
    overflow to +/-Inf, NaN to a quiet NaN of the same sign, subnormals rounded like the
    rest."""
    sign = (f >> 16) & 0x8000
    magnitude = f & 0x7FFFFFFF
    if magnitude >= 0x47800000:  # >= 65536 in float32 (round-up range handled below), Inf or NaN
        half = 0x7E00 if magnitude > 0x7F800000 else 0x7C00
    elif magnitude < 0x38800000:  # below 2^-14, float16's smallest normal: subnormal or zero
        half = np.uint32(np.rint(np.abs(value) * np.float32(16777216.0)))  # units of 2^-24, exact scaling
    else:
        odd = (magnitude >> 13) & 1
        half = (magnitude - 0x38000000 + 0xFFF + odd) >> 13  # rebias 127 -> 15, round half to even
        if half >= 0x7C00:
            half = 0x7C00
    return np.uint16(sign | half)


@numba.njit(cache=True)
def narrow_half_scalar(values, bits):
    """bits = float16 bits of float32 ``values`` by :func:`half_bits`: the path without F16C."""
    source = values.view(np.uint32)
    for i in range(values.size):
        bits[i] = half_bits(source[i], values[i])


@numba.njit(parallel=True, cache=True)
def narrow_half(values):
    """float16 bits of float32 ``values`` (flat), round to nearest even: F16C's
    conversion where the CPU has it, else :func:`narrow_half_scalar`; parallel over chunks."""
    out = np.empty(values.size, np.uint16)
    for k in numba.prange(-(-values.size // CHUNK)):
        first, stop = k * CHUNK, min((k + 1) * CHUNK, values.size)
        if F16C:
            narrow_f16c(values[first:stop], out[first:stop])
        else:
            narrow_half_scalar(values[first:stop], out[first:stop])
    return out


@numba.njit(parallel=True, cache=True)
def narrow_bfloat(values):
    """bfloat16 bits of float32 ``values`` (flat): round to nearest even; NaN stays a
    quiet NaN of the same sign (:func:`halves.narrow_bfloat8`); parallel over chunks."""
    out = np.empty(values.size, np.uint16)
    for k in numba.prange(-(-values.size // CHUNK)):
        first, stop = k * CHUNK, min((k + 1) * CHUNK, values.size)
        narrow_bfloat8(values[first:stop], out[first:stop])
    return out


# Fused 16-bit path: one pass over a group's bits for its statistics and one to normalize,
# widened in registers (the one-pass sums, the bits-to-bits normalize) or, where that
# cannot be (the two-pass method, no vector conversions), chunk by chunk into a float32
# scratch of CHUNK elements (L1-resident), so no full-size float32 temporary exists. The
# arithmetic is that of the widen / float32 kernel / narrow path above, in the same order
# (LLVM vectorizes the sums over bits as it does those over float32), so the outputs are
# the same bits, which the tests check.


@numba.njit(cache=True)
def _widen_chunk(row, first, count, values, table, bfloat):
    """values[:count] = float32 of the 16-bit ``row[first:first + count]``. Loops index
    0-based slices: no wraparound checks."""
    source = row[first:first + count]
    if bfloat:
        widen_bfloat8(source, values[:count])
    elif F16C:
        widen_f16c(source, values[:count])
    else:
        widen_half_scalar(source, table, values[:count])


@numba.njit(cache=True)
def _narrow_chunk(values, target, first, count, bfloat):
    """target[first:first + count] = 16-bit ``values[:count]``, round to nearest even (as
    :func:`narrow_half` / :func:`narrow_bfloat`)."""
    into = target[first:first + count]
    if bfloat:
        narrow_bfloat8(values[:count], into)
    elif F16C:
        narrow_f16c(values[:count], into)
    else:
        narrow_half_scalar(values[:count], into)


@numba.njit(cache=True)
def _affine_bits_planes(source, target, scale, shift, positions, bfloat, stream):
    """target = 16-bit (widen(source) * scale[j] + shift[j]) for plane j (``positions``
    elements each) of a group row, from 16-bit bits to 16-bit bits in one vector pass per
    plane (:func:`halves.affine_bits`, streaming stores with ``stream``)."""
    for j in range(source.size // positions):
        plane = slice(j * positions, (j + 1) * positions)
        affine_bits(source[plane], target[plane], scale[j], shift[j], bfloat, stream)


# without vector conversions, a 16-bit group up to this many elements stays widened (1 MiB of float32) between passes
HALF_KEEP = 1 << 18


@numba.njit(fastmath={"reassoc", "contract"}, cache=True)
def _centred_sums_bits(bits, k, bfloat):
    """:func:`_centred_sums` of the float32 values of 16-bit ``bits`` (bfloat16, or
    float16 where :data:`F16C`), widened in registers as the loop reads them."""
    total = np.float32(0.0)
    squares = np.float32(0.0)
    if bfloat:
        for i in range(bits.size):
            d = bfloat_value(bits[i]) - k
            total += d
            squares += d * d
    elif F16C:
        for i in range(bits.size):
            d = half_value(bits[i]) - k
            total += d
            squares += d * d
    return total, squares


@numba.njit(cache=True)
def _half_chunk_moments(row, first, n, values, table, bfloat):
    """(n, mean, M2) of the 16-bit ``row[first:first + n]``, as :func:`chunk_moments` of
    its float32 values. With vector conversions (bfloat16, or float16 with F16C) the
    one-pass sums read the bits themselves; ``values`` (L1 scratch) is filled only for the
    two-pass method, where the one-pass result is not accepted or the chunk is small."""
    if (bfloat or F16C) and n >= SMALL:
        bits = row[first : first + n]
        head = 0.0
        for i in range(PIVOT):
            if bfloat:
                head += bfloat_value(bits[i])
            elif F16C:
                head += half_value(bits[i])
        k = np.float32(head / PIVOT)
        accepted, mean, m2 = _judged(k, *_centred_sums_bits(bits, k, bfloat), n)
        if accepted:
            return n, mean, m2
    _widen_chunk(row, first, n, values, table, bfloat)
    return chunk_moments(values, 0, n)


@numba.njit(cache=True)
def _half_group_moments(row, size, values, table, bfloat, keep):
    """(count, mean, M2) of a 16-bit group, chunk by chunk (:func:`_half_chunk_moments`);
    with ``keep`` each chunk is widened into its own place of ``values`` (the whole
    group) for the normalize pass."""
    count, mean, m2 = 0, 0.0, 0.0
    for first in range(0, size, CHUNK):
        n = min(CHUNK, size - first)
        if keep:
            _widen_chunk(row, first, n, values[first : first + n], table, bfloat)
            chunk_n, chunk_mean, chunk_m2 = chunk_moments(values[first : first + n], 0, n)
        else:
            chunk_n, chunk_mean, chunk_m2 = _half_chunk_moments(row, first, n, values, table, bfloat)
        count, mean, m2 = merge(count, mean, m2, chunk_n, chunk_mean, chunk_m2)
    return count, mean, m2


@numba.njit(cache=True)
def _half_normalize(row, target, positions, scale, shift, values, table, bfloat, fused, keep, stream):
    """target = 16-bit (row * a + c). ``fused`` (vector conversions: bfloat16, or float16
    with F16C; planes of a multiple of 8 elements): bits to bits in one vector pass, read
    from L2 where the statistics pass left them, in streaming stores with ``stream``.
    Otherwise chunk by chunk, widened again unless ``keep``, the affine result in a separate
    L1 scratch (written in place, LLVM's runtime alias check fails and the loop runs
    scalar), narrowed from there. Same bits either way."""
    size = row.size
    if fused:
        _affine_bits_planes(row, target, scale, shift, positions, bfloat, stream)
        return
    scaled = np.empty(min(CHUNK, size), np.float32)
    for first in range(0, size, CHUNK):
        n = min(CHUNK, size - first)
        at = first if keep else 0
        place = values[at : at + n]
        if not keep:
            _widen_chunk(row, first, n, place, table, bfloat)
        _scale_shift(place, scaled[:n], scale, shift, positions, first)
        _narrow_chunk(scaled[:n], target, first, n, bfloat)


@numba.njit(parallel=True, cache=True)
def group_norm_half_by_group(bits, num_groups, weight, bias, eps, table, bfloat, stream):
    """float16 (``table``: float32 of every float16 bit pattern, used without F16C) or
    bfloat16 (``bfloat``) GroupNorm on raw bits ``bits`` (N * G, group size) of uint16,
    parallel over (sample, group): the fused form of widen + :func:`group_norm_by_group` +
    narrow, same results. The statistics' one-pass sums read the bits, widened in
    registers (:func:`_half_chunk_moments`; a chunk goes to an L1 scratch only for the
    two-pass method); the normalize reads the bits again (see :func:`_half_normalize`).
    Without vector conversions a group of up to :data:`HALF_KEEP` elements is widened
    once and kept (in L2 or L3) instead. ``stream``: y in streaming stores where fused.
    Returns y's bits and (mean, rstd) per group, as :func:`group_norm_by_group`."""
    total, size = bits.shape
    cpg = weight.shape[0] // num_groups
    positions = size // cpg
    fused = (bfloat or F16C) and positions % 8 == 0
    keep = not fused and size <= HALF_KEEP
    out = empty_apart(bits, bits)
    stats = np.empty((total, 2), np.float64)
    for g in numba.prange(total):
        values = np.empty(size if keep else CHUNK, np.float32)
        count, mean, m2 = _half_group_moments(bits[g], size, values, table, bfloat, keep)
        stats[g, 0] = mean
        stats[g, 1] = rstd_of(count, m2, eps)
        scale, shift = coefficients(weight, bias, (g % num_groups) * cpg, cpg, mean, stats[g, 1], values)
        _half_normalize(bits[g], out[g], positions, scale, shift, values, table, bfloat, fused, keep, stream)
        if stream:
            stream_fence()
    return out, stats


# Channels-last input read in place: x as (N, P, C), C-contiguous (P = spatial positions).
# A block of positions is a contiguous (positions, C) span. Its statistics are taken per
# channel, vectorized along the channels (16-bit bits widened as they are read): each
# channel's sums in x's precision over ROWS positions at a time (register tiles, or row by
# row where x comes from DRAM), then float64, in one pass centred on the mean of the block's first
# CENTRE_ROWS positions; a channel whose centre is too far from its mean (the test of
# one_pass_moments) is summed again by the two-pass method, from cache. Then each group's
# channels are combined and the blocks merged in order (deterministic). Samples go in
# waves of about WAVE_BYTES, the statistics of a wave then its normalize, so the second
# read of x comes from the cache where a wave fits; y = x * a + c along the channels.

WAVE_BYTES = 16 << 20  # x per wave (as float32): its statistics pass leaves it in L3 (32 MiB here) for the normalize
CENTRE_ROWS = 64  # positions whose mean centres a block's one-pass sums (its error: sigma / 8)


BLOCK_ELEMENTS = 1 << 17  # a channels-last block at most: 512 KiB of float32, so a channel summed again comes from L2


@numba.njit(cache=True)
def channels_last_block(positions, channels, samples, threads):
    """Positions per block, for ``samples`` samples of ``positions`` at a time: at most
    :data:`BLOCK_ELEMENTS` elements and CHUNK positions, and no more than gives each of
    ``threads`` threads 4 blocks; a multiple of :data:`ROWS` (whole register tiles), at least
    :data:`SMALL` positions where there are so many (a channel's sums then in x's
    precision). (Blocks of 32768 elements, before: the first CENTRE_ROWS positions were a
    quarter to all of a block at 128 to 512 channels; 2x320x64x64 float32 0.49 against
    0.42 ms, bfloat16 1x512x128x128 2.55 against 1.79 ms.)"""
    spread = -(-positions * samples // (4 * max(1, threads)))
    most = min(CHUNK, BLOCK_ELEMENTS // channels, max(spread, SMALL))
    return max(1, min(positions, max(most // ROWS * ROWS, SMALL)))


ROWS = 16  # positions a channel's running sums in x's precision span before they go to float64
PREFETCH_BYTES = 2048  # how far ahead 16-bit rows read from DRAM are prefetched (see _sums_along_channels)


def _widened(value, bfloat):
    """The float value of one element of a block: 16-bit bits widened exactly (bfloat16
    with ``bfloat``, else float16), a float unchanged (Numba overload, by type)."""


@overload(_widened, inline="always")
def _widened_overload(value, bfloat):
    if isinstance(value, types.Float):
        return lambda value, bfloat: value
    if F16C:
        return lambda value, bfloat: bfloat_value(value) if bfloat else half_value(value)
    return lambda value, bfloat: bfloat_value(value)  # float16 bits come here only with F16C (see the drivers)


def _floats_for(block, count):
    """np.empty(count) of the float type of ``block``'s values: float32 for 16-bit bits,
    else the block's own dtype (Numba overload, by type)."""


@overload(_floats_for)
def _floats_for_overload(block, count):
    if isinstance(block.dtype, types.Integer):
        return lambda block, count: np.empty(count, np.float32)
    return lambda block, count: np.empty(count, block.dtype)


@numba.njit(cache=True)  # no fastmath: the loop does exactly the tile's arithmetic (vectorized along C all the same)
def _sums_along_channels(block, k, s1, s2, bfloat, tiles):
    """s1[c], s2[c] = sum(d), sum(d^2) (float64) over the block's positions, d = x[p, c] -
    k[c]: vectorized along the channels, each channel summed in x's precision over
    :data:`ROWS` positions at a time (so a sum's rounding error stays within ROWS ulps,
    as the chunk sums' lanes), those partial sums added in float64. A block of 16-bit
    bits is widened as it is read (:func:`_widened`), the same sums as of its values.
    With ``tiles``, 16 x 16 register tiles (for a block in cache: compute-bound); else
    row after row through per-channel sums in L1 (for a block read from DRAM: sequential
    reads keep the prefetchers ahead, where a tile's 16 strided rows stall them; float32
    16x64x256x256/8, the statistics of all blocks: 9.4 against 12.8 ms). The same
    arithmetic in the same order, so the same bits either way. Row by row, 16-bit rows
    are also prefetched :data:`PREFETCH_BYTES` ahead: with half the bytes per element the
    hardware prefetchers left them at 14-16 GB/s (1x512x256x256 statistics, bfloat16
    4.40 against 3.36 ms, float16 6.00 against 4.50); float32 rows got no faster (7.47
    against 7.65 ms on 1x128x512x512), so they are left to the hardware."""
    positions, channels = block.shape
    t1 = np.empty(channels, k.dtype)
    t2 = np.empty(channels, k.dtype)
    s1[:] = 0.0
    s2[:] = 0.0
    tiled = channels - channels % LANES if tiles and ROWS == TILE_ROWS else 0
    flat = block.reshape(-1)
    ahead = PREFETCH_BYTES // flat.itemsize if flat.itemsize == 2 and not tiles else 0
    for first in range(0, positions, ROWS):
        stop = min(first + ROWS, positions)
        start = 0
        if stop - first == ROWS and tiled:  # 16 x 16 tiles, the sums in registers (tiles)
            for c in range(0, tiled, LANES):
                tile_sums(block, first * channels + c, channels, k, c, s1, s2, bfloat)
            start = tiled
        rest = channels - start  # the loop runs over 0-based slices: no wraparound checks, so it vectorizes
        centre, u1, u2 = k[start:], t1[start:], t2[start:]
        u1[:] = 0.0
        u2[:] = 0.0
        for p in range(first, stop):
            if ahead and (p + 1) * channels + ahead <= flat.size:
                for e in range(p * channels + ahead, (p + 1) * channels + ahead, LINE // flat.itemsize):
                    prefetch(flat, e)
            row = block[p][start:]
            for c in range(rest):
                d = _widened(row[c], bfloat) - centre[c]
                u1[c] += d
                u2[c] += d * d
        for c in range(rest):
            s1[start + c] += u1[c]
            s2[start + c] += u2[c]


@numba.njit(cache=True)
def _channel_centres(block, k, rows, bfloat):
    """k[c] = the mean of block[:rows, c], summed and rounded in k's precision."""
    k[:] = 0.0
    for p in range(rows):
        row = block[p]
        for c in range(k.size):
            k[c] += _widened(row[c], bfloat)
    for c in range(k.size):
        k[c] = k[c] / rows


@numba.njit(cache=True)
def _channel_moments(block, means, m2s, bfloat, tiles):
    """(mean, M2) per channel of a block of positions (positions, C) into ``means``/``m2s``
    (float64). From :data:`SMALL` positions: one pass about the mean of the first
    :data:`CENTRE_ROWS` positions, vectorized along the channels (:func:`_sums_along_channels`).
    A channel whose centre is too far from its mean or whose sums are not finite (the test
    of :func:`_judged`), and every channel of a block below :data:`SMALL` positions, is
    summed by :func:`_two_pass` in float64 (its column, gathered (and widened, for 16-bit
    bits) into a scratch, is summed sequentially: float64 keeps it accurate; rare, and
    from cache)."""
    positions, channels = block.shape
    k = _floats_for(block, channels)
    s1 = np.empty(channels, np.float64)
    s2 = np.empty(channels, np.float64)
    if positions >= SMALL:
        _channel_centres(block, k, min(positions, CENTRE_ROWS), bfloat)
        _sums_along_channels(block, k, s1, s2, bfloat, tiles)
    column = _floats_for(block, positions)
    for c in range(channels):
        if positions >= SMALL:
            accepted, means[c], m2s[c] = _judged(k[c], s1[c], s2[c], positions)
            if accepted:
                continue
        for p in range(positions):
            column[p] = _widened(block[p, c], bfloat)
        _, means[c], m2s[c] = _two_pass(column, np.float64(column[0]) - np.float64(column[0]))


@numba.njit(cache=True)
def _block_group_moments(block, num_groups, partial, bfloat, tiles):
    """partial[g] = (count, mean, M2) of group g over a block of positions (positions, C)
    of float32/float64 values, or of 16-bit bits (bfloat16 with ``bfloat``, else float16,
    which needs F16C): :func:`_channel_moments` (``tiles`` as for
    :func:`_sums_along_channels`), then each group's channels
    combined (equal counts: the mean of the channel means, and M2 the channels' M2 plus
    ``positions * sum((mean_c - mean)^2)``, Chan's formula for equal parts)."""
    positions, channels = block.shape
    cpg = channels // num_groups
    means = np.empty(channels, np.float64)
    m2s = np.empty(channels, np.float64)
    _channel_moments(block, means, m2s, bfloat, tiles)
    for g in range(num_groups):
        mean = 0.0
        for c in range(g * cpg, (g + 1) * cpg):
            mean += means[c]
        mean /= cpg
        m2 = 0.0
        spread = 0.0
        for c in range(g * cpg, (g + 1) * cpg):
            m2 += m2s[c]
            spread += (means[c] - mean) * (means[c] - mean)
        partial[g, 0] = positions * cpg
        partial[g, 1] = mean
        partial[g, 2] = m2 + positions * spread


@numba.njit(cache=True)
def _wave_coefficients(partial, first, count, blocks, num_groups, weight, bias, eps, stats, dtype_of):
    """For samples first..first + count: each group's blocks merged in block order into
    ``stats`` (mean, rstd per (sample, group)); returns (scale, shift) per (sample of the
    wave, channel) in the dtype of the array ``dtype_of``."""
    channels = weight.shape[0]
    cpg = channels // num_groups
    scale = np.empty((count, channels), dtype_of.dtype)
    shift = np.empty((count, channels), dtype_of.dtype)
    for i in range(count):
        for g in range(num_groups):
            total, mean, m2 = 0, 0.0, 0.0
            for b in range(blocks):
                row = partial[i * blocks + b, g]
                total, mean, m2 = merge(total, mean, m2, int(row[0]), row[1], row[2])
            rstd = rstd_of(total, m2, eps)
            stats[(first + i) * num_groups + g, 0] = mean
            stats[(first + i) * num_groups + g, 1] = rstd
            for j in range(g * cpg, (g + 1) * cpg):
                a = rstd * weight[j]
                scale[i, j] = a
                shift[i, j] = bias[j] - mean * a
    return scale, shift


@numba.njit(cache=True)
def _wave_plan(x, threads, wave_bytes=WAVE_BYTES):
    """(positions per block, blocks per sample, samples per wave) of x (N, P, C) on
    ``threads`` threads (the caller's numba.get_num_threads(): called in a kernel, it
    would keep the kernel out of the disk cache): as many whole samples a wave as fit in
    ``wave_bytes`` counted as float32, at least one."""
    samples, positions, channels = x.shape
    per_sample = max(1, positions * channels * 4)
    wave = max(1, min(samples, wave_bytes // per_sample))
    block = channels_last_block(positions, channels, wave, threads)
    return block, -(-positions // block), wave


@numba.njit(parallel=True, cache=True)
def group_norm_channels_last(x, num_groups, weight, bias, eps, stream, threads, wave_bytes=WAVE_BYTES):
    """GroupNorm of ``x`` (N, P, C) C-contiguous (a channels-last tensor's memory);
    returns y in the same layout and (mean, rstd) per (sample, group) in float64
    (N * G, 2). weight/bias float64 of length C; ``stream``: x and y exceed the cache, so
    y in streaming stores (:func:`_stream_rows`) and the statistics summed row by row
    (``tiles`` off, :func:`_sums_along_channels`); ``threads``: Numba's thread count (sizes
    the blocks); ``wave_bytes``: the size of a wave (:func:`_wave_plan`), :data:`WAVE_BYTES`
    unless a test names a smaller one to take a few small samples in several waves (the
    backend passes none: waves of half an 8 MiB L3 read 0.84x on 16x64x64x64 float32 on an
    AVX2 host but 1.01-1.14x on four other shapes)."""
    samples, positions, channels = x.shape
    block, blocks, wave = _wave_plan(x, threads, wave_bytes)
    partial = np.zeros((wave * blocks, num_groups, 3), np.float64)
    stats = np.empty((samples * num_groups, 2), np.float64)
    out = empty_apart(x, x)
    for first in range(0, samples, wave):
        count = min(wave, samples - first)
        for task in numba.prange(count * blocks):
            n, p0 = first + task // blocks, (task % blocks) * block
            _block_group_moments(x[n][p0 : min(p0 + block, positions)], num_groups, partial[task], False, not stream)
        scale, shift = _wave_coefficients(partial, first, count, blocks, num_groups, weight, bias, eps, stats, x)
        if stream:
            scale, shift = _wrapped(scale, LINE // x.itemsize), _wrapped(shift, LINE // x.itemsize)
        for task in numba.prange(count * blocks):
            n, p0 = first + task // blocks, (task % blocks) * block
            p1 = min(p0 + block, positions)
            if stream:
                _stream_rows(x[n][p0:p1], out[n][p0:p1], scale[n - first], shift[n - first])
                stream_fence()
            else:
                _affine_rows(x[n][p0:p1], out[n][p0:p1], scale[n - first], shift[n - first])
    return out, stats


@numba.njit(cache=True)
def _wrapped(values, lanes):
    """(rows, C + lanes): each row of ``values`` (rows, C) followed by its own first
    elements again, element k = values[:, k % C], so a line of ``lanes`` channels starting
    at any channel reads one contiguous run."""
    rows, channels = values.shape
    out = np.empty((rows, channels + lanes), values.dtype)
    for i in range(rows):
        for k in range(channels + lanes):
            out[i, k] = values[i, k % channels]
    return out


@numba.njit(fastmath={"contract"}, cache=True)
def _stream_rows(source, target, scale, shift):
    """:func:`_affine_rows` with streaming stores: the block (positions, C) as one flat
    span, each 64-byte line ``x * scale[j:] + shift[j:]`` from its first element's channel
    j (``scale``/``shift`` of C + lanes elements, :func:`_wrapped`); the head and tail
    element by element. The same arithmetic (an FMA), so the same bits."""
    channels = source.shape[1]
    flat = source.reshape(-1)
    into = target.reshape(-1)
    count = flat.size
    lanes = LINE // into.itemsize
    head = _line_head(into)
    body = head + (count - head) // lanes * lanes
    for i in range(head):
        into[i] = flat[i] * scale[i % channels] + shift[i % channels]
    j = head % channels
    for i in range(head, body, lanes):
        stream_affine(flat, into, i, scale[j:], shift[j:])
        j += lanes
        while j >= channels:
            j -= channels
    for i in range(body, count):
        into[i] = flat[i] * scale[i % channels] + shift[i % channels]


@numba.njit(fastmath={"contract"}, cache=True)
def _affine_rows(source, target, scale, shift):
    """target[p, j] = source[p, j] * scale[j] + shift[j] (2-D, rows of channels)."""
    channels = scale.shape[0]
    for p in range(source.shape[0]):
        row = source[p]
        into = target[p]
        for j in range(channels):
            into[j] = row[j] * scale[j] + shift[j]


@numba.njit(fastmath={"contract"}, cache=True)
def _affine_bits_at(source, target, i, scale, shift, bfloat):
    """target[i] = 16-bit of ``widen(source[i]) * scale + shift`` (bfloat16 with
    ``bfloat``, else float16 with F16C): one element of :func:`_lane_rows_bits`."""
    if bfloat:
        target[i] = bfloat_of(bfloat_value(source[i]) * scale + shift)
    elif F16C:
        target[i] = half_of(half_value(source[i]) * scale + shift)


@numba.njit(fastmath={"contract"}, cache=True)
def _lane_rows_bits(source, target, scale, shift, bfloat, stream):
    """:func:`_affine_rows` from 16-bit bits to 16-bit bits (bfloat16, or float16 with
    F16C), each element widened, ``x * a + c`` in float32 and narrowed (round to nearest
    even), :data:`STREAM_LANES` elements (a 64-byte line) a call: the block (positions, C) as one flat span,
    ``scale[j:]`` / ``shift[j:]`` lane by lane from the first element's channel j
    (``scale``/``shift`` of C + STREAM_LANES elements, :func:`_wrapped`). With ``stream``
    each line a streaming store from target's first 64-byte boundary on, else ordinary
    stores from its first element; the head and tail element by element. The same
    arithmetic (an FMA, one narrowing), so the same bits."""
    channels = source.shape[1]
    flat = source.reshape(-1)
    into = target.reshape(-1)
    count = flat.size
    if stream:
        head, body = stream_span(into, True)
    else:
        head, body = 0, count - count % STREAM_LANES
    for i in range(head):
        _affine_bits_at(flat, into, i, scale[i % channels], shift[i % channels], bfloat)
    j = head % channels
    for i in range(head, body, STREAM_LANES):
        if bfloat and stream:
            affine_bfloat_bits32_stream(flat, i, into, i, scale[j:], shift[j:])
        elif bfloat:
            affine_bfloat_bits32(flat, i, into, i, scale[j:], shift[j:])
        elif F16C and stream:
            affine_half_bits32_stream(flat, i, into, i, scale[j:], shift[j:])
        elif F16C:
            affine_half_bits32(flat, i, into, i, scale[j:], shift[j:])
        j += STREAM_LANES
        while j >= channels:
            j -= channels
    for i in range(body, count):
        _affine_bits_at(flat, into, i, scale[i % channels], shift[i % channels], bfloat)


@numba.njit(fastmath={"contract"}, cache=True)
def _table_rows_bits(source, target, scale, shift, table, values):
    """:func:`_affine_rows` from float16 bits to float16 bits without F16C: each row
    widened by ``table``, ``x * a + c`` in float32 into ``values`` (float32 scratch of a
    row) and narrowed by the scalar rounding (:func:`narrow_half_scalar`). The same bits as
    widening, :func:`_affine_rows` and narrowing."""
    channels = scale.shape[0]
    for p in range(source.shape[0]):
        row = source[p]
        for j in range(channels):
            values[j] = table[row[j]] * scale[j] + shift[j]
        narrow_half_scalar(values, target[p])


@numba.njit(parallel=True, cache=True)
def group_norm_half_channels_last(
    x, num_groups, weight, bias, eps, table, bfloat, stream, threads, wave_bytes=WAVE_BYTES
):
    """:func:`group_norm_channels_last` of 16-bit bits ``x`` (N, P, C) uint16, float16
    (``table`` as in :func:`group_norm_half_by_group`) or bfloat16 (``bfloat``), read in
    place: the statistics read the bits and widen them in registers (bfloat16, or float16
    with F16C; without F16C each block is widened into an L2 scratch first), y is
    narrowed as it is made, a 64-byte line a step (:func:`_lane_rows_bits`; without F16C
    row by row, :func:`_table_rows_bits`). Same bits as widening x, the float32 kernel,
    narrowing y; y's bits in x's layout. ``stream`` as for the float32 kernel: y in
    streaming stores (bfloat16, or float16 with F16C) and the statistics summed row by
    row; ``threads`` and ``wave_bytes`` as for the float32 kernel."""
    samples, positions, channels = x.shape
    block, blocks, wave = _wave_plan(x, threads, wave_bytes)
    partial = np.zeros((wave * blocks, num_groups, 3), np.float64)
    stats = np.empty((samples * num_groups, 2), np.float64)
    out = empty_apart(x, x)
    for first in range(0, samples, wave):
        count = min(wave, samples - first)
        for task in numba.prange(count * blocks):
            n, p0 = first + task // blocks, (task % blocks) * block
            p1 = min(p0 + block, positions)
            if bfloat or F16C:
                _block_group_moments(x[n][p0:p1], num_groups, partial[task], bfloat, not stream)
            else:
                values = np.empty((p1 - p0) * channels, np.float32)
                _widen_chunk(x[n][p0:p1].reshape(-1), 0, values.size, values, table, bfloat)
                _block_group_moments(values.reshape(p1 - p0, channels), num_groups, partial[task], False, not stream)
        scale, shift = _wave_coefficients(
            partial, first, count, blocks, num_groups, weight, bias, eps, stats, np.empty(0, np.float32)
        )
        lined = bfloat or F16C
        if lined:
            scale, shift = _wrapped(scale, STREAM_LANES), _wrapped(shift, STREAM_LANES)
        for task in numba.prange(count * blocks):
            n, p0 = first + task // blocks, (task % blocks) * block
            p1 = min(p0 + block, positions)
            if lined:
                _lane_rows_bits(x[n][p0:p1], out[n][p0:p1], scale[n - first], shift[n - first], bfloat, stream)
                if stream:
                    stream_fence()
            else:
                _table_rows_bits(
                    x[n][p0:p1],
                    out[n][p0:p1],
                    scale[n - first],
                    shift[n - first],
                    table,
                    np.empty(channels, np.float32),
                )
    return out, stats


# Backward. Per (sample, group), in one task, with the forward's mean and rstd: per channel
# s1 = sum(dy) and s2 = sum(dy * (x - mean)) in one pass over x and dy (chunks in the
# input's precision, merged in float64: centered, so a large offset cancels nothing), then
#   dx = rstd * (w * dy - A) - rstd^2 * B * (x - mean),  A = sum(w s1) / M,  B = rstd * sum(w s2) / M
# with x and dy re-read from cache. dweight and dbias per (sample, channel) are summed
# over samples afterwards in sample order: the same bits on every run (no atomics).


@numba.njit(fastmath={"reassoc", "contract"}, cache=True)
def _chunk_sums(xs, gs, m):
    """(sum(dy), sum(dy * (x - m))) over one chunk, in dy's precision (vectorized), as
    float64. The zero is taken from dy's first element (NaN for a NaN/Inf there: so are
    the sums)."""
    zero = gs[0] - gs[0]
    a = zero
    b = zero
    for i in range(xs.size):
        a += gs[i]
        b += gs[i] * (xs[i] - m)
    return np.float64(a), np.float64(b)


@numba.njit(fastmath={"reassoc", "contract"}, cache=True)
def _chunk_sums_bits(xbits, gbits, m, bfloat):
    """:func:`_chunk_sums` of the float32 values of 16-bit ``xbits`` and ``gbits``
    (bfloat16, or float16 where :data:`F16C`), widened in registers as the loop reads
    them: the same sums, with no widened copy."""
    zero = np.float32(0.0)
    a = zero
    b = zero
    if bfloat:
        zero = bfloat_value(gbits[0]) - bfloat_value(gbits[0])
        a = zero
        b = zero
        for i in range(xbits.size):
            g = bfloat_value(gbits[i])
            a += g
            b += g * (bfloat_value(xbits[i]) - m)
    elif F16C:
        zero = half_value(gbits[0]) - half_value(gbits[0])
        a = zero
        b = zero
        for i in range(xbits.size):
            g = half_value(gbits[i])
            a += g
            b += g * (half_value(xbits[i]) - m)
    return np.float64(a), np.float64(b)


@numba.njit(cache=True)
def _channel_sums(x, dy, mean):
    """(sum(dy), sum(dy * (x - mean))) over one channel plane: chunk by chunk
    (:func:`_chunk_sums`, centred on the mean rounded to x's dtype), the chunks summed in
    float64 in order."""
    m = _rounded(mean, x)
    s1, s2 = 0.0, 0.0
    size = x.size
    for first in range(0, size, CHUNK):
        stop = min(first + CHUNK, size)
        a, b = _chunk_sums(x[first:stop], dy[first:stop], m)
        s1 += a
        s2 += b
    # the centering used the rounded mean m: add back sum(dy) * (m - mean)
    return s1, s2 + s1 * (np.float64(m) - mean)


@numba.njit(cache=True)
def _grad_plane(x, dy, out, w, a, rstd, beta, delta, mean, stream):
    """out = rstd * (w * dy - a) + beta * (x - mean) + delta in x's precision, no fused
    multiply-add: a one-element group's w * dy - a is then exactly 0, as its gradient.
    With ``stream``, the lines from out's first 64-byte boundary in streaming stores
    (``stores.stream_gradient``: the same arithmetic, the same bits)."""
    scalars = np.empty(6, x.dtype)
    scalars[0] = mean
    scalars[1] = w
    scalars[2] = a
    scalars[3] = rstd
    scalars[4] = beta
    scalars[5] = delta
    m, w_x, a_x, r_x, b_x, d_x = scalars[0], scalars[1], scalars[2], scalars[3], scalars[4], scalars[5]
    count = x.size
    head = _line_head(out) if stream else count
    lanes = LINE // out.itemsize
    body = head + (count - head) // lanes * lanes
    for i in range(head):
        out[i] = r_x * (w_x * dy[i] - a_x) + b_x * (x[i] - m) + d_x
    for i in range(head, body, lanes):
        stream_gradient(x, dy, out, i, r_x, w_x, a_x, b_x, m, d_x)
    for i in range(body, count):
        out[i] = r_x * (w_x * dy[i] - a_x) + b_x * (x[i] - m) + d_x


@numba.njit(cache=True)
def _dx_coefficients(sum_w1, sum_w2, size, mean, rstd, dtype_of):
    """(A, beta, delta) of a group for :func:`_grad_plane` from its sum(w s1) and
    sum(w s2); ``delta`` corrects for the mean rounded to ``dtype_of``'s dtype (the
    precision _grad_plane centers in)."""
    big_a = sum_w1 / size
    big_b = rstd * sum_w2 / size
    beta = -rstd * rstd * big_b
    return big_a, beta, beta * (np.float64(_rounded(mean, dtype_of)) - mean)


@numba.njit(parallel=True, cache=True)
def group_norm_backward_by_group(rows, grads, num_groups, weight, stats, stream):
    """(dx, dweight per (sample, channel), dbias per (sample, channel)) for ``rows`` and
    ``grads`` (N * G, group size), weight float64 of length C (ones without a weight),
    ``stats`` the forward's (mean, rstd) per group (N * G, 2); ``stream``: dx in
    streaming stores."""
    total, size = rows.shape
    channels = weight.shape[0]
    cpg = channels // num_groups
    positions = size // cpg
    samples = total // num_groups
    dx = empty_apart(rows, grads)
    dweight = np.zeros((samples, channels), np.float64)
    dbias = np.zeros((samples, channels), np.float64)
    for g in numba.prange(total):
        mean = stats[g, 0]
        rstd = stats[g, 1]
        n = g // num_groups
        c0 = (g % num_groups) * cpg
        sum_w1, sum_w2 = 0.0, 0.0
        for j in range(cpg):
            plane = slice(j * positions, (j + 1) * positions)
            s1, s2 = _channel_sums(rows[g][plane], grads[g][plane], mean)
            dweight[n, c0 + j] = rstd * s2
            dbias[n, c0 + j] = s1
            sum_w1 += weight[c0 + j] * s1
            sum_w2 += weight[c0 + j] * s2
        big_a, beta, delta = _dx_coefficients(sum_w1, sum_w2, size, mean, rstd, rows)
        for j in range(cpg):
            plane = slice(j * positions, (j + 1) * positions)
            _grad_plane(
                rows[g][plane], grads[g][plane], dx[g][plane], weight[c0 + j], big_a, rstd, beta, delta, mean, stream
            )
        if stream:
            stream_fence()
    return dx, dweight, dbias


@numba.njit(cache=True)
def sum_over_samples(partial):
    """Column sums of (N, C) partials, sample by sample in order (deterministic)."""
    out = np.zeros(partial.shape[1], np.float64)
    for n in range(partial.shape[0]):
        for c in range(partial.shape[1]):
            out[c] += partial[n, c]
    return out


@numba.njit(parallel=True, cache=True)
def group_norm_backward_half_by_group(xbits, gbits, num_groups, weight, stats, table, bfloat, stream):
    """16-bit form of :func:`group_norm_backward_by_group` on raw bits (N * G, group size)
    of x and dy (float16 with ``table`` as in :func:`group_norm_half_by_group`, or
    bfloat16), chunk by chunk in cache: the sums read x's and dy's bits, widened in
    registers (:func:`_chunk_sums_bits`), and dx comes from the bits in one vector pass
    (without vector conversions: each chunk widened into float32 scratch, dx narrowed from
    scratch), so no full-size float32 temporary exists. Same bits as widening x and dy, the
    float32 kernel and narrowing dx (the widening is exact; the same chunks, sums and dx
    code). ``stream``: dx's fused pass in streaming stores. Returns dx's bits, dweight and
    dbias per (sample, channel) in float64."""
    total, size = xbits.shape
    channels = weight.shape[0]
    cpg = channels // num_groups
    positions = size // cpg
    samples = total // num_groups
    dx = empty_apart(xbits, gbits)
    dweight = np.zeros((samples, channels), np.float64)
    dbias = np.zeros((samples, channels), np.float64)
    width = min(CHUNK, positions)
    for g in numba.prange(total):
        xs = np.empty(width, np.float32)
        gs = np.empty(width, np.float32)
        out = np.empty(width, np.float32)
        mean = stats[g, 0]
        rstd = stats[g, 1]
        m = _rounded(mean, out)
        n = g // num_groups
        c0 = (g % num_groups) * cpg
        sum_w1, sum_w2 = 0.0, 0.0
        for j in range(cpg):
            s1, s2 = 0.0, 0.0
            for first in range(j * positions, (j + 1) * positions, CHUNK):
                count = min(CHUNK, (j + 1) * positions - first)
                if bfloat or F16C:  # widened in registers
                    a, b = _chunk_sums_bits(xbits[g][first : first + count], gbits[g][first : first + count], m, bfloat)
                else:
                    _widen_chunk(xbits[g], first, count, xs, table, bfloat)
                    _widen_chunk(gbits[g], first, count, gs, table, bfloat)
                    a, b = _chunk_sums(xs[:count], gs[:count], m)
                s1 += a
                s2 += b
            s2 = s2 + s1 * (np.float64(m) - mean)  # as _channel_sums
            dweight[n, c0 + j] = rstd * s2
            dbias[n, c0 + j] = s1
            sum_w1 += weight[c0 + j] * s1
            sum_w2 += weight[c0 + j] * s2
        big_a, beta, delta = _dx_coefficients(sum_w1, sum_w2, size, mean, rstd, out)
        for j in range(cpg):
            if bfloat or F16C:  # bits to bits in one vector pass
                plane = slice(j * positions, (j + 1) * positions)
                gradient_bits(
                    xbits[g][plane],
                    gbits[g][plane],
                    dx[g][plane],
                    rstd,
                    weight[c0 + j],
                    big_a,
                    beta,
                    mean,
                    delta,
                    bfloat,
                    stream,
                )
                continue
            for first in range(j * positions, (j + 1) * positions, CHUNK):
                count = min(CHUNK, (j + 1) * positions - first)
                _widen_chunk(xbits[g], first, count, xs, table, bfloat)
                _widen_chunk(gbits[g], first, count, gs, table, bfloat)
                _grad_plane(xs[:count], gs[:count], out[:count], weight[c0 + j], big_a, rstd, beta, delta, mean, False)
                _narrow_chunk(out, dx[g], first, count, bfloat)
        if stream:
            stream_fence()
    return dx, dweight, dbias
