"""What a case must produce: the oracle's output and tolerance for whole groups.

The expectation is computed once per case (every backend is judged against the same
arrays) and stored per group as rows of a (groups, group_size) table: 16 bytes (value
and tolerance, float64) per verified element, computed in blocks so the oracle's
temporaries stay small whatever the case's size.

**Sampling.** A case of more than :data:`VERIFY_ELEMENTS` elements (2^26, 67 million)
is verified on a sample of whole groups: the first, the last and evenly spaced ones
between, as many as fit in that budget (at least two). Each row of such a case says so
(``verified_groups`` / ``total_groups``); smaller cases verify every group. A group is
never split: statistics are only meaningful over a whole group.

**Backward and train cases.** Each gradient is held as an :class:`harness.oracle.expected.Expected` so that one judge
(:func:`harness.oracle.checks.judge`) compares every output of every pass: grad_x as rows of
whole groups (like the forward's y), grad_weight and grad_bias as one row of C values
(``shape (1, C)``, one "group"). Unlike the forward's, the backward's oracle is computed
on the whole batch, never on a sample of groups: grad_weight and grad_bias sum over every
sample. It holds about twelve float64 copies of x at its peak (see
:func:`harness.execution.memory.case_host_bytes`).
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from .reference import group_norm_backward_reference, normalize_rows
from .tolerances import group_terms, resemblance, tolerance_of, tolerances

VERIFY_ELEMENTS = 2 ** 26
BLOCK_ELEMENTS = 2 ** 22  # rows of the oracle computed at a time


def sample_groups(total_groups: int, group_size: int, budget: int) -> np.ndarray:
    """Flat ids (n * G + g) of the groups to verify: all, or first/last/evenly spaced."""
    if total_groups * group_size <= budget or total_groups <= 2:
        return np.arange(total_groups)
    count = max(2, budget // max(group_size, 1))
    return np.unique(np.linspace(0, total_groups - 1, count).round().astype(np.int64))


def as_rows(array: np.ndarray, num_groups: int) -> np.ndarray:
    """(N, C, *) as (N * G, group_size): a view when contiguous, else a copy."""
    n = array.shape[0]
    return np.reshape(array, (n * num_groups, array.size // max(n * num_groups, 1)))


@dataclasses.dataclass(frozen=True)
class Expected:
    """The oracle for a case's verified groups.

    Attributes:
        shape, num_groups, dtype: of the case.
        groups: flat ids (n * G + g) of the verified groups, ascending.
        y: float64 (len(groups), group_size): the oracle's output for those groups.
        tolerance: float64, same shape: the tolerance per element.
        grads: backward and train cases: the gradients' expectations
            (:class:`harness.oracle.expected.ExpectedGrads`); None for the forward.
        condition, distinct: per verified row, |mean|/s and the distinct values the
            tolerance counted (None where rows are not groups: grad_weight, grad_bias).
        group_size: the elements each statistic sums over (for :meth:`resemblance`).
    """

    shape: tuple
    num_groups: int
    dtype: str
    groups: np.ndarray
    y: np.ndarray
    tolerance: np.ndarray
    grads: object = None
    condition: np.ndarray | None = None
    distinct: np.ndarray | None = None
    group_size: int = 0

    def resemblance(self, row: int, ratio: float) -> str:
        """The rejected class (docs/tolerance.md) that an error of ``ratio`` times the
        tolerance in verified row ``row`` resembles; "" when rows are not groups."""
        if self.condition is None or not self.group_size:
            return ""
        return resemblance(self.dtype, ratio, self.group_size, self.distinct[row], float(self.condition[row]))

    @property
    def total_groups(self) -> int:
        return self.shape[0] * self.num_groups

    @property
    def sampled(self) -> bool:
        return len(self.groups) < self.total_groups

    def rows(self, output: np.ndarray) -> np.ndarray:
        """The verified groups of an output (or input) array, as rows like :attr:`y`."""
        rows = as_rows(output, self.num_groups)
        return rows if not self.sampled else rows[self.groups]

    def index(self, row: int, column: int) -> tuple:
        """The (n, c, *spatial) index of element ``column`` of verified row ``row``."""
        group = int(self.groups[row])
        n, g = divmod(group, self.num_groups)
        per_group = self.shape[1] // self.num_groups
        within = np.unravel_index(column, (per_group,) + tuple(self.shape[2:]))
        return (n, g * per_group + int(within[0])) + tuple(int(i) for i in within[1:])

    @classmethod
    def of(cls, case, host, budget: int | None = None) -> Expected:
        """Compute the oracle and tolerance for ``case`` on host inputs ``host``,
        on every group or (past ``budget`` elements, default :data:`VERIFY_ELEMENTS`)
        on a sample of whole groups."""
        n = case.shape[0]
        groups_per_sample = case.num_groups
        size = case.group_size
        spatial = math.prod(case.shape[2:])
        groups = sample_groups(n * groups_per_sample, size, budget or VERIFY_ELEMENTS)
        x_rows = as_rows(host.x, groups_per_sample)
        y = np.empty((len(groups), size))
        tol = np.empty((len(groups), size))
        conditions = np.empty(len(groups))
        distincts = np.empty(len(groups))

        step = max(1, BLOCK_ELEMENTS // max(size, 1))
        for start in range(0, len(groups), step):
            ids = groups[start:start + step]
            normalized, mean, rstd = normalize_rows(x_rows[ids], case.eps)
            weight = _per_element(host.weight, groups_per_sample, spatial, ids)
            bias = _per_element(host.bias, groups_per_sample, spatial, ids)
            terms = group_terms(case.dtype, normalized, mean, rstd, case.eps)
            conditions[start:start + step] = terms["condition"]
            distincts[start:start + step] = terms["distinct"]
            with np.errstate(all="ignore"):
                tol[start:start + step] = tolerance_of(
                    case.dtype, normalized, terms["condition"][:, None],
                    1.0 if weight is None else np.abs(weight), 0.0 if bias is None else np.abs(bias), size,
                    terms["distinct"][:, None], terms["floor"][:, None], tuple(s[:, None] for s in terms["stall"]),
                )
                if weight is not None:
                    normalized *= weight
                if bias is not None:
                    normalized += bias
            y[start:start + step] = normalized
        grads = None
        if getattr(case, "pass_", "forward") != "forward":
            grads = ExpectedGrads.of(case, host)
        return cls(tuple(case.shape), groups_per_sample, case.dtype, groups, y, tol, grads, conditions, distincts, size)


def _per_element(params, groups_per_sample: int, spatial: int, ids: np.ndarray):
    """Per-channel parameters spread over the elements of groups ``ids`` (None stays None)."""
    if params is None:
        return None
    table = np.asarray(params, np.float64).reshape(groups_per_sample, -1)
    return np.repeat(table[ids % groups_per_sample], spatial, axis=1)


# -- backward ---------------------------------------------------------------------------
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
    def of(cls, case, host) -> ExpectedGrads:
        """The gradients of ``case`` for its host inputs (``host.grad_y`` set)."""
        ref = group_norm_backward_reference(host.x, host.grad_y, case.num_groups, host.weight, host.bias, case.eps)
        tol = tolerances(case.dtype, case.param_dtype or case.dtype, ref, host.grad_y, host.weight, eps=case.eps)
        groups = case.shape[0] * case.num_groups
        with np.errstate(all="ignore"):
            condition = (np.abs(ref.mean) * ref.rstd).reshape(-1)
        grad_x = Expected(tuple(case.shape), case.num_groups, case.dtype, np.arange(groups),
                          as_rows(ref.grad_x, case.num_groups), as_rows(tol["grad_x"], case.num_groups),
                          condition=condition, distinct=np.full(groups, float(case.group_size)),
                          group_size=case.group_size)
        param_dtype = case.param_dtype or case.dtype

        def per_channel(values, tolerance):
            if values is None:
                return None
            return Expected((1, values.size), 1, param_dtype, np.arange(1), values[None, :], tolerance[None, :])

        return cls(grad_x, per_channel(ref.grad_weight, tol["grad_weight"]),
                   per_channel(ref.grad_bias, tol["grad_bias"]))
