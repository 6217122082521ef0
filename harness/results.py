"""``harness.results``: the results schema and its files (``harness.results.load(...)``).

The code lives in :mod:`harness.records.results`; this name is kept for users' scripts.
"""

from harness.records.results import *  # noqa: F403
from harness.records.results import BENCH_COLUMNS, COLUMNS, SCHEMA_VERSION, load  # noqa: F401
