"""Verification sweeps on a Ray cluster: the rows of a local sweep, per machine type.

``gnbench verify --cluster ADDRESS`` (``harness.verify(..., cluster=ADDRESS)``; ``local``
starts a Ray instance on this machine) runs a sweep on an existing Ray cluster. Ray
schedules and moves the messages; the harness keeps what a local sweep does:

* **Tasks** are (backend, device, batch of case ids: up to 256 cases, fewer when they are
  large). A task runs a local
  :class:`harness.execution.sweep.Sweep` on its node: the backend in a worker process of its own
  (a segfault, hang or OOM is a ``crash``/``timeout``/``oom`` row, as locally), the inputs
  and the oracle regenerated on the node from the case id (only ids and rows cross the
  network), the node's environment in each row. Rows stream back as each case finishes
  (a Ray generator task); the CLI writes them as it writes a local run's
  (:class:`harness.results.RowLog`: fsynced as they come, ``--resume``).
* **Which nodes.** At start the driver asks every alive node for its
  :func:`fingerprint`: framework versions, project commit, and a hash of every source
  file of ``backends/`` (the kernels among them), ``harness/`` and ``groupnorm_bench/``.
  A node that differs from the driver is refused, the differences are its reason, and it
  gets no task; each task checks again on its node before it runs (a node re-installed
  meanwhile refuses the task, which then goes to another node).
* **Resources.** A CUDA task asks Ray for one GPU, a CPU task for ``cpus`` CPUs.
  ``accelerators=["H100", "A100"]`` runs the whole sweep once per type, each task asking
  for Ray's ``accelerator_type:<T>`` resource (which Ray gives a node from its GPU's
  model, or ``ray start --resources``); rows carry the type in ``machine_type``. Without
  it every case runs once, wherever Ray places it, and rows carry their node's own type.
* **Faults.** Ray's retries are off (``max_retries=0``) and the harness retries instead,
  so that a retry is recorded: a task whose Ray worker process dies or whose node is lost
  mid-task is resubmitted once (:data:`RETRIES`) for the cases it had not answered,
  pinned to another node that can take it when there is one; those rows say ``attempt``
  2 and why in ``retry_reason``. A second death makes the remaining cases ``crash`` rows
  with both reasons. An exception raised on the node by the harness itself (a plugin that
  does not import there, say) is not retried: the remaining cases become ``error`` rows.
* **Backends** must be importable on a node: built-ins, entry points, or registered by a
  plugin module every node loads (``plugins=``, ``--plugin``). A backend registered at
  run time any other way is refused before anything starts.

Memory: Ray's object store takes the node's shared memory, so a node's sweep holds the
object store's whole capacity back from the host memory a case may use (conservative:
the part of the store in use is already missing from MemAvailable).

Not here: timing (``bench`` needs exclusive nodes, which a shared cluster does not promise), and a deadline for a
Ray task that hangs without dying (a backend that hangs is a ``timeout`` row already).
"""

from __future__ import annotations

import dataclasses
import glob
import hashlib
import importlib.util
import itertools
import json
import os
import platform

import backends as registry
from harness.oracle.checks import Verdict
from harness.problems.cases import Case
from harness.problems.plan import Plan
from harness.records import known_bugs
from harness.records.environment import environment, machine
from harness.records.results import COLUMNS, verdict_row
from harness.records.summaries import summary_table

from .sweep import Sweep

RETRIES = 1  # resubmissions of a task whose Ray worker or node died (Ray's own: 0)
BATCH_CASES = 256  # at most this many cases per task, by default...
BATCH_ELEMENTS = 1 << 26  # ...and no more once a task holds this many elements (a big case goes alone)
PROBE_TIMEOUT = 120.0  # seconds a node may take to answer the fingerprint probe
PROJECT_PACKAGES = ("backends", "harness", "groupnorm_bench")
SOURCE_SUFFIXES = (".py", ".cu", ".cuh", ".h", ".toml")
HELD_BY = "Ray's object store"


class ClusterError(registry.GroupNormBenchError, RuntimeError):
    """The cluster cannot run the sweep (Ray missing, no node that matches the driver)."""


