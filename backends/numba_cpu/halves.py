"""16-bit float conversions on vectors, as LLVM vector IR for the numba-cpu kernels.

Numba has no float16 or bfloat16 type on the CPU, so the kernels handle both as raw bits
(uint16). Converting one element at a time (a 65536-entry table to widen float16, a
branchy round-to-nearest-even to narrow) held numba-cpu's float16 GroupNorm to
0.42-0.53x torch. Here the conversions are LLVM intrinsics (``numba.extending.
intrinsic``) on 8- or 32-lane vectors, which the kernels call in ordinary loops and
LLVM inlines:

* float16: ``fpext <8 x half>`` / ``fptrunc <8 x float>``, single instructions on x86
  CPUs with F16C (``vcvtph2ps`` / ``vcvtps2ph``: exact widening, round to nearest even).
  Without F16C LLVM would call a runtime helper the JIT may not have, so :data:`F16C`
  (the feature of the CPU Numba compiles for) selects them at compile time: the kernels
  read it as a global constant and keep their scalar conversions otherwise.
* bfloat16: widening as a shift of the bits, narrowing as round to nearest even on the
  float32 bits in 8-lane integer arithmetic with a select for NaN (any CPU: plain vector
  integer IR). The scalar loop it replaces was vectorized only in part (0.78 against
  0.53 us per 4096 values here). Where the CPU has AVX512-BF16 (:data:`NATIVE_BFLOAT`)
  the vector narrowings are ``vcvtneps2bf16`` instead (LLVM's ``fptrunc`` to
  ``bfloat``), and a vector holding a float32 subnormal, which that instruction reads as
  zero, takes the integer code: the same bits (:func:`_to_bfloat_checked`). With 32
  lanes a step (channels-last rows) it narrows as fast as F16C does float16 (0.038
  against 0.065 ns an element, measured in cache on an AVX-512 EPYC).
* :func:`affine_bits`: widening, ``x * a + c`` and the narrowing in one vector step,
  16-bit bits in and out, so the normalize reads the input's bits and writes the
  output's with nothing wider in memory (same bits as the three steps apart).
* :func:`gradient_bits`: the backward's dx the same way, from x's and dy's bits to dx's
  (widening, the kernels' ``_grad_plane`` arithmetic in its order, narrowing).
  With ``stream``, both write whole 64-byte lines (32 lanes) with streaming stores (see
  ``stores``) from the output's first 64-byte boundary on.
* ``bfloat_value`` / ``half_value`` (and ``bfloat_of`` / ``half_of`` to narrow): one
  element's conversion, the same IR on a scalar, for loops that LLVM vectorizes like a
  float32 loop (16 lanes, accumulators in registers): the chunk sums read the 16-bit bits
  once with no widened copy (an 8-lane intrinsic could not carry the sums between
  calls), and the channels-last kernel converts along its rows of channels.

The tests check every path bit for bit against NumPy / ml_dtypes
(``tests/test_numba_cpu_halves.py``).

Editing this file: Numba's on-disk cache (``cache=True``) keys each kernel on the
SHA-256 of its own file's contents (Numba 0.68), and these functions are inlined into
``kernels.py``'s, so after editing only this file the cached kernels keep the
old code (touching the kernels file does not help). Delete the cache
(``rm backends/__pycache__/kernels.*.nb[ic]``) or run with ``NUMBA_CACHE_DIR``
set to a fresh folder. (The backend's ``source_hash``, recorded in every result row,
covers this file.)
"""

import os

import numba
import numpy as np
from llvmlite import binding as llvm
from llvmlite import ir
from llvmlite.ir import types as ir_types
from numba import types
from numba.extending import intrinsic

from .stores import LINE, address, vector_operand


def _target_features() -> set:
    """The CPU features Numba compiles for: NUMBA_CPU_FEATURES when set, else the host's."""
    named = os.environ.get("NUMBA_CPU_FEATURES", "")
    if named:
        return {feature[1:] for feature in named.split(",") if feature.startswith("+")}
    try:
        return {name for name, on in llvm.get_host_cpu_features().items() if on}
    except RuntimeError:  # the host's features cannot be read: assume none
        return set()


