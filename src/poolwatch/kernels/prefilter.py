"""Pick the few packets worth reassembling: TCP flows that can carry Stratum.

Stratum v1 (and its JSON-RPC relatives) sends one JSON object per line, so a segment that
starts a message starts with ``{"`` (whitespace allowed around the brace). The other
framings (getwork over HTTP, Stratum V2's binary frames and its Noise handshake) are
recognised by :class:`StartRules` that the detector builds from the fingerprints' dialect
signatures: a prefix, exact length, needles the payload must contain, random-looking bytes,
a whole SV2 frame, and whether only a connection's opening payload may match.
:func:`select_stream_packets` marks such segments and remembers their flow in ``table``;
from then on every TCP packet of that flow is marked
(data, and the bare FIN/RST/ACK segments the reassembler needs to see a close). Everything
else (HTTP, TLS, bulk transfers) stays in numpy and never costs Python time.

``table`` is an open-addressing set of direction-free flow hashes (``uint64``, 0 = empty,
capacity a power of two, linear probing). Its size is fixed, so its memory is bounded: when
``fill`` reaches ``max_fill`` new flows are refused and counted, and the caller frees slots
with :func:`forget_flows` when conversations end (backward-shift deletion: no tombstones).

``syns`` is a direct-mapped cache of *directed* hashes of recent SYN-without-ACK segments
(``syn_seqs`` holds their sequence numbers). A flow's SYN comes before its first payload,
so it is never selected itself; the cache lets the packet that starts a flow's selection say
which side opened the connection, and whether it is that side's opening payload.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from numba import njit

from .flowtable import flow_hash, packet_hash
from .memory import prefetch

# Bits of the per-packet ``marks`` returned by select_stream_packets.
SELECTED = 1  # hand this packet to the stream collector
NEW_FLOW = 2  # its payload starts the flow's selection (the flow was not in the table)
SYN_FROM_SENDER = 4  # a SYN without ACK was recently seen from this packet's sender
SYN_FROM_RECEIVER = 8  # ... from this packet's receiver

# Bits of StartRules.flags.
RULE_FIRST_PAYLOAD = 1  # only the opening payload of the side that sent the SYN
RULE_HIGH_ENTROPY = 2  # the bytes look random (keys, ciphertext)
RULE_WHOLE_FRAME = 4  # a whole binary-sv2 frame: the header's U24 LE length fits

STATUS_OK = 0
TCP = 6
TH_SYN = 0x02
TH_ACK = 0x10
OPEN_BRACE = 0x7B
PAYLOAD_AHEAD = 8  # rows ahead whose payload line is prefetched (kernels.memory)
QUOTE = 0x22


@njit(cache=True, nogil=True, inline="always")
def _nonzero(h):
    """0 marks an empty slot, so no hash may be 0."""
    return h if h != np.uint64(0) else np.uint64(1)


@njit(cache=True, nogil=True)
def canonical_hash(p):
    """Direction-free hash of a PACKET row's flow (both directions give the same value)."""
    return _nonzero(packet_hash(p))


@njit(cache=True, nogil=True)
def directed_hash(p, from_sender):
    """Hash of the flow with the sender first (or the receiver first): tells SYN sides apart."""
    if from_sender:
        h = flow_hash(p.vlan, p.inner_vlan, p.proto, p.src_hi, p.src_lo, p.sport,
                      p.dst_hi, p.dst_lo, p.dport)
    else:
        h = flow_hash(p.vlan, p.inner_vlan, p.proto, p.dst_hi, p.dst_lo, p.dport,
                      p.src_hi, p.src_lo, p.sport)
    return _nonzero(h)


class StartRules(NamedTuple):
    """Payload shapes, other than a JSON line, that start a flow's selection (rule k: row k).

    A payload matches rule k when it starts with ``prefix[k, :prefix_len[k]]``, has exactly
    ``length[k]`` bytes (0: any), contains every needle ``needle_lo[k] <= j < needle_hi[k]``
    (needle j is ``needles[needle_off[j]:needle_off[j + 1]]``) and passes the ``flags``.
    """

    prefix: np.ndarray  # uint8 (rules, longest prefix or 1)
    prefix_len: np.ndarray  # int64 (rules,)
    length: np.ndarray  # int64 (rules,)
    flags: np.ndarray  # int64 (rules,)
    needle_lo: np.ndarray  # int64 (rules,)
    needle_hi: np.ndarray  # int64 (rules,)
    needles: np.ndarray  # uint8, all needles end to end
    needle_off: np.ndarray  # int64 (needles + 1,)
    first_byte: np.ndarray  # uint8 (256,): 1 where some rule's prefix starts with that byte
    unprefixed: np.ndarray  # int64: the rules without a prefix (their lengths gate them)


