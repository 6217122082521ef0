"""``numba-cuda``: our own GroupNorm kernels for CUDA, written with ``numba.cuda.jit``.

The kernel lives in ``numba_kernels.py``: the second design of
``backends/cuda/groupnorm.cu`` (one persistent launch, ticketed merge), items of one
element. This module is the host side: it reads any CUDA array (numba's, or another
framework's through ``__cuda_array_interface__``), collapses its spatial dims to one
stride, derives the item walk (:func:`backends.cuda.launch.geometry` with ``vec`` 1), plans
the work items (:func:`backends.cuda.launch.plan`) and launches once, on the caller's stream
(torch's current stream for a torch tensor, else the default stream). The workspace
(queue, tickets, partials, statistics) is kept per (device, stream) and is zero again
after every call; y is taken from torch's caching allocator when x is a torch tensor
(no cuMemAlloc, no synchronizing free), else from Numba.

``launches`` counts the kernels this backend launched (tests and ``python -m harness.launches``).

Arrays: ``from_numpy`` gives a numba device array with the host array's strides (the
buffer's extent is copied once, then viewed with the same strides). Outputs are dense,
channels-last when the input is channels-last, else contiguous. bfloat16 arrays are numba
device arrays of dtype ``ml_dtypes.bfloat16`` whose bits the kernels read as ``uint16``;
torch does not export bfloat16 through ``__cuda_array_interface__``, so foreign bfloat16
arrays are refused with that reason.

Under Numba's CUDA simulator (``NUMBA_ENABLE_CUDASIM=1``) the same host code runs the
kernel as Python, one block after another: correct results, meaningless timings (the
version string says so). A missing fence is invisible there; the tests also run blocks at
once (``tests/cudasim_worker.py``) to exercise the queue, tickets and waits.
"""

from __future__ import annotations

import math
import os

from ..base import EventTimer, GroupNormBackend, hash_files, missing_module
from ..dtypes import DTYPES, dtype_name
from ..errors import InvalidArgumentError, InvalidTypeError
from .launch import INT32_MAX, THREADS, collapse, dense_strides, geometry, plan

HERE = os.path.dirname(os.path.abspath(__file__))
SOURCES = (os.path.join(HERE, "numba_kernels.py"), os.path.join(HERE, "launch.py"), os.path.abspath(__file__))


