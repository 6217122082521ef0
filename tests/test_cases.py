"""Cases, ids, inputs and the suites' coverage."""

import math

import numpy as np
import pytest

from backends.errors import InvalidArgumentError
from harness.problems import inputs, suites
from harness.problems.cases import Case

ALL_CASES = suites.get("smoke") + suites.get("default")


def test_every_suite_case_id_round_trips():
    for case in ALL_CASES:
        assert Case.from_id(case.id) == case, case.id


def test_id_excludes_device_but_from_id_can_set_it():
    case = Case((2, 8, 4), 2, "float16", "channels_last", "offset", 3, eps=0.0, affine="none", param_dtype="float32")
    assert case.id == "2x8x4-g2-float16-channels_last-offset-s3-eps0.0-affine_none-wfloat32"
    assert Case.from_id(case.id, device="cuda") == case.on("cuda")
    assert Case.from_id("2x8-g2-float32-contiguous-normal-s0-eps1e-05") == Case((2, 8), 2)


@pytest.mark.parametrize("text", [
    "2x8", "2x8-g2-float32", "axb-g2-float32-contiguous-normal-s0", "2x8-2-float32-contiguous-normal-s0",
    "2x8-g2-float32-contiguous-normal-s0-bogus", "2x8-g3-float32-contiguous-normal-s0",
    "2x8-g2-float8-contiguous-normal-s0", "2x8-g2-float32-contiguous-gaussian-s0",
])
def test_malformed_ids_are_refused_clearly(text):
    with pytest.raises(InvalidArgumentError):
        Case.from_id(text)


@pytest.mark.parametrize("kwargs, message", [
    (dict(shape=(2, 8), num_groups=2, eps=0.0, distribution="constant"), "undefined|no defined answer"),
    (dict(shape=(2, 8, 1), num_groups=8, eps=0.0), "no defined answer"),
    (dict(shape=(2, 8), num_groups=2, layout="channels_last"), "rank >= 3"),
    (dict(shape=(2, 8), num_groups=3), "divisor"),
    (dict(shape=(2, 8), num_groups=2, param_dtype="float32"), "param_dtype"),
    (dict(shape=(2, 8), num_groups=2, dtype="float16", param_dtype="float64"), "param_dtype"),
], ids=["eps0-constant", "eps0-one-element", "channels-last-rank2", "groups", "param-f32-for-f32", "param-f64-for-f16"])
def test_invalid_cases_are_refused(kwargs, message):
    if kwargs.get("param_dtype") == "float32" and kwargs.get("dtype", "float32") == "float32":
        assert Case(**kwargs).param_dtype is None  # same as the input dtype: normalized away
        return
    with pytest.raises(InvalidArgumentError, match=message):
        Case(**kwargs)


def test_inputs_are_a_function_of_the_case():
    case = Case((2, 12, 5, 7), 3, "bfloat16", "channels_last", "channel_stats", 1)
    a, b = inputs.make(case), inputs.make(case)
    assert a.x.tobytes() == b.x.tobytes() and a.weight.tobytes() == b.weight.tobytes()
    other = inputs.make(Case((2, 12, 5, 7), 3, "bfloat16", "channels_last", "channel_stats", 2))
    assert a.x.tobytes() != other.x.tobytes()
    assert str(a.x.dtype) == "bfloat16"


def test_layouts_have_the_strides_they_claim():
    values = np.arange(2 * 6 * 4 * 5, dtype=np.float32).reshape(2, 6, 4, 5)
    channels_last = inputs.lay_out(values, "channels_last")
    assert channels_last.strides[1] == 4 and not channels_last.flags.c_contiguous
    strided = inputs.lay_out(values, "strided")
    assert strided.strides[-1] == 8 and not strided.flags.c_contiguous
    for array in (channels_last, strided):
        np.testing.assert_array_equal(array, values)


def test_distributions_do_what_they_say():
    def x(distribution, dtype="float32"):
        return inputs.make(Case((2, 8, 30), 2, dtype, distribution=distribution)).x.astype(np.float64)

    assert abs(x("offset").mean() - 1000) < 1
    grouped = x("constant").reshape(2, 2, -1)
    assert (grouped.std(axis=2) == 0).all() and len(np.unique(grouped[:, :, 0])) == 4
    assert np.abs(x("large_values", "float16")).max() ** 2 > np.finfo(np.float16).max
    nan_inf = x("nan_inf")
    assert np.isnan(nan_inf).sum() == 1 and np.isposinf(nan_inf).sum() == 1 and np.isneginf(nan_inf).sum() == 1
    split = x("split_group").reshape(2, 2, -1)
    assert (split[:, :, :40].mean(axis=2) - split[:, :, 40:].mean(axis=2) > 3).all()


def _covers(cases, predicate):
    return any(predicate(c) for c in cases)


def test_default_suite_covers_what_the_core_issue_asks():
    cases = suites.get("default")
    for rank in (2, 3, 4, 5):
        assert _covers(cases, lambda c: len(c.shape) == rank)
    assert _covers(cases, lambda c: c.shape[0] == 0)
    assert _covers(cases, lambda c: c.shape[0] == 1)
    assert _covers(cases, lambda c: c.shape[0] > 1)
    assert _covers(cases, lambda c: c.num_groups == 1)
    assert _covers(cases, lambda c: c.num_groups == c.shape[1] and c.shape[1] > 1)
    assert _covers(cases, lambda c: 1 < c.num_groups < c.shape[1])
    assert _covers(cases, lambda c: c.shape[1] // c.num_groups == 1)
    assert _covers(cases, lambda c: c.shape[1] // c.num_groups >= 8)
    assert _covers(cases, lambda c: c.group_size == 1)
    assert _covers(cases, lambda c: c.group_size > 1_000_000)
    assert _covers(cases, lambda c: any(s % 2 for s in c.shape[2:]))
    for dtype in ("float16", "bfloat16", "float32", "float64"):
        assert _covers(cases, lambda c: c.dtype == dtype)
    for dtype in ("float16", "bfloat16"):
        assert _covers(cases, lambda c: c.dtype == dtype and c.param_dtype == "float32")
    for layout in ("contiguous", "channels_last", "strided"):
        for rank in ((3, 4, 5) if layout == "channels_last" else (2, 3, 4)):
            assert _covers(cases, lambda c: c.layout == layout and len(c.shape) == rank), (layout, rank)
    for affine in ("none", "default", "random"):
        assert _covers(cases, lambda c: c.affine == affine)
    assert _covers(cases, lambda c: c.eps == 0)
    assert _covers(cases, lambda c: c.eps == 1e-5)
    assert _covers(cases, lambda c: c.eps >= 0.1)
    core = ("normal", "uniform", "offset", "near_constant", "constant", "large_values", "nan_inf",
            "channel_stats", "split_group")
    for distribution in core:
        assert _covers(cases, lambda c: c.distribution == distribution)


def test_random_inputs_come_on_at_least_two_seeds():
    import dataclasses

    seeds = {}
    for case in suites.get("default"):
        seeds.setdefault(dataclasses.replace(case, seed=0), set()).add(case.seed)
    for case, found in seeds.items():
        assert len(found) >= 2, case.id


def test_no_zero_variance_group_with_eps_zero():
    for case in ALL_CASES:
        if case.eps == 0:
            assert case.group_size > 1 and case.distribution not in inputs.ZERO_VARIANCE_DISTRIBUTIONS


def test_default_suite_is_small_enough_for_two_cores():
    total = sum(c.numel for c in suites.get("default"))
    assert total < 30_000_000, f"default suite holds {total} elements"
    assert math.isclose(len(suites.get("smoke")), 12)
