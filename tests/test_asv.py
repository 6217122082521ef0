"""The asv suite (benchmarks/) and the gate (harness/commands/asv_runs.py).

CI runs ``asv check`` and a quick asv run of a small subset here, so a broken benchmark
fails CI; the gate's rule is tested on synthetic samples (its end-to-end demonstration
with a planted slowdown is in results/, since it needs minutes of quiet machine).
"""

import json
import os
import random
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ROOT

pytest.importorskip("asv", reason="asv is not installed: pip install -e '.[test]'")

from benchmarks.common import BACKEND_DEVICES, TRAINING_CASES, WORKLOADS  # noqa: E402
from harness.commands import asv_runs  # noqa: E402
from harness.problems import suites
from harness.records.environment import machine  # noqa: E402

# A small subset: every benchmark method, two CPU backends, the smallest workload.
QUICK_SUBSET = (r"(Forward\.\w+\('(torch|numpy):cpu', '2x320x64x64-g32-float16-contiguous"
                r"|Training\.\w+\('(torch|numpy):cpu', '2x320x64x64-g32-float32-contiguous"
                r"|Dispatch\.\w+|DropInBlock\.\w+\('groupnorm_bench', 'channels_last', 'eager')")
TRAINING_CASE = "2x320x64x64-g32-float32-contiguous-normal-s0-backward-gy_normal"


def _git_head():
    try:
        return asv_runs.resolve("HEAD")
    except (ValueError, OSError) as error:
        pytest.skip(f"not a git checkout with a commit: {error}")


def _asv_env(tmp_path):
    # asv keeps its machine record in ~/.asv-machine.json: a private home for the tests.
    return {key: value for key, value in os.environ.items() if key != "GNBENCH_ASV_CODE"} | {"HOME": str(tmp_path)}


@pytest.mark.parametrize("case_id", sorted(WORKLOADS), ids=lambda case_id: case_id.split("-normal")[0])
def test_workload_is_a_case_of_its_suite(case_id):
    assert case_id in {case.id for case in suites.get(WORKLOADS[case_id])}, WORKLOADS[case_id]


@pytest.mark.parametrize("case_id", TRAINING_CASES, ids=lambda case_id: case_id.split("-normal")[0])
def test_training_cases_are_backward_cases_whose_train_twin_parses(case_id):
    from harness.problems.cases import Case

    case = Case.from_id(case_id)
    assert case.pass_ == "backward"
    assert Case.from_id(case_id.replace("-backward-", "-train-")).pass_ == "train"


def test_backend_parameter_covers_every_builtin_backend_and_device():
    import backends

    expected = {f"{name}:{device}" for name in backends.BUILTIN for device in backends.get(name).devices}
    assert set(BACKEND_DEVICES) == expected
    assert {"torch:cpu", "numba-cuda:cuda", "cupy:cuda", "jax:cuda"} <= expected


