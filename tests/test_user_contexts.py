"""The Python API where users call it: a plain script without a ``__main__`` guard, a
Jupyter kernel, and a user's own pytest suite. In each, a backend defined right there
(in ``__main__``, a notebook cell, a test module) runs isolated in its worker: a
segfaulting one becomes a ``crash`` row and everything else goes on."""

import os
import subprocess
import sys

import pytest

from conftest import ROOT, run_notebook

# What a user writes: their own GroupNorm and a broken one, defined where they work.
USER_CODE = """\
import ctypes, backends, harness

def mine(x, num_groups, weight=None, bias=None, eps=1e-5):
    return backends.get("numpy").group_norm(x, num_groups, weight, bias, eps)

def segfaults(x, num_groups, weight=None, bias=None, eps=1e-5):
    ctypes.string_at(0)

backends.register(backends.GroupNormBackend.from_function("user-mine", mine), replace=True)
backends.register(backends.GroupNormBackend.from_function("user-crash", segfaults), replace=True)
rows = harness.verify(backends=["user-mine", "user-crash", "numpy"], suite="smoke")
print("VERIFY", sorted({(b, s) for b, s in zip(rows.backend, rows.status)}))
gn = harness.fastest((2, 8, 4, 4), 4, dtype="float32", device="cpu", backends=["numpy", "user-mine"], budget=0.05)
print("FASTEST", gn.name)
"""

EXPECTED_VERIFY = "VERIFY [('numpy', 'passed'), ('user-crash', 'crash'), ('user-mine', 'passed')]"


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    """One selection cache for the three contexts: the first measures, the others get the
    cached answer through the same API call (the workers still start for verify)."""
    return str(tmp_path_factory.mktemp("selection-cache"))


def _env(cache):
    return dict(os.environ, PYTHONPATH=ROOT, GNBENCH_CACHE=cache)


def _check(stdout: str) -> None:
    lines = [line for line in stdout.splitlines() if line.startswith(("VERIFY", "FASTEST"))]
    assert lines[0] == EXPECTED_VERIFY, stdout
    assert lines[1] in ("FASTEST numpy", "FASTEST user-mine"), stdout
    assert len(lines) == 2, stdout  # the user's code ran once, never again in a worker


def test_plain_script_with_backends_defined_in_main(tmp_path, cache):
    script = tmp_path / "mine.py"
    script.write_text(USER_CODE)
    ran = subprocess.run([sys.executable, str(script)], cwd=tmp_path, env=_env(cache), capture_output=True,
                         text=True, timeout=600)
    assert ran.returncode == 0, ran.stderr
    _check(ran.stdout)
    assert "IsolationWarning" not in ran.stderr  # they were pickled to their workers, not run here


def test_a_users_own_pytest_suite(tmp_path, cache):
    """A test file outside this project (its own rootdir, none of our conftest)."""
    body = "\n".join("    " + line for line in USER_CODE.splitlines())
    (tmp_path / "test_users_groupnorm.py").write_text(f"def test_my_group_norm():\n{body}\n")
    ran = subprocess.run([sys.executable, "-m", "pytest", "-q", "-s", "-p", "no:cacheprovider",
                          "test_users_groupnorm.py"], cwd=tmp_path, env=_env(cache), capture_output=True, text=True,
                         timeout=600)
    assert ran.returncode == 0, ran.stdout + ran.stderr
    assert "1 passed" in ran.stdout
    _check(ran.stdout)


def test_a_jupyter_notebook(tmp_path, cache):
    stdout, warnings = run_notebook(USER_CODE, tmp_path, cache)  # the functions in their own cells
    _check(stdout)
    assert "IsolationWarning" not in warnings, warnings


def test_a_backend_that_cannot_be_pickled_runs_in_process_with_a_warning():
    """The documented fallback: isolation off, and a warning that says how to restore it."""
    import threading

    import backends
    import harness
    from harness.execution.pool import IsolationWarning

    lock = threading.Lock()  # a lock cannot be pickled

    def guarded(x, num_groups, weight=None, bias=None, eps=1e-5):
        with lock:
            return backends.get("numpy").group_norm(x, num_groups, weight, bias, eps)

    backends.register(backends.GroupNormBackend.from_function("test-locked", guarded), replace=True)
    try:
        with pytest.warns(IsolationWarning, match="runs in this process, without isolation.*importable module"):
            rows = harness.verify(backends=["test-locked"], cases=["2x8x4x4-g4-float32-contiguous-normal-s0"])
    finally:
        backends.unregister("test-locked")
    assert rows.status.tolist() == ["passed"]
