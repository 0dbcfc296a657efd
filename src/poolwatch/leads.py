"""Leads: the detections of a scan tied to the entities behind them, one record per entity.

A session says "203.0.113.9 mined to pool X at 14:02"; a lead says "Qingshan Data Services,
registration number Z, at address W, ran two miners drawing about 6.5 kW this week". The
steps: each detection's miner address, source port and first-seen time go through the
resolver (``link.resolve``: static assignments, RADIUS, DHCP, CGNAT); linked detections
gather under their entity, the rest under their source address as *unattributed* (with
why); then the lead's figures are computed from its detections (docs/leads.md).
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from .link.times import iso

if TYPE_CHECKING:  # names for annotations only: the ISP loaders cost a scan 50 ms to import
    from .link.inputs import IspRecords
    from .link.model import MeterReading, Subscriber
    from .link.resolve import Link, Resolver

EVENT_TYPE = "lead"
DAY = 86400.0
WEEK = 7 * DAY
DORMANT_WEEKS = 4  # not seen for this many weeks: gone
DATACENTRE_WORKERS = 10  # this many distinct workers (or concurrent sessions) look like a farm
DATACENTRE_POWER_W = 50_000.0

# Column kinds for the writers (as the detectors' KINDS).
KINDS: dict[str, str] = {
    "first_seen": "time", "last_seen": "time", "sessions": "int", "contacts": "int",
    "hashrate_hs": "float", "hashrate_hs_low": "float", "hashrate_hs_high": "float",
    "power_w": "float", "power_w_low": "float", "power_w_high": "float",
    "energy_kwh_per_day": "float", "confidence": "float", "meter_ratio": "float",
    "datacenter": "bool", "subscriber_ids": "json", "src_ips": "json", "pools": "json",
    "coins": "json", "wallets": "json", "workers": "json", "reasons": "json",
    "evidence": "json", "candidates": "json",
}
FIELDS = ("lead_id", "entity_id", "entity_name", "entity_type", "registration_number",
          "address", "region", "subscriber_ids", "src_ips", "sessions", "contacts", "pools",
          "coins", "wallets", "workers", "hashrate_hs", "hashrate_hs_low", "hashrate_hs_high",
          "power_w", "power_w_low", "power_w_high", "energy_kwh_per_day", "first_seen",
          "last_seen", "status", "status_change", "confidence", "reasons", "datacenter",
          "meter_ratio", "candidates", "evidence")


def _seconds(value: Any) -> float | None:
    """Detection times: integer ns (library records) or ISO 8601 text (JSON lines)."""
    if value is None:
        return None
    if isinstance(value, (int, float)):
        return float(value) / 1e9 if value > 1e12 else float(value)
    moment = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.timestamp()


@dataclass(slots=True)
class Detection:
    """One session or contact, as the lead builder needs it."""

    kind: str  # "stratum_session" or "pool_contact"
    src_ip: str
    src_port: int | None
    first_seen: float
    last_seen: float
    record: dict[str, Any]
    confidence: float  # 1 for a plaintext session, the contact's score otherwise
    link: Link | None = None

    @classmethod
    def of(cls, record: Any) -> Detection:
        d = record if isinstance(record, Mapping) else record.as_dict()
        kind = d.get("event_type", "stratum_session")
        first = _seconds(d.get("first_seen") or d.get("timestamp"))
        last = _seconds(d.get("last_seen")) or first
        if first is None or not d.get("src_ip"):
            raise ValueError("a detection needs src_ip and first_seen")
        score = 1.0 if kind == "stratum_session" else float(d.get("score") or 0.0)
        return cls(kind, str(d["src_ip"]), d.get("src_port"), first, last, dict(d), score)


@dataclass(slots=True)
class _Group:
    key: str
    entity: Subscriber | None
    detections: list[Detection] = field(default_factory=list)
    subscribers: dict[str, None] = field(default_factory=dict)
    why_unattributed: list[str] = field(default_factory=list)
    candidates: list[dict[str, Any]] = field(default_factory=list)


def link_detections(detections: list[Detection], resolver: Resolver) -> None:
    """Each detection's miner address, port and first-seen time through the resolver."""
    if not detections:
        return
    links = resolver.resolve([d.src_ip for d in detections],
                             [d.src_port for d in detections],
                             [d.first_seen for d in detections])
    for d, link in zip(detections, links):
        d.link = link


