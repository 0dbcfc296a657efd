"""The lead API over a real uvicorn server and a real store (SQLite and PostgreSQL)."""

from __future__ import annotations

import json
import os
import socket
import threading
import time
from pathlib import Path

import httpx
import pytest

from .test_store import _schemas, backend_urls, drop_schemas, fresh_store

uvicorn = pytest.importorskip("uvicorn")

ROOT = Path(__file__).resolve().parent.parent
ISP = ROOT / "pcaps" / "isp"
WEEK = "2026-03-02"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """uvicorn in a thread on 127.0.0.1 (a real socket, real HTTP)."""

    def __init__(self, app) -> None:
        self.port = _free_port()
        config = uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning",
                                lifespan="off")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> str:
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            if time.monotonic() > deadline:
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.02)
        return f"http://127.0.0.1:{self.port}"

    def __exit__(self, *exc) -> None:
        self.server.should_exit = True
        self.thread.join(10)


@pytest.fixture(scope="module", params=backend_urls(), ids=["sqlite", "postgresql"])
def served(request, tmp_path_factory):
    """A store holding the synthetic ISP's sessions and leads, served over HTTP; keys for
    every scope."""
    from poolwatch.link.inputs import load_isp_records
    from poolwatch.scan import scan_sessions
    from poolwatch_api import create_app

    made = len(_schemas)
    store = fresh_store(request.param, tmp_path_factory.mktemp("api"))
    isp = load_isp_records([ISP])
    store.ingest([s.as_dict() for s in scan_sessions(sorted(ISP.glob("*.pcap")))])
    store.load_registry(isp)
    store.rebuild_leads(isp, week_start=1772409600.0)
    keys = {scope: store.create_key(f"test-{scope}", scope)[1]
            for scope in ("sensor", "analyst", "investigator", "admin")}
    app = create_app(store, isp_loader=lambda: isp, rate=1000, burst=1000)
    with Server(app) as base:
        yield base, keys, store
    store.close()
    drop_schemas(_schemas[made:])


def get(base, path, key=None, **params):
    headers = {"X-API-Key": key} if key else {}
    return httpx.get(base + path, params=params, headers=headers, timeout=30)


def test_keys_and_scopes(served):
    base, keys, _ = served
    assert get(base, "/health").json()["status"] == "ok"
    assert get(base, "/v1/leads").status_code == 401
    assert get(base, "/v1/leads", "not-a-key").status_code == 401
    assert get(base, "/v1/leads", keys["sensor"]).status_code == 403
    assert get(base, "/v1/leads/0123456789abcdef", keys["sensor"]).status_code == 403  # no leak
    assert get(base, "/v1/leads/0123456789abcdef").status_code == 401
    assert get(base, "/v1/audit", keys["investigator"]).status_code == 403
    assert get(base, "/v1/leads", keys["analyst"]).status_code == 200


def test_lead_pages_carry_evidence_only_when_asked(served):
    base, keys, _ = served
    k = keys["investigator"]
    bare = get(base, "/v1/leads", k, week=WEEK, limit=100).json()["items"]
    full = get(base, "/v1/leads", k, week=WEEK, limit=100, evidence="true").json()["items"]
    assert bare and all("evidence" not in x for x in bare)
    assert all(x["evidence"] for x in full)
    assert [{k2: v for k2, v in x.items() if k2 != "evidence"} for x in full] == bare
    one = get(base, f"/v1/leads/{bare[0]['lead_id']}", k, week=WEEK).json()
    assert one["evidence"] == full[0]["evidence"]  # the detail always has it
    assert get(base, "/v1/leads", k, evidence="maybe").status_code == 422


