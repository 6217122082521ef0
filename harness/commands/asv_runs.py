"""Run the asv suite on commits, each with its own code, and gate a change on it.

asv builds an environment per commit only for environment types it manages; in the
environment the README installs (``--python=same``, type ``existing``) it imports
whatever code is on ``sys.path`` and saves nothing unless told which commit that code is.
This module makes that honest: it checks each commit out in a ``git worktree`` under
``.asv/worktrees/``, runs the *current* ``benchmarks/`` against it (``GNBENCH_ASV_CODE``,
see ``benchmarks/__init__.py``), and saves the results under that commit's hash:

* ``record REV...``: one asv run per commit into ``results/asv`` (the committed history
  that ``asv publish`` graphs).
* ``gate --base REV --head REV``: base and head on this machine, in alternating rounds
  (base, head, head, base, ...) so that a drift of the machine hits both alike, every
  sample kept (``--append-samples``); exits 1 when a benchmark regressed (see
  :func:`judge`), 0 otherwise, 2 on a usage error. Results and logs go to ``.asv/gate``.
* ``machine [--name NAME]``: the asv machine record, with the GPU named (``gpu``).

A benchmark **regressed** when (1) head's median is slower than base's by more than
``factor`` (1.10, asv's default), (2) the Mann-Whitney U test on all samples finds them
different (p < 0.002, asv's threshold), and (3) every head round (one process each) is
slower than every base round by more than ``factor``. (1) and (2) are the rule of
``asv compare`` and ``asv continuous``; (3) is the measured noise: samples within one
process are not independent, and on this 2-core machine whole processes of identical
code differ by 20-30% (once 2.8x), which (1) and (2) alone flagged as a regression in 1
of 3 unchanged runs. When (1) holds but (2) or (3) does not, the verdict is
``inconclusive`` (reported in yellow, exit 0). A benchmark that ran at base and fails
at head regressed too. Unlike ``asv compare``, the exit status says so.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]  # the checkout: harness/commands/asv_runs.py
STATE = ROOT / ".asv"
GATE_BENCH = (r"(time_forward\('(torch|numba-cpu):cpu', '(2x320x64x64-g32-float16-contiguous|1x512x128x128-g32-float32)"
              r"|time_backward\('(torch|jax):cpu', '2x320x64x64-g32-float32)")
# What `record` runs unless told otherwise: time, accuracy and bandwidth of every backend but
# torch-compile (a compile per process) on four workloads, the SD UNet one in both layouts
# (`--bench .` runs everything).
HISTORY_BENCH = (r"(Forward\.(time_forward|track_error_ratio|track_roofline_gap_pct)\('(?!torch-compile)[^']+', "
                 r"'(2x320x64x64-g32-float16-(contiguous|channels_last)|1x512x128x128-g32-float32|4x512x15999)"
                 r"|Training\.(time_backward|time_train|track_train_error_ratio)\('(?!torch-compile)[^']+', "
                 r"'2x320x64x64-g32-float32)")
FACTOR = 1.10
P_THRESHOLD = 0.002


def _git(*args, cwd=ROOT) -> str:
    done = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True)
    if done.returncode != 0:
        raise ValueError(f"git {' '.join(args)}: {done.stderr.strip()}")
    return done.stdout.strip()


def resolve(rev: str) -> str:
    """The full hash of commit ``rev`` (ValueError naming the revision when there is none)."""
    try:
        return _git("rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}")
    except ValueError:
        raise ValueError(f"revision {rev!r} names no commit in {ROOT}") from None


def worktree(commit: str) -> Path:
    """A checkout of ``commit`` under ``.asv/worktrees/`` (made once, then reused)."""
    path = STATE / "worktrees" / commit[:12]
    if (path / ".git").exists() and _git("rev-parse", "HEAD", cwd=path) == commit:
        return path
    if path.exists():
        shutil.rmtree(path)
        _git("worktree", "prune")
    path.parent.mkdir(parents=True, exist_ok=True)
    _git("worktree", "add", "--detach", "--force", str(path), commit)
    return path


def machine_record(name: str | None = None) -> dict:
    """Write (or refresh) this machine's entry in ``~/.asv-machine.json``: asv's defaults
    (OS, arch, CPU, count, RAM) plus ``gpu`` (name and driver, or "none") and return it."""
    from asv.machine import Machine, MachineCollection

    from harness.records.environment import machine

    facts = machine()
    record = Machine.get_defaults()
    if name:
        record["machine"] = name
    gpu = facts.get("gpu_name")
    record["gpu"] = f"{gpu} (driver {facts.get('gpu_driver')})" if gpu else "none"
    record["cpu"] = (f"{facts['cpu_model']} ({facts['cpu_signature']}; "
                     f"{facts['cpu_affinity']} of {facts['cpu_count']} CPUs usable)")
    MachineCollection.save(record["machine"], record)
    return record


def config_for(results_dir: Path, html_dir: Path, path: Path) -> Path:
    """Write to ``path`` a copy of asv.conf.json with absolute paths and the results and
    html folders given; returns ``path``."""
    from asv.util import load_json

    conf = load_json(str(ROOT / "asv.conf.json"), js_comments=True)
    conf.update(repo=str(ROOT), benchmark_dir=str(ROOT / "benchmarks"), env_dir=str(STATE / "env"),
                results_dir=str(results_dir), html_dir=str(html_dir))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(conf, indent=2))
    return path


def run_asv(config: Path, commit: str, *, code: Path | None, bench=None, machine: str, log: Path, quick=False,
            append=False, attributes=()) -> int:
    """``asv run --python=same --set-commit-hash=COMMIT`` with ``code`` (a checkout of
    ``commit``; None: the working tree) as the code under test; asv's output goes to
    ``log``. Returns asv's exit status."""
    command = [sys.executable, "-m", "asv", "run", "--config", str(config), "--python=same",
               f"--set-commit-hash={commit}", "--machine", machine, "--show-stderr"]
    for regex in bench or ():
        command += ["--bench", regex]
    command += ["--quick"] if quick else []
    command += ["--append-samples"] if append else []
    for attribute in attributes:
        command += ["--attribute", attribute]
    env = {key: value for key, value in os.environ.items() if key != "GNBENCH_ASV_CODE"}
    if code is not None:
        env["GNBENCH_ASV_CODE"] = str(code)
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "w") as out:
        return subprocess.run(command, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT).returncode


