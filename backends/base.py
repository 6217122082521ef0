"""The contract every GroupNorm implementation meets: :class:`GroupNormBackend`.

Design requirements (``docs/plugins.md`` shows a backend written against them):

* A backend is a small object; the harness never imports a framework itself. A backend
  module imports its framework inside its methods only, so ``import backends`` stays
  light and a missing framework is a reason (``availability``), not an ImportError.
* A subclass sets ``name``, ``devices``, ``dtypes`` and defines ``group_norm``,
  ``from_numpy`` and ``to_numpy``; everything else has a default.
* Argument validation is done once, here, for every backend: defining ``group_norm`` in
  a subclass wraps it (at class creation) with :func:`backends.validation.check_group_norm_args`,
  so a user's backend raises exactly the same ``ValueError``/``TypeError`` as ours.
* Optional abilities (device events, free memory, an L2 flush, the backward pass) are
  methods with defaults, so a backend that defines only the forward keeps working as the
  contract grows.
"""

from __future__ import annotations

import abc
import functools
import importlib
import math
import re
from collections.abc import Callable
from typing import Any

from .dtypes import DTYPES
from .errors import GroupNormBenchError
from .saved import Saved
from .validation import check_backward_args, check_group_norm_args

DEVICES = ("cpu", "cuda")
LAYOUTS = ("contiguous", "channels_last", "strided")
NAME_PATTERN = re.compile(r"^[a-z0-9][a-z0-9_.+-]*$")


def missing_module(module: str, extra: str) -> str | None:
    """None when ``module`` imports, else an availability reason naming the extra to install."""
    try:
        importlib.import_module(module)
    except ImportError as error:
        return f"{module} is not installed ({error}): pip install 'groupnorm-bench[{extra}]'"
    return None


def _validated(group_norm: Callable) -> Callable:
    """Wrap a ``group_norm(self, x, num_groups, weight, bias, eps)`` with validation."""
    if getattr(group_norm, "_groupnorm_bench_validated", False):
        return group_norm

    @functools.wraps(group_norm)
    def wrapper(self, x, num_groups, weight=None, bias=None, eps=1e-5):
        check_group_norm_args(x, num_groups, weight, bias, eps)
        return group_norm(self, x, num_groups, weight, bias, eps)

    wrapper._groupnorm_bench_validated = True
    return wrapper


class BackwardUnsupportedError(GroupNormBenchError, NotImplementedError):
    """The backend implements the forward pass only (its rows for backward and train
    are ``unsupported``)."""


def _validated_forward_train(forward_train: Callable) -> Callable:
    """Wrap ``forward_train(self, x, num_groups, weight, bias, eps) -> (y, residuals)``:
    the forward's validation, and the residuals packed into a :class:`Saved`."""
    if getattr(forward_train, "_groupnorm_bench_validated", False):
        return forward_train

    @functools.wraps(forward_train)
    def wrapper(self, x, num_groups, weight=None, bias=None, eps=1e-5):
        from .dtypes import dtype_name

        check_group_norm_args(x, num_groups, weight, bias, eps)
        y, residuals = forward_train(self, x, num_groups, weight, bias, eps)
        return y, Saved(residuals, x.shape, dtype_name(x.dtype), weight is not None, bias is not None)

    wrapper._groupnorm_bench_validated = True
    return wrapper


def _validated_backward(backward: Callable) -> Callable:
    """Wrap ``backward(self, grad_y, residuals) -> (grad_x, grad_weight, grad_bias)``:
    grad_y checked against the forward, None for a parameter the forward did not have."""
    if getattr(backward, "_groupnorm_bench_validated", False):
        return backward

    @functools.wraps(backward)
    def wrapper(self, grad_y, saved):
        check_backward_args(grad_y, saved)
        grad_x, grad_weight, grad_bias = backward(self, grad_y, saved.residuals)
        return grad_x, grad_weight if saved.has_weight else None, grad_bias if saved.has_bias else None

    wrapper._groupnorm_bench_validated = True
    return wrapper