def build_start_rules(rules: list[tuple[bytes, int, list[bytes], int]]) -> StartRules:
    """StartRules from (prefix, exact length or 0, needles, flags) tuples."""
    width = max([len(r[0]) for r in rules] + [1])
    prefix = np.zeros((len(rules), width), np.uint8)
    needles: list[bytes] = []
    lo, hi = [], []
    for k, (head, _, wanted, _) in enumerate(rules):
        prefix[k, : len(head)] = np.frombuffer(head, np.uint8)
        lo.append(len(needles))
        needles += wanted
        hi.append(len(needles))
    first_byte = np.zeros(256, np.uint8)
    for head, *_ in rules:
        if head:
            first_byte[head[0]] = 1
    ints = lambda v: np.array(v, np.int64)
    return StartRules(
        prefix, ints([len(r[0]) for r in rules]), ints([r[1] for r in rules]),
        ints([r[3] for r in rules]), ints(lo), ints(hi),
        np.frombuffer(b"".join(needles), np.uint8).copy(),
        ints([0] + list(np.cumsum([len(n) for n in needles], dtype=np.int64))),
        first_byte, ints([k for k, r in enumerate(rules) if not r[0]]))


NO_RULES = build_start_rules([])


@njit(cache=True, nogil=True, inline="always")
def _is_space(c):
    return c == 0x20 or c == 0x09 or c == 0x0A or c == 0x0D or c == 0x0B or c == 0x0C


@njit(cache=True, nogil=True)
def starts_json(buf, start, n):
    """True when ``buf[start:start+n]`` opens a JSON object with a key: ``{`` then ``"``.

    ASCII whitespace may come before and after the brace. Requiring the quote (every
    JSON-RPC message starts ``{"``) keeps out the 1 in 256 segments of encrypted or binary
    streams that merely begin with 0x7B. A segment that ends right after the brace passes.
    """
    end = min(start + n, len(buf))
    k = start
    while k < end and _is_space(buf[k]):
        k += 1
    if k == end or buf[k] != OPEN_BRACE:
        return False
    k += 1
    while k < end and _is_space(buf[k]):
        k += 1
    return k == end or buf[k] == QUOTE


@njit(cache=True, nogil=True)
def high_entropy(buf, start, n):
    """Shannon entropy of the bytes at least 85 % of the most their length allows.

    64 random bytes score about 5.7 bits of a possible 6; text and headers stay far below.
    """
    if n < 16:
        return False
    counts = np.zeros(256, np.int64)
    for k in range(start, start + n):
        counts[buf[k]] += 1
    h = 0.0
    for c in counts:
        if c:
            q = c / n
            h -= q * np.log2(q)
    return h >= 0.85 * np.log2(min(n, 256))


@njit(cache=True, nogil=True)
def _contains(buf, start, n, needles, lo, hi):
    """``needles[lo:hi]`` occurs in ``buf[start:start+n]``."""
    m = hi - lo
    if m == 0:
        return True
    first = needles[lo]
    for k in range(start, start + n - m + 1):
        if buf[k] != first:
            continue
        j = 1
        while j < m and buf[k + j] == needles[lo + j]:
            j += 1
        if j == m:
            return True
    return False


@njit(cache=True, nogil=True)
def tcp_seq(buf, p):
    """The TCP sequence number of a PACKET row, or -1 where its header is not all there."""
    at = np.int64(p.data_off) + np.int64(p.l4_off)
    if np.int64(p.payload_off) - np.int64(p.l4_off) < 20 or at + 8 > len(buf):
        return np.int64(-1)
    return (np.int64(buf[at + 4]) << 24 | np.int64(buf[at + 5]) << 16
            | np.int64(buf[at + 6]) << 8 | np.int64(buf[at + 7]))


@njit(cache=True, nogil=True)
def table_contains(table, h):
    """Linear probe from h's home slot until h or an empty slot."""
    mask = np.uint64(len(table) - 1)
    i = h & mask
    while table[i] != 0:
        if table[i] == h:
            return True
        i = (i + np.uint64(1)) & mask
    return False


@njit(cache=True, nogil=True)
def table_insert(table, h):
    """Put h (known absent) in the first empty slot of its probe run; the table has one."""
    mask = np.uint64(len(table) - 1)
    i = h & mask
    while table[i] != 0:
        i = (i + np.uint64(1)) & mask
    table[i] = h


@njit(cache=True, nogil=True)
def table_remove(table, h):
    """Delete h by backward shift (later entries of the run move up): 1 if it was there."""
    mask = np.uint64(len(table) - 1)
    i = h & mask
    while table[i] != h:
        if table[i] == 0:
            return 0
        i = (i + np.uint64(1)) & mask
    j = i
    while True:
        j = (j + np.uint64(1)) & mask
        if table[j] == 0:
            break
        home = table[j] & mask
        # The entry at j may fill the hole at i only if its home slot is not in (i, j].
        if (i <= j and i < home <= j) or (i > j and (home > i or home <= j)):
            continue
        table[i] = table[j]
        i = j
    table[i] = 0
    return 1


@njit(cache=True, nogil=True)
def forget_flows(table, hashes):
    """Remove each hash of ``hashes`` from the table (ended conversations); returns how many."""
    removed = 0
    for k in range(len(hashes)):
        removed += table_remove(table, _nonzero(hashes[k]))
    return removed


