"""Pool contacts: evidence other than Stratum, weighed and explained (detect.contacts)."""

from __future__ import annotations

import ipaddress
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from poolwatch.cli import app
from poolwatch.detect.contacts import AddressIntel, ContactJudge, ContactSettings
from poolwatch.fingerprints import default_dir, load_fingerprints
from poolwatch.records import FLOW, addr_to_halves
from poolwatch.scan import scan_detections

ROOT = Path(__file__).resolve().parent.parent
CONTACTS = ROOT / "pcaps" / "contacts"
STRATUM = ROOT / "pcaps" / "stratum"
NS = 10**9
T0 = 1_772_460_000 * NS  # 2026-03-02T14:00:00Z

ADDRESSES = """\
# test intelligence: documentation prefixes only
prefix,ports,pool,coin,last_seen,flags,rev,source
198.51.100.0/24,4444,Wide Pool,BTC,2026-03-01,,1,test
198.51.100.77/32,4444 4445,Narrow Pool,LTC,2026-03-01,,1,test
203.0.113.0/28,,Old Pool,BTC,2016-03-02,historic,1,test
2001:db8:77::/48,3333,Six Pool,XMR,2026-03-01,shared-hosting,1,test
"""


@pytest.fixture(scope="module")
def fp_intel(tmp_path_factory):
    extra = tmp_path_factory.mktemp("fp")
    (extra / "addresses.csv").write_text(ADDRESSES)
    return load_fingerprints([extra])


def flows(*rows) -> np.ndarray:
    """FLOW records for (src, sport, dst, dport[, first_s, last_s])."""
    out = np.zeros(len(rows), FLOW)
    for r, (src, sport, dst, dport, *times) in zip(out, rows):
        r["src_hi"], r["src_lo"] = addr_to_halves(src)
        r["dst_hi"], r["dst_lo"] = addr_to_halves(dst)
        r["src_port"], r["dest_port"], r["proto"] = sport, dport, 6
        first, last = times or (0, 600)
        r["first_ts_ns"], r["last_ts_ns"] = T0 + first * NS, T0 + last * NS
        r["pkts_toserver"] = r["pkts_toclient"] = 40
    return out


def test_settings_are_validated_and_named():
    assert ContactSettings().report_threshold == 0.5
    s = ContactSettings.from_mapping({"dns_web_port": "0.9", "web_ports": "80, 443"})
    assert s.dns_web_port == 0.9 and s.web_ports == (80, 443)
    with pytest.raises(ValueError, match="unknown contact setting 'dns_wbe_port'"):
        ContactSettings.from_mapping({"dns_wbe_port": "1"})
    with pytest.raises(ValueError, match=r"must lie in \[0, 1\]"):
        ContactSettings(sni_endpoint=1.5)
    with pytest.raises(ValueError, match="not a number"):
        ContactSettings.from_mapping({"behaviour": "high"})


def test_the_bundled_addresses_load_with_their_dates():
    fp = load_fingerprints()
    rows = {a.prefix: a for a in fp.addresses.values()}
    assert rows["137.74.40.81/32"].last_seen.isoformat() == "2018-05-13"
    assert "historic" in rows["137.74.40.81/32"].flags


@settings(max_examples=300, deadline=None)
@given(st.lists(st.integers(0, 2**32 - 1), min_size=1, max_size=30))
def test_longest_prefix_match_agrees_with_ipaddress(fp_intel, values):
    intel = AddressIntel(fp_intel)
    nets = [a.network for a in fp_intel.addresses.values()]
    addrs = [str(ipaddress.IPv4Address(v)) for v in values]
    addrs += ["198.51.100.77", "198.51.100.5", "203.0.113.15", "203.0.113.16",
              "2001:db8:77:1::9", "2001:db8:78::1"]
    halves = np.array([addr_to_halves(a) for a in addrs], np.uint64)
    mask = intel.mask(halves[:, 0], halves[:, 1])
    for a, m in zip(addrs, mask):
        ip = ipaddress.ip_address(a)
        holding = [n for n in nets if n.version == ip.version and ip in n]
        assert bool(intel.match(a)) == bool(holding), a
        assert m or not holding, a  # the vectorised mask never misses one
        if holding:
            best = max(holding, key=lambda n: n.prefixlen)
            assert {r.prefix for r in intel.match(a)} == {str(best)}


