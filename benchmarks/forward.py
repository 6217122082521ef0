"""Forward GroupNorm: time, accuracy and bandwidth of every backend on the workload cases.

Every ``track_*`` here reads lower-is-better, as asv plots and compares every track
(asv issue 1617): accuracy as the worst error/tolerance ratio, bandwidth as milliseconds
per GB moved and as the percentage left below the device's copy bandwidth.
"""

from __future__ import annotations

from .common import BACKEND_DEVICES, CASES, Problem

TRACK_BUDGET_S = 0.5  # harness.execution.timing budget of one bandwidth track


def _device_seconds(problem) -> float:
    """Median device seconds per call, timed by the harness (device events on GPUs)."""
    from harness.execution.timing import measure

    return measure(problem.call, problem.backend, problem.device, budget=TRACK_BUDGET_S).median


def _copy_gb_per_s(device: str) -> float:
    """The device's copy bandwidth, measured now as ``gnbench bench`` measures its roofline."""
    import backends
    from harness.commands.bench import COPY_BYTES, COPY_PREFERENCE
    from harness.execution.timing import measure

    nbytes = COPY_BYTES.get(device, 256 << 20)
    for name in COPY_PREFERENCE:
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
        from harness.oracle.checks import run_case
        from harness.oracle.expected import Expected

        problem = self.problem
        verdict = run_case(problem.backend, problem.case, problem.host, Expected.of(problem.case, problem.host))
        if verdict.ratio == verdict.ratio:  # finite ratio: passed, or a mismatch (> 1) worth a graph
            return verdict.ratio
        raise AssertionError(f"{verdict.status}: {verdict.reason}")

    track_error_ratio.unit = "error/tolerance"

    def track_ms_per_gb(self, backend, case):
        """Inverse bandwidth: device milliseconds per GB a forward pass must move."""
        from harness.commands.bench import min_bytes

        return _device_seconds(self.problem) * 1e3 / (min_bytes(self.problem.case) / 1e9)

    track_ms_per_gb.unit = "ms/GB"

    def track_roofline_gap_pct(self, backend, case):
        """Percent below the device's copy bandwidth (0 = at the copy roofline; can go
        negative when the case fits in cache)."""
        from harness.commands.bench import min_bytes

        achieved = min_bytes(self.problem.case) / _device_seconds(self.problem) / 1e9
        return 100.0 * (1.0 - achieved / _copy_gb_per_s(self.problem.device))

    track_roofline_gap_pct.unit = "%"

    def track_first_call_s(self, backend, case):
        """The first call in a fresh process, synchronized: JIT/compile time included."""
        return self.problem.first_call_s

    track_first_call_s.unit = "seconds"
