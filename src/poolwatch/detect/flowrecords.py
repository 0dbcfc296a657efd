"""Pool contacts from flow records (NetFlow v5/v9, IPFIX): no payload, only addresses, ports,
counters and times, judged as they stop coming.

A router's flow records say who talked to whom, on which ports, how many packets and bytes
each way, and when. :class:`FlowContactJudge` joins the records of one connection (both
directions; and the several records an exporter's active timeout cuts a long connection
into) and scores the joined flow with the same noisy-OR as packet-based contacts
(``detect.contacts``), ``score = 1 - Π(1 - w)``, with three kinds of evidence (``via``):

- ``flow-address``: the server is in a listed pool prefix (``fingerprints/addresses.csv``,
  weighted exactly like the ``ip`` evidence of packet contacts: ``ip_endpoint`` /
  ``ip_other_port`` × freshness), or is a pool host that ``pools.csv`` gives as a literal
  address, or an address this sensor learnt as a pool's (:meth:`set_known_pool_addresses`,
  e.g. from DNS answers the packet pipeline saw);
- ``flow-port``: the server port is one pools listen on, weighted by how much ordinary
  traffic uses it (``ports.csv`` ``legit_traffic``: rare, low, moderate, very common); a
  port alone never reaches the report threshold;
- ``flow-behaviour``: the joined flow looks like a miner's connection: it lives long, its
  packets are small, they go both ways in similar numbers at a low rate, and consecutive
  records of it carry steady counts (a miner submits shares and gets jobs all the time, so
  each active-timeout slice looks like the last). Alone it never reaches the threshold
  either: flow records cannot tell an idle SSH session from a miner.

So a report needs a listed address, or a mining port with mining behaviour (a rare port and
a fair behaviour score, or a low-traffic port and a strong one). Mining on 443 to an address
nobody listed is invisible in flow records: that needs packets (SNI, the behaviour model).

Sampling (1:N, announced by the exporter) is respected: packet and byte figures in the
evidence are estimates (sampled counts × N, the sampled counts beside them), rates use the
estimates, and the behaviour evidence needs a few sampled packets each way
(``min_sampled_packets``) before it says anything.

Which side is the pool: the side with address evidence, else the side whose port is below
the ephemeral range (32768) when the other's is in it, else the side whose port pools listen
on (the stronger), else the lower port. Records carry no initiator.

When contacts come out: a flow is decided once no record of it arrived for ``idle_s`` (wall
time at the collector, so exporters' clocks do not matter; at least twice the gap seen
between its records, so active-timeout slices stay joined), ``end_grace_s`` after a record
that says it ended (TCP FIN/RST, or flowEndReason idle/end/forced), after ``max_open_s``
open (a long-lived miner is reported hourly, each report a new contact starting where the
last ended), or when ``max_flows`` are open (the least recently updated quarter goes
first). Only TCP flows with some address or port evidence are kept (numpy picks them; the
rest never reach Python).

A connection seen by two exporters is two flows (the key includes the exporter): each
contact names its exporter and observation domain. If one exporter sends both ingress and
egress records of the same packets, each direction's figures are the larger of the two, not
their sum.
"""

from __future__ import annotations

import ipaddress
import math
from collections.abc import Iterable
from dataclasses import dataclass, field, fields
from typing import Any

import numpy as np

from ..fingerprints import Endpoint, Fingerprints, PoolAddress, load_fingerprints
from ..records import addr_to_halves, halves_to_addr
from .contacts import AddressIntel, ContactSettings
from .records import PoolContact, community_id_of

NS = 1_000_000_000
TCP = 6
FIN, RST = 0x01, 0x04
ENDED_REASONS = (1, 3, 4, 5)  # flowEndReason idle, end of flow, forced end, lack of resources
VERSION_NAMES = {5: "netflow-v5", 9: "netflow-v9", 10: "ipfix"}
GATES = ("small_packets", "low_rate")  # behaviour traits that multiply the score
JOIN_COLUMNS = ("src_hi", "src_lo", "src_port", "dst_hi", "dst_lo", "dst_port", "exporter_hi",
                "exporter_lo", "domain", "version", "first_ns", "last_ns", "packets", "bytes",
                "rev_packets", "rev_bytes", "sampling", "direction", "tcp_flags", "end_reason",
                "ingress", "egress")
EPHEMERAL = 32768  # clients' ports start here on Linux (32768-60999) and Windows (49152-)


