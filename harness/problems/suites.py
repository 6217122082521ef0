"""Named sets of cases.

* ``smoke``: a dozen small cases, seconds on any backend.
* ``adversarial``: heavier versions of the default suite's hard distributions
  (|mean|/std = 1e5, near-constant to a few ulps, dense NaN/Inf, per-channel statistics
  spanning 1e6, far-shifted group parts), extreme magnitudes per dtype (float16
  subnormals, 1e15 in float32), each also channels-last and strided, groups of 33
  million elements, 32768 tiny groups.
* workload suites from real models: ``sd-unet``, ``sd-vae``, ``kernelbench``,
  ``audio-1d``, ``volumetric-3d`` (:mod:`harness.problems.workloads`, each shape's source named).
* ``default``: the correctness suite. Ranks 2 to 5; N = 0, 1 and > 1; num_groups = 1,
  = C and between; one and many channels per group; groups of one element and of more
  than a million; odd sizes; the four dtypes; half input with float32 weight and bias;
  every layout; affine none / default / random; eps 0, default and large. Coverage by
  construction (:data:`COVERAGE`, checked by a test): the full product layout x dtype x
  distribution (every distribution of :mod:`harness.problems.inputs` in every dtype that can hold
  it, on every layout: a bug lives in one code path, and each path must meet every hard
  input), and rank x layout x dtype on an ill-conditioned input (``offset``). Every case
  on two seeds.

**Passes.** ``get(name, "backward")`` (or ``"train"``) is every case of the suite in that
pass with a normal incoming gradient, plus, for ``default`` and ``smoke``, the backward's
own cases (:func:`_backward_extras`): every gradient distribution of
:data:`harness.problems.inputs.GRAD_DISTRIBUTIONS` on every layout in every dtype (declared in
:data:`COVERAGE_BACKWARD`), grad_y in another layout than x, zero weights, eps 0 on
near-constant groups and a group of a million elements under a constant and an xhat
gradient. (eps 0 on *constant* groups is refused by :class:`harness.problems.cases.Case` in every
pass: 0/0 has no defined answer.)

Cases carry no device: a sweep puts each on the devices it runs.
"""

from __future__ import annotations

import itertools

from backends.base import LAYOUTS
from backends.dtypes import DTYPES, HALF_DTYPES
from backends.errors import InvalidArgumentError

from .cases import Case
from .inputs import DISTRIBUTIONS, GRAD_DISTRIBUTIONS, UNREPRESENTABLE
from .workloads import WORKLOADS

SEEDS = (0, 1)

# (shape, num_groups): what each covers.
DEFAULT_SHAPES = (
    ((4, 6), 3),               # rank 2, two channels per group
    ((8, 32), 32),             # rank 2, G = C: groups of one element (N > 1)
    ((1, 12), 1),              # rank 2, N = 1, G = 1
    ((0, 8), 2),               # rank 2, empty batch
    ((2, 16, 7), 4),           # rank 3, odd length
    ((1, 64, 33), 1),          # rank 3, G = 1, many channels per group
    ((3, 10, 1), 10),          # rank 3, groups of one element
    ((5, 15, 13), 5),          # rank 3, odd everything
    ((2, 32, 8, 8), 8),        # rank 4
    ((1, 4, 9, 11), 4),        # rank 4, G = C (instance norm)
    ((3, 6, 7, 9), 3),         # rank 4, odd sizes
    ((0, 8, 4, 4), 2),         # rank 4, empty batch
    ((2, 8, 0, 5), 4),         # rank 4, zero-size spatial dimension (empty groups)
    ((2, 8, 3, 4, 5), 4),      # rank 5
    ((1, 16, 4, 4, 4), 16),    # rank 5, G = C
    ((1, 2, 1024, 576), 1),    # a group of 1,179,648 elements
)
HUGE_GROUP = ((1, 2, 1024, 576), 1)
DISTRIBUTION_SHAPE = ((2, 32, 12, 10), 8)       # groups of 480 elements
# Ranks 3, 5 and 2 in the non-contiguous layouts (rank 4 is the product's shape below).
LAYOUT_SHAPES = (((2, 16, 9), 4), ((1, 8, 3, 4, 5), 2), ((4, 6), 3))
PARAMS_SHAPE = ((2, 24, 6, 6), 6)
RANDOM_DISTRIBUTIONS = ("normal", "uniform", "offset", "near_constant", "large_values",
                        "nan_inf", "channel_stats", "split_group")
