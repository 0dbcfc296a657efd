"""Case-file exports (export.py): pcap slices of one session, and leads as STIX 2.1."""

from __future__ import annotations

import csv
import gzip
import io
import json
import shutil
import struct
import subprocess
from pathlib import Path

import dpkt
import numpy as np
import pytest
import stix2
import zstandard

from poolwatch.errors import PoolwatchError
from poolwatch.export import (
    CaptureMissing,
    CaptureUnreadable,
    MixedLinkTypes,
    NoPacketsMatched,
    frame_ranges,
    leads_csv,
    leads_jsonl,
    pcap_slice,
    stix_bundle,
)
from poolwatch.leads import build_leads
from poolwatch.link.inputs import load_isp_records
from poolwatch.scan import capture_sha256, iter_batches, scan_sessions

from .conftest import oracle

ROOT = Path(__file__).resolve().parent.parent
STRATUM = ROOT / "pcaps" / "stratum"
MULTI = ROOT / "pcaps" / "multi_interface.pcapng"
ISP = ROOT / "pcaps" / "isp"


@pytest.fixture(scope="module")
def sessions() -> list[dict]:
    return [s.as_dict() for s in scan_sessions(sorted(STRATUM.glob("*.pcap")))]


def cut(session: dict, capture: Path | None = None, **kw):
    out = io.BytesIO()
    info = pcap_slice(capture or Path(session["evidence"]["capture"]),
                      src_ip=session["src_ip"], src_port=session["src_port"],
                      dest_ip=session["dest_ip"], dest_port=session["dest_port"],
                      first_seen_ns=session["first_seen"], last_seen_ns=session["last_seen"],
                      out=out, **kw)
    return info, out.getvalue()


def dpkt_connection(capture: Path, a: tuple[str, int], b: tuple[str, int]) -> list[tuple]:
    """(frame, ts_ns, bytes, wirelen) of every TCP packet between a and b, read by dpkt:
    an independent filter over the whole capture (no time window)."""
    import ipaddress

    want = {(a, b), (b, a)}
    out = []
    with open(capture, "rb") as fh:
        reader = dpkt.pcap.Reader(fh)
        assert reader.datalink() == dpkt.pcap.DLT_EN10MB
        for frame, (ts, raw) in enumerate(reader.readpkts(), 1):
            ip = dpkt.ethernet.Ethernet(raw).data
            if not isinstance(ip, (dpkt.ip.IP, dpkt.ip6.IP6)) or not isinstance(ip.data,
                                                                              dpkt.tcp.TCP):
                continue
            src = (str(ipaddress.ip_address(ip.src)), ip.data.sport)
            dst = (str(ipaddress.ip_address(ip.dst)), ip.data.dport)
            if (src, dst) in want:
                out.append((frame, raw))
    return out


def read_back(data: bytes, tmp_path: Path, name: str = "slice.pcap") -> tuple[Path, np.ndarray,
                                                                               list[bytes]]:
    """The slice through poolwatch's own reader: (path, PACKET rows, packet bytes)."""
    path = tmp_path / name
    path.write_bytes(data)
    rows, raw = [], []
    for batch in iter_batches([path]):
        rows.append(batch.packets.copy())
        raw += [batch.packet_bytes(i) for i in range(len(batch))]
    return path, np.concatenate(rows), raw


SESSION_KEYS = ("dialect", "src_ip", "src_port", "dest_ip", "dest_port", "worker", "login",
                "wallet", "coin", "algorithm", "shares_submitted", "shares_accepted",
                "shares_rejected", "first_seen", "last_seen")


