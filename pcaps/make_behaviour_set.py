#!/usr/bin/env python3
"""Generate the behaviour model's labelled set: encrypted mining flows and hard benign ones.

Usage::

    python pcaps/make_behaviour_set.py OUTDIR [--split tune|eval|both] [--samples]

Each split is one capture (raw IP link type, microsecond pcap, snap length 160 bytes: the
IP header's length still says how much was sent) plus ``<split>.labels.json``: one entry per
flow with its endpoints, ``label`` (1 mining, 0 benign), ``category`` and the parameters
drawn for it. Labels are recorded by the generator from what it built, never by reading the
capture. The two splits use disjoint seeds: ``tune`` (seeds 1000+) is the only one the
model's weights were looked at on; ``eval`` (seeds 2000+) is held out and the figures in
docs/behaviour.md are measured on it. ``--samples`` writes the two small committed samples
of pcaps/behaviour/ instead, each with a ``.labels.json`` (not ``.expected.json``: that name
makes tests/conftest.py treat a capture as a flow-oracle sample, and these sessions are
longer than the flow table's timeouts).

Only documentation/private addresses are used; nothing is sent anywhere. Packet headers
are built by scapy once per connection direction (a template), then each packet patches
its sequence numbers, flags, lengths and checksums (scapy's per-packet build costs ~0.3 ms,
too slow for the ~10^5 packets of a split).

What is modelled (every size is the TLS/Noise ciphertext on the wire: plaintext + 22 bytes
for a TLS 1.3 record, + 29 for TLS 1.2 AES-GCM, + 22 + 16 for an SV2 Noise frame):

Mining (label 1), shares at Poisson times (rate from the difficulty: one per 2-45 s, a
vardiff retarget after the first minutes), each answered after one RTT (20-250 ms), jobs
pushed at the coin's block times (exponential gaps with the coin's mean) plus the pools'
periodic refreshes:

* ``btc-tls``: Stratum v1 submit 150-200 B plaintext, reply ~38 B, mining.notify 600-1100 B
  (merkle branches vary per job), refresh every 30 s or 60 s, blocks every ~600 s;
* ``xmr-tls``: xmrig submit ~220 B, reply ~66 B, job ~380 B, blocks every ~120 s;
* ``etc-tls``: EthereumStratum submit ~170 B, reply ~40 B, notify ~250 B, blocks ~13 s;
* ``kas-tls``: kaspa bridge submit ~140 B, reply ~40 B, notify ~190 B, jobs every ~1 s;
* ``sv2-noise``: Stratum V2 with the Noise handshake (64 B / 234 B), SubmitSharesStandard
  62 B, SubmitShares.Success 58 B (batched: not every share answered), NewMiningJob 88 B +
  SetNewPrevHash 86 B on blocks (~600 s), NewMiningJob every 30 s.

Benign (label 0), long-lived and small on purpose:

* ``ws-ticker``: a stock ticker websocket: quotes pushed every 0.5-5 s (varied sizes),
  client pings every 30 s answered by pongs;
* ``ws-chat``: chat: human messages in bursts, server fan-out, Socket.IO heartbeats;
* ``push-channel``: MQTT/FCM-style push channel: keepalive every 30-60 s, rare notifications;
* ``iot-poisson``: the hardest: telemetry published at *random* times with constant size,
  acknowledged by the broker, occasional commands pushed by the broker;
* ``ssh-interactive``: keystrokes (constant-size records, echoed), command output, pauses;
* ``ssh-bulk``: a copy over SSH (full-size segments);
* ``vpn``: OpenVPN over TCP carrying browsing bursts and its 10-s pings;
* ``db-requests``: a database connection of an app: prepared statements at random times,
  varied result sizes;
* ``db-poller``: a job-queue poller: the same query every few seconds;
* ``video``: segment fetches every 2-6 s, 100-300 kB each;
* ``idle-keepalive``: an idle pooled connection with application heartbeats.
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import math
import random
import struct
import sys
from dataclasses import dataclass, field
from pathlib import Path

from scapy.layers.inet import IP, TCP

NS = 10**9
MS = 10**6
START_NS = 1_772_467_200 * NS  # 2026-03-02T16:00:00Z
SNAP = 160
MSS = 1448
TUNE_SEEDS = 1000
EVAL_SEEDS = 2000

MINING = ("btc-tls", "xmr-tls", "etc-tls", "kas-tls", "sv2-noise")
BENIGN = ("ws-ticker", "ws-chat", "push-channel", "iot-poisson", "ssh-interactive",
          "ssh-bulk", "vpn", "db-requests", "db-poller", "video", "idle-keepalive")
# Flows per category and split. Heavy categories (many packets) get fewer.
COUNTS = {"btc-tls": 6, "xmr-tls": 6, "etc-tls": 6, "kas-tls": 4, "sv2-noise": 6,
          "ws-ticker": 5, "ws-chat": 4, "push-channel": 4, "iot-poisson": 4,
          "ssh-interactive": 4, "ssh-bulk": 1, "vpn": 2, "db-requests": 4, "db-poller": 3,
          "video": 2, "idle-keepalive": 3}
# Mean block interval (s) per coin: what the job pushes follow.
BLOCK_S = {"BTC": 600.0, "XMR": 120.0, "ETC": 13.0, "KAS": 1.0}


def _csum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    s = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


@dataclass
class Conn:
    """One TCP connection; packets are (ts_ns, frame bytes, wire length)."""

    rng: random.Random
    cip: str
    cport: int
    sip: str
    sport: int
    rtt_ns: int
    out: list = field(default_factory=list)
    # What the client's first payload starts with (TLS record header, SSH banner, ...);
    # the rest of every payload is random bytes (ciphertext).
    opening: bytes = b""
    client_spoke: bool = False

    def __post_init__(self):
        self.seq = [self.rng.getrandbits(32), self.rng.getrandbits(32)]
        self.ipid = [self.rng.randint(256, 60000), self.rng.randint(256, 60000)]
        self.tmpl = []
        for from_client in (True, False):
            src, dst = (self.cip, self.sip) if from_client else (self.sip, self.cip)
            sp, dp = (self.cport, self.sport) if from_client else (self.sport, self.cport)
            self.tmpl.append(bytearray(bytes(IP(src=src, dst=dst, ttl=64 if from_client else 52,
                                                flags="DF") / TCP(sport=sp, dport=dp,
                                                                  window=502))))
        self.pseudo = [ipaddress.ip_address(self.cip).packed + ipaddress.ip_address(self.sip).packed,
                       ipaddress.ip_address(self.sip).packed + ipaddress.ip_address(self.cip).packed]

    def pkt(self, ts: int, from_client: bool, flags: int, payload: bytes = b"") -> None:
        k = 0 if from_client else 1
        h = bytearray(self.tmpl[k])
        total = 40 + len(payload)
        self.ipid[k] = (self.ipid[k] + 1) & 0xFFFF
        struct.pack_into("!HH", h, 2, total, self.ipid[k])
        struct.pack_into("!H", h, 10, 0)
        struct.pack_into("!H", h, 10, _csum(bytes(h[:20])))
        ack = self.seq[1 - k] if flags & 0x10 else 0
        struct.pack_into("!II", h, 24, self.seq[k], ack)
        h[33] = flags
        struct.pack_into("!H", h, 36, 0)
        if total <= SNAP:  # a whole packet gets a correct TCP checksum
            seg = bytes(h[20:]) + payload
            struct.pack_into("!H", h, 36, _csum(self.pseudo[k] + struct.pack("!HH", 6, len(seg))
                                                + seg))
        self.seq[k] = (self.seq[k] + len(payload) + (1 if flags & 0x03 else 0)) & 0xFFFFFFFF
        ts -= ts % 1000  # microsecond pcap; the split is sorted by time (stable) at the end
        frame = bytes(h) + payload[: max(0, SNAP - 40)]
        self.out.append((ts, frame, total))

    def open(self, t: int) -> int:
        self.pkt(t, True, 0x02)
        t += self.rtt_ns
        self.pkt(t, False, 0x12)
        t += self.rng.randint(50, 300) * 1000
        self.pkt(t, True, 0x10)
        return t

    def send(self, t: int, from_client: bool, size: int, ack: bool = True) -> int:
        """``size`` payload bytes in MSS segments from one side (random bytes: ciphertext),
        acknowledged by the other side half an RTT later (one ACK per two segments)."""
        n = 0
        while size > 0:
            chunk = min(size, MSS)
            payload = self.rng.randbytes(chunk)
            if from_client and not self.client_spoke:
                self.client_spoke = True
                head = self.opening[:chunk]
                if head[:1] == b"\x16":  # a TLS record header carries the record's length
                    head = head[:3] + struct.pack("!H", max(size - 5, 0))
                    head = head[:chunk]
                payload = head + payload[len(head):]
            self.pkt(t, from_client, 0x18 if chunk == size else 0x10, payload)
            size -= chunk
            n += 1
            t += self.rng.randint(20, 120) * 1000 if size else 0
            if ack and (n % 2 == 0 or size == 0):
                self.pkt(t + self.rtt_ns // 2 + self.rng.randint(0, 40) * MS // 1000,
                         not from_client, 0x10)
        return t

    def close(self, t: int) -> None:
        self.pkt(t, True, 0x11)
        self.pkt(t + self.rtt_ns, False, 0x11)
        self.pkt(t + self.rtt_ns + 200_000, True, 0x10)


# ---------------------------------------------------------------------------------------
# First bytes of the client's first payload: a TLS handshake record (length filled in), or
# the protocol's own opening where it is not TLS.
TLS_OPENING = b"\x16\x03\x01\x00\x00"
OPENINGS = {
    "ssh": b"SSH-2.0-OpenSSH_9.6p1\r\n",
    "vpn": b"\x00\x0e\x38",  # OpenVPN over TCP: length, P_CONTROL_HARD_RESET_CLIENT_V2
    "db": b"\x00\x00\x00\x08\x04\xd2\x16\x2f",  # PostgreSQL SSLRequest, then TLS
}


def _exp(rng: random.Random, mean: float) -> float:
    return rng.expovariate(1.0 / mean)


def _events(rng, start: float, end: float, mean: float, floor: float = 0.0) -> list[float]:
    """Poisson event times (s) in [start, end)."""
    out, t = [], start
    while True:
        t += max(floor, _exp(rng, mean))
        if t >= end:
            return out
        out.append(t)


def _periodic(rng, start: float, end: float, period: float, jitter: float) -> list[float]:
    out, t = [], start
    while True:
        t += period * (1 + rng.uniform(-jitter, jitter))
        if t >= end:
            return out
        out.append(t)


def mining_flow(conn: Conn, rng: random.Random, cat: str, t0: int, dur_s: float,
                chain: list[float] | None = None) -> dict:
    """Messages of one encrypted mining session: (time s, from_client, bytes)."""
    tls = 22 if rng.random() < 0.7 else 29
    conn.opening = b"" if cat == "sv2-noise" else TLS_OPENING
    msgs: list[tuple[float, bool, int]] = []
    coin = {"btc-tls": "BTC", "xmr-tls": "XMR", "etc-tls": "ETC", "kas-tls": "KAS",
            "sv2-noise": "BTC"}[cat]
    share_mean = rng.uniform(2.0, 45.0)
    early_mean = share_mean / rng.uniform(1.5, 4.0)  # vardiff: fast shares until retarget
    retarget = rng.uniform(60, 240)
    if chain is None:
        blocks = _events(rng, -60, dur_s, BLOCK_S[coin], floor=0.05)
    else:  # the split's chain: block times in seconds from START_NS
        off = (t0 - START_NS) / NS
        blocks = [b - off for b in chain if -60 <= b - off < dur_s]
    if cat == "sv2-noise":
        msgs += [(0.01, True, 64), (0.02, False, 234), (0.05, True, 22 + 70 + 16),
                 (0.06, False, 22 + 30 + 16), (0.08, True, 22 + 50 + 16),
                 (0.09, False, 22 + 40 + 16)]
        submit, reply = (lambda: 62), (lambda: 58)
        answered = rng.uniform(0.5, 1.0)
        jobs = [(t, 88 + 86) for t in blocks if t > 0] + [
            (t, 88) for t in _periodic(rng, 0.1, dur_s, 30.0, 0.05)]
    else:
        # handshake (ClientHello, ServerHello..Finished, client Finished) then login
        msgs += [(0.01, True, rng.randint(220, 560)), (0.02, False, rng.randint(2600, 4800)),
                 (0.03, True, 80)]
        name = rng.randint(10, 60)
        base = {"btc-tls": 130, "xmr-tls": 190, "etc-tls": 150, "kas-tls": 120}[cat] + name // 2
        rbase = {"btc-tls": 38, "xmr-tls": 66, "etc-tls": 40, "kas-tls": 40}[cat]
        counter = [rng.randint(2, 40)]

        def submit() -> int:
            counter[0] += 1
            return base + len(str(counter[0])) + rng.randint(0, 2) + tls

        def reply() -> int:
            return rbase + len(str(counter[0])) + tls

        answered = 1.0
        msgs += [(0.05, True, 150 + name + tls), (0.06, False, 600 + tls)]
        if cat == "btc-tls":
            refresh = rng.choice([30.0, 60.0])
            jobs = [(t, rng.randint(600, 1100) + tls) for t in
                    sorted([b for b in blocks if b > 0] + _periodic(rng, 0, dur_s, refresh, 0.1))]
        elif cat == "xmr-tls":
            jobs = [(t, rng.randint(370, 400) + tls) for t in blocks if t > 0]
        elif cat == "etc-tls":
            jobs = [(t, rng.randint(240, 262) + tls) for t in blocks if t > 0]
        else:
            jobs = [(t, rng.randint(180, 200) + tls) for t in blocks if t > 0]
    shares = (_events(rng, 0.2, min(retarget, dur_s), early_mean)
              + _events(rng, retarget, dur_s, share_mean))
    rtt = conn.rtt_ns / NS
    for t in shares:
        msgs.append((t, True, submit()))
        if rng.random() < answered:
            msgs.append((t + rtt + rng.uniform(0.001, 0.03), False, reply()))
    lag = rng.uniform(0.05, 0.8)  # pool notices the block, builds the job, sends it
    msgs += [(t + lag, False, n) for t, n in jobs]
    play(conn, t0, msgs)
    return {"coin": coin, "share_mean_s": round(share_mean, 2), "tls_overhead": tls,
            "block_times_s": [round(b, 3) for b in blocks], "job_lag_s": round(lag, 3),
            "pushes": len(jobs), "shares": len(shares)}


def play(conn: Conn, t0: int, msgs: list[tuple[float, bool, int]]) -> None:
    t = conn.open(t0)
    for when, from_client, size in sorted(msgs):
        t = conn.send(max(t + 50_000, t0 + int(when * NS) + conn.rtt_ns), from_client, size)
    conn.close(t + int(0.5 * NS))


def benign_flow(conn: Conn, rng: random.Random, cat: str, t0: int, dur_s: float) -> dict:
    tls = 22 if rng.random() < 0.7 else 29
    conn.opening = OPENINGS.get(cat.split("-")[0], TLS_OPENING)
    msgs: list[tuple[float, bool, int]] = [(0.01, True, rng.randint(220, 560)),
                                           (0.02, False, rng.randint(2600, 4800)),
                                           (0.03, True, 80)]
    rtt = conn.rtt_ns / NS
    info: dict = {}
    if cat == "ws-ticker":
        mean = rng.uniform(0.5, 5.0)
        info["push_mean_s"] = round(mean, 2)
        msgs.append((0.1, True, 300 + tls))
        for t in _events(rng, 0.2, dur_s, mean):
            msgs.append((t, False, rng.randint(60, 420) + tls))
        for t in _periodic(rng, 0, dur_s, 30.0, 0.02):
            msgs += [(t, True, 6 + tls), (t + rtt + 0.002, False, 2 + tls)]
    elif cat == "ws-chat":
        t = 1.0
        while t < dur_s:
            t += _exp(rng, rng.choice([20.0, 120.0]))  # a conversation starts
            for _ in range(rng.randint(1, 8)):
                t += _exp(rng, 8.0)
                msgs.append((t, True, rng.randint(40, 400) + tls))
                msgs.append((t + rtt + 0.01, False, rng.randint(40, 80) + tls))  # ack event
        for t in _events(rng, 1, dur_s, 15.0):  # other people's messages
            msgs.append((t, False, rng.randint(60, 500) + tls))
        for t in _periodic(rng, 0, dur_s, 25.0, 0.01):
            msgs += [(t, False, 1 + tls), (t + rtt + 0.001, True, 1 + tls)]
    elif cat == "push-channel":
        period = rng.uniform(30, 60)
        for t in _periodic(rng, 0, dur_s, period, 0.02):
            msgs += [(t, True, 2 + tls), (t + rtt + 0.002, False, 2 + tls)]
        for t in _events(rng, 0, dur_s, 300.0):
            msgs.append((t, False, rng.randint(200, 2000) + tls))
    elif cat == "iot-poisson":
        size = rng.randint(60, 200)
        mean = rng.uniform(3.0, 30.0)
        info["publish_mean_s"] = round(mean, 2)
        for t in _events(rng, 0.5, dur_s, mean):
            msgs += [(t, True, size + rng.randint(0, 2) + tls),
                     (t + rtt + rng.uniform(0.001, 0.02), False, 4 + tls)]
        for t in _events(rng, 0.5, dur_s, rng.uniform(60, 300)):
            msgs.append((t, False, rng.randint(80, 300) + tls))
    elif cat == "ssh-interactive":
        key = rng.choice([36, 52])
        t = 2.0
        while t < dur_s:
            t += _exp(rng, rng.uniform(5, 60))  # think
            for _ in range(rng.randint(3, 30)):  # type a command
                t += max(0.03, rng.gauss(0.18, 0.08))
                msgs += [(t, True, key), (t + rtt + 0.001, False, key)]
            msgs += [(t + 0.1, True, key), (t + rtt + 0.05, False, rng.randint(100, 6000))]
    elif cat == "ssh-bulk":
        rate = rng.uniform(60e3, 150e3)
        t = 1.0
        while t < dur_s:
            msgs.append((t, True, int(rate * 0.5)))
            t += 0.5
    elif cat == "vpn":
        for t in _periodic(rng, 0, dur_s, 10.0, 0.01):
            msgs += [(t, True, 41), (t + rtt, False, 41)]
        for t in _events(rng, 1, dur_s, 30.0):  # a page load: requests and responses
            for k in range(rng.randint(2, 10)):
                msgs += [(t + 0.05 * k, True, rng.randint(80, 900)),
                         (t + 0.05 * k + rtt + 0.02, False, rng.randint(300, 60000))]
    elif cat == "db-requests":
        stmts = [rng.randint(80, 400) for _ in range(rng.randint(3, 6))]
        mean = rng.uniform(1.0, 20.0)
        info["query_mean_s"] = round(mean, 2)
        for t in _events(rng, 0.5, dur_s, mean):
            msgs += [(t, True, rng.choice(stmts) + tls),
                     (t + rtt + rng.uniform(0.001, 0.2), False, rng.randint(100, 8000) + tls)]
    elif cat == "db-poller":
        period = rng.uniform(2.0, 10.0)
        size = rng.randint(80, 300)
        for t in _periodic(rng, 0.5, dur_s, period, 0.03):
            msgs += [(t, True, size + tls), (t + rtt + 0.003, False, rng.choice(
                [40, 40, 40, rng.randint(100, 900)]) + tls)]
    elif cat == "video":
        seg = rng.uniform(2.0, 6.0)
        for t in _periodic(rng, 0.5, dur_s, seg, 0.1):
            msgs += [(t, True, rng.randint(400, 600) + tls),
                     (t + rtt + 0.02, False, rng.randint(100_000, 300_000))]
    elif cat == "idle-keepalive":
        for t in _periodic(rng, 0, dur_s, rng.uniform(20, 120), 0.05):
            msgs += [(t, True, 20 + tls), (t + rtt + 0.002, False, 20 + tls)]
    else:
        raise ValueError(cat)
    play(conn, t0, [m for m in msgs if m[0] < dur_s + 5])
    return info


def _addr(prefix: str, k: int) -> str:
    return str(ipaddress.ip_address(prefix) + k)


def build_split(split: str, *, scale: float = 1.0, categories=None) -> tuple[list, list]:
    """All flows of a split: (packets [(ts, frame, wirelen)], labels)."""
    base = TUNE_SEEDS if split == "tune" else EVAL_SEEDS
    packets: list = []
    labels: list = []
    n = 0
    crng = random.Random(base - 1)
    chains = {coin: _events(crng, -120, 3600, mean, floor=0.05) for coin, mean in BLOCK_S.items()}
    for cat in categories or (MINING + BENIGN):
        for k in range(max(1, round(COUNTS[cat] * scale))):
            n += 1
            seed = base + 100 * (MINING + BENIGN).index(cat) + k
            rng = random.Random(seed)
            cip = _addr("10.20.0.0", n)
            sip = _addr("198.51.100.0" if cat in MINING or k % 2 else "203.0.113.0", n)
            sport = {"ssh-interactive": 22, "ssh-bulk": 22, "vpn": 1194, "db-requests": 5432,
                     "db-poller": 5432, "sv2-noise": 3336}.get(
                cat, rng.choice([443, 443, 443, 3333, 4444, 14433, 5555, 8443]))
            conn = Conn(rng, cip, rng.randint(32768, 60999), sip, sport,
                        rtt_ns=int(rng.uniform(0.02, 0.25) * NS))
            heavy = cat in ("ssh-bulk", "video")
            dur = rng.uniform(60, 150) if heavy else rng.uniform(600, 2400)
            t0 = START_NS + int(rng.uniform(0, 600) * NS)
            if cat in MINING:
                info = mining_flow(conn, rng, cat, t0, dur, chains[
                    {"btc-tls": "BTC", "xmr-tls": "XMR", "etc-tls": "ETC", "kas-tls": "KAS",
                     "sv2-noise": "BTC"}[cat]])
                label = 1
            else:
                info = benign_flow(conn, rng, cat, t0, dur)
                label = 0
            packets += conn.out
            labels.append({"client": [cip, conn.cport], "server": [sip, sport], "label": label,
                           "category": cat, "seed": seed, "duration_s": round(dur, 1),
                           "start_ns": t0, "packets": len(conn.out), **info})
    packets.sort(key=lambda p: p[0])
    return packets, labels


def write_pcap(path: Path, packets: list) -> None:
    out = bytearray(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, SNAP, 101))
    for ts, frame, wire in packets:
        sec, frac = divmod(ts, NS)
        out += struct.pack("<IIII", sec, frac // 1000, len(frame), wire) + frame
    path.write_bytes(bytes(out))


def block_times(labels: list, coin: str) -> list[int]:
    """The block arrival times (ns) the generator used for ``coin`` (per flow; a user would
    supply one chain-wide series, each flow here draws its own)."""
    out = set()
    for lab in labels:
        if lab.get("coin") == coin:
            out.update(lab["start_ns"] + int(b * NS) for b in lab["block_times_s"])
    return sorted(out)


def write_split(outdir: Path, split: str, **kw) -> tuple[Path, Path]:
    outdir.mkdir(parents=True, exist_ok=True)
    packets, labels = build_split(split, **kw)
    pcap = outdir / f"behaviour-{split}.pcap"
    write_pcap(pcap, packets)
    lab = outdir / f"behaviour-{split}.labels.json"
    lab.write_text(json.dumps({"split": split, "snaplen": SNAP, "flows": labels,
                               "block_times_ns": {c: block_times(labels, c) for c in BLOCK_S}},
                              indent=1))
    return pcap, lab


def write_samples(outdir: Path) -> None:
    """Two small captures for pcaps/behaviour/: one XMR-over-TLS session, one ticker."""
    outdir.mkdir(parents=True, exist_ok=True)
    # distinct endpoints: scanned together, the two files must not read as one flow
    for name, cat, seed, dur, client, server in (
            ("xmr_tls_session", "xmr-tls", 77, 900.0, ("10.20.1.5", 51514), ("198.51.100.77", 443)),
            ("ws_ticker_benign", "ws-ticker", 78, 600.0, ("10.20.1.6", 51516),
             ("198.51.100.78", 443))):
        rng = random.Random(seed)
        conn = Conn(rng, *client, *server, rtt_ns=60 * MS)
        t0 = START_NS
        info = (mining_flow if cat in MINING else benign_flow)(conn, rng, cat, t0, dur)
        write_pcap(outdir / f"{name}.pcap", sorted(conn.out, key=lambda p: p[0]))
        exp = {"capture": f"{name}.pcap", "generator": "pcaps/make_behaviour_set.py --samples",
               "flows": [{"client": list(client), "server": list(server),
                          "label": int(cat in MINING), "category": cat, "seed": seed,
                          "duration_s": dur, "packets": len(conn.out),
                          **{k: v for k, v in info.items() if k != "block_times_s"}}],
               "block_times_ns": {info["coin"]: [t0 + int(b * NS) for b in
                                                 info["block_times_s"]]} if "coin" in info
               else {}}
        (outdir / f"{name}.labels.json").write_text(json.dumps(exp, indent=1) + "\n")


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("outdir", type=Path)
    ap.add_argument("--split", choices=("tune", "eval", "both"), default="both")
    ap.add_argument("--samples", action="store_true")
    args = ap.parse_args(argv)
    if args.samples:
        write_samples(args.outdir)
        return 0
    for split in ("tune", "eval") if args.split == "both" else (args.split,):
        pcap, lab = write_split(args.outdir, split)
        print(pcap, pcap.stat().st_size, "bytes;", lab)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
