"""The investigators' lead API: FastAPI over the lead store, keys with scopes, an audit trail.

Scopes (``poolwatch keys create --scope``): ``sensor`` may only ingest; ``analyst`` reads leads
with personal data redacted (entity names, addresses, subscriber ids, registration numbers);
``investigator`` reads them in full, and every such read is written to the append-only audit
log; ``admin`` also manages keys and reads the audit log. A missing, unknown or revoked key
is 401 and a key without the scope 403, both before anything is looked up, so neither says
whether a lead exists. Query parameters are pydantic models that forbid unknown names: a
misspelt filter is a 422 with its name, never silently ignored.

The OpenAPI schema documents every operation with examples (parameters, bodies, answers and
errors). They are real: the answers of a store built from the synthetic ISP in ``pcaps/isp``
(docs/api.md), so "Try it out" in ``/docs`` works against that store. Response models below
describe what the store returns; they are documentation only (``responses=``), the routes
return the store's dicts as they are.
"""

import functools
import io
import json
import re
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

import orjson
from fastapi import Body, FastAPI, Header, HTTPException, Path, Query, Request, Response, Security
from fastapi.responses import JSONResponse, PlainTextResponse
from fastapi.security import APIKeyHeader, SecurityScopes
from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field

from poolwatch import __version__
from poolwatch.errors import PoolwatchError
from poolwatch.store import LEAD_JSON_FIELDS

from .examples import (
    AUDIT_CURSOR,
    METRICS_EXAMPLE,
    LEADS_NEXT_CURSOR,
    SESSIONS_NEXT_CURSOR,
    AUDIT_EXAMPLE,
    SESSION_EXAMPLE,
    INGEST_RECORDS_EXAMPLE,
    CONTACT_EXAMPLE,
    LEAD_EXAMPLE,
    ENTITY_EXAMPLE,
    WHO_HELD_EXAMPLE,
    WEEKLY_EXAMPLE,
    STIX_EXAMPLE,
)

API_PREFIX = "/v1"
MAX_PAGE = 500
MAX_BODY_BYTES = 8 * 1024 * 1024  # an ingest batch larger than this is refused (413)
PERSONAL = ("entity_name", "registration_number", "address", "subscriber_ids")
REDACTED = "[redacted]"
# A lead's JSON fields that a list page passes on as stored (the store leaves them as text):
# for analysts those that redaction neither reads nor changes.
PASSED_ON_ANALYST = frozenset({"src_ips", "pools", "coins", "workers"})
PASSED_ON_INVESTIGATOR = LEAD_JSON_FIELDS
# Which scopes a key's scope grants: admin > investigator > analyst; sensor stands apart.
GRANTS = {
    "sensor": {"sensor"},
    "analyst": {"analyst"},
    "investigator": {"analyst", "investigator"},
    "admin": {"analyst", "investigator", "admin", "sensor"},
}
# The operation's scope, in the OpenAPI schema too (tests/test_api_examples.py reads it).
SCOPE_EXTENSION = "x-poolwatch-scope"

TAGS = [
    {"name": "leads", "description": "Weekly leads (one per entity, or per address when no "
     "subscriber could be named), the registry's entities, who held an address at a moment, "
     "and the week in figures. Analysts see personal data redacted; investigators see it in "
     "full and every such read is audited."},
    {"name": "detections", "description": "The evidence leads are built from: Stratum "
     "sessions (who mined, to which pool, at what hashrate) and pool contacts (connections "
     "to known pools without readable shares, e.g. TLS), with the link to the subscriber."},
    {"name": "exports", "description": "Leads as JSON lines, CSV or a STIX 2.1 bundle for "
     "other tools, and a session's packets cut from its capture as evidence (pcap)."},
    {"name": "sensors", "description": "Edge sensors push detection records (as "
     "`poolwatch scan -f jsonl` writes them); retries are safe with an Idempotency-Key."},
    {"name": "admin", "description": "API keys and the append-only audit log."},
    {"name": "service", "description": "Liveness and Prometheus metrics; no key needed."},
]


# --------------------------------------------------------------------- response models
# Documentation only: routes name them in ``responses=`` (never ``response_model``), so an
# answer is the store's dict as it is, and schemathesis checks that it matches.
class Problem(BaseModel):
    """An error: ``detail`` says what was wrong (401, 403, 404, 400, 413, 429)."""

    detail: str = Field(description="what was wrong, in one sentence")


class ValidationIssue(BaseModel):
    """One reason a request was refused (pydantic's error, as FastAPI sends it)."""

    type: str = Field(description="the kind of error, e.g. `extra_forbidden`, `missing`")
    loc: list[str | int] = Field(description="where: `query`/`path`/`header`/`body`, then "
                                             "the name (and index)")
    msg: str
    input: Any = Field(None, description="the value refused")
    ctx: dict[str, Any] | None = Field(None, description="the constraint that failed")


class ValidationProblem(BaseModel):
    """422: a parameter or the body does not match the schema (unknown names included)."""

    detail: list[ValidationIssue]


class Health(BaseModel):
    model_config = ConfigDict(extra="forbid")

    status: Literal["ok"]
    version: str = Field(description="poolwatch's version")
    schema_: str | None = Field(alias="schema", description="the store's schema revision "
                                                            "(Alembic)")


class SourceAddress(BaseModel):
    model_config = ConfigDict(extra="forbid")

    ip: str
    windows: list[list[str | None]] = Field(description="[first seen, last seen] (ISO 8601, "
                                                        "UTC) of each detection from it")


class LinkCandidate(BaseModel):
    """An ISP record that may name who held the address (analysts: ``subscriber_id`` and
    ``identity`` redacted)."""

    model_config = ConfigDict(extra="forbid")

    subscriber_id: str | None
    entity_id: str | None
    identity: str = Field(description="`kind:value`, e.g. `user:liwei88`, `mac:…`")
    source: str = Field(description="the record kind: static, radius, dhcp, cgnat…")
    record: str | None = Field(description="file:line of the record")
    network: str
    from_: str | None = Field(alias="from", description="assignment start (ISO 8601)")
    to: str | None = Field(description="assignment end (ISO 8601); null: still open")
    via_cgnat: str | None = Field(description="the private address behind CGNAT, if any")
    confidence: float


class EvidenceLink(BaseModel):
    model_config = ConfigDict(extra="forbid")

    status: Literal["linked", "ambiguous", "unlinked"]
    confidence: float
    reasons: list[str]


class LeadEvidence(BaseModel):
    """A detection behind a lead, with where to find its packets."""

    model_config = ConfigDict(extra="forbid")

    event_type: Literal["stratum_session", "pool_contact"]
    community_id: str | None
    src: str = Field(description="miner address:port")
    dest: str = Field(description="pool address:port")
    first_seen: str | None = Field(description="ISO 8601, UTC")
    last_seen: str | None = Field(description="ISO 8601, UTC")
    capture: str | None = Field(description="the capture file as the scan named it")
    capture_sha256: str | None
    frames: list[int] = Field(description="the first frame numbers (1-based) of its packets")
    link: EvidenceLink | None = Field(None, description="how it was linked (absent: not "
                                                        "looked up)")


class Lead(BaseModel):
    """One lead of one reporting week: an entity (or an unattributed address) that mined,
    with its estimated hashrate and power (time-weighted over concurrent sessions, with a
    95 % interval), status in the week, confidence and the reasons for all of it. For
    analysts ``entity_name``, ``registration_number`` and ``address`` are `[redacted]`,
    ``subscriber_ids`` and ``wallets`` are empty, and inside reasons the personal token
    (user, subscriber, MAC, entity…) is `[redacted]`, the rest of the reason kept. Times in integer
    nanoseconds since 1970 (UTC) unless said otherwise."""

    model_config = ConfigDict(extra="forbid")

    event_type: Literal["lead"]
    lead_id: str = Field(description="stable across weeks: the same entity keeps its id")
    entity_id: str | None = Field(description="the registry's entity; null: unattributed")
    entity_name: str | None
    entity_type: str | None = Field(description="residential, enterprise, datacentre, …")
    registration_number: str | None
    address: str | None = Field(description="postal address from the registry")
    region: str | None
    subscriber_ids: list[str]
    src_ips: list[SourceAddress]
    sessions: int = Field(description="Stratum sessions in the week")
    contacts: int = Field(description="pool contacts in the week")
    pools: list[str]
    coins: list[str]
    wallets: list[str]
    workers: list[str]
    hashrate_hs: float | None = Field(description="hashes per second; null: no session had "
                                                  "readable shares")
    hashrate_hs_low: float | None
    hashrate_hs_high: float | None
    power_w: float | None = Field(description="estimated draw in watts")
    power_w_low: float | None
    power_w_high: float | None
    energy_kwh_per_day: float | None
    first_seen: int
    last_seen: int
    status: Literal["new", "active", "dormant", "gone", "none"] = Field(
        description="in the week: new (first seen in it), active, dormant (quiet for up to "
                    "four weeks), gone; none: first seen after the week")
    status_change: str | None = Field(description="e.g. `none->new`, `unchanged`")
    confidence: float = Field(description="0-1: detections' confidence times their links'")
    reasons: list[str]
    datacenter: bool
    meter_ratio: float | None = Field(description="estimated / metered energy over the week")
    candidates: list[LinkCandidate] = Field(description="for an unattributed lead: who may "
                                                        "have held the address")
    evidence: list[LeadEvidence] | None = Field(None, description=(
        "the detections behind the lead; left out of list pages unless `evidence=true`"))
    week_start: int = Field(description="the reporting week's Monday 00:00 UTC, ns")
    computed_at: int


