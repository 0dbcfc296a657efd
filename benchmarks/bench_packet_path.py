#!/usr/bin/env python3
"""Packet-path speed benchmark: how fast does each tool turn a pcap into flows?

poolwatch promises to scan captures at least 5x faster than nDPI's own
``ndpiReader`` on one core, and to stay under 500 MB of memory on a ~700 MB
capture.  This script checks both promises on the machine it runs on, next to
the fixed points that tell you what the numbers mean:

* ``cat FILE > /dev/null``: reading the file from the page cache, the ceiling
  no tool can beat;
* the file's SHA-256, computed as ``poolwatch scan`` computes it for evidence: on one
  core, a part of every scan's time that no faster code removes;
* ``ndpiReader``: the C reference (flow table plus deep packet inspection);
* ``tshark``: Wireshark's dissectors, with and without dissection;
* a plain dpkt loop: what pure Python costs per packet;
* each poolwatch engine (``fast``, ``dpkt``, ``scapy``, ``pyshark``) through
  its CLI, exactly as a user runs it;
* ``poolwatch scan`` (the mining-session scan, fast engine) on the same input,
  next to ``poolwatch flows``: the same 5x goal applies to it.

The input is built at run time (nothing large goes into the repo): every
Ethernet capture of the peer corpus is merged with ``mergecap``, then repeated
with ``make_bench_pcap.py`` (each copy gets its own addresses, so every copy
makes new flows) until there are at least ``--packets`` packets.  Inputs are
cached in ``--workdir`` and reused on the next run.

Every measured command runs pinned to one core (``taskset -c 0``); wall time
and the peak RSS of the whole process (``ru_maxrss`` from ``os.wait4``) are
taken by this script, not reported by the tools themselves.

Run ``python benchmarks/bench_packet_path.py --help`` for the options, and see
``docs/performance.md`` for what each row means and the last recorded results.
"""
from __future__ import annotations

import argparse
import csv
import dataclasses
import hashlib
import io
import json
import math
import os
import platform
import re
import shlex
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from importlib import metadata
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_CORPUS = REPO_ROOT.parent / "shared" / "peer-corpus" / "ndpi" / "pcap"
DEFAULT_MAKE_BENCH = REPO_ROOT.parent / "shared" / "tools" / "make_bench_pcap.py"
DEFAULT_WORKDIR = Path(tempfile.gettempdir()) / "poolwatch-bench"
REQUIRED_TOOLS = ("capinfos", "mergecap", "taskset", "cat")
ENGINES = ("fast", "dpkt", "scapy", "pyshark")
# poolwatch-scan (`poolwatch scan --no-contacts`: sessions only, fast engine) and
# poolwatch-scan-contacts (`poolwatch scan`: sessions and pool contacts) sit next to
# poolwatch-fast (`flows`).
ALL_ROWS = ("cat", "sha256", "ndpiReader", "tshark-read", "tshark", "dpkt-loop", "poolwatch-fast",
            "poolwatch-scan", "poolwatch-scan-contacts") + tuple("poolwatch-" + e for e in ENGINES if e != "fast")
GOAL_SPEEDUP = 5.0      # fast engine pkt/s (flows and scan) must be >= 5x ndpiReader's
# Mining sessions in one copy of the nDPI corpus: the 4 flows of mining.pcapng (see
# benchmarks/eval_corpus_sessions.py), so the scan must write COPIES x 4 sessions.
SESSIONS_PER_COPY = 4
GOAL_RSS_MB = 500.0     # fast engine peak RSS on the ~700 MB input
PCAP_HEADER_LEN = 24
PCAP_RECORD_LEN = 16
LONG_RUN_S = 60.0       # rows slower than this are not repeated (time budget)
MB = 1_000_000          # MB in this report are 10^6 bytes (like MB/s of disks)

# The "plain dpkt" baseline: what a careful pure-Python flow counter costs.
# It is written to the work dir so that the printed command can be re-run.
DPKT_LOOP = '''\
"""Plain dpkt baseline: decode Ethernet/IP(v6)/L4 and count packets per 5-tuple."""
import sys

import dpkt
from dpkt.ethernet import Ethernet
from dpkt.ip import IP
from dpkt.ip6 import IP6

flows = {}
packets = undecodable = 0
with open(sys.argv[1], "rb") as fh:
    for _ts, buf in dpkt.pcap.Reader(fh):
        packets += 1
        try:
            ip = Ethernet(buf).data
        except Exception:
            undecodable += 1
            continue
        if not isinstance(ip, (IP, IP6)):
            continue
        l4 = ip.data
        key = (ip.src, ip.dst, ip.p, getattr(l4, "sport", 0), getattr(l4, "dport", 0))
        flows[key] = flows.get(key, 0) + 1
print("packets=%d flows=%d undecodable=%d" % (packets, len(flows), undecodable))
'''


# The "sha256" fixed point: the capture's SHA-256, which every scan record's evidence
# names, computed as the scan computes it (hashlib over mapped windows of the file).
SHA256_FILE = '''\
"""SHA-256 of a file as poolwatch scan computes it: hashlib over 8 MB mapped windows."""
import hashlib
import mmap
import os
import sys

WINDOW = 8 << 20
digest = hashlib.sha256()
with open(sys.argv[1], "rb") as fh:
    size = os.fstat(fh.fileno()).st_size
    for offset in range(0, size, WINDOW):
        length = min(WINDOW, size - offset)
        with mmap.mmap(fh.fileno(), length, offset=offset, prot=mmap.PROT_READ,
                       flags=mmap.MAP_SHARED | getattr(mmap, "MAP_POPULATE", 0)) as window:
            digest.update(window)
print("sha256=%s bytes=%d" % (digest.hexdigest(), size))
'''


# --------------------------------------------------------------------------- data


@dataclasses.dataclass
class BenchInput:
    """One pcap that rows are measured on, with the facts the rates are computed from."""

    path: Path
    packets: int
    size: int           # file size in bytes (what cat reads; MB/s uses it)
    label: str          # e.g. "full input" or "first 20000 packets"


