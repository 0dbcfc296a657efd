"""Where capture bytes come from: paths, directories and compressed files.

Compression is recognised by its magic bytes, not the file name, so ``capture.pcap`` that is
really gzip still reads. Streams are read in chunks; nothing here loads a whole file.
"""

from __future__ import annotations

import gzip
import lzma
import os
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import BinaryIO

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
    import zstandard

    return zstandard.ZstdDecompressor().stream_reader(raw, closefd=True), kind  # type: ignore[return-value]


def looks_like_capture(path: Path) -> bool:
    """True when a file's (decompressed) first bytes are a pcap or pcapng magic."""
    try:
        stream, _ = open_stream(path)
    except ReaderError:
        return False
    try:
        head = stream.read(4)
    except (OSError, EOFError, lzma.LZMAError, ValueError):
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
