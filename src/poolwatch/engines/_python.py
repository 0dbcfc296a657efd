"""What the Python-per-packet reference engines share.

The contract's constant tables (docs/decoding.md), the per-packet driver that runs an engine's
own link, IP and transport functions in the contract's order, the batch collector, and the
file driver of the engines that read the capture records themselves (dpkt, scapy). Header
parsing is not here: each engine does its own with its own library, which is the point of them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np

from ..errors import ReaderError, TruncatedTail
from ..readers.source import DECOMPRESS_ERRORS, PCAP_MAGICS, PCAPNG_MAGIC, open_stream
from ..records import (
    LINKTYPE_IPV4,
    LINKTYPE_IPV6,
    LINKTYPE_RAW,
    LINKTYPE_RAW_DLT12,
    LINKTYPE_RAW_OPENBSD,
    PACKET,
    FileReport,
    PacketBatch,
    PacketStatus,
)

# The same sanity limits as the fast reader: a record longer than this is damage.
MAX_STANDARD_CAPLEN = 262_144
MAX_BLOCK = 64 << 20
MAX_EXT_HEADERS = 8

RAW_LINKTYPES = (LINKTYPE_RAW, LINKTYPE_RAW_DLT12, LINKTYPE_RAW_OPENBSD, LINKTYPE_IPV4,
                 LINKTYPE_IPV6)  # fmt: skip
# BSD null / OpenBSD loop address family → IP version.
NULL_FAMILIES = {2: 4, 24: 6, 28: 6, 30: 6}
# IPv6 extension headers walked by length (fragment, 44, is handled apart): size from h[1].
EXT_SIZE = {
    0: lambda n: (n + 1) * 8,
    43: lambda n: (n + 1) * 8,
    60: lambda n: (n + 1) * 8,
    135: lambda n: (n + 1) * 8,
    51: lambda n: (n + 2) * 4,
}
# Zeek's and Community ID's ICMP request/reply pairs; other types use their code as dport.
ICMP_PAIRS = {
    1: {8: 0, 0: 8, 13: 14, 14: 13, 15: 16, 16: 15, 10: 9, 9: 10, 17: 18, 18: 17},
    58: {128: 129, 129: 128, 130: 131, 131: 130, 133: 134, 134: 133,
         135: 136, 136: 135, 139: 140, 140: 139, 144: 145, 145: 144},
}  # fmt: skip


class Stop(Exception):
    """Decoding ended before the transport payload, with this status."""

    def __init__(self, status: PacketStatus) -> None:
        self.status = status


def decode_row(row, pkt, link, ipv4, ipv6, transport) -> None:
    """Fill the header columns of one PACKET row whose record columns are set, with an engine's
    own header functions (any of them raises ``Stop`` to end decoding with a status):
    ``link(row, pkt, linktype)`` → (l3_off, IP version); ``ipv4(row, pkt, l3_off, wirelen)``
    and ``ipv6(...)`` → l4_off; ``transport(row, pkt, l4_off)``. ``pkt`` is whatever the
    engine reads headers from (the captured bytes, or tshark's dissection)."""
    try:
        l3, version = link(row, pkt, int(row["linktype"]))
        row["l3_off"] = l3
        wirelen = int(row["wirelen"])
        l4 = ipv4(row, pkt, l3, wirelen) if version == 4 else ipv6(row, pkt, l3, wirelen)
        row["l4_off"] = l4
        transport(row, pkt, l4)
        row["status"] = PacketStatus.OK
    except Stop as stop:
        row["status"] = stop.status


class Batch:
    """Packets collected until a PacketBatch is full; ``decode(row, pkt)`` fills each row."""

    def __init__(self, path: str, size: int, decode: Callable[..., None]) -> None:
        self.path = path
        self.size = size
        self.decode = decode
        self.reset()

    def reset(self) -> None:
        self.packets = np.zeros(self.size, PACKET)
        self.chunks: list[bytes] = []
        self.n = 0
        self.data_off = 0

    def add(self, frame: int, ts_ns: int, linktype: int, wirelen: int, data: bytes, pkt=None):
        """One packet record; ``pkt`` is what ``decode`` reads (default: the captured bytes)."""
        row = self.packets[self.n]
        row["frame"], row["ts_ns"], row["data_off"] = frame, ts_ns, self.data_off
        row["caplen"], row["wirelen"], row["linktype"] = len(data), wirelen, linktype & 0xFFFF
        self.decode(row, data if pkt is None else pkt)
        self.chunks.append(data)
        self.data_off += len(data)
        self.n += 1

    def take(self) -> PacketBatch:
        buf = np.frombuffer(bytearray(b"".join(self.chunks)), np.uint8)
        batch = PacketBatch(self.path, buf, self.packets[: self.n])
        self.reset()
        return batch


def read_some(raw, n: int) -> bytes:
    """Up to ``n`` bytes in one step, so that a broken compressed stream loses none of the
    bytes before the break (``read(n)`` of a decompressor drops them when it raises)."""
    if hasattr(raw, "read1"):
        return raw.read1(n)
    buf = bytearray(n)
    return bytes(buf[: raw.readinto(buf)])


def iter_batches(
    path: Path,
    report: FileReport,
    batch_packets: int,
    open_capture: Callable,
    pcap_records: Callable[..., Iterator[tuple]],
    pcapng_records: Callable[..., Iterator[tuple]],
    decode: Callable[..., None],
) -> Iterator[PacketBatch]:
    """Decoded batches of one capture, for an engine that reads the records itself. Damage ends
    the file with ``report.error`` set (a cut-short last record: a warning); every packet read
    before it is yielded.

    ``open_capture(raw, path)`` wraps the decompressed stream in the engine's reader: a context
    manager that closes it, with ``magic()`` (the first 4 bytes) and ``offset`` (decompressed
    bytes read, for a decompression error). ``pcap_records(capture, magic, report)`` and
    ``pcapng_records(...)`` yield (ts_ns, linktype, wirelen, data) of each packet record and
    raise ``TruncatedTail`` or ``ReaderError``."""
    name = str(path)
    try:
        raw, report.compression = open_stream(path)
    except ReaderError as exc:
        report.error = str(exc)
        return
    batch = Batch(name, batch_packets, decode)
    with open_capture(raw, name) as capture:
        try:
            head = capture.magic()
            if not head:
                raise ReaderError(name, 0, "file is empty")
            if head in PCAP_MAGICS:
                report.format = "pcap"
                records = pcap_records(capture, head, report)
            elif head == PCAPNG_MAGIC:
                report.format = "pcapng"
                records = pcapng_records(capture, head, report)
            else:
                raise ReaderError(name, 0, f"not a pcap or pcapng file (starts with {head.hex()})")
            for ts_ns, linktype, wirelen, data in records:
                report.packets += 1
                batch.add(report.packets, ts_ns, linktype, wirelen, data)
                if batch.n == batch_packets:
                    yield batch.take()
        except TruncatedTail as exc:
            report.warnings.append(str(exc))
        except ReaderError as exc:
            report.error = str(exc)
        except DECOMPRESS_ERRORS as exc:
            reason = f"cannot decompress ({report.compression}): {exc}"
            report.error = str(ReaderError(name, capture.offset, reason))
    if batch.n:
        yield batch.take()
