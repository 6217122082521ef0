"""Inputs of a case, generated reproducibly from the case alone, on the host.

Values are made one sample (one index of N) at a time, each from its own random stream
``default_rng([seed, 0, n])``, in float64, then rounded to the case's dtype (bfloat16
through ``ml_dtypes``) straight into a buffer already in the case's layout; a huge case
never holds a float64 copy of the whole input. The oracle and every backend see exactly
the same numbers.

Distributions (``scale`` below depends on the dtype: see :data:`SCALES`):

======================  ===========================================================
``normal``              N(0, 1)
``uniform``             U(-1, 3): a non-zero mean
``rand``                U(0, 1), as ``torch.rand`` (KernelBench's inputs)
``offset``              1000 + N(0, 1): |mean|/std = 1e3, breaks E[x^2] - E[x]^2
``offset_1e5``          1e5 + N(0, 1): |mean|/std = 1e5 (float32/float64 only)
``near_constant``       1 + 1e-3 N(0, 1): variance below the default eps
``near_constant_1e6``   1 + 1e-6 N(0, 1): a handful of float32 ulps
``constant``            each group one value: variance 0, the answer is bias
``large_values``        1024 N(0, 1), clipped to 60000: squares overflow float16
``huge_magnitude``      the dtype's large scale (1e4 float16, 1e15 bfloat16 and
                        float32, 1e145 float64) times N(0, 1), clipped to its range
``tiny_magnitude``      the dtype's small scale (1e-4 float16: subnormals; 1e-30
                        bfloat16/float32; 1e-150 float64) times N(0, 1)
``nan_inf``             N(0, 1) with a NaN, a +Inf and a -Inf in three groups
``nan_inf_dense``       N(0, 1); half the groups hold one NaN, +Inf or -Inf; one group all +Inf
``channel_stats``       each (sample, channel) its own mean (U(-5, 5)) and scale (e^U(-2, 2))
``channel_stats_wide``  the same with means U(-1e3, 1e3) and scales e^U(-7, 7)
``split_group``         N(0, 1), the first third of every group shifted by +4
``split_group_far``     N(0, 1), the first third of every group shifted by +1e3
======================  ===========================================================

**Parametric distributions** (what ``gnbench fuzz`` searches; the parameters are part of
the name, hence of the case id, so a found case reruns exactly)::

    p_o{offset}_s{scale}_c{channel_spread}_k{outliers}_z{constant_groups}

    offset + scale * N(0, 1) per element, plus a per-channel mean U(-c, c); in every
    group, ``k`` elements replaced by offset +/- 1e4 * scale (outliers); the first ``z``
    groups of every sample constant (= offset: zero variance). Values are clipped to 0.9x
    the dtype's largest finite value. Numbers are Python float reprs: ``p_o1000.0_s0.01_c0.0_k0_z0``.

Weight and bias come from a second stream of the same seed, independent of the
distribution (``zero_weight``: weight 0, bias as ``random``'s).

**Incoming gradients** (backward and train cases), from a third stream per sample,
``default_rng([seed, 2, n])``, rounded to x's dtype in the case's ``grad_layout``:

==========  ==============================================================================
``normal``  N(0, 1)
``constant`` one value c per sample, U(0.5, 2): as ``(c * y).sum().backward()``; the exact
            dx is about 0 (g - mean(g) cancels where w is constant): a dx missing its
            mean(g) term is off by r * mean(g)
``xhat``    c * xhat (x normalized in float64, c per sample U(0.5, 2)): the exact dx
            cancels again, here between g and xhat * mean(g * xhat)
``sparse``  N(0, 1) on 5% of the elements, 0 elsewhere (a masked loss)
``large``   the dtype's large scale times N(0, 1): 1e3 in float16 (a half accumulator of
            a 480-element sum of g * xhat overflows), 1e15 bfloat16/float32, 1e145 float64
``nan``     N(0, 1) with one NaN (sample 0, middle of group 0): it must spread over its
            group in dx and over its channel in dweight/dbias, nowhere else
==========  ==============================================================================

Layouts are made with NumPy strides: channels-last as a view of an (N, *spatial, C)
buffer, strided as every other element of a buffer twice as long.
"""

