"""TCP byte streams of the few flows that can carry Stratum, in order, as they arrive.

A numba prefilter (``kernels.prefilter``) picks the packets worth Python's time: TCP payload
that starts like JSON or matches a start rule (:func:`start_rules`: getwork over HTTP,
Stratum V2), and every later packet of a flow that did. Only those packets
reach the :class:`StreamCollector`, which puts each direction's bytes in sequence order
(retransmissions dropped, out-of-order segments held until the gap fills or is given up on)
and hands them on as :class:`StreamData` events, so the protocol parsers above it consume
streams incrementally and nothing keeps a whole session in memory.
"""

from __future__ import annotations

import heapq
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np

from ..fingerprints import Fingerprints
from ..kernels.prefilter import (
    NO_RULES,
    RULE_FIRST_PAYLOAD,
    RULE_HIGH_ENTROPY,
    RULE_WHOLE_FRAME,
    SYN_FROM_RECEIVER,
    SYN_FROM_SENDER,
    StartRules,
    build_start_rules,
    forget_flows,
    select_stream_packets,
)
from ..records import PacketBatch, halves_to_addr


def start_rules(fp: Fingerprints) -> StartRules:
    """The prefilter's start rules from the client signatures of the dialects that do not
    send JSON lines (those the ``{"`` test already catches): getwork's HTTP requests and
    Stratum V2's frames and Noise handshake.

    Signatures marked ``opening_only`` (binary shapes: a Noise key, a zero prefix) match a
    connection's opening payload only: later segments of unrelated binary or encrypted
    streams have such shapes too, and each one that matched would send its whole flow
    through Python.
    """
    rules = []
    for dialect in fp.dialects.values():
        if dialect.framing == "ndjson":
            continue
        for sig in dialect.client_signatures:
            flags = ((RULE_HIGH_ENTROPY if sig.high_entropy else 0)
                     | (RULE_WHOLE_FRAME if sig.whole_frame else 0))
            if sig.opening_only:
                flags |= RULE_FIRST_PAYLOAD
            rules.append((sig.prefix, sig.payload_len or 0, [c.encode() for c in sig.contains],
                          flags))
    return build_start_rules(rules)


# The events are named tuples: made for every collected segment, and a frozen dataclass
# costs three times as much to build (one object.__setattr__ per field).
class Chunk(NamedTuple):
    """Contiguous new bytes of one direction of a conversation, from one TCP segment."""

    offset: int  # stream offset of data[0]: bytes since the first byte seen this way
    ts_ns: int
    frame: int  # frame number in its capture file
    data: bytes


@dataclass(slots=True, eq=False)
class Conversation:
    """One TCP connection seen by the collector; the same object for all of its events.

    ``a`` is the sender of the first packet collected (not necessarily the client: the
    protocol layer decides who is the miner). ``syn_from`` is "a" or "b" when a SYN without
    ACK was seen from that side, else None.
    """

    path: str  # capture file the conversation started in
    a_ip: str
    a_port: int
    b_ip: str
    b_port: int
    vlan: int
    inner_vlan: int
    proto: int = 6
    first_ts_ns: int = 0
    last_ts_ns: int = 0
    syn_from: str | None = None
    gap_bytes: list[int] = field(default_factory=lambda: [0, 0])  # bytes skipped per direction
    frames: list[int] = field(default_factory=list)  # frame numbers of collected packets (capped)


class StreamData(NamedTuple):
    """New in-order bytes: ``direction`` 0 is a→b, 1 is b→a."""

    conversation: Conversation
    direction: int
    chunk: Chunk


class StreamEnd(NamedTuple):
    """No more bytes will come for this conversation (FIN/RST both ways, idle, or end of input)."""

    conversation: Conversation
    reason: str  # "fin", "rst", "idle", "eof", "evicted"


# ---------------------------------------------------------------------------------------------
# The collector
# ---------------------------------------------------------------------------------------------

NS = 1_000_000_000
SEQ_MOD = 1 << 32
TH_FIN, TH_SYN, TH_RST, TH_ACK = 0x01, 0x02, 0x04, 0x10
REASONS = ("fin", "rst", "idle", "eof", "evicted")


def _seq_delta(seq: int, expected: int) -> int:
    """Signed distance from ``expected`` to ``seq`` in 32-bit sequence space (wraps)."""
    return ((seq - expected + (1 << 31)) % SEQ_MOD) - (1 << 31)


