"""groupnorm-bench's harness: cases, the float64 oracle, the tolerance model and verification.

The harness knows backends only through the contract in :mod:`backends`; it never imports
torch, JAX, CuPy or Numba itself (a test proves it).

    >>> import harness
    >>> frame = harness.verify(backends=["torch", "numpy"], suite="smoke")
    >>> frame.groupby("backend").status.value_counts()
"""

from . import known_bugs, suites
from .bench import bench
from .fuzz import fuzz
from .cases import Case
from .reference import Reference, group_norm_reference
from .selection import NoVerifiedBackendError, fastest, select
from .tolerances import tolerance, unit_roundoff
from .checks import FAILED, STATUSES, Verdict, judge
from .verify import plan, verify

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
