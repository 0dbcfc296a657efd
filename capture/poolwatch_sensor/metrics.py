"""The sensor's Prometheus metrics (prometheus_client, one registry per sensor).

Counters only go up, so ``rate()`` over them is right across scrapes; the kernel's and the
collector's cumulative counters are turned into increments here (:meth:`Metrics.advance`).
Labels are a small fixed set (source, kind, reason), never addresses: cardinality stays
bounded however long the sensor runs.
"""

from __future__ import annotations

import threading
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

PREFIX = "poolwatch_sensor"


class Metrics:
    def __init__(self, sensor_name: str = "", version: str = "") -> None:
        self.registry = r = CollectorRegistry()
        p = PREFIX
        self.info = Gauge(f"{p}_info", "The sensor's name and poolwatch version (always 1).",
                          ["name", "version"], registry=r)
        self.info.labels(sensor_name, version).set(1)
        self.packets = Counter(f"{p}_packets", "Packets read, by source (live, files).",
                               ["source"], registry=r)
        self.bytes = Counter(f"{p}_bytes", "Captured bytes read, by source.", ["source"],
                             registry=r)
        self.kernel_packets = Counter(
            f"{p}_kernel_packets", "Packets the kernel's socket received (after the BPF "
            "prefilter).", registry=r)
        self.kernel_drops = Counter(
            f"{p}_kernel_drops", "Packets the kernel dropped because the ring was full.",
            registry=r)
        self.link_packets = Counter(
            f"{p}_link_packets", "Packets on the capture interface since capture started (its "
            "rx+tx counters: a packet socket sees both directions).", registry=r)
        self.prefilter_ratio = Gauge(
            f"{p}_prefilter_ratio", "Packets passed by the prefilter / packets on the link "
            "since capture started (NaN until both are known).", registry=r)
        self.prefilter_ratio.set(float("nan"))
        self.prefilter_updates = Counter(f"{p}_prefilter_updates", "Prefilter replacements "
                                         "(new pool addresses learnt).", registry=r)
        self.pool_addresses = Gauge(f"{p}_pool_addresses", "Pool addresses in the prefilter.",
                                    registry=r)
        self.files = Counter(f"{p}_files", "Capture files processed, by result (ok, "
                             "truncated, error).", ["result"], registry=r)
        self.files_pending = Gauge(f"{p}_files_pending", "Capture files waiting in the watched "
                                   "directory (including the one being written).", registry=r)
        self.flow_datagrams = Counter(f"{p}_flow_datagrams", "NetFlow/IPFIX datagrams received.",
                                      registry=r)
        self.flow_records = Counter(f"{p}_flow_records", "Flow records decoded.", registry=r)
        self.flow_kernel_drops = Counter(f"{p}_flow_kernel_drops", "Flow datagrams the kernel "
                                         "dropped (the socket's receive buffer was full).",
                                         registry=r)
        self.flow_bad = Counter(f"{p}_flow_bad", "Flow datagrams or records not used, by reason "
                                "(malformed, truncated, unknown_template...).", ["reason"],
                                registry=r)
        self.detections = Counter(f"{p}_detections", "Detections found, by kind.", ["kind"],
                                  registry=r)
        self.spool_batches = Gauge(f"{p}_spool_batches", "Batches in the spool (not yet "
                                   "accepted by the API).", registry=r)
        self.spool_bytes = Gauge(f"{p}_spool_bytes", "Bytes in the spool.", registry=r)
        self.spool_full = Gauge(f"{p}_spool_full", "1 while the spool is at its max_bytes and "
                                "new detections are being refused.", registry=r)
        self.dropped = Counter(f"{p}_dropped_records", "Detections that could not be spooled "
                               "(spool full or unwritable) and are lost, by reason.",
                               ["reason"], registry=r)
        self.rejected = Counter(f"{p}_rejected_batches", "Batches the API refused (4xx); kept "
                                "in spool/rejected/.", registry=r)
        self.pushed_batches = Counter(f"{p}_pushed_batches", "Batches the API accepted.",
                                      registry=r)
        self.pushed_records = Counter(f"{p}_pushed_records", "Records in accepted batches.",
                                      registry=r)
        self.replayed = Counter(f"{p}_replayed_batches", "Accepted batches the API had already "
                                "stored (a re-send after a crash or a lost answer).",
                                registry=r)
        self.push_errors = Counter(f"{p}_push_errors", "Failed push attempts, by reason.",
                                   ["reason"], registry=r)
        self.push_seconds = Histogram(f"{p}_push_seconds", "Latency of accepted pushes.",
                                      registry=r, buckets=(.005, .01, .025, .05, .1, .25, .5,
                                                           1, 2.5, 5, 10, 30))
        self._last: dict[str, float] = {}
        self._lock = threading.Lock()

    def advance(self, name: str, counter: Any, total: float) -> None:
        """Add to ``counter`` what a cumulative ``total`` (kernel, collector) grew by since
        the last call under ``name``; a total that went down (a restarted counter) counts
        from zero again."""
        with self._lock:
            last = self._last.get(name, 0.0)
            delta = total - last if total >= last else total
            self._last[name] = total
        if delta > 0:
            counter.inc(delta)

    def serve(self, host: str, port: int):
        """Serve ``/metrics`` on host:port (a daemon thread); returns (server, thread)."""
        return start_http_server(port, addr=host, registry=self.registry)

    def text(self) -> str:
        from prometheus_client import generate_latest

        return generate_latest(self.registry).decode()