def test_asv_check_finds_no_problem(tmp_path):
    done = subprocess.run([sys.executable, "-m", "asv", "check", "--python=same"], cwd=ROOT,
                          env=_asv_env(tmp_path), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "No problems found" in done.stdout


def test_quick_asv_run_of_a_subset_gives_every_result(tmp_path, monkeypatch):
    """asv itself, on the working tree, saving under HEAD: every benchmark method of the
    subset must produce a number (a benchmark that raises shows up as None here)."""
    head = _git_head()
    monkeypatch.setenv("HOME", str(tmp_path))
    machine = asv_runs.machine_record("ci-test")["machine"]
    results = tmp_path / "results"
    config = asv_runs.config_for(results, tmp_path / "html", tmp_path / "asv.conf.json")
    log = tmp_path / "asv.log"
    status = asv_runs.run_asv(config, head, code=None, bench=[QUICK_SUBSET], machine=machine, log=log, quick=True)
    text = log.read_text()
    assert status == 0, text[-3000:]
    found = asv_runs.samples(results, machine, head)
    methods = ("time_forward", "track_error_ratio", "track_ms_per_gb", "track_roofline_gap_pct", "track_first_call_s")
    for backend in ("torch:cpu", "numpy:cpu"):
        for method in methods:
            name = f"forward.Forward.{method}('{backend}', '2x320x64x64-g32-float16-contiguous-normal-s0')"
            assert found.get(name), f"{name} gave no result: {text[-3000:]}"
        ratio = found[f"forward.Forward.track_error_ratio('{backend}', '2x320x64x64-g32-float16-contiguous-normal-s0')"]
        assert 0 <= ratio[0] <= 1, f"{backend} fails verification in the asv suite: ratio {ratio}"
        for method in ("time_backward", "time_train", "track_train_error_ratio", "track_backward_ms_per_gb"):
            name = f"training.Training.{method}('{backend}', '{TRAINING_CASE}')"
            assert found.get(name), f"{name} gave no result: {text[-3000:]}"
        ratio = found[f"training.Training.track_train_error_ratio('{backend}', '{TRAINING_CASE}')"]
        assert 0 <= ratio[0] <= 1, f"{backend} fails the train pass in the asv suite: ratio {ratio}"
    for name in ("dropin.Dispatch.time_groupnorm_bench_module", "dropin.Dispatch.time_nn_group_norm",
                 "dropin.Dispatch.track_dispatch_overhead_us",
                 "dropin.DropInBlock.time_forward('groupnorm_bench', 'channels_last', 'eager')",
                 "dropin.DropInBlock.time_train_step('groupnorm_bench', 'channels_last', 'eager')"):
        assert found.get(name), f"{name} gave no result: {text[-3000:]}"
    machine_json = json.loads((results / machine / "machine.json").read_text())
    assert machine_json["gpu"] == _gpu_by_nvidia_smi() or machine_json["gpu"].startswith(_gpu_by_nvidia_smi() + " (")


def test_record_refuses_a_history_made_on_another_cpu(tmp_path, monkeypatch):
    """``record`` into a machine's history whose machine.json names another CPU (the
    model name alone, as before the signature; or another signature) stops with a clear
    error before running asv: one history must not hold two hosts' timings."""
    monkeypatch.setenv("HOME", str(tmp_path))
    this = asv_runs.machine_record("ci-test")
    assert machine()["cpu_signature"] in this["cpu"] and machine()["cpu_model"] in this["cpu"]
    history = tmp_path / "results" / "ci-test"
    history.mkdir(parents=True)
    for cpu in ("AMD EPYC (2 of 2 CPUs usable)", "AMD EPYC (AuthenticAMD 25/17/1 avx512f; 2 of 2 CPUs usable)"):
        (history / "machine.json").write_text(json.dumps({**this, "cpu": cpu}))
        with pytest.raises(ValueError, match="mix two machines' timings"):
            asv_runs.record(["HEAD"], machine="ci-test", results_dir=tmp_path / "results")
    done = subprocess.run([sys.executable, "-m", "harness.asv_runs", "record", "HEAD", "--machine", "ci-test",
                           "--results-dir", str(tmp_path / "results")], cwd=ROOT, capture_output=True, text=True,
                          env={**os.environ, "HOME": str(tmp_path)}, timeout=120)
    assert done.returncode == 2 and "error: " in done.stderr and "--machine" in done.stderr, done.stderr


def _gpu_by_nvidia_smi() -> str:
    """The GPU's name as nvidia-smi gives it, "none" without one (asked independently of
    harness.environment, which the machine record uses)."""
    import shutil

    if not shutil.which("nvidia-smi"):
        return "none"
    done = subprocess.run(["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"], capture_output=True, text=True)
    names = [line.strip() for line in done.stdout.splitlines() if line.strip()]
    return "; ".join(names) if done.returncode == 0 and names else "none"


def test_history_reads_the_committed_results(tmp_path):
    done = subprocess.run([sys.executable, "-m", "harness.asv_runs", "history", "show"], cwd=ROOT,
                          env=_asv_env(tmp_path), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    machines = [p.name for p in (Path(ROOT) / "results" / "asv").iterdir() if p.is_dir()]
    assert machines and all(machine in done.stdout for machine in machines), done.stdout
    wrong = subprocess.run([sys.executable, "-m", "harness.asv_runs", "history", "run"], cwd=ROOT,
                           env=_asv_env(tmp_path), capture_output=True, text=True, timeout=60)
    assert wrong.returncode == 2 and "history takes one of publish, preview, compare, show" in wrong.stderr


def test_benchmarks_refuse_a_code_root_without_the_harness(tmp_path):
    env = dict(os.environ, GNBENCH_ASV_CODE=str(tmp_path))
    done = subprocess.run([sys.executable, "-c", "import benchmarks"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode != 0
    assert f"GNBENCH_ASV_CODE={tmp_path} holds no harness/" in done.stderr


def _rounds(rng, median, count=3, size=10, spread=0.03):
    return [[median * (1 + rng.uniform(-spread, spread)) for _ in range(size)] for _ in range(count)]


def test_gate_flags_a_2x_slowdown():
    rng = random.Random(0)
    verdict = asv_runs.judge("t", _rounds(rng, 1e-3), _rounds(rng, 2e-3))
    assert verdict.verdict == "regressed"
    assert verdict.ratio == pytest.approx(2, rel=0.05)
    assert verdict.p_value < asv_runs.P_THRESHOLD and verdict.separation > asv_runs.FACTOR
    assert len(verdict.base_rounds) == len(verdict.head_rounds) == 3


@pytest.mark.parametrize("seed", range(5))
def test_gate_ignores_same_distribution(seed):
    rng = random.Random(seed)
    assert asv_runs.judge("t", _rounds(rng, 1e-3, spread=0.2), _rounds(rng, 1e-3, spread=0.2)).verdict == "unchanged"


def test_gate_ignores_one_slow_process():
    """A whole round at 2x (a process that ran slow, as seen on this 2-core machine) moves
    neither the pooled median past the factor nor the test past its threshold."""
    rng = random.Random(1)
    head = _rounds(rng, 1e-3)
    head[1] = [2 * value for value in head[1]]
    assert asv_runs.judge("t", _rounds(rng, 1e-3), head).verdict == "unchanged"


def test_gate_calls_a_slowdown_hidden_by_a_slow_base_process_inconclusive():
    """Every head round 2x, but one base process ran at 2x too: the rounds overlap, so the
    gate cannot tell the change from the machine's noise and says so."""
    rng = random.Random(4)
    base = _rounds(rng, 1e-3)
    base[2] = [2 * value for value in base[2]]
    verdict = asv_runs.judge("t", base, _rounds(rng, 2e-3))
    assert verdict.ratio > 1.5 and verdict.p_value < asv_runs.P_THRESHOLD
    assert verdict.separation < asv_runs.FACTOR and verdict.verdict == "inconclusive"


def test_gate_ignores_a_significant_change_below_the_factor():
    rng = random.Random(2)
    verdict = asv_runs.judge("t", _rounds(rng, 1e-3, spread=0.001), _rounds(rng, 1.05e-3, spread=0.001))
    assert verdict.p_value < asv_runs.P_THRESHOLD and verdict.verdict == "unchanged"


def test_gate_reports_improvement_and_new_failures():
    rng = random.Random(3)
    assert asv_runs.judge("t", _rounds(rng, 2e-3), _rounds(rng, 1e-3)).verdict == "improved"
    assert asv_runs.judge("t", _rounds(rng, 1e-3), [None, None]).verdict == "now fails"
    assert asv_runs.judge("t", [None], _rounds(rng, 1e-3)).verdict == "fixed"


def test_gate_names_a_revision_that_does_not_exist(tmp_path):
    done = subprocess.run([sys.executable, "-m", "harness.asv_runs", "gate", "--base", "no-such-branch-xyz",
                           "--out", str(tmp_path)], cwd=ROOT, env=_asv_env(tmp_path),
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert "revision 'no-such-branch-xyz' names no commit" in done.stderr


@pytest.mark.parametrize("args, message", [
    (["--factor", "0.9"], "--factor must be above 1"),
    (["--rounds", "1"], "--rounds must be at least 2"),
], ids=["factor-below-1", "one-round"])
def test_gate_refuses_settings_that_cannot_judge(tmp_path, args, message):
    done = subprocess.run([sys.executable, "-m", "harness.asv_runs", "gate", "--base", "HEAD", "--out", str(tmp_path),
                           *args], cwd=ROOT, env=_asv_env(tmp_path), capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and message in done.stderr
