"""Compile the packet kernels before a long-running process takes traffic.

numba compiles a kernel at its first call and keeps the machine code in its on-disk cache,
so the first batch after an install or upgrade spends tens of seconds compiling. A scan
only starts late; a live sensor would drop packets meanwhile (its capture ring fills in a
second or two at line rate). The sensor therefore runs :func:`warm_up` before it opens its
sources: a small capture built here goes through the same pipeline the sources use, and
what the pipeline finds in it is thrown away. With the cache in place it costs what the
first batch would have cost anyway (loading the cached code, about a second).

The capture holds what makes a pipeline call its kernels: a Stratum session (handshake,
subscribe, authorize, difficulty, job, share, FINs), a DNS answer naming the pool, and a
TLS ClientHello with a server name; it is read as pcap and as pcapng, and the pipeline's
clock is then moved an hour on so that its expiry paths run. Kernels that only run on
rarer input (a certificate, DNS over TCP) still compile when such input first comes, each
in a second or so.
"""

from __future__ import annotations

import struct
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .export import write_pcap, write_pcapng
from .records import LINKTYPE_ETHERNET, PACKET
from .scan import iter_batches

MINER, POOL, RESOLVER = bytes([10, 0, 0, 2]), bytes([192, 0, 2, 10]), bytes([10, 0, 0, 1])
MINER_PORT, POOL_PORT, TLS_PORT = 40000, 3333, 40001
POOL_NAME = "pool.warm-up.invalid"
SYN, FIN, PSH_ACK, ACK = 0x02, 0x01, 0x18, 0x10
START_S = 1_700_000_000  # capture time of the first packet
NS = 1_000_000_000
ETHERNET_HEADER = bytes.fromhex("020000000002" + "020000000001" + "0800")  # to, from, IPv4

# (from the miner?, line): the exchange of a Stratum V1 miner and its pool
STRATUM_LINES = (
    (True, b'{"id":1,"method":"mining.subscribe","params":["cgminer/4.10.0"]}'),
    (False, (b'{"id":1,"result":[[["mining.notify","ae6812eb4cd7735a"]],"08000002",4],'
             b'"error":null}')),
    (True, b'{"id":2,"method":"mining.authorize","params":["warmup.rig1","x"]}'),
    (False, b'{"id":2,"result":true,"error":null}'),
    (False, b'{"id":null,"method":"mining.set_difficulty","params":[1024]}'),
    (False, (b'{"id":null,"method":"mining.notify","params":["4d16b6f85af6e219",'
             b'"4d16b6f85af6e2198f44ae2a6de67f78487ae5611b77c6c0440b921e00000000",'
             b'"01000000010000000000000000000000000000000000000000000000000000000000000000ffff'
             b'ffff20020862062f503253482f04b8864e5008","072f736c7573682f000000000100f2052a0100'
             b'00001976a914d23fcdf86f7e756a64a7a9688ef9903327048ed988ac00000000",[],'
             b'"00000002","1c2ac4af","504e86b9",false]}')),
    (True, (b'{"id":4,"method":"mining.submit","params":["warmup.rig1","4d16b6f85af6e219",'
            b'"00000000","504e86ed","b2957c02"]}')),
    (False, b'{"id":4,"result":true,"error":null}'),
)


@dataclass(frozen=True)
class WarmUp:
    """What a warm-up did: its time, and what the pipeline found in the capture (thrown
    away by the caller; tests check the capture reached every stage)."""

    seconds: float
    packets: int
    records: list[Any]


def warm_up(make_pipeline: Callable[[], Any]) -> WarmUp:
    """Run the built-in capture through ``make_pipeline()`` (a fresh
    :class:`~poolwatch.scan.DetectionPipeline` or one like it), flush it and close it."""
    started = time.perf_counter()
    pipe = make_pipeline()
    packets, records, last_ns = 0, [], 0
    try:
        with tempfile.TemporaryDirectory(prefix="poolwatch-warm-up-") as tmp:
            paths = [Path(tmp) / "warm-up.pcap", Path(tmp) / "warm-up.pcapng"]
            paths[0].write_bytes(warm_up_capture())
            paths[1].write_bytes(warm_up_capture(pcapng=True))
            for path in paths:  # both file formats: a ring buffer may write either
                for batch in iter_batches([path]):
                    packets += len(batch)
                    records += pipe.feed(batch)
                    last_ns = max(last_ns, int(batch.packets["ts_ns"].max()))
            records += pipe.tick(last_ns + 3600 * NS)  # an hour later: the expiry paths
            records += pipe.flush()
    finally:
        pipe.close()
    return WarmUp(time.perf_counter() - started, packets, records)


