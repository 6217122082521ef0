"""``numba-cpu``: our own GroupNorm kernel for the CPU, ``numba.njit(parallel=True)``.

Design (issue #6; kernels in ``kernels.py``):

* Parallel over (sample, group) when there are at least as many groups as threads: each
  task computes its group's statistics, then normalizes the same group while it is still
  in cache (one DRAM read of x, one write of y).
* Fewer groups than threads (SD VAE: N=1, 32 groups of millions): each group's
  statistics in several parallel pieces merged in order, then normalization parallel
  over (group, channel) planes.
* Statistics: chunks of 4096 elements in the input's precision (8 float32 lanes a
  vector), merged in float64 with Chan's formula; no running sum spans more than one
  chunk, so groups of 10^7 elements keep full accuracy. A chunk is read once, its sums
  centred on the mean of its first 16 elements, where that centre is close enough to the
  chunk mean to be as accurate as the corrected two-pass method; otherwise (a step, an
  outlier at the head, NaN, Inf) it is summed again by that method from L1. Chunks under
  64 elements: two-pass in float64.
* Normalize: ``y = x * a + c`` per channel, ``a = rstd * w``, ``c = b - mean * a``, in the
  input's precision, each output element written once into a fresh array.
* float32 and float64 natively; float16 and bfloat16 as their raw bits (Numba has no
  16-bit float type on the CPU), fused: the statistics' sums read the bits and widen
  them in registers (float16 by F16C's ``vcvtph2ps`` where the CPU has it; bfloat16 by a
  shift), a chunk widened into an L1 scratch only for the two-pass method (and, without
  F16C, by NumPy's exact 65536-entry table); the normalize reads the bits
  again (from L2) and widens, applies ``x * a + c`` and narrows with round-to-nearest-even
  (``vcvtps2ph``; bfloat16 by ``vcvtneps2bf16`` where the CPU has AVX512-BF16, a vector
  holding a float32 subnormal by 8-lane integer vector code, which is the only bfloat16
  narrowing on other CPUs) in one vector pass, so nothing
  wider than the input goes to memory. Without those vector conversions, or where a
  channel's plane is not a multiple of 8 elements: the affine loop then the narrowing
  (scalar float16 code without F16C), a group of up to 2^18 elements kept widened
  between the passes. (With fewer groups than threads: widen everything, the float32
  kernel, narrow everything, each pass parallel; the same bits.)
* Channels-last input is read in place as (N, positions, C): the statistics of a block of
  positions (up to 128K elements, at least 4 blocks a thread) per channel, vectorized
  along C (16 x 16 register tiles; row by row where x comes from DRAM, the streaming case
  below; one pass centred on the block's first 64 positions, two passes for a channel
  that needs them), channels combined per group, then
  ``y = x * a + c`` along the channels; samples in waves of about 16 MiB so the second read
  can come from L3; y keeps the layout. 16-bit blocks are read as bits and widened in
  the tiles' registers (without F16C, float16 blocks go through an L2 scratch), y
  narrowed as it is made, a 64-byte line (32 elements) a step across the rows (the same
  bits as the float32 kernel on the widened input). Other non-contiguous inputs are
  copied to contiguous first (one copy, counted in the timing). NaN and Inf propagate; a
  constant group gives bias.
* Backward (``forward_train`` keeps x and the forward's (mean, rstd) per group, float64):
  one task per (sample, group) takes per channel sum(dy) and sum(dy * (x - mean)) in
  one pass over x and dy (chunks in the input's precision, merged in float64), then
  ``dx = rstd * (w * dy - A) - rstd^2 * B * (x - mean)`` with x and dy re-read from
  cache; dweight/dbias per (sample, channel) summed over samples in order: deterministic
  bit for bit, no atomics. For 16-bit x and dy the sums read their bits, widened in
  registers, and dx is computed from their bits in one vector pass (widen, dx, narrow);
  without vector conversions (float16 without F16C), chunk by chunk through L1 scratch.
* Streaming stores: where a call's arrays together (x and y; in the backward x, dy and
  dx) reach the last-level cache's size (:func:`stream_bytes`), y and dx are written a
  64-byte line at a time with non-temporal stores (``stores.py``; 16-bit output
  too, 32 elements a store), which skip reading each output line before writing it and
  leave x in the cache; same bits.
* Placement: every output (y, dx) is allocated one page larger and placed half a page
  from its input modulo 4 KiB (``empty_apart``; dx also clear of dy): a y starting 16-144
  bytes past x made each load of x wait on the store to y just issued (4K aliasing), up
  to 2.4x on the normalize pass. A large NumPy x lies 16 bytes past a page and NRT's y
  64, so with glibc's defaults y - x was 48 every call; in the harness's workers it came
  and went with the heap (the slow mode of part 8; results/cpu-2026-12-04-numba16-part9).
  An output of 4 MiB or more is advised onto huge pages before its first touch
  (``madvise(MADV_HUGEPAGE)``, Linux, as NumPy does for its arrays): where glibc maps each
  large output afresh (a plain script), faulting in a 134 MB y took 52 ms in 4 KiB pages
  and 15 ms advised.
* Compiled on first use and cached on disk (``cache=True``), so a second process loads
  the machine code instead of compiling; the bench reports compile time apart.

Measured figures (bench against torch, roofline, verification) are in the results folders
named in README.md; the latest are results/cpu-2026-12-04-numba16-part9 (output placement)
and -part7 (vcvtneps2bf16).
(Parts 2 and 3 reported channels-last figures that timed the contiguous kernel:
``from_numpy`` made every input C-contiguous until part 4.)
"""

