"""Will a case fit? Host and device memory a verification needs, and what is free.

A case whose inputs, outputs and oracle would not fit is skipped with the numbers in its
reason; the oracle itself is bounded (blocks of groups, a sample of whole groups past
2^26 elements: :mod:`harness.oracle.expected`), so what decides is the arrays a backend holds.
Set ``GNBENCH_HOST_MEMORY`` (bytes, or with a K/M/G suffix) to pretend the host has
less memory than it has.
"""

from __future__ import annotations

import os

from backends.dtypes import numpy_dtype
from harness.oracle.expected import BLOCK_ELEMENTS, VERIFY_ELEMENTS
from harness.problems.inputs import host_bytes

GIB = 2 ** 30
_SUFFIXES = {"K": 2 ** 10, "M": 2 ** 20, "G": 2 ** 30, "T": 2 ** 40}


def host_available() -> int:
    """Bytes of host memory available now (MemAvailable), or the override."""
    override = os.environ.get("GNBENCH_HOST_MEMORY")
    if override:
        text = override.strip().upper().rstrip("B")
        scale = _SUFFIXES.get(text[-1:], 1)
        return int(float(text.rstrip("KMGT")) * scale)
    try:
        with open("/proc/meminfo") as handle:
            for line in handle:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 2 ** 62  # unknown: do not skip


def case_host_bytes(case) -> int:
    """Host bytes to hold a case's input, its expectation and the oracle's work space."""
    verified = min(case.numel, max(VERIFY_ELEMENTS, case.group_size * 2))
    per_sample = case.numel // max(case.shape[0], 1)
    forward = host_bytes(case) + 16 * verified + 64 * min(case.numel, BLOCK_ELEMENTS) + 16 * per_sample
    if getattr(case, "pass_", "forward") == "forward":
        return forward
    # backward: grad_y, the kept grad_x value and tolerance (16 bytes per element, never
    # sampled), and the oracle's peak of about twelve float64 copies of x
    # (harness.oracle.expected)
    return forward + host_bytes(case) + 16 * case.numel + 96 * case.numel


def backend_host_bytes(case, device: str) -> int:
    """Extra host bytes while one backend runs: on the CPU its input copy, output and
    work space; on a GPU the output and input brought back to the host for checking."""
    itemsize = numpy_dtype(case.dtype).itemsize
    if getattr(case, "pass_", "forward") != "forward":  # grad_y, grad_x twice (determinism), residuals
        extra = 3 * host_bytes(case) + 4 * 4 * case.numel
    else:
        extra = 0
    if device == "cpu":
        return 3 * host_bytes(case) + 2 * 4 * case.numel + extra  # copy, output, float32 temporaries
    return 2 * case.numel * itemsize + host_bytes(case) + extra


def device_bytes(case) -> int:
    """Device bytes a backend needs: input (in its layout), output, some work space; for
    the backward also grad_y, grad_x (twice: the determinism check) and the residuals."""
    forward = 2 * host_bytes(case) + case.numel * numpy_dtype(case.dtype).itemsize
    if getattr(case, "pass_", "forward") == "forward":
        return forward
    return forward + 4 * host_bytes(case)


def gib(count: int) -> str:
    return f"{count / GIB:.1f} GiB"
