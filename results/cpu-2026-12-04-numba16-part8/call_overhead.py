"""Where the channels-last bfloat16 1x512x128x128/32 case loses to torch: the backend's
call against its bare kernel, in one process (pinned allocator, 2 threads), interleaved.

Part 5 to 7 saw numba-cpu near torch's time in ``kernel_ab.py`` (the bare kernel, against
torch's GroupNorm without affine) and at 0.77-0.82x of torch under the harness, and put
it down to worker against in-process timing. This script times, round after round:

- ``kernel``: the bare channels-last kernel, arguments prepared once (as kernel_ab does);
- ``check + kernel``: the same, after the argument validation every backend's
  ``group_norm`` runs first (``backends.validation.check_group_norm_args``);
- ``_forward``: the backend's body (arguments converted, the kernel, y viewed back);
- ``backend``: ``numba-cpu``'s ``group_norm`` as the harness and users call it;
- ``torch``: ``torch.nn.functional.group_norm`` with weight and bias, and torch's backend.

Then, after each call of the large kernel (which streams 32 MiB through the caches), the
time of small Python-level calls: the validation, and the whole backend on a tiny input,
against the same calls made twice in a row (warm). Run from the repo root:

    python results/cpu-2026-12-04-numba16-part8/call_overhead.py [seconds]
"""

import sys
import time

import ml_dtypes
import numba
import numpy as np
import torch
from _interleaved import race  # the repo on the path, the allocator pinned

import backends
from backends import _numba_cpu_kernels as kernels
from backends.numba_cpu_backend import stream_bytes
from backends.validation import check_group_norm_args

torch.set_num_threads(2)
seconds = float(sys.argv[1]) if len(sys.argv) > 1 else 15.0
numba_cpu, torch_backend = backends.get("numba-cpu"), backends.get("torch")
rng = np.random.default_rng(0)
shape, groups = (1, 512, 128, 128), 32
x = torch.from_numpy(rng.standard_normal(shape, dtype=np.float32)).to(torch.bfloat16)
x = x.contiguous(memory_format=torch.channels_last)
weight, bias = (torch.from_numpy(rng.standard_normal(shape[1])).to(torch.bfloat16) for _ in range(2))


def bits(t):
    return t.view(torch.int16).numpy().view(ml_dtypes.bfloat16)


array = np.moveaxis(bits(x.permute(0, 2, 3, 1)), -1, 1)  # x's memory, channels-last strides
w, b = bits(weight), bits(bias)
rows = np.moveaxis(array, 1, -1).reshape(shape[0], -1, shape[1]).view(np.uint16)
w64, b64, none = w.astype(np.float64), b.astype(np.float64), np.empty(0, np.float32)
stream, threads = 2 * array.nbytes >= stream_bytes(), numba.get_num_threads()


def kernel():
    return kernels.group_norm_half_channels_last(rows, groups, w64, b64, 1e-5, none, True, stream, threads)


calls = {
    "kernel": kernel,
    "check + kernel": lambda: (check_group_norm_args(array, groups, w, b, 1e-5), kernel()),
    "_forward": lambda: numba_cpu._forward(array, groups, w, b, 1e-5),
    "backend": lambda: numba_cpu.group_norm(array, groups, w, b, 1e-5),
    "torch F.group_norm": lambda: torch.nn.functional.group_norm(x, groups, weight, bias, 1e-5),
    "torch backend": lambda: torch_backend.group_norm(x, groups, weight, bias, 1e-5),
}
same = np.array_equal(calls["backend"]().view(np.uint16), bits(calls["torch backend"]()).view(np.uint16))
times = race(calls, seconds)
print(f"numba-cpu {numba_cpu.version()}, torch {torch.__version__}, {threads} threads; bfloat16 "
      f"{'x'.join(map(str, shape))}/{groups} channels-last, stream {stream}; numba-cpu's y "
      f"{'is' if same else 'is not'} torch's, bit for bit")
for name, values in times.items():
    print(f"  {name:20} {np.median(values) * 1e3:7.3f} ms  ({len(values)} calls)")

small = np.moveaxis(np.ones((1, 4, 4, 32), ml_dtypes.bfloat16), -1, 1)
small_w = np.ones(32, ml_dtypes.bfloat16)
probes = {"check_group_norm_args": lambda: check_group_norm_args(array, groups, w, b, 1e-5),
          "backend, tiny input": lambda: numba_cpu.group_norm(small, 8, small_w, small_w),
          "bare kernel, tiny input": lambda: kernels.group_norm_half_channels_last(
              np.moveaxis(small, 1, -1).reshape(1, -1, 32).view(np.uint16), 8, np.ones(32), np.ones(32), 1e-5,
              none, True, False, threads),
          "torch backend, tiny input": lambda: torch_backend.group_norm(
              torch.ones((1, 32, 4, 4), dtype=torch.bfloat16), 8)}
print("small calls right after the large kernel (cold) and right after themselves (warm), median of 300:")
for name, probe in probes.items():
    probe()
    result = {}
    for warm in (False, True):
        samples = []
        for _ in range(300):
            kernel()
            if warm:
                probe()
            start = time.perf_counter()
            probe()
            samples.append(time.perf_counter() - start)
        result[warm] = np.median(samples) * 1e6
    print(f"  {name:26} cold {result[False]:6.1f} us   warm {result[True]:6.1f} us")
