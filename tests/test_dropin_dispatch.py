"""How the drop-in module chooses and calls a backend: evidence order, no measuring unless
asked, known bugs and bridges respected, thread safety, zero-copy calls, autograd (gradcheck
per CPU backend), the custom op under torch.compile."""

import threading

import pytest

torch = pytest.importorskip("torch")
nn = torch.nn
F = torch.nn.functional

import backends  # noqa: E402
import groupnorm_bench as gnb  # noqa: E402
from groupnorm_bench import bridge, dispatch, functional  # noqa: E402
from harness.commands import selection  # noqa: E402


@pytest.fixture(autouse=True)
def fresh_dispatch(monkeypatch, tmp_path):
    """No choice of another test, in this process or on disk, decides this one's."""
    monkeypatch.setenv("GNBENCH_CACHE", str(tmp_path / "cache"))
    gnb.clear()
    yield
    gnb.clear()


@pytest.fixture
def no_timing(monkeypatch):
    """Fail the test if anything is timed (a forward must never measure unless asked)."""
    import sys

    import harness.commands.bench  # noqa: F401 - the module, which harness's `bench` function shadows

    def refuse(*args, **kwargs):
        raise AssertionError("bench() was called: the module measured without autotune")

    monkeypatch.setattr(sys.modules["harness.commands.bench"], "bench", refuse)


@pytest.fixture
def in_process():
    """Verify and time in this process, with a short budget: these tests check the dispatch
    logic, not timings or worker isolation (the first test keeps the default, isolated)."""
    with gnb.options(isolate=False, budget=0.05):
        yield


def _chosen(module):
    return {(row.layout, row["pass"]): (row.backend, row.evidence) for _, row in gnb.chosen_backends(module).iterrows()}


def test_without_timing_evidence_the_first_verified_in_preference_order_runs_and_nothing_is_timed(no_timing):
    norm = gnb.GroupNorm(4, 16, backends=["torch", "numpy", "jax"])
    x = torch.randn(2, 16, 5, 5)
    with torch.no_grad():
        norm(x)
    norm(x.requires_grad_())
    norm(x.detach().to(memory_format=torch.channels_last).requires_grad_())
    chosen = _chosen(norm)
    assert chosen[("contiguous", "forward")] == ("torch", "verified (not timed)")
    assert chosen[("contiguous", "train")] == ("torch", "verified (not timed)")
    # torch's CPU channels-last path is a known bug on torch 2.13; JAX takes no strides; NumPy is next
    backend, _ = chosen[("channels_last", "train")]
    case = dispatch.Problem((2, 16, 5, 5), 4, "float32", None, "cpu", "channels_last", "train", 1e-5, True).case()
    if gnb.known_bugs.excluding("torch", case, {"torch": torch.__version__}) is not None:
        assert backend == "numpy"
        why = gnb.chosen_backends(norm).set_index(["layout", "pass"]).loc[("channels_last", "train"), "why_not_others"]
        assert "known bug torch-cpu-channels-last-one-pass-variance" in why and "carry no strides" in why


def test_the_choice_is_cached_on_disk_for_the_next_process(no_timing, in_process):
    x = torch.randn(2, 8, 6)
    with torch.no_grad():
        gnb.group_norm(x, 2, backends=["torch", "numpy"])
    case = dispatch.Problem((2, 8, 6), 2, "float32", None, "cpu", "contiguous", "forward", 1e-5, False).case()
    cached = selection.lookup(case, "verified", ["torch", "numpy"])
    assert cached is not None and cached.backend == "torch" and cached.cached


def test_timing_evidence_on_disk_wins_over_preference(monkeypatch, no_timing):
    """A select() answer in the cache (as `gnbench select` or warmup leave it) is used as is."""
    x = torch.randn(2, 8, 6, 6)
    problem = dispatch.Problem((2, 8, 6, 6), 4, "float32", None, "cpu", "contiguous", "forward", 1e-5, True)
    case = problem.case()
    names = ["torch", "numpy"]
    fake = selection.Selection("numpy", "cpu", case.id, "device", False, (), "stored results", 0.0)
    path = selection._cache_path(case, "device", names)
    selection._write_cache(path, fake)
    try:
        norm = gnb.GroupNorm(4, 8, backends=names)
        with torch.no_grad():
            y = norm(x)
        assert _chosen(norm)[("contiguous", "forward")] == ("numpy", "select cache")
        torch.testing.assert_close(y, nn.GroupNorm(4, 8)(x).detach(), rtol=1e-5, atol=1e-5)
    finally:
        import os

        os.remove(path)


