"""Reference engine on scapy: scapy reads the capture records and unpacks every header.

scapy is GPL-2.0-only, so it is imported here only, on first use (``_scapy``), and no other
poolwatch module imports this one except through ``engines.get_engine``.

scapy's full dissection (``Ether(buf)``) does not follow docs/decoding.md everywhere: it knows no
0x9100 tag, no Cisco HDLC, no MPLS unless contrib is loaded, reads the BSD null family from its
first byte only, and opens 802.3 LLC/SNAP frames. Its pcapng reader ignores if_tsoffset, keeps
interface numbers across sections and skips packets on undeclared interfaces. So this engine
walks the headers in the contract's order and asks scapy to dissect each header alone, from a
slice holding just that header; a subclass of scapy's pcapng reader adds what it lacks.
"""

from __future__ import annotations

import functools
import io
import struct
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

from ..errors import ReaderError, TruncatedTail
from ..readers.source import DECOMPRESS_ERRORS
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
    MAX_EXT_HEADERS,
    MAX_STANDARD_CAPLEN,
    NULL_FAMILIES,
    RAW_LINKTYPES,
    Stop,
    decode_row,
)

_PPP_PROTOCOLS = {0x21: 4, 0x57: 6}


class _Damaged(Exception):
    """A pcapng block scapy would read silently but the contract calls damage."""


@functools.cache
def _scapy() -> SimpleNamespace:
    """scapy's layers and readers, imported on first use, plus the two classes scapy lacks."""
    from scapy.all import (
        IP,
        TCP,
        UDP,
        Dot1AD,
        Dot1Q,
        Ether,
        IPv6,
        IPv6ExtHdrDestOpt,
        IPv6ExtHdrFragment,
        RawPcapNgReader,
        RawPcapReader,
    )
    from scapy.contrib.mpls import MPLS
    from scapy.data import ETHER_TYPES, MTU
    from scapy.error import Scapy_Exception
    from scapy.fields import ByteField, XByteField, XShortEnumField, XShortField
    from scapy.layers.l2 import CookedLinux, CookedLinuxV2, Dot3, LoopbackOpenBSD
    from scapy.layers.ppp import PPP, PPPoE
    from scapy.packet import Packet

    class CiscoHDLC(Packet):
        """Cisco HDLC (link type 104): address, control, EtherType."""

        name = "Cisco HDLC"
        fields_desc = [  # noqa: RUF012 - scapy's way to declare a layer
            XByteField("address", 0x0F),
            XByteField("control", 0),
            XShortEnumField("proto", 0x0800, ETHER_TYPES),
        ]

    class ICMPHeader(Packet):
        """The 4 bytes every ICMP and ICMPv6 message starts with. scapy's ICMP also wants the
        fields its type adds, which a short capture may lack."""

        name = "ICMP header"
        fields_desc = [  # noqa: RUF012 - scapy's way to declare a layer
            ByteField("type", 0),
            ByteField("code", 0),
            XShortField("chksum", 0),
        ]

    class PcapNgReader(RawPcapNgReader):
        """scapy's pcapng reader with if_tsoffset, interfaces numbered per section, damage
        raised instead of skipped, and where each block starts. Packet reads return
        (data, scapy's metadata, if_tsoffset)."""

        block_start = 0

        def _read_block(self, size=MTU):
            self.block_start = self.f.tell()
            return super()._read_block(size)

        def _read_block_shb(self):
            self.interfaces = []
            super()._read_block_shb()

        def _read_block_idb(self, block, size):
            super()._read_block_idb(block, size)
            value = self._read_options(block[8:]).get(14, b"")
            offset = struct.unpack(self.endian + "q", value)[0] if len(value) == 8 else 0
            self.interfaces[-1][2]["tsoffset"] = offset

        def _check_interface_id(self, intid):
            if intid >= len(self.interfaces):
                raise _Damaged(
                    f"packet on interface {intid}, but the section has {len(self.interfaces)}"
                )
            return True

        def _with_offset(self, intid, res):
            return res[0], res[1], self.interfaces[intid][2]["tsoffset"]

        def _read_block_epb(self, block, size):
            if len(block) >= 20:  # scapy itself rejects shorter ones
                caplen = struct.unpack_from(self.endian + "I", block, 12)[0]
                if caplen > len(block) - 20:
                    raise _Damaged(f"packet block too short for its {len(block) + 12}-byte record")
            res = super()._read_block_epb(block, size)
            return self._with_offset(struct.unpack(self.endian + "I", block[:4])[0], res)

        def _read_block_pkt(self, block, size):
            res = super()._read_block_pkt(block, size)
            return self._with_offset(struct.unpack(self.endian + "H", block[:2])[0], res)

        def _read_block_spb(self, block, size):
            res = super()._read_block_spb(block, size)
            # scapy caps the data at the snap length, where 0 means "no limit".
            return block[4 : 4 + res[1].wirelen], res[1], 0

    return SimpleNamespace(
        CiscoHDLC=CiscoHDLC, CookedLinux=CookedLinux, CookedLinuxV2=CookedLinuxV2, Dot1AD=Dot1AD,
        Dot1Q=Dot1Q, Dot3=Dot3, Ether=Ether, ICMPHeader=ICMPHeader, IP=IP, IPv6=IPv6,
        IPv6ExtHdrDestOpt=IPv6ExtHdrDestOpt, IPv6ExtHdrFragment=IPv6ExtHdrFragment,
        LoopbackOpenBSD=LoopbackOpenBSD, MPLS=MPLS, PcapNgReader=PcapNgReader, PPP=PPP,
        PPPoE=PPPoE, RawPcapReader=RawPcapReader, Scapy_Exception=Scapy_Exception, TCP=TCP, UDP=UDP,
    )  # fmt: skip