class LeadPage(BaseModel):
    model_config = ConfigDict(extra="forbid")

    items: list[Lead]
    next_cursor: str | None = Field(description="pass as `cursor` for the next page; null "
                                                "at the end")


class Detection(BaseModel):
    """A stored session or pool contact: the record as the sensor or scan sent it (times as
    integer nanoseconds; field list in docs/records.md), plus what the store adds. Analysts
    do not get ``login``, ``wallet`` and ``subscriber_id``, and those and the worker names
    are `[redacted]` inside ``evidence`` (the Stratum lines quote them)."""

    model_config = ConfigDict(extra="allow")

    event_type: Literal["stratum_session", "pool_contact"]
    src_ip: str = Field(description="the miner's address")
    timestamp: int | None = Field(None, description="ns")
    first_seen: int | None = Field(None, description="ns")
    last_seen: int | None = Field(None, description="ns")
    id: int = Field(description="the detection id (`/v1/sessions/{id}/pcap`)")
    capture_sha256: str | None
    batch_id: int = Field(description="the ingest batch that stored it")
    link_status: str | None = Field(description="linked, ambiguous, unlinked; null before "
                                                "the first lead rebuild")
    subscriber_id: str | None = Field(None, description="investigators only")
    entity_id: str | None
    link_confidence: float | None


class DetectionPage(BaseModel):
    model_config = ConfigDict(extra="forbid")

    items: list[Detection]
    next_cursor: str | None


class Entity(BaseModel):
    """A registry entity with its subscribers. For analysts the personal fields are
    `[redacted]` and ``subscriber_ids`` is empty."""

    model_config = ConfigDict(extra="forbid")

    entity_id: str
    entity_name: str | None
    entity_type: str | None
    registration_number: str | None
    address: str | None
    region: str | None
    latitude: float | None
    longitude: float | None
    extra: dict[str, Any]
    updated_at: int
    subscriber_ids: list[str]


class EntityPage(BaseModel):
    model_config = ConfigDict(extra="forbid")

    items: list[Entity]
    next_cursor: str | None


class HeldBy(BaseModel):
    """The entity as the store has it (or, when the store has not loaded it yet, the six
    registry fields from the ISP records)."""

    model_config = ConfigDict(extra="forbid")

    entity_id: str
    entity_name: str | None
    entity_type: str | None
    registration_number: str | None
    address: str | None
    region: str | None
    latitude: float | None = None
    longitude: float | None = None
    extra: dict[str, Any] | None = None
    updated_at: int | None = None
    subscriber_ids: list[str] | None = None


class WhoHeld(BaseModel):
    """Who held an address at a moment (the ISP's records given to ``serve
    --subscribers``), and whether it mined then."""

    model_config = ConfigDict(extra="forbid")

    ip: str
    port: int | None
    at: int = Field(description="the moment asked about, ns")
    link_status: Literal["linked", "ambiguous", "unlinked"]
    subscriber_id: str | None
    entity_id: str | None
    link_confidence: float
    link_reasons: list[str]
    link_candidates: list[LinkCandidate]
    entity: HeldBy | None
    mining: bool = Field(description="a detection from the address was running then")
    detections_at: list[Detection] = Field(description="detections running at that moment")
    detections_within_a_day: list[Detection] = Field(description="detections from the "
                                                                 "address within a day of "
                                                                 "it (up to 100)")


class RegionFigures(BaseModel):
    model_config = ConfigDict(extra="forbid")

    region: str | None
    leads: int
    hashrate_hs: float
    power_w: float


class EntityTypeFigures(BaseModel):
    model_config = ConfigDict(extra="forbid")

    entity_type: str | None
    leads: int
    hashrate_hs: float
    power_w: float


class WeeklyStats(BaseModel):
    """A reporting week in figures (zeros when the store has no leads for it)."""

    model_config = ConfigDict(extra="forbid")

    week_start: int | None = Field(description="the week's Monday 00:00 UTC, ns")
    leads: int
    attributed: int = Field(description="leads with an entity")
    by_status: dict[str, int]
    hashrate_hs: float
    power_w: float
    by_region: list[RegionFigures]
    by_entity_type: list[EntityTypeFigures]


class IngestResult(BaseModel):
    model_config = ConfigDict(extra="forbid")

    inserted: int = Field(description="records stored now")
    duplicates: int = Field(description="records already stored (same natural key)")
    replayed: bool = Field(description="the Idempotency-Key was seen: the first answer, "
                                       "nothing stored")
    batch_id: int


class KeyCreated(BaseModel):
    model_config = ConfigDict(extra="forbid")

    key_id: int
    secret: str = Field(description="send as `X-API-Key`; shown this once")
    note: str


