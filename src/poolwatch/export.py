"""Exports for a case file: one session's packets as a pcap slice, and leads as STIX 2.1.

An investigator hands evidence on: the packets themselves (so that someone else can open
them in Wireshark and check what poolwatch said), tied to the stored capture they came from
by its SHA-256 and frame numbers; and the leads in a form their platform ingests (STIX 2.1,
see docs/exports.md). Both are built from what poolwatch already has: the capture readers,
and the lead dicts of :func:`poolwatch.leads.build_leads`. Neither needs the store.
"""

from __future__ import annotations

import hashlib
import ipaddress
import re
import struct
import uuid
from collections.abc import Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from . import __version__
from .errors import PoolwatchError
from .readers.pcapfile import MAX_STANDARD_CAPLEN
from .records import addr_to_halves
from .scan import ScanSummary, capture_sha256, iter_batches

# ---------------------------------------------------------------------------
# Errors
# ---------------------------------------------------------------------------


class ExportError(PoolwatchError):
    """An export could not be made. ``path`` names the capture it was cut from, if any."""

    def __init__(self, path: str | Path | None, reason: str) -> None:
        self.path = None if path is None else str(path)
        self.reason = reason
        super().__init__(reason if path is None else f"{path}: {reason}")


class CaptureMissing(ExportError):
    """The stored capture is not there (moved, deleted, or never written)."""


class CaptureUnreadable(ExportError):
    """The capture cannot be read to its end (not a capture, damaged, truncated compression):
    a slice from it could miss packets of the session, so none is given."""


class NoPacketsMatched(ExportError):
    """No packet of the capture has the session's 5-tuple within its time window."""


class MixedLinkTypes(ExportError):
    """The session's packets come from interfaces of several link types, which classic pcap
    (one link type per file) cannot hold; pcapng can."""


# ---------------------------------------------------------------------------
# pcap slices
# ---------------------------------------------------------------------------

SLICE_FORMATS = ("auto", "pcap", "pcapng")
PCAP_NS_MAGIC = 0xA1B23C4D
_PCAP_RECORD = np.dtype([("sec", "<u4"), ("frac", "<u4"), ("incl", "<u4"), ("orig", "<u4")])
_EPB_HEAD = np.dtype([("type", "<u4"), ("blen", "<u4"), ("iface", "<u4"), ("ts_hi", "<u4"),
                      ("ts_lo", "<u4"), ("incl", "<u4"), ("orig", "<u4")])


@dataclass
class SliceInfo:
    """What a slice holds and where it came from: what the case file records beside it.

    For classic pcap output this is the only place the provenance is kept (the format has
    no comments); pcapng output also carries it in its section header's comment.
    """

    capture: Path
    capture_sha256: str  # the capture file as stored (compressed or not), as scan reports it
    packets: int
    frames: list[int]  # the packets' 1-based frame numbers in the capture (Wireshark's)
    first_ts_ns: int
    last_ts_ns: int
    sha256: str  # of the slice's bytes as written to ``out``
    linktype: int | None  # the slice's link type; None for a pcapng slice of several
    linktypes: list[int] = field(default_factory=list)
    format: str = "pcap"  # pcap (nanosecond magic) or pcapng
    bytes: int = 0
    warnings: list[str] = field(default_factory=list)  # e.g. a truncated last record

    def frame_ranges(self) -> str:
        """Frame numbers as compact ranges, ``4-9,12,15-20``: short enough for a header."""
        return frame_ranges(self.frames)

    def as_dict(self) -> dict[str, Any]:
        return {"capture": str(self.capture), "capture_sha256": self.capture_sha256,
                "packets": self.packets, "frames": list(self.frames),
                "first_ts_ns": self.first_ts_ns, "last_ts_ns": self.last_ts_ns,
                "sha256": self.sha256, "linktype": self.linktype,
                "linktypes": list(self.linktypes), "format": self.format, "bytes": self.bytes,
                "warnings": list(self.warnings)}

    def headers(self) -> dict[str, str]:
        """HTTP response headers for an API that sends the slice as its body (the capture is
        named by file name only: the server's directory layout stays private)."""
        return {"X-Poolwatch-Capture": self.capture.name,
                "X-Poolwatch-Capture-SHA256": self.capture_sha256,
                "X-Poolwatch-Frames": self.frame_ranges(),
                "X-Poolwatch-Packets": str(self.packets),
                "X-Poolwatch-Slice-SHA256": self.sha256,
                "X-Poolwatch-Linktypes": ",".join(map(str, self.linktypes))}


