"""Leads: detections linked to entities through ISP records (leads.py, poolwatch leads)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from poolwatch.cli import app
from poolwatch.leads import _status, _time_weighted, build_leads
from poolwatch.link.inputs import load_isp_records
from poolwatch.link.model import LinkInputError

ROOT = Path(__file__).resolve().parent.parent
CGMINER = ROOT / "pcaps" / "stratum" / "stratum_v1_cgminer_sha256d.pcap"
DAY = 86400.0


def session(src: str, port: int, first: str, last: str, **kw) -> dict:
    return {"event_type": "stratum_session", "src_ip": src, "src_port": port,
            "dest_ip": "203.0.113.11", "dest_port": 3333, "first_seen": first,
            "last_seen": last, "community_id": "1:x", "worker": kw.pop("worker", "w1"),
            "evidence": {"capture": "c.pcap", "capture_sha256": "ab" * 32, "frames": [1]},
            **kw}


@pytest.fixture
def isp(tmp_path) -> Path:
    (tmp_path / "registry.csv").write_text(
        "subscriber_id,entity_id,entity_name,entity_type,registration_number,address,region,"
        "meter_id,username\n"
        "S1,E1,青山数据服务有限公司,数据中心,91110000MA0001,北京市青山路1号,Beijing,M1,\n"
        "S2,E2,Li Wei,residential,,2 River St,South,,liwei\n"
        "S3,E3,Starlight Netbar,internet cafe,9111X,3 Main St,South,,netbar\n", "utf-8")
    (tmp_path / "static.csv").write_text(
        "network,subscriber_id,valid_from,valid_to\n"
        "203.0.113.8/29,S1,2026-01-01T00:00:00Z,\n")
    (tmp_path / "meters.csv").write_text(
        "meter_id,period_start,period_end,kwh\n"
        "M1,2026-03-02T00:00:00Z,2026-03-09T00:00:00Z,1344\n")  # 8 kW all week
    (tmp_path / "cgnat.csv").write_text(
        "public_ip,port_start,port_end,private_ip,allocated_at,released_at\n"
        "198.51.100.20,2048,3071,100.64.1.20,2026-03-02T00:00:00Z,\n")
    (tmp_path / "static-private.csv").write_text(
        "network,subscriber_id,valid_from,valid_to\n"
        "100.64.1.20/32,S2,2026-03-01T00:00:00Z,2026-03-03T00:00:00Z\n"
        "192.0.2.50/32,S3,2026-03-02T00:00:00Z,2026-03-02T12:00:00Z\n"
        "192.0.2.50/32,S2,2026-03-02T12:00:00Z,2026-03-03T00:00:00Z\n")
    (tmp_path / "README.txt").write_text("not a record file\n")
    return tmp_path


def test_time_weighted_sums_concurrent_sessions_only():
    assert _time_weighted([(0, 10, 5.0), (0, 10, 3.0)]) == 8.0  # two miners at once
    assert _time_weighted([(0, 10, 5.0), (20, 30, 5.0)]) == 5.0  # one miner seen twice
    assert _time_weighted([(0, 10, 4.0), (5, 15, 4.0)]) == pytest.approx(
        (4 * 5 + 8 * 5 + 4 * 5) / 15)
    assert _time_weighted([]) is None


def test_status_for_the_reporting_week():
    week = 1000 * DAY
    assert _status(week + DAY, week + 2 * DAY, week) == "new"
    assert _status(week - 3 * DAY, week + DAY, week) == "active"
    assert _status(week - 20 * DAY, week - 10 * DAY, week) == "dormant"
    assert _status(week - 60 * DAY, week - 40 * DAY, week) == "gone"


def test_leads_link_static_cgnat_and_changing_owners(isp):
    records = load_isp_records([isp])
    assert [p for p, _ in records.skipped_files] == [str(isp / "README.txt")]
    dets = [
        session("203.0.113.9", 40001, "2026-03-02T10:00:00Z", "2026-03-02T11:00:00Z",
                hashrate_hs=100e12, power_w=3000.0, worker="s19-a"),
        session("203.0.113.10", 40002, "2026-03-02T10:30:00Z", "2026-03-02T11:00:00Z",
                hashrate_hs=100e12, power_w=3000.0, worker="s19-b"),
        session("198.51.100.20", 2100, "2026-03-02T09:00:00Z", "2026-03-02T09:30:00Z",
                hashrate_hs=1e12, power_w=100.0),  # CGNAT -> 100.64.1.20 -> S2
        session("192.0.2.50", 40003, "2026-03-02T10:00:00Z", "2026-03-02T10:10:00Z"),  # S3
        session("192.0.2.50", 40004, "2026-03-02T14:00:00Z", "2026-03-02T14:10:00Z"),  # S2
        session("198.51.100.20", 9000, "2026-03-02T09:00:00Z", "2026-03-02T09:30:00Z"),
        session("192.0.2.99", 40005, "2026-03-02T10:00:00Z", "2026-03-02T10:10:00Z"),
    ]
    leads = {(lead["entity_id"] or lead["src_ips"][0]["ip"]): lead
             for lead in build_leads(dets, records)}
    dc = leads["E1"]
    assert dc["entity_name"] == "青山数据服务有限公司" and dc["entity_type"] == "datacentre"
    assert dc["sessions"] == 2 and dc["workers"] == ["s19-a", "s19-b"]
    # 100 TH/s alone for 30 min, 200 TH/s together for 30 min: 150 TH/s time-weighted
    assert dc["hashrate_hs"] == pytest.approx(150e12)
    assert dc["power_w"] == pytest.approx(4500.0)
    assert dc["energy_kwh_per_day"] == pytest.approx(108.0)
    assert dc["meter_ratio"] == pytest.approx(4500 * 168 / 1000 / 1344)
    assert dc["datacenter"] and dc["status"] == "new" and dc["status_change"] == "none->new"
    assert dc["confidence"] > 0.99 and dc["subscriber_ids"] == ["S1"]
    assert any("static record" in r and "203.0.113.8/29" in r for r in dc["reasons"])
    li = leads["E2"]  # behind CGNAT in the morning, on the dynamic address after noon
    assert li["sessions"] == 2
    assert {w["ip"] for w in li["src_ips"]} == {"198.51.100.20", "192.0.2.50"}
    assert any("through CGNAT to 100.64.1.20" in r for r in li["reasons"])
    assert leads["E3"]["sessions"] == 1  # the internet café held 192.0.2.50 until noon
    for ip in ("192.0.2.99", "198.51.100.20"):  # no record; a CGNAT port with no block
        lead = leads[ip]
        assert lead["entity_id"] is None and lead["confidence"] == 0.0
        assert lead["reasons"][0].startswith("unattributed: ")
    assert "no port block" in leads["198.51.100.20"]["reasons"][0]


def test_overlapping_owners_are_ambiguous_not_picked(isp):
    (isp / "static-private.csv").write_text(
        "network,subscriber_id,valid_from,valid_to\n"
        "192.0.2.50/32,S3,2026-03-02T00:00:00Z,2026-03-02T12:00:00Z\n"
        "192.0.2.50/32,S2,2026-03-02T06:00:00Z,2026-03-03T00:00:00Z\n")
    (lead,) = build_leads([session("192.0.2.50", 40003, "2026-03-02T10:00:00Z",
                                   "2026-03-02T10:10:00Z")], load_isp_records([isp]))
    assert lead["entity_id"] is None and lead["reasons"][0].startswith("unattributed: ambiguous")
    assert {c["subscriber_id"] for c in lead["candidates"]} == {"S2", "S3"}


def test_cli_scan_links_and_leads_writes_records(isp, tmp_path):
    (isp / "static.csv").write_text("network,subscriber_id,valid_from,valid_to\n"
                                    "10.1.1.0/24,S1,2020-01-01T00:00:00Z,\n")
    runner = CliRunner()
    scanned = runner.invoke(app, ["scan", str(CGMINER), "--subscribers", str(isp),
                                  "-f", "jsonl"])
    assert scanned.exit_code == 0, scanned.output
    (row,) = [json.loads(x) for x in scanned.stdout.splitlines()]
    assert (row["link_status"], row["subscriber_id"], row["entity_id"]) == ("linked", "S1", "E1")
    out = tmp_path / "scan.jsonl"
    out.write_text(scanned.stdout)
    made = runner.invoke(app, ["leads", str(out), "--subscribers", str(isp), "-f", "jsonl",
                               "--week", "2026-06-01"])
    assert made.exit_code == 0, made.output
    (lead,) = [json.loads(x) for x in made.stdout.splitlines()]
    assert lead["event_type"] == "lead" and lead["entity_id"] == "E1"
    assert lead["hashrate_hs"] == pytest.approx(row["hashrate_hs"])
    assert row["first_seen"].startswith("2026-03-")
    assert lead["status"] == "gone"  # not seen for more than four weeks by June


def test_bad_isp_input_is_one_clear_line(isp, tmp_path):
    bad = tmp_path / "notes.txt"
    bad.write_text("hello\n")
    with pytest.raises(LinkInputError, match="notes.txt: not an ISP record file"):
        load_isp_records([bad])
    result = CliRunner().invoke(app, ["leads", str(CGMINER), "--subscribers", str(bad)])
    assert result.exit_code == 2 and "not an ISP record file" in result.output
    assert "Traceback" not in result.output
    (isp / "static.csv").write_text("network,subscriber_id,valid_from,valid_to\n"
                                    "10.1.1.0/24,S1,2020-01-01T00:00:00Z,\n"
                                    "10.1.1.1/24,S1,2020-01-01T00:00:00Z,\n")
    result = CliRunner().invoke(app, ["leads", str(CGMINER), "--subscribers", str(isp)])
    assert result.exit_code == 0
    assert "static.csv:3:" in result.output  # the bad row, with its line; the rest loads


ISP = ROOT / "pcaps" / "isp"


def test_every_session_of_the_synthetic_isp_lands_on_its_entity():
    """pcaps/isp: miners behind static blocks, RADIUS (a dynamic address changing owner at
    noon, a missing Stop, a delegated IPv6 /56), ISC and Kea DHCP, and CGNAT (CSV and Junos
    syslog); the generator's oracle says who each session belongs to."""
    from poolwatch.scan import scan_sessions

    oracle = json.loads((ISP / "expected.json").read_text())
    isp = load_isp_records([ISP])
    assert all(not r.issues for r in isp.reports)
    found = [s.as_dict() for s in scan_sessions(sorted(ISP.glob("*.pcap")))]
    leads = build_leads(found, isp, week_start=1772409600.0)  # Monday 2026-03-02
    by_session = {}
    for lead in leads:
        for ev in lead["evidence"]:
            by_session[ev["src"]] = lead
    assert len(by_session) == len(oracle["sessions"]) == len(found)
    for s in oracle["sessions"]:
        src = f"{s['src_ip']}:{s['src_port']}"
        lead = by_session[src]
        assert lead["entity_id"] == s["entity_id"], (s["key"], lead["reasons"][:2])
        if s["entity_id"] is None:
            assert lead["reasons"][0].startswith("unattributed")
    dc = next(lead for lead in leads if lead["entity_id"] == "E-100")
    assert dc["sessions"] == 2 and dc["datacenter"]
    peak = next(e for e in oracle["entities"] if e["entity_id"] == "E-100") \
        if isinstance(oracle["entities"], list) else oracle["entities"]["E-100"]
    assert dc["meter_ratio"] is not None and dc["status"] == "new"
    assert peak  # the oracle describes the data centre (its figures: docs/linking.md)
