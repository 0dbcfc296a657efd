"""Where capture bytes come from: paths, directories and compressed files.

Compression is recognised by its magic bytes, not the file name, so ``capture.pcap`` that is
really gzip still reads. Streams are read in chunks; nothing here loads a whole file.
"""

from __future__ import annotations

import gzip
import io
import lzma
import os
import zlib
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import BinaryIO

import zstandard

from ..errors import ReaderError

GZIP_MAGIC = b"\x1f\x8b"
XZ_MAGIC = b"\xfd7zXZ\x00"
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"

# Capture magics (first four bytes): classic pcap in both byte orders and both
# resolutions, and the pcapng Section Header Block type.
PCAP_MAGICS = {
    b"\xd4\xc3\xb2\xa1": ("<", 1_000),  # little-endian, microseconds
    b"\xa1\xb2\xc3\xd4": (">", 1_000),
    b"\x4d\x3c\xb2\xa1": ("<", 1),  # little-endian, nanoseconds
    b"\xa1\xb2\x3c\x4d": (">", 1),
}
PCAPNG_MAGIC = b"\x0a\x0d\x0d\x0a"

CAPTURE_SUFFIXES = (".pcap", ".pcapng", ".cap", ".dmp", ".pcap.gz", ".pcapng.gz")

# What reading a damaged or truncated compressed stream raises (gzip: OSError/EOFError/zlib,
# xz: LZMAError/EOFError, zstd: ZstdError, or EOFError from _ZstdStream).
DECOMPRESS_ERRORS = (OSError, EOFError, lzma.LZMAError, zlib.error, ValueError, zstandard.ZstdError)


def detect_compression(head: bytes) -> str:
    """'gzip', 'xz', 'zstd' or 'none', from a file's first bytes."""
    if head.startswith(GZIP_MAGIC):
        return "gzip"
    if head.startswith(XZ_MAGIC):
        return "xz"
    if head.startswith(ZSTD_MAGIC):
        return "zstd"
    return "none"


def open_stream(path: str | os.PathLike[str]) -> tuple[BinaryIO, str]:
    """Open a capture for reading, decompressing on the fly. Returns (stream, compression)."""
    p = os.fspath(path)
    try:
        raw = open(p, "rb", buffering=0)  # noqa: SIM115 - returned to the caller
    except OSError as exc:
        raise ReaderError(p, None, exc.strerror or str(exc)) from None
    head = raw.read(6)
    raw.seek(0)
    kind = detect_compression(head)
    if kind == "none":
        return raw, kind
    if kind == "gzip":
        return gzip.GzipFile(fileobj=raw, mode="rb"), kind  # type: ignore[return-value]
    if kind == "xz":
        return lzma.LZMAFile(raw, mode="rb"), kind  # type: ignore[return-value]
    return _ZstdStream(raw), kind  # type: ignore[return-value]


_ZSTD_MAGIC = 0xFD2FB528


def _zstd_frames_complete(raw: BinaryIO) -> bool:
    """True when the zstd data in ``raw`` ends exactly after a complete frame.

    Follows frame and block headers only (a few bytes per block, no decompression).
    """
    size = raw.seek(0, os.SEEK_END)
    pos = 0
    while pos < size:
        raw.seek(pos)
        head = raw.read(14)
        if len(head) < 8:
            return False
        magic = int.from_bytes(head[:4], "little")
        if magic & 0xFFFFFFF0 == 0x184D2A50:  # skippable frame
            pos += 8 + int.from_bytes(head[4:8], "little")
            continue
        if magic != _ZSTD_MAGIC:
            return False
        fhd = head[4]
        single_segment = (fhd >> 5) & 1
        pos += (5 + (0 if single_segment else 1) + (0, 1, 2, 4)[fhd & 3]
                + (single_segment, 2, 4, 8)[fhd >> 6])
        while True:
            raw.seek(pos)
            block = raw.read(3)
            if len(block) < 3:
                return False
            value = int.from_bytes(block, "little")
            pos += 3 + (1 if (value >> 1) & 3 == 1 else value >> 3)  # RLE blocks hold 1 byte
            if value & 1:
                break
        pos += 4 if (fhd >> 2) & 1 else 0  # content checksum
    return pos == size


class _ZstdStream(io.RawIOBase):
    """Decompressed zstd data, across concatenated frames, in bounded memory.

    ``zstandard``'s stream reader stops quietly where a truncated file ends; this one raises
    ``EOFError`` there, as gzip and xz streams do, so a cut file is reported as damaged.
    Unbuffered: ``readinto`` fills the caller's buffer directly and raises only when it has
    nothing to return, so no decompressed byte is lost to an error.
    """

    def __init__(self, raw: BinaryIO) -> None:
        super().__init__()
        self._raw = raw
        self._reader = zstandard.ZstdDecompressor().stream_reader(
            raw, read_across_frames=True, closefd=False
        )
        self._checked = False

    def readable(self) -> bool:
        return True

    def read(self, size: int | None = -1) -> bytes:
        """``size`` bytes unless the stream ends first (a raw read may return fewer)."""
        if size is None or size < 0:
            return self.readall()
        out = bytearray(size)
        view = memoryview(out)
        got = 0
        while got < size:
            n = self.readinto(view[got:])
            if not n:
                break
            got += n
        view.release()
        del out[got:]
        return bytes(out)

    def readinto(self, buffer) -> int:  # type: ignore[override]
        n = self._reader.readinto(buffer)
        if n == 0 and not self._checked and len(memoryview(buffer)):
            self._checked = True
            if not _zstd_frames_complete(self._raw):
                raise EOFError("zstd stream ends inside a frame (the file is truncated)")
        return n

    def close(self) -> None:
        if not self.closed:
            self._reader.close()
            self._raw.close()
        super().close()


def looks_like_capture(path: Path) -> bool:
    """True when a file's (decompressed) first bytes are a pcap or pcapng magic."""
    try:
        stream, _ = open_stream(path)
    except ReaderError:
        return False
    try:
        head = stream.read(4)
    except DECOMPRESS_ERRORS:
        return False
    finally:
        stream.close()
    return head in PCAP_MAGICS or head == PCAPNG_MAGIC


def expand_paths(paths: Iterable[str | os.PathLike[str]]) -> Iterator[Path]:
    """Files as given, and directories walked recursively in sorted order.

    Inside directories only files whose contents start like a capture are taken, so notes,
    checksums and golden files beside the captures are passed over. A file named directly is
    always taken (and reported if it is not a capture).
    """
    for given in paths:
        p = Path(given)
        if p.is_dir():
            for sub in sorted(x for x in p.rglob("*") if x.is_file()):
                if looks_like_capture(sub):
                    yield sub
        else:
            yield p
