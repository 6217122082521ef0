"""Keep the example output of the README and the docs pages equal to what the tools printed.

A block of the form::

    <!-- output: results/examples/suites/verify-default.txt lines=2-17 -->
    ...
    <!-- /output -->

is replaced by those lines of the file (a captured run of the tool, committed under
``results/``), fenced as text; ``<!-- markdown: PATH -->`` ... ``<!-- /markdown -->`` by
the file as it is (a table the tool wrote); a block ``<!-- suites-table: DIR -->`` ...
``<!-- /suites-table -->`` by a table of the verification results in DIR (one row per
suite: cases, rows by status, worst ratio, wall time of the run); ``<!-- bench-table: DIR
-->`` by the bench summary of DIR; ``<!-- known-bugs-table -->`` by the table of
``harness/records/known_bugs.toml``. ``python -m harness.docs`` rewrites README.md and every
page of ``docs/``; ``tests/test_docs.py`` fails when one differs from what this would write,
so example output is never typed by hand.
"""

from __future__ import annotations

import os
import re
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BLOCK = re.compile(
    r"(<!-- output: (?P<path>\S+)(?: lines=(?P<first>-?\d+)-(?P<last>\d+|end))? -->\n)(?P<body>.*?)(<!-- /output -->)",
    re.S,
)


def _excerpt(path: str, first: str | None, last: str | None) -> str:
    with open(os.path.join(ROOT, path)) as handle:
        lines = handle.read().splitlines()
    if first is not None:  # lines=A-B (1-based, inclusive), A-end, or -K-end (the last K lines)
        start = int(first) - 1 if int(first) > 0 else len(lines) + int(first)
        lines = lines[start : None if last == "end" else int(last)]
    return "```text\n" + "\n".join(line.rstrip() for line in lines) + "\n```\n"


TABLE = re.compile(r"(<!-- suites-table: (?P<path>\S+) -->\n)(?P<body>.*?)(<!-- /suites-table -->)", re.S)


def suites_table(directory: str) -> str:
    """Markdown: per verify-<suite> file in ``directory``, its counts, worst ratio and time."""
    import glob

    from harness.records import results
    from harness.records.known_bugs import unexpected
    from harness.records.results import FAILED

    lines = [
        "| suite | cases | rows | passed | failed | known bugs | skipped or unsupported | worst passing ratio "
        "| wall time |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for path in sorted(glob.glob(os.path.join(ROOT, directory, "verify-*.parquet"))):
        frame = results.load(path)
        suite = os.path.basename(path)[len("verify-") : -len(".parquet")]
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

    from .report import bench_summary, suite_of

    paths = sorted(glob.glob(os.path.join(ROOT, directory, "bench-*.parquet")))
    if not paths:
        return "(no bench results yet)\n"
    frame = results.load(*paths)
    return bench_summary(frame.assign(suite=frame.source_file.map(suite_of)))


MARKDOWN = re.compile(r"(<!-- markdown: (?P<path>\S+) -->\n)(?P<body>.*?)(<!-- /markdown -->)", re.S)


def _markdown(path: str) -> str:
    with open(os.path.join(ROOT, path)) as handle:
        return handle.read().rstrip("\n") + "\n"


KNOWN_BUGS = re.compile(r"(<!-- known-bugs-table -->\n)(?P<body>.*?)(<!-- /known-bugs-table -->)", re.S)


def known_bugs_table() -> str:
    """Markdown: one row per entry of the known-bug file (framework, versions, where, what,
    magnitude, rerun line)."""
    from harness.records import known_bugs

    def cell(text: str) -> str:
        return " ".join(str(text).split()).replace("|", "\\|")

    lines = ["| framework | versions | where | what | magnitude | rerun |", "|---|---|---|---|---|---|"]
    for bug in known_bugs.load():
        where = (
            f"{bug.device}; {', '.join(bug.layouts)}; {', '.join(bug.dtypes)}; ranks "
            f"{', '.join(map(str, bug.ranks))}; {', '.join(bug.passes)}"
        )
        lines.append(
            f"| {bug.package} | `{bug.versions}` | {cell(where)} | {cell(bug.description)} | "
            f"{cell(bug.magnitude)} | `{bug.rerun}` |"
        )
    return "\n".join(lines) + "\n"


def render(text: str) -> str:
    """``text`` with every output block refilled from its file."""
    text = BLOCK.sub(lambda m: m.group(1) + _excerpt(m["path"], m["first"], m["last"]) + m.group(6), text)
    text = MARKDOWN.sub(lambda m: m.group(1) + _markdown(m["path"]) + m.group(4), text)
    text = TABLE.sub(lambda m: m.group(1) + suites_table(m["path"]) + m.group(4), text)
    text = KNOWN_BUGS.sub(lambda m: m.group(1) + known_bugs_table() + m.group(3), text)
    return BENCH_TABLE.sub(lambda m: m.group(1) + bench_table(m["path"]) + m.group(4), text)


def pages() -> list[str]:
    """The files whose blocks are refilled: README.md and every page of docs/."""
    import glob

    return [os.path.join(ROOT, "README.md")] + sorted(glob.glob(os.path.join(ROOT, "docs", "*.md")))


def main() -> int:
    for path in pages():
        with open(path) as handle:
            text = handle.read()
        updated = render(text)
        name = os.path.relpath(path, ROOT)
        if updated != text:
            with open(path, "w") as handle:
                handle.write(updated)
            print(f"{name} updated")
        else:
            print(f"{name} already matches the captured output")
    return 0


if __name__ == "__main__":
    sys.exit(main())
