"""DHCP lease journals → assignments: ISC dhcpd (v4, v6) and Kea memfile CSV. Renewals merge,
a new client ends the previous holder, release/expiry end a holding, bad rows are reported."""

from __future__ import annotations

import gzip
import ipaddress
import math
from datetime import datetime, timezone

import pytest

from poolwatch.link.dhcp import (load_isc_leases, load_kea_leases, looks_like_isc,
                                 looks_like_kea, normalise_mac)
from poolwatch.link.model import LinkInputError

DAY = 1795478400  # Tue 2026-11-24 00:00:00 UTC
MAC1, MAC2 = "00:11:22:33:44:55", "00:aa:bb:cc:dd:0e"


def at(hour: int, minute: int = 0, second: int = 0) -> float:
    return DAY + hour * 3600 + minute * 60 + second


def isc(ts: float) -> str:
    """dhcpd's time: weekday number, date, time, UTC."""
    return datetime.fromtimestamp(ts, timezone.utc).strftime("%w %Y/%m/%d %H:%M:%S")


def lease(ip: str, start: float, end: float | None, mac: str | None = MAC1,
          state: str = "active", *more: str) -> str:
    lines = [f"lease {ip} {{", f"  starts {isc(start)};",
             f"  ends {'never' if end is None else isc(end)};", f"  cltt {isc(start)};",
             f"  binding state {state};", "  next binding state free;"]
    if mac:
        lines.append(f"  hardware ethernet {mac};")
    lines += [f"  {line}" for line in more]
    return "\n".join(lines) + "\n}\n"


ISC_HEAD = ("# The format of this file is documented in the dhcpd.leases(5) manual page.\n"
            "# This lease file was written by isc-dhcp-4.4.3\n\n"
            "# authoring-byte-order entry is generated, DO NOT DELETE\n"
            "authoring-byte-order little-endian;\n\n")


def write(tmp_path, text: str, name: str):
    path = tmp_path / name
    path.write_text(text)
    return path


def rows_of(loaded, ip: str) -> list[tuple]:
    net = ipaddress.ip_network(ip)
    return [(r.identity, r.start, r.end, r.end_inferred) for r in loaded.rows if r.network == net]


# --- shared --------------------------------------------------------------------------------

@pytest.mark.parametrize("text", ["00:11:22:33:44:55", "00-11-22-33-44-55", "0011.2233.4455",
                                  "001122334455", "0:11:22:33:44:55", " 00:11:22:33:44:55 "])
def test_normalise_mac_spellings(text):
    assert normalise_mac(text) == MAC1


@pytest.mark.parametrize("text", ["", "00:11:22:33:44", "00:11:22:33:44:zz", "0011.2233.445"])
def test_normalise_mac_rejects(text):
    with pytest.raises(ValueError):
        normalise_mac(text)


# --- ISC dhcpd v4 --------------------------------------------------------------------------

def test_isc_renewals_merge_into_one_holding(tmp_path):
    extra = ('uid "\\001\\000\\021\\"3DU";', 'client-hostname "miner-1";')
    text = (ISC_HEAD + lease("10.0.0.5", at(10), at(22), MAC1, "active", *extra)
            + lease("10.0.0.5", at(16), at(28), MAC1, "active", *extra)
            + lease("10.0.0.5", at(22), at(34), MAC1, "active", *extra))
    loaded = load_isc_leases([write(tmp_path, text, "dhcpd.leases")])
    [row] = loaded.rows
    assert (row.network, row.identity_kind, row.identity) == (
        ipaddress.ip_network("10.0.0.5/32"), "mac", MAC1)
    assert (row.start, row.end, row.end_inferred, row.source) == (at(10), at(34), False,
                                                                   "dhcp-isc")
    assert row.extra == {"uid": "01:00:11:22:33:44:55", "client_hostname": "miner-1"}
    assert row.origin.line == 7
    assert (loaded.reports[0].kind, loaded.reports[0].loaded) == ("dhcp-isc", 1)


