"""The synthetic ISP of pcaps/isp/: its records load cleanly, its captures hold exactly the
sessions of its oracle, and the oracle's links are backed by the records.

pcaps/isp/ is made by pcaps/make_isp_samples.py; expected.json there is the oracle the
resolver and lead-builder tests check against. These tests check the sample itself (not the
linking): regeneration is byte-identical, every file loads with zero issues, the records the
oracle cites exist and cover each session, and the scanner finds the sessions.
"""

from __future__ import annotations

import ipaddress
import json
import math
import subprocess
import sys
from datetime import datetime
from pathlib import Path

import pytest

from poolwatch.link import cgnat, dhcp, meters, radius, registry

ROOT = Path(__file__).resolve().parent.parent
ISP = ROOT / "pcaps" / "isp"
GENERATOR = ROOT / "pcaps" / "make_isp_samples.py"
NS = 10**9


def ts(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


@pytest.fixture(scope="module")
def expected() -> dict:
    return json.loads((ISP / "expected.json").read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def loaded() -> dict:
    """Every record file through its loader (paths relative to pcaps/isp/, as the oracle's
    origins are written)."""
    def p(name: str) -> str:
        return str(ISP / name)

    return {
        "registry": registry.load_registry(p("registry.csv")),
        "static": registry.load_static(p("static.csv")),
        "radius": radius.load_radius_detail([p("radius/detail-20260302")]),
        "dhcp-isc": dhcp.load_isc_leases([p("dhcpd.leases")]),
        "dhcp-kea": dhcp.load_kea_leases([p("kea-leases4.csv")]),
        "cgnat": cgnat.load_cgnat([p("cgnat.csv"), p("junos-nat.log")]),
        "meters": meters.load_meters(p("meters.csv")),
    }


@pytest.fixture(scope="module", autouse=True)
def regenerated(tmp_path_factory):
    """The generator, run into a temporary folder while the other tests of this module run
    (it takes a few seconds, mostly scapy): (folder, process)."""
    out = tmp_path_factory.mktemp("isp")
    proc = subprocess.Popen([sys.executable, str(GENERATOR), str(out)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    yield out, proc
    if proc.poll() is None:
        proc.kill()
        proc.wait()


def _files(folder: Path) -> dict[str, bytes]:
    return {path.relative_to(folder).as_posix(): path.read_bytes()
            for path in sorted(folder.rglob("*")) if path.is_file()}


def test_every_record_file_loads_without_issues(loaded):
    kinds = {}
    for name, result in loaded.items():
        assert result.rows, name
        for report in result.reports:
            assert report.issues == [], (name, [str(i) for i in report.issues])
            assert report.skipped == 0 and report.loaded > 0, (name, report)
            kinds[Path(report.path).name] = report.kind
    assert kinds == {
        "registry.csv": "registry", "static.csv": "static", "detail-20260302": "radius",
        "dhcpd.leases": "dhcp-isc", "kea-leases4.csv": "dhcp-kea", "cgnat.csv": "cgnat",
        "junos-nat.log": "cgnat", "meters.csv": "meters",
    }
    subs = {s.subscriber_id: s for s in loaded["registry"].rows}
    assert subs["S-2001"].entity_name == "北京星辰网吧"
    assert subs["S-2001"].address == "北京市海淀区中关村大街1号"
    assert subs["S-2001"].entity_type == "internet_cafe"
    assert subs["S-1002"].entity_name == "Harbour Compute Ltd"  # the entity's first spelling
    assert {s.entity_type for s in subs.values() if s.entity_id == "E-100"} == {"datacentre"}
    assert subs["S-4001"].cpe_mac == "00:1a:2b:3c:4d:61"
    assert subs["S-5001"].cpe_mac == "00:1a:2b:3c:4d:70"
    assert subs["S-1001"].latitude == pytest.approx(39.2185)
    assert subs["S-1001"].extra["meter_id"] == "M-1001"
    assert subs["S-3001"].extra["username"] == "liwei88"


def test_radius_dynamic_address_changes_owner_and_lost_stop_is_inferred(loaded):
    rows = loaded["radius"].rows
    dynamic = sorted((r for r in rows if r.network == ipaddress.ip_network("192.0.2.50/32")),
                     key=lambda r: r.start)
    assert [(r.identity, r.start, r.end, r.end_inferred) for r in dynamic] == [
        ("xingchen", ts("2026-03-02T00:00:00Z"), ts("2026-03-02T12:00:00Z"), False),
        ("liwei88", ts("2026-03-02T12:00:05Z"), ts("2026-03-02T23:50:00Z"), False),
    ]
    inferred = [r for r in rows if r.end_inferred]
    assert [(r.identity, str(r.network)) for r in inferred] == [("chenjie", "100.64.1.21/32")]
    assert inferred[0].end == ts("2026-03-02T12:00:10Z")  # last Interim-Update + 7200 s
    pd = [r for r in rows if r.identity == "oakstudio" and r.network.prefixlen == 56]
    assert [str(r.network) for r in pd] == ["2001:db8:5600:1200::/56"]


def _origin(row) -> str:
    return f"{Path(row.origin.path).relative_to(ISP).as_posix()}:{row.origin.line}"


def _covers_time(row, t: float) -> bool:
    return row.start <= t < row.end


def test_oracle_links_are_backed_by_the_records(expected, loaded):
    """Each session's cited CGNAT block, assignment and registry row exist at the cited
    file:line and cover the session's address, port and time; nothing covers the
    unattributed one. (A check of the oracle, not a resolver.)"""
    assignments = {name: {_origin(r): r for r in loaded[name].rows}
                   for name in ("static", "radius", "dhcp-isc", "dhcp-kea")}
    blocks = {_origin(b): b for b in loaded["cgnat"].rows}
    subs = {_origin(s): s for s in loaded["registry"].rows}
    for s in expected["sessions"]:
        t = s["first_seen_ns"] / NS
        end_t = s["last_seen_ns"] / NS
        if s["subscriber_id"] is None:
            assert s["why_unlinked"] and s["link"] is None and s["entity_id"] is None
            addr = ipaddress.ip_address(s["src_ip"])
            for name, rows in assignments.items():
                assert not any(addr in r.network and _covers_time(r, t) for r in rows.values()
                               ), name
            assert not any(b.public_ip == addr for b in blocks.values())
            continue
        link = s["link"]
        address = ipaddress.ip_address(s["src_ip"])
        if "cgnat" in link:
            block = blocks[link["cgnat"]["origin"]]
            assert block.public_ip == address
            assert block.port_low <= s["src_port"] <= block.port_high
            assert _covers_time(block, t) and _covers_time(block, end_t)
            assert str(block.private_ip) == link["cgnat"]["private_ip"]
            address = block.private_ip
        a = link["assignment"]
        row = assignments[a["source"]][a["origin"]]
        assert address in row.network, s["key"]
        assert _covers_time(row, t) and _covers_time(row, end_t), s["key"]
        assert (row.identity_kind, row.identity, str(row.network), row.end_inferred) == (
            a["identity_kind"], a["identity"], a["network"], a["end_inferred"])
        if "end" in a:
            assert row.end == ts(a["end"])
        sub = subs[link["registry_origin"]]
        assert (sub.subscriber_id, sub.entity_id) == (s["subscriber_id"], s["entity_id"])
        if a["identity_kind"] == "subscriber":
            assert a["identity"] == sub.subscriber_id
        elif a["identity_kind"] == "user":
            assert sub.extra["username"] == a["identity"]
        else:
            assert sub.cpe_mac == a["identity"]
    kinds = {(tuple(sorted(s["link"])) if s["link"] else None) for s in expected["sessions"]}
    assert ("assignment", "cgnat", "matched_by", "registry_origin") in kinds and None in kinds


def test_oracle_entities(expected, loaded):
    entities = expected["entities"]
    subs = loaded["registry"].rows
    assert set(entities) == {s.entity_id for s in subs}
    for sub in subs:
        e = entities[sub.entity_id]
        assert sub.subscriber_id in e["subscribers"]
        assert e["entity_type"] == sub.entity_type
        assert e["is_datacentre"] == (sub.entity_type == "datacentre")
    for eid, e in entities.items():
        mine = [s for s in expected["sessions"] if s["entity_id"] == eid]
        assert e["sessions"] == len(mine)
        assert e["distinct_workers"] == len({s["worker"] for s in mine})
    dc = entities["E-100"]
    assert (dc["is_datacentre"], dc["sessions"], dc["distinct_workers"]) == (True, 2, 2)
    assert dc["peak_concurrent_hashrate_hs"] == 206e12 and dc["concurrent_sessions_at_peak"] == 2
    readings = {(r.meter_id, r.entity_id): r for r in loaded["meters"].rows}
    metered = {eid: e["meter"] for eid, e in entities.items() if e["meter"]}
    assert set(metered) == {"E-100", "E-500"}
    for eid, m in metered.items():
        r = readings[(m["meter_id"], eid)]
        assert (r.kwh, r.start, r.end) == (m["metered_kwh"], ts(m["period_start"]),
                                          ts(m["period_end"]))
    assert metered["E-100"]["metered_over_miners"] < 1.25 < metered["E-500"]["metered_over_miners"]
    assert len([s for s in expected["sessions"] if s["src_ip"] == "192.0.2.50"]) == 2


def test_scan_finds_exactly_the_oracle_sessions(expected):
    from poolwatch.scan import scan_sessions

    captures = sorted(ISP.glob("*.pcap"))
    assert [c.name for c in captures] == expected["captures"]
    got = list(scan_sessions(captures))
    want = expected["sessions"]
    key = lambda d: (d["src_ip"], d["src_port"], d["dest_ip"], d["dest_port"])  # noqa: E731
    found = {key(s.as_dict()): s for s in got}
    assert len(found) == len(got) == len(want)
    assert set(found) == {key(w) for w in want}
    for w in want:
        s = found[key(w)]
        assert abs(s.first_seen - w["first_seen_ns"]) <= NS, w["key"]
        assert s.shares_submitted == w["shares_submitted"], w["key"]
        assert s.hashrate_hs is not None, (w["key"], s.hashrate_reason)
        assert math.isclose(s.hashrate_hs, w["expected_hashrate_hs"],
                            rel_tol=w["hashrate_tolerance"]), w["key"]
        assert s.worker == w["worker"] and s.agent == w["agent"], w["key"]
        if w["pool_host"]:
            assert s.pool_host == w["pool_host"]


def test_regenerating_gives_identical_bytes(regenerated):
    out, proc = regenerated
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err.decode(errors="replace")
    fresh, committed = _files(out), _files(ISP)
    assert sorted(fresh) == sorted(committed)
    for name, data in fresh.items():
        assert data == committed[name], f"{name} differs from the committed pcaps/isp/{name}"
    assert sum(len(d) for d in committed.values()) < 300_000
