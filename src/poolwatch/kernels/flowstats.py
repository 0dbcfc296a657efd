"""Per-flow timing and size statistics of TCP flows, for the behaviour model (numba).

The flow table (``kernels.flowtable``) keeps counts and first/last times only; the behaviour
model (``detect.behaviour``) needs the *shape* of a conversation: how big each side's
messages are, how regularly they come, which ones answer the other side and which ones
arrive unasked. This kernel keeps that, per TCP flow, in bounded arrays updated one batch at
a time (no Python per packet).

Layout (``capacity`` rows, dense, like ``kernels.flowtable``): an open-addressing ``index``
(power of two slots of ``[hash, row]``, row -1 empty: one cache line per probe) maps a
direction-free flow hash to a row; ``keys[r]`` is the row's
hash; ``ends[r]`` its endpoints ``(a_hi, a_lo, a_port, b_hi, b_lo, b_port)`` with ``a`` the
lower endpoint (``detect.records.flow_key`` order); ``ints[r, I_*]`` and ``flts[r, F_*]``
hold scalars; ``hist[r, H_*, d, bin]`` size histograms; ``hits[r, d, coin]`` block-time hits.
Rows are never deleted one by one: :func:`close_rows` compacts and rebuilds the index.

Directions are canonical: ``d = 0`` is a packet sent by endpoint ``a``, ``d = 1`` by ``b``.
Which side is the client is decided later (``ints[r, I_CLIENT]`` records what the SYN cache
knew when the row opened: 1 = ``a``, 2 = ``b``, 0 = no handshake seen).

Only TCP packets with a payload touch a row; the payload size is taken from the IP header
(``ip_len - (payload_off - l3_off)``), so captures cut by a snap length still measure the
sizes sent. SYN and SYN-ACK segments only fill a small direct-mapped cache of directed
hashes (a SYN flood cannot fill the table).

A *burst* is a run of payload packets of one direction: a packet starts a new burst in its
direction when more than ``burst_gap_ns`` passed since that direction's previous payload
packet, or when the other direction sent payload in between. A burst that starts within
``reply_ns`` of the start of an unanswered burst of the other direction is an *answer*
(and that burst counts as *answered*); any other burst is *unsolicited* (for the pool's
side: job pushes). Each unsolicited burst is checked against the block-time series
(``block_ts`` sorted per coin, coin ``c`` is ``block_ts[block_off[c]:block_off[c+1]]``): a hit
for coin ``c`` when the latest block at or before the burst start is at most ``block_tol_ns``
earlier. A burst's size enters the sums and histograms when the next burst of its
direction starts (the burst in progress is not counted).
"""

from __future__ import annotations

import numpy as np
from numba import njit

from .flowtable import _less, flow_hash
from .prefilter import _nonzero
from .prefilter import directed_hash as _directed

# Return codes of update().
DONE = 0
NEED_SWEEP = 1  # the next packet crosses a sweep point: expire idle rows, then call again
TABLE_FULL = 2  # no free row for a new flow: grow or evict, then call again

STATUS_OK = 0
TCP = 6
TH_SYN = 0x02
TH_ACK = 0x10

# Columns of ``ints`` (int64). Per-direction columns come in pairs: column + d.
I_VLAN = 0
I_INNER = 1
I_CLIENT = 2  # 0 unknown, 1 endpoint a opened the connection, 2 endpoint b did
I_FIRST = 3  # first payload packet, ns
I_LAST = 4  # last payload packet, ns
I_NPAY = 5  # +d: payload packets
I_BYTES = 7  # +d: payload bytes
I_LASTPAY = 9  # +d: time of the last payload packet (-1: none yet)
I_BSTART = 11  # +d: start of the burst in progress (-1: none yet)
I_BSIZE = 13  # +d: bytes of the burst in progress
I_BKIND = 15  # +d: the burst in progress is 1 an answer, 2 unsolicited
I_BANSWERED = 17  # +d: the burst in progress has been answered by the other side
I_NBURST = 19  # +d: bursts started
I_NDONE = 21  # +d: bursts completed (sizes counted)
I_NANSWERED = 23  # +d: bursts of d answered by the other side
I_NANSWER = 25  # +d: bursts of d that are answers
I_NUNSOL = 27  # +d: unsolicited bursts of d
I_LASTUNSOL = 29  # +d: start of the last unsolicited burst (-1: none)
I_HEAD = 31  # +d: first bytes of d's first payload packet, see head_bytes (-1: none yet)
NI = 33

