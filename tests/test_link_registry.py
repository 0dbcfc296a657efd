"""Registry and static-assignment loaders on small hand-written files (docs/inputs/registry.md)."""

from __future__ import annotations

import gzip
import ipaddress
import math
from datetime import UTC, datetime
from pathlib import Path

import pytest

from poolwatch.errors import ConfigError
from poolwatch.link import registry
from poolwatch.link.model import ENTITY_TYPES, LinkInputError

HEADER = "subscriber_id,entity_id,entity_name,entity_type\n"


def write(tmp_path: Path, text: str, name: str = "registry.csv", encoding: str = "utf-8",
          gz: bool = False) -> Path:
    path = tmp_path / name
    data = text.encode(encoding)
    path.write_bytes(gzip.compress(data) if gz else data)
    return path


def issues(loaded) -> list[tuple[int, bool, str]]:
    return [(i.line, i.skipped, i.reason) for r in loaded.reports for i in r.issues]


# --- registry: columns and values -------------------------------------------------------------


def test_header_synonyms_and_extra_columns_kept_as_written(tmp_path):
    path = write(tmp_path,
                 "Customer ID;Entity-ID;Company Name;Category;Reg. No;Site Address;Province;"
                 "Lat;Lng;MAC;username;Meter ID;Contact Person\n"
                 "S1;E1;Acme Ltd;Company;91110000MA01;1 Road;Hebei;39.9;116.4;"
                 "AA-BB-CC-DD-EE-01;acme01;M-7;Li Lei\n")
    loaded = registry.load_registry(path)
    [s] = loaded.rows
    assert (s.subscriber_id, s.entity_id, s.entity_name, s.entity_type) == (
        "S1", "E1", "Acme Ltd", "enterprise")
    assert (s.registration_number, s.address, s.region) == ("91110000MA01", "1 Road", "Hebei")
    assert (s.latitude, s.longitude, s.cpe_mac) == (39.9, 116.4, "aa:bb:cc:dd:ee:01")
    assert s.extra == {"username": "acme01", "Meter ID": "M-7", "Contact Person": "Li Lei"}
    assert str(s.origin) == f"{path}:2"
    assert loaded.reports[0].kind == "registry" and loaded.reports[0].loaded == 1


def test_canonical_name_beats_a_synonym_which_stays_in_extra(tmp_path):
    path = write(tmp_path, "name,subscriber_id,entity_id,entity_name,entity_type\n"
                           "Wang Fang,S1,E1,Acme Ltd,home\n")
    [s] = registry.load_registry(path).rows
    assert s.entity_name == "Acme Ltd"
    assert s.extra == {"name": "Wang Fang"}


@pytest.mark.parametrize("spelling, expected", [
    ("data centre", "datacentre"), ("Data Center", "datacentre"), ("DATACENTER", "datacentre"),
    ("data-centre", "datacentre"), ("IDC", "datacentre"), ("Internet Café", "internet_cafe"),
    ("internet cafe", "internet_cafe"), ("netbar", "internet_cafe"), ("网吧", "internet_cafe"),
    ("enterprise", "enterprise"), ("Company", "enterprise"), ("residential", "residential"),
    ("home", "residential"), ("government", "government"), ("education", "education"),
    ("school", "education"), ("University", "education"), ("other", "other"),
])
def test_entity_type_spellings(spelling, expected):
    assert expected in ENTITY_TYPES
    assert registry.entity_type(spelling) == expected


def test_unknown_entity_type_is_other_with_a_kept_row_issue(tmp_path):
    path = write(tmp_path, HEADER + "S1,E1,Farm,Internet Café\nS2,E2,Hall,mining farm\n")
    loaded = registry.load_registry(path)
    assert [s.entity_type for s in loaded.rows] == ["internet_cafe", "other"]
    [(line, skipped, reason)] = issues(loaded)
    assert (line, skipped) == (3, False) and "mining farm" in reason
    assert loaded.reports[0].skipped == 0


