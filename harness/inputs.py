"""Inputs of a case, generated reproducibly from the case alone, on the host.

Each distribution is a function ``(rng, case) -> float64 array of case.shape``; the
values are then rounded to the case's dtype (bfloat16 through ``ml_dtypes``), so the
oracle and every backend see exactly the same numbers. Distributions are chosen to
separate right from almost right:

========================  ==================================================================
``normal``                N(0, 1)
``uniform``               U(-1, 3): a non-zero mean
``offset``                1000 + N(0, 1): |mean|/std = 1000, breaks E[x^2] - E[x]^2
``near_constant``         1 + 1e-3 N(0, 1): variance below the default eps
``constant``              each group one value: variance 0, the answer is bias
``large_values``          N(0, 1) * 1024 (|x| up to 60000): squares overflow float16
``nan_inf``               N(0, 1) with a NaN, a +Inf and a -Inf in three groups
``channel_stats``         each (sample, channel) its own mean and scale
``split_group``           N(0, 1), the first third of every group shifted by +4
========================  ==================================================================

Weight and bias come from a second stream of the same seed, so they do not depend on the
distribution. Layouts are made on the host with NumPy strides (channels-last by a
transposed copy, strided as every other element of a buffer twice as long).
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from backends.dtypes import numpy_dtype


def _normal(rng, case):
    return rng.standard_normal(case.shape)


def _uniform(rng, case):
    return rng.uniform(-1.0, 3.0, case.shape)


def _offset(rng, case):
    return 1000.0 + rng.standard_normal(case.shape)


def _near_constant(rng, case):
    return 1.0 + 1e-3 * rng.standard_normal(case.shape)


def _grouped(values, case):
    """View (N, C, *) as (N, G, group_size) (values are C-contiguous here)."""
    return values.reshape(case.shape[0], case.num_groups, -1) if values.size else values


def _constant(rng, case):
    n, groups = case.shape[0], case.num_groups
    per_group = rng.uniform(-10.0, 10.0, (n, groups, 1))
    values = np.empty(case.shape)
    if values.size:
        _grouped(values, case)[...] = per_group
    return values


def _large_values(rng, case):
    return np.clip(1024.0 * rng.standard_normal(case.shape), -60000.0, 60000.0)


def _nan_inf(rng, case):
    values = rng.standard_normal(case.shape)
    flat = _grouped(values, case)
    if flat.size:
        n, groups, size = flat.shape
        flat[0, 0, size // 2] = np.nan
        flat[n - 1, groups - 1, 0] = np.inf
        flat[n // 2, groups // 2, size - 1] = -np.inf
    return values


def _channel_stats(rng, case):
    n, c = case.shape[:2]
    spatial = (1,) * (len(case.shape) - 2)
    means = rng.uniform(-5.0, 5.0, (n, c) + spatial)
    scales = np.exp(rng.uniform(-2.0, 2.0, (n, c) + spatial))
    return means + scales * rng.standard_normal(case.shape)


def _split_group(rng, case):
    values = rng.standard_normal(case.shape)
    flat = _grouped(values, case)
    if flat.size:
        flat[:, :, : math.ceil(flat.shape[2] / 3)] += 4.0
    return values


DISTRIBUTIONS = {
    "normal": _normal,
    "uniform": _uniform,
    "offset": _offset,
    "near_constant": _near_constant,
    "constant": _constant,
    "large_values": _large_values,
    "nan_inf": _nan_inf,
    "channel_stats": _channel_stats,
    "split_group": _split_group,
}
# Distributions with groups of zero variance: eps = 0 is undefined for them.
ZERO_VARIANCE_DISTRIBUTIONS = ("constant",)


@dataclasses.dataclass(frozen=True)
class Inputs:
    """Host arrays of one case: x laid out as the case says, weight and bias or None."""

    x: np.ndarray
    weight: np.ndarray | None
    bias: np.ndarray | None


def lay_out(values: np.ndarray, layout: str) -> np.ndarray:
    """The same logical array with the memory layout named (a view of a fresh buffer)."""
    if layout == "contiguous":
        return np.ascontiguousarray(values)
    if layout == "channels_last":  # memory order N, *spatial, C
        order = (0, *range(2, values.ndim), 1)
        inverse = tuple(np.argsort(order))
        return np.ascontiguousarray(values.transpose(order)).transpose(inverse)
    if layout == "strided":  # every other element of a buffer twice as long
        buffer = np.zeros(values.shape[:-1] + (2 * values.shape[-1],), dtype=values.dtype)
        view = buffer[..., 1::2]
        view[...] = values
        return view
    raise ValueError(f"layout must be contiguous, channels_last or strided; got {layout!r}")


def make(case) -> Inputs:
    """The inputs of ``case``: deterministic in the case's fields (device aside)."""
    rng = np.random.default_rng([case.seed, 0])
    values = DISTRIBUTIONS[case.distribution](rng, case)
    x = lay_out(values.astype(numpy_dtype(case.dtype)), case.layout)
    channels = case.shape[1]
    param_dtype = numpy_dtype(case.param_dtype or case.dtype)
    if case.affine == "none":
        return Inputs(x, None, None)
    if case.affine == "default":
        return Inputs(x, np.ones(channels, param_dtype), np.zeros(channels, param_dtype))
    params = np.random.default_rng([case.seed, 1])
    weight = params.normal(1.0, 0.5, channels).astype(param_dtype)
    bias = params.normal(0.0, 1.0, channels).astype(param_dtype)
    return Inputs(x, weight, bias)
