"""Keep the README's example output equal to what the tool printed.

A README block of the form::

    <!-- output: results/cpu-2026-11-26/verify-default.txt lines=2-17 -->
    ...
    <!-- /output -->

is replaced by those lines of the file (a captured run of the tool, committed under
``results/``), fenced as text. ``python -m harness.docs`` rewrites README.md;
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


def render(text: str) -> str:
    """The README text with every output block refilled from its file."""
    return BLOCK.sub(lambda m: m.group(1) + _excerpt(m["path"], m["first"], m["last"]) + m.group(5), text)


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
