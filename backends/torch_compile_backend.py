"""``torch-compile``: ``torch.compile`` of ``F.group_norm``, the rival users would reach for.

Inductor generates C++/OpenMP on the CPU and Triton on the GPU. Shapes are compiled
statically (``dynamic=False``: what a model with fixed shapes gets); each new shape,
dtype or affine combination compiles once (about 1 s on this project's CPU machine after
a first compile of about 17 s), which the bench reports as ``compile_s`` apart from the
timed calls. The recompile limit is raised in the process that uses this backend so a
sweep over many shapes keeps compiling instead of silently falling back to eager.

Not in a sweep's default backend list (``default_selected = False``): compiling every
default-suite shape takes minutes here. Name it: ``--backends torch-compile``.
"""

from __future__ import annotations

from .torch_backend import TorchBackend

_COMPILED = None


def _compiled():
    global _COMPILED
    if _COMPILED is None:
        import torch
        import torch.nn.functional as F

        config = torch._dynamo.config
        for limit in ("recompile_limit", "cache_size_limit", "accumulated_recompile_limit",
                      "accumulated_cache_size_limit"):
            try:
                setattr(config, limit, 4096)
            except (AttributeError, TypeError):
                pass
        _COMPILED = torch.compile(F.group_norm, dynamic=False)
    return _COMPILED


class TorchCompileBackend(TorchBackend):
    name = "torch-compile"
    description = "torch.compile(F.group_norm), Inductor (C++ on CPU, Triton on GPU)"
    default_selected = False

    def group_norm(self, x, num_groups, weight=None, bias=None, eps=1e-5):
        return _compiled()(x, num_groups, weight, bias, eps)

    def version(self):
        return super().version() + " + torch.compile(inductor, static shapes)"
