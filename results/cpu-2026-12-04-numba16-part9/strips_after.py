"""Part 8's strips question again (part 9): the statistics pass alone, old against strips, each call after something else: nothing, the normalize, a 64 MiB read, a 64 MiB np.copyto, a 5 ms sleep. Run from the repo root with the
strips kernel (994eb1e) in the working tree, as part 8's strips_ab.py says:

    git checkout 994eb1e -- backends/ && rm -f backends/__pycache__/_numba_*.nb[ic]
    python results/cpu-2026-12-04-numba16-part9/strips_after.py [seconds]
    git checkout HEAD -- backends/ && rm -f backends/__pycache__/_numba_*.nb[ic]

Output: ``strips-rerun.txt``.
"""
import pathlib as _pathlib
import sys as _sys

_sys.path.insert(0, str(_pathlib.Path(__file__).resolve().parents[1] / "cpu-2026-12-04-numba16-part8"))
import sys, time
exec(open(_pathlib.Path(__file__).with_name("strips_split.py")).read().split("T = {k")[0])
flush = np.ones(16 << 20, np.float32)
junk_src = np.ones(64 << 20, np.uint8); junk_dst = np.empty_like(junk_src)
before = {"nothing": lambda: None, "normalize": lambda: normalize(x, sc, sh, 2), "flush-read": lambda: flush.sum(),
          "np.copyto 64MiB": lambda: np.copyto(junk_dst, junk_src), "sleep 5ms": lambda: time.sleep(0.005)}
for label, pre in before.items():
    T = {k: [] for k in S}
    end = time.perf_counter() + float(sys.argv[1]); r = 0
    while time.perf_counter() < end:
        for k in (("old", "new") if r % 2 else ("new", "old")):
            pre(); t0 = time.perf_counter(); S[k](x, G, False, True, 2); T[k].append(time.perf_counter() - t0)
        r += 1
    print(f"after {label:16}", "  ".join(f"{k} {np.median(v)*1e3:.3f}" for k, v in T.items()), f"new/old per round {np.median(np.array(T['new'])/np.array(T['old'])):.3f}", flush=True)
