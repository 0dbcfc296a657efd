"""The library entry point: many capture paths → decoded batches → flow records.

A scan is a stream. :func:`iter_batches` yields decoded :class:`PacketBatch` values file by
file (later stages, such as detection, consume these); :func:`scan_flows` runs them through
one :class:`FlowTable` and yields closed flow records as they close. Problems with a file
are recorded in its :class:`FileReport` and the scan moves on to the next file.
"""

from __future__ import annotations

import hashlib
import logging
import os
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
from .kernels.headers import tally_packets
from .readers.source import expand_paths
from .records import PacketBatch, PacketStatus, FileReport, Weirds

if TYPE_CHECKING:
    from .detect.behaviour import BehaviourScorer
    from .detect.contacts import ContactJudge, ContactSettings
    from .detect.tls import TlsObserver

log = logging.getLogger(__name__)

FLUSH_SLICE = 1 << 16
NS = 1_000_000_000
MAX_POOL_ADDRESSES = 1 << 16  # a sensor's learnt pool addresses (bounded memory)


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
                counts = np.zeros(len(PacketStatus), np.int64)
                summary.bytes += int(tally_packets(batch.packets, counts))
                report.weirds.add_counts(counts)
                summary.not_ip += int(counts[PacketStatus.NOT_IP])
                summary.packets += len(batch)
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


def _cpus() -> int:
    """CPUs this process may run on (its affinity mask, not the machine's count)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux
        return os.cpu_count() or 1


def capture_sha256(path: str | Path) -> str:
    """SHA-256 of a capture file as stored (compressed or not), for evidence."""
    digest = hashlib.sha256()
    _read_into(digest, path, 0)
    return digest.hexdigest()


def _read_into(digest: Any, path: str | Path, offset: int, until: int | None = None) -> None:
    """Feed ``digest`` the file's bytes from ``offset`` to ``until`` (None: its end)."""
    with open(path, "rb") as fh:
        fh.seek(offset)
        left = None if until is None else until - offset
        while left is None or left > 0:
            block = fh.read(1 << 20 if left is None else min(1 << 20, left))
            if not block:
                break
            digest.update(block)
            if left is not None:
                left -= len(block)


class _Hashing:
    """One capture's hash under way. The main thread queues the parts in file order; the
    hash thread runs :meth:`read`, :meth:`update` and :meth:`finish` in that order."""

    __slots__ = ("digest", "failed", "queued_to", "result")

    def __init__(self) -> None:
        self.digest = hashlib.sha256()
        self.queued_to = 0  # file offset up to which bytes have been queued for the digest
        self.result: Future[str] | None = None  # the hex digest, once the file has ended
        self.failed: OSError | None = None  # a read failed: no hash (finish raises it)

    def read(self, path: str, offset: int, until: int | None = None) -> None:
        if self.failed is None:
            try:
                _read_into(self.digest, path, offset, until)
            except OSError as exc:
                self.failed = exc

    def update(self, view: memoryview) -> None:
        if self.failed is None:
            self.digest.update(view)

    def finish(self, path: str, offset: int) -> str:
        self.read(path, offset)
        if self.failed is not None:
            raise self.failed
        return self.digest.hexdigest()


