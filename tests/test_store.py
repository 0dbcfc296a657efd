"""The lead store (store/, docs/store.md) on both backends: SQLite in a temporary directory
and the PostgreSQL server on this machine, each test in a schema of its own.

``backend_urls`` and ``fresh_store`` are what other suites (the API's) build on: one
parameter per backend, and a store at the latest schema that nobody else sees.
"""

from __future__ import annotations

import atexit
import hashlib
import itertools
import json
import os
from functools import cache
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from typer.testing import CliRunner

from poolwatch.cli import app
from poolwatch.store import SchemaOutdated, Store, StoreError, head_revision

ROOT = Path(__file__).resolve().parent.parent
STRATUM = ROOT / "pcaps" / "stratum"
ISP = ROOT / "pcaps" / "isp"
CGMINER = STRATUM / "stratum_v1_cgminer_sha256d.pcap"
WEEK = 1772409600.0  # Monday 2026-03-02 00:00 UTC, the synthetic ISP's day
PG_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
PG_DSN = "host=127.0.0.1 port=5432 user=postgres dbname=test connect_timeout=3"
TABLES = {"alembic_version", "captures", "ingest_batches", "detections", "entities",
          "subscribers", "leads", "lead_values", "lead_addresses", "api_keys", "audit_log"}


# --------------------------------------------------------------------------- backends
def backend_urls() -> list[str]:
    """One parameter per backend: "sqlite" (a file under tmp_path) and PostgreSQL."""
    return ["sqlite", PG_URL]


_schemas: list[str] = []
_counter = itertools.count()