def frame_ranges(frames: Iterable[int]) -> str:
    """Sorted frame numbers → ``a-b,c,...``."""
    out: list[str] = []
    values = sorted(set(int(f) for f in frames))
    i = 0
    while i < len(values):
        j = i
        while j + 1 < len(values) and values[j + 1] == values[j] + 1:
            j += 1
        out.append(str(values[i]) if i == j else f"{values[i]}-{values[j]}")
        i = j + 1
    return ",".join(out)


def _gather(buf: np.ndarray, starts: np.ndarray, lens: np.ndarray) -> np.ndarray:
    """The bytes ``buf[s:s+l]`` of every (start, len) pair, concatenated, in one fancy index."""
    lens = lens.astype(np.int64)
    total = int(lens.sum())
    if total == 0:
        return np.zeros(0, np.uint8)
    dest = np.cumsum(lens) - lens  # where each run starts in the result
    idx = np.repeat(starts.astype(np.int64) - dest, lens) + np.arange(total, dtype=np.int64)
    return buf[idx]


def _scatter(out: np.ndarray, dest_starts: np.ndarray, data: np.ndarray,
             lens: np.ndarray) -> None:
    """Put consecutive runs of ``data`` (lengths ``lens``) at ``dest_starts`` in ``out``."""
    lens = lens.astype(np.int64)
    total = int(lens.sum())
    if total == 0:
        return
    src = np.cumsum(lens) - lens
    idx = np.repeat(dest_starts.astype(np.int64) - src, lens) + np.arange(total, dtype=np.int64)
    out[idx] = data


def _pad4(n: np.ndarray | int):
    return (n + 3) // 4 * 4


def _option(code: int, value: bytes) -> bytes:
    return struct.pack("<HH", code, len(value)) + value + b"\0" * (_pad4(len(value)) - len(value))


def _block(btype: int, body: bytes) -> bytes:
    blen = 12 + len(body)
    return struct.pack("<II", btype, blen) + body + struct.pack("<I", blen)


def write_pcap(rows: np.ndarray, data: np.ndarray, linktype: int) -> np.ndarray:
    """A classic nanosecond pcap of PACKET ``rows`` (their ``ts_ns``, ``caplen``, ``wirelen``)
    whose bytes lie end to end in ``data``: header, then record header + bytes each."""
    n = len(rows)
    caplen = rows["caplen"].astype(np.int64)
    snaplen = max(MAX_STANDARD_CAPLEN, int(caplen.max()) if n else 0)
    head = struct.pack("<IHHiIII", PCAP_NS_MAGIC, 2, 4, 0, 0, snaplen, linktype)
    rec = 16 + caplen
    starts = len(head) + np.cumsum(rec) - rec
    out = np.zeros(len(head) + int(rec.sum()), np.uint8)
    out[: len(head)] = np.frombuffer(head, np.uint8)
    hdr = np.empty(n, _PCAP_RECORD)
    ts = rows["ts_ns"].astype(np.int64)
    hdr["sec"] = ts // 1_000_000_000
    hdr["frac"] = ts % 1_000_000_000
    hdr["incl"] = rows["caplen"]
    hdr["orig"] = rows["wirelen"]
    _scatter(out, starts, hdr.view(np.uint8), np.full(n, 16))
    _scatter(out, starts + 16, data, caplen)
    return out