def _bfloat_type():
    """LLVM's ``bfloat`` type, which llvmlite (0.50) does not define: a float type that
    prints as ``bfloat``. None where llvmlite's float base class is not there."""
    base = getattr(ir_types, "_BaseFloatType", None)
    if base is None:
        return None

    class BFloatType(base):
        null = "0.0"
        intrinsic_name = "bf16"

        def __str__(self):
            return "bfloat"

        def format_constant(self, value):
            return ir_types._format_double(value)

    BFloatType._create_instance()
    return BFloatType()


def _native_bfloat(features, llvm_version, bfloat_type) -> bool:
    """Whether the bfloat16 vector narrowing may be ``fptrunc`` to ``bfloat``: the CPU has
    AVX512-BF16 and AVX512-VL (vcvtneps2bf16 for 8, 16 and 32 lanes), llvmlite can spell
    the type, and LLVM is 20 or later. Older LLVMs cannot lower it: LLVM 14 (llvmlite
    0.43) stops the process with "Cannot select", LLVM 15 (0.44) emits no vcvtneps2bf16;
    LLVM 20 (0.45) and 22 (0.50) emit it (no llvmlite release builds LLVM 16-19)."""
    return bfloat_type is not None and {"avx512bf16", "avx512vl"} <= features and tuple(llvm_version) >= (20,)


_FEATURES = _target_features()
F16C = "f16c" in _FEATURES
BFLOAT = _bfloat_type()
NATIVE_BFLOAT = _native_bfloat(_FEATURES, llvm.llvm_version_info, BFLOAT)
STREAM_LANES = LINE // 2  # 16-bit elements a streaming store writes: one 64-byte line


def _splat(vector, value):
    return ir.Constant(vector, [ir.Constant(vector.element, value)] * vector.count)


def _shaped(like, element):
    """The type ``element``, or a vector of it with as many lanes as the vector ``like``:
    each conversion below works on one value or on 8 lanes alike."""
    return ir.VectorType(element, like.count) if isinstance(like, ir.VectorType) else element


def _constant(of_type, value):
    return _splat(of_type, value) if isinstance(of_type, ir.VectorType) else ir.Constant(of_type, value)


def from_half(builder, raw):
    """float32 of float16 bits (i16, or <8 x i16>): fpext, exact (vcvtph2ps)."""
    return builder.fpext(builder.bitcast(raw, _shaped(raw.type, ir.HalfType())), _shaped(raw.type, ir.FloatType()))


def from_bfloat(builder, raw):
    """float32 of bfloat16 bits (i16, or <8 x i16>): the high half of the float32 bits, exact."""
    words = _shaped(raw.type, ir.IntType(32))
    shifted = builder.shl(builder.zext(raw, words), _constant(words, 16))
    return builder.bitcast(shifted, _shaped(raw.type, ir.FloatType()))


def _widening(convert):
    """An intrinsic ``(bits, at, values, to)``: values[to:to + 8] = ``convert`` of the
    16-bit ``bits[at:at + 8]``."""

    @intrinsic
    def widen8(typingctx, bits, at, values, to):
        def codegen(context, builder, signature, args):
            target = context.make_array(signature.args[2])(context, builder, args[2])
            wide = convert(builder, _load_bits(context, builder, signature.args[0], args[0], args[1]))
            builder.store(wide, builder.bitcast(builder.gep(target.data, [args[3]]), wide.type.as_pointer()), align=4)
            return context.get_dummy_value()

        return types.void(bits, at, values, to), codegen

    return widen8


def _to_half(builder, floats):
    """float16 bits (i16, or <8 x i16>) of float32 (fptrunc: vcvtps2ph, round to nearest even)."""
    return builder.bitcast(
        builder.fptrunc(floats, _shaped(floats.type, ir.HalfType())), _shaped(floats.type, ir.IntType(16))
    )


