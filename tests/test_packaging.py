"""The repository's promises: CI runs the README's test command; the layout is complete."""

import os

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
                 ".ci/run", "constraints-cpu.txt", "benchmarks"):
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
