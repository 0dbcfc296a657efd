"""Plain-Python twin of ``kernels.flowstats``, written independently, for tests only.

Flows live in a ``dict`` keyed by ``(vlan, inner_vlan, lower endpoint, higher endpoint)``
instead of a hashed open-addressing table, and the SYN cache is a ``set`` of directed
endpoint pairs (the kernel's cache is direct-mapped and may forget a SYN on a collision;
tests use few flows). Packets are read one by one as Python integers. No expiry: the twin
describes what the kernel's rows hold for flows that are still open.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

N_BINS = 32
BIN_BYTES = 16


def _new_flow(client: int, ts: int, n_coins: int) -> dict:
    return {
        "client": client, "first": ts, "last": ts,
        "npay": [0, 0], "bytes": [0, 0], "lastpay": [None, None],
        "bstart": [None, None], "bsize": [0, 0], "bkind": [0, 0], "banswered": [False, False],
        "nburst": [0, 0], "ndone": [0, 0], "nanswered": [0, 0], "nanswer": [0, 0],
        "nunsol": [0, 0], "lastunsol": [None, None],
        "ssize": [0.0, 0.0], "ssize2": [0.0, 0.0], "sgap": [0.0, 0.0], "sgap2": [0.0, 0.0],
        "sugap": [0.0, 0.0], "sugap2": [0.0, 0.0],
        "hist_all": [[0] * N_BINS, [0] * N_BINS], "hist_answer": [[0] * N_BINS, [0] * N_BINS],
        "hits": [[0] * n_coins, [0] * n_coins], "head": [-1, -1],
    }


def _add_bin(hist: list[int], size: int) -> None:
    if size < N_BINS * BIN_BYTES:
        hist[size // BIN_BYTES] = min(hist[size // BIN_BYTES] + 1, 65535)


def flow_stats_reference(packets: np.ndarray, *, burst_gap_ns: int, reply_ns: int,
                         block_tol_ns: int = 0,
                         block_times: Sequence[Sequence[int]] = (),
                         buf: bytes = b"") -> dict[tuple, dict]:
    """Per-flow statistics of the TCP flows in ``packets`` (a PACKET array, bytes in
    ``buf``), keyed by ``(vlan, inner_vlan, a, b)`` with endpoints ``(hi, lo, port)`` and
    ``a < b``. ``head[d]``: the first captured bytes (at most 3) of d's first payload packet,
    as ``(count, bytes)``, or -1 before any."""
    flows: dict[tuple, dict] = {}
    syns: set[tuple] = set()
    blocks = [sorted(int(t) for t in series) for series in block_times]
    for p in packets:
        if int(p["status"]) != 0 or int(p["proto"]) != 6:
            continue
        src = (int(p["src_hi"]), int(p["src_lo"]), int(p["sport"]))
        dst = (int(p["dst_hi"]), int(p["dst_lo"]), int(p["dport"]))
        vlans = (int(p["vlan"]), int(p["inner_vlan"]))
        flags = int(p["tcp_flags"])
        if flags & 0x02:
            syns.add((vlans, src, dst) if not flags & 0x10 else (vlans, dst, src))
        size = int(p["ip_len"]) - (int(p["payload_off"]) - int(p["l3_off"]))
        if size <= 0:
            continue
        ts = int(p["ts_ns"])
        a, b = min(src, dst), max(src, dst)
        key = (*vlans, a, b)
        d = 0 if src == a else 1
        o = 1 - d
        f = flows.get(key)
        if f is None:
            if (vlans, src, dst) in syns:
                client = 1 if d == 0 else 2
            elif (vlans, dst, src) in syns:
                client = 2 if d == 0 else 1
            else:
                client = 0
            f = flows[key] = _new_flow(client, ts, len(blocks))
        f["first"] = min(f["first"], ts)
        f["last"] = max(f["last"], ts)
        last = f["lastpay"][d]
        other_last = f["lastpay"][o]
        if (last is None or ts - last > burst_gap_ns
                or (other_last is not None and other_last > last)):
            if f["bstart"][d] is not None:  # the previous burst of d is complete
                s = f["bsize"][d]
                f["ndone"][d] += 1
                f["ssize"][d] += s
                f["ssize2"][d] += float(s) * s
                _add_bin(f["hist_all"][d], s)
                if f["bkind"][d] == 1:
                    _add_bin(f["hist_answer"][d], s)
                gap = (ts - f["bstart"][d]) * 1e-9
                f["sgap"][d] += gap
                f["sgap2"][d] += gap * gap
            f["nburst"][d] += 1
            f["bstart"][d] = ts
            f["bsize"][d] = 0
            f["banswered"][d] = False
            ob = f["bstart"][o]
            if ob is not None and not f["banswered"][o] and ts - ob <= reply_ns:
                f["banswered"][o] = True
                f["nanswered"][o] += 1
                f["bkind"][d] = 1
                f["nanswer"][d] += 1
            else:
                f["bkind"][d] = 2
                f["nunsol"][d] += 1
                if f["lastunsol"][d] is not None:
                    gap = (ts - f["lastunsol"][d]) * 1e-9
                    f["sugap"][d] += gap
                    f["sugap2"][d] += gap * gap
                f["lastunsol"][d] = ts
                for c, series in enumerate(blocks):
                    before = [t for t in series if t <= ts]
                    if before and ts - before[-1] <= block_tol_ns:
                        f["hits"][d][c] += 1
        if f["npay"][d] == 0:
            begin = int(p["data_off"]) + int(p["payload_off"])
            got = bytes(buf[begin: begin + min(int(p["payload_len"]), 3)])
            f["head"][d] = (len(got), got)
        f["npay"][d] += 1
        f["bytes"][d] += size
        f["bsize"][d] += size
        f["lastpay"][d] = ts
    return flows
