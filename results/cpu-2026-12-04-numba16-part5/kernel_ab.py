"""Interleaved A/B of numba-cpu's kernels at a git commit against the working tree's, in
one process (pinned allocator, 2 threads, medians). Run from the repo root:

    python results/cpu-2026-12-04-numba16-part5/kernel_ab.py 05a468c [seconds per case] [small|channels_last]

(``small``, added in part 7: only 16-bit cases with planes of 64 and 256 elements;
``channels_last``, added in part 8: only the channels-last cases, float16 1x512x256x256
among them.)

The commit's ``backends/_numba_*.py`` kernel files (CPU) are extracted into a temporary
package and compiled beside the current ones. (Part 5's copy of part 3's script: it
also extracts ``_numba_tiles.py`` / ``_numba_stores.py``, passes ``stream`` as the backend
does to kernels that take it, and times float32 backward cases.) Each case calls the kernel
as the backend does (forward: ``group_norm_by_group`` / ``group_norm_half_by_group`` on
raw bits; 16-bit backward: ``group_norm_backward_half_by_group`` where it exists, else
the separate passes the backend made before it: widen x and dy, the float32 backward,
narrow dx). It also says whether both give the same bits. Channels-last cases (added in part 4) run
each commit's channels-last path, with torch's channels-last GroupNorm timed alongside."""

import pathlib
import subprocess
import sys
import tempfile
import time

import ml_dtypes
import numpy as np

ROOT = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
from backends import _numba_cpu_kernels as NEW  # noqa: E402
from backends.numba_cpu_backend import stream_bytes  # noqa: E402
from harness.timing import pin_allocator  # noqa: E402

pin_allocator()
ref = sys.argv[1] if len(sys.argv) > 1 else "HEAD"
seconds = float(sys.argv[2]) if len(sys.argv) > 2 else 3.0
package = pathlib.Path(tempfile.mkdtemp()) / "kernels_at_ref"
package.mkdir()
(package / "__init__.py").write_text("")
listing = subprocess.run(["git", "ls-tree", "--name-only", ref, "backends/"], cwd=ROOT, check=True,
                         capture_output=True, text=True).stdout.split()
for path in listing:
    name = path.split("/")[-1]
    if name.startswith("_numba_") and "cuda" not in name:
        (package / name).write_text(subprocess.run(["git", "show", f"{ref}:{path}"], cwd=ROOT, check=True,
                                                   capture_output=True, text=True).stdout)
sys.path.insert(0, str(package.parent))
from kernels_at_ref import _numba_cpu_kernels as OLD  # noqa: E402

TABLE = np.arange(1 << 16, dtype=np.uint16).view(np.float16).astype(np.float32)
FORWARD = [((16, 64, 256, 256), 8, "float32"), ((1, 128, 512, 512), 32, "float32"), ((8, 512, 32, 32), 32, "float32"),
           ((2, 320, 64, 64), 32, "float32"), ((1, 512, 128, 128), 32, "bfloat16"), ((2, 320, 64, 64), 32, "bfloat16"),
           ((1, 512, 128, 128), 32, "float16"), ((2, 320, 64, 64), 32, "float16"), ((2, 1280, 32, 32), 32, "float16"),
           ((1, 512, 256, 256), 32, "float16"), ((1, 512, 256, 256), 32, "bfloat16")]
CHANNELS_LAST = [((16, 64, 256, 256), 8, "float32"), ((1, 128, 512, 512), 32, "float32"),
                 ((8, 512, 32, 32), 32, "float32"), ((2, 320, 64, 64), 32, "float32"),
                 ((1, 512, 128, 128), 32, "bfloat16"), ((2, 320, 64, 64), 32, "float16"),
                 ((2, 320, 64, 64), 32, "bfloat16"), ((1, 512, 256, 256), 32, "bfloat16")]  # the last two: part 6
BACKWARD = [((16, 64, 256, 256), 8, "float32"), ((2, 320, 64, 64), 32, "float32"), ((2, 320, 64, 64), 32, "float16"), ((2, 320, 64, 64), 32, "bfloat16"), ((1, 512, 128, 128), 32, "bfloat16"),
            ((2, 640, 32, 32), 32, "float16"), ((16, 64, 256, 256), 8, "bfloat16")]
