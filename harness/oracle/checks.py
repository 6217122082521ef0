"""Checking one case on one backend: run it, then judge each output against the oracle.

A verdict keeps the numbers, never just a bool: status, max abs and rel error, the worst
element's index with expected and got values, the tolerance there and the ratio.

Status values (the results schema extends this list, never redefines it):

================  ====================================================================
passed            every element within tolerance, NaN/Inf exactly where the oracle has them
mismatch          some finite element farther from the oracle than its tolerance
wrong_shape       output shape differs from the input's
wrong_dtype       output dtype differs from the input's
nan_mismatch      NaN or +/-Inf positions differ from the oracle's
input_modified    the call changed x, weight or bias (backward: or grad_y, or the saved residuals)
aliases_input     an output shares memory with an input
error             the backend raised (reason: exception type and message)
oom               the backend ran out of memory (MemoryError, a framework's OOM, SIGKILL)
crash             the worker process died (segfault, abort)
timeout           no answer within the timeout; the worker was killed
unsupported       the backend declares the case out of scope (reason from ``supports``)
skipped           the backend cannot run here (``availability``), or the case does not fit
================  ====================================================================

Forward cases call ``group_norm``; backward and train cases call ``forward_train``, then
``backward``. What a row of such a case asserts, beyond the forward's checks:

* every gradient within its tolerance (:mod:`harness.oracle.tolerances`), NaN/Inf
  exactly where the oracle has them; grad_x in x's dtype and shape, grad_weight and
  grad_bias in the parameters' dtype and of shape (C,); for ``train``, y as well;
* neither grad_y nor the saved residuals (those of them that are arrays) nor x, weight
  and bias are modified (``input_modified``), and no gradient aliases an input
  (``aliases_input``);
* run-to-run determinism: ``backward`` runs twice on the same residuals; when the two
  answers differ in any bit the row says so (``deterministic`` False, and the reason),
  without failing: atomics-based reductions are legitimate, and users deserve to know.
"""

from __future__ import annotations

import dataclasses
import math
import time

import numpy as np

from backends.dtypes import dtype_name, numpy_dtype
from harness.records.results import FAILED, NOT_RUN, STATUSES  # noqa: F401  (the status values, re-exported)

from .expected import BLOCK_ELEMENTS, Expected

GRADIENTS = ("grad_x", "grad_weight", "grad_bias")
PER_CHANNEL = ("grad_weight", "grad_bias")


@dataclasses.dataclass(frozen=True)
class Verdict:
    """How one output compares with the oracle.

    ``ratio`` is max(|got - expected| / tolerance) over finite elements: above 1 fails.
    ``worst_index`` is that element's index (for NaN/Inf mismatches, the first differing
    element), with ``expected`` (oracle, float64), ``got`` and ``tolerance`` there.
    ``call_s`` is the wall time of the (first) call, synchronized: JIT compilation included.
    Backward and train cases judge several outputs: ``output`` names the one the numbers
    describe (the first that fails, else the one with the largest ratio), ``ratios`` holds
    each output's ratio, and ``deterministic`` says whether a second backward on the same
    residuals gave the same bits (None: not checked, as for the forward).
    """

    status: str
    reason: str = ""
    max_abs_err: float = math.nan
    max_rel_err: float = math.nan
    ratio: float = math.nan
    tolerance: float = math.nan
    worst_index: tuple | None = None
    expected: float = math.nan
    got: float = math.nan
    call_s: float = math.nan
    output: str = "y"
    ratios: dict = dataclasses.field(default_factory=dict)
    deterministic: bool | None = None


