"""``python -m harness.asv_runs``: the asv runner and regression gate (used by .github/workflows/asv.yml).

The code lives in :mod:`harness.commands.asv_runs`; this name is kept for the command line.
"""

import sys

from harness.commands.asv_runs import *  # noqa: F403
from harness.commands.asv_runs import main

if __name__ == "__main__":
    sys.exit(main())
