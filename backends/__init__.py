"""GroupNorm backends behind one contract, and the registry that names them.

``import backends`` imports no framework: built-in backends are listed as
``module:Class`` strings and instantiated on first lookup; each imports its framework
inside its methods. Third-party packages add backends through the entry-point group
``groupnorm_bench.backends`` (an entry point names a backend instance, a subclass, or a
zero-argument factory); users add them at run time with :func:`register`.

    >>> import backends
    >>> backends.names()
    ['torch', 'jax', 'numpy', ...]
    >>> torch_gn = backends.get("torch")
"""

from __future__ import annotations

import importlib
import threading

from .base import DEVICES, LAYOUTS, NAME_PATTERN, GroupNormBackend
from .dtypes import DTYPES
from .errors import (
    BackendUnavailableError,
    GroupNormBenchError,
    InvalidArgumentError,
    InvalidTypeError,
    RegistryError,
)
from .validation import check_group_norm_args

__all__ = [
    "DEVICES",
    "DTYPES",
    "LAYOUTS",
    "BackendUnavailableError",
    "GroupNormBackend",
    "GroupNormBenchError",
    "InvalidArgumentError",
    "InvalidTypeError",
    "RegistryError",
    "check_group_norm_args",
    "get",
    "importable",
    "load_plugins",
    "names",
    "plugin_of",
    "register",
    "unregister",
]

ENTRY_POINT_GROUP = "groupnorm_bench.backends"

# Built-in backends, imported on first use (name -> "module:Class").
BUILTIN = {
    "torch": "backends.torch_backend:TorchBackend",
    "jax": "backends.jax_backend:JaxBackend",
    "numpy": "backends.numpy_backend:NumpyBackend",
    "torch-compile": "backends.torch_compile_backend:TorchCompileBackend",
    "numba-cpu": "backends.numba_cpu.backend:NumbaCpuBackend",
    "numba-cuda": "backends.cuda.numba_cuda_backend:NumbaCudaBackend",
    "cupy": "backends.cuda.cupy_backend:CupyBackend",
}

_registered: dict[str, GroupNormBackend] = {}
_loaded_builtins: dict[str, GroupNormBackend] = {}
_entry_points_loaded = False
_entry_point_names: set[str] = set()
_plugin_of: dict[str, str] = {}  # backend name -> the plugin module that registers it
_loading: list[str] = []  # the plugin module being loaded (register() records its names)
_lock = threading.RLock()


class _BrokenEntryPoint(GroupNormBackend):
    """Stands in for an entry point that failed to load, so the failure is a reason."""

    dtypes = DTYPES
    devices = DEVICES

    def __init__(self, name: str, reason: str):
        self.name = name
        self._reason = reason
        self.description = f"entry point that failed to load: {reason}"

    def availability(self, device):
        return self._reason

    def group_norm(self, x, num_groups, weight=None, bias=None, eps=1e-5):
        raise BackendUnavailableError(self._reason)

    def from_numpy(self, array, device):
        raise BackendUnavailableError(self._reason)

    def to_numpy(self, array):
        raise BackendUnavailableError(self._reason)


def _conforming(obj, source: str) -> GroupNormBackend:
    """Return ``obj`` as a backend instance, or raise RegistryError saying what is wrong."""
    if isinstance(obj, type) and issubclass(obj, GroupNormBackend):
        obj = obj()
    if not isinstance(obj, GroupNormBackend):
        raise RegistryError(
            f"{source}: a backend must be an instance of backends.GroupNormBackend (subclass it "
            f"and define group_norm, from_numpy, to_numpy, or use "
            f"GroupNormBackend.from_function); got {obj!r} of type {type(obj).__name__}"
        )
    name = obj.name
    if not isinstance(name, str) or not NAME_PATTERN.match(name):
        raise RegistryError(
            f"{source}: backend name must be a lowercase string of letters, digits and "
            f"'_.+-' (no ':', which separates backend:device); got {name!r}"
        )
    for attribute, allowed in (("devices", DEVICES), ("dtypes", DTYPES), ("layouts", LAYOUTS)):
        value = getattr(obj, attribute)
        if isinstance(value, str) or not value or not set(value) <= set(allowed):
            raise RegistryError(
                f"{source}: backend {name!r} has {attribute}={value!r}; it must be a non-empty "
                f"tuple drawn from {', '.join(allowed)}"
            )
    return obj


