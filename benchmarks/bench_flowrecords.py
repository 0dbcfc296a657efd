#!/usr/bin/env python3
"""Flow-record benchmark: how many NetFlow v9 / IPFIX records a second can the collector
decode and judge on one core with zero UDP drops, and how fast is the decoder alone next to
the ``netflow`` library on the same datagrams?

1. **Real exporter datagrams.** The Ethernet sample captures (``pcaps/stratum``,
   ``pcaps/contacts``) are merged and repeated with ``make_bench_pcap.py`` (every copy its own
   addresses), then Debian's ``softflowd`` turns that capture into NetFlow v9 and IPFIX sent
   to a UDP socket of this script; the datagrams are kept in ``--workdir`` (reused next time).
2. **Decode only**: ``FlowDecoder.decode`` over those datagrams in batches like the
   collector's, against ``netflow.parse_packet`` (0.12.2) over the same datagrams; both must
   find the same number of records.
3. **Sustained rate over loopback**: datagrams built with softflowd's own templates (the
   template and options sets it sent, verbatim; data records filled with varied flows,
   ``--records`` per datagram, ``--mining-share`` of them on pool ports) are sent by a second
   process pinned to another core, at increasing datagram rates for ``--seconds`` each, to a
   fresh :class:`FlowCollector` in this process pinned to one core (``--cpu``). A rate passes
   when every datagram sent was decoded and judged and the kernel counted no drop on the
   socket (``/proc/net/udp``), and the collector had caught up within max(0.5 s, 10 %) of the
   sender's end (a large receive buffer must not hide a backlog). The highest passing rate is
   the figure; the collector's CPU time per record is printed beside it.

Run ``python benchmarks/bench_flowrecords.py --help``. The machine is shared: rates are
noisy, rerun before trusting a difference under ~20 %.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "capture"))
sys.path.insert(0, str(REPO / "src"))

from poolwatch.readers.flowrecords import FlowDecoder

MAKE_BENCH = REPO.parent / "shared" / "tools" / "make_bench_pcap.py"


# ----------------------------------------------------------------------------- inputs
def merged_samples(path: Path) -> None:
    packets = []
    for p in sorted((REPO / "pcaps" / "stratum").glob("*.pcap")) + sorted(
            (REPO / "pcaps" / "contacts").glob("*.pcap")):
        data = p.read_bytes()
        pos = 24
        while pos + 16 <= len(data):
            sec, usec, caplen, wire = struct.unpack_from("<IIII", data, pos)
            packets.append((sec, usec, data[pos + 16:pos + 16 + caplen], wire))
            pos += 16 + caplen
    packets.sort(key=lambda p: (p[0], p[1]))
    with open(path, "wb") as fh:
        fh.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1))
        for sec, usec, frame, wire in packets:
            fh.write(struct.pack("<IIII", sec, usec, len(frame), wire) + frame)


def exporter_datagrams(workdir: Path, version: int, copies: int) -> list[bytes]:
    """softflowd's datagrams for the repeated sample capture (cached in workdir)."""
    cache = workdir / f"softflowd-v{version}-x{copies}.dgrams"
    if cache.exists():
        return read_dgrams(cache)
    if shutil.which("softflowd") is None:
        sys.exit("softflowd is not installed (apt-get install softflowd)")
    base = workdir / "samples.pcap"
    if not base.exists():
        merged_samples(base)
    big = workdir / f"b{copies}.pcap"
    if not big.exists():
        subprocess.run([sys.executable, str(MAKE_BENCH), str(base), str(big), str(copies)],
                       check=True, stdout=subprocess.DEVNULL)
    sink = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sink.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 32 << 20)
    sink.bind(("127.0.0.1", 0))
    sink.settimeout(0.5)
    run = workdir / f"sf{version}"
    run.mkdir(exist_ok=True)
    shutil.copy(big, run / "b.pcap")  # softflowd truncates long -r paths: a short name
    proc = subprocess.Popen(["softflowd", "-r", "b.pcap", "-n",
                             f"127.0.0.1:{sink.getsockname()[1]}", "-v", str(version), "-a",
                             "-d", "-m", "200000", "-c", "sf.ctl", "-p", "sf.pid"],
                            cwd=run, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    got: list[bytes] = []
    quiet = 0
    while quiet < 3:
        try:
            got.append(sink.recv(65535))
            quiet = 0
        except TimeoutError:
            if proc.poll() is not None:
                quiet += 1
    sink.close()
    write_dgrams(cache, got)
    return got


def write_dgrams(path: Path, dgrams: list[bytes]) -> None:
    with open(path, "wb") as fh:
        fh.writelines(struct.pack("!I", len(d)) + d for d in dgrams)


def read_dgrams(path: Path) -> list[bytes]:
    data = path.read_bytes()
    out, pos = [], 0
    while pos < len(data):
        (n,) = struct.unpack_from("!I", data, pos)
        out.append(data[pos + 4:pos + 4 + n])
        pos += 4 + n
    return out


def control_sets(dgram: bytes, version: int) -> bytes:
    """The template and options sets (and options data) of softflowd's first datagram."""
    pos = 20 if version == 9 else 16
    keep = b""
    while pos + 4 <= len(dgram):
        sid, slen = struct.unpack_from("!HH", dgram, pos)
        if slen < 4:
            break
        if sid < 256 or sid == 256:  # templates; 256 is softflowd's options data set
            keep += dgram[pos:pos + slen]
        pos += slen
    return keep


FILL = {  # what a data record holds, by information element (the rest: zero)
    8: "src4", 12: "dst4", 27: "src6", 28: "dst6", 7: "sport", 11: "dport", 4: "proto",
    6: "flags", 1: "bytes", 2: "packets", 21: "end_up", 22: "start_up", 60: "ipver",
    61: "dir", 136: "end_reason",
}
POOL_PORTS = (3333, 4444, 5555, 14444, 1800)
COMMON = (443, 443, 443, 443, 443, 443, 80, 80, 53, 8080, 993, 22, 25, 123)


def synthetic(version: int, control: bytes, tid: int, fields: list[tuple[int, int]],
              count: int, per: int, mining_share: float, seed: int = 5) -> list[bytes]:
    """``count`` data datagrams of ``per`` records each in softflowd's template ``tid``."""
    rng = np.random.default_rng(seed)
    n = count * per
    reclen = sum(length for _, length in fields)
    names, formats, offsets = [], [], []
    off = 0
    for ie, length in fields:
        if ie in FILL and length in (1, 2, 4, 8):
            names.append(FILL[ie])
            formats.append(f">u{length}")
            offsets.append(off)
        off += length
    dt = np.dtype({"names": names, "formats": formats, "offsets": offsets, "itemsize": reclen})
    rec = np.zeros(n, dt)
    cols = {
        "src4": (10 << 24) + rng.integers(0, 1 << 20, n),
        "dst4": rng.integers(0x0B000000, 0xDF000000, n),
        "sport": rng.integers(32768, 61000, n),
        "dport": np.where(rng.random(n) < mining_share, rng.choice(POOL_PORTS, n),
                          np.where(rng.random(n) < 0.9, rng.choice(COMMON, n),
                                   rng.integers(1024, 65535, n))),
        "proto": np.where(rng.random(n) < 0.85, 6, 17),
        "flags": rng.integers(0, 64, n),
        "packets": rng.integers(1, 2000, n),
        "start_up": rng.integers(0, 50_000, n) + 1_000_000,
        "ipver": np.full(n, 4),
        "dir": rng.integers(0, 2, n),
        "end_reason": rng.integers(1, 4, n),
    }
    cols["bytes"] = cols["packets"] * rng.integers(60, 1400, n)
    cols["end_up"] = cols["start_up"] + rng.integers(0, 300_000, n)
    for name in names:
        if name in cols:
            rec[name] = cols[name]
    raw = rec.tobytes()
    body = per * reclen
    out = []
    now = int(time.time())
    for k in range(count):
        dset = struct.pack("!HH", tid, body + 4) + raw[k * body:(k + 1) * body]
        if version == 9:
            out.append(struct.pack("!HHIIII", 9, per, 1_400_000, now, k + 1, 0) + dset)
        else:
            out.append(struct.pack("!HHIII", 10, 16 + len(dset), now, k * per, 0) + dset)
    return out


def control_datagram(version: int, control: bytes) -> bytes:
    now = int(time.time())
    if version == 9:
        return struct.pack("!HHIIII", 9, 1, 1_400_000, now, 0, 0) + control
    return struct.pack("!HHIII", 10, 16 + len(control), now, 0, 0) + control


# ----------------------------------------------------------------------------- decode only
def decode_rate(dgrams: list[bytes], batch: int = 2048, min_s: float = 1.5) -> tuple[float, int]:
    d = FlowDecoder()
    total, start = 0, time.perf_counter()
    n_records = -1
    while True:
        got = 0
        for i in range(0, len(dgrams), batch):
            got += len(d.decode([(g, "127.0.0.1") for g in dgrams[i:i + batch]]))
        n_records = got if n_records < 0 else n_records
        total += got
        if time.perf_counter() - start >= min_s:
            break
    return total / (time.perf_counter() - start), n_records


def netflow_rate(dgrams: list[bytes], min_s: float = 1.5) -> tuple[float, int] | None:
    try:
        import netflow
    except ImportError:
        return None
    total, start, n_records = 0, time.perf_counter(), -1
    while True:
        templates: dict = {"netflow": {}, "ipfix": {}}
        got = 0
        for g in dgrams:
            got += sum(1 for f in netflow.parse_packet(g, templates).flows
                       if "IN_PKTS" in f.data or "packetDeltaCount" in f.data)
        n_records = got if n_records < 0 else n_records
        total += got
        if time.perf_counter() - start >= min_s:
            break
    return total / (time.perf_counter() - start), n_records


# ----------------------------------------------------------------------------- over UDP
def sender(port: int, control: bytes, dgrams: list[bytes], rate: float, seconds: float,
           cpu: int | None, ready, go, result) -> None:
    if cpu is not None:
        os.sched_setaffinity(0, {cpu})
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 << 20)
    dest = ("127.0.0.1", port)
    ready.set()
    go.wait()
    s.sendto(control, dest)
    time.sleep(0.05)
    total = int(rate * seconds)
    sent, i, n = 0, 0, len(dgrams)
    start = time.perf_counter()
    while sent < total:
        due = min(total, int((time.perf_counter() - start) * rate) + 1)
        while sent < due:
            try:
                s.sendto(dgrams[i], dest)
            except BlockingIOError:
                continue
            sent += 1
            i = i + 1 if i + 1 < n else 0
        if sent < total and (sent / rate) - (time.perf_counter() - start) > 0.002:
            time.sleep(0.001)
    result.put((sent, time.perf_counter() - start))
    s.close()


