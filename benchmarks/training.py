"""Training GroupNorm: the backward alone and a training step, with their tracks.

``time_backward`` times ``backward(grad_y, saved)`` on the residuals of one forward made
in setup (the backward a training step pays); ``time_train`` times ``forward_train`` then
``backward`` (the step itself). The tracks read lower-is-better like the forward's
(:mod:`benchmarks.forward`): the worst error/tolerance ratio over y and the three
gradients (the train pass), and milliseconds per GB of the pass's floor
(:func:`harness.commands.bench.min_bytes`: 3·E·b for the backward, 5·E·b for a step).
"""

from __future__ import annotations

from . import harness_module
from .common import BACKEND_DEVICES, TRAINING_CASES, Problem
from .forward import TRACK_BUDGET_S


def _train_id(case_id: str) -> str:
    return case_id.replace("-backward-", "-train-")


class Training:
    """The backward pass and the training step of every backend on the training cases."""

    params = [BACKEND_DEVICES, TRAINING_CASES]
    param_names = ["backend", "case"]
    timeout = 300

    def setup(self, backend, case):
        self.backward = Problem(backend, case)
        self.train = Problem(backend, _train_id(case))

    def time_backward(self, backend, case):
        """``backward(grad_y, saved)`` on one forward's residuals, synchronized."""
        self.backward.call_and_wait()

    def time_train(self, backend, case):
        """``forward_train`` then ``backward``, synchronized: one training step."""
        self.train.call_and_wait()

    def track_train_error_ratio(self, backend, case):
        """Worst |error| / tolerance over y, grad_x, grad_weight and grad_bias (<= 1 passes)."""
        problem = self.train
        expected = harness_module("expected").Expected.of(problem.case, problem.host)
        verdict = harness_module("checks").run_case(problem.backend, problem.case, problem.host, expected)
        if verdict.ratio == verdict.ratio:
            return verdict.ratio
        raise AssertionError(f"{verdict.status}: {verdict.reason}")

    track_train_error_ratio.unit = "error/tolerance"

    def track_backward_ms_per_gb(self, backend, case):
        """Inverse bandwidth of the backward alone: device ms per GB of its 3·E·b floor."""
        problem = self.backward
        measure = harness_module("timing").measure
        seconds = measure(problem.call, problem.backend, problem.device, budget=TRACK_BUDGET_S).median
        return seconds * 1e3 / (harness_module("bench").min_bytes(problem.case) / 1e9)

    track_backward_ms_per_gb.unit = "ms/GB"
