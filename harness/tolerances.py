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
  ill-conditioned groups (torch reached 0.92 of the bound without it on 3-element groups
  with |mu|/s near 1e6 in the adversarial suite; this term was added then, after the
  planted bugs, and the self-test rerun: every bug is still caught).
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

The constants were fixed, and this file committed, before any deliberately broken
backend was written.
"""

from __future__ import annotations

import math

import numpy as np

from backends.dtypes import accumulation_dtype, finfo

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
