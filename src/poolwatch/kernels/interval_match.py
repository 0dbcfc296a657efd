"""Who held this address (and port) at this time: interval matching for ``link.resolve`` (numba).

Addresses are the (hi, lo) ``uint64`` halves of ``records.addr_to_halves`` (IPv4 as
``::ffff:a.b.c.d``); prefix lengths are in that 128-bit space (an IPv4 /24 is a /120);
times are float seconds, intervals ``[start, end)`` (``end`` may be ``inf``).

Assignment index (built by ``link.resolve.AssignmentIndex`` with :func:`prefix_ids` and
:func:`group_rows`), three levels:

* groups, one per prefix length, longest first: group ``g`` has length ``group_plen[g]``
  and owns the distinct prefixes ``group_off[g]:group_off[g + 1]``;
* distinct prefixes (network address halves ``ukhi``, ``uklo``), sorted inside their
  group; prefix ``u`` owns the rows ``u_off[u]:u_off[u + 1]``;
* rows sorted by ``start`` inside their prefix: ``start``, ``end`` and ``order`` (the row's
  index in the caller's input). A row held for more than ``long_s`` seconds (or open) is
  *long*: prefix ``u``'s long rows are also listed at ``l_off[u]:l_off[u + 1]`` (``l_pos``
  their positions, ``l_start`` their starts, ``l_runmax`` the running max of their ends);
  ``runmax[j]`` is the largest ``end`` among the prefix's *short* rows up to ``j``.

Longest-prefix match in time, for one query (hi, lo, ts): for each group, longest first,
mask the query to the group's length and binary-search that prefix among the group's
prefixes. Short rows: binary-search the last row with ``start <= ts`` and walk back while
``runmax > ts`` (once every earlier short row ended at or before ``ts``, none can match; a
short row lasts at most ``long_s``, so the walk covers at most ``long_s`` of history), keeping
rows with ``end > ts``. Long rows: the same walk over the prefix's long list, so that one open
static row does not make every lookup of a busy address walk back to it. The first group
with a hit is the answer: all its hits are candidates.

Port blocks (CGNAT), also three levels: distinct public addresses (``pu_hi``, ``pu_lo``),
each owning ``pu_off[p]:pu_off[p + 1]`` port ranges ("slots": ``sl_low``..``sl_high``
sorted by low, ``sl_hmax`` the running max of ``sl_high`` inside the address), each owning
``sl_off[s]:sl_off[s + 1]`` blocks sorted by start (``b_start``, ``b_end``, ``b_runmax``,
``b_order``). A query address that is any block's public address is a CGNAT address: it
is resolved only through the blocks covering (port, ts), each translated to its private
address (``b_priv_hi``, ``b_priv_lo``) and matched as above at the same ``ts``. (Blocks
have no long list: the blocks of one slot follow one another, so ``b_runmax`` stays tight.)

Output pairs are ordered by observation, then block (sorted position), then assignment
(sorted position); ``_reference_interval_match`` gives the same pairs in the same order.
"""

from __future__ import annotations

import numpy as np
from numba import njit

_ZERO = np.uint64(0)
_ONE = np.uint64(1)
_ALL = ~np.uint64(0)
_MIX1 = np.uint64(0x9E3779B97F4A7C15)
_MIX2 = np.uint64(0xC2B2AE3D27D4EB4F)
_SMALL_RUN = 32


@njit(cache=True, nogil=True, inline="always")
def _mask64(bits):
    """The top ``bits`` bits of a uint64 set (bits <= 0: none, >= 64: all)."""
    if bits <= 0:
        return _ZERO
    if bits >= 64:
        return _ALL
    return ~((_ONE << np.uint64(64 - bits)) - _ONE)


# ---------------------------------------------------------------------------------------
# Index building
# ---------------------------------------------------------------------------------------
@njit(cache=True, nogil=True, inline="always")
def _hash(hi, lo, plen):
    h = (hi * _MIX1) ^ (lo * _MIX2) ^ (np.uint64(plen) * _MIX1)
    return h ^ (h >> np.uint64(29))


