"""Argument validation for ``group_norm``, shared by every backend (users' included).

One place, checked once, before any backend code runs; kernels assume validated input.
It accepts what ``torch.nn.functional.group_norm`` accepts (any rank >= 2, empty batches,
zero-size spatial dims, float32 weight/bias with half input) and raises ``ValueError`` /
``TypeError`` (our :mod:`backends.errors` family) with torch's wording where torch has one.

One deliberate difference: torch accepts a negative or non-finite ``eps`` and silently
returns NaN for low-variance groups; we refuse it, since a silently wrong number is the
one thing a verification harness must never hand out.

Only ``.shape`` and ``.dtype`` of the arrays are read, so no framework is imported.
"""

from __future__ import annotations

import math
import numbers

from .dtypes import DTYPES, HALF_DTYPES, dtype_name
from .errors import InvalidArgumentError, InvalidTypeError
from .saved import Saved


def _shape(array, argument: str) -> tuple[int, ...]:
    shape = getattr(array, "shape", None)
    if shape is None or not hasattr(array, "dtype"):
        raise InvalidTypeError(
            f"{argument} must be an array with .shape and .dtype (a tensor of the backend's "
            f"framework); got {type(array).__name__}"
        )
    return tuple(int(s) for s in shape)


def _float_dtype(array, argument: str) -> str:
    name = dtype_name(array.dtype)
    if name is None:
        raise InvalidTypeError(
            f"{argument} must have a floating dtype ({', '.join(DTYPES)}); got {array.dtype}"
        )
    return name


def check_group_norm_args(x, num_groups, weight=None, bias=None, eps=1e-5) -> None:
    """Raise if ``group_norm(x, num_groups, weight, bias, eps)`` is not a valid call.

    Args:
        x: input array of shape (N, C, *), any rank >= 2, floating dtype.
        num_groups: a positive int (not bool) dividing C.
        weight, bias: None, or 1-D arrays of length C, of x's dtype (or float32 when x is
            float16/bfloat16); when both are given, of the same dtype.
        eps: a finite real number >= 0.

    Raises:
        TypeError (InvalidTypeError): a wrong type (non-array, non-float dtype, non-int
            num_groups, mismatched parameter dtypes).
        ValueError (InvalidArgumentError): a wrong value (rank < 2, num_groups <= 0 or not
            dividing C, wrong parameter shape, a group of one element in a batch of one,
            negative or non-finite eps).
    """
    shape = _shape(x, "x")
    x_dtype = _float_dtype(x, "x")
    if len(shape) < 2:
        raise InvalidArgumentError(
            f"Expected at least 2 dimensions for input tensor but received {len(shape)} "
            f"(x of shape {list(shape)}; GroupNorm takes (N, C, *))"
        )
    if isinstance(num_groups, bool) or not isinstance(num_groups, numbers.Integral):
        raise InvalidTypeError(
            f"num_groups must be an int; got {num_groups!r} of type {type(num_groups).__name__}"
        )
    num_groups = int(num_groups)
    channels = shape[1]
    if num_groups <= 0:
        raise InvalidArgumentError(f"num_groups must be a positive int; got {num_groups}")
    if channels % num_groups != 0:
        raise InvalidArgumentError(
            "Expected number of channels in input to be divisible by num_groups, but got "
            f"input of shape {list(shape)} and num_groups={num_groups}"
        )
    # torch.nn.functional.group_norm's _verify_batch_size: a single value per group
    # in the whole batch has no variance to normalize by.
    values_per_group_in_batch = shape[0] * channels // num_groups * math.prod(shape[2:])
    if values_per_group_in_batch == 1:
        raise InvalidArgumentError(
            "Expected more than 1 value per channel when training, got input size "
            f"{[shape[0] * channels // num_groups, num_groups, *shape[2:]]} "
            f"(x of shape {list(shape)} with num_groups={num_groups}: each group has one element)"
        )
    param_dtypes = {}
    for argument, param in (("weight", weight), ("bias", bias)):
        if param is None:
            continue
        param_shape = _shape(param, argument)
        if param_shape != (channels,):
            raise InvalidArgumentError(
                f"Expected {argument} to be a vector of size equal to the number of channels "
                f"in input, but got {argument} of shape {list(param_shape)} and input of "
                f"shape {list(shape)}"
            )
        param_dtype = _float_dtype(param, argument)
        allowed = (x_dtype, "float32") if x_dtype in HALF_DTYPES else (x_dtype,)
        if param_dtype not in allowed:
            raise InvalidTypeError(
                f"{argument} must have dtype {' or '.join(allowed)} for x of dtype {x_dtype}; "
                f"got {param_dtype}"
            )
        param_dtypes[argument] = param_dtype
    if len(set(param_dtypes.values())) > 1:
        raise InvalidTypeError(
            "weight and bias must have the same dtype; got weight "
            f"{param_dtypes['weight']} and bias {param_dtypes['bias']}"
        )
    if isinstance(eps, bool) or not isinstance(eps, numbers.Real):
        raise InvalidTypeError(f"eps must be a real number; got {eps!r} of type {type(eps).__name__}")
    if not math.isfinite(float(eps)) or float(eps) < 0:
        raise InvalidArgumentError(
            f"eps must be a finite number >= 0; got {eps!r} (a negative eps makes "
            "1/sqrt(var + eps) NaN for low-variance groups)"
        )


def check_backward_args(grad_y, saved) -> None:
    """Raise if ``backward(grad_y, saved)`` is not a valid call: ``saved`` must come from
    this backend's ``forward_train`` (a :class:`backends.saved.Saved`), and grad_y must
    have x's shape and dtype (any strides: channels-last or strided independently of x).

    Raises:
        TypeError (InvalidTypeError): saved is not a forward_train's, grad_y is not an
            array or has another dtype than x.
        ValueError (InvalidArgumentError): grad_y's shape is not x's.
    """
    if not isinstance(saved, Saved):
        raise InvalidTypeError(
            f"saved must be what this backend's forward_train returned (its second value); got "
            f"{type(saved).__name__}")
    shape = _shape(grad_y, "grad_y")
    if shape != saved.shape:
        raise InvalidArgumentError(
            f"grad_y must have the shape of the forward's input x, {list(saved.shape)}; got {list(shape)}")
    dtype = _float_dtype(grad_y, "grad_y")
    if dtype != saved.dtype:
        raise InvalidTypeError(f"grad_y must have the dtype of the forward's input x, {saved.dtype}; got {dtype}")
