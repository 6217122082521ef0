"""The backward oracle's closed form against torch's float64 autograd and against finite
differences of the forward oracle; the backward error model against torch's own
gradients in every dtype, including the inputs where the exact dx cancels to 0."""

import numpy as np
import pytest

from harness.oracle.reference import group_norm_backward_reference, group_norm_reference
from harness.oracle.tolerances import tolerances

torch = pytest.importorskip("torch", reason="torch is the independent check: pip install 'groupnorm-bench[torch]'")

SHAPES = [  # (shape, groups): ranks 2 to 5, groups of one element, one group, many groups
    ((3, 6), 3), ((2, 6), 6), ((2, 8, 5), 4), ((2, 12, 5, 7), 3), ((1, 4, 3, 2, 3), 2), ((2, 4, 3, 3), 1),
    ((0, 4, 3), 2),
]
IDS = ["rank2", "one-element-groups", "rank3", "rank4", "rank5", "one-group", "empty-batch"]


def _inputs(shape, seed=0, affine=True, grad="normal"):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(shape) * 2 + 0.5
    c = shape[1]
    weight = rng.standard_normal(c) if affine else None
    bias = rng.standard_normal(c) if affine else None
    gy = {"normal": lambda: rng.standard_normal(shape), "constant": lambda: np.full(shape, 0.75)}[grad]()
    return x, weight, bias, gy


def _torch_grads(x, weight, bias, gy, groups, dtype=torch.float64, eps=1e-5):
    xt = torch.tensor(x, dtype=dtype, requires_grad=True)
    wt = None if weight is None else torch.tensor(weight, dtype=dtype, requires_grad=True)
    bt = None if bias is None else torch.tensor(bias, dtype=dtype, requires_grad=True)
    y = torch.nn.functional.group_norm(xt, groups, wt, bt, eps)
    y.backward(torch.tensor(gy, dtype=dtype))
    grads = [xt.grad] + [None if t is None else t.grad for t in (wt, bt)]
    return [None if g is None else g.double().numpy() for g in grads]


