"""Pool contacts: flows attributed to mining without reading Stratum, each verdict explained.

Most mining at an ISP's edge is encrypted (``stratum+ssl``, Stratum V2's Noise) or at least
unreadable to a scan that joined late. The :class:`ContactJudge` collects the other
evidence the scan produces and turns it into :class:`~poolwatch.detect.records.PoolContact`
records:

- ``dns``: the flow goes to an address the capture's own DNS answered for a pool name;
- ``sni`` / ``certificate``: the TLS ClientHello asked for a pool name, or the server's
  certificate (TLS 1.2) names one;
- ``ip``: the address is a pool's in ``fingerprints/addresses.csv`` (older rows weigh less);
- ``behaviour``: the behaviour model scored the flow's timing and sizes as mining;
- ``stratum-v2``: Stratum V2's Noise handshake shape (from the Stratum tracker);
- ``probe``: ``poolwatch probe`` found the endpoint answering as a pool (or as something
  else, which lowers the score).

Each piece of evidence has a weight (:class:`ContactSettings`, documented defaults) and the
score is their noisy-OR, ``1 - Π(1 - w)``, times a penalty when a probe says "not a pool":
independent clues add up, none alone reaches 1, and every reason line names its weight. A
name on a web port (80, 443, …) weighs little: it is more often the pool's web site than a
miner. Flows that are plaintext Stratum sessions are reported as sessions only.

Memory: only flows with some evidence are kept (a few per thousand), until :meth:`finish`.
"""

from __future__ import annotations

import datetime
import ipaddress
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, fields, replace
from typing import Any

import numpy as np

from ..fingerprints import Fingerprints, PoolAddress
from ..records import addr_to_halves, halves_to_addr
from .dns import pool_name_matcher
from .records import FlowKey, PoolContact, StratumSession, community_id_of, flow_key

NS = 1_000_000_000
TCP = 6


@dataclass(frozen=True)
class ContactSettings:
    """Weights (0–1) of each kind of evidence and the threshold a contact must reach.

    The defaults are judgement, documented in docs/contacts.md with the reasoning; an
    operator can change any of them (``poolwatch scan --contact-setting NAME=VALUE``).
    """

    report_threshold: float = 0.5  # contacts scoring below are not reported
    dns_endpoint: float = 0.9  # pool name resolved, and the port is one the pool lists for it
    dns_other_port: float = 0.6  # pool name resolved, port not listed, not a web port
    dns_web_port: float = 0.15  # pool name resolved, web port: most likely the pool's web site
    sni_endpoint: float = 0.95  # the ClientHello named a pool host on one of its listed ports
    sni_other_port: float = 0.75
    sni_web_port: float = 0.2
    certificate: float = 0.85  # the server's certificate names a pool (not on a web port)
    certificate_web_port: float = 0.2
    ip_endpoint: float = 0.8  # a pool's listed address and port (fresh row)
    ip_other_port: float = 0.3  # a pool's listed address, another port
    ip_half_life_days: float = 365.0  # an address row's weight halves every this many days
    behaviour: float = 0.6  # times the behaviour model's own score: alone, it needs > 0.83
    # The behaviour weight is multiplied by these when the flow says what else it is:
    behaviour_named_other: float = 0.2  # its TLS ClientHello asked for a name, not a pool's
    behaviour_no_handshake: float = 0.2  # opening captured, and it is no TLS/Noise handshake
    stratum_v2: float = 0.9  # Noise handshake shape of Stratum V2
    stratum_v2_shares: float = 0.97  # ... and share-sized records from the miner
    stratum_v2_min_shares: float = 3  # how many share-sized records make the higher weight
    probe_pool: float = 0.97  # the endpoint answered a probe as a pool (a job, an extranonce)
    probe_pool_weak: float = 0.6  # ... only by turning down the probe's login in a pool dialect
    probe_not_pool_factor: float = 0.2  # it answered as something else: the score is multiplied
    web_ports: tuple[int, ...] = (80, 443, 8000, 8080, 8443)

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name in ("web_ports", "ip_half_life_days", "stratum_v2_min_shares"):
                continue
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"contact setting {f.name} must lie in [0, 1], got {value}")
        if self.ip_half_life_days <= 0:
            raise ValueError("contact setting ip_half_life_days must be positive")

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any]) -> ContactSettings:
        """Settings from NAME=VALUE pairs (CLI, config); unknown names are an error."""
        known = {f.name: f for f in fields(cls)}
        out: dict[str, Any] = {}
        for name, raw in values.items():
            if name not in known:
                raise ValueError(f"unknown contact setting {name!r} (known: {', '.join(known)})")
            if name == "web_ports":
                out[name] = tuple(int(p) for p in str(raw).replace(",", " ").split())
            else:
                try:
                    out[name] = float(raw)
                except ValueError:
                    raise ValueError(f"contact setting {name}: {raw!r} is not a number") from None
        return cls(**out)