def samples(results_dir: Path, machine: str, commit: str) -> dict:
    """``{benchmark(params): [samples]}`` of one commit (a failed benchmark: None; its value
    as one sample where asv kept no samples, as for tracks)."""
    from asv.results import iter_results_for_machine_and_hash

    found = {}
    for result in iter_results_for_machine_and_hash(str(results_dir), machine, commit):
        for key in result.get_all_result_keys():
            params = result.get_result_params(key)
            values = result.get_result_value(key, params)
            kept = result.get_result_samples(key, params)
            combos = _combinations(params) if params else [""]
            if not params:  # one combination: asv 0.6 gives lists of one; older versions the bare value
                if not isinstance(values, list):
                    values, kept = [values], [kept]
                elif kept is not None and len(kept) and isinstance(kept[0], (int, float)):
                    kept = [kept]
            for index, combo in enumerate(combos):
                name = f"{key}({combo})" if combo else key
                value = values[index]
                if value is None:
                    found[name] = None
                elif not (isinstance(value, float) and math.isnan(value)):
                    sample = [s for s in (kept[index] if kept and kept[index] else []) if s is not None]
                    found[name] = [float(s) for s in sample or [value]]  # tracks keep no samples
    return found


def _combinations(params) -> list[str]:
    import itertools

    return [", ".join(combo) for combo in itertools.product(*params)]


@dataclasses.dataclass(frozen=True)
class Comparison:
    """One benchmark at base and head.

    ``base``/``head``: medians of all samples; ``ratio``: head/base (lower is better for
    every benchmark here); ``p_value``: Mann-Whitney U on all samples; ``separation``:
    the slowest base round's median over the fastest head round's, inverted for
    improvements (> 1 when every round of one commit beat every round of the other);
    ``base_rounds``/``head_rounds``: the median of each round (one process each).
    """

    name: str
    base: float
    head: float
    ratio: float
    p_value: float
    separation: float
    base_rounds: tuple
    head_rounds: tuple
    samples: tuple
    verdict: str  # regressed, improved, unchanged, inconclusive, now fails, fixed, n/a