# Columns of ``flts`` (float64, seconds and bytes).
F_SSIZE = 0  # +d: sum of completed burst sizes
F_SSIZE2 = 2  # +d: sum of their squares
F_SGAP = 4  # +d: sum of gaps between burst starts, s
F_SGAP2 = 6  # +d: sum of squared gaps
F_SUGAP = 8  # +d: sum of gaps between unsolicited burst starts, s
F_SUGAP2 = 10  # +d
NF = 12

# Histograms: hist[r, H_ALL, d, b] sizes of completed bursts; hist[r, H_ANSWER, d, b] sizes of
# completed answer bursts. Bin b holds sizes [b * BIN_BYTES, (b + 1) * BIN_BYTES); larger
# bursts are in no bin (they count in the totals only). Counts saturate at 65535.
H_ALL = 0
H_ANSWER = 1
N_BINS = 32
BIN_BYTES = 16
MAX_COINS = 4

# params (int64): burst gap, reply window, block tolerance (ns), number of coins.
P_BURST_GAP = 0
P_REPLY = 1
P_BLOCK_TOL = 2
P_COINS = 3


def allocate(capacity: int):
    """Empty state for ``capacity`` rows: (index, keys, ends, ints, flts, hist, hits)."""
    size = 1 << int(np.ceil(np.log2(max(2 * capacity, 16))))
    return (np.full((size, 2), -1, np.int64), np.zeros(capacity, np.uint64),
            np.zeros((capacity, 6), np.uint64), np.zeros((capacity, NI), np.int64),
            np.zeros((capacity, NF), np.float64), np.zeros((capacity, 2, 2, N_BINS), np.uint16),
            np.zeros((capacity, 2, MAX_COINS), np.int32))


@njit(cache=True, nogil=True)
def rebuild_index(keys, n_rows, index):
    """Re-insert rows 0..n_rows into an emptied index (slot: [hash as int64, row])."""
    index[:, :] = -1
    mask = np.uint64(len(index) - 1)
    for r in range(n_rows):
        slot = keys[r] & mask
        while index[slot, 1] >= 0:
            slot = (slot + np.uint64(1)) & mask
        index[slot, 0] = np.int64(keys[r])
        index[slot, 1] = r


@njit(cache=True, nogil=True, inline="always")
def _bin_add(hist, r, kind, d, size):
    b = size // BIN_BYTES
    if b < N_BINS and hist[r, kind, d, b] < 65535:
        hist[r, kind, d, b] += 1


@njit(cache=True, nogil=True)
def _finish_burst(ints, flts, hist, r, d):
    """Count the burst in progress of direction d (its size is final)."""
    size = ints[r, I_BSIZE + d]
    ints[r, I_NDONE + d] += 1
    flts[r, F_SSIZE + d] += size
    flts[r, F_SSIZE2 + d] += float(size) * float(size)
    _bin_add(hist, r, H_ALL, d, size)
    if ints[r, I_BKIND + d] == 1:
        _bin_add(hist, r, H_ANSWER, d, size)


@njit(cache=True, nogil=True)
def _block_hit(block_ts, lo, hi, ts, tol):
    """The latest block of block_ts[lo:hi] at or before ts is at most tol earlier."""
    if hi <= lo or block_ts[lo] > ts:
        return False
    while hi - lo > 1:  # invariant: block_ts[lo] <= ts, and block_ts[hi] > ts or hi is the end
        mid = (lo + hi) // 2
        if block_ts[mid] <= ts:
            lo = mid
        else:
            hi = mid
    return ts - block_ts[lo] <= tol


