"""Plain-Python Community ID v1, one flow at a time, with hashlib. Used only by the tests.

Written from the spec (https://github.com/corelight/community-id-spec) independently of the
numba kernels in :mod:`poolwatch.kernels.communityid`, taking the same column values.
"""

from __future__ import annotations

import base64
import hashlib

PORT_PROTOS = frozenset({1, 6, 17, 58, 132})  # ICMP, TCP, UDP, ICMPv6, SCTP

# Zeek's request/response pairing of ICMP and ICMPv6 message types.
ICMP_PAIRS = {
    1: {8: 0, 0: 8, 13: 14, 14: 13, 15: 16, 16: 15, 10: 9, 9: 10, 17: 18, 18: 17},
    58: {128: 129, 129: 128, 130: 131, 131: 130, 133: 134, 134: 133,
         135: 136, 136: 135, 139: 140, 140: 139, 144: 145, 145: 144},
}


def address_bytes(hi: int, lo: int) -> bytes:
    """Network-order bytes of an address stored as (hi, lo); 4 bytes when IPv4-mapped."""
    hi, lo = int(hi), int(lo)
    if hi == 0 and lo >> 32 == 0xFFFF:
        return (lo & 0xFFFFFFFF).to_bytes(4, "big")
    return ((hi << 64) | lo).to_bytes(16, "big")


def hash_input(src_hi, src_lo, dst_hi, dst_lo, src_port, dest_port, proto, seed=0) -> bytes:
    """The byte string Community ID v1 hashes for one flow."""
    proto = int(proto)
    saddr, daddr = address_bytes(src_hi, src_lo), address_bytes(dst_hi, dst_lo)
    sport, dport = int(src_port), int(dest_port)
    one_way = False
    if proto in ICMP_PAIRS:
        pair = ICMP_PAIRS[proto].get(sport)
        if pair is None:
            one_way = True
        else:
            dport = pair
    has_ports = proto in PORT_PROTOS
    ordered = one_way or (saddr, sport if has_ports else 0) <= (daddr, dport if has_ports else 0)
    if not ordered:
        saddr, daddr, sport, dport = daddr, saddr, dport, sport
    data = int(seed).to_bytes(2, "big") + saddr + daddr + bytes([proto, 0])
    if has_ports:
        data += sport.to_bytes(2, "big") + dport.to_bytes(2, "big")
    return data


def community_id(src_hi, src_lo, dst_hi, dst_lo, src_port, dest_port, proto, seed=0) -> str:
    """``"1:" + base64(sha1(hash_input(...)))`` for one flow."""
    data = hash_input(src_hi, src_lo, dst_hi, dst_lo, src_port, dest_port, proto, seed)
    return "1:" + base64.b64encode(hashlib.sha1(data).digest()).decode("ascii")
