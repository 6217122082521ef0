"""``python -m harness.crosscheck``: times the same call in and out of the harness.

The code lives in :mod:`harness.commands.crosscheck`; this name is kept for the command line.
"""

import sys

from harness.commands.crosscheck import *  # noqa: F403
from harness.commands.crosscheck import main

if __name__ == "__main__":
    sys.exit(main())
