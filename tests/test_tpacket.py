"""The TPACKET_V3 ring walker (``kernels.tpacket``) against its plain-Python twin.

Rings are built by hand with ``struct`` in the layout of linux/if_packet.h (block descriptor,
``tpacket3_hdr`` chain, ``sockaddr_ll``), so no socket is needed; tests/test_sensor_live.py
reads real rings filled by the kernel.
"""

from __future__ import annotations

import struct

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from poolwatch.decode import decode_batch
from poolwatch.kernels import tpacket
from poolwatch.kernels._reference_tpacket import walk_blocks_reference
from poolwatch.records import (
    LINKTYPE_ETHERNET,
    LINKTYPE_LINUX_SLL,
    PACKET,
    PacketBatch,
    PacketStatus,
)

BLOCK = 4096
USER, VLAN_VALID, TPID_VALID = 1, 0x10, 0x40
MAC_OFF = 82  # where a SOCK_RAW frame starts after its tpacket3_hdr (Ethernet: 80 + 2)


def _frame(payload: bytes = b"hello") -> bytes:
    """A small Ethernet/IPv4/UDP frame (the decoder must accept it)."""
    udp = struct.pack(">HHHH", 5353, 53, 8 + len(payload), 0) + payload
    ip = struct.pack(">BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 1, 0, 64, 17, 0,
                     bytes([10, 0, 0, 1]), bytes([10, 0, 0, 2]))
    return b"\x02" * 6 + b"\x04" * 6 + b"\x08\x00" + ip + udp


def _block(packets, status=USER, block_size=BLOCK, blen=None) -> bytes:
    """One block: descriptor, then (frame, wirelen, status bits, tci, tpid, sec, nsec) each."""
    body = bytearray()
    offsets = []
    at = 48
    for frame, wire, st_bits, tci, tpid, sec, nsec in packets:
        offsets.append(at)
        size = (MAC_OFF + len(frame) + 15) & ~15
        hdr = struct.pack("<IIIIIIHHIIHH8x", 0, sec, nsec, len(frame), wire, USER | st_bits,
                          MAC_OFF, MAC_OFF + 14, 0, tci, tpid, 0)
        sll = struct.pack("<HHiHBB8s", 17, 0x0008, 3, 1, 0, 6, b"\x02" * 6)
        rec = bytearray(size)
        rec[: len(hdr)] = hdr
        rec[48:68] = sll
        rec[MAC_OFF : MAC_OFF + len(frame)] = frame
        body += rec
        at += size
    for i, off in enumerate(offsets[:-1]):  # tp_next_offset: to the next header
        struct.pack_into("<I", body, off - 48, offsets[i + 1] - off)
    total = 48 + len(body)
    desc = struct.pack("<IIIIIIQIIII", 3, 48, status, len(packets), 48,
                       total if blen is None else blen, 7, 0, 0, 0, 0)
    block = desc + bytes(body)
    assert len(block) <= block_size
    return block + bytes(block_size - len(block))


def _kernel(ring: bytes, n_blocks, first=0, cooked=False, room_packets=1 << 12,
            room_bytes=1 << 20, frame0=0, block_size=BLOCK):
    ring_arr = np.frombuffer(bytearray(ring), np.uint8)
    buf = np.zeros(room_bytes, np.uint8)
    out = np.zeros(room_packets, PACKET)
    linktype = LINKTYPE_LINUX_SLL if cooked else LINKTYPE_ETHERNET
    n, used, taken, status, bad = tpacket.walk_blocks(ring_arr, block_size, n_blocks, first,
                                                      n_blocks, cooked, linktype, buf, 0, out, 0,
                                                      frame0)
    recs = [(int(r["frame"]), int(r["ts_ns"]), int(r["caplen"]), int(r["wirelen"]),
             int(r["linktype"]),
             buf[int(r["data_off"]) : int(r["data_off"]) + int(r["caplen"])].tobytes())
            for r in out[:n]]
    return recs, used, taken, (None if status == tpacket.RING_OK else bad), buf, out[:n]


def _reference(ring, n_blocks, first=0, cooked=False, room_packets=1 << 12, room_bytes=1 << 20,
               frame0=0):
    linktype = LINKTYPE_LINUX_SLL if cooked else LINKTYPE_ETHERNET
    return walk_blocks_reference(ring, BLOCK, n_blocks, first, n_blocks, cooked, linktype, frame0,
                                 room_packets, room_bytes)


PLAIN = (_frame(), 60, 0, 0, 0, 1_772_438_400, 5)
TAGGED = (_frame(b"tagged"), 61, VLAN_VALID, 0x2064, 0, 1_772_438_401, 999_999_999)  # prio 1, vid 100
TAGGED_AD = (_frame(b"qinq"), 62, VLAN_VALID | TPID_VALID, 0x00C8, 0x88A8, 1_772_438_402, 0)
SHORT_TAGGED = (b"\x01" * 10, 10, VLAN_VALID, 5, 0, 1_772_438_403, 1)