class AuditEntry(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: int
    at: int = Field(description="ns")
    key_id: int | None
    action: str = Field(description="get_lead, list_leads, export_leads, who_held, "
                                    "evidence_pcap, list_entities, list_sessions, "
                                    "list_contacts, create_key")
    target: str | None = Field(description="what was read: lead, entity or detection ids, "
                                           "address@time, …")
    client: str | None = Field(description="the client's address")
    details: dict[str, Any]


class AuditPage(BaseModel):
    model_config = ConfigDict(extra="forbid")

    items: list[AuditEntry]
    next_cursor: str | None


api_key_header = APIKeyHeader(name="X-API-Key", auto_error=False,
                              description="An API key from `poolwatch keys create`.")


class Principal(BaseModel):
    key_id: int | str
    name: str
    scope: str
    client: str | None = None

    def may(self, scope: str) -> bool:
        return scope in GRANTS.get(self.scope, set())


class RateLimiter:
    """A token bucket per key (requests per second, burst): a runaway script gets 429s,
    the others keep their share."""

    def __init__(self, rate: float, burst: int) -> None:
        self.rate, self.burst = rate, burst
        self._buckets: dict[Any, tuple[float, float]] = {}
        self._lock = threading.Lock()

    def allow(self, key: Any) -> bool:
        now = time.monotonic()
        with self._lock:
            tokens, last = self._buckets.get(key, (float(self.burst), now))
            tokens = min(self.burst, tokens + (now - last) * self.rate)
            if tokens < 1:
                self._buckets[key] = (tokens, now)
                return False
            self._buckets[key] = (tokens - 1, now)
            return True


# Annotations here are evaluated when defined (no ``from __future__ import annotations``):
# FastAPI reads the dependencies in them, and some name functions local to create_app.

# --------------------------------------------------------------------------- query models
def _iso_only(value: Any) -> Any:
    """Times are ISO 8601 text as the schema says; pydantic alone would also take a bare
    number as epoch seconds, which the schema does not promise."""
    if isinstance(value, (int, float)) or (isinstance(value, str) and re.fullmatch(
            r"\s*[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?\s*", value)):
        raise ValueError("expected an ISO 8601 date or date-time, not a number")
    return value


def _in_range(value: datetime) -> datetime:
    """The store keeps int64 nanoseconds since 1970: later than 2262 does not fit."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    if not datetime(1970, 1, 1, tzinfo=UTC) <= value < datetime(2262, 1, 1, tzinfo=UTC):
        raise ValueError("times must lie between 1970 and 2261")
    return value


Moment = Annotated[datetime, BeforeValidator(_iso_only), AfterValidator(_in_range)]


def _param(kind: Callable[..., Any], default: Any = ..., *, description: str,
           examples: dict[str, tuple[str, Any]], **constraints: Any) -> Any:
    """A parameter (``Query``, ``Path``, ``Header``) with named examples, {name: (summary,
    value)}. They go twice into the schema: as the parameter's OpenAPI ``examples``, which
    Swagger UI offers in /docs (it ignores a parameter schema's ``examples``), and as the
    JSON-schema ``examples``, which schemathesis and code generators read."""
    return kind(default, description=description, **constraints,
                examples=[value for _, value in examples.values()],
                openapi_examples={name: {"summary": summary, "value": value}
                                  for name, (summary, value) in examples.items()})


# Real cursors of the sample store (pcaps/isp, docs/api.md); a cursor is base64url JSON.
LEADS_CURSOR = ("WyJsIiwxNzcyNDA5NjAwMDAwMDAwMDAwLCItcG93ZXJfdyIsNTU1OC4yMTUsIjEyYWU0ZTE1ZWY5"
                "ODIxZDEiXQ")  # ["l", week, "-power_w", 5558.215, "12ae4e15ef9821d1"]
DETECTIONS_CURSOR = "WyJkIiwxNzcyNDMyNDAzMTM5NjcwMDAwLDFd"  # ["d", first_seen, id 1]
ENTITIES_CURSOR = "WyJlIiwiRS0yMDAiXQ"  # ["e", "E-200"]
# Text parameters end up in SQL: PostgreSQL cannot hold NUL, so none may carry one (422).
NO_NUL = r"^[^\x00]*$"
INT64_MAX = 2**63 - 1  # the largest id the store can hold


class LeadQuery(BaseModel):
    """Filters of ``GET /v1/leads`` (unknown names are refused)."""

    model_config = ConfigDict(extra="forbid")

    week: Moment | None = _param(
        Query, None, description="a day of the reporting week (ISO 8601 date or date-time, "
        "UTC); default: the latest week with leads",
        examples={"week": ("the week of Monday 2 March 2026", "2026-03-02")})
    since: Moment | None = _param(
        Query, None, description="last seen at or after (ISO 8601; no offset: UTC)",
        examples={"utc": ("from 08:00 UTC on 2 March", "2026-03-02T08:00:00Z"),
                  "offset": ("the same moment in Beijing time", "2026-03-02T16:00:00+08:00")})
    until: Moment | None = _param(
        Query, None, description="first seen before (ISO 8601; no offset: UTC)",
        examples={"day": ("before 3 March", "2026-03-03T00:00:00Z")})
    status: Literal["new", "active", "dormant", "gone"] | None = _param(
        Query, None, description="new: first seen this week; active: seen before and this "
        "week; dormant: not this week but in the four before; gone: longer ago",
        examples={"new": ("first seen this week", "new"),
                  "dormant": ("quiet this week", "dormant")})
    min_confidence: float | None = _param(
        Query, None, ge=0, le=1, description="at least this confidence (0-1)",
        examples={"high": ("linked with high confidence", 0.9),
                  "any": ("attributed at all", 0.1)})
    entity_type: Literal["residential", "enterprise", "datacentre", "internet_cafe",
                         "government", "education", "other"] | None = _param(
        Query, None, description="the registry's entity type",
        examples={"home": ("households", "residential"),
                  "datacentre": ("data centres", "datacentre")})
    region: str | None = _param(
        Query, None, max_length=128, pattern=NO_NUL,
        description="the registry's region, as it spells it",
        examples={"Hebei": ("a province", "Hebei")})
    coin: str | None = _param(
        Query, None, max_length=32, pattern=NO_NUL,
        description="a coin the lead mined (any case)",
        examples={"BTC": ("Bitcoin", "BTC"), "XMR": ("Monero", "XMR")})
    pool: str | None = _param(
        Query, None, max_length=256, pattern=NO_NUL,
        description="a pool the lead mined to (name, any case)",
        examples={"AntPool": ("AntPool", "AntPool"), "2Miners": ("2Miners", "2Miners")})
    address: str | None = _param(
        Query, None, max_length=64, pattern=r"^[0-9A-Fa-f:.]+(/[0-9]{1,3})?$",
        description="an IP address or a CIDR: leads with a source address in it",
        examples={"cidr": ("a /24 of subscriber addresses", "192.0.2.0/24"),
                  "ip": ("one address", "192.0.2.50"),
                  "ipv6": ("an IPv6 prefix", "2001:db8:5600::/48")})
    sort: Literal["power_w", "-power_w", "hashrate_hs", "-hashrate_hs", "confidence",
                  "-confidence", "last_seen", "-last_seen", "first_seen",
                  "-first_seen"] = _param(
        Query, "-power_w", description="the order; `-` in front: descending. A cursor "
        "belongs to its sort",
        examples={"power": ("largest estimated draw first (the default)", "-power_w"),
                  "recent": ("most recently seen first", "-last_seen")})
    limit: int = _param(Query, 50, ge=1, le=MAX_PAGE, description="leads per page",
                        examples={"page": ("the default page", 50),
                                  "max": ("the largest page", MAX_PAGE)})
    cursor: str | None = _param(
        Query, None, max_length=512, pattern=NO_NUL, description="`next_cursor` of the "
        "previous page (same filters and sort)",
        examples={"next": ("after the first lead of ?week=2026-03-02&limit=1",
                           LEADS_CURSOR)})


class LeadListQuery(LeadQuery):
    """``GET /v1/leads``: the filters, and whether each lead carries its evidence."""

    evidence: bool = _param(
        Query, False, description="include each lead's evidence (the detections behind it, "
        "about four fifths of a page's bytes); `GET /v1/leads/{lead_id}` always has it",
        examples={"summary": ("pages without evidence (the default)", False),
                  "full": ("every lead with its evidence", True)})


class ExportQuery(LeadQuery):
    """The lead filters, and the export format."""

    format: Literal["jsonl", "csv", "stix"] = _param(
        Query, "jsonl", description="JSON lines, CSV, or a STIX 2.1 bundle",
        examples={"jsonl": ("JSON lines, one lead a line", "jsonl"),
                  "csv": ("CSV with a header row", "csv"),
                  "stix": ("a STIX 2.1 bundle", "stix")})


class PageQuery(BaseModel):
    """Paging, which every listing has; each listing's model adds its own filters, so a
    filter one listing lacks is a 422 there (``extra="forbid"``), never silently ignored."""

    model_config = ConfigDict(extra="forbid")

    limit: int = Query(50, ge=1, le=MAX_PAGE, description="items per page")
    cursor: str | None = Query(None, max_length=512, pattern=NO_NUL,
                               description="`next_cursor` of the previous page")


class DetectionQuery(PageQuery):
    """Filters of ``GET /v1/sessions`` and ``GET /v1/contacts``."""

    since: Moment | None = _param(
        Query, None, description="last seen at or after (ISO 8601; no offset: UTC)",
        examples={"noon": ("from noon UTC on 2 March", "2026-03-02T12:00:00Z")})
    until: Moment | None = _param(
        Query, None, description="first seen before (ISO 8601; no offset: UTC)",
        examples={"day": ("before 3 March", "2026-03-03T00:00:00Z")})
    entity_id: str | None = _param(
        Query, None, max_length=128, pattern=NO_NUL, description="linked to this registry "
        "entity (as of the last lead rebuild)",
        examples={"E-300": ("a household in Hebei", "E-300")})
    limit: int = _param(Query, 50, ge=1, le=MAX_PAGE, description="detections per page",
                        examples={"page": ("the default page", 50)})
    cursor: str | None = _param(
        Query, None, max_length=512, pattern=NO_NUL,
        description="`next_cursor` of the previous page",
        examples={"next": ("after detection 1", DETECTIONS_CURSOR)})


class EntityQuery(PageQuery):
    """``GET /v1/entities``: by entity id; entities have no times, so ``since`` and
    ``until`` are refused as unknown filters."""

    entity_id: str | None = _param(
        Query, None, max_length=128, pattern=NO_NUL, description="only this entity (a page "
        "of one, or empty)", examples={"E-300": ("a household in Hebei", "E-300")})
    limit: int = _param(Query, 50, ge=1, le=MAX_PAGE, description="entities per page",
                        examples={"page": ("the default page", 50)})
    cursor: str | None = _param(
        Query, None, max_length=512, pattern=NO_NUL,
        description="`next_cursor` of the previous page",
        examples={"next": ("entities after E-200", ENTITIES_CURSOR)})


class AuditQuery(PageQuery):
    """``GET /v1/audit``: newest first, by time (no ``entity_id``: entries name what was
    read in ``target``)."""

    since: Moment | None = _param(
        Query, None, description="at or after (ISO 8601; no offset: UTC)",
        examples={"week": ("from 3 March", "2026-03-03T00:00:00Z")})
    until: Moment | None = _param(
        Query, None, description="before (ISO 8601; no offset: UTC)",
        examples={"week": ("before 10 March", "2026-03-10T00:00:00Z")})
    limit: int = _param(Query, 50, ge=1, le=MAX_PAGE, description="entries per page",
                        examples={"page": ("the default page", 50)})
    cursor: str | None = _param(
        Query, None, max_length=512, pattern=NO_NUL,
        description="`next_cursor` of the previous page",
        examples={"older": ("entries older than 4209", AUDIT_CURSOR)})


class KeyRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(..., min_length=1, max_length=128, description="who holds the key",
                      examples=["case team 2026-017"])
    scope: Literal["sensor", "analyst", "investigator", "admin"] = Field(
        description="sensor: ingest only; analyst: read, redacted; investigator: read in "
                    "full, audited; admin: everything")


class IngestBatch(BaseModel):
    """A sensor's batch: detection records as ``poolwatch scan -f jsonl`` writes them."""

    model_config = ConfigDict(extra="forbid")

    records: list[dict[str, Any]] = Field(
        ..., max_length=10_000, description="up to 10,000 records as `poolwatch scan -f "
        "jsonl` writes them (docs/records.md); each needs `event_type` (stratum_session or "
        "pool_contact), `src_ip` and `first_seen` (or `timestamp`)")
    source: str = Field("sensor", max_length=128, description="the sender; stored as "
                        "`source:key name`", examples=["edge-01"])


def _ts(value: datetime | None) -> float | None:
    if value is None:
        return None
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.timestamp()


def _no_evidence(lead: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in lead.items() if k != "evidence"}


# Reasons quote who held an address ("held by user liwei88 from …"), unknown identities
# ("RADIUS user 'x'", "MAC 00:1a:…") and the entity ("linked to Li Wei (best link …)"):
# for analysts the personal token goes, the rest of the reason stays.
# Each pattern has a plain word that must be in the text first (a page of leads is 200-odd
# reasons: most need no regular expression at all).
_REASON_PATTERNS = (
    ("held by ", re.compile(r"(\bheld by [\w-]+ ).+?(?= from \S+ to |, through |$)"),
     r"\1" + REDACTED),
    ("'", re.compile(r"(\b(?:subscriber|user|client id|hostname|identity) )'[^']*'"),
     r"\1'" + REDACTED + "'"),
    ("MAC ", re.compile(r"(\bMAC )\S+"), r"\1" + REDACTED),
    ("linked to ", re.compile(r"(\blinked to ).+?(?= \(best link|$)"), r"\1" + REDACTED),
    (" for ", re.compile(r"(\bcorroborated by .+ for )(.+)$"), r"\1" + REDACTED),
    ("different subscribers held ", re.compile(r"(\bheld \S+ at \S+: )(.+)$"),
     r"\1" + REDACTED),
)


def _personal_tokens(item: dict[str, Any]) -> list[str]:
    """The personal values an item names itself (entity, registration, address, subscriber
    ids, wallets, logins, candidates' identities), longest first."""
    found: set[str] = set()
    for name in (*PERSONAL, "wallets", "wallet", "login", "subscriber_id"):
        value = item.get(name)
        for v in value if isinstance(value, list) else [value]:
            if isinstance(v, str) and v.strip() and v != REDACTED:
                found.add(v)
    for c in item.get("candidates") or item.get("link_candidates") or []:
        if isinstance(c, dict):
            for v in (c.get("subscriber_id"), str(c.get("identity") or "").partition(":")[2]):
                if v:
                    found.add(v)
    return sorted(found, key=len, reverse=True)


@functools.lru_cache(maxsize=1 << 16)
def _redact_phrases(text: str) -> str:
    """``text`` with the identity phrases redacted. A pure function of the text, and reasons
    repeat from lead to lead (most are fixed sentences), so it is cached."""
    for word, pattern, repl in _REASON_PATTERNS:
        if word in text:
            text = pattern.sub(repl, text)
    return text


def redact_text(text: str, tokens: list[str]) -> str:
    """``text`` with the personal tokens (as whole words) and identity phrases replaced by
    ``[redacted]``."""
    text = _redact_phrases(text)
    for token in tokens:
        if token in text:
            text = re.sub(rf"(?<![\w]){re.escape(token)}(?![\w])", REDACTED, text)
    return text


def redact(lead: dict[str, Any]) -> dict[str, Any]:
    """A lead as an analyst gets it: personal fields `[redacted]` (lists empty), candidates'
    subscriber ids and identities redacted, and reasons (the lead's and its evidence
    links') with the personal tokens replaced, the rest of each reason kept."""
    tokens = _personal_tokens(lead)
    out = dict(lead)
    for name in (*PERSONAL, "wallets"):
        if out.get(name) is not None:
            out[name] = [] if isinstance(out[name], list) else REDACTED
    if "candidates" in out:
        out["candidates"] = [{k: (REDACTED if k in ("subscriber_id", "identity") and v
                                  is not None else v) for k, v in c.items()}
                             for c in out.get("candidates") or []]
    if "reasons" in out:
        out["reasons"] = [redact_text(str(r), tokens) for r in out.get("reasons") or []]
    if isinstance(out.get("evidence"), list):
        out["evidence"] = [_redact_evidence_link(e, tokens) for e in out["evidence"]]
    return out


def _redact_evidence_link(e: Any, tokens: list[str]) -> Any:
    link = e.get("link") if isinstance(e, dict) else None
    if not isinstance(link, dict) or not link.get("reasons"):
        return e
    return {**e, "link": {**link, "reasons": [redact_text(str(r), tokens)
                                              for r in link["reasons"]]}}


def redact_entity(entity: dict[str, Any]) -> dict[str, Any]:
    """An entity as an analyst gets it: the same fields, personal ones redacted."""
    out = dict(entity)
    for name in PERSONAL:
        if out.get(name) is not None:
            out[name] = [] if isinstance(out[name], list) else REDACTED
    return out


class FastJSONResponse(JSONResponse):
    """JSON written by orjson (a page of leads: a fifth of the stdlib's time); the stdlib's
    for what orjson cannot write (integers past 64 bits, keys that are not strings)."""

    def render(self, content: Any) -> bytes:
        try:
            return orjson.dumps(content)
        except TypeError:
            return super().render(content)


# ----------------------------------------------------------------------------- the app
def create_app(store, *, rate: float = 50.0, burst: int = 100,
               isp_loader: Callable[[], Any] | None = None) -> FastAPI:
    """The API over an open :class:`poolwatch.store.Store`. ``isp_loader`` gives the ISP
    records for ``GET /v1/addresses/{ip}`` (the store keeps detections and leads; who held
    an address comes from the ISP's files)."""
    app = FastAPI(title="poolwatch lead API", version=__version__, description=DESCRIPTION,
                  openapi_tags=TAGS, default_response_class=FastJSONResponse)
    limiter = RateLimiter(rate, burst)
    metrics = _Metrics()

    def principal(security: SecurityScopes, request: Request,
                  key: Annotated[str | None, Security(api_key_header)] = None) -> Principal:
        info = store.check_key(key) if key else None
        if info is None:
            raise HTTPException(401, "missing, unknown or revoked API key",
                                headers={"WWW-Authenticate": "APIKey"})
        who = Principal(key_id=info.key_id, name=info.name, scope=info.scope,
                        client=request.client.host if request.client else None)
        for scope in security.scopes:
            if not who.may(scope):
                raise HTTPException(403, f"this key's scope ({who.scope}) does not allow "
                                         f"{scope} requests")
        if not limiter.allow(who.key_id):
            raise HTTPException(429, "rate limit exceeded for this key",
                                headers={"Retry-After": "1"})
        return who

    def leads_page(q: LeadQuery, evidence: bool = True, json_as_text=frozenset()):
        return store.list_leads(
            week_start=_ts(q.week), since=_ts(q.since), until=_ts(q.until), status=q.status,
            min_confidence=q.min_confidence, entity_type=q.entity_type, region=q.region,
            coin=q.coin, pool=q.pool, address=q.address, sort=q.sort, limit=q.limit,
            cursor=q.cursor, evidence=evidence, json_as_text=json_as_text)

    def shown(who: Principal, leads: list[dict], action: str) -> list[dict]:
        """Personal data for investigators (each read audited), redacted for analysts."""
        if who.may("investigator"):
            if leads:
                store.audit(who.key_id, action, ",".join(str(x["lead_id"]) for x in leads)[:4000],
                            who.client, {"leads": len(leads)})
            return leads
        return [redact(x) for x in leads]

    app.add_middleware(_BodyLimitAndMetrics, metrics=metrics)

    @app.exception_handler(ValueError)
    async def bad_value(request: Request, exc: ValueError):
        return JSONResponse({"detail": str(exc)}, 400)

    @app.get("/health", tags=["service"], **_doc(
        None, "Is the service up?", "The version and the store's schema revision, for "
        "load balancers and monitoring.",
        _ok(Health, "up", {"ok": ("up", {"status": "ok", "version": __version__,
                                          "schema": "0002"})})))
    def health():
        return {"status": "ok", "version": __version__, "schema": store.revision()}

    @app.get("/metrics", tags=["service"], response_class=PlainTextResponse, **_doc(
        None, "Prometheus metrics", "Requests by route template and status, and their "
        "latency (`poolwatch_http_requests_total`, `poolwatch_http_request_seconds`).",
        {200: {"description": "Prometheus text exposition format",
               "content": {"text/plain": {"schema": {"type": "string"},
                                          "example": METRICS_EXAMPLE}}}}))
    def prometheus() -> str:
        return metrics.text()

    @app.get(f"{API_PREFIX}/leads", tags=["leads"], **_doc(
        "analyst", "List the leads of a reporting week",
        "The week's leads, largest estimated power first by default: who mined (entity, "
        "subscribers, source addresses), to which pools and coins, at what hashrate and "
        "power, their status in the week, confidence and the reasons. Filters combine "
        "(AND); unknown filter names are a 422. Pages by keyset: pass `next_cursor` as "
        "`cursor` with the same filters and sort.\n\nAnalysts get personal data redacted; "
        "for investigators every page is written to the audit log.",
        _ok(LeadPage, "a page of leads", {
            "investigator": ("an investigator's page: personal data, no evidence", {
                "items": [_no_evidence(LEAD_EXAMPLE)], "next_cursor": LEADS_NEXT_CURSOR}),
            "analyst": ("an analyst's page: personal data redacted", {
                "items": [redact(_no_evidence(LEAD_EXAMPLE))],
                "next_cursor": LEADS_NEXT_CURSOR}),
            "evidence": ("with `evidence=true`: each lead with its evidence", {
                "items": [LEAD_EXAMPLE], "next_cursor": LEADS_NEXT_CURSOR})}),
        bad={400: {"cidr": ("a CIDR the pattern allows but is no network",
                            ("address '192.0.2.1/33': not an IP address or CIDR "
                            "('192.0.2.1/33' does not appear to be an IPv4 or IPv6 network)")),
                   "cursor": ("a cursor of another listing or sort",
                              "cursor: made for sort '-power_w', not '-last_seen'")},
             422: {"unknown": ("a misspelt filter", _invalid(
                       "extra_forbidden", ["query", "colour"], "Extra inputs are not "
                       "permitted", "red")),
                   "epoch": ("a number where a time is expected", _invalid(
                       "value_error", ["query", "since"], "Value error, expected an ISO "
                       "8601 date or date-time, not a number", "1772409600",
                       {"error": {}}))}}))
    def list_leads(q: Annotated[LeadListQuery, Query()],
                   who: Annotated[Principal, Security(principal, scopes=["analyst"])]):
        # the store's rows are JSON already: no jsonable_encoder walk (7× the cost of
        # dumps), and JSON fields that go out unchanged are not even decoded
        page = leads_page(q, evidence=q.evidence, json_as_text=(
            PASSED_ON_INVESTIGATOR if who.may("investigator") else PASSED_ON_ANALYST))
        return FastJSONResponse({"items": shown(who, page.items, "list_leads"),
                                 "next_cursor": page.next_cursor})

    @app.get(f"{API_PREFIX}/leads/{{lead_id}}", tags=["leads"], **_doc(
        "analyst", "One lead, with all its evidence",
        "A lead of the week containing `week` (default: its latest week): the entity, "
        "figures, reasons and the detections behind it (capture, SHA-256, frames: ask "
        "`/v1/sessions/{id}/pcap` for the packets). Analysts get personal data redacted; "
        "investigators' reads are audited.",
        _ok(Lead, "the lead", {"investigator": ("an investigator's view", LEAD_EXAMPLE),
                               "analyst": ("an analyst's view: personal data redacted",
                                           redact(LEAD_EXAMPLE))}),
        bad={404: {"missing": ("no lead with this id (in that week)", "no such lead")},
             422: {"week": ("a week that is not a date", _invalid(
                 "datetime_from_date_parsing", ["query", "week"], "Input should be a valid "
                 "datetime or date, input is too short", "last-week",
                 {"error": "input is too short"}))}}))
    def get_lead(lead_id: Annotated[str, _param(
                     Path, max_length=64, pattern=NO_NUL,
                     description="the lead's id (`lead_id` of a listing)",
                     examples={"home": ("a household in Hebei mining to AntPool",
                                        "7e277d8e1cbf14ee"),
                               "datacentre": ("a data centre's two machines",
                                              "12ae4e15ef9821d1")})],
                 who: Annotated[Principal, Security(principal, scopes=["analyst"])],
                 week: Annotated[Moment | None, _param(
                     Query, description="a day of the reporting week (ISO 8601); "
                     "default: the lead's latest week",
                     examples={"week": ("the week of 2 March 2026", "2026-03-02")})] = None):
        lead = store.get_lead(lead_id, _ts(week))
        if lead is None:
            raise HTTPException(404, "no such lead")
        return shown(who, [lead], "get_lead")[0]

    @app.get(f"{API_PREFIX}/addresses/{{ip}}", tags=["leads"], **_doc(
        "investigator", "Who held an address at a moment",
        "Answers \"who was behind this address then?\" from the ISP's records given to "
        "`poolwatch serve --subscribers` (static assignments, RADIUS, DHCP, CGNAT): the "
        "subscriber and entity, the records that say so, and whether the address mined "
        "then (detections running at that moment, and within a day of it). Every lookup "
        "is written to the audit log.",
        _ok(WhoHeld, "who held it, and whether it mined",
            {"mining": ("14:01 UTC: a household, mining to AntPool", WHO_HELD_EXAMPLE)}),
        bad={400: {"ip": ("not an IP address", "ip '192.0.2.500': not an IP address")},
             404: {"no-isp": ("the service has no ISP records",
                              ("the service was started without ISP records (poolwatch "
                              "serve --subscribers)"))},
             422: {"at": ("`at` is required", _invalid(
                 "missing", ["query", "at"], "Field required", None))}}))
    def address(ip: Annotated[str, _param(
                    Path, description="an IPv4 or IPv6 address",
                    examples={"v4": ("an address a cafe held until noon and a home after",
                                     "192.0.2.50"),
                              "v6": ("an enterprise's IPv6 host", "2001:db8:4400:10::25")})],
                at: Annotated[Moment, _param(
                    Query, description="the moment (ISO 8601; no offset: UTC)",
                    examples={"afternoon": ("14:01 UTC: the home, mining",
                                            "2026-03-02T14:01:00Z"),
                              "night": ("03:00 UTC: the cafe, not mining then",
                                        "2026-03-02T03:00:00Z")})],
                who: Annotated[Principal, Security(principal, scopes=["investigator"])]):
        if isp_loader is None:
            raise HTTPException(404, "the service was started without ISP records "
                                     "(poolwatch serve --subscribers)")
        answer = store.who_held(ip, _ts(at), isp_loader())
        store.audit(who.key_id, "who_held", f"{ip}@{at.isoformat()}", who.client, {})
        return answer

    @app.get(f"{API_PREFIX}/entities", tags=["leads"], **_doc(
        "analyst", "List the registry's entities",
        "Entities (households, companies, data centres…) of the ISP's registry with their "
        "subscriber ids, by entity id, or the one `entity_id` asked for. Analysts get "
        "personal data redacted; investigators' pages are audited. Entities have no times: "
        "`since` and `until` are refused as unknown filters (422).",
        _ok(EntityPage, "a page of entities", {
            "investigator": ("an investigator's page", {
                "items": [ENTITY_EXAMPLE], "next_cursor": "WyJlIiwiRS0zMDAiXQ"}),
            "analyst": ("an analyst's page: personal data redacted", {
                "items": [redact_entity(ENTITY_EXAMPLE)],
                "next_cursor": "WyJlIiwiRS0zMDAiXQ"}),
            "one": ("`entity_id=E-300`: that entity alone", {
                "items": [ENTITY_EXAMPLE], "next_cursor": None})}),
        bad={400: {"cursor": ("a cursor of another listing",
                              "cursor: not one this listing gave out")},
             422: {"limit": ("a page too large", _invalid(
                 "less_than_equal", ["query", "limit"], "Input should be less than or "
                 "equal to 500", "1000", {"le": 500})),
                   "since": ("a time filter: entities have no times", _invalid(
                       "extra_forbidden", ["query", "since"], "Extra inputs are not "
                       "permitted", "2026-03-02"))}}))
    def entities(q: Annotated[EntityQuery, Query()],
                 who: Annotated[Principal, Security(principal, scopes=["analyst"])]):
        page = store.entities(entity_id=q.entity_id, limit=q.limit, cursor=q.cursor)
        items = page.items
        if who.may("investigator"):
            if items:
                store.audit(who.key_id, "list_entities",
                            ",".join(str(x["entity_id"]) for x in items)[:4000], who.client,
                            {"n": len(items)})
        else:
            items = [redact_entity(x) for x in items]
        return {"items": items, "next_cursor": page.next_cursor}

    def _detections(kind: str, action: str, q: DetectionQuery, who: Principal):
        page = store.detections(kind=kind, entity_id=q.entity_id, since=_ts(q.since),
                                until=_ts(q.until), limit=q.limit, cursor=q.cursor)
        items = page.items
        if not who.may("investigator"):
            items = [_for_analysts(x) for x in items]
        elif items:  # logins, wallets and subscriber ids: personal data, read in full
            store.audit(who.key_id, action, ",".join(str(x["id"]) for x in items)[:4000],
                        who.client, {"n": len(items), "subscriber_ids": sorted(
                            {x["subscriber_id"] for x in items if x.get("subscriber_id")})})
        return FastJSONResponse({"items": items, "next_cursor": page.next_cursor})

    detection_errors = {
        400: {"cursor": ("a cursor of another listing", ("cursor: not one this listing gave "
                                                        "out"))},
        422: {"unknown": ("a filter these listings do not have", _invalid(
            "extra_forbidden", ["query", "coin"], "Extra inputs are not permitted", "BTC"))}}

    @app.get(f"{API_PREFIX}/sessions", tags=["detections"], **_doc(
        "analyst", "List Stratum sessions",
        "Mining sessions seen in traffic, oldest first: miner and pool addresses, dialect, "
        "agent, worker, coin, shares and the hashrate and power they imply, the evidence "
        "(capture, frames, the Stratum lines) and the link to a subscriber. Filter by the "
        "entity they were linked to and by time. Analysts do not get the `login`, "
        "`wallet` and `subscriber_id` fields, and inside the evidence (the Stratum lines "
        "quote them) login, wallet and worker names are `[redacted]`. Investigators' pages "
        "are written to the audit log (`list_sessions`, the detection ids).",
        _ok(DetectionPage, "a page of sessions", {
            "investigator": ("an investigator's page", {
                "items": [SESSION_EXAMPLE], "next_cursor": SESSIONS_NEXT_CURSOR}),
            "analyst": ("an analyst's page: no login, wallet, subscriber id", {
                "items": [_for_analysts(SESSION_EXAMPLE)],
                "next_cursor": SESSIONS_NEXT_CURSOR})}),
        bad=detection_errors))
    def sessions(q: Annotated[DetectionQuery, Query()],
                 who: Annotated[Principal, Security(principal, scopes=["analyst"])]):
        return _detections("stratum_session", "list_sessions", q, who)

    @app.get(f"{API_PREFIX}/contacts", tags=["detections"], **_doc(
        "analyst", "List pool contacts",
        "Connections to mining pools whose shares could not be read (TLS, or too little "
        "traffic), recognised by DNS answers, TLS names and fingerprints, and pool ports: "
        "score, reasons and evidence. Same filters, redaction and audit "
        "(`list_contacts`) as sessions.",
        _ok(DetectionPage, "a page of pool contacts", {
            "investigator": ("an investigator's page", {
                "items": [CONTACT_EXAMPLE], "next_cursor": None})}),
        bad=detection_errors))
    def contacts(q: Annotated[DetectionQuery, Query()],
                 who: Annotated[Principal, Security(principal, scopes=["analyst"])]):
        return _detections("pool_contact", "list_contacts", q, who)

    @app.get(f"{API_PREFIX}/stats/weekly", tags=["leads"], **_doc(
        "analyst", "A reporting week in figures",
        "Leads by status (new, active, dormant, gone), how many are attributed, and "
        "hashrate and power summed by region and by entity type (null: unattributed or "
        "not in the registry). A week without leads is all zeros.",
        _ok(WeeklyStats, "the week's figures", {
            "week": ("the week of 2 March 2026", WEEKLY_EXAMPLE)}),
        bad={422: {"week": ("`week` is required", _invalid(
            "missing", ["query", "week"], "Field required", None))}}))
    def weekly(week: Annotated[Moment, _param(
                   Query, description="a day of the week (ISO 8601 date or date-time)",
                   examples={"week": ("the week of 2 March 2026", "2026-03-02"),
                             "before": ("the week before (no leads: zeros)", "2026-02-23")})],
               who: Annotated[Principal, Security(principal, scopes=["analyst"])]):
        return store.weekly_stats(_ts(week))

    @app.post(f"{API_PREFIX}/ingest", tags=["sensors"], status_code=200, **_doc(
        "sensor", "Store a sensor's detection records",
        "A sensor (or any scan) pushes the records `poolwatch scan -f jsonl` writes, up to "
        "10,000 and 8 MB a batch, stored in one transaction. A record already stored (same "
        "flow, time and capture) counts as a duplicate. Send an `Idempotency-Key` to retry "
        "safely: the same key with the same records returns the first answer and stores "
        "nothing; with other records it is a 400. A record without `event_type`, `src_ip` "
        "or `first_seen` refuses the whole batch (400 naming its index).",
        _ok(IngestResult, "what was stored", {
            "stored": ("both records stored", {"inserted": 2, "duplicates": 0,
                                               "replayed": False, "batch_id": 2}),
            "replayed": ("the same Idempotency-Key again", {
                "inserted": 2, "duplicates": 0, "replayed": True, "batch_id": 2})}),
        bad={400: {"record": ("a record that is no detection",
                              ("record 0: event_type must be one of stratum_session, "
                              "pool_contact, not 'flow'")),
                   "reused-key": ("an Idempotency-Key sent with other records",
                                  ("idempotency key 'edge-01-20260302-000123' was used for "
                                  "other records (batch 2)"))},
             413: {"large": ("over 8 MB", f"body larger than {MAX_BODY_BYTES} bytes")},
             422: {"records": ("no `records`", _invalid(
                 "missing", ["body", "records"], "Field required", {"source": "edge-01"}))}}))
    def ingest(batch: Annotated[IngestBatch, Body(openapi_examples={
                   "batch": {"summary": "a Stratum session and a pool contact, as `poolwatch "
                                        "scan -f jsonl` wrote them",
                             "value": {"records": INGEST_RECORDS_EXAMPLE,
                                       "source": "edge-01"}}})],
               who: Annotated[Principal, Security(principal, scopes=["sensor"])],
               idempotency_key: Annotated[str | None, _param(
                   Header, max_length=128, description="the sender's id for this "
                   "batch: a retry with it is answered, not stored again",
                   examples={"batch": ("a sensor's batch id", "edge-01-20260302-000123")})]
               = None):
        result = store.ingest(batch.records, idempotency_key=idempotency_key,
                              source=f"{batch.source}:{who.name}")
        return {"inserted": result.inserted, "duplicates": result.duplicates,
                "replayed": result.replayed, "batch_id": result.batch_id}

    @app.post(f"{API_PREFIX}/keys", tags=["admin"], status_code=201, **_doc(
        "admin", "Create an API key",
        "A new key for a person, team or sensor. The secret is in this answer only; the "
        "store keeps its SHA-256. Revoke with `poolwatch keys revoke`. Written to the "
        "audit log.",
        _ok(KeyCreated, "the new key", {"key": ("a new investigator key", {
            "key_id": 5, "secret": "pw_38Li523oRIkp7pWEHMfllhGB_qxeIxzgcHUfWMMFJC8",
            "note": "shown once; stored hashed"})}, status=201),
        bad={400: {"name": ("a name of blanks only", "key name: 1 to 128 characters")},
             413: {"large": ("over 8 MB", f"body larger than {MAX_BODY_BYTES} bytes")},
             422: {"scope": ("an unknown scope", _invalid(
                 "literal_error", ["body", "scope"], "Input should be 'sensor', 'analyst', "
                 "'investigator' or 'admin'", "root",
                 {"expected": "'sensor', 'analyst', 'investigator' or 'admin'"}))}}))
    def create_key(body: Annotated[KeyRequest, Body(openapi_examples={
                       "investigator": {"summary": "a key for a case team",
                                        "value": {"name": "case team 2026-017",
                                                  "scope": "investigator"}},
                       "sensor": {"summary": "a key for an edge sensor",
                                  "value": {"name": "edge-01", "scope": "sensor"}}})],
                   who: Annotated[Principal, Security(principal, scopes=["admin"])]):
        key_id, secret = store.create_key(body.name, body.scope)
        store.audit(who.key_id, "create_key", str(key_id), who.client, {"scope": body.scope})
        return {"key_id": key_id, "secret": secret, "note": "shown once; stored hashed"}

    @app.get(f"{API_PREFIX}/audit", tags=["admin"], **_doc(
        "admin", "Read the audit log",
        "Who read personal data, and when: every investigator read (leads, entities, "
        "sessions, contacts, addresses, evidence pcaps) and every key created, newest "
        "first, between `since` and `until`. The log is append-only; there is no "
        "`entity_id` filter (an entry names what was read in `target`).",
        _ok(AuditPage, "a page of the log", {"log": ("the latest entries", AUDIT_EXAMPLE)}),
        bad={400: {"cursor": ("a cursor of another listing",
                              "cursor: not one this listing gave out")},
             422: {"since": ("a time that is no time", _invalid(
                 "value_error", ["query", "since"], "Value error, expected an ISO 8601 "
                 "date or date-time, not a number", "1772409600", {"error": {}})),
                   "entity": ("`entity_id` is no filter of the log", _invalid(
                       "extra_forbidden", ["query", "entity_id"], "Extra inputs are not "
                       "permitted", "E-300"))}}))
    def audit(q: Annotated[AuditQuery, Query()],
              who: Annotated[Principal, Security(principal, scopes=["admin"])]):
        page = store.audit_entries(since=_ts(q.since), until=_ts(q.until), limit=q.limit,
                                   cursor=q.cursor)
        return {"items": page.items, "next_cursor": page.next_cursor}

    @app.get(f"{API_PREFIX}/exports/leads", tags=["exports"], response_class=Response, **_doc(
        "analyst", "Export leads (JSON lines, CSV, STIX 2.1)",
        "The leads `GET /v1/leads` would list, with the same filters and paging, as JSON "
        "lines, CSV (lists and objects as JSON text) or a STIX 2.1 bundle for "
        "threat-intelligence platforms (docs/exports.md). The next page's cursor is in the "
        "`X-Next-Cursor` header (empty at the end). Personal data as the key's scope "
        "allows; investigators' exports are audited.",
        {200: {"description": "the leads in the format asked for",
               "headers": {"X-Next-Cursor": {
                   "description": "`cursor` for the next page; empty at the end",
                   "schema": {"type": "string"}, "example": LEADS_NEXT_CURSOR}},
               "content": {
                   "application/x-ndjson": {
                       "schema": {"type": "string"},
                       "example": json.dumps(redact(LEAD_EXAMPLE), default=str) + "\n"},
                   "text/csv": {"schema": {"type": "string"},
                                "example": _csv([redact(LEAD_EXAMPLE)])},
                   "application/stix+json;version=2.1": {
                       "schema": STIX_SCHEMA, "example": STIX_EXAMPLE}}}},
        bad={400: {"cursor": ("a cursor of another listing or sort",
                              "cursor: made for sort '-power_w', not '-last_seen'")},
             422: {"format": ("an unknown format", _invalid(
                 "literal_error", ["query", "format"], "Input should be 'jsonl', 'csv' or "
                 "'stix'", "xlsx", {"expected": "'jsonl', 'csv' or 'stix'"}))}}))
    def export(q: Annotated[ExportQuery, Query()],
               who: Annotated[Principal, Security(principal, scopes=["analyst"])]):
        page = leads_page(q)
        leads = shown(who, page.items, "export_leads")
        headers = {"X-Next-Cursor": page.next_cursor or ""}
        if q.format == "stix":
            from poolwatch.export import stix_bundle

            text = stix_bundle(page.items, include_personal=who.may("investigator"))
            return Response(text, media_type="application/stix+json;version=2.1",
                            headers=headers)
        if q.format == "csv":
            return Response(_csv(leads), media_type="text/csv", headers=headers)
        body = "".join(json.dumps(x, default=str) + "\n" for x in leads)
        return Response(body, media_type="application/x-ndjson", headers=headers)

    @app.get(f"{API_PREFIX}/sessions/{{detection_id}}/pcap", tags=["exports"],
             response_class=Response, **_doc(
        "investigator", "A session's packets as evidence (pcap)",
        "The session's packets cut from its stored capture, both directions, in a pcap "
        "(pcapng when they span link types; the file name says which), with provenance in "
        "headers: the capture's SHA-256 and the original frame numbers. Written to the "
        "audit log.",
        {200: {"description": "the session's packets",
               "headers": PCAP_HEADERS,
               "content": {"application/vnd.tcpdump.pcap": {
                   "schema": {"type": "string", "format": "binary"}}}}},
        bad={404: {"missing": ("no detection with this id", "no such session"),
                   "no-capture": ("the record names no capture",
                                  "the session's capture is not known"),
                   "gone": ("the capture is no longer where the scan read it",
                            ("cannot cut the session from its capture: /srv/captures/"
                            "edge_access_20260302.pcap: no such capture file"))},
             422: {"id": ("an id that is no number", _invalid(
                 "int_parsing", ["path", "detection_id"], "Input should be a valid "
                 "integer, unable to parse string as an integer", "latest")),
                   "large": ("an id beyond 64 bits (no detection has one)", _invalid(
                       "less_than_equal", ["path", "detection_id"], "Input should be less "
                       f"than or equal to {INT64_MAX}", str(2**63), {"le": INT64_MAX}))}}))
    def evidence(detection_id: Annotated[int, _param(
                     Path, ge=1, le=INT64_MAX,
                     description="the session's `id` (from `/v1/sessions`)",
                     examples={"home": ("the household's AntPool session", 6)})],
                 who: Annotated[Principal, Security(principal, scopes=["investigator"])]):
        record = store.detection(detection_id)
        if record is None:
            raise HTTPException(404, "no such session")
        from poolwatch.export import pcap_slice

        ev = record.get("evidence") or {}
        capture = ev.get("capture")
        if not capture:
            raise HTTPException(404, "the session's capture is not known")
        out = io.BytesIO()
        try:
            info = pcap_slice(capture, src_ip=record["src_ip"], src_port=record["src_port"],
                              dest_ip=record["dest_ip"], dest_port=record["dest_port"],
                              first_seen_ns=_ns(record["first_seen"]),
                              last_seen_ns=_ns(record["last_seen"]), out=out)
        except PoolwatchError as exc:
            raise HTTPException(404, f"cannot cut the session from its capture: {exc}") from None
        store.audit(who.key_id, "evidence_pcap", str(detection_id), who.client,
                    {"capture_sha256": info.capture_sha256})
        headers = {**info.headers(), "X-Capture-SHA256": info.capture_sha256,
                   "X-Frames": info.frame_ranges(),
                   "Content-Disposition": f'attachment; filename="session-{detection_id}.'
                                          f'{info.format}"'}
        return Response(out.getvalue(), media_type="application/vnd.tcpdump.pcap",
                        headers=headers)

    _keep_nulls_in_examples(app)
    return app


def _ns(value: Any) -> int:
    if isinstance(value, (int, float)):
        return int(value)
    moment = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    return round(moment.timestamp() * 1e9)


def _csv(leads: list[dict]) -> str:
    import csv

    from poolwatch.leads import FIELDS

    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(FIELDS)
    for lead in leads:
        writer.writerow([json.dumps(lead.get(f), default=str)
                         if isinstance(lead.get(f), (list, dict)) else lead.get(f)
                         for f in FIELDS])
    return out.getvalue()


class _BodyLimitAndMetrics:
    """Refuses bodies over MAX_BODY_BYTES (413, before reading them) and counts every request
    by route template and status. Plain ASGI: Starlette's ``BaseHTTPMiddleware`` cost about
    a millisecond a request in the load benchmark."""

    def __init__(self, app: Any, metrics: "_Metrics") -> None:
        self.app, self.metrics = app, metrics

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for name, value in scope["headers"]:
            if name == b"content-length" and value.isdigit() and int(value) > MAX_BODY_BYTES:
                await JSONResponse({"detail": f"body larger than {MAX_BODY_BYTES} bytes"},
                                   413)(scope, receive, send)
                self.metrics.observe("(unmatched)", 413, 0.0)
                return
        started = time.perf_counter()
        status = 500

        async def sent(message: dict) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, sent)
        finally:
            route = scope.get("route")
            self.metrics.observe(getattr(route, "path", "(unmatched)"), status,
                                 time.perf_counter() - started)


class _Metrics:
    """Prometheus metrics of the service (prometheus_client, one registry per app): requests
    by route template and status, and their latency. Routes, not paths, label the series, so
    cardinality stays bounded."""

    def __init__(self) -> None:
        from prometheus_client import CollectorRegistry, Counter, Histogram

        self.registry = CollectorRegistry()
        self.requests = Counter("poolwatch_http_requests", "Requests by route and status.",
                                ["route", "status"], registry=self.registry)
        self.latency = Histogram("poolwatch_http_request_seconds", "Request latency by route.",
                                 ["route"], registry=self.registry,
                                 buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1, 5))

    def observe(self, route: str, status: int, seconds: float) -> None:
        self.requests.labels(route, str(status)).inc()
        self.latency.labels(route).observe(seconds)

    def text(self) -> str:
        from prometheus_client import generate_latest

        return generate_latest(self.registry).decode()


