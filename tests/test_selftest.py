"""The verifier catches every planted bug on the default suite and passes every correct
implementation with its worst error/tolerance ratio below 1."""

import pytest

import backends
from harness import selftest


@pytest.fixture(scope="module")
def rows():
    return selftest.run("default")


@pytest.fixture(scope="module")
def summary(rows):
    return selftest.summarize(rows).set_index("implementation")


def test_self_test_finds_no_problem(rows):
    assert selftest.problems(rows) == []


@pytest.mark.parametrize("name", list(selftest.BUGS))
def test_broken_backend_is_caught(summary, name):
    row = summary.loc[name]
    assert row.failed > 0, row
    if row.status == "mismatch":
        assert row.ratio > 10, row  # caught by a wide margin, not by a hair


@pytest.mark.parametrize("name", selftest.CORRECT)
def test_correct_backend_passes_below_ratio_one(summary, name):
    if name not in summary.index:
        pytest.skip(f"{name} unavailable: {backends.get(name).availability('cpu')}")
    row = summary.loc[name]
    assert row.failed == 0 and row.verified >= 200 and row.ratio < 1.0, row


def test_broken_backends_are_registered_through_the_public_api():
    names = selftest.register_backends()
    assert set(selftest.BUGS) <= set(names) <= set(backends.names())
