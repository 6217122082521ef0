"""The oracle: GroupNorm and its gradients in float64 NumPy.

**Forward** (:func:`group_norm_reference`): y, mean and rstd. Statistics use the
corrected two-pass algorithm (Chan, Golub & LeVeque 1983): the mean is refined by the
mean of the residuals, then the variance is the mean of squared residuals: never
E[x^2] - E[x]^2. NumPy's pairwise summation keeps the float64 error
near 1e-16 * log2(group size), far below any tolerance the harness applies. NaN and Inf
propagate as in IEEE arithmetic: a group holding one becomes NaN throughout.

**Backward** (:func:`group_norm_backward_reference`): with ``xhat = (x - mu) * r`` over a
group of ``m`` elements (``r = 1 / sqrt(var + eps)``, the statistics of
:func:`normalize_rows`), ``y = xhat * w + b`` and an incoming gradient ``gy``, write ``g =
gy * w`` (w of each element's channel; 1 without a weight). Then, per group, with means over
its m elements::

    dx_i     = r * (g_i - mean(g) - xhat_i * mean(g * xhat))
    dweight_c = sum over the batch and the spatial positions of channel c of gy * xhat
    dbias_c   = sum over the same of gy

(the derivative of xhat through mu gives the mean(g) term, through r the
xhat * mean(g * xhat) term). ``tests/test_reference_backward.py`` checks these against
torch's float64 autograd, and torch's against finite differences (``gradcheck``). NaN and
Inf in x or gy propagate as in IEEE arithmetic: they spread over their group in dx and
over their channel in dweight/dbias.
"""

from __future__ import annotations

import dataclasses
import math
import warnings

import numpy as np


@dataclasses.dataclass(frozen=True)
class Reference:
    """Oracle output: y (float64, input shape), mean and rstd (float64, (N, G)),
    and normalized = (x - mean) * rstd before the affine (float64, input shape)."""

    y: np.ndarray
    mean: np.ndarray
    rstd: np.ndarray
    normalized: np.ndarray


def normalize_rows(rows: np.ndarray, eps: float):
    """Statistics of each row of a (groups, group_size) array, in float64.

    Returns (normalized rows, mean per row, rstd per row).
    """
    rows = np.asarray(rows, dtype=np.float64)
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore", RuntimeWarning)  # empty groups, NaN/Inf inputs
        mean = rows.mean(axis=1)
        mean = mean + (rows - mean[:, None]).mean(axis=1)
        residual = rows - mean[:, None]
        rstd = 1.0 / np.sqrt(np.square(residual).mean(axis=1) + eps)
        residual *= rstd[:, None]
    return residual, mean, rstd


def group_norm_reference(x, num_groups: int, weight=None, bias=None, eps: float = 1e-5) -> Reference:
    """GroupNorm of host array ``x`` (N, C, *) in float64, torch semantics.

    weight/bias are per-channel (length C) or None. Returns a :class:`Reference`.
    """
    x64 = np.asarray(x, dtype=np.float64)
    n, channels = x64.shape[:2]
    size = channels // num_groups * math.prod(x64.shape[2:])
    normalized, mean, rstd = normalize_rows(x64.reshape(n * num_groups, size), eps)
    normalized = normalized.reshape(x64.shape)
    broadcast = (1, channels) + (1,) * (x64.ndim - 2)
    y = normalized
    with np.errstate(all="ignore"):
        if weight is not None:
            y = y * np.asarray(weight, dtype=np.float64).reshape(broadcast)
        if bias is not None:
            y = y + np.asarray(bias, dtype=np.float64).reshape(broadcast)
    return Reference(
        y=np.array(y, dtype=np.float64),
        mean=mean.reshape(n, num_groups),
        rstd=rstd.reshape(n, num_groups),
        normalized=normalized,
    )


# -- backward ---------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class GradReference:
    """Oracle gradients (float64): grad_x of x's shape; grad_weight/grad_bias of length C,
    or None where the forward had no weight/bias. Also what the error model needs: the
    normalized input (x's shape), mean and rstd ((N, G)), and per group the means of
    |g|, |g * xhat| over its elements ((N, G); g = gy * w)."""

    grad_x: np.ndarray
    grad_weight: np.ndarray | None
    grad_bias: np.ndarray | None
    normalized: np.ndarray
    mean: np.ndarray
    rstd: np.ndarray
    mean_abs_g: np.ndarray
    mean_abs_g_xhat: np.ndarray


def group_norm_backward_reference(
    x, grad_y, num_groups: int, weight=None, bias=None, eps: float = 1e-5
) -> GradReference:
    """The gradients of GroupNorm of host array ``x`` (N, C, *) for the incoming
    gradient ``grad_y`` (x's shape), in float64, torch semantics. ``bias`` only decides
    whether a grad_bias exists (the gradients do not depend on its value)."""
    x64 = np.asarray(x, dtype=np.float64)
    gy = np.asarray(grad_y, dtype=np.float64)
    if gy.shape != x64.shape:
        raise ValueError(f"grad_y has shape {gy.shape}; it must have x's shape {x64.shape}")
    n, channels = x64.shape[:2]
    size = channels // num_groups * math.prod(x64.shape[2:])
    normalized, mean, rstd = normalize_rows(x64.reshape(n * num_groups, size), eps)
    broadcast = (1, channels) + (1,) * (x64.ndim - 2)
    w = np.ones(broadcast) if weight is None else np.asarray(weight, dtype=np.float64).reshape(broadcast)
    reduce = (0,) + tuple(range(2, x64.ndim))  # every axis but the channels
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore", RuntimeWarning)  # empty groups, NaN/Inf
        g = (gy * w).reshape(n * num_groups, size)
        g_xhat = g * normalized
        mean_g, mean_g_xhat = g.mean(axis=1), g_xhat.mean(axis=1)
        grad_x = rstd[:, None] * (g - mean_g[:, None] - normalized * mean_g_xhat[:, None])
        xhat = normalized.reshape(x64.shape)
        grad_weight = None if weight is None else (gy * xhat).sum(axis=reduce)  # empty: zeros
        grad_bias = None if bias is None else gy.sum(axis=reduce)
        mean_abs_g, mean_abs_g_xhat = np.abs(g).mean(axis=1), np.abs(g_xhat).mean(axis=1)
    return GradReference(
        grad_x=grad_x.reshape(x64.shape),
        grad_weight=grad_weight,
        grad_bias=grad_bias,
        normalized=xhat,
        mean=mean.reshape(n, num_groups),
        rstd=rstd.reshape(n, num_groups),
        mean_abs_g=mean_abs_g.reshape(n, num_groups),
        mean_abs_g_xhat=mean_abs_g_xhat.reshape(n, num_groups),
    )
