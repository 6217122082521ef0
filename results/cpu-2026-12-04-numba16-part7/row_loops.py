"""Part 7's two row-loop measurements, the kernels' helpers against the loops they
replaced (written out here, as they were), on 16-bit bits below 0x4000, pinned
allocator, 2 threads, minimum over 5 rounds of the median of 0.4 s of calls. Run from the
repo root:

    python results/cpu-2026-12-04-numba16-part7/row_loops.py

* channels-last rows: ``_lane_rows_bits`` (32 lanes a call, ordinary stores) against
  the loop along each row of channels that LLVM vectorizes (part 6's
  ``_affine_rows_bits``), blocks of P/8 rows, (P, C) as in 2x320x64x64 (a sample),
  1x512x128x128 and half of it;
* contiguous planes: ``_affine_bits_plain`` (32 lanes a step, then 8) against part 6's
  (8 lanes a step, copied here), planes of 256, 1024 and 4096 elements, single thread,
  in cache;
* the backward's dx on such planes: ``_gradient_bits_plain`` (bfloat16 32 lanes a step,
  float16 8) against part 6's (8 lanes a step, copied here).

Both say whether the outputs are the same bits."""

import pathlib
import sys

import numba
import numpy as np

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[2]))
from backends import _numba_cpu_kernels as K  # noqa: E402
from backends import _numba_halves as H  # noqa: E402
from harness.timing import pin_allocator  # noqa: E402

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "cpu-2026-12-04-numba16-part6"))
from _bfloat_native import median_ms  # noqa: E402  (part 6's timing helper)


@numba.njit(fastmath={"contract"})
def _row_by_row(source, target, scale, shift, bfloat):
    """Part 6's ``_affine_rows_bits`` (its F16C and bfloat16 branches)."""
    channels = scale.shape[0]
    for p in range(source.shape[0]):
        row, into = source[p], target[p]
        if bfloat:
            for j in range(channels):
                into[j] = H.bfloat_of(H.bfloat_value(row[j]) * scale[j] + shift[j])
        else:
            for j in range(channels):
                into[j] = H.half_of(H.half_value(row[j]) * scale[j] + shift[j])


