"""The worker program: ``python -m harness.worker NAME DEVICE FD``.

Serves one (backend, device) over the connection on file descriptor FD (see
:mod:`harness.workers`). It is its own program so that starting it never runs the
caller's main module again: a plain script without an ``if __name__ == "__main__":``
guard, a notebook or a test suite can call ``harness.verify`` and friends.
"""

from __future__ import annotations

import sys


def main(argv=None) -> int:
    from multiprocessing.connection import Connection

    from .workers import _serve

    name, device, fd = argv if argv is not None else sys.argv[1:]
    _serve(Connection(int(fd)), name, device)
    return 0


if __name__ == "__main__":
    sys.exit(main())
