"""Copy packets out of a Linux TPACKET_V3 receive ring into a batch (numba).

The kernel fills the ring's blocks with ``tpacket3_hdr`` chains and hands a block over by
setting ``TP_STATUS_USER`` in its descriptor. :func:`walk_blocks` takes consecutive handed-over
blocks, copies every frame into the batch buffer and fills the record columns of ``PACKET``
(``frame``, ``ts_ns``, ``data_off``, ``caplen``, ``wirelen``, ``linktype``), exactly what the
pcap walkers fill, so the same header decoder runs next. It does not give the blocks back: the
caller does that after the call returns (a plain store of ``TP_STATUS_KERNEL``), so no store to
the ring can be ordered before the loads of the frames it releases.

Two things the ring does not keep in the frame are put back, as libpcap does:

- the outer 802.1Q/802.1ad tag, which the kernel strips on receive and reports in
  ``tp_vlan_tci``/``tp_vlan_tpid``: re-inserted after the MAC addresses (Ethernet) or at the
  protocol field of a cooked header, so tagged traffic decodes as it would from a file;
- for cooked (``SOCK_DGRAM``) sockets, the 16-byte Linux "cooked" header (LINKTYPE_LINUX_SLL),
  rebuilt from the ``sockaddr_ll`` that follows each ``tpacket3_hdr``.

Nothing here raises: a block whose frames would run outside it stops the walk with
``RING_BAD_BLOCK`` and the block index, so a caller can report it and skip the block.
"""

from __future__ import annotations

import numpy as np
from numba import njit

# struct tpacket_block_desc / tpacket_hdr_v1 (linux/if_packet.h)
BD_STATUS = 8
BD_NUM_PKTS = 12
BD_FIRST = 16
BD_LEN = 20
# struct tpacket3_hdr
H_NEXT = 0
H_SEC = 4
H_NSEC = 8
H_SNAPLEN = 12
H_LEN = 16
H_STATUS = 20
H_MAC = 24
H_VLAN_TCI = 32
H_VLAN_TPID = 36
H_SIZE = 48  # TPACKET_ALIGN(sizeof(struct tpacket3_hdr)): where sockaddr_ll starts
# struct sockaddr_ll, from H_SIZE
SLL_PROTOCOL = 2
SLL_HATYPE = 8
SLL_PKTTYPE = 10
SLL_HALEN = 11
SLL_ADDR = 12
COOKED_LEN = 16  # LINKTYPE_LINUX_SLL header

TP_STATUS_KERNEL = 0
TP_STATUS_USER = 1
TP_STATUS_VLAN_VALID = 0x10
TP_STATUS_VLAN_TPID_VALID = 0x40

# Per packet, a frame can grow by this much in the batch (cooked header + VLAN tag).
MAX_GROWTH = COOKED_LEN + 4

RING_OK = 0  # stopped: no more handed-over blocks, or the next one does not fit the batch
RING_BAD_BLOCK = 1  # a block descriptor or frame header points outside its block


@njit(cache=True, nogil=True, inline="always")
def _u32(ring, i):
    return (np.uint32(ring[i]) | (np.uint32(ring[i + 1]) << 8) | (np.uint32(ring[i + 2]) << 16)
            | (np.uint32(ring[i + 3]) << 24))


@njit(cache=True, nogil=True, inline="always")
def _u16(ring, i):
    return np.uint32(ring[i]) | (np.uint32(ring[i + 1]) << 8)


@njit(cache=True, nogil=True, inline="always")
def _put_be16(buf, i, v):
    buf[i] = (v >> 8) & 0xFF
    buf[i + 1] = v & 0xFF


@njit(cache=True, nogil=True)
def block_ready(ring, block_size, block):
    """Whether the kernel has handed ``block`` over to user space."""
    return (_u32(ring, block * block_size + BD_STATUS) & TP_STATUS_USER) != 0


