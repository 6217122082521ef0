"""A NumPy model of the ``cupy`` backend's CUDA kernels (``backends/cuda/groupnorm.cu``).

It performs the kernels' arithmetic in the kernels' order, so the algorithm is verified
on the CPU where the CUDA code cannot run:

* the launch plan (:func:`backends._launch.plan`) and the address arithmetic (the same
  formulas as ``gn::address``, element strides over the (N, C, S) view, ``inner`` for
  channels-last, items of ``vec`` elements for the 128-bit path);
* which thread of which block reads which items: thread t of a block takes items
  ``start + t, start + t + threads, ...``, each item's ``vec`` elements in order;
* per-thread Welford in the accumulation type (float32, float64 for float64 input);
* the warp merge tree as lane 0 sees it (``__shfl_down_sync`` offsets 16, 8, 4, 2, 1),
  the block merge of warp results (warp 0, zeros past the last warp), the split path's
  partials merged in chunk order;
* normalize + affine ``(x - mean) * (rstd * w) + b`` in the accumulation type, rounded
  once to the output type.

What it cannot show: FMA contraction by nvcc (the GPU may round a*b+c once), scheduling,
memory traffic, races. Those need a GPU (compute-sanitizer, ncu).
"""

from __future__ import annotations

import numpy as np

from ._launch import collapse, plan
from .dtypes import dtype_name


def vector_width(itemsize: int) -> int:
    """Elements in a 128-bit load."""
    return 16 // itemsize


def can_vectorize(shape, x_strides, y_strides, itemsize, x_address=0, y_address=0) -> bool:
    """Whether the 128-bit path applies: each group contiguous in x and in y (channel
    stride S, position stride 1), S a multiple of the vector width, group starts and
    both base addresses 16-byte aligned."""
    vec = vector_width(itemsize)
    for strides, base in ((x_strides, x_address), (y_strides, y_address)):
        view = collapse(shape, strides, itemsize)
        if view is None:
            return False
        (_, _, positions), (sn, sc, ss) = view
        if positions % vec or base % 16:
            return False
        if positions > 1 and (ss != 1 or sc != positions):
            return False
        if positions == 1 and sc != 1:
            return False
        if (sn * itemsize) % 16:
            return False
    return True


def _merge(a, b):
    """Chan's merge of two (count, mean, M2) triples of arrays; an empty side passes the other."""
    (ca, ma, qa), (cb, mb, qb) = a, b
    with np.errstate(all="ignore"):
        count = ca + cb
        delta = mb - ma
        share = np.where(count > 0, cb / np.where(count > 0, count, 1), 0).astype(ca.dtype)
        mean = ma + delta * share
        m2 = qa + qb + delta * delta * ca * share
    empty_b, empty_a = cb == 0, ca == 0
    mean = np.where(empty_b, ma, np.where(empty_a, mb, mean))
    m2 = np.where(empty_b, qa, np.where(empty_a, qb, m2))
    return count, mean, m2


def _tree(triple, axis_size):
    """Lane 0's result of the shuffle-down tree over the last axis (32 lanes)."""
    count, mean, m2 = triple
    offset = axis_size // 2
    while offset > 0:
        low = (count[..., :offset], mean[..., :offset], m2[..., :offset])
        high = (count[..., offset:2 * offset], mean[..., offset:2 * offset], m2[..., offset:2 * offset])
        count, mean, m2 = _merge(low, high)
        offset //= 2
    return count[..., 0], mean[..., 0], m2[..., 0]


def block_moments(values, valid, threads):
    """The block merge of per-thread Welford moments.

    ``values`` is (blocks, steps, threads): the sequence each thread reads, ``valid`` the
    mask of real elements. Returns (count, mean, M2) per block, as every thread sees it."""
    acc = values.dtype
    blocks, steps, _ = values.shape
    count = np.zeros((blocks, threads), acc)
    mean = np.zeros((blocks, threads), acc)
    m2 = np.zeros((blocks, threads), acc)
    with np.errstate(all="ignore"):
        for step in range(steps):
            live = valid[:, step, :]
            value = values[:, step, :]
            new_count = count + acc.type(1)
            delta = value - mean
            new_mean = mean + delta / new_count
            new_m2 = m2 + delta * (value - new_mean)
            count = np.where(live, new_count, count)
            mean = np.where(live, new_mean, mean)
            m2 = np.where(live, new_m2, m2)
    warps = threads // 32
    per_warp = _tree((count.reshape(blocks, warps, 32), mean.reshape(blocks, warps, 32),
                      m2.reshape(blocks, warps, 32)), 32)
    padded = [np.zeros((blocks, 32), acc) for _ in range(3)]
    for array, source in zip(padded, per_warp):
        array[:, :warps] = source
    return _tree(tuple(padded), 32)


