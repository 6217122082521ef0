"""numba-cpu's channels-last kernels at five wave sizes (wave_bytes 2-16 MiB), interleaved
in one process (pinned allocator, all threads), 12 s a case: the median ms of each and
the samples per wave. Run from anywhere: python results/cpu-2026-12-04-numba16-part10/waves.py"""
import sys, time, numpy as np, numba, ml_dtypes
import pathlib
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[2]))
from backends import _numba_cpu_kernels as K
from backends.numba_cpu_backend import stream_bytes, _half_table
from harness.timing import pin_allocator
pin_allocator()
T = numba.get_num_threads()
MiB = 1 << 20
cases = [((8,512,32,32),32,"float32"), ((2,320,64,64),32,"float32"), ((2,320,64,64),32,"bfloat16"), ((2,320,64,64),32,"float16"), ((4,320,64,64),32,"bfloat16"), ((16,64,64,64),8,"float32")]
sizes = [2*MiB, 4*MiB, 6*MiB, 8*MiB, 16*MiB]
rng = np.random.default_rng(0)
for shape, G, dt in cases:
    n, c = shape[:2]; p = int(np.prod(shape[2:]))
    x = rng.standard_normal((n, p, c)).astype(np.float32)
    w = np.ones(c); b = np.zeros(c)
    if dt == "float32":
        stream = 2 * x.nbytes >= stream_bytes()
        call = lambda s: K.group_norm_channels_last(x, G, w, b, 1e-5, stream, T, s)
    else:
        bits = x.astype(ml_dtypes.bfloat16 if dt == "bfloat16" else np.float16).view(np.uint16)
        stream = 2 * bits.nbytes >= stream_bytes()
        table = np.empty(0, np.float32) if dt == "bfloat16" else _half_table()
        call = lambda s: K.group_norm_half_channels_last(bits, G, w, b, 1e-5, table, dt == "bfloat16", stream, T, s)
    for s in sizes: call(s)
    times = {s: [] for s in sizes}
    end = time.perf_counter() + 12
    while time.perf_counter() < end:
        for s in sizes:
            t = time.perf_counter(); call(s); times[s].append(time.perf_counter() - t)
    waves = {s: K._wave_plan(x, T, s)[2] for s in sizes}
    print(f"{dt:9s} {'x'.join(map(str,shape)):14s}", "  ".join(f"{s//MiB}MiB(w{waves[s]}) {np.median(times[s])*1e3:.3f}" for s in sizes), flush=True)
