"""The training contract (``forward_train`` -> ``backward``) of the backends that have it,
judged by the backward oracle and error model; and its defaults and argument checks."""

import numpy as np
import pytest

import backends
from backends.base import BackwardUnsupportedError, Saved
from backends.errors import InvalidArgumentError, InvalidTypeError
from conftest import plain_group_norm, require
from harness.oracle.reference import group_norm_backward_reference
from harness.oracle.tolerances import tolerances

ml_dtypes = pytest.importorskip("ml_dtypes")

TRAINING = ["numpy", "torch", "jax", "numba-cpu"]
DTYPES = ["float16", "bfloat16", "float32", "float64"]
AFFINES = {"affine": (True, True), "weight-only": (True, False), "none": (False, False)}


def _host(dtype):
    return ml_dtypes.bfloat16 if dtype == "bfloat16" else np.dtype(dtype)


def _channels_last(array):
    """The same values, laid out channels-last (C the fastest axis)."""
    moved = np.ascontiguousarray(np.moveaxis(array, 1, -1))
    return np.moveaxis(moved, -1, 1)


def _run(name, dtype, shape, groups, affine, grad_layout="contiguous", seed=0):
    backend = require(name)
    rng = np.random.default_rng(seed)
    param_dtype = "float32" if dtype in ("float16", "bfloat16") else dtype
    x = (rng.standard_normal(shape) * 1.5 + 0.25).astype(_host(dtype))
    gy = rng.standard_normal(shape).astype(_host(dtype))
    if grad_layout == "channels_last":
        gy = _channels_last(gy)
    has_weight, has_bias = AFFINES[affine]
    weight = rng.standard_normal(shape[1]).astype(param_dtype) if has_weight else None
    bias = rng.standard_normal(shape[1]).astype(param_dtype) if has_bias else None
    on = [None if a is None else backend.from_numpy(a, "cpu") for a in (x, gy, weight, bias)]
    y, saved = backend.forward_train(on[0], groups, on[2], on[3], 1e-5)
    grads = backend.backward(on[1], saved)
    again = backend.backward(on[1], saved)
    host = [None if a is None else np.asarray(a).astype(np.float64) for a in (x, gy, weight, bias)]
    ref = group_norm_backward_reference(host[0], host[1], groups, host[2], host[3])
    tol = tolerances(dtype, param_dtype, ref, host[1], host[2])
    inputs_after = [None if a is None else backend.to_numpy(a) for a in on]
    return dict(backend=backend, inputs=(x, gy, weight, bias), inputs_after=inputs_after, y=y, grads=grads,
                again=again, ref=ref, tol=tol, param_dtype=param_dtype)


@pytest.mark.parametrize("affine", list(AFFINES))
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", TRAINING)
def test_gradients_are_within_the_error_model(name, dtype, affine):
    run = _run(name, dtype, (2, 12, 5, 7), 3, affine)
    backend, ref, tol = run["backend"], run["ref"], run["tol"]
    grad_x, grad_weight, grad_bias = (None if g is None else backend.to_numpy(g) for g in run["grads"])
    assert grad_x.dtype == _host(dtype) and grad_x.shape == (2, 12, 5, 7)
    ratio = np.max(np.abs(grad_x.astype(np.float64) - ref.grad_x) / tol["grad_x"])
    assert ratio <= 1, f"grad_x ratio {ratio}"
    for got, expected, bound, present in ((grad_weight, ref.grad_weight, tol["grad_weight"], AFFINES[affine][0]),
                                          (grad_bias, ref.grad_bias, tol["grad_bias"], AFFINES[affine][1])):
        if not present:
            assert got is None
            continue
        assert got.dtype == np.dtype(run["param_dtype"]) and got.shape == (12,)
        assert np.max(np.abs(got.astype(np.float64) - expected) / bound) <= 1


@pytest.mark.parametrize("name", ["numpy", "torch", "numba-cpu"])
def test_grad_y_may_be_channels_last_independently_of_x(name):
    run = _run(name, "float32", (2, 12, 5, 7), 3, "affine", grad_layout="channels_last")
    grad_x = run["backend"].to_numpy(run["grads"][0])
    assert np.max(np.abs(grad_x - run["ref"].grad_x) / run["tol"]["grad_x"]) <= 1


@pytest.mark.parametrize("name", TRAINING)
def test_backward_modifies_nothing_aliases_nothing_and_repeats_bit_for_bit(name):
    run = _run(name, "float32", (2, 6, 4, 4), 3, "affine")
    backend = run["backend"]
    for before, after in zip(run["inputs"], run["inputs_after"]):
        assert np.array_equal(np.asarray(before).view(np.uint8), np.asarray(after).view(np.uint8))
    first = [backend.to_numpy(g) for g in run["grads"]]
    second = [backend.to_numpy(g) for g in run["again"]]
    assert all(np.array_equal(a.view(np.uint8), b.view(np.uint8)) for a, b in zip(first, second))
    gy = run["inputs_after"][1]
    assert not any(np.shares_memory(np.asarray(g), gy) for g in first if name in ("numpy", "numba-cpu"))


@pytest.mark.parametrize("name", TRAINING)
def test_an_empty_batch_has_zero_gradients_of_the_right_shapes(name):
    backend = require(name)
    x = np.zeros((0, 4, 3), np.float32)
    weight, bias = np.ones(4, np.float32), np.zeros(4, np.float32)
    _, saved = backend.forward_train(backend.from_numpy(x, "cpu"), 2, backend.from_numpy(weight, "cpu"),
                                     backend.from_numpy(bias, "cpu"))
    grads = [backend.to_numpy(g) for g in backend.backward(backend.from_numpy(x, "cpu"), saved)]
    assert [g.shape for g in grads] == [(0, 4, 3), (4,), (4,)]
    assert not grads[1].any() and not grads[2].any()


def test_a_forward_only_backend_says_so():
    backend = backends.GroupNormBackend.from_function("test-forward-only", plain_group_norm)
    assert not backend.supports_backward
    assert all(backends.get(name).supports_backward for name in TRAINING)
    with pytest.raises(BackwardUnsupportedError, match="implements the forward pass only"):
        backend.forward_train(np.zeros((2, 4, 3), np.float32), 2)
    with pytest.raises(NotImplementedError):  # the usual way to catch it
        backend.backward(np.zeros((2, 4, 3), np.float32), None)


@pytest.mark.parametrize(
    "grad_y, saved_kind, error, text",
    [
        (
            np.zeros((2, 4, 2), np.float32),
            "real",
            InvalidArgumentError,
            "grad_y must have the shape of the forward's input",
        ),
        (
            np.zeros((2, 4, 3), np.float64),
            "real",
            InvalidTypeError,
            "grad_y must have the dtype of the forward's input x",
        ),
        ([[0.0]], "real", InvalidTypeError, "grad_y must be an array"),
        (np.zeros((2, 4, 3), np.float32), "tuple", InvalidTypeError, "saved must be what this backend's forward_train"),
    ],
    ids=["shape", "dtype", "not-an-array", "foreign-saved"],
)
def test_backward_arguments_are_checked_with_clear_errors(grad_y, saved_kind, error, text):
    backend = backends.get("numpy")
    _, saved = backend.forward_train(np.ones((2, 4, 3), np.float32), 2)
    assert isinstance(saved, Saved)
    with pytest.raises(error, match=text):
        backend.backward(grad_y, saved if saved_kind == "real" else (1, 2))
