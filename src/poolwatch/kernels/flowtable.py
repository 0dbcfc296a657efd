"""Bidirectional flow aggregation over decoded packets (numba).

The table is a dense ``FLOW`` array (one row per open flow) plus an open-addressing index of
row numbers keyed by a direction-free hash of (vlan, inner_vlan, proto, both endpoints).
Rows are never deleted one by one: a sweep closes idle flows and compacts the dense array,
then rebuilds the index, so there are no tombstones.

Expiry is decided by packet timestamps only, at fixed points of capture time (every
``sweep_ns``), so the result does not depend on how packets were split into batches.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from .memory import prefetch

# Return codes of aggregate().
DONE = 0
NEED_SWEEP = 1  # the next packet crosses a sweep point: call sweep() with its timestamp
TABLE_FULL = 2  # no room for a new flow: grow or evict, then call again
OUT_FULL = 3  # the output array of closed flows is full: drain it, then call again

END_EOF = 0
END_IDLE = 1
END_ACTIVE = 2
END_EVICTED = 3

STATUS_OK = 0
AHEAD = 16  # rows between a packet's index prefetch and its use (its flow row's: 8)
RING = 32  # hashes computed ahead, kept for their use (a power of two above AHEAD)
TCP = 6
SYN_ACK = 0x12


@njit(cache=True, nogil=True, inline="always")
def _mix(h, v):
    h ^= v + np.uint64(0x9E3779B97F4A7C15) + (h << np.uint64(6)) + (h >> np.uint64(2))
    return h


@njit(cache=True, nogil=True)
def flow_hash(vlan, inner, proto, a_hi, a_lo, a_port, b_hi, b_lo, b_port):
    """Hash of a flow key with endpoints (a, b) already in canonical order."""
    h = np.uint64(vlan) << np.uint64(32) | np.uint64(inner) << np.uint64(8) | np.uint64(proto)
    h = _mix(h, a_hi)
    h = _mix(h, a_lo)
    h = _mix(h, b_hi)
    h = _mix(h, b_lo)
    h = _mix(h, np.uint64(a_port) << np.uint64(16) | np.uint64(b_port))
    h ^= h >> np.uint64(33)
    h *= np.uint64(0xFF51AFD7ED558CCD)
    h ^= h >> np.uint64(33)
    return h


@njit(cache=True, nogil=True, inline="always")
def _less(x_hi, x_lo, x_port, y_hi, y_lo, y_port):
    if x_hi != y_hi:
        return x_hi < y_hi
    if x_lo != y_lo:
        return x_lo < y_lo
    return x_port < y_port


@njit(cache=True, nogil=True)
def row_hash(f):
    """Hash of a FLOW row, direction-free."""
    if _less(f.dst_hi, f.dst_lo, f.dest_port, f.src_hi, f.src_lo, f.src_port):
        return flow_hash(f.vlan, f.inner_vlan, f.proto, f.dst_hi, f.dst_lo, f.dest_port,
                         f.src_hi, f.src_lo, f.src_port)
    return flow_hash(f.vlan, f.inner_vlan, f.proto, f.src_hi, f.src_lo, f.src_port,
                     f.dst_hi, f.dst_lo, f.dest_port)


@njit(cache=True, nogil=True)
def rebuild_index(flows, n_flows, index):
    """Re-insert rows 0..n_flows of the dense table into an emptied index."""
    index[:] = -1
    mask = np.uint64(len(index) - 1)
    for f in range(n_flows):
        slot = row_hash(flows[f]) & mask
        while index[slot] >= 0:
            slot = (slot + np.uint64(1)) & mask
        index[slot] = f


@njit(cache=True, nogil=True)
def _start(f, p, ts):
    """Open row ``f`` with packet ``p`` (its sender is src unless it is a SYN-ACK)."""
    flip = p.proto == TCP and (p.tcp_flags & SYN_ACK) == SYN_ACK
    f.vlan, f.inner_vlan, f.proto = p.vlan, p.inner_vlan, p.proto
    if flip:
        f.src_hi, f.src_lo, f.src_port = p.dst_hi, p.dst_lo, p.dport
        f.dst_hi, f.dst_lo, f.dest_port = p.src_hi, p.src_lo, p.sport
    else:
        f.src_hi, f.src_lo, f.src_port = p.src_hi, p.src_lo, p.sport
        f.dst_hi, f.dst_lo, f.dest_port = p.dst_hi, p.dst_lo, p.dport
    f.first_ts_ns = ts
    f.last_ts_ns = ts
    f.pkts_toserver = f.pkts_toclient = f.bytes_toserver = f.bytes_toclient = 0
    f.tcp_flags_toserver = f.tcp_flags_toclient = 0
    f.end_reason = END_EOF


@njit(cache=True, nogil=True)
def _count(f, p, ts):
    if p.src_hi == f.src_hi and p.src_lo == f.src_lo and p.sport == f.src_port:
        f.pkts_toserver += 1
        f.bytes_toserver += p.ip_len
        f.tcp_flags_toserver |= p.tcp_flags
    else:
        f.pkts_toclient += 1
        f.bytes_toclient += p.ip_len
        f.tcp_flags_toclient |= p.tcp_flags
    f.first_ts_ns = min(f.first_ts_ns, ts)
    f.last_ts_ns = max(f.last_ts_ns, ts)


@njit(cache=True, nogil=True)
def _same(f, p):
    if f.vlan != p.vlan or f.inner_vlan != p.inner_vlan or f.proto != p.proto:
        return False
    if f.src_hi == p.src_hi and f.src_lo == p.src_lo and f.src_port == p.sport:
        return f.dst_hi == p.dst_hi and f.dst_lo == p.dst_lo and f.dest_port == p.dport
    return (f.src_hi == p.dst_hi and f.src_lo == p.dst_lo and f.src_port == p.dport
            and f.dst_hi == p.src_hi and f.dst_lo == p.src_lo and f.dest_port == p.sport)


@njit(cache=True, nogil=True, inline="always")
def packet_hash(p):
    """The direction-free hash of a PACKET row's flow (as ``row_hash`` of its FLOW row)."""
    if _less(p.dst_hi, p.dst_lo, p.dport, p.src_hi, p.src_lo, p.sport):
        return flow_hash(p.vlan, p.inner_vlan, p.proto, p.dst_hi, p.dst_lo, p.dport,
                         p.src_hi, p.src_lo, p.sport)
    return flow_hash(p.vlan, p.inner_vlan, p.proto, p.src_hi, p.src_lo, p.sport,
                     p.dst_hi, p.dst_lo, p.dport)