def judge(name, base_rounds, head_rounds, *, factor=FACTOR, p_threshold=P_THRESHOLD) -> Comparison:
    """Compare one benchmark's samples, given per round (lists of lists; None = failed).

    ``regressed``: the medians differ by more than ``factor``, Mann-Whitney finds the
    samples different (p < ``p_threshold``), and every head round is slower than every
    base round by more than ``factor`` (samples within one process are not independent;
    processes are, so a difference must hold process by process). ``inconclusive``: the
    medians differ by more than ``factor`` but the test or the rounds do not bear it out:
    the machine's noise covers the change (reported, not failed). ``unchanged``: the
    medians are within ``factor``. ``improved`` as ``regressed``, the other way.
    """
    from asv._stats import mann_whitney_u

    base_failed = base_rounds is None or any(r is None for r in base_rounds)
    head_failed = head_rounds is None or any(r is None for r in head_rounds)
    if base_failed or head_failed:
        verdict = "n/a" if base_failed == head_failed else "now fails" if head_failed else "fixed"
        return Comparison(name, math.nan, math.nan, math.nan, math.nan, math.nan, (), (), (0, 0), verdict)
    base = [s for r in base_rounds for s in r]
    head = [s for r in head_rounds for s in r]
    base_median, head_median = statistics.median(base), statistics.median(head)
    base_rounds = tuple(statistics.median(r) for r in base_rounds if r)
    head_rounds = tuple(statistics.median(r) for r in head_rounds if r)
    ratio = head_median / base_median if base_median > 0 else math.inf
    p_value = mann_whitney_u(base, head)[1] if len(base) > 1 and len(head) > 1 else math.nan
    slower = ratio >= 1
    separation = (min(head_rounds) / max(base_rounds)) if slower else (min(base_rounds) / max(head_rounds))
    verdict = "unchanged"
    if max(ratio, 1 / ratio) > factor:
        proven = p_value < p_threshold and separation > factor
        verdict = ("regressed" if slower else "improved") if proven else "inconclusive"
    return Comparison(name, base_median, head_median, ratio, p_value, separation, base_rounds, head_rounds,
                      (len(base), len(head)), verdict)


def gate(base: str, head: str = "HEAD", *, bench=(GATE_BENCH,), rounds: int = 3, factor: float = FACTOR,
         machine: str | None = None, out: Path = STATE / "gate", console=None) -> list[Comparison]:
    """Benchmark ``base`` and ``head`` (each its own code) in alternating rounds; compare."""
    from rich.console import Console

    console = console or Console(stderr=True, highlight=False, width=160)
    commits = {"base": resolve(base), "head": resolve(head)}
    if commits["base"] == commits["head"]:
        console.print(f"[yellow]base and head are the same commit {commits['base'][:12]}: "
                      "the comparison measures the machine's noise only[/]")
    machine = machine_record(machine)["machine"]
    results_dir = out / "results"
    shutil.rmtree(results_dir, ignore_errors=True)
    config = config_for(results_dir, out / "html", out / "asv.conf.json")
    per_round = {role: {} for role in commits}  # role -> name -> [round samples]
    seen = {commit: {} for commit in commits.values()}  # per commit: base == head shares one results file
    order = []
    for index in range(rounds):
        order += [("base", "head"), ("head", "base")][index % 2]
    for step, role in enumerate(order, 1):
        commit = commits[role]
        started = time.perf_counter()
        log = out / "logs" / f"{step:02d}-{role}-{commit[:12]}.log"
        status = run_asv(config, commit, code=worktree(commit), bench=bench, machine=machine, log=log, append=True,
                         attributes=("rounds=1",))
        found = samples(results_dir, machine, commit)
        for name, values in found.items():
            before = seen[commit].get(name)
            new = None if values is None else values[len(before or []):]
            per_round[role].setdefault(name, []).append(new)
            seen[commit][name] = values
        console.print(f"round {step}/{len(order)}: {role} {commit[:12]} ({len(found)} results, "
                      f"asv exit {status}) in {time.perf_counter() - started:.0f} s; log {log}")
        if not found:
            raise RuntimeError(f"asv saved no results for {role} {commit[:12]}: see {log}")
    names = sorted(set(per_round["base"]) | set(per_round["head"]))
    comparisons = [judge(name, per_round["base"].get(name), per_round["head"].get(name), factor=factor)
                   for name in names]
    summary = {"base": commits["base"], "head": commits["head"], "machine": machine, "factor": factor,
               "p_threshold": P_THRESHOLD, "rounds": rounds, "bench": list(bench),
               "comparisons": [dataclasses.asdict(c) for c in comparisons]}
    (out / "gate.json").write_text(json.dumps(summary, indent=2, default=str))
    return comparisons


