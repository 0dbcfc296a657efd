"""Reference engine on dpkt: dpkt unpacks every capture record and every header.

It exists to cross-check the fast engine with a second, independent reading of each field.
dpkt's one-call decoders do not follow docs/decoding.md everywhere: ``pcap.Reader`` hides the
wire length and gives float timestamps, ``pcapng.Reader`` applies the first interface's link
type and resolution to every packet, ``Ethernet(buf)`` stops after two VLAN tags, guesses MPLS
payloads from a 0x45 byte and opens 802.3 LLC/SNAP frames, and ``IP6(buf)`` walks ESP as an
extension header. So this engine walks records and headers in the contract's order itself and
asks dpkt only to unpack the fields of each header (``_fields``); offsets follow from the lengths
dpkt reads. Everything here runs in Python per packet: slow, and meant to be.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from pathlib import Path
from typing import Self

import dpkt

from ..errors import ReaderError, TruncatedTail
from ..readers.source import PCAP_MAGICS, PCAPNG_MAGIC
from ..records import (
    LINKTYPE_C_HDLC,
    LINKTYPE_ETHERNET,
    LINKTYPE_LINUX_SLL,
    LINKTYPE_LINUX_SLL2,
    LINKTYPE_LOOP,
    LINKTYPE_NULL,
    LINKTYPE_PPP,
    PKT_FLAG_FRAGMENT,
    PKT_FLAG_V6,
    FileReport,
    PacketBatch,
    PacketStatus,
    addr_to_halves,
)
from . import _python
from ._python import (
    EXT_SIZE,
    ICMP_PAIRS,
    MAX_BLOCK,
    MAX_EXT_HEADERS,
    MAX_STANDARD_CAPLEN,
    NULL_FAMILIES,
    RAW_LINKTYPES,
    Stop,
    decode_row,
    read_some,
)

_TAG_TYPES = (dpkt.ethernet.ETH_TYPE_8021Q, dpkt.ethernet.ETH_TYPE_8021AD,
              dpkt.ethernet.ETH_TYPE_QINQ1)  # fmt: skip
_MPLS_TYPES = (dpkt.ethernet.ETH_TYPE_MPLS, dpkt.ethernet.ETH_TYPE_MPLS_MCAST)
_PPP_PROTOCOLS = {dpkt.ppp.PPP_IP: 4, dpkt.ppp.PPP_IP6: 6}


class _NullFamily(dpkt.loopback.Loopback):
    """BSD null header read little-endian (dpkt reads it in the host's order)."""

    __byte_order__ = "<"


class _LoopFamily(dpkt.loopback.Loopback):
    """OpenBSD loop header: the same field, big-endian."""

    __byte_order__ = ">"


class _CiscoHDLC(dpkt.Packet):
    """Cisco HDLC header, which dpkt lacks."""

    __hdr__ = (("addr", "B", 0x0F), ("control", "B", 0), ("type", "H", 0))


class _PPPoESessionProtocol(dpkt.Packet):
    """The 2-byte PPP protocol after a PPPoE session header (dpkt's PPP guesses 1 or 2 bytes)."""

    __hdr__ = (("p", "H", 0),)


class _SimplePacketBlock(dpkt.Packet):
    """pcapng Simple Packet Block header, which dpkt lacks."""

    __hdr__ = (("type", "I", 3), ("len", "I", 16), ("pkt_len", "I", 0))


class _SimplePacketBlockLE(_SimplePacketBlock):
    __byte_order__ = "<"


def _fields(cls, buf: bytes, off: int = 0, short: PacketStatus | None = None):
    """dpkt's unpacking of the fixed ``cls`` header at ``buf[off:]``, without the decoding of
    what follows that ``cls(buf)`` would start. When the bytes run out: ``Stop(short)``, or
    None if no status is given."""
    end = off + cls.__hdr_len__
    if end > len(buf):
        if short is None:
            return None
        raise Stop(short)
    hdr = cls.__new__(cls)
    dpkt.Packet.unpack(hdr, buf[off:end])
    return hdr


# ---------------------------------------------------------------------------
# Capture records
# ---------------------------------------------------------------------------
class _Stream:
    """The decompressed capture, tracking the offset of the next byte for error messages."""

    def __init__(self, raw, path: str) -> None:
        self.raw = raw
        self.path = path
        self.offset = 0

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc) -> None:
        self.raw.close()

    def magic(self) -> bytes:
        return self.read(4)

    def read(self, n: int) -> bytes:
        parts = []
        want = n
        while want:
            part = read_some(self.raw, want)
            if not part:
                break
            parts.append(part)
            want -= len(part)
            self.offset += len(part)
        return b"".join(parts)

    def error(self, offset: int, reason: str) -> ReaderError:
        return ReaderError(self.path, offset, reason)

    def truncated(self, offset: int, reason: str) -> TruncatedTail:
        return TruncatedTail(self.path, offset, reason)


