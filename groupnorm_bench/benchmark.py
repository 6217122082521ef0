"""End-to-end figures for the drop-in module: a UNet-style block, eager and compiled, with
torch's GroupNorm and with ours, and the dispatch overhead per call once a choice is cached.

    python -m groupnorm_bench.benchmark [--channels 128 --groups 32 --size 32 --batch 2] [--out DIR]

Times come from ``torch.utils.benchmark.Timer.blocked_autorange`` (median, IQR), after a
warm-up call that compiles (``torch.compile``) and decides every GroupNorm problem (the
module's one-time verification, reported apart). Writes ``dropin.parquet`` with the machine's
environment columns and prints a table.
"""

from __future__ import annotations

import argparse
import os
import time


def unet_block(channels: int = 128, groups: int = 32):
    """conv -> GroupNorm -> SiLU -> conv -> GroupNorm -> SiLU, plus the residual."""
    return _block_class()(channels, groups)


def _block_class():
    import torch.nn as nn
    import torch.nn.functional as F

    global _BLOCK
    if _BLOCK is None:  # one class for every block: torch.compile's caches key on the type

        class UNetBlock(nn.Module):
            def __init__(self, channels, groups):
                super().__init__()
                self.conv1, self.norm1 = nn.Conv2d(channels, channels, 3, padding=1), nn.GroupNorm(groups, channels)
                self.conv2, self.norm2 = nn.Conv2d(channels, channels, 3, padding=1), nn.GroupNorm(groups, channels)

            def forward(self, x):
                h = F.silu(self.norm1(self.conv1(x)))
                return x + F.silu(self.norm2(self.conv2(h)))

        _BLOCK = UNetBlock
    return _BLOCK


_BLOCK = None


def prepared(which: str, layout: str, mode: str, shape, groups: int):
    """(model, x, grad_y, first-call seconds) ready to time: swapped or not, laid out, compiled or not."""
    import torch

    import groupnorm_bench as gnb

    torch.manual_seed(0)
    fmt = torch.channels_last if layout == "channels_last" else torch.contiguous_format
    model = unet_block(shape[1], groups).to(memory_format=fmt)
    if which == "groupnorm_bench":
        gnb.replace_group_norms(model)
    if mode == "compiled":
        torch._dynamo.reset()  # a fresh compile per variant, within the recompile limit
        model = torch.compile(model)
    x = torch.randn(shape).to(memory_format=fmt).requires_grad_()
    grad_y = torch.randn(shape).to(memory_format=fmt)
    start = time.perf_counter()
    with torch.no_grad():
        model(x)
    model(x).backward(grad_y)
    return model, x, grad_y, time.perf_counter() - start


def block_rows(shape, groups: int, min_run_time: float, modes=("eager", "compiled")):
    import torch

    rows = []
    for layout in ("contiguous", "channels_last"):
        for mode in modes:
            for which in ("torch.nn", "groupnorm_bench"):
                model, x, grad_y, first = prepared(which, layout, mode, shape, groups)

                def forward():
                    with torch.no_grad():
                        model(x)

                def step():
                    model(x).backward(grad_y)

                fwd, fwd_iqr = _timed_call(forward, min_run_time)
                trn, trn_iqr = _timed_call(step, min_run_time)
                chosen = ""
                if which == "groupnorm_bench":
                    import groupnorm_bench as gnb

                    frame = gnb.chosen_backends()
                    mine = frame[(frame["layout"] == layout) & (frame["shape"] == "x".join(map(str, shape)))]
                    chosen = ", ".join(f"{p}: {b}" for p, b in sorted(set(zip(mine["pass"], mine.backend))))
                rows.append({"shape": "x".join(map(str, shape)), "groups": groups, "layout": layout, "mode": mode,
                             "group_norm": which, "forward_ms": fwd * 1e3, "forward_iqr_ms": fwd_iqr * 1e3,
                             "train_step_ms": trn * 1e3, "train_step_iqr_ms": trn_iqr * 1e3,
                             "first_call_s": first, "backends": chosen})
    return rows


def _timed_call(function, min_run_time: float):
    from torch.utils.benchmark import Timer

    measurement = Timer(stmt="function()", globals={"function": function}).blocked_autorange(
        min_run_time=min_run_time)
    return measurement.median, measurement.iqr


