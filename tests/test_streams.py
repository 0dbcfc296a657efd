"""TCP stream collection: the JSON prefilter kernel (against its twin) and the reassembler.

Segments are built with scapy (bytes only: nothing is sent) and written to nanosecond pcaps
in ``tmp_path`` with ``struct``, so each test reads them through the real decoder
(``scan.iter_batches``), as the detector will.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from poolwatch.detect.streams import StreamCollector, StreamData, StreamEnd
from poolwatch.kernels import prefilter as pf
from poolwatch.kernels._reference_prefilter import (
    forget_flows_reference,
    select_stream_packets_reference,
)
from poolwatch.records import PACKET, PacketBatch, addr_to_halves
from poolwatch.scan import iter_batches

from .conftest import PCAPS, PEER_CORPUS

pytest.importorskip("scapy.layers.inet")
from scapy.layers.inet import IP, TCP
from scapy.layers.inet6 import IPv6
from scapy.layers.l2 import Dot1Q, Ether
from scapy.packet import Raw

T0 = 1_772_438_400 * 10**9  # 2026-03-02T08:00:00Z, as the sample captures
MS = 10**6
S = 10**9
SUBSCRIBE = b'{"id":1,"method":"mining.subscribe","params":["cgminer/4.11.1"]}\n'
RESULT = b'{"id":1,"result":[[["mining.notify","ae6812eb"]],"08000002",4],"error":null}\n'
AUTHORIZE = b'{"id":2,"method":"mining.authorize","params":["wallet.worker","x"]}\n'
TRUE = b'{"id":2,"result":true,"error":null}\n'
NOTIFY = (b'{"id":null,"method":"mining.notify","params":["bf","4d16b6f85af6e2198f44ae2a6de67f78'
          b'487ae5611b77c2600000000000000000","01000000","ffffffff",[],"00000002","1c2ac4af",'
          b'"504e86b9",false]}\n')


# ---------------------------------------------------------------------------------------------
# Building captures
# ---------------------------------------------------------------------------------------------

class Capture:
    """Frames with capture times; written as a nanosecond Ethernet pcap."""

    def __init__(self, start_ns: int = T0, step_ns: int = MS) -> None:
        self.frames: list[tuple[int, bytes]] = []
        self.now, self.step = start_ns, step_ns

    def add(self, frame: bytes, at_ns: int | None = None) -> None:
        self.now = at_ns if at_ns is not None else self.now + self.step
        self.frames.append((self.now, frame))

    def wait(self, ns: int) -> None:
        self.now += ns

    def write(self, path: Path) -> Path:
        out = bytearray(struct.pack("<IHHiIII", 0xA1B23C4D, 2, 4, 0, 0, 262144, 1))
        for ts, data in self.frames:
            out += struct.pack("<IIII", ts // S, ts % S, len(data), len(data)) + data
        path.write_bytes(bytes(out))
        return path


class Conn:
    """One TCP connection: side 0 is the client, side 1 the server; seq numbers tracked."""

    def __init__(self, cap: Capture, client=("10.0.0.5", 40001), server=("203.0.113.10", 3333),
                 isn=(1000, 50000), vlan: int = 0) -> None:
        self.cap, self.ends, self.seq, self.vlan = cap, (client, server), list(isn), vlan

    def frame(self, side: int, flags: str, data: bytes, seq: int) -> bytes:
        (src, sport), (dst, dport) = self.ends[side], self.ends[1 - side]
        ip = IPv6(src=src, dst=dst) if ":" in src else IP(src=src, dst=dst)
        l4 = TCP(sport=sport, dport=dport, flags=flags, seq=seq % 2**32,
                 ack=self.seq[1 - side] % 2**32 if "A" in flags else 0)
        etype = 0x86DD if ":" in src else 0x0800
        eth = Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02",
                    type=0x8100 if self.vlan else etype)
        if self.vlan:
            eth = eth / Dot1Q(vlan=self.vlan, type=etype)
        return bytes(eth / ip / l4 / Raw(data)) if data else bytes(eth / ip / l4)

    def seg(self, side: int, data: bytes = b"", flags: str = "PA", seq: int | None = None,
            at_ns: int | None = None) -> None:
        """A segment; with ``seq`` given it is a resend or out-of-order copy (no advance)."""
        if seq is None:
            seq = self.seq[side]
            self.seq[side] += len(data) + ("S" in flags) + ("F" in flags)
        self.cap.add(self.frame(side, flags, data, seq), at_ns)

    def open(self) -> None:
        self.seg(0, flags="S")
        self.seg(1, flags="SA")
        self.seg(0, flags="A")

    def close(self, first: int = 0) -> None:
        self.seg(first, flags="FA")
        self.seg(1 - first, flags="FA")
        self.seg(first, flags="A")


def run(path: Path, batch_packets: int = 1 << 16, **settings):
    """(events, collector) of a whole capture, flush included."""
    c = StreamCollector(**settings)
    events = []
    for batch in iter_batches([path], batch_packets=batch_packets):
        events += list(c.update(batch))
    events += list(c.flush())
    return events, c


def streams(events) -> list[dict]:
    """Per conversation, in order of first event: both byte streams and the end reason.

    Also checks the invariants every consumer relies on: chunks of a direction never overlap
    and come in offset order, and nothing follows a conversation's StreamEnd.
    """
    out: dict[int, dict] = {}
    for e in events:
        s = out.setdefault(id(e.conversation), {"conv": e.conversation, "data": [b"", b""],
                                                "chunks": [[], []], "end": None})
        assert s["end"] is None, "event after StreamEnd"
        if isinstance(e, StreamEnd):
            s["end"] = e.reason
            continue
        chunks = s["chunks"][e.direction]
        if chunks:
            prev = chunks[-1]
            assert e.chunk.offset >= prev.offset + len(prev.data)
        assert e.chunk.data
        chunks.append(e.chunk)
        s["data"][e.direction] += e.chunk.data
    for s in out.values():
        for d in (0, 1):
            ch = s["chunks"][d]
            if ch:  # delivered + skipped bytes account for the whole span
                span = ch[-1].offset + len(ch[-1].data) - ch[0].offset
                assert span <= len(s["data"][d]) + s["conv"].gap_bytes[d]
    return list(out.values())


def one(events) -> dict:
    got = streams(events)
    assert len(got) == 1, [g["conv"] for g in got]
    return got[0]


# ---------------------------------------------------------------------------------------------
# Reassembly
# ---------------------------------------------------------------------------------------------

def test_in_order_both_directions_fin_close(tmp_path):
    cap = Capture()
    c = Conn(cap)
    c.open()
    for side, msg in ((0, SUBSCRIBE), (1, RESULT), (0, AUTHORIZE), (1, TRUE), (1, NOTIFY)):
        c.seg(side, msg)
        c.seg(1 - side, flags="A")
    c.close()
    events, col = run(cap.write(tmp_path / "a.pcap"))
    s = one(events)
    assert s["data"] == [SUBSCRIBE + AUTHORIZE, RESULT + TRUE + NOTIFY]
    assert s["end"] == "fin" and isinstance(events[-1], StreamEnd)
    conv = s["conv"]
    assert (conv.a_ip, conv.a_port, conv.b_ip, conv.b_port) == ("10.0.0.5", 40001,
                                                                "203.0.113.10", 3333)
    assert conv.syn_from == "a"  # remembered from the SYN, which was not collected itself
    assert conv.gap_bytes == [0, 0] and conv.path.endswith("a.pcap")
    assert [ch.offset for ch in s["chunks"][0]] == [0, len(SUBSCRIBE)]
    assert conv.first_ts_ns == s["chunks"][0][0].ts_ns and conv.frames[0] == 4
    assert col.stats["duplicate_bytes"] == 0 and col.stats["ended_fin"] == 1


def test_message_split_over_three_segments_and_two_in_one(tmp_path):
    cap = Capture()
    c = Conn(cap)
    c.open()
    c.seg(0, SUBSCRIBE[:10])
    c.seg(0, SUBSCRIBE[10:30])
    c.seg(0, SUBSCRIBE[30:])
    c.seg(1, RESULT + TRUE)
    c.close()
    s = one(run(cap.write(tmp_path / "a.pcap"))[0])
    assert s["data"] == [SUBSCRIBE, RESULT + TRUE]
    assert [ch.data for ch in s["chunks"][0]] == [SUBSCRIBE[:10], SUBSCRIBE[10:30],
                                                  SUBSCRIBE[30:]]


def test_retransmissions_and_overlapping_resend(tmp_path):
    cap = Capture()
    c = Conn(cap)
    c.open()
    first = c.seq[0]
    c.seg(0, SUBSCRIBE)
    c.seg(0, SUBSCRIBE, seq=first)  # the same segment again
    start = c.seq[0]
    c.seg(0, AUTHORIZE[:20])
    c.seq[0] = start + len(AUTHORIZE)
    c.seg(0, AUTHORIZE, seq=start)  # resend covering the first 20 bytes and more
    c.seg(0, AUTHORIZE[5:15], seq=start + 5)  # a stale piece inside delivered data
    c.seg(1, TRUE)
    events, col = run(cap.write(tmp_path / "a.pcap"))
    s = one(events)
    assert s["data"] == [SUBSCRIBE + AUTHORIZE, TRUE]
    assert [ch.data for ch in s["chunks"][0]] == [SUBSCRIBE, AUTHORIZE[:20], AUTHORIZE[20:]]
    assert col.stats["duplicate_bytes"] == len(SUBSCRIBE) + 20 + 10
    assert s["conv"].gap_bytes == [0, 0] and s["end"] == "eof"


def test_out_of_order_segment_is_held_until_the_gap_fills(tmp_path):
    cap = Capture()
    c = Conn(cap)
    c.open()
    base = c.seq[0]
    parts = [NOTIFY[:40], NOTIFY[40:90], NOTIFY[90:150], NOTIFY[150:]]
    offs = [0, 40, 90, 150]
    c.seg(0, parts[0], seq=base)
    c.seg(0, parts[2], seq=base + offs[2])  # 3 before 2
    c.seg(0, parts[3], seq=base + offs[3])
    c.seg(0, parts[1], seq=base + offs[1])
    c.seg(0, NOTIFY[30:120], seq=base + 30)  # a late overlapping copy: nothing new
    c.seq[0] = base + len(NOTIFY)
    c.seg(0, SUBSCRIBE)
    s = one(run(cap.write(tmp_path / "a.pcap"))[0])
    assert s["data"][0] == NOTIFY + SUBSCRIBE
    chunks = s["chunks"][0]
    assert [ch.offset for ch in chunks] == offs + [len(NOTIFY)]
    assert [ch.frame for ch in chunks] == [4, 7, 5, 6, 9]  # each chunk keeps its own frame


def test_gap_that_never_fills_is_skipped_after_the_wait(tmp_path):
    cap = Capture()
    c = Conn(cap)
    c.open()
    c.seg(0, SUBSCRIBE)
    lost = c.seq[0]
    c.seq[0] += len(AUTHORIZE)  # this segment was never captured
    c.seg(0, NOTIFY[:50])
    cap.wait(11 * S)  # longer than gap_wait_s (10 s)
    c.seg(0, NOTIFY[50:])
    c.seg(1, TRUE)
    events, col = run(cap.write(tmp_path / "a.pcap"), gap_wait_s=10.0)
    s = one(events)
    assert s["data"][0] == SUBSCRIBE + NOTIFY
    assert s["conv"].gap_bytes == [len(AUTHORIZE), 0]
    assert s["chunks"][0][1].offset == lost - 1001 + len(AUTHORIZE)
    assert col.stats["gaps"] == 1 and col.stats["gap_bytes"] == len(AUTHORIZE)
    # The skip happened when the late segment arrived, before the server's answer, not at
    # the end of the input.
    order = [(e.direction, e.chunk.data) for e in events if isinstance(e, StreamData)]
    assert order.index((0, NOTIFY[:50])) < order.index((1, TRUE)) and s["end"] == "eof"


def test_gap_skipped_when_held_bytes_pass_their_bound(tmp_path):
    cap = Capture()
    c = Conn(cap)
    c.open()
    c.seg(0, SUBSCRIBE)
    c.seq[0] += 7  # lost
    for k in range(6):
        c.seg(0, b'{"n":%d}\n' % k + b" " * 40)
    events, col = run(cap.write(tmp_path / "a.pcap"), max_held_bytes=100)
    s = one(events)
    assert s["conv"].gap_bytes == [7, 0]
    assert s["data"][0].count(b'{"n":') == 6 and col.stats["held_limit"] >= 1
    # Released as soon as the bound was passed (3rd held segment), before end of input.
    first_after_gap = next(ch for ch in s["chunks"][0] if ch.offset > len(SUBSCRIBE))
    assert first_after_gap.frame < 9


def test_gap_at_the_end_is_released_with_the_end(tmp_path):
    cap = Capture()
    c = Conn(cap)
    c.open()
    c.seg(0, SUBSCRIBE)
    c.seq[0] += 5
    c.seg(0, AUTHORIZE)
    c.seg(1, TRUE)
    c.close()
    s = one(run(cap.write(tmp_path / "a.pcap"))[0])
    assert s["data"][0] == SUBSCRIBE + AUTHORIZE and s["conv"].gap_bytes == [5, 0]
    assert s["end"] == "fin"


def test_mid_stream_join_starts_at_first_seq_seen(tmp_path):
    cap = Capture()
    c = Conn(cap, isn=(3_000_000_000, 123_456))  # no handshake captured
    c.seg(1, NOTIFY)  # the pool speaks first in this capture
    c.seg(0, flags="A")
    c.seg(0, SUBSCRIBE)
    c.seg(1, TRUE)
    events, _ = run(cap.write(tmp_path / "a.pcap"))
    s = one(events)
    conv = s["conv"]
    assert (conv.a_ip, conv.a_port) == ("203.0.113.10", 3333)  # sender of the first packet
    assert s["data"] == [NOTIFY + TRUE, SUBSCRIBE]
    assert s["chunks"][0][0].offset == 0 and s["chunks"][1][0].offset == 0
    assert conv.syn_from is None


def test_sequence_wrap_around(tmp_path):
    cap = Capture()
    c = Conn(cap, isn=(2**32 - 30, 2**32 - 1))
    c.open()  # client data starts at 2**32 - 29, server data at 0 (the SYN took 2**32 - 1)
    base = c.seq[0]
    c.seg(0, SUBSCRIBE[:20], seq=base)
    c.seg(0, SUBSCRIBE[40:], seq=base + 40)  # beyond the wrap, ahead of a gap
    c.seg(0, SUBSCRIBE[20:40], seq=base + 20)  # crosses 2**32
    c.seq[0] = base + len(SUBSCRIBE)
    c.seg(0, AUTHORIZE)
    c.seg(1, RESULT)
    c.seg(1, TRUE)
    c.close()
    s = one(run(cap.write(tmp_path / "a.pcap"))[0])
    assert s["data"] == [SUBSCRIBE + AUTHORIZE, RESULT + TRUE]
    assert s["conv"].gap_bytes == [0, 0] and s["end"] == "fin"


def test_rst_ends_the_conversation(tmp_path):
    cap = Capture()
    c = Conn(cap)
    c.open()
    c.seg(0, SUBSCRIBE)
    c.seg(1, flags="R")
    c.seg(0, AUTHORIZE)  # after the reset: a closed connection, not a new conversation
    events, col = run(cap.write(tmp_path / "a.pcap"))
    s = one(events)
    assert s["end"] == "rst" and s["data"] == [SUBSCRIBE, b""]
    assert col.stats["after_close_packets"] == 1 and col.stats["ended_rst"] == 1


def test_half_close_waits_for_both_fins(tmp_path):
    cap = Capture()
    c = Conn(cap)
    c.open()
    c.seg(0, SUBSCRIBE)
    c.seg(0, flags="FA")
    c.seg(1, RESULT)  # the server still talks after the client's FIN
    c.seg(1, flags="FA")
    c.seg(0, flags="A")
    c.seg(1, RESULT, seq=c.seq[1] - 1 - len(RESULT))  # late retransmission after the close
    events, col = run(cap.write(tmp_path / "a.pcap"))
    s = one(events)
    assert s["data"] == [SUBSCRIBE, RESULT] and s["end"] == "fin"
    assert col.stats["after_close_packets"] == 2


def test_syn_consumes_a_sequence_number_on_port_reuse(tmp_path):
    """A second connection on the same 5-tuple: its SYN is collected (the flow is known)."""
    cap = Capture()
    c = Conn(cap)
    c.open()
    c.seg(0, SUBSCRIBE)
    c.close()
    c.seq = [7_000_000, 9_000_000]
    c.open()
    c.seg(0, AUTHORIZE)
    c.seg(1, TRUE)
    got = streams(run(cap.write(tmp_path / "a.pcap"))[0])
    assert [g["data"] for g in got] == [[SUBSCRIBE, b""], [AUTHORIZE, TRUE]]
    assert [g["end"] for g in got] == ["fin", "eof"]
    second = got[1]
    assert second["conv"].syn_from == "a" and second["conv"].gap_bytes == [0, 0]
    assert second["chunks"][0][0].offset == 0 and second["chunks"][1][0].offset == 0


def test_interleaved_conversations(tmp_path):
    cap = Capture()
    conns = [Conn(cap, client=("10.0.0.5", 40001 + k)) for k in range(2)]
    conns.append(Conn(cap, client=("2001:db8::5", 40100), server=("2001:db8::10", 3333)))
    conns.append(Conn(cap, client=("10.0.0.5", 40001), vlan=100))  # same 5-tuple, VLAN 100
    for c in conns:
        c.open()
    for k, msg in enumerate((SUBSCRIBE, AUTHORIZE)):
        for n, c in enumerate(conns):
            c.seg(0, msg.replace(b'"id":', b'"id":%d' % n))
            c.seg(1, TRUE)
    for c in conns[::-1]:
        c.close(first=1)
    got = streams(run(cap.write(tmp_path / "a.pcap"), batch_packets=5)[0])
    assert len(got) == 4
    for n, g in enumerate(got):
        sub, auth = (m.replace(b'"id":', b'"id":%d' % n) for m in (SUBSCRIBE, AUTHORIZE))
        assert g["data"] == [sub + auth, TRUE * 2] and g["end"] == "fin"
    assert got[2]["conv"].a_ip == "2001:db8::5"
    assert [g["conv"].vlan for g in got] == [0, 0, 0, 100]


def test_non_json_flows_are_never_selected(tmp_path):
    cap = Capture()
    http = Conn(cap, server=("198.51.100.7", 80))
    http.open()
    http.seg(0, b"GET / HTTP/1.1\r\nHost: example.com\r\n\r\n")
    http.seg(1, b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello")
    http.close()
    tls = Conn(cap, client=("10.0.0.6", 40002), server=("198.51.100.8", 443))
    tls.open()
    tls.seg(0, b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03" + bytes(40))
    tls.seg(1, b"\x16\x03\x03\x00\x7a\x02" + bytes(60))
    tls.seg(1, b"{\x99\x10binary record that merely starts with 0x7b")
    tls.seg(0, b"{}")
    tls.close()
    events, col = run(cap.write(tmp_path / "a.pcap"))
    assert events == [] and col.stats["packets"] == 0 and col.stats["conversations"] == 0


def test_flow_selected_from_its_first_json_payload(tmp_path):
    cap = Capture()
    c = Conn(cap)
    c.open()
    c.seg(0, b"HELLO miner\r\n")
    c.seg(1, b"OK\r\n")
    c.seg(0, b'  \r\n{ "id":1,"method":"login"}\n')  # whitespace around the brace is fine
    c.seg(1, TRUE)
    c.seg(0, b"plain text after the JSON is still part of the stream\n")
    events, _ = run(cap.write(tmp_path / "a.pcap"))
    s = one(events)
    assert s["data"] == [(b'  \r\n{ "id":1,"method":"login"}\n'
                          b"plain text after the JSON is still part of the stream\n"), TRUE]
    assert s["chunks"][0][0].offset == 0 and s["conv"].frames[0] == 6


def test_idle_timeout_and_resumption(tmp_path):
    cap = Capture()
    c = Conn(cap)
    c.open()
    c.seg(0, SUBSCRIBE)
    cap.wait(301 * S)
    other = Conn(cap, client=("10.0.0.9", 40009), server=("198.51.100.7", 80))
    other.seg(0, b"GET / HTTP/1.1\r\n\r\n")  # capture time moves on, in another batch
    c.seg(0, AUTHORIZE)  # resumes: a new conversation, joined mid-stream
    events, col = run(cap.write(tmp_path / "a.pcap"), batch_packets=1)
    got = streams(events)
    assert [(g["data"][0], g["end"]) for g in got] == [(SUBSCRIBE, "idle"), (AUTHORIZE, "eof")]
    assert col.stats["ended_idle"] == 1
    # Checked per packet too: in one batch the late packet ends the old conversation itself.
    got = streams(run(cap.write(tmp_path / "b.pcap"))[0])
    assert [(g["data"][0], g["end"]) for g in got] == [(SUBSCRIBE, "idle"), (AUTHORIZE, "eof")]


def test_sweep_ends_idle_conversations_and_stale_gaps_between_their_packets(tmp_path):
    """Once per batch, capture time from any packet ends idle conversations and gap waits."""
    cap = Capture()
    a = Conn(cap)
    a.seg(0, SUBSCRIBE)
    a.seq[0] += 4  # lost
    a.seg(0, AUTHORIZE)  # held behind the gap
    b = Conn(cap, client=("10.0.0.6", 40002))
    cap.wait(11 * S)
    b.seg(0, SUBSCRIBE)  # only b speaks: a's gap has been waited on longer than 10 s
    cap.wait(295 * S)
    b.seg(0, SUBSCRIBE)  # a has been idle for more than 300 s, b for less
    col = StreamCollector()
    per_batch = [list(col.update(batch))
                 for batch in iter_batches([cap.write(tmp_path / "a.pcap")], batch_packets=1)]
    released = [e.chunk.data for e in per_batch[2] if isinstance(e, StreamData)]
    assert released == [SUBSCRIBE, AUTHORIZE]  # b's own data, then (end of batch) a's held
    assert [(e.conversation.a_port, e.reason) for e in per_batch[3]
            if isinstance(e, StreamEnd)] == [(40001, "idle")]
    assert len(col) == 1 and col._fill == 1  # a's flow left the prefilter table too


def test_one_packet_far_ahead_in_time_does_not_end_other_conversations(tmp_path):
    """Captures merged end to end (mergecap -a) or a clock step: a batch may hold a packet
    an hour ahead of the rest; the sweep goes by the batch's last packet."""
    cap = Capture()
    c = Conn(cap)
    c.open()
    c.seg(0, SUBSCRIBE)
    other = Conn(cap, client=("10.0.0.9", 40009), server=("198.51.100.7", 80))
    other.seg(0, b"GET / HTTP/1.1\r\n\r\n", at_ns=cap.now + 3600 * S)  # not selected
    c.seg(0, AUTHORIZE, at_ns=T0 + S)
    c.seg(0, NOTIFY)  # the next batch
    events, col = run(cap.write(tmp_path / "a.pcap"), batch_packets=6)
    got = streams(events)
    assert len(got) == 1 and got[0]["data"][0] == SUBSCRIBE + AUTHORIZE + NOTIFY
    assert col.stats["ended_idle"] == 0


