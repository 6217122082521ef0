"""The issue's accuracy checks on this folder's verification: pass counts per backend and
pass, numba-cpu's worst error ratio per pass and dtype, its determinism, and every case
where numba-cpu's ratio is above 0.5 and above a passing torch's (the issue's bar).
Run from anywhere: python results/cpu-2026-12-04-numba16-part2/verify_summary.py [FOLDER]
(FOLDER: another results folder with the same verification file; default this one)."""

import pathlib
import sys

import pandas as pd

here = pathlib.Path(sys.argv[1]) if len(sys.argv) > 1 else pathlib.Path(__file__).parent
rows = pd.read_parquet(here / "verify-default+adversarial-forward+backward+train.parquet")
print(rows.groupby(["backend", "pass", "status"]).size().unstack(fill_value=0), "\n")
numba = rows[rows.backend == "numba-cpu"]
print("numba-cpu worst error ratio (of the tolerance):")
print(numba.groupby(["pass", "dtype"]).ratio.max().unstack().round(3), "\n")
grads = numba[numba["pass"] != "forward"]
print(f"numba-cpu backward/train rows deterministic (two calls, same bits): {int(grads.deterministic.sum())} of {len(grads)}\n")
torch = rows[rows.backend == "torch"].set_index(["case_id", "pass"])[["ratio", "status"]]
paired = numba.set_index(["case_id", "pass"])[["ratio"]].join(torch.rename(columns=lambda c: f"torch_{c}"))
above = paired[paired.ratio > 0.5]
worse = above[(above.torch_status == "passed") & (above.ratio > above.torch_ratio)]
print(f"numba-cpu rows above 0.5: {len(above)}; of them above a passing torch: {len(worse)}")
print(above.round(3).to_string())
