"""FreeRADIUS accounting ``detail`` files → which user held which address when.

Accounting is a stream of events (Start, Interim-Update, Stop, Accounting-On/Off), and any
of them can be lost: a session has to be rebuilt from whatever records survived, and its end
guessed when the Stop never came (``end_inferred``). The rules are in docs/inputs/radius.md.
"""

from __future__ import annotations

import bisect
import ipaddress
import math
import statistics
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone, tzinfo
from pathlib import Path

from .dhcp import count_loaded, merge_touching, normalise_mac, read_lines
from .model import Assignment, IpNetwork, LinkInputError, Loaded, LoadReport, Origin
from .times import parse_time, zone

_MONTHS = {name: i for i, name in enumerate(
    ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"), 1)}
_WEEKDAYS = frozenset({"Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"})
_STATUS = {"start": "start", "1": "start", "stop": "stop", "2": "stop",
           "interim-update": "interim", "alive": "interim", "3": "interim",
           "accounting-on": "on", "7": "on", "accounting-off": "off", "8": "off"}
_UTC_NAMES = frozenset({"UTC", "GMT", "UT", "Z"})
# Framed-IP-Address values that are instructions to the NAS, not addresses.
_NOT_ADDRESSES = frozenset({"0.0.0.0", "255.255.255.254", "255.255.255.255"})
_MIN_GAP = 60.0  # shorter gaps are the NAS's extra update right after a Start, not the interval


def _header_time(line: str, tz: tzinfo) -> float:
    """The block header, ctime style (``Tue Nov 24 10:00:00 2026``), read in ``tz``."""
    parts = line.split()
    if len(parts) != 5 or parts[0] not in _WEEKDAYS or parts[1] not in _MONTHS:
        raise ValueError(line)
    hour, minute, second = (int(x) for x in parts[3].split(":"))
    return datetime(int(parts[4]), _MONTHS[parts[1]], int(parts[2]), hour, minute, second,
                    tzinfo=tz).timestamp()


def _event_time(value: str, tz: tzinfo) -> float:
    """Event-Timestamp as FreeRADIUS prints it: epoch, ``Nov 24 2026 10:00:00 UTC`` (the zone
    may be a numeric offset; another abbreviation is read in ``tz``) or ISO 8601 (v4)."""
    if value.isdigit():
        return float(value)
    parts = value.split()
    if len(parts) in (4, 5) and parts[0] in _MONTHS:
        where = tz
        if len(parts) == 5:
            name = parts[4]
            if name.upper() in _UTC_NAMES:
                where = timezone.utc
            elif len(name) == 5 and name[0] in "+-" and name[1:].isdigit():
                offset = timedelta(hours=int(name[1:3]), minutes=int(name[3:5]))
                where = timezone(-offset if name[0] == "-" else offset)
        hour, minute, second = (int(x) for x in parts[3].split(":"))
        return datetime(int(parts[2]), _MONTHS[parts[0]], int(parts[1]), hour, minute, second,
                        tzinfo=where).timestamp()
    return parse_time(value, tz)


def looks_like(head: str) -> bool:
    """True if ``head`` (the first ~4 KB of a file) is a FreeRADIUS detail file: a ctime-style
    date line followed by indented ``Attribute = value`` lines."""
    lines = [line for line in head.lstrip("\ufeff").splitlines() if line.strip()]
    if not lines:
        return False
    try:
        _header_time(lines[0], timezone.utc)
    except (ValueError, KeyError):
        return False
    return len(lines) < 2 or (lines[1][:1] in (" ", "\t") and "=" in lines[1])


def _unquote(value: str) -> str:
    value = value.strip()
    if len(value) >= 2 and value[0] == '"' and value[-1] == '"':
        return value[1:-1].replace('\\"', '"').replace("\\\\", "\\")
    return value


def _int(text: str | None) -> int | None:
    try:
        return int(text) if text is not None else None
    except ValueError:
        return None


@dataclass(slots=True)
class _Rec:
    """One accounting packet as logged."""

    status: str  # start, interim, stop, on, off
    time: float
    seq: int
    origin: Origin
    keys: list[tuple[str, ...]]  # the session's keys, strongest first
    session_id: str | None
    nas: str
    user: str | None
    networks: list[IpNetwork]
    session_time: float | None
    interval: float | None
    calling: str | None


def _networks(attrs: dict[str, list[str]]) -> list[IpNetwork]:
    """Every address and prefix of a packet; raises ValueError naming a bad one."""
    out: list[IpNetwork] = []
    for name in ("Framed-IP-Address", "Framed-IPv6-Address", "Framed-IPv6-Prefix",
                 "Delegated-IPv6-Prefix"):
        for value in attrs.get(name, ()):
            if value in _NOT_ADDRESSES:
                continue
            try:
                if name == "Framed-IP-Address":
                    net: IpNetwork = ipaddress.IPv4Network(ipaddress.IPv4Address(value))
                elif name == "Framed-IPv6-Address":
                    net = ipaddress.IPv6Network(ipaddress.IPv6Address(value))
                else:
                    net = ipaddress.IPv6Network(value, strict=False)
            except ValueError:
                raise ValueError(f"bad {name} {value!r}") from None
            if net not in out:
                out.append(net)
    return out


def _record(header: str, attrs: dict[str, list[str]], tz: tzinfo, origin: Origin, seq: int,
            report: LoadReport) -> _Rec:
    """A block → a record. Raises ValueError with the reason for a block that cannot be used."""
    try:
        header_time = _header_time(header, tz)
    except (ValueError, KeyError, OverflowError):
        raise ValueError(f"unreadable date header {header.strip()!r}") from None

    def first(name: str) -> str | None:
        values = attrs.get(name)
        return values[0] if values else None

    status_text = first("Acct-Status-Type")
    if status_text is None:
        raise ValueError("no Acct-Status-Type")
    status = _STATUS.get(status_text.lower())
    if status is None:
        raise ValueError(f"Acct-Status-Type {status_text!r} is not one poolwatch reads")
    delay = _int(first("Acct-Delay-Time")) or 0
    when = None
    if (event := first("Event-Timestamp")) is not None:
        try:
            when = _event_time(event, tz)
        except (ValueError, KeyError, OverflowError):
            report.issue(origin.line, f"unreadable Event-Timestamp {event!r}; used the "
                         "server's time", skipped=False)
    if when is None:
        stamp = _int(first("Timestamp"))  # the server's receive time, epoch (rlm_detail)
        when = (stamp if stamp is not None else header_time) - delay
    nas = first("NAS-IP-Address") or first("NAS-IPv6-Address") or first("NAS-Identifier") or ""
    session_id = first("Acct-Session-Id")
    unique = first("Acct-Unique-Session-Id")
    keys: list[tuple[str, ...]] = []
    if unique:
        keys.append(("unique", unique))
    if session_id:
        keys.append(("nas", nas, session_id))
    if status in ("on", "off"):
        if not nas:
            raise ValueError(f"{status_text} without NAS-IP-Address")
    elif not keys:
        raise ValueError("no Acct-Session-Id")
    calling = first("Calling-Station-Id")
    if calling:
        try:
            calling = normalise_mac(calling)
        except ValueError:
            pass
    interval = _int(first("Acct-Interim-Interval"))
    session_time = _int(first("Acct-Session-Time"))
    return _Rec(status, float(when), seq, origin, keys, session_id or unique, nas,
                first("User-Name") or None, _networks(attrs),
                float(session_time) if session_time is not None else None,
                float(interval) if interval else None, calling)


def _blocks(lines: list[str]) -> Iterable[tuple[int, str, dict[str, list[str]]]]:
    """(line of the header, header, attributes) per block. A block ends at a blank line or at
    the next unindented line; attribute lines without ``=`` are ignored."""
    header: str | None = None
    start = 0
    attrs: dict[str, list[str]] = {}
    for lineno, text in enumerate(lines, 1):
        if not text.strip():
            if header is not None:
                yield start, header, attrs
                header = None
            continue
        if text[0] in " \t":
            if header is not None:
                name, sep, value = text.strip().partition("=")
                if sep:
                    attrs.setdefault(name.strip(), []).append(_unquote(value))
            continue
        if header is not None:
            yield start, header, attrs
        header, start, attrs = text, lineno, {}
    if header is not None:
        yield start, header, attrs


@dataclass(slots=True)
class _Session:
    origin: Origin
    session_id: str | None
    nas: str
    first: float
    last: float
    user: str | None = None
    calling: str | None = None
    start: float | None = None  # the Start's time, when one was seen
    from_session_time: float | None = None  # earliest record time − its Acct-Session-Time
    stop: float | None = None
    closed: float | None = None  # Accounting-On/Off of its NAS
    interval: float | None = None
    alive: list[float] = field(default_factory=list)  # Start and Interim times
    networks: list[IpNetwork] = field(default_factory=list)

    def ended(self) -> float | None:
        return self.stop if self.stop is not None else self.closed

    def belongs(self, rec: _Rec) -> bool:
        """Is ``rec`` part of this session, or a new one reusing its key (a NAS that restarts
        its session counter after a reboot, a reconnect with the same id)?"""
        ended = self.ended()
        if rec.status == "start":
            return self.start == rec.time or (
                self.start is None and ended is None and rec.time <= self.first)
        if ended is None:
            return True
        return rec.session_time is not None and rec.time - rec.session_time < ended

    def add(self, rec: _Rec) -> None:
        self.first, self.last = min(self.first, rec.time), max(self.last, rec.time)
        self.user = self.user or rec.user
        self.calling = self.calling or rec.calling
        for net in rec.networks:
            if net not in self.networks:
                self.networks.append(net)
        if rec.status == "start":
            self.start = rec.time if self.start is None else min(self.start, rec.time)
        if rec.status in ("start", "interim"):
            self.alive.append(rec.time)
        elif self.stop is None:
            self.stop = rec.time if self.closed is None else min(rec.time, self.closed)
        if rec.session_time is not None and self.from_session_time is None:
            self.from_session_time = rec.time - rec.session_time
        self.interval = rec.interval or self.interval

    def begin(self) -> float:
        if self.start is not None:
            return self.start
        if self.from_session_time is not None:
            return min(self.first, self.from_session_time)
        return self.first

    def observed_interval(self) -> float | None:
        """The NAS's update interval as this session shows it: the median gap between its
        Start/Interim records (gaps under a minute ignored)."""
        times = sorted(self.alive)
        gaps = [b - a for a, b in zip(times, times[1:]) if b - a >= _MIN_GAP]
        return statistics.median(gaps) if gaps else None


def _sessions(records: list[_Rec]) -> list[_Session]:
    """Records in time order (ties in file order) → sessions; Accounting-On/Off closes every
    session of its NAS still open at that moment."""
    sessions: list[_Session] = []
    current: dict[tuple[str, ...], _Session] = {}
    open_by_nas: dict[str, list[_Session]] = {}
    for rec in sorted(records, key=lambda r: (r.time, r.seq)):
        if rec.status in ("on", "off"):
            still_open = []
            for ses in open_by_nas.get(rec.nas, ()):
                if ses.ended() is None and ses.first <= rec.time:
                    ses.closed = rec.time
                elif ses.ended() is None:
                    still_open.append(ses)
            open_by_nas[rec.nas] = still_open
            continue
        # Acct-Unique-Session-Id when the record has one, else NAS + Acct-Session-Id: a
        # record without the unique id still finds its session by the plain one.
        ses = current.get(rec.keys[0])
        if ses is None or not ses.belongs(rec):
            ses = _Session(rec.origin, rec.session_id, rec.nas, rec.time, rec.time)
            sessions.append(ses)
            open_by_nas.setdefault(rec.nas, []).append(ses)
        for key in rec.keys:
            current[key] = ses
        ses.add(rec)
    return sessions


def load_radius_detail(paths: Iterable[str | Path], tz: str | None = None,
                       now: float | None = None) -> Loaded[Assignment]:
    """FreeRADIUS accounting detail files (plain or gzip) → one assignment per session and
    address or prefix, consecutive ones of the same user and address merged.

    All files of one call are one stream (pass every rotated file: a session's Start and Stop
    are often in different ones). ``tz`` is the zone the server wrote block headers in (UTC
    when None); ``now``, when given, is when the files were collected: a session without a
    Stop whose last record is within one interim interval of it stays open (``math.inf``).
    """
    tzinfo_ = zone(tz)
    reports: list[LoadReport] = []
    records: list[_Rec] = []
    seq = 0
    for path in paths:
        name = str(path)
        report = LoadReport(name, "radius")
        reports.append(report)
        lines, broken = read_lines(path)
        _check_first_line(name, lines, tzinfo_)
        for lineno, header, attrs in _blocks(lines):
            seq += 1
            try:
                records.append(_record(header, attrs, tzinfo_, Origin(name, lineno), seq, report))
            except ValueError as exc:
                report.issue(lineno, str(exc))
        if broken:
            report.issue(len(lines), broken)
    rows = _assignments(_sessions(records), reports, now)
    rows = merge_touching(rows)
    count_loaded(rows, reports)
    return Loaded(rows, reports)


def _check_first_line(name: str, lines: list[str], tz: tzinfo) -> None:
    """A detail file starts with a block header; anything else is another format."""
    for lineno, text in enumerate(lines, 1):
        if text.strip():
            try:
                _header_time(text.lstrip("\ufeff"), tz)
            except (ValueError, KeyError, OverflowError):
                raise LinkInputError(name, lineno, "not a FreeRADIUS detail file: the first "
                                     "line is not a date like 'Tue Nov 24 10:00:00 2026'") from None
            return


def _assignments(sessions: list[_Session], reports: list[LoadReport],
                 now: float | None) -> list[Assignment]:
    """Sessions → rows, with ends for the sessions whose Stop was not seen (see the module
    docs: the earliest of the NAS's reboot, the next owner's start and the last record plus
    one interim interval; never before the session's own last record)."""
    by_path = {report.path: report for report in reports}
    nas_intervals: dict[str, list[float]] = {}
    for ses in sessions:
        ses.interval = ses.interval or ses.observed_interval()
        if ses.interval:
            nas_intervals.setdefault(ses.nas, []).append(ses.interval)
    owners: dict[IpNetwork, list[float]] = {}
    for ses in sessions:
        for net in ses.networks:
            owners.setdefault(net, []).append(ses.begin())
    for starts in owners.values():
        starts.sort()

    rows: list[Assignment] = []
    for ses in sessions:
        if not ses.networks:
            continue  # nothing to tie to a subscriber (e.g. a Stop of a failed login)
        if not ses.user:
            report = by_path.get(ses.origin.path)
            if report is not None:
                report.issue(ses.origin.line, f"session {ses.session_id!r} has no User-Name")
            continue
        start = ses.begin()
        interval = ses.interval or (statistics.median(nas_intervals[ses.nas])
                                    if ses.nas in nas_intervals else None)
        extra = {"nas": ses.nas} if ses.nas else {}
        if ses.calling:
            extra["calling_station_id"] = ses.calling
        if ses.start is None:
            extra["start_inferred"] = "true"
        for net in ses.networks:
            if ses.stop is not None:
                end, inferred = max(ses.stop, start), False
            else:
                end, inferred = _inferred_end(ses, start, owners[net], interval, now)
            rows.append(Assignment(net, start, end, "user", ses.user, "radius", ses.origin,
                                   inferred, ses.session_id, dict(extra)))
    return rows


def _inferred_end(ses: _Session, start: float, starts: list[float], interval: float | None,
                  now: float | None) -> tuple[float, bool]:
    bounds = []
    if ses.closed is not None:
        bounds.append(ses.closed)
    after = bisect.bisect_right(starts, start)
    if after < len(starts):
        bounds.append(starts[after])  # the next session to get this address
    if not bounds and interval and now is not None and 0 <= now - ses.last <= interval:
        return math.inf, False
    if interval:
        bounds.append(ses.last + interval)
    end = min(bounds) if bounds else ses.last
    return max(end, ses.last, start), True