from __future__ import annotations

import functools
import os

from ..base import GroupNormBackend, hash_files, host_copy, missing_module
from ..dtypes import DTYPES

HERE = os.path.dirname(os.path.abspath(__file__))
# The kernels, the helpers inlined into them, and this file (how they are called): the version's hash.
SOURCES = tuple(os.path.join(HERE, name) for name in ("kernels.py", "halves.py", "tiles.py", "stores.py", "backend.py"))


def _kernels():
    """The compiled kernels (importing numba): see ``kernels.py``."""
    from . import kernels

    return kernels


@functools.cache
def stream_bytes() -> int:
    """Bytes that a call's arrays (forward: x and y; backward: x, dy and dx) must reach
    together for the kernels to write their output with streaming stores
    (``stores``): the size of the last-level cache (Linux sysfs), 32 MiB where it
    cannot be read. Below it y stays in the cache beside x, where ordinary stores are
    faster (float32 (2,320,64,64)/32, 21 MB in all: 0.25 ms against 0.45 ms streamed);
    above it streaming saves reading each line of y before writing it (16x64x256x256/8:
    13.0 against 18.9 ms)."""
    import glob

    units = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}
    caches = []
    for folder in glob.glob("/sys/devices/system/cpu/cpu0/cache/index*"):
        try:
            with open(os.path.join(folder, "level")) as level, open(os.path.join(folder, "size")) as size:
                text = size.read().strip()
                caches.append((int(level.read()), int(text[:-1]) * units[text[-1]] if text[-1] in units else int(text)))
        except (OSError, ValueError, KeyError):
            continue
    return max(caches)[1] if caches else 32 << 20


@functools.cache
def _half_table():
    """float32 value of each of the 65536 float16 bit patterns (NumPy's exact conversion)."""
    import numpy as np

    return np.arange(1 << 16, dtype=np.uint16).view(np.float16).astype(np.float32)


