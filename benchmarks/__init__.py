"""airspeed velocity (asv) suite for groupnorm-bench: thin classes over the harness.

Which code the benchmarks import. asv benchmarks the project as it exists at a commit;
this suite takes ``backends`` and ``harness`` from, in order:

1. ``$GNBENCH_ASV_CODE``, a checkout of the commit being measured (the regression gate
   and ``python -m harness.asv_runs`` set it to a ``git worktree`` of each commit, so
   the current benchmark suite measures each commit's own code, as ``asv continuous``
   would with environments it builds);
2. else, in an environment asv did not build (``--python=same``, environment type
   ``existing``), the tree this ``benchmarks/`` folder sits in: the working tree, whatever
   ``--set-commit-hash`` says;
3. else (a ``virtualenv`` environment asv built), the project installed in it.
"""

import os
import sys
from pathlib import Path


def _code_root():
    explicit = os.environ.get("GNBENCH_ASV_CODE")
    if explicit:
        return Path(explicit).resolve()
    if os.environ.get("ASV_ENV_TYPE", "existing") == "existing":
        return Path(__file__).resolve().parent.parent
    return None


CODE_ROOT = _code_root()
if CODE_ROOT is not None:
    if not (CODE_ROOT / "harness").is_dir():
        raise ImportError(f"GNBENCH_ASV_CODE={CODE_ROOT} holds no harness/ package (it must be a checkout "
                          "of groupnorm-bench)")
    sys.path.insert(0, str(CODE_ROOT))

# Where the harness modules the benchmarks use live. The gate runs this suite against older
# commits' code, whose harness kept every module at its top (harness/timing.py, ...) before
# the sub-packages of 2026-12-08; this maps each name to both places.
_HARNESS_PACKAGES = {"timing": "execution", "tasks": "execution", "memory": "execution", "cases": "problems",
                     "inputs": "problems", "checks": "oracle", "expected": "oracle", "bench": "commands"}


def harness_module(name: str):
    """harness's module ``name`` (``timing``, ``checks``, ...) as the code being measured
    has it: in its sub-package, or at the top of ``harness`` in older commits."""
    import importlib

    try:
        return importlib.import_module(f"harness.{_HARNESS_PACKAGES[name]}.{name}")
    except ModuleNotFoundError as error:
        if not (error.name or "").startswith(f"harness.{_HARNESS_PACKAGES[name]}"):
            raise
        return importlib.import_module(f"harness.{name}")
