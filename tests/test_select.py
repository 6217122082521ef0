"""Selection: only verified backends win, noise makes ties, the cache follows versions."""

import re
import time

import numpy as np
import pytest

import backends
import harness
from backends import GroupNormBackend
from conftest import plain_group_norm, run_harness
from harness.commands import selection

SHAPE, GROUPS = (2, 64, 16, 16), 8  # groups of 2048 elements: not a default-suite size


def _numpy_backend(name, *, delay=0.0, one_pass_between=None):
    """A NumPy backend; optionally slow, optionally with one-pass variance on groups whose
    size lies in ``one_pass_between`` (wrong only on hard inputs of such shapes)."""

    def group_norm(x, num_groups, weight=None, bias=None, eps=1e-5):
        if delay:
            time.sleep(delay)
        n, c = x.shape[:2]
        size = x.size // max(n * num_groups, 1)
        if one_pass_between and one_pass_between[0] <= size <= one_pass_between[1]:
            g = x.astype(np.float32).reshape(n, num_groups, size)
            mean = g.mean(axis=2, keepdims=True)
            var = np.maximum((g * g).mean(axis=2, keepdims=True) - mean * mean, 0)
            y = ((g - mean) / np.sqrt(var + np.float32(eps))).reshape(x.shape)
            shape = (1, c) + (1,) * (x.ndim - 2)
            if weight is not None:
                y = y * weight.astype(np.float32).reshape(shape)
            if bias is not None:
                y = y + bias.astype(np.float32).reshape(shape)
            return y.astype(x.dtype)
        return plain_group_norm(x, num_groups, weight, bias, eps)

    return GroupNormBackend.from_function(name, group_norm, dtypes=("float32",))


@pytest.fixture
def planted(tmp_path, monkeypatch):
    monkeypatch.setenv("GNBENCH_CACHE", str(tmp_path / "cache"))
    made = [
        _numpy_backend("test-fast-wrong", one_pass_between=(1000, 100_000)),  # passes default, fails offset here
        _numpy_backend("test-medium", delay=0.004),
        _numpy_backend("test-slow", delay=0.03),
    ]
    for backend in made:
        backends.register(backend, replace=True)
    yield [b.name for b in made]
    for backend in made:
        backends.unregister(backend.name)


def test_fast_but_wrong_and_slow_but_right_are_never_chosen(planted):
    choice = selection.select(SHAPE, GROUPS, backends=planted, budget=0.3, isolate=False)
    by_name = {c.backend: c for c in choice.candidates}
    assert choice.backend == "test-medium"
    wrong = by_name["test-fast-wrong"]
    assert not wrong.eligible and "offset" in wrong.why_not and wrong.default_cases > 0
    assert by_name["test-slow"].eligible and by_name["test-slow"].median_s > by_name["test-medium"].median_s
    assert choice.source == "measured now"


def test_no_verified_backend_is_a_clear_error(planted, monkeypatch):
    with pytest.raises(harness.NoVerifiedBackendError, match="test-fast-wrong: .*offset"):
        selection.select(SHAPE, GROUPS, backends=["test-fast-wrong"], budget=0.1, isolate=False)


def test_cache_hits_and_a_version_change_misses(planted, monkeypatch):
    first = selection.select(SHAPE, GROUPS, backends=planted, budget=0.2, isolate=False)
    again = selection.select(SHAPE, GROUPS, backends=planted, budget=0.2, isolate=False)
    assert again.cached and again.source.startswith("cache of ") and again.backend == first.backend
    assert again.seconds < 0.5 and not first.cached
    refreshed = selection.select(SHAPE, GROUPS, backends=planted, budget=0.2, isolate=False, refresh=True)
    assert not refreshed.cached
    latest = selection.select(SHAPE, GROUPS, backends=planted, budget=0.2, isolate=False)
    assert latest.cached and [repr(c.median_s) for c in latest.candidates] == [
        repr(c.median_s) for c in refreshed.candidates
    ]
    medium = backends.get("test-medium")
    monkeypatch.setattr(type(medium), "source_hash", lambda self: "kernel v2")
    after = selection.select(SHAPE, GROUPS, backends=planted, budget=0.2, isolate=False)
    assert not after.cached and not after.source.startswith("cache")


