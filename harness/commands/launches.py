"""Per workload shape: the launch plan of our CUDA kernels, bytes moved, and the fraction of
copy bandwidth the design should reach: a MODEL, not a measurement, until a GPU run
replaces it.

    python -m harness.launches                    # the model for an H100 SXM (table)
    python -m harness.launches --gpu h200
    python -m harness.launches --device cuda      # on a GPU: launches counted from real calls

The model (the arithmetic behind each row):

* DRAM bytes: x read once and y written once (2 x the tensor) when the plan keeps what it
  reads twice in L2: fused items whose groups in flight fit in half the L2, or split waves
  of groups that fit in a quarter of it. A group larger than that is read twice (3 x).
* Issue time: elements x (statistics + normalize instructions per element, the measured
  SASS of the instantiation the call takes, ``backends/cuda/sass_budget.json``) / (SMs x 4
  schedulers x 32 lanes x clock). The walk's cheaper linear loop is not credited: the
  budget's worst copy is used.
* Time = max(DRAM bytes / copy bandwidth, issue time) + one launch (``LAUNCH_US``);
  expected fraction of copy bandwidth = (2 x tensor bytes / copy bandwidth) / time.
  Not modelled: the bubble while a wave's normalize items wait for its statistics, tail
  effects, L2 bandwidth on the second read, clocks under load.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

import backends.cuda
from backends.cuda.launch import THREADS, dense_strides, geometry, plan

GPUS = {  # SMs, L2 bytes, clock (GHz, sustained), copy bandwidth (bytes/s: ~90% of the HBM peak)
    "h100": {"name": "H100 SXM", "sm_count": 132, "l2_bytes": 50 << 20, "clock_ghz": 1.755, "copy_bps": 0.9 * 3.35e12},
    "h200": {"name": "H200", "sm_count": 132, "l2_bytes": 50 << 20, "clock_ghz": 1.755, "copy_bps": 0.9 * 4.8e12},
}
LAUNCH_US = 4.0
BUDGET = os.path.join(os.path.dirname(os.path.abspath(backends.cuda.__file__)), "sass_budget.json")
SUITES = ("sd-unet", "sd-vae", "kernelbench", "audio-1d", "volumetric-3d")


def model_row(case, gpu: dict, measured: dict) -> dict:
    """One row of the model for ``case`` on ``gpu`` (see the module docstring)."""
    from backends.cuda.cupy_backend import ITEMSIZE, name_expression

    itemsize = ITEMSIZE[case.dtype]
    strides = dense_strides(case.shape, itemsize, case.layout == "channels_last")
    geo = geometry(case.shape, strides, strides, itemsize, case.num_groups)
    param = "float32" if case.dtype in ("float16", "bfloat16") else case.dtype
    name = name_expression(case.dtype, param, geo.vec)
    kernel = measured[name]
    chosen = plan(geo.groups_total, geo.items, itemsize * geo.vec, sm_count=gpu["sm_count"],
                  l2_bytes=gpu["l2_bytes"], threads=THREADS, blocks_per_sm=kernel["blocks_per_sm"])
    tensor = case.numel * itemsize
    group_bytes = geo.items * geo.vec * itemsize
    if chosen["path"] == "fused":
        in_l2 = min(geo.groups_total, gpu["sm_count"] * kernel["blocks_per_sm"]) * group_bytes <= gpu["l2_bytes"] // 2
    else:
        in_l2 = group_bytes <= gpu["l2_bytes"] // 4
    dram = tensor * (2 if in_l2 else 3)
    instructions = kernel["measured"]["stats_per_element"] + kernel["measured"]["normalize_per_element"]
    issue_s = case.numel * instructions / (gpu["sm_count"] * 4 * 32 * gpu["clock_ghz"] * 1e9)
    dram_s = dram / gpu["copy_bps"]
    time_s = max(dram_s, issue_s) + LAUNCH_US * 1e-6
    bound = "latency" if LAUNCH_US * 1e-6 > max(dram_s, issue_s) else ("issue" if issue_s > dram_s else "DRAM")
    return {"case": f"{'x'.join(map(str, case.shape))}/{case.num_groups} {case.dtype}"
                    f"{' CL' if case.layout == 'channels_last' else ''}",
            "kernel": name, "path": chosen["path"], "chunks": chosen.get("chunks", 1), "wave": chosen.get("wave"),
            "launches": chosen["launches"], "grid": chosen["grid"], "tensor_mb": tensor / 1e6, "dram_mb": dram / 1e6,
            "instructions": instructions, "issue_us": issue_s * 1e6, "dram_us": dram_s * 1e6, "time_us": time_s * 1e6,
            "fraction": (2 * tensor / gpu["copy_bps"]) / time_s, "bound": bound}


def workload_cases():
    """One case per distinct (shape, groups, dtype, layout) of the workload suites."""
    from harness import suites

    seen, out = set(), []
    for suite in SUITES:
        for case in suites.get(suite):
            key = (case.shape, case.num_groups, case.dtype, case.layout)
            if key not in seen and case.numel:
                seen.add(key)
                out.append(case)
    return out


def model_table(gpu_key: str = "h100", arch: str = "sm_90") -> list[dict]:
    with open(BUDGET) as handle:
        measured = json.load(handle)["kernels"][arch]
    return [model_row(case, GPUS[gpu_key], measured) for case in workload_cases()]


def markdown(rows, gpu_key) -> str:
    gpu = GPUS[gpu_key]
    lines = [f"Model, not measured ({gpu['name']}: {gpu['sm_count']} SMs, {gpu['l2_bytes'] >> 20} MiB L2, "
             f"copy {gpu['copy_bps'] / 1e12:.2f} TB/s, {gpu['clock_ghz']} GHz; `python -m harness.launches "
             f"--gpu {gpu_key}`)", "",
             "| case | kernel | plan | launches | tensor MB | DRAM MB | instr/elem | DRAM µs | issue µs | "
             "expected µs | of copy BW | bound |", "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        plan_text = "fused" if r["path"] == "fused" else f"split {r['chunks']} chunks, waves of {r['wave']}"
        lines.append(f"| {r['case']} | `{r['kernel']}` | {plan_text} | {r['launches']} | {r['tensor_mb']:.1f} | "
                     f"{r['dram_mb']:.1f} | {r['instructions']:.1f} | {r['dram_us']:.1f} | {r['issue_us']:.1f} | "
                     f"{r['time_us']:.1f} | {r['fraction']:.0%} | {r['bound']} |")
    return "\n".join(lines)


def counted(device: str = "cuda") -> list[dict]:
    """Launches counted by each CUDA backend's launcher on real calls, per workload shape
    (needs the device; shapes that do not fit in memory are skipped)."""
    import numpy as np

    import backends
    from harness import inputs

    rows = []
    for name in ("cupy", "numba-cuda"):
        backend = backends.get(name)
        reason = backend.availability(device)
        if reason:
            rows.append({"backend": name, "case": "-", "launches": None, "note": reason})
            continue
        for case in workload_cases():
            if case.numel * np.dtype(case.dtype if case.dtype != "bfloat16" else "float16").itemsize > 2 << 30:
                rows.append({"backend": name, "case": case.id, "launches": None, "note": "over 2 GiB: skipped"})
                continue
            host = inputs.make(case.on(device))
            x = backend.from_numpy(host.x, device)
            w = backend.from_numpy(host.weight, device) if host.weight is not None else None
            b = backend.from_numpy(host.bias, device) if host.bias is not None else None
            before = backend.launches
            backend.group_norm(x, case.num_groups, w, b, case.eps)
            backend.synchronize(device)
            rows.append({"backend": name, "case": case.id, "launches": backend.launches - before, "note": ""})
    return rows


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m harness.launches", description=__doc__.split("\n\n")[0])
    parser.add_argument("--gpu", choices=sorted(GPUS), default="h100", help="device facts for the model")
    parser.add_argument("--device", help="count launches from real calls on this device (cuda)")
    args = parser.parse_args(argv)
    if args.device:
        rows = counted(args.device)
        for row in rows:
            print(f"{row['backend']:11} {row['case']:55} launches {row['launches']} {row['note']}")
        worst = max((row["launches"] for row in rows if row["launches"] is not None), default=None)
        print(f"most launches for one call: {worst}")
        return 0
    print(markdown(model_table(args.gpu), args.gpu))
    return 0


if __name__ == "__main__":
    sys.exit(main())