@cache
def _pg_unreachable() -> str | None:
    """Why the PostgreSQL server cannot be used, or None. Schemas left by test runs that
    died (their process is gone) are dropped on the way."""
    try:
        import psycopg
    except ImportError as exc:
        return f"psycopg is not installed ({exc})"
    try:
        with psycopg.connect(PG_DSN, autocommit=True) as conn:
            stale = [name for (name,) in conn.execute(
                "SELECT nspname FROM pg_namespace WHERE nspname LIKE 'pwtest\\_%'")
                if not _alive(name)]
            for name in stale:
                conn.execute(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')
    except psycopg.OperationalError as exc:
        return str(exc).strip().splitlines()[0]
    return None


def _alive(schema: str) -> bool:
    try:
        pid = int(schema.split("_")[1])
        os.kill(pid, 0)
    except (IndexError, ValueError, ProcessLookupError):
        return False
    except PermissionError:
        return True
    return True


def fresh_url(kind: str, tmp_path: Path) -> str:
    """A URL to an empty store: a new SQLite file, or a new PostgreSQL schema (set as the
    search_path through the URL, so the CLI sees it too). PostgreSQL is skipped, with the
    reason, only when the server does not answer, and never under CI."""
    if kind == "sqlite":
        return f"sqlite:///{tmp_path / f'store{next(_counter)}.db'}"
    why = _pg_unreachable()
    if why is not None:
        message = f"PostgreSQL at 127.0.0.1:5432 is unreachable: {why}"
        if os.environ.get("CI"):
            pytest.fail(message + " (CI must run the PostgreSQL store tests)")
        pytest.skip(message)
    import psycopg

    name = f"pwtest_{os.getpid()}_{next(_counter)}"
    with psycopg.connect(PG_DSN, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{name}"')
    _schemas.append(name)
    return f"{PG_URL}?options=-csearch_path%3D{name}"


def fresh_store(kind: str, tmp_path: Path) -> Store:
    """An open store at the latest schema on the given backend."""
    return Store.open(fresh_url(kind, tmp_path))


def drop_schemas(names: list[str] | None = None) -> None:
    names = list(_schemas if names is None else names)
    if not names:
        return
    import psycopg

    try:
        with psycopg.connect(PG_DSN, autocommit=True) as conn:
            for name in names:
                conn.execute(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')
                if name in _schemas:
                    _schemas.remove(name)
    except psycopg.OperationalError:
        pass


atexit.register(drop_schemas)


@pytest.fixture(params=backend_urls(), ids=["sqlite", "postgresql"])
def url(request, tmp_path) -> str:
    made = len(_schemas)
    yield fresh_url(request.param, tmp_path)
    drop_schemas(_schemas[made:])


@pytest.fixture
def store(url):
    s = Store.open(url)
    yield s
    s.close()


@cache
def stratum_records() -> list[dict]:
    from poolwatch.scan import scan_detections

    return [r.as_dict() for r in scan_detections([STRATUM])]


@cache
def isp_records():
    from poolwatch.link.inputs import load_isp_records
    from poolwatch.scan import scan_sessions

    return (load_isp_records([ISP]),
            [s.as_dict() for s in scan_sessions(sorted(ISP.glob("*.pcap")))])


@pytest.fixture(scope="module", params=backend_urls(), ids=["sqlite", "postgresql"])
def isp_store(request, tmp_path_factory):
    """The synthetic ISP's sessions, registry and leads of 2026-03-02 (read-only tests)."""
    made = len(_schemas)
    s = Store.open(fresh_url(request.param, tmp_path_factory.mktemp("isp")))
    isp, records = isp_records()
    s.ingest(records)
    assert s.rebuild_leads(isp, WEEK) == 12
    yield s
    s.close()
    drop_schemas(_schemas[made:])


def run(*args: str):
    result = CliRunner().invoke(app, [str(a) for a in args])
    assert "Traceback" not in result.output, result.output
    return result


# --------------------------------------------------------------------------- schema
def test_migrations_take_an_empty_store_to_head_and_match_the_models(url):
    from alembic import command
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext
    from sqlalchemy import inspect

    from poolwatch.store.db import alembic_config
    from poolwatch.store.models import Base

    if url.startswith("sqlite"):
        with pytest.raises(StoreError, match="no store at"):
            Store.open(url, create=False)
        Path(url.removeprefix("sqlite:///")).touch()  # an empty file: a store without schema
    with pytest.raises(SchemaOutdated, match="poolwatch db upgrade"):
        Store.open(url, create=False)
    store = Store.open(url, create=False, check=False)
    try:
        assert store.revision() is None
        store.upgrade()
        assert store.revision() == head_revision() == "0002"
        with store.engine.connect() as conn:
            assert TABLES <= set(inspect(conn).get_table_names())
            assert compare_metadata(MigrationContext.configure(conn), Base.metadata) == []
            if store.backend == "sqlite":
                assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
                assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
        with store.engine.begin() as conn:  # down to nothing and back up
            command.downgrade(alembic_config(conn), "base")
        assert store.revision() is None
        store.upgrade()
        assert Store.open(url).revision() == "0002"
        with store.engine.connect() as conn:  # expression indexes: autogenerate skips them
            names = {r[0] for r in conn.exec_driver_sql(
                "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'leads'"
                if store.backend == "sqlite" else
                "SELECT indexname FROM pg_indexes WHERE tablename = 'leads' "
                "AND schemaname = current_schema()")}
        assert {"ix_leads_week_power_key", "ix_leads_week_status_power",
                "ix_leads_week_type_power", "ix_leads_week_region_power"} <= names
    finally:
        store.close()


# --------------------------------------------------------------------------- ingest
def test_scanning_the_same_captures_twice_stores_them_once(url, tmp_path):
    """`poolwatch db upgrade`, then `poolwatch scan pcaps/stratum --db URL` twice: the
    second scan inserts nothing and counts a second scan of every capture."""
    assert run("db", "upgrade", "--db", url).exit_code == 0
    out = tmp_path / "found.jsonl"
    first = run("scan", STRATUM, "--db", url, "-f", "jsonl", "-o", out, "--no-progress")
    assert first.exit_code == 0, first.output
    lines = [json.loads(x) for x in out.read_text().splitlines()]
    with Store.open(url) as s:
        counts = s.counts()
    assert counts["detections"] == len(lines) > 10
    assert counts["captures"] == len(list(STRATUM.glob("*.pcap")))  # benign captures too
    again = run("scan", STRATUM, "--db", url, "-f", "jsonl", "-o", out, "--no-progress")
    assert again.exit_code == 0 and f"0 new detection(s), {len(lines)} already" in again.output
    with Store.open(url) as s:
        after = s.counts()
        assert after["detections"] == counts["detections"]
        assert after["captures"] == counts["captures"]
        for rec in lines:
            sha = rec["evidence"]["capture_sha256"]
            cap = s.capture(sha)
            assert cap["scan_count"] == 2 and cap["first_path"] == rec["evidence"]["capture"]
            assert cap["size"] == Path(cap["first_path"]).stat().st_size
            assert cap["first_packet"] <= s.detections(capture_sha256=sha).items[0][
                "first_seen"] <= cap["last_packet"]
            assert hashlib.sha256(Path(cap["first_path"]).read_bytes()).hexdigest() == sha
        # the JSON lines form (ISO times to the ns) is the same detection as the library's
        again = s.ingest(lines, source="sensor:test")
        assert (again.inserted, again.duplicates) == (0, len(lines))
        stored = s.detections(limit=1000).items
        assert sorted(d["first_seen"] for d in stored) == sorted(
            r["first_seen"] for r in stratum_records())


def test_a_batch_sent_again_with_its_key_is_a_replay(store):
    records = [r for r in stratum_records() if r["evidence"]["capture"] == str(CGMINER)]
    assert records
    first = store.ingest(records, idempotency_key="sensor-7:0001", source="sensor:edge-7")
    assert (first.inserted, first.duplicates, first.replayed) == (len(records), 0, False)
    again = store.ingest(records, idempotency_key="sensor-7:0001", source="sensor:edge-7")
    assert again.replayed and (again.inserted, again.batch_id) == (len(records), first.batch_id)
    other = store.ingest(records, idempotency_key="sensor-7:0002")
    assert (other.inserted, other.duplicates, other.replayed) == (0, len(records), False)
    assert store.counts()["ingest_batches"] == 2
    assert store.batch(first.batch_id)["source"] == "sensor:edge-7"
    with pytest.raises(ValueError, match="used for other records"):
        store.ingest(stratum_records(), idempotency_key="sensor-7:0001")
    with pytest.raises(ValueError, match="record 1: a detection needs src_ip"):
        store.ingest([records[0], {"event_type": "stratum_session", "first_seen": 1}])
    with pytest.raises(ValueError, match="record 0: event_type"):
        store.ingest([{"src_ip": "192.0.2.1"}])
    live = {"event_type": "pool_contact", "src_ip": "192.0.2.9", "src_port": 5000,
            "dest_ip": "203.0.113.7", "dest_port": 443, "community_id": "1:abc=",
            "first_seen": "2026-03-02T10:00:00.000000001Z", "score": 0.7, "via": ["sni"],
            "evidence": {}}  # a live sensor's record: no capture
    assert store.ingest([live]).inserted == 1
    assert store.ingest([{**live, "link_status": "unlinked"}]).duplicates == 1
    assert store.counts()["detections"] == len(records) + 1
    assert store.detections(kind="pool_contact").items[0]["first_seen"] == 1772445600000000001


# --------------------------------------------------------------------------- leads
def test_every_session_lands_on_its_entity(isp_store):
    oracle = json.loads((ISP / "expected.json").read_text())
    leads = isp_store.list_leads(week_start=WEEK, limit=100).items
    assert len(leads) == 12
    by_session = {ev["src"]: lead for lead in leads for ev in lead["evidence"]}
    detections = {f"{d['src_ip']}:{d['src_port']}": d
                  for d in isp_store.detections(limit=100).items}
    assert len(by_session) == len(detections) == len(oracle["sessions"])
    for s in oracle["sessions"]:
        src = f"{s['src_ip']}:{s['src_port']}"
        assert by_session[src]["entity_id"] == s["entity_id"], s["key"]
        assert detections[src]["entity_id"] == s["entity_id"], s["key"]  # written back
        assert detections[src]["link_status"] == ("linked" if s["entity_id"] else "unlinked")
    dc = isp_store.get_lead(by_session["198.51.100.66:45002"]["lead_id"])
    assert dc["entity_name"] == "Harbour Compute Ltd" and dc["datacenter"]
    assert isp_store.get_lead(dc["lead_id"], WEEK + 3 * 86400)["lead_id"] == dc["lead_id"]
    assert isp_store.get_lead(dc["lead_id"], WEEK - 86400) is None
    assert isp_store.get_lead("0123456789abcdef") is None
    assert [h["status"] for h in isp_store.lead_history(dc["lead_id"])] == ["new"]
    assert isp_store.detections(entity_id="E-100").items[0]["src_ip"].startswith("198.51.100.6")


def test_lead_filters(isp_store):
    every = isp_store.list_leads(limit=100).items  # default: the latest week

    def ids(**filters) -> set[str]:
        page = isp_store.list_leads(**{"week_start": WEEK, "limit": 100, **filters})
        assert page.next_cursor is None
        return {x["lead_id"] for x in page.items}

    def where(test) -> set[str]:
        return {x["lead_id"] for x in every if test(x)}

    assert ids(status="new") == where(lambda x: True) and ids(status="gone") == set()
    assert ids(min_confidence=0.9) == where(lambda x: x["confidence"] >= 0.9) != set()
    assert [isp_store.get_lead(i)["entity_id"] for i in ids(entity_type="datacentre")] == [
        "E-100"]
    assert ids(region="Hebei") == where(lambda x: x["region"] == "Hebei") != set()
    assert ids(coin="btc") == where(lambda x: "BTC" in x["coins"]) != set()
    assert ids(coin="XMR") == set()
    assert {isp_store.get_lead(i)["entity_id"] for i in ids(address="198.51.100.20")} == {
        "E-600", "E-610"}
    assert ids(address="198.51.100.0/24") == where(
        lambda x: any(ip["ip"].startswith("198.51.100.") for ip in x["src_ips"]))
    assert ids(address="2001:db8::/32") == where(
        lambda x: any(ip["ip"].startswith("2001:db8:") for ip in x["src_ips"])) != set()
    assert ids(since="2026-03-02T13:00:00Z") == where(
        lambda x: x["last_seen"] >= 1772456400 * 10**9)
    assert ids(week_start=WEEK + 7 * 86400) == set()
    for bad, why in ((dict(address="300.1.2.3/8"), "not an IP address or CIDR"),
                     (dict(sort="colour"), "sort 'colour'"),
                     (dict(status="asleep"), "status 'asleep'"),
                     (dict(min_confidence=2), "min_confidence"),
                     (dict(entity_type="castle"), "entity_type"),
                     (dict(limit=0), "limit"),
                     (dict(cursor="not-a-cursor"), "cursor")):
        with pytest.raises(ValueError, match=why):
            isp_store.list_leads(**bad)
    stats = isp_store.weekly_stats(WEEK)
    assert stats["leads"] == 12 and stats["by_status"] == {"new": 12}
    assert stats["attributed"] == 11
    assert sum(r["leads"] for r in stats["by_region"]) == 12
    assert stats["power_w"] == pytest.approx(sum(x["power_w"] or 0 for x in every))
    assert next(r for r in stats["by_entity_type"] if r["entity_type"] == "datacentre")[
        "leads"] == 1
    isp, _ = isp_records()
    held = isp_store.who_held("192.0.2.50", "2026-03-02T14:00:02Z", isp)
    assert held["subscriber_id"] == "S-3001" and held["entity"]["entity_name"] == "Li Wei"
    assert isp_store.who_held("192.0.2.50", "2026-03-02T10:00:00Z", isp)["entity_id"] == "E-200"
    with pytest.raises(ValueError):
        isp_store.who_held("not-an-ip", WEEK, isp)
    seen, cursor = [], None
    while True:
        page = isp_store.entities(limit=5, cursor=cursor)
        seen += [e["entity_id"] for e in page.items]
        if not (cursor := page.next_cursor):
            break
    assert len(seen) == len(set(seen)) == 12
    assert isp_store.entity("E-100")["subscriber_ids"] == ["S-1001", "S-1002"]


@pytest.mark.parametrize("sort", ["-power_w", "power_w", "-hashrate_hs", "confidence",
                                  "-last_seen", "first_seen"])
def test_cursor_pages_cover_every_lead_once_in_order(isp_store, sort):
    every = isp_store.list_leads(week_start=WEEK, sort=sort, limit=100).items
    name = sort.lstrip("-")
    want = sorted(every, key=lambda x: x["lead_id"])
    want.sort(key=lambda x: -1.0 if x[name] is None else x[name], reverse=sort[0] == "-")
    assert [x["lead_id"] for x in every] == [x["lead_id"] for x in want]
    pages, cursor = [], None
    while True:
        page = isp_store.list_leads(week_start=WEEK, sort=sort, limit=5, cursor=cursor)
        pages.append([x["lead_id"] for x in page.items])
        if not (cursor := page.next_cursor):
            break
    assert [i for p in pages for i in p] == [x["lead_id"] for x in every]
    assert [len(p) for p in pages] == [5, 5, 2]
    first = isp_store.list_leads(week_start=WEEK, sort=sort, limit=5)
    with pytest.raises(ValueError, match="made for sort"):
        isp_store.list_leads(sort="-confidence" if sort != "-confidence" else "confidence",
                             cursor=first.next_cursor)


def test_lead_pages_without_evidence(isp_store):
    full = isp_store.list_leads(week_start=WEEK, limit=7)
    bare = isp_store.list_leads(week_start=WEEK, limit=7, evidence=False)
    assert any(x["evidence"] for x in full.items)
    assert [{k: v for k, v in x.items() if k != "evidence"} for x in full.items] == bare.items
    assert bare.next_cursor == full.next_cursor
    nxt = isp_store.list_leads(cursor=bare.next_cursor, limit=7, evidence=False)
    assert [x["lead_id"] for x in nxt.items] == [
        x["lead_id"] for x in isp_store.list_leads(cursor=full.next_cursor, limit=7).items]


def test_lead_json_fields_left_as_text(isp_store):
    """``json_as_text`` hands JSON fields on undecoded (orjson.Fragment); written out, the page
    is the decoded page, on both backends (PostgreSQL's JSONB text has its own spacing)."""
    import orjson

    from poolwatch.store import LEAD_JSON_FIELDS

    for evidence in (True, False):
        decoded = isp_store.list_leads(week_start=WEEK, limit=9, evidence=evidence)
        raw = isp_store.list_leads(week_start=WEEK, limit=9, evidence=evidence,
                                   json_as_text=LEAD_JSON_FIELDS)
        assert raw.next_cursor == decoded.next_cursor
        some = raw.items[0]
        assert isinstance(some["reasons"], orjson.Fragment)
        assert isinstance(some["sessions"], int)  # not a JSON field: as before
        assert orjson.loads(orjson.dumps(raw.items)) == decoded.items
    part = isp_store.list_leads(week_start=WEEK, limit=3, evidence=False,
                                json_as_text=frozenset({"src_ips"}))
    assert isinstance(part.items[0]["src_ips"], orjson.Fragment)
    assert isinstance(part.items[0]["reasons"], list)
    with pytest.raises(ValueError, match="status are no JSON fields"):
        isp_store.list_leads(json_as_text=frozenset({"status"}))


def test_pages_are_stable_while_leads_are_written(isp_store):
    from sqlalchemy.orm import Session

    from poolwatch.store.models import Lead

    first = isp_store.list_leads(week_start=WEEK, limit=4)
    top = isp_store.get_lead(first.items[0]["lead_id"])
    new_id = "ffffffffffffff01"
    with Session(isp_store.engine) as s, s.begin():  # a lead that sorts before the cursor
        s.add(Lead(**{k: v for k, v in top.items() if k not in ("event_type", "lead_id")},
                   lead_id=new_id))
    try:
        rest, cursor = [], first.next_cursor
        while cursor:
            page = isp_store.list_leads(week_start=WEEK, limit=4, cursor=cursor)
            rest += [x["lead_id"] for x in page.items]
            cursor = page.next_cursor
        seen = [x["lead_id"] for x in first.items] + rest
        assert len(seen) == len(set(seen)) == 12 and new_id not in seen
        assert isp_store.list_leads(week_start=WEEK, limit=100).items[1]["lead_id"] in (
            new_id, top["lead_id"])
    finally:
        with Session(isp_store.engine) as s, s.begin():
            s.query(Lead).filter(Lead.lead_id == new_id).delete()


def test_a_rebuild_replaces_its_week_and_keeps_other_weeks(store):
    isp, records = isp_records()
    store.ingest(records)
    assert store.rebuild_leads(isp, WEEK) == 12
    assert store.rebuild_leads(isp, WEEK + 7 * 86400) == 12
    assert store.rebuild_leads(isp, WEEK) == 12  # again: replaced, not added
    assert store.counts()["leads"] == 24
    assert store.weeks() == [int(WEEK + 7 * 86400) * 10**9, int(WEEK) * 10**9]
    later = store.list_leads(limit=100).items  # the latest week by default
    assert {x["status"] for x in later} == {"dormant"}
    lead = later[0]["lead_id"]
    assert [h["status"] for h in store.lead_history(lead)] == ["new", "dormant"]
    assert store.weekly_stats()["by_status"] == {"dormant": 12}


# --------------------------------------------------------------------------- keys, audit
def test_api_keys_keep_only_the_hash_of_their_secret(store):
    key_id, secret = store.create_key("analyst laptop", "analyst")
    assert len(secret) > 40
    info = store.check_key(secret)
    assert (info.key_id, info.name, info.scope) == (key_id, "analyst laptop", "analyst")
    with store.engine.connect() as conn:
        rows = [tuple(r) for r in conn.execute(text("SELECT * FROM api_keys"))]
    assert rows and not any(secret in str(v) for r in rows for v in r)
    assert hashlib.sha256(secret.encode()).hexdigest() in rows[0]
    assert store.check_key(secret[:-1] + "x") is None and store.check_key("") is None
    assert store.revoke_key(key_id) is True and store.revoke_key(key_id) is False
    assert store.check_key(secret) is None
    assert store.list_keys()[0]["revoked_at"] is not None
    with pytest.raises(ValueError, match="scope"):
        store.create_key("x", "root")


def test_values_beyond_64_bits_refuse_the_batch_naming_record_and_field(store):
    """Times and ports that do not fit the int64 columns are the caller's error (a
    ValueError naming the record and the field), never a database error; nothing of the
    batch is stored."""
    good = {"event_type": "stratum_session", "src_ip": "192.0.2.9", "src_port": 4000,
            "dest_port": 3333, "first_seen": "2026-03-02T10:00:00Z"}
    for bad, field in (({"first_seen": 1e300}, "first_seen"),
                       ({"first_seen": 2**63}, "first_seen"),
                       ({"last_seen": -(2**64)}, "last_seen"),
                       ({"first_seen": None, "timestamp": "9999-01-01"}, "timestamp"),
                       ({"src_port": 10**30}, "src_port"), ({"dest_port": 65536}, "dest_port"),
                       ({"src_port": -1}, "src_port")):
        with pytest.raises(ValueError, match=rf"^record 2: {field} "):
            store.ingest([good, {**good, "src_port": 4001}, {**good, **bad}])
    assert store.counts()["detections"] == 0
    near = {**good, "first_seen": 2**63 - 1, "hashrate_hs": 10**400, "src_port": 65535}
    assert store.ingest([near]).inserted == 1  # the edge fits; a float overflow is no value
    assert store.records()[0]["first_seen"] == 2**63 - 1
    assert store.detection(2**63) is None and store.detection(-(2**63) - 1) is None


def test_nul_in_text_and_json_is_stored_not_a_database_error(store):
    """PostgreSQL holds no NUL in text or JSONB: what goes in has it replaced by U+FFFD
    (SQLite keeps it); lookups with one find nothing instead of failing."""
    nul = "\x00"
    shown = "\ufffd" if store.backend == "postgresql" else nul
    rec = {"event_type": "stratum_session", "src_ip": "192.0.2.9", "src_port": 4000,
           "first_seen": "2026-03-02T10:00:00Z", "login": f"eve{nul}.x", "worker": f"x{nul}",
           "wallet": f"w{nul}", "pool": f"p{nul}", "evidence": {f"k{nul}": [f"v{nul}", 1]}}
    assert store.ingest([rec], idempotency_key=f"b{nul}", source=f"s{nul}").inserted == 1
    assert store.ingest([rec], idempotency_key=f"b{nul}").replayed  # the same key again
    (row,) = store.detections().items
    assert row["login"] == f"eve{shown}.x" and row["evidence"] == {f"k{shown}": [f"v{shown}", 1]}
    key_id, _ = store.create_key(f"team{nul}", "analyst")
    assert store.list_keys()[0]["name"] == f"team{shown}"
    store.audit(key_id, "get_lead", f"t{nul}", f"c{nul}", {f"d{nul}": f"e{nul}"})
    entry = store.audit_entries().items[0]
    assert (entry["target"], entry["client"], entry["details"]) == (
        f"t{shown}", f"c{shown}", {f"d{shown}": f"e{shown}"})
    assert store.get_lead(f"lead{nul}") is None
    assert store.detections(entity_id=f"E{nul}").items == []
    assert store.entities(entity_id=f"E{nul}").items == []
    assert store.list_leads(region=f"r{nul}", pool=f"p{nul}").items == []


def test_entities_by_id(isp_store):
    assert [e["entity_id"] for e in isp_store.entities(entity_id="E-300").items] == ["E-300"]
    assert isp_store.entities(entity_id="E-300").items[0]["subscriber_ids"] == ["S-3001"]
    assert isp_store.entities(entity_id="nobody").items == []


def test_the_audit_log_refuses_updates_and_deletes_in_the_database(store):
    key_id, _ = store.create_key("investigator", "investigator")
    ids = [store.audit(key_id, "get_lead", f"lead-{i}", "198.51.100.7", {"n": i})
           for i in range(5)]
    for sql in ("UPDATE audit_log SET action = 'nothing'", "DELETE FROM audit_log",
                *(["TRUNCATE audit_log"] if store.backend == "postgresql" else [])):
        with pytest.raises(DBAPIError, match="append-only"):
            with store.engine.begin() as conn:
                conn.execute(text(sql))
    assert not hasattr(store, "delete_audit") and not hasattr(store, "update_audit")
    pages, cursor = [], None
    while True:
        page = store.audit_entries(limit=2, cursor=cursor)
        pages += page.items
        if not (cursor := page.next_cursor):
            break
    assert [e["id"] for e in pages] == ids[::-1]  # newest first, all there, unchanged
    assert pages[-1]["action"] == "get_lead" and pages[-1]["details"] == {"n": 0}
    assert store.audit_entries(action="nothing").items == []


# --------------------------------------------------------------------------- CLI
@pytest.mark.parametrize("bad", [
    "postgresql://postgres:hunter2@127.0.0.1:1/test",  # nobody listens
    "postgres://analyst:hunter2@[::1/x",  # not a URL
    "mysql://root:hunter2@127.0.0.1/test",  # not a store poolwatch keeps
    "sqlite:////no/such/directory/store.db",
])
def test_a_bad_store_url_is_one_line_without_the_password(bad):
    for args in (("scan", CGMINER, "--db", bad, "-f", "jsonl"), ("db", "status", "--db", bad),
                 ("db", "upgrade", "--db", bad), ("leads", "--db", bad)):
        result = run(*args)
        assert result.exit_code == 2, (args, result.output)
        lines = [x for x in result.output.splitlines() if x.strip()]
        assert len(lines) == 1 and lines[0].startswith("error: "), result.output
        assert "hunter2" not in result.output


def test_the_schema_head_known_without_alembic_is_alembics():
    """``head_revision`` answers without importing alembic: it must name the newest
    migration, or a new migration would leave every store "up to date" without it."""
    from alembic.script import ScriptDirectory
    from poolwatch.store.db import alembic_config

    assert head_revision() == ScriptDirectory.from_config(alembic_config()).get_current_head()


def test_the_cli_creates_sqlite_stores_and_refuses_outdated_ones(tmp_path, monkeypatch):
    from poolwatch.store import db

    url = f"sqlite:///{tmp_path / 'new.db'}"
    made = run("scan", CGMINER, "--db", url, "-f", "jsonl", "--no-progress")
    assert made.exit_code == 0 and "1 new detection(s)" in made.output
    status = run("db", "status", "--db", url)
    assert status.exit_code == 0 and "schema: 0002, latest 0002" in status.output
    assert "detections: 1" in status.output
    monkeypatch.setattr(db, "head_revision", lambda: "0003")
    monkeypatch.setattr(db, "_known_revisions", lambda: {"0001", "0002", "0003"})
    old = run("scan", CGMINER, "--db", url, "-f", "jsonl")
    assert old.exit_code == 2 and "poolwatch db upgrade" in old.output
    assert len(old.output.strip().splitlines()) == 1
    assert run("db", "status", "--db", url).exit_code == 1
    monkeypatch.setenv("POOLWATCH_DB", url)
    assert run("scan", CGMINER, "--no-store", "-f", "jsonl").exit_code == 0


def test_the_cli_needs_an_upgraded_postgresql_schema(tmp_path):
    url = fresh_url("postgresql", tmp_path)
    bare = run("scan", CGMINER, "--db", url, "-f", "jsonl")
    assert bare.exit_code == 2 and "poolwatch db upgrade" in bare.output
    assert run("db", "upgrade", "--db", url).exit_code == 0
    assert run("scan", CGMINER, "--db", url, "-f", "jsonl", "--no-progress").exit_code == 0
    assert run("db", "status", "--db", url).exit_code == 0


def test_leads_reads_the_store(tmp_path):
    url = f"sqlite:///{tmp_path / 'isp.db'}"
    with Store.open(url) as s:
        s.ingest(isp_records()[1])
    out = tmp_path / "leads.jsonl"
    result = run("leads", "--db", url, "--subscribers", ISP, "--week", "2026-03-02", "-f",
                 "jsonl", "-o", out)
    assert result.exit_code == 0, result.output
    assert "13 detection(s) -> 12 lead(s), 11 attributed" in result.output
    rows = [json.loads(x) for x in out.read_text().splitlines()]
    assert len(rows) == 12 and rows[0]["first_seen"].endswith("Z")
    with Store.open(url) as s:
        assert s.counts()["leads"] == 12
    # a capture given as well is scanned and stored; --no-store leaves the store as it was
    again = run("leads", CGMINER, "--db", url, "--subscribers", ISP, "--no-store", "-f", "jsonl")
    assert again.exit_code == 0 and "14 detection(s) -> 13 lead(s)" in again.output
    with Store.open(url) as s:
        assert s.counts()["detections"] == 13
    assert run("leads").exit_code == 2