def _to_bfloat(builder, floats):
    """bfloat16 bits (i16, or <8 x i16>) of float32: round to nearest even (add 0x7FFF
    plus the kept lowest bit, keep the high half); NaN stays a quiet NaN of the same sign
    (its high half with the quiet bit set)."""
    words = _shaped(floats.type, ir.IntType(32))
    f = builder.bitcast(floats, words)
    nan = builder.icmp_unsigned(">", builder.and_(f, _constant(words, 0x7FFFFFFF)), _constant(words, 0x7F800000))
    high = builder.lshr(f, _constant(words, 16))
    odd = builder.and_(high, _constant(words, 1))
    rounded = builder.lshr(builder.add(builder.add(f, _constant(words, 0x7FFF)), odd), _constant(words, 16))
    quiet = builder.or_(high, _constant(words, 0x40))
    return builder.trunc(builder.select(nan, quiet, rounded), _shaped(floats.type, ir.IntType(16)))


def _to_bfloat_checked(builder, floats):
    """:func:`_to_bfloat`'s bits of a vector, faster where :data:`NATIVE_BFLOAT`:
    vcvtneps2bf16 (``fptrunc`` to ``bfloat``: round to nearest even, NaN kept quiet with
    its sign) where no lane holds a float32 subnormal, :func:`_to_bfloat` where any does
    (vcvtneps2bf16 reads subnormals as zero): a compare and a branch per vector, the branch
    never taken on ordinary data. The emulated rounding's integer steps cost about 0.03 ns
    an element more than float16's F16C narrowing."""
    if not NATIVE_BFLOAT or not isinstance(floats.type, ir.VectorType):
        return _to_bfloat(builder, floats)
    words = _shaped(floats.type, ir.IntType(32))
    magnitude = builder.and_(builder.bitcast(floats, words), _constant(words, 0x7FFFFFFF))
    subnormal = builder.icmp_unsigned(
        "<",
        builder.sub(magnitude, _constant(words, 1)),  # 1 .. 0x7FFFFF
        _constant(words, 0x007FFFFF),
    )
    mask = ir.IntType(floats.type.count)
    any_subnormal = builder.icmp_unsigned("!=", builder.bitcast(subnormal, mask), ir.Constant(mask, 0))
    native = builder.bitcast(
        builder.fptrunc(floats, _shaped(floats.type, BFLOAT)), _shaped(floats.type, ir.IntType(16))
    )
    start = builder.block
    with builder.if_then(any_subnormal, likely=False):
        emulated = _to_bfloat(builder, floats)
        fixed = builder.block
    bits = builder.phi(native.type)
    bits.add_incoming(native, start)
    bits.add_incoming(emulated, fixed)
    return bits


def _load_bits(context, builder, array_type, array, at, lanes=8):
    source = context.make_array(array_type)(context, builder, array)
    halves = ir.VectorType(ir.IntType(16), lanes)
    return builder.load(builder.bitcast(builder.gep(source.data, [at]), halves.as_pointer()), align=2)


def _load_floats(context, builder, array_type, array, at):
    source = context.make_array(array_type)(context, builder, array)
    floats = ir.VectorType(ir.FloatType(), 8)
    return builder.load(builder.bitcast(builder.gep(source.data, [at]), floats.as_pointer()), align=4)


def _store_bits(context, builder, array_type, array, at, narrow, stream=False):
    """Store the narrowed lanes at ``array[at]``; with ``stream``, a streaming store
    (``!nontemporal``), for which ``array[at]`` must start a boundary of the store's size."""
    target = context.make_array(array_type)(context, builder, array)
    store = builder.store(
        narrow,
        builder.bitcast(builder.gep(target.data, [at]), narrow.type.as_pointer()),
        align=2 * narrow.type.count if stream else 2,
    )
    if stream:
        store.set_metadata("nontemporal", builder.module.add_metadata([ir.Constant(ir.IntType(32), 1)]))


def _narrowing(convert):
    """An intrinsic ``(values, at, bits, to)``: bits[to:to + 8] = ``convert`` of the
    float32 ``values[at:at + 8]``."""

    @intrinsic
    def narrow8(typingctx, values, at, bits, to):
        def codegen(context, builder, signature, args):
            wide = _load_floats(context, builder, signature.args[0], args[0], args[1])
            _store_bits(context, builder, signature.args[2], args[2], args[3], convert(builder, wide))
            return context.get_dummy_value()

        return types.void(values, at, bits, to), codegen

    return narrow8


