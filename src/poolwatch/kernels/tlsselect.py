"""Pick the TCP segments that carry TLS handshakes, and nothing after them (numba).

A flow's tracking opens at a segment whose payload starts a TLS handshake record holding a
ClientHello: content type 0x16, record version 0x03 0x00..0x04, handshake type 1. From then on
only the bytes each direction's handshake needs are marked, by TCP sequence range:

* client: ``[seq of the ClientHello's first byte, + the ClientHello's records)``, the length
  taken from the record header (and from the handshake header when the message spans
  several records), at most ``max_hs`` bytes;
* server: ``[ack number of the ClientHello segment (the server's first payload byte),
  + max_hs)``. The kernel walks the server's records while its segments come in order and
  ends the window at the first record that is not a handshake record (ChangeCipherSpec,
  alert, application data): a TLS 1.3 server sends its ServerHello and then CCS or encrypted
  records, a TLS 1.2 server its ServerHello...ServerHelloDone and then, after the client's
  keys, its CCS.

So the application data of a tracked flow is never marked, even before the caller has parsed
the handshake and called :func:`forget_tls_flows` for it.

The batch is read twice: the first pass opens flows (so a later ClientHello segment captured
before the first one, within the batch, is still collected), the second marks segments. The
two passes are also callable apart (:func:`open_tls_flows`, :func:`mark_tls_packets`): the
caller may look at the opening segments and forget flows it does not want in between, so
that none of their later segments, even in the same batch, is marked.

Tables: ``keys`` is an open-addressing set of direction-free flow hashes (``uint64``, 0 =
empty, power-of-two capacity, linear probing, backward-shift deletion) with parallel rows:
``dirs`` holds the hash of the flow directed client → server, ``state`` five ``int64``
columns (:data:`C_BASE`...). When ``fill`` reaches ``max_fill`` new flows are refused and
counted.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from .prefilter import canonical_hash, directed_hash, tcp_seq

# Bits of the per-packet marks.
SELECTED = 1  # hand this segment to the TLS parser
NEW_FLOW = 2  # this segment opened the flow's tracking (its ClientHello's first segment)
FROM_CLIENT = 4  # sent by the side that sent the ClientHello
SERVER_DONE = 8  # the kernel saw the server's first non-handshake record in this segment
# With NEW_FLOW: a segment with payload of this flow (or of one whose hash shares its low 20
# bits) came earlier in the batch, so the stream may not start with this segment's bytes.
EARLIER = 16
SEEN_BITS = 20

# Columns of ``state``.
C_BASE = 0  # sequence number of the ClientHello's first byte
C_LEN = 1  # client bytes wanted
S_BASE = 2  # sequence number of the server's first payload byte, -1 not known yet
S_LEN = 3  # server bytes wanted (shrinks to the end of its handshake records)
S_NEXT = 4  # stream offset of the next server record header to read, -1 no longer walking
STATE_COLUMNS = 5

STATUS_OK = 0
TCP = 6
TH_ACK = 0x10
HANDSHAKE = 0x16
CLIENT_HELLO = 1
SEQ_MOD = np.int64(1) << 32
HALF = np.int64(1) << 31


@njit(cache=True, nogil=True, inline="always")
def _rel(seq, base):
    """Signed distance from ``base`` to ``seq`` in 32-bit sequence space."""
    d = (seq - base) % SEQ_MOD
    return d - SEQ_MOD if d >= HALF else d


@njit(cache=True, nogil=True)
def find_slot(keys, h):
    """Slot of h, or -1."""
    mask = np.uint64(len(keys) - 1)
    i = h & mask
    while keys[i] != 0:
        if keys[i] == h:
            return np.int64(i)
        i = (i + np.uint64(1)) & mask
    return np.int64(-1)


@njit(cache=True, nogil=True)
def _insert(keys, h):
    mask = np.uint64(len(keys) - 1)
    i = h & mask
    while keys[i] != 0:
        i = (i + np.uint64(1)) & mask
    keys[i] = h
    return np.int64(i)


@njit(cache=True, nogil=True)
def _remove(keys, dirs, state, h):
    """Delete h by backward shift, moving its run's rows with it: 1 if it was there."""
    mask = np.uint64(len(keys) - 1)
    i = h & mask
    while keys[i] != h:
        if keys[i] == 0:
            return 0
        i = (i + np.uint64(1)) & mask
    j = i
    while True:
        j = (j + np.uint64(1)) & mask
        if keys[j] == 0:
            break
        home = keys[j] & mask
        if (i <= j and i < home <= j) or (i > j and (home > i or home <= j)):
            continue
        keys[i] = keys[j]
        dirs[i] = dirs[j]
        for c in range(STATE_COLUMNS):
            state[i, c] = state[j, c]
        i = j
    keys[i] = 0
    dirs[i] = 0
    return 1


