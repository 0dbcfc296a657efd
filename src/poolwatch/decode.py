"""Decode stage: fill the header columns of each PacketBatch from the reader.

The work happens in the numba kernel ``kernels.headers.decode_packets``; this module is the
seam the engines call, so that later stages (detection, linking) see decoded batches only.
"""

from __future__ import annotations

from .kernels.headers import decode_packets
from .records import PacketBatch


def decode_batch(batch: PacketBatch) -> PacketBatch:
    """Decode link, IP and transport headers of every packet in ``batch``, in place."""
    if len(batch.packets):
        decode_packets(batch.buf, batch.packets)
    return batch
