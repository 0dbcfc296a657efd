"""Compressed captures read like plain ones; directories are walked for captures only.

Compression is recognised by content, not by name, so each sample is also written under a
misleading name (gzip in ``.pcap``, zstd in ``.xz``, ...).
"""

from __future__ import annotations

import gzip
import io
import lzma
import shutil
from pathlib import Path

import pandas as pd
import pytest
import zstandard

from .conftest import PCAPS, SAMPLES, oracle, scan_frame
from .test_cli import frame_rows, oracle_flows, run_cli

COMPRESSORS = {
    "gzip": lambda data: gzip.compress(data, mtime=0),
    "xz": lambda data: lzma.compress(data),
    "zstd": lambda data: zstandard.ZstdCompressor(level=3).compress(data),
}
PROPER = {"gzip": ".gz", "xz": ".xz", "zstd": ".zst"}
MISLEADING = {"gzip": ".xz", "xz": ".zst", "zstd": ".gz"}


def _all_columns(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.reset_index(drop=True)


@pytest.fixture(scope="module")
def plain_frames():
    return {p: scan_frame([p]) for p in SAMPLES}


@pytest.mark.parametrize("kind", list(COMPRESSORS))
@pytest.mark.parametrize("naming", ["proper", "misleading", "plain_name"])
def test_compressed_sample_gives_the_same_flows(tmp_path, sample, kind, naming, plain_frames):
    data = COMPRESSORS[kind](sample.read_bytes())
    name = {"proper": sample.name + PROPER[kind],
            "misleading": sample.name + MISLEADING[kind],
            "plain_name": sample.name}[naming]  # compressed content, capture name
    path = tmp_path / name
    path.write_bytes(data)

    frame, summary = scan_frame([path])
    want, want_summary = plain_frames[sample]
    pd.testing.assert_frame_equal(_all_columns(frame), _all_columns(want))
    assert summary.packets == want_summary.packets == oracle(sample)["packets"]
    assert summary.weirds.counts == want_summary.weirds.counts
    (report,) = summary.files
    assert report.ok and report.compression == kind and report.warnings == []


@pytest.mark.parametrize("kind", list(COMPRESSORS))
def test_compressed_through_the_cli(tmp_path, kind):
    paths = []
    for sample in SAMPLES:
        path = tmp_path / (sample.name + MISLEADING[kind])
        path.write_bytes(COMPRESSORS[kind](sample.read_bytes()))
        paths.append(path)
    compressed = run_cli("flows", *paths, "-f", "csv", "--no-progress")
    plain = run_cli("flows", *SAMPLES, "-f", "csv", "--no-progress")
    assert compressed.exit_code == plain.exit_code == 0, compressed.stderr
    assert compressed.stdout == plain.stdout


def test_multi_member_gzip(tmp_path):
    """Concatenated gzip members (``cat a.gz b.gz``) are one stream, as gunzip reads them."""
    data = (PCAPS / "raw_ip.pcap").read_bytes()
    cut = len(data) // 2
    path = tmp_path / "two.pcap.gz"
    path.write_bytes(gzip.compress(data[:cut], mtime=0) + gzip.compress(data[cut:], mtime=0))
    frame, summary = scan_frame([path])
    assert summary.failed_files == []
    assert summary.packets == oracle(PCAPS / "raw_ip.pcap")["packets"]
    pd.testing.assert_frame_equal(frame, scan_frame([PCAPS / "raw_ip.pcap"])[0])


def test_multi_stream_xz(tmp_path):
    data = (PCAPS / "raw_ip.pcap").read_bytes()
    cut = len(data) // 3
    path = tmp_path / "two.pcap.xz"
    path.write_bytes(lzma.compress(data[:cut]) + lzma.compress(data[cut:]))
    frame, summary = scan_frame([path])
    assert summary.failed_files == []
    assert summary.packets == oracle(PCAPS / "raw_ip.pcap")["packets"]
    pd.testing.assert_frame_equal(frame, scan_frame([PCAPS / "raw_ip.pcap"])[0])


@pytest.mark.parametrize("parts", [2, 5])
def test_multi_frame_zstd(tmp_path, parts):
    """Several zstd frames one after another (``zstd`` decompresses them all; pzstd writes
    them): every frame is read, not only the first."""
    data = (PCAPS / "multi_interface.pcapng").read_bytes()
    step = len(data) // parts + 1
    cctx = zstandard.ZstdCompressor(level=1)
    path = tmp_path / "frames.pcapng.zst"
    path.write_bytes(b"".join(cctx.compress(data[i:i + step]) for i in range(0, len(data), step)))
    frame, summary = scan_frame([path])
    assert summary.failed_files == [], summary.files[0].error
    assert summary.packets == oracle(PCAPS / "multi_interface.pcapng")["packets"]
    pd.testing.assert_frame_equal(frame, scan_frame([PCAPS / "multi_interface.pcapng"])[0])


def test_zstd_without_content_size_and_with_checksum(tmp_path):
    data = (PCAPS / "benign_tls_and_dns.pcap").read_bytes()
    cctx = zstandard.ZstdCompressor(level=5, write_content_size=False, write_checksum=True)
    out = io.BytesIO()
    with cctx.stream_writer(out, closefd=False) as writer:
        for i in range(0, len(data), 700):  # streamed in pieces
            writer.write(data[i:i + 700])
    path = tmp_path / "streamed.pcap.zst"
    path.write_bytes(out.getvalue())
    frame, summary = scan_frame([path])
    assert summary.failed_files == []
    pd.testing.assert_frame_equal(frame, scan_frame([PCAPS / "benign_tls_and_dns.pcap"])[0])


def test_zstd_skippable_frame_is_ignored(tmp_path):
    data = (PCAPS / "raw_ip.pcap").read_bytes()
    skippable = (0x184D2A50).to_bytes(4, "little") + (5).to_bytes(4, "little") + b"notes"
    path = tmp_path / "skip.pcap.zst"
    path.write_bytes(zstandard.ZstdCompressor().compress(data) + skippable)
    frame, summary = scan_frame([path])
    assert summary.failed_files == []
    assert summary.packets == oracle(PCAPS / "raw_ip.pcap")["packets"]


@pytest.mark.parametrize("kind", list(COMPRESSORS))
def test_compressed_garbage_is_an_error_not_a_crash(tmp_path, kind):
    magic = {"gzip": b"\x1f\x8b", "xz": b"\xfd7zXZ\x00", "zstd": b"\x28\xb5\x2f\xfd"}[kind]
    path = tmp_path / f"garbage.pcap{PROPER[kind]}"
    path.write_bytes(magic + b"\x00\x01garbage" * 50)
    result = run_cli("flows", path, "-f", "csv", "--no-progress")
    assert result.exit_code == 1
    assert "Traceback" not in result.stderr
    (line,) = [ln for ln in result.stderr.splitlines() if str(path) in ln]
    assert line.startswith("error") and "decompress" in line


@pytest.mark.parametrize("kind", list(COMPRESSORS))
def test_compressed_text_is_not_a_capture(tmp_path, kind):
    path = tmp_path / f"notes{PROPER[kind]}"
    path.write_bytes(COMPRESSORS[kind](b"just some text\n" * 100))
    result = run_cli("flows", path, "-f", "csv", "--no-progress")
    assert result.exit_code == 1
    assert "not a pcap or pcapng file" in result.stderr


@pytest.mark.parametrize("kind", list(COMPRESSORS))
def test_compressed_empty_file(tmp_path, kind):
    path = tmp_path / f"empty.pcap{PROPER[kind]}"
    path.write_bytes(COMPRESSORS[kind](b""))
    result = run_cli("flows", path, "-f", "csv", "--no-progress")
    assert result.exit_code == 1
    assert "empty" in result.stderr


# ---------------------------------------------------------------------------- directories

def _tree(root: Path) -> list[Path]:
    """A tree of the samples, compressed or not, among notes and oracles. Returns captures."""
    captures = []
    for i, sample in enumerate(SAMPLES):
        sub = root / f"site{i % 3}" / f"day{i % 2}" / ("deep" if i % 4 == 0 else "")
        sub.mkdir(parents=True, exist_ok=True)
        kind = list(COMPRESSORS)[i % 4] if i % 4 < 3 else None
        name = sample.stem + (".bin" if i % 5 == 0 else sample.suffix)  # names do not matter
        path = sub / name
        data = sample.read_bytes()
        path.write_bytes(COMPRESSORS[kind](data) if kind else data)
        captures.append(path)
        shutil.copy(sample.with_suffix(".expected.json"), sub / (sample.stem + ".expected.json"))
    (root / "README.txt").write_text("captures from the lab\n")
    (root / "site0" / "notes.md").write_text("# notes\n")
    (root / "site1" / "checksums.sha256").write_text("0" * 64 + "  x.pcap\n")
    (root / "site1" / "archive.txt.gz").write_bytes(gzip.compress(b"not a capture"))
    (root / "site2" / "empty.pcap").write_bytes(b"")
    (root / "site2" / "tiny").write_bytes(b"\xd4")
    return captures


def test_directory_tree_is_read_recursively_skipping_non_captures(tmp_path):
    root = tmp_path / "captures"
    captures = _tree(root)
    frame, summary = scan_frame([root])
    assert sorted(Path(f.path) for f in summary.files) == sorted(captures)
    assert summary.failed_files == []
    assert frame_rows(frame) == oracle_flows()
    assert summary.packets == sum(oracle(s)["packets"] for s in SAMPLES)

    result = run_cli("flows", root, "-f", "csv", "--no-progress")
    assert result.exit_code == 0, result.stderr
    assert f"{len(captures)} file(s)" in result.stderr
    for skipped in ("README.txt", "notes.md", "checksums.sha256", "archive.txt.gz",
                    "expected.json", "empty.pcap", "tiny"):
        assert skipped not in result.stderr
    frame = pd.read_csv(io.StringIO(result.stdout), keep_default_na=False)
    assert frame_rows(frame) == oracle_flows()


def test_directory_is_read_in_sorted_order(tmp_path):
    root = tmp_path / "captures"
    captures = _tree(root)
    _, summary = scan_frame([root])
    assert [Path(f.path) for f in summary.files] == sorted(captures)


def test_file_named_directly_is_always_read(tmp_path):
    """Inside a directory a non-capture is passed over; named on the command line it is
    reported."""
    notes = tmp_path / "README.txt"
    notes.write_text("hello")
    result = run_cli("flows", tmp_path / "README.txt", "-f", "csv", "--no-progress")
    assert result.exit_code == 1
    assert str(notes) in result.stderr


def test_directory_and_files_mixed(tmp_path):
    root = tmp_path / "captures"
    captures = _tree(root)
    extra = PCAPS / "stratum_v1_plain_3333.pcap"
    _, summary = scan_frame([extra, root])
    assert [Path(f.path) for f in summary.files] == [extra, *sorted(captures)]
