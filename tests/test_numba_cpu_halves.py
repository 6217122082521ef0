"""numba-cpu's 16-bit conversions, bit for bit against NumPy (float16) and ml_dtypes
(bfloat16): every float16 and bfloat16 pattern widened, and float32 values narrowed
around every rounding boundary, overflow, subnormals, zeros, Inf and NaN."""

import functools

import numpy as np
import pytest

from conftest import require

ml_dtypes = pytest.importorskip("ml_dtypes")


@pytest.fixture(scope="module")
def kernels():
    require("numba-cpu")
    from backends.numba_cpu import kernels

    return kernels


def _narrowing_inputs():
    """float32 values: random over every exponent, each 16-bit value, the midpoints between
    neighbouring 16-bit values and one float32 ulp either side (the ties), specials."""
    rng = np.random.default_rng(0)
    random_bits = rng.integers(0, 1 << 32, 2_000_000, dtype=np.uint64).astype(np.uint32).view(np.float32)
    values = [random_bits]
    for dtype in (np.float16, ml_dtypes.bfloat16):
        every = np.arange(1 << 16, dtype=np.uint16).view(dtype).astype(np.float32)
        finite = np.sort(every[np.isfinite(every)])
        mid = (finite[:-1].astype(np.float64) + finite[1:]) / 2
        mid = mid.astype(np.float32)
        values += [every, mid, np.nextafter(mid, np.float32(np.inf)), np.nextafter(mid, np.float32(-np.inf))]
    specials = np.array([0.0, -0.0, np.inf, -np.inf, np.nan, -np.nan, 65504, 65519.996, 65520, 65536, 1e38,
                         2.0 ** -14, 2.0 ** -24, 2.0 ** -25, 2.0 ** -25 * 1.0000001, 1.5 * 2.0 ** -24, 1e-45,
                         3.3895314e38, 3.4028235e38], np.float32)
    values.append(np.concatenate([specials, -specials]))
    return np.concatenate(values)


def _same_bits(got, expected, nan_sign=True):
    """Bitwise equal, except that any NaN matches any NaN of the same sign (of any sign
    without ``nan_sign``: a NaN that arithmetic makes, Inf - Inf or 0 * Inf, has no sign
    IEEE 754 defines; x86 gives the first operand's NaN or its default NaN, and LLVM may
    commute an addition's operands)."""
    got_bits, expected_bits = got.view(np.uint16), expected.view(np.uint16)
    nan = np.isnan(expected.astype(np.float32))
    assert (np.isnan(got.astype(np.float32)) == nan).all()
    assert not nan_sign or ((got_bits >> 15) == (expected_bits >> 15))[nan].all(), "NaN sign"
    mismatch = np.flatnonzero((got_bits != expected_bits) & ~nan)
    assert mismatch.size == 0, f"{mismatch.size} differ; first: {expected[mismatch[:5]]} -> {got[mismatch[:5]]}"


# (exponent bits, fraction bits) of each 16-bit format
FORMATS = {"float16": (5, 10), "bfloat16": (8, 7)}


def _decode(bits: np.ndarray, dtype: str) -> np.ndarray:
    """IEEE 754 decoding from the bit fields, in float64 (exact for both formats), as the
    standard defines it: independent of NumPy's and ml_dtypes' conversions (the widening
    table is built with NumPy's, so checking against NumPy would check NumPy against
    itself)."""
    exponent_bits, fraction_bits = FORMATS[dtype]
    bias, top = (1 << (exponent_bits - 1)) - 1, (1 << exponent_bits) - 1
    fields = bits.astype(np.int64)
    sign = np.where(fields >> 15, -1.0, 1.0)
    exponent = (fields >> fraction_bits) & top
    fraction = (fields & ((1 << fraction_bits) - 1)).astype(np.float64)
    normal = np.ldexp(1.0 + fraction / (1 << fraction_bits), exponent - bias)
    subnormal = np.ldexp(fraction, 1 - bias - fraction_bits)
    value = np.where(exponent == 0, subnormal, normal)
    value = np.where(exponent == top, np.where(fraction == 0, np.inf, np.nan), value)
    return np.copysign(value, sign)  # (a product would drop the sign of a NaN)