def _pcap_records(stream: _Stream, head: bytes, report: FileReport) -> Iterator[tuple]:
    """(ts_ns, linktype, wirelen, data) of each classic pcap record, via dpkt's headers."""
    head += stream.read(20)
    if len(head) < 24:
        raise stream.error(0, "file ends inside the 24-byte pcap header")
    big = PCAP_MAGICS[head[:4]][0] == ">"
    fh = (dpkt.pcap.FileHdr if big else dpkt.pcap.LEFileHdr)(head)
    pkt_hdr = dpkt.pcap.PktHdr if big else dpkt.pcap.LEPktHdr
    frac_ns = 1 if fh.magic == dpkt.pcap.TCPDUMP_MAGIC_NANO else 1000
    linktype = fh.linktype & 0x0FFFFFFF  # the top bits may carry an FCS length
    max_caplen = max(fh.snaplen, MAX_STANDARD_CAPLEN)
    report.bytes_read = 24
    while True:
        start = stream.offset
        raw = stream.read(pkt_hdr.__hdr_len__)
        if not raw:
            return
        if len(raw) < pkt_hdr.__hdr_len__:
            raise stream.truncated(start, "last record is truncated (inside its 16-byte header)")
        hdr = pkt_hdr(raw)
        if hdr.caplen > max_caplen:
            raise stream.error(start, f"record length {hdr.caplen} is impossible (damaged file)")
        data = stream.read(hdr.caplen)
        if len(data) < hdr.caplen:
            raise stream.truncated(
                start, f"last record is truncated ({len(data)} of {hdr.caplen} bytes)"
            )
        report.bytes_read = stream.offset
        yield hdr.tv_sec * 1_000_000_000 + hdr.tv_usec * frac_ns, linktype, hdr.len, data


def _pcapng_ts_ns(ts: int, tsresol: int, tsoffset: int) -> int:
    """A pcapng timestamp in if_tsresol units → ns since the epoch, wrapped to int64."""
    exp = tsresol & 0x7F
    if tsresol & 0x80:
        ns = (ts * 1_000_000_000) >> exp
    elif exp <= 9:
        ns = ts * 10 ** (9 - exp)
    else:
        ns = ts // 10 ** (exp - 9)
    ns += tsoffset * 1_000_000_000
    return (ns + (1 << 63)) % (1 << 64) - (1 << 63)


def _interface(idb) -> tuple[int, int, int]:
    """(linktype, if_tsresol, if_tsoffset) from dpkt's unpacked Interface Description Block."""
    tsresol, tsoffset = 6, 0
    for opt in idb.opts:
        if opt.code == dpkt.pcapng.PCAPNG_OPT_IF_TSRESOL and len(opt.data) >= 1:
            tsresol = opt.data[0]
        elif opt.code == dpkt.pcapng.PCAPNG_OPT_IF_TSOFFSET and len(opt.data) >= 8:
            tsoffset = struct.unpack(idb.__byte_order__ + "q", opt.data[:8])[0]
    return idb.linktype, tsresol, tsoffset


