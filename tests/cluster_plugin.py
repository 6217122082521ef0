"""Backends for the cluster tests (tests/test_cluster.py), loaded on the driver and on every
node with ``--plugin cluster_plugin`` (the test cluster's nodes have tests/ on PYTHONPATH).

* ``slow-numpy``: NumPy's GroupNorm, 0.3 s per call, so that a sweep is still running when
  a test kills its driver or removes a node.
* ``segfault``: dies of SIGSEGV on every call: a ``crash`` row, as in a local sweep.
* ``kill-once``: NumPy's GroupNorm whose first call (per marker folder) kills the Ray
  worker process running the task: the backend runs in the harness's worker, a child of
  that Ray worker. The folder is ``$GNBENCH_CLUSTER_TEST_DIR``.
"""

import os
import signal
import time

import backends
from backends.numpy_backend import NumpyBackend


class SlowNumpy(NumpyBackend):
    name = "slow-numpy"
    description = "NumPy's GroupNorm, 0.3 s per call (cluster tests)"

    def group_norm(self, x, num_groups, weight=None, bias=None, eps=1e-5):
        time.sleep(0.3)
        return super().group_norm(x, num_groups, weight, bias, eps)


class Segfault(NumpyBackend):
    name = "segfault"
    description = "dies of SIGSEGV on every call (cluster tests)"

    def group_norm(self, x, num_groups, weight=None, bias=None, eps=1e-5):
        os.kill(os.getpid(), signal.SIGSEGV)
        time.sleep(5)


class KillOnce(NumpyBackend):
    name = "kill-once"
    description = "NumPy's GroupNorm that kills its Ray worker on its first call (cluster tests)"

    def group_norm(self, x, num_groups, weight=None, bias=None, eps=1e-5):
        marker = os.path.join(os.environ["GNBENCH_CLUSTER_TEST_DIR"], "killed-once")
        if not os.path.exists(marker):
            with open(marker, "w") as handle:
                handle.write(str(os.getppid()))
            os.kill(os.getppid(), signal.SIGKILL)  # the Ray worker that runs this task's sweep
            time.sleep(5)
        return super().group_norm(x, num_groups, weight, bias, eps)


def register_backends():
    for backend in (SlowNumpy(), Segfault(), KillOnce()):
        backends.register(backend, replace=True)
