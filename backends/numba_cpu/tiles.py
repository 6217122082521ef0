"""A register tile for the numba-cpu channels-last statistics, as LLVM IR (``numba.extending.
intrinsic``).

The channels-last kernel sums each channel along the positions of a block, vectorized
along the channels. Written as a Numba loop, each row's step loads and stores the
per-channel running sums (two arrays) around one load of x: the loop runs at a quarter
of a bare read's speed. :func:`tile_sums` keeps 16 channels' running sums in registers
over :data:`TILE_ROWS` rows (straight-line code, no loop to carry vectors across) and
touches the float64 sums once per tile, with the arithmetic of the loop it replaces in
the same order (each channel's ``d = x - k`` added row after row in x's precision, ``d * d``
rounded then added (no FMA: the loop, which sums blocks read from DRAM row by row, gives
the same bits), then the tile's sums added to the float64 ones). A
block of 16-bit bits (bfloat16, or float16 with F16C) is widened as each row's 16 lanes
are loaded (``halves``' conversions), so the 16-bit kernel needs no widened copy
of x: the same sums as the tile of the float32 values.

Editing this file: as for ``halves.py`` (see its last paragraph), delete the
kernels' disk cache, which is keyed on the kernels file's contents only (the backend's
``source_hash`` covers this file).
"""

from llvmlite import ir
from numba import types
from numba.extending import intrinsic

from .halves import F16C, from_bfloat, from_half
from .stores import vector_pointer

TILE_ROWS = 16  # rows a tile sums in float32 before its sums go to float64 (the kernels' ROWS)
LANES = 16  # channels of a tile: one 512-bit vector of float32 (two of float64)


@intrinsic
def tile_sums(typingctx, block, at, stride, k, c, s1, s2, bfloat):
    """For the 16 channels ``c .. c + 15`` and the 16 rows of ``block`` (float32 or
    float64, or 16-bit bits: uint16; C-contiguous; ``k`` of the block's float type,
    float32 for bits) starting at flat index ``at``, rows ``stride`` elements apart: with
    ``d = x - k[c]`` summed row after row in x's precision, ``s1[c:c + 16] += sum(d)`` and
    ``s2[c:c + 16] += sum(d * d)`` (float64). Bits are widened in registers as they are
    loaded, exactly: bfloat16 where ``bfloat``, else float16 (``vcvtph2ps``; only where
    :data:`halves.F16C`: the kernels never pass float16 bits otherwise); the same
    sums as the tile of their float32 values. ``bfloat`` is ignored for float blocks."""
    if isinstance(block.dtype, types.Integer) and (block.dtype.bitwidth != 16 or k.dtype != types.float32):
        return None

    def codegen(context, builder, signature, args):
        block_t, _, _, k_t, _, s1_t, s2_t, _ = signature.args
        block_v, at_v, stride_v, k_v, c_v, s1_v, s2_v, bfloat_v = args
        if not isinstance(block_t.dtype, types.Integer):
            _tile(context, builder, signature, args, None)
        elif F16C:
            with builder.if_else(bfloat_v) as (bfloat16, float16):
                with bfloat16:
                    _tile(context, builder, signature, args, from_bfloat)
                with float16:
                    _tile(context, builder, signature, args, from_half)
        else:
            _tile(context, builder, signature, args, from_bfloat)  # float16 bits never come here without F16C
        return context.get_dummy_value()

    return types.void(block, at, stride, k, c, s1, s2, bfloat), codegen


def _tile(context, builder, signature, args, widen):
    """The tile's code (see :func:`tile_sums`), the loads widened by ``widen`` if given."""
    block_t, _, _, k_t, _, s1_t, s2_t, _ = signature.args
    block_v, at_v, stride_v, k_v, c_v, s1_v, s2_v, _ = args
    floats, doubles = context.get_value_type(k_t.dtype), ir.DoubleType()
    centre = builder.load(vector_pointer(context, builder, k_t, k_v, c_v, LANES), align=4)
    total = squares = ir.Constant(ir.VectorType(floats, LANES), [0.0] * LANES)
    for row in range(TILE_ROWS):
        offset = builder.add(at_v, builder.mul(stride_v, ir.Constant(stride_v.type, row)))
        x = builder.load(vector_pointer(context, builder, block_t, block_v, offset, LANES),
                         align=block_t.dtype.bitwidth // 8)
        if widen is not None:
            x = widen(builder, x)
        d = builder.fsub(x, centre)
        total = builder.fadd(total, d)
        squares = builder.fadd(squares, builder.fmul(d, d))  # unfused, as the kernels' row loop
    for sums_t, sums_v, value in ((s1_t, s1_v, total), (s2_t, s2_v, squares)):
        pointer = vector_pointer(context, builder, sums_t, sums_v, c_v, LANES)
        wide = value if floats == doubles else builder.fpext(value, ir.VectorType(doubles, LANES))
        builder.store(builder.fadd(builder.load(pointer, align=8), wide), pointer, align=8)
