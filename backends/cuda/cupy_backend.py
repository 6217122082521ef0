"""``cupy``: our hand-written CUDA C GroupNorm kernels (``backends/cuda/groupnorm.cu``),
loaded with ``cupy.RawModule``.

Host side only. Per call: view x as (N, C, S) with element strides, derive the item
addressing (:func:`backends.cuda.launch.geometry`: 128-bit items where the layout allows,
across channels for channels-last input), plan the work items
(:func:`backends.cuda.launch.plan`) and launch ONE persistent kernel, ``gn_forward``, on the
caller's stream: torch's current stream for torch tensors, else CuPy's current stream.
Its workspace (queue, tickets, partials, statistics) is kept per (device, stream) and is
zero again after every call (the kernel resets it), so a call allocates nothing but y and
never synchronizes the host: it can be captured in a CUDA graph. Each template
instantiation is compiled on first use, in a module of its own.

``launches`` counts the kernels this backend launched (tests and ``python -m harness.launches`` read it).

Arrays: CuPy arrays in and out (strides of the input kept when reading; the output is
dense, channels-last when the input is); torch CUDA tensors and other DLPack producers
are taken through ``cupy.from_dlpack`` (zero copy). bfloat16 needs a CuPy with a
bfloat16 dtype; where CuPy has none, ``supports`` says so.
"""

from __future__ import annotations

import os
import threading

from ..base import EventTimer, GroupNormBackend, hash_files, missing_module
from ..dtypes import DTYPES, HALF_DTYPES, dtype_name
from ..errors import InvalidArgumentError, InvalidTypeError
from .launch import INT32_MAX, THREADS, collapse, geometry, plan

HERE = os.path.dirname(os.path.abspath(__file__))
KERNEL_SOURCE = os.path.join(HERE, "groupnorm.cu")
SOURCES = (KERNEL_SOURCE, os.path.join(HERE, "launch.py"), os.path.abspath(__file__))

C_TYPES = {"float16": "__half", "bfloat16": "__nv_bfloat16", "float32": "float", "float64": "double"}
ITEMSIZE = {"float16": 2, "bfloat16": 2, "float32": 4, "float64": 8}
COMPILE_OPTIONS = ("-std=c++17",)
KERNEL = "gn_forward"


def parameter_kinds(kind: str) -> tuple[str, ...]:
    """Weight/bias dtypes accepted with x of ``kind`` (torch's rule)."""
    return (kind, "float32") if kind in HALF_DTYPES else (kind,)


def vector_widths(kind: str) -> tuple[int, ...]:
    """Elements per item: 1 up to a 16-byte vector."""
    widths, width = [], 1
    while width * ITEMSIZE[kind] <= 16:
        widths.append(width)
        width *= 2
    return tuple(widths)


def name_expression(kind: str, param_kind: str, vec: int) -> str:
    """The template instantiation the backend launches, e.g. ``gn_forward<__half, float, 8>``."""
    return f"{KERNEL}<{C_TYPES[kind]}, {C_TYPES[param_kind]}, {vec}>"


def all_name_expressions() -> list[str]:
    """Every instantiation the backend can launch (each compiled on first use; the tests
    compile them all)."""
    return [name_expression(kind, param_kind, vec) for kind in C_TYPES for vec in vector_widths(kind)
            for param_kind in parameter_kinds(kind)]


def kernel_arguments(arrays, geo, chosen, eps) -> tuple:
    """The argument tuple of ``gn_forward`` (the order and C types of its signature):
    ``arrays`` = (x, w, b, y, queue, tickets, partial, stats), then the geometry and plan
    as 64-bit integers (``inner``, ``linear`` as 32-bit ints) and eps as a double."""
    import numpy as np

    i64, i32 = np.int64, np.int32
    return (*arrays, i64(geo.groups), i64(geo.cpg), i64(geo.positions), i64(geo.majors), i64(geo.minors),
            i32(geo.inner), i32(geo.linear), *(i64(v) for v in geo.sx), *(i64(v) for v in geo.sy),
            i64(geo.groups_total), i64(chosen["chunks"]), i64(chosen["chunk"]), i64(chosen["wave"]), np.float64(eps))


def source() -> str:
    with open(KERNEL_SOURCE) as handle:
        return handle.read()