def _scalar_or_lanes(value):
    """The type an intrinsic takes for a float32 operand: a float32 array as it is (its
    first ``lanes`` elements, lane by lane: a row of channels), anything else as a float32
    scalar."""
    return value if isinstance(value, types.Array) and value.dtype == types.float32 else types.float32


def _affine_bits(widen, narrow, stream=False, lanes=8):
    """An intrinsic ``(source, at, bits, to, a, c)``: bits[to:to + lanes] = ``narrow``
    of ``widen(source[at:at + lanes]) * a + c`` (16-bit bits in and out, float32 between; the
    multiply and add marked ``contract``, so an FMA where the CPU has one, as the kernels'
    fastmath={"contract"} affine loops); ``a`` and ``c`` float32 scalars (one plane) or
    float32 arrays (their first ``lanes`` elements, lane by lane: channels-last rows); ``stream``:
    a streaming store (aligned to its size); ``lanes``: elements a call converts."""

    @intrinsic
    def affine8(typingctx, source, at, bits, to, a, c):
        def codegen(context, builder, signature, args):
            wide = widen(builder, _load_bits(context, builder, signature.args[0], args[0], args[1], lanes))
            scale, shift = (
                vector_operand(context, builder, signature.args[i], args[i], wide.type, lanes) for i in (4, 5)
            )
            y = builder.fadd(builder.fmul(wide, scale, flags=["contract"]), shift, flags=["contract"])
            _store_bits(context, builder, signature.args[2], args[2], args[3], narrow(builder, y), stream)
            return context.get_dummy_value()

        return types.void(source, at, bits, to, _scalar_or_lanes(a), _scalar_or_lanes(c)), codegen

    return affine8


def _gradient_bits(widen, narrow, stream=False, lanes=8):
    """An intrinsic ``(x, dy, at, bits, r, w, a, beta, m, delta)``: bits[at:at + lanes]
    = ``narrow`` of ``r * (w * widen(dy) - a) + beta * (widen(x) - m) + delta`` (16-bit
    bits in and out, float32 between, the operations in that order and unfused: the
    arithmetic of the kernels' ``_grad_plane``, so the same bits); ``stream``: a
    streaming store (aligned to its size); ``lanes``: elements a call converts."""

    @intrinsic
    def gradient8(typingctx, x, dy, at, bits, r, w, a, beta, m, delta):
        def codegen(context, builder, signature, args):
            xs = widen(builder, _load_bits(context, builder, signature.args[0], args[0], args[2], lanes))
            gs = widen(builder, _load_bits(context, builder, signature.args[1], args[1], args[2], lanes))
            r_, w_, a_, beta_, m_, delta_ = (
                vector_operand(context, builder, types.float32, value, xs.type, lanes) for value in args[4:]
            )
            term = builder.fmul(r_, builder.fsub(builder.fmul(w_, gs), a_))
            out = builder.fadd(builder.fadd(term, builder.fmul(beta_, builder.fsub(xs, m_))), delta_)
            _store_bits(context, builder, signature.args[3], args[3], args[2], narrow(builder, out), stream)
            return context.get_dummy_value()

        return types.void(x, dy, at, bits, *([types.float32] * 6)), codegen

    return gradient8


def _one(convert, result, argument):
    """An intrinsic of one scalar: ``convert`` (the 8-lane conversions' own code) of it."""

    @intrinsic
    def one(typingctx, value):
        def codegen(context, builder, signature, args):
            return convert(builder, args[0])

        return result(argument), codegen

    return one


# One element at a time, for loops LLVM vectorizes itself (16 lanes here, accumulators in
# registers): the chunk sums read 16-bit bits without a widened copy, the channels-last
# normalize runs along a row of channels. half_value / half_of only where F16C.
bfloat_value = _one(from_bfloat, types.float32, types.uint16)  # float32 of bfloat16 bits (exact)
half_value = _one(from_half, types.float32, types.uint16)  # float32 of float16 bits (exact)
bfloat_of = _one(_to_bfloat, types.uint16, types.float32)  # bfloat16 bits of a float32, as _to_bfloat
half_of = _one(_to_half, types.uint16, types.float32)  # float16 bits of a float32, round to nearest even