def test_ended_flows_free_their_table_slots(tmp_path):
    cap = Capture()
    for k in range(12):
        c = Conn(cap, client=("10.0.0.5", 45000 + k))
        c.open()
        c.seg(0, SUBSCRIBE)
        c.seg(0, b"continuation\n")
        c.close()
    events, col = run(cap.write(tmp_path / "a.pcap"), table_slots=16, batch_packets=8)
    got = streams(events)
    assert col.stats["table_full"] == 0 and len(got) == 12
    assert all(g["data"][0] == SUBSCRIBE + b"continuation\n" for g in got)


def test_same_result_whatever_the_batch_size(tmp_path):
    cap = Capture()
    conns = [Conn(cap, client=("10.0.0.5", 41000 + k), isn=(2**32 - 100 * k, 77 * k))
             for k in range(3)]
    for c in conns:
        c.open()
    for c in conns:
        base = c.seq[0]
        c.seg(0, NOTIFY[:60], seq=base)
        c.seg(0, NOTIFY[100:], seq=base + 100)
        c.seg(1, RESULT)
        c.seg(0, NOTIFY[50:110], seq=base + 50)
        c.seq[0] = base + len(NOTIFY)
        c.seg(0, SUBSCRIBE)
        c.seg(0, SUBSCRIBE, seq=c.seq[0] - len(SUBSCRIBE))
    conns[1].close()
    path = cap.write(tmp_path / "a.pcap")

    def shape(events):
        return [(type(e).__name__, e.conversation.a_port)
                + ((e.direction, e.chunk.offset, e.chunk.frame, e.chunk.data)
                   if isinstance(e, StreamData) else (e.reason,)) for e in events]

    want = shape(run(path)[0])
    for size in (1, 2, 7):
        assert shape(run(path, batch_packets=size)[0]) == want
    assert sum(1 for e in want if e[0] == "StreamEnd") == 3


