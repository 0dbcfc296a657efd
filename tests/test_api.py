"""The lead API over a real uvicorn server and a real store (SQLite and PostgreSQL)."""

from __future__ import annotations

import json
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


def test_cli_keys_and_serve_over_tls(tmp_path):
    """`poolwatch keys create` then `poolwatch serve --certfile/--keyfile`: a real process,
    HTTPS on loopback."""
    import shutil
    import subprocess
    import sys

    from typer.testing import CliRunner

    from poolwatch.cli import app

    if shutil.which("openssl") is None:
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
        deadline = time.monotonic() + 60
        while True:
            try:
                health = httpx.get(base + "/health", verify=trust, timeout=2)
                break
            except httpx.TransportError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise AssertionError(proc.stdout.read().decode() if proc.poll() is not None
                                         else "serve did not start") from None
                time.sleep(0.2)
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
