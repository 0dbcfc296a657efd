"""The warm-up: the packet kernels compiled before a sensor takes traffic (poolwatch.warmup)."""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from poolwatch.detect.records import StratumSession
from poolwatch.records import PacketStatus
from poolwatch.scan import DetectionPipeline, ScanSummary, iter_batches
from poolwatch.warmup import POOL_NAME, STRATUM_LINES, warm_up, warm_up_capture

from .conftest import PCAPS


@pytest.mark.parametrize("pcapng", [False, True])
def test_the_warm_up_capture_decodes_cleanly(tmp_path, pcapng):
    path = tmp_path / ("w.pcapng" if pcapng else "w.pcap")
    path.write_bytes(warm_up_capture(pcapng=pcapng))
    summary = ScanSummary()
    batches = [b.packets.copy() for b in iter_batches([path], summary=summary)]
    report = summary.files[0]
    assert report.ok and report.format == ("pcapng" if pcapng else "pcap")
    assert not report.warnings
    packets = [row for b in batches for row in b]
    assert len(packets) == 1 + 3 + len(STRATUM_LINES) + 3 + 2  # DNS, handshake, lines, FINs, TLS
    assert {int(p["status"]) for p in packets} == {PacketStatus.OK}
    assert [int(p["ts_ns"]) % 10**9 for p in packets] == [i * 10**6 for i in range(len(packets))]


def test_the_warm_up_goes_through_every_stage_and_closes_its_pipeline():
    """The session, the DNS answer naming its pool, the TLS ClientHello's name and the
    flows' expiry all happen: each is where kernels run."""
    pipes: list[DetectionPipeline] = []

    def make() -> DetectionPipeline:
        pipes.append(DetectionPipeline(contacts=True, streaming=True, hash_captures=False))
        return pipes[-1]

    done = warm_up(make)
    assert len(pipes) == 1 and done.seconds > 0
    assert done.packets == 2 * 17  # the pcap and the pcapng copy
    sessions = [r for r in done.records if isinstance(r, StratumSession)]
    assert len(sessions) == 1, done.records
    s = sessions[0]
    assert (s.dialect, s.pool_host, s.agent, s.shares_accepted, s.worker) == (
        "stratum-v1", POOL_NAME, "cgminer/4.10.0", 1, "rig1")
    pipe = pipes[0]
    assert pipe.dns.stats["answers"] >= 1
    assert pipe.tls is not None and pipe.tls.stats["flows"] == 1
    assert pipe.tls.stats["unwanted"] == 1  # its name was read, and is not a pool's
    assert pipe.summary.flows >= 3  # DNS, Stratum and TLS flows ended by the clock moved on
    assert not Path(s.evidence["capture"]).exists()  # the temporary capture is gone


