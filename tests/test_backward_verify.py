"""The backward and train passes as a dimension of every case: ids, incoming gradients,
the checks a backward row makes, sweeps, bench floors and selection by pass."""

import dataclasses

import numpy as np
import pytest

import backends
from backends.base import GroupNormBackend
from backends.errors import InvalidArgumentError
from conftest import require
from harness.commands.bench import min_bytes
from harness.commands.selftest import _backward
from harness.oracle.checks import run_case
from harness.oracle.expected import Expected
from harness.problems import inputs, suites
from harness.problems.cases import PASSES, Case

SHAPE, GROUPS = (2, 12, 5, 7), 3


def _check(backend, case):
    host = inputs.make(case)
    return run_case(backend, case, host, Expected.of(case, host))


# -- ids -------------------------------------------------------------------------------


@pytest.mark.parametrize("case", [
    Case(SHAPE, GROUPS, pass_="train", grad_distribution="constant"),
    Case(SHAPE, GROUPS, "float16", "channels_last", pass_="backward", grad_distribution="nan", grad_layout="strided"),
    Case(SHAPE, GROUPS, "bfloat16", eps=0.0, affine="zero_weight", param_dtype="float32", pass_="backward",
         grad_distribution="xhat", grad_layout="channels_last"),
], ids=lambda case: case.id)
def test_backward_ids_round_trip(case):
    assert Case.from_id(case.id) == case
    assert case.pass_ in case.id.split("-")


def test_forward_ids_are_as_before_passes():
    assert Case(SHAPE, GROUPS).id == "2x12x5x7-g3-float32-contiguous-normal-s0"
    assert Case(SHAPE, GROUPS, pass_="train").forward == Case(SHAPE, GROUPS)


def test_grad_y_in_x_layout_is_not_spelled_out():
    case = Case(SHAPE, GROUPS, layout="channels_last", pass_="backward", grad_layout="channels_last")
    assert case.grad_layout is None and "gylayout" not in case.id


@pytest.mark.parametrize("fields, message", [
    (dict(grad_distribution="constant"), "forward pass has none"),
    (dict(pass_="sideways"), "pass_ must be one of"),
    (dict(pass_="backward", grad_distribution="uniform"), "grad_distribution must be one of"),
    (dict(pass_="backward", grad_layout="diagonal"), "grad_layout must be one of"),
])
def test_bad_pass_fields_are_refused_clearly(fields, message):
    with pytest.raises(InvalidArgumentError, match=message):
        Case(SHAPE, GROUPS, **fields)


def test_a_backward_id_without_its_gradient_is_refused():
    with pytest.raises(InvalidArgumentError, match="gy_NAME"):
        Case.from_id("2x12x5x7-g3-float32-contiguous-normal-s0-backward")


# -- incoming gradients ----------------------------------------------------------------


@pytest.mark.parametrize("grad", ["constant", "xhat"])
def test_cancelling_gradients_make_the_exact_dx_vanish(grad):
    """constant and xhat gradients are built so the exact dx is ~0 next to its terms (what
    makes a missing term visible); weights all 1 keep g = grad_y. (For xhat the cancellation
    leaves r * c * xhat * eps / (var + eps): about eps times the terms.)"""
    case = Case(SHAPE, GROUPS, "float64", affine="default", pass_="backward", grad_distribution=grad)
    host = inputs.make(case)
    grads = Expected.of(case, host).grads
    terms = np.abs(host.grad_y).max() * 1.0  # r ~ 1 for normal x
    assert np.abs(grads.grad_x.y).max() < (1e-9 if grad == "constant" else 3 * case.eps) * terms


def test_sparse_nan_and_layout_of_the_gradient():
    sparse = inputs.make(Case((4, 32, 16, 16), 8, pass_="backward", grad_distribution="sparse")).grad_y
    assert 0.03 < np.count_nonzero(sparse) / sparse.size < 0.07
    case = Case(SHAPE, GROUPS, "float16", pass_="backward", grad_distribution="nan", grad_layout="channels_last")
    grad_y = inputs.make(case).grad_y
    assert int(np.isnan(grad_y.astype(np.float32)).sum()) == 1
    assert grad_y.strides[1] == grad_y.itemsize  # channels fastest


