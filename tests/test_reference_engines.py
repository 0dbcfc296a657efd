"""The reference engines (dpkt, scapy, pyshark) against each other, the oracles and the contract.

Each engine reads every sample capture and a set of edge-case captures built here (odd link
types, tags, truncations, multi-section pcapng, compressed and broken files). The engines must
give identical PACKET rows; where a library cannot follow docs/decoding.md the difference is
listed in KNOWN_DIFFERENCES (and in the "Known engine differences" section of that page), and
the test asserts exactly those differences, no more and no fewer. The edge cases also carry
what the contract says they decode to, so that the engines cannot all be wrong together.
"""

from __future__ import annotations

import gzip
import lzma
import shutil
import struct
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
import zstandard

from poolwatch.engines import get_engine
from poolwatch.records import PACKET, FileReport, PacketStatus, addr_to_halves

from .conftest import oracle

scapy_all = pytest.importorskip("scapy.all")
from scapy.all import (
    AH,
    ARP,
    GRE,
    ICMP,
    IP,
    SCTP,
    TCP,
    UDP,
    Ether,
    ICMPv6DestUnreach,
    ICMPv6EchoRequest,
    ICMPv6ND_NS,
    IPv6,
    IPv6ExtHdrDestOpt,
    IPv6ExtHdrFragment,
    IPv6ExtHdrHopByHop,
    IPv6ExtHdrRouting,
    Raw,
)

S = PacketStatus
HAVE_TSHARK = shutil.which("tshark") is not None
needs_tshark = pytest.mark.skipif(not HAVE_TSHARK, reason="tshark (Wireshark) is not installed")
ENGINES = [
    "fast",
    "dpkt",
    "scapy",
    pytest.param("pyshark", marks=[pytest.mark.tshark, needs_tshark]),
]
BASELINE = "dpkt"

# What flows are built from: must be equal everywhere.
FLOW_COLUMNS = ("frame", "ts_ns", "status", "vlan", "inner_vlan", "proto", "src_hi", "src_lo",
                "dst_hi", "dst_lo", "sport", "dport", "tcp_flags", "ip_len")  # fmt: skip
# The rest of the row: equal too, save for the known differences.
DETAIL_COLUMNS = ("caplen", "wirelen", "linktype", "flags", "l3_off", "l4_off", "payload_off",
                  "payload_len")  # fmt: skip

# What the libraries cannot do, as docs/decoding.md lists it under "Known engine differences".
# (engine, edge label) -> columns that differ from the baseline for that packet, wherever it is.
KNOWN_DIFFERENCES = {
    ("pyshark", "dlt 12 ipv4"): {"linktype"},
    ("pyshark", "dlt 14 ipv6"): {"linktype"},
    ("pyshark", "user link type 0"): {"linktype"},
    ("pyshark", "ipv6 payload length 0"): {"sport", "dport", "tcp_flags"},
    ("pyshark", "linktype ipv6 carrying ipv4"): {"status", "proto", "src_lo", "dst_lo", "ip_len",
                                                  "l4_off", "sport", "dport", "tcp_flags",
                                                  "payload_off"},
}  # fmt: skip
# (engine, edge label) -> what report.error says when the engine cannot read that packet (and
# so stops before it).
KNOWN_UNREADABLE = {
    ("pyshark", "simple packet block"): "KeyError: 'frame.time_epoch'",
}

A4, B4 = "192.0.2.1", "198.51.100.2"
A6, B6 = "2001:db8::1", "2001:db8::2"
MAC = bytes.fromhex("02005e100001") + bytes.fromhex("02005e100002")
T0 = 1_772_438_400 * 10**9  # 2026-03-02T08:00:00Z


# ---------------------------------------------------------------------------
# Edge-case packets and what the contract says they decode to
# ---------------------------------------------------------------------------
@dataclass
class Edge:
    """One crafted packet: its bytes, its wire length and the PACKET values it must give."""

    label: str
    data: bytes
    expect: dict = field(default_factory=dict)
    wirelen: int | None = None  # when the capture cut the packet short


def eth(etype: int, body: bytes = b"", tags=()) -> bytes:
    """An Ethernet II frame; ``tags`` are (TPID, TCI) pairs in wire order."""
    types = [tpid for tpid, _ in tags] + [etype]
    out = MAC + struct.pack(">H", types[0])
    for (_, tci), nxt in zip(tags, types[1:]):
        out += struct.pack(">HH", tci, nxt)
    return out + body


def v4(l4, **ip) -> bytes:
    return bytes(IP(src=A4, dst=B4, **ip) / l4)


def v6(*layers, **ip6) -> bytes:
    pkt = IPv6(src=A6, dst=B6, **ip6)
    for layer in layers:
        pkt = pkt / layer
    return bytes(pkt)


def ok4(proto: int, sport: int = 0, dport: int = 0, **more) -> dict:
    return {"status": S.OK, "proto": proto, "src": A4, "dst": B4, "sport": sport,
            "dport": dport, **more}  # fmt: skip


def ok6(proto: int, sport: int = 0, dport: int = 0, **more) -> dict:
    return {"status": S.OK, "proto": proto, "src": A6, "dst": B6, "sport": sport,
            "dport": dport, **more}  # fmt: skip


