"""Checking one case on one backend: run it, then judge the output against the oracle.

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
"""

from __future__ import annotations

import dataclasses
import math
import time

import numpy as np

from backends.dtypes import dtype_name, numpy_dtype

from .expected import BLOCK_ELEMENTS, Expected
from .inputs import Inputs

STATUSES = (
    "passed", "mismatch", "wrong_shape", "wrong_dtype", "nan_mismatch", "input_modified",
    "aliases_input", "error", "oom", "crash", "timeout", "unsupported", "skipped",
)
FAILED = ("mismatch", "wrong_shape", "wrong_dtype", "nan_mismatch", "input_modified", "aliases_input",
          "error", "oom", "crash", "timeout")
NOT_RUN = ("unsupported", "skipped")


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
        for kind, test in (("NaN", np.isnan), ("+Inf", np.isposinf), ("-Inf", np.isneginf)):
            differs = test(rounded) != test(got)
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
        finite = np.isfinite(rounded)
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
            reason=f"{outside} of {expected.y.size} elements outside tolerance (worst {ratio:.3g}x it)",
        )
    return verdict


def _same_bits(a: np.ndarray, b: np.ndarray) -> bool:
    a, b = np.ascontiguousarray(a), np.ascontiguousarray(b)
    if a.shape != b.shape or a.dtype != b.dtype:
        return False
    unsigned = f"u{a.dtype.itemsize}"
    return bool(np.array_equal(a.view(unsigned), b.view(unsigned)))


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


def _to_backend(backend, host: Inputs, device: str):
    """(x, weight, bias, grad_y) as fresh framework arrays (None stays None)."""
    return tuple(None if array is None else backend.from_numpy(array, device)
                 for array in (host.x, host.weight, host.bias, host.grad_y))


def run_case(backend, case, host: Inputs, expected: Expected) -> Verdict:
    """Run ``backend`` on one case (inputs and oracle prepared) and judge it.

    The backend gets fresh framework arrays; x, weight and bias are compared bit for bit
    with the host originals after the call, and the output must not alias x. Backward and
    train cases go to :func:`run_backward_case`.
    """
    refusal = _scope_reason(backend, case)
    if refusal:
        return refusal
    try:
        x, weight, bias, _ = _to_backend(backend, host, case.device)
    except Exception as error:
        return Verdict(status_of(error), "from_numpy failed: " + failure_text(error))
    if case.pass_ != "forward":
        from .checks_backward import run_backward_case

        return run_backward_case(backend, case, host, expected, (x, weight, bias))
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
    if verdict.status in ("wrong_shape",):
        return verdict
    try:
        aliased = backend.shares_memory(out, x)
        originals = (("x", x, host.x), ("weight", weight, host.weight), ("bias", bias, host.bias))
        modified = [name for name, native, original in originals
                    if native is not None and not _same_bits(backend.to_numpy(native), original)]
    except Exception as error:
        return Verdict("error", "checking inputs after the call failed: " + failure_text(error))
    if aliased:
        return dataclasses.replace(verdict, status="aliases_input", reason="the output shares memory with x")
    if modified:
        return dataclasses.replace(
            verdict, status="input_modified", reason=f"the call modified {', '.join(modified)} in place"
        )
    return verdict


