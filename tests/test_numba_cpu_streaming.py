"""numba-cpu's streaming stores (``backends/stores.py``): every kernel that can write
its output with non-temporal stores gives the same bits with them as without, whatever
the alignment of the spans, and the backend streams only above its threshold."""

import platform

import numpy as np
import pytest

from conftest import require

TABLE = np.arange(1 << 16, dtype=np.uint16).view(np.float16).astype(np.float32)


@pytest.fixture(scope="module")
def kernels():
    require("numba-cpu")
    from backends.numba_cpu import kernels

    return kernels


def _same(plain, streamed):
    plain, streamed = (p if isinstance(p, tuple) else (p,) for p in (plain, streamed))
    assert len(plain) == len(streamed)
    for a, b in zip(plain, streamed):
        assert a.dtype == b.dtype and a.shape == b.shape and a.strides == b.strides
        a, b = (np.ascontiguousarray(each).view(np.uint8) for each in (a, b))
        assert np.array_equal(a, b), "streamed output differs from the plain one"


def _values(rng, shape, dtype, specials=True):
    x = (rng.standard_normal(shape) * 3 + 7).astype(dtype)
    if specials and x.size > 20:
        flat = x.reshape(-1)
        flat[5], flat[11], flat[-3] = np.nan, np.inf, -np.inf
    return x


# Plane sizes below, around and well above a 64-byte line (16 float32, 8 float64), so a
# plane's first line boundary falls at every offset.
SHAPES = [((2, 4, 3), 2), ((2, 8, 33), 4), ((3, 6, 16, 17), 3), ((1, 4, 1000), 2), ((2, 32, 8, 8), 8)]
SHAPE_IDS = ["planes-of-3", "planes-of-33", "planes-of-272", "planes-of-1000", "planes-of-64"]


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("specials", [False, True], ids=["finite", "nan-inf"])
@pytest.mark.parametrize("shape, groups", SHAPES, ids=SHAPE_IDS)
def test_forward_by_group_and_by_chunk_streamed_give_the_same_bits(kernels, shape, groups, dtype, specials):
    rng = np.random.default_rng(1)
    x = _values(rng, shape, dtype, specials)
    rows = x.reshape(shape[0] * groups, -1)
    w, b = rng.standard_normal(shape[1]), rng.standard_normal(shape[1])
    _same(kernels.group_norm_by_group(rows, groups, w, b, 1e-5, False),
          kernels.group_norm_by_group(rows, groups, w, b, 1e-5, True))
    _same(kernels.group_norm_by_chunk(rows, groups, w, b, 1e-5, 3, False),
          kernels.group_norm_by_chunk(rows, groups, w, b, 1e-5, 3, True))


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("channels, groups", [(3, 3), (8, 2), (16, 4), (20, 5), (64, 8), (128, 32), (200, 8)],
                         ids=["C3", "C8", "C16", "C20", "C64", "C128", "C200"])
def test_channels_last_streamed_gives_the_same_bits(kernels, channels, groups, dtype):
    """A line of y spans channels from any channel on (C below, equal to and above the
    16 lanes of a float32 line: the wrapped scale and shift). Streaming also sums the
    statistics row by row instead of in tiles: the same bits too."""
    rng = np.random.default_rng(2)
    x = _values(rng, (3, 150, channels), dtype)
    w, b = rng.standard_normal(channels), rng.standard_normal(channels)
    for threads in (1, 2, 16):  # the block size follows the thread count
        _same(kernels.group_norm_channels_last(x, groups, w, b, 1e-5, False, threads),
              kernels.group_norm_channels_last(x, groups, w, b, 1e-5, True, threads))


@pytest.mark.parametrize("kind", ["bfloat16", "float16"])
@pytest.mark.parametrize("channels, groups", [(3, 3), (8, 2), (20, 5), (32, 4), (40, 8), (64, 8)],
                         ids=["C3", "C8", "C20", "C32", "C40", "C64"])