def gate_table(comparisons, base: str, head: str):
    from rich.table import Table

    table = Table(title=f"asv gate: head {head[:12]} vs base {base[:12]} (ratio = head/base, lower is better)")
    for column in ("benchmark", "base", "head", "ratio", "p", "separation", "rounds (base | head)", "verdict"):
        table.add_column(column, justify="left" if column in ("benchmark", "verdict") else "right")
    styles = {"regressed": "bold red", "now fails": "bold red", "inconclusive": "yellow", "improved": "green",
              "fixed": "green"}
    for c in comparisons:
        rounds = " ".join(f"{v:.3g}" for v in c.base_rounds) + " | " + " ".join(f"{v:.3g}" for v in c.head_rounds)
        table.add_row(c.name, f"{c.base:.4g}", f"{c.head:.4g}", f"{c.ratio:.3f}", f"{c.p_value:.1e}",
                      f"{c.separation:.3f}", rounds,
                      f"[{styles.get(c.verdict, '')}]{c.verdict}[/]" if c.verdict in styles else c.verdict)
    return table


def record(revisions, *, bench=None, machine=None, quick=False, results_dir: Path = ROOT / "results" / "asv",
           console=None) -> int:
    """One asv run per commit (its own code) into ``results_dir``; returns the worst exit
    status. Refuses (ValueError) to add to a machine's history whose ``machine.json``
    names another CPU than this host's (model and signature): asv would take both
    hosts' timings for one machine's, and a slower host for a regression."""
    from rich.console import Console

    console = console or Console(stderr=True, highlight=False, width=160)
    this = machine_record(machine)
    machine = this["machine"]
    stored = results_dir / machine / "machine.json"
    if stored.exists():
        cpu = json.loads(stored.read_text()).get("cpu")
        if cpu != this["cpu"]:
            raise ValueError(f"{stored} names CPU {cpu!r}, this host {this['cpu']!r}: recording here would mix two "
                             f"machines' timings in one history; pass another --machine name (a record made before "
                             f"the CPU signature names the model only: if this is that very machine, put this "
                             f"host's cpu string into that file)")
    config = config_for(results_dir, STATE / "html", STATE / "record.asv.conf.json")
    worst = 0
    for revision in revisions:
        commit = resolve(revision)
        started = time.perf_counter()
        log = STATE / "logs" / f"record-{commit[:12]}.log"
        status = run_asv(config, commit, code=worktree(commit), bench=bench, machine=machine, log=log, quick=quick)
        console.print(f"{revision} = {commit[:12]}: asv exit {status} in {time.perf_counter() - started:.0f} s; "
                      f"log {log}")
        worst = max(worst, status)
    return worst


HISTORY_COMMANDS = ("publish", "preview", "compare", "show")


