"""numba-cpu against torch per case of a bench run in this folder: ms, % of the roofline
(or floor), vs torch, IQR. Run from anywhere: python results/cpu-2026-12-04-numba16-part3/bench_table.py bench-run6
(a run in this folder) or a .parquet path (another folder's run)."""

import pathlib
import sys

import pandas as pd

here = pathlib.Path(__file__).parent
name = sys.argv[1] if len(sys.argv) > 1 else "bench-run6"
rows = pd.read_parquet(name if name.endswith(".parquet") else here / f"{name}.parquet")
rows = rows.assign(ms=rows.median_s * 1e3, iqr_pct=100 * rows.iqr_s / rows.median_s)
table = rows.pivot_table(index="case_id", columns="backend", values=["ms", "roofline_pct", "iqr_pct"])
out = pd.DataFrame({
    "numba ms": table["ms"]["numba-cpu"], "torch ms": table["ms"]["torch"],
    "vs torch": table["ms"]["torch"] / table["ms"]["numba-cpu"],
    "numba % roofline": table["roofline_pct"]["numba-cpu"], "torch % roofline": table["roofline_pct"]["torch"],
    "numba IQR %": table["iqr_pct"]["numba-cpu"], "torch IQR %": table["iqr_pct"]["torch"]})
print(f"copy roofline {rows.copy_gbps.iloc[0]:.1f} GB/s; {int((rows.iqr_pct > 10).sum())} of {len(rows)} rows with IQR > 10%")
print(out.round(2).to_string())
