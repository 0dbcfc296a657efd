"""DHCP lease files → who held which address when: ISC dhcpd (v4 and v6) and Kea memfile CSV.

Both servers keep their lease database as a journal: every change to a lease appends the
lease's whole new state, and the file is compacted now and then. So one lease shows up many
times, and the holding intervals have to be rebuilt rather than read: renewals by the same
client extend a holding, a free/released/expired state ends it, and a different client
getting the address ends the previous holder (with ``end_inferred``, since the file never
said so). The rules are in docs/inputs/dhcp.md; :func:`merge_touching` and :func:`read_lines`
are shared with the RADIUS loader.
"""

from __future__ import annotations

import csv
import gzip
import ipaddress
import math
import re
import zlib
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from datetime import datetime, tzinfo
from pathlib import Path

from .model import (Assignment, IpNetwork, LinkInputError, Loaded, LoadReport, Origin,
                    normalise_mac)
from .times import zone

_CHUNK = 1 << 20


# --- shared helpers ----------------------------------------------------------------------


def read_lines(path: str | Path) -> tuple[list[str], str | None]:
    """The lines of a text file (gunzipped when it starts with the gzip magic), without ends.

    Returns the lines and, for a gzip stream that is cut short, why: the lines read before
    the damage are kept (the last, possibly partial, one dropped) for the caller to report.
    A file that cannot be opened at all raises LinkInputError.
    """
    broken = None
    try:
        with open(path, "rb") as raw:
            magic = raw.read(2)
            raw.seek(0)
            if magic != b"\x1f\x8b":
                data = raw.read()
            else:
                chunks: list[bytes] = []
                try:
                    with gzip.GzipFile(fileobj=raw) as unzipped:
                        while chunk := unzipped.read(_CHUNK):
                            chunks.append(chunk)
                except (EOFError, zlib.error, gzip.BadGzipFile) as exc:
                    if not chunks:
                        raise LinkInputError(str(path), None, f"cannot read gzip: {exc}") from None
                    broken = f"gzip stream is damaged or cut short ({exc}); read up to here"
                data = b"".join(chunks)
    except OSError as exc:
        raise LinkInputError(str(path), None, f"cannot read: {exc.strerror or exc}") from None
    lines = data.decode("utf-8-sig", errors="replace").split("\n")
    if broken is not None and len(lines) > 1:
        lines.pop()
    return [line.rstrip("\r") for line in lines], broken


def merge_touching(rows: Iterable[Assignment]) -> list[Assignment]:
    """One row per stretch of holding, so renewals and back-to-back sessions don't multiply.

    Rows for the same (network, identity) that touch or overlap become one: earliest start
    and origin, latest end (its ``end_inferred`` with it), the earlier row's ``extra`` winning,
    and every session key listed in ``extra["sessions"]`` when there were several.
    """
    groups: dict[tuple[IpNetwork, str, str], list[Assignment]] = {}
    for row in rows:
        groups.setdefault((row.network, row.identity_kind, row.identity), []).append(row)
    out: list[Assignment] = []
    for group in groups.values():
        group.sort(key=lambda a: (a.start, a.end))
        cur = group[0]
        sessions = [cur.session] if cur.session else []
        for nxt in group[1:]:
            if nxt.start > cur.end:
                out.append(_with_sessions(cur, sessions))
                cur, sessions = nxt, ([nxt.session] if nxt.session else [])
                continue
            end, inferred = cur.end, cur.end_inferred
            if nxt.end > cur.end:
                end, inferred = nxt.end, nxt.end_inferred
            elif nxt.end == cur.end:
                inferred = cur.end_inferred and nxt.end_inferred
            # The merged row starts where ``cur`` starts: a later row's start caveat is moot.
            later = {k: v for k, v in nxt.extra.items() if k != "start_inferred"}
            cur = replace(cur, end=end, end_inferred=inferred, extra={**later, **cur.extra})
            if nxt.session and nxt.session not in sessions:
                sessions.append(nxt.session)
        out.append(_with_sessions(cur, sessions))
    out.sort(key=lambda a: (a.start, a.origin.path, a.origin.line))
    return out


