"""Read the questions and answers of DNS responses in a batch, in one call (numba).

Passive DNS used to walk every response in Python (dpkt's ``unpack_name`` for each name,
``struct`` for the fixed fields): 7 µs a message, a tenth of a scan's detect stage on the
benchmark input. This kernel does the same walk for all the messages of a batch and leaves
Python only the names' text and the address map. It follows ``dpkt.dns.unpack_name`` to the
letter (compression pointers only backwards, names of at most 255 bytes, the label types it
refuses) and :meth:`poolwatch.detect.dns.PassiveDns._message` for the rest, which stays as
the parser of DNS over TCP and as the twin the tests compare this with.

Per message: a status (``M_*``) and its items, in the order the Python parser meets them.
An item is a decoded name with what it belongs to (``kind``): a question (``K_QUESTION``),
an answer record of class IN of type A, AAAA (its data is ``buf[data_at:data_at+data_len]``)
or CNAME (its target is a second name, at ``data_at``/``data_len`` in ``names``), or a name
that was read before the message ran out or broke (``K_READ``): it is not used, but Python
decodes it, as the Python parser did, so a name that is not UTF-8 makes the message
malformed in both. Names are written to ``names`` (labels joined by ``.``); when that buffer
is full the message gets ``M_FULL`` and is parsed in Python.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from .dnsselect import _u16

M_OK = 0
M_NEED_DATA = 1  # ran past the end of the captured bytes (cut, or lying counts)
M_BAD = 2  # a label or pointer dpkt refuses, or a name over 255 bytes
M_NO_ANSWERS = 3  # ANCOUNT 0: nothing to read
M_FULL = 4  # the names buffer is full: parse this one in Python

K_READ = -1  # a name read, then the message ended or broke: decoded for its errors only
K_QUESTION = 0
CLASS_IN = 1
TYPE_A, TYPE_CNAME, TYPE_AAAA = 1, 5, 28

_OK, _NEED, _BAD, _FULL = 0, 1, 2, 4


@njit(cache=True, nogil=True)
def _name(buf, m0, size, off, names, w):
    """``dpkt.dns.unpack_name`` of the message at ``buf[m0:m0+size]`` from offset ``off``:
    (status, offset after the name, end of the name's bytes written at ``names[w:]``)."""
    saved = 0
    start_off = off
    length = 0
    first = True
    while True:
        if off >= size:
            return _NEED, 0, w
        n = np.int64(buf[m0 + off])
        if n == 0:
            off += 1
            break
        if n & 0xC0 == 0xC0:
            if off + 2 > size:  # struct.unpack of one byte
                return _NEED, 0, w
            ptr = ((n << 8) | np.int64(buf[m0 + off + 1])) & 0x3FFF
            if ptr >= start_off:
                return _BAD, 0, w
            off += 2
            if saved == 0:
                saved = off
            start_off = ptr
            off = ptr
        elif n & 0xC0 == 0:
            off += 1
            length += n + 1
            if length > 255:
                return _BAD, 0, w
            take = min(n, size - off)  # a label cut short: the next step needs data
            if w + take + 1 > len(names):
                return _FULL, 0, w
            if not first:
                names[w] = 46  # "."
                w += 1
            first = False
            for k in range(take):
                names[w + k] = buf[m0 + off + k]
            w += take
            off += n
        else:
            return _BAD, 0, w
    if saved == 0:
        saved = off
    return _OK, saved, w


@njit(cache=True, nogil=True)
def parse_dns_messages(buf, starts, sizes, names):
    """Walk the responses at ``buf[starts[i]:starts[i]+sizes[i]]`` (each at least 12 bytes).

    Returns ``(status, flags, first, count, kind, ttl, name_at, name_len, data_at, data_len,
    names_used)``: per message its ``M_*`` status, header flags and the range of its items;
    per item its ``K_*`` kind or record type, TTL, name and data (see the module docstring).
    """
    m = len(starts)
    status = np.zeros(m, np.int64)
    flags = np.zeros(m, np.int64)
    first = np.zeros(m, np.int64)
    count = np.zeros(m, np.int64)
    cap = m + 1
    for i in range(m):
        cap += sizes[i] // 5 + 1  # a question takes 5 bytes at least, an answer 11
    kind = np.empty(cap, np.int64)
    ttl = np.zeros(cap, np.int64)
    name_at = np.zeros(cap, np.int64)
    name_len = np.zeros(cap, np.int64)
    data_at = np.zeros(cap, np.int64)
    data_len = np.zeros(cap, np.int64)
    k = 0
    w = 0
    for i in range(m):
        m0 = starts[i]
        size = sizes[i]
        flags[i] = _u16(buf, m0 + 2)
        first[i] = k
        qdcount = _u16(buf, m0 + 4)
        ancount = _u16(buf, m0 + 6)
        if ancount == 0:
            status[i] = M_NO_ANSWERS
            continue
        k0, w0 = k, w
        st = _OK
        off = 12
        for _ in range(qdcount):
            st, end, w2 = _name(buf, m0, size, off, names, w)
            if st != _OK:
                break
            kind[k], name_at[k], name_len[k] = K_READ, w, w2 - w
            k += 1
            w = w2
            if end + 4 > size:
                st = _NEED
                break
            kind[k - 1] = K_QUESTION
            off = end + 4
        if st == _OK:
            for _ in range(ancount):
                st, end, w2 = _name(buf, m0, size, off, names, w)
                if st != _OK:
                    break
                owner_at, owner_len = w, w2 - w
                w = w2
                off = end
                if off + 10 > size:
                    kind[k], name_at[k], name_len[k] = K_READ, owner_at, owner_len
                    k += 1
                    st = _NEED
                    break
                rtype = _u16(buf, m0 + off)
                rclass = _u16(buf, m0 + off + 2)
                rttl = (_u16(buf, m0 + off + 4) << 16) | _u16(buf, m0 + off + 6)
                rdlen = _u16(buf, m0 + off + 8)
                off += 10
                if off + rdlen > size:
                    kind[k], name_at[k], name_len[k] = K_READ, owner_at, owner_len
                    k += 1
                    st = _NEED
                    break
                if rclass == CLASS_IN and rtype == TYPE_CNAME:
                    st, _, w2 = _name(buf, m0, size, off, names, w)
                    if st != _OK:
                        kind[k], name_at[k], name_len[k] = K_READ, owner_at, owner_len
                        k += 1
                        break
                    kind[k], ttl[k], name_at[k], name_len[k] = rtype, rttl, owner_at, owner_len
                    data_at[k], data_len[k] = w, w2 - w
                    k += 1
                    w = w2
                elif rclass == CLASS_IN and (rtype == TYPE_A or rtype == TYPE_AAAA):
                    kind[k], ttl[k], name_at[k], name_len[k] = rtype, rttl, owner_at, owner_len
                    data_at[k], data_len[k] = m0 + off, rdlen
                    k += 1
                else:
                    kind[k], name_at[k], name_len[k] = K_READ, owner_at, owner_len
                    k += 1
                off += rdlen
        if st == _FULL:
            status[i] = M_FULL
            k, w = k0, w0
        else:
            status[i] = M_OK if st == _OK else (M_NEED_DATA if st == _NEED else M_BAD)
        count[i] = k - first[i]
    return (status, flags, first, count, kind[:k], ttl[:k], name_at[:k], name_len[:k],
            data_at[:k], data_len[:k], w)