def test_frames_are_capped(tmp_path):
    cap = Capture()
    c = Conn(cap)
    c.open()
    for _ in range(100):
        c.seg(0, SUBSCRIBE)
    s = one(run(cap.write(tmp_path / "a.pcap"), max_frames=64)[0])
    assert s["conv"].frames == list(range(4, 68)) and s["data"][0] == SUBSCRIBE * 100


def test_conversation_limit_evicts_least_recently_seen(tmp_path):
    cap = Capture()
    conns = [Conn(cap, client=("10.0.0.5", 42000 + k)) for k in range(3)]
    conns[0].seg(0, SUBSCRIBE)
    conns[1].seg(0, SUBSCRIBE)
    conns[0].seg(0, AUTHORIZE)  # conns[1] is now the least recently seen
    conns[2].seg(0, SUBSCRIBE)
    conns[1].seg(0, AUTHORIZE)  # evicted earlier: comes back as a new conversation
    events, col = run(cap.write(tmp_path / "a.pcap"), max_conversations=2)
    ends = [(e.conversation.a_port, e.reason) for e in events if isinstance(e, StreamEnd)]
    assert ends[:2] == [(42001, "evicted"), (42000, "evicted")]
    assert col.stats["evicted"] == 2 and len(col) == 0


def test_memory_bounds_table_full_is_counted(tmp_path):
    cap = Capture()
    conns = [Conn(cap, client=("10.0.0.5", 43000 + k)) for k in range(12)]
    for c in conns:
        c.seg(0, SUBSCRIBE)
    for c in conns:
        c.seg(0, b"continuation without a brace\n")
    events, col = run(cap.write(tmp_path / "a.pcap"), table_slots=16)  # 8 flows at most
    got = streams(events)
    assert col.stats["table_full"] == 4 and len(got) == 12
    # The 8 remembered flows get their continuation; the 4 refused ones only what starts {".
    assert sum(g["data"][0] == SUBSCRIBE + b"continuation without a brace\n" for g in got) == 8
    assert col._fill == 0  # flush emptied the table


