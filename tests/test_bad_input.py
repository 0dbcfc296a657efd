"""Damaged, odd and malformed inputs: reported with file and byte offset, never a crash.

Every bad file is made here, in ``tmp_path``, from the sample captures. The rule under test
(docs/cli.md): what was read before the damage is processed and written; a file that could
not be read to its end makes the exit status 1; a truncated last record is only a warning.
"""

from __future__ import annotations

import gzip
import io
import lzma
import random
import struct
import zlib
from pathlib import Path

import pandas as pd
import pytest
import zstandard

from .conftest import PCAPS, SAMPLES, flow_rows, oracle, scan_frame
from .test_cli import run_cli

RAW_IP = PCAPS / "raw_ip.pcap"
PCAPNG = PCAPS / "multi_interface.pcapng"
PCAP_SAMPLES = [p for p in SAMPLES if p.suffix == ".pcap"]


# ---------------------------------------------------------------------------- helpers

def record_offsets(data: bytes) -> list[tuple[int, int]]:
    """(offset, length) of every record (pcap) or block (pcapng), walked in plain Python."""
    out = []
    if data[:4] == b"\x0a\x0d\x0d\x0a":
        endian = "<" if data[8:12] == b"\x4d\x3c\x2b\x1a" else ">"
        pos = 0
        while pos < len(data):
            (length,) = struct.unpack_from(endian + "I", data, pos + 4)
            out.append((pos, length))
            pos += length
        return out
    endian = "<" if data[:4] in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1") else ">"
    pos = 24
    while pos < len(data):
        (incl,) = struct.unpack_from(endian + "I", data, pos + 8)
        out.append((pos, 16 + incl))
        pos += 16 + incl
    return out


def packet_offsets(data: bytes) -> list[int]:
    """Offsets of the packet records (pcapng: EPB/SPB/PB blocks only)."""
    if data[:4] != b"\x0a\x0d\x0d\x0a":
        return [off for off, _ in record_offsets(data)]
    return [off for off, _ in record_offsets(data)
            if struct.unpack_from("<I", data, off)[0] in (2, 3, 6)]


def write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def csv_rows(result) -> pd.DataFrame:
    return pd.read_csv(io.StringIO(result.stdout), keep_default_na=False)


def lines_naming(text: str, path: Path) -> list[str]:
    return [line for line in text.splitlines() if str(path) in line]


def flow_packets(frame: pd.DataFrame) -> int:
    return int(frame["pkts_toserver"].sum() + frame["pkts_toclient"].sum())


def pcap_bytes(frames: list[bytes], linktype: int = 1) -> bytes:
    out = struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, linktype)
    for i, frame in enumerate(frames):
        out += struct.pack("<IIII", 1772438400 + i, 0, len(frame), len(frame)) + frame
    return out


# ---------------------------------------------------------------------------- (a) not a capture

def test_text_file_is_one_line_error_exit_1(tmp_path):
    notes = write(tmp_path / "notes.pcap", b"These are my notes about the capture.\n" * 10)
    result = run_cli("flows", notes, "-f", "csv", "--no-progress")
    assert result.exit_code == 1
    assert "Traceback" not in result.stderr
    lines = lines_naming(result.stderr, notes)
    assert len(lines) == 1, result.stderr
    assert "not a pcap or pcapng file" in lines[0]
    assert lines[0].startswith("error")


def test_file_shorter_than_the_pcap_header(tmp_path):
    short = write(tmp_path / "short.pcap", RAW_IP.read_bytes()[:10])
    result = run_cli("flows", short, "-f", "csv", "--no-progress")
    assert result.exit_code == 1
    (line,) = lines_naming(result.stderr, short)
    assert "24-byte pcap header" in line


# ---------------------------------------------------------------------------- (b) last record cut

