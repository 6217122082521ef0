"""Benchmark sweeps: verify each case on the prepared inputs, then time it.

For every case, each (backend, device) worker first verifies the case on exactly the
inputs it will time (a row whose status is not ``passed`` is kept, marked, and never
counts as fastest), then times the call with :mod:`harness.execution.timing` in rounds that
alternate between backends, so a slow drift of the machine hits all of them alike.

Roofline: a forward GroupNorm must read x and write y once, and read weight and bias:
``bytes = 2 * numel * itemsize + 2 * C * param_itemsize``. The backward alone must read
x (or y) and grad_y and write grad_x, and read the weight and write grad_weight and
grad_bias: ``3 * numel * itemsize + 3 * C * param_itemsize`` (its floor, 3·E·b); a
training step is both: ``5 * numel * itemsize + 5 * C * param_itemsize``. (The statistics
a backward reuses from the forward are 2 numbers per group: left out.) GB/s is that over the median
device time; ``roofline_pct`` compares it with the device's copy bandwidth (a device
copy reads and writes its bytes once), measured by the same timer, in the same run, on
the same device: at the start of the sweep, and again right before each case that moves
at least :data:`COPY_AGAIN_BYTES` (its rows' ``copy_gbps``). A shared host's memory
bandwidth drifts by tens of percent within minutes, and it is on cases that large, out
of the cache, that the share of the roofline means something (channels-last float32
1x128x512x512/32, one kernel: 78-107% of a copy timed at a sweep's start in two runs,
68% with the copy timed beside it; ``python -m tools.roofline`` times the copy beside the
kernel, call for call).
"""

from __future__ import annotations

import json
import math

from backends.dtypes import numpy_dtype
from harness.execution.sweep import Sweep
from harness.oracle.checks import Verdict
from harness.problems.cases import Case
from harness.records.results import BENCH_COLUMNS, COLUMNS

ROUNDS = 3
COPY_BYTES = {"cpu": 256 << 20, "cuda": 1 << 30}
COPY_AGAIN_BYTES = 64 << 20  # a case moving this much gets the copy timed again just before it
COPY_BUDGET = {"start": 2.0, "again": 1.0}  # seconds of copy timing at the sweep's start, and before a case
COPY_PREFERENCE = ("torch", "cupy", "numpy", "jax")  # which framework's copy is the reference


TENSOR_PASSES = {"forward": 2, "backward": 3, "train": 5}  # x-sized tensors each pass must move


def min_bytes(case: Case) -> int:
    """Bytes the case's pass cannot avoid moving (see the module docstring): forward
    2·E·b, backward 3·E·b, train 5·E·b, plus as many per-channel parameter vectors."""
    itemsize = numpy_dtype(case.dtype).itemsize
    tensors = TENSOR_PASSES[case.pass_]
    params = (
        0 if case.affine == "none" else tensors * case.shape[1] * numpy_dtype(case.param_dtype or case.dtype).itemsize
    )
    return tensors * case.numel * itemsize + params


