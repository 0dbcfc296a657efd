"""Live capture through Wireshark (pyshark ``LiveCapture``: dumpcap, then tshark), for links
the packet socket does not handle well: tshark knows every link layer Wireshark knows.

It yields the same decoded :class:`PacketBatch` values as :class:`PacketSocket`, built by the
pyshark engine's own conversion (``poolwatch.engines.pyshark_engine``: tshark's fields mapped
to the ``PACKET`` columns), so the detection pipeline cannot tell the two apart. It is slow
(tshark dissects every packet: a few hundred to a few thousand packets per second), which is
why it is the alternative and not the default; give it the BPF prefilter (``bpf``, compiled by
dumpcap's libpcap) to keep tshark's share small.

pyshark runs in a child process of its own (``python -m poolwatch_sensor.pyshark_live``),
because its synchronous API needs the main thread (its child watcher waits for SIGCHLD) and
dumpcap and tshark must end with it: :meth:`close` ends the child's whole process group. With
``netns`` the child is started by ``ip netns exec``, so the capture runs in that namespace.
The child sends each full batch, and a partial one after ``flush_ms`` without a full one, as a
length-prefixed pickle of its two arrays.

Limits: tshark starts slowly (a second or more: packets sent meanwhile wait in dumpcap's pipe,
they are not lost); pyshark's JSON reader hands a packet over only once the next one starts,
so the last packet before a quiet spell waits for the next packet (or :meth:`close`).
"""

from __future__ import annotations

import contextlib
import json
import os
import pickle
import queue
import signal
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Self

from poolwatch.errors import ConfigError
from poolwatch.records import PacketBatch

_LEN = struct.Struct("<Q")
_END = object()


class PysharkLiveCapture:
    """Decoded batches from ``interface`` through pyshark, with :class:`PacketSocket`'s
    shape: ``.batches()`` (ends when ``timeout_ms`` passes with nothing new), ``.stats()``,
    ``.close()``."""

    def __init__(self, interface: str, *, bpf: str | None = None, timeout_ms: int = 1000,
                 flush_ms: int = 200, batch_packets: int = 4096, netns: str | None = None,
                 tshark_path: str | None = None) -> None:
        try:
            import pyshark  # noqa: F401 - the optional extra
        except ImportError:
            raise ConfigError("the pyshark capture engine needs pyshark: "
                              "pip install 'poolwatch[pyshark]'") from None
        self.interface = interface
        self.path = f"live:{interface}"
        self.timeout_ms = timeout_ms
        self.packets = 0
        self.error: str | None = None
        self._queue: queue.Queue = queue.Queue(maxsize=256)
        args = {"interface": interface, "bpf": bpf, "flush_ms": flush_ms,
                "batch_packets": batch_packets, "tshark_path": tshark_path}
        cmd = [sys.executable, "-c", "from poolwatch_sensor.pyshark_live import _child; _child()",
               json.dumps(args)]
        if netns:
            cmd = ["ip", "netns", "exec", netns, *cmd]
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
        self._proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                      stderr=subprocess.PIPE, env=env, start_new_session=True)
        self._stderr: list[str] = []
        threading.Thread(target=self._read, daemon=True, name=f"pyshark-{interface}").start()
        threading.Thread(target=self._errors, daemon=True).start()
        ready = self._queue.get(timeout=60)  # the child says when dumpcap is capturing
        if ready is not True:
            self.close()
            why = self.error or " ".join(self._stderr[-3:]) or "it stopped"
            raise ConfigError(f"pyshark capture on {interface!r}: {why}")

    def _read(self) -> None:
        out = self._proc.stdout
        assert out is not None
        try:
            while head := out.read(_LEN.size):
                item = pickle.loads(out.read(_LEN.unpack(head)[0]))
                if isinstance(item, dict):  # the child's messages
                    if "error" in item:
                        self.error = item["error"]
                    if item.get("ready"):
                        self._queue.put(True)
                    continue
                buf, packets = item
                self.packets += len(packets)
                self._queue.put(PacketBatch(self.path, buf, packets))
        finally:
            self._queue.put(_END)

    def _errors(self) -> None:
        assert self._proc.stderr is not None
        for line in self._proc.stderr:
            self._stderr.append(line.decode(errors="replace").strip())
            del self._stderr[:-20]

    def batches(self) -> Iterator[PacketBatch]:
        """Batches as the child sends them; ends when ``timeout_ms`` passes without one, or
        when the capture has stopped (``.error`` then says why, if it failed)."""
        while True:
            try:
                item = self._queue.get(timeout=self.timeout_ms / 1000)
            except queue.Empty:
                return
            if item is _END:
                self._queue.put(_END)  # later calls end at once too
                return
            if item is True:
                continue
            yield item

    def stats(self) -> dict[str, int]:
        return {"captured": self.packets}

    def close(self) -> None:
        """End the child, dumpcap and tshark (one process group)."""
        if self._proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self._proc.pid, signal.SIGTERM)
            try:
                self._proc.wait(5)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self._proc.pid, signal.SIGKILL)
                self._proc.wait()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


