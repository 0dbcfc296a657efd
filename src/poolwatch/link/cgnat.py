"""Carrier-grade NAT port-block allocations: which private address held a public ip:port range.

Two formats (docs/inputs/cgnat.md), sniffed per file: poolwatch's own CSV (one row per block,
for exports from any CGN), and Junos MS-DPC / MS-MPC / MS-MIC syslog ``NAT_PORT_BLOCK_ALLOC``,
``..._RELEASE`` and interim ``..._ACTIVE`` messages (``JSERVICES_`` and the older ``ASP_``
prefix), which are paired into blocks here.

Syslog messages are paired across all the syslog files of one call, in time order: rotated
logs (``messages.1.gz``, ``messages.0.gz``, ``messages``) then pair a RELEASE with the ALLOC
that came before the rotation, whatever order the files are given in.
"""

from __future__ import annotations

import ipaddress
import math
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta, tzinfo

from .model import LinkInputError, Loaded, LoadReport, Origin, PortBlock
from .registry import (
    CsvRow,
    CsvTable,
    Paths,
    as_paths,
    as_zone,
    has_column,
    head_keys,
    open_binary,
    text_lines,
)
from .times import iso, parse_time

IpAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

CGNAT_COLUMNS: dict[str, tuple[str, ...]] = {
    "public_ip": ("public_address", "public", "nat_ip", "nat_address", "outside_ip",
                  "outside_address", "external_ip", "external_address", "translated_ip",
                  "xlate_ip", "global_ip"),
    "port_start": ("port_low", "low_port", "start_port", "first_port", "port_from", "port_min",
                   "ports_start"),
    "port_end": ("port_high", "high_port", "end_port", "last_port", "port_to", "port_max",
                 "ports_end"),
    "port_range": ("ports", "port_block", "port_block_range"),
    "private_ip": ("private_address", "private", "inside_ip", "inside_address", "internal_ip",
                   "internal_address", "subscriber_ip", "source_ip", "src_ip", "local_ip"),
    "allocated_at": ("allocated", "allocation_time", "alloc_time", "start", "start_time",
                     "valid_from", "from", "begin"),
    "released_at": ("released", "release_time", "end", "end_time", "valid_to", "to", "until"),
}

# The message tag and its body: "JSERVICES_NAT_PORT_BLOCK_ALLOC: 10.0.0.2 -> 198.51.100.7:1024-
# 1151 0x65e1a2b3". The public side is IPv4 (Junos PBA pools are IPv4; NAT64 / DS-Lite put an
# IPv6 address on the private side only), or bracketed IPv6 should a box ever write one.
_TAG = re.compile(r"\b(?:JSERVICES|ASP)_NAT_PORT_BLOCK_(ALLOC|RELEASE|ACTIVE)\b\s*:?")
_BODY = re.compile(r"\s*(?P<private>[0-9A-Fa-f:.]+)\s*->\s*"
                   r"(?P<public>\d{1,3}(?:\.\d{1,3}){3}|\[[0-9A-Fa-f:.]+\])"
                   r":(?P<low>\d+)\s*-\s*(?P<high>\d+)")
_SNIFF = re.compile(r"(?:JSERVICES|ASP)_NAT_PORT_BLOCK_(?:ALLOC|RELEASE|ACTIVE)\b")

# Line stamps: RFC 5424 / rsyslog ISO stamps carry a year and maybe a zone; RFC 3164
# ("Mar  5 01:00:33") carries neither, and some relays insert a year after the day.
_ISO_HEAD = re.compile(r"(?:<\d{1,3}>)?(?:\d{1,2}\s+)?"
                       r"(\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}:\d{2}(?:\.\d+)?"
                       r"(?:Z|[+-]\d{2}:?\d{2})?)(?=\s)")
_BSD_HEAD = re.compile(r"(?:<\d{1,3}>)?([A-Z][a-z]{2})\s+(\d{1,2})\s+(?:(\d{4})\s+)?"
                       r"(\d{2}):(\d{2}):(\d{2})(\.\d+)?(?=\s)")