class _Counted(io.RawIOBase):
    """A decompressed stream that knows its position, for a BufferedReader (scapy reads the
    magic itself, so the engine must peek) over a zstd reader, which cannot seek or tell."""

    def __init__(self, raw) -> None:
        self.raw = raw
        self.pos = 0
        self.failure: Exception | None = None  # scapy takes a decompressor's EOFError for the end

    def readable(self) -> bool:
        return True

    def readinto(self, b) -> int:
        try:
            if hasattr(self.raw, "read1"):  # a decompressor's read(n) drops bytes when it breaks
                data = self.raw.read1(len(b))
                n = len(data)
                b[:n] = data
            else:
                n = self.raw.readinto(b)
        except DECOMPRESS_ERRORS as exc:
            self.failure = exc
            raise
        self.pos += n
        return n

    def tell(self) -> int:
        return self.pos

    def close(self) -> None:
        self.raw.close()
        super().close()


class _Capture(io.BufferedReader):
    """The capture as scapy's readers take it, buffered so that the engine can peek at the
    magic scapy reads itself."""

    def __init__(self, raw, path: str) -> None:
        super().__init__(_Counted(raw))
        self.path = path

    def magic(self) -> bytes:
        return self.peek(4)[:4]

    @property
    def offset(self) -> int:
        return self.raw.pos


def _layer(cls, pkt: bytes, off: int, size: int, short: PacketStatus):
    """scapy's dissection of the one header ``cls`` in ``pkt[off:off + size]``."""
    if off + size > len(pkt):
        raise Stop(short)
    return cls(pkt[off : off + size])


# ---------------------------------------------------------------------------
# Capture records
# ---------------------------------------------------------------------------
def _pcap_records(stream: _Capture, head: bytes, report: FileReport) -> Iterator[tuple]:
    """(ts_ns, linktype, wirelen, data) of each classic pcap record, read by RawPcapReader."""
    s, path = _scapy(), stream.path
    try:
        reader = s.RawPcapReader(stream)
    except s.Scapy_Exception as exc:
        raise ReaderError(path, 0, f"pcap header is broken ({exc})") from None
    frac_ns = 1 if reader.nano else 1000
    linktype = reader.linktype & 0x0FFFFFFF  # the top bits may carry an FCS length
    max_caplen = max(reader.snaplen, MAX_STANDARD_CAPLEN)
    offset = report.bytes_read = 24
    while True:
        try:
            # _read_packet takes a size; iterating the reader would cut packets at 65535 bytes.
            data, meta = reader._read_packet(size=MAX_STANDARD_CAPLEN)
        except EOFError:
            if stream.raw.failure:
                raise stream.raw.failure from None
            if stream.tell() > offset:
                raise TruncatedTail(
                    path, offset, "last record is truncated (inside its 16-byte header)"
                ) from None
            return
        if meta.caplen > max_caplen:
            raise ReaderError(
                path, offset, f"record length {meta.caplen} is impossible (damaged file)"
            )
        if len(data) < meta.caplen:
            raise TruncatedTail(
                path, offset, f"last record is truncated ({len(data)} of {meta.caplen} bytes)"
            )
        offset = report.bytes_read = offset + 16 + meta.caplen
        yield meta.sec * 1_000_000_000 + meta.usec * frac_ns, linktype, meta.wirelen, data