def test_16bit_channels_last_streamed_gives_the_same_bits(kernels, channels, groups, kind):
    """16-bit channels-last y in streamed 64-byte lines of 32 elements, from any channel on
    (C below, equal to and above 32: the wrapped scale and shift), the statistics summed
    row by row: the plain kernel's bits."""
    bfloat = kind == "bfloat16"
    if not (bfloat or kernels.F16C):
        pytest.skip("float16 streams only with F16C")
    rng = np.random.default_rng(8)
    x = _bits(rng, (3, 150, channels), bfloat)
    w, b = rng.standard_normal(channels), rng.standard_normal(channels)
    for threads in (1, 2, 16):  # the block size follows the thread count
        _same(kernels.group_norm_half_channels_last(x, groups, w, b, 1e-5, TABLE, bfloat, False, threads),
              kernels.group_norm_half_channels_last(x, groups, w, b, 1e-5, TABLE, bfloat, True, threads))


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("shape, groups", SHAPES, ids=SHAPE_IDS)
def test_backward_streamed_gives_the_same_bits(kernels, shape, groups, dtype):
    rng = np.random.default_rng(3)
    x, dy = _values(rng, shape, dtype), _values(rng, shape, dtype, specials=False)
    rows, grads = x.reshape(shape[0] * groups, -1), dy.reshape(shape[0] * groups, -1)
    w, b = rng.standard_normal(shape[1]), np.zeros(shape[1])
    stats = kernels.group_norm_by_group(rows, groups, w, b, 1e-5, False)[1]
    _same(kernels.group_norm_backward_by_group(rows, grads, groups, w, stats, False),
          kernels.group_norm_backward_by_group(rows, grads, groups, w, stats, True))


def _bits(rng, shape, bfloat):
    import ml_dtypes

    values = _values(rng, shape, np.float32)
    return values.astype(ml_dtypes.bfloat16 if bfloat else np.float16).view(np.uint16)


@pytest.mark.parametrize("kind", ["bfloat16", "float16"])
@pytest.mark.parametrize("shape, groups", [((2, 8, 24), 4), ((2, 6, 16, 10), 3), ((1, 4, 1000), 2)],
                         ids=["planes-of-24", "planes-of-160", "planes-of-1000"])
def test_16bit_forward_and_backward_streamed_give_the_same_bits(kernels, shape, groups, kind):
    bfloat = kind == "bfloat16"
    if not (bfloat or kernels.F16C):
        pytest.skip("float16's fused path (the one that streams) needs F16C")
    rng = np.random.default_rng(4)
    bits = _bits(rng, shape, bfloat).reshape(shape[0] * groups, -1)
    grads = _bits(rng, shape, bfloat).reshape(bits.shape)
    w, b = rng.standard_normal(shape[1]), rng.standard_normal(shape[1])
    plain = kernels.group_norm_half_by_group(bits, groups, w, b, 1e-5, TABLE, bfloat, False)
    _same(plain, kernels.group_norm_half_by_group(bits, groups, w, b, 1e-5, TABLE, bfloat, True))
    _same(kernels.group_norm_backward_half_by_group(bits, grads, groups, w, plain[1], TABLE, bfloat, False),
          kernels.group_norm_backward_half_by_group(bits, grads, groups, w, plain[1], TABLE, bfloat, True))


@pytest.mark.parametrize("offset", range(0, 17, 3), ids=lambda k: f"offset{k}")
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_stream_plane_at_every_alignment(kernels, dtype, offset):
    """_stream_plane into spans starting at any element of a line (head, lines, tail) equals
    the plain affine loop, and leaves the elements around the span alone."""
    rng = np.random.default_rng(5)
    source = _values(rng, 300, dtype)[offset:offset + 250]
    a, c = np.array([1.7, -0.3], dtype)
    plain = np.full(300, 9.0, dtype)
    streamed = plain.copy()
    kernels._scale_shift(source, plain[offset:offset + 250], np.array([a]), np.array([c]), source.size, 0)
    kernels._stream_plane(source, streamed[offset:offset + 250], a, c)
    _same(plain, streamed)


@pytest.mark.parametrize("offset", range(0, 33, 4), ids=lambda k: f"offset{k}")
@pytest.mark.parametrize("kind", ["bfloat16", "float16"])
def test_16bit_affine_and_gradient_bits_at_every_alignment(kernels, kind, offset):
    """affine_bits / gradient_bits with streaming stores (whole 64-byte lines of 32
    elements) into spans that start anywhere in a line (the head and the tail in
    ordinary stores, partly through padded copies) give the plain calls' bits, the rest
    untouched."""
    from backends.numba_cpu import halves

    bfloat = kind == "bfloat16"
    if not (bfloat or halves.F16C):
        pytest.skip("float16 bits-to-bits needs F16C")
    rng = np.random.default_rng(6)
    x, dy = (_bits(rng, 240, bfloat)[offset:offset + 201] for _ in range(2))
    for call in (lambda out, stream: halves.affine_bits(x, out, 1.5, -0.25, bfloat, stream),
                 lambda out, stream: halves.gradient_bits(x, dy, out, 0.9, 1.1, 0.01, -0.2, 0.3, 1e-3, bfloat,
                                                                 stream)):
        plain = np.full(240, 7, np.uint16)
        streamed = plain.copy()
        call(plain[offset:offset + 201], False)
        call(streamed[offset:offset + 201], True)
        _same(plain, streamed)


