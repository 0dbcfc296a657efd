"""Plain-Python twin of ``kernels.prefilter``, written independently, for tests only.

The flow table is a Python ``set`` with a size limit instead of an open-addressing array,
and the hash is recomputed with Python integers masked to 64 bits, so a test comparing the
two checks the kernel's hashing, probing, deletion and bookkeeping rather than running the
same code twice. Only the SYN cache keeps the kernel's direct-mapped layout, because which
entries it overwrites is part of its contract.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence

import numpy as np

M64 = (1 << 64) - 1
SELECTED, NEW_FLOW, SYN_FROM_SENDER, SYN_FROM_RECEIVER = 1, 2, 4, 8
WHITESPACE = b" \t\n\r\x0b\x0c"


def _mix(h: int, v: int) -> int:
    return h ^ ((v + 0x9E3779B97F4A7C15 + ((h << 6) & M64) + (h >> 2)) & M64)


def flow_hash_reference(vlan, inner, proto, a_hi, a_lo, a_port, b_hi, b_lo, b_port) -> int:
    """``kernels.flowtable.flow_hash`` with Python integers; 0 becomes 1 (0 = empty slot)."""
    h = (vlan << 32) | (inner << 8) | proto
    for v in (a_hi, a_lo, b_hi, b_lo, (a_port << 16) | b_port):
        h = _mix(h, v)
    h ^= h >> 33
    h = (h * 0xFF51AFD7ED558CCD) & M64
    h ^= h >> 33
    return h or 1


def _endpoints(p) -> tuple[tuple[int, int, int], tuple[int, int, int]]:
    return ((int(p["src_hi"]), int(p["src_lo"]), int(p["sport"])),
            (int(p["dst_hi"]), int(p["dst_lo"]), int(p["dport"])))


def _hash(p, first, second) -> int:
    return flow_hash_reference(int(p["vlan"]), int(p["inner_vlan"]), int(p["proto"]),
                               *first, *second)


def canonical_hash_reference(p) -> int:
    src, dst = _endpoints(p)
    return _hash(p, *sorted((src, dst)))


def starts_json_reference(payload: bytes) -> bool:
    """``{`` then ``"`` (or the end), whitespace allowed around the brace."""
    rest = payload.lstrip(WHITESPACE)
    return rest[:1] == b"{" and rest[1:].lstrip(WHITESPACE)[:1] in (b"", b'"')


def random_looking_reference(data: bytes) -> bool:
    """Entropy in bits per byte at least 0.85 × log2(min(len, 256)); 16 bytes at least."""
    if len(data) < 16:
        return False
    n = len(data)
    bits = -sum(c / n * math.log2(c / n) for c in Counter(data).values())
    return bits >= 0.85 * math.log2(min(n, 256))


def _seq(buf: bytes, p) -> int | None:
    at = int(p["data_off"]) + int(p["l4_off"])
    if int(p["payload_off"]) - int(p["l4_off"]) < 20 or at + 8 > len(buf):
        return None
    return int.from_bytes(buf[at + 4 : at + 8], "big")


def rule_matches_reference(rule: tuple[bytes, int, list[bytes], int], payload: bytes,
                           opening: bool) -> bool:
    """One (prefix, exact length or 0, needles, flags) rule; flags 1 first payload only,
    2 random-looking, 4 a whole SV2 frame."""
    head, length, needles, flags = rule
    return (payload.startswith(head)
            and (not length or len(payload) == length)
            and all(n in payload for n in needles)
            and (not flags & 4 or (len(payload) >= 6
                                   and 6 + int.from_bytes(payload[3:6], "little") <= len(payload)))
            and (not flags & 2 or random_looking_reference(payload))
            and (not flags & 1 or opening))


def select_stream_packets_reference(
    buf: bytes, packets: np.ndarray, table: set[int], capacity: int, max_fill: int,
    syns: list[int], syn_seqs: list[int] | None = None,
    rules: Sequence[tuple[bytes, int, list[bytes], int]] = (),
) -> tuple[list[int], list[int], int]:
    """(marks, hashes, refused) by the kernel's rules; ``table``, ``syns`` and ``syn_seqs``
    are updated."""
    syn_seqs = syn_seqs if syn_seqs is not None else [0] * len(syns)
    limit = min(max_fill, capacity - 1)
    marks, hashes, refused = [0] * len(packets), [0] * len(packets), 0
    for i, p in enumerate(packets):
        if p["status"] != 0 or p["proto"] != 6:
            continue
        src, dst = _endpoints(p)
        if int(p["tcp_flags"]) & 0x12 == 0x02:
            d = _hash(p, src, dst)
            syns[d % len(syns)] = d
            syn_seqs[d % len(syns)] = _seq(buf, p) or 0
        h = canonical_hash_reference(p)
        if h in table:
            marks[i], hashes[i] = SELECTED, h
            continue
        start = int(p["data_off"]) + int(p["payload_off"])
        payload = buf[start : start + int(p["payload_len"])]
        if not payload:
            continue
        mine = _hash(p, src, dst)
        seq = _seq(buf, p)
        opening = (syns[mine % len(syns)] == mine and seq is not None
                   and (syn_seqs[mine % len(syns)] + 1) % (1 << 32) == seq)
        if not (starts_json_reference(payload)
                or any(rule_matches_reference(r, payload, opening) for r in rules)):
            continue
        bits = SELECTED | NEW_FLOW
        if syns[_hash(p, src, dst) % len(syns)] == _hash(p, src, dst):
            bits |= SYN_FROM_SENDER
        if syns[_hash(p, dst, src) % len(syns)] == _hash(p, dst, src):
            bits |= SYN_FROM_RECEIVER
        marks[i], hashes[i] = bits, h
        if len(table) < limit:
            table.add(h)
        else:
            refused += 1
    return marks, hashes, refused


def forget_flows_reference(table: set[int], hashes: Sequence[int]) -> int:
    removed = 0
    for h in hashes:
        h = int(h) or 1
        if h in table:
            table.remove(h)
            removed += 1
    return removed