def _pcapng_records(stream: _Stream, head: bytes, report: FileReport) -> Iterator[tuple]:
    """(ts_ns, linktype, wirelen, data) of each pcapng packet block, each on its own interface."""
    ng = dpkt.pcapng
    le = True
    interfaces: list[tuple[int, int, int]] = []
    pending = head
    while True:
        start = stream.offset - len(pending)
        raw = pending + stream.read(12 - len(pending))
        pending = b""
        if not raw:
            return
        if len(raw) < 12:
            raise stream.truncated(start, "last block is truncated (inside its header)")
        if raw[:4] == PCAPNG_MAGIC:
            bom = raw[8:12]
            if bom not in (b"\x4d\x3c\x2b\x1a", b"\x1a\x2b\x3c\x4d"):
                raise stream.error(start, f"section header has a bad byte-order magic {bom.hex()}")
            le = bom == b"\x4d\x3c\x2b\x1a"
        order = "<" if le else ">"
        btype, blen = struct.unpack(order + "II", raw[:8])
        if blen < 12 or blen % 4 or blen > MAX_BLOCK:
            raise stream.error(start, f"pcapng block length {blen} is impossible (damaged file)")
        block = raw + stream.read(blen - 12)
        if len(block) < blen:
            raise stream.truncated(start, f"last block is truncated ({len(block)} of {blen} bytes)")
        if struct.unpack(order + "I", block[-4:])[0] != blen:
            raise stream.error(start, "pcapng block's trailing length differs from its header")
        if btype == ng.PCAPNG_BT_SHB:
            interfaces = []
        elif btype == ng.PCAPNG_BT_IDB:
            idb_class = ng.InterfaceDescriptionBlockLE if le else ng.InterfaceDescriptionBlock
            try:
                idb = idb_class(block)
            except (dpkt.UnpackError, struct.error, UnicodeDecodeError) as exc:
                reason = f"interface description block is broken ({exc})"
                raise stream.error(start, reason) from None
            interfaces.append(_interface(idb))
        elif btype in (ng.PCAPNG_BT_EPB, ng.PCAPNG_BT_PB, ng.PCAPNG_BT_SPB):
            yield _packet_block(stream, start, btype, block, le, interfaces)
        report.bytes_read = stream.offset


def _packet_block(stream: _Stream, start: int, btype: int, block: bytes, le: bool, interfaces):
    """One packet record from an Enhanced, obsolete, or Simple Packet Block."""
    ng = dpkt.pcapng
    if btype == ng.PCAPNG_BT_SPB:
        if len(block) < 16:
            raise stream.error(start, f"simple packet block too short ({len(block)} bytes)")
        spb = _fields(_SimplePacketBlockLE if le else _SimplePacketBlock, block)
        iface, ts, wirelen = 0, 0, spb.pkt_len
        caplen = min(wirelen, len(block) - 16)
        data_off = 12
    else:
        if btype == ng.PCAPNG_BT_EPB:
            cls = ng.EnhancedPacketBlockLE if le else ng.EnhancedPacketBlock
        else:
            cls = ng.PacketBlockLE if le else ng.PacketBlock
        pb = _fields(cls, block)  # header only: the options do not matter here
        if pb is None or pb.caplen > len(block) - 32:
            raise stream.error(start, f"packet block too short for its {len(block)}-byte record")
        iface, ts = pb.iface_id, (pb.ts_high << 32) | pb.ts_low
        wirelen, caplen = pb.pkt_len, pb.caplen
        data_off = 28
    if iface >= len(interfaces):
        raise stream.error(
            start, f"packet on interface {iface}, but the section has {len(interfaces)}"
        )
    linktype, tsresol, tsoffset = interfaces[iface]
    ts_ns = _pcapng_ts_ns(ts, tsresol, tsoffset) if btype != ng.PCAPNG_BT_SPB else 0
    return ts_ns, linktype, wirelen, block[data_off : data_off + caplen]


