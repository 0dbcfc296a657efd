#!/usr/bin/env python3
"""Regenerate poolwatch's small sample captures, byte for byte.

Usage::

    python pcaps/make_samples.py [OUTDIR]

OUTDIR defaults to the folder this script lives in. Every capture is built from fixed seeds
(``random.Random``) and fixed timestamps starting at 2026-03-02T08:00:00Z, so running the
script twice gives byte-identical files. Only documentation/test/private addresses are used
(192.0.2.0/24, 198.51.100.0/24, 203.0.113.0/24, 10.0.0.0/8, 2001:db8::/32); nothing is ever
sent anywhere.

Packets are assembled with scapy; the capture files themselves (classic pcap with the
microsecond or nanosecond magic, and pcapng with several interfaces) are written by hand with
``struct`` so that every header byte is under our control.

Next to each capture the script writes ``<capture>.expected.json``: the flows that the
generator itself built, computed from what it put into each packet (not by parsing the
files, and not by running poolwatch), following poolwatch's flow rules:

* key = (vlan, inner_vlan, proto, unordered pair of (address, port) endpoints);
* ``src`` is the sender of the flow's first packet, or its receiver when that first packet
  is a TCP SYN+ACK; "toserver" counts what ``src`` sent;
* bytes are IP-level (IPv4 total length, 40 + IPv6 payload length);
* fragments with offset > 0 belong to no flow (``fragments_nonfirst``), a first fragment
  counts with its ports; non-IP frames belong to no flow;
* ICMP/ICMPv6: the ports are the type and the paired type (echo 8<->0, 128<->129).

Flows are listed sorted by (first_ts_ns, proto, src_ip, src_port, dest_ip, dest_port, vlan,
inner_vlan).
"""

from __future__ import annotations

import datetime as _dt
import ipaddress
import json
import random
import struct
import sys
from dataclasses import dataclass
from pathlib import Path

from scapy.all import (
    ARP,
    DNS,
    DNSQR,
    DNSRR,
    ICMP,
    IP,
    TCP,
    UDP,
    Dot1Q,
    Ether,
    ICMPv6EchoReply,
    ICMPv6EchoRequest,
    IPv6,
    IPv6ExtHdrDestOpt,
    IPv6ExtHdrFragment,
    IPv6ExtHdrHopByHop,
    IPv6ExtHdrRouting,
    IPv6ExtHdrSegmentRouting,
    PadN,
    Raw,
    fragment,
    fragment6,
)
from scapy.layers.l2 import CookedLinux, CookedLinuxV2, Dot1AD

# 2026-03-02T08:00:00Z, computed without looking at the clock.
START_NS = int(_dt.datetime(2026, 3, 2, 8, 0, 0, tzinfo=_dt.timezone.utc).timestamp()) * 10**9
NS = 10**9
MS = 10**6

LINKTYPE_NULL = 0
LINKTYPE_ETHERNET = 1
LINKTYPE_RAW = 101
LINKTYPE_LINUX_SLL = 113
LINKTYPE_LINUX_SLL2 = 276

TCP_SYN = 0x02
TCP_ACK = 0x10

# ICMP / ICMPv6 type pairs (Zeek's / Community ID's table), as poolwatch uses them.
ICMP4_PAIR = {8: 0, 0: 8, 13: 14, 14: 13, 15: 16, 16: 15, 10: 9, 9: 10, 17: 18, 18: 17}
ICMP6_PAIR = {
    128: 129, 129: 128, 130: 131, 131: 130, 133: 134, 134: 133,
    135: 136, 136: 135, 139: 140, 140: 139, 144: 145, 145: 144,
}  # fmt: skip


# ---------------------------------------------------------------------------
# Packets and captures
# ---------------------------------------------------------------------------
@dataclass
class Pkt:
    ts_ns: int
    data: bytes
    iface: int
    meta: dict | None  # None: not an IP packet (belongs to no flow)


class Capture:
    """A list of packets with a clock that only moves forward, in steps drawn from a seeded RNG."""

    def __init__(self, name: str, seed: int, start_ns: int, ns_precision: bool = False):
        self.name = name
        self.rng = random.Random(seed)
        self.t = start_ns
        self.ns_precision = ns_precision
        self.pkts: list[Pkt] = []
        self.ipid: dict[str, int] = {}

    def tick(self, lo_ms: float = 0.2, hi_ms: float = 3.0) -> None:
        """Advance the clock by lo..hi milliseconds (microsecond steps, or ns if asked)."""
        step_us = self.rng.randint(int(lo_ms * 1000), int(hi_ms * 1000))
        self.t += step_us * 1000
        if self.ns_precision:
            self.t += self.rng.randint(1, 999)

    def next_ipid(self, host: str) -> int:
        if host not in self.ipid:
            self.ipid[host] = self.rng.randint(0x0100, 0xF000)
        self.ipid[host] = (self.ipid[host] + 1) & 0xFFFF
        return self.ipid[host]

    def add(self, data: bytes, meta: dict | None, iface: int = 0, ts_ns: int | None = None):
        ts = self.t if ts_ns is None else ts_ns
        if self.pkts:
            assert ts > self.pkts[-1].ts_ns, "timestamps must increase"
        self.pkts.append(Pkt(ts, bytes(data), iface, meta))


# ---------------------------------------------------------------------------
# Link layers. `frame(l3_bytes, outbound)`: outbound means sent by the "local" side
# (the client of the conversation), which picks MAC addresses / SLL packet types.
# ---------------------------------------------------------------------------
class Link:
    linktype = LINKTYPE_RAW
    vlan = 0
    inner_vlan = 0

    def frame(self, l3: bytes, v6: bool, outbound: bool) -> bytes:
        return l3


class EthLink(Link):
    linktype = LINKTYPE_ETHERNET

    def __init__(self, local_mac: str, remote_mac: str, vlan: int = 0, inner_vlan: int = 0,
                 outer_tpid: int = 0x8100):
        self.local_mac, self.remote_mac = local_mac, remote_mac
        self.vlan, self.inner_vlan, self.outer_tpid = vlan, inner_vlan, outer_tpid

    def frame(self, l3: bytes, v6: bool, outbound: bool) -> bytes:
        src, dst = (self.local_mac, self.remote_mac) if outbound else (
            self.remote_mac, self.local_mac)
        etype = 0x86DD if v6 else 0x0800
        if self.vlan and self.inner_vlan:
            hdr = (Ether(src=src, dst=dst, type=self.outer_tpid)
                   / Dot1AD(vlan=self.vlan, type=0x8100)
                   / Dot1Q(vlan=self.inner_vlan, type=etype))
        elif self.vlan:
            hdr = Ether(src=src, dst=dst, type=0x8100) / Dot1Q(vlan=self.vlan, type=etype)
        else:
            hdr = Ether(src=src, dst=dst, type=etype)
        return bytes(hdr) + l3


