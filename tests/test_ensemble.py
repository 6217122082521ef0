"""The ensemble of correct implementations: each computes what its name says, the chains
give the same bits in Numba and in NumPy, and the policy's domain is where it says."""

import numpy as np
import pytest

import backends
from harness.commands import ensemble
from harness.oracle.tolerances import M_SERIAL
from harness.problems.cases import Case


@pytest.fixture(scope="module")
def grouped():
    rng = np.random.default_rng(0)
    return (1e3 + rng.standard_normal((3, 2, 777))).astype(np.float32)


@pytest.mark.parametrize("name", list(ensemble.MEMBERS))
def test_each_member_computes_the_statistics(grouped, name):
    exact = grouped.astype(np.float64)
    mean, var = ensemble.MEMBERS[name].statistics(grouped.astype(np.float64 if name == "ok-float64" else np.float32))
    assert mean.shape == var.shape == (3, 2, 1)
    np.testing.assert_allclose(mean[..., 0], exact.mean(-1), rtol=1e-5)
    np.testing.assert_allclose(var[..., 0], exact.var(-1), rtol=2e-2)  # |mean|/std = 1e3 in float32


def test_the_chains_give_the_same_bits_in_numba_and_numpy(grouped):
    pytest.importorskip("numba")
    rows = grouped.reshape(6, -1)
    compiled = ensemble._chains()
    assert compiled is not ensemble._NumpyChains
    assert np.array_equal(compiled.kahan(rows), ensemble._NumpyChains.kahan(rows))
    for a, b in zip(compiled.welford(rows), ensemble._NumpyChains.welford(rows)):
        assert a.dtype == np.float32 and np.array_equal(a, b)


def test_the_serial_sum_is_one_running_sum():
    values = np.full((1, 2 ** 25), 1.0, np.float32)  # a running float32 sum stagnates at 2^24
    assert ensemble.serial_sum(values)[0, 0] == 2 ** 24
    assert ensemble.pairwise_sum(values)[0, 0] == 2 ** 25


def test_the_policy_accepts_serial_chains_up_to_two_to_the_sixteen():
    fits = Case((1, 4, 128, 128), 1)  # 65,536 elements per group
    past = Case((1, 4, 128, 129), 1)
    assert ensemble.accepts("ok-serial-two-pass", fits) is None
    assert "at most 65,536" in ensemble.accepts("ok-serial-two-pass", past)
    assert ensemble.accepts("ok-kahan-two-pass", past) is None and ensemble.accepts("torch", past) is None
    channel = Case((512, 2, 16, 16), 2).with_pass("backward")  # groups of 256, channels of 131,072 terms
    assert channel.group_size <= M_SERIAL and ensemble.accepts("ok-serial-welford", channel) is not None


def test_registered_through_the_plugin_api():
    names = ensemble.register_backends()
    assert names == list(ensemble.MEMBERS) and set(names) <= set(backends.names())
    member = backends.get("ok-kahan-two-pass")
    assert member.supports_backward and member.description.startswith("correct:")


def test_a_member_handles_empty_groups():
    member = ensemble.MEMBERS["ok-welford"]
    x = np.zeros((0, 8, 4), np.float32)
    assert member.group_norm(x, 2).shape == x.shape
    grad_x, grad_weight, grad_bias = member.backward(x, x, 2, np.ones(8, np.float32), np.zeros(8, np.float32), 1e-5)
    assert grad_x.shape == x.shape and grad_weight.tolist() == [0.0] * 8 and grad_bias.tolist() == [0.0] * 8


def test_a_serial_chain_far_from_zero_against_its_spread_is_outside_the_policy():
    """kappa * u * L >= 1/16: the chain's roundings take one sign (the fuzz's finding:
    1,120 values near 1000 with a spread of 0.001 within each channel)."""
    far = Case.from_id("3x20x8x7x4-g4-float32-strided-p_o1000.0_s0.001_c1.0_k2_z0-s2-affine_none")
    near = Case((2, 12, 5, 7), 3, "float32", "contiguous", "offset")  # kappa 1e3 over 140 terms
    assert "one sign" in ensemble.accepts("ok-serial-two-pass", far)
    assert ensemble.accepts("ok-serial-two-pass", near) is None
    assert ensemble.accepts("ok-welford", far) is None and ensemble.accepts("ok-chunked-chan", far) is None
    assert ensemble.local_condition(Case((2, 8, 4, 4), 2, distribution="constant")) == 0.0


def test_a_lost_variance_with_eps_0_may_divide_by_zero():
    """Two values 1 ulp apart near 10, eps = 0: Welford's float32 variance is 0 and its
    output NaN/Inf, what an accepted algorithm returns there (found by the fuzz); torch's
    one-pass NaN near 100 with a spread of 0.1 stays a failure."""
    import harness

    ensemble.register_backends()
    lost = "2x2x2-g2-float32-contiguous-p_o10.0_s1e-05_c0.0_k0_z0-s0-eps0.0"
    rows = harness.verify(backends=["ok-welford"], cases=[lost], isolate=False)
    assert rows.status.tolist() == ["passed"]
    wrong = backends.GroupNormBackend.from_function(
        "nan-near-100", lambda x, g, w=None, b=None, eps=1e-5: np.full_like(x, np.nan))
    backends.register(wrong, replace=True)
    kept = "1x1x1x2-g1-float32-channels_last-p_o100.0_s0.1_c0.0_k0_z0-s0-eps0.0"
    assert harness.verify(backends=[wrong.name], cases=[kept], isolate=False).status.tolist() == [
        "nan_mismatch"]
