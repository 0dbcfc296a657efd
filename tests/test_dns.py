"""Passive DNS (``poolwatch.detect.dns``): DNS answers crafted with scapy into pcaps, read
through ``poolwatch.scan.iter_batches``, and the pool names they give ``poolwatch scan``."""

from __future__ import annotations

import json
import random
import struct
from decimal import Decimal
from pathlib import Path

import numpy as np
import pytest
from scapy.all import (
    DNS,
    DNSQR,
    DNSRR,
    DNSRROPT,
    IP,
    TCP,
    UDP,
    Ether,
    IPv6,
    Raw,
    raw,
    rdpcap,
    wrpcap,
)

from poolwatch.detect.dns import DEFAULT_GRACE_S, PassiveDns, pool_name_matcher
from poolwatch.fingerprints import load_fingerprints
from poolwatch.scan import ScanSummary, iter_batches, scan_sessions

ROOT = Path(__file__).resolve().parent.parent
STRATUM = ROOT / "pcaps" / "stratum"
NS = 1_000_000_000
T0 = 1_772_445_600 * NS  # 2026-03-02T10:00:00Z
CLIENT, RESOLVER = "10.0.0.5", "192.0.2.53"


# ---------------------------------------------------------------------------- crafting


def response(qname: str, answers: list[tuple], *, qtype: str = "A", txid: int = 7,
             compress: bool = False, edns: bool = False, **flags) -> bytes:
    """A DNS response: ``answers`` are (owner, type, rdata, ttl)."""
    msg = DNS(id=txid, qr=1, rd=1, ra=1, qd=[DNSQR(qname=qname, qtype=qtype)],
              an=[DNSRR(rrname=n, type=t, rdata=d, ttl=ttl) for n, t, d, ttl in answers],
              ar=[DNSRROPT(rclass=4096)] if edns else [], **flags)
    return raw(msg.compress() if compress else msg)


def query(qname: str, txid: int = 7) -> bytes:
    return raw(DNS(id=txid, rd=1, qd=[DNSQR(qname=qname)], ar=[DNSRROPT(rclass=1232)]))


def udp(payload: bytes, *, sport: int = 53, dport: int = 40000, src: str = RESOLVER,
        dst: str = CLIENT) -> bytes:
    ip = IPv6(src=src, dst=dst) if ":" in src else IP(src=src, dst=dst)
    return raw(Ether() / ip / UDP(sport=sport, dport=dport) / Raw(payload))


def tcp(payload: bytes, *, seq: int = 1000, sport: int = 53, dport: int = 40001,
        flags: str = "PA") -> bytes:
    return raw(Ether() / IP(src=RESOLVER, dst=CLIENT) / TCP(sport=sport, dport=dport, seq=seq,
                                                            ack=1, flags=flags) / Raw(payload))


def prefixed(*messages: bytes) -> bytes:
    return b"".join(struct.pack(">H", len(m)) + m for m in messages)