_widen8 = _widening(from_half)
_widen_bfloat8 = _widening(from_bfloat)
_narrow8 = _narrowing(_to_half)
_narrow_bfloat8 = _narrowing(_to_bfloat_checked)
_gradient_half8 = _gradient_bits(from_half, _to_half)
_gradient_bfloat8 = _gradient_bits(from_bfloat, _to_bfloat_checked)
_affine_half_bits8 = _affine_bits(from_half, _to_half)
_affine_bfloat_bits8 = _affine_bits(from_bfloat, _to_bfloat_checked)
# 32 lanes (a 64-byte line) a call with ordinary stores: planes in cache, channels-last rows
affine_half_bits32 = _affine_bits(from_half, _to_half, lanes=STREAM_LANES)
affine_bfloat_bits32 = _affine_bits(from_bfloat, _to_bfloat_checked, lanes=STREAM_LANES)
_gradient_bfloat32 = _gradient_bits(from_bfloat, _to_bfloat_checked, lanes=STREAM_LANES)
# streaming: 32 lanes, one whole 64-byte line a store (16-byte streaming stores gained
# nothing over ordinary ones; whole lines 10-12% on 1x512x256x256 bfloat16 channels-last)
_gradient_half32_stream = _gradient_bits(from_half, _to_half, stream=True, lanes=STREAM_LANES)
_gradient_bfloat32_stream = _gradient_bits(from_bfloat, _to_bfloat_checked, stream=True, lanes=STREAM_LANES)
affine_half_bits32_stream = _affine_bits(from_half, _to_half, stream=True, lanes=STREAM_LANES)
affine_bfloat_bits32_stream = _affine_bits(from_bfloat, _to_bfloat_checked, stream=True, lanes=STREAM_LANES)


@numba.njit(cache=True)
def widen_f16c(bits, values):
    """values[:n] = float32 of float16 ``bits[:n]`` (n = bits.size, both contiguous), 8 at
    a time, the tail through a padded copy. Only where :data:`F16C`."""
    count = bits.size
    whole = count - count % 8
    for i in range(0, whole, 8):
        _widen8(bits, i, values, i)
    if whole < count:
        pad = np.zeros(8, np.uint16)
        wide = np.empty(8, np.float32)
        pad[: count - whole] = bits[whole:]
        _widen8(pad, 0, wide, 0)
        values[whole:count] = wide[: count - whole]


@numba.njit(cache=True)
def narrow_f16c(values, bits):
    """bits[:n] = float16 bits of float32 ``values[:n]`` (n = values.size, both
    contiguous), round to nearest even, 8 at a time. Only where :data:`F16C`."""
    count = values.size
    whole = count - count % 8
    for i in range(0, whole, 8):
        _narrow8(values, i, bits, i)
    if whole < count:
        pad = np.zeros(8, np.float32)
        narrow = np.empty(8, np.uint16)
        pad[: count - whole] = values[whole:]
        _narrow8(pad, 0, narrow, 0)
        bits[whole:count] = narrow[: count - whole]


@numba.njit(cache=True)
def narrow_bfloat8(values, bits):
    """bits[:n] = bfloat16 bits of float32 ``values[:n]`` (n = values.size, both
    contiguous), round to nearest even, 8 at a time, the tail through a padded copy."""
    count = values.size
    whole = count - count % 8
    for i in range(0, whole, 8):
        _narrow_bfloat8(values, i, bits, i)
    if whole < count:
        pad = np.zeros(8, np.float32)
        narrow = np.empty(8, np.uint16)
        pad[: count - whole] = values[whole:]
        _narrow_bfloat8(pad, 0, narrow, 0)
        bits[whole:count] = narrow[: count - whole]


