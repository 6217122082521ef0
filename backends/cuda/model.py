"""A NumPy model of our CUDA GroupNorm kernels, second design (``backends/cuda/groupnorm.cu``;
the numba-cuda kernels follow the same decomposition with ``vec`` 1).

It performs the kernels' arithmetic in the kernels' order, so the algorithm is verified
on the CPU where the CUDA code cannot run:

* the item addressing (:func:`backends.cuda.launch.geometry`: a group as majors x minors
  items of ``vec`` elements, channels-last vectorized across channels) and the work
  items of the one persistent launch (:func:`backends.cuda.launch.plan`, ``work_items``);
* which thread of which block reads which items: thread t of a block takes items
  ``start + t, start + t + threads, ...``; full batches of ``unroll(vec)`` items, then
  one item a batch;
* a batch's moments in registers, two-pass about its first element (sequential sums in
  the accumulation type), merged into the thread's moments with Chan's formula;
* the warp merge tree as lane 0 sees it (``__shfl_down_sync`` offsets 16, 8, 4, 2, 1),
  the block merge of warp results (warp 0, zeros past the last warp);
* the split plan's ticketed merge: the group's partials merged by one warp, lane l
  taking partials l, l + 32, ... in order, then the shuffle-down tree: the same order
  whichever block drew the last ticket;
* normalize + affine ``(x - mean) * (rstd * w) + b`` in the accumulation type, rounded
  once to the output type.

What rests on the model alone: the arithmetic and its order. What it cannot show: FMA
contraction by nvcc (the GPU may round a*b+c once), scheduling, memory traffic, and the
synchronization (fences, tickets, the queue): the model runs items one after another, so
a missing fence or a race is invisible to it, as it is to Numba's simulator, which runs
blocks one at a time. Those need a GPU (compute-sanitizer racecheck, ncu).
"""

from __future__ import annotations

import numpy as np

from ..dtypes import dtype_name
from .launch import collapse, geometry, plan, unroll, work_items


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


def _tree(triple, axis_size=32):
    """Lane 0's result of the shuffle-down tree over the last axis (32 lanes)."""
    count, mean, m2 = triple
    offset = axis_size // 2
    while offset > 0:
        low = (count[..., :offset], mean[..., :offset], m2[..., :offset])
        high = (count[..., offset:2 * offset], mean[..., offset:2 * offset], m2[..., offset:2 * offset])
        count, mean, m2 = _merge(low, high)
        offset //= 2
    return count[..., 0], mean[..., 0], m2[..., 0]


def batch_moments(values, n):
    """``gn::batch``: the moments of the last axis's first ``n`` values (all rows the
    same n), two-pass about the first value, sums in order."""
    acc = values.dtype
    with np.errstate(all="ignore"):
        pivot = values[..., 0]
        total = np.zeros(values.shape[:-1], acc)
        for j in range(n):
            total = total + (values[..., j] - pivot)
        shift = total * (acc.type(1) / acc.type(n))
        m2 = np.zeros(values.shape[:-1], acc)
        for j in range(n):
            d = (values[..., j] - pivot) - shift
            m2 = m2 + d * d
    return np.full(values.shape[:-1], n, acc), pivot + shift, m2


