"""Isolation: each (backend, device) runs in a worker process; the driver never imports a
framework.

The driver starts one worker per (backend, device) when a sweep starts and talks to it
over a socket pair: a program of its own (``python -m harness.execution.worker``, never the
caller's main module, never a fork of the caller's process, which may already run torch
or JAX threads). A backend the worker can find by name (built-ins, entry points) is
looked up there; one registered at run time is sent to it by value with cloudpickle (so
even one made of lambdas in a script's ``__main__`` or a notebook cell runs isolated like
ours). A backend that cannot be sent (cloudpickle missing, or the object holds something
that cannot be pickled, e.g. a lock or a device handle) runs in the caller's process,
without isolation, after an :class:`IsolationWarning`. Case data travels through files in shared memory (``/dev/shm``):
the driver writes the inputs and the oracle's expectation once per case, every worker
maps them without a copy. A worker that segfaults, hangs past its timeout or is killed
for memory becomes a ``crash`` / ``timeout`` / ``oom`` row, and is restarted for the next
case. :class:`LocalRunner` runs the same tasks in-process (no isolation, for debugging).
"""

from __future__ import annotations

import dataclasses
import glob
import os
import signal
import tempfile
import time

import numpy as np

import backends as registry
from backends.dtypes import numpy_dtype
from harness.oracle.expected import Expected
from harness.problems.inputs import Inputs

from . import tasks

SHM_DIR = "/dev/shm" if os.path.isdir("/dev/shm") else tempfile.gettempdir()
PREFIX = "gnbench-"


# -- arrays in shared memory ------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class SharedArray:
    """Where a worker finds an array: a file in shared memory and its view."""

    path: str
    dtype: str
    shape: tuple
    strides: tuple
    offset: int

    @classmethod
    def create(cls, array: np.ndarray, dtype: str, path: str) -> SharedArray:
        """Copy ``array`` (any strides >= 0) into a new shared file, keeping its layout."""
        itemsize = array.itemsize
        if array.size == 0:
            extent, strides = itemsize, tuple(array.strides)
        else:
            extent = sum((n - 1) * s for n, s in zip(array.shape, array.strides)) + itemsize
            strides = tuple(array.strides)
        buffer = np.memmap(path, dtype=np.uint8, mode="w+", shape=(max(extent, 1),))
        view = np.ndarray(array.shape, array.dtype, buffer, 0, strides)
        view[...] = array
        buffer.flush()
        del view, buffer
        return cls(path, dtype, tuple(array.shape), strides, 0)

    def attach(self) -> np.ndarray:
        buffer = np.memmap(self.path, dtype=np.uint8, mode="r+")
        return np.ndarray(
            self.shape,
            numpy_dtype(self.dtype) if self.dtype in registry.DTYPES else np.dtype(self.dtype),
            buffer,
            self.offset,
            self.strides,
        )


@dataclasses.dataclass
class SharedCase:
    """A case's host inputs and expectation in shared memory (created by the driver):
    every array (inputs, the oracle's values and tolerances, of each output) in a file of
    its own, and the small metadata alongside."""

    arrays: dict
    expected_meta: dict

    @classmethod
    def create(cls, case, host: Inputs, expected: Expected) -> SharedCase:
        stem = os.path.join(SHM_DIR, f"{PREFIX}{os.getpid()}-{time.monotonic_ns()}")
        param_dtype = case.param_dtype or case.dtype
        named = [
            ("x", host.x, case.dtype),
            ("weight", host.weight, param_dtype),
            ("bias", host.bias, param_dtype),
            ("grad_y", host.grad_y, case.dtype),
        ]
        meta = {}
        for prefix, each in _expectations(expected):
            named += [
                (f"{prefix}y", each.y, "float64"),
                (f"{prefix}tolerance", each.tolerance, "float64"),
                (f"{prefix}groups", each.groups, "int64"),
            ]
            meta[prefix] = (each.shape, each.num_groups, each.dtype, each.condition, each.distinct, each.group_size)
        arrays = {}
        try:
            for name, array, dtype in named:
                if array is not None:
                    arrays[name] = SharedArray.create(np.asarray(array), dtype, f"{stem}-{name}")
        except BaseException:
            cls(arrays, {}).close()
            raise
        return cls(arrays, meta)

    def load(self):
        """(Inputs, Expected) as views of the shared files (in the worker)."""
        from harness.oracle.expected import ExpectedGrads

        view = {name: spec.attach() for name, spec in self.arrays.items()}
        host = Inputs(view["x"], view.get("weight"), view.get("bias"), view.get("grad_y"))

        def expectation(prefix):
            if prefix not in self.expected_meta:
                return None
            shape, num_groups, dtype, condition, distinct, group_size = self.expected_meta[prefix]
            return Expected(
                shape, num_groups, dtype, view[f"{prefix}groups"], view[f"{prefix}y"], view[f"{prefix}tolerance"],
                condition=condition, distinct=distinct, group_size=group_size,
            )

        grads = None
        if "grad_x." in self.expected_meta:
            grads = ExpectedGrads(*(expectation(f"{name}.") for name in ("grad_x", "grad_weight", "grad_bias")))
        return host, dataclasses.replace(expectation(""), grads=grads)

    def close(self) -> None:
        for spec in self.arrays.values():
            try:
                os.remove(spec.path)
            except FileNotFoundError:
                pass