def test_memory_bounds_total_held_bytes(tmp_path):
    cap = Capture()
    conns = [Conn(cap, client=("10.0.0.5", 44000 + k)) for k in range(4)]
    for c in conns:
        c.seg(0, SUBSCRIBE)
        c.seq[0] += 3
    for c in conns:
        for _ in range(3):
            c.seg(0, NOTIFY)
    events, col = run(cap.write(tmp_path / "a.pcap"), max_total_held_bytes=2 * len(NOTIFY))
    got = streams(events)
    assert all(g["data"][0] == SUBSCRIBE + NOTIFY * 3 for g in got)
    assert col.stats["held_limit"] >= 4 and col._held_total == 0


def test_snap_length_truncated_segments_count_as_gaps():
    """Build a batch directly: a segment captured short leaves its tail as a gap."""
    seg1, seg2 = SUBSCRIBE, AUTHORIZE
    batch = _batch([(0, 1000, seg1[:30], len(seg1)), (0, 1000 + len(seg1), seg2, len(seg2))])
    col = StreamCollector()
    s = one(list(col.update(batch)) + list(col.flush()))
    assert s["data"][0] == seg1[:30] + seg2 and s["conv"].gap_bytes == [len(seg1) - 30, 0]


def _batch(segments) -> PacketBatch:
    """PACKET rows for (side, seq, captured payload, wire payload length) of one connection."""
    buf, rows = bytearray(), np.zeros(len(segments), PACKET)
    ends = [addr_to_halves("10.0.0.5") + (40001,), addr_to_halves("203.0.113.10") + (3333,)]
    for i, (side, seq, data, wire) in enumerate(segments):
        tcp = struct.pack(">HHIIBBHHH", 1, 2, seq, 0, 5 << 4, 0x18, 0, 0, 0)
        r = rows[i]
        (r["src_hi"], r["src_lo"], r["sport"]), (r["dst_hi"], r["dst_lo"], r["dport"]) = (
            ends[side], ends[1 - side])
        r["data_off"], r["l3_off"], r["l4_off"], r["payload_off"] = len(buf), 0, 20, 40
        r["ip_len"], r["payload_len"], r["proto"], r["tcp_flags"] = 40 + wire, len(data), 6, 0x18
        r["frame"], r["ts_ns"] = i + 1, T0 + i * MS
        buf += bytes(20) + tcp + data
    return PacketBatch("built", np.frombuffer(bytes(buf), np.uint8).copy(), rows)


