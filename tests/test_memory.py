"""Cases too large for the memory here are skipped with numbers; huge ones are verified
on a sample of whole groups, and their rows say so."""

import harness
import harness.oracle.expected
from harness.execution import memory
from harness.problems.cases import Case

BIG = Case((2, 32, 64, 64), 8, "float32")


def test_a_case_that_does_not_fit_is_skipped_with_the_numbers(monkeypatch):
    monkeypatch.setenv("GNBENCH_HOST_MEMORY", "4M")
    frame = harness.verify(backends=["numpy"], cases=[BIG, Case((2, 8, 4), 2)])
    big, small = frame.iloc[0], frame.iloc[1]
    assert big.status == "skipped" and "needs about" in big.reason and "host memory" in big.reason
    assert big.verified_groups == 0 and big.total_groups == 16
    assert small.status == "passed"


def test_host_memory_override_understands_suffixes(monkeypatch):
    monkeypatch.setenv("GNBENCH_HOST_MEMORY", "1.5G")
    assert memory.host_available() == int(1.5 * 2 ** 30)
    monkeypatch.delenv("GNBENCH_HOST_MEMORY")
    assert memory.host_available() > 2 ** 20


def test_huge_cases_are_verified_on_a_stated_sample(monkeypatch):
    monkeypatch.setattr(harness.oracle.expected, "VERIFY_ELEMENTS", BIG.group_size * 3)
    frame = harness.verify(backends=["numpy", "torch"], cases=[BIG])
    assert (frame.status == "passed").all()
    assert (frame.verified_groups == 3).all() and (frame.total_groups == 16).all()


def test_kernelbench_current_is_skipped_here_not_crashed():
    """1.9e9 float32 elements: more than this 24 GiB machine can hold 3 copies of."""
    case = Case((112, 64, 512, 512), 8, "float32", distribution="rand", affine="default")
    need = memory.case_host_bytes(case) + memory.backend_host_bytes(case, "cpu")
    if need <= memory.host_available():
        import pytest

        pytest.skip("this machine has enough memory for the current KernelBench case")
    frame = harness.verify(backends=["numpy"], cases=[case])
    assert frame.status.tolist() == ["skipped"] and "GiB" in frame.reason.iloc[0]