def write_pcapng(rows: np.ndarray, data: np.ndarray, comment: str) -> np.ndarray:
    """A pcapng of PACKET ``rows`` (as :func:`write_pcap`): a section header whose comment
    names the source, one interface per link type (nanosecond timestamps), and an enhanced
    packet block per row."""
    linktypes, iface = np.unique(rows["linktype"], return_inverse=True)
    shb_opts = (_option(1, comment.encode()) + _option(4, f"poolwatch {__version__}".encode())
                + _option(0, b""))
    head = _block(0x0A0D0D0A, struct.pack("<IHHq", 0x1A2B3C4D, 1, 0, -1) + shb_opts)
    caplen = rows["caplen"].astype(np.int64)
    snaplen = max(MAX_STANDARD_CAPLEN, int(caplen.max()) if len(rows) else 0)
    for lt in linktypes:
        opts = _option(9, b"\x09") + _option(0, b"")  # if_tsresol = 10^-9
        head += _block(1, struct.pack("<HHI", int(lt), 0, snaplen) + opts)
    n = len(rows)
    blen = 32 + _pad4(caplen)
    starts = len(head) + np.cumsum(blen) - blen
    out = np.zeros(len(head) + int(blen.sum()), np.uint8)
    out[: len(head)] = np.frombuffer(head, np.uint8)
    epb = np.empty(n, _EPB_HEAD)
    ts = rows["ts_ns"].astype(np.int64).view(np.uint64)
    epb["type"] = 6
    epb["blen"] = blen
    epb["iface"] = iface
    epb["ts_hi"] = ts >> np.uint64(32)
    epb["ts_lo"] = ts & np.uint64(0xFFFFFFFF)
    epb["incl"] = rows["caplen"]
    epb["orig"] = rows["wirelen"]
    _scatter(out, starts, epb.view(np.uint8), np.full(n, 28))
    _scatter(out, starts + 28, data, caplen)
    trailer = blen.astype("<u4").view(np.uint8)
    _scatter(out, starts + blen - 4, trailer, np.full(n, 4))
    return out


_KEEP = ["frame", "ts_ns", "caplen", "wirelen", "linktype"]


