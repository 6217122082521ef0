"""The README and the docs pages: their Python blocks run as written, as files; their output
blocks are the tools' captured output; the site builds with ``mkdocs build --strict``."""

import glob
import os
import re
import subprocess
import sys

import pytest

from conftest import ROOT, run_harness

PAGES = ["README.md"] + sorted(os.path.relpath(p, ROOT) for p in glob.glob(os.path.join(ROOT, "docs", "*.md")))


def _text(page: str) -> str:
    with open(os.path.join(ROOT, page)) as handle:
        return handle.read()


def _readme() -> str:
    return _text("README.md")


def _python_blocks() -> dict[str, str]:
    """Every ```python block of the README and the docs pages, keyed by the page and the
    heading above it (and a number when a section has several)."""
    blocks: dict[str, str] = {}
    for page in PAGES:
        name = os.path.splitext(os.path.basename(page))[0].lower()
        heading = "top"
        for match in re.finditer(r"^(#+ [^\n]*)$|^```python\n(.*?)^```", _text(page), re.S | re.M):
            if match.group(1):
                heading = re.sub(r"[^a-z0-9]+", "-", match.group(1).lstrip("#").strip().lower()).strip("-")
                continue
            key, number = f"{name}:{heading}", 2
            while key in blocks:
                key, number = f"{name}:{heading}-{number}", number + 1
            blocks[key] = match.group(2)
    return blocks


def test_the_docs_have_the_python_blocks_this_test_runs():
    assert {"readme:verify", "readme:select", "readme:drop-in-groupnorm", "results:results", "select:select",
            "plugins:verify-your-own-groupnorm-in-20-lines", *RAY_BLOCKS} <= set(_python_blocks())


def test_the_readme_is_short():
    """What each job is, with one example; the rest is in docs/."""
    assert len(_readme().splitlines()) <= 300


RAY_BLOCKS = ("cluster:verify-on-a-ray-cluster",)  # run by tests/test_cluster.py, beside the other Ray tests


@pytest.mark.parametrize("name", sorted(set(_python_blocks()) - set(RAY_BLOCKS)))
def test_python_block_runs_as_a_file(name, tmp_path):
    run_python_block(name, tmp_path)


def run_python_block(name: str, tmp_path) -> None:
    """Saved to a file and run as ``python file.py`` (a plain script, no __main__ guard),
    from the repository root so its relative paths hold; it runs clean: exit 0 and no
    warning or traceback on stderr."""
    script = tmp_path / f"doc_{re.sub('[^a-z0-9]+', '_', name)}.py"  # not select.py: that shadows a stdlib module
    script.write_text(_python_blocks()[name])
    env = dict(os.environ, PYTHONPATH=ROOT)  # as installed, or from a checkout
    result = subprocess.run([sys.executable, str(script)], cwd=ROOT, env=env, capture_output=True, text=True,
                            timeout=600)
    assert result.returncode == 0, result.stderr
    assert "Warning" not in result.stderr and "Traceback" not in result.stderr, result.stderr
    assert result.stdout.strip(), "every block prints what it shows"
    if name == "plugins:verify-your-own-groupnorm-in-20-lines":
        assert len(script.read_text().strip().splitlines()) <= 20
        assert "passed" in result.stdout


@pytest.mark.parametrize("page", PAGES)
def test_output_blocks_are_the_captured_tool_output(page):
    """Example output is refilled from results/ by `python -m harness.docs`, never typed."""
    from harness.commands import docs

    text = _text(page)
    assert text.count("<!-- output:") == text.count("<!-- /output -->")  # every block closed
    assert docs.render(docs.render(text)) == docs.render(text)  # refilling is idempotent
    assert docs.render(text) == text, f"{page}: output blocks are stale: run python -m harness.docs"


def test_the_docs_hold_the_tables_and_outputs_they_promise():
    text = "".join(_text(page) for page in PAGES)
    for directive in ("<!-- output:", "<!-- suites-table:", "<!-- bench-table:", "<!-- known-bugs-table -->"):
        assert directive in text, directive
    assert "<!-- known-bugs-table -->" in _readme()


def _block(path: str) -> str:
    """The text of the output block (README or a docs page) filled from ``path``."""
    pattern = r"<!-- output: " + re.escape(path) + r"(?: lines=-?\d+-(?:\d+|end))? -->\n```text\n(.*?)```"
    for page in PAGES:
        match = re.search(pattern, _text(page), re.S)
        if match:
            return match.group(1)
    raise AssertionError(f"no page has an output block from {path}")


def _header(text: str) -> list[str]:
    """The column names of the first rich table in ``text``."""
    line = next(line for line in text.splitlines() if "┃" in line)
    return [cell.strip() for cell in line.strip().strip("┃").split("┃")]


SUMMARY_LINE = re.compile(
    r"^\d+ rows, \d+ verified, \d+ failed( \(and \d+ known framework bugs\))?, "
    r"\d+ not run, in [\d.]+ s$",
    re.M,
)


def test_verify_as_documented_prints_what_the_readme_shows(tmp_path):
    """The README's verify block is a committed capture; a live run must still have its form."""
    documented = _block("results/examples/suites/verify-default.txt")
    ran = run_harness("verify", "--suite", "smoke", "--backends", "torch,jax,numpy,numba-cpu", "--out", str(tmp_path))
    assert ran.returncode == 0, ran.stdout + ran.stderr
    assert _header(ran.stdout) == _header(documented)
    assert SUMMARY_LINE.search(documented) and SUMMARY_LINE.search(ran.stdout), ran.stdout[-500:]
    for prefix in ("verification summary (ratio = worst |error| / tolerance; must stay <= 1)", "rows written to "):
        assert prefix in documented and prefix in ran.stdout


def test_cases_as_documented_prints_exactly_the_readme_block():
    ran = run_harness("cases", "--suite", "smoke")
    assert ran.returncode == 0
    assert ran.stdout == _block("results/examples/cases-smoke.txt")


def test_list_as_documented_has_the_readme_columns_and_backends():
    documented = _block("results/examples/list.txt")
    ran = run_harness("list")
    assert ran.returncode == 0, ran.stderr
    assert _header(ran.stdout) == _header(documented) == ["backend", "device", "dtypes", "layouts", "status", "version"]

    def names(text):  # first column of each row (a wrapped row continues with an empty one)
        return [
            cell for cell in (line.split("│")[1].strip() for line in text.splitlines() if line.startswith("│")) if cell
        ]

    assert names(documented) and names(ran.stdout)[: len(names(documented))] == names(documented)


def test_the_site_builds_strictly(tmp_path):
    """mkdocs build --strict: a broken link, a missing anchor or a page left out of the nav
    fails (mkdocs.yml turns those warnings on)."""
    pytest.importorskip("mkdocs", reason="the docs extra installs MkDocs")
    pytest.importorskip("material", reason="the docs extra installs mkdocs-material")
    ran = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")],
                         cwd=ROOT, capture_output=True, text=True, timeout=300,
                         env=dict(os.environ, NO_MKDOCS_2_WARNING="1"))
    assert ran.returncode == 0, ran.stdout[-3000:] + ran.stderr[-3000:]
    assert (tmp_path / "site" / "index.html").exists() and (tmp_path / "site" / "numba-cpu" / "index.html").exists()
