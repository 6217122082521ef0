"""numba-cpu's forward through the backend with x 0, 16, 32 or 48 bytes past a page
(its layout kept), round by round; asserts equal outputs. Run from the repo root:

    python results/cpu-2026-12-04-numba16-part9/x_alignment.py [seconds per case]

Measured at a2047b5's kernels: ``x-alignment.txt``.
"""
import sys
sys.path.insert(0, "results/cpu-2026-12-04-numba16-part8")
import numba, numpy as np, ml_dtypes
from _interleaved import race, statistics_pass
import backends as registry
nc = registry.get("numba-cpu")
def at_offset(src, off):
    raw = np.empty(src.nbytes + 4096, np.uint8)
    start = (-raw.ctypes.data) % 4096 + off
    a = raw[start:start + src.nbytes].view(src.dtype).reshape(src.shape)
    a[...] = src
    return a
secs = float(sys.argv[1])
for shape, G, dt in [((1, 512, 128, 128), 32, "bfloat16"), ((1, 512, 256, 256), 32, "bfloat16"), ((1, 128, 512, 512), 32, "float32"), ((16, 64, 256, 256), 8, "float32"), ((2, 320, 64, 64), 32, "float32"), ((8, 512, 32, 32), 32, "float32")]:
  for layout in ("channels_last", "contiguous"):
    n, c, h, w = shape
    v = np.random.default_rng(0).standard_normal((n, h, w, c), dtype=np.float32)
    if dt == "bfloat16": v = v.astype(ml_dtypes.bfloat16)
    if layout == "contiguous": v = np.ascontiguousarray(np.moveaxis(v, -1, 1))
    xs = {off: at_offset(v, off) for off in (0, 16, 32, 48)}
    if layout == "channels_last": xs = {k: np.moveaxis(a, -1, 1) for k, a in xs.items()}
    wt, bs = np.ones(c, np.float32), np.zeros(c, np.float32)
    ref = nc.group_norm(xs[0], G, wt, bs, 1e-5)
    assert all(np.array_equal(np.asarray(nc.group_norm(a, G, wt, bs, 1e-5)).astype(np.float32), np.asarray(ref).astype(np.float32)) for a in xs.values())
    t = race({off: (lambda a=a: nc.group_norm(a, G, wt, bs, 1e-5)) for off, a in xs.items()}, secs)
    base = np.median(t[0])
    print(f"{'x'.join(map(str, shape))}/{G} {dt} {layout:13}", "  ".join(f"+{k}: {np.median(v)*1e3:.3f} ms ({np.median(v)/base:.2f})" for k, v in t.items()), flush=True)
