"""The tolerance model: how far a correct GroupNorm may be from the float64 oracle.

The acceptance policy it implements, the table of algorithms and data classes, and the
derivation with its sources (Higham, *Accuracy and Stability of Numerical Algorithms*,
2nd ed., ch. 4 and sec. 1.9; Chan, Golub & LeVeque 1983; Higham & Mary 2019) are in
``docs/tolerance.md``. In one line: a GroupNorm is accepted when its error is within
what an accepted algorithm in the accepted accumulation precision can make on that
input; accepted are every summation (serial chains of at most :data:`M_SERIAL` terms,
pairwise, blocked, Kahan, Welford, chunks merged by Chan's formula) of centred
statistics, in float32 or wider for half inputs and in the input's precision or wider
otherwise.

Notation, per group of ``m`` elements: ``xhat = (x - mu) * r``, ``s = 1 / r =
sqrt(var + eps)``, ``kappa = |mu| / s``, ``u_out`` the output dtype's unit roundoff,
``u_acc`` the accumulation's (float32 for half inputs), ``D`` the number of distinct
values among the summed terms.

**Growth of a sum's error**, :func:`growth`::

    G(m, D) = max(K_STATS * sqrt(m), (L / 2) * min(1, K_STATS / sqrt(D_L))) + K_FUSED
    L   = min(m, M_SERIAL) + ceil(m / M_SERIAL) - 1        the longest accepted chain
    D_L = min(D, L)

The first term is the probabilistic bound of Higham & Mary (independent rounding errors:
lambda * sqrt(m) * u, lambda = K_STATS). It is not a bound where errors correlate: a
chain adding the same value within one binade rounds the same way each time. The
second term covers that case: a chain of L terms taking D distinct values accumulates
D biases of at most L / D half-units each; at lambda standard deviations that is
L / sqrt(D) (K_STATS = 2), never more than the first-order worst case L / 2 of a serial
chain (Higham (4.3)). For data with distinct values (D = m) it is sqrt(L), below the
first term: the model of the first edition is unchanged there. Constant and quantised
data (D small) get the linear term. A serial chain over data far from 0 against their
spread (kappa u L above 1/16) errs linearly too, whatever D is: the policy rejects such
chains, and the model does not cover them (docs/tolerance.md).

**Forward**, per element::

    tol = K_OUTPUT * u_out * (|xhat * w| + |b|)
        + G(m, D_x) * u_acc * |w| * (1 + kappa + |xhat|)
        + |w| * |xhat| * min(1, (G(m, D_x) * u_acc * (1 + kappa))^2)
        + |w| * (|xhat| + G(m, D_x) * u_acc * (1 + kappa)) * (f - 1)
        + |w| * (S_x * (1 + kappa) + S_d * |xhat|)
    f = 1 / sqrt(max(1 - K_VAR * u_acc * kappa, eps / s^2))
        + tiny(out dtype)

The mean's error reaches y as |w| * delta_mu / s (relative to mean|x| <= |mu| + s: the
factor 1 + kappa); the variance's relative error scales xhat (the factor |xhat|);
K_FUSED covers the roundings of a fused affine ``y = x * a + (b - mu * a)`` whatever
the group size. The squared term is the mean's error entering the variance (a two-pass
variance is var + delta_mu^2: the n^2 kappa^2 u^2 term of Chan, Golub & LeVeque); it
matters only where G u kappa is not small (nearly constant data far from 0). With a
mean's error e (relative to s) the computed xhat is (xhat - e) / sqrt(1 + e^2): the
shift is in the first-order term, and the scale never errs by more than |xhat|, hence
the cap at 1. The last term is the updating algorithms' (Welford, Chan merges): their
variance errs by about K_VAR * u * kappa relative (not kappa^2 as one-pass does; Chan,
Golub & LeVeque), which scales the (shifted) xhat by up to f; where K_VAR * u * kappa
reaches 1 the variance can be lost altogether, var + eps falls to eps, and f is s /
sqrt(eps). Past that point (|mean|/std ~ 5e5 in float32) the input holds no digit of
the answer, and the bound says so by growing with f. ``S_x`` and ``S_d`` are the shares
of the group's values and squared deviations that a running sum can lose whole
(:func:`stalled`: terms below half a unit in the last place of the partial sum they
join, a bias rather than a random walk; one outlier among small deviations makes them).

**Backward** (same constants; ``g = grad_y * w``, ``A_i`` the sum of the magnitudes of
the three terms of dx, ``C_i`` what the statistics' error adds)::

    tol_dx_i = K_OUTPUT * u_x * A_i + G(m, D_g) * u_acc * (A_i + C_i) + r * E_i * E_g
             + (f^3 - 1) * A_i + (stalled shares, as in the forward) + tiny(x's dtype)
    A_i = r * (|g_i| + mean|g| + |xhat_i| * mean|g * xhat|)
    C_i = r * (mean|g * xhat| * (1 + kappa + |xhat_i|) + |xhat_i| * mean|g| * (1 + kappa))
    E_i = min(G(m, D_g) * u_acc * (1 + kappa + |xhat_i|), 1 + |xhat_i|)            xhat_i's error
    E_g = min(G(m, D_g) * u_acc * (1 + kappa), 1) * mean|g| + G(m, D_g) * u_acc * mean|g * xhat|
    tol_dweight_c = (K_OUTPUT * u_p + G(M_c, D_c) * u_acc) * sum |gy * xhat|
                  + u_acc * sum G(m, D_g) * |gy| * (1 + kappa + |xhat|) + sum (f - 1) |gy * xhat|
                  + (stalled shares) + tiny(parameters' dtype)
    tol_dbias_c   = (K_OUTPUT * u_p + G(M_c, D_c) * u_acc + S_gy) * sum |gy| + tiny

with ``D_g`` the fewest distinct values among the group's x, g and g * xhat, ``M_c`` the
N * spatial terms of channel c and ``D_c`` the fewest distinct values among its gy and
gy * xhat. The tolerance scales with the magnitudes of the terms that cancel, never with
the result (a constant gy makes the exact dx 0). The product ``r * E_i * E_g`` is the one
second-order term that matters: where r is large against the data (a constant group has
s = sqrt(eps)), xhat's error E_i is not small, and it enters dx squared through
xhat * mean(g * xhat) (a serial float32 sum of a constant group of 480 gives E_i = 0.05).

What falls outside, by construction: statistics accumulated in half precision (u_acc
2^-11 or 2^-8, not 2^-24), E[x^2] - E[x]^2 (error like kappa^2 * u), one serial chain over
more than M_SERIAL terms where its error grows past what blocked sums make, and every
structural slip (a term, element, parameter or eps misplaced). :func:`resemblance` names
the class a failure is closest to. The self-test checks both sides: every planted bug
fails, every member of the correct ensemble passes where the policy accepts it.
"""