# ---------------------------------------------------------------------------
# Headers
# ---------------------------------------------------------------------------
def _link(row, pkt: bytes, linktype: int) -> tuple[int, int]:
    """Link header → (offset of the IP header, IP version)."""
    short = PacketStatus.TRUNCATED_L2
    if linktype == LINKTYPE_ETHERNET:
        return _ethertype(row, pkt, 14, _fields(dpkt.ethernet.Ethernet, pkt, 0, short).type)
    if linktype == LINKTYPE_LINUX_SLL:
        return _ethertype(row, pkt, 16, _fields(dpkt.sll.SLL, pkt, 0, short).ethtype)
    if linktype == LINKTYPE_LINUX_SLL2:
        return _ethertype(row, pkt, 20, _fields(dpkt.sll2.SLL2, pkt, 0, short).ethtype)
    if linktype == LINKTYPE_C_HDLC:
        return _ethertype(row, pkt, 4, _fields(_CiscoHDLC, pkt, 0, short).type)
    if linktype in RAW_LINKTYPES:
        if not pkt:
            raise Stop(short)
        return 0, _ip_version(pkt[0] >> 4, PacketStatus.BAD_IP_HEADER)
    if linktype in (LINKTYPE_NULL, LINKTYPE_LOOP):
        header = _LoopFamily if linktype == LINKTYPE_LOOP else _NullFamily
        family = _fields(header, pkt, 0, short).family
        if linktype == LINKTYPE_NULL and family > 0xFFFF:  # written in the other byte order
            family = _fields(_LoopFamily, pkt).family
        if family not in NULL_FAMILIES:
            raise Stop(PacketStatus.NOT_IP)
        return 4, NULL_FAMILIES[family]
    if linktype == LINKTYPE_PPP:
        off = 2 if pkt[:2] == b"\xff\x03" else 0
        try:
            ppp = dpkt.pppoe.PPP(pkt[off : off + 2])  # 1-byte protocol when its first byte is odd
        except dpkt.UnpackError:
            raise Stop(short) from None
        if ppp.p not in _PPP_PROTOCOLS:
            raise Stop(PacketStatus.NOT_IP)
        return off + (1 if pkt[off] & 1 else 2), _PPP_PROTOCOLS[ppp.p]
    raise Stop(PacketStatus.UNKNOWN_LINKTYPE)


def _ethertype(row, pkt: bytes, off: int, etype: int) -> tuple[int, int]:
    """Follow an EtherType through VLAN tags, PPPoE and MPLS to IPv4/IPv6."""
    short = PacketStatus.TRUNCATED_L2
    tags = 0
    while etype in _TAG_TYPES:
        tag = _fields(dpkt.ethernet.VLANtag8021Q, pkt, off, short)
        if tags < 2:
            row["inner_vlan" if tags else "vlan"] = tag.id
        tags += 1
        etype, off = tag.type, off + 4
    if etype == dpkt.ethernet.ETH_TYPE_IP:
        return off, 4
    if etype == dpkt.ethernet.ETH_TYPE_IP6:
        return off, 6
    if etype == dpkt.ethernet.ETH_TYPE_PPPoE:
        _fields(dpkt.pppoe.PPPoE, pkt, off, short)
        proto = _fields(_PPPoESessionProtocol, pkt, off + 6, short).p
        if proto not in _PPP_PROTOCOLS:
            raise Stop(PacketStatus.NOT_IP)
        return off + 8, _PPP_PROTOCOLS[proto]
    if etype in _MPLS_TYPES:
        while True:
            label = _fields(dpkt.ethernet.MPLSlabel, pkt, off, short)
            off += 4
            if label.s:
                break
        if off >= len(pkt):
            raise Stop(short)
        return off, _ip_version(pkt[off] >> 4, PacketStatus.NOT_IP)
    raise Stop(PacketStatus.NOT_IP)


def _ip_version(nibble: int, otherwise: PacketStatus) -> int:
    if nibble in (4, 6):
        return nibble
    raise Stop(otherwise)


def _ipv4(row, pkt: bytes, l3: int, wirelen: int) -> int:
    """IPv4 header → offset of the transport header."""
    ip = _fields(dpkt.ip.IP, pkt, l3, PacketStatus.TRUNCATED_L3)
    if ip.v != 4 or ip.hl < 5:
        raise Stop(PacketStatus.BAD_IP_HEADER)
    ihl = ip.hl * 4
    if len(pkt) - l3 < ihl:
        raise Stop(PacketStatus.TRUNCATED_L3)
    total = ip.len or wirelen - l3  # 0: TCP segmentation offload, the frame tells
    if total < ihl:
        raise Stop(PacketStatus.BAD_IP_HEADER)
    row["ip_len"] = total
    row["proto"] = ip.p
    row["src_hi"], row["src_lo"] = addr_to_halves(ip.src)
    row["dst_hi"], row["dst_lo"] = addr_to_halves(ip.dst)
    if ip.offset:
        raise Stop(PacketStatus.FRAGMENT)
    if ip.mf:
        row["flags"] |= PKT_FLAG_FRAGMENT
    return l3 + ihl


