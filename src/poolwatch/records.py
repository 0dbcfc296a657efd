"""Record shapes shared by every stage: numpy dtypes for bulk data, dataclasses for the rest.

Bulk data never becomes a list of Python objects per packet. A scan is a stream of
:class:`PacketBatch` values: one ``uint8`` buffer holding the captured bytes and one
``PACKET`` structured array describing each packet in it. Every engine (fast, dpkt, scapy,
pyshark) fills the same columns, so later stages do not care which one read the capture.

Addresses are carried as two big-endian ``uint64`` halves of an IPv6 address; IPv4
addresses are IPv4-mapped (``::ffff:a.b.c.d``), so one column pair serves both families.
"""

from __future__ import annotations

import enum
import ipaddress
from dataclasses import dataclass, field

import numpy as np

# ---------------------------------------------------------------------------
# Link types (tcpdump.org LINKTYPE_* values) that the decoders understand.
# ---------------------------------------------------------------------------
LINKTYPE_NULL = 0  # BSD loopback, host-endian 4-byte address family
LINKTYPE_ETHERNET = 1
LINKTYPE_PPP = 9
LINKTYPE_RAW = 101  # raw IPv4/IPv6, version nibble decides
LINKTYPE_RAW_OPENBSD = 14  # DLT_RAW on OpenBSD, written as 14 by some tools
LINKTYPE_RAW_DLT12 = 12  # DLT_RAW on most BSDs, written as 12 by some tools
LINKTYPE_C_HDLC = 104  # Cisco HDLC
LINKTYPE_LOOP = 108  # OpenBSD loopback, network-order address family
LINKTYPE_LINUX_SLL = 113
LINKTYPE_IPV4 = 228
LINKTYPE_IPV6 = 229
LINKTYPE_LINUX_SLL2 = 276

SUPPORTED_LINKTYPES = {
    LINKTYPE_NULL: "null",
    LINKTYPE_ETHERNET: "ethernet",
    LINKTYPE_PPP: "ppp",
    LINKTYPE_RAW_DLT12: "raw",
    LINKTYPE_RAW_OPENBSD: "raw",
    LINKTYPE_RAW: "raw",
    LINKTYPE_C_HDLC: "c-hdlc",
    LINKTYPE_LOOP: "loop",
    LINKTYPE_LINUX_SLL: "linux-sll",
    LINKTYPE_IPV4: "ipv4",
    LINKTYPE_IPV6: "ipv6",
    LINKTYPE_LINUX_SLL2: "linux-sll2",
}


class PacketStatus(enum.IntEnum):
    """How far decoding got. Everything except OK, NOT_IP and FRAGMENT is a "weird"."""

    OK = 0  # IP decoded; ports/flags valid for TCP/UDP/ICMP
    NOT_IP = 1  # ARP, LLDP, STP...: a normal non-IP frame, not an error
    FRAGMENT = 2  # IPv4/IPv6 fragment with offset > 0: no transport header to read
    TRUNCATED_L2 = 3  # capture ended inside the link-layer header
    TRUNCATED_L3 = 4  # capture ended inside the IP header
    BAD_IP_HEADER = 5  # impossible IHL/version/total length
    TRUNCATED_L4 = 6  # capture ended inside the TCP/UDP/ICMP header
    BAD_L4_HEADER = 7  # impossible TCP data offset
    UNKNOWN_LINKTYPE = 8  # link type the decoders do not handle
    BAD_EXTENSION_HEADERS = 9  # IPv6 extension header chain runs past the packet


WEIRD_STATUSES = tuple(s for s in PacketStatus if s not in (PacketStatus.OK, PacketStatus.NOT_IP))

# Flags in PACKET["flags"].
PKT_FLAG_FRAGMENT = 1  # first fragment (offset 0, more-fragments set): ports valid, payload partial
PKT_FLAG_V6 = 2  # IPv6 (else IPv4 when status is OK/FRAGMENT)

# One row per captured packet. Offsets are relative to the start of the packet's bytes,
# which sit at ``data_off`` in the batch buffer.
PACKET = np.dtype(
    [
        # 8-byte fields first, then 4, 2, 1: every field naturally aligned for the kernels.
        ("frame", np.uint64),  # 1-based frame number within its capture file (Wireshark's)
        ("ts_ns", np.int64),  # capture timestamp, ns since the Unix epoch
        ("data_off", np.uint64),  # where this packet's bytes start in PacketBatch.buf
        ("src_hi", np.uint64),  # source address, high 64 bits (IPv4-mapped for IPv4)
        ("src_lo", np.uint64),
        ("dst_hi", np.uint64),
        ("dst_lo", np.uint64),
        ("caplen", np.uint32),  # bytes captured
        ("wirelen", np.uint32),  # bytes on the wire
        ("ip_len", np.uint32),  # bytes at IP level as the header declares them
        ("payload_off", np.uint32),  # first byte of transport payload
        ("payload_len", np.uint32),  # captured payload bytes (may be less than sent)
        ("linktype", np.uint16),
        ("vlan", np.uint16),  # outer 802.1Q/802.1ad VLAN id, 0 when untagged
        ("inner_vlan", np.uint16),  # second tag (QinQ), 0 when absent
        ("l3_off", np.uint16),
        ("l4_off", np.uint16),
        ("sport", np.uint16),  # TCP/UDP port, or ICMP type
        ("dport", np.uint16),  # TCP/UDP port, or ICMP code
        ("status", np.uint8),  # PacketStatus
        ("flags", np.uint8),  # PKT_FLAG_*
        ("proto", np.uint8),  # IP protocol number (after IPv6 extension headers)
        ("tcp_flags", np.uint8),
    ],
    align=True,
)

