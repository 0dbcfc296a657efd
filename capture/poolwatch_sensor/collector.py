"""A NetFlow v5/v9 and IPFIX collector: UDP datagrams in, pool contacts out.

:class:`FlowCollector` owns one UDP socket with a large receive buffer. Python has no
``recvmmsg``, so :meth:`FlowCollector.poll` drains the socket with ``recvfrom_into`` into one
reused buffer (no allocation per datagram), then hands the whole batch to the numpy decoder
(``poolwatch.readers.flowrecords``) and the judge (``poolwatch.detect.flowrecords``): per
datagram there is one system call and a few set headers read in Python, per record none.
Contacts are decided as their flows go quiet (see the judge for when).

``stats`` is one dict, updated in place after every poll (a caller may keep a reference):
datagrams, bytes and records decoded, every bad-input reason of the decoder (``truncated``,
``unsupported_version``, ``bad_length``, ``bad_set_length``, ``bad_set_id``,
``bad_template``, ``zero_length_field``, ``unknown_template``...), their sum ``malformed``
(``unknown_template`` is not malformed input and is not in it), the judge's counters
(``flows_open``, ``contacts``...), and the kernel's counters for the socket read from
``/proc/net/udp`` (``kernel_drops``: datagrams the kernel dropped because the receive buffer
was full; ``rx_queue_bytes``), at most once a second.
"""

from __future__ import annotations

import errno
import logging
import os
import select
import socket
import sys
import time
from typing import Any, Self

from poolwatch.detect.contacts import ContactSettings
from poolwatch.detect.flowrecords import FlowContactJudge, FlowRecordSettings
from poolwatch.detect.records import PoolContact
from poolwatch.fingerprints import Fingerprints
from poolwatch.readers.flowrecords import ERROR_REASONS, FlowDecoder

log = logging.getLogger(__name__)

MAX_DATAGRAM = 65535
SO_RCVBUFFORCE_LINUX = 33  # not in Python's socket module: past net.core.rmem_max (CAP_NET_ADMIN)


