"""channels-last bfloat16 1x512x128x128/32 (x 16 MiB, y in streaming stores): numba-cpu and
torch called back to back (as the bench times them) and each call after a 96 MiB read
(x from DRAM, as in roofline_interleaved.py where torch's calls and the copy run
between numba-cpu's). Round by round, pinned allocator, 2 threads. Run from the repo root:

    python results/cpu-2026-12-04-numba16-part9/back_to_back.py [seconds]
"""

import pathlib
import sys

import ml_dtypes
import numpy as np
import torch

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "cpu-2026-12-04-numba16-part8"))
from _interleaved import race  # noqa: E402  (the repo on the path, the allocator pinned)

import backends  # noqa: E402

torch.set_num_threads(2)
numba_cpu = backends.get("numba-cpu")
seconds = float(sys.argv[1]) if len(sys.argv) > 1 else 10.0
flush = np.ones(24 << 20, np.float32)
x = torch.randn(1, 512, 128, 128).to(torch.bfloat16).contiguous(memory_format=torch.channels_last)
array = np.moveaxis(x.permute(0, 2, 3, 1).view(torch.int16).numpy().view(ml_dtypes.bfloat16), -1, 1)
w = np.ones(512, ml_dtypes.bfloat16)
b = np.zeros(512, ml_dtypes.bfloat16)
print(f"numba-cpu {numba_cpu.version()}, torch {torch.__version__}; median ms over {seconds:.0f} s each")
for label, between in (("back to back", None), ("after a 96 MiB read", flush.sum)):
    for name, call in (("numba-cpu", lambda: numba_cpu.group_norm(array, 32, w, b, 1e-6)),
                       ("torch", lambda: torch.nn.functional.group_norm(x, 32, None, None, 1e-6))):
        calls = {"call": call} if between is None else {"read": between, "call": call}
        times = race(calls, seconds)
        print(f"  {label:20} {name:9} {np.median(times['call']) * 1e3:.3f}", flush=True)
