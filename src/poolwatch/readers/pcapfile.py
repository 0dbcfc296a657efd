"""The fast reader: pcap and pcapng files → PacketBatch, in fixed-size chunks.

A plain file is mapped window by window (``chunk_bytes`` each); a compressed one is read in
chunks of that size into one reused buffer. A numba walker (``kernels.capture_records``)
finds the records in each chunk; the record cut by the chunk edge starts the next chunk.
Memory therefore depends on the chunk size, never on the file size, and no Python runs per
packet.

Damage is reported, never raised past the caller: the first bad record stops the file with
``report.error`` naming the byte offset, and every packet before it has been yielded already.
"""

from __future__ import annotations

import logging
import mmap
import os
import struct
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from ..errors import ReaderError, TruncatedTail
from ..kernels import capture_records as walk
from ..records import PACKET, SUPPORTED_LINKTYPES, FileReport, PacketBatch
from .source import DECOMPRESS_ERRORS, PCAP_MAGICS, PCAPNG_MAGIC, open_stream

log = logging.getLogger(__name__)

DEFAULT_CHUNK_BYTES = 8 << 20
DEFAULT_BATCH_PACKETS = 1 << 16
# Wireshark's largest "standard" packet; pcap snaplen may raise it.
MAX_STANDARD_CAPLEN = 262_144

_DECOMPRESS_ERRORS = DECOMPRESS_ERRORS
# A window's pages mapped in one call rather than a fault at a time as the walker reaches
# them (Linux): an eighth less time to map a file in the page cache.
_MAP_FLAGS = mmap.MAP_SHARED | getattr(mmap, "MAP_POPULATE", 0)


def _fill(stream, view: memoryview) -> tuple[int, Exception | None]:
    """Read until ``view`` is full or the stream ends (decompressors return short reads).

    Returns (bytes read, the decompression error that stopped it or None): the bytes a
    damaged compressed stream gave before its error are kept, not thrown away with it.
    Decompressing streams are buffered: their ``readinto`` copies buffered bytes and then
    raises, losing the count, so they are read with ``read1``, which returns what it has.
    """
    read1 = getattr(stream, "read1", None)  # plain files are unbuffered: readinto is exact
    got = 0
    while got < len(view):
        try:
            if read1 is None:
                n = stream.readinto(view[got:])
            else:
                data = read1(len(view) - got)
                n = len(data)
                view[got : got + n] = data
        except _DECOMPRESS_ERRORS as exc:
            return got, exc
        if not n:
            break
        got += n
    return got, None


class _Walker:
    """Holds what a format needs between chunks and calls its kernel."""

    def __init__(self, head: bytes, path: str, report: FileReport) -> None:
        self.state = np.zeros(walk.ST_LEN, np.int64)
        self.ifaces = np.zeros((walk.MAX_INTERFACES, walk.IF_LEN), np.int64)
        if head[:4] == PCAPNG_MAGIC:
            report.format = "pcapng"
            self.header_len = 0
            self.pcapng = True
            return
        if head[:4] not in PCAP_MAGICS:
            raise ReaderError(path, 0, f"not a pcap or pcapng file (starts with {head[:4].hex()})")
        if len(head) < 24:
            raise ReaderError(path, 0, "file ends inside the 24-byte pcap header")
        report.format = "pcap"
        self.pcapng = False
        self.header_len = 24
        endian, self.frac_ns = PCAP_MAGICS[head[:4]]
        self.big = endian == ">"
        _, _, _, _, snaplen, linktype = struct.unpack(endian + "HHiIII", head[4:24])
        # Some writers put flags in the top bits of the link type (FCS length): keep the type.
        self.linktype = linktype & 0x0FFFFFFF
        self.max_caplen = max(snaplen, MAX_STANDARD_CAPLEN)
        if self.linktype not in SUPPORTED_LINKTYPES:
            report.warnings.append(
                f"{path}: link type {self.linktype} is not decoded; packets are counted only"
            )

    def __call__(self, buf, n_valid, pos, out, n_out):
        if self.pcapng:
            return walk.walk_pcapng(buf, n_valid, pos, self.state, self.ifaces, out, n_out)
        return walk.walk_pcap(
            buf, n_valid, pos, self.big, self.frac_ns, self.max_caplen, self.linktype, out, n_out
        )

    def unknown_linktypes(self) -> set[int]:
        if not self.pcapng:
            return set()
        n = int(self.state[walk.ST_N_IFACES])
        return {int(x) for x in self.ifaces[:n, walk.IF_LINKTYPE]} - set(SUPPORTED_LINKTYPES)


