"""A backend that raises (anywhere in its contract) becomes rows with reasons; the sweep goes on."""

import pytest

import backends
import harness
from backends import GroupNormBackend
from conftest import plain_group_norm


class Raising(GroupNormBackend):
    name = "test-raising"
    where = "group_norm"

    def availability(self, device):
        if self.where == "availability":
            raise RuntimeError("driver exploded")
        return super().availability(device)

    def supports(self, case):
        if self.where == "supports":
            raise KeyError("no table")
        return super().supports(case)

    def group_norm(self, x, num_groups, weight=None, bias=None, eps=1e-5):
        if self.where == "group_norm" and x.dtype.itemsize == 2:
            raise MemoryError("kernel ran out of shared memory")
        return plain_group_norm(x, num_groups, weight, bias, eps)

    def from_numpy(self, array, device):
        if self.where == "from_numpy":
            raise ValueError("cannot copy")
        return array.copy()

    def to_numpy(self, array):
        return array


@pytest.mark.parametrize("where, status, text", [
    ("group_norm", "oom", "MemoryError: kernel ran out of shared memory"),
    ("supports", "error", "supports() failed: KeyError"),
    ("from_numpy", "error", "from_numpy failed: ValueError: cannot copy"),
    ("availability", "skipped", "availability() failed: RuntimeError: driver exploded"),
])
def test_raising_backend_becomes_rows(where, status, text):
    backend = Raising()
    backend.where = where
    backends.register(backend, replace=True)
    try:
        frame = harness.verify(backends=["test-raising", "numpy"], suite="smoke")
    finally:
        backends.unregister("test-raising")
    mine = frame[frame.backend == "test-raising"]
    assert len(mine) == 12 and (frame[frame.backend == "numpy"].status == "passed").all()
    failing = mine[mine.status == status]
    assert len(failing) > 0 and failing.reason.str.contains(text, regex=False).all()
    if where == "group_norm":  # only half inputs raise: the float32/64 rows still pass
        assert set(mine.status) == {"oom", "passed"}
