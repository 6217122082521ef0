"""What part 8's scripts share: the repo on the path, the allocator pinned, calls timed
round after round (:func:`race`), and the channels-last kernel's statistics pass alone
(:func:`statistics_pass`)."""

import pathlib
import sys
import time

import numba
import numpy as np

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[2]))
from harness.timing import pin_allocator  # noqa: E402

pin_allocator()


def race(calls, seconds, alternate=False):
    """Seconds of each call (a dict of zero-argument callables), as an array per name: the
    calls made round after round for ``seconds``, each warmed up twice first. With
    ``alternate`` (two calls), their order swaps every round."""
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


def statistics_pass(kernels):
    """The channels-last kernel's first pass alone, all waves, as ``kernels`` (a module of
    ``_numba_cpu_kernels`` at some commit) runs it: (x, num_groups, bfloat, stream, threads)."""
    plan, moments = kernels._wave_plan, kernels._block_group_moments

    @numba.njit(parallel=True)
    def statistics(x, num_groups, bfloat, stream, threads):
        samples, positions, channels = x.shape
        block, blocks, wave = plan(x, threads)
        partial = np.zeros((wave * blocks, num_groups, 3), np.float64)
        for first in range(0, samples, wave):
            count = min(wave, samples - first)
            for task in numba.prange(count * blocks):
                n, p0 = first + task // blocks, (task % blocks) * block
                moments(x[n][p0:min(p0 + block, positions)], num_groups, partial[task], bfloat, not stream)
        return partial

    return statistics