def test_a_nan_gradient_spreads_over_its_group_and_channel_only():
    case = Case(SHAPE, GROUPS, "float32", pass_="backward", grad_distribution="nan")
    grads = Expected.of(case, inputs.make(case)).grads
    nan_groups = np.isnan(grads.grad_x.y).all(axis=1)
    assert nan_groups.sum() == 1 and not np.isnan(grads.grad_x.y[~nan_groups]).any()
    assert np.isnan(grads.grad_weight.y).sum() == 1 and np.isnan(grads.grad_bias.y).sum() == 1


# -- what a backward row checks ----------------------------------------------------------


def _numpy_like(name, backward, **extra):
    numpy_backend = backends.get("numpy")
    return GroupNormBackend.from_function(
        name, numpy_backend.group_norm, from_numpy=numpy_backend.from_numpy, backward=backward, **extra)


def _correct(grad_y, x, g, w, b, eps):
    return _backward(grad_y, x, g, w, b, eps)


CASE = Case(SHAPE, GROUPS, pass_="train", grad_distribution="normal")


def test_a_correct_backward_passes_every_output_and_is_deterministic():
    verdict = _check(_numpy_like("ok", _correct), CASE)
    assert verdict.status == "passed", verdict
    assert set(verdict.ratios) == {"y", "grad_x", "grad_weight", "grad_bias"}
    assert all(0 <= r < 1 for r in verdict.ratios.values()) and verdict.deterministic is True


def test_a_backward_that_writes_into_grad_y_is_caught():
    def scribbles(grad_y, *rest):
        out = _correct(grad_y, *rest)
        grad_y[...] = 0
        return out

    verdict = _check(_numpy_like("scribbles", scribbles), CASE)
    assert verdict.status == "input_modified" and "grad_y" in verdict.reason


def test_a_backward_that_writes_into_its_residuals_is_caught():
    def scribbles(grad_y, x, *rest):
        out = _correct(grad_y, x, *rest)
        x[...] = 0  # the residuals are the forward's inputs here
        return out

    verdict = _check(_numpy_like("scribbles-saved", scribbles), CASE)
    assert verdict.status == "input_modified", verdict


def test_grad_x_aliasing_grad_y_is_caught():
    def aliases(grad_y, *rest):
        grad_x, grad_weight, grad_bias = _correct(grad_y, *rest)
        grad_y[...] = grad_x
        return grad_y, grad_weight, grad_bias

    verdict = _check(_numpy_like("aliases", aliases), CASE)
    assert verdict.status == "aliases_input" and "grad_x shares memory with grad_y" in verdict.reason


def test_parameter_gradients_in_the_wrong_dtype_or_missing_are_caught():
    def float64_weight(*args):
        grad_x, grad_weight, grad_bias = _correct(*args)
        return grad_x, grad_weight.astype(np.float64), grad_bias

    verdict = _check(_numpy_like("f64-dweight", float64_weight), CASE)
    assert verdict.status == "wrong_dtype" and verdict.output == "grad_weight"

    def no_bias(*args):
        return _correct(*args)[:2] + (None,)

    verdict = _check(_numpy_like("no-dbias", no_bias), CASE)
    assert verdict.status == "wrong_shape" and verdict.output == "grad_bias"


def test_a_nondeterministic_backward_passes_and_says_so():
    calls = {"n": 0}

    def alternating(grad_y, x, g, w, b, eps):
        calls["n"] += 1
        out = _correct(grad_y, x, g, w, b, eps)
        if calls["n"] % 2 == 0:  # another summation order every other call: other low bits
            grad_x = out[0].astype(np.float64)
            grad_x = (grad_x + 1e-7 * np.abs(grad_x)).astype(out[0].dtype)
            out = (grad_x,) + out[1:]
        return out

    verdict = _check(_numpy_like("alternating", alternating), CASE)
    assert verdict.status == "passed" and verdict.deterministic is False
    assert "nondeterministic" in verdict.reason and "grad_x" in verdict.reason


