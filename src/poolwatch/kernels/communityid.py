"""Community ID v1 (https://github.com/corelight/community-id-spec) for many flows at once.

The hashed byte string is, per flow::

    seed (2, big-endian) | saddr (4 or 16) | daddr (4 or 16) | proto (1) | 0 (1)
    [| sport (2, big-endian) | dport (2, big-endian)]        # only for port protocols

with the endpoints ordered so the smaller one (address bytes, then port) comes first, unless
the tuple is one-way. The ID is ``"1:" + base64(sha1(bytes))``.

Flow columns follow :mod:`poolwatch.records`: an address is two big-endian ``uint64`` halves
of an IPv6 address, IPv4 addresses are IPv4-mapped (``hi == 0``, ``lo >> 32 == 0xFFFF``) and
are hashed as 4-byte addresses. (So a genuine ``::ffff:a.b.c.d`` IPv6 address also hashes as
IPv4; poolwatch cannot tell the two apart.)

Ports: TCP (6), UDP (17), SCTP (132), ICMP (1) and ICMPv6 (58) hash their ports; every other
protocol hashes none. For ICMP/ICMPv6 ``src_port`` is the message type. When the type is in
the request/response pairing table (Zeek's, as in ``communityid.icmp``/``icmp6``) the
destination "port" is the paired type and the tuple is two-way; otherwise ``dest_port`` (the
code) is hashed as is and the tuple is one-way, i.e. never reordered. The kernel re-derives the
paired type from the type, so both poolwatch records (``dest_port`` = paired type) and raw
(type, code) columns give the right ID.

Only modules under ``poolwatch.kernels`` import numba.
"""

from __future__ import annotations

import numpy as np
from numba import njit

__all__ = ["sha1", "community_id_digests", "community_id_text", "community_ids"]

_M32 = 0xFFFFFFFF
_U32 = np.uint64(32)
_U255 = np.uint64(0xFF)
_V4_MARK = np.uint64(0xFFFF)
_ZERO = np.uint64(0)

# ICMP type -> paired type, -1 when the type has no pair (one-way). Indexed by type < 256.
_ICMP4_PAIRS = {8: 0, 0: 8, 13: 14, 14: 13, 15: 16, 16: 15, 10: 9, 9: 10, 17: 18, 18: 17}
_ICMP6_PAIRS = {128: 129, 129: 128, 130: 131, 131: 130, 133: 134, 134: 133,
                135: 136, 136: 135, 139: 140, 140: 139, 144: 145, 145: 144}
_ICMP_PAIR = np.full((2, 256), -1, dtype=np.int64)
for _t, _p in _ICMP4_PAIRS.items():
    _ICMP_PAIR[0, _t] = _p
for _t, _p in _ICMP6_PAIRS.items():
    _ICMP_PAIR[1, _t] = _p
del _t, _p

_B64_ALPHABET = np.frombuffer(
    b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/", dtype=np.uint8
)


# ---------------------------------------------------------------------------
# SHA-1 (FIPS 180-4). All words are int64 holding 32-bit values, masked after each step.
# ---------------------------------------------------------------------------
@njit(cache=True, nogil=True)
def _sha1_block(h, msg, off, w):
    """Compress the 64-byte block ``msg[off:off+64]`` into state ``h`` (int64[5])."""
    for t in range(16):
        j = off + 4 * t
        w[t] = ((np.int64(msg[j]) << 24) | (np.int64(msg[j + 1]) << 16)
                | (np.int64(msg[j + 2]) << 8) | np.int64(msg[j + 3]))
    for t in range(16, 80):
        x = w[t - 3] ^ w[t - 8] ^ w[t - 14] ^ w[t - 16]
        w[t] = ((x << 1) | (x >> 31)) & _M32
    a, b, c, d, e = h[0], h[1], h[2], h[3], h[4]
    for t in range(80):
        if t < 20:
            f = (b & c) | (~b & d)
            k = 0x5A827999
        elif t < 40:
            f = b ^ c ^ d
            k = 0x6ED9EBA1
        elif t < 60:
            f = (b & c) | (b & d) | (c & d)
            k = 0x8F1BBCDC
        else:
            f = b ^ c ^ d
            k = 0xCA62C1D6
        tmp = ((((a << 5) | (a >> 27)) & _M32) + f + e + k + w[t]) & _M32
        e = d
        d = c
        c = ((b << 30) | (b >> 2)) & _M32
        b = a
        a = tmp
    h[0] = (h[0] + a) & _M32
    h[1] = (h[1] + b) & _M32
    h[2] = (h[2] + c) & _M32
    h[3] = (h[3] + d) & _M32
    h[4] = (h[4] + e) & _M32


