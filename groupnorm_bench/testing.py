"""``assert_group_norm_correct``: the harness's verification as one assertion for users' suites.

    from groupnorm_bench.testing import assert_group_norm_correct

    def test_my_kernel():
        assert_group_norm_correct(my_group_norm, suite="smoke", passes=("forward", "train"))

The function under test is judged exactly as ``gnbench verify`` judges a backend: the
float64 oracle, the committed tolerance model, the input/aliasing/determinism checks,
and the backward's checks for the ``backward``/``train`` passes. A failure raises
``AssertionError`` listing each failed case (status, worst output, error ratio, where)
with a line that reruns just that case.
"""

from __future__ import annotations

import re

import backends as registry
from backends.base import GroupNormBackend
from backends.errors import InvalidArgumentError


def torch_function_backend(fn, name: str, devices=("cpu",), dtypes=None, layouts=None) -> GroupNormBackend:
    """A backend over ``fn(x, num_groups, weight, bias, eps)`` taking and returning torch
    tensors (the signature of ``torch.nn.functional.group_norm``). Its backward is autograd
    through ``fn`` (so the train and backward passes check ``fn``'s gradients)."""
    from backends.dtypes import DTYPES
    from backends.torch_backend import TorchBackend

    def group_norm(self, x, num_groups, weight=None, bias=None, eps=1e-5):
        return fn(x, num_groups, weight, bias, eps)

    def forward_train(self, x, num_groups, weight=None, bias=None, eps=1e-5):
        import torch

        leaves = [None if t is None else t.detach().requires_grad_() for t in (x, weight, bias)]
        with torch.enable_grad():
            y = fn(leaves[0], num_groups, leaves[1], leaves[2], eps)
        return y.detach(), (y, leaves)

    attributes = {
        "name": name,
        "devices": tuple(devices),
        "dtypes": tuple(dtypes or DTYPES),
        "layouts": tuple(layouts or registry.LAYOUTS),
        "description": f"user function {getattr(fn, '__qualname__', fn)!s} on torch tensors",
        "default_selected": False,
        "group_norm": group_norm,
        "forward_train": forward_train,
        "backward": TorchBackend.backward,
        "version": lambda self: f"user function ({TorchBackend.version(self)})",
        "source_hash": lambda self: "",
    }
    return type(f"TorchFunctionBackend[{name}]", (TorchBackend,), attributes)()


def _backend_for(fn, arrays: str, devices, dtypes, layouts) -> tuple[GroupNormBackend, bool]:
    """(backend, registered here) for what the caller passed."""
    if isinstance(fn, str):
        registry.get(fn)  # raises, naming the registered backends
        return registry.get(fn), False
    if isinstance(fn, GroupNormBackend):
        return fn, fn.name not in registry.names()
    if not callable(fn):
        raise InvalidArgumentError(f"fn must be a backend name, a GroupNormBackend or a callable; got {fn!r}")
    base = re.sub(r"[^a-z0-9_.+-]", "-", getattr(fn, "__name__", "function").lower()).strip("-") or "function"
    name = f"user-{base}"
    while name in registry.names():
        name += "+"
    if arrays == "torch":
        return torch_function_backend(fn, name, devices, dtypes, layouts), True
    if arrays == "numpy":
        options = {k: v for k, v in (("dtypes", dtypes), ("layouts", layouts)) if v}
        return GroupNormBackend.from_function(name, fn, devices=tuple(devices), **options), True
    raise InvalidArgumentError(f"arrays must be 'torch' or 'numpy'; got {arrays!r}")


def verify_function(fn, *, suite="smoke", passes=("forward",), cases=None, devices=("cpu",), dtypes=None,
                    layouts=None, arrays: str = "torch", isolate: bool = False):
    """The verify rows (a pandas DataFrame) of ``fn`` on a suite or on explicit cases;
    see :func:`assert_group_norm_correct` for the arguments."""
    from harness import verify

    backend, temporary = _backend_for(fn, arrays, devices, dtypes, layouts)
    if temporary:
        registry.register(backend)
    try:
        return verify(backends=[backend.name], suite=suite, cases=cases, devices=list(devices),
                      dtypes=dtypes, pass_=list(passes) if cases is None else None, isolate=isolate)
    finally:
        if temporary:
            registry.unregister(backend.name)


def assert_group_norm_correct(fn, *, suite="smoke", passes=("forward",), cases=None, devices=("cpu",),
                              dtypes=None, layouts=None, arrays: str = "torch", isolate: bool = False,
                              limit: int = 10):
    """Verify ``fn`` as the harness verifies a backend; raise AssertionError on any failure.

    Args:
        fn: a callable ``fn(x, num_groups, weight, bias, eps)`` on torch tensors (the
            signature of ``F.group_norm``; ``arrays="numpy"`` for one on NumPy arrays,
            forward only), a :class:`backends.GroupNormBackend`, or a registered backend's name.
        suite: harness suite name(s) (``smoke``, ``default``, ``adversarial``, workloads).
        passes: ``forward``, ``backward``, ``train`` (torch callables: the gradients are
            autograd's through ``fn``).
        cases: explicit case ids instead of a suite (each carries its pass).
        devices: where to run (``cpu``, ``cuda``).
        dtypes, layouts: which dtypes/layouts ``fn`` implements (others are ``unsupported``,
            not failures); dtypes also filters the suite.
        isolate: run in a worker process (a crash becomes a failure instead of killing pytest).
        limit: failures listed in the message.

    Returns the verify rows (a pandas DataFrame) when everything ran passed.

    Raises:
        AssertionError: a case failed, or no case ran at all (everything unsupported or
            skipped: an assertion that checked nothing does not pass).
    """
    from harness.oracle.checks import FAILED

    frame = verify_function(fn, suite=suite, passes=passes, cases=cases, devices=devices, dtypes=dtypes,
                            layouts=layouts, arrays=arrays, isolate=isolate)
    failed = frame[frame.status.isin(FAILED)]
    ran = frame[frame.status == "passed"]
    label = fn if isinstance(fn, str) else getattr(fn, "name", None) or getattr(fn, "__qualname__", repr(fn))
    if len(failed):
        lines = [f"{label}: {len(failed)} of {len(frame)} GroupNorm cases failed verification against the "
                 "float64 oracle"]
        for row in failed.head(limit).itertuples():
            where = f"; worst {row.output} at {row.worst_index}: expected {row.expected:.7g}, got {row.got:.7g}" \
                if row.status in ("mismatch", "nan_mismatch") else ""
            ratio = f" ({row.ratio:.3g}x the tolerance)" if row.ratio == row.ratio else ""
            lines.append(f"  {row.status}{ratio} {row.case_id} on {row.device}: {row.reason}{where}")
            lines.append(f"    rerun: assert_group_norm_correct(fn, cases=[{row.case_id!r}], devices=[{row.device!r}])")
        if len(failed) > limit:
            lines.append(f"  ... and {len(failed) - limit} more")
        raise AssertionError("\n".join(lines))
    if not len(ran):
        reasons = sorted(set(frame.reason.astype(str)))[:3] if len(frame) else ["no case selected"]
        raise AssertionError(f"{label}: no GroupNorm case ran ({len(frame)} rows, none passed or failed): "
                             + "; ".join(reasons))
    return frame
