"""The records the detectors emit: one frozen, slotted dataclass per event type.

Field names are the stable contract of ``docs/records.md`` (Suricata EVE naming). Times are
integer nanoseconds since the Unix epoch here; the writers format them as ISO 8601 UTC.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any, ClassVar


@dataclass(frozen=True, slots=True)
class StratumSession:
    """One mining session: who mined, to which pool, in which dialect, at what rate.

    The miner is always ``src`` and the pool ``dest``, decided from the roles of the messages
    (client methods versus server methods), never from who sent the first packet.

    ``difficulty`` is the last difficulty in effect: the number the pool announced for
    dialects that send one (``mining.set_difficulty``), and the expected work per share
    (2^256/T, hashes or Equihash solutions; the xmrig and open-ethereum-pool convention) for
    dialects that send a target. ``diff1_shares_per_s`` is the rate of difficulty-1 shares in
    that same convention (Σ shares × difficulty / window); it is given even when the
    algorithm, and so the hashrate, cannot be told. ``hashrate_reason`` says why
    ``hashrate_hs`` is null. ``workers`` lists every login or worker name sent on the
    connection (several for a proxy), in order of first appearance. ``evidence`` holds the
    capture path, frame numbers, the first protocol lines verbatim (capped) and how each
    conclusion was reached; the scan layer adds the capture's SHA-256.
    """

    EVENT_TYPE: ClassVar[str] = "stratum_session"
    # Column kinds for writers that need one schema up front (Arrow, CSV): "time" is integer
    # ns since the epoch, "json" a nested value (dict or list) to serialise.
    KINDS: ClassVar[dict[str, str]] = {
        "timestamp": "time", "first_seen": "time", "last_seen": "time",
        "src_port": "int", "dest_port": "int", "shares_submitted": "int",
        "shares_accepted": "int", "shares_rejected": "int",
        "difficulty": "float", "hashrate_hs": "float", "hashrate_hs_low": "float",
        "hashrate_hs_high": "float", "power_w": "float", "power_w_low": "float",
        "power_w_high": "float", "diff1_shares_per_s": "float",
        "evidence": "json", "workers": "json",
    }  # every other field is a string (or null)

    timestamp: int
    src_ip: str
    src_port: int
    dest_ip: str
    dest_port: int
    community_id: str
    first_seen: int
    last_seen: int
    dialect: str
    agent: str | None
    login: str | None
    worker: str | None
    wallet: str | None
    coin: str | None
    algorithm: str | None
    pool: str | None
    pool_host: str | None
    shares_submitted: int | None  # None when encrypted: the shares are not visible
    shares_accepted: int | None
    shares_rejected: int | None
    difficulty: float | None
    hashrate_hs: float | None
    hashrate_hs_low: float | None
    hashrate_hs_high: float | None
    power_w: float | None
    power_w_low: float | None
    power_w_high: float | None
    evidence: dict[str, Any] = field(default_factory=dict, compare=False)
    workers: tuple[str, ...] = ()
    hashrate_reason: str | None = None
    diff1_shares_per_s: float | None = None

    def as_dict(self) -> dict[str, Any]:
        """``event_type`` first, then every field in declaration order (for JSON writers)."""
        out: dict[str, Any] = {"event_type": self.EVENT_TYPE}
        for f in fields(self):
            value = getattr(self, f.name)
            out[f.name] = list(value) if isinstance(value, tuple) else value
        return out
