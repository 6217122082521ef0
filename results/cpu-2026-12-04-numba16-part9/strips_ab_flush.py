"""Part 8's strips question again (part 9): part 8's strips_ab.py on the two large shapes, with a third line per shape: each kernel call after a 64 MiB read (kernel+flush). Run from the repo root with the
strips kernel (994eb1e) in the working tree, as part 8's strips_ab.py says:

    git checkout 994eb1e -- backends/ && rm -f backends/__pycache__/_numba_*.nb[ic]
    python results/cpu-2026-12-04-numba16-part9/strips_ab_flush.py 8e3c025 [seconds]
    git checkout HEAD -- backends/ && rm -f backends/__pycache__/_numba_*.nb[ic]

Output: ``strips-rerun.txt``.
"""
import pathlib as _pathlib
import sys as _sys

_sys.path.insert(0, str(_pathlib.Path(__file__).resolve().parents[1] / "cpu-2026-12-04-numba16-part8"))
import pathlib
import subprocess
import sys
import tempfile

import numpy as np
from _interleaved import race, statistics_pass  # the repo on the path, the allocator pinned

from backends import _numba_cpu_kernels as NEW

ROOT = pathlib.Path(__file__).resolve().parents[2]
ref = sys.argv[1] if len(sys.argv) > 1 else "HEAD"
seconds = float(sys.argv[2]) if len(sys.argv) > 2 else 12.0
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
flush = np.ones(16 << 20, np.float32)
for shape, groups in [((1, 128, 512, 512), 32), ((16, 64, 256, 256), 8)]:
    rows = rng.standard_normal((shape[0], shape[2] * shape[3], shape[1]), dtype=np.float32)
    w, b = rng.standard_normal(shape[1]), rng.standard_normal(shape[1])
    for what, calls in (
            ("statistics", {k: (lambda f=f: f(rows, groups, False, True, 2)) for k, f in statistics.items()}),
            ("kernel", {k: (lambda m=m: m.group_norm_channels_last(rows, groups, w, b, 1e-5, True, 2))
                        for k, m in (("old", OLD), ("new", NEW))}),
            ("kernel+flush", {k: (lambda m=m: (flush.sum(), m.group_norm_channels_last(rows, groups, w, b, 1e-5, True, 2))[1])
                        for k, m in (("old", OLD), ("new", NEW))})):
        old_out, new_out = calls["old"](), calls["new"]()
        pairs = zip(old_out, new_out) if isinstance(old_out, tuple) else [(old_out, new_out)]
        same = all(np.array_equal(p, q) for p, q in pairs)
        old, new, ratios, rounds = ab(calls)
        print(f"{'x'.join(map(str, shape)):>15}/{groups:<2} {what:10} old {old * 1e3:7.3f} ms  new {new * 1e3:7.3f} ms  "
              f"new/old {new / old:.3f}  per round {np.median(ratios):.3f} [{np.percentile(ratios, 25):.3f}-"
              f"{np.percentile(ratios, 75):.3f}]  ({rounds} rounds, {'same' if same else 'different'} bits)")
