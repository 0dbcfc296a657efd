"""The library entry point: many capture paths → decoded batches → flow records.

A scan is a stream. :func:`iter_batches` yields decoded :class:`PacketBatch` values file by
file (later stages, such as detection, consume these); :func:`scan_flows` runs them through
one :class:`FlowTable` and yields closed flow records as they close. Problems with a file
are recorded in its :class:`FileReport` and the scan moves on to the next file.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .detect.records import StratumSession
from .engines import get_engine
from .errors import ReaderError
from .flows import FlowSettings, FlowTable
from .readers.source import expand_paths
from .records import PacketBatch, PacketStatus, FileReport, Weirds

log = logging.getLogger(__name__)

FLUSH_SLICE = 1 << 16


@dataclass
class ScanSummary:
    """What a scan went through: per-file reports and totals."""

    engine: str = "fast"
    files: list[FileReport] = field(default_factory=list)
    packets: int = 0
    bytes: int = 0  # captured bytes of all packets
    not_ip: int = 0
    flows: int = 0
    evicted_flows: int = 0
    sessions: int = 0
    started: float = field(default_factory=time.perf_counter)
    elapsed_s: float = 0.0

    @property
    def weirds(self) -> Weirds:
        total = Weirds()
        for f in self.files:
            total.merge(f.weirds)
        return total

    @property
    def failed_files(self) -> list[FileReport]:
        return [f for f in self.files if not f.ok]


ProgressHook = Callable[[ScanSummary, FileReport | None], None]


def iter_batches(
    paths: Iterable[str | Path],
    *,
    engine: str = "fast",
    summary: ScanSummary | None = None,
    on_progress: ProgressHook | None = None,
    batch_packets: int = 1 << 16,
) -> Iterator[PacketBatch]:
    """Decoded batches of every capture under ``paths``, counting into ``summary``."""
    read = get_engine(engine)
    summary = summary if summary is not None else ScanSummary(engine=engine)
    summary.engine = engine
    for path in expand_paths(paths):
        report = FileReport(str(path))
        summary.files.append(report)
        try:
            for batch in read(path, report, batch_packets=batch_packets):
                status = batch.packets["status"]
                report.weirds.add_statuses(status)
                summary.not_ip += int(np.count_nonzero(status == PacketStatus.NOT_IP))
                summary.packets += len(batch)
                summary.bytes += int(batch.packets["caplen"].sum())
                yield batch
                if on_progress:
                    on_progress(summary, report)
        except ReaderError as exc:
            report.error = str(exc)
        for w in report.warnings:
            log.warning("%s", w)
        if report.error:
            log.error("%s", report.error)
        if on_progress:
            on_progress(summary, None)
    summary.elapsed_s = time.perf_counter() - summary.started


def scan_flows(
    paths: Iterable[str | Path],
    *,
    engine: str = "fast",
    settings: FlowSettings | None = None,
    summary: ScanSummary | None = None,
    on_progress: ProgressHook | None = None,
) -> Iterator[np.ndarray]:
    """FLOW record arrays for all captures under ``paths``, as flows close.

    Files are read in the order given (directories in sorted order) into one flow table, so
    a flow that continues from one rotated capture file into the next stays one flow.
    """
    summary = summary if summary is not None else ScanSummary(engine=engine)
    table = FlowTable(settings)
    for batch in iter_batches(paths, engine=engine, summary=summary, on_progress=on_progress):
        for closed in table.update(batch):
            summary.flows += len(closed)
            yield closed
    last = table.flush()
    summary.flows += len(last)
    summary.evicted_flows = table.evicted
    summary.elapsed_s = time.perf_counter() - summary.started
    # In slices, so that a consumer's per-chunk copies stay small at the end of a big scan.
    for start in range(0, max(len(last), 1), FLUSH_SLICE):
        yield last[start : start + FLUSH_SLICE]


def capture_sha256(path: str | Path, _cache: dict[str, str] = {}) -> str:  # noqa: B006
    """SHA-256 of a capture file as stored (compressed or not), for evidence; once per path."""
    key = str(path)
    if key not in _cache:
        digest = hashlib.sha256()
        with open(key, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                digest.update(block)
        _cache[key] = digest.hexdigest()
    return _cache[key]


def scan_sessions(
    paths: Iterable[str | Path],
    *,
    engine: str = "fast",
    summary: ScanSummary | None = None,
    on_progress: ProgressHook | None = None,
) -> Iterator[StratumSession]:
    """Mining sessions in all captures under ``paths``, as their connections end.

    Only the packets of flows that speak JSON (or Stratum V2) reach Python: a kernel picks
    them (``detect.streams``), the stream collector puts their bytes in order, and the Stratum
    tracker reads the messages. Each session's evidence names its capture and its SHA-256.
    """
    # Imported here: the detectors bring pydantic, YAML and the fingerprints, 0.15 s of
    # start-up that `poolwatch flows` does not need.
    from .detect.stratum import StratumTracker
    from .detect.streams import StreamCollector

    collector = StreamCollector()
    tracker = StratumTracker()
    summary = summary if summary is not None else ScanSummary(engine=engine)
    batches = iter_batches(paths, engine=engine, summary=summary, on_progress=on_progress)

    def finished(found: Iterable[StratumSession]) -> Iterator[StratumSession]:
        for session in found:
            path = session.evidence.get("capture")
            if path and "capture_sha256" not in session.evidence:
                session.evidence["capture_sha256"] = capture_sha256(path)
            summary.sessions += 1
            yield session

    for batch in batches:
        for event in collector.update(batch):
            yield from finished(tracker.feed(event))
    for event in collector.flush():
        yield from finished(tracker.feed(event))
    yield from finished(tracker.flush())
    summary.elapsed_s = time.perf_counter() - summary.started