def test_slice_of_every_stratum_session(sessions, tmp_path):
    """Each session's slice: exactly the packets of its TCP connection (dpkt's independent
    filter; the oracle's packet counts), the original frame numbers, bytes and timestamps,
    and scanning the slice alone finds the same session."""
    assert len(sessions) >= 15
    for n, s in enumerate(sessions):
        capture = Path(s["evidence"]["capture"])
        info, data = cut(s)
        a, b = (s["src_ip"], s["src_port"]), (s["dest_ip"], s["dest_port"])
        truth = dpkt_connection(capture, a, b)
        assert info.frames == [f for f, _ in truth], capture.name
        flows = [f for f in oracle(capture)["flows"] if f["proto"] == 6 and
                 {(f["src_ip"], f["src_port"]), (f["dest_ip"], f["dest_port"])} == {a, b}]
        assert len(flows) == 1, capture.name
        assert info.packets == flows[0]["pkts_toserver"] + flows[0]["pkts_toclient"]
        # provenance: the same capture hash the scan put in the session's evidence
        assert info.capture_sha256 == s["evidence"]["capture_sha256"]
        assert info.sha256 == __import__("hashlib").sha256(data).hexdigest()
        assert (info.format, info.linktype, info.bytes) == ("pcap", 1, len(data))
        assert data[:4] == struct.pack("<I", 0xA1B23C4D)  # nanosecond magic
        # frame numbers the session's evidence cites (share submissions) are in the slice
        cited = [f for o in oracle(capture).get("sessions", [])
                 if (o["src_ip"], o["src_port"]) == a for f in o.get("share_frames") or []]
        assert set(cited) <= set(info.frames)

        path, rows, raw = read_back(data, tmp_path, f"slice{n}.pcap")
        assert raw == [r for _, r in truth]
        assert rows["ts_ns"][0] == info.first_ts_ns and rows["ts_ns"].max() == info.last_ts_ns
        again = [x.as_dict() for x in scan_sessions([path])]
        assert len(again) == 1, capture.name
        # a coin or algorithm known from the pool's DNS name is not in the slice (the DNS
        # answer is not part of the connection); everything read from the connection is
        from_pool = any(str(x).startswith("pool endpoint") for x in
                        [s["evidence"].get("coin_from"), *(s["evidence"].get("algorithm_from")
                                                           or [])])
        keys = [k for k in SESSION_KEYS if not (from_pool and k in ("coin", "algorithm"))]
        assert {k: again[0][k] for k in keys} == {k: s[k] for k in keys}, capture.name


def test_slice_keeps_the_original_timestamps_and_lengths(sessions, tmp_path):
    s = next(x for x in sessions if x["evidence"]["capture"].endswith("cgminer_sha256d.pcap"))
    info, data = cut(s)
    with open(s["evidence"]["capture"], "rb") as fh:
        original = {f: (ts, raw) for f, (ts, raw) in
                    enumerate(dpkt.pcap.Reader(fh).readpkts(), 1)}
    sliced = list(dpkt.pcap.Reader(io.BytesIO(data)))
    assert len(sliced) == info.packets
    for frame, (ts, raw) in zip(info.frames, sliced):
        assert raw == original[frame][1]
        assert float(ts) == pytest.approx(float(original[frame][0]), abs=1e-9)


def test_slice_of_a_compressed_capture_is_the_same_slice(sessions, tmp_path):
    s = next(x for x in sessions if x["evidence"]["capture"].endswith("kaspa.pcap"))
    plain, data = cut(s)
    raw = Path(s["evidence"]["capture"]).read_bytes()
    for name, packed in (("c.pcap.gz", gzip.compress(raw)),
                         ("c.pcap.zst", zstandard.ZstdCompressor().compress(raw))):
        path = tmp_path / name
        path.write_bytes(packed)
        info, again = cut(s, path)
        assert again == data and info.sha256 == plain.sha256
        assert info.frames == plain.frames
        # the hash is of the capture as stored, as the scan's evidence gives it
        assert info.capture_sha256 == capture_sha256(path) != plain.capture_sha256


def test_margin_and_window_bound_the_slice(sessions):
    s = next(x for x in sessions if x["evidence"]["capture"].endswith("xmrig.pcap"))
    whole, _ = cut(s)
    tight, _ = cut(s, margin_s=0.0)
    assert set(tight.frames) < set(whole.frames)  # the SYN before the first message is out
    assert s["first_seen"] <= tight.first_ts_ns and tight.last_ts_ns <= s["last_seen"]


