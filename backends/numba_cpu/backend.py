"""``numba-cpu``: our GroupNorm kernels for the CPU, ``numba.njit(parallel=True)``.

The backend (this module) is the contract's side: which inputs go to which kernel of
``kernels.py`` (contiguous by group or by chunk, channels-last in place, 16-bit inputs as
raw bits; other layouts copied first), the backward's saved statistics, and where outputs
are placed: one page larger and half a page from the input modulo 4 KiB (an output 16-144
bytes past its input makes each load wait on the store just issued), streamed past the
last-level cache's size (:func:`stream_bytes`), advised onto huge pages from 4 MiB.
Importing it imports no Numba; the kernels compile on first use and are cached on disk.
The design and its measurements: ``docs/numba-cpu.md``.
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
    description = (
        "our Numba CPU kernel: per-group statistics (chunked, one centred pass or two) and normalize in cache; "
        "deterministic backward"
    )

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
                out, stats = kernels.group_norm_half_channels_last(
                    rows.view(np.uint16), num_groups, w, b, float(eps), table, bfloat, stream, threads
                )
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
            out = (
                kernels.narrow_half(out.reshape(-1))
                if x.dtype == np.float16
                else kernels.narrow_bfloat(out.reshape(-1))
            )
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
            return (
                np.empty(x.shape, x.dtype),
                None if weight is None else zeros.astype(weight.dtype),
                None if bias is None else zeros.astype(bias.dtype),
            )
        w = np.ones(channels) if weight is None else np.asarray(weight, np.float64)
        stream = 3 * x.nbytes >= stream_bytes()  # x, dy and dx together: see stream_bytes
        if x.dtype.itemsize == 2:  # float16 / bfloat16: widened and narrowed chunk by chunk, in cache
            bits = [np.ascontiguousarray(a).view(np.uint16).reshape(n * num_groups, -1) for a in (x, grad_y)]
            bfloat = x.dtype != np.float16
            table = np.empty(0, np.float32) if bfloat else _half_table()
            dx, dweight, dbias = kernels.group_norm_backward_half_by_group(
                *bits, num_groups, w, stats, table, bfloat, stream
            )
            dx = dx.view(x.dtype)
        else:
            rows, grads = (
                np.ascontiguousarray(a, dtype=np.float64 if a.dtype == np.float64 else np.float32).reshape(
                    n * num_groups, -1
                )
                for a in (x, grad_y)
            )
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
