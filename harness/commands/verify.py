"""``verify``: run backends on cases and judge each output against the oracle.

``verify(...)`` returns one pandas row per (case, backend, device) in the results schema
(:mod:`harness.records.results`). Each (backend, device) runs in its own worker process
(:mod:`harness.execution.sweep`), or on a Ray cluster (:mod:`harness.execution.cluster`);
the verdicts are made by :mod:`harness.oracle.checks`.
"""

from __future__ import annotations

import backends as registry
from harness.execution.sweep import Sweep
from harness.problems.plan import plan


def verify(backends=None, suite="default", devices=None, dtypes=None, cases=None, *,
           pass_=None, isolate: bool = True, timeout: float = 120.0, cluster: str | None = None,
           accelerators=None, plugins=()):
    """Verify backends on a suite; one row per (case, backend, device).

    Args:
        backends: names (list or comma-separated); None = all registered backends.
        suite: suite name(s); see :func:`harness.problems.suites.names`.
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
        cluster: run on a Ray cluster (:mod:`harness.execution.cluster`): its address, or ``local``
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
    from harness.execution.cluster import ClusterSweep  # imports Ray: only for a cluster run

    return ClusterSweep(the_plan, cluster=cluster, accelerators=accelerators, plugins=plugins, isolate=isolate,
                        timeout=timeout).start().frame()
