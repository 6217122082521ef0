"""Runs numba-cuda cases under Numba's CUDA simulator; used by ``test_numba_cuda.py``.

Usage (NUMBA_ENABLE_CUDASIM=1 must be set before numba.cuda is imported, hence a process
of its own):  NUMBA_ENABLE_CUDASIM=1 python tests/cudasim_worker.py CASE_ID:CONFIG ...

Prints one JSON object a case: id, config, path (the launch plan used), status, ratio,
reason. Exits 2 when the simulator is not enabled.
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
}


def main(specs: list[str]) -> int:
    from numba import config

    if not config.ENABLE_CUDASIM:
        print("NUMBA_ENABLE_CUDASIM=1 is not set", file=sys.stderr)
        return 2
    warnings.simplefilter("ignore", RuntimeWarning)  # NaN/Inf arithmetic of the simulated kernels
    from backends.dtypes import numpy_dtype
    from backends.numba_cuda_backend import NumbaCudaBackend
    from harness import cases, checks, expected, inputs

    backends = {name: NumbaCudaBackend(**settings) for name, settings in CONFIGS.items()}
    for spec in specs:
        case_id, config_name = spec.rsplit(":", 1)
        case = cases.Case.from_id(case_id, device="cuda")
        backend = backends[config_name]
        chosen = backend.plan_for(case.shape, numpy_dtype(case.dtype), case.num_groups,
                                  channels_last=case.layout == "channels_last") if case.numel else {"path": "empty"}
        if chosen["path"] == "split" and chosen["wave"] < case.shape[0] * case.num_groups:
            chosen["path"] = "split-waves"
        host = inputs.make(case)
        before = backend.launches
        verdict = checks.run_case(backend, case, host, expected.Expected.of(case, host))
        print(json.dumps({"id": case_id, "config": config_name, "path": chosen["path"], "chunks": chosen.get("chunks", 1),
                          "launches": backend.launches - before, "status": verdict.status, "ratio": verdict.ratio,
                          "reason": verdict.reason}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