class SllLink(Link):
    """Linux cooked v1 (113): packet type 0 = to us, 4 = outgoing; the sender's MAC."""

    linktype = LINKTYPE_LINUX_SLL

    def __init__(self, local_mac: str, remote_mac: str):
        self.local_mac, self.remote_mac = local_mac, remote_mac

    def frame(self, l3: bytes, v6: bool, outbound: bool) -> bytes:
        mac = self.local_mac if outbound else self.remote_mac
        hdr = CookedLinux(pkttype=4 if outbound else 0, lladdrtype=1, lladdrlen=6,
                          src=bytes.fromhex(mac.replace(":", "")) + b"\0\0",
                          proto=0x86DD if v6 else 0x0800)
        return bytes(hdr) + l3


class Sll2Link(Link):
    """Linux cooked v2 (276): protocol first, then interface index."""

    linktype = LINKTYPE_LINUX_SLL2

    def __init__(self, local_mac: str, remote_mac: str, ifindex: int):
        self.local_mac, self.remote_mac, self.ifindex = local_mac, remote_mac, ifindex

    def frame(self, l3: bytes, v6: bool, outbound: bool) -> bytes:
        mac = self.local_mac if outbound else self.remote_mac
        hdr = CookedLinuxV2(proto=0x86DD if v6 else 0x0800, ifindex=self.ifindex,
                            lladdrtype=1, pkttype=4 if outbound else 0, lladdrlen=6,
                            src=bytes.fromhex(mac.replace(":", "")) + b"\0\0")
        return bytes(hdr) + l3


class NullLink(Link):
    """BSD null (0): 4-byte address family, little-endian (as an x86/arm64 host writes it)."""

    linktype = LINKTYPE_NULL

    def __init__(self, af6: int = 30):
        self.af6 = af6

    def frame(self, l3: bytes, v6: bool, outbound: bool) -> bytes:
        return struct.pack("<I", self.af6 if v6 else 2) + l3


# ---------------------------------------------------------------------------
# Transport helpers: each packet's oracle metadata comes from the builder's own arguments.
# ---------------------------------------------------------------------------
def is_v6(addr: str) -> bool:
    return ":" in addr


def meta_for(link: Link, proto: int, src: str, sport: int, dst: str, dport: int, ip_len: int,
             tcp_flags: int = 0, frag_nonfirst: bool = False) -> dict:
    return {
        "proto": proto, "src": src, "sport": sport, "dst": dst, "dport": dport,
        "ip_len": ip_len, "tcp_flags": tcp_flags, "frag_nonfirst": frag_nonfirst,
        "vlan": link.vlan, "inner_vlan": link.inner_vlan,
    }  # fmt: skip


def l3_header(cap: Capture, src: str, dst: str, ttl: int, ext=None, df: bool = True):
    """IPv4 or IPv6 header (with optional IPv6 extension-header chain) as a scapy packet."""
    if is_v6(src):
        hdr = IPv6(src=src, dst=dst, hlim=ttl)
        for e in ext or ():
            hdr = hdr / e
        return hdr
    return IP(src=src, dst=dst, ttl=ttl, id=cap.next_ipid(src), flags="DF" if df else 0)


class Tcp:
    """One TCP connection with correct sequence/ack numbers."""

    def __init__(self, cap: Capture, link: Link, cip: str, cport: int, sip: str, sport: int,
                 iface: int = 0, ext_c=None, ext_s=None, ttl_c: int = 64, ttl_s: int = 54):
        self.cap, self.link, self.iface = cap, link, iface
        self.cip, self.cport, self.sip, self.sport = cip, cport, sip, sport
        self.cseq = cap.rng.getrandbits(32)
        self.sseq = cap.rng.getrandbits(32)
        self.ext_c, self.ext_s = ext_c, ext_s  # callables returning extension-header lists
        self.ttl_c, self.ttl_s = ttl_c, ttl_s
        self.wc, self.ws = 502, 509  # windows (scaled)

    def pkt(self, from_client: bool, flags: str, payload: bytes = b"", options=None) -> None:
        if from_client:
            src, sp, dst, dp, seq, ack = (self.cip, self.cport, self.sip, self.sport,
                                          self.cseq, self.sseq)
            ext, ttl, win = self.ext_c, self.ttl_c, self.wc
        else:
            src, sp, dst, dp, seq, ack = (self.sip, self.sport, self.cip, self.cport,
                                          self.sseq, self.cseq)
            ext, ttl, win = self.ext_s, self.ttl_s, self.ws
        if "S" in flags:
            win = 64240 if from_client else 65160
        l4 = TCP(sport=sp, dport=dp, seq=seq, ack=ack if "A" in flags else 0, flags=flags,
                 window=win, options=options or [])
        if payload:
            l4 = l4 / Raw(payload)
        l3 = bytes(l3_header(self.cap, src, dst, ttl, ext() if ext else None) / l4)
        fl = int(TCP(flags=flags).flags)
        meta = meta_for(self.link, 6, src, sp, dst, dp, len(l3), tcp_flags=fl)
        self.cap.add(self.link.frame(l3, is_v6(src), from_client), meta, self.iface)
        adv = len(payload) + (1 if "S" in flags else 0) + (1 if "F" in flags else 0)
        if from_client:
            self.cseq = (self.cseq + adv) & 0xFFFFFFFF
        else:
            self.sseq = (self.sseq + adv) & 0xFFFFFFFF

    def open(self, rtt_ms: float = 1.0, syn_seen: bool = True) -> None:
        """Three-way handshake. syn_seen=False: the capture started after the SYN."""
        opts = [("MSS", 1460 if not is_v6(self.cip) else 1440), ("SAckOK", b""),
                ("WScale", 7)]
        if syn_seen:
            self.pkt(True, "S", options=opts)
            self.cap.tick(rtt_ms * 0.8, rtt_ms * 1.2)
        else:
            self.cseq = (self.cseq + 1) & 0xFFFFFFFF  # the unseen SYN used one number
        self.pkt(False, "SA", options=opts)
        self.cap.tick(0.05, 0.2)
        self.pkt(True, "A")

    def send(self, from_client: bool, payload: bytes, ack_after: bool = True,
             push: bool = True) -> None:
        """A data segment; with ack_after the peer answers with a pure ACK shortly after."""
        self.pkt(from_client, "PA" if push else "A", payload)
        if ack_after:
            self.cap.tick(0.05, 0.5)
            self.pkt(not from_client, "A")

    def close(self, from_client: bool = True) -> None:
        self.pkt(from_client, "FA")
        self.cap.tick(0.2, 1.0)
        self.pkt(not from_client, "FA")
        self.cap.tick(0.1, 0.5)
        self.pkt(from_client, "A")


