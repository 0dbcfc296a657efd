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
from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .detect.records import PoolContact, StratumSession
from .engines import get_engine
from .errors import ReaderError
from .flows import FlowSettings, FlowTable
from .readers.source import expand_paths
from .records import PacketBatch, PacketStatus, FileReport, Weirds

if TYPE_CHECKING:
    from .detect.contacts import ContactSettings

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
    contacts: int = 0
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
    """Mining sessions in all captures under ``paths``, as their connections end (the
    plaintext Stratum part of :func:`scan_detections`, without pool contacts)."""
    for record in scan_detections(paths, engine=engine, summary=summary,
                                  on_progress=on_progress, contacts=False):
        if isinstance(record, StratumSession):
            yield record


def scan_detections(
    paths: Iterable[str | Path],
    *,
    engine: str = "fast",
    summary: ScanSummary | None = None,
    on_progress: ProgressHook | None = None,
    contacts: bool = True,
    contact_settings: ContactSettings | None = None,
    probes: Mapping[tuple[str, int], Any] | None = None,
    flow_settings: FlowSettings | None = None,
    block_times: Mapping[str, np.ndarray] | None = None,
) -> Iterator[StratumSession | PoolContact]:
    """Mining sessions and pool contacts in all captures under ``paths``.

    Sessions come as their connections end. Only the packets of flows that can carry
    Stratum reach Python: a kernel picks them (``detect.streams``), the stream collector puts
    their bytes in order, and the Stratum tracker reads the messages. The DNS answers in the
    captures (``detect.dns``) name the pool host of sessions whose messages do not.

    With ``contacts``, the flow table runs too, and flows attributed to mining by other
    evidence (pool names resolved in DNS, listed pool addresses, Stratum V2's encrypted
    handshake, probe results) come out as :class:`PoolContact` records at the end of the
    scan (``detect.contacts``); a flow that is a plaintext session is not reported twice.
    Every record's evidence names its capture and the capture's SHA-256.
    """
    # Imported here: the detectors bring pydantic, YAML and the fingerprints, 0.15 s of
    # start-up that `poolwatch flows` does not need.
    from .detect.behaviour import BehaviourScorer
    from .detect.contacts import ContactJudge
    from .detect.dns import PassiveDns, pool_name_matcher
    from .detect.stratum import StratumTracker
    from .detect.streams import StreamCollector, start_rules
    from .detect.tls import TlsObserver

    dns = PassiveDns()
    tracker = StratumTracker(host_of=dns.host_of)
    dns.prefer = pool_name_matcher(tracker.fp)  # an address shared by several names: the pool's
    collector = StreamCollector(rules=start_rules(tracker.fp))
    judge = (ContactJudge(tracker.fp, contact_settings, dns=dns, probes=probes)
             if contacts else None)
    table = FlowTable(flow_settings) if contacts else None
    # block_times (coin -> sorted ns): the behaviour model checks pool pushes against them
    behaviour = BehaviourScorer(block_times=block_times) if contacts else None
    # TLS flows are read only when their SNI names a pool, or when they have none (then the
    # certificate may): the rest are dropped at their ClientHello
    tls = TlsObserver(want=judge.tls_wanted) if judge is not None else None
    summary = summary if summary is not None else ScanSummary(engine=engine)
    batches = iter_batches(paths, engine=engine, summary=summary, on_progress=on_progress)

    hashes = CaptureHashes()
    waiting: deque[StratumSession | PoolContact] = deque()  # capture still being hashed

    def finished(found: Iterable[StratumSession | PoolContact],
                 wait: bool = False) -> Iterator[StratumSession | PoolContact]:
        """Records out in order once their capture's hash is known; while it is being
        computed (in the background) they wait, and the scan goes on."""
        for record in found:
            if (judge is not None and isinstance(record, StratumSession)
                    and judge.session_seen(record)):
                continue  # encrypted Stratum V2: evidence for a pool contact
            if (path := record.evidence.get("capture")) is not None:
                hashes.start(path)
            waiting.append(record)
        while waiting:
            record = waiting[0]
            path = record.evidence.get("capture")
            if path and "capture_sha256" not in record.evidence:
                if not (wait or hashes.ready(path)):
                    return
                record.evidence["capture_sha256"] = hashes.get(path)
            waiting.popleft()
            if isinstance(record, StratumSession):
                summary.sessions += 1
            else:
                summary.contacts += 1
            yield record

    opened, path = 0, None
    try:
        for batch in batches:
            path = batch.path
            dns.update(batch)  # first: a session's pool may be named by an answer in this batch
            events = collector.update(batch)
            if collector.stats["conversations"] > opened:  # this capture may hold a session
                opened = collector.stats["conversations"]
                hashes.start(batch.path)
            if table is not None and judge is not None and behaviour is not None:
                for closed in table.update(batch):
                    summary.flows += len(closed)
                    judge.closed_flows(closed, batch.path)
                behaviour.update(batch)
                if tls is not None:
                    tls.update(batch)
                    for key, info in tls.drain():
                        judge.tls_seen(key, info, batch.path)
                    behaviour.note_names(tls.declined())  # non-pool names of flows
                judge.behaviour_seen(behaviour.expire(int(batch.packets["ts_ns"][-1])),
                                     batch.path)
            for event in events:
                yield from finished(tracker.feed(event))
        summary.dns_answers = dns.stats["answers"]
        for event in collector.flush():
            yield from finished(tracker.feed(event))
        yield from finished(tracker.flush())
        if table is not None and judge is not None and behaviour is not None:
            last = table.flush()
            summary.flows += len(last)
            judge.closed_flows(last, path)  # the capture each flow closed in
            if tls is not None:
                for key, info in tls.flush():
                    judge.tls_seen(key, info, path)
                behaviour.note_names(tls.declined())
            judge.behaviour_seen(behaviour.flush(), path)
            yield from finished(judge.finish())
        yield from finished((), wait=True)
    finally:
        hashes.close()

    summary.elapsed_s = time.perf_counter() - summary.started