def test_multi_interface_pcapng(tmp_path):
    """pcapng with Ethernet, raw IP and Linux SLL interfaces: each connection comes out as a
    classic pcap of its own interface's link type, bytes and (µs / ns) timestamps intact."""
    expected = {f: (lt, ts) for f, lt, ts in
                [(int(p["frame"]), int(p["linktype"]), int(p["ts_ns"]))
                 for b in iter_batches([MULTI]) for p in b.packets]}
    cases = [("10.0.0.10", 48000, "198.51.100.50", 443, 6, 1),
             ("2001:db8:12::2", 48100, "2001:db8:50::50", 8080, 6, 113),
             ("2001:db8:9::2", 40404, "2001:db8:99::99", 4500, 17, 101)]
    for n, (sa, sp, da, dp, proto, linktype) in enumerate(cases):
        flow = next(f for f in oracle(MULTI)["flows"] if f["src_ip"] == sa)
        out = io.BytesIO()
        info = pcap_slice(MULTI, src_ip=sa, src_port=sp, dest_ip=da, dest_port=dp,
                          proto=proto, first_seen_ns=flow["first_ts_ns"],
                          last_seen_ns=flow["last_ts_ns"], out=out)
        assert (info.format, info.linktype) == ("pcap", linktype)
        assert info.packets == flow["pkts_toserver"] + flow["pkts_toclient"]
        assert {expected[f][0] for f in info.frames} == {linktype}
        _, rows, _ = read_back(out.getvalue(), tmp_path, f"m{n}.pcap")
        assert list(rows["ts_ns"]) == [expected[f][1] for f in info.frames]
        assert set(rows["linktype"]) == {linktype}


def _pcapng(packets: list[tuple[int, int, bytes]], linktypes: list[int]) -> bytes:
    """A little-endian pcapng: one interface per link type (µs), EPBs (iface, ts_us, data)."""
    def block(btype, body):
        body += b"\0" * (-len(body) % 4)
        return struct.pack("<II", btype, len(body) + 12) + body + struct.pack("<I",
                                                                             len(body) + 12)
    out = block(0x0A0D0D0A, struct.pack("<IHHq", 0x1A2B3C4D, 1, 0, -1))
    for lt in linktypes:
        out += block(1, struct.pack("<HHI", lt, 0, 65535))
    for iface, ts_us, data in packets:
        out += block(6, struct.pack("<IIIII", iface, ts_us >> 32, ts_us & 0xFFFFFFFF,
                                    len(data), len(data)) + data)
    return out


def _tcp(src, dst, sport, dport, payload=b"", flags=dpkt.tcp.TH_ACK) -> dpkt.ip.IP:
    import socket

    tcp = dpkt.tcp.TCP(sport=sport, dport=dport, flags=flags, data=payload)
    ip = dpkt.ip.IP(src=socket.inet_aton(src), dst=socket.inet_aton(dst), p=6, data=tcp)
    ip.len = len(bytes(ip))
    return ip


def test_one_connection_over_two_link_types_becomes_pcapng(tmp_path):
    """A connection seen on an Ethernet and a raw-IP interface: classic pcap cannot hold
    it, so ``auto`` writes pcapng (one interface per link type, the provenance in the
    section comment) and ``pcap`` refuses with a clear error."""
    a, b = ("10.0.0.1", 40000), ("203.0.113.9", 3333)
    eth = lambda ip: bytes(dpkt.ethernet.Ethernet(src=b"\x02" * 6, dst=b"\x04" * 6,  # noqa
                                                  type=0x0800, data=ip))
    t0 = 1_772_000_000_000_000
    packets = [(0, t0, eth(_tcp(*a[:1], b[0], a[1], b[1], flags=dpkt.tcp.TH_SYN))),
               (1, t0 + 10, bytes(_tcp(b[0], a[0], b[1], a[1],
                                       flags=dpkt.tcp.TH_SYN | dpkt.tcp.TH_ACK))),
               (0, t0 + 20, eth(_tcp("10.0.0.2", b[0], 1234, 80))),  # another connection
               (0, t0 + 30, eth(_tcp(a[0], b[0], a[1], b[1], b'{"id":1}\n'))),
               (1, t0 + 40, bytes(_tcp(b[0], a[0], b[1], a[1], b'{"id":1}\n')))]
    capture = tmp_path / "mixed.pcapng"
    capture.write_bytes(_pcapng(packets, [1, 101]))
    args = dict(src_ip=a[0], src_port=a[1], dest_ip=b[0], dest_port=b[1],
                first_seen_ns=t0 * 1000, last_seen_ns=(t0 + 40) * 1000)
    out = io.BytesIO()
    info = pcap_slice(capture, out=out, **args)
    assert (info.format, info.linktype, info.linktypes) == ("pcapng", None, [1, 101])
    assert info.frames == [1, 2, 4, 5] and info.frame_ranges() == "1-2,4-5"
    data = out.getvalue()
    _, rows, raw = read_back(data, tmp_path, "mixed-slice.pcapng")
    assert list(rows["linktype"]) == [1, 101, 1, 101]
    assert raw == [p[2] for i, p in enumerate(packets) if i != 2]
    assert list(rows["ts_ns"]) == [p[1] * 1000 for i, p in enumerate(packets) if i != 2]
    # the section header's comment option names the capture, its hash and the frames
    shb_len = struct.unpack_from("<I", data, 4)[0]
    code, length = struct.unpack_from("<HH", data, 24)
    comment = data[28:28 + length].decode()
    assert code == 1 and 28 + length <= shb_len
    assert str(capture) in comment and info.capture_sha256 in comment and "1-2,4-5" in comment
    # scapy reads it independently, interfaces and all
    from scapy.utils import RawPcapNgReader

    with RawPcapNgReader(str(tmp_path / "mixed-slice.pcapng")) as reader:
        assert [bytes(pkt) for pkt, _ in reader] == raw
    with pytest.raises(MixedLinkTypes, match=r"mixed\.pcapng: .*link types \[1, 101\]"):
        pcap_slice(capture, out=io.BytesIO(), fmt="pcap", **args)
    forced = pcap_slice(MULTI, src_ip="10.0.0.10", src_port=48000, dest_ip="198.51.100.50",
                        dest_port=443, first_seen_ns=0, last_seen_ns=2**62, out=io.BytesIO(),
                        fmt="pcapng")
    assert forced.format == "pcapng" and forced.packets == 9


