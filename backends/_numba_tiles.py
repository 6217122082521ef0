"""A register tile for the numba-cpu channels-last statistics, as LLVM IR (``numba.extending.
intrinsic``).

The channels-last kernel sums each channel along the positions of a block, vectorized
along the channels. Written as a Numba loop, each row's step loads and stores the
per-channel running sums (two arrays) around one load of x: the loop runs at a quarter
of a bare read's speed. :func:`tile_sums` keeps 16 channels' running sums in registers
over :data:`TILE_ROWS` rows (straight-line code, no loop to carry vectors across) and
touches the float64 sums once per tile, with the arithmetic of the loop it replaces in
the same order (each channel's ``d = x - k`` added row after row in float32, ``d * d``
contractible into an FMA as there, then the tile's sums added to the float64 ones).

Editing this file: as for ``_numba_halves.py`` (see its last paragraph), delete the
kernels' disk cache, which is keyed on the kernels file's contents only (the backend's
``source_hash`` covers this file).
"""

from llvmlite import ir
from numba import types
from numba.extending import intrinsic

TILE_ROWS = 16  # rows a tile sums in float32 before its sums go to float64 (the kernels' ROWS)
LANES = 16  # channels of a tile: one 512-bit vector of float32 (two of float64)


def _vector_at(context, builder, array_type, array, at, lanes, element):
    """A pointer to ``lanes`` elements of ``array`` from flat index ``at``, as a vector."""
    data = context.make_array(array_type)(context, builder, array).data
    return builder.bitcast(builder.gep(data, [at]), ir.VectorType(element, lanes).as_pointer())


@intrinsic
def tile_sums(typingctx, block, at, stride, k, c, s1, s2):
    """For the 16 channels ``c .. c + 15`` and the 16 rows of ``block`` (float32 or
    float64, C-contiguous; ``k`` of its dtype) starting at flat index ``at``, rows
    ``stride`` elements apart: with ``d = x - k[c]`` summed row after row in x's
    precision, ``s1[c:c + 16] += sum(d)`` and ``s2[c:c + 16] += sum(d * d)`` (float64)."""

    def codegen(context, builder, signature, args):
        block_t, _, _, k_t, _, s1_t, s2_t = signature.args
        block_v, at_v, stride_v, k_v, c_v, s1_v, s2_v = args
        floats, doubles = context.get_value_type(block_t.dtype), ir.DoubleType()
        centre = builder.load(_vector_at(context, builder, k_t, k_v, c_v, LANES, floats), align=4)
        total = squares = ir.Constant(ir.VectorType(floats, LANES), [0.0] * LANES)
        for row in range(TILE_ROWS):
            offset = builder.add(at_v, builder.mul(stride_v, ir.Constant(stride_v.type, row)))
            x = builder.load(_vector_at(context, builder, block_t, block_v, offset, LANES, floats), align=4)
            d = builder.fsub(x, centre)
            total = builder.fadd(total, d)
            squares = builder.fadd(squares, builder.fmul(d, d, flags=["contract"]), flags=["contract"])
        for sums_t, sums_v, value in ((s1_t, s1_v, total), (s2_t, s2_v, squares)):
            pointer = _vector_at(context, builder, sums_t, sums_v, c_v, LANES, doubles)
            wide = value if floats == doubles else builder.fpext(value, ir.VectorType(doubles, LANES))
            builder.store(builder.fadd(builder.load(pointer, align=8), wide), pointer, align=8)
        return context.get_dummy_value()

    return types.void(block, at, stride, k, c, s1, s2), codegen
