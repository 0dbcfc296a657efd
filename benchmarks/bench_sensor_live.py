#!/usr/bin/env python3
"""Live-capture speed: the highest replay rate of mixed traffic the sensor takes with zero
kernel drops, on one core, with and without the BPF prefilter.

Set-up (everything on this machine, in two network namespaces this script creates and
deletes):

* the input is mixed traffic: every Ethernet capture of the nDPI peer corpus plus
  poolwatch's own Stratum and contact samples, concatenated with ``mergecap -a``, records
  that tcpreplay refuses (shorter than an Ethernet header, bad microseconds) dropped, then
  repeated with ``../shared/tools/make_bench_pcap.py`` so each copy makes new flows;
* ``replay_mmsg.py`` (``sendmmsg`` batches; ``--sender tcpreplay`` for tcpreplay, which
  cannot offer much more than 1 Gbit/s on this machine) sends it into one end of a veth
  pair (namespace ``pwbench-send-*``), pinned to ``--sender-cpu``; the kernel's receive work for the other end (packet socket delivery,
  the BPF filter, the copy into the ring) runs in the sender's context on that core too;
* this process, pinned to ``--cpu``, opens a :class:`PacketSocket` in the other namespace and
  runs every batch through ``DetectionPipeline(streaming=True, hash_captures=False)``; with
  the prefilter, a ``PrefilterUpdater`` keeps the filter in step with the pool addresses the
  pipeline learns, as the sensor does.

Rates: ``--mbps`` steps doubling from ``--start-mbps`` until a step drops packets or the
sender cannot deliver the rate asked (then the sender, not the sensor, is the limit), then a
bisection between the last clean step and the first dropping one. Each step lasts about
``--seconds`` (``--loop`` of the input). Kernel counters come from ``PACKET_STATISTICS``.
"capture core busy" is this process's CPU time over the step's wall time: the headroom left.

Run as root: ``python benchmarks/bench_sensor_live.py`` (``--help`` for options).
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import io
import json
import math
import os
import re
import resource
import shutil
import struct
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "capture"))
DEFAULT_CORPUS = REPO.parent / "shared" / "peer-corpus" / "ndpi" / "pcap"
MAKE_BENCH = REPO.parent / "shared" / "tools" / "make_bench_pcap.py"
REPLAY = Path(__file__).resolve().parent / "replay_mmsg.py"
SAMPLES = sorted((REPO / "pcaps" / "stratum").glob("*.pcap")) + sorted(
    (REPO / "pcaps" / "contacts").glob("*.pcap"))


def log(msg: str) -> None:
    print(f"[bench-live] {msg}", file=sys.stderr, flush=True)


def fail(msg: str) -> None:
    log(f"error: {msg}")
    sys.exit(2)


# --------------------------------------------------------------------------- input
def build_input(corpus: Path, workdir: Path, copies: int) -> tuple[Path, int, int]:
    """(path, packets, frame bytes) of the mixed-traffic input, cached in ``workdir``."""
    for tool in ("capinfos", "mergecap", "tcpreplay", "taskset", "ip"):
        if shutil.which(tool) is None:
            fail(f"{tool} is not installed")
    if not corpus.is_dir():
        fail(f"corpus {corpus} not found (--corpus)")
    files = sorted(p for p in corpus.iterdir() if p.suffix.lower() in (".pcap", ".pcapng", ".cap"))
    info = subprocess.run(["capinfos", "-T", "-m", "-Q", "-E", *map(str, files)],
                          capture_output=True, text=True, check=False).stdout
    ether = [corpus / row[0] for row in list(csv.reader(io.StringIO(info)))[1:] if row[1] == "ether"]
    sources = ether + SAMPLES
    h = hashlib.sha256(MAKE_BENCH.read_bytes())
    for p in sources:
        st = p.stat()
        h.update(f"{p} {st.st_size} {st.st_mtime_ns}\n".encode())
    tag = h.hexdigest()[:12]
    out = workdir / f"live-{tag}-{copies}x.pcap"
    if not out.exists():
        merged = workdir / f"live-merged-{tag}.pcap"
        log(f"merging {len(ether)} Ethernet corpus captures and {len(SAMPLES)} samples")
        subprocess.run(["mergecap", "-a", "-F", "pcap", "-w", str(merged), *map(str, sources)],
                       check=True)
        clean = workdir / f"live-clean-{tag}.pcap"
        kept, dropped = _sanitize(merged, clean)
        log(f"{kept} records kept, {dropped} dropped (tcpreplay refuses them)")
        tmp = out.with_suffix(".tmp")
        subprocess.run([sys.executable, str(MAKE_BENCH), str(clean), str(tmp), str(copies)],
                       check=True, capture_output=True)
        tmp.rename(out)
        merged.unlink()
    packets, size = _count(out)
    return out, packets, size


def _sanitize(src: Path, dst: Path) -> tuple[int, int]:
    data = src.read_bytes()
    assert struct.unpack_from("<I", data)[0] == 0xA1B2C3D4, "mergecap wrote a little-endian µs pcap"
    out, pos, kept, dropped = [data[:24]], 24, 0, 0
    while pos + 16 <= len(data):
        _, usec, incl, _ = struct.unpack_from("<IIII", data, pos)
        if incl >= 14 and usec < 1_000_000:
            out.append(data[pos : pos + 16 + incl])
            kept += 1
        else:
            dropped += 1
        pos += 16 + incl
    dst.write_bytes(b"".join(out))
    return kept, dropped


def _count(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    pos, n, size = 24, 0, 0
    while pos + 16 <= len(data):
        incl = struct.unpack_from("<I", data, pos + 8)[0]
        n, size, pos = n + 1, size + incl, pos + 16 + incl
    return n, size


# --------------------------------------------------------------------------- link
class Veth:
    """Two namespaces joined by a veth pair; deleted by :meth:`close` (and on exit)."""

    def __init__(self, rps_cpu: int | None = None) -> None:
        tag = uuid.uuid4().hex[:6]
        self.send_ns, self.cap_ns = f"pwbench-send-{tag}", f"pwbench-cap-{tag}"
        self.send_if, self.cap_if = f"pwbs{tag}", f"pwbc{tag}"
        self.made: list[str] = []
        try:
            for ns in (self.send_ns, self.cap_ns):
                self._run("ip", "netns", "add", ns)
                self.made.append(ns)
                self._run("ip", "netns", "exec", ns, "sysctl", "-qw",
                          "net.ipv6.conf.all.disable_ipv6=1", "net.ipv6.conf.default.disable_ipv6=1")
            # the corpus has frames up to 64 KB (segmentation offload at capture time)
            self._run("ip", "link", "add", self.send_if, "netns", self.send_ns, "mtu", "65535",
                      "type", "veth", "peer", "name", self.cap_if, "netns", self.cap_ns,
                      "mtu", "65535")
            self._run("ip", "-n", self.send_ns, "link", "set", self.send_if, "up")
            self._run("ip", "-n", self.cap_ns, "link", "set", self.cap_if, "up")
            if rps_cpu is not None:
                # Receive Packet Steering: the kernel's receive work for the capture side
                # (packet socket delivery, BPF, the copy into the ring) runs on this core
                # instead of the sender's, as a NIC's interrupt work runs on the core that
                # takes its queue
                self._run("ip", "netns", "exec", self.cap_ns, "sh", "-c",
                          f"echo {1 << rps_cpu:x} > /sys/class/net/{self.cap_if}/queues/rx-0/rps_cpus")
        except BaseException:
            self.close()
            raise

    @staticmethod
    def _run(*cmd: str) -> None:
        done = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            fail(f"{' '.join(cmd)}: {done.stderr.strip()}")

    def close(self) -> None:
        for ns in self.made:
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, check=False)
        self.made = []


# --------------------------------------------------------------------------- a step
@dataclass
class Step:
    mode: str  # "no prefilter" | "prefilter"
    asked_mbps: float | None  # None: --topspeed
    loops: int
    offered_mbps: float = 0.0  # the sender's "Rated" line
    offered_pps: float = 0.0
    sent: int = 0
    failed_sends: int = 0
    kernel_packets: int = 0  # passed the filter (the kernel counts drops in them)
    drops: int = 0
    freeze: int = 0
    user_packets: int = 0
    user_bytes: int = 0
    wall_s: float = 0.0
    cpu_s: float = 0.0
    records: int = 0
    filter_instructions: int = 0
    rebuilds: int = 0
    command: str = ""
    notes: list[str] = field(default_factory=list)

    @property
    def user_gbps(self) -> float:
        return self.user_bytes * 8 / self.wall_s / 1e9 if self.wall_s else 0.0

    @property
    def busy(self) -> float:
        return self.cpu_s / self.wall_s if self.wall_s else 0.0

    @property
    def sender_bound(self) -> bool:
        return self.asked_mbps is not None and self.offered_mbps < 0.9 * self.asked_mbps


def sender_command(args, link: Veth, pcap: Path, loops: int, mbps: float | None) -> list[str]:
    """The replay command, pinned to the sender's core, inside the sending namespace."""
    if args.sender == "tcpreplay":
        rate = ["--topspeed"] if mbps is None else [f"--mbps={mbps:g}"]
        send = ["tcpreplay", "-K", "--no-flow-stats", f"--loop={loops}", *rate, "-i", link.send_if]
    else:
        rate = [] if mbps is None else [f"--mbps={mbps:g}"]
        send = [sys.executable, str(REPLAY), f"--loop={loops}", *rate, "-i", link.send_if]
    return ["taskset", "-c", str(args.sender_cpu), "ip", "netns", "exec", link.send_ns,
            *send, str(pcap)]


