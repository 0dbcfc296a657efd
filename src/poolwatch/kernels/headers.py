"""Decode link, IP and transport headers of every packet in a batch (numba).

One pass per packet, no allocation: the kernel reads the record columns of a ``PACKET`` array
and fills the rest in place, following docs/decoding.md rule by rule. Status codes mirror
``records.PacketStatus`` (numba cannot read the enum, so the values are repeated here and a
test checks they agree).
"""

from __future__ import annotations

import numpy as np
from numba import njit

from .memory import LINE, prefetch

OK = 0
NOT_IP = 1
FRAGMENT = 2
TRUNCATED_L2 = 3
TRUNCATED_L3 = 4
BAD_IP_HEADER = 5
TRUNCATED_L4 = 6
BAD_L4_HEADER = 7
UNKNOWN_LINKTYPE = 8
BAD_EXTENSION_HEADERS = 9

FLAG_FRAGMENT = 1
FLAG_V6 = 2

IPV4 = 4
IPV6 = 6
MAX_EXT_HEADERS = 8
DECODE_AHEAD = 8  # rows ahead whose header lines are prefetched (kernels.memory)


@njit(cache=True, nogil=True, inline="always")
def _be16(buf, i):
    return (np.int64(buf[i]) << 8) | np.int64(buf[i + 1])


@njit(cache=True, nogil=True, inline="always")
def _be64(buf, i):
    v = np.uint64(0)
    for k in range(8):
        v = (v << np.uint64(8)) | np.uint64(buf[i + k])
    return v


@njit(cache=True, nogil=True)
def _ethertype(buf, start, end, off, etype, pk):
    """Follow an EtherType through VLAN tags, PPPoE and MPLS. Returns (l3_off, version|status)."""
    tags = 0
    while etype == 0x8100 or etype == 0x88A8 or etype == 0x9100:
        if start + off + 4 > end:
            return off, -TRUNCATED_L2
        vid = np.uint16(_be16(buf, start + off) & 0x0FFF)
        if tags == 0:
            pk.vlan = vid
        elif tags == 1:
            pk.inner_vlan = vid
        tags += 1
        etype = _be16(buf, start + off + 2)
        off += 4
    if etype == 0x0800:
        return off, IPV4
    if etype == 0x86DD:
        return off, IPV6
    if etype == 0x8864:  # PPPoE session
        if start + off + 8 > end:
            return off, -TRUNCATED_L2
        proto = _be16(buf, start + off + 6)
        off += 8
        return off, IPV4 if proto == 0x0021 else (IPV6 if proto == 0x0057 else -NOT_IP)
    if etype == 0x8847 or etype == 0x8848:  # MPLS: labels until bottom of stack
        while True:
            if start + off + 4 > end:
                return off, -TRUNCATED_L2
            bottom = buf[start + off + 2] & 1
            off += 4
            if bottom:
                break
        if start + off + 1 > end:
            return off, -TRUNCATED_L2
        v = np.int64(buf[start + off]) >> 4
        return off, IPV4 if v == 4 else (IPV6 if v == 6 else -NOT_IP)
    return off, -NOT_IP


@njit(cache=True, nogil=True)
def _family(fam):
    if fam == 2:
        return IPV4
    if fam == 24 or fam == 28 or fam == 30:
        return IPV6
    return -NOT_IP


