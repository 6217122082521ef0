"""The tolerance model: how far a correct GroupNorm may be from the float64 oracle.

One formula, per output element, from a first-order error analysis (Higham, *Accuracy
and Stability of Numerical Algorithms*, ch. 3-4). Write the operation as

    y = xhat * w + b,   xhat = (x - mu) * r,   r = 1 / sqrt(var + eps) = 1 / s

over a group of ``m`` elements. A correct implementation computes mu and var with some
accumulation precision (unit roundoff ``u_acc``: float32 for half inputs, as torch,
cuDNN and apex do; the input's own precision for float32 and float64) and rounds y to
the output dtype (unit roundoff ``u_out``).

* Output rounding: each rounding of a value of size |xhat*w| + |b| into the output dtype
  costs at most ``u_out * (|xhat*w| + |b|)``. We allow ``K_OUTPUT = 2`` of them (the
  product and the sum, or one cast after a wider computation).
* Statistics: a sum of m terms in precision u has a typical (not worst-case) error of
  ``u * sqrt(m)`` relative to the sum of magnitudes (random-walk model; the worst case
  ``m * u`` is never attained by blocked or pairwise sums). For the mean, the terms are
  of size |mu| + s, so the error is ``delta_mu ~ u_acc * sqrt(m) * (|mu| + s)``, and it
  reaches y multiplied by |w| * r: ``u_acc * sqrt(m) * |w| * (1 + |mu|/s)``. That is
  where the condition number ``|mu|/s`` (mean over standard deviation, eps included)
  enters: data far from zero with little spread is hard for everyone. The variance's
  relative error, of the same order, scales xhat: ``u_acc * sqrt(m) * |w| * |xhat|``.
  We allow ``K_STATS = 2`` times the sum of both.
* The affine in fused form, ``y = x * a + c`` with ``a = w * r`` and ``c = b - mu * a``
  (what torch's kernels evaluate), rounds three values of size up to
  ``|w| * (|mu|/s + |xhat|)`` in the accumulation precision whatever the group size:
  ``K_FUSED = 3`` more of ``u_acc * |w| * (1 + |mu|/s + |xhat|)``. It matters for tiny,
  ill-conditioned groups (torch's kernels reach 0.92 of the bound without it on
  3-element groups with |mu|/s near 1e6 in the adversarial suite).
* A floor of the output dtype's smallest normal number, for outputs that round to
  subnormals or flush to zero.

Hence, for element i of group (n, g) and channel c::

    tol_i = K_OUTPUT * u_out * (|xhat_i * w_c| + |b_c|)
          + (K_STATS * sqrt(m) + K_FUSED) * u_acc * |w_c| * (1 + |mu|/s + |xhat_i|)
          + tiny(out dtype)

It grows with the group size (sqrt(m)) and with |mu|/s, and for float16 output is about
2 * 2^-11 relative (torch.testing uses 1e-3 for float16), for bfloat16 2 * 2^-8 (torch
uses 1.6e-2). What it rejects: statistics accumulated in half precision (u_acc would be
2^-11, not 2^-24), E[x^2] - E[x]^2 (its error grows like (|mu|/s)^2, not |mu|/s), a
serial float32 sum stagnating over millions of elements, and every structural mistake.

The self-test (:mod:`harness.commands.selftest`) checks both sides of the model: every
planted bug fails it and every correct implementation stays within it.

## The backward

Same method as the forward's (first-order error analysis,
random-walk sums, the same constants), applied to each gradient. Notation, per group of
``m`` elements: ``xhat = (x - mu) * r``, ``s = 1 / r = sqrt(var + eps)``, ``g = gy * w``
(1 for w without a weight), ``u_acc`` the accumulation's unit roundoff (float32 for half
inputs), ``u_x`` grad_x's (x's dtype) and ``u_p`` the gradients of the parameters'
(the parameters' dtype). The exact gradients are::

    dx_i      = r * (g_i - mean(g) - xhat_i * mean(g * xhat))
    dweight_c = sum over N and space of channel c of gy * xhat          (M_c terms)
    dbias_c   = sum over the same of gy

**Why not relative to |expected|.** dx is a difference of terms that cancel: for a
constant gy, g_i = mean(g) and dx is exactly 0 while each term is r * |g|; for gy = c *
xhat, the third term cancels the first. A correct float32 kernel then returns values of
size u_acc * r * |g|, infinitely far from 0 in relative terms. The tolerance therefore
scales with the *magnitudes of the terms*, never with the result.

**grad_x.** Let ``A_i = r * (|g_i| + mean|g| + |xhat_i| * mean|g * xhat|)``: the sum of
the magnitudes of the three terms (the means taken of absolute values, so that a sum that
cancels to 0 still counts its terms). Error sources:

* rounding dx into x's dtype, and rounding the three terms and their sum: at most
  ``K_OUTPUT * u_x * A_i`` (as the forward's output rounding, on A_i instead of |y|);
* the two sums over the group, mean(g) and mean(g * xhat), each a random walk:
  ``u_acc * sqrt(m) * r * mean|g|`` and ``u_acc * sqrt(m) * r * |xhat_i| * mean|g * xhat|``,
  both below ``u_acc * sqrt(m) * A_i``;
* the statistics. xhat carries the forward's error ``u_acc * sqrt(m) * (1 + |mu|/s +
  |xhat|)`` (absolute; from mu and r), which reaches dx twice: in xhat_i times mean(g *
  xhat), ``r * mean|g * xhat| * (1 + |mu|/s + |xhat_i|)``, and inside the sum mean(g *
  xhat), times |xhat_i|: ``r * |xhat_i| * mean|g| * (1 + |mu|/s)`` (plus a mean|g * xhat|
  part already counted). Kernels that compute mean(g * xhat) as r * (mean(g * x) - mu *
  mean(g)) meet the same |mu|/s factor: data far from 0 with little spread is hard for
  the backward as for the forward. r's own relative error, ``u_acc * sqrt(m)``, scales all
  of dx: ``u_acc * sqrt(m) * A_i``.

As in the forward, the group terms get ``K_STATS * sqrt(m) + K_FUSED`` (K_FUSED for the
few roundings a fused kernel adds whatever the group size)::

    tol_dx_i = K_OUTPUT * u_x * A_i
             + (K_STATS * sqrt(m) + K_FUSED) * u_acc * (A_i + C_i)
             + tiny(x's dtype)
    C_i      = r * (mean|g * xhat| * (1 + |mu|/s + |xhat_i|) + |xhat_i| * mean|g| * (1 + |mu|/s))

**grad_weight and grad_bias.** Sums of M_c = N * (spatial size) terms, rounded into the
parameters' dtype. For dweight, the terms are gy * xhat with xhat's statistics error::

    tol_dweight_c = (K_OUTPUT * u_p + (K_STATS * sqrt(M_c) + K_FUSED) * u_acc) * S_c
                  + K_STATS * sqrt(m) * u_acc * R_c + tiny(parameters' dtype)
    S_c = sum |gy * xhat|,   R_c = sum |gy| * (1 + |mu|/s + |xhat|)   (over channel c)
    tol_dbias_c   = (K_OUTPUT * u_p + (K_STATS * sqrt(M_c) + K_FUSED) * u_acc) * sum |gy| + tiny

**What it rejects**, by construction: a dx without the mean(g) term (off by r * mean(g),
which for a constant gy is the whole A_i / 2, not a u-sized fraction of it); a dx
without the xhat * mean(g * xhat) term (off by |xhat_i| * r * mean|g * xhat| for gy =
c * xhat); a weight ignored in dx (off by a factor |w| - 1 on every term); dweight summed
per group instead of per channel, or dbias from sample 0 only (off by whole terms of
S_c); eps outside the square root (off by r * eps / 2 relative: caught where eps is
large relative to var, as in constant groups); dweight accumulated in half precision
(u_acc would be 2^-11, and the sqrt(M_c) walk over thousands of terms exceeds the bound).

The constants are the forward's.
"""

