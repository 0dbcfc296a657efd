"""Electricity meter readings, to set metered kWh beside the power that mining traffic implies.

Two CSV forms (docs/inputs/meters.md): intervals (``period_start, period_end, kwh``), as
utilities bill and smart-meter portals export, and cumulative register reads (``read_at,
reading_kwh``), as meter readers write them down, turned into intervals by differencing each
meter's consecutive reads. Register reads are differenced across all files of one call, so
monthly files of reads for the same meters make one series.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import tzinfo

from .model import LinkInputError, Loaded, LoadReport, MeterReading, Origin
from .registry import (
    ENTITY_ID,
    CsvRow,
    CsvTable,
    Paths,
    as_paths,
    as_zone,
    has_column,
    head_keys,
)
from .times import iso, parse_time

METER_COLUMNS: dict[str, tuple[str, ...]] = {
    "meter_id": ("meter", "meter_no", "meter_number", "meter_serial", "meter_serial_number",
                 "mpan", "mprn", "nmi"),
    "entity_id": ENTITY_ID,
    "period_start": ("start", "start_time", "start_at", "interval_start", "period_from", "from",
                     "begin"),
    "period_end": ("end", "end_time", "end_at", "interval_end", "period_to", "to"),
    "kwh": ("energy_kwh", "consumption_kwh", "usage_kwh", "used_kwh", "kwh_used",
            "kwh_consumed", "active_energy_kwh", "import_kwh"),
    "read_at": ("reading_time", "reading_at", "read_time", "read_date", "reading_date",
                "timestamp", "time", "date"),
    "reading_kwh": ("register_kwh", "register_reading_kwh", "meter_reading_kwh",
                    "cumulative_kwh", "index_kwh", "reading"),
}


def looks_like(head: str) -> bool:
    """A header with a meter or entity id and a kWh (or register reading) column."""
    keys = head_keys(head)
    who = (has_column(keys, METER_COLUMNS, "meter_id")
           or has_column(keys, METER_COLUMNS, "entity_id"))
    energy = (has_column(keys, METER_COLUMNS, "kwh")
              or has_column(keys, METER_COLUMNS, "reading_kwh"))
    return who and energy


def load_meters(paths: Paths, tz: str | tzinfo | None = None) -> Loaded[MeterReading]:
    """Metered periods from interval and register-read CSVs (the form is decided per file:
    a ``kwh`` column means intervals, else a ``reading_kwh`` column means register reads).
    Times without a zone are read in ``tz``."""
    where = as_zone(tz)
    loaded: Loaded[MeterReading] = Loaded()
    reads: list[_Read] = []
    for path in as_paths(paths):
        report = LoadReport(path, "meters")
        loaded.reports.append(report)
        table = CsvTable(path, report, METER_COLUMNS)
        if "kwh" in table:
            table.require(("meter_id", "entity_id"), "period_start", "period_end", "kwh")
            for row in table.rows():
                reading = _interval(report, row, where)
                if reading is not None:
                    loaded.rows.append(reading)
                    report.loaded += 1
        elif "reading_kwh" in table:
            table.require(("meter_id", "entity_id"), "read_at", "reading_kwh")
            reads.extend(_register_reads(report, table.rows(), where))
        else:
            table.close()
            missing = [] if "meter_id" in table or "entity_id" in table else [
                "meter_id or entity_id"]
            missing.append("kwh (periods) or reading_kwh (register reads)")
            raise LinkInputError(path, 1, f"missing required column(s): {', '.join(missing)} "
                                          f"(header has: {', '.join(table.header)})")
    for reading, report in _difference(reads):
        loaded.rows.append(reading)
        report.loaded += 1
    for report in loaded.reports:  # differencing issues are found after the parse issues
        report.issues.sort(key=lambda issue: issue.line)
    return loaded


def _ids(report: LoadReport, row: CsvRow) -> tuple[str | None, str | None] | None:
    meter, entity = row.get("meter_id") or None, row.get("entity_id") or None
    if meter is None and entity is None:
        report.issue(row.line, "neither meter_id nor entity_id")
        return None
    return meter, entity


def _energy(text: str, what: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"{what} {text!r} is not a number") from None
    if not math.isfinite(value):
        raise ValueError(f"{what} {text!r} is not a number")
    if value < 0:
        raise ValueError(f"{what} {text} is negative")
    return value


def _interval(report: LoadReport, row: CsvRow, where: tzinfo) -> MeterReading | None:
    ids = _ids(report, row)
    if ids is None:
        return None
    try:
        start = parse_time(row.get("period_start"), where)
        end = parse_time(row.get("period_end"), where)
        kwh = _energy(row.get("kwh"), "kwh")
    except ValueError as exc:
        report.issue(row.line, str(exc))
        return None
    if end <= start:
        report.issue(row.line, f"period_end {row.get('period_end')!r} is not after period_start "
                               f"{row.get('period_start')!r}")
        return None
    return MeterReading(meter_id=ids[0], entity_id=ids[1], start=start, end=end, kwh=kwh,
                        origin=Origin(report.path, row.line))


@dataclass(slots=True)
class _Read:
    meter: str | None
    entity: str | None
    at: float
    kwh: float
    report: LoadReport
    line: int
    order: int  # arrival order, so equal times keep file order

    @property
    def key(self) -> tuple[str, str]:
        """A meter is its meter id; rows without one are one register per entity."""
        return ("meter", self.meter) if self.meter else ("entity", self.entity or "")


def _register_reads(report: LoadReport, rows: Iterator[CsvRow], where: tzinfo) -> list[_Read]:
    reads = []
    for row in rows:
        ids = _ids(report, row)
        if ids is None:
            continue
        try:
            at = parse_time(row.get("read_at"), where)
            kwh = _energy(row.get("reading_kwh"), "reading_kwh")
        except ValueError as exc:
            report.issue(row.line, str(exc))
            continue
        reads.append(_Read(ids[0], ids[1], at, kwh, report, row.line, 0))
    return reads


def _difference(reads: list[_Read]) -> Iterator[tuple[MeterReading, LoadReport]]:
    """Consecutive reads of one meter make a period; a register that goes backwards (a
    replaced or reset meter, a typo) makes no period and starts a new series."""
    for order, read in enumerate(reads):
        read.order = order
    series: dict[tuple[str, str], list[_Read]] = {}
    for read in reads:
        series.setdefault(read.key, []).append(read)
    out: list[tuple[int, MeterReading, LoadReport]] = []
    for chain in series.values():
        chain.sort(key=lambda r: (r.at, r.order))
        previous: _Read | None = None
        for read in chain:
            if previous is None:
                previous = read
                continue
            where = f"{previous.report.path}:{previous.line}"
            if read.at == previous.at:
                same = "the same reading" if read.kwh == previous.kwh else (
                    f"{previous.kwh} kWh, not {read.kwh} kWh")
                read.report.issue(read.line, f"a second read at {iso(read.at)} (first at "
                                             f"{where}: {same}); keeping the first")
                continue
            if read.kwh < previous.kwh:
                read.report.issue(read.line, f"register went backwards from {previous.kwh} kWh "
                                             f"({where}) to {read.kwh} kWh; period skipped, "
                                             "differencing restarts here")
            else:
                out.append((read.order, MeterReading(
                    meter_id=read.meter, entity_id=read.entity or previous.entity,
                    start=previous.at, end=read.at, kwh=read.kwh - previous.kwh,
                    origin=Origin(read.report.path, read.line)), read.report))
            previous = read
    out.sort(key=lambda o: o[0])
    for _, reading, report in out:
        yield reading, report
