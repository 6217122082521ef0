"""The results schema: one table for every run, stored as parquet.

Every row is one (case, backend, device, machine type) with its verdict and the
environment it ran in, so files from different machines and days concatenate into one
DataFrame. Later work
(timing, selection) adds columns and status values; it never renames or redefines these.
A reader accepts any file whose ``schema_version`` is at most :data:`SCHEMA_VERSION`
(missing newer columns come back empty) and refuses newer ones.

Status values: :data:`STATUSES` (what each means: :mod:`harness.oracle.checks`); failures
are :data:`FAILED`. A failure that a known framework bug explains keeps its status and
names the bug in ``known_bug`` (:mod:`harness.records.known_bugs`). Rows of a device
emulated on the host (``simulated``: Numba's CUDA simulator) are correctness rows: no
timing is taken from them.

Files: ``<dir>/<command>-<suites>.parquet``, written to a temporary name and renamed, so a
reader never sees half a file. CSV is made on request (``gnbench export``,
:func:`write` with ``csv=True``); :func:`load` reads CSV files too (a folder's CSV is read
where no parquet file of the same name sits beside it).
"""

from __future__ import annotations

import glob
import os
import tempfile

from backends.errors import GroupNormBenchError

# 2: known_bug; 3: simulated; 4: pass, gradients, determinism; 5: machine_type, cluster columns; 6: cpu_signature
SCHEMA_VERSION = 6

STATUSES = (
    "passed", "mismatch", "wrong_shape", "wrong_dtype", "nan_mismatch", "input_modified",
    "aliases_input", "error", "oom", "crash", "timeout", "unsupported", "skipped",
)
FAILED = ("mismatch", "wrong_shape", "wrong_dtype", "nan_mismatch", "input_modified", "aliases_input",
          "error", "oom", "crash", "timeout")
NOT_RUN = ("unsupported", "skipped")
JUDGED = ("passed", "mismatch", "nan_mismatch", "wrong_shape", "wrong_dtype", "input_modified", "aliases_input")
PASSES = ("forward", "backward", "train")  # values of the ``pass`` column

COLUMNS = {
    # the case
    "case_id": "printable id of the case (harness.problems.cases.Case.from_id parses it)",
    "backend": "backend name in the registry",
    "device": "cpu or cuda",
    "dtype": "input and output dtype",
    "shape": "input shape, e.g. 2x320x64x64",
    "num_groups": "G",
    "layout": "contiguous, channels_last or strided",
    "distribution": "input distribution (harness.problems.inputs)",
    "seed": "seed of the input streams",
    "eps": "epsilon inside the square root",
    "affine": "none, default (ones/zeros) or random (per channel)",
    "param_dtype": "dtype of weight and bias",
    "group_size": "elements per (sample, group)",
    "pass": "forward, backward (the gradients judged) or train (y and the gradients judged)",
    "grad_distribution": "distribution of the incoming gradient grad_y (backward and train; empty for forward)",
    "grad_layout": "grad_y's memory layout (backward and train; empty for forward)",
    # the verdict
    "status": "verdict (see the module docstring)",
    "max_abs_err": "largest |got - expected| over finite verified elements",
    "max_rel_err": "largest |got - expected| / |expected|",
    "ratio": "largest |got - expected| / tolerance: above 1 fails",
    "tolerance": "tolerance at the worst element",
    "worst_index": "index of the worst element (or first NaN/Inf difference), comma-separated",
    "expected": "oracle value there (float64)",
    "got": "backend value there",
    "reason": "why it failed, was skipped or is unsupported (empty when passed)",
    "output": "the output the verdict's numbers describe: y, grad_x, grad_weight or grad_bias",
    "ratio_y": "ratio of y alone (forward and train)",
    "ratio_grad_x": "ratio of grad_x alone (backward and train)",
    "ratio_grad_weight": "ratio of grad_weight alone (backward and train, with a weight)",
    "ratio_grad_bias": "ratio of grad_bias alone (backward and train, with a bias)",
    "deterministic": "backward and train: whether two backward calls on the same residuals gave the same bits",
    "known_bug": "id of the known framework bug (harness/records/known_bugs.toml) that explains this failure, "
                 "else empty",
    "simulated": "True when the device was emulated on the host (Numba's CUDA simulator): correctness only, "
                 "never timed",
    "verified_groups": "groups compared with the oracle (all, or a sample of whole groups)",
    "total_groups": "N * G",
    "seconds": "wall time of the row (transfer, call, checks)",
    "backend_version": "the backend's version(): framework version, kernel hash for our kernels",
    # the run and its environment
    "schema_version": "version of this schema",
    "date": "UTC time the run started, ISO 8601",
    "run_id": "random id of the sweep that made the row (resumed rows keep their run's)",
    "host": "machine name",
    "os": "platform string",
    "python": "Python version",
    "cpu_model": "CPU model name",
    "cpu_signature": "vendor, family/model/stepping, vector extensions and cache sizes (harness.records.environment."
    "_cpu_signature): two CPUs of one model name apart; empty in rows of schema 5 and before",
    "cpu_count": "logical CPUs of the machine",
    "cpu_affinity": "logical CPUs this process may use",
    "memory_gb": "host memory, GiB",
    "gpu_name": "GPU model(s) from nvidia-smi, empty without one",
    "gpu_driver": "NVIDIA driver version",
    "cuda_version": "CUDA version the driver supports",
    "machine_type": "accelerator type of the machine as Ray names it (H100, A100, ...; empty without a GPU); on a "
    "cluster, the type the task was scheduled on (--accelerators)",
    "node": "Ray node id that made the row (empty for a local run; for a row the driver wrote because no node "
    "answered the case, the node its task last ran on)",
    "attempt": "1, or 2 when the row comes from the retry of a cluster task whose worker or node died",
    "retry_reason": "why the first attempt of the cluster task failed (empty when there was none)",
    "versions": "installed package versions, JSON (numpy, torch, jax, numba, cupy, ...)",
    "commit": "git commit of groupnorm-bench (-dirty when modified)",
    "groupnorm_bench": "installed groupnorm-bench version, or 'source'",
}