def test_blocks_in_ring_order_stop_at_the_kernels_block():
    ring = (_block([PLAIN, TAGGED]) + _block([TAGGED_AD, SHORT_TAGGED])
            + _block([PLAIN], status=0) + _block([PLAIN]))
    got = _kernel(ring, 4, frame0=10)
    want = _reference(ring, 4, frame0=10)
    assert got[:4] == want
    recs = got[0]
    assert [r[0] for r in recs] == [11, 12, 13, 14]  # frames count on from the socket's total
    assert got[2] == 2  # the third block still belongs to the kernel
    # tags are back in the frame, with their TPID, and the lengths grew by 4
    assert recs[1][5][12:16] == b"\x81\x00\x20\x64" and recs[1][2] == len(TAGGED[0]) + 4
    assert recs[2][5][12:16] == b"\x88\xa8\x00\xc8" and recs[2][3] == 62 + 4
    assert recs[3][5] == b"\x01" * 10  # too short to hold a tag: left as it is
    assert recs[1][1] == 1_772_438_401_999_999_999


def test_wraps_around_and_decodes_like_a_file():
    ring = _block([TAGGED], status=0) + _block([PLAIN]) + _block([TAGGED])
    recs, used, taken, bad, buf, out = _kernel(ring, 3, first=1)
    assert (recs, used, taken, bad) == _reference(ring, 3, first=1)
    assert taken == 2  # blocks 1 and 2, then block 0 is the kernel's
    batch = decode_batch(PacketBatch("live:test", buf[:used], out.copy()))
    assert list(batch.packets["status"]) == [PacketStatus.OK, PacketStatus.OK]
    assert list(batch.packets["vlan"]) == [0, 100]
    assert list(batch.packets["dport"]) == [53, 53]


def test_cooked_header_rebuilt_with_tag():
    ring = _block([PLAIN, TAGGED])
    got = _kernel(ring, 1, cooked=True)
    assert got[:4] == _reference(ring, 1, cooked=True)
    plain, tagged = got[0][0][5], got[0][1][5]
    assert plain[:16] == b"\x00\x00\x00\x01\x00\x06" + b"\x02" * 6 + b"\0\0" + b"\x08\x00"
    assert tagged[14:20] == b"\x81\x00\x20\x64\x08\x00"
    batch = decode_batch(PacketBatch("live:test", got[4][: got[1]], got[5].copy()))
    # the cooked header is followed by the frame as the socket gave it (SOCK_DGRAM: from the
    # network header; here the test frame's Ethernet header is payload, so not IP)
    assert list(batch.packets["linktype"]) == [LINKTYPE_LINUX_SLL] * 2
    assert list(batch.packets["vlan"]) == [0, 100]


def test_stops_before_a_block_that_does_not_fit():
    ring = _block([PLAIN, PLAIN]) + _block([PLAIN, PLAIN, PLAIN])
    got = _kernel(ring, 2, room_packets=4)
    assert got[:4] == _reference(ring, 2, room_packets=4)
    assert got[2] == 1 and len(got[0]) == 2


def test_broken_block_is_reported_not_read_past():
    ring = _block([PLAIN]) + _block([PLAIN, PLAIN], blen=BLOCK + 1)
    got = _kernel(ring, 2)
    assert got[:4] == _reference(ring, 2)
    assert got[3] == 1 and got[2] == 1
    # a frame header whose tp_mac + snaplen runs past the block
    bad = bytearray(_block([PLAIN]))
    struct.pack_into("<I", bad, 48 + 12, BLOCK)  # tp_snaplen
    got = _kernel(bytes(bad), 1)
    assert got[:4] == _reference(bytes(bad), 1)
    assert got[3] == 0 and got[0] == []


_packets = st.lists(
    st.tuples(st.binary(min_size=0, max_size=300), st.integers(0, 2000),
              st.sampled_from([0, VLAN_VALID, VLAN_VALID | TPID_VALID]),
              st.integers(0, 0xFFFF), st.sampled_from([0, 0x8100, 0x88A8]),
              st.integers(0, 2**32 - 1), st.integers(0, 999_999_999)),
    min_size=1, max_size=6)


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(_packets, st.booleans()), min_size=1, max_size=4), st.integers(0, 3),
       st.booleans(), st.integers(1, 20))
def test_kernel_matches_twin(blocks, first, cooked, room):
    ring = b"".join(_block(p, status=USER if ready else 0) for p, ready in blocks)
    n = len(blocks)
    first %= n
    got = _kernel(ring, n, first=first, cooked=cooked, room_packets=room)
    assert got[:4] == _reference(ring, n, first=first, cooked=cooked, room_packets=room)