class Launch:
    """The (N, C, S) view of one call and the address arithmetic of ``gn::address``."""

    def __init__(self, x, num_groups, y_strides, vec):
        itemsize = x.dtype.itemsize
        (self.n, self.channels, self.positions), self.sx = collapse(x.shape, x.strides, itemsize)
        _, self.sy = collapse(x.shape, y_strides, itemsize)
        self.groups = num_groups
        self.cpg = self.channels // num_groups
        self.inner = self.positions > 1 and self.sx[1] < self.sx[2]
        self.vec = vec
        self.items = self.cpg * self.positions // vec

    def elements(self, group, item_index):
        """Element offsets (x and y) and channels of the ``vec`` elements of items
        ``item_index`` (array) of ``group`` (array, same shape): shape (..., vec)."""
        n = group // self.groups
        c0 = (group % self.groups) * self.cpg
        e = item_index[..., None] * self.vec + np.arange(self.vec)
        if self.inner:
            c, s = c0[..., None] + e % self.cpg, e // self.cpg
        else:
            c, s = c0[..., None] + e // self.positions, e % self.positions
        x_off = n[..., None] * self.sx[0] + c * self.sx[1] + s * self.sx[2]
        y_off = n[..., None] * self.sy[0] + c * self.sy[1] + s * self.sy[2]
        return x_off, y_off, c


def _thread_sequences(launch, groups, starts, stops, threads, flat_x, acc):
    """(values, valid, x offsets, y offsets, channels) of each thread's items, laid out
    (blocks, steps * vec, threads) in the order the thread reads them."""
    longest = int((stops - starts).max()) if len(starts) else 0
    steps = max(1, -(-longest // threads))
    step = np.arange(steps)[None, :, None]
    t = np.arange(threads)[None, None, :]
    item = starts[:, None, None] + t + step * threads
    valid_item = item < stops[:, None, None]
    item = np.where(valid_item, item, 0)
    x_off, y_off, c = launch.elements(np.broadcast_to(groups[:, None, None], item.shape), item)
    # (blocks, steps, threads, vec) -> (blocks, steps * vec, threads): a thread reads its item's vec elements in turn
    order = (0, 1, 3, 2)
    shape = (len(starts), steps * launch.vec, threads)
    x_off = x_off.transpose(order).reshape(shape)
    y_off = y_off.transpose(order).reshape(shape)
    c = c.transpose(order).reshape(shape)
    valid = np.repeat(valid_item, launch.vec, axis=1)
    values = flat_x[np.where(valid, x_off, 0)].astype(acc)
    return values, valid, x_off, y_off, c


def group_norm(x, num_groups, weight=None, bias=None, eps=1e-5, *, threads=256, sm_count=132,
               l2_bytes=50 << 20, vectorize=True):
    """What the cupy kernels compute for host array ``x`` (any layout ``collapse`` accepts),
    with the given device facts. Returns a contiguous array of x's dtype."""
    kind = dtype_name(x.dtype)
    acc = np.dtype(np.float64 if kind == "float64" else np.float32)
    out = np.empty(x.shape, x.dtype)
    if x.size == 0:
        return out
    itemsize = x.dtype.itemsize
    use_vec = vectorize and can_vectorize(x.shape, x.strides, out.strides, itemsize)
    launch = Launch(x, num_groups, out.strides, vector_width(itemsize) if use_vec else 1)
    channels = launch.channels
    w = np.ones(channels, acc) if weight is None else np.asarray(weight).astype(acc)
    b = np.zeros(channels, acc) if bias is None else np.asarray(bias).astype(acc)
    span = sum((n - 1) * s for n, s in zip(x.shape, x.strides)) // itemsize + 1
    flat_x = np.lib.stride_tricks.as_strided(x, shape=(span,), strides=(itemsize,))
    flat_y = out.reshape(-1)
    groups_total = launch.n * num_groups
    chosen = plan(groups_total, launch.items, itemsize * launch.vec, sm_count=sm_count, l2_bytes=l2_bytes,
                  threads=threads)

    def normalize(groups, starts, stops, mean, rstd):
        values, valid, _, y_off, c = _thread_sequences(launch, groups, starts, stops, threads, flat_x, acc)
        with np.errstate(all="ignore"):
            scale = rstd[:, None, None] * w[c]
            y = (values - mean[:, None, None]) * scale + b[c]
        flat_y[y_off[valid]] = y[valid].astype(x.dtype)

    if chosen["path"] == "fused":
        groups = np.arange(groups_total)
        starts, stops = np.zeros(groups_total, np.int64), np.full(groups_total, launch.items)
        values, valid, *_ = _thread_sequences(launch, groups, starts, stops, threads, flat_x, acc)
        count, mean, m2 = block_moments(values, valid, threads)
        normalize(groups, starts, stops, mean, _rstd(count, m2, eps, acc))
        return out
    chunks, chunk, wave = chosen["chunks"], chosen["chunk"], chosen["wave"]
    for first in range(0, groups_total, wave):
        blocks = np.arange(min(wave, groups_total - first) * chunks)
        groups = first + blocks // chunks
        starts = (blocks % chunks) * chunk
        stops = np.minimum(starts + chunk, launch.items)
        values, valid, *_ = _thread_sequences(launch, groups, starts, stops, threads, flat_x, acc)
        partial = block_moments(values, valid, threads)  # gn_partial
        # gn_normalize_split: each block merges its group's partials in chunk order
        per_group = [array.reshape(-1, chunks) for array in partial]
        merged = (np.zeros(len(per_group[0]), acc),) * 3
        for k in range(chunks):
            merged = _merge(merged, tuple(array[:, k] for array in per_group))
        count, mean, m2 = (np.repeat(array, chunks) for array in merged)
        normalize(groups, starts, stops, mean, _rstd(count, m2, eps, acc))
    return out


def _rstd(count, m2, eps, acc):
    with np.errstate(all="ignore"):
        return (acc.type(1) / np.sqrt(m2 / count + acc.type(eps))).astype(acc)