def test_isc_new_mac_ends_previous_holder_at_its_start(tmp_path):
    text = (lease("10.0.0.5", at(10), at(22), MAC1)
            + lease("10.0.0.5", at(15, 30, 7), at(27, 30, 7), MAC2))
    loaded = load_isc_leases([write(tmp_path, text, "dhcpd.leases")])
    assert rows_of(loaded, "10.0.0.5/32") == [(MAC1, at(10), at(15, 30, 7), True),
                                              (MAC2, at(15, 30, 7), at(27, 30, 7), False)]


def test_isc_released_and_free_end_the_holding(tmp_path):
    released = lease("10.0.0.5", at(10), at(22), MAC1, "released").replace(
        f"cltt {isc(at(10))}", f"cltt {isc(at(14))}")
    text = (lease("10.0.0.5", at(10), at(22), MAC1) + released
            + lease("10.0.0.5", at(10), at(22), MAC1, "free")  # dhcpd frees it later: no change
            + lease("10.0.0.6", at(10), at(22), MAC2)
            + lease("10.0.0.6", at(10), at(13), None, "free"))  # freed, hardware forgotten
    loaded = load_isc_leases([write(tmp_path, text, "dhcpd.leases")])
    assert rows_of(loaded, "10.0.0.5/32") == [(MAC1, at(10), at(14), False)]
    assert rows_of(loaded, "10.0.0.6/32") == [(MAC2, at(10), at(13), False)]


def test_isc_free_lease_of_a_compacted_file_still_tells_who_held_it(tmp_path):
    text = lease("10.0.0.7", at(1), at(9), MAC2, "free")
    loaded = load_isc_leases([write(tmp_path, text, "dhcpd.leases")])
    assert rows_of(loaded, "10.0.0.7/32") == [(MAC2, at(1), at(9), False)]


def test_isc_ends_never_and_epoch_times(tmp_path):
    text = ("db-time-format local;\n"
            f"lease 10.0.0.8 {{\n  starts epoch {int(at(10))}; # Tue Nov 24 10:00:00 2026\n"
            "  ends never;\n  binding state active;\n  hardware ethernet 0:11:22:33:44:55;\n}\n"
            f"lease 10.0.0.9 {{\n  starts epoch {int(at(11))}; # Tue Nov 24 11:00:00 2026\n"
            f"  ends epoch {int(at(12))}; # Tue Nov 24 12:00:00 2026\n"
            "  binding state active;\n  hardware ethernet 00:aa:bb:cc:dd:0e;\n}\n")
    loaded = load_isc_leases([write(tmp_path, text, "dhcpd.leases")])
    assert rows_of(loaded, "10.0.0.8/32") == [(MAC1, at(10), math.inf, False)]
    assert rows_of(loaded, "10.0.0.9/32") == [(MAC2, at(11), at(12), False)]


def test_isc_skips_failover_host_and_server_duid_silently(tmp_path):
    text = (ISC_HEAD + 'server-duid "\\000\\001\\000\\001\\037\\305";\n\n'
            'failover peer "dhcp-failover" state {\n'
            f"  my state normal at {isc(at(1))};\n  partner state normal at {isc(at(1))};\n}}\n"
            "host printer {\n  dynamic;\n  hardware ethernet 00:11:22:33:44:66;\n"
            "  fixed-address 10.0.0.200;\n}\n"
            + lease("10.0.0.5", at(10), at(22)))
    loaded = load_isc_leases([write(tmp_path, text, "dhcpd.leases")])
    assert len(loaded.rows) == 1 and loaded.reports[0].issues == []


def test_isc_malformed_blocks_are_reported_and_the_rest_loads(tmp_path):
    unclosed = lease("10.0.0.1", at(10), at(22)).rstrip("}\n") + "\n"  # no closing brace
    text = (lease("10.0.0.2", at(10), at(22))       # line 1
            + unclosed                              # line 9
            + lease("10.0.0.300", at(10), at(22))   # line 16: bad address
            + lease("10.0.0.3", at(10), at(22)).replace("2026/11/24 10", "2026/13/24 10")
            + lease("10.0.0.4", at(10), at(22)))    # line 32
    loaded = load_isc_leases([write(tmp_path, text, "dhcpd.leases")])
    assert sorted(str(r.network) for r in loaded.rows) == ["10.0.0.2/32", "10.0.0.4/32"]
    issues = [(i.line, i.reason) for i in loaded.reports[0].issues]
    assert issues[0] == (9, "block not closed before line 16")
    assert issues[1][0] == 16 and "10.0.0.300" in issues[1][1]
    assert issues[2][0] == 24 and "bad time" in issues[2][1]
    assert loaded.reports[0].skipped == 3


