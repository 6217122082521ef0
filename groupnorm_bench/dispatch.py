"""Which backend runs a GroupNorm problem met inside a model: the dispatch cache.

A *problem* is what a call decides on: shape, num_groups, dtype, parameter dtype, device,
layout, pass (``train`` when autograd will need the gradient, else ``forward``), eps and
whether there are affine parameters. Each problem is decided once per process (then a
dictionary lookup, guarded by a lock on a miss, so threads may share a model), from the
best evidence this machine has, in this order:

1. **Timing evidence** already on disk: ``select``/``fastest``'s cache for the problem
   (filled by ``gnbench select``, :func:`warmup`, or ``autotune``), then the stored result
   files named by :func:`configure` (``results=``), read without measuring anything.
2. **Autotune** (opt-in: ``configure(autotune=True)``, ``GroupNorm(..., autotune=True)``,
   or :func:`warmup`): :func:`harness.select`, which verifies and times the candidates now
   and caches the answer.
3. Otherwise **verification without timing** (:func:`harness.commands.selection.verified`): the
   candidates in the preference order :data:`ORDER` (torch first, then our kernels, then
   JAX, then NumPy), the first one verified for the problem's class and the problem itself
   wins. Cached on disk too: a second process pays nothing.

A backend that is unavailable, outside its dtypes or layouts, known wrong for the class
(``harness/records/known_bugs.toml``: e.g. torch's CPU channels-last GroupNorm), unverified, or
unreachable without a copy (:mod:`groupnorm_bench.bridge`) is never chosen. No candidate
left raises :class:`harness.NoVerifiedBackendError` naming each one's reason: there is no
fallback to an unverified implementation.
"""

from __future__ import annotations

import contextlib
import dataclasses
import threading

from harness.commands.selection import PREFERENCE

from . import bridge as bridges

ORDER = PREFERENCE  # torch, cupy, numba-cuda, numba-cpu, jax, torch-compile, numpy


@dataclasses.dataclass
class Settings:
    """Process-wide dispatch settings (see :func:`configure`)."""

    autotune: bool = False
    results: object = None  # result files/folders/DataFrame to answer from, never measured
    backends: object = None  # candidate names; None = the default-selected backends with a bridge
    order: tuple = ORDER
    isolate: bool = True  # verify/time candidates in worker processes (a crashing kernel cannot take the model down)
    budget: float = 0.5  # timing seconds per candidate when autotuning


SETTINGS = Settings()
_SETTING_NAMES = tuple(f.name for f in dataclasses.fields(Settings))


def configure(**settings) -> Settings:
    """Set dispatch settings for this process; returns the previous ones.

    Keywords: ``autotune`` (time candidates when a problem has no timing evidence),
    ``results`` (stored results to answer from), ``backends`` (candidate names),
    ``order`` (preference order of verification without timing), ``isolate``,
    ``budget``. Choices already made stay (call :func:`clear` to decide again).
    """
    unknown = sorted(set(settings) - set(_SETTING_NAMES))
    if unknown:
        from backends.errors import InvalidArgumentError

        raise InvalidArgumentError(f"unknown dispatch setting(s) {', '.join(unknown)}; allowed: "
                                   f"{', '.join(_SETTING_NAMES)}")
    previous = dataclasses.replace(SETTINGS)
    for name, value in settings.items():
        setattr(SETTINGS, name, value)
    return previous


@contextlib.contextmanager
def options(**settings):
    """:func:`configure` for the duration of a ``with`` block."""
    previous = configure(**settings)
    try:
        yield SETTINGS
    finally:
        configure(**dataclasses.asdict(previous))


@dataclasses.dataclass(frozen=True)
class Problem:
    shape: tuple
    num_groups: int
    dtype: str
    param_dtype: str | None
    device: str  # torch's device string, e.g. "cpu", "cuda:0"
    layout: str
    pass_: str
    eps: float
    affine: bool

    def __post_init__(self):
        object.__setattr__(self, "_hash", hash(dataclasses.astuple(self)))

    def __hash__(self):  # computed once: a module records its problem on every call
        return self._hash

    def case(self):
        """The harness :class:`~harness.Case` of this problem."""
        from harness.problems.cases import Case

        return Case(self.shape, self.num_groups, self.dtype, self.layout, eps=self.eps,
                    affine="random" if self.affine else "none", param_dtype=self.param_dtype,
                    pass_=self.pass_, device=self.device.split(":")[0])


@dataclasses.dataclass(frozen=True)
class Choice:
    """What runs a problem, and on what evidence."""

    problem: Problem
    backend: str
    evidence: str  # "select cache", "stored results", "autotuned now", "verified (not timed)", "named by the caller"
    selection: object = None  # the harness.commands.selection.Selection behind it, when there is one

    @property
    def bridge(self):
        return bridges.get(self.backend)