PRODUCT_SHAPE = ((2, 12, 5, 7), 3)              # rank 4 (channels-last needs >= 3); groups of 140
RANK_LAYOUT_DISTRIBUTIONS = ("channel_stats", "offset")


def _smoke() -> list[Case]:
    return [
        Case((2, 8, 4, 4), 4, dtype)
        for dtype in DTYPES
    ] + [
        Case((3, 6, 5), 3, "float32", "channels_last", "channel_stats"),
        Case((2, 6), 2, "float32", "strided"),
        Case((2, 8, 4, 4), 2, "float16", distribution="large_values"),
        Case((2, 8, 4, 4), 2, "float32", distribution="offset"),
        Case((2, 8, 4, 4), 2, "float32", distribution="nan_inf"),
        Case((2, 8, 4, 4), 2, "float32", distribution="constant", affine="none"),
        Case((2, 8, 3, 3, 3), 8, "float16", param_dtype="float32"),
        Case((0, 4, 3), 2, "float64"),
    ]


def _default() -> list[Case]:
    cases = []
    # Shapes: every rank, batch size and group structure, in every dtype.
    for (shape, groups), dtype, seed in itertools.product(DEFAULT_SHAPES, DTYPES, SEEDS):
        cases.append(Case(shape, groups, dtype, seed=seed))
    # Distributions that separate right from almost right, in every dtype.
    shape, groups = DISTRIBUTION_SHAPE
    for distribution, dtype in itertools.product(RANDOM_DISTRIBUTIONS[1:] + ("constant",), DTYPES):
        for seed in SEEDS:
            cases.append(Case(shape, groups, dtype, distribution=distribution, seed=seed))
    # Hard distributions on a group of over a million elements (serial sums stagnate there).
    shape, groups = HUGE_GROUP
    for distribution, dtype, seed in itertools.product(("offset", "split_group"), ("float32", "float16"), SEEDS):
        cases.append(Case(shape, groups, dtype, distribution=distribution, seed=seed))
    # Every layout meets every distribution in every dtype (coverage by construction).
    shape, groups = PRODUCT_SHAPE
    for layout, dtype, distribution, seed in itertools.product(LAYOUTS, DTYPES, DISTRIBUTIONS, SEEDS):
        if dtype not in UNREPRESENTABLE.get(distribution, ()):
            cases.append(Case(shape, groups, dtype, layout, distribution, seed))
    # Layouts at every rank: per-channel statistics, and a large mean against the spread.
    for (shape, groups), layout, dtype, distribution, seed in itertools.product(
        LAYOUT_SHAPES, ("channels_last", "strided"), DTYPES, RANK_LAYOUT_DISTRIBUTIONS, SEEDS
    ):
        if layout == "channels_last" and len(shape) < 3:
            continue
        cases.append(Case(shape, groups, dtype, layout, distribution, seed))
    # Affine, eps and parameter dtype.
    shape, groups = PARAMS_SHAPE
    for dtype, seed in itertools.product(DTYPES, SEEDS):
        cases.append(Case(shape, groups, dtype, seed=seed, affine="none"))
        cases.append(Case(shape, groups, dtype, seed=seed, affine="default"))
        cases.append(Case(shape, groups, dtype, seed=seed, eps=0.0))
        cases.append(Case(shape, groups, dtype, "contiguous", "uniform", seed, eps=0.1))
        cases.append(Case(shape, groups, dtype, "contiguous", "near_constant", seed, eps=1.0))
        cases.append(Case(shape, groups, dtype, "contiguous", "constant", seed, eps=1.0, affine="default"))
    for dtype, layout in itertools.product(HALF_DTYPES, ("contiguous", "channels_last")):
        for seed in SEEDS:
            cases.append(Case(shape, groups, dtype, layout, "channel_stats", seed, param_dtype="float32"))
    return cases


