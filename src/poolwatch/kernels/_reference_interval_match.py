"""Plain-Python twin of ``kernels.interval_match``, written independently, for tests only.

Same signatures, same results (the same pairs in the same order). Addresses become one
128-bit Python integer; a prefix contains an address when their top ``plen`` bits agree.
Where the kernel binary-searches a prefix's rows by start and walks back bounded by
``runmax`` (with a separate list of long rows), the twin tests every row of the prefix (and
every slot and block of a CGNAT address): ``runmax``, the long-row lists and ``sl_hmax``
are accepted and ignored. Prefixes are found with ``np.searchsorted`` on the hi, then the lo
column; ids and grouping use a dict and ``sorted``.
"""

from __future__ import annotations

import numpy as np

_M64 = (1 << 64) - 1


def _net(value: int, plen: int) -> int:
    """``value`` (128 bits) with everything after the first ``plen`` bits cleared."""
    if plen <= 0:
        return 0
    shift = 128 - min(plen, 128)
    return (value >> shift) << shift


def prefix_ids(hi, lo, plen, ids):
    seen: dict[tuple[int, int, int], int] = {}
    for i in range(len(hi)):
        p = int(plen[i])
        net = _net((int(hi[i]) << 64) | int(lo[i]), p)
        ids[i] = seen.setdefault((net >> 64, net & _M64, p), len(seen))
    keys = list(seen)
    return (np.array([k[0] for k in keys], np.uint64),
            np.array([k[1] for k in keys], np.uint64), np.array([k[2] for k in keys], np.uint8))


def group_rows(ids, rank, start, order):
    n_keys = len(rank)
    order[:] = sorted(range(len(ids)), key=lambda i: (int(rank[ids[i]]), float(start[i]), i))
    counts = [0] * n_keys
    for i in range(len(ids)):
        counts[int(rank[ids[i]])] += 1
    off = [0]
    for c in counts:
        off.append(off[-1] + c)
    return np.array(off, np.int64)


def run_max(off, values, out):
    out[:] = values
    for k in range(len(off) - 1):
        a, b = int(off[k]), int(off[k + 1])
        for j in range(a + 1, b):
            out[j] = max(out[j - 1], values[j])


def _key_index(khi, klo, a: int, b: int, value: int) -> int:
    """Where the 128-bit ``value`` is among the sorted keys [a, b), or -1."""
    h, lo = np.uint64(value >> 64), np.uint64(value & _M64)
    a2 = a + int(np.searchsorted(khi[a:b], h, "left"))
    b2 = a + int(np.searchsorted(khi[a:b], h, "right"))
    j = a2 + int(np.searchsorted(klo[a2:b2], lo, "left"))
    return j if j < b2 and int(klo[j]) == int(lo) else -1


def _lpm(group_plen, group_off, ukhi, uklo, u_off, start, end, addr: int, ts: float):
    for g in range(len(group_plen)):
        u = _key_index(ukhi, uklo, int(group_off[g]), int(group_off[g + 1]),
                       _net(addr, int(group_plen[g])))
        if u < 0:
            continue
        hits = [j for j in range(int(u_off[u]), int(u_off[u + 1]))
                if float(start[j]) <= ts < float(end[j])]
        if hits:
            return hits
    return []


def _blocks(pu_hi, pu_lo, pu_off, sl_low, sl_high, sl_off, b_start, b_end, addr: int,
            port: int, ts: float):
    p = _key_index(pu_hi, pu_lo, 0, len(pu_hi), addr)
    if p < 0:
        return False, []
    hits = []
    for s in range(int(pu_off[p]), int(pu_off[p + 1])):
        if int(sl_low[s]) <= port <= int(sl_high[s]):
            hits += [j for j in range(int(sl_off[s]), int(sl_off[s + 1]))
                     if float(b_start[j]) <= ts < float(b_end[j])]
    return True, hits


def _addr(hi, lo, i: int) -> int:
    return (int(hi[i]) << 64) | int(lo[i])


def lpm_pairs(group_plen, group_off, ukhi, uklo, u_off, start, end, runmax, long_s, l_off,
              l_start, l_pos, l_runmax, order, obs_hi, obs_lo, obs_ts):
    obs, assign = [], []
    for i in range(len(obs_hi)):
        for j in _lpm(group_plen, group_off, ukhi, uklo, u_off, start, end,
                      _addr(obs_hi, obs_lo, i), float(obs_ts[i])):
            obs.append(i)
            assign.append(int(order[j]))
    return np.array(obs, np.int64), np.array(assign, np.int64)


def block_pairs(pu_hi, pu_lo, pu_off, sl_low, sl_high, sl_hmax, sl_off, b_start, b_end,
                b_runmax, b_order, obs_hi, obs_lo, obs_port, obs_ts):
    cgnat = np.zeros(len(obs_hi), np.uint8)
    obs, blocks = [], []
    for i in range(len(obs_hi)):
        is_cg, hits = _blocks(pu_hi, pu_lo, pu_off, sl_low, sl_high, sl_off, b_start, b_end,
                              _addr(obs_hi, obs_lo, i), int(obs_port[i]), float(obs_ts[i]))
        cgnat[i] = is_cg
        for j in hits:
            obs.append(i)
            blocks.append(int(b_order[j]))
    return cgnat, np.array(obs, np.int64), np.array(blocks, np.int64)


def resolve_pairs(group_plen, group_off, ukhi, uklo, u_off, start, end, runmax, long_s, l_off,
                  l_start, l_pos, l_runmax, order, pu_hi, pu_lo, pu_off, sl_low, sl_high,
                  sl_hmax, sl_off, b_start, b_end, b_runmax, b_order, b_priv_hi, b_priv_lo,
                  obs_hi, obs_lo, obs_port, obs_ts, obs_id):
    rows = []  # (id, assignment, via), observation by observation
    for i in range(len(obs_hi)):
        ts = float(obs_ts[i])
        is_cg, hits = _blocks(pu_hi, pu_lo, pu_off, sl_low, sl_high, sl_off, b_start, b_end,
                              _addr(obs_hi, obs_lo, i), int(obs_port[i]), ts)
        queries = ([(_addr(b_priv_hi, b_priv_lo, b), int(b_order[b])) for b in hits] if is_cg
                   else [(_addr(obs_hi, obs_lo, i), -1)])
        for addr, v in queries:
            for j in _lpm(group_plen, group_off, ukhi, uklo, u_off, start, end, addr, ts):
                rows.append((int(obs_id[i]), int(order[j]), v))
    rows.sort(key=lambda r: r[0])  # stable: an observation's pairs keep their order
    return (np.array([r[0] for r in rows], np.int64), np.array([r[1] for r in rows], np.int64),
            np.array([r[2] for r in rows], np.int64))
