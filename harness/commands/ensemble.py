"""The ensemble of correct implementations: GroupNorms the tolerance model must pass.

Each member computes the statistics (and every sum of the backward) with one algorithm
the acceptance policy of docs/tolerance.md accepts, in the accumulation precision it
accepts (float32 for float16, bfloat16 and float32 input, float64 for float64; the
``ok-float64`` member accumulates in float64 for every dtype). A member failing a case
that the policy accepts it on is a **false alarm** of the verifier; a member failing
outside its accepted domain (``Member.accepts``) is the policy's rejection, reported apart.

Members (name: statistics; backward sums):

* ``ok-serial-two-pass``: one running sum per group (``np.add.accumulate``), then the
  running sum of squared deviations; serial sums. Accepted on sums of at most
  :data:`~harness.oracle.tolerances.M_SERIAL` terms over data whose local condition
  kappa (a cluster's |centre| over its spread) keeps kappa * u * L below
  :data:`SERIAL_REACH`: past it the chain's partial sums outgrow the terms' spread and
  its rounding errors take one sign (:func:`serial_domain`).
* ``ok-serial-welford``: Welford's recurrence over the whole group; serial sums.
  Accepted like the serial two-pass (it is one chain too).
* ``ok-kahan-two-pass``: compensated (Kahan) sums in both passes and in the backward.
* ``ok-welford``: Welford's recurrence over chunks of :data:`WELFORD_CHUNK` elements (a
  vector lane's share), the chunks merged pairwise by Chan's formula (a cascade, as
  torch's CPU kernel); chunked sums.
* ``ok-chunked-chan``: a centred two-pass over chunks of :data:`CHUNK` elements (pairwise
  inside), chunk statistics merged pairwise by Chan's formula (a blocked GPU kernel's
  plan); chunked sums.
* ``ok-pairwise``: NumPy's pairwise sums, centred two-pass.
* ``ok-float64``: NumPy's pairwise sums in float64, whatever the input dtype.
* ``ok-uncentred-backward``: as ``ok-pairwise``, but the backward forms mean(g * xhat)
  uncentred, r * (mean(g * x) - mu * mean(g)), as torch's CPU kernel does: an error linear
  in |mean|/std, like the mean's own, which the policy accepts.

Registered by ``--plugin harness.selftest`` (with the planted bugs) and by ``--plugin
harness.ensemble`` (alone), so ``verify`` and ``fuzz`` run them on any suite:

    gnbench fuzz --plugin harness.ensemble --backends ok-serial-two-pass --budget 600

The chains (serial Welford, Kahan) run in Numba when it is installed (the worker imports
it, never the caller), else in a NumPy loop with the same operations in the same order.
"""

from __future__ import annotations

import dataclasses
import math
import types
import warnings

import numpy as np

import backends
from backends.base import GroupNormBackend

CHUNK = 1024  # elements per chunk of ok-chunked-chan
WELFORD_CHUNK = 16  # elements per Welford chain of ok-welford (a vector lane's share in a cascade, as torch's)
SERIAL_REACH = 1 / 16  # a serial chain of L terms is accepted while kappa * u * L stays below this


# -- sums over the last axis (keepdims), each in its algorithm -------------------------


def serial_sum(values):
    """One running sum along the last axis (the textbook loop, ``s += x[i]``)."""
    if values.shape[-1] == 0:
        return np.zeros(values.shape[:-1] + (1,), values.dtype)
    return np.add.accumulate(values, axis=-1, dtype=values.dtype)[..., -1:]


def pairwise_sum(values):
    """NumPy's pairwise (cascade) sum along the last axis."""
    return values.sum(axis=-1, keepdims=True, dtype=values.dtype)


def chunked_sum(values, chunk: int = CHUNK):
    """Serial sums of chunks of ``chunk`` elements, the chunk sums added one by one."""
    total = np.zeros(values.shape[:-1] + (1,), values.dtype)
    for start in range(0, values.shape[-1], chunk):
        total += serial_sum(values[..., start:start + chunk])
    return total