def _ipv6(row, pkt: bytes, l3: int, wirelen: int) -> int:
    """IPv6 header and extension-header chain → offset of the transport header."""
    ip6 = _fields(dpkt.ip6.IP6, pkt, l3, PacketStatus.TRUNCATED_L3)
    if ip6.v != 6:
        raise Stop(PacketStatus.BAD_IP_HEADER)
    row["ip_len"] = 40 + ip6.plen if ip6.plen else max(40, wirelen - l3)  # 0: jumbogram
    row["flags"] |= PKT_FLAG_V6
    row["src_hi"], row["src_lo"] = addr_to_halves(ip6.src)
    row["dst_hi"], row["dst_lo"] = addr_to_halves(ip6.dst)
    bad = PacketStatus.BAD_EXTENSION_HEADERS
    nh, off = ip6.nxt, l3 + 40
    for _ in range(MAX_EXT_HEADERS):
        if nh == dpkt.ip.IP_PROTO_FRAGMENT:
            frag = _fields(dpkt.ip6.IP6FragmentHeader, pkt, off, bad)
            nh, off = frag.nxt, off + 8
            if frag.frag_off:
                row["proto"] = nh
                raise Stop(PacketStatus.FRAGMENT)
            if frag.m_flag:
                row["flags"] |= PKT_FLAG_FRAGMENT
        elif nh in EXT_SIZE:
            # All of them start with next header and length, as dpkt's options header does.
            ext = _fields(dpkt.ip6.IP6OptsHeader, pkt, off, bad)
            size = EXT_SIZE[nh](ext.len)
            if off + size > len(pkt):
                raise Stop(bad)
            nh, off = ext.nxt, off + size
        else:
            break
    row["proto"] = nh
    return off


def _transport(row, pkt: bytes, l4: int) -> None:
    """TCP/UDP/ICMP header: ports, flags and the payload span."""
    ip_end = min(int(row["l3_off"]) + int(row["ip_len"]), len(pkt))
    seg = pkt[l4:ip_end]
    proto = int(row["proto"])
    short = PacketStatus.TRUNCATED_L4
    if proto == dpkt.ip.IP_PROTO_TCP:
        if len(seg) < 20:
            raise Stop(short)
        try:
            tcp = dpkt.tcp.TCP(seg[:20])
        except dpkt.UnpackError:  # dpkt refuses a data offset under 5
            raise Stop(PacketStatus.BAD_L4_HEADER) from None
        row["sport"], row["dport"], row["tcp_flags"] = tcp.sport, tcp.dport, tcp.flags & 0xFF
        hdr = tcp.off * 4
    elif proto == dpkt.ip.IP_PROTO_UDP:
        udp = _fields(dpkt.udp.UDP, seg, 0, short)
        row["sport"], row["dport"] = udp.sport, udp.dport
        hdr = 8
    elif proto in ICMP_PAIRS:
        icmp = _fields(dpkt.icmp.ICMP if proto == 1 else dpkt.icmp6.ICMP6, seg, 0, short)
        row["sport"], row["dport"] = icmp.type, ICMP_PAIRS[proto].get(icmp.type, icmp.code)
        hdr = 4
    else:
        hdr = 0
    row["payload_off"] = l4 + hdr
    row["payload_len"] = max(0, len(seg) - hdr)


def _decode(row, pkt: bytes) -> None:
    """Fill the header columns of one PACKET row whose record columns are set."""
    decode_row(row, pkt, _link, _ipv4, _ipv6, _transport)


def iter_batches(
    path: Path, report: FileReport, batch_packets: int = 65536
) -> Iterator[PacketBatch]:
    """Decoded batches of one capture. Damage ends the file with ``report.error`` set; every
    packet read before it is yielded."""
    yield from _python.iter_batches(
        path, report, batch_packets, _Stream, _pcap_records, _pcapng_records, _decode
    )
