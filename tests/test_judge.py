"""The verdict: outputs that are not GroupNorm fail wherever the oracle differs from them
by more than the tolerance, and the verdict says where and by how much."""

import numpy as np
import pytest

from backends.dtypes import numpy_dtype
from harness.oracle.checks import judge
from harness.oracle.expected import Expected, as_rows
from harness.oracle.reference import group_norm_reference
from harness.oracle.tolerances import tolerance
from harness.problems import inputs, suites
from harness.problems.cases import Case

SMALL_DEFAULT = [c for c in suites.get("default") if c.numel <= 50_000]


def _expected(case):
    host = inputs.make(case)
    return host, Expected.of(case, host)


def _full(case, host):
    """The oracle and tolerance for the whole array, by the plain (unblocked) functions."""
    ref = group_norm_reference(host.x, case.num_groups, host.weight, host.bias, case.eps)
    tol = tolerance(case.dtype, ref.normalized, ref.mean, ref.rstd, case.group_size, host.weight, host.bias,
                    eps=case.eps)
    return ref.y, tol


def _differs(fake, case, host) -> bool:
    """Independent check: is fake farther than tolerance, or NaN/Inf elsewhere, anywhere?"""
    ref, tol = _full(case, host)
    got = fake.astype(np.float64)
    if (np.isnan(ref) != np.isnan(got)).any() or (np.isinf(ref) != np.isinf(got)).any():
        return True
    finite = np.isfinite(ref)
    return bool((np.abs(got - ref)[finite] > tol[finite]).any())


FAKES = {
    "zeros": lambda host, case: np.zeros(host.x.shape, host.x.dtype),
    "copy-of-x": lambda host, case: np.array(host.x),
    "constant": lambda host, case: np.full(host.x.shape, 0.5, host.x.dtype),
}


@pytest.mark.parametrize("fake", list(FAKES))
def test_non_groupnorm_outputs_fail_wherever_the_oracle_differs(fake):
    failed = 0
    for case in SMALL_DEFAULT:
        host, expected = _expected(case)
        output = FAKES[fake](host, case)
        verdict = judge(output, case.dtype, expected)
        assert (verdict.status != "passed") == _differs(output, case, host), (case.id, verdict)
        failed += verdict.status != "passed"
    non_empty = sum(c.numel > 0 for c in SMALL_DEFAULT)
    assert failed >= 0.9 * non_empty  # and they do differ almost everywhere


@pytest.mark.parametrize("case", [c for c in SMALL_DEFAULT if c.numel][:40], ids=str)
def test_the_oracle_rounded_to_the_dtype_passes(case):
    host, expected = _expected(case)
    with np.errstate(all="ignore"):
        rounded = _full(case, host)[0].astype(numpy_dtype(case.dtype))
    verdict = judge(rounded, case.dtype, expected)
    assert verdict.status == "passed" and verdict.ratio <= 0.5 + 1e-9, verdict


CASE = Case((2, 8, 5), 4, "float32", distribution="normal")


def _perturbed(scale):
    host, expected = _expected(CASE)
    ref, tol = _full(CASE, host)
    y = ref.astype(np.float32)
    index = (1, 5, 3)
    y[index] = ref[index] + scale * tol[index]
    return judge(y, "float32", expected), index


def test_one_element_past_its_tolerance_is_a_mismatch_that_names_it():
    verdict, index = _perturbed(3.0)
    assert verdict.status == "mismatch" and verdict.worst_index == index
    assert 2.5 < verdict.ratio < 3.5 and "1 of 80 elements" in verdict.reason


def test_one_element_inside_its_tolerance_passes():
    verdict, _ = _perturbed(0.5)
    assert verdict.status == "passed" and verdict.ratio < 1


def test_wrong_shape_and_dtype():
    host, expected = _expected(CASE)
    y = _full(CASE, host)[0].astype(np.float32)
    assert judge(y.reshape(2, 40), "float32", expected).status == "wrong_shape"
    assert judge(y.astype(np.float64), "float32", expected).status == "wrong_dtype"


@pytest.mark.parametrize("value, where", [(np.nan, "extra NaN"), (np.inf, "extra Inf")])
def test_nan_or_inf_where_the_oracle_is_finite(value, where):
    host, expected = _expected(CASE)
    y = _full(CASE, host)[0].astype(np.float32)
    y[0, 0, 0] = value
    verdict = judge(y, "float32", expected)
    assert verdict.status == "nan_mismatch" and verdict.worst_index == (0, 0, 0), where


def test_missing_nan_is_a_nan_mismatch():
    case = Case((2, 8, 5), 4, "float32", distribution="nan_inf")
    host, expected = _expected(case)
    ref = _full(case, host)[0]
    assert judge(np.nan_to_num(ref).astype(np.float32), "float32", expected).status == "nan_mismatch"
    assert judge(ref.astype(np.float32), "float32", expected).status == "passed"


@pytest.mark.parametrize("case", [
    Case((3, 12, 5, 7), 4, "float16", "channels_last", "channel_stats", param_dtype="float32"),
    Case((2, 6, 9), 3, "bfloat16", "strided", "nan_inf"),
    Case((4, 8), 8, "float64", affine="none"),
], ids=str)
def test_blocked_expectation_equals_the_plain_oracle(case, monkeypatch):
    import harness.oracle.expected

    monkeypatch.setattr(harness.oracle.expected, "BLOCK_ELEMENTS", 30)  # many small blocks
    host = inputs.make(case)
    expected = Expected.of(case, host)
    ref, tol = _full(case, host)
    np.testing.assert_array_equal(expected.y, as_rows(ref, case.num_groups))
    np.testing.assert_allclose(expected.tolerance, as_rows(tol, case.num_groups), rtol=1e-14)


def test_huge_cases_are_verified_on_whole_groups_first_last_and_between():
    case = Case((5, 8, 6, 5), 4, "float32", "channels_last")  # 20 groups of 60 elements
    host = inputs.make(case)
    expected = Expected.of(case, host, budget=300)  # room for 5 groups
    assert expected.sampled and expected.groups.tolist() == [0, 5, 10, 14, 19]
    ref, _ = _full(case, host)
    y = ref.astype(np.float32)
    assert judge(y, "float32", expected).status == "passed"
    y[4, 7, 5, 4] += 1.0  # sample 4, group 3: flat group 19, verified
    verdict = judge(y, "float32", expected)
    assert verdict.status == "mismatch" and verdict.worst_index == (4, 7, 5, 4)
    y = ref.astype(np.float32)
    y[0, 2, 0, 0] += 1.0  # sample 0, group 1: flat group 1, not in the sample
    assert judge(y, "float32", expected).status == "passed"
