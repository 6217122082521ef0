"""What the asv classes share: their parameters and the prepared problem of one combination.

Parameters follow numpy's and scipy's asv suites: ``backend`` is spelled
``"name:device"`` (every built-in backend on every device it names), ``case`` is a case
id from the harness's workload suites (``gnbench cases --suite NAME`` lists them), so a
slow row in asv's table reruns exactly with
``gnbench bench --backends NAME --devices DEVICE --case ID``.

A combination that cannot run here (framework missing, no GPU, a dtype or layout the
backend declares out of scope, not enough memory) raises ``NotImplementedError`` with the
harness's reason from ``setup``; asv then shows it as n/a instead of failing.
"""

from __future__ import annotations

import backends

# The grid is the suite's, not the code's: asv keys its history by parameter values, so
# neither a plugin on one machine nor a commit that predates a backend may change it (a
# test checks it covers every built-in backend and device). A backend missing at some
# commit is n/a there.
BACKEND_DEVICES = [
    "torch:cpu", "torch:cuda", "jax:cpu", "jax:cuda", "numpy:cpu", "torch-compile:cpu", "torch-compile:cuda",
    "numba-cpu:cpu", "numba-cuda:cuda", "cupy:cuda",
]

# case id -> the harness suite it is drawn from (a test checks each id is in it).
WORKLOADS = {
    "2x320x64x64-g32-float16-contiguous-normal-s0": "sd-unet",
    "2x320x64x64-g32-float16-channels_last-normal-s0": "sd-unet",
    "1x512x128x128-g32-float32-contiguous-normal-s0-eps1e-06": "sd-vae",
    "16x64x256x256-g8-float32-contiguous-normal-s0-affine_default": "kernelbench",
    "4x512x15999-g512-float32-contiguous-normal-s0": "audio-1d",
    "1x32x64x64x64-g8-float16-contiguous-normal-s0": "volumetric-3d",
}
CASES = list(WORKLOADS)

# The training benchmarks' problems: the forward workloads that training meets (UNet,
# VAE, KernelBench's), as backward cases with a normal incoming gradient. Each id's
# ``-backward-`` is replaced by ``-train-`` for time_train.
TRAINING_CASES = [
    "2x320x64x64-g32-float16-contiguous-normal-s0-backward-gy_normal",
    "2x320x64x64-g32-float32-contiguous-normal-s0-backward-gy_normal",
    "16x64x256x256-g8-float32-contiguous-normal-s0-backward-gy_normal-affine_default",
]


class Problem:
    """One (backend:device, case) combination, ready to call.

    Attributes: ``backend`` (the backend object), ``device``, ``case``
    (:class:`harness.problems.cases.Case` on that device), ``host`` (the harness's host inputs),
    ``call`` (the zero-argument call ``gnbench bench`` times for the case's pass:
    :func:`harness.execution.tasks.timed_call`), ``first_call_s`` (the first synchronized call,
    compilation included, made here so that no timed call compiles).
    """

    def __init__(self, backend_device: str, case_id: str):
        import time

        from . import harness_module

        memory = harness_module("memory")
        timed_call = harness_module("tasks").timed_call
        pin_allocator = harness_module("timing").pin_allocator
        Case = harness_module("cases").Case
        make = harness_module("inputs").make

        name, _, device = backend_device.partition(":")
        try:
            self.backend, self.device = backends.get(name), device
        except backends.RegistryError as error:
            raise NotImplementedError(f"{name} is not a backend of this code: {error}") from None
        try:
            self.case = Case.from_id(case_id, device)
        except ValueError as error:  # a commit that predates the case's fields (e.g. passes)
            raise NotImplementedError(f"this code cannot read case {case_id}: {error}") from None
        reason = self.backend.availability(device) or self.backend.supports(self.case)
        if not reason and getattr(self.case, "pass_", "forward") != "forward" and not getattr(
                self.backend, "supports_backward", False):
            reason = "the backend implements the forward pass only"
        if not reason and getattr(self.backend, "simulated", lambda device: False)(device):
            reason = "the device is emulated on the host (Numba's CUDA simulator): its times say nothing"
        if reason:
            raise NotImplementedError(f"{backend_device}: {reason}")
        needed = memory.case_host_bytes(self.case) + memory.backend_host_bytes(self.case, device)
        if needed > memory.host_available():
            raise NotImplementedError(f"{case_id} needs about {memory.gib(needed)} of host memory; "
                                      f"{memory.gib(memory.host_available())} available")
        pin_allocator()  # as the harness's workers do: see harness.execution.timing
        self.host = make(self.case)
        self.call = timed_call(self.backend, self.case, self.host, device)
        start = time.perf_counter()
        self.call_and_wait()
        self.first_call_s = time.perf_counter() - start

    def call_and_wait(self):
        """One call (the case's pass: forward, backward alone or training step), returned
        only once its result is computed."""
        out = self.call()
        self.backend.wait(out, self.device)
        return out