def verdict_row(
    case, backend_name: str, version: str, verdict, seconds: float, groups: tuple[int, int], environment: dict
) -> dict:
    """One results row: the case's fields, the verdict's numbers, ``groups`` (verified, total)
    and the environment. Its ``known_bug`` is filled by
    :func:`harness.records.known_bugs.annotate`, which the sweeps call on each row."""
    row = {
        "case_id": case.id,
        "backend": backend_name,
        "device": case.device,
        "dtype": case.dtype,
        "shape": "x".join(map(str, case.shape)),
        "num_groups": case.num_groups,
        "layout": case.layout,
        "distribution": case.distribution,
        "seed": case.seed,
        "eps": case.eps,
        "affine": case.affine,
        "param_dtype": case.param_dtype or case.dtype,
        "group_size": case.group_size,
        "pass": case.pass_,
        "grad_distribution": "" if case.pass_ == "forward" else case.grad_distribution,
        "grad_layout": "" if case.pass_ == "forward" else case.grad_layout or case.layout,
        "status": verdict.status,
        "max_abs_err": verdict.max_abs_err,
        "max_rel_err": verdict.max_rel_err,
        "ratio": verdict.ratio,
        "tolerance": verdict.tolerance,
        "worst_index": None if verdict.worst_index is None else ",".join(map(str, verdict.worst_index)),
        "expected": verdict.expected,
        "got": verdict.got,
        "reason": verdict.reason,
        "output": verdict.output if verdict.status in JUDGED else "",
        **{
            f"ratio_{name}": verdict.ratios.get(name, float("nan"))
            for name in ("y", "grad_x", "grad_weight", "grad_bias")
        },
        "deterministic": verdict.deterministic,
        "verified_groups": groups[0],
        "total_groups": groups[1],
        "seconds": seconds,
        "backend_version": version,
        "schema_version": SCHEMA_VERSION,
        "node": "",
        "attempt": 1,
        "retry_reason": "",
    }
    row.update(environment)
    return row