def udp(cap: Capture, link: Link, src: str, sport: int, dst: str, dport: int, payload,
        outbound: bool, iface: int = 0, ext=None, ttl: int = 64) -> None:
    l3 = bytes(l3_header(cap, src, dst, ttl, ext, df=False)
               / UDP(sport=sport, dport=dport) / payload)
    meta = meta_for(link, 17, src, sport, dst, dport, len(l3))
    cap.add(link.frame(l3, is_v6(src), outbound), meta, iface)


def icmp_echo(cap: Capture, link: Link, src: str, dst: str, ident: int, seq: int,
              iface: int = 0, gap_ms: tuple[float, float] = (0.5, 2.0), ext_req=None) -> None:
    """Echo request from src and the reply from dst (ICMP or ICMPv6 by address family)."""
    data = bytes(range(0x10, 0x10 + 48))
    for outbound in (True, False):
        s, d = (src, dst) if outbound else (dst, src)
        if is_v6(src):
            typ = 128 if outbound else 129
            l4 = (ICMPv6EchoRequest if outbound else ICMPv6EchoReply)(id=ident, seq=seq,
                                                                       data=data)
            l3 = bytes(l3_header(cap, s, d, 64, ext_req if outbound else None) / l4)
            proto, pair = 58, ICMP6_PAIR[typ]
        else:
            typ = 8 if outbound else 0
            l4 = ICMP(type=typ, id=ident, seq=seq) / Raw(data)
            l3 = bytes(l3_header(cap, s, d, 64, df=False) / l4)
            proto, pair = 1, ICMP4_PAIR[typ]
        meta = meta_for(link, proto, s, typ, d, pair, len(l3))
        cap.add(link.frame(l3, is_v6(src), outbound), meta, iface)
        if outbound:
            cap.tick(*gap_ms)


def dns_pair(cap: Capture, link: Link, client: str, cport: int, server: str, name: str,
             answer: str, txid: int, iface: int = 0, qtype: str = "A") -> None:
    q = DNS(id=txid, rd=1, qd=DNSQR(qname=name, qtype=qtype))
    udp(cap, link, client, cport, server, 53, q, True, iface)
    cap.tick(2.0, 15.0)
    r = DNS(id=txid, qr=1, rd=1, ra=1, qd=DNSQR(qname=name, qtype=qtype),
            an=DNSRR(rrname=name, type=qtype, ttl=300, rdata=answer))
    udp(cap, link, server, 53, client, cport, r, False, iface, ttl=57)


def filler(rng: random.Random, n: int) -> bytes:
    return bytes(rng.getrandbits(8) for _ in range(n))


def text_filler(rng: random.Random, n: int) -> bytes:
    alphabet = b"abcdefghijklmnopqrstuvwxyz0123456789 "
    return bytes(alphabet[rng.randrange(len(alphabet))] for _ in range(n))


def http_exchange(cap: Capture, conn: Tcp, host: str, path: str, body_len: int) -> None:
    req = (f"GET {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: curl/8.5.0\r\n"
           "Accept: */*\r\n\r\n").encode()
    conn.send(True, req, ack_after=False)
    cap.tick(1.0, 8.0)
    body = b"<html><body><p>" + text_filler(cap.rng, body_len) + b"</p></body></html>\n"
    resp = (f"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: {len(body)}\r\n"
            "Connection: close\r\n\r\n").encode() + body
    conn.send(False, resp)


# ---------------------------------------------------------------------------
# File writers
# ---------------------------------------------------------------------------
def write_pcap(path: Path, linktype: int, pkts: list[Pkt], nano: bool = False) -> None:
    out = bytearray(struct.pack("<IHHiIII", 0xA1B23C4D if nano else 0xA1B2C3D4, 2, 4, 0, 0,
                                262144, linktype))
    for p in pkts:
        sec, frac = divmod(p.ts_ns, NS)
        if not nano:
            assert frac % 1000 == 0, "microsecond pcap needs whole microseconds"
            frac //= 1000
        out += struct.pack("<IIII", sec, frac, len(p.data), len(p.data)) + p.data
    path.write_bytes(bytes(out))


def _pad4(b: bytes) -> bytes:
    return b + b"\0" * (-len(b) % 4)


def _opt(code: int, value: bytes) -> bytes:
    return struct.pack("<HH", code, len(value)) + _pad4(value)


def _block(btype: int, body: bytes) -> bytes:
    total = 12 + len(body)
    return struct.pack("<II", btype, total) + body + struct.pack("<I", total)


def write_pcapng(path: Path, ifaces: list[dict], pkts: list[Pkt]) -> None:
    """SHB, one IDB per interface (if_name, optional if_tsresol), then EPBs in packet order."""
    shb_opts = _opt(4, b"poolwatch pcaps/make_samples.py") + _opt(0, b"")
    out = bytearray(_block(0x0A0D0D0A, struct.pack("<IHHq", 0x1A2B3C4D, 1, 0, -1) + shb_opts))
    for itf in ifaces:
        opts = _opt(2, itf["name"].encode())
        if itf.get("tsresol") is not None:
            opts += _opt(9, bytes([itf["tsresol"]]))
        opts += _opt(0, b"")
        out += _block(1, struct.pack("<HHI", itf["linktype"], 0, 262144) + opts)
    for p in pkts:
        res = ifaces[p.iface].get("tsresol")
        res = 6 if res is None else res
        assert res < 0x80
        unit = 10 ** (9 - res)
        assert p.ts_ns % unit == 0, "timestamp not representable at this interface's tsresol"
        ts = p.ts_ns // unit
        body = struct.pack("<IIIII", p.iface, ts >> 32, ts & 0xFFFFFFFF, len(p.data),
                           len(p.data)) + _pad4(p.data)
        out += _block(6, body)
    path.write_bytes(bytes(out))


