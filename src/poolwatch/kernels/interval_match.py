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
address (``b_priv_hi``, ``b_priv_lo``) and matched as above at the same ``ts``.

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
    table doubles at half load. Output arrays are the caller's: numpy allocates large arrays
    on huge pages, which makes a 10 M-row build several times faster on some machines.
    """
    n = len(hi)
    size = 1 << 12
    table = np.full(size, -1, np.int64)
    cap = 1 << 10
    uhi = np.empty(cap, np.uint64)
    ulo = np.empty(cap, np.uint64)
    upl = np.empty(cap, np.uint8)
    nu = 0
    p_hi = _ZERO
    p_lo = _ZERO
    p_pl = np.uint8(0)
    for i in range(n):
        p = np.int64(plen[i])
        h_ = hi[i] & _mask64(p)
        l_ = lo[i] & _mask64(p - 64)
        pl = np.uint8(p)
        if i > 0 and h_ == p_hi and l_ == p_lo and pl == p_pl:
            ids[i] = ids[i - 1]  # loaders write an address's rows together: skip the probe
            continue
        p_hi, p_lo, p_pl = h_, l_, pl
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
                if nu == cap:
                    cap *= 2
                    uhi = _grow_to(uhi, nu, cap)
                    ulo = _grow_to(ulo, nu, cap)
                    upl = _grow_to(upl, nu, cap)
                table[s] = nu
                uhi[nu], ulo[nu], upl[nu] = h_, l_, pl
                ids[i] = nu
                nu += 1
                break
            if uhi[t] == h_ and ulo[t] == l_ and upl[t] == pl:
                ids[i] = t
                break
            s = (s + _ONE) & mask
    return uhi[:nu].copy(), ulo[:nu].copy(), upl[:nu].copy()


@njit(cache=True, nogil=True)
def _grow_to(a, n, cap):
    b = np.empty(cap, a.dtype)
    b[:n] = a[:n]
    return b


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
                seg = order[a:b].copy()
                keys = np.empty(b - a, np.float64)
                for j in range(b - a):
                    keys[j] = start[seg[j]]
                perm = np.argsort(keys, kind="mergesort")
                for j in range(b - a):
                    order[a + j] = seg[perm[j]]
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
def _grow(a, n):
    b = np.empty(max(2 * len(a), 16), a.dtype)
    b[:n] = a[:n]
    return b


@njit(cache=True, nogil=True)
def _emit(out_o, out_a, out_b, n, i, j, via):
    if n == len(out_o):
        out_o = _grow(out_o, n)
        out_a = _grow(out_a, n)
        out_b = _grow(out_b, n)
    out_o[n] = i
    out_a[n] = j
    out_b[n] = via
    return out_o, out_a, out_b, n + 1


@njit(cache=True, nogil=True)
def _lpm_one(group_plen, group_off, ukhi, uklo, u_off, start, end, runmax, long_s, l_off,
             l_start, l_pos, l_runmax, qhi, qlo, ts, i, via, out_o, out_a, out_b, n, memo):
    """Append the longest-prefix candidates of one query (sorted positions, ascending) to
    the outputs.

    ``memo[g]`` is the prefix found in group g by the previous query (or -1): queries
    visited in address order often hit it again and skip the binary search."""
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
        n0 = n
        # Short rows (held at most long_s): walk back from the last start <= ts while a
        # short row so far may still be open (runmax counts short rows only).
        r0 = u_off[u]
        j = _last_at_or_before(start, r0, u_off[u + 1], ts)
        while j >= r0 and runmax[j] > ts:
            if end[j] > ts and end[j] - start[j] <= long_s:
                out_o, out_a, out_b, n = _emit(out_o, out_a, out_b, n, i, j, via)
            j -= 1
        # Long rows (open, static...): their own short list, the same walk. An open row
        # among a thousand sessions of one address cannot make every lookup walk them all.
        k0 = l_off[u]
        k = _last_at_or_before(l_start, k0, l_off[u + 1], ts)
        while k >= k0 and l_runmax[k] > ts:
            j = l_pos[k]
            if end[j] > ts:
                out_o, out_a, out_b, n = _emit(out_o, out_a, out_b, n, i, j, via)
            k -= 1
        if n > n0:  # insertion sort of the few hits into ascending position
            for x in range(n0 + 1, n):
                v = out_a[x]
                y = x - 1
                while y >= n0 and out_a[y] > v:
                    out_a[y + 1] = out_a[y]
                    y -= 1
                out_a[y + 1] = v
            return out_o, out_a, out_b, n
    return out_o, out_a, out_b, n


@njit(cache=True, nogil=True)
def _blocks_one(pu_hi, pu_lo, pu_off, sl_low, sl_high, sl_hmax, sl_off, b_start, b_end,
                b_runmax, qhi, qlo, port, ts, scratch):
    """Blocks of public address (qhi, qlo) covering (port, ts), in DESCENDING sorted
    position, into ``scratch``. Returns (is a CGNAT address, count, scratch)."""
    last = len(pu_hi) - 1
    if qhi < pu_hi[0] or (qhi == pu_hi[0] and qlo < pu_lo[0]):
        return False, 0, scratch
    if qhi > pu_hi[last] or (qhi == pu_hi[last] and qlo > pu_lo[last]):
        return False, 0, scratch
    p = _find_key(pu_hi, pu_lo, 0, len(pu_hi), qhi, qlo)
    if p < 0:
        return False, 0, scratch
    s0 = pu_off[p]
    s = _last_at_or_before(sl_low, s0, pu_off[p + 1], port)
    k = 0
    while s >= s0 and sl_hmax[s] >= port:
        if sl_high[s] >= port:
            r0 = sl_off[s]
            j = _last_at_or_before(b_start, r0, sl_off[s + 1], ts)
            while j >= r0 and b_runmax[j] > ts:
                if b_end[j] > ts:
                    if k == len(scratch):
                        scratch = _grow(scratch, k)
                    scratch[k] = j
                    k += 1
                j -= 1
        s -= 1
    return True, k, scratch


@njit(cache=True, nogil=True)
def lpm_pairs(group_plen, group_off, ukhi, uklo, u_off, start, end, runmax, long_s, l_off,
              l_start, l_pos, l_runmax, order, obs_hi, obs_lo, obs_ts):
    """Longest-prefix match in time of each observation, no CGNAT.

    Returns (obs index, assignment index) pairs; assignment indexes are ``order`` values.
    """
    n_obs = len(obs_hi)
    out_o = np.empty(n_obs + 16, np.int64)
    out_a = np.empty(n_obs + 16, np.int64)
    out_b = np.empty(n_obs + 16, np.int64)
    n = 0
    memo = np.full(len(group_plen), -1, np.int64)
    if len(group_plen) > 0:
        for i in range(n_obs):
            out_o, out_a, out_b, n = _lpm_one(group_plen, group_off, ukhi, uklo, u_off, start,
                                              end, runmax, long_s, l_off, l_start, l_pos,
                                              l_runmax, obs_hi[i], obs_lo[i], obs_ts[i], i, -1,
                                              out_o, out_a, out_b, n, memo)
    assign = np.empty(n, np.int64)
    for k in range(n):
        assign[k] = order[out_a[k]]
    return out_o[:n].copy(), assign


@njit(cache=True, nogil=True)
def block_pairs(pu_hi, pu_lo, pu_off, sl_low, sl_high, sl_hmax, sl_off, b_start, b_end,
                b_runmax, b_order, obs_hi, obs_lo, obs_port, obs_ts):
    """Port blocks covering each observation's (address, port, ts).

    Returns (1 per observation whose address is any block's public address, else 0; pair
    obs indexes; pair block indexes as ``b_order`` values, in ascending sorted position).
    """
    n_obs = len(obs_hi)
    cgnat = np.zeros(n_obs, np.uint8)
    out_o = np.empty(16, np.int64)
    out_b = np.empty(16, np.int64)
    scratch = np.empty(16, np.int64)
    n = 0
    for i in range(n_obs):
        is_cg, k, scratch = _blocks_one(pu_hi, pu_lo, pu_off, sl_low, sl_high, sl_hmax, sl_off,
                                        b_start, b_end, b_runmax, obs_hi[i], obs_lo[i],
                                        obs_port[i], obs_ts[i], scratch)
        if is_cg:
            cgnat[i] = 1
        for m in range(k - 1, -1, -1):
            if n == len(out_o):
                out_o = _grow(out_o, n)
                out_b = _grow(out_b, n)
            out_o[n] = i
            out_b[n] = b_order[scratch[m]]
            n += 1
    return cgnat, out_o[:n].copy(), out_b[:n].copy()


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
    out_o = np.empty(n_obs + 16, np.int64)
    out_a = np.empty(n_obs + 16, np.int64)
    out_b = np.empty(n_obs + 16, np.int64)
    scratch = np.empty(16, np.int64)
    n = 0
    has_blocks = len(pu_hi) > 0
    has_groups = len(group_plen) > 0
    memo = np.full(len(group_plen), -1, np.int64)  # direct queries
    memo_via = np.full(len(group_plen), -1, np.int64)  # private addresses behind CGNAT
    in_order = True
    for v in range(n_obs):
        i = obs_id[v]
        if i != v:
            in_order = False
        qhi = obs_hi[v]
        qlo = obs_lo[v]
        ts = obs_ts[v]
        if has_blocks:
            is_cg, k, scratch = _blocks_one(pu_hi, pu_lo, pu_off, sl_low, sl_high, sl_hmax,
                                            sl_off, b_start, b_end, b_runmax, qhi, qlo,
                                            obs_port[v], ts, scratch)
            if is_cg:
                if has_groups:
                    for m in range(k - 1, -1, -1):
                        b = scratch[m]
                        out_o, out_a, out_b, n = _lpm_one(
                            group_plen, group_off, ukhi, uklo, u_off, start, end, runmax,
                            long_s, l_off, l_start, l_pos, l_runmax, b_priv_hi[b], b_priv_lo[b],
                            ts, i, b_order[b], out_o, out_a, out_b, n, memo_via)
                continue
        if has_groups:
            out_o, out_a, out_b, n = _lpm_one(group_plen, group_off, ukhi, uklo, u_off, start,
                                              end, runmax, long_s, l_off, l_start, l_pos,
                                              l_runmax, qhi, qlo, ts, i, -1, out_o, out_a,
                                              out_b, n, memo)
    if in_order:
        for k in range(n):
            out_a[k] = order[out_a[k]]
        return out_o[:n], out_a[:n], out_b[:n]
    # Back to id order: a counting sort (stable; an observation's pairs are contiguous and
    # in order already).
    pos = np.zeros(n_obs + 1, np.int64)
    for k in range(n):
        pos[out_o[k] + 1] += 1
    for i in range(n_obs):
        pos[i + 1] += pos[i]
    res_o = np.empty(n, np.int64)
    res_a = np.empty(n, np.int64)
    res_b = np.empty(n, np.int64)
    for k in range(n):
        i = out_o[k]
        d = pos[i]
        pos[i] = d + 1
        res_o[d] = i
        res_a[d] = order[out_a[k]]
        res_b[d] = out_b[k]
    return res_o, res_a, res_b
