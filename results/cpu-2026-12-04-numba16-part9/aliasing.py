"""The normalize pass of each numba-cpu kernel family against where its output lies
relative to its input, modulo 4 KiB (the cause of part 8's slow mode).

x is placed at a page boundary and y at x + k pages + ``offset`` bytes; each pass runs
with y given (the kernels' own row/plane functions, as the kernels call them), median of
15 calls per offset, 2 threads, pinned allocator. Printed: each offset's time over the
median across offsets. Offsets 16-144 past x are where the loads of x wait on the stores
to y just issued (4K aliasing); since this part the kernels place y half a page (2048
bytes) past x (``empty_apart``). Run from the repo root:

    python results/cpu-2026-12-04-numba16-part9/aliasing.py
"""

import pathlib
import sys
import time

import ml_dtypes
import numba
import numpy as np

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "cpu-2026-12-04-numba16-part8"))
from _interleaved import pin_allocator  # noqa: E402,F401  (the repo on the path, the allocator pinned)

from backends import _numba_cpu_kernels as K  # noqa: E402

PAGE = 4096
OFFSETS = list(range(0, 320, 16)) + [1024, 2048, 3072, 3968, 4032, 4080]
threads = numba.get_num_threads()


@numba.njit(parallel=True)
def channels_last_rows(x, out, scale, shift, kind, threads):
    """The channels-last normalize: kind 0 float32 streamed (_stream_rows), 1 float32
    plain (_affine_rows); blocks as the kernel splits them."""
    samples, positions, channels = x.shape
    block, blocks, wave = K._wave_plan(x, threads)
    for task in numba.prange(samples * blocks):
        n, p0 = task // blocks, (task % blocks) * block
        p1 = min(p0 + block, positions)
        if kind == 0:
            K._stream_rows(x[n][p0:p1], out[n][p0:p1], scale[n], shift[n])
            K.stream_fence()
        else:
            K._affine_rows(x[n][p0:p1], out[n][p0:p1], scale[n][:channels], shift[n][:channels])


@numba.njit(parallel=True)
def channels_last_bits(x, out, scale, shift, threads):
    """The 16-bit channels-last normalize (bfloat16, streamed: _lane_rows_bits)."""
    samples, positions, channels = x.shape
    block, blocks, wave = K._wave_plan(x, threads)
    for task in numba.prange(samples * blocks):
        n, p0 = task // blocks, (task % blocks) * block
        p1 = min(p0 + block, positions)
        K._lane_rows_bits(x[n][p0:p1], out[n][p0:p1], scale[n], shift[n], True, True)
        K.stream_fence()


@numba.njit(parallel=True)
def group_planes(rows, out, scale, shift, positions, stream):
    """The contiguous normalize of group_norm_by_group (_normalize_planes), one task a group."""
    for g in numba.prange(rows.shape[0]):
        K._normalize_planes(rows[g], out[g], scale, shift, positions, stream)
        if stream:
            K.stream_fence()


def sweep(label, shape, dtype, call):
    rng = np.random.default_rng(0)
    nbytes = int(np.prod(shape)) * np.dtype(dtype).itemsize
    arena = np.empty(2 * nbytes + (1 << 23), np.uint8)
    base = (-arena.ctypes.data) % PAGE
    x = arena[base:base + nbytes].view(dtype).reshape(shape)
    values = rng.standard_normal(shape, dtype=np.float32)
    x[...] = values.astype(ml_dtypes.bfloat16).view(np.uint16) if dtype == np.uint16 else values
    times = {}
    for offset in OFFSETS:
        start = base + nbytes + (1 << 20) + ((offset - nbytes - (1 << 20)) % PAGE)
        y = arena[start:start + nbytes].view(dtype).reshape(shape)
        assert (y.ctypes.data - x.ctypes.data) % PAGE == offset
        call(x, y)
        samples = []
        for _ in range(15):
            begin = time.perf_counter()
            call(x, y)
            samples.append(time.perf_counter() - begin)
        times[offset] = np.median(samples)
    median = np.median(list(times.values()))
    worst = max(times, key=times.get)
    print(f"{label}: median {median * 1e3:.3f} ms, worst {times[worst] / median:.2f}x at +{worst}, "
          f"at +2048 {times[2048] / median:.2f}x")
    print("   " + " ".join(f"+{o}:{t / median:.2f}" for o, t in times.items()), flush=True)


print(f"numba-cpu normalize passes, {threads} threads; time at each (y - x) mod 4096 over the median")


def coefficients(channels, lanes):
    """(scale, shift) per sample, each row wrapped as the kernels wrap them (C + lanes)."""
    return np.ones((64, channels + lanes), np.float32), np.zeros((64, channels + lanes), np.float32)


sweep("channels-last bfloat16 1x512x128x128 (16 MiB), streamed", (1, 16384, 512), np.uint16,
      lambda x, y: channels_last_bits(x, y, *coefficients(512, 32), threads))
sweep("channels-last float32 1x128x256x256 (32 MiB), streamed", (1, 65536, 128), np.float32,
      lambda x, y: channels_last_rows(x, y, *coefficients(128, 16), 0, threads))
sweep("channels-last float32 2x320x64x64 (10 MiB), plain stores", (2, 4096, 320), np.float32,
      lambda x, y: channels_last_rows(x, y, *coefficients(320, 16), 1, threads))
sweep("contiguous float32 16 groups of 8x65536 (32 MiB), streamed", (16, 8 * 65536), np.float32,
      lambda x, y: group_planes(x, y, np.ones(8, np.float32), np.zeros(8, np.float32), 65536, True))
sweep("contiguous float32 64 groups of 10x4096 (10 MiB), plain stores", (64, 10 * 4096), np.float32,
      lambda x, y: group_planes(x, y, np.ones(10, np.float32), np.zeros(10, np.float32), 4096, False))