@njit(cache=True, nogil=True)
def _syn_bits(syns, p):
    """SYN_FROM_* bits for p's flow from the cache of recent SYNs."""
    mask = np.uint64(len(syns) - 1)
    bits = 0
    h = directed_hash(p, True)
    if syns[h & mask] == h:
        bits |= SYN_FROM_SENDER
    h = directed_hash(p, False)
    if syns[h & mask] == h:
        bits |= SYN_FROM_RECEIVER
    return bits


@njit(cache=True, nogil=True)
def _opening(buf, p, syns, syn_seqs):
    """p carries its sender's first payload byte: the sender's SYN is cached with seq + 1."""
    mask = np.uint64(len(syns) - 1)
    h = directed_hash(p, True)
    seq = tcp_seq(buf, p)
    return (syns[h & mask] == h and seq >= 0
            and (np.int64(syn_seqs[h & mask]) + 1) % (np.int64(1) << 32) == seq)


@njit(cache=True, nogil=True, inline="always")
def _may_match(buf, start, size, first_byte, unprefixed_lengths):
    """Cheap gate before the rules: a prefix's first byte, or a length a rule without a
    prefix wants (0 in ``unprefixed_lengths``: any length)."""
    if size <= 0:
        return False
    if first_byte[buf[start]]:
        return True
    for n in unprefixed_lengths:
        if n == 0 or n == size:
            return True
    return False


@njit(cache=True, nogil=True)
def select_stream_packets(buf, packets, table, fill, max_fill, syns, syn_seqs, rules):
    """Mark the packets of flows that can carry Stratum. Returns (marks, hashes, fill, refused).

    A flow's selection starts at a payload that opens a JSON object or matches one of
    ``rules``. ``marks[i]`` holds SELECTED/NEW_FLOW/SYN_FROM_* bits (0: not for the
    collector), ``hashes[i]`` the flow's direction-free hash for selected packets (else 0).
    ``fill`` is the number of hashes in ``table`` before and after the call; at ``max_fill``
    (at most ``len(table) - 1``, so probes always end) new flows are still marked but not
    remembered, and ``refused`` counts them. ``syns`` (power-of-two length) caches recent
    SYNs, ``syn_seqs`` (same length) their sequence numbers.
    """
    n = len(packets)
    marks = np.zeros(n, np.uint8)
    hashes = np.zeros(n, np.uint64)
    limit = min(max_fill, len(table) - 1)
    syn_mask = np.uint64(len(syns) - 1)
    (prefix, prefix_len, length, flags, needle_lo, needle_hi, needles, needle_off, first_byte,
     unprefixed) = rules
    unprefixed_lengths = length[unprefixed]
    refused = 0
    for i in range(n):
        if i + PAYLOAD_AHEAD < n:  # a later row's first payload bytes: no wait for them
            q = packets[i + PAYLOAD_AHEAD]
            if q.proto == TCP and q.payload_len:
                prefetch(buf, np.int64(q.data_off) + np.int64(q.payload_off))
        p = packets[i]
        if p.status != STATUS_OK or p.proto != TCP:
            continue
        if p.tcp_flags & (TH_SYN | TH_ACK) == TH_SYN:
            d = directed_hash(p, True)
            syns[d & syn_mask] = d
            syn_seqs[d & syn_mask] = np.uint32(max(tcp_seq(buf, p), 0))
        h = canonical_hash(p)
        if table_contains(table, h):
            marks[i] = SELECTED
            hashes[i] = h
            continue
        if p.payload_len == 0:
            continue
        start = np.int64(p.data_off) + np.int64(p.payload_off)
        size = min(np.int64(p.payload_len), len(buf) - start)
        if not starts_json(buf, start, size):
            if not _may_match(buf, start, size, first_byte, unprefixed_lengths):
                continue
            # The rules, written out here: called per packet, a function taking the rule
            # arrays costs ~200 ns of reference counting, more than all the rest.
            hit = False
            for k in range(len(flags)):
                f = flags[k]
                m = prefix_len[k]
                if ((length[k] and size != length[k]) or size < m
                        or (m and prefix[k, 0] != buf[start])):
                    continue
                ok = True
                for j in range(1, m):
                    if buf[start + j] != prefix[k, j]:
                        ok = False
                        break
                if ok and f & RULE_WHOLE_FRAME:
                    ok = size >= 6 and 6 + (np.int64(buf[start + 3])
                                            | np.int64(buf[start + 4]) << 8
                                            | np.int64(buf[start + 5]) << 16) <= size
                j = needle_lo[k]
                while ok and j < needle_hi[k]:
                    ok = _contains(buf, start, size, needles, needle_off[j], needle_off[j + 1])
                    j += 1
                if ok and f & RULE_FIRST_PAYLOAD:
                    ok = _opening(buf, p, syns, syn_seqs)
                if ok and f & RULE_HIGH_ENTROPY:
                    ok = high_entropy(buf, start, size)
                if ok:
                    hit = True
                    break
            if not hit:
                continue
        marks[i] = SELECTED | NEW_FLOW | _syn_bits(syns, p)
        hashes[i] = h
        if fill < limit:
            table_insert(table, h)
            fill += 1
        else:
            refused += 1
    return marks, hashes, fill, refused
