"""Shared test helpers. Tests run from a checkout with or without installing."""

import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

import backends  # noqa: E402

# -- running in parallel ------------------------------------------------------------------
# pyproject.toml runs the suite with pytest-xdist (-n auto --dist loadfile): a module runs on
# one worker, so a module-scoped fixture (the self-test's run, the CUDA simulator's, the
# compiled SASS) is made once. Everything that starts a local Ray is in test_cluster.py (the
# docs' Ray block too), so two Rays never run at once. The heaviest modules are queued
# first, so the last module to start is a short one and the workers finish together.
HEAVY_FIRST = ("test_numba_cuda", "test_selftest", "test_cupy_kernels", "test_docs", "test_select", "test_imports",
               "test_numba_cpu_statistics", "test_asv", "test_cluster", "test_backends", "test_dropin_dispatch",
               "test_dropin_testing", "test_isolation", "test_cli", "test_user_contexts", "test_fuzz")


@pytest.fixture(scope="session", autouse=True)
def own_cache(tmp_path_factory):
    """Every test process caches select/verified answers in a folder of its own, never in
    the user's ~/.cache: an answer left there by an earlier run would let a test skip the
    measuring it checks (and a test's answers must not reach the user's models)."""
    saved = os.environ.get("GNBENCH_CACHE")
    os.environ["GNBENCH_CACHE"] = str(tmp_path_factory.mktemp("gnbench-cache"))
    yield
    if saved is None:
        os.environ.pop("GNBENCH_CACHE", None)
    else:
        os.environ["GNBENCH_CACHE"] = saved


def pytest_collection_modifyitems(config, items):
    order = {name: index for index, name in enumerate(HEAVY_FIRST)}
    items.sort(key=lambda item: order.get(item.module.__name__.rpartition(".")[2], len(order)))


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


def run_notebook(code: str, folder, cache) -> tuple[str, str]:
    """Run ``code`` as a Jupyter notebook (one cell per blank-line-separated block) in a
    real kernel whose working folder is ``folder`` and whose GNBENCH_CACHE is ``cache``;
    fail on any error output; return the cells' (stdout, stderr) text."""
    import json

    nbformat = pytest.importorskip("nbformat", reason="the test extra installs nbformat")
    nbclient = pytest.importorskip("nbclient", reason="the test extra installs nbclient")
    pytest.importorskip("ipykernel", reason="the test extra installs ipykernel")
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(cell) for cell in code.split("\n\n")])
    client = nbclient.NotebookClient(notebook, timeout=600, kernel_name="python3",
                                     resources={"metadata": {"path": str(folder)}})
    saved = {key: os.environ.get(key) for key in ("PYTHONPATH", "GNBENCH_CACHE")}
    os.environ.update(PYTHONPATH=ROOT, GNBENCH_CACHE=str(cache))  # the kernel inherits these
    try:
        client.execute()
    finally:
        for key, value in saved.items():
            os.environ.pop(key) if value is None else os.environ.__setitem__(key, value)
    outputs = [output for cell in notebook.cells for output in cell.get("outputs", [])]
    assert not [o for o in outputs if o.output_type == "error"], json.dumps(outputs)[:2000]
    streams = [o for o in outputs if o.output_type == "stream"]
    return ("".join(o.get("text", "") for o in streams if o.name == "stdout"),
            "".join(o.get("text", "") for o in streams if o.name == "stderr"))