def test_autotune_times_the_candidates_once_and_caches_the_answer(in_process):
    norm = gnb.GroupNorm(2, 8, backends=["torch", "numpy"], autotune=True)
    with torch.no_grad():
        norm(torch.randn(2, 8, 7))
    backend, evidence = _chosen(norm)[("contiguous", "forward")]
    assert evidence in ("autotuned now", "select cache") and backend in ("torch", "numpy")
    gnb.clear()
    plain = gnb.GroupNorm(2, 8, backends=["torch", "numpy"])
    with torch.no_grad():
        plain(torch.randn(2, 8, 7))
    assert _chosen(plain)[("contiguous", "forward")] == (backend, "select cache")


def test_warmup_autotunes_the_problems_a_model_meets(in_process):
    model = nn.Sequential(nn.Conv1d(8, 8, 1), gnb.GroupNorm(2, 8, backends=["torch", "numpy"]))
    frame = gnb.warmup(model, torch.randn(2, 8, 9))
    assert set(frame["pass"]) == {"forward", "train"}
    assert set(frame.evidence) <= {"autotuned now", "select cache"}


def test_bridges_refuse_what_they_would_have_to_copy(no_timing, in_process):
    x = torch.randn(2, 8, 4, dtype=torch.bfloat16)
    usable, excluded = dispatch.candidates(x, ["torch", "numpy", "numba-cpu", "jax"])
    assert usable == ["torch", "jax"]
    assert "no bfloat16" in excluded["numpy"] and "no bfloat16" in excluded["numba-cpu"]
    with pytest.raises(backends.InvalidArgumentError, match="NumPy has no bfloat16"):
        gnb.group_norm(x, 2, backend="numpy")
    with torch.no_grad():
        gnb.group_norm(x, 2, backends=["numpy", "torch"])  # numpy is out: torch verified instead
    assert {c.backend for c in dispatch.chosen()} == {"torch"}


def test_no_verified_backend_is_an_error_naming_each_reason(no_timing):
    x = torch.randn(2, 8, 4, requires_grad=True)
    with pytest.raises(gnb.NoVerifiedBackendError, match="numpy: .*no bfloat16.*numba-cpu: .*no bfloat16"):
        gnb.group_norm(x.bfloat16(), 2, backends=["numpy", "numba-cpu"])
    with pytest.raises(gnb.NoVerifiedBackendError, match="no backend the module can call .* on cpu"):
        gnb.group_norm(x, 2, backends=["cupy"])


def test_configure_rejects_unknown_settings_and_options_restores():
    with pytest.raises(backends.InvalidArgumentError, match="unknown dispatch setting.*autotnue"):
        gnb.configure(autotnue=True)
    with gnb.options(autotune=True, budget=0.1):
        assert dispatch.SETTINGS.autotune and dispatch.SETTINGS.budget == 0.1
    assert not dispatch.SETTINGS.autotune and dispatch.SETTINGS.budget == 0.5


def test_threads_share_one_decision_per_problem(monkeypatch, no_timing, in_process):
    calls = []
    real = selection.verified

    def counted(*args, **kwargs):
        calls.append(args[0].id)
        return real(*args, **kwargs)

    monkeypatch.setattr(selection, "verified", counted)
    norm = gnb.GroupNorm(4, 16, backends=["torch", "numpy"])
    x = torch.randn(3, 16, 4, 4)
    outputs, errors = [None] * 8, []
    start = threading.Barrier(8)

    def work(i):
        try:
            start.wait()
            with torch.no_grad():
                outputs[i] = norm(x)
        except Exception as error:  # noqa: BLE001 - reported below
            errors.append(error)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors, errors
    assert len(calls) == 1, calls
    assert all(torch.equal(out, outputs[0]) for out in outputs)


