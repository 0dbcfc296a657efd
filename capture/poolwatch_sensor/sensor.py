"""The sensor: sources → detection → spool → lead API, until SIGTERM.

Each configured source runs in its own thread with its own state, so a slow or quiet
source never holds up another, and the thread that reads packets is the one that feeds
them to the pipeline (no copies between threads; readers reuse their arrays):

- ``live``: :class:`~poolwatch_sensor.packet_socket.PacketSocket` (or the pyshark engine)
  → a streaming :class:`~poolwatch.scan.DetectionPipeline`; ticks it when the link is quiet
  and replaces the kernel's prefilter when the pipeline learns new pool addresses;
- ``files``: :class:`~poolwatch_sensor.rotate.FileSource` over a ring-buffer directory
  → its own streaming pipeline (with capture hashes);
- ``flows``: :class:`~poolwatch_sensor.collector.FlowCollector` (NetFlow v5/v9, IPFIX)
  → pool contacts.

Before any source opens, the packet kernels are compiled or loaded (``poolwatch.warmup``):
a new install's first batch would otherwise spend tens of seconds compiling while the ring
overflows. Records go to the :class:`~poolwatch_sensor.push.Outbox` (spool, then the pusher
thread).
The main thread cuts due batches, publishes gauges, pings systemd's watchdog while every
source is alive, and waits for a signal. SIGTERM or SIGINT: the sources stop reading (the
file being read is finished), each pipeline is flushed, everything is spooled, the pusher
gets ``drain_seconds`` to deliver, and the process exits 0; what was not delivered is in
the spool for the next start. A second signal cuts the file being read short.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import threading
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .config import SensorConfig
from .logs import fields
from .metrics import Metrics
from .push import Outbox, Pusher, Spool

log = logging.getLogger("poolwatch.sensor")

NS = 1_000_000_000
SOURCE_JOIN_SECONDS = 15.0  # a source that does not stop by then is left behind (logged)
WARM_UP_USEC = 300_000_000  # systemd's start timeout while the kernels compile (5 min)


def _sd_notify(message: str) -> None:
    """systemd's notify protocol (Type=notify, WatchdogSec): a datagram to $NOTIFY_SOCKET."""
    address = os.environ.get("NOTIFY_SOCKET")
    if not address:
        return
    if address.startswith("@"):
        address = "\0" + address[1:]
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
            s.connect(address)
            s.sendall(message.encode())
    except OSError as exc:
        log.debug("sd_notify failed", extra=fields(error=str(exc)))


