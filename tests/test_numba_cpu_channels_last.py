"""numba-cpu on channels-last input: read in place by its own kernel, y channels-last."""

import numpy as np
import pytest

from conftest import require


@pytest.fixture(scope="module")
def kernels():
    require("numba-cpu")
    from backends.numba_cpu import kernels

    return kernels


def _group_norm_reading_in_place(kernels, kernel, x, groups, weight, bias):
    """numba-cpu's group_norm of ``x``, asserting that it called ``kernel`` once, on x's
    own memory (no copy)."""
    import backends

    calls = []
    original = getattr(kernels, kernel)

    def spy(memory, *args):
        calls.append(memory)
        return original(memory, *args)

    setattr(kernels, kernel, spy)
    try:
        y = backends.get("numba-cpu").group_norm(x, groups, weight, bias, 1e-5)
    finally:
        setattr(kernels, kernel, original)
    assert len(calls) == 1 and np.shares_memory(calls[0], x)
    return y


@pytest.mark.parametrize("shape, groups", [((2, 64, 9, 7), 8), ((2, 320, 20, 20), 32), ((1, 8, 3), 2),
                                           ((2, 6, 5, 4, 3), 3)], ids=["2d", "sd-unet-like", "1d", "3d"])
def test_channels_last_input_is_read_in_place_and_keeps_its_layout(kernels, shape, groups):
    """numba-cpu on channels-last memory runs the in-place kernel (no copy: x's memory is
    what the kernel reads) and returns y channels-last; its values match the contiguous
    path's to float32 rounding (blocks of positions instead of planes: another order):
    each within half the harness's tolerance of the float64 oracle (offset 50, std 2, so
    y = x * a + c cancels about 5 bits in both)."""
    import backends
    from harness.oracle.reference import group_norm_reference
    from harness.oracle.tolerances import tolerance

    rng = np.random.default_rng(4)
    contiguous = (rng.standard_normal(shape) * 2 + 50).astype(np.float32)
    last = np.moveaxis(np.ascontiguousarray(np.moveaxis(contiguous, 1, -1)), -1, 1)
    weight, bias = rng.standard_normal(shape[1]).astype(np.float32), rng.standard_normal(shape[1]).astype(np.float32)
    y = _group_norm_reading_in_place(kernels, "group_norm_channels_last", last, groups, weight, bias)
    assert np.moveaxis(y, 1, -1).flags.c_contiguous
    planar = backends.get("numba-cpu").group_norm(contiguous, groups, weight, bias, 1e-5)
    oracle = group_norm_reference(contiguous, groups, weight, bias, 1e-5)
    allowed = tolerance("float32", oracle.normalized, oracle.mean, oracle.rstd, contiguous.size // (shape[0] * groups),
                        weight, bias)
    for output in (y, planar):
        assert np.max(np.abs(output - oracle.y) / allowed) <= 0.5
    assert np.max(np.abs(y - planar)) <= 16 * np.finfo(np.float32).eps * np.max(np.abs(oracle.y))


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
@pytest.mark.parametrize("shape, groups", [((2, 64, 9, 7), 8), ((2, 320, 20, 20), 32), ((1, 8, 3), 2),
                                           ((2, 6, 5, 4, 3), 3), ((1, 64, 130, 130), 4)],
                         ids=["2d", "sd-unet-like", "1d", "3d", "many-blocks"])