@pytest.mark.tshark
@pytest.mark.skipif(shutil.which("tshark") is None, reason="needs Wireshark's tshark")
def test_wireshark_reads_the_slices(sessions, tmp_path):
    s = sessions[0]
    info, data = cut(s)
    path = tmp_path / "s.pcap"
    path.write_bytes(data)
    run = subprocess.run(["tshark", "-r", str(path), "-T", "fields", "-e", "frame.len"],
                         capture_output=True, text=True, check=True)
    assert len(run.stdout.split()) == info.packets


def test_errors_name_the_file(sessions, tmp_path):
    s = next(x for x in sessions if x["evidence"]["capture"].endswith("cgminer_sha256d.pcap"))
    with pytest.raises(CaptureMissing, match=r"^.*gone\.pcap: no such capture file$"):
        cut(s, tmp_path / "gone.pcap")
    text = tmp_path / "notes.pcap"
    text.write_text("not a capture\n")
    with pytest.raises(CaptureUnreadable, match=r"notes\.pcap.*not a pcap or pcapng"):
        cut(s, text)
    # damaged: a record length no writer produces, in the middle of the session
    raw = bytearray(Path(s["evidence"]["capture"]).read_bytes())
    pos, frame = 24, 1
    while frame < 30:
        pos += 16 + struct.unpack_from("<I", raw, pos + 8)[0]
        frame += 1
    struct.pack_into("<I", raw, pos + 8, 0x7FFFFFF0)
    damaged = tmp_path / "damaged.pcap"
    damaged.write_bytes(bytes(raw))
    out = io.BytesIO()
    with pytest.raises(CaptureUnreadable, match=r"damaged\.pcap at offset \d+: record length"
                                                r".*no slice written") as err:
        pcap_slice(
            damaged, src_ip=s["src_ip"], src_port=s["src_port"], dest_ip=s["dest_ip"],
            dest_port=s["dest_port"], first_seen_ns=s["first_seen"],
            last_seen_ns=s["last_seen"], out=out)
    assert out.getvalue() == b"" and "\n" not in str(err.value)
    # a capture cut mid-record (stopped while writing): the slice, with a warning
    cut_short = tmp_path / "short.pcap"
    cut_short.write_bytes(Path(s["evidence"]["capture"]).read_bytes()[:-10])
    info, _ = cut(s, cut_short)
    assert info.warnings and "truncated" in info.warnings[0]
    with pytest.raises(NoPacketsMatched, match=r"cgminer_sha256d\.pcap: no TCP packet"):
        pcap_slice(s["evidence"]["capture"], src_ip=s["src_ip"], src_port=1,
                   dest_ip=s["dest_ip"], dest_port=s["dest_port"],
                   first_seen_ns=s["first_seen"], last_seen_ns=s["last_seen"],
                   out=io.BytesIO())
    with pytest.raises(NoPacketsMatched):  # the right 5-tuple, another day
        pcap_slice(s["evidence"]["capture"], src_ip=s["src_ip"], src_port=s["src_port"],
                   dest_ip=s["dest_ip"], dest_port=s["dest_port"],
                   first_seen_ns=s["first_seen"] + 86400 * 10**9,
                   last_seen_ns=s["last_seen"] + 86400 * 10**9, out=io.BytesIO())
    assert all(issubclass(e, PoolwatchError) for e in (CaptureMissing, CaptureUnreadable,
                                                        NoPacketsMatched, MixedLinkTypes))


