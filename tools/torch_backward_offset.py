"""torch's CPU GroupNorm backward (contiguous float32) against numba-cpu's as a group's
|mean|/std grows: the largest grad_x error relative to the largest |grad_x| of the float64
truth, for groups of M elements, 8 x 4 groups, x = offset + N(0, 1), grad_y N(0, 1), over
several draws. torch's error grows with |mean|/std (its channel sums are uncentred);
numba-cpu's centred backward stays at float32 roundoff.

    python -m tools.torch_backward_offset [--draws K] [--sizes 3,64,4096] [--offsets 1e2,1e3,1e4]
"""

from __future__ import annotations

import argparse
import sys


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.torch_backward_offset",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--draws", type=int, default=20, help="draws per (size, offset) (default 20)")
    parser.add_argument("--sizes", default="3,64,4096", help="elements per group, comma-separated")
    parser.add_argument("--offsets", default="1e2,1e3,1e4", help="|mean|/std values, comma-separated")
    args = parser.parse_args(argv)

    import numpy as np
    import torch

    import backends

    numba_cpu = backends.get("numba-cpu")
    rng = np.random.default_rng(0)
    print(f"torch {torch.__version__}, numba-cpu {numba_cpu.version()}")
    for size in (int(s) for s in args.sizes.split(",")):
        for offset in (float(s) for s in args.offsets.split(",")):
            errors_torch, errors_numba = [], []
            for _ in range(args.draws):
                x = (offset + rng.standard_normal((8, 4, size))).astype(np.float32)
                gy = rng.standard_normal((8, 4, size)).astype(np.float32)
                tensor = torch.tensor(x, requires_grad=True)
                torch.nn.functional.group_norm(tensor, 4, None, None, 1e-5).backward(torch.tensor(gy))
                _, saved = numba_cpu.forward_train(x, 4, None, None, 1e-5)
                dx_numba = numba_cpu.backward(gy, saved)[0]
                x64, g = x.astype(np.float64), gy.astype(np.float64)
                mean = x64.mean(-1, keepdims=True)
                rstd = 1 / np.sqrt(x64.var(-1, keepdims=True) + 1e-5)
                xhat = (x64 - mean) * rstd
                dx = rstd * (g - g.mean(-1, keepdims=True) - xhat * (g * xhat).mean(-1, keepdims=True))
                scale = np.abs(dx).max()
                errors_torch.append(np.abs(tensor.grad.numpy() - dx).max() / scale)
                errors_numba.append(np.abs(dx_numba - dx).max() / scale)
            print(f"group {size:5d} |mean|/std {offset:6.0e}: grad_x max rel error torch {max(errors_torch):.2e}  "
                  f"numba-cpu {max(errors_numba):.2e}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