def test_analysts_see_redacted_leads_investigators_are_audited(served):
    base, keys, _ = served
    analyst = get(base, "/v1/leads", keys["analyst"], week=WEEK, limit=100).json()["items"]
    assert len(analyst) == 12
    text = json.dumps(analyst, ensure_ascii=False)
    assert "Harbour Compute" not in text and "河北" not in text.replace('"region"', "")[:0] + ""
    dc = next(x for x in analyst if x["entity_id"] == "E-100")
    assert dc["entity_name"] == "[redacted]" and dc["subscriber_ids"] == []
    before = get(base, "/v1/audit", keys["admin"], limit=500).json()["items"]
    full = get(base, f"/v1/leads/{dc['lead_id']}", keys["investigator"]).json()
    assert full["entity_name"] == "Harbour Compute Ltd" and full["datacenter"]
    after = get(base, "/v1/audit", keys["admin"], limit=500).json()["items"]
    assert len(after) == len(before) + 1
    assert any(e["action"] == "get_lead" and dc["lead_id"] in e["target"] for e in after)


def test_filters_pagination_and_bad_requests(served):
    base, keys, _ = served
    k = keys["analyst"]
    seen, cursor = [], None
    while True:
        params = {"week": WEEK, "limit": 5, **({"cursor": cursor} if cursor else {})}
        page = get(base, "/v1/leads", k, **params).json()
        seen += [x["lead_id"] for x in page["items"]]
        cursor = page["next_cursor"]
        if not cursor:
            break
    assert len(seen) == len(set(seen)) == 12
    dcs = get(base, "/v1/leads", k, week=WEEK, entity_type="datacentre").json()["items"]
    assert [x["entity_id"] for x in dcs] == ["E-100"]
    cgnat = get(base, "/v1/leads", k, week=WEEK, address="198.51.100.20/32").json()["items"]
    assert {x["entity_id"] for x in cgnat} == {"E-600", "E-610"}
    assert get(base, "/v1/leads", k, address="300.1.2.3/8").status_code in (400, 422)
    assert get(base, "/v1/leads", k, colour="red").status_code == 422  # unknown filter
    assert get(base, "/v1/leads", k, limit=100000).status_code == 422
    r = httpx.post(base + "/v1/ingest", headers={"X-API-Key": keys["sensor"],
                                                 "Content-Type": "application/json"},
                   content=b" " * (9 * 1024 * 1024), timeout=30)
    assert r.status_code == 413 and "larger than" in r.json()["detail"]


def test_sensor_ingest_is_idempotent(served):
    from poolwatch.scan import scan_sessions

    base, keys, store = served
    records = [s.as_dict() for s in scan_sessions([ROOT / "pcaps" / "stratum" /
                                                   "stratum_v1_cgminer_sha256d.pcap"])]
    body = json.loads(json.dumps({"records": records}, default=str))
    hdr = {"X-API-Key": keys["sensor"], "Idempotency-Key": "batch-0001"}
    first = httpx.post(base + "/v1/ingest", json=body, headers=hdr, timeout=30).json()
    again = httpx.post(base + "/v1/ingest", json=body, headers=hdr, timeout=30).json()
    assert first["inserted"] == 1 and again["replayed"] and again["inserted"] == 1
    other = httpx.post(base + "/v1/ingest", json=body, timeout=30,
                       headers={**hdr, "Idempotency-Key": "batch-0002"}).json()
    assert other["inserted"] == 0 and other["duplicates"] == 1


def test_who_held_stats_exports_and_metrics(served):
    base, keys, _ = served
    inv = keys["investigator"]
    held = get(base, "/v1/addresses/192.0.2.50", inv, at="2026-03-02T14:01:00Z").json()
    assert held["subscriber_id"] == "S-3001" and held["mining"]
    assert [d["src_port"] for d in held["detections_at"]] == [49180]
    earlier = get(base, "/v1/addresses/192.0.2.50", inv, at="2026-03-02T03:00:00Z").json()
    assert earlier["subscriber_id"] == "S-2001" and not earlier["mining"]
    assert get(base, "/v1/addresses/192.0.2.50", keys["analyst"],
               at="2026-03-02T14:00:02Z").status_code == 403
    stats = get(base, "/v1/stats/weekly", keys["analyst"], week=WEEK).json()
    assert json.dumps(stats)
    stix = get(base, "/v1/exports/leads", keys["analyst"], week=WEEK, format="stix")
    assert stix.status_code == 200 and '"type": "bundle"' in stix.text.replace('":"', '": "')
    assert "Harbour Compute" not in stix.text
    csv = get(base, "/v1/exports/leads", keys["analyst"], week=WEEK, format="csv")
    assert csv.text.splitlines()[0].startswith("lead_id,")
    metrics = get(base, "/metrics").text
    assert 'poolwatch_http_requests_total{route="/v1/leads"' in metrics


