"""``GroupNorm``: ``torch.nn.GroupNorm`` that runs the fastest verified backend.

It *is* an ``nn.GroupNorm`` (a subclass): the constructor, attributes, parameters,
``reset_parameters``, ``extra_repr``, ``state_dict`` keys, ``.to()``/``.half()`` and
``isinstance(m, nn.GroupNorm)`` are torch's own; only ``forward`` differs (see
:func:`groupnorm_bench.functional.group_norm` and :mod:`groupnorm_bench.dispatch`).

TorchScript and ONNX export do not see through the dispatch (a Python decision per
problem): ``torch.jit.script`` refuses the module; for either, turn the model back with
:func:`restore_group_norms` first (the parameters are shared, nothing is copied).
"""

from __future__ import annotations

import torch
from torch import nn

from . import dispatch
from .functional import group_norm

_OUR_ATTRIBUTES = ("autotune", "backends", "_met")


class GroupNorm(nn.GroupNorm):
    """Drop-in ``torch.nn.GroupNorm(num_groups, num_channels, eps=1e-5, affine=True,
    device=None, dtype=None)``.

    Keyword-only extras (defaults keep ``nn.GroupNorm``'s behaviour and the process
    settings of :func:`groupnorm_bench.configure`):
        autotune: time the candidates for a problem without timing evidence (None: the
            process setting, off by default: a forward never measures unless asked).
        backends: candidate backend names (None: the process setting).
    """

    def __init__(self, num_groups: int, num_channels: int, eps: float = 1e-5, affine: bool = True,
                 device=None, dtype=None, *, autotune: bool | None = None, backends=None, **torch_options):
        # torch_options: keywords of the installed torch's nn.GroupNorm (2.13 adds bias=)
        super().__init__(num_groups, num_channels, eps, affine, device, dtype, **torch_options)
        self.autotune = autotune
        self.backends = backends
        self._met = {}  # Problem -> Choice, for chosen_backends()

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        return group_norm(input, self.num_groups, self.weight, self.bias, self.eps, autotune=self.autotune,
                          backends=self.backends, _record=self._met)

    @classmethod
    def from_module(cls, module: nn.GroupNorm, *, autotune: bool | None = None, backends=None) -> GroupNorm:
        """A GroupNorm sharing ``module``'s parameters (the same ``Parameter`` objects, so an
        optimizer built on the model keeps working), hooks and training flag."""
        if not isinstance(module, nn.GroupNorm):
            raise TypeError(f"from_module takes a torch.nn.GroupNorm; got {type(module).__name__}")
        swapped = cls.__new__(cls)
        swapped.__dict__.update(_shallow_state(module))
        swapped.autotune, swapped.backends, swapped._met = autotune, backends, {}
        return swapped

    def to_module(self) -> nn.GroupNorm:
        """The plain ``torch.nn.GroupNorm`` sharing this module's parameters."""
        plain = nn.GroupNorm.__new__(nn.GroupNorm)
        plain.__dict__.update({k: v for k, v in _shallow_state(self).items() if k not in _OUR_ATTRIBUTES})
        return plain


def _shallow_state(module: nn.Module) -> dict:
    """The module's attributes, its dictionaries (parameters, buffers, hooks) copied one
    level so the two modules do not share containers, only their contents."""
    return {key: value.copy() if isinstance(value, dict) else value for key, value in module.__dict__.items()}


def _swap(model: nn.Module, want, make):
    if want(model):
        return make(model), 1
    count = 0
    for parent in model.modules():
        for name, child in list(parent.named_children()):
            if want(child):
                setattr(parent, name, make(child))
                count += 1
    return model, count


def replace_group_norms(model: nn.Module, *, autotune: bool | None = None, backends=None) -> nn.Module:
    """Replace every ``torch.nn.GroupNorm`` in ``model`` (in place) by :class:`GroupNorm`
    sharing its parameters; returns the model (a new module when ``model`` itself is a
    GroupNorm). Subclasses of nn.GroupNorm other than exactly nn.GroupNorm are left alone
    (their forward may not be torch's)."""
    result, _ = _swap(model, lambda m: type(m) is nn.GroupNorm,
                      lambda m: GroupNorm.from_module(m, autotune=autotune, backends=backends))
    return result


def restore_group_norms(model: nn.Module) -> nn.Module:
    """The inverse of :func:`replace_group_norms`: every :class:`GroupNorm` back to
    ``torch.nn.GroupNorm`` (in place; parameters shared)."""
    result, _ = _swap(model, lambda m: isinstance(m, GroupNorm), lambda m: m.to_module())
    return result


def chosen_backends(model: nn.Module | None = None):
    """What runs each GroupNorm problem, as a pandas DataFrame: with ``model``, one row
    per (module name, problem it met); without, every choice made in this process.
    Columns: shape, num_groups, dtype, param_dtype, device, layout, pass, eps, affine,
    backend, evidence (select cache / stored results / autotuned now / verified (not
    timed)) and why_not_others (each other candidate's reason, when examined)."""
    if model is None:
        return dispatch.as_frame(dispatch.chosen())
    modules = {name or "(model)": list(m._met.values()) for name, m in model.named_modules()
               if isinstance(m, GroupNorm)}
    return dispatch.as_frame(None, modules)


def warmup(model: nn.Module, *example_inputs, passes=("forward", "train"), **example_kwargs):
    """Decide every GroupNorm problem ``model`` meets on ``example_inputs`` by timing
    (autotune): one call without gradients (the ``forward`` problems) and, when the model
    has parameters that require grad, one with (the ``train`` problems). Results are
    cached on disk, so later processes on this machine reuse them. Returns
    :func:`chosen_backends` of the model."""
    from backends.errors import InvalidArgumentError

    unknown = set(passes) - {"forward", "train"}
    if unknown:
        raise InvalidArgumentError(f"passes must be drawn from forward, train; got {sorted(unknown)}")
    trains = any(p.requires_grad for p in model.parameters())
    with dispatch.options(autotune=True):
        if "forward" in passes:
            with torch.no_grad():
                model(*example_inputs, **example_kwargs)
        if "train" in passes and trains:
            with torch.enable_grad():
                model(*example_inputs, **example_kwargs)
    return chosen_backends(model)
