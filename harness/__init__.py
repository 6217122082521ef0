"""groupnorm-bench's harness: cases, the float64 oracle, the tolerance model and verification.

Its sub-packages follow the flow: ``problems`` (what is run), ``oracle`` (what is right),
``execution`` (how it runs: workers, sweeps, timing), ``commands`` (what users run) and
``records`` (what is kept: results, environment, known bugs).

The harness knows backends only through the contract in :mod:`backends`; it never imports
torch, JAX, CuPy or Numba itself (a test proves it).

    >>> import harness
    >>> frame = harness.verify(backends=["torch", "numpy"], suite="smoke")
    >>> frame.groupby("backend").status.value_counts()
"""

from harness.commands.bench import bench
from harness.commands.fuzz import fuzz
from harness.commands.selection import NoVerifiedBackendError, fastest, select
from harness.commands.verify import verify
from harness.oracle.checks import FAILED, STATUSES, Verdict, judge
from harness.oracle.reference import Reference, group_norm_reference
from harness.oracle.tolerances import tolerance, unit_roundoff
from harness.problems import suites
from harness.problems.cases import Case
from harness.problems.plan import plan
from harness.records import known_bugs

from . import results  # noqa: F401  (harness.results.load, the results files)

__all__ = [
    "FAILED",
    "STATUSES",
    "Case",
    "Reference",
    "Verdict",
    "bench",
    "fastest",
    "fuzz",
    "select",
    "NoVerifiedBackendError",
    "group_norm_reference",
    "judge",
    "known_bugs",
    "plan",
    "suites",
    "tolerance",
    "unit_roundoff",
    "verify",
]
