"""gnbench fuzz: property-based search that shrinks a failure to a minimal case whose id
reruns it exactly."""

import importlib
import json
import sys

import pytest

import backends
from backends.errors import InvalidArgumentError
from conftest import run_harness
from harness.commands import selftest
from harness.problems import inputs, suites
from harness.problems.cases import Case
from harness.problems.inputs import Parametric
from harness.records import known_bugs

hypothesis = pytest.importorskip("hypothesis", reason="gnbench fuzz needs hypothesis (the 'fuzz' extra)")

fuzz = importlib.import_module("harness.commands.fuzz")  # the module: the attribute harness.fuzz is the function


def test_parametric_distribution_ids_round_trip_and_are_canonical():
    case = Case((2, 6, 5), 3, "bfloat16", "strided", Parametric(-1e3, 0.01, 5.0, 2, 1).name, 3, eps=1e-3)
    assert case.id == "2x6x5-g3-bfloat16-strided-p_o-1000.0_s0.01_c5.0_k2_z1-s3-eps0.001"
    assert Case.from_id(case.id) == case
    for name in ("p_o1e3_s1.0_c0.0_k0_z0", "p_o1000.0_s-1.0_c0.0_k0_z0", "p_oinf_s1.0_c0.0_k0_z0"):
        assert not inputs.is_distribution(name)
        with pytest.raises(InvalidArgumentError, match="distribution"):
            Case((2, 4), 2, distribution=name)


def test_parametric_inputs_do_what_the_parameters_say():
    x = inputs.make(Case((2, 4, 50), 2, "float64", distribution=Parametric(100.0, 0.5, 0.0, 2, 1).name)).x
    groups = x.reshape(2, 2, -1)
    assert (groups[:, 0] == 100.0).all()  # z1: the first group of each sample is constant
    outliers = groups[:, 1][abs(groups[:, 1] - 100.0) > 1000]
    assert len(outliers) == 4 and (abs(abs(outliers - 100.0) - 5000.0) < 1e-9).all()  # k2 per group at 1e4 * s
    with pytest.raises(InvalidArgumentError, match="no defined answer"):
        Case((2, 4, 50), 2, eps=0.0, distribution=Parametric(100.0, 0.5, 0.0, 0, 1).name)


def test_drawn_cases_are_valid_small_and_cover_the_whole_condition_range():
    """The search draws |mean|/std past what float32 can hold (no region is skipped)."""
    from hypothesis import HealthCheck, given, settings

    seen = []

    @settings(max_examples=300, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    @given(fuzz.case_strategy(backends.DTYPES, max_elements=5000))
    def draw(case):
        seen.append(case)
        assert case.numel <= 5000
        assert case.eps > 0 or not fuzz._has_constant_group(case)

    draw()
    assert {c.layout for c in seen} == set(backends.LAYOUTS) and {len(c.shape) for c in seen} == {2, 3, 4, 5}
    conditions = [(abs(p.offset) + p.spread) / p.scale for p in map(Parametric.parse, (c.distribution for c in seen))]
    assert max(conditions) > 2.0 ** 24  # beyond float32's precision: judged, not excluded


def test_a_short_seeded_search_finds_no_false_alarm_in_the_ensemble():
    """Every member of the correct ensemble, searched for failures: none is found (each
    fuzz case is small, so even the serial members are inside the policy's domain)."""
    from harness.commands import ensemble

    ensemble.register_backends()
    members = ["ok-serial-two-pass", "ok-welford", "ok-chunked-chan"]
    result = fuzz.fuzz(backends=members, devices=["cpu"], budget=3, seed=3)
    assert all(result.examples[name, "cpu"] > 30 for name in members), result.examples
    assert not result.findings, [(f.backend, f.case_id, f.reason) for f in result.findings]


def test_a_rare_planted_bug_is_found_and_shrunk_to_a_case_that_reruns():
    selftest.register_backends()
    corner = selftest.RARE_BUG.needs[1]
    assert not any(corner(c) for name in ("smoke", "default", "adversarial") for c in suites.get(name))
    result = fuzz.fuzz(backends=["bug-rare-f16-tail"], devices=["cpu"], budget=8, seed=0)
    minimal = [f for f in result.findings if f.status == "mismatch"]
    assert minimal and minimal[0].case_id == "1x5-g1-float16-contiguous-p_o0.0_s1.0_c0.0_k0_z0-s0", result.findings
    assert corner(Case.from_id(minimal[0].case_id)) and minimal[0].ratio > 10
    ran = run_harness("verify", "--plugin", "harness.selftest", "--backends", "bug-rare-f16-tail", "--devices", "cpu",
                      "--case", minimal[0].case_id)
    assert ran.returncode == 1 and "mismatch bug-rare-f16-tail:cpu " + minimal[0].case_id in ran.stdout


def _torch_in_known_bug_range() -> bool:
    from harness.records.environment import machine

    installed = json.loads(machine()["versions"]).get("torch")
    return backends.get("torch").availability("cpu") is None and known_bugs.load()[0].version_matches(installed)


@pytest.mark.skipif(not _torch_in_known_bug_range(), reason="torch absent or outside the known bug's versions")
def test_fuzz_rediscovers_the_torch_channels_last_bug_as_known():
    result = fuzz.fuzz(backends=["torch"], devices=["cpu"], budget=10, seed=0)
    found = [f for f in result.findings if f.known_bug]
    # its mismatch and, with eps = 0 far from 0, its NaN (a negative variance): one bug, two classes
    assert found and {f.known_bug for f in found} == {"torch-cpu-channels-last-one-pass-variance"}, result.findings
    assert {Case.from_id(f.case_id).layout for f in found} == {"channels_last"}
    assert not [f for f in result.findings if not f.known_bug]


def test_usage_errors():
    with pytest.raises(InvalidArgumentError, match="budget"):
        fuzz.fuzz(backends=["numpy"], budget=-1)
    ran = run_harness("fuzz", "--backends", "numpy", "--budget", "-1")
    assert ran.returncode == 2 and "--budget" in ran.stdout + ran.stderr
    ran = run_harness("fuzz", "--backends", "no-such-backend")
    assert ran.returncode == 2 and "valid backends" in ran.stderr


def test_without_hypothesis_fuzz_says_which_extra_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "hypothesis", None)
    with pytest.raises(fuzz.FuzzUnavailableError, match=r"groupnorm-bench\[fuzz\]"):
        fuzz.fuzz(backends=["numpy"], budget=1)
