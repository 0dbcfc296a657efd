"""Live capture through the kernel's own packet socket: AF_PACKET with a TPACKET_V3 ring.

Why not libpcap at run time: libpcap's Linux back end is this same ring, but it hands packets
over one callback at a time; here a numba kernel (``poolwatch.kernels.tpacket``) copies whole
blocks into a :class:`~poolwatch.records.PacketBatch` and the readers' decoder runs on it, so
no Python runs per packet and the detection pipeline sees exactly what a capture file gives.
libpcap is still used, in-process, to compile filter expressions (``prefilter.py``).

How the ring is used: the kernel fills fixed-size blocks (``block_size`` × ``block_count``)
with packets and hands a block over when it is full or ``block_timeout_ms`` after its first
packet. :meth:`PacketSocket.batches` waits for the next block with ``poll``, copies every
handed-over block it can fit into one batch, gives those blocks straight back to the kernel
(so the ring is free again before the pipeline works on the batch), and decodes the batch.
The ring is the buffer that absorbs the pipeline's pauses: 128 blocks of 1 MB by default,
about one second of a busy 1 Gbit/s link. A block is handed over after ``block_timeout_ms``
even when it is not full, so on a quiet link a pause is absorbed for ``block_count`` ×
``block_timeout_ms`` (12.8 s by default), which is why the ring has many small blocks rather
than a few large ones. Packets the kernel could not place because the ring was full are
counted as ``drops`` by ``PACKET_STATISTICS``.

The filter (classic BPF, ``SO_ATTACH_FILTER``) is attached before the socket is bound, so no
unfiltered packet slips in, and can be replaced at any time (:meth:`set_filter`): the kernel
swaps it atomically; packets already in the ring stay. The filter's return value is the
snap length, so without an expression a one-instruction "accept snaplen bytes" filter runs.

Limits: Linux only; the ring is read in host byte order (little-endian hosts); one socket,
one core (no ``PACKET_FANOUT``); timestamps are the kernel's software receive times.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import errno
import fcntl
import logging
import mmap
import os
import select
import socket
import struct
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Self

import numpy as np

from poolwatch.decode import decode_batch
from poolwatch.errors import ConfigError
from poolwatch.kernels import tpacket
from poolwatch.records import (
    LINKTYPE_ETHERNET,
    LINKTYPE_LINUX_SLL,
    LINKTYPE_RAW,
    PACKET,
    PacketBatch,
)

from .prefilter import accept_all, compile_filter

# linux/if_packet.h, linux/if_ether.h, asm-generic/socket.h
SOL_PACKET = 263
PACKET_ADD_MEMBERSHIP = 1
PACKET_RX_RING = 5
PACKET_STATISTICS = 6
PACKET_VERSION = 10
PACKET_IGNORE_OUTGOING = 23
PACKET_MR_PROMISC = 1
TPACKET_V3 = 2
ETH_P_ALL = 0x0003
SO_ATTACH_FILTER = 26
SIOCGIFHWADDR = 0x8927
SIOCGIFINDEX = 0x8933
CLONE_NEWNET = 0x40000000
# ARPHRD_* (linux/if_arp.h): link types whose frames start with an Ethernet header, or with IP
ARPHRD_ETHER = 1
ARPHRD_LOOPBACK = 772
ARPHRD_RAW_IP = {0xFFFE, 0xFFFF, 519, 776, 778, 823}  # NONE, VOID, RAWIP, SIT, IPGRE, IP6GRE

log = logging.getLogger(__name__)

DEFAULT_SNAPLEN = 262_144
DEFAULT_BLOCK_SIZE = 1 << 20
DEFAULT_BLOCK_COUNT = 128
DEFAULT_BLOCK_TIMEOUT_MS = 100
DEFAULT_BATCH_PACKETS = 1 << 16
DEFAULT_BATCH_BYTES = 8 << 20


def warm_up_ring() -> None:
    """Compile (or load) the ring kernels before capture starts (``poolwatch.warmup``): they
    run once on a ring of one block the kernel still owns, with the argument types a
    socket's own calls have, so numba compiles exactly what :meth:`PacketSocket._take` runs."""
    block_size = 1 << 12
    ring = np.zeros(block_size, np.uint8)
    buf = np.zeros(block_size + tpacket.MAX_GROWTH, np.uint8)
    out = np.zeros(1, PACKET)
    tpacket.block_ready(ring, block_size, 0)
    tpacket.walk_blocks(ring, block_size, 1, 0, 1, False, LINKTYPE_ETHERNET, buf, 0, out, 0, 0)


