"""The float64 oracle against hand-computed values and torch's float64 GroupNorm."""

import math

import numpy as np
import pytest

from conftest import require
from harness.oracle.reference import group_norm_reference


def test_hand_computed_one_group():
    x = np.array([[[1.0, 2.0], [3.0, 4.0]]])  # (N=1, C=2, L=2), one group of 1, 2, 3, 4
    ref = group_norm_reference(x, 1, eps=0.0)
    assert ref.mean.tolist() == [[2.5]]
    assert ref.rstd[0, 0] == pytest.approx(1 / math.sqrt(1.25), rel=1e-15)
    expected = (np.array([1.0, 2.0, 3.0, 4.0]) - 2.5) / math.sqrt(1.25)
    np.testing.assert_allclose(ref.y.ravel(), expected, rtol=1e-15)


def test_hand_computed_two_groups_with_affine_and_eps():
    x = np.array([[[1.0, 2.0], [3.0, 5.0]]])  # groups {1, 2} and {3, 5}
    weight, bias, eps = np.array([2.0, -1.0]), np.array([0.5, 0.25]), 0.75
    ref = group_norm_reference(x, 2, weight, bias, eps)
    # group 0: mean 1.5, var 0.25 -> rstd 1;  group 1: mean 4, var 1 -> rstd 1/sqrt(1.75)
    np.testing.assert_allclose(ref.mean, [[1.5, 4.0]], rtol=1e-15)
    np.testing.assert_allclose(ref.rstd, [[1.0, 1 / math.sqrt(1.75)]], rtol=1e-15)
    r = 1 / math.sqrt(1.75)
    expected = [[[2 * -0.5 + 0.5, 2 * 0.5 + 0.5], [-1 * (-1 * r) + 0.25, -1 * (1 * r) + 0.25]]]
    np.testing.assert_allclose(ref.y, expected, rtol=1e-15)


def test_nan_and_inf_poison_their_group_only():
    x = np.arange(12, dtype=np.float64).reshape(1, 4, 3)
    x[0, 0, 0] = np.nan
    x[0, 3, 1] = np.inf
    ref = group_norm_reference(x, 4)
    assert np.isnan(ref.y[0, 0]).all() and np.isnan(ref.y[0, 3]).all()
    assert np.isfinite(ref.y[0, 1:3]).all()


def test_large_offset_keeps_full_precision():
    rng = np.random.default_rng(0)
    x = 1e8 + rng.standard_normal((1, 2, 4096))
    ref = group_norm_reference(x, 1, eps=0.0)
    exact = (x - x.mean()) / x.std()  # NumPy's own two-pass, the same math
    np.testing.assert_allclose(ref.y, exact, atol=1e-7)


@pytest.mark.parametrize("shape, groups", [
    ((2, 6, 5), 3), ((3, 8, 4, 4), 8), ((1, 12, 3, 2, 5), 1), ((4, 10), 5), ((2, 32, 17, 9), 32),
], ids=lambda v: "x".join(map(str, v)) if isinstance(v, tuple) else f"g{v}")
def test_matches_torch_float64(shape, groups):
    require("torch")
    import torch

    rng = np.random.default_rng(1)
    x = rng.standard_normal(shape) * 3 + 1
    weight, bias = rng.standard_normal(shape[1]), rng.standard_normal(shape[1])
    n, c = shape[:2]
    y, mean, rstd = torch.native_group_norm(
        torch.from_numpy(x), torch.from_numpy(weight), torch.from_numpy(bias),
        n, c, math.prod(shape[2:]), groups, 1e-5,
    )
    ref = group_norm_reference(x, groups, weight, bias, 1e-5)
    np.testing.assert_allclose(ref.y, y.numpy(), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(ref.mean, mean.numpy(), rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(ref.rstd, rstd.numpy(), rtol=1e-12)