# ------------------------------------------------------------------ OpenAPI documentation
# What /docs shows: per operation a summary, a description naming the key scope, examples
# of the parameters and body (real requests against the sample store, docs/api.md) and of
# the answers, errors included. tests/test_api_examples.py sends every request example to a
# live server and checks every answer example against its schema.
DESCRIPTION = """\
The lead API of poolwatch: mining found in network traffic, linked to who is behind it.

**Keys.** Send an API key from `poolwatch keys create` in the `X-API-Key` header. Scopes:
`sensor` may only ingest; `analyst` reads leads, detections, entities, statistics and
exports with personal data redacted (entity names, registration numbers, addresses,
subscriber ids); `investigator` reads them in full plus who held an address and evidence
pcaps, and **every such read is written to the audit log**; `admin` may do everything and
manages keys and reads the audit log. A missing, unknown or revoked key is 401, a key
without the scope 403, both before anything is looked up. Each key has a token bucket
(50 requests/s, burst 100 by default); beyond it 429 with `Retry-After`.

**Requests.** Times are ISO 8601 (`2026-03-02`, `2026-03-02T14:01:00Z`,
`2026-03-02T22:01:00+08:00`; no offset means UTC); times in answers are integer nanoseconds
since 1970 (UTC) unless a field says ISO 8601. Unknown query parameters are a 422 naming
them. Listings page by keyset: pass `next_cursor` as `cursor`.

**Examples.** Every example is a real request or answer of a store built from the
synthetic ISP in `pcaps/isp` (documentation addresses, invented people):
`poolwatch leads pcaps/isp/*.pcap --subscribers pcaps/isp --week 2026-03-02
--db sqlite:///sample.db`, then `poolwatch serve --db sqlite:///sample.db
--subscribers pcaps/isp`; with a key of the scope shown, "Try it out" gives these answers.
"""