class BenchSweep(Sweep):
    """A :class:`harness.execution.sweep.Sweep` that also times every case (see the module doc)."""

    def __init__(self, the_plan, *, budget: float = 1.0, flush: bool = False, **kwargs):
        super().__init__(the_plan, **kwargs)
        self.budget, self.flush = budget, flush
        self.copy = {}  # device -> (GB/s, backend that measured it), at the sweep's start
        self.copy_before = {}  # (case id, device) -> (GB/s, backend): timed again just before a large case

    @staticmethod
    def options(args) -> dict:
        return {"budget": args.budget, "flush": args.flush_l2}

    def worker_environment(self) -> dict:
        return {}  # timing: the frameworks' own thread behaviour, as users get it

    @property
    def columns(self) -> list:
        return list(COLUMNS) + list(BENCH_COLUMNS)

    def start(self) -> BenchSweep:
        super().start()
        for device in sorted({device for _, device in self.pairs}):
            copy = self.time_copy(device, COPY_BUDGET["start"])
            if copy is not None:
                self.copy[device] = copy
        return self

    def time_copy(self, device: str, budget: float):
        """(GB/s, backend) of ``device``'s copy (:data:`COPY_BYTES`), by the first backend of
        :data:`COPY_PREFERENCE` that offers one, or None when none does."""
        candidates = sorted(
            (pair for pair in self.pairs if pair[1] == device and not self.simulated(pair)),
            key=lambda pair: COPY_PREFERENCE.index(pair[0]) if pair[0] in COPY_PREFERENCE else 99,
        )
        nbytes = COPY_BYTES.get(device, 256 << 20)
        for pair in candidates:
            reply = self.runners[pair].call("copy", (nbytes, budget), timeout=self.timeout)
            measurement = reply.get("measurement")
            if measurement is not None and measurement.median > 0:
                return 2 * nbytes / measurement.median / 1e9, pair[0]
        return None

    def simulated(self, pair) -> bool:
        return bool(self.info[pair].get("simulated"))

    def run_pairs(self, case: Case, shared, pairs) -> dict:
        from harness.execution import memory
        from harness.execution.sweep import case_timeout

        timeout = case_timeout(case, self.timeout)
        if min_bytes(case) >= COPY_AGAIN_BYTES:  # the roofline of this moment, not the sweep's start
            for device in sorted({device for name, device in pairs if not self.simulated((name, device))}):
                copy = self.time_copy(device, COPY_BUDGET["again"]) if device in self.copy else None
                if copy is not None:
                    self.copy_before[case.id, device] = copy
        results, timed = {}, []
        for name, device in pairs:
            on_device = case.on(device)
            if self.simulated((name, device)):  # an emulated device: verified, never timed
                results[name, device] = self.runners[name, device].call(
                    "verify", (on_device, shared, memory.device_bytes(on_device)), timeout=timeout
                )
                continue
            reply = self.runners[name, device].call(
                "bench_start", (on_device, shared, memory.device_bytes(on_device), self.flush), timeout=timeout
            )
            results[name, device] = reply
            if reply.get("timed"):
                timed.append((name, device))
        for _ in range(ROUNDS):
            for pair in list(timed):
                reply = self.runners[pair].call("bench_round", self.budget / ROUNDS, timeout=timeout + 10 * self.budget)
                if not reply.get("ok"):  # died or raised while timing: that is the row's status
                    reason = "while timing: " + reply.get("reason", "")
                    results[pair] = {"verdict": Verdict(reply.get("status", "error"), reason)}
                    timed.remove(pair)
        for pair in timed:
            reply = self.runners[pair].call("bench_end", None, timeout=timeout)
            results[pair]["measurement"] = reply.get("measurement")
        return results

    def extra_columns(self, result: dict, row: dict) -> dict:
        measurement = result.get("measurement")
        case = Case.from_id(row["case_id"])
        nbytes = min_bytes(case)
        copy_gbps, copy_with = self.copy_before.get(
            (row["case_id"], row["device"]), self.copy.get(row["device"], (math.nan, ""))
        )
        extra = dict.fromkeys(BENCH_COLUMNS, math.nan)
        extra.update(
            bytes=nbytes,
            copy_gbps=copy_gbps,
            copy_backend=copy_with,
            flushed=self.flush,
            threads=self.info[row["backend"], row["device"]].get("threads"),
            timer="",
            samples="[]",
            latency_samples="[]",
            noisy=False,
        )
        if measurement is None:
            return extra
        median = measurement.median
        gbps = nbytes / median / 1e9 if median > 0 else math.nan
        extra.update(
            median_s=median,
            iqr_s=measurement.iqr,
            min_s=measurement.min,
            mean_s=measurement.mean,
            count=len(measurement.samples),
            number=measurement.number,
            latency_median_s=measurement.latency_median,
            latency_iqr_s=measurement.latency_iqr,
            timer=measurement.timer,
            noisy=measurement.noisy,
            spread=measurement.spread,
            samples=json.dumps([float(s) for s in measurement.samples]),
            latency_samples=json.dumps([float(s) for s in measurement.latency_samples]),
            gbps=gbps,
            roofline_pct=100 * gbps / copy_gbps if copy_gbps == copy_gbps else math.nan,
        )
        verdict = result.get("verdict")
        first = verdict.call_s if verdict is not None else math.nan
        extra["first_call_s"] = first
        extra["compile_s"] = max(first - measurement.latency_median, 0.0) if first == first else math.nan
        return extra

    def report(self, frame, console) -> None:
        console.print(bench_table(frame))
        for name, device in sorted(pair for pair in self.pairs if self.simulated(pair)):
            console.print(
                f"not timed: {name}:{device} ran on a device emulated on the host (Numba's CUDA "
                f"simulator): its rows are verified, its times would say nothing"
            )
        for device, (gbps, backend) in sorted(self.copy.items()):
            again = sorted(copy for (_, where), (copy, _) in self.copy_before.items() if where == device)
            line = (
                f"roofline: {device} copy bandwidth {gbps:.1f} GB/s at the start (measured with {backend}'s copy, "
                f"same timer)"
            )
            large = f"{COPY_AGAIN_BYTES >> 20} MiB or more"
            if len(again) == 1:
                line += f"; {again[0]:.1f} GB/s timed again before the one case of {large} (its rows' roofline)"
            elif again:
                line += (
                    f"; {again[0]:.1f}-{again[-1]:.1f} GB/s timed again before each of the {len(again)} cases of "
                    f"{large} (their rows' roofline)"
                )
            console.print(line)
        if (frame.roofline_pct > 100).any():
            console.print(
                "* above 100% of the copy roofline: not an error. The roofline is a copy of one large "
                "buffer through memory; this case's input and output fit in the cache, so back-to-back "
                "calls run from cache, faster than memory"
            )
        warning = noisy_warning(frame)
        if warning:
            console.print(f"[yellow]warning:[/] {warning}")