def test_frame_ranges():
    assert frame_ranges([]) == ""
    assert frame_ranges([5, 1, 2, 3, 9, 10]) == "1-3,5,9-10"


# ---------------------------------------------------------------------------
# STIX
# ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def leads() -> list[dict]:
    isp = load_isp_records([ISP])
    found = [s.as_dict() for s in scan_sessions(sorted(ISP.glob("*.pcap")))]
    return build_leads(found, isp)


def _personal(leads: list[dict]) -> list[str]:
    values = [str(lead[k]) for lead in leads if lead["entity_id"]
              for k in ("entity_name", "registration_number", "address") if lead[k]]
    assert len(values) > 15 and any(not v.isascii() for v in values)
    return values


def test_stix_bundle_parses_and_holds_each_lead(leads):
    text = stix_bundle(leads, include_personal=False)
    bundle = stix2.parse(text, allow_custom=True)
    objects = {o.id: o for o in bundle.objects}
    by_type: dict[str, list] = {}
    for o in bundle.objects:
        by_type.setdefault(o.type, []).append(o)
    identities = {o.x_poolwatch_lead_id: o for o in by_type["identity"]
                  if "x_poolwatch_lead_id" in o}
    assert set(identities) == {lead["lead_id"] for lead in leads}
    for lead in leads:
        ident = identities[lead["lead_id"]]
        assert ident.confidence == round(lead["confidence"] * 100)
        assert ident.x_poolwatch_status == lead["status"]
        assert ident.x_poolwatch_power_w == lead["power_w"]
        assert ident.x_poolwatch_hashrate_hs == lead["hashrate_hs"]
        assert ident.identity_class == ("unknown" if not lead["entity_id"] else
                                        "individual" if lead["entity_type"] == "residential"
                                        else "organization")
        for window in lead["src_ips"]:
            addr = next(o for o in bundle.objects if o.type in ("ipv4-addr", "ipv6-addr")
                        and o.value == window["ip"])
            assert any(r.source_ref == ident.id and r.target_ref == addr.id
                       for r in by_type["relationship"])
    # one observed-data per detection, each holding its 5-tuple
    assert len(by_type["observed-data"]) == sum(len(lead["evidence"]) for lead in leads)
    for od in by_type["observed-data"]:
        traffic = objects[od.object_refs[0]]
        assert traffic.type == "network-traffic" and traffic.protocols[-1] == "tcp"
        assert traffic.dst_port and traffic.src_port
        assert len(od.x_poolwatch_capture_sha256) == 64
    for rel in by_type["relationship"]:  # every tie points into the bundle
        assert rel.source_ref in objects and rel.target_ref in objects
    assert all(o.infrastructure_types == ["unknown"] and o.x_poolwatch_kind == "mining-pool"
               for o in by_type["infrastructure"])
    pools = {o.name: o for o in by_type["infrastructure"]}
    assert "AntPool" in pools  # one name, one pool address: the name is that address's
    antpool = next(lead for lead in leads if lead["pools"] == ["AntPool"])
    at = pools[f"mining pool at {antpool['evidence'][0]['dest'].rsplit(':', 1)[0]}"]
    assert any(r.source_ref == pools["AntPool"].id and r.relationship_type == "consists-of"
               and r.target_ref == at.id for r in by_type["relationship"])
    assert all(o.object_marking_refs == [stix2.TLP_AMBER.id] for o in by_type["identity"])


def test_stix_ids_are_stable(leads):
    one = stix_bundle(leads, include_personal=False)
    two = stix_bundle(json.loads(json.dumps(leads)), include_personal=False)  # as from JSON
    assert one == two
    ids = {o["id"] for o in json.loads(one)["objects"]}
    # a lead alone exports the same ids it has in the full bundle
    alone = {o["id"] for o in json.loads(stix_bundle(leads[:1], include_personal=False))
             ["objects"] if o["type"] != "bundle"}
    assert alone <= ids


