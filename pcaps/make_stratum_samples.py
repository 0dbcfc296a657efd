#!/usr/bin/env python3
"""Regenerate poolwatch's mining-session sample captures (pcaps/stratum/), byte for byte.

Usage::

    python pcaps/make_stratum_samples.py [OUTDIR]

OUTDIR defaults to ``stratum/`` next to this script. It reuses the packet, link-layer, pcap
writer and flow-oracle helpers of ``make_samples.py`` (imported as a module), so the flow
rules, the byte accounting and the file format are exactly those of the other samples. Every
capture is built from a fixed seed and fixed timestamps (from 2026-03-02T09:00:00Z on, ten
minutes apart), so two runs give byte-identical files. Only documentation/test/private
addresses are used; nothing is sent anywhere.

Each ``<name>.pcap`` gets a ``<name>.expected.json`` with the same flow oracle as
``make_samples.py`` writes, plus a ``"sessions"`` list: what a correct mining detector must
report for that capture, recorded by the generator from what it built (never by parsing the
file, never by running poolwatch). A session is one miner->pool connection:

* ``dialect``: stratum-v1, stratum-v1-zcash, ethproxy, ethereumstratum-1, ethereumstratum-2,
  cryptonote, stratum-v2 or getwork (fingerprints/dialects.yaml ids);
* ``src_ip``/``src_port``: the miner, ``dest_ip``/``dest_port``: the pool (even when the flow's
  ``src`` is the pool, e.g. a capture that starts mid-session);
* ``agent``, ``login`` (as sent), ``worker``, ``wallet``, ``coin``, ``algorithm``: null when the
  traffic cannot tell;
* ``shares_submitted``/``_accepted``/``_rejected``; ``share_frames`` (1-based frame numbers) and
  ``share_results`` (accepted/rejected/unanswered), in submission order;
* ``difficulty``: the last value in effect as the dialect writes it (a number for
  set_difficulty dialects, the hex string for target dialects), ``difficulty_kind``, and
  ``difficulty_changes``: [frame, value] each time the announced value changes (first
  announcement included);
* ``first_frame``: the first frame carrying payload of the session's connection;
* ``expected_hashrate_hs``: the true hashrate the generator chose; shares were timed so that
  ``sum(W_i) / (ts(hashrate_window_frames[1]) - ts(hashrate_window_frames[0]))`` equals it
  (checked here to 2 %), W_i the work of share i under ``hashrate_formula``; any reasonable
  estimator must land within ``hashrate_tolerance`` (relative);
* scenario extras (``workers``, ``reported_hashrate_hs``, ``pool_host``, ``truth``, ``notes``).

"Frame of a message" means the frame at which the message becomes complete in the in-order,
reassembled TCP byte stream (what a reassembling reader sees): for a message split over
segments, the segment carrying its last byte; with out-of-order segments, the segment that
fills the hole; a retransmission never moves it.
"""

from __future__ import annotations

import base64
import email.utils
import hashlib
import itertools
import json
import re
import struct
import sys
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import make_samples as ms  # the project's own generator: packets, links, flow oracle

NS = ms.NS
MS = ms.MS
MASK32 = 0xFFFFFFFF
BASE_NS = ms.START_NS + 3600 * NS  # 2026-03-02T09:00:00Z
MAC_GW = ms.MAC_GW
TOLERANCE = 0.2


def start(k: int) -> int:
    """Capture k starts 10 minutes after capture k-1 (and an hour after the other samples)."""
    return BASE_NS + k * 600 * NS


# ---------------------------------------------------------------------------
# Hashes and address encodings (so wallets are well-formed, checksums included)
# ---------------------------------------------------------------------------
def sha256d(b: bytes) -> bytes:
    return hashlib.sha256(hashlib.sha256(b).digest()).digest()


def _rol64(a: int, n: int) -> int:
    n %= 64
    return ((a >> (64 - n)) | (a << n)) & 0xFFFFFFFFFFFFFFFF if n else a


