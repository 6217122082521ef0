"""The drop-in module on a CUDA device: zero-copy bridges to CuPy and Numba-CUDA, torch's
current stream, CUDA autocast, and every CUDA backend through the module judged against
the float64 oracle. Skipped without a CUDA device (``.ci/gpu_check.sh`` runs it on a lent GPU)."""

import pytest

torch = pytest.importorskip("torch")
pytestmark = pytest.mark.skipif(not torch.cuda.is_available(),
                                reason="needs a CUDA device visible to torch (torch.cuda.is_available() is False)")

import backends  # noqa: E402
import groupnorm_bench as gnb  # noqa: E402
from groupnorm_bench import bridge, dispatch  # noqa: E402
from groupnorm_bench.pytest_plugin import GroupNormCase  # noqa: E402
from harness.problems.cases import Case  # noqa: E402

CUDA_BACKENDS = ["torch", "cupy", "numba-cuda", "jax"]


def _available(name):
    why = backends.get(name).availability("cuda")
    if why:
        pytest.skip(f"{name}: {why}")


@pytest.fixture(autouse=True)
def fresh_dispatch():
    gnb.clear()
    yield
    gnb.clear()


@pytest.mark.parametrize("name", ["cupy", "numba-cuda"])
def test_bridges_share_device_memory_both_ways(name):
    _available(name)
    link = bridge.get(name)
    x = torch.randn(2, 8, 16, device="cuda")
    array = link.to_backend(x)
    assert array.__cuda_array_interface__["data"][0] == x.data_ptr()
    assert link.to_torch(array, x).data_ptr() == x.data_ptr()


CASES = [Case((2, 32, 16, 16), 8, dtype, layout, distribution, device="cuda")
         for dtype in ("float32", "float16", "bfloat16")
         for layout in ("contiguous", "channels_last")
         for distribution in ("normal", "offset")]


@pytest.mark.parametrize("name", CUDA_BACKENDS)
@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_each_cuda_backend_through_the_module_meets_the_oracle(name, case):
    _available(name)
    if backends.get(name).supports(case):
        pytest.skip(backends.get(name).supports(case))
    probe = GroupNormCase(case)
    x, weight, bias, _ = probe.inputs("cuda")
    why = bridge.get(name).why_not(x)
    if why:
        pytest.skip(why)
    with torch.no_grad():
        y = gnb.group_norm(x, case.num_groups, weight, bias, case.eps, backend=name)
    torch.cuda.synchronize()
    probe.check(y=y)


@pytest.mark.parametrize("name", ["torch", "jax"])
def test_training_through_the_module_on_cuda_meets_the_oracle(name):
    _available(name)
    case = Case((2, 32, 8, 8), 8, "float32", "contiguous", "offset", pass_="train", device="cuda")
    probe = GroupNormCase(case)
    x, weight, bias, grad_y = probe.inputs("cuda", requires_grad=True)
    y = gnb.group_norm(x, case.num_groups, weight, bias, case.eps, backend=name)
    y.backward(grad_y)
    torch.cuda.synchronize()
    probe.check(y=y, grad_x=x.grad, grad_weight=weight.grad, grad_bias=bias.grad)


def test_cupy_runs_on_torchs_current_stream():
    """x is written on a side stream and GroupNorm'd right after, without a sync: CuPy
    must launch on that stream, or it reads x before the write lands."""
    _available("cupy")
    side = torch.cuda.Stream()
    with torch.cuda.stream(side):
        x = torch.empty(8, 64, 128, 128, device="cuda")
        torch.cuda._sleep(50_000_000)  # hold the side stream ~tens of ms before x is written
        x.normal_(mean=3.0)
        y = gnb.group_norm(x, 8, backend="cupy")
    side.synchronize()
    torch.testing.assert_close(y, torch.nn.functional.group_norm(x, 8), rtol=1e-4, atol=1e-4)


def test_numba_cuda_is_not_chosen_on_a_side_stream():
    _available("numba-cuda")
    x = torch.randn(2, 8, 4, device="cuda")
    with torch.cuda.stream(torch.cuda.Stream()):
        usable, excluded = dispatch.candidates(x, ["numba-cuda", "torch"])
    assert usable == ["torch"] and "legacy default stream" in excluded["numba-cuda"]


def test_cuda_autocast_runs_in_float32_as_nn_group_norm():
    ours, theirs = gnb.GroupNorm(4, 16).cuda(), torch.nn.GroupNorm(4, 16).cuda()
    x = torch.randn(2, 16, 8, 8, device="cuda", dtype=torch.float16)
    with torch.autocast("cuda"), torch.no_grad():
        mine, reference = ours(x), theirs(x)
    assert mine.dtype == reference.dtype == torch.float32
    torch.testing.assert_close(mine, reference, rtol=1e-5, atol=1e-5)


def test_the_swapped_block_on_cuda_matches_a_float64_copy():
    from test_dropin_module import BOUND, _block, _outputs_and_gradients, _relative_errors

    for fmt in (torch.contiguous_format, torch.channels_last):
        original = _block().cuda().to(memory_format=fmt)
        reference = _block().cuda().double().to(memory_format=fmt)
        reference.load_state_dict({k: v.double() for k, v in original.state_dict().items()})
        swapped = gnb.replace_group_norms(_block().cuda().to(memory_format=fmt))
        swapped.load_state_dict(original.state_dict())
        x = torch.randn(2, 32, 12, 12, device="cuda").to(memory_format=fmt)
        want = _outputs_and_gradients(reference, x, torch.float64)
        errors = _relative_errors(_outputs_and_gradients(swapped, x, torch.float32), want)
        assert max(errors.values()) < BOUND, (fmt, errors, gnb.chosen_backends(swapped))
