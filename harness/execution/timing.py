"""Timing: one method for every framework.

For a zero-argument callable ``fn`` (one GroupNorm call on prepared device arrays):

1. **First call**, synchronized, timed alone: it includes JIT/compilation (JAX,
   torch.compile, Numba) and is reported apart (``first_call_s``), never mixed into the
   steady-state figures. Then warm-up calls (at least 3, or 50 ms).
2. **Device time**: a sample is ``number`` back-to-back calls between two timestamps
   divided by ``number``, with ``number`` chosen so a sample lasts at least 10 ms (launch
   overhead amortized as in a model's forward pass). The timestamps are the backend's
   device events on the stream its work runs on (torch/CuPy/Numba CUDA events) when it
   has them, else the host clock around the backend's ``wait`` (``block_until_ready``
   for JAX, a device synchronize for the others; a no-op for synchronous CPU work).
3. **Host latency**: single calls, each from the host clock to the completed result: what
   one call costs a caller who needs the answer now (launch overhead included).
4. Samples of both kinds alternate until both have an IQR/median under ``target``
   (3%) with at least ``min_samples`` each, or the ``budget`` (seconds) is spent;
   :attr:`Measurement.noisy` flags a spread that stayed above 10%.
5. With ``flush`` (GPUs, where the backend can), the last-level cache is evicted before
   every device-time sample (``number`` is then 1), outside the timed region.

What a CPU figure includes: the call as a user makes it, allocating its fresh output, on
a warm heap. Workers, and the in-process runner, pin glibc's allocator
(:func:`pin_allocator`): by default glibc
returns freed blocks above a *dynamic* threshold to the OS, so whether a 10 MB output
costs a few thousand page faults per call depended on what the process had allocated
before (the same torch call measured 0.36 ms or 2.9 ms here with only
``MALLOC_MMAP_THRESHOLD_`` differing). Thread counts are recorded per row.
"""

from __future__ import annotations

import ctypes
import dataclasses
import math
import statistics
import time

M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3


def pin_allocator() -> bool:
    """Keep freed memory in the process (glibc): large outputs reuse faulted-in pages
    instead of being mapped fresh on every call. Returns False where glibc is absent."""
    try:
        libc = ctypes.CDLL("libc.so.6")
        return bool(libc.mallopt(M_MMAP_THRESHOLD, 1 << 30)) and bool(libc.mallopt(M_TRIM_THRESHOLD, 2 << 30))
    except (OSError, AttributeError):
        return False


@dataclasses.dataclass(frozen=True)
class Measurement:
    """Raw samples and their statistics (seconds per call).

    Attributes:
        timer: ``device-events`` or ``host-clock``.
        number: calls per device-time sample.
        samples: device time per call, one per sample.
        latency_samples: host-visible seconds of single synchronized calls.
        first_call_s: the first call, synchronized (includes compilation).
        flushed: whether the cache was flushed before each device-time sample.
    """

    timer: str
    number: int
    samples: tuple
    latency_samples: tuple
    first_call_s: float
    flushed: bool = False

    @staticmethod
    def _quartiles(values):
        if len(values) < 2:
            return (values[0], values[0]) if values else (math.nan, math.nan)
        q = statistics.quantiles(values, n=4, method="inclusive")
        return q[0], q[2]

    @property
    def median(self) -> float:
        return statistics.median(self.samples) if self.samples else math.nan

    @property
    def iqr(self) -> float:
        low, high = self._quartiles(self.samples)
        return high - low

    @property
    def min(self) -> float:
        return min(self.samples) if self.samples else math.nan

    @property
    def mean(self) -> float:
        return statistics.fmean(self.samples) if self.samples else math.nan

    @property
    def latency_median(self) -> float:
        return statistics.median(self.latency_samples) if self.latency_samples else math.nan

    @property
    def latency_iqr(self) -> float:
        low, high = self._quartiles(self.latency_samples)
        return high - low

    @property
    def spread(self) -> float:
        """IQR / median of the device-time samples."""
        return self.iqr / self.median if self.median else math.nan

    @property
    def noisy(self) -> bool:
        return not self.spread <= 0.10

    def merged(self, other: Measurement) -> Measurement:
        """The samples of two rounds of the same call (interleaved with other backends)."""
        return dataclasses.replace(
            self,
            samples=self.samples + other.samples,
            latency_samples=self.latency_samples + other.latency_samples,
        )


def _converged(values, target, min_samples) -> bool:
    if len(values) < min_samples:
        return False
    low, high = Measurement._quartiles(values)
    middle = statistics.median(values)
    return middle > 0 and (high - low) / middle < target


class Session:
    """Timing of one callable on one backend and device, in rounds.

    ``start()`` makes the first call, warms up and picks ``number``; each ``round(budget)``
    adds samples; :meth:`measurement` returns everything so far. Rounds let a sweep
    interleave backends on the same case so that slow drifts of the machine hit all alike.
    """

    def __init__(self, fn, backend, device, *, flush=False, min_samples=7, target=0.03,
                 min_sample_s=1e-2, max_number=10_000):
        self.fn, self.backend, self.device = fn, backend, device
        self.flush = bool(flush) and backend.flush_cache(device)
        self.min_samples, self.target = min_samples, target
        self.min_sample_s, self.max_number = min_sample_s, max_number
        self.events = backend.event_timer(device)
        self.samples, self.latency = [], []
        self.number, self.first_call_s = 1, math.nan

    def _call_and_wait(self):
        self.backend.wait(self.fn(), self.device)

    def _latency_sample(self) -> float:
        start = time.perf_counter()
        self._call_and_wait()
        return time.perf_counter() - start

    def _device_sample(self) -> float:
        if self.flush:
            self.backend.flush_cache(self.device)
        fn, number = self.fn, self.number
        if self.events is not None:
            self.backend.synchronize(self.device)
            self.events.start()
            for _ in range(number):
                fn()
            self.events.stop()
            return self.events.elapsed() / number
        start = time.perf_counter()
        for _ in range(number - 1):
            fn()
        self.backend.wait(fn(), self.device)
        return (time.perf_counter() - start) / number

    def start(self) -> Session:
        self.first_call_s = self._latency_sample()
        warm_until, calls = time.perf_counter() + 0.05, 0
        while calls < 3 or time.perf_counter() < warm_until:
            self._call_and_wait()
            calls += 1
        one = min(self._latency_sample() for _ in range(3))
        if not self.flush:
            self.number = int(min(self.max_number, max(1, math.ceil(self.min_sample_s / max(one, 1e-9)))))
        return self

    def round(self, budget: float) -> None:
        """Alternate device-time and latency samples until converged or ``budget`` s spent."""
        deadline = time.perf_counter() + budget
        while True:
            self.samples.append(self._device_sample())
            self.latency.append(self._latency_sample())
            done = (_converged(self.samples, self.target, self.min_samples)
                    and _converged(self.latency, self.target, self.min_samples))
            if done or time.perf_counter() >= deadline:
                return

    def measurement(self) -> Measurement:
        return Measurement(
            timer="device-events" if self.events is not None else "host-clock",
            number=self.number,
            samples=tuple(self.samples),
            latency_samples=tuple(self.latency),
            first_call_s=self.first_call_s,
            flushed=bool(self.flush),
        )


def measure(fn, backend, device, *, budget=1.0, flush=False, min_samples=7, target=0.03) -> Measurement:
    """Time ``fn`` on ``backend``/``device`` in one round (see the module docstring)."""
    session = Session(fn, backend, device, flush=flush, min_samples=min_samples, target=target).start()
    session.round(budget)
    return session.measurement()
