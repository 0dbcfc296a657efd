"""Flow records: NetFlow v5/v9 and IPFIX datagrams built byte by byte (struct), decoded by
``readers.flowrecords``, judged by ``detect.flowrecords``, collected over loopback UDP by
``poolwatch_sensor.collector``. Real exporters are in test_flow_exporters.py."""

from __future__ import annotations

import ipaddress
import random
import socket
import struct
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "capture"))

from poolwatch.detect.contacts import ContactSettings
from poolwatch.detect.flowrecords import FlowContactJudge, FlowRecordSettings
from poolwatch.readers.flowrecords import FLOWREC, FlowDecoder
from poolwatch.records import addr_to_halves, halves_to_addr

T0 = 1_772_447_400  # 2026-03-02 10:30:00 UTC
MS = 1_000_000
NS = 1_000_000_000
EXP = "192.0.2.9"

# ----------------------------------------------------------------------------- builders
V4_FIELDS = [(8, 4), (12, 4), (22, 4), (21, 4), (1, 4), (2, 4), (7, 2), (11, 2), (4, 1),
             (6, 1), (61, 1)]  # softflowd's v9 IPv4 template, trimmed


def v4(ip: str) -> int:
    return int(ipaddress.IPv4Address(ip))


def v4_record(src, dst, first, last, octets, pkts, sport, dport, proto=6, flags=0x18, d=0):
    return struct.pack("!IIIIIIHHBBB", v4(src), v4(dst), first, last, octets, pkts, sport,
                       dport, proto, flags, d)


def pad4(b: bytes) -> bytes:
    return b + b"\0" * (-len(b) % 4)


def template_set(set_id: int, templates: list[tuple[int, list[tuple]]], pad: bool = True) -> bytes:
    body = b""
    for tid, fields in templates:
        body += struct.pack("!HH", tid, len(fields))
        for f in fields:
            ie, length = f[0], f[1]
            if len(f) == 3:  # enterprise
                body += struct.pack("!HHI", ie | 0x8000, length, f[2])
            else:
                body += struct.pack("!HH", ie, length)
    body = pad4(body) if pad else body
    return struct.pack("!HH", set_id, len(body) + 4) + body


def v9_options_set(tid: int, scope: list[tuple[int, int]], opts: list[tuple[int, int]]) -> bytes:
    body = struct.pack("!HHH", tid, 4 * len(scope), 4 * len(opts))
    for ie, length in scope + opts:
        body += struct.pack("!HH", ie, length)
    body = pad4(body)
    return struct.pack("!HH", 1, len(body) + 4) + body


def ipfix_options_set(tid: int, scope: list[tuple[int, int]], opts: list[tuple[int, int]]) -> bytes:
    body = struct.pack("!HHH", tid, len(scope) + len(opts), len(scope))
    for ie, length in scope + opts:
        body += struct.pack("!HH", ie, length)
    body = pad4(body)
    return struct.pack("!HH", 3, len(body) + 4) + body


def data_set(tid: int, records: list[bytes], pad: bool = True) -> bytes:
    body = b"".join(records)
    body = pad4(body) if pad else body
    return struct.pack("!HH", tid, len(body) + 4) + body


def v9(*sets: bytes, sysup: int = 100_000, secs: int = T0, seq: int = 1, source: int = 0) -> bytes:
    return struct.pack("!HHIIII", 9, len(sets), sysup, secs, seq, source) + b"".join(sets)


def ipfix(*sets: bytes, export: int = T0, seq: int = 0, domain: int = 0,
          length: int | None = None) -> bytes:
    body = b"".join(sets)
    n = 16 + len(body) if length is None else length
    return struct.pack("!HHIII", 10, n, export, seq, domain) + body


def v5(records: list[tuple], *, sysup: int = 100_000, secs: int = T0, nsecs: int = 0,
       sampling: int = 0, count: int | None = None, seq: int = 0) -> bytes:
    head = struct.pack("!HHIIIIBBH", 5, len(records) if count is None else count, sysup,
                       secs, nsecs, seq, 0, 0, sampling)
    body = b""
    for src, dst, pkts, octets, first, last, sport, dport, flags, proto in records:
        body += struct.pack("!IIIHHIIIIHHBBBBHHBBH", v4(src), v4(dst), 0, 1, 2, pkts, octets,
                            first, last, sport, dport, 0, flags, proto, 0, 0, 0, 0, 0, 0)
    return head + body


V9_TEMPLATE = template_set(0, [(256, V4_FIELDS)])
ONE = v4_record("10.0.0.1", "203.0.113.5", 40_000, 90_000, 1200, 10, 40001, 3333)
TWO = v4_record("203.0.113.5", "10.0.0.1", 40_000, 90_000, 900, 8, 3333, 40001)