@numba.njit(cache=True)
def widen_bfloat8(bits, values):
    """values[:n] = float32 of bfloat16 ``bits[:n]`` (n = bits.size, both contiguous), 8 at
    a time, the tail one by one."""
    count = bits.size
    whole = count - count % 8
    for i in range(0, whole, 8):
        _widen_bfloat8(bits, i, values, i)
    words = values.view(np.uint32)
    for i in range(whole, count):
        words[i] = np.uint32(bits[i]) << 16


@numba.njit(cache=True)
def stream_span(bits, stream):
    """(first, stop): the elements of the 16-bit ``bits`` to write in whole streamed
    64-byte lines (:data:`STREAM_LANES` at a time) with ``stream``, from its first 64-byte
    boundary; (0, 0) without."""
    if not stream:
        return 0, 0
    first = min(bits.size, (-address(bits)) % LINE // 2)
    return first, first + (bits.size - first) // STREAM_LANES * STREAM_LANES


@numba.njit(cache=True)
def _affine_bits_padded(source, bits, first, stop, scale, shift, bfloat):
    """affine_bits of source[first:stop] (at most 8 elements) through padded copies."""
    pad = np.zeros(8, np.uint16)
    narrow = np.empty(8, np.uint16)
    pad[: stop - first] = source[first:stop]
    if bfloat:
        _affine_bfloat_bits8(pad, 0, narrow, 0, scale, shift)
    elif F16C:
        _affine_half_bits8(pad, 0, narrow, 0, scale, shift)
    bits[first:stop] = narrow[: stop - first]


@numba.njit(cache=True, inline="always")  # inlined by Numba: as a call, 4-10% slower on planes of 256-1024
def _affine_bits_plain(source, bits, first, stop, scale, shift, bfloat):
    """affine_bits of elements first..stop with ordinary stores, 32 at a time (a 64-byte
    line; 8 a step took about 1.1x as long in cache on planes of 1024-4096), then 8 at a
    time, the tail through padded copies."""
    lined = first + (stop - first) // STREAM_LANES * STREAM_LANES
    whole = lined + (stop - lined) // 8 * 8
    if bfloat:
        for i in range(first, lined, STREAM_LANES):
            affine_bfloat_bits32(source, i, bits, i, scale, shift)
        for i in range(lined, whole, 8):
            _affine_bfloat_bits8(source, i, bits, i, scale, shift)
    elif F16C:
        for i in range(first, lined, STREAM_LANES):
            affine_half_bits32(source, i, bits, i, scale, shift)
        for i in range(lined, whole, 8):
            _affine_half_bits8(source, i, bits, i, scale, shift)
    if whole < stop:
        _affine_bits_padded(source, bits, whole, stop, scale, shift, bfloat)


@numba.njit(cache=True)
def _affine_bits_streamed(source, bits, scale, shift, bfloat):
    """affine_bits with streaming stores: whole 64-byte lines (:data:`STREAM_LANES`
    elements) from bits' first 64-byte boundary, the head and the tail with ordinary
    stores."""
    first, stop = stream_span(bits, True)
    _affine_bits_plain(source, bits, 0, first, scale, shift, bfloat)
    for i in range(first, stop, STREAM_LANES):
        if bfloat:
            affine_bfloat_bits32_stream(source, i, bits, i, scale, shift)
        elif F16C:
            affine_half_bits32_stream(source, i, bits, i, scale, shift)
    _affine_bits_plain(source, bits, stop, source.size, scale, shift, bfloat)


@numba.njit(cache=True)
def affine_bits(source, bits, a, c, bfloat, stream):
    """bits[:n] = 16-bit of ``widen(source[:n]) * a + c`` in float32, ``source`` 16-bit
    bits of the same kind (n = source.size, both contiguous): widening, the affine step
    and the narrowing in one vector pass from bits to bits, so nothing wider than the
    input goes to memory. The same bits as widening, the affine loop, narrowing. float16
    only where :data:`F16C` (ValueError otherwise). With ``stream``, whole 64-byte lines
    in streaming stores (:func:`_affine_bits_streamed`)."""
    if not bfloat and not F16C:
        raise ValueError("affine_bits: float16 needs F16C; without it, widen_half_scalar then the affine loop")
    scale = np.float32(a)
    shift = np.float32(c)
    if stream:
        _affine_bits_streamed(source, bits, scale, shift, bfloat)
    else:
        _affine_bits_plain(source, bits, 0, source.size, scale, shift, bfloat)


@numba.njit(cache=True)
def _gradient_bits_padded(x, dy, bits, first, stop, r_, w_, a_, beta_, m_, delta_, bfloat):
    """gradient_bits of elements first..stop (at most 8) through padded copies."""
    x_pad = np.zeros(8, np.uint16)
    dy_pad = np.zeros(8, np.uint16)
    narrow = np.empty(8, np.uint16)
    x_pad[: stop - first] = x[first:stop]
    dy_pad[: stop - first] = dy[first:stop]
    if bfloat:
        _gradient_bfloat8(x_pad, dy_pad, 0, narrow, r_, w_, a_, beta_, m_, delta_)
    elif F16C:
        _gradient_half8(x_pad, dy_pad, 0, narrow, r_, w_, a_, beta_, m_, delta_)
    bits[first:stop] = narrow[: stop - first]


@numba.njit(cache=True, inline="always")  # inlined by Numba: as a call, 4-10% slower on planes of 256-1024
def _gradient_bits_plain(x, dy, bits, first, stop, r_, w_, a_, beta_, m_, delta_, bfloat):
    """gradient_bits of elements first..stop with ordinary stores: bfloat16 32 at a time
    (0.72-0.81 of 8 a step's time in cache), then 8 at a time; float16 8 at a time
    (32 a step took 1.03-1.25x as long); the tail through padded copies."""
    lined = first + (stop - first) // STREAM_LANES * STREAM_LANES if bfloat else first
    whole = lined + (stop - lined) // 8 * 8
    if bfloat:
        for i in range(first, lined, STREAM_LANES):
            _gradient_bfloat32(x, dy, i, bits, r_, w_, a_, beta_, m_, delta_)
        for i in range(lined, whole, 8):
            _gradient_bfloat8(x, dy, i, bits, r_, w_, a_, beta_, m_, delta_)
    elif F16C:
        for i in range(first, whole, 8):
            _gradient_half8(x, dy, i, bits, r_, w_, a_, beta_, m_, delta_)
    if whole < stop:
        _gradient_bits_padded(x, dy, bits, whole, stop, r_, w_, a_, beta_, m_, delta_, bfloat)


@numba.njit(cache=True)
def gradient_bits(x, dy, bits, r, w, a, beta, m, delta, bfloat, stream):
    """bits[:n] = 16-bit of ``r * (w * dy - a) + beta * (x - m) + delta`` for 16-bit bits
    ``x`` and ``dy`` (n = x.size, all contiguous; the scalars float32): widening, the
    backward's dx and the narrowing in one vector pass, the same bits as widening, the
    kernels' ``_grad_plane`` and narrowing. float16 only where :data:`F16C` (ValueError
    otherwise). ``stream`` as for :func:`affine_bits`: whole 64-byte lines streamed, the
    head and the tail with ordinary stores."""
    if not bfloat and not F16C:
        raise ValueError("gradient_bits: float16 needs F16C; without it, widen_half_scalar then _grad_plane")
    scalars = np.array([r, w, a, beta, m, delta], np.float32)
    r_, w_, a_, beta_, m_, delta_ = scalars[0], scalars[1], scalars[2], scalars[3], scalars[4], scalars[5]
    if not stream:
        _gradient_bits_plain(x, dy, bits, 0, x.size, r_, w_, a_, beta_, m_, delta_, bfloat)
        return
    first, stop = stream_span(bits, stream)
    _gradient_bits_plain(x, dy, bits, 0, first, r_, w_, a_, beta_, m_, delta_, bfloat)
    for i in range(first, stop, STREAM_LANES):
        if bfloat:
            _gradient_bfloat32_stream(x, dy, i, bits, r_, w_, a_, beta_, m_, delta_)
        elif F16C:
            _gradient_half32_stream(x, dy, i, bits, r_, w_, a_, beta_, m_, delta_)
    _gradient_bits_plain(x, dy, bits, stop, x.size, r_, w_, a_, beta_, m_, delta_, bfloat)