class AddressIntel:
    """Pool addresses and prefixes of the fingerprints, longest prefix first."""

    def __init__(self, fp: Fingerprints, *, half_life_days: float = 365.0) -> None:
        self.half_life_days = half_life_days
        self._by_len: dict[int, dict[int, list[PoolAddress]]] = {}  # prefix length (of 128) -> network -> rows
        for row in fp.addresses.values():
            net = row.network
            length = net.prefixlen + (96 if net.version == 4 else 0)
            value = _as_v6_int(net.network_address)
            self._by_len.setdefault(length, {}).setdefault(value, []).append(row)
        self._lengths = sorted(self._by_len, reverse=True)

    def __bool__(self) -> bool:
        return bool(self._by_len)

    def mask(self, hi: np.ndarray, lo: np.ndarray) -> np.ndarray:
        """Which (hi, lo) addresses fall in any listed prefix (vectorised, exact)."""
        out = np.zeros(len(hi), bool)
        for length in self._lengths:
            nets = list(self._by_len[length])
            keep_hi = np.uint64(_ones(min(length, 64)) << (64 - min(length, 64)))
            low_bits = max(length - 64, 0)
            keep_lo = np.uint64(_ones(low_bits) << (64 - low_bits)) if low_bits else np.uint64(0)
            want_hi = np.array([n >> 64 for n in nets], np.uint64)
            want_lo = np.array([n & 0xFFFFFFFFFFFFFFFF for n in nets], np.uint64)
            h, lw = hi & keep_hi, lo & keep_lo
            out |= np.isin(h, want_hi) & np.isin(lw, want_lo)  # exact check follows in match()
        return out

    def match(self, ip: str) -> list[PoolAddress]:
        """The rows of the longest listed prefix holding ``ip``."""
        value = _as_v6_int(ipaddress.ip_address(ip))
        for length in self._lengths:
            rows = self._by_len[length].get(value & (_ones(length) << (128 - length)))
            if rows:
                return rows
        return []

    def freshness(self, row: PoolAddress, at_ns: int) -> float:
        """1 for a row last seen on or after the flow's day, halving every
        ``half_life_days`` before it: a 2018 capture is judged by 2018's intelligence."""
        day = datetime.datetime.fromtimestamp(at_ns / NS, datetime.UTC).date()
        age = max((day - row.last_seen).days, 0)
        return 0.5 ** (age / self.half_life_days)


def _tls_record(opening: bytes) -> bool:
    """A TLS handshake record header: content type 22, major version 3 (SSL 3.0 to TLS 1.3).
    One captured byte is given the benefit of the doubt."""
    return opening[:1] == b"\x16" and opening[1:2] in (b"", b"\x03")


def _ones(n: int) -> int:
    return (1 << n) - 1