def test_bom_and_chinese_text_round_trip(tmp_path):
    text = (HEADER.rstrip("\n") + ",address,region\n"
            "S1,E1,北京某某科技有限公司,企业,北京市海淀区中关村大街1号,北京\n")
    for name, encoding in (("bom.csv", "utf-8-sig"), ("plain.csv", "utf-8")):
        [s] = registry.load_registry(write(tmp_path, text, name, encoding)).rows
        assert s.subscriber_id == "S1"  # the BOM did not stick to the first header
        assert s.entity_name == "北京某某科技有限公司"
        assert s.address == "北京市海淀区中关村大街1号" and s.region == "北京"
        assert s.entity_type == "enterprise"


def test_duplicate_subscriber_id_keeps_the_first_even_across_files(tmp_path):
    a = write(tmp_path, HEADER + "S1,E1,Acme,home\nS2,E1,Acme,home\nS1,E2,Other,home\n", "a.csv")
    b = write(tmp_path, HEADER + "S2,E3,Third,home\n", "b.csv")
    loaded = registry.load_registry([a, b])
    assert [(s.subscriber_id, s.entity_id) for s in loaded.rows] == [("S1", "E1"), ("S2", "E1")]
    assert [(r.loaded, r.skipped) for r in loaded.reports] == [(2, 1), (0, 1)]
    assert loaded.reports[0].issues[0].line == 4
    assert f"{a}:2" in loaded.reports[0].issues[0].reason
    assert f"{a}:3" in loaded.reports[1].issues[0].reason


def test_entity_fields_agree_across_rows_first_wins(tmp_path):
    path = write(tmp_path, HEADER.rstrip("\n") + ",registration_number\n"
                 "S1,E1,Acme Mining Ltd,data centre,\n"
                 "S2,E1,ACME  mining ltd,IDC,9111-0000\n"     # same name, fills the reg. no.
                 "S3,E1,Beta Ltd,enterprise,91110000\n")      # conflicts on name and type
    loaded = registry.load_registry(path)
    assert {s.entity_name for s in loaded.rows} == {"Acme Mining Ltd"}
    assert {s.entity_type for s in loaded.rows} == {"datacentre"}
    assert {s.registration_number for s in loaded.rows} == {"9111-0000"}
    found = issues(loaded)
    assert [(line, skipped) for line, skipped, _ in found] == [(4, False), (4, False)]
    assert "Beta Ltd" in found[0][2] and f"{path}:2" in found[0][2]
    assert len(loaded.rows) == 3


def test_entity_without_any_type_is_other_with_one_issue(tmp_path):
    path = write(tmp_path, HEADER + "S1,E1,Acme,\nS2,E1,Acme,\n")
    loaded = registry.load_registry(path)
    assert [s.entity_type for s in loaded.rows] == ["other", "other"]
    assert [(line, skipped) for line, skipped, _ in issues(loaded)] == [(2, False)]


@pytest.mark.parametrize("text", ["AA:BB:CC:0D:EE:FF", "aa-bb-cc-0d-ee-ff", "aabb.cc0d.eeff",
                                  "AABBCC0DEEFF", "aa:bb:cc:d:ee:ff", " aa:bb:cc:0d:ee:ff "])
def test_mac_forms(text):
    assert registry._normalise_mac(text) == "aa:bb:cc:0d:ee:ff"


@pytest.mark.parametrize("text", ["aa:bb:cc:dd:ee", "aa:bb-cc:dd:ee:ff", "aabb.ccdd.eef",
                                  "gg:bb:cc:dd:ee:ff", "aabbccddeeff00"])
def test_bad_macs(text):
    with pytest.raises(ValueError):
        registry._normalise_mac(text)


