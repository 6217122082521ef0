"""What a runner does for one backend on one device, in a worker or in-process.

Each task takes ``(backend, device, payload, state)`` and returns a plain dict (it
crosses a pipe): ``hello`` (availability, version, threads), ``verify`` (one case),
``bench_start`` / ``bench_round`` / ``bench_end`` (verify a case, then time it in rounds
interleaved with other backends), ``copy`` (the device's copy bandwidth, timed the same
way). An exception becomes ``{"status": "error" or "oom", "reason": ...}``.
"""

from __future__ import annotations

from harness.oracle.checks import Verdict, failure_text, run_case, status_of

from .timing import Session, measure

UNTIMED = ("error", "oom", "crash", "timeout", "unsupported", "skipped", "wrong_shape")


def _device_memory_reason(backend, device: str, needed: int) -> str | None:
    if device == "cpu":
        return None
    try:
        free = backend.free_memory(device)
    except Exception:
        return None
    if free is not None and needed > free:
        return f"needs about {needed / 2**30:.1f} GiB on {device}; {free / 2**30:.1f} GiB free"
    return None


def _hello(backend, device, payload, state):
    try:
        reason = backend.availability(device)
    except Exception as error:
        reason = "availability() failed: " + failure_text(error)
    version = threads = None
    try:
        simulated = bool(backend.simulated(device))
    except Exception:
        simulated = False
    if reason is None:
        try:
            version = backend.version()
        except Exception as error:
            version = f"unknown ({failure_text(error)})"
        try:
            threads = backend.threads(device)
        except Exception:
            threads = None
    return {"availability": reason, "version": version, "threads": threads, "simulated": simulated}


def _verify(backend, device, payload, state):
    case, shared, device_bytes = payload
    reason = _device_memory_reason(backend, device, device_bytes)
    if reason:
        return {"verdict": Verdict("skipped", reason)}
    host, expected = shared.load()
    return {"verdict": run_case(backend, case, host, expected)}


def _bench_start(backend, device, payload, state):
    case, shared, device_bytes, flush = payload
    reason = _device_memory_reason(backend, device, device_bytes)
    if reason:
        return {"verdict": Verdict("skipped", reason)}
    host, expected = shared.load()
    verdict = run_case(backend, case, host, expected)
    if verdict.status in UNTIMED:
        return {"verdict": verdict}
    call = timed_call(backend, case, host, device)
    state["session"] = Session(call, backend, device, flush=flush).start()
    return {"verdict": verdict, "timed": True}


def timed_call(backend, case, host, device):
    """The zero-argument call a bench times, on fresh device arrays: the forward
    (``group_norm``); the backward alone (``backward`` on the residuals of one
    ``forward_train`` made here, untimed); or a training step (``forward_train`` then
    ``backward``)."""
    x = backend.from_numpy(host.x, device)
    weight = None if host.weight is None else backend.from_numpy(host.weight, device)
    bias = None if host.bias is None else backend.from_numpy(host.bias, device)
    groups, eps = case.num_groups, case.eps
    if case.pass_ == "forward":
        return lambda: backend.group_norm(x, groups, weight, bias, eps)
    grad_y = backend.from_numpy(host.grad_y, device)
    if case.pass_ == "backward":
        _, saved = backend.forward_train(x, groups, weight, bias, eps)
        return lambda: backend.backward(grad_y, saved)

    def train_step():
        _, saved = backend.forward_train(x, groups, weight, bias, eps)
        return backend.backward(grad_y, saved)

    return train_step


def _bench_round(backend, device, budget, state):
    state["session"].round(budget)
    return {"ok": True}


def _bench_end(backend, device, payload, state):
    session = state.pop("session")
    return {"measurement": session.measurement()}


def _copy(backend, device, payload, state):
    nbytes, budget = payload
    kernel = backend.copy_kernel(device, nbytes)
    if kernel is None:
        return {"measurement": None}
    return {"measurement": measure(kernel, backend, device, budget=budget)}


HANDLERS = {
    "hello": _hello,
    "verify": _verify,
    "bench_start": _bench_start,
    "bench_round": _bench_round,
    "bench_end": _bench_end,
    "copy": _copy,
}


def handle(backend, device: str, kind: str, payload, state: dict) -> dict:
    """Run task ``kind``; exceptions become a status and a reason."""
    try:
        return HANDLERS[kind](backend, device, payload, state)
    except Exception as error:
        state.pop("session", None)
        return {"status": status_of(error), "reason": failure_text(error)}