def pcap_slice(
    capture: str | Path,
    *,
    src_ip: str,
    src_port: int,
    dest_ip: str,
    dest_port: int,
    proto: int = 6,
    first_seen_ns: int,
    last_seen_ns: int,
    margin_s: float = 1.0,
    out: BinaryIO,
    fmt: str = "auto",
) -> SliceInfo:
    """Write the packets of one session, cut from its stored capture, to ``out``.

    Why: the case file needs the packets themselves, checkable by anyone with Wireshark,
    and a provable tie to the capture they came from (its SHA-256 and the frame numbers).

    Selected: both directions of the 5-tuple (VLAN tags ignored: the same connection seen
    on several VLANs is one session) within ``[first_seen - margin, last_seen + margin]``,
    so the handshake and close just outside the session's messages come too. Packets are
    written as captured: original bytes, captured and original lengths, timestamps.

    ``fmt``: ``pcap`` (classic, nanosecond magic, the capture's link type), ``pcapng``
    (its section comment holds the source, its SHA-256 and the frame numbers), or ``auto``:
    pcap when the packets share one link type, else pcapng (a pcapng capture may carry the
    connection over interfaces of several link types, which classic pcap cannot say);
    ``pcap`` with several link types raises :class:`MixedLinkTypes`.

    Nothing is written unless the whole capture was read: a damaged capture raises
    :class:`CaptureUnreadable` (the slice might lack packets past the damage). A
    truncated last record (a capture stopped mid-write) is only a warning.
    """
    if fmt not in SLICE_FORMATS:
        raise ExportError(None, f"unknown slice format {fmt!r} "
                                f"(possible values: {', '.join(SLICE_FORMATS)})")
    path = Path(capture)
    if not path.exists():
        raise CaptureMissing(path, "no such capture file")
    if not path.is_file():
        raise CaptureUnreadable(path, "not a regular file")
    try:
        a_hi, a_lo = addr_to_halves(src_ip)
        b_hi, b_lo = addr_to_halves(dest_ip)
    except ValueError as exc:
        raise ExportError(path, f"bad address in the session: {exc}") from None
    lo_ts = int(first_seen_ns) - int(margin_s * 1e9)
    hi_ts = int(last_seen_ns) + int(margin_s * 1e9)
    if hi_ts < lo_ts:
        raise ExportError(path, "last_seen is before first_seen")

    summary = ScanSummary()
    rows: list[np.ndarray] = []
    data: list[np.ndarray] = []
    # hashlib releases the GIL: the capture is hashed on another core while it is read
    with ThreadPoolExecutor(1, thread_name_prefix="poolwatch-slice-sha256") as pool:
        digest = pool.submit(capture_sha256, path)
        for batch in iter_batches([path], summary=summary):
            p = batch.packets
            forward = ((p["src_hi"] == a_hi) & (p["src_lo"] == a_lo) & (p["sport"] == src_port)
                       & (p["dst_hi"] == b_hi) & (p["dst_lo"] == b_lo)
                       & (p["dport"] == dest_port))
            backward = ((p["src_hi"] == b_hi) & (p["src_lo"] == b_lo)
                        & (p["sport"] == dest_port) & (p["dst_hi"] == a_hi)
                        & (p["dst_lo"] == a_lo) & (p["dport"] == src_port))
            mask = ((forward | backward) & (p["proto"] == proto)
                    & (p["ts_ns"] >= lo_ts) & (p["ts_ns"] <= hi_ts))
            if not mask.any():
                continue
            sel = p[mask]
            rows.append(sel[_KEEP].copy())  # the reader reuses its arrays: copy now
            data.append(_gather(batch.buf, sel["data_off"], sel["caplen"]))
        try:
            sha = digest.result()
        except OSError as exc:
            raise CaptureUnreadable(path, f"cannot hash: {exc.strerror or exc}") from None
    report = summary.files[0]
    if report.error:
        # the reader's message already starts with the path
        raise CaptureUnreadable(None, f"{report.error}; no slice written")
    if not rows:
        raise NoPacketsMatched(
            path, f"no {_proto_name(proto)} packet between {src_ip}:{src_port} and "
                  f"{dest_ip}:{dest_port} from {_iso(lo_ts)} to {_iso(hi_ts)}")
    sel = np.concatenate(rows)
    payload = np.concatenate(data)
    linktypes = sorted({int(x) for x in np.unique(sel["linktype"])})
    frames = [int(f) for f in sel["frame"]]
    if fmt == "auto":
        fmt = "pcap" if len(linktypes) == 1 else "pcapng"
    if fmt == "pcap" and len(linktypes) > 1:
        raise MixedLinkTypes(path, f"the session's packets have link types {linktypes}: "
                                   "classic pcap holds one; ask for pcapng")
    if fmt == "pcap":
        blob = write_pcap(sel, payload, linktypes[0])
    else:
        comment = (f"poolwatch slice of {path} (sha256 {sha}): frames {frame_ranges(frames)}; "
                   f"{_proto_name(proto)} {src_ip}:{src_port} <-> {dest_ip}:{dest_port}")
        blob = write_pcapng(sel, payload, comment)
    out.write(memoryview(blob))
    return SliceInfo(
        capture=path, capture_sha256=sha, packets=len(sel), frames=frames,
        first_ts_ns=int(sel["ts_ns"].min()), last_ts_ns=int(sel["ts_ns"].max()),
        sha256=hashlib.sha256(memoryview(blob)).hexdigest(),
        linktype=linktypes[0] if len(linktypes) == 1 else None, linktypes=linktypes,
        format=fmt, bytes=len(blob), warnings=list(report.warnings))


def _iso(ns: int) -> str:
    return f"{datetime.fromtimestamp(ns // 10**9, timezone.utc):%Y-%m-%dT%H:%M:%S}.{ns % 10**9:09d}Z"


