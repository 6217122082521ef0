"""Does x or y on 2 MiB pages (transparent huge pages: this host's THP is
``madvise``) change numba-cpu's passes? x and y in mmap buffers advised MADV_HUGEPAGE or
MADV_NOHUGEPAGE, 2 MiB aligned; the statistics pass and the normalize pass (y given),
round by round. Run from the repo root:

    python results/cpu-2026-12-04-numba16-part9/huge_pages.py

Measured at a2047b5's kernels: ``huge-pages.txt``. (The buffers are page aligned, so y - x
is a multiple of 4 KiB here: no aliasing.)
"""
import sys, mmap, re
sys.path.insert(0, "results/cpu-2026-12-04-numba16-part8")
import numba, numpy as np, torch, ml_dtypes
from _interleaved import race, statistics_pass
from backends import _numba_cpu_kernels as K
torch.set_num_threads(2); T = numba.get_num_threads()
stats = statistics_pass(K)
def buffer(nbytes, huge):
    m = mmap.mmap(-1, nbytes + (2 << 20))
    m.madvise(mmap.MADV_HUGEPAGE if huge else mmap.MADV_NOHUGEPAGE)
    raw = np.frombuffer(m, np.uint8)
    off = (-raw.ctypes.data) % (2 << 20)
    return raw[off:off + nbytes], m
@numba.njit(parallel=True)
def normalize(x, out, scale, shift, half, threads):
    samples, positions, channels = x.shape
    block, blocks, wave = K._wave_plan(x, threads)
    for task in numba.prange(samples * blocks):
        n, p0 = task // blocks, (task % blocks) * block
        p1 = min(p0 + block, positions)
        K._lane_rows_bits(x[n][p0:p1], out[n][p0:p1], scale[n], shift[n], True, True); K.stream_fence()
@numba.njit(parallel=True)
def normalize_f(x, out, scale, shift, threads):
    samples, positions, channels = x.shape
    block, blocks, wave = K._wave_plan(x, threads)
    for task in numba.prange(samples * blocks):
        n, p0 = task // blocks, (task % blocks) * block
        p1 = min(p0 + block, positions)
        K._stream_rows(x[n][p0:p1], out[n][p0:p1], scale[n], shift[n]); K.stream_fence()
keep = []
for shape, G, dt in [((1, 16384, 512), 32, "bfloat16"), ((1, 65536, 512), 32, "bfloat16"), ((1, 262144, 128), 32, "float32")]:
    v = np.random.default_rng(0).standard_normal(shape, dtype=np.float32)
    src = v.astype(ml_dtypes.bfloat16).view(np.uint16) if dt == "bfloat16" else v
    arrs = {}
    for name, huge in (("x-2M", True), ("x-4K", False), ("y-2M", True), ("y-4K", False)):
        raw, m = buffer(src.nbytes, huge); keep.append(m)
        arr = raw.view(src.dtype).reshape(shape); arr[...] = src if name[0] == "x" else 0
        arrs[name] = arr
    C = shape[2]; lanes = 32 if dt == "bfloat16" else 16
    sc = np.ones((1, C + lanes), np.float32); sh = np.zeros_like(sc)
    calls = {}
    for xn in ("x-2M", "x-4K"):
        calls[f"stats {xn}"] = (lambda xn=xn: stats(arrs[xn], G, dt == "bfloat16", True, T))
        for yn in ("y-2M", "y-4K"):
            if dt == "bfloat16":
                calls[f"norm {xn} {yn}"] = (lambda xn=xn, yn=yn: normalize(arrs[xn], arrs[yn], sc, sh, True, T))
            else:
                calls[f"norm {xn} {yn}"] = (lambda xn=xn, yn=yn: normalize_f(arrs[xn], arrs[yn], sc, sh, T))
    r = race(calls, 10)
    print(shape, dt, " | ".join(f"{k} {np.median(v)*1e3:.3f}" for k, v in r.items()), flush=True)
print("AnonHugePages kB", sum(int(m) for m in re.findall(r"AnonHugePages:\s+(\d+)", open("/proc/self/smaps").read())))