class NumbaCudaBackend(GroupNormBackend):
    name = "numba-cuda"
    devices = ("cuda",)
    dtypes = DTYPES
    description = "our numba-cuda kernel: one persistent launch, ticketed merge of split groups, Welford/Chan batches"

    def __init__(self, threads: int = THREADS, sm_count: int | None = None, l2_bytes: int | None = None,
                 blocks_per_sm: int | None = None, chunks: int | None = None, plant: str | None = None):
        """``threads``, ``sm_count``, ``l2_bytes`` and ``blocks_per_sm`` override the
        device's; ``chunks`` forces split plans with that many chunks a group (tests use
        them so that every path runs on tiny shapes under the simulator); ``plant`` compiles
        in a planted bug (``numba_kernels.PLANTS``; tests only)."""
        if threads % 32 or not 32 <= threads <= 1024:
            raise InvalidArgumentError(f"threads must be a multiple of 32 in [32, 1024] (whole warps); got {threads}")
        self.threads = threads
        self._sm_count = sm_count
        self._l2_bytes = l2_bytes
        self._blocks_per_sm = blocks_per_sm
        self.chunks = chunks
        self.plant = plant
        self.launches = 0
        self._kernels = {}
        self._facts = {}
        self._workspaces = {}
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

        torch_tensor = type(x).__module__.startswith("torch") and getattr(x, "is_cuda", False)
        stream = _caller_stream(x) if torch_tensor else 0
        original = x
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
        y, y_strides = self._output(x.shape, x.dtype, inner, like=original if torch_tensor else None)
        if x.size == 0:
            return y
        geo = geometry(tuple(x.shape), tuple(x.strides), y_strides, itemsize, num_groups, max_vec=1)
        if max(geo.majors, geo.minors) > INT32_MAX:
            raise InvalidArgumentError(f"numba-cuda: a group of {geo.majors} x {geo.minors} elements exceeds "
                                       f"the kernel's item counters (at most {INT32_MAX} per axis)")
        w, b, param_kind = self._parameters(weight, bias, kind, channels)
        forward = self._compiled(kind, param_kind)
        xf, yf = _flat(x), _flat(y)
        acc = np.float64 if kind == "float64" else np.float32
        chosen = plan(geo.groups_total, geo.items, itemsize, sm_count=self.sm_count(), l2_bytes=self.l2_bytes(),
                      threads=self.threads, blocks_per_sm=self._blocks_per_sm, chunks=self.chunks)
        queue, tickets, partial, stats = self._workspace(stream, acc, geo.groups_total, chosen["chunks"])
        launch = forward[chosen["grid"], self.threads, stream] if stream else forward[chosen["grid"], self.threads]
        launch(xf, w, b, yf, queue, tickets, partial, stats, num_groups, geo.cpg, geo.majors, geo.minors, geo.inner,
               *geo.sx, *geo.sy, geo.groups_total, chosen["chunks"], chosen["chunk"], chosen["wave"], acc(eps))
        self.launches += 1
        return y

    def plan_for(self, shape, dtype, num_groups, channels_last=False) -> dict:
        """The plan a call on a dense array of ``shape`` would use (no device needed)."""
        import numpy as np

        itemsize = np.dtype(dtype).itemsize
        strides = dense_strides(shape, itemsize, channels_last)
        geo = geometry(tuple(shape), strides, strides, itemsize, num_groups, max_vec=1)
        return plan(geo.groups_total, geo.items, itemsize, sm_count=self.sm_count(), l2_bytes=self.l2_bytes(),
                    threads=self.threads, blocks_per_sm=self._blocks_per_sm,
                    chunks=self.chunks)

    def _compiled(self, kind, param_kind):
        key = (kind, param_kind)
        if key not in self._kernels:
            from . import numba_kernels as kernels

            self._kernels[key] = kernels.build(kind, param_kind, self.threads, self.plant)
        return self._kernels[key]

    def _workspace(self, stream, acc, groups_total, chunks):
        """(queue, tickets, partials, statistics) for calls on ``stream``: zero-filled when
        created or grown, zero again after every call (the kernel resets queue and tickets)."""
        import numpy as np
        from numba import cuda

        device = 0 if _simulator() else cuda.get_current_device().id
        key = (device, _stream_key(stream), np.dtype(acc).name)
        space = self._workspaces.get(key)
        need = (groups_total, 3 * groups_total * chunks, 2 * groups_total)
        if space is None or any(have < want for have, want in zip(space["sizes"], need)):
            sizes = tuple(max(want, 2 * have) for want, have in zip(need, space["sizes"] if space else (0, 0, 0)))
            space = {"sizes": sizes, "queue": cuda.to_device(np.zeros(1, np.uint64)),
                     "tickets": cuda.to_device(np.zeros(sizes[0], np.int32)),
                     "partial": cuda.device_array(sizes[1], acc), "stats": cuda.device_array(sizes[2], acc)}
            self._workspaces[key] = space
        return space["queue"], space["tickets"], space["partial"], space["stats"]

    def _output(self, shape, dtype, channels_last, like=None):
        """A dense output (channels-last when ``channels_last``) and its strides in bytes:
        from torch's caching allocator when ``like`` is a torch tensor, else from Numba."""
        from numba import cuda

        itemsize = _kernel_dtype(dtype).itemsize
        strides = dense_strides(shape, itemsize, channels_last)
        if like is not None and dtype_name(dtype) != "bfloat16":
            import torch

            memory = torch.empty_strided(tuple(shape), tuple(s // itemsize for s in strides), dtype=like.dtype,
                                         device=like.device)
            return cuda.as_cuda_array(memory), strides
        buffer = cuda.device_array(math.prod(shape), _kernel_dtype(dtype))
        return _strided_view(buffer, shape, strides, dtype), strides

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
        return self._sm_count or self._fact("MULTIPROCESSOR_COUNT", 132)

    def l2_bytes(self) -> int:
        return self._l2_bytes or self._fact("L2_CACHE_SIZE", 50 << 20)

    def _fact(self, name, default):
        """A device attribute of the current device (cached per device)."""
        from numba import cuda

        device = 0 if _simulator() else cuda.get_current_device().id
        key = (device, name)
        if key not in self._facts:
            self._facts[key] = int(_attribute(name, default))
        return self._facts[key]

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

        from ..base import copy_pattern

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


def _caller_stream(tensor):
    """torch's current stream of ``tensor``'s device, as a numba stream (0 under the simulator)."""
    if _simulator():
        return 0
    import torch
    from numba import cuda

    return cuda.external_stream(torch.cuda.current_stream(tensor.device).cuda_stream)


def _stream_key(stream):
    """A hashable key for a stream (0: the default stream)."""
    if isinstance(stream, int):
        return stream
    handle = getattr(stream, "handle", None)
    value = getattr(handle, "value", handle)
    try:
        return int(value or 0)
    except (TypeError, ValueError):
        return id(stream)


def _kernel_dtype(dtype):
    """The dtype kernels see: bfloat16 as its raw 16 bits."""
    import numpy as np

    return np.dtype(np.uint16) if dtype_name(dtype) == "bfloat16" else np.dtype(dtype)


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
    if not _simulator() and cuda.is_cuda_array(array):  # the simulator has no is_cuda_array: its arrays only
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