@dataclass(frozen=True)
class FlowRecordSettings:
    """Weights and timing of flow-record contacts (defaults and reasons: docs/flow-records.md).

    The address evidence reuses :class:`~poolwatch.detect.contacts.ContactSettings`
    (``ip_endpoint``, ``ip_other_port``, ``ip_half_life_days``, ``report_threshold``) so
    that one listed address weighs the same from packets and from flow records.
    """

    port_rare: float = 0.35  # server port pools use, little else does (3333, 1800, 14444)
    port_low: float = 0.2  # pools use it, and some other services (4444, 5555, 7777)
    port_moderate: float = 0.1  # pools use it, and many other services (8888, 9999)
    port_very_common: float = 0.0  # 80, 443, 25: says nothing
    port_listed_only: float = 0.1  # pools list it, ports.csv does not class it
    port_listed_min_endpoints: int = 2  # ... in at least this many pools.csv endpoints
    known_pool_address: float = 0.6  # an address the sensor learnt as a pool's
    behaviour: float = 0.45  # times the behaviour score (0-1): alone below the threshold
    min_duration_s: float = 60.0  # a shorter flow has no behaviour evidence
    min_sampled_packets: int = 4  # ... nor one with fewer sampled packets either way
    duration_ramp_s: tuple[float, float] = (60.0, 600.0)  # 0 at 60 s, 1 from 10 min
    # mean IP bytes per packet of the larger side: 1 at or below 300, 0 at or above 800
    packet_size_ramp: tuple[float, float] = (300.0, 800.0)
    symmetry_ramp: tuple[float, float] = (0.25, 0.6)  # fewer/more packets: 0 at ≤ 0.25, 1 at ≥ 0.6
    rate_ramp_pps: tuple[float, float] = (5.0, 50.0)  # packets/s both ways: 1 at ≤ 5, 0 at ≥ 50
    # coefficient of variation of per-record packet rates: 1 at or below 0.5, 0 at 1.5
    cadence_cv_ramp: tuple[float, float] = (0.5, 1.5)
    min_cadence_records: int = 3  # records in one direction before cadence counts
    idle_s: float = 300.0  # no record for this long (wall time): the flow is decided
    end_grace_s: float = 15.0  # after a record saying "ended" (the other direction's may follow)
    max_open_s: float = 3600.0  # a flow open this long is decided anyway
    max_flows: int = 1 << 17  # open flows kept; the least recently updated quarter goes when full
    max_record_history: int = 32  # records per direction kept for the cadence
    expire_interval_s: float = 1.0  # how often :meth:`FlowContactJudge.expire` scans

    def __post_init__(self) -> None:
        for name in ("port_rare", "port_low", "port_moderate", "port_very_common",
                     "port_listed_only", "known_pool_address", "behaviour"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"flow-record setting {name} must lie in [0, 1], got {value}")
        for name in ("idle_s", "end_grace_s", "max_open_s", "min_duration_s"):
            if getattr(self, name) < 0:
                raise ValueError(f"flow-record setting {name} must not be negative")
        for name in ("duration_ramp_s", "packet_size_ramp", "symmetry_ramp", "rate_ramp_pps",
                     "cadence_cv_ramp"):
            lo, hi = getattr(self, name)
            if not lo < hi:
                raise ValueError(f"flow-record setting {name} must rise: {lo} < {hi}")
        if self.max_flows < 4:
            raise ValueError("flow-record setting max_flows must be at least 4")

    @classmethod
    def from_mapping(cls, values: dict[str, Any]) -> FlowRecordSettings:
        """Settings from NAME=VALUE pairs (config files); unknown names are an error."""
        known = {f.name: f for f in fields(cls)}
        out: dict[str, Any] = {}
        for name, raw in values.items():
            if name not in known:
                raise ValueError(f"unknown flow-record setting {name!r} "
                                 f"(known: {', '.join(known)})")
            default = getattr(cls, name)
            try:
                if isinstance(default, tuple):
                    parts = raw if isinstance(raw, (list, tuple)) else str(raw).replace(
                        ",", " ").split()
                    out[name] = tuple(float(p) for p in parts)
                elif isinstance(default, int):
                    out[name] = int(raw)
                else:
                    out[name] = float(raw)
            except (TypeError, ValueError):
                raise ValueError(f"flow-record setting {name}: {raw!r} is not a number") from None
        return cls(**out)