# -- what a node must match ---------------------------------------------------------------


def fingerprint() -> dict:
    """What a node must share with the driver: framework versions (package metadata),
    Python's minor version, the project commit, and a hash of each project source file."""
    facts = machine()
    files = {}
    for package in PROJECT_PACKAGES:
        spec = importlib.util.find_spec(package)
        if spec is None or not spec.submodule_search_locations:
            continue
        root = list(spec.submodule_search_locations)[0]
        for path in sorted(glob.glob(os.path.join(root, "**", "*"), recursive=True)):
            if path.endswith(SOURCE_SUFFIXES) and "__pycache__" not in path and os.path.isfile(path):
                with open(path, "rb") as handle:
                    files[f"{package}/{os.path.relpath(path, root)}"] = hashlib.sha256(handle.read()).hexdigest()[:16]
    commit = facts["commit"]
    return {"commit": commit[: -len("-dirty")] if commit.endswith("-dirty") else commit,
            "python": ".".join(platform.python_version_tuple()[:2]),
            "versions": json.loads(facts["versions"]), "files": files}


def _is_kernel(path: str) -> bool:
    return path.endswith((".cu", ".cuh")) or os.path.basename(path).startswith("_numba_")


def mismatch(driver: dict, node: dict) -> str | None:
    """Why ``node``'s :func:`fingerprint` cannot serve ``driver``'s sweep, or None. A
    package the driver has must have the same version on the node (one only the node has
    does not matter: the driver imports no framework); every source file must hash the
    same; commits must agree where both are known."""
    problems = []
    for package, version in sorted(driver["versions"].items()):
        theirs = node["versions"].get(package)
        if theirs != version:
            problems.append(f"{package} {theirs or 'not installed'} on the node, {version} on the driver")
    if node["python"] != driver["python"]:
        problems.append(f"Python {node['python']} on the node, {driver['python']} on the driver")
    if "unknown" not in (driver["commit"], node["commit"]) and node["commit"] != driver["commit"]:
        problems.append(f"commit {node['commit']} on the node, {driver['commit']} on the driver")
    mine, theirs = driver["files"], node["files"]
    changed = sorted(path for path in mine.keys() & theirs.keys() if mine[path] != theirs[path])
    changed += sorted(f"{path} (missing on the node)" for path in mine.keys() - theirs.keys())
    changed += sorted(f"{path} (only on the node)" for path in theirs.keys() - mine.keys())
    if changed:
        kernels = [path for path in changed if _is_kernel(path.split(" ")[0])]
        shown = ", ".join((kernels + [p for p in changed if p not in kernels])[:4])
        problems.append(f"{len(changed)} project source file(s) differ"
                        + (f" ({len(kernels)} of them kernels)" if kernels else "") + f": {shown}"
                        + (", ..." if len(changed) > 4 else ""))
    return "; ".join(problems) or None


# -- on the node --------------------------------------------------------------------------


def _probe() -> dict:
    """Run on each node at start: its id, fingerprint and machine facts."""
    import ray

    return {"node": ray.get_runtime_context().get_node_id(), "fingerprint": fingerprint(), "machine": machine()}


def _object_store_bytes(node: str) -> int:
    import ray

    for entry in ray.nodes():
        if entry.get("NodeID") == node:
            return int(entry.get("Resources", {}).get("object_store_memory", 0))
    return 0


def _node_batch(spec: dict):
    """A Ray generator task: verify ``spec["cases"]`` on ``spec["pair"]`` with a local
    sweep on this node; yields messages (``start``, then ``refused`` or ``not_run``, or
    one ``row`` per case)."""
    import ray

    node = ray.get_runtime_context().get_node_id()
    yield {"kind": "start", "node": node}
    why = mismatch(spec["fingerprint"], fingerprint())
    if why:
        yield {"kind": "refused", "node": node, "reason": why}
        return
    registry.load_plugins(spec["plugins"])
    name, device = spec["pair"]
    cases = tuple(Case.from_id(case_id) for case_id in spec["cases"])
    sweep = Sweep(Plan(cases, (spec["pair"],), (name,) if spec["named"] else (), spec["devices_named"]),
                  isolate=spec["isolate"], timeout=spec["timeout"])
    sweep.reserved, sweep.held_by = _object_store_bytes(node), HELD_BY
    sweep.start()
    if sweep.not_run:
        sweep.close()
        yield {"kind": "not_run", "node": node, "reason": sweep.not_run[0][2]}
        return
    for row in sweep.rows():
        row.update(node=node, attempt=spec["attempt"], retry_reason=spec["retry_reason"],
                   date=spec["date"], run_id=spec["run_id"])
        if spec["machine_type"] is not None:
            row["machine_type"] = spec["machine_type"]
        yield {"kind": "row", "row": row}


