"""Capture the example output the README and the docs pages embed, into results/examples/.

Runs each command as a user would (``python -m harness ...`` from the repository root,
a fresh selection cache, the terminal COLUMNS wide), writes its standard output to the
file the docs name, and then refills the pages (``python -m harness.docs``). The whole
set takes about 40 minutes on a 2-core machine; ``--only NAME`` reruns some of them.

    python -m tools.capture_examples [--list] [--only NAME ...] [--columns N]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time

OUT = "results/examples"
SUITES = ("default", "adversarial", "sd-unet", "sd-vae", "kernelbench", "audio-1d", "volumetric-3d")
WORKLOADS = ("sd-unet", "sd-vae", "kernelbench", "audio-1d", "volumetric-3d")
# gnbench where it is installed beside this Python (the rerun lines it prints name the program), else the module
_SCRIPT = os.path.join(os.path.dirname(sys.executable), "gnbench")
HARNESS = [_SCRIPT] if os.path.exists(_SCRIPT) else [sys.executable, "-m", "harness"]

# name -> (output file, command); run in this order (select answers from the bench rows)
CAPTURES = {
    "list": ("list.txt", HARNESS + ["list"]),
    "cases": ("cases-smoke.txt", HARNESS + ["cases", "--suite", "smoke"]),
    **{f"verify-{suite}": (f"suites/verify-{suite}.txt",
                           HARNESS + ["verify", "--suite", suite, "--out", f"{OUT}/suites"]) for suite in SUITES},
    "verify-train": ("train/verify-default-train.txt",
                     HARNESS + ["verify", "--suite", "default", "--pass", "train", "--out", f"{OUT}/train"]),
    "selftest": ("selftest-default.txt", HARNESS + ["selftest"]),
    "fuzz": ("fuzz-cpu.txt", HARNESS + ["fuzz", "--backends", "torch,jax,numpy,numba-cpu", "--devices", "cpu",
                                        "--budget", "60", "--seed", "0", "--out", f"{OUT}/fuzz"]),
    "fuzz-rare": ("fuzz-rare-bug.txt", HARNESS + ["fuzz", "--plugin", "harness.selftest", "--backends",
                                                  "bug-rare-f16-tail", "--devices", "cpu", "--budget", "60",
                                                  "--seed", "0", "--out", f"{OUT}/fuzz-rare"]),
    **{f"bench-{suite}": (f"bench/bench-{suite}.txt", HARNESS + ["bench", "--suite", suite, "--out", f"{OUT}/bench"])
       for suite in WORKLOADS},
    "crosscheck": ("crosscheck-cpu.txt", [sys.executable, "-m", "harness.crosscheck"]),
    "select": ("select-2x320x64x64-float16.txt",
               HARNESS + ["select", "--shape", "2,320,64,64", "--num-groups", "32", "--dtype", "float16",
                          "--device", "cpu", "--results", f"{OUT}/bench"]),
    "dropin": ("dropin-benchmark.txt", [sys.executable, "-m", "groupnorm_bench.benchmark"]),
}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.capture_examples", description=__doc__.split("\n\n")[0])
    parser.add_argument("--list", action="store_true", help="print the captures and their commands, run nothing")
    parser.add_argument("--only", action="append", metavar="NAME", choices=sorted(CAPTURES),
                        help="run only these captures (repeatable)")
    parser.add_argument("--columns", type=int, default=160, help="terminal width the tables are drawn for")
    args = parser.parse_args(argv)
    chosen = [name for name in CAPTURES if not args.only or name in args.only]
    if args.list:
        for name in chosen:
            path, command = CAPTURES[name]
            program = ["gnbench"] if command[0] == _SCRIPT else ["python"]
            print(f"{name:16} {OUT}/{path}: {' '.join(program + command[1:])}")
        return 0
    env = dict(os.environ, COLUMNS=str(args.columns), GNBENCH_CACHE=tempfile.mkdtemp(prefix="gnbench-cache-"))
    for name in chosen:
        path, command = CAPTURES[name]
        target = os.path.join(OUT, path)
        os.makedirs(os.path.dirname(target), exist_ok=True)
        start = time.perf_counter()
        with open(target, "w") as handle:
            status = subprocess.run(command, stdout=handle, stderr=subprocess.PIPE, text=True, env=env)
        print(f"{name}: exit {status.returncode} in {time.perf_counter() - start:.0f} s -> {target}", flush=True)
        if status.returncode not in (0, 1):
            print(status.stderr[-2000:], file=sys.stderr)
    return subprocess.run([sys.executable, "-m", "harness.docs"]).returncode


if __name__ == "__main__":
    sys.exit(main())
