"""``python -m harness`` (= ``gnbench``): exit codes, messages and reproducible failures."""

import shlex

import pytest

import backends
from conftest import run_harness


def test_verify_smoke_passes_with_a_summary_table():
    result = run_harness("verify", "--suite", "smoke", "--backends", "numpy,torch")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "verification summary" in result.stdout and "numpy" in result.stdout
    assert "0 failed" in result.stdout


def test_a_failure_exits_1_and_its_printed_command_reproduces_it():
    result = run_harness("verify", "--plugin", "harness.selftest", "--backends", "bug-unbiased-variance",
                         "--suite", "smoke")
    assert result.returncode == 1, result.stdout + result.stderr
    reruns = [line.split("rerun:", 1)[1].strip() for line in result.stdout.splitlines() if "rerun:" in line]
    assert reruns, result.stdout
    words = shlex.split(reruns[0])
    assert words[:3] == ["python", "-m", "harness"]
    case_id = words[words.index("--case") + 1]
    again = run_harness(*words[3:])
    assert again.returncode == 1, again.stdout + again.stderr
    assert case_id in again.stdout and "1 failed" in again.stdout


@pytest.mark.parametrize("args, listing", [
    (["--suite", "nope"], "valid suites: smoke, default"),
    (["--backends", "nope"], "valid backends: torch, jax, numpy"),
    (["--devices", "tpu"], "valid devices: cpu, cuda"),
    (["--dtypes", "float8"], "valid dtypes: float16, bfloat16, float32, float64"),
    (["--case", "not-a-case"], "does not have the form"),
], ids=["suite", "backend", "device", "dtype", "case"])
def test_unknown_names_are_usage_errors_listing_the_valid_ones(args, listing):
    result = run_harness("verify", *args)
    assert result.returncode == 2
    assert listing in " ".join((result.stdout + result.stderr).split())


def test_nothing_verified_exits_3_with_the_reason():
    reason = backends.get("torch").availability("cuda")
    if reason is None:
        pytest.skip("a CUDA device is present, so cuda rows do verify")
    result = run_harness("verify", "--suite", "smoke", "--backends", "torch", "--devices", "cuda")
    assert result.returncode == 3
    assert "nothing was verified" in result.stdout and "CUDA" in result.stdout


def test_argparse_usage_error_exits_2():
    assert run_harness("verify", "--no-such-flag").returncode == 2


def test_list_shows_backends_with_availability():
    result = run_harness("list")
    assert result.returncode == 0
    for name in ("torch", "jax", "numpy"):
        assert name in result.stdout
    assert "available" in result.stdout


def test_cases_prints_parseable_ids():
    from harness.problems.cases import Case

    result = run_harness("cases", "--suite", "smoke")
    ids = result.stdout.split()
    assert len(ids) == 12 and all(Case.from_id(i).id == i for i in ids)


def test_out_writes_parquet_and_export_makes_csv_that_loads_back(tmp_path):
    from harness.records import results

    result = run_harness("verify", "--suite", "smoke", "--backends", "numpy", "--out", str(tmp_path / "run"))
    assert result.returncode == 0
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == ["verify-smoke.parquet"]
    exported = run_harness("export", str(tmp_path / "run"), "--csv", str(tmp_path / "csv" / "rows.csv"))
    assert exported.returncode == 0 and "12 rows written to" in exported.stdout, exported.stderr
    for path in (tmp_path / "run" / "verify-smoke.parquet", tmp_path / "csv" / "rows.csv"):
        frame = results.load(path)
        assert len(frame) == 12 and set(frame.status) == {"passed"}
        assert (frame.schema_version == results.SCHEMA_VERSION).all() and frame.cpu_model.notna().all()


@pytest.mark.parametrize("args, message", [
    (("verify", "--suite", "smoke", "--backends", "numpy", "--resume"), "--resume continues the run in --out DIR"),
    (("bench", "--suite", "smoke", "--backends", "numpy", "--budget", "-1"), "--budget must be a positive"),
    (("select", "--shape", "2,8,4", "--num-groups", "2", "--budget", "-1"), "budget must be a positive"),
    (("select", "--shape", "2,8,4", "--num-groups", "2", "--results", "/nonexistent"), "no results file or folder"),
], ids=["resume-without-out", "bench-negative-budget", "select-negative-budget", "select-missing-results"])
def test_usage_errors_exit_2_with_the_reason(args, message, tmp_path, monkeypatch):
    monkeypatch.setenv("GNBENCH_CACHE", str(tmp_path))  # a cached answer must not hide the error
    ran = run_harness(*args)
    assert ran.returncode == 2 and message in (ran.stdout + ran.stderr).replace("\n", " "), ran.stdout + ran.stderr


@pytest.mark.parametrize("command", [
    ("verify", "--suite", "smoke", "--backends", "numpy"),
    ("bench", "--suite", "smoke", "--backends", "numpy"),
    ("report", "RESULTS"),
    ("fuzz", "--backends", "numpy", "--budget", "1"),
], ids=["verify", "bench", "report", "fuzz"])
def test_out_pointing_to_a_file_is_a_usage_error(command, tmp_path):
    from conftest import ROOT

    a_file = tmp_path / "notes.txt"
    a_file.write_text("mine, keep it")
    args = [ROOT + "/tests/data/verify-adversarial-schema2.csv" if word == "RESULTS" else word for word in command]
    ran = run_harness(*args, "--out", str(a_file))
    assert ran.returncode == 2, ran.stdout + ran.stderr
    assert "--out must be a folder" in ran.stderr and "Traceback" not in ran.stderr
    assert a_file.read_text() == "mine, keep it"


@pytest.mark.parametrize("content", ["hello\n", "", "PAR1 not really parquet"], ids=["csv", "empty", "parquet"])
def test_report_on_a_file_that_is_not_results_is_a_usage_error(content, tmp_path):
    path = tmp_path / ("bogus.parquet" if content.startswith("PAR1") else "bogus.csv")
    path.write_text(content)
    ran = run_harness("report", str(path), "--out", str(tmp_path / "report"))
    assert ran.returncode == 2, ran.stdout + ran.stderr
    assert "is not a groupnorm-bench results file" in ran.stderr and "Traceback" not in ran.stderr


def test_runs_without_out_go_to_gnbench_results(tmp_path, monkeypatch):
    monkeypatch.setenv("GNBENCH_RESULTS", str(tmp_path))
    ran = run_harness("verify", "--suite", "smoke", "--backends", "numpy")
    assert ran.returncode == 0, ran.stdout + ran.stderr
    [run] = list(tmp_path.iterdir())
    assert run.name.endswith("-verify") and (run / "verify-smoke.parquet").exists()


def test_cases_into_a_closed_pipe_is_quiet():
    import subprocess
    import sys

    from conftest import ROOT

    ran = subprocess.run(f"{sys.executable} -m harness cases --suite default | head -1", shell=True, cwd=ROOT,
                         capture_output=True, text=True, timeout=120)
    assert ran.stdout.count("\n") == 1 and "Traceback" not in ran.stderr and "BrokenPipe" not in ran.stderr


def test_verify_does_not_import_the_cli():
    import subprocess
    import sys

    from conftest import ROOT

    code = "import sys, harness.commands.verify; print('harness.cli' in sys.modules)"
    ran = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert ran.stdout.strip() == "False", ran.stderr
