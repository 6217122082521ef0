"""Launch planning shared by our CUDA backends (``numba-cuda``, ``cupy``): pure host
arithmetic, unit-tested without a GPU.

* :func:`collapse` views an array of shape (N, C, *spatial) as (N, C, S) with one
  element stride per axis, or says it cannot.
* :func:`plan` picks the path (``fused``: one block a group; ``split``: a group cut into
  chunks, launched in L2-sized waves) and its geometry.
"""

from __future__ import annotations

import math

THREADS = 256
# Resident threads per SM on sm_80/sm_90, used to count the blocks in flight.
THREADS_PER_SM = 2048
MIN_CHUNK_PER_THREAD = 4  # a split block does at least this many elements a thread


def plan(groups_total: int, group_size: int, itemsize: int, *, sm_count: int, l2_bytes: int,
         threads: int = THREADS) -> dict:
    """The launch plan for ``groups_total`` groups of ``group_size`` elements.

    Returns ``{"path": "fused"}`` or ``{"path": "split", "chunks", "chunk", "wave"}``
    (``wave`` groups a launch pair, ``chunks`` blocks of ``chunk`` elements a group).
    Pure host arithmetic, unit-tested without a GPU.
    """
    if groups_total <= 0 or group_size <= 0:
        return {"path": "empty"}  # nothing to launch
    budget = max(1, l2_bytes // 2)
    group_bytes = group_size * itemsize
    in_flight = sm_count * max(1, THREADS_PER_SM // threads)
    if groups_total >= 2 * sm_count and min(groups_total, in_flight) * group_bytes <= budget:
        return {"path": "fused"}
    wave = max(1, min(groups_total, budget // max(1, group_bytes)))
    target_blocks = 4 * sm_count
    min_chunk = MIN_CHUNK_PER_THREAD * threads
    chunks = max(1, min(-(-target_blocks // wave), -(-group_size // min_chunk)))
    chunk = -(-group_size // chunks)
    chunk = -(-chunk // threads) * threads  # whole rounds of the block
    chunks = -(-group_size // chunk)
    return {"path": "split", "chunks": chunks, "chunk": chunk, "wave": wave}


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
    for (outer_n, outer_s), (inner_n, inner_s) in zip(spatial, spatial[1:]):
        if outer_s != inner_s * inner_n:
            return None
    return (shape[0], shape[1], positions), (elements[0], elements[1], step)