def _with_sessions(row: Assignment, sessions: list[str]) -> Assignment:
    if len(sessions) < 2:
        return row
    return replace(row, extra={**row.extra, "sessions": ",".join(sessions)})


def count_loaded(rows: list[Assignment], reports: list[LoadReport]) -> None:
    """Credit each final row to the file its origin is in (rows can span files)."""
    by_path = {report.path: report for report in reports}
    for row in rows:
        report = by_path.get(row.origin.path)
        if report is not None:
            report.loaded += 1


def _hex(raw: bytes) -> str:
    return ":".join(f"{b:02x}" for b in raw)


def _duid_identity(duid: bytes) -> tuple[str, str]:
    """A DUID-LLT (type 1) or DUID-LL (type 3) over Ethernet carries the client's MAC: use it,
    so the same CPE matches across v4 and v6 and the registry's MAC column. Else the DUID."""
    if len(duid) >= 4 and int.from_bytes(duid[2:4], "big") == 1:
        kind = int.from_bytes(duid[0:2], "big")
        mac = duid[8:] if kind == 1 else duid[4:] if kind == 3 else b""
        if len(mac) == 6:
            return "mac", _hex(mac)
    return "client_id", _hex(duid)


# --- journal → intervals -------------------------------------------------------------------


@dataclass(slots=True)
class _Rec:
    """One lease state as the journal wrote it, before intervals are rebuilt."""

    network: IpNetwork
    start: float
    end: float
    held: bool  # active/default: the identity holds it until ``end``; else the lease ended
    ident: tuple[str, str] | None
    origin: Origin
    seq: int
    extra: dict[str, str] = field(default_factory=dict)
    end_inferred: bool = False
    cap_at_next: bool = False  # Kea "released": ends no later than the next row's start


@dataclass(slots=True)
class _Hold:
    ident: tuple[str, str]
    start: float
    end: float
    origin: Origin
    extra: dict[str, str]
    inferred: bool
    closed: bool


def _rebuild(records: list[_Rec], source: str) -> list[Assignment]:
    """Per address, in start order (ties in file order): the holdings the journal describes.

    A held record of the current holder that touches its holding extends it; a held record of
    another identity ends the current holding at its start (inferred) and opens its own; an
    ended record of the current holder (or without identity) ends it at the record's end.
    """
    by_net: dict[IpNetwork, list[_Rec]] = {}
    for rec in records:
        by_net.setdefault(rec.network, []).append(rec)
    out: list[Assignment] = []
    for net, recs in by_net.items():
        recs.sort(key=lambda r: (r.start, r.seq))
        for rec, nxt in zip(recs, recs[1:]):
            if rec.cap_at_next and nxt.start < rec.end:
                rec.end = max(rec.start, nxt.start)
        cur: _Hold | None = None
        for rec in recs:
            if rec.ident is None:
                if rec.held or cur is None or cur.closed or rec.end < cur.start:
                    continue
                if rec.end < cur.end:
                    cur.end, cur.inferred = max(cur.start, rec.end), rec.end_inferred
                cur.closed = True
                continue
            same = cur is not None and cur.ident == rec.ident and rec.start <= cur.end
            if same and rec.held:
                if rec.end > cur.end:
                    cur.end, cur.inferred = rec.end, rec.end_inferred
                elif rec.end == cur.end:
                    cur.inferred = cur.inferred and rec.end_inferred
                cur.closed = False
                cur.extra = {**rec.extra, **cur.extra}
            elif same:
                if not cur.closed:
                    cur.end, cur.inferred = max(cur.start, rec.end), rec.end_inferred
                    cur.closed = True
            else:
                if cur is not None and rec.start < cur.end:  # another client took it over
                    cur.end, cur.inferred = max(cur.start, rec.start), True
                _emit(out, net, cur, source)
                cur = _Hold(rec.ident, rec.start, rec.end, rec.origin, dict(rec.extra),
                            rec.end_inferred, not rec.held)
        _emit(out, net, cur, source)
    return out