# ---------------------------------------------------------------------------
# Oracle
# ---------------------------------------------------------------------------
def _ip(a: str) -> str:
    return str(ipaddress.ip_address(a))


def expected(name: str, linktypes: list[int], pkts: list[Pkt]) -> dict:
    flows: dict[tuple, dict] = {}
    nonfirst = 0
    for p in pkts:
        m = p.meta
        if m is None:
            continue
        if m["frag_nonfirst"]:
            nonfirst += 1
            continue
        a = (_ip(m["src"]), m["sport"])
        b = (_ip(m["dst"]), m["dport"])
        key = (m["vlan"], m["inner_vlan"], m["proto"], frozenset((a, b)))
        f = flows.get(key)
        if f is None:
            synack = m["proto"] == 6 and (m["tcp_flags"] & (TCP_SYN | TCP_ACK)) == (
                TCP_SYN | TCP_ACK)
            s, d = (b, a) if synack else (a, b)
            f = flows[key] = {
                "proto": m["proto"], "src_ip": s[0], "src_port": s[1],
                "dest_ip": d[0], "dest_port": d[1],
                "vlan": m["vlan"], "inner_vlan": m["inner_vlan"],
                "pkts_toserver": 0, "pkts_toclient": 0,
                "bytes_toserver": 0, "bytes_toclient": 0,
                "first_ts_ns": p.ts_ns, "last_ts_ns": p.ts_ns,
            }  # fmt: skip
        if a == (f["src_ip"], f["src_port"]):
            f["pkts_toserver"] += 1
            f["bytes_toserver"] += m["ip_len"]
        else:
            f["pkts_toclient"] += 1
            f["bytes_toclient"] += m["ip_len"]
        f["last_ts_ns"] = p.ts_ns
        # well inside the default timeouts (idle 120 s, active 1800 s): one record per flow
        assert f["last_ts_ns"] - f["first_ts_ns"] < 600 * NS

    def sort_key(f: dict):
        return (f["first_ts_ns"], f["proto"], ipaddress.ip_address(f["src_ip"]).packed.rjust(16),
                f["src_port"], ipaddress.ip_address(f["dest_ip"]).packed.rjust(16),
                f["dest_port"], f["vlan"], f["inner_vlan"])

    return {
        "capture": name,
        "linktypes": linktypes,
        "packets": len(pkts),
        "flows": sorted(flows.values(), key=sort_key),
        "fragments_nonfirst": nonfirst,
    }


def dump_expected(path: Path, exp: dict) -> None:
    """JSON with one flow per line (stable, diff-friendly)."""
    lines = ["{"]
    lines.append(f'  "capture": {json.dumps(exp["capture"])},')
    lines.append(f'  "linktypes": {json.dumps(exp["linktypes"])},')
    lines.append(f'  "packets": {exp["packets"]},')
    lines.append('  "flows": [')
    for i, f in enumerate(exp["flows"]):
        sep = "," if i < len(exp["flows"]) - 1 else ""
        lines.append("    " + json.dumps(f, separators=(", ", ": ")) + sep)
    lines.append("  ],")
    lines.append(f'  "fragments_nonfirst": {exp["fragments_nonfirst"]}')
    lines.append("}")
    text = "\n".join(lines) + "\n"
    assert json.loads(text) == exp
    path.write_text(text)


# ---------------------------------------------------------------------------
# The scenarios
# ---------------------------------------------------------------------------
MAC_HOST = "02:00:5e:10:00:05"
MAC_GW = "02:00:5e:10:00:01"
MAC_HOST2 = "02:00:5e:10:00:07"


def start(k: int) -> int:
    """Each capture starts k minutes after the common start, so their times never overlap."""
    return START_NS + k * 60 * NS


def gen_ethernet_vlan_qinq() -> Capture:
    cap = Capture("ethernet_vlan_qinq.pcap", seed=101, start_ns=start(0))
    plain = EthLink(MAC_HOST, MAC_GW)
    v100 = EthLink(MAC_HOST2, MAC_GW, vlan=100)
    qinq = EthLink(MAC_HOST2, MAC_GW, vlan=200, inner_vlan=300, outer_tpid=0x88A8)
    # One ARP request: not IP, belongs to no flow.
    arp = Ether(src=MAC_HOST, dst="ff:ff:ff:ff:ff:ff") / ARP(
        op=1, hwsrc=MAC_HOST, psrc="10.0.0.10", hwdst="00:00:00:00:00:00", pdst="10.0.0.1")
    cap.add(bytes(arp), None)
    cap.tick(1, 3)
    # Untagged: DNS then an HTTP-ish TCP connection.
    dns_pair(cap, plain, "10.0.0.10", 53001, "192.0.2.53", "intranet.example.com",
             "192.0.2.20", txid=0x1A2B)
    cap.tick(1, 3)
    web = Tcp(cap, plain, "10.0.0.10", 40001, "192.0.2.20", 80)
    web.open()
    cap.tick(0.2, 1)
    http_exchange(cap, web, "intranet.example.com", "/status", 300)
    cap.tick(1, 5)
    web.close()
    cap.tick(5, 20)
    # The same DNS 5-tuple on VLAN 100 and on QinQ 200/300: two flows.
    dns_pair(cap, v100, "10.1.0.5", 53530, "192.0.2.53", "build.example.net", "198.51.100.7",
             txid=0x2222)
    cap.tick(1, 3)
    dns_pair(cap, qinq, "10.1.0.5", 53530, "192.0.2.53", "build.example.net", "198.51.100.7",
             txid=0x3333)
    cap.tick(1, 3)
    # The same TCP 5-tuple on VLAN 100 and on QinQ 200/300, interleaved in time.
    a = Tcp(cap, v100, "10.1.0.5", 45000, "198.51.100.7", 8080)
    b = Tcp(cap, qinq, "10.1.0.5", 45000, "198.51.100.7", 8080)
    a.open()
    cap.tick(0.5, 2)
    b.open()
    for i in range(3):
        cap.tick(1, 4)
        a.send(True, f"PUT /artifact/{i} len=64\n".encode() + text_filler(cap.rng, 64))
        cap.tick(1, 4)
        b.send(True, f"GET /cache/{i}\n".encode(), ack_after=False)
        cap.tick(1, 4)
        b.send(False, text_filler(cap.rng, 200 + 50 * i))
        cap.tick(1, 4)
        a.send(False, b"201 created\n", ack_after=False)
        cap.tick(0.2, 1)
        a.pkt(True, "A")
    cap.tick(2, 5)
    a.close()
    cap.tick(1, 3)
    b.close(from_client=False)
    return cap