ERROR_TEXT = {
    400: "a value the store cannot use (a CIDR that is no network, a cursor of another "
         "listing, a record without what a detection needs)",
    401: "missing, unknown or revoked API key",
    403: "the key's scope does not allow this",
    404: "no such object",
    413: "request body larger than 8 MB",
    422: "a parameter or the body does not match the schema (unknown names included)",
    429: "rate limit exceeded for this key; retry after `Retry-After` seconds",
}
# A key that lacks each scope, for the 403 examples.
_LACKING = {"analyst": "sensor", "investigator": "analyst", "admin": "investigator",
            "sensor": "analyst"}
ANALYSTS_DO_NOT_GET = ("subscriber_id", "login", "wallet")


def _examples(named: dict[str, tuple[str, Any]]) -> dict[str, dict[str, Any]]:
    return {name: {"summary": summary, "value": value}
            for name, (summary, value) in named.items()}


def _ok(model: type[BaseModel], description: str, examples: dict[str, tuple[str, Any]],
        status: int = 200) -> dict[int, dict[str, Any]]:
    """A JSON success answer: its schema (documentation only) and named examples."""
    return {status: {"model": model, "description": description,
                     "content": {"application/json": {"examples": _examples(examples)}}}}


def _invalid(kind: str, loc: list[str | int], msg: str, value: Any,
             ctx: dict[str, Any] | None = None) -> dict[str, Any]:
    """A 422 body as FastAPI sends it."""
    issue = {"type": kind, "loc": loc, "msg": msg, "input": value}
    if ctx is not None:
        issue["ctx"] = ctx
    return {"detail": [issue]}


