"""The drop-in module in a model: a UNet-style block with torch's GroupNorm or ours, and the
module's dispatch overhead per call.

``DropInBlock`` times the block's forward (no gradients) and its training step (forward and
backward), eager or ``torch.compile``d, contiguous or channels-last; setup makes the
first call (compiling, and the module's one-time verification of each GroupNorm problem)
so the timed calls are steady state. ``Dispatch`` times ``groupnorm_bench.GroupNorm`` and
``nn.GroupNorm`` on a small shape, where the module's own work (a dictionary lookup per
call) is not hidden by the kernel; ``track_dispatch_overhead_us`` is their difference.
"""

from __future__ import annotations

BLOCK_SHAPE = (2, 128, 32, 32)
BLOCK_GROUPS = 32
SMALL_SHAPE = (1, 32, 8, 8)
SMALL_GROUPS = 8


class DropInBlock:
    params = [["torch.nn", "groupnorm_bench"], ["contiguous", "channels_last"], ["eager", "compiled"]]
    param_names = ["group_norm", "layout", "mode"]
    timeout = 600

    def setup(self, group_norm, layout, mode):
        from groupnorm_bench.benchmark import prepared

        self.model, self.x, self.grad_y, _ = prepared(group_norm, layout, mode, BLOCK_SHAPE, BLOCK_GROUPS)

    def time_forward(self, group_norm, layout, mode):
        import torch

        with torch.no_grad():
            self.model(self.x)

    def time_train_step(self, group_norm, layout, mode):
        self.model(self.x).backward(self.grad_y)


class Dispatch:
    timeout = 300

    def setup(self):
        import torch

        import groupnorm_bench as gnb

        self.x = torch.randn(SMALL_SHAPE)
        self.ours = gnb.GroupNorm(SMALL_GROUPS, SMALL_SHAPE[1])
        self.theirs = torch.nn.GroupNorm(SMALL_GROUPS, SMALL_SHAPE[1])
        self.no_grad = torch.no_grad
        with torch.no_grad():
            self.ours(self.x)  # decides once (verification), as a model's first call does

    def time_groupnorm_bench_module(self):
        with self.no_grad():
            self.ours(self.x)

    def time_nn_group_norm(self):
        with self.no_grad():
            self.theirs(self.x)

    def track_dispatch_overhead_us(self):
        """Median per-call time of the module minus nn.GroupNorm's (µs; target under 10)."""
        from groupnorm_bench.benchmark import dispatch_overhead

        return dispatch_overhead(SMALL_SHAPE, SMALL_GROUPS, rounds=11, calls=1000)["overhead_us"]

    track_dispatch_overhead_us.unit = "us"