def dispatch_overhead(shape=(1, 32, 8, 8), groups: int = 8, rounds: int = 41, calls: int = 2000) -> dict:
    """Per-call cost of the module over ``nn.GroupNorm`` on a small shape, choice cached
    (torch chosen), no gradients: ``rounds`` interleaved pairs of ``calls`` calls each
    (ours, then nn.GroupNorm), the per-call difference of each pair; its median and IQR.
    Pairing cancels the drift of a shared machine, which separate medians do not."""
    import statistics
    import time as clock

    import torch

    import groupnorm_bench as gnb

    x = torch.randn(shape)
    ours, theirs = gnb.GroupNorm(groups, shape[1]), torch.nn.GroupNorm(groups, shape[1])
    mine, base = [], []
    with torch.no_grad():
        ours(x)  # decides (verifies) once
        for _ in range(rounds):
            for module, into in ((ours, mine), (theirs, base)):
                start = clock.perf_counter()
                for _ in range(calls):
                    module(x)
                into.append((clock.perf_counter() - start) / calls)
    differences = sorted(a - b for a, b in zip(mine, base))
    quartiles = statistics.quantiles(differences, n=4)
    backend = gnb.chosen_backends(ours).backend.iloc[0]
    return {"shape": "x".join(map(str, shape)), "groups": groups, "backend": backend,
            "ours_us": statistics.median(mine) * 1e6, "nn_us": statistics.median(base) * 1e6,
            "overhead_us": statistics.median(differences) * 1e6, "overhead_iqr_us": (quartiles[2] - quartiles[0]) * 1e6,
            "rounds": rounds, "calls_per_round": calls}


def main(argv=None) -> int:
    import pandas as pd
    from rich.console import Console
    from rich.table import Table

    from harness.records.environment import environment

    parser = argparse.ArgumentParser(prog="python -m groupnorm_bench.benchmark", description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--channels", type=int, default=128)
    parser.add_argument("--groups", type=int, default=32)
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--min-run-time", type=float, default=3.0, help="seconds per timing (blocked_autorange)")
    parser.add_argument("--eager-only", action="store_true", help="skip torch.compile (about a minute of compiling)")
    parser.add_argument("--out", default=None, help="folder for dropin.parquet and dispatch.parquet")
    args = parser.parse_args(argv)
    shape = (args.batch, args.channels, args.size, args.size)
    modes = ("eager",) if args.eager_only else ("eager", "compiled")
    overhead = dispatch_overhead()
    rows = block_rows(shape, args.groups, args.min_run_time, modes)
    console = Console(width=160)
    table = Table(title=f"UNet-style block {'x'.join(map(str, shape))}, {args.groups} groups (median ms, IQR)")
    for column in ("layout", "mode", "GroupNorm", "forward", "train step", "first call s", "backends"):
        table.add_column(column)
    for row in rows:
        table.add_row(row["layout"], row["mode"], row["group_norm"],
                      f"{row['forward_ms']:.3f} ± {row['forward_iqr_ms']:.3f}",
                      f"{row['train_step_ms']:.3f} ± {row['train_step_iqr_ms']:.3f}", f"{row['first_call_s']:.1f}",
                      row["backends"])
    console.print(table)
    console.print(f"dispatch overhead on {overhead['shape']} ({overhead['backend']} chosen, no grad): "
                  f"{overhead['overhead_us']:.2f} µs per call (IQR {overhead['overhead_iqr_us']:.2f}; median of "
                  f"{overhead['rounds']} interleaved pairs of {overhead['calls_per_round']} calls); module "
                  f"{overhead['ours_us']:.2f} µs, nn.GroupNorm {overhead['nn_us']:.2f} µs per call")
    if args.out:
        os.makedirs(args.out, exist_ok=True)
        env = environment()
        pd.DataFrame([{**row, **env} for row in rows]).to_parquet(os.path.join(args.out, "dropin.parquet"), index=False)
        pd.DataFrame([{**overhead, **env}]).to_parquet(os.path.join(args.out, "dispatch.parquet"), index=False)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