@njit(cache=True, nogil=True)
def _new_burst(ints, flts, hist, hits, r, d, ts, params, block_ts, block_off):
    o = 1 - d
    if ints[r, I_BSTART + d] >= 0:
        _finish_burst(ints, flts, hist, r, d)
        gap = (ts - ints[r, I_BSTART + d]) * 1e-9
        flts[r, F_SGAP + d] += gap
        flts[r, F_SGAP2 + d] += gap * gap
    ints[r, I_NBURST + d] += 1
    ints[r, I_BSTART + d] = ts
    ints[r, I_BSIZE + d] = 0
    ints[r, I_BANSWERED + d] = 0
    other = ints[r, I_BSTART + o]
    if other >= 0 and ints[r, I_BANSWERED + o] == 0 and ts - other <= params[P_REPLY]:
        ints[r, I_BANSWERED + o] = 1
        ints[r, I_NANSWERED + o] += 1
        ints[r, I_BKIND + d] = 1
        ints[r, I_NANSWER + d] += 1
    else:
        ints[r, I_BKIND + d] = 2
        ints[r, I_NUNSOL + d] += 1
        last = ints[r, I_LASTUNSOL + d]
        if last >= 0:
            gap = (ts - last) * 1e-9
            flts[r, F_SUGAP + d] += gap
            flts[r, F_SUGAP2 + d] += gap * gap
        ints[r, I_LASTUNSOL + d] = ts
        for c in range(params[P_COINS]):
            if _block_hit(block_ts, block_off[c], block_off[c + 1], ts, params[P_BLOCK_TOL]):
                hits[r, d, c] += 1


@njit(cache=True, nogil=True)
def head_bytes(buf, p):
    """Up to the first 3 captured payload bytes of a packet, packed as
    ``(count << 24) | b0 << 16 | b1 << 8 | b2``: what a connection opens with (a TLS record
    starts 0x16 0x03) without keeping payload per flow. 0 when none were captured."""
    begin = np.int64(p.data_off) + np.int64(p.payload_off)
    n = min(np.int64(p.payload_len), np.int64(3), np.int64(len(buf)) - begin)
    value = np.int64(0)
    for k in range(3):
        value = value << 8
        if k < n:
            value |= np.int64(buf[begin + k])
    return (max(n, np.int64(0)) << 24) | value


