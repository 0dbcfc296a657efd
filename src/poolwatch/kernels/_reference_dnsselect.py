"""Plain numpy reference for :mod:`poolwatch.kernels.dnsselect` (tests compare the two).

Column-wise masks over the whole batch: the way passive DNS picked its messages before the
kernel, kept as the readable statement of what the kernel must return.
"""

from __future__ import annotations

import numpy as np

from .dnsselect import (C_LEN, C_MALFORMED, C_NO_ADDRESSES, C_PACKETS, C_QUERIES,
                        C_TRUNCATED, QTYPE_A, QTYPE_ANY, QTYPE_AAAA, STATUS_OK, TCP, UDP)


def question_types_reference(buf: np.ndarray, msg: np.ndarray, cap: np.ndarray) -> np.ndarray:
    """QTYPE of the first question of each message, -1 where the name cannot be walked."""
    qtype = np.full(len(msg), -1, np.int64)
    live = np.arange(len(msg))
    at, end = msg + 12, msg + cap
    for _ in range(128):
        inside = at < end
        if not inside.all():
            live, at, end = live[inside], at[inside], end[inside]
        if len(live) == 0:
            break
        n = buf[at]
        last = n == 0
        if last.any():
            ok = last & (at + 3 <= end)
            q = at[ok]
            qtype[live[ok]] = (buf[q + 1].astype(np.int64) << 8) | buf[q + 2]
        label = (n > 0) & (n < 64)
        live, at, end = live[label], at[label] + n[label] + 1, end[label]
    return qtype


def select_dns_messages_reference(buf: np.ndarray, pk: np.ndarray, port: int):
    """Same contract as :func:`poolwatch.kernels.dnsselect.select_dns_messages`."""
    counts = np.zeros(C_LEN, np.int64)
    idx = np.flatnonzero((pk["sport"] == port) | (pk["dport"] == port))
    proto = pk["proto"][idx]
    idx = idx[(pk["status"][idx] == STATUS_OK) & ((proto == UDP) | (proto == TCP))
              & (pk["payload_len"][idx] > 0)]
    counts[C_PACKETS] = len(idx)
    data_off = pk["data_off"][idx].astype(np.int64)
    payload_off = pk["payload_off"][idx].astype(np.int64)
    start = data_off + payload_off
    cap = pk["payload_len"][idx].astype(np.int64)
    wire = np.maximum(pk["l3_off"][idx].astype(np.int64) + pk["ip_len"][idx] - payload_off, cap)
    udp = pk["proto"][idx] == UDP
    at = data_off[udp] + pk["l4_off"][idx[udp]] + 4
    udp_len = (buf[at].astype(np.int64) << 8) | buf[at + 1]
    wire[udp] = np.maximum(wire[udp], udp_len - 8)
    short = udp & (cap < 12)
    cut = cap < wire
    counts[C_TRUNCATED] = np.count_nonzero(short & cut)
    counts[C_MALFORMED] = np.count_nonzero(short & ~cut)
    keep = ~udp  # TCP: every segment with payload
    whole = np.flatnonzero(udp & ~short)
    response = (buf[start[whole] + 2] & 0x80) != 0
    counts[C_QUERIES] = np.count_nonzero(~response)
    sel = whole[response]
    at = start[sel]
    qdcount = (buf[at + 4].astype(np.int64) << 8) | buf[at + 5]
    ancount = (buf[at + 6].astype(np.int64) << 8) | buf[at + 7]
    qtype = question_types_reference(buf, at, cap[sel])
    wanted = (ancount > 0) & ((qdcount != 1) | (qtype == -1) | (qtype == QTYPE_A)
                              | (qtype == QTYPE_AAAA) | (qtype == QTYPE_ANY))
    counts[C_NO_ADDRESSES] = np.count_nonzero(~wanted)
    keep[sel[wanted]] = True
    k = np.flatnonzero(keep)
    return idx[k], start[k], cap[k], wire[k], ~udp[k], counts
