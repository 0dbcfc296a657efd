"""Text kernels against the standard library's own formatting."""

from __future__ import annotations

import ipaddress

import numpy as np
from hypothesis import given, settings, strategies as st

from poolwatch.flows import addresses_text
from poolwatch.kernels.text import ipv4_text, ipv6_text, iso8601_text
from poolwatch.records import addr_to_halves


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(0, 2**32 - 1), min_size=1, max_size=50))
def test_ipv4_text_matches_ipaddress(values):
    got = ipv4_text(np.array(values, np.uint64))
    assert list(got) == [str(ipaddress.IPv4Address(v)) for v in values]


# Groups that are often zero, so that "::" placement (longest run, first on ties) is exercised.
group = st.one_of(st.just(0), st.integers(0, 0xFFFF))


@settings(max_examples=300, deadline=None)
@given(st.lists(st.lists(group, min_size=8, max_size=8), min_size=1, max_size=30))
def test_ipv6_text_matches_rfc5952_as_ipaddress_writes_it(groups):
    values = [sum(g << (16 * (7 - j)) for j, g in enumerate(gs)) for gs in groups]
    values = [v for v in values if ipaddress.IPv6Address(v).ipv4_mapped is None]
    if not values:
        return
    hi = np.array([v >> 64 for v in values], np.uint64)
    lo = np.array([v & (2**64 - 1) for v in values], np.uint64)
    assert list(ipv6_text(hi, lo)) == [ipaddress.IPv6Address(v).compressed for v in values]


def test_addresses_text_mixes_families():
    addrs = ["10.0.0.1", "2001:db8::1", "255.255.255.255", "::", "0.0.0.0"]
    halves = np.array([addr_to_halves(a) for a in addrs], np.uint64)
    assert list(addresses_text(halves[:, 0], halves[:, 1])) == addrs


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(-(2**62), 2**62), min_size=1, max_size=50))
def test_iso8601_matches_numpy(values):
    ts = np.array(values, np.int64)
    want = np.datetime_as_string(ts.astype("datetime64[ns]"), unit="ns", timezone="UTC")
    assert list(iso8601_text(ts)) == list(want)