def patch(raw: bytes, offset: int, fmt: str, value: int) -> bytes:
    """Overwrite one header field (checksums are left wrong: no engine checks them)."""
    b = bytearray(raw)
    struct.pack_into(fmt, b, offset, value)
    return bytes(b)


TCP_SYN = TCP(sport=40000, dport=3333, flags="S")
UDP_DNS = UDP(sport=40001, dport=53) / Raw(b"\x12\x34" + b"\0" * 10)
ICMP6_QUOTE = IPv6(src=B6, dst=A6) / TCP(sport=80, dport=40000)


def mpls(*labels: int) -> bytes:
    """An MPLS label stack, TTL 64, bottom-of-stack bit on the last label."""
    last = len(labels) - 1
    return b"".join(
        struct.pack(">I", v << 12 | (i == last) << 8 | 64) for i, v in enumerate(labels)
    )


def pppoe(protocol: int, payload: bytes) -> bytes:
    """PPPoE session header (version/type, code, session id, length), then the PPP protocol."""
    return struct.pack(">BBHHH", 0x11, 0, 0xABCD, 2 + len(payload), protocol) + payload


def ethernet_edges() -> list[Edge]:
    tcp = v4(TCP_SYN)
    udp = v4(UDP_DNS)
    big = v4(TCP(sport=40000, dport=3333, flags="PA") / Raw(b"x" * 200))
    with_options = v4(UDP_DNS, options=[scapy_all.IPOption_NOP()] * 4)
    llc_snap_ipv4 = struct.pack(">H", 8 + len(udp)) + bytes.fromhex("aaaa030000000800") + udp
    teredo = UDP(sport=3544, dport=3544) / IPv6(src="2001::1", dst=B6) / UDP(sport=1, dport=2)
    return [
        Edge("tcp syn", eth(0x0800, tcp), ok4(6, 40000, 3333, tcp_flags=0x02, ip_len=40)),
        Edge("ipv4 options", eth(0x0800, with_options), ok4(17, 40001, 53, l4_off=14 + 24)),
        Edge("vlan", eth(0x0800, tcp, [(0x8100, 10)]), ok4(6, 40000, 3333, vlan=10)),
        Edge(
            "vlan priority bits", eth(0x0800, tcp, [(0x8100, 0xE00A)]), ok4(6, 40000, 3333, vlan=10)
        ),
        Edge(
            "qinq 88a8",
            eth(0x0800, tcp, [(0x88A8, 20), (0x8100, 30)]),
            ok4(6, 40000, 3333, vlan=20, inner_vlan=30),
        ),
        Edge(
            "qinq 9100",
            eth(0x0800, tcp, [(0x9100, 21), (0x8100, 31)]),
            ok4(6, 40000, 3333, vlan=21, inner_vlan=31),
        ),
        Edge(
            "three tags",
            eth(0x0800, tcp, [(0x8100, 1), (0x8100, 2), (0x8100, 3)]),
            ok4(6, 40000, 3333, vlan=1, inner_vlan=2, l3_off=26),
        ),
        Edge(
            "inner tag 88a8",
            eth(0x0800, tcp, [(0x8100, 5), (0x88A8, 6)]),
            ok4(6, 40000, 3333, vlan=5, inner_vlan=6),
        ),
        Edge("tag 9200 is not a tag", eth(0x0800, tcp, [(0x9200, 7)]), {"status": S.NOT_IP}),
        Edge("pppoe ipv4", eth(0x8864, pppoe(0x21, udp)), ok4(17, 40001, 53, l3_off=22)),
        Edge("pppoe ipv6", eth(0x8864, pppoe(0x57, v6(UDP_DNS))), ok6(17, 40001, 53)),
        Edge("pppoe lcp", eth(0x8864, pppoe(0xC021, b"\x01\x01\x00\x04")), {"status": S.NOT_IP}),
        Edge("mpls ipv4", eth(0x8847, mpls(16) + tcp), ok4(6, 40000, 3333, l3_off=18)),
        Edge(
            "mpls two labels ipv6",
            eth(0x8847, mpls(16, 17) + v6(UDP_DNS)),
            ok6(17, 40001, 53, l3_off=22),
        ),
        Edge("mpls ipv4 with options", eth(0x8847, mpls(16) + with_options), ok4(17, 40001, 53)),
        Edge(
            "arp",
            bytes(Ether(src="02:00:5e:10:00:02", dst="ff:ff:ff:ff:ff:ff") / ARP(psrc=A4, pdst=B4)),
            {"status": S.NOT_IP},
        ),
        Edge("802.3 llc/snap carrying ipv4", MAC + llc_snap_ipv4, {"status": S.NOT_IP}),
        Edge("ethernet header cut", eth(0x0800, tcp)[:10], {"status": S.TRUNCATED_L2}),
        Edge(
            "vlan tag cut",
            eth(0x0800, tcp, [(0x8100, 10)])[:16],
            {"status": S.TRUNCATED_L2, "vlan": 0},
        ),
        Edge(
            "second tag cut",
            eth(0x0800, tcp, [(0x88A8, 20), (0x8100, 30)])[:20],
            {"status": S.TRUNCATED_L2, "vlan": 20},
        ),
        Edge("pppoe cut", eth(0x8864, pppoe(0x21, udp))[:21], {"status": S.TRUNCATED_L2}),
        Edge("mpls without payload", eth(0x8847, mpls(16)), {"status": S.TRUNCATED_L2}),
        Edge(
            "ipv4 header cut", eth(0x0800, tcp)[: 14 + 12], {"status": S.TRUNCATED_L3, "l3_off": 14}
        ),
        Edge("ipv4 version 5", eth(0x0800, patch(tcp, 0, ">B", 0x55)), {"status": S.BAD_IP_HEADER}),
        Edge("ipv4 ihl 4", eth(0x0800, patch(tcp, 0, ">B", 0x44)), {"status": S.BAD_IP_HEADER}),
        Edge(
            "ipv4 ihl 15 not captured",
            eth(0x0800, patch(tcp, 0, ">B", 0x4F)),
            {"status": S.TRUNCATED_L3},
        ),
        Edge(
            "ipv4 total length 10",
            eth(0x0800, patch(tcp, 2, ">H", 10)),
            {"status": S.BAD_IP_HEADER},
        ),
        Edge(
            "tso total length 0",
            eth(0x0800, patch(big, 2, ">H", 0)),
            ok4(6, 40000, 3333, ip_len=len(big), payload_len=200),
        ),
        Edge(
            "ipv4 later fragment",
            eth(0x0800, v4(Raw(b"y" * 64), proto=17, frag=100)),
            {"status": S.FRAGMENT, "proto": 17, "src": A4, "dst": B4, "sport": 0, "dport": 0},
        ),
        Edge(
            "ipv4 first fragment", eth(0x0800, v4(UDP_DNS, flags="MF")), ok4(17, 40001, 53, flags=1)
        ),
        Edge(
            "tcp header cut by the snap length",
            eth(0x0800, big)[: 14 + 20 + 12],
            {"status": S.TRUNCATED_L4, "proto": 6, "sport": 0},
            wirelen=14 + len(big),
        ),
        Edge(
            "tcp payload cut by the snap length",
            eth(0x0800, big)[: 14 + 40 + 50],
            ok4(6, 40000, 3333, payload_len=50, ip_len=len(big)),
            wirelen=14 + len(big),
        ),
        Edge(
            "tcp data offset 3",
            eth(0x0800, patch(tcp, 32, ">B", 0x30)),
            {"status": S.BAD_L4_HEADER, "proto": 6, "sport": 0},
        ),
        Edge(
            "tcp ecn and ns flags",
            eth(0x0800, patch(v4(TCP(sport=40000, dport=3333, flags="SEC")), 32, ">B", 0x51)),
            ok4(6, 40000, 3333, tcp_flags=0xC2),
        ),
        Edge(
            "udp header beyond the ip total length",
            eth(0x0800, patch(udp, 2, ">H", 24)),
            {"status": S.TRUNCATED_L4, "proto": 17, "ip_len": 24},
        ),
        Edge(
            "udp in a padded frame",
            eth(0x0800, v4(UDP(sport=40001, dport=7) / Raw(b"ab"))).ljust(60, b"\0"),
            ok4(17, 40001, 7, ip_len=30, payload_len=2),
        ),
        Edge(
            "icmp echo request",
            eth(0x0800, v4(ICMP(type=8, id=1, seq=1) / Raw(b"ping"))),
            ok4(1, 8, 0),
        ),
        Edge("icmp echo reply", eth(0x0800, v4(ICMP(type=0, id=1, seq=1))), ok4(1, 0, 8)),
        Edge("icmp timestamp", eth(0x0800, v4(ICMP(type=13))), ok4(1, 13, 14)),
        Edge(
            "icmp router advertisement",
            eth(0x0800, v4(ICMP(type=9, code=0) / Raw(b"\0" * 8))),
            ok4(1, 9, 10),
        ),
        Edge(
            "icmp port unreachable quoting udp",
            eth(0x0800, v4(ICMP(type=3, code=3) / IP(src=B4, dst=A4) / UDP(sport=53, dport=40001))),
            ok4(1, 3, 3),
        ),
        Edge(
            "icmp cut after 3 bytes",
            eth(0x0800, patch(v4(ICMP(type=8))[:23], 2, ">H", 23)),
            {"status": S.TRUNCATED_L4, "proto": 1},
        ),
        Edge("icmpv6 echo", eth(0x86DD, v6(ICMPv6EchoRequest(id=1, seq=1))), ok6(58, 128, 129)),
        Edge(
            "icmpv6 neighbour solicitation", eth(0x86DD, v6(ICMPv6ND_NS(tgt=B6))), ok6(58, 135, 136)
        ),
        Edge(
            "icmpv6 unreachable quoting tcp",
            eth(0x86DD, v6(ICMPv6DestUnreach(code=4) / ICMP6_QUOTE)),
            ok6(58, 1, 4),
        ),
        Edge(
            "ipv6 hop-by-hop, destination, routing",
            eth(
                0x86DD, v6(IPv6ExtHdrHopByHop(), IPv6ExtHdrDestOpt(), IPv6ExtHdrRouting(), TCP_SYN)
            ),
            ok6(6, 40000, 3333, l4_off=14 + 40 + 8 + 8 + 8, flags=2),
        ),
        Edge(
            "ipv6 ah",
            eth(0x86DD, v6(AH(nh=17, payloadlen=4, spi=1, icv=b"\0" * 12), UDP_DNS)),
            ok6(17, 40001, 53, l4_off=14 + 40 + 24),
        ),
        Edge(
            "ipv6 mobility header, no next header",
            eth(0x86DD, v6(Raw(bytes([59, 1]) + b"\0" * 14), nh=135)),
            ok6(59, l4_off=14 + 40 + 16),
        ),
        Edge(
            "ipv6 first fragment",
            eth(0x86DD, v6(IPv6ExtHdrFragment(m=1, id=7), UDP_DNS)),
            ok6(17, 40001, 53, flags=3),
        ),
        Edge(
            "ipv6 later fragment",
            eth(0x86DD, v6(IPv6ExtHdrFragment(offset=100, id=7, nh=17), Raw(b"z" * 32))),
            {"status": S.FRAGMENT, "proto": 17, "src": A6, "flags": 2},
        ),
        Edge(
            "ipv6 nine destination options",
            eth(0x86DD, v6(*[IPv6ExtHdrDestOpt() for _ in range(9)], UDP_DNS)),
            ok6(60, l4_off=14 + 40 + 64),
        ),
        Edge(
            "ipv6 extension header past the capture",
            eth(0x86DD, v6(IPv6ExtHdrHopByHop(len=10, autopad=0), TCP_SYN)),
            {"status": S.BAD_EXTENSION_HEADERS, "src": A6, "flags": 2},
        ),
        Edge("ipv6 esp", eth(0x86DD, v6(Raw(b"\0\0\0\1\0\0\0\1" + b"e" * 24), nh=50)), ok6(50)),
        Edge("ipv6 header cut", eth(0x86DD, v6(TCP_SYN))[: 14 + 30], {"status": S.TRUNCATED_L3}),
        Edge("ipv4 under the ipv6 ethertype", eth(0x86DD, tcp), {"status": S.BAD_IP_HEADER}),
        Edge(
            "ipv6 payload length 0",
            eth(0x86DD, v6(TCP_SYN, plen=0)),
            ok6(6, 40000, 3333, ip_len=60),
        ),
        Edge("ip in ip", eth(0x0800, v4(IP(src="10.0.0.1", dst="10.0.0.2") / TCP_SYN)), ok4(4)),
        Edge("gre", eth(0x0800, v4(GRE() / IP(src="10.0.0.1", dst="10.0.0.2") / TCP_SYN)), ok4(47)),
        Edge("teredo", eth(0x0800, v4(teredo)), ok4(17, 3544, 3544)),
        Edge("sctp", eth(0x0800, v4(SCTP(sport=5000, dport=5001))), ok4(132)),
    ]


