"""The repository's promises: CI runs the README's test command; the layout is complete;
the built wheel holds every module and data file."""

import os
import subprocess
import sys
import zipfile

import tomllib

from conftest import ROOT


def _read(path):
    with open(os.path.join(ROOT, path)) as handle:
        return handle.read()


def test_ci_runs_the_readme_test_command():
    command = [line for line in _read(".ci/run").splitlines() if line and not line.startswith(("#", "set ", "cd "))]
    assert len(command) == 1
    assert command[0].strip() in _read("README.md")


def test_top_level_layout():
    for path in ("pyproject.toml", "backends", "harness", "tests", "asv.conf.json", "results", "README.md",
                 ".ci/run", "constraints-cpu.txt", "benchmarks", "groupnorm_bench", "docs", "tools", "CHANGELOG.md",
                 "mkdocs.yml", "results/README.md"):
        assert os.path.exists(os.path.join(ROOT, path)), path


def test_pyproject_extras_and_script():
    project = tomllib.loads(_read("pyproject.toml"))["project"]
    assert project["name"] == "groupnorm-bench"
    assert project["scripts"]["gnbench"] == "harness.cli:main"
    assert {"torch", "jax", "numba", "cupy", "all", "test"} <= set(project["optional-dependencies"])
    core = " ".join(project["dependencies"])
    assert not any(framework in core for framework in ("torch", "jax", "numba", "cupy"))


def test_constraints_pin_the_cpu_torch():
    assert "torch==2.13.0" in _read("constraints-cpu.txt").splitlines()


def test_asv_config_is_valid():
    """asv.conf.json as asv reads it (JSON with // comments): the paths the README names."""
    from asv.config import Config

    config = Config.load(os.path.join(ROOT, "asv.conf.json"))  # raises on a malformed file
    assert os.path.isdir(os.path.join(ROOT, config.benchmark_dir))
    assert config.environment_type == "existing" and config.branches == ["main"]
    # a plain `asv run` writes into the ignored .asv/; only harness.asv_runs record writes the
    # committed history results/asv
    assert config.results_dir.startswith(".asv/") and config.html_dir.startswith(".asv/")
    with open(os.path.join(ROOT, ".gitignore")) as handle:
        assert "/.asv/" in handle.read().split()


def test_the_built_wheel_holds_every_module_and_data_file(tmp_path):
    """An editable install hides a package that pyproject.toml forgot (its files are read
    from the checkout): build the wheel from a clean copy of the tree (a stale build/
    folder would hide it too) and compare the two."""
    import shutil

    import pytest

    pytest.importorskip("setuptools", reason="building the wheel needs setuptools")
    source = tmp_path / "source"
    shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns(".git", ".venv", "build", "*.egg-info", "__pycache__",
                                                                 ".asv", "results", ".pytest_cache"))
    built = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                            "-w", str(tmp_path / "wheel"), str(source)], capture_output=True, text=True, timeout=600)
    assert built.returncode == 0, built.stdout[-2000:] + built.stderr[-2000:]
    [wheel] = (tmp_path / "wheel").glob("groupnorm_bench-*.whl")
    shipped = set(zipfile.ZipFile(wheel).namelist())
    expected = set()
    for package in ("backends", "harness", "groupnorm_bench"):
        for folder, dirs, files in os.walk(os.path.join(ROOT, package)):
            dirs[:] = [d for d in dirs if d != "__pycache__"]
            for name in files:
                if name.endswith((".py", ".cu", ".toml", ".json")):
                    expected.add(os.path.relpath(os.path.join(folder, name), ROOT).replace(os.sep, "/"))
    assert {"harness/records/known_bugs.toml", "backends/cuda/groupnorm.cu", "backends/cuda/sass_budget.json",
            "backends/numba_cpu/kernels.py", "harness/execution/worker.py"} <= expected
    assert not expected - shipped, f"missing from the wheel: {sorted(expected - shipped)}"