# ---------------------------------------------------------------------------------------------
# The kernel and its twin
# ---------------------------------------------------------------------------------------------

NOISE_KEY = bytes(range(7, 7 + 64 * 3, 3))  # 64 distinct bytes: reads as random
SV2_SETUP = b"\x00\x00\x00\x03\x00\x00\x00\x02\x00"  # header, 3-byte body
PAYLOADS = [b"", b'{"id":1}', b'  \r\n{"a":1}', b"{ \n", b"{", b"{}", b"{\x99\x10", b"GET / ",
            b"\x16\x03\x01\x00", b"   ", b'\t{  "m"', b'POST / HTTP/1.1\r\n\r\n{"method":"getwork"}',
            b'POST / HTTP/1.1\r\n\r\n{"method":"other"}', NOISE_KEY, NOISE_KEY[:63],
            b"a" * 64, SV2_SETUP, SV2_SETUP[:-1], b"GET /LP X-Mining-Extensions: midstate",
            b"GE"]
# (prefix, exact length or 0, needles, flags) as detect.streams.start_rules makes them
RULES = [(b"POST", 0, [b'"getwork"'], 0), (b"", 64, [], pf.RULE_FIRST_PAYLOAD | pf.RULE_HIGH_ENTROPY),
         (b"\x00\x00\x00", 0, [], pf.RULE_WHOLE_FRAME), (b"GE", 0, [b"X-M", b"Ext"], 0)]