def _proto_name(proto: int) -> str:
    return {6: "TCP", 17: "UDP", 1: "ICMP", 58: "ICMPv6"}.get(proto, f"IP protocol {proto}")


# ---------------------------------------------------------------------------
# Leads as CSV / JSON lines (the CLI's writers)
# ---------------------------------------------------------------------------


def leads_csv(leads: list[dict], out: Path) -> None:
    """Leads as CSV, exactly as ``poolwatch leads -f csv`` writes them."""
    _write_leads(leads, out, "csv")


def leads_jsonl(leads: list[dict], out: Path) -> None:
    """Leads as JSON lines, exactly as ``poolwatch leads -f jsonl`` writes them."""
    _write_leads(leads, out, "jsonl")


def _write_leads(leads: list[dict], out: Path, fmt: str) -> None:
    from .leads import EVENT_TYPE, FIELDS, KINDS
    from .output import RecordWriter

    writer = RecordWriter(fmt, Path(out), event_type=EVENT_TYPE)
    writer.write_events([{"event_type": EVENT_TYPE, **lead} for lead in leads],
                        ("event_type", *FIELDS), KINDS)
    writer.close()


# ---------------------------------------------------------------------------
# STIX 2.1
# ---------------------------------------------------------------------------

# uuid5 namespace of every id poolwatch gives a STIX object: the same lead, session or
# pool exports the same id, so a platform updates an object instead of duplicating it.
STIX_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "https://poolwatch.invalid/stix/2.1")
# No term of STIX's infrastructure-type-ov describes a mining pool (it is not malware
# hosting, nor command and control of the miner's owner): "unknown" is the vocabulary's
# honest answer; x_poolwatch_kind says what it is.
POOL_INFRASTRUCTURE_TYPES = ["unknown"]
POOL_KIND = "mining-pool"
IDENTITY_CLASS = {"residential": "individual", "individual": "individual"}  # else organization
REDACTED = "redacted"
TLP_LEVELS = ("clear", "white", "green", "amber", "red")
_HOST_RE = re.compile(r"^(?=.{1,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}\.?$",
                      re.IGNORECASE)


def _sid(kind: str, *parts: Any) -> str:
    return f"{kind}--{uuid.uuid5(STIX_NAMESPACE, '|'.join([kind, *map(str, parts)]))}"