def test_isc_gzip_and_wrong_format(tmp_path):
    path = tmp_path / "dhcpd.leases.gz"
    path.write_bytes(gzip.compress(lease("10.0.0.5", at(10), at(22)).encode()))
    assert len(load_isc_leases([path]).rows) == 1
    kea = write(tmp_path, "address,hwaddr,client_id,valid_lifetime,expire\n", "kea.csv")
    with pytest.raises(LinkInputError, match="kea.csv"):
        load_isc_leases([kea])


# --- ISC dhcpd v6 --------------------------------------------------------------------------

def octal(raw: bytes) -> str:
    return "".join(f"\\{b:03o}" for b in raw)


IAID = bytes([1, 0, 0, 0])
DUID_LLT = bytes.fromhex("0001000130c1b2a3") + bytes.fromhex("001122334455")
DUID_EN = bytes.fromhex("000200000009") + b"\x0c\xc0\x84\xd3\x03"


def ia(kind: str, duid: bytes, sub: str, what: str, cltt: float, ends: float,
       state: str = "active") -> str:
    return (f'{kind} "{octal(IAID + duid)}" {{\n  cltt {isc(cltt)};\n  {sub} {what} {{\n'
            f"    binding state {state};\n    preferred-life 375;\n    max-life 600;\n"
            f"    ends {isc(ends)};\n  }}\n}}\n")


def test_isc_v6_ia_na_and_ia_pd(tmp_path):
    text = (ISC_HEAD + 'server-duid "\\000\\001\\000\\001";\n\n'
            + ia("ia-na", DUID_LLT, "iaaddr", "2001:db8::100", at(10), at(10, 10))
            + ia("ia-na", DUID_LLT, "iaaddr", "2001:db8::100", at(10, 5), at(10, 15))
            + ia("ia-pd", DUID_EN, "iaprefix", "2001:db8:1:100::/56", at(10), at(10, 10))
            + ia("ia-pd", DUID_EN, "iaprefix", "2001:db8:1:100::/56", at(10, 3), at(10, 10),
                 "released"))
    loaded = load_isc_leases([write(tmp_path, text, "dhcpd6.leases")])
    [na] = [r for r in loaded.rows if r.network.prefixlen == 128]
    assert (str(na.network), na.identity_kind, na.identity) == ("2001:db8::100/128", "mac", MAC1)
    assert (na.start, na.end) == (at(10), at(10, 15))
    assert na.extra["duid"] == "00:01:00:01:30:c1:b2:a3:00:11:22:33:44:55"
    [pd] = [r for r in loaded.rows if r.network.prefixlen == 56]
    assert (pd.identity_kind, pd.identity) == ("client_id", "00:02:00:00:00:09:0c:c0:84:d3:03")
    assert (pd.start, pd.end, pd.end_inferred) == (at(10), at(10, 3), False)
    assert loaded.reports[0].issues == []


def test_isc_v6_bad_iaaddr_is_reported_on_its_line(tmp_path):
    text = (ia("ia-na", DUID_LLT, "iaaddr", "2001:db8::zz", at(10), at(10, 10))
            + ia("ia-na", DUID_EN, "iaaddr", "2001:db8::101", at(10), at(10, 10)))
    loaded = load_isc_leases([write(tmp_path, text, "dhcpd6.leases")])
    assert [str(r.network) for r in loaded.rows] == ["2001:db8::101/128"]
    [issue] = loaded.reports[0].issues
    assert issue.line == 3 and "2001:db8::zz" in issue.reason


# --- Kea ---------------------------------------------------------------------------------

KEA4 = "address,hwaddr,client_id,valid_lifetime,expire,subnet_id,fqdn_fwd,fqdn_rev,hostname," \
       "state,user_context,pool_id\n"