def _ramp(x: float, lo: float, hi: float) -> float:
    return 0.0 if x <= lo else 1.0 if x >= hi else (x - lo) / (hi - lo)


@dataclass(slots=True)
class _Side:
    """One direction of a joined flow, per flowDirection value seen (0/unknown, 1)."""

    packets: list[int] = field(default_factory=lambda: [0, 0])  # as exported (sampled)
    bytes: list[int] = field(default_factory=lambda: [0, 0])
    est_packets: list[int] = field(default_factory=lambda: [0, 0])  # × sampling
    est_bytes: list[int] = field(default_factory=lambda: [0, 0])
    records: list[int] = field(default_factory=lambda: [0, 0])
    history: list[tuple[int, int, int]] = field(default_factory=list)  # (first, last, est pkts)

    def add(self, flag: int, packets: int, octets: int, sampling: int) -> None:
        """One record's counts (as exported, and scaled by the sampling interval)."""
        self.packets[flag] += packets
        self.bytes[flag] += octets
        self.est_packets[flag] += packets * sampling
        self.est_bytes[flag] += octets * sampling
        self.records[flag] += 1

    def pick(self) -> int:
        """Which direction flag's figures to use: the larger (ingress and egress records of
        the same packets must not add up)."""
        return 0 if self.est_packets[0] >= self.est_packets[1] else 1


@dataclass(slots=True)
class _Flow:
    """The records of one connection at one exporter, joined."""

    a: tuple[int, int, int]  # (hi, lo, port), a <= b
    b: tuple[int, int, int]
    exporter: tuple[int, int]
    domain: int
    version: int
    first_ns: int
    last_ns: int
    opened: float  # wall time of the first record
    seen: float  # wall time of the latest record
    sides: tuple[_Side, _Side] = field(default_factory=lambda: (_Side(), _Side()))
    sampling: int = 1
    ended: bool = False
    max_gap: float = 0.0  # longest wall-time gap between records
    ingress: int = 0
    egress: int = 0


