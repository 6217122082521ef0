"""``--plugin harness.ensemble``: the correct implementations the tolerance model must
pass (:mod:`harness.commands.ensemble`), without the self-test's planted bugs."""

from harness.commands.ensemble import *  # noqa: F403
from harness.commands.ensemble import register_backends  # noqa: F401  (what --plugin calls)
