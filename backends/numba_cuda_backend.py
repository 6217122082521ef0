"""``numba-cuda``: our own GroupNorm kernels for CUDA, written with ``numba.cuda.jit``.

The kernels live in ``_numba_cuda_kernels.py`` (statistics by Welford + Chan merges in
float32, float64 for float64 input; normalize and affine fused). This module is the host
side: it reads any CUDA array (numba's, or another framework's through
``__cuda_array_interface__``), collapses its spatial dims to one stride, picks a path
with :func:`plan` and launches.

Paths (:func:`plan`):

* ``fused``: one block per (sample, group), when there are enough groups to fill the GPU
  and the groups of all blocks in flight fit in half the L2 (so the block's second read
  of its group hits L2).
* ``split``: each group cut into ``chunks`` blocks; partial statistics, then a
  normalize kernel whose blocks merge their group's partials. Launched per *wave* of
  groups whose bytes fit in half the L2, so x's second read comes from L2: one DRAM read
  and one write per element. A group larger than that budget is read twice from DRAM.

Arrays: ``from_numpy`` gives a numba device array with the host array's strides (the
buffer's extent is copied once, then viewed with the same strides). Outputs are numba
device arrays, dense, channels-last when the input is channels-last, else contiguous.
bfloat16 arrays are numba device arrays of dtype ``ml_dtypes.bfloat16`` whose bits the
kernels read as ``uint16``; torch does not export bfloat16 through
``__cuda_array_interface__``, so foreign bfloat16 arrays are refused with that reason.

Under Numba's CUDA simulator (``NUMBA_ENABLE_CUDASIM=1``) the same host code runs the
kernels as Python: correct results, meaningless timings (the version string says so).
"""

from __future__ import annotations

import math
import os

from ._launch import THREADS, collapse, plan
from .base import EventTimer, GroupNormBackend, hash_files, missing_module
from .dtypes import DTYPES, dtype_name
from .errors import InvalidArgumentError, InvalidTypeError

HERE = os.path.dirname(os.path.abspath(__file__))
SOURCES = (os.path.join(HERE, "_numba_cuda_kernels.py"), os.path.join(HERE, "_launch.py"), os.path.abspath(__file__))


