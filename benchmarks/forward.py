"""Forward GroupNorm: time, accuracy and bandwidth of every backend on the workload cases.

Every ``track_*`` here reads lower-is-better, as asv plots and compares every track
(asv issue 1617): accuracy as the worst error/tolerance ratio, bandwidth as milliseconds
per GB moved and as the percentage left below the device's copy bandwidth.
"""

from __future__ import annotations

from . import harness_module
from .common import BACKEND_DEVICES, CASES, Problem

TRACK_BUDGET_S = 0.5  # the timing budget of one bandwidth track (seconds)


def _device_seconds(problem) -> float:
    """Median device seconds per call, timed by the harness (device events on GPUs)."""
    return harness_module("timing").measure(problem.call, problem.backend, problem.device, budget=TRACK_BUDGET_S).median


def _copy_gb_per_s(device: str) -> float:
    """The device's copy bandwidth, measured now as ``gnbench bench`` measures its roofline."""
    import backends

    bench, measure = harness_module("bench"), harness_module("timing").measure
    nbytes = bench.COPY_BYTES.get(device, 256 << 20)
    for name in bench.COPY_PREFERENCE:
        backend = backends.get(name)
        if backend.availability(device) is None:
            kernel = backend.copy_kernel(device, nbytes)
            if kernel is not None:
                return 2 * nbytes / measure(kernel, backend, device, budget=TRACK_BUDGET_S).median / 1e9
    raise NotImplementedError(f"no backend offers a copy kernel on {device}: no roofline")


class Forward:
    """``group_norm(x, num_groups, weight, bias, eps)`` on prepared device arrays."""

    params = [BACKEND_DEVICES, CASES]
    param_names = ["backend", "case"]
    timeout = 300  # seconds for setup and one benchmark (torch.compile compiles in setup)

    def setup(self, backend, case):
        self.problem = Problem(backend, case)

    def time_forward(self, backend, case):
        """One call, synchronized: the body is the call and its wait."""
        self.problem.call_and_wait()

    def track_error_ratio(self, backend, case):
        """Worst |error| / tolerance against the float64 oracle (<= 1 passes)."""
        problem = self.problem
        expected = harness_module("expected").Expected.of(problem.case, problem.host)
        verdict = harness_module("checks").run_case(problem.backend, problem.case, problem.host, expected)
        if verdict.ratio == verdict.ratio:  # finite ratio: passed, or a mismatch (> 1) worth a graph
            return verdict.ratio
        raise AssertionError(f"{verdict.status}: {verdict.reason}")

    track_error_ratio.unit = "error/tolerance"

    def track_ms_per_gb(self, backend, case):
        """Inverse bandwidth: device milliseconds per GB a forward pass must move."""
        return _device_seconds(self.problem) * 1e3 / (harness_module("bench").min_bytes(self.problem.case) / 1e9)

    track_ms_per_gb.unit = "ms/GB"

    def track_roofline_gap_pct(self, backend, case):
        """Percent below the device's copy bandwidth (0 = at the copy roofline; can go
        negative when the case fits in cache)."""
        achieved = harness_module("bench").min_bytes(self.problem.case) / _device_seconds(self.problem) / 1e9
        return 100.0 * (1.0 - achieved / _copy_gb_per_s(self.problem.device))

    track_roofline_gap_pct.unit = "%"

    def track_first_call_s(self, backend, case):
        """The first call in a fresh process, synchronized: JIT/compile time included."""
        return self.problem.first_call_s

    track_first_call_s.unit = "seconds"
