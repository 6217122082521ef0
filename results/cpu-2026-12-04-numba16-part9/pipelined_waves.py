"""Tried and dropped (part 9): the channels-last float32 kernel with its samples
pipelined, the statistics of sample k+1 in the same parallel region as the normalize of
sample k (``mix``: the two kinds of task alternate, so each thread does both; ``split``:
one half each). Timed round by round against the kernel and torch's copy; asserts the
same bits. Run from the repo root (2 threads, pinned allocator):

    python results/cpu-2026-12-04-numba16-part9/pipelined_waves.py [seconds per shape]

Measured at a2047b5's kernels (before the output placement; the scripts' y wherever the
allocator put it): ``pipelined-waves.txt``.
"""
import sys, time
sys.path.insert(0, "results/cpu-2026-12-04-numba16-part8")
import numba, numpy as np
from _interleaved import race
from backends import _numba_cpu_kernels as K

@numba.njit(parallel=True)
def pipelined(x, num_groups, weight, bias, eps, stream, threads, mix):
    """Per sample: the statistics of sample k+1 and the normalize of sample k in one prange."""
    samples, positions, channels = x.shape
    block, blocks, wave = K._wave_plan(x[:1], threads)   # one sample per step
    partial = np.zeros((2 * blocks, num_groups, 3), np.float64)
    stats = np.empty((samples * num_groups, 2), np.float64)
    out = np.empty_like(x)
    lanes = K.LINE // x.itemsize
    scale = np.empty((1, channels + lanes), x.dtype)
    shift = np.empty((1, channels + lanes), x.dtype)
    for step in range(samples + 1):
        for t in numba.prange(2 * blocks):
            if mix:
                kind, b = t % 2, t // 2
            else:
                kind, b = t // blocks, t % blocks
            p0 = b * block
            p1 = min(p0 + block, positions)
            if kind == 0:
                if step < samples:
                    K._block_group_moments(x[step][p0:p1], num_groups, partial[(step % 2) * blocks + b], False, not stream)
            else:
                if step > 0:
                    n = step - 1
                    if stream:
                        K._stream_rows(x[n][p0:p1], out[n][p0:p1], scale[0], shift[0])
                        K.stream_fence()
                    else:
                        K._affine_rows(x[n][p0:p1], out[n][p0:p1], scale[0, :channels], shift[0, :channels])
        if step < samples:
            s, h = K._wave_coefficients(partial[(step % 2) * blocks:(step % 2 + 1) * blocks], step, 1, blocks, num_groups, weight, bias, eps, stats, x)
            if stream:
                s, h = K._wrapped(s, lanes), K._wrapped(h, lanes)
                scale[:] = s
                shift[:] = h
            else:
                scale[0, :channels] = s[0]
                shift[0, :channels] = h[0]
    return out, stats

T = numba.get_num_threads()
secs = float(sys.argv[1]) if len(sys.argv) > 1 else 8
for shape, G in [((16, 65536, 64), 8), ((4, 65536, 64), 8), ((16, 16384, 128), 32), ((2, 65536, 128), 32)]:
    x = np.random.default_rng(0).standard_normal(shape, dtype=np.float32)
    C = shape[2]; w = np.linspace(0.5, 1.5, C); b = np.linspace(-1, 1, C)
    stream = 2 * x.nbytes >= (32 << 20)
    ref, rs = K.group_norm_channels_last(x, G, w, b, 1e-5, stream, T)
    for mix in (True, False):
        y, s = pipelined(x, G, w, b, 1e-5, stream, T, mix)
        assert np.array_equal(y, ref) and np.array_equal(s, rs), "bits differ"
    import torch; torch.set_num_threads(2)
    src = torch.empty(x.nbytes, dtype=torch.uint8).fill_(1); dst = torch.empty_like(src)
    calls = {"kernel": lambda: K.group_norm_channels_last(x, G, w, b, 1e-5, stream, T),
             "pipe-mix": lambda: pipelined(x, G, w, b, 1e-5, stream, T, True),
             "pipe-split": lambda: pipelined(x, G, w, b, 1e-5, stream, T, False),
             "copy": lambda: dst.copy_(src)}
    times = race(calls, secs)
    med = {k: np.median(v) for k, v in times.items()}
    print(shape, G, "stream", stream, " ".join(f"{k} {v*1e3:.2f}ms" for k, v in med.items()),
          f"| mix/kernel per round {np.median(times['pipe-mix']/times['kernel']):.3f} split/kernel {np.median(times['pipe-split']/times['kernel']):.3f}",
          f"| copy/kernel {med['copy']/med['kernel']:.2f} copy/mix {med['copy']/med['pipe-mix']:.2f}", flush=True)