def _load_entry_points() -> None:
    global _entry_points_loaded
    if _entry_points_loaded:
        return
    _entry_points_loaded = True
    from importlib.metadata import entry_points

    for entry_point in entry_points(group=ENTRY_POINT_GROUP):
        source = f"entry point {entry_point.name!r} ({entry_point.value})"
        if entry_point.name in BUILTIN or entry_point.name in _registered:
            continue  # an installed copy of a built-in, or a name already taken
        try:
            target = entry_point.load()
            if callable(target) and not isinstance(target, (type, GroupNormBackend)):
                target = target()
            backend = _conforming(target, source)
        except Exception as error:  # a broken plugin is a row, not a dead registry
            backend = _BrokenEntryPoint(entry_point.name, f"{source} failed: {type(error).__name__}: {error}")
        if backend.name not in _registered:
            _registered[backend.name] = backend
            _entry_point_names.add(backend.name)


def importable(name: str) -> bool:
    """Whether a fresh Python process can get backend ``name`` by name alone (a built-in
    or an installed entry point), as opposed to one registered at run time."""
    with _lock:
        _load_entry_points()
        return name in BUILTIN or name in _entry_point_names


def names() -> list[str]:
    """All backend names: built-ins first, then registered and entry-point backends."""
    with _lock:
        _load_entry_points()
        return list(BUILTIN) + [name for name in _registered if name not in BUILTIN]


def get(name: str) -> GroupNormBackend:
    """The backend called ``name``; RegistryError listing the valid names if there is none."""
    with _lock:
        _load_entry_points()
        if name in _registered:
            return _registered[name]
        if name in BUILTIN:
            if name not in _loaded_builtins:
                module_name, class_name = BUILTIN[name].split(":")
                cls = getattr(importlib.import_module(module_name), class_name)
                _loaded_builtins[name] = _conforming(cls(), f"built-in backend {name!r}")
            return _loaded_builtins[name]
    raise RegistryError(f"unknown backend {name!r}; known backends: {', '.join(names())}")


def register(backend, *, replace: bool = False) -> GroupNormBackend:
    """Add a backend (an instance or a subclass of GroupNormBackend) to the registry.

    Raises:
        RegistryError: the object does not conform, or its name is taken (pass
            ``replace=True`` to replace a registered one; built-ins cannot be replaced).
    """
    backend = _conforming(backend, "register()")
    with _lock:
        _load_entry_points()
        if backend.name in BUILTIN:
            raise RegistryError(
                f"register(): the name {backend.name!r} belongs to a built-in backend; choose another name"
            )
        if backend.name in _registered and not replace:
            raise RegistryError(
                f"register(): a backend named {backend.name!r} is already registered "
                f"({_registered[backend.name]!r}); pass replace=True to replace it"
            )
        _registered[backend.name] = backend
        if _loading:
            _plugin_of[backend.name] = _loading[-1]
    return backend


def load_plugins(modules) -> dict[str, str]:
    """Import each plugin module and call its ``register_backends()`` if it has one (what
    ``--plugin MODULE`` does); returns {backend name: module} for the backends they
    register. A fresh process (a worker, a cluster node) gets the same backends by loading
    the same modules. A module imported earlier, which registered its backends at import,
    is credited with the registered backends whose class it defines."""
    with _lock:
        for module_name in modules or ():
            _loading.append(module_name)
            try:
                module = importlib.import_module(module_name)
                hook = getattr(module, "register_backends", None)
                if callable(hook):
                    hook()
            finally:
                _loading.pop()
            for name, backend in _registered.items():
                if name not in _plugin_of and type(backend).__module__ == module_name:
                    _plugin_of[name] = module_name
        return {name: module for name, module in _plugin_of.items() if name in _registered}


def plugin_of(name: str) -> str | None:
    """The plugin module (:func:`load_plugins`) that registers backend ``name``, if any."""
    with _lock:
        return _plugin_of.get(name) if name in _registered else None


def unregister(name: str) -> None:
    """Remove a backend added with :func:`register` (built-ins cannot be removed)."""
    with _lock:
        if name not in _registered:
            raise RegistryError(f"unregister(): no registered backend named {name!r}")
        del _registered[name]
        _plugin_of.pop(name, None)