class FlowContactJudge:
    """Flow records in (``FLOWREC`` arrays from ``readers.flowrecords``), pool contacts out
    as their flows go quiet. ``now`` arguments are wall seconds (``time.monotonic()``)."""

    def __init__(self, fp: Fingerprints | None = None,
                 contact_settings: ContactSettings | None = None,
                 settings: FlowRecordSettings | None = None) -> None:
        self.fp = fp if fp is not None else load_fingerprints()
        self.contact_settings = contact_settings or ContactSettings()
        self.settings = settings or FlowRecordSettings()
        self.intel = AddressIntel(self.fp, half_life_days=self.contact_settings.ip_half_life_days)
        self._port_weight, self._port_why = self._port_table()
        self._hosts: dict[int, list[Endpoint]] = {}  # pools.csv hosts given as addresses
        for ep in self.fp.endpoints.values():
            try:
                ip = ipaddress.ip_address(ep.host)
            except ValueError:
                continue
            hi, lo = addr_to_halves(ip)
            self._hosts.setdefault(hi << 64 | lo, []).append(ep)
        self._known: set[int] = set()
        self._prefixes: list[tuple] = []  # (keep hi, keep lo, hi halves, lo halves, values)
        self._rewatch()
        self._flows: dict[tuple, _Flow] = {}  # least recently updated first
        self._last_expire = -math.inf
        self._last_full_scan = -math.inf
        self.stats: dict[str, int] = dict.fromkeys(
            ("records_seen", "records_tcp", "records_kept", "flows_open", "flows_decided",
             "contacts", "below_threshold", "evicted", "max_open_splits"), 0)

    # -- knowledge ---------------------------------------------------------------------------
    def _port_table(self) -> tuple[np.ndarray, dict[int, tuple[str, float]]]:
        """Weight per port (65,536 entries) and the words of its reason."""
        s = self.settings
        weight = np.zeros(1 << 16, np.float64)
        why: dict[int, tuple[str, float]] = {}
        listed: dict[int, int] = {}
        for ep in self.fp.endpoints.values():
            if ep.port is not None:
                listed[ep.port] = listed.get(ep.port, 0) + 1
        web = set(self.contact_settings.web_ports)
        for port, n in listed.items():
            if n >= s.port_listed_min_endpoints and port not in web and s.port_listed_only:
                weight[port] = s.port_listed_only
                why[port] = ((f"port {port} is listed for {n} pool endpoints in the "
                              f"fingerprints (no traffic class in ports.csv)"), s.port_listed_only)
        by_class = {"rare": s.port_rare, "low": s.port_low, "moderate": s.port_moderate,
                    "very-common": s.port_very_common}
        # widest first, so that the narrowest range's row wins (as Fingerprints.port_info)
        rows = sorted(((hi - lo, lo, hi, info) for info in self.fp.ports.values()
                       for lo, hi in info.ports), key=lambda r: -r[0])
        for _, lo, hi, info in rows:
            pools = info.hiveos_endpoints or sum(listed.get(p, 0) for p in range(lo, hi + 1))
            w = by_class.get(info.legit_traffic, 0.0) if pools else 0.0
            weight[lo:hi + 1] = w
            for p in range(lo, hi + 1):
                if w:
                    why[p] = ((f"port {p} is a mining port (ports.csv {info.id}: {pools} "
                              f"pool endpoints, {info.legit_traffic} ordinary traffic)"), w)
                else:
                    why.pop(p, None)
        return weight, why

    def set_known_pool_addresses(self, addresses: Iterable[str]) -> None:
        """Addresses learnt as pools' elsewhere (the packet pipeline's
        ``pool_addresses()``: DNS answers for pool names, sessions): replaces the set."""
        known = set()
        for ip in addresses:
            try:
                hi, lo = addr_to_halves(ip)
            except ValueError:
                continue
            known.add(hi << 64 | lo)
        if known != self._known:
            self._known = known
            self._rewatch()

    def _rewatch(self) -> None:
        """Prefixes worth a look, by length: listed prefixes, pool hosts given as addresses,
        learnt addresses (all /128 in the IPv4-mapped space)."""
        nets: dict[int, set[int]] = {}
        for row in self.fp.addresses.values():
            net = row.network
            length = net.prefixlen + (96 if net.version == 4 else 0)
            hi, lo = addr_to_halves(net.network_address)
            nets.setdefault(length, set()).add(hi << 64 | lo)
        for value in (*self._hosts, *self._known):
            nets.setdefault(128, set()).add(value)
        self._prefixes = []
        for length, values in sorted(nets.items()):
            keep = ((1 << length) - 1) << (128 - length)
            self._prefixes.append((
                np.uint64(keep >> 64), np.uint64(keep & 0xFFFFFFFFFFFFFFFF),
                np.array(sorted(v >> 64 for v in values), np.uint64),
                np.array(sorted(v & 0xFFFFFFFFFFFFFFFF for v in values), np.uint64),
                frozenset(values)))

    def _listed(self, hi: np.ndarray, lo: np.ndarray) -> np.ndarray:
        """Which addresses fall in a prefix worth a look (exact: both halves compared)."""
        out = np.zeros(len(hi), bool)
        for keep_hi, keep_lo, want_hi, want_lo, values in self._prefixes:
            h, low = hi & keep_hi, lo & keep_lo
            if len(values) <= 8:  # a few comparisons beat sorting for np.isin
                for v in values:
                    out |= (low == np.uint64(v & 0xFFFFFFFFFFFFFFFF)) & (h == np.uint64(v >> 64))
            else:
                cand = np.isin(low, want_lo) & np.isin(h, want_hi)
                for i in np.flatnonzero(cand):  # few: check the pair exactly
                    out[i] = (int(h[i]) << 64 | int(low[i])) in values
        return out

    # -- records in --------------------------------------------------------------------------
    def update(self, records: np.ndarray, now: float) -> list[PoolContact]:
        """Join a batch of records into their flows; returns contacts decided early because
        the table was full (the rest come from :meth:`expire` and :meth:`flush`)."""
        st = self.stats
        st["records_seen"] += len(records)
        if len(records) == 0:
            return []
        tcp = records["proto"] == TCP
        st["records_tcp"] += int(np.count_nonzero(tcp))
        sport, dport = records["src_port"], records["dst_port"]
        s_high, d_high = sport >= EPHEMERAL, dport >= EPHEMERAL
        # a client's ephemeral port facing a lower one is no server port (as in judge())
        pick = ((self._port_weight[sport] > 0) & ~(s_high & ~d_high)) | (
            (self._port_weight[dport] > 0) & ~(d_high & ~s_high))
        for hi, lo in (("dst_hi", "dst_lo"), ("src_hi", "src_lo")):
            pick |= self._listed(records[hi], records[lo])
        idx = np.flatnonzero(pick & tcp)
        st["records_kept"] += len(idx)
        if len(idx):
            self._join(records[idx], now)
        out: list[PoolContact] = []
        if len(self._flows) > self.settings.max_flows:
            n = len(self._flows) // 4
            st["evicted"] += n
            out = self._decide(list(self._flows)[:n])
        st["flows_open"] = len(self._flows)
        return out

    def _join(self, recs: np.ndarray, now: float) -> None:
        columns = [recs[name].tolist() for name in JOIN_COLUMNS]
        flows = self._flows
        hist = self.settings.max_record_history
        for (s_hi, s_lo, sport, d_hi, d_lo, dport, e_hi, e_lo, domain, version, first, last,
             pk, by, rpk, rby, n, direction, tcp_flags, end_reason, ingress,
             egress) in zip(*columns):
            src = (s_hi, s_lo, sport)
            dst = (d_hi, d_lo, dport)
            forward = src <= dst
            a, b = (src, dst) if forward else (dst, src)
            exporter = (e_hi, e_lo)
            key = (exporter, domain, a, b)
            f = flows.pop(key, None)
            if f is None:
                f = _Flow(a, b, exporter, domain, version, first, last, now, now,
                          ingress=ingress, egress=egress)
            else:
                f.max_gap = max(f.max_gap, now - f.seen)
                f.seen = now
                f.first_ns = min(f.first_ns, first)
                f.last_ns = max(f.last_ns, last)
            flows[key] = f  # to the back: most recently updated
            n = max(n, 1)
            f.sampling = max(f.sampling, n)
            flag = 1 if direction == 1 else 0
            side = f.sides[0 if forward else 1]
            side.add(flag, pk, by, n)
            if len(side.history) >= hist:
                del side.history[0]
            side.history.append((first, last, pk * n))
            if rpk or rby:  # an RFC 5103 biflow: the reverse direction rides along
                f.sides[1 if forward else 0].add(flag, rpk, rby, n)
            f.ended = bool(tcp_flags & (FIN | RST)) or end_reason in ENDED_REASONS

    # -- verdicts out ----------------------------------------------------------------------------
    def expire(self, now: float) -> list[PoolContact]:
        """Contacts of flows that went quiet (or stayed open too long) by ``now``."""
        s = self.settings
        if now - self._last_expire < s.expire_interval_s:
            return []
        self._last_expire = now
        due: list[tuple] = []
        for key, f in self._flows.items():  # least recently updated first
            quiet = now - f.seen
            if quiet <= s.end_grace_s:
                break
            limit = s.end_grace_s if f.ended else min(max(s.idle_s, 2.0 * f.max_gap),
                                                      max(s.max_open_s, s.idle_s))
            if quiet > limit:
                due.append(key)
        if now - self._last_full_scan >= max(s.expire_interval_s * 10, 10.0):
            self._last_full_scan = now
            old = [k for k, f in self._flows.items() if now - f.opened > s.max_open_s]
            self.stats["max_open_splits"] += len(set(old) - set(due))
            due.extend(k for k in old if k not in set(due))
        out = self._decide(due)
        self.stats["flows_open"] = len(self._flows)
        return out

    def flush(self) -> list[PoolContact]:
        """End of input: every open flow decided."""
        out = self._decide(list(self._flows))
        self.stats["flows_open"] = 0
        return out

    def _decide(self, keys: list[tuple]) -> list[PoolContact]:
        out = []
        th = self.contact_settings.report_threshold
        for key in keys:
            f = self._flows.pop(key, None)
            if f is None:
                continue
            self.stats["flows_decided"] += 1
            contact = self.judge(f)
            if contact is None:
                continue
            if contact.score < th:
                self.stats["below_threshold"] += 1
                continue
            out.append(contact)
        self.stats["contacts"] += len(out)
        out.sort(key=lambda c: (c.first_seen, c.src_ip, c.src_port))
        return out

    # -- one flow ----------------------------------------------------------------------------------
    def _address_evidence(self, ep: tuple[int, int, int], at_ns: int
                          ) -> tuple[float, str, str | None, str | None, dict[str, Any]] | None:
        """(weight, reason, pool, pool host, evidence) when an endpoint's address says pool."""
        cs, s = self.contact_settings, self.settings
        ip = halves_to_addr(ep[0], ep[1])
        port = ep[2]
        rows: list[PoolAddress] = self.intel.match(ip) if self.intel else []
        if rows:
            row = next((r for r in rows if not r.ports or port in r.ports), rows[0])
            listed = not row.ports or port in row.ports
            fresh = self.intel.freshness(row, at_ns)
            w = (cs.ip_endpoint if listed else cs.ip_other_port) * fresh
            if "shared-hosting" in row.flags:
                w *= 0.5
            return (w, (f"{ip} is listed for {row.pool} ({row.prefix}, last seen "
                        f"{row.last_seen.isoformat()}, freshness {fresh:.2f} at the flow's "
                        f"date); port {port} {'listed' if listed else 'not listed'} "
                        f"(weight {w:.2f})"), row.pool, None,
                    {"address_row": row.prefix})
        value = ep[0] << 64 | ep[1]
        eps = self._hosts.get(value)
        if eps:
            on_port = [e for e in eps if e.port is None or e.port == port]
            e = (on_port or eps)[0]
            w = cs.ip_endpoint if on_port else cs.ip_other_port
            if "historic" in e.flags:
                w *= 0.5
            return (w, (f"{ip} is a pool host in the fingerprints ({e.pool}, {e.coin}); port "
                        f"{port} {'listed' if on_port else 'not listed'} for it"
                        f"{' (historic row: x 0.5)' if 'historic' in e.flags else ''} "
                        f"(weight {w:.2f})"), e.pool, e.host, {})
        if value in self._known:
            w = s.known_pool_address
            return (w, (f"{ip} was learnt as a pool's address by this sensor (DNS answers "
                        f"for pool names, sessions) (weight {w:.2f})"), None, None, {})
        return None

    def judge(self, f: _Flow) -> PoolContact | None:
        """Score one joined flow; None when nothing speaks for mining."""
        s = self.settings
        addr_a = self._address_evidence(f.a, f.first_ns)
        addr_b = self._address_evidence(f.b, f.first_ns)
        if addr_a and (not addr_b or addr_a[0] > addr_b[0]):
            server, client, addr, to_server = f.a, f.b, addr_a, 1
        elif addr_b:
            server, client, addr, to_server = f.b, f.a, addr_b, 0
        else:
            if (f.a[2] >= EPHEMERAL) != (f.b[2] >= EPHEMERAL):  # the client's port is the high one
                a_serves = f.a[2] < EPHEMERAL
            else:
                wa, wb = self._port_weight[f.a[2]], self._port_weight[f.b[2]]
                a_serves = wa > wb or (wa == wb and f.a[2] < f.b[2])
            server, client, to_server = (f.a, f.b, 1) if a_serves else (f.b, f.a, 0)
            addr = None
        # to_server: index of the side holding client -> server records (sides[0] is a -> b)
        up, down = f.sides[to_server], f.sides[1 - to_server]
        weights: list[tuple[str, float, str]] = []
        evidence: dict[str, Any] = {}
        pool = pool_host = None
        if addr is not None:
            w, reason, pool, pool_host, extra = addr
            weights.append(("flow-address", w, reason))
            evidence.update(extra)
        pw = float(self._port_weight[server[2]])
        if pw > 0:
            text, _ = self._port_why[server[2]]
            weights.append(("flow-port", pw, f"{text} (weight {pw:.2f})"))

        iu, idn = up.pick(), down.pick()
        est = {"pkts_toserver": up.est_packets[iu], "pkts_toclient": down.est_packets[idn],
               "bytes_toserver": up.est_bytes[iu], "bytes_toclient": down.est_bytes[idn]}
        sampled = {"pkts_toserver": up.packets[iu], "pkts_toclient": down.packets[idn],
                   "bytes_toserver": up.bytes[iu], "bytes_toclient": down.bytes[idn]}
        duration = max(f.last_ns - f.first_ns, 0) / NS
        behaviour = self._behaviour(up, down, iu, idn, est, sampled, duration, f.sampling)
        if behaviour is not None:
            score, reason, features = behaviour
            w = s.behaviour * score
            if w > 0:
                weights.append(("flow-behaviour", w, f"{reason} (weight {w:.2f})"))
            evidence["behaviour_features"] = features
        if not weights:
            return None
        keep = 1.0
        for _, w, _ in weights:
            keep *= 1.0 - w
        src, dst = halves_to_addr(client[0], client[1]), halves_to_addr(server[0], server[1])
        evidence.update({
            "source": "flow-records",
            "exporter": halves_to_addr(*f.exporter),
            "observation_domain": f.domain,
            "export": VERSION_NAMES.get(f.version, str(f.version)),
            "records": {"toserver": up.records[iu], "toclient": down.records[idn]},
            "sampling": f.sampling,
            "flow": est,
            "duration_s": round(duration, 3),
        })
        if f.sampling > 1:
            evidence["sampled"] = sampled
        if f.ingress or f.egress:
            evidence["interfaces"] = {"ingress": f.ingress, "egress": f.egress}
        via = tuple(dict.fromkeys(v for v, _, _ in weights))
        reasons = [r for _, _, r in weights]
        if f.sampling > 1:
            reasons.append(f"sampled 1:{f.sampling} at the exporter: packet and byte figures "
                           f"are estimates (sampled counts x {f.sampling})")
        return PoolContact(
            timestamp=f.first_ns, src_ip=src, src_port=client[2], dest_ip=dst,
            dest_port=server[2], community_id=community_id_of(src, client[2], dst, server[2]),
            first_seen=f.first_ns, last_seen=f.last_ns, via=via, pool=pool,
            pool_host=pool_host, tls=False, ja4=None, score=round(1.0 - keep, 4),
            reasons=tuple(reasons), evidence=evidence)

    def _behaviour(self, up: _Side, down: _Side, iu: int, idn: int, est: dict[str, int],
                   sampled: dict[str, int], duration: float, sampling: int
                   ) -> tuple[float, str, dict[str, float]] | None:
        """(score 0-1, reason, features) from the joined counters; None when the flow is too
        short or too thinly sampled to say anything."""
        s = self.settings
        if duration < s.min_duration_s:
            return None
        if min(sampled["pkts_toserver"], sampled["pkts_toclient"]) < s.min_sampled_packets:
            return None
        pu, pd = est["pkts_toserver"], est["pkts_toclient"]
        size_u = est["bytes_toserver"] / pu
        size_d = est["bytes_toclient"] / pd
        size = max(size_u, size_d)
        symmetry = min(pu, pd) / max(pu, pd)
        rate = (pu + pd) / duration
        parts = [
            ("duration", _ramp(duration, *s.duration_ramp_s),
             f"lasted {duration:.0f} s"),
            ("small_packets", 1.0 - _ramp(size, *s.packet_size_ramp),
             f"mean packet {size_u:.0f} B to the server, {size_d:.0f} B back"),
            ("symmetry", _ramp(symmetry, *s.symmetry_ramp),
             f"{pu} packets to the server, {pd} back"),
            ("low_rate", 1.0 - _ramp(rate, *s.rate_ramp_pps), f"{rate:.2f} packets/s"),
        ]
        features = {"duration_s": round(duration, 3), "mean_packet_toserver": round(size_u, 1),
                    "mean_packet_toclient": round(size_d, 1), "symmetry": round(symmetry, 3),
                    "packets_per_s": round(rate, 3)}
        hist = [h for h in (up.history if len(up.history) >= len(down.history) else
                            down.history) if h[1] > h[0]]
        if len(hist) >= s.min_cadence_records:
            rates = np.array([p / ((last - first) / NS) for first, last, p in hist])
            mean = float(rates.mean())
            cv = float(rates.std() / mean) if mean > 0 else math.inf
            parts.append(("cadence", 1.0 - _ramp(cv, *s.cadence_cv_ramp),
                          (f"steady across {len(hist)} consecutive records (packet-rate CV "
                          f"{cv:.2f})")))
            features["cadence_cv"] = round(cv, 3) if math.isfinite(cv) else -1.0
            features["cadence_records"] = len(hist)
        # small packets and a low rate are what mining cannot do without: they multiply;
        # the rest (long life, both ways, steady) support and are averaged
        gates = [v for name, v, _ in parts if name in GATES]
        support = [v for name, v, _ in parts if name not in GATES]
        score = math.prod(gates) * (sum(support) / len(support))
        features["score"] = round(score, 4)
        reason = ("behaviour from flow records: " + "; ".join(
            f"{text} ({v:.2f})" for _, v, text in parts)
            + f": score {score:.2f} (= {' x '.join(f'{g:.2f}' for g in gates)} x mean of "
            f"the rest)")
        return score, reason, features