def _byte_extent(array) -> tuple[int, int] | None:
    """[first byte, last byte + 1) of an array exposing an array interface, else None."""
    iface = getattr(array, "__cuda_array_interface__", None) or getattr(
        array, "__array_interface__", None
    )
    if not iface:
        return None
    start = int(iface["data"][0])
    shape = tuple(iface["shape"])
    itemsize = int(re.sub(r"\D", "", iface["typestr"]) or 1)
    if math.prod(shape) == 0:
        return (start, start)
    strides = iface.get("strides")
    if strides is None:
        return (start, start + math.prod(shape) * itemsize)
    low = start + sum((n - 1) * s for n, s in zip(shape, strides) if s < 0)
    high = start + sum((n - 1) * s for n, s in zip(shape, strides) if s > 0) + itemsize
    return (low, high)


def hash_files(paths) -> str:
    """A short hash of the bytes of ``paths`` (a kernel's sources), read without any framework."""
    import hashlib

    digest = hashlib.sha256()
    for path in paths:
        with open(path, "rb") as handle:
            digest.update(handle.read())
    return digest.hexdigest()[:12]


class EventTimer:
    """A device-event timer (see :meth:`GroupNormBackend.event_timer`) over two events with
    ``record()`` and ``synchronize()`` and a function giving milliseconds between them."""

    def __init__(self, start_event, stop_event, elapsed_ms: Callable[[Any, Any], float]):
        self._start, self._stop, self._elapsed_ms = start_event, stop_event, elapsed_ms

    def start(self):
        self._start.record()

    def stop(self):
        self._stop.record()

    def elapsed(self):
        self._stop.synchronize()
        return self._elapsed_ms(self._start, self._stop) / 1e3


def host_copy(array):
    """A fresh NumPy array with ``array``'s values and exactly its strides (channels-last
    and strided views included; a negative stride's copy is C-contiguous): the
    ``from_numpy`` of NumPy-based backends. (``ndarray.copy()`` would make it C-contiguous,
    and the layout a case asks for would never reach the backend.)"""
    import numpy as np

    if array.size == 0 or min(array.strides, default=0) < 0:
        return array.copy()
    span = sum((n - 1) * s for n, s in zip(array.shape, array.strides)) + array.itemsize
    out = np.ndarray(array.shape, array.dtype, np.empty(span, np.uint8), 0, array.strides)
    out[...] = array
    return out


