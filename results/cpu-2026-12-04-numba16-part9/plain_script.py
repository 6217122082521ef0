"""torch's GroupNorm and numba-cpu's as a plain script calls them: glibc's allocator as it
comes (not pinned), so each call's fresh output of 32-268 MB is mapped afresh and faulted
in. Median of 10 calls after one. Run from the repo root (or a worktree of another
commit, to compare):

    python results/cpu-2026-12-04-numba16-part9/plain_script.py
"""
import pathlib
import sys

sys.path.insert(0, str(pathlib.Path.cwd()))
import time

import numpy as np
import torch

import backends  # noqa: E402

nc = backends.get("numba-cpu")
print(f"numba-cpu {nc.version()}, torch {torch.__version__}, 2 threads, allocator not pinned")
torch.set_num_threads(2)
def med(f, n=10):
    f(); ts = []
    for _ in range(n):
        t0 = time.perf_counter(); f(); ts.append(time.perf_counter() - t0)
    return np.median(ts) * 1e3
for shape, g, cl in [((1, 128, 512, 512), 32, True), ((16, 64, 256, 256), 8, False), ((1, 512, 128, 128), 32, True)]:
    x = torch.randn(shape)
    if cl: x = x.contiguous(memory_format=torch.channels_last)
    a = x.numpy()
    print(shape, "cl" if cl else "contig", f"torch {med(lambda: torch.nn.functional.group_norm(x, g)):.2f} ms  numba-cpu {med(lambda: nc.group_norm(a, g, None, None, 1e-5)):.2f} ms")