def noisy_warning(frame) -> str:
    """A sentence naming the rows whose spread stayed above 10% (empty when none)."""
    noisy = frame[frame.noisy.fillna(False).astype(bool)]
    if noisy.empty:
        return ""
    names = ", ".join(f"{r.backend}:{r.device} {r.case_id}" for r in noisy.head(5).itertuples())
    more = f" and {len(noisy) - 5} more" if len(noisy) > 5 else ""
    return (
        f"{len(noisy)} row(s) kept an IQR above 10% of the median after the budget ({names}{more}); "
        "raise --budget or quiet the machine"
    )


def with_speedups(frame):
    """Add ``speedup_vs_torch``: torch's median over each row's, same case and device,
    where both rows verified."""
    import pandas as pd

    if frame.empty:
        return frame
    torch_rows = frame[(frame.backend == "torch") & (frame.status == "passed")]
    reference = torch_rows.set_index(["case_id", "device"]).median_s
    keys = pd.MultiIndex.from_frame(frame[["case_id", "device"]])
    torch_median = reference.reindex(keys).to_numpy()
    speedup = torch_median / frame.median_s.to_numpy()
    frame = frame.copy()
    frame["speedup_vs_torch"] = [s if status == "passed" else math.nan for s, status in zip(speedup, frame.status)]
    return frame


def bench_table(frame):
    """One rich table, grouped by case: latency, GB/s, % of roofline, speedup vs torch."""
    from rich.table import Table

    frame = with_speedups(frame)
    table = Table(title="bench (device time: median of back-to-back calls; latency: one synchronized call)")
    for column in (
        "case",
        "backend",
        "status",
        "median ms",
        "IQR %",
        "latency ms",
        "GB/s",
        "% roofline",
        "vs torch",
        "compile s",
    ):
        table.add_column(column, justify="left" if column in ("case", "backend", "status") else "right")

    def number(value, form):
        return "-" if value != value else format(value, form)

    previous = None
    for _, row in frame.iterrows():
        case = row.case_id if row.case_id != previous else ""
        if previous is not None and case:
            table.add_section()
        previous = row.case_id
        status = row.status if row.status == "passed" else f"[red]{row.status}[/]"
        spread = 100 * row.iqr_s / row.median_s if row.median_s == row.median_s and row.median_s else math.nan
        table.add_row(
            case,
            f"{row.backend}:{row.device}",
            status,
            number(1e3 * row.median_s, ".4g"),
            number(spread, ".1f"),
            number(1e3 * row.latency_median_s, ".4g"),
            number(row.gbps, ".1f"),
            number(row.roofline_pct, ".0f") + ("*" if row.roofline_pct > 100 else ""),
            number(row.speedup_vs_torch, ".2f"),
            number(row.compile_s, ".2f"),
        )
    return table


def bench(
    backends=None,
    suite="sd-unet",
    devices=None,
    dtypes=None,
    cases=None,
    *,
    pass_=None,
    budget: float = 1.0,
    flush: bool = False,
    isolate: bool = True,
    timeout: float = 120.0,
):
    """Verify then time backends on a suite; one row per (case, backend, device).

    Args:
        backends, suite, devices, dtypes, cases, pass_: as for :func:`harness.verify`.
            ``backward`` times the backward alone, on the residuals of one forward;
            ``train`` times a training step (forward_train, then backward).
        budget: seconds of timing per case and backend (split in interleaved rounds).
        flush: evict the GPU's L2 cache before every timed sample (where the backend can).
        isolate: run each (backend, device) in its own worker process (default).
        timeout: seconds a worker may take per case, plus 0.1 s per million elements.

    Returns:
        pandas.DataFrame: the verification columns (:data:`harness.results.COLUMNS`), then
        :data:`harness.results.BENCH_COLUMNS` (median/IQR/min/mean of device time, host
        latency, raw samples, first-call and compile time, bytes, GB/s, copy GB/s, % of
        roofline, speedup against torch, threads, timer).
    """
    from harness.problems.plan import plan

    if budget <= 0:
        from backends.errors import InvalidArgumentError

        raise InvalidArgumentError(f"budget must be a positive number of seconds; got {budget}")
    running = BenchSweep(
        plan(backends, suite, devices, dtypes, cases, pass_),
        budget=budget,
        flush=flush,
        isolate=isolate,
        timeout=timeout,
    ).start()
    frame = running.frame()
    attrs = dict(frame.attrs, copy_gbps=dict(running.copy))
    frame = with_speedups(frame)
    frame.attrs.update(attrs)
    return frame
