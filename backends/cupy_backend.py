"""``cupy``: our hand-written CUDA C GroupNorm kernels (``backends/cuda/groupnorm.cu``),
loaded with ``cupy.RawModule``.

Host side only: it views x as (N, C, S) with element strides (:func:`backends._launch.collapse`),
picks the path with :func:`backends._launch.plan` (fused one block a group, or split
groups in L2-sized waves), picks the 128-bit path where the group is contiguous and
aligned (:func:`backends._cuda_model.can_vectorize`), and launches the template
instantiation named by :func:`name_expression`. The NumPy model in ``_cuda_model.py``
performs the same decomposition on the CPU; the tests verify it against the oracle.

Arrays: CuPy arrays in and out (strides of the input kept when reading; the output is
dense, channels-last when the input is); torch CUDA tensors and other DLPack producers
are taken through ``cupy.from_dlpack`` (zero copy). bfloat16 needs a CuPy with a
bfloat16 dtype; where CuPy has none, ``supports`` says so.
"""

from __future__ import annotations

import os

from ._launch import THREADS, collapse, plan
from ._cuda_model import can_vectorize, vector_width
from .base import EventTimer, GroupNormBackend, hash_files, missing_module
from .dtypes import DTYPES, HALF_DTYPES, dtype_name
from .errors import InvalidArgumentError, InvalidTypeError

HERE = os.path.dirname(os.path.abspath(__file__))
KERNEL_SOURCE = os.path.join(HERE, "cuda", "groupnorm.cu")
SOURCES = (KERNEL_SOURCE, os.path.join(HERE, "_launch.py"), os.path.join(HERE, "_cuda_model.py"),
           os.path.abspath(__file__))

C_TYPES = {"float16": "__half", "bfloat16": "__nv_bfloat16", "float32": "float", "float64": "double"}
ITEMSIZE = {"float16": 2, "bfloat16": 2, "float32": 4, "float64": 8}
COMPILE_OPTIONS = ("-std=c++17",)


def parameter_kinds(kind: str) -> tuple[str, ...]:
    """Weight/bias dtypes accepted with x of ``kind`` (torch's rule)."""
    return (kind, "float32") if kind in HALF_DTYPES else (kind,)


def vector_widths(kind: str) -> tuple[int, ...]:
    return (1, 16 // ITEMSIZE[kind])


def name_expression(kernel: str, kind: str, param_kind: str, vec: int) -> str:
    """The template instantiation the backend launches, e.g. ``gn_fused<__half, float, 8>``."""
    if kernel == "gn_partial":
        return f"gn_partial<{C_TYPES[kind]}, {vec}>"
    return f"{kernel}<{C_TYPES[kind]}, {C_TYPES[param_kind]}, {vec}>"


def all_name_expressions() -> list[str]:
    """Every instantiation the backend can launch: compiled together (and by the tests)."""
    names = []
    for kind in C_TYPES:
        for vec in vector_widths(kind):
            names.append(name_expression("gn_partial", kind, kind, vec))
            for param_kind in parameter_kinds(kind):
                names.append(name_expression("gn_fused", kind, param_kind, vec))
                names.append(name_expression("gn_normalize_split", kind, param_kind, vec))
    return names


def source() -> str:
    with open(KERNEL_SOURCE) as handle:
        return handle.read()


class CupyBackend(GroupNormBackend):
    name = "cupy"
    devices = ("cuda",)
    dtypes = DTYPES
    description = "our CUDA C kernels (cupy.RawModule): Welford, fused or split-in-L2-waves, 128-bit loads"

    def __init__(self, threads: int = THREADS):
        self.threads = threads
        self._module = None
        self._device = {}
        self._params = {}
        self._flush = None

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
        inner = positions > 1 and sxc < sxs
        y = _dense_like(x, inner)
        if x.size == 0:
            return y
        _, (syn, syc, sys_) = collapse(tuple(y.shape), tuple(y.strides), itemsize)
        w, b, param_kind = self._parameters(weight, bias, kind, channels)
        vec = vector_width(itemsize) if can_vectorize(x.shape, x.strides, y.strides, itemsize, x.data.ptr,
                                                      y.data.ptr) else 1
        cpg = channels // num_groups
        groups_total = n * num_groups
        items = cpg * positions // vec
        chosen = plan(groups_total, items, itemsize * vec, sm_count=self._fact("MultiProcessorCount", 132),
                      l2_bytes=self._fact("L2CacheSize", 50 << 20), threads=self.threads)
        i64 = cupy.int64
        common_x = (i64(sxn), i64(sxc), i64(sxs))
        common_y = (i64(syn), i64(syc), i64(sys_))
        t = self.threads
        if chosen["path"] == "fused":
            kernel = self._kernel(name_expression("gn_fused", kind, param_kind, vec))
            kernel((groups_total,), (t,), (x, w, b, y, i64(num_groups), i64(cpg), i64(positions), *common_x,
                                            *common_y, cupy.int32(inner), cupy.float64(eps)))
            return y
        chunks, chunk, wave = chosen["chunks"], chosen["chunk"], chosen["wave"]
        acc = cupy.float64 if kind == "float64" else cupy.float32
        partial = cupy.empty(3 * wave * chunks, acc)
        stats = self._kernel(name_expression("gn_partial", kind, kind, vec))
        normalize = self._kernel(name_expression("gn_normalize_split", kind, param_kind, vec))
        for first in range(0, groups_total, wave):
            blocks = min(wave, groups_total - first) * chunks
            stats((blocks,), (t,), (x, partial, i64(first), i64(num_groups), i64(cpg), i64(positions), i64(chunks),
                                    i64(chunk), *common_x, cupy.int32(inner)))
            normalize((blocks,), (t,), (x, w, b, y, partial, i64(first), i64(num_groups), i64(cpg), i64(positions),
                                        i64(chunks), i64(chunk), *common_x, *common_y, cupy.int32(inner),
                                        cupy.float64(eps)))
        return y

    def _kernel(self, expression):
        if self._module is None:
            import cupy

            self._module = cupy.RawModule(code=source(), options=COMPILE_OPTIONS,
                                          name_expressions=all_name_expressions())
        return self._module.get_function(expression)

    def _fact(self, attribute, default):
        if attribute not in self._device:
            import cupy

            properties = cupy.cuda.runtime.getDeviceProperties(cupy.cuda.Device().id)
            self._device["MultiProcessorCount"] = int(properties.get("multiProcessorCount", 132))
            self._device["L2CacheSize"] = int(properties.get("l2CacheSize", 50 << 20))
        return self._device.get(attribute, default)

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
            self._flush = cupy.empty(2 * self._fact("L2CacheSize", 50 << 20), cupy.uint8)
        self._flush.fill(0)
        return True

    def copy_kernel(self, device, nbytes):
        import cupy

        from .base import copy_pattern

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