def test_decoding_knows_its_landmarks():
    landmarks = {("float16", 0x3C00): 1.0, ("float16", 0x7BFF): 65504.0, ("float16", 0x0001): 2.0 ** -24,
                 ("float16", 0x8400): -(2.0 ** -14), ("bfloat16", 0x3F80): 1.0, ("bfloat16", 0x0001): 2.0 ** -133,
                 ("bfloat16", 0x7F7F): 3.3895313892515355e38, ("bfloat16", 0xC000): -2.0}
    for (dtype, pattern), value in landmarks.items():
        assert _decode(np.array([pattern], np.uint16), dtype)[0] == value, (dtype, hex(pattern))


@functools.cache
def _one_at_a_time():
    """Loops over the scalar conversions (bfloat_value, half_value, bfloat_of, half_of) that
    the kernels' bit-reading sums and channels-last rows use: (widen, narrow)."""
    import numba

    from backends.numba_cpu import halves

    f16c = halves.F16C  # a compile-time constant: without F16C the float16 branch is never compiled to a call

    @numba.njit
    def widen(bits, bfloat):
        out = np.empty(bits.size, np.float32)
        for i in range(bits.size):
            if bfloat:
                out[i] = halves.bfloat_value(bits[i])
            elif f16c:
                out[i] = halves.half_value(bits[i])
        return out

    @numba.njit
    def narrow(values, bfloat):
        out = np.empty(values.size, np.uint16)
        for i in range(values.size):
            if bfloat:
                out[i] = halves.bfloat_of(values[i])
            elif f16c:
                out[i] = halves.half_of(values[i])
        return out

    return widen, narrow


def _widen(kernels, bits, dtype, path):
    """float32 of 16-bit ``bits`` by one conversion path: the backend's own choice
    (``default``: F16C where the CPU has it), float16's F16C or scalar path forced, or
    ``one``: the one-element conversions."""
    from backends.numba_cpu import halves
    from backends.numba_cpu.backend import _half_table

    if path == "one":
        return _one_at_a_time()[0](bits, dtype == "bfloat16")
    if dtype == "bfloat16":
        return kernels.widen_bfloat(bits)
    if path == "default":
        return kernels.widen_half(bits, _half_table())
    values = np.empty(bits.size, np.float32)
    if path == "f16c":
        halves.widen_f16c(bits, values)
    else:
        kernels.widen_half_scalar(bits, _half_table(), values)
    return values


def _narrow(kernels, values, dtype, path):
    """16-bit bits of float32 ``values`` by one conversion path (as :func:`_widen`)."""
    from backends.numba_cpu import halves

    if path == "one":
        return _one_at_a_time()[1](values, dtype == "bfloat16")
    if dtype == "bfloat16":
        return kernels.narrow_bfloat(values)
    if path == "default":
        return kernels.narrow_half(values)
    bits = np.empty(values.size, np.uint16)
    if path == "f16c":
        halves.narrow_f16c(values, bits)
    else:
        kernels.narrow_half_scalar(values, bits)
    return bits


# float16 has two conversion paths (F16C instructions, scalar code); both are checked, and
# the one-element conversions (F16C's for float16) of both formats
CONVERSIONS = [("float16", "default"), ("float16", "f16c"), ("float16", "scalar"), ("bfloat16", "default"),
               ("float16", "one"), ("bfloat16", "one")]


@pytest.fixture(params=CONVERSIONS, ids=["-".join(c) for c in CONVERSIONS])
def conversion(request):
    from backends.numba_cpu import halves

    if request.param in (("float16", "f16c"), ("float16", "one")) and not halves.F16C:
        pytest.skip("this CPU has no F16C: the scalar path is the one the kernels use here")
    return request.param