# Columns a bench row adds to COLUMNS (its status is the verification of the same
# prepared inputs, made just before timing).
BENCH_COLUMNS = {
    "median_s": "device time per call: median over samples of back-to-back calls",
    "iqr_s": "interquartile range of those samples",
    "min_s": "fastest sample",
    "mean_s": "mean of the samples",
    "count": "number of device-time samples",
    "number": "calls per device-time sample",
    "latency_median_s": "host-visible time of one synchronized call: median",
    "latency_iqr_s": "its interquartile range",
    "first_call_s": "the first call, synchronized (includes JIT/compilation)",
    "compile_s": "first_call_s - latency_median_s: the cost of compiling",
    "spread": "iqr_s / median_s",
    "noisy": "spread stayed above 10% after the budget",
    "samples": "raw device-time samples (seconds per call), JSON",
    "latency_samples": "raw latency samples (seconds), JSON",
    "timer": "device-events or host-clock",
    "flushed": "L2 cache flushed before each device-time sample",
    "threads": "worker threads the backend reports (CPU)",
    "bytes": "minimum bytes a forward pass moves: read x, write y, read weight and bias",
    "gbps": "bytes / median_s, in GB/s (1e9)",
    "copy_gbps": "the device's copy bandwidth, same timer, same run: at the sweep's start, or timed again "
    "just before the case where it moves at least 64 MiB (harness.commands.bench.COPY_AGAIN_BYTES)",
    "copy_backend": "the backend whose copy measured it",
    "roofline_pct": "100 * gbps / copy_gbps",
    "speedup_vs_torch": "torch's median_s / this median_s (same case and device, both verified)",
}


KEY = ["case_id", "backend", "device", "machine_type"]  # what makes a row unique in a run


def key(row) -> tuple:
    """A row's :data:`KEY` (machine type empty when a file from before schema 5 lacks it)."""
    return (row["case_id"], row["backend"], row["device"], row.get("machine_type") or "")


class RowLog:
    """Rows saved as they finish, so an interrupted sweep keeps them.

    Each row is appended to ``DIR/.NAME.rows.jsonl`` (flushed and fsynced: a torn last
    line from a kill is ignored on reading). :meth:`finish` writes the parquet file
    atomically and removes the log. With ``resume``, rows from an earlier run in the
    same folder (its final files and any log it left) are kept and :meth:`done` lists
    their keys so the sweep skips them.
    """

    def __init__(self, directory: str, name: str, resume: bool = False):
        self.directory, self.name = directory, name
        os.makedirs(directory, exist_ok=True)
        self.log_path = os.path.join(directory, f".{name}.rows.jsonl")
        self.rows: list[dict] = []
        if resume:
            final = os.path.join(directory, name + ".parquet")
            if os.path.exists(final):
                self.rows.extend(load(final).drop(columns=["source_file"]).to_dict("records"))
            self.rows.extend(_read_log(self.log_path))
        elif os.path.exists(self.log_path):
            os.remove(self.log_path)
        self._rewrite_log()

    def _rewrite_log(self) -> None:
        with open(self.log_path, "w") as handle:
            for row in self.rows:
                handle.write(_json_line(row))
            handle.flush()
            os.fsync(handle.fileno())

    def done(self) -> set:
        """Keys of the rows kept: (case_id, backend, device, machine_type)."""
        return {key(row) for row in self.rows}

    def add(self, row: dict) -> None:
        self.rows.append(row)
        with open(self.log_path, "a") as handle:
            handle.write(_json_line(row))
            handle.flush()
            os.fsync(handle.fileno())

    def finish(self, columns) -> list[str]:
        import pandas as pd

        frame = pd.DataFrame(self.rows, columns=list(columns)) if self.rows else pd.DataFrame(columns=list(columns))
        frame = frame.drop_duplicates(subset=KEY, keep="last")
        paths = write(frame, self.directory, self.name)
        os.remove(self.log_path)
        return paths


def _json_line(row: dict) -> str:
    import json

    def plain(value):
        return value.item() if hasattr(value, "item") else str(value)

    return json.dumps(row, default=plain) + "\n"


def _read_log(path: str) -> list[dict]:
    import json

    rows = []
    if os.path.exists(path):
        with open(path) as handle:
            for line in handle:
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError:
                    break  # a line torn by a kill: everything before it is whole
    return rows


class SchemaError(GroupNormBenchError, ValueError):
    """A results file this version cannot read (not a results file, unreadable, or newer)."""


