"""Dtype names shared by every layer, and their host (NumPy) types.

The harness speaks of dtypes by name: ``"float16"``, ``"bfloat16"``, ``"float32"``,
``"float64"``. NumPy has no bfloat16 of its own; the host type comes from ``ml_dtypes``
(the package JAX uses for the same purpose), a core dependency of this project.
"""

from __future__ import annotations

import numpy as np

DTYPES = ("float16", "bfloat16", "float32", "float64")
HALF_DTYPES = ("float16", "bfloat16")


def numpy_dtype(name: str) -> np.dtype:
    """The host dtype for a dtype name (``bfloat16`` through ``ml_dtypes``)."""
    if name == "bfloat16":
        import ml_dtypes

        return np.dtype(ml_dtypes.bfloat16)
    if name not in DTYPES:
        raise ValueError(f"dtype must be one of {', '.join(DTYPES)}; got {name!r}")
    return np.dtype(name)


def dtype_name(dtype) -> str | None:
    """The harness name of a framework's dtype object, or None if it is not a float type.

    Works without importing any framework: torch dtypes print as ``torch.float16``,
    NumPy/JAX/CuPy dtypes as ``float16`` (and ``bfloat16`` for ml_dtypes).
    """
    text = str(dtype).rsplit(".", 1)[-1].strip("<>'\" ")
    aliases = {"half": "float16", "float": "float32", "double": "float64"}
    text = aliases.get(text, text)
    return text if text in DTYPES else None


def accumulation_dtype(name: str) -> str:
    """The precision GroupNorm statistics are expected to be computed in for ``name``.

    Half types accumulate in float32 (as torch, cuDNN and apex do); float32 and float64
    in themselves.
    """
    return "float32" if name in HALF_DTYPES else name


def finfo(name: str):
    """Machine limits of a dtype name (``ml_dtypes.finfo`` knows bfloat16, NumPy's does not)."""
    import ml_dtypes

    return ml_dtypes.finfo(numpy_dtype(name))
