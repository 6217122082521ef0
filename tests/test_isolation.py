"""A backend that segfaults, hangs or runs out of memory becomes a row; the sweep goes
on; finished rows survive an interruption and --resume does not redo them."""

import ctypes
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

import backends
import harness
from backends import GroupNormBackend
from conftest import ROOT, plain_group_norm

CASES = ["2x8x4-g2-float32-contiguous-normal-s0", "2x8x4-g2-float16-contiguous-normal-s0",
         "2x8x4-g2-float64-contiguous-normal-s0"]


def _backend(name, behaviour):
    """A backend made of lambdas (registered at run time) that misbehaves on float16."""

    def group_norm(x, num_groups, weight=None, bias=None, eps=1e-5):
        if x.dtype.itemsize == 2:
            behaviour()
        return plain_group_norm(x, num_groups, weight, bias, eps)

    return GroupNormBackend.from_function(name, group_norm)


def _segfault():
    ctypes.string_at(0)


def _hang():
    time.sleep(3600)


def _oom():
    raise MemoryError("simulated: could not allocate 80 GiB")


def _limited(allocate):
    """Under a real address-space limit (set in the worker), allocate 8 GiB."""
    import resource

    resource.setrlimit(resource.RLIMIT_AS, (4 << 30, resource.getrlimit(resource.RLIMIT_AS)[1]))
    allocate(8 << 30)


def _numpy_past_rlimit():
    import numpy as np

    _limited(lambda nbytes: np.ones(nbytes, np.uint8))


def _torch_past_rlimit():
    import torch

    _limited(lambda nbytes: torch.ones(nbytes, dtype=torch.uint8))


def _sigkill():
    os.kill(os.getpid(), signal.SIGKILL)


@pytest.mark.parametrize("name, behaviour, status, reason", [
    ("test-segfault", _segfault, "crash", "signal SIGSEGV"),
    ("test-hang", _hang, "timeout", "no answer within 3 s"),
    ("test-oom", _oom, "oom", "MemoryError"),
    ("test-numpy-rlimit", _numpy_past_rlimit, "oom", "Unable to allocate 8.00 GiB"),
    ("test-torch-rlimit", _torch_past_rlimit, "oom", "can't allocate memory"),
    ("test-sigkill", _sigkill, "crash", "killed by SIGKILL"),
], ids=["segfault", "hang", "oom-raised", "oom-numpy-rlimit", "oom-torch-rlimit", "sigkill-not-oom"])
def test_misbehaving_backend_becomes_a_row_and_the_sweep_goes_on(name, behaviour, status, reason):
    backends.register(_backend(name, behaviour), replace=True)
    try:
        frame = harness.verify(backends=[name, "numpy"], cases=CASES, timeout=3)
    finally:
        backends.unregister(name)
    mine = frame[frame.backend == name].set_index("case_id").status.to_dict()
    assert mine == {CASES[0]: "passed", CASES[1]: status, CASES[2]: "passed"}  # restarted after
    row = frame[(frame.backend == name) & (frame.status == status)].iloc[0]
    assert reason in row.reason
    assert (frame[frame.backend == "numpy"].status == "passed").all()


def test_bench_survives_a_crash_too():
    backends.register(_backend("test-segfault", _segfault), replace=True)
    try:
        frame = harness.bench(backends=["test-segfault"], cases=CASES, budget=0.05, timeout=10)
    finally:
        backends.unregister("test-segfault")
    assert frame.status.tolist() == ["passed", "crash", "passed"]
    assert frame.median_s.notna().tolist() == [True, False, True]


def test_the_driver_imports_no_framework_while_sweeping():
    code = textwrap.dedent("""
        import sys, harness
        harness.verify(backends=["torch", "jax", "numpy"], suite="smoke")
        harness.bench(backends=["torch", "numpy"], cases=["2x8x4-g2-float32-contiguous-normal-s0"], budget=0.05)
        print(sorted({m.split('.')[0] for m in sys.modules} & {"torch", "jax", "jaxlib", "numba", "cupy"}))
    """)
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == "[]"