def gen_linux_sll(v2: bool) -> Capture:
    name = "linux_sll2.pcap" if v2 else "linux_sll.pcap"
    cap = Capture(name, seed=276 if v2 else 113, start_ns=start(2 if v2 else 1))
    if v2:
        link = Sll2Link("02:00:5e:20:00:02", "02:00:5e:20:00:fe", ifindex=3)
        c4, s4, c6, s6, base = "10.20.0.2", "203.0.113.80", "2001:db8:20::2", "2001:db8:ff::80", 0
    else:
        link = SllLink("02:00:5e:11:00:02", "02:00:5e:11:00:fe")
        c4, s4, c6, s6, base = "10.11.0.2", "198.51.100.80", "2001:db8:11::2", "2001:db8:ff::443", 1
    # UDP over IPv4 (DNS) and IPv6 (an AAAA lookup).
    dns_pair(cap, link, c4, 41000 + base, "192.0.2.53", "api.example.com", s4, txid=0x4D00 + base)
    cap.tick(1, 3)
    dns_pair(cap, link, c6, 41100 + base, "2001:db8::53", "api.example.com", s6,
             txid=0x4E00 + base, qtype="AAAA")
    cap.tick(1, 3)
    # TCP over IPv4 and IPv6, interleaved.
    t4 = Tcp(cap, link, c4, 50500 + base, s4, 8443)
    t6 = Tcp(cap, link, c6, 50600 + base, s6, 443)
    t4.open()
    cap.tick(0.5, 2)
    t6.open(rtt_ms=2.0)
    for i in range(2):
        cap.tick(1, 5)
        t4.send(True, filler(cap.rng, 120 + 10 * i), ack_after=False)
        cap.tick(1, 5)
        t6.send(True, filler(cap.rng, 90 + 20 * i), ack_after=False)
        cap.tick(1, 5)
        t4.send(False, filler(cap.rng, 400 + 40 * i))
        cap.tick(1, 5)
        t6.send(False, filler(cap.rng, 300 + 30 * i))
    cap.tick(2, 5)
    t4.close()
    cap.tick(1, 3)
    t6.close()
    # One more UDP exchange (a syslog-ish datagram, no answer) over IPv6.
    cap.tick(5, 20)
    udp(cap, link, c6, 51514, "2001:db8::514", 514, Raw(b"<134>poolwatch sample log line"), True)
    return cap


def gen_raw_ip() -> Capture:
    cap = Capture("raw_ip.pcap", seed=1010, start_ns=start(3))
    link = Link()
    c4, c6 = "10.30.0.4", "2001:db8:30::4"
    dns_pair(cap, link, c4, 42424, "192.0.2.53", "mirror.example.org", "198.51.100.21",
             txid=0x5151)
    cap.tick(1, 3)
    web = Tcp(cap, link, c4, 47000, "198.51.100.21", 80)
    web.open()
    cap.tick(0.5, 2)
    http_exchange(cap, web, "mirror.example.org", "/index.html", 250)
    cap.tick(0.5, 2)
    # An IPv6 TCP connection, interleaved with the IPv4 one.
    t6 = Tcp(cap, link, c6, 47100, "2001:db8:21::21", 22)
    t6.open()
    cap.tick(0.5, 2)
    t6.send(False, b"SSH-2.0-OpenSSH_9.6\r\n")
    cap.tick(0.5, 2)
    web.close()
    cap.tick(0.5, 2)
    t6.send(True, b"SSH-2.0-OpenSSH_9.6p1\r\n")
    cap.tick(1, 3)
    t6.send(True, filler(cap.rng, 160), ack_after=False)
    cap.tick(1, 3)
    t6.send(False, filler(cap.rng, 220))
    cap.tick(1, 3)
    t6.close()
    cap.tick(1, 3)
    # IPv6 UDP (NTP-like request/response).
    udp(cap, link, c6, 123, "2001:db8:21::123", 123, Raw(b"\x23" + b"\0" * 47), True)
    cap.tick(5, 15)
    udp(cap, link, "2001:db8:21::123", 123, c6, 123, Raw(b"\x24\x02" + filler(cap.rng, 46)),
        False)
    cap.tick(1, 3)
    # A connection whose SYN was not captured: the first packet is the server's SYN+ACK,
    # so the flow's src is the SYN+ACK's receiver (the client).
    mid = Tcp(cap, link, c4, 47200, "203.0.113.30", 8000)
    mid.open(syn_seen=False)
    cap.tick(0.5, 2)
    mid.send(True, b"HELLO\n", ack_after=False)
    cap.tick(0.5, 2)
    mid.send(False, b"WORLD\n")
    cap.tick(0.5, 2)
    mid.close()
    return cap


def gen_null_loopback() -> Capture:
    cap = Capture("null_loopback.pcap", seed=0, start_ns=start(4))
    v4 = NullLink()
    fam24, fam28, fam30 = NullLink(af6=24), NullLink(af6=28), NullLink(af6=30)
    # A VPN tunnel interface (utun-like): the address family header, then IP.
    t = Tcp(cap, v4, "10.8.0.2", 52000, "192.0.2.40", 5432)
    t.open()
    cap.tick(0.5, 2)
    t.send(True, filler(cap.rng, 80), ack_after=False)
    cap.tick(0.5, 2)
    t.send(False, filler(cap.rng, 150))
    cap.tick(0.5, 2)
    t.close()
    cap.tick(1, 3)
    udp(cap, fam24, "2001:db8:8::2", 52100, "2001:db8::53", 53,
        DNS(id=0x2424, rd=1, qd=DNSQR(qname="db.example.com", qtype="AAAA")), True)
    cap.tick(2, 8)
    udp(cap, fam24, "2001:db8::53", 53, "2001:db8:8::2", 52100,
        DNS(id=0x2424, qr=1, rd=1, ra=1, qd=DNSQR(qname="db.example.com", qtype="AAAA"),
            an=DNSRR(rrname="db.example.com", type="AAAA", ttl=60, rdata="2001:db8:40::40")),
        False)
    cap.tick(1, 3)
    t6 = Tcp(cap, fam30, "2001:db8:8::2", 52200, "2001:db8:40::40", 5432)
    t6.open()
    cap.tick(0.5, 2)
    t6.send(True, filler(cap.rng, 64), ack_after=False)
    cap.tick(0.5, 2)
    t6.send(False, filler(cap.rng, 128))
    cap.tick(0.5, 2)
    t6.close()
    cap.tick(1, 3)
    icmp_echo(cap, fam28, "2001:db8:8::2", "2001:db8:40::40", ident=0x2828, seq=1)
    return cap