def _for_analysts(record: dict[str, Any]) -> dict[str, Any]:
    """A detection as an analyst gets it: no login, wallet or subscriber id, and neither
    they nor the worker name inside the evidence (the Stratum lines quote them verbatim;
    "wallet format of bc1q…" quotes a wallet's start)."""
    out = {k: v for k, v in record.items() if k not in ANALYSTS_DO_NOT_GET}
    tokens = [str(record[k]) for k in ("login", "wallet", "worker", "subscriber_id")
              if isinstance(record.get(k), str) and len(record[k].strip()) > 1]
    tokens += [str(w) for w in record.get("workers") or [] if isinstance(w, str)
               and len(w.strip()) > 1]
    wallet = record.get("wallet")
    if isinstance(wallet, str) and len(wallet) > 12:
        tokens.append(wallet[:12] + "…")
    tokens = sorted(set(tokens), key=len, reverse=True)
    if tokens and "evidence" in out:
        out["evidence"] = _scrub(out["evidence"], tokens)
    return out


def _scrub(value: Any, tokens: list[str]) -> Any:
    """Every string inside ``value`` with the tokens (as whole words) replaced."""
    if isinstance(value, str):
        for token in tokens:
            if token in value:
                value = re.sub(rf"(?<![\w]){re.escape(token)}(?![\w])", REDACTED, value)
        return value
    if isinstance(value, dict):
        return {k: _scrub(v, tokens) for k, v in value.items()}
    if isinstance(value, list):
        return [_scrub(v, tokens) for v in value]
    return value


