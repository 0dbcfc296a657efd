"""Every engine over every sample capture gives the same flows.

Column-by-column packet comparisons, edge cases and the documented differences are in
tests/test_reference_engines.py; this test is the user-level promise: whichever --engine an
analyst picks, the flow records are the same.
"""

from __future__ import annotations

import shutil

import pytest

from .conftest import SAMPLES, scan_frame

COLUMNS = ["community_id", "proto", "src_ip", "src_port", "dest_ip", "dest_port", "vlan",
           "inner_vlan", "first_seen", "last_seen", "pkts_toserver", "pkts_toclient",
           "bytes_toserver", "bytes_toclient", "tcp_flags_toserver", "tcp_flags_toclient",
           "end_reason"]
needs_tshark = pytest.mark.skipif(shutil.which("tshark") is None,
                                  reason="tshark (Wireshark) is not installed: apt-get install tshark")


@pytest.fixture(scope="module")
def fast_flows():
    return {s: scan_frame([s], engine="fast") for s in SAMPLES}


@pytest.mark.parametrize("engine", ["dpkt", "scapy",
                                    pytest.param("pyshark", marks=[pytest.mark.tshark, needs_tshark])])
def test_engine_gives_the_fast_engines_flows(engine, sample, fast_flows):
    want, want_summary = fast_flows[sample]
    got, summary = scan_frame([sample], engine=engine)
    key = ["first_seen", "src_ip", "src_port", "dest_ip", "dest_port", "proto", "vlan"]
    want = want[COLUMNS].sort_values(key).reset_index(drop=True)
    got = got[COLUMNS].sort_values(key).reset_index(drop=True)
    assert len(want) > 0
    assert got.to_dict("records") == want.to_dict("records")
    assert summary.packets == want_summary.packets
    assert summary.weirds.counts == want_summary.weirds.counts
    assert summary.not_ip == want_summary.not_ip