@njit(cache=True, nogil=True)
def update(buf, packets, start, index, keys, ends, ints, flts, hist, hits, n_rows, syns, state,
           sweep_ns, params, block_ts, block_off):
    """Add packets[start:] (bytes in ``buf``) to the table. Returns (code, next packet,
    n_rows).

    ``state`` holds [next sweep point in ns, 1 once a sweep point is set] (as the flow
    table's). ``syns`` (power-of-two length) is the direct-mapped cache of directed hashes of
    recent SYNs (the sender's direction) and SYN-ACKs (the receiver's direction).
    """
    mask = np.uint64(len(index) - 1)
    syn_mask = np.uint64(len(syns) - 1)
    for i in range(start, len(packets)):
        p = packets[i]
        if p.status != STATUS_OK or p.proto != TCP:
            continue
        flags = p.tcp_flags
        if flags & TH_SYN:
            # SYN: the sender opens; SYN-ACK: the receiver did.
            h = _directed(p, (flags & TH_ACK) == 0)
            syns[h & syn_mask] = h
        size = np.int64(p.ip_len) - (np.int64(p.payload_off) - np.int64(p.l3_off))
        if size <= 0:
            continue
        ts = p.ts_ns
        if state[1] == 0:
            state[0], state[1] = ts + sweep_ns, 1
        elif ts >= state[0]:
            return NEED_SWEEP, i, n_rows
        a_first = not _less(p.dst_hi, p.dst_lo, p.dport, p.src_hi, p.src_lo, p.sport)
        if a_first:
            h = flow_hash(p.vlan, p.inner_vlan, p.proto, p.src_hi, p.src_lo, p.sport,
                          p.dst_hi, p.dst_lo, p.dport)
        else:
            h = flow_hash(p.vlan, p.inner_vlan, p.proto, p.dst_hi, p.dst_lo, p.dport,
                          p.src_hi, p.src_lo, p.sport)
        h = _nonzero(h)
        slot = h & mask
        hk = np.int64(h)
        while index[slot, 1] >= 0 and index[slot, 0] != hk:
            slot = (slot + np.uint64(1)) & mask
        r = index[slot, 1]
        if r < 0:
            if n_rows == len(keys):
                return TABLE_FULL, i, n_rows
            r = n_rows
            n_rows += 1
            index[slot, 0] = hk
            index[slot, 1] = r
            keys[r] = h
            if a_first:
                ends[r, 0], ends[r, 1], ends[r, 2] = p.src_hi, p.src_lo, p.sport
                ends[r, 3], ends[r, 4], ends[r, 5] = p.dst_hi, p.dst_lo, p.dport
            else:
                ends[r, 0], ends[r, 1], ends[r, 2] = p.dst_hi, p.dst_lo, p.dport
                ends[r, 3], ends[r, 4], ends[r, 5] = p.src_hi, p.src_lo, p.sport
            ints[r, :] = 0
            flts[r, :] = 0.0
            hist[r, :, :, :] = 0
            hits[r, :, :] = 0
            for c in (I_LASTPAY, I_BSTART, I_LASTUNSOL, I_HEAD):
                ints[r, c] = -1
                ints[r, c + 1] = -1
            ints[r, I_VLAN] = p.vlan
            ints[r, I_INNER] = p.inner_vlan
            ints[r, I_FIRST] = ts
            hs = _directed(p, True)
            hr = _directed(p, False)
            if syns[hs & syn_mask] == hs:  # the sender opened the connection
                ints[r, I_CLIENT] = 1 if a_first else 2
            elif syns[hr & syn_mask] == hr:
                ints[r, I_CLIENT] = 2 if a_first else 1
        d = 0 if a_first else 1
        o = 1 - d
        ints[r, I_FIRST] = min(ints[r, I_FIRST], ts)
        ints[r, I_LAST] = max(ints[r, I_LAST], ts)
        last = ints[r, I_LASTPAY + d]
        if last < 0 or ts - last > params[P_BURST_GAP] or ints[r, I_LASTPAY + o] > last:
            _new_burst(ints, flts, hist, hits, r, d, ts, params, block_ts, block_off)
        if ints[r, I_NPAY + d] == 0:
            ints[r, I_HEAD + d] = head_bytes(buf, p)
        ints[r, I_NPAY + d] += 1
        ints[r, I_BYTES + d] += size
        ints[r, I_BSIZE + d] += size
        ints[r, I_LASTPAY + d] = ts
    return DONE, len(packets), n_rows


@njit(cache=True, nogil=True)
def close_rows(close, index, keys, ends, ints, flts, hist, hits, n_rows):
    """Drop rows with ``close[r]``, compact the rest in order, rebuild the index.

    Returns the new row count. The caller reads the closed rows before calling this.
    """
    keep = 0
    for r in range(n_rows):
        if close[r]:
            continue
        if keep != r:
            keys[keep] = keys[r]
            ends[keep, :] = ends[r, :]
            ints[keep, :] = ints[r, :]
            flts[keep, :] = flts[r, :]
            hist[keep, :, :, :] = hist[r, :, :, :]
            hits[keep, :, :] = hits[r, :, :]
        keep += 1
    rebuild_index(keys, keep, index)
    return keep
