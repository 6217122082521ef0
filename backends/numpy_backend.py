"""``numpy``: GroupNorm in NumPy, a float32-capable CPU contestant (not the oracle).

Half and float32 inputs compute in float32 (NumPy's pairwise summation along the
contiguous group axis keeps the error near u * log2(m)), float64 in float64; centered
two-pass statistics. Separate from :mod:`harness.oracle.reference`, which is float64 only and
judges this backend like any other.
"""

from __future__ import annotations

from .base import GroupNormBackend, host_copy
from .dtypes import DTYPES


class NumpyBackend(GroupNormBackend):
    name = "numpy"
    devices = ("cpu",)
    dtypes = DTYPES
    description = "NumPy, float32 statistics for half/float32 (two-pass, pairwise sums)"

    def group_norm(self, x, num_groups, weight=None, bias=None, eps=1e-5):
        import math
        import warnings

        import numpy as np

        compute = np.float64 if x.dtype == np.float64 else np.float32
        n, channels = x.shape[:2]
        size = channels // num_groups * math.prod(x.shape[2:])
        grouped = np.asarray(x, dtype=compute).reshape(n, num_groups, size)
        with warnings.catch_warnings(), np.errstate(all="ignore"):
            warnings.simplefilter("ignore", RuntimeWarning)  # empty groups; NaN/Inf inputs
            mean = grouped.mean(axis=2, keepdims=True)
            centered = grouped - mean
            variance = np.square(centered).mean(axis=2, keepdims=True)
            y = (centered / np.sqrt(variance + compute(eps))).reshape(x.shape)
            broadcast = (1, channels) + (1,) * (x.ndim - 2)
            if weight is not None:
                y = y * np.asarray(weight, dtype=compute).reshape(broadcast)
            if bias is not None:
                y = y + np.asarray(bias, dtype=compute).reshape(broadcast)
        return y.astype(x.dtype)

    def forward_train(self, x, num_groups, weight=None, bias=None, eps=1e-5):
        # The residuals are the inputs themselves: backward recomputes the statistics in
        # the same precision (cheap next to the three passes it makes anyway).
        return self.group_norm(x, num_groups, weight, bias, eps), (x, num_groups, weight, bias, eps)

    def backward(self, grad_y, residuals):
        """dx = r * (g - mean(g) - xhat * mean(g * xhat)), g = grad_y * w; dweight and
        dbias summed over the batch and space; float32 math for half/float32 inputs."""
        import math
        import warnings

        import numpy as np

        x, num_groups, weight, bias, eps = residuals
        compute = np.float64 if x.dtype == np.float64 else np.float32
        n, channels = x.shape[:2]
        size = channels // num_groups * math.prod(x.shape[2:])
        broadcast = (1, channels) + (1,) * (x.ndim - 2)
        reduce = (0,) + tuple(range(2, x.ndim))
        with warnings.catch_warnings(), np.errstate(all="ignore"):
            warnings.simplefilter("ignore", RuntimeWarning)  # empty groups; NaN/Inf inputs
            grouped = np.asarray(x, dtype=compute).reshape(n, num_groups, size)
            mean = grouped.mean(axis=2, keepdims=True)
            centered = grouped - mean
            rstd = 1 / np.sqrt(np.square(centered).mean(axis=2, keepdims=True) + compute(eps))
            xhat = (centered * rstd).reshape(x.shape)
            gy = np.asarray(grad_y, dtype=compute)
            g = gy if weight is None else gy * np.asarray(weight, dtype=compute).reshape(broadcast)
            g_groups = g.reshape(n, num_groups, size)
            g_xhat = (g * xhat).reshape(n, num_groups, size)
            grad_x = rstd * (g_groups - g_groups.mean(axis=2, keepdims=True)
                             - xhat.reshape(n, num_groups, size) * g_xhat.mean(axis=2, keepdims=True))
            grad_weight = None if weight is None else (gy * xhat).sum(axis=reduce).astype(weight.dtype)
            grad_bias = None if bias is None else gy.sum(axis=reduce).astype(bias.dtype)
        return grad_x.reshape(x.shape).astype(x.dtype), grad_weight, grad_bias

    def from_numpy(self, array, device):
        return host_copy(array)  # a fresh buffer with exactly the host array's strides

    def to_numpy(self, array):
        return array

    def copy_kernel(self, device, nbytes):
        import numpy as np

        from .base import copy_pattern

        source = copy_pattern(nbytes)
        target = np.empty_like(source)

        def copy():
            np.copyto(target, source)
            return target

        return copy

    def threads(self, device):
        return 1  # NumPy's elementwise work and reductions are single-threaded

    def version(self):
        import numpy as np

        return f"numpy {np.__version__}"
