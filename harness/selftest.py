"""``--plugin harness.selftest``: the verifier's self-test backends (planted bugs and
correct implementations), as the docs' rerun lines load them.

The code lives in :mod:`harness.commands.selftest`; this name is kept for those lines.
"""

from harness.commands.selftest import *  # noqa: F403
from harness.commands.selftest import register_backends  # noqa: F401  (what --plugin calls)