from __future__ import annotations

import dataclasses
import math
import re

import numpy as np

from backends.dtypes import finfo, numpy_dtype

# (huge, tiny) magnitudes per dtype. Huge stays where float32 accumulation of squares
# cannot overflow over 1e7 elements (1e15^2 * 1e7 < 3.4e38): past that every correct
# float32-accumulating kernel fails (seen: bfloat16 at 1e30 gave torch NaN, jax and numpy
# garbage), which is a fact about float32, not a bug. float16 is clipped to its range.
SCALES = {
    "float16": (1e4, 1e-4),
    "bfloat16": (1e15, 1e-30),
    "float32": (1e15, 1e-30),
    "float64": (1e145, 1e-150),
}


def _group_view(values, case):
    """One sample (C, *spatial) as (G, group_size) (values are C-contiguous here)."""
    return values.reshape(case.num_groups, -1)


def _normal(rng, case, n):
    return rng.standard_normal(case.shape[1:])


def _uniform(rng, case, n):
    return rng.uniform(-1.0, 3.0, case.shape[1:])


def _rand(rng, case, n):
    return rng.uniform(0.0, 1.0, case.shape[1:])


def _offset(center):
    return lambda rng, case, n: center + rng.standard_normal(case.shape[1:])


def _near_constant(spread):
    return lambda rng, case, n: 1.0 + spread * rng.standard_normal(case.shape[1:])


def _constant(rng, case, n):
    values = np.empty(case.shape[1:])
    if values.size:
        _group_view(values, case)[...] = rng.uniform(-10.0, 10.0, (case.num_groups, 1))
    return values


def _large_values(rng, case, n):
    return np.clip(1024.0 * rng.standard_normal(case.shape[1:]), -60000.0, 60000.0)


def _magnitude(which):
    def make(rng, case, n):
        values = SCALES[case.dtype][which] * rng.standard_normal(case.shape[1:])
        limit = 0.9 * float(finfo(case.dtype).max)
        return np.clip(values, -limit, limit)

    return make


