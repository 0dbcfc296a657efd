"""Hashrate and power from the shares a miner submits (hashrate-estimation.md).

A share is a hash at or below the share target T, so each one stands for W = 2^256/T hashes
on average (or d × hashes_per_difficulty when the pool announces a difficulty d; the rule per
dialect and algorithm lives in ``fingerprints/dialects.yaml`` as :class:`ShareWork`). Shares
arrive as a Poisson process, so over a window Δt

    Ĥ = Σ W_i / Δt,

with a 95 % interval from the exact (Garwood) Poisson bounds on the share count N:
``[Γ⁻¹(0.025; N), Γ⁻¹(0.975; N + 1)]`` (the chi-square bounds χ²(2N)/2 and χ²(2N+2)/2),
scaled by the mean work per share W̄ = ΣW/N and divided by Δt. The scaling is exact when the
difficulty is constant and a close approximation when it varies. Power is the hashrate times
the efficiency (J per hash) of the algorithm's hardware from ``fingerprints/efficiency.csv``:
median for the best guess, the most efficient device at the low end of the hashrate interval
and the least efficient at the high end, so the range covers both uncertainties.

No number is built on a guessed algorithm: when the work per share depends on an algorithm
that cannot be told, the hashrate stays None with the reason, and the rate of difficulty-1
shares is given instead. (Where every candidate algorithm shares one rule, e.g. a target read
as 2^256/T, the work is known without the algorithm; only the power then needs it.) scipy is not needed:
the regularised incomplete gamma function is evaluated here (series and continued fraction).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Iterable
from dataclasses import dataclass

from poolwatch.fingerprints import EfficiencyRange, ShareWork

__all__ = [
    "HashrateEstimate",
    "PowerEstimate",
    "ShareTally",
    "estimate_hashrate",
    "estimate_power",
    "gamma_ppf",
    "poisson_interval",
]


@dataclass(frozen=True, slots=True)
class ShareTally:
    """Shares submitted under one difficulty or target (as the pool announced it)."""

    difficulty: float | None
    target: str | None
    count: int


@dataclass(frozen=True, slots=True)
class HashrateEstimate:
    hashrate_hs: float | None
    low: float | None
    high: float | None
    diff1_shares_per_s: float | None
    reason: str | None
    shares: int  # shares whose work is known (the N of the interval)
    shares_unknown: int  # shares left out: no difficulty or target known for them
    work: float  # Σ W_i
    window_s: float
    unit: str  # "H/s", or "Sol/s" for Equihash


@dataclass(frozen=True, slots=True)
class PowerEstimate:
    power_w: float | None
    low: float | None
    high: float | None
    devices: int  # devices behind the efficiency range


# ---------------------------------------------------------------------------- statistics

_TINY = 1e-300


def _gamma_p(a: float, x: float) -> float:
    """Regularised lower incomplete gamma P(a, x) (Numerical Recipes §6.2)."""
    if x <= 0.0:
        return 0.0
    log_prefix = -x + a * math.log(x) - math.lgamma(a)
    if x < a + 1.0:  # series, converges fast below the mode
        ap, term, total = a, 1.0 / a, 1.0 / a
        for _ in range(100_000):
            ap += 1.0
            term *= x / ap
            total += term
            if abs(term) < abs(total) * 1e-16:
                break
        return min(1.0, total * math.exp(log_prefix))
    # continued fraction for Q(a, x) = 1 - P(a, x) (modified Lentz)
    b = x + 1.0 - a
    c = 1.0 / _TINY
    d = 1.0 / b
    h = d
    for i in range(1, 100_000):
        an = -i * (i - a)
        b += 2.0
        d = an * d + b
        d = _TINY if abs(d) < _TINY else d
        c = b + an / c
        c = _TINY if abs(c) < _TINY else c
        d = 1.0 / d
        delta = d * c
        h *= delta
        if abs(delta - 1.0) < 1e-16:
            break
    return max(0.0, 1.0 - math.exp(log_prefix) * h)


def gamma_ppf(p: float, a: float) -> float:
    """Quantile of the Gamma(a, 1) distribution: x with P(a, x) = p (bisection)."""
    if not 0.0 < p < 1.0:
        raise ValueError(f"p must be in (0, 1), got {p}")
    if a <= 0.0:
        raise ValueError(f"shape must be positive, got {a}")
    lo, hi = 0.0, a + 10.0 * math.sqrt(a) + 10.0
    while _gamma_p(a, hi) < p:
        lo, hi = hi, hi * 2.0
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        if _gamma_p(a, mid) < p:
            lo = mid
        else:
            hi = mid
        if hi - lo <= 1e-14 * hi:
            break
    return 0.5 * (lo + hi)


@functools.lru_cache(maxsize=4096)
def poisson_interval(n: int, confidence: float = 0.95) -> tuple[float, float]:
    """Exact (Garwood) two-sided interval for the mean of a Poisson count ``n``:
    ``[χ²(α/2; 2n)/2, χ²(1-α/2; 2n+2)/2]``; the lower bound is 0 for n = 0."""
    if n < 0:
        raise ValueError("a count cannot be negative")
    alpha = 1.0 - confidence
    low = gamma_ppf(alpha / 2.0, n) if n > 0 else 0.0
    return low, gamma_ppf(1.0 - alpha / 2.0, n + 1)


# ---------------------------------------------------------------------------- estimates


def _work(rule: ShareWork | None, tally: ShareTally) -> float | None:
    if rule is None:
        return None
    if tally.target is not None and rule.target_encoding is not None:
        return rule.hashes(target=tally.target)
    if tally.difficulty is not None and rule.hashes_per_difficulty is not None:
        return rule.hashes(difficulty=tally.difficulty)
    return None


def _difficulty(rule: ShareWork | None, tally: ShareTally) -> float | None:
    """The difficulty number of a tally: as announced, else 2^256/T read with the rule."""
    if tally.difficulty is not None:
        return tally.difficulty
    if tally.target is not None and rule is not None and rule.target_encoding is not None:
        return rule.hashes(target=tally.target)
    return None


def estimate_hashrate(
    tallies: Iterable[ShareTally],
    window_s: float,
    rule: ShareWork | None,
    *,
    work_known: bool,
    unknown_reason: str | None = None,
    last: ShareTally | None = None,
    confidence: float = 0.95,
) -> HashrateEstimate:
    """Ĥ = ΣW/Δt with its Poisson interval; None with a reason when it cannot be told.

    ``rule`` reads the tallies (the dialect's or the algorithm's share-work rule).
    ``work_known`` is False when the rule depends on an algorithm that cannot be told: then
    only ``diff1_shares_per_s`` is given. ``last`` (the difficulty or target
    in effect at the end) gives an upper bound when no share was submitted.
    """
    tallies = [t for t in tallies if t.count > 0]
    unit = "Sol/s" if rule is not None and rule.unit == "solution" else "H/s"
    diffs = [(_difficulty(rule, t), t.count) for t in tallies]
    n_diff = sum(c for d, c in diffs if d is not None)
    diff1 = None
    if window_s > 0 and n_diff:
        diff1 = sum(d * c for d, c in diffs if d is not None) / window_s

    def none(reason: str, **kw: float | None) -> HashrateEstimate:
        return HashrateEstimate(None, kw.get("low"), kw.get("high"), diff1, reason, 0,
                                sum(t.count for t in tallies), 0.0, window_s, unit)

    if window_s <= 0:
        return none("no time window: the session has a single timestamp")
    if not work_known:
        return none(unknown_reason or "algorithm unknown: work per share cannot be told")
    if rule is None:
        return none(unknown_reason or "no share-work rule for this dialect and algorithm")
    known = [(w, t.count) for t in tallies if (w := _work(rule, t)) is not None]
    n = sum(c for _, c in known)
    unknown = sum(t.count for t in tallies) - n
    if rule.basis == "difficulty" and rule.hashes_per_difficulty is None:
        return none(f"difficulty convention unknown for this algorithm ({rule.formula})")
    if n == 0 and rule.basis == "not-observable":
        return none("share difficulty is not observable in this dialect (encrypted)")
    if n == 0:
        w_last = _work(rule, last) if last is not None else None
        high = poisson_interval(0, confidence)[1] * w_last / window_s if w_last else None
        why = ("no shares with a known difficulty or target" if unknown
               else "no shares submitted in the window")
        return HashrateEstimate(None, 0.0 if high is not None else None, high, diff1,
                                why + (": upper bound only" if high is not None else ""),
                                0, unknown, 0.0, window_s, unit)
    work = sum(w * c for w, c in known)
    low_n, high_n = poisson_interval(n, confidence)
    mean_w = work / n
    return HashrateEstimate(work / window_s, low_n * mean_w / window_s,
                            high_n * mean_w / window_s, diff1, None, n, unknown, work,
                            window_s, unit)


def estimate_power(est: HashrateEstimate, eff: EfficiencyRange | None) -> PowerEstimate:
    """Power = hashrate × joules per hash: median device for the estimate, the most
    efficient device at the low hashrate bound, the least efficient at the high bound."""
    if eff is None or est.hashrate_hs is None:
        return PowerEstimate(None, None, None, 0 if eff is None else eff.n)
    if (est.unit == "Sol/s") != (eff.unit == "J/Sol"):
        return PowerEstimate(None, None, None, eff.n)
    low = est.low * eff.min if est.low is not None else None
    high = est.high * eff.max if est.high is not None else None
    return PowerEstimate(est.hashrate_hs * eff.median, low, high, eff.n)