KEA6 = "address,duid,valid_lifetime,expire,subnet_id,pref_lifetime,lease_type,iaid,prefix_len," \
       "fqdn_fwd,fqdn_rev,hostname,hwaddr,state,user_context,hwtype,hwaddr_source,pool_id\n"


def k4(ip: str, mac: str, expire: float, valid: int = 3600, state: int = 0,
       host: str = "", client_id: str = "") -> str:
    return f"{ip},{mac},{client_id},{valid},{int(expire)},1,0,0,{host},{state},,0\n"


def k6(ip: str, duid: str, expire: float, valid: int = 3600, state: int = 0, lease_type: int = 0,
       plen: int = 128, hwaddr: str = "") -> str:
    return (f"{ip},{duid},{valid},{int(expire)},1,1800,{lease_type},7,{plen},0,0,,{hwaddr},"
            f"{state},,1,2,0\n")


def test_kea_v4_journal_updates_release_and_decline(tmp_path):
    text = (KEA4
            + k4("10.0.0.5", MAC1, at(11), host="miner&#x2c one")     # 10:00-11:00
            + k4("10.0.0.5", MAC1, at(11, 30))                         # renewed at 10:30
            + k4("10.0.0.5", MAC1, at(11, 30), valid=0)                # a deletion: no change
            + k4("10.0.0.6", MAC2, at(11), state=3)                    # released...
            + k4("10.0.0.6", MAC1, at(11, 45))                         # ...by 10:45
            + k4("10.0.0.7", "", at(11), state=1)                      # declined: skipped
            + k4("10.0.0.8", "", at(11), client_id="01:00:11:22:33:44:55"))
    loaded = load_kea_leases([write(tmp_path, text, "kea-leases4.csv")])
    assert rows_of(loaded, "10.0.0.5/32") == [(MAC1, at(10), at(11, 30), False)]
    [five] = [r for r in loaded.rows if str(r.network) == "10.0.0.5/32"]
    assert five.extra["hostname"] == "miner, one" and five.source == "dhcp-kea"
    assert rows_of(loaded, "10.0.0.6/32") == [(MAC2, at(10), at(10, 45), True),
                                              (MAC1, at(10, 45), at(11, 45), False)]
    assert rows_of(loaded, "10.0.0.7/32") == []
    assert [(r.identity_kind, r.identity) for r in loaded.rows
            if str(r.network) == "10.0.0.8/32"] == [("client_id", "01:00:11:22:33:44:55")]
    assert loaded.reports[0].issues == [] and loaded.reports[0].loaded == 4


def test_kea_v4_released_without_next_row_ends_at_expire(tmp_path):
    text = KEA4 + k4("10.0.0.5", MAC1, at(11)) + k4("10.0.0.5", MAC1, at(11), state=3)
    loaded = load_kea_leases([write(tmp_path, text, "kea-leases4.csv")])
    assert rows_of(loaded, "10.0.0.5/32") == [(MAC1, at(10), at(11), True)]


def test_kea_v4_reclaimed_and_new_client(tmp_path):
    text = (KEA4 + k4("10.0.0.5", MAC1, at(11)) + k4("10.0.0.5", "", at(11), state=2)
            + k4("10.0.0.5", MAC2, at(14, 0, 9)))
    loaded = load_kea_leases([write(tmp_path, text, "kea-leases4.csv")])
    assert rows_of(loaded, "10.0.0.5/32") == [(MAC1, at(10), at(11), False),
                                              (MAC2, at(13, 0, 9), at(14, 0, 9), False)]


def test_kea_v4_older_header_and_gzip(tmp_path):
    old = "address,hwaddr,client_id,valid_lifetime,expire,subnet_id,fqdn_fwd,fqdn_rev,hostname\n"
    path = tmp_path / "kea-leases4.csv.2.gz"
    path.write_bytes(gzip.compress((old + f"10.0.0.5,{MAC1},,3600,{int(at(11))},1,0,0,\n")
                                   .encode()))
    assert rows_of(load_kea_leases([path]), "10.0.0.5/32") == [(MAC1, at(10), at(11), False)]