def test_bad_mac_and_coordinates_keep_the_row(tmp_path):
    path = write(tmp_path, HEADER.rstrip("\n") + ",latitude,longitude,cpe_mac\n"
                 "S1,E1,A,home,91.5,10,zz:zz\n"
                 "S2,E2,B,home,10,,\n"
                 "S3,E3,C,home,-33.9,151.2,\n")
    loaded = registry.load_registry(path)
    assert [(s.latitude, s.longitude, s.cpe_mac) for s in loaded.rows] == [
        (None, None, None), (None, None, None), (-33.9, 151.2, None)]
    assert [(line, skipped) for line, skipped, _ in issues(loaded)] == [
        (2, False), (2, False), (3, False)]


def test_bad_rows_have_their_line_numbers_and_the_rest_loads(tmp_path):
    path = write(tmp_path, HEADER.rstrip("\n") + ",address\n"
                 'S1,E1,A,home,"two\nlines"\n'        # lines 2-3
                 ",E2,B,home,\n"                        # line 4: no subscriber id
                 "\n"                                   # line 5: blank, ignored
                 "S3,E3,C,home,x,surplus\n"             # line 6: too many fields
                 "S4,E4,D,home\n")                      # line 7: short row, address empty
    loaded = registry.load_registry(path)
    assert [(s.subscriber_id, s.origin.line, s.address) for s in loaded.rows] == [
        ("S1", 2, "two\nlines"), ("S4", 7, None)]
    assert [(line, skipped) for line, skipped, _ in issues(loaded)] == [(4, True), (6, True)]


def test_unclosed_quote_is_an_issue_not_a_silent_loss(tmp_path):
    path = write(tmp_path, HEADER + 'S1,E1,A,home\nS2,E2,"B,home\nS3,E3,C,home\n')
    loaded = registry.load_registry(path)
    assert [s.subscriber_id for s in loaded.rows] == ["S1"]
    [(line, skipped, reason)] = issues(loaded)
    assert line == 3 and skipped and "unclosed quote" in reason


def test_missing_columns_raise_naming_file_and_columns(tmp_path):
    path = write(tmp_path, "subscriber_id,entity_name,address\nS1,A,x\n")
    with pytest.raises(LinkInputError) as err:
        registry.load_registry(path)
    assert err.value.path == str(path)
    assert "entity_id" in str(err.value) and "entity_type" in str(err.value)
    assert "entity_name" not in err.value.reason.split("(")[0]


def test_unreadable_files_raise(tmp_path):
    with pytest.raises(LinkInputError, match="no such file"):
        registry.load_registry(tmp_path / "absent.csv")
    with pytest.raises(LinkInputError, match="empty file"):
        registry.load_registry(write(tmp_path, ""))
    latin1 = write(tmp_path, HEADER.rstrip("\n") + ",address\nS1,E1,A,home,Café\n",
                   "latin1.csv", "latin-1")
    loaded = registry.load_registry(latin1)  # one bad line is an issue, the rest loads
    assert loaded.rows == [] and [(n, skipped) for n, skipped, _ in issues(loaded)] == [(2, True)]
    with pytest.raises(LinkInputError) as err:  # a header that is not UTF-8 is fatal
        registry.load_registry(write(tmp_path, "subscriber_id,entité\n", "h.csv", "latin-1"))
    assert err.value.line == 1 and "UTF-8" in err.value.reason


def test_gzip_and_truncated_gzip(tmp_path):
    rows = "".join(f"S{i},E{i},Name {i},home\n" for i in range(2000))
    path = write(tmp_path, HEADER + rows, "registry.csv.gz", gz=True)
    assert len(registry.load_registry(path).rows) == 2000
    cut = tmp_path / "cut.gz"
    cut.write_bytes(path.read_bytes()[:-200])
    loaded = registry.load_registry(cut)
    assert 0 < len(loaded.rows) < 2000
    [(line, skipped, reason)] = issues(loaded)
    assert skipped and "truncated" in reason and line > len(loaded.rows)


