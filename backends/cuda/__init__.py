"""Our CUDA GroupNorm kernels (see ``docs/cuda.md``).

``groupnorm.cu`` is the CUDA C source that the ``cupy`` backend (``cupy_backend.py``)
compiles with NVRTC; ``numba_kernels.py`` the same decomposition in Numba, run by the
``numba-cuda`` backend (``numba_cuda_backend.py``). ``launch.py`` is the launch geometry
both share, ``model.py`` a NumPy model of the kernels' arithmetic (checked on the CPU),
``sass.py`` the static evidence of the compiled kernels (registers, instructions per
element) against ``sass_budget.json``. Importing this package imports no framework.
"""
