"""Pick the few packets worth reassembling: TCP flows that speak JSON (Stratum's JSON-RPC).

Stratum v1 (and its JSON-RPC relatives) sends one JSON object per line, so a segment that
starts a message starts with ``{"`` (whitespace allowed around the brace).
:func:`select_stream_packets` marks such segments and remembers their flow in ``table``;
from then on every TCP packet of that flow is marked
(data, and the bare FIN/RST/ACK segments the reassembler needs to see a close). Everything
else (HTTP, TLS, bulk transfers) stays in numpy and never costs Python time.

``table`` is an open-addressing set of direction-free flow hashes (``uint64``, 0 = empty,
capacity a power of two, linear probing). Its size is fixed, so its memory is bounded: when
``fill`` reaches ``max_fill`` new flows are refused and counted, and the caller frees slots
with :func:`forget_flows` when conversations end (backward-shift deletion: no tombstones).

``syns`` is a direct-mapped cache of *directed* hashes of recent SYN-without-ACK segments.
A flow's SYN comes before its first JSON payload, so it is never selected itself; the cache
lets the packet that starts a flow's selection say which side opened the connection.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from .flowtable import _less, flow_hash

# Bits of the per-packet ``marks`` returned by select_stream_packets.
SELECTED = 1  # hand this packet to the stream collector
NEW_FLOW = 2  # its payload starts the flow's selection (the flow was not in the table)
SYN_FROM_SENDER = 4  # a SYN without ACK was recently seen from this packet's sender
SYN_FROM_RECEIVER = 8  # ... from this packet's receiver

STATUS_OK = 0
TCP = 6
TH_SYN = 0x02
TH_ACK = 0x10
OPEN_BRACE = 0x7B
QUOTE = 0x22


@njit(cache=True, nogil=True, inline="always")
def _nonzero(h):
    """0 marks an empty slot, so no hash may be 0."""
    return h if h != np.uint64(0) else np.uint64(1)


@njit(cache=True, nogil=True)
def canonical_hash(p):
    """Direction-free hash of a PACKET row's flow (both directions give the same value)."""
    if _less(p.dst_hi, p.dst_lo, p.dport, p.src_hi, p.src_lo, p.sport):
        h = flow_hash(p.vlan, p.inner_vlan, p.proto, p.dst_hi, p.dst_lo, p.dport,
                      p.src_hi, p.src_lo, p.sport)
    else:
        h = flow_hash(p.vlan, p.inner_vlan, p.proto, p.src_hi, p.src_lo, p.sport,
                      p.dst_hi, p.dst_lo, p.dport)
    return _nonzero(h)


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
def select_stream_packets(buf, packets, table, fill, max_fill, syns):
    """Mark the packets of JSON-speaking TCP flows. Returns (marks, hashes, fill, refused).

    ``marks[i]`` holds SELECTED/NEW_FLOW/SYN_FROM_* bits (0: not for the collector),
    ``hashes[i]`` the flow's direction-free hash for selected packets (else 0). ``fill`` is
    the number of hashes in ``table`` before and after the call; at ``max_fill`` (at most
    ``len(table) - 1``, so probes always end) new flows are still marked but not remembered,
    and ``refused`` counts them. ``syns`` (power-of-two length) caches recent SYNs.
    """
    n = len(packets)
    marks = np.zeros(n, np.uint8)
    hashes = np.zeros(n, np.uint64)
    limit = min(max_fill, len(table) - 1)
    syn_mask = np.uint64(len(syns) - 1)
    refused = 0
    for i in range(n):
        p = packets[i]
        if p.status != STATUS_OK or p.proto != TCP:
            continue
        if p.tcp_flags & (TH_SYN | TH_ACK) == TH_SYN:
            d = directed_hash(p, True)
            syns[d & syn_mask] = d
        h = canonical_hash(p)
        if table_contains(table, h):
            marks[i] = SELECTED
            hashes[i] = h
            continue
        start = np.int64(p.data_off) + np.int64(p.payload_off)
        if p.payload_len == 0 or not starts_json(buf, start, np.int64(p.payload_len)):
            continue
        marks[i] = SELECTED | NEW_FLOW | _syn_bits(syns, p)
        hashes[i] = h
        if fill < limit:
            table_insert(table, h)
            fill += 1
        else:
            refused += 1
    return marks, hashes, fill, refused
