"""The CGNAT loader: poolwatch's CSV and Junos port-block syslog (docs/inputs/cgnat.md)."""

from __future__ import annotations

import gzip
import ipaddress
import math
import os
from datetime import UTC, datetime
from pathlib import Path

import pytest

from poolwatch.link import cgnat
from poolwatch.link.model import LinkInputError


def write(tmp_path: Path, name: str, text: str, gz: bool = False) -> Path:
    path = tmp_path / name
    data = text.encode()
    path.write_bytes(gzip.compress(data) if gz else data)
    return path


def utc(*parts: int) -> float:
    return datetime(*parts, tzinfo=UTC).timestamp()


def blocks(loaded) -> list[tuple]:
    return [(str(b.public_ip), b.port_low, b.port_high, str(b.private_ip), b.start, b.end,
             b.end_inferred) for b in loaded.rows]


def issues(loaded) -> list[tuple[int, bool, str]]:
    return [(i.line, i.skipped, i.reason) for r in loaded.reports for i in r.issues]


# The MS-MPC layout: syslog header, services PIC, service set, tag, then the block.
PIC = "mx1 (FPC Slot 5, PIC Slot 0) {sset1}[jservices-nat]: JSERVICES_NAT_PORT_BLOCK"


def junos(stamp: str, event: str, private: str, public: str, tail: str = " 0x65e66f31") -> str:
    return f"{stamp} {PIC}_{event}: {private} -> {public}{tail}\n"


# --- CSV ----------------------------------------------------------------------------------------

CSV = "public_ip,port_start,port_end,private_ip,allocated_at,released_at\n"


def test_csv_blocks_open_and_closed(tmp_path):
    path = write(tmp_path, "blocks.csv", CSV +
                 "198.51.100.7,1024,1151,100.64.0.2,2025-03-01T10:00:00Z,2025-03-01T11:00:00Z\n"
                 "198.51.100.7,1152,1279,2001:db8::2,2025-03-01 10:05:00,\n")
    loaded = cgnat.load_cgnat(path)
    assert blocks(loaded) == [
        ("198.51.100.7", 1024, 1151, "100.64.0.2", utc(2025, 3, 1, 10), utc(2025, 3, 1, 11),
         False),
        ("198.51.100.7", 1152, 1279, "2001:db8::2", utc(2025, 3, 1, 10, 5), math.inf, False),
    ]
    assert {b.source for b in loaded.rows} == {"cgnat-csv"}
    assert isinstance(loaded.rows[0].public_ip, ipaddress.IPv4Address)
    assert loaded.reports[0].kind == "cgnat" and loaded.reports[0].loaded == 2


def test_csv_synonyms_port_range_column_and_tz(tmp_path):
    path = write(tmp_path, "blocks.csv", "NAT IP;Ports;Inside IP;Start;End\n"
                 "198.51.100.7;1024-1151;100.64.0.2;2025-03-01 18:00;2025-03-01 19:00\n")
    [b] = cgnat.load_cgnat(path, tz="Asia/Shanghai").rows
    assert (b.port_low, b.port_high, b.start, b.end) == (1024, 1151, utc(2025, 3, 1, 10),
                                                         utc(2025, 3, 1, 11))


def test_csv_bad_rows_have_lines_and_the_rest_loads(tmp_path):
    path = write(tmp_path, "blocks.csv", CSV +
                 "198.51.100.7,1279,1152,100.64.0.3,2025-03-01T10:00Z,\n"        # backwards
                 "198.51.100.7,1024,70000,100.64.0.3,2025-03-01T10:00Z,\n"       # > 65535
                 "198.51.100.7,-1,10,100.64.0.3,2025-03-01T10:00Z,\n"            # < 0
                 "198.51.100.x,1024,1151,100.64.0.3,2025-03-01T10:00Z,\n"        # bad ip
                 "198.51.100.7,1024,1151,100.64.0.3,2025-03-01T10:05Z,2025-03-01T10:00Z\n"
                 "198.51.100.7,1024,1151,,2025-03-01T10:00Z,\n"                  # no private
                 "198.51.100.7,2048,2048,100.64.0.4,2025-03-01T10:00Z,\n")       # one port
    loaded = cgnat.load_cgnat(path)
    assert [(b.port_low, b.port_high) for b in loaded.rows] == [(2048, 2048)]
    assert [(line, skipped) for line, skipped, _ in issues(loaded)] == [
        (n, True) for n in range(2, 8)]


def test_csv_missing_column(tmp_path):
    path = write(tmp_path, "blocks.csv", "public_ip,port_start,port_end,allocated_at\n")
    with pytest.raises(LinkInputError) as err:
        cgnat.load_cgnat(path)
    assert err.value.path == str(path) and "private_ip" in err.value.reason


# --- Junos syslog -------------------------------------------------------------------------------