def kahan_sum(values):
    """Compensated summation along the last axis (Higham, Algorithm 4.2)."""
    rows = np.ascontiguousarray(values.reshape(math.prod(values.shape[:-1]), values.shape[-1]))
    return _chains().kahan(rows).reshape(values.shape[:-1] + (1,))


# -- statistics: (n, G, m) in the accumulation dtype -> (mean, var), keepdims -----------


def _centred(grouped, summation):
    m = grouped.dtype.type(max(grouped.shape[-1], 1))
    mean = summation(grouped) / m
    return mean, summation(np.square(grouped - mean)) / m


def _serial_welford(grouped):
    rows = np.ascontiguousarray(grouped.reshape(math.prod(grouped.shape[:-1]), grouped.shape[-1]))
    mean, m2 = _chains().welford(rows)
    shape = grouped.shape[:-1] + (1,)
    m = grouped.dtype.type(max(grouped.shape[-1], 1))
    return mean.reshape(shape), m2.reshape(shape) / m


def _merge(mean_a, m2_a, count_a, mean_b, m2_b, count_b):
    """Chan, Golub & LeVeque's pairwise update of (mean, M2, count)."""
    dtype = mean_a.dtype.type
    total = count_a + count_b
    share = np.where(total > 0, count_b / np.where(total > 0, total, 1), 0).astype(mean_a.dtype)
    delta = mean_b - mean_a
    return mean_a + delta * share, m2_a + m2_b + np.square(delta) * dtype(count_a) * share, total