@pytest.mark.parametrize("capture", [*PCAP_SAMPLES, PCAPNG], ids=lambda p: p.name)
def test_last_record_cut_in_half_is_a_warning(tmp_path, capture):
    data = capture.read_bytes()
    last_off, last_len = record_offsets(data)[-1]
    assert last_off + last_len == len(data)
    cut = write(tmp_path / f"cut{capture.suffix}", data[: last_off + last_len // 2])
    clean = write(tmp_path / f"clean{capture.suffix}", data[:last_off])

    result = run_cli("flows", cut, "-f", "csv", "--no-progress")
    assert result.exit_code == 0, result.stderr
    (line,) = lines_naming(result.stderr, cut)
    assert line.startswith("warning")
    assert f"at offset {last_off}:" in line and "truncated" in line

    want, clean_summary = scan_frame([clean])
    got = csv_rows(result)
    assert flow_rows(got) == flow_rows(want)
    frame, summary = scan_frame([cut])
    assert summary.packets == clean_summary.packets == oracle(capture)["packets"] - 1
    assert summary.failed_files == []
    assert flow_rows(frame) == flow_rows(want)


def test_cut_inside_a_record_header(tmp_path):
    data = RAW_IP.read_bytes()
    last_off, _ = record_offsets(data)[-1]
    cut = write(tmp_path / "cut.pcap", data[: last_off + 7])
    result = run_cli("flows", cut, "-f", "csv", "--no-progress")
    assert result.exit_code == 0
    assert f"at offset {last_off}:" in result.stderr


def test_clean_cut_at_a_record_boundary_is_silent(tmp_path):
    data = RAW_IP.read_bytes()
    offsets = record_offsets(data)
    clean = write(tmp_path / "clean.pcap", data[: offsets[20][0]])
    result = run_cli("flows", clean, "-f", "csv", "--no-progress")
    assert result.exit_code == 0
    assert "warning" not in result.stderr and "error" not in result.stderr
    assert flow_packets(csv_rows(result)) == 20


# ---------------------------------------------------------------------------- (c) impossible length

@pytest.mark.parametrize("capture", [RAW_IP, PCAPS / "stratum_v1_plain_3333.pcap",
                                     PCAPS / "nanosecond.pcap"], ids=lambda p: p.name)
def test_impossible_record_length_stops_with_exact_offset(tmp_path, capture):
    data = bytearray(capture.read_bytes())
    offsets = packet_offsets(bytes(data))
    k = len(offsets) // 2
    endian = "<" if data[:4] in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1") else ">"
    struct.pack_into(endian + "I", data, offsets[k] + 8, 0x7FFFFFFF)
    bad = write(tmp_path / "bad.pcap", bytes(data))
    clean = write(tmp_path / "clean.pcap", bytes(data[: offsets[k]]))

    result = run_cli("flows", bad, "-f", "csv", "--no-progress")
    assert result.exit_code == 1
    assert "Traceback" not in result.stderr
    (line,) = lines_naming(result.stderr, bad)
    assert line.startswith("error")
    assert f"at offset {offsets[k]}:" in line and "2147483647" in line

    got = csv_rows(result)
    want, _ = scan_frame([clean])
    assert flow_rows(got) == flow_rows(want)
    frame, summary = scan_frame([bad])
    assert summary.packets == k
    assert [f.ok for f in summary.files] == [False]
    assert str(offsets[k]) in summary.files[0].error


def test_impossible_length_counts_flow_packets_before_the_damage(tmp_path):
    """raw_ip.pcap: every packet belongs to a flow, so flow packet totals = packets read."""
    data = bytearray(RAW_IP.read_bytes())
    offsets = packet_offsets(bytes(data))
    flows = oracle(RAW_IP)["flows"]
    assert sum(f["pkts_toserver"] + f["pkts_toclient"] for f in flows) == len(offsets)
    for k in (1, 10, len(offsets) - 1):
        damaged = bytearray(data)
        struct.pack_into("<I", damaged, offsets[k] + 8, 0x7FFFFFFF)
        bad = write(tmp_path / f"bad{k}.pcap", bytes(damaged))
        result = run_cli("flows", bad, "-f", "csv", "--no-progress")
        assert result.exit_code == 1
        assert flow_packets(csv_rows(result)) == k


def test_damage_in_the_first_record(tmp_path):
    data = bytearray(RAW_IP.read_bytes())
    struct.pack_into("<I", data, 24 + 8, 0xFFFFFFFF)
    bad = write(tmp_path / "bad.pcap", bytes(data))
    result = run_cli("flows", bad, "-f", "csv", "--no-progress")
    assert result.exit_code == 1
    assert "at offset 24:" in result.stderr
    assert len(csv_rows(result)) == 0


def test_pcapng_packet_longer_than_its_block(tmp_path):
    data = bytearray(PCAPNG.read_bytes())
    offsets = packet_offsets(bytes(data))
    k = 7
    struct.pack_into("<I", data, offsets[k] + 20, 5000)  # EPB captured length > block
    bad = write(tmp_path / "bad.pcapng", bytes(data))
    result = run_cli("flows", bad, "-f", "csv", "--no-progress")
    assert result.exit_code == 1
    (line,) = lines_naming(result.stderr, bad)
    assert f"at offset {offsets[k]}:" in line and "packet length 5000" in line
    assert flow_packets(csv_rows(result)) <= k
    _, summary = scan_frame([bad])
    assert summary.packets == k


# ---------------------------------------------------------------------------- (d) unknown link type

def test_unknown_link_type_is_counted_not_decoded(tmp_path):
    data = bytearray(RAW_IP.read_bytes())
    struct.pack_into("<I", data, 20, 147)  # LINKTYPE_USER0
    user0 = write(tmp_path / "user0.pcap", bytes(data))
    result = run_cli("flows", user0, "-f", "csv", "--no-progress")
    assert result.exit_code == 0, result.stderr
    (line,) = lines_naming(result.stderr, user0)
    assert line.startswith("warning") and "link type 147" in line
    assert "unknown_linktype 34" in result.stderr
    assert len(csv_rows(result)) == 0
    _, summary = scan_frame([user0])
    assert summary.weirds.counts == {"unknown_linktype": oracle(RAW_IP)["packets"]}
    assert summary.failed_files == []


def test_pcapng_interface_with_unknown_link_type(tmp_path):
    data = bytearray(PCAPNG.read_bytes())
    idbs = [off for off, _ in record_offsets(bytes(data))
            if struct.unpack_from("<I", data, off)[0] == 1]
    struct.pack_into("<H", data, idbs[1] + 8, 147)  # tun0 becomes USER0
    odd = write(tmp_path / "odd.pcapng", bytes(data))
    result = run_cli("flows", odd, "-f", "csv", "--no-progress")
    assert result.exit_code == 0
    assert "link type 147" in result.stderr
    frame, summary = scan_frame([odd])
    unknown = summary.weirds.counts.get("unknown_linktype", 0)
    assert 0 < unknown < summary.packets
    assert summary.packets == oracle(PCAPNG)["packets"]
    assert flow_packets(frame) == summary.packets - unknown - summary.not_ip


# ---------------------------------------------------------------------------- (e) pcapng blocks

@pytest.mark.parametrize("length", [0x7FFFFFFF, 8, 0, 102, 0xFFFFFFFF])
def test_pcapng_broken_block_length(tmp_path, length):
    data = bytearray(PCAPNG.read_bytes())
    offsets = packet_offsets(bytes(data))
    k = 5
    struct.pack_into("<I", data, offsets[k] + 4, length)
    bad = write(tmp_path / "bad.pcapng", bytes(data))
    clean = write(tmp_path / "clean.pcapng", bytes(data[: offsets[k]]))
    result = run_cli("flows", bad, "-f", "csv", "--no-progress")
    assert result.exit_code == 1, result.stderr
    assert "Traceback" not in result.stderr
    (line,) = lines_naming(result.stderr, bad)
    assert f"at offset {offsets[k]}:" in line and "block" in line
    want, _ = scan_frame([clean])
    assert flow_rows(csv_rows(result)) == flow_rows(want)
    _, summary = scan_frame([bad])
    assert summary.packets == k


@pytest.mark.parametrize("delta", [4, 8])
def test_pcapng_block_length_that_disagrees_with_its_trailer(tmp_path, delta):
    """A block length that is wrong but plausible (multiple of 4, inside the file): the
    trailing copy of the length shows the damage at this block, as Wireshark reports it."""
    data = bytearray(PCAPNG.read_bytes())
    offsets = packet_offsets(bytes(data))
    k = 5
    (length,) = struct.unpack_from("<I", data, offsets[k] + 4)
    struct.pack_into("<I", data, offsets[k] + 4, length + delta)
    bad = write(tmp_path / "bad.pcapng", bytes(data))
    _, summary = scan_frame([bad])
    assert summary.packets == k
    assert f"at offset {offsets[k]}:" in summary.files[0].error


def test_pcapng_bad_byte_order_magic(tmp_path):
    data = bytearray(PCAPNG.read_bytes())
    data[8:12] = b"\x00\x11\x22\x33"
    bad = write(tmp_path / "bad.pcapng", bytes(data))
    result = run_cli("flows", bad, "-f", "csv", "--no-progress")
    assert result.exit_code == 1
    assert "at offset 0:" in result.stderr


def test_pcapng_last_block_cut_is_a_warning(tmp_path):
    data = PCAPNG.read_bytes()
    last_off, last_len = record_offsets(data)[-1]
    cut = write(tmp_path / "cut.pcapng", data[: last_off + 10])
    result = run_cli("flows", cut, "-f", "csv", "--no-progress")
    assert result.exit_code == 0
    assert f"at offset {last_off}:" in result.stderr


def test_pcapng_headers_only(tmp_path):
    data = PCAPNG.read_bytes()
    first_packet = packet_offsets(data)[0]
    heads = write(tmp_path / "heads.pcapng", data[:first_packet])
    result = run_cli("flows", heads, "-f", "csv", "--no-progress")
    assert result.exit_code == 0
    assert len(csv_rows(result)) == 0
    assert "0 packets" in result.stderr


# ---------------------------------------------------------------------------- (f), (g)

def test_empty_file(tmp_path):
    empty = write(tmp_path / "empty.pcap", b"")
    result = run_cli("flows", empty, "-f", "csv", "--no-progress")
    assert result.exit_code == 1
    (line,) = lines_naming(result.stderr, empty)
    assert "empty" in line and line.startswith("error")


def test_header_only_pcap_is_zero_packets_exit_0(tmp_path):
    for capture in (RAW_IP, PCAPS / "nanosecond.pcap"):
        head = write(tmp_path / f"head_{capture.name}", capture.read_bytes()[:24])
        result = run_cli("flows", head, "-f", "csv", "--no-progress")
        assert result.exit_code == 0, result.stderr
        assert "0 packets" in result.stderr
        assert "warning" not in result.stderr and "error" not in result.stderr
        assert len(csv_rows(result)) == 0


# ---------------------------------------------------------------------------- (h) one bad of many

def test_one_bad_file_among_good_ones(tmp_path):
    goods = [PCAPS / "raw_ip.pcap", PCAPS / "linux_sll.pcap", PCAPS / "stratum_v1_plain_3333.pcap"]
    data = bytearray((PCAPS / "ethernet_vlan_qinq.pcap").read_bytes())
    offsets = packet_offsets(bytes(data))
    struct.pack_into("<I", data, offsets[3] + 8, 0x7FFFFFFF)
    bad = write(tmp_path / "bad.pcap", bytes(data))
    notes = write(tmp_path / "notes.txt", b"hello")
    paths = [goods[0], bad, goods[1], notes, goods[2]]

    result = run_cli("flows", *paths, "-f", "csv", "--no-progress")
    assert result.exit_code == 1
    assert "Traceback" not in result.stderr
    assert len(lines_naming(result.stderr, bad)) == 1
    assert len(lines_naming(result.stderr, notes)) == 1
    for good in goods:
        assert not lines_naming(result.stderr, good)
    assert "2 file(s) could not be read" in result.stderr

    want, _ = scan_frame(goods + [write(tmp_path / "clean.pcap", bytes(data[: offsets[3]]))])
    assert flow_rows(csv_rows(result)) == flow_rows(want)

    _, summary = scan_frame(paths)
    by_path = {Path(f.path): f for f in summary.files}
    for good in goods:
        assert by_path[good].ok and by_path[good].packets == oracle(good)["packets"]
    assert not by_path[bad].ok and by_path[bad].packets == 3
    assert not by_path[notes].ok and by_path[notes].packets == 0


def test_good_files_after_a_bad_one_in_a_directory(tmp_path):
    tree = tmp_path / "tree"
    tree.mkdir()
    (tree / "a_bad.pcap").write_bytes(RAW_IP.read_bytes()[:24] + b"\xff" * 16 + b"junk")
    (tree / "b_good.pcap").write_bytes((PCAPS / "linux_sll2.pcap").read_bytes())
    result = run_cli("flows", tree, "-f", "csv", "--no-progress")
    assert result.exit_code in (0, 1)
    got = csv_rows(result)
    assert flow_rows(got) == flow_rows(scan_frame([PCAPS / "linux_sll2.pcap"])[0])


# ---------------------------------------------------------------------------- (i) truncated gzip

def _decompressed_prefix(compressed: bytes, kind: str) -> bytes:
    """What a decompressor can still get out of a cut stream."""
    if kind == "gzip":
        return zlib.decompressobj(16 + zlib.MAX_WBITS).decompress(compressed)
    if kind == "xz":
        return lzma.LZMADecompressor().decompress(compressed)
    out = io.BytesIO()
    with zstandard.ZstdDecompressor().stream_reader(io.BytesIO(compressed)) as reader:
        while chunk := reader.read(1 << 16):
            out.write(chunk)
    return out.getvalue()


def _compress(data: bytes, kind: str) -> bytes:
    if kind == "gzip":
        return gzip.compress(data, mtime=0)
    if kind == "xz":
        return lzma.compress(data)
    return zstandard.ZstdCompressor(level=1).compress(data)


def big_capture(n_packets: int = 1500) -> bytes:
    """Raw-IP UDP packets with random payloads (so they do not compress away): several
    compressed blocks, and a cut compressed stream still holds a proportional prefix."""
    rng = random.Random(7)
    out = [struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 101)]
    for i in range(n_packets):
        payload = rng.randbytes(rng.randrange(50, 400))
        flow = i % 20
        udp = struct.pack(">HHHH", 40000 + flow, 53 + flow, 8 + len(payload), 0) + payload
        ip = struct.pack(">BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), i & 0xFFFF, 0, 64, 17, 0,
                         bytes([10, 0, 0, 1 + flow]), bytes([192, 0, 2, 1])) + udp
        out.append(struct.pack("<IIII", 1772438400 + i // 100, (i % 100) * 10_000, len(ip),
                               len(ip)) + ip)
    return b"".join(out)


@pytest.mark.parametrize("kind", ["gzip", "xz", "zstd"])
@pytest.mark.parametrize("fraction", [0.001, 0.3, 0.6, 0.9, 0.999])
def test_truncated_compressed_file(tmp_path, kind, fraction):
    data = big_capture()
    compressed = _compress(data, kind)
    cut = compressed[: max(int(len(compressed) * fraction), 8)]  # the magic at least
    bad = write(tmp_path / f"cut.pcap.{kind}", cut)

    prefix = _decompressed_prefix(cut, kind)
    complete = [off for off, length in record_offsets(data) if off + length <= len(prefix)]

    result = run_cli("flows", bad, "-f", "csv", "--no-progress")
    assert result.exit_code == 1, result.stderr
    assert "Traceback" not in result.stderr
    (line,) = lines_naming(result.stderr, bad)
    assert line.startswith("error") and ("decompress" in line or "empty" in line)
    _, summary = scan_frame([bad])
    assert summary.packets == len(complete)
    if fraction >= 0.6:  # (zstd gives whole blocks of up to 128 KiB only)
        assert len(complete) > 100
    lengths = dict(record_offsets(data))
    end = complete[-1] + lengths[complete[-1]] if complete else 24
    want, _ = scan_frame([write(tmp_path / "clean.pcap", data[:end])])
    assert flow_rows(csv_rows(result)) == flow_rows(want)


def test_truncated_gzip_keeps_the_packets_before_the_cut(tmp_path):
    """A larger capture: the cut lands after many packets, which must all be kept."""
    big = big_capture()
    compressed = gzip.compress(big, mtime=0)
    cut = compressed[: len(compressed) // 2]
    bad = write(tmp_path / "big.pcap.gz", cut)
    prefix = _decompressed_prefix(cut, "gzip")
    complete = [off for off, length in record_offsets(big) if off + length <= len(prefix)]
    assert len(complete) > 100
    _, summary = scan_frame([bad])
    assert summary.packets == len(complete)
    (report,) = summary.files
    assert not report.ok and str(bad) in report.error
    assert f"at offset {len(prefix)}:" in report.error  # where the decompressed data ends


# ---------------------------------------------------------------------------- malformed packets

def _frames():
    scapy_all = pytest.importorskip("scapy.all")
    Ether, IP, TCP, UDP, IPv6 = (scapy_all.Ether, scapy_all.IP, scapy_all.TCP, scapy_all.UDP,
                                 scapy_all.IPv6)
    hop = scapy_all.IPv6ExtHdrHopByHop
    mac = dict(src="02:00:00:00:00:01", dst="02:00:00:00:00:02")
    good = bytes(Ether(**mac) / IP(src="10.0.0.1", dst="10.0.0.2") / TCP(sport=1234, dport=80))

    tcp_doff2 = bytearray(good)
    tcp_doff2[14 + 20 + 12] = 2 << 4
    ihl3 = bytearray(bytes(Ether(**mac) / IP(src="10.0.0.1", dst="10.0.0.2")
                           / UDP(sport=1, dport=2)))
    ihl3[14] = 0x43
    ext = bytearray(bytes(Ether(**mac) / IPv6(src="2001:db8::1", dst="2001:db8::2") / hop()
                          / UDP(sport=5, dport=6)))
    ext[14 + 40 + 1] = 200  # hop-by-hop header claims 1608 bytes
    return {
        "good": good,
        "bad_l4_header": bytes(tcp_doff2),
        "bad_ip_header": bytes(ihl3),
        "bad_extension_headers": bytes(ext),
        "truncated_l2": good[:10],
    }


def test_malformed_packets_are_counted_as_weird(tmp_path):
    frames = _frames()
    capture = write(tmp_path / "malformed.pcap", pcap_bytes(list(frames.values())))
    frame, summary = scan_frame([capture])
    assert summary.packets == len(frames)
    assert summary.failed_files == []
    assert summary.weirds.counts == {name: 1 for name in frames if name != "good"}
    assert len(frame) == 1 and frame.iloc[0]["dest_port"] == 80

    result = run_cli("flows", capture, "-f", "csv", "--no-progress")
    assert result.exit_code == 0
    assert ("weird: bad_extension_headers 1, bad_ip_header 1, bad_l4_header 1, truncated_l2 1"
            in result.stderr)


@pytest.mark.parametrize("name", ["bad_l4_header", "bad_ip_header", "bad_extension_headers",
                                  "truncated_l2"])
def test_each_malformed_packet_alone(tmp_path, name):
    frame_bytes = _frames()[name]
    capture = write(tmp_path / f"{name}.pcap", pcap_bytes([frame_bytes] * 3))
    frame, summary = scan_frame([capture])
    assert summary.weirds.counts == {name: 3}
    assert len(frame) == 0


@pytest.mark.parametrize("cut", range(0, 74, 3))
def test_every_truncation_of_a_packet_decodes_without_crash(tmp_path, cut):
    """Captured length cut anywhere in Ethernet/IPv4/TCP: a status, never a crash."""
    good = _frames()["good"]
    capture = write(tmp_path / "t.pcap", pcap_bytes([good[:cut]]))
    frame, summary = scan_frame([capture])
    assert summary.packets == 1
    if cut < 14:
        assert summary.weirds.counts == {"truncated_l2": 1}
    elif cut < 34:
        assert summary.weirds.counts == {"truncated_l3": 1}
    elif cut < 54:
        assert summary.weirds.counts == {"truncated_l4": 1}
    else:
        assert summary.weirds.counts == {} and len(frame) == 1