def _setns(name: str) -> None:
    """Move the calling thread into network namespace ``name`` (``ip netns`` naming)."""
    libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
    path = Path("/run/netns") / name
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError as exc:
        raise ConfigError(f"network namespace {name!r}: cannot open {path}: {exc.strerror}") from None
    try:
        if libc.setns(fd, CLONE_NEWNET) != 0:
            err = ctypes.get_errno()
            raise ConfigError(f"network namespace {name!r}: setns failed: {os.strerror(err)}")
    finally:
        os.close(fd)


def _in_netns(netns: str | None, make):
    """``make()`` run in namespace ``netns``: sockets belong to the namespace they were made
    in, for life, so a short-lived thread enters it, makes them and exits; the rest of the
    process never changes namespace."""
    if netns is None:
        return make()
    result: dict[str, object] = {}

    def run() -> None:
        try:
            _setns(netns)
            result["value"] = make()
        except BaseException as exc:  # noqa: BLE001 - re-raised in the caller's thread
            result["error"] = exc

    thread = threading.Thread(target=run, name=f"netns-{netns}")
    thread.start()
    thread.join()
    if "error" in result:
        raise result["error"]  # type: ignore[misc]
    return result["value"]


def _hardware_type(sock: socket.socket, interface: str) -> int:
    """The interface's ARPHRD type, asked through the socket (so in the socket's namespace)."""
    ifreq = struct.pack("16s16x", interface.encode())
    out = fcntl.ioctl(sock.fileno(), SIOCGIFHWADDR, ifreq)
    return struct.unpack_from("H", out, 16)[0]