def write_pcap(path: Path, frames: list[tuple]) -> Path:
    """Nanosecond pcap of (ts_ns, frame) or (ts_ns, frame, snap length) records."""
    out = bytearray(struct.pack("<IHHiIII", 0xA1B23C4D, 2, 4, 0, 0, 262144, 1))
    for ts, frame, *snap in frames:
        cut = frame[: snap[0]] if snap else frame
        out += struct.pack("<IIII", ts // NS, ts % NS, len(cut), len(frame)) + cut
    path.write_bytes(bytes(out))
    return path


def learn(tmp_path: Path, frames: list[tuple], **kw) -> PassiveDns:
    dns = PassiveDns(**kw)
    for batch in iter_batches([write_pcap(tmp_path / "dns.pcap", frames)]):
        dns.update(batch)
    return dns


# ---------------------------------------------------------------------------- records


def test_a_and_aaaa(tmp_path):
    dns = learn(tmp_path, [
        (T0, udp(query("pool.example.test"), sport=40000, dport=53, src=CLIENT, dst=RESOLVER)),
        (T0 + 1000, udp(response("pool.example.test",
                                 [("pool.example.test", "A", "203.0.113.7", 300)]))),
        (T0 + 2000, udp(response("pool.example.test", [
            ("pool.example.test", "AAAA", "2001:db8:0:0::7", 300),
            ("pool.example.test", "AAAA", "::ffff:198.51.100.9", 300)], qtype="AAAA"),
            src="2001:db8::53", dst="2001:db8::5")),
    ])
    assert dns.stats["queries"] == 1 and dns.stats["messages"] == 2
    assert dns.stats["answers"] == 3 and dns.stats["malformed"] == dns.stats["truncated"] == 0
    # addresses as records.halves_to_addr writes them: the tracker's dest_ip
    assert dns.host_of("203.0.113.7", 3333, T0 + 1000) == "pool.example.test"
    assert dns.host_of("2001:db8::7", 3333, T0 + 2000) == "pool.example.test"
    assert dns.host_of("198.51.100.9", 3333, T0 + 2000) == "pool.example.test"
    assert dns.host_of("2001:0DB8:0000::7", 3333) == "pool.example.test"  # any spelling
    assert dns.host_of("203.0.113.8", 3333) is None and dns.host_of("not an ip", 1) is None
    assert sorted(dns.addresses()) == ["198.51.100.9", "2001:db8::7", "203.0.113.7"]


def test_cname_chain_maps_the_address_to_the_name_asked_for(tmp_path):
    answers = [("xmr.pool.example", "CNAME", "lb.cdn.example", 60),
               ("lb.cdn.example", "CNAME", "edge7.cdn.example", 600),
               ("edge7.cdn.example", "A", "203.0.113.70", 300),
               ("stray.example", "A", "203.0.113.71", 300)]  # no question leads here
    dns = learn(tmp_path, [(T0, udp(response("XMR.Pool.Example.", answers)))], grace_s=0)
    (name,) = dns.lookup("203.0.113.70", T0)
    assert name.name == "xmr.pool.example"
    assert name.chain == ("xmr.pool.example", "lb.cdn.example", "edge7.cdn.example")
    assert name.valid_until_ns == T0 + 60 * NS  # the shortest TTL along the chain
    assert dns.host_of("203.0.113.71", 0, T0 + 300 * NS) == "stray.example"
    assert dns.stats["cnames"] == 2 and dns.stats["answers"] == 2


def test_cname_loop_and_long_chains_end(tmp_path):
    loop = [("a.example", "CNAME", "b.example", 60), ("b.example", "CNAME", "a.example", 60),
            ("b.example", "A", "192.0.2.1", 60)]
    dns = learn(tmp_path, [(T0, udp(response("a.example", loop)))])
    assert dns.lookup("192.0.2.1")[0].chain == ("a.example", "b.example")


def test_compression_pointers(tmp_path):
    answers = [("pool.example.test", "CNAME", "lb.example.test", 60),
               ("lb.example.test", "A", "192.0.2.5", 300),
               ("lb.example.test", "AAAA", "2001:db8::5", 300)]
    packed = response("pool.example.test", answers, compress=True)
    assert b"\xc0\x0c" in packed and len(packed) < len(response("pool.example.test", answers))
    # a pointer to itself (a loop) and a pointer forward: not DNS, never a hang or a raise
    loop = bytearray(packed)
    loop[12:14] = b"\xc0\x0c"
    forward = bytearray(packed)
    forward[12:14] = b"\xc0\x40"
    dns = learn(tmp_path, [(T0, udp(packed)), (T0 + 1, udp(bytes(loop))),
                           (T0 + 2, udp(bytes(forward)))])
    assert dns.host_of("192.0.2.5", 0, T0) == dns.host_of("2001:db8::5", 0, T0) == \
        "pool.example.test"
    assert dns.lookup("2001:db8::5")[0].chain == ("pool.example.test", "lb.example.test")
    assert dns.stats["malformed"] == 2 and dns.stats["answers"] == 2


def test_edns_and_record_types_dpkt_does_not_know(tmp_path):
    """An OPT record, a large (EDNS-sized) answer, and RRSIG/HTTPS records next to the
    addresses (dpkt's DNS.unpack refuses the whole message for those)."""
    many = [("cdn.example", "A", f"198.51.100.{i}", 120) for i in range(1, 61)]
    signed = [("pool.example", "A", "203.0.113.9", 300),
              ("pool.example", 46, b"\x00\x01\x08\x02" + bytes(40), 300),  # RRSIG
              ("pool.example", 65, b"\x00\x01\x00", 300)]  # HTTPS
    big = response("cdn.example", many, edns=True)
    assert len(big) > 512
    dns = learn(tmp_path, [(T0, udp(big)), (T0 + 1, udp(response("pool.example", signed,
                                                                 edns=True)))])
    assert dns.stats["answers"] == 61 and dns.stats["malformed"] == 0
    assert dns.host_of("198.51.100.60", 0, T0) == "cdn.example"
    assert dns.host_of("203.0.113.9", 0, T0 + 1) == "pool.example"


def test_dns_over_tcp(tmp_path):
    one = response("a.example", [("a.example", "A", "192.0.2.11", 300)])
    two = response("b.example", [("b.example", "A", "192.0.2.12", 300)])
    split = prefixed(response("c.example", [("c.example", "A", "192.0.2.13", 300)]))
    dns = learn(tmp_path, [
        (T0, tcp(b"", flags="S", sport=40001, dport=53)),  # no payload: not DNS
        (T0 + 1, tcp(prefixed(query("a.example")), sport=40001, dport=53)),
        (T0 + 2, tcp(prefixed(one))),
        (T0 + 3, tcp(prefixed(two, query("z.example"), one), seq=2000)),  # pipelined
        (T0 + 4, tcp(split[:20], seq=3000)),  # a message split over two segments
        (T0 + 5, tcp(split[20:], seq=3020)),
        (T0 + 6, tcp(prefixed(two), seq=4000), len(tcp(prefixed(two))) - 2),  # snap length
    ])
    assert dns.host_of("192.0.2.11", 0, T0 + 2) == "a.example"
    assert dns.host_of("192.0.2.12", 0, T0 + 3) == "b.example"
    assert dns.host_of("192.0.2.13", 0, T0 + 5) == "c.example"  # joined from two segments
    assert dns.stats["queries"] == 2 and dns.stats["answers"] == 4
    assert dns.stats["tcp_reassembled"] == 1
    assert dns.stats["truncated"] == 1 and dns.stats["malformed"] == 0


def test_dns_over_tcp_skips_retransmissions_and_restarts_after_a_gap(tmp_path):
    big = response("big.example", [("big.example", "A", f"192.0.2.{k}", 300)
                                   for k in range(20, 60)])
    nxt = prefixed(response("d.example", [("d.example", "A", "192.0.2.14", 300)]))
    stream = prefixed(big)
    cut1, cut2 = 100, 400
    dns = learn(tmp_path, [
        (T0, tcp(stream[:cut1], seq=5000)),
        (T0 + 1, tcp(stream[:cut1], seq=5000)),  # retransmitted whole
        (T0 + 2, tcp(stream[cut1 - 10:cut2], seq=5000 + cut1 - 10)),  # overlaps by 10 bytes
        (T0 + 3, tcp(stream[cut2:], seq=5000 + cut2)),
        (T0 + 4, tcp(nxt[:10], seq=5000 + len(stream))),
        # the segment with nxt[10:30] is lost; the next one does not start a message
        (T0 + 5, tcp(nxt[30:], seq=5000 + len(stream) + 30)),
        (T0 + 6, tcp(nxt, seq=9000, dport=40002)),  # another connection: read
    ])
    assert dns.host_of("192.0.2.59", 0, T0 + 3) == "big.example"
    assert dns.stats["tcp_retransmitted"] == 1 and dns.stats["tcp_gaps"] == 1
    assert dns.host_of("192.0.2.14", 0, T0 + 6) == "d.example"
    assert dns.stats["answers"] == 41


def test_responses_that_name_no_address_are_counted_not_parsed(tmp_path):
    ptr = "4.3.2.1.in-addr.arpa"
    dns = learn(tmp_path, [
        (T0, udp(response(ptr, [(ptr, "PTR", "host.example", 300)], qtype="PTR"))),
        (T0 + 1, udp(response("t.example", [("t.example", "TXT", "v=spf1 -all", 300)],
                              qtype="TXT"))),
        (T0 + 2, udp(raw(DNS(id=1, qr=1, rcode=3, qd=[DNSQR(qname="nx.example")])))),
        (T0 + 3, udp(response("any.example", [("any.example", "A", "192.0.2.60", 300)],
                              qtype=255))),
        (T0 + 4, udp(raw(DNS(id=2, qr=1, an=[DNSRR(rrname="noq.example", type="A",
                                                   rdata="192.0.2.61", ttl=300)])))),
    ])
    assert dns.stats["no_addresses"] == 3 and dns.stats["messages"] == 2
    assert dns.host_of("192.0.2.60", 0) == "any.example"
    assert dns.host_of("192.0.2.61", 0) == "noq.example"  # no question: the owner's name


# ---------------------------------------------------------------------------- bad input


def test_truncated_malformed_and_garbage_are_counted_never_raised(tmp_path):
    good = response("ok.example", [("ok.example", "A", "192.0.2.20", 300)])
    two = response("cut.example", [("cut.example", "A", "192.0.2.21", 300),
                                   ("cut.example", "A", "192.0.2.22", 300)])
    lying = bytearray(good)
    lying[7] = 3  # ancount 3, one answer present, datagram complete
    rng = random.Random(53)
    garbage = [bytes([0xAB, 0xCD, 0xFF]) + rng.randbytes(rng.randrange(9, 200))
               for _ in range(30)]  # QR set: parsed as responses
    frames = [
        (T0, udp(b"\x12\x34\x81")),  # 3 bytes: no header
        (T0 + 1, udp(bytes(lying))),
        (T0 + 2, udp(b"\xff" * 40)),
        (T0 + 3, udp(two), len(udp(two)) - 2),  # snap length cuts the second answer
        (T0 + 4, udp(good), 14 + 20 + 8 + 6),  # cut inside the header
        (T0 + 5, udp(response("tc.example", [("tc.example", "A", "192.0.2.23", 30)], tc=1))),
        (T0 + 6, udp(b"\x00\x01\x81\x80\x00\x01\x00\x01\x00\x00\x00\x00\x03\xff\xfe\xfd\x00")),
        *[(T0 + 10 + i, udp(g)) for i, g in enumerate(garbage)],
        (T0 + 100, udp(good)),  # and the scan goes on
    ]
    dns = learn(tmp_path, frames)
    assert dns.host_of("192.0.2.20", 0, T0 + 100) == "ok.example"
    assert dns.host_of("192.0.2.21", 0, T0 + 3) == "cut.example"  # before the cut: kept
    assert dns.host_of("192.0.2.22", 0) is None
    assert dns.host_of("192.0.2.23", 0, T0 + 5) == "tc.example"
    assert dns.stats["truncated"] == 2 and dns.stats["tc"] == 1
    assert dns.stats["malformed"] >= 4  # the 3 bytes, the lying counts, 0xff..., the label
    assert dns.stats["packets"] == len(frames)


def test_every_cut_and_every_flipped_byte(tmp_path):
    """A valid compressed response cut at every length (snap length: truncated, once each)
    and with each byte set to 0xff and to 0xc0 (anything but an exception)."""
    msg = response("pool.example.test", [("pool.example.test", "CNAME", "lb.example.test", 60),
                                          ("lb.example.test", "A", "192.0.2.5", 300),
                                          ("lb.example.test", "AAAA", "2001:db8::5", 300)],
                   compress=True, edns=True)
    head = len(udp(b""))
    cuts = [(T0 + i, udp(msg), head + i) for i in range(1, len(msg))]
    dns = learn(tmp_path, cuts)
    assert dns.stats["truncated"] == len(cuts) and dns.stats["malformed"] == 0
    assert dns.host_of("192.0.2.5", 0) == "pool.example.test"  # cuts after the A record
    flips = [(T0 + i, udp(msg[:i] + bytes([b]) + msg[i + 1:]))
             for i in range(len(msg)) for b in (0xFF, 0xC0)]
    dns = learn(tmp_path, flips)
    assert dns.stats["packets"] == len(flips)
    assert dns.stats["truncated"] == 0  # nothing was cut: what does not parse is malformed


def test_the_selection_kernel_picks_what_its_numpy_reference_picks(tmp_path):
    """kernels.dnsselect against its plain numpy statement, on every kind of port-53 packet
    (responses A/AAAA/PTR/TXT/ANY, queries, empty answers, compressed question names, cut
    headers, byte flips, TCP segments, fragments, other ports, IPv6) and the sample pcaps."""
    from poolwatch.kernels._reference_dnsselect import select_dns_messages_reference
    from poolwatch.kernels.dnsselect import select_dns_messages

    msgs = [response("a.example", [("a.example", "A", "192.0.2.1", 60)]),
            response("a.example", [("a.example", "AAAA", "2001:db8::1", 60)], qtype="AAAA"),
            response("1.2.0.192.in-addr.arpa", [("1.2.0.192.in-addr.arpa", "PTR", "a.", 60)],
                     qtype="PTR"),
            response("t.example", [("t.example", "TXT", "hello", 60)], qtype="TXT"),
            response("any.example", [("any.example", "A", "192.0.2.2", 60)], qtype=255),
            response("none.example", []), query("q.example"),
            response("c.example", [("c.example", "CNAME", "d.example", 60),
                                   ("d.example", "A", "192.0.2.3", 60)], compress=True,
                     edns=True)]
    pointer = bytearray(msgs[0])
    pointer[12:14] = b"\xc0\x0c"  # a question name that is a pointer: the parser decides
    msgs.append(bytes(pointer))
    rng = random.Random(7)
    frames: list[tuple] = []
    for m in msgs:
        frames += [(T0, udp(m)), (T0, udp(m, src="2001:db8::53", dst="2001:db8::5")),
                   (T0, udp(m), len(udp(b"")) + rng.randrange(1, len(m))),
                   (T0, udp(m, sport=40000, dport=53)), (T0, udp(m, sport=5353, dport=5353)),
                   (T0, tcp(prefixed(m))), (T0, tcp(b"", flags="A"))]
        for _ in range(20):
            i = rng.randrange(len(m))
            frames.append((T0, udp(m[:i] + bytes([rng.randrange(256)]) + m[i + 1:])))
    frames += [(T0, udp(b"\x12\x34\x81")), (T0, udp(b"")),
               (T0, raw(Ether() / IP(src=RESOLVER, dst=CLIENT, flags="MF") / UDP(sport=53)
                        / Raw(msgs[0])))]
    paths = [write_pcap(tmp_path / "mix.pcap", frames), *sorted(STRATUM.glob("*.pcap"))]
    seen = 0
    for batch in iter_batches(paths):
        got = select_dns_messages(batch.buf, batch.packets, 53)
        want = select_dns_messages_reference(batch.buf, batch.packets, 53)
        for g, w in zip(got, want):
            assert np.array_equal(g, w), batch.path
        seen += int(got[5][0])
    assert seen > len(frames) // 2


def _state(dns: PassiveDns) -> tuple:
    return (dict(dns.stats), {a: [(r.name, r.chain, r.first, r.last, r.end) for r in runs]
                              for a, runs in dns._map.items()}, dict(dns.preferred))


def test_the_response_kernel_reads_what_the_python_walk_reads():
    """kernels.dnsparse (all of a batch's responses in one call) against PassiveDns._message
    (dpkt's unpack_name and struct, one message at a time), its twin: the same counts and
    the same names for every message, whole, cut at every length and with bytes flipped
    (bad pointers, labels, lengths, non-UTF-8 names), one by one and all in one call."""
    fp = load_fingerprints()
    base = [
        response("pool.example.test", [("pool.example.test", "CNAME", "lb.example.test", 60),
                                        ("lb.example.test", "A", "192.0.2.5", 300),
                                        ("lb.example.test", "AAAA", "2001:db8::5", 30)],
                 compress=True, edns=True),
        response("a.example", [("a.example", "A", "192.0.2.1", 60),
                               ("a.example", "TXT", "hello", 60)]),
        response("etc.2miners.com", [("etc.2miners.com", "A", "192.0.2.9", 2**31 + 5)]),
        response("q.example", []),
        response("x.example", [("x.example", "A", "192.0.2.2", 60)], opcode=2),
        response("t.example", [("t.example", "A", "192.0.2.3", 60)], tc=1),
    ]
    rng = random.Random(11)
    cases: list[tuple[bytes, bool]] = [(m, False) for m in base]
    for m in base:
        cases += [(m[:i], True) for i in range(12, len(m))]
        for i in range(len(m)):
            for b in (0xFF, 0xC0, 0x3F, 0x00, 0x80, rng.randrange(256)):
                cases.append((m[:i] + bytes([b]) + m[i + 1:], False))
    head, tail = base[0][:12], b"\x00\x01\x00\x01"
    answer = b"\xc0\x0c\x00\x01\x00\x01\x00\x00\x00\x3c\x00\x04\xc0\x00\x02\x63"
    for name in (b"\xc0\x0c",  # a pointer to itself
                 b"\x01a\xc0\x0c",  # a pointer back to the start of its own name
                 b"\x3f" + b"a" * 63 + b"\xc0\x0c",
                 b"".join(bytes([63]) + b"b" * 63 for _ in range(3)) + b"\x3e" + b"c" * 62 + b"\x00",
                 b"".join(bytes([63]) + b"b" * 63 for _ in range(3)) + b"\x3f" + b"c" * 63 + b"\x00",
                 b"\x40" + b"d" * 64 + b"\x00", b"\x80\x00", b"\x05short"):
        cases += [(head + name + tail + answer, False), (head + name + tail + answer, True)]
    cases.append((base[0][:12] + b"\x03\xc3\xa9x\x00\x00\x01\x00\x01", False))  # UTF-8
    cases.append((base[0][:12] + b"\x02\xff\xfe\x00\x00\x01\x00\x01", False))  # not UTF-8
    one, each, batch = (PassiveDns(prefer=pool_name_matcher(fp)) for _ in range(3))
    for n, (msg, cut) in enumerate(cases):
        one._message(msg, cut, T0 + n)
        each._messages(np.frombuffer(msg, np.uint8), np.array([0]), np.array([len(msg)]),
                       np.array([cut]), [T0 + n])
        assert _state(each) == _state(one), (n, msg.hex(), cut)
    joined = b"".join(m for m, _ in cases)
    at = np.cumsum([0] + [len(m) for m, _ in cases])[:-1]
    batch._messages(np.frombuffer(joined, np.uint8), at, np.array([len(m) for m, _ in cases]),
                    np.array([c for _, c in cases]), [T0 + n for n in range(len(cases))])
    assert _state(batch) == _state(one)
    assert one.stats["malformed"] > 100 and one.stats["truncated"] > 50
    assert one.host_of("192.0.2.5", 0) == "pool.example.test"


def test_only_port_53_udp_and_tcp_responses_are_read(tmp_path):
    answer = response("x.example", [("x.example", "A", "192.0.2.30", 300)])
    dns = learn(tmp_path, [
        (T0, udp(answer, sport=5353, dport=5353)),  # mDNS: another protocol
        (T0 + 1, udp(answer, sport=40000, dport=40001)),
        (T0 + 2, raw(Ether() / IP(src=RESOLVER, dst=CLIENT, proto=47) / Raw(b"\x00\x35" * 20))),
    ])
    assert len(dns) == 0 and dns.stats["packets"] == 0
    # a response to a resolver's port 53 (server to server) is read too
    dns = learn(tmp_path, [(T0, udp(answer, sport=40000, dport=53))])
    assert dns.host_of("192.0.2.30", 0) == "x.example"


# ---------------------------------------------------------------------------- time


def test_ttl_and_grace_boundaries_to_the_nanosecond(tmp_path):
    at = T0 + 123_456_789
    frames = [(at, udp(response("p.example", [("p.example", "A", "192.0.2.40", 300)])))]
    dns = learn(tmp_path, frames, grace_s=10)
    end = at + 310 * NS
    assert dns.host_of("192.0.2.40", 0, at - 1) is None  # before the answer
    assert dns.host_of("192.0.2.40", 0, at) == "p.example"
    assert dns.host_of("192.0.2.40", 0, end) == "p.example"
    assert dns.host_of("192.0.2.40", 0, end + 1) is None
    assert dns.host_of("192.0.2.40", 0, None) == "p.example"  # the latest, whatever its time
    strict = learn(tmp_path, frames, grace_s=0)
    assert strict.host_of("192.0.2.40", 0, at + 300 * NS) == "p.example"
    assert strict.host_of("192.0.2.40", 0, at + 300 * NS + 1) is None
    default = learn(tmp_path, frames)
    assert DEFAULT_GRACE_S == 3600
    assert default.host_of("192.0.2.40", 0, at + 3900 * NS) == "p.example"
    assert default.host_of("192.0.2.40", 0, at + 3900 * NS + 1) is None


def test_refreshes_extend_and_gaps_stay_gaps(tmp_path):
    a = lambda ttl: response("p.example", [("p.example", "A", "192.0.2.41", ttl)])
    dns = learn(tmp_path, [(T0, udp(a(60))), (T0 + 50 * NS, udp(a(60))),
                           (T0 + 500 * NS, udp(a(60))),
                           (T0 + 540 * NS, udp(a(0x80000000)))], grace_s=0)  # top bit: TTL 0
    assert dns.host_of("192.0.2.41", 0, T0 + 110 * NS) == "p.example"  # refreshed at 50 s
    assert dns.host_of("192.0.2.41", 0, T0 + 110 * NS + 1) is None
    assert dns.host_of("192.0.2.41", 0, T0 + 499 * NS) is None  # expired until re-answered
    assert dns.host_of("192.0.2.41", 0, T0 + 560 * NS) == "p.example"
    assert dns.host_of("192.0.2.41", 0, T0 + 560 * NS + 1) is None  # TTL 0 extends nothing
    runs = dns.lookup("192.0.2.41")
    assert [(r.first_answer_ns, r.last_answer_ns, r.valid_until_ns) for r in runs] == [
        (T0 + 500 * NS, T0 + 540 * NS, T0 + 560 * NS), (T0, T0 + 50 * NS, T0 + 110 * NS)]


def test_several_names_prefer_then_the_most_recent(tmp_path):
    shared = "203.0.113.50"
    frames = [
        (T0, udp(response("etc.2miners.com", [("etc.2miners.com", "A", shared, 300)]))),
        (T0 + 10 * NS, udp(response("www.shop.example", [("www.shop.example", "A", shared,
                                                          300)]))),
        (T0 + 20 * NS, udp(response("alias.example", [
            ("alias.example", "CNAME", "pool.eu.nicehash.com", 300),
            ("pool.eu.nicehash.com", "A", "203.0.113.51", 300)]))),
        (T0 + 30 * NS, udp(response("cdn.example", [("cdn.example", "A", "203.0.113.51",
                                                     300)]))),
    ]
    plain = learn(tmp_path, frames)
    assert plain.host_of(shared, 1010, T0 + 5 * NS) == "etc.2miners.com"  # the only one yet
    assert plain.host_of(shared, 1010, T0 + 15 * NS) == "www.shop.example"  # most recent
    assert [n.name for n in plain.lookup(shared, T0 + 15 * NS)] == ["www.shop.example",
                                                                     "etc.2miners.com"]
    pools = learn(tmp_path, frames, prefer=pool_name_matcher(load_fingerprints()))
    assert pools.host_of(shared, 1010, T0 + 15 * NS) == "etc.2miners.com"
    assert pools.host_of(shared, 1010, None) == "etc.2miners.com"
    # a chain through a pool name counts; the name returned is still the one asked for
    assert pools.host_of("203.0.113.51", 0, T0 + 40 * NS) == "alias.example"
    # prefer never brings back a name that is no longer valid
    strict = learn(tmp_path, frames, grace_s=0, prefer=lambda n: n.endswith("2miners.com"))
    assert strict.host_of(shared, 1010, T0 + 305 * NS) == "www.shop.example"


def test_memory_is_bounded(tmp_path):
    frames = [(T0 + i * NS, udp(response(f"h{i}.example", [(f"h{i}.example", "A",
                                                            f"192.0.2.{100 + i}", 300)])))
              for i in range(10)]
    frames.append((T0 + 20 * NS, udp(response("again.example", [
        ("again.example", "A", "192.0.2.106", 300)]))))  # refreshes an address: kept longer
    dns = learn(tmp_path, frames, max_entries=4)
    assert len(dns) == 4 and dns.stats["evicted"] == 6
    assert dns.addresses() == ["192.0.2.107", "192.0.2.108", "192.0.2.109", "192.0.2.106"]
    assert dns.host_of("192.0.2.100", 0) is None
    names = [(T0 + i * NS, udp(response(f"n{i}.example", [(f"n{i}.example", "A", "192.0.2.99",
                                                          300 + i)]))) for i in range(5)]
    dns = learn(tmp_path, names, max_names=2)
    assert dns.stats["names_dropped"] == 3
    assert [n.name for n in dns.lookup("192.0.2.99")] == ["n4.example", "n3.example"]
    with pytest.raises(ValueError):
        PassiveDns(max_entries=0)


# ---------------------------------------------------------------------------- poolwatch scan


def dns_answers_by_scapy(capture: Path) -> dict[str, str]:
    """Address → name from the capture's DNS answers, read independently with scapy."""
    out = {}
    for pkt in rdpcap(str(capture)):
        if pkt.haslayer(DNS) and pkt[DNS].qr == 1:
            for rr in pkt[DNS].an:
                if rr.type == 1:
                    out[rr.rdata] = rr.rrname.decode().rstrip(".")
    return out


ORACLES = sorted(STRATUM.glob("*.expected.json"))


@pytest.mark.skipif(not ORACLES, reason="pcaps/stratum/ has no generated samples")
def test_scan_names_the_pool_from_the_captures_dns():
    fp = load_fingerprints()
    summary = ScanSummary()
    sessions = list(scan_sessions([STRATUM], summary=summary))
    named = 0
    for oracle in ORACLES:
        capture = oracle.with_name(oracle.name.replace(".expected.json", ".pcap"))
        answers = dns_answers_by_scapy(capture)
        for want in json.loads(oracle.read_text())["sessions"]:
            (got,) = [s for s in sessions if (s.src_ip, s.src_port, s.dest_ip, s.dest_port)
                      == (want["src_ip"], want["src_port"], want["dest_ip"], want["dest_port"])]
            if want["dest_ip"] in answers:
                named += 1
                assert got.pool_host == answers[want["dest_ip"]] == want["pool_host"]
                pools = {e.pool for e in fp.endpoints_for(got.pool_host, got.dest_port)}
                assert len(pools) == 1 and got.pool == pools.pop()
            elif "pool_host" in want:
                assert got.pool_host == want["pool_host"]
    assert named == 2 and summary.dns_answers == 2
    eth = next(s for s in sessions if s.dialect == "ethproxy")
    # the oracle: "the coin comes from the DNS name (etc.2miners.com, port 1010 in pools.csv)"
    assert (eth.pool, eth.pool_host, eth.coin, eth.algorithm) == \
        ("2Miners", "etc.2miners.com", "ETC", "etchash")
    assert eth.evidence["coin_from"] == "pool endpoint"
    nicehash = next(s for s in sessions if s.dialect == "ethereumstratum-1")
    assert (nicehash.pool, nicehash.coin) == ("NiceHash", None)  # a marketplace: no coin


def moved_dns(tmp_path: Path, shift_s: float) -> Path:
    """The ETH-PROXY sample with its DNS exchange moved ``shift_s`` from the session's SYN."""
    pkts = rdpcap(str(STRATUM / "ethproxy_ethminer.pcap"))
    dns = [p for p in pkts if p.haslayer(DNS)]
    rest = [p for p in pkts if not p.haslayer(DNS)]
    syn = rest[0].time
    for i, p in enumerate(dns):
        p.time = syn + Decimal(shift_s) + Decimal(i) / 1000
    path = tmp_path / f"ethproxy_dns_{shift_s}.pcap"
    wrpcap(str(path), sorted(dns + rest, key=lambda p: p.time))
    return path


@pytest.mark.parametrize(("shift_s", "named"), [
    (-0.5, True),
    (-(300 + DEFAULT_GRACE_S - 60), True),  # past the TTL, within the grace
    (-(300 + DEFAULT_GRACE_S + 60), False),  # past both
    (5.0, False),  # answered after the session began: not what it connected by
])
def test_the_name_must_be_valid_when_the_session_starts(tmp_path, shift_s, named):
    (sess,) = scan_sessions([moved_dns(tmp_path, shift_s)])
    assert sess.pool_host == ("etc.2miners.com" if named else None)
    assert sess.coin == ("ETC" if named else None)


def test_dns_numbers_are_dpkts():
    """dns.py names the RFC numbers itself (dpkt is imported only by the Python walk)."""
    import dpkt.dns

    from poolwatch.detect import dns

    assert (dns._CLASS_IN, dns._A, dns._AAAA, dns._CNAME, dns._OPCODE_QUERY) == (
        dpkt.dns.DNS_IN, dpkt.dns.DNS_A, dpkt.dns.DNS_AAAA, dpkt.dns.DNS_CNAME,
        dpkt.dns.DNS_QUERY)