def _pcapng_records(stream: _Capture, head: bytes, report: FileReport) -> Iterator[tuple]:
    """(ts_ns, linktype, wirelen, data) of each pcapng packet, each on its own interface."""
    s, path = _scapy(), stream.path
    try:
        reader = s.PcapNgReader(stream)
    except s.Scapy_Exception as exc:
        raise ReaderError(path, 0, f"pcapng section header is broken ({exc})") from None
    while True:
        try:
            data, meta, tsoffset = reader._read_packet(size=MAX_STANDARD_CAPLEN)
        except EOFError:
            if stream.raw.failure:
                raise stream.raw.failure from None
            # scapy ends quietly on damage too: bytes left over mean the block was broken.
            if stream.tell() > reader.block_start or stream.read(1):
                raise ReaderError(
                    path, reader.block_start, "pcapng block is damaged or cut short"
                ) from None
            report.bytes_read = reader.block_start
            return
        except (_Damaged, s.Scapy_Exception) as exc:
            raise ReaderError(path, reader.block_start, str(exc)) from None
        report.bytes_read = stream.tell()
        if meta.tshigh is None:  # Simple Packet Block: no timestamp
            ts_ns = 0
        else:
            units = (meta.tshigh << 32) | meta.tslow
            ts_ns = units * 1_000_000_000 // meta.tsresol + tsoffset * 1_000_000_000
            ts_ns = (ts_ns + (1 << 63)) % (1 << 64) - (1 << 63)
        yield ts_ns, meta.linktype, meta.wirelen, data


# ---------------------------------------------------------------------------
# Headers
# ---------------------------------------------------------------------------
def _link(row, pkt: bytes, linktype: int) -> tuple[int, int]:
    """Link header → (offset of the IP header, IP version)."""
    s = _scapy()
    short = PacketStatus.TRUNCATED_L2
    if linktype == LINKTYPE_ETHERNET:
        eth = _layer(s.Ether, pkt, 0, 14, short)
        if isinstance(eth, s.Dot3):  # scapy's reading of a type field under 1536: a length
            raise Stop(PacketStatus.NOT_IP)
        return _ethertype(row, pkt, 14, eth.type)
    if linktype == LINKTYPE_LINUX_SLL:
        return _ethertype(row, pkt, 16, _layer(s.CookedLinux, pkt, 0, 16, short).proto)
    if linktype == LINKTYPE_LINUX_SLL2:
        return _ethertype(row, pkt, 20, _layer(s.CookedLinuxV2, pkt, 0, 20, short).proto)
    if linktype == LINKTYPE_C_HDLC:
        return _ethertype(row, pkt, 4, _layer(s.CiscoHDLC, pkt, 0, 4, short).proto)
    if linktype in RAW_LINKTYPES:
        if not pkt:
            raise Stop(short)
        return 0, _ip_version(pkt[0] >> 4, PacketStatus.BAD_IP_HEADER)
    if linktype in (LINKTYPE_NULL, LINKTYPE_LOOP):
        # scapy's Loopback reads the first byte only; its OpenBSD variant the whole field.
        family = _layer(s.LoopbackOpenBSD, pkt, 0, 4, short).type
        swapped = int.from_bytes(family.to_bytes(4, "big"), "little")
        if linktype == LINKTYPE_NULL and swapped <= 0xFFFF:  # written little-endian
            family = swapped
        if family not in NULL_FAMILIES:
            raise Stop(PacketStatus.NOT_IP)
        return 4, NULL_FAMILIES[family]
    if linktype == LINKTYPE_PPP:
        off = 2 if pkt[:2] == b"\xff\x03" else 0
        if off >= len(pkt):
            raise Stop(short)
        size = 1 if pkt[off] & 1 else 2  # scapy's PPP reads 1 or 2 bytes by the same rule
        proto = _layer(s.PPP, pkt, off, size, short).proto if pkt[off] != 0xFF else 0xFF
        if proto not in _PPP_PROTOCOLS:
            raise Stop(PacketStatus.NOT_IP)
        return off + size, _PPP_PROTOCOLS[proto]
    raise Stop(PacketStatus.UNKNOWN_LINKTYPE)


