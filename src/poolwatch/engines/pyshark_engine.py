"""Reference engine on pyshark: Wireshark's tshark dissects, this module maps its fields.

Of the three reference engines this is the independent one: tshark finds the headers with its
own dissectors, and every value here (addresses, ports, tags, lengths, where each header starts)
is a field tshark reports. The contract's rules (docs/decoding.md) are then applied to those
values, because tshark judges some packets differently: it opens 802.3 LLC/SNAP frames, checks
lengths by its own rules, and so on. Where tshark does not report what the contract needs, the
column stays 0 and the difference is listed in docs/decoding.md.

tshark runs once per file (``pyshark.FileCapture`` with JSON output and raw bytes). It reads
gzip itself; xz and zstd captures are decompressed to a temporary file first. Very slow.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

from ..errors import ReaderError, TruncatedTail
from ..readers.source import DECOMPRESS_ERRORS, PCAP_MAGICS, PCAPNG_MAGIC, open_stream
from ..records import (
    PKT_FLAG_FRAGMENT,
    PKT_FLAG_V6,
    SUPPORTED_LINKTYPES,
    FileReport,
    PacketBatch,
    PacketStatus,
    addr_to_halves,
)
from ._python import ICMP_PAIRS, MAX_EXT_HEADERS, RAW_LINKTYPES, Batch, Stop, decode_row, read_some

# Wireshark's encapsulation numbers (frame.encap_type) for the link types poolwatch decodes.
# Link types 12 and 14 share WTAP_ENCAP_RAW_IP with 101, so they come back as 101.
_ENCAP_LINKTYPES = {1: 1, 4: 9, 7: 101, 15: 0, 25: 113, 28: 104, 129: 228, 130: 229, 174: 108,
                    210: 276}  # fmt: skip
_UNKNOWN_LINKTYPE = 0xFFFF
# tshark protocols that make up the link-layer headers the contract follows.
_LINK_LAYERS = {"eth", "ethertype", "vlan", "ieee8021ad", "pppoes", "ppp", "mpls", "sll", "raw",
                "null", "chdlc"}  # fmt: skip
_TAG_LAYERS = ("vlan", "ieee8021ad")
# IPv6 extension headers as tshark nests them in the ipv6 layer: (field with the next
# header, size in bytes from the header's length field).
_EXT_LAYERS = {
    "hopopts": ("nxt", lambda h: int(_field(h, "len")) * 8 + 8),
    "dstopts": ("nxt", lambda h: int(_field(h, "len")) * 8 + 8),
    "routing": ("nxt", lambda h: int(_field(h, "len")) * 8 + 8),
    "mipv6": ("proto", lambda h: int(_field(h, "hlen")) * 8 + 8),
    "ah": ("next_header", lambda h: (int(_field(h, "length")) + 2) * 4),
    "fraghdr": ("nxt", lambda h: 8),
}
_EXT_PROTOCOLS = {0: "hopopts", 60: "dstopts", 43: "routing", 135: "mipv6", 51: "ah", 44: "fraghdr"}
# Reassembly would move upper-layer fields to the last fragment or segment: keep each frame alone.
_PREFERENCES = {
    "ip.defragment": "FALSE",
    "ipv6.defragment": "FALSE",
    "tcp.desegment_tcp_streams": "FALSE",
}


def _field(layer, name: str) -> str | None:
    """tshark's shown value of a field of a pyshark layer (the first if it repeats), or None."""
    try:
        value = layer.get_field(name)
    except AttributeError:
        return None
    if isinstance(value, list):
        value = value[0]
    return None if value is None else str(value)


def _int(layer, name: str) -> int | None:
    value = _field(layer, name)
    if value is None:
        return None
    return int(value, 16) if value.startswith("0x") else int(value)


def _position(layer, name: str) -> int | None:
    """Where a field's bytes start in the frame, from tshark's raw output (``-x``)."""
    try:
        raw = layer.get_field(name + "_raw")
    except AttributeError:
        return None
    if not isinstance(raw, list) or len(raw) < 2:
        return None
    pos = str(raw[1])
    return 0 if pos == "None" else int(pos)  # pyshark shows a 0 in these lists as None


def _occurrences(layer) -> list:
    """A layer and the repeats of it that pyshark keeps aside (stacked tags, tunnels)."""
    return [layer, *layer.duplicate_layers]


def _start(layer) -> int | None:
    """Where a protocol's header starts: the first byte any of its fields covers."""
    starts = [_position(layer, f[:-4]) for f in layer.field_names if f.endswith("_raw")]
    return min((p for p in starts if p is not None), default=None)