def _emit(out: list[Assignment], net: IpNetwork, hold: _Hold | None, source: str) -> None:
    """Keep a holding unless it is empty (two clients' leases starting the same second)."""
    if hold is not None and hold.end > hold.start:
        kind, ident = hold.ident
        out.append(Assignment(net, hold.start, hold.end, kind, ident, source, hold.origin,
                              hold.inferred, None, hold.extra))


def _finish(records: list[_Rec], reports: list[LoadReport], source: str) -> Loaded[Assignment]:
    rows = merge_touching(_rebuild(records, source))
    count_loaded(rows, reports)
    return Loaded(rows, reports)


# --- ISC dhcpd ------------------------------------------------------------------------------

# A quoted string (C escapes), a brace or semicolon, a comment, a word; a lone '"' is an
# unterminated string. One regex per line: quotes and braces make a plain split wrong.
_TOKEN = re.compile(r'"(?:[^"\\]|\\.)*"|[{};]|#.*|[^\s{};"#]+|"')
_ISC_TOP_BLOCKS = frozenset({"lease", "ia-na", "ia-ta", "ia-pd", "host", "failover", "group",
                             "class", "subnet", "shared-network"})
_ISC_TOP_STATEMENTS = frozenset({"server-duid", "authoring-byte-order", "db-time-format",
                                 "subclass"})
_ISC_SURE = frozenset({"lease", "ia-na", "ia-ta", "ia-pd", "server-duid", "authoring-byte-order",
                       "db-time-format"})
_ISC_FIRST = _ISC_SURE | {"host", "failover", "group", "class", "subclass"}
_HELD = frozenset({"active", "bootp"})
_ENDED = frozenset({"free", "released", "expired", "abandoned", "backup", "reset"})
_FINISHED = frozenset({"free", "released", "expired"})  # starts..ends is the last holder's lease


@dataclass(slots=True)
class _Block:
    head: list[str]
    line: int
    stmts: list[tuple[list[str], int]] = field(default_factory=list)
    children: list[_Block] = field(default_factory=list)
    bad: str | None = None


def _isc_parse(lines: list[str]) -> tuple[list[_Block], list[tuple[int, str]]]:
    """Top-level blocks (closed ones only) and the structural problems, with lines.

    A block left open is noticed when a top-level keyword (``lease``, ``ia-na``, ...) starts
    inside it: that block is reported and dropped, and parsing restarts at the keyword, so one
    missing brace costs one lease, not the rest of the file.
    """
    blocks: list[_Block] = []
    problems: list[tuple[int, str]] = []
    stack: list[_Block] = []
    stmt: list[str] = []
    stmt_line = 0
    for lineno, text in enumerate(lines, 1):
        if not text or text.lstrip().startswith("#"):
            continue
        for tok in _TOKEN.findall(text):
            if tok[0] == "#":
                break
            if tok == '"':
                if stack:
                    stack[0].bad = stack[0].bad or f"unterminated string on line {lineno}"
                else:
                    problems.append((lineno, "unterminated string"))
                stmt = []
                break
            if tok == "{":
                head, head_line, stmt = stmt, stmt_line or lineno, []
                if stack and head and head[0] in _ISC_TOP_BLOCKS:
                    problems.append((stack[0].line, f"block not closed before line {head_line}"))
                    stack = []
                block = _Block(head, head_line)
                if stack:
                    stack[-1].children.append(block)
                stack.append(block)
            elif tok == "}":
                if stmt:
                    if stack:
                        stack[0].bad = stack[0].bad or f"missing ';' on line {stmt_line}"
                    stmt = []
                if not stack:
                    problems.append((lineno, "'}' without an open block"))
                    continue
                done = stack.pop()
                if not stack:
                    blocks.append(done)
            elif tok == ";":
                if stack and stmt and stmt[0] in _ISC_TOP_STATEMENTS:
                    problems.append((stack[0].line, f"block not closed before line {stmt_line}"))
                    stack = []
                elif stack and stmt:
                    stack[-1].stmts.append((stmt, stmt_line))
                stmt = []
            else:
                if not stmt:
                    stmt_line = lineno
                stmt.append(tok)
    if stack:
        problems.append((stack[0].line, "block not closed before the end of the file"))
    elif stmt:
        problems.append((stmt_line, "statement without ';' at the end of the file"))
    return blocks, problems


