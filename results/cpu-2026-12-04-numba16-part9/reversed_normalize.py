"""Tried and dropped (part 9): the channels-last normalize run in the opposite order to
the statistics pass, so its first reads find the end of x that the statistics left in
L3 (``fwd-rev``; ``rev-fwd`` the other way round), against the kernel, each call after a
64 MiB read. Asserts the same bits. (The 16-bit variant did not compile as written: both
row functions are typed in one kernel; only float32 1x128x512x512 was measured.) Run
from the repo root:

    python results/cpu-2026-12-04-numba16-part9/reversed_normalize.py [seconds]

Measured at a2047b5's kernels: ``reversed-normalize.txt``.
"""
import sys
sys.path.insert(0, "results/cpu-2026-12-04-numba16-part8")
import numba, numpy as np, torch
from _interleaved import race
from backends import _numba_cpu_kernels as K
import ml_dtypes

def make(reverse_stats):
  @numba.njit(parallel=True)
  def cl(x, num_groups, weight, bias, eps, stream, threads, bfloat, half):
    samples, positions, channels = x.shape
    block, blocks, wave = K._wave_plan(x, threads)
    partial = np.zeros((wave * blocks, num_groups, 3), np.float64)
    stats = np.empty((samples * num_groups, 2), np.float64)
    out = np.empty_like(x)
    for first in range(0, samples, wave):
        count = min(wave, samples - first)
        total = count * blocks
        for t in numba.prange(total):
            task = total - 1 - t if reverse_stats else t
            n, p0 = first + task // blocks, (task % blocks) * block
            K._block_group_moments(x[n][p0:min(p0 + block, positions)], num_groups, partial[task], bfloat, not stream)
        scale, shift = K._wave_coefficients(partial, first, count, blocks, num_groups, weight, bias, eps, stats, np.empty(0, np.float32))
        lanes = K.STREAM_LANES if half else K.LINE // 4
        scale, shift = K._wrapped(scale, lanes), K._wrapped(shift, lanes)
        for t in numba.prange(total):
            task = t if reverse_stats else total - 1 - t   # the normalize runs the other way
            n, p0 = first + task // blocks, (task % blocks) * block
            p1 = min(p0 + block, positions)
            if half:
                K._lane_rows_bits(x[n][p0:p1], out[n][p0:p1], scale[n - first], shift[n - first], bfloat, stream)
            else:
                K._stream_rows(x[n][p0:p1], out[n][p0:p1], scale[n - first], shift[n - first])
            K.stream_fence()
    return out, stats
  return cl
fwd_rev = make(False)   # stats forward, normalize backward
rev_fwd = make(True)
T = numba.get_num_threads(); torch.set_num_threads(2)
flush = np.ones(16 << 20, np.float32)  # 64 MiB
secs = float(sys.argv[1])
for shape, G, dt in [((1, 262144, 128), 32, "float32")]:
    v = np.random.default_rng(0).standard_normal(shape, dtype=np.float32)
    half = dt != "float32"
    x = v.astype(ml_dtypes.bfloat16).view(np.uint16) if half else v
    C = shape[2]; w = np.linspace(0.5, 1.5, C); b = np.linspace(-1, 1, C)
    if half:
        old = lambda: K.group_norm_half_channels_last(x, G, w, b, 1e-5, np.empty(0, np.float32), True, True, T)
    else:
        old = lambda: K.group_norm_channels_last(x, G, w, b, 1e-5, True, T)
    ref = old()
    for f in (fwd_rev, rev_fwd):
        y, s = f(x, G, w, b, 1e-5, True, T, half, half)
        assert np.array_equal(y, ref[0]) and np.array_equal(s, ref[1])
    def flushed(fn):
        def call():
            flush.sum(); fn()
        return call
    src = torch.empty(x.nbytes, dtype=torch.uint8).fill_(1); dst = torch.empty_like(src)
    calls = {"old": old, "fwd-rev": lambda: fwd_rev(x, G, w, b, 1e-5, True, T, half, half),
             "rev-fwd": lambda: rev_fwd(x, G, w, b, 1e-5, True, T, half, half), "copy": lambda: dst.copy_(src), "flush": lambda: flush.sum()}
    t = race(calls, secs)
    print(shape, dt, " ".join(f"{k} {np.median(v)*1e3:.3f}" for k, v in t.items()),
          f"| fwd-rev/old {np.median(t['fwd-rev']/t['old']):.3f} rev-fwd/old {np.median(t['rev-fwd']/t['old']):.3f} copy/old {np.median(t['copy']/t['old']):.3f} copy/fwd-rev {np.median(t['copy']/t['fwd-rev']):.3f}", flush=True)