def _kinds(rows: list[dict]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for row in rows:
        kind = str(row.get("event_type") or "unknown")
        counts[kind] = counts.get(kind, 0) + 1
    return counts


class _Source(threading.Thread):
    """A source's thread: ``body(stop, abort)`` runs to the end; a crash is kept for the
    main thread, which stops the sensor with exit status 1 (systemd restarts it)."""

    def __init__(self, name: str, body: Callable[[threading.Event, threading.Event], None],
                 stop: threading.Event, abort: threading.Event) -> None:
        super().__init__(name=f"poolwatch-{name}", daemon=True)
        self.source = name
        self.body = body
        self.stop_event, self.abort_event = stop, abort
        self.error: BaseException | None = None
        self.heartbeat = time.monotonic()

    def run(self) -> None:
        try:
            self.body(self.stop_event, self.abort_event)
        except BaseException as exc:  # noqa: BLE001 - kept for the main thread to act on
            self.error = exc
            from poolwatch.errors import PoolwatchError

            known = isinstance(exc, (PoolwatchError, OSError))  # says what is wrong itself
            log.error("source %s failed: %s", self.source, exc, extra=fields(
                source=self.source,
                **({} if known else {"exc": "".join(traceback.format_exception(exc))[-4000:]})))


class Sensor:
    """One sensor process. ``pipeline_factory(hash_captures=...)`` builds the detection
    pipelines (tests and embedders may pass their own settings through it)."""

    def __init__(self, config: SensorConfig, *,
                 pipeline_factory: Callable[..., Any] | None = None) -> None:
        from poolwatch import __version__

        self.config = config
        self.metrics = Metrics(config.sensor.name, __version__)
        self.stop_event = threading.Event()
        self.abort_event = threading.Event()
        self._signals = 0
        self.pipeline_factory = pipeline_factory or self._pipeline
        self.spool = Spool(config.spool.directory, config.spool.max_bytes, self.metrics)
        api = config.api
        verify: bool | str = str(api.ca_file) if api.ca_file else api.verify
        self.pusher = Pusher(self.spool, api.url, config.api_key(), timeout=api.timeout_seconds,
                             verify=verify, retry_min=api.retry_min_seconds,
                             retry_max=api.retry_max_seconds, metrics=self.metrics)
        self.outbox = Outbox(self.spool, self.pusher, sensor_name=config.sensor.name,
                             batch_size=api.batch_size, flush_seconds=api.flush_seconds,
                             metrics=self.metrics)
        self.sources: list[_Source] = []
        self.beats: dict[str, float] = {}
        self.stats: dict[str, Any] = {}
        self.metrics_server = None
        # pool addresses the live pipeline learnt, for the flow collector's judge
        self.pool_addresses: frozenset[str] = frozenset()
        self.pool_version = 0

    # ----------------------------------------------------------------- plumbing
    @staticmethod
    def _pipeline(*, hash_captures: bool):
        from poolwatch.scan import DetectionPipeline

        return DetectionPipeline(contacts=True, streaming=True, hash_captures=hash_captures)

    def emit(self, records: list, source: str) -> None:
        """Records a source finished: counted, then into the outbox (thread-safe)."""
        if not records:
            return
        rows = [r.as_dict() if hasattr(r, "as_dict") else r for r in records]
        kinds = _kinds(rows)
        for kind, n in kinds.items():
            self.metrics.detections.labels(kind).inc(n)
        self.outbox.add(rows)
        log.info("detections", extra=fields(source=source, **kinds))

    def beat(self, source: str) -> None:
        self.beats[source] = time.monotonic()

    def stop(self, *_: Any) -> None:
        """Stop reading (signal handler, or any thread). A second call also cuts the file
        being read short."""
        self._signals += 1
        if self._signals > 1:
            self.abort_event.set()
        self.stop_event.set()

    # ------------------------------------------------------------------- sources
    def _warm_up(self, live: bool) -> None:
        """The packet kernels compiled (or loaded from numba's cache) before any source opens:
        after an install or upgrade compiling takes tens of seconds, during which a live
        capture's ring would overflow. systemd is told (STATUS, a longer start timeout) and
        READY follows; what the pipeline finds in the warm-up capture is thrown away."""
        from poolwatch.kernels import capture_records, cold_cache, headers
        from poolwatch.warmup import warm_up

        cold = cold_cache(capture_records.walk_pcap, headers.tally_packets)
        if cold:
            log.warning("compiling the packet kernels for this machine (first start after an "
                        "install or upgrade: tens of seconds); capture starts after")
            _sd_notify(f"STATUS=compiling packet kernels\nEXTEND_TIMEOUT_USEC={WARM_UP_USEC}")
        try:
            if live:
                from .packet_socket import warm_up_ring

                warm_up_ring()
            done = warm_up(lambda: self.pipeline_factory(hash_captures=False))
        except OSError as exc:  # no temporary directory: the first batch compiles instead
            log.warning("cannot compile the packet kernels ahead of capture: %s", exc)
            return
        log.info("packet kernels ready", extra=fields(seconds=round(done.seconds, 3),
                                                      compiled=cold))

    def _live(self, stop: threading.Event, abort: threading.Event) -> None:
        cap = self.config.capture
        pipe = self.pipeline_factory(hash_captures=False)
        source = self._open_live(pipe)
        self.stats["live"] = stats = {"packets": 0, "bytes": 0, "records": 0,
                                      "prefilter_updates": 0}
        version = pipe.version_of_pool_addresses
        last_tick = last_stats = last_filter = time.monotonic()
        last_packet = time.monotonic()
        link_start = _link_packets(cap.interface or "")
        try:
            while not stop.is_set():
                for batch in _batches(source, stop):
                    self.beat("live")
                    if batch is not None and len(batch):
                        n = len(batch)
                        nbytes = int(batch.packets["caplen"].sum())
                        stats["packets"] += n
                        stats["bytes"] += nbytes
                        self.metrics.packets.labels("live").inc(n)
                        self.metrics.bytes.labels("live").inc(nbytes)
                        last_packet = time.monotonic()
                        found = pipe.feed(batch)
                    else:
                        found = []
                    now = time.monotonic()
                    if now - last_packet >= cap.tick_seconds and now - last_tick >= \
                            cap.tick_seconds:
                        last_tick = now
                        found = found + pipe.tick(time.time_ns())
                    if found:
                        stats["records"] += len(found)
                        self.emit(found, "live")
                    if cap.prefilter and hasattr(source, "set_filter") and \
                            now - last_filter >= 1.0 and \
                            pipe.version_of_pool_addresses != version:
                        last_filter = now
                        version = pipe.version_of_pool_addresses
                        self._update_prefilter(source, pipe)
                        stats["prefilter_updates"] += 1
                    if pipe.version_of_pool_addresses != self.pool_version:
                        self.pool_addresses = frozenset(pipe.pool_addresses())
                        self.pool_version = pipe.version_of_pool_addresses
                    if now - last_stats >= 1.0:
                        last_stats = now
                        self._kernel_stats(source, cap.interface or "", link_start)
                    if stop.is_set():
                        break
        finally:
            try:
                self._kernel_stats(source, cap.interface or "", link_start)
                self.emit(pipe.flush(), "live")
            finally:
                source.close()
                pipe.close()

    def _open_live(self, pipe):
        cap = self.config.capture
        if cap.engine == "pyshark":
            from .pyshark_live import PysharkLiveCapture

            # tshark's filter is set once, at start (pool addresses learnt later do not
            # reach it; the packet engine replaces its filter as they come)
            source = PysharkLiveCapture(cap.interface or "", bpf=self._expression(pipe, None),
                                        timeout_ms=cap.timeout_ms)
            log.info("live capture started (pyshark)", extra=fields(
                interface=cap.interface, prefilter=cap.prefilter))
            return source
        from .packet_socket import PacketSocket

        sock = PacketSocket(cap.interface or "", bpf=None, snaplen=cap.snaplen,
                            block_size=cap.block_size, block_count=cap.block_count,
                            timeout_ms=cap.timeout_ms)
        if cap.prefilter:
            self._update_prefilter(sock, pipe)
        log.info("live capture started", extra=fields(
            interface=cap.interface, linktype=getattr(sock, "linktype", None),
            prefilter=getattr(sock, "expression", None) is not None,
            filter_instructions=getattr(sock, "filter_instructions", None),
            ring_bytes=cap.block_size * cap.block_count))
        return sock

    def _expression(self, pipe, sock) -> str | None:
        if not self.config.capture.prefilter:
            return None
        from poolwatch.records import LINKTYPE_ETHERNET, LINKTYPE_RAW

        from . import prefilter

        addrs = pipe.pool_addresses()
        linktype = LINKTYPE_ETHERNET
        if sock is not None:
            linktype = LINKTYPE_RAW if getattr(sock, "cooked", False) else getattr(
                sock, "linktype", LINKTYPE_ETHERNET)
        if hasattr(prefilter, "prefilter_program"):  # the largest address set that fits
            expr, _ = prefilter.prefilter_program(pipe.fp, addrs, linktype=linktype,
                                                  snaplen=self.config.capture.snaplen)
            return expr
        return prefilter.prefilter_expression(pipe.fp, addrs)

    def _update_prefilter(self, source, pipe) -> None:
        from poolwatch.errors import PoolwatchError

        try:
            expr = self._expression(pipe, source)
            source.set_filter(expr)
        except (PoolwatchError, OSError) as exc:
            log.error("cannot replace the capture prefilter; the previous one stays",
                      extra=fields(error=str(exc)))
            return
        n = len(pipe.pool_addresses())
        self.metrics.prefilter_updates.inc()
        self.metrics.pool_addresses.set(n)
        log.info("capture prefilter set", extra=fields(
            pool_addresses=n, instructions=getattr(source, "filter_instructions", None)))

    def _kernel_stats(self, source, interface: str, link_start: int | None) -> None:
        """Kernel counters into the metrics, and the prefilter ratio: packets the filter
        passed / packets on the interface, since capture started (the two counters' rates
        give it over any window)."""
        try:
            st = source.stats()
        except OSError:
            return
        self.stats.setdefault("live", {}).update(kernel=st)
        m = self.metrics
        m.advance("kernel_packets", m.kernel_packets, st.get("packets", 0))
        m.advance("kernel_drops", m.kernel_drops, st.get("drops", 0))
        link = _link_packets(interface)
        if link is None or link_start is None:
            return
        m.advance("link_packets", m.link_packets, link - link_start)
        if link > link_start:
            m.prefilter_ratio.set(min(1.0, st.get("packets", 0) / (link - link_start)))

    def _files(self, stop: threading.Event, abort: threading.Event) -> None:
        from .rotate import FileSource

        pipe = self.pipeline_factory(hash_captures=True)
        src = FileSource(self.config.files, pipe, emit=self.emit, sync=self.outbox.sync,
                         metrics=self.metrics, tick_seconds=self.config.capture.tick_seconds)
        self.stats["files"] = src.stats
        log.info("watching a capture directory", extra=fields(
            directory=str(self.config.files.directory), pattern=self.config.files.pattern,
            settle_seconds=self.config.files.settle_seconds,
            inotify=src.watch._inotify is not None))
        beat = threading.Thread(target=self._beat_files, args=(src, stop), daemon=True)
        beat.start()
        try:
            src.run(stop, abort)
        finally:
            try:
                src.finish()
            finally:
                pipe.close()

    def _beat_files(self, src, stop: threading.Event) -> None:
        while not stop.wait(0.5):
            self.beats["files"] = src.heartbeat

    def _flows(self, stop: threading.Event, abort: threading.Event) -> None:
        from .collector import FlowCollector  # helper "flow"'s collector

        fl = self.config.flows
        coll = FlowCollector(fl.host, fl.port)
        log.info("flow collector listening", extra=fields(host=fl.host, port=fl.port))
        self.stats["flows"] = coll.stats
        known = 0
        try:
            while not stop.is_set():
                self.beat("flows")
                self.emit(coll.poll(0.2), "flows")
                self._flow_stats(coll)
                if self.pool_version != known:  # the packet pipeline learnt pool addresses
                    known = self.pool_version
                    coll.set_known_pool_addresses(set(self.pool_addresses))
            self.emit(coll.flush(), "flows")
        finally:
            self._flow_stats(coll)
            coll.close()

    def _flow_stats(self, coll) -> None:
        from poolwatch.readers.flowrecords import ERROR_REASONS

        st = dict(coll.stats)
        m = self.metrics
        m.advance("flow_datagrams", m.flow_datagrams, st.get("datagrams", 0))
        m.advance("flow_records", m.flow_records, st.get("records", 0))
        m.advance("flow_kernel_drops", m.flow_kernel_drops, st.get("kernel_drops", 0) or 0)
        for reason in (*ERROR_REASONS, "unknown_template"):
            if reason in st:
                m.advance(f"flow_{reason}", m.flow_bad.labels(reason), st[reason])

    # ------------------------------------------------------------------------ run
    def run(self) -> int:
        """Run until stopped; 0 after a clean stop, 1 when a source failed."""
        cfg = self.config
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, self.stop)
            signal.signal(signal.SIGINT, self.stop)
        if cfg.metrics.port:
            self.metrics_server = self.metrics.serve(cfg.metrics.host, cfg.metrics.port)
        log.info("sensor starting", extra=fields(
            name=cfg.sensor.name, sources=cfg.sources(), api=cfg.api.url,
            spool=str(cfg.spool.directory), spooled_batches=self.spool.batches,
            metrics=f"{cfg.metrics.host}:{cfg.metrics.port}" if cfg.metrics.port else None))
        self.pusher.start()
        if {"live", "files"} & set(cfg.sources()):
            self._warm_up("live" in cfg.sources())
        bodies = {"live": self._live, "files": self._files, "flows": self._flows}
        for name in cfg.sources():
            self.beat(name)
            thread = _Source(name, bodies[name], self.stop_event, self.abort_event)
            self.sources.append(thread)
            thread.start()
        _sd_notify("READY=1\nSTATUS=capturing")
        watchdog = int(os.environ.get("WATCHDOG_USEC", "0") or 0) / 1e6
        failed = False
        while not self.stop_event.wait(0.2):
            self.outbox.poll()
            if any(t.error is not None for t in self.sources):
                failed = True
                self.stop_event.set()
                break
            if watchdog:
                now = time.monotonic()
                if all(now - self.beats.get(t.source, now) < watchdog / 2 for t in self.sources
                       if t.is_alive()):
                    _sd_notify("WATCHDOG=1")
        return self._shutdown(failed)

    def _shutdown(self, failed: bool) -> int:
        started = time.monotonic()
        _sd_notify("STOPPING=1\nSTATUS=flushing")
        log.info("sensor stopping: flushing detections")
        deadline = time.monotonic() + SOURCE_JOIN_SECONDS
        for thread in self.sources:
            thread.join(max(0.0, deadline - time.monotonic()))
            if thread.is_alive():
                self.abort_event.set()
                thread.join(2.0)
            if thread.is_alive():
                log.error("source did not stop in time; its open detections are lost",
                          extra=fields(source=thread.source))
            failed = failed or thread.error is not None
        delivered = self.outbox.close(self.config.api.drain_seconds)
        log.info("sensor stopped", extra=fields(
            seconds=round(time.monotonic() - started, 3), delivered=delivered,
            spooled_batches=self.spool.batches, pushed=self.pusher.stats,
            dropped=self.outbox.dropped, failed=failed))
        if self.metrics_server is not None:
            server = self.metrics_server[0]
            server.shutdown()
            server.server_close()
        for h in logging.getLogger().handlers:
            h.flush()
        return 1 if failed else 0


def _batches(source, stop: threading.Event):
    """A live source's batches, and None whenever a wait timed out (the caller ticks). The
    packet socket yields empty batches itself; other engines end their iterator instead."""
    if hasattr(source, "set_filter"):
        yield from source.batches(empty_on_timeout=True)
        return
    wait = getattr(source, "timeout_ms", 1000) / 1000
    while not stop.is_set():
        started = time.monotonic()
        got = False
        for batch in source.batches():
            got = True
            yield batch
        if getattr(source, "error", None):  # the engine died (tshark exited): restart us
            raise RuntimeError(f"live capture ({type(source).__name__}): {source.error}")
        if not got and time.monotonic() - started < wait / 2:
            stop.wait(wait)  # an iterator that ends at once must not spin
        yield None


def _link_packets(interface: str) -> int | None:
    """Packets the interface has seen (rx + tx: a packet socket sees both), or None."""
    if not interface:
        return None
    base = Path("/sys/class/net") / interface / "statistics"
    try:
        return int((base / "rx_packets").read_text()) + int((base / "tx_packets").read_text())
    except (OSError, ValueError):
        return None
