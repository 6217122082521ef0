"""Cross-check the harness's timer against torch.utils.benchmark (and triton's do_bench on
a GPU): the same ``F.group_norm`` call timed both ways, in one process, alternating.

    python -m harness.crosscheck [--device cpu|cuda] [--budget S]

Prints one line per case: our median device time, torch.utils.benchmark's median
(``blocked_autorange``), do_bench's median where triton and a GPU exist, and the ratios.
This is a measurement tool, not a test: it imports torch, unlike the sweep driver.
"""

from __future__ import annotations

import argparse
import statistics
import sys

CASES = ("2x320x64x64-g32-float32-contiguous-normal-s0", "2x1280x16x16-g32-float32-contiguous-normal-s0",
         "2x32x8x8-g8-float32-contiguous-normal-s0", "1x128x256x256-g32-float16-contiguous-normal-s0-eps1e-06",
         "16x64x256x256-g8-float32-contiguous-normal-s0-affine_default")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m harness.crosscheck")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--budget", type=float, default=2.0, help="seconds per method per round")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)

    import backends
    from harness.execution.timing import Session, pin_allocator
    from harness.problems.cases import Case
    from harness.problems.inputs import make

    pin_allocator()
    import torch
    import torch.utils.benchmark as benchmark

    torch_backend = backends.get("torch")
    try:
        from triton.testing import do_bench
    except ImportError:
        do_bench = None
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, device {args.device}")
    print(
        f"{'case':60} {'ours ms':>10} {'t.u.b ms':>10} {'ratio':>7}"
        + (f" {'do_bench':>10} {'ratio':>7}" if do_bench and args.device == "cuda" else "")
    )
    worst = 0.0
    for case_id in CASES:
        case = Case.from_id(case_id, device=args.device)
        host = make(case)
        x = torch_backend.from_numpy(host.x, args.device)
        w = None if host.weight is None else torch_backend.from_numpy(host.weight, args.device)
        b = None if host.bias is None else torch_backend.from_numpy(host.bias, args.device)

        def call():
            return torch.nn.functional.group_norm(x, case.num_groups, w, b, case.eps)

        theirs, triton = [], []
        session = Session(call, torch_backend, args.device).start()
        for _ in range(args.rounds):
            session.round(args.budget)
            timer = benchmark.Timer(stmt="call()", globals={"call": call}, num_threads=torch.get_num_threads())
            theirs.append(timer.blocked_autorange(min_run_time=args.budget).median)
            if do_bench and args.device == "cuda":
                triton.append(do_bench(call, rep=int(args.budget * 1000), return_mode="median") / 1e3)
        ours_median = session.measurement().median
        theirs_median = statistics.median(theirs)
        ratio = ours_median / theirs_median
        worst = max(worst, abs(ratio - 1))
        line = f"{case_id:60} {1e3 * ours_median:10.4f} {1e3 * theirs_median:10.4f} {ratio:7.3f}"
        if triton:
            line += f" {1e3 * statistics.median(triton):10.4f} {ours_median / statistics.median(triton):7.3f}"
        print(line)
    print(f"largest disagreement with torch.utils.benchmark: {100 * worst:.1f}%")
    return 0


if __name__ == "__main__":
    sys.exit(main())