def test_junos_alloc_release_and_noise_lines(tmp_path):
    path = write(tmp_path, "messages", (
        "Mar  5 00:59:00 mx1 rpd[1234]: RPD_BGP_NEIGHBOR_STATE_CHANGED: peer 192.0.2.1\n"
        + junos("Mar  5 01:00:33", "ALLOC", "100.64.0.2", "198.51.100.7:1024-1151")
        + "Mar  5 01:01:00 mx1 (FPC Slot 5, PIC Slot 0) {sset1}[jservices-nat]: "
          "JSERVICES_NAT_RULE_MATCH: proto 6 (TCP) application: any\n"
        + junos("Mar  5 01:05:33", "RELEASE", "100.64.0.2", "198.51.100.7:1024-1151")))
    loaded = cgnat.load_cgnat(path, year=2025)
    assert blocks(loaded) == [("198.51.100.7", 1024, 1151, "100.64.0.2",
                               utc(2025, 3, 5, 1, 0, 33), utc(2025, 3, 5, 1, 5, 33), False)]
    assert loaded.rows[0].source == "cgnat-junos" and loaded.rows[0].origin.line == 2
    assert issues(loaded) == []  # other messages are not ours: no noise about them


def test_junos_realloc_ends_the_earlier_block(tmp_path):
    path = write(tmp_path, "messages",
                 junos("Mar  5 01:00:00", "ALLOC", "100.64.0.2", "198.51.100.7:1024-1151")
                 + junos("Mar  5 02:00:00", "ALLOC", "100.64.0.3", "198.51.100.7:1024-1151")
                 + junos("Mar  5 03:00:00", "RELEASE", "100.64.0.3", "198.51.100.7:1024-1151"))
    loaded = cgnat.load_cgnat(path, year=2025)
    assert blocks(loaded) == [
        ("198.51.100.7", 1024, 1151, "100.64.0.2", utc(2025, 3, 5, 1), utc(2025, 3, 5, 2), True),
        ("198.51.100.7", 1024, 1151, "100.64.0.3", utc(2025, 3, 5, 2), utc(2025, 3, 5, 3), False),
    ]


def test_junos_orphan_release_starts_at_the_log_start(tmp_path):
    path = write(tmp_path, "messages",
                 "Mar  5 00:30:00 mx1 sshd[99]: session opened\n"
                 + junos("Mar  5 01:00:00", "RELEASE", "100.64.0.9", "198.51.100.7:2048-2175")
                 + junos("Mar  5 02:00:00", "RELEASE", "100.64.0.9", "198.51.100.7:2048-2175"))
    loaded = cgnat.load_cgnat(path, year=2025)
    assert blocks(loaded) == [
        ("198.51.100.7", 2048, 2175, "100.64.0.9", utc(2025, 3, 5, 0, 30), utc(2025, 3, 5, 1),
         True),
        # a second RELEASE can only go back to the end of the block before it
        ("198.51.100.7", 2048, 2175, "100.64.0.9", utc(2025, 3, 5, 1), utc(2025, 3, 5, 2), True),
    ]
    found = issues(loaded)
    assert [(line, skipped) for line, skipped, _ in found] == [(2, False), (3, False)]
    assert "no ALLOC" in found[0][2] and loaded.reports[0].skipped == 0


def test_junos_interim_active(tmp_path):
    path = write(tmp_path, "messages",
                 junos("Mar  5 01:00:00", "ALLOC", "100.64.0.2", "198.51.100.7:1024-1151")
                 + junos("Mar  5 01:30:00", "ACTIVE", "100.64.0.2", "198.51.100.7:1024-1151")
                 + junos("Mar  5 01:30:00", "ACTIVE", "100.64.0.5", "198.51.100.7:4096-4223")
                 + junos("Mar  5 02:00:00", "RELEASE", "100.64.0.5", "198.51.100.7:4096-4223"))
    loaded = cgnat.load_cgnat(path, year=2025)
    assert blocks(loaded) == [
        # confirmed by ACTIVE, still open at the end of the log
        ("198.51.100.7", 1024, 1151, "100.64.0.2", utc(2025, 3, 5, 1), math.inf, False),
        # first seen by ACTIVE: held since the log start, flagged as not fully seen
        ("198.51.100.7", 4096, 4223, "100.64.0.5", utc(2025, 3, 5, 1), utc(2025, 3, 5, 2), True),
    ]
    assert [(line, skipped) for line, skipped, _ in issues(loaded)] == [(3, False)]


def test_junos_bad_nat_lines_are_issues_with_lines(tmp_path):
    path = write(tmp_path, "messages",
                 junos("Mar  5 01:00:00", "ALLOC", "100.64.0.2", "198.51.100.7:1024-99999")
                 + junos("Mar  5 01:00:00", "ALLOC", "100.64.0.2", "198.51.100.7:1151-1024")
                 + junos("Mar  5 01:00:00", "ALLOC", "100.64.0.2", "198.51.100.7")
                 + junos("Mar  5 01:00:00", "ALLOC", "100.64.0.299", "198.51.100.7:1024-1151")
                 + junos("Mar 32 01:00:00", "ALLOC", "100.64.0.2", "198.51.100.7:1024-1151")
                 + junos("Mar  5 01:00:00", "ALLOC", "100.64.0.2", "198.51.100.7:2048-2175"))
    loaded = cgnat.load_cgnat(path, year=2025)
    assert [b.port_low for b in loaded.rows] == [2048]
    assert [(line, skipped) for line, skipped, _ in issues(loaded)] == [
        (n, True) for n in range(1, 6)]


