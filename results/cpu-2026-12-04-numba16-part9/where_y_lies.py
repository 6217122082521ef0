"""Where numba-cpu's y lies relative to x, modulo 4 KiB, in a plain script (glibc's
allocator as it comes, not pinned): x from NumPy and from torch, four shapes. Run from the
repo root (or from a worktree of another commit, to compare):

    python results/cpu-2026-12-04-numba16-part9/where_y_lies.py

With glibc's defaults a large block is mapped on its own and starts 16 bytes past a page;
a large NumPy x so lies at 16, and NRT's y (a header before the data) at 64: y - x = 48,
in the band where the normalize's loads wait on its stores (aliasing.py).
The times include each call's fresh y being faulted in (unpinned allocator)."""

import pathlib
import sys
import time

import ml_dtypes
import numpy as np
import torch

sys.path.insert(0, str(pathlib.Path.cwd()))
import backends  # noqa: E402

numba_cpu = backends.get("numba-cpu")
torch.set_num_threads(2)


def address(array):
    return np.asarray(array).__array_interface__["data"][0]


print(f"numba-cpu {numba_cpu.version()}")
for shape, dtype, layout in [((1, 512, 128, 128), "bfloat16", "channels_last"), ((1, 128, 512, 512), "float32", "channels_last"),
                             ((16, 64, 256, 256), "float32", "contiguous"), ((2, 320, 64, 64), "float32", "contiguous")]:
    for source in ("numpy", "torch"):
        n, c, h, w = shape
        if source == "numpy":
            values = np.random.default_rng(0).standard_normal((n, h, w, c), dtype=np.float32)
            if dtype == "bfloat16":
                values = values.astype(ml_dtypes.bfloat16)
            x = np.moveaxis(values, -1, 1)
            if layout == "contiguous":
                x = np.ascontiguousarray(x)
        else:
            t = torch.randn(shape).to(getattr(torch, dtype))
            if layout == "channels_last":
                t = t.contiguous(memory_format=torch.channels_last)
            x = t.view(torch.int16).numpy().view(ml_dtypes.bfloat16) if dtype == "bfloat16" else t.numpy()
        groups = 8 if c == 64 else 32
        y = numba_cpu.group_norm(x, groups, None, None, 1e-5)
        times = []
        for _ in range(10):
            start = time.perf_counter()
            y = numba_cpu.group_norm(x, groups, None, None, 1e-5)
            times.append(time.perf_counter() - start)
        print(f"{'x'.join(map(str, shape))} {dtype} {layout:13} x from {source}: x at {address(x) % 4096:4d} past a page, "
              f"(y - x) mod 4096 = {(address(y) - address(x)) % 4096:4d}; {np.median(times) * 1e3:.2f} ms a call")