# ---------------------------------------------------------------------------
# Headers
# ---------------------------------------------------------------------------
def _ip_layer(pkt):
    """(the outermost IPv4/IPv6 layer, its version, where it starts), or None."""
    found = []
    for name, version in (("ip", 4), ("ipv6", 6)):
        if name in pkt:
            layer = pkt[name]
            pos = _position(layer, "version")
            if pos is not None:
                found.append((pos, version, layer))
    if not found:
        return None
    pos, version, layer = min(found, key=lambda f: f[0])
    return layer, version, pos


def _link(row, pkt, linktype: int) -> tuple[int, int]:
    """(l3_off, IP version), after the tags; else the link-layer status."""
    caplen = int(row["caplen"])
    if linktype not in SUPPORTED_LINKTYPES:
        raise Stop(PacketStatus.UNKNOWN_LINKTYPE)
    ip = _ip_layer(pkt)
    l3 = ip[2] if ip else caplen
    tags = sorted(
        (pos, int(_field(tag, "id")))
        for name in _TAG_LAYERS if name in pkt
        for tag in _occurrences(pkt[name])
        # a tag counts when all 4 bytes were captured, i.e. tshark read its EtherType too
        if (pos := _position(tag, "id")) is not None and pos < l3 and _field(tag, "etype")
    )  # fmt: skip
    for (_, vid), column in zip(tags, ("vlan", "inner_vlan")):
        row[column] = vid
    if ip and not _other_protocol_before(pkt, ip[0], l3):
        return l3, ip[1]
    if ip is None and linktype in RAW_LINKTYPES:  # tshark found no IP version it knows
        raise Stop(PacketStatus.TRUNCATED_L2 if caplen == 0 else PacketStatus.BAD_IP_HEADER)
    protocols = _field(pkt.frame_info, "protocols").split(":")
    if "_ws.malformed" in pkt and protocols[-1] in _LINK_LAYERS:
        raise Stop(PacketStatus.TRUNCATED_L2)
    raise Stop(PacketStatus.NOT_IP)


def _other_protocol_before(pkt, ip, l3: int) -> bool:
    """Whether tshark reached the IP header through something the contract does not follow,
    such as 802.3 LLC/SNAP: a non-link protocol listed before IP that starts before it."""
    for layer in pkt.layers:
        if layer is ip:
            return False
        name = layer.layer_name
        if name in _LINK_LAYERS or name.endswith("_raw") or name.startswith("_ws"):
            continue
        if (start := _start(layer)) is not None and start < l3:
            return True
    return False


def _ipv4(row, pkt, l3: int, wirelen: int) -> int:
    """IPv4 fields → offset of the transport header."""
    ip, caplen = pkt["ip"], int(row["caplen"])  # the layer _ip_layer found
    if caplen - l3 < 20:
        raise Stop(PacketStatus.TRUNCATED_L3)
    ihl = _int(ip, "hdr_len")
    if _int(ip, "version") != 4 or ihl is None or ihl < 20:
        raise Stop(PacketStatus.BAD_IP_HEADER)
    if caplen - l3 < ihl:
        raise Stop(PacketStatus.TRUNCATED_L3)
    total = _int(ip, "len")  # tshark shows wirelen - l3 for 0 (segmentation offload) already
    if total is None or total < ihl:
        raise Stop(PacketStatus.BAD_IP_HEADER)
    row["ip_len"] = total
    row["proto"] = _int(ip, "proto")
    row["src_hi"], row["src_lo"] = addr_to_halves(_field(ip, "src"))
    row["dst_hi"], row["dst_lo"] = addr_to_halves(_field(ip, "dst"))
    if _int(ip, "frag_offset"):
        raise Stop(PacketStatus.FRAGMENT)
    if _int(ip, "flags") & 0x01:  # tshark's 3-bit flags: reserved, DF, MF
        row["flags"] |= PKT_FLAG_FRAGMENT
    return l3 + ihl


def _ipv6(row, pkt, l3: int, wirelen: int) -> int:
    """IPv6 fields and extension headers → offset of the transport header."""
    ip6, caplen = pkt["ipv6"], int(row["caplen"])  # the layer _ip_layer found
    if caplen - l3 < 40:
        raise Stop(PacketStatus.TRUNCATED_L3)
    if _int(ip6, "version") != 6:
        raise Stop(PacketStatus.BAD_IP_HEADER)
    plen = _int(ip6, "plen")
    row["ip_len"] = 40 + plen if plen else max(40, wirelen - l3)  # 0: jumbogram
    row["flags"] |= PKT_FLAG_V6
    row["src_hi"], row["src_lo"] = addr_to_halves(_field(ip6, "src"))
    row["dst_hi"], row["dst_lo"] = addr_to_halves(_field(ip6, "dst"))
    headers = _extension_headers(ip6)
    bad = PacketStatus.BAD_EXTENSION_HEADERS
    nh, off = _int(ip6, "nxt"), l3 + 40
    for _ in range(MAX_EXT_HEADERS):
        if nh not in _EXT_PROTOCOLS:
            break
        header = headers.get(off)
        if header is None or header[0] != _EXT_PROTOCOLS[nh]:  # tshark gave up on it
            raise Stop(bad)
        kind, layer = header
        next_field, size = _EXT_LAYERS[kind]
        if off + size(layer) > caplen:
            raise Stop(bad)
        nh, off = _int(layer, next_field), off + size(layer)
        if kind == "fraghdr":
            if _int(layer, "offset"):
                row["proto"] = nh
                raise Stop(PacketStatus.FRAGMENT)
            if _int(layer, "more"):
                row["flags"] |= PKT_FLAG_FRAGMENT
    row["proto"] = nh
    return off