class CaptureHashes:
    """SHA-256 of captures, for evidence and the store's capture rows.

    The hash reads the reader's own mapped windows of a plain file (``PacketBatch.
    file_offset``) as the scan passes them, so the file is read once, not twice (a capture
    larger than memory is read from disk once; on a file in the page cache it is no faster,
    the hash being compute-bound); the bytes before the window where hashing started, and
    those after the last window (a damaged file's rest), are read from disk, and so is a
    compressed file as a whole. The work runs in one background
    thread, in order: hashlib releases the GIL, so on a second core it costs no wall time.
    At most ``MAX_QUEUED`` windows wait for it (memory stays bounded when it lags).
    ``background=False`` (the default when the process may run on one CPU only): the same
    work, in the same order, done at once in the caller's thread.

    ``every_capture=False``: a capture is hashed from the moment something in it is worth
    reporting (:meth:`start`), so captures without any are not hashed. ``True`` (the lead
    store keys a row by every capture scanned): each from its first window.
    """

    MAX_QUEUED = 4

    def __init__(self, *, every_capture: bool = False, background: bool | None = None) -> None:
        self.every_capture = every_capture
        # With one CPU to run on (taskset, a container's cpuset) the thread buys nothing: its
        # switches with the scan cost 0.25-0.8 s of CPU over a 3.5 GB capture (3-8 % of the
        # one-core scan, docs/performance.md); the hash is then done in the scan's thread.
        self.background = background if background is not None else _cpus() > 1
        self._pool: ThreadPoolExecutor | None = None
        self._jobs: dict[str, _Hashing] = {}
        self._queued: deque[Future[None]] = deque()
        self._current: str | None = None  # the capture the last batch offered came from

    def _submit(self, fn: Callable[..., Any], *args: Any) -> Future[Any]:
        if not self.background:
            done: Future[Any] = Future()
            try:
                done.set_result(fn(*args))
            except Exception as exc:  # kept for .result(), as the thread would (Ctrl-C is not)
                done.set_exception(exc)
            return done
        if self._pool is None:
            self._pool = ThreadPoolExecutor(1, thread_name_prefix="poolwatch-sha256")
        return self._pool.submit(fn, *args)

    def offer(self, batch: PacketBatch) -> None:
        """A batch the scan read: its window goes to the hash of its capture, if that is
        being hashed. Call it for every batch of a file scan, in order, before the detectors
        see it: a batch of another capture ends the previous capture's hash."""
        path = batch.path
        if path != self._current:
            if self._current is not None:
                self.end(self._current)  # the scan has left it
            self._current = path
        job = self._jobs.get(path)
        if job is None:
            if not (self.every_capture and batch.file_offset is not None):
                return
            job = self._jobs[path] = _Hashing()
        base = batch.file_offset
        if job.result is not None or base is None:
            return
        end = base + len(batch.buf)
        if end <= job.queued_to:
            return  # a window already queued (it holds several batches)
        if base > job.queued_to:  # hashing started after these bytes went by
            self._queued.append(self._submit(job.read, path, job.queued_to, base))
            job.queued_to = base
        view = memoryview(batch.buf)[job.queued_to - base :]  # keeps the window mapped
        self._queued.append(self._submit(job.update, view))
        job.queued_to = end
        while len(self._queued) > self.MAX_QUEUED:
            self._queued.popleft().result()
        while self._queued and self._queued[0].done():
            self._queued.popleft().result()

    def start(self, path: str) -> None:
        """Something in ``path`` will be reported: hash it. The capture being read is hashed
        from its windows as they come; any other, from disk at once."""
        if path not in self._jobs:
            self._jobs[path] = _Hashing()
            if path != self._current:
                self.end(path)

    def end(self, path: str) -> None:
        """No more windows of ``path`` will come: its hash is finished from disk (the bytes
        no window held) in the background. Starts one not begun."""
        job = self._jobs.get(path)
        if job is None:
            job = self._jobs[path] = _Hashing()
        if job.result is None:
            job.result = self._submit(job.finish, path, job.queued_to)
        if path == self._current:
            self._current = None

    def ready(self, path: str) -> bool:
        job = self._jobs.get(path)
        return job is not None and job.result is not None and job.result.done()

    def get(self, path: str) -> str:
        """The capture's SHA-256 (waits for it; ends its hashing if still going). Raises
        OSError when the file could not be read."""
        self.end(path)
        return self._jobs[path].result.result()  # type: ignore[union-attr]

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
    hashes: CaptureHashes | None = None,
) -> Iterator[StratumSession | PoolContact]:
    """Mining sessions and pool contacts in all captures under ``paths``.

    Sessions come as their connections end; pool contacts at the end of the scan (a
    :class:`DetectionPipeline` in its offline mode). Every record's evidence names its capture
    and the capture's SHA-256 (``hashes``: the caller's :class:`CaptureHashes`, which it
    closes itself).
    """
    summary = summary if summary is not None else ScanSummary(engine=engine)
    pipe = DetectionPipeline(contacts=contacts, contact_settings=contact_settings,
                             probes=probes, flow_settings=flow_settings,
                             block_times=block_times, summary=summary, hashes=hashes)
    try:
        for batch in iter_batches(paths, engine=engine, summary=summary,
                                  on_progress=on_progress):
            yield from pipe.feed(batch)
        summary.dns_answers = pipe.dns.stats["answers"]
        yield from pipe.flush()
    finally:
        pipe.close()
    summary.elapsed_s = time.perf_counter() - summary.started