def test_interrupted_sweep_keeps_finished_rows_and_resume_does_not_redo_them(tmp_path):
    out = tmp_path / "run"
    command = [sys.executable, "-m", "harness", "verify", "--plugin", "harness.selftest", "--backends",
               "numpy,welford-f32", "--suite", "default", "--out", str(out)]
    process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    log = out / ".verify-default.rows.jsonl"
    deadline = time.time() + 120
    while time.time() < deadline and (not log.exists() or log.read_text().count("\n") < 20):
        time.sleep(0.2)
    process.send_signal(signal.SIGKILL)  # no chance to clean up: only the log survives
    process.wait()
    finished = log.read_text().count("\n")
    assert finished >= 20 and not (out / "verify-default.parquet").exists()
    resumed = subprocess.run(command + ["--resume"], cwd=ROOT, capture_output=True, text=True, timeout=600,
                             env=dict(os.environ, COLUMNS="200"))
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    from harness.problems import suites
    from harness.records import results

    expected = 2 * len(suites.get("default"))
    frame = results.load(out / "verify-default.parquet")
    assert len(frame) == expected and not frame.duplicated(["case_id", "backend", "device"]).any()
    assert not log.exists()
    # nothing was redone: the killed run's rows keep its run id, the resumed run added the rest
    counts = frame.run_id.value_counts()
    assert len(counts) == 2 and sorted(counts) == sorted([finished, expected - finished])


def test_the_api_works_from_a_plain_script_without_a_main_guard(tmp_path):
    """Workers are their own program: starting one never runs the caller's script again."""
    script = tmp_path / "plain.py"
    script.write_text("import harness\n"
                      "rows = harness.verify(backends=['numpy', 'torch'], suite='smoke', devices=['cpu'])\n"
                      "print('RAN', (rows.status == 'passed').sum(), len(rows))\n")
    env = dict(os.environ, PYTHONPATH=ROOT)
    out = subprocess.run([sys.executable, str(script)], cwd=tmp_path, capture_output=True, text=True, timeout=300,
                         env=env)
    assert out.returncode == 0, out.stderr
    lines = [line for line in out.stdout.splitlines() if line.startswith("RAN")]
    assert len(lines) == 1, out.stdout  # the script ran once, not again in each worker
    _, passed, total = lines[0].split()
    assert int(passed) == int(total) >= 12


class DiesAtStart(backends.GroupNormBackend):
    """Unpickling it in its worker ends the worker, as a missing driver library would."""

    name = "test-dies-at-start"

    def __init__(self):
        self.library = "libgnkernel.so"  # instance state, so that unpickling calls __setstate__

    def group_norm(self, x, num_groups, weight=None, bias=None, eps=1e-5):
        return backends.get("numpy").group_norm(x, num_groups, weight, bias, eps)

    def from_numpy(self, array, device):
        return array

    def to_numpy(self, array):
        return array

    def __setstate__(self, state):
        sys.stderr.write("libgnkernel.so: cannot open shared object file\n")
        sys.stderr.flush()
        os._exit(3)


def test_a_worker_that_fails_to_start_is_a_crash_row_with_its_stderr_tail():
    backends.register(DiesAtStart(), replace=True)
    try:
        frame = harness.verify(backends=["test-dies-at-start", "numpy"], cases=CASES, timeout=30)
    finally:
        backends.unregister("test-dies-at-start")
    mine = frame[frame.backend == "test-dies-at-start"]
    assert mine.status.tolist() == ["crash"] * len(CASES)
    assert all(
        "failed to start" in reason and "code 3" in reason and "libgnkernel.so" in reason for reason in mine.reason
    )
    assert (frame[frame.backend == "numpy"].status == "passed").all()


@pytest.mark.parametrize(
    "text, expected",
    [
        ("low 0\nhigh 0\nmax 3\noom 2\noom_kill 1\n", 1),  # cgroup v2 memory.events
        ("oom_kill_disable 0\nunder_oom 0\noom_kill 7\n", 7),  # cgroup v1 memory.oom_control
        ("nr_free_pages 12\n", None),  # no counter
    ],
    ids=["v2", "v1", "none"],
)
def test_oom_kill_counter_is_read_from_the_kernels_files(text, expected, tmp_path):
    from harness.execution.pool import oom_kills

    path = tmp_path / "memory.events"
    path.write_text(text)
    assert oom_kills([str(tmp_path / "missing"), str(path)]) == expected


def test_sigkill_is_oom_only_with_the_kernels_evidence():
    from harness.execution.pool import _sigkill_reply

    assert _sigkill_reply(3, 4)["status"] == "oom" and "3 -> 4" in _sigkill_reply(3, 4)["reason"]
    assert _sigkill_reply(3, 3)["status"] == "crash" and "no OOM kill was recorded" in _sigkill_reply(3, 3)["reason"]
    assert _sigkill_reply(None, None)["status"] == "crash"