def _as_v6_int(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> int:
    hi, lo = addr_to_halves(ip)
    return hi << 64 | lo


@dataclass(slots=True)
class _Evidence:
    """What is known about one flow, gathered as the scan goes."""

    client: tuple[str, int]
    server: tuple[str, int]
    first_ts: int
    last_ts: int
    capture: str | None = None
    tls: Any = None  # detect.tls.TlsInfo
    behaviour: Any = None  # detect.behaviour.BehaviourVerdict
    sv2: StratumSession | None = None
    flow: dict[str, int] | None = None  # packets and bytes each way, from the flow record
    reported_until: int | None = None  # streaming: end of the last interim report


class ContactJudge:
    """Collects evidence per flow during a scan; :meth:`finish` scores and reports.

    ``dns`` is the scan's :class:`~poolwatch.detect.dns.PassiveDns` (its ``preferred`` map
    holds the addresses pool names resolved to), ``probes`` the results of ``poolwatch probe``
    keyed by (address, port).
    """

    def __init__(self, fp: Fingerprints, settings: ContactSettings | None = None, *,
                 dns: Any = None, probes: Mapping[tuple[str, int], Any] | None = None) -> None:
        self.fp = fp
        self._is_pool_name = pool_name_matcher(fp)
        self.settings = settings or ContactSettings()
        self.dns = dns
        self.probes = dict(probes or {})
        self.intel = AddressIntel(fp, half_life_days=self.settings.ip_half_life_days)
        self._flows: dict[FlowKey, _Evidence] = {}
        self._sessions: set[FlowKey] = set()
        self._watch_lo: set[int] = set()  # low halves of addresses worth a look
        self._watch_arr = np.zeros(0, np.uint64)
        self._watched_dns = 0
        for ip, _port in self.probes:
            self._watch(ip)
        # streaming (a sensor): keys already decided, and when, so that late evidence for
        # them is not reported a second time; plaintext sessions' keys with their last time
        self._decided: dict[FlowKey, int] = {}
        self._session_seen_at: dict[FlowKey, int] = {}
        self.stats = dict.fromkeys(("flows_checked", "flows_kept", "contacts", "below_threshold",
                                    "merged_into_sessions", "late_evidence"), 0)

    # -- evidence in ------------------------------------------------------------------------

    def _watch(self, ip: str) -> None:
        lo = addr_to_halves(ip)[1]
        if lo not in self._watch_lo:
            self._watch_lo.add(lo)
            self._watch_arr = np.fromiter(self._watch_lo, np.uint64, len(self._watch_lo))

    def _sync_dns(self) -> None:
        """Addresses pool names resolved to since the last call join the watch list."""
        if self.dns is None:
            return
        learnt = self.dns.preferred
        if len(learnt) != self._watched_dns:  # new names (or evictions): few, rarely
            for ip in learnt:
                self._watch(ip)
            self._watched_dns = len(learnt)

    def closed_flows(self, flows: np.ndarray, capture: str | None = None) -> None:
        """FLOW records as the flow table closes them: TCP flows touching a watched address
        or a listed pool prefix are kept (numpy selects them; Python sees only those)."""
        self._sync_dns()
        if len(flows) == 0:
            return
        tcp = flows["proto"] == TCP
        pick = np.zeros(len(flows), bool)
        if len(self._watch_arr):
            pick |= np.isin(flows["dst_lo"], self._watch_arr) | np.isin(flows["src_lo"],
                                                                         self._watch_arr)
        if self.intel:
            pick |= self.intel.mask(flows["dst_hi"], flows["dst_lo"])
            pick |= self.intel.mask(flows["src_hi"], flows["src_lo"])
        idx = np.flatnonzero(pick & tcp)
        self.stats["flows_checked"] += len(idx)
        for row in flows[idx]:
            a = (int(row["src_hi"]), int(row["src_lo"]), int(row["src_port"]))
            b = (int(row["dst_hi"]), int(row["dst_lo"]), int(row["dest_port"]))
            key = flow_key(int(row["vlan"]), int(row["inner_vlan"]), TCP, a, b)
            ev = self._entry(key, a, b, int(row["first_ts_ns"]), int(row["last_ts_ns"]), capture)
            ev.flow = {name: int(row[name]) for name in ("pkts_toserver", "pkts_toclient",
                                                          "bytes_toserver", "bytes_toclient")}

    def tls_wanted(self, sni: str | None) -> bool:
        """For the TLS observer: read a handshake in full only when its SNI names a pool, or
        when it has none (the certificate may name one)."""
        return sni is None or self._pool_name(sni)

    def tls_seen(self, key: FlowKey, info: Any, capture: str | None = None) -> None:
        """A parsed TLS handshake (``detect.tls.TlsInfo``); kept when its names say pool."""
        names = [info.sni] if info.sni else []
        names += list(info.cert_names)
        if not any(self._pool_name(n) for n in names):
            return
        ev = self._entry(key, info.client, info.server, info.first_ts_ns, info.first_ts_ns,
                         capture)
        ev.tls = info

    def behaviour_seen(self, verdicts: Iterable[Any], capture: str | None = None) -> None:
        """Verdicts of the behaviour model (``detect.behaviour.BehaviourVerdict``)."""
        for v in verdicts:
            ev = self._entry(v.key, v.client, v.server, v.first_ts_ns, v.last_ts_ns, capture)
            ev.behaviour = v

    def session_seen(self, session: StratumSession) -> bool:
        """A session from the Stratum tracker. Plaintext ones suppress a contact for their
        flow; an encrypted one (Stratum V2 under Noise) becomes evidence: returns True when
        the session was taken as a contact and must not be reported as a session."""
        a = (*addr_to_halves(session.src_ip), session.src_port)
        b = (*addr_to_halves(session.dest_ip), session.dest_port)
        key = flow_key(int(session.evidence.get("vlan", 0) or 0), 0, TCP, a, b)
        if not session.evidence.get("encrypted"):
            self._sessions.add(key)
            self._session_seen_at[key] = max(session.last_seen,
                                             self._session_seen_at.get(key, 0))
            return False
        ev = self._entry(key, a, b, session.first_seen, session.last_seen,
                         session.evidence.get("capture"))
        ev.sv2 = session
        return True

    def _entry(self, key: FlowKey, client: tuple[int, int, int], server: tuple[int, int, int],
               first: int, last: int, capture: str | None) -> _Evidence:
        ev = self._flows.get(key)
        if ev is None and key in self._decided:
            # decided already (streaming): this is the tail of a reported flow; keep it out of
            # the report, in a throw-away entry
            self.stats["late_evidence"] += 1
            return _Evidence(("", 0), ("", 0), first, last, capture)
        if ev is None:
            ev = self._flows[key] = _Evidence(
                (halves_to_addr(client[0], client[1]), client[2]),
                (halves_to_addr(server[0], server[1]), server[2]), first, last, capture)
            self.stats["flows_kept"] += 1
        else:
            ev.first_ts, ev.last_ts = min(ev.first_ts, first), max(ev.last_ts, last)
            ev.capture = ev.capture or capture
        return ev

    # -- verdicts out -----------------------------------------------------------------------

    def finish(self) -> list[PoolContact]:
        """Every kept flow scored; contacts at or above the threshold, in time order."""
        self._sync_dns()
        out = []
        for key, ev in self._flows.items():
            contact = self._decide(key, ev)
            if contact is not None:
                out.append(contact)
        self._flows.clear()
        self.stats["contacts"] += len(out)
        out.sort(key=lambda c: (c.first_seen, c.src_ip, c.src_port))
        return out

    def report_open(self, every_ns: int) -> list[PoolContact]:
        """A sensor's interim reports: a flow still going whose evidence spans ``every_ns``
        since its last report is reported as it stands (``evidence["part"] = "interim"``);
        its next report starts where this one ended."""
        self._sync_dns()
        out = []
        for key, ev in self._flows.items():
            start = ev.first_ts if ev.reported_until is None else ev.reported_until
            if key in self._sessions or ev.last_ts - start < every_ns:
                continue
            contact = self._part(ev)
            if contact is not None:
                contact.evidence["part"] = "interim"
                out.append(contact)
                ev.reported_until = ev.last_ts
        self.stats["contacts"] += len(out)
        return out

    def _decide(self, key: FlowKey, ev: _Evidence) -> PoolContact | None:
        """The final verdict on one flow (from its last interim report on, if any)."""
        if key in self._sessions:
            self.stats["merged_into_sessions"] += 1
            return None
        contact = self._judge(ev)
        if contact is None:
            return None
        if contact.score < self.settings.report_threshold:
            self.stats["below_threshold"] += 1
            return None
        return contact if ev.reported_until is None else self._part(ev)

    def _part(self, ev: _Evidence) -> PoolContact | None:
        """The verdict on ``ev`` for the time since its last interim report (the evidence
        is judged whole: a pool name seen at the start still counts)."""
        contact = self._judge(ev)
        if contact is None or contact.score < self.settings.report_threshold:
            return None
        if ev.reported_until is not None:
            if ev.last_ts <= ev.reported_until:
                return None  # nothing since the last report
            contact = replace(contact, timestamp=ev.reported_until,
                              first_seen=ev.reported_until)
        return contact

    def pending(self) -> Iterable[tuple[FlowKey, int]]:
        """(key, last evidence time) of every flow waiting for a verdict (streaming)."""
        return ((key, ev.last_ts) for key, ev in self._flows.items())

    def settle(self, keys: Iterable[FlowKey], now_ns: int, forget_ns: int) -> list[PoolContact]:
        """Streaming: score the flows ``keys`` now, as :meth:`finish` would, and forget them.

        The caller (``scan.DetectionPipeline``) picks flows that every detector has let go
        of. Their keys are remembered for ``forget_ns`` so that evidence arriving later for
        the same flow is counted (``late_evidence``), not reported again; plaintext session
        keys are forgotten after the same time.
        """
        self._sync_dns()
        out = []
        for key in keys:
            ev = self._flows.pop(key, None)
            if ev is None:
                continue
            self._decided[key] = max(ev.last_ts, now_ns)
            contact = self._decide(key, ev)
            if contact is not None:
                out.append(contact)
        horizon = now_ns - forget_ns
        for memo in (self._decided, self._session_seen_at):
            for key in [k for k, t in memo.items() if t < horizon]:
                del memo[key]
                if memo is self._session_seen_at:
                    self._sessions.discard(key)
        self.stats["contacts"] += len(out)
        out.sort(key=lambda c: (c.first_seen, c.src_ip, c.src_port))
        return out

    def _pool_name(self, name: str | None) -> bool:
        # cached per name: asked for the server name of every TLS ClientHello, mostly the
        # same few names (14 µs a question uncached: a tenth of a default scan's time)
        return bool(name) and self._is_pool_name(name)

    def _pool_of(self, host: str, port: int) -> tuple[str | None, bool]:
        """(pool id, whether ``port`` is one the fingerprints list for ``host``)."""
        endpoints = self.fp.endpoints_for(host, port)
        if endpoints:
            return endpoints[0].pool, True
        any_port = self.fp.endpoints_for(host)
        if any_port:
            return any_port[0].pool, False
        domain = self.fp.match_domain(host)
        return (domain.pools[0] if domain and len(domain.pools) == 1 else None), False

    def _judge(self, ev: _Evidence) -> PoolContact | None:
        s = self.settings
        client, server = ev.client, ev.server
        weights: list[tuple[str, float, str]] = []  # (via, weight, reason)
        evidence: dict[str, Any] = {}
        pool: str | None = None
        pool_host: str | None = None
        web = server[1] in s.web_ports

        # which side is the pool: the one a pool name resolved to, else the flow's server
        if self.dns is not None:
            for side in (server, client):
                names = self.dns.lookup(side[0], ev.first_ts)
                name = next((n.name for n in names
                             if any(self._pool_name(x) for x in (n.name, *n.chain))), None)
                if name is None:
                    continue
                if side is client:
                    client, server = server, client
                    web = server[1] in s.web_ports
                pool_host = name
                pool, listed = self._pool_of(name, server[1])
                w = s.dns_endpoint if listed else (s.dns_web_port if web else s.dns_other_port)
                how = ("a port the pool lists for it" if listed else
                       "a web port: more likely the pool's web site" if web else
                       "a port the fingerprints do not list for it")
                weights.append(("dns", w, (f"DNS in the capture resolved {name} to {server[0]} "
                                          f"(valid at the flow's start); port {server[1]} is {how}"
                                          f" (weight {w:.2f})")))
                evidence["dns_name"] = name
                break

        tls = ev.tls
        if tls is not None:
            if tls.sni and self._pool_name(tls.sni):
                p, listed = self._pool_of(tls.sni, server[1])
                pool, pool_host = pool or p, pool_host or tls.sni
                w = s.sni_endpoint if listed else (s.sni_web_port if web else s.sni_other_port)
                weights.append(("sni", w, (f"TLS ClientHello asked for {tls.sni} on port "
                                          f"{server[1]}{' (listed)' if listed else ''} "
                                          f"(weight {w:.2f})")))
            pooled = [n for n in tls.cert_names if self._pool_name(n)]
            if pooled:
                w = s.certificate_web_port if web else s.certificate
                pool = pool or self._pool_of(pooled[0], server[1])[0]
                pool_host = pool_host or pooled[0]
                weights.append(("certificate", w, (f"the server's certificate names "
                                                  f"{', '.join(pooled[:3])} (weight {w:.2f})")))
            evidence["tls"] = {"sni": tls.sni, "alpn": list(tls.alpn), "ja3": tls.ja3,
                               "ja4": tls.ja4, "cert_names": list(tls.cert_names[:8])}

        rows = self.intel.match(server[0]) if self.intel else []
        if not rows and self.intel and self.intel.match(client[0]):
            client, server = server, client
            rows = self.intel.match(server[0])
            web = server[1] in s.web_ports
        if rows:
            row = next((r for r in rows if not r.ports or server[1] in r.ports), rows[0])
            listed = not row.ports or server[1] in row.ports
            fresh = self.intel.freshness(row, ev.first_ts)
            w = (s.ip_endpoint if listed else s.ip_other_port) * fresh
            if "shared-hosting" in row.flags:
                w *= 0.5
            pool = pool or row.pool
            weights.append(("ip", w, (f"{server[0]} is listed for {row.pool} ({row.prefix}, "
                                     f"last seen {row.last_seen.isoformat()}, freshness "
                                     f"{fresh:.2f} at the flow's date); port {server[1]} "
                                     f"{'listed' if listed else 'not listed'} (weight {w:.2f})")))

        if ev.sv2 is not None:
            hs = ev.sv2.evidence.get("handshake_bytes")
            fixed = ev.sv2.evidence.get("fixed_size_records") or {}
            shares = [f"{v['records']} of {name} ({v['record_bytes']} B)"
                      for name, v in fixed.items() if v["records"]]
            submitted = sum(v["records"] for name, v in fixed.items() if "Submit" in name)
            w = s.stratum_v2_shares if submitted >= s.stratum_v2_min_shares else s.stratum_v2
            seen = (f"; records the size of encrypted {', '.join(shares)}" if shares else
                    "; no records the size of an encrypted share")
            weights.append(("stratum-v2", w, (f"Stratum V2 Noise handshake shape (client/server "
                                             f"first payloads {hs} bytes, then AEAD records)"
                                             f"{seen} (weight {w:.2f})")))
            evidence["stratum_v2"] = {k: ev.sv2.evidence[k] for k in
                                      ("handshake_bytes", "records", "fixed_size_records")
                                      if k in ev.sv2.evidence}
            pool = pool or ev.sv2.pool
            pool_host = pool_host or ev.sv2.pool_host

        if ev.behaviour is not None:
            v = ev.behaviour
            w = s.behaviour * float(v.score)
            caveat = ""
            if v.server_name:
                w *= s.behaviour_named_other
                caveat = (f"; but its TLS ClientHello asked for {v.server_name}, not a pool "
                          f"name (x {s.behaviour_named_other:g})")
                evidence["tls_server_name"] = v.server_name
            elif v.opening is not None and ev.sv2 is None and ev.tls is None \
                    and not _tls_record(v.opening):
                w *= s.behaviour_no_handshake
                caveat = (f"; but the connection's opening was captured and begins with "
                          f"{v.opening.hex(' ') or 'nothing captured'}: neither a TLS nor a "
                          f"Stratum V2 Noise handshake, which encrypted mining begins with, and "
                          f"plaintext mining would have been read as Stratum "
                          f"(x {s.behaviour_no_handshake:g})")
            if v.opening is not None:
                evidence["opening_hex"] = v.opening.hex()
            weights.append(("behaviour", w, (f"behaviour model score {v.score:.2f} "
                                            f"(weight {w:.2f}{caveat}): "
                                            + "; ".join(v.reasons))))
            evidence["behaviour_features"] = dict(v.features)

        factor = 1.0
        probe = self.probes.get(server)
        if probe is not None:
            evidence["probe"] = {"verdict": probe.verdict, "dialect": probe.dialect,
                                 "tls": probe.tls, "checked_at_ns": probe.checked_at_ns}
            if probe.verdict == "pool":
                weak = (probe.evidence or {}).get("strength") == "weak"
                w = s.probe_pool_weak if weak else s.probe_pool
                how = "only by turning down its login" if weak else "with pool messages"
                dialect = f" ({probe.dialect})" if probe.dialect else ""
                weights.append(("probe", w, (f"a probe of {server[0]}:{server[1]} was answered "
                                             f"as a pool{dialect}, {how} (weight {w:.2f})")))
            elif probe.verdict == "not-pool":
                factor = s.probe_not_pool_factor
        if not weights:
            return None
        keep = 1.0
        for _, w, _ in weights:
            keep *= 1.0 - w
        score = (1.0 - keep) * factor
        reasons = [r for _, _, r in weights]
        if factor != 1.0:
            reasons.append(f"a probe of {server[0]}:{server[1]} was answered, but not as a pool:"
                           f" score × {factor:.2f}")
        via = tuple(dict.fromkeys(v for v, _, _ in weights))
        if ev.capture:
            evidence["capture"] = ev.capture
        if ev.flow:
            evidence["flow"] = ev.flow
        if tls is not None and tls.frames:
            evidence["frames"] = list(tls.frames)
        (src, sport), (dst, dport) = client, server
        return PoolContact(
            timestamp=ev.first_ts, src_ip=src, src_port=sport, dest_ip=dst, dest_port=dport,
            community_id=community_id_of(src, sport, dst, dport), first_seen=ev.first_ts,
            last_seen=ev.last_ts, via=via, pool=pool, pool_host=pool_host,
            tls=tls is not None, ja4=tls.ja4 if tls is not None else None,
            score=round(score, 4), reasons=tuple(reasons), evidence=evidence)
