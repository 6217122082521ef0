"""Argument validation: the same errors from every backend, users' included, and
acceptance of exactly what torch.nn.functional.group_norm accepts."""

import numpy as np
import pytest

import backends
from backends import GroupNormBackend, InvalidArgumentError, InvalidTypeError
from conftest import require


class UserBackend(GroupNormBackend):
    """A user's backend that does no checking of its own."""

    name = "user-unchecked"

    def group_norm(self, x, num_groups, weight=None, bias=None, eps=1e-5):
        return backends.get("numpy").group_norm(x, num_groups, weight, bias, eps)

    def from_numpy(self, array, device):
        return array.copy()

    def to_numpy(self, array):
        return array


def _backend(name):
    return UserBackend() if name == "user" else require(name)


f32, f16, f64 = np.float32, np.float16, np.float64


def arr(shape, dtype=f32):
    return np.ones(shape, dtype) if dtype != np.int64 else np.ones(shape, np.int64)


# (id, x, num_groups, weight, bias, eps, error type, message fragment)
REJECTED = [
    ("rank1", arr((4,)), 1, None, None, 1e-5, InvalidArgumentError, "Expected at least 2 dimensions"),
    (
        "groups-zero",
        arr((2, 4, 3)),
        0,
        None,
        None,
        1e-5,
        InvalidArgumentError,
        "num_groups must be a positive int; got 0",
    ),
    (
        "groups-not-dividing",
        arr((2, 4, 3)),
        3,
        None,
        None,
        1e-5,
        InvalidArgumentError,
        "divisible by num_groups.*\\[2, 4, 3\\] and num_groups=3",
    ),
    ("groups-float", arr((2, 4, 3)), 2.0, None, None, 1e-5, InvalidTypeError, "num_groups must be an int; got 2.0"),
    ("groups-bool", arr((2, 4, 3)), True, None, None, 1e-5, InvalidTypeError, "num_groups must be an int; got True"),
    (
        "weight-shape",
        arr((2, 4, 3)),
        2,
        arr((3,)),
        None,
        1e-5,
        InvalidArgumentError,
        "Expected weight to be a vector.*\\[3\\]",
    ),
    (
        "bias-shape",
        arr((2, 4, 3)),
        2,
        None,
        arr((4, 1)),
        1e-5,
        InvalidArgumentError,
        "Expected bias to be a vector.*\\[4, 1\\]",
    ),
    ("one-value-per-group", arr((1, 4)), 4, None, None, 1e-5, InvalidArgumentError, "more than 1 value per channel"),
    (
        "x-integer",
        arr((2, 4, 3), np.int64),
        2,
        None,
        None,
        1e-5,
        InvalidTypeError,
        "x must have a floating dtype.*int64",
    ),
    (
        "weight-float64-for-float32",
        arr((2, 4, 3)),
        2,
        arr((4,), f64),
        None,
        1e-5,
        InvalidTypeError,
        "weight must have dtype float32.*got float64",
    ),
    (
        "params-mixed",
        arr((2, 4, 3), f16),
        2,
        arr((4,), f32),
        arr((4,), f16),
        1e-5,
        InvalidTypeError,
        "same dtype.*float32.*float16",
    ),
    (
        "eps-negative",
        arr((2, 4, 3)),
        2,
        None,
        None,
        -1.0,
        InvalidArgumentError,
        "eps must be a finite number >= 0; got -1.0",
    ),
    ("eps-nan", arr((2, 4, 3)), 2, None, None, float("nan"), InvalidArgumentError, "eps must be a finite number"),
    ("eps-string", arr((2, 4, 3)), 2, None, None, "1e-5", InvalidTypeError, "eps must be a real number"),
]

# What torch accepts and so must every backend (id, x, num_groups, weight, bias).
ACCEPTED = [
    ("empty-batch", arr((0, 4, 3)), 2, None, None),
    ("zero-spatial", arr((2, 4, 0)), 2, None, None),
    ("zero-channels", arr((2, 0, 3)), 1, None, None),
    ("rank6", arr((2, 4, 3, 2, 2, 2)), 2, None, None),
    ("groups-of-one-in-a-batch", arr((3, 4)), 4, None, None),
    ("half-with-float32-params", arr((2, 4, 3), f16), 2, arr((4,)), arr((4,))),
    ("numpy-int-groups", arr((2, 4, 3)), np.int64(2), None, None),
]

BACKEND_NAMES = ["torch", "jax", "numpy", "user"]


def _native(backend, value):
    return value if not isinstance(value, np.ndarray) else backend.from_numpy(value, "cpu")


@pytest.mark.parametrize("backend_name", BACKEND_NAMES)
@pytest.mark.parametrize("case", REJECTED, ids=[c[0] for c in REJECTED])
def test_every_backend_raises_the_same_clear_error(backend_name, case):
    backend = _backend(backend_name)
    _, x, groups, weight, bias, eps, error, message = case
    if backend_name == "jax" and isinstance(x, np.ndarray) and x.dtype == np.int64:
        x = x.astype(np.int32)  # JAX without x64 has no int64; the error is the same
        message = message.replace("int64", "int32")
    with pytest.raises(error, match=message):
        backend.group_norm(_native(backend, x), groups, _native(backend, weight), _native(backend, bias), eps)


@pytest.mark.parametrize("backend_name", BACKEND_NAMES)
def test_not_an_array_is_a_type_error(backend_name):
    with pytest.raises(InvalidTypeError, match="x must be an array.*got list"):
        _backend(backend_name).group_norm([[1.0, 2.0]], 1)


@pytest.mark.parametrize("backend_name", BACKEND_NAMES)
@pytest.mark.parametrize("case", ACCEPTED, ids=[c[0] for c in ACCEPTED])
def test_every_backend_accepts_what_torch_accepts(backend_name, case):
    backend = _backend(backend_name)
    _, x, groups, weight, bias = case
    out = backend.group_norm(_native(backend, x), groups, _native(backend, weight), _native(backend, bias))
    assert backend.to_numpy(out).shape == x.shape


@pytest.mark.parametrize("case", ACCEPTED, ids=[c[0] for c in ACCEPTED])
def test_accepted_cases_are_accepted_by_torch_too(case):
    require("torch")
    import torch
    import torch.nn.functional as F

    _, x, groups, weight, bias = case
    as_torch = lambda a: None if a is None else torch.from_numpy(a)  # noqa: E731
    assert F.group_norm(as_torch(x), int(groups), as_torch(weight), as_torch(bias)).shape == x.shape


@pytest.mark.parametrize("case", [c for c in REJECTED if not c[0].startswith("eps")], ids=lambda c: c[0])
def test_rejected_cases_are_rejected_by_torch_too(case):
    """Every refusal but eps (our one documented deviation) is torch's too."""
    require("torch")
    import torch
    import torch.nn.functional as F

    _, x, groups, weight, bias, eps, _, _ = case
    as_torch = lambda a: None if a is None else torch.from_numpy(a)  # noqa: E731
    with pytest.raises((RuntimeError, ValueError, TypeError, ZeroDivisionError, NotImplementedError)):
        F.group_norm(as_torch(x), groups, as_torch(weight), as_torch(bias), eps)


def test_staticmethod_group_norm_is_validated_too():
    class Static(UserBackend):
        name = "user-static"
        group_norm = staticmethod(lambda x, num_groups, weight=None, bias=None, eps=1e-5: x.copy())

    with pytest.raises(InvalidArgumentError, match="divisible"):
        Static().group_norm(arr((2, 4, 3)), 3)