@njit(cache=True, nogil=True)
def prefix_ids(hi, lo, plen, ids):
    """A dense id per distinct prefix (network address of (hi, lo) cut to ``plen``, and
    ``plen``), numbered in first-seen order, written to ``ids`` (one per row).

    Returns per id: network hi, network lo, plen. Open addressing with linear probing; the
    table doubles at half load. Large outputs are the caller's: numpy allocates them on huge
    pages, which makes a 10 M-row build several times faster on some machines.
    """
    n = len(hi)
    size = 1 << 12
    table = np.full(size, -1, np.int64)
    uhi = np.empty(n, np.uint64)  # untouched memory costs nothing: sized for the worst case
    ulo = np.empty(n, np.uint64)
    upl = np.empty(n, np.uint8)
    nu = 0
    for i in range(n):
        p = np.int64(plen[i])
        h_ = hi[i] & _mask64(p)
        l_ = lo[i] & _mask64(p - 64)
        pl = np.uint8(p)
        if i > 0 and h_ == uhi[ids[i - 1]] and l_ == ulo[ids[i - 1]] and pl == upl[ids[i - 1]]:
            ids[i] = ids[i - 1]  # loaders write an address's rows together: skip the probe
            continue
        if 2 * (nu + 1) > size:
            size *= 2
            table = np.full(size, -1, np.int64)
            m = np.uint64(size - 1)
            for t in range(nu):
                s = _hash(uhi[t], ulo[t], upl[t]) & m
                while table[s] >= 0:
                    s = (s + _ONE) & m
                table[s] = t
        mask = np.uint64(size - 1)
        s = _hash(h_, l_, pl) & mask
        while True:
            t = table[s]
            if t < 0:
                table[s] = nu
                uhi[nu] = h_
                ulo[nu] = l_
                upl[nu] = pl
                ids[i] = nu
                nu += 1
                break
            if uhi[t] == h_ and ulo[t] == l_ and upl[t] == pl:
                ids[i] = t
                break
            s = (s + _ONE) & mask
    return uhi[:nu].copy(), ulo[:nu].copy(), upl[:nu].copy()


@njit(cache=True, nogil=True)
def _merge_sort(order, a, b, start):
    """Stable sort of order[a:b] by start[order[.]] (bottom-up merge sort)."""
    n = b - a
    buf = np.empty((2, n), np.int64)  # ping-pong: pass k reads row k % 2
    for x in range(n):
        buf[0, x] = order[a + x]
    r = 0
    width = 1
    while width < n:
        w = 1 - r
        for lo_ in range(0, n, 2 * width):
            mid = min(lo_ + width, n)
            hi_ = min(lo_ + 2 * width, n)
            x, y = lo_, mid
            for d in range(lo_, hi_):
                if y >= hi_ or (x < mid and start[buf[r, x]] <= start[buf[r, y]]):
                    buf[w, d] = buf[r, x]
                    x += 1
                else:
                    buf[w, d] = buf[r, y]
                    y += 1
        r = w
        width *= 2
    for x in range(n):
        order[a + x] = buf[r, x]


@njit(cache=True, nogil=True)
def group_rows(ids, rank, start, order):
    """Rows grouped by ``rank[ids[row]]`` (0..n_keys-1), sorted by start inside a group
    (stable: equal starts keep input order), written to ``order``. Returns the offsets of
    the groups (n_keys + 1)."""
    n = len(ids)
    n_keys = len(rank)
    off = np.zeros(n_keys + 1, np.int64)
    for i in range(n):
        off[rank[ids[i]] + 1] += 1
    for k in range(n_keys):
        off[k + 1] += off[k]
    pos = off[:-1].copy()
    for i in range(n):
        r = rank[ids[i]]
        order[pos[r]] = i
        pos[r] += 1
    for k in range(n_keys):
        a, b = off[k], off[k + 1]
        if b - a <= _SMALL_RUN:  # insertion sort: O(n) on rows already in time order
            for j in range(a + 1, b):
                row = order[j]
                s = start[row]
                m = j - 1
                while m >= a and start[order[m]] > s:
                    order[m + 1] = order[m]
                    m -= 1
                order[m + 1] = row
        else:
            sorted_ = True
            for j in range(a + 1, b):
                if start[order[j]] < start[order[j - 1]]:
                    sorted_ = False
                    break
            if not sorted_:
                _merge_sort(order, a, b, start)
    return off


