"""Keep the README's example output equal to what the tool printed.

A README block of the form::

    <!-- output: results/cpu-2026-11-26/verify-default.txt lines=2-17 -->
    ...
    <!-- /output -->

is replaced by those lines of the file (a captured run of the tool, committed under
``results/``), fenced as text; ``<!-- markdown: PATH -->`` ... ``<!-- /markdown -->`` by
the file as it is (a table the tool wrote); a block ``<!-- suites-table: DIR -->`` ...
``<!-- /suites-table -->`` by a table of the verification results in DIR (one row per
suite: cases, rows by status, worst ratio, wall time of the run). ``python -m harness.docs`` rewrites README.md;
``tests/test_readme.py`` fails when the README differs from what this would write, so
example output is never typed by hand.
"""

from __future__ import annotations

import os
import re
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BLOCK = re.compile(r"(<!-- output: (?P<path>\S+)(?: lines=(?P<first>\d+)-(?P<last>\d+))? -->\n)(?P<body>.*?)(<!-- /output -->)", re.S)


def _excerpt(path: str, first: str | None, last: str | None) -> str:
    with open(os.path.join(ROOT, path)) as handle:
        lines = handle.read().splitlines()
    if first is not None:
        lines = lines[int(first) - 1:int(last)]
    return "```text\n" + "\n".join(line.rstrip() for line in lines) + "\n```\n"


TABLE = re.compile(r"(<!-- suites-table: (?P<path>\S+) -->\n)(?P<body>.*?)(<!-- /suites-table -->)", re.S)


def suites_table(directory: str) -> str:
    """Markdown: per verify-<suite> file in ``directory``, its counts, worst ratio and time."""
    import glob

    from harness.records import results
    from .verify import FAILED

    from harness.records.known_bugs import unexpected

    lines = ["| suite | cases | rows | passed | failed | known bugs | skipped or unsupported | worst passing ratio | wall time |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for path in sorted(glob.glob(os.path.join(ROOT, directory, "verify-*.parquet"))):
        frame = results.load(path)
        suite = os.path.basename(path)[len("verify-"):-len(".parquet")]
        with open(path[: -len(".parquet")] + ".txt") as handle:
            timing = re.findall(r"in ([0-9.]+) s$", handle.read(), re.M)
        passed = int((frame.status == "passed").sum())
        failed = int(frame.status.isin(FAILED).sum())
        surprises = int(unexpected(frame).sum())
        worst = frame[frame.status == "passed"].ratio.max()
        lines.append(
            f"| {suite} | {frame.case_id.nunique()} | {len(frame)} | {passed} | {surprises} | {failed - surprises} | "
            f"{len(frame) - passed - failed} | {'-' if worst != worst else f'{worst:.3g}'} | "
            f"{timing[-1] + ' s' if timing else '?'} |"
        )
    return "\n".join(lines) + "\n"


BENCH_TABLE = re.compile(r"(<!-- bench-table: (?P<path>\S+) -->\n)(?P<body>.*?)(<!-- /bench-table -->)", re.S)


def bench_table(directory: str) -> str:
    """Markdown: :func:`harness.commands.report.bench_summary` of the bench files in ``directory``."""
    import glob

    from harness.records import results
    from .report import suite_of, bench_summary

    paths = sorted(glob.glob(os.path.join(ROOT, directory, "bench-*.parquet")))
    if not paths:
        return "(no bench results yet)\n"
    frame = results.load(*paths)
    return bench_summary(frame.assign(suite=frame.source_file.map(suite_of)))


MARKDOWN = re.compile(r"(<!-- markdown: (?P<path>\S+) -->\n)(?P<body>.*?)(<!-- /markdown -->)", re.S)


def _markdown(path: str) -> str:
    with open(os.path.join(ROOT, path)) as handle:
        return handle.read().rstrip("\n") + "\n"


def render(text: str) -> str:
    """The README text with every output block refilled from its file."""
    text = BLOCK.sub(lambda m: m.group(1) + _excerpt(m["path"], m["first"], m["last"]) + m.group(6), text)
    text = MARKDOWN.sub(lambda m: m.group(1) + _markdown(m["path"]) + m.group(4), text)
    text = TABLE.sub(lambda m: m.group(1) + suites_table(m["path"]) + m.group(4), text)
    return BENCH_TABLE.sub(lambda m: m.group(1) + bench_table(m["path"]) + m.group(4), text)


def main() -> int:
    path = os.path.join(ROOT, "README.md")
    with open(path) as handle:
        text = handle.read()
    updated = render(text)
    if updated != text:
        with open(path, "w") as handle:
            handle.write(updated)
        print("README.md updated")
    else:
        print("README.md already matches the captured output")
    return 0


if __name__ == "__main__":
    sys.exit(main())
