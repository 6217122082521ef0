"""``gnbench report RESULTS...``: a markdown summary and PNG plots of stored results.

* ``gbps.png``: GB/s against problem size (bytes moved) per backend and device, with each
  device's measured copy bandwidth as the roofline: one panel per pass, side by side
  (forward, backward alone, training step; each against the bytes its pass must move).
* ``latency.png``: host latency of one call on the smallest (launch-bound) benched shapes.
* ``verification.png``: share of passed rows per backend x (suite, dtype).
* ``summary.md``: the environment, the verification table (one per machine type when the
  rows come from several, as a cluster's sweep with ``--accelerators`` makes), the bench
  table, the plots.
"""

from __future__ import annotations

import math
import os

from harness.oracle.checks import FAILED


def suite_of(path: str) -> str:
    name = os.path.basename(str(path)).rsplit(".", 1)[0]
    return name.split("-", 1)[1] if "-" in name else name


def verification_summary(frame) -> str:
    """Markdown: per suite, pass, backend and device: rows by status (failures a known
    framework bug explains apart) and the worst ratio."""
    from harness.records.known_bugs import unexpected

    lines = ["| suite | pass | backend:device | passed | failed | known bugs | not run | worst ratio |",
             "|---|---|---|---:|---:|---:|---:|---:|"]
    frame = frame.assign(_unexpected=unexpected(frame))
    for (suite, pass_, backend, device), rows in frame.groupby(["suite", "pass", "backend", "device"], sort=False):
        passed = int((rows.status == "passed").sum())
        failed = int(rows._unexpected.sum())
        known = int(rows.status.isin(FAILED).sum()) - failed
        worst = rows.ratio.max()
        lines.append(f"| {suite} | {pass_} | {backend}:{device} | {passed} | {failed} | {known} | "
                     f"{len(rows) - passed - failed - known} | {'-' if worst != worst else f'{worst:.3g}'} |")
    return "\n".join(lines) + "\n"


def bench_summary(frame) -> str:
    """Markdown: per bench suite and backend, verified rows, geometric-mean speedup
    against torch, median GB/s, median % of the copy roofline, median compile time."""
    from .bench import with_speedups

    def fmt(value, form):
        return "-" if value != value else format(value, form)

    lines = ["| suite | pass | backend:device | verified / rows | geo-mean speedup vs torch | median GB/s | "
             "median % of copy roofline | median compile s |", "|---|---|---|---:|---:|---:|---:|---:|"]
    frame = with_speedups(frame)
    for (suite, pass_, backend, device), rows in frame.groupby(["suite", "pass", "backend", "device"], sort=False):
        good = rows[rows.status == "passed"]
        speedups = [s for s in good.speedup_vs_torch if s == s and s > 0]
        geo = math.exp(sum(math.log(s) for s in speedups) / len(speedups)) if speedups else math.nan
        lines.append(f"| {suite} | {pass_} | {backend}:{device} | {len(good)} / {len(rows)} | {fmt(geo, '.2f')} | "
                     f"{fmt(good.gbps.median(), '.1f')} | {fmt(good.roofline_pct.median(), '.0f')} | "
                     f"{fmt(good.compile_s.median(), '.2f')} |")
    return "\n".join(lines) + "\n"


def _plt():
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as error:
        raise ImportError(f"gnbench report needs matplotlib ({error}): pip install 'groupnorm-bench[report]'") from None
    return plt


FLOORS = {"forward": "read x, write y", "backward": "read x and grad_y, write grad_x",
          "train": "forward + backward: 5 x-sized tensors"}