def link_fields(link: Link | None) -> dict[str, Any]:
    """The fields ``scan --subscribers`` adds to each detection record."""
    if link is None:
        return {}
    best = max(link.candidates, key=lambda c: c.confidence, default=None)
    single = link.status == "linked" and best is not None
    return {
        "link_status": link.status,
        "subscriber_id": best.subscriber_id if single else None,
        "entity_id": best.entity_id if single else None,
        "link_confidence": round(link.confidence, 4),
        "link_reasons": link_reasons(link),
        "link_candidates": [_candidate(c) for c in link.candidates],
    }


def link_reasons(link: Link) -> list[str]:
    """The resolver's reasons, led by what each candidate record says."""
    said = [f"{c.source} record {c.origin or ''}: {c.network} held by {c.identity_kind} "
            f"{c.identity} from {iso(c.start)} to {iso(c.end) or 'open end'}"
            + (f", through CGNAT to {c.via_cgnat}" if c.via_cgnat else "")
            for c in link.candidates]
    return said + list(link.reasons)


def _candidate(c) -> dict[str, Any]:
    return {"subscriber_id": c.subscriber_id, "entity_id": c.entity_id,
            "identity": f"{c.identity_kind}:{c.identity}", "source": c.source,
            "record": str(c.origin) if c.origin else None, "network": c.network,
            "from": iso(c.start), "to": iso(c.end), "via_cgnat": c.via_cgnat,
            "confidence": round(c.confidence, 4)}


def build_leads(records: Iterable[Any], isp: IspRecords, *, week_start: float | None = None,
                resolver: Resolver | None = None) -> list[dict[str, Any]]:
    """Lead records (dicts in ``FIELDS`` order) for sessions and contacts.

    ``week_start`` (seconds, UTC) is the start of the reporting week; by default the Monday
    00:00 UTC of the week of the latest detection.
    """
    detections = [Detection.of(r) for r in records]
    resolver = resolver or isp.resolver()
    link_detections(detections, resolver)
    if week_start is None:
        latest = max((d.last_seen for d in detections), default=0.0)
        day = datetime.fromtimestamp(latest, timezone.utc).date()
        monday = day.toordinal() - day.weekday()
        week_start = datetime.fromordinal(monday).replace(tzinfo=timezone.utc).timestamp()
    by_subscriber = {s.subscriber_id: s for s in isp.subscribers}
    groups: dict[str, _Group] = {}
    for d in detections:
        link = d.link
        subs = link.subscriber_ids if link else ()
        entities = {c.entity_id for c in link.candidates} if link else set()
        if link and link.status == "linked" and len(entities) == 1 and None not in entities:
            sub = by_subscriber.get(subs[0])
            g = groups.setdefault(f"entity:{sub.entity_id}", _Group(f"entity:{sub.entity_id}",
                                                                      sub))
            g.subscribers.update(dict.fromkeys(s for s in subs if s))
        else:
            g = groups.setdefault(f"ip:{d.src_ip}", _Group(f"ip:{d.src_ip}", None))
            why = ("; ".join(link.reasons) if link else "no ISP records given")
            if link and link.status == "ambiguous":
                why = "ambiguous: " + why
            if why not in g.why_unattributed:
                g.why_unattributed.append(why)
            if link:
                g.candidates += [c for c in map(_candidate, link.candidates)
                                 if c not in g.candidates]
        g.detections.append(d)
    meters = _meters_by_entity(isp.meters, isp.subscribers)
    leads = [_lead(g, week_start, meters) for g in groups.values()]
    leads.sort(key=lambda lead: (-(lead["power_w"] or 0.0), lead["lead_id"]))
    return leads


