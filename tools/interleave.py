"""Calls timed round after round in one process (what the tools share)."""

from __future__ import annotations

import time

import numpy as np


def race(calls: dict, seconds: float, alternate: bool = True) -> dict:
    """Seconds of each zero-argument call in ``calls`` (name -> callable), as an array per
    name: the calls made round after round for ``seconds``, each warmed up twice first.
    With ``alternate`` their order reverses every other round, so a call's place in the
    round does not bias it (an A/A run of two identical calls read 0.89-0.95 with a fixed
    order on small cases, 0.996-1.053 alternating)."""
    for call in calls.values():
        call(), call()
    names = list(calls)
    times = {name: [] for name in names}
    rounds = 0
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        for name in (names[::-1] if alternate and rounds % 2 else names):
            start = time.perf_counter()
            calls[name]()
            times[name].append(time.perf_counter() - start)
        rounds += 1
    return {name: np.array(values) for name, values in times.items()}


def quartiles(values) -> str:
    """``median [q1-q3]`` of ``values``."""
    q1, q2, q3 = np.percentile(values, [25, 50, 75])
    return f"{q2:6.3f} [{q1:.3f}-{q3:.3f}]"
