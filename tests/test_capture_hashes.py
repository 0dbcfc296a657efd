"""Evidence hashes: the SHA-256 of each capture as stored, from the reader's own windows.

``CaptureHashes`` feeds the bytes of the mapped windows the scan already reads to the hash,
and reads from disk only what no window held (before hashing started, after a damaged
record, a compressed file). Whatever the order of events, the digest must be the file's.
"""

from __future__ import annotations

import gzip
import hashlib
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from poolwatch import scan as scan_module
from poolwatch.kernels import headers
from poolwatch.kernels._reference import tally_packets_reference
from poolwatch.readers.pcapfile import read_capture
from poolwatch.records import FileReport, PacketStatus
from poolwatch.scan import CaptureHashes, iter_batches, scan_detections

from .conftest import PCAPS

STRATUM = PCAPS / "stratum"
SESSION = STRATUM / "stratum_v1_cgminer_sha256d.pcap"


@pytest.fixture(autouse=True, params=["thread", "inline"])
def hashing_mode(request, monkeypatch):
    """Every test both ways: in the background thread (more than one CPU) and in the
    caller's thread (one CPU)."""
    monkeypatch.setattr(scan_module, "_cpus", lambda: 2 if request.param == "thread" else 1)
    return request.param


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def disk_reads(monkeypatch):
    """(offset, until) of every read the hashes make from disk."""
    calls: list[tuple[int, int | None]] = []
    real = scan_module._read_into

    def spy(digest, path, offset, until=None):
        calls.append((offset, until))
        return real(digest, path, offset, until)

    monkeypatch.setattr(scan_module, "_read_into", spy)
    return calls


def test_mapped_windows_say_where_they_are_in_the_file(tmp_path):
    data = SESSION.read_bytes()
    seen = 0
    for batch in read_capture(SESSION, FileReport(str(SESSION)), chunk_bytes=4096,
                              batch_packets=3):
        at = batch.file_offset
        assert at is not None and data[at : at + len(batch.buf)] == batch.buf.tobytes()
        seen += 1
    assert seen > 3
    packed = tmp_path / "s.pcap.gz"
    packed.write_bytes(gzip.compress(data))
    assert all(b.file_offset is None for b in read_capture(packed, FileReport(str(packed))))


def test_every_capture_hashed_from_its_windows_reads_nothing_again(tmp_path, disk_reads):
    """Several files in small windows: each digest is the file's, and the only disk read
    per file is the empty rest after its last window."""
    files = [shutil.copy(p, tmp_path / p.name) for p in sorted(STRATUM.glob("*.pcap"))[:4]]
    hashes = CaptureHashes(every_capture=True)
    try:
        for batch in iter_batches(files, batch_packets=2):
            hashes.offer(batch)
        for f in files:
            assert hashes.get(str(f)) == sha(Path(f))
    finally:
        hashes.close()
    assert len(disk_reads) == len(files)
    assert all(until is None and offset == Path(f).stat().st_size
               for (offset, until), f in zip(disk_reads, files))


def test_hashing_started_mid_file_reads_the_part_before_from_disk(disk_reads):
    """Started when the scan is well into the file (a session found late): the bytes
    before the window it starts at come from disk, the rest from the windows."""
    hashes = CaptureHashes()
    path = str(SESSION)
    batches = [b.copy() for b in read_capture(SESSION, FileReport(path), chunk_bytes=4096,
                                              batch_packets=4)]
    late = next(i for i, b in enumerate(batches) if b.file_offset)
    try:
        for i, batch in enumerate(batches):
            if i == late:
                hashes.start(path)
            hashes.offer(batch)
        assert not hashes.ready(path)  # the file may go on: not finished before its end
        hashes.end(path)
        assert hashes.get(path) == sha(SESSION)
    finally:
        hashes.close()
    assert disk_reads == [(0, batches[late].file_offset), (SESSION.stat().st_size, None)]


