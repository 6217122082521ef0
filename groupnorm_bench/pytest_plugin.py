"""An opt-in pytest plugin: the harness's cases, oracle and tolerances in users' own tests.

Not auto-loaded (no ``pytest11`` entry point): enable it with ``pytest -p
groupnorm_bench.pytest_plugin`` or ``pytest_plugins = ["groupnorm_bench.pytest_plugin"]``
in a conftest.py. It gives:

* the fixture ``groupnorm_case``: a test that takes it runs once per case of a suite, the
  case id as the test id. ``groupnorm_case.inputs(device)`` gives torch tensors (x,
  weight, bias and, for backward/train cases, grad_y) and ``groupnorm_case.check(y=...,
  grad_x=..., grad_weight=..., grad_bias=...)`` judges what the code under test returned
  against the float64 oracle, raising AssertionError with the worst element and a rerun
  line. Choose the cases with the marker ``@pytest.mark.groupnorm(suite="smoke",
  passes=("forward",), dtypes=None)`` or the options ``--groupnorm-suite`` and
  ``--groupnorm-pass``.
* the fixture ``assert_group_norm_correct``: :func:`groupnorm_bench.testing.assert_group_norm_correct`.

    @pytest.mark.groupnorm(suite="smoke", passes=("forward", "train"))
    def test_my_kernel(groupnorm_case):
        x, weight, bias, grad_y = groupnorm_case.inputs("cpu", requires_grad=True)
        y = my_group_norm(x, groupnorm_case.num_groups, weight, bias, groupnorm_case.eps)
        if grad_y is None:
            groupnorm_case.check(y=y)
        else:
            y.backward(grad_y)
            groupnorm_case.check(y=y, grad_x=x.grad, grad_weight=weight.grad if weight is not None else None,
                                 grad_bias=bias.grad if bias is not None else None)
"""

from __future__ import annotations

import pytest


def pytest_addoption(parser):
    group = parser.getgroup("groupnorm", "groupnorm-bench cases")
    group.addoption("--groupnorm-suite", default=None,
                    help="suite of the groupnorm_case fixture when the test has no groupnorm marker (default: smoke)")
    group.addoption("--groupnorm-pass", default=None,
                    help="passes of the groupnorm_case fixture, comma-separated (forward, backward, train)")


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "groupnorm(suite='smoke', passes=('forward',), dtypes=None): the groupnorm-bench cases "
        "a test taking the groupnorm_case fixture runs on")


class GroupNormCase:
    """One harness case as a test sees it (see the module docstring)."""

    def __init__(self, case):
        self.case = case
        self._host = None
        self._expected = None

    def __getattr__(self, name):  # shape, num_groups, eps, dtype, pass_, ... of the case
        return getattr(self.case, name)

    def __repr__(self):
        return f"<GroupNormCase {self.case.id}>"

    @property
    def host(self):
        """The case's host NumPy inputs (:class:`harness.problems.inputs.Inputs`)."""
        if self._host is None:
            from harness.problems import inputs

            self._host = inputs.make(self.case)
        return self._host

    def inputs(self, device: str = "cpu", requires_grad: bool = False):
        """(x, weight, bias, grad_y) as torch tensors on ``device`` (x and grad_y in the
        case's layouts; weight/bias None without affine, grad_y None for forward cases)."""
        from backends import get

        torch_backend = get("torch")
        host = self.host
        tensors = [None if a is None else torch_backend.from_numpy(a, device)
                   for a in (host.x, host.weight, host.bias, host.grad_y)]
        if requires_grad:
            for tensor in tensors[:3]:
                if tensor is not None:
                    tensor.requires_grad_()
        return tuple(tensors)

    def expected(self):
        """The oracle (:class:`harness.oracle.expected.Expected`, with ``.grads`` for backward cases)."""
        if self._expected is None:
            from harness.oracle.expected import Expected

            self._expected = Expected.of(self.case, self.host)
        return self._expected

    def check(self, y=None, grad_x=None, grad_weight=None, grad_bias=None) -> None:
        """Judge the outputs given (torch tensors or arrays) against the oracle: y for
        forward cases, y (train) and the gradients the forward's parameters call for.
        Raises AssertionError naming the case, the output, the worst element and a rerun line."""
        from harness.oracle.checks import combine, judge_output

        expected = self.expected()
        got = {"y": y, "grad_x": grad_x, "grad_weight": grad_weight, "grad_bias": grad_bias}
        wanted = [("y", expected)] if self.case.pass_ in ("forward", "train") else []
        if self.case.pass_ != "forward":
            wanted += expected.grads.items()
        verdicts = []
        for name, want in wanted:
            if got[name] is None and (name == "y" or self.case.pass_ != "forward"):
                raise AssertionError(f"{self.case.id}: check() needs {name} for a {self.case.pass_} case")
            dtype = self.case.dtype if name in ("y", "grad_x") else (self.case.param_dtype or self.case.dtype)
            verdicts.append(judge_output(name, _host(got[name]), dtype, want))
        verdict = combine(verdicts)
        if verdict.status != "passed":
            where = f" at {verdict.worst_index}: expected {verdict.expected:.7g}, got {verdict.got:.7g}" \
                if verdict.worst_index is not None else ""
            raise AssertionError(f"{self.case.id}: {verdict.status}: {verdict.reason}{where}\n"
                                 f"    rerun: pytest -p groupnorm_bench.pytest_plugin -k '{self.case.id}'")


def _host(value):
    """A host NumPy array of a torch tensor (bfloat16 kept, through ml_dtypes) or array."""
    if value is None or not hasattr(value, "detach"):
        return value
    from backends import get

    return get("torch").to_numpy(value)


def _cases(metafunc):
    from harness.problems import suites

    marker = metafunc.definition.get_closest_marker("groupnorm")
    options = dict(marker.kwargs) if marker else {}
    suite = options.get("suite") or metafunc.config.getoption("--groupnorm-suite") or "smoke"
    passes = options.get("passes") or (metafunc.config.getoption("--groupnorm-pass") or "forward").split(",")
    if isinstance(passes, str):
        passes = [passes]
    dtypes = options.get("dtypes")
    cases = [case for name in ([suite] if isinstance(suite, str) else suite) for pass_ in passes
             for case in suites.get(name, pass_.strip())]
    return [c for c in cases if dtypes is None or c.dtype in dtypes]


def pytest_generate_tests(metafunc):
    if "groupnorm_case" in metafunc.fixturenames:
        cases = _cases(metafunc)
        metafunc.parametrize("groupnorm_case", [GroupNormCase(c) for c in cases], ids=[c.id for c in cases])


@pytest.fixture(name="assert_group_norm_correct")
def _assert_group_norm_correct():
    from .testing import assert_group_norm_correct

    return assert_group_norm_correct
