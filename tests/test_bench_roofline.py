"""The bench's roofline: the copy timed at the sweep's start, and again right before each
case large enough for the share of the roofline to mean something (harness.bench)."""

import importlib
import math

import pytest

import harness

bench_module = importlib.import_module("harness.commands.bench")  # harness.bench is also the function

CASES = ["2x8x4-g2-float32-contiguous-normal-s0", "2x16x8-g4-float32-channels_last-normal-s0"]


@pytest.fixture
def copies(monkeypatch):
    """Every copy the sweep times, as (device, budget, (GB/s, backend)), in order."""
    timed = []
    real = bench_module.BenchSweep.time_copy

    def counted(self, device, budget):
        copy = real(self, device, budget)
        timed.append((device, budget, copy))
        return copy

    monkeypatch.setattr(bench_module.BenchSweep, "time_copy", counted)
    return timed


def test_small_cases_share_the_copy_timed_at_the_start(copies):
    frame = harness.bench(backends=["numpy", "torch"], cases=CASES, budget=0.05, isolate=False)
    start, backend = frame.attrs["copy_gbps"]["cpu"]
    assert [(device, budget) for device, budget, _ in copies] == [("cpu", bench_module.COPY_BUDGET["start"])]
    assert backend == "torch" and start > 0
    assert (frame.copy_gbps == start).all() and (frame.copy_backend == "torch").all()
    timed = frame[frame.status == "passed"]
    assert len(timed) == 4 and (abs(timed.roofline_pct - 100 * timed.gbps / start) < 1e-9).all()


def test_a_large_case_gets_the_copy_timed_again_just_before_it(copies, monkeypatch):
    monkeypatch.setattr(bench_module, "COPY_AGAIN_BYTES", 0)  # every case counts as large
    frame = harness.bench(backends=["numpy", "torch"], cases=CASES, budget=0.05, isolate=False)
    again = bench_module.COPY_BUDGET["again"]
    assert [(device, budget) for device, budget, _ in copies] == [
        ("cpu", bench_module.COPY_BUDGET["start"]), ("cpu", again), ("cpu", again)]
    before = {case_id: copies[1 + i][2][0] for i, case_id in enumerate(CASES)}  # the sweep runs the cases in order
    for case_id, rows in frame.groupby("case_id"):
        copy = before[case_id]
        assert copy > 0 and math.isfinite(copy) and (rows.copy_gbps == copy).all(), case_id  # the copy timed before it
        assert (abs(rows.roofline_pct - 100 * rows.gbps / copy) < 1e-9).all(), case_id
    assert frame.attrs["copy_gbps"]["cpu"][0] == copies[0][2][0]  # the start's figure stays in the attributes