if sys.argv[3:] == ["small"]:  # part 7: 16-bit planes of 64 and 256 elements only
    FORWARD = [((2, 1280, side, side), 32, dtype) for side in (8, 16) for dtype in ("float16", "bfloat16")]
    BACKWARD = [((2, 640, side, side), 32, dtype) for side in (8, 16) for dtype in ("float16", "bfloat16")]
    CHANNELS_LAST = []
if sys.argv[3:] == ["channels_last"]:  # part 8
    FORWARD, BACKWARD = [], []
    CHANNELS_LAST.append(((1, 512, 256, 256), 32, "float16"))


def _stream(k, arrays, x):
    """The backend's rule for kernels that take ``stream`` (an empty tuple for older ones)."""
    return (arrays * x.nbytes >= stream_bytes(),) if hasattr(k, "stream_fence") else ()


def _extra(kernel, rows):
    """The trailing arguments a channels-last kernel takes at that commit, as the backend
    passes them: ``stream`` (x and y reach the cache's size), ``tiles`` (its opposite,
    which the 16-bit kernel took before part 6) and ``threads``, where it has them."""
    import numba

    code = kernel.py_func.__code__
    names = code.co_varnames[:code.co_argcount]
    values = {"stream": 2 * rows.nbytes >= stream_bytes(), "tiles": 2 * rows.nbytes < stream_bytes(),
              "threads": numba.get_num_threads()}
    return tuple(values[name] for name in names if name in values)


def _forward(k, x, groups, w, b):
    if x.dtype == np.float32:
        return k.group_norm_by_group(x.reshape(x.shape[0] * groups, -1), groups, w, b, 1e-5, *_stream(k, 2, x))
    bits = x.view(np.uint16).reshape(x.shape[0] * groups, -1)
    return k.group_norm_half_by_group(bits, groups, w, b, 1e-5, TABLE, x.dtype != np.float16, *_stream(k, 2, x))


def _backward(k, x, dy, groups, w, stats):
    if x.dtype == np.float32:
        rows, grads = (a.reshape(x.shape[0] * groups, -1) for a in (x, dy))
        return k.group_norm_backward_by_group(rows, grads, groups, w, stats, *_stream(k, 3, x))
    bfloat = x.dtype != np.float16
    xbits, gbits = (a.view(np.uint16).reshape(x.shape[0] * groups, -1) for a in (x, dy))
    if hasattr(k, "group_norm_backward_half_by_group"):
        return k.group_norm_backward_half_by_group(xbits, gbits, groups, w, stats, TABLE, bfloat, *_stream(k, 3, x))
    widen = (lambda b: k.widen_bfloat(b.reshape(-1))) if bfloat else (lambda b: k.widen_half(b.reshape(-1), TABLE))
    dx, dweight, dbias = k.group_norm_backward_by_group(widen(xbits).reshape(xbits.shape),
                                                        widen(gbits).reshape(gbits.shape), groups, w, stats)
    return (k.narrow_bfloat if bfloat else k.narrow_half)(dx.reshape(-1)), dweight, dbias


def _channels_last(k, rows, groups, w, b):
    """Channels-last memory (N, P, C) as the backend runs it at that commit: the float32
    kernel, the 16-bit one where it exists, else (before it) a contiguous copy and the
    fused 16-bit kernel."""
    if rows.dtype == np.float32:
        return k.group_norm_channels_last(rows, groups, w, b, 1e-5, *_extra(k.group_norm_channels_last, rows))
    bits, bfloat = rows.view(np.uint16), rows.dtype != np.float16
    if hasattr(k, "group_norm_half_channels_last"):
        return k.group_norm_half_channels_last(bits, groups, w, b, 1e-5, TABLE, bfloat,
                                               *_extra(k.group_norm_half_channels_last, rows))
    planar = np.ascontiguousarray(np.moveaxis(bits, -1, 1)).reshape(rows.shape[0] * groups, -1)
    return k.group_norm_half_by_group(planar, groups, w, b, 1e-5, TABLE, bfloat)