ENDPOINTS = [(0, 0xFFFF0A000005, 40001), (0x20010DB8 << 32, 5, 3333), (0, 0xFFFFCB00710A, 3333)]

packet_rows = st.lists(st.tuples(
    st.sampled_from([0, 0, 0, 0, 1, 2, 6]),  # status
    st.sampled_from([6, 6, 6, 17]),  # proto
    st.integers(0, len(ENDPOINTS) - 1), st.integers(0, len(ENDPOINTS) - 1),
    st.sampled_from([0, 0, 100]),  # vlan
    st.sampled_from([0x18, 0x10, 0x02, 0x02, 0x12, 0x11, 0x04, 0x03]),  # tcp flags
    st.integers(0, len(PAYLOADS) - 1),
    st.sampled_from([1000, 1001, 1001, 2**32 - 1, 0, -1])), max_size=25)  # seq (-1: no header)


def _rows_batch(rows) -> tuple[np.ndarray, np.ndarray]:
    """PACKET rows over a buffer of 20-byte TCP headers (or 3 bytes of junk) and payloads."""
    buf, packets = bytearray(), np.zeros(len(rows), PACKET)
    for i, row in enumerate(rows):
        status, proto, a, b, vlan, flags, k, seq = row if len(row) == 8 else (*row, -1)
        p = packets[i]
        p["status"], p["proto"], p["vlan"], p["tcp_flags"] = status, proto, vlan, flags
        p["src_hi"], p["src_lo"], p["sport"] = ENDPOINTS[a]
        p["dst_hi"], p["dst_lo"], p["dport"] = ENDPOINTS[b]
        head = b"hdr" if seq < 0 else struct.pack(">HHIIBBHHH", 1, 2, seq, 0, 5 << 4, flags, 0,
                                                   0, 0)
        p["data_off"], p["payload_off"], p["payload_len"] = len(buf), len(head), len(PAYLOADS[k])
        buf += head + PAYLOADS[k]
    return np.frombuffer(bytes(buf), np.uint8).copy(), packets


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(batches=st.lists(st.tuples(packet_rows, st.lists(st.integers(0, 2**64 - 1), max_size=3),
                                  st.booleans()), min_size=1, max_size=4),
       capacity_bits=st.integers(1, 4), max_fill=st.integers(0, 20),
       syn_bits=st.integers(0, 3), rules=st.sampled_from([[], RULES]))