def _expectations(expected: Expected):
    """("", the forward's) and ("grad_x.", ...) for each gradient a backward case has."""
    found = [("", expected)]
    if expected.grads is not None:
        found += [(f"{name}.", each) for name, each in expected.grads.items()]
    return found


@dataclasses.dataclass
class LocalCase:
    """The same interface as :class:`SharedCase` for in-process runs."""

    host: Inputs
    expected: Expected

    def load(self):
        return self.host, self.expected

    def close(self) -> None:
        pass


def remove_stale_files() -> None:
    """Delete shared files of drivers that are no longer running."""
    for path in glob.glob(os.path.join(SHM_DIR, PREFIX + "*")):
        pid = os.path.basename(path)[len(PREFIX) :].split("-", 1)[0]
        try:
            os.kill(int(pid), 0)
        except (ValueError, ProcessLookupError):
            try:
                os.remove(path)
            except OSError:
                pass
        except PermissionError:
            pass


# -- runners ------------------------------------------------------------------------------


class LocalRunner:
    """Runs tasks in this process: no isolation, no timeout. Pins glibc's allocator as
    the workers do (:func:`harness.execution.timing.pin_allocator`), so a bench run in process
    times the same call: unpinned, every call's fresh 268 MB output was mapped and
    faulted in anew (float32 16x64x256x256/8: torch 83 ms in process against 17 ms in a
    worker)."""

    isolated = False

    def __init__(self, name: str, device: str):
        from .timing import pin_allocator

        pin_allocator()
        self.name, self.device = name, device
        self.backend = registry.get(name)
        self.state: dict = {}

    def call(self, kind: str, payload=None, timeout: float | None = None) -> dict:
        return tasks.handle(self.backend, self.device, kind, payload, self.state)

    def send(self, kind: str, payload=None) -> None:
        self.pending = (kind, payload)

    def receive(self, timeout: float | None = None) -> dict:
        return self.call(*self.pending)

    def close(self) -> None:
        self.state.clear()


# Verification workers take turns on the cores: an idle worker whose OpenMP threads spin
# (torch, numba) waiting for work steals them from the one that runs (the default suite
# for four CPU backends took 60 s with spinning, 40 s without). Timing workers keep the
# frameworks' defaults: spinning is part of what a user's call costs.
VERIFY_ENVIRONMENT = {"OMP_WAIT_POLICY": "PASSIVE"}


class WorkerRunner:
    """Runs tasks in a worker process (a program of its own, or a fork) with a timeout per task."""

    isolated = True

    def __init__(self, name: str, device: str, environment=None, pickled: bytes | None = None):
        self.name, self.device, self.environment, self.pickled = name, device, environment, pickled
        self.send_failed = False
        self.oom_kills = None  # the kernel's OOM-kill count when the current task was sent
        self.process = None
        self.connection = None

    def _start(self) -> None:
        # A program of its own (python -m harness.execution.worker): nothing of the driver's state
        # leaks into it, the caller's main module is never run again there
        # (multiprocessing's spawn would re-run a plain script without a __main__ guard),
        # and no fork copies a process whose torch/JAX threads hold locks. A backend
        # registered at run time travels pickled (self.pickled) as the first message.
        self.process, self.connection = _start_program(self.name, self.device, self.environment, self.pickled)

    def _stop(self, kill: bool) -> None:
        if self.process is None:
            return
        if kill and self.process.is_alive():
            self.process.kill()
        self.process.join(timeout=10)
        self.connection.close()
        getattr(self.process, "close_files", lambda: None)()
        self.process = self.connection = None

    def call(self, kind: str, payload=None, timeout: float | None = None) -> dict:
        self.send(kind, payload)
        return self.receive(timeout)

    def send(self, kind: str, payload=None) -> None:
        """Hand the worker a task (starting it if needed); :meth:`receive` gets the answer."""
        if self.process is None:
            self._start()
        self.oom_kills = oom_kills()  # evidence for a SIGKILL during this task
        try:
            self.connection.send((kind, payload))
            self.send_failed = False
        except (BrokenPipeError, OSError):
            self.send_failed = True

    def receive(self, timeout: float | None = None) -> dict:
        """The answer to the task sent last: a reply, or a timeout/crash/oom reply."""
        if self.send_failed:
            return self._died()
        if not self.connection.poll(timeout):
            self._stop(kill=True)
            return {"status": "timeout", "reason": f"no answer within {timeout:.0f} s; the worker was killed"}
        try:
            return self.connection.recv()
        except (EOFError, OSError):
            return self._died()

    def _died(self) -> dict:
        process = self.process
        process.join(timeout=10)
        code = process.exitcode
        tail = getattr(process, "stderr_tail", lambda: "")()
        self._stop(kill=True)
        if code is not None and code < 0 and -code == signal.SIGKILL:
            reply = _sigkill_reply(self.oom_kills, oom_kills())
        elif code is not None and code < 0:
            reply = {"status": "crash", "reason": f"the worker died with signal {signal.Signals(-code).name}"}
        else:
            reply = {"status": "crash", "reason": f"the worker exited with code {code}"}
        if tail:
            reply["reason"] += f"; its stderr ends: {tail}"
        return reply

    def close(self) -> None:
        if self.process is not None:
            try:
                self.connection.send(None)
            except (BrokenPipeError, OSError):
                pass
            self.process.join(timeout=5)
            self._stop(kill=True)