def test_stix_personal_data_only_when_asked(leads):
    personal = _personal(leads)
    redacted = stix_bundle(leads, include_personal=False)
    for value in personal:
        escaped = json.dumps(value)[1:-1]  # as JSON would write it with \u escapes
        assert value not in redacted and escaped not in redacted, value
    names = [o["name"] for o in json.loads(redacted)["objects"] if o["type"] == "identity"]
    assert sum(n.startswith("redacted ") for n in names) == sum(
        1 for lead in leads if lead["entity_id"])
    full = stix_bundle(leads, include_personal=True)
    for value in personal:
        assert value in full, value
    stix2.parse(full, allow_custom=True)
    # the redacted and the named identity of a lead are different objects
    red_ids = {o["id"] for o in json.loads(redacted)["objects"] if o["type"] == "identity"}
    full_ids = {o["id"] for o in json.loads(full)["objects"] if o["type"] == "identity"}
    assert red_ids & full_ids == {next(o["id"] for o in json.loads(full)["objects"]
                                       if o.get("name") == "poolwatch")}


def test_stix_unattributed_lead_and_tlp(leads):
    lead = next(x for x in leads if not x["entity_id"])
    objs = json.loads(stix_bundle([lead], include_personal=True, tlp="red"))["objects"]
    ident = next(o for o in objs if o.get("x_poolwatch_lead_id") == lead["lead_id"]
                 and o["type"] == "identity")
    assert ident["name"] == f"unattributed {lead['src_ips'][0]['ip']}"
    assert ident["confidence"] == 0 and ident["identity_class"] == "unknown"
    assert ident["object_marking_refs"] == [stix2.TLP_RED.id]
    assert not any(o["type"] == "marking-definition" for o in
                   json.loads(stix_bundle([lead], include_personal=False, tlp=None))["objects"])
    with pytest.raises(PoolwatchError, match="TLP"):
        stix_bundle([lead], include_personal=False, tlp="purple")


def test_stix_from_a_hand_written_lead():
    """Leads read back from JSON lines (ISO times), IPv6, a pool host name, a contact
    without a protocol and an instant window all make a valid bundle."""
    lead = {"lead_id": "00aa", "entity_id": None, "confidence": 0.0, "status": "new",
            "first_seen": "2026-03-02T10:00:00.123456789Z",
            "last_seen": "2026-03-02T10:00:00.123456789Z",
            "src_ips": [{"ip": "2001:db8::7", "windows": [["2026-03-02T10:00:00.123456Z",
                                                           "2026-03-02T10:00:00.123456Z"]]}],
            "pools": ["eu1.pool.example.net"],
            "evidence": [{"event_type": "pool_contact", "src": "2001:db8::7:51000",
                          "dest": "2001:db8:f00d::45:443",
                          "first_seen": "2026-03-02T10:00:00.123456Z",
                          "last_seen": "2026-03-02T10:00:00.123456Z", "frames": [3]}]}
    objs = {o["type"]: o for o in json.loads(stix_bundle([lead], include_personal=False))
            ["objects"] if o.get("name") != "poolwatch"}
    assert objs["domain-name"]["value"] == "eu1.pool.example.net"
    assert objs["network-traffic"]["protocols"] == ["ipv6"]
    assert (objs["network-traffic"]["src_port"], objs["network-traffic"]["dst_port"]) == (
        51000, 443)
    assert objs["identity"]["created"] == "2026-03-02T10:00:00.123456Z"
    stix2.parse(stix_bundle([lead], include_personal=True), allow_custom=True)


def test_leads_csv_and_jsonl(leads, tmp_path):
    leads_csv(leads, tmp_path / "leads.csv")
    leads_jsonl(leads, tmp_path / "leads.jsonl")
    with open(tmp_path / "leads.csv", newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    assert [r["lead_id"] for r in rows] == [lead["lead_id"] for lead in leads]
    lines = [json.loads(x) for x in (tmp_path / "leads.jsonl").read_text("utf-8").splitlines()]
    assert [x["lead_id"] for x in lines] == [lead["lead_id"] for lead in leads]
    assert lines[0]["event_type"] == "lead" and lines[0]["evidence"] == leads[0]["evidence"]


def test_stix_wallets_only_with_personal_data(leads):
    """A wallet names its holder as surely as a login: analysts' bundles have none."""
    wallets = {w for lead in leads for w in lead["wallets"]}
    assert len(wallets) >= 3
    redacted = stix_bundle(leads, include_personal=False)
    assert not [w for w in wallets if w in redacted]
    full = json.loads(stix_bundle(leads, include_personal=True))["objects"]
    shown = {w for o in full for w in o.get("x_poolwatch_wallets", [])}
    assert shown == wallets  # unattributed leads' wallets too