def gen_multi_interface() -> tuple[Capture, list[dict]]:
    ifaces = [
        {"name": "eth0", "linktype": LINKTYPE_ETHERNET, "tsresol": None},  # default: 10^-6
        {"name": "tun0", "linktype": LINKTYPE_RAW, "tsresol": 9},  # nanoseconds
        {"name": "any", "linktype": LINKTYPE_LINUX_SLL, "tsresol": 6},  # explicit microseconds
    ]
    cap = Capture("multi_interface.pcapng", seed=3, start_ns=start(5))
    eth = EthLink(MAC_HOST, MAC_GW)
    raw = Link()
    sll = SllLink("02:00:5e:12:00:02", "02:00:5e:12:00:fe")

    def on_tun(fn):
        """Run fn with the clock nudged by a few ns, so tun0's timestamps use the ns digits."""
        n = len(cap.pkts)
        fn()
        for i in range(n, len(cap.pkts)):
            cap.pkts[i].iface = 1
            cap.pkts[i].ts_ns += 100 + i * 7  # far below the >= 50 us steps between packets

    t_eth = Tcp(cap, eth, "10.0.0.10", 48000, "198.51.100.50", 443)
    t_sll = Tcp(cap, sll, "2001:db8:12::2", 48100, "2001:db8:50::50", 8080, iface=2)
    t_eth.open()
    cap.tick(0.5, 2)
    on_tun(lambda: icmp_echo(cap, raw, "10.9.0.2", "192.0.2.99", ident=0x0909, seq=1))
    cap.tick(0.5, 2)
    t_sll.open()
    cap.tick(0.5, 2)
    t_eth.send(True, tls_app_records(cap.rng, 175), ack_after=False)
    cap.tick(0.5, 2)
    on_tun(lambda: udp(cap, raw, "2001:db8:9::2", 40404, "2001:db8:99::99", 4500,
                       Raw(filler(cap.rng, 72)), True))
    cap.tick(0.5, 2)
    t_sll.send(True, b"GET /metrics HTTP/1.1\r\nHost: metrics.example.net\r\n\r\n",
               ack_after=False)
    cap.tick(0.5, 2)
    t_eth.send(False, tls_app_records(cap.rng, 300, 285))
    cap.tick(0.5, 2)
    on_tun(lambda: udp(cap, raw, "2001:db8:99::99", 4500, "2001:db8:9::2", 40404,
                       Raw(filler(cap.rng, 88)), False))
    cap.tick(0.5, 2)
    t_sll.send(False, b"HTTP/1.1 200 OK\r\nContent-Length: 12\r\n\r\nup 1\nok 1\n\n")
    cap.tick(0.5, 2)
    for c in (t_eth, t_sll):
        c.close()
        cap.tick(0.5, 2)
    udp(cap, sll, "10.12.0.2", 45123, "192.0.2.53", 53,
        DNS(id=0x0C0C, rd=1, qd=DNSQR(qname="metrics.example.net")), True, iface=2)
    cap.tick(2, 8)
    udp(cap, sll, "192.0.2.53", 53, "10.12.0.2", 45123,
        DNS(id=0x0C0C, qr=1, rd=1, ra=1, qd=DNSQR(qname="metrics.example.net"),
            an=DNSRR(rrname="metrics.example.net", ttl=30, rdata="198.51.100.50")),
        False, iface=2)
    return cap, ifaces


def gen_nanosecond() -> Capture:
    cap = Capture("nanosecond.pcap", seed=9, start_ns=start(6) + 123456789, ns_precision=True)
    link = EthLink(MAC_HOST, MAC_GW)
    dns_pair(cap, link, "10.0.0.10", 54321, "192.0.2.53", "time.example.com", "192.0.2.123",
             txid=0x0A0A)
    cap.tick(1, 3)
    t = Tcp(cap, link, "10.0.0.10", 49000, "192.0.2.123", 80)
    t.open()
    cap.tick(0.5, 2)
    http_exchange(cap, t, "time.example.com", "/now", 64)
    cap.tick(0.5, 2)
    t.close()
    return cap


def gen_ipv4_fragments() -> Capture:
    cap = Capture("ipv4_fragments.pcap", seed=44, start_ns=start(7))
    link = EthLink(MAC_HOST, MAC_GW)
    cli, srv = "10.0.0.10", "198.51.100.77"
    # Normal traffic first.
    dns_pair(cap, link, cli, 55000, "192.0.2.53", "files.example.com", srv, txid=0x7777)
    cap.tick(1, 3)
    # A 1008-byte UDP datagram (8 + 1000) in 3 fragments, in order: 400 + 400 + 208 bytes.
    big = IP(src=cli, dst=srv, ttl=64, id=0x4242) / UDP(sport=55001, dport=7000) / Raw(
        text_filler(cap.rng, 1000))
    frags = fragment(big, fragsize=400)
    assert len(frags) == 3
    for i, fr in enumerate(frags):
        b = bytes(fr)
        assert (fr.frag == 0) == (i == 0)
        cap.add(link.frame(b, False, True),
                meta_for(link, 17, cli, 55001, srv, 7000, len(b), frag_nonfirst=i > 0))
        cap.tick(0.01, 0.05)
    cap.tick(1, 3)
    # The answer, 1208 bytes in 3 fragments sent last-first (as Linux used to):
    # two non-first fragments, then the first one, which carries the UDP ports.
    ans = IP(src=srv, dst=cli, ttl=55, id=0x0BEE) / UDP(sport=7000, dport=55001) / Raw(
        text_filler(cap.rng, 1200))
    frags = fragment(ans, fragsize=480)
    assert len(frags) == 3
    for fr in reversed(frags):
        b = bytes(fr)
        cap.add(link.frame(b, False, False),
                meta_for(link, 17, srv, 7000, cli, 55001, len(b), frag_nonfirst=fr.frag > 0))
        cap.tick(0.01, 0.05)
    cap.tick(1, 3)
    icmp_echo(cap, link, cli, srv, ident=0x0444, seq=1)
    cap.tick(1, 3)
    t = Tcp(cap, link, cli, 49500, srv, 80)
    t.open()
    cap.tick(0.5, 2)
    http_exchange(cap, t, "files.example.com", "/small.txt", 100)
    cap.tick(0.5, 2)
    t.close()
    return cap