def _when(value: Any) -> datetime | None:
    """Lead and evidence times (ns ints, or ISO 8601 text up to ns) → an aware datetime,
    to the microsecond (what Python and the stix2 library keep)."""
    if value is None:
        return None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        ns = int(value) if abs(value) >= 10**12 else int(value * 10**9)  # ns, or seconds
        return datetime.fromtimestamp(ns // 10**9, timezone.utc).replace(
            microsecond=ns // 1000 % 1_000_000)
    text = str(value).strip().replace("Z", "+00:00")
    m = re.match(r"^(.*T\d\d:\d\d:\d\d)\.(\d+)(.*)$", text)
    if m:  # Python reads at most 6 fraction digits
        text = f"{m.group(1)}.{m.group(2)[:6].ljust(6, '0')}{m.group(3)}"
    moment = datetime.fromisoformat(text)
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


def _endpoint(text: str | None) -> tuple[str, int | None] | None:
    """``ip:port`` as lead evidence writes it (IPv6 without brackets) → (ip, port)."""
    if not text:
        return None
    host, _, port = str(text).rpartition(":")
    host = host.strip("[]")
    try:
        ip = str(ipaddress.ip_address(host))
    except ValueError:
        return None
    return ip, (int(port) if port.isdigit() else None)


def _addr(stix2, ip: str):
    cls = stix2.IPv4Address if ipaddress.ip_address(ip).version == 4 else stix2.IPv6Address
    return cls(value=ip)


def _confidence(value: Any) -> int:
    try:
        c = float(value)
    except (TypeError, ValueError):
        return 0
    return max(0, min(100, round(c * 100))) if c == c else 0


def _tlp(stix2, level: str | None):
    if level is None:
        return None
    level = level.lower().removeprefix("tlp:")
    if level not in TLP_LEVELS:
        raise ExportError(None, f"unknown TLP level {level!r} "
                                f"(possible values: {', '.join(TLP_LEVELS)})")
    return {"clear": stix2.TLP_WHITE, "white": stix2.TLP_WHITE, "green": stix2.TLP_GREEN,
            "amber": stix2.TLP_AMBER, "red": stix2.TLP_RED}[level]


class _Objects:
    """The bundle's objects by id: a pool or address shared by several leads goes in once."""

    def __init__(self) -> None:
        self.by_id: dict[str, Any] = {}

    def add(self, obj: Any) -> Any:
        self.by_id.setdefault(obj.id, obj)
        return obj


def stix_bundle(leads: list[Mapping[str, Any]], *, include_personal: bool,
                tlp: str | None = "amber") -> str:
    """Leads as a STIX 2.1 bundle (JSON text), for threat-intelligence platforms.

    Why: investigators' platforms (OpenCTI, MISP, TIPs) ingest STIX; ids are uuid5 of the
    lead, session or pool, and created/modified come from the detections' times, so the
    same leads export the same bundle byte for byte, and a re-export updates objects
    instead of duplicating them.

    Per lead: an ``identity`` (the entity; its name, registration number and address only
    with ``include_personal``, else named ``redacted <lead_id>``; wallets only with it
    too), ``ipv4-addr`` /
    ``ipv6-addr`` for its source addresses, an ``observed-data`` per session or contact
    (with its ``network-traffic`` 5-tuple), an ``infrastructure`` per pool (by name, and
    by address), and ``relationship`` objects between them; lead figures are
    ``x_poolwatch_*`` properties of the identity. See docs/exports.md.
    """
    import stix2

    marking = _tlp(stix2, tlp)
    common: dict[str, Any] = {"allow_custom": True}
    objects = _Objects()
    if marking is not None:
        objects.add(marking)
        common["object_marking_refs"] = [marking.id]
    epoch = datetime(2020, 1, 1, tzinfo=timezone.utc)
    author = objects.add(stix2.Identity(
        id=_sid("identity", "poolwatch"), name="poolwatch", identity_class="system",
        description="poolwatch: finds cryptocurrency mining in network traffic",
        created=epoch, modified=epoch, **common))
    common["created_by_ref"] = author.id

    # pools shared by leads: their created/modified span every session that reached them
    pool_times: dict[str, list[datetime]] = {}
    pool_props: dict[str, dict[str, Any]] = {}
    relations: list[dict[str, Any]] = []

    def relate(source: str, rtype: str, target: str, created: datetime, modified: datetime,
               **extra: Any) -> None:
        relations.append({"id": _sid("relationship", source, rtype, target),
                          "source_ref": source, "relationship_type": rtype,
                          "target_ref": target, "created": created,
                          "modified": max(created, modified), **extra})

    def pool(key: str, name: str, refs: list[str], seen: tuple[datetime, datetime]) -> str:
        pid = _sid("infrastructure", key)
        pool_times.setdefault(pid, []).extend(seen)
        pool_props.setdefault(pid, {"name": name, "refs": refs})
        return pid

    for lead in leads:
        lead_id = str(lead["lead_id"])
        first = _when(lead.get("first_seen")) or epoch
        last = max(_when(lead.get("last_seen")) or first, first)
        confidence = _confidence(lead.get("confidence"))
        attributed = bool(lead.get("entity_id"))
        props: dict[str, Any] = {
            "x_poolwatch_lead_id": lead_id,
            "x_poolwatch_status": lead.get("status"),
            "x_poolwatch_status_change": lead.get("status_change"),
            "x_poolwatch_attributed": attributed,
            "x_poolwatch_entity_type": lead.get("entity_type"),
            "x_poolwatch_region": lead.get("region"),
            "x_poolwatch_sessions": lead.get("sessions"),
            "x_poolwatch_contacts": lead.get("contacts"),
            "x_poolwatch_datacenter": lead.get("datacenter"),
            "x_poolwatch_meter_ratio": lead.get("meter_ratio"),
            "x_poolwatch_energy_kwh_per_day": lead.get("energy_kwh_per_day"),
            "x_poolwatch_pools": list(lead.get("pools") or []),
            "x_poolwatch_coins": list(lead.get("coins") or []),
            "x_poolwatch_workers": list(lead.get("workers") or []),
        }
        for name in ("hashrate_hs", "hashrate_hs_low", "hashrate_hs_high", "power_w",
                     "power_w_low", "power_w_high"):
            props[f"x_poolwatch_{name}"] = lead.get(name)
        ips = [w.get("ip") for w in lead.get("src_ips") or [] if w.get("ip")]
        if not attributed:
            name = f"unattributed {', '.join(ips) or lead_id}"
        elif include_personal:
            name = str(lead.get("entity_name") or lead.get("entity_id"))
            props.update({
                "x_poolwatch_entity_id": lead.get("entity_id"),
                "x_poolwatch_registration_number": lead.get("registration_number"),
                "x_poolwatch_address": lead.get("address"),
                "x_poolwatch_subscriber_ids": list(lead.get("subscriber_ids") or []),
                "x_poolwatch_reasons": list(lead.get("reasons") or []),
            })
        else:
            # not just "redacted": platforms that merge identities by name would fold every
            # redacted entity into one
            name = f"{REDACTED} {lead_id}"
        if include_personal:  # a wallet names its holder as surely as a login does
            props["x_poolwatch_wallets"] = list(lead.get("wallets") or [])
        props = {k: v for k, v in props.items() if v is not None and v != []}
        ident = objects.add(stix2.Identity(
            # the redacted and the named identity are different objects: neither may
            # overwrite the other in a platform that received both
            id=_sid("identity", lead_id, "personal" if include_personal else REDACTED),
            name=name,
            identity_class=(IDENTITY_CLASS.get(str(lead.get("entity_type")), "organization")
                            if attributed else "unknown"),
            created=first, modified=last, confidence=confidence, **props, **common))

        for window in lead.get("src_ips") or []:
            ip = window.get("ip")
            if not ip:
                continue
            sco = objects.add(_addr(stix2, ip))
            spans = [(_when(a), _when(b)) for a, b in window.get("windows") or []]
            starts = [a for a, _ in spans if a] or [first]
            stops = [b for _, b in spans if b] or [last]
            relate(ident.id, "related-to", sco.id, first, last, confidence=confidence,
                   description="source address of the entity's mining",
                   start_time=min(starts), stop_time=max(stops))

        pool_names = [str(p) for p in lead.get("pools") or []]
        evidence = [e for e in lead.get("evidence") or [] if isinstance(e, Mapping)]
        dests = {d[0] for e in evidence if (d := _endpoint(e.get("dest")))}
        named: list[str] = []
        for pname in pool_names:
            refs = []
            if _HOST_RE.match(pname):
                refs.append(objects.add(stix2.DomainName(value=pname.rstrip(".").lower())).id)
            pid = pool(f"pool:{pname.lower()}", pname, refs, (first, last))
            named.append(pid)
            relate(ident.id, "related-to", pid, first, last, confidence=confidence,
                   description="the entity mined to this pool")

        for e in evidence:
            src, dst = _endpoint(e.get("src")), _endpoint(e.get("dest"))
            if src is None or dst is None:
                continue
            seen0 = _when(e.get("first_seen")) or first
            seen1 = max(_when(e.get("last_seen")) or seen0, seen0)
            src_sco, dst_sco = objects.add(_addr(stix2, src[0])), objects.add(_addr(stix2, dst[0]))
            family = "ipv4" if ipaddress.ip_address(src[0]).version == 4 else "ipv6"
            proto = e.get("proto") or ("tcp" if e.get("event_type") == "stratum_session"
                                       else None)
            nt_props = {k: v for k, v in (("src_port", src[1]), ("dst_port", dst[1])) if v}
            traffic = objects.add(stix2.NetworkTraffic(
                src_ref=src_sco.id, dst_ref=dst_sco.id, start=seen0, end=seen1, is_active=False,
                protocols=[family, str(proto).lower()] if proto else [family], **nt_props))
            key = (e.get("community_id"), e.get("src"), e.get("dest"), e.get("first_seen"))
            extra = {k: v for k, v in {
                "x_poolwatch_event_type": e.get("event_type"),
                "x_poolwatch_community_id": e.get("community_id"),
                "x_poolwatch_capture": e.get("capture"),
                "x_poolwatch_capture_sha256": e.get("capture_sha256"),
                "x_poolwatch_frames": list(e.get("frames") or []),
                "x_poolwatch_lead_id": lead_id,
            }.items() if v is not None and v != []}
            observed = objects.add(stix2.ObservedData(
                id=_sid("observed-data", *key), first_observed=seen0, last_observed=seen1,
                number_observed=1, object_refs=[traffic.id, src_sco.id, dst_sco.id],
                created=seen0, modified=seen1, confidence=100, **extra, **common))
            link = e.get("link") if isinstance(e.get("link"), Mapping) else None
            relate(observed.id, "related-to", ident.id, seen0, seen1,
                   confidence=_confidence(link.get("confidence")) if link else confidence,
                   description=f"{e.get('event_type') or 'detection'} of this entity's mining")
            pid = pool(f"pool-address:{dst[0]}", f"mining pool at {dst[0]}", [dst_sco.id],
                       (seen0, seen1))
            relate(observed.id, "related-to", pid, seen0, seen1,
                   description="connection to this mining pool")
            relate(ident.id, "related-to", pid, seen0, seen1, confidence=confidence,
                   description="the entity mined to this pool address")
        if len(named) == 1 and len(dests) == 1:
            # one pool name and one pool address: the name must be that address's
            address_pool = _sid("infrastructure", f"pool-address:{next(iter(dests))}")
            relate(named[0], "consists-of", address_pool, first, last,
                   description="the named pool at the address its sessions went to")

    for pid, props in pool_props.items():
        times = pool_times[pid]
        created, modified = min(times), max(times)
        objects.add(stix2.Infrastructure(
            id=pid, name=props["name"], infrastructure_types=POOL_INFRASTRUCTURE_TYPES,
            first_seen=created, last_seen=modified, created=created, modified=modified,
            x_poolwatch_kind=POOL_KIND, **common))
        for ref in props["refs"]:
            relate(pid, "consists-of", ref, created, modified)

    merged: dict[str, dict[str, Any]] = {}
    for rel in relations:  # the same tie found twice (two leads, one pool): one relationship
        have = merged.setdefault(rel["id"], rel)
        if have is not rel:
            for key, pick in (("created", min), ("modified", max), ("start_time", min),
                              ("stop_time", max)):
                if key in rel:
                    have[key] = pick(have[key], rel[key]) if key in have else rel[key]
    for rel in merged.values():
        if "stop_time" in rel and rel["stop_time"] <= rel.get("start_time", rel["stop_time"]):
            del rel["stop_time"]  # STIX wants it later than start_time: an instant has none
        objects.add(stix2.Relationship(**rel, **common))

    ordered = sorted(objects.by_id.values(), key=lambda o: (_ORDER.get(o.type, 5), o.id))
    bundle = stix2.Bundle(objects=ordered, id=_sid("bundle", *[o.id for o in ordered]),
                          allow_custom=True)
    return bundle.serialize(ensure_ascii=False, sort_keys=True)


_ORDER = {"marking-definition": 0, "identity": 1, "infrastructure": 2, "observed-data": 3,
          "relationship": 9}