def test_kea_v6_na_pd_and_identities(tmp_path):
    duid_en = "00:02:00:00:00:09:0c:c0:84:d3:03"
    duid_ll = "00:03:00:01:00:11:22:33:44:55"
    text = (KEA6
            + k6("2001:db8::100", duid_en, at(11))
            + k6("2001:db8::100", duid_en, at(12))                               # renewal
            + k6("2001:db8:1:100::", duid_en, at(11), lease_type=2, plen=56)
            + k6("2001:db8::200", duid_ll, at(11))                               # DUID-LL: MAC
            + k6("2001:db8::300", duid_en, at(11), hwaddr="00:aa:bb:cc:dd:0e"))  # hwaddr wins
    loaded = load_kea_leases([write(tmp_path, text, "kea-leases6.csv")])
    assert rows_of(loaded, "2001:db8::100/128") == [(duid_en, at(10), at(12), False)]
    assert rows_of(loaded, "2001:db8:1:100::/56") == [(duid_en, at(10), at(11), False)]
    assert rows_of(loaded, "2001:db8::200/128") == [(MAC1, at(10), at(11), False)]
    assert rows_of(loaded, "2001:db8::300/128") == [(MAC2, at(10), at(11), False)]
    kinds = {str(r.network): r.identity_kind for r in loaded.rows}
    assert kinds["2001:db8::100/128"] == "client_id" and kinds["2001:db8::200/128"] == "mac"
    [pd] = [r for r in loaded.rows if r.network.prefixlen == 56]
    assert pd.extra["duid"] == duid_en and pd.extra["iaid"] == "7"


def test_kea_v6_released_prefix_cut_by_next_client(tmp_path):
    other = "00:02:00:00:00:09:aa:bb"
    text = (KEA6 + k6("2001:db8:1:100::", "00:02:00:00:00:09:01", at(12), state=3,
                      lease_type=2, plen=56)
            + k6("2001:db8:1:100::", other, at(12), lease_type=2, plen=56, valid=3000))
    loaded = load_kea_leases([write(tmp_path, text, "kea-leases6.csv")])
    assert rows_of(loaded, "2001:db8:1:100::/56") == [
        ("00:02:00:00:00:09:01", at(11), at(11, 10), True), (other, at(11, 10), at(12), False)]


def test_kea_bad_rows_reported_with_line_numbers(tmp_path):
    text = (KEA4 + k4("10.0.0.5", MAC1, at(11))     # line 2
            + "10.0.0.6,00:11:22:33:44:55,,3600\n"   # line 3: too few columns
            + k4("10.0.0.300", MAC1, at(11))          # line 4: bad address
            + k4("10.0.0.7", MAC1, at(11)).replace(str(int(at(11))), "soon")  # line 5
            + k4("10.0.0.8", "", at(11))              # line 6: no identity
            + k4("10.0.0.9", MAC2, at(11)))           # line 7
    loaded = load_kea_leases([write(tmp_path, text, "kea-leases4.csv")])
    assert sorted(str(r.network) for r in loaded.rows) == ["10.0.0.5/32", "10.0.0.9/32"]
    assert [i.line for i in loaded.reports[0].issues] == [3, 4, 5, 6]
    assert [r.origin.line for r in sorted(loaded.rows, key=lambda r: r.origin.line)] == [2, 7]


def test_kea_wrong_format_names_the_file(tmp_path):
    path = write(tmp_path, lease("10.0.0.5", at(10), at(22)), "dhcpd.leases")
    with pytest.raises(LinkInputError, match="dhcpd.leases"):
        load_kea_leases([path])


def test_looks_like():
    assert looks_like_kea(KEA4) and looks_like_kea(KEA6)
    assert not looks_like_kea(ISC_HEAD)
    assert looks_like_isc(ISC_HEAD + lease("10.0.0.5", at(10), at(22)))
    assert looks_like_isc(ia("ia-na", DUID_LLT, "iaaddr", "2001:db8::1", at(10), at(11)))
    assert not looks_like_isc(KEA4)
    assert not looks_like_isc("Tue Nov 24 10:00:00 2026\n\tAcct-Status-Type = Start\n")
    assert not looks_like_isc("subnet 10.0.0.0 netmask 255.255.255.0 {\n")