@njit(cache=True, nogil=True)
def run_max(off, values, out):
    """Running max of ``values`` inside each run ``off[k]:off[k + 1]``, into ``out``."""
    for k in range(len(off) - 1):
        a, b = off[k], off[k + 1]
        if b <= a:
            continue
        best = values[a]
        for j in range(a, b):
            if values[j] > best:
                best = values[j]
            out[j] = best


# ---------------------------------------------------------------------------------------
# Matching
# ---------------------------------------------------------------------------------------
@njit(cache=True, nogil=True, inline="always")
def _find_key(khi, klo, lo_i, hi_i, qhi, qlo):
    """Index of (qhi, qlo) in the sorted keys [lo_i, hi_i), or -1."""
    stop = hi_i
    while lo_i < hi_i:
        mid = (lo_i + hi_i) >> 1
        kh = khi[mid]
        if kh < qhi or (kh == qhi and klo[mid] < qlo):
            lo_i = mid + 1
        else:
            hi_i = mid
    if lo_i < stop and khi[lo_i] == qhi and klo[lo_i] == qlo:
        return lo_i
    return -1


@njit(cache=True, nogil=True, inline="always")
def _last_at_or_before(values, lo_i, hi_i, x):
    """Last index in [lo_i, hi_i) with values <= x (values sorted), or lo_i - 1."""
    while lo_i < hi_i:
        mid = (lo_i + hi_i) >> 1
        if values[mid] <= x:
            lo_i = mid + 1
        else:
            hi_i = mid
    return lo_i - 1


@njit(cache=True, nogil=True)
def _grown(out, n, need):
    """``out`` (3 x capacity) with room for ``need`` columns, the first ``n`` kept."""
    if need <= out.shape[1]:
        return out
    bigger = np.empty((3, max(2 * out.shape[1], need)), np.int64)
    for r in range(3):  # (loops: a 2-D slice assignment takes seconds to compile)
        for x in range(n):
            bigger[r, x] = out[r, x]
    return bigger


@njit(cache=True, nogil=True)
def _lpm_one(group_plen, group_off, ukhi, uklo, u_off, start, end, runmax, long_s, l_off,
             l_start, l_pos, l_runmax, qhi, qlo, ts, memo, hits):
    """Sorted positions of the longest-prefix candidates of one query, ascending, into
    ``hits``. Returns their count, or minus the count when ``hits`` is too small for them.

    ``memo[g]`` is the prefix found in group g by the previous query (or -1): queries
    visited in address order often hit it again and skip the binary search."""
    cap = len(hits)
    for g in range(len(group_plen)):
        g0 = group_off[g]
        g1 = group_off[g + 1]
        p = np.int64(group_plen[g])
        mhi = qhi & _mask64(p)
        mlo = qlo & _mask64(p - 64)
        # Outside the group's key range: no prefix of this length contains the query.
        if mhi < ukhi[g0] or (mhi == ukhi[g0] and mlo < uklo[g0]):
            continue
        if mhi > ukhi[g1 - 1] or (mhi == ukhi[g1 - 1] and mlo > uklo[g1 - 1]):
            continue
        u = memo[g]
        if u < 0 or ukhi[u] != mhi or uklo[u] != mlo:
            u = _find_key(ukhi, uklo, g0, g1, mhi, mlo)
            if u < 0:
                continue
            memo[g] = u
        k = 0
        # Short rows (held at most long_s): walk back from the last start <= ts while a
        # short row so far may still be open (runmax counts short rows only).
        r0 = u_off[u]
        j = _last_at_or_before(start, r0, u_off[u + 1], ts)
        while j >= r0 and runmax[j] > ts:
            if end[j] > ts and end[j] - start[j] <= long_s:
                if k < cap:
                    hits[k] = j
                k += 1
            j -= 1
        # Long rows (open, static...): their own short list, the same walk. An open row
        # among a thousand sessions of one address cannot make every lookup walk them all.
        k0 = l_off[u]
        m = _last_at_or_before(l_start, k0, l_off[u + 1], ts)
        while m >= k0 and l_runmax[m] > ts:
            j = l_pos[m]
            if end[j] > ts:
                if k < cap:
                    hits[k] = j
                k += 1
            m -= 1
        if k > cap:
            return -k
        if k > 0:  # insertion sort of the few hits into ascending position
            for x in range(1, k):
                v = hits[x]
                y = x - 1
                while y >= 0 and hits[y] > v:
                    hits[y + 1] = hits[y]
                    y -= 1
                hits[y + 1] = v
            return k
    return 0