def _first_word(lines: Iterable[str]) -> tuple[str | None, int]:
    for lineno, text in enumerate(lines, 1):
        words = text.split("#", 1)[0].split()
        if words:
            return words[0], lineno
    return None, 0


def looks_like_isc(head: str) -> bool:
    """True if ``head`` (the first ~4 KB of a file) is an ISC dhcpd.leases or dhcpd6.leases."""
    word, _ = _first_word(head.lstrip("\ufeff").splitlines())
    if word is None:
        return "dhcpd" in head and "lease" in head
    if word in _ISC_SURE:
        return True
    if word in _ISC_FIRST:
        return any(line.startswith(("lease ", "ia-na ", "ia-pd ", "ia-ta ", "server-duid "))
                   for line in head.splitlines())
    return False


def _isc_bytes(token: str) -> bytes:
    """An ISC octet string: quoted, C escapes (``"\\001\\000..."``), or colon hex (``1:0:..``)."""
    if not token.startswith('"'):
        return bytes(int(part, 16) for part in token.split(":"))
    body, out, i = token[1:-1], bytearray(), 0
    while i < len(body):
        ch = body[i]
        if ch != "\\":
            out += ch.encode("utf-8")
            i += 1
            continue
        j = i + 1
        while j < len(body) and j < i + 4 and body[j] in "01234567":
            j += 1
        if j > i + 1:
            out.append(int(body[i + 1:j], 8) & 0xFF)
            i = j
            continue
        nxt = body[i + 1] if i + 1 < len(body) else "\\"
        out += {"n": b"\n", "t": b"\t", "r": b"\r"}.get(nxt, nxt.encode("utf-8"))
        i += 2
    return bytes(out)


def _isc_time(args: list[str], tz: tzinfo) -> float:
    """``3 2026/11/24 10:00:00`` (weekday, date, time; UTC as dhcpd writes it), ``epoch N``
    (``db-time-format local``) or ``never``."""
    if args == ["never"]:
        return math.inf
    if len(args) == 2 and args[0] == "epoch":
        return float(int(args[1]))
    if len(args) == 3:
        year, month, day = (int(x) for x in args[1].split("/"))
        hour, minute, second = (int(x) for x in args[2].split(":"))
        return datetime(year, month, day, hour, minute, second, tzinfo=tz).timestamp()
    raise ValueError(" ".join(args))


def _isc_fields(stmts: list[tuple[list[str], int]]) -> dict[str, list[str]]:
    fields: dict[str, list[str]] = {}
    for toks, _ in stmts:
        if toks[0] == "binding" and len(toks) >= 3:
            fields["binding"] = toks[2:3]
        elif toks[0] not in ("next", "rewind", "set", "on", "option"):
            fields[toks[0]] = toks[1:]
    return fields


def _isc_times(fields: dict[str, list[str]], tz: tzinfo) -> dict[str, float]:
    out = {}
    for key in ("starts", "ends", "cltt"):
        if key in fields:
            try:
                out[key] = _isc_time(fields[key], tz)
            except (ValueError, OverflowError):
                raise ValueError(f"bad time in '{key} {' '.join(fields[key])}'") from None
    return out


