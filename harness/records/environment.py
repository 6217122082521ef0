"""The environment a result was produced in, read without importing any framework.

Every results row carries these fields (see :mod:`harness.results`): host, OS, Python,
CPU model, signature (family, vector extensions, caches) and thread counts, memory, GPU
name, driver and CUDA version (from ``nvidia-smi`` when present), the machine type (the
GPU's model as Ray names accelerator types: ``H100``, ``A100``, ...; empty without a
GPU), installed framework versions (from package metadata, never by importing them), the
git commit of this checkout, and the date.
"""

from __future__ import annotations

import datetime
import functools
import json
import os
import platform
import re
import shutil
import subprocess
from importlib import metadata

PACKAGES = ("numpy", "pandas", "ml_dtypes", "torch", "jax", "jaxlib", "numba", "numba-cuda",
            "cupy-cuda13x", "cupy-cuda12x", "cupy", "triton")
_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # the checkout


def _run(command, timeout=10) -> str:
    try:
        return subprocess.run(command, capture_output=True, text=True, timeout=timeout, cwd=_ROOT).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


ISA_FLAGS = ("avx512_bf16", "avx512bw", "avx512f", "avx2", "fma", "f16c", "sse4_2", "asimd", "sve")  # kernels' paths


def _cpu_signature(cpuinfo: str = "/proc/cpuinfo", caches: str = "/sys/devices/system/cpu/cpu0/cache") -> str:
    """What tells two CPUs of the same model name apart, as far as timings go: vendor,
    family/model/stepping, the vector extensions the kernels choose paths by
    (:data:`ISA_FLAGS`, those present), and the cache sizes (Linux sysfs), e.g.
    ``AuthenticAMD 23/1/2 avx2 fma f16c sse4_2 L1d 32K L2 512K L3 8192K``. Two hosts
    both named "AMD EPYC", one with AVX-512 and a 32 MiB L3, the other with AVX2 and
    8 MiB, ran this project's CPU benches in turn: the model name alone could not keep
    their rows apart. Elsewhere (no /proc/cpuinfo): the platform's processor and
    machine strings."""
    fields = {}
    try:
        with open(cpuinfo) as handle:
            for line in handle:
                if not line.strip():
                    break  # the first CPU's block
                key, _, value = line.partition(":")
                fields.setdefault(key.strip(), value.strip())
    except OSError:
        return " ".join(filter(None, (platform.processor(), platform.machine()))) or "unknown"
    flags = set((fields.get("flags") or fields.get("Features") or "").split())
    parts = [fields.get("vendor_id") or fields.get("CPU implementer", ""),
             "/".join(fields.get(k, "?") for k in ("cpu family", "model", "stepping"))
             if "cpu family" in fields else fields.get("CPU part", ""),
             " ".join(flag for flag in ISA_FLAGS if flag in flags)]
    sizes = []
    for index in sorted(os.listdir(caches)) if os.path.isdir(caches) else []:
        try:
            with open(os.path.join(caches, index, "level")) as level, \
                    open(os.path.join(caches, index, "type")) as kind, \
                    open(os.path.join(caches, index, "size")) as size:
                kind_text = kind.read().strip()
                if kind_text != "Instruction":
                    name = f"L{level.read().strip()}" + ("d" if kind_text == "Data" else "")
                    sizes.append(f"{name} {size.read().strip()}")
        except OSError:
            continue
    return " ".join(part for part in parts + sizes if part)


def _memory_total_gb() -> float:
    try:
        with open("/proc/meminfo") as handle:
            for line in handle:
                if line.startswith("MemTotal:"):
                    return round(int(line.split()[1]) / 2 ** 20, 1)
    except OSError:
        pass
    return float("nan")


def _gpu() -> dict:
    if not shutil.which("nvidia-smi"):
        return {"gpu_name": "", "gpu_driver": "", "cuda_version": ""}
    query = _run(["nvidia-smi", "--query-gpu=name,driver_version", "--format=csv,noheader"])
    names, drivers = [], []
    for line in query.splitlines():
        parts = [p.strip() for p in line.split(",")]
        if len(parts) == 2:
            names.append(parts[0])
            drivers.append(parts[1])
    header = _run(["nvidia-smi"])
    cuda = header.split("CUDA Version:", 1)[1].split()[0] if "CUDA Version:" in header else ""
    return {"gpu_name": "; ".join(names), "gpu_driver": "; ".join(sorted(set(drivers))), "cuda_version": cuda}


# Ray 2.60's rule (ray/_private/accelerators/nvidia_gpu.py): "NVIDIA H100 80GB HBM3" -> "H100"
_GPU_MODEL = re.compile(r"\w+\s+((?:[A-Z]+\s+)*[A-Z0-9]*\d[A-Z0-9]*)")


def machine_type(gpu_name: str) -> str:
    """The accelerator type of a machine whose first GPU ``nvidia-smi`` names ``gpu_name``
    (``"; "``-separated), as Ray labels nodes (``accelerator_type:H100``, ``A100``,
    ``RTX-PRO-6000``, ``GeForce-RTX-5090``); empty without a GPU."""
    first = (gpu_name or "").split(";")[0].strip()
    found = _GPU_MODEL.match(first)
    if found and len(found.group(1)) > 1:
        return found.group(1).replace(" ", "-")
    return re.sub(r"^NVIDIA\s+", "", first).strip().replace(" ", "-")


def _versions() -> dict:
    found = {}
    for package in PACKAGES:
        try:
            found[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            continue
    return found


def _commit() -> str:
    commit = _run(["git", "rev-parse", "--short=12", "HEAD"])
    if not commit:
        return "unknown"
    dirty = _run(["git", "status", "--porcelain", "--untracked-files=no"])
    return commit + ("-dirty" if dirty else "")


def _package_version() -> str:
    try:
        return metadata.version("groupnorm-bench")
    except metadata.PackageNotFoundError:
        return "source"


@functools.lru_cache(maxsize=1)
def machine() -> dict:
    """Facts about this machine and checkout (cached: they do not change within a run)."""
    affinity = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    gpu = _gpu()
    return {
        "host": platform.node(),
        "os": platform.platform(),
        "python": platform.python_version(),
        "cpu_model": _cpu_model(),
        "cpu_signature": _cpu_signature(),
        "cpu_count": os.cpu_count(),
        "cpu_affinity": affinity,
        "memory_gb": _memory_total_gb(),
        **gpu,
        "machine_type": machine_type(gpu["gpu_name"]),
        "versions": json.dumps(_versions(), sort_keys=True),
        "commit": _commit(),
        "groupnorm_bench": _package_version(),
    }


def environment() -> dict:
    """:func:`machine` plus the date (UTC, ISO 8601) of this call and a fresh run id."""
    import uuid

    now = datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0)
    return {**machine(), "date": now.isoformat(), "run_id": uuid.uuid4().hex[:12]}