def other_link_edges() -> dict[int, list[Edge]]:
    """Packets for every other link type the contract names, and one it does not."""
    tcp = v4(TCP_SYN)
    udp6 = v6(UDP_DNS)
    sll = bytes.fromhex("0000000100060200") + b"\0" * 6
    sll2 = bytes.fromhex("0000000000000002") + bytes.fromhex("000100060200") + b"\0" * 6
    return {
        113: [
            Edge("sll ipv4", sll + b"\x08\x00" + tcp, ok4(6, 40000, 3333, l3_off=16)),
            Edge(
                "sll vlan",
                sll + b"\x81\x00" + struct.pack(">HH", 44, 0x86DD) + udp6,
                ok6(17, 40001, 53, vlan=44, l3_off=20),
            ),
            Edge("sll arp", sll + b"\x08\x06" + bytes(ARP(psrc=A4, pdst=B4)), {"status": S.NOT_IP}),
            Edge("sll cut", sll[:10], {"status": S.TRUNCATED_L2}),
        ],
        276: [
            Edge("sll2 ipv6", b"\x86\xdd" + sll2[2:] + udp6, ok6(17, 40001, 53, l3_off=20)),
            Edge("sll2 cut", (b"\x08\x00" + sll2[2:])[:12], {"status": S.TRUNCATED_L2}),
        ],
        101: [
            Edge("raw ipv4", tcp, ok4(6, 40000, 3333, l3_off=0)),
            Edge("raw ipv6", udp6, ok6(17, 40001, 53)),
            Edge("raw version 5", patch(tcp, 0, ">B", 0x55), {"status": S.BAD_IP_HEADER}),
            Edge("raw empty", b"", {"status": S.TRUNCATED_L2}),
        ],
        12: [Edge("dlt 12 ipv4", tcp, ok4(6, 40000, 3333))],
        14: [Edge("dlt 14 ipv6", udp6, ok6(17, 40001, 53))],
        228: [
            Edge("linktype ipv4", tcp, ok4(6, 40000, 3333)),
            Edge("linktype ipv4 carrying ipv6", udp6, ok6(17, 40001, 53)),
        ],
        229: [
            Edge("linktype ipv6", udp6, ok6(17, 40001, 53)),
            Edge("linktype ipv6 carrying ipv4", tcp, ok4(6, 40000, 3333)),
        ],
        0: [
            Edge(
                "null little-endian ipv4", struct.pack("<I", 2) + tcp, ok4(6, 40000, 3333, l3_off=4)
            ),
            Edge("null big-endian ipv4", struct.pack(">I", 2) + tcp, ok4(6, 40000, 3333)),
            Edge("null family 30", struct.pack("<I", 30) + udp6, ok6(17, 40001, 53)),
            Edge("null family 24 big-endian", struct.pack(">I", 24) + udp6, ok6(17, 40001, 53)),
            Edge("null osi", struct.pack("<I", 7) + b"\0" * 20, {"status": S.NOT_IP}),
            Edge("null cut", b"\x02\0\0", {"status": S.TRUNCATED_L2}),
        ],
        108: [
            Edge("loop ipv4", struct.pack(">I", 2) + tcp, ok4(6, 40000, 3333)),
            Edge("loop ipv6", struct.pack(">I", 28) + udp6, ok6(17, 40001, 53)),
            Edge("loop little-endian family", struct.pack("<I", 2) + tcp, {"status": S.NOT_IP}),
        ],
        9: [
            Edge(
                "ppp address/control ipv4", b"\xff\x03\x00\x21" + tcp, ok4(6, 40000, 3333, l3_off=4)
            ),
            Edge("ppp ipv6", b"\x00\x57" + udp6, ok6(17, 40001, 53, l3_off=2)),
            Edge("ppp 1-byte protocol", b"\x21" + tcp, ok4(6, 40000, 3333, l3_off=1)),
            Edge("ppp lcp", b"\xff\x03\xc0\x21\x01\x01\x00\x04", {"status": S.NOT_IP}),
            Edge("ppp cut", b"\xff\x03", {"status": S.TRUNCATED_L2}),
        ],
        104: [
            Edge("c-hdlc ipv4", b"\x0f\x00\x08\x00" + tcp, ok4(6, 40000, 3333, l3_off=4)),
            Edge("c-hdlc ipv6", b"\x8f\x00\x86\xdd" + udp6, ok6(17, 40001, 53)),
            Edge("c-hdlc cut", b"\x0f\x00\x08", {"status": S.TRUNCATED_L2}),
        ],
        147: [Edge("user link type 0", tcp, {"status": S.UNKNOWN_LINKTYPE})],
    }


