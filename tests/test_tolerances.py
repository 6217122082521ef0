"""The tolerance model: its formula, and that it grows where the error analysis says."""

import math

import numpy as np
import pytest

from harness.oracle.tolerances import K_FUSED, K_OUTPUT, K_STATS, tolerance, unit_roundoff


def _tol(dtype="float32", group_size=64, mean=0.0, rstd=1.0, xhat=1.0, weight=None, bias=None):
    normalized = np.full((1, 2, 3), xhat)
    return tolerance(dtype, normalized, np.array([[mean]]), np.array([[rstd]]), group_size, weight, bias)[0, 0, 0]


def test_unit_roundoffs():
    assert unit_roundoff("float16") == 2.0 ** -11
    assert unit_roundoff("bfloat16") == 2.0 ** -8
    assert unit_roundoff("float32") == 2.0 ** -24
    assert unit_roundoff("float64") == 2.0 ** -53


def test_formula_on_one_element():
    weight, bias = np.array([2.0, 1.0]), np.array([-0.5, 0.0])
    got = _tol("float16", group_size=100, mean=3.0, rstd=0.5, xhat=1.5, weight=weight, bias=bias)
    u_out, u_acc = 2.0 ** -11, 2.0 ** -24
    expected = (K_OUTPUT * u_out * (1.5 * 2 + 0.5)
                + (K_STATS * math.sqrt(100) + K_FUSED) * u_acc * 2 * (1 + 3.0 * 0.5 + 1.5)
                + 2.0 ** -14)  # float16's smallest normal
    assert got == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize("dtype", ["float16", "bfloat16", "float32", "float64"])
def test_grows_with_group_size(dtype):
    sizes = [1, 16, 1024, 2 ** 20]
    values = [_tol(dtype, group_size=m) for m in sizes]
    assert all(a < b for a, b in zip(values, values[1:]))


@pytest.mark.parametrize("dtype", ["float16", "bfloat16", "float32", "float64"])
def test_grows_with_mean_over_std(dtype):
    values = [_tol(dtype, mean=mean, rstd=1.0) for mean in (0.0, 10.0, 1e3, 1e5)]
    assert all(a < b for a, b in zip(values, values[1:]))


def test_half_statistics_are_held_to_float32_accumulation():
    """A float16 kernel is allowed float16 output rounding but float32 statistics."""
    big = _tol("float16", group_size=2 ** 20, mean=1e3, rstd=1.0, xhat=0.0)
    assert big < 2.0 ** -11 * 2 ** 10  # what float16 accumulation would need