class CupyBackend(GroupNormBackend):
    name = "cupy"
    devices = ("cuda",)
    dtypes = DTYPES
    description = ("our CUDA C kernels (cupy.RawModule): one persistent launch, ticketed merge of split groups, "
                   "128-bit items, channels-last vectorized across channels")

    def __init__(self, threads: int = THREADS):
        if threads % 32 or not 32 <= threads <= 256:
            raise InvalidArgumentError(f"threads must be a multiple of 32 in [32, 256] (whole warps; the kernel's "
                                       f"launch bound is 256); got {threads}")
        self.threads = threads
        self.launches = 0
        self._modules = {}
        self._devices = {}  # device id -> facts
        self._workspaces = {}  # (device id, stream pointer, accumulation kind) -> arrays
        self._params = {}
        self._flush = None
        self._lock = threading.Lock()

    def availability(self, device):
        reason = super().availability(device) or missing_module("cupy", "cupy")
        if reason:
            return reason
        import cupy

        try:
            count = cupy.cuda.runtime.getDeviceCount()
        except Exception as error:  # CUDA driver missing: CuPy raises its runtime error
            return f"CuPy sees no CUDA device ({type(error).__name__}: {error})"
        return None if count else "CuPy sees no CUDA device"

    def supports(self, case):
        reason = super().supports(case)
        if reason or case.dtype != "bfloat16":
            return reason
        return None if _bfloat16_dtype() is not None else "this CuPy has no bfloat16 dtype"

    # -- the operation -------------------------------------------------------------------

    def group_norm(self, x, num_groups, weight=None, bias=None, eps=1e-5):
        import cupy

        stream = _caller_stream(x)
        x = _as_cupy(x, "x")
        kind = dtype_name(x.dtype)
        itemsize = x.dtype.itemsize
        view = collapse(tuple(x.shape), tuple(x.strides), itemsize)
        if view is None:
            raise InvalidArgumentError(
                f"cupy needs x's spatial dims to collapse to one non-negative stride (contiguous, "
                f"channels-last or a uniform step); got shape {tuple(x.shape)} with strides "
                f"{tuple(x.strides)} bytes: make x contiguous first"
            )
        (n, channels, positions), (sxn, sxc, sxs) = view
        device_id = x.device.id
        with cupy.cuda.Device(device_id), stream:
            y = _dense_like(x, positions > 1 and sxc < sxs)
            if x.size == 0:
                return y
            geo = geometry(tuple(x.shape), tuple(x.strides), tuple(y.strides), itemsize, num_groups,
                           x_address=x.data.ptr, y_address=y.data.ptr)
            if max(geo.majors, geo.minors) > INT32_MAX:
                raise InvalidArgumentError(f"cupy: a group of {geo.majors} x {geo.minors} items exceeds the "
                                           f"kernel's 32-bit item counters (at most {INT32_MAX} per axis)")
            w, b, param_kind = self._parameters(weight, bias, kind, channels)
            kernel = self._kernel(kind, param_kind, geo.vec)
            facts = self._facts(device_id, kernel)
            chosen = plan(geo.groups_total, geo.items, itemsize * geo.vec, sm_count=facts["sm_count"],
                          l2_bytes=facts["l2_bytes"], threads=self.threads, blocks_per_sm=facts["blocks_per_sm"])
            queue, tickets, partial, stats = self._workspace(device_id, stream, kind, geo.groups_total,
                                                             chosen["chunks"])
            kernel((chosen["grid"],), (self.threads,),
                   kernel_arguments((x, w, b, y, queue, tickets, partial, stats), geo, chosen, eps))
            self.launches += 1
        return y

    def _kernel(self, kind, param_kind, vec):
        """The instantiation for (x kind, parameter kind, vec), compiled on first use."""
        key = (kind, param_kind, vec)
        with self._lock:
            if key not in self._modules:
                import cupy

                name = name_expression(kind, param_kind, vec)
                module = cupy.RawModule(code=source(), options=COMPILE_OPTIONS, name_expressions=[name])
                self._modules[key] = module.get_function(name)
            return self._modules[key]

    def _facts(self, device_id, kernel=None):
        """SM count, L2 bytes and (given ``kernel``) its resident blocks per SM, for one device."""
        facts = self._devices.get(device_id)
        if facts is None:
            import cupy

            properties = cupy.cuda.runtime.getDeviceProperties(device_id)
            facts = {"sm_count": int(properties.get("multiProcessorCount", 132)),
                     "l2_bytes": int(properties.get("l2CacheSize", 50 << 20)), "occupancy": {}}
            self._devices[device_id] = facts
        if kernel is None:
            return facts
        occupancy = facts["occupancy"]
        if id(kernel) not in occupancy:
            occupancy[id(kernel)] = _resident_blocks(kernel, self.threads)
        return {**facts, "blocks_per_sm": occupancy[id(kernel)]}

    def _workspace(self, device_id, stream, kind, groups_total, chunks):
        """(queue, tickets, partials, statistics) for calls on ``stream``: zero-filled when
        created or grown, zero again after every call (the kernel resets queue and tickets)."""
        import cupy

        acc = cupy.float64 if kind == "float64" else cupy.float32
        key = (device_id, stream.ptr, acc)
        space = self._workspaces.get(key)
        need = (groups_total, 3 * groups_total * chunks, 2 * groups_total)
        if space is None or any(have < want for have, want in zip(space["sizes"], need)):
            sizes = tuple(max(want, 2 * have) for want, have in zip(need, space["sizes"] if space else (0, 0, 0)))
            space = {"sizes": sizes, "queue": cupy.zeros(1, cupy.uint64), "tickets": cupy.zeros(sizes[0], cupy.int32),
                     "partial": cupy.empty(sizes[1], acc), "stats": cupy.empty(sizes[2], acc)}
            self._workspaces[key] = space
        return space["queue"], space["tickets"], space["partial"], space["stats"]

    def _parameters(self, weight, bias, kind, channels):
        import cupy

        given = weight if weight is not None else bias
        param_kind = dtype_name(given.dtype) if given is not None else ("float64" if kind == "float64" else "float32")

        def device(param, fill, argument):
            if param is not None:
                return cupy.ascontiguousarray(_as_cupy(param, argument))
            key = (fill, param_kind, channels)
            if key not in self._params:
                self._params[key] = cupy.full(channels, fill, dtype=_cupy_dtype(param_kind))
            return self._params[key]

        return device(weight, 1.0, "weight"), device(bias, 0.0, "bias"), param_kind

    # -- transfers and timing hooks ------------------------------------------------------

    def from_numpy(self, array, device):
        import cupy
        import numpy as np

        if any(s < 0 for s in array.strides):
            array = np.ascontiguousarray(array)
        if array.size == 0:
            return cupy.empty(array.shape, _cupy_dtype(dtype_name(array.dtype)))
        itemsize = array.dtype.itemsize
        span = sum((n - 1) * s for n, s in zip(array.shape, array.strides)) // itemsize + 1
        extent = np.ascontiguousarray(np.lib.stride_tricks.as_strided(array, shape=(span,), strides=(itemsize,)))
        buffer = cupy.asarray(extent)
        return cupy.ndarray(array.shape, buffer.dtype, buffer.data, strides=array.strides)

    def to_numpy(self, array):
        return array.get()

    def synchronize(self, device):
        import cupy

        cupy.cuda.get_current_stream().synchronize()

    def event_timer(self, device):
        import cupy

        return EventTimer(cupy.cuda.Event(), cupy.cuda.Event(), cupy.cuda.get_elapsed_time)

    def flush_cache(self, device):
        import cupy

        if self._flush is None:
            self._flush = cupy.empty(2 * self._facts(cupy.cuda.Device().id)["l2_bytes"], cupy.uint8)
        self._flush.fill(0)
        return True

    def copy_kernel(self, device, nbytes):
        import cupy

        from ..base import copy_pattern

        source_ = cupy.asarray(copy_pattern(nbytes))
        target = cupy.empty_like(source_)

        def copy():
            target[...] = source_
            return target

        return copy

    def free_memory(self, device):
        import cupy

        return int(cupy.cuda.runtime.memGetInfo()[0])

    def source_hash(self):
        return hash_files(SOURCES)

    def version(self):
        import cupy

        return f"cupy {cupy.__version__} (CUDA {cupy.cuda.runtime.runtimeGetVersion()}, kernel {self.source_hash()})"


