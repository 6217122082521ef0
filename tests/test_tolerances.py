"""The tolerance model: its formula, and that it grows where the error analysis says."""

import math

import numpy as np
import pytest

from harness.oracle.tolerances import (
    K_FUSED,
    K_OUTPUT,
    K_STATS,
    K_VAR,
    M_SERIAL,
    distinct_per_row,
    growth,
    resemblance,
    tolerance,
    unit_roundoff,
)


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
    kappa = 3.0 * 0.5
    walk = (K_STATS * math.sqrt(100) + K_FUSED) * u_acc  # 100 distinct values: the random-walk regime
    f = 1 / math.sqrt(1 - K_VAR * u_acc * kappa)  # eps unknown: no floor
    expected = (K_OUTPUT * u_out * (1.5 * 2 + 0.5)
                + walk * 2 * (1 + kappa + 1.5)
                + 2 * 1.5 * (walk * (1 + kappa)) ** 2  # the mean's error in the variance
                + 2 * (1.5 + walk * (1 + kappa)) * (f - 1)  # an updating variance's error
                + 2.0 ** -14)  # float16's smallest normal
    assert got == pytest.approx(expected, rel=1e-12)


def test_growth_is_the_random_walk_for_distinct_values_and_linear_for_repeated_ones():
    m = 480
    assert growth(m) == pytest.approx(K_STATS * math.sqrt(m) + K_FUSED)
    assert growth(m, m) == growth(m)
    assert growth(m, 1) == pytest.approx(m / 2 + K_FUSED)  # a constant group: the serial worst case, first order
    assert growth(m, 4) == pytest.approx(m / 2 + K_FUSED)  # too few values for the biases to cancel
    assert growth(m, 4) > growth(m, 100) > growth(m, m)
    # a serial chain never holds more than M_SERIAL terms: past it the linear term stops growing
    assert growth(4 * M_SERIAL, 1) == pytest.approx((M_SERIAL + 3) / 2 + K_FUSED)


def test_distinct_values_are_counted_per_row():
    rows = np.array([[1.0, 1.0, 1.0], [1.0, 2.0, 1.0], [3.0, 2.0, 1.0]])
    assert distinct_per_row(rows).tolist() == [1, 2, 3]


def test_a_constant_group_is_allowed_the_linear_error_of_a_serial_sum():
    """A constant group of 480 (serial float32 two-pass errs by ~0.23 m u on its mean)."""
    m, c, eps = 480, 7.3, 1e-5
    normalized = np.zeros((1, 4, m // 4))
    rstd = np.array([[1 / math.sqrt(eps)]])
    constant = tolerance("float32", normalized, np.array([[c]]), rstd, m, eps=eps)[0, 0, 0]
    varied = tolerance("float32", normalized + np.arange(m // 4) * 1e-3, np.array([[c]]), rstd, m, eps=eps)[0, 0, 0]
    serial_error = 0.23 * m * 2.0 ** -24 * c * rstd[0, 0]  # measured: the mean's error, in xhat units
    assert constant > 2 * serial_error > varied


def test_a_lost_variance_is_bounded_by_eps():
    """Where K_VAR * u * kappa >= 1 the variance may vanish: xhat can grow by s / sqrt(eps), no more."""
    eps, var, mean = 1e-3, 0.25, 1e7
    s = math.sqrt(var + eps)
    bounded = tolerance("float32", np.ones((1, 1, 2)), np.array([[mean]]), np.array([[1 / s]]), 2, eps=eps)[0, 0, 0]
    assert s / math.sqrt(eps) < bounded < np.inf
    assert tolerance("float32", np.ones((1, 1, 2)), np.array([[mean]]), np.array([[1 / s]]), 2)[0, 0, 0] == np.inf


@pytest.mark.parametrize("ratio, m, kappa, phrase", [
    (3.0, 1_179_648, 1e3, "serial float32 sum over 1,179,648"),
    (3e3, 100, 1e4, "one-pass variance"),
    (1e9, 100, 1.0, "structural slip"),
], ids=["huge-serial", "one-pass", "structural"])
def test_a_failure_names_the_class_it_resembles(ratio, m, kappa, phrase):
    assert phrase in resemblance("float32", ratio, m, None, kappa)
    assert resemblance("float32", 0.9, m, None, kappa) == ""


def test_a_half_accumulation_error_is_named():
    assert "accumulated in float16" in resemblance("float16", 3e3, 64, None, 0.5)


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


def test_terms_a_running_sum_can_lose_whole_are_counted():
    """One outlier among 5,069 small squared deviations: the small ones can all round away."""
    from harness.oracle.tolerances import stalled

    rows = np.concatenate([np.full((1, 5069), 1.0), np.array([[1e8]])], axis=1)
    share = stalled(rows, 2.0 ** -24)[0]
    assert share == pytest.approx(5069 / (1e8 + 5069))
    assert stalled(np.ones((1, 5070)), 2.0 ** -24)[0] == 0.0  # equal terms: none is below the partial sums' last place


def test_long_rows_are_counted_on_a_sample():
    from harness.oracle.tolerances import DISTINCT_SAMPLE

    m = 4 * DISTINCT_SAMPLE
    rng = np.random.default_rng(0)
    assert distinct_per_row(rng.standard_normal((1, m)))[0] == m  # all distinct
    assert distinct_per_row(rng.integers(0, 7, (1, m)).astype(float))[0] == 7  # quantised: the exact count
