"""numba-cpu's channels-last bfloat16 1x512x128x128/32 call on freshly allocated inputs, one
after another in one process (pinned allocator, 2 threads): the median of 100 calls of
the backend's ``group_norm`` for each new x, with the addresses of x and y, a buffer of 1-40
MiB kept alive every third step to move the heap. Run from the repo root:

    python results/cpu-2026-12-04-numba16-part8/placement.py

``placement.txt`` holds the output of the one run at 18:40 that showed two speeds; later
runs of it and of variants showed one speed (see the README).
"""

import pathlib
import sys
import time

import ml_dtypes
import numpy as np

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[2]))
import backends  # noqa: E402
from harness.timing import pin_allocator  # noqa: E402

pin_allocator()
be = backends.get("numba-cpu")
rng = np.random.default_rng(0)
w = np.ones(512, ml_dtypes.bfloat16)
keep = []
for i in range(14):
    v = rng.standard_normal((1, 128, 128, 512), dtype=np.float32).astype(ml_dtypes.bfloat16)
    x = np.moveaxis(v, -1, 1)
    y = be.group_norm(x, 32, w, w)
    ts = []
    for _ in range(100):
        s = time.perf_counter(); y = be.group_norm(x, 32, w, w); ts.append(time.perf_counter() - s)
    print(f"#{i:2} {np.median(ts)*1e3:6.3f} ms  x {x.ctypes.data:#x} y {y.ctypes.data:#x}  (y-x)%4096 {(y.ctypes.data - x.ctypes.data) % 4096}  (y-x)/MiB {(y.ctypes.data - x.ctypes.data)/2**20:+.2f}")
    if i % 3 == 0:
        keep.append(np.empty(int(rng.integers(1, 40)) << 20, np.uint8))  # shift the heap
    del y
