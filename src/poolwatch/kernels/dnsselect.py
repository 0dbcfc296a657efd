"""Pick the DNS messages worth parsing from a batch, in one pass (numba).

Passive DNS reads only responses that can give an address a name. Deciding that takes a look
at every packet (the port), then at the few on port 53 (status, protocol, the DNS header,
the first question's type), and the rest of the batch must cost nothing: one loop here
instead of a dozen numpy passes over the batch's columns, which cost a tenth of a scan's
main thread on the benchmark input. :mod:`poolwatch.kernels._reference_dnsselect` is the
plain numpy version that the tests compare this with.

:func:`select_dns_messages` returns, for the packets to hand to Python (``picked``), the
message's start in the buffer, the bytes captured and the bytes it had on the wire, and
whether it came over TCP (those are segments of a byte stream, every one with payload is
picked); UDP datagrams are picked only when they hold a whole DNS header, are responses
with answers, and ask (first question) for A, AAAA or ANY, or for something this walk
cannot read (a compression pointer, a label past the captured bytes): the parser decides
those. ``counts`` holds what was seen and not picked (see ``C_*``).
"""

from __future__ import annotations

import numpy as np
from numba import njit

STATUS_OK = 0
UDP = 17
TCP = 6
QTYPE_A, QTYPE_AAAA, QTYPE_ANY = 1, 28, 255

C_PACKETS = 0  # port-53 UDP/TCP packets with payload
C_QUERIES = 1  # UDP messages with the QR bit clear
C_NO_ADDRESSES = 2  # UDP responses without answers, or whose question asks for no address
C_TRUNCATED = 3  # UDP payloads without a whole DNS header, cut by the capture
C_MALFORMED = 4  # UDP payloads without a whole DNS header, whole on the wire
C_LEN = 5


@njit(cache=True, nogil=True, inline="always")
def _u16(buf, at):
    return (np.int64(buf[at]) << 8) | np.int64(buf[at + 1])


@njit(cache=True, nogil=True)
def first_question_type(buf, msg, cap):
    """QTYPE of the first question of the message at ``msg`` (``cap`` bytes captured), -1
    where the name cannot be walked here (a compression pointer, a bad label length, the end
    of the captured bytes)."""
    at = msg + 12
    end = msg + cap
    for _ in range(128):  # a name of 255 bytes has at most 127 labels
        if at >= end:
            return -1
        n = np.int64(buf[at])
        if n == 0:
            return _u16(buf, at + 1) if at + 3 <= end else -1
        if n >= 64:
            return -1
        at += n + 1
    return -1


@njit(cache=True, nogil=True)
def select_dns_messages(buf, packets, port):
    """(picked rows, start, captured, wire, tcp flags, counts) of one batch; see the module
    docstring. ``port`` is the DNS port (53)."""
    n = len(packets)
    picked = np.empty(n, np.int64)
    start = np.empty(n, np.int64)
    cap = np.empty(n, np.int64)
    wire = np.empty(n, np.int64)
    tcp = np.empty(n, np.bool_)
    counts = np.zeros(C_LEN, np.int64)
    k = 0
    for i in range(n):
        p = packets[i]
        if p.sport != port and p.dport != port:
            continue
        if p.status != STATUS_OK or (p.proto != UDP and p.proto != TCP) or p.payload_len == 0:
            continue
        counts[C_PACKETS] += 1
        data_off = np.int64(p.data_off)
        s = data_off + np.int64(p.payload_off)
        c = np.int64(p.payload_len)
        # Bytes the payload had on the wire (more than captured under a snap length).
        w = max(np.int64(p.l3_off) + np.int64(p.ip_len) - np.int64(p.payload_off), c)
        if p.proto == TCP:
            picked[k], start[k], cap[k], wire[k], tcp[k] = i, s, c, w, True
            k += 1
            continue
        # The UDP length covers the whole datagram, first IP fragment included.
        w = max(w, _u16(buf, data_off + np.int64(p.l4_off) + 4) - 8)
        if c < 12:  # no whole DNS header
            counts[C_TRUNCATED if c < w else C_MALFORMED] += 1
            continue
        if not buf[s + 2] & 0x80:
            counts[C_QUERIES] += 1
            continue
        qdcount = _u16(buf, s + 4)
        ancount = _u16(buf, s + 6)
        qtype = first_question_type(buf, s, c)
        if ancount == 0 or (qdcount == 1 and qtype != -1 and qtype != QTYPE_A
                            and qtype != QTYPE_AAAA and qtype != QTYPE_ANY):
            counts[C_NO_ADDRESSES] += 1
            continue
        picked[k], start[k], cap[k], wire[k], tcp[k] = i, s, c, w, False
        k += 1
    return picked[:k], start[:k], cap[:k], wire[:k], tcp[:k], counts
