"""The numba-cuda GroupNorm kernels, second design (imported only when the ``numba-cuda``
backend runs, or by the tests, under the CUDA simulator or for PTX compilation).

The decomposition of ``backends/cuda/groupnorm.cu`` (read its header), in Numba: ONE
persistent kernel per call whose blocks take work items from an atomic queue (fused items:
a whole group; split items: every chunk's statistics, then every chunk's normalize, per
wave of groups that fit in a quarter of the L2), a ticketed merge of a group's partials by
the block that draws its last ticket (warp 0: lane l merges partials l, l+32, ... in
order, then the lane tree 16, 8, 4, 2, 1: the NumPy model's order), and a workspace
(queue, tickets) that the kernel leaves at zero.

Items are single elements (``vec`` 1): a group is majors x minors elements walked with
incremental (major, minor) counters and a running offset (no divide per element); each
thread keeps 16 loads in flight, then merges the batch's moments (two-pass about its
first value) into its own with one Chan merge.

Where Numba lags the CUDA C (and why):
* no 128-bit vector loads (Numba cannot reinterpret an array element as a uint4);
* no shuffles under the simulator: the warp and block trees go through shared memory in
  the same order as ``__shfl_down_sync`` (lane i merges lane i + offset);
* no ``ld.cg``/``ld.acquire``: partials, statistics and tickets of other blocks are read
  with atomics (``atomic.add(…, 0)``), which L2 serves coherently;
* no streaming-store hint for y; ``nanosleep`` in the spin only on a GPU.

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


UNROLL = 16  # scalar items in flight per thread (launch.py unroll(1))
TABLE_BYTES = 8192  # shared memory for the per-channel (scale, shift) table (GN_TABLE_BYTES)


# Bugs the tests plant to show that their checks see each mechanism (never set otherwise):
# partials merged in the reverse order (only a bitwise comparison with the model sees it),
# the queue or the tickets not reset (the next call goes wrong), the batch tail dropped,
# normalize not waiting for its group's statistics (only blocks running at once see it).
PLANTS = ("partials-reversed", "no-queue-reset", "no-ticket-reset", "tail-dropped", "no-wait")


def build(x_kind: str, param_kind: str, threads: int, plant: str | None = None):
    """The forward kernel for inputs of ``x_kind`` and weight/bias of ``param_kind``,
    launched with ``threads`` threads a block (a multiple of 32, at most 1024). ``plant``
    (tests only) compiles in one of :data:`PLANTS`."""
    if threads < 32 or threads % 32 or threads > 1024:
        raise ValueError(f"threads must be a multiple of 32 in [32, 1024]; got {threads}")
    if plant is not None and plant not in PLANTS:
        raise ValueError(f"plant must be one of {PLANTS}; got {plant!r}")
    reverse_partials = plant == "partials-reversed"
    reset_queue = plant != "no-queue-reset"
    reset_tickets = plant != "no-ticket-reset"
    keep_tail = plant != "tail-dropped"
    wait = plant != "no-wait"
    acc = accumulation(x_kind)
    load_x = _loader(x_kind, acc)
    load_p = _loader(param_kind, acc)
    store_y = _storer(x_kind)
    table_items = TABLE_BYTES // (8 if x_kind == "float64" else 4)
    warps = threads // 32
    slots = threads + 32  # per-thread triples, then 32 lanes for the trees over warps and partials

    if SIMULATOR:
        @cuda.jit(device=True, inline=True)
        def pause():
            return 0
    else:
        @cuda.jit(device=True, inline=True)
        def pause():
            cuda.nanosleep(64)
            return 0

    @cuda.jit(device=True, inline=True)
    def merge(count_a, mean_a, m2_a, count_b, mean_b, m2_b):
        """Chan et al.: the (count, mean, M2) of two disjoint sets; an empty side passes the other."""
        if count_b == 0:
            return count_a, mean_a, m2_a
        if count_a == 0:
            return count_b, mean_b, m2_b
        count = count_a + count_b
        delta = mean_b - mean_a
        share = count_b / count
        return count, mean_a + delta * share, m2_a + m2_b + delta * delta * count_a * share

    @cuda.jit(device=True, inline=True)
    def lane_tree(counts, means, m2s, base, lane):
        """The shuffle-down tree (offsets 16..1) over slots base..base+31, in shared memory:
        slot base holds lane 0's result. All threads of the block call it."""
        offset = 16
        while offset > 0:
            if lane < offset:
                c, m, q = merge(counts[base + lane], means[base + lane], m2s[base + lane],
                                counts[base + lane + offset], means[base + lane + offset], m2s[base + lane + offset])
                counts[base + lane] = c
                means[base + lane] = m
                m2s[base + lane] = q
            cuda.syncthreads()
            offset //= 2
        return 0

    @cuda.jit(device=True, inline=True)
    def block_merge(count, mean, m2, counts, means, m2s):
        """Every thread's triple -> the block's (as every thread sees it): each warp's tree,
        then warp 0's tree over the warp results (zeros past the last warp)."""
        t = cuda.threadIdx.x
        lane = t % 32
        counts[t] = count
        means[t] = mean
        m2s[t] = m2
        cuda.syncthreads()
        lane_tree(counts, means, m2s, t - lane, lane)
        # warp results to slots threads..threads+31 (zeros past the last warp)
        if t < 32:
            if t < warps:
                counts[threads + t] = counts[32 * t]
                means[threads + t] = means[32 * t]
                m2s[threads + t] = m2s[32 * t]
            else:
                counts[threads + t] = 0
                means[threads + t] = 0
                m2s[threads + t] = 0
        cuda.syncthreads()
        lane_tree(counts, means, m2s, threads, t if t < 32 else 32)
        result = (counts[threads], means[threads], m2s[threads])
        cuda.syncthreads()  # the slots are reused by the next item
        return result

    @cuda.jit(device=True, inline=True)
    def thread_moments(x, base_x, minors, smajor, sminor, start, stop):
        """Moments of items start + t, start + t + T, ... < stop: batches of UNROLL values
        (two-pass about the first), each merged once; the rest one value a batch."""
        count = acc(0)
        mean = acc(0)
        m2 = acc(0)
        i = start + cuda.threadIdx.x
        if i >= stop:
            return count, mean, m2
        major = i // minors
        minor = i % minors
        step_major = threads // minors
        step_minor = threads % minors
        offset = base_x + major * smajor + minor * sminor
        step = step_major * smajor + step_minor * sminor
        wrap = smajor - minors * sminor
        values = cuda.local.array(UNROLL, acc)
        while i + (UNROLL - 1) * threads < stop:
            for u in range(UNROLL):
                values[u] = load_x(x[offset])
                offset += step
                minor += step_minor
                if minor >= minors:
                    minor -= minors
                    offset += wrap
            pivot = values[0]
            total = acc(0)
            for u in range(UNROLL):
                total += values[u] - pivot
            shift = total * (acc(1) / acc(UNROLL))
            sq = acc(0)
            for u in range(UNROLL):
                d = (values[u] - pivot) - shift
                sq += d * d
            count, mean, m2 = merge(count, mean, m2, acc(UNROLL), pivot + shift, sq)
            i += UNROLL * threads
        while keep_tail and i < stop:  # one value a batch, the same arithmetic as a batch of one
            value = load_x(x[offset])
            offset += step
            minor += step_minor
            if minor >= minors:
                minor -= minors
                offset += wrap
            shift = (value - value) * acc(1)
            d = (value - value) - shift
            count, mean, m2 = merge(count, mean, m2, acc(1), value + shift, d * d)
            i += threads
        return count, mean, m2

    @cuda.jit(device=True, inline=True)
    def normalize(x, w, b, y, base_x, base_y, c0, minors, sx_major, sx_minor, sy_major, sy_minor, inner,
                  start, stop, mean, rstd, table, use_table):
        i = start + cuda.threadIdx.x
        if i >= stop:
            return 0
        major = i // minors
        minor = i % minors
        step_major = threads // minors
        step_minor = threads % minors
        ox = base_x + major * sx_major + minor * sx_minor
        oy = base_y + major * sy_major + minor * sy_minor
        step_x = step_major * sx_major + step_minor * sx_minor
        step_y = step_major * sy_major + step_minor * sy_minor
        wrap_x = sx_major - minors * sx_minor
        wrap_y = sy_major - minors * sy_minor
        while i < stop:
            c = minor if inner else major  # channel within the group
            if use_table:
                scale = table[2 * c]
                shift = table[2 * c + 1]
            else:
                scale = rstd * load_p(w[c0 + c])
                shift = load_p(b[c0 + c])
            y[oy] = store_y((load_x(x[ox]) - mean) * scale + shift)
            ox += step_x
            oy += step_y
            major += step_major
            minor += step_minor
            if minor >= minors:
                minor -= minors
                major += 1
                ox += wrap_x
                oy += wrap_y
            i += threads
        return 0

    @cuda.jit(device=True, inline=True)
    def rstd_of(count, m2, eps):
        return acc(1) / math.sqrt(m2 / count + eps)

    @cuda.jit
    def forward(x, w, b, y, queue, tickets, partial, stats, groups, cpg, majors, minors, inner,
                sx_n, sx_major, sx_minor, sy_n, sy_major, sy_minor, groups_total, chunks, chunk, wave, eps):
        """The whole forward: work items from ``queue`` until it runs dry (see the module)."""
        counts = cuda.shared.array(slots, acc)
        means = cuda.shared.array(slots, acc)
        m2s = cuda.shared.array(slots, acc)
        table = cuda.shared.array(table_items, acc)
        claimed = cuda.shared.array(1, int64)
        flag = cuda.shared.array(1, int32)
        group_stats = cuda.shared.array(2, acc)
        t = cuda.threadIdx.x
        items = majors * minors
        fused = chunks == 1
        total = groups_total if fused else 2 * groups_total * chunks
        per_wave = 2 * wave * chunks
        use_table = 2 * cpg <= table_items
        while True:
            if t == 0:
                claimed[0] = int64(cuda.atomic.add(queue, 0, 1))
            cuda.syncthreads()
            index = claimed[0]
            cuda.syncthreads()
            if index >= total:
                if reset_queue and t == 0 and index == total + cuda.gridDim.x - 1:
                    queue[0] = 0  # the last claim: reset
                return
            stats_item = True
            normalize_item = True
            if fused:
                group = index
                k = int64(0)
            else:  # launch.py decode
                wave_index = index // per_wave
                first = wave_index * wave
                in_wave = min(wave, groups_total - first) * chunks
                r = index - wave_index * per_wave
                stats_item = r < in_wave
                normalize_item = not stats_item
                if normalize_item:
                    r -= in_wave
                group = first + r // chunks
                k = r % chunks
            n = group // groups
            c0 = (group % groups) * cpg
            base_x = n * sx_n + c0 * (sx_minor if inner else sx_major)
            base_y = n * sy_n + c0 * (sy_minor if inner else sy_major)
            start = int64(0) if fused else k * chunk
            stop = items if fused else min(start + chunk, items)
            mean = acc(0)
            rstd = acc(0)
            if stats_item:
                count, mean, m2 = thread_moments(x, base_x, minors, sx_major, sx_minor, start, stop)
                count, mean, m2 = block_merge(count, mean, m2, counts, means, m2s)
                if fused:
                    rstd = rstd_of(count, m2, eps)
                else:
                    if t == 0:
                        slot = 3 * (group * chunks + k)
                        partial[slot] = count
                        partial[slot + 1] = mean
                        partial[slot + 2] = m2
                        cuda.threadfence()
                        flag[0] = 1 if cuda.atomic.add(tickets, group, 1) == chunks - 1 else 0
                    cuda.syncthreads()
                    if flag[0] == 1:  # the last chunk's block merges the group's partials (warp 0)
                        cuda.threadfence()
                        if t < 32:
                            gc = acc(0)
                            gm = acc(0)
                            gq = acc(0)
                            j = int64(t)
                            while j < chunks:
                                slot = 3 * (group * chunks + (chunks - 1 - j if reverse_partials else j))
                                gc, gm, gq = merge(gc, gm, gq, cuda.atomic.add(partial, slot, acc(0)),
                                                   cuda.atomic.add(partial, slot + 1, acc(0)),
                                                   cuda.atomic.add(partial, slot + 2, acc(0)))
                                j += 32
                            counts[threads + t] = gc
                            means[threads + t] = gm
                            m2s[threads + t] = gq
                        cuda.syncthreads()
                        lane_tree(counts, means, m2s, threads, t if t < 32 else 32)
                        if t == 0:
                            stats[2 * group] = means[threads]
                            stats[2 * group + 1] = rstd_of(counts[threads], m2s[threads], eps)
                            cuda.threadfence()
                            cuda.atomic.add(tickets, group, 1)  # K + 1: published
                    cuda.syncthreads()
            if normalize_item:
                if not fused:  # wait until the group's statistics are published
                    if t == 0:
                        while wait and cuda.atomic.add(tickets, group, 0) < chunks + 1:
                            pause()
                        cuda.threadfence()
                        group_stats[0] = cuda.atomic.add(stats, 2 * group, acc(0))
                        group_stats[1] = cuda.atomic.add(stats, 2 * group + 1, acc(0))
                        if cuda.atomic.add(tickets, group, 1) == 2 * chunks and reset_tickets:
                            tickets[group] = 0  # the last reader resets
                    cuda.syncthreads()
                    mean = group_stats[0]
                    rstd = group_stats[1]
                if use_table:
                    c = t
                    while c < cpg:
                        table[2 * c] = rstd * load_p(w[c0 + c])
                        table[2 * c + 1] = load_p(b[c0 + c])
                        c += threads
                    cuda.syncthreads()
                normalize(x, w, b, y, base_x, base_y, c0, minors, sx_major, sx_minor, sy_major, sy_minor, inner,
                          start, stop, mean, rstd, table, use_table)
                cuda.syncthreads()  # the table and group_stats are reused by the next item

    return forward
