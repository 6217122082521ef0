"""``python -m harness.launches``: the CUDA launch model's tables (used by .ci/gpu_check.sh).

The code lives in :mod:`harness.commands.launches`; this name is kept for the command line.
"""

import sys

from harness.commands.launches import *  # noqa: F403
from harness.commands.launches import main

if __name__ == "__main__":
    sys.exit(main())
