"""Verification sweeps: run backends on cases and judge each output against the oracle.

``verify(...)`` returns one pandas row per (case, backend, device) in the results schema
(:mod:`harness.results`). Each (backend, device) runs in its own worker process
(:mod:`harness.workers`), so a backend that raises, crashes, hangs or runs out of memory
becomes a row and the sweep goes on; the verdicts are made by :mod:`harness.checks`.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Iterable, Sequence

import backends as registry

from . import inputs as case_inputs
from . import known_bugs, memory
from .cases import Case
from .checks import FAILED, NOT_RUN, STATUSES, Verdict, failure_text, judge, run_case  # noqa: F401
from .environment import environment
from .expected import Expected
from .results import COLUMNS as RESULT_COLUMNS
from .results import SCHEMA_VERSION

FAILED_TO_START = ("crash", "timeout", "oom", "error")  # statuses a worker that did not start reports
JUDGED = ("passed", "mismatch", "nan_mismatch", "wrong_shape", "wrong_dtype", "input_modified", "aliases_input")
PARALLEL_ELEMENTS = 1 << 20  # cases up to this size run on every (backend, device) at once


# -- planning ---------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Plan:
    """What a sweep will run: cases x (backend, device) pairs. Availability is asked of
    each pair's worker when the sweep starts (the driver imports no framework)."""

    cases: tuple[Case, ...]
    pairs: tuple[tuple[str, str], ...]
    named: tuple[str, ...] = ()
    devices_named: bool = False

    @property
    def size(self) -> int:
        return len(self.cases) * len(self.pairs)


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


def plan(backends=None, suite="default", devices=None, dtypes=None, cases=None, pass_=None) -> Plan:
    """Resolve names into a :class:`Plan` (raises InvalidArgumentError listing valid names).

    Args:
        backends: backend names (list or comma-separated string); None = all registered
            ones with ``default_selected`` (torch-compile must be named).
        suite: suite name(s), list or comma-separated; ignored when ``cases`` is given.
        devices: device names; None = every device a backend runs on (where available).
        dtypes: dtype names to keep; None = all.
        cases: explicit cases (Case objects or ids) instead of a suite.
        pass_: ``forward``, ``backward`` or ``train`` (names or a comma-separated
            string): the suite's cases of those passes (:func:`harness.suites.get`); with
            explicit cases, each case keeps the pass of its id and only the named passes
            are kept. None: forward for a suite, every pass for explicit cases.
    """
    from . import suites
    from .cases import PASSES

    named = _names(backends, "backend", registry.names())
    device_names = _names(devices, "device", registry.DEVICES)
    dtype_names = _names(dtypes, "dtype", registry.DTYPES)
    passes = _names(pass_, "pass", PASSES)
    if cases is not None:
        chosen = [c if isinstance(c, Case) else Case.from_id(c) for c in cases]
        if passes:
            chosen = [c for c in chosen if c.pass_ in passes]
    else:
        chosen = []
        for name in _names(suite, "suite", suites.names()) or ["default"]:
            for each in passes or ["forward"]:
                chosen.extend(suites.get(name, each))
    if dtype_names:
        chosen = [c for c in chosen if c.dtype in dtype_names]
    unique = tuple(dict.fromkeys(c.on("cpu") for c in chosen))
    pairs = tuple(
        (name, device)
        for name in named or [n for n in registry.names() if registry.get(n).default_selected]
        for device in device_names or registry.DEVICES
        if device in registry.get(name).devices
    )
    return Plan(unique, pairs, tuple(named or ()), device_names is not None)