class PacketSocket:
    """Packets from one interface as decoded :class:`PacketBatch` values (path ``live:<iface>``).

    ``bpf`` is a filter expression (tcpdump syntax, e.g. from ``prefilter_expression``) or
    None for everything. ``cooked`` None picks the capture mode from the interface type:
    Ethernet and loopback frames as they are (LINKTYPE_ETHERNET), tunnels without a link
    header as raw IP (LINKTYPE_RAW), anything else through a ``SOCK_DGRAM`` socket with a Linux
    cooked header rebuilt per packet (LINKTYPE_LINUX_SLL); True forces cooked mode.
    ``netns`` opens the socket inside a network namespace (``ip netns`` name).
    """

    def __init__(
        self,
        interface: str,
        *,
        bpf: str | None = None,
        snaplen: int = DEFAULT_SNAPLEN,
        block_size: int = DEFAULT_BLOCK_SIZE,
        block_count: int = DEFAULT_BLOCK_COUNT,
        timeout_ms: int = 1000,
        block_timeout_ms: int = DEFAULT_BLOCK_TIMEOUT_MS,
        promiscuous: bool = False,
        ignore_outgoing: bool = False,
        cooked: bool | None = None,
        netns: str | None = None,
        batch_packets: int = DEFAULT_BATCH_PACKETS,
        batch_bytes: int = DEFAULT_BATCH_BYTES,
    ) -> None:
        if sys.byteorder != "little":
            raise ConfigError("the packet socket reads the ring as little-endian; use the "
                              "pyshark engine on this machine")
        if block_size < mmap.PAGESIZE or block_size % mmap.PAGESIZE:
            raise ConfigError(f"block_size {block_size} must be a positive multiple of the "
                              f"page size ({mmap.PAGESIZE})")
        if block_count < 2:
            raise ConfigError(f"block_count {block_count} must be at least 2")
        if not 64 <= snaplen <= 262_144:
            raise ConfigError(f"snaplen {snaplen} must be between 64 and 262144")
        self.interface = interface
        self.path = f"live:{interface}"
        self.snaplen = snaplen
        self.block_size = block_size
        self.block_count = block_count
        self.timeout_ms = timeout_ms
        self._totals = {"packets": 0, "drops": 0, "freeze": 0}
        self._dirty = 0  # rows of the record array written by the last batch
        self._frames = 0  # frames copied so far (PACKET["frame"] counts per socket)
        self._next_block = 0
        self._sock: socket.socket | None = None
        self._ring_map: mmap.mmap | None = None
        self.bad_blocks = 0
        self.expression: str | None = None
        self.filter_instructions = 0
        sock, hwtype = _in_netns(netns, lambda: self._open(cooked))
        self._sock = sock
        try:
            self.cooked = cooked if cooked is not None else hwtype not in (
                ARPHRD_ETHER, ARPHRD_LOOPBACK, *ARPHRD_RAW_IP)
            if self.cooked:
                self.linktype = LINKTYPE_LINUX_SLL
            elif hwtype in ARPHRD_RAW_IP:
                self.linktype = LINKTYPE_RAW
            else:
                self.linktype = LINKTYPE_ETHERNET
            if cooked is None and self.cooked:  # the ETH_P_ALL socket was SOCK_RAW: reopen
                sock.close()
                self._sock = sock = _in_netns(netns, lambda: self._open(True))[0]
            self.set_filter(bpf)
            self._setup_ring(block_timeout_ms)
            if promiscuous:
                mreq = struct.pack("iHH8s", self._ifindex, PACKET_MR_PROMISC, 0, b"")
                sock.setsockopt(SOL_PACKET, PACKET_ADD_MEMBERSHIP, mreq)
            if ignore_outgoing:
                sock.setsockopt(SOL_PACKET, PACKET_IGNORE_OUTGOING, 1)
            sock.bind((interface, ETH_P_ALL))  # packets flow from here on, through the filter
            self._poll = select.poll()
            self._poll.register(sock.fileno(), select.POLLIN | select.POLLERR)
            max_frames = block_size // 64 + 1  # a frame takes at least 64 bytes of a block
            self._out = np.zeros(max(batch_packets, max_frames), PACKET)
            self._buf = np.zeros(max(batch_bytes, block_size + max_frames * tpacket.MAX_GROWTH),
                                 np.uint8)
            self._release = np.zeros(block_count, np.int64)
        except BaseException:
            self.close()
            raise

    def _open(self, cooked: bool | None) -> tuple[socket.socket, int]:
        kind = socket.SOCK_DGRAM if cooked else socket.SOCK_RAW
        # protocol 0: nothing is queued until bind(), after the filter and ring are in place
        try:
            sock = socket.socket(socket.AF_PACKET, kind, 0)
        except PermissionError:
            raise ConfigError(f"interface {self.interface!r}: a packet socket needs root or "
                              "CAP_NET_RAW (systemd: AmbientCapabilities=CAP_NET_RAW)") from None
        try:
            hwtype = _hardware_type(sock, self.interface)
            ifreq = fcntl.ioctl(sock.fileno(), SIOCGIFINDEX,
                                struct.pack("16s16x", self.interface.encode()))
            self._ifindex = struct.unpack_from("i", ifreq, 16)[0]
        except OSError as exc:
            sock.close()
            why = "no such interface" if exc.errno == errno.ENODEV else exc.strerror
            raise ConfigError(f"interface {self.interface!r}: {why}") from None
        return sock, hwtype

    def _setup_ring(self, block_timeout_ms: int) -> None:
        assert self._sock is not None
        self._sock.setsockopt(SOL_PACKET, PACKET_VERSION, TPACKET_V3)
        frame_size = 2048  # V3 packs frames by their real size; this only has to divide evenly
        req = struct.pack("7I", self.block_size, self.block_count, frame_size,
                          self.block_size // frame_size * self.block_count,
                          max(1, block_timeout_ms), 0, 0)
        try:
            self._sock.setsockopt(SOL_PACKET, PACKET_RX_RING, req)
        except OSError as exc:
            raise ConfigError(f"interface {self.interface!r}: the kernel refused a ring of "
                              f"{self.block_count} × {self.block_size} bytes: {exc.strerror}") from None
        self._ring_map = mmap.mmap(self._sock.fileno(), self.block_size * self.block_count,
                                   mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
        self._ring = np.frombuffer(self._ring_map, np.uint8)
        self._ring32 = self._ring.view(np.uint32)

    # ------------------------------------------------------------------ filter
    @property
    def filter_linktype(self) -> int:
        """The link type filters are compiled for: a cooked socket's filter sees IP first."""
        return LINKTYPE_RAW if self.cooked else self.linktype

    def set_filter(self, expression: str | None) -> None:
        """Compile ``expression`` (None: everything) and attach it in place of the current
        filter, without reopening the socket. A bad expression raises ``ConfigError`` and
        leaves the current filter in place."""
        if expression is None:
            program = accept_all(self.snaplen)
        else:
            program = compile_filter(expression, linktype=self.filter_linktype,
                                     snaplen=self.snaplen)
        self.set_program(program, expression)

    def set_program(self, program: np.ndarray, expression: str | None = None) -> None:
        """Attach compiled classic BPF (``prefilter.SOCK_FILTER`` rows); the kernel swaps it
        atomically, and packets already in the ring stay."""
        assert self._sock is not None
        buf = ctypes.create_string_buffer(program.tobytes())
        fprog = struct.pack("HL", len(program), ctypes.addressof(buf))
        self._sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER, fprog)
        self.expression = expression
        self.filter_instructions = len(program)

    # ------------------------------------------------------------------ packets
    def _ready(self) -> bool:
        return bool(tpacket.block_ready(self._ring, self.block_size, self._next_block))

    def batches(self, *, empty_on_timeout: bool = False) -> Iterator[PacketBatch]:
        """Decoded batches as blocks arrive. When ``timeout_ms`` passes without a block the
        iterator ends (nothing is yielded for that wait), so the caller can tick its pipeline
        and call again; with ``empty_on_timeout`` it yields an empty batch instead and goes on.
        The batch's arrays are reused by the next batch (as the file readers do)."""
        while self._sock is not None:
            if not self._ready():
                try:
                    self._poll.poll(self.timeout_ms)
                except InterruptedError:  # pragma: no cover - PEP 475 retries poll itself
                    pass
                if self._sock is None:
                    return
                if not self._ready():
                    if not empty_on_timeout:
                        return
                    yield PacketBatch(self.path, self._buf[:0], self._out[:0])
                    continue
            yield self._take()

    def _take(self) -> PacketBatch:
        out = self._out
        out.view(np.uint8)[: out.itemsize * self._dirty].fill(0)  # the decoder expects zeros
        n, used, taken, status, bad = tpacket.walk_blocks(
            self._ring, self.block_size, self.block_count, self._next_block, self.block_count,
            self.cooked, self.linktype, self._buf, 0, out, 0, self._frames)
        if status != tpacket.RING_OK:  # never seen from a kernel; skip the block, keep going
            self.bad_blocks += 1
            log.warning("%s: ring block %d is malformed; skipped", self.path, bad)
            taken += 1
        # give the copied blocks back: a plain store of TP_STATUS_KERNEL in each descriptor
        blocks = (self._next_block + np.arange(taken)) % self.block_count
        self._ring32[(blocks * self.block_size + tpacket.BD_STATUS) // 4] = tpacket.TP_STATUS_KERNEL
        self._next_block = int((self._next_block + taken) % self.block_count)
        self._frames += n
        self._dirty = n
        batch = PacketBatch(self.path, self._buf[:used], out[:n])
        return decode_batch(batch)

    # ------------------------------------------------------------------ counters
    def stats(self) -> dict[str, int]:
        """Kernel counters since the socket opened: ``packets`` that passed the filter (the
        kernel counts drops in them too), ``drops`` (ring full), ``freeze`` (times the ring
        queue was frozen); and ``captured``, the frames copied to user space. The kernel resets
        its counters on each read, so they are summed here."""
        if self._sock is not None:
            raw = self._sock.getsockopt(SOL_PACKET, PACKET_STATISTICS, 12)
            packets, drops, freeze = struct.unpack("3I", raw)
            self._totals["packets"] += packets
            self._totals["drops"] += drops
            self._totals["freeze"] += freeze
        return {**self._totals, "captured": self._frames, "bad_blocks": self.bad_blocks}

    def fileno(self) -> int:
        assert self._sock is not None
        return self._sock.fileno()

    def close(self) -> None:
        """Stop capturing. Counters stay readable through :meth:`stats` (their last values)."""
        if self._sock is None:
            return
        with contextlib.suppress(OSError):
            self.stats()
        self._ring = self._ring32 = None  # type: ignore[assignment]
        if self._ring_map is not None:
            self._ring_map.close()
            self._ring_map = None
        sock, self._sock = self._sock, None
        sock.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