def _ethertype(row, pkt: bytes, off: int, etype: int) -> tuple[int, int]:
    """Follow an EtherType through VLAN tags, PPPoE and MPLS to IPv4/IPv6."""
    s = _scapy()
    short = PacketStatus.TRUNCATED_L2
    tag_classes = {0x8100: s.Dot1Q, 0x88A8: s.Dot1AD, 0x9100: s.Dot1Q}
    tags = 0
    while etype in tag_classes:
        tag = _layer(tag_classes[etype], pkt, off, 4, short)
        if tags < 2:
            row["inner_vlan" if tags else "vlan"] = tag.vlan
        tags += 1
        etype, off = tag.type, off + 4
    if etype == 0x0800:
        return off, 4
    if etype == 0x86DD:
        return off, 6
    if etype == 0x8864:  # PPPoE session, then a 2-byte PPP protocol
        _layer(s.PPPoE, pkt, off, 6, short)
        if off + 8 > len(pkt):
            raise Stop(short)
        if pkt[off + 6] & 1:  # scapy would read a 1-byte protocol; PPPoE carries 2 bytes
            raise Stop(PacketStatus.NOT_IP)
        proto = _layer(s.PPP, pkt, off + 6, 2, short).proto
        if proto not in _PPP_PROTOCOLS:
            raise Stop(PacketStatus.NOT_IP)
        return off + 8, _PPP_PROTOCOLS[proto]
    if etype in (0x8847, 0x8848):
        while True:
            label = _layer(s.MPLS, pkt, off, 4, short)
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
    ip = _layer(_scapy().IP, pkt, l3, 20, PacketStatus.TRUNCATED_L3)
    if ip.version != 4 or ip.ihl < 5:
        raise Stop(PacketStatus.BAD_IP_HEADER)
    ihl = ip.ihl * 4
    if len(pkt) - l3 < ihl:
        raise Stop(PacketStatus.TRUNCATED_L3)
    total = ip.len or wirelen - l3  # 0: TCP segmentation offload, the frame tells
    if total < ihl:
        raise Stop(PacketStatus.BAD_IP_HEADER)
    row["ip_len"] = total
    row["proto"] = ip.proto
    row["src_hi"], row["src_lo"] = addr_to_halves(ip.src)
    row["dst_hi"], row["dst_lo"] = addr_to_halves(ip.dst)
    if ip.frag:
        raise Stop(PacketStatus.FRAGMENT)
    if ip.flags.MF:
        row["flags"] |= PKT_FLAG_FRAGMENT
    return l3 + ihl


def _ipv6(row, pkt: bytes, l3: int, wirelen: int) -> int:
    """IPv6 header and extension-header chain → offset of the transport header."""
    s = _scapy()
    ip6 = _layer(s.IPv6, pkt, l3, 40, PacketStatus.TRUNCATED_L3)
    if ip6.version != 6:
        raise Stop(PacketStatus.BAD_IP_HEADER)
    row["ip_len"] = 40 + ip6.plen if ip6.plen else max(40, wirelen - l3)  # 0: jumbogram
    row["flags"] |= PKT_FLAG_V6
    row["src_hi"], row["src_lo"] = addr_to_halves(ip6.src)
    row["dst_hi"], row["dst_lo"] = addr_to_halves(ip6.dst)
    bad = PacketStatus.BAD_EXTENSION_HEADERS
    nh, off = ip6.nh, l3 + 40
    for _ in range(MAX_EXT_HEADERS):
        if nh == 44:
            frag = _layer(s.IPv6ExtHdrFragment, pkt, off, 8, bad)
            nh, off = frag.nh, off + 8
            if frag.offset:
                row["proto"] = nh
                raise Stop(PacketStatus.FRAGMENT)
            if frag.m:
                row["flags"] |= PKT_FLAG_FRAGMENT
        elif nh in EXT_SIZE:
            # All of them start with next header and length, as scapy's options header does.
            ext = _layer(s.IPv6ExtHdrDestOpt, pkt, off, 2, bad)
            size = EXT_SIZE[nh](ext.len)
            if off + size > len(pkt):
                raise Stop(bad)
            nh, off = ext.nh, off + size
        else:
            break
    row["proto"] = nh
    return off


def _transport(row, pkt: bytes, l4: int) -> None:
    """TCP/UDP/ICMP header: ports, flags and the payload span."""
    s = _scapy()
    ip_end = min(int(row["l3_off"]) + int(row["ip_len"]), len(pkt))
    seg = pkt[l4:ip_end]
    proto = int(row["proto"])
    short = PacketStatus.TRUNCATED_L4
    if proto == 6:
        tcp = _layer(s.TCP, seg, 0, 20, short)
        if tcp.dataofs < 5:
            raise Stop(PacketStatus.BAD_L4_HEADER)
        row["sport"], row["dport"], row["tcp_flags"] = tcp.sport, tcp.dport, int(tcp.flags) & 0xFF
        hdr = tcp.dataofs * 4
    elif proto == 17:
        udp = _layer(s.UDP, seg, 0, 8, short)
        row["sport"], row["dport"] = udp.sport, udp.dport
        hdr = 8
    elif proto in ICMP_PAIRS:
        icmp = _layer(s.ICMPHeader, seg, 0, 4, short)
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
        path, report, batch_packets, _Capture, _pcap_records, _pcapng_records, _decode
    )
