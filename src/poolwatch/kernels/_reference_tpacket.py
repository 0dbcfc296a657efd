"""Plain-Python twin of ``kernels.tpacket``, written independently, for tests only.

It reads the ring with ``struct`` and builds each frame as ``bytes`` (header, tag, data), then
returns plain tuples, so a test comparing the two checks the kernel's offsets, tag and cooked
header placement, and its stop rules rather than the same code run twice.
"""

from __future__ import annotations

import struct

BLOCK_DESC = struct.Struct("<IIIII")  # version, offset_to_priv, block_status, num_pkts, first
TP3 = struct.Struct("<IIIIIIHHIIHH")  # next, sec, nsec, snaplen, len, status, mac, net, hv1
SLL = struct.Struct("<HHiHBB8s")  # family, protocol (as stored), ifindex, hatype, pkttype, halen, addr
USER, VLAN_VALID, TPID_VALID = 1, 0x10, 0x40


def walk_blocks_reference(ring: bytes, block_size: int, n_blocks: int, first: int,
                          max_blocks: int, cooked: bool, linktype: int, frame: int = 0,
                          room_packets: int = 1 << 30, room_bytes: int = 1 << 40):
    """(records, bytes, blocks taken, bad block or None); records are
    (frame, ts_ns, caplen, wirelen, linktype, frame bytes)."""
    records: list[tuple[int, int, int, int, int, bytes]] = []
    used = taken = 0
    while taken < max_blocks:
        block = (first + taken) % n_blocks
        base = block * block_size
        _, _, status, num, first_off = BLOCK_DESC.unpack_from(ring, base)
        blen = struct.unpack_from("<I", ring, base + 20)[0]
        if not status & USER:
            break
        if blen > block_size or num * 48 > block_size:
            return records, used, taken, block
        if len(records) + num > room_packets or used + blen + num * 20 > room_bytes:
            break
        hdr, end = base + first_off, base + block_size
        for _ in range(num):
            if hdr < base or hdr + 68 > end:
                return records, used, taken, block
            (nxt, sec, nsec, snap, wire, st, mac, _net, _hash, tci_word, tpid,
             _pad) = TP3.unpack_from(ring, hdr)
            tci = tci_word & 0xFFFF
            if mac < 48 or hdr + mac + snap > end:
                return records, used, taken, block
            data = ring[hdr + mac : hdr + mac + snap]
            tagged = bool(st & VLAN_VALID) or tci != 0
            tag_type = tpid if (st & TPID_VALID and tpid) else 0x8100
            tag = struct.pack(">HH", tag_type, tci)
            if cooked:
                _fam, proto, _idx, hatype, pkttype, halen, addr = SLL.unpack_from(ring, hdr + 48)
                head = struct.pack(">HHH", pkttype, hatype, halen) + addr[:halen].ljust(8, b"\0")
                proto_bytes = struct.pack("<H", proto)  # stored in network order already
                frame_bytes = head + (tag if tagged else b"") + proto_bytes + data
            elif tagged and snap >= 12:
                frame_bytes = data[:12] + tag + data[12:]
            else:
                frame_bytes = data
            grow = len(frame_bytes) - snap
            frame += 1
            records.append((frame, sec * 1_000_000_000 + nsec, snap + grow, wire + grow,
                            linktype, frame_bytes))
            used += len(frame_bytes)
            hdr += nxt
        taken += 1
    return records, used, taken, None
