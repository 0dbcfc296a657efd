"""The investigators' lead API: FastAPI over the lead store, keys with scopes, an audit trail.

Scopes (``poolwatch keys create --scope``): ``sensor`` may only ingest; ``analyst`` reads leads
with personal data redacted (entity names, addresses, subscriber ids, registration numbers);
``investigator`` reads them in full, and every such read is written to the append-only audit
log; ``admin`` also manages keys and reads the audit log. A missing, unknown or revoked key
is 401 and a key without the scope 403, both before anything is looked up, so neither says
whether a lead exists. Query parameters are pydantic models that forbid unknown names: a
misspelt filter is a 422 with its name, never silently ignored.
"""

import io
import json
import re
import threading
import time
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Annotated, Any, Literal

from fastapi import Depends, FastAPI, Header, HTTPException, Query, Request, Response, Security
from fastapi.responses import JSONResponse, PlainTextResponse
from fastapi.security import APIKeyHeader, SecurityScopes
from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field

from poolwatch import __version__
from poolwatch.errors import PoolwatchError

API_PREFIX = "/v1"
MAX_PAGE = 500
MAX_BODY_BYTES = 8 * 1024 * 1024  # an ingest batch larger than this is refused (413)
PERSONAL = ("entity_name", "registration_number", "address", "subscriber_ids")
REDACTED = "[redacted]"
# Which scopes a key's scope grants: admin > investigator > analyst; sensor stands apart.
GRANTS = {
    "sensor": {"sensor"},
    "analyst": {"analyst"},
    "investigator": {"analyst", "investigator"},
    "admin": {"analyst", "investigator", "admin", "sensor"},
}

class Problem(BaseModel):
    detail: Any


# Every route may answer these; each names its reason in ``detail``.
ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"model": Problem, "description": "a value the store cannot use (bad CIDR, cursor)"},
    401: {"model": Problem, "description": "missing, unknown or revoked API key"},
    403: {"model": Problem, "description": "the key's scope does not allow this"},
    404: {"model": Problem, "description": "no such object"},
    413: {"model": Problem, "description": "request body too large"},
    429: {"model": Problem, "description": "rate limit exceeded for this key"},
}

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
        value = value.replace(tzinfo=timezone.utc)
    if not datetime(1970, 1, 1, tzinfo=timezone.utc) <= value < datetime(
            2262, 1, 1, tzinfo=timezone.utc):
        raise ValueError("times must lie between 1970 and 2261")
    return value


Moment = Annotated[datetime, BeforeValidator(_iso_only), AfterValidator(_in_range)]


class LeadQuery(BaseModel):
    """Filters of ``GET /v1/leads`` (unknown names are refused)."""

    model_config = ConfigDict(extra="forbid")

    week: Moment | None = Field(None, description="reporting week's first day (UTC)")
    since: Moment | None = Field(None, description="last seen at or after")
    until: Moment | None = Field(None, description="first seen before")
    status: Literal["new", "active", "dormant", "gone"] | None = None
    min_confidence: float | None = Field(None, ge=0, le=1)
    entity_type: Literal["residential", "enterprise", "datacentre", "internet_cafe",
                         "government", "education", "other"] | None = None
    region: str | None = Field(None, max_length=128)
    coin: str | None = Field(None, max_length=32)
    pool: str | None = Field(None, max_length=256)
    address: str | None = Field(None, max_length=64, description="an IP address or a CIDR",
                                examples=["198.51.100.0/24"],
                                pattern=r"^[0-9A-Fa-f:.]+(/[0-9]{1,3})?$")
    sort: Literal["power_w", "-power_w", "hashrate_hs", "-hashrate_hs", "confidence",
                  "-confidence", "last_seen", "-last_seen", "first_seen",
                  "-first_seen"] = "-power_w"
    limit: int = Field(50, ge=1, le=MAX_PAGE)
    cursor: str | None = Field(None, max_length=512)


class ExportQuery(LeadQuery):
    """The lead filters, and the export format."""

    format: Literal["jsonl", "csv", "stix"] = "jsonl"


class PageQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")

    since: Moment | None = None
    until: Moment | None = None
    entity_id: str | None = Field(None, max_length=128)
    limit: int = Field(50, ge=1, le=MAX_PAGE)
    cursor: str | None = Field(None, max_length=512)


class KeyRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(..., min_length=1, max_length=128)
    scope: Literal["sensor", "analyst", "investigator", "admin"]


class IngestBatch(BaseModel):
    """A sensor's batch: detection records as ``poolwatch scan -f jsonl`` writes them."""

    model_config = ConfigDict(extra="forbid")

    records: list[dict[str, Any]] = Field(..., max_length=10_000)
    source: str = Field("sensor", max_length=128)


def _ts(value: datetime | None) -> float | None:
    if value is None:
        return None
    if value.tzinfo is None:
        value = value.replace(tzinfo=timezone.utc)
    return value.timestamp()


def redact(lead: dict[str, Any]) -> dict[str, Any]:
    out = dict(lead)
    for name in PERSONAL:
        if out.get(name) is not None:
            out[name] = [] if isinstance(out[name], list) else REDACTED
    out["candidates"] = [{k: (REDACTED if k in ("subscriber_id", "identity") else v)
                          for k, v in c.items()} for c in out.get("candidates") or []]
    out["reasons"] = [REDACTED if any(str(lead.get(n) or "\0") in r for n in PERSONAL
                                      if isinstance(lead.get(n), str)) else r
                      for r in out.get("reasons") or []]
    return out


# ----------------------------------------------------------------------------- the app
def create_app(store, *, rate: float = 50.0, burst: int = 100,
               isp_loader: Callable[[], Any] | None = None) -> FastAPI:
    """The API over an open :class:`poolwatch.store.Store`. ``isp_loader`` gives the ISP
    records for ``GET /v1/addresses/{ip}`` (the store keeps detections and leads; who held
    an address comes from the ISP's files)."""
    app = FastAPI(title="poolwatch lead API", version=__version__,
                  description=__doc__.split("\n\n")[0], responses=ERRORS)
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

    def leads_page(q: LeadQuery):
        return store.list_leads(
            week_start=_ts(q.week), since=_ts(q.since), until=_ts(q.until), status=q.status,
            min_confidence=q.min_confidence, entity_type=q.entity_type, region=q.region,
            coin=q.coin, pool=q.pool, address=q.address, sort=q.sort, limit=q.limit,
            cursor=q.cursor)

    def shown(who: Principal, leads: list[dict], action: str) -> list[dict]:
        """Personal data for investigators (each read audited), redacted for analysts."""
        if who.may("investigator"):
            if leads:
                store.audit(who.key_id, action, ",".join(str(x["lead_id"]) for x in leads)[:4000],
                            who.client, {"leads": len(leads)})
            return leads
        return [redact(x) for x in leads]

    @app.middleware("http")
    async def body_limit_and_metrics(request: Request, call_next):
        size = request.headers.get("content-length")
        if size is not None and size.isdigit() and int(size) > MAX_BODY_BYTES:
            return JSONResponse({"detail": f"body larger than {MAX_BODY_BYTES} bytes"}, 413)
        started = time.perf_counter()
        response = await call_next(request)
        route = request.scope.get("route")
        metrics.observe(getattr(route, "path", "(unmatched)"), response.status_code,
                        time.perf_counter() - started)
        return response

    @app.exception_handler(ValueError)
    async def bad_value(request: Request, exc: ValueError):
        return JSONResponse({"detail": str(exc)}, 400)

    @app.get("/health", tags=["service"])
    def health() -> dict[str, Any]:
        return {"status": "ok", "version": __version__, "schema": store.revision()}

    @app.get("/metrics", tags=["service"], response_class=PlainTextResponse)
    def prometheus() -> str:
        return metrics.text()

    @app.get(f"{API_PREFIX}/leads", tags=["leads"])
    def list_leads(q: Annotated[LeadQuery, Query()],
                   who: Annotated[Principal, Security(principal, scopes=["analyst"])]):
        page = leads_page(q)
        return {"items": shown(who, page.items, "list_leads"), "next_cursor": page.next_cursor}

    @app.get(f"{API_PREFIX}/leads/{{lead_id}}", tags=["leads"])
    def get_lead(lead_id: Annotated[str, Field(max_length=64)],
                 who: Annotated[Principal, Security(principal, scopes=["analyst"])],
                 week: Moment | None = None):
        lead = store.get_lead(lead_id, _ts(week))
        if lead is None:
            raise HTTPException(404, "no such lead")
        return shown(who, [lead], "get_lead")[0]

    @app.get(f"{API_PREFIX}/addresses/{{ip}}", tags=["leads"])
    def address(ip: str, at: Moment,
                who: Annotated[Principal, Security(principal, scopes=["investigator"])]):
        if isp_loader is None:
            raise HTTPException(404, "the service was started without ISP records "
                                     "(poolwatch serve --subscribers)")
        answer = store.who_held(ip, _ts(at), isp_loader())
        store.audit(who.key_id, "who_held", f"{ip}@{at.isoformat()}", who.client, {})
        return answer

    @app.get(f"{API_PREFIX}/entities", tags=["leads"])
    def entities(q: Annotated[PageQuery, Query()],
                 who: Annotated[Principal, Security(principal, scopes=["analyst"])]):
        page = store.entities(limit=q.limit, cursor=q.cursor)
        items = page.items
        if who.may("investigator"):
            store.audit(who.key_id, "list_entities", "", who.client, {"n": len(items)})
        else:
            items = [redact(x) for x in items]
        return {"items": items, "next_cursor": page.next_cursor}

    def _detections(kind: str, q: PageQuery, who: Principal):
        page = store.detections(kind=kind, entity_id=q.entity_id, since=_ts(q.since),
                                until=_ts(q.until), limit=q.limit, cursor=q.cursor)
        items = page.items
        if not who.may("investigator"):
            items = [{k: v for k, v in x.items() if k not in ("subscriber_id", "login",
                                                              "wallet")} for x in items]
        return {"items": items, "next_cursor": page.next_cursor}

    @app.get(f"{API_PREFIX}/sessions", tags=["detections"])
    def sessions(q: Annotated[PageQuery, Query()],
                 who: Annotated[Principal, Security(principal, scopes=["analyst"])]):
        return _detections("stratum_session", q, who)

    @app.get(f"{API_PREFIX}/contacts", tags=["detections"])
    def contacts(q: Annotated[PageQuery, Query()],
                 who: Annotated[Principal, Security(principal, scopes=["analyst"])]):
        return _detections("pool_contact", q, who)

    @app.get(f"{API_PREFIX}/stats/weekly", tags=["leads"])
    def weekly(week: Moment,
               who: Annotated[Principal, Security(principal, scopes=["analyst"])]):
        return store.weekly_stats(_ts(week))

    @app.post(f"{API_PREFIX}/ingest", tags=["sensors"], status_code=200)
    def ingest(batch: IngestBatch,
               who: Annotated[Principal, Security(principal, scopes=["sensor"])],
               idempotency_key: Annotated[str | None, Header(max_length=128)] = None):
        result = store.ingest(batch.records, idempotency_key=idempotency_key,
                              source=f"{batch.source}:{who.name}")
        return {"inserted": result.inserted, "duplicates": result.duplicates,
                "replayed": result.replayed, "batch_id": result.batch_id}

    @app.post(f"{API_PREFIX}/keys", tags=["admin"], status_code=201)
    def create_key(body: KeyRequest,
                   who: Annotated[Principal, Security(principal, scopes=["admin"])]):
        key_id, secret = store.create_key(body.name, body.scope)
        store.audit(who.key_id, "create_key", str(key_id), who.client, {"scope": body.scope})
        return {"key_id": key_id, "secret": secret, "note": "shown once; stored hashed"}

    @app.get(f"{API_PREFIX}/audit", tags=["admin"])
    def audit(q: Annotated[PageQuery, Query()],
              who: Annotated[Principal, Security(principal, scopes=["admin"])]):
        page = store.audit_entries(since=_ts(q.since), until=_ts(q.until), limit=q.limit,
                                   cursor=q.cursor)
        return {"items": page.items, "next_cursor": page.next_cursor}

    @app.get(f"{API_PREFIX}/exports/leads", tags=["exports"], response_class=Response,
             responses={200: {"description": "the leads in the format asked for",
                              "content": {"application/x-ndjson": {}, "text/csv": {},
                                          "application/stix+json;version=2.1": {}}}})
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
             response_class=Response,
             responses={200: {"description": "the session's packets (pcap, or pcapng when "
                                             "they span link types)",
                              "content": {"application/vnd.tcpdump.pcap": {}}}})
    def evidence(detection_id: int,
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