def one_rate(control: bytes, dgrams: list[bytes], per: int, rate: float, seconds: float,
             cpu: int | None, sender_cpu: int | None) -> dict:
    from poolwatch_sensor.collector import FlowCollector

    coll = FlowCollector("127.0.0.1", 0)
    ctx = mp.get_context("fork")
    ready, go, result = ctx.Event(), ctx.Event(), ctx.Queue()
    proc = ctx.Process(target=sender, args=(coll.address[1], control, dgrams, rate, seconds,
                                            sender_cpu, ready, go, result))
    proc.start()
    ready.wait()
    drops0 = coll.kernel_counters()[0] or 0
    cpu0 = time.process_time()
    go.set()
    start = time.perf_counter()
    sent = None
    quiet_since = None
    while True:
        coll.poll(0.02)
        if sent is None and not result.empty():
            sent, send_s = result.get()
        if sent is not None:
            if coll.stats["datagrams"] >= sent + 1:
                break
            quiet_since = quiet_since or time.perf_counter()
            if time.perf_counter() - quiet_since > 1.0:
                break
    elapsed = time.perf_counter() - start
    busy = time.process_time() - cpu0
    proc.join()
    coll.flush()
    drops = (coll.kernel_counters()[0] or 0) - drops0
    st = dict(coll.stats)
    coll.close()
    got = st["datagrams"] - 1
    return {"rate_dgrams": rate, "rate_records": rate * per, "sent": sent, "received": got,
            "records": st["records"], "kernel_drops": drops, "send_s": round(send_s, 3),
            "elapsed_s": round(elapsed, 3), "collector_cpu_s": round(busy, 3),
            "contacts": st["contacts"], "records_kept": st["records_kept"],
            "lag_s": round(elapsed - send_s, 3),
            "records_per_cpu_s": round(st["records"] / busy) if busy else None,
            # kept up: nothing dropped, and no backlog left in the (large) receive buffer
            "ok": drops == 0 and got == sent and elapsed - send_s <= max(0.5, 0.1 * seconds)}