def _isc_record(network: IpNetwork, fields: dict[str, list[str]], times: dict[str, float],
                ident: tuple[str, str] | None, origin: Origin, seq: int,
                extra: dict[str, str]) -> _Rec | None:
    """A lease state → a record; None for states that say nothing about a holder.
    Raises ValueError with the reason for a lease that cannot be used."""
    state = fields["binding"][0] if "binding" in fields else (
        "abandoned" if "abandoned" in fields else "active")
    start = times.get("starts", times.get("cltt"))
    ends = times.get("ends")
    if state in _HELD:
        if start is None or ends is None:
            raise ValueError("active lease without 'starts' or 'ends'")
        if ends < start:
            raise ValueError("lease 'ends' before it 'starts'")
        if ident is None:
            raise ValueError("active lease without 'hardware' or 'uid'")
        return _Rec(network, start, ends, True, ident, origin, seq, extra)
    if state not in _ENDED:
        return None
    if state not in _FINISHED:
        ident = None  # backup/reset/abandoned: ends a holding, but its times describe no holder
    end = ends if ends is not None and not math.isinf(ends) else times.get("cltt", start)
    if end is None:
        return None
    if state == "released" and "cltt" in times:
        end = min(end, times["cltt"])
    if start is None or start > end:
        start = end
    return _Rec(network, start, end, False, ident, origin, seq, extra)


def _isc_v4(block: _Block, tz: tzinfo, origin: Origin, seq: int) -> _Rec | None:
    if len(block.head) != 2:
        raise ValueError("expected 'lease <address> {'")
    try:
        address = ipaddress.IPv4Address(block.head[1])
    except ValueError:
        raise ValueError(f"bad address {block.head[1]!r}") from None
    fields = _isc_fields(block.stmts)
    times = _isc_times(fields, tz)
    extra: dict[str, str] = {}
    ident = None
    if "uid" in fields and fields["uid"]:
        try:
            extra["uid"] = _hex(_isc_bytes(fields["uid"][0]))
            ident = ("client_id", extra["uid"])
        except ValueError:
            pass
    if len(fields.get("hardware", ())) >= 2:
        try:
            ident = ("mac", normalise_mac(fields["hardware"][1]))
        except ValueError:
            if ident is None:  # not a 6-octet MAC (InfiniBand, ...) and no uid to fall back on
                raise ValueError(f"bad hardware address {fields['hardware'][1]!r}") from None
    if fields.get("client-hostname"):
        try:
            name = _isc_bytes(fields["client-hostname"][0]).decode("utf-8", errors="replace")
            extra["client_hostname"] = name
        except ValueError:
            pass  # a hostname is evidence, not identity: a garbled one is left out
    return _isc_record(ipaddress.IPv4Network(address), fields, times, ident, origin, seq, extra)


def _isc_v6(block: _Block, tz: tzinfo, path: str, seq: int,
            report: LoadReport) -> list[_Rec]:
    """An ``ia-na``/``ia-ta``/``ia-pd`` block: one record per iaaddr/iaprefix; a bad one is
    reported on its own line and its siblings still load."""
    if len(block.head) != 2:
        raise ValueError(f"expected '{block.head[0]} \"<iaid+duid>\" {{'")
    try:
        iaid_duid = _isc_bytes(block.head[1])
    except ValueError:
        raise ValueError(f"bad IA id {block.head[1]!r}") from None
    if len(iaid_duid) < 6:
        raise ValueError("IA id too short to hold a DUID")
    duid = iaid_duid[4:]
    ident = _duid_identity(duid)
    extra = {"duid": _hex(duid)}
    ia_times = _isc_times(_isc_fields(block.stmts), tz)
    out = []
    for child in block.children:
        if not child.head or child.head[0] not in ("iaaddr", "iaprefix"):
            continue
        try:
            if len(child.head) != 2:
                raise ValueError(f"expected '{child.head[0]} <address> {{'")
            try:
                if child.head[0] == "iaaddr":
                    network: IpNetwork = ipaddress.IPv6Network(
                        ipaddress.IPv6Address(child.head[1]))
                else:
                    network = ipaddress.IPv6Network(child.head[1], strict=False)
            except ValueError:
                raise ValueError(f"bad address {child.head[1]!r}") from None
            fields = _isc_fields(child.stmts)
            times = {**ia_times, **_isc_times(fields, tz)}
            if "starts" not in times and "cltt" not in times and "ends" in times:
                # No start written: the lease began at most max-life before it ends.
                life = fields.get("max-life", ["0"])[0]
                if life.isdigit() and not math.isinf(times["ends"]):
                    times["starts"] = times["ends"] - int(life)
            rec = _isc_record(network, fields, times, ident, Origin(path, child.line), seq,
                              dict(extra))
        except ValueError as exc:
            report.issue(child.line, str(exc))
            continue
        if rec is not None:
            out.append(rec)
    return out


