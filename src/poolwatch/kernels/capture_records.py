"""Walk pcap and pcapng record headers in a byte buffer (numba).

Both walkers fill the record columns of a ``PACKET`` array (``data_off``, ``caplen``,
``wirelen``, ``ts_ns``, ``linktype``) and stop at the first record that does not fit in the
buffer, returning where it starts so the reader can carry the tail into the next chunk.
They never raise: a record header that cannot be right comes back as a status code.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from .memory import prefetch_ahead

WALK_OK = 0  # stopped because the buffer or the output is exhausted
WALK_BAD_LENGTH = 1  # a record length that no writer produces: the file is damaged here
WALK_BAD_BLOCK = 2  # pcapng block structure broken (length, byte-order magic)
WALK_TOO_MANY_INTERFACES = 3
WALK_BAD_INTERFACE = 4  # a packet on an interface its section does not declare

# pcapng walker state, kept between chunks in a small int64 array.
ST_BIG_ENDIAN = 0
ST_N_IFACES = 1
ST_SECTIONS = 2
ST_LEN = 3

MAX_INTERFACES = 256
# Per-interface columns in an int64 array of shape (MAX_INTERFACES, IF_LEN).
IF_LINKTYPE = 0
IF_TS_BINARY = 1  # 1 when if_tsresol is a power of two
IF_TS_EXP = 2  # the exponent of if_tsresol
IF_TS_OFFSET_S = 3
IF_LEN = 4

MAX_BLOCK = 64 << 20


@njit(cache=True, nogil=True, inline="always")
def _u32(buf, pos, big):
    b0 = np.uint32(buf[pos])
    b1 = np.uint32(buf[pos + 1])
    b2 = np.uint32(buf[pos + 2])
    b3 = np.uint32(buf[pos + 3])
    if big:
        return (b0 << 24) | (b1 << 16) | (b2 << 8) | b3
    return (b3 << 24) | (b2 << 16) | (b1 << 8) | b0


@njit(cache=True, nogil=True, inline="always")
def _u16(buf, pos, big):
    b0 = np.uint32(buf[pos])
    b1 = np.uint32(buf[pos + 1])
    if big:
        return (b0 << 8) | b1
    return (b1 << 8) | b0


@njit(cache=True, nogil=True)
def walk_pcap(buf, n_valid, pos, big, frac_ns, max_caplen, linktype, out, n_out):
    """Classic pcap records from ``pos``. Returns (records, next_pos, status)."""
    n = n_out
    cap = len(out)
    ahead = pos
    while n < cap:
        if pos + 16 > n_valid:
            return n, pos, WALK_OK
        ahead = prefetch_ahead(buf, ahead, pos, n_valid)
        incl = _u32(buf, pos + 8, big)
        if incl > max_caplen:
            return n, pos, WALK_BAD_LENGTH
        if pos + 16 + np.int64(incl) > n_valid:
            return n, pos, WALK_OK
        sec = np.int64(_u32(buf, pos, big))
        frac = np.int64(_u32(buf, pos + 4, big))
        out[n].ts_ns = sec * 1_000_000_000 + frac * frac_ns
        out[n].caplen = incl
        out[n].wirelen = _u32(buf, pos + 12, big)
        out[n].data_off = pos + 16
        out[n].linktype = linktype
        n += 1
        pos += 16 + np.int64(incl)
    return n, pos, WALK_OK


@njit(cache=True, nogil=True)
def ts_to_ns(ts, binary, exp, offset_s):
    """A pcapng timestamp in units of 10^-exp or 2^-exp seconds → ns since the epoch."""
    if binary:
        whole = np.int64(ts >> np.uint64(exp)) if exp < 64 else np.int64(0)
        part = ts & ((np.uint64(1) << np.uint64(exp)) - np.uint64(1)) if exp < 64 else ts
        frac = np.int64(np.float64(part) * 1e9 / 2.0**exp)
        return (whole + offset_s) * 1_000_000_000 + frac
    if exp <= 9:
        return np.int64(ts) * np.int64(10 ** (9 - exp)) + offset_s * 1_000_000_000
    if exp > 27:  # finer than 10^-27 s: no real clock; keep whole seconds only
        return offset_s * 1_000_000_000
    return np.int64(ts // np.uint64(10 ** (exp - 9))) + offset_s * 1_000_000_000


@njit(cache=True, nogil=True)
def _read_idb(buf, pos, blen, big, ifaces, n_if):
    """Interface Description Block: link type, if_tsresol (9), if_tsoffset (14)."""
    ifaces[n_if, IF_LINKTYPE] = _u16(buf, pos + 8, big)
    ifaces[n_if, IF_TS_BINARY] = 0
    ifaces[n_if, IF_TS_EXP] = 6
    ifaces[n_if, IF_TS_OFFSET_S] = 0
    opt = pos + 16
    end = pos + blen - 4
    while opt + 4 <= end:
        code = _u16(buf, opt, big)
        olen = np.int64(_u16(buf, opt + 2, big))
        if code == 0 or opt + 4 + olen > end:
            break
        if code == 9 and olen >= 1:
            v = np.int64(buf[opt + 4])
            ifaces[n_if, IF_TS_BINARY] = 1 if v & 0x80 else 0
            ifaces[n_if, IF_TS_EXP] = v & 0x7F
        elif code == 14 and olen >= 8:
            hi = np.int64(_u32(buf, opt + 4 + (0 if big else 4), big))
            lo = np.int64(_u32(buf, opt + 4 + (4 if big else 0), big))
            ifaces[n_if, IF_TS_OFFSET_S] = (hi << 32) | lo
        opt += 4 + ((olen + 3) // 4) * 4


@njit(cache=True, nogil=True)
def _emit(out, n, ifaces, iface, ts, data_off, caplen, wirelen):
    out[n].linktype = ifaces[iface, IF_LINKTYPE]
    out[n].ts_ns = ts_to_ns(
        ts, ifaces[iface, IF_TS_BINARY], ifaces[iface, IF_TS_EXP], ifaces[iface, IF_TS_OFFSET_S]
    )
    out[n].data_off = data_off
    out[n].caplen = caplen
    out[n].wirelen = wirelen


@njit(cache=True, nogil=True)
def walk_pcapng(buf, n_valid, pos, state, ifaces, out, n_out):
    """pcapng blocks from ``pos``: sections, interfaces and packets. Returns (n, pos, status)."""
    n = n_out
    cap = len(out)
    ahead = pos
    while n < cap:
        if pos + 12 > n_valid:
            return n, pos, WALK_OK
        ahead = prefetch_ahead(buf, ahead, pos, n_valid)
        if _u32(buf, pos, False) == 0x0A0D0D0A:  # section header: palindromic type
            bom = _u32(buf, pos + 8, False)
            if bom == 0x1A2B3C4D:
                state[ST_BIG_ENDIAN] = 0
            elif bom == 0x4D3C2B1A:
                state[ST_BIG_ENDIAN] = 1
            else:
                return n, pos, WALK_BAD_BLOCK
        big = state[ST_BIG_ENDIAN] == 1
        btype = _u32(buf, pos, big)
        blen = np.int64(_u32(buf, pos + 4, big))
        if blen < 12 or blen % 4 != 0 or blen > MAX_BLOCK:
            return n, pos, WALK_BAD_BLOCK
        if pos + blen > n_valid:
            return n, pos, WALK_OK
        if np.int64(_u32(buf, pos + blen - 4, big)) != blen:  # the trailing copy disagrees
            return n, pos, WALK_BAD_BLOCK
        n_if = state[ST_N_IFACES]
        if btype == 0x0A0D0D0A:
            state[ST_N_IFACES] = 0
            state[ST_SECTIONS] += 1
        elif btype == 1 and blen >= 20:
            if n_if >= MAX_INTERFACES:
                return n, pos, WALK_TOO_MANY_INTERFACES
            _read_idb(buf, pos, blen, big, ifaces, n_if)
            state[ST_N_IFACES] = n_if + 1
        elif btype == 6 or btype == 2:
            if blen < 32:
                return n, pos, WALK_BAD_BLOCK
            if btype == 6:
                iface = np.int64(_u32(buf, pos + 8, big))
            else:
                iface = np.int64(_u16(buf, pos + 8, big))
            ts = (np.uint64(_u32(buf, pos + 12, big)) << np.uint64(32)) | np.uint64(
                _u32(buf, pos + 16, big)
            )
            caplen = np.int64(_u32(buf, pos + 20, big))
            if caplen > blen - 32:
                return n, pos, WALK_BAD_LENGTH
            if iface >= n_if:
                return n, pos, WALK_BAD_INTERFACE
            _emit(out, n, ifaces, iface, ts, pos + 28, caplen, _u32(buf, pos + 24, big))
            n += 1
        elif btype == 3:
            if blen < 16:
                return n, pos, WALK_BAD_BLOCK
            if n_if == 0:
                return n, pos, WALK_BAD_INTERFACE
            wirelen = np.int64(_u32(buf, pos + 8, big))
            caplen = min(wirelen, blen - 16)
            _emit(out, n, ifaces, 0, np.uint64(0), pos + 12, caplen, wirelen)
            n += 1
        pos += blen
    return n, pos, WALK_OK