def test_listed_addresses_weigh_by_port_and_age(fp_intel):
    judge = ContactJudge(fp_intel)
    judge.closed_flows(flows(
        ("10.9.0.1", 40001, "198.51.100.77", 4445),  # narrow row, listed port
        ("10.9.0.2", 40002, "198.51.100.9", 4444),  # wide row, listed port
        ("10.9.0.3", 40003, "198.51.100.9", 9999),  # wide row, other port: too weak alone
        ("10.9.0.4", 40004, "203.0.113.3", 3333),  # ten years old: worth nothing now
        ("2001:db8:1::5", 40005, "2001:db8:77:1::9", 3333),  # shared hosting: halved
        ("10.9.0.6", 40006, "192.0.2.1", 4444),  # not listed: not even kept
    ))
    got = {c.src_port: c for c in judge.finish()}
    assert set(got) == {40001, 40002}
    assert got[40001].pool == "Narrow Pool" and got[40001].via == ("ip",)
    assert got[40002].pool == "Wide Pool"
    assert 0.79 < got[40001].score <= 0.8  # one day old
    assert "last seen 2026-03-01" in got[40001].reasons[0]
    assert judge.stats["flows_kept"] == 5 and judge.stats["below_threshold"] == 3
    low = ContactJudge(fp_intel, ContactSettings(report_threshold=0.0))
    low.closed_flows(flows(("10.9.0.4", 40004, "203.0.113.3", 3333),
                           ("2001:db8:1::5", 40005, "2001:db8:77:1::9", 3333)))
    scores = {c.src_port: c.score for c in low.finish()}
    assert scores[40004] == pytest.approx(0.8 * 0.5 ** (3653 / 365), abs=1e-4)  # ten years
    assert scores[40005] == pytest.approx(0.4, abs=0.002)


def test_the_pool_side_is_dest_even_when_the_pool_sent_first(fp_intel):
    judge = ContactJudge(fp_intel)
    judge.closed_flows(flows(("198.51.100.77", 4445, "10.9.0.1", 40001)))
    (c,) = judge.finish()
    assert (c.src_ip, c.dest_ip, c.dest_port) == ("10.9.0.1", "198.51.100.77", 4445)


class _Probe:
    def __init__(self, verdict: str, strength: str = "strong") -> None:
        self.verdict, self.dialect, self.tls, self.checked_at_ns = verdict, "stratum-v1", False, 0
        self.evidence = {"strength": strength}


def test_probe_results_raise_and_lower_scores(fp_intel):
    rows = flows(("10.9.0.1", 40001, "198.51.100.77", 4445),
                 ("10.9.0.3", 40003, "198.51.100.9", 9999))
    probes = {("198.51.100.77", 4445): _Probe("not-pool"), ("198.51.100.9", 9999): _Probe("pool")}
    judge = ContactJudge(fp_intel, probes=probes)
    judge.closed_flows(rows)
    got = {c.src_port: c for c in judge.finish()}
    assert set(got) == {40003}  # the refuted one fell below the threshold
    assert got[40003].via == ("ip", "probe") and got[40003].score > 0.97
    low = ContactJudge(fp_intel, ContactSettings(report_threshold=0.0), probes=probes)
    low.closed_flows(rows)
    refuted = next(c for c in low.finish() if c.src_port == 40001)
    assert refuted.score == pytest.approx(0.8 * 0.2, abs=0.01)
    assert "not as a pool" in refuted.reasons[-1]


def _oracle(name: str) -> dict:
    return json.loads((CONTACTS / f"{name}.expected.json").read_text())