def test_prefilter_kernel_matches_its_twin(batches, capacity_bits, max_fill, syn_bits, rules):
    table = np.zeros(1 << capacity_bits, np.uint64)
    syns = np.zeros(1 << syn_bits, np.uint64)
    syn_seqs = np.zeros(1 << syn_bits, np.uint32)
    ref_table: set[int] = set()
    ref_syns, ref_seqs = [0] * (1 << syn_bits), [0] * (1 << syn_bits)
    compiled = pf.build_start_rules(rules)
    fill = 0
    for rows, extra, forget_some in batches:
        buf, packets = _rows_batch(rows)
        marks, hashes, fill, refused = pf.select_stream_packets(
            buf, packets, table, fill, max_fill, syns, syn_seqs, compiled)
        r_marks, r_hashes, r_refused = select_stream_packets_reference(
            buf.tobytes(), packets, ref_table, len(table), max_fill, ref_syns, ref_seqs, rules)
        assert marks.tolist() == r_marks and hashes.tolist() == r_hashes
        assert refused == r_refused and fill == len(ref_table)
        assert set(table[table != 0].tolist()) == ref_table
        assert syns.tolist() == ref_syns and syn_seqs.tolist() == ref_seqs
        if forget_some:  # half of the known flows plus some unknown hashes leave the table
            gone = np.array(sorted(ref_table)[::2] + extra, np.uint64)
            n = pf.forget_flows(table, gone)
            assert n == forget_flows_reference(ref_table, gone.tolist())
            fill -= n
            assert set(table[table != 0].tolist()) == ref_table
            assert all(pf.table_contains(table, np.uint64(h)) for h in ref_table)


def _select(rows, rules=RULES, syn_slots=16):
    buf, packets = _rows_batch(rows)
    table, syns = np.zeros(16, np.uint64), np.zeros(syn_slots, np.uint64)
    marks, *_ = pf.select_stream_packets(buf, packets, table, 0, 8, syns,
                                         np.zeros(syn_slots, np.uint32),
                                         pf.build_start_rules(rules))
    return marks.tolist()


def test_start_rules_open_a_flow_where_their_payload_matches():
    k = PAYLOADS.index
    getwork, other = k(PAYLOADS[11]), k(PAYLOADS[12])
    assert _select([(0, 6, 0, 2, 0, 0x18, getwork, 77)]) == [3]
    assert _select([(0, 6, 0, 2, 0, 0x18, other, 77)]) == [0]
    assert _select([(0, 6, 0, 2, 0, 0x18, getwork, 77)], rules=[]) == [0]
    assert _select([(0, 6, 0, 2, 0, 0x18, k(SV2_SETUP), 77)]) == [3]
    assert _select([(0, 6, 0, 2, 0, 0x18, k(SV2_SETUP[:-1]), 77)]) == [0]  # frame cut short
    lp = k(b"GET /LP X-Mining-Extensions: midstate")
    assert _select([(0, 6, 0, 2, 0, 0x18, lp, 77), (0, 6, 0, 1, 0, 0x18, k(b"GE"), 7)]) == [3, 0]


def test_a_noise_key_opens_a_flow_only_as_the_syn_senders_first_payload():
    key = PAYLOADS.index(NOISE_KEY)
    syn = (0, 6, 0, 2, 0, 0x02, 0, 1000)
    first = (0, 6, 0, 2, 0, 0x18, key, 1001)
    opened = pf.SELECTED | pf.NEW_FLOW | pf.SYN_FROM_SENDER
    assert _select([syn, first]) == [0, opened]
    assert _select([first]) == [0]  # no SYN seen: a later record of some encrypted stream
    assert _select([syn, (0, 6, 0, 2, 0, 0x18, key, 1500)]) == [0, 0]  # not the opening bytes
    assert _select([syn, (0, 6, 2, 0, 0, 0x18, key, 1001)]) == [0, 0]  # the other side
    assert _select([syn, (0, 6, 0, 2, 0, 0x18, PAYLOADS.index(b"a" * 64), 1001)]) == [0, 0]
    assert _select([(0, 6, 0, 2, 0, 0x02, 0, 2**32 - 1), (0, 6, 0, 2, 0, 0x18, key, 0)]) == [
        0, opened]  # the sequence number wraps


def test_the_fingerprints_rules_select_the_http_and_sv2_samples():
    from poolwatch.detect.streams import start_rules
    from poolwatch.fingerprints import load_fingerprints

    rules = start_rules(load_fingerprints())
    assert len(rules.flags) >= 3
    for name in ("getwork_http", "stratum_v2_plain", "stratum_v2_noise"):
        events, _ = run(PCAPS / "stratum" / f"{name}.pcap", rules=rules)
        assert len(streams(events)) == 1, name
        events, _ = run(PCAPS / "stratum" / f"{name}.pcap")
        assert streams(events) == [], name  # without the rules: JSON lines only


