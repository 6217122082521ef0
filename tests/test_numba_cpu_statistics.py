"""numba-cpu's forward saves each group's (mean, rstd) for its backward, which no longer
recomputes them: on every forward path they must be the float64 truth to float32
accuracy, and a float16 forward compiled without F16C (scalar conversions) must give the
bits of the F16C path. A chunk's moments come from one pass where its centre is close to
its mean, else from two: both paths must be as accurate as the two-pass method."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from conftest import require

ml_dtypes = pytest.importorskip("ml_dtypes")

# (shape, groups, dtype, layout): each forward path of the backend (see numba_cpu_backend)
PATHS = {
    "by-group-float32": ((4, 16, 9, 7), 4, "float32", "contiguous"),
    "by-group-float64": ((4, 16, 9, 7), 4, "float64", "contiguous"),
    "by-chunk-float32": ((1, 8, 64, 70), 1, "float32", "contiguous"),  # fewer groups than threads
    "fused-float16": ((2, 8, 33, 5), 4, "float16", "contiguous"),
    "by-chunk-bfloat16": ((1, 4, 50, 90), 1, "bfloat16", "contiguous"),
    "channels-last-float32": ((2, 12, 6, 5), 3, "float32", "channels_last"),  # blocks below SMALL positions
    "channels-last-one-pass-float32": ((2, 64, 20, 20), 8, "float32", "channels_last"),
    "channels-last-many-blocks-float32": ((1, 512, 24, 24), 32, "float32", "channels_last"),
    "channels-last-bfloat16": ((2, 32, 16, 16), 4, "bfloat16", "channels_last"),
}


@pytest.mark.parametrize("path", list(PATHS))
def test_saved_statistics_are_the_float64_truth_to_float32_accuracy(path):
    backend = require("numba-cpu")
    shape, groups, dtype, layout = PATHS[path]
    rng = np.random.default_rng(7)
    x = (rng.standard_normal(shape) * 3 + 100).astype(np.float32).astype(
        ml_dtypes.bfloat16 if dtype == "bfloat16" else dtype)
    if layout == "channels_last":
        x = np.moveaxis(np.ascontiguousarray(np.moveaxis(x, 1, -1)), -1, 1)
    _, saved = backend.forward_train(x, groups, None, None, 1e-5)
    stats = saved.residuals[-1]
    exact = x.astype(np.float64).reshape(shape[0] * groups, -1)
    mean, rstd = exact.mean(axis=1), 1 / np.sqrt(exact.var(axis=1) + 1e-5)
    assert stats.shape == (shape[0] * groups, 2) and stats.dtype == np.float64
    assert np.all(np.abs(stats[:, 0] - mean) <= 1e-6 * np.abs(mean) + 1e-5 / rstd), (stats[:, 0], mean)
    np.testing.assert_allclose(stats[:, 1], rstd, rtol=1e-5)


def _chunk(kind, dtype, rng):
    """4096 values of ``dtype`` around 1000 (sd 0.01 .. 10); ``kind`` names what the
    first elements, which centre the one-pass sums, look like."""
    sd = 10.0 ** rng.uniform(-2, 1)
    values = rng.standard_normal(4096) * sd + 1000
    if kind == "head-off-the-mean":
        values[:16] += 4 * sd
    elif kind == "step":
        values[2048:] += 50 * sd
    elif kind == "nan":
        values[3000] = np.nan
    elif kind == "inf":
        values[5] = np.inf
    return values.astype(dtype)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("kind, one_pass", [("normal", True), ("head-off-the-mean", False), ("step", False),
                                            ("nan", False), ("inf", False)])
def test_chunk_moments_take_one_pass_only_where_it_is_as_accurate(kind, one_pass, dtype):
    require("numba-cpu")
    from backends.numba_cpu import kernels

    rng = np.random.default_rng(3)
    for _ in range(20):
        chunk = _chunk(kind, dtype, rng)
        accepted = kernels.one_pass_moments(chunk)[0]
        assert accepted == one_pass, kind
        n, mean, m2 = kernels.chunk_moments(chunk, 0, chunk.size)
        assert n == chunk.size
        if kind in ("nan", "inf"):
            assert np.isnan(m2) or np.isnan(mean), (mean, m2)  # the group's statistics stay non-finite
            continue
        exact = chunk.astype(np.float64)
        _, _, two_pass_m2 = kernels._two_pass(chunk, chunk[0] - chunk[0])
        error, two_pass_error = (
            abs(m2 - exact.var() * n) / (exact.var() * n),
            abs(two_pass_m2 - exact.var() * n) / (exact.var() * n),
        )
        assert abs(mean - exact.mean()) <= 4 * np.finfo(dtype).eps * abs(exact.mean()), kind
        assert error <= max(2 * two_pass_error, 16 * np.finfo(dtype).eps), (kind, error, two_pass_error)


@pytest.mark.parametrize("tiles", [True, False], ids=["tiles", "rows"])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("kind", ["normal", "head-off-the-mean", "step", "nan", "inf"])
def test_channels_last_blocks_take_two_passes_for_the_channels_that_need_them(kind, dtype, tiles):
    """A channels-last block's per-channel moments (one pass along the channels, centred on
    the first CENTRE_ROWS positions): channel 5 of 96 gets ``kind`` (a head off the mean, a
    step, NaN, Inf), and every channel's mean and M2 must be as accurate as the two-pass
    method (the odd channel summed again by it), NaN/Inf staying in channel 5 only."""
    require("numba-cpu")
    from backends.numba_cpu import kernels

    rng = np.random.default_rng(9)
    positions, channels = 300, 96
    sd = 10.0 ** rng.uniform(-2, 1, channels)
    block = rng.standard_normal((positions, channels)) * sd + 1000
    odd = block[:, 5]
    if kind == "head-off-the-mean":
        odd[: kernels.CENTRE_ROWS] += 4 * sd[5]
    elif kind == "step":
        odd[150:] += 50 * sd[5]
    elif kind == "nan":
        odd[200] = np.nan
    elif kind == "inf":
        odd[3] = np.inf
    block = block.astype(dtype)
    means, m2s = np.empty(channels), np.empty(channels)
    kernels._channel_moments(block, means, m2s, False, tiles)
    exact = block.astype(np.float64)
    for c in range(channels):
        if kind in ("nan", "inf") and c == 5:
            assert np.isnan(means[c]) or np.isnan(m2s[c])
            continue
        column = np.ascontiguousarray(block[:, c])
        _, _, two_pass_m2 = kernels._two_pass(column, column[0] - column[0])
        m2 = exact[:, c].var() * positions
        assert abs(means[c] - exact[:, c].mean()) <= 4 * np.finfo(dtype).eps * abs(exact[:, c].mean()), (kind, c)
        error, two_pass_error = abs(m2s[c] - m2) / m2, abs(two_pass_m2 - m2) / m2
        assert error <= max(2 * two_pass_error, 16 * np.finfo(dtype).eps), (kind, c, error, two_pass_error)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize(
    "positions, channels",
    [(64, 16), (96, 320), (100, 37), (17, 2560), (5, 40), (48, 64), (32, 128), (33, 248)],
    ids=[
        "one-tile-column",
        "tiles",
        "tiles-and-remainders",
        "wide",
        "rows-below-a-tile",
        "C64",
        "C128",
        "C248-and-remainders",
    ],
)
def test_sums_along_channels_are_the_sums_of_the_centred_values(positions, channels, dtype):
    """_sums_along_channels (16 x 16 register tiles where whole, the loop elsewhere): per
    channel sum(x - k) and sum((x - k)^2) within a few ulps of float64 sums, for blocks
    of whole tiles, tiles with leftover channels and rows, and blocks too small to tile;
    row by row (no tiles) the same bits."""
    require("numba-cpu")
    from backends.numba_cpu import kernels

    rng = np.random.default_rng(12)
    block = (rng.standard_normal((positions, channels)) * 3 + 10).astype(dtype)
    k = block[: min(positions, 16)].mean(axis=0).astype(dtype)
    s1, s2 = np.full(channels, np.nan), np.full(channels, np.nan)  # the kernel must set every element
    kernels._sums_along_channels(block, k, s1, s2, False, True)
    rows = np.full(channels, np.nan), np.full(channels, np.nan)
    kernels._sums_along_channels(block, k, *rows, False, False)  # row by row: the same arithmetic and order
    np.testing.assert_array_equal(rows[0], s1)
    np.testing.assert_array_equal(rows[1], s2)
    d = block.astype(np.float64) - k.astype(np.float64)
    scale = np.abs(d).sum(axis=0)
    eps = np.finfo(dtype).eps
    assert np.all(np.abs(s1 - d.sum(axis=0)) <= 16 * eps * scale)
    assert np.all(np.abs(s2 - (d * d).sum(axis=0)) <= 16 * eps * (d * d).sum(axis=0))


@pytest.mark.parametrize("kind", ["bfloat16", "float16"])
@pytest.mark.parametrize(
    "positions, channels",
    [(64, 16), (100, 37), (5, 40)],
    ids=["one-tile-column", "tiles-and-remainders", "rows-below-a-tile"],
)
def test_sums_along_channels_of_16_bit_bits_are_those_of_their_float32_values(positions, channels, kind):
    """On a block of 16-bit bits (widened in registers: the tile's 16-lane loads and the
    loop's elements) the sums are bit for bit those of the block's float32 values, in
    tiles or row by row."""
    require("numba-cpu")
    import ml_dtypes

    from backends.numba_cpu import kernels

    if kind == "float16" and not kernels.F16C:
        pytest.skip("float16 bits are read in place only with F16C")
    rng = np.random.default_rng(13)
    values = (rng.standard_normal((positions, channels)) * 3 + 10).astype(
        ml_dtypes.bfloat16 if kind == "bfloat16" else np.float16
    )
    wide = values.astype(np.float32)
    k = wide[: min(positions, 16)].mean(axis=0).astype(np.float32)
    sums = {}
    for name, block in (("bits", values.view(np.uint16)), ("floats", wide)):
        for tiles in (True, False):
            s1, s2 = np.full(channels, np.nan), np.full(channels, np.nan)
            kernels._sums_along_channels(block, k, s1, s2, kind == "bfloat16", tiles)
            sums[name, tiles] = (s1, s2)
    for name, tiles in sums:
        np.testing.assert_array_equal(sums[name, tiles][0], sums["floats", True][0])
        np.testing.assert_array_equal(sums[name, tiles][1], sums["floats", True][1])


_SCRIPT = """
import json, sys
import ml_dtypes
import numpy as np
import backends
from backends.numba_cpu import halves
backend = backends.get("numba-cpu")
found = {"f16c": halves.F16C, "native_bfloat": halves.NATIVE_BFLOAT}
for dtype in (np.float16, ml_dtypes.bfloat16):
    rng = np.random.default_rng(11)
    x = (rng.standard_normal((2, 8, 20, 31)) * 40).astype(dtype)
    x[1].reshape(-1)[::101] = np.inf  # sample 1: NaN groups; sample 0 finite
    w, b = rng.standard_normal((2, 8)).astype(np.float32)
    tiny_y, tiny_dy = (3e-39, 1e-37) if dtype == ml_dtypes.bfloat16 else (2e-6, 1e-6)
    w[0], b[0] = tiny_y, 0.0  # channel 0's y: subnormals (float32 ones before narrowing bfloat16)
    y = backend.group_norm(x, 4, w, b, 1e-5)
    last = np.moveaxis(np.ascontiguousarray(np.moveaxis(x, 1, -1)), -1, 1)  # channels-last: its own kernel
    y_last = np.ascontiguousarray(backend.group_norm(last, 4, w, b, 1e-5))
    dy = (rng.standard_normal(x.shape) * 3).astype(dtype)
    dy[:, 1] *= np.float32(tiny_dy)  # channel 1's dx: subnormals, as channel 0's y
    _, saved = backend.forward_train(x, 4, w, b, 1e-5)
    dx, _, _ = backend.backward(dy, saved)
    _, saved = backend.forward_train(x[:1], 4, w, b, 1e-5)  # finite: dweight and dbias finite
    _, dw, db = backend.backward(dy[:1], saved)
    dx_bits = np.where(np.isnan(dx), np.uint16(0x7E00), dx.view(np.uint16))  # a NaN's sign is not defined
    found[np.dtype(dtype).name] = {"bits": y.view(np.uint16).tolist(), "dx": dx_bits.tolist(),
                                   "channels_last": y_last.view(np.uint16).tolist(),
                                   "dw": dw.view(np.uint32).tolist(), "db": db.view(np.uint32).tolist()}
print(json.dumps(found))
"""

# Pairs of Numba targets that differ only in the conversion instructions they allow
# (NUMBA_CPU_NAME, NUMBA_CPU_FEATURES; None: the host's own): without F16C the float16
# conversions are scalar code, without AVX512-BF16 the bfloat16 narrowing is emulated.
# Targets that differ in vector width may differ in the last bit (sums reassociated in
# another order), so each pair keeps the rest of its target.
_GENERIC = "+sse4.2,+avx,+avx2,+fma,+popcnt"


def _host_without(feature):
    from llvmlite import binding as llvm

    features = llvm.get_host_cpu_features()
    features[feature] = False
    return llvm.get_host_cpu_name(), features.flatten()


@pytest.mark.parametrize(
    "flag, pair",
    [
        ("f16c", lambda: (("generic", _GENERIC + ",+f16c"), ("generic", _GENERIC))),
        ("native_bfloat", lambda: (None, _host_without("avx512bf16"))),
    ],
    ids=["f16c", "avx512bf16"],
)
def test_16_bit_conversion_instructions_give_the_bits_of_the_scalar_code(tmp_path, flag, pair):
    """The same float16 and bfloat16 GroupNorm, forward (contiguous and channels-last) and
    backward, in two processes whose Numba targets differ only in one conversion
    feature: F16C (its instructions against the scalar float16 conversions) or
    AVX512-BF16 (vcvtneps2bf16 against the emulated bfloat16 narrowing). Channel 0's y
    and channel 1's dx are 16-bit subnormals (for bfloat16, float32 subnormals before
    narrowing, which vcvtneps2bf16 alone would flush to zero); sample 1 holds Inf."""
    require("numba-cpu")
    from backends.numba_cpu import halves

    if flag == "f16c" and not halves.F16C:
        pytest.skip("this CPU has no F16C: the suite already runs the scalar path")
    if flag == "native_bfloat" and not halves.NATIVE_BFLOAT:
        pytest.skip("this CPU has no AVX512-BF16 (or llvmlite no bfloat type): the suite runs the emulation")
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    runs = []
    for i, target in enumerate(pair()):
        env = dict(os.environ)
        env.pop("NUMBA_CPU_FEATURES", None)
        env.pop("NUMBA_CPU_NAME", None)
        if target:  # another target: compiled afresh in a cache of its own (the host's cache is the suite's)
            env.update(NUMBA_CPU_NAME=target[0], NUMBA_CPU_FEATURES=target[1], NUMBA_CACHE_DIR=str(tmp_path / str(i)))
        # the two processes compile at once: each compile is single-threaded
        runs.append(subprocess.Popen([sys.executable, "-c", _SCRIPT], cwd=root, env=env, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True))
    outputs = []
    for run in runs:
        stdout, stderr = run.communicate(timeout=900)
        assert run.returncode == 0, stderr[-3000:]
        outputs.append(json.loads(stdout.strip().splitlines()[-1]))
    assert outputs[0][flag] and not outputs[1][flag]
    for dtype in ("float16", "bfloat16"):
        for output in ("bits", "channels_last", "dx", "dw", "db"):
            assert outputs[0][dtype][output] == outputs[1][dtype][output], (dtype, output)
        for output, channel in (("bits", 0), ("dx", 1)):
            magnitudes = np.array(outputs[0][dtype][output], np.uint16)[0, channel] & 0x7FFF
            smallest_normal = 0x400 if dtype == "float16" else 0x80
            assert ((magnitudes > 0) & (magnitudes < smallest_normal)).any(), (dtype, output, "no subnormals")