def _extension_headers(ip6) -> dict[int, tuple[str, object]]:
    """tshark's IPv6 extension headers by where they start: {offset: (kind, layer)}."""
    found = {}
    for kind, (next_field, _) in _EXT_LAYERS.items():
        try:
            layers = ip6.get_field(kind)
        except AttributeError:
            continue
        for layer in layers if isinstance(layers, list) else [layers]:
            pos = _position(layer, next_field)
            if pos is not None:
                found[pos] = (kind, layer)
    return found


def _transport(row, pkt, l4: int) -> None:
    """TCP/UDP/ICMP fields: ports, flags and the payload span."""
    ip_end = min(int(row["l3_off"]) + int(row["ip_len"]), int(row["caplen"]))
    avail = ip_end - l4
    proto = int(row["proto"])
    short = PacketStatus.TRUNCATED_L4
    layer_name = {6: "tcp", 17: "udp", 1: "icmp", 58: "icmpv6"}.get(proto)
    layer = pkt[layer_name] if layer_name and layer_name in pkt else None
    if proto == 6:
        if avail < 20:
            raise Stop(short)
        hdr = _int(layer, "hdr_len") if layer is not None else None
        if hdr is not None and hdr < 20:
            raise Stop(PacketStatus.BAD_L4_HEADER)
        if hdr is not None:
            row["sport"], row["dport"] = _int(layer, "srcport"), _int(layer, "dstport")
            row["tcp_flags"] = _int(layer, "flags") & 0xFF
        hdr = hdr or 20  # tshark did not dissect it: the least a TCP header can be
    elif proto == 17:
        if avail < 8:
            raise Stop(short)
        if layer is not None:
            row["sport"], row["dport"] = _int(layer, "srcport"), _int(layer, "dstport")
        hdr = 8
    elif proto in ICMP_PAIRS:
        if avail < 4:
            raise Stop(short)
        if layer is not None:
            itype = _int(layer, "type")
            row["sport"], row["dport"] = itype, ICMP_PAIRS[proto].get(itype, _int(layer, "code"))
        hdr = 4
    else:
        hdr = 0
    row["payload_off"] = l4 + hdr
    row["payload_len"] = max(0, avail - hdr)


def _decode(row, pkt) -> None:
    """Fill the header columns of one PACKET row from tshark's dissection of the packet."""
    decode_row(row, pkt, _link, _ipv4, _ipv6, _transport)


def _ts_ns(time_epoch: str | None) -> int:
    """frame.time_epoch ("seconds.nanoseconds") → ns, exactly; 0 when tshark has no time."""
    if not time_epoch:
        return 0
    sec, _, frac = time_epoch.partition(".")
    ns = int(sec) * 1_000_000_000
    return ns + int(frac.ljust(9, "0")[:9]) * (-1 if sec.startswith("-") else 1)


# ---------------------------------------------------------------------------
# Files
# ---------------------------------------------------------------------------
@contextlib.contextmanager
def _readable_by_tshark(path: Path, report: FileReport):
    """The capture as a file tshark can open: itself, or decompressed to a temporary file.

    Yields its path, or None when the start of the file is already broken (``report.error``)."""
    try:
        stream, report.compression = open_stream(path)
    except ReaderError as exc:
        report.error = str(exc)
        yield None
        return
    with stream:
        try:
            head = stream.read(24)
        except DECOMPRESS_ERRORS as exc:
            report.error = str(ReaderError(str(path), 0, f"cannot decompress: {exc}"))
            head = b""
        if head[:4] in PCAP_MAGICS or head[:4] == PCAPNG_MAGIC:
            report.format = "pcapng" if head[:4] == PCAPNG_MAGIC else "pcap"
        if report.error is None:
            reason = None
            if not head:
                reason = "file is empty"
            elif report.format == "unknown":
                reason = f"not a pcap or pcapng file (starts with {head[:4].hex()})"
            elif report.format == "pcap" and len(head) < 24:
                reason = "file ends inside the 24-byte pcap header"
            if reason:
                report.error = str(ReaderError(str(path), 0, reason))
        if report.error:
            yield None
            return
        if report.compression in ("none", "gzip"):
            yield path
            return
        with tempfile.NamedTemporaryFile(prefix="poolwatch-", suffix=".pcap") as tmp:
            tmp.write(head)
            try:
                while chunk := read_some(stream, 1 << 20):
                    tmp.write(chunk)
            except DECOMPRESS_ERRORS as exc:  # tshark still reads what came before
                report.error = str(ReaderError(str(path), tmp.tell(), f"cannot decompress: {exc}"))
            tmp.flush()
            yield Path(tmp.name)