@njit(cache=True, nogil=True)
def aggregate(packets, start, flows, n_flows, index, out, n_out, state, idle_ns, active_ns, sweep_ns):
    """Add packets[start:] to the table. Returns (code, next packet, n_flows, n_out).

    ``state`` holds [next sweep point in ns, 1 once a sweep point is set].
    """
    mask = np.uint64(len(index) - 1)
    n = len(packets)
    # Each packet's index slot and flow row are random reads of tables far larger than the
    # cache: the hashes are computed AHEAD rows early into a ring, the index slot prefetched
    # then, and the flow row it points to prefetched AHEAD / 2 rows early (kernels.memory).
    ring = np.zeros(RING, np.uint64)
    for j in range(start, min(start + AHEAD, n)):
        ring[j % RING] = packet_hash(packets[j])
        prefetch(index, np.int64(ring[j % RING] & mask))
    for i in range(start, n):
        j = i + AHEAD
        if j < n:
            hj = packet_hash(packets[j])
            ring[j % RING] = hj
            prefetch(index, np.int64(hj & mask))
        k = i + AHEAD // 2
        if k < n:
            row = index[ring[k % RING] & mask]
            if row >= 0:
                prefetch(flows, row)
        p = packets[i]
        if p.status != STATUS_OK:
            continue
        ts = p.ts_ns
        if state[1] == 0:
            state[0], state[1] = ts + sweep_ns, 1
        elif ts >= state[0]:
            return NEED_SWEEP, i, n_flows, n_out
        if n_out == len(out):
            return OUT_FULL, i, n_flows, n_out
        h = ring[i % RING]
        slot = h & mask
        while index[slot] >= 0 and not _same(flows[index[slot]], p):
            slot = (slot + np.uint64(1)) & mask
        if index[slot] < 0:
            if n_flows == len(flows):
                return TABLE_FULL, i, n_flows, n_out
            index[slot] = n_flows
            _start(flows[n_flows], p, ts)
            n_flows += 1
        f = flows[index[slot]]
        if ts - f.last_ts_ns > idle_ns or ts - f.first_ts_ns > active_ns:
            out[n_out] = f
            out[n_out].end_reason = END_IDLE if ts - f.last_ts_ns > idle_ns else END_ACTIVE
            n_out += 1
            _start(f, p, ts)
        _count(f, p, ts)
    return DONE, len(packets), n_flows, n_out


@njit(cache=True, nogil=True)
def close_where(flows, n_flows, index, close, reason, out, n_out):
    """Move rows with ``close[f]`` to ``out`` (with ``reason``), compact, rebuild the index.

    ``out`` must have room for every closed row. Returns (n_flows, n_out).
    """
    keep = 0
    for f in range(n_flows):
        if close[f]:
            out[n_out] = flows[f]
            out[n_out].end_reason = reason
            n_out += 1
        else:
            if keep != f:
                flows[keep] = flows[f]
            keep += 1
    rebuild_index(flows, keep, index)
    return keep, n_out


@njit(cache=True, nogil=True)
def idle_mask(flows, n_flows, now_ns, idle_ns):
    """Rows with no packet for more than idle_ns before now_ns."""
    m = np.zeros(n_flows, np.bool_)
    for f in range(n_flows):
        m[f] = now_ns - flows[f].last_ts_ns > idle_ns
    return m