# -- sweeping ---------------------------------------------------------------------------


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
        "pass": case.pass_,
        "grad_distribution": "" if case.pass_ == "forward" else case.grad_distribution,
        "grad_layout": "" if case.pass_ == "forward" else case.grad_layout or case.layout,
        "status": verdict.status,
        "max_abs_err": verdict.max_abs_err,
        "max_rel_err": verdict.max_rel_err,
        "ratio": verdict.ratio,
        "tolerance": verdict.tolerance,
        "worst_index": None if verdict.worst_index is None else ",".join(map(str, verdict.worst_index)),
        "expected": verdict.expected,
        "got": verdict.got,
        "reason": verdict.reason,
        "output": verdict.output if verdict.status in JUDGED else "",
        **{f"ratio_{name}": verdict.ratios.get(name, float("nan"))
           for name in ("y", "grad_x", "grad_weight", "grad_bias")},
        "deterministic": verdict.deterministic,
        "verified_groups": groups[0],
        "total_groups": groups[1],
        "seconds": seconds,
        "backend_version": version,
        "schema_version": SCHEMA_VERSION,
        "node": "",
        "attempt": 1,
        "retry_reason": "",
    }
    row.update(environment)
    return known_bugs.annotate(row)


def _host_memory_reason(case: Case, device: str, reserved: int = 0, held_by: str = "") -> str | None:
    need = memory.case_host_bytes(case) + memory.backend_host_bytes(case, device)
    available = memory.host_available() - reserved
    if need > available:
        held = f" (after {memory.gib(reserved)} held for {held_by})" if reserved else ""
        return (f"needs about {memory.gib(need)} of host memory (inputs, outputs, oracle); "
                f"{memory.gib(max(available, 0))} available{held}")
    return None


def case_timeout(case: Case, base: float) -> float:
    """Seconds a worker may take for one case: ``base`` plus 0.1 s per million elements."""
    return base + case.numel * 1e-7


def _verdict_of(reply: dict) -> Verdict:
    if "verdict" in reply:
        return reply["verdict"]
    return Verdict(reply.get("status", "error"), reply.get("reason", "no answer"))