class _Side:
    """Reassembly state of one direction.

    Positions are stream offsets (unbounded ints: bytes since the first sequence number seen
    this way), so wrap-around is handled once, in :func:`_seq_delta`, and never again.
    """

    __slots__ = ("base", "fin", "held", "held_bytes", "held_since", "offset", "started")

    def __init__(self) -> None:
        self.started = False
        self.base = 0  # sequence number of stream offset 0
        self.offset = 0  # next stream offset expected (everything before it was delivered)
        self.fin = False
        self.held: list[tuple[int, int, int, int, bytes]] = []  # heap (pos, frame, ts, end, data)
        self.held_bytes = 0
        self.held_since = 0  # capture time the current gap started to be waited for

    def position(self, seq: int) -> int:
        """Stream offset of sequence number ``seq`` (relative to the next expected byte)."""
        return self.offset + _seq_delta(seq, (self.base + self.offset) % SEQ_MOD)


class _State:
    """A conversation as the collector tracks it: public record, key, hash, both sides."""

    __slots__ = ("a", "conv", "hash", "key", "sides")

    def __init__(self, conv: Conversation, key: tuple, h: int, a: tuple[int, int, int]) -> None:
        self.conv, self.key, self.hash, self.a = conv, key, h, a
        self.sides = (_Side(), _Side())


