"""Behaviour model: scores TCP flows as mining from their shape alone (no names, no payload).

An encrypted Stratum connection still shows its rhythm: it lives long, its records are small,
the miner sends share submissions of near-constant size at random (Poisson) times, each one
answered at once by a short reply of near-constant size, and the pool pushes jobs unasked,
at the cadence of the coin's blocks (and, for Bitcoin-family pools, periodic refreshes).
:class:`BehaviourScorer` measures those traits per flow with a numba kernel
(``kernels.flowstats``, no Python per packet) and scores each flow that lived long enough
with a transparent logistic model:

    logit = bias + Σ_k weight_k × evidence_k,      score = 1 / (1 + e^-logit)

Every evidence value is a piecewise-linear function of one measured feature, in [-1, 1]
(or [0, 1] for the one-sided ones), with its breakpoints and weight in
:class:`BehaviourSettings`. A verdict's ``reasons`` give, one line per feature, what was
measured, the evidence, the weight and their product; the last line is the bias and the
resulting score, so the contributions add up to the logit and the score follows from it.
docs/behaviour.md documents every default and how the weights were chosen.

Which side is the client: the side that sent the SYN (or received the SYN-ACK) when the
handshake was seen; otherwise the side more of whose bursts the other side answered within
the reply window (a miner's submissions are answered, a pool's job pushes are not); on a tie
the side with the higher port (ephemeral ports are high).

Optional block-time series (``block_times={"XMR": array of block arrival times, ns}``) add
one feature: the share of the server's unsolicited bursts that follow a block of a coin
within ``block_tolerance_s``, above what chance gives for that many blocks in the flow's
span (MineHunter's idea: pools push a new job when the chain moves).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, fields
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ConfigError
from ..kernels import flowstats as kf
from ..records import PacketBatch
from .records import Endpoint, FlowKey, flow_key

log = logging.getLogger(__name__)

NS = 1_000_000_000
TCP = 6


@dataclass(frozen=True)
class BehaviourSettings:
    """Every threshold and weight of the behaviour model. Defaults: docs/behaviour.md.

    Breakpoints are tuples of feature values; ``ramp (lo, hi)`` is 0 at or below ``lo`` and 1
    at or above ``hi``; ``band (lo0, lo1, hi1, hi0)`` is 1 between ``lo1`` and ``hi1``, 0
    outside ``lo0..hi0``, linear in between.
    """

    # Which flows are scored, and when verdicts come out.
    report_threshold: float = 0.5  # flush/expire return verdicts with score >= this
    min_duration_s: float = 60.0  # first to last payload packet
    min_client_bursts: int = 8  # completed client bursts (submissions) before scoring
    idle_timeout_s: float = 900.0  # a flow with no payload for this long ends
    sweep_interval_s: float = 10.0  # idle flows are looked for every this much capture time
    max_flows: int = 1 << 16  # open TCP flows kept; when full the least recent quarter ends
    initial_flows: int = 4096
    syn_cache: int = 1 << 14  # slots of the SYN/SYN-ACK cache (power of two)
    # How packets group into bursts (messages) and answers.
    burst_gap_s: float = 0.05  # same-direction payload packets closer than this: one burst
    reply_window_s: float = 1.0  # a burst this soon after the other side's burst answers it
    band_bins: int = 2  # the size band is this many 16-byte bins (2: 32 bytes)
    # Block-time alignment.
    block_tolerance_s: float = 3.0  # a push at most this long after a block follows it
    min_pushes_for_alignment: int = 3
    # Evidence breakpoints.
    duration_ramp_s: tuple[float, float] = (120.0, 900.0)
    record_size_ramp: tuple[float, float] = (1000.0, 8000.0)  # mean burst bytes, larger side
    volume_ramp: tuple[float, float] = (2000.0, 20000.0)  # payload bytes per second, both ways
    client_band_ramp: tuple[float, float] = (0.3, 0.8)
    client_cadence_band: tuple[float, float, float, float] = (0.35, 0.7, 1.5, 2.5)  # gap CV
    client_interval_band: tuple[float, float, float, float] = (0.3, 1.0, 120.0, 600.0)  # s
    answered_ramp: tuple[float, float] = (0.4, 0.9)
    answer_band_ramp: tuple[float, float] = (0.4, 0.85)
    push_interval_band: tuple[float, float, float, float] = (0.3, 0.8, 700.0, 1800.0)  # s
    # Weights (logit units per unit of evidence) and the bias.
    bias: float = -8.5
    w_duration: float = 0.5
    w_record_size: float = 1.0
    w_volume: float = 1.0
    w_client_band: float = 2.5
    w_client_cadence: float = 3.0
    w_client_interval: float = 0.5
    w_answered: float = 1.0
    w_answer_band: float = 2.5
    w_pushes: float = 1.0
    w_block_alignment: float = 3.0

    def __post_init__(self) -> None:
        if not 0.0 <= self.report_threshold <= 1.0:
            raise ValueError("report_threshold must be within 0..1")
        for name in ("min_duration_s", "burst_gap_s", "reply_window_s", "block_tolerance_s"):
            if not getattr(self, name) >= 0:
                raise ValueError(f"{name} must be a non-negative number of seconds")
        for name in ("idle_timeout_s", "sweep_interval_s"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be a positive number of seconds")
        if self.max_flows < 16 or self.initial_flows < 1:
            raise ValueError("max_flows must be at least 16 and initial_flows at least 1")
        if self.syn_cache < 16 or self.syn_cache & (self.syn_cache - 1):
            raise ValueError("syn_cache must be a power of two, at least 16")
        if not 1 <= self.band_bins <= kf.N_BINS:
            raise ValueError(f"band_bins must be within 1..{kf.N_BINS}")
        if self.min_client_bursts < 2 or self.min_pushes_for_alignment < 1:
            raise ValueError("min_client_bursts must be >= 2, min_pushes_for_alignment >= 1")
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, tuple):
                if len(value) not in (2, 4) or list(value) != sorted(value):
                    raise ValueError(f"{f.name} must be 2 or 4 ascending numbers")
            elif f.name.startswith("w_") and not (isinstance(value, (int, float))
                                                  and math.isfinite(value)):
                raise ValueError(f"{f.name} must be a finite number")

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> BehaviourSettings:
        """Settings from a mapping (config file, CLI); lists become tuples, unknown keys fail."""
        known = {f.name: f for f in fields(cls)}
        unknown = sorted(set(values) - set(known))
        if unknown:
            raise ValueError(f"unknown behaviour settings: {', '.join(unknown)}")
        clean: dict[str, Any] = {}
        for name, value in values.items():
            default = getattr(cls, name) if hasattr(cls, name) else None
            if isinstance(default, tuple):
                clean[name] = tuple(float(v) for v in value)
            elif isinstance(default, bool):
                clean[name] = bool(value)
            elif isinstance(default, int):
                clean[name] = int(value)
            else:
                clean[name] = float(value)
        return cls(**clean)

    def as_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


@dataclass(frozen=True, slots=True)
class BehaviourVerdict:
    """One scored flow. ``client``/``server``: (hi, lo, port); see the module docstring for
    how the client is chosen. ``reasons``: one line per feature, then the bias and score."""

    key: FlowKey
    client: Endpoint
    server: Endpoint
    first_ts_ns: int
    last_ts_ns: int
    score: float
    reasons: tuple[str, ...]
    features: dict[str, float] = field(compare=False)
    server_name: str | None = None  # the (non-pool) name its TLS ClientHello asked for
    opening: bytes | None = None  # the client's first payload bytes (≤ 3), opening seen


def read_block_times(path: str | Path) -> np.ndarray:
    """A coin's block times from a text file, one per line: Unix seconds (fractions allowed)
    or ISO 8601 (UTC unless it names a zone); blank lines and ``#`` comments pass. Sorted
    nanoseconds. A line that is neither raises :class:`~poolwatch.errors.ConfigError` with
    the file and line number: block times come from a node or an explorer export, and a
    silently dropped block would bias the alignment feature."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read block times ({exc})") from None
    out: list[int] = []
    for lineno, line in enumerate(text.splitlines(), 1):
        item = line.split("#", 1)[0].strip()
        if not item:
            continue
        try:
            if item.replace(".", "", 1).isdigit():
                out.append(round(float(item) * NS))
            else:
                moment = datetime.fromisoformat(item.replace("Z", "+00:00"))
                if moment.tzinfo is None:
                    moment = moment.replace(tzinfo=timezone.utc)
                out.append(round(moment.timestamp() * NS))
        except ValueError:
            raise ConfigError(f"{path}:{lineno}: {item!r} is not a block time (Unix seconds "
                              "or ISO 8601)") from None
    if not out:
        raise ConfigError(f"{path}: no block times in the file")
    return np.sort(np.array(out, np.int64))