def load_isc_leases(paths: Iterable[str | Path], tz: str | None = None) -> Loaded[Assignment]:
    """ISC dhcpd ``dhcpd.leases`` / ``dhcpd6.leases`` files (plain or gzip) → assignments.

    All files of one call are one journal per address (pass rotated copies together).
    ``tz`` only matters for servers patched to write local times in the
    ``W YYYY/MM/DD HH:MM:SS`` form; stock dhcpd writes UTC there (the default).
    """
    tzinfo_ = zone(tz)
    reports: list[LoadReport] = []
    records: list[_Rec] = []
    seq = 0
    for path in paths:
        name = str(path)
        report = LoadReport(name, "dhcp-isc")
        reports.append(report)
        lines, broken = read_lines(path)
        word, lineno = _first_word(lines)
        if word is not None and word.lstrip("\ufeff") not in _ISC_FIRST:
            raise LinkInputError(name, lineno, f"not an ISC dhcpd lease file (starts with "
                                 f"{word!r}, expected 'lease', 'ia-na', 'server-duid', ...)")
        blocks, problems = _isc_parse(lines)
        for line, reason in problems:
            report.issue(line, reason)
        if broken:
            report.issue(len(lines), broken)
        for block in blocks:
            if not block.head or block.head[0] not in ("lease", "ia-na", "ia-ta", "ia-pd"):
                continue  # host, failover, group, class: not leases
            seq += 1
            if block.bad:
                report.issue(block.line, block.bad)
                continue
            try:
                if block.head[0] == "lease":
                    rec = _isc_v4(block, tzinfo_, Origin(name, block.line), seq)
                    records.extend([rec] if rec is not None else [])
                else:
                    records.extend(_isc_v6(block, tzinfo_, name, seq, report))
            except ValueError as exc:
                report.issue(block.line, str(exc))
    return _finish(records, reports, "dhcp-isc")


# --- Kea memfile CSV -------------------------------------------------------------------------

_KEA_INFINITE = 0xFFFFFFFF
_KEA_ESCAPE = re.compile(r"&#x([0-9a-fA-F]{2})")


def _kea_header(line: str) -> list[str] | None:
    cols = [c.strip() for c in line.lstrip("\ufeff").strip().split(",")]
    if cols[:1] == ["address"] and {"valid_lifetime", "expire"} <= set(cols) and (
            "hwaddr" in cols or "duid" in cols):
        return cols
    return None


def looks_like_kea(head: str) -> bool:
    """True if ``head`` starts with a Kea memfile lease CSV header (v4 or v6)."""
    return _kea_header(head.split("\n", 1)[0]) is not None


def _kea_unescape(text: str) -> str:
    """Kea writes commas inside a field as ``&#x2c``."""
    return _KEA_ESCAPE.sub(lambda m: chr(int(m.group(1), 16)), text) if "&#x" in text else text


