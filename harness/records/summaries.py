"""The verification summary table that ``verify`` prints (rich)."""

from __future__ import annotations

import backends
from backends.dtypes import DTYPES

from .known_bugs import unexpected
from .results import FAILED, NOT_RUN, PASSES


def summary_table(frame):
    """Per backend x device x pass x dtype: passed, failed (unexpected), known (failures a
    known framework bug explains), not run, nondeterministic (backward rows whose two runs
    differed in some bit), worst error/tolerance ratio."""
    from rich.table import Table

    table = Table(title="verification summary (ratio = worst |error| / tolerance; must stay <= 1)")
    numeric = ("passed", "failed", "known", "not run", "nondet.", "worst ratio")
    for column in ("backend", "device", "pass", "dtype") + numeric:
        table.add_column(column, justify="right" if column in numeric else "left")
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