# ---------------------------------------------------------------------------
# Capture writers: every header byte under the test's control
# ---------------------------------------------------------------------------
def pcap_bytes(linktype: int, packets, *, nano: bool = False, big: bool = False) -> bytes:
    """Classic pcap; ``packets`` are (ts_ns, data, wirelen)."""
    o = ">" if big else "<"
    magic = 0xA1B23C4D if nano else 0xA1B2C3D4
    out = struct.pack(o + "IHHiIII", magic, 2, 4, 0, 0, 262144, linktype)
    for ts_ns, data, wirelen in packets:
        sec, frac = divmod(ts_ns, 10**9)
        frac = frac if nano else frac // 1000
        out += struct.pack(o + "IIII", sec, frac, len(data), wirelen) + data
    return out


def block(btype: int, body: bytes, o: str = "<") -> bytes:
    body += b"\0" * (-len(body) % 4)
    total = 12 + len(body)
    return struct.pack(o + "II", btype, total) + body + struct.pack(o + "I", total)


def option(code: int, value: bytes, o: str = "<") -> bytes:
    return struct.pack(o + "HH", code, len(value)) + value + b"\0" * (-len(value) % 4)


def section(interfaces, packets, o: str = "<") -> bytes:
    """One pcapng section. ``interfaces``: (linktype, if_tsresol or None, if_tsoffset or None);
    ``packets``: (interface, ts_ns, data, wirelen), or (None, _, data, wirelen) for a Simple
    Packet Block."""
    out = block(0x0A0D0D0A, struct.pack(o + "IHHq", 0x1A2B3C4D, 1, 0, -1), o)
    for linktype, tsresol, tsoffset in interfaces:
        opts = b""
        if tsresol is not None:
            opts += option(9, bytes([tsresol]), o)
        if tsoffset is not None:
            opts += option(14, struct.pack(o + "q", tsoffset), o)
        out += block(1, struct.pack(o + "HHI", linktype, 0, 0) + opts + option(0, b"", o), o)
    for iface, ts_ns, data, wirelen in packets:
        if iface is None:
            out += block(3, struct.pack(o + "I", wirelen) + data, o)
            continue
        _, tsresol, tsoffset = interfaces[iface]
        ts = ts_ns - (tsoffset or 0) * 10**9
        res = 6 if tsresol is None else tsresol
        units = (ts << (res & 0x7F)) // 10**9 if res & 0x80 else ts * 10**res // 10**9
        body = struct.pack(o + "IIIII", iface, units >> 32, units & 0xFFFFFFFF, len(data), wirelen)
        out += block(6, body + data + b"\0" * (-len(data) % 4) + option(1, b"edge", o), o)
    return out


