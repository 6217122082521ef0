"""The known-bug policy: failures stay failed, are printed apart, do not fail the exit
code, are reported when they stop reproducing, and keep selection away from the class."""

import dataclasses
import json

import pandas as pd
import pytest

import backends
from backends.errors import InvalidArgumentError
from conftest import run_harness
from harness.problems.cases import Case
from harness.records import known_bugs

BUG = known_bugs.load()[0]


def _row(**fields):
    row = dict(status="mismatch", backend="torch", device="cpu", layout="channels_last", dtype="float32",
               shape="2x12x5x7", distribution="offset", versions=json.dumps({"torch": "2.13.0+cpu"}))
    row.update(fields)
    return row


def test_the_project_file_loads_with_rerun_lines():
    bugs = known_bugs.load()
    assert bugs and all(bug.rerun.startswith("gnbench verify --backends ") and bug.case for bug in bugs)
    for bug in bugs:
        Case.from_id(bug.case)  # the rerun case is a valid id


@pytest.mark.parametrize("fields, matches", [
    ({}, True),
    ({"status": "passed"}, False),
    ({"status": "wrong_dtype"}, False),
    ({"layout": "contiguous"}, False),
    ({"shape": "2x16x9"}, False),  # rank 3: torch copies, and is right
    ({"shape": "1x8x3x4x5"}, True),
    ({"device": "cuda"}, False),
    ({"backend": "numpy"}, False),
    ({"versions": json.dumps({"torch": "2.14.0"})}, False),
    ({"versions": json.dumps({"torch": "2.13.1"})}, True),
    ({"versions": json.dumps({})}, False),
], ids=["in-class", "passed", "other-status", "contiguous", "rank3", "rank5", "cuda", "other-backend",
        "fixed-version", "patch-version", "no-version"])
def test_matching_is_by_class_status_and_version(fields, matches):
    assert (known_bugs.match(_row(**fields)) == BUG.id) is matches


def test_bad_entries_are_refused_clearly(tmp_path):
    path = tmp_path / "bugs.toml"
    path.write_text('[[bug]]\nid = "x"\nbackend = "torch"\n')
    with pytest.raises(InvalidArgumentError, match="lacks"):
        known_bugs.load(str(path))
    good = {f.name: getattr(BUG, f.name) for f in dataclasses.fields(BUG)}
    good["versions"] = "about two"
    path.write_text("[[bug]]\n" + "\n".join(f"{k} = {json.dumps(list(v) if isinstance(v, tuple) else v)}"
                                             for k, v in good.items() if v is not None))
    with pytest.raises(InvalidArgumentError, match="PEP 440"):
        known_bugs.load(str(path))


def test_a_bug_that_stops_reproducing_is_reported():
    frame = pd.DataFrame([_row(status="passed"), _row(status="passed", distribution="normal")])
    assert [(bug.id, count) for bug, count in known_bugs.not_reproduced(frame)] == [(BUG.id, 1)]
    still = pd.DataFrame([_row(), _row(status="passed")])
    assert known_bugs.not_reproduced(still) == []
    other_inputs = pd.DataFrame([_row(status="passed", distribution="normal")])
    assert known_bugs.not_reproduced(other_inputs) == []  # never ran on a triggering input


def test_unexpected_counts_only_failures_no_bug_explains():
    frame = pd.DataFrame([_row(known_bug=BUG.id), _row(known_bug=""), _row(status="passed", known_bug="")])
    assert known_bugs.unexpected(frame).tolist() == [False, True, False]


def test_selection_excludes_the_class():
    case = Case((2, 12, 5, 7), 3, "float32", "channels_last")
    assert known_bugs.excluding("torch", case, {"torch": "2.13.0+cpu"}) == BUG
    assert known_bugs.excluding("torch", case, {"torch": "2.14.0"}) is None
    assert known_bugs.excluding("torch", dataclasses.replace(case, layout="contiguous"), {"torch": "2.13.0"}) is None
    assert known_bugs.excluding("numpy", case, {"torch": "2.13.0"}) is None


def _torch_bug_reproduces() -> bool:
    from harness.records.environment import machine

    return (
        backends.get("torch").availability("cpu") is None
        and known_bugs.match(_row(versions=machine()["versions"])) != ""
    )


@pytest.mark.skipif(not _torch_bug_reproduces(), reason="torch is not installed here at a version the known bug covers")
def test_cli_prints_a_known_bug_apart_and_exits_0(tmp_path):
    ran = run_harness(
        "verify",
        "--backends",
        "torch",
        "--devices",
        "cpu",
        "--case",
        BUG.case,
        "--case",
        "2x12x5x7-g3-float32-contiguous-offset-s0",
        "--out",
        str(tmp_path),
    )
    assert ran.returncode == 0, ran.stdout + ran.stderr
    assert f"known bug {BUG.id}: 1 failed rows" in ran.stdout.replace("\n", " ")
    assert "0 failed (and 1 known framework bugs)" in ran.stdout
    frame = pd.read_parquet(next(tmp_path.glob("*.parquet")))
    row = frame.set_index("case_id").loc[BUG.case]
    assert row.status == "mismatch" and row.known_bug == BUG.id and row.ratio > 10  # still failed, not widened


def test_cli_any_other_failure_still_exits_1(tmp_path):
    ran = run_harness(
        "verify",
        "--plugin",
        "harness.selftest",
        "--backends",
        "bug-channels-last-one-pass",
        "--devices",
        "cpu",
        "--case",
        BUG.case,
        "--out",
        str(tmp_path),
    )
    assert ran.returncode == 1, ran.stdout + ran.stderr
    assert "known bug" not in ran.stdout