def gen_ipv6_extension_headers() -> Capture:
    cap = Capture("ipv6_extension_headers.pcap", seed=66, start_ns=start(8))
    link = EthLink(MAC_HOST, MAC_GW)
    cli, srv, via = "2001:db8:66::10", "2001:db8:77::20", "2001:db8:88::1"

    def hbh():
        return [IPv6ExtHdrHopByHop(options=[PadN(optdata=b"\0\0\0\0")])]

    def dest():
        return [IPv6ExtHdrDestOpt(options=[PadN(optdata=b"\0\0\0\0")])]

    def hbh_dest_rt():
        # Hop-by-hop, destination options, then a type-0 routing header with no segments
        # left (the listed address was already visited): the transport header follows.
        return [IPv6ExtHdrHopByHop(options=[PadN(optdata=b"\0\0\0\0")]),
                IPv6ExtHdrDestOpt(options=[PadN(optdata=b"\0" * 12)]),
                IPv6ExtHdrRouting(type=0, segleft=0, addresses=[via])]

    def srh():
        # A segment routing header (type 4) whose last segment is the destination itself.
        return [IPv6ExtHdrSegmentRouting(segleft=0, lastentry=1, addresses=[srv, via])]

    # TCP: the client's packets carry HBH + DestOpt + Routing, the server's a DestOpt header.
    t = Tcp(cap, link, cli, 51000, srv, 8443, ext_c=hbh_dest_rt, ext_s=dest)
    t.open()
    cap.tick(0.5, 2)
    t.send(True, filler(cap.rng, 100), ack_after=False)
    cap.tick(0.5, 2)
    t.send(False, filler(cap.rng, 240))
    cap.tick(0.5, 2)
    t.close()
    cap.tick(1, 3)
    # UDP echo: request with a segment routing header, answer with a hop-by-hop header.
    echo = Raw(text_filler(cap.rng, 40))
    udp(cap, link, cli, 51100, srv, 7, echo, True, ext=srh())
    cap.tick(1, 3)
    udp(cap, link, srv, 7, cli, 51100, echo, False, ext=hbh())
    cap.tick(1, 3)
    # A 1208-byte UDP datagram (8 + 1200) in 3 IPv6 fragments; the first carries the ports.
    big = (IPv6(src=cli, dst=srv, hlim=64) / IPv6ExtHdrFragment(id=0x66660001)
           / UDP(sport=51200, dport=9000) / Raw(text_filler(cap.rng, 1200)))
    frags = fragment6(big, 520)
    assert len(frags) == 3
    for i, fr in enumerate(frags):
        b = bytes(fr)
        fh = fr[IPv6ExtHdrFragment]
        assert (fh.offset == 0) == (i == 0)
        cap.add(link.frame(b, True, True),
                meta_for(link, 17, cli, 51200, srv, 9000, len(b), frag_nonfirst=fh.offset > 0))
        cap.tick(0.01, 0.05)
    cap.tick(1, 3)
    udp(cap, link, srv, 9000, cli, 51200, Raw(b"ACK 1200\n"), False)
    cap.tick(1, 3)
    # ICMPv6 echo: the request carries a destination options header.
    icmp_echo(cap, link, cli, srv, ident=0x6666, seq=1, ext_req=dest())
    return cap


def gen_stratum() -> Capture:
    cap = Capture("stratum_v1_plain_3333.pcap", seed=3333, start_ns=start(9))
    rng = cap.rng
    link = EthLink("02:00:5e:33:00:05", MAC_GW)
    login = "bc1qpoolwatchsample0example0wallet0000000.rig01"

    def hexs(nbytes: int) -> str:
        return "".join(f"{rng.getrandbits(8):02x}" for _ in range(nbytes))

    def line(obj) -> bytes:
        return json.dumps(obj, separators=(",", ":")).encode() + b"\n"

    def notify(job: str, clean: bool, ntime: int) -> bytes:
        return line({"id": None, "method": "mining.notify", "params": [
            job, hexs(28) + "00000000", "01000000010000000000000000000000000000000000000000"
            "00000000000000000000000000ffffffff" + hexs(24),
            hexs(12) + "ffffffff02" + hexs(40) + "00000000",
            [hexs(32) for _ in range(4)], "20000000", "17034219", f"{ntime:08x}", clean]})

    c = Tcp(cap, link, "10.0.0.5", 50123, "203.0.113.10", 3333, ttl_s=49)
    c.open(rtt_ms=25)
    cap.tick(0.5, 2)
    c.send(True, b'{"id":1,"method":"mining.subscribe","params":["cgminer/4.11.1"]}\n',
           ack_after=False)
    cap.tick(24, 30)
    c.send(False, b'{"id":1,"result":[[["mining.set_difficulty","1f3a0c02"],'
                  b'["mining.notify","1f3a0c02"]],"08000002",4],"error":null}\n',
           ack_after=False)
    cap.tick(0.5, 2)
    c.send(True, line({"id": 2, "method": "mining.authorize", "params": [login, "x"]}),
           ack_after=False)
    cap.tick(24, 30)
    # Two messages in one segment: the authorize result and set_difficulty.
    c.send(False, b'{"id":2,"result":true,"error":null}\n'
                  b'{"id":null,"method":"mining.set_difficulty","params":[65536]}\n',
           ack_after=False)
    cap.tick(0.2, 1)
    # One message split across two segments: the first mining.notify.
    ntime = cap.t // NS - 7  # block template time, just before the session starts
    job = notify("6c1b", True, ntime)
    cut = 301
    c.send(False, job[:cut], ack_after=False)
    cap.tick(0.05, 0.3)
    c.send(False, job[cut:])
    share_id = 3
    jobs = ["6c1b"]
    for rnd in range(3):
        for _ in range(2 + rnd % 2):
            cap.tick(1500, 4500)
            stale = share_id == 6  # found on the previous job just after a new one came
            submit = line({"params": [login, jobs[-2 if stale else -1],
                                      f"{rng.getrandbits(32):08x}",
                                      f"{ntime + rnd * 30:08x}", f"{rng.getrandbits(32):08x}"],
                           "id": share_id, "method": "mining.submit"})
            c.send(True, submit, ack_after=False)
            cap.tick(24, 32)
            if stale:
                answer = {"id": share_id, "result": None, "error": [21, "Job not found", None]}
            else:
                answer = {"id": share_id, "result": True, "error": None}
            c.send(False, line(answer))
            share_id += 1
        if rnd < 2:
            cap.tick(1000, 3000)
            jobs.append(f"{0x6c1c + rnd:04x}")
            c.send(False, notify(jobs[-1], rnd == 1, ntime + (rnd + 1) * 30))
    cap.tick(2000, 4000)
    c.close()
    return cap