def _nan_inf(rng, case, n):
    values = rng.standard_normal(case.shape[1:])
    if values.size:
        groups = _group_view(values, case)
        last, size = case.shape[0] - 1, groups.shape[1]
        if n == 0:
            groups[0, size // 2] = np.nan
        if n == last:
            groups[-1, 0] = np.inf
        if n == case.shape[0] // 2:
            groups[case.num_groups // 2, size - 1] = -np.inf
    return values


def _nan_inf_dense(rng, case, n):
    values = rng.standard_normal(case.shape[1:])
    if values.size:
        groups = _group_view(values, case)
        kinds = rng.choice(4, size=groups.shape[0], p=(0.5, 0.2, 0.15, 0.15))  # none, NaN, +Inf, -Inf
        where = rng.integers(0, groups.shape[1], size=groups.shape[0])
        for group, (kind, position) in enumerate(zip(kinds, where)):
            if kind:
                groups[group, position] = (np.nan, np.inf, -np.inf)[kind - 1]
        if n == 0:
            groups[-1] = np.inf
    return values


def _channel_stats(mean_range, log_scale_range):
    def make(rng, case, n):
        channels = case.shape[1]
        spatial = (1,) * (len(case.shape) - 2)
        means = rng.uniform(-mean_range, mean_range, (channels,) + spatial)
        scales = np.exp(rng.uniform(-log_scale_range, log_scale_range, (channels,) + spatial))
        return means + scales * rng.standard_normal(case.shape[1:])

    return make


def _split_group(shift):
    def make(rng, case, n):
        values = rng.standard_normal(case.shape[1:])
        if values.size:
            groups = _group_view(values, case)
            groups[:, : math.ceil(groups.shape[1] / 3)] += shift
        return values

    return make


DISTRIBUTIONS = {
    "normal": _normal,
    "uniform": _uniform,
    "rand": _rand,
    "offset": _offset(1e3),
    "offset_1e5": _offset(1e5),
    "near_constant": _near_constant(1e-3),
    "near_constant_1e6": _near_constant(1e-6),
    "constant": _constant,
    "large_values": _large_values,
    "huge_magnitude": _magnitude(0),
    "tiny_magnitude": _magnitude(1),
    "nan_inf": _nan_inf,
    "nan_inf_dense": _nan_inf_dense,
    "channel_stats": _channel_stats(5.0, 2.0),
    "channel_stats_wide": _channel_stats(1e3, 7.0),
    "split_group": _split_group(4.0),
    "split_group_far": _split_group(1e3),
}
# Distributions with groups of zero variance: eps = 0 is undefined for them.
ZERO_VARIANCE_DISTRIBUTIONS = ("constant",)
# Distributions a dtype cannot hold (the values would overflow or collapse to constants).
UNREPRESENTABLE = {"offset_1e5": ("float16", "bfloat16")}

_PARAMETRIC = re.compile(
    r"^p_o(?P<offset>[^_]+)_s(?P<scale>[^_]+)_c(?P<spread>[^_]+)_k(?P<outliers>\d+)_z(?P<constant>\d+)$"
)


@dataclasses.dataclass(frozen=True)
class Parametric:
    """The parameters of a parametric distribution (see the module docstring)."""

    offset: float = 0.0
    scale: float = 1.0
    spread: float = 0.0
    outliers: int = 0
    constant: int = 0

    @property
    def name(self) -> str:
        return (
            f"p_o{float(self.offset)!r}_s{float(self.scale)!r}_c{float(self.spread)!r}"
            f"_k{int(self.outliers)}_z{int(self.constant)}"
        )

    @classmethod
    def parse(cls, name: str) -> Parametric | None:
        found = _PARAMETRIC.match(name)
        if not found:
            return None
        try:
            made = cls(
                float(found["offset"]),
                float(found["scale"]),
                float(found["spread"]),
                int(found["outliers"]),
                int(found["constant"]),
            )
        except ValueError:
            return None
        numbers = (made.offset, made.scale, made.spread)
        if not all(map(math.isfinite, numbers)) or made.scale < 0 or made.spread < 0 or made.name != name:
            return None  # one spelling per distribution: the id must be canonical
        return made

    def __call__(self, rng, case, n):
        shape = case.shape[1:]
        values = self.offset + self.scale * rng.standard_normal(shape)
        if self.spread and values.size:
            means = rng.uniform(-self.spread, self.spread, (case.shape[1],) + (1,) * (len(shape) - 1))
            values = values + means
        if values.size:
            groups = _group_view(values, case)
            if self.outliers:
                count = min(self.outliers, groups.shape[1])
                for group in groups:
                    where = rng.choice(groups.shape[1], size=count, replace=False)
                    group[where] = self.offset + 1e4 * self.scale * rng.choice((-1.0, 1.0), size=count)
            groups[: min(self.constant, groups.shape[0])] = self.offset
        limit = 0.9 * float(finfo(case.dtype).max)
        return np.clip(values, -limit, limit)


def is_distribution(name: str) -> bool:
    """A named distribution of :data:`DISTRIBUTIONS` or a parametric one."""
    return name in DISTRIBUTIONS or Parametric.parse(name) is not None


def generator(name: str):
    """The generator ``(rng, case, n) -> values`` of a distribution name."""
    return DISTRIBUTIONS.get(name) or Parametric.parse(name)


def has_zero_variance(name: str) -> bool:
    """Whether a distribution makes groups of zero variance (eps = 0 is undefined there)."""
    parametric = Parametric.parse(name)
    if parametric is not None:
        return parametric.constant > 0 or parametric.scale == 0
    return name in ZERO_VARIANCE_DISTRIBUTIONS


@dataclasses.dataclass(frozen=True)
class Inputs:
    """Host arrays of one case: x laid out as the case says, weight and bias or None,
    and (backward and train cases) the incoming gradient grad_y in its layout."""

    x: np.ndarray
    weight: np.ndarray | None
    bias: np.ndarray | None
    grad_y: np.ndarray | None = None


def _per_sample_factor(rng):
    return rng.uniform(0.5, 2.0)


def _grad_normal(rng, case, x):
    return rng.standard_normal(case.shape[1:])


def _grad_constant(rng, case, x):
    return np.full(case.shape[1:], _per_sample_factor(rng))


def _grad_xhat(rng, case, x):
    from harness.oracle.reference import normalize_rows

    with np.errstate(all="ignore"):
        normalized, _, _ = normalize_rows(np.asarray(x, np.float64).reshape(case.num_groups, -1), case.eps)
    return _per_sample_factor(rng) * normalized.reshape(case.shape[1:])


def _grad_sparse(rng, case, x):
    values = rng.standard_normal(case.shape[1:])
    return np.where(rng.random(case.shape[1:]) < 0.05, values, 0.0)


def _grad_large(rng, case, x):
    scale = 1e3 if case.dtype == "float16" else SCALES[case.dtype][0]
    return scale * rng.standard_normal(case.shape[1:])


GRAD_DISTRIBUTIONS = {
    "normal": _grad_normal,
    "constant": _grad_constant,
    "xhat": _grad_xhat,
    "sparse": _grad_sparse,
    "large": _grad_large,
    "nan": _grad_normal,  # plus the NaN, placed by make_grad
}


def make_grad(case, x: np.ndarray) -> np.ndarray:
    """The incoming gradient of a backward or train case (x: its host input)."""
    dtype = numpy_dtype(case.dtype)
    grad_y = empty(case.shape, dtype, case.grad_layout or case.layout)
    generate = GRAD_DISTRIBUTIONS[case.grad_distribution]
    for n in range(case.shape[0]):
        values = generate(np.random.default_rng([case.seed, 2, n]), case, x[n])
        if case.grad_distribution == "nan" and n == 0 and values.size:
            groups = _group_view(values, case)
            groups[0, groups.shape[1] // 2] = np.nan
        with np.errstate(all="ignore"):
            grad_y[n] = values.astype(dtype)
    return grad_y


def empty(shape, dtype, layout: str) -> np.ndarray:
    """An uninitialized array of ``shape`` with the memory layout named."""
    if layout == "contiguous":
        return np.empty(shape, dtype)
    if layout == "channels_last":  # memory order N, *spatial, C
        order = (0, *range(2, len(shape)), 1)
        buffer = np.empty(tuple(shape[i] for i in order), dtype)
        return buffer.transpose(tuple(np.argsort(order)))
    if layout == "strided":  # every other element of a buffer twice as long
        return np.zeros(tuple(shape[:-1]) + (2 * shape[-1],), dtype)[..., 1::2]
    raise ValueError(f"layout must be contiguous, channels_last or strided; got {layout!r}")


def lay_out(values: np.ndarray, layout: str) -> np.ndarray:
    """The same logical array with the memory layout named (a view of a fresh buffer)."""
    out = empty(values.shape, values.dtype, layout)
    out[...] = values
    return out


def host_bytes(case) -> int:
    """Bytes of the laid-out input buffer of ``case`` (strided doubles the last dimension)."""
    return case.numel * numpy_dtype(case.dtype).itemsize * (2 if case.layout == "strided" else 1)


def make(case) -> Inputs:
    """The inputs of ``case``: deterministic in the case's fields (device aside)."""
    dtype = numpy_dtype(case.dtype)
    x = empty(case.shape, dtype, case.layout)
    generate = generator(case.distribution)
    for n in range(case.shape[0]):
        x[n] = generate(np.random.default_rng([case.seed, 0, n]), case, n).astype(dtype)
    channels = case.shape[1]
    param_dtype = numpy_dtype(case.param_dtype or case.dtype)
    grad_y = None if case.pass_ == "forward" else make_grad(case, x)
    if case.affine == "none":
        return Inputs(x, None, None, grad_y)
    if case.affine == "default":
        return Inputs(x, np.ones(channels, param_dtype), np.zeros(channels, param_dtype), grad_y)
    params = np.random.default_rng([case.seed, 1])
    weight = params.normal(1.0, 0.5, channels).astype(param_dtype)
    bias = params.normal(0.0, 1.0, channels).astype(param_dtype)
    if case.affine == "zero_weight":
        weight = np.zeros(channels, param_dtype)
    return Inputs(x, weight, bias, grad_y)