def write(frame, directory: str, name: str, csv: bool = False) -> list[str]:
    """Write ``frame`` as ``directory/name.parquet`` (and ``.csv`` with ``csv``), each
    atomically; returns the paths written."""
    os.makedirs(directory, exist_ok=True)
    paths = [_atomically(frame, os.path.join(directory, name + ".parquet"), _write_parquet)]
    if csv:
        paths.append(write_csv(frame, os.path.join(directory, name + ".csv")))
    return paths


def write_csv(frame, path: str) -> str:
    """Write ``frame`` as the CSV file ``path`` (atomically; its folder is created)."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    return _atomically(frame, path, _write_csv)


def _atomically(frame, path: str, writer) -> str:
    directory, name = os.path.split(os.path.abspath(path))
    handle, temporary = tempfile.mkstemp(dir=directory, prefix=f".{name}", suffix=os.path.splitext(name)[1])
    os.close(handle)
    try:
        writer(frame, temporary)
        os.chmod(temporary, 0o666 & ~_umask())  # mkstemp makes 0600; results are shared
        os.replace(temporary, path)
    finally:
        if os.path.exists(temporary):
            os.remove(temporary)
    return path


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _write_parquet(frame, path):
    frame.to_parquet(path, index=False)


def _write_csv(frame, path):
    frame.to_csv(path, index=False)


def _flatten(paths) -> list:
    """Paths given as several arguments, lists of them, or both."""
    flat = []
    for path in paths:
        if isinstance(path, (list, tuple)):
            flat.extend(_flatten(path))
        else:
            flat.append(path)
    return flat


def _files(paths) -> list[str]:
    found = []
    for path in _flatten(paths):
        path = os.fspath(path)
        if os.path.isdir(path):
            parquet = sorted(glob.glob(os.path.join(path, "**", "*.parquet"), recursive=True))
            stems = {p[: -len(".parquet")] for p in parquet}
            csv = [
                p
                for p in sorted(glob.glob(os.path.join(path, "**", "*.csv"), recursive=True))
                if p[: -len(".csv")] not in stems
            ]
            found.extend(parquet + csv)
        elif os.path.exists(path):
            found.append(path)
        else:
            raise FileNotFoundError(f"no results file or folder at {path!r}")
    return found


def load(*paths):
    """Read any number of results files (.parquet, .csv) or folders of them, given as
    arguments or lists (``load(a, b)``, ``load([a, b])``), into one DataFrame (a folder's
    parquet file wins over a CSV of the same name).

    Raises:
        FileNotFoundError: a path does not exist.
        SchemaError: a file is not a results file, or was written by a newer schema.
    """
    import pandas as pd

    frames = []
    for path in _files(paths):
        try:
            if path.endswith(".parquet"):
                frame = pd.read_parquet(path)
            else:
                frame = pd.read_csv(path, keep_default_na=False, na_values=[""])
        except (ImportError, FileNotFoundError, PermissionError, IsADirectoryError):
            raise  # a missing reader or an unreachable file: not a question of content
        except Exception as error:  # pandas' and pyarrow's parse errors (some of them OSErrors)
            raise SchemaError(
                f"{path} is not a groupnorm-bench results file ({type(error).__name__}: {error})"
            ) from None
        if "schema_version" not in frame.columns or "status" not in frame.columns:
            raise SchemaError(f"{path} is not a groupnorm-bench results file (no schema_version/status column)")
        newest = int(frame.schema_version.max()) if len(frame) else SCHEMA_VERSION
        if newest > SCHEMA_VERSION:
            raise SchemaError(f"{path} has schema version {newest}; this groupnorm-bench reads up to {SCHEMA_VERSION}")
        frame["source_file"] = path
        frames.append(frame)
    if not frames:
        return pd.DataFrame(columns=list(COLUMNS) + ["source_file"])
    combined = pd.concat(frames, ignore_index=True)
    required = list(COLUMNS) + (list(BENCH_COLUMNS) if any(c in combined.columns for c in BENCH_COLUMNS) else [])
    for column in required:
        if column not in combined.columns:
            combined[column] = None
    combined["simulated"] = combined["simulated"].fillna(False).astype(bool)  # older schemas: never simulated
    # older schemas: local runs, no machine type, the CPU unsigned
    for column in ("machine_type", "node", "retry_reason", "cpu_signature"):
        combined[column] = combined[column].astype(object).fillna("").astype(str)
    combined["attempt"] = combined["attempt"].fillna(1).astype(int)
    return combined
