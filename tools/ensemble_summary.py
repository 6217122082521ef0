"""Summarise runs of the correct ensemble (verify over suites, fuzz searches) into the
small tables results/ensemble/ keeps: per member, suite and pass the rows, failures,
false alarms (failures the policy does not excuse) and ratios; per dtype the median and
worst ratio on the default suite; per member the fuzz search's size and findings.

    python -m tools.ensemble_summary --verify DIR [--fuzz DIR ...] --out results/ensemble

Prints the tables as markdown (for results/ensemble/README.md) and writes them as parquet.
"""

from __future__ import annotations

import argparse
import glob
import os
import sys


def _rows(folder: str):
    """Every row of the parquet (or, for an unfinished run, JSON lines) files in ``folder``."""
    import pandas as pd

    files = sorted(glob.glob(os.path.join(folder, "*.parquet")))
    if files:
        return pd.concat([pd.read_parquet(path) for path in files], ignore_index=True)
    lines = sorted(glob.glob(os.path.join(folder, ".*.jsonl")))
    return pd.concat([pd.read_json(path, lines=True) for path in lines], ignore_index=True)


def _dtype(frame):
    return frame.case_id.str.extract(r"-(float16|bfloat16|float32|float64)-")[0]


def verify_summary(frame):
    """Per (member, suite, pass): rows, failed, false alarms, outside policy, ratios."""
    from harness.commands import ensemble
    from harness.problems import suites
    from harness.records.results import FAILED

    suite_of = {}  # a case in several suites counts in the first: smoke's cases are in default too
    for name in sorted(suites.names(), key=lambda name: name == "smoke"):
        for pass_ in ("forward", "train"):
            for case in suites.get(name, pass_):
                suite_of.setdefault(case.id, name)
    frame = frame.assign(suite=frame.case_id.map(suite_of).fillna("?"), outside=ensemble.outside_policy(frame),
                         failed=frame.status.isin(FAILED))
    accepted = frame[~frame.outside]
    table = frame.groupby(["backend", "suite", "pass"], sort=False).agg(
        rows=("case_id", "size"), failed=("failed", "sum"), outside_policy=("outside", "sum"))
    table["false_alarms"] = accepted[accepted.failed].groupby(["backend", "suite", "pass"]).size()
    passed = accepted[accepted.status == "passed"].groupby(["backend", "suite", "pass"]).ratio
    table["median_ratio"], table["worst_ratio"] = passed.median(), passed.max()
    return table.fillna({"false_alarms": 0}).astype({"false_alarms": int}).reset_index()


def dtype_summary(frame, suite: str = "default"):
    """Per dtype, over every member on ``suite``'s cases the policy accepts: median and worst ratio."""
    from harness.commands import ensemble
    from harness.problems import suites

    ids = {case.id for pass_ in ("forward", "train") for case in suites.get(suite, pass_)}
    mine = frame[frame.case_id.isin(ids) & (frame.status == "passed")]
    mine = mine[~ensemble.outside_policy(mine)]
    return mine.assign(dtype=_dtype(mine)).groupby("dtype").ratio.agg(["size", "median", "max"]).reset_index()


def fuzz_summary(frame):
    """Per member: cases searched, failures, false alarms, worst ratio, the condition range drawn."""
    from harness.commands import ensemble
    from harness.problems.inputs import Parametric
    from harness.records.results import FAILED

    def condition(distribution):
        made = Parametric.parse(distribution)
        return (abs(made.offset) + made.spread) / made.scale if made and made.scale else float("inf")

    frame = frame.assign(condition=frame.distribution.map(condition), failed=frame.status.isin(FAILED))
    alarms = ensemble.false_alarms(frame)
    table = frame.groupby("backend").agg(cases=("case_id", "size"), failed=("failed", "sum"),
                                         worst_ratio=("ratio", "max"), largest_condition=("condition", "max"))
    table["false_alarms"] = alarms.groupby("backend").size()
    return table.fillna({"false_alarms": 0}).astype({"false_alarms": int}).reset_index()


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.ensemble_summary", description=__doc__.split("\n\n")[0])
    parser.add_argument("--verify", action="append", default=[], metavar="DIR", help="a verify --out folder")
    parser.add_argument("--fuzz", action="append", default=[], metavar="DIR", help="a fuzz --out folder")
    parser.add_argument("--out", metavar="DIR", help="write the tables here as parquet")
    args = parser.parse_args(argv)
    import pandas as pd

    from harness.commands import ensemble

    ensemble.register_backends()
    tables = {}
    if args.verify:
        rows = pd.concat([_rows(folder) for folder in args.verify], ignore_index=True)
        tables["verify-summary"] = verify_summary(rows)
        tables["default-ratios-per-dtype"] = dtype_summary(rows)
    if args.fuzz:
        tables["fuzz-summary"] = fuzz_summary(pd.concat([_rows(folder) for folder in args.fuzz], ignore_index=True))
    for name, table in tables.items():
        print(f"\n## {name}\n\n{table.to_markdown(index=False, floatfmt='.3g')}")
        if args.out:
            os.makedirs(args.out, exist_ok=True)
            table.to_parquet(os.path.join(args.out, f"{name}.parquet"), index=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