def _started(proc, base: str, **kw) -> httpx.Response:
    """The /health answer of a `poolwatch serve` process once it listens (its output when it
    exits first)."""
    deadline = time.monotonic() + 60
    while True:
        try:
            return httpx.get(base + "/health", timeout=2, **kw)
        except httpx.TransportError:
            if time.monotonic() > deadline or proc.poll() is not None:
                raise AssertionError(proc.stdout.read().decode() if proc.poll() is not None
                                     else "serve did not start") from None
            time.sleep(0.2)


def test_cli_keys_and_serve_over_tls(tmp_path):
    """`poolwatch keys create` then `poolwatch serve --certfile/--keyfile`: a real process,
    HTTPS on loopback."""
    import shutil
    import subprocess
    import sys

    from typer.testing import CliRunner

    from poolwatch.cli import app

    if shutil.which("openssl") is None:
        if os.environ.get("CI") == "true":
            pytest.fail("openssl is not installed (CI must have it)")
        pytest.skip("openssl is not installed (needed to make a test certificate)")
    db = f"sqlite:///{tmp_path / 'leads.db'}"
    runner = CliRunner()
    made = runner.invoke(app, ["keys", "create", "--scope", "analyst", "--name", "t",
                               "--db", db])
    assert made.exit_code == 0, made.output
    secret = made.stdout.strip().splitlines()[-1]
    listed = runner.invoke(app, ["keys", "list", "--db", db])
    assert "analyst" in listed.stdout and secret not in listed.stdout
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True)
    import ssl

    trust = ssl.create_default_context(cafile=str(cert))
    port = _free_port()
    proc = subprocess.Popen([sys.executable, "-m", "poolwatch.cli", "serve", "--db", db,
                             "--port", str(port), "--certfile", str(cert), "--keyfile",
                             str(key)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        base = f"https://127.0.0.1:{port}"
        health = _started(proc, base, verify=trust)
        assert health.json()["status"] == "ok"
        r = httpx.get(base + "/v1/leads", headers={"X-API-Key": secret}, verify=trust)
        assert r.status_code == 200 and r.json() == {"items": [], "next_cursor": None}
        assert runner.invoke(app, ["keys", "revoke", "1", "--db", db]).exit_code == 0
        r = httpx.get(base + "/v1/leads", headers={"X-API-Key": secret}, verify=trust)
        assert r.status_code == 401
    finally:
        proc.terminate()
        proc.wait(10)


def test_evidence_pcap_of_a_session(served):
    import dpkt

    base, keys, _ = served
    page = get(base, "/v1/sessions", keys["investigator"], limit=50).json()
    item = next(x for x in page["items"] if x.get("src_ip") == "192.0.2.50")
    sid = item["id"]
    assert get(base, f"/v1/sessions/{sid}/pcap", keys["analyst"]).status_code == 403
    r = get(base, f"/v1/sessions/{sid}/pcap", keys["investigator"])
    assert r.status_code == 200 and r.headers["content-type"] == "application/vnd.tcpdump.pcap"
    assert len(r.headers["X-Capture-SHA256"]) == 64 and r.headers["X-Frames"]
    packets = list(dpkt.pcap.Reader(__import__("io").BytesIO(r.content)))
    assert len(packets) == int(r.headers["X-Poolwatch-Packets"]) > 10
    assert get(base, "/v1/sessions/999999/pcap", keys["investigator"]).status_code == 404


# ------------------------------------------------------------- bad requests are 4xx, not 500
INT64_MAX = 2**63 - 1


def test_ids_beyond_64_bits_and_nul_characters_are_refused(served):
    """Neither reaches the database: a path id past int64 (the store's ids are int64) and
    NUL in a path or query value (PostgreSQL cannot hold it) are a 422 naming the value."""
    base, keys, _ = served
    inv = keys["investigator"]
    for sid in (2**63, 2**64, 10**30):
        r = get(base, f"/v1/sessions/{sid}/pcap", inv)
        assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["path",
                                                                          "detection_id"]
    assert get(base, f"/v1/sessions/{INT64_MAX}/pcap", inv).status_code == 404
    assert get(base, "/v1/sessions/0/pcap", inv).status_code == 422
    r = get(base, "/v1/leads/7e277d8e%00", inv)
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["path", "lead_id"]
    for path, name in (("/v1/leads", "region"), ("/v1/leads", "pool"), ("/v1/leads", "coin"),
                       ("/v1/leads", "cursor"), ("/v1/exports/leads", "region"),
                       ("/v1/sessions", "entity_id"), ("/v1/contacts", "cursor"),
                       ("/v1/entities", "entity_id"), ("/v1/audit", "cursor")):
        r = get(base, path, keys["admin"], **{name: "E-3\x0000"})
        assert r.status_code == 422, (path, name, r.status_code, r.text)
        assert r.json()["detail"][0]["loc"] == ["query", name]


def _post(base, path, key, body, **headers):
    return httpx.post(base + path, json=body, headers={"X-API-Key": key, **headers},
                      timeout=30)


def test_ingest_refuses_values_beyond_64_bits_with_the_record_and_field(served):
    base, keys, store = served
    good = {"event_type": "stratum_session", "src_ip": "192.0.2.77", "src_port": 40000,
            "dest_ip": "203.0.113.31", "dest_port": 3333,
            "first_seen": "2026-03-09T10:00:00Z", "last_seen": "2026-03-09T10:05:00Z"}
    before = store.counts()["detections"]
    for bad, field in (({"first_seen": 1e300}, "first_seen"),
                       ({"last_seen": -1e300}, "last_seen"),
                       ({"timestamp": 2**70, "first_seen": None}, "timestamp"),
                       ({"first_seen": "9999-12-31T00:00:00Z"}, "first_seen"),
                       ({"src_port": 10**30}, "src_port"),
                       ({"dest_port": -(2**64)}, "dest_port")):
        r = _post(base, "/v1/ingest", keys["sensor"], {"records": [good, {**good, **bad}]})
        assert r.status_code == 400, (bad, r.status_code, r.text)
        assert r.json()["detail"].startswith(f"record 1: {field}"), r.json()
    assert store.counts()["detections"] == before  # the whole batch was refused


def test_nul_characters_in_bodies_are_stored_not_a_server_error(served):
    """A miner may send NUL in a login: the sensor's batch is stored (on PostgreSQL with
    U+FFFD in place of NUL, docs/store.md), and so is a key name with one."""
    base, keys, store = served
    nul = "\x00"
    shown = "\ufffd" if store.backend == "postgresql" else nul
    made = _post(base, "/v1/keys", keys["admin"], {"name": f"team{nul}7", "scope": "analyst"})
    assert made.status_code == 201, made.text
    assert f"team{shown}7" in [k["name"] for k in store.list_keys()]
    rec = {"event_type": "stratum_session", "src_ip": "192.0.2.78", "src_port": 40001,
           "dest_ip": "203.0.113.31", "dest_port": 3333, "first_seen": "2026-03-10T10:00:00Z",
           "last_seen": "2026-03-10T10:01:00Z", "login": f"mallory{nul}.rig", "worker": f"rig{nul}",
           "evidence": {"lines": [{"frame": 1, "dir": "c2s", "text": f'["mallory{nul}.rig"]'}],
                        f"k{nul}": [f"v{nul}"]}}
    r = _post(base, "/v1/ingest", keys["sensor"], {"records": [rec]})
    assert r.status_code == 200 and r.json()["inserted"] == 1, r.text
    page = get(base, "/v1/sessions", keys["investigator"], since="2026-03-10").json()["items"]
    got = next(x for x in page if x["src_ip"] == "192.0.2.78")
    assert got["login"] == f"mallory{shown}.rig" and got["worker"] == f"rig{shown}"
    assert got["evidence"][f"k{shown}"] == [f"v{shown}"]


# ------------------------------------------------------------------------------ privacy
def test_analysts_get_no_personal_data_inside_reasons_or_exports(served):
    """Reasons quote who held an address ("held by user liwei88") and the entity: for
    analysts the personal token is `[redacted]`, the rest of the reason stays; lists, the
    single lead and every export format alike."""
    base, keys, store = served
    inv = get(base, "/v1/leads", keys["investigator"], week=WEEK, limit=100).json()["items"]
    personal = {v for x in inv for k in ("entity_name", "registration_number", "address")
                if (v := x[k])} | {s for x in inv for s in x["subscriber_ids"]} | {
        w for x in inv for w in x["wallets"]}
    logins = {d["login"].split(".")[0] for d in store.detections(limit=500).items
              if d.get("login")}
    assert "liwei88" in logins and len(personal) > 20
    home = next(x for x in inv if x["entity_id"] == "E-300")
    assert any("held by user liwei88 from" in r for r in home["reasons"])

    def clean(text: str, what: str) -> None:
        for value in personal | logins:
            assert value not in text and json.dumps(value)[1:-1] not in text, (what, value)

    k = keys["analyst"]
    page = get(base, "/v1/leads", k, week=WEEK, limit=100, evidence="true").json()["items"]
    clean(json.dumps(page), "list")
    mine = next(x for x in page if x["lead_id"] == home["lead_id"])
    assert any(r.startswith("radius record") and "held by user [redacted] from 2026-03-02"
               in r for r in mine["reasons"])  # the reason stays, the user goes
    assert any(r.startswith("1 detection(s) linked to [redacted] (best link")
               for r in mine["reasons"])
    one = get(base, f"/v1/leads/{home['lead_id']}", k).json()
    clean(json.dumps(one), "one lead")
    assert one["reasons"] == mine["reasons"]
    for fmt in ("jsonl", "csv", "stix"):
        r = get(base, "/v1/exports/leads", k, week=WEEK, limit=100, format=fmt)
        assert r.status_code == 200
        clean(r.text, fmt)
    full = get(base, "/v1/exports/leads", keys["investigator"], week=WEEK, format="stix").text
    assert "bc1q" in full  # investigators' STIX keeps the wallets


def _strings(value) -> str:
    """Every string (keys too) inside a JSON value, one a line, as they are."""
    if isinstance(value, str):
        return value
    if isinstance(value, dict):
        return "\n".join(f"{k}\n{_strings(v)}" for k, v in value.items())
    if isinstance(value, list):
        return "\n".join(_strings(v) for v in value)
    return ""


def test_analysts_get_no_logins_or_wallets_inside_evidence_lines(served):
    base, keys, _ = served
    for path in ("/v1/sessions", "/v1/contacts"):
        inv = get(base, path, keys["investigator"], limit=500).json()["items"]
        ana = get(base, path, keys["analyst"], limit=500).json()["items"]
        assert [x["id"] for x in inv] == [x["id"] for x in ana]
        assert inv or path == "/v1/contacts"  # the sample ISP has no pool contacts
        for full, red in zip(inv, ana):
            assert not {"login", "wallet", "subscriber_id"} & set(red)
            text = _strings(red)
            for name in ("login", "wallet"):
                if full.get(name):
                    assert full[name] in _strings(full["evidence"])  # was there
                    assert full[name] not in text, (path, name, full[name])
    lines = [ln["text"] for x in get(base, "/v1/sessions", keys["analyst"], limit=500)
             .json()["items"] for ln in x["evidence"].get("lines", [])]
    assert any('"mining.authorize", "params": ["[redacted]", "x"]' in t for t in lines)


def test_investigators_reads_of_sessions_and_contacts_are_audited(served):
    base, keys, _ = served
    admin = keys["admin"]
    contact = {"event_type": "pool_contact", "src_ip": "10.2.1.10", "src_port": 50110,
               "dest_ip": "203.0.113.60", "dest_port": 17373, "pool": "2Miners",
               "first_seen": "2026-03-11T14:00:00Z", "last_seen": "2026-03-11T14:08:01Z"}
    assert _post(base, "/v1/ingest", keys["sensor"], {"records": [contact]}).status_code == 200
    before = get(base, "/v1/audit", admin, limit=1).json()["items"][0]["id"]
    sessions = get(base, "/v1/sessions", keys["investigator"], limit=3).json()["items"]
    contacts = get(base, "/v1/contacts", keys["investigator"], limit=3).json()["items"]
    get(base, "/v1/sessions", keys["analyst"], limit=3)  # no personal data: not audited
    new = [e for e in get(base, "/v1/audit", admin, limit=50).json()["items"]
           if e["id"] > before]
    by_action = {e["action"]: e for e in new}
    assert set(by_action) == {"list_sessions", "list_contacts"}, new
    assert by_action["list_sessions"]["target"] == ",".join(str(x["id"]) for x in sessions)
    assert by_action["list_contacts"]["target"] == ",".join(str(x["id"]) for x in contacts)
    assert by_action["list_sessions"]["client"] == "127.0.0.1"
    assert by_action["list_sessions"]["details"]["n"] == 3
    assert by_action["list_sessions"]["details"]["subscriber_ids"] == sorted(
        {x["subscriber_id"] for x in sessions if x["subscriber_id"]})


def test_entity_and_audit_filters_are_used_or_refused(served):
    base, keys, _ = served
    k = keys["admin"]
    one = get(base, "/v1/entities", k, entity_id="E-300").json()
    assert [x["entity_id"] for x in one["items"]] == ["E-300"] and one["next_cursor"] is None
    assert get(base, "/v1/entities", k, entity_id="E-nobody").json()["items"] == []
    for name in ("since", "until"):
        r = get(base, "/v1/entities", k, **{name: "2026-03-02"})
        assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["query", name]
    r = get(base, "/v1/audit", k, entity_id="E-300")
    assert r.status_code == 422 and r.json()["detail"][0]["type"] == "extra_forbidden"
    assert get(base, "/v1/audit", k, since="2261-01-01").json()["items"] == []
    assert get(base, "/v1/audit", k, until="1971-01-01").json()["items"] == []
    assert get(base, "/v1/audit", k, since="2026-01-01").json()["items"]


def test_analysts_entities_have_the_fields_entities_have(served):
    base, keys, _ = served
    full = get(base, "/v1/entities", keys["investigator"], limit=100).json()["items"]
    red = get(base, "/v1/entities", keys["analyst"], limit=100).json()["items"]
    assert [set(x) for x in red] == [set(x) for x in full] and "candidates" not in red[0]
    assert all(x["subscriber_ids"] == [] and x["entity_name"] in (None, "[redacted]")
               for x in red)


REASONS = [  # (a reason as the linker writes it, what an analyst gets)
    (("radius record r:1: 192.0.2.5/32 held by user li wei from 2026-03-02T00:00:00Z to open "
     "end"),
     ("radius record r:1: 192.0.2.5/32 held by user [redacted] from 2026-03-02T00:00:00Z to "
     "open end")),
    (("static record s:2: 198.51.100.0/29 held by subscriber S-1 from 2025-01-01T00:00:00Z to "
     "open end, through CGNAT to 100.64.0.1"),
     ("static record s:2: 198.51.100.0/29 held by subscriber [redacted] from "
     "2025-01-01T00:00:00Z to open end, through CGNAT to 100.64.0.1")),
    (("ambiguous: 2 different subscribers held 192.0.2.1 at 2026-03-02T10:00:00Z: S-1 and "
     "user 'bob' (not in the registry)"),
     "ambiguous: 2 different subscribers held 192.0.2.1 at 2026-03-02T10:00:00Z: [redacted]"),
    ("corroborated by dhcp and radius for S-3001",
     "corroborated by dhcp and radius for [redacted]"),
    ("RADIUS user 'eve' is not in the registry",
     "RADIUS user '[redacted]' is not in the registry"),
    ("MAC 00:11:22:33:44:55 is not in the registry", "MAC [redacted] is not in the registry"),
    ("2 detection(s) linked to Harbour Compute Ltd (best link 1.00)",
     "2 detection(s) linked to [redacted] (best link 1.00)"),
    ("paid to bc1qexamplewallet and S-77 (S-770 is another)",
     "paid to [redacted] and [redacted] (S-770 is another)"),
    ("energy per day assumes the estimated draw runs all day",
     "energy per day assumes the estimated draw runs all day"),
]


@pytest.mark.parametrize(("reason", "shown"), REASONS)
def test_reasons_keep_their_sense_without_the_personal_token(reason, shown):
    from poolwatch_api.app import redact_text

    assert redact_text(reason, ["bc1qexamplewallet", "S-77"]) == shown


def test_serve_with_worker_processes(tmp_path):
    """`poolwatch serve --workers 2`: two processes on one port, one store; SIGTERM to the
    parent stops them all."""
    import signal
    import subprocess
    import sys

    from typer.testing import CliRunner

    from poolwatch.cli import app

    db = f"sqlite:///{tmp_path / 'leads.db'}"
    runner = CliRunner()
    made = runner.invoke(app, ["keys", "create", "--scope", "analyst", "--name", "w", "--db", db])
    assert made.exit_code == 0, made.output
    secret = made.stdout.strip().splitlines()[-1]
    port = _free_port()
    proc = subprocess.Popen([sys.executable, "-m", "poolwatch.cli", "serve", "--db", db,
                             "--port", str(port), "--workers", "2", "--rate", "1000"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        _started(proc, base)
        children = Path(f"/proc/{proc.pid}/task/{proc.pid}/children").read_text().split()
        assert len(children) == 2
        # a new connection each time: the kernel hands them to either worker
        codes = [httpx.get(base + "/v1/leads", headers={"X-API-Key": secret}).status_code
                 for _ in range(20)]
        assert codes == [200] * 20
        assert runner.invoke(app, ["keys", "revoke", "1", "--db", db]).exit_code == 0
        codes = [httpx.get(base + "/v1/leads", headers={"X-API-Key": secret}).status_code
                 for _ in range(10)]
        assert codes == [401] * 10  # both workers read the one store
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
        assert not any(Path(f"/proc/{c}").exists() for c in children)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)


def test_json_fallbacks_for_what_orjson_refuses():
    """Pages are written by orjson and JSON columns read by it; what orjson refuses (integers
    past 64 bits, non-string keys; NaN that ``json.dumps`` wrote into a column) goes through
    the stdlib instead of failing the request."""
    from poolwatch.jsontext import loads as _json_loads
    from poolwatch_api.app import FastJSONResponse

    assert FastJSONResponse({"a": [1, "x"]}).body == b'{"a":[1,"x"]}'
    assert json.loads(FastJSONResponse({"big": 2**70}).body) == {"big": 2**70}
    assert json.loads(FastJSONResponse({1: "one"}).body) == {"1": "one"}
    assert _json_loads('["a", 1]') == ["a", 1]
    nan = _json_loads(json.dumps([float("nan")]))[0]
    assert nan != nan
    assert _json_loads(json.dumps(2**63 + 1)) == 2**63 + 1  # exact up to 2^64
    assert _json_loads(json.dumps(2**70 + 1)) == float(2**70)  # beyond: a float (jsontext)
