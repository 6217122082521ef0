"""Streaming (non-temporal) stores for the numba-cpu kernels' large outputs, as LLVM IR
(``numba.extending.intrinsic``).

An ordinary store to a line that is not in the cache first reads the line from memory
(read for ownership), and the written line then sits in the cache, evicting x. Where y
does not fit in the last-level cache beside x, both are wasted: a normalize pass costs
three transfers per element (read x, read y's line, write y) instead of two. A
non-temporal store (``vmovntps``; LLVM's ``!nontemporal`` metadata on an aligned vector
store) writes whole lines straight to memory without reading them first.

Measured on this project's 2-core EPYC (32 MiB L3), in one process, float32 contiguous
16x64x256x256/8: the kernel with ordinary stores 18.9 ms, with streaming stores 13.0 ms,
torch 16.9 ms, torch's own copy of x 14.4 ms, a streaming copy 12.0 ms. Below about half
the L3 (x and y fit together) streaming is slower (2x320x64x64: 0.45 against 0.25 ms),
so the backend streams only where x and y together exceed the L3
(``numba_cpu_backend.stream_bytes``).

* :func:`stream_affine`: ``target[at:at + L] = source[at:at + L] * scale + shift``, one
  64-byte line (L = 16 float32 or 8 float64) in one streaming store; ``scale`` and
  ``shift`` scalars (one channel's plane) or arrays (their first L elements, lane by lane:
  a row of channels). Multiply and add marked ``contract``: an FMA, as the kernels'
  ``fastmath={"contract"}`` affine loops, so the same bits.
* :func:`stream_gradient`: the backward's dx for one line, the arithmetic of the kernels'
  ``_grad_plane`` in its order and unfused (the same bits).
* :func:`address`: an array's data address (the kernels stream from the first 64-byte
  boundary of a span; the head and tail go through ordinary stores).
* :func:`stream_fence`: ``sfence``, which orders a thread's streaming stores before what
  follows (each parallel task ends with one, before the kernel returns y).
* :func:`prefetch`: a software prefetch of one line (``prefetcht0``; never faults), for
  reads the hardware prefetchers do not keep ahead of (the 16-bit channels-last
  statistics, read row by row from DRAM).
* :func:`advise_huge_pages`: ``madvise(MADV_HUGEPAGE)`` on an array's whole pages (Linux;
  nothing elsewhere), so a fresh output is faulted in 2 MiB at a time where the system
  allows it (transparent huge pages ``always`` or ``madvise``), as NumPy does for its own
  arrays of 4 MiB and more. In a plain script glibc maps each large output afresh:
  a 134 MB y cost 52 ms in 4 KiB faults against 15 ms advised, for a 5.4 ms pass.

The tests compare every streamed output with the ordinary kernels' bit for bit
(``tests/test_numba_cpu_streaming.py``).

Editing this file: as for ``halves.py`` (see its last paragraph), delete the
kernels' disk cache, which is keyed on the kernels file's contents only (the backend's
``source_hash`` covers this file).
"""

import sys

from llvmlite import binding as llvm
from llvmlite import ir
from numba import types
from numba.extending import intrinsic

LINE = 64  # bytes per streaming store: one cache line
X86 = llvm.get_process_triple().split("-")[0] in ("x86_64", "i386", "i686")


def vector_pointer(context, builder, array_type, array, at, lanes):
    """A pointer to ``lanes`` elements of ``array`` from flat index ``at``, as a vector."""
    data = context.make_array(array_type)(context, builder, array).data
    element = context.get_value_type(array_type.dtype)
    return builder.bitcast(builder.gep(data, [at]), ir.VectorType(element, lanes).as_pointer())