@njit(cache=True, nogil=True)
def _blocks_one(pu_hi, pu_lo, pu_off, sl_low, sl_high, sl_hmax, sl_off, b_start, b_end,
                b_runmax, qhi, qlo, port, ts, hits):
    """Sorted positions of the blocks of public address (qhi, qlo) covering (port, ts),
    ascending, into ``hits``. Returns -1 when the address is no block's public address,
    else their count, or minus the count minus 2 when ``hits`` is too small."""
    last = len(pu_hi) - 1
    if last < 0:
        return -1
    if qhi < pu_hi[0] or (qhi == pu_hi[0] and qlo < pu_lo[0]):
        return -1
    if qhi > pu_hi[last] or (qhi == pu_hi[last] and qlo > pu_lo[last]):
        return -1
    p = _find_key(pu_hi, pu_lo, 0, len(pu_hi), qhi, qlo)
    if p < 0:
        return -1
    cap = len(hits)
    s0 = pu_off[p]
    s = _last_at_or_before(sl_low, s0, pu_off[p + 1], port)
    k = 0
    while s >= s0 and sl_hmax[s] >= port:
        if sl_high[s] >= port:
            r0 = sl_off[s]
            j = _last_at_or_before(b_start, r0, sl_off[s + 1], ts)
            while j >= r0 and b_runmax[j] > ts:
                if b_end[j] > ts:
                    if k < cap:
                        hits[k] = j
                    k += 1
                j -= 1
        s -= 1
    if k > cap:
        return -k - 2
    for x in range(k // 2):  # the walk went backwards
        hits[x], hits[k - 1 - x] = hits[k - 1 - x], hits[x]
    return k


@njit(cache=True, nogil=True)
def lpm_pairs(group_plen, group_off, ukhi, uklo, u_off, start, end, runmax, long_s, l_off,
              l_start, l_pos, l_runmax, order, obs_hi, obs_lo, obs_ts):
    """Longest-prefix match in time of each observation, no CGNAT.

    Returns (obs index, assignment index) pairs; assignment indexes are ``order`` values.
    """
    n_obs = len(obs_hi)
    out = np.empty((3, n_obs + 16), np.int64)
    hits = np.empty(16, np.int64)
    memo = np.full(len(group_plen), -1, np.int64)
    n = 0
    for i in range(n_obs):
        k = _lpm_one(group_plen, group_off, ukhi, uklo, u_off, start, end, runmax, long_s,
                     l_off, l_start, l_pos, l_runmax, obs_hi[i], obs_lo[i], obs_ts[i], memo,
                     hits)
        if k < 0:
            hits = np.empty(-2 * k, np.int64)
            k = _lpm_one(group_plen, group_off, ukhi, uklo, u_off, start, end, runmax, long_s,
                         l_off, l_start, l_pos, l_runmax, obs_hi[i], obs_lo[i], obs_ts[i],
                         memo, hits)
        out = _grown(out, n, n + k)
        for x in range(k):
            out[0, n] = i
            out[1, n] = order[hits[x]]
            n += 1
    return out[0, :n].copy(), out[1, :n].copy()


@njit(cache=True, nogil=True)
def block_pairs(pu_hi, pu_lo, pu_off, sl_low, sl_high, sl_hmax, sl_off, b_start, b_end,
                b_runmax, b_order, obs_hi, obs_lo, obs_port, obs_ts):
    """Port blocks covering each observation's (address, port, ts).

    Returns (1 per observation whose address is any block's public address, else 0; pair
    obs indexes; pair block indexes as ``b_order`` values, in ascending sorted position).
    """
    n_obs = len(obs_hi)
    cgnat = np.zeros(n_obs, np.uint8)
    out = np.empty((3, 16), np.int64)
    hits = np.empty(16, np.int64)
    n = 0
    for i in range(n_obs):
        k = _blocks_one(pu_hi, pu_lo, pu_off, sl_low, sl_high, sl_hmax, sl_off, b_start, b_end,
                        b_runmax, obs_hi[i], obs_lo[i], obs_port[i], obs_ts[i], hits)
        if k < -1:
            hits = np.empty(-2 * k, np.int64)
            k = _blocks_one(pu_hi, pu_lo, pu_off, sl_low, sl_high, sl_hmax, sl_off, b_start,
                            b_end, b_runmax, obs_hi[i], obs_lo[i], obs_port[i], obs_ts[i], hits)
        if k < 0:
            continue
        cgnat[i] = 1
        out = _grown(out, n, n + k)
        for x in range(k):
            out[0, n] = i
            out[1, n] = b_order[hits[x]]
            n += 1
    return cgnat, out[0, :n].copy(), out[1, :n].copy()


@njit(cache=True, nogil=True)
def resolve_pairs(group_plen, group_off, ukhi, uklo, u_off, start, end, runmax, long_s, l_off,
                  l_start, l_pos, l_runmax, order, pu_hi, pu_lo, pu_off, sl_low, sl_high,
                  sl_hmax, sl_off, b_start, b_end, b_runmax, b_order, b_priv_hi, b_priv_lo,
                  obs_hi, obs_lo, obs_port, obs_ts, obs_id):
    """Candidate (obs, assignment, via block) pairs: CGNAT translation, then longest-prefix
    match in time. ``via`` is -1 for a direct match, else the block's ``b_order`` value.

    Observation ``v`` is the caller's observation ``obs_id[v]`` (a permutation of
    ``0..n-1``); pairs name observations by id and come out ordered by id. Passing the
    observations sorted by address (and their ids) keeps the index's memory in cache:
    several times faster on millions of rows.
    """
    n_obs = len(obs_hi)
    out = np.empty((3, n_obs + 16), np.int64)  # rows: observation id, position, via block
    hits = np.empty(16, np.int64)
    blocks = np.empty(16, np.int64)
    memo = np.full(len(group_plen), -1, np.int64)  # direct queries
    memo_via = np.full(len(group_plen), -1, np.int64)  # private addresses behind CGNAT
    n = 0
    in_order = True
    for v in range(n_obs):
        i = obs_id[v]
        if i != v:
            in_order = False
        ts = obs_ts[v]
        nb = _blocks_one(pu_hi, pu_lo, pu_off, sl_low, sl_high, sl_hmax, sl_off, b_start, b_end,
                         b_runmax, obs_hi[v], obs_lo[v], obs_port[v], ts, blocks)
        if nb < -1:
            blocks = np.empty(-2 * nb, np.int64)
            nb = _blocks_one(pu_hi, pu_lo, pu_off, sl_low, sl_high, sl_hmax, sl_off, b_start,
                             b_end, b_runmax, obs_hi[v], obs_lo[v], obs_port[v], ts, blocks)
        # A CGNAT address: each covering block's private address; else the address itself.
        n_queries = nb if nb >= 0 else 1
        for q in range(n_queries):
            if nb >= 0:
                b = blocks[q]
                qhi, qlo, via, mem = b_priv_hi[b], b_priv_lo[b], b_order[b], memo_via
            else:
                qhi, qlo, via, mem = obs_hi[v], obs_lo[v], np.int64(-1), memo
            k = _lpm_one(group_plen, group_off, ukhi, uklo, u_off, start, end, runmax, long_s,
                         l_off, l_start, l_pos, l_runmax, qhi, qlo, ts, mem, hits)
            if k < 0:
                hits = np.empty(-2 * k, np.int64)
                k = _lpm_one(group_plen, group_off, ukhi, uklo, u_off, start, end, runmax,
                             long_s, l_off, l_start, l_pos, l_runmax, qhi, qlo, ts, mem, hits)
            out = _grown(out, n, n + k)
            for x in range(k):
                out[0, n] = i
                out[1, n] = order[hits[x]]
                out[2, n] = via
                n += 1
    if in_order:
        return out[0, :n], out[1, :n], out[2, :n]
    # Back to id order: a counting sort (stable; an observation's pairs are contiguous and
    # in order already).
    pos = np.zeros(n_obs + 1, np.int64)
    for k in range(n):
        pos[out[0, k] + 1] += 1
    for i in range(n_obs):
        pos[i + 1] += pos[i]
    res = np.empty((3, n), np.int64)
    for k in range(n):
        d = pos[out[0, k]]
        pos[out[0, k]] = d + 1
        res[0, d] = out[0, k]
        res[1, d] = out[1, k]
        res[2, d] = out[2, k]
    return res[0], res[1], res[2]