# -- on the driver ------------------------------------------------------------------------


@dataclasses.dataclass
class _Task:
    pair: tuple[str, str]
    machine_type: str | None  # the accelerator type asked for; None: any node
    cases: list[str]  # case ids not answered yet
    attempt: int = 1
    retry_reason: str = ""
    avoid: frozenset = frozenset()  # nodes it must not go to
    node: str = ""  # where it runs (its first message says)


@dataclasses.dataclass
class Node:
    id: str
    host: str
    resources: dict
    reason: str | None  # why it is refused, None when it matches the driver

    def fits(self, task: _Task, cpus: float) -> bool:
        need = {"CPU": cpus, "GPU": 1.0 if task.pair[1] == "cuda" else 0.0}
        if task.machine_type is not None:
            need[f"accelerator_type:{task.machine_type}"] = 0.001
        return all(self.resources.get(key, 0.0) >= amount for key, amount in need.items() if amount)


def _ray():
    try:
        import ray
    except ImportError:
        raise ClusterError("a sweep on a cluster needs Ray on the driver and on every node: "
                           "pip install 'groupnorm-bench[cluster]'") from None
    return ray


class ClusterSweep:
    """A sweep whose tasks run on a Ray cluster (see the module docstring); the interface
    of :class:`harness.execution.sweep.Sweep` (``start``, ``rows``, ``frame``, ``total``,
    ``not_run``), so the CLI drives either.

    Args:
        the_plan: the cases and (backend, device) pairs.
        cluster: a Ray address (``auto``, ``HOST:6379``, ``ray://HOST:10001``), or
            ``local`` to start a Ray instance here. A Ray connection this process already
            has is used as it is (and left open).
        accelerators: accelerator types (a list or comma-separated); the sweep runs once
            on each. None: once, on any node.
        plugins: modules that register backends, imported here and on every node.
        cpus: CPUs a CPU task asks for.
        batch: cases per task; None: up to :data:`BATCH_CASES`, closed once it holds
            :data:`BATCH_ELEMENTS` elements (a task costs 0.15-1.2 s beyond its cases
            here: a worker process that imports its framework, the Ray round trip).
        skip: keys already done, as :meth:`harness.results.RowLog.done` lists them.
    """

    columns = list(COLUMNS)

    def __init__(self, the_plan: Plan, *, cluster: str = "local", accelerators=None, plugins=(),
                 isolate: bool = True, timeout: float = 120.0, skip=(), cpus: float = 1.0, batch: int | None = None):
        if isinstance(accelerators, str):
            accelerators = [a.strip() for a in accelerators.split(",") if a.strip()]
        if accelerators is not None and not accelerators:
            raise registry.InvalidArgumentError("accelerators must name at least one type, e.g. H100,A100")
        if batch is not None and not (isinstance(batch, int) and batch >= 1):
            raise registry.InvalidArgumentError(f"batch must be a positive number of cases or None; got {batch!r}")
        if not cpus > 0:
            raise registry.InvalidArgumentError(f"cpus must be positive; got {cpus!r}")
        self.plugins = list(plugins or ())
        registry.load_plugins(self.plugins)
        for name in dict.fromkeys(name for name, _ in the_plan.pairs):
            if not registry.importable(name) and registry.plugin_of(name) not in self.plugins:
                raise registry.InvalidArgumentError(
                    f"backend {name!r} was registered at run time in this process, so a cluster node cannot import "
                    "it: define it in a module every node can import and name that module with --plugin MODULE "
                    "(plugins=[...]), or publish it as an entry point in group 'groupnorm_bench.backends'")
        self.plan, self.address, self.isolate, self.timeout = the_plan, cluster, isolate, timeout
        self.types = list(accelerators) if accelerators else [None]
        self.skip, self.cpus, self.batch = set(skip), cpus, batch
        self._done_anywhere = {key[:3] for key in self.skip}
        self.environment = environment()
        self.pairs = list(the_plan.pairs)
        self.not_run: list[tuple[str, str, str]] = []
        self.nodes: dict[str, Node] = {}
        self.retries: list[tuple[str, str]] = []  # (task label, reason)
        self._ray = self._owned = None
        self._round_robin = itertools.count()

    @classmethod
    def options(cls, args) -> dict:
        return {"cluster": args.cluster, "accelerators": args.accelerators, "plugins": args.plugin or ()}

    # -- set-up

    def _done(self, case_id: str, pair, machine_type) -> bool:
        if machine_type is None:  # once anywhere: done on any machine type
            return (case_id, *pair) in self._done_anywhere
        return (case_id, *pair, machine_type) in self.skip

    def _todo(self):
        return [(pair, machine_type, [c.id for c in self.plan.cases if not self._done(c.id, pair, machine_type)])
                for machine_type in self.types for pair in self.pairs]

    @property
    def total(self) -> int:
        return sum(len(ids) for _, _, ids in self._todo()) + len(self.skip)

    def start(self) -> ClusterSweep:
        """Connect, fingerprint every alive node, refuse those that differ."""
        ray = self._ray = _ray()
        if not ray.is_initialized():
            ray.init(address=self.address, log_to_driver=False, logging_level="WARNING", include_dashboard=False)
            self._owned = True
        self.driver_fingerprint = fingerprint()
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        alive = [entry for entry in ray.nodes() if entry.get("Alive")]
        probe = ray.remote(_probe)
        refs = {entry["NodeID"]: probe.options(num_cpus=0, max_retries=0, scheduling_strategy=
                                               NodeAffinitySchedulingStrategy(entry["NodeID"], soft=False)).remote()
                for entry in alive}
        ready, _ = ray.wait(list(refs.values()), num_returns=len(refs), timeout=PROBE_TIMEOUT)
        for entry in alive:
            node, ref = entry["NodeID"], refs[entry["NodeID"]]
            host = entry.get("NodeManagerHostname", "")
            if ref not in ready:
                reason = f"it did not answer the fingerprint probe within {PROBE_TIMEOUT:.0f} s"
            else:
                try:
                    answer = ray.get(ref)
                    reason = mismatch(self.driver_fingerprint, answer["fingerprint"])
                except ray.exceptions.RayError as error:
                    reason = f"the fingerprint probe failed: {_first_line(error)}"
            self.nodes[node] = Node(node, host, dict(entry.get("Resources", {})), reason)
        if not any(node.reason is None for node in self.nodes.values()):
            refused = "; ".join(f"{n.host} ({n.id[:8]}): {n.reason}" for n in self.nodes.values())
            raise ClusterError(f"no node of the cluster at {self.address} matches this driver: {refused}")
        self._remote = ray.remote(_node_batch)
        return self

    @property
    def refused(self) -> list[Node]:
        return [node for node in self.nodes.values() if node.reason is not None]

    # -- scheduling

    def _batches(self, ids: list[str]):
        if self.batch is not None:
            yield from (ids[start:start + self.batch] for start in range(0, len(ids), self.batch))
            return
        numel = {case.id: case.numel for case in self.plan.cases}
        chunk, elements = [], 0
        for case_id in ids:
            chunk.append(case_id)
            elements += numel[case_id]
            if len(chunk) == BATCH_CASES or elements >= BATCH_ELEMENTS:
                yield chunk
                chunk, elements = [], 0
        if chunk:
            yield chunk

    def _eligible(self, task: _Task) -> list[Node]:
        return [n for n in self.nodes.values()
                if n.reason is None and n.id not in task.avoid and n.fits(task, self.cpus)]

    def _unplaceable(self, task: _Task) -> str | None:
        if self._eligible(task):
            return None
        kind = f"of type {task.machine_type} " if task.machine_type else ""
        device = "with a GPU " if task.pair[1] == "cuda" else f"with {self.cpus:g} CPU(s) "
        fitting = [n for n in self.nodes.values() if n.fits(task, self.cpus)]
        if not fitting:
            return f"no node {kind}{device}in the cluster"
        return (
            f"no node {kind}{device}that matches the driver is left ("
            + "; ".join(f"{n.host} ({n.id[:8]}): {n.reason or 'its task died there'}" for n in fitting)
            + ")"
        )

    def _submit(self, task: _Task):
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        options = {
            "num_cpus": self.cpus,
            "num_gpus": 1 if task.pair[1] == "cuda" else 0,
            "max_retries": 0,
            "retry_exceptions": False,
            "name": f"gnbench {task.pair[0]}:{task.pair[1]} x{len(task.cases)}",
        }
        if task.machine_type is not None:
            options["resources"] = {f"accelerator_type:{task.machine_type}": 0.001}
        fitting = [n for n in self.nodes.values() if n.fits(task, self.cpus)]
        if task.avoid or any(n.reason is not None for n in fitting):  # Ray alone could pick a refused node
            eligible = self._eligible(task)
            node = eligible[next(self._round_robin) % len(eligible)]
            options["scheduling_strategy"] = NodeAffinitySchedulingStrategy(node.id, soft=False)
        spec = {
            "pair": task.pair,
            "cases": list(task.cases),
            "machine_type": task.machine_type,
            "attempt": task.attempt,
            "retry_reason": task.retry_reason,
            "plugins": self.plugins,
            "named": task.pair[0] in self.plan.named,
            "devices_named": self.plan.devices_named,
            "isolate": self.isolate,
            "timeout": self.timeout,
            "fingerprint": self.driver_fingerprint,
            "date": self.environment["date"],
            "run_id": self.environment["run_id"],
        }
        return self._remote.options(**options).remote(spec)

    def _driver_rows(self, task: _Task, status: str, reason: str):
        """Rows the driver writes for cases no node answered (crash, error, skipped)."""
        env = {**self.environment, "machine_type": task.machine_type or ""}
        name, device = task.pair
        for case_id in task.cases:
            case = Case.from_id(case_id).on(device)
            row = known_bugs.annotate(
                verdict_row(case, name, "", Verdict(status, reason), 0.0, (0, case.shape[0] * case.num_groups), env)
            )
            row.update(simulated=False, node=task.node, attempt=task.attempt, retry_reason=task.retry_reason)
            yield row
        task.cases = []

    def _not_placed(self, task: _Task, reason: str):
        """A task no node can take: skipped rows when its device was named, or its backend
        was and no node can take it on any device; else the pair is listed as not run (as a
        local sweep does with an unavailable pair)."""
        name = task.pair[0]
        placeable = any(
            not self._unplaceable(_Task(pair, task.machine_type, [])) for pair in self.pairs if pair[0] == name
        )
        if self.plan.devices_named or (name in self.plan.named and not placeable):
            yield from self._driver_rows(task, "skipped", reason)
        else:
            self._note_not_run(task, reason)

    def _note_not_run(self, task: _Task, reason: str) -> None:
        label = f"on {task.machine_type}: " if task.machine_type else ""
        entry = (task.pair[0], task.pair[1], label + reason)
        if entry not in self.not_run:
            self.not_run.append(entry)
        task.cases = []

    # -- running

    def rows(self):
        """Submit every task; yield rows as they arrive (in no fixed order)."""
        ray = self._ray
        running = {}
        try:
            for pair, machine_type, ids in self._todo():
                for chunk in self._batches(ids):
                    task = _Task(pair, machine_type, chunk)
                    why = self._unplaceable(task)
                    if why:
                        yield from self._not_placed(task, why)
                    else:
                        running[self._submit(task)] = task
            while running:
                ready, _ = ray.wait(list(running), num_returns=1)
                for generator in ready:
                    task = running.pop(generator)
                    follow = yield from self._advance(generator, task)
                    if follow is not None:
                        running[follow[0]] = follow[1]
        finally:
            for generator in running:
                try:
                    ray.cancel(generator, force=True)
                except Exception:
                    pass
            self.close()

    def _advance(self, generator, task: _Task):
        """Take the generator's next message; return what to keep waiting on: (generator,
        task), the same or a resubmission's, or None when the task is over."""
        ray = self._ray
        try:
            message = ray.get(next(generator))
        except StopIteration:
            if task.cases:  # ended without answering everything: should not happen
                yield from self._driver_rows(task, "error", "the cluster task ended without answering this case")
            return None
        except ray.exceptions.RayTaskError as error:  # raised by the harness on the node
            yield from self._driver_rows(task, "error", f"the cluster task failed on its node: {_first_line(error)}")
            return None
        except ray.exceptions.RayError as error:  # the Ray worker process or the node died
            return (yield from self._retry(task, f"{type(error).__name__}: {_first_line(error)}"))
        kind = message["kind"]
        if kind == "start":
            task.node = message["node"]
        elif kind == "row":
            row = message["row"]
            if row["case_id"] in task.cases:
                task.cases.remove(row["case_id"])
            yield row
        elif kind == "refused":  # the node changed since the probe: refuse it, go elsewhere
            node = self.nodes.get(message["node"])
            if node is not None:
                node.reason = message["reason"]
            why = self._unplaceable(task)
            if why:
                yield from self._not_placed(task, why)
                return None
            return self._submit(task), task
        elif kind == "not_run":
            self._note_not_run(task, message["reason"])
            return None
        return generator, task

    def _retry(self, task: _Task, reason: str):
        where = f" on {self.nodes[task.node].host} ({task.node[:8]})" if task.node in self.nodes else ""
        self.retries.append((f"{task.pair[0]}:{task.pair[1]} x{len(task.cases)}{where}", reason))
        if task.attempt > RETRIES:
            yield from self._driver_rows(
                task, "crash", f"the cluster task died twice: first {task.retry_reason}; then {reason}"
            )
            return None
        if not task.cases:
            return None
        self._refresh_nodes()
        retry = _Task(
            task.pair,
            task.machine_type,
            list(task.cases),
            task.attempt + 1,
            reason + where,
            frozenset({task.node}) if task.node else frozenset(),
        )
        if not self._eligible(retry):  # no other node: the same one again rather than none
            retry.avoid = frozenset()
        why = self._unplaceable(retry)
        if why:
            yield from self._driver_rows(retry, "crash", f"the cluster task died ({reason}) and {why}")
            return None
        return self._submit(retry), retry

    def _refresh_nodes(self) -> None:
        alive = {entry["NodeID"] for entry in self._ray.nodes() if entry.get("Alive")}
        for node in self.nodes.values():
            if node.id not in alive and node.reason is None:
                node.reason = "the node left the cluster"

    # -- results

    def frame(self):
        import pandas as pd

        frame = pd.DataFrame(list(self.rows()), columns=self.columns)
        frame.attrs["not_run"] = list(self.not_run)
        return frame

    def report(self, frame, console) -> None:
        """One summary table per machine type; refused nodes and retries, with reasons."""
        from rich.markup import escape

        for machine_type, rows in frame.groupby(frame.machine_type.fillna("").astype(str), sort=True):
            table = summary_table(rows)
            label = machine_type or "machines without a GPU"
            table.title = f"{label}: {table.title}"
            console.print(table)
        for node in self.refused:
            console.print(f"[yellow]node refused[/] {escape(node.host)} ({node.id[:8]}): {escape(node.reason)}")
        for label, reason in self.retries:
            console.print(f"[yellow]task retried[/] {escape(label)}: {escape(reason)}")

    def close(self) -> None:
        if self._owned and self._ray is not None and self._ray.is_initialized():
            self._ray.shutdown()
            self._owned = False


def _first_line(error) -> str:
    text = str(error).strip().splitlines()
    return text[0][:300] if text else type(error).__name__


__all__ = ["ClusterError", "ClusterSweep", "fingerprint", "mismatch"]