def tls_client_hello(rng: random.Random, sni: str) -> bytes:
    def ext(code: int, body: bytes) -> bytes:
        return struct.pack("!HH", code, len(body)) + body

    name = sni.encode()
    sni_ext = ext(0, struct.pack("!HBH", len(name) + 3, 0, len(name)) + name)
    groups = ext(10, struct.pack("!H", 6) + bytes.fromhex("001d00170018"))
    sigalgs = ext(13, struct.pack("!H", 8) + bytes.fromhex("0403080404010503"))
    alpn = ext(16, bytes.fromhex("000c02683208687474702f312e31"))
    versions = ext(43, bytes.fromhex("0403040303"))
    key_share = ext(51, struct.pack("!HHH", 36, 0x001D, 32) + filler(rng, 32))
    exts = sni_ext + groups + sigalgs + alpn + versions + key_share
    suites = bytes.fromhex("130113021303c02bc02fc02cc030cca9cca8")
    body = (b"\x03\x03" + filler(rng, 32) + b"\x20" + filler(rng, 32)
            + struct.pack("!H", len(suites)) + suites + b"\x01\x00"
            + struct.pack("!H", len(exts)) + exts)
    hs = b"\x01" + len(body).to_bytes(3, "big") + body
    return b"\x16\x03\x01" + struct.pack("!H", len(hs)) + hs


def tls_server_hello(rng: random.Random, session_id: bytes) -> bytes:
    exts = (struct.pack("!HHH", 43, 2, 0x0304)
            + struct.pack("!HHHH", 51, 36, 0x001D, 32) + filler(rng, 32))
    body = (b"\x03\x03" + filler(rng, 32) + b"\x20" + session_id + b"\x13\x01\x00"
            + struct.pack("!H", len(exts)) + exts)
    hs = b"\x02" + len(body).to_bytes(3, "big") + body
    return b"\x16\x03\x03" + struct.pack("!H", len(hs)) + hs


def tls_app_records(rng: random.Random, *sizes: int) -> bytes:
    return b"".join(b"\x17\x03\x03" + struct.pack("!H", n) + filler(rng, n) for n in sizes)


def gen_benign() -> Capture:
    cap = Capture("benign_tls_and_dns.pcap", seed=443, start_ns=start(10))
    rng = cap.rng
    link = EthLink(MAC_HOST, MAC_GW)
    cli = "10.0.0.20"
    dns_pair(cap, link, cli, 56001, "192.0.2.53", "www.example.com", "198.51.100.80",
             txid=0xBEEF)
    cap.tick(1, 3)
    tls = Tcp(cap, link, cli, 56002, "198.51.100.80", 443)
    tls.open(rtt_ms=12)
    cap.tick(0.2, 1)
    hello = tls_client_hello(rng, "www.example.com")
    session_id = hello[44:76]
    tls.send(True, hello, ack_after=False)
    cap.tick(10, 14)
    tls.send(False, tls_server_hello(rng, session_id) + b"\x14\x03\x03\x00\x01\x01"
             + tls_app_records(rng, 1020, 280, 70), ack_after=False)
    cap.tick(0.5, 2)
    tls.send(True, b"\x14\x03\x03\x00\x01\x01" + tls_app_records(rng, 53), ack_after=False)
    cap.tick(0.2, 1)
    tls.send(True, tls_app_records(rng, 120), ack_after=False)
    cap.tick(10, 14)
    tls.send(False, tls_app_records(rng, 900))
    cap.tick(1, 3)
    dns_pair(cap, link, cli, 56003, "192.0.2.53", "www.example.org", "198.51.100.81",
             txid=0xCAFE)
    cap.tick(1, 3)
    web = Tcp(cap, link, cli, 56004, "198.51.100.81", 80)
    web.open(rtt_ms=15)
    cap.tick(0.2, 1)
    http_exchange(cap, web, "www.example.org", "/", 400)
    cap.tick(0.5, 2)
    web.close()
    cap.tick(0.5, 2)
    tls.send(True, tls_app_records(rng, 19), ack_after=False)  # close_notify-sized record
    cap.tick(0.2, 1)
    tls.close()
    return cap


# ---------------------------------------------------------------------------
def main(argv: list[str]) -> int:
    outdir = Path(argv[1]) if len(argv) > 1 else Path(__file__).resolve().parent
    outdir.mkdir(parents=True, exist_ok=True)
    made: list[tuple[Capture, list[int]]] = []

    classic = [
        (gen_ethernet_vlan_qinq(), LINKTYPE_ETHERNET, False),
        (gen_linux_sll(False), LINKTYPE_LINUX_SLL, False),
        (gen_linux_sll(True), LINKTYPE_LINUX_SLL2, False),
        (gen_raw_ip(), LINKTYPE_RAW, False),
        (gen_null_loopback(), LINKTYPE_NULL, False),
        (gen_nanosecond(), LINKTYPE_ETHERNET, True),
        (gen_ipv4_fragments(), LINKTYPE_ETHERNET, False),
        (gen_ipv6_extension_headers(), LINKTYPE_ETHERNET, False),
        (gen_stratum(), LINKTYPE_ETHERNET, False),
        (gen_benign(), LINKTYPE_ETHERNET, False),
    ]
    for cap, lt, nano in classic:
        write_pcap(outdir / cap.name, lt, cap.pkts, nano=nano)
        made.append((cap, [lt]))
    cap, ifaces = gen_multi_interface()
    write_pcapng(outdir / cap.name, ifaces, cap.pkts)
    made.append((cap, [i["linktype"] for i in ifaces]))

    for cap, lts in made:
        stem = cap.name.rsplit(".", 1)[0]
        dump_expected(outdir / f"{stem}.expected.json", expected(cap.name, lts, cap.pkts))
        print(f"{cap.name}: {len(cap.pkts)} packets, "
              f"{(outdir / cap.name).stat().st_size} bytes")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
