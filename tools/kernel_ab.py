"""Interleaved A/B of numba-cpu's kernels at a git commit against the working tree's, in
one process (pinned allocator, the calls' order reversed every other round, medians).

The commit's CPU kernel files (``backends/numba_cpu/*.py``, or the ``backends/_numba_*.py``
files of commits before that package existed) are extracted into a temporary package and
compiled beside the working tree's. Each case calls the kernel as the backend does
(forward: ``group_norm_by_group`` / ``group_norm_half_by_group`` on raw bits; 16-bit
backward: ``group_norm_backward_half_by_group`` where it exists, else widen, the float32
backward, narrow; channels-last: each commit's channels-last kernels, with torch's
channels-last GroupNorm timed alongside for scale), and says whether both give the same
bits.

    python -m tools.kernel_ab REF [--seconds S] [--mode all|small|channels_last]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile

FORWARD = [((16, 64, 256, 256), 8, "float32"), ((1, 128, 512, 512), 32, "float32"), ((8, 512, 32, 32), 32, "float32"),
           ((2, 320, 64, 64), 32, "float32"), ((1, 512, 128, 128), 32, "bfloat16"), ((2, 320, 64, 64), 32, "bfloat16"),
           ((1, 512, 128, 128), 32, "float16"), ((2, 320, 64, 64), 32, "float16"), ((2, 1280, 32, 32), 32, "float16"),
           ((1, 512, 256, 256), 32, "float16"), ((1, 512, 256, 256), 32, "bfloat16")]
CHANNELS_LAST = [((16, 64, 256, 256), 8, "float32"), ((1, 128, 512, 512), 32, "float32"),
                 ((8, 512, 32, 32), 32, "float32"), ((2, 320, 64, 64), 32, "float32"),
                 ((1, 512, 128, 128), 32, "bfloat16"), ((2, 320, 64, 64), 32, "float16"),
                 ((2, 320, 64, 64), 32, "bfloat16"), ((1, 512, 256, 256), 32, "bfloat16")]
BACKWARD = [((16, 64, 256, 256), 8, "float32"), ((2, 320, 64, 64), 32, "float32"), ((2, 320, 64, 64), 32, "float16"),
            ((2, 320, 64, 64), 32, "bfloat16"), ((1, 512, 128, 128), 32, "bfloat16"),
            ((2, 640, 32, 32), 32, "float16"), ((16, 64, 256, 256), 8, "bfloat16")]


def cases(mode: str):
    """(forward, backward, channels-last) case lists for a mode: ``all``; ``small`` (16-bit
    planes of 64 and 256 elements); ``channels_last`` (those cases only, plus float16
    1x512x256x256)."""
    if mode == "small":
        return ([((2, 1280, side, side), 32, dtype) for side in (8, 16) for dtype in ("float16", "bfloat16")],
                [((2, 640, side, side), 32, dtype) for side in (8, 16) for dtype in ("float16", "bfloat16")], [])
    if mode == "channels_last":
        return [], [], CHANNELS_LAST + [((1, 512, 256, 256), 32, "float16")]
    return FORWARD, BACKWARD, CHANNELS_LAST


def kernels_at(ref: str, root: str):
    """The numba-cpu kernels module of commit ``ref``, imported from a temporary package."""
    import importlib

    def listing(folder):
        return subprocess.run(["git", "ls-tree", "--name-only", ref, folder], cwd=root, check=True,
                              capture_output=True, text=True).stdout.split()

    package_dir = os.path.join(tempfile.mkdtemp(), "kernels_at_ref")
    os.makedirs(package_dir)
    open(os.path.join(package_dir, "__init__.py"), "w").close()
    files = [p for p in listing("backends/numba_cpu/") if p.endswith(".py") and not p.endswith("__init__.py")]
    module = "kernels"
    if not files:  # a commit before backends/numba_cpu/: the kernels were backends/_numba_*.py
        files = [p for p in listing("backends/") if os.path.basename(p).startswith("_numba_") and "cuda" not in p]
        module = "_numba_cpu_kernels"
    if not files:
        raise SystemExit(f"no numba-cpu kernel files at {ref}")
    for path in files:
        text = subprocess.run(["git", "show", f"{ref}:{path}"], cwd=root, check=True, capture_output=True,
                              text=True).stdout
        with open(os.path.join(package_dir, os.path.basename(path)), "w") as handle:
            handle.write(text)
    sys.path.insert(0, os.path.dirname(package_dir))
    return importlib.import_module(f"kernels_at_ref.{module}")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.kernel_ab", description=__doc__.split("\n\n")[0])
    parser.add_argument("ref", help="the git commit (or branch, tag) whose kernels are 'old'")
    parser.add_argument("--seconds", type=float, default=3.0, help="timing seconds per case (default 3)")
    parser.add_argument("--mode", choices=("all", "small", "channels_last"), default="all")
    args = parser.parse_args(argv)

    import ml_dtypes
    import numba
    import numpy as np

    from backends.numba_cpu import kernels as new
    from backends.numba_cpu.backend import stream_bytes
    from harness.execution.timing import pin_allocator

    from .interleave import race

    pin_allocator()
    root = subprocess.run(["git", "rev-parse", "--show-toplevel"], check=True, capture_output=True,
                          text=True).stdout.strip()
    old = kernels_at(args.ref, root)
    table = np.arange(1 << 16, dtype=np.uint16).view(np.float16).astype(np.float32)

    def stream(k, arrays, x):
        """The backend's rule for kernels that take ``stream`` (nothing for older ones)."""
        return (arrays * x.nbytes >= stream_bytes(),) if hasattr(k, "stream_fence") else ()

    def extra(kernel, rows):
        """The trailing arguments a channels-last kernel takes at that commit, as the
        backend passes them: ``stream``, ``tiles`` (its opposite, in older kernels),
        ``threads``."""
        code = kernel.py_func.__code__
        values = {"stream": 2 * rows.nbytes >= stream_bytes(), "tiles": 2 * rows.nbytes < stream_bytes(),
                  "threads": numba.get_num_threads()}
        return tuple(values[name] for name in code.co_varnames[:code.co_argcount] if name in values)

    def forward(k, x, groups, w, b):
        if x.dtype == np.float32:
            return k.group_norm_by_group(x.reshape(x.shape[0] * groups, -1), groups, w, b, 1e-5, *stream(k, 2, x))
        bits = x.view(np.uint16).reshape(x.shape[0] * groups, -1)
        return k.group_norm_half_by_group(bits, groups, w, b, 1e-5, table, x.dtype != np.float16, *stream(k, 2, x))

    def backward(k, x, dy, groups, w, stats):
        if x.dtype == np.float32:
            rows, grads = (a.reshape(x.shape[0] * groups, -1) for a in (x, dy))
            return k.group_norm_backward_by_group(rows, grads, groups, w, stats, *stream(k, 3, x))
        bfloat = x.dtype != np.float16
        xbits, gbits = (a.view(np.uint16).reshape(x.shape[0] * groups, -1) for a in (x, dy))
        if hasattr(k, "group_norm_backward_half_by_group"):
            return k.group_norm_backward_half_by_group(xbits, gbits, groups, w, stats, table, bfloat,
                                                       *stream(k, 3, x))
        widen = (lambda b: k.widen_bfloat(b.reshape(-1))) if bfloat else (lambda b: k.widen_half(b.reshape(-1), table))
        dx, dweight, dbias = k.group_norm_backward_by_group(widen(xbits).reshape(xbits.shape),
                                                            widen(gbits).reshape(gbits.shape), groups, w, stats)
        return (k.narrow_bfloat if bfloat else k.narrow_half)(dx.reshape(-1)), dweight, dbias

    def channels_last(k, rows, groups, w, b):
        if rows.dtype == np.float32:
            return k.group_norm_channels_last(rows, groups, w, b, 1e-5, *extra(k.group_norm_channels_last, rows))
        bits, bfloat = rows.view(np.uint16), rows.dtype != np.float16
        if hasattr(k, "group_norm_half_channels_last"):
            return k.group_norm_half_channels_last(bits, groups, w, b, 1e-5, table, bfloat,
                                                   *extra(k.group_norm_half_channels_last, rows))
        planar = np.ascontiguousarray(np.moveaxis(bits, -1, 1)).reshape(rows.shape[0] * groups, -1)
        return k.group_norm_half_by_group(planar, groups, w, b, 1e-5, table, bfloat)

    def same(a, b):
        return all(np.array_equal(np.asarray(p).reshape(-1), np.asarray(q).reshape(-1)) for p, q in zip(a, b))

    def medians(calls):
        times = race(calls, args.seconds)
        return {name: float(np.median(t)) for name, t in times.items()}, len(times["old"])

    def line(kind, shape, groups, dtype, m, rounds, note):
        return (f"{kind:8} {'x'.join(map(str, shape)):>15}/{groups:<2} {dtype:9} old {m['old'] * 1e3:8.3f} ms  "
                f"new {m['new'] * 1e3:8.3f} ms  new/old {m['new'] / m['old']:.3f}  ({rounds} rounds{note})")

    forward_cases, backward_cases, channels_last_cases = cases(args.mode)
    rng = np.random.default_rng(0)
    half = {"bfloat16": ml_dtypes.bfloat16, "float16": np.float16, "float32": np.float32}
    print(f"kernels at {args.ref} (old) against the working tree (new)")
    for shape, groups, dtype in forward_cases:
        x = rng.standard_normal(shape, dtype=np.float32).astype(half[dtype])
        w, b = rng.standard_normal(shape[1]), rng.standard_normal(shape[1])
        m, rounds = medians({"old": lambda: forward(old, x, groups, w, b),
                             "new": lambda: forward(new, x, groups, w, b)})
        bits = "same" if same(forward(old, x, groups, w, b)[:1], forward(new, x, groups, w, b)[:1]) else "different"
        print(line("forward", shape, groups, dtype, m, rounds, f", {bits} bits"))
    for shape, groups, dtype in backward_cases:
        x, dy = (rng.standard_normal(shape, dtype=np.float32).astype(half[dtype]) for _ in range(2))
        w = rng.standard_normal(shape[1])
        stats = forward(new, x, groups, w, np.zeros(shape[1]))[1]
        m, rounds = medians(
            {
                "old": lambda: backward(old, x, dy, groups, w, stats),
                "new": lambda: backward(new, x, dy, groups, w, stats),
            }
        )
        bits = (
            "same"
            if same(backward(old, x, dy, groups, w, stats), backward(new, x, dy, groups, w, stats))
            else "different"
        )
        print(line("backward", shape, groups, dtype, m, rounds, f", {bits} bits"))
    for shape, groups, dtype in channels_last_cases:
        import torch

        torch.set_num_threads(numba.get_num_threads())
        values = rng.standard_normal((shape[0], *shape[2:], shape[1]), dtype=np.float32)  # (N, *, C) memory
        rows = values.astype(half[dtype]).reshape(shape[0], -1, shape[1])
        tensor = torch.from_numpy(np.moveaxis(values, -1, 1)).to(getattr(torch, dtype))  # channels-last strides
        w, b = rng.standard_normal(shape[1]), rng.standard_normal(shape[1])
        m, rounds = medians(
            {
                "old": lambda: channels_last(old, rows, groups, w, b),
                "new": lambda: channels_last(new, rows, groups, w, b),
                "torch": lambda: torch.nn.functional.group_norm(tensor, groups),
            }
        )
        print(
            line(
                "chlast",
                shape,
                groups,
                dtype,
                m,
                rounds,
                f"; torch channels-last, no affine: {m['torch'] * 1e3:.3f} ms",
            )
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
