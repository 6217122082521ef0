"""Runs numba-cuda cases under Numba's CUDA simulator; used by ``test_numba_cuda.py``.

Usage (NUMBA_ENABLE_CUDASIM=1 must be set before numba.cuda is imported, hence a process
of its own):  NUMBA_ENABLE_CUDASIM=1 python tests/cudasim_worker.py CASE_ID:CONFIG[:PLANT] ...

Prints one JSON object a case: id, config, plant, path (the launch plan used), chunks,
launches (counted by the backend's launcher), model_identical (the output equals the NumPy
model's bit for bit, NaN payloads aside), status, ratio, reason. Cases run in order; a
(config, plant) keeps one backend instance, so its workspace carries over from case to
case (a reset that fails shows in the next case). Exits 2 when the simulator is not enabled.
"""

from __future__ import annotations

import json
import os
import sys
import warnings

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# Lowered thresholds: 32 threads a block, two resident blocks, and plans forced on tiny
# shapes: fused; split in 3 chunks a group, all groups in one wave; split in 2 chunks, a
# wave a group (an L2 of 2 bytes).
CONFIGS = {
    "fused": dict(threads=32, sm_count=1, l2_bytes=1 << 30, blocks_per_sm=2),
    "split": dict(threads=32, sm_count=1, l2_bytes=1 << 30, blocks_per_sm=2, chunks=3),
    "split-waves": dict(threads=32, sm_count=1, l2_bytes=2, blocks_per_sm=2, chunks=2),
    # four blocks at once (see run_blocks_concurrently): the queue, the tickets and the
    # waits between blocks under real interleavings, split in waves
    "concurrent": dict(threads=32, sm_count=1, l2_bytes=2, blocks_per_sm=4, chunks=3),
}
CONCURRENT = {"concurrent"}


def run_blocks_concurrently():
    """Make Numba's simulator able to run a grid's blocks at once, each in its own Python
    thread (it runs them one after another): a block's shared arrays become its own, and
    the launch returns when every block has finished, raising the first block's error.
    Returns a dict whose "on" entry switches it per launch (off: the simulator's own order).

    What this shows and what it does not: blocks interleave at the interpreter's thread
    switches, so the queue, the tickets, the spin on a group's statistics and the resets
    meet other blocks mid-flight (a wait that never ends or a ticket counted twice shows);
    memory stays sequentially consistent (the GIL), so a missing fence still cannot show."""
    import sys as _sys
    import threading
    import traceback

    from numba.cuda.simulator import kernel, kernelapi

    real_run = kernel.BlockManager.run
    pending = []

    def run(self, grid_point, *args):
        if not state["on"]:
            return real_run(self, grid_point, *args)
        box = {}

        def block():
            try:
                real_run(self, grid_point, *args)
            except BaseException as error:  # surfaced by the launch's last block
                box["error"] = error

        thread = threading.Thread(target=block, daemon=True)
        thread.start()
        pending.append((thread, box))
        if tuple(grid_point) == tuple(d - 1 for d in self._grid_dim):  # the launch's last block: wait for all
            waiting = list(pending)
            pending.clear()
            for thread_, _ in waiting:
                thread_.join()
            for _, box_ in waiting:
                if "error" in box_:
                    raise box_["error"]

    def array(self, shape, dtype, alignment=None):
        if shape == 0 or alignment is not None:
            return real_array(self, shape, dtype, alignment)
        import numpy as np
        from numba.core import types
        from numba.np import numpy_support

        if isinstance(dtype, types.Type):
            dtype = numpy_support.as_dtype(dtype)
        caller = traceback.extract_stack(_sys._getframe())[-2][0:2]
        key = (caller, tuple(threading.current_thread().blockIdx))  # one array per block
        with lock:
            if key not in self._allocations:
                self._allocations[key] = np.empty(shape, dtype)
            return self._allocations[key]

    lock = threading.Lock()
    state = {"on": False}
    # Blocks that wait on each other spin: with Python's default 5 ms switch interval each
    # spin holds the interpreter for 5 ms before another block runs (a case took 20 s). At
    # 0.5 ms the blocks interleave ten times as often (more orders tried, not fewer), and
    # the same case takes 3 s.
    _sys.setswitchinterval(0.0005)
    real_array = kernelapi.FakeCUDAShared.array
    kernel.BlockManager.run = run
    kernelapi.FakeCUDAShared.array = array
    return state


def main(specs: list[str]) -> int:
    from numba import config

    if not config.ENABLE_CUDASIM:
        print("NUMBA_ENABLE_CUDASIM=1 is not set", file=sys.stderr)
        return 2
    warnings.simplefilter("ignore", RuntimeWarning)  # NaN/Inf arithmetic of the simulated kernels
    import numpy as np

    from backends.cuda import model as cuda_model
    from backends.cuda.numba_cuda_backend import NumbaCudaBackend
    from backends.dtypes import numpy_dtype
    from harness.oracle import checks, expected
    from harness.problems import cases, inputs

    class Recording(NumbaCudaBackend):
        """The backend, keeping its last output for the comparison with the model."""

        def group_norm(self, *args, **kwargs):
            self.last = super().group_norm(*args, **kwargs)
            return self.last

    concurrency = run_blocks_concurrently() if CONCURRENT & {spec.split(":")[1] for spec in specs} else None
    backends = {}  # one instance per (config, plant): its workspace carries over from case to case
    for spec in specs:
        case_id, config_name, *planted = spec.split(":")
        plant = planted[0] if planted else None
        case = cases.Case.from_id(case_id, device="cuda")
        if concurrency is not None:
            concurrency["on"] = config_name in CONCURRENT
        key = (config_name, plant)
        if key not in backends:
            backends[key] = Recording(**CONFIGS[config_name], plant=plant)
        backend = backends[key]
        chosen = backend.plan_for(case.shape, numpy_dtype(case.dtype), case.num_groups,
                                  channels_last=case.layout == "channels_last") if case.numel else {"path": "empty"}
        if chosen["path"] == "split" and chosen["wave"] < case.shape[0] * case.num_groups:
            chosen["path"] = "split-waves"
        host = inputs.make(case)
        before = backend.launches
        backend.last = None
        verdict = checks.run_case(backend, case, host, expected.Expected.of(case, host))
        identical = None
        if backend.last is not None and case.numel:
            y = backend.to_numpy(backend.last)
            model = cuda_model.group_norm(host.x, case.num_groups, host.weight, host.bias, case.eps,
                                           vectorize=False, **CONFIGS[config_name])
            identical = _identical(np, y, model)
        print(json.dumps({"id": case_id, "config": config_name, "plant": plant, "path": chosen["path"],
                          "chunks": chosen.get("chunks", 1), "launches": backend.launches - before,
                          "model_identical": identical, "status": verdict.status, "ratio": verdict.ratio,
                          "reason": verdict.reason}), flush=True)
    return 0


def _identical(np, a, b) -> bool:
    """Same bits everywhere, NaN payloads aside."""
    a, b = np.ascontiguousarray(a), np.ascontiguousarray(b)
    bits = {1: np.uint8, 2: np.uint16, 4: np.uint32, 8: np.uint64}[a.dtype.itemsize]
    wide_a, wide_b = a.astype(np.float64), b.astype(np.float64)
    nan = np.isnan(wide_a) & np.isnan(wide_b)
    return a.shape == b.shape and bool(np.all(nan | (a.view(bits) == b.view(bits))))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
