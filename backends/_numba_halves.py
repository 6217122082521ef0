"""16-bit float conversions, 8 at a time, as LLVM vector IR for the numba-cpu kernels.

Numba has no float16 or bfloat16 type on the CPU, so the kernels handle both as raw bits
(uint16). Converting one element at a time (a 65536-entry table to widen float16, a
branchy round-to-nearest-even to narrow) held numba-cpu's float16 GroupNorm to
0.42-0.53x torch. Here the conversions are LLVM intrinsics (``numba.extending.
intrinsic``) on 8-lane vectors, which the kernels call in ordinary loops and LLVM inlines:

* float16: ``fpext <8 x half>`` / ``fptrunc <8 x float>``, single instructions on x86
  CPUs with F16C (``vcvtph2ps`` / ``vcvtps2ph``: exact widening, round to nearest even).
  Without F16C LLVM would call a runtime helper the JIT may not have, so :data:`F16C`
  (the feature of the CPU Numba compiles for) selects them at compile time: the kernels
  read it as a global constant and keep their scalar conversions otherwise.
* bfloat16 narrowing: round to nearest even on the float32 bits as 8-lane integer
  arithmetic with a select for NaN (any CPU: plain vector integer IR). The scalar loop
  it replaces was vectorized only in part (0.78 against 0.53 us per 4096 values here).

The tests check every path bit for bit against NumPy / ml_dtypes
(``tests/test_numba_cpu_halves.py``).
"""

import os

import numba
import numpy as np
from llvmlite import binding as llvm
from llvmlite import ir
from numba import types
from numba.extending import intrinsic


def _target_features() -> set:
    """The CPU features Numba compiles for: NUMBA_CPU_FEATURES when set, else the host's."""
    named = os.environ.get("NUMBA_CPU_FEATURES", "")
    if named:
        return {feature[1:] for feature in named.split(",") if feature.startswith("+")}
    try:
        return {name for name, on in llvm.get_host_cpu_features().items() if on}
    except RuntimeError:  # the host's features cannot be read: assume none
        return set()


F16C = "f16c" in _target_features()


@intrinsic
def _widen8(typingctx, bits, at, values, to):
    """values[to:to + 8] = float32 of the float16 ``bits[at:at + 8]`` (fpext: vcvtph2ps)."""

    def codegen(context, builder, signature, args):
        source = context.make_array(signature.args[0])(context, builder, args[0])
        target = context.make_array(signature.args[2])(context, builder, args[2])
        halves = ir.VectorType(ir.IntType(16), 8)
        start = builder.gep(source.data, [args[1]])
        raw = builder.load(builder.bitcast(start, halves.as_pointer()), align=2)
        wide = builder.fpext(builder.bitcast(raw, ir.VectorType(ir.HalfType(), 8)), ir.VectorType(ir.FloatType(), 8))
        end = builder.gep(target.data, [args[3]])
        builder.store(wide, builder.bitcast(end, wide.type.as_pointer()), align=4)
        return context.get_dummy_value()

    return types.void(bits, at, values, to), codegen


@intrinsic
def _narrow8(typingctx, values, at, bits, to):
    """bits[to:to + 8] = float16 of the float32 ``values[at:at + 8]`` (fptrunc, round to
    nearest even: vcvtps2ph)."""

    def codegen(context, builder, signature, args):
        source = context.make_array(signature.args[0])(context, builder, args[0])
        target = context.make_array(signature.args[2])(context, builder, args[2])
        floats = ir.VectorType(ir.FloatType(), 8)
        start = builder.gep(source.data, [args[1]])
        wide = builder.load(builder.bitcast(start, floats.as_pointer()), align=4)
        narrow = builder.bitcast(builder.fptrunc(wide, ir.VectorType(ir.HalfType(), 8)), ir.VectorType(ir.IntType(16), 8))
        end = builder.gep(target.data, [args[3]])
        builder.store(narrow, builder.bitcast(end, narrow.type.as_pointer()), align=2)
        return context.get_dummy_value()

    return types.void(values, at, bits, to), codegen


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
        pad[:count - whole] = bits[whole:]
        _widen8(pad, 0, wide, 0)
        values[whole:count] = wide[:count - whole]


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
        pad[:count - whole] = values[whole:]
        _narrow8(pad, 0, narrow, 0)
        bits[whole:count] = narrow[:count - whole]


def _splat(vector, value):
    return ir.Constant(vector, [ir.Constant(vector.element, value)] * vector.count)


@intrinsic
def _narrow_bfloat8(typingctx, values, at, bits, to):
    """bits[to:to + 8] = bfloat16 of the float32 ``values[at:at + 8]``: round to nearest
    even (add 0x7FFF plus the kept lowest bit, keep the high half); NaN stays a quiet NaN
    of the same sign (its high half with the quiet bit set)."""

    def codegen(context, builder, signature, args):
        source = context.make_array(signature.args[0])(context, builder, args[0])
        target = context.make_array(signature.args[2])(context, builder, args[2])
        words = ir.VectorType(ir.IntType(32), 8)
        start = builder.gep(source.data, [args[1]])
        f = builder.load(builder.bitcast(start, words.as_pointer()), align=4)
        nan = builder.icmp_unsigned(">", builder.and_(f, _splat(words, 0x7FFFFFFF)), _splat(words, 0x7F800000))
        high = builder.lshr(f, _splat(words, 16))
        odd = builder.and_(high, _splat(words, 1))
        rounded = builder.lshr(builder.add(builder.add(f, _splat(words, 0x7FFF)), odd), _splat(words, 16))
        quiet = builder.or_(high, _splat(words, 0x40))
        narrow = builder.trunc(builder.select(nan, quiet, rounded), ir.VectorType(ir.IntType(16), 8))
        end = builder.gep(target.data, [args[3]])
        builder.store(narrow, builder.bitcast(end, narrow.type.as_pointer()), align=2)
        return context.get_dummy_value()

    return types.void(values, at, bits, to), codegen


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
        pad[:count - whole] = values[whole:]
        _narrow_bfloat8(pad, 0, narrow, 0)
        bits[whole:count] = narrow[:count - whole]