# -- zero-copy ------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["numpy", "numba-cpu", "jax"])
def test_bridges_share_memory_both_ways(name):
    if backends.get(name).availability("cpu"):
        pytest.skip(backends.get(name).availability("cpu"))
    link = bridge.get(name)
    x = torch.randn(2, 8, 16)
    array = link.to_backend(x)
    pointer = array.unsafe_buffer_pointer() if name == "jax" else array.__array_interface__["data"][0]
    assert pointer == x.data_ptr()
    back = link.to_torch(array, x)
    assert back.data_ptr() == x.data_ptr()


def test_channels_last_output_keeps_its_memory_format(no_timing):
    x = torch.randn(2, 8, 5, 5).to(memory_format=torch.channels_last)
    with torch.no_grad():
        y = gnb.group_norm(x, 4, backend="numpy")
    assert y.is_contiguous(memory_format=torch.channels_last)


# -- autograd -----------------------------------------------------------------------------

GRADCHECK = [("torch", "contiguous"), ("torch", "channels_last"), ("numpy", "contiguous"),
             ("numpy", "channels_last"), ("numpy", "strided"), ("jax", "contiguous")]


@pytest.mark.parametrize("name, layout", GRADCHECK, ids=[f"{name}-{layout}" for name, layout in GRADCHECK])
def test_gradcheck_float64_through_each_cpu_backend(name, layout):
    if backends.get(name).availability("cpu"):
        pytest.skip(backends.get(name).availability("cpu"))
    torch.manual_seed(0)
    x = torch.randn(2, 6, 3, 4, dtype=torch.float64)
    if layout == "channels_last":
        x = x.to(memory_format=torch.channels_last)
    elif layout == "strided":
        x = torch.randn(2, 6, 3, 8, dtype=torch.float64)[..., ::2]
    x.requires_grad_()
    weight = torch.randn(6, dtype=torch.float64, requires_grad=True)
    bias = torch.randn(6, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda *a: gnb.group_norm(*a[:1], 3, *a[1:], 1e-5, backend=name),
                                    (x, weight, bias))


def test_backward_is_once_differentiable_and_in_place_changes_are_caught():
    x = torch.randn(2, 6, 5, dtype=torch.float64, requires_grad=True)
    y = gnb.group_norm(x * 1, 3, backend="numpy")
    (grad_x,) = torch.autograd.grad(y.sum(), x, create_graph=True)
    with pytest.raises(RuntimeError, match="once_differentiable|does not require grad"):
        grad_x.sum().backward()
    source = torch.randn(2, 6, 5, dtype=torch.float64, requires_grad=True)
    h = source * 1
    y = gnb.group_norm(h, 3, backend="numpy")
    h.add_(1.0)  # the backend's residuals view h: autograd's version check must catch it
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        y.sum().backward()


# -- the custom op and torch.compile ---------------------------------------------------------

def test_custom_op_passes_torch_library_opcheck():
    x = torch.randn(2, 6, 3, 4, requires_grad=True)
    weight, bias = torch.randn(6, requires_grad=True), torch.randn(6, requires_grad=True)
    torch.library.opcheck(functional.group_norm_op, (x, weight, bias, 3, 1e-5, "numpy"))
    torch.library.opcheck(functional.group_norm_op, (x.detach(), None, None, 3, 1e-5, "numpy"))


