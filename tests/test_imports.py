"""``import backends`` / ``import harness`` import no framework (STYLE.md rule 2)."""

import subprocess
import sys

import pytest

from conftest import ROOT

FRAMEWORKS = ("torch", "jax", "jaxlib", "cupy", "numba")


def _frameworks_imported_by(code: str) -> set:
    probe = code + ("\nimport sys\nprint('IMPORTED', ' '.join(sorted({m.split('.')[0] for m in sys.modules} & "
                    f"set({FRAMEWORKS!r}))))")
    out = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert out.returncode == 0, out.stderr[-3000:]
    [line] = [line for line in out.stdout.splitlines() if line.startswith("IMPORTED")]
    return set(line.split()[1:])


def test_importing_backends_and_harness_imports_no_framework():
    """Every module of harness (walked, so a new one is covered), and every module of
    backends but the compiled kernels themselves (which are the framework's code)."""
    code = (
        "import importlib, pkgutil, backends, harness\n"
        "for m in pkgutil.walk_packages(harness.__path__, 'harness.'):\n"
        "    if not m.name.endswith('__main__'):\n"
        "        importlib.import_module(m.name)\n"
        "for m in pkgutil.walk_packages(backends.__path__, 'backends.'):\n"
        "    if m.name not in ('backends.numba_cpu.kernels', 'backends.numba_cpu.halves', 'backends.numba_cpu.tiles',\n"
        "                      'backends.numba_cpu.stores', 'backends.cuda.numba_kernels'):\n"
        "        importlib.import_module(m.name)"
    )
    assert _frameworks_imported_by(code) == set()


def test_looking_up_builtin_backends_imports_no_framework():
    code = "import backends\nfor name in backends.names(): backends.get(name)"
    assert _frameworks_imported_by(code) == set()


def test_building_cases_and_the_oracle_imports_no_framework():
    code = (
        "from harness.problems import suites, inputs\nfrom harness.oracle.expected import Expected\n"
        "for case in suites.get('smoke'): Expected.of(case, inputs.make(case))"
    )
    assert _frameworks_imported_by(code) == set()


# Every command of the CLI, with arguments that keep it short; each really runs (and the
# ones that verify or time use the torch and JAX workers).
CLI_COMMANDS = {
    "list": ["list"],
    "cases": ["cases", "--suite", "smoke"],
    "verify": ["verify", "--suite", "smoke", "--backends", "torch,jax,numpy"],
    "bench": [
        "bench",
        "--case",
        "2x8x4x4-g4-float32-contiguous-normal-s0",
        "--backends",
        "torch,jax",
        "--budget",
        "0.05",
    ],
    "select": ["select", "--shape", "2,8,4,4", "--num-groups", "4", "--backends", "torch,jax", "--budget", "0.05"],
    "report": ["report", "tests/data/verify-adversarial-schema2.csv"],
    "export": ["export", "tests/data/verify-adversarial-schema2.csv"],
    "fuzz": ["fuzz", "--backends", "torch", "--budget", "3", "--dtypes", "float32"],
    # selftest --suite default: tests/test_selftest.py checks the same run's imports
}


def test_every_cli_command_is_probed():
    from harness.cli import COMMANDS

    assert set(CLI_COMMANDS) | {"selftest"} == set(COMMANDS)


@pytest.mark.parametrize("command", sorted(CLI_COMMANDS))
def test_cli_command_imports_no_framework_in_the_driver(command, tmp_path):
    args = CLI_COMMANDS[command] + (
        ["--out", str(tmp_path / "out")] if command in ("verify", "bench", "report", "fuzz") else []
    ) + (["--csv", str(tmp_path / "rows.csv")] if command == "export" else [])
    code = (
        f"import contextlib, io\nfrom harness import cli\nwith contextlib.redirect_stdout(io.StringIO()):\n"
        f"    status = cli.main({args!r})\nassert status in (0, 1), status"
    )
    assert _frameworks_imported_by(code) == set()


PUBLIC_CALLS = {
    "verify": "harness.verify(backends=['torch', 'jax', 'numpy'], suite='smoke')",
    "bench": "harness.bench(backends=['torch', 'jax'], cases=['2x8x4x4-g4-float32-contiguous-normal-s0'], budget=0.05)",
    "select+fastest": "harness.select((2, 8, 4, 4), 4, backends=['torch', 'jax'], budget=0.05)\n"
    "harness.fastest((2, 8, 4, 4), 4, backends=['torch', 'jax'], budget=0.05)",  # cached
    "fuzz": "harness.fuzz(backends=['torch'], budget=3, dtypes=['float32'])",
    "results.load": "harness.results.load('tests/data')",
    # selftest.run: tests/test_selftest.py checks it on the run it judges
}


@pytest.mark.parametrize("call", sorted(PUBLIC_CALLS))
def test_public_function_imports_no_framework_in_the_caller(call, tmp_path):
    """(``fastest`` returns a backend object: the framework loads when the caller uses it.)"""
    code = f"import os\nos.environ['GNBENCH_CACHE'] = {str(tmp_path)!r}\nimport harness\n"
    code += PUBLIC_CALLS[call]
    assert _frameworks_imported_by(code) == set()