def _meters_by_entity(readings: list[MeterReading],
                      subscribers: list[Subscriber]) -> dict[str, list[MeterReading]]:
    meter_owner: dict[str, str] = {}
    for s in subscribers:
        for key, value in s.extra.items():
            if key.lower().replace(" ", "_") in ("meter_id", "meter") and value:
                meter_owner[value] = s.entity_id
    out: dict[str, list[MeterReading]] = {}
    for m in readings:
        owner = m.entity_id or meter_owner.get(m.meter_id or "")
        if owner:
            out.setdefault(owner, []).append(m)
    return out


def _time_weighted(intervals: list[tuple[float, float, float]]) -> float | None:
    """Σ of values of the intervals active at each moment, averaged over the time at least
    one is active: concurrent miners add up, one miner seen twice does not. A sweep over
    the sorted interval ends (n log n: a data centre has thousands of sessions)."""
    if not intervals:
        return None
    events = sorted([(a, v, 1) for a, b, v in intervals if b > a]
                    + [(b, -v, -1) for a, b, v in intervals if b > a])
    if not events:  # instantaneous only: the concurrent sum at that instant
        return sum(v for _, _, v in intervals)
    area = span = 0.0
    level, active = 0.0, 0
    prev = events[0][0]
    for t, dv, dn in events:
        if t > prev and active > 0:
            area += level * (t - prev)
            span += t - prev
        prev = t
        level += dv
        active += dn
    return area / span if span else sum(v for _, _, v in intervals)


def _status(first: float, last: float, week_start: float) -> str:
    """new / active / dormant / gone for the week starting at ``week_start``; "none" before
    the lead was first seen."""
    week_end = week_start + WEEK
    if first >= week_end:
        return "none"
    if last >= week_start:
        return "new" if first >= week_start else "active"
    if last >= week_start - DORMANT_WEEKS * WEEK:
        return "dormant"
    return "gone"