def _ramp(x: np.ndarray, lo: float, hi: float) -> np.ndarray:
    if hi <= lo:
        return (x >= hi).astype(np.float64)
    return np.clip((x - lo) / (hi - lo), 0.0, 1.0)


def _band(x: np.ndarray, b: tuple[float, float, float, float]) -> np.ndarray:
    lo0, lo1, hi1, hi0 = b
    return np.minimum(_ramp(x, lo0, lo1), 1.0 - _ramp(x, hi1, hi0))


def _cv(n: np.ndarray, s: np.ndarray, s2: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and coefficient of variation from count, sum and sum of squares."""
    with np.errstate(divide="ignore", invalid="ignore"):
        mean = np.where(n > 0, s / np.maximum(n, 1), 0.0)
        var = np.where(n > 1, (s2 - n * mean * mean) / np.maximum(n - 1, 1), 0.0)
        cv = np.where(mean > 0, np.sqrt(np.maximum(var, 0.0)) / np.where(mean > 0, mean, 1), 0.0)
    return mean, cv


def _densest(hist: np.ndarray, width: int) -> np.ndarray:
    """Per row, the largest count in ``width`` adjacent bins of a (rows, bins) histogram."""
    c = np.cumsum(np.concatenate([np.zeros((len(hist), 1)), hist.astype(np.float64)], axis=1),
                  axis=1)
    return (c[:, width:] - c[:, :-width]).max(axis=1)


# (feature name, evidence weight field, one-sided evidence?) in the order reasons list them.
FEATURES = ("duration", "record_size", "volume", "client_band", "client_cadence",
            "client_interval", "answered", "answer_band", "pushes", "block_alignment")


class BehaviourScorer:
    """Keeps per-flow behaviour statistics over a scan's batches and scores the flows."""

    def __init__(self, settings: BehaviourSettings | None = None, *,
                 block_times: dict[str, np.ndarray] | None = None) -> None:
        self.settings = s = settings or BehaviourSettings()
        self.coins = sorted(block_times or {})
        if len(self.coins) > kf.MAX_COINS:
            raise ValueError(f"at most {kf.MAX_COINS} block-time series")
        series = [np.sort(np.asarray(block_times[c], dtype=np.int64)) for c in self.coins]
        self.block_ts = np.concatenate(series) if series else np.zeros(0, np.int64)
        self.block_off = np.array([0] + list(np.cumsum([len(x) for x in series])), np.int64)
        self.block_series = series
        self.params = np.array([int(s.burst_gap_s * NS), int(s.reply_window_s * NS),
                                int(s.block_tolerance_s * NS), len(self.coins)], np.int64)
        self.idle_ns = int(s.idle_timeout_s * NS)
        self.sweep_ns = int(s.sweep_interval_s * NS)
        self._alloc(min(s.initial_flows, s.max_flows))
        self.n_rows = 0
        self.syns = np.zeros(s.syn_cache, np.uint64)
        self.state = np.zeros(2, np.int64)
        self._pending: list[BehaviourVerdict] = []
        # flow hash (the rows' key) -> the server name of its TLS ClientHello, for flows
        # whose name was not a pool's (see note_names); forgotten when the row ends
        self._names: dict[int, str] = {}
        self.stats: dict[str, int] = {"flows": 0, "scored": 0, "reported": 0, "expired": 0,
                                      "evicted": 0, "sweeps": 0}

    # -- state ---------------------------------------------------------------------------
    def _alloc(self, capacity: int) -> None:
        (self.index, self.keys, self.ends, self.ints, self.flts, self.hist,
         self.hits) = kf.allocate(capacity)

    def _grow(self, capacity: int) -> None:
        n = self.n_rows
        old = (self.keys[:n], self.ends[:n], self.ints[:n], self.flts[:n], self.hist[:n],
               self.hits[:n])
        self._alloc(capacity)
        for new, prev in zip((self.keys, self.ends, self.ints, self.flts, self.hist,
                              self.hits), old):
            new[:n] = prev
        kf.rebuild_index(self.keys, n, self.index)

    def __len__(self) -> int:
        return self.n_rows

    def update(self, batch: PacketBatch) -> None:
        """Add one batch (every batch of the scan, in order)."""
        packets = batch.packets
        pos = 0
        while True:
            before = self.n_rows
            code, pos, self.n_rows = kf.update(
                batch.buf, packets, pos, self.index, self.keys, self.ends, self.ints, self.flts,
                self.hist, self.hits, self.n_rows, self.syns, self.state, self.sweep_ns,
                self.params, self.block_ts, self.block_off)
            self.stats["flows"] += self.n_rows - before
            if code == kf.DONE:
                return
            if code == kf.NEED_SWEEP:
                now = int(packets[pos]["ts_ns"])
                self.stats["sweeps"] += 1
                self._close(self.ints[: self.n_rows, kf.I_LAST] < now - self.idle_ns, "expired")
                self.state[0] = now + self.sweep_ns
            elif code == kf.TABLE_FULL:
                if len(self.keys) < self.settings.max_flows:
                    self._grow(min(2 * len(self.keys), self.settings.max_flows))
                else:
                    last = self.ints[: self.n_rows, kf.I_LAST]
                    k = self.n_rows // 4
                    self._close(last <= np.partition(last, k)[k], "evicted")

    def note_names(self, names: Iterable[tuple[int, str]]) -> None:
        """Server names that TLS ClientHellos asked for, by flow hash (the same direction-free
        hash the rows are keyed by: ``TlsObserver.declined``). A verdict on such a flow
        carries its name: a flow that names a host that is not a pool is hardly mining."""
        self._names.update(names)
        if len(self._names) > 2 * len(self.keys) + 1024:  # names of rows that never were
            live = set(self.keys[: self.n_rows].tolist())
            self._names = {h: n for h, n in self._names.items() if h in live}

    def _close(self, mask: np.ndarray, reason: str) -> None:
        """End the rows in ``mask``: verdicts at or above the threshold go to pending."""
        rows = np.flatnonzero(mask)
        if len(rows) == 0:
            return
        self.stats[reason] = self.stats.get(reason, 0) + len(rows)
        self._pending.extend(self._verdicts(rows, self.settings.report_threshold))
        if self._names:
            closed = self.keys[rows]
            named = np.fromiter(self._names, np.uint64, len(self._names))
            for h in closed[np.isin(closed, named)].tolist():
                del self._names[h]
        self.n_rows = kf.close_rows(mask, self.index, self.keys, self.ends, self.ints,
                                    self.flts, self.hist, self.hits, self.n_rows)

    def expire(self, now_ns: int) -> list[BehaviourVerdict]:
        """Verdicts of flows idle for longer than the idle timeout at ``now_ns`` (and of
        flows that ended inside earlier updates: idle sweeps, evictions)."""
        self._close(self.ints[: self.n_rows, kf.I_LAST] < now_ns - self.idle_ns, "expired")
        out, self._pending = self._pending, []
        return sorted(out, key=lambda v: (v.first_ts_ns, v.key))

    def flush(self) -> list[BehaviourVerdict]:
        """End of input: verdicts of every flow scoring at least ``report_threshold``."""
        self._close(np.ones(self.n_rows, np.bool_), "flushed")
        out, self._pending = self._pending, []
        return sorted(out, key=lambda v: (v.first_ts_ns, v.key))

    def peek(self, threshold: float | None = None) -> list[BehaviourVerdict]:
        """Verdicts of the flows still open, as they stand now (nothing is closed)."""
        thr = self.settings.report_threshold if threshold is None else threshold
        return self._verdicts(np.arange(self.n_rows), thr)

    # -- scoring -------------------------------------------------------------------------
    def measure(self, rows: np.ndarray) -> dict[str, np.ndarray]:
        """The features of ``rows`` (numpy, one value per row), client side decided."""
        s = self.settings
        ints, flts = self.ints[rows], self.flts[rows]
        ends = self.ends[rows]
        n_ans = ints[:, kf.I_NANSWERED: kf.I_NANSWERED + 2]
        hs_client = ints[:, kf.I_CLIENT]
        by_answers = np.where(n_ans[:, 0] > n_ans[:, 1], 0,
                              np.where(n_ans[:, 1] > n_ans[:, 0], 1,
                                       (ends[:, 5] > ends[:, 2]).astype(np.int64)))
        c = np.where(hs_client == 1, 0, np.where(hs_client == 2, 1, by_answers))
        sv = 1 - c
        ix = np.arange(len(rows))

        def col(base: int, side: np.ndarray, arr: np.ndarray = ints) -> np.ndarray:
            return arr[ix, base + side].astype(np.float64)

        duration = (ints[:, kf.I_LAST] - ints[:, kf.I_FIRST]) / NS
        done_c, done_s = col(kf.I_NDONE, c), col(kf.I_NDONE, sv)
        mean_c = np.where(done_c > 0, col(kf.F_SSIZE, c, flts) / np.maximum(done_c, 1), 0.0)
        mean_s = np.where(done_s > 0, col(kf.F_SSIZE, sv, flts) / np.maximum(done_s, 1), 0.0)
        total = ints[:, kf.I_BYTES] + ints[:, kf.I_BYTES + 1]
        bps = np.where(duration > 0, total / np.maximum(duration, 1e-9), 0.0)
        band_c = _densest(self.hist[rows, kf.H_ALL, c], s.band_bins) / np.maximum(done_c, 1)
        gaps_c = col(kf.I_NBURST, c) - 1
        gap_mean, gap_cv = _cv(gaps_c, col(kf.F_SGAP, c, flts), col(kf.F_SGAP2, c, flts))
        answered = np.minimum(col(kf.I_NANSWERED, c) / np.maximum(col(kf.I_NBURST, c), 1), 1.0)
        answers_done = self.hist[rows, kf.H_ANSWER, sv].sum(axis=1).astype(np.float64)
        n_answer = col(kf.I_NANSWER, sv)
        answer_band = np.where(n_answer > 0, _densest(self.hist[rows, kf.H_ANSWER, sv],
                                                      s.band_bins) / np.maximum(n_answer, 1),
                               0.0)
        pushes = col(kf.I_NUNSOL, sv)
        push_mean, push_cv = _cv(pushes - 1, col(kf.F_SUGAP, sv, flts),
                                 col(kf.F_SUGAP2, sv, flts))
        out = {
            "client_dir": c.astype(np.float64), "duration_s": duration,
            # 1 when the connection's opening (SYN) was in the capture
            "opening_seen": (hs_client != 0).astype(np.float64),
            "client_bursts": col(kf.I_NBURST, c), "server_bursts": col(kf.I_NBURST, sv),
            "client_burst_mean_bytes": mean_c, "server_burst_mean_bytes": mean_s,
            "bytes_per_s": bps, "client_size_band": band_c, "client_gap_mean_s": gap_mean,
            "client_gap_cv": gap_cv, "answered": answered, "answer_size_band": answer_band,
            "answers_binned": answers_done, "pushes": pushes, "push_gap_mean_s": push_mean,
            "push_gap_cv": push_cv,
        }
        best = np.zeros(len(rows))
        best_coin = np.full(len(rows), -1)
        first, last = ints[:, kf.I_FIRST], ints[:, kf.I_LAST]
        for k, series in enumerate(self.block_series):
            hits = self.hits[rows, sv, k].astype(np.float64)
            n_blocks = np.searchsorted(series, last, "right") - np.searchsorted(series, first)
            chance = np.clip(n_blocks * s.block_tolerance_s / np.maximum(duration, 1e-9), 0, 1)
            frac = hits / np.maximum(pushes, 1)
            excess = np.where((pushes >= s.min_pushes_for_alignment) & (chance < 1),
                              np.clip((frac - chance) / np.maximum(1 - chance, 1e-9), 0, 1), 0)
            out[f"block_hits_{self.coins[k]}"] = hits
            out[f"block_chance_{self.coins[k]}"] = chance
            better = excess > best
            best = np.where(better, excess, best)
            best_coin = np.where(better, k, best_coin)
        out["block_alignment"] = best
        out["block_coin"] = best_coin.astype(np.float64)
        return out

    def evidence(self, m: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Evidence per feature (see FEATURES), from measured features."""
        s = self.settings
        return {
            "duration": _ramp(m["duration_s"], *s.duration_ramp_s),
            "record_size": 1 - 2 * _ramp(np.maximum(m["client_burst_mean_bytes"],
                                                    m["server_burst_mean_bytes"]),
                                         *s.record_size_ramp),
            "volume": 1 - 2 * _ramp(m["bytes_per_s"], *s.volume_ramp),
            "client_band": 2 * _ramp(m["client_size_band"], *s.client_band_ramp) - 1,
            "client_cadence": 2 * _band(m["client_gap_cv"], s.client_cadence_band) - 1,
            "client_interval": 2 * _band(m["client_gap_mean_s"], s.client_interval_band) - 1,
            "answered": 2 * _ramp(m["answered"], *s.answered_ramp) - 1,
            "answer_band": 2 * _ramp(m["answer_size_band"], *s.answer_band_ramp) - 1,
            "pushes": np.where(m["pushes"] >= 2,
                               2 * _band(m["push_gap_mean_s"], s.push_interval_band) - 1, -1.0),
            "block_alignment": m["block_alignment"],
        }

    def weights(self) -> dict[str, float]:
        return {k: float(getattr(self.settings, "w_" + k)) for k in FEATURES}

    def _verdicts(self, rows: np.ndarray, threshold: float) -> list[BehaviourVerdict]:
        s = self.settings
        ints = self.ints[rows]
        dur = (ints[:, kf.I_LAST] - ints[:, kf.I_FIRST]) / NS
        ndone = ints[:, kf.I_NDONE: kf.I_NDONE + 2]
        # Eligible: long enough, and enough completed bursts on the side with more of them
        # (the client is at least that busy in mining; the exact side is decided in measure).
        eligible = (dur >= s.min_duration_s) & (ndone.max(axis=1) >= s.min_client_bursts)
        rows = rows[eligible]
        if len(rows) == 0:
            return []
        m = self.measure(rows)
        keep = m["client_bursts"] >= s.min_client_bursts
        ev = self.evidence(m)
        w = self.weights()
        has_blocks = bool(self.coins)
        logit = np.full(len(rows), s.bias)
        for k in FEATURES:
            logit += w[k] * ev[k]
        score = 1.0 / (1.0 + np.exp(-logit))
        self.stats["scored"] += int(keep.sum())
        out = []
        for j in np.flatnonzero(keep & (score >= threshold)):
            out.append(self._verdict(int(rows[j]), j, m, ev, w, float(logit[j]),
                                     float(score[j]), has_blocks))
        self.stats["reported"] += len(out)
        return out

    def _verdict(self, r: int, j: int, m, ev, w, logit: float, score: float,
                 has_blocks: bool) -> BehaviourVerdict:
        e = self.ends[r]
        a: Endpoint = (int(e[0]), int(e[1]), int(e[2]))
        b: Endpoint = (int(e[3]), int(e[4]), int(e[5]))
        client, server = (a, b) if m["client_dir"][j] == 0 else (b, a)
        how = {1: "SYN", 2: "SYN"}.get(int(self.ints[r, kf.I_CLIENT]), "answers/port")
        f = {k: float(v[j]) for k, v in m.items()}
        coin = int(f["block_coin"])
        texts = {
            "duration": f"lasted {f['duration_s']:.0f} s",
            "record_size": (f"mean burst {f['client_burst_mean_bytes']:.0f} B from the client"
                            f" ({how}), {f['server_burst_mean_bytes']:.0f} B from the server"),
            "volume": f"{f['bytes_per_s']:.0f} payload B/s",
            "client_band": f"{100 * f['client_size_band']:.0f} % of client bursts in one "
                           f"{16 * self.settings.band_bins}-byte size band",
            "client_cadence": f"client burst gaps CV {f['client_gap_cv']:.2f} "
                              "(Poisson 1, periodic 0)",
            "client_interval": f"client bursts every {f['client_gap_mean_s']:.1f} s on average",
            "answered": f"{100 * f['answered']:.0f} % of client bursts answered within "
                        f"{self.settings.reply_window_s:g} s",
            "answer_band": f"{100 * f['answer_size_band']:.0f} % of answers in one size band",
            "pushes": (f"{f['pushes']:.0f} unsolicited server bursts, every "
                       f"{f['push_gap_mean_s']:.1f} s (CV {f['push_gap_cv']:.2f})"),
            "block_alignment": (
                "no block times supplied" if not has_blocks else
                "no server pushes line up with block times" if coin < 0 else
                f"{f['block_hits_' + self.coins[coin]]:.0f} of {f['pushes']:.0f} pushes within "
                f"{self.settings.block_tolerance_s:g} s after a {self.coins[coin]} block "
                f"(chance {100 * f['block_chance_' + self.coins[coin]]:.1f} %)"),
        }
        reasons = tuple(
            f"{k}: {texts[k]}; evidence {ev[k][j]:+.2f} x weight {w[k]:.2f} "
            f"-> {w[k] * ev[k][j]:+.3f}" for k in FEATURES)
        reasons += (f"bias -> {self.settings.bias:+.3f}; logit {logit:+.3f}, "
                    f"score = 1/(1+e^-logit) = {score:.3f}",)
        f["logit"] = logit
        if coin >= 0:
            f["block_coin"] = float(coin)
        opening = None
        if self.ints[r, kf.I_CLIENT]:  # the connection's opening was in the capture
            head = int(self.ints[r, kf.I_HEAD + int(m["client_dir"][j])])
            if head >= 0:
                opening = (head & 0xFFFFFF).to_bytes(3, "big")[: head >> 24]
        return BehaviourVerdict(
            key=flow_key(int(self.ints[r, kf.I_VLAN]), int(self.ints[r, kf.I_INNER]), TCP, a, b),
            client=client, server=server,
            first_ts_ns=int(self.ints[r, kf.I_FIRST]), last_ts_ns=int(self.ints[r, kf.I_LAST]),
            score=score, reasons=reasons, features=f,
            server_name=self._names.get(int(self.keys[r])), opening=opening)