def test_a_pool_name_in_dns_makes_a_contact_and_the_web_site_does_not():
    got = [r for r in scan_detections(sorted(CONTACTS.glob("*.pcap")))]
    contacts = [r.as_dict() for r in got if r.EVENT_TYPE == "pool_contact"]
    want = _oracle("tls_pool_by_dns_and_sni")["contacts"]
    assert _oracle("pool_website_https")["contacts"] == []
    key = lambda d: (d["src_ip"], d["src_port"], d["dest_ip"], d["dest_port"])  # noqa: E731
    assert sorted(map(key, contacts)) == sorted(map(key, want))
    (c,), (w,) = contacts, want
    assert set(w["via"]) <= set(c["via"]) and (c["pool"], c["pool_host"]) == (w["pool"],
                                                                           w["pool_host"])
    assert c["tls"] is w["tls"] and c["evidence"]["tls"]["sni"] == w["sni"]
    assert c["ja4"].startswith("t13d") and c["score"] >= 0.99
    assert c["score"] >= 0.9 and all("weight" in r for r in c["reasons"])
    assert len(c["evidence"]["capture_sha256"]) == 64
    assert c["community_id"].startswith("1:")


def test_the_web_site_becomes_a_contact_only_if_a_setting_says_so(tmp_path):
    out = tmp_path / "c.jsonl"
    args = ["scan", str(CONTACTS / "pool_website_https.pcap"), "-f", "jsonl", "-o", str(out),
            "--no-progress"]
    assert CliRunner().invoke(app, args).exit_code == 0
    assert out.read_text() == ""
    result = CliRunner().invoke(app, [*args, "--contact-setting", "dns_web_port=0.9"])
    assert result.exit_code == 0, result.output
    (c,) = [json.loads(line) for line in out.read_text().splitlines()]
    assert c["dest_port"] == 443 and c["via"][0] == "dns" and "web port" in c["reasons"][0]
    bad = CliRunner().invoke(app, [*args, "--contact-setting", "nonsense"])
    assert bad.exit_code == 2 and "NAME=VALUE" in bad.output and "Traceback" not in bad.output


def test_a_plaintext_session_is_not_also_a_contact():
    """The ethproxy sample resolves etc.2miners.com and mines in the clear to it."""
    from poolwatch.detect.contacts import ContactJudge as Judge

    made: list[Judge] = []
    original = Judge.__init__

    def spy(self, *a, **k):
        original(self, *a, **k)
        made.append(self)

    Judge.__init__ = spy
    try:
        got = list(scan_detections([STRATUM / "ethproxy_ethminer.pcap"]))
    finally:
        Judge.__init__ = original
    assert [r.EVENT_TYPE for r in got] == ["stratum_session"]
    assert made[0].stats["merged_into_sessions"] == 1


def test_extra_fingerprint_directories_hold_addresses(tmp_path):
    extra = tmp_path / "fp"
    extra.mkdir()
    (extra / "addresses.csv").write_text(ADDRESSES.replace("4444,Wide", "4444,Wide"))
    shutil.copy(default_dir() / "sources.yaml", extra / "sources.yaml")
    fp = load_fingerprints([extra])
    assert any(a.pool == "Six Pool" for a in fp.addresses.values())
    (extra / "addresses.csv").write_text(ADDRESSES + "198.51.100.1/24,,Bad,BTC,2026-01-01,,1,t\n")
    from poolwatch.errors import FingerprintError

    with pytest.raises(FingerprintError, match="host bits set|198.51.100.1/24"):
        load_fingerprints([extra])


def test_the_behaviour_model_names_encrypted_mining_with_no_name_at_all():
    behaviour = ROOT / "pcaps" / "behaviour"
    got = [r for r in scan_detections(sorted(behaviour.glob("*.pcap")))]
    labels = {p.stem: json.loads(p.read_text()) for p in behaviour.glob("*.labels.json")}
    mining = [f for lab in labels.values() for f in lab["flows"] if f["label"] == 1]
    assert [(c.src_ip, c.src_port, c.dest_ip, c.dest_port) for c in got] == [
        (*f["client"], *f["server"]) for f in mining]
    (c,) = got
    assert c.via == ("behaviour",) and 0.5 <= c.score <= ContactSettings().behaviour
    assert "client_cadence" in c.reasons[0] and c.evidence["behaviour_features"]