def _lead(g: _Group, week_start: float, meters: dict[str, list[MeterReading]]) -> dict:
    dets = g.detections
    sessions = [d for d in dets if d.kind == "stratum_session"]
    contacts = [d for d in dets if d.kind == "pool_contact"]
    first = min(d.first_seen for d in dets)
    last = max(d.last_seen for d in dets)
    ips: dict[str, list[list[str | None]]] = {}
    for d in sorted(dets, key=lambda d: d.first_seen):
        ips.setdefault(d.src_ip, []).append([iso(d.first_seen), iso(d.last_seen)])
    distinct = lambda name: sorted({str(d.record[name]) for d in dets  # noqa: E731
                                    if d.record.get(name)})
    workers = sorted({w for d in sessions for w in (d.record.get("workers") or
                                                    [d.record.get("worker")]) if w})
    reasons: list[str] = []
    figures: dict[str, float | None] = {}
    for name in ("hashrate_hs", "hashrate_hs_low", "hashrate_hs_high", "power_w",
                 "power_w_low", "power_w_high"):
        figures[name] = _time_weighted([(d.first_seen, d.last_seen, float(d.record[name]))
                                        for d in sessions if d.record.get(name) is not None])
    without = sum(1 for d in sessions if d.record.get("hashrate_hs") is None)
    if without:
        reasons.append(f"{without} session(s) without a hashrate (algorithm unknown or "
                       "encrypted) are not in the totals")
    if contacts:
        reasons.append(f"{len(contacts)} pool contact(s): mining without readable shares, "
                       "no hashrate from them")
    power = figures["power_w"]
    energy = None if power is None else power * 24 / 1000
    if energy is not None:
        reasons.append("energy per day assumes the estimated draw runs all day, as mining "
                       "farms do")
    # confidence: noisy-OR over detections of (detection confidence x link confidence)
    miss = 1.0
    for d in dets:
        miss *= 1 - d.confidence * (d.link.confidence if d.link else 0.0)
    confidence = 1 - miss if g.entity is not None else 0.0
    who: list[str] = []  # first: who this is, and why poolwatch says so
    if g.entity is not None:
        links = [d.link for d in dets if d.link]
        who.append(f"{len(dets)} detection(s) linked to {g.entity.entity_name} "
                   f"(best link {max(lk.confidence for lk in links):.2f})")
        who += list(dict.fromkeys(r for lk in links for r in link_reasons(lk)))[:6]
    else:
        who += [f"unattributed: {w}" for w in g.why_unattributed] or ["unattributed"]
    reasons = who + reasons
    # data centre: the registry says so, or the lead looks like a farm
    etype = g.entity.entity_type if g.entity else None
    concurrent = _time_weighted([(d.first_seen, d.last_seen, 1.0) for d in sessions]) or 0.0
    datacenter = etype == "datacentre"
    if datacenter:
        reasons.append("data centre: the registry's entity type")
    elif len(workers) >= DATACENTRE_WORKERS or concurrent >= DATACENTRE_WORKERS:
        datacenter = True
        reasons.append(f"data-centre scale: {len(workers)} workers, about {concurrent:.0f} "
                       "concurrent sessions")
    elif power is not None and power >= DATACENTRE_POWER_W:
        datacenter = True
        reasons.append(f"data-centre scale: about {power / 1000:.0f} kW")
    meter_ratio = None
    if g.entity is not None and power is not None:
        # the readings' share of the reporting week (a monthly reading counts pro rata)
        metered = hours = 0.0
        for m in meters.get(g.entity.entity_id, []):
            overlap = min(m.end, week_start + WEEK) - max(m.start, week_start)
            if overlap > 0 and m.end > m.start:
                metered += m.kwh * overlap / (m.end - m.start)
                hours += overlap / 3600
        if metered > 0 and hours > 0:
            meter_ratio = round(power * hours / 1000 / metered, 4)
            reasons.append(f"meter: {metered:,.0f} kWh metered over {hours:.0f} h of the "
                           f"reporting week (pro rata); the "
                           f"estimated draw would use {power * hours / 1000:,.0f} kWh "
                           f"(ratio {meter_ratio:.2f})")
    status = _status(first, last, week_start)
    before = _status(first, last, week_start - WEEK)
    change = "unchanged" if before == status else f"{before}->{status}"
    ent = g.entity
    key = g.key
    lead = {
        "event_type": EVENT_TYPE,
        "lead_id": hashlib.sha256(key.encode()).hexdigest()[:16],
        "entity_id": ent.entity_id if ent else None,
        "entity_name": ent.entity_name if ent else None,
        "entity_type": etype,
        "registration_number": ent.registration_number if ent else None,
        "address": ent.address if ent else None,
        "region": ent.region if ent else None,
        "subscriber_ids": list(g.subscribers),
        "src_ips": [{"ip": ip, "windows": w} for ip, w in ips.items()],
        "sessions": len(sessions),
        "contacts": len(contacts),
        "pools": distinct("pool") or distinct("pool_host"),
        "coins": distinct("coin"),
        "wallets": distinct("wallet"),
        "workers": workers,
        **{k: (None if v is None else round(v, 3)) for k, v in figures.items()},
        "energy_kwh_per_day": None if energy is None else round(energy, 3),
        "first_seen": round(first * 1e9),
        "last_seen": round(last * 1e9),
        "status": status,
        "status_change": change,
        "confidence": round(confidence, 4),
        "reasons": reasons,
        "datacenter": datacenter,
        "meter_ratio": meter_ratio,
        "candidates": g.candidates,
        "evidence": [_evidence(d) for d in dets],
    }
    if math.isnan(lead["confidence"]):
        lead["confidence"] = 0.0
    return lead


def _evidence(d: Detection) -> dict[str, Any]:
    r, ev = d.record, d.record.get("evidence") or {}
    out = {"event_type": d.kind, "community_id": r.get("community_id"),
           "src": f"{r.get('src_ip')}:{r.get('src_port')}",
           "dest": f"{r.get('dest_ip')}:{r.get('dest_port')}",
           "first_seen": iso(d.first_seen), "last_seen": iso(d.last_seen),
           "capture": ev.get("capture"), "capture_sha256": ev.get("capture_sha256"),
           "frames": (ev.get("frames") or [])[:8]}
    if d.link is not None:
        out["link"] = {"status": d.link.status, "confidence": round(d.link.confidence, 4),
                       "reasons": list(d.link.reasons)}
    return out