def iter_batches(
    path: Path, report: FileReport, batch_packets: int = 65536
) -> Iterator[PacketBatch]:
    """Decoded batches of one capture, read by tshark. Damage ends the file with
    ``report.error`` set; every packet tshark read before it is yielded.

    tshark does not say how far it read: ``report.bytes_read`` is worked out from the records
    for pcap, and is the decompressed size for a pcapng file read to its end (else 0)."""
    import pyshark  # here, so that poolwatch runs without pyshark installed

    name = str(path)
    with _readable_by_tshark(Path(path), report) as readable:
        if readable is None:
            return
        capture = pyshark.FileCapture(
            os.fspath(readable), keep_packets=False, use_json=True, include_raw=True,
            override_prefs=_PREFERENCES,
        )  # fmt: skip
        batch = Batch(name, batch_packets, _decode)
        end_of_records = 24  # pcap: where the next record starts
        packets = iter(capture)
        try:
            while (pkt := _next_packet(packets, name, report, end_of_records)) is not None:
                frame = pkt.frame_info
                data = pkt.get_raw_packet() if _int(frame, "cap_len") else b""  # no bytes, no raw
                number, ts_ns = _int(frame, "number"), _ts_ns(_field(frame, "time_epoch"))
                linktype = _ENCAP_LINKTYPES.get(_int(frame, "encap_type"), _UNKNOWN_LINKTYPE)
                batch.add(number, ts_ns, linktype, _int(frame, "len"), data, pkt)
                report.packets += 1
                end_of_records += 16 + len(data)
                if batch.n == batch_packets:
                    yield batch.take()
        finally:
            _close(capture, name, report, end_of_records)
        if report.error:  # tshark names the temporary file it read
            report.error = report.error.replace(os.fspath(readable), name)
        if report.format == "pcap":
            report.bytes_read = end_of_records
        elif report.error is None:
            report.bytes_read = _decompressed_size(Path(readable))
    if batch.n:
        yield batch.take()


def _next_packet(packets, path: str, report: FileReport, end_of_records: int):
    """The next packet pyshark parsed, or None at the end. tshark's complaint about a broken
    file, or pyshark failing on tshark's output, becomes ``report.error``."""
    import pyshark

    try:
        return next(packets)
    except StopIteration:
        return None
    except pyshark.capture.capture.TSharkCrashException as exc:
        _tshark_failed(exc, path, report, end_of_records)
    except Exception as exc:  # noqa: BLE001 - pyshark's parser raises whatever it hits
        problem = f"{type(exc).__name__}: {exc}"
        reason = f"pyshark cannot parse the packet after frame {report.packets} ({problem})"
        _set_error(report, path, end_of_records, reason)
    return None


def _close(capture, path: str, report: FileReport, end_of_records: int) -> None:
    """Stop tshark; pyshark reports tshark's exit status for a broken file here, too."""
    import pyshark

    try:
        capture.close()
    except pyshark.capture.capture.TSharkCrashException as exc:
        _tshark_failed(exc, path, report, end_of_records)
        # pyshark keeps the exited tshark listed and would raise again when garbage-collected.
        capture._running_processes.clear()


def _tshark_failed(exc: Exception, path: str, report: FileReport, end_of_records: int) -> None:
    last_line = str(exc).split("Last error line:", 1)[-1].strip().splitlines()[0]
    _set_error(report, path, end_of_records, f"tshark stopped: {last_line}")


def _set_error(report: FileReport, path: str, end_of_records: int, reason: str) -> None:
    if report.error is None:  # else a decompression error came first
        where = end_of_records if report.format == "pcap" else None
        cut = "cut short in the middle of a packet" in reason
        if cut and report.compression == "none":  # a truncated tail: a warning
            report.warnings.append(str(TruncatedTail(path, where, reason)))
        else:
            report.error = str(ReaderError(path, where, reason))


def _decompressed_size(path: Path) -> int:
    stream, _ = open_stream(path)
    with stream:
        return sum(len(chunk) for chunk in iter(lambda: stream.read(1 << 20), b""))
