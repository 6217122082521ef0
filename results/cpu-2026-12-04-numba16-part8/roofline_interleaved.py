"""numba-cpu's share of the copy roofline with the copy timed beside it, call for call.

The bench measures the copy once, at the start of a sweep, so a case's "% of roofline"
moves with whatever the host's memory bandwidth did in the minutes between (runs 21 and
22 of part 7 read 78-107% on the same kernel). Here every round times, back to back: the
numba-cpu backend's call (as the harness's worker calls it: its own ``group_norm`` on the
case's memory, allocating y), torch's GroupNorm on the same memory, and torch's copy of a
buffer of x's size into a preallocated one (``copy_``, the bench's roofline kernel: x's
bytes read and written once, the forward's 2·E·b). Per round, copy time / kernel time is
the share of the roofline; the script prints the median and quartiles of those per-round
ratios, and of torch / numba. Run from the repo root:

    python results/cpu-2026-12-04-numba16-part8/roofline_interleaved.py [seconds per case]
"""

import sys

import numpy as np
import torch
from _interleaved import race  # the repo on the path, the allocator pinned

import backends as registry

torch.set_num_threads(2)
seconds = float(sys.argv[1]) if len(sys.argv) > 1 else 20.0
CASES = [((16, 64, 256, 256), 8, "float32", "channels_last"), ((1, 128, 512, 512), 32, "float32", "channels_last"),
         ((16, 64, 256, 256), 8, "float32", "contiguous"), ((1, 128, 512, 512), 32, "float32", "contiguous"),
         ((1, 512, 256, 256), 32, "bfloat16", "channels_last"), ((1, 512, 256, 256), 32, "float16", "channels_last"),
         ((1, 512, 128, 128), 32, "bfloat16", "channels_last")]
numba_cpu = registry.get("numba-cpu")
rng = np.random.default_rng(0)


def quartiles(values):
    q1, q2, q3 = np.percentile(values, [25, 50, 75])
    return f"{q2:6.3f} [{q1:.3f}-{q3:.3f}]"


print(f"numba-cpu {numba_cpu.version()}, torch {torch.__version__}, {torch.get_num_threads()} threads, "
      f"{seconds:.0f} s a case")
print("case                                        numba ms  torch ms   copy ms   copy/numba (IQR)        "
      "copy/torch             torch/numba")
for shape, groups, dtype, layout in CASES:
    memory = torch.contiguous_format if layout == "contiguous" else torch.channels_last
    x = torch.from_numpy(rng.standard_normal(shape, dtype=np.float32)).to(getattr(torch, dtype))
    x = x.contiguous(memory_format=memory)
    weight = torch.from_numpy(rng.standard_normal(shape[1])).to(x.dtype)
    bias = torch.from_numpy(rng.standard_normal(shape[1])).to(x.dtype)
    source = torch.empty(x.nbytes, dtype=torch.uint8).fill_(1)
    target = torch.empty_like(source)
    # numba-cpu takes numpy arrays; bfloat16 has no numpy dtype in torch, so hand over the bits
    if dtype == "bfloat16":
        import ml_dtypes

        as_numpy = lambda t: t.view(torch.int16).numpy().view(ml_dtypes.bfloat16)  # noqa: E731
    else:
        as_numpy = lambda t: t.numpy()  # noqa: E731
    if layout == "channels_last":  # the same memory, viewed with the tensor's strides
        array = np.moveaxis(as_numpy(x.permute(0, 2, 3, 1)), -1, 1)
    else:
        array = as_numpy(x)
    w, b = as_numpy(weight), as_numpy(bias)
    calls = {"numba": lambda: numba_cpu.group_norm(array, groups, w, b, 1e-5),
             "torch": lambda: torch.nn.functional.group_norm(x, groups, weight, bias, 1e-5),
             "copy": lambda: target.copy_(source)}
    t = race(calls, seconds)
    label = f"{'x'.join(map(str, shape))}/{groups} {dtype} {layout}"
    print(f"{label:43} {np.median(t['numba']) * 1e3:8.3f}  {np.median(t['torch']) * 1e3:8.3f}  "
          f"{np.median(t['copy']) * 1e3:8.3f}   {quartiles(t['copy'] / t['numba'])}   "
          f"{quartiles(t['copy'] / t['torch'])}   {quartiles(t['torch'] / t['numba'])}   ({len(t['copy'])} rounds)")