def test_junos_missing_year_from_the_argument_rolls_over_new_year(tmp_path):
    path = write(tmp_path, "messages",
                 junos("Dec 31 23:59:00", "ALLOC", "100.64.0.2", "198.51.100.7:1024-1151")
                 + junos("Jan  1 00:01:00", "RELEASE", "100.64.0.2", "198.51.100.7:1024-1151"))
    [b] = cgnat.load_cgnat(path, year=2024).rows
    assert (b.start, b.end) == (utc(2024, 12, 31, 23, 59), utc(2025, 1, 1, 0, 1))


def test_junos_missing_year_from_the_file_mtime(tmp_path):
    path = write(tmp_path, "messages",
                 junos("Dec 31 23:59:00", "ALLOC", "100.64.0.2", "198.51.100.7:1024-1151")
                 + junos("Jan  1 00:01:00", "RELEASE", "100.64.0.2", "198.51.100.7:1024-1151"))
    written = utc(2025, 1, 2, 12)
    os.utime(path, (written, written))
    loaded = cgnat.load_cgnat(path)
    [b] = loaded.rows
    assert (b.start, b.end) == (utc(2024, 12, 31, 23, 59), utc(2025, 1, 1, 0, 1))
    [(line, skipped, reason)] = issues(loaded)
    assert (line, skipped) == (1, False) and "2025" in reason and "year=" in reason


def test_junos_pic_stamp_and_iso_stamps_carry_the_year(tmp_path):
    # Juniper's own sample: the header is local time (PDT), the PIC stamp UTC, a day later.
    path = write(tmp_path, "messages",
                 "Oct 30 21:46:04  graphite (FPC Slot 2, PIC Slot 0) 2011-10-31 04:46:04 [FWNAT]:"
                 "ASP_NAT_PORT_BLOCK_ALLOC: 3002:0:0:0:0:0:0:1 -> 33.33.0.3:1050-1099\n"
                 "<14>1 2011-10-30T21:48:35-07:00 graphite jservices-nat - - - "
                 "JSERVICES_NAT_PORT_BLOCK_RELEASE: 3002::1 -> 33.33.0.3:1050-1099 0x4eae2a2c\n")
    loaded = cgnat.load_cgnat(path, tz="America/Los_Angeles", year=1999)
    assert blocks(loaded) == [("33.33.0.3", 1050, 1099, "3002::1", utc(2011, 10, 31, 4, 46, 4),
                               utc(2011, 10, 31, 4, 48, 35), False)]
    assert issues(loaded) == []


def test_junos_rotated_files_pair_in_time_order_and_gzip(tmp_path):
    older = write(tmp_path, "messages.0.gz",
                  junos("Mar  5 01:00:00", "ALLOC", "100.64.0.2", "198.51.100.7:1024-1151"),
                  gz=True)
    newer = write(tmp_path, "messages",
                  junos("Mar  6 01:00:00", "RELEASE", "100.64.0.2", "198.51.100.7:1024-1151"))
    loaded = cgnat.load_cgnat([newer, older], year=2025)  # newest first, as `ls -t` lists
    assert blocks(loaded) == [("198.51.100.7", 1024, 1151, "100.64.0.2", utc(2025, 3, 5, 1),
                               utc(2025, 3, 6, 1), False)]
    assert loaded.rows[0].origin.path == str(older)
    assert [r.loaded for r in loaded.reports] == [0, 1] and issues(loaded) == []


def test_csv_and_syslog_in_one_call(tmp_path):
    csv_path = write(tmp_path, "blocks.csv",
                     CSV + "198.51.100.8,1024,1151,100.64.0.7,2025-03-01T10:00:00Z,\n")
    log = write(tmp_path, "messages",
                junos("Mar  5 01:00:00", "ALLOC", "100.64.0.2", "198.51.100.7:1024-1151"))
    loaded = cgnat.load_cgnat([csv_path, log], year=2025)
    assert [b.source for b in loaded.rows] == ["cgnat-csv", "cgnat-junos"]


def test_a_file_with_no_port_block_messages_raises(tmp_path):
    path = write(tmp_path, "messages", "Mar  5 00:59:00 mx1 rpd[1234]: nothing to see\n")
    with pytest.raises(LinkInputError, match="NAT_PORT_BLOCK"):
        cgnat.load_cgnat(path, year=2025)


def test_sniffer():
    assert cgnat.looks_like("Mar  5 00:59:00 mx1 rpd[1]: x\n"
                            + junos("Mar  5 01:00:00", "ALLOC", "1.2.3.4", "5.6.7.8:1-2"))
    assert cgnat.looks_like("\ufeff" + CSV)
    assert cgnat.looks_like("nat_ip,ports,inside_ip,start\n")
    assert not cgnat.looks_like("Mar  5 00:59:00 mx1 rpd[1]: JSERVICES_NAT_RULE_MATCH: x\n")
    assert not cgnat.looks_like("subscriber_id,entity_id,entity_name,entity_type\n")