def _chunk_welford(grouped):
    """Welford along chunks of WELFORD_CHUNK, all chunks at once, then pairwise Chan merges."""
    n, groups, size = grouped.shape
    dtype = grouped.dtype.type
    if size == 0:
        nan = np.full((n, groups, 1), np.nan, grouped.dtype)
        return nan, nan
    chunks = -(-size // WELFORD_CHUNK)
    padded = np.zeros((n, groups, chunks * WELFORD_CHUNK), grouped.dtype)
    padded[..., :size] = grouped
    blocks = padded.reshape(n, groups, chunks, WELFORD_CHUNK)
    counts = np.minimum(WELFORD_CHUNK, size - np.arange(chunks) * WELFORD_CHUNK).astype(np.float64)
    mean = np.zeros((n, groups, chunks), grouped.dtype)
    m2 = np.zeros_like(mean)
    for i in range(min(WELFORD_CHUNK, size)):
        live = i < counts  # the last chunk may be shorter
        value = blocks[..., i]
        delta = value - mean
        step = np.where(live, delta / dtype(i + 1), dtype(0))
        mean = mean + step
        m2 = m2 + np.where(live, delta * (value - mean), dtype(0))
    while mean.shape[-1] > 1:
        if mean.shape[-1] % 2:
            mean = np.concatenate([mean, np.zeros_like(mean[..., :1])], axis=-1)
            m2 = np.concatenate([m2, np.zeros_like(m2[..., :1])], axis=-1)
            counts = np.concatenate([counts, [0.0]])
        mean, m2, counts = _merge(mean[..., 0::2], m2[..., 0::2], counts[0::2],
                                  mean[..., 1::2], m2[..., 1::2], counts[1::2])
    return mean, m2 / dtype(size)


def _chunked_chan(grouped):
    """Centred two-pass per chunk of CHUNK (pairwise inside), chunk statistics merged
    pairwise by Chan's formula."""
    size = grouped.shape[-1]
    dtype = grouped.dtype.type
    if size == 0:
        nan = np.full(grouped.shape[:-1] + (1,), np.nan, grouped.dtype)
        return nan, nan
    means, m2s, counts = [], [], []
    for start in range(0, size, CHUNK):
        chunk = grouped[..., start:start + CHUNK]
        mean, m2 = _centred(chunk, pairwise_sum)
        means.append(mean)
        m2s.append(m2 * dtype(chunk.shape[-1]))
        counts.append(np.float64(chunk.shape[-1]))
    while len(means) > 1:
        merged = [_merge(means[i], m2s[i], counts[i], means[i + 1], m2s[i + 1], counts[i + 1])
                  for i in range(0, len(means) - 1, 2)]
        if len(means) % 2:
            merged.append((means[-1], m2s[-1], counts[-1]))
        means, m2s, counts = (list(column) for column in zip(*merged))
    return means[0], m2s[0] / dtype(size)


# -- the chains in Numba (or the same loop in NumPy) -----------------------------------


class _NumpyChains:
    """The chains as Python loops over NumPy rows: slow, the same arithmetic."""

    @staticmethod
    def kahan(rows):
        total = np.zeros(rows.shape[0], rows.dtype)
        carry = np.zeros_like(total)
        for i in range(rows.shape[1]):
            y = rows[:, i] - carry
            t = total + y
            carry = (t - total) - y
            total = t
        return total

    @staticmethod
    def welford(rows):
        dtype = rows.dtype.type
        mean = np.zeros(rows.shape[0], rows.dtype)
        m2 = np.zeros_like(mean)
        for i in range(rows.shape[1]):
            value = rows[:, i]
            delta = value - mean
            mean = mean + delta / dtype(i + 1)
            m2 = m2 + delta * (value - mean)
        return mean, m2


_CHAINS = None


def _chains():
    """Numba-compiled chains where Numba is installed (imported here, in the worker)."""
    global _CHAINS
    if _CHAINS is None:
        try:
            import numba
        except ImportError:
            _CHAINS = _NumpyChains
        else:
            _CHAINS = _numba_chains(numba)
    return _CHAINS


def _numba_chains(numba):
    @numba.njit(cache=True)
    def kahan(rows):
        out = np.zeros(rows.shape[0], rows.dtype)
        for r in range(rows.shape[0]):
            total = out[r]
            carry = out[r]
            for i in range(rows.shape[1]):
                y = rows[r, i] - carry
                t = total + y
                carry = (t - total) - y
                total = t
            out[r] = total
        return out

    @numba.njit(cache=True)
    def welford(rows):
        mean = np.zeros(rows.shape[0], rows.dtype)
        m2 = np.zeros(rows.shape[0], rows.dtype)
        one = np.ones(1, rows.dtype)[0]
        for r in range(rows.shape[0]):
            mu = mean[r]
            acc = m2[r]
            count = mean[r]
            for i in range(rows.shape[1]):
                value = rows[r, i]
                count = count + one
                delta = value - mu
                mu = mu + delta / count
                acc = acc + delta * (value - mu)
            mean[r] = mu
            m2[r] = acc
        return mean, m2

    return types.SimpleNamespace(kahan=kahan, welford=welford)


# -- members ----------------------------------------------------------------------------


def _group_size(x, num_groups: int) -> int:
    return x.shape[1] // max(num_groups, 1) * int(np.prod(x.shape[2:], dtype=np.int64))


# a cluster's |centre| over its spread, per named input distribution (harness/problems/inputs.py)
LOCAL_CONDITION = {"offset": 1e3, "offset_1e5": 1e5, "near_constant": 1e3, "near_constant_1e6": 1e6,
                   "channel_stats": 5 * math.exp(2), "channel_stats_wide": 1e3 * math.exp(7),
                   "split_group": 4.0, "split_group_far": 1e3}


def local_condition(case) -> float:
    """kappa of the data's clusters: |centre| / spread (a channel's, a group's), 1 for
    data centred on 0, 0 for constant groups."""
    from harness.problems.inputs import Parametric

    if case.distribution == "constant":
        return 0.0
    made = Parametric.parse(case.distribution)
    if made is not None:
        return (abs(made.offset) + made.spread) / made.scale if made.scale else math.inf
    return LOCAL_CONDITION.get(case.distribution, 1.0)


def serial_domain(case) -> str | None:
    """None where the policy accepts a serial chain on ``case``, else why not: a chain
    over more than M_SERIAL terms, or one whose partial sums outgrow the terms' spread
    (local kappa * u * L >= SERIAL_REACH)."""
    from backends.dtypes import accumulation_dtype
    from harness.oracle.tolerances import M_SERIAL, unit_roundoff

    longest = case.group_size  # the forward's sums; the backward's also sum each channel's N * spatial terms
    if case.pass_ != "forward" and case.shape[1]:
        longest = max(longest, case.numel // case.shape[1])
    if longest > M_SERIAL:
        return (f"one serial chain over {longest:,} terms: the policy accepts serial chains of at most "
                f"{M_SERIAL:,} (docs/tolerance.md)")
    reach = local_condition(case) * unit_roundoff(accumulation_dtype(case.dtype)) * case.group_size
    if reach >= SERIAL_REACH:
        return (f"one serial chain over data far from 0 against its spread (kappa * u * L = {reach:.3g}, "
                f"at least {SERIAL_REACH}): its rounding errors take one sign (docs/tolerance.md)")
    return None


@dataclasses.dataclass(frozen=True)
class Member:
    """One correct implementation: its statistics, its backward's sum, where it is accepted."""

    name: str
    description: str
    statistics: object  # (n, G, m) array -> (mean, var), keepdims
    summation: object  # values -> sums over the last axis, keepdims
    float64: bool = False  # accumulate in float64 whatever the input dtype
    uncentred: bool = False  # backward: mean(g * xhat) as r * (mean(g * x) - mu * mean(g))
    domain: object = None  # case -> None (accepted) or the policy's reason it is not

    def accepts(self, case) -> str | None:
        """None where the policy accepts this algorithm on ``case``, else why not."""
        return self.domain(case) if self.domain is not None else None

    def dtype_for(self, x):
        return np.float64 if self.float64 or x.dtype == np.float64 else np.float32

    def group_norm(self, x, num_groups, weight=None, bias=None, eps=1e-5):
        dtype = self.dtype_for(x)
        n, channels = x.shape[:2]
        grouped = np.asarray(x, dtype).reshape(n, num_groups, _group_size(x, num_groups))
        with warnings.catch_warnings(), np.errstate(all="ignore"):
            warnings.simplefilter("ignore", RuntimeWarning)
            mean, var = self.statistics(grouped)
            y = ((grouped - mean) / np.sqrt(var + dtype(eps))).reshape(x.shape)
            broadcast = (1, channels) + (1,) * (x.ndim - 2)
            if weight is not None:
                y = y * np.asarray(weight, dtype).reshape(broadcast)
            if bias is not None:
                y = y + np.asarray(bias, dtype).reshape(broadcast)
        return y.astype(x.dtype)

    def backward(self, grad_y, x, num_groups, weight, bias, eps):
        """GroupNorm's gradients with this member's statistics and sums."""
        dtype = self.dtype_for(x)
        n, channels = x.shape[:2]
        broadcast = (1, channels) + (1,) * (x.ndim - 2)
        with warnings.catch_warnings(), np.errstate(all="ignore"):
            warnings.simplefilter("ignore", RuntimeWarning)
            grouped = np.asarray(x, dtype).reshape(n, num_groups, _group_size(x, num_groups))
            size = dtype(max(grouped.shape[-1], 1))
            mean, var = self.statistics(grouped)
            rstd = 1 / np.sqrt(var + dtype(eps))
            xhat = (grouped - mean) * rstd
            gy = np.asarray(grad_y, dtype)
            g = (gy * np.asarray(weight, dtype).reshape(broadcast) if weight is not None else gy).reshape(grouped.shape)
            mean_g = self.summation(g) / size
            if self.uncentred:
                mean_g_xhat = rstd * (self.summation(g * grouped) / size - mean * mean_g)
            else:
                mean_g_xhat = self.summation(g * xhat) / size
            dx = rstd * (g - mean_g - xhat * mean_g_xhat)
            grad_x = dx.reshape(x.shape).astype(x.dtype)
            xhat = xhat.reshape(x.shape)

            def per_channel(values):
                rows = np.moveaxis(values, 1, 0).reshape(channels, values.size // max(channels, 1))
                return self.summation(rows)[:, 0]

            grad_weight = per_channel(gy * xhat).astype(weight.dtype) if weight is not None else None
            grad_bias = per_channel(gy).astype(bias.dtype) if bias is not None else None
        return grad_x, grad_weight, grad_bias

    def backend(self) -> GroupNormBackend:
        return GroupNormBackend.from_function(
            self.name, self.group_norm, description=f"correct: {self.description}", backward=self.backward,
        )


MEMBERS = {
    member.name: member
    for member in (
        Member("ok-serial-two-pass", "serial running sums, centred two-pass (accepted on well-conditioned chains)",
               lambda grouped: _centred(grouped, serial_sum), serial_sum, domain=serial_domain),
        Member("ok-serial-welford", "Welford's recurrence over the whole group (accepted on well-conditioned chains)",
               _serial_welford, serial_sum, domain=serial_domain),
        Member("ok-kahan-two-pass", "compensated (Kahan) sums, centred two-pass",
               lambda grouped: _centred(grouped, kahan_sum), kahan_sum),
        Member("ok-welford", f"Welford over chunks of {WELFORD_CHUNK}, pairwise Chan merges",
               _chunk_welford, lambda values: chunked_sum(values, 256)),
        Member("ok-chunked-chan", f"centred two-pass per chunk of {CHUNK}, pairwise Chan merges",
               _chunked_chan, chunked_sum),
        Member("ok-pairwise", "pairwise sums, centred two-pass", lambda grouped: _centred(grouped, pairwise_sum),
               pairwise_sum),
        Member("ok-float64", "pairwise sums in float64 for every dtype",
               lambda grouped: _centred(grouped, pairwise_sum), pairwise_sum, float64=True),
        Member("ok-uncentred-backward",
               "pairwise two-pass; backward's mean(g * xhat) as r * (mean(g * x) - mu * mean(g))",
               lambda grouped: _centred(grouped, pairwise_sum), pairwise_sum, uncentred=True),
    )
}


def accepts(name: str, case) -> str | None:
    """None where the policy accepts ensemble member ``name`` on ``case`` (any other
    backend: always), else the reason it does not."""
    member = MEMBERS.get(name)
    return member.accepts(case) if member is not None else None


def register_backends() -> list[str]:
    """Register every member (idempotent); returns their names (what ``--plugin`` calls)."""
    for member in MEMBERS.values():
        backends.register(member.backend(), replace=True)
    return list(MEMBERS)


def outside_policy(frame):
    """A boolean Series over ``frame``'s rows: an ensemble member's row on a case the
    policy does not accept it on (every other row: False)."""
    import pandas as pd

    from harness.problems.cases import Case

    known = {}

    def outside(backend, case_id) -> bool:
        if backend not in MEMBERS:
            return False
        if (backend, case_id) not in known:
            known[backend, case_id] = accepts(backend, Case.from_id(case_id)) is not None
        return known[backend, case_id]

    return pd.Series([outside(b, c) for b, c in zip(frame.backend, frame.case_id)], index=frame.index, dtype=bool)


def false_alarms(frame):
    """The failed rows of ensemble members on cases the policy accepts them on."""
    from harness.records.results import FAILED

    return frame[frame.backend.isin(list(MEMBERS)) & frame.status.isin(FAILED) & ~outside_policy(frame)]


__all__ = ["MEMBERS", "Member", "accepts", "false_alarms", "local_condition", "outside_policy", "register_backends",
           "serial_domain"]