def _kea_row(cols: dict[str, str], v6: bool, origin: Origin, seq: int) -> _Rec | None:
    """One CSV row → a record, None for rows that carry no holding (deletions, declines).
    Raises ValueError with the reason for a bad row."""
    try:
        valid = int(cols["valid_lifetime"])
        expire = int(cols["expire"])
    except ValueError:
        raise ValueError("valid_lifetime and expire must be whole seconds") from None
    state_text = cols.get("state", "") or "0"
    if not state_text.isdigit():
        raise ValueError(f"bad state {state_text!r}")
    state = int(state_text)
    if valid == 0 or state == 1:  # a deletion; a declined address: no client holds it
        return None
    if state not in (0, 2, 3):
        raise ValueError(f"lease state {state} is not one poolwatch reads")
    address = cols["address"].strip()
    try:
        if v6 and cols.get("lease_type", "0").strip() == "2":
            network: IpNetwork = ipaddress.IPv6Network(
                f"{address}/{int(cols['prefix_len'])}", strict=False)
        else:
            network = ipaddress.ip_network(ipaddress.ip_address(address))
    except (ValueError, KeyError):
        raise ValueError(f"bad address {address!r}") from None
    extra: dict[str, str] = {}
    hostname = _kea_unescape(cols.get("hostname", "").strip())
    if hostname:
        extra["hostname"] = hostname
    if cols.get("subnet_id"):
        extra["subnet_id"] = cols["subnet_id"].strip()
    ident = None
    if v6:
        duid_text = cols.get("duid", "").strip().lower()
        if duid_text and duid_text != "00":
            extra["duid"] = duid_text
            try:
                ident = _duid_identity(bytes.fromhex(duid_text.replace(":", "")))
            except ValueError:
                ident = ("client_id", duid_text)
        if cols.get("iaid"):
            extra["iaid"] = cols["iaid"].strip()
    else:
        client_id = cols.get("client_id", "").strip().lower()
        if client_id:
            extra["client_id"] = client_id
            ident = ("client_id", client_id)
    if cols.get("hwaddr", "").strip():
        try:
            ident = ("mac", normalise_mac(cols["hwaddr"]))
        except ValueError:
            if ident is None:
                raise ValueError(f"bad hwaddr {cols['hwaddr']!r}") from None
    if ident is None and state == 0:
        raise ValueError("no hwaddr, client_id or duid")
    start = float(expire - valid)
    end = math.inf if valid == _KEA_INFINITE else float(expire)
    if state == 3:  # released: when is not written; no later than expire or the next row
        return _Rec(network, start, end, False, ident, origin, seq, extra, True, True)
    return _Rec(network, start, end, state == 0, ident, origin, seq, extra)


def load_kea_leases(paths: Iterable[str | Path]) -> Loaded[Assignment]:
    """Kea memfile lease CSV files (``kea-leases4.csv``, ``kea-leases6.csv`` and their
    ``.1``/``.2``/``.completed`` copies; plain or gzip) → assignments.

    All files of one call are one journal per address, so pass the LFC copies together.
    """
    reports: list[LoadReport] = []
    records: list[_Rec] = []
    seq = 0
    for path in paths:
        name = str(path)
        report = LoadReport(name, "dhcp-kea")
        reports.append(report)
        lines, broken = read_lines(path)
        if not any(line.strip() for line in lines):
            continue
        header = _kea_header(lines[0])
        if header is None:
            raise LinkInputError(name, 1, "not a Kea lease file: the first line is not a "
                                 "header like 'address,hwaddr,client_id,valid_lifetime,expire,...'")
        v6 = "duid" in header
        reader = csv.reader(lines[1:], quoting=csv.QUOTE_NONE)
        for row in reader:
            lineno = reader.line_num + 1
            if not row or row == [""]:
                continue
            if row[0] == "address":  # a header again: files concatenated
                header = _kea_header(",".join(row)) or header
                v6 = "duid" in header
                continue
            if len(row) != len(header):
                report.issue(lineno, f"expected {len(header)} columns, got {len(row)}")
                continue
            seq += 1
            try:
                rec = _kea_row(dict(zip(header, row)), v6, Origin(name, lineno), seq)
            except ValueError as exc:
                report.issue(lineno, str(exc))
                continue
            if rec is not None:
                records.append(rec)
        if broken:
            report.issue(len(lines), broken)
    return _finish(records, reports, "dhcp-kea")
