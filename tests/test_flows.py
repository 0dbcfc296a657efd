"""Flow aggregation: against the generator's oracles, the plain-Python twin, and itself."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from poolwatch.flows import FlowSettings, FlowTable, canonical_order, merge_flows
from poolwatch.kernels._reference import aggregate_reference
from poolwatch.records import FLOW, PACKET, EndReason, PacketBatch, addr_to_halves
from poolwatch.scan import iter_batches

from .conftest import flow_rows, scan_frame

NS = 1_000_000_000


def test_sample_flows_match_the_generator_oracle(sample):
    expected = json.loads(sample.with_suffix(".expected.json").read_text())
    frame, summary = scan_frame([sample])
    want = sorted(
        (f["proto"], f["src_ip"], f["src_port"], f["dest_ip"], f["dest_port"], f["vlan"],
         f["inner_vlan"], f["pkts_toserver"], f["pkts_toclient"], f["bytes_toserver"],
         f["bytes_toclient"]) for f in expected["flows"])
    assert flow_rows(frame) == want
    assert summary.packets == expected["packets"]
    assert summary.weirds.counts.get("fragment", 0) == expected.get("fragments_nonfirst", 0)
    starts = sorted(frame["first_seen"].astype("int64"))
    assert starts == sorted(f["first_ts_ns"] for f in expected["flows"])


def _packets(rows) -> np.ndarray:
    """PACKET rows from (ts_s, src, sport, dst, dport, proto, flags, ip_len)."""
    pk = np.zeros(len(rows), PACKET)
    for i, (ts, src, sport, dst, dport, proto, flags, ip_len) in enumerate(rows):
        pk[i]["ts_ns"] = int(ts * NS)
        pk[i]["src_hi"], pk[i]["src_lo"] = addr_to_halves(src)
        pk[i]["dst_hi"], pk[i]["dst_lo"] = addr_to_halves(dst)
        pk[i]["sport"], pk[i]["dport"], pk[i]["proto"] = sport, dport, proto
        pk[i]["tcp_flags"], pk[i]["ip_len"] = flags, ip_len
    return pk


def _run(packets, settings=None, batch=1 << 16):
    table = FlowTable(settings)
    parts = []
    for i in range(0, len(packets), batch):
        parts += list(table.update(PacketBatch("mem", np.zeros(0, np.uint8), packets[i:i + batch])))
    parts.append(table.flush())
    flows = np.concatenate(parts)
    return flows[canonical_order(flows)], table


def _sorted(flows):
    return flows[canonical_order(flows)]


def test_direction_first_sender_is_src_unless_synack():
    pk = _packets([
        (0.0, "10.0.0.2", 3333, "10.0.0.1", 50000, 6, 0x12, 60),  # SYN-ACK seen first
        (0.1, "10.0.0.1", 50000, "10.0.0.2", 3333, 6, 0x10, 52),
        (0.2, "10.0.0.9", 53, "10.0.0.1", 4000, 17, 0, 80),  # UDP: first sender is src
    ])
    flows, _ = _run(pk)
    tcp = flows[flows["proto"] == 6][0]
    assert (tcp["src_port"], tcp["dest_port"]) == (50000, 3333)
    assert (tcp["pkts_toserver"], tcp["bytes_toserver"], tcp["bytes_toclient"]) == (1, 52, 60)
    assert (tcp["tcp_flags_toclient"], tcp["tcp_flags_toserver"]) == (0x12, 0x10)
    udp = flows[flows["proto"] == 17][0]
    assert udp["src_port"] == 53


def test_idle_and_active_timeouts_split_flows():
    s = FlowSettings(idle_timeout_s=5, active_timeout_s=20, sweep_interval_s=1)
    rows = [(t, "10.0.0.1", 1000, "10.0.0.2", 80, 6, 0x10, 40) for t in (0, 1, 2)]
    rows += [(t, "10.0.0.1", 1000, "10.0.0.2", 80, 6, 0x10, 40) for t in range(10, 35, 2)]
    flows, _ = _run(_packets(rows), s)
    reasons = [EndReason(r) for r in flows["end_reason"]]
    assert reasons == [EndReason.IDLE, EndReason.ACTIVE, EndReason.EOF]
    assert flows["pkts_toserver"].tolist() == [3, 11, 2]
    assert flows["first_ts_ns"].tolist() == [0, 10 * NS, 32 * NS]


def test_matches_plain_python_twin_and_batch_size_does_not_matter():
    rng = np.random.default_rng(7)
    n = 3000
    hosts = [f"10.0.{i // 250}.{i % 250 + 1}" for i in range(40)] + [f"2001:db8::{i:x}" for i in range(1, 9)]
    rows = []
    t = 0.0
    for _ in range(n):
        t += float(rng.exponential(0.5))
        a, b = rng.choice(len(hosts), 2, replace=False)
        v6 = hosts[a].count(":") != hosts[b].count(":")
        a, b = (a, b) if not v6 else (a % 40, b % 40)
        proto = int(rng.choice([6, 17, 1]))
        rows.append((t, hosts[a], int(rng.integers(1, 4)), hosts[b], int(rng.integers(1, 4)),
                     proto, int(rng.integers(0, 64)), int(rng.integers(20, 1500))))
    pk = _packets(rows)
    s = FlowSettings(idle_timeout_s=30, active_timeout_s=300, sweep_interval_s=7)
    want = _sorted(aggregate_reference(pk, 30 * NS, 300 * NS, 7 * NS))
    for batch in (1, 13, 1000, 1 << 16):
        got, _ = _run(pk, s, batch)
        assert np.array_equal(got, want), f"batch size {batch}"
    assert set(want["end_reason"]) >= {EndReason.IDLE, EndReason.EOF}


def test_full_table_evicts_oldest_and_conserves_packets():
    rows = [(i * 0.001, "10.0.0.1", 1024 + i, "10.0.0.2", 80, 6, 2, 60) for i in range(1000)]
    flows, table = _run(_packets(rows), FlowSettings(max_flows=64, initial_flows=16))
    assert len(flows) == 1000 and table.evicted > 0
    assert int(flows["pkts_toserver"].sum()) == 1000
    assert (flows["end_reason"] == EndReason.EVICTED).sum() == table.evicted
    assert len(table.flows) == 64  # never grew past the limit


def test_memory_does_not_grow_with_input(tmp_path):
    """Ten times the packets of short flows: the table stays at the same size."""
    sizes = []
    for copies in (1, 10):
        rows = [(i * 1.0, "10.0.0.1", 1024 + i % 60000, "10.0.0.2", 80, 6, 2, 60)
                for i in range(2000 * copies)]
        _, table = _run(_packets(rows), FlowSettings(idle_timeout_s=5, sweep_interval_s=1))
        sizes.append(len(table.flows))
    assert sizes[0] == sizes[1]


flow_st = st.lists(
    st.tuples(st.floats(0, 50, allow_nan=False), st.integers(1, 3), st.integers(1, 3),
              st.integers(1, 3), st.integers(1, 3), st.sampled_from([6, 17]),
              st.integers(0, 63), st.integers(20, 1500)),
    min_size=1, max_size=80)


@settings(max_examples=60, deadline=None)
@given(flow_st, st.data())
def test_merge_is_associative_and_equals_one_pass(rows, data):
    # Distinct, increasing times: a split record cannot tell which of two packets with the
    # same timestamp came first, so only then is one pass the reference.
    rows = [(i * 0.25 + t / 1000, *rest) for i, (t, *rest) in enumerate(sorted(rows))]
    pk = _packets([(t, f"10.0.0.{a}", p, f"10.0.0.{b}", q, pr, fl, ln)
                   for t, a, p, b, q, pr, fl, ln in rows if (a, p) != (b, q)])
    if len(pk) < 3:
        return
    big = FlowSettings(idle_timeout_s=1000, active_timeout_s=10000)
    one, _ = _run(pk, big)
    i, j = sorted(data.draw(st.lists(st.integers(1, len(pk) - 1), min_size=2, max_size=2)))
    a, b, c = (_run(part, big)[0] for part in (pk[:i], pk[i:j], pk[j:]))
    left = merge_flows(merge_flows(a, b, idle_timeout_s=1000), c, idle_timeout_s=1000)
    right = merge_flows(a, merge_flows(b, c, idle_timeout_s=1000), idle_timeout_s=1000)
    shuffled = merge_flows(c, a, b, idle_timeout_s=1000)
    key = [k for k in FLOW.names if k != "end_reason"]
    assert np.array_equal(left[key], right[key])
    assert np.array_equal(left[key], shuffled[key])
    assert np.array_equal(left[key], _sorted(one)[key])


def test_files_scanned_apart_merge_to_one_pass(tmp_path):
    from poolwatch.readers.pcapfile import read_capture  # noqa: F401 - the path under test
    from .conftest import PCAPS

    cap = PCAPS / "stratum_v1_plain_3333.pcap"
    data = cap.read_bytes()
    from poolwatch.kernels._reference import walk_pcap_reference

    recs = walk_pcap_reference(data)
    half = recs[len(recs) // 2][0] - 16
    first, second = tmp_path / "a.pcap", tmp_path / "b.pcap"
    first.write_bytes(data[:half])
    second.write_bytes(data[:24] + data[half:])
    apart = [np.concatenate(list(_scan([p]))) for p in (first, second)]
    whole = np.concatenate(list(_scan([cap])))
    key = [k for k in FLOW.names if k != "end_reason"]
    assert np.array_equal(merge_flows(*apart)[key], _sorted(whole)[key])


def _scan(paths):
    table = FlowTable()
    for batch in iter_batches(paths):
        yield from table.update(batch)
    yield table.flush()


@pytest.mark.parametrize("batch_packets", [1, 5, 1 << 16])
def test_reader_batch_size_does_not_change_flows(sample, batch_packets):
    table = FlowTable()
    parts = []
    for batch in iter_batches([sample], batch_packets=batch_packets):
        parts += list(table.update(batch))
    parts.append(table.flush())
    flows = np.concatenate(parts)
    ref, _ = scan_frame([sample])
    assert len(flows) == len(ref)
