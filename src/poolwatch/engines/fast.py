"""The default engine: chunked reader + numba header decoder, no per-packet Python."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from ..decode import decode_batch
from ..errors import ReaderError
from ..readers.pcapfile import read_capture
from ..records import FileReport, PacketBatch


def iter_batches(
    path: Path, report: FileReport, batch_packets: int = 1 << 16
) -> Iterator[PacketBatch]:
    """Decoded batches of one capture; damage ends the file with ``report.error`` set."""
    try:
        for batch in read_capture(path, report, batch_packets=batch_packets):
            yield decode_batch(batch)
    except ReaderError as exc:
        report.error = str(exc)
