"""Pick the fastest *verified* GroupNorm for a problem on this machine.

``fastest(shape, num_groups, dtype, device, ...)`` returns the backend object to call.

* **Eligible** is a backend that (1) passed every case of the ``default`` suite for that
  dtype, device and layout, and (2) passed the queried problem itself on two seeds and
  on an adversarial distribution (``offset``: |mean|/std = 1000, which breaks one-pass
  variance). A fast backend that is wrong only on hard inputs never wins.
* **Fastest** by median device time (or host latency, ``metric="latency"``). A lead
  smaller than the measured noise (the two medians' IQR ranges overlap) is a tie, broken
  by :data:`PREFERENCE` (the best-established implementation first).
* **Evidence** comes from stored results that match this machine and these versions
  (``results=``: files or folders of verify/bench rows; rows count only when their host,
  CPU (model name and signature: family, vector extensions, caches), GPU and each
  backend's version string equal the current ones), else it is
  measured now. The answer is cached on disk under a key made of the machine (host, CPU,
  GPU, driver), every candidate's version (framework versions, kernel hashes) and the
  problem, so any version change is a cache miss.
* A backend that a known framework bug (``harness/records/known_bugs.toml``) puts wrong on the
  problem's class (layout, dtype, rank, device, pass, installed version) is never eligible
  there. A default-suite failure that a known bug explains does not count against a
  backend for problems outside that bug's class (e.g. torch's NaN grad_weight on empty
  groups does not bar torch from a training problem with non-empty groups).
* **Passes.** ``pass_="forward"`` (default) chooses the fastest forward; ``"backward"``
  the fastest backward alone; ``"train"`` the fastest training step (forward_train then
  backward, both verified: what a drop-in module runs when grad is enabled). The
  evidence is then the default suite *in that pass* and the problem in that pass; a
  backend without a backward is not a candidate.
* No eligible backend raises :class:`NoVerifiedBackendError`, saying why each candidate
  was excluded. There is no fallback to an unverified backend.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import threading
import time

import backends as registry
from backends.errors import GroupNormBenchError
from harness.problems.cases import Case
from harness.records import known_bugs
from harness.records.environment import machine

PREFERENCE = ("torch", "cupy", "numba-cuda", "numba-cpu", "jax", "torch-compile", "numpy")
ADVERSARIAL_DISTRIBUTION = "offset"
SEEDS = (0, 1)
EVIDENCE_VERSION = "3"  # how evidence_hash reads its files: a new way invalidates every cached answer


class NoVerifiedBackendError(GroupNormBenchError, LookupError):
    """No backend passed verification for the problem asked."""


@dataclasses.dataclass(frozen=True)
class Candidate:
    """One backend's evidence for a problem."""

    backend: str
    eligible: bool
    why_not: str = ""
    median_s: float = math.nan
    iqr_s: float = math.nan
    latency_median_s: float = math.nan
    latency_iqr_s: float = math.nan
    default_cases: int = 0
    problem_cases: int = 0
    source: str = ""


@dataclasses.dataclass(frozen=True)
class Selection:
    """The choice and everything it rests on."""

    backend: str
    device: str
    case_id: str
    metric: str
    tie: bool
    candidates: tuple
    source: str  # "stored results", "measured now" (or a mix); "cache of DATE (...)" when cached
    seconds: float = math.nan
    cached: bool = False  # answered from the on-disk cache

    def to_json(self) -> str:
        data = dataclasses.asdict(self)
        data["candidates"] = [dataclasses.asdict(c) for c in self.candidates]
        return json.dumps(data, default=float)

    @classmethod
    def from_json(cls, text: str) -> Selection:
        data = json.loads(text)
        data["candidates"] = tuple(Candidate(**c) for c in data["candidates"])
        return cls(**data)