_lock = threading.Lock()
fast_path: dict = {}  # (shape, strides, dtype, device, pass, ...) -> Choice: what functional.group_norm looks up first
_problems: dict = {}  # Problem -> Choice


def clear() -> None:
    """Forget every choice made in this process (the on-disk caches stay)."""
    with _lock:
        fast_path.clear()
        _problems.clear()


def candidates(tensor, backends=None) -> tuple[list[str], dict[str, str]]:
    """(names the module may call on ``tensor``, {name: why not} for the others)."""
    import backends as registry

    device = tensor.device.type
    named = backends
    if isinstance(named, str):
        named = [n.strip() for n in named.split(",") if n.strip()]
    pool = list(named) if named is not None else [n for n in registry.names() if registry.get(n).default_selected]
    usable, excluded = [], {}
    for name in pool:
        if device not in registry.get(name).devices:
            continue
        link = bridges.get(name)
        why = "the module has no zero-copy bridge from torch tensors to this backend" if link is None \
            else link.why_not(tensor)
        if why:
            excluded[name] = why
        else:
            usable.append(name)
    return usable, excluded


def decide(problem: Problem, tensor, *, autotune=None, backends=None) -> Choice:
    """The backend for ``problem`` (see the module docstring); cached per process."""
    autotune = SETTINGS.autotune if autotune is None else autotune
    backends = SETTINGS.backends if backends is None else backends
    names, excluded = candidates(tensor, backends)
    # keyed by the callable candidates too: what a bridge refuses can depend on the call
    # (numba-cuda on a side stream), and a choice made without that refusal must not serve it
    key = (problem, bool(autotune), tuple(names))
    choice = _problems.get(key)
    if choice is not None:
        return choice
    with _lock:
        choice = _problems.get(key)
        if choice is None:
            choice = _decide(problem, names, excluded, autotune)
            _problems[key] = choice
    return choice


def _decide(problem: Problem, names, excluded, autotune) -> Choice:
    from harness.commands import selection

    case = problem.case()
    if not names:
        reasons = "; ".join(f"{n}: {why}" for n, why in excluded.items()) or "no backend runs on " + case.device
        raise selection.NoVerifiedBackendError(f"no backend the module can call for {case.id} on "
                                               f"{problem.device}: {reasons}")
    cached = selection.lookup(case, "device", names)
    if cached is not None:
        return Choice(problem, cached.backend, "select cache", cached)
    if SETTINGS.results is not None:
        try:
            found = selection.select(case.shape, case.num_groups, case.dtype, case.device, layout=case.layout,
                                     eps=case.eps, affine=case.affine, param_dtype=case.param_dtype,
                                     pass_=case.pass_, backends=names, results=SETTINGS.results, measure=False,
                                     isolate=SETTINGS.isolate, use_cache=False)
            return Choice(problem, found.backend, "stored results", found)
        except selection.NoVerifiedBackendError:
            pass  # not enough stored evidence for this problem: go on
    if autotune:
        found = selection.select(case.shape, case.num_groups, case.dtype, case.device, layout=case.layout,
                                 eps=case.eps, affine=case.affine, param_dtype=case.param_dtype, pass_=case.pass_,
                                 backends=names, budget=SETTINGS.budget, isolate=SETTINGS.isolate)
        return Choice(problem, found.backend, "autotuned now" if not found.cached else "select cache", found)
    found = selection.verified(case, backends=names, order=SETTINGS.order, isolate=SETTINGS.isolate)
    return Choice(problem, found.backend, "verified (not timed)", found)


def chosen() -> list[Choice]:
    """Every choice made in this process."""
    with _lock:
        return list(dict.fromkeys(_problems.values()))


def as_frame(choices, modules: dict | None = None):
    """A pandas DataFrame of choices: one row per (module, problem)."""
    import pandas as pd

    rows = []
    for module_name, choice in ((m, c) for m, cs in (modules or {None: choices}).items() for c in cs):
        problem = choice.problem
        row = {"module": module_name} if modules is not None else {}
        row.update(shape="x".join(map(str, problem.shape)), num_groups=problem.num_groups, dtype=problem.dtype,
                   param_dtype=problem.param_dtype, device=problem.device, layout=problem.layout,
                   **{"pass": problem.pass_}, eps=problem.eps, affine=problem.affine, backend=choice.backend,
                   evidence=choice.evidence,
                   why_not_others="; ".join(f"{c.backend}: {c.why_not}" for c in choice.selection.candidates
                                            if not c.eligible) if choice.selection is not None else "")
        rows.append(row)
    return pd.DataFrame(rows)