@dataclasses.dataclass
class Result:
    """One measured row of the table."""

    row: str
    tool: str
    command: str
    input_label: str
    packets: int
    size: int
    ok: bool = False
    returncode: int | None = None
    seconds: float | None = None
    cpu_seconds: float | None = None
    peak_rss_kb: int | None = None
    counted_packets: int | None = None   # packets the tool says it saw (None: not reported)
    sessions: int | None = None          # stratum_session records written (scan row only)
    note: str = ""

    @property
    def pkt_per_s(self) -> float | None:
        return self.packets / self.seconds if self.ok and self.seconds else None

    @property
    def mb_per_s(self) -> float | None:
        return self.size / MB / self.seconds if self.ok and self.seconds else None


# --------------------------------------------------------------------------- helpers


def fail(msg: str) -> None:
    """Stop with a message a person can act on (no traceback)."""
    sys.exit("bench_packet_path: error: " + msg)


def log(msg: str) -> None:
    """Progress goes to stderr so stdout stays the report."""
    print("[bench] " + msg, file=sys.stderr, flush=True)


def check_tools(names: tuple[str, ...]) -> None:
    """Fail early, naming the Debian package, rather than half-way through a run."""
    missing = [n for n in names if shutil.which(n) is None]
    if missing:
        fail("missing tools: %s (Debian: apt-get install tshark wireshark-common "
             "libndpi-bin util-linux)" % ", ".join(missing))


def run_quiet(cmd: list[str]) -> str:
    """Run a set-up command (not measured) and return its stdout; fail loudly on error."""
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        fail("command failed (%d): %s\n%s" % (proc.returncode, shlex.join(cmd),
                                               proc.stderr.strip()[-2000:]))
    return proc.stdout


# --------------------------------------------------------------------------- input


def ethernet_captures(corpus: Path) -> list[Path]:
    """Corpus files whose (only) link type is Ethernet.

    make_bench_pcap.py only rewrites Ethernet frames, and a classic pcap holds a
    single link type, so everything else (raw IP, Linux cooked, pcapng files with
    mixed interfaces, which capinfos reports as "per-packet") is left out.
    capinfos reads pcapng too, so Ethernet-only pcapng files are kept.
    """
    if not corpus.is_dir():
        fail("corpus directory %s not found; pass --corpus DIR with pcap/pcapng "
             "files (the default is the nDPI peer corpus in ../shared)" % corpus)
    files = sorted(p for p in corpus.iterdir()
                   if p.is_file() and p.suffix.lower() in (".pcap", ".pcapng", ".cap"))
    if not files:
        fail("no .pcap/.pcapng/.cap files in %s" % corpus)
    # -T -m: one comma-separated line per file; -Q quotes fields; -E encapsulation.
    proc = subprocess.run(["capinfos", "-T", "-m", "-Q", "-E", *map(str, files)],
                          capture_output=True, text=True)
    keep = [corpus / name for name, encap, *_ in list(csv.reader(io.StringIO(proc.stdout)))[1:]
            if encap == "ether"]
    if not keep:
        fail("no Ethernet captures in %s" % corpus)
    return keep


def corpus_fingerprint(files: list[Path], make_bench: Path) -> str:
    """Name cached inputs after their sources, so a changed corpus is never reused stale."""
    h = hashlib.sha256()
    for p in files:
        st = p.stat()
        h.update(("%s %d %d\n" % (p.name, st.st_size, st.st_mtime_ns)).encode())
    h.update(make_bench.read_bytes())
    return h.hexdigest()[:12]


def count_pcap_records(path: Path) -> int:
    """Count records of a classic pcap by walking its headers (no decoding)."""
    with path.open("rb") as fh:
        head = fh.read(PCAP_HEADER_LEN)
        endian = pcap_endian(head, path)
        rec = struct.Struct(endian + "IIII")
        n = 0
        while True:
            hdr = fh.read(PCAP_RECORD_LEN)
            if len(hdr) < PCAP_RECORD_LEN:
                return n
            fh.seek(rec.unpack(hdr)[2], os.SEEK_CUR)
            n += 1


def pcap_endian(head: bytes, path: Path) -> str:
    """struct byte-order prefix of a classic pcap, from its magic number."""
    magic = struct.unpack_from("<I", head, 0)[0] if len(head) >= 4 else 0
    if magic in (0xA1B2C3D4, 0xA1B23C4D):
        return "<"
    if magic in (0xD4C3B2A1, 0x4D3CB2A1):
        return ">"
    fail("%s is not a classic pcap file" % path)
    return "<"


def build_merged(files: list[Path], workdir: Path, fp: str) -> BenchInput:
    """mergecap -a (concatenate, do not sort by time) the Ethernet captures into one pcap."""
    out = workdir / ("merged-%s.pcap" % fp)
    if not out.exists():
        log("merging %d Ethernet captures into %s" % (len(files), out))
        tmp = out.with_suffix(".tmp")
        run_quiet(["mergecap", "-a", "-F", "pcap", "-w", str(tmp), *map(str, files)])
        tmp.rename(out)
    return BenchInput(out, count_pcap_records(out), out.stat().st_size, "merged corpus")


def build_repeated(merged: BenchInput, copies: int, workdir: Path, fp: str,
                   make_bench: Path) -> BenchInput:
    """Repeat the merged capture COPIES times with make_bench_pcap.py (cached by name)."""
    if not 1 <= copies <= 255:
        fail("need %d copies of the merged corpus (%d packets); make_bench_pcap.py "
             "allows 1..255: use a bigger corpus or fewer --packets" % (copies, merged.packets))
    out = workdir / ("bench-%s-%dx.pcap" % (fp, copies))
    packets = copies * merged.packets
    if out.exists() and out.stat().st_size == PCAP_HEADER_LEN + copies * (merged.size - PCAP_HEADER_LEN):
        log("reusing cached input %s" % out)
    else:
        log("building %s (%d copies, %d packets)" % (out, copies, packets))
        tmp = out.with_suffix(".tmp")
        said = run_quiet([sys.executable, str(make_bench), str(merged.path), str(tmp), str(copies)])
        m = re.search(r"wrote (\d+) packets", said)
        if not m or int(m.group(1)) != packets:
            fail("make_bench_pcap.py said %r, expected %d packets" % (said.strip(), packets))
        tmp.rename(out)
    return BenchInput(out, packets, out.stat().st_size, "full input")