def thread_moments(values, valid):
    """Each thread's moments: ``values`` (blocks, items, threads, vec), the items a thread
    reads in order; ``valid`` (blocks, items, threads) marks real items (a prefix per
    thread). Full batches of ``unroll(vec)`` items, then one item a batch."""
    acc = values.dtype
    blocks, steps, threads, vec = values.shape
    per_batch = unroll(vec)
    count = valid.sum(axis=1)
    full = count // per_batch
    moments = tuple(np.zeros((blocks, threads), acc) for _ in range(3))
    for b in range(steps // per_batch):
        chunk = values[:, b * per_batch:(b + 1) * per_batch]  # (blocks, U, threads, vec)
        batch = batch_moments(chunk.transpose(0, 2, 1, 3).reshape(blocks, threads, per_batch * vec),
                              per_batch * vec)
        merged = _merge(moments, batch)
        live = b < full
        moments = tuple(np.where(live, new, old) for new, old in zip(merged, moments))
    for j in range(steps):
        live = valid[:, j] & (j >= full * per_batch)
        if not live.any():
            continue
        merged = _merge(moments, batch_moments(values[:, j], vec))
        moments = tuple(np.where(live, new, old) for new, old in zip(merged, moments))
    return moments


def block_moments(values, valid, threads):
    """The block's moments as every thread sees them: per-thread batches, the warp tree,
    then warp 0's tree over the warp results (zeros past the last warp)."""
    acc = values.dtype
    blocks = values.shape[0]
    count, mean, m2 = thread_moments(values, valid)
    warps = threads // 32
    per_warp = _tree((count.reshape(blocks, warps, 32), mean.reshape(blocks, warps, 32),
                      m2.reshape(blocks, warps, 32)))
    padded = [np.zeros((blocks, 32), acc) for _ in range(3)]
    for array, source in zip(padded, per_warp):
        array[:, :warps] = source
    return _tree(tuple(padded))


def merge_partials(partials):
    """The ticketed merge: (count, mean, M2) arrays of shape (groups, chunks) -> per group.
    Lane l merges partials l, l + 32, ... in order from zero, then the shuffle-down tree."""
    acc = partials[0].dtype
    groups, chunks = partials[0].shape
    lanes = tuple(np.zeros((groups, 32), acc) for _ in range(3))
    for j in range(0, chunks, 32):
        width = min(32, chunks - j)
        part = tuple(np.concatenate([p[:, j:j + width], np.zeros((groups, 32 - width), acc)], axis=1)
                     for p in partials)
        lanes = _merge(lanes, part)
    return _tree(lanes)


def item_offsets(geo, groups, starts, stops, threads):
    """Element offsets (x, y) and channels of each thread's items: arrays (blocks, items,
    threads, vec) in the order the thread reads them, and the validity mask (blocks,
    items, threads). Item i of a group is (major i // minors, minor i % minors)."""
    longest = int((stops - starts).max()) if len(starts) else 0
    steps = max(1, -(-longest // threads))
    item = starts[:, None, None] + np.arange(threads)[None, None, :] + np.arange(steps)[None, :, None] * threads
    valid = item < stops[:, None, None]
    item = np.where(valid, item, 0)
    major, minor = item // geo.minors, item % geo.minors
    lane = np.arange(geo.vec)
    element = minor[..., None] * geo.vec + lane  # along the minor axis
    group = groups[:, None, None, None]
    x_off = geo.base(group, "x") + major[..., None] * geo.sx[1] + element * geo.sx[2]
    y_off = geo.base(group, "y") + major[..., None] * geo.sy[1] + element * geo.sy[2]
    channel = (element if geo.inner else np.broadcast_to(major[..., None], element.shape)) + \
        (group % geo.groups) * geo.cpg
    return x_off, y_off, channel, valid


def group_norm(x, num_groups, weight=None, bias=None, eps=1e-5, *, threads=256, sm_count=132,
               l2_bytes=50 << 20, blocks_per_sm=None, chunks=None, vectorize=True, trace=None):
    """What the kernels compute for host array ``x`` (any layout ``collapse`` accepts),
    with the given device facts. Returns a dense array of x's dtype (channels-last when x
    is). ``trace``, a list, receives the plan and the order partials were merged in."""
    kind = dtype_name(x.dtype)
    acc = np.dtype(np.float64 if kind == "float64" else np.float32)
    (_, _, positions), (_, sc, ss) = collapse(x.shape, x.strides, x.dtype.itemsize)
    out = _dense_like(x, positions > 1 and sc < ss)  # the backend's output: channels-last when x is
    if x.size == 0:
        return out
    itemsize = x.dtype.itemsize
    geo = geometry(x.shape, x.strides, out.strides, itemsize, num_groups, max_vec=None if vectorize else 1)
    w = np.ones(geo.channels, acc) if weight is None else np.asarray(weight).astype(acc)
    b = np.zeros(geo.channels, acc) if bias is None else np.asarray(bias).astype(acc)
    span = sum((n - 1) * s for n, s in zip(x.shape, x.strides)) // itemsize + 1
    flat_x = np.lib.stride_tricks.as_strided(x, shape=(span,), strides=(itemsize,))
    flat_y = np.lib.stride_tricks.as_strided(out, shape=(out.size,), strides=(itemsize,))
    chosen = plan(geo.groups_total, geo.items, itemsize * geo.vec, sm_count=sm_count, l2_bytes=l2_bytes,
                  threads=threads, blocks_per_sm=blocks_per_sm, chunks=chunks)
    if trace is not None:
        trace.append(chosen)
    chunks, chunk = chosen["chunks"], chosen["chunk"]
    # statistics items (fused: the whole group; split: chunk k of group g)
    stats = [(g, k) for kind_, g, k in work_items(geo.groups_total, chunks, chosen["wave"]) if kind_ != "normalize"]
    groups = np.array([g for g, _ in stats], np.int64)
    starts = np.array([k * chunk for _, k in stats], np.int64)
    stops = np.minimum(starts + chunk, geo.items)
    x_off, _, _, valid = item_offsets(geo, groups, starts, stops, threads)
    values = flat_x[np.where(valid[..., None], x_off, 0)].astype(acc)
    partial = block_moments(values, valid, threads)
    if chunks == 1:
        count, mean, m2 = partial
    else:
        order = np.argsort(groups * chunks + starts // chunk, kind="stable")
        per_group = tuple(p[order].reshape(geo.groups_total, chunks) for p in partial)
        count, mean, m2 = merge_partials(per_group)
        if trace is not None:
            trace.append("partials merged lane-strided, then the shuffle-down tree")
    rstd = _rstd(count, m2, eps, acc)
    # normalize: every element of every group from its group's two numbers
    all_groups = np.arange(geo.groups_total)
    x_off, y_off, channel, valid = item_offsets(geo, all_groups, np.zeros_like(all_groups), np.full_like(all_groups,
                                                geo.items), threads)
    keep = np.broadcast_to(valid[..., None], x_off.shape)
    g_index = np.broadcast_to(all_groups[:, None, None, None], x_off.shape)[keep]
    c = channel[keep]
    with np.errstate(all="ignore"):
        scale = rstd[g_index] * w[c]
        y = (flat_x[x_off[keep]].astype(acc) - mean[g_index]) * scale + b[c]
    flat_y[y_off[keep]] = y.astype(x.dtype)
    return out


def _dense_like(x, channels_last):
    """A dense array of x's shape and dtype: channels-last when ``channels_last``."""
    if not channels_last:
        return np.empty(x.shape, x.dtype)
    order = (0, *range(2, x.ndim), 1)
    buffer = np.empty(tuple(x.shape[i] for i in order), x.dtype)
    return buffer.transpose(tuple(order.index(i) for i in range(x.ndim)))


def _rstd(count, m2, eps, acc):
    with np.errstate(all="ignore"):
        return (acc.type(1) / np.sqrt(m2 / count + acc.type(eps))).astype(acc)