class NumbaCpuBackend(GroupNormBackend):
    name = "numba-cpu"
    devices = ("cpu",)
    dtypes = DTYPES
    description = ("our Numba CPU kernel: per-group statistics (chunked, one centred pass or two) and normalize in cache; "
                   "deterministic backward")

    def availability(self, device):
        return super().availability(device) or missing_module("numba", "numba")

    def group_norm(self, x, num_groups, weight=None, bias=None, eps=1e-5):
        return self._forward(x, num_groups, weight, bias, eps)[0]

    def _forward(self, x, num_groups, weight, bias, eps):
        """(y, statistics): y, and each (sample, group)'s (mean, rstd) in float64
        (N * G, 2), as the kernels computed them (None for an empty x)."""
        import numba
        import numpy as np

        kernels = _kernels()
        n, channels = x.shape[:2]
        if x.size == 0:
            return np.empty(x.shape, x.dtype), None
        half = x.dtype.itemsize == 2  # float16 or bfloat16: widened to float32 from their bits
        threads = numba.get_num_threads()
        w = np.ones(channels) if weight is None else np.asarray(weight, np.float64)
        b = np.zeros(channels) if bias is None else np.asarray(bias, np.float64)
        bfloat = half and x.dtype != np.float16
        table = _half_table() if half and not bfloat else np.empty(0, np.float32)
        last = np.moveaxis(x, 1, -1)
        stream = 2 * x.nbytes >= stream_bytes()  # x and y together: see stream_bytes
        if x.ndim >= 3 and not x.flags.c_contiguous and last.flags.c_contiguous:
            # channels-last memory, read in place; y keeps the layout
            rows = last.reshape(n, -1, channels)
            if half:
                out, stats = kernels.group_norm_half_channels_last(rows.view(np.uint16), num_groups, w, b, float(eps),
                                                                   table, bfloat, stream, threads)
                out = out.view(x.dtype)
            else:
                out, stats = kernels.group_norm_channels_last(rows, num_groups, w, b, float(eps), stream, threads)
            return np.moveaxis(out.reshape(last.shape), -1, 1), stats
        if half and n * num_groups >= threads:  # fused: chunks widened and narrowed in cache
            bits = np.ascontiguousarray(x).view(np.uint16).reshape(n * num_groups, -1)
            out, stats = kernels.group_norm_half_by_group(bits, num_groups, w, b, float(eps), table, bfloat, stream)
            return out.view(x.dtype).reshape(x.shape), stats
        if half:
            bits = np.ascontiguousarray(x).view(np.uint16).reshape(-1)
            data = kernels.widen_half(bits, _half_table()) if x.dtype == np.float16 else kernels.widen_bfloat(bits)
        else:
            data = np.ascontiguousarray(x, dtype=np.float64 if x.dtype == np.float64 else np.float32)
        rows = data.reshape(n * num_groups, -1)
        if rows.shape[0] >= threads:
            out, stats = kernels.group_norm_by_group(rows, num_groups, w, b, float(eps), stream)
        else:
            pieces = max(1, min(-(-4 * threads // rows.shape[0]), -(-rows.shape[1] // kernels.CHUNK)))
            out, stats = kernels.group_norm_by_chunk(rows, num_groups, w, b, float(eps), pieces, stream)
        if half:
            out = kernels.narrow_half(out.reshape(-1)) if x.dtype == np.float16 else kernels.narrow_bfloat(out.reshape(-1))
            return out.view(x.dtype).reshape(x.shape), stats
        return out.reshape(x.shape), stats

    def forward_train(self, x, num_groups, weight=None, bias=None, eps=1e-5):
        # residuals: the inputs and the forward's statistics (the backward does not recompute them)
        y, stats = self._forward(x, num_groups, weight, bias, eps)
        return y, (x, num_groups, weight, bias, stats)

    def backward(self, grad_y, residuals):
        """One task per (sample, group): per-channel sums of dy and dy * (x - mean) in one
        pass over x and dy (centered on the forward's mean), then dx with x and dy read
        again from cache; dweight/dbias summed over samples in order (deterministic).
        16-bit x and dy are widened chunk by chunk in cache, and dx narrowed as it is made
        (no full-size temporary)."""
        import numpy as np

        kernels = _kernels()
        x, num_groups, weight, bias, stats = residuals
        n, channels = x.shape[:2]
        if x.size == 0:
            zeros = np.zeros(channels)
            return (np.empty(x.shape, x.dtype), None if weight is None else zeros.astype(weight.dtype),
                    None if bias is None else zeros.astype(bias.dtype))
        w = np.ones(channels) if weight is None else np.asarray(weight, np.float64)
        stream = 3 * x.nbytes >= stream_bytes()  # x, dy and dx together: see stream_bytes
        if x.dtype.itemsize == 2:  # float16 / bfloat16: widened and narrowed chunk by chunk, in cache
            bits = [np.ascontiguousarray(a).view(np.uint16).reshape(n * num_groups, -1) for a in (x, grad_y)]
            bfloat = x.dtype != np.float16
            table = np.empty(0, np.float32) if bfloat else _half_table()
            dx, dweight, dbias = kernels.group_norm_backward_half_by_group(*bits, num_groups, w, stats, table, bfloat,
                                                                           stream)
            dx = dx.view(x.dtype)
        else:
            rows, grads = (np.ascontiguousarray(a, dtype=np.float64 if a.dtype == np.float64 else np.float32)
                           .reshape(n * num_groups, -1) for a in (x, grad_y))
            dx, dweight, dbias = kernels.group_norm_backward_by_group(rows, grads, num_groups, w, stats, stream)
        grad_weight = None if weight is None else kernels.sum_over_samples(dweight).astype(weight.dtype)
        grad_bias = None if bias is None else kernels.sum_over_samples(dbias).astype(bias.dtype)
        return dx.reshape(x.shape), grad_weight, grad_bias

    def from_numpy(self, array, device):
        return host_copy(array)  # the case's layout reaches the kernels (channels-last: read in place)

    def to_numpy(self, array):
        return array

    def threads(self, device):
        import numba

        return numba.get_num_threads()

    def source_hash(self):
        return hash_files(SOURCES)

    def version(self):
        import numba

        return f"numba {numba.__version__} (kernel {self.source_hash()})"
