"""Plain-Python twins of the numba kernels, written independently, for tests only.

They follow the same contracts with ordinary Python data structures (struct, dict), so a
test that compares a kernel with its twin checks the kernel's arithmetic and bookkeeping,
not just that the same code runs twice. The header decoder's independent twins are the
dpkt and scapy engines (``poolwatch.engines``).
"""

from __future__ import annotations

import struct

import numpy as np

from ..records import FLOW, EndReason, PacketStatus


def walk_pcap_reference(data: bytes) -> list[tuple[int, int, int, int, int]]:
    """(data_off, caplen, wirelen, ts_ns, linktype) of every complete record of a pcap."""
    magic = data[:4]
    endian = "<" if magic in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1") else ">"
    nano = magic in (b"\x4d\x3c\xb2\xa1", b"\xa1\xb2\x3c\x4d")
    linktype = struct.unpack_from(endian + "I", data, 20)[0] & 0x0FFFFFFF
    out, pos = [], 24
    while pos + 16 <= len(data):
        sec, frac, incl, orig = struct.unpack_from(endian + "IIII", data, pos)
        if pos + 16 + incl > len(data):
            break
        ts = sec * 10**9 + (frac if nano else frac * 1000)
        out.append((pos + 16, incl, orig, ts, linktype))
        pos += 16 + incl
    return out


def _pcapng_ts(ts: int, resol: int, offset_s: int) -> int:
    if resol & 0x80:
        exp = resol & 0x7F
        return (ts >> exp) * 10**9 + (offset_s * 10**9) + int((ts & ((1 << exp) - 1)) * 1e9 / 2**exp)
    if resol <= 9:
        return ts * 10 ** (9 - resol) + offset_s * 10**9
    return ts // 10 ** (resol - 9) + offset_s * 10**9


def walk_pcapng_reference(data: bytes) -> list[tuple[int, int, int, int, int]]:
    """(data_off, caplen, wirelen, ts_ns, linktype) of every packet block of a pcapng."""
    out: list[tuple[int, int, int, int, int]] = []
    pos, endian = 0, "<"
    ifaces: list[tuple[int, int, int]] = []  # (linktype, tsresol, tsoffset)
    while pos + 12 <= len(data):
        if data[pos : pos + 4] == b"\x0a\x0d\x0d\x0a":
            endian = "<" if data[pos + 8 : pos + 12] == b"\x4d\x3c\x2b\x1a" else ">"
            ifaces = []
        btype, blen = struct.unpack_from(endian + "II", data, pos)
        if blen < 12 or pos + blen > len(data):
            break
        if struct.unpack_from(endian + "I", data, pos + blen - 4)[0] != blen:
            break
        if btype == 1:
            linktype = struct.unpack_from(endian + "H", data, pos + 8)[0]
            resol, offset, opt = 6, 0, pos + 16
            while opt + 4 <= pos + blen - 4:
                code, olen = struct.unpack_from(endian + "HH", data, opt)
                if code == 0:
                    break
                if code == 9:
                    resol = data[opt + 4]
                elif code == 14:
                    offset = struct.unpack_from(endian + "q", data, opt + 4)[0]
                opt += 4 + (olen + 3) // 4 * 4
            ifaces.append((linktype, resol, offset))
        elif btype in (2, 6):
            fmt = endian + ("IIIII" if btype == 6 else "HHIIII")
            if btype == 6:
                iface, hi, lo, cap, orig = struct.unpack_from(fmt, data, pos + 8)
            else:
                iface, _drops, hi, lo, cap, orig = struct.unpack_from(fmt, data, pos + 8)
            lt, resol, offset = ifaces[iface] if iface < len(ifaces) else (65535, 6, 0)
            ts = _pcapng_ts((hi << 32) | lo, resol, offset) if iface < len(ifaces) else 0
            out.append((pos + 28, cap, orig, ts, lt))
        elif btype == 3:
            orig = struct.unpack_from(endian + "I", data, pos + 8)[0]
            lt, resol, offset = ifaces[0] if ifaces else (65535, 6, 0)
            out.append((pos + 12, min(orig, blen - 16), orig, _pcapng_ts(0, resol, offset), lt))
        pos += blen
    return out


def aggregate_reference(
    packets: np.ndarray, idle_ns: int, active_ns: int, sweep_ns: int
) -> np.ndarray:
    """Flows of ``packets`` by the FlowTable rules, with a dict; no table size limit."""
    open_flows: dict[tuple, dict] = {}
    closed: list[dict] = []
    next_sweep = None
    for p in packets:
        if p["status"] != PacketStatus.OK:
            continue
        ts = int(p["ts_ns"])
        if next_sweep is None:
            next_sweep = ts + sweep_ns
        elif ts >= next_sweep:
            for key in [k for k, f in open_flows.items() if ts - f["last_ts_ns"] > idle_ns]:
                closed.append(dict(open_flows.pop(key), end_reason=EndReason.IDLE))
            next_sweep = ts + sweep_ns
        src = (int(p["src_hi"]), int(p["src_lo"]), int(p["sport"]))
        dst = (int(p["dst_hi"]), int(p["dst_lo"]), int(p["dport"]))
        key = (int(p["vlan"]), int(p["inner_vlan"]), int(p["proto"]), *sorted([src, dst]))
        f = open_flows.get(key)
        if f is not None and (ts - f["last_ts_ns"] > idle_ns or ts - f["first_ts_ns"] > active_ns):
            reason = EndReason.IDLE if ts - f["last_ts_ns"] > idle_ns else EndReason.ACTIVE
            closed.append(dict(f, end_reason=reason))
            f = None
        if f is None:
            synack = p["proto"] == 6 and (p["tcp_flags"] & 0x12) == 0x12
            s, d = (dst, src) if synack else (src, dst)
            f = open_flows[key] = {
                "vlan": key[0], "inner_vlan": key[1], "proto": key[2],
                "src": s, "dst": d, "first_ts_ns": ts, "last_ts_ns": ts,
                "pkts_toserver": 0, "pkts_toclient": 0, "bytes_toserver": 0,
                "bytes_toclient": 0, "tcp_flags_toserver": 0, "tcp_flags_toclient": 0,
                "end_reason": EndReason.EOF,
            }
        side = "toserver" if src == f["src"] else "toclient"
        f[f"pkts_{side}"] += 1
        f[f"bytes_{side}"] += int(p["ip_len"])
        f[f"tcp_flags_{side}"] |= int(p["tcp_flags"])
        f["first_ts_ns"] = min(f["first_ts_ns"], ts)
        f["last_ts_ns"] = max(f["last_ts_ns"], ts)
    closed.extend(open_flows.values())
    out = np.zeros(len(closed), FLOW)
    for i, f in enumerate(closed):
        row = out[i]
        (row["src_hi"], row["src_lo"], row["src_port"]) = f["src"]
        (row["dst_hi"], row["dst_lo"], row["dest_port"]) = f["dst"]
        for k, v in f.items():
            if k not in ("src", "dst"):
                row[k] = v
    return out


def tally_packets_reference(packets: np.ndarray, n_status: int) -> tuple[list[int], int]:
    """(rows per status, 0..n_status-1; captured bytes) of a PACKET array, row by row."""
    counts = [0] * n_status
    total = 0
    for row in packets.tolist():
        status, caplen = row[packets.dtype.names.index("status")], row[
            packets.dtype.names.index("caplen")]
        if status < n_status:
            counts[status] += 1
        total += caplen
    return counts, total
