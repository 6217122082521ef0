"""``gnbench`` (or ``python -m harness``): a thin face over the Python API.

Commands: ``list`` (backends, devices, availability), ``cases`` (the ids of a suite),
``verify`` (a correctness sweep), ``bench`` (verify, then time), ``select`` (the fastest
verified backend for a problem), ``report`` (markdown and plots of stored results),
``fuzz`` (property-based search for failing cases), ``selftest`` (the verifier against
planted bugs). Exit codes: 0 all verified rows passed;
1 a failure (or no verified backend for ``select``); 2 a usage error; 3 nothing was
verified at all (every row skipped or unsupported), with the reason.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_NOTHING = 0, 1, 2, 3


def _program() -> str:
    return "python -m harness" if sys.argv[0].endswith("__main__.py") else "gnbench"


def _escape(text) -> str:
    from rich.markup import escape

    return escape(str(text))


def _console(stderr: bool = False):
    import shutil

    from rich.console import Console

    # Logs and pipes get a wide table rather than rich's 80-column default.
    stream = sys.stderr if stderr else sys.stdout
    width = None if stream.isatty() else max(shutil.get_terminal_size((160, 24)).columns, 160)
    return Console(stderr=stderr, highlight=False, width=width)


def _load_plugins(modules) -> None:
    """Import each module; call its ``register_backends()`` if it has one."""
    import backends

    backends.load_plugins(modules)


def _list(args) -> int:
    from rich.table import Table

    import backends
    from harness.execution.pool import availability

    table = Table(title="GroupNorm backends")
    for column in ("backend", "device", "dtypes", "layouts", "status", "version"):
        table.add_column(column, overflow="fold")
    pairs = [(name, device) for name in backends.names() for device in backends.get(name).devices]
    answers = availability(pairs)  # asked of each backend's worker: this process imports no framework
    for name, device in pairs:
        backend, reason = backends.get(name), answers[name, device]["availability"]
        status = "[green]available[/]" if reason is None else f"[yellow]{_escape(reason)}[/]"
        if reason is None and answers[name, device].get("simulated"):
            status = "[green]available[/] (emulated: Numba's CUDA simulator; never timed)"
        table.add_row(name, device, ", ".join(backend.dtypes), ", ".join(backend.layouts), status,
                      _escape(answers[name, device].get("version") or ""))
    from harness.records.environment import machine

    facts = machine()
    console = _console()
    console.print(table)
    gpu = facts["gpu_name"] or "no NVIDIA GPU (nvidia-smi absent)"
    console.print(_escape(f"host {facts['host']}: {facts['cpu_model']} ({facts['cpu_signature']}), "
                          f"{facts['cpu_affinity']} of {facts['cpu_count']} CPUs, "
                          f"{facts['memory_gb']} GiB; GPU: {gpu}; commit {facts['commit']}"))
    return EXIT_OK


def _cases(args) -> int:
    from harness.problems import suites

    try:
        for suite in args.suite.split(","):
            for case in suites.get(suite, args.pass_):
                print(case.id)
        sys.stdout.flush()
    except BrokenPipeError:  # `gnbench cases | head`: the reader has all it wanted
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    return EXIT_OK


def run_sweep(running, console, log, description: str):
    """Drive a started sweep under a rich progress bar (with ETA), saving each row as it
    finishes; Ctrl-C keeps what finished. Returns (DataFrame of this run's rows and the
    resumed ones, interrupted?)."""
    import pandas as pd
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
               TimeElapsedColumn(), TextColumn("eta"), TimeRemainingColumn())
    interrupted = False
    with Progress(*columns, console=console, transient=True) as progress:
        task = progress.add_task(description, total=running.total - len(running.skip))
        try:
            for row in running.rows():
                log.add(row)
                progress.update(task, advance=1, description=f"{row['backend']}:{row['device']} {row['case_id'][:48]}")
        except KeyboardInterrupt:
            interrupted = True
    frame = pd.DataFrame(log.rows, columns=running.columns)
    frame.attrs["not_run"] = list(running.not_run)
    return frame, interrupted


def _rerun_command(row, plugins, command: str = "verify") -> str:
    parts = [_program(), command]
    parts += [f"--plugin {plugin}" for plugin in plugins or ()]
    parts += [f"--backends {row['backend']}", f"--devices {row['device']}", f"--case {row['case_id']}"]
    return " ".join(parts)


def print_failures(frame, console, plugins=(), command: str = "verify", limit: int = 25) -> None:
    """Each unexpected failure with its rerun line; failures that known framework bugs
    explain, one line per bug; known bugs that did not reproduce."""
    from harness.records import known_bugs

    failures = frame[known_bugs.unexpected(frame)]
    for _, row in failures.head(limit).iterrows():
        detail = row.reason
        if row.status in ("mismatch", "nan_mismatch"):
            detail += f"; at {row.worst_index}: expected {row.expected:.7g}, got {row.got:.7g}"
        console.print(f"[red]{row.status}[/] {row.backend}:{row.device} {row.case_id}: {_escape(detail)}")
        console.print(f"    rerun: {_escape(_rerun_command(row, plugins, command))}", soft_wrap=True)
    if len(failures) > limit:
        console.print(f"... and {len(failures) - limit} more failures")
    bugs = {bug.id: bug for bug in known_bugs.load()}
    known = frame[frame.known_bug.fillna("").astype(str) != ""] if "known_bug" in frame else frame.iloc[:0]
    for bug_id, rows in known.groupby("known_bug"):
        bug = bugs.get(bug_id)
        measured = rows[rows.ratio.notna()]
        worst = (f"worst {measured.sort_values('ratio').iloc[-1].ratio:.3g}x the tolerance on "
                 f"{measured.sort_values('ratio').iloc[-1].case_id}") if len(measured) else \
            f"NaN/Inf where the oracle has none, e.g. {rows.iloc[0].case_id}"
        console.print(f"[yellow]known bug[/] {bug_id}: {len(rows)} failed rows (expected; {worst})"
                      + (f"; rerun: {_escape(bug.rerun)}" if bug else ""), soft_wrap=True)
    for bug, count in known_bugs.not_reproduced(frame):
        console.print(f"[yellow]known bug not reproduced[/] {bug.id}: {count} rows of its class on triggering inputs "
                      f"all passed ({bug.package} {bug.versions}): fixed in this version? Narrow its versions in "
                      f"harness/records/known_bugs.toml", soft_wrap=True)


def default_out_dir(command: str) -> str:
    """``$GNBENCH_RESULTS/<UTC date-time>-<command>``, by default under results/local/
    (ignored by git); never overwritten."""
    import datetime

    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%d-%H%M%S")
    return os.path.join(os.environ.get("GNBENCH_RESULTS") or os.path.join("results", "local"), f"{stamp}-{command}")


def _sweep_command(args, sweep_class, command: str) -> int:
    """The shared body of ``verify`` and ``bench``."""
    from harness.problems.plan import plan
    from harness.records import results
    from harness.records.known_bugs import unexpected
    from harness.records.results import FAILED

    console = _console()
    if args.resume and not args.out:
        console.print("[red]error:[/] --resume continues the run in --out DIR: name that folder")
        return EXIT_USAGE
    if getattr(args, "budget", 1.0) <= 0:
        console.print(f"[red]error:[/] --budget must be a positive number of seconds; got {args.budget}")
        return EXIT_USAGE
    _load_plugins(args.plugin)
    the_plan = plan(args.backends, args.suite, args.devices, args.dtypes, args.case or None, args.pass_)
    name = f"{command}-cases" if args.case else f"{command}-" + args.suite.replace(",", "+")
    if args.pass_ and not args.case:
        name += "-" + args.pass_.replace(",", "+")
    out = args.out or default_out_dir(command)
    log = results.RowLog(out, name, resume=args.resume)
    options = sweep_class.options(args) if hasattr(sweep_class, "options") else {}
    running = sweep_class(the_plan, isolate=not args.in_process, timeout=args.timeout, skip=log.done(), **options)
    start = time.perf_counter()
    running.start()
    if not running.pairs:
        console.print("[red]nothing to run:[/] no backend is available for the devices asked")
        for backend, device, reason in running.not_run:
            console.print(f"  {backend}:{device}: {_escape(reason)}")
        return EXIT_NOTHING
    frame, interrupted = run_sweep(running, console, log, command)
    elapsed = time.perf_counter() - start
    running.report(frame, console)
    for backend, device, reason in running.not_run:
        console.print(f"[dim]not run: {backend}:{device}: {_escape(reason)}[/]")
    print_failures(frame, console, args.plugin, command)
    paths = log.finish(running.columns)
    console.print(f"rows written to {' and '.join(paths)}")
    verified = frame.status.isin(("passed",) + FAILED)
    failed = int(unexpected(frame).sum())
    known = int(frame.status.isin(FAILED).sum()) - failed
    console.print(
        f"{len(frame)} rows, {int(verified.sum())} verified, {failed} failed"
        + (f" (and {known} known framework bugs)" if known else "")
        + f", {len(frame) - int(verified.sum())} not run, in {elapsed:.1f} s"
    )
    if interrupted:
        console.print(f"[yellow]interrupted:[/] finished rows kept; continue with the same command and "
                      f"--resume --out {out}")
        return EXIT_FAILED
    if not verified.any():
        reasons = sorted(set(frame.reason))
        console.print(
            "[red]nothing was verified:[/] every row was skipped or unsupported: " + _escape("; ".join(reasons[:5]))
        )
        return EXIT_NOTHING
    return EXIT_FAILED if failed else EXIT_OK


def _verify(args) -> int:
    if args.accelerators and not args.cluster:
        _console().print("[red]error:[/] --accelerators picks machine types of a cluster: give --cluster ADDRESS too")
        return EXIT_USAGE
    if args.cluster:
        from harness.execution.cluster import ClusterSweep

        return _sweep_command(args, ClusterSweep, "verify")
    from harness.execution.sweep import Sweep

    return _sweep_command(args, Sweep, "verify")


def _bench(args) -> int:
    from harness.commands.bench import BenchSweep

    if args.cluster:
        _console().print(
            "[red]error:[/] bench does not run on a cluster: timing needs nodes nobody else uses while "
            "it measures, which a shared Ray cluster does not promise. Verify on the "
            "cluster (gnbench verify --cluster ...) and run gnbench bench on each machine type"
        )
        return EXIT_USAGE
    return _sweep_command(args, BenchSweep, "bench")


def _select(args) -> int:
    from rich.table import Table

    from harness.commands.selection import select

    console = _console()
    _load_plugins(args.plugin)
    try:
        shape = tuple(int(part) for part in args.shape.split(","))
    except ValueError:
        console.print(
            f"[red]error:[/] --shape must be comma-separated integers such as 2,320,64,64; got {args.shape!r}"
        )
        return EXIT_USAGE
    from harness.commands.selection import NoVerifiedBackendError

    try:
        choice = select(
            shape,
            args.num_groups,
            args.dtype,
            args.device,
            layout=args.layout,
            eps=args.eps,
            pass_=args.pass_,
            backends=args.backends,
            metric=args.metric,
            results=args.results or None,
            budget=args.budget,
            refresh=args.refresh,
        )
    except NoVerifiedBackendError as error:
        console.print(f"[red]no verified backend:[/] {_escape(error)}")
        return EXIT_FAILED
    table = Table(title=f"candidates for {choice.case_id} on {choice.device} (fastest first, by {choice.metric} time)")
    for column in (
        "backend",
        "eligible",
        "median ms",
        "IQR ms",
        "latency ms",
        "default cases",
        "problem cases",
        "source",
        "why not",
    ):
        table.add_column(column, overflow="fold")
    timed = "median_s" if choice.metric == "device" else "latency_median_s"

    def order(c):  # eligible ones fastest first (an unknown time last), then the others in preference order
        t = getattr(c, timed)
        return (not c.eligible, t if c.eligible and t == t else float("inf"))

    for c in sorted(choice.candidates, key=order):
        table.add_row(
            ("[bold]" + c.backend + "[/]") if c.backend == choice.backend else c.backend,
            "yes" if c.eligible else "[red]no[/]",
            "-" if c.median_s != c.median_s else f"{1e3 * c.median_s:.4g}",
            "-" if c.iqr_s != c.iqr_s else f"{1e3 * c.iqr_s:.2g}",
            "-" if c.latency_median_s != c.latency_median_s else f"{1e3 * c.latency_median_s:.4g}",
            str(c.default_cases),
            str(c.problem_cases),
            c.source,
            _escape(c.why_not),
        )
    console.print(table)
    tie = " (a tie within the noise, broken by preference order)" if choice.tie else ""
    console.print(
        f"fastest verified: [bold]{choice.backend}[/]{tie}; evidence: {choice.source}; "
        f"answered in {choice.seconds:.2f} s"
    )
    return EXIT_OK


def _report(args) -> int:
    from harness.commands.report import report

    paths = report(args.results, args.out or default_out_dir("report"))
    _console().print("wrote " + ", ".join(paths))
    return EXIT_OK


def _export(args) -> int:
    """Stored rows (parquet or CSV files, or folders of them) as one CSV file."""
    from harness.records import results

    frame = results.load(*args.results)
    path = results.write_csv(frame.drop(columns=["source_file"]), args.csv)
    _console().print(f"{len(frame)} rows written to {path}")
    return EXIT_OK


def _fuzz(args) -> int:
    """Property-based search; prints each finding with its rerun line as it is found."""
    from rich.progress import Progress, TextColumn, TimeElapsedColumn

    from harness.commands.fuzz import fuzz
    from harness.records import results

    console = _console()
    _load_plugins(args.plugin)
    if not args.budget > 0:
        console.print(f"[red]error:[/] --budget must be a positive number of seconds; got {args.budget}")
        return EXIT_USAGE
    out = args.out or default_out_dir("fuzz")
    log = results.RowLog(out, "fuzz")
    from harness.records.results import COLUMNS

    def finding(found):
        label = f"[yellow]known bug {found.known_bug}[/]" if found.known_bug else "[red]new failure[/]"
        ratio = "" if found.ratio != found.ratio else f" ({found.ratio:.3g}x the tolerance)"
        console.print(
            f"{label}: {found.status} {found.backend}:{found.device} {found.case_id}{ratio}: "
            f"{_escape(found.reason)} [dim](found and shrunk after {found.examples} cases, "
            f"{found.seconds:.1f} s)[/]",
            soft_wrap=True,
        )
        rerun = _rerun_command(
            {"backend": found.backend, "device": found.device, "case_id": found.case_id}, args.plugin
        )
        console.print(f"    rerun: {_escape(rerun)}", soft_wrap=True)

    with Progress(TextColumn("{task.description}"), TimeElapsedColumn(), console=console, transient=True) as bar:
        task = bar.add_task("fuzz")

        def row(row):
            log.add(row)
            bar.update(task, description=f"fuzz {row['backend']}:{row['device']} {len(log.rows)} cases")

        result = fuzz(
            args.backends,
            args.devices,
            args.dtypes,
            budget=args.budget,
            seed=args.seed,
            max_elements=args.max_elements,
            timeout=args.timeout,
            on_row=row,
            on_finding=finding,
        )
    for (backend, device), count in result.examples.items():
        console.print(
            f"{backend}:{device}: {count} cases in {result.seconds[backend, device]:.1f} s, "
            f"{sum(f.backend == backend and f.device == device for f in result.findings)} findings"
        )
    for backend, device, reason in result.not_run:
        console.print(f"[dim]not run: {backend}:{device}: {_escape(reason)}[/]")
    paths = log.finish(list(COLUMNS))
    console.print(f"rows written to {' and '.join(paths)}")
    new = [f for f in result.findings if not f.known_bug]
    if not result.examples:
        console.print("[red]nothing was searched:[/] no backend is available for the devices asked")
        return EXIT_NOTHING
    return EXIT_FAILED if new else EXIT_OK


def _selftest(args) -> int:
    from harness.commands import selftest

    console = _console()
    report = selftest.run(suite=args.suite)
    console.print(selftest.report_table(report))
    problems = selftest.problems(report)
    print_failures(report[report.backend.isin(selftest.CORRECT)], console, command="verify", limit=0)
    for problem in problems:
        console.print(f"[red]self-test failure:[/] {_escape(problem)}")
    return EXIT_FAILED if problems else EXIT_OK


def _sweep_arguments(command, name: str) -> None:
    command.add_argument("--suite", default="default", help="suite name(s), comma-separated")
    command.add_argument("--backends", help="backend names, comma-separated (default: all available)")
    command.add_argument("--devices", help="cpu, cuda (default: wherever available)")
    command.add_argument("--dtypes", help="float16, bfloat16, float32, float64 (default: all)")
    command.add_argument("--case", action="append", metavar="ID", help="run just this case id (repeatable)")
    command.add_argument(
        "--pass",
        dest="pass_",
        metavar="PASS",
        help="forward (default), backward (the gradients judged) or train (y and the "
        "gradients), comma-separated for several; a --case id carries its own pass",
    )
    command.add_argument(
        "--plugin",
        action="append",
        metavar="MODULE",
        help="import MODULE first (and call its register_backends()) to add backends",
    )
    command.add_argument(
        "--out",
        metavar="DIR",
        help=f"write the rows as parquet into DIR (default: results/local/<time>-{name}); gnbench export makes CSV",
    )
    command.add_argument(
        "--resume", action="store_true", help="keep the rows already in --out DIR and run only what is missing"
    )
    command.add_argument(
        "--timeout",
        type=float,
        default=120.0,
        metavar="S",
        help="seconds a backend may take per case (plus 0.1 s per million elements)",
    )
    command.add_argument(
        "--in-process", action="store_true", help="run backends in this process (no isolation from crashes and hangs)"
    )
    command.add_argument(
        "--cluster",
        metavar="ADDRESS",
        help="run on a Ray cluster: its address (auto, HOST:6379, ray://HOST:10001) or 'local' "
        "for a Ray instance on this machine (verify only; needs the cluster extra)",
    )
    command.add_argument(
        "--accelerators",
        metavar="TYPES",
        help="with --cluster: run the whole sweep on each of these Ray accelerator types, "
        "comma-separated (e.g. H100,A100)",
    )


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog=_program(), description="GroupNorm verification and benchmarking harness")
    commands = top.add_subparsers(dest="command", required=True)
    commands.add_parser("list", help="backends, devices, dtypes and availability")
    cases = commands.add_parser("cases", help="print the case ids of a suite")
    cases.add_argument("--suite", default="default")
    cases.add_argument(
        "--pass",
        dest="pass_",
        default="forward",
        choices=("forward", "backward", "train"),
        help="the suite's cases of this pass (default forward)",
    )
    verify = commands.add_parser("verify", help="verify backends against the float64 oracle")
    _sweep_arguments(verify, "verify")
    bench = commands.add_parser("bench", help="verify, then time backends (latency, GB/s, roofline)")
    _sweep_arguments(bench, "bench")
    bench.set_defaults(suite="sd-unet")
    bench.add_argument(
        "--budget", type=float, default=1.0, metavar="S", help="seconds of timing per case and backend (default 1)"
    )
    bench.add_argument("--flush-l2", action="store_true", help="flush the GPU's L2 cache before each timed sample")
    select = commands.add_parser("select", help="the fastest verified backend for a problem, with its evidence")
    select.add_argument("--shape", required=True, help="N,C,... e.g. 2,320,64,64")
    select.add_argument("--num-groups", type=int, required=True)
    select.add_argument("--dtype", default="float32")
    select.add_argument("--device", default="cpu")
    select.add_argument("--layout", default="contiguous")
    select.add_argument("--eps", type=float, default=1e-5)
    select.add_argument(
        "--pass",
        dest="pass_",
        default="forward",
        choices=("forward", "backward", "train"),
        help="choose for the forward (default), the backward alone, or a training step",
    )
    select.add_argument("--backends", help="candidates, comma-separated (default: all default-selected)")
    select.add_argument("--metric", choices=("device", "latency"), default="device")
    select.add_argument("--results", nargs="*", metavar="PATH", help="stored result files or folders to answer from")
    select.add_argument("--budget", type=float, default=0.5, help="timing seconds per backend when measuring")
    select.add_argument(
        "--refresh",
        action="store_true",
        help="measure again instead of answering from the on-disk cache, and replace its answer",
    )
    select.add_argument("--plugin", action="append", metavar="MODULE")
    report = commands.add_parser("report", help="markdown summary and PNG plots of stored results")
    report.add_argument("results", nargs="+", metavar="RESULTS", help="result files or folders")
    report.add_argument(
        "--out", metavar="DIR", help="where summary.md and the plots go (default: results/local/<time>-report)"
    )
    export = commands.add_parser("export", help="stored results as one CSV file")
    export.add_argument("results", nargs="+", metavar="RESULTS", help="result files or folders")
    export.add_argument("--csv", required=True, metavar="FILE", help="the CSV file to write (its folder is created)")
    fuzz = commands.add_parser(
        "fuzz", help="property-based search for failing cases (hypothesis), shrunk to minimal ones"
    )
    fuzz.add_argument("--backends", help="backend names, comma-separated (default: all available)")
    fuzz.add_argument("--devices", help="cpu, cuda (default: wherever available)")
    fuzz.add_argument("--dtypes", help="dtypes to draw (default: all)")
    fuzz.add_argument(
        "--budget",
        type=float,
        default=60.0,
        metavar="S",
        help="seconds of search per backend:device, shrinking included (default 60)",
    )
    fuzz.add_argument("--seed", type=int, default=0, metavar="K", help="seed of the search (default 0)")
    fuzz.add_argument("--max-elements", type=int, default=20_000, metavar="E", help="largest case drawn (elements)")
    fuzz.add_argument("--timeout", type=float, default=120.0, metavar="S", help="seconds a backend may take per case")
    fuzz.add_argument("--plugin", action="append", metavar="MODULE")
    fuzz.add_argument("--out", metavar="DIR", help="write every verified row here (default: results/local/<time>-fuzz)")
    selftest = commands.add_parser("selftest", help="check the verifier flags deliberately broken backends")
    selftest.add_argument("--suite", default="default")
    return top


COMMANDS = {
    "list": _list,
    "cases": _cases,
    "verify": _verify,
    "bench": _bench,
    "select": _select,
    "report": _report,
    "export": _export,
    "fuzz": _fuzz,
    "selftest": _selftest,
}


def main(argv=None) -> int:
    from backends.errors import GroupNormBenchError, InvalidArgumentError

    args = parser().parse_args(argv)
    try:
        out = getattr(args, "out", None)
        if out and os.path.exists(out) and not os.path.isdir(out):
            raise InvalidArgumentError(f"--out must be a folder (it is created if missing); {out!r} is a file")
        return COMMANDS[args.command](args)
    except (
        GroupNormBenchError,
        ModuleNotFoundError,
        ImportError,
        FileNotFoundError,
        NotADirectoryError,
        IsADirectoryError,
        PermissionError,
        FileExistsError,
    ) as error:
        _console(stderr=True).print(f"[red]error:[/] {error}")
        return EXIT_USAGE
