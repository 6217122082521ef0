"""What a backward or train case must produce: the oracle's gradients and their tolerances.

Each gradient is held as an :class:`harness.expected.Expected` so that one judge
(:func:`harness.checks.judge`) compares every output of every pass: grad_x as rows of
whole groups (like the forward's y), grad_weight and grad_bias as one row of C values
(``shape (1, C)``, one "group"). Unlike the forward's, the backward's oracle is computed
on the whole batch, never on a sample of groups: grad_weight and grad_bias sum over every
sample. It holds about twelve float64 copies of x at its peak (see
:func:`harness.memory.case_host_bytes`).
"""

from __future__ import annotations

import dataclasses

import numpy as np

from .expected import Expected, as_rows
from .reference_backward import group_norm_backward_reference
from .tolerances_backward import tolerances

GRADIENTS = ("grad_x", "grad_weight", "grad_bias")


@dataclasses.dataclass(frozen=True)
class ExpectedGrads:
    """The oracle's gradients: ``grad_x`` (rows of x's groups), ``grad_weight`` and
    ``grad_bias`` (one row of C values, or None where the forward has no such parameter)."""

    grad_x: Expected
    grad_weight: Expected | None
    grad_bias: Expected | None

    def items(self):
        """(name, Expected) for each gradient the case has."""
        return [(name, getattr(self, name)) for name in GRADIENTS if getattr(self, name) is not None]

    @classmethod
    def of(cls, case, host) -> "ExpectedGrads":
        """The gradients of ``case`` for its host inputs (``host.grad_y`` set)."""
        ref = group_norm_backward_reference(host.x, host.grad_y, case.num_groups, host.weight, host.bias, case.eps)
        tol = tolerances(case.dtype, case.param_dtype or case.dtype, ref, host.grad_y, host.weight)
        groups = case.shape[0] * case.num_groups
        grad_x = Expected(tuple(case.shape), case.num_groups, case.dtype, np.arange(groups),
                          as_rows(ref.grad_x, case.num_groups), as_rows(tol["grad_x"], case.num_groups))
        param_dtype = case.param_dtype or case.dtype

        def per_channel(values, tolerance):
            if values is None:
                return None
            return Expected((1, values.size), 1, param_dtype, np.arange(1), values[None, :], tolerance[None, :])

        return cls(grad_x, per_channel(ref.grad_weight, tol["grad_weight"]),
                   per_channel(ref.grad_bias, tol["grad_bias"]))
