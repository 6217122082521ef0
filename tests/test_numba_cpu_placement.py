"""numba-cpu places every output half a page from its input modulo 4 KiB, and advises a large
one onto huge pages (``empty_apart`` in ``backends/kernels.py``): an output
starting a few lines past its input made the normalize's loads wait on its stores (4K
aliasing, up to 2.8x).
Through the backend, as users call it, for every kernel family that allocates an output
from its input; the values must not depend on where the input lies."""

import os
import subprocess
import sys

import numpy as np
import pytest

from conftest import require

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PAGE = 4096
QUARTERS = {1024, 2048, 3072}


@pytest.fixture(scope="module")
def backend():
    require("numba-cpu")
    import backends

    return backends.get("numba-cpu")


def _address(array):
    return np.asarray(array).__array_interface__["data"][0]


def _placed(values, offset):
    """A copy of ``values`` (its own layout) starting ``offset`` bytes past a page."""
    arena = np.empty(values.nbytes + 2 * PAGE, np.uint8)
    start = (-_address(arena)) % PAGE + offset
    order = np.argsort(values.strides)[::-1]  # the copy keeps the layout (channels-last stays channels-last)
    dense = np.ascontiguousarray(values.transpose(order))
    copy = arena[start:start + values.nbytes].view(values.dtype).reshape(dense.shape)
    copy[...] = dense
    return copy.transpose(np.argsort(order))


def _dtype(name):
    if name == "bfloat16":
        import ml_dtypes

        return ml_dtypes.bfloat16
    return np.dtype(name)


FORWARD = [  # (shape, groups, dtype, channels_last): one per kernel family
    ((2, 8, 16, 16), 4, "float32", False),  # group_norm_by_group
    ((1, 4, 32, 32), 1, "float32", False),  # group_norm_by_chunk (fewer groups than threads)
    ((2, 8, 16, 16), 4, "float64", False),
    ((2, 8, 16, 16), 4, "bfloat16", False),  # group_norm_half_by_group
    ((2, 8, 16, 16), 4, "float16", False),
    ((2, 16, 8, 8), 4, "float32", True),  # group_norm_channels_last
    ((2, 16, 8, 8), 4, "bfloat16", True),  # group_norm_half_channels_last
    ((2, 16, 8, 8), 4, "float16", True),
]
FORWARD_IDS = [f"{'x'.join(map(str, s))}-g{g}-{d}-{'channels_last' if cl else 'contiguous'}"
               for s, g, d, cl in FORWARD]


@pytest.mark.parametrize("shape, groups, dtype, channels_last", FORWARD, ids=FORWARD_IDS)
def test_forward_output_lies_half_a_page_from_x(backend, shape, groups, dtype, channels_last):
    rng = np.random.default_rng(3)
    values = rng.standard_normal(shape).astype(np.float32)
    if channels_last:
        values = np.moveaxis(np.ascontiguousarray(np.moveaxis(values, 1, -1)), -1, 1)
    values = values.astype(_dtype(dtype))
    weight, bias = (rng.standard_normal(shape[1]).astype(_dtype(dtype)) for _ in "wb")
    if dtype == "float16" and not _has_f16c():
        pytest.skip("float16 without F16C takes the widen/narrow path (its output is narrowed, not placed)")
    outputs = []
    for offset in (0, 16, 48, 80, 2064):
        x = _placed(values, offset)
        assert _address(x) % PAGE == offset and x.strides == values.strides
        y = backend.group_norm(x, groups, weight, bias, 1e-5)
        assert y.shape == x.shape and y.strides == x.strides
        assert (_address(y) - _address(x)) % PAGE == 2048, f"x at {offset} past a page"
        outputs.append(np.ascontiguousarray(y).view(np.uint8))
    for other in outputs[1:]:
        assert np.array_equal(outputs[0], other), "y depends on where x lies"


def _has_f16c():
    from backends.numba_cpu import halves

    return halves.F16C


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
@pytest.mark.parametrize("dy_from_x", [0, 2048 - 100, 2048 + 200], ids=["dy-0", "dy-just-before-half", "dy-past-half"])
def test_backward_dx_lies_clear_of_x_and_dy(backend, dtype, dy_from_x):
    from backends.numba_cpu import kernels

    rng = np.random.default_rng(4)
    shape, groups = (2, 8, 16, 16), 4
    x = _placed(rng.standard_normal(shape).astype(_dtype(dtype)), 16)
    grad_y = _placed(rng.standard_normal(shape).astype(_dtype(dtype)), (16 + dy_from_x) % PAGE)
    weight = rng.standard_normal(shape[1]).astype(_dtype(dtype))
    _, saved = backend.forward_train(x, groups, weight, None, 1e-5)
    dx, dweight, _ = backend.backward(grad_y, saved)
    from_x, from_dy = ((_address(dx) - _address(a)) % PAGE for a in (x, grad_y))
    assert from_x in QUARTERS, from_x
    assert from_dy >= kernels.CLEAR, f"dx starts {from_dy} bytes past dy"
    if dy_from_x == 2048 - 100:  # half a page from x would start dx 100 bytes past dy
        assert from_x != 2048
    reference = backend.backward(_placed(np.asarray(grad_y), 0), backend.forward_train(
        _placed(np.asarray(x), 0), groups, weight, None, 1e-5)[1])
    assert np.array_equal(np.asarray(dx).view(np.uint8), np.asarray(reference[0]).view(np.uint8))
    assert np.array_equal(dweight, reference[1])


def test_empty_apart_of_a_misaligned_array_is_a_plain_buffer():
    require("numba-cpu")
    from backends.numba_cpu import kernels

    raw = np.zeros(4 * 64 + 1, np.uint8)
    misaligned = raw[1:].view(np.float32).reshape(8, 8)
    assert _address(misaligned) % 4
    out = kernels.empty_apart(misaligned, misaligned)
    assert out.shape == (8, 8) and out.dtype == np.float32 and out.flags.c_contiguous
    assert _address(out) % 4 == 0


HUGE_PAGE_SCRIPT = """
import numpy as np
import backends

x = np.ones((1, 64, 512, 512), np.float32)  # 64 MiB: glibc maps y on its own, as in any plain script
y = backends.get("numba-cpu").group_norm(x, 32, None, None, 1e-5)
at = y.__array_interface__["data"][0] + y.nbytes // 2  # (the first page, shared with the header, is not advised)
flags = None
for line in open("/proc/self/smaps"):
    head = line.split()[0]
    if "-" in head and ":" not in head:
        low, high = (int(v, 16) for v in head.split("-"))
        inside = low <= at < high
    elif head == "VmFlags:" and inside:
        flags = line.split()[1:]
print("advised" if "hg" in flags else "not advised", float(y[0, 0, 0, 0]))
"""


@pytest.mark.skipif(not os.path.isdir("/sys/kernel/mm/transparent_hugepage"),
                    reason="no transparent huge pages (Linux)")
def test_a_large_output_is_advised_onto_huge_pages_in_a_plain_script(tmp_path):
    require("numba-cpu")
    script = tmp_path / "plain.py"
    script.write_text(HUGE_PAGE_SCRIPT)
    ran = subprocess.run(
        [sys.executable, str(script)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "PYTHONPATH": ROOT},
    )
    assert ran.returncode == 0, ran.stderr[-2000:]
    assert ran.stdout.split() == ["advised", "0.0"], ran.stdout
