"""torch tensors to a backend's own arrays and back, without copying.

One :class:`Bridge` per built-in backend. ``to_backend`` hands the backend a detached view
of the tensor's memory (NumPy through ``Tensor.numpy``, JAX and CuPy through DLPack,
Numba-CUDA through ``__cuda_array_interface__``); ``to_torch`` wraps the backend's result
the same way. Nothing is copied and nothing synchronizes the device. Where a framework
cannot take a tensor without a copy, :meth:`Bridge.why_not` says so, and the dispatcher
does not choose that backend for the problem: the module never copies silently.

The one copy that can happen is stated: an incoming gradient ``grad_y`` whose strides a
backend does not accept (JAX takes dense arrays only; autograd hands ``sum()``'s gradient
over as an expanded, stride-0 tensor) is made contiguous before the backward. x itself
never is: a backend that cannot take x's layout is not chosen.

Streams: CuPy launches on torch's current stream (an ``ExternalStream`` around the call);
Numba-CUDA launches on the legacy default stream, so it is refused while torch's current
stream is another one (its work could race with the caller's). JAX keeps its own streams
and synchronizes through DLPack's stream argument.
"""

from __future__ import annotations

import contextlib

from backends.base import LAYOUTS

TORCH_DTYPES = ("float16", "bfloat16", "float32", "float64")


def dtype_name(tensor) -> str:
    """``"float32"`` for a torch.float32 tensor (the harness's dtype names)."""
    return str(tensor.dtype).replace("torch.", "")


def layout_of(tensor) -> str:
    """The harness's layout name for a tensor: ``contiguous``; ``channels_last`` when
    channels are innermost and the rest is dense (NHWC, NDHWC, NLC); else ``strided``."""
    if tensor.is_contiguous():
        return "contiguous"
    if tensor.dim() < 3:
        return "strided"
    shape, strides, expected = tensor.shape, tensor.stride(), 1
    for dim in (1, *range(tensor.dim() - 1, 1, -1), 0):  # innermost first: C, then W, H, ..., then N
        if shape[dim] != 1 and strides[dim] != expected:
            return "strided"
        expected *= shape[dim]
    return "channels_last"  # (from strides alone: no tensor op lands in a traced graph)


class Bridge:
    """How tensors reach one backend (the default: the backend's arrays are torch tensors)."""

    native_autograd = True  # the backend's arrays are torch tensors: autograd differentiates its forward

    def __init__(self, name: str, layouts=LAYOUTS):
        self.name, self.layouts = name, tuple(layouts)

    def why_not(self, tensor) -> str | None:
        """None when ``tensor`` can reach the backend without a copy, else why not."""
        return None

    def to_backend(self, tensor):
        return tensor

    def to_torch(self, array, like):
        return array

    def stream(self, tensor):
        """A context in which the backend's work runs on torch's current stream."""
        return contextlib.nullcontext()

    def gradient(self, grad_y):
        """grad_y as the backend takes it: unchanged when its layout is accepted, else
        made contiguous (the one stated copy)."""
        if layout_of(grad_y) in self.layouts:
            return self.to_backend(grad_y)
        return self.to_backend(grad_y.contiguous())

    def optional(self, tensor):
        return None if tensor is None else self.to_backend(tensor)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name}>"


class NumpyBridge(Bridge):
    """Host NumPy arrays sharing the tensor's memory (``Tensor.numpy()``)."""

    native_autograd = False

    def why_not(self, tensor):
        if tensor.device.type != "cpu":
            return f"{self.name} runs on the host; the tensor is on {tensor.device}"
        if tensor.dtype.is_floating_point and dtype_name(tensor) == "bfloat16":
            return (f"{self.name} takes NumPy arrays, and NumPy has no bfloat16 to share a torch tensor's "
                    "memory through (Tensor.numpy() refuses it): the module would have to copy, so it does not "
                    "choose this backend")
        return None

    def to_backend(self, tensor):
        return tensor.detach().numpy()

    def to_torch(self, array, like):
        import torch

        return torch.from_numpy(array)


class JaxBridge(Bridge):
    """JAX arrays through DLPack (zero-copy when the buffer is aligned as XLA wants)."""

    native_autograd = False

    def why_not(self, tensor):
        if tensor.device.type not in ("cpu", "cuda"):
            return f"jax takes cpu and cuda tensors here; got {tensor.device}"
        return None

    def to_backend(self, tensor):
        import jax.dlpack

        from backends.jax_backend import x64_context

        with x64_context(dtype_name(tensor) == "float64"):
            return jax.dlpack.from_dlpack(tensor.detach())

    def to_torch(self, array, like):
        import torch

        return torch.from_dlpack(array)


class CupyBridge(Bridge):
    """CuPy arrays through DLPack, launched on torch's current stream."""

    native_autograd = False

    def why_not(self, tensor):
        if tensor.device.type != "cuda":
            return f"cupy runs on CUDA devices; the tensor is on {tensor.device}"
        return None

    def to_backend(self, tensor):
        import cupy

        return cupy.from_dlpack(tensor.detach())

    def to_torch(self, array, like):
        import torch

        return torch.from_dlpack(array)

    def stream(self, tensor):
        import cupy
        import torch

        current = torch.cuda.current_stream(tensor.device)
        return cupy.cuda.ExternalStream(current.cuda_stream, tensor.device.index or 0)


class NumbaCudaBridge(Bridge):
    """Numba device arrays through ``__cuda_array_interface__`` (legacy default stream only)."""

    native_autograd = False

    def why_not(self, tensor):
        if tensor.device.type != "cuda":
            return f"numba-cuda runs on CUDA devices; the tensor is on {tensor.device}"
        import torch

        current = torch.cuda.current_stream(tensor.device)
        if current.cuda_stream != 0:
            return ("numba-cuda launches on the legacy default stream, and torch's current stream is another "
                    f"({current}): its work could race with the caller's, so it is not chosen here")
        return None

    def to_backend(self, tensor):
        from numba import cuda

        return cuda.as_cuda_array(tensor.detach())

    def to_torch(self, array, like):
        import torch

        return torch.as_tensor(array, device=like.device)


_BRIDGES = {
    "torch": lambda: Bridge("torch"),
    "torch-compile": lambda: Bridge("torch-compile"),
    "numpy": lambda: NumpyBridge("numpy"),
    "numba-cpu": lambda: NumpyBridge("numba-cpu"),
    "jax": lambda: JaxBridge("jax", ("contiguous",)),
    "cupy": lambda: CupyBridge("cupy"),
    "numba-cuda": lambda: NumbaCudaBridge("numba-cuda"),
}
_made: dict[str, Bridge] = {}


def names() -> tuple[str, ...]:
    """Backends the module can call on torch tensors."""
    return tuple(_BRIDGES)


def get(name: str) -> Bridge | None:
    """The bridge to backend ``name``, or None when the module has none (a plugin backend
    whose arrays it does not know how to share)."""
    if name not in _BRIDGES:
        return None
    if name not in _made:
        bridge = _BRIDGES[name]()
        import backends

        bridge.layouts = tuple(layout for layout in bridge.layouts if layout in backends.get(name).layouts)
        _made[name] = bridge
    return _made[name]
