"""The drop-in module and the testing helpers where users call them: assert_group_norm_correct,
the opt-in pytest plugin in a user's own suite, a plain script without a __main__ guard,
and a Jupyter notebook."""

import os
import subprocess
import sys

import pytest

from conftest import ROOT, run_notebook

torch = pytest.importorskip("torch")
F = torch.nn.functional

from groupnorm_bench import assert_group_norm_correct  # noqa: E402


def one_pass_variance(x, num_groups, weight=None, bias=None, eps=1e-5):
    """A plausible user kernel with a planted bug: variance as E[x^2] - E[x]^2 in float32."""
    n, channels = x.shape[:2]
    groups = x.float().reshape(n, num_groups, -1)
    mean = groups.mean(-1, keepdim=True)
    variance = (groups * groups).mean(-1, keepdim=True) - mean * mean
    y = ((groups - mean) / torch.sqrt(variance + eps)).reshape(x.shape)
    shape = (1, channels) + (1,) * (x.dim() - 2)
    if weight is not None:
        y = y * weight.reshape(shape)
    if bias is not None:
        y = y + bias.reshape(shape)
    return y.to(x.dtype)


def test_assert_group_norm_correct_passes_torch_forward_and_train():
    frame = assert_group_norm_correct(F.group_norm, suite="smoke", passes=("forward", "train"))
    assert set(frame["pass"]) == {"forward", "train"} and (frame.status == "passed").all()


def test_assert_group_norm_correct_catches_a_one_pass_variance_with_a_rerun_line():
    with pytest.raises(AssertionError) as failure:
        assert_group_norm_correct(one_pass_variance, suite="smoke", passes=("forward", "train"))
    message = str(failure.value)
    assert "one_pass_variance:" in message and "offset" in message and "x the tolerance" in message
    assert "rerun: assert_group_norm_correct(fn, cases=['2x8x4x4-g2-float32-contiguous-offset-s0']" in message
    assert "-train-gy_normal" in message  # its gradients fail too


def test_assert_group_norm_correct_takes_numpy_functions_and_backend_names():
    import backends

    numpy_gn = backends.get("numpy")
    frame = assert_group_norm_correct(lambda *a: numpy_gn.group_norm(*a), arrays="numpy", suite="smoke")
    assert (frame.status == "passed").all()
    assert_group_norm_correct("numpy", suite="smoke", passes=("backward",))


def test_an_assertion_that_ran_nothing_does_not_pass():
    import backends

    with pytest.raises(AssertionError, match="no GroupNorm case ran"):
        forward_only = backends.GroupNormBackend.from_function("fwd-only", backends.get("numpy").group_norm)
        assert_group_norm_correct(forward_only, suite="smoke", passes=("train",))


# -- where users call it --------------------------------------------------------------------

PLUGIN_TESTS = '''\
import pytest, torch
import torch.nn.functional as F

def one_pass_variance(x, num_groups, weight=None, bias=None, eps=1e-5):
    n, channels = x.shape[:2]
    groups = x.float().reshape(n, num_groups, -1)
    mean = groups.mean(-1, keepdim=True)
    variance = (groups * groups).mean(-1, keepdim=True) - mean * mean
    y = ((groups - mean) / torch.sqrt(variance + eps)).reshape(x.shape)
    shape = (1, channels) + (1,) * (x.dim() - 2)
    return (y * weight.reshape(shape) + bias.reshape(shape)).to(x.dtype) if weight is not None else y.to(x.dtype)

@pytest.mark.groupnorm(suite="smoke", passes=("forward", "train"), dtypes=("float32",))
@pytest.mark.parametrize("fn", [F.group_norm, one_pass_variance], ids=["torch", "one_pass"])
def test_kernel(groupnorm_case, fn):
    if groupnorm_case.shape[0] == 0:
        pytest.skip("empty batch: the planted kernel cannot reshape it, not what this test is about")
    x, weight, bias, grad_y = groupnorm_case.inputs("cpu", requires_grad=True)
    y = fn(x, groupnorm_case.num_groups, weight, bias, groupnorm_case.eps)
    if grad_y is None:
        groupnorm_case.check(y=y)
    else:
        y.backward(grad_y)
        groupnorm_case.check(y=y, grad_x=x.grad, grad_weight=None if weight is None else weight.grad,
                             grad_bias=None if bias is None else bias.grad)

def test_helper(assert_group_norm_correct):
    assert_group_norm_correct(F.group_norm, suite="smoke")
'''


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    """One on-disk choice cache for the script and the notebook: the first verifies, the
    second finds the choices cached (as a user's second session would)."""
    return str(tmp_path_factory.mktemp("dispatch-cache"))