@numba.njit(parallel=True)
def rows_old(x, out, scale, shift, block, bfloat):
    for t in numba.prange(x.shape[0] // block):
        _row_by_row(x[t * block:(t + 1) * block], out[t * block:(t + 1) * block], scale, shift, bfloat)


@numba.njit(parallel=True)
def rows_new(x, out, scale, shift, block, bfloat):
    for t in numba.prange(x.shape[0] // block):
        K._lane_rows_bits(x[t * block:(t + 1) * block], out[t * block:(t + 1) * block], scale, shift, bfloat, False)


@numba.njit(inline="always")
def _affine_bits_plain_part6(source, bits, first, stop, scale, shift, bfloat):
    """Part 6's ``_affine_bits_plain`` (8 lanes a step), as it was."""
    whole = first + (stop - first) // 8 * 8
    if bfloat:
        for i in range(first, whole, 8):
            H._affine_bfloat_bits8(source, i, bits, i, scale, shift)
    elif H.F16C:
        for i in range(first, whole, 8):
            H._affine_half_bits8(source, i, bits, i, scale, shift)
    if whole < stop:
        H._affine_bits_padded(source, bits, whole, stop, scale, shift, bfloat)


@numba.njit(inline="always")
def _gradient_bits_plain_part6(x, dy, bits, first, stop, r_, w_, a_, beta_, m_, delta_, bfloat):
    """Part 6's ``_gradient_bits_plain`` (8 lanes a step), as it was."""
    whole = first + (stop - first) // 8 * 8
    if bfloat:
        for i in range(first, whole, 8):
            H._gradient_bfloat8(x, dy, i, bits, r_, w_, a_, beta_, m_, delta_)
    elif H.F16C:
        for i in range(first, whole, 8):
            H._gradient_half8(x, dy, i, bits, r_, w_, a_, beta_, m_, delta_)
    if whole < stop:
        H._gradient_bits_padded(x, dy, bits, whole, stop, r_, w_, a_, beta_, m_, delta_, bfloat)


@numba.njit
def planes_old(source, target, planes, n, bfloat):
    for p in range(planes):
        _affine_bits_plain_part6(source[p * n:(p + 1) * n], target[p * n:(p + 1) * n], 0, n, np.float32(1.3),
                                 np.float32(0.2), bfloat)


@numba.njit
def dx_old(x, dy, target, planes, n, bfloat):
    for p in range(planes):
        _gradient_bits_plain_part6(x[p * n:(p + 1) * n], dy[p * n:(p + 1) * n], target[p * n:(p + 1) * n], 0, n,
                                   np.float32(0.9), np.float32(1.1), np.float32(0.01), np.float32(-0.02),
                                   np.float32(0.03), np.float32(0.001), bfloat)


@numba.njit
def dx_new(x, dy, target, planes, n, bfloat):
    for p in range(planes):
        H._gradient_bits_plain(x[p * n:(p + 1) * n], dy[p * n:(p + 1) * n], target[p * n:(p + 1) * n], 0, n,
                               np.float32(0.9), np.float32(1.1), np.float32(0.01), np.float32(-0.02),
                               np.float32(0.03), np.float32(0.001), bfloat)


@numba.njit
def planes_new(source, target, planes, n, bfloat):
    for p in range(planes):
        H._affine_bits_plain(source[p * n:(p + 1) * n], target[p * n:(p + 1) * n], 0, n, np.float32(1.3),
                             np.float32(0.2), bfloat)


def bits(rng, *shape):
    values = rng.standard_normal(shape).astype(np.float32)
    return (values.view(np.uint32) >> 16).astype(np.uint16) & np.uint16(0x3FFF)


def compare(label, old, new, outputs):
    best = {"old": [], "new": []}
    for _ in range(5):
        best["old"].append(median_ms(old, 0.4))
        best["new"].append(median_ms(new, 0.4))
    same = "same bits" if (outputs[0] == outputs[1]).all() else "DIFFERENT BITS"
    print(f"{label:32s} old {min(best['old']):.4f} ms  new {min(best['new']):.4f} ms  "
          f"new/old {min(best['new']) / min(best['old']):.3f}  {same}", flush=True)


if __name__ == "__main__" and H.F16C:
    pin_allocator()
    rng = np.random.default_rng(0)
    for P, C in [(8192, 320), (8192, 512), (16384, 512)]:
        for bfloat in (True, False):
            x = bits(rng, P, C)
            scale, shift = rng.standard_normal((2, C)).astype(np.float32)
            wide_scale = K._wrapped(scale[None], H.STREAM_LANES)[0]
            wide_shift = K._wrapped(shift[None], H.STREAM_LANES)[0]
            outputs = np.empty_like(x), np.empty_like(x)
            compare(f"rows {P}x{C} {'bfloat16' if bfloat else 'float16'}",
                    lambda: rows_old(x, outputs[0], scale, shift, P // 8, bfloat),
                    lambda: rows_new(x, outputs[1], wide_scale, wide_shift, P // 8, bfloat), outputs)
    numba.set_num_threads(1)
    for n, planes in [(256, 640), (1024, 160), (4096, 40)]:
        for bfloat in (True, False):
            x = bits(rng, n * planes)
            outputs = np.empty_like(x), np.empty_like(x)
            compare(f"planes of {n} {'bfloat16' if bfloat else 'float16'}",
                    lambda: planes_old(x, outputs[0], planes, n, bfloat),
                    lambda: planes_new(x, outputs[1], planes, n, bfloat), outputs)
    for n, planes in [(256, 640), (1024, 160), (4096, 40)]:
        for bfloat in (True, False):
            x, dy = bits(rng, n * planes), bits(rng, n * planes)
            outputs = np.empty_like(x), np.empty_like(x)
            compare(f"dx planes of {n} {'bfloat16' if bfloat else 'float16'}",
                    lambda: dx_old(x, dy, outputs[0], planes, n, bfloat),
                    lambda: dx_new(x, dy, outputs[1], planes, n, bfloat), outputs)
elif __name__ == "__main__":
    print("this CPU has no F16C: the kernels' float16 rows are scalar code; nothing to compare")
