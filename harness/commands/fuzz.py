"""Search, not only fixed suites: property-based verification with hypothesis.

``fuzz(backends, budget=..., seed=...)`` draws cases (shape and rank, groups, layout,
dtype, parameter dtype, eps, affine, and a parametric input distribution: offset, scale,
per-channel spread, outliers, constant groups; see :class:`harness.problems.inputs.Parametric`),
verifies each on every (backend, device) pair exactly as ``verify`` does (same workers,
oracle, tolerances and statuses), and when a case fails lets hypothesis shrink it to a
minimal one. Each finding is a row whose case id carries everything that decides its
inputs, so ``gnbench verify --case ID`` reproduces it.

How the search is spent: per (backend, device), rounds of :data:`ROUND_EXAMPLES` examples,
each round seeded from ``seed`` and its index (a fixed seed replays the same sequence of
rounds; the budget decides how many run), from an empty example database. A failure's
*class* is (status, layout, known bug); once a class is found and shrunk, later failures of
that class count as found and the search goes on for new classes. Failures that a known
framework bug explains are reported as such (``known_bug``), like in ``verify``. A member of
the correct ensemble (:mod:`harness.commands.ensemble`) failing outside the policy's
domain is no finding: the search for false alarms looks for failures the policy forbids.

hypothesis is an optional dependency (extra ``fuzz``); without it :func:`fuzz` raises a
clear error (the GPU machines have no hypothesis).
"""

from __future__ import annotations

import dataclasses
import math
import time

import backends as registry
from harness.oracle.checks import FAILED
from harness.problems.cases import Case
from harness.problems.inputs import Parametric

from . import ensemble

ROUND_EXAMPLES = 40
MAX_ELEMENTS = 20_000
EPS_CHOICES = (1e-5, 1e-3, 0.1, 1.0, 1e-6, 0.0)


def _has_constant_group(case: Case) -> bool:
    """Whether some (sample, group) of the case's input is constant once rounded."""
    import numpy as np

    from harness.oracle.expected import as_rows
    from harness.problems.inputs import make

    rows = as_rows(np.ascontiguousarray(make(case).x).astype(np.float64), case.num_groups)
    return bool(rows.size) and bool((rows.max(axis=1) == rows.min(axis=1)).any())


class FuzzUnavailableError(registry.GroupNormBenchError, ImportError):
    """hypothesis is not installed."""


def _hypothesis():
    try:
        import hypothesis
    except ImportError as error:
        raise FuzzUnavailableError(
            f"gnbench fuzz needs hypothesis, which is not installed ({error}): pip install 'groupnorm-bench[fuzz]'"
        ) from None
    return hypothesis


