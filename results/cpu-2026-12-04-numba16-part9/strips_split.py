"""Part 8's strips question again (part 9): the two passes of the channels-last float32 kernel on 1x128x512x512, each timed apart within every call, at 8e3c025 (old) and with the strips (new), the two kernels alternating. Run from the repo root with the
strips kernel (994eb1e) in the working tree, as part 8's strips_ab.py says:

    git checkout 994eb1e -- backends/ && rm -f backends/__pycache__/_numba_*.nb[ic]
    python results/cpu-2026-12-04-numba16-part9/strips_split.py [seconds]
    git checkout HEAD -- backends/ && rm -f backends/__pycache__/_numba_*.nb[ic]

Output: ``strips-rerun.txt``.
"""
import pathlib as _pathlib
import sys as _sys

_sys.path.insert(0, str(_pathlib.Path(__file__).resolve().parents[1] / "cpu-2026-12-04-numba16-part8"))
import pathlib, subprocess, sys, tempfile, time
import numba, numpy as np
from _interleaved import statistics_pass
from backends import _numba_cpu_kernels as NEW
ROOT = pathlib.Path(__file__).resolve().parents[2]
package = pathlib.Path(tempfile.mkdtemp()) / "kernels_at_ref"; package.mkdir(); (package / "__init__.py").write_text("")
for name in ("_numba_cpu_kernels.py", "_numba_halves.py", "_numba_tiles.py", "_numba_stores.py"):
    (package / name).write_text(subprocess.run(["git", "show", f"8e3c025:backends/{name}"], cwd=ROOT, check=True, capture_output=True, text=True).stdout)
sys.path.insert(0, str(package.parent))
from kernels_at_ref import _numba_cpu_kernels as OLD
K = NEW
@numba.njit(parallel=True)
def normalize(x, scale, shift, threads):
    samples, positions, channels = x.shape
    block, blocks, wave = K._wave_plan(x, threads)
    out = np.empty_like(x)
    for task in numba.prange(samples * blocks):
        n, p0 = task // blocks, (task % blocks) * block
        p1 = min(p0 + block, positions)
        K._stream_rows(x[n][p0:p1], out[n][p0:p1], scale[n], shift[n]); K.stream_fence()
    return out
@numba.njit
def coeffs(partial, blocks, G, w, b, x):
    stats = np.empty((G, 2), np.float64)
    s, h = K._wave_coefficients(partial, 0, 1, blocks, G, w, b, 1e-5, stats, x)
    return K._wrapped(s, 16), K._wrapped(h, 16)
S = {"old": statistics_pass(OLD), "new": statistics_pass(NEW)}
x = np.random.default_rng(0).standard_normal((1, 262144, 128), dtype=np.float32)
w, b = np.ones(128), np.zeros(128); G = 32
blocks = K._wave_plan(x, 2)[1]
for k in S: S[k](x, G, False, True, 2)
sc, sh = coeffs(S["new"](x, G, False, True, 2), blocks, G, w, b, x); normalize(x, sc, sh, 2)
T = {k: ([], []) for k in S}
end = time.perf_counter() + float(sys.argv[1])
r = 0
while time.perf_counter() < end:
    for k in (("old", "new") if r % 2 else ("new", "old")):
        t0 = time.perf_counter(); p = S[k](x, G, False, True, 2); sc, sh = coeffs(p, blocks, G, w, b, x); t1 = time.perf_counter(); normalize(x, sc, sh, 2); t2 = time.perf_counter()
        T[k][0].append(t1 - t0); T[k][1].append(t2 - t1)
    r += 1
for k, (a, c) in T.items():
    print(k, f"stats {np.median(a)*1e3:.3f}  normalize {np.median(c)*1e3:.3f}  sum {np.median(np.add(a, c))*1e3:.3f} ms ({len(a)} rounds)")
