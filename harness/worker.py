"""The worker program: ``python -m harness.worker NAME DEVICE FD [--pickled]``.

Serves one (backend, device) over the connection on file descriptor FD (see
:mod:`harness.workers`); with ``--pickled`` the backend itself (registered at run time in
the caller) arrives first on the connection. It is its own program so that starting it never runs the
caller's main module again: a plain script without an ``if __name__ == "__main__":``
guard, a notebook or a test suite can call ``harness.verify`` and friends.
"""

from __future__ import annotations

import sys


def main(argv=None) -> int:
    from multiprocessing.connection import Connection

    from .workers import _serve

    args = list(argv if argv is not None else sys.argv[1:])
    pickled = "--pickled" in args
    name, device, fd = [arg for arg in args if arg != "--pickled"]
    _serve(Connection(int(fd)), name, device, pickled)
    return 0


if __name__ == "__main__":
    sys.exit(main())