class StreamCollector:
    """Reassembles the TCP byte streams of flows that can carry Stratum, batch by batch.

    :meth:`update` runs the prefilter kernel over a whole batch, then loops in Python over
    the selected packets only. Each direction is put in sequence order: bytes already
    delivered are dropped (retransmissions, overlaps), segments ahead of a gap are held until
    it fills, or until the held bytes or the wait pass a bound, when the gap is skipped
    (``Conversation.gap_bytes``). Conversations end on FIN from both sides, on RST, when idle
    longer than ``idle_timeout_s`` of capture time, when evicted to make room (least recently
    seen first), and at :meth:`flush`. Held data is released (gaps skipped) before every end.

    Memory is bounded by ``max_conversations``, the held bytes (and segments) per direction
    and in total, and fixed-size prefilter tables. What the bounds cost is counted in
    :attr:`stats`: ``table_full`` (new flows the prefilter could not remember: only
    their ``{"`` segments get through), ``evicted``, ``held_limit`` (gaps skipped early
    because held data passed a bound), ``gaps``/``gap_bytes``, ``duplicate_bytes``,
    ``orphan_packets`` (selected packets with nothing to collect, e.g. a bare ACK of a flow
    with no live conversation), ``after_close_packets`` (packets of a connection closed by
    FIN/RST less than ``close_linger_s`` ago: late retransmissions are not a new
    conversation), and ``ended_<reason>``.

    Timeouts follow capture time. Idle conversations are found per packet (its own
    conversation) and once per batch (all of them, at the capture time of the batch's last
    packet, so that one packet far ahead of the rest cannot end them), so only the
    moment an idle or gap-wait decision is emitted depends on batch boundaries.
    Known limit: a FIN that overtakes the last data segment ends the conversation once the
    other side's FIN is in; the late segment then counts in ``after_close_packets``.
    """

    def __init__(
        self,
        *,
        max_conversations: int = 4096,
        idle_timeout_s: float = 300.0,
        max_held_bytes: int = 256 * 1024,
        max_held_segments: int = 1024,
        max_total_held_bytes: int = 64 << 20,
        gap_wait_s: float = 10.0,
        max_frames: int = 64,
        table_slots: int | None = None,
        syn_slots: int = 1 << 14,
        close_linger_s: float = 120.0,
        max_closed: int = 4096,
        rules: StartRules = NO_RULES,
    ) -> None:
        if max_conversations < 1:
            raise ValueError("max_conversations must be at least 1")
        self.max_conversations = max_conversations
        self.idle_ns = int(idle_timeout_s * NS)
        self.max_held_bytes = max_held_bytes
        self.max_held_segments = max_held_segments
        self.max_total_held_bytes = max_total_held_bytes
        self.gap_wait_ns = int(gap_wait_s * NS)
        self.max_frames = max_frames
        self.linger_ns = int(close_linger_s * NS)
        self.max_closed = max_closed
        # Room for every live conversation plus a batch's worth of new flows, half full at most
        # so probe runs stay short.
        slots = table_slots or 4 * max_conversations
        self._table = np.zeros(1 << max(4, (slots - 1).bit_length()), np.uint64)
        self._max_fill = len(self._table) // 2
        self._fill = 0
        self._syns = np.zeros(1 << max(0, (syn_slots - 1).bit_length()), np.uint64)
        self._syn_seqs = np.zeros(len(self._syns), np.uint32)
        self._rules = rules
        self._convs: OrderedDict[tuple, _State] = OrderedDict()  # least recently seen first
        self._closed: OrderedDict[tuple, int] = OrderedDict()  # key -> capture time of FIN/RST
        self._holding: dict[tuple[tuple, int], _State] = {}  # sides with held segments
        self._forget: dict[tuple, int] = {}  # ended conversations whose hash leaves the table
        self._held_total = 0
        self.stats: dict[str, int] = dict.fromkeys(
            ("packets", "conversations", "table_full", "evicted", "duplicate_bytes", "gaps",
             "gap_bytes", "held_limit", "orphan_packets", "after_close_packets"), 0)
        for reason in REASONS:
            self.stats[f"ended_{reason}"] = 0

    def __len__(self) -> int:
        return len(self._convs)

    # -- batches ------------------------------------------------------------------------------

    def update(self, batch: PacketBatch) -> Iterator[StreamData | StreamEnd]:
        """Events for one batch, in capture order.

        The work is done before this returns (the reader may reuse the batch's arrays as soon
        as the caller asks for the next one); the iterator hands out the events.
        """
        out: list[StreamData | StreamEnd] = []
        if len(batch.packets) == 0:
            return iter(out)
        marks, hashes, self._fill, refused = select_stream_packets(
            batch.buf, batch.packets, self._table, self._fill, self._max_fill, self._syns,
            self._syn_seqs, self._rules)
        self.stats["table_full"] += int(refused)
        idx = np.flatnonzero(marks)
        if len(idx):
            self._collect(batch, idx, marks[idx], hashes[idx], out)
        # The time the capture has reached is its last packet's, not the batch's latest:
        # a merged or clock-stepped capture may hold one packet hours ahead of the rest.
        self._sweep(int(batch.packets["ts_ns"][-1]), out)
        self._forget_ended()
        return iter(out)

    def expire(self, now_ns: int) -> Iterator[StreamData | StreamEnd]:
        """Idle conversations at ``now_ns`` end (a live sensor's quiet moments: no batch
        comes to sweep them)."""
        out: list[StreamData | StreamEnd] = []
        self._sweep(now_ns, out)
        self._forget_ended()
        return iter(out)

    def flush(self) -> Iterator[StreamData | StreamEnd]:
        """End of input: release held data and end every conversation (reason "eof")."""
        out: list[StreamData | StreamEnd] = []
        for st in list(self._convs.values()):
            self._end(st, "eof", out)
        self._table[:] = 0
        self._syns[:] = 0
        self._syn_seqs[:] = 0
        self._fill = 0
        self._closed.clear()
        self._forget.clear()
        return iter(out)

    def _collect(self, batch: PacketBatch, idx: np.ndarray, marks: np.ndarray,
                 hashes: np.ndarray, out: list) -> None:
        """Column-wise extraction of the selected rows, then one Python step per packet."""
        rows = batch.packets[idx]
        buf = batch.buf
        base = rows["data_off"].astype(np.int64)
        at = base + rows["l4_off"] + 4
        seq = ((buf[at].astype(np.uint32) << 24) | (buf[at + 1].astype(np.uint32) << 16)
               | (buf[at + 2].astype(np.uint32) << 8) | buf[at + 3].astype(np.uint32))
        start = base + rows["payload_off"]
        length = rows["payload_len"].astype(np.int64)
        # Bytes the segment carried on the wire: more than captured under a snap length.
        wire = np.maximum(rows["l3_off"].astype(np.int64) + rows["ip_len"]
                          - rows["payload_off"], length)
        cols = zip(rows["vlan"].tolist(), rows["inner_vlan"].tolist(), rows["src_hi"].tolist(),
                   rows["src_lo"].tolist(), rows["sport"].tolist(), rows["dst_hi"].tolist(),
                   rows["dst_lo"].tolist(), rows["dport"].tolist(), rows["tcp_flags"].tolist(),
                   rows["ts_ns"].tolist(), rows["frame"].tolist(), seq.tolist(), start.tolist(),
                   length.tolist(), wire.tolist(), marks.tolist(), hashes.tolist())
        self.stats["packets"] += len(idx)
        for (vlan, inner, s_hi, s_lo, sport, d_hi, d_lo, dport, flags, ts, frame, sq, s, n, w,
             mark, h) in cols:
            src, dst = (s_hi, s_lo, sport), (d_hi, d_lo, dport)
            key = (vlan, inner) + (src + dst if src <= dst else dst + src)
            data = buf[s : s + n].tobytes() if n else b""
            st = self._conversation(batch.path, key, src, dst, flags, ts, frame, data, mark, h,
                                    out)
            if st is not None:
                self._segment(st, 0 if src == st.a else 1, flags, ts, frame, sq, data, w, out)

    # -- conversations ------------------------------------------------------------------------

    def _conversation(self, path: str, key: tuple, src: tuple, dst: tuple, flags: int, ts: int,
                      frame: int, data: bytes, mark: int, h: int, out: list) -> _State | None:
        """The live conversation of a packet, opened if the packet can start one."""
        st = self._convs.get(key)
        if st is not None and ts - st.conv.last_ts_ns > self.idle_ns:
            self._end(st, "idle", out)
            st = None
        syn_only = flags & (TH_SYN | TH_ACK) == TH_SYN
        if st is None:
            if key in self._closed:
                if not syn_only:  # late retransmissions and ACKs of a closed connection
                    self.stats["after_close_packets"] += 1
                    return None
                del self._closed[key]
            if (not data and not flags & TH_SYN) or flags & TH_RST:
                self.stats["orphan_packets"] += 1  # nothing to collect without a conversation
                return None
            st = self._open(path, key, src, dst, ts, mark, h, out)
        else:
            self._convs.move_to_end(key)
        conv = st.conv
        conv.last_ts_ns = max(conv.last_ts_ns, ts)
        if len(conv.frames) < self.max_frames:
            conv.frames.append(frame)
        return st

    def _open(self, path: str, key: tuple, src: tuple, dst: tuple, ts: int, mark: int, h: int,
              out: list) -> _State:
        if len(self._convs) >= self.max_conversations:
            self.stats["evicted"] += 1
            self._end(next(iter(self._convs.values())), "evicted", out)
        conv = Conversation(path, halves_to_addr(src[0], src[1]), src[2],
                            halves_to_addr(dst[0], dst[1]), dst[2], key[0], key[1],
                            first_ts_ns=ts, last_ts_ns=ts)
        if mark & SYN_FROM_SENDER:
            conv.syn_from = "a"
        elif mark & SYN_FROM_RECEIVER:
            conv.syn_from = "b"
        st = self._convs[key] = _State(conv, key, h, src)
        self.stats["conversations"] += 1
        return st

    def _end(self, st: _State, reason: str, out: list) -> None:
        """Release held data, emit StreamEnd, and let the prefilter forget the flow."""
        for d in (0, 1):
            self._release(st, d, out)
        out.append(StreamEnd(st.conv, reason))
        self.stats[f"ended_{reason}"] += 1
        del self._convs[st.key]
        if reason in ("fin", "rst"):
            self._closed[st.key] = st.conv.last_ts_ns
            self._closed.move_to_end(st.key)
            while len(self._closed) > self.max_closed:
                self._closed.popitem(last=False)
        if reason != "eof":
            self._forget[st.key] = st.hash

    def _sweep(self, now: int, out: list) -> None:
        """Once per batch: idle conversations, gaps waited on too long, old close records."""
        while self._convs:
            st = next(iter(self._convs.values()))
            if now - st.conv.last_ts_ns <= self.idle_ns:
                break
            self._end(st, "idle", out)
        for (key, d), st in list(self._holding.items()):
            side = st.sides[d]
            if side.held and now - side.held_since > self.gap_wait_ns:
                self._skip_gaps(st, d, out, until_ns=now)
        while self._closed:
            key, when = next(iter(self._closed.items()))
            if now - when <= self.linger_ns:
                break
            del self._closed[key]

    def _forget_ended(self) -> None:
        """Free the table slots of conversations that ended (unless reopened since)."""
        gone = [h for key, h in self._forget.items() if key not in self._convs]
        self._forget.clear()
        if gone:
            self._fill -= int(forget_flows(self._table, np.array(gone, np.uint64)))

    # -- reassembly ---------------------------------------------------------------------------

    def _segment(self, st: _State, d: int, flags: int, ts: int, frame: int, seq: int,
                 data: bytes, wire: int, out: list) -> None:
        side = st.sides[d]
        if flags & TH_SYN:
            if not flags & TH_ACK:
                st.conv.syn_from = "a" if d == 0 else "b"
            seq = (seq + 1) % SEQ_MOD  # SYN takes one sequence number; data follows it
            if not side.started:
                side.started, side.base = True, seq
        if flags & TH_RST:
            self._end(st, "rst", out)
            return
        if data:
            if not side.started:  # joined mid-connection: this direction starts here
                side.started, side.base = True, seq
            self._data(st, d, side.position(seq), wire, ts, frame, data, out)
        if flags & TH_FIN:
            side.fin = True
            if st.sides[1 - d].fin:
                self._end(st, "fin", out)

    def _data(self, st: _State, d: int, pos: int, wire: int, ts: int, frame: int, data: bytes,
              out: list) -> None:
        side = st.sides[d]
        if pos > side.offset:  # ahead of a gap: hold it
            if not side.held:
                side.held_since = ts
                self._holding[(st.key, d)] = st
            heapq.heappush(side.held, (pos, frame, ts, pos + wire, data))
            side.held_bytes += len(data)
            self._held_total += len(data)
            if (side.held_bytes > self.max_held_bytes or len(side.held) > self.max_held_segments
                    or self._held_total > self.max_total_held_bytes):
                self.stats["held_limit"] += 1
                self._skip_gaps(st, d, out, until_bytes=True)
            elif ts - side.held_since > self.gap_wait_ns:
                self._skip_gaps(st, d, out, until_ns=ts)
            return
        self._deliver(st, d, pos, pos + wire, ts, frame, data, out)
        self._drain(st, d, out)

    def _deliver(self, st: _State, d: int, pos: int, end: int, ts: int, frame: int,
                 data: bytes, out: list) -> None:
        """Emit the part of a segment at or after the next expected offset (pos <= offset)."""
        side = st.sides[d]
        cut = side.offset - pos
        if cut >= len(data):
            self.stats["duplicate_bytes"] += len(data)
        else:
            self.stats["duplicate_bytes"] += cut
            new = data[cut:] if cut else data
            out.append(StreamData(st.conv, d, Chunk(side.offset, ts, frame, new)))
            side.offset += len(new)
        if end > side.offset:  # bytes sent but not captured (snap length): a gap of their own
            self._gap(st, d, end - side.offset)

    def _gap(self, st: _State, d: int, n: int) -> None:
        st.conv.gap_bytes[d] += n
        st.sides[d].offset += n
        self.stats["gaps"] += 1
        self.stats["gap_bytes"] += n

    def _drain(self, st: _State, d: int, out: list) -> None:
        """Deliver held segments that the stream has reached."""
        side = st.sides[d]
        while side.held and side.held[0][0] <= side.offset:
            pos, frame, ts, end, data = heapq.heappop(side.held)
            side.held_bytes -= len(data)
            self._held_total -= len(data)
            self._deliver(st, d, pos, end, ts, frame, data, out)
        if side.held:
            side.held_since = max(side.held_since, side.held[0][2])  # the gap now waited on
        else:
            self._holding.pop((st.key, d), None)

    def _skip_gaps(self, st: _State, d: int, out: list, *, until_ns: int | None = None,
                   until_bytes: bool = False) -> None:
        """Give up on missing data: jump over gaps until the held data is within bounds."""
        side = st.sides[d]
        while side.held:
            if until_bytes and (side.held_bytes <= self.max_held_bytes
                                and len(side.held) <= self.max_held_segments
                                and self._held_total <= self.max_total_held_bytes):
                break
            if until_ns is not None and until_ns - side.held_since <= self.gap_wait_ns:
                break
            self._gap(st, d, side.held[0][0] - side.offset)
            self._drain(st, d, out)

    def _release(self, st: _State, d: int, out: list) -> None:
        """Everything held goes out now, gaps skipped (the conversation is ending)."""
        side = st.sides[d]
        while side.held:
            self._gap(st, d, side.held[0][0] - side.offset)
            self._drain(st, d, out)