def plot_gbps(bench, path: str) -> None:
    """GB/s against bytes moved, one panel per pass (backward beside forward)."""
    from harness.problems.cases import PASSES

    plt = _plt()
    good = bench[bench.status == "passed"]
    passes = [p for p in PASSES if p in set(good["pass"])] or ["forward"]
    figure, panels = plt.subplots(1, len(passes), figsize=(6.5 * len(passes), 5.5), sharey=True, squeeze=False)
    markers = {"float32": "o", "float16": "s", "bfloat16": "^", "float64": "D"}
    colors = {}
    for axes, pass_ in zip(panels[0], passes):
        mine = good[good["pass"] == pass_]
        for (backend, device), rows in mine.groupby(["backend", "device"], sort=False):
            color = colors.setdefault((backend, device), f"C{len(colors)}")
            for dtype, part in rows.groupby("dtype"):
                axes.scatter(part.bytes, part.gbps, marker=markers.get(dtype, "o"), color=color, s=22, alpha=0.8,
                             label=f"{backend}:{device} {dtype}")
        for device, rows in mine.groupby("device"):
            copy = rows.copy_gbps.median()
            if copy == copy:
                axes.axhline(copy, linestyle="--", color="black", linewidth=1)
                axes.annotate(f"{device} copy bandwidth {copy:.1f} GB/s", (mine.bytes.min(), copy),
                              textcoords="offset points", xytext=(2, 4), fontsize=8)
        axes.set_xscale("log")
        axes.set_xlabel(f"bytes the {pass_} pass must move ({FLOORS[pass_]}; weight and bias)")
        axes.set_title(f"{pass_}")
        axes.grid(True, which="both", alpha=0.3)
        if len(mine):
            axes.legend(fontsize=7)
    panels[0][0].set_ylabel("GB/s (median device time)")
    figure.suptitle("GroupNorm throughput against problem size (above the line: data served from cache)")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def plot_latency(bench, path: str, count: int = 8) -> None:
    plt = _plt()
    good = bench[bench.status == "passed"]
    good = good.assign(problem=good.case_id.str.replace(r"-s\d+", "", regex=True))  # pass and gradient stay
    smallest = good.drop_duplicates("problem").nsmallest(count, "bytes").problem.tolist()
    figure, axes = plt.subplots(figsize=(9, 5))
    series = list(good.groupby(["backend", "device"], sort=False))
    width = 0.8 / max(len(series), 1)
    for index, ((backend, device), rows) in enumerate(series):
        values = [rows[rows.problem == problem].latency_median_s.median() * 1e6 for problem in smallest]
        axes.bar([i + index * width for i in range(len(smallest))], values, width, label=f"{backend}:{device}")
    axes.set_xticks([i + width * (len(series) - 1) / 2 for i in range(len(smallest))])
    axes.set_xticklabels([p.replace("-contiguous", "").replace("-normal", "") for p in smallest],
                         rotation=30, ha="right", fontsize=7)
    axes.set_ylabel("host latency of one call, µs (median)")
    axes.set_yscale("log")
    axes.set_title(f"launch-bound shapes: the {len(smallest)} smallest benched cases")
    axes.grid(True, axis="y", alpha=0.3)
    axes.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def plot_verification(frame, path: str) -> None:
    plt = _plt()
    frame = frame.assign(column=frame.suite + " " + frame["pass"] + "\n" + frame.dtype,
                         key=frame.backend + ":" + frame.device)
    judged = frame[frame.status.isin(("passed",) + FAILED)]
    columns = sorted(judged.column.unique())
    keys = list(dict.fromkeys(judged.key))
    grid = [[math.nan] * len(columns) for _ in keys]
    labels = [[""] * len(columns) for _ in keys]
    for (key, column), rows in judged.groupby(["key", "column"]):
        i, j = keys.index(key), columns.index(column)
        passed = int((rows.status == "passed").sum())
        grid[i][j] = passed / len(rows)
        labels[i][j] = f"{passed}/{len(rows)}"
    figure, axes = plt.subplots(figsize=(max(8, 0.7 * len(columns) + 2), 1 + 0.5 * len(keys)))
    image = axes.imshow(grid, cmap="RdYlGn", vmin=0, vmax=1, aspect="auto")
    for i in range(len(keys)):
        for j in range(len(columns)):
            axes.text(j, i, labels[i][j], ha="center", va="center", fontsize=7)
    axes.set_xticks(range(len(columns)))
    axes.set_xticklabels(columns, fontsize=7, rotation=90)
    axes.set_yticks(range(len(keys)))
    axes.set_yticklabels(keys, fontsize=8)
    axes.set_title("verification: passed / verified rows per backend x suite, pass x dtype")
    figure.colorbar(image, ax=axes, fraction=0.02)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def report(paths, out_dir: str) -> list[str]:
    """Write summary.md and the PNG plots for the results in ``paths`` into ``out_dir``."""
    from harness.records import results

    frame = results.load(*paths)
    frame["suite"] = frame.source_file.map(suite_of)
    passes = frame["pass"] if "pass" in frame else None
    frame["pass"] = "forward" if passes is None else passes.fillna("forward").replace("", "forward")
    os.makedirs(out_dir, exist_ok=True)
    written = []
    bench = frame[frame.source_file.map(lambda p: os.path.basename(str(p)).startswith("bench-"))]
    verify = frame[~frame.index.isin(bench.index)]
    lines = ["# groupnorm-bench report", ""]
    for (host, cpu, gpu), rows in frame.groupby(["host", "cpu_model", frame.gpu_name.fillna("")]):
        lines.append(f"- machine `{host}`: {cpu}; GPU: {gpu or 'none'}; dates {rows.date.min()} to {rows.date.max()}; "
                     f"commit(s) {', '.join(sorted(set(map(str, rows.commit))))}")
    versions = sorted(set(frame.versions.dropna()))
    lines += [f"- package versions: `{v}`" for v in versions[:3]] + [""]
    if not verify.empty:
        lines += ["## Verification", ""]
        types = verify.machine_type.fillna("").astype(str)
        if types.nunique() > 1:  # a cluster's sweep: one table per machine type
            for machine_type, rows in verify.groupby(types, sort=True):
                lines += [f"### {machine_type or 'machines without a GPU'}", "", verification_summary(rows)]
        else:
            lines.append(verification_summary(verify))
        lines += ["![verification](verification.png)", ""]
        plot_verification(verify, os.path.join(out_dir, "verification.png"))
        written.append(os.path.join(out_dir, "verification.png"))
    emulated = int(bench.simulated.sum())
    bench = bench[~bench.simulated]  # an emulated device's times say nothing
    if emulated:
        lines += [f"- {emulated} bench rows of a device emulated on the host (Numba's CUDA simulator) are left out "
                  f"of the timing below", ""]
    if not bench.empty:
        lines += ["## Bench", "", bench_summary(bench), "![GB/s](gbps.png)", "", "![latency](latency.png)", ""]
        plot_gbps(bench, os.path.join(out_dir, "gbps.png"))
        plot_latency(bench, os.path.join(out_dir, "latency.png"))
        written += [os.path.join(out_dir, "gbps.png"), os.path.join(out_dir, "latency.png")]
    summary = os.path.join(out_dir, "summary.md")
    with open(summary, "w") as handle:
        handle.write("\n".join(lines))
    return [summary] + written