class FlowCollector:
    """Listen for flow records on ``host:port`` (UDP; port 0 picks a free one, see
    :attr:`address`) and turn them into pool contacts.

    ``rcvbuf`` is asked of the kernel with ``SO_RCVBUFFORCE`` (root) or ``SO_RCVBUF``
    (capped by ``net.core.rmem_max``); :attr:`rcvbuf` is what was granted. ``batch_bytes``
    bounds one decode batch; a batch smaller than ``batch_min`` datagrams waits up to
    ``batch_wait_s`` for more.
    """

    def __init__(self, host: str = "0.0.0.0", port: int = 2055, *,
                 fp: Fingerprints | None = None,
                 contact_settings: ContactSettings | None = None,
                 settings: FlowRecordSettings | None = None,
                 rcvbuf: int = 64 << 20, batch_bytes: int = 4 << 20,
                 batch_min: int = 512, batch_wait_s: float = 0.01,
                 decoder: FlowDecoder | None = None) -> None:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.sock = socket.socket(family, socket.SOCK_DGRAM)
        try:
            force = getattr(socket, "SO_RCVBUFFORCE", SO_RCVBUFFORCE_LINUX if sys.platform
                            .startswith("linux") else None)
            try:
                if force is None:
                    raise PermissionError
                self.sock.setsockopt(socket.SOL_SOCKET, force, rcvbuf)
            except PermissionError:
                self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
            self.sock.bind((host, port))
        except OSError as exc:
            self.sock.close()
            raise OSError(exc.errno, f"flow collector on {host}:{port}: {exc.strerror}") from None
        self.sock.setblocking(False)
        self.rcvbuf = self.sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF)
        self.address: tuple[str, int] = self.sock.getsockname()[:2]
        self._inode = os.fstat(self.sock.fileno()).st_ino
        self._proc = "/proc/net/udp6" if family == socket.AF_INET6 else "/proc/net/udp"
        self.decoder = decoder or FlowDecoder(source=f"flow collector {self.address[0]}:"
                                                     f"{self.address[1]}")
        self.judge = FlowContactJudge(fp, contact_settings, settings)
        self._buf = bytearray(batch_bytes + MAX_DATAGRAM)
        self._view = memoryview(self._buf)
        self._batch_bytes = batch_bytes
        self.batch_min, self.batch_wait_s = batch_min, batch_wait_s
        self._kernel_read = -1.0
        self._contacts: list[PoolContact] = []  # decided while draining (table full)
        self.stats: dict[str, Any] = {}
        self._refresh_stats(force=True)

    # -- the loop ----------------------------------------------------------------------------
    def poll(self, timeout_s: float = 0.2) -> list[PoolContact]:
        """Wait up to ``timeout_s`` for datagrams, decode and judge everything that arrives
        until the socket is empty (or ``timeout_s`` of work has passed), and return the
        contacts decided by now."""
        out: list[PoolContact] = []
        start = time.monotonic()
        deadline = start + max(timeout_s, 0.0)
        try:
            ready, _, _ = select.select([self.sock], [], [], max(timeout_s, 0.0))
        except (OSError, ValueError):  # closed underneath us
            return out
        if ready:
            while True:
                n = self._drain()
                if n == 0 or time.monotonic() >= deadline:
                    break
        now = time.monotonic()
        out.extend(self._contacts)
        self._contacts = []
        out.extend(self.judge.expire(now))
        self._refresh_stats()
        return out

    def _drain(self) -> int:
        """Read until the socket is empty or the batch buffer is full, waiting up to
        ``batch_wait_s`` for more while the batch is small (numpy's cost per batch is paid
        once for many datagrams; a few ms mean nothing to flow records); decode the batch."""
        view, limit = self._view, self._batch_bytes
        recv = self.sock.recvfrom_into
        batch: list[tuple[memoryview, str]] = []
        off = 0
        waited_until = time.monotonic() + self.batch_wait_s
        while off < limit:
            try:
                n, addr = recv(view[off:], MAX_DATAGRAM)
            except (BlockingIOError, InterruptedError):
                left = waited_until - time.monotonic()
                if len(batch) >= self.batch_min or left <= 0:
                    break
                try:
                    if not select.select([self.sock], [], [], left)[0]:
                        break
                except (OSError, ValueError):
                    break
                continue
            except OSError as exc:
                if exc.errno in (errno.EAGAIN, errno.EWOULDBLOCK):
                    break
                raise
            batch.append((view[off:off + n], addr[0]))
            off += n
        if batch:
            now = time.monotonic()
            records = self.decoder.decode(batch, now)
            found = self.judge.update(records, now)
            self._contacts.extend(found)
        return len(batch)

    def flush(self) -> list[PoolContact]:
        """End of run: read what is queued, give up on data sets still waiting for their
        template (counted as unknown_template), and decide every open flow."""
        while self._drain():
            pass
        self.decoder.flush()
        out = self._contacts + self.judge.flush()
        self._contacts = []
        self._refresh_stats(force=True)
        return out

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def set_known_pool_addresses(self, addresses) -> None:
        """Pool addresses learnt elsewhere (the packet pipeline's ``pool_addresses()``)."""
        self.judge.set_known_pool_addresses(addresses)

    # -- counters -----------------------------------------------------------------------------
    def _refresh_stats(self, force: bool = False) -> None:
        st = self.stats
        st.update(self.decoder.stats)
        st["malformed"] = sum(self.decoder.stats[r] for r in ERROR_REASONS)
        st.update({k: v for k, v in self.judge.stats.items() if k != "records_seen"})
        now = time.monotonic()
        if force or now - self._kernel_read >= 1.0:
            self._kernel_read = now
            drops, queued = self.kernel_counters()
            if drops is not None:
                st["kernel_drops"] = drops
                st["rx_queue_bytes"] = queued
        st["rcvbuf_bytes"] = self.rcvbuf

    def kernel_counters(self) -> tuple[int | None, int | None]:
        """(drops, bytes queued) of this socket from /proc/net/udp[6]; None when unreadable."""
        try:
            with open(self._proc) as fh:
                next(fh, None)
                for line in fh:
                    cols = line.split()
                    if len(cols) >= 13 and cols[9] == str(self._inode):
                        queued = int(cols[4].split(":")[1], 16)
                        return int(cols[-1]), queued
        except (OSError, ValueError, IndexError):
            pass
        return None, None