def test_ties_within_noise_follow_the_preference_order():
    make = selection.Candidate
    a = make("numpy", True, median_s=1.00, iqr_s=0.10, latency_median_s=1, latency_iqr_s=0.1)
    b = make("torch", True, median_s=1.05, iqr_s=0.10, latency_median_s=1, latency_iqr_s=0.1)
    c = make("jax", True, median_s=2.0, iqr_s=0.01, latency_median_s=1, latency_iqr_s=0.1)
    chosen, tie = selection._pick([a, b, c], "device")
    assert chosen.backend == "torch" and tie
    chosen, tie = selection._pick([a, c], "device")
    assert chosen.backend == "numpy" and not tie


def test_a_cached_answer_says_so_in_every_line(planted):
    names = ["test-medium", "test-slow"]
    fresh = selection.select(SHAPE, GROUPS, backends=names, budget=0.1)
    again = selection.select(SHAPE, GROUPS, backends=names, budget=0.1)
    assert fresh.source == "measured now" and again.backend == fresh.backend and again.cached
    assert again.source.startswith("cache of ") and again.source.endswith("(measured now)")
    assert [c.source for c in again.candidates] == [f"cache ({c.source})" for c in fresh.candidates]


def test_select_answers_from_stored_results_of_this_machine(planted, tmp_path, monkeypatch):
    names = ["test-medium", "test-slow"]
    defaults = harness.verify(backends=names, suite="default", dtypes=["float32"], isolate=False)
    defaults = defaults[defaults.layout == "contiguous"]
    case = harness.Case(SHAPE, GROUPS)
    timed = harness.bench(
        backends=names, cases=[c.id for c in selection.problem_cases(case)], budget=0.2, isolate=False
    )
    stored = __import__("pandas").concat([defaults, timed], ignore_index=True)
    choice = selection.select(SHAPE, GROUPS, backends=names, results=stored, isolate=False, use_cache=False)
    assert choice.source == "stored results" and choice.backend == "test-medium"
    cases = defaults.groupby("backend").case_id.nunique()
    assert {c.backend: c.default_cases for c in choice.candidates} == cases.to_dict()
    twice = __import__("pandas").concat([stored, stored], ignore_index=True)  # the same rows in two result files
    counted = selection.select(SHAPE, GROUPS, backends=names, results=twice, isolate=False, use_cache=False)
    assert [c.default_cases for c in counted.candidates] == [c.default_cases for c in choice.candidates]
    emulated = stored.assign(simulated=True)  # times from Numba's CUDA simulator are never evidence
    choice = selection.select(
        SHAPE, GROUPS, backends=names, results=emulated, isolate=False, use_cache=False, budget=0.2
    )
    assert choice.source == "measured now"
    foreign = stored.assign(host="another-machine")
    choice = selection.select(
        SHAPE, GROUPS, backends=names, results=foreign, isolate=False, use_cache=False, budget=0.2
    )
    assert choice.source == "measured now"
    # the same host name and model name, but another CPU's signature, or none (rows of schema 5 and before)
    for signature in ("AuthenticAMD 25/17/1 avx512f avx2 fma f16c sse4_2 L1d 32K L2 1024K L3 32768K", ""):
        other_cpu = stored.assign(cpu_signature=signature)
        choice = selection.select(
            SHAPE, GROUPS, backends=names, results=other_cpu, isolate=False, use_cache=False, budget=0.2
        )
        assert choice.source == "measured now", signature
    choice = selection.select(
        SHAPE,
        GROUPS,
        backends=names,
        results=stored.drop(columns=["cpu_signature"]),
        isolate=False,
        use_cache=False,
        budget=0.2,
    )  # a frame of schema 5, not from a file
    assert choice.source == "measured now"