from __future__ import annotations

import math

import numpy as np

from backends.dtypes import accumulation_dtype, finfo

from .reference import GradReference

K_OUTPUT = 2.0
K_STATS = 2.0
K_FUSED = 3.0

_MANTISSA_BITS = {"float16": 11, "bfloat16": 8, "float32": 24, "float64": 53}


def unit_roundoff(dtype: str) -> float:
    """2^-p for a p-bit significand (float16 2^-11, bfloat16 2^-8, float32 2^-24, float64 2^-53)."""
    return 2.0 ** -_MANTISSA_BITS[dtype]


def tolerance_of(dtype: str, normalized, condition, weight_abs, bias_abs, group_size: int) -> np.ndarray:
    """The formula itself, on arrays broadcastable to ``normalized``'s shape.

    Args:
        dtype: input/output dtype name.
        normalized: oracle's (x - mean) * rstd, float64.
        condition: |mean| / s of each element's group (s = sqrt(var + eps)).
        weight_abs, bias_abs: |w| and |b| of each element's channel (1 and 0 without affine).
        group_size: m, the number of elements in one (sample, group).
    """
    u_out = unit_roundoff(dtype)
    u_acc = unit_roundoff(accumulation_dtype(dtype))
    with np.errstate(all="ignore"):
        magnitude = np.abs(normalized)
        output_term = K_OUTPUT * u_out * (magnitude * weight_abs + bias_abs)
        growth = K_STATS * math.sqrt(max(group_size, 1)) + K_FUSED
        stats_term = growth * u_acc * weight_abs * (1.0 + condition + magnitude)
        return output_term + stats_term + float(finfo(dtype).tiny)