def test_sniffers():
    assert registry.looks_like_registry("\ufeffSubscriber ID,Entity ID,Name,Type\nS1,E1,A,home")
    assert not registry.looks_like_registry("network,subscriber_id,entity_name,entity_type\n")
    assert not registry.looks_like_registry("meter_id,period_start,period_end,kwh\n")
    assert registry.looks_like_static("CIDR;Customer ID;valid_from\n10.0.0.0/8;S1;2024-01-01")
    assert not registry.looks_like_static(HEADER)


# --- static assignments -----------------------------------------------------------------------

STATIC = "network,subscriber_id,valid_from,valid_to,circuit\n"


def test_static_v4_v6_single_hosts_and_open_intervals(tmp_path):
    path = write(tmp_path, STATIC +
                 "203.0.113.0/29,S1,2024-01-01T00:00:00Z,,rack 4\n"
                 "2001:db8:100::/48,S2,2024-01-01 08:00:00+08:00,2025-01-01T00:00:00Z,\n"
                 "198.51.100.7,S3,,never,\n"
                 "2001:db8::7,S4,2024-01-01,,\n", "static.csv")
    loaded = registry.load_static(path)
    got = [(str(a.network), a.identity, a.start, a.end) for a in loaded.rows]
    jan1 = datetime(2024, 1, 1, tzinfo=UTC).timestamp()
    assert got == [
        ("203.0.113.0/29", "S1", jan1, math.inf),
        ("2001:db8:100::/48", "S2", jan1, datetime(2025, 1, 1, tzinfo=UTC).timestamp()),
        ("198.51.100.7/32", "S3", 0.0, math.inf),
        ("2001:db8::7/128", "S4", jan1, math.inf),
    ]
    first = loaded.rows[0]
    assert (first.identity_kind, first.source, first.end_inferred) == ("subscriber", "static",
                                                                        False)
    assert first.extra == {"circuit": "rack 4"} and loaded.rows[1].extra == {}
    assert isinstance(loaded.rows[1].network, ipaddress.IPv6Network)
    assert loaded.reports[0].kind == "static" and loaded.reports[0].loaded == 4


def test_static_host_bits_and_bad_intervals_are_skipped_with_lines(tmp_path):
    path = write(tmp_path, STATIC +
                 "10.0.0.1/24,S1,,,\n"
                 "2001:db8::1/64,S2,,,\n"
                 "192.0.2.0/24,S3,2024-06-01,2024-01-01,\n"
                 "192.0.2.0/24,S4,2024-06-01,2024-06-01,\n"
                 "not-an-ip,S5,,,\n"
                 "192.0.2.0/24,S6,yesterday,,\n"
                 "192.0.2.0/24,,,,\n"
                 "192.0.2.0/24,S8,,,\n", "static.csv")
    loaded = registry.load_static(path)
    assert [a.identity for a in loaded.rows] == ["S8"]
    found = issues(loaded)
    assert [(line, skipped) for line, skipped, _ in found] == [(n, True) for n in range(2, 9)]
    assert "10.0.0.0/24" in found[0][2] and "2001:db8::/64" in found[1][2]


def test_static_times_without_zone_are_read_in_tz(tmp_path):
    path = write(tmp_path, STATIC + "192.0.2.0/24,S1,2024-01-01 08:00,2024-01-02T00:00Z,\n",
                 "static.csv")
    [a] = registry.load_static(path, tz="Asia/Shanghai").rows
    assert a.start == datetime(2024, 1, 1, tzinfo=UTC).timestamp()
    assert a.end == datetime(2024, 1, 2, tzinfo=UTC).timestamp()
    with pytest.raises(ConfigError):
        registry.load_static(path, tz="Mars/Olympus")


def test_static_missing_column(tmp_path):
    path = write(tmp_path, "subscriber_id,valid_from\nS1,2024-01-01\n", "static.csv")
    with pytest.raises(LinkInputError, match="network"):
        registry.load_static(path)
