"""A sweep's plan: which cases run on which (backend, device) pairs, from the names a user
gives (backends, suites, devices, dtypes, passes, case ids)."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import backends as registry
from harness.records.results import PASSES

from . import suites
from .cases import Case


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


def parse_names(value, kind: str, allowed: Sequence[str]) -> list[str] | None:
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
            string): the suite's cases of those passes (:func:`harness.problems.suites.get`); with
            explicit cases, each case keeps the pass of its id and only the named passes
            are kept. None: forward for a suite, every pass for explicit cases.
    """
    named = parse_names(backends, "backend", registry.names())
    device_names = parse_names(devices, "device", registry.DEVICES)
    dtype_names = parse_names(dtypes, "dtype", registry.DTYPES)
    passes = parse_names(pass_, "pass", PASSES)
    if cases is not None:
        chosen = [c if isinstance(c, Case) else Case.from_id(c) for c in cases]
        if passes:
            chosen = [c for c in chosen if c.pass_ in passes]
    else:
        chosen = []
        for name in parse_names(suite, "suite", suites.names()) or ["default"]:
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