def test_the_default_float16_path_is_f16c_where_the_cpu_has_it(kernels):
    """On a CPU with F16C the kernels call its conversions: widen_half's machine code
    holds vcvtph2ps (the scalar path has none)."""
    from backends.numba_cpu import halves

    if not halves.F16C:
        pytest.skip("this CPU has no F16C")
    fresh = kernels.numba.njit(parallel=True)(kernels.widen_half.py_func)  # uncached, so its assembly is inspectable
    fresh(np.zeros(9, np.uint16), np.zeros(1 << 16, np.float32))
    assembly = "".join(fresh.inspect_asm().values())
    assert "vcvtph2ps" in assembly


@pytest.mark.parametrize("features, llvm_version, typed, native", [
    ({"avx512bf16", "avx512vl", "f16c"}, (22, 1, 0), True, True),
    ({"avx512bf16", "avx512vl"}, (20, 1, 8), True, True),
    ({"avx512bf16", "avx512vl"}, (15, 0, 7), True, False),  # llvmlite 0.44: no vcvtneps2bf16
    ({"avx512bf16", "avx512vl"}, (14, 0, 6), True, False),  # llvmlite 0.43: "Cannot select", the process stops
    ({"avx512bf16"}, (22, 1, 0), True, False),
    ({"avx512vl", "f16c"}, (22, 1, 0), True, False),
    ({"avx512bf16", "avx512vl"}, (22, 1, 0), False, False),
], ids=["host-like", "llvm20", "llvm15", "llvm14", "no-vl", "no-bf16", "no-bfloat-type"])
def test_native_bfloat16_narrowing_needs_the_features_the_type_and_llvm_20(features, llvm_version, typed, native):
    """The gate of vcvtneps2bf16: the CPU features, llvmlite's bfloat type and an LLVM
    that lowers ``fptrunc`` to ``bfloat`` (checked here on llvmlite 0.43, 0.44, 0.45, 0.50
    with the host's features)."""
    from backends.numba_cpu import halves

    bfloat_type = halves.BFLOAT if typed else None
    if typed and bfloat_type is None:
        pytest.skip("this llvmlite has no float base class for the bfloat type")
    assert halves._native_bfloat(features, llvm_version, bfloat_type) is native


def test_the_bfloat16_vector_narrowing_is_vcvtneps2bf16_where_the_cpu_has_it(kernels):
    """On a CPU with AVX512-BF16 the vector narrowing's machine code holds vcvtneps2bf16
    (the emulation has none)."""
    from backends.numba_cpu import halves

    if not halves.NATIVE_BFLOAT:
        pytest.skip("this CPU has no AVX512-BF16 (or llvmlite no bfloat type)")
    fresh = kernels.numba.njit(halves.narrow_bfloat8.py_func)  # uncached, so its assembly is inspectable
    fresh(np.zeros(16, np.float32), np.zeros(16, np.uint16))
    assert "vcvtneps2bf16" in "".join(fresh.inspect_asm().values())


def test_widening_is_exact_for_every_pattern(kernels, conversion):
    dtype, path = conversion
    bits = np.arange(1 << 16, dtype=np.uint16)
    got = _widen(kernels, bits, dtype, path)
    expected = _decode(bits, dtype).astype(np.float32)  # exact: both formats fit in float32
    assert (np.signbit(got) == np.signbit(expected)).all()
    nan = np.isnan(expected)
    assert (np.isnan(got) == nan).all()
    np.testing.assert_array_equal(got.view(np.uint32)[~nan], expected.view(np.uint32)[~nan])


