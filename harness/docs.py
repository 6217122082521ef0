"""``python -m harness.docs``: refills the README's and the docs pages' output blocks.

The code lives in :mod:`harness.commands.docs`; this name is kept for the command line.
"""

import sys

from harness.commands.docs import *  # noqa: F403
from harness.commands.docs import main

if __name__ == "__main__":
    sys.exit(main())
