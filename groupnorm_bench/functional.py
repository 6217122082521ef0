"""``group_norm``: ``torch.nn.functional.group_norm`` run by the dispatched backend.

Three ways a call runs, by where it is:

* **Eager, torch chosen** (or torch-compile): the backend's own ``F.group_norm``; autograd
  differentiates it as it would ``nn.GroupNorm`` (the torch backend's ``forward_train`` is
  exactly that autograd).
* **Eager, another backend**: forward only (no gradient needed) calls its ``group_norm``;
  a training call goes through :class:`BackendGroupNorm`, an autograd Function over the
  backend's ``forward_train``/``backward`` (residuals stay private to the backend, so
  forward and backward always run on one backend). Its backward is
  ``once_differentiable``: no double backward.
* **Inside torch.compile**: the choice is made while tracing (a constant of the graph);
  torch chosen traces ``F.group_norm`` so inductor may fuse it with its neighbours;
  another backend is the custom op ``groupnorm_bench::group_norm`` (opaque to inductor:
  no fusion across it), whose registered backward op *recomputes* the forward's
  statistics (a custom op's residuals must be tensors; a backend's are private).

Autocast: on CUDA, ``nn.GroupNorm`` runs in float32 under autocast (it is on autocast's
float32 list); so do this function and the custom op. On the CPU autocast leaves
GroupNorm in the input's dtype, and so do they.
"""

from __future__ import annotations

import functools

import torch
import torch.nn.functional as F

import backends as registry

from . import bridge as bridges
from . import dispatch

_NATIVE = ("torch", "torch-compile")


def _raw(method):
    """The method without the backend contract's argument validation (the call was
    validated once for its problem, by torch's own checks; see :func:`_check_like_torch`)."""
    return getattr(method, "__wrapped__", method)


@functools.cache
def _runner(name: str):
    backend = registry.get(name)
    return backend, _raw(type(backend).group_norm)


def _check_like_torch(x, num_groups, weight, bias, eps) -> None:
    """torch's own argument errors, raised by ``F.group_norm`` on meta tensors (shapes only)."""

    def meta(t):
        return None if t is None else torch.empty(t.shape, dtype=t.dtype, device="meta")

    F.group_norm(meta(x), num_groups, meta(weight), meta(bias), eps)


def _problem(x, num_groups, weight, bias, eps, pass_) -> dispatch.Problem:
    from backends.errors import InvalidTypeError

    dtype = bridges.dtype_name(x)
    if dtype not in bridges.TORCH_DTYPES:
        raise InvalidTypeError(f"GroupNorm input dtype {x.dtype} is not supported; allowed: "
                               f"{', '.join('torch.' + d for d in bridges.TORCH_DTYPES)}")
    if x.device.type not in registry.DEVICES:
        raise InvalidTypeError(f"GroupNorm input is on {x.device}; the backends run on {', '.join(registry.DEVICES)}")
    param = next((t for t in (weight, bias) if t is not None), None)
    param_dtype = None if param is None else bridges.dtype_name(param)
    return dispatch.Problem(tuple(x.shape), int(num_groups), dtype, None if param_dtype == dtype else param_dtype,
                            str(x.device), bridges.layout_of(x), pass_, float(eps), param is not None)


def _choose(x, num_groups, weight, bias, eps, pass_, autotune, backends, record):
    """The Choice for this call: a dictionary lookup once its problem was decided."""

    default_stream = True
    if x.is_cuda:
        default_stream = torch.cuda.current_stream(x.device).cuda_stream == 0
    settings = dispatch.SETTINGS
    autotune = settings.autotune if autotune is None else autotune
    backends = settings.backends if backends is None else backends
    if backends.__class__ is list:
        backends = tuple(backends)
    key = (x.shape, x.stride(), x.dtype, x.device, pass_, num_groups, eps,
           None if weight is None else weight.dtype, bias is None, autotune, backends, default_stream)
    choice = dispatch.fast_path.get(key)
    if choice is None:
        problem = _problem(x, num_groups, weight, bias, eps, pass_)  # dtype and device first: clearer than torch's
        _check_like_torch(x, num_groups, weight, bias, eps)
        choice = dispatch.decide(problem, x, autotune=autotune, backends=backends)
        dispatch.fast_path[key] = choice
    if record is not None and choice.problem not in record:
        record[choice.problem] = choice
    return choice


def _forward_call(name: str, x, weight, bias, num_groups: int, eps: float):
    """y = the backend's group_norm on views of the tensors, as a tensor in x's memory format."""
    backend, group_norm = _runner(name)
    link = bridges.get(name)
    with link.stream(x):
        y = link.to_torch(group_norm(backend, link.to_backend(x), num_groups, link.optional(weight),
                                     link.optional(bias), eps), x)
    return _like(y, x)


