"""The meter loader: interval and cumulative-register CSVs (docs/inputs/meters.md)."""

from __future__ import annotations

import gzip
from datetime import UTC, datetime
from pathlib import Path

import pytest

from poolwatch.link import meters
from poolwatch.link.model import LinkInputError


def write(tmp_path: Path, name: str, text: str, gz: bool = False) -> Path:
    path = tmp_path / name
    data = text.encode()
    path.write_bytes(gzip.compress(data) if gz else data)
    return path


def utc(*parts: int) -> float:
    return datetime(*parts, tzinfo=UTC).timestamp()


def periods(loaded) -> list[tuple]:
    return [(m.meter_id, m.entity_id, m.start, m.end, m.kwh, m.origin.line)
            for m in loaded.rows]


def issues(loaded) -> list[tuple[int, bool, str]]:
    return [(i.line, i.skipped, i.reason) for r in loaded.reports for i in r.issues]


@pytest.mark.parametrize("column", ["kwh", "energy_kwh", "Consumption (kWh)", "Energy-kWh"])
def test_interval_form_and_kwh_spellings(tmp_path, column):
    path = write(tmp_path, "m.csv", f"meter_id,entity_id,period_start,period_end,{column}\n"
                 "M1,E1,2025-01-01T00:00:00Z,2025-02-01T00:00:00Z,12000.5\n"
                 ",E2,2025-01-01T00:00:00Z,2025-02-01T00:00:00Z,0\n")
    loaded = meters.load_meters(path)
    assert periods(loaded) == [
        ("M1", "E1", utc(2025, 1, 1), utc(2025, 2, 1), 12000.5, 2),
        (None, "E2", utc(2025, 1, 1), utc(2025, 2, 1), 0.0, 3),
    ]
    assert loaded.reports[0].kind == "meters" and loaded.reports[0].loaded == 2


def test_interval_bad_rows_have_lines(tmp_path):
    path = write(tmp_path, "m.csv", "Meter;Start;End;kWh\n"
                 "M1;2025-02-01;2025-01-01;5\n"      # end before start
                 "M1;2025-02-01;2025-02-01;5\n"      # empty period
                 "M1;2025-02-01;2025-03-01;-5\n"     # negative
                 "M1;2025-02-01;2025-03-01;nan\n"    # not a number
                 ";2025-02-01;2025-03-01;5\n"        # nobody
                 "M1;soon;2025-03-01;5\n"            # not a time
                 "M1;2025-03-01;2025-04-01;7.25\n")
    loaded = meters.load_meters(path)
    assert [(m.meter_id, m.kwh, m.origin.line) for m in loaded.rows] == [("M1", 7.25, 8)]
    assert [(line, skipped) for line, skipped, _ in issues(loaded)] == [
        (n, True) for n in range(2, 8)]


def test_interval_times_without_zone_are_read_in_tz(tmp_path):
    path = write(tmp_path, "m.csv", "entity_id,period_start,period_end,kwh\n"
                 "E1,2025-01-01,2025-01-02,24\n")
    [m] = meters.load_meters(path, tz="Asia/Shanghai").rows
    assert (m.start, m.end) == (utc(2024, 12, 31, 16), utc(2025, 1, 1, 16))


def test_register_reads_are_differenced_per_meter(tmp_path):
    path = write(tmp_path, "reads.csv", "meter_id,entity_id,read_at,reading_kwh\n"
                 "M1,E1,2025-01-01T00:00:00Z,1000\n"     # 2
                 "M2,,2025-01-01T00:00:00Z,50\n"         # 3
                 "M1,E1,2025-03-01T00:00:00Z,1400\n"     # 4: backwards after line 6's read
                 "M1,E1,2025-04-01T00:00:00Z,1600\n"     # 5
                 "M1,E1,2025-02-01T00:00:00Z,1500\n"     # 6: out of order on purpose
                 "M2,,2025-02-01T00:00:00Z,80\n"         # 7
                 "M2,,2025-02-01T00:00:00Z,80\n")        # 8: the same read again
    loaded = meters.load_meters(path)
    assert periods(loaded) == [
        ("M1", "E1", utc(2025, 3, 1), utc(2025, 4, 1), 200.0, 5),   # restarts at line 4
        ("M1", "E1", utc(2025, 1, 1), utc(2025, 2, 1), 500.0, 6),
        ("M2", None, utc(2025, 1, 1), utc(2025, 2, 1), 30.0, 7),
    ]
    found = issues(loaded)
    assert [(line, skipped) for line, skipped, _ in found] == [(4, True), (8, True)]
    assert "backwards" in found[0][2] and "1500" in found[0][2]


def test_register_reads_across_files_and_gzip(tmp_path):
    january = write(tmp_path, "jan.csv.gz", "Meter No,Read Date,Reading\n"
                    "M1,2025-01-01,100\n", gz=True)
    february = write(tmp_path, "feb.csv", "Meter No,Read Date,Reading\nM1,2025-02-01,160\n"
                     "E-less,2025-02-01,-1\n")
    loaded = meters.load_meters([february, january])
    assert [(m.meter_id, m.start, m.end, m.kwh, m.origin.path) for m in loaded.rows] == [
        ("M1", utc(2025, 1, 1), utc(2025, 2, 1), 60.0, str(february))]
    assert [(r.loaded, r.skipped) for r in loaded.reports] == [(1, 1), (0, 0)]


def test_entity_only_register_reads(tmp_path):
    path = write(tmp_path, "reads.csv", "entity_id,timestamp,cumulative_kwh\n"
                 "E1,2025-01-01T00:00:00Z,10\nE1,2025-01-02T00:00:00Z,34.5\n")
    assert periods(meters.load_meters(path)) == [
        (None, "E1", utc(2025, 1, 1), utc(2025, 1, 2), 24.5, 3)]


@pytest.mark.parametrize("header, named", [
    ("meter_id,foo\n", "reading_kwh"),
    ("period_start,period_end,kwh\n", "meter_id or entity_id"),
    ("meter_id,period_start,kwh\n", "period_end"),
    ("meter_id,reading_kwh\n", "read_at"),
])
def test_missing_columns_raise(tmp_path, header, named):
    path = write(tmp_path, "m.csv", header + "x\n")
    with pytest.raises(LinkInputError) as err:
        meters.load_meters(path)
    assert err.value.path == str(path) and err.value.line == 1 and named in err.value.reason


def test_sniffer():
    assert meters.looks_like("meter_id,period_start,period_end,kwh\n")
    assert meters.looks_like("\ufeffEntity ID;Read at;Reading kWh\n")
    assert not meters.looks_like("subscriber_id,entity_id,entity_name,entity_type\n")
    assert not meters.looks_like("public_ip,port_start,port_end,private_ip,allocated_at\n")