def _keccak_f(lanes: list[list[int]]) -> list[list[int]]:
    r = 1
    for _ in range(24):
        c = [lanes[x][0] ^ lanes[x][1] ^ lanes[x][2] ^ lanes[x][3] ^ lanes[x][4] for x in range(5)]
        d = [c[(x + 4) % 5] ^ _rol64(c[(x + 1) % 5], 1) for x in range(5)]
        lanes = [[lanes[x][y] ^ d[x] for y in range(5)] for x in range(5)]
        x, y = 1, 0
        cur = lanes[x][y]
        for t in range(24):
            x, y = y, (2 * x + 3 * y) % 5
            cur, lanes[x][y] = lanes[x][y], _rol64(cur, (t + 1) * (t + 2) // 2)
        for y in range(5):
            row = [lanes[x][y] for x in range(5)]
            for x in range(5):
                lanes[x][y] = row[x] ^ ((~row[(x + 1) % 5]) & row[(x + 2) % 5])
        for j in range(7):
            r = ((r << 1) ^ ((r >> 7) * 0x71)) % 256
            if r & 2:
                lanes[0][0] ^= 1 << ((1 << j) - 1)
    return lanes


def keccak256(data: bytes) -> bytes:
    """Original Keccak-256 (Monero, Ethereum), not SHA3-256: padding byte 0x01."""
    rate = 136
    msg = bytearray(data) + b"\x01"
    msg += b"\0" * (-len(msg) % rate)
    msg[-1] |= 0x80
    lanes = [[0] * 5 for _ in range(5)]
    for off in range(0, len(msg), rate):
        for i in range(rate // 8):
            lanes[i % 5][i // 5] ^= int.from_bytes(msg[off + 8 * i:off + 8 * i + 8], "little")
        lanes = _keccak_f(lanes)
    return b"".join(lanes[i % 5][i // 5].to_bytes(8, "little") for i in range(4))


B58 = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"


def b58encode(b: bytes) -> str:
    n = int.from_bytes(b, "big")
    out = ""
    while n:
        n, r = divmod(n, 58)
        out = B58[r] + out
    return "1" * (len(b) - len(b.lstrip(b"\0"))) + out


def base58check(version: bytes, payload: bytes) -> str:
    data = version + payload
    return b58encode(data + sha256d(data)[:4])


BECH32 = "qpzry9x8gf2tvdw0s3jn54khce6mua7l"


def _convertbits(data: bytes, frm: int, to: int) -> list[int]:
    acc = bits = 0
    out = []
    for v in data:
        acc = (acc << frm) | v
        bits += frm
        while bits >= to:
            bits -= to
            out.append((acc >> bits) & ((1 << to) - 1))
    if bits:
        out.append((acc << (to - bits)) & ((1 << to) - 1))
    return out


def bech32_segwit(hrp: str, program: bytes) -> str:
    """BIP 173 bech32, witness version 0."""
    def polymod(values):
        gen = [0x3B6A57B2, 0x26508E6D, 0x1EA119FA, 0x3D4233DD, 0x2A1462B3]
        chk = 1
        for v in values:
            b = chk >> 25
            chk = (chk & 0x1FFFFFF) << 5 ^ v
            for i in range(5):
                chk ^= gen[i] if (b >> i) & 1 else 0
        return chk
    data = [0] + _convertbits(program, 8, 5)
    expand = [ord(c) >> 5 for c in hrp] + [0] + [ord(c) & 31 for c in hrp]
    pm = polymod(expand + data + [0] * 6) ^ 1
    chk = [(pm >> 5 * (5 - i)) & 31 for i in range(6)]
    return hrp + "1" + "".join(BECH32[d] for d in data + chk)


def kaspa_address(pubkey32: bytes) -> str:
    """kaspa:q... (version 0 = Schnorr P2PK), CashAddr-style checksum as kaspad's bech32.go."""
    def polymod(values):
        gens = [0x98F2BC8E61, 0x79B76D99E2, 0xF33E5FB3C4, 0xAE2EABE2A8, 0x1E4F43E470]
        c = 1
        for d in values:
            c0 = c >> 35
            c = ((c & 0x07FFFFFFFF) << 5) ^ d
            for i in range(5):
                if (c0 >> i) & 1:
                    c ^= gens[i]
        return c ^ 1
    prefix = "kaspa"
    data = _convertbits(b"\x00" + pubkey32, 8, 5)
    pm = polymod([ord(ch) & 31 for ch in prefix] + [0] + data + [0] * 8)
    chk = [(pm >> 5 * (7 - i)) & 31 for i in range(8)]
    return prefix + ":" + "".join(BECH32[d] for d in data + chk)


def monero_address(rng) -> str:
    """Standard Monero address: 0x12 || spend key || view key || keccak checksum, base58 in
    8-byte blocks (11 characters each, a final 5-byte block -> 7 characters)."""
    data = b"\x12" + bytes(rng.getrandbits(8) for _ in range(64))
    data += keccak256(data)[:4]
    sizes = [0, 2, 3, 5, 6, 7, 9, 10, 11]
    out = ""
    for i in range(0, len(data), 8):
        block = data[i:i + 8]
        n = int.from_bytes(block, "big")
        enc = ""
        while n:
            n, r = divmod(n, 58)
            enc = B58[r] + enc
        out += enc.rjust(sizes[len(block)], "1")
    return out


def eip55(addr20: bytes) -> str:
    low = addr20.hex()
    h = keccak256(low.encode()).hex()
    return "0x" + "".join(ch.upper() if int(h[i], 16) >= 8 else ch for i, ch in enumerate(low))


def rbytes(rng, n: int) -> bytes:
    return bytes(rng.getrandbits(8) for _ in range(n))


def rhex(rng, n: int) -> str:
    return rbytes(rng, n).hex()


# ---------------------------------------------------------------------------
# Message encodings
# ---------------------------------------------------------------------------
def jc(obj) -> bytes:
    """Compact JSON line (JSON.stringify / Go encoding/json style)."""
    return json.dumps(obj, separators=(",", ":")).encode() + b"\n"


def js(obj) -> bytes:
    """JSON line with ", " and ": " (cgminer/cpuminer sprintf style, Python json.dumps)."""
    return json.dumps(obj).encode() + b"\n"


def http_date(ts_ns: int) -> str:
    return email.utils.formatdate(ts_ns / NS, usegmt=True)


# ---------------------------------------------------------------------------
# TCP with a reassembly model: sequence/ack numbers follow what each side has received in
# order, so retransmissions and out-of-order segments get the right (duplicate) ACKs, and
# every registered message learns the frame at which it became complete.
# ---------------------------------------------------------------------------
class Rx:
    def __init__(self):
        self.delivered = 0
        self.pending: list[tuple[int, int]] = []
        self.fin: int | None = None

    def add(self, off: int, n: int) -> None:
        self.pending.append((off, off + n))
        self.pending.sort()
        keep = []
        for a, b in self.pending:
            if a <= self.delivered:
                self.delivered = max(self.delivered, b)
            else:
                keep.append((a, b))
        # a second pass: ranges that became contiguous after the first merge
        while keep and keep[0][0] <= self.delivered:
            a, b = keep.pop(0)
            self.delivered = max(self.delivered, b)
        self.pending = keep


@dataclass
class Msg:
    client: bool  # sent by the client (miner) side
    start: int
    end: int
    data: bytes
    frame: int | None = None
    ts: int | None = None


class Conn:
    """One TCP connection; side True = client (miner), False = server (pool)."""

    def __init__(self, cap: ms.Capture, link: ms.Link, cip: str, cport: int, sip: str,
                 sport: int, ttl_c: int = 64, ttl_s: int = 52, mss: int = 1460):
        self.cap, self.link = cap, link
        self.cip, self.cport, self.sip, self.sport = cip, cport, sip, sport
        self.ttl = {True: ttl_c, False: ttl_s}
        self.mss = mss
        self.isn = {True: cap.rng.getrandbits(32), False: cap.rng.getrandbits(32)}
        self.next = {True: 0, False: 0}
        self.rx = {True: Rx(), False: Rx()}
        self.msgs: dict[bool, list[Msg]] = {True: [], False: []}
        self.first_payload_frame: int | None = None
        self.win = {True: 502, False: 509}

    def endpoint(self, side: bool) -> tuple[str, int]:
        return (self.cip, self.cport) if side else (self.sip, self.sport)

    def ack_no(self, side: bool) -> int:
        peer = self.rx[not side]
        n = peer.delivered + (1 if peer.fin is not None and peer.delivered >= peer.fin else 0)
        return (self.isn[not side] + 1 + n) & MASK32

    def pkt(self, side: bool, flags: str, data: bytes = b"", off: int | None = None,
            options=None) -> int:
        if off is None:  # after our FIN, the next sequence number is one past it
            off = self.next[side] + (self.rx[side].fin is not None)
        src, sp = self.endpoint(side)
        dst, dp = self.endpoint(not side)
        seq = self.isn[side] if "S" in flags else (self.isn[side] + 1 + off) & MASK32
        ack = self.ack_no(side) if "A" in flags else 0
        win = (64240 if side else 65160) if "S" in flags else self.win[side]
        l4 = ms.TCP(sport=sp, dport=dp, seq=seq, ack=ack, flags=flags, window=win,
                    options=options or [])
        if data:
            l4 = l4 / ms.Raw(data)
        l3 = bytes(ms.l3_header(self.cap, src, dst, self.ttl[side]) / l4)
        meta = ms.meta_for(self.link, 6, src, sp, dst, dp, len(l3),
                           tcp_flags=int(ms.TCP(flags=flags).flags))
        self.cap.add(self.link.frame(l3, ms.is_v6(src), side), meta)
        frame = len(self.cap.pkts)
        if data:
            if self.first_payload_frame is None:
                self.first_payload_frame = frame
            self.rx[side].add(off, len(data))
            self.next[side] = max(self.next[side], off + len(data))
        if "F" in flags:
            self.rx[side].fin = off + len(data)
        for m in self.msgs[side]:
            if m.frame is None and m.end <= self.rx[side].delivered:
                m.frame, m.ts = frame, self.cap.t
        return frame

    def open(self, rtt_ms: float = 20.0) -> None:
        opts = [("MSS", self.mss), ("SAckOK", b""), ("WScale", 7)]
        self.pkt(True, "S", options=opts)
        self.cap.tick(rtt_ms * 0.9, rtt_ms * 1.1)
        self.pkt(False, "SA", options=opts)
        self.cap.tick(0.05, 0.2)
        self.pkt(True, "A")

    def register(self, side: bool, datas) -> tuple[list[Msg], bytes, int]:
        base = self.next[side]
        out, pos = [], base
        for d in datas:
            m = Msg(side, pos, pos + len(d), d)
            self.msgs[side].append(m)
            out.append(m)
            pos += len(d)
        return out, b"".join(datas), base

    def segments(self, buf: bytes, cuts=()) -> list[tuple[int, int, bool]]:
        """(start, end, push) pieces: explicit cuts are application writes (PSH each),
        longer pieces are cut at the MSS (no PSH but on the last)."""
        bounds = sorted({0, len(buf), *cuts})
        segs = []
        for a, b in itertools.pairwise(bounds):
            while b - a > self.mss:
                segs.append((a, a + self.mss, False))
                a += self.mss
            segs.append((a, b, True))
        return segs

    def write(self, side: bool, *datas: bytes, cuts=(), ack: bool = True,
              gap=(0.02, 0.12)) -> list[Msg]:
        """Send messages back to back. ack: the peer answers with a (delayed) pure ACK."""
        msgs, buf, base = self.register(side, datas)
        segs = self.segments(buf, cuts)
        for i, (a, b, push) in enumerate(segs):
            if i:
                self.cap.tick(*gap)
            self.pkt(side, "PA" if push else "A", buf[a:b], off=base + a)
            if i % 2 == 1 and i < len(segs) - 1:
                self.cap.tick(0.02, 0.08)
                self.pkt(not side, "A")
        if ack:
            self.cap.tick(0.04, 0.3)
            self.pkt(not side, "A")
        return msgs

    def close(self, side: bool = True) -> None:
        self.pkt(side, "FA")
        self.cap.tick(0.2, 1.0)
        self.pkt(not side, "FA")
        self.cap.tick(0.1, 0.5)
        self.pkt(side, "A")


# ---------------------------------------------------------------------------
# Sessions (the detector oracle) and timing
# ---------------------------------------------------------------------------
class Sess:
    def __init__(self, dialect: str, conn: Conn, hashrate: float | None, formula: str | None,
                 difficulty_kind: str | None, **fields):
        self.dialect, self.conn, self.H, self.formula = dialect, conn, hashrate, formula
        self.fields = {"agent": None, "login": None, "worker": None, "wallet": None,
                       "coin": None, "algorithm": None}
        self.fields.update(fields)
        self.difficulty_kind = difficulty_kind
        self.shares: list[dict] = []
        self.diffs: list[list] = []
        self.work_start: Msg | None = None
        self.extra: dict = {}

    def diff(self, msg: Msg, value) -> None:
        if not self.diffs or self.diffs[-1][1] != value:
            self.diffs.append([msg.frame, value])

    def job(self, msg: Msg) -> None:
        """A job the miner can work on arrived: the hashrate window opens at the first one."""
        if self.work_start is None:
            self.work_start = msg

    def share(self, msg: Msg, work: float, worker: str | None = None) -> dict:
        sh = {"msg": msg, "work": work, "result": "unanswered", "worker": worker}
        self.shares.append(sh)
        return sh

    def oracle(self) -> dict:
        c = self.conn
        shares = sorted(self.shares, key=lambda s: (s["msg"].frame, s["msg"].start))
        out = {"dialect": self.dialect, "src_ip": c.cip, "src_port": c.cport,
               "dest_ip": c.sip, "dest_port": c.sport, **self.fields}
        out.update({
            "shares_submitted": len(shares),
            "shares_accepted": sum(s["result"] == "accepted" for s in shares),
            "shares_rejected": sum(s["result"] == "rejected" for s in shares),
            "difficulty": self.diffs[-1][1] if self.diffs else None,
            "difficulty_kind": self.difficulty_kind,
            "difficulty_changes": self.diffs,
            "share_frames": [s["msg"].frame for s in shares],
            "share_results": [s["result"] for s in shares],
            "first_frame": c.first_payload_frame,
        })
        if self.H is not None:
            first, last = self.work_start, shares[-1]["msg"]
            est = sum(s["work"] for s in shares) / ((last.ts - first.ts) / NS)
            assert abs(est / self.H - 1) < 0.02, (self.dialect, est, self.H)
            out.update({"expected_hashrate_hs": self.H, "hashrate_tolerance": TOLERANCE,
                        "hashrate_window_frames": [first.frame, last.frame],
                        "hashrate_formula": self.formula})
        else:
            out.update({"expected_hashrate_hs": None, "hashrate_tolerance": None,
                        "hashrate_window_frames": None, "hashrate_formula": self.formula})
        out.update(self.extra)
        return out


def schedule(rng, t0_ns: int, works: list[float], hashrate: float,
             jitter: float = 0.3) -> list[int]:
    """Share times: each interval is W_i / H times a jitter factor, the factors rescaled so
    that the total is exactly sum(W_i) / H (the estimator then returns H)."""
    u = [rng.uniform(1 - jitter, 1 + jitter) for _ in works]
    k = sum(works) / sum(w * x for w, x in zip(works, u))
    t, out = float(t0_ns), []
    for w, x in zip(works, u):
        t += w * x * k / hashrate * NS
        out.append(round(t / 1000) * 1000)
    return out


class Timeline:
    """Events (time, callable) run in time order; the clock never goes backwards."""

    def __init__(self, cap: ms.Capture):
        self.cap, self.ev, self.n = cap, [], 0

    def at(self, t_ns: float, fn) -> None:
        self.ev.append((int(t_ns) // 1000 * 1000, self.n, fn))
        self.n += 1

    def run(self) -> None:
        for t, _, fn in sorted(self.ev, key=lambda e: (e[0], e[1])):
            self.cap.t = max(self.cap.t + 30_000, t)
            fn()


def every(t0: int, t1: int, period_s: float, rng, jitter: float = 0.3) -> list[int]:
    """Times from t0 to t1, one per period (jittered)."""
    out, t = [], t0
    while True:
        t += int(period_s * rng.uniform(1 - jitter, 1 + jitter) * NS)
        if t >= t1:
            return out
        out.append(t)


def work_sha256(d: float) -> float:
    """Bitcoin diff-1 = 0xFFFF * 2^208: W(d) = d * 2^48 / 65535 (~ d * 2^32)."""
    return d * 2**48 / 65535


def work_target(t: int) -> float:
    return 2**256 / (t + 1)


DIFF1 = 0xFFFF << 208


# ---------------------------------------------------------------------------
# Shared builders
# ---------------------------------------------------------------------------
@dataclass
class Job:
    job_id: str
    diff: float  # difficulty (or target) in force for this job
    ntime: int
    data: dict | None = None


def stratum_prevhash(rng, zero_bytes: int = 9) -> str:
    """A block hash (big-endian, leading zeros) as Stratum v1 sends it: the little-endian
    hash with each 4-byte word byte-swapped (the zeros end up at the end of the string)."""
    be = bytes(zero_bytes) + rbytes(rng, 32 - zero_bytes)
    le = be[::-1]
    return b"".join(le[i:i + 4][::-1] for i in range(0, 32, 4)).hex()


def btc_notify_params(rng, job: str, height: int, ntime: int, clean: bool, nbits: str,
                      tag: bytes, branches: int, en_total: int = 8) -> list:
    """The 9 mining.notify params with a plausible segwit coinbase split around the
    extranonce (coinb1 || extranonce1 || extranonce2 || coinb2)."""
    height_push = "03" + height.to_bytes(3, "little").hex()
    script_len = 4 + len(tag) + en_total
    coinb1 = ("01000000" + "01" + "00" * 32 + "ffffffff" + f"{script_len:02x}" + height_push
              + tag.hex())
    value = 312_500_000 + rng.randrange(2_000_000, 40_000_000)
    coinb2 = ("ffffffff" + "02" + value.to_bytes(8, "little").hex() + "16" + "0014"
              + rhex(rng, 20) + "0000000000000000" + "26" + "6a24aa21a9ed" + rhex(rng, 32)
              + "00000000")
    return [job, stratum_prevhash(rng), coinb1, coinb2, [rhex(rng, 32) for _ in range(branches)],
            "20000000", nbits, f"{ntime:08x}", clean]


def finish(cap: ms.Capture, sessions: list[Sess]) -> tuple[ms.Capture, list[Sess]]:
    return cap, sessions


F_SHA256 = ("W_i = d_i * 2^48/65535 (~ d_i * 2^32) hashes, d_i the mining.set_difficulty in force "
            "when the job the share cites was sent (hashrate-estimation.md section 2)")


# ---------------------------------------------------------------------------
# 1. cgminer, Bitcoin SHA-256d, version rolling, vardiff, one stale share
# ---------------------------------------------------------------------------
def gen_cgminer_sha256d():
    cap = ms.Capture("stratum_v1_cgminer_sha256d.pcap", seed=4101, start_ns=start(0))
    rng = cap.rng
    link = ms.EthLink("02:00:5e:41:01:0a", MAC_GW)
    c = Conn(cap, link, "10.1.1.10", 49731, "203.0.113.11", 3333, ttl_s=51)
    wallet = bech32_segwit("bc", rbytes(rng, 20))
    worker = "s19pro-01"
    login = f"{wallet}.{worker}"
    agent = "cgminer/4.11.1"
    H = 110e12
    d1, d2 = 131072, 262144
    s = Sess("stratum-v1", c, H, F_SHA256, "stratum-difficulty", agent=agent, login=login,
             worker=worker, wallet=wallet, coin="BTC", algorithm="sha256d")
    s.extra["notes"] = ("cgminer's shared id counter (configure 0, subscribe 1, authorize 2, "
                        "submits 3+); mining.configure before subscribe; 6-param submits "
                        "(version bits); notify sent before the authorize reply")
    height, nbits = 938_412, "1701f303"
    ids = iter(range(1000))
    jobs: list[Job] = []

    c.open(rtt_ms=24)
    cap.tick(0.3, 1)
    c.write(True, js({"id": next(ids), "method": "mining.configure",
                      "params": [["version-rolling"], {"version-rolling.mask": "ffffffff"}]}),
            ack=False)
    cap.tick(23, 26)
    c.write(False, jc({"id": 0, "result": {"version-rolling": True,
                                            "version-rolling.mask": "1fffe000"},
                       "error": None}), ack=False)
    cap.tick(0.2, 0.8)
    c.write(True, js({"id": next(ids), "method": "mining.subscribe", "params": [agent]}),
            ack=False)
    cap.tick(23, 26)
    en1 = rhex(rng, 4)
    sub_id = rhex(rng, 4)
    c.write(False, jc({"id": 1, "result": [[["mining.set_difficulty", sub_id],
                                             ["mining.notify", sub_id]], en1, 4],
                       "error": None}), ack=False)
    cap.tick(0.2, 0.8)
    c.write(True, js({"id": next(ids), "method": "mining.authorize", "params": [login, "x"]}),
            ack=False)
    cap.tick(23, 26)

    def new_job(clean: bool, diff: float) -> bytes:
        jid = f"{0x4e2a + len(jobs):x}"
        ntime = cap.t // NS
        jobs.append(Job(jid, diff, ntime))
        return jc({"id": None, "method": "mining.notify",
                   "params": btc_notify_params(rng, jid, height, ntime, clean, nbits,
                                               b"/poolwatch-sample/", 6)})

    # Three messages in one segment: set_difficulty, the first job, the authorize reply.
    m_diff, m_job, _ = c.write(False, jc({"id": None, "method": "mining.set_difficulty",
                                           "params": [d1]}),
                               new_job(True, d1), jc({"id": 2, "result": True, "error": None}))
    s.diff(m_diff, d1)
    s.job(m_job)

    n1, n2, stale_at = 8, 6, 11  # share 11 (1-based) is found on the job a new block replaced
    works = [work_sha256(d1)] * n1 + [work_sha256(d2)] * n2
    times = schedule(rng, m_job.ts, works, H)
    tl = Timeline(cap)
    extranonce2 = iter(range(1, 1000))
    state = {"stale_job": None}

    def share(i: int):
        def fn():
            stale = i == stale_at
            job = state["stale_job"] if stale else jobs[-1]
            sid = next(ids)
            vbits = rng.getrandbits(32) & 0x1FFFE000
            m = c.write(True, js({"params": [login, job.job_id, f"{next(extranonce2):08x}",
                                             f"{job.ntime:08x}", f"{rng.getrandbits(32):08x}",
                                             f"{vbits:08x}"],
                                  "id": sid, "method": "mining.submit"}), ack=False)[0]
            sh = s.share(m, work_sha256(job.diff), worker)
            cap.tick(23, 27)
            if stale:
                c.write(False, jc({"id": sid, "result": None,
                                   "error": [21, "Job not found", None]}))
                sh["result"] = "rejected"
            else:
                c.write(False, jc({"id": sid, "result": True, "error": None}))
                sh["result"] = "accepted"
        return fn

    for i, t in enumerate(times, 1):
        tl.at(t, share(i))
    # periodic jobs; the second one is split over two segments
    periodic = every(m_job.ts, times[-1], 30, rng, 0.15)
    split_job = periodic[1]

    def periodic_job(t):
        def fn():
            diff = d2 if len(s.diffs) > 1 else d1
            job = new_job(False, diff)
            c.write(False, job, cuts=(301,) if t == split_job else ())
        return fn

    for t in periodic:
        tl.at(t, periodic_job(t))

    # vardiff after share 8: set_difficulty alone, the next job a moment later
    def retarget():
        m = c.write(False, jc({"id": None, "method": "mining.set_difficulty", "params": [d2]}))[0]
        s.diff(m, d2)
        cap.tick(2, 5)
        c.write(False, new_job(False, d2))

    tl.at(times[n1 - 1] + 400 * MS, retarget)

    # a new block just before share 11: clean job; share 11 cites the replaced one
    def new_block():
        state["stale_job"] = jobs[-1]
        c.write(False, new_job(True, d2), ack=False)

    tl.at(times[stale_at - 1] - 25 * MS, new_block)

    # the pool asks for the client version (cgminer answers with its agent string)
    def get_version():
        c.write(False, jc({"id": 9001, "method": "client.get_version", "params": []}),
                ack=False)
        cap.tick(0.3, 1.0)
        c.write(True, js({"id": 9001, "result": agent, "error": None}))

    tl.at(times[3] + 1500 * MS, get_version)
    tl.run()
    cap.tick(1500, 3000)
    c.close(True)
    return finish(cap, [s])


# ---------------------------------------------------------------------------
# 2. Capture starts mid-session: no handshake, no subscribe/authorize
# ---------------------------------------------------------------------------
def gen_midstream_join():
    cap = ms.Capture("stratum_v1_midstream_join.pcap", seed=4102, start_ns=start(1))
    rng = cap.rng
    link = ms.EthLink("02:00:5e:41:02:0a", MAC_GW)
    c = Conn(cap, link, "10.1.2.10", 51022, "198.51.100.12", 1800, ttl_s=49)
    wallet = bech32_segwit("bc", rbytes(rng, 20))
    worker = "s9-rack4-07"
    login = f"{wallet}.{worker}"
    H = 13.5e12
    d1, d2 = 16384, 32768
    s = Sess("stratum-v1", c, H, F_SHA256, "stratum-difficulty", agent=None, login=login,
             worker=worker, wallet=wallet, coin="BTC", algorithm="sha256d")
    s.extra["notes"] = ("the capture starts after the handshake, subscribe and authorize: the "
                        "first frame is the pool's (flow src = pool); login, worker and wallet "
                        "come from mining.submit params[0]; 6-param submits (version rolling); "
                        "the pool answers with key order result/error/id; no FIN (capture "
                        "stops mid-session)")
    height, nbits = 938_415, "1701f303"
    jobs: list[Job] = []
    ids = iter(range(1187, 5000))

    def new_job(clean: bool, diff: float) -> bytes:
        jid = f"{0x9b40 + len(jobs):04x}"
        ntime = cap.t // NS
        jobs.append(Job(jid, diff, ntime))
        return js({"id": None, "method": "mining.notify",
                   "params": btc_notify_params(rng, jid, height, ntime, clean, nbits,
                                               b"/ss/btc-sample/", 5)})

    m_diff, m_job = c.write(False, js({"id": None, "method": "mining.set_difficulty",
                                       "params": [d1]}), new_job(True, d1))
    s.diff(m_diff, d1)
    s.job(m_job)
    n1, n2 = 8, 4
    works = [work_sha256(d1)] * n1 + [work_sha256(d2)] * n2
    times = schedule(rng, m_job.ts, works, H)
    tl = Timeline(cap)
    en2 = iter(range(0x2a00, 0x3000))

    def share(i: int):
        def fn():
            job = jobs[-1]
            sid = next(ids)
            m = c.write(True, jc({"params": [login, job.job_id, f"{next(en2):08x}",
                                             f"{job.ntime:08x}", f"{rng.getrandbits(32):08x}",
                                             f"{rng.getrandbits(32) & 0x1FFFE000:08x}"],
                                  "id": sid, "method": "mining.submit"}), ack=False)[0]
            sh = s.share(m, work_sha256(job.diff), worker)
            cap.tick(30, 36)
            c.write(False, js({"result": True, "error": None, "id": sid}))
            sh["result"] = "accepted"
        return fn

    for i, t in enumerate(times, 1):
        tl.at(t, share(i))
    for t in every(m_job.ts, times[-1], 25, rng, 0.2):
        tl.at(t, lambda: c.write(False, new_job(False, jobs[-1].diff)))

    def retarget():
        m, _ = c.write(False, js({"id": None, "method": "mining.set_difficulty",
                                  "params": [d2]}), new_job(False, d2))
        s.diff(m, d2)

    tl.at(times[n1 - 1] + 300 * MS, retarget)
    tl.run()
    cap.tick(2000, 4000)
    c.write(False, new_job(False, d2))
    return finish(cap, [s])


# ---------------------------------------------------------------------------
# 3. Litecoin / scrypt with cpuminer-opt (fixed ids: every submit is id 4)
# ---------------------------------------------------------------------------
F_SCRYPT = ("W_i = d_i * 2^16 hashes (scrypt: stratum difficulty d means bitcoin difficulty "
            "d/65536; hashrate-estimation.md section 3), d_i in force when the cited job was sent")


def gen_scrypt_ltc():
    cap = ms.Capture("stratum_v1_scrypt_ltc.pcap", seed=4103, start_ns=start(2))
    rng = cap.rng
    link = ms.EthLink("02:00:5e:41:03:0a", MAC_GW)
    c = Conn(cap, link, "10.1.3.10", 40112, "203.0.113.13", 8888, ttl_s=53)
    wallet = base58check(b"\x30", rbytes(rng, 20))
    worker = "cpu01"
    login = f"{wallet}.{worker}"
    agent = "cpuminer-opt-26.1-x64L"
    H = 250e3
    d1, d2 = 16, 32
    s = Sess("stratum-v1", c, H, F_SCRYPT, "stratum-difficulty", agent=agent, login=login,
             worker=worker, wallet=wallet, coin="LTC", algorithm="scrypt")
    s.extra["notes"] = ("cpuminer fixed ids (subscribe 1, authorize 2, extranonce.subscribe 3, "
                        "every submit 4); password c=LTC; subscribe result with a single "
                        "tuple; a share found on the old job right after a difficulty rise is "
                        "rejected as low difficulty (the pool applies the new difficulty at "
                        "once, the miner on the next job)")
    height, nbits = 2_915_077, "1924e2f1"
    jobs: list[Job] = []

    def new_job(clean: bool, diff: float) -> bytes:
        jid = f"{0x1f0c + len(jobs):x}"
        ntime = cap.t // NS
        jobs.append(Job(jid, diff, ntime))
        return jc({"id": None, "method": "mining.notify",
                   "params": btc_notify_params(rng, jid, height, ntime, clean, nbits,
                                               b"/LTC-sample-pool/", 4)})

    c.open(rtt_ms=31)
    cap.tick(0.3, 1)
    c.write(True, js({"id": 1, "method": "mining.subscribe", "params": [agent]}), ack=False)
    cap.tick(30, 33)
    c.write(False, jc({"id": 1, "result": [[["mining.notify", rhex(rng, 16)]], rhex(rng, 4), 4],
                       "error": None}), ack=False)
    cap.tick(0.2, 0.6)
    c.write(True, js({"id": 2, "method": "mining.authorize", "params": [login, "c=LTC"]}),
            ack=False)
    cap.tick(0.05, 0.2)
    c.write(True, js({"id": 3, "method": "mining.extranonce.subscribe", "params": []}),
            ack=False)
    cap.tick(30, 33)
    c.write(False, jc({"id": 2, "result": True, "error": None}),
            jc({"id": 3, "result": None, "error": [20, "Not supported.", None]}), ack=False)
    cap.tick(1, 3)
    m_diff, m_job = c.write(False, jc({"id": None, "method": "mining.set_difficulty",
                                       "params": [d1]}), new_job(True, d1))
    s.diff(m_diff, d1)
    s.job(m_job)
    n1, n2 = 10, 5
    low_at = n1 + 1  # the first share after the rise, still on the old job
    works = [work_scrypt(d1)] * (n1 + 1) + [work_scrypt(d2)] * n2
    times = schedule(rng, m_job.ts, works, H)
    tl = Timeline(cap)
    en2 = iter(range(1, 1000))

    def share(i: int):
        def fn():
            job = jobs[-1]
            line = (f'{{"method": "mining.submit", "params": ["{login}", "{job.job_id}", '
                    f'"{next(en2):08x}", "{job.ntime:08x}", "{rng.getrandbits(32):08x}"], '
                    '"id":4}\n')
            m = c.write(True, line.encode(), ack=False)[0]
            sh = s.share(m, work_scrypt(job.diff), worker)
            cap.tick(30, 34)
            if i == low_at:
                c.write(False, jc({"id": 4, "result": None,
                                   "error": [23, "Low difficulty share", None]}))
                sh["result"] = "rejected"
            else:
                c.write(False, jc({"id": 4, "result": True, "error": None}))
                sh["result"] = "accepted"
        return fn

    for i, t in enumerate(times, 1):
        tl.at(t, share(i))
    quiet = (times[n1 - 1], times[low_at - 1] + 1000 * MS)  # rise .. first job at d2
    for t in every(m_job.ts, times[-1], 30, rng, 0.2):
        if not quiet[0] <= t <= quiet[1]:
            tl.at(t, lambda: c.write(False, new_job(False, jobs[-1].diff)))

    def rise():
        m = c.write(False, jc({"id": None, "method": "mining.set_difficulty",
                               "params": [d2]}))[0]
        s.diff(m, d2)

    tl.at(times[n1 - 1] + 200 * MS, rise)
    tl.at(times[low_at - 1] + 900 * MS, lambda: c.write(False, new_job(False, d2)))
    tl.run()
    cap.tick(1000, 2000)
    c.close(True)
    return finish(cap, [s])


def work_scrypt(d: float) -> float:
    return d * 2**16


# ---------------------------------------------------------------------------
# 4. KawPow / Ravencoin with kawpowminer (jsonrpc 2.0, set_target + 7-param notify)
# ---------------------------------------------------------------------------
F_TARGET = ("W_i = 2^256 / T_i hashes, T_i the 256-bit share target of the job the share cites "
            "(hashrate-estimation.md section 1)")


def gen_kawpow_rvn():
    cap = ms.Capture("stratum_v1_kawpow_rvn.pcap", seed=4104, start_ns=start(3))
    rng = cap.rng
    link = ms.EthLink("02:00:5e:41:04:0a", MAC_GW)
    c = Conn(cap, link, "10.1.4.10", 53310, "203.0.113.14", 6060, ttl_s=50)
    wallet = base58check(b"\x3c", rbytes(rng, 20))
    worker = "rig1"
    login = f"{wallet}.{worker}"
    agent = "kawpowminer/1.2.4"
    H = 30e6
    t1, t2 = 0x1C << 224, 0x0E << 224
    hx1, hx2 = f"{t1:064x}", f"{t2:064x}"
    s = Sess("stratum-v1", c, H, F_TARGET, "target", agent=agent, login=login, worker=worker,
             wallet=wallet, coin="RVN", algorithm="kawpow")
    s.extra["notes"] = ("kawpowminer adds jsonrpc 2.0; subscribe result [null, extranonce]; "
                        "mining.set_target plus the share target inside every 7-param notify; "
                        "submits carry 0x-prefixed nonce/header/mix; ethminer-style ids "
                        "(subscribe 1, authorize 3, submits 40+)")
    seed_hash = rhex(rng, 32)
    height = 4_118_260
    jobs: list[Job] = []
    cur = {"target": hx1}

    def new_job(clean: bool) -> bytes:
        jid = f"{0x8b2d + len(jobs):x}"
        header = rhex(rng, 32)
        jobs.append(Job(jid, int(cur["target"], 16), cap.t // NS, {"header": header}))
        return jc({"id": None, "method": "mining.notify",
                   "params": [jid, header, seed_hash, cur["target"], clean, height,
                              "1b00f1a2"]})

    c.open(rtt_ms=18)
    cap.tick(0.3, 1)
    c.write(True, jc({"id": 1, "jsonrpc": "2.0", "method": "mining.subscribe",
                      "params": [agent]}), ack=False)
    cap.tick(17, 20)
    c.write(False, jc({"id": 1, "result": [None, "a3f1"], "error": None}), ack=False)
    cap.tick(0.2, 0.6)
    c.write(True, jc({"id": 3, "jsonrpc": "2.0", "method": "mining.authorize",
                      "params": [login, "x"]}), ack=False)
    cap.tick(17, 20)
    _, m_t, m_job = c.write(False, jc({"id": 3, "result": True, "error": None}),
                            jc({"id": None, "method": "mining.set_target", "params": [hx1]}),
                            new_job(True))
    s.diff(m_t, hx1)
    s.job(m_job)
    n1, n2, stale_at = 8, 5, 6
    works = [work_target(t1)] * n1 + [work_target(t2)] * n2
    times = schedule(rng, m_job.ts, works, H)
    tl = Timeline(cap)
    state = {"stale_job": None}

    def share(i: int):
        def fn():
            stale = i == stale_at
            job = state["stale_job"] if stale else jobs[-1]
            sid = 40 + (i - 1) % 4
            m = c.write(True, jc({"id": sid, "jsonrpc": "2.0", "method": "mining.submit",
                                  "params": [login, job.job_id,
                                             "0xa3f1" + rhex(rng, 6),
                                             "0x" + job.data["header"], "0x" + rhex(rng, 32)]}),
                        ack=False)[0]
            sh = s.share(m, work_target(job.diff), worker)
            cap.tick(17, 21)
            if stale:
                c.write(False, jc({"id": sid, "result": None,
                                   "error": [21, "Stale share", None]}))
                sh["result"] = "rejected"
            else:
                c.write(False, jc({"id": sid, "result": True, "error": None}))
                sh["result"] = "accepted"
        return fn

    for i, t in enumerate(times, 1):
        tl.at(t, share(i))
    for t in every(m_job.ts, times[-1], 20, rng, 0.3):
        tl.at(t, lambda: c.write(False, new_job(False)))

    def new_block():
        state["stale_job"] = jobs[-1]
        c.write(False, new_job(True), ack=False)

    tl.at(times[stale_at - 1] - 30 * MS, new_block)

    def retarget():
        cur["target"] = hx2
        m, _ = c.write(False, jc({"id": None, "method": "mining.set_target", "params": [hx2]}),
                       new_job(False))
        s.diff(m, hx2)

    tl.at(times[n1 - 1] + 300 * MS, retarget)
    tl.run()
    cap.tick(1000, 2000)
    c.close(True)
    return finish(cap, [s])


# ---------------------------------------------------------------------------
# 5. Kaspa (kHeavyHash) as kaspa-stratum-bridge speaks it
# ---------------------------------------------------------------------------
F_KASPA = ("W_i = d_i * 2^256 / (2^224 - 1) (~ d_i * 2^32) hashes, d_i the "
           "mining.set_difficulty in force when the cited job was sent (kaspa-stratum-bridge "
           "hasher.go; hashrate-estimation.md section 6)")


def work_kaspa(d: float) -> float:
    return d * 2**256 / (2**224 - 1)


def gen_kaspa():
    cap = ms.Capture("stratum_v1_kaspa.pcap", seed=4105, start_ns=start(4))
    rng = cap.rng
    link = ms.EthLink("02:00:5e:41:05:0a", MAC_GW)
    c = Conn(cap, link, "10.1.5.10", 38812, "198.51.100.15", 5555, ttl_s=55)
    wallet = kaspa_address(rbytes(rng, 32))
    worker = "rig3"
    login = f"{wallet}.{worker}"
    agent = "lolMiner/1.98a"
    H = 2.0e9
    d1, d2 = 2, 4
    s = Sess("stratum-v1", c, H, F_KASPA, "stratum-difficulty", agent=agent, login=login,
             worker=worker, wallet=wallet, coin="KAS", algorithm="kheavyhash")
    s.extra["notes"] = ("kaspa-stratum-bridge: subscribe result [true, \"EthereumStratum/1.0.0\"] "
                        "(the ES1 marker appears although the dialect is Stratum v1 with Kaspa "
                        "jobs); set_extranonce without the mining. prefix; notify id = job id "
                        "(an integer, not null), params [job_id, [4 x uint64 > 2^53], "
                        "timestamp_ms]; submit nonce 0x + 16 hex starting with the extranonce")
    jobs: list[Job] = []
    cur = {"d": d1}
    jid = iter(range(17, 10000))

    def new_job() -> bytes:
        n = next(jid)
        jobs.append(Job(str(n), cur["d"], cap.t // NS))
        return jc({"id": n, "jsonrpc": "2.0", "method": "mining.notify",
                   "params": [str(n), [rng.getrandbits(64) for _ in range(4)],
                              cap.t // MS]})

    c.open(rtt_ms=9)
    cap.tick(0.3, 1)
    c.write(True, jc({"id": 1, "method": "mining.subscribe", "params": [agent]}), ack=False)
    cap.tick(8, 10)
    c.write(False, jc({"id": 1, "jsonrpc": "2.0", "result": [True, "EthereumStratum/1.0.0"],
                       "error": None}), ack=False)
    cap.tick(0.2, 0.6)
    c.write(True, jc({"id": 2, "method": "mining.authorize", "params": [login, "x"]}),
            ack=False)
    cap.tick(8, 10)
    _, _, m_diff, m_job = c.write(
        False, jc({"id": 2, "jsonrpc": "2.0", "result": True, "error": None}),
        jc({"id": None, "jsonrpc": "2.0", "method": "set_extranonce", "params": ["2f"]}),
        jc({"id": None, "jsonrpc": "2.0", "method": "mining.set_difficulty", "params": [d1]}),
        new_job())
    s.diff(m_diff, d1)
    s.job(m_job)
    n1, n2, stale_at = 10, 5, 4
    works = [work_kaspa(d1)] * n1 + [work_kaspa(d2)] * n2
    times = schedule(rng, m_job.ts, works, H)
    tl = Timeline(cap)
    ids = iter(range(3, 1000))
    state = {"stale_job": None}

    def share(i: int):
        def fn():
            stale = i == stale_at
            job = state["stale_job"] if stale else jobs[-1]
            sid = next(ids)
            m = c.write(True, jc({"id": sid, "method": "mining.submit",
                                  "params": [login, job.job_id, "0x2f" + rhex(rng, 7)]}),
                        ack=False)[0]
            sh = s.share(m, work_kaspa(job.diff), worker)
            cap.tick(8, 11)
            if stale:
                c.write(False, jc({"id": sid, "jsonrpc": "2.0", "result": None,
                                   "error": [21, "Job not found", None]}))
                sh["result"] = "rejected"
            else:
                c.write(False, jc({"id": sid, "jsonrpc": "2.0", "result": True, "error": None}))
                sh["result"] = "accepted"
        return fn

    for i, t in enumerate(times, 1):
        tl.at(t, share(i))
    for t in every(m_job.ts, times[-1], 6, rng, 0.4):
        tl.at(t, lambda: c.write(False, new_job()))

    def old_job_expires():
        # the bridge keeps only recent jobs: the job the next share cites is dropped
        state["stale_job"] = jobs[-1]
        for _ in range(2):
            c.write(False, new_job())
            cap.tick(5, 15)

    tl.at(times[stale_at - 1] - 60 * MS, old_job_expires)

    def retarget():
        cur["d"] = d2
        m, _ = c.write(False, jc({"id": None, "jsonrpc": "2.0",
                                  "method": "mining.set_difficulty", "params": [d2]}),
                       new_job())
        s.diff(m, d2)

    tl.at(times[n1 - 1] + 150 * MS, retarget)
    tl.run()
    cap.tick(500, 1500)
    c.close(True)
    return finish(cap, [s])


# ---------------------------------------------------------------------------
# 6. Zcash Equihash (ZIP 301) with nheqminer
# ---------------------------------------------------------------------------
F_EQUIHASH = ("W_i = 2^256 / T_i solutions, T_i the mining.set_target in force when the cited "
              "job was sent (ZIP 301; hashrate-estimation.md section 7); unit Sol/s")


def gen_zcash_equihash():
    cap = ms.Capture("stratum_zcash_equihash.pcap", seed=4106, start_ns=start(5))
    rng = cap.rng
    link = ms.EthLink("02:00:5e:41:06:0a", MAC_GW)
    c = Conn(cap, link, "10.1.6.10", 44120, "203.0.113.16", 3357, ttl_s=48)
    wallet = base58check(b"\x1c\xb8", rbytes(rng, 20))
    worker = "rig"
    login = f"{wallet}.{worker}"
    agent = "nheqminer/0.5c"
    H = 800.0
    t1, t2 = (1 << 243) - 1, (1 << 242) - 1
    hx1, hx2 = f"{t1:064x}", f"{t2:064x}"
    s = Sess("stratum-v1-zcash", c, H, F_EQUIHASH, "target", agent=agent, login=login,
             worker=worker, wallet=wallet, coin="ZEC", algorithm="equihash-200-9")
    s.extra["notes"] = ("4-param subscribe with the port as a string (nheqminer), result "
                        "[null, nonce1] with no extranonce2 size, set_target, 8-param notify, "
                        "5-param submits with a 1344-byte (fd4005-prefixed) solution that "
                        "spans two TCP segments")
    nonce1 = rhex(rng, 4)
    jobs: list[Job] = []
    cur = {"target": t1}

    def new_job(clean: bool) -> bytes:
        jid = f"{0x1a2b + len(jobs):x}"
        ntime = (cap.t // NS).to_bytes(4, "little").hex()
        jobs.append(Job(jid, cur["target"], cap.t // NS, {"time": ntime}))
        return jc({"id": None, "method": "mining.notify",
                   "params": [jid, "04000000", rhex(rng, 32), rhex(rng, 32), "00" * 32, ntime,
                              "e143011c", clean]})

    c.open(rtt_ms=40)
    cap.tick(0.3, 1)
    c.write(True, (f'{{"id":1,"method":"mining.subscribe","params":["{agent}", null,'
                   '"zec.pool.example.net","3357"]}\n').encode(), ack=False)
    cap.tick(39, 43)
    c.write(False, jc({"id": 1, "result": [None, nonce1], "error": None}), ack=False)
    cap.tick(0.2, 0.6)
    c.write(True, jc({"id": 2, "method": "mining.authorize", "params": [login, "x"]}),
            ack=False)
    cap.tick(39, 43)
    _, m_t, m_job = c.write(False, jc({"id": 2, "result": True, "error": None}),
                            jc({"id": None, "method": "mining.set_target", "params": [hx1]}),
                            new_job(True))
    s.diff(m_t, hx1)
    s.job(m_job)
    n1, n2 = 3, 2
    works = [work_target(t1)] * n1 + [work_target(t2)] * n2
    times = schedule(rng, m_job.ts, works, H, jitter=0.2)
    tl = Timeline(cap)
    ids = iter(range(4, 1000))

    def share(i: int):
        def fn():
            job = jobs[-1]
            sid = next(ids)
            solution = "fd4005" + rhex(rng, 1344)
            m = c.write(True, jc({"id": sid, "method": "mining.submit",
                                  "params": [login, job.job_id, job.data["time"],
                                             rhex(rng, 28), solution]}), ack=False)[0]
            sh = s.share(m, work_target(job.diff), worker)
            cap.tick(40, 45)
            c.write(False, jc({"id": sid, "result": True, "error": None}))
            sh["result"] = "accepted"
        return fn

    for i, t in enumerate(times, 1):
        tl.at(t, share(i))
    for t in every(m_job.ts, times[-1], 30, rng, 0.2):
        tl.at(t, lambda: c.write(False, new_job(False)))

    def retarget():
        cur["target"] = t2
        m, _ = c.write(False, jc({"id": None, "method": "mining.set_target", "params": [hx2]}),
                       new_job(False))
        s.diff(m, hx2)

    tl.at(times[n1 - 1] + 250 * MS, retarget)
    tl.run()
    cap.tick(1000, 2000)
    c.close(True)
    return finish(cap, [s])


# ---------------------------------------------------------------------------
# 7. ETH-PROXY with ethminer (stratum1+tcp) to an ETC pool found through DNS
# ---------------------------------------------------------------------------
def gen_ethproxy():
    cap = ms.Capture("ethproxy_ethminer.pcap", seed=4107, start_ns=start(6))
    rng = cap.rng
    link = ms.EthLink("02:00:5e:41:07:0a", MAC_GW)
    pool_ip, host = "203.0.113.17", "etc.2miners.com"
    ms.dns_pair(cap, link, "10.1.7.10", 41807, "192.0.2.53", host, pool_ip, txid=0x4107)
    cap.tick(1, 3)
    c = Conn(cap, link, "10.1.7.10", 52001, pool_ip, 1010, ttl_s=50)
    wallet = eip55(rbytes(rng, 20))
    worker = "rig1"
    H = 360e6
    boundary = 2**256 // 4_000_000_000
    bhex = f"0x{boundary:064x}"
    s = Sess("ethproxy", c, H, F_TARGET.replace("share target of the job",
                                                 "boundary (third job element) of the job"),
             "target", agent=None, login=wallet, worker=worker, wallet=wallet, coin="ETC",
             algorithm="etchash")
    s.extra["pool_host"] = host
    s.extra["notes"] = ("eth-proxy has no agent field; the worker is the top-level \"worker\" "
                        "member; jobs are pushed as {\"id\":0,\"result\":[header,seed,boundary]} "
                        "without a method; submit ids are 40 + GPU index (reused); one share "
                        "answered result:false; the coin comes from the DNS name "
                        "(etc.2miners.com, port 1010 in fingerprints/pools.csv), not from the "
                        "0x address, which several chains share")
    seed = "0x" + rhex(rng, 32)
    jobs: list[Job] = []

    def job_result(id_: int) -> bytes:
        header = "0x" + rhex(rng, 32)
        jobs.append(Job(header, boundary, cap.t // NS))
        return jc({"id": id_, "jsonrpc": "2.0", "result": [header, seed, bhex]})

    c.open(rtt_ms=35)
    cap.tick(0.3, 1)
    c.write(True, jc({"id": 1, "jsonrpc": "2.0", "method": "eth_submitLogin",
                      "params": [wallet, "x"], "worker": worker}), ack=False)
    cap.tick(34, 37)
    c.write(False, jc({"id": 1, "jsonrpc": "2.0", "result": True}), ack=False)
    cap.tick(0.2, 0.5)
    c.write(True, jc({"id": 5, "jsonrpc": "2.0", "method": "eth_getWork", "params": []}),
            ack=False)
    cap.tick(34, 37)
    m_job = c.write(False, job_result(5))[0]
    s.diff(m_job, bhex)
    s.job(m_job)
    n, reject_at = 10, 7
    times = schedule(rng, m_job.ts, [work_target(boundary)] * n, H)
    tl = Timeline(cap)
    client_id = "0x" + rhex(rng, 32)
    reported = []

    def share(i: int):
        def fn():
            job = jobs[-1]
            sid = 40 + rng.randrange(6)
            m = c.write(True, jc({"id": sid, "jsonrpc": "2.0", "method": "eth_submitWork",
                                  "params": ["0x" + rhex(rng, 8), job.job_id,
                                             "0x" + rhex(rng, 32)], "worker": worker}),
                        ack=False)[0]
            sh = s.share(m, work_target(job.diff), worker)
            cap.tick(34, 38)
            ok = i != reject_at
            c.write(False, jc({"id": sid, "jsonrpc": "2.0", "result": ok}))
            sh["result"] = "accepted" if ok else "rejected"
        return fn

    def hashrate():
        rate = int(H * rng.uniform(0.985, 1.015))
        reported.append(rate)
        c.write(True, jc({"id": 9, "jsonrpc": "2.0", "method": "eth_submitHashrate",
                          "params": [f"0x{rate:064x}", client_id]}), ack=False)
        cap.tick(34, 37)
        c.write(False, jc({"id": 9, "jsonrpc": "2.0", "result": True}))

    for i, t in enumerate(times, 1):
        tl.at(t, share(i))
    for t in every(m_job.ts, times[-1], 14, rng, 0.4):
        tl.at(t, lambda: c.write(False, job_result(0)))
    for t in every(m_job.ts - 25 * NS, times[-1], 45, rng, 0.1):
        tl.at(t, hashrate)
    tl.run()
    s.extra["reported_hashrate_hs"] = reported[-1]
    cap.tick(1000, 2000)
    c.close(True)
    return finish(cap, [s])


# ---------------------------------------------------------------------------
# 8. EthereumStratum/1.0.0 (NiceHash) with ethminer (stratum2+tcp)
# ---------------------------------------------------------------------------
F_ES1 = ("W_i = d_i * 2^48/65535 (~ d_i * 2^32) hashes: EthereumStratum/1.0.0 diff 1 = target "
         "00000000ffff0000... (NiceHash spec; hashrate-estimation.md section 5), d_i in force "
         "when the cited job was sent")


def gen_ethereumstratum_1():
    cap = ms.Capture("ethereumstratum_1_nicehash.pcap", seed=4108, start_ns=start(7))
    rng = cap.rng
    link = ms.EthLink("02:00:5e:41:08:0a", MAC_GW)
    pool_ip, host = "198.51.100.18", "daggerhashimoto.auto.nicehash.com"
    ms.dns_pair(cap, link, "10.1.8.10", 41808, "192.0.2.53", host, pool_ip, txid=0x4108)
    cap.tick(1, 3)
    c = Conn(cap, link, "10.1.8.10", 49152, pool_ip, 9200, ttl_s=47)
    wallet = bech32_segwit("bc", rbytes(rng, 20))
    worker = "rig5"
    login = f"{wallet}.{worker}"
    agent = "ethminer-0.19.0"
    H = 300e6
    d1, d2 = 0.5, 1.0
    s = Sess("ethereumstratum-1", c, H, F_ES1, "stratum-difficulty", agent=agent, login=login,
             worker=worker, wallet=wallet, coin=None, algorithm="ethash")
    s.extra["pool_host"] = host
    s.extra["notes"] = ("NiceHash sells hashpower: the wallet is a BTC payout address and the "
                        "mined coin is not visible (coin null); algorithm ethash "
                        "(DaggerHashimoto); float difficulties; set_extranonce mid-session "
                        "shortens the extranonce from 3 to 2 bytes, so the miner nonce grows "
                        "from 10 to 12 hex digits; NiceHash error code -1")
    seedhash = rhex(rng, 32)
    jobs: list[Job] = []
    cur = {"d": d1, "en": "a2eea0"}

    def new_job(clean: bool) -> bytes:
        jid = rhex(rng, 4)
        jobs.append(Job(jid, cur["d"], cap.t // NS))
        return jc({"id": None, "method": "mining.notify",
                   "params": [jid, seedhash, rhex(rng, 32), clean]})

    c.open(rtt_ms=28)
    cap.tick(0.3, 1)
    c.write(True, js({"id": 1, "method": "mining.subscribe",
                      "params": [agent, "EthereumStratum/1.0.0"]}), ack=False)
    cap.tick(27, 30)
    c.write(False, jc({"id": 1, "result": [["mining.notify", rhex(rng, 16),
                                            "EthereumStratum/1.0.0"], cur["en"]],
                       "error": None}), ack=False)
    cap.tick(0.2, 0.5)
    c.write(True, js({"id": 2, "method": "mining.extranonce.subscribe", "params": []}),
            ack=False)
    cap.tick(0.1, 0.3)
    c.write(True, js({"id": 3, "method": "mining.authorize", "params": [login, "x"]}),
            ack=False)
    cap.tick(27, 30)
    c.write(False, jc({"id": 2, "result": True, "error": None}),
            jc({"id": 3, "result": True, "error": None}), ack=False)
    cap.tick(0.5, 2)
    m_diff, m_job = c.write(False, jc({"id": None, "method": "mining.set_difficulty",
                                       "params": [d1]}), new_job(True))
    s.diff(m_diff, d1)
    s.job(m_job)
    n1, n2, reject_at = 8, 5, 10
    works = [work_sha256(d1)] * n1 + [work_sha256(d2)] * n2
    times = schedule(rng, m_job.ts, works, H)
    tl = Timeline(cap)
    state = {"stale_job": None}

    def share(i: int):
        def fn():
            stale = i == reject_at
            job = state["stale_job"] if stale else jobs[-1]
            sid = 40 + (i - 1) % 2
            nonce = rhex(rng, 8 - len(cur["en"]) // 2)
            m = c.write(True, js({"id": sid, "method": "mining.submit",
                                  "params": [login, job.job_id, nonce]}), ack=False)[0]
            sh = s.share(m, work_sha256(job.diff), worker)
            cap.tick(27, 31)
            if stale:
                c.write(False, jc({"id": sid, "result": False,
                                   "error": [-1, "Job not found", None]}))
                sh["result"] = "rejected"
            else:
                c.write(False, jc({"id": sid, "result": True, "error": None}))
                sh["result"] = "accepted"
        return fn

    for i, t in enumerate(times, 1):
        tl.at(t, share(i))
    for t in every(m_job.ts, times[-1], 15, rng, 0.4):
        tl.at(t, lambda: c.write(False, new_job(False)))

    def new_block():
        state["stale_job"] = jobs[-1]
        c.write(False, new_job(True), ack=False)

    tl.at(times[reject_at - 1] - 20 * MS, new_block)

    def set_extranonce():
        cur["en"] = "af4c"
        c.write(False, jc({"id": None, "method": "mining.set_extranonce", "params": ["af4c"]}),
                new_job(False))

    tl.at(times[3] + 2 * NS, set_extranonce)

    def retarget():
        cur["d"] = d2
        m, _ = c.write(False, jc({"id": None, "method": "mining.set_difficulty",
                                  "params": [d2]}), new_job(False))
        s.diff(m, d2)

    tl.at(times[n1 - 1] + 300 * MS, retarget)
    tl.run()
    cap.tick(1000, 2000)
    c.close(True)
    return finish(cap, [s])


# ---------------------------------------------------------------------------
# 9. EthereumStratum/2.0.0 (ethminer stratum3+tcp)
# ---------------------------------------------------------------------------
def gen_ethereumstratum_2():
    cap = ms.Capture("ethereumstratum_2.pcap", seed=4109, start_ns=start(8))
    rng = cap.rng
    link = ms.EthLink("02:00:5e:41:09:0a", MAC_GW)
    c = Conn(cap, link, "10.1.9.10", 45000, "203.0.113.19", 4444, ttl_s=52)
    wallet = eip55(rbytes(rng, 20))
    worker = "rig2"
    login = f"{wallet}.{worker}"
    agent = "ethminer-0.19.0"
    H = 120e6
    t1, t2 = 2**256 // 1_000_000_000, 2**256 // 2_000_000_000
    hx1, hx2 = f"{t1:064x}", f"{t2:064x}"
    s = Sess("ethereumstratum-2", c, H,
             F_TARGET.replace("share target of the job", "target of the mining.set in force "
                              "for the job"), "target", agent=agent, login=login,
             worker=worker, wallet=wallet, coin=None, algorithm="ethash")
    s.extra["notes"] = ("mining.hello with agent/host/port (hex)/proto; the authorize result is "
                        "the short worker id used in submit and mining.hashrate; mining.set "
                        "carries epoch/target/algo/extranonce; notifications have no id; "
                        "mining.noop keep-alive; the pool ends with mining.bye and closes; the "
                        "0x address fits several chains (coin null)")
    wid = "0a"
    jobs: list[Job] = []
    cur = {"t": t1}
    height = 0x14B2F31

    def new_job(clean: bool) -> bytes:
        jid = f"{rng.getrandbits(16):04x}"
        jobs.append(Job(jid, cur["t"], cap.t // NS))
        return jc({"method": "mining.notify",
                   "params": [jid, f"{height + len(jobs) // 3:x}", rhex(rng, 32), clean]})

    c.open(rtt_ms=22)
    cap.tick(0.3, 1)
    c.write(True, jc({"id": 1, "method": "mining.hello",
                      "params": {"agent": agent, "host": "es2.pool.example.net", "port": "115c",
                                 "proto": "EthereumStratum/2.0.0"}}), ack=False)
    cap.tick(21, 24)
    c.write(False, jc({"id": 1, "result": {"proto": "EthereumStratum/2.0.0",
                                           "encoding": "plain", "resume": 1, "timeout": "1e",
                                           "maxerrors": "5", "node": "es2-pool/0.9"}}),
            ack=False)
    cap.tick(0.2, 0.5)
    c.write(True, jc({"id": 2, "method": "mining.subscribe", "params": []}), ack=False)
    cap.tick(21, 24)
    c.write(False, jc({"id": 2, "result": "s-" + rhex(rng, 6)}), ack=False)
    cap.tick(0.2, 0.5)
    c.write(True, jc({"id": 3, "method": "mining.authorize", "params": [login, "x"]}),
            ack=False)
    cap.tick(21, 24)
    _, m_set, m_job = c.write(
        False, jc({"id": 3, "result": wid}),
        jc({"method": "mining.set", "params": {"epoch": "1b6", "target": hx1, "algo": "ethash",
                                               "extranonce": "af4c", "timeout": "1e"}}),
        new_job(True))
    s.diff(m_set, hx1)
    s.job(m_job)
    n1, n2 = 7, 4
    works = [work_target(t1)] * n1 + [work_target(t2)] * n2
    times = schedule(rng, m_job.ts, works, H)
    tl = Timeline(cap)
    reported = []

    def share(i: int):
        def fn():
            job = jobs[-1]
            m = c.write(True, jc({"id": 40 + i % 3, "method": "mining.submit",
                                  "params": [job.job_id, rhex(rng, 6), wid]}), ack=False)[0]
            sh = s.share(m, work_target(job.diff), worker)
            cap.tick(21, 25)
            c.write(False, jc({"id": 40 + i % 3, "result": True}))
            sh["result"] = "accepted"
        return fn

    def hashrate():
        rate = int(H * rng.uniform(0.985, 1.015))
        reported.append(rate)
        c.write(True, jc({"id": 9, "method": "mining.hashrate", "params": [f"{rate:x}", wid]}),
                ack=False)
        cap.tick(21, 24)
        c.write(False, jc({"id": 9, "result": True}))

    for i, t in enumerate(times, 1):
        tl.at(t, share(i))
    for t in every(m_job.ts, times[-1], 13, rng, 0.4):
        tl.at(t, lambda: c.write(False, new_job(False)))
    for t in every(m_job.ts - 20 * NS, times[-1], 40, rng, 0.1):
        tl.at(t, hashrate)

    def noop():
        c.write(True, jc({"id": 7, "method": "mining.noop"}), ack=False)
        cap.tick(21, 24)
        c.write(False, jc({"id": 7, "result": True}))

    tl.at((times[n1 + 1] + times[n1 + 2]) / 2, noop)

    def retarget():
        cur["t"] = t2
        m, _ = c.write(False, jc({"method": "mining.set", "params": {"target": hx2}}),
                       new_job(False))
        s.diff(m, hx2)

    tl.at(times[n1 - 1] + 300 * MS, retarget)
    tl.run()
    s.extra["reported_hashrate_hs"] = reported[-1]
    cap.tick(1000, 2000)
    c.write(False, jc({"method": "mining.bye"}), ack=False)
    cap.tick(0.5, 2)
    c.close(False)
    return finish(cap, [s])


# ---------------------------------------------------------------------------
# 10. CryptoNote / XMRig (Monero, RandomX)
# ---------------------------------------------------------------------------
F_CN = ("W_i = diff(target of the cited job) hashes: target hex is 4 or 8 bytes little-endian; "
        "t64 = (2^64-1) // ((2^32-1) // t32) for 4-byte targets; diff = (2^64-1) // t64 "
        "(xmrig Job.cpp; hashrate-estimation.md section 4)")

XMRIG_ALGOS = ["rx/0", "cn/2", "cn/r", "cn/fast", "cn/half", "cn/xao", "cn/rto", "cn/rwz",
               "cn/zls", "cn/double", "cn/ccx", "cn-lite/1", "cn-heavy/0", "cn-heavy/tube",
               "cn-heavy/xhv", "cn-pico", "cn-pico/tlo", "cn/upx2", "rx/wow", "rx/arq",
               "rx/graft", "rx/sfx", "rx/yada", "argon2/chukwa", "argon2/chukwav2",
               "argon2/ninja", "ghostrider"]


def cn_target_hex(diff: int, eight: bool = False) -> str:
    if eight:
        return ((2**64 - 1) // diff).to_bytes(8, "little").hex()
    return ((2**32 - 1) // diff).to_bytes(4, "little").hex()


def cn_diff(target_hex: str) -> int:
    raw = int.from_bytes(bytes.fromhex(target_hex), "little")
    t64 = raw if len(target_hex) == 16 else (2**64 - 1) // ((2**32 - 1) // raw)
    return (2**64 - 1) // t64


def cn_blob(rng, ts: int) -> str:
    """Monero hashing blob: major/minor 16, varint timestamp, prev id, nonce, tree root, ntx."""
    v, varint = ts, b""
    while True:
        b = v & 0x7F
        v >>= 7
        varint += bytes([b | (0x80 if v else 0)])
        if not v:
            break
    return ("1010" + varint.hex() + rhex(rng, 32) + "00000000" + rhex(rng, 32)
            + f"{rng.randrange(20, 120):02x}")


class XmrigSession:
    """An xmrig client (login/job/submit/keepalived) over a Conn; jobs carry their target."""

    def __init__(self, cap, c: Conn, sess: Sess, login: str, agent: str, rigid: str | None,
                 rtt_ms: float, height: int):
        self.cap, self.c, self.s, self.rng = cap, c, sess, cap.rng
        self.login, self.agent, self.rigid, self.rtt = login, agent, rigid, rtt_ms
        self.rpc_id = f"{rhex(self.rng, 4)}-{rhex(self.rng, 2)}-{rhex(self.rng, 2)}-{rhex(self.rng, 6)}"
        self.seed_hash = rhex(self.rng, 32)
        self.height = height
        self.jobs: list[Job] = []
        self.ids = iter(range(2, 10000))
        self.target = None

    def job_obj(self, target_hex: str) -> dict:
        jid = f"{self.rng.getrandbits(48):012x}"
        self.jobs.append(Job(jid, cn_diff(target_hex), self.cap.t // NS))
        return {"blob": cn_blob(self.rng, self.cap.t // NS), "job_id": jid,
                "target": target_hex, "algo": "rx/0", "height": self.height,
                "seed_hash": self.seed_hash}

    def login_exchange(self, target_hex: str) -> Msg:
        params = {"login": self.login, "pass": "x", "agent": self.agent}
        if self.rigid:
            params["rigid"] = self.rigid
        params["algo"] = XMRIG_ALGOS
        self.c.write(True, jc({"id": 1, "jsonrpc": "2.0", "method": "login", "params": params}),
                     ack=False)
        self.cap.tick(self.rtt, self.rtt * 1.1)
        m = self.c.write(False, jc({"id": 1, "jsonrpc": "2.0", "error": None, "result": {
            "id": self.rpc_id, "job": self.job_obj(target_hex),
            "extensions": ["algo", "nicehash", "connect", "tls", "keepalive"],
            "status": "OK"}}))[0]
        self.target = target_hex
        self.s.diff(m, target_hex)
        self.s.job(m)
        return m

    def push_job(self, target_hex: str | None = None, new_block: bool = False) -> Msg:
        if target_hex is not None:
            self.target = target_hex
        if new_block:
            self.height += 1
        m = self.c.write(False, jc({"jsonrpc": "2.0", "method": "job",
                                    "params": self.job_obj(self.target)}))[0]
        self.s.diff(m, self.target)
        return m

    def submit(self, stale: bool = False, job: Job | None = None) -> None:
        job = job or self.jobs[-1]
        sid = next(self.ids)
        t64 = (2**64 - 1) // job.diff
        result = rbytes(self.rng, 24) + self.rng.randrange(t64).to_bytes(8, "little")
        m = self.c.write(True, jc({"id": sid, "jsonrpc": "2.0", "method": "submit", "params": {
            "id": self.rpc_id, "job_id": job.job_id, "nonce": rhex(self.rng, 4),
            "result": result.hex(), "algo": "rx/0"}}), ack=False)[0]
        sh = self.s.share(m, job.diff, self.s.fields["worker"])
        self.cap.tick(self.rtt, self.rtt * 1.15)
        if stale:
            self.c.write(False, jc({"id": sid, "jsonrpc": "2.0",
                                    "error": {"code": -1, "message": "Block expired"},
                                    "result": None}))
            sh["result"] = "rejected"
        else:
            self.c.write(False, jc({"id": sid, "jsonrpc": "2.0", "error": None,
                                    "result": {"status": "OK"}}))
            sh["result"] = "accepted"

    def keepalive(self) -> None:
        sid = next(self.ids)
        self.c.write(True, jc({"id": sid, "jsonrpc": "2.0", "method": "keepalived",
                               "params": {"id": self.rpc_id}}), ack=False)
        self.cap.tick(self.rtt, self.rtt * 1.1)
        self.c.write(False, jc({"id": sid, "jsonrpc": "2.0", "error": None,
                                "result": {"status": "KEEPALIVED"}}))


def gen_cryptonote_xmrig():
    cap = ms.Capture("cryptonote_xmrig.pcap", seed=4110, start_ns=start(9))
    rng = cap.rng
    link = ms.EthLink("02:00:5e:41:0a:0a", MAC_GW)
    c = Conn(cap, link, "10.1.10.10", 41414, "198.51.100.20", 3333, ttl_s=46)
    wallet = monero_address(rng)
    agent = "XMRig/6.26.0 (Linux x86_64) libuv/1.48.0 gcc/13.2.0"
    H = 5000.0
    d1, d2 = 25000, 50000
    tx1, tx2 = cn_target_hex(d1), cn_target_hex(d2, eight=True)
    assert cn_diff(tx1) == d1 and cn_diff(tx2) == d2
    s = Sess("cryptonote", c, H, F_CN, "target", agent=agent, login=wallet, worker="rig07",
             wallet=wallet, coin="XMR", algorithm="randomx")
    s.extra["notes"] = ("xmrig login with the rigid rig07 (the worker) and its algorithm list; "
                        "the first job rides in the login result; jobs with a 4-byte target "
                        "(diff 25000), then an 8-byte one (diff 50000); a share on the "
                        "previous block's job is rejected \"Block expired\"; keepalived")
    x = XmrigSession(cap, c, s, wallet, agent, "rig07", 38, 3_620_114)
    c.open(rtt_ms=38)
    cap.tick(0.3, 1)
    m_job = x.login_exchange(tx1)
    n1, n2, stale_at = 10, 5, 7
    works = [d1] * n1 + [d2] * n2
    times = schedule(rng, m_job.ts, works, H)
    tl = Timeline(cap)
    state = {"stale_job": None}

    def share(i: int):
        def fn():
            if i == stale_at:
                x.submit(stale=True, job=state["stale_job"])
            else:
                x.submit()
        return fn

    for i, t in enumerate(times, 1):
        tl.at(t, share(i))

    def new_block():
        state["stale_job"] = x.jobs[-1]
        x.push_job(new_block=True)

    tl.at(times[stale_at - 1] - 40 * MS, new_block)
    for t in every(m_job.ts, times[-1], 25, rng, 0.3):
        tl.at(t, lambda: x.push_job())
    tl.at(times[n1 - 1] + 400 * MS, lambda: x.push_job(tx2))
    tl.at(times[n1 + 1] + 3 * NS, x.keepalive)
    tl.run()
    cap.tick(500, 1500)
    c.close(True)
    return finish(cap, [s])


# ---------------------------------------------------------------------------
# 11. getwork over HTTP (cpuminer, scrypt-era pool)
# ---------------------------------------------------------------------------
GETWORK_PAD = "000000800000000000000000000000000000000000000000000000000000000000000000000000000000000080020000"
HASH1 = "00000000000000000000000000000000000000000000000000000000000000000000008000000000000000000000000000000000000000000000000000010000"


def getwork_data(rng, ntime: int, nonce: int = 0) -> str:
    header = (struct.pack("<I", 0x20000000) + rbytes(rng, 32) + rbytes(rng, 32)
              + struct.pack("<II", ntime, 0x1A01B2C3) + struct.pack("<I", nonce))
    words = b"".join(header[i:i + 4][::-1] for i in range(0, 80, 4))
    return words.hex() + GETWORK_PAD


def gen_getwork_http():
    cap = ms.Capture("getwork_http.pcap", seed=4111, start_ns=start(10))
    rng = cap.rng
    link = ms.EthLink("02:00:5e:41:0b:0a", MAC_GW)
    pool = "203.0.113.21"
    c = Conn(cap, link, "10.1.11.10", 55100, pool, 8332, ttl_s=54)
    login, worker = "poolacct.cpu1", "cpu1"
    agent = "cpuminer/2.5.1"
    H = 20e3
    target = (1 << 240) - 1
    target_le = target.to_bytes(32, "little").hex()
    s = Sess("getwork", c, H,
             "W_i = 2^256 / T hashes, T = the getwork \"target\" (hex64 little-endian) "
             "(stratum-dialects.md section 8; hashrate-estimation.md section 1)",
             "target", agent=agent, login=login, worker=worker, wallet=None, coin=None,
             algorithm=None)
    s.extra["notes"] = ("HTTP/1.1 keep-alive POSTs with Basic auth (the login), cpuminer's "
                        "User-Agent and X-Mining-Extensions; getwork with no params fetches "
                        "work, getwork with one data param submits a share; the server sends "
                        "X-Roll-NTime, and X-Reject-Reason on the stale share; the target "
                        "means ~2^16 hashes per share, typical of scrypt pools, but nothing on "
                        "the wire names the coin or the algorithm (coin/algorithm null)")
    auth = base64.b64encode(f"{login}:x".encode()).decode()

    def request(body: str) -> bytes:
        return (f"POST / HTTP/1.1\r\nHost: {pool}:8332\r\nAuthorization: Basic {auth}\r\n"
                "Accept: */*\r\nAccept-Encoding: deflate, gzip\r\n"
                f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
                f"User-Agent: {agent}\r\nX-Mining-Extensions: midstate\r\n\r\n{body}").encode()

    def response(body: str, extra: str = "") -> bytes:
        return (f"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                f"Content-Length: {len(body)}\r\nX-Roll-NTime: expire=120\r\n{extra}"
                f"Date: {http_date(cap.t)}\r\nServer: poolserverj\r\n\r\n{body}").encode()

    work = {"data": None}

    def getwork() -> Msg:
        c.write(True, request('{"method": "getwork", "params": [], "id":0}\r\n'), ack=False)
        cap.tick(15, 18)
        work["data"] = getwork_data(rng, cap.t // NS)
        body = json.dumps({"result": {"midstate": rhex(rng, 32), "data": work["data"],
                                      "hash1": HASH1, "target": target_le},
                           "error": None, "id": 0}, separators=(",", ":"))
        m = c.write(False, response(body))[0]
        s.diff(m, target_le)
        return m

    c.open(rtt_ms=15)
    cap.tick(0.3, 1)
    m_job = getwork()
    s.job(m_job)
    n, stale_at = 10, 8
    times = schedule(rng, m_job.ts, [work_target(target)] * n, H)
    tl = Timeline(cap)

    def share(i: int):
        def fn():
            data = work["data"][:152] + f"{rng.getrandbits(32):08x}" + work["data"][160:]
            body = f'{{"method": "getwork", "params": [ "{data}" ], "id":1}}\r\n'
            m = c.write(True, request(body), ack=False)[0]
            sh = s.share(m, work_target(target), worker)
            cap.tick(15, 19)
            if i == stale_at:
                c.write(False, response('{"result":false,"error":null,"id":1}',
                                        "X-Reject-Reason: stale\r\n"))
                sh["result"] = "rejected"
            else:
                c.write(False, response('{"result":true,"error":null,"id":1}'))
                sh["result"] = "accepted"
        return fn

    for i, t in enumerate(times, 1):
        tl.at(t, share(i))
    for t in every(m_job.ts, times[-1], 5, rng, 0.1):
        tl.at(t, getwork)
    tl.run()
    cap.tick(300, 900)
    c.close(True)
    return finish(cap, [s])


# ---------------------------------------------------------------------------
# 12. Stratum V2: plain framing on a LAN (device -> local proxy), and Noise-encrypted to a pool
# ---------------------------------------------------------------------------
def sv2_frame(msg_type: int, payload: bytes, channel_msg: bool = False) -> bytes:
    """extension_type U16 LE (MSB = channel_msg), msg_type U8, msg_length U24 LE, payload."""
    return (struct.pack("<HB", 0x8000 if channel_msg else 0, msg_type)
            + len(payload).to_bytes(3, "little") + payload)


def str0_255(s: str) -> bytes:
    b = s.encode()
    assert len(b) < 256
    return bytes([len(b)]) + b


def gen_stratum_v2(noise: bool):
    name = "stratum_v2_noise" if noise else "stratum_v2_plain"
    k = 12 if noise else 11
    cap = ms.Capture(f"{name}.pcap", seed=4112 + noise, start_ns=start(k))
    rng = cap.rng
    link = ms.EthLink(f"02:00:5e:41:0c:{0x0a + noise:02x}", MAC_GW)
    if noise:
        c = Conn(cap, link, "10.1.13.10", 40600, "203.0.113.23", 3336, ttl_s=50)
    else:
        c = Conn(cap, link, "10.1.12.10", 40500, "10.1.12.2", 34250, ttl_s=64)
    user = "acct42.s9i07"
    vendor, hw, fw = "Bitmain", "S9i 13.5", "braiins-os-2018-09-22-1-hash"
    device_id = "c0ffee00-0011-4a2b-9d3e-5f6a7b8c9d0e"
    H, nominal = 13.0e12, 13.5e12
    d1, d2 = 16384, 32768
    t1, t2 = DIFF1 // d1, DIFF1 // d2
    hx = {t1: f"{t1:064x}", t2: f"{t2:064x}"}
    formula = ("W_i = 2^256 / T_i hashes, T_i the channel target (OpenStandardMiningChannel."
               "Success, then SetTarget, which applies at once) when the share was sent")
    s = Sess("stratum-v2", c, H, formula, "target", agent=fw, login=user, worker="s9i07",
             wallet=None, coin="BTC", algorithm="sha256d")
    s.extra["sv2_setup"] = {"vendor": vendor, "hardware_version": hw, "firmware": fw,
                            "device_id": device_id}
    s.extra["reported_hashrate_hs"] = nominal
    ch = 1

    def send(side: bool, *frames: bytes, ack: bool = True) -> list[Msg]:
        if noise:  # AEAD: 22-byte encrypted header, payload, 16-byte MAC (one chunk)
            frames = tuple(rbytes(rng, 22 + len(f) - 6 + 16) for f in frames)
        return c.write(side, *frames, ack=ack)

    c.open(rtt_ms=30 if noise else 0.4)
    cap.tick(0.2, 0.6)
    if noise:
        c.write(True, rbytes(rng, 64), ack=False)  # Noise NX act 1: ElligatorSwift key
        cap.tick(29, 32)
        c.write(False, rbytes(rng, 234), ack=False)  # act 2: 64 + 80 + 90
        cap.tick(0.3, 1)
    setup = (struct.pack("<BHHI", 0, 2, 2, 0b001) + str0_255(c.sip) + struct.pack("<H", c.sport)
             + str0_255(vendor) + str0_255(hw) + str0_255(fw) + str0_255(device_id))
    send(True, sv2_frame(0x00, setup), ack=False)
    cap.tick(*((29, 32) if noise else (0.3, 0.5)))
    send(False, sv2_frame(0x01, struct.pack("<HI", 2, 0)), ack=False)
    cap.tick(0.2, 0.6)
    open_ch = (struct.pack("<I", 1) + str0_255(user) + struct.pack("<f", nominal)
               + (2**256 - 1).to_bytes(32, "little"))
    send(True, sv2_frame(0x10, open_ch), ack=False)
    cap.tick(*((29, 32) if noise else (0.3, 0.5)))
    jobs: list[Job] = []
    cur = {"t": t1}

    def new_job(future: bool) -> bytes:
        jid = len(jobs) + 1
        jobs.append(Job(str(jid), cur["t"], cap.t // NS))
        opt = b"\x00" if future else b"\x01" + struct.pack("<I", cap.t // NS)
        return sv2_frame(0x15, struct.pack("<II", ch, jid) + opt + struct.pack("<I", 0x20000000)
                         + rbytes(rng, 32))

    def prevhash(jid: int) -> bytes:
        return sv2_frame(0x20, struct.pack("<II", ch, jid) + bytes(9) + rbytes(rng, 23)
                         + struct.pack("<II", cap.t // NS, 0x1701F303), channel_msg=True)

    success = (struct.pack("<II", 1, ch) + t1.to_bytes(32, "little") + b"\x04"
               + struct.pack("<I", 0x0100007F) + struct.pack("<I", 0))
    m_open, _, m_prev = send(False, sv2_frame(0x11, success), new_job(True), prevhash(1))
    s.diff(m_open, hx[t1])
    s.job(m_prev)
    n1, n2, stale_at = 8, 5, 11
    works = [work_target(t1)] * n1 + [work_target(t2)] * n2
    times = schedule(rng, m_prev.ts, works, H)
    tl = Timeline(cap)
    pending: list[dict] = []
    seq = iter(range(1, 10000))
    state = {"stale_job": None}

    def share(i: int):
        def fn():
            stale = i == stale_at
            job = state["stale_job"] if stale else jobs[-1]
            n = next(seq)
            last = i == len(times)
            flush = stale or last or len(pending) == 2
            m = send(True, sv2_frame(0x1A, struct.pack(
                "<IIIIII", ch, n, int(job.job_id), rng.getrandbits(32), cap.t // NS,
                0x20000000 | (rng.getrandbits(16) << 13)), channel_msg=True), ack=not flush)[0]
            sh = s.share(m, work_target(cur["t"]), "s9i07")  # SetTarget applies at once
            sh["sv2_diff"] = DIFF1 // cur["t"]
            if not flush:
                pending.append(sh)
                return
            cap.tick(*((29, 33) if noise else (0.3, 0.6)))
            if stale:
                sh["result"] = "rejected"
                send(False, sv2_frame(0x1D, struct.pack("<II", ch, n) + str0_255("stale-share"),
                                      channel_msg=True))
                return
            pending.append(sh)
            total = sum(p["sv2_diff"] for p in pending)
            send(False, sv2_frame(0x1C, struct.pack("<IIIQ", ch, n, len(pending), total),
                                  channel_msg=True))
            for p in pending:
                p["result"] = "accepted"
            pending.clear()
        return fn

    for i, t in enumerate(times, 1):
        tl.at(t, share(i))
    for t in every(m_prev.ts, times[-1], 30, rng, 0.2):
        tl.at(t, lambda: send(False, new_job(False)))

    def new_block():
        state["stale_job"] = jobs[-1]
        fut = new_job(True)
        send(False, fut, prevhash(len(jobs)))

    tl.at(times[stale_at - 1] - 30 * MS, new_block)

    def retarget():
        cur["t"] = t2
        m = send(False, sv2_frame(0x21, struct.pack("<I", ch) + t2.to_bytes(32, "little"),
                                  channel_msg=True))[0]
        s.diff(m, hx[t2])

    tl.at(times[n1 - 1] + 200 * MS, retarget)
    tl.run()
    cap.tick(1000, 2000)
    send(True, sv2_frame(0x18, struct.pack("<I", ch) + str0_255("shutdown"), channel_msg=True),
         ack=False)
    cap.tick(0.5, 2)
    c.close(True)
    if noise:
        o = s.oracle()
        truth = {k: o[k] for k in ("agent", "login", "worker", "shares_submitted",
                                   "shares_accepted", "shares_rejected", "difficulty",
                                   "difficulty_changes", "share_frames", "share_results",
                                   "expected_hashrate_hs", "hashrate_window_frames",
                                   "reported_hashrate_hs", "sv2_setup")}
        return finish(cap, [EncryptedSv2(s, truth)])
    s.extra["notes"] = ("plain SV2 framing (no Noise handshake: allowed on a local network, "
                        "device -> local proxy); standard channel; NewMiningJob and "
                        "SetNewPrevHash share one segment; SubmitShares.Success batches 3 "
                        "shares; SubmitShares.Error \"stale-share\" after a new prevhash; "
                        "SetTarget doubles the difficulty; the agent is the SetupConnection "
                        "firmware string (vendor/hardware in sv2_setup); nominal_hash_rate is "
                        "reported_hashrate_hs; difficulty values are the U256 targets as "
                        "big-endian hex")
    return finish(cap, [s])


class EncryptedSv2:
    """Oracle for the Noise-encrypted SV2 session: only what is visible is required."""

    def __init__(self, sess: Sess, truth: dict):
        self.sess, self.truth = sess, truth

    def oracle(self) -> dict:
        o = self.sess.oracle()
        for k in ("agent", "login", "worker", "shares_submitted", "shares_accepted",
                  "shares_rejected", "difficulty", "difficulty_kind", "difficulty_changes",
                  "share_frames", "share_results", "expected_hashrate_hs",
                  "hashrate_tolerance", "hashrate_window_frames", "hashrate_formula"):
            o[k] = None
        o.pop("reported_hashrate_hs", None)
        o.pop("sv2_setup", None)
        o["encrypted"] = True
        o["truth"] = self.truth
        o["notes"] = ("Noise NX handshake (64-byte act 1, 234-byte act 2), then AEAD records of "
                      "22 + payload + 16 bytes: nothing readable. Required: dialect, "
                      "endpoints, first_frame, coin/algorithm (Stratum V2 is Bitcoin-only). "
                      "Fields set to null are not observable; \"truth\" holds what the "
                      "generator encrypted (SubmitSharesStandard records are 62 bytes, should "
                      "a detector want to infer shares from sizes)")
        return o


# ---------------------------------------------------------------------------
# 13. A farm proxy: one connection carrying the shares of several workers
# ---------------------------------------------------------------------------
def gen_proxy_many_workers():
    cap = ms.Capture("stratum_proxy_many_workers.pcap", seed=4114, start_ns=start(13))
    rng = cap.rng
    link = ms.EthLink("02:00:5e:41:0e:0a", MAC_GW)
    c = Conn(cap, link, "10.1.14.10", 60001, "198.51.100.24", 443, ttl_s=49)
    wallet = bech32_segwit("bc", rbytes(rng, 20))
    workers = ["rack1-01", "rack1-02", "rack1-03", "rack2-01"]
    rates = [110e12, 110e12, 95e12, 68e12]
    logins = [f"{wallet}.{w}" for w in workers]
    H = sum(rates)
    d = 262144
    s = Sess("stratum-v1", c, H, F_SHA256, "stratum-difficulty", agent=None, login=logins[0],
             worker=workers[0], wallet=wallet, coin="BTC", algorithm="sha256d")
    height, nbits = 938_431, "1701f303"
    jobs: list[Job] = []

    def new_job(clean: bool) -> bytes:
        jid = f"{0x61c0 + len(jobs):x}"
        jobs.append(Job(jid, d, cap.t // NS))
        return jc({"id": None, "method": "mining.notify",
                   "params": btc_notify_params(rng, jid, height, cap.t // NS, clean, nbits,
                                               b"/pool-sample/", 6)})

    c.open(rtt_ms=33)
    cap.tick(0.3, 1)
    c.write(True, jc({"id": "sub", "method": "mining.subscribe", "params": []}), ack=False)
    cap.tick(32, 35)
    c.write(False, jc({"id": "sub", "result": [[["mining.set_difficulty", "b2"],
                                                 ["mining.notify", "b2"]], rhex(rng, 4), 4],
                       "error": None}), ack=False)
    cap.tick(0.2, 0.6)
    c.write(True, *[jc({"id": f"auth-{i}", "method": "mining.authorize",
                        "params": [lg, "x"]}) for i, lg in enumerate(logins, 1)], ack=False)
    cap.tick(32, 36)
    c.write(False, *[jc({"id": f"auth-{i}", "result": True, "error": None})
                     for i in range(1, len(logins) + 1)], ack=False)
    cap.tick(0.5, 2)
    m_diff, m_job = c.write(False, jc({"id": None, "method": "mining.set_difficulty",
                                       "params": [d]}), new_job(True))
    s.diff(m_diff, d)
    s.job(m_job)
    n, stale_at, pairs = 20, 13, (5, 16)  # shares 5+6 and 16+17 leave in one segment
    times = schedule(rng, m_job.ts, [work_sha256(d)] * n, H)
    who = rng.choices(range(len(workers)), weights=rates, k=n)
    tl = Timeline(cap)
    ids = iter(range(1, 10000))
    state = {"stale_job": None}
    counts = {w: 0 for w in workers}

    def submit_line(i: int, sid: int, job: Job) -> bytes:
        return jc({"id": sid, "method": "mining.submit",
                   "params": [logins[who[i - 1]], job.job_id, f"{rng.getrandbits(32):08x}",
                              f"{job.ntime:08x}", f"{rng.getrandbits(32):08x}",
                              f"{rng.getrandbits(32) & 0x1FFFE000:08x}"]})

    def share(i: int):
        def fn():
            batch = [i, i + 1] if i in pairs else [i]
            sids = [next(ids) for _ in batch]
            js_ = [state["stale_job"] if k == stale_at else jobs[-1] for k in batch]
            msgs = c.write(True, *[submit_line(k, sid, j) for k, sid, j in zip(batch, sids, js_)],
                           ack=False)
            shs = []
            for k, m, j in zip(batch, msgs, js_):
                shs.append(s.share(m, work_sha256(j.diff), workers[who[k - 1]]))
                counts[workers[who[k - 1]]] += 1
            cap.tick(32, 36)
            replies = []
            for k, sid, sh in zip(batch, sids, shs):
                if k == stale_at:
                    replies.append(jc({"id": sid, "result": None,
                                       "error": [21, "Job not found", None]}))
                    sh["result"] = "rejected"
                else:
                    replies.append(jc({"id": sid, "result": True, "error": None}))
                    sh["result"] = "accepted"
            c.write(False, *replies)
        return fn

    for i, t in enumerate(times, 1):
        if i - 1 not in pairs:
            tl.at(t, share(i))
    for t in every(m_job.ts, times[-1], 30, rng, 0.2):
        tl.at(t, lambda: c.write(False, new_job(False)))

    def new_block():
        state["stale_job"] = jobs[-1]
        c.write(False, new_job(True), ack=False)

    tl.at(times[stale_at - 1] - 20 * MS, new_block)
    tl.run()
    cap.tick(1000, 2000)
    c.close(True)
    s.extra["workers"] = workers
    s.extra["logins"] = logins
    s.extra["worker_shares"] = counts
    s.extra["notes"] = ("one upstream connection from a farm proxy on port 443 in plain text: "
                        "empty subscribe params (agent null), string ids, four "
                        "mining.authorize in one segment, submits naming four workers (two "
                        "segments carry two submits each); login/worker are the first "
                        "authorized; the hashrate is the connection's total")
    return finish(cap, [s])


# ---------------------------------------------------------------------------
# 14. Two sessions from one host in parallel: bfgminer (BTC) and xmrig (XMR)
# ---------------------------------------------------------------------------
def gen_two_sessions_one_host():
    cap = ms.Capture("two_sessions_one_host.pcap", seed=4115, start_ns=start(14))
    rng = cap.rng
    link = ms.EthLink("02:00:5e:41:0f:0a", MAC_GW)
    host = "10.1.15.10"
    a = Conn(cap, link, host, 50500, "203.0.113.25", 3333, ttl_s=51)
    b = Conn(cap, link, host, 50501, "198.51.100.25", 80, ttl_s=47)
    # session A: bfgminer on a small SHA-256 ASIC
    wallet_a = bech32_segwit("bc", rbytes(rng, 20))
    login_a = f"{wallet_a}.apollo"
    agent_a = "bfgminer/5.5.0"
    H_a, d_a = 2.8e12, 4096
    sa = Sess("stratum-v1", a, H_a, F_SHA256, "stratum-difficulty", agent=agent_a,
              login=login_a, worker="apollo", wallet=wallet_a, coin="BTC", algorithm="sha256d")
    sa.extra["notes"] = ("bfgminer: string ids \"xnsub\" and \"auth\", suggest_difficulty with "
                         "id null and no reply; runs in parallel with an xmrig session from "
                         "the same host")
    # session B: xmrig on the CPU of the same host, plain text on port 80
    wallet_b = monero_address(rng)
    login_b = f"{wallet_b}.apollo"
    agent_b = "XMRig/6.26.0 (Linux aarch64) libuv/1.48.0 gcc/12.2.0"
    H_b, d_b = 600.0, 3000
    sb = Sess("cryptonote", b, H_b, F_CN, "target", agent=agent_b, login=login_b,
              worker="apollo", wallet=wallet_b, coin="XMR", algorithm="randomx")
    sb.extra["notes"] = ("xmrig on port 80 in plain text, login \"address.worker\", no rigid; "
                         "in parallel with the bfgminer session from the same host")
    x = XmrigSession(cap, b, sb, login_b, agent_b, None, 44, 3_620_131)

    jobs: list[Job] = []

    def new_job(clean: bool) -> bytes:
        jid = f"{len(jobs) + 1:x}"
        jobs.append(Job(jid, d_a, cap.t // NS))
        return js({"id": None, "method": "mining.notify",
                   "params": btc_notify_params(rng, jid, 938_440, cap.t // NS, clean,
                                               "1701f303", b"/apollo-sample/", 5)})

    a.open(rtt_ms=26)
    cap.tick(0.3, 1)
    a.write(True, js({"id": 0, "method": "mining.subscribe", "params": [agent_a]}), ack=False)
    cap.tick(25, 28)
    a.write(False, js({"id": 0, "result": [[["mining.set_difficulty", "1"], ["mining.notify", "1"]],
                                           rhex(rng, 4), 4], "error": None}), ack=False)
    cap.tick(0.2, 0.6)
    a.write(True, js({"id": "xnsub", "method": "mining.extranonce.subscribe", "params": []}),
            js({"id": "auth", "method": "mining.authorize", "params": [login_a, "x"]}),
            ack=False)
    cap.tick(0.1, 0.4)
    a.write(True, js({"id": None, "method": "mining.suggest_difficulty", "params": [d_a]}),
            ack=False)
    cap.tick(25, 28)
    a.write(False, js({"id": "xnsub", "result": True, "error": None}),
            js({"id": "auth", "result": True, "error": None}), ack=False)
    cap.tick(0.3, 1)
    m_diff, m_job_a = a.write(False, js({"id": None, "method": "mining.set_difficulty",
                                         "params": [d_a]}), new_job(True))
    sa.diff(m_diff, d_a)
    sa.job(m_job_a)
    cap.tick(1500, 2500)
    b.open(rtt_ms=44)
    cap.tick(0.3, 1)
    m_job_b = x.login_exchange(cn_target_hex(d_b))

    times_a = schedule(rng, m_job_a.ts, [work_sha256(d_a)] * 10, H_a)
    times_b = schedule(rng, m_job_b.ts, [float(d_b)] * 12, H_b)
    tl = Timeline(cap)
    ids = iter(range(1, 10000))

    def share_a():
        job = jobs[-1]
        sid = next(ids)
        m = a.write(True, js({"params": [login_a, job.job_id, f"{rng.getrandbits(32):08x}",
                                         f"{job.ntime:08x}", f"{rng.getrandbits(32):08x}"],
                              "id": sid, "method": "mining.submit"}), ack=False)[0]
        sh = sa.share(m, work_sha256(job.diff), "apollo")
        cap.tick(25, 29)
        a.write(False, js({"id": sid, "result": True, "error": None}))
        sh["result"] = "accepted"

    for t in times_a:
        tl.at(t, share_a)
    for t in times_b:
        tl.at(t, x.submit)
    for t in every(m_job_a.ts, times_a[-1], 30, rng, 0.2):
        tl.at(t, lambda: a.write(False, new_job(False)))
    for t in every(m_job_b.ts, times_b[-1], 25, rng, 0.3):
        tl.at(t, lambda: x.push_job())
    tl.run()
    cap.tick(800, 1500)
    a.close(True)
    cap.tick(20, 60)
    b.close(True)
    return finish(cap, [sa, sb])


# ---------------------------------------------------------------------------
# 15. Retransmitted and out-of-order segments (Bitaxe)
# ---------------------------------------------------------------------------
def gen_retransmit_reorder():
    cap = ms.Capture("stratum_v1_retransmit_reorder.pcap", seed=4116, start_ns=start(15))
    rng = cap.rng
    link = ms.EthLink("02:00:5e:41:10:0a", MAC_GW)
    c = Conn(cap, link, "10.1.16.10", 58000, "203.0.113.26", 3333, ttl_s=50)
    wallet = bech32_segwit("bc", rbytes(rng, 20))
    worker = "bitaxe"
    login = f"{wallet}.{worker}"
    agent = "bitaxe/BM1370/v2.14.2"
    H = 1.2e12
    d1, d2 = 1000, 2000
    s = Sess("stratum-v1", c, H, F_SHA256, "stratum-difficulty", agent=agent, login=login,
             worker=worker, wallet=wallet, coin="BTC", algorithm="sha256d")
    jobs: list[Job] = []
    cur = {"d": d1}

    def new_job(clean: bool) -> bytes:
        jid = f"{len(jobs) + 0x31:x}"
        jobs.append(Job(jid, cur["d"], cap.t // NS))
        return jc({"id": None, "method": "mining.notify",
                   "params": btc_notify_params(rng, jid, 938_452, cap.t // NS, clean,
                                               "1701f303", b"/public-pool-sample/", 7)})

    c.open(rtt_ms=21)
    cap.tick(0.3, 1)
    c.write(True, js({"id": 1, "method": "mining.configure",
                      "params": [["version-rolling"], {"version-rolling.mask": "ffffffff"}]}),
            ack=False)
    cap.tick(20, 23)
    c.write(False, jc({"id": 1, "error": None, "result": {"version-rolling": True,
                                                         "version-rolling.mask": "1fffe000"}}),
            ack=False)
    cap.tick(0.2, 0.5)
    c.write(True, js({"id": 2, "method": "mining.subscribe", "params": [agent]}), ack=False)
    cap.tick(20, 23)
    c.write(False, jc({"id": 2, "error": None,
                       "result": [[["mining.notify", rhex(rng, 4)]], rhex(rng, 4), 4]}),
            ack=False)
    cap.tick(0.2, 0.5)
    c.write(True, js({"id": 3, "method": "mining.suggest_difficulty", "params": [d1]}),
            js({"id": 4, "method": "mining.authorize", "params": [login, "x"]}), ack=False)
    cap.tick(20, 23)
    _, m_diff, m_job = c.write(False, jc({"id": 4, "error": None, "result": True}),
                               jc({"id": None, "method": "mining.set_difficulty",
                                   "params": [d1]}), new_job(True))
    s.diff(m_diff, d1)
    s.job(m_job)
    n1, n2 = 9, 4
    works = [work_sha256(d1)] * n1 + [work_sha256(d2)] * n2
    times = schedule(rng, m_job.ts, works, H)
    tl = Timeline(cap)
    ids = iter(range(5, 10000))
    anomalies = []

    def submit_line(sid: int, job: Job) -> bytes:
        return js({"id": sid, "method": "mining.submit",
                   "params": [login, job.job_id, f"{rng.getrandbits(32):08x}",
                              f"{job.ntime:08x}", f"{rng.getrandbits(32):08x}",
                              f"{rng.getrandbits(32) & 0x1FFFE000:08x}"]})

    def reply(sids: list[int], then_spurious: bool = False) -> None:
        msgs = c.write(False, *[jc({"id": sid, "error": None, "result": True}) for sid in sids],
                       ack=not then_spurious)
        if then_spurious:  # the miner's ACK is lost upstream: the pool resends its reply
            cap.tick(200, 230)
            for m in msgs:
                c.pkt(False, "PA", m.data, off=m.start)
            anomalies.append(f"frame {len(cap.pkts)}: spurious retransmission of the pool's "
                             "reply")
            cap.tick(0.05, 0.3)
            c.pkt(True, "A")

    def share(i: int):
        def fn():
            job = jobs[-1]
            if i == 3:  # the submit is lost after the capture point: retransmitted
                sid = next(ids)
                m = c.write(True, submit_line(sid, job), ack=False)[0]
                cap.tick(205, 225)
                c.pkt(True, "PA", m.data, off=m.start)
                anomalies.append(f"frame {len(cap.pkts)}: retransmission of the submit in frame "
                                 f"{m.frame}")
                sh = s.share(m, work_sha256(job.diff), worker)
                cap.tick(20, 23)
                reply([sid])
                sh["result"] = "accepted"
            elif i == 7:  # shares 7 and 8 leave back to back; the tap sees them swapped
                sids = [next(ids), next(ids)]
                datas = [submit_line(sid, job) for sid in sids]
                msgs, buf, base = c.register(True, datas)
                cut = len(datas[0])
                c.pkt(True, "PA", buf[cut:], off=base + cut)
                first_seen = len(cap.pkts)
                cap.tick(0.05, 0.2)
                c.pkt(False, "A")  # duplicate ACK: the first submit is missing
                cap.tick(0.3, 0.8)
                c.pkt(True, "PA", buf[:cut], off=base)
                anomalies.append(f"frames {first_seen} and {len(cap.pkts)}: two submits "
                                 "captured out of order (the second one first)")
                shs = [s.share(m, work_sha256(job.diff), worker) for m in msgs]
                cap.tick(20, 23)
                reply(sids)
                for sh in shs:
                    sh["result"] = "accepted"
            elif i == 8:
                return
            else:
                sid = next(ids)
                m = c.write(True, submit_line(sid, job), ack=False)[0]
                sh = s.share(m, work_sha256(job.diff), worker)
                cap.tick(20, 23)
                reply([sid], then_spurious=i == 10)
                sh["result"] = "accepted"
        return fn

    for i, t in enumerate(times, 1):
        tl.at(t, share(i))

    def reordered_job():
        """A notify in two segments; the second one reaches the tap first."""
        data = new_job(False)
        _, buf, base = c.register(False, [data])
        cut = 380
        c.pkt(False, "PA", buf[cut:], off=base + cut)
        first_seen = len(cap.pkts)
        cap.tick(0.05, 0.2)
        c.pkt(True, "A")  # duplicate ACK
        cap.tick(0.5, 1.5)
        c.pkt(False, "A", buf[:cut], off=base)
        anomalies.append(f"frames {first_seen} and {len(cap.pkts)}: a mining.notify split in two "
                         "segments, captured second half first")
        cap.tick(0.05, 0.2)
        c.pkt(True, "A")

    periodic = every(m_job.ts, times[-1], 15, rng, 0.2)
    for t in periodic:
        tl.at(t, lambda: c.write(False, new_job(False)))
    tl.at((times[4] + times[5]) / 2, reordered_job)

    def retarget():
        cur["d"] = d2
        m, _ = c.write(False, jc({"id": None, "method": "mining.set_difficulty",
                                  "params": [d2]}), new_job(False))
        s.diff(m, d2)

    tl.at(times[n1 - 1] + 300 * MS, retarget)
    tl.run()
    cap.tick(500, 1500)
    c.close(True)
    s.extra["anomalies"] = sorted(anomalies, key=lambda a: int(re.search(r"\d+", a).group()))
    s.extra["notes"] = ("ESP-Miner style client (configure, subscribe, suggest_difficulty, "
                        "authorize); pool replies with key order id/error/result; flow packet "
                        "counts include every retransmitted segment; a message's frame is where "
                        "the in-order stream completes it, so both out-of-order submits have "
                        "the frame of the late first segment and retransmissions never count "
                        "as new shares")
    return finish(cap, [s])


# ---------------------------------------------------------------------------
# Benign look-alikes (sessions: [])
# ---------------------------------------------------------------------------
def http_post(host: str, body: str, headers: str) -> bytes:
    return (f"POST / HTTP/1.1\r\nHost: {host}\r\n{headers}"
            f"Content-Length: {len(body)}\r\n\r\n{body}").encode()


def gen_benign_bitcoin_rpc():
    """A node operator's monitoring script polling bitcoind's JSON-RPC (python-bitcoinrpc),
    including one getblocktemplate for fee/mempool statistics: no miner agent, no work loop,
    no submitblock, no shares."""
    cap = ms.Capture("benign_bitcoin_rpc.pcap", seed=4201, start_ns=start(20))
    rng = cap.rng
    link = ms.EthLink("02:00:5e:42:01:0a", MAC_GW)
    node = "10.2.1.2"
    c = Conn(cap, link, "10.2.1.10", 52200, node, 8332, ttl_c=64, ttl_s=64)
    auth = base64.b64encode(b"__cookie__:" + rhex(rng, 32).encode()).decode()
    hdrs = (f"Accept-Encoding: identity\r\nUser-Agent: AuthServiceProxy/0.1\r\n"
            f"Authorization: Basic {auth}\r\nContent-type: application/json\r\n")
    height = 938_460
    best = "00000000000000000001" + rhex(rng, 22)

    def call(i: int, method: str, params: list, result) -> None:
        body = json.dumps({"version": "1.1", "method": method, "params": params, "id": i})
        c.write(True, http_post(f"{node}:8332", body, hdrs), ack=False)
        cap.tick(0.3, 4)
        out = json.dumps({"result": result, "error": None, "id": i},
                         separators=(",", ":")) + "\n"
        c.write(False, (f"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                        f"Date: {http_date(cap.t)}\r\nContent-Length: {len(out)}\r\n\r\n"
                        + out).encode())
        cap.tick(200, 900)

    def tx() -> dict:
        txid = rhex(rng, 32)
        return {"data": "02000000000101" + rhex(rng, 36) + "00fdffffff02" + rhex(rng, 62)
                        + "0247304402" + rhex(rng, 70) + "00000000",
                "txid": txid, "hash": rhex(rng, 32), "depends": [],
                "fee": rng.randrange(300, 9000), "sigops": 1, "weight": 561}

    c.open(rtt_ms=0.3)
    cap.tick(0.2, 0.5)
    call(1, "getblockchaininfo", [], {
        "chain": "main", "blocks": height, "headers": height, "bestblockhash": best,
        "difficulty": 110568428300952.7, "time": cap.t // NS - 300,
        "mediantime": cap.t // NS - 3100, "verificationprogress": 0.9999985,
        "initialblockdownload": False, "chainwork": "0000000000000000000000000000000000000000"
        + rhex(rng, 12), "size_on_disk": 712_345_678_901, "pruned": False, "warnings": ""})
    call(2, "getnetworkinfo", [], {
        "version": 270100, "subversion": "/Satoshi:27.1.0/", "protocolversion": 70016,
        "localservices": "0000000000000c09", "localrelay": True, "timeoffset": 0,
        "networkactive": True, "connections": 10, "connections_in": 0, "connections_out": 10,
        "relayfee": 0.00001, "incrementalfee": 0.00001, "warnings": ""})
    call(3, "getmempoolinfo", [], {
        "loaded": True, "size": 41_877, "bytes": 19_204_811, "usage": 112_403_344,
        "total_fee": 0.61853211, "maxmempool": 300_000_000, "mempoolminfee": 0.00001,
        "minrelaytxfee": 0.00001, "unbroadcastcount": 0})
    call(4, "getblocktemplate", [{"rules": ["segwit"]}], {
        "capabilities": ["proposal"], "version": 536870912,
        "rules": ["csv", "!segwit", "taproot"], "vbavailable": {}, "vbrequired": 0,
        "previousblockhash": best, "transactions": [tx() for _ in range(4)],
        "coinbaseaux": {}, "coinbasevalue": 315_372_911,
        "longpollid": best + "1138", "target": "00000000000000000002a4c30000000000000000000000000000000000000000",
        "mintime": cap.t // NS - 3099, "mutable": ["time", "transactions", "prevblock"],
        "noncerange": "00000000ffffffff", "sigoplimit": 80000, "sizelimit": 4000000,
        "weightlimit": 4000000, "curtime": cap.t // NS, "bits": "1702a4c3", "height": height + 1,
        "default_witness_commitment": "6a24aa21a9ed" + rhex(rng, 32)})
    call(5, "getblockchaininfo", [], {
        "chain": "main", "blocks": height, "headers": height, "bestblockhash": best,
        "difficulty": 110568428300952.7, "time": cap.t // NS - 330,
        "mediantime": cap.t // NS - 3130, "verificationprogress": 0.9999986,
        "initialblockdownload": False, "chainwork": "0000000000000000000000000000000000000000"
        + rhex(rng, 12), "size_on_disk": 712_345_901_112, "pruned": False, "warnings": ""})
    c.close(True)
    return finish(cap, [])


def gen_benign_electrum():
    """Electrum wallet <-> ElectrumX over plain TCP 50001: newline-delimited JSON-RPC 2.0 with
    subscriptions and server pushes (method + params, no id), like Stratum but not mining."""
    cap = ms.Capture("benign_electrum.pcap", seed=4202, start_ns=start(21))
    rng = cap.rng
    link = ms.EthLink("02:00:5e:42:02:0a", MAC_GW)
    c = Conn(cap, link, "10.2.2.10", 51515, "198.51.100.32", 50001, ttl_s=52)
    ids = iter(range(1000))
    height = 938_470

    def header() -> str:
        return ("00e0ff3f" + rhex(rng, 32) + rhex(rng, 32)
                + (cap.t // NS).to_bytes(4, "little").hex() + "c3a40217" + rhex(rng, 4))

    def req(method: str, params: list) -> tuple[int, bytes]:
        i = next(ids)
        return i, js({"jsonrpc": "2.0", "method": method, "id": i, "params": params})

    def res(i: int, result) -> bytes:
        return js({"jsonrpc": "2.0", "result": result, "id": i})

    c.open(rtt_ms=27)
    cap.tick(0.3, 1)
    i, line = req("server.version", ["electrum/4.5.5", "1.4"])
    c.write(True, line, ack=False)
    cap.tick(26, 29)
    c.write(False, res(i, ["ElectrumX 1.16.0", "1.4"]), ack=False)
    cap.tick(0.2, 0.6)
    reqs = [req("blockchain.headers.subscribe", []), req("server.donation_address", []),
            req("server.peers.subscribe", []), req("blockchain.relayfee", []),
            req("blockchain.estimatefee", [2]), req("blockchain.estimatefee", [6])]
    c.write(True, *[ln for _, ln in reqs], ack=False)
    cap.tick(26, 30)
    peers = [[f"198.51.100.{40 + k}", f"electrum{k}.example.org",
              ["v1.4", "s50002", "t50001"]] for k in range(3)]
    c.write(False, res(reqs[0][0], {"hex": header(), "height": height}),
            res(reqs[1][0], "bc1q" + "".join(rng.choice(BECH32) for _ in range(38))),
            res(reqs[2][0], peers), res(reqs[3][0], 1e-05), res(reqs[4][0], 0.00012),
            res(reqs[5][0], 0.00008))
    cap.tick(5, 20)
    hashes = [hashlib.sha256(rbytes(rng, 25)).digest()[::-1].hex() for _ in range(4)]
    subs = [req("blockchain.scripthash.subscribe", [h]) for h in hashes]
    c.write(True, *[ln for _, ln in subs], ack=False)
    cap.tick(26, 30)
    c.write(False, *[res(i, rhex(rng, 32) if k % 2 == 0 else None)
                     for k, (i, _) in enumerate(subs)])
    for _ in range(2):
        cap.tick(25_000, 35_000)
        i, line = req("server.ping", [])
        c.write(True, line, ack=False)
        cap.tick(26, 29)
        c.write(False, res(i, None))
    cap.tick(5_000, 9_000)
    height += 1
    c.write(False, js({"jsonrpc": "2.0", "method": "blockchain.headers.subscribe",
                       "params": [{"hex": header(), "height": height}]}))
    cap.tick(3, 9)
    c.write(False, js({"jsonrpc": "2.0", "method": "blockchain.scripthash.subscribe",
                       "params": [hashes[0], rhex(rng, 32)]}))
    cap.tick(40, 120)
    i, line = req("blockchain.scripthash.get_history", [hashes[0]])
    c.write(True, line, ack=False)
    cap.tick(26, 30)
    c.write(False, res(i, [{"tx_hash": rhex(rng, 32), "height": height - 12},
                           {"tx_hash": rhex(rng, 32), "height": height}]))
    cap.tick(2000, 5000)
    c.close(True)
    return finish(cap, [])


def gen_benign_ethereum_rpc():
    """web3.py polling a geth node over HTTP JSON-RPC on 8545 (eth_* methods, not mining)."""
    cap = ms.Capture("benign_ethereum_rpc.pcap", seed=4203, start_ns=start(22))
    rng = cap.rng
    link = ms.EthLink("02:00:5e:42:03:0a", MAC_GW)
    node = "10.2.3.2"
    c = Conn(cap, link, "10.2.3.10", 50300, node, 8545, ttl_c=64, ttl_s=64)
    hdrs = ("User-Agent: web3.py/6.15.1/<class 'web3.providers.rpc.HTTPProvider'>\r\n"
            "Accept-Encoding: gzip, deflate\r\nAccept: */*\r\nConnection: keep-alive\r\n"
            "Content-Type: application/json\r\n")
    ids = iter(range(1000))
    account = eip55(rbytes(rng, 20))
    block = 0x16A2F31

    def call(method: str, params: list, result) -> None:
        i = next(ids)
        body = json.dumps({"jsonrpc": "2.0", "method": method, "params": params, "id": i})
        c.write(True, http_post(f"{node}:8545", body, hdrs), ack=False)
        cap.tick(0.4, 3)
        out = json.dumps({"jsonrpc": "2.0", "id": i, "result": result},
                         separators=(",", ":")) + "\n"
        c.write(False, (f"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nVary: Origin\r\n"
                        f"Date: {http_date(cap.t)}\r\nContent-Length: {len(out)}\r\n\r\n"
                        + out).encode())

    c.open(rtt_ms=0.3)
    cap.tick(0.2, 0.5)
    call("eth_chainId", [], "0x1")
    cap.tick(1, 5)
    for k in range(4):
        call("eth_blockNumber", [], hex(block + k))
        cap.tick(1, 4)
        call("eth_getBalance", [account, "latest"], hex(rng.getrandbits(70)))
        cap.tick(1, 4)
        call("eth_gasPrice", [], hex(rng.randrange(2_000_000_000, 30_000_000_000)))
        cap.tick(11_000, 13_000)
    call("eth_syncing", [], False)
    cap.tick(1, 4)
    c.close(True)
    return finish(cap, [])


def gen_benign_jsonl_chat():
    """A chat/game-lobby protocol: newline-delimited JSON with "method" and "params" (auth.login,
    room.subscribe, message.submit, room.notify pushes with id null) on port 7777."""
    cap = ms.Capture("benign_jsonl_chat.pcap", seed=4204, start_ns=start(23))
    rng = cap.rng
    link = ms.EthLink("02:00:5e:42:04:0a", MAC_GW)
    c = Conn(cap, link, "10.2.4.10", 46000, "203.0.113.34", 7777, ttl_s=51)
    words = ("deploy", "tonight", "ok", "lunch", "build", "green", "rebase", "merged", "coffee",
             "review", "ship", "it", "later", "thanks", "lgtm")

    def sentence() -> str:
        return " ".join(rng.choice(words) for _ in range(rng.randrange(2, 8)))

    c.open(rtt_ms=19)
    cap.tick(0.3, 1)
    c.write(True, jc({"id": 1, "method": "auth.login",
                      "params": {"user": "alice", "token": rhex(rng, 16),
                                 "client": "lobbychat/2.3.1"}}), ack=False)
    cap.tick(18, 21)
    c.write(False, jc({"id": 1, "result": {"session": rhex(rng, 8), "motd": "welcome back"},
                       "error": None}), ack=False)
    cap.tick(0.2, 0.6)
    c.write(True, jc({"id": 2, "method": "room.subscribe", "params": ["#ops", "#random"]}),
            ack=False)
    cap.tick(18, 21)
    c.write(False, jc({"id": 2, "result": [True, True], "error": None}))
    mid = iter(range(3, 1000))
    for _ in range(9):
        cap.tick(2000, 9000)
        if rng.random() < 0.45:
            i = next(mid)
            c.write(True, jc({"id": i, "method": "message.submit",
                              "params": ["#ops", sentence()]}), ack=False)
            cap.tick(18, 21)
            c.write(False, jc({"id": i, "result": {"accepted": True, "seq": rng.randrange(10**6)},
                               "error": None}))
        else:
            c.write(False, jc({"id": None, "method": "room.notify",
                               "params": [rng.choice(["#ops", "#random"]),
                                          rng.choice(["bob", "carol", "dave"]), sentence()]}))
    cap.tick(1000, 3000)
    i = next(mid)
    c.write(True, jc({"id": i, "method": "presence.set", "params": {"status": "away"}}),
            ack=False)
    cap.tick(18, 21)
    c.write(False, jc({"id": i, "result": True, "error": None}))
    cap.tick(500, 1500)
    c.close(True)
    return finish(cap, [])


def btc_p2p(command: str, payload: bytes) -> bytes:
    return (bytes.fromhex("f9beb4d9") + command.encode().ljust(12, b"\0")
            + struct.pack("<I", len(payload)) + sha256d(payload)[:4] + payload)


def btc_netaddr(services: int, ip: str, port: int) -> bytes:
    return (struct.pack("<Q", services) + b"\0" * 10 + b"\xff\xff"
            + bytes(int(x) for x in ip.split(".")) + struct.pack(">H", port))


def btc_version(rng, ts: int, me: tuple[str, int], peer: tuple[str, int], ua: str,
                height: int) -> bytes:
    services = 0x0C09
    return (struct.pack("<iQq", 70016, services, ts) + btc_netaddr(0, peer[0], peer[1])
            + btc_netaddr(services, "0.0.0.0", 0) + struct.pack("<Q", rng.getrandbits(64))
            + bytes([len(ua)]) + ua.encode() + struct.pack("<i", height) + b"\x01")


def btc_tx(rng) -> bytes:
    """A legacy-serialised transaction: 1 input (P2PKH scriptSig), 2 P2WPKH outputs."""
    script_sig = (b"\x47\x30\x44\x02\x20" + rbytes(rng, 32) + b"\x02\x20" + rbytes(rng, 32)
                  + b"\x01\x21\x02" + rbytes(rng, 32))
    outs = b"".join(struct.pack("<Q", rng.randrange(10_000, 50_000_000)) + b"\x16\x00\x14"
                    + rbytes(rng, 20) for _ in range(2))
    return (struct.pack("<I", 2) + b"\x01" + rbytes(rng, 32) + struct.pack("<I", rng.randrange(4))
            + bytes([len(script_sig)]) + script_sig + b"\xfd\xff\xff\xff" + b"\x02" + outs
            + struct.pack("<I", 0))


def gen_benign_bitcoin_p2p():
    """Two Bitcoin Core nodes: version/verack handshake (BIP 339 wtxidrelay, BIP 155
    sendaddrv2), sendheaders, sendcmpct, feefilter, ping/pong, on 8333."""
    cap = ms.Capture("benign_bitcoin_p2p.pcap", seed=4205, start_ns=start(24))
    rng = cap.rng
    link = ms.EthLink("02:00:5e:42:05:0a", MAC_GW)
    me, peer = ("10.2.5.10", 49876), ("198.51.100.35", 8333)
    c = Conn(cap, link, me[0], me[1], peer[0], peer[1], ttl_s=50)
    height = 938_475
    c.open(rtt_ms=42)
    cap.tick(0.2, 0.6)
    c.write(True, btc_p2p("version", btc_version(rng, cap.t // NS, me, peer,
                                                 "/Satoshi:27.1.0/", height)), ack=False)
    cap.tick(41, 45)
    c.write(False, btc_p2p("version", btc_version(rng, cap.t // NS, peer, me,
                                                  "/Satoshi:28.0.0/", height)),
            btc_p2p("wtxidrelay", b""), btc_p2p("sendaddrv2", b""), btc_p2p("verack", b""),
            ack=False)
    cap.tick(0.3, 1)
    c.write(True, btc_p2p("wtxidrelay", b""), btc_p2p("sendaddrv2", b""),
            btc_p2p("verack", b""), btc_p2p("sendheaders", b""),
            btc_p2p("sendcmpct", b"\x00" + struct.pack("<Q", 2)),
            btc_p2p("ping", struct.pack("<Q", rng.getrandbits(64))),
            btc_p2p("feefilter", struct.pack("<q", 1000)), ack=False)
    cap.tick(41, 45)
    nonce = rng.getrandbits(64)
    c.write(False, btc_p2p("sendheaders", b""),
            btc_p2p("sendcmpct", b"\x00" + struct.pack("<Q", 2)),
            btc_p2p("ping", struct.pack("<Q", nonce)),
            btc_p2p("feefilter", struct.pack("<q", 2160)), ack=False)
    cap.tick(0.2, 0.6)
    c.write(True, btc_p2p("pong", struct.pack("<Q", nonce)),
            btc_p2p("getheaders", struct.pack("<I", 70016) + b"\x01" + rbytes(rng, 32)
                    + bytes(32)), ack=False)
    cap.tick(41, 45)
    c.write(False, btc_p2p("pong", struct.pack("<Q", rng.getrandbits(64))),
            btc_p2p("headers", b"\x00"))
    for _ in range(3):
        cap.tick(8000, 20000)
        inv = b"".join(struct.pack("<I", 5) + rbytes(rng, 32) for _ in range(rng.randrange(1, 6)))
        c.write(False, btc_p2p("inv", bytes([len(inv) // 36]) + inv), ack=False)
        cap.tick(0.2, 1)
        c.write(True, btc_p2p("getdata", bytes([len(inv) // 36]) + inv), ack=False)
        cap.tick(41, 45)
        c.write(False, btc_p2p("tx", btc_tx(rng)))
    cap.tick(2000, 4000)
    c.close(True)
    return finish(cap, [])


# ---------------------------------------------------------------------------
SCENARIOS = [
    gen_cgminer_sha256d, gen_midstream_join, gen_scrypt_ltc, gen_kawpow_rvn, gen_kaspa,
    gen_zcash_equihash, gen_ethproxy, gen_ethereumstratum_1, gen_ethereumstratum_2,
    gen_cryptonote_xmrig, gen_getwork_http, lambda: gen_stratum_v2(False),
    lambda: gen_stratum_v2(True), gen_proxy_many_workers, gen_two_sessions_one_host,
    gen_retransmit_reorder, gen_benign_bitcoin_rpc, gen_benign_electrum,
    gen_benign_ethereum_rpc, gen_benign_jsonl_chat, gen_benign_bitcoin_p2p,
]


def dump_expected(path: Path, exp: dict) -> None:
    """make_samples.py's layout (one flow per line), then one session key per line."""
    lines = ["{", f'  "capture": {json.dumps(exp["capture"])},',
             f'  "linktypes": {json.dumps(exp["linktypes"])},',
             f'  "packets": {exp["packets"]},', '  "flows": [']
    for i, f in enumerate(exp["flows"]):
        sep = "," if i < len(exp["flows"]) - 1 else ""
        lines.append("    " + json.dumps(f, separators=(", ", ": ")) + sep)
    lines.append("  ],")
    lines.append(f'  "fragments_nonfirst": {exp["fragments_nonfirst"]},')
    if not exp["sessions"]:
        lines.append('  "sessions": []')
    else:
        lines.append('  "sessions": [')
        for i, s in enumerate(exp["sessions"]):
            lines.append("    {")
            items = list(s.items())
            for j, (k, v) in enumerate(items):
                sep = "," if j < len(items) - 1 else ""
                lines.append(f"      {json.dumps(k)}: {json.dumps(v, separators=(', ', ': '))}{sep}")
            lines.append("    }" + ("," if i < len(exp["sessions"]) - 1 else ""))
        lines.append("  ]")
    lines.append("}")
    text = "\n".join(lines) + "\n"
    assert json.loads(text) == exp
    path.write_text(text)


def main(argv: list[str]) -> int:
    outdir = Path(argv[1]) if len(argv) > 1 else HERE / "stratum"
    outdir.mkdir(parents=True, exist_ok=True)
    total = 0
    for gen in SCENARIOS:
        cap, sessions = gen()
        ms.write_pcap(outdir / cap.name, ms.LINKTYPE_ETHERNET, cap.pkts)
        exp = ms.expected(cap.name, [ms.LINKTYPE_ETHERNET], cap.pkts)
        exp["sessions"] = sorted((s.oracle() for s in sessions),
                                 key=lambda o: (o["first_frame"], o["src_port"]))
        stem = cap.name.rsplit(".", 1)[0]
        dump_expected(outdir / f"{stem}.expected.json", exp)
        size = (outdir / cap.name).stat().st_size
        total += size
        print(f"{cap.name}: {len(cap.pkts)} packets, {size} bytes, "
              f"{len(exp['sessions'])} session(s)")
    print(f"total {total} bytes")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