def copy_pattern(nbytes: int):
    """The bytes a copy kernel copies: not constant, so a copy that did not happen shows."""
    import numpy as np

    return np.tile(np.arange(251, dtype=np.uint8), nbytes // 251 + 1)[:nbytes]  # bytes 0..250, repeated


class GroupNormBackend(abc.ABC):
    """One GroupNorm implementation, on one or more devices.

    Subclass it, set the class attributes and define the three abstract methods::

        class MyBackend(GroupNormBackend):
            name = "mine"
            devices = ("cpu",)
            dtypes = ("float32", "float64")

            def group_norm(self, x, num_groups, weight=None, bias=None, eps=1e-5):
                ...  # x is validated already
            def from_numpy(self, array, device):
                return array
            def to_numpy(self, array):
                return array

        backends.register(MyBackend())

    Attributes:
        name: registry key, lowercase (``"torch"``, ``"numba-cuda"``); no ``:``.
        devices: the harness's device names this backend can run on (``"cpu"``, ``"cuda"``).
        dtypes: input dtypes it implements (names from :data:`backends.dtypes.DTYPES`).
        layouts: input layouts it accepts (``contiguous``, ``channels_last``, ``strided``).
            A framework whose arrays have no strides (JAX) lists only ``contiguous``.
        description: one line shown by ``gnbench list``.
        default_selected: whether sweeps that name no backends include it.
    """

    name: str = ""
    devices: tuple[str, ...] = ("cpu",)
    dtypes: tuple[str, ...] = DTYPES
    layouts: tuple[str, ...] = LAYOUTS
    description: str = ""
    default_selected: bool = True  # in sweeps that name no backends (False: opt-in, e.g. slow to compile)

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        raw = cls.__dict__.get("group_norm")
        if raw is None:
            return
        if isinstance(raw, staticmethod):
            function = raw.__func__
            raw = lambda self, *args, **kw: function(*args, **kw)  # noqa: E731
        if callable(raw) and not getattr(raw, "__isabstractmethod__", False):
            cls.group_norm = _validated(raw)
        for name, wrap in (("forward_train", _validated_forward_train), ("backward", _validated_backward)):
            raw = cls.__dict__.get(name)
            if callable(raw):
                setattr(cls, name, wrap(raw))

    # -- the operation and host <-> device transfer (required) ---------------------------

    @abc.abstractmethod
    def group_norm(self, x, num_groups: int, weight=None, bias=None, eps: float = 1e-5):
        """GroupNorm of ``x`` (N, C, *) in ``num_groups`` groups, torch semantics.

        Arrays are the framework's own, already on their device. Returns a new array of
        x's shape and dtype; never modifies x, weight or bias and never aliases x.
        Arguments are validated before this body runs (see :mod:`backends.validation`).
        """

    # -- training (optional: a forward-only backend is ``unsupported`` for backward) -------

    def forward_train(self, x, num_groups: int, weight=None, bias=None, eps: float = 1e-5):
        """The forward of a training step: ``(y, saved)``, y as :meth:`group_norm`'s and
        ``saved`` what :meth:`backward` needs (a subclass returns its own residuals, which
        the base packs into a :class:`Saved`; forward and backward therefore always run on
        one backend). Arguments are validated as for ``group_norm``.

        Raises:
            BackwardUnsupportedError: the backend implements the forward pass only (the default).
        """
        raise BackwardUnsupportedError(f"backend {self.name!r} implements the forward pass only")

    def backward(self, grad_y, saved):
        """``(grad_x, grad_weight, grad_bias)`` for the incoming gradient ``grad_y`` (x's
        shape and dtype, any strides) and ``saved`` from :meth:`forward_train`: grad_x in
        x's dtype, grad_weight/grad_bias in the parameters' dtype, None where the forward
        had no weight/bias. Never modifies grad_y or saved, never aliases an input; may
        be called several times on one ``saved`` (the harness times it so).

        Raises:
            BackwardUnsupportedError: the backend implements the forward pass only (the default).
        """
        raise BackwardUnsupportedError(f"backend {self.name!r} implements the forward pass only")

    @property
    def supports_backward(self) -> bool:
        """Whether this backend implements :meth:`forward_train` and :meth:`backward`."""
        cls = type(self)
        return cls.forward_train is not GroupNormBackend.forward_train and cls.backward is not GroupNormBackend.backward

    @abc.abstractmethod
    def from_numpy(self, array, device: str):
        """A framework array on ``device`` holding ``array``'s values, keeping its strides
        where the framework has strides (channels-last, strided views)."""

    @abc.abstractmethod
    def to_numpy(self, array):
        """A host NumPy array with the values (and dtype) of a framework array."""

    # -- optional, with defaults ---------------------------------------------------------

    def availability(self, device: str) -> str | None:
        """None when the backend can run on ``device``, else a reason the user can act on."""
        if device not in self.devices:
            return f"{self.name} does not run on {device!r} (it runs on {', '.join(self.devices)})"
        return None

    def supports(self, case) -> str | None:
        """None when ``case`` is in scope, else why not (a dtype, a layout, a device).

        ``case`` is a :class:`harness.problems.cases.Case` (read by attribute: ``device``,
        ``dtype``, ``layout``, ``param_dtype``, ``shape``, ``num_groups``).
        """
        if case.device not in self.devices:
            return f"{self.name} does not run on {case.device} (only {', '.join(self.devices)})"
        if case.dtype not in self.dtypes:
            return f"{self.name} does not implement {case.dtype} (only {', '.join(self.dtypes)})"
        if case.layout not in self.layouts:
            return f"{self.name} does not accept the {case.layout} layout (only {', '.join(self.layouts)})"
        return None

    def synchronize(self, device: str) -> None:  # noqa: B027  (optional: a default, not abstract)
        """Wait for all work queued on ``device``. No-op by default (synchronous backends)."""

    # -- timing hooks (defaults keep a backend written without them working) --------------

    def wait(self, result, device: str) -> None:
        """Block until ``result`` is computed. Default: :meth:`synchronize` the device.
        Frameworks with per-array futures (JAX: ``block_until_ready``) override it."""
        self.synchronize(device)

    def event_timer(self, device: str):
        """A device-event timer for ``device`` or None (the harness then uses the host
        clock around :meth:`wait`). The object has ``start()``, ``stop()`` and
        ``elapsed()`` (seconds between them, synchronizing as needed), recording on the
        stream the backend's work runs on."""
        return None

    def flush_cache(self, device: str) -> bool:
        """Evict the device's last-level cache (outside any timed region); return False
        when this backend cannot (the default)."""
        return False

    def copy_kernel(self, device: str, nbytes: int):
        """A zero-argument callable copying ``nbytes`` of :func:`copy_pattern` from one
        device buffer to another (the roofline's reference) and returning the destination
        (this backend's array, so that a test can read what it copied), or None when this
        backend offers none."""
        return None

    def simulated(self, device: str) -> bool:
        """Whether ``device`` is emulated on the host here (e.g. Numba's CUDA simulator):
        its rows are correctness evidence only, and the harness never times them."""
        return False

    def threads(self, device: str) -> int | None:
        """Worker threads the backend's CPU work may use, when it can tell."""
        return None

    def free_memory(self, device: str) -> int | None:
        """Bytes free on ``device`` for this backend's arrays, or None when unknown
        (the harness then checks host memory only)."""
        return None

    def version(self) -> str:
        """The implementation's version: the framework's, plus a kernel-source hash for our own kernels."""
        return "unknown"

    def source_hash(self) -> str:
        """A hash of the backend's own kernel sources, computed without importing its
        framework ("" for backends that only call a framework): caches key on it."""
        return ""

    def shares_memory(self, a, b) -> bool:
        """Whether two arrays of this backend may overlap in memory (used to catch an
        output that aliases the input). The default reads array interfaces; a backend
        whose arrays have none (JAX: immutable) keeps False."""
        extent_a, extent_b = _byte_extent(a), _byte_extent(b)
        if extent_a is None or extent_b is None:
            return False
        return extent_a[0] < extent_b[1] and extent_b[0] < extent_a[1]

    # -- conveniences ----------------------------------------------------------------------

    @classmethod
    def from_function(
        cls,
        name: str,
        group_norm: Callable[..., Any],
        *,
        from_numpy: Callable[[Any, str], Any] | None = None,
        to_numpy: Callable[[Any], Any] | None = None,
        devices: tuple[str, ...] = ("cpu",),
        dtypes: tuple[str, ...] = DTYPES,
        layouts: tuple[str, ...] = LAYOUTS,
        description: str = "",
        backward: Callable[..., Any] | None = None,
    ) -> GroupNormBackend:
        """A backend built from plain functions, e.g. a NumPy ``group_norm`` under test.

        ``from_numpy``/``to_numpy`` default to the identity on NumPy arrays (host only).
        ``backward(grad_y, x, num_groups, weight, bias, eps) -> (grad_x, grad_weight,
        grad_bias)``, when given, makes the backend take the backward and train passes:
        its ``forward_train`` runs ``group_norm`` and keeps the inputs as residuals.
        """
        import numpy as np

        attributes = {
            "name": name,
            "devices": tuple(devices),
            "dtypes": tuple(dtypes),
            "layouts": tuple(layouts),
            "description": description or f"user function {getattr(group_norm, '__name__', '?')}",
            "group_norm": staticmethod(group_norm),
            "from_numpy": lambda self, array, device: (from_numpy or (lambda a, d: a))(array, device),
            "to_numpy": lambda self, array: (to_numpy or np.asarray)(array),
        }
        if backward is not None:
            def forward_train(self, x, num_groups, weight=None, bias=None, eps=1e-5):
                return group_norm(x, num_groups, weight, bias, eps), (x, num_groups, weight, bias, eps)

            def backward_method(self, grad_y, residuals):
                return tuple(backward(grad_y, *residuals))

            attributes.update(forward_train=forward_train, backward=backward_method)
        return type(f"FunctionBackend[{name}]", (cls,), attributes)()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r} devices={self.devices}>"