# ----------------------------------------------------------------------------- main
def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--workdir", type=Path,
                    default=Path(tempfile.gettempdir()) / "poolwatch-bench-flows")
    ap.add_argument("--copies", type=int, default=200, help="make_bench_pcap copies")
    ap.add_argument("--records", type=int, default=30, help="records per synthetic datagram")
    ap.add_argument("--distinct", type=int, default=20000, help="distinct synthetic datagrams")
    ap.add_argument("--mining-share", type=float, default=0.01)
    ap.add_argument("--seconds", type=float, default=3.0, help="sending time per rate")
    ap.add_argument("--rates", default="5000,10000,20000,30000,40000,50000,60000,80000,100000",
                    help="datagram rates to try, ascending")
    ap.add_argument("--cpu", type=int, default=0, help="core for the collector")
    ap.add_argument("--sender-cpu", type=int, default=1)
    ap.add_argument("--versions", default="9,10")
    ap.add_argument("--json", type=Path, help="write the results here too")
    args = ap.parse_args()
    args.workdir.mkdir(parents=True, exist_ok=True)
    if args.cpu is not None:
        os.sched_setaffinity(0, {args.cpu})
    results: dict = {"machine": {"cpus": os.cpu_count()}, "versions": {}}
    for version in (int(v) for v in args.versions.split(",")):
        name = "netflow-v9" if version == 9 else "ipfix"
        real = exporter_datagrams(args.workdir, version, args.copies)
        ours, n_ours = decode_rate(real)
        lib = netflow_rate(real[: min(len(real), 400)], min_s=1.0)
        row: dict = {"exporter_datagrams": len(real), "exporter_records": n_ours,
                     "decode_records_per_s": round(ours)}
        if lib is not None:
            _, n_lib_all = netflow_rate(real, min_s=0.0) or (0, -1)
            row["netflow_records_per_s"] = round(lib[0])
            row["netflow_same_records"] = n_lib_all == n_ours
            row["speedup"] = round(ours / lib[0], 1)
        print(f"{name}: softflowd sent {len(real)} datagrams, {n_ours} records; decode only: "
              f"poolwatch {ours:,.0f} records/s"
              + (f", netflow {lib[0]:,.0f} records/s ({ours / lib[0]:.0f}x)" if lib else ""),
              flush=True)
        d = FlowDecoder()
        d.decode([(g, "127.0.0.1") for g in real[:4]])
        templates = d.templates("127.0.0.1", version, 0)
        data_tid = min(t for t, tp in templates.items() if not tp.options)
        fields = [(ie, length) for ie, length, _ in templates[data_tid].fields]
        control = control_datagram(version, control_sets(real[0], version))
        synth = synthetic(version, control, data_tid, fields, args.distinct, args.records,
                          args.mining_share)
        syn_rate, _n_syn = decode_rate([control] + synth[:5000])
        row["synthetic_decode_records_per_s"] = round(syn_rate)
        print(f"{name}: synthetic datagrams ({args.records} records, softflowd's template "
              f"{data_tid}): decode only {syn_rate:,.0f} records/s", flush=True)
        runs = []
        best = None
        for rate in (float(r) for r in args.rates.split(",")):
            r = one_rate(control, synth, args.records, rate, args.seconds, args.cpu,
                         args.sender_cpu)
            runs.append(r)
            print(f"  {rate:>8,.0f} datagrams/s = {rate * args.records:>10,.0f} records/s: "
                  f"received {r['received']}/{r['sent']}, kernel drops {r['kernel_drops']}, "
                  f"lag {r['lag_s']} s, collector CPU {r['collector_cpu_s']} s over "
                  f"{r['elapsed_s']} s "
                  f"{'OK' if r['ok'] else 'FAIL'}", flush=True)
            if r["ok"]:
                best = r
            elif best is not None or rate > float(args.rates.split(",")[0]):
                break
        row["runs"] = runs
        row["zero_drop_records_per_s"] = best["rate_records"] if best else 0
        row["records_per_collector_cpu_s"] = max((r["records_per_cpu_s"] or 0) for r in runs)
        print(f"{name}: highest rate with zero drops: "
              f"{row['zero_drop_records_per_s']:,.0f} records/s decoded and judged; the "
              f"collector's own CPU time: up to {row['records_per_collector_cpu_s']:,.0f} "
              f"records per CPU second", flush=True)
        results["versions"][name] = row
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