def _env(tmp_path, cache=None):
    return dict(os.environ, PYTHONPATH=ROOT, GNBENCH_CACHE=cache or str(tmp_path / "cache"))


def test_the_pytest_plugin_in_a_users_own_suite(tmp_path):
    (tmp_path / "test_users_kernel.py").write_text(PLUGIN_TESTS)
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-rf", "test_users_kernel.py"]
    ran = subprocess.run(command + ["-p", "groupnorm_bench.pytest_plugin"], cwd=tmp_path, env=_env(tmp_path),
                         capture_output=True, text=True, timeout=600)
    out = ran.stdout + ran.stderr
    assert ran.returncode == 1, out
    from harness.problems import suites

    cases = [c for p in ("forward", "train") for c in suites.get("smoke", p) if c.dtype == "float32"]
    failed = [line for line in ran.stdout.splitlines() if line.startswith("FAILED")]
    assert failed and all("-one_pass]" in line for line in failed), out
    assert any("float32-contiguous-offset-s0-one_pass" in line for line in failed), out
    assert "rerun: pytest -p groupnorm_bench.pytest_plugin -k" in out
    passed = int(ran.stdout.split(" passed")[0].split()[-1])
    empty = sum(c.shape[0] == 0 for c in cases)
    assert passed + len(failed) + 2 * empty == 2 * len(cases) + 1, out  # + test_helper
    # not auto-loaded: without -p the fixture does not exist
    bare = subprocess.run(command, cwd=tmp_path, env=_env(tmp_path), capture_output=True, text=True, timeout=600)
    assert bare.returncode != 0 and "fixture 'groupnorm_case' not found" in bare.stdout, bare.stdout


USER_SCRIPT = '''\
import torch, torch.nn as nn, torch.nn.functional as F
import groupnorm_bench as gnb

model = nn.Sequential(nn.Conv2d(8, 16, 3, padding=1), nn.GroupNorm(4, 16), nn.SiLU())
gnb.replace_group_norms(model)
x = torch.randn(2, 8, 6, 6)
model(x).sum().backward()
model(x.to(memory_format=torch.channels_last)).sum().backward()
with torch.no_grad():
    model(x)
chosen = gnb.chosen_backends(model)
print("CHOSEN", sorted(zip(chosen.layout, chosen["pass"], chosen.backend)))
'''


def _check_chosen(stdout):
    lines = [line for line in stdout.splitlines() if line.startswith("CHOSEN")]
    assert len(lines) == 1, stdout  # the user's code ran once, never again in a worker
    assert "('contiguous', 'forward', 'torch')" in lines[0] and "('contiguous', 'train', 'torch')" in lines[0]
    assert "('channels_last', 'train', " in lines[0], lines[0]


def test_a_plain_script_without_a_main_guard(tmp_path, cache):
    script = tmp_path / "train.py"
    script.write_text(USER_SCRIPT)
    ran = subprocess.run([sys.executable, str(script)], cwd=tmp_path, env=_env(tmp_path, cache), capture_output=True,
                         text=True, timeout=600)
    assert ran.returncode == 0, ran.stderr
    _check_chosen(ran.stdout)


def test_a_jupyter_notebook(tmp_path, cache):
    stdout, _ = run_notebook(USER_SCRIPT, tmp_path, cache)
    _check_chosen(stdout)
