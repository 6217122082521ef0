"""Verification: run backends on cases and judge each output against the oracle.

``verify(...)`` returns one pandas row per (case, backend, device). A row keeps the
numbers, never just a bool: status, max abs and rel error, the worst element's index
with expected and got values, the tolerance there and the error/tolerance ratio. A
backend that raises becomes an ``error`` row and the sweep goes on.

Status values (the results schema extends this list, never redefines it):

================  ====================================================================
passed            every element within tolerance, NaN/Inf exactly where the oracle has them
mismatch          some finite element farther from the oracle than its tolerance
wrong_shape       output shape differs from the input's
wrong_dtype       output dtype differs from the input's
nan_mismatch      NaN or +/-Inf positions differ from the oracle's
input_modified    the call changed x, weight or bias
aliases_input     the output shares memory with x
error             the backend raised (reason: exception type and message)
unsupported       the backend declares the case out of scope (reason from ``supports``)
skipped           the backend cannot run on the device here (reason from ``availability``)
================  ====================================================================
"""

from __future__ import annotations

import dataclasses
import math
import time
from typing import Callable, Iterable, Sequence

import numpy as np

import backends as registry
from backends.dtypes import dtype_name, numpy_dtype

from . import inputs as case_inputs
from . import memory
from .cases import Case
from .environment import environment
from .expected import BLOCK_ELEMENTS, Expected
from .results import COLUMNS as RESULT_COLUMNS
from .results import SCHEMA_VERSION

STATUSES = (
    "passed", "mismatch", "wrong_shape", "wrong_dtype", "nan_mismatch",
    "input_modified", "aliases_input", "error", "unsupported", "skipped",
)
FAILED = ("mismatch", "wrong_shape", "wrong_dtype", "nan_mismatch", "input_modified", "aliases_input", "error")
NOT_RUN = ("unsupported", "skipped")


