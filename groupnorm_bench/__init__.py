"""groupnorm-bench for users: the drop-in ``GroupNorm`` and the harness's public API.

    >>> import groupnorm_bench as gnb
    >>> norm = gnb.GroupNorm(32, 256)            # torch.nn.GroupNorm's surface
    >>> gnb.replace_group_norms(model)           # every nn.GroupNorm in a model, in place
    >>> gnb.chosen_backends(model)               # what runs each problem, and why
    >>> gnb.verify(backends=["torch"], suite="smoke")   # the harness, re-exported

``import groupnorm_bench`` imports no framework: the torch-facing names (``GroupNorm``,
``group_norm``, ``replace_group_norms``, ...) load torch on first use.
"""

from __future__ import annotations

import importlib

from harness import (
    FAILED,
    STATUSES,
    Case,
    NoVerifiedBackendError,
    bench,
    fastest,
    fuzz,
    judge,
    known_bugs,
    select,
    suites,
    tolerance,
    verify,
)

from .dispatch import ORDER, clear, configure, options

_LAZY = {
    "GroupNorm": "groupnorm_bench.module",
    "replace_group_norms": "groupnorm_bench.module",
    "restore_group_norms": "groupnorm_bench.module",
    "chosen_backends": "groupnorm_bench.module",
    "warmup": "groupnorm_bench.module",
    "group_norm": "groupnorm_bench.functional",
    "assert_group_norm_correct": "groupnorm_bench.testing",
}

__all__ = [  # noqa: PLE0604  (the lazy names are strings: the keys of _LAZY)
    "FAILED",
    "ORDER",
    "STATUSES",
    "Case",
    "NoVerifiedBackendError",
    "bench",
    "clear",
    "configure",
    "fastest",
    "fuzz",
    "judge",
    "known_bugs",
    "options",
    "select",
    "suites",
    "tolerance",
    "verify",
    *_LAZY,
]


def __getattr__(name: str):
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'groupnorm_bench' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_LAZY))
