"""Launch planning shared by our CUDA backends (``numba-cuda``, ``cupy``) and their NumPy
model: pure host arithmetic, unit-tested without a GPU.

* :func:`collapse` views an array of shape (N, C, *spatial) as (N, C, S) with one element
  stride per axis, or says it cannot.
* :func:`geometry` turns that view into the kernels' item addressing: a group is a 2-D
  array of items (majors x minors; an item = ``vec`` elements adjacent in memory along the
  minor axis). Planar layouts: major = channel, minor = position; channels-last: major =
  position, minor = channel, so a vector holds adjacent channels.
* :func:`plan` cuts the groups into work items for ONE persistent launch: ``fused`` (an
  item = a group: statistics, then normalize) or ``split`` (per wave of groups that fit
  in a quarter of the L2: every chunk's statistics item, then every chunk's normalize
  item; the last statistics block of a group merges its partials).
* :func:`work_items` lists the items in queue order (what the kernels decode from an
  index); the NumPy model and the tests use it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

THREADS = 256
# Resident threads per SM on sm_80/sm_90: the persistent grid's upper bound when the
# occupancy calculator is not at hand (the backends ask the driver when they can).
THREADS_PER_SM = 2048
MIN_ITEMS_PER_THREAD = 8  # a split chunk gives each thread at least 8 items (two 4-item batches)
INT32_MAX = 2**31 - 1


def unroll(vec: int) -> int:
    """Items in flight per thread (``gn::Unroll`` in groupnorm.cu): 4 vectors, or enough
    scalars for 16 elements."""
    return 4 if vec * 4 >= 16 else 16 // vec


def collapse(shape, strides, itemsize):
    """(N, C, S) and element strides (n, c, s) of an array's (N, C, *spatial) view, or
    None when its spatial dims do not collapse to one stride or a stride is negative or
    not a whole number of elements."""
    strides = [0 if n == 1 else s for n, s in zip(shape, strides)]  # a unit dim's stride never counts
    if any(s < 0 or s % itemsize for s in strides):
        return None
    elements = [s // itemsize for s in strides]
    spatial = [(n, s) for n, s in zip(shape[2:], elements[2:]) if n != 1]
    positions = math.prod(shape[2:])
    step = spatial[-1][1] if spatial else 1
    for (_, outer_s), (inner_n, inner_s) in zip(spatial, spatial[1:]):
        if outer_s != inner_s * inner_n:
            return None
    return (shape[0], shape[1], positions), (elements[0], elements[1], step)


def dense_strides(shape, itemsize, channels_last=False) -> tuple:
    """Byte strides of a dense array of ``shape``: channels-last (N, *spatial, C in memory)
    or C-contiguous."""
    channels, positions = shape[1], math.prod(shape[2:])
    element = (positions * channels, 1, channels) if channels_last else (channels * positions, positions, 1)
    spatial, step = [], element[2]
    for n in reversed(shape[2:]):
        spatial.append(step)
        step *= n
    return tuple(s * itemsize for s in (element[0], element[1], *reversed(spatial)))


@dataclass(frozen=True)
class Geometry:
    """How the kernels address one call: (N, C, S), groups, the item grid of a group and
    the element strides (sample, major, minor) of x and y."""

    n: int
    channels: int
    positions: int
    groups: int  # per sample
    inner: bool  # channels-last: major = position, minor = channel
    vec: int
    sx: tuple  # (sample, major, minor) element strides of x
    sy: tuple

    @property
    def cpg(self) -> int:
        return self.channels // self.groups

    @property
    def majors(self) -> int:
        return self.positions if self.inner else self.cpg

    @property
    def minors(self) -> int:
        """Items along the minor axis (``vec`` elements each)."""
        return (self.cpg if self.inner else self.positions) // self.vec

    @property
    def items(self) -> int:
        return self.majors * self.minors

    @property
    def groups_total(self) -> int:
        return self.n * self.groups

    @property
    def linear(self) -> bool:
        """Each group one arithmetic progression of addresses in x and in y (rows follow each
        other at the minor stride: the walk never wraps)."""
        return all(s[1] == self.minors * self.vec * s[2] for s in (self.sx, self.sy))

    def base(self, group, side):
        """Element offset of the first element of ``group`` (int or array) in x or y."""
        sn, smajor, sminor = self.sx if side == "x" else self.sy
        n, c0 = group // self.groups, (group % self.groups) * self.cpg
        return n * sn + c0 * (sminor if self.inner else smajor)


def geometry(shape, x_strides, y_strides, itemsize, num_groups, *, x_address=0, y_address=0,
             max_vec=None) -> Geometry | None:
    """The addressing of a call (strides in bytes), or None when x or y does not collapse.
    ``vec`` is the widest power of two up to ``max_vec`` (default: 16 bytes) such that items
    are adjacent in memory (minor stride 1), never straddle a row, and every item of x and y
    starts on a ``vec * itemsize``-byte boundary."""
    views = [collapse(shape, strides, itemsize) for strides in (x_strides, y_strides)]
    if None in views:
        return None
    (n, channels, positions), _ = views[0]
    sx, sy = views[0][1], views[1][1]
    inner = positions > 1 and sx[1] < sx[2]
    cpg = channels // num_groups

    def sides(s):  # (sample, major, minor)
        return (s[0], s[2], s[1]) if inner else (s[0], s[1], s[2])

    ax, ay = sides(sx), sides(sy)
    if positions == 1 and not inner:  # one position: the group's channels form the minor axis
        ax, ay = (sx[0], 0, sx[1]), (sy[0], 0, sy[1])
    minor_extent = cpg if inner or positions == 1 else positions
    vec = 1
    width = (max_vec or 16 // itemsize)
    while width > 1:
        if (minor_extent % width == 0 and all(s[2] == 1 and s[1] % width == 0 and s[0] % width == 0 for s in (ax, ay))
                and (cpg * (1 if inner or positions == 1 else positions)) % width == 0
                and x_address % (width * itemsize) == 0 and y_address % (width * itemsize) == 0):
            vec = width
            break
        width //= 2
    if positions == 1 and not inner:
        return Geometry(n, channels, 1, num_groups, True, vec, ax, ay)  # channels as the minor axis
    return Geometry(n, channels, positions, num_groups, inner, vec, ax, ay)


def plan(groups_total: int, group_items: int, item_bytes: int, *, sm_count: int, l2_bytes: int,
         threads: int = THREADS, blocks_per_sm: int | None = None,
         min_items_per_thread: int = MIN_ITEMS_PER_THREAD, chunks: int | None = None) -> dict:
    """The work of one persistent launch for ``groups_total`` groups of ``group_items``
    items of ``item_bytes`` bytes.

    Returns ``{"path", "chunks", "chunk", "wave", "grid", "items", "launches"}``: ``fused``
    (chunks 1: an item is a group) when there are enough groups to fill the GPU and the
    groups in flight fit in half the L2, else ``split`` (chunks > 1). ``wave`` groups are
    in flight at once in a split plan: their bytes fit in a quarter of the L2 (the wave
    being normalized and the next one being read; y is written with evict-first stores).
    ``grid`` is the persistent grid: at most the resident blocks, never more than items.
    ``min_items_per_thread`` bounds how finely a group is cut; ``chunks`` forces a split
    plan with that many chunks a group (at most one per ``threads`` items): tests use them
    so that tiny groups split.
    """
    if groups_total <= 0 or group_items <= 0:
        return {"path": "empty", "launches": 0}  # nothing to launch
    resident = sm_count * (blocks_per_sm or max(1, THREADS_PER_SM // threads))
    group_bytes = group_items * item_bytes
    forced = chunks
    if forced is None and groups_total >= 2 * sm_count and min(groups_total, resident) * group_bytes <= l2_bytes // 2:
        chunks, chunk, wave = 1, group_items, groups_total
    else:
        wave = max(1, min(groups_total, (l2_bytes // 4) // max(1, group_bytes)))
        min_chunk = min_items_per_thread * threads
        chunks = max(1, min(-(-2 * resident // wave), -(-group_items // min_chunk)))
        if forced is not None:
            chunks = max(1, min(forced, -(-group_items // threads)))
        chunk = -(-group_items // chunks)
        chunk = -(-chunk // threads) * threads  # whole rounds of the block
        chunks = -(-group_items // chunk)
        if chunks == 1:
            wave = groups_total
    items = groups_total if chunks == 1 else 2 * groups_total * chunks
    return {"path": "fused" if chunks == 1 else "split", "chunks": chunks, "chunk": chunk, "wave": wave,
            "grid": min(items, resident), "items": items, "launches": 1}


def work_items(groups_total: int, chunks: int, wave: int):
    """The work items in queue order, as the kernels decode an index: tuples
    (kind, group, chunk) with kind "fused", "stats" or "normalize"."""
    if chunks == 1:
        return [("fused", g, 0) for g in range(groups_total)]
    out = []
    for first in range(0, groups_total, wave):
        groups = range(first, min(first + wave, groups_total))
        out += [("stats", g, k) for g in groups for k in range(chunks)]
        out += [("normalize", g, k) for g in groups for k in range(chunks)]
    return out


def decode(index: int, groups_total: int, chunks: int, wave: int):
    """Item ``index`` of the queue: the kernels' arithmetic (no list), checked against
    :func:`work_items` by the tests."""
    if chunks == 1:
        return ("fused", index, 0)
    per_wave = 2 * wave * chunks
    wave_index = index // per_wave
    first = wave_index * wave
    in_wave = min(wave, groups_total - first) * chunks
    r = index - wave_index * per_wave
    kind = "stats" if r < in_wave else "normalize"
    if kind == "normalize":
        r -= in_wave
    return (kind, first + r // chunks, r % chunks)