def run_step(args, link: Veth, pcap: Path, size: int, mode: str, mbps: float | None) -> Step:
    from poolwatch_sensor.packet_socket import PacketSocket
    from poolwatch_sensor.prefilter import PrefilterUpdater

    from poolwatch.scan import DetectionPipeline

    rate_bytes = (mbps or 2000) * 1e6 / 8
    loops = max(1, math.ceil(args.seconds * rate_bytes / size))
    step = Step(mode, mbps, loops)
    pipe = DetectionPipeline(streaming=True, hash_captures=False)
    sock = PacketSocket(link.cap_if, netns=link.cap_ns, block_size=args.block_size,
                        block_count=args.block_count, timeout_ms=200)
    updater = None
    if mode == "prefilter":
        updater = PrefilterUpdater(sock, pipe.fp)
        updater.refresh(pipe)
    cmd = sender_command(args, link, pcap, loops, mbps)
    step.command = " ".join(cmd)
    try:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        first = last = None
        r0 = resource.getrusage(resource.RUSAGE_SELF)
        while True:
            for batch in sock.batches():
                if first is None:
                    first = time.perf_counter()
                step.user_packets += len(batch)
                step.user_bytes += int(batch.packets["caplen"].sum())
                step.records += len(pipe.feed(batch))
                last = time.perf_counter()
                if updater is not None:
                    updater.refresh(pipe)
            if proc.poll() is not None:
                break
            step.records += len(pipe.tick(time.time_ns()))
        for batch in sock.batches():  # the last blocks
            step.user_packets += len(batch)
            step.user_bytes += int(batch.packets["caplen"].sum())
            step.records += len(pipe.feed(batch))
            last = time.perf_counter()
        r1 = resource.getrusage(resource.RUSAGE_SELF)
        out, err = proc.communicate()
        step.cpu_s = (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)
        # the CPU time includes the waits' last poll timeout; the wall time does not
        step.wall_s = (last - first) if first is not None and last is not None else 0.0
        stats = sock.stats()
        step.kernel_packets, step.drops, step.freeze = stats["packets"], stats["drops"], stats["freeze"]
        step.filter_instructions = sock.filter_instructions
        step.rebuilds = updater.rebuilds if updater else 0
        step.records += len(pipe.flush())
        _parse_sender(step, out + err, proc.returncode)
    finally:
        sock.close()
        pipe.close()
    return step


