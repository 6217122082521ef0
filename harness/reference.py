"""The oracle: GroupNorm in float64 NumPy, returning y, mean and rstd.

Statistics use the corrected two-pass algorithm (Chan, Golub & LeVeque 1983): the mean
is refined by the mean of the residuals, then the variance is the mean of squared
residuals: never E[x^2] - E[x]^2. NumPy's pairwise summation keeps the float64 error
near 1e-16 * log2(group size), far below any tolerance the harness applies. NaN and Inf
propagate as in IEEE arithmetic: a group holding one becomes NaN throughout.
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
    return Reference(y=np.array(y, dtype=np.float64), mean=mean.reshape(n, num_groups),
                     rstd=rstd.reshape(n, num_groups), normalized=normalized)