@dataclasses.dataclass(frozen=True)
class Verdict:
    """How one output compares with the oracle.

    ``ratio`` is max(|got - expected| / tolerance) over finite elements: above 1 fails.
    ``worst_index`` is that element's index (for NaN/Inf mismatches, the first differing
    element), with ``expected`` (oracle, float64), ``got`` and ``tolerance`` there.
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


def _failure_text(error: BaseException) -> str:
    text = f"{type(error).__name__}: {error}".strip()
    return text if len(text) <= 600 else text[:597] + "..."


def run_case(backend, case: Case, host: case_inputs.Inputs, expected: Expected) -> Verdict:
    """Run ``backend`` on one case (inputs and oracle prepared) and judge it.

    The backend gets fresh framework arrays; x, weight and bias are compared bit for bit
    with the host originals after the call, and the output must not alias x.
    """
    try:
        reason = backend.supports(case)
    except Exception as error:
        return Verdict("error", "supports() failed: " + _failure_text(error))
    if reason:
        return Verdict("unsupported", reason)
    try:
        x = backend.from_numpy(host.x, case.device)
        weight = None if host.weight is None else backend.from_numpy(host.weight, case.device)
        bias = None if host.bias is None else backend.from_numpy(host.bias, case.device)
    except Exception as error:
        return Verdict("error", "from_numpy failed: " + _failure_text(error))
    try:
        out = backend.group_norm(x, case.num_groups, weight, bias, case.eps)
        backend.synchronize(case.device)
        y = backend.to_numpy(out)
    except Exception as error:
        return Verdict("error", _failure_text(error))
    verdict = judge(y, case.dtype, expected)
    if verdict.status in ("wrong_shape",):
        return verdict
    try:
        aliased = backend.shares_memory(out, x)
        originals = (("x", x, host.x), ("weight", weight, host.weight), ("bias", bias, host.bias))
        modified = [name for name, native, original in originals
                    if native is not None and not _same_bits(backend.to_numpy(native), original)]
    except Exception as error:
        return Verdict("error", "checking inputs after the call failed: " + _failure_text(error))
    if aliased:
        return dataclasses.replace(verdict, status="aliases_input", reason="the output shares memory with x")
    if modified:
        return dataclasses.replace(
            verdict, status="input_modified", reason=f"the call modified {', '.join(modified)} in place"
        )
    return verdict


# -- planning and sweeping -------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Plan:
    """What a sweep will run: cases x (backend, device) pairs, plus the pairs left out."""

    cases: tuple[Case, ...]
    pairs: tuple[tuple[str, str], ...]
    not_run: tuple[tuple[str, str, str], ...] = ()

    @property
    def size(self) -> int:
        return len(self.cases) * len(self.pairs)


def availability(backend, device: str) -> str | None:
    """``backend.availability(device)``, with an exception turned into the reason."""
    try:
        return backend.availability(device)
    except Exception as error:
        return "availability() failed: " + _failure_text(error)


def _names(value, kind: str, allowed: Sequence[str]) -> list[str] | None:
    if value is None:
        return None
    items = [v.strip() for v in (value.split(",") if isinstance(value, str) else value)]
    items = [v for v in items if v]
    unknown = [v for v in items if v not in allowed]
    if unknown:
        raise registry.InvalidArgumentError(
            f"unknown {kind} {', '.join(map(repr, unknown))}; valid {kind}s: {', '.join(allowed)}"
        )
    return items


def plan(backends=None, suite="default", devices=None, dtypes=None, cases=None) -> Plan:
    """Resolve names into a :class:`Plan` (raises InvalidArgumentError listing valid names).

    Args:
        backends: backend names (list or comma-separated string); None = all registered.
        suite: suite name(s), list or comma-separated; ignored when ``cases`` is given.
        devices: device names; None = every device where a backend is available.
        dtypes: dtype names to keep; None = all.
        cases: explicit cases (Case objects or ids) instead of a suite.
    """
    from . import suites

    named = _names(backends, "backend", registry.names())
    backend_names = named or registry.names()
    device_names = _names(devices, "device", registry.DEVICES)
    dtype_names = _names(dtypes, "dtype", registry.DTYPES)
    if cases is not None:
        chosen = [c if isinstance(c, Case) else Case.from_id(c) for c in cases]
    else:
        chosen = []
        for name in _names(suite, "suite", suites.names()) or ["default"]:
            chosen.extend(suites.get(name))
    if dtype_names:
        chosen = [c for c in chosen if c.dtype in dtype_names]
    unique = tuple(dict.fromkeys(c.on("cpu") for c in chosen))
    pairs, not_run = [], []
    for name in backend_names:
        backend = registry.get(name)
        devices_here = [d for d in device_names or registry.DEVICES if d in backend.devices]
        reasons = {device: availability(backend, device) for device in devices_here}
        runs_somewhere = any(reason is None for reason in reasons.values())
        for device, reason in reasons.items():
            # Asked for by device, or a named backend that runs nowhere: skipped rows say why.
            if reason is None or device_names is not None or (name in (named or ()) and not runs_somewhere):
                pairs.append((name, device))
            else:
                not_run.append((name, device, reason))
    return Plan(unique, tuple(pairs), tuple(not_run))


def _row(case: Case, backend_name: str, version: str, verdict: Verdict, seconds: float,
         groups: tuple[int, int], environment: dict) -> dict:
    row = {
        "case_id": case.id,
        "backend": backend_name,
        "device": case.device,
        "dtype": case.dtype,
        "shape": "x".join(map(str, case.shape)),
        "num_groups": case.num_groups,
        "layout": case.layout,
        "distribution": case.distribution,
        "seed": case.seed,
        "eps": case.eps,
        "affine": case.affine,
        "param_dtype": case.param_dtype or case.dtype,
        "group_size": case.group_size,
        "status": verdict.status,
        "max_abs_err": verdict.max_abs_err,
        "max_rel_err": verdict.max_rel_err,
        "ratio": verdict.ratio,
        "tolerance": verdict.tolerance,
        "worst_index": None if verdict.worst_index is None else ",".join(map(str, verdict.worst_index)),
        "expected": verdict.expected,
        "got": verdict.got,
        "reason": verdict.reason,
        "verified_groups": groups[0],
        "total_groups": groups[1],
        "seconds": seconds,
        "backend_version": version,
        "schema_version": SCHEMA_VERSION,
    }
    row.update(environment)
    return row


def _memory_reason(case: Case, backend, device: str) -> str | None:
    """Why ``case`` cannot run on ``backend``/``device`` for memory, or None if it fits."""
    host_need = memory.case_host_bytes(case) + memory.backend_host_bytes(case, device)
    available = memory.host_available()
    if host_need > available:
        return (f"needs about {memory.gib(host_need)} of host memory (inputs, outputs, oracle); "
                f"{memory.gib(available)} available")
    if device != "cpu":
        try:
            free = backend.free_memory(device)
        except Exception:  # unknown free memory does not block the run
            free = None
        if free is not None and memory.device_bytes(case) > free:
            return (f"needs about {memory.gib(memory.device_bytes(case))} on {device}; "
                    f"{memory.gib(free)} free")
    return None


def sweep(the_plan: Plan, on_row: Callable[[dict], None] | None = None) -> Iterable[dict]:
    """Run a plan, yielding one row per (case, backend, device); inputs and oracle are
    computed once per case and shared by every backend. A case too large for the memory
    here becomes ``skipped`` rows saying how much it needs."""
    backends = {name: registry.get(name) for name, _ in the_plan.pairs}
    versions, available = {}, {}
    env = environment()
    for name, device in the_plan.pairs:
        available[name, device] = availability(backends[name], device)
        try:
            versions[name] = backends[name].version() if available[name, device] is None else versions.get(name, "")
        except Exception as error:  # a version() that raises is data too
            versions[name] = f"unknown ({_failure_text(error)})"
    for case in the_plan.cases:
        reasons = {
            (name, device): available[name, device] or _memory_reason(case, backends[name], device)
            for name, device in the_plan.pairs
        }
        runnable = [pair for pair, reason in reasons.items() if reason is None]
        host = case_inputs.make(case) if runnable else None
        expected = Expected.of(case, host) if runnable else None
        groups = (len(expected.groups) if expected else 0, case.shape[0] * case.num_groups)
        for name, device in the_plan.pairs:
            on_device = case.on(device)
            start = time.perf_counter()
            if reasons[name, device]:
                verdict = Verdict("skipped", reasons[name, device])
            else:
                verdict = run_case(backends[name], on_device, host, expected)
            row = _row(on_device, name, versions[name], verdict, time.perf_counter() - start,
                       groups if verdict.status not in NOT_RUN else (0, groups[1]), env)
            if on_row is not None:
                on_row(row)
            yield row
        del host, expected


def verify(backends=None, suite="default", devices=None, dtypes=None, cases=None):
    """Verify backends on a suite; one row per (case, backend, device).

    Args:
        backends: names (list or comma-separated); None = all registered backends.
        suite: suite name(s); see :func:`harness.suites.names`.
        devices: device names; None = every device where each backend is available.
        dtypes: dtype names to keep; None = all.
        cases: explicit cases (Case objects or ids) instead of a suite.

    Returns:
        pandas.DataFrame in the results schema (:data:`harness.results.COLUMNS`): the
        case's fields, the verdict (status, max_abs_err, max_rel_err, ratio, tolerance,
        worst_index, expected, got, reason), verified_groups/total_groups, seconds,
        backend_version, and the environment. ``df.attrs["not_run"]`` lists
        (backend, device, reason) for pairs left out because they are unavailable here.
    """
    import pandas as pd

    the_plan = plan(backends, suite, devices, dtypes, cases)
    frame = pd.DataFrame(list(sweep(the_plan)), columns=COLUMNS)
    frame.attrs["not_run"] = list(the_plan.not_run)
    return frame


COLUMNS = list(RESULT_COLUMNS)