_BAD = {
    walk.WALK_BAD_LENGTH: "record length {} is impossible (damaged file); reading stopped",
    walk.WALK_BAD_BLOCK: "pcapng block header is broken (length {}); reading stopped",
    walk.WALK_TOO_MANY_INTERFACES: "more than 256 pcapng interfaces ({}); reading stopped",
    walk.WALK_BAD_INTERFACE: "packet block on an interface that its section does not declare "
                             "(damaged file); reading stopped",
}
_BAD_PCAPNG_PACKET = "packet length {} overruns its pcapng block (damaged file); reading stopped"


class _StreamChunks:
    """Chunks of a (decompressing) stream in one reused buffer; a record cut by the chunk edge
    is copied to the front before the buffer is filled again."""

    file_bytes = False  # decompressed, or a pipe's: not bytes the file can be hashed from

    def __init__(self, stream, first: bytes, offset: int, chunk_bytes: int, report, path: str):
        self.stream, self.report, self.path = stream, report, path
        self.buf = np.empty(max(chunk_bytes, 2 * len(first)), np.uint8)
        self.buf[: len(first)] = np.frombuffer(first, np.uint8)
        self.base, self.n_valid = offset, len(first)

    def at(self, offset: int) -> tuple[np.ndarray, int, int, bool, int]:
        """(buffer, index of ``offset`` in it, valid bytes, end of input, file offset of buf[0])"""
        tail = self.buf[offset - self.base : self.n_valid].copy()
        if 2 * len(tail) > len(self.buf):  # a record larger than half a chunk
            self.buf = np.empty(2 * len(tail), np.uint8)
        self.buf[: len(tail)] = tail
        got, exc = _fill(self.stream, memoryview(self.buf)[len(tail) :])
        self.base, self.n_valid = offset, len(tail) + got
        if exc is not None:
            reason = (f"cannot decompress ({self.report.compression}) past this offset of the "
                      f"decompressed data: {exc}")
            self.report.error = str(ReaderError(self.path, offset + self.n_valid, reason))
        return self.buf, 0, self.n_valid, got == 0 or exc is not None, offset


class _MappedChunks:
    """Windows of a plain file mapped into memory: the walker reads the page cache directly,
    without the copy through a buffer that reading costs (a tenth of the fast path's time).
    Only the current window is mapped, so memory stays bounded whatever the file size."""

    file_bytes = True  # each window is the file's bytes from its offset

    def __init__(self, fileno: int, chunk_bytes: int) -> None:
        self.fileno = fileno
        self.size = os.fstat(fileno).st_size
        self.window = max(chunk_bytes, mmap.ALLOCATIONGRANULARITY)
        self.last_offset = -1

    def at(self, offset: int) -> tuple[np.ndarray, int, int, bool, int]:
        if offset == self.last_offset:  # no record fitted: one is larger than the window
            self.window *= 2
        self.last_offset = offset
        if offset >= self.size:
            return np.zeros(0, np.uint8), 0, 0, True, offset
        aligned = offset - offset % mmap.ALLOCATIONGRANULARITY
        length = min(self.window, self.size - aligned)
        mapped = mmap.mmap(self.fileno, length, flags=_MAP_FLAGS, prot=mmap.PROT_READ,
                           offset=aligned)
        buf = np.frombuffer(mapped, np.uint8)  # unmapped when the last batch using it goes
        return buf, offset - aligned, length, aligned + length >= self.size, aligned