class DetectionPipeline:
    """Decoded batches in, mining sessions and pool contacts out: the detect stage of a scan
    and of a sensor.

    Only the packets of flows that can carry Stratum reach Python: a kernel picks them
    (``detect.streams``), the stream collector puts their bytes in order, and the Stratum
    tracker reads the messages; the DNS answers (``detect.dns``) name the pool host of
    sessions whose messages do not. With ``contacts``, the flow table, the TLS observer and
    the behaviour model run too, and flows attributed to mining by other evidence come out
    as :class:`PoolContact` records (``detect.contacts``); a flow that is a plaintext session
    is not reported twice.

    Offline (``streaming=False``) contacts are decided at :meth:`flush`, with everything the
    captures hold. A sensor (``streaming=True``) cannot wait for the end: a flow's contact is
    decided once every detector has let go of it: no evidence for ``settle_ns`` (longer
    than the longest idle timeout, the behaviour model's, so its verdict is in) and no longer
    open in the flow table; memory stays bounded by the detectors' own limits and the
    judge's pending flows. :meth:`tick` moves the clock on when no packet comes.

    Long connections (a miner stays connected for weeks) are reported in parts while they
    last: every ``report_every_s`` (streaming only) a session or contact still going is
    reported as it stands, marked ``evidence["part"] = "interim"``, and counts afresh from
    there; the parts cover consecutive times, so leads never count shares twice.

    ``hash_captures``: records name their capture file and its SHA-256 (computed in a
    background thread from the batches' own bytes, records wait for it); a live source (path
    ``live:<interface>``) has no file and is never hashed. ``hashes``: a
    :class:`CaptureHashes` shared with the caller (the CLI's store, which records every
    capture by its hash), else the pipeline's own.
    """

    def __init__(
        self,
        *,
        contacts: bool = True,
        contact_settings: ContactSettings | None = None,
        probes: Mapping[tuple[str, int], Any] | None = None,
        flow_settings: FlowSettings | None = None,
        block_times: Mapping[str, np.ndarray] | None = None,
        streaming: bool = False,
        hash_captures: bool = True,
        hashes: CaptureHashes | None = None,
        summary: ScanSummary | None = None,
        report_every_s: float = 3600.0,
    ) -> None:
        # Imported here: the detectors bring pydantic, YAML and the fingerprints, 0.15 s of
        # start-up that `poolwatch flows` does not need; those of pool contacts (the
        # behaviour model and its kernels, TLS: ~20 ms) only when contacts are asked for.
        from .detect.dns import PassiveDns, pool_name_matcher
        from .detect.stratum import StratumTracker
        from .detect.streams import StreamCollector, start_rules

        self.summary = summary if summary is not None else ScanSummary()
        self.streaming = streaming
        self.hash_captures = hash_captures
        self.dns = dns = PassiveDns()
        self.tracker = tracker = StratumTracker(host_of=dns.host_of)
        self.fp = tracker.fp
        dns.prefer = pool_name_matcher(self.fp)  # an address shared by several names: the pool's
        self.collector = StreamCollector(rules=start_rules(self.fp))
        self.judge: ContactJudge | None = None
        self.table: FlowTable | None = None
        self.behaviour: BehaviourScorer | None = None
        self.tls: TlsObserver | None = None
        if contacts:
            from .detect.behaviour import BehaviourScorer
            from .detect.contacts import ContactJudge
            from .detect.tls import TlsObserver

            self.judge = ContactJudge(self.fp, contact_settings, dns=dns, probes=probes)
            self.table = FlowTable(flow_settings)
            # block_times (coin -> sorted ns): the behaviour model checks pool pushes with them
            self.behaviour = BehaviourScorer(block_times=block_times)
            # TLS flows are read only when their SNI names a pool, or when they have none
            # (then the certificate may): the rest are dropped at their ClientHello
            self.tls = TlsObserver(want=self.judge.tls_wanted)
        idle = [self.collector.idle_ns]
        if self.table is not None and self.behaviour is not None:
            idle += [self.table.idle_ns, self.behaviour.idle_ns]
        sweep = self.table.sweep_ns if self.table is not None else 10 * NS
        self.settle_ns = max(idle) + 2 * sweep + 5 * NS
        self._next_settle = 0
        self.report_every_ns = int(report_every_s * NS)
        self._next_peek = 0
        self._own_hashes = hashes is None
        self._hashes = hashes if hashes is not None else CaptureHashes()
        self._waiting: deque[StratumSession | PoolContact] = deque()  # capture being hashed
        self._opened = 0
        self._path: str | None = None
        self._now = 0
        # pool addresses learnt, least recently learnt first, at most MAX_POOL_ADDRESSES
        self._pool_addrs: dict[str, None] = {}
        self._dns_seen = 0
        self._servers_seen = 0
        self._pool_version = 0

    # -- in ---------------------------------------------------------------------------------

    def feed(self, batch: PacketBatch) -> list[StratumSession | PoolContact]:
        """One decoded batch; the records it finished (the batch may be reused after)."""
        if len(batch) == 0:
            return []
        self._path = batch.path
        if self.hash_captures and not batch.path.startswith("live:"):
            self._hashes.offer(batch)  # first: a capture that changed ends its hash
        self._now = max(self._now, int(batch.packets["ts_ns"][-1]))
        self.dns.update(batch)  # first: a session's pool may be named by an answer in it
        events = self.collector.update(batch)
        if self.collector.stats["conversations"] > self._opened:  # may hold a session
            self._opened = self.collector.stats["conversations"]
            self._hash(batch.path)
        judge, table, behaviour, tls = self.judge, self.table, self.behaviour, self.tls
        if judge is not None and table is not None and behaviour is not None:
            for closed in table.update(batch):
                self.summary.flows += len(closed)
                judge.closed_flows(closed, batch.path)
            behaviour.update(batch)
            if tls is not None:
                tls.update(batch)
                for key, info in tls.drain():
                    judge.tls_seen(key, info, batch.path)
                behaviour.note_names(tls.declined())  # non-pool names of flows
            judge.behaviour_seen(behaviour.expire(int(batch.packets["ts_ns"][-1])),
                                 batch.path)
        found: list[StratumSession | PoolContact] = []
        for event in events:
            found += self._sessions(self.tracker.feed(event))
        if self.streaming:
            found += self._settle(self._now)
        return list(self._finished(found))

    def tick(self, now_ns: int) -> list[StratumSession | PoolContact]:
        """No packet for a while (a quiet link): move the clock to ``now_ns`` and finish what
        has been idle long enough."""
        self._now = now_ns = max(self._now, now_ns)
        found: list[StratumSession | PoolContact] = []
        for event in self.collector.expire(now_ns):
            found += self._sessions(self.tracker.feed(event))
        if self.judge is not None and self.table is not None and self.behaviour is not None:
            closed = self.table.expire(now_ns)
            self.summary.flows += len(closed)
            self.judge.closed_flows(closed, self._path)
            self.judge.behaviour_seen(self.behaviour.expire(now_ns), self._path)
        if self.streaming:
            found += self._settle(now_ns, force=True)
        return list(self._finished(found))

    def flush(self) -> list[StratumSession | PoolContact]:
        """End of input: every open flow finished and judged; waits for capture hashes."""
        found: list[StratumSession | PoolContact] = []
        for event in self.collector.flush():
            found += self._sessions(self.tracker.feed(event))
        found += self._sessions(self.tracker.flush())
        judge, table, behaviour, tls = self.judge, self.table, self.behaviour, self.tls
        if judge is not None and table is not None and behaviour is not None:
            last = table.flush()
            self.summary.flows += len(last)
            judge.closed_flows(last, self._path)  # the capture each flow closed in
            if tls is not None:
                for key, info in tls.flush():
                    judge.tls_seen(key, info, self._path)
                behaviour.note_names(tls.declined())
            judge.behaviour_seen(behaviour.flush(), self._path)
            out = list(self._finished(found))
            out += self._finished(judge.finish(), wait=True)
        else:
            out = list(self._finished(found, wait=True))
        self.summary.dns_answers = self.dns.stats["answers"]
        self.summary.elapsed_s = time.perf_counter() - self.summary.started
        return out

    def close(self) -> None:
        if self._own_hashes:
            self._hashes.close()

    def pool_addresses(self) -> set[str]:
        """Pool server addresses known so far: what pool names resolved to in DNS, servers
        that were sent a Stratum client method (a session under way), and the pool ends of
        sessions and contacts reported (for a sensor's capture prefilter: the rest of such a
        connection, continuation segments included, then passes in full)."""
        self._sync_pool_addresses()
        return set(self._pool_addrs)

    @property
    def version_of_pool_addresses(self) -> int:
        """Goes up whenever :meth:`pool_addresses` would answer differently (cheap to poll)."""
        self._sync_pool_addresses()
        return self._pool_version

    def _sync_pool_addresses(self) -> None:
        if self.tracker.stats["servers"] != self._servers_seen:
            # servers sent a client method of some dialect: a session may be under way
            self._servers_seen = self.tracker.stats["servers"]
            for ip in self.tracker.servers:
                self._add_pool_address(ip)
        if len(self.dns.preferred) != self._dns_seen:
            self._dns_seen = len(self.dns.preferred)
            for ip in self.dns.preferred:
                self._add_pool_address(ip)

    # -- out --------------------------------------------------------------------------------

    def _hash(self, path: str) -> None:
        if self.hash_captures and not path.startswith("live:"):
            self._hashes.start(path)

    def _settle(self, now_ns: int, force: bool = False) -> list[StratumSession | PoolContact]:
        """Streaming: contacts of the flows every detector has let go of; interim reports of
        long sessions and contacts."""
        judge, table = self.judge, self.table
        if now_ns < self._next_settle and not force:
            return []
        self._next_settle = now_ns + (table.sweep_ns if table is not None else 10 * NS)
        found: list[StratumSession | PoolContact] = []
        found += self._sessions(self.tracker.report_open(self.report_every_ns))
        if judge is None or table is None:
            return found
        if self.behaviour is not None and now_ns >= self._next_peek:
            # the behaviour model judges a flow when it ends; a long one is looked at as it
            # stands, so that its contact can be reported while it goes on
            self._next_peek = now_ns + self.report_every_ns // 4
            judge.behaviour_seen([v for v in self.behaviour.peek()
                                  if v.last_ts_ns - v.first_ts_ns >= self.report_every_ns],
                                 self._path)
        found += judge.report_open(self.report_every_ns)
        quiet = [key for key, last in judge.pending() if now_ns - last > self.settle_ns]
        if quiet:
            still_open = _open_keys(table.open_rows(), quiet)
            found += judge.settle([k for k in quiet if k not in still_open], now_ns,
                                  forget_ns=2 * self.settle_ns)
        return found

    def _sessions(self, sessions: list[StratumSession]) -> list[StratumSession]:
        """Sessions as the tracker finishes them, shown to the contact judge at once (before
        it settles anything: a plaintext session's flow is not also a contact); encrypted
        ones (Stratum V2 under Noise) become its evidence instead of records."""
        if self.judge is None or not sessions:
            return sessions
        return [s for s in sessions if not self.judge.session_seen(s)]

    def _finished(self, found: Iterable[StratumSession | PoolContact],
                  wait: bool = False) -> Iterator[StratumSession | PoolContact]:
        """Records out in order once their capture's hash is known; while it is being
        computed (in the background) they wait, and the scan goes on."""
        for record in found:
            path = record.evidence.get("capture")
            if path is not None:
                self._hash(path)
            self._waiting.append(record)
        while self._waiting:
            record = self._waiting[0]
            path = record.evidence.get("capture")
            if (path and self.hash_captures and not path.startswith("live:")
                    and "capture_sha256" not in record.evidence):
                if not (wait or self._hashes.ready(path)):
                    return
                try:
                    record.evidence["capture_sha256"] = self._hashes.get(path)
                except OSError as exc:  # gone before it was hashed (a ring buffer's rotation)
                    log.error("%s: cannot hash the capture for evidence: %s", path,
                              exc.strerror or exc)
                    record.evidence["capture_sha256"] = None
                    record.evidence["capture_sha256_error"] = str(exc.strerror or exc)
            self._waiting.popleft()
            if isinstance(record, StratumSession):
                self.summary.sessions += 1
            else:
                self.summary.contacts += 1
            if self.streaming:
                self._learn(record)
            yield record

    def _learn(self, record: StratumSession | PoolContact) -> None:
        dest = getattr(record, "dest_ip", None)
        if dest:
            self._add_pool_address(dest)

    def _add_pool_address(self, ip: str) -> None:
        if ip in self._pool_addrs:
            return
        self._pool_addrs[ip] = None
        if len(self._pool_addrs) > MAX_POOL_ADDRESSES:
            del self._pool_addrs[next(iter(self._pool_addrs))]
        self._pool_version += 1


