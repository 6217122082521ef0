"""``numba-cpu``: our CPU GroupNorm kernels in Numba (see ``docs/numba-cpu.md``).

``backend.py`` is the backend (the contract, layouts, where outputs are placed);
``kernels.py`` the compiled kernels; ``halves.py`` float16/bfloat16 conversions and
narrowing, ``tiles.py`` the statistics' register tiles and ``stores.py`` streaming stores
and prefetch, the LLVM intrinsics inlined into the kernels. Importing this package imports
no Numba: the backend loads the kernels on first use.
"""