def warm_up_capture(pcapng: bool = False) -> bytes:
    """The built-in capture (nanosecond pcap, or pcapng; Ethernet), a packet a millisecond."""
    frames = []
    seq = {True: 1000, False: 5000}  # next sequence number from each side

    def tcp(from_miner: bool, flags: int, payload: bytes = b"", sport: int = MINER_PORT,
            dport: int = POOL_PORT) -> None:
        src, dst = (MINER, POOL) if from_miner else (POOL, MINER)
        s, d = (sport, dport) if from_miner else (dport, sport)
        ack = seq[not from_miner] if flags != SYN else 0
        frames.append(_ipv4(src, dst, 6, struct.pack(
            ">HHIIBBHHH", s, d, seq[from_miner], ack, 5 << 4, flags, 65535, 0, 0) + payload))
        seq[from_miner] += len(payload) + (1 if flags & (SYN | FIN) else 0)

    frames.append(_ipv4(RESOLVER, MINER, 17, _udp(53, 53000, _dns_answer(POOL_NAME, POOL))))
    tcp(True, SYN)
    tcp(False, SYN | ACK)
    tcp(True, ACK)
    for from_miner, line in STRATUM_LINES:
        tcp(from_miner, PSH_ACK, line + b"\n")
    tcp(True, FIN | ACK)
    tcp(False, FIN | ACK)
    tcp(True, ACK)
    seq.update({True: 9000, False: 0})
    tcp(True, SYN, sport=TLS_PORT, dport=443)
    tcp(True, PSH_ACK, _client_hello(POOL_NAME), sport=TLS_PORT, dport=443)
    ethers = [ETHERNET_HEADER + f for f in frames]
    rows = np.zeros(len(ethers), PACKET)
    rows["ts_ns"] = START_S * NS + np.arange(len(ethers)) * 1_000_000
    rows["caplen"] = rows["wirelen"] = [len(e) for e in ethers]
    rows["linktype"] = LINKTYPE_ETHERNET
    data = np.frombuffer(b"".join(ethers), np.uint8)
    blob = (write_pcapng(rows, data, "poolwatch warm-up") if pcapng
            else write_pcap(rows, data, LINKTYPE_ETHERNET))
    return blob.tobytes()


def _ipv4(src: bytes, dst: bytes, proto: int, body: bytes) -> bytes:
    header = struct.pack(">BBHHHBBH4s4s", 0x45, 0, 20 + len(body), 0, 0x4000, 64, proto, 0,
                         src, dst)
    total = sum(struct.unpack(">10H", header))
    total = (total & 0xFFFF) + (total >> 16)
    checksum = ~((total & 0xFFFF) + (total >> 16)) & 0xFFFF
    return header[:10] + struct.pack(">H", checksum) + header[12:] + body


def _udp(sport: int, dport: int, payload: bytes) -> bytes:
    return struct.pack(">HHHH", sport, dport, 8 + len(payload), 0) + payload


def _dns_answer(name: str, address: bytes) -> bytes:
    qname = b"".join(bytes([len(p)]) + p.encode() for p in name.split(".")) + b"\0"
    return (struct.pack(">HHHHHH", 0x1234, 0x8180, 1, 1, 0, 0) + qname + struct.pack(">HH", 1, 1)
            + struct.pack(">HHHIH", 0xC00C, 1, 1, 300, 4) + address)


def _client_hello(server_name: str) -> bytes:
    host = server_name.encode()
    sni = struct.pack(">HBH", len(host) + 3, 0, len(host)) + host
    extensions = struct.pack(">HH", 0, len(sni)) + sni
    body = (b"\x03\x03" + bytes(32) + b"\x00" + struct.pack(">H", 2) + b"\x13\x01" + b"\x01\x00"
            + struct.pack(">H", len(extensions)) + extensions)
    handshake = b"\x01" + len(body).to_bytes(3, "big") + body
    return b"\x16\x03\x01" + struct.pack(">H", len(handshake)) + handshake