def judge(output, dtype: str, expected: Expected) -> Verdict:
    """Compare a host output array with the oracle (shape, dtype, NaN/Inf, values).

    Works through the verified groups in blocks, so a huge output needs no float64 copy.
    """
    y = np.asarray(output)
    if y.shape != expected.shape:
        return Verdict("wrong_shape", f"output shape {y.shape} differs from input shape {expected.shape}")
    if dtype_name(y.dtype) != dtype:
        return Verdict("wrong_dtype", f"output dtype {y.dtype} differs from input dtype {dtype}")
    if expected.y.size == 0:
        return Verdict("passed", max_abs_err=0.0, max_rel_err=0.0, ratio=0.0, tolerance=0.0)
    rows = expected.rows(y)
    host_dtype = numpy_dtype(dtype)
    worst = (-1.0, 0, 0)  # (ratio, row, column)
    max_abs = max_rel = 0.0
    outside = 0
    step = max(1, BLOCK_ELEMENTS // expected.y.shape[1])
    for start in range(0, len(rows), step):
        got = rows[start:start + step].astype(np.float64)
        reference = expected.y[start:start + step]
        with np.errstate(all="ignore"):
            # The correctly rounded answer in the output dtype: overflow there is a real Inf.
            rounded = reference.astype(host_dtype).astype(np.float64)
        # where the bound is infinite (eps = 0 and a variance below the accumulation's
        # resolution, docs/tolerance.md) an accepted algorithm may divide by 0: no value is wrong
        unbounded = np.isposinf(expected.tolerance[start:start + step])
        for kind, test in (("NaN", np.isnan), ("+Inf", np.isposinf), ("-Inf", np.isneginf)):
            differs = (test(rounded) != test(got)) & ~unbounded
            if differs.any():
                row, column = (int(i) for i in np.argwhere(differs)[0])
                return Verdict(
                    "nan_mismatch",
                    f"{kind} positions differ from the oracle's at {int(differs.sum())} element(s)"
                    + (" of the first differing block" if len(rows) > step else ""),
                    worst_index=expected.index(start + row, column),
                    expected=float(reference[row, column]),
                    got=float(got[row, column]),
                )
        finite = np.isfinite(rounded) & ~unbounded
        with np.errstate(all="ignore"):
            error = np.where(finite, np.abs(got - reference), 0.0)
            ratio = np.where(finite, error / expected.tolerance[start:start + step], 0.0)
            relative = np.where(finite, error / np.maximum(np.abs(reference), np.finfo(np.float64).tiny), 0.0)
        flat = int(np.argmax(ratio))
        if ratio.flat[flat] > worst[0]:
            worst = (float(ratio.flat[flat]), start + flat // ratio.shape[1], flat % ratio.shape[1])
        max_abs = max(max_abs, float(error.max()))
        max_rel = max(max_rel, float(relative.max()))
        outside += int((ratio > 1.0).sum())
    ratio, row, column = worst
    verdict = Verdict(
        "passed",
        max_abs_err=max_abs,
        max_rel_err=max_rel,
        ratio=ratio,
        tolerance=float(expected.tolerance[row, column]),
        worst_index=expected.index(row, column),
        expected=float(expected.y[row, column]),
        got=float(rows[row, column]),
    )
    if ratio > 1.0:
        verdict = dataclasses.replace(
            verdict,
            status="mismatch",
            reason=f"{outside} of {expected.y.size} elements outside tolerance (worst {ratio:.3g}x it)"
            + (f"; {hint}" if (hint := expected.resemblance(row, ratio)) else ""),
        )
    return verdict


def same_bits(a: np.ndarray, b: np.ndarray) -> bool:
    """Whether two arrays hold the same bits (shape, dtype and every byte; NaN payloads too)."""
    a, b = np.ascontiguousarray(a), np.ascontiguousarray(b)
    if a.shape != b.shape or a.dtype != b.dtype:
        return False
    unsigned = f"u{a.dtype.itemsize}"
    return bool(np.array_equal(a.view(unsigned), b.view(unsigned)))


def judge_output(name: str, output, dtype: str, expected) -> Verdict:
    """Judge one output (``y``, ``grad_x``, ``grad_weight`` or ``grad_bias``) against its
    expectation; per-channel gradients are (C,) arrays judged as one row."""
    if output is None:
        return Verdict("wrong_shape", f"{name} is None, but the forward had that parameter", output=name)
    array = np.asarray(output)
    want = (expected.shape[1],) if name in PER_CHANNEL else tuple(expected.shape)
    if array.shape != want:
        return Verdict("wrong_shape", f"{name} has shape {list(array.shape)}; expected {list(want)}", output=name)
    if dtype_name(array.dtype) != dtype:
        return Verdict("wrong_dtype", f"{name} has dtype {array.dtype}; expected {dtype}", output=name)
    verdict = judge(array.reshape(expected.shape), dtype, expected)
    index = verdict.worst_index
    if name in PER_CHANNEL and index is not None:
        index = (index[1],)
    reason = f"{name}: {verdict.reason}" if verdict.reason else ""
    return dataclasses.replace(verdict, output=name, worst_index=index, reason=reason)


def combine(verdicts: list) -> Verdict:
    """One verdict for several outputs: structural failures (shape, dtype, NaN positions)
    first, then the largest mismatch, else the passed output with the largest ratio."""
    ratios = {v.output: v.ratio for v in verdicts}
    failed = [v for v in verdicts if v.status != "passed"]
    if failed:
        chosen = min(failed, key=lambda v: (v.status == "mismatch", -_finite(v.ratio)))
    else:
        chosen = max(verdicts, key=lambda v: _finite(v.ratio))
    return dataclasses.replace(chosen, ratios=ratios)


def _finite(value: float) -> float:
    return value if value == value else -1.0


# -- running a case -----------------------------------------------------------------------


def failure_text(error: BaseException) -> str:
    """``Type: message``, cut to 600 characters."""
    text = f"{type(error).__name__}: {error}".strip()
    return text if len(text) <= 600 else text[:597] + "..."


_OOM_MARKERS = ("out of memory", "outofmemory", "resource_exhausted", "cudaerrormemoryallocation",
                "can't allocate memory", "cannot allocate memory")  # the last two: torch's CPU allocator


def status_of(error: BaseException) -> str:
    """``oom`` for out-of-memory errors of any framework, else ``error``."""
    if isinstance(error, MemoryError):
        return "oom"
    text = f"{type(error).__name__} {error}".lower().replace(" ", "")
    return "oom" if any(marker.replace(" ", "") in text for marker in _OOM_MARKERS) else "error"


def _scope_reason(backend, case) -> Verdict | None:
    """An ``unsupported`` (or ``error``) verdict when the backend does not take the case."""
    try:
        reason = backend.supports(case)
    except Exception as error:
        return Verdict("error", "supports() failed: " + failure_text(error))
    if reason:
        return Verdict("unsupported", reason)
    if case.pass_ != "forward" and not backend.supports_backward:
        return Verdict("unsupported", f"backend {backend.name!r} implements the forward pass only "
                                      "(no forward_train/backward)")
    return None


def _after_the_call(backend, verdict: Verdict, originals, pairs, what: str, extra_modified=()) -> Verdict:
    """The checks every pass makes once its outputs are judged: no input changed (each of
    ``originals``, (name, framework array, host original), compared bit for bit; plus
    ``extra_modified``, names found changed by the caller), no output aliasing an input
    (each of ``pairs``, (output name, output, input name, input))."""
    try:
        modified = [name for name, native, original in originals
                    if native is not None and not same_bits(backend.to_numpy(native), original)]
        modified += list(extra_modified)
        aliased = [f"{a} shares memory with {b}" for a, out, b, source in pairs
                   if out is not None and source is not None and backend.shares_memory(out, source)]
    except Exception as error:
        return Verdict("error", "checking inputs after the call failed: " + failure_text(error))
    if aliased:
        return dataclasses.replace(verdict, status="aliases_input", reason="; ".join(aliased))
    if modified:
        return dataclasses.replace(verdict, status="input_modified",
                                   reason=f"{what} modified {', '.join(modified)} in place")
    return verdict


def run_case(backend, case, host, expected: Expected) -> Verdict:
    """Run ``backend`` on one case (host inputs ``host`` and the oracle's ``expected``
    prepared) and judge it.

    The backend gets fresh framework arrays; after the call x, weight and bias (and, for
    the backward, grad_y and the saved residuals) are compared bit for bit with the host
    originals, and no output may alias an input (see the module docstring).
    """
    refusal = _scope_reason(backend, case)
    if refusal:
        return refusal
    try:
        x, weight, bias = (None if array is None else backend.from_numpy(array, case.device)
                           for array in (host.x, host.weight, host.bias))
    except Exception as error:
        return Verdict(status_of(error), "from_numpy failed: " + failure_text(error))
    if case.pass_ != "forward":
        return _run_backward(backend, case, host, expected, (x, weight, bias))
    try:
        start = time.perf_counter()
        out = backend.group_norm(x, case.num_groups, weight, bias, case.eps)
        backend.wait(out, case.device)
        call_s = time.perf_counter() - start
        y = backend.to_numpy(out)
    except Exception as error:
        return Verdict(status_of(error), failure_text(error))
    verdict = dataclasses.replace(judge(y, case.dtype, expected), call_s=call_s)
    verdict = dataclasses.replace(verdict, ratios={"y": verdict.ratio})
    if verdict.status == "wrong_shape":
        return verdict
    originals = (("x", x, host.x), ("weight", weight, host.weight), ("bias", bias, host.bias))
    return _after_the_call(backend, verdict, originals, [("the output", out, "x", x)], "the call")


def _array_leaves(residuals, found=None) -> list:
    """The arrays among a backend's residuals (tuples, lists and dicts walked)."""
    found = [] if found is None else found
    if isinstance(residuals, (tuple, list)):
        for item in residuals:
            _array_leaves(item, found)
    elif isinstance(residuals, dict):
        for item in residuals.values():
            _array_leaves(item, found)
    elif hasattr(residuals, "shape") and hasattr(residuals, "dtype"):
        found.append(residuals)
    return found


def _snapshot(backend, arrays) -> list:
    copies = []
    for array in arrays:
        try:
            copies.append(np.array(backend.to_numpy(array), copy=True))
        except Exception:  # not this framework's array: opaque to the harness
            copies.append(None)
    return copies


def _wait_all(backend, outputs, device: str) -> None:
    for output in outputs:
        if output is not None:
            backend.wait(output, device)


def _run_backward(backend, case, host, expected, arrays) -> Verdict:
    """``forward_train`` then ``backward`` (twice) on framework arrays ``(x, weight,
    bias)`` made from ``host``; the verdict of every output (see the module docstring)."""
    x, weight, bias = arrays
    device = case.device
    try:
        grad_y = backend.from_numpy(host.grad_y, device)
    except Exception as error:
        return Verdict(status_of(error), "from_numpy(grad_y) failed: " + failure_text(error))
    try:
        y, saved = backend.forward_train(x, case.num_groups, weight, bias, case.eps)
        backend.wait(y, device)
        y_host = backend.to_numpy(y) if case.pass_ == "train" else None
    except Exception as error:
        return Verdict(status_of(error), "forward_train: " + failure_text(error))
    residuals = _array_leaves(getattr(saved, "residuals", None))
    before = _snapshot(backend, residuals)
    try:
        start = time.perf_counter()
        grads = backend.backward(grad_y, saved)
        _wait_all(backend, grads, device)
        call_s = time.perf_counter() - start
        first = [None if g is None else np.array(backend.to_numpy(g), copy=True) for g in grads]
    except Exception as error:
        return Verdict(status_of(error), "backward: " + failure_text(error))
    param_dtype = case.param_dtype or case.dtype
    verdicts = [judge_output("y", y_host, case.dtype, expected)] if case.pass_ == "train" else []
    for name, want in expected.grads.items():
        verdicts.append(judge_output(name, first[GRADIENTS.index(name)],
                                     case.dtype if name == "grad_x" else param_dtype, want))
    verdict = dataclasses.replace(combine(verdicts), call_s=call_s)
    try:
        again = backend.backward(grad_y, saved)
        _wait_all(backend, again, device)
        second = [None if g is None else backend.to_numpy(g) for g in again]
        differ = [name for name, a, b in zip(GRADIENTS, first, second)
                  if (a is None) != (b is None) or (a is not None and not same_bits(a, b))]
    except Exception as error:
        return Verdict(status_of(error), "backward, called again on the same residuals: " + failure_text(error))
    try:
        after = _snapshot(backend, residuals)
        residuals_changed = any(b is not None and (a is None or not same_bits(a, b)) for b, a in zip(before, after))
    except Exception as error:
        return Verdict("error", "checking inputs after the call failed: " + failure_text(error))
    originals = (("x", x, host.x), ("weight", weight, host.weight), ("bias", bias, host.bias),
                 ("grad_y", grad_y, host.grad_y))
    pairs = [("grad_x", grads[0], "x", x), ("grad_x", grads[0], "grad_y", grad_y),
             ("grad_weight", grads[1], "weight", weight), ("grad_bias", grads[2], "bias", bias)]
    if case.pass_ == "train":
        pairs.append(("y", y, "x", x))
    checked = _after_the_call(backend, verdict, originals, pairs, "the backward pass",
                              ["the saved residuals"] if residuals_changed else ())
    if checked is not verdict:
        return checked
    verdict = dataclasses.replace(verdict, deterministic=not differ)
    if differ:
        note = f"nondeterministic: a second backward on the same residuals changed bits of {', '.join(differ)}"
        verdict = dataclasses.replace(verdict, reason="; ".join(filter(None, (verdict.reason, note))))
    return verdict
