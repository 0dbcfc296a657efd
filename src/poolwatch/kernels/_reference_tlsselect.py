"""Plain-Python twin of ``kernels.tlsselect``, written independently, for tests only.

The flow table is a ``dict`` keyed by the direction-free hash (recomputed with Python
integers by ``_reference_prefilter.flow_hash_reference``), the client side is remembered as
its endpoint rather than a directed hash, and sequence arithmetic uses Python integers. A
test comparing the two checks the kernel's hashing, probing, deletion, windows and record
walk rather than running the same code twice.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np

from ._reference_prefilter import canonical_hash_reference

SELECTED, NEW_FLOW, FROM_CLIENT, SERVER_DONE, EARLIER = 1, 2, 4, 8, 16
LOW_BITS = (1 << 20) - 1  # the kernel's EARLIER looks at the hash's low 20 bits


def _seq(buf: bytes, p) -> int | None:
    at = int(p["data_off"]) + int(p["l4_off"])
    if int(p["payload_off"]) - int(p["l4_off"]) < 20 or at + 8 > len(buf):
        return None
    return int.from_bytes(buf[at + 4 : at + 8], "big")


def _signed(d: int) -> int:
    d %= 1 << 32
    return d - (1 << 32) if d >= 1 << 31 else d


def client_hello_length_reference(payload: bytes, max_hs: int) -> int:
    if (len(payload) < 6 or payload[0] != 0x16 or payload[1] != 3 or payload[2] > 4
            or payload[5] != 1):
        return 0
    rec = int.from_bytes(payload[3:5], "big")
    if not 4 <= rec <= 18432:
        return 0
    need = 5 + rec
    if len(payload) >= 9:
        msg = 4 + int.from_bytes(payload[6:9], "big")
        if msg > rec:
            records = -(-msg // rec)
            need = msg + 5 * records
    return min(need, max_hs)


class TlsSelectReference:
    """The kernel's tables as a dict: hash -> [client endpoint, c_base, c_len, s_base, s_len,
    s_next]."""

    def __init__(self, max_fill: int, max_hs: int) -> None:
        self.flows: dict[int, list] = {}
        self.max_fill, self.max_hs = max_fill, max_hs
        self.refused = 0

    def forget(self, hashes: Iterable[int]) -> int:
        return sum(self.flows.pop(int(h) or 1, None) is not None for h in hashes)

    def select(self, buf: bytes, packets: Sequence) -> tuple[list[int], list[int], list[int]]:
        marks, hashes = self.open(buf, packets)
        return marks, hashes, self.mark(buf, packets, marks, hashes)

    def open(self, buf: bytes, packets: Sequence) -> tuple[list[int], list[int]]:
        """The kernel's first pass (``open_tls_flows``): (marks, hashes)."""
        n = len(packets)
        marks, hashes = [0] * n, [0] * n
        seen: set[int] = set()
        for i in range(n):
            p = packets[i]
            ok = int(p["status"]) == 0 and int(p["proto"]) == 6 and int(p["payload_len"]) > 0
            if not ok:
                continue
            h = canonical_hash_reference(p)
            hashes[i] = h
            earlier = (h & LOW_BITS) in seen
            seen.add(h & LOW_BITS)
            start = int(p["data_off"]) + int(p["payload_off"])
            payload = buf[start : start + int(p["payload_len"])]
            need = client_hello_length_reference(payload, self.max_hs)
            if not need or h in self.flows:
                continue
            seq = _seq(buf, p)
            if seq is None:
                continue
            if len(self.flows) >= self.max_fill:
                self.refused += 1
                continue
            s_base = -1
            if int(p["tcp_flags"]) & 0x10:
                at = int(p["data_off"]) + int(p["l4_off"])
                s_base = int.from_bytes(buf[at + 8 : at + 12], "big")
            client = (int(p["src_hi"]), int(p["src_lo"]), int(p["sport"]))
            self.flows[h] = [client, seq, need, s_base, self.max_hs, 0]
            marks[i] = NEW_FLOW | (EARLIER if earlier else 0)
        return marks, hashes

    def mark(self, buf: bytes, packets: Sequence, marks: list[int], hashes: list[int]) -> list[int]:
        """The kernel's second pass (``mark_tls_packets``): ``rel``; marks and hashes updated."""
        n = len(packets)
        rel = [0] * n
        for i in range(n):
            if not hashes[i]:
                continue
            p = packets[i]
            f = self.flows.get(hashes[i])
            seq = _seq(buf, p)
            if f is None or seq is None:
                hashes[i] = 0
                continue
            size = int(p["payload_len"])
            if (int(p["src_hi"]), int(p["src_lo"]), int(p["sport"])) == f[0]:
                r = _signed(seq - f[1])
                if r + size > 0 and r < f[2]:
                    marks[i] |= SELECTED | FROM_CLIENT
                    rel[i] = r
                else:
                    marks[i], hashes[i] = 0, 0
                continue
            if f[3] < 0:
                f[3] = seq
            r = _signed(seq - f[3])
            start = int(p["data_off"]) + int(p["payload_off"])
            data = buf[start : start + size]
            nxt = f[5]
            if nxt >= 0 and r <= nxt < r + size:
                while nxt < r + size:
                    head = data[nxt - r : nxt - r + 5]
                    if len(head) < 5:
                        nxt = -1
                        break
                    if head[0] != 0x16:
                        f[4] = min(f[4], nxt)
                        marks[i] |= SERVER_DONE
                        nxt = -1
                        break
                    nxt += 5 + int.from_bytes(head[3:5], "big")
                f[5] = nxt
            if r + size > 0 and r < f[4]:
                marks[i] |= SELECTED
                rel[i] = r
            elif marks[i] & SERVER_DONE:
                rel[i] = r
            else:
                hashes[i] = 0
        return rel


def as_arrays(result: tuple[list[int], list[int], list[int]]):
    marks, hashes, rel = result
    return (np.array(marks, np.uint8), np.array(hashes, np.uint64), np.array(rel, np.int64))