def _like(y, x):
    """y in x's memory format (channels-last stays channels-last, as torch's GroupNorm keeps
    it); a copy only when the backend returned another format."""

    if x.dim() in (4, 5) and not x.is_contiguous():
        fmt = torch.channels_last if x.dim() == 4 else torch.channels_last_3d
        if x.is_contiguous(memory_format=fmt) and not y.is_contiguous(memory_format=fmt):
            return y.contiguous(memory_format=fmt)
    return y


def _grads(name: str, grad_y, x, weight, bias, num_groups: int, eps: float, saved=None):
    """(grad_x, grad_weight, grad_bias) as tensors; ``saved`` None recomputes the forward."""
    backend = registry.get(name)
    link = bridges.get(name)
    with link.stream(x):
        if saved is None:
            _, saved = backend.forward_train(link.to_backend(x), num_groups, link.optional(weight),
                                             link.optional(bias), eps)
        grads = backend.backward(link.gradient(grad_y), saved)
        grad_x, grad_weight, grad_bias = (None if g is None else link.to_torch(g, x) for g in grads)
    return _like(grad_x, x), grad_weight, grad_bias


def _autograd_function():
    from torch.autograd.function import once_differentiable

    class BackendGroupNorm(torch.autograd.Function):
        """Autograd over a backend's ``forward_train``/``backward`` (``once_differentiable``)."""

        @staticmethod
        def forward(ctx, x, weight, bias, num_groups, eps, name):
            backend = registry.get(name)
            link = bridges.get(name)
            with link.stream(x):
                y, saved = backend.forward_train(link.to_backend(x), num_groups, link.optional(weight),
                                                 link.optional(bias), eps)
                y = _like(link.to_torch(y, x), x)
            ctx.backend_state = (name, num_groups, eps, saved)
            # the backend's residuals may view x, weight and bias: saving them here makes an
            # in-place change before backward an error (autograd's version check), not a wrong gradient
            ctx.save_for_backward(x, weight, bias)
            return y

        @staticmethod
        @once_differentiable
        def backward(ctx, grad_y):
            x, weight, bias = ctx.saved_tensors
            name, num_groups, eps, saved = ctx.backend_state
            grad_x, grad_weight, grad_bias = _grads(name, grad_y, x, weight, bias, num_groups, eps, saved)
            return grad_x, grad_weight, grad_bias, None, None, None

    return BackendGroupNorm


@functools.cache
def backend_function():
    """The :class:`torch.autograd.Function` over a backend's forward_train/backward."""
    return _autograd_function()


def _register_custom_ops():
    """Registers ``groupnorm_bench::group_norm`` and ``groupnorm_bench::group_norm_backward``
    (fake kernels, autograd, CUDA autocast to float32); returns the forward op. Runs at
    import: registering while torch.compile traces would break the graph."""
    # (explicit schemas: this module's annotations are strings, which infer_schema cannot read)
    @torch.library.custom_op("groupnorm_bench::group_norm", mutates_args=(), schema=(
        "(Tensor x, Tensor? weight, Tensor? bias, int num_groups, float eps, str backend) -> Tensor"))
    def group_norm_op(x, weight, bias, num_groups, eps, backend):
        return _forward_call(backend, x, weight, bias, num_groups, eps)

    @group_norm_op.register_fake
    def _(x, weight, bias, num_groups, eps, backend):
        return torch.empty_like(x)

    @torch.library.custom_op("groupnorm_bench::group_norm_backward", mutates_args=(), schema=(
        "(Tensor grad_y, Tensor x, Tensor? weight, Tensor? bias, int num_groups, float eps, str backend) "
        "-> (Tensor, Tensor, Tensor)"))
    def group_norm_backward_op(grad_y, x, weight, bias, num_groups, eps, backend):
        grad_x, grad_weight, grad_bias = _grads(backend, grad_y, x, weight, bias, num_groups, eps)
        empty = x.new_empty(0)
        return grad_x, empty if grad_weight is None else grad_weight, empty if grad_bias is None else grad_bias

    @group_norm_backward_op.register_fake
    def _(grad_y, x, weight, bias, num_groups, eps, backend):
        empty = x.new_empty(0)
        return (torch.empty_like(x), empty if weight is None else torch.empty_like(weight),
                empty if bias is None else torch.empty_like(bias))

    def setup_context(ctx, inputs, output):
        x, weight, bias, num_groups, eps, backend = inputs
        ctx.save_for_backward(x, weight, bias)
        ctx.arguments = (num_groups, eps, backend)

    def backward(ctx, grad_y):
        x, weight, bias = ctx.saved_tensors
        grad_x, grad_weight, grad_bias = group_norm_backward_op(grad_y, x, weight, bias, *ctx.arguments)
        return (grad_x, None if weight is None else grad_weight, None if bias is None else grad_bias,
                None, None, None)

    group_norm_op.register_autograd(backward, setup_context=setup_context)
    torch.library.register_autocast("groupnorm_bench::group_norm", "cuda", torch.float32)
    return group_norm_op


