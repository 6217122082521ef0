"""The built-in backends pass the default suite, keep layouts, and behave as documented.

CUDA parameters skip with the backend's own reason where there is no GPU.
"""

import subprocess
import sys
import textwrap

import numpy as np
import pytest

import harness
from conftest import ROOT, require
from harness.problems import inputs
from harness.problems.cases import Case

# torch, jax and numpy on the CPU pass the default suite in tests/test_selftest.py: the
# self-test runs them there as its correct implementations (both passes), and
# test_correct_frameworks_fail_and_refuse_only_as_documented checks what this test does.
PAIRS = [("numba-cpu", "cpu"), ("torch", "cuda"), ("jax", "cuda")]


@pytest.mark.parametrize("name, device", PAIRS, ids=[f"{n}-{d}" for n, d in PAIRS])
def test_builtin_backend_passes_the_default_suite(name, device):
    require(name, device)
    frame = harness.verify(backends=[name], devices=[device], suite="default")
    failures = frame[harness.known_bugs.unexpected(frame)]
    assert failures.empty, failures[["case_id", "status", "ratio", "reason"]].to_string()
    known = frame[frame.status.isin(harness.FAILED)]  # kept failed: a known framework bug explains each
    assert (known.known_bug != "").all() and (known.layout == "channels_last").all()
    passed = frame[frame.status == "passed"]
    assert len(passed) >= 200 and passed.ratio.max() < 1.0
    unsupported = frame[frame.status == "unsupported"]
    assert (unsupported.layout != "contiguous").all()  # only JAX's strided layouts


def test_numba_cpu_passes_the_adversarial_suite_on_its_hard_small_cases():
    require("numba-cpu")
    cases = [c for c in harness.suites.get("adversarial") if c.numel <= 1_000_000]
    frame = harness.verify(backends=["numba-cpu"], cases=cases)
    assert (frame.status == "passed").all(), frame[frame.status != "passed"][["case_id", "status", "reason"]]


@pytest.mark.parametrize("layout", ["channels_last", "strided"])
@pytest.mark.parametrize("name", ["torch", "numpy", "numba-cpu"])
def test_from_numpy_keeps_the_layout(name, layout):
    backend = require(name)
    host = inputs.make(Case((2, 6, 4, 5), 3, "float32", layout)).x
    native = backend.from_numpy(host, "cpu")
    strides = native.stride() if name == "torch" else tuple(s // host.itemsize for s in native.strides)
    assert strides == tuple(s // host.itemsize for s in host.strides)
    np.testing.assert_array_equal(backend.to_numpy(native), host)


@pytest.mark.parametrize("name", ["torch", "jax", "numpy"])
def test_bfloat16_round_trips_through_the_host(name):
    backend = require(name)
    host = inputs.make(Case((2, 4, 3), 2, "bfloat16")).x
    back = backend.to_numpy(backend.from_numpy(host, "cpu"))
    assert str(back.dtype) == "bfloat16" and back.tobytes() == np.ascontiguousarray(host).tobytes()


@pytest.mark.parametrize("name", ["torch", "numpy"])
def test_shares_memory_sees_views_and_not_copies(name):
    backend = require(name)
    x = backend.from_numpy(np.ones((2, 4, 3), np.float32), "cpu")
    other = backend.from_numpy(np.ones((2, 4, 3), np.float32), "cpu")
    assert backend.shares_memory(x, x[:, 1:])
    assert not backend.shares_memory(x, other)


def test_jax_float64_needs_no_config_and_leaves_the_process_in_32_bit():
    require("jax")
    code = textwrap.dedent("""
        import numpy as np, backends
        jax_backend = backends.get("jax")
        x = jax_backend.from_numpy(np.random.default_rng(0).standard_normal((2, 4, 3)), "cpu")
        y = jax_backend.group_norm(x, 2)
        import jax, jax.numpy as jnp
        assert str(x.dtype) == "float64" and str(y.dtype) == "float64", (x.dtype, y.dtype)
        assert jax.config.jax_enable_x64 is False
        assert jnp.ones(1).dtype == jnp.float32
        import os
        assert os.environ["XLA_PYTHON_CLIENT_PREALLOCATE"] == "false"
        print("ok")
    """)
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0 and result.stdout.strip() == "ok", result.stderr


def test_jax_refuses_layouts_it_cannot_express_with_a_reason():
    backend = require("jax")
    reason = backend.supports(Case((2, 6, 4), 3, layout="channels_last"))
    assert "no strides" in reason


def test_numpy_half_statistics_are_float32():
    """Half inputs whose squares overflow float16 still normalize correctly."""
    backend = require("numpy")
    case = Case((2, 8, 64), 2, "float16", distribution="large_values")
    frame = harness.verify(backends=["numpy"], cases=[case])
    assert frame.status.tolist() == ["passed"]
    assert backend.dtypes == ("float16", "bfloat16", "float32", "float64")


def test_unavailable_device_reason_says_what_to_do():
    import backends

    for name in ("torch", "jax"):
        reason = backends.get(name).availability("cuda")
        if reason is not None:
            assert "CUDA" in reason or "cuda" in reason
    assert "does not run on 'cuda'" in backends.get("numpy").availability("cuda")


def test_torch_compile_verifies_the_smoke_suite():
    require("torch")
    frame = harness.verify(backends=["torch-compile"], suite="smoke", devices=["cpu"])
    assert (frame.status == "passed").all(), frame[["case_id", "status", "reason"]]


def test_torch_compile_is_opt_in():
    assert "torch-compile" not in {name for name, _ in harness.plan(suite="smoke").pairs}
    assert ("torch-compile", "cpu") in harness.plan(backends="torch-compile", suite="smoke").pairs
