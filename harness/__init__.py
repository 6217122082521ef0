"""groupnorm-bench's harness: cases, the float64 oracle, the tolerance model and verification.

The harness knows backends only through the contract in :mod:`backends`; it never imports
torch, JAX, CuPy or Numba itself (a test proves it).

    >>> import harness
    >>> frame = harness.verify(backends=["torch", "numpy"], suite="smoke")
    >>> frame.groupby("backend").status.value_counts()
"""

from harness.records import known_bugs

from harness.problems import suites
from harness.commands.bench import bench
from harness.commands.fuzz import fuzz
from harness.problems.cases import Case
from harness.oracle.reference import Reference, group_norm_reference
from harness.commands.selection import NoVerifiedBackendError, fastest, select
from harness.oracle.tolerances import tolerance, unit_roundoff
from harness.oracle.checks import FAILED, STATUSES, Verdict, judge
from harness.commands.verify import verify
from harness.problems.plan import plan

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