def test_after_a_warm_up_the_bundled_captures_need_no_other_kernel():
    """Every kernel (and argument types) that a sensor's pipeline then runs on the bundled
    captures (pcap and pcapng, Stratum in every dialect, DNS, TLS, behaviour samples) was
    loaded by the warm-up, and so were the ring kernels of a live socket: in a new install's
    empty numba cache, those are what the warm-up compiles. Checked in a new process by
    each kernel's signatures (numba's dispatchers), before and after the captures."""
    pytest.importorskip("poolwatch_sensor")
    code = r"""
import importlib, pkgutil, sys
from poolwatch.kernels import skip_blas_probe
skip_blas_probe()
import poolwatch.kernels
from poolwatch.scan import DetectionPipeline, iter_batches
from poolwatch.warmup import warm_up
from poolwatch_sensor.packet_socket import warm_up_ring

modules = [importlib.import_module("poolwatch.kernels." + m.name)
           for m in pkgutil.iter_modules(poolwatch.kernels.__path__)]
kernels = {id(k): k for m in modules for k in vars(m).values()
           if hasattr(k, "py_func") and hasattr(k, "signatures")}

def loaded():
    return {k.py_func.__module__ + "." + k.__name__: set(k.signatures)
            for k in kernels.values() if k.signatures}

assert not loaded()
make = lambda: DetectionPipeline(contacts=True, streaming=True, hash_captures=False)
warm_up(make)
warm_up_ring()
before = loaded()
pipe = make()
for batch in iter_batches(sys.argv[1:]):
    pipe.feed(batch)
pipe.tick(2**62)
pipe.flush()
after = loaded()
print(" ".join(sorted(before)))
print(" ".join(sorted(k for k in after if after[k] - before.get(k, set()))))
"""
    captures = sorted(str(p) for p in PCAPS.rglob("*") if p.suffix in (".pcap", ".pcapng"))
    assert any(c.endswith(".pcapng") for c in captures)
    out = subprocess.run([sys.executable, "-c", code, *captures], capture_output=True,
                         text=True, timeout=600, check=False)
    assert out.returncode == 0, out.stderr[-3000:]
    warmed, missed = out.stdout.split("\n")[:2]
    assert {f"poolwatch.kernels.{k}" for k in (
        "capture_records.walk_pcap", "capture_records.walk_pcapng", "headers.decode_packets",
        "prefilter.select_stream_packets", "dnsselect.select_dns_messages",
        "dnsparse.parse_dns_messages", "tpacket.walk_blocks")} <= set(warmed.split())
    assert missed == "", f"needed after the warm-up: {missed}"


@pytest.mark.parametrize("cold", [False, True])
def test_the_sensor_warms_up_before_it_says_ready(tmp_path, monkeypatch, caplog, cold):
    """systemd hears READY only once the kernels are ready (while they compile: a status and
    a longer start timeout), and nothing the warm-up found reaches the outbox."""
    pytest.importorskip("poolwatch_sensor")
    from poolwatch_sensor.config import load_config
    from poolwatch_sensor.sensor import Sensor

    import poolwatch.kernels
    import poolwatch.warmup

    monkeypatch.setattr(poolwatch.kernels, "cold_cache", lambda *kernels: cold)

    notify = tmp_path / "notify"
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    listener.bind(str(notify))
    listener.settimeout(30)
    monkeypatch.setenv("NOTIFY_SOCKET", str(notify))
    received: list[str] = []
    real = poolwatch.warmup.warm_up

    def spy(make):  # a datagram of its own: the socket keeps the order they were sent in
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
            s.sendto(b"WARM-UP", str(notify))
        return real(make)

    monkeypatch.setattr(poolwatch.warmup, "warm_up", spy)
    (tmp_path / "ring").mkdir()
    (tmp_path / "key").write_text("k\n")
    (tmp_path / "s.toml").write_text("""
[sensor]
name = "edge-w"
state_directory = "state"
[files]
directory = "ring"
[api]
url = "http://127.0.0.1:9"
key_file = "key"
""")
    sensor = Sensor(load_config(tmp_path / "s.toml"))
    added: list = []
    monkeypatch.setattr(sensor.outbox, "add", added.append)
    code: list[int] = []
    thread = threading.Thread(target=lambda: code.append(sensor.run()), daemon=True)
    thread.start()
    try:
        while not any(m.startswith("READY=1") for m in received):
            received.append(listener.recv(4096).decode())
    finally:
        sensor.stop()
        thread.join(30)
        listener.close()
    assert code == [0]
    assert received.count("WARM-UP") == 1
    ready = next(i for i, m in enumerate(received) if m.startswith("READY=1"))
    assert received.index("WARM-UP") < ready
    compiling = [m for m in received if m.startswith("STATUS=compiling")]
    if cold:
        assert compiling == ["STATUS=compiling packet kernels\nEXTEND_TIMEOUT_USEC=300000000"]
        assert received.index(compiling[0]) < received.index("WARM-UP")
        assert "compiling the packet kernels" in caplog.text
    else:
        assert compiling == []
    assert added == []  # the warm-up's session was thrown away
