"""Shared test helpers. Tests run from a checkout with or without installing."""

import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

import backends  # noqa: E402


@pytest.fixture(autouse=True, scope="session")
def _runs_and_cache_in_a_temporary_folder(tmp_path_factory):
    """The tests never write into the user's results/local/ or selection cache: runs
    without --out and cached selections go to a temporary folder (inherited by every
    command a test starts)."""
    base = tmp_path_factory.mktemp("gnbench-home")
    saved = {key: os.environ.get(key) for key in ("GNBENCH_RESULTS", "GNBENCH_CACHE")}
    os.environ["GNBENCH_RESULTS"] = str(base / "results")
    os.environ["GNBENCH_CACHE"] = str(base / "cache")
    yield base
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


def plain_group_norm(x, num_groups, weight=None, bias=None, eps=1e-5):
    """A short, correct NumPy GroupNorm (float64 math), as a user would write one."""
    import numpy as np

    n, c = x.shape[:2]
    import warnings

    warnings.filterwarnings("ignore", "Degrees of freedom", RuntimeWarning)
    warnings.filterwarnings("ignore", "Mean of empty slice", RuntimeWarning)
    g = x.astype(np.float64).reshape(n, num_groups, x.size // max(n * num_groups, 1))
    with np.errstate(all="ignore"):
        y = ((g - g.mean(-1, keepdims=True)) / np.sqrt(g.var(-1, keepdims=True) + eps)).reshape(x.shape)
    shape = (1, c) + (1,) * (x.ndim - 2)
    if weight is not None:
        y = y * weight.astype(np.float64).reshape(shape)
    if bias is not None:
        y = y + bias.astype(np.float64).reshape(shape)
    return y.astype(x.dtype)


def require(name: str, device: str = "cpu"):
    """Skip the calling test, with the backend's own reason, unless it can run."""
    reason = backends.get(name).availability(device)
    if reason:
        pytest.skip(f"{name}:{device} unavailable: {reason}")
    return backends.get(name)


def run_harness(*args, timeout=600):
    """Run ``python -m harness ARGS`` from the repo root; returns CompletedProcess."""
    env = dict(os.environ, COLUMNS="200")
    return subprocess.run(
        [sys.executable, "-m", "harness", *args], cwd=ROOT, env=env,
        capture_output=True, text=True, timeout=timeout,
    )