def addr(col_hi, col_lo) -> str:
    return halves_to_addr(int(col_hi), int(col_lo))


# ----------------------------------------------------------------------------- decoding
def test_v5_records_fields_times_and_header_sampling():
    d = FlowDecoder()
    dg = v5([("10.0.0.1", "203.0.113.5", 10, 1200, 40_000, 90_000, 40001, 3333, 0x1B, 6),
             ("203.0.113.5", "10.0.0.1", 8, 900, 40_000, 90_500, 3333, 40001, 0x1B, 6)],
            nsecs=250_000_000, sampling=(1 << 14) | 100)
    r = d.decode_one(dg, EXP)
    assert len(r) == 2 and d.stats["records"] == 2 and d.malformed == 0
    assert addr(r["src_hi"][0], r["src_lo"][0]) == "10.0.0.1"
    assert addr(r["dst_hi"][1], r["dst_lo"][1]) == "10.0.0.1"
    assert r["packets"].tolist() == [10, 8] and r["bytes"].tolist() == [1200, 900]
    assert r["src_port"].tolist() == [40001, 3333] and r["proto"].tolist() == [6, 6]
    assert r["tcp_flags"].tolist() == [0x1B, 0x1B]
    base = T0 * NS + 250_000_000
    assert r["first_ns"][0] == base - 60_000 * MS and r["last_ns"][1] == base - 9_500 * MS
    assert r["sampling"].tolist() == [100, 100] and r["version"].tolist() == [5, 5]
    assert addr(r["exporter_hi"][0], r["exporter_lo"][0]) == EXP
    assert r["ingress"].tolist() == [1, 1] and r["egress"].tolist() == [2, 2]


def test_v9_template_and_data_in_one_datagram():
    d = FlowDecoder()
    r = d.decode_one(v9(V9_TEMPLATE, data_set(256, [ONE, TWO])), EXP)
    assert len(r) == 2 and d.stats["templates"] == 1
    # sysUpTime 100 s at T0: a record stamped 40 s and 90 s began 60 s and ended 10 s before
    assert r["first_ns"].tolist() == [(T0 - 60) * NS] * 2
    assert r["last_ns"].tolist() == [(T0 - 10) * NS] * 2
    assert r["dst_port"].tolist() == [3333, 40001] and r["packets"].tolist() == [10, 8]
    assert r["direction"].tolist() == [0, 0] and r["sampling"].tolist() == [1, 1]
    # a later datagram with data only uses the cached template
    r2 = d.decode_one(v9(data_set(256, [ONE]), seq=2), EXP)
    assert len(r2) == 1 and d.stats["records"] == 3 and d.stats["missed_sequence"] == 0


def test_v9_uptime_wraps_around_32_bits():
    """sysUpTime wrapped past 2^32 ms (49.7 days) between the record's start and export."""
    d = FlowDecoder()
    rec = v4_record("10.0.0.1", "203.0.113.5", 0xFFFF_FF00, 500, 1, 1, 1, 2)
    r = d.decode_one(v9(V9_TEMPLATE, data_set(256, [rec]), sysup=1000), EXP)
    assert r["first_ns"][0] == T0 * NS - (1000 + 0x100) * MS
    assert r["last_ns"][0] == T0 * NS - 500 * MS


def test_template_cache_is_per_exporter_and_source_id():
    d = FlowDecoder()
    d.decode_one(v9(V9_TEMPLATE), EXP)
    assert len(d.decode_one(v9(data_set(256, [ONE])), EXP)) == 1
    assert len(d.decode_one(v9(data_set(256, [ONE]), source=7), EXP)) == 0  # other domain
    assert len(d.decode_one(v9(data_set(256, [ONE])), "192.0.2.10")) == 0  # other exporter
    assert d.stats["pending_sets"] == 2


def test_v9_options_sampling_by_sampler_id_and_interface():
    d = FlowDecoder()
    fields = V4_FIELDS + [(48, 1)]
    tpl = template_set(0, [(257, fields)])
    opts = v9_options_set(300, [(1, 4)], [(48, 1), (49, 1), (50, 4)])  # system scope
    opt_rec = data_set(300, [struct.pack("!IBBI", 0, 5, 2, 1000)])
    rec5 = ONE + b"\x05"
    rec9 = ONE + b"\x09"  # a sampler nobody announced: the domain default (none) -> 1
    r = d.decode_one(v9(tpl, opts, opt_rec, data_set(257, [rec5, rec9])), EXP)
    assert r["sampling"].tolist() == [1000, 1]
    assert d.stats["options_records"] == 1 and d.stats["options_templates"] == 1
    # per-interface sampling (softflowd's options: interface scope, samplingInterval)
    d2 = FlowDecoder()
    opts = v9_options_set(301, [(2, 4)], [(34, 4), (35, 1)])
    recs = data_set(301, [struct.pack("!IIB", 0, 64, 2)])
    r = d2.decode_one(v9(V9_TEMPLATE, opts, recs, data_set(256, [ONE])), EXP)
    assert r["sampling"].tolist() == [64]  # ifindex 0 scope: the whole domain