# One row per bidirectional flow. The miner/initiator is ``src``: the sender of the first
# packet seen, or the receiver of a SYN-ACK seen first.
FLOW = np.dtype(
    [
        ("src_hi", np.uint64),
        ("src_lo", np.uint64),
        ("dst_hi", np.uint64),
        ("dst_lo", np.uint64),
        ("first_ts_ns", np.int64),
        ("last_ts_ns", np.int64),
        ("pkts_toserver", np.uint64),
        ("pkts_toclient", np.uint64),
        ("bytes_toserver", np.uint64),
        ("bytes_toclient", np.uint64),
        ("vlan", np.uint16),
        ("inner_vlan", np.uint16),
        ("src_port", np.uint16),
        ("dest_port", np.uint16),
        ("proto", np.uint8),
        ("end_reason", np.uint8),  # EndReason
        ("tcp_flags_toserver", np.uint8),
        ("tcp_flags_toclient", np.uint8),
    ],
    align=True,
)


class EndReason(enum.IntEnum):
    """Why a flow record was closed."""

    EOF = 0  # the scan ended with the flow still open
    IDLE = 1  # no packet for idle_timeout
    ACTIVE = 2  # open for longer than active_timeout; the next packet starts a new record
    EVICTED = 3  # the flow table was full; the least recently seen flows were closed early


V4_MAPPED_HI = np.uint64(0)
V4_MAPPED_LO_PREFIX = 0x0000FFFF00000000


def addr_to_halves(addr: str | ipaddress.IPv4Address | ipaddress.IPv6Address) -> tuple[int, int]:
    """Address → (hi, lo) as stored in PACKET/FLOW."""
    ip = ipaddress.ip_address(addr)
    if ip.version == 4:
        return 0, V4_MAPPED_LO_PREFIX | int(ip)
    value = int(ip)
    return value >> 64, value & 0xFFFFFFFFFFFFFFFF


def halves_to_addr(hi: int, lo: int) -> str:
    """(hi, lo) → the address as text, IPv4 for IPv4-mapped values."""
    hi, lo = int(hi), int(lo)
    if hi == 0 and (lo >> 32) == 0xFFFF:
        return str(ipaddress.IPv4Address(lo & 0xFFFFFFFF))
    return str(ipaddress.IPv6Address((hi << 64) | lo))


@dataclass
class Weirds:
    """Counters of things that were wrong with the input but did not stop the scan."""

    counts: dict[str, int] = field(default_factory=dict)

    def add(self, name: str, n: int = 1) -> None:
        if n:
            self.counts[name] = self.counts.get(name, 0) + int(n)

    def add_counts(self, per_status: np.ndarray) -> None:
        """Rows per status (indexed by :class:`PacketStatus`): the weird ones are counted."""
        for s in WEIRD_STATUSES:
            self.add(s.name.lower(), int(per_status[s]))

    def merge(self, other: Weirds) -> None:
        for k, v in other.counts.items():
            self.add(k, v)

    def total(self) -> int:
        return sum(self.counts.values())


@dataclass
class PacketBatch:
    """A run of decoded packets from one capture file.

    ``buf`` holds the captured bytes; ``packets[i]`` describes packet i, whose bytes are
    ``buf[data_off : data_off + caplen]`` and whose transport payload is
    ``buf[data_off + payload_off : data_off + payload_off + payload_len]``.
    """

    path: str
    buf: np.ndarray  # uint8
    packets: np.ndarray  # PACKET
    # Where buf[0] is in the capture file when ``buf`` is the file's own bytes (a mapped
    # window of a plain file): the evidence hash then reads them here, not from disk again.
    # None for bytes that are not the file's (decompressed, live, rebuilt by an engine).
    file_offset: int | None = None

    def __len__(self) -> int:
        return len(self.packets)

    def copy(self) -> PacketBatch:
        """A batch that owns its arrays (readers reuse theirs for the next batch)."""
        return PacketBatch(self.path, self.buf.copy(), self.packets.copy(), self.file_offset)

    def payload(self, i: int) -> bytes:
        """Transport payload of packet i (for the few packets a detector looks at)."""
        p = self.packets[i]
        start = int(p["data_off"]) + int(p["payload_off"])
        return self.buf[start : start + int(p["payload_len"])].tobytes()

    def packet_bytes(self, i: int) -> bytes:
        p = self.packets[i]
        start = int(p["data_off"])
        return self.buf[start : start + int(p["caplen"])].tobytes()


@dataclass
class FileReport:
    """What reading one capture file found: counts, warnings and whether it ended cleanly."""

    path: str
    format: str = "unknown"  # pcap, pcapng
    compression: str = "none"  # none, gzip, xz, zstd
    packets: int = 0
    bytes_read: int = 0
    weirds: Weirds = field(default_factory=Weirds)
    warnings: list[str] = field(default_factory=list)
    error: str | None = None  # set when reading stopped before the end of the file

    @property
    def ok(self) -> bool:
        return self.error is None