from __future__ import annotations

import math

import numpy as np

from backends.dtypes import accumulation_dtype, finfo

from .reference import GradReference

K_OUTPUT = 2.0
K_STATS = 2.0
K_FUSED = 3.0
K_VAR = 32.0  # an updating (Welford, Chan-merge) variance errs by up to about K_VAR * u * kappa, relative
M_SERIAL = 2 ** 16  # the longest serial chain the policy accepts (docs/tolerance.md)

_MANTISSA_BITS = {"float16": 11, "bfloat16": 8, "float32": 24, "float64": 53}


def unit_roundoff(dtype: str) -> float:
    """2^-p for a p-bit significand (float16 2^-11, bfloat16 2^-8, float32 2^-24, float64 2^-53)."""
    return 2.0 ** -_MANTISSA_BITS[dtype]


def longest_chain(terms: int) -> int:
    """L: the most additions one accepted sum of ``terms`` terms puts in a row (a serial
    chain of at most M_SERIAL terms, then the chains' sums added one by one)."""
    terms = max(int(terms), 1)
    return min(terms, M_SERIAL) + -(-terms // M_SERIAL) - 1


def growth(terms: int, distinct=None):
    """G(m, D): how many unit roundoffs (relative to the terms' magnitudes) an accepted
    sum of ``terms`` terms taking ``distinct`` distinct values may err by, K_FUSED
    included (see the module docstring). ``distinct`` None means all distinct; an array
    gives an array."""
    m = max(int(terms), 1)
    chain = longest_chain(m)
    random = K_STATS * math.sqrt(m)
    if distinct is None:
        distinct = chain
    with np.errstate(all="ignore"):
        d = np.clip(np.asarray(distinct, np.float64), 1.0, chain)
        correlated = 0.5 * chain * np.minimum(1.0, K_STATS / np.sqrt(d))
        result = np.maximum(random, correlated) + K_FUSED
    return float(result) if np.ndim(result) == 0 else result


DISTINCT_SAMPLE = 2 ** 14  # values per row counted exactly; longer rows are sampled


def distinct_per_row(rows) -> np.ndarray:
    """The number of distinct values in each row of a 2-D array (NaNs each count).

    A row longer than :data:`DISTINCT_SAMPLE` is counted on an evenly strided sample of
    that many values: nearly all distinct there (9 in 10) counts as all distinct,
    otherwise the sample's count stands (at most the row's: a larger tolerance, never a
    smaller one). Sorting every value of a workload's billion-element tensor would cost
    the oracle minutes."""
    rows = np.asarray(rows)
    if rows.ndim != 2:
        raise ValueError(f"distinct_per_row takes a 2-D array, got shape {rows.shape}")
    length = rows.shape[1]
    if length <= 1:
        return np.full(rows.shape[0], float(length))
    sampled = length > DISTINCT_SAMPLE
    if sampled:
        rows = rows[:, np.linspace(0, length - 1, DISTINCT_SAMPLE).round().astype(np.int64)]
    ordered = np.sort(rows, axis=1)
    counted = 1.0 + np.count_nonzero(ordered[:, 1:] != ordered[:, :-1], axis=1)
    if sampled:
        counted = np.where(counted >= 0.9 * DISTINCT_SAMPLE, float(length), counted)
    return counted


def variance_scale(condition, u_acc: float, floor) -> np.ndarray:
    """f - 1, where f = 1 / sqrt(max(1 - rho, floor)) bounds how much a variance with a
    relative error rho = K_VAR * u_acc * kappa can scale xhat (and r): a relative error
    rho < 1 scales xhat by at most f; a variance lost altogether (rho >= 1) leaves
    var + eps >= eps, a scale of at most s / sqrt(eps) (``floor`` = eps / s^2; 0 when eps
    is not known: no bound then)."""
    with np.errstate(all="ignore"):
        rho = K_VAR * u_acc * condition
        return 1.0 / np.sqrt(np.maximum(1.0 - rho, floor)) - 1.0


def stalled(rows, u: float) -> np.ndarray:
    """Per row of terms, the share of their magnitude that a running sum can lose whole:
    the terms no larger than 2 u times the largest partial sum an accepted chain reaches
    (T L / m for T the sum of magnitudes and L the longest chain, at least the largest
    term). Added to a partial sum that large, each rounds away, always toward the partial
    sum: a bias, not a random walk. 0 where T is 0 or not finite."""
    rows = np.abs(np.asarray(rows, np.float64))
    if rows.ndim != 2 or rows.shape[1] == 0:
        return np.zeros(rows.shape[0] if rows.ndim else 1)
    with np.errstate(all="ignore"):
        total = rows.sum(axis=1, keepdims=True)
        reach = np.maximum(total * min(1.0, longest_chain(rows.shape[1]) / rows.shape[1]),
                           rows.max(axis=1, keepdims=True))
        lost = np.where(rows <= 2.0 * u * reach, rows, 0.0).sum(axis=1) / total[:, 0]
    return np.where(np.isfinite(lost), lost, 0.0)


def statistics_stall(normalized_rows, condition_signed_rows, u: float) -> tuple:
    """:func:`stalled` for the two sums of a two-pass, per row: (the values' share, x / s =
    mu / s + xhat: the mean's relative error; the squared deviations' share, xhat^2: the
    variance's)."""
    values = stalled(np.asarray(condition_signed_rows, np.float64) + normalized_rows, u)
    return values, stalled(np.square(normalized_rows), u)


def group_terms(dtype: str, normalized_rows, mean, rstd, eps=None) -> dict:
    """What the forward bound needs of each group, per row of ``normalized_rows`` (one
    group a row; ``mean``, ``rstd`` one value a row): ``condition`` |mean|/s, ``distinct``
    D, ``floor`` eps/s^2 (0 when eps is None), ``stall`` (S_x, S_d)."""
    mean, rstd = np.reshape(mean, -1), np.reshape(rstd, -1)
    with np.errstate(all="ignore"):
        signed = mean * rstd
        floor = 0.0 if eps is None else eps * np.square(rstd)
    u_acc = unit_roundoff(accumulation_dtype(dtype))
    return {"condition": np.abs(signed), "distinct": distinct_per_row(normalized_rows), "floor": floor,
            "stall": statistics_stall(normalized_rows, signed[:, None], u_acc)}


def tolerance_of(dtype: str, normalized, condition, weight_abs, bias_abs, group_size: int, distinct=None,
                 floor=0.0, stall=(0.0, 0.0)) -> np.ndarray:
    """The formula itself, on arrays broadcastable to ``normalized``'s shape.

    Args:
        dtype: input/output dtype name.
        normalized: oracle's (x - mean) * rstd, float64.
        condition: |mean| / s of each element's group (s = sqrt(var + eps)).
        weight_abs, bias_abs: |w| and |b| of each element's channel (1 and 0 without affine).
        group_size: m, the number of elements in one (sample, group).
        distinct: D, distinct values in each element's group (broadcastable); None: all distinct.
        floor: eps / s^2 of each element's group (eps * rstd^2), the least var + eps can
            fall to relative to its exact value; 0 (eps unknown) leaves a lost variance unbounded.
        stall: (mean's, variance's) share of each element's group that a running sum can
            lose (:func:`statistics_stall`, broadcastable; 0: none).
    """
    u_out = unit_roundoff(dtype)
    u_acc = unit_roundoff(accumulation_dtype(dtype))
    with np.errstate(all="ignore"):
        magnitude = np.abs(normalized)
        output_term = K_OUTPUT * u_out * (magnitude * weight_abs + bias_abs)
        walk = growth(group_size, distinct) * u_acc
        shift = walk * (1.0 + condition)  # E: the mean's error, relative to s
        stall_mean, stall_var = stall  # terms a running sum loses whole: the mean's error, the variance's
        stats_term = weight_abs * (shift + walk * magnitude + stall_mean * (1.0 + condition) + stall_var * magnitude)
        # second order: E enters the variance squared (var + E^2 s^2: Chan, Golub & LeVeque's
        # n^2 kappa^2 u^2 term), capped at 1: the computed xhat is (xhat - e) / sqrt(1 + e^2)
        second = weight_abs * magnitude * np.minimum(np.square(shift), 1.0)
        # a lost or inflated variance scales the shifted xhat: (|xhat| + E) * (f - 1)
        updating = weight_abs * (magnitude + shift) * variance_scale(condition, u_acc, floor)
        return output_term + stats_term + second + updating + float(finfo(dtype).tiny)


def tolerance(dtype: str, normalized, mean, rstd, group_size: int, weight=None, bias=None, *, eps=None) -> np.ndarray:
    """Per-element tolerance for a whole GroupNorm output (see the module docstring).

    Args:
        dtype: input/output dtype name.
        normalized: oracle's (x - mean) * rstd, float64, shape (N, C, *).
        mean, rstd: oracle statistics, float64, shape (N, G).
        group_size: m, the number of elements in one (sample, group).
        weight, bias: per-channel parameters (host arrays) or None.
        eps: the case's eps (bounds what a lost variance can do; None: unbounded there).

    Returns:
        float64 array of the input's shape. The distinct values of each group are counted
        in ``normalized`` (equal inputs normalize equally) when it holds N * G groups of
        ``group_size``; otherwise every value counts as distinct.
    """
    shape = normalized.shape
    n, channels = shape[:2]
    groups = mean.shape[1] if mean.ndim == 2 else 1
    spatial = (1,) * (len(shape) - 2)
    broadcast = (1, channels) + spatial
    w = np.ones(broadcast) if weight is None else np.abs(np.asarray(weight, np.float64)).reshape(broadcast)
    b = np.zeros(broadcast) if bias is None else np.abs(np.asarray(bias, np.float64)).reshape(broadcast)
    def spread(per_group):
        return per_group if np.ndim(per_group) == 0 else _per_group_element(per_group.reshape(n, groups), shape)

    distinct, stall = None, (0.0, 0.0)
    if normalized.size and normalized.size == n * groups * group_size:
        terms = group_terms(dtype, np.reshape(normalized, (n * groups, -1)), mean, rstd, eps)
        distinct, stall = spread(terms["distinct"]), tuple(map(spread, terms["stall"]))
    with np.errstate(all="ignore"):
        condition = spread(np.abs(mean) * rstd)
        floor = 0.0 if eps is None else spread(eps * np.square(rstd))
    return tolerance_of(dtype, normalized, condition, w, b, group_size, distinct, floor, stall)


def resemblance(dtype: str, ratio: float, group_size: int, distinct=None, condition: float = 0.0) -> str:
    """The rejected class of docs/tolerance.md a statistics error of ``ratio`` times the
    tolerance is closest to, as a phrase for a failure message ("" when ``ratio`` <= 1).
    The error is read as ``ratio * G`` unit roundoffs of the accumulation (exact where the
    statistics' term dominates the tolerance, as it does for float32 and float64)."""
    if not ratio > 1.0 or not math.isfinite(ratio):
        return ""
    accumulation = accumulation_dtype(dtype)
    u_acc = unit_roundoff(accumulation)
    m = max(int(group_size), 1)
    implied = ratio * growth(m, distinct)  # in u_acc * |w| * (1 + kappa + |xhat|)
    half = growth(m, distinct) * unit_roundoff(dtype)  # what a sum in the input's half precision errs by
    if dtype in ("float16", "bfloat16") and half / 8 <= implied * u_acc <= 4 * half:
        return (f"error consistent with statistics accumulated in {dtype} "
                f"(u = {unit_roundoff(dtype):.2g}, not {u_acc:.2g})")
    if m > M_SERIAL and implied <= 0.5 * m + K_FUSED:
        return (f"error consistent with one serial {accumulation} sum over {m:,} elements "
                f"(accepted chains hold at most {M_SERIAL:,} terms)")
    if condition > 1.0 and implied <= 8.0 * condition:
        return (f"error consistent with one-pass variance E[x^2] - E[x]^2 (error like (|mean|/std)^2 * u; "
                f"|mean|/std = {condition:.3g} here)")
    return f"error beyond any accepted sum in {accumulation} on this input: a structural slip, not rounding"


# -- backward ---------------------------------------------------------------------------
def _per_group_element(values, shape):
    """(N, G) group values repeated over each group's channels and spatial positions."""
    n, channels = shape[:2]
    groups = values.shape[1]
    spatial = (1,) * (len(shape) - 2)
    return np.repeat(values, channels // max(groups, 1), axis=1).reshape((n, channels) + spatial)


def tolerances(dtype: str, param_dtype: str, ref: GradReference, grad_y, weight=None, *, eps=None) -> dict:
    """Per-element tolerances of each gradient (see the module docstring).

    Args:
        dtype: x's (and grad_y's, grad_x's) dtype name.
        param_dtype: the parameters' dtype name (grad_weight's and grad_bias's).
        ref: the oracle's gradients and statistics for these inputs.
        grad_y: the incoming gradient (host array of x's shape).
        weight: the per-channel weight (host array) or None.
        eps: the case's eps (bounds what a lost variance can do; None: unbounded there).

    Returns:
        {"grad_x": array of x's shape, "grad_weight": (C,) or None, "grad_bias": (C,) or None}.
    """
    shape = ref.normalized.shape
    n, channels = shape[:2]
    groups = ref.mean.shape[1]
    group_size = channels // max(groups, 1) * math.prod(shape[2:])
    broadcast = (1, channels) + (1,) * (len(shape) - 2)
    u_x, u_p = unit_roundoff(dtype), unit_roundoff(param_dtype)
    u_acc = unit_roundoff(accumulation_dtype(dtype))
    reduce = (0,) + tuple(range(2, len(shape)))
    with np.errstate(all="ignore"):
        gy_signed = np.asarray(grad_y, np.float64)
        gy = np.abs(gy_signed)
        w = np.ones(broadcast) if weight is None else np.abs(np.asarray(weight, np.float64)).reshape(broadcast)
        r = _per_group_element(ref.rstd, shape)
        condition = 1.0 + _per_group_element(np.abs(ref.mean) * ref.rstd, shape)
        mean_g = _per_group_element(ref.mean_abs_g, shape)
        mean_g_xhat = _per_group_element(ref.mean_abs_g_xhat, shape)
        xhat = np.abs(ref.normalized)
        terms = r * (gy * w + mean_g + xhat * mean_g_xhat)  # A_i
        statistics = r * (mean_g_xhat * (condition + xhat) + xhat * mean_g * condition)  # C_i
        walk, lost_sums, lost_stats = _group_growth(ref.normalized, gy_signed, weight, groups, group_size,
                                                    ref.mean * ref.rstd, u_acc)
        # second order: xhat's own error E_i = G u (1 + kappa + |xhat_i|) times the error it
        # puts into mean(g * xhat); not small where r is large against the data (constant groups)
        shift = np.minimum(walk * u_acc * (condition + xhat), 1.0 + xhat)  # a computed |xhat| stays below 1 + |xhat|
        second = r * shift * (np.minimum(walk * u_acc * condition, 1.0) * mean_g + walk * u_acc * mean_g_xhat)
        floor = 0.0 if eps is None else _per_group_element(eps * np.square(ref.rstd), shape)
        scale = variance_scale(condition - 1.0, u_acc, floor)  # r, xhat and xhat^2 scale by f, f, f^2
        # terms a running sum loses whole: of the group sums (relative to r * the terms' means), and
        # of the forward's statistics (xhat's error, as in the forward's tolerance)
        stall_mean, stall_var = lost_stats
        xhat_error = stall_mean * condition + stall_var * (1.0 + xhat)
        stalls = r * (lost_sums * (mean_g + xhat * mean_g_xhat) + (mean_g_xhat + xhat * mean_g) * xhat_error)
        grad_x = (K_OUTPUT * u_x * terms + walk * u_acc * (terms + statistics) + second + stalls
                  + (np.power(1.0 + scale, 3) - 1.0) * terms + float(finfo(dtype).tiny))
        per_channel = n * math.prod(shape[2:])  # M_c
        tiny_p = float(finfo(param_dtype).tiny)
        grad_weight = grad_bias = None
        if ref.grad_weight is not None or ref.grad_bias is not None:
            by_channel = _by_channel(gy_signed)
            gy_distinct = distinct_per_row(by_channel) if per_channel else np.ones(channels)
        if ref.grad_weight is not None:
            products = distinct_per_row(_by_channel(gy_signed * ref.normalized)) if per_channel else gy_distinct
            stall = np.maximum(stalled(by_channel, u_acc), stalled(_by_channel(gy_signed * ref.normalized), u_acc))
            channel_walk = (K_OUTPUT * u_p + growth(per_channel, np.minimum(gy_distinct, products)) * u_acc
                            + stall)
            spread = (((walk - K_FUSED) * u_acc) * gy * (condition + xhat) + gy * xhat_error).sum(axis=reduce)
            scaled = (scale * gy * xhat).sum(axis=reduce)  # a lost or inflated variance scales xhat
            grad_weight = channel_walk * (gy * xhat).sum(axis=reduce) + spread + scaled + tiny_p
        if ref.grad_bias is not None:
            channel_walk = K_OUTPUT * u_p + growth(per_channel, gy_distinct) * u_acc + stalled(by_channel, u_acc)
            grad_bias = channel_walk * gy.sum(axis=reduce) + tiny_p
    return {"grad_x": grad_x, "grad_weight": grad_weight, "grad_bias": grad_bias}


def _by_channel(values) -> np.ndarray:
    """(N, C, *) as (C, N * spatial): each channel's terms in a row."""
    return np.moveaxis(values, 1, 0).reshape(values.shape[1], -1)


def _group_growth(normalized, grad_y, weight, groups: int, group_size: int, signed_condition, u: float):
    """Per element: G(m, D_g), D_g the fewest distinct values among the group's x (its
    xhat), g = grad_y * w and g * xhat (the terms of the backward's group sums); the share
    of those group sums a running sum can lose (:func:`stalled`); and the forward
    statistics' (mean's, variance's) shares."""
    shape = normalized.shape
    n, channels = shape[:2]
    if normalized.size == 0:
        return np.full(shape, growth(group_size)), 0.0, (0.0, 0.0)
    broadcast = (1, channels) + (1,) * (len(shape) - 2)
    g = grad_y if weight is None else grad_y * np.asarray(weight, np.float64).reshape(broadcast)
    fewest = None
    for values in (normalized, g, g * normalized):
        counted = distinct_per_row(np.reshape(values, (n * groups, -1)))
        fewest = counted if fewest is None else np.minimum(fewest, counted)
    rows = np.reshape(normalized, (n * groups, -1))
    stats = statistics_stall(rows, np.reshape(signed_condition, (-1, 1)), u)
    sums = np.maximum(*(stalled(np.reshape(values, (n * groups, -1)), u) for values in (g, g * normalized)))

    def spread(values):
        return _per_group_element(values.reshape(n, groups), shape)

    return spread(growth(group_size, fewest)), spread(sums), tuple(spread(share) for share in stats)
