"""The timer's mechanics on callables with known cost (no performance targets here)."""

import math
import time

import pytest

from backends import GroupNormBackend
from harness.execution.timing import Measurement, Session, measure, pin_allocator


class Host(GroupNormBackend):
    name = "test-host"

    def group_norm(self, x, num_groups, weight=None, bias=None, eps=1e-5):
        return x

    def from_numpy(self, array, device):
        return array

    def to_numpy(self, array):
        return array


def test_statistics_of_a_measurement():
    m = Measurement("host-clock", 4, (1.0, 2.0, 3.0, 4.0, 100.0), (5.0, 6.0), 9.0)
    assert m.median == 3.0 and m.min == 1.0 and m.mean == 22.0
    assert m.iqr == 2.0 and math.isclose(m.spread, 2 / 3) and m.noisy
    assert m.latency_median == 5.5
    both = m.merged(Measurement("host-clock", 4, (3.0,), (7.0,), 9.0))
    assert len(both.samples) == 6 and len(both.latency_samples) == 3 and both.first_call_s == 9.0


def test_a_sleep_is_timed_as_long_as_it_sleeps():
    m = measure(lambda: time.sleep(0.002), Host(), "cpu", budget=0.5, min_samples=5)
    assert 0.0019 < m.median < 0.004 and 0.0019 < m.latency_median < 0.004
    assert m.timer == "host-clock" and m.number >= 4  # samples last >= 10 ms
    assert len(m.samples) >= 5 and len(m.latency_samples) == len(m.samples)


def test_first_call_is_reported_apart():
    calls = []

    def slow_first():
        calls.append(1)
        if len(calls) == 1:
            time.sleep(0.05)

    m = measure(slow_first, Host(), "cpu", budget=0.2)
    assert m.first_call_s > 0.04 and m.median < 0.001


def test_device_events_are_used_when_the_backend_has_them():
    class FakeEvents:
        def start(self):
            self.t = time.perf_counter()

        def stop(self):
            self.u = time.perf_counter()

        def elapsed(self):
            return 1.0  # a device that always reports 1 s for the whole sample

    class Evented(Host):
        name = "test-evented"

        def event_timer(self, device):
            return FakeEvents()

    session = Session(lambda: None, Evented(), "cuda").start()
    session.round(0.05)
    m = session.measurement()
    assert m.timer == "device-events" and m.median == pytest.approx(1.0 / m.number)


def test_flush_applies_only_where_the_backend_can():
    flushed = []

    class Flushing(Host):
        name = "test-flushing"

        def flush_cache(self, device):
            flushed.append(device)
            return True

    m = measure(lambda: None, Flushing(), "cuda", budget=0.05, flush=True)
    assert m.flushed and m.number == 1 and len(flushed) >= len(m.samples)
    assert not measure(lambda: None, Host(), "cuda", budget=0.05, flush=True).flushed


def test_allocator_pinning_is_available_here():
    assert pin_allocator() is True


def test_the_in_process_runner_pins_the_allocator_as_the_workers_do(monkeypatch):
    """bench --in-process must time the call a worker times: with glibc's allocator
    unpinned, each large fresh output is mapped and faulted in anew (5x slower here)."""
    import harness.execution.timing
    from harness.execution.pool import LocalRunner

    calls = []
    monkeypatch.setattr(harness.execution.timing, "pin_allocator", lambda: calls.append(1) or True)
    LocalRunner("numpy", "cpu")
    assert calls == [1]


@pytest.mark.parametrize("name, device", [("torch", "cpu"), ("numpy", "cpu"), ("jax", "cpu"), ("torch", "cuda"),
                                          ("jax", "cuda"), ("cupy", "cuda"), ("numba-cuda", "cuda")],
                         ids=lambda value: value)
def test_copy_kernels_copy(name, device):
    """The roofline's reference really moves the bytes: the destination holds the pattern."""
    from backends.base import copy_pattern
    from conftest import require

    backend = require(name, device)
    nbytes = (1 << 20) + 3
    kernel = backend.copy_kernel(device, nbytes)
    copied = kernel()
    backend.wait(copied, device)
    assert (backend.to_numpy(copied) == copy_pattern(nbytes)).all()
    assert measure(kernel, backend, device, budget=0.1).median > 0