def test_narrowing_rounds_to_nearest_even_like_numpy(kernels, conversion):
    dtype, path = conversion
    values = _narrowing_inputs()
    numpy_dtype = np.float16 if dtype == "float16" else ml_dtypes.bfloat16
    with np.errstate(over="ignore", invalid="ignore"):
        expected = values.astype(numpy_dtype)
    bits = _narrow(kernels, values, dtype, path)
    _same_bits(bits.view(numpy_dtype), expected)


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
@pytest.mark.parametrize("a, c", [(1.0, 0.0), (1.5, -0.25), (3.0e-3, 7.0)], ids=["identity", "affine", "shrink"])
@pytest.mark.parametrize("tail", [0, 5], ids=["whole-vectors", "padded-tail"])
def test_affine_bits_gives_widening_the_affine_loop_then_narrowing_bits(kernels, dtype, a, c, tail):
    """halves.affine_bits (widening, x * a + c and the narrowing in one 8-lane step,
    16-bit bits in and out, the tail padded) against the kernels' widening, affine loop
    and 8-lane narrowing apart: the same bits, on every 16-bit pattern (NaN, Inf,
    subnormals) and half a million random ones; the scales take values to overflow,
    to subnormals and through ties."""
    from backends.numba_cpu import halves

    if dtype == "float16" and not halves.F16C:
        pytest.skip("this CPU has no F16C: the fused float16 step is not used")
    every = np.arange(1 << 16, dtype=np.uint16)
    random = np.random.default_rng(1).integers(0, 1 << 16, every.size * 8, dtype=np.uint64).astype(np.uint16)
    bits = np.concatenate([every, random])
    bits = bits[:bits.size - bits.size % 8 - 8 + tail]
    values = _widen(kernels, bits, dtype, "default")
    scaled = np.empty(values.size, np.float32)
    kernels._scale_shift(values, scaled, np.array([a], np.float32), np.array([c], np.float32), values.size, 0)
    expected = np.empty(values.size, np.uint16)
    got = np.empty(values.size, np.uint16)
    if dtype == "bfloat16":
        halves.narrow_bfloat8(scaled, expected)
    else:
        halves.narrow_f16c(scaled, expected)
    halves.affine_bits(bits, got, a, c, dtype == "bfloat16", False)
    np.testing.assert_array_equal(got, expected)


def _one_subnormal_per_vector(lanes, rng):
    """float32 (lanes + 1, lanes): row k normal values with a float32 subnormal in lane k;
    the last row none."""
    values = rng.standard_normal((lanes + 1, lanes)).astype(np.float32)
    tiny = rng.integers(1, 0x7FFFFF, lanes, dtype=np.uint32).view(np.float32)  # subnormal bit patterns
    values[np.arange(lanes), np.arange(lanes)] = tiny * np.where(rng.random(lanes) < 0.5, -1, 1).astype(np.float32)
    return values


@pytest.mark.parametrize("lanes, path", [(8, "narrow"), (8, "affine"), (32, "affine-streamed"),
                                         (32, "channels-last-rows")])
