"""Checking a backward or train case on one backend: ``forward_train``, then ``backward``,
each output judged against the oracle (:mod:`harness.expected_backward`).

What a row of such a case asserts, beyond the forward's checks:

* every gradient within its tolerance (:mod:`harness.tolerances_backward`), NaN/Inf
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
import time

import numpy as np

from backends.dtypes import dtype_name

from .checks import Verdict, _same_bits, failure_text, judge, status_of

PER_CHANNEL = ("grad_weight", "grad_bias")


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


def run_backward_case(backend, case, host, expected, arrays) -> Verdict:
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
        index = ("grad_x", "grad_weight", "grad_bias").index(name)
        verdicts.append(judge_output(name, first[index], case.dtype if name == "grad_x" else param_dtype, want))
    verdict = dataclasses.replace(combine(verdicts), call_s=call_s)
    try:
        again = backend.backward(grad_y, saved)
        _wait_all(backend, again, device)
        second = [None if g is None else backend.to_numpy(g) for g in again]
        differ = [name for name, a, b in zip(("grad_x", "grad_weight", "grad_bias"), first, second)
                  if (a is None) != (b is None) or (a is not None and not _same_bits(a, b))]
    except Exception as error:
        return Verdict(status_of(error), "backward, called again on the same residuals: " + failure_text(error))
    try:
        originals = (("x", x, host.x), ("weight", weight, host.weight), ("bias", bias, host.bias),
                     ("grad_y", grad_y, host.grad_y))
        modified = [name for name, native, original in originals
                    if native is not None and not _same_bits(backend.to_numpy(native), original)]
        after = _snapshot(backend, residuals)
        if any(b is not None and (a is None or not _same_bits(a, b)) for b, a in zip(before, after)):
            modified.append("the saved residuals")
        pairs = [("grad_x", grads[0], "x", x), ("grad_x", grads[0], "grad_y", grad_y),
                 ("grad_weight", grads[1], "weight", weight), ("grad_bias", grads[2], "bias", bias)]
        if case.pass_ == "train":
            pairs.append(("y", y, "x", x))
        aliased = [f"{a} shares memory with {b}" for a, out, b, source in pairs
                   if out is not None and source is not None and backend.shares_memory(out, source)]
    except Exception as error:
        return Verdict("error", "checking inputs after the call failed: " + failure_text(error))
    if aliased:
        return dataclasses.replace(verdict, status="aliases_input", reason="; ".join(aliased))
    if modified:
        return dataclasses.replace(verdict, status="input_modified",
                                   reason=f"the backward pass modified {', '.join(modified)} in place")
    verdict = dataclasses.replace(verdict, deterministic=not differ)
    if differ:
        note = f"nondeterministic: a second backward on the same residuals changed bits of {', '.join(differ)}"
        verdict = dataclasses.replace(verdict, reason="; ".join(filter(None, (verdict.reason, note))))
    return verdict


