"""The verifier catches every planted bug on the default suite and passes every correct
implementation with its worst error/tolerance ratio below 1."""

import pytest

import backends
from harness.commands import ensemble, selftest

FRAMEWORKS = {"torch", "jax", "jaxlib", "cupy", "numba"}


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """``selftest.run("default")`` called as a user calls it, in a fresh process: its rows,
    and the frameworks that process imported (the workers import them, never the caller)."""
    import subprocess
    import sys

    from conftest import ROOT

    path = tmp_path_factory.mktemp("selftest") / "rows.parquet"
    code = ("import sys\nfrom harness.commands import selftest\n"
            f"selftest.run('default').to_parquet({str(path)!r})\n"
            f"print('IMPORTED', *sorted({{m.split('.')[0] for m in sys.modules}} & {FRAMEWORKS!r}))")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=1200)
    assert done.returncode == 0, done.stderr[-3000:]
    import pandas as pd

    selftest.register_backends()  # the names the summaries look up, in this process too
    [line] = [line for line in done.stdout.splitlines() if line.startswith("IMPORTED")]
    return pd.read_parquet(path), set(line.split()[1:])


@pytest.fixture(scope="module")
def rows(run):
    return run[0]


def test_the_self_test_imports_no_framework_in_its_caller(run):
    assert run[1] == set()


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
    """No false alarm: every correct implementation passes wherever the policy accepts it."""
    if name not in summary.index:
        pytest.skip(f"{name} unavailable: {backends.get(name).availability('cpu')}")
    row = summary.loc[name]
    assert row.false_alarms == 0 and row.verified >= 200 and row.ratio < 1.0, row
    if name not in ensemble.MEMBERS:
        assert row.failed == 0, row


def test_only_serial_chains_past_the_policy_fail_and_their_message_says_so(rows):
    """The serial members fail only on the default suite's million-element groups (one
    chain past 2^16 terms), and each failure names that class."""
    from harness.oracle.checks import FAILED

    members = rows[rows.backend.isin(list(ensemble.MEMBERS))]
    failed = members[members.status.isin(FAILED)]
    assert set(failed.backend) <= {"ok-serial-two-pass", "ok-serial-welford"}, failed[["backend", "case_id"]]
    assert ensemble.outside_policy(failed).all()
    mismatches = failed[failed.status == "mismatch"]
    assert len(mismatches) and mismatches.reason.str.contains("serial float32 sum over 1,179,648 elements").any()


@pytest.mark.parametrize("dtype", ["float16", "bfloat16", "float32", "float64"])
def test_the_bound_is_approached_by_the_ensemble(rows, dtype):
    """A bound never approached is a failed bound: per dtype, some member reaches 0.1 of it."""
    members = rows[rows.backend.isin(list(ensemble.MEMBERS)) & (rows.status == "passed")]
    mine = members[members.case_id.str.contains(f"-{dtype}-") & ~ensemble.outside_policy(members)]
    assert len(mine) > 100 and mine.ratio.max() > 0.1, mine.ratio.describe()


def test_broken_backends_are_registered_through_the_public_api():
    names = selftest.register_backends()
    assert set(selftest.BUGS) <= set(names) <= set(backends.names())


@pytest.mark.parametrize("name, layout", [
    ("bug-channels-last-one-pass", "channels_last"),
    ("bug-channels-last-affine-per-position", "channels_last"),
    ("bug-strided-half-accumulation", "strided"),
])
def test_per_path_bugs_are_caught_on_their_path_only(rows, name, layout):
    from harness.records.known_bugs import unexpected

    mine = rows[rows.backend == name]
    failed = mine[unexpected(mine)]
    assert len(failed) > 0 and set(failed.layout) == {layout}, failed[["case_id", "status"]]


def test_correct_backends_fail_only_where_a_known_bug_says(rows):
    from harness.oracle.checks import FAILED

    correct = rows[rows.backend.isin(selftest.CORRECT)]
    failed = correct[correct.status.isin(FAILED) & ~ensemble.outside_policy(correct)]
    assert (failed.known_bug != "").all(), failed[["backend", "case_id", "status"]]


@pytest.mark.parametrize("suite", ["smoke", "sd-unet"])
def test_a_suite_too_small_to_catch_the_planted_bugs_is_refused(suite):
    from conftest import run_harness

    with pytest.raises(selftest.SuiteTooSmallError, match="cannot catch"):
        selftest.run(suite)
    ran = run_harness("selftest", "--suite", suite)
    assert ran.returncode == 2 and "bug-serial-f32-sum needs" in ran.stderr.replace("\n", " ")


def test_the_rare_corner_bug_is_not_part_of_the_fixed_self_test():
    assert selftest.RARE_BUG.name not in selftest.BUGS


@pytest.mark.parametrize("name", [name for name, bug in selftest.BUGS.items() if bug.pass_ == "backward"])
def test_backward_bugs_are_caught_in_the_backward_pass(rows, summary, name):
    mine = rows[rows.backend == name]
    assert set(mine["pass"]) == {"backward"}
    assert "-backward-gy_" in summary.loc[name].case_id  # the catching case is a backward case
    assert selftest.BUGS[name].needs[1] is not None


@pytest.mark.parametrize("name", ["numpy", "welford-f32"])
def test_two_correct_backwards_with_different_reduction_orders_pass(rows, name):
    backward = rows[(rows.backend == name) & (rows["pass"] == "backward")]
    assert len(backward) >= 800 and (backward.status.isin(("passed", "unsupported", "skipped"))).all()
    assert (backward.status == "passed").sum() >= 800 and backward.ratio.max() < 1


@pytest.mark.parametrize("name", ["torch", "jax", "numpy"])
def test_correct_frameworks_fail_and_refuse_only_as_documented(rows, name):
    """The built-in CPU backends on the default suite's forward rows of the self-test run:
    a failure is a known framework bug of the channels-last path, a refusal a layout other
    than contiguous (JAX's arrays have no strides), and at least 200 rows pass below ratio 1."""
    from harness.oracle.checks import FAILED

    mine = rows[(rows.backend == name) & (rows["pass"] == "forward")]
    if mine.empty:
        pytest.skip(f"{name} unavailable: {backends.get(name).availability('cpu')}")
    known = mine[mine.status.isin(FAILED)]
    assert (known.known_bug != "").all() and (known.layout == "channels_last").all(), known[["case_id", "status"]]
    passed = mine[mine.status == "passed"]
    assert len(passed) >= 200 and passed.ratio.max() < 1.0
    assert (mine[mine.status == "unsupported"].layout != "contiguous").all()