@pytest.mark.parametrize("values", ["finite", "specials", "step"])
def test_16_bit_channels_last_is_read_in_place_with_the_float32_kernels_bits(kernels, dtype, shape, groups, values):
    """float16/bfloat16 channels-last input: the backend runs the 16-bit channels-last
    kernel on x's own memory (no copy), y comes back channels-last, and its bits are those
    of widening x, the float32 channels-last kernel and narrowing y (the widening is
    exact, the arithmetic the same), NaN and Inf included; so are the statistics. "step"
    (the first 24 positions of each sample 400 higher) puts the blocks' centres off their
    means: those channels are summed again by the two-pass method, from widened columns."""
    import numba

    from backends.numba_cpu.backend import _half_table

    ml_dtypes = pytest.importorskip("ml_dtypes")
    np_dtype = np.float16 if dtype == "float16" else ml_dtypes.bfloat16
    rng = np.random.default_rng(6)
    values_cl = (rng.standard_normal((shape[0], *shape[2:], shape[1])) * 3 + 20).astype(np_dtype)
    if values == "specials":
        flat = values_cl.reshape(-1)
        flat[::101] = np.inf
        flat[3] = np.nan
        flat[11] = -np.inf
    if values == "step":
        values_cl.reshape(shape[0], -1, shape[1])[:, :24] += 400
    last = np.moveaxis(values_cl, -1, 1)  # channels-last memory, logical (N, C, *)
    weight, bias = (rng.standard_normal(shape[1]).astype(np.float32) for _ in range(2))
    y = _group_norm_reading_in_place(kernels, "group_norm_half_channels_last", last, groups, weight, bias)
    original = kernels.group_norm_half_channels_last
    assert y.dtype == last.dtype and np.moveaxis(y, 1, -1).flags.c_contiguous
    bits = values_cl.view(np.uint16).reshape(shape[0], -1, shape[1])
    wide = (kernels.widen_half(bits.reshape(-1), _half_table()) if dtype == "float16"
            else kernels.widen_bfloat(bits.reshape(-1))).reshape(bits.shape)
    wide_y, wide_stats = kernels.group_norm_channels_last(wide, groups, weight, bias, 1e-5, False,
                                                          numba.get_num_threads())
    narrow = kernels.narrow_half if dtype == "float16" else kernels.narrow_bfloat
    expected = narrow(wide_y.reshape(-1)).view(np_dtype)
    got = np.moveaxis(y, 1, -1).reshape(-1)
    nan = np.isnan(expected.astype(np.float32))
    assert (np.isnan(got.astype(np.float32)) == nan).all()
    np.testing.assert_array_equal(got.view(np.uint16)[~nan], expected.view(np.uint16)[~nan])
    _, stats = original(bits, groups, weight, bias, 1e-5, _half_table() if dtype == "float16" else
                        np.empty(0, np.float32), dtype == "bfloat16", True, numba.get_num_threads())
    np.testing.assert_array_equal(stats, wide_stats)


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
@pytest.mark.parametrize("stream", [False, True], ids=["cached", "streamed"])
@pytest.mark.parametrize("per_wave", [1, 2, 5], ids=["wave-of-1", "waves-of-2", "one-wave"])
def test_channels_last_waves_take_whole_samples(kernels, dtype, stream, per_wave):
    """The channels-last kernels with ``wave_bytes`` of 1, 2 and 5 samples (as float32)
    take 5 samples in waves of that many (the last one shorter: 2 + 2 + 1), each wave's
    statistics before its normalize: y and the statistics of every sample within half
    the harness's tolerance of the float64 oracle, whatever the waves (the float32
    kernel here; bfloat16 bits through the 16-bit kernel, against the oracle of their
    values). Every other test's input is one wave: this is the multi-wave path of large
    inputs, at a size a test can afford."""
    import numba

    from harness.oracle.reference import group_norm_reference
    from harness.oracle.tolerances import tolerance

    ml_dtypes = pytest.importorskip("ml_dtypes")
    shape, groups, threads = (5, 64, 12, 10), 8, numba.get_num_threads()
    rng = np.random.default_rng(12)
    values = (rng.standard_normal((shape[0], *shape[2:], shape[1])) * 2 + 30).astype(np.float32)
    weight, bias = (rng.standard_normal(shape[1]).astype(np.float32) for _ in range(2))
    if dtype == "bfloat16":
        values = values.astype(ml_dtypes.bfloat16).astype(np.float32)
    rows = values.reshape(shape[0], -1, shape[1])
    size = per_wave * rows[0].size * 4
    assert kernels._wave_plan(rows, threads, size)[2] == per_wave
    w, b = weight.astype(np.float64), bias.astype(np.float64)
    if dtype == "float32":
        y, stats = kernels.group_norm_channels_last(rows, groups, w, b, 1e-5, stream, threads, size)
    else:
        bits = rows.astype(ml_dtypes.bfloat16).view(np.uint16)
        y, stats = kernels.group_norm_half_channels_last(bits, groups, w, b, 1e-5, np.empty(0, np.float32), True,
                                                         stream, threads, size)
        y = y.view(ml_dtypes.bfloat16).astype(np.float32)
    contiguous = np.ascontiguousarray(np.moveaxis(values, -1, 1))
    oracle = group_norm_reference(contiguous, groups, weight, bias, 1e-5)
    allowed = tolerance(dtype, oracle.normalized, oracle.mean, oracle.rstd, contiguous.size // (shape[0] * groups),
                        weight, bias)
    got = np.moveaxis(y.reshape(values.shape), -1, 1)
    assert np.max(np.abs(got - oracle.y) / allowed) <= 0.5
    np.testing.assert_allclose(stats[:, 0], oracle.mean.reshape(-1), rtol=1e-6)
    np.testing.assert_allclose(stats[:, 1], oracle.rstd.reshape(-1), rtol=1e-6)