@njit(cache=True, nogil=True)
def forget_tls_flows(keys, dirs, state, hashes):
    """Stop tracking each flow of ``hashes``; returns how many were tracked."""
    removed = 0
    for k in range(len(hashes)):
        h = hashes[k] if hashes[k] != 0 else np.uint64(1)
        removed += _remove(keys, dirs, state, h)
    return removed


@njit(cache=True, nogil=True, inline="always")
def _u16(buf, at):
    return np.int64(buf[at]) << 8 | np.int64(buf[at + 1])


@njit(cache=True, nogil=True)
def client_hello_length(buf, start, size, max_hs):
    """Client bytes a ClientHello starting at ``buf[start]`` needs (records included), or 0
    when the payload does not start one: type 0x16, version 3.0-3.4, handshake type 1,
    a record length of at least 4 (the handshake header)."""
    if size < 6 or buf[start] != HANDSHAKE or buf[start + 1] != 3 or buf[start + 2] > 4:
        return np.int64(0)
    if buf[start + 5] != CLIENT_HELLO:
        return np.int64(0)
    rec = _u16(buf, start + 3)
    if rec < 4 or rec > 18432:  # 2^14 + 2048: the most a TLSCiphertext may hold
        return np.int64(0)
    need = 5 + rec
    if size >= 9:
        msg = 4 + (np.int64(buf[start + 6]) << 16 | _u16(buf, start + 7))
        if msg > rec:  # the message goes on in more records: one header per record of rec
            need = msg + 5 * ((msg + rec - 1) // rec)
    return min(need, max_hs)


@njit(cache=True, nogil=True)
def open_tls_flows(buf, packets, keys, dirs, state, fill, max_fill, max_hs):
    """Pass 1 of :func:`select_tls_packets`: open the flows whose ClientHello starts in this
    batch. Returns (marks, hashes, fill, refused): ``marks[i]`` is NEW_FLOW for an opening
    segment (with EARLIER when a segment that may be of the same flow came before it in the
    batch), ``hashes[i]`` the direction-free hash of every TCP segment with payload (for
    :func:`mark_tls_packets`). The caller may forget flows between the two passes (a
    ClientHello whole in its opening segment can be judged at once): none of their
    segments is then marked."""
    n = len(packets)
    marks = np.zeros(n, np.uint8)
    hashes = np.zeros(n, np.uint64)
    limit = min(max_fill, len(keys) - 1)
    refused = 0
    nbuf = len(buf)
    seen = np.zeros(1 << (SEEN_BITS - 6), np.uint64)  # a bitmap of low hash bits (128 KB)
    low = np.uint64((1 << SEEN_BITS) - 1)
    # Pass 1: ClientHello openers (the hash of every TCP segment with payload is kept).
    for i in range(n):
        p = packets[i]
        if p.status != STATUS_OK or p.proto != TCP or p.payload_len == 0:
            continue
        h = canonical_hash(p)
        hashes[i] = h
        b = h & low
        bit = np.uint64(1) << (b & np.uint64(63))
        earlier = seen[b >> np.uint64(6)] & bit
        seen[b >> np.uint64(6)] |= bit
        start = np.int64(p.data_off) + np.int64(p.payload_off)
        size = min(np.int64(p.payload_len), nbuf - start)
        if size < 6 or buf[start] != HANDSHAKE:
            continue
        need = client_hello_length(buf, start, size, max_hs)
        if need == 0 or find_slot(keys, h) >= 0:
            continue
        seq = tcp_seq(buf, p)
        if seq < 0:
            continue
        if fill >= limit:
            refused += 1
            continue
        s = _insert(keys, h)
        fill += 1
        dirs[s] = directed_hash(p, True)
        state[s, C_BASE] = seq
        state[s, C_LEN] = need
        state[s, S_BASE] = -1
        state[s, S_LEN] = max_hs
        state[s, S_NEXT] = 0
        if p.tcp_flags & TH_ACK:
            at = np.int64(p.data_off) + np.int64(p.l4_off)
            state[s, S_BASE] = (np.int64(buf[at + 8]) << 24 | np.int64(buf[at + 9]) << 16
                                | np.int64(buf[at + 10]) << 8 | np.int64(buf[at + 11]))
        marks[i] = NEW_FLOW | EARLIER if earlier else NEW_FLOW
    return marks, hashes, fill, refused


@njit(cache=True, nogil=True)
def mark_tls_packets(buf, packets, keys, dirs, state, marks, hashes):
    """Pass 2 of :func:`select_tls_packets`: mark the segments inside each tracked flow's
    windows (``marks`` and ``hashes`` from :func:`open_tls_flows`, updated in place: a
    segment of no tracked flow gets hash 0). Returns ``rel``."""
    n = len(packets)
    rel = np.zeros(n, np.int64)
    nbuf = len(buf)
    for i in range(n):
        h = hashes[i]
        if h == 0:
            continue
        s = find_slot(keys, h)
        if s < 0:
            hashes[i] = 0
            continue
        p = packets[i]
        seq = tcp_seq(buf, p)
        if seq < 0:
            hashes[i] = 0
            continue
        size = np.int64(p.payload_len)
        if directed_hash(p, True) == dirs[s]:
            r = _rel(seq, state[s, C_BASE])
            if r + size > 0 and r < state[s, C_LEN]:
                marks[i] |= SELECTED | FROM_CLIENT
                rel[i] = r
            else:
                marks[i] = 0
                hashes[i] = 0
            continue
        if state[s, S_BASE] < 0:  # the ClientHello carried no ACK: first server payload
            state[s, S_BASE] = seq
        r = _rel(seq, state[s, S_BASE])
        nxt = state[s, S_NEXT]
        if nxt >= 0 and r <= nxt < r + size:
            start = np.int64(p.data_off) + np.int64(p.payload_off)
            cap = min(size, nbuf - start)
            while True:
                if nxt >= r + size:
                    break
                at = nxt - r
                if at + 5 > cap:  # a header cut by the segment's end: stop walking
                    nxt = -1
                    break
                if buf[start + at] != HANDSHAKE:
                    state[s, S_LEN] = min(state[s, S_LEN], nxt)
                    marks[i] |= SERVER_DONE
                    nxt = -1
                    break
                nxt += 5 + _u16(buf, start + at + 3)
            state[s, S_NEXT] = nxt
        if r + size > 0 and r < state[s, S_LEN]:
            marks[i] |= SELECTED
            rel[i] = r
        elif marks[i] & SERVER_DONE:
            rel[i] = r  # starts with the first non-handshake record: only says where it ends
        else:
            hashes[i] = 0
    return rel


@njit(cache=True, nogil=True)
def select_tls_packets(buf, packets, keys, dirs, state, fill, max_fill, max_hs):
    """Mark the handshake segments of TLS flows. Returns (marks, hashes, rel, fill, refused).

    ``marks[i]``: SELECTED/NEW_FLOW/FROM_CLIENT/SERVER_DONE bits (0: not for Python);
    ``hashes[i]`` the flow's direction-free hash and ``rel[i]`` the stream offset of the
    segment's first payload byte in its direction (signed) for selected segments, and for
    segments marked SERVER_DONE alone (a server segment that starts with its first
    non-handshake record: the server's handshake bytes end at ``rel[i]``).
    :func:`open_tls_flows` then :func:`mark_tls_packets`, with nothing in between.
    """
    marks, hashes, fill, refused = open_tls_flows(buf, packets, keys, dirs, state, fill,
                                                  max_fill, max_hs)
    rel = mark_tls_packets(buf, packets, keys, dirs, state, marks, hashes)
    return marks, hashes, rel, fill, refused


# States of :func:`client_hello_sni_span`.
SNI_NOT_WHOLE = 0  # the ClientHello is not whole in this payload's first record: read it as usual
SNI_NONE = 1  # whole, and the full parser finds no server name (absent, cut, malformed, not ASCII)
SNI_FOUND = 2  # whole, with a host_name at [off, off + length): ASCII, not yet lower-cased


@njit(cache=True, nogil=True)
def client_hello_sni_span(buf, start, size):
    """Where a ClientHello's server name is, read from a payload ``buf[start:start+size]``
    that starts with a handshake record (as :func:`client_hello_length` accepted it):
    (state, off, length). Only when the whole message is inside that first record; then the
    walk goes straight to the server_name extension and agrees with
    ``detect.tls.parse_client_hello`` on every input (its plain-Python twin is
    ``detect.tls.client_hello_sni``): a length the full parser would find bad before the
    name, in the fixed fields, an extension, or the inner vector of an extension it reads
    (ALPN, supported_versions, groups, point formats, signature algorithms), gives
    SNI_NONE, as does a host name that is not ASCII. The first server_name counts."""
    zero = np.int64(0)
    if size < 9:
        return SNI_NOT_WHOLE, zero, zero
    rec = _u16(buf, start + 3)
    msg = 4 + (np.int64(buf[start + 6]) << 16 | _u16(buf, start + 7))
    if msg > rec or 5 + msg > size:
        return SNI_NOT_WHOLE, zero, zero
    b = start + 9
    n = msg - 4
    if n < 35:
        return SNI_NONE, zero, zero
    off = 35 + np.int64(buf[b + 34])
    if off + 2 > n:
        return SNI_NONE, zero, zero
    k = _u16(buf, b + off)
    if k & 1:
        return SNI_NONE, zero, zero
    off += 2 + k
    if off >= n:
        return SNI_NONE, zero, zero
    off += 1 + np.int64(buf[b + off])
    if off + 2 > n:
        return SNI_NONE, zero, zero
    end = off + 2 + _u16(buf, b + off)
    if end > n:
        return SNI_NONE, zero, zero
    pos = off + 2
    while pos < end:
        if pos + 4 > end:
            return SNI_NONE, zero, zero
        etype = _u16(buf, b + pos)
        nxt = pos + 4 + _u16(buf, b + pos + 2)
        if nxt > end:
            return SNI_NONE, zero, zero
        at = pos + 4
        if etype == 0x0000:
            if at + 2 > nxt:
                return SNI_NONE, zero, zero
            q = at + 2
            qe = q + _u16(buf, b + at)
            if qe > nxt:
                return SNI_NONE, zero, zero
            while q + 3 <= qe:
                kind = buf[b + q]
                ns = q + 3
                ne = ns + _u16(buf, b + q + 1)
                if ne > qe:
                    return SNI_NONE, zero, zero
                if kind == 0:
                    for j in range(b + ns, b + ne):
                        if buf[j] >= 0x80:
                            return SNI_NONE, zero, zero
                    return SNI_FOUND, b + ns, ne - ns
                q = ne
            return SNI_NONE, zero, zero
        if etype == 0x000B or etype == 0x002B:
            if at + 1 > nxt or at + 1 + np.int64(buf[b + at]) > nxt:
                return SNI_NONE, zero, zero
        elif etype == 0x0010 or etype == 0x000A or etype == 0x000D:
            if at + 2 > nxt:
                return SNI_NONE, zero, zero
            inner = at + 2 + _u16(buf, b + at)
            if inner > nxt:
                return SNI_NONE, zero, zero
            if etype == 0x0010:
                at += 2
                while at < inner:
                    at += 1 + np.int64(buf[b + at])
                    if at > inner:
                        return SNI_NONE, zero, zero
        pos = nxt
    return SNI_NONE, zero, zero


@njit(cache=True, nogil=True)
def client_hello_snis(buf, packets, rows, max_hs):
    """:func:`client_hello_sni_span` of the payload of each packet of ``rows`` (opening
    segments), the payload limited to ``max_hs`` bytes as the reader limits it: (state, off,
    length) arrays, offsets into ``buf``."""
    m = len(rows)
    state = np.zeros(m, np.int8)
    off = np.zeros(m, np.int64)
    length = np.zeros(m, np.int64)
    nbuf = len(buf)
    for k in range(m):
        p = packets[rows[k]]
        start = np.int64(p.data_off) + np.int64(p.payload_off)
        size = min(np.int64(p.payload_len), nbuf - start, np.int64(max_hs))
        st, o, n = client_hello_sni_span(buf, start, size)
        state[k] = st
        off[k] = o
        length[k] = n
    return state, off, length


# --------------------------------------------------------------------------------------------
# Certificate names: the DER walk of ``detect.tls.certificate_names`` (its twin), compiled
# --------------------------------------------------------------------------------------------

_CN_OID = np.array([0x55, 0x04, 0x03], np.uint8)  # 2.5.4.3
_SAN_OID = np.array([0x55, 0x1D, 0x11], np.uint8)  # 2.5.29.17
DER_OK, DER_BAD = 0, 1


@njit(cache=True, nogil=True, inline="always")
def _der(d, off, end):
    """(ok, tag, value start, value end) of the DER element at ``off``."""
    if off + 2 > end:
        return False, 0, off, off
    tag = np.int64(d[off])
    n = np.int64(d[off + 1])
    if tag & 0x1F == 0x1F:
        return False, 0, off, off
    off += 2
    if n & 0x80:
        k = n & 0x7F
        if k == 0 or k > 4 or off + k > end:
            return False, 0, off, off
        n = 0
        for j in range(k):
            n = n << 8 | np.int64(d[off + j])
        off += k
    if off + n > end:
        return False, 0, off, off
    return True, tag, off, off + n


@njit(cache=True, nogil=True)
def _all_ok(d, start, end):
    """Whether every element from ``start`` to ``end`` is well formed."""
    while start < end:
        ok, _, _, e = _der(d, start, end)
        if not ok:
            return False
        start = e
    return True


@njit(cache=True, nogil=True)
def _is(d, s, e, oid):
    if e - s != len(oid):
        return False
    for j in range(len(oid)):
        if d[s + j] != oid[j]:
            return False
    return True


@njit(cache=True, nogil=True)
def certificate_name_spans(d):
    """The subject commonName values then the subjectAltName dNSNames of a DER certificate,
    as (status, spans, count): ``spans[:count]`` rows of (string tag, start, end), DER_BAD
    when ``certificate_names`` would raise (every element it reads is checked the same way).
    Decoding, lower-casing and de-duplicating are left to Python."""
    m = len(d)
    spans = np.zeros((m // 2 + 1, 3), np.int64)
    count = 0
    ok, tag, s, e = _der(d, 0, m)
    if not ok or tag != 0x30:
        return DER_BAD, spans, 0
    ok, tag, s, e = _der(d, s, e)
    if not ok or tag != 0x30 or not _all_ok(d, s, e):
        return DER_BAD, spans, 0
    # tbsCertificate's fields: [0] version (optional), serial, signature, issuer, validity,
    # subject, subjectPublicKeyInfo, then the optional ones ([3] extensions).
    nf = 0
    pos = s
    first = True
    subj_s, subj_e = 0, 0
    while pos < e:
        _, tag, fs, fe = _der(d, pos, e)
        pos = fe
        if first and tag == 0xA0:
            first = False
            continue
        first = False
        if nf == 4:
            subj_s, subj_e = fs, fe
        nf += 1
    if nf < 6:
        return DER_BAD, spans, 0
    if not _all_ok(d, subj_s, subj_e):
        return DER_BAD, spans, 0
    rpos = subj_s
    while rpos < subj_e:  # RelativeDistinguishedName: SET OF AttributeTypeAndValue
        _, _, rs, re_ = _der(d, rpos, subj_e)
        rpos = re_
        if not _all_ok(d, rs, re_):
            return DER_BAD, spans, 0
        apos = rs
        while apos < re_:
            _, _, as_, ae = _der(d, apos, re_)
            apos = ae
            if not _all_ok(d, as_, ae):
                return DER_BAD, spans, 0
            if as_ >= ae:
                continue
            _, t0, s0, e0 = _der(d, as_, ae)
            if e0 >= ae or t0 != 0x06 or not _is(d, s0, e0, _CN_OID):
                continue
            _, t1, s1, e1 = _der(d, e0, ae)
            if t1 in (0x0C, 0x13, 0x16, 0x14, 0x1A, 0x1E, 0x1C) and e1 > s1:
                spans[count, 0], spans[count, 1], spans[count, 2] = t1, s1, e1
                count += 1
    # The fields after subjectPublicKeyInfo.
    nf = 0
    pos = s
    first = True
    while pos < e:
        _, tag, fs, fe = _der(d, pos, e)
        pos = fe
        if first and tag == 0xA0:
            first = False
            continue
        first = False
        nf += 1
        if nf <= 6 or tag != 0xA3:
            continue
        ok, _, xs0, xe0 = _der(d, fs, fe)  # SEQUENCE OF Extension
        if not ok or not _all_ok(d, xs0, xe0):
            return DER_BAD, spans, 0
        xpos = xs0
        while xpos < xe0:
            _, _, xs, xe = _der(d, xpos, xe0)
            xpos = xe
            if not _all_ok(d, xs, xe):
                return DER_BAD, spans, 0
            if xs >= xe:
                continue
            _, t0, s0, e0 = _der(d, xs, xe)
            if t0 != 0x06 or not _is(d, s0, e0, _SAN_OID):
                continue
            vs, ve = 0, 0
            at = xs
            while at < xe:  # the last element: extnValue
                _, _, vs, ve = _der(d, at, xe)
                at = ve
            ok, _, gs, ge = _der(d, vs, ve)  # GeneralNames
            if not ok or not _all_ok(d, gs, ge):
                return DER_BAD, spans, 0
            gpos = gs
            while gpos < ge:
                _, gtag, ns, ne = _der(d, gpos, ge)
                gpos = ne
                if gtag == 0x82:
                    spans[count, 0], spans[count, 1], spans[count, 2] = 0x82, ns, ne
                    count += 1
    return DER_OK, spans, count


def new_tables(max_flows: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Empty (keys, dirs, state) with room for ``max_flows`` at half load or less."""
    slots = 1
    while slots < 2 * max_flows:
        slots <<= 1
    return (np.zeros(slots, np.uint64), np.zeros(slots, np.uint64),
            np.zeros((slots, STATE_COLUMNS), np.int64))