def slice_prefix(src: BenchInput, n: int) -> BenchInput:
    """The first N packets of a classic pcap, for engines too slow for the full input.

    Done by walking record headers (a few lines, no editcap needed) and cached
    beside the source.
    """
    if n >= src.packets:
        return src
    out = src.path.with_name("%s-first%d.pcap" % (src.path.stem, n))
    if not out.exists():
        tmp = out.with_suffix(".tmp")
        with src.path.open("rb") as fin, tmp.open("wb") as fout:
            head = fin.read(PCAP_HEADER_LEN)
            rec = struct.Struct(pcap_endian(head, src.path) + "IIII")
            fout.write(head)
            for _ in range(n):
                hdr = fin.read(PCAP_RECORD_LEN)
                fout.write(hdr)
                fout.write(fin.read(rec.unpack(hdr)[2]))
        tmp.rename(out)
    return BenchInput(out, n, out.stat().st_size, "first %d packets" % n)


def warm_page_cache(path: Path) -> None:
    """Read the file once so that every row reads it from memory, not from disk."""
    with path.open("rb") as fh:
        while fh.read(8 << 20):
            pass


# --------------------------------------------------------------------------- measuring


def measure(res: Result, cmd: list[str], logdir: Path, cpu: int, timeout: float,
            env: dict[str, str] | None = None, stdout_devnull: bool = False) -> tuple[str, str]:
    """Run CMD pinned to one core; fill wall time, CPU time and peak RSS into RES.

    The child is ``taskset -c CPU cmd...``; taskset execs the command in the
    same process, so ``ru_maxrss`` from ``os.wait4`` is the tool's own peak RSS
    (for tools that start helpers, e.g. pyshark's tshark, it is the largest of
    the process and its waited-for children, not their sum).  stdout and stderr
    go to log files (stdout to /dev/null for ``cat``) and are returned, so the
    rows can check the packet counts the tools print.
    """
    full = ["taskset", "-c", str(cpu), *cmd]
    res.command = shlex.join(full) + (" > /dev/null" if stdout_devnull else "")
    if env:
        extra = {k: v for k, v in env.items() if os.environ.get(k) != v}
        res.command = " ".join("%s=%s" % (k, shlex.quote(v)) for k, v in extra.items()) + \
            (" " if extra else "") + res.command
    out_path = logdir / (res.row + ".stdout")
    err_path = logdir / (res.row + ".stderr")
    log("running %s" % res.command)
    with out_path.open("wb") as out, err_path.open("wb") as err:
        t0 = time.perf_counter()
        proc = subprocess.Popen(full, stdout=subprocess.DEVNULL if stdout_devnull else out,
                                stderr=err, stdin=subprocess.DEVNULL, env=env,
                                start_new_session=True)
        timer = threading.Timer(timeout, _kill_group, (proc.pid,))
        timer.start()
        _, status, usage = os.wait4(proc.pid, 0)
        res.seconds = time.perf_counter() - t0
        timer.cancel()
    proc.returncode = os.waitstatus_to_exitcode(status)   # reaped here, tell Popen
    res.returncode = proc.returncode
    res.cpu_seconds = usage.ru_utime + usage.ru_stime
    res.peak_rss_kb = usage.ru_maxrss
    res.ok = proc.returncode == 0
    stdout = "" if stdout_devnull else out_path.read_text(errors="replace")
    stderr = err_path.read_text(errors="replace")
    if not res.ok:
        tail = " ".join(line.strip() for line in stderr.strip().splitlines()[-3:])
        timed_out = res.seconds >= timeout
        res.note = ("timed out after %ds" % timeout if timed_out else
                    "exit %d: %s" % (proc.returncode, tail[:200]))
    return stdout, stderr


