"""Record walkers and the header decoder: against their plain-Python twins and constants."""

from __future__ import annotations

import gzip

import numpy as np
import pytest

from poolwatch.kernels import capture_records as walk
from poolwatch.kernels import headers
from poolwatch.kernels._reference import walk_pcap_reference, walk_pcapng_reference
from poolwatch.readers.pcapfile import read_capture
from poolwatch.records import PACKET, PKT_FLAG_FRAGMENT, PKT_FLAG_V6, FileReport, PacketStatus

from .conftest import SAMPLES


def _reference(data: bytes):
    return walk_pcapng_reference(data) if data[:4] == b"\x0a\x0d\x0d\x0a" else walk_pcap_reference(data)


def _kernel(data: bytes):
    buf = np.frombuffer(data, np.uint8)
    out = np.zeros(len(data) // 16 + 1, PACKET)
    if data[:4] == b"\x0a\x0d\x0d\x0a":
        state = np.zeros(walk.ST_LEN, np.int64)
        ifaces = np.zeros((walk.MAX_INTERFACES, walk.IF_LEN), np.int64)
        n, _, status = walk.walk_pcapng(buf, len(buf), 0, state, ifaces, out, 0)
    else:
        ref = walk_pcap_reference(data)
        linktype = ref[0][4] if ref else 1
        n, _, status = walk.walk_pcap(buf, len(buf), 24, data[:4] in (b"\xa1\xb2\xc3\xd4", b"\xa1\xb2\x3c\x4d"),
                                      1 if data[:4] in (b"\x4d\x3c\xb2\xa1", b"\xa1\xb2\x3c\x4d") else 1000,
                                      262144, linktype, out, 0)
    assert status == walk.WALK_OK
    return [(int(r["data_off"]), int(r["caplen"]), int(r["wirelen"]), int(r["ts_ns"]),
             int(r["linktype"])) for r in out[:n]]


def test_walkers_match_their_twins(sample):
    data = sample.read_bytes()
    assert _kernel(data) == _reference(data)


@pytest.mark.parametrize("chunk_bytes", [64, 257, 4096])
@pytest.mark.parametrize("compressed", [False, True], ids=["mapped", "gzip-stream"])
def test_records_cut_by_chunk_edges_are_carried_over(sample, chunk_bytes, compressed, tmp_path):
    """Plain files are mapped in windows, compressed ones streamed: both carry cut records."""
    data = sample.read_bytes()
    want = [(data[off:off + cap], ts, lt) for off, cap, _, ts, lt in _reference(data)]
    path = sample
    if compressed:
        path = tmp_path / (sample.name + ".gz")
        path.write_bytes(gzip.compress(data))
    got = []
    report = FileReport(str(path))
    for batch in read_capture(path, report, chunk_bytes=chunk_bytes, batch_packets=3):
        for i in range(len(batch)):
            p = batch.packets[i]
            got.append((batch.packet_bytes(i), int(p["ts_ns"]), int(p["linktype"])))
    assert got == want
    assert report.error is None and report.warnings == []
    assert [int(x) for x in range(1, len(want) + 1)] == list(range(1, report.packets + 1))


def test_pcapng_timestamp_resolutions():
    # if_tsresol: 10^-6 (default), 10^-9, 2^-10, 10^-3 with an offset of 100 s.
    assert walk.ts_to_ns(np.uint64(1_500_000), 0, 6, 0) == 1_500_000_000
    assert walk.ts_to_ns(np.uint64(1_500_000_123), 0, 9, 0) == 1_500_000_123
    assert walk.ts_to_ns(np.uint64(3 * 1024 + 512), 1, 10, 0) == 3_500_000_000
    assert walk.ts_to_ns(np.uint64(2_500), 0, 3, 100) == 102_500_000_000
    assert walk.ts_to_ns(np.uint64(25), 0, 12, 0) == 0  # finer than ns: truncated


def test_kernel_status_codes_mirror_the_enum():
    for status in PacketStatus:
        assert getattr(headers, status.name) == status.value
    assert (headers.FLAG_FRAGMENT, headers.FLAG_V6) == (PKT_FLAG_FRAGMENT, PKT_FLAG_V6)