class Sweep:
    """A running sweep: workers per (backend, device), one case at a time.

    ``start()`` starts the workers and asks each for its availability (in parallel); iterating
    :meth:`rows` then verifies every case on every available pair (rows for pairs asked
    for by name or device but unavailable are ``skipped``; the others are listed in
    :attr:`not_run`). ``skip`` holds keys already done (resume): (case_id, backend, device,
    machine_type), as :meth:`harness.results.RowLog.done` lists them. ``reserved`` bytes of
    host memory are held back from the memory-fit check (``held_by`` says for what: a Ray
    node's object store, :mod:`harness.cluster`).
    """

    reserved, held_by = 0, ""

    def __init__(self, the_plan: Plan, *, isolate: bool = True, timeout: float = 120.0, skip=()):
        from .workers import remove_stale_files, runner

        remove_stale_files()
        self.plan, self.isolate, self.timeout = the_plan, isolate, timeout
        self.skip = set(skip)
        self.runners = {pair: runner(*pair, isolate, self.worker_environment()) for pair in the_plan.pairs}
        self.info, self.pairs, self.not_run = {}, [], []
        self.environment = environment()

    def start(self) -> "Sweep":
        from .workers import call_all

        # every worker starts (imports its framework) at once
        replies = call_all(self.runners.values(), "hello", timeout=max(self.timeout, 120))
        for pair, reply in zip(list(self.runners), replies):
            if "availability" not in reply:  # the worker did not start: its rows fail, with why
                status = reply.get("status") if reply.get("status") in FAILED_TO_START else "crash"
                reply = {"availability": None, "start_failure": Verdict(
                    status, f"the worker failed to start: {reply.get('reason', 'no answer')}")}
            self.info[pair] = reply
        for name, device in self.plan.pairs:
            reason = self.info[name, device]["availability"]
            runs_somewhere = any(self.info[n, d]["availability"] is None for n, d in self.plan.pairs if n == name)
            if reason is None or self.plan.devices_named or (name in self.plan.named and not runs_somewhere):
                self.pairs.append((name, device))
            else:
                self.not_run.append((name, device, reason))
                self.runners.pop((name, device)).close()
        return self

    @property
    def total(self) -> int:
        return len(self.plan.cases) * len(self.pairs)

    def _case_rows(self, case: Case, todo):
        from .workers import LocalCase, SharedCase

        reasons = {pair: self.info[pair]["availability"] or _host_memory_reason(case, pair[1], self.reserved, self.held_by)
                   for pair in todo}
        runnable = [pair for pair in todo if reasons[pair] is None and "start_failure" not in self.info[pair]]
        shared, groups = None, (0, case.shape[0] * case.num_groups)
        try:
            if runnable:
                host = case_inputs.make(case)
                expected = Expected.of(case, host)
                groups = (len(expected.groups), groups[1])
                shared = SharedCase.create(case, host, expected) if self.isolate else LocalCase(host, expected)
                del host, expected
            start = time.perf_counter()
            results = self.run_pairs(case, shared, runnable) if runnable else {}
            seconds = (time.perf_counter() - start) / max(len(runnable), 1)
            for name, device in todo:
                failure = self.info[name, device].get("start_failure") if reasons[name, device] is None else None
                result = results.get((name, device)) or {"verdict": failure or Verdict("skipped", reasons[name, device])}
                verdict = _verdict_of(result)
                row = _row(case.on(device), name, self.info[name, device].get("version") or "", verdict,
                           seconds if (name, device) in results else 0.0,
                           groups if verdict.status not in NOT_RUN else (0, groups[1]), self.environment)
                row["simulated"] = bool(self.info[name, device].get("simulated"))
                row.update(self.extra_columns(result, row))
                yield row
        finally:
            if shared is not None:
                shared.close()

    def run_pairs(self, case: Case, shared, pairs) -> dict:
        """Results per (backend, device) for one case: every pair at once (their workers
        run in parallel) for a case of up to :data:`PARALLEL_ELEMENTS` elements, one after
        the other for a larger one (whose copies must not all be in memory at once)."""
        from .workers import call_each

        results = {}
        groups = [pairs] if case.numel <= PARALLEL_ELEMENTS else [[pair] for pair in pairs]
        for group in groups:
            tasks = [(self.runners[name, device], (case.on(device), shared, memory.device_bytes(case.on(device))))
                     for name, device in group]
            timeout = max(case_timeout(case.on(device), self.timeout) for _, device in group)
            for pair, reply in zip(group, call_each(tasks, "verify", timeout=timeout)):
                results[pair] = reply
        return results

    def extra_columns(self, result: dict, row: dict) -> dict:
        return {}

    def worker_environment(self) -> dict:
        """Variables set in each worker before its framework loads (see :mod:`harness.workers`)."""
        from .workers import VERIFY_ENVIRONMENT

        return dict(VERIFY_ENVIRONMENT)

    @property
    def columns(self) -> list:
        return COLUMNS

    def report(self, frame, console) -> None:
        console.print(summary_table(frame))

    def frame(self):
        """Run every row into a DataFrame (``attrs["not_run"]``: the pairs left out)."""
        import pandas as pd

        frame = pd.DataFrame(list(self.rows()), columns=self.columns)
        frame.attrs["not_run"] = list(self.not_run)
        return frame

    def rows(self) -> Iterable[dict]:
        machine_type = self.environment["machine_type"]
        try:
            for case in self.plan.cases:
                todo = [(n, d) for n, d in self.pairs if (case.id, n, d, machine_type) not in self.skip]
                if todo:
                    yield from self._case_rows(case, todo)
        finally:
            self.close()

    def close(self) -> None:
        for run in self.runners.values():
            run.close()


