"""The records the detectors emit: one frozen, slotted dataclass per event type.

Field names are the stable contract of ``docs/records.md`` (Suricata EVE naming). Times are
integer nanoseconds since the Unix epoch here; the writers format them as ISO 8601 UTC.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any, ClassVar

import numpy as np

from ..kernels.communityid import community_ids
from ..records import addr_to_halves

Endpoint = tuple[int, int, int]  # (address high half, low half, port), as in records.PACKET
FlowKey = tuple[int, int, int, Endpoint, Endpoint]


def flow_key(vlan: int, inner_vlan: int, proto: int, a: Endpoint, b: Endpoint) -> FlowKey:
    """The direction-free key every detector uses for one flow: VLANs, protocol, and the
    two endpoints in ascending order. FLOW rows, PACKET rows and conversations all map to it."""
    return (vlan, inner_vlan, proto, a, b) if a <= b else (vlan, inner_vlan, proto, b, a)


def community_id_of(src: str, sport: int, dst: str, dport: int, proto: int = 6) -> str:
    """The Community ID (v1, seed 0) of one flow, for records built one at a time."""
    halves = addr_to_halves(src) + addr_to_halves(dst)
    cols = [np.array([x], np.uint64) for x in halves]
    return str(community_ids(*cols, np.array([sport]), np.array([dport]),
                             np.array([proto]))[0])


def record_dict(record: Any) -> dict[str, Any]:
    """``event_type`` first, then every field in declaration order (for JSON writers)."""
    out: dict[str, Any] = {"event_type": record.EVENT_TYPE}
    for f in fields(record):
        value = getattr(record, f.name)
        out[f.name] = list(value) if isinstance(value, tuple) else value
    return out


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
        return record_dict(self)


@dataclass(frozen=True, slots=True)
class PoolContact:
    """One flow attributed to mining without reading Stratum: by the pool name the client
    resolved (``dns``) or asked for in TLS (``sni``), the server's certificate
    (``certificate``), the pool's address (``ip``), the flow's behaviour (``behaviour``),
    Stratum V2's encrypted handshake (``stratum-v2``) or a probe of the endpoint (``probe``).

    ``src`` is the client (the side that opened the connection, or sent the ClientHello),
    ``dest`` the pool. ``score`` (0–1) combines the pieces of evidence; ``reasons`` says, one
    line per piece, what was seen and what it weighed. A flow that is also a plaintext
    session is reported as that session only.
    """

    EVENT_TYPE: ClassVar[str] = "pool_contact"
    KINDS: ClassVar[dict[str, str]] = {
        "timestamp": "time", "first_seen": "time", "last_seen": "time",
        "src_port": "int", "dest_port": "int", "tls": "bool", "score": "float",
        "via": "json", "reasons": "json", "evidence": "json",
    }

    timestamp: int
    src_ip: str
    src_port: int
    dest_ip: str
    dest_port: int
    community_id: str
    first_seen: int
    last_seen: int
    via: tuple[str, ...]
    pool: str | None
    pool_host: str | None
    tls: bool
    ja4: str | None
    score: float
    reasons: tuple[str, ...]
    evidence: dict[str, Any] = field(default_factory=dict, compare=False)

    def as_dict(self) -> dict[str, Any]:
        return record_dict(self)