def _adversarial() -> list[Case]:
    cases = []
    shape, groups = DISTRIBUTION_SHAPE
    hard = {  # distribution -> dtypes it is meaningful in
        "offset_1e5": ("float32", "float64"),
        "near_constant_1e6": ("float32", "float64"),
        "huge_magnitude": DTYPES,
        "tiny_magnitude": DTYPES,
        "nan_inf_dense": DTYPES,
        "channel_stats_wide": DTYPES,
        "split_group_far": DTYPES,
    }
    for distribution, dtypes in hard.items():
        for dtype, seed in itertools.product(dtypes, SEEDS):
            cases.append(Case(shape, groups, dtype, distribution=distribution, seed=seed))
            cases.append(Case((1, 8, 64, 64), 2, dtype, distribution=distribution, seed=seed))
            for layout in ("channels_last", "strided"):  # every path meets every hard input
                cases.append(Case((2, 48, 9, 11), 6, dtype, layout, distribution, seed))
    # Huge groups: one group of 2^25 elements, and two of 2^23.
    for distribution, dtype, seed in itertools.product(
        ("offset", "split_group_far", "near_constant", "large_values"), ("float32", "float16"), SEEDS
    ):
        cases.append(Case((1, 1, 2 ** 25), 1, dtype, distribution=distribution, seed=seed))
    for distribution, seed in itertools.product(("offset_1e5", "huge_magnitude"), SEEDS):
        cases.append(Case((1, 4, 2048, 2048), 2, "float32", distribution=distribution, seed=seed))
    # Many tiny groups, and odd prime sizes.
    for dtype, seed in itertools.product(("float16", "float32"), SEEDS):
        cases.append(Case((64, 512, 3), 512, dtype, distribution="channel_stats_wide", seed=seed))
        cases.append(Case((3, 21, 17, 19), 7, dtype, distribution="offset", seed=seed))
    return cases


def _backward_extras(pass_: str, full: bool) -> list[Case]:
    """The backward's own cases (see the module docstring); ``full`` False: a smoke sample."""
    cases = []
    shape, groups = PRODUCT_SHAPE
    seeds = SEEDS if full else (0,)
    dtypes = DTYPES if full else ("float32", "float16")
    for layout, dtype, grad, seed in itertools.product(LAYOUTS, dtypes, GRAD_DISTRIBUTIONS, seeds):
        if full or layout == "contiguous":
            cases.append(Case(shape, groups, dtype, layout, seed=seed).with_pass(pass_, grad))
    for (layout, grad_layout), dtype, seed in itertools.product(
            (("contiguous", "channels_last"), ("channels_last", "contiguous"), ("contiguous", "strided")),
            dtypes, seeds):
        cases.append(Case(shape, groups, dtype, layout, "channel_stats", seed).with_pass(pass_, "normal", grad_layout))
    if not full:
        return cases
    shape, groups = PARAMS_SHAPE
    for dtype, seed in itertools.product(DTYPES, seeds):
        for grad in ("normal", "xhat"):
            cases.append(Case(shape, groups, dtype, seed=seed, affine="zero_weight").with_pass(pass_, grad))
        cases.append(Case(shape, groups, dtype, "contiguous", "near_constant", seed, eps=0.0).with_pass(pass_))
    for dtype in HALF_DTYPES:
        for seed in seeds:
            cases.append(Case(shape, groups, dtype, "channels_last", "channel_stats", seed,
                              param_dtype="float32").with_pass(pass_, "large"))
    shape, groups = HUGE_GROUP
    for grad, dtype in itertools.product(("constant", "xhat"), ("float32", "float16")):
        cases.append(Case(shape, groups, dtype, distribution="offset").with_pass(pass_, grad))
    return cases