OOM_KILL_FILES = ("/sys/fs/cgroup/memory.events", "/sys/fs/cgroup/memory/memory.oom_control", "/proc/vmstat")


def oom_kills(paths=None) -> int | None:
    """How many processes the kernel's OOM killer has killed, from the first readable of
    this process's memory cgroup (v2 ``memory.events``, v1 ``memory.oom_control``) and the
    machine's ``/proc/vmstat`` (each has an ``oom_kill N`` line); None when none says."""
    if paths is None:
        paths = []
        try:
            with open("/proc/self/cgroup") as handle:
                for line in handle:
                    _, controllers, path = line.rstrip("\n").split(":", 2)
                    if controllers == "":
                        paths.append(f"/sys/fs/cgroup{path.rstrip('/')}/memory.events")
                    elif "memory" in controllers.split(","):
                        paths.append(f"/sys/fs/cgroup/memory{path.rstrip('/')}/memory.oom_control")
        except OSError:
            pass
        paths += OOM_KILL_FILES
    for path in paths:
        try:
            with open(path) as handle:
                for line in handle:
                    key, _, value = line.partition(" ")
                    if key == "oom_kill":
                        return int(value)
        except (OSError, ValueError):
            continue
    return None


def _sigkill_reply(before: int | None, after: int | None) -> dict:
    """A worker died of SIGKILL: ``oom`` only when the kernel recorded an OOM kill meanwhile."""
    if before is not None and after is not None and after > before:
        return {
            "status": "oom",
            "reason": f"the worker was killed by the kernel's out-of-memory killer (oom_kill "
            f"count {before} -> {after} while it ran)",
        }
    evidence = "no OOM kill was recorded meanwhile" if after is not None else "no OOM-kill counter is readable here"
    return {
        "status": "crash",
        "reason": f"the worker was killed by SIGKILL ({evidence}: sent by another process, "
        f"or a memory limit enforced outside this machine's view)",
    }


class _Program:
    """A worker program (``python -m harness.execution.worker``) with the interface of a
    multiprocessing.Process that :class:`WorkerRunner` uses; its stderr goes to a file so
    that a worker that dies says why."""

    def __init__(self, popen, stderr_path: str):
        self.popen, self.stderr_path = popen, stderr_path

    def is_alive(self) -> bool:
        return self.popen.poll() is None

    def kill(self) -> None:
        self.popen.kill()

    def join(self, timeout=None) -> None:
        import subprocess

        try:
            self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            pass

    @property
    def exitcode(self):
        return self.popen.poll()  # negative for a signal, as multiprocessing's

    def stderr_tail(self, limit: int = 600) -> str:
        try:
            with open(self.stderr_path, errors="replace") as handle:
                text = handle.read().strip()
        except OSError:
            return ""
        return text[-limit:]

    def close_files(self) -> None:
        try:
            os.remove(self.stderr_path)
        except OSError:
            pass