@njit(cache=True, nogil=True)
def decode_link(buf, start, end, linktype, pk):
    """Link header → (offset of the IP header, 4/6, or minus a status)."""
    avail = end - start
    if linktype == 1:
        if avail < 14:
            return 0, -TRUNCATED_L2
        return _ethertype(buf, start, end, 14, _be16(buf, start + 12), pk)
    if linktype == 113:
        if avail < 16:
            return 0, -TRUNCATED_L2
        return _ethertype(buf, start, end, 16, _be16(buf, start + 14), pk)
    if linktype == 276:
        if avail < 20:
            return 0, -TRUNCATED_L2
        return _ethertype(buf, start, end, 20, _be16(buf, start), pk)
    if linktype == 101 or linktype == 12 or linktype == 14 or linktype == 228 or linktype == 229:
        if avail < 1:
            return 0, -TRUNCATED_L2
        v = np.int64(buf[start]) >> 4
        return 0, IPV4 if v == 4 else (IPV6 if v == 6 else -BAD_IP_HEADER)
    if linktype == 0 or linktype == 108:
        if avail < 4:
            return 0, -TRUNCATED_L2
        le = (np.int64(buf[start + 3]) << 24) | (np.int64(buf[start + 2]) << 16)
        le |= (np.int64(buf[start + 1]) << 8) | np.int64(buf[start])
        be = (np.int64(buf[start]) << 24) | (np.int64(buf[start + 1]) << 16)
        be |= (np.int64(buf[start + 2]) << 8) | np.int64(buf[start + 3])
        if linktype == 108:
            return 4, _family(be)
        return 4, _family(be if le > 0xFFFF else le)
    if linktype == 9:
        off = 0
        if avail >= 2 and buf[start] == 0xFF and buf[start + 1] == 0x03:
            off = 2
        if avail < off + 1:
            return 0, -TRUNCATED_L2
        if buf[start + off] & 1:
            proto = np.int64(buf[start + off])
            off += 1
        else:
            if avail < off + 2:
                return 0, -TRUNCATED_L2
            proto = _be16(buf, start + off)
            off += 2
        return off, IPV4 if proto == 0x21 else (IPV6 if proto == 0x57 else -NOT_IP)
    if linktype == 104:
        if avail < 4:
            return 0, -TRUNCATED_L2
        return _ethertype(buf, start, end, 4, _be16(buf, start + 2), pk)
    return 0, -UNKNOWN_LINKTYPE


@njit(cache=True, nogil=True)
def decode_ipv4(buf, start, end, l3, wirelen, pk):
    """IPv4 header → (offset of the transport header, status)."""
    if end - (start + l3) < 20:
        return 0, TRUNCATED_L3
    p = start + l3
    ihl = (np.int64(buf[p]) & 0x0F) * 4
    if (np.int64(buf[p]) >> 4) != 4 or ihl < 20:
        return 0, BAD_IP_HEADER
    if end - p < ihl:
        return 0, TRUNCATED_L3
    total = _be16(buf, p + 2)
    if total == 0:  # segmentation offload: the frame's length tells
        total = wirelen - l3
    if total < ihl:
        return 0, BAD_IP_HEADER
    pk.ip_len = total
    pk.proto = buf[p + 9]
    pk.src_lo = np.uint64(0x0000FFFF00000000) | np.uint64(
        (np.int64(buf[p + 12]) << 24) | (np.int64(buf[p + 13]) << 16)
        | (np.int64(buf[p + 14]) << 8) | np.int64(buf[p + 15])
    )
    pk.dst_lo = np.uint64(0x0000FFFF00000000) | np.uint64(
        (np.int64(buf[p + 16]) << 24) | (np.int64(buf[p + 17]) << 16)
        | (np.int64(buf[p + 18]) << 8) | np.int64(buf[p + 19])
    )
    frag = _be16(buf, p + 6)
    if frag & 0x1FFF:
        return 0, FRAGMENT
    if frag & 0x2000:
        pk.flags |= FLAG_FRAGMENT
    return l3 + ihl, OK


@njit(cache=True, nogil=True)
def decode_ipv6(buf, start, end, l3, wirelen, pk):
    """IPv6 header and extension-header chain → (offset of the transport header, status)."""
    p = start + l3
    if end - p < 40:
        return 0, TRUNCATED_L3
    if (np.int64(buf[p]) >> 4) != 6:
        return 0, BAD_IP_HEADER
    plen = _be16(buf, p + 4)
    pk.ip_len = 40 + plen if plen else max(40, wirelen - l3)
    pk.flags |= FLAG_V6
    pk.src_hi = _be64(buf, p + 8)
    pk.src_lo = _be64(buf, p + 16)
    pk.dst_hi = _be64(buf, p + 24)
    pk.dst_lo = _be64(buf, p + 32)
    nh = np.int64(buf[p + 6])
    off = l3 + 40
    for _ in range(MAX_EXT_HEADERS):
        h = start + off
        if nh == 0 or nh == 43 or nh == 60 or nh == 135:
            if h + 2 > end or h + (np.int64(buf[h + 1]) + 1) * 8 > end:
                return 0, BAD_EXTENSION_HEADERS
            nh, off = np.int64(buf[h]), off + (np.int64(buf[h + 1]) + 1) * 8
        elif nh == 51:
            if h + 2 > end or h + (np.int64(buf[h + 1]) + 2) * 4 > end:
                return 0, BAD_EXTENSION_HEADERS
            nh, off = np.int64(buf[h]), off + (np.int64(buf[h + 1]) + 2) * 4
        elif nh == 44:
            if h + 8 > end:
                return 0, BAD_EXTENSION_HEADERS
            fo = _be16(buf, h + 2)
            nh, off = np.int64(buf[h]), off + 8
            if fo >> 3:
                pk.proto = nh
                return 0, FRAGMENT
            if fo & 1:
                pk.flags |= FLAG_FRAGMENT
        else:
            break
    pk.proto = nh
    return off, OK


