"""numba-cpu's share of the copy roofline with the copy timed beside it, call for call.

``gnbench bench`` measures the copy at the start of a sweep (and again before a large
case), so a case's "% of roofline" moves with whatever the host's memory bandwidth did in
between. Here every round times, back to back: the numba-cpu backend's call (its own
``group_norm`` on the case's memory, allocating y, as the harness's worker calls it),
torch's GroupNorm on the same memory, and torch's copy of a buffer of x's size into a
preallocated one (the bench's roofline kernel: x's bytes read and written once, the
forward's 2·E·b). Per round, copy time / kernel time is the share of the roofline; printed
are the median and quartiles of those per-round ratios, and of torch / numba-cpu.

    python -m tools.roofline [--seconds S] [--case SHAPE/GROUPS:DTYPE:LAYOUT ...]
"""

from __future__ import annotations

import argparse
import sys

CASES = ["16x64x256x256/8:float32:channels_last", "1x128x512x512/32:float32:channels_last",
         "16x64x256x256/8:float32:contiguous", "1x128x512x512/32:float32:contiguous",
         "1x512x256x256/32:bfloat16:channels_last", "1x512x256x256/32:float16:channels_last",
         "1x512x128x128/32:bfloat16:channels_last"]


def _parse(spec: str):
    try:
        shape_groups, dtype, layout = spec.split(":")
        shape, groups = shape_groups.split("/")
        return tuple(int(s) for s in shape.split("x")), int(groups), dtype, layout
    except ValueError:
        raise SystemExit(f"--case {spec!r}: expected SHAPE/GROUPS:DTYPE:LAYOUT, e.g. "
                         "16x64x256x256/8:float32:channels_last") from None


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.roofline", description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=20.0, help="timing seconds per case (default 20)")
    parser.add_argument("--case", action="append", metavar="SHAPE/GROUPS:DTYPE:LAYOUT",
                        help="a case (repeatable; default: the large float32 and 16-bit shapes)")
    parser.add_argument("--threads", type=int, default=2, help="torch's threads (default 2)")
    args = parser.parse_args(argv)

    import ml_dtypes
    import numpy as np
    import torch

    import backends
    from harness.execution.timing import pin_allocator

    from .interleave import quartiles, race

    pin_allocator()
    torch.set_num_threads(args.threads)
    numba_cpu = backends.get("numba-cpu")
    rng = np.random.default_rng(0)
    print(f"numba-cpu {numba_cpu.version()}, torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"{args.seconds:.0f} s a case")
    print("case                                        numba ms  torch ms   copy ms   copy/numba (IQR)        "
          "copy/torch             torch/numba")
    for shape, groups, dtype, layout in map(_parse, args.case or CASES):
        memory = torch.contiguous_format if layout == "contiguous" else torch.channels_last
        x = torch.from_numpy(rng.standard_normal(shape, dtype=np.float32)).to(getattr(torch, dtype))
        x = x.contiguous(memory_format=memory)
        weight = torch.from_numpy(rng.standard_normal(shape[1])).to(x.dtype)
        bias = torch.from_numpy(rng.standard_normal(shape[1])).to(x.dtype)
        source = torch.empty(x.nbytes, dtype=torch.uint8).fill_(1)
        target = torch.empty_like(source)

        def as_numpy(tensor):  # bfloat16 has no NumPy dtype in torch: hand over the bits
            if dtype == "bfloat16":
                return tensor.view(torch.int16).numpy().view(ml_dtypes.bfloat16)
            return tensor.numpy()

        # the same memory, viewed with the tensor's strides
        array = np.moveaxis(as_numpy(x.permute(0, 2, 3, 1)), -1, 1) if layout == "channels_last" else as_numpy(x)
        w, b = as_numpy(weight), as_numpy(bias)
        calls = {"numba": lambda: numba_cpu.group_norm(array, groups, w, b, 1e-5),
                 "torch": lambda: torch.nn.functional.group_norm(x, groups, weight, bias, 1e-5),
                 "copy": lambda: target.copy_(source)}
        t = race(calls, args.seconds)
        label = f"{'x'.join(map(str, shape))}/{groups} {dtype} {layout}"
        print(f"{label:43} {np.median(t['numba']) * 1e3:8.3f}  {np.median(t['torch']) * 1e3:8.3f}  "
              f"{np.median(t['copy']) * 1e3:8.3f}   {quartiles(t['copy'] / t['numba'])}   "
              f"{quartiles(t['copy'] / t['torch'])}   {quartiles(t['torch'] / t['numba'])}   "
              f"({len(t['copy'])} rounds)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