def _kill_group(pid: int) -> None:
    """Timeout: end the process group this script started for one measured command."""
    try:
        os.killpg(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def best_in_turn(runners: list[tuple[str, Callable[[], Result], int]]) -> list[Result]:
    """Each row's best (lowest wall time) run, the rows run in turn: one run of every row per
    round (ndpiReader, flows, scan, ndpiReader, flows, scan, ...), not all of one row's runs
    and then the next row's.

    The development VMs' speed moves by a fifth or more from one minute to the next; rows
    run in turn see the same minutes, so a ratio between two rows is not decided by one of
    them having run in a slow stretch. A row that fails, or whose run takes over
    LONG_RUN_S seconds, is not run again: it would not change the picture and would blow
    the time budget.
    """
    best: dict[str, Result] = {}
    runs: dict[str, int] = {}
    for rnd in range(max((times for _, _, times in runners), default=0)):
        for row, run, times in runners:
            prev = best.get(row)
            if rnd >= times or (prev is not None and (not prev.ok or prev.seconds >= LONG_RUN_S)):
                continue
            res = run()
            runs[row] = runs.get(row, 0) + 1
            if prev is None or (res.ok and res.seconds < prev.seconds):
                best[row] = res
    out = []
    for row, _, _ in runners:
        res = best[row]
        if runs[row] > 1:
            res.note = (res.note + "; " if res.note else "") + \
                "best of %d runs, rows in turn" % runs[row]
        out.append(res)
    return out


def check_count(res: Result, counted: int | None, what: str) -> None:
    """Record how many packets the tool says it processed, and flag any shortfall."""
    res.counted_packets = counted
    if counted is None:
        if res.ok:
            res.note = (res.note + "; " if res.note else "") + "packet count not reported"
        return
    if counted != res.packets:
        res.note = (res.note + "; " if res.note else "") + \
            "%s %d of %d packets" % (what, counted, res.packets)


# --------------------------------------------------------------------------- rows


def row_cat(inp: BenchInput, ctx: dict) -> Result:
    """cat FILE > /dev/null: the page-cache read ceiling."""
    res = Result("cat", "cat > /dev/null", "", inp.label, inp.packets, inp.size)
    measure(res, ["cat", str(inp.path)], ctx["logdir"], ctx["cpu"], ctx["timeout"],
            stdout_devnull=True)
    if res.ok:
        res.note = "reads bytes only"
    return res


def row_sha256(inp: BenchInput, ctx: dict) -> Result:
    """The capture's SHA-256 alone (see SHA256_FILE): a part of every scan's time that no
    faster code can remove, since the evidence of every record names it."""
    script = ctx["workdir"] / "sha256_file.py"
    script.write_text(SHA256_FILE)
    res = Result("sha256", "SHA-256 of the file (hashlib)", "", inp.label, inp.packets,
                 inp.size)
    out, _ = measure(res, [sys.executable, str(script), str(inp.path)], ctx["logdir"],
                     ctx["cpu"], ctx["timeout"])
    m = re.search(r"bytes=(\d+)", out)
    if res.ok and (m is None or int(m.group(1)) != inp.size):
        res.ok, res.note = False, f"hashed {m.group(1) if m else '?'} of {inp.size} bytes"
    elif res.ok:
        res.note = "hashes bytes only, as the scan does for evidence"
    return res


def row_ndpi(inp: BenchInput, ctx: dict) -> Result:
    """ndpiReader -i FILE: flow table + nDPI detection.

    No -q: in nDPI 4.2 -q only suppresses the final summary, and per-flow lines
    are printed only with -v, so the default prints a ~300-line summary once.
    That summary's "IP packets: X of Y packets total" is how we check that
    every packet was read.
    """
    res = Result("ndpiReader", "ndpiReader", "", inp.label, inp.packets, inp.size)
    out, _ = measure(res, ["ndpiReader", "-i", str(inp.path)], ctx["logdir"], ctx["cpu"],
                     ctx["timeout"])
    m = re.search(r"IP packets:\s+(\d+)\s+of\s+(\d+) packets total", out)
    check_count(res, int(m.group(2)) if m else None, "ndpiReader counted")
    if m:
        res.note = (res.note + "; " if res.note else "") + "%s IP packets" % m.group(1)
    return res


def row_tshark_read(inp: BenchInput, ctx: dict) -> Result:
    """tshark -r FILE -q with no tap: tshark skips dissection, so this is its read cost."""
    res = Result("tshark-read", "tshark -q (read only)", "", inp.label, inp.packets, inp.size)
    measure(res, ["tshark", "-n", "-r", str(inp.path), "-q"], ctx["logdir"], ctx["cpu"],
            ctx["timeout"])
    if res.ok:
        res.note = "no dissection (no tap, no output)"
    return res


def row_tshark(inp: BenchInput, ctx: dict) -> Result:
    """tshark with TCP and UDP conversation tables: dissection to L4 plus a flow table.

    This is the closest tshark gets to what the other rows do (decode every
    packet, key it by 5-tuple).  No protocol tree is built because no display
    filter or output needs one.  io,stat,0 adds the frame count we check.
    """
    res = Result("tshark", "tshark -z conv,tcp -z conv,udp", "", inp.label, inp.packets, inp.size)
    out, _ = measure(res, ["tshark", "-n", "-r", str(inp.path), "-q", "-z", "io,stat,0",
                           "-z", "conv,tcp", "-z", "conv,udp"],
                     ctx["logdir"], ctx["cpu"], ctx["timeout"])
    m = re.search(r"<>\s*[\d.]+\s*\|\s*(\d+)\s*\|", out)
    check_count(res, int(m.group(1)) if m else None, "tshark counted")
    return res


def row_dpkt_loop(inp: BenchInput, ctx: dict) -> Result:
    """A plain dpkt loop: pure-Python decode + dict of 5-tuples (see DPKT_LOOP)."""
    script = ctx["workdir"] / "dpkt_loop.py"
    script.write_text(DPKT_LOOP)
    res = Result("dpkt-loop", "plain dpkt loop", "", inp.label, inp.packets, inp.size)
    out, _ = measure(res, [sys.executable, str(script), str(inp.path)], ctx["logdir"],
                     ctx["cpu"], ctx["timeout"])
    m = re.search(r"packets=(\d+)", out)
    check_count(res, int(m.group(1)) if m else None, "dpkt loop counted")
    return res


def poolwatch_command() -> tuple[list[str], dict[str, str] | None, str]:
    """How to start the poolwatch CLI: the installed script, else the repo's src/.

    Returns (argv prefix, environment or None, description).
    """
    exe = shutil.which("poolwatch")
    if exe:
        return [exe], None, "installed script %s" % exe
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO_ROOT / "src") + (
        os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    code = "import sys; from poolwatch.launch import main; sys.exit(main())"
    return [sys.executable, "-c", code], env, "repo sources (PYTHONPATH=src, poolwatch.launch:main)"


def row_poolwatch(engine: str, inp: BenchInput, ctx: dict) -> Result:
    """poolwatch flows FILE --engine ENGINE, CSV to /dev/null, as a user would run it."""
    argv, env, _ = ctx["poolwatch"]
    res = Result("poolwatch-" + engine, "poolwatch --engine " + engine, "", inp.label,
                 inp.packets, inp.size)
    _, err = measure(res, [*argv, "flows", str(inp.path), "--engine", engine, "--format",
                           "csv", "--out", "/dev/null", "--no-progress"],
                     ctx["logdir"], ctx["cpu"], ctx["timeout"], env=env)
    if res.ok:
        # The CLI's summary line, e.g. "1 file(s), 2,040,640 packets, ... in 1.83 s":
        # its packet count is checked, and its own time shows the start-up share.
        text = " ".join(err.split())
        m = re.search(r"([\d,]+) packets\b.*? in ([\d.]+) s\b", text)
        check_count(res, int(m.group(1).replace(",", "")) if m else None, "poolwatch counted")
        if m:
            res.note = (res.note + "; " if res.note else "") + \
                "CLI reports %s s for the scan itself (the rest is start-up and output)" % m.group(2)
    return res


def row_poolwatch_scan(inp: BenchInput, ctx: dict, expected_sessions: int | None,
                       contacts: bool = False) -> Result:
    """poolwatch scan FILE (fast engine), JSON lines to a file in the work dir.

    The same product path as the flows row plus the session scan: the prefilter
    kernel, TCP reassembly of the selected flows, the Stratum tracker and the
    session records. The records written are counted (each copy of the nDPI
    corpus holds the 4 sessions of mining.pcapng). With ``contacts`` the pool
    contact detectors run too (flow table, passive DNS, TLS handshakes, behaviour
    kernel, the judge), as `poolwatch scan` does by default.
    """
    argv, env, _ = ctx["poolwatch"]
    out_file = ctx["workdir"] / ("scan-contacts.jsonl" if contacts else "scan-sessions.jsonl")
    out_file.unlink(missing_ok=True)
    if contacts:
        res = Result("poolwatch-scan-contacts", "poolwatch scan (fast, with contacts)", "",
                     inp.label, inp.packets, inp.size)
    else:
        res = Result("poolwatch-scan", "poolwatch scan --no-contacts (fast)", "", inp.label,
                     inp.packets, inp.size)
    _, err = measure(res, [*argv, "scan", str(inp.path), "--engine", "fast", "--format",
                           "jsonl", "--out", str(out_file), "--no-progress",
                           *(() if contacts else ("--no-contacts",))],
                     ctx["logdir"], ctx["cpu"], ctx["timeout"], env=env)
    if not res.ok:
        return res
    # "1 file(s), 2,040,640 packets, 710.5 MB, 80 mining session(s) in 2.31 s (...)"
    text = " ".join(err.split())
    m = re.search(r"([\d,]+) packets\b.*? in ([\d.]+) s\b", text)
    check_count(res, int(m.group(1).replace(",", "")) if m else None, "poolwatch counted")
    if m:
        res.note = (res.note + "; " if res.note else "") + \
            f"CLI reports {m.group(2)} s for the scan itself (the rest is start-up and output)"
    contacts_written = 0
    try:
        with out_file.open("rb") as fh:
            res.sessions = 0
            for line in fh:
                if b'"stratum_session"' in line:
                    res.sessions += 1
                elif b'"pool_contact"' in line:
                    contacts_written += 1
    except OSError:
        res.sessions = None
    said = re.search(r"([\d,]+) mining session", text)
    written = f"{res.sessions} stratum_session records written"
    if expected_sessions is not None:
        written += f" (expected {expected_sessions})"
    if contacts:
        written += f", {contacts_written} pool_contact records (nDPI's corpus: 0 expected)"
    if said and res.sessions is not None and int(said.group(1).replace(",", "")) != res.sessions:
        written += f"; the CLI said {said.group(1)}"
    res.note = (res.note + "; " if res.note else "") + written
    return res


def compile_bytecode(ctx: dict) -> str:
    """Byte-compile the poolwatch package the CLI imports, once, untimed.

    An installed package has its ``.pyc`` files (pip compiles a wheel's modules when it
    installs them, and Python writes them at the first import), but an editable install
    under ``PYTHONDONTWRITEBYTECODE=1`` (set on this project's development machines) compiles
    ~40 modules from source at every start: 0.15 s of each run that no user pays.
    """
    argv, env, _ = ctx["poolwatch"]
    python = sys.executable
    try:  # the interpreter of the installed script, from its #! line
        with open(argv[0], "rb") as fh:
            first = fh.readline().decode("utf-8", "replace")
        if first.startswith("#!") and "python" in first:
            python = first[2:].strip().split()[0]
    except OSError:
        pass
    where = subprocess.run([python, "-c", "import os, poolwatch; "
                            "print(os.path.dirname(poolwatch.__file__))"],
                           capture_output=True, text=True, env=env, check=False)
    pkg = where.stdout.strip()
    if where.returncode != 0 or not pkg:
        return "byte-compiling skipped: poolwatch not importable by %s" % python
    done = subprocess.run([python, "-m", "compileall", "-q", pkg], capture_output=True,
                          text=True, env=env, check=False)
    return "%s -m compileall -q %s (%s, not timed)" % (
        python, pkg, "ok" if done.returncode == 0 else "failed: " + done.stdout[-200:])


def warm_numba(inp: BenchInput, ctx: dict, command: str = "flows") -> str:
    """Run the fast engine once, untimed, so numba's on-disk cache is compiled.

    Otherwise the first timed run would include ~1 s of JIT compilation that no
    user pays twice. ``scan`` has kernels of its own (the prefilter), so it is
    warmed separately, on an input that holds mining sessions.
    """
    res = Result("warmup-" + command, "", "", inp.label, inp.packets, inp.size)
    argv, env, _ = ctx["poolwatch"]
    out = ["--format", "csv", "--out", "/dev/null"] if command == "flows" else \
        ["--format", "jsonl", "--out", "/dev/null"]
    measure(res, [*argv, command, str(inp.path), "--engine", "fast", *out, "--no-progress"],
            ctx["logdir"], ctx["cpu"], ctx["timeout"], env=env)
    return "%s (%s, %.1f s, not timed in the table)" % (
        res.command, "ok" if res.ok else "failed: " + res.note, res.seconds or 0)


# --------------------------------------------------------------------------- report


def machine_info(poolwatch_desc: str, loadavg: str | None) -> dict:
    """What the figures depend on: CPU, core count, memory and each tool's version."""
    info = {
        "nproc": os.cpu_count(),
        "cpu_model": _cpuinfo_model(),
        "mem_total": _meminfo("MemTotal"),
        "kernel": platform.release(),
        "loadavg_at_start": loadavg,
        "python": sys.version.split()[0],
        "poolwatch_cli": poolwatch_desc,
    }
    versions = {
        "ndpiReader": _first_match(["ndpiReader", "-h"], r"nDPI \(?([\d.]+)"),
        "tshark": _first_match(["tshark", "--version"], r"TShark \(Wireshark\) (\S+)"),
        "mergecap": _first_match(["mergecap", "--version"], r"Mergecap \(Wireshark\) (\S+)"),
        "cat": _first_match(["cat", "--version"], r"cat \(GNU coreutils\) (\S+)"),
    }
    for dist in ("dpkt", "numba", "numpy", "scapy", "pyshark", "poolwatch"):
        try:
            versions[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            versions[dist] = None
    if versions["poolwatch"] is None:
        m = re.search(r'__version__\s*=\s*"([^"]+)"',
                      (REPO_ROOT / "src" / "poolwatch" / "__init__.py").read_text())
        versions["poolwatch"] = (m.group(1) + " (src)") if m else None
    info["versions"] = versions
    return info


def _loadavg() -> str | None:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return None


def _cpuinfo_model() -> str | None:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or None


def _meminfo(key: str) -> str | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith(key + ":"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return None


def _first_match(cmd: list[str], pattern: str) -> str | None:
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    m = re.search(pattern, p.stdout + p.stderr)
    return m.group(1) if m else None


def fmt(value: float | int | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def render_table(results: list[Result], ndpi_rate: float | None) -> str:
    """The human table: one line per row, failures kept in place and marked."""
    head = ("tool", "input", "packets", "MB", "seconds", "pkt/s", "MB/s", "x ndpiReader",
            "peak RSS MB", "CPU s")
    rows = []
    for r in results:
        ratio = r.pkt_per_s / ndpi_rate if r.pkt_per_s and ndpi_rate else None
        rows.append((
            r.tool + ("" if r.ok else " (FAILED)"), r.input_label, fmt(r.packets, ","),
            fmt(r.size / MB, ",.1f"), fmt(r.seconds if r.ok else None, ".2f"),
            fmt(r.pkt_per_s, ",.0f"), fmt(r.mb_per_s, ",.1f"), fmt(ratio, ".2f"),
            fmt(r.peak_rss_kb / 1024 if r.peak_rss_kb and r.ok else None, ",.0f"),
            fmt(r.cpu_seconds if r.ok else None, ".2f")))
    widths = [max(len(h), *(len(row[i]) for row in rows)) for i, h in enumerate(head)]
    lines = ["  ".join(h.ljust(w) if i < 2 else h.rjust(w) for i, (h, w) in enumerate(zip(head, widths)))]
    lines.append("  ".join("-" * w for w in widths))
    for row in rows:
        lines.append("  ".join(c.ljust(w) if i < 2 else c.rjust(w)
                               for i, (c, w) in enumerate(zip(row, widths))))
    return "\n".join(lines)


def expected_sessions(args: argparse.Namespace, merged: BenchInput,
                      full: BenchInput) -> int | None:
    """Sessions the scan row must write: 4 per copy of the nDPI corpus (None for others)."""
    if args.corpus.resolve() != DEFAULT_CORPUS.resolve():
        return None
    return full.packets // merged.packets * SESSIONS_PER_COPY


def goals_text(results: list[Result], ndpi: Result | None, memory: Result | None,
               expected_sessions: int | None = None) -> list[str]:
    """The two promises (speed for flows and scan, memory), checked against this run."""
    fast = next((r for r in results if r.row == "poolwatch-fast"), None)
    lines = []
    if fast is None or not fast.ok:
        lines.append("goal fast >= %.0fx ndpiReader pkt/s: not measured (fast engine %s)"
                     % (GOAL_SPEEDUP, "not run" if fast is None else "failed"))
    elif ndpi is None or not ndpi.pkt_per_s:
        lines.append("goal fast >= %.0fx ndpiReader pkt/s: ndpiReader not measured" % GOAL_SPEEDUP)
    else:
        ratio = fast.pkt_per_s / ndpi.pkt_per_s
        lines.append("goal fast >= %.0fx ndpiReader pkt/s: %.2fx -> %s"
                     % (GOAL_SPEEDUP, ratio, "MET" if ratio >= GOAL_SPEEDUP else "NOT MET"))
    both = next((r for r in results if r.row == "poolwatch-scan-contacts"), None)
    if both is not None and both.ok and ndpi is not None and ndpi.pkt_per_s:
        lines.append(f"scan with pool contacts: {both.pkt_per_s / ndpi.pkt_per_s:.2f}x "
                     f"ndpiReader pkt/s ({both.seconds:.2f} s; issue 4 asks only that the fast "
                     "path, `flows`, keeps its goal)")
    scan = next((r for r in results if r.row == "poolwatch-scan"), None)
    if scan is not None:
        if not scan.ok:
            lines.append(f"goal scan >= {GOAL_SPEEDUP:.0f}x ndpiReader pkt/s: not measured "
                         "(scan failed)")
        elif ndpi is None or not ndpi.pkt_per_s:
            lines.append(f"goal scan >= {GOAL_SPEEDUP:.0f}x ndpiReader pkt/s: ndpiReader "
                         "not measured")
        else:
            ratio = scan.pkt_per_s / ndpi.pkt_per_s
            verdict = "MET" if ratio >= GOAL_SPEEDUP else "NOT MET"
            lines.append(f"goal scan >= {GOAL_SPEEDUP:.0f}x ndpiReader pkt/s: {ratio:.2f}x "
                         f"-> {verdict}")
            sha = next((r for r in results if r.row == "sha256" and r.ok), None)
            if sha is not None and sha.seconds:
                budget = ndpi.seconds / GOAL_SPEEDUP
                lines.append(f"scan's budget at {GOAL_SPEEDUP:.0f}x: {budget:.2f} s; the "
                             f"capture's SHA-256 alone (row sha256, the evidence hash) takes "
                             f"{sha.seconds:.2f} s of it on this core, leaving "
                             f"{budget - sha.seconds:.2f} s for start-up, reading, decoding "
                             f"and detection (the scan spent {scan.seconds - sha.seconds:.2f} s)")
        fast_ok = fast is not None and fast.ok
        if scan.ok and fast_ok:
            lines.append(f"scan next to flows on the same input: {scan.seconds:.2f} s vs "
                         f"{fast.seconds:.2f} s, scan at {scan.pkt_per_s / fast.pkt_per_s:.2f}x "
                         "the pkt/s of flows")
        if scan.ok and expected_sessions is not None:
            verdict = "OK" if scan.sessions == expected_sessions else "MISMATCH"
            lines.append(f"scan sessions written: {scan.sessions}, expected "
                         f"{expected_sessions} ({expected_sessions // SESSIONS_PER_COPY} copies "
                         f"x {SESSIONS_PER_COPY} in mining.pcapng) -> {verdict}")
        elif scan.ok:
            lines.append(f"scan sessions written: {scan.sessions} (not the nDPI corpus: "
                         "no expected count)")
    if memory is None:
        lines.append("goal fast peak RSS < %.0f MB on ~700 MB input: not run (--size-mb 0)"
                     % GOAL_RSS_MB)
    elif not memory.ok:
        lines.append("goal fast peak RSS < %.0f MB on %.0f MB input: not measured (failed: %s)"
                     % (GOAL_RSS_MB, memory.size / MB, memory.note))
    else:
        rss = memory.peak_rss_kb / 1024
        lines.append("goal fast peak RSS < %.0f MB on %.0f MB input: %.0f MB -> %s"
                     % (GOAL_RSS_MB, memory.size / MB, rss, "MET" if rss < GOAL_RSS_MB else "NOT MET"))
    return lines


# --------------------------------------------------------------------------- main


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description="Measure packets/s, MB/s and peak RSS of cat, ndpiReader, tshark, a "
                    "plain dpkt loop, each poolwatch engine (poolwatch flows) and the "
                    "mining-session scan (poolwatch scan) on one core, on a large "
                    "capture built at run time from the peer corpus.",
        epilog="Example: python benchmarks/bench_packet_path.py --json /tmp/bench.json")
    p.add_argument("--corpus", type=Path, default=DEFAULT_CORPUS,
                   help="directory of captures to build the input from; the Ethernet "
                        "ones are used (default: %(default)s)")
    p.add_argument("--make-bench", type=Path, default=DEFAULT_MAKE_BENCH,
                   help="path of make_bench_pcap.py (default: %(default)s)")
    p.add_argument("--workdir", type=Path, default=DEFAULT_WORKDIR,
                   help="where inputs, logs and caches go; cached inputs are reused "
                        "(default: %(default)s). Never inside the repo.")
    p.add_argument("--packets", type=int, default=2_000_000,
                   help="minimum packets in the speed input (default: %(default)s)")
    p.add_argument("--size-mb", type=float, default=700,
                   help="also build a capture of at least this many MB (10^6 bytes) and "
                        "report the fast engine's peak RSS on it; 0 skips it. If the speed "
                        "input is the same file, its fast row is reused (default: %(default)s)")
    p.add_argument("--scapy-packets", type=int, default=100_000,
                   help="prefix length for the scapy engine, which runs at a few k pkt/s "
                        "(default: %(default)s)")
    p.add_argument("--pyshark-packets", type=int, default=20_000,
                   help="prefix length for the pyshark engine, which runs at ~300-1000 "
                        "pkt/s (default: %(default)s)")
    p.add_argument("--only", default=",".join(ALL_ROWS),
                   help="comma-separated rows to run (default: all: %(default)s)")
    p.add_argument("--repeat", type=int, default=3,
                   help="run each full-input row up to this many times and keep the fastest "
                        "(rows over %d s and prefix rows run once) (default: %%(default)s)"
                   % LONG_RUN_S)
    p.add_argument("--cpu", type=int, default=0,
                   help="core every measured process is pinned to (default: %(default)s)")
    p.add_argument("--timeout", type=float, default=600,
                   help="seconds before a measured command is killed (default: %(default)s)")
    p.add_argument("--json", type=Path, help="also save the results to this JSON file")
    args = p.parse_args(argv)
    unknown = set(args.only.split(",")) - set(ALL_ROWS)
    if unknown:
        p.error("unknown rows for --only: %s (choose from %s)"
                % (", ".join(sorted(unknown)), ", ".join(ALL_ROWS)))
    if args.workdir.resolve().is_relative_to(REPO_ROOT):
        p.error("--workdir must be outside the repo (%s)" % REPO_ROOT)
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    loadavg = _loadavg()   # before any work of ours: is someone else using the machine?
    rows = args.only.split(",")
    check_tools(REQUIRED_TOOLS + tuple(
        t for t, r in (("ndpiReader", "ndpiReader"), ("tshark", "tshark"),
                       ("tshark", "tshark-read")) if r in rows))
    if not args.make_bench.is_file():
        fail("make_bench_pcap.py not found at %s (use --make-bench)" % args.make_bench)
    args.workdir.mkdir(parents=True, exist_ok=True)
    logdir = args.workdir / "logs"
    logdir.mkdir(exist_ok=True)

    files = ethernet_captures(args.corpus)
    fp = corpus_fingerprint(files, args.make_bench)
    merged = build_merged(files, args.workdir, fp)
    log("corpus: %d Ethernet captures, %d packets, %.1f MB merged"
        % (len(files), merged.packets, merged.size / MB))
    copies = math.ceil(args.packets / merged.packets)
    full = build_repeated(merged, copies, args.workdir, fp, args.make_bench)
    warm_page_cache(full.path)

    ctx = {"logdir": logdir, "workdir": args.workdir, "cpu": args.cpu,
           "timeout": args.timeout, "poolwatch": poolwatch_command(), "loadavg": loadavg}
    prefixes = {"scapy": slice_prefix(full, args.scapy_packets),
                "pyshark": slice_prefix(full, args.pyshark_packets)}
    simple = {"cat": row_cat, "sha256": row_sha256, "ndpiReader": row_ndpi, "tshark-read": row_tshark_read,
              "tshark": row_tshark, "dpkt-loop": row_dpkt_loop}

    # Warm-ups first, then the timed runs: every row once per round, rounds in turn.
    runners: list[tuple[str, Callable[[], Result], int]] = []  # (row, run, runs at most)
    warmup = None
    for row in ALL_ROWS:
        if row not in rows:
            continue
        if row.startswith("poolwatch") and "bytecode" not in ctx:
            ctx["bytecode"] = compile_bytecode(ctx)
        if row in simple:
            runners.append((row, lambda r=row: simple[r](full, ctx), args.repeat))
            continue
        if row in ("poolwatch-scan", "poolwatch-scan-contacts"):
            # One copy of the corpus holds the mining sessions, so every scan kernel and
            # code path is compiled and loaded once before the timed runs.
            if "warmup_scan" not in ctx:
                ctx["warmup_scan"] = warm_numba(merged, ctx, command="scan")
            want = expected_sessions(args, merged, full)
            with_contacts = row == "poolwatch-scan-contacts"
            runners.append((row, lambda w=want, c=with_contacts:
                            row_poolwatch_scan(full, ctx, w, contacts=c), args.repeat))
            continue
        engine = row.split("-", 1)[1]
        if engine == "fast":
            warmup = warm_numba(prefixes["pyshark"], ctx)
        inp = prefixes.get(engine, full)
        runners.append((row, lambda e=engine, i=inp: row_poolwatch(e, i, ctx),
                        1 if inp is not full else args.repeat))
    results = best_in_turn(runners)

    memory = run_memory_check(args, merged, full, results, ctx, fp) \
        if args.size_mb and "poolwatch-fast" in rows else None

    ndpi = next((r for r in results if r.row == "ndpiReader" and r.ok), None)
    report = build_report(args, files, merged, full, results, memory, ndpi, warmup, ctx)
    print(report)
    if args.json:
        save_json(args.json, args, files, merged, full, results, memory, ndpi, warmup, ctx)
        log("results saved to %s" % args.json)
    return 0


def run_memory_check(args: argparse.Namespace, merged: BenchInput, full: BenchInput,
                     results: list[Result], ctx: dict, fp: str) -> Result:
    """Fast engine peak RSS on a capture of at least --size-mb MB.

    When the speed input already is that file (the default: 2M packets of the
    nDPI corpus are ~710 MB), the fast row is that measurement; no second run.
    """
    copies = math.ceil((args.size_mb * MB - PCAP_HEADER_LEN) / (merged.size - PCAP_HEADER_LEN))
    fast = next((r for r in results if r.row == "poolwatch-fast"), None)
    big = full if copies == math.ceil(args.packets / merged.packets) else \
        build_repeated(merged, copies, args.workdir, fp, args.make_bench)
    if big is full and fast is not None:
        return fast
    warm_page_cache(big.path)
    res = row_poolwatch("fast", big, ctx)
    res.row, res.tool = "memory-fast", "poolwatch --engine fast (memory)"
    res.input_label = "%.0f MB input" % (big.size / MB)
    return res


def build_report(args, files, merged, full, results, memory, ndpi, warmup, ctx) -> str:
    """Everything a reader needs to trust or reproduce the figures, as plain text."""
    info = machine_info(ctx["poolwatch"][2], ctx["loadavg"])
    out = ["poolwatch packet-path benchmark", "=" * 31, ""]
    out.append("machine: %s, nproc %s, %s RAM, Linux %s, Python %s" % (
        info["cpu_model"], info["nproc"], info["mem_total"], info["kernel"], info["python"]))
    out.append("versions: " + ", ".join("%s %s" % (k, v) for k, v in info["versions"].items()))
    out.append("load average when the run started: %s (the machine may be shared; "
               "'CPU s' below much less than 'seconds' means the core was busy)"
               % info["loadavg_at_start"])
    out.append("pinned to core %d with taskset; wall time and peak RSS (ru_maxrss) "
               "measured by this script; MB = 10^6 bytes" % args.cpu)
    out.append("input: %s: %d packets, %.1f MB = %d copies (make_bench_pcap.py) of %d "
               "Ethernet captures from %s merged with mergecap -a (%d packets, %.1f MB)" % (
                   full.path, full.packets, full.size / MB, full.packets // merged.packets,
                   len(files), args.corpus, merged.packets, merged.size / MB))
    shown = results + ([memory] if memory and memory not in results else [])
    out.append("")
    out.append(render_table(shown, ndpi.pkt_per_s if ndpi else None))
    out.append("")
    out.append("x ndpiReader compares pkt/s with ndpiReader's on the full input; rows on a "
               "prefix ('first N packets') are rates on that prefix only.")
    out.extend(goals_text(results, ndpi, memory, expected_sessions(args, merged, full)))
    notes = [(r.tool, r.note) for r in shown if r.note]
    if notes:
        out += ["", "notes:"] + ["  %s: %s" % n for n in notes]
    out += ["", "commands (stdout/stderr in %s):" % ctx["logdir"]]
    if ctx.get("bytecode"):
        out.append("  byte-compiled: " + ctx["bytecode"])
    if warmup:
        out.append("  warm-up, numba cache: " + warmup)
    if ctx.get("warmup_scan"):
        out.append("  warm-up, numba cache (scan): " + ctx["warmup_scan"])
    for r in shown:
        out.append("  %s: %s" % (r.row, r.command))
    return "\n".join(out)


def save_json(path: Path, args, files, merged, full, results, memory, ndpi, warmup, ctx) -> None:
    """Machine-readable copy of the report, for comparing runs over time."""
    def row(r: Result) -> dict:
        d = dataclasses.asdict(r)
        d.update(pkt_per_s=r.pkt_per_s, mb_per_s=r.mb_per_s,
                 x_ndpiReader=(r.pkt_per_s / ndpi.pkt_per_s
                               if r.pkt_per_s and ndpi and ndpi.pkt_per_s else None),
                 peak_rss_mb=r.peak_rss_kb / 1024 if r.peak_rss_kb else None)
        return d

    doc = {
        "when": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "machine": machine_info(ctx["poolwatch"][2], ctx["loadavg"]),
        "cpu_pinned": args.cpu,
        "input": {"path": str(full.path), "packets": full.packets, "bytes": full.size,
                  "copies": full.packets // merged.packets, "corpus": str(args.corpus),
                  "corpus_files": len(files), "merged_packets": merged.packets,
                  "merged_bytes": merged.size},
        "warmup": warmup,
        "results": [row(r) for r in results],
        "memory": row(memory) if memory else None,
        "warmup_scan": ctx.get("warmup_scan"),
        "bytecode": ctx.get("bytecode"),
        "expected_sessions": expected_sessions(args, merged, full),
        "goals": goals_text(results, ndpi, memory, expected_sessions(args, merged, full)),
    }
    path.write_text(json.dumps(doc, indent=2) + "\n")


if __name__ == "__main__":
    sys.exit(main())