class NumbaCudaBackend(GroupNormBackend):
    name = "numba-cuda"
    devices = ("cuda",)
    dtypes = DTYPES
    description = "our numba-cuda kernels: Welford/Chan statistics, fused normalize, split groups in L2-sized waves"

    def __init__(self, threads: int = THREADS, sm_count: int | None = None, l2_bytes: int | None = None):
        """``threads``, ``sm_count`` and ``l2_bytes`` override the device's (tests lower
        them so that every path runs on tiny shapes under the simulator)."""
        self.threads = threads
        self._sm_count = sm_count
        self._l2_bytes = l2_bytes
        self._kernels = {}
        self._params = {}
        self._flush = None

    # -- availability ------------------------------------------------------------------

    def availability(self, device):
        reason = super().availability(device) or missing_module("numba_cuda", "numba")
        if reason:
            return reason
        from numba import cuda

        if _simulator():
            return None
        if not cuda.is_available():
            return "no CUDA device visible to numba-cuda (numba.cuda.is_available() is False)"
        return None

    # -- the operation -----------------------------------------------------------------

    def group_norm(self, x, num_groups, weight=None, bias=None, eps=1e-5):
        import numpy as np
        from numba import cuda

        x = _as_device_array(x, "x")
        kind = dtype_name(x.dtype)
        n, channels = x.shape[:2]
        itemsize = np.dtype(x.dtype).itemsize
        view = collapse(tuple(x.shape), tuple(x.strides), itemsize)
        if view is None:
            raise InvalidArgumentError(
                f"numba-cuda needs x's spatial dims to collapse to one non-negative stride "
                f"(contiguous, channels-last or a uniform step); got shape {tuple(x.shape)} with "
                f"strides {tuple(x.strides)} bytes: make x contiguous first"
            )
        (_, _, positions), (sx_n, sx_c, sx_s) = view
        inner = positions > 1 and sx_c < sx_s
        y, (sy_n, sy_c, sy_s) = self._output(x.shape, x.dtype, inner)
        if x.size == 0:
            return y
        w, b, param_kind = self._parameters(weight, bias, kind, channels)
        fused, partial_stats, normalize_split = self._compiled(kind, param_kind)
        xf, yf = _flat(x), _flat(y)
        acc = np.float64 if kind == "float64" else np.float32
        eps = acc(eps)
        size = channels // num_groups * positions
        groups_total = n * num_groups
        chosen = plan(groups_total, size, itemsize, sm_count=self.sm_count(), l2_bytes=self.l2_bytes(),
                      threads=self.threads)
        t = self.threads
        if chosen["path"] == "fused":
            fused[groups_total, t](xf, w, b, yf, num_groups, positions, sx_n, sx_c, sx_s,
                                   sy_n, sy_c, sy_s, inner, eps)
            return y
        chunks, chunk, wave = chosen["chunks"], chosen["chunk"], chosen["wave"]
        partial = cuda.device_array((wave * chunks, 3), acc)
        for first in range(0, groups_total, wave):
            blocks = min(wave, groups_total - first) * chunks
            partial_stats[blocks, t](xf, partial, first, num_groups, channels, chunks, chunk, positions,
                                     sx_n, sx_c, sx_s, inner)
            normalize_split[blocks, t](xf, w, b, yf, partial, first, num_groups, chunks, chunk, positions,
                                       sx_n, sx_c, sx_s, sy_n, sy_c, sy_s, inner, eps)
        return y

    def _compiled(self, kind, param_kind):
        key = (kind, param_kind)
        if key not in self._kernels:
            from . import _numba_cuda_kernels as kernels

            self._kernels[key] = kernels.build(kind, param_kind, self.threads)
        return self._kernels[key]

    def _output(self, shape, dtype, channels_last):
        """A dense output (channels-last when ``channels_last``) and its (n, c, s) strides."""
        from numba import cuda

        channels = shape[1]
        positions = math.prod(shape[2:])
        buffer = cuda.device_array(math.prod(shape), _kernel_dtype(dtype))
        if channels_last:
            element = (positions * channels, 1, channels)
        else:
            element = (channels * positions, positions, 1)
        spatial = _dense_spatial_strides(shape[2:], element[2])
        strides = tuple(s * buffer.dtype.itemsize for s in (element[0], element[1], *spatial))
        return _strided_view(buffer, shape, strides, dtype), element

    def _parameters(self, weight, bias, kind, channels):
        """Device weight and bias (ones/zeros for None, cached) and their kind."""
        import numpy as np

        if weight is None and bias is None:
            param_kind = "float64" if kind == "float64" else "float32"
        else:
            param_kind = dtype_name((weight if weight is not None else bias).dtype)

        def device(param, fill, argument):
            if param is not None:
                return _kernel_view(_as_device_array(param, argument))
            key = (fill, param_kind, channels)
            if key not in self._params:
                from numba import cuda

                host_dtype = np.uint16 if param_kind == "bfloat16" else np.dtype(param_kind)
                value = {1.0: 0x3F80, 0.0: 0}[fill] if param_kind == "bfloat16" else fill
                self._params[key] = cuda.to_device(np.full(channels, value, host_dtype))
            return self._params[key]

        return device(weight, 1.0, "weight"), device(bias, 0.0, "bias"), param_kind

    # -- device facts ------------------------------------------------------------------

    def sm_count(self) -> int:
        if self._sm_count is None:
            self._sm_count = int(_attribute("MULTIPROCESSOR_COUNT", 132))
        return self._sm_count

    def l2_bytes(self) -> int:
        if self._l2_bytes is None:
            self._l2_bytes = int(_attribute("L2_CACHE_SIZE", 50 << 20))
        return self._l2_bytes

    # -- transfers ---------------------------------------------------------------------

    def from_numpy(self, array, device):
        import numpy as np
        from numba import cuda

        if array.size == 0 or any(s < 0 for s in array.strides):
            array = np.ascontiguousarray(array)
        kernel_dtype = _kernel_dtype(array.dtype)
        if array.size == 0:
            return _strided_view(cuda.device_array(0, kernel_dtype), array.shape, array.strides, array.dtype)
        itemsize = array.dtype.itemsize
        span = sum((n - 1) * s for n, s in zip(array.shape, array.strides)) // itemsize + 1
        extent = np.lib.stride_tricks.as_strided(array, shape=(span,), strides=(itemsize,))
        buffer = cuda.to_device(np.ascontiguousarray(extent).view(kernel_dtype))
        return _strided_view(buffer, array.shape, array.strides, array.dtype)

    def to_numpy(self, array):
        import numpy as np

        host = _kernel_view(array).copy_to_host()
        return host.view(np.dtype(array.dtype)) if host.dtype != array.dtype else host

    # -- timing hooks ------------------------------------------------------------------

    def synchronize(self, device):
        from numba import cuda

        cuda.synchronize()

    def event_timer(self, device):
        if _simulator():
            return None
        from numba import cuda

        return EventTimer(cuda.event(timing=True), cuda.event(timing=True), cuda.event_elapsed_time)

    def flush_cache(self, device):
        if _simulator():
            return False
        from numba import cuda

        if self._flush is None:
            size = 2 * self.l2_bytes()
            self._flush = (cuda.device_array(size, "u1"), cuda.device_array(size, "u1"))
        self._flush[1].copy_to_device(self._flush[0])
        return True

    def copy_kernel(self, device, nbytes):
        from numba import cuda

        from .base import copy_pattern

        source = cuda.to_device(copy_pattern(nbytes))
        target = cuda.device_array(nbytes, "u1")

        def copy():
            target.copy_to_device(source)
            return target

        return copy

    def free_memory(self, device):
        if _simulator():
            return None
        from numba import cuda

        return int(cuda.current_context().get_memory_info().free)

    def source_hash(self):
        return hash_files(SOURCES)

    def version(self):
        import numba
        import numba_cuda

        simulator = " under the CUDA simulator: correctness only, timings meaningless" if _simulator() else ""
        return (f"numba-cuda {numba_cuda.__version__}, numba {numba.__version__} "
                f"(kernel {self.source_hash()}){simulator}")

    def shares_memory(self, a, b):
        return super().shares_memory(_interface_holder(a), _interface_holder(b))


    def simulated(self, device: str) -> bool:
        return device == "cuda" and _simulator()