def _open_keys(rows: np.ndarray, keys: list[Any]) -> set[Any]:
    """Which of the direction-free flow ``keys`` (``detect.records.flow_key``) are among the
    open FLOW ``rows``: one vectorised pass over the table per settle, whatever its size."""
    if len(rows) == 0 or not keys:
        return set()
    a_lo, b_lo = rows["src_lo"], rows["dst_lo"]
    a_port = rows["src_port"].astype(np.uint64)
    b_port = rows["dest_port"].astype(np.uint64)
    swap = (a_lo > b_lo) | ((a_lo == b_lo) & (a_port > b_port))
    lo1, lo2 = np.where(swap, b_lo, a_lo), np.where(swap, a_lo, b_lo)
    p1, p2 = np.where(swap, b_port, a_port), np.where(swap, a_port, b_port)
    with np.errstate(over="ignore"):
        table_h = (lo1 * np.uint64(0x9E3779B97F4A7C15)) ^ (lo2 * np.uint64(0xC2B2AE3D27D4EB4F)) \
            ^ (p1 << np.uint64(16)) ^ p2
    wanted: dict[int, Any] = {}
    for key in keys:
        (_, lo_a, port_a), (_, lo_b, port_b) = key[3], key[4]
        if (lo_a, port_a) > (lo_b, port_b):
            lo_a, port_a, lo_b, port_b = lo_b, port_b, lo_a, port_a
        h = ((lo_a * 0x9E3779B97F4A7C15) ^ (lo_b * 0xC2B2AE3D27D4EB4F) ^ (port_a << 16)
             ^ port_b) & 0xFFFFFFFFFFFFFFFF
        wanted.setdefault(h, []).append(key)
    hit = np.isin(table_h, np.fromiter(wanted, np.uint64, len(wanted)))
    return {k for h in np.unique(table_h[hit]).tolist() for k in wanted[int(h)]}