def summary_table(frame):
    """Per backend x device x pass x dtype: passed, failed (unexpected), known (failures a
    known framework bug explains), not run, nondeterministic (backward rows whose two runs
    differed in some bit), worst error/tolerance ratio."""
    from rich.table import Table

    from .known_bugs import unexpected

    table = Table(title="verification summary (ratio = worst |error| / tolerance; must stay <= 1)")
    numeric = ("passed", "failed", "known", "not run", "nondet.", "worst ratio")
    for column in ("backend", "device", "pass", "dtype") + numeric:
        table.add_column(column, justify="right" if column in numeric else "left")
    import backends
    from backends.dtypes import DTYPES

    from .cases import PASSES

    rank = {name: index for index, name in enumerate(backends.names())}
    passes = frame["pass"].fillna("forward") if "pass" in frame else "forward"
    order = frame.assign(_backend=frame.backend.map(rank).fillna(len(rank)), _dtype=frame.dtype.map(DTYPES.index),
                         _unexpected=unexpected(frame), _pass=passes)
    order = order.assign(_pass_rank=order._pass.map(PASSES.index))
    order = order.sort_values(["_backend", "device", "_pass_rank", "_dtype"], kind="stable")
    for (backend, device, pass_, dtype), group in order.groupby(["backend", "device", "_pass", "dtype"], sort=False):
        failed = int(group._unexpected.sum())
        known = int(group.status.isin(FAILED).sum()) - failed
        ratio = group.ratio.max()
        nondeterministic = int((group.deterministic == False).sum()) if "deterministic" in group else 0  # noqa: E712
        table.add_row(
            backend, device, pass_, dtype,
            str(int((group.status == "passed").sum())),
            f"[red]{failed}[/]" if failed else "0",
            f"[yellow]{known}[/]" if known else "0",
            str(int(group.status.isin(NOT_RUN).sum())),
            f"[yellow]{nondeterministic}[/]" if nondeterministic else ("0" if pass_ != "forward" else "-"),
            "-" if ratio != ratio else f"{ratio:.3g}",
        )
    return table


def verify(backends=None, suite="default", devices=None, dtypes=None, cases=None, *,
           pass_=None, isolate: bool = True, timeout: float = 120.0, cluster: str | None = None,
           accelerators=None, plugins=()):
    """Verify backends on a suite; one row per (case, backend, device).

    Args:
        backends: names (list or comma-separated); None = all registered backends.
        suite: suite name(s); see :func:`harness.suites.names`.
        devices: device names; None = every device where each backend is available.
        dtypes: dtype names to keep; None = all.
        cases: explicit cases (Case objects or ids) instead of a suite.
        pass_: ``forward`` (default), ``backward``, ``train``, or several (list or
            comma-separated): backward runs ``forward_train`` then ``backward`` and judges
            grad_x, grad_weight and grad_bias; train judges y as well. The argument has a
            trailing underscore because ``pass`` is a Python keyword (the CLI's ``--pass``).
        isolate: run each (backend, device) in its own worker process (default); False runs
            in this process (no protection from crashes and hangs).
        timeout: seconds a worker may take per case, plus 0.1 s per million elements.
        cluster: run on a Ray cluster (:mod:`harness.cluster`): its address, or ``local``
            for a Ray instance on this machine. None (default) runs here and imports no Ray.
        accelerators: with ``cluster``, Ray accelerator types (list or comma-separated):
            the whole sweep runs on each; rows say which in ``machine_type``.
        plugins: modules that register backends (what ``--plugin`` imports), imported
            here and, with ``cluster``, on each node.

    Returns:
        pandas.DataFrame in the results schema (:data:`harness.results.COLUMNS`): the
        case's fields, the verdict (status, max_abs_err, max_rel_err, ratio, tolerance,
        worst_index, expected, got, reason), verified_groups/total_groups, seconds,
        backend_version, and the environment. ``df.attrs["not_run"]`` lists
        (backend, device, reason) for pairs left out because they are unavailable here.
    """
    registry.load_plugins(plugins)
    the_plan = plan(backends, suite, devices, dtypes, cases, pass_)
    if cluster is None:
        if accelerators:
            raise registry.InvalidArgumentError("accelerators picks machine types of a cluster: give cluster= too")
        return Sweep(the_plan, isolate=isolate, timeout=timeout).start().frame()
    from .cluster import ClusterSweep

    return ClusterSweep(the_plan, cluster=cluster, accelerators=accelerators, plugins=plugins, isolate=isolate,
                        timeout=timeout).start().frame()


COLUMNS = list(RESULT_COLUMNS)
