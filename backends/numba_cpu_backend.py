"""``numba-cpu``: our own GroupNorm kernel for the CPU, ``numba.njit(parallel=True)``.

Design (issue #6; kernels in ``_numba_cpu_kernels.py``):

* Parallel over (sample, group) when there are at least as many groups as threads: each
  task computes its group's statistics, then normalizes the same group while it is still
  in cache (one DRAM read of x, one write of y).
* Fewer groups than threads (SD VAE: N=1, 32 groups of millions): each group's
  statistics in several parallel pieces merged in order, then normalization parallel
  over (group, channel) planes.
* Statistics: chunks of 4096 elements by the corrected two-pass method in the input's
  precision (vectorized), merged in float64 with Chan's formula; no running sum spans
  more than one chunk, so groups of 10^7 elements keep full accuracy.
* Normalize: ``y = x * a + c`` per channel, ``a = rstd * w``, ``c = b - mean * a``, in the
  input's precision, each output element written once into a fresh array.
* float32 and float64 natively; float16 and bfloat16 as their raw bits (Numba has no
  16-bit float type on the CPU): widened to float32 exactly and the result narrowed with
  round-to-nearest-even, both parallel (NumPy's single-threaded conversions took 11 of
  12 ms on the SD UNet float16 case). Non-contiguous inputs are made contiguous first
  (one copy, counted in the timing). NaN and Inf propagate; a constant group gives bias.
* Compiled on first use and cached on disk (``cache=True``), so a second process loads
  the machine code instead of compiling; the bench reports compile time apart.

Measured on this project's 2-core CPU (float32, fresh output, pinned allocator):
0.69-0.80x torch eager, 76-92% of the copy roofline on the issue's target shapes
(torch itself runs at the roofline there; see the issue #6 note). float16: 1.8-6.8 ms
on the SD UNet / SegResNet / VAE shapes of results/cpu-2026-11-26-numba-f16 (12-38 ms
before the bit conversions), 0.15-0.56x torch: the widen and narrow passes still move
the data through float32 twice more than a fused kernel would.
"""

from __future__ import annotations

import functools
import os

from .base import GroupNormBackend, hash_files, missing_module
from .dtypes import DTYPES

KERNEL_FILE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "_numba_cpu_kernels.py")


def _kernels():
    """The compiled kernels (importing numba): see ``_numba_cpu_kernels.py``."""
    from . import _numba_cpu_kernels as kernels

    return kernels


@functools.cache
def _half_table():
    """float32 value of each of the 65536 float16 bit patterns (NumPy's exact conversion)."""
    import numpy as np

    return np.arange(1 << 16, dtype=np.uint16).view(np.float16).astype(np.float32)


class NumbaCpuBackend(GroupNormBackend):
    name = "numba-cpu"
    devices = ("cpu",)
    dtypes = DTYPES
    description = "our Numba CPU kernel: per-group statistics (chunked two-pass) and normalize in cache"

    def availability(self, device):
        return super().availability(device) or missing_module("numba", "numba")

    def group_norm(self, x, num_groups, weight=None, bias=None, eps=1e-5):
        import numba
        import numpy as np

        kernels = _kernels()
        n, channels = x.shape[:2]
        if x.size == 0:
            return np.empty(x.shape, x.dtype)
        half = x.dtype.itemsize == 2  # float16 or bfloat16: widened to float32 from their bits
        if half:
            bits = np.ascontiguousarray(x).view(np.uint16).reshape(-1)
            data = kernels.widen_half(bits, _half_table()) if x.dtype == np.float16 else kernels.widen_bfloat(bits)
        else:
            data = np.ascontiguousarray(x, dtype=np.float64 if x.dtype == np.float64 else np.float32)
        rows = data.reshape(n * num_groups, -1)
        w = np.ones(channels) if weight is None else np.asarray(weight, np.float64)
        b = np.zeros(channels) if bias is None else np.asarray(bias, np.float64)
        threads = numba.get_num_threads()
        if rows.shape[0] >= threads:
            out = kernels.group_norm_by_group(rows, num_groups, w, b, float(eps))
        else:
            pieces = max(1, min(-(-4 * threads // rows.shape[0]), -(-rows.shape[1] // kernels.CHUNK)))
            out = kernels.group_norm_by_chunk(rows, num_groups, w, b, float(eps), pieces)
        if half:
            out = kernels.narrow_half(out.reshape(-1)) if x.dtype == np.float16 else kernels.narrow_bfloat(out.reshape(-1))
            return out.view(x.dtype).reshape(x.shape)
        return out.reshape(x.shape)

    def from_numpy(self, array, device):
        return array.copy()

    def to_numpy(self, array):
        return array

    def threads(self, device):
        import numba

        return numba.get_num_threads()

    def source_hash(self):
        return hash_files([KERNEL_FILE, os.path.abspath(__file__)])  # the kernels and how they are called

    def version(self):
        import numba

        return f"numba {numba.__version__} (kernel {self.source_hash()})"