def vector_operand(context, builder, value_type, value, vector, lanes):
    """A scalar broadcast to every lane, or an array's first ``lanes`` elements."""
    if isinstance(value_type, types.Array):
        return builder.load(vector_pointer(context, builder, value_type, value, ir.Constant(ir.IntType(64), 0), lanes),
                            align=value_type.dtype.bitwidth // 8)
    one = builder.insert_element(ir.Constant(vector, ir.Undefined), value, ir.Constant(ir.IntType(32), 0))
    return builder.shuffle_vector(one, ir.Constant(vector, ir.Undefined),
                                  ir.Constant(ir.VectorType(ir.IntType(32), lanes), [0] * lanes))


def _stream(builder, value, pointer):
    """Store ``value`` at the 64-byte aligned ``pointer`` with ``!nontemporal``."""
    store = builder.store(value, pointer, align=LINE)
    store.set_metadata("nontemporal", builder.module.add_metadata([ir.Constant(ir.IntType(32), 1)]))


def _lanes(array_type):
    return LINE // (array_type.dtype.bitwidth // 8)


@intrinsic
def stream_affine(typingctx, source, target, at, scale, shift):
    """target[at:at + L] = source[at:at + L] * scale + shift, L = 64 bytes of elements,
    in one streaming store; ``target``'s element ``at`` must start a 64-byte line. scale
    and shift: scalars of the arrays' dtype, or arrays of it (lane by lane)."""
    if not (isinstance(source, types.Array) and isinstance(target, types.Array)
            and source.dtype == target.dtype and source.dtype in (types.float32, types.float64)):
        return None
    for operand in (scale, shift):
        if (operand.dtype if isinstance(operand, types.Array) else operand) != source.dtype:
            return None

    def codegen(context, builder, signature, args):
        source_t, target_t, _, scale_t, shift_t = signature.args
        source_v, target_v, at_v, scale_v, shift_v = args
        lanes = _lanes(target_t)
        x = builder.load(
            vector_pointer(context, builder, source_t, source_v, at_v, lanes), align=source_t.dtype.bitwidth // 8
        )
        a = vector_operand(context, builder, scale_t, scale_v, x.type, lanes)
        c = vector_operand(context, builder, shift_t, shift_v, x.type, lanes)
        y = builder.fadd(builder.fmul(x, a, flags=["contract"]), c, flags=["contract"])
        _stream(builder, y, vector_pointer(context, builder, target_t, target_v, at_v, lanes))
        return context.get_dummy_value()

    return types.void(source, target, at, scale, shift), codegen


@intrinsic
def stream_gradient(typingctx, x, dy, out, at, r, w, a, beta, m, delta):
    """out[at:at + L] = r * (w * dy - a) + beta * (x - m) + delta over one 64-byte line, in
    that order and unfused (the kernels' ``_grad_plane``), in one streaming store; ``out``'s
    element ``at`` must start a 64-byte line; the scalars of the arrays' dtype."""
    if not (
        isinstance(x, types.Array)
        and x.dtype in (types.float32, types.float64)
        and dy.dtype == x.dtype
        and out.dtype == x.dtype
        and all(s == x.dtype for s in (r, w, a, beta, m, delta))
    ):
        return None

    def codegen(context, builder, signature, args):
        x_t, dy_t, out_t = signature.args[:3]
        x_v, dy_v, out_v, at_v = args[:4]
        lanes = _lanes(out_t)
        xs = builder.load(vector_pointer(context, builder, x_t, x_v, at_v, lanes), align=x_t.dtype.bitwidth // 8)
        gs = builder.load(vector_pointer(context, builder, dy_t, dy_v, at_v, lanes), align=dy_t.dtype.bitwidth // 8)
        r_, w_, a_, beta_, m_, delta_ = (
            vector_operand(context, builder, t, v, xs.type, lanes) for t, v in zip(signature.args[4:], args[4:])
        )
        term = builder.fmul(r_, builder.fsub(builder.fmul(w_, gs), a_))
        value = builder.fadd(builder.fadd(term, builder.fmul(beta_, builder.fsub(xs, m_))), delta_)
        _stream(builder, value, vector_pointer(context, builder, out_t, out_v, at_v, lanes))
        return context.get_dummy_value()

    return types.void(x, dy, out, at, r, w, a, beta, m, delta), codegen


@intrinsic
def address(typingctx, array):
    """The address of ``array``'s first element, as an integer."""
    if not isinstance(array, types.Array):
        return None

    def codegen(context, builder, signature, args):
        data = context.make_array(signature.args[0])(context, builder, args[0]).data
        return builder.ptrtoint(data, ir.IntType(64))

    return types.int64(array), codegen


@intrinsic
def stream_fence(typingctx):
    """``sfence`` on x86 (this thread's streaming stores are ordered before its later
    stores; a plain fence does not order them there), a sequentially consistent fence
    elsewhere."""

    def codegen(context, builder, signature, args):
        if X86:
            name = "llvm.x86.sse.sfence"
            fence = builder.module.globals.get(name) or ir.Function(
                builder.module, ir.FunctionType(ir.VoidType(), []), name
            )
            builder.call(fence, [])
        else:
            builder.fence("seq_cst")
        return context.get_dummy_value()

    return types.void(), codegen


@intrinsic
def prefetch(typingctx, array, at):
    """Prefetch the line holding ``array``'s flat element ``at`` into the cache
    (``llvm.prefetch``: read, high locality; a hint that never faults, even past the end)."""
    if not isinstance(array, types.Array) or not isinstance(at, types.Integer):
        return None

    def codegen(context, builder, signature, args):
        data = context.make_array(signature.args[0])(context, builder, args[0]).data
        byte = ir.IntType(8).as_pointer()
        pointer = builder.bitcast(builder.gep(data, [args[1]]), byte)
        i32 = ir.IntType(32)
        name = "llvm.prefetch.p0"
        hint = builder.module.globals.get(name) or ir.Function(
            builder.module, ir.FunctionType(ir.VoidType(), [byte, i32, i32, i32]), name
        )
        builder.call(hint, [pointer, ir.Constant(i32, 0), ir.Constant(i32, 3), ir.Constant(i32, 1)])
        return context.get_dummy_value()

    return types.void(array, at), codegen


MADV_HUGEPAGE = 14  # Linux's value (asm-generic/mman-common.h)
PAGE_MASK = ~4095 & ((1 << 64) - 1)


@intrinsic
def advise_huge_pages(typingctx, array):
    """``madvise(MADV_HUGEPAGE)`` on the whole 4 KiB pages inside ``array``'s data (C
    contiguous), before anything touches them; its result is ignored (advice). A no-op
    off Linux. The call is to libc's ``madvise`` by name, so the kernels stay cacheable."""
    if not isinstance(array, types.Array) or array.layout != "C":
        return None

    def codegen(context, builder, signature, args):
        if not sys.platform.startswith("linux"):
            return context.get_dummy_value()
        data = context.make_array(signature.args[0])(context, builder, args[0])
        i64 = ir.IntType(64)
        start = builder.ptrtoint(data.data, i64)
        nbytes = builder.mul(
            data.nitems, ir.Constant(i64, context.get_abi_sizeof(context.get_data_type(signature.args[0].dtype)))
        )
        first = builder.and_(builder.add(start, ir.Constant(i64, 4095)), ir.Constant(i64, PAGE_MASK))
        end = builder.and_(builder.add(start, nbytes), ir.Constant(i64, PAGE_MASK))
        byte = ir.IntType(8).as_pointer()
        kind = ir.FunctionType(ir.IntType(32), [byte, i64, ir.IntType(32)])
        madvise = builder.module.globals.get("madvise") or ir.Function(builder.module, kind, "madvise")
        with builder.if_then(builder.icmp_unsigned(">", end, first)):
            builder.call(
                madvise,
                [builder.inttoptr(first, byte), builder.sub(end, first), ir.Constant(ir.IntType(32), MADV_HUGEPAGE)],
            )
        return context.get_dummy_value()

    return types.void(array), codegen
