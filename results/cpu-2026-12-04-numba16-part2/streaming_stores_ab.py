"""A/B of non-temporal ("streaming") stores for numba-cpu's float32 forward (tried and not
adopted; see README.md here). Run from the repo root: python results/cpu-2026-12-04-numba16-part2/streaming_stores_ab.py

Variant "streamed": each chunk of y computed into an L1 scratch, then copied out with
32-byte `store ... !nontemporal` (vmovntps) and an sfence; "plain": the committed kernel
(`group_norm_by_group`). Interleaved rounds, medians, same process, pinned allocator."""

import sys
import time

import numba
import numpy as np
from llvmlite import ir
from numba import types
from numba.extending import intrinsic

sys.path.insert(0, ".")
from backends import _numba_cpu_kernels as k  # noqa: E402
from harness.timing import pin_allocator  # noqa: E402

LINE = 32


def _bytes(context, builder, array_type, value):
    return builder.bitcast(context.make_array(array_type)(context, builder, value).data, ir.IntType(8).as_pointer())


@intrinsic
def address(typingctx, array):
    def codegen(context, builder, signature, args):
        return builder.ptrtoint(_bytes(context, builder, signature.args[0], args[0]), ir.IntType(64))
    return types.uint64(array), codegen


@intrinsic
def store_line(typingctx, source, source_byte, target, target_byte):
    def codegen(context, builder, signature, args):
        line = ir.VectorType(ir.IntType(8), LINE)
        start = builder.gep(_bytes(context, builder, signature.args[0], args[0]), [args[1]])
        value = builder.load(builder.bitcast(start, line.as_pointer()), align=1)
        end = builder.gep(_bytes(context, builder, signature.args[2], args[2]), [args[3]])
        store = builder.store(value, builder.bitcast(end, line.as_pointer()), align=LINE)
        store.set_metadata("nontemporal", builder.module.add_metadata([ir.Constant(ir.IntType(32), 1)]))
        return context.get_dummy_value()
    return types.void(source, source_byte, target, target_byte), codegen


@intrinsic
def sfence(typingctx):
    def codegen(context, builder, signature, args):
        builder.call(builder.module.declare_intrinsic("llvm.x86.sse.sfence", fnty=ir.FunctionType(ir.VoidType(), [])), [])
        return context.get_dummy_value()
    return types.void(), codegen


@numba.njit
def stream(values, target, first):
    count, size = values.size, values.itemsize
    start = address(target) + np.uint64(first * size)
    head = min(count, int((LINE - start % LINE) % LINE) // size)
    for i in range(head):
        target[first + i] = values[i]
    lines = (count - head) * size // LINE
    for j in range(lines):
        store_line(values, head * size + j * LINE, target, (first + head) * size + j * LINE)
    for i in range(head + lines * LINE // size, count):
        target[first + i] = values[i]
    sfence()


@numba.njit(parallel=True)
def by_group_streamed(rows, num_groups, weight, bias, eps):
    total, size = rows.shape
    cpg = weight.shape[0] // num_groups
    positions = size // cpg
    out = np.empty_like(rows)
    for g in numba.prange(total):
        count, mean, m2 = k.group_moments(rows[g], 0, size)
        scale, shift = k.coefficients(weight, bias, (g % num_groups) * cpg, cpg, mean, k.rstd_of(count, m2, eps), rows)
        scratch = np.empty(min(k.CHUNK, size), rows.dtype)
        for at in range(0, size, k.CHUNK):
            n = min(k.CHUNK, size - at)
            k._scale_shift(rows[g][at:at + n], scratch[:n], scale, shift, positions, at)
            stream(scratch[:n], out[g], at)
    return out


def main():
    pin_allocator()
    rng = np.random.default_rng(0)
    for shape, groups in (((16, 64, 256, 256), 8), ((1, 128, 512, 512), 32), ((8, 512, 32, 32), 32)):
        x = rng.standard_normal(shape, dtype=np.float32)
        w, b = rng.random(shape[1]), rng.random(shape[1])
        rows = x.reshape(shape[0] * groups, -1)
        target = np.empty_like(rows)
        assert np.array_equal(by_group_streamed(rows, groups, w, b, 1e-5), k.group_norm_by_group(rows, groups, w, b, 1e-5)[0])
        variants = {"streamed": lambda: by_group_streamed(rows, groups, w, b, 1e-5),
                    "plain": lambda: k.group_norm_by_group(rows, groups, w, b, 1e-5),
                    "np.copyto": lambda: np.copyto(target, rows)}
        times = {name: [] for name in variants}
        for _ in range(21):
            for name, run in variants.items():
                start = time.perf_counter()
                run()
                times[name].append(time.perf_counter() - start)
        print(shape, groups, "  ".join(f"{name} {np.median(t) * 1e3:.2f} ms ({2 * x.nbytes / np.median(t) / 1e9:.1f} GB/s)"
                                        for name, t in times.items()))


main()