def _parse_sender(step: Step, text: str, code: int) -> None:
    m = re.search(r"Actual: (\d+) packets", text)
    step.sent = int(m.group(1)) if m else 0
    m = re.search(r"Rated: [\d.]+ Bps, ([\d.]+) Mbps, ([\d.]+) pps", text)
    if m:
        step.offered_mbps, step.offered_pps = float(m.group(1)), float(m.group(2))
    m = re.search(r"Failed packets:\s+(\d+)", text)
    step.failed_sends = int(m.group(1)) if m else 0
    if code != 0:
        step.notes.append(f"sender exit {code}: {text.strip().splitlines()[-1:]}")


def run_drain(args, link: Veth, pcap: Path, size: int, mode: str, top: Step) -> Step:
    """The sensor's own speed, whatever the sender's: let a ring of ``--drain-ring-mb`` fill
    while nothing reads (to about half), then read as fast as the pipeline goes while the sender keeps sending,
    until the backlog is gone (a batch whose last packet is under 50 ms old). Packets and
    bytes processed over that time are the throughput."""
    from poolwatch_sensor.packet_socket import PacketSocket
    from poolwatch_sensor.prefilter import PrefilterUpdater

    from poolwatch.scan import DetectionPipeline

    blocks = max(args.block_count, args.drain_ring_mb * 2**20 // args.block_size)
    ring = args.block_size * blocks
    kept = top.kernel_packets / max(top.sent, 1)  # what the filter lets into the ring
    avg_kept = top.user_bytes / max(top.user_packets, 1)
    in_ring = top.offered_pps * kept * (avg_kept + 112)  # + tpacket3_hdr, sockaddr_ll, padding
    fill_s = min(30.0, 0.5 * ring / max(in_ring, 1.0))
    fill_bytes_per_s = top.offered_mbps * 1e6 / 8
    loops = max(1, math.ceil((fill_s + 10) * fill_bytes_per_s / size))
    step = Step(mode, None, loops, notes=[f"drain after {fill_s:.1f} s of filling"])
    pipe = DetectionPipeline(streaming=True, hash_captures=False)
    sock = PacketSocket(link.cap_if, netns=link.cap_ns, block_size=args.block_size,
                        block_count=blocks, timeout_ms=200)
    updater = None
    if mode.startswith("prefilter"):
        updater = PrefilterUpdater(sock, pipe.fp)
        updater.refresh(pipe)
    cmd = sender_command(args, link, pcap, loops, None)
    step.command = " ".join(cmd)
    try:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        time.sleep(fill_s)
        r0 = resource.getrusage(resource.RUSAGE_SELF)
        t0 = time.perf_counter()
        for batch in sock.batches():
            step.user_packets += len(batch)
            step.user_bytes += int(batch.packets["caplen"].sum())
            step.records += len(pipe.feed(batch))
            if updater is not None:
                updater.refresh(pipe)
            if len(batch) and time.time_ns() - int(batch.packets["ts_ns"][-1]) < 50_000_000:
                break
        step.wall_s = time.perf_counter() - t0
        r1 = resource.getrusage(resource.RUSAGE_SELF)
        step.cpu_s = (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)
        proc.kill()
        proc.communicate()
        stats = sock.stats()
        step.kernel_packets, step.drops, step.freeze = stats["packets"], stats["drops"], stats["freeze"]
        step.filter_instructions = sock.filter_instructions
        if step.wall_s < 1.0:
            step.notes.append("backlog gone in under a second: figure unreliable")
    finally:
        sock.close()
        pipe.close()
    return step


# --------------------------------------------------------------------------- search
def search(args, link, pcap, size, mode: str) -> tuple[list[Step], str]:
    """Doubling steps, then bisection; the verdict as text."""
    steps: list[Step] = []

    def run(mbps):
        s = run_step(args, link, pcap, size, mode, mbps)
        steps.append(s)
        log(f"{mode:12} asked {_mbps(mbps):>9} offered {s.offered_mbps:8.1f} Mbit/s "
            f"{s.offered_pps / 1e3:7.1f} kpps  kernel {s.kernel_packets:>9} drops {s.drops:>8} "
            f"user {s.user_packets:>9} ({s.user_gbps:5.2f} Gbit/s, core busy {s.busy:4.0%})")
        return s

    good: Step | None = None
    bad: Step | None = None
    mbps = args.start_mbps
    while mbps <= args.max_mbps:
        s = run(mbps)
        if s.drops:
            bad = s
            break
        good = s
        if s.sender_bound:
            break
        mbps *= 2
    if bad is not None and good is not None:
        lo, hi = good.asked_mbps, bad.asked_mbps
        for _ in range(args.bisect_steps):
            mid = (lo + hi) / 2
            s = run(mid)
            if s.drops:
                hi = mid
            else:
                lo, good = mid, s
                if s.sender_bound:
                    break
    top = run(None)  # whatever the sender can do
    if top.drops == 0 and (good is None or top.offered_mbps > good.offered_mbps):
        good = top
    drain = run_drain(args, link, pcap, size, mode, top)
    steps.append(drain)
    log(f"{mode:12} drain: {drain.user_packets} packets in {drain.wall_s:.2f} s = "
        f"{drain.user_packets / max(drain.wall_s, 1e-9) / 1e3:.0f} kpps, "
        f"{drain.user_gbps:.2f} Gbit/s (of packets kept by the filter), drops {drain.drops}")
    per_packet = drain.cpu_s / max(drain.user_packets, 1)
    dedicated = 1 / per_packet if per_packet else 0.0
    kept = top.kernel_packets / max(top.sent, 1)  # share of the wire's packets the filter keeps
    wire = dedicated / max(kept, 1e-9) * size / args.packets * 8 / 1e9
    capacity = (f"; from a full ring the pipeline took {drain.user_packets / max(drain.wall_s, 1e-9) / 1e3:.0f} "
                f"kpps = {drain.user_gbps:.2f} Gbit/s of the packets reaching it with the core "
                f"{drain.busy:.0%} ours; {per_packet * 1e6:.2f} µs of CPU per packet reaching it "
                f"({kept:.0%} of the wire's), i.e. {dedicated / 1e3:.0f} kpps on a core of its own "
                f"= {wire:.2f} Gbit/s of this traffic on the wire"
                f"{'; ' + '; '.join(drain.notes[1:]) if drain.notes[1:] else ''}")
    if good is None:
        return steps, f"{mode}: drops at every rate tried (lowest {args.start_mbps} Mbit/s){capacity}"
    limit = "sensor-bound" if bad is not None or top.drops else f"sender-bound: {args.sender} could send no faster"
    return steps, (f"{mode}: highest zero-drop rate {good.offered_mbps:.0f} Mbit/s "
                   f"({good.offered_pps / 1e3:.0f} kpps offered, capture core {good.busy:.0%} busy; "
                   f"{limit}){capacity}")


def _mbps(v: float | None) -> str:
    return "topspeed" if v is None else f"{v:g}"


def _asked(s: Step) -> str:
    return "drain" if s.notes[:1] and s.notes[0].startswith("drain") else _mbps(s.asked_mbps)


def table(steps: list[Step]) -> str:
    head = ("| mode | --mbps | offered Mbit/s | offered kpps | kernel pkts | drops | user pkts | "
            "user Gbit/s | capture core busy | µs CPU/pkt | records | BPF insns |\n"
            "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n")
    rows = [f"| {s.mode} | {_asked(s)} | {s.offered_mbps:.1f} | {s.offered_pps / 1e3:.1f} | "
            f"{s.kernel_packets:,} | {s.drops:,} | {s.user_packets:,} | {s.user_gbps:.3f} | "
            f"{s.busy:.0%} | {s.cpu_s / max(s.user_packets, 1) * 1e6:.2f} | {s.records} | "
            f"{s.filter_instructions} |" for s in steps]
    return head + "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--corpus", type=Path, default=DEFAULT_CORPUS)
    ap.add_argument("--workdir", type=Path, default=Path(tempfile.gettempdir()) / "poolwatch-bench-live")
    ap.add_argument("--copies", type=int, default=4, help="copies of the merged input (make_bench_pcap)")
    ap.add_argument("--cpu", type=int, default=0, help="core of the capture process")
    ap.add_argument("--sender-cpu", type=int, default=1, help="core of the sender")
    ap.add_argument("--sender", choices=("mmsg", "tcpreplay"), default="mmsg",
                    help="replay_mmsg.py (sendmmsg batches; the default: tcpreplay cannot "
                         "offer much more than 1 Gbit/s here) or tcpreplay")
    ap.add_argument("--rps", choices=("capture", "sender"), default="sender",
                    help="which core does the kernel's receive work for the capture side: "
                         "the sender's (veth's default) or the capture core (RPS; as a NIC's "
                         "queue interrupt on the sensor's own core)")
    ap.add_argument("--seconds", type=float, default=8.0, help="about how long each step sends")
    ap.add_argument("--start-mbps", type=float, default=250.0)
    ap.add_argument("--max-mbps", type=float, default=16000.0)
    ap.add_argument("--bisect-steps", type=int, default=3)
    ap.add_argument("--block-size", type=int, default=1 << 20)
    ap.add_argument("--block-count", type=int, default=128, help="ring = block-size × block-count")
    ap.add_argument("--drain-ring-mb", type=int, default=512,
                    help="ring for the drain measurement (a bigger backlog, a longer drain)")
    ap.add_argument("--modes", default="no prefilter,prefilter")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args(argv)
    if os.geteuid() != 0:
        fail("needs root (network namespaces, packet sockets)")
    if REPO in args.workdir.resolve().parents:
        fail("--workdir must be outside the repository")
    args.workdir.mkdir(parents=True, exist_ok=True)
    pcap, packets, size = build_input(args.corpus, args.workdir, args.copies)
    args.packets = packets
    log(f"input {pcap}: {packets} packets, {size / 1e6:.1f} MB of frames "
        f"({size / packets:.0f} B per packet)")
    os.sched_setaffinity(0, {args.cpu})
    load = Path("/proc/loadavg").read_text().split()[:3]
    link = Veth(args.cpu if args.rps == "capture" else None)
    try:
        log("warm-up (numba's cache, imports): one untimed pass")
        run_step(argparse.Namespace(**{**vars(args), "seconds": 0.1}), link, pcap, size,
                 "no prefilter", None)
        results, verdicts = [], []
        for mode in [m.strip() for m in args.modes.split(",")]:
            steps, verdict = search(args, link, pcap, size, mode)
            results += steps
            verdicts.append(verdict)
    finally:
        link.close()
    ring_mb = args.block_size * args.block_count / 2**20
    print(f"input: {packets:,} packets, {size / 1e6:.1f} MB of frames ({size / packets:.0f} B avg); "
          f"ring {args.block_count} × {args.block_size >> 10} KB = {ring_mb:.0f} MB; capture on core "
          f"{args.cpu}, sender ({args.sender}) on core {args.sender_cpu}, receive work on the {args.rps} core; load average at start {' '.join(load)}")
    print()
    print(table(results))
    print()
    for v in verdicts:
        print("- " + v)
    if args.json:
        args.json.write_text(json.dumps({"steps": [asdict(s) | {"user_gbps": s.user_gbps,
                                                                 "busy": s.busy} for s in results],
                                         "verdicts": verdicts, "load": load}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