# The services PIC's own stamp after "(FPC Slot 2, PIC Slot 0)": it has a year (in UTC on
# the boxes we have seen, so it only decides the year of the header, never the time).
_PIC_STAMP = re.compile(r"\)\s+(\d{4})-(\d{2})-\d{2}\s+\d{1,2}:\s?\d{2}:\d{2}")
_MONTHS = {m: i for i, m in enumerate(
    ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"), 1)}


def looks_like(head: str) -> bool:
    """Junos port-block messages anywhere in ``head``, or a header of the poolwatch CSV."""
    if _SNIFF.search(head):
        return True
    return _is_csv_header(head_keys(head))


def _is_csv_header(keys: set[str]) -> bool:
    ports = (has_column(keys, CGNAT_COLUMNS, "port_start")
             or has_column(keys, CGNAT_COLUMNS, "port_range"))
    return (has_column(keys, CGNAT_COLUMNS, "public_ip") and ports
            and has_column(keys, CGNAT_COLUMNS, "private_ip"))


def load_cgnat(paths: Paths, tz: str | tzinfo | None = None,
               year: int | None = None) -> Loaded[PortBlock]:
    """Port blocks from CSV files and Junos syslog files (sniffed per file).

    Syslog stamps without a zone are read in ``tz``. Stamps without a year (RFC 3164) take
    ``year`` as the year of each file's first line, rolling into the next year where the
    stamps jump back (December to January); without ``year`` they take the year of the file's
    modification time, less one for a stamp that would fall after the file was last written.
    """
    where = as_zone(tz)
    loaded: Loaded[PortBlock] = Loaded()
    syslog = _Pairing()
    for index, path in enumerate(as_paths(paths)):
        kind = _sniff_file(path)
        report = LoadReport(path, "cgnat")
        loaded.reports.append(report)
        if kind == "csv":
            for block in _load_csv(path, report, where):
                loaded.rows.append(block)
                report.loaded += 1
        else:
            syslog.read(index, path, report, where, year)
    for block, report in syslog.blocks():
        loaded.rows.append(block)
        report.loaded += 1
    for report in loaded.reports:  # pairing issues are found after the parse issues
        report.issues.sort(key=lambda issue: issue.line)
    return loaded


def _sniff_file(path: str) -> str:
    """``csv`` when the first line is a header naming a CGNAT column, else ``syslog``."""
    with open_binary(path) as raw:
        first = raw.readline(4096).decode("utf-8", "replace").lstrip("\ufeff")
    if not first.strip():
        return "syslog"
    if _TAG.search(first) or _BSD_HEAD.match(first) or _ISO_HEAD.match(first):
        return "syslog"
    known = {name for canon, aliases in CGNAT_COLUMNS.items() for name in (canon, *aliases)}
    return "csv" if head_keys(first) & known else "syslog"


# --------------------------------------------------------------------------------------------
# CSV
# --------------------------------------------------------------------------------------------


def _load_csv(path: str, report: LoadReport, where: tzinfo) -> Iterator[PortBlock]:
    table = CsvTable(path, report, CGNAT_COLUMNS)
    if "port_start" in table or "port_end" in table or "port_range" not in table:
        table.require("public_ip", "port_start", "port_end", "private_ip", "allocated_at")
    else:
        table.require("public_ip", "port_range", "private_ip", "allocated_at")
    for row in table.rows():
        try:
            yield _csv_block(path, row, where, "port_start" in table)
        except ValueError as exc:
            report.issue(row.line, str(exc))


def _csv_block(path: str, row: CsvRow, where: tzinfo, split_ports: bool) -> PortBlock:
    empty = [c for c in ("public_ip", "private_ip", "allocated_at") if not row.get(c)]
    if empty:
        raise ValueError(f"empty {', '.join(empty)}")
    public = _address(row.get("public_ip"), "public_ip")
    private = _address(row.get("private_ip"), "private_ip")
    if split_ports:
        low, high = _ports(row.get("port_start"), row.get("port_end"))
    else:
        low, high = _port_range(row.get("port_range"))
    start = parse_time(row.get("allocated_at"), where)
    end = parse_time(row.get("released_at"), where, open_ok=True)
    if end < start:
        raise ValueError(f"released_at {row.get('released_at')!r} is before allocated_at "
                         f"{row.get('allocated_at')!r}")
    return PortBlock(public_ip=public, port_low=low, port_high=high, private_ip=private,
                     start=start, end=end, source="cgnat-csv", origin=Origin(path, row.line))


def _address(text: str, what: str) -> IpAddress:
    try:
        return ipaddress.ip_address(text.strip().strip("[]"))
    except ValueError:
        raise ValueError(f"{what} {text!r} is not an IP address") from None


def _ports(low_text: str, high_text: str) -> tuple[int, int]:
    """A port range checked: both integers in 0..65535, low <= high; one port alone is fine."""
    if not low_text and not high_text:
        raise ValueError("empty port range")
    low_text, high_text = low_text or high_text, high_text or low_text
    try:
        low, high = int(low_text), int(high_text)
    except ValueError:
        raise ValueError(f"ports {low_text!r}-{high_text!r} are not integers") from None
    if not (0 <= low <= 65535 and 0 <= high <= 65535):
        raise ValueError(f"port range {low}-{high} is outside 0..65535")
    if low > high:
        raise ValueError(f"port range {low}-{high} runs backwards")
    return low, high


def _port_range(text: str) -> tuple[int, int]:
    parts = re.split(r"\s*[-–:]\s*", text.strip())
    if len(parts) == 1:
        return _ports(parts[0], parts[0])
    if len(parts) == 2:
        return _ports(parts[0], parts[1])
    raise ValueError(f"port range {text!r} is not LOW-HIGH")


# --------------------------------------------------------------------------------------------
# Junos syslog
# --------------------------------------------------------------------------------------------


@dataclass(slots=True)
class _Event:
    time: float
    file: int
    line: int
    kind: str  # ALLOC, RELEASE, ACTIVE
    private: IpAddress
    public: IpAddress
    low: int
    high: int
    report: LoadReport


@dataclass(slots=True)
class _Open:
    start: float
    private: IpAddress
    origin: Origin
    report: LoadReport
    file: int
    assumed: bool  # the start was not seen (orphan RELEASE / ACTIVE): lower confidence


class _Years:
    """The year of stamps that carry none (see :func:`load_cgnat`)."""

    def __init__(self, path: str, where: tzinfo, year: int | None) -> None:
        self.where = where
        self.year = year
        self.previous: datetime | None = None
        self.latest: datetime | None = None  # the file's mtime (+2 days of slack)
        self.mtime_year = 0
        self.guessed: int | None = None  # the mtime's year, once a stamp has used it
        if year is None:
            try:
                mtime = datetime.fromtimestamp(os.stat(path).st_mtime, where)
            except OSError:
                mtime = datetime.now(where)
            self.mtime_year = mtime.year
            self.latest = mtime + timedelta(days=2)

    def stamp(self, month: int, day: int, clock: tuple[int, int, int, int],
              pic: tuple[int, int] | None) -> float:
        if pic is not None:  # the PIC's own stamp has a year; it may be a day off (UTC)
            pic_year, pic_month = pic
            year = pic_year
            if month == 12 and pic_month == 1:
                year -= 1
            elif month == 1 and pic_month == 12:
                year += 1
            return self._at(year, month, day, clock).timestamp()
        if self.latest is not None:
            self.guessed = self.mtime_year
            moment = self._at(self.mtime_year, month, day, clock)
            if moment > self.latest:
                moment = self._at(self.mtime_year - 1, month, day, clock)
            return moment.timestamp()
        assert self.year is not None
        moment = self._at(self.year, month, day, clock)
        if self.previous is not None and moment < self.previous - timedelta(days=180):
            self.year += 1
            moment = self._at(self.year, month, day, clock)
        self.previous = moment
        return moment.timestamp()

    def _at(self, year: int, month: int, day: int, clock: tuple[int, int, int, int]) -> datetime:
        hour, minute, second, micro = clock
        return datetime(year, month, day, hour, minute, second, micro, tzinfo=self.where)


def _line_time(line: str, where: tzinfo, years: _Years) -> float:
    """The stamp at the head of a syslog line (ValueError if there is none we can read)."""
    head = line.lstrip()
    match = _ISO_HEAD.match(head)
    if match:
        return parse_time(match.group(1), where)
    match = _BSD_HEAD.match(head)
    if not match:
        raise ValueError("no syslog time stamp at the start of the line")
    month_name, day, year, hour, minute, second, fraction = match.groups()
    if month_name not in _MONTHS:
        raise ValueError(f"no syslog time stamp at the start of the line ({month_name!r})")
    micro = round(float(fraction) * 1_000_000) if fraction else 0
    clock = (int(hour), int(minute), int(second), min(micro, 999_999))
    if year is not None:
        return datetime(int(year), _MONTHS[month_name], int(day), *clock,
                        tzinfo=where).timestamp()
    pic = _PIC_STAMP.search(line)
    return years.stamp(_MONTHS[month_name], int(day), clock,
                       (int(pic.group(1)), int(pic.group(2))) if pic else None)


class _Pairing:
    """ALLOC / RELEASE / ACTIVE messages from every syslog file, paired into blocks."""

    def __init__(self) -> None:
        self.events: list[_Event] = []
        self.first: float = math.inf  # the earliest stamp of any syslog file read

    def read(self, index: int, path: str, report: LoadReport, where: tzinfo,
             year: int | None) -> None:
        years = _Years(path, where, year)
        found = 0
        first_seen = False
        with open_binary(path) as raw:
            for number, line in enumerate(text_lines(raw, path, report, "replace"), 1):
                tag = _TAG.search(line)
                if tag is None:
                    if not first_seen:  # the log's start, for blocks allocated before it
                        try:
                            self.first = min(self.first, _line_time(line, where, years))
                            first_seen = True
                        except ValueError:
                            pass
                    continue
                found += 1
                try:
                    event = self._event(index, number, line, tag, where, years, report)
                except ValueError as exc:
                    report.issue(number, f"{tag.group(0).rstrip(': ')}: {exc}")
                    continue
                first_seen = True
                self.first = min(self.first, event.time)
                self.events.append(event)
        if found == 0:
            raise LinkInputError(path, None, "neither a CGNAT CSV header nor any Junos "
                                             "NAT_PORT_BLOCK_ALLOC/RELEASE/ACTIVE message")
        if years.guessed is not None:
            first = next((e.line for e in self.events if e.report is report), 1)
            report.issue(first, f"syslog stamps carry no year; took {years.guessed} from the "
                                "file's modification time (pass year= to set it)",
                         skipped=False)

    @staticmethod
    def _event(index: int, number: int, line: str, tag: re.Match[str], where: tzinfo,
               years: _Years, report: LoadReport) -> _Event:
        time = _line_time(line, where, years)
        body = _BODY.match(line, tag.end())
        if body is None:
            raise ValueError("expected 'PRIVATE -> PUBLIC:LOW-HIGH' after the tag")
        low, high = _ports(body.group("low"), body.group("high"))
        return _Event(time, index, number, tag.group(1),
                      _address(body.group("private"), "private address"),
                      _address(body.group("public"), "public address"), low, high, report)

    def blocks(self) -> Iterator[tuple[PortBlock, LoadReport]]:
        """The pairing rules of docs/inputs/cgnat.md, in time order (file order on ties)."""
        out: list[tuple[int, int, PortBlock, LoadReport]] = []  # (file, line, ...)
        open_: dict[tuple[IpAddress, int, int], _Open] = {}
        last_end: dict[tuple[IpAddress, int, int], float] = {}

        def close(block: _Open, key: tuple[IpAddress, int, int], end: float,
                  inferred: bool) -> None:
            out.append((block.file, block.origin.line, PortBlock(
                public_ip=key[0], port_low=key[1], port_high=key[2], private_ip=block.private,
                start=block.start, end=end, source="cgnat-junos", origin=block.origin,
                end_inferred=inferred or block.assumed), block.report))
            last_end[key] = end

        self.events.sort(key=lambda e: (e.time, e.file, e.line))
        for e in self.events:
            key = (e.public, e.low, e.high)
            origin = Origin(e.report.path, e.line)
            held = open_.get(key)
            if e.kind == "ALLOC":
                if held is not None:  # the RELEASE was lost: it ended when the ports moved on
                    close(held, key, e.time, inferred=True)
                open_[key] = _Open(e.time, e.private, origin, e.report, e.file, False)
            elif e.kind == "RELEASE":
                if held is not None:
                    del open_[key]
                    if held.private != e.private:
                        e.report.issue(e.line, f"RELEASE of {_name(key)} names {e.private}, "
                                               f"but it was allocated to {held.private} at "
                                               f"{held.origin}; ended that block here",
                                       skipped=False)
                    close(held, key, e.time, inferred=False)
                else:
                    since = min(last_end.get(key, self.first), e.time)
                    e.report.issue(e.line, f"RELEASE of {_name(key)} with no ALLOC seen; taken "
                                           f"as held by {e.private} since {iso(since)}",
                                   skipped=False)
                    close(_Open(since, e.private, origin, e.report, e.file, assumed=True), key,
                          e.time, inferred=True)
            else:  # ACTIVE: an interim reminder that the block is still allocated
                if held is not None and held.private == e.private:
                    continue
                if held is not None:  # both the RELEASE and the new ALLOC were lost
                    close(held, key, e.time, inferred=True)
                    since = e.time
                    why = f"while it was allocated to {held.private} at {held.origin}"
                else:
                    since = min(last_end.get(key, self.first), e.time)
                    why = "with no ALLOC seen"
                e.report.issue(e.line, f"ACTIVE (interim) of {_name(key)} for {e.private} {why};"
                                       f" taken as held by {e.private} since {iso(since)}",
                               skipped=False)
                open_[key] = _Open(since, e.private, origin, e.report, e.file, assumed=True)
        for key, held in open_.items():
            close(held, key, math.inf, inferred=False)
        out.sort(key=lambda o: (o[0], o[1], o[2].start))
        for _, _, block, report in out:
            yield block, report


def _name(key: tuple[IpAddress, int, int]) -> str:
    return f"{key[0]}:{key[1]}-{key[2]}"
