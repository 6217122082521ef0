"""The verdict: outputs that are not GroupNorm fail wherever the oracle differs from them
by more than the tolerance, and the verdict says where and by how much."""

import numpy as np
import pytest

from backends.dtypes import numpy_dtype
from harness import inputs, suites
from harness.cases import Case
from harness.verify import Expected, judge

SMALL_DEFAULT = [c for c in suites.get("default") if c.numel <= 50_000]


def _expected(case):
    host = inputs.make(case)
    return host, Expected.of(case, host)


def _differs(fake, expected) -> bool:
    """Independent check: is fake farther than tolerance, or NaN/Inf elsewhere, anywhere?"""
    ref = expected.reference.y
    got = fake.astype(np.float64)
    if (np.isnan(ref) != np.isnan(got)).any() or (np.isinf(ref) != np.isinf(got)).any():
        return True
    finite = np.isfinite(ref)
    return bool((np.abs(got - ref)[finite] > expected.tolerance[finite]).any())


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
        assert (verdict.status != "passed") == _differs(output, expected), (case.id, verdict)
        failed += verdict.status != "passed"
    non_empty = sum(c.numel > 0 for c in SMALL_DEFAULT)
    assert failed >= 0.9 * non_empty  # and they do differ almost everywhere


@pytest.mark.parametrize("case", [c for c in SMALL_DEFAULT if c.numel][:40], ids=str)
def test_the_oracle_rounded_to_the_dtype_passes(case):
    _, expected = _expected(case)
    with np.errstate(all="ignore"):
        rounded = expected.reference.y.astype(numpy_dtype(case.dtype))
    verdict = judge(rounded, case.dtype, expected)
    assert verdict.status == "passed" and verdict.ratio <= 0.5 + 1e-9, verdict


CASE = Case((2, 8, 5), 4, "float32", distribution="normal")


def _perturbed(scale):
    host, expected = _expected(CASE)
    y = expected.reference.y.astype(np.float32)
    index = (1, 5, 3)
    y[index] = expected.reference.y[index] + scale * expected.tolerance[index]
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
    y = expected.reference.y.astype(np.float32)
    assert judge(y.reshape(2, 40), "float32", expected).status == "wrong_shape"
    assert judge(y.astype(np.float64), "float32", expected).status == "wrong_dtype"


@pytest.mark.parametrize("value, where", [(np.nan, "extra NaN"), (np.inf, "extra Inf")])
def test_nan_or_inf_where_the_oracle_is_finite(value, where):
    host, expected = _expected(CASE)
    y = expected.reference.y.astype(np.float32)
    y[0, 0, 0] = value
    verdict = judge(y, "float32", expected)
    assert verdict.status == "nan_mismatch" and verdict.worst_index == (0, 0, 0), where


def test_missing_nan_is_a_nan_mismatch():
    case = Case((2, 8, 5), 4, "float32", distribution="nan_inf")
    host, expected = _expected(case)
    y = np.nan_to_num(expected.reference.y).astype(np.float32)
    assert judge(y, "float32", expected).status == "nan_mismatch"
    assert judge(expected.reference.y.astype(np.float32), "float32", expected).status == "passed"
