"""The code's shape: the layers and no import cycles (import-linter), no private name used
across modules (an AST walk: ruff's own rule misses imports inside one package), the
code's rules (ruff), and no dangling ``results/...`` path in any tracked file."""

import ast
import os
import re
import subprocess
import sys

import pytest

from conftest import ROOT

PACKAGES = ("backends", "harness", "groupnorm_bench")


def _modules(package: str):
    for folder, _, files in os.walk(os.path.join(ROOT, package)):
        for name in sorted(files):
            if name.endswith(".py"):
                path = os.path.join(folder, name)
                dotted = os.path.relpath(path, ROOT)[:-3].replace(os.sep, ".")
                yield path, dotted[: -len(".__init__")] if dotted.endswith(".__init__") else dotted


def test_import_layers_and_no_cycles_hold():
    """The contracts of [tool.importlinter] in pyproject.toml (docs/layout.md)."""
    pytest.importorskip("importlinter", reason="the test extra installs import-linter")
    ran = subprocess.run([sys.executable, "-c", "import sys; from importlinter.cli import lint_imports; "
                          "sys.exit(lint_imports(config_filename='pyproject.toml', no_cache=True, no_logo=True))"],
                         cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert ran.returncode == 0, ran.stdout[-4000:] + ran.stderr[-2000:]
    assert "4 kept, 0 broken" in ran.stdout, ran.stdout[-2000:]


def _private_uses(path: str, dotted: str) -> list[str]:
    """Where ``path`` (module ``dotted``) uses another of our modules' underscore names:
    ``from X import _name``, ``import X._mod`` / ``from X._mod import ...``, and
    ``alias._name`` where ``alias`` is bound to one of our modules by an import."""
    package = dotted if path.endswith("__init__.py") else dotted.rpartition(".")[0]
    tree = ast.parse(open(path).read(), path)
    found, aliases = [], {}

    def ours(module: str) -> bool:
        return module.split(".")[0] in PACKAGES

    def private(name: str) -> bool:
        return name.startswith("_") and not name.startswith("__")

    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[: len(parts) - node.level + 1] + ([base] if base else []))
            if not ours(base) or base == dotted:
                continue
            if any(private(part) for part in base.split(".")):
                found.append(f"{path}:{node.lineno}: imports the private module {base}")
            for alias in node.names:
                if private(alias.name):
                    found.append(f"{path}:{node.lineno}: imports {base}.{alias.name}")
                else:
                    aliases[alias.asname or alias.name] = f"{base}.{alias.name}"
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if ours(alias.name):
                    if any(private(part) for part in alias.name.split(".")):
                        found.append(f"{path}:{node.lineno}: imports the private module {alias.name}")
                    aliases[alias.asname or alias.name.split(".")[0]] = alias.asname and alias.name or alias.name
    for node in ast.walk(tree):
        if (isinstance(node, ast.Attribute) and private(node.attr) and isinstance(node.value, ast.Name)
                and node.value.id in aliases):
            found.append(f"{path}:{node.lineno}: uses {aliases[node.value.id]}.{node.attr}")
    return found


def test_no_module_uses_another_modules_private_names():
    found = [use for package in PACKAGES for path, dotted in _modules(package) for use in _private_uses(path, dotted)]
    assert not found, "make these public where they belong:\n" + "\n".join(found)


def test_the_private_name_check_sees_each_form(tmp_path):
    """A check that cannot fail is worse than none: each form of cross-module use is found."""
    forms = {
        "from backends.cuda.launch import _secret\n": "imports backends.cuda.launch._secret",
        "from .launch import _secret\n": "imports backends.cuda.launch._secret",
        "import backends._hidden\n": "private module backends._hidden",
        "from backends import cuda\ncuda._helper()\n": "uses backends.cuda._helper",
        "from harness.oracle import checks as c\nc._scope_reason\n": "uses harness.oracle.checks._scope_reason",
    }
    for source, expected in forms.items():
        path = tmp_path / "probe.py"
        path.write_text(source)
        found = _private_uses(str(path), "backends.cuda.probe")
        assert any(expected in use for use in found), (source, found)
    path = tmp_path / "fine.py"
    path.write_text("from backends.cuda.launch import geometry\nfrom . import launch\nlaunch.plan\n")
    assert _private_uses(str(path), "backends.cuda.fine") == []


def test_ruff_passes():
    """The rules chosen in [tool.ruff] of pyproject.toml, on every Python file we ship or run."""
    pytest.importorskip("ruff", reason="the test extra installs ruff")
    ran = subprocess.run([sys.executable, "-m", "ruff", "check", "--no-cache", "."], cwd=ROOT, capture_output=True,
                         text=True, timeout=300)
    assert ran.returncode == 0, ran.stdout[-4000:] + ran.stderr[-2000:]


RESULTS_PATH = re.compile(r"(?<![\w/.:-])results/[A-Za-z0-9_.+/-]*[A-Za-z0-9_+/-]")
OUTPUT_FOLDERS = ("results/local", "results/.cache")  # where runs and caches go: ignored by git


def _tracked_text_files():
    names = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout.split()
    for name in names:
        if name.startswith("results/") or name.endswith((".parquet", ".png", ".json", ".csv")):
            continue
        path = os.path.join(ROOT, name)
        try:
            with open(path, encoding="utf-8") as handle:
                yield name, handle.read()
        except (OSError, UnicodeDecodeError):
            continue


def test_every_results_path_a_tracked_file_names_exists():
    """Deleting a folder of results/ cannot leave a dangling reference: every ``results/...``
    path named in the code, docs, tests, the known-bug file and the docs' output blocks
    exists. Not checked: the folder runs write to (``results/local/``), templates
    (``<machine>``, ``NAME``) and paths inside git history (``COMMIT:results/...``)."""
    if not os.path.isdir(os.path.join(ROOT, ".git")):
        pytest.skip("not a git checkout: the tracked files are unknown")
    missing = []
    for name, text in _tracked_text_files():
        for match in RESULTS_PATH.finditer(text):
            path = match.group(0).rstrip("/")
            if path.startswith(OUTPUT_FOLDERS) or text[match.end():match.end() + 1] in ("<", "{") or "NAME" in path:
                continue
            if not os.path.exists(os.path.join(ROOT, path)):
                missing.append(f"{name}: {path}")
    assert not missing, "\n".join(missing)