def test_a_capture_other_than_the_one_being_read_is_hashed_from_disk(tmp_path, disk_reads):
    """A record of an earlier file (a session that spanned rotated files) starts that file's
    hash while another is read: it is read whole, at once."""
    first, second = (shutil.copy(p, tmp_path / p.name)
                     for p in sorted(STRATUM.glob("*.pcap"))[:2])
    hashes = CaptureHashes()
    try:
        for batch in iter_batches([second]):
            hashes.offer(batch)
            hashes.start(str(first))
        assert hashes.get(str(first)) == sha(Path(first))
        assert not hashes.ready(str(second))  # never started: nothing worth reporting in it
    finally:
        hashes.close()
    assert disk_reads == [(0, None)]


def test_compressed_and_damaged_captures_hash_as_stored(tmp_path):
    data = SESSION.read_bytes()
    packed = tmp_path / "s.pcap.gz"
    packed.write_bytes(gzip.compress(data))
    damaged = tmp_path / "damaged.pcap"
    cut = len(data) // 2
    damaged.write_bytes(data[:cut] + b"\xff" * 16 + data[cut:])  # an impossible record length
    for path in (packed, damaged):
        hashes = CaptureHashes(every_capture=True)
        try:
            for batch in iter_batches([path]):
                hashes.offer(batch)
            assert hashes.get(str(path)) == sha(path)
        finally:
            hashes.close()


def test_a_capture_gone_before_its_hash_is_an_error_not_a_wrong_hash(tmp_path):
    """Deleted while being scanned (a ring buffer's rotation): its windows were hashed, the
    rest cannot be read, so there is no hash, and no wrong one."""
    path = shutil.copy(SESSION, tmp_path / "gone.pcap")
    hashes = CaptureHashes(every_capture=True)
    try:
        for batch in read_capture(path, FileReport(str(path)), chunk_bytes=4096):
            hashes.offer(batch)
        Path(path).unlink()
        with pytest.raises(OSError):
            hashes.get(str(path))
        with pytest.raises(OSError):
            hashes.get(str(tmp_path / "never-there.pcap"))
    finally:
        hashes.close()


def test_scan_records_carry_their_captures_sha256(tmp_path):
    names = ("stratum_v1_cgminer_sha256d.pcap", "cryptonote_xmrig.pcap", "stratum_v1_kaspa.pcap")
    copies = [shutil.copy(STRATUM / n, tmp_path / n) for n in names]
    records = list(scan_detections(copies, contacts=False))
    assert sorted(Path(r.evidence["capture"]).name for r in records) == sorted(names)
    for r in records:
        assert r.evidence["capture_sha256"] == sha(Path(r.evidence["capture"]))


def test_the_tally_kernel_counts_what_its_twin_counts(sample):
    for batch in iter_batches([sample]):
        counts = np.zeros(len(PacketStatus), np.int64)
        total = headers.tally_packets(batch.packets, counts)
        want_counts, want_total = tally_packets_reference(batch.packets, len(PacketStatus))
        assert counts.tolist() == want_counts and int(total) == want_total


def test_on_one_cpu_the_hash_is_done_in_the_scans_thread(tmp_path, hashing_mode):
    """No thread when the process may use one CPU only (it would only add switches); the
    digest is the same."""
    path = shutil.copy(SESSION, tmp_path / "s.pcap")
    hashes = CaptureHashes(every_capture=True)
    try:
        for batch in iter_batches([path], batch_packets=2):
            hashes.offer(batch)
        assert hashes.get(str(path)) == sha(Path(path))
        assert (hashes._pool is None) == (hashing_mode == "inline")
    finally:
        hashes.close()


def test_the_cpu_count_is_the_processes_affinity_not_the_machines():
    code = ("import os; os.sched_setaffinity(0, {min(os.sched_getaffinity(0))}); "
            "from poolwatch.scan import CaptureHashes; print(CaptureHashes().background)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert out.strip() == "False"