IPFIX_FIELDS = [(8, 4), (12, 4), (152, 8), (153, 8), (1, 3), (2, 6), (7, 2), (11, 2), (4, 1),
                (6, 2), (136, 1), (99, 4, 9), (1, 4, 29305), (2, 4, 29305)]


def ipfix_record(first_ms, last_ms, octets=1200, pkts=10, rev_octets=900, rev_pkts=8,
                 end_reason=2, sport=40001, dport=3333) -> bytes:
    return (struct.pack("!IIQQ", v4("10.0.0.1"), v4("203.0.113.5"), first_ms, last_ms)
            + octets.to_bytes(3, "big") + pkts.to_bytes(6, "big")
            + struct.pack("!HHBHBIII", sport, dport, 6, 0x0112, end_reason, 0xDEAD,
                          rev_octets, rev_pkts))


def test_ipfix_reduced_size_enterprise_and_reverse_fields():
    d = FlowDecoder()
    rec = ipfix_record((T0 - 60) * 1000, (T0 - 1) * 1000 + 500)
    r = d.decode_one(ipfix(template_set(2, [(400, IPFIX_FIELDS)]), data_set(400, [rec])), EXP)
    assert len(r) == 1 and d.malformed == 0
    assert r["bytes"][0] == 1200 and r["packets"][0] == 10  # 3- and 6-byte counters
    assert r["rev_bytes"][0] == 900 and r["rev_packets"][0] == 8  # RFC 5103 reverse elements
    assert r["first_ns"][0] == (T0 - 60) * NS and r["last_ns"][0] == (T0 - 1) * NS + 500 * MS
    assert r["tcp_flags"][0] == 0x12 and r["end_reason"][0] == 2 and r["version"][0] == 10


