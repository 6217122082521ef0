"""The worker program: ``python -m harness.execution.worker NAME DEVICE FD [--pickled]``.

Serves one (backend, device) over the connection on file descriptor FD (see
:mod:`harness.execution.pool`); with ``--pickled`` the backend itself (registered at run time in
the caller) arrives first on the connection. It is its own program so that starting it never runs the
caller's main module again: a plain script without an ``if __name__ == "__main__":``
guard, a notebook or a test suite can call ``harness.verify`` and friends.
"""

from __future__ import annotations

import signal
import sys
import traceback

import backends as registry
from harness.oracle.checks import failure_text, status_of

from . import tasks
from .timing import pin_allocator


def serve(connection, name: str, device: str, pickled: bool = False) -> None:
    """Serve tasks for (name, device) until the driver sends None or goes away; with
    ``pickled``, the backend itself is the first message (see :func:`pickled_backend`)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the driver handles Ctrl-C
    import faulthandler

    faulthandler.disable()  # a crash is reported as a row, not as a dump on the terminal
    pin_allocator()
    try:
        if pickled:
            import pickle

            backend = pickle.loads(connection.recv_bytes())
        else:
            backend = registry.get(name)
    except BaseException as error:
        backend = None
        startup_error = f"{type(error).__name__}: {error}"
    state: dict = {}
    while True:
        try:
            message = connection.recv()
        except (EOFError, OSError):
            return
        if message is None:
            return
        kind, payload = message
        if backend is None:
            reply = {"status": "error", "reason": f"backend {name!r} failed to load: {startup_error}"}
        else:
            try:
                reply = tasks.handle(backend, device, kind, payload, state)
            except BaseException as error:  # the task layer catches; this is the last net
                reply = {"status": status_of(error), "reason": failure_text(error),
                         "traceback": traceback.format_exc(limit=5)}
        try:
            connection.send(reply)
        except (BrokenPipeError, OSError):
            return



def main(argv=None) -> int:
    from multiprocessing.connection import Connection

    args = list(argv if argv is not None else sys.argv[1:])
    pickled = "--pickled" in args
    name, device, fd = [arg for arg in args if arg != "--pickled"]
    serve(Connection(int(fd)), name, device, pickled)
    return 0


if __name__ == "__main__":
    sys.exit(main())