def _verdict(score: float, *, server_name=None, opening=None):
    from poolwatch.detect.behaviour import BehaviourVerdict
    from poolwatch.detect.records import flow_key
    client = (*addr_to_halves("10.9.0.1"), 40001)
    server = (*addr_to_halves("192.0.2.50"), 7777)
    return BehaviourVerdict(key=flow_key(0, 0, 6, client, server), client=client,
                            server=server, first_ts_ns=T0, last_ts_ns=T0 + 600 * NS,
                            score=score, reasons=("model reasons",),
                            features={"opening_seen": 1.0}, server_name=server_name,
                            opening=opening)


@pytest.mark.parametrize("server_name, opening, factor, words", [
    (None, None, 1.0, None),  # opening not captured: the model stands alone
    (None, b"\x16\x03\x01", 1.0, None),  # a TLS handshake, no name: could be a miner
    (None, b"\x16", 1.0, None),  # one byte captured: benefit of the doubt
    ("dns.google", b"\x16\x03\x01", 0.2, "asked for dns.google, not a pool name"),
    (None, b"HS\x00", 0.2, "begins with 48 53 00: neither a TLS nor"),
    (None, b"", 0.2, "begins with nothing captured"),
])
def test_behaviour_weighs_less_when_the_flow_says_what_else_it_is(fp_intel, server_name,
                                                                   opening, factor, words):
    judge = ContactJudge(fp_intel, ContactSettings(report_threshold=0.0))
    judge.behaviour_seen([_verdict(0.95, server_name=server_name, opening=opening)])
    (c,) = judge.finish()
    assert c.score == pytest.approx(0.6 * 0.95 * factor, abs=1e-6)
    if words:
        assert words in c.reasons[0]
    default = ContactJudge(fp_intel)  # at the default threshold only the plain one is kept
    default.behaviour_seen([_verdict(0.95, server_name=server_name, opening=opening)])
    assert len(default.finish()) == (1 if factor == 1.0 else 0)


def test_declined_client_hellos_name_the_behaviour_rows_they_belong_to():
    """The TLS observer's hash of a declined flow is the behaviour model's row key, so a
    verdict on that flow carries the name its ClientHello asked for."""
    from poolwatch.detect.behaviour import BehaviourScorer
    from poolwatch.detect.tls import TlsObserver
    from poolwatch.scan import iter_batches

    asked: list[str | None] = []
    tls = TlsObserver(want=lambda name: asked.append(name) or False)
    scorer = BehaviourScorer()
    for batch in iter_batches([CONTACTS / "pool_website_https.pcap"]):
        scorer.update(batch)
        tls.update(batch)
        scorer.note_names(tls.declined())
    assert asked and all(asked)
    rows = set(scorer.keys[: scorer.n_rows].tolist())
    assert scorer._names and set(scorer._names) <= rows
    assert set(scorer._names.values()) == set(asked)
    scorer.flush()
    assert scorer._names == {}  # forgotten with their rows


def test_encrypted_stratum_v2_shares_are_counted_by_record_size():
    """Through Noise, a SubmitSharesStandard is a 62-byte record: the generator's truth says
    how many shares it encrypted, and the contact counts exactly those."""
    capture = STRATUM / "stratum_v2_noise.pcap"
    truth = json.loads(capture.with_suffix(".expected.json").read_text())["sessions"][0]["truth"]
    (c,) = scan_detections([capture])
    fixed = c.evidence["stratum_v2"]["fixed_size_records"]
    assert fixed["SubmitSharesStandard"] == {"record_bytes": 62,
                                             "records": truth["shares_submitted"]}
    assert c.score == ContactSettings().stratum_v2_shares
    assert "13 of SubmitSharesStandard (62 B)" in c.reasons[0]
    strict = list(scan_detections([capture], contact_settings=ContactSettings(
        stratum_v2_min_shares=100)))
    assert strict[0].score == ContactSettings().stratum_v2  # the handshake shape alone
