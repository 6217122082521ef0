"""``python -m backends.sass``: the CuPy kernels' static evidence (registers, occupancy,
instructions per element) against their budget.

The code lives in :mod:`backends.cuda.sass`; this name is kept for the command line.
"""

import sys

from backends.cuda.sass import *  # noqa: F403
from backends.cuda.sass import main

if __name__ == "__main__":
    sys.exit(main())