def history(asv_args) -> int:
    """``asv ASV_ARGS`` on the committed history (results/asv; HTML in .asv/html)."""
    config = config_for(ROOT / "results" / "asv", STATE / "html", STATE / "history.asv.conf.json")
    command, rest = asv_args[0], list(asv_args[1:])
    return subprocess.run([sys.executable, "-m", "asv", command, "--config", str(config), *rest], cwd=ROOT).returncode


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m harness.asv_runs", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    machine = commands.add_parser("machine", help="write this machine's asv record (GPU included)")
    machine.add_argument("--name", help="machine name (default: asv's, the host name)")
    rec = commands.add_parser("record", help="run the suite on commits into results/asv")
    rec.add_argument("revisions", nargs="+", help="commits (any git revision)")
    rec.add_argument("--bench", "-b", action="append",
                     help=f"asv benchmark regex (repeatable; default {HISTORY_BENCH}; '.' for all)")
    rec.add_argument("--machine", help="asv machine name (default: the host name)")
    rec.add_argument("--quick", action="store_true", help="one sample each (a smoke run; no statistics)")
    rec.add_argument("--results-dir", type=Path, default=ROOT / "results" / "asv")
    his = commands.add_parser("history", help="asv publish/preview/compare/show on the committed history "
                                               "(results/asv), e.g. history compare HEAD~1 HEAD")
    his.add_argument("asv_args", nargs=argparse.REMAINDER, help="an asv command and its arguments")
    gat = commands.add_parser("gate", help="exit 1 when head is slower than base beyond the measured noise")
    gat.add_argument("--base", required=True, help="the reference commit (e.g. origin/main)")
    gat.add_argument("--head", default="HEAD", help="the commit under test (default HEAD)")
    gat.add_argument("--bench", "-b", action="append", help=f"asv benchmark regex (default: {GATE_BENCH})")
    gat.add_argument("--rounds", type=int, default=3, help="rounds per commit, alternating order (default 3)")
    gat.add_argument("--factor", type=float, default=FACTOR, help=f"smallest ratio that counts (default {FACTOR})")
    gat.add_argument("--machine", help="asv machine name (default: the host name)")
    gat.add_argument("--out", type=Path, default=STATE / "gate", help="results, logs and gate.json (default .asv/gate)")
    args = parser.parse_args(argv)
    try:
        if args.command == "machine":
            print(json.dumps(machine_record(args.name), indent=2))
            return 0
        if args.command == "history":
            if not args.asv_args or args.asv_args[0] not in HISTORY_COMMANDS:
                parser.error(f"history takes one of {', '.join(HISTORY_COMMANDS)} and its asv arguments; "
                             f"got {' '.join(args.asv_args) or 'nothing'}")
            return history(args.asv_args)
        if args.command == "record":
            return record(args.revisions, bench=args.bench or (HISTORY_BENCH,), machine=args.machine, quick=args.quick,
                          results_dir=args.results_dir.resolve())
        if args.factor <= 1:
            parser.error(f"--factor must be above 1 (a ratio head/base); got {args.factor}")
        if args.rounds < 2:
            parser.error("--rounds must be at least 2 (samples must come from more than one process per commit); "
                         f"got {args.rounds}")
        from rich.console import Console

        started = time.perf_counter()
        comparisons = gate(args.base, args.head, bench=args.bench or (GATE_BENCH,), rounds=args.rounds,
                           factor=args.factor, machine=args.machine, out=args.out.resolve())
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except ModuleNotFoundError as error:
        if (error.name or "").split(".")[0] not in ("asv", "asv_runner"):
            raise
        print(f"error: asv is not installed for this Python ({sys.executable}): run the command with the "
              f"environment's Python (.venv/bin/python, or activate it: . .venv/bin/activate), or pip install "
              f"'groupnorm-bench[asv]'", file=sys.stderr)
        return 2
    console = Console(highlight=False, width=max(shutil.get_terminal_size((160, 24)).columns, 160))
    console.print(gate_table(comparisons, resolve(args.base), resolve(args.head)))
    bad = [c for c in comparisons if c.verdict in ("regressed", "now fails")]
    unsure = [c for c in comparisons if c.verdict == "inconclusive"]
    compared = [c for c in comparisons if c.verdict != "n/a"]
    console.print(f"{len(bad)} regressed, {len(unsure)} inconclusive, of {len(compared)} compared (factor "
                  f"{args.factor}, Mann-Whitney p < {P_THRESHOLD}, every round apart) in "
                  f"{time.perf_counter() - started:.0f} s; details in {args.out / 'gate.json'}")
    if unsure:
        console.print("[yellow]inconclusive: the medians differ by more than the factor, but the samples or the "
                      "rounds do not bear it out (the machine's process-to-process noise); rerun with more --rounds "
                      "on a quieter machine to decide[/]")
    if not compared:
        console.print("[red]nothing was compared: no benchmark ran at both commits[/]")
        return 1
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