def _traced_choice(shape, dtype, device, layout, pass_, num_groups, eps, param_dtype, affine, autotune, backends):
    """The choice, made while torch.compile traces (its result is a constant of the graph).
    Creates no tensor: under torch.export's tracing one would land in the graph."""
    import types

    problem = dispatch.Problem(tuple(shape), num_groups, str(dtype).replace("torch.", ""), param_dtype, device,
                               layout, pass_, eps, affine)
    probe = types.SimpleNamespace(device=torch.device(device), dtype=dtype)  # what the bridges look at
    return dispatch.decide(problem, probe, autotune=autotune, backends=backends).backend


def group_norm(input, num_groups: int, weight=None, bias=None, eps: float = 1e-5, *, backend: str | None = None,
               autotune: bool | None = None, backends=None, _record=None):
    """``torch.nn.functional.group_norm`` by the fastest verified backend for the problem.

    Args:
        input, num_groups, weight, bias, eps: as ``F.group_norm`` (torch's errors for bad ones).
        backend: run this backend, skipping the choice (and its verification: the
            caller's responsibility); it must have a bridge (:mod:`groupnorm_bench.bridge`).
        autotune: time candidates for a problem without timing evidence (None: the
            process setting, :func:`groupnorm_bench.configure`).
        backends: candidate names (None: the process setting).

    Returns a tensor of input's shape, dtype and memory format; differentiable.
    """

    if torch.compiler.is_compiling():
        return _compiled_call(input, num_groups, weight, bias, eps, backend, autotune, backends)
    if input.is_cuda and torch.is_autocast_enabled("cuda"):
        with torch.autocast("cuda", enabled=False):  # nn.GroupNorm's autocast policy: float32
            return group_norm(input.float(), num_groups, None if weight is None else weight.float(),
                              None if bias is None else bias.float(), eps, backend=backend, autotune=autotune,
                              backends=backends, _record=_record)
    needs_grad = torch.is_grad_enabled() and (input.requires_grad or (weight is not None and weight.requires_grad)
                                              or (bias is not None and bias.requires_grad))
    pass_ = "train" if needs_grad else "forward"
    if backend is None:
        name = _choose(input, num_groups, weight, bias, eps, pass_, autotune, backends, _record).backend
    else:
        name = _named(backend, input, num_groups, weight, bias, eps)
    if name == "torch":  # the torch backend's group_norm is F.group_norm: called directly
        return F.group_norm(input, num_groups, weight, bias, eps)
    if name in _NATIVE:
        runner, function = _runner(name)
        return function(runner, input, num_groups, weight, bias, eps)
    if needs_grad:
        return backend_function().apply(input, weight, bias, num_groups, eps, name)
    return _forward_call(name, input, weight, bias, num_groups, eps)


def _named(name: str, x, num_groups, weight, bias, eps) -> str:
    from backends.errors import InvalidArgumentError

    if name not in registry.names():
        raise InvalidArgumentError(f"backend must be one of {', '.join(registry.names())}; got {name!r}")
    link = bridges.get(name)
    why = "the module has no zero-copy bridge from torch tensors to it" if link is None else link.why_not(x)
    if why:
        raise InvalidArgumentError(f"backend {name!r} cannot take this input: {why}")
    _check_like_torch(x, num_groups, weight, bias, eps)
    return name


def _compiled_call(x, num_groups, weight, bias, eps, backend, autotune, backends):
    needs_grad = torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in (x, weight, bias))
    if backend is None:
        param = weight if weight is not None else bias
        param_dtype = None if param is None or param.dtype == x.dtype else bridges.dtype_name(param)
        backend = _constant_choice(tuple(x.shape), x.dtype, str(x.device), bridges.layout_of(x),
                                     "train" if needs_grad else "forward", int(num_groups), float(eps),
                                     param_dtype, param is not None, autotune,
                                     None if backends is None else tuple(backends))
    if backend in _NATIVE:
        return F.group_norm(x, num_groups, weight, bias, eps)
    return group_norm_op(x, weight, bias, num_groups, eps, backend)


group_norm_op = _register_custom_ops()
_constant_choice = torch.compiler.assume_constant_result(_traced_choice)
