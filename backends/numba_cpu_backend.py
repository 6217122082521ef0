"""``numba-cpu``: our own GroupNorm kernel for the CPU, ``numba.njit(parallel=True)``.

Status: correct on the default and adversarial suites; not yet fast (0.40-0.47x torch
eager on the issue's float32 target shapes on this project's 2-core CPU, where torch's
pinned-allocator figure reaches the copy roofline). Design (numba-cpu part of issue #6):

* Statistics pass, parallel over (group, chunk) tasks so that a few huge groups still
  use every core: each chunk of at most 16384 elements sums ``x - K`` and
  ``(x - K)^2`` (K = the group's first element: a shift that keeps the one-pass form free
  of cancellation whenever K is within a few standard deviations of the mean) in float32
  lanes the compiler may vectorize (``fastmath`` reassociation inside a chunk only), and
  hands float64 partials to a per-group merge. No serial float32 sum runs over more than
  one chunk, so groups of 10^7 elements keep full accuracy.
* Normalize pass, parallel over (sample, channel) planes: ``y = x * a + c`` with
  ``a = rstd * w`` and ``c = b - mean * a`` per channel, each output element written once
  into a fresh array.
* float32 and float64 natively; float16 and bfloat16 go through a float32 copy (NumPy
  converts them; Numba has no bfloat16). Non-contiguous inputs are made contiguous first
  (one copy, counted in the timing). NaN and Inf propagate; a constant group gives bias.
* Compiled on first use and cached on disk (``cache=True``), so a second process loads
  the machine code instead of compiling; the bench reports compile time apart.
"""

from __future__ import annotations

import hashlib
import os

from .base import GroupNormBackend, missing_module
from .dtypes import DTYPES

KERNEL_FILE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "_numba_cpu_kernels.py")


def _kernels():
    """The compiled kernels (importing numba): see ``_numba_cpu_kernels.py``."""
    from . import _numba_cpu_kernels as kernels

    return kernels.statistics, kernels.normalize


class NumbaCpuBackend(GroupNormBackend):
    name = "numba-cpu"
    devices = ("cpu",)
    dtypes = DTYPES
    description = "our Numba CPU kernel: parallel chunked statistics, fused normalize (in progress, issue #6)"
    # Opt-in until issue #6 lands: verified on default and adversarial, but measured at
    # 0.40-0.47x torch eager on this project's CPU (torch runs at the copy roofline there).
    default_selected = False

    def availability(self, device):
        return super().availability(device) or missing_module("numba", "numba")

    def group_norm(self, x, num_groups, weight=None, bias=None, eps=1e-5):
        import numpy as np

        statistics, normalize = _kernels()
        compute = np.float64 if x.dtype == np.float64 else np.float32
        n, channels = x.shape[:2]
        data = np.ascontiguousarray(x, dtype=compute)
        if data.size == 0:
            return np.empty(x.shape, x.dtype)
        per_group = channels // num_groups
        mean, rstd = statistics(data.reshape(n * num_groups, -1), float(eps))
        # per (sample, channel): y = x * a + c
        mean_c = np.repeat(mean.reshape(n, num_groups), per_group, axis=1)
        rstd_c = np.repeat(rstd.reshape(n, num_groups), per_group, axis=1)
        w = np.ones(channels) if weight is None else np.asarray(weight, np.float64)
        b = np.zeros(channels) if bias is None else np.asarray(bias, np.float64)
        with np.errstate(all="ignore"):
            scale = rstd_c * w
            offset = b - mean_c * scale
        out = normalize(data.reshape(n * channels, -1), scale.reshape(-1).astype(compute),
                        offset.reshape(-1).astype(compute))
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
        with open(KERNEL_FILE, "rb") as handle:
            return hashlib.sha256(handle.read()).hexdigest()[:12]

    def version(self):
        import numba

        return f"numba {numba.__version__} (kernel {self.source_hash()})"