@pytest.mark.skipif(platform.machine() not in ("x86_64", "AMD64"), reason="checks x86 instructions")
def test_stream_affine_compiles_to_non_temporal_stores(kernels):
    """The intrinsic is a non-temporal store (vmovnt*) and the fence an sfence in the
    machine code (compiled here, uncached, so it can be inspected)."""
    import numba

    from backends.numba_cpu.stores import stream_affine, stream_fence

    @numba.njit
    def line(source, target, a, c):
        stream_affine(source, target, 0, a, c)
        stream_fence()

    source, target = np.ones(16, np.float32), np.empty(16 + 16, np.float32)
    start = (-target.ctypes.data) % 64 // 4
    line(source, target[start:start + 16], np.float32(2.0), np.float32(1.0))
    assert np.array_equal(target[start:start + 16], np.full(16, 3.0, np.float32))
    assembly = next(iter(line.inspect_asm().values()))
    assert "vmovnt" in assembly and "sfence" in assembly


@pytest.mark.skipif(platform.machine() not in ("x86_64", "AMD64"), reason="checks x86 instructions")
def test_prefetch_compiles_to_a_prefetch_and_changes_nothing(kernels):
    """The prefetch intrinsic is a prefetcht0 in the machine code, and a hint only: the
    array is unchanged, and an index past the end does not fault."""
    import numba

    from backends.numba_cpu.stores import prefetch

    @numba.njit
    def touch(values, at):
        prefetch(values, at)
        return values[0]

    values = np.arange(64, dtype=np.uint16)
    assert touch(values, 32) == 0 and touch(values, 1 << 20) == 0
    assert np.array_equal(values, np.arange(64, dtype=np.uint16))
    assembly = next(iter(touch.inspect_asm().values()))
    assert "prefetcht0" in assembly


def _spy_stream(kernels, name, monkeypatch, position):
    """Record the ``stream`` argument (``args[position]``) of each call of kernel ``name``."""
    seen = []
    original = getattr(kernels, name)

    def spy(*args):
        seen.append(args[position])
        return original(*args)

    monkeypatch.setattr(kernels, name, spy)
    return seen


# (layout, dtype): the forward kernel the backend calls and where its ``stream`` argument is,
# then the backward's (16-bit: the fused kernels, which take table and bfloat first)
BACKEND_STREAMS = {("contiguous", "float32"): (("group_norm_by_group", 5), ("group_norm_backward_by_group", 5)),
                   ("channels_last", "float32"): (("group_norm_channels_last", 5), ("group_norm_backward_by_group", 5)),
                   ("contiguous", "bfloat16"): (("group_norm_half_by_group", 7),
                                                ("group_norm_backward_half_by_group", 7)),
                   ("channels_last", "bfloat16"): (("group_norm_half_channels_last", 7),
                                                   ("group_norm_backward_half_by_group", 7))}


@pytest.mark.parametrize("layout, dtype", list(BACKEND_STREAMS), ids=["-".join(k) for k in BACKEND_STREAMS])
def test_backend_streams_above_its_threshold_only_with_the_same_result(kernels, monkeypatch, layout, dtype):
    """The backend passes stream=False below stream_bytes() and True at or above it (here
    lowered to the size of this input's x and y), forward and backward, and the results
    are the same bits either way."""
    import ml_dtypes

    import backends
    from backends.numba_cpu import backend as numba_cpu_backend

    assert numba_cpu_backend.stream_bytes() >= 1 << 20  # the real threshold: a cache size
    backend = backends.get("numba-cpu")
    rng = np.random.default_rng(7)
    kind = ml_dtypes.bfloat16 if dtype == "bfloat16" else np.float32
    x = _values(rng, (2, 16, 6, 6), np.float32, specials=False).astype(kind)
    if layout == "channels_last":
        x = np.moveaxis(np.ascontiguousarray(np.moveaxis(x, 1, -1)), -1, 1)
    dy = rng.standard_normal(x.shape).astype(kind)
    w, b = rng.standard_normal(16).astype(np.float32), rng.standard_normal(16).astype(np.float32)
    (forward, at), (backward, back_at) = BACKEND_STREAMS[layout, dtype]
    results = {}
    for threshold in (2 * x.nbytes + 1, 2 * x.nbytes):
        monkeypatch.setattr(numba_cpu_backend, "stream_bytes", lambda threshold=threshold: threshold)
        forwards = _spy_stream(kernels, forward, monkeypatch, at)
        backwards = _spy_stream(kernels, backward, monkeypatch, back_at)
        y, residuals = backend.forward_train(x, 4, w, b, 1e-5)
        grads = backend.backward(dy, residuals)
        results[threshold] = (y, *grads)
        assert forwards == [threshold <= 2 * x.nbytes]
        assert backwards == [threshold <= 3 * x.nbytes]
        monkeypatch.undo()
    _same(*results.values())