def test_cli_select_prints_the_choice_and_its_evidence(tmp_path, monkeypatch):
    monkeypatch.setenv("GNBENCH_CACHE", str(tmp_path))
    result = run_harness(
        "select",
        "--shape",
        "2,64,16,16",
        "--num-groups",
        "8",
        "--backends",
        "numpy,torch",
        "--budget",
        "0.2",
        "--refresh",
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "fastest verified:" in result.stdout and "median ms" in result.stdout
    assert "cache of" not in result.stdout
    again = run_harness("select", "--shape", "2,64,16,16", "--num-groups", "8", "--backends", "numpy,torch")
    assert again.returncode == 0, again.stdout + again.stderr
    assert "evidence: cache of" in again.stdout  # --refresh measured and replaced the cached answer
    # "fastest verified: NAME;" or, within the noise, "fastest verified: NAME (a tie ...);"
    chosen = re.search(r"fastest verified: ([^\s;]+)", result.stdout).group(1)
    assert re.search(r"fastest verified: ([^\s;]+)", again.stdout).group(1) == chosen


def test_fastest_never_returns_a_backend_that_fails_the_channels_last_class(tmp_path, monkeypatch):
    """Before the coverage change torch won here: it passed every default channels-last case
    and is faster than numpy, though its channels-last path is wrong on large means."""
    from conftest import require

    require("torch")
    monkeypatch.setenv("GNBENCH_CACHE", str(tmp_path))
    choice = selection.select(
        (2, 12, 5, 7), 3, "float32", "cpu", layout="channels_last", backends=["torch", "numpy"], budget=0.1
    )
    torch_row = {c.backend: c for c in choice.candidates}["torch"]
    assert choice.backend == "numpy" and not torch_row.eligible, choice
    # without the known-bug file, verification alone keeps torch out (the default suite fails it)
    empty = tmp_path / "none.toml"
    empty.write_text("")
    monkeypatch.setattr(harness.known_bugs, "PATH", str(empty))
    choice = selection.select(
        (2, 12, 5, 7), 3, "float32", "cpu", layout="channels_last", backends=["torch", "numpy"], budget=0.1
    )
    torch_row = {c.backend: c for c in choice.candidates}["torch"]
    assert choice.backend == "numpy" and "channels_last-offset" in torch_row.why_not, torch_row


def test_the_cache_key_follows_the_suites_the_tolerance_model_and_the_known_bugs(tmp_path, monkeypatch):
    case = harness.Case(SHAPE, GROUPS)
    key = selection.cache_key(case, "device", ["numpy"])
    assert selection.cache_key(case, "device", ["numpy"]) == key
    bugs = tmp_path / "bugs.toml"
    bugs.write_text(open(harness.known_bugs.PATH).read() + "\n# edited\n")
    monkeypatch.setattr(harness.known_bugs, "PATH", str(bugs))
    assert selection.cache_key(case, "device", ["numpy"]) != key
    monkeypatch.undo()
    real_get = harness.suites.get
    monkeypatch.setattr(harness.suites, "get", lambda name, pass_="forward": real_get(name, pass_)[1:])
    assert selection.cache_key(case, "device", ["numpy"]) != key
    monkeypatch.undo()
    # the tolerance model's file, found through its module: an edit is a miss, and so is a
    # file that moved away (it counts by name and reason; select does not raise)
    import harness.oracle.tolerances as tolerances

    edited = tmp_path / "tolerances.py"
    edited.write_text(open(tolerances.__file__).read() + "\n# edited\n")
    monkeypatch.setattr(tolerances, "__file__", str(edited))
    assert selection.cache_key(case, "device", ["numpy"]) != key
    monkeypatch.setattr(tolerances, "__file__", str(tmp_path / "moved-away.py"))
    assert selection.cache_key(case, "device", ["numpy"]) not in (key, None)
    monkeypatch.undo()
    # answers cached under another way of reading the evidence are never served
    monkeypatch.setattr(selection, "EVIDENCE_VERSION", "1")
    assert selection.cache_key(case, "device", ["numpy"]) != key