def timed(edges: list[Edge], start_ns: int, step_ns: int = 1_000_000):
    """(ts_ns, data, wirelen) for each edge, one step apart."""
    return [(start_ns + i * step_ns, e.data, e.wirelen or len(e.data)) for i, e in enumerate(edges)]


@dataclass
class EdgeCapture:
    name: str
    content: bytes
    edges: list[Edge]  # in frame order


def edge_captures() -> list[EdgeCapture]:
    ether = ethernet_edges()
    links = other_link_edges()
    # Section 1, little-endian: one interface per link type, with varied if_tsresol (default,
    # ns, us, 2^-20 s) and one if_tsoffset.
    ifaces1 = [
        (lt, [None, 9, 6, 0x94][i % 4], 1000 if i == 3 else None) for i, lt in enumerate(links)
    ]
    pkts1, edges1 = [], []
    for i, edges in enumerate(links.values()):
        for e in edges:
            ts = T0 + (len(pkts1) + 1) * 1_000_000 + (ifaces1[i][2] or 0) * 10**9
            pkts1.append((i, ts, e.data, e.wirelen or len(e.data)))
            edges1.append(e)
    # Section 2, big-endian: interfaces numbered afresh; ends with a Simple Packet Block.
    again = ether[:3] + links[101][:1]
    spb = Edge("simple packet block", ether[0].data, {**ether[0].expect, "ts_ns": 0})
    ifaces2 = [(1, 9, None), (101, None, None)]
    pkts2 = [
        (k // 3, T0 + 10**12 + k * 1_000_001, e.data, len(e.data)) for k, e in enumerate(again)
    ]
    pkts2.append((None, 0, spb.data, len(spb.data)))
    ether_pcap = pcap_bytes(1, timed(ether, T0))
    return [
        EdgeCapture("edge_ethernet.pcap", ether_pcap, ether),
        EdgeCapture(
            "edge_ethernet_be_ns.pcap",
            pcap_bytes(1, timed(ether[:6], T0 + 7, 1_000_003), nano=True, big=True),
            ether[:6],
        ),
        EdgeCapture(
            "edge_links.pcapng",
            section(ifaces1, pkts1) + section(ifaces2, pkts2, ">"),
            edges1 + again + [spb],
        ),
        EdgeCapture("edge_ethernet.pcap.gz", gzip.compress(ether_pcap, mtime=0), ether),
        EdgeCapture("edge_ethernet.pcap.xz", lzma.compress(ether_pcap), ether),
        EdgeCapture(
            "edge_ethernet.pcap.zst", zstandard.ZstdCompressor().compress(ether_pcap), ether
        ),
    ]


@dataclass
class Broken:
    """A damaged file, how many packets come before the damage, and where it starts."""

    name: str
    content: bytes
    packets: int
    offset: int | None  # None: compressed, where engines see the damage differently


def whole_pcap_records(data: bytes) -> int:
    """Complete records in the start of a little-endian pcap file."""
    n, pos = 0, 24
    while pos + 16 <= len(data):
        pos += 16 + struct.unpack_from("<I", data, pos + 8)[0]
        if pos > len(data):
            break
        n += 1
    return n


def broken_captures() -> list[Broken]:
    edges = ethernet_edges()
    pcap = pcap_bytes(1, timed(edges[:3], T0))
    record = pcap_bytes(1, timed(edges[3:4], T0 + 10**9))[24:]
    ethernet = [(1, None, None)]
    blocks = section(ethernet, [(0, T0 + k, e.data, len(e.data)) for k, e in enumerate(edges[:3])])
    one_more = section(ethernet, [(0, T0 + 5, edges[3].data, len(edges[3].data))])
    extra = one_more[len(section(ethernet, [])) :]  # its packet block alone
    gz = gzip.compress(pcap + record, mtime=0)[:-20]
    xz = lzma.compress(pcap + record)[:-40]
    gz_prefix = zlib.decompressobj(31).decompress(gz)
    xz_prefix = lzma.LZMADecompressor().decompress(xz)
    return [
        Broken("not_a_capture.pcap", b"this is a text file, not a capture\n", 0, 0),
        Broken("empty.pcap", b"", 0, 0),
        Broken("short_header.pcap", pcap[:10], 0, 0),
        Broken("truncated_record.pcap", pcap + record[:30], 3, len(pcap)),
        Broken("truncated_record_header.pcap", pcap + record[:7], 3, len(pcap)),
        Broken("impossible_caplen.pcap", pcap + patch(record, 8, "<I", 0x7FFFFFFF), 3, len(pcap)),
        Broken("truncated_block.pcapng", blocks + extra[:40], 3, len(blocks)),
        Broken(
            "bad_block_length.pcapng", blocks + struct.pack("<II", 6, 8) + bytes(8), 3, len(blocks)
        ),
        Broken("undeclared_interface.pcapng", blocks + patch(extra, 8, "<I", 5), 3, len(blocks)),
        Broken("truncated.pcap.gz", gz, whole_pcap_records(gz_prefix), None),
        Broken("truncated.pcap.xz", xz, whole_pcap_records(xz_prefix), None),
    ]


# ---------------------------------------------------------------------------
# Running the engines
# ---------------------------------------------------------------------------
@dataclass
class Run:
    packets: np.ndarray
    report: FileReport
    payloads: list[bytes]


_RUNS: dict[tuple[str, Path, int], Run] = {}


def run(engine: str, path: Path, batch_packets: int = 65536) -> Run:
    """An engine's rows for one file (each file is read once per engine), checking that every
    batch is laid out as PacketBatch promises. Batches are copied as they come: an engine may
    reuse its buffers for the next one."""
    key = (engine, path, batch_packets)
    if key not in _RUNS:
        report = FileReport(str(path))
        parts, payloads = [], []
        for batch in get_engine(engine)(path, report, batch_packets=batch_packets):
            p = batch.packets
            assert 0 < len(p) <= batch_packets
            assert batch.buf.dtype == np.uint8 and len(batch.buf) >= int(p["caplen"].sum())
            if engine != "fast":  # the fast reader leaves packets where the file has them
                assert (p["data_off"][1:] == p["data_off"][:-1] + p["caplen"][:-1]).all()
            has_payload = p["payload_len"] > 0
            assert (p["payload_off"][has_payload] + p["payload_len"][has_payload]
                    <= p["caplen"][has_payload]).all()  # fmt: skip
            payloads += [batch.payload(i) for i in range(len(batch))]
            parts.append(p.copy())
        packets = np.concatenate(parts) if parts else np.zeros(0, PACKET)
        _RUNS[key] = Run(packets, report, payloads)
    return _RUNS[key]


def differences(base: np.ndarray, other: np.ndarray) -> dict[str, set[int]]:
    """{column: frames where ``other`` differs from ``base``}, over the frames both have."""
    n = min(len(base), len(other))
    out = {}
    for column in FLOW_COLUMNS + DETAIL_COLUMNS:
        frames = base["frame"][:n][base[column][:n] != other[column][:n]]
        if len(frames):
            out[column] = {int(f) for f in frames}
    return out


def describe(name: str, engine: str, base: np.ndarray, other: np.ndarray, diffs) -> str:
    lines = [f"{name}: {engine} differs from {BASELINE}:"]
    for column, frames in sorted(diffs.items()):
        for f in sorted(frames)[:5]:
            i = f - 1
            lines.append(f"  frame {f} column {column}: {BASELINE}={base[column][i]} "
                         f"{engine}={other[column][i]}")  # fmt: skip
    return "\n".join(lines)


def known(engine: str, edges: list[Edge]) -> dict[str, set[int]]:
    """The differences KNOWN_DIFFERENCES expects in a capture of these edges."""
    out: dict[str, set[int]] = {}
    for frame, edge in enumerate(edges, 1):
        for column in KNOWN_DIFFERENCES.get((engine, edge.label), ()):
            out.setdefault(column, set()).add(frame)
    return out


def excused(engine: str, edge: Edge, column: str) -> bool:
    """Whether KNOWN_DIFFERENCES lets this engine get this column of this packet wrong."""
    columns = KNOWN_DIFFERENCES.get((engine, edge.label), set())
    return column in columns or {column + "_hi", column + "_lo"} & columns != set()


def readable_edges(engine: str, edges: list[Edge]) -> tuple[list[Edge], str | None]:
    """The edges an engine reads, and what its error says where it must stop."""
    for i, edge in enumerate(edges):
        if (engine, edge.label) in KNOWN_UNREADABLE:
            return edges[:i], KNOWN_UNREADABLE[(engine, edge.label)]
    return edges, None


EDGES = edge_captures()
BROKEN = broken_captures()
OTHER_ENGINES = [e for e in ENGINES if e != BASELINE]


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> Path:
    """The edge-case and broken captures, written once."""
    folder = tmp_path_factory.mktemp("reference-engines")
    for item in EDGES + BROKEN:
        (folder / item.name).write_bytes(item.content)
    return folder


# ---------------------------------------------------------------------------
# Sample captures: the oracle, and the engines against each other
# ---------------------------------------------------------------------------
def flow_key(row) -> tuple:
    ends = sorted([(int(row["src_hi"]), int(row["src_lo"]), int(row["sport"])),
                   (int(row["dst_hi"]), int(row["dst_lo"]), int(row["dport"]))])  # fmt: skip
    return (int(row["vlan"]), int(row["inner_vlan"]), int(row["proto"]), *ends)


@pytest.mark.parametrize("engine", ENGINES)
def test_sample_matches_its_oracle(engine, sample):
    """Packet count, link types, and per flow the packets and IP bytes the generator built."""
    want = oracle(sample)
    got = run(engine, sample)
    assert got.report.error is None, got.report.error
    assert got.report.packets == len(got.packets) == want["packets"], sample.name
    assert got.report.bytes_read == sample.stat().st_size, sample.name
    assert {int(x) for x in got.packets["linktype"]} == set(want["linktypes"]), sample.name
    assert (got.packets["frame"] == np.arange(1, len(got.packets) + 1)).all()
    flows: dict[tuple, list[int]] = {}
    for row in got.packets[got.packets["status"] == S.OK]:
        count = flows.setdefault(flow_key(row), [0, 0])
        count[0] += 1
        count[1] += int(row["ip_len"])
    expected = {}
    for f in want["flows"]:
        src, dst = addr_to_halves(f["src_ip"]), addr_to_halves(f["dest_ip"])
        ends = sorted([(*src, f["src_port"]), (*dst, f["dest_port"])])
        expected[(f["vlan"], f["inner_vlan"], f["proto"], *ends)] = [
            f["pkts_toserver"] + f["pkts_toclient"],
            f["bytes_toserver"] + f["bytes_toclient"],
        ]
    assert flows == expected, f"{sample.name}: flows from {engine}'s OK packets"
    fragments = int((got.packets["status"] == S.FRAGMENT).sum())
    assert fragments == want.get("fragments_nonfirst", 0), sample.name


@pytest.mark.parametrize("engine", OTHER_ENGINES)
def test_sample_rows_match_dpkt(engine, sample):
    base, other = run(BASELINE, sample), run(engine, sample)
    diffs = differences(base.packets, other.packets)
    assert len(other.packets) == len(base.packets), sample.name
    assert not diffs, describe(sample.name, engine, base.packets, other.packets, diffs)
    assert other.payloads == base.payloads, f"{sample.name}: payload bytes differ"


# ---------------------------------------------------------------------------
# Edge cases: the contract, and the engines against each other
# ---------------------------------------------------------------------------
@pytest.mark.parametrize("capture", EDGES, ids=[c.name for c in EDGES])
@pytest.mark.parametrize("engine", ENGINES)
def test_edge_cases_decode_as_the_contract_says(engine, capture, built):
    edges, error = readable_edges(engine, capture.edges)
    got = run(engine, built / capture.name)
    assert len(got.packets) == len(edges), (
        f"{capture.name}: {engine} read {len(got.packets)} packets"
    )
    if error:
        assert error in (got.report.error or ""), got.report.error
    else:
        assert got.report.error is None, got.report.error
    problems = []
    for row, edge in zip(got.packets, edges):
        for column, want in edge.expect.items():
            if column in ("src", "dst"):
                value = (int(row[column + "_hi"]), int(row[column + "_lo"]))
                want = addr_to_halves(want)
            elif column == "status":
                value, want = S(row[column]).name, S(want).name
            else:
                value = int(row[column])
            if value != want and not excused(engine, edge, column):
                problems.append(f"  frame {int(row['frame'])} ({edge.label}): {column} is "
                                f"{value}, the contract says {want}")  # fmt: skip
    assert not problems, f"{capture.name}, {engine}:\n" + "\n".join(problems)


@pytest.mark.parametrize("capture", EDGES, ids=[c.name for c in EDGES])
@pytest.mark.parametrize("engine", OTHER_ENGINES)
def test_edge_case_rows_match_dpkt_but_for_known_differences(engine, capture, built):
    base, other = run(BASELINE, built / capture.name), run(engine, built / capture.name)
    diffs = differences(base.packets, other.packets)
    assert diffs == known(engine, capture.edges), describe(
        capture.name, engine, base.packets, other.packets, diffs
    )


@pytest.mark.parametrize("engine", ENGINES)
def test_compressed_captures_read_like_the_plain_one(engine, built):
    plain = run(engine, built / "edge_ethernet.pcap")
    assert plain.report.compression == "none" and plain.report.bytes_read == len(EDGES[0].content)
    for suffix, kind in ((".gz", "gzip"), (".xz", "xz"), (".zst", "zstd")):
        got = run(engine, built / f"edge_ethernet.pcap{suffix}")
        assert got.report.compression == kind and got.report.format == "pcap"
        assert got.report.bytes_read == plain.report.bytes_read, suffix
        assert not differences(plain.packets, got.packets), suffix
        assert got.payloads == plain.payloads, suffix


@pytest.mark.parametrize("engine", ENGINES)
def test_small_batches_give_the_same_rows(engine, built):
    path = built / "edge_links.pcapng"
    whole, split = run(engine, path), run(engine, path, batch_packets=7)
    assert not differences(whole.packets, split.packets)
    assert len(split.packets) == len(whole.packets) and split.payloads == whole.payloads


# ---------------------------------------------------------------------------
# Broken files: reported, never raised, and the packets before the damage kept
# ---------------------------------------------------------------------------
@pytest.mark.parametrize("broken", BROKEN, ids=[b.name for b in BROKEN])
@pytest.mark.parametrize("engine", ENGINES)
def test_broken_file_is_reported_with_the_packets_before_it(engine, broken, built):
    path = built / broken.name
    got = run(engine, path)
    # A cut-off last record warns, as in tcpdump. scapy's pcapng reader cannot tell a block cut
    # short from a damaged one (docs/decoding.md, known differences), so it reports an error.
    scapy_cannot_tell = engine == "scapy" and broken.name == "truncated_block.pcapng"
    if broken.name.startswith("truncated_") and not scapy_cannot_tell:
        assert got.report.error is None, f"{engine}: {got.report.error}"
        error = got.report.warnings[-1] if got.report.warnings else ""
    else:
        error = got.report.error or ""
    assert error.startswith(str(path)) and "\n" not in error, f"{engine}: {error!r}"
    assert got.report.packets == len(got.packets) == broken.packets, f"{engine}: {error}"
    # pyshark learns of pcapng damage from tshark, which names no offset.
    if broken.offset is not None and not (engine == "pyshark" and broken.name.endswith(".pcapng")):
        assert f"{path} at offset {broken.offset}:" in error, error
    base = run(BASELINE, path)
    assert not differences(base.packets, got.packets)