def _start_program(name: str, device: str, environment=None, pickled: bytes | None = None):
    """Start ``python -m harness.execution.worker NAME DEVICE FD [--pickled]`` over a socket pair
    (``environment``: variables set for it unless the caller's environment sets them;
    ``pickled``: the backend by value, sent first); returns (process, connection)."""
    import socket
    import subprocess
    import sys
    from multiprocessing.connection import Connection

    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # holds backends/, harness/
    env = dict(os.environ)
    for key, value in (environment or {}).items():
        env.setdefault(key, value)
    # The caller's import path (a checkout, a test folder pytest put on sys.path), so that a
    # pickled backend's modules import there as here.
    path = [root] + [entry for entry in sys.path if entry and os.path.isdir(entry)]
    env["PYTHONPATH"] = os.pathsep.join(entry for entry in dict.fromkeys(path + [env.get("PYTHONPATH", "")]) if entry)
    ours, theirs = socket.socketpair()
    handle, stderr_path = tempfile.mkstemp(prefix=f"{PREFIX}{os.getpid()}-stderr-", dir=SHM_DIR)
    command = [sys.executable, "-m", "harness.execution.worker", name, device, str(theirs.fileno())]
    try:
        popen = subprocess.Popen(
            command + (["--pickled"] if pickled is not None else []),
            pass_fds=(theirs.fileno(),),
            env=env,
            stdin=subprocess.DEVNULL,
            stderr=handle,
        )
    finally:
        os.close(handle)
        theirs.close()
    connection = Connection(ours.detach())
    if pickled is not None:
        try:
            connection.send_bytes(pickled)
        except OSError:
            pass  # the worker died at start: the first call reports it with its stderr
    return _Program(popen, stderr_path), connection


class IsolationWarning(UserWarning):
    """A backend runs in the caller's process because it cannot be sent to a worker."""


def pickled_backend(name: str) -> bytes | None:
    """Backend ``name`` pickled by value for a worker program, or None when a fresh
    process finds it by name (a built-in, an entry point). Raises TypeError (with the
    reason) when it cannot be pickled."""
    if registry.importable(name):
        return None
    backend = registry.get(name)
    try:
        import cloudpickle
    except ImportError:
        raise TypeError("cloudpickle is not installed (pip install cloudpickle)") from None
    try:
        return cloudpickle.dumps(backend)
    except Exception as error:
        raise TypeError(f"it cannot be pickled ({type(error).__name__}: {error})") from None


def call_all(runners, kind: str, payload=None, timeout: float | None = None) -> list[dict]:
    """The same task for several runners at once (their workers run it in parallel, e.g.
    the start-up ``hello``: each imports its framework); the replies, in order."""
    return call_each([(run, payload) for run in runners], kind, timeout)


def call_each(tasks, kind: str, timeout: float | None = None) -> list[dict]:
    """Task ``kind`` for several (runner, payload) at once (their workers run in
    parallel); the replies, in order. A worker that dies or times out answers with its
    status, as :meth:`WorkerRunner.call` does."""
    tasks = list(tasks)
    for run, payload in tasks:
        run.send(kind, payload)
    deadline = None if timeout is None else time.monotonic() + timeout
    return [run.receive(None if deadline is None else max(deadline - time.monotonic(), 0.1)) for run, _ in tasks]


def availability(pairs, timeout: float = 300.0, isolate: bool = True) -> dict:
    """{(name, device): hello reply (``availability``: None or the reason; ``version``,
    ``threads``, ``simulated``)} asked of one worker per pair, in parallel, so that the
    caller imports no framework (``gnbench list``, the self-test, selection)."""
    runners = {pair: runner(*pair, isolate=isolate) for pair in pairs}
    try:
        replies = call_all(runners.values(), "hello", timeout=timeout)
    finally:
        for run in runners.values():
            run.close()
    answers = {}
    for pair, reply in zip(runners, replies):
        if "availability" not in reply:
            reply = {"availability": f"the worker failed to start: {reply.get('status')}: {reply.get('reason')}"}
        answers[pair] = reply
    return answers


def runner(name: str, device: str, isolate: bool, environment=None):
    """A worker for (name, device) (``environment``: variables set in it before any
    framework loads, unless the caller's environment sets them), or an in-process runner
    (``isolate=False``, or a run-time backend that cannot be pickled: then with an
    :class:`IsolationWarning` that says how to isolate it)."""
    if not isolate:
        return LocalRunner(name, device)
    try:
        pickled = pickled_backend(name)
    except TypeError as error:
        import warnings

        warnings.warn(
            f"backend {name!r} runs in this process, without isolation (a crash ends the sweep, a hang "
            f"is not timed out, a framework it loads stays loaded): it cannot be sent to a worker "
            f"process because {error}. Define it in an importable module (a file on sys.path, or an "
            f"entry point in group 'groupnorm_bench.backends') to isolate it.",
            IsolationWarning,
            stacklevel=3,
        )
        return LocalRunner(name, device)
    return WorkerRunner(name, device, environment, pickled)