@njit(cache=True, nogil=True)
def walk_blocks(ring, block_size, n_blocks, first, max_blocks, cooked, linktype, buf, used,
                out, n_out, frame):
    """Copy the frames of handed-over blocks ``first``, ``first + 1``… (modulo ``n_blocks``).

    Stops at a block still owned by the kernel, after ``max_blocks``, or before a block whose
    frames might not fit in ``buf`` (from ``used``) or ``out`` (from ``n_out``); the first
    block always fits when ``buf`` holds a block plus ``MAX_GROWTH`` per possible frame.
    ``frame`` is the number of frames this socket copied before (frames count from 1).
    Returns (records, bytes used in buf, blocks taken, status, first bad block or -1).
    """
    n = n_out
    taken = 0
    while taken < max_blocks:
        block = (first + taken) % n_blocks
        base = np.int64(block) * block_size
        if (_u32(ring, base + BD_STATUS) & TP_STATUS_USER) == 0:
            break
        num = np.int64(_u32(ring, base + BD_NUM_PKTS))
        blen = np.int64(_u32(ring, base + BD_LEN))
        if blen > block_size or num * H_SIZE > block_size:
            return n, used, taken, RING_BAD_BLOCK, block
        if n + num > len(out) or used + blen + num * MAX_GROWTH > len(buf):
            break  # the next batch takes it
        hdr = base + np.int64(_u32(ring, base + BD_FIRST))
        end = base + block_size
        for _ in range(num):
            if hdr < base or hdr + H_SIZE + 20 > end:
                return n, used, taken, RING_BAD_BLOCK, block
            snap = np.int64(_u32(ring, hdr + H_SNAPLEN))
            wire = np.int64(_u32(ring, hdr + H_LEN))
            mac = hdr + np.int64(_u16(ring, hdr + H_MAC))
            if mac < hdr + H_SIZE or mac + snap > end:
                return n, used, taken, RING_BAD_BLOCK, block
            st = _u32(ring, hdr + H_STATUS)
            tci = _u16(ring, hdr + H_VLAN_TCI)
            tagged = (st & TP_STATUS_VLAN_VALID) != 0 or tci != 0
            tpid = np.uint32(0x8100)
            if (st & TP_STATUS_VLAN_TPID_VALID) != 0 and _u16(ring, hdr + H_VLAN_TPID) != 0:
                tpid = _u16(ring, hdr + H_VLAN_TPID)
            start = used
            if cooked:
                sll = hdr + H_SIZE
                _put_be16(buf, used, np.uint32(ring[sll + SLL_PKTTYPE]))
                _put_be16(buf, used + 2, _u16(ring, sll + SLL_HATYPE))
                halen = np.int64(ring[sll + SLL_HALEN])
                _put_be16(buf, used + 4, np.uint32(halen))
                for k in range(8):
                    buf[used + 6 + k] = ring[sll + SLL_ADDR + k] if k < halen else 0
                if tagged:  # the tag sits where the protocol was, the protocol after it
                    _put_be16(buf, used + 14, tpid)
                    _put_be16(buf, used + 16, tci)
                    used += 4
                # sll_protocol is in network order already: its two bytes go as they are
                buf[used + 14] = ring[sll + SLL_PROTOCOL]
                buf[used + 15] = ring[sll + SLL_PROTOCOL + 1]
                used += COOKED_LEN
                buf[used:used + snap] = ring[mac:mac + snap]
                used += snap
            elif tagged and snap >= 12:
                buf[used:used + 12] = ring[mac:mac + 12]
                _put_be16(buf, used + 12, tpid)
                _put_be16(buf, used + 14, tci)
                buf[used + 16:used + 4 + snap] = ring[mac + 12:mac + snap]
                used += 4 + snap
            else:
                buf[used:used + snap] = ring[mac:mac + snap]
                used += snap
            grow = used - start - snap
            frame += 1
            rec = out[n]
            rec.frame = frame
            rec.ts_ns = (np.int64(_u32(ring, hdr + H_SEC)) * 1_000_000_000
                         + np.int64(_u32(ring, hdr + H_NSEC)))
            rec.data_off = start
            rec.caplen = snap + grow
            rec.wirelen = wire + grow
            rec.linktype = linktype
            n += 1
            hdr += np.int64(_u32(ring, hdr + H_NEXT))
        taken += 1
    return n, used, taken, RING_OK, -1