def _bfloat16_dtype():
    """CuPy's bfloat16 dtype (ml_dtypes') when this CuPy accepts it, else None."""
    import cupy
    import ml_dtypes

    try:
        cupy.empty(1, dtype=ml_dtypes.bfloat16)
    except Exception:
        return None
    return ml_dtypes.bfloat16


def _cupy_dtype(kind):
    import numpy as np

    return _bfloat16_dtype() if kind == "bfloat16" else np.dtype(kind)


def _caller_stream(array):
    """The stream a call runs on: torch's current stream for a torch tensor (so a caller
    inside ``torch.cuda.stream(s)`` gets its ordering), else CuPy's current stream."""
    import cupy

    if type(array).__module__.startswith("torch") and getattr(array, "is_cuda", False):
        import torch

        current = torch.cuda.current_stream(array.device)
        from_external = getattr(cupy.cuda.Stream, "from_external", None)
        if from_external is not None and hasattr(current, "__cuda_stream__"):
            return from_external(current)
        return cupy.cuda.ExternalStream(current.cuda_stream, array.device.index or 0)
    return cupy.cuda.get_current_stream()


def _resident_blocks(kernel, threads):
    """Blocks of ``kernel`` resident per SM (the driver's occupancy calculator), or None."""
    try:
        from cupy.cuda import driver

        function = getattr(kernel, "kernel", kernel)
        return int(driver.occupancyMaxActiveBlocksPerMultiprocessor(function.ptr, threads, 0)) or None
    except Exception:  # an older CuPy: plan() falls back to threads per SM
        return None


def _as_cupy(array, argument):
    import cupy

    if isinstance(array, cupy.ndarray):
        return array
    if hasattr(array, "__dlpack__"):
        try:
            return cupy.from_dlpack(array)
        except Exception as error:
            raise InvalidTypeError(f"{argument}: cupy.from_dlpack refused a {type(array).__name__}: {error}") from None
    raise InvalidTypeError(
        f"{argument} must be a CuPy array or a CUDA DLPack producer (a torch CUDA tensor); got {type(array).__name__}"
    )


def _dense_like(x, channels_last):
    """A dense output of x's shape and dtype: channels-last when x is, else C-contiguous."""
    import cupy

    shape = tuple(x.shape)
    if not channels_last or len(shape) < 3:
        return cupy.empty(shape, x.dtype)
    order = (0, *range(2, len(shape)), 1)  # N, *spatial, C in memory
    buffer = cupy.empty(tuple(shape[i] for i in order), x.dtype)
    return buffer.transpose(tuple(order.index(i) for i in range(len(shape))))