# -- helpers (numba imported by the caller) ---------------------------------------------


def _simulator() -> bool:
    from numba import config

    return bool(config.ENABLE_CUDASIM)


def _attribute(name, default):
    if _simulator():
        return default
    from numba import cuda

    return getattr(cuda.get_current_device(), name, default)


def _kernel_dtype(dtype):
    """The dtype kernels see: bfloat16 as its raw 16 bits."""
    import numpy as np

    return np.dtype(np.uint16) if dtype_name(dtype) == "bfloat16" else np.dtype(dtype)


def _dense_spatial_strides(spatial, step):
    strides = []
    for n in reversed(spatial):
        strides.append(step)
        step *= n
    return tuple(reversed(strides))


def _as_device_array(array, argument):
    """A numba device array for ``array`` (numba's own, or any ``__cuda_array_interface__``)."""
    from numba import cuda

    if hasattr(array, "copy_to_host") and (_simulator() or cuda.is_cuda_array(array)):
        return array
    if dtype_name(getattr(array, "dtype", None)) == "bfloat16":
        raise InvalidTypeError(
            f"{argument}: bfloat16 arrays of other frameworks carry no __cuda_array_interface__ "
            "(torch refuses to export one); pass a numba device array (backend.from_numpy)"
        )
    if cuda.is_cuda_array(array):
        return cuda.as_cuda_array(array)
    raise InvalidTypeError(
        f"{argument} must be a CUDA array (a numba device array, or an array exposing "
        f"__cuda_array_interface__ such as a CuPy array or a torch CUDA tensor); got {type(array).__name__}"
    )


def _kernel_view(array):
    """``array`` as kernels read it (bfloat16 as uint16), same shape and strides."""
    kernel_dtype = _kernel_dtype(array.dtype)
    if kernel_dtype == array.dtype:
        return array
    return _strided_view(_flat(array), array.shape, array.strides, kernel_dtype)


def _flat(array):
    """A 1-D device array over ``array``'s whole extent, elements of its kernel dtype."""
    import numpy as np

    dtype = _kernel_dtype(array.dtype)
    itemsize = dtype.itemsize
    span = (sum((n - 1) * s for n, s in zip(array.shape, array.strides)) // itemsize + 1) if array.size else 0
    if _simulator():
        from numba.cuda.simulator.cudadrv.devicearray import FakeCUDAArray

        host = array._ary
        return FakeCUDAArray(np.lib.stride_tricks.as_strided(host, shape=(span,), strides=(itemsize,)).view(dtype))
    from numba import cuda

    pointer = array.__cuda_array_interface__["data"][0]
    interface = {"shape": (span,), "strides": None, "typestr": dtype.str, "data": (pointer, False), "version": 3}
    return cuda.from_cuda_array_interface(interface, owner=array, sync=False)


def _strided_view(buffer, shape, strides, dtype):
    """A device array of ``shape``/``strides`` (bytes) and ``dtype`` over ``buffer``'s memory
    (a 1-D device array of an element type of the same size)."""
    import numpy as np

    dtype = np.dtype(dtype)
    if _simulator():
        from numba.cuda.simulator.cudadrv.devicearray import FakeCUDAArray

        host = buffer._ary.view(dtype)
        return FakeCUDAArray(np.lib.stride_tricks.as_strided(host, shape=tuple(shape), strides=tuple(strides)))
    from numba.cuda.cudadrv.devicearray import DeviceNDArray

    return DeviceNDArray(tuple(shape), tuple(strides), dtype, gpu_data=buffer.gpu_data)


def _interface_holder(array):
    """An object whose array interface describes ``array``'s memory (simulator or GPU)."""
    return getattr(array, "_ary", array)
