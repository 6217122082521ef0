"""``python -m harness ...``: the ``gnbench`` command without installing."""

import sys

from .cli import main

sys.exit(main())