class Block(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv, self.norm = nn.Conv2d(16, 16, 3, padding=1), nn.GroupNorm(4, 16)

    def forward(self, x):
        return x + F.silu(self.norm(self.conv(x)))


@pytest.mark.parametrize("memory_format", ["contiguous", "channels_last"])
def test_torch_compile_of_a_swapped_model_runs_without_graph_breaks(memory_format):
    torch._dynamo.reset()
    fmt = torch.channels_last if memory_format == "channels_last" else torch.contiguous_format
    torch.manual_seed(0)
    model = gnb.replace_group_norms(Block().to(memory_format=fmt))
    x = torch.randn(2, 16, 8, 8).to(memory_format=fmt).requires_grad_()
    explained = torch._dynamo.explain(model)(x)
    assert explained.graph_break_count == 0, explained.break_reasons
    compiled = torch.compile(model)
    y = compiled(x)
    y.sum().backward()
    grad_compiled = x.grad.clone()
    x.grad = None
    eager = model(x)
    eager.sum().backward()
    torch.testing.assert_close(y, eager, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(grad_compiled, x.grad, rtol=1e-4, atol=1e-4)


def test_torch_export_holds_aten_group_norm_or_the_custom_op_and_nothing_else():
    norm = gnb.GroupNorm(2, 8, backends=["torch", "numpy"])
    contiguous = torch.export.export(norm, (torch.randn(2, 8, 4, 4),))
    channels_last = torch.export.export(norm, (torch.randn(2, 8, 4, 4).to(memory_format=torch.channels_last),))
    ops = [[str(n.target) for n in program.graph.nodes if n.op == "call_function"]
           for program in (contiguous, channels_last)]
    assert ops[0] == ["aten.group_norm.default"]
    assert ops[1] in (["aten.group_norm.default"], ["groupnorm_bench.group_norm.default"])  # torch unless a known bug


@pytest.mark.parametrize("make, layout", [
    (lambda: torch.randn(2, 8, 4, 4), "contiguous"),
    (lambda: torch.randn(2, 8, 4, 4).to(memory_format=torch.channels_last), "channels_last"),
    (lambda: torch.randn(2, 8, 4, 4, 3).to(memory_format=torch.channels_last_3d), "channels_last"),
    (lambda: torch.randn(2, 5, 8).transpose(1, 2), "channels_last"),
    (lambda: torch.randn(2, 8, 4, 8)[..., ::2], "strided"),
    (lambda: torch.randn(8, 2, 4).transpose(0, 1), "strided"),
    (lambda: torch.randn(2, 8), "contiguous"),
], ids=["contiguous", "nhwc", "ndhwc", "nlc", "every-other", "batch-not-outermost", "rank-2"])
def test_layout_of_names_the_harness_layout(make, layout):
    assert bridge.layout_of(make()) == layout


def test_stored_results_answer_without_measuring(monkeypatch):
    """configure(results=...) with rows of this machine: the choice comes from them, timed
    by the stored bench rows, and nothing is verified or timed now."""
    import pandas as pd

    import harness

    problem = dispatch.Problem((2, 8, 6, 6), 4, "float32", None, "cpu", "contiguous", "forward", 1e-5, True)
    case = problem.case()
    names = ["torch", "numpy"]
    ids = selection.class_case_ids(case) + [c.id for c in selection.problem_cases(case)]
    stored = pd.concat([harness.verify(backends=names, cases=ids, isolate=False),
                        harness.bench(backends=names, cases=[case.id], budget=0.05, isolate=False)])
    import sys

    measured_now = []
    monkeypatch.setattr(selection, "verified", lambda *a, **k: measured_now.append(a))
    for module, name in (("harness.commands.verify", "verify"), ("harness.commands.bench", "bench")):
        monkeypatch.setattr(sys.modules[module], name, lambda *a, **k: measured_now.append(a))
    with gnb.options(results=stored, isolate=False):
        norm = gnb.GroupNorm(4, 8, backends=names)
        with torch.no_grad():
            norm(torch.randn(2, 8, 6, 6))
    assert not measured_now
    backend, evidence = _chosen(norm)[("contiguous", "forward")]
    assert evidence == "stored results" and backend in names


def test_a_new_shape_of_a_decided_class_verifies_only_the_shape(monkeypatch, in_process, no_timing):
    """A model meeting a new input size re-verifies the problem, not the whole class."""
    import sys

    asked = []
    real = sys.modules["harness.commands.verify"].verify

    def counting(*args, **kwargs):
        asked.append(len(kwargs["cases"]))
        return real(*args, **kwargs)

    monkeypatch.setattr(sys.modules["harness.commands.verify"], "verify", counting)
    with torch.no_grad():
        gnb.group_norm(torch.randn(2, 8, 5), 2, backends=["torch"])
        gnb.group_norm(torch.randn(3, 8, 7), 2, backends=["torch"])
    assert asked[-1] == len(selection.problem_cases(dispatch.Problem(
        (3, 8, 7), 2, "float32", None, "cpu", "contiguous", "forward", 1e-5, False).case())) == 3