@pytest.mark.parametrize("ie_pair,encode", [
    ((150, 151), lambda t: struct.pack("!II", t - 60, t - 1)),
    ((154, 155), lambda t: struct.pack("!QQ", (t - 60 + 2_208_988_800) << 32,
                                       ((t - 1 + 2_208_988_800) << 32) | (1 << 31))),
    ((156, 157), lambda t: struct.pack("!QQ", (t - 60 + 2_208_988_800) << 32,
                                       ((t - 1 + 2_208_988_800) << 32) | (1 << 31))),
    ((158, 159), lambda t: struct.pack("!II", 60_000_000, 500_000)),
])
def test_ipfix_clocks(ie_pair, encode):
    width = len(encode(T0)) // 2
    fields = [(8, 4), (12, 4), (ie_pair[0], width), (ie_pair[1], width), (2, 4), (4, 1)]
    rec = struct.pack("!II", v4("10.0.0.1"), v4("203.0.113.5")) + encode(T0) + struct.pack(
        "!IB", 3, 6)
    r = FlowDecoder().decode_one(ipfix(template_set(2, [(256, fields)]), data_set(256, [rec])))
    assert r["first_ns"][0] == (T0 - 60) * NS
    expected_last = {150: (T0 - 1) * NS, 158: T0 * NS - 500 * MS}.get(ie_pair[0],
                                                                       (T0 - 1) * NS + NS // 2)
    assert r["last_ns"][0] == expected_last


def test_ipfix_uptime_clock_needs_the_init_time_from_options():
    fields = [(8, 4), (12, 4), (22, 4), (21, 4), (2, 4), (4, 1)]
    rec = struct.pack("!IIIIIB", v4("10.0.0.1"), v4("203.0.113.5"), 1000, 61_000, 3, 6)
    tpl = template_set(2, [(256, fields)])
    d = FlowDecoder()
    r = d.decode_one(ipfix(tpl, data_set(256, [rec])), EXP)
    assert r["first_ns"][0] == T0 * NS and d.stats["no_time_base"] == 1  # export time
    opts = ipfix_options_set(257, [(143, 4)], [(160, 8), (305, 4), (306, 4)])
    init = (T0 - 100) * 1000
    orec = data_set(257, [struct.pack("!IQII", 1, init, 1, 99)])
    r = d.decode_one(ipfix(opts, orec, data_set(256, [rec])), EXP)
    assert r["first_ns"][0] == (T0 - 99) * NS and r["last_ns"][0] == (T0 - 39) * NS
    assert r["sampling"][0] == 100  # samplingPacketInterval 1, space 99: 1 in 100


def test_ipv6_template():
    fields = [(27, 16), (28, 16), (152, 8), (153, 8), (1, 4), (2, 4), (7, 2), (11, 2), (4, 1)]
    a, b = ipaddress.IPv6Address("2001:db8::1"), ipaddress.IPv6Address("2001:db8:ffff::2")
    rec = a.packed + b.packed + struct.pack("!QQIIHHB", T0 * 1000, T0 * 1000, 100, 1, 5, 3333, 6)
    r = FlowDecoder().decode_one(ipfix(template_set(2, [(256, fields)]), data_set(256, [rec])))
    assert addr(r["src_hi"][0], r["src_lo"][0]) == "2001:db8::1"
    assert addr(r["dst_hi"][0], r["dst_lo"][0]) == "2001:db8:ffff::2"
    assert (r["src_hi"][0], r["src_lo"][0]) == addr_to_halves("2001:db8::1")


def test_ipfix_variable_length_fields_are_walked_and_left_out():
    fields = [(8, 4), (12, 4), (96, 65535), (2, 4), (82, 65535), (4, 1)]
    long_name = b"x" * 300
    recs = [struct.pack("!II", v4("10.0.0.1"), v4("203.0.113.5")) + b"\x03abc"
            + struct.pack("!I", 7) + b"\xff" + struct.pack("!H", 300) + long_name + b"\x06",
            struct.pack("!II", v4("10.0.0.2"), v4("203.0.113.5")) + b"\x00"
            + struct.pack("!I", 9) + b"\x00" + b"\x11"]
    d = FlowDecoder()
    r = d.decode_one(ipfix(template_set(2, [(256, fields)]), data_set(256, recs)), EXP)
    assert r["packets"].tolist() == [7, 9] and r["proto"].tolist() == [6, 17]
    assert addr(r["src_hi"][1], r["src_lo"][1]) == "10.0.0.2"
    assert d.stats["variable_length_records"] == 2 and d.malformed == 0


def test_unknown_template_waits_then_decodes_when_the_template_arrives():
    d = FlowDecoder()
    assert len(d.decode_one(v9(data_set(256, [ONE, TWO])), EXP, now=0.0)) == 0
    assert d.stats["pending_sets"] == 1 and d.stats["records"] == 0
    r = d.decode_one(v9(V9_TEMPLATE, seq=2), EXP, now=5.0)
    assert len(r) == 2 and d.stats["late_sets"] == 1 and d.stats["pending_sets"] == 0
    # times come from the datagram that carried the data, not the template's
    assert r["first_ns"][0] == (T0 - 60) * NS
    assert d.stats["unknown_template"] == 0


def test_sets_waiting_too_long_or_too_many_count_as_unknown_template():
    d = FlowDecoder(pending_sets=3, pending_age_s=10.0)
    for i in range(5):
        d.decode_one(v9(data_set(256 + i, [ONE])), EXP, now=float(i))
    assert d.stats["unknown_template"] == 2 and d.stats["pending_sets"] == 3
    d.decode_one(v9(), EXP, now=12.5)  # the sets of t=2 (10.5 s old) go, the rest stay
    assert d.stats["unknown_template"] == 3 and d.stats["pending_sets"] == 2
    r = d.decode_one(v9(template_set(0, [(260, V4_FIELDS)])), EXP, now=13.0)
    assert len(r) == 1 and d.stats["late_sets"] == 1
    d.flush()
    assert d.stats["unknown_template"] == 4 and d.stats["pending_sets"] == 0
    assert any("template 259" in p and EXP in p for p in d.problems)


def test_pending_is_bounded_in_bytes():
    body = len(data_set(256, [ONE] * 10)) - 4
    d = FlowDecoder(pending_bytes=3 * body + 10)
    for _ in range(10):
        d.decode_one(v9(data_set(256, [ONE] * 10)), EXP, now=0.0)
    assert d.stats["pending_sets"] == 3 and d.stats["unknown_template"] == 7


def test_ipfix_template_withdrawal():
    tpl = template_set(2, [(256, [(8, 4), (12, 4), (2, 4), (4, 1)])])
    rec = struct.pack("!IIIB", v4("10.0.0.1"), v4("203.0.113.5"), 3, 6)
    d = FlowDecoder()
    assert len(d.decode_one(ipfix(tpl, data_set(256, [rec])), EXP)) == 1
    withdraw = struct.pack("!HHHH", 2, 8, 256, 0)
    assert len(d.decode_one(ipfix(withdraw, data_set(256, [rec]), seq=1), EXP)) == 0
    assert d.stats["templates_withdrawn"] == 1 and d.stats["pending_sets"] == 1
    assert d.templates(EXP, 10, 0) == {}
    # the template back: the set that waited decodes; then "withdraw all" (template id 2)
    assert len(d.decode_one(ipfix(tpl, seq=1), EXP)) == 1
    opts = ipfix_options_set(300, [(143, 4)], [(160, 8)])
    d.decode_one(ipfix(opts), EXP)
    d.decode_one(ipfix(struct.pack("!HHHH", 2, 8, 2, 0)), EXP)
    assert set(d.templates(EXP, 10, 0)) == {300}  # options templates stay
    assert d.stats["templates_withdrawn"] == 2 and d.malformed == 0


def test_template_redefined_under_the_same_id():
    d = FlowDecoder()
    d.decode_one(v9(V9_TEMPLATE), EXP)
    other = template_set(0, [(256, [(8, 4), (12, 4), (2, 4), (4, 1)])])
    rec = struct.pack("!IIIB", v4("10.0.0.7"), v4("203.0.113.5"), 5, 17)
    r = d.decode_one(v9(data_set(256, [ONE]), other, data_set(256, [rec])), EXP)
    # the first set was read with the old template, the second with the new one
    assert sorted(r["packets"].tolist()) == [5, 10] and d.stats["template_changes"] == 1


def test_ipfix_sequence_numbers_count_missing_records():
    tpl = template_set(2, [(256, [(8, 4), (12, 4), (2, 4), (4, 1)])])
    rec = struct.pack("!IIIB", v4("10.0.0.1"), v4("203.0.113.5"), 3, 6)
    d = FlowDecoder()
    d.decode_one(ipfix(tpl, data_set(256, [rec] * 3), seq=100), EXP)
    d.decode_one(ipfix(data_set(256, [rec]), seq=103), EXP)
    assert d.stats["missed_sequence"] == 0
    d.decode_one(ipfix(data_set(256, [rec]), seq=110), EXP)  # 104..109 never came
    assert d.stats["missed_sequence"] == 6


# ----------------------------------------------------------------------------- bad input
def good_datagrams() -> list[bytes]:
    return [
        v9(V9_TEMPLATE, data_set(256, [ONE, TWO])),
        ipfix(template_set(2, [(400, IPFIX_FIELDS)]),
              data_set(400, [ipfix_record(T0 * 1000, T0 * 1000)])),
        v5([("10.0.0.1", "203.0.113.5", 10, 1200, 1, 2, 40001, 3333, 0x1B, 6)]),
    ]


@pytest.mark.parametrize("datagram,reason,kept", [
    (b"", "truncated", 0),
    (b"\x00\x09\x00", "truncated", 0),  # shorter than the v9 header
    (struct.pack("!HH", 7, 1) + b"\0" * 40, "unsupported_version", 0),
    (b"GET / HTTP/1.1\r\n\r\n", "unsupported_version", 0),
    (v9(V9_TEMPLATE, data_set(256, [ONE, TWO]))[:-10], "truncated", 1),  # set cut: 1 whole record
    (v9(V9_TEMPLATE, struct.pack("!HH", 256, 2) + ONE), "bad_set_length", 0),
    (v9(V9_TEMPLATE, data_set(256, [ONE]), struct.pack("!HH", 7, 8) + b"\0" * 4),
     "bad_set_id", 1),
    (v9(template_set(0, [(12, V4_FIELDS)])), "bad_template", 0),  # template id < 256
    (v9(template_set(0, [(256, [])])), "bad_template", 0),  # no fields
    (v9(template_set(0, [(256, [(8, 0), (2, 0)])])), "bad_template", 0),  # 0-byte records
    (v9(struct.pack("!HHHH", 0, 8, 256, 20)), "truncated", 0),  # 20 fields announced, none there
    (v9(v9_options_set(300, [], [])), "bad_template", 0),
    (ipfix(data_set(256, [b"x" * 8]), length=100), "truncated", 0),
    (ipfix(length=12), "bad_length", 0),
    (ipfix(template_set(2, [(256, [(8, 4), (12, 4)])]), data_set(256, [b"\1" * 8]),
           length=16 + 16) + b"junk", "bad_length", 0),  # length excludes the data set
    (v9(template_set(0, [(256, [(8, 4), (2, 65535)])])), "bad_template", 0),  # IPFIX only
    (ipfix(struct.pack("!HHHH", 2, 8, 5, 0)), "bad_template", 0),  # withdrawal of id 5
    (v5([("10.0.0.1", "203.0.113.5", 1, 1, 1, 2, 1, 2, 0, 6)], count=2), "truncated", 1),
    (v5([], count=31), "bad_length", 0),
])
def test_bad_datagrams_are_counted_never_fatal(datagram, reason, kept):
    d = FlowDecoder()
    r = d.decode_one(datagram, EXP)
    assert len(r) == kept
    assert d.stats[reason] >= 1, d.stats
    assert d.malformed >= 1 and d.problems and EXP in d.problems[-1]
    # the next good datagram is decoded as usual
    assert sum(len(d.decode_one(g, EXP)) for g in good_datagrams()) == 4


def test_zero_length_fields_are_left_out_and_the_template_kept():
    fields = [(8, 4), (12, 4), (5, 0), (2, 4), (4, 1)]
    rec = struct.pack("!IIIB", v4("10.0.0.1"), v4("203.0.113.5"), 3, 6)
    d = FlowDecoder()
    r = d.decode_one(v9(template_set(0, [(256, fields)]), data_set(256, [rec, rec])), EXP)
    assert len(r) == 2 and r["packets"].tolist() == [3, 3]
    assert d.stats["zero_length_field"] == 1 and d.stats["bad_template"] == 0


def test_mutated_datagrams_never_raise():
    rng = random.Random(7)
    d = FlowDecoder()
    goods = good_datagrams()
    for _ in range(3000):
        g = bytearray(rng.choice(goods))
        for _ in range(rng.randint(1, 4)):
            op = rng.random()
            if op < 0.5 and g:
                g[rng.randrange(len(g))] = rng.randrange(256)
            elif op < 0.8:
                g = g[: rng.randrange(len(g) + 1)]
            else:
                g += bytes(rng.randrange(256) for _ in range(rng.randrange(8)))
        r = d.decode_one(bytes(g), rng.choice([EXP, "2001:db8::9"]))
        assert r.dtype == FLOWREC
    assert d.stats["datagrams"] == 3000 and d.malformed > 0


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300), st.sampled_from([5, 9, 10]))
def test_random_bytes_after_a_version_never_raise(tail, version):
    d = FlowDecoder()
    d.decode_one(v9(V9_TEMPLATE), EXP)
    d.decode_one(struct.pack("!H", version) + tail, EXP)
    d.flush()