SUITES = {"smoke": _smoke, "default": _default, "adversarial": _adversarial, **WORKLOADS}
BACKWARD_EXTRAS = {"smoke": lambda pass_: _backward_extras(pass_, False),
                   "default": lambda pass_: _backward_extras(pass_, True)}


def names() -> list[str]:
    """Suite names."""
    return list(SUITES)


def get(name: str, pass_: str = "forward") -> list[Case]:
    """The cases of suite ``name`` in pass ``pass_`` (device ``cpu``; a sweep moves them)."""
    from .cases import PASSES

    if name not in SUITES:
        raise InvalidArgumentError(f"unknown suite {name!r}; valid suites: {', '.join(SUITES)}")
    if pass_ not in PASSES:
        raise InvalidArgumentError(f"unknown pass {pass_!r}; valid passes: {', '.join(PASSES)}")
    cases = SUITES[name]()
    if pass_ != "forward":
        cases = [case.with_pass(pass_) for case in cases]
        held = set(cases)  # the extras' normal-gradient cases may be the suite's own already
        cases += [case for case in BACKWARD_EXTRAS.get(name, lambda p: [])(pass_) if case not in held]
    ids = [case.id for case in cases]
    duplicates = {i for i in ids if ids.count(i) > 1}
    if duplicates:  # a programming error in this file, caught by the tests
        raise AssertionError(f"suite {name!r} repeats case ids {sorted(duplicates)}")
    return cases


# -- coverage, declared ------------------------------------------------------------------

RANKS = (2, 3, 4, 5)


def levels() -> dict:
    """Every level of each factor, read from the lists that define them (so a distribution,
    layout or dtype added there is a level here at once)."""
    from . import inputs

    return {"layout": LAYOUTS, "dtype": DTYPES, "distribution": tuple(inputs.DISTRIBUTIONS), "rank": RANKS,
            "grad_distribution": tuple(inputs.GRAD_DISTRIBUTIONS)}


def _factor(case: Case, factor: str):
    return len(case.shape) if factor == "rank" else getattr(case, factor)


def _possible(combination: dict) -> bool:
    """Whether a combination of levels can exist as a case at all."""
    from . import inputs

    if combination.get("layout") == "channels_last" and combination.get("rank", 3) < 3:
        return False
    dtype, distribution = combination.get("dtype"), combination.get("distribution")
    return not (dtype and distribution and dtype in inputs.UNREPRESENTABLE.get(distribution, ()))


# What each suite promises to hold: every possible combination of the levels of these factors.
COVERAGE = {
    "default": (("layout", "dtype", "distribution"), ("rank", "layout", "dtype")),
    "adversarial": (("layout", "dtype"),),
}
# ... and in the backward and train passes, in addition to the forward's promise.
COVERAGE_BACKWARD = {
    "default": (("layout", "dtype", "grad_distribution"),),
}


def missing(name: str, cases=None, pass_: str = "forward") -> list[dict]:
    """The combinations that suite ``name`` declares in :data:`COVERAGE` (and, for the
    backward and train passes, :data:`COVERAGE_BACKWARD`) and does not hold (empty when it
    keeps its promise). ``cases`` overrides the suite's cases (for tests)."""
    cases = get(name, pass_) if cases is None else cases
    found = []
    all_levels = levels()
    promised = COVERAGE.get(name, ()) + (COVERAGE_BACKWARD.get(name, ()) if pass_ != "forward" else ())
    for factors in promised:
        held = {tuple(_factor(case, f) for f in factors) for case in cases if case.numel > 0}
        for values in itertools.product(*(all_levels[f] for f in factors)):
            combination = dict(zip(factors, values))
            if _possible(combination) and values not in held:
                found.append(combination)
    return found