@pytest.mark.parametrize("affine", [True, False], ids=["affine", "no-affine"])
@pytest.mark.parametrize("shape, groups", SHAPES, ids=IDS)
def test_closed_form_matches_torch_float64_autograd(shape, groups, affine):
    x, weight, bias, gy = _inputs(shape, affine=affine)
    ref = group_norm_backward_reference(x, gy, groups, weight, bias)
    dx, dw, db = _torch_grads(x, weight, bias, gy, groups)
    np.testing.assert_allclose(ref.grad_x, dx, rtol=1e-9, atol=1e-12)
    if affine:
        np.testing.assert_allclose(ref.grad_weight, dw, rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(ref.grad_bias, db, rtol=1e-9, atol=1e-12)
    else:
        assert ref.grad_weight is None and ref.grad_bias is None


@pytest.mark.parametrize("shape, groups", [((2, 6, 3), 3), ((1, 4, 2, 3), 2), ((3, 2), 1)], ids=str)
def test_closed_form_matches_finite_differences_of_the_forward_oracle(shape, groups):
    """Independent of torch: d/dtheta of sum(gy * y) by central differences of the forward oracle."""
    x, weight, bias, gy = _inputs(shape, seed=3)
    ref = group_norm_backward_reference(x, gy, groups, weight, bias)

    def loss(x_, w_, b_):
        return float((gy * group_norm_reference(x_, groups, w_, b_).y).sum())

    h = 1e-6
    for name, array, expected in (("x", x, ref.grad_x), ("weight", weight, ref.grad_weight),
                                  ("bias", bias, ref.grad_bias)):
        numeric = np.zeros_like(array)
        for index in np.ndindex(array.shape):
            plus, minus = array.copy(), array.copy()
            plus[index] += h
            minus[index] -= h
            args = {"x": (x, weight, bias), "weight": (x, weight, bias), "bias": (x, weight, bias)}[name]
            up = [plus if a is array else a for a in args]
            down = [minus if a is array else a for a in args]
            numeric[index] = (loss(*up) - loss(*down)) / (2 * h)
        np.testing.assert_allclose(expected, numeric, rtol=1e-5, atol=1e-6, err_msg=name)


def test_torch_autograd_passes_gradcheck():
    """The float64 autograd the closed form is compared with is itself right."""
    x = torch.randn(2, 6, 3, 2, dtype=torch.float64, requires_grad=True)
    weight = torch.randn(6, dtype=torch.float64, requires_grad=True)
    bias = torch.randn(6, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda a, w, b: torch.nn.functional.group_norm(a, 3, w, b, 1e-5),
                                    (x, weight, bias))


def test_nan_in_grad_y_spreads_over_its_group_and_channel():
    x, weight, bias, gy = _inputs((2, 6, 4), seed=1)
    gy[1, 2, 3] = np.nan
    ref = group_norm_backward_reference(x, gy, 3, weight, bias)
    nan = np.isnan(ref.grad_x)
    assert nan[1, 2:4].all() and nan.sum() == 2 * 4  # sample 1, group 1 (channels 2 and 3)
    assert np.isnan(ref.grad_weight).tolist() == [False, False, True, False, False, False]
    assert np.isnan(ref.grad_bias).tolist() == [False, False, True, False, False, False]


# -- the error model against torch's real gradients -------------------------------------------

DTYPES = {"float16": torch.float16, "bfloat16": torch.bfloat16, "float32": torch.float32, "float64": torch.float64}


def _ratio(got, expected, tol):
    return float(np.max(np.abs(got - expected) / tol)) if np.size(expected) else 0.0


@pytest.mark.parametrize("grad", ["normal", "constant", "multiple-of-xhat"])
@pytest.mark.parametrize("dtype", list(DTYPES))
@pytest.mark.parametrize("shape, groups", [((2, 12, 5, 7), 3), ((2, 64, 16, 16), 8), ((4, 6, 1), 3)],
                         ids=["small", "groups-of-2048", "groups-of-2"])
def test_torch_gradients_are_within_the_error_model(shape, groups, dtype, grad):
    """Including the cancelling inputs: a constant grad_y and grad_y = 3 * xhat make the
    exact dx 0 (the first) and remove its x-dependent part (the second)."""
    x, weight, bias, gy = _inputs(shape, seed=2, grad="constant" if grad == "constant" else "normal")
    if grad == "constant":
        weight = np.ones_like(weight)  # g = grad_y * w constant over each group: the exact dx is 0
    cast = lambda a: None if a is None else torch.tensor(a).to(DTYPES[dtype]).double().numpy()  # noqa: E731
    x, gy = cast(x), cast(gy)
    param = "float32" if dtype in ("float16", "bfloat16") else dtype  # torch's mixed-precision convention
    weight, bias = (torch.tensor(a).to(DTYPES[param]).double().numpy() for a in (weight, bias))
    if grad == "multiple-of-xhat":
        gy = cast(3 * group_norm_reference(x, groups).normalized)
    ref = group_norm_backward_reference(x, gy, groups, weight, bias)
    tol = tolerances(dtype, param, ref, gy, weight)
    xt = torch.tensor(x).to(DTYPES[dtype]).requires_grad_()
    wt = torch.tensor(weight).to(DTYPES[param]).requires_grad_()
    bt = torch.tensor(bias).to(DTYPES[param]).requires_grad_()
    torch.nn.functional.group_norm(xt, groups, wt, bt, 1e-5).backward(torch.tensor(gy).to(DTYPES[dtype]))
    assert xt.grad.dtype == DTYPES[dtype] and wt.grad.dtype == DTYPES[param]
    ratios = {"grad_x": _ratio(xt.grad.double().numpy(), ref.grad_x, tol["grad_x"]),
              "grad_weight": _ratio(wt.grad.double().numpy(), ref.grad_weight, tol["grad_weight"]),
              "grad_bias": _ratio(bt.grad.double().numpy(), ref.grad_bias, tol["grad_bias"])}
    assert max(ratios.values()) <= 1, ratios


def test_the_model_scales_with_the_terms_not_the_result():
    """For a constant grad_y (no affine: g = grad_y) the exact dx is 0; its tolerance is
    still a small fraction of the terms that cancel, u-sized, never 0 and never of the
    terms' own size."""
    x, weight, bias, gy = _inputs((2, 12, 5, 7), affine=False, grad="constant")
    ref = group_norm_backward_reference(x, gy, 3, weight, bias)
    tol = tolerances("float32", "float32", ref, gy, weight)["grad_x"]
    assert np.abs(ref.grad_x).max() < 1e-12
    scale = np.repeat(ref.rstd, 4, axis=1)[:, :, None, None] * np.abs(gy)
    assert (tol > 1e-8 * scale).all() and (tol < 1e-4 * scale).all()


def test_dropping_the_mean_term_is_far_outside_the_model():
    """The model's main promise: a dx without mean(g) fails by orders of magnitude."""
    x, weight, bias, gy = _inputs((2, 12, 5, 7), affine=False, grad="constant")
    ref = group_norm_backward_reference(x, gy, 3, weight, bias)
    tol = tolerances("float32", "float32", ref, gy, weight)["grad_x"]
    g = gy
    r = np.repeat(ref.rstd, 4, axis=1)[:, :, None, None]
    without_mean = ref.grad_x + r * g.reshape(2, 3, -1).mean(axis=2).repeat(4, axis=1)[:, :, None, None]
    assert _ratio(without_mean, ref.grad_x, tol) > 1e3