def _cache_dir() -> str:
    base = os.environ.get("GNBENCH_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "groupnorm-bench")
    return os.path.join(base, "select")


def evidence_hash() -> str:
    """Hash of what decides whether a backend counts as verified: the suites' case ids,
    the oracle (reference, tolerance model, expectation, checks), the input generators,
    and the known-bug file. A change to any of them makes every cached answer stale.

    The files are found through the modules themselves, so they follow any move; a file
    that cannot be read counts as its name and the reason, never as an error."""
    from backends.base import hash_files
    from harness.oracle import checks, expected, reference, tolerances
    from harness.problems import inputs, suites

    ids = "\n".join(c.id for pass_ in ("forward", "train") for c in suites.get("default", pass_))
    parts = []
    for path in [module.__file__ for module in (reference, tolerances, expected, checks, inputs)] + [known_bugs.PATH]:
        try:
            parts.append(hash_files([path]))
        except OSError as error:
            parts.append(f"{os.path.basename(path)}: {type(error).__name__}")
    return hashlib.sha256((EVIDENCE_VERSION + "\n" + ids + "\n" + "\n".join(parts)).encode()).hexdigest()[:16]


def cache_key(case: Case, metric: str, names) -> str:
    """Hash of the machine (host, CPU and its signature, GPU, driver, CUDA), the installed
    framework versions, the candidates and their kernel-source hashes, the problem, and
    the evidence rules (:func:`evidence_hash`: suites, tolerance model, known bugs).
    Computed without importing any framework, so a cache hit costs milliseconds."""
    return _key({"candidates": sorted((name, registry.get(name).source_hash()) for name in names),
                 "case": case.id, "device": case.device, "metric": metric})


def _key(what: dict) -> str:
    """Hash of ``what`` with the machine, the installed versions and the evidence rules."""
    facts = machine()
    material = {
        "machine": [facts[k] for k in ("host", "cpu_model", "cpu_signature", "gpu_name", "gpu_driver",
                                       "cuda_version")],
        "packages": facts["versions"],
        "evidence": evidence_hash(),
        **what,
    }
    return hashlib.sha256(json.dumps(material, sort_keys=True).encode()).hexdigest()[:24]


def _class_verdict(name: str, case: Case, isolate: bool, problem_ids) -> tuple:
    """(passed, count, reason, problem rows) for backend ``name``: its default-suite verdict
    on ``case``'s class (pass, dtype, layout, device), cached on disk per machine, versions,
    kernel hash and evidence rules (a model meeting a new shape verifies only the shape),
    and its rows of ``problem_ids``; or (False, 0, reason, None) when it cannot run here."""
    from .verify import verify

    path = os.path.join(_cache_dir(), "class-" + _key({
        "backend": [name, registry.get(name).source_hash()], "device": case.device,
        "class": [case.pass_, case.dtype, case.layout]}) + ".json")
    try:
        with open(path) as handle:
            known = json.load(handle)
    except (OSError, ValueError):
        known = None
    wanted = sorted(set(problem_ids) | (set() if known else set(class_case_ids(case))))
    # one worker for the class and the problem (its start, importing the framework, is most of the cost)
    rows = verify(backends=[name], cases=wanted, devices=[case.device], isolate=isolate)
    not_run = [reason for backend, _, reason in rows.attrs.get("not_run", ()) if backend == name]
    if not_run:
        return False, 0, not_run[0], None
    if known is None:
        passed, count, reason, _ = _default_verdicts(rows, [name], case, isolate, measure=False)[name]
        known = {"passed": bool(passed), "count": int(count), "reason": reason}
        os.makedirs(os.path.dirname(path), exist_ok=True)
        temporary = path + f".{os.getpid()}.{threading.get_ident()}.tmp"
        with open(temporary, "w") as handle:
            json.dump(known, handle)
        os.replace(temporary, path)
    return known["passed"], known["count"], known["reason"], rows[rows.case_id.isin(problem_ids)]


def problem_cases(case: Case) -> list[Case]:
    """The queried problem on two seeds and on the adversarial distribution."""
    return [dataclasses.replace(case, seed=seed, distribution="normal") for seed in SEEDS] + [
        dataclasses.replace(case, seed=0, distribution=ADVERSARIAL_DISTRIBUTION)]


def _matching(frame, versions: dict):
    """Rows produced on this machine by the current version of each backend (on a
    cluster's machine of the same host name, rows of another machine type do not count;
    nor do rows of another CPU signature, or of none: rows of schema 5 and before name
    only the CPU's model, which two different CPUs can share)."""
    if frame is None or frame.empty:
        return frame
    if "cpu_signature" not in frame:  # a frame of schema 5 or before, not read by results.load: CPU unsigned
        return frame.iloc[:0]
    facts = machine()
    same = (frame.host == facts["host"]) & (frame.cpu_model == facts["cpu_model"])
    same &= frame.cpu_signature.fillna("").astype(str) == facts["cpu_signature"]
    same &= frame.gpu_name.fillna("").astype(str) == (facts["gpu_name"] or "")
    if "machine_type" in frame:  # a frame from before schema 5 has none: local rows
        same &= frame.machine_type.fillna("").astype(str) == facts["machine_type"]
    same &= frame.apply(lambda row: versions.get(row.backend) == row.backend_version, axis=1)
    return frame[same]


def class_case_ids(case: Case) -> list[str]:
    """The default suite's cases of ``case``'s class: its pass, dtype and layout."""
    from harness.problems import suites

    return sorted({c.id for c in suites.get("default", case.pass_)
                   if c.dtype == case.dtype and c.layout == case.layout})


def _default_verdicts(stored, names, case: Case, isolate: bool, measure: bool = True):
    """Per backend: (passed everything?, count, reason) over default cases of dtype/layout/device."""
    import pandas as pd

    from .verify import verify

    wanted = set(class_case_ids(case))
    rows = stored[stored.case_id.isin(wanted) & (stored.device == case.device)] if stored is not None else None
    have = set() if rows is None else set(rows.backend)
    missing = [n for n in names if n not in have or len(rows[rows.backend == n].case_id.unique()) < len(wanted)]
    sources = {n: "stored results" for n in names if n not in missing}
    if missing and not measure:
        verdicts = {n: (False, 0, "no stored default-suite rows (measure=False)", "") for n in missing}
        names = [n for n in names if n not in missing]
        missing = []
    else:
        verdicts = {}
    if missing:
        fresh = verify(backends=missing, cases=sorted(wanted), devices=[case.device], isolate=isolate)
        rows = fresh if rows is None else pd.concat([rows[~rows.backend.isin(missing)], fresh])
        sources.update({n: "measured now" for n in missing})
    for name in names:
        mine = rows[rows.backend == name]
        # a failure a known bug explains is that bug's class: the caller already checked the
        # problem is outside every known bug's class (known_bugs.excluding)
        explained = mine.known_bug.fillna("").astype(str) != "" if "known_bug" in mine else False
        bad = mine[(mine.status != "passed") & ~explained]
        reason = (
            "" if bad.empty else f"default suite: {bad.iloc[0].status} on {bad.iloc[0].case_id} ({bad.iloc[0].reason})"
        )
        cases = mine.case_id.nunique()  # a case stored in two result files counts once
        verdicts[name] = (
            bad.empty and cases > 0,
            cases,
            reason or ("" if cases else "no default-suite rows"),
            sources[name],
        )
    return verdicts


def select(
    shape,
    num_groups: int,
    dtype: str = "float32",
    device: str = "cpu",
    *,
    layout: str = "contiguous",
    eps: float = 1e-5,
    affine: str = "random",
    param_dtype=None,
    pass_: str = "forward",
    backends=None,
    metric: str = "device",
    results=None,
    budget: float = 0.5,
    use_cache: bool = True,
    refresh: bool = False,
    isolate: bool = True,
    measure: bool = True,
) -> Selection:
    """The choice for a problem with its evidence (see the module docstring).

    ``use_cache=False`` neither reads nor writes the on-disk cache; ``refresh=True``
    does not read it but replaces its answer with the one found now (so the next call
    answers from the fresh evidence, not a stale one).

    ``measure=False`` answers from the cache and ``results`` only: a candidate whose
    evidence is not stored is not eligible ("no stored ..."), nothing is verified or timed.
    """
    import pandas as pd

    from .bench import bench
    from .verify import verify

    start = time.perf_counter()
    if metric not in ("device", "latency"):
        raise registry.InvalidArgumentError(f"metric must be 'device' or 'latency'; got {metric!r}")
    if not budget > 0:
        raise registry.InvalidArgumentError(f"budget must be a positive number of seconds; got {budget!r}")
    if results is not None and not isinstance(results, pd.DataFrame):  # before the cache can answer
        paths = [results] if isinstance(results, (str, os.PathLike)) else list(results)
        missing = [os.fspath(p) for p in paths if not os.path.exists(p)]
        if missing:
            raise FileNotFoundError(f"no results file or folder at {', '.join(map(repr, missing))}")
    case = Case(
        tuple(shape), num_groups, dtype, layout, "normal", 0, eps, affine, param_dtype, pass_=pass_, device=device
    )
    names = _candidate_names(backends, device)
    from harness.execution.pool import availability

    path = _cache_path(case, metric, names)
    if use_cache and not refresh:
        cached = _read_cache(path, start)
        if cached is not None:
            return cached
    answers = availability([(name, device) for name in names], isolate=isolate)
    info = {name: answers[name, device] for name in names}
    candidates = {
        n: Candidate(n, False, why_not=info[n]["availability"]) for n in names if info[n]["availability"] is not None
    }
    if pass_ != "forward":
        for name in names:
            if name not in candidates and not registry.get(name).supports_backward:
                candidates[name] = Candidate(name, False, why_not=f"implements the forward pass only (no {pass_} pass)")
    installed = json.loads(machine()["versions"])
    for name in [n for n in names if n not in candidates]:
        bug = known_bugs.excluding(name, case, installed)
        if bug is not None:
            candidates[name] = Candidate(
                name,
                False,
                why_not=f"known bug {bug.id} for this class "
                f"({bug.layouts}, {bug.dtypes}, rank {len(case.shape)}): {bug.rerun}",
                source="known bugs",
            )
    live = [n for n in names if n not in candidates]
    versions = {n: info[n].get("version") or "" for n in live}
    stored = None
    if results is not None:
        from harness.records import results as results_module

        frame = (
            results
            if isinstance(results, pd.DataFrame)
            else results_module.load(*([results] if isinstance(results, (str, os.PathLike)) else results))
        )
        stored = _matching(frame, versions)
    if live:
        defaults = _default_verdicts(stored, live, case, isolate, measure)
    else:
        defaults = {}
    problem_ids = [c.id for c in problem_cases(case)]
    qualified = [n for n in live if defaults[n][0]]
    known = stored[stored.case_id.isin(problem_ids) & (stored.device == device)] if stored is not None else None
    # Timing: a stored bench row of the problem itself, else measured now (verified first).
    timing, timing_source = {}, {}
    for name in qualified:
        rows = known[(known.backend == name) & (known.case_id == case.id)] if known is not None else None
        timed = None
        if rows is not None and "median_s" in rows.columns:  # an emulated device's times say nothing: never used
            usable = rows.median_s.notna()
            if "simulated" in rows.columns:
                usable &= ~rows["simulated"].fillna(False).astype(bool)
            timed = rows[usable]
        if timed is not None and len(timed):
            timing[name], timing_source[name] = timed.iloc[-1], "stored results"
    missing_timing = [n for n in qualified if n not in timing]
    fresh = None
    if missing_timing and measure:
        fresh = bench(backends=missing_timing, cases=[case.id], devices=[device], budget=budget, isolate=isolate)
        for name in missing_timing:
            rows = fresh[fresh.backend == name]
            if len(rows):
                timing[name], timing_source[name] = rows.iloc[0], "measured now"
    # Verification of the problem on two seeds and the adversarial distribution.
    checked = {name: {} for name in qualified}
    for frame_part in (known, fresh):
        if frame_part is not None:
            for row in frame_part.itertuples():
                if row.backend in checked and row.case_id in problem_ids:
                    checked[row.backend][row.case_id] = row
    missing_cases = sorted({cid for name in qualified for cid in problem_ids if cid not in checked[name]})
    if missing_cases and measure:
        extra = verify(backends=qualified, cases=missing_cases, devices=[device], isolate=isolate)
        for row in extra.itertuples():
            checked[row.backend].setdefault(row.case_id, row)
    for name in live:
        passed_default, count, reason, default_source = defaults[name]
        if not passed_default:
            candidates[name] = Candidate(name, False, why_not=reason, default_cases=count, source=default_source)
            continue
        rows = [checked[name][cid] for cid in problem_ids if cid in checked[name]]
        bad = [r for r in rows if r.status != "passed"]
        main = timing.get(name)
        if bad or len(rows) < len(problem_ids) or main is None or main.median_s != main.median_s:
            why = f"{bad[0].status} on {bad[0].case_id} ({bad[0].reason})" if bad else "not timed"
            candidates[name] = Candidate(
                name,
                False,
                why_not=why,
                default_cases=count,
                problem_cases=len(rows),
                source=timing_source.get(name, ""),
            )
            continue
        candidates[name] = Candidate(
            name,
            True,
            median_s=float(main.median_s),
            iqr_s=float(main.iqr_s),
            latency_median_s=float(main.latency_median_s),
            latency_iqr_s=float(main.latency_iqr_s),
            default_cases=count,
            problem_cases=len(rows),
            source=timing_source[name],
        )
    ordered = tuple(candidates[n] for n in names)
    eligible = [c for c in ordered if c.eligible]
    if not eligible:
        reasons = "; ".join(f"{c.backend}: {c.why_not}" for c in ordered) or "no backend runs on " + device
        raise NoVerifiedBackendError(f"no verified GroupNorm for {case.id} on {device}: {reasons}")
    chosen, tie = _pick(eligible, metric)
    sources = sorted({c.source for c in eligible})
    selection = Selection(
        chosen.backend, device, case.id, metric, tie, ordered, " + ".join(sources), time.perf_counter() - start
    )
    if use_cache:
        _write_cache(path, selection)
    return selection


def _cache_path(case: Case, metric: str, names) -> str:
    return os.path.join(_cache_dir(), cache_key(case, metric, names) + ".json")


def _read_cache(path: str, start: float) -> Selection | None:
    """The cached selection at ``path`` (its lines saying they come from the cache), or None."""
    import datetime

    try:
        with open(path) as handle:
            cached = Selection.from_json(handle.read())
        when = datetime.datetime.fromtimestamp(os.path.getmtime(path), datetime.timezone.utc)
    except (OSError, ValueError, TypeError, KeyError):  # absent, or unreadable: not evidence
        return None
    # Every line says where its figures come from: this cache, and what filled it.
    candidates = tuple(
        dataclasses.replace(c, source=f"cache ({c.source})" if c.source else "cache") for c in cached.candidates
    )
    return dataclasses.replace(
        cached,
        candidates=candidates,
        seconds=time.perf_counter() - start,
        cached=True,
        source=f"cache of {when:%Y-%m-%d %H:%M} UTC ({cached.source})",
    )


def _write_cache(path: str, selection: Selection) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    temporary = path + f".{os.getpid()}.{threading.get_ident()}.tmp"
    with open(temporary, "w") as handle:
        handle.write(selection.to_json())
    os.replace(temporary, path)


def lookup(case: Case, metric: str = "device", backends=None) -> Selection | None:
    """The cached answer of :func:`select` (or of :func:`verified`, ``metric="verified"``)
    for ``case`` with these candidates, or None; never measures, imports no framework."""
    names = _candidate_names(backends, case.device)
    if metric == "verified":
        metric = _verified_metric(_in_order(names, PREFERENCE))
    return _read_cache(_cache_path(case, metric, names), time.perf_counter())


def _in_order(names, order) -> list[str]:
    rank = {name: i for i, name in enumerate(order)}
    return sorted(names, key=lambda n: (rank.get(n, len(rank)), n))


def _verified_metric(ordered_names) -> str:
    """The cache's metric for :func:`verified`: the preference order is part of the answer."""
    return "verified:" + ",".join(ordered_names)


def _candidate_names(backends, device: str) -> list[str]:
    from harness.problems.plan import parse_names

    names = parse_names(backends, "backend", registry.names()) or [
        n for n in registry.names() if registry.get(n).default_selected
    ]
    return [n for n in names if device in registry.get(n).devices]


def verified(case: Case, *, backends=None, order=PREFERENCE, use_cache: bool = True, isolate: bool = True) -> Selection:
    """The first backend in ``order`` (then the others, by name) *verified* for ``case``'s
    problem, without timing anything: what a drop-in module runs when it has no timing
    evidence and may not measure.

    Verified means what :func:`select` requires for eligibility: available on the device,
    the pass implemented, outside every known bug's class, every default-suite case of
    the problem's class (pass, dtype, layout, device) passed (failures a known bug
    explains excepted, as in ``select``), and the problem itself passed on two seeds and
    on the adversarial distribution. Candidates after the first verified one are not
    examined ("not needed"). Cached on disk like ``select`` (``metric="verified"``); each
    backend's class verdict is cached apart, so a new shape of a known class verifies only
    the shape (one worker start, a few seconds).

    Raises:
        NoVerifiedBackendError: no candidate verified, with each one's reason.
    """
    start = time.perf_counter()
    names = _in_order(_candidate_names(backends, case.device), order)
    path = _cache_path(case, _verified_metric(names), names)
    if use_cache:
        cached = _read_cache(path, start)
        if cached is not None:
            return cached
    installed = json.loads(machine()["versions"])
    problem_ids = [c.id for c in problem_cases(case)]
    candidates, chosen = [], None
    for name in names:
        if chosen is not None:
            candidates.append(Candidate(name, False, why_not=f"not needed: {chosen} verified first"))
            continue
        backend = registry.get(name)
        why = backend.supports(case)
        if why is None and case.pass_ != "forward" and not backend.supports_backward:
            why = f"implements the forward pass only (no {case.pass_} pass)"
        bug = None if why else known_bugs.excluding(name, case, installed)
        if bug is not None:
            why = (
                f"known bug {bug.id} for this class ({bug.layouts}, {bug.dtypes}, rank {len(case.shape)}): {bug.rerun}"
            )
        if why:
            candidates.append(Candidate(name, False, why_not=why))
            continue
        passed, count, reason, rows = _class_verdict(name, case, isolate, problem_ids)
        if rows is None or not passed:
            candidates.append(Candidate(name, False, why_not=reason, default_cases=count, source="measured now"))
            continue
        bad = rows[rows.status != "passed"]
        if len(rows) < len(problem_ids) or len(bad):
            why = f"{bad.iloc[0].status} on {bad.iloc[0].case_id} ({bad.iloc[0].reason})" if len(bad) else "not run"
            candidates.append(
                Candidate(name, False, why_not=why, default_cases=count, problem_cases=len(rows), source="measured now")
            )
            continue
        candidates.append(Candidate(name, True, default_cases=count, problem_cases=len(rows), source="measured now"))
        chosen = name
    if chosen is None:
        reasons = "; ".join(f"{c.backend}: {c.why_not}" for c in candidates) or "no backend runs on " + case.device
        raise NoVerifiedBackendError(f"no verified GroupNorm for {case.id} on {case.device}: {reasons}")
    selection = Selection(
        chosen,
        case.device,
        case.id,
        "verified",
        False,
        tuple(candidates),
        "verified now, not timed",
        time.perf_counter() - start,
    )
    if use_cache:
        _write_cache(path, selection)
    return selection


def _pick(eligible, metric: str):
    """The fastest; if the runner-up's interval overlaps it, a tie broken by PREFERENCE."""

    def stats(c):
        return (c.median_s, c.iqr_s) if metric == "device" else (c.latency_median_s, c.latency_iqr_s)

    ranked = sorted(eligible, key=lambda c: stats(c)[0])
    best_median, best_iqr = stats(ranked[0])
    tied = [c for c in ranked if stats(c)[0] - stats(c)[1] / 2 <= best_median + best_iqr / 2]
    if len(tied) == 1:
        return ranked[0], False
    rank = {name: i for i, name in enumerate(PREFERENCE)}
    return min(tied, key=lambda c: (rank.get(c.backend, len(rank)), stats(c)[0])), True


def fastest(
    shape,
    num_groups: int,
    dtype: str = "float32",
    device: str = "cpu",
    *,
    layout: str = "contiguous",
    backends=None,
    **options,
):
    """The fastest verified backend for ``group_norm`` of ``shape`` in ``num_groups``
    groups on this machine: a backend object, to call as
    ``backend.group_norm(x, num_groups, weight, bias, eps)`` on its own arrays.

    Options (keywords): ``eps``, ``affine``, ``param_dtype``, ``pass_`` ("forward",
    the default; "backward"; or "train": the backend then to call as ``y, saved =
    backend.forward_train(...)`` and ``backend.backward(grad_y, saved)``; ``pass`` is a
    Python keyword, hence the underscore), ``metric`` ("device" or "latency"),
    ``results`` (stored result files/folders/DataFrame to answer from), ``budget``
    (timing seconds per backend when measuring), ``use_cache``.

    Raises:
        NoVerifiedBackendError: no backend passed verification for this problem.
    """
    choice = select(shape, num_groups, dtype, device, layout=layout, backends=backends, **options)
    return registry.get(choice.backend)