def _doc(scope: str | None, summary: str, description: str, ok: dict[int, dict[str, Any]],
         *, bad: dict[int, dict[str, tuple[str, Any]]] | None = None) -> dict[str, Any]:
    """Keyword arguments of a route decorator: summary, description with the key scope,
    the answers (``ok``) and errors with examples ({status: {name: (summary, detail)}};
    a 422's value is the whole body)."""
    responses: dict[int | str, dict[str, Any]] = dict(ok)
    errors = dict(bad or {})
    extra: dict[str, Any] = {}
    if scope is not None:
        others = [s for s, granted in GRANTS.items() if scope in granted and s != scope]
        description += (f"\n\n**Key scope:** `{scope}`"
                        + (f" (keys of scope {', '.join(f'`{s}`' for s in others)} may too)"
                           if others else ""))
        errors[401] = {"no-key": ("no key, or an unknown or revoked one",
                                  "missing, unknown or revoked API key")}
        errors[403] = {"scope": (f"a {_LACKING[scope]} key",
                                 (f"this key's scope ({_LACKING[scope]}) does not allow "
                                 f"{scope} requests"))}
        errors[429] = {"rate": ("too many requests with this key",
                                "rate limit exceeded for this key")}
        extra["openapi_extra"] = {SCOPE_EXTENSION: scope}
    for status in sorted(errors):
        named = errors[status]
        responses[status] = {
            "model": ValidationProblem if status == 422 else Problem,
            "description": ERROR_TEXT[status],
            "content": {"application/json": {"examples": _examples({
                name: (text, value if status == 422 else {"detail": value})
                for name, (text, value) in named.items()})}}}
        if status == 401:
            responses[status]["headers"] = {"WWW-Authenticate": {
                "description": "the scheme", "schema": {"type": "string"},
                "example": "APIKey"}}
        if status == 429:
            responses[status]["headers"] = {"Retry-After": {
                "description": "seconds to wait", "schema": {"type": "string"},
                "example": "1"}}
    return {"summary": summary, "description": description, "responses": responses, **extra}


