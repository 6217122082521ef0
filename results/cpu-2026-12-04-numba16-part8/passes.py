"""What limits numba-cpu's channels-last kernel on the large shapes: each pass timed
alone, beside the whole kernel, torch's copy (the roofline) and a plain read (torch's sum
of x, 2 threads), interleaved in one process (pinned allocator, 2 threads).

- ``statistics``: the kernel's first pass alone, all waves (``_block_group_moments`` on
  every block, as the kernel calls it; x from DRAM, summed row by row);
- ``normalize``: its second pass alone, with fixed scale and shift (x read again, y in
  streaming stores: the kernel's own ``_stream_rows`` / ``_lane_rows_bits``);
- ``kernel``: the whole kernel; ``copy``: torch's ``copy_`` of x's bytes into a buffer
  (the bench's roofline kernel); ``sum``: ``torch.sum`` of x (a read at the speed a
  plain reduction reaches).

GB/s are x's bytes over the time (so a pass that reads x once and a copy that reads and
writes x's bytes both count x once). Run from the repo root:

    python results/cpu-2026-12-04-numba16-part8/passes.py [seconds per shape]
"""

import sys

import ml_dtypes
import numba
import numpy as np
import torch
from _interleaved import race, statistics_pass  # the repo on the path, the allocator pinned

from backends import _numba_cpu_kernels as K
from backends.numba_cpu_backend import stream_bytes

torch.set_num_threads(2)
seconds = float(sys.argv[1]) if len(sys.argv) > 1 else 15.0


statistics = statistics_pass(K)


def normalizer(rows_of):
    """The second pass with streaming stores (``stream`` must be on: large shapes only),
    each block's rows by ``rows_of`` (one function per type of x)."""

    @numba.njit(parallel=True)
    def normalize(x, scale, shift, bfloat, stream, threads):
        samples, positions, channels = x.shape
        block, blocks, wave = K._wave_plan(x, threads)
        out = np.empty_like(x)
        for first in range(0, samples, wave):
            count = min(wave, samples - first)
            for task in numba.prange(count * blocks):
                n, p0 = first + task // blocks, (task % blocks) * block
                p1 = min(p0 + block, positions)
                rows_of(x[n][p0:p1], out[n][p0:p1], scale[n - first], shift[n - first], bfloat, stream)
                K.stream_fence()
        return out

    return normalize


@numba.njit
def _float_rows(source, target, scale, shift, bfloat, stream):
    K._stream_rows(source, target, scale, shift)


normalize_floats, normalize_bits = normalizer(_float_rows), normalizer(K._lane_rows_bits)


rng = np.random.default_rng(0)
threads = numba.get_num_threads()
print(f"kernel {K.__name__}, {threads} threads, {seconds:.0f} s a shape; GB/s = x's bytes / time")
for shape, groups, dtype in [((16, 64, 256, 256), 8, "float32"), ((1, 128, 512, 512), 32, "float32"),
                             ((1, 512, 256, 256), 32, "bfloat16"), ((1, 512, 256, 256), 32, "float16")]:
    samples, channels = shape[0], shape[1]
    values = rng.standard_normal((samples, shape[2] * shape[3], channels), dtype=np.float32)
    bfloat = dtype == "bfloat16"
    if dtype == "float32":
        rows = values
        lanes = 16
    else:
        rows = values.astype(ml_dtypes.bfloat16 if bfloat else np.float16).view(np.uint16)
        lanes = 32
    stream = 2 * rows.nbytes >= stream_bytes()
    w, b = np.ones(channels), np.zeros(channels)
    scale = np.ones((samples, channels + lanes), np.float32)  # wrapped as the kernels wrap them
    shift = np.zeros((samples, channels + lanes), np.float32)
    if dtype == "float32":
        whole = lambda: K.group_norm_channels_last(rows, groups, w, b, 1e-5, stream, threads)  # noqa: E731
    else:
        whole = lambda: K.group_norm_half_channels_last(rows, groups, w, b, 1e-5, np.empty(0, np.float32),  # noqa: E731
                                                        bfloat, stream, threads)
    source = torch.empty(rows.nbytes, dtype=torch.uint8).fill_(1)
    target = torch.empty_like(source)
    flat = torch.from_numpy(values.reshape(-1)) if dtype == "float32" else \
        torch.from_numpy(rows.reshape(-1).view(np.int16)).view(torch.bfloat16 if bfloat else torch.float16)
    calls = {"statistics": lambda: statistics(rows, groups, bfloat, stream, threads),
             "normalize": lambda: (normalize_floats if dtype == "float32" else normalize_bits)(
                 rows, scale, shift, bfloat, stream, threads),
             "kernel": whole, "copy": lambda: target.copy_(source), "sum": lambda: flat.sum()}
    times = race(calls, seconds)
    medians = {name: np.median(t) for name, t in times.items()}
    print(f"{'x'.join(map(str, shape))}/{groups} {dtype} channels-last (x {rows.nbytes / 2**20:.0f} MiB, "
          f"stream {stream}, {len(times['kernel'])} rounds)")
    for name, median in medians.items():
        print(f"  {name:10} {median * 1e3:8.3f} ms  {rows.nbytes / median / 1e9:6.1f} GB/s")
    print(f"  statistics + normalize {(medians['statistics'] + medians['normalize']) * 1e3:.3f} ms; "
          f"copy / kernel {medians['copy'] / medians['kernel']:.2f}")