def test_bfloat16_vector_narrowing_keeps_a_subnormal_in_any_lane(kernels, lanes, path):
    """The vector bfloat16 narrowing (vcvtneps2bf16 where ``NATIVE_BFLOAT``, which reads
    float32 subnormals as zero, so any vector holding one goes through the emulation)
    against ml_dtypes: vectors of normal values with one float32 subnormal in each lane
    in turn, and one vector with none, through the 8-lane narrowing, the 8-lane affine
    step, the streamed 32-lane one and the channels-last rows (32 lanes a call)."""
    from backends.numba_cpu import halves

    rng = np.random.default_rng(lanes)
    values = _one_subnormal_per_vector(lanes, rng)
    if path == "narrow":
        got = np.empty(values.size, np.uint16)
        halves.narrow_bfloat8(values.reshape(-1), got)
        expected = values.reshape(-1).astype(ml_dtypes.bfloat16)
    else:
        # bfloat16 inputs whose products with a = 0.75 are float32 subnormals where the
        # input is a (bfloat16) subnormal; c = 0 (no underflow to a signed zero)
        source = values.astype(ml_dtypes.bfloat16)
        source.view(np.uint16)[np.arange(lanes), np.arange(lanes)] |= np.uint16(1)  # never zero
        expected = (source.astype(np.float32) * np.float32(0.75)).astype(ml_dtypes.bfloat16).reshape(-1)
        line = np.empty(source.size + 64, np.uint16)  # a copy that starts a 64-byte line
        start = (-line.ctypes.data) % 64 // 2
        bits = line[start:start + source.size]
        bits[:] = source.view(np.uint16).reshape(-1)
        target = np.empty(bits.size + 64, np.uint16)
        got = target[(-target.ctypes.data) % 64 // 2:][:bits.size]
        if path == "channels-last-rows":
            rows = bits.reshape(-1, 33)  # 33 channels: the lines start at every channel in turn
            scale = kernels._wrapped(np.full((1, 33), 0.75, np.float32), halves.STREAM_LANES)[0]
            kernels._lane_rows_bits(rows, got.reshape(-1, 33), scale, np.zeros_like(scale), True, False)
        else:
            halves.affine_bits(bits, got, 0.75, 0.0, True, path == "affine-streamed")
    _same_bits(got.view(ml_dtypes.bfloat16), expected)


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
@pytest.mark.parametrize("layout", ["contiguous", "channels_last", "strided"])
def test_group_norm_of_16_bit_input_keeps_dtype_and_layout_independence(dtype, layout):
    """The backend's 16-bit path end to end: same output for every memory layout, and the
    same as float32 math on the widened input narrowed once."""
    backend = require("numba-cpu")
    from harness.problems import inputs
    from harness.problems.cases import Case

    case = Case((2, 8, 5, 7), 4, dtype, layout, affine="random")
    host = inputs.make(case)
    out = backend.group_norm(host.x, 4, host.weight, host.bias, 1e-5)
    assert out.dtype == host.x.dtype and out.shape == host.x.shape
    reference = backend.group_norm(np.ascontiguousarray(host.x.astype(np.float32)), 4,
                                   host.weight.astype(np.float32), host.bias.astype(np.float32), 1e-5)
    _same_bits(out, reference.astype(host.x.dtype))


def _unfused(kernels, x, num_groups, weight, bias, eps):
    """The separate-pass path: widen everything, the float32 kernel, narrow everything."""
    from backends.numba_cpu.backend import _half_table

    bits = np.ascontiguousarray(x).view(np.uint16).reshape(-1)
    data = kernels.widen_half(bits, _half_table()) if x.dtype == np.float16 else kernels.widen_bfloat(bits)
    out, _ = kernels.group_norm_by_group(data.reshape(x.shape[0] * num_groups, -1), num_groups, weight, bias, eps,
                                         False)
    out = kernels.narrow_half(out.reshape(-1)) if x.dtype == np.float16 else kernels.narrow_bfloat(out.reshape(-1))
    return out.reshape(x.shape)


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
@pytest.mark.parametrize("shape, groups", [((2, 64, 9, 7), 8), ((2, 32, 70, 70), 4), ((1, 8, 3), 2),
                                           ((4, 16, 1), 16), ((2, 64, 16, 8), 8), ((2, 32, 72, 72), 4),
                                           ((1, 4, 301, 301), 1), ((1, 4, 304, 304), 1)],
                         ids=["small", "multi-chunk", "1d", "one-element", "planes-of-8n",
                              "planes-of-8n-multi-chunk", "group-beyond-keep", "planes-of-8n-beyond-keep"])
@pytest.mark.parametrize("values", ["specials", "finite"])
def test_fused_16_bit_kernel_gives_the_separate_passes_bits(kernels, dtype, shape, groups, values):
    """group_norm_half_by_group (widen and narrow per chunk, in cache) against the
    separate widen / float32 kernel / narrow passes: the same bits and statistics, NaN
    and Inf included, for groups of one chunk, many chunks, one element, and beyond
    HALF_KEEP. Planes of a multiple of 8 elements take the bits-to-bits step; the others
    the affine loop then the narrowing (planes across chunk boundaries included), kept
    widened up to HALF_KEEP and widened twice beyond it. With ``specials`` every chunk
    holds an Inf, so the statistics take the two-pass method on widened chunks; with
    ``finite`` (an offset of 8 std) the one-pass sums, which read the bits directly."""
    from backends.numba_cpu.backend import _half_table

    np_dtype = np.float16 if dtype == "float16" else ml_dtypes.bfloat16
    rng = np.random.default_rng(3)
    x = (rng.standard_normal(shape) * 3 + (1 if values == "specials" else 24)).astype(np_dtype)
    flat = x.reshape(-1)
    if values == "specials":
        flat[::97] = np.inf
        flat[5] = np.nan
        flat[7] = -np.inf
    weight, bias = rng.standard_normal(shape[1]), rng.standard_normal(shape[1])
    bits = x.view(np.uint16).reshape(shape[0] * groups, -1)
    if shape[2:] in ((301, 301), (304, 304)):
        assert bits.shape[1] > kernels.HALF_KEEP
    table = _half_table() if dtype == "float16" else np.empty(0, np.float32)
    fused, stats = kernels.group_norm_half_by_group(bits, groups, weight, bias, 1e-5, table, dtype == "bfloat16",
                                                    False)
    wide = kernels.widen_half(bits.reshape(-1), table) if dtype == "float16" else kernels.widen_bfloat(bits.reshape(-1))
    _, wide_stats = kernels.group_norm_by_group(wide.reshape(bits.shape), groups, weight, bias, 1e-5, False)
    np.testing.assert_array_equal(stats, wide_stats)
    unfused = _unfused(kernels, x, groups, weight, bias, 1e-5)
    _same_bits(fused.view(np_dtype).reshape(-1), unfused.view(np_dtype).reshape(-1))


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
@pytest.mark.parametrize(
    "shape, groups",
    [((2, 64, 9, 7), 8), ((2, 32, 70, 70), 4), ((4, 16, 1), 16), ((1, 4, 301, 301), 1)],
    ids=["small", "planes-beyond-a-chunk", "one-element", "large-planes"],
)
@pytest.mark.parametrize("values", ["specials", "finite", "inf-first"])
def test_16_bit_backward_gives_the_separate_passes_bits(kernels, dtype, shape, groups, values):
    """group_norm_backward_half_by_group (the sums read x's and dy's bits, widened in
    registers, or widened chunk by chunk into scratch without vector conversions; dx from
    the bits in one 8-lane pass, or chunk by chunk) against widening x and dy whole, the
    float32 backward, narrowing dx: the same dx bits (NaN where it has NaN) and the same
    dweight/dbias, finite, with NaN and Inf, and with dy's first element Inf (the sums'
    zero is then NaN, as in the float32 kernel)."""
    from backends.numba_cpu.backend import _half_table

    np_dtype = np.float16 if dtype == "float16" else ml_dtypes.bfloat16
    rng = np.random.default_rng(5)
    x = (rng.standard_normal(shape) * 3 + 1).astype(np_dtype)
    dy = rng.standard_normal(shape).astype(np_dtype)
    if values == "specials":
        x.reshape(-1)[::89] = np.inf
        dy.reshape(-1)[3] = np.nan
    if values == "inf-first":  # each channel's first chunk starts with Inf
        dy.reshape(shape[0], shape[1], -1)[:, :, 0] = np.inf
    weight = rng.standard_normal(shape[1])
    table = _half_table() if dtype == "float16" else np.empty(0, np.float32)
    xbits, gbits = (a.view(np.uint16).reshape(shape[0] * groups, -1) for a in (x, dy))
    _, stats = kernels.group_norm_half_by_group(
        xbits, groups, weight, np.zeros(shape[1]), 1e-5, table, dtype == "bfloat16", False
    )
    dx, dweight, dbias = kernels.group_norm_backward_half_by_group(
        xbits, gbits, groups, weight, stats, table, dtype == "bfloat16", False
    )
    widen = (
        (lambda b: kernels.widen_half(b.reshape(-1), table))
        if dtype == "float16"
        else (lambda b: kernels.widen_bfloat(b.reshape(-1)))
    )
    rows, grads = (widen(b).reshape(b.shape) for b in (xbits, gbits))
    wide_dx, wide_dweight, wide_dbias = kernels.group_norm_backward_by_group(rows, grads, groups, weight, stats, False)
    narrow = kernels.narrow_half if dtype == "float16" else kernels.narrow_bfloat
    _same_bits(dx.view(np_dtype).reshape(-1), narrow(wide_dx.reshape(-1)).view(np_dtype), nan_sign=False)
    np.testing.assert_array_equal(dweight, wide_dweight)
    np.testing.assert_array_equal(dbias, wide_dbias)
