"""The error model of GroupNorm's backward: how far correct gradients may be from the
float64 oracle (:mod:`harness.reference_backward`).

Same method as the forward's (:mod:`harness.tolerances`: first-order error analysis,
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

The constants are the forward's (:mod:`harness.tolerances`), and this file was committed
before any deliberately broken backward was written.
"""

from __future__ import annotations

import math

import numpy as np

from backends.dtypes import accumulation_dtype, finfo

from .reference_backward import GradReference
from .tolerances import K_FUSED, K_OUTPUT, K_STATS, unit_roundoff


def _per_element(values, shape):
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
        r = _per_element(ref.rstd, shape)
        condition = 1.0 + _per_element(np.abs(ref.mean) * ref.rstd, shape)
        mean_g = _per_element(ref.mean_abs_g, shape)
        mean_g_xhat = _per_element(ref.mean_abs_g_xhat, shape)
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