# ----------------------------------------------------------------------------- judging
def rec(src, sport, dst, dport, first_s, last_s, pkts, octets, **kw) -> np.ndarray:
    r = np.zeros(1, FLOWREC)
    r["src_hi"], r["src_lo"] = addr_to_halves(src)
    r["dst_hi"], r["dst_lo"] = addr_to_halves(dst)
    r["src_port"], r["dst_port"], r["proto"] = sport, dport, kw.pop("proto", 6)
    r["first_ns"], r["last_ns"] = int(first_s * NS), int(last_s * NS)
    r["packets"], r["bytes"] = pkts, octets
    r["exporter_hi"], r["exporter_lo"] = addr_to_halves(kw.pop("exporter", EXP))
    r["version"], r["sampling"] = 10, kw.pop("sampling", 1)
    r["direction"] = kw.pop("direction", 255)
    for k, v in kw.items():
        r[k] = v
    return r


def miner(dst="198.51.100.20", dport=3333, minutes=20, slice_s=60, pkts=(40, 30),
          sizes=(150, 260), client="10.0.0.5", sport=41414, **kw) -> np.ndarray:
    """A long miner connection, cut by the exporter's active timeout into slices."""
    rows = []
    for k in range(minutes * 60 // slice_s):
        a, b = T0 + k * slice_s, T0 + (k + 1) * slice_s - 1
        jitter = 1 + 0.1 * ((k % 3) - 1)
        up, down = int(pkts[0] * jitter), int(pkts[1] * jitter)
        rows.append(rec(client, sport, dst, dport, a, b, up, up * sizes[0], end_reason=2, **kw))
        rows.append(rec(dst, dport, client, sport, a, b, down, down * sizes[1], end_reason=2,
                        **kw))
    return np.concatenate(rows)


def judge(**kw) -> FlowContactJudge:
    return FlowContactJudge(settings=FlowRecordSettings(**kw) if kw else None)


def test_active_timeout_slices_join_into_one_contact_on_a_mining_port():
    j = judge()
    assert j.update(miner(), now=0.0) == []
    (c,) = j.flush()
    assert (c.src_ip, c.src_port, c.dest_ip, c.dest_port) == ("10.0.0.5", 41414,
                                                              "198.51.100.20", 3333)
    assert c.via == ("flow-port", "flow-behaviour") and c.score >= 0.5
    assert c.first_seen == T0 * NS and c.last_seen == (T0 + 1199) * NS
    ev = c.evidence
    assert ev["exporter"] == EXP and ev["records"] == {"toserver": 20, "toclient": 20}
    assert ev["export"] == "ipfix" and ev["sampling"] == 1
    assert ev["flow"]["pkts_toserver"] == sum(int(40 * (1 + 0.1 * ((k % 3) - 1)))
                                              for k in range(20))
    assert ev["behaviour_features"]["cadence_records"] == 20
    assert ev["behaviour_features"]["cadence_cv"] < 0.2
    assert any("20 consecutive records" in r for r in c.reasons)


def test_port_alone_or_web_traffic_is_no_contact():
    j = judge()
    big = miner(sizes=(80, 1400), pkts=(300, 900))  # a download on 3333: large, one-sided, fast
    https = miner(dport=443, client="10.0.0.6")  # mining-like but on 443 to an unlisted address
    ssh = miner(dport=22, client="10.0.0.7")
    j.update(np.concatenate([big, https, ssh]), now=0.0)
    j.update(rec("10.0.0.8", 5000, "198.51.100.20", 3333, T0, T0 + 30, 20, 3000), now=0.0)
    assert j.flush() == []
    assert j.stats["below_threshold"] == 2  # big (port only) and the 30-s flow (port only)
    assert j.stats["records_kept"] == len(big) + 1  # 443 and 22 never reached Python


def test_listed_pool_address_is_a_contact_on_its_own():
    j = judge()
    j.update(np.concatenate([rec("10.0.0.5", 50000, "65.108.57.232", 3053, T0, T0 + 5, 6, 700),
                             rec("65.108.57.232", 3053, "10.0.0.5", 50000, T0, T0 + 5, 5, 900)]),
             now=0.0)
    (c,) = j.flush()
    assert c.dest_ip == "65.108.57.232" and c.src_ip == "10.0.0.5" and c.via[0] == "flow-address"
    assert c.pool == "ergo sigmanauts mining pool" and c.score >= 0.8
    assert c.evidence["flow"]["bytes_toclient"] == 900


def test_sampling_scales_the_figures():
    j = judge()
    j.update(miner(sampling=100, pkts=(8, 6)), now=0.0)
    (c,) = j.flush()
    ev = c.evidence
    assert ev["sampling"] == 100
    assert ev["flow"]["pkts_toserver"] == 100 * ev["sampled"]["pkts_toserver"]
    assert ev["flow"]["bytes_toclient"] == 100 * ev["sampled"]["bytes_toclient"]
    assert any("1:100" in r for r in c.reasons)


def test_too_thinly_sampled_flows_have_no_behaviour():
    j = judge()
    j.update(np.concatenate([rec("10.0.0.5", 41414, "198.51.100.20", 3333, T0, T0 + 1200, 2, 300,
                                 sampling=1000),
                             rec("198.51.100.20", 3333, "10.0.0.5", 41414, T0, T0 + 1200, 1, 200,
                                 sampling=1000)]), now=0.0)
    assert j.flush() == [] and j.stats["below_threshold"] == 1


def test_ingress_and_egress_records_of_the_same_packets_do_not_add_up():
    once = miner()
    twice = np.concatenate([miner(direction=0), miner(direction=1)])
    a, b = judge(), judge()
    a.update(once, 0.0)
    b.update(twice, 0.0)
    (ca,), (cb,) = a.flush(), b.flush()
    assert ca.evidence["flow"] == cb.evidence["flow"]


def test_biflow_reverse_counters_feed_the_other_direction():
    j = judge()
    rows = miner()
    fwd = rows[rows["src_port"] == 41414].copy()
    back = rows[rows["src_port"] == 3333]
    fwd["rev_packets"], fwd["rev_bytes"] = back["packets"], back["bytes"]
    j.update(fwd, 0.0)
    (c,) = j.flush()
    assert c.evidence["flow"]["pkts_toclient"] == int(back["packets"].sum())


def test_contacts_come_out_when_flows_go_quiet():
    j = judge(idle_s=300.0, end_grace_s=15.0)
    j.update(miner(), now=1000.0)
    j.update(miner(client="10.0.0.9")[:-2], now=1000.0)  # this one ends with a FIN:
    j.update(rec("10.0.0.9", 41414, "198.51.100.20", 3333, T0 + 1140, T0 + 1199, 40, 6000,
                 tcp_flags=0x11), now=1000.0)
    assert j.expire(1010.0) == []
    (c,) = j.expire(1020.0)
    assert c.src_ip == "10.0.0.9"
    assert j.expire(1200.0) == []  # 200 s quiet: not yet
    (c,) = j.expire(1301.0)
    assert c.src_ip == "10.0.0.5" and j.stats["flows_open"] == 0


def test_gaps_between_records_stretch_the_idle_time():
    """An exporter with a 10-minute active timeout: the flow is not cut at 300 s."""
    j = judge(idle_s=300.0)
    rows = miner(minutes=30, slice_s=600)
    j.update(rows[:2], now=0.0)
    j.update(rows[2:4], now=600.0)
    assert j.expire(1000.0) == []  # 400 s quiet, but records came 600 s apart
    j.update(rows[4:], now=1200.0)
    (c,) = j.expire(2401.0)
    assert c.evidence["records"] == {"toserver": 3, "toclient": 3}


def test_full_table_decides_the_least_recently_updated_first():
    j = judge(max_flows=8)
    out = []
    for i in range(12):
        out += j.update(rec(f"10.0.1.{i}", 50000, "65.108.57.232", 3053, T0, T0 + 1, 2, 100),
                        now=float(i))
    assert j.stats["evicted"] >= 2 and out
    assert out[0].src_ip == "10.0.1.0"


def test_known_pool_addresses_learnt_elsewhere():
    for extra in (0, 30):  # a few addresses are compared one by one, many through np.isin
        j = judge()
        j.set_known_pool_addresses(["203.0.113.77", "not an address"]
                                   + [f"198.18.0.{i}" for i in range(extra)])
        j.update(np.concatenate([
            rec("10.0.0.5", 50000, "203.0.113.77", 8443, T0, T0 + 2, 3, 300),
            rec("10.0.0.5", 50001, "203.0.114.77", 8443, T0, T0 + 2, 3, 300),  # same low byte
        ]), now=0.0)
        (c,) = j.flush()
        assert c.via == ("flow-address",) and c.dest_ip == "203.0.113.77"
        assert j.stats["records_kept"] == 1


def test_settings_are_checked():
    with pytest.raises(ValueError, match="port_rare"):
        FlowRecordSettings(port_rare=1.5)
    with pytest.raises(ValueError, match="unknown flow-record setting"):
        FlowRecordSettings.from_mapping({"nope": 1})
    s = FlowRecordSettings.from_mapping({"idle_s": "120", "duration_ramp_s": "30 300"})
    assert s.idle_s == 120.0 and s.duration_ramp_s == (30.0, 300.0)


def test_contacts_are_accepted_by_the_store(tmp_path):
    from poolwatch.store.db import Store

    j = FlowContactJudge(contact_settings=ContactSettings())
    j.update(np.concatenate([miner(), rec("10.0.0.5", 50000, "65.108.57.232", 3053, T0, T0 + 5,
                                          6, 700)]), 0.0)
    contacts = j.flush()
    assert len(contacts) == 2
    store = Store.open(f"sqlite:///{tmp_path / 'flows.db'}")
    res = store.ingest([c.as_dict() for c in contacts], idempotency_key="flows-1",
                       source="sensor:test")
    assert res.inserted == 2
    again = store.ingest([c.as_dict() for c in contacts], source="sensor:test")
    assert again.duplicates == 2  # the same contacts are the same detections


# ----------------------------------------------------------------------------- collector
def test_collector_over_loopback_udp():
    from poolwatch_sensor.collector import FlowCollector

    with FlowCollector("127.0.0.1", 0, settings=FlowRecordSettings(end_grace_s=0.0,
                                                                   expire_interval_s=0.0)) as c:
        tx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        tpl = template_set(2, [(256, [(8, 4), (12, 4), (152, 8), (153, 8), (2, 4), (1, 4),
                                      (7, 2), (11, 2), (4, 1), (6, 1)])])
        rows = []
        for src, sport, dst, dport in (("10.0.0.5", 50000, "65.108.57.232", 3053),
                                       ("65.108.57.232", 3053, "10.0.0.5", 50000)):
            rows.append(struct.pack("!IIQQIIHHBB", v4(src), v4(dst), T0 * 1000,
                                    (T0 + 5) * 1000, 6, 700, sport, dport, 6, 0x11))
        tx.sendto(ipfix(data_set(256, rows), seq=0), c.address)  # before its template
        tx.sendto(b"\x00\x0a\x00\x05" + b"garbage" * 4, c.address)  # length 5
        tx.sendto(ipfix(tpl, seq=2), c.address)
        found = []
        deadline = time.monotonic() + 5
        while not found and time.monotonic() < deadline:
            found += c.poll(0.1)
        tx.close()
        (contact,) = found
        assert contact.dest_ip == "65.108.57.232" and contact.via[0] == "flow-address"
        st = c.stats
        assert st["datagrams"] == 3 and st["records"] == 2 and st["late_sets"] == 1
        assert st["bad_length"] == 1 and st["malformed"] == 1
        assert st["kernel_drops"] == 0 and st["rcvbuf_bytes"] > 0
        assert c.flush() == []
