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
* float32 and float64 natively; float16 and bfloat16 go through a float32 copy (NumPy
  converts them; Numba has no bfloat16). Non-contiguous inputs are made contiguous first
  (one copy, counted in the timing). NaN and Inf propagate; a constant group gives bias.
* Compiled on first use and cached on disk (``cache=True``), so a second process loads
  the machine code instead of compiling; the bench reports compile time apart.

Measured on this project's 2-core CPU (float32, fresh output, pinned allocator):
0.69-0.80x torch eager, 76-92% of the copy roofline on the issue's target shapes
(torch itself runs at the roofline there; see the issue #6 note).
"""

from __future__ import annotations

import os

from .base import GroupNormBackend, hash_files, missing_module
from .dtypes import DTYPES

KERNEL_FILE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "_numba_cpu_kernels.py")


def _kernels():
    """The compiled kernels (importing numba): see ``_numba_cpu_kernels.py``."""
    from . import _numba_cpu_kernels as kernels

    return kernels


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
        compute = np.float64 if x.dtype == np.float64 else np.float32
        n, channels = x.shape[:2]
        data = np.ascontiguousarray(x, dtype=compute)
        if data.size == 0:
            return np.empty(x.shape, x.dtype)
        rows = data.reshape(n * num_groups, -1)
        w = np.ones(channels) if weight is None else np.asarray(weight, np.float64)
        b = np.zeros(channels) if bias is None else np.asarray(bias, np.float64)
        threads = numba.get_num_threads()
        if rows.shape[0] >= threads:
            out = kernels.group_norm_by_group(rows, num_groups, w, b, float(eps))
        else:
            pieces = max(1, min(-(-4 * threads // rows.shape[0]), -(-rows.shape[1] // kernels.CHUNK)))
            out = kernels.group_norm_by_chunk(rows, num_groups, w, b, float(eps), pieces)
        out = out.reshape(x.shape)
        return out if out.dtype == x.dtype else out.astype(x.dtype)

    def from_numpy(self, array, device):
        return array.copy()

    def to_numpy(self, array):
        return array

    def threads(self, device):
        import numba

        return numba.get_num_threads()

    def source_hash(self):
        return hash_files([KERNEL_FILE])

    def version(self):
        import numba

        return f"numba {numba.__version__} (kernel {self.source_hash()})"