@njit(cache=True, nogil=True)
def _sha1_padded(buf, length, h, w, out, row):
    """SHA-1 of ``buf[:length]`` into ``out[row, :20]``.

    ``buf`` must hold at least ``((length + 8) // 64 + 1) * 64`` bytes; the padding is
    written in place (everything after ``length`` is overwritten).
    """
    total = ((length + 8) // 64 + 1) * 64
    buf[length] = 0x80
    for j in range(length + 1, total - 8):
        buf[j] = 0
    bits = np.int64(length) * 8
    for j in range(8):
        buf[total - 1 - j] = np.uint8((bits >> (8 * j)) & 0xFF)
    h[0] = 0x67452301
    h[1] = 0xEFCDAB89
    h[2] = 0x98BADCFE
    h[3] = 0x10325476
    h[4] = 0xC3D2E1F0
    for off in range(0, total, 64):
        _sha1_block(h, buf, off, w)
    for j in range(5):
        for k in range(4):
            out[row, 4 * j + k] = np.uint8((h[j] >> (24 - 8 * k)) & 0xFF)


@njit(cache=True, nogil=True)
def sha1(data):
    """SHA-1 digest (uint8[20]) of a uint8 array of any length."""
    n = data.shape[0]
    buf = np.zeros(((n + 8) // 64 + 1) * 64, dtype=np.uint8)
    buf[:n] = data
    out = np.empty((1, 20), dtype=np.uint8)
    _sha1_padded(buf, n, np.empty(5, np.int64), np.empty(80, np.int64), out, 0)
    return out[0]


# ---------------------------------------------------------------------------
# Community ID input bytes
# ---------------------------------------------------------------------------
@njit(cache=True, nogil=True)
def _addr_bytes(a, off, hi, lo):
    """Write the 16 address bytes to ``a[off:off+16]``; return the start of the hashed bytes
    (``off + 12`` for an IPv4-mapped address, which is hashed as 4 bytes, else ``off``)."""
    for k in range(8):
        shift = np.uint64(56 - 8 * k)
        a[off + k] = np.uint8((hi >> shift) & _U255)
        a[off + 8 + k] = np.uint8((lo >> shift) & _U255)
    if hi == _ZERO and (lo >> _U32) == _V4_MARK:
        return off + 12
    return off


@njit(cache=True, nogil=True)
def _cid_input(buf, a, shi, slo, dhi, dlo, sport, dport, proto, seed):
    """Write the Community ID v1 hash input of one flow to ``buf``; return its length."""
    s0 = _addr_bytes(a, 0, shi, slo)
    d0 = _addr_bytes(a, 16, dhi, dlo)
    ls = 16 - s0
    ld = 32 - d0
    cmp = 0  # bytewise comparison of saddr vs daddr, shorter-is-smaller on a common prefix
    for k in range(min(ls, ld)):
        if a[s0 + k] != a[d0 + k]:
            cmp = -1 if a[s0 + k] < a[d0 + k] else 1
            break
    if cmp == 0 and ls != ld:
        cmp = -1 if ls < ld else 1
    sp = np.int64(sport)
    dp = np.int64(dport)
    has_ports = proto == 6 or proto == 17 or proto == 132 or proto == 1 or proto == 58
    one_way = False
    if proto == 1 or proto == 58:
        pair = _ICMP_PAIR[0 if proto == 1 else 1, sp] if sp < 256 else -1
        if pair >= 0:
            dp = pair
        else:
            one_way = True
    if not (one_way or cmp < 0 or (cmp == 0 and has_ports and sp < dp)):
        s0, d0, ls, ld, sp, dp = d0, s0, ld, ls, dp, sp
    buf[0] = np.uint8((seed >> 8) & 0xFF)
    buf[1] = np.uint8(seed & 0xFF)
    n = 2
    for k in range(ls):
        buf[n + k] = a[s0 + k]
    n += ls
    for k in range(ld):
        buf[n + k] = a[d0 + k]
    n += ld
    buf[n] = np.uint8(proto)
    buf[n + 1] = 0
    n += 2
    if has_ports:
        buf[n] = np.uint8(sp >> 8)
        buf[n + 1] = np.uint8(sp & 0xFF)
        buf[n + 2] = np.uint8(dp >> 8)
        buf[n + 3] = np.uint8(dp & 0xFF)
        n += 4
    return n


@njit(cache=True, nogil=True)
def community_id_digests(src_hi, src_lo, dst_hi, dst_lo, src_port, dest_port, proto, seed):
    """SHA-1 digests (uint8[n, 20]) of the Community ID v1 input of every flow.

    ``src_hi/src_lo/dst_hi/dst_lo``: uint64 address halves; ``src_port/dest_port``: uint16;
    ``proto``: uint8; ``seed``: int in 0..65535. All arrays have the same length.
    """
    n = src_hi.shape[0]
    out = np.empty((n, 20), dtype=np.uint8)
    buf = np.zeros(128, dtype=np.uint8)  # input <= 40 bytes -> one padded block
    a = np.empty(32, dtype=np.uint8)
    h = np.empty(5, dtype=np.int64)
    w = np.empty(80, dtype=np.int64)
    for i in range(n):
        length = _cid_input(buf, a, src_hi[i], src_lo[i], dst_hi[i], dst_lo[i],
                            src_port[i], dest_port[i], np.int64(proto[i]), np.int64(seed))
        _sha1_padded(buf, length, h, w, out, i)
    return out


# ---------------------------------------------------------------------------
# Rendering
# ---------------------------------------------------------------------------
@njit(cache=True, nogil=True)
def community_id_text(digests):
    """``"1:" + base64(digest)`` of each 20-byte row as UCS4 code points: uint32[n, 30].

    ``result.view("U30").reshape(n)`` is the numpy string array. Standard alphabet with
    ``=`` padding: 20 bytes = 6 groups of 3 (24 chars) + 2 bytes (3 chars and one ``=``).
    """
    n = digests.shape[0]
    out = np.empty((n, 30), dtype=np.uint32)
    for i in range(n):
        out[i, 0] = 49  # "1"
        out[i, 1] = 58  # ":"
        for g in range(7):
            v = (np.int64(digests[i, 3 * g]) << 16) | (np.int64(digests[i, 3 * g + 1]) << 8)
            if g < 6:
                v |= np.int64(digests[i, 3 * g + 2])
            for k in range(4):
                out[i, 2 + 4 * g + k] = _B64_ALPHABET[(v >> (18 - 6 * k)) & 63]
        out[i, 29] = 61  # "="
    return out


def community_ids(src_hi, src_lo, dst_hi, dst_lo, src_port, dest_port, proto, seed=0):
    """Community ID v1 strings (``"1:" + base64``) of every flow, as a numpy ``U30`` array.

    Columns are as in :data:`poolwatch.records.FLOW` (any integer dtype is converted).
    Raises ``ValueError`` when the columns differ in length or the seed is not in 0..65535.
    """
    seed = int(seed)
    if not 0 <= seed <= 0xFFFF:
        raise ValueError(f"Community ID seed must be in 0..65535, got {seed}")
    cols = [np.asarray(c, dtype=np.uint64) for c in (src_hi, src_lo, dst_hi, dst_lo)]
    cols += [np.asarray(src_port, dtype=np.uint16), np.asarray(dest_port, dtype=np.uint16),
             np.asarray(proto, dtype=np.uint8)]
    lengths = {c.shape for c in cols}
    if len(lengths) != 1 or cols[0].ndim != 1:
        raise ValueError(f"flow columns must be 1-D and of equal length, got {sorted(lengths)}")
    digests = community_id_digests(*cols, seed)
    return community_id_text(digests).view("U30").reshape(digests.shape[0])