@settings(max_examples=200, deadline=None)
@given(ops=st.lists(st.tuples(st.booleans(), st.integers(0, 40)), max_size=120))
def test_table_deletion_keeps_every_probe_run_intact(ops):
    """Insert/remove hashes that crowd into few home slots (wrapping at the end)."""
    table = np.zeros(16, np.uint64)
    model: set[int] = set()
    for insert, k in ops:
        h = np.uint64((k * 16 + (k % 5) + 13) or 1)  # home slots 13..17 mod 16: runs wrap
        if insert and int(h) not in model and len(model) < 15:
            pf.table_insert(table, h)
            model.add(int(h))
        elif not insert:
            assert pf.table_remove(table, h) == (int(h) in model)
            model.discard(int(h))
        assert set(table[table != 0].tolist()) == model
        for v in range(1, 41):
            g = (v * 16 + (v % 5) + 13) or 1
            assert pf.table_contains(table, np.uint64(g)) == (g in model)


def test_prefilter_on_a_full_table_counts_and_goes_on():
    rows = [(0, 6, 0, 1, 0, 0x18, 1), (0, 6, 0, 2, 0, 0x18, 1), (0, 6, 1, 2, 0, 0x18, 1),
            (0, 6, 2, 1, 0, 0x10, 0)]
    buf, packets = _rows_batch(rows)
    table, syns, seqs = np.zeros(4, np.uint64), np.zeros(1, np.uint64), np.zeros(1, np.uint32)
    args = (syns, seqs, pf.NO_RULES)
    marks, _, fill, refused = pf.select_stream_packets(buf, packets, table, 0, 100, *args)
    assert fill == 3 and refused == 0  # max_fill is clamped to len(table) - 1: one slot free
    marks, _, fill, refused = pf.select_stream_packets(buf, packets, table, fill, 100, *args)
    assert marks.tolist() == [1, 1, 1, 1] and fill == 3 and refused == 0
    buf2, packets2 = _rows_batch([(0, 6, 0, 1, 100, 0x18, 1)])
    marks, _, fill, refused = pf.select_stream_packets(buf2, packets2, table, fill, 100, *args)
    assert marks.tolist() == [3] and fill == 3 and refused == 1


def test_syn_bits_name_the_side_that_opened():
    rows = [(0, 6, 0, 2, 0, 0x02, 0), (0, 6, 2, 0, 0, 0x12, 0), (0, 6, 2, 0, 0, 0x18, 1),
            (0, 6, 0, 2, 0, 0x18, 1)]
    buf, packets = _rows_batch(rows)
    table, syns = np.zeros(16, np.uint64), np.zeros(16, np.uint64)
    marks, hashes, fill, _ = pf.select_stream_packets(buf, packets, table, 0, 8, syns,
                                                      np.zeros(16, np.uint32), pf.NO_RULES)
    assert marks.tolist() == [0, 0, pf.SELECTED | pf.NEW_FLOW | pf.SYN_FROM_RECEIVER,
                              pf.SELECTED]
    assert hashes[2] == hashes[3] != 0 and fill == 1


# ---------------------------------------------------------------------------------------------
# Real captures
# ---------------------------------------------------------------------------------------------

def test_stratum_sample_is_one_conversation_of_json_lines():
    events, col = run(PCAPS / "stratum_v1_plain_3333.pcap")
    s = one(events)
    lines = [json.loads(x) for x in s["data"][0].splitlines()]
    assert sum(m.get("method") == "mining.submit" for m in lines) == 7
    assert all(json.loads(x) for x in s["data"][1].splitlines())
    assert s["end"] == "fin" and s["conv"].syn_from == "a" and s["conv"].gap_bytes == [0, 0]
    events, col = run(PCAPS / "benign_tls_and_dns.pcap")
    assert events == [] and col.stats["packets"] == 0


CORPUS = sorted(p for p in PCAPS.iterdir() if p.suffix in (".pcap", ".pcapng"))
PEER = sorted((PEER_CORPUS / "pcap").iterdir()) if (PEER_CORPUS / "pcap").is_dir() else []


@pytest.mark.corpus
@pytest.mark.skipif(not PEER, reason=f"nDPI's captures are not at {PEER_CORPUS}/pcap")
def test_collector_over_every_capture(capsys):
    """Nothing raises, and what gets selected speaks JSON (a conversation opens with {") or
    starts the way a signature of the fingerprints says (HTTP work requests, SV2)."""
    from poolwatch.detect.streams import start_rules
    from poolwatch.fingerprints import load_fingerprints

    fp = load_fingerprints()
    signatures = [s for d in fp.dialects.values() if d.framing != "ndjson"
                  for s in d.client_signatures]
    selected: dict[str, int] = {}
    for capture in CORPUS + PEER:
        events, col = run(capture, rules=start_rules(fp))
        got = streams(events)
        for g in got:
            firsts = [g["chunks"][d][0].data for d in (0, 1) if g["chunks"][d]]
            assert any(f.lstrip().startswith(b"{") or any(s.matches(f) for s in signatures)
                       for f in firsts), (capture.name, firsts)
            assert g["end"] in ("fin", "rst", "idle", "eof", "evicted")
        if got:
            selected[capture.name] = len(got)
        assert len(col) == 0 and col._held_total == 0
    with capsys.disabled():
        print(f"\nstream collector: {sum(selected.values())} conversations selected in "
              f"{len(CORPUS) + len(PEER)} captures: {selected}")
    assert selected.get("stratum_v1_plain_3333.pcap") == 1
    if "mining.pcapng" in {p.name for p in PEER}:
        assert selected.get("mining.pcapng") == 4
