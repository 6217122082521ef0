"""The channels-last statistics from DRAM in strips (commit 994eb1e, reverted by 1e2a8e8):
its statistics pass alone and the whole float32 channels-last kernel, against a reference
commit's, in one process, the two calls' order alternating round by round (pinned
allocator, 2 threads). Run from the repo root with the strips kernel in the working tree:

    git checkout 994eb1e -- backends/ && rm -f backends/__pycache__/_numba_*.nb[ic]
    python results/cpu-2026-12-04-numba16-part8/strips_ab.py 8e3c025 [seconds per case]
    git checkout HEAD -- backends/ && rm -f backends/__pycache__/_numba_*.nb[ic]

(Works against any two commits whose ``_wave_plan`` / ``_block_group_moments`` /
``group_norm_channels_last`` have part 7's signatures.) Prints, per shape: the median
time of each, new/old of the medians, and the median and quartiles of the per-round
ratios; and whether the two give the same bits.

With ``--flush`` (added in part 9): only the two large shapes, each with a third line,
``kernel+flush``, every kernel call after a 64 MiB read (part 9's ``strips-rerun.txt``)."""

import pathlib
import subprocess
import sys
import tempfile

import numpy as np
from _interleaved import race, statistics_pass  # the repo on the path, the allocator pinned

from backends import _numba_cpu_kernels as NEW

ROOT = pathlib.Path(__file__).resolve().parents[2]
flushed = "--flush" in sys.argv
args = [arg for arg in sys.argv[1:] if arg != "--flush"]
ref = args[0] if args else "HEAD"
seconds = float(args[1]) if len(args) > 1 else 12.0
package = pathlib.Path(tempfile.mkdtemp()) / "kernels_at_ref"
package.mkdir()
(package / "__init__.py").write_text("")
for name in ("_numba_cpu_kernels.py", "_numba_halves.py", "_numba_tiles.py", "_numba_stores.py"):
    (package / name).write_text(subprocess.run(["git", "show", f"{ref}:backends/{name}"], cwd=ROOT, check=True,
                                               capture_output=True, text=True).stdout)
sys.path.insert(0, str(package.parent))
from kernels_at_ref import _numba_cpu_kernels as OLD  # noqa: E402


def ab(calls):
    """Median seconds of old and new, the per-round ratios new / old, and the rounds."""
    times = race(calls, seconds, alternate=True)
    rounds = min(len(times["old"]), len(times["new"]))
    return np.median(times["old"]), np.median(times["new"]), times["new"][:rounds] / times["old"][:rounds], rounds


statistics = {"old": statistics_pass(OLD), "new": statistics_pass(NEW)}
rng = np.random.default_rng(0)
print(f"channels-last float32, stream on: kernels at {ref} (old) against the working tree (new), "
      f"{seconds:.0f} s a line")
SHAPES = [((16, 64, 256, 256), 8), ((1, 128, 512, 512), 32), ((1, 64, 256, 256), 8),
          ((4, 64, 256, 256), 8), ((2, 128, 256, 256), 32), ((16, 128, 128, 128), 32)]
flush = np.ones(16 << 20, np.float32)
for shape, groups in ([((1, 128, 512, 512), 32), ((16, 64, 256, 256), 8)] if flushed else SHAPES):
    rows = rng.standard_normal((shape[0], shape[2] * shape[3], shape[1]), dtype=np.float32)
    w, b = rng.standard_normal(shape[1]), rng.standard_normal(shape[1])
    kernels = (("old", OLD), ("new", NEW))
    modes = [("statistics", {k: (lambda f=f: f(rows, groups, False, True, 2)) for k, f in statistics.items()}),
             ("kernel", {k: (lambda m=m: m.group_norm_channels_last(rows, groups, w, b, 1e-5, True, 2))
                         for k, m in kernels})]
    if flushed:
        modes.append(("kernel+flush", {k: (lambda m=m: (flush.sum(), m.group_norm_channels_last(
            rows, groups, w, b, 1e-5, True, 2))[1]) for k, m in kernels}))
    for what, calls in modes:
        old_out, new_out = calls["old"](), calls["new"]()
        pairs = zip(old_out, new_out) if isinstance(old_out, tuple) else [(old_out, new_out)]
        same = all(np.array_equal(p, q) for p, q in pairs)
        old, new, ratios, rounds = ab(calls)
        print(f"{'x'.join(map(str, shape)):>15}/{groups:<2} {what:10} old {old * 1e3:7.3f} ms  new {new * 1e3:7.3f} ms  "
              f"new/old {new / old:.3f}  per round {np.median(ratios):.3f} [{np.percentile(ratios, 25):.3f}-"
              f"{np.percentile(ratios, 75):.3f}]  ({rounds} rounds, {'same' if same else 'different'} bits)")