def _chunks(stream, first: bytes, offset: int, chunk_bytes: int, report, path: str):
    """Mapped windows for a plain regular file, else chunks read from the stream."""
    if report.compression == "none":
        try:
            chunks = _MappedChunks(stream.fileno(), chunk_bytes)
            chunks.at(offset)  # a FIFO or special file cannot be mapped: find out now
            chunks.last_offset = -1
            return chunks
        except (OSError, ValueError, AttributeError):
            pass
    return _StreamChunks(stream, first, offset, chunk_bytes, report, path)


def read_capture(
    path: str | Path,
    report: FileReport,
    *,
    chunk_bytes: int = DEFAULT_CHUNK_BYTES,
    batch_packets: int = DEFAULT_BATCH_PACKETS,
) -> Iterator[PacketBatch]:
    """Yield the packet records of one capture, with record columns filled (not decoded).

    Each batch's arrays are reused for the next one (libpcap's contract): a consumer that
    keeps a batch past the next iteration keeps ``batch.copy()``.
    """
    p = str(path)
    stream, report.compression = open_stream(p)
    with stream:
        try:
            head = stream.read(24)
        except _DECOMPRESS_ERRORS as exc:
            raise ReaderError(p, 0, f"cannot decompress ({report.compression}): {exc}") from None
        if not head:
            raise ReaderError(p, 0, "file is empty")
        walker = _Walker(head, p, report)
        offset = walker.header_len  # file offset of the next record
        chunks = _chunks(stream, head[offset:], offset, chunk_bytes, report, p)
        records = np.zeros(batch_packets, PACKET)  # reused for every batch
        dirty = 0  # rows the last batch wrote; the rest are still zero
        frame = 0
        seen_unknown: set[int] = set()
        while True:
            buf, pos, n_valid, eof, base = chunks.at(offset)
            while True:
                # zeroed as raw bytes (a structured `[:] = 0` is per-field slow), and only
                # the rows the last batch used: a short batch at each window's end would
                # otherwise clear the whole array for a few packets
                records[:dirty].view(np.uint8).fill(0)
                n, pos, status = walker(buf, n_valid, pos, records, 0)
                dirty = min(n + 1, len(records))  # a walker may have begun row n
                if n:
                    out = records[:n]
                    out["frame"] = np.arange(frame + 1, frame + n + 1, dtype=np.uint64)
                    frame += n
                    report.packets += n
                    yield PacketBatch(p, buf, out, base if chunks.file_bytes else None)
                if status != walk.WALK_OK:
                    length = _record_len(walker, buf, pos, status)
                    why = (_BAD_PCAPNG_PACKET if walker.pcapng and status == walk.WALK_BAD_LENGTH
                           else _BAD[status])
                    report.error = str(ReaderError(p, base + pos, why.format(length)))
                    report.bytes_read = base + pos
                    return
                if n < batch_packets:
                    break
            unknown = walker.unknown_linktypes() - seen_unknown
            for lt in sorted(unknown):
                report.warnings.append(
                    f"{p}: interface link type {lt} is not decoded; packets are counted only"
                )
            seen_unknown |= unknown
            offset = base + pos
            if eof:
                report.bytes_read = offset
                if n_valid > pos and report.error is None:
                    reason = f"last record is truncated ({n_valid - pos} bytes of it); ignored"
                    report.warnings.append(str(TruncatedTail(p, offset, reason)))
                return


def _record_len(walker: _Walker, buf: np.ndarray, pos: int, status: int) -> int:
    """The length field of the record at ``pos`` that is wrong, for the error message."""
    if walker.pcapng:
        fmt = ">I" if walker.state[walk.ST_BIG_ENDIAN] else "<I"
        # a packet block whose captured length overruns the block, else the block length
        at = pos + 20 if status == walk.WALK_BAD_LENGTH else pos + 4
        return struct.unpack_from(fmt, buf, at)[0] if at + 4 <= len(buf) else -1
    fmt = ">I" if walker.big else "<I"
    return struct.unpack_from(fmt, buf, pos + 8)[0] if pos + 12 <= len(buf) else -1