def tolerance(dtype: str, normalized, mean, rstd, group_size: int, weight=None, bias=None) -> np.ndarray:
    """Per-element tolerance for a whole GroupNorm output (see the module docstring).

    Args:
        dtype: input/output dtype name.
        normalized: oracle's (x - mean) * rstd, float64, shape (N, C, *).
        mean, rstd: oracle statistics, float64, shape (N, G).
        group_size: m, the number of elements in one (sample, group).
        weight, bias: per-channel parameters (host arrays) or None.

    Returns:
        float64 array of the input's shape.
    """
    shape = normalized.shape
    n, channels = shape[:2]
    groups = mean.shape[1] if mean.ndim == 2 else 1
    spatial = (1,) * (len(shape) - 2)
    broadcast = (1, channels) + spatial
    w = np.ones(broadcast) if weight is None else np.abs(np.asarray(weight, np.float64)).reshape(broadcast)
    b = np.zeros(broadcast) if bias is None else np.abs(np.asarray(bias, np.float64)).reshape(broadcast)
    with np.errstate(all="ignore"):
        condition = np.repeat(np.abs(mean) * rstd, channels // max(groups, 1), axis=1).reshape((n, channels) + spatial)
    return tolerance_of(dtype, normalized, condition, w, b, group_size)


# -- backward ---------------------------------------------------------------------------
def _per_group_element(values, shape):
    """(N, G) group values repeated over each group's channels and spatial positions."""
    n, channels = shape[:2]
    groups = values.shape[1]
    spatial = (1,) * (len(shape) - 2)
    return np.repeat(values, channels // max(groups, 1), axis=1).reshape((n, channels) + spatial)


def tolerances(dtype: str, param_dtype: str, ref: GradReference, grad_y, weight=None) -> dict:
    """Per-element tolerances of each gradient (see the module docstring).

    Args:
        dtype: x's (and grad_y's, grad_x's) dtype name.
        param_dtype: the parameters' dtype name (grad_weight's and grad_bias's).
        ref: the oracle's gradients and statistics for these inputs.
        grad_y: the incoming gradient (host array of x's shape).
        weight: the per-channel weight (host array) or None.

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
        gy = np.abs(np.asarray(grad_y, np.float64))
        w = np.ones(broadcast) if weight is None else np.abs(np.asarray(weight, np.float64)).reshape(broadcast)
        r = _per_group_element(ref.rstd, shape)
        condition = 1.0 + _per_group_element(np.abs(ref.mean) * ref.rstd, shape)
        mean_g = _per_group_element(ref.mean_abs_g, shape)
        mean_g_xhat = _per_group_element(ref.mean_abs_g_xhat, shape)
        xhat = np.abs(ref.normalized)
        terms = r * (gy * w + mean_g + xhat * mean_g_xhat)  # A_i
        statistics = r * (mean_g_xhat * (condition + xhat) + xhat * mean_g * condition)  # C_i
        walk = K_STATS * math.sqrt(group_size) + K_FUSED
        grad_x = K_OUTPUT * u_x * terms + walk * u_acc * (terms + statistics) + float(finfo(dtype).tiny)
        per_channel = n * math.prod(shape[2:])  # M_c
        channel_walk = K_OUTPUT * u_p + (K_STATS * math.sqrt(per_channel) + K_FUSED) * u_acc
        tiny_p = float(finfo(param_dtype).tiny)
        grad_weight = grad_bias = None
        if ref.grad_weight is not None:
            spread = K_STATS * math.sqrt(group_size) * u_acc * (gy * (condition + xhat)).sum(axis=reduce)
            grad_weight = channel_walk * (gy * xhat).sum(axis=reduce) + spread + tiny_p
        if ref.grad_bias is not None:
            grad_bias = channel_walk * gy.sum(axis=reduce) + tiny_p
    return {"grad_x": grad_x, "grad_weight": grad_weight, "grad_bias": grad_bias}
