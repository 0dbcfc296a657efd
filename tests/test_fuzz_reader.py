"""Property: whatever the bytes, a scan ends with a report, never an exception.

Random bytes after a valid pcap or pcapng header, and random mutations (byte flips, cuts,
inserted garbage, compression) of the sample captures, are read through the library API
(``scan_flows`` with a ``ScanSummary``). Each file's report either is clean or names the file
and an offset; the packet counters agree with the flows.
"""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np
import pytest
import zstandard
from hypothesis import HealthCheck, given, settings, strategies as st

from poolwatch.records import FLOW
from poolwatch.scan import ScanSummary, scan_flows

from .conftest import SAMPLES

SAMPLE_BYTES = [p.read_bytes() for p in SAMPLES]
PCAP_HEADERS = [
    struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, lt) for lt in (1, 101, 113, 276, 0, 147)
] + [struct.pack(">IHHiIII", 0xA1B23C4D, 2, 4, 0, 0, 262144, 1)]
PCAPNG_HEADER = SAMPLE_BYTES[[p.suffix for p in SAMPLES].index(".pcapng")][:140]  # SHB + 2 IDBs
FUZZ = settings(max_examples=100, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.too_slow])


@pytest.fixture(scope="module")
def fuzz_dir(tmp_path_factory) -> Path:
    """One directory for the module (hypothesis reruns a test body many times)."""
    return tmp_path_factory.mktemp("fuzz")


def scan(directory: Path, data: bytes, name: str = "fuzz.pcap") -> ScanSummary:
    path = directory / name
    path.write_bytes(data)
    summary = ScanSummary()
    flows = [f for f in scan_flows([path], summary=summary)]
    total = np.concatenate(flows) if flows else np.zeros(0, FLOW)
    (report,) = summary.files
    assert report.path == str(path)
    if report.error is not None:
        assert str(path) in report.error
    for warning in report.warnings:
        assert str(path) in warning
    # every flow packet is a packet that was read
    in_flows = int(total["pkts_toserver"].sum() + total["pkts_toclient"].sum())
    assert in_flows <= summary.packets == report.packets
    assert summary.flows == len(total)
    return summary


@FUZZ
@given(header=st.sampled_from(PCAP_HEADERS + [PCAPNG_HEADER]), body=st.binary(max_size=3000))
def test_random_bytes_after_a_valid_header(fuzz_dir, header, body):
    scan(fuzz_dir, header + body)


@FUZZ
@given(header=st.sampled_from(PCAP_HEADERS), n=st.integers(1, 30), data=st.data())
def test_random_records_with_plausible_lengths(fuzz_dir, header, n, data):
    """Record headers that are right, packet bytes that are anything: decoders see junk."""
    endian = "<" if header[:4] in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1") else ">"
    body = b""
    for i in range(n):
        packet = data.draw(st.binary(max_size=120))
        body += struct.pack(endian + "IIII", 1772438400 + i, 0, len(packet),
                            data.draw(st.integers(0, 70000))) + packet
    summary = scan(fuzz_dir, header + body)
    assert summary.packets == n and summary.failed_files == []


@FUZZ
@given(index=st.integers(0, len(SAMPLE_BYTES) - 1),
       flips=st.lists(st.tuples(st.floats(0, 1, exclude_max=True), st.integers(0, 255)),
                      max_size=12))
def test_byte_flips_in_samples(fuzz_dir, index, flips):
    data = bytearray(SAMPLE_BYTES[index])
    for where, value in flips:
        data[int(where * len(data))] = value
    scan(fuzz_dir, bytes(data), "flipped" + SAMPLES[index].suffix)


@FUZZ
@given(index=st.integers(0, len(SAMPLE_BYTES) - 1), cut=st.floats(0, 1),
       insert_at=st.floats(0, 1), junk=st.binary(max_size=64))
def test_cuts_and_insertions_in_samples(fuzz_dir, index, cut, insert_at, junk):
    data = SAMPLE_BYTES[index]
    at = int(insert_at * len(data))
    mutated = (data[:at] + junk + data[at:])[: int(cut * (len(data) + len(junk)))]
    scan(fuzz_dir, mutated, "mutated" + SAMPLES[index].suffix)


@settings(max_examples=50, deadline=None, derandomize=True)
@given(index=st.integers(0, len(SAMPLE_BYTES) - 1), kind=st.sampled_from(["gzip", "zstd"]),
       cut=st.floats(0, 1), flip=st.one_of(st.none(), st.tuples(st.floats(0, 1, exclude_max=True),
                                                               st.integers(0, 255))))
def test_damaged_compressed_samples(fuzz_dir, index, kind, cut, flip):
    raw = SAMPLE_BYTES[index]
    packed = bytearray(gzip.compress(raw, mtime=0) if kind == "gzip"
                       else zstandard.ZstdCompressor().compress(raw))
    if flip is not None:
        packed[int(flip[0] * len(packed))] = flip[1]
    summary = scan(fuzz_dir, bytes(packed[: max(int(cut * len(packed)), 1)]), f"damaged.{kind}")
    assert summary.packets <= len(raw) // 16
