"""``import backends`` / ``import harness`` import no framework (STYLE.md rule 2)."""

import subprocess
import sys

from conftest import ROOT

FRAMEWORKS = ("torch", "jax", "jaxlib", "cupy", "numba")


def _frameworks_imported_by(code: str) -> set:
    probe = code + "\nimport sys\nprint(' '.join(sorted({m.split('.')[0] for m in sys.modules} & set(%r))))" % (FRAMEWORKS,)
    out = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, check=True)
    return set(out.stdout.split())


def test_importing_backends_and_harness_imports_no_framework():
    code = "import backends, harness, harness.cli, harness.verify, harness.suites, harness.selftest"
    assert _frameworks_imported_by(code) == set()


def test_looking_up_builtin_backends_imports_no_framework():
    code = "import backends\nfor name in backends.names(): backends.get(name)"
    assert _frameworks_imported_by(code) == set()


def test_building_cases_and_the_oracle_imports_no_framework():
    code = (
        "from harness import suites, inputs\nfrom harness.verify import Expected\n"
        "for case in suites.get('smoke'): Expected.of(case, inputs.make(case))"
    )
    assert _frameworks_imported_by(code) == set()