def case_strategy(dtypes, max_elements: int = MAX_ELEMENTS):
    """A hypothesis strategy of valid :class:`Case` objects (simplest first, so shrinking
    goes toward small contiguous float-ish cases with plain inputs)."""
    st = _hypothesis().strategies

    def power(low, high):
        return st.integers(low, high).map(lambda e: float(10.0 ** e))

    @st.composite
    def cases(draw):
        rank = draw(st.integers(2, 5))
        n = draw(st.integers(1, 3))
        num_groups = draw(st.integers(1, 6))
        channels = num_groups * draw(st.integers(1, 6))
        spatial = tuple(draw(st.integers(1, 13)) for _ in range(rank - 2))
        shape = (n, channels) + spatial
        if math.prod(shape) > max_elements:  # shrink the spatial sizes, keeping the rank
            spatial = tuple(max(1, s // 4) for s in spatial)
            shape = (n, channels) + spatial
        if n * (channels // num_groups) * math.prod(spatial) == 1:  # GroupNorm refuses one value per group
            n, shape = 2, (2,) + shape[1:]
        layouts = ("contiguous", "strided", "channels_last") if rank >= 3 else ("contiguous", "strided")
        layout = draw(st.sampled_from(layouts))
        dtype = draw(st.sampled_from(tuple(dtypes)))
        offset = draw(st.one_of(st.just(0.0), power(0, 8), power(0, 8).map(lambda v: -v)))
        scale = draw(power(-6, 4))
        spread = draw(st.one_of(st.just(0.0), power(-1, 4)))
        outliers = draw(st.integers(0, 2))
        constant = draw(st.integers(0, 1))
        distribution = Parametric(offset, scale, spread, outliers, constant).name
        eps = draw(st.sampled_from(EPS_CHOICES))
        affine = draw(st.sampled_from(("random", "default", "none")))
        param_dtype = draw(st.sampled_from((None, "float32"))) if dtype in ("float16", "bfloat16") else None
        seed = draw(st.integers(0, 3))
        if eps == 0.0 and _has_constant_group(Case(shape, num_groups, dtype, layout, distribution, seed, 1e-5)):
            eps = EPS_CHOICES[0]  # 0/0: no defined answer (a group constant after rounding to the dtype)
        return Case(shape, num_groups, dtype, layout, distribution, seed, eps, affine, param_dtype)

    return cases()


@dataclasses.dataclass(frozen=True)
class Finding:
    """A minimal failing case of one class on one (backend, device)."""

    backend: str
    device: str
    case_id: str
    status: str
    known_bug: str
    ratio: float
    reason: str
    examples: int  # examples verified on this pair when it was found
    seconds: float  # search time on this pair when it was found

    @property
    def rerun(self) -> str:
        return f"gnbench verify --backends {self.backend} --devices {self.device} --case {self.case_id}"


@dataclasses.dataclass
class FuzzResult:
    """What a fuzz run found, and every row it verified (results schema)."""

    findings: list
    rows: list
    examples: dict  # (backend, device) -> examples verified
    seconds: dict  # (backend, device) -> search seconds
    not_run: list

    def frame(self):
        import pandas as pd

        from harness.records.results import COLUMNS

        return pd.DataFrame(self.rows, columns=list(COLUMNS))


class _Found(Exception):
    """Raised inside the property to make hypothesis shrink a failure of a new class."""


def _search_pair(sweep, pair, strategy, budget: float, seed: int, on_row) -> tuple[list, int, float]:
    hypothesis = _hypothesis()
    from hypothesis import HealthCheck, Phase, Verbosity, given, settings

    findings, found_classes = [], set()
    counter = {"examples": 0}
    start = time.perf_counter()

    for round_index in range(10 ** 6):
        if time.perf_counter() - start >= budget:
            break
        last = {}

        @settings(max_examples=ROUND_EXAMPLES, deadline=None, database=None, verbosity=Verbosity.quiet,
                  phases=(Phase.generate, Phase.shrink), suppress_health_check=list(HealthCheck),
                  report_multiple_bugs=False)
        @hypothesis.seed(seed * 1_000_003 + round_index)
        @given(strategy)
        def check(case):
            row = next(iter(sweep.case_rows(case, [pair])))
            counter["examples"] += 1
            on_row(row)
            if row["status"] in FAILED and ensemble.accepts(pair[0], case) is None:  # an ensemble member
                # failing outside the policy's domain is the policy's rejection, not a finding
                key = (row["status"], row["layout"], row.get("known_bug") or "")
                if key not in found_classes:
                    last[key] = row
                    raise _Found(key)

        try:
            check()
        except (_Found, hypothesis.errors.FlakyFailure):  # flaky: the replay passed; the failure is still a row
            pass
        for key, row in last.items():  # the last failing call of a class is its shrunk minimum
            if key in found_classes:
                continue
            found_classes.add(key)
            findings.append(Finding(pair[0], pair[1], row["case_id"], row["status"], row.get("known_bug") or "",
                                    float(row["ratio"]), str(row["reason"]), counter["examples"],
                                    time.perf_counter() - start))
    return findings, counter["examples"], time.perf_counter() - start


def fuzz(backends=None, devices=None, dtypes=None, *, budget: float = 60.0, seed: int = 0,
         max_elements: int = MAX_ELEMENTS, isolate: bool = True, timeout: float = 120.0, on_row=None,
         on_finding=None) -> FuzzResult:
    """Search for failing cases on each (backend, device) for ``budget`` seconds each.

    Args:
        backends, devices, dtypes: as for :func:`harness.verify` (names or lists).
        budget: seconds of search per (backend, device) pair (shrinking a finding included).
        seed: seeds hypothesis; the same seed replays the same search.
        max_elements: the largest case drawn (elements of x).
        on_row, on_finding: callbacks for each verified row and each finding (progress).

    Returns:
        :class:`FuzzResult`.

    Raises:
        FuzzUnavailableError: hypothesis is not installed.
        InvalidArgumentError: unknown names, or a non-positive budget.
    """
    if not (budget > 0 and math.isfinite(budget)):
        raise registry.InvalidArgumentError(f"budget must be a positive number of seconds; got {budget!r}")
    _hypothesis()
    from harness.execution.sweep import Sweep
    from harness.problems.plan import parse_names, plan

    the_plan = plan(backends, "smoke", devices, dtypes, cases=[])
    strategy = case_strategy(parse_names(dtypes, "dtype", registry.DTYPES) or registry.DTYPES, max_elements)
    sweep = Sweep(the_plan, isolate=isolate, timeout=timeout).start()
    rows, findings, examples, seconds = [], [], {}, {}

    def record(row):
        rows.append(row)
        if on_row:
            on_row(row)

    try:
        for pair in sweep.pairs:
            if sweep.info[pair]["availability"] is not None:
                continue
            found, examples[pair], seconds[pair] = _search_pair(sweep, pair, strategy, budget, seed, record)
            for finding in found:
                findings.append(finding)
                if on_finding:
                    on_finding(finding)
    finally:
        sweep.close()
    not_run = list(sweep.not_run) + [(n, d, sweep.info[n, d]["availability"]) for n, d in sweep.pairs
                                     if sweep.info[n, d]["availability"] is not None]
    return FuzzResult(findings, rows, examples, seconds, not_run)