def _keep_nulls_in_examples(app: FastAPI) -> None:
    """FastAPI writes the OpenAPI document without null values (``exclude_none``), which
    would drop every null field from the examples (``"registration_number": null``,
    ``"next_cursor": null``) and show answers without fields they have: put the answer and
    body examples back as the routes give them."""
    from fastapi.encoders import jsonable_encoder
    from fastapi.routing import APIRoute

    generate = app.openapi
    done: list[Any] = [None]

    def openapi() -> dict[str, Any]:
        schema = generate()
        if schema is done[0]:
            return schema
        for route in app.routes:
            if not isinstance(route, APIRoute) or not route.include_in_schema:
                continue
            for method in route.methods:
                op = schema["paths"][route.path_format][method.lower()]
                for status, response in route.responses.items():
                    for media, content in response.get("content", {}).items():
                        shown = op["responses"][str(status)]["content"][media]
                        for name in ("examples", "example"):
                            if name in content:
                                shown[name] = jsonable_encoder(content[name])
                body = route.body_field
                examples = getattr(body.field_info, "openapi_examples", None) if body else None
                if examples:
                    media = op["requestBody"]["content"]
                    media[next(iter(media))]["examples"] = jsonable_encoder(examples)
        done[0] = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign]


STIX_SCHEMA: dict[str, Any] = {
    "type": "object", "required": ["type", "id", "objects"],
    "properties": {"type": {"const": "bundle"}, "id": {"type": "string",
                                                       "pattern": "^bundle--"},
                   "objects": {"type": "array", "items": {
                       "type": "object", "required": ["type", "id"]}}}}

PCAP_HEADERS = {
    "Content-Disposition": {"description": "the file name: `.pcap`, or `.pcapng` when the "
                                           "packets span link types",
                            "schema": {"type": "string"},
                            "example": 'attachment; filename="session-6.pcap"'},
    "X-Capture-SHA256": {"description": "SHA-256 of the capture the packets were cut from",
                         "schema": {"type": "string"},
                         "example": "d6b9a18166b47fa70f0c643b2ecfa97b0ded1e1ea10d029d9766bee1d5"
                                    "349f25"},
    "X-Frames": {"description": "the packets' frame numbers in that capture (ranges)",
                 "schema": {"type": "string"}, "example": "280-336"},
    "X-Poolwatch-Capture": {"description": "the capture's file name (not its directory)",
                            "schema": {"type": "string"},
                            "example": "edge_access_20260302.pcap"},
    "X-Poolwatch-Packets": {"description": "packets in the body", "schema": {"type": "string"},
                            "example": "57"},
    "X-Poolwatch-Slice-SHA256": {"description": "SHA-256 of the body",
                                 "schema": {"type": "string"},
                                 "example": "322b01e1b2aa9b71292388167d09c58ecf174160a806142ac4"
                                            "75bf2b46a5c3ac"},
    "X-Poolwatch-Linktypes": {"description": "link types of the packets (1: Ethernet)",
                              "schema": {"type": "string"}, "example": "1"},
}