def test_a_forward_only_backend_is_unsupported_for_backward():
    backend = GroupNormBackend.from_function("fwd-only", backends.get("numpy").group_norm)
    verdict = _check(backend, CASE)
    assert verdict.status == "unsupported" and "forward pass only" in verdict.reason


def test_the_backward_pass_does_not_judge_y():
    def wrong_forward(x, g, w=None, b=None, eps=1e-5):
        return backends.get("numpy").group_norm(x, g, w, b, eps) * 2

    backend = GroupNormBackend.from_function("wrong-y", wrong_forward, backward=_correct,
                                             from_numpy=backends.get("numpy").from_numpy)
    assert _check(backend, dataclasses.replace(CASE, pass_="backward")).status == "passed"
    verdict = _check(backend, CASE)
    assert verdict.status == "mismatch" and verdict.output == "y"


# -- suites, sweeps, bench, selection ---------------------------------------------------


@pytest.mark.parametrize("pass_", PASSES[1:])
def test_the_default_suite_keeps_its_backward_coverage(pass_):
    cases = suites.get("default", pass_)
    assert suites.missing("default", pass_=pass_) == []
    assert {c.pass_ for c in cases} == {pass_}
    assert {c.grad_distribution for c in cases} == set(inputs.GRAD_DISTRIBUTIONS)
    assert any(c.grad_layout for c in cases) and any(c.affine == "zero_weight" for c in cases)
    assert any(c.shape[0] == 0 for c in cases) and any(c.group_size == 1 for c in cases)


def test_the_pass_is_in_every_row_and_the_summary(tmp_path):
    from harness.commands.verify import verify

    frame = verify(backends=["numpy"], suite="smoke", pass_="forward,train", isolate=False)
    assert set(frame["pass"]) == {"forward", "train"}
    train = frame[frame["pass"] == "train"]
    assert train.case_id.str.contains("-train-gy_").all() and (train.status == "passed").all()
    assert train.ratio_grad_x.notna().all() and (train.deterministic == True).all()  # noqa: E712
    forward = frame[frame["pass"] == "forward"]
    assert forward.ratio_grad_x.isna().all() and (forward.grad_distribution == "").all()


@pytest.mark.parametrize("pass_, tensors", [("forward", 2), ("backward", 3), ("train", 5)])
def test_bench_floors_per_pass(pass_, tensors):
    case = Case((2, 320, 64, 64), 32, pass_=pass_)
    assert min_bytes(case) == tensors * (case.numel * 4 + 320 * 4)


def test_select_by_pass_leaves_forward_only_backends_out():
    from harness.commands.selection import select

    require("numpy")
    forward_only = GroupNormBackend.from_function("fwd-only-select", backends.get("numpy").group_norm)
    backends.register(forward_only, replace=True)
    try:
        choice = select((2, 8, 4, 4), 2, "float64", backends=["numpy", "fwd-only-select"], pass_="train",
                        use_cache=False, isolate=False, budget=0.05)
    finally:
        backends.unregister("fwd-only-select")
    assert choice.backend == "numpy" and choice.case_id.endswith("-train-gy_normal")
    why = {c.backend: c.why_not for c in choice.candidates}
    assert "forward pass only" in why["fwd-only-select"]


def test_known_bugs_narrow_by_output_and_group_size():
    from harness.records import known_bugs

    [bug] = [b for b in known_bugs.load() if b.id == "torch-cpu-empty-group-nan-grad-weight"]
    common = ("torch", "cpu", "contiguous", "float32", 4, "train", "2.13.0+cpu")
    assert bug.covers(*common, group_size=0, output="grad_weight")
    assert not bug.covers(*common, group_size=0, output="grad_x")
    assert not bug.covers(*common, group_size=140, output="grad_weight")
