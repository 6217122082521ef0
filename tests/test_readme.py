"""The README's "verify your own GroupNorm" example runs as written."""

import os
import re
import subprocess
import sys

from conftest import ROOT


def _python_block_after(heading: str) -> str:
    with open(os.path.join(ROOT, "README.md")) as handle:
        text = handle.read()
    section = text[text.index(heading):]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def test_verify_your_own_group_norm_example_runs():
    code = _python_block_after("## Verify your own GroupNorm")
    assert len(code.strip().splitlines()) <= 20
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert "passed" in result.stdout


def test_python_api_example_runs():
    code = _python_block_after("From Python:")
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr


def test_readme_output_blocks_are_the_captured_tool_output():
    """Example output is refilled from results/ by `python -m harness.docs`, never typed."""
    from harness import docs

    with open(os.path.join(ROOT, "README.md")) as handle:
        text = handle.read()
    assert "<!-- output:" in text and "<!-- suites-table:" in text
    assert text.count("<!-- output:") == text.count("<!-- /output -->") >= 4  # every block closed
    assert docs.render(docs.render(text)) == docs.render(text)  # refilling is idempotent
    assert docs.render(text) == text, "README output blocks are stale: run python -m harness.docs"