def _same(a, b):
    return all(np.array_equal(np.asarray(p).reshape(-1), np.asarray(q).reshape(-1)) for p, q in zip(a, b))


def _race(calls):
    """Median seconds of each call, the calls interleaved for ``seconds``, their order
    reversed every other round (part 10: in a fixed order, old then new on the same x,
    an A/A run of identical kernels read new/old 0.89-0.95 on small cases on an AVX2
    host; ``results/cpu-2026-12-04-numba16-part10/kernel-ab-order-bias.txt``)."""
    for call in calls.values():
        call()
    times = {name: [] for name in calls}
    names = list(calls)
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        for name in names:
            start = time.perf_counter()
            calls[name]()
            times[name].append(time.perf_counter() - start)
        names.reverse()
    return {name: float(np.median(t)) for name, t in times.items()}, len(times["old"])


rng = np.random.default_rng(0)
print(f"kernels at {ref} (old) against the working tree (new)")
for shape, groups, dtype in FORWARD:
    x = rng.standard_normal(shape, dtype=np.float32).astype(ml_dtypes.bfloat16 if dtype == "bfloat16" else dtype)
    w, b = rng.standard_normal(shape[1]), rng.standard_normal(shape[1])
    medians, samples = _race({"old": lambda: _forward(OLD, x, groups, w, b), "new": lambda: _forward(NEW, x, groups, w, b)})
    same = _same(_forward(OLD, x, groups, w, b)[:1], _forward(NEW, x, groups, w, b)[:1])
    print(f"forward  {'x'.join(map(str, shape)):>15}/{groups:<2} {dtype:9} old {medians['old'] * 1e3:8.3f} ms  "
          f"new {medians['new'] * 1e3:8.3f} ms  new/old {medians['new'] / medians['old']:.3f}  ({samples} rounds, "
          f"{'same' if same else 'different'} bits)")
for shape, groups, dtype in BACKWARD:
    half = {"bfloat16": ml_dtypes.bfloat16, "float16": np.float16, "float32": np.float32}[dtype]
    x, dy = (rng.standard_normal(shape, dtype=np.float32).astype(half) for _ in range(2))
    w = rng.standard_normal(shape[1])
    stats = _forward(NEW, x, groups, w, np.zeros(shape[1]))[1]
    medians, samples = _race({"old": lambda: _backward(OLD, x, dy, groups, w, stats),
                              "new": lambda: _backward(NEW, x, dy, groups, w, stats)})
    same = _same(_backward(OLD, x, dy, groups, w, stats), _backward(NEW, x, dy, groups, w, stats))
    print(f"backward {'x'.join(map(str, shape)):>15}/{groups:<2} {dtype:9} old {medians['old'] * 1e3:8.3f} ms  "
          f"new {medians['new'] * 1e3:8.3f} ms  new/old {medians['new'] / medians['old']:.3f}  ({samples} rounds, "
          f"{'same' if same else 'different'} bits)")
for shape, groups, dtype in CHANNELS_LAST:  # torch's channels-last path alongside, for scale
    import torch

    torch.set_num_threads(2)
    values = rng.standard_normal((shape[0], *shape[2:], shape[1]), dtype=np.float32)  # (N, *, C) memory
    rows = values.astype(ml_dtypes.bfloat16 if dtype == "bfloat16" else dtype).reshape(shape[0], -1, shape[1])
    tensor = torch.from_numpy(np.moveaxis(values, -1, 1)).to(getattr(torch, dtype))  # keeps channels-last strides
    w, b = rng.standard_normal(shape[1]), rng.standard_normal(shape[1])
    medians, samples = _race({"old": lambda: _channels_last(OLD, rows, groups, w, b),
                              "new": lambda: _channels_last(NEW, rows, groups, w, b),
                              "torch": lambda: torch.nn.functional.group_norm(tensor, groups)})
    print(f"chlast   {'x'.join(map(str, shape)):>15}/{groups:<2} {dtype:9} old {medians['old'] * 1e3:8.3f} ms  "
          f"new {medians['new'] * 1e3:8.3f} ms  new/old {medians['new'] / medians['old']:.3f}  ({samples} rounds; "
          f"torch channels-last, no affine: {medians['torch'] * 1e3:.3f} ms)")