@njit(cache=True, nogil=True)
def icmp_pair(proto, itype, code):
    """Zeek's/Community ID's request↔reply pairing; unpaired types keep their code."""
    if proto == 1:
        if itype == 8 or itype == 13 or itype == 15 or itype == 17:
            return itype - 8 if itype == 8 else itype + 1
        if itype == 0:
            return 8
        if itype == 14 or itype == 16 or itype == 18:
            return itype - 1
        if itype == 9:
            return 10
        if itype == 10:
            return 9
        return code
    if itype == 128 or itype == 130 or itype == 133 or itype == 135 or itype == 139 or itype == 144:
        return itype + 1
    if itype == 129 or itype == 131 or itype == 134 or itype == 136 or itype == 140 or itype == 145:
        return itype - 1
    return code


@njit(cache=True, nogil=True)
def decode_l4(buf, start, end, l4, pk):
    """TCP/UDP/ICMP header → status; sets ports, flags and the payload span."""
    ip_end = min(start + pk.l3_off + np.int64(pk.ip_len), end)
    avail = ip_end - (start + l4)
    h = start + l4
    proto = pk.proto
    if proto == 6:
        if avail < 20:
            return TRUNCATED_L4
        doff = (np.int64(buf[h + 12]) >> 4) * 4
        if doff < 20:
            return BAD_L4_HEADER
        pk.sport, pk.dport, pk.tcp_flags = _be16(buf, h), _be16(buf, h + 2), buf[h + 13]
        hdr = doff
    elif proto == 17:
        if avail < 8:
            return TRUNCATED_L4
        pk.sport, pk.dport = _be16(buf, h), _be16(buf, h + 2)
        hdr = 8
    elif proto == 1 or proto == 58:
        if avail < 4:
            return TRUNCATED_L4
        itype = np.int64(buf[h])
        pk.sport, pk.dport = itype, icmp_pair(proto, itype, np.int64(buf[h + 1]))
        hdr = 4
    else:
        hdr = 0
    pk.payload_off = l4 + hdr
    pk.payload_len = max(0, avail - hdr)
    return OK


@njit(cache=True, nogil=True)
def decode_packets(buf, packets):
    """Fill the header columns of every row of ``packets`` (record columns already set)."""
    n = len(packets)
    for i in range(n):
        if i + DECODE_AHEAD < n:  # the headers of a packet a few rows on: no wait for them
            at = np.int64(packets[i + DECODE_AHEAD].data_off)
            prefetch(buf, at)
            prefetch(buf, at + LINE)
        pk = packets[i]
        start = np.int64(pk.data_off)
        end = start + np.int64(pk.caplen)
        l3, kind = decode_link(buf, start, end, np.int64(pk.linktype), pk)
        if kind < 0:
            pk.status = -kind
            continue
        pk.l3_off = l3
        wirelen = np.int64(pk.wirelen)
        if kind == IPV4:
            l4, status = decode_ipv4(buf, start, end, l3, wirelen, pk)
        else:
            l4, status = decode_ipv6(buf, start, end, l3, wirelen, pk)
        if status == OK:
            pk.l4_off = l4
            status = decode_l4(buf, start, end, l4, pk)
        pk.status = status


@njit(cache=True, nogil=True)
def tally_packets(packets, counts):
    """Add each row's status to ``counts`` (int64, one slot per status) and return the sum of
    the captured lengths: a scan's per-batch bookkeeping in one pass instead of three numpy
    passes over strided columns."""
    total = np.int64(0)
    n_status = len(counts)
    for i in range(len(packets)):
        s = np.int64(packets[i].status)
        if s < n_status:
            counts[s] += 1
        total += np.int64(packets[i].caplen)
    return total