# --------------------------------------------------------------------------- the child
def _child() -> None:
    """pyshark in this process's main thread; batches to stdout."""
    import pyshark

    from poolwatch.engines._python import Batch
    from poolwatch.engines.pyshark_engine import (
        _ENCAP_LINKTYPES,
        _PREFERENCES,
        _UNKNOWN_LINKTYPE,
        _decode,
        _field,
        _int,
        _ts_ns,
    )

    args = json.loads(sys.argv[1])
    out = sys.stdout.buffer
    lock = threading.Lock()
    batch = Batch(f"live:{args['interface']}", args["batch_packets"], _decode)
    last = [time.monotonic()]

    def send(item) -> None:
        data = pickle.dumps(item, protocol=pickle.HIGHEST_PROTOCOL)
        with lock:
            out.write(_LEN.pack(len(data)) + data)
            out.flush()

    def take() -> None:  # with lock held by the caller for the batch
        b = batch.take()
        last[0] = time.monotonic()
        send((b.buf, b.packets))

    def flusher() -> None:
        while True:
            time.sleep(args["flush_ms"] / 2000)
            with state:
                if batch.n and time.monotonic() - last[0] >= args["flush_ms"] / 1000:
                    take()

    def announce_when_capturing(capture) -> None:
        """dumpcap has its packet socket open: from now on nothing sent is missed."""
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            for proc in list(getattr(capture, "_running_processes", ())):
                with contextlib.suppress(OSError):
                    if (b"dumpcap" in Path(f"/proc/{proc.pid}/cmdline").read_bytes()
                            and len(Path(f"/proc/{proc.pid}/net/packet").read_text()
                                    .splitlines()) > 1):
                        send({"ready": True})
                        return
            time.sleep(0.05)
        send({"error": "dumpcap did not start capturing within 60 s"})

    state = threading.Lock()
    signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
    try:
        capture = pyshark.LiveCapture(interface=args["interface"], bpf_filter=args["bpf"],
                                      use_json=True, include_raw=True,
                                      override_prefs=_PREFERENCES,
                                      tshark_path=args["tshark_path"])
    except Exception as exc:  # noqa: BLE001 - told to the parent
        send({"error": f"{type(exc).__name__}: {exc}"})
        return
    threading.Thread(target=announce_when_capturing, args=(capture,), daemon=True).start()
    threading.Thread(target=flusher, daemon=True).start()
    try:
        for pkt in capture.sniff_continuously():
            frame = pkt.frame_info
            data = pkt.get_raw_packet() if _int(frame, "cap_len") else b""
            number, ts_ns = _int(frame, "number"), _ts_ns(_field(frame, "time_epoch"))
            linktype = _ENCAP_LINKTYPES.get(_int(frame, "encap_type"), _UNKNOWN_LINKTYPE)
            with state:
                batch.add(number, ts_ns, linktype, _int(frame, "len"), data, pkt)
                if batch.n == batch.size:
                    take()
    except Exception as exc:  # noqa: BLE001 - tshark or pyshark gave up
        send({"error": f"{type(exc).__name__}: {exc}"})
