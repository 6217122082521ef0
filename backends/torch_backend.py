"""``torch``: ``torch.nn.functional.group_norm``, eager, on CPU and CUDA.

The reference contestant. torch is imported inside the methods only.
Arrays keep their strides on the way in (channels-last and strided views are built with
``empty_strided`` + ``copy_``); bfloat16 crosses the host boundary as 16-bit integers,
since NumPy has no bfloat16 of its own.
"""

from __future__ import annotations

from .base import EventTimer, GroupNormBackend, missing_module
from .dtypes import DTYPES

_FLUSH_BUFFER = None


def _or_zeros(grad, leaf):
    import torch

    return torch.zeros_like(leaf) if grad is None else grad


class TorchBackend(GroupNormBackend):
    name = "torch"
    devices = ("cpu", "cuda")
    dtypes = DTYPES
    description = "torch.nn.functional.group_norm (eager)"

    def availability(self, device):
        reason = super().availability(device) or missing_module("torch", "torch")
        if reason:
            return reason
        import torch

        if device == "cuda" and not torch.cuda.is_available():
            built = torch.version.cuda
            return (
                "no CUDA device visible to torch (torch.cuda.is_available() is False; this torch "
                + (f"was built for CUDA {built})" if built else "is a CPU-only build: install a CUDA build of torch)")
            )
        return None

    def group_norm(self, x, num_groups, weight=None, bias=None, eps=1e-5):
        import torch.nn.functional as F

        return F.group_norm(x, num_groups, weight, bias, eps)

    def forward_train(self, x, num_groups, weight=None, bias=None, eps=1e-5):
        """Autograd, as training runs it: leaves that share the callers' storage (nothing
        is copied, the callers' tensors keep their requires_grad flags), and the graph."""
        import torch
        import torch.nn.functional as F

        leaves = [None if t is None else t.detach().requires_grad_() for t in (x, weight, bias)]
        with torch.enable_grad():
            y = F.group_norm(leaves[0], num_groups, leaves[1], leaves[2], eps)
        return y.detach(), (y, leaves)

    def backward(self, grad_y, residuals):
        """``torch.autograd.grad`` through the saved graph with ``retain_graph=True``:
        the backward alone can then run again on the same residuals (how the harness times
        it), and the cost is autograd's as users pay it (ATen's native_group_norm_backward
        plus the engine's dispatch)."""
        import torch

        y, leaves = residuals
        wanted = [t for t in leaves if t is not None]
        grads = torch.autograd.grad(y, wanted, grad_y, retain_graph=True, allow_unused=True)
        found = iter(grads)
        # (an empty input has no graph to the leaves: its gradients are zeros)
        return tuple(None if t is None else _or_zeros(next(found), t) for t in leaves)

    def from_numpy(self, array, device):
        import numpy as np
        import torch

        if array.dtype.name == "bfloat16":
            host = torch.from_numpy(array.view(np.int16)).view(torch.bfloat16)
        else:
            host = torch.from_numpy(array)
        out = torch.empty_strided(host.size(), host.stride(), dtype=host.dtype, device=device)
        return out.copy_(host)

    def to_numpy(self, array):
        import ml_dtypes
        import torch

        host = array.detach().cpu()
        if host.dtype == torch.bfloat16:
            return host.view(torch.int16).numpy().view(ml_dtypes.bfloat16)
        return host.numpy()

    def synchronize(self, device):
        if device == "cuda":
            import torch

            torch.cuda.synchronize()

    def event_timer(self, device):
        if device != "cuda":
            return None
        import torch

        return EventTimer(torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True),
                          lambda start, stop: start.elapsed_time(stop))

    def flush_cache(self, device):
        if device != "cuda":
            return False
        import torch

        global _FLUSH_BUFFER
        if _FLUSH_BUFFER is None:
            l2 = getattr(torch.cuda.get_device_properties(0), "L2_cache_size", 64 << 20)
            _FLUSH_BUFFER = torch.empty(2 * l2, dtype=torch.uint8, device="cuda")
        _FLUSH_BUFFER.zero_()
        return True

    def copy_kernel(self, device, nbytes):
        import torch

        from .base import copy_pattern

        source = torch.from_numpy(copy_pattern(nbytes)).to(device)
        target = torch.empty_like(source)
        return lambda: target.copy_(source)

    def threads(self, device):
        if device != "cpu":
            return None
        import torch

        return torch.get_num_threads()

    def free_memory(self, device):
        if device != "cuda":
            return None
        import torch

        return torch.cuda.mem_get_info()[0]

    def version(self):
        import torch

        cuda = torch.version.cuda
        return f"torch {torch.__version__}" + (f" (CUDA {cuda})" if cuda else "")

    def shares_memory(self, a, b):
        def extent(t):
            start = t.data_ptr()
            if t.numel() == 0:
                return start, start
            span = sum((n - 1) * abs(s) for n, s in zip(t.shape, t.stride()))
            return start, start + (span + 1) * t.element_size()

        (a0, a1), (b0, b1) = extent(a), extent(b)
        return a.device == b.device and a0 < b1 and b0 < a1
