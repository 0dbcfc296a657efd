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
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
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
    dns_answers: int = 0  # A/AAAA answers learnt by the passive DNS map (scan_sessions)
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


def capture_sha256(path: str | Path) -> str:
    """SHA-256 of a capture file as stored (compressed or not), for evidence."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


class CaptureHashes:
    """SHA-256 of captures, each computed in a background thread from the moment the scan
    finds something in it worth reading: hashlib releases the GIL, so on a second core the
    hash (about 0.45 s per 700 MB) costs no wall time. On one core it costs what hashing in
    line would. Captures in which nothing was selected are not hashed."""

    def __init__(self) -> None:
        self._pool: ThreadPoolExecutor | None = None
        self._futures: dict[str, Future[str]] = {}

    def start(self, path: str) -> None:
        if path not in self._futures:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(1, thread_name_prefix="poolwatch-sha256")
            self._futures[path] = self._pool.submit(capture_sha256, path)

    def ready(self, path: str) -> bool:
        return path in self._futures and self._futures[path].done()

    def get(self, path: str) -> str:
        self.start(path)
        return self._futures[path].result()

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)


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
    The DNS answers in the captures (``detect.dns``) name the pool host of sessions whose
    messages do not, as of each session's first packet.
    """
    # Imported here: the detectors bring pydantic, YAML and the fingerprints, 0.15 s of
    # start-up that `poolwatch flows` does not need.
    from .detect.dns import PassiveDns, pool_name_matcher
    from .detect.stratum import StratumTracker
    from .detect.streams import StreamCollector, start_rules

    dns = PassiveDns()
    tracker = StratumTracker(host_of=dns.host_of)
    dns.prefer = pool_name_matcher(tracker.fp)  # an address shared by several names: the pool's
    collector = StreamCollector(rules=start_rules(tracker.fp))
    summary = summary if summary is not None else ScanSummary(engine=engine)
    batches = iter_batches(paths, engine=engine, summary=summary, on_progress=on_progress)

    hashes = CaptureHashes()
    waiting: deque[StratumSession] = deque()  # sessions whose capture is still being hashed

    def finished(found: Iterable[StratumSession], wait: bool = False) -> Iterator[StratumSession]:
        """Sessions out in order once their capture's hash is known; while it is being
        computed (in the background) they wait, and the scan goes on."""
        for session in found:
            if (path := session.evidence.get("capture")) is not None:
                hashes.start(path)
            waiting.append(session)
        while waiting:
            session = waiting[0]
            path = session.evidence.get("capture")
            if path and "capture_sha256" not in session.evidence:
                if not (wait or hashes.ready(path)):
                    return
                session.evidence["capture_sha256"] = hashes.get(path)
            waiting.popleft()
            summary.sessions += 1
            yield session

    opened = 0
    try:
        for batch in batches:
            dns.update(batch)  # first: a session's pool may be named by an answer in this batch
            events = collector.update(batch)
            if collector.stats["conversations"] > opened:  # this capture may hold a session
                opened = collector.stats["conversations"]
                hashes.start(batch.path)
            for event in events:
                yield from finished(tracker.feed(event))
        summary.dns_answers = dns.stats["answers"]
        for event in collector.flush():
            yield from finished(tracker.feed(event))
        yield from finished(tracker.flush(), wait=True)
    finally:
        hashes.close()
    summary.elapsed_s = time.perf_counter() - summary.started
