"""The local sweep: one worker process per (backend, device), one case at a time.

Each case's inputs and oracle are made once in the driver and shared with every worker
(:mod:`harness.execution.pool`); each worker's reply becomes one results row
(:func:`harness.records.results.verdict_row`). A backend that raises, crashes, hangs or
runs out of memory becomes a row and the sweep goes on.
"""

from __future__ import annotations

import time
from collections.abc import Iterable

from harness.oracle.checks import Verdict
from harness.oracle.expected import Expected
from harness.problems import inputs as case_inputs
from harness.problems.cases import Case
from harness.problems.plan import Plan
from harness.records import known_bugs
from harness.records.environment import environment
from harness.records.results import COLUMNS, NOT_RUN, verdict_row
from harness.records.summaries import summary_table

from . import memory

FAILED_TO_START = ("crash", "timeout", "oom", "error")  # statuses a worker that did not start reports
PARALLEL_ELEMENTS = 1 << 20  # cases up to this size run on every (backend, device) at once


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
    node's object store, :mod:`harness.execution.cluster`).
    """

    reserved, held_by = 0, ""

    def __init__(self, the_plan: Plan, *, isolate: bool = True, timeout: float = 120.0, skip=()):
        from .pool import remove_stale_files, runner

        remove_stale_files()
        self.plan, self.isolate, self.timeout = the_plan, isolate, timeout
        self.skip = set(skip)
        self.runners = {pair: runner(*pair, isolate, self.worker_environment()) for pair in the_plan.pairs}
        self.info, self.pairs, self.not_run = {}, [], []
        self.environment = environment()

    def start(self) -> Sweep:
        from .pool import call_all

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

    def case_rows(self, case: Case, todo):
        from .pool import LocalCase, SharedCase

        reasons = {
            pair: self.info[pair]["availability"] or _host_memory_reason(case, pair[1], self.reserved, self.held_by)
            for pair in todo
        }
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
                result = results.get((name, device)) or {
                    "verdict": failure or Verdict("skipped", reasons[name, device])
                }
                verdict = _verdict_of(result)
                row = known_bugs.annotate(
                    verdict_row(
                        case.on(device),
                        name,
                        self.info[name, device].get("version") or "",
                        verdict,
                        seconds if (name, device) in results else 0.0,
                        groups if verdict.status not in NOT_RUN else (0, groups[1]),
                        self.environment,
                    )
                )
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
        from .pool import call_each

        results = {}
        groups = [pairs] if case.numel <= PARALLEL_ELEMENTS else [[pair] for pair in pairs]
        for group in groups:
            tasks = [
                (self.runners[name, device], (case.on(device), shared, memory.device_bytes(case.on(device))))
                for name, device in group
            ]
            timeout = max(case_timeout(case.on(device), self.timeout) for _, device in group)
            for pair, reply in zip(group, call_each(tasks, "verify", timeout=timeout)):
                results[pair] = reply
        return results

    def extra_columns(self, result: dict, row: dict) -> dict:
        return {}

    def worker_environment(self) -> dict:
        """Variables set in each worker before its framework loads (see :mod:`harness.execution.pool`)."""
        from .pool import VERIFY_ENVIRONMENT

        return dict(VERIFY_ENVIRONMENT)

    @property
    def columns(self) -> list:
        return list(COLUMNS)

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
                    yield from self.case_rows(case, todo)
        finally:
            self.close()

    def close(self) -> None:
        for run in self.runners.values():
            run.close()
