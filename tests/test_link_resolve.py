"""The resolver: "who held this IP (and port) at this time?".

The kernel (``kernels.interval_match``) against its plain-Python twin and against a
brute-force oracle written here from the rules; then the rules one by one through the
``Resolver`` API: longest prefix in time, exclusive ends, ambiguity, CGNAT, identities,
confidence numbers and reasons, empty inputs.
"""

from __future__ import annotations

import ipaddress
import math

import numpy as np
import pytest

from poolwatch.kernels import _reference_interval_match as ref
from poolwatch.kernels import interval_match as km
from poolwatch.link.model import Assignment, Origin, PortBlock, Subscriber
from poolwatch.link.resolve import (AssignmentIndex, CandidatePairs, Link, LinkSettings,
                                    PortBlockIndex, Resolver)
from poolwatch.link.times import parse_time
from poolwatch.records import addr_to_halves

T = parse_time("2026-11-24T10:00:00Z")
HOUR = 3600.0
DAY = 86400.0


# ---------------------------------------------------------------------------------------
# Builders
# ---------------------------------------------------------------------------------------
def sub(sid, entity=None, mac=None, **extra) -> Subscriber:
    return Subscriber(sid, entity or f"E-{sid}", f"Entity {sid}", "residential", None, None,
                      None, None, None, mac, dict(extra), Origin("registry.csv", 2))


def asg(net, start, end, kind, ident, source="radius", line=1, inferred=False) -> Assignment:
    return Assignment(ipaddress.ip_network(net), start, end, kind, ident, source,
                      Origin(f"{source}.log", line), inferred)


def blk(public, lo, hi, private, start, end, line=1, inferred=False) -> PortBlock:
    return PortBlock(ipaddress.ip_address(public), lo, hi, ipaddress.ip_address(private),
                     start, end, "cgnat-csv", Origin("cgnat.csv", line), inferred)


def resolver(subs, assignments, blocks=None, settings=None) -> Resolver:
    return Resolver(subs, AssignmentIndex.from_rows(assignments),
                    PortBlockIndex.from_rows(blocks) if blocks is not None else None, settings)


def one(r: Resolver, ip: str, ts: float, port: int | None = None) -> Link:
    (link,) = r.resolve([ip], [port], [ts])
    return link


# ---------------------------------------------------------------------------------------
# Kernel against the twin and a brute-force oracle
# ---------------------------------------------------------------------------------------
V4_NETS = ["10.0.0.0", "10.0.1.0", "192.0.2.0", "100.64.0.0"]
V6_NETS = ["2001:db8::", "2001:db8:0:100::", "2001:db8:1::"]


def random_world(rng: np.random.Generator):
    """Small random assignments, port blocks and observations that collide often."""
    def v4(base, span=16):
        value = int(ipaddress.IPv4Address(base)) + int(rng.integers(span))
        return str(ipaddress.IPv4Address(value))

    def v6(base):
        return str(ipaddress.IPv6Address(int(ipaddress.IPv6Address(base))
                                         + (int(rng.integers(4)) << 64) + int(rng.integers(4))))

    def times():
        start = float(rng.integers(0, 20))
        r = rng.random()
        end = math.inf if r < 0.2 else start if r < 0.25 else start + float(rng.integers(1, 12))
        return start, end

    rows = []
    for _ in range(int(rng.integers(0, 40))):
        if rng.random() < 0.6:
            addr = v4(V4_NETS[rng.integers(len(V4_NETS))])
            plen = int(rng.choice([24, 28, 30, 32]))
        else:
            addr = v6(V6_NETS[rng.integers(len(V6_NETS))])
            plen = int(rng.choice([48, 56, 64, 127, 128]))
        net = ipaddress.ip_network(f"{addr}/{plen}", strict=False)
        start, end = times()
        rows.append(Assignment(net, start, end, "user", f"u{rng.integers(6)}", "radius",
                               Origin("r", len(rows) + 1), bool(rng.random() < 0.2)))
    blocks = []
    for _ in range(int(rng.integers(0, 10))):
        lo = int(rng.choice([1000, 2000, 3000]))
        hi = lo + int(rng.choice([499, 999, 1999]))
        start, end = times()
        public = v4("192.0.2.0", 4) if rng.random() < 0.8 else v6("2001:db8:1::")
        blocks.append(PortBlock(ipaddress.ip_address(public), lo, hi,
                                ipaddress.ip_address(v4("100.64.0.0")), start, end, "c",
                                Origin("c", len(blocks) + 1)))
    n_obs = int(rng.integers(0, 30))
    obs = []
    for _ in range(n_obs):
        r = rng.random()
        ip = (v4(V4_NETS[rng.integers(len(V4_NETS))]) if r < 0.6
              else v6(V6_NETS[rng.integers(len(V6_NETS))]) if r < 0.85 else "198.51.100.1")
        obs.append((ip, int(rng.integers(900, 4200)), float(rng.integers(-1, 24))))
    return rows, blocks, obs


def oracle(rows, blocks, obs):
    """The rules, written out with ipaddress: set of (obs, assignment row, block row)."""
    def lpm(addr, ts):
        hits = [(r, a.network.prefixlen) for r, a in enumerate(rows)
                if a.network.version == addr.version and addr in a.network
                and a.start <= ts < a.end]
        best = max((p for _, p in hits), default=None)
        return [r for r, p in hits if p == best]

    out = set()
    for i, (ip, port, ts) in enumerate(obs):
        addr = ipaddress.ip_address(ip)
        mine = [b for b, blk_ in enumerate(blocks) if blk_.public_ip == addr]
        if mine:
            for b in mine:
                bb = blocks[b]
                if bb.port_low <= port <= bb.port_high and bb.start <= ts < bb.end:
                    out |= {(i, r, b) for r in lpm(bb.private_ip, ts)}
        else:
            out |= {(i, r, -1) for r in lpm(addr, ts)}
    return out


def obs_arrays(obs):
    halves = [addr_to_halves(ip) for ip, _, _ in obs]
    return (np.array([h for h, _ in halves], np.uint64),
            np.array([lo for _, lo in halves], np.uint64),
            np.array([p for _, p, _ in obs], np.int64),
            np.array([t for _, _, t in obs], np.float64))


@pytest.mark.parametrize("seed", range(60))
def test_kernel_matches_twin_and_oracle(seed):
    rng = np.random.default_rng(seed)
    rows, blocks, obs = random_world(rng)
    # long_seconds decides which rows take the kernel's "long" list: vary it.
    aidx = AssignmentIndex.from_rows(rows, long_seconds=float(rng.choice([0, 3, 6, DAY])))
    pidx = PortBlockIndex.from_rows(blocks)
    hi, lo, port, ts = obs_arrays(obs)
    perm = rng.permutation(len(obs))  # observations in any order, named by id
    args = (*aidx.kernel_args(), *pidx.kernel_args(), pidx.s_priv_hi, pidx.s_priv_lo,
            hi[perm], lo[perm], port[perm], ts[perm], perm.astype(np.int64))
    kernel = km.resolve_pairs(*args)
    twin = ref.resolve_pairs(*args)
    for k, t in zip(kernel, twin):
        assert k.tolist() == t.tolist()
    assert kernel[0].tolist() == sorted(kernel[0].tolist())
    assert set(zip(*(a.tolist() for a in kernel))) == oracle(rows, blocks, obs)
    # In order (no permutation) gives the same pairs.
    in_order = km.resolve_pairs(*args[:-5], hi, lo, port, ts, np.arange(len(obs)))
    assert [a.tolist() for a in in_order] == [a.tolist() for a in kernel]
    # The direct match and the block lookup alone.
    direct = km.lpm_pairs(*aidx.kernel_args(), hi, lo, ts)
    assert [a.tolist() for a in direct] == [a.tolist() for a in
                                            ref.lpm_pairs(*aidx.kernel_args(), hi, lo, ts)]
    bk = km.block_pairs(*pidx.kernel_args(), hi, lo, port, ts)
    bt = ref.block_pairs(*pidx.kernel_args(), hi, lo, port, ts)
    assert [a.tolist() for a in bk] == [a.tolist() for a in bt]


@pytest.mark.parametrize("seed", range(10))
def test_index_building_kernels_match_twin(seed):
    rng = np.random.default_rng(100 + seed)
    n = int(rng.integers(0, 300))
    hi = rng.choice(np.array([0, 0x20010DB800000000, 0x20010DB800000001], np.uint64), n)
    lo = rng.integers(0, 1 << 62, n, dtype=np.int64).astype(np.uint64) >> np.uint64(
        int(rng.integers(50, 62)))
    lo |= np.uint64(0xFFFF00000000)
    plen = rng.choice(np.array([0, 48, 64, 96, 120, 126, 128], np.uint8), n)
    start = rng.integers(0, 10, n).astype(np.float64)
    ids_k, ids_t = np.empty(n, np.int64), np.empty(n, np.int64)
    uk = km.prefix_ids(hi, lo, plen, ids_k)
    ut = ref.prefix_ids(hi, lo, plen, ids_t)
    assert ids_k.tolist() == ids_t.tolist()
    assert [a.tolist() for a in uk] == [a.tolist() for a in ut]
    rank = rng.permutation(len(uk[0])).astype(np.int64)
    ok, ot = np.empty(n, np.int64), np.empty(n, np.int64)
    assert km.group_rows(ids_k, rank, start, ok).tolist() == \
        ref.group_rows(ids_t, rank, start, ot).tolist()
    assert ok.tolist() == ot.tolist()
    off = np.unique(np.concatenate(([0, n], rng.integers(0, n + 1, 5)))).astype(np.int64)
    values = rng.random(n)
    mk, mt = np.empty(n), np.empty(n)
    km.run_max(off, values, mk)
    ref.run_max(off, values, mt)
    assert mk.tolist() == mt.tolist()


def test_many_observations_sorted_path_gives_the_same_pairs():
    """From _SORT_FROM observations on, resolve_arrays sorts them by address first."""
    rng = np.random.default_rng(5)
    rows, blocks, _ = random_world(rng)
    rows += [asg(f"10.0.0.{k}/32", 0, 10, "user", f"x{k}") for k in range(16)]
    r = Resolver([], AssignmentIndex.from_rows(rows), PortBlockIndex.from_rows(blocks))
    obs = [(f"10.0.0.{rng.integers(16)}", int(rng.integers(900, 4200)), float(rng.integers(0, 24)))
           for _ in range(6000)]
    hi, lo, port, ts = obs_arrays(obs)
    big = r.resolve_arrays(hi, lo, port, ts)
    parts = [r.resolve_arrays(hi[k:k + 1000], lo[k:k + 1000], port[k:k + 1000], ts[k:k + 1000])
             for k in range(0, 6000, 1000)]
    assert big.obs.tolist() == [o + k * 1000 for k, p in enumerate(parts) for o in p.obs.tolist()]
    assert big.assignment.tolist() == [a for p in parts for a in p.assignment.tolist()]
    assert set(zip(big.obs.tolist(), big.assignment.tolist(), big.via_block.tolist())) == \
        oracle(rows, blocks, obs)


def test_busy_address_with_an_open_row():
    """An open static row and 1000 sessions on one /32: every session still found (the
    open row sits in the long list, so the short walk stays short)."""
    starts = T + np.arange(1000) * 600.0
    rows = [asg("192.0.2.1/32", T - DAY, math.inf, "subscriber", "S-1", "static")]
    rows += [asg("192.0.2.1/32", float(s), float(s) + 500, "user", f"u{k % 7}")
             for k, s in enumerate(starts)]
    rows.append(asg("192.0.2.1/32", T + 100 * 600.0, T + 101 * 600.0 + 30 * DAY, "user", "long"))
    r = Resolver([], AssignmentIndex.from_rows(rows))
    obs = [("192.0.2.1", 0, float(t)) for t in np.concatenate([starts[::10] + 499,
                                                                 starts[::10] + 550])]
    hi, lo, port, ts = obs_arrays(obs)
    pairs = r.resolve_arrays(hi, lo, port, ts)
    assert set(zip(*(a.tolist() for a in pairs))) == oracle(rows, [], obs)
    assert pairs.assignment[pairs.obs == 0].tolist() == [0, 1]  # static, session 0


# ---------------------------------------------------------------------------------------
# Longest prefix, in time
# ---------------------------------------------------------------------------------------
STATIC = asg("198.51.100.0/24", T - 365 * DAY, math.inf, "subscriber", "S-BLOCK", "static")
RADIUS = asg("198.51.100.7/32", T - HOUR, T + HOUR, "user", "alice", "radius", line=7)
SUBS = [sub("S-BLOCK"), sub("S-ALICE", username="Alice")]


def test_longest_prefix_wins_over_a_static_block():
    r = resolver(SUBS, [STATIC, RADIUS])
    link = one(r, "198.51.100.7", T)
    assert link.status == "linked"
    assert [c.subscriber_id for c in link.candidates] == ["S-ALICE"]
    assert link.candidates[0].network == "198.51.100.7/32"
    assert link.candidates[0].identity_kind == "user"
    assert link.candidates[0].origin == Origin("radius.log", 7)
    # Another host of the block, and the same host outside the session: the /24.
    assert one(r, "198.51.100.8", T).candidates[0].subscriber_id == "S-BLOCK"
    assert one(r, "198.51.100.7", T + 2 * HOUR).candidates[0].subscriber_id == "S-BLOCK"


def test_delegated_ipv6_64_wins_over_48():
    rows = [asg("2001:db8:aa::/48", T - DAY, math.inf, "subscriber", "S-48", "static"),
            asg("2001:db8:aa:5::/64", T - DAY, T + DAY, "mac", "02:00:00:00:00:64", "dhcp-kea")]
    r = resolver([sub("S-48"), sub("S-64", mac="02:00:00:00:00:64")], rows)
    assert one(r, "2001:db8:aa:5::1234", T).candidates[0].subscriber_id == "S-64"
    assert one(r, "2001:db8:aa:6::1", T).candidates[0].subscriber_id == "S-48"
    assert one(r, "2001:db8:ab::1", T).status == "unlinked"
    assert one(r, "2001:db8:aa:5::1234", T).candidates[0].network == "2001:db8:aa:5::/64"


def test_interval_end_is_exclusive_to_the_second():
    r = resolver(SUBS, [RADIUS])
    assert one(r, "198.51.100.7", T - HOUR).status == "linked"  # start is inside
    assert one(r, "198.51.100.7", T + HOUR - 1).status == "linked"
    assert one(r, "198.51.100.7", T + HOUR).status == "unlinked"  # end is not
    assert one(r, "198.51.100.7", T - HOUR - 1).status == "unlinked"


def test_open_interval_and_handover_between_users():
    rows = [asg("192.0.2.10/32", T - 2 * HOUR, T, "user", "alice"),
            asg("192.0.2.10/32", T, math.inf, "user", "bob")]
    r = resolver([sub("S-A", username="alice"), sub("S-B", username="bob")], rows)
    links = r.resolve(["192.0.2.10"] * 3, [None] * 3, [T - 1, T, T + 400 * DAY])
    assert [link.candidates[0].subscriber_id for link in links] == ["S-A", "S-B", "S-B"]
    assert all(link.status == "linked" for link in links)


def test_ambiguity_keeps_every_candidate():
    rows = [asg("192.0.2.10/32", T - HOUR, T + HOUR, "user", "alice"),
            asg("192.0.2.10/32", T - 2 * HOUR, T + 2 * HOUR, "user", "bob"),
            asg("192.0.2.0/24", T - DAY, math.inf, "subscriber", "S-C", "static")]
    r = resolver([sub("S-A", username="alice"), sub("S-B", username="bob"), sub("S-C")], rows)
    link = one(r, "192.0.2.10", T)
    assert link.status == "ambiguous"
    assert sorted(c.subscriber_id for c in link.candidates) == ["S-A", "S-B"]  # not the /24
    assert link.confidence == pytest.approx(0.5)
    assert all(c.confidence == pytest.approx(0.5) for c in link.candidates)
    assert any(x.startswith("ambiguous: 2 different subscribers held 192.0.2.10 at "
                            "2026-11-24T10:00:00Z") for x in link.reasons)
    assert set(link.subscriber_ids) == {"S-A", "S-B"}


def test_unlinked_says_what_was_looked_for():
    r = resolver(SUBS, [STATIC])
    link = one(r, "198.51.100.9", T - 366 * DAY)
    assert link.status == "unlinked" and link.candidates == () and link.confidence == 0.0
    assert link.reasons == ("no assignment covers 198.51.100.9 at 2025-11-23T10:00:00Z",)
    link = one(r, "203.0.113.1", T)
    assert link.reasons == ("no assignment covers 203.0.113.1 at 2026-11-24T10:00:00Z",)


# ---------------------------------------------------------------------------------------
# CGNAT
# ---------------------------------------------------------------------------------------
CG_BLOCKS = [blk("203.0.113.7", 2048, 3071, "100.64.0.5", T - DAY, T + DAY, line=3),
             blk("203.0.113.7", 3072, 4095, "100.64.0.6", T - DAY, T + DAY, line=4)]
CG_ROWS = [asg("100.64.0.5/32", T - 2 * HOUR, T + 2 * HOUR, "user", "carol"),
           asg("100.64.0.0/24", T - DAY, math.inf, "subscriber", "S-POOL", "static"),
           asg("203.0.113.0/24", T - DAY, math.inf, "subscriber", "S-CARRIER", "static")]
CG_SUBS = [sub("S-CAROL", username="carol"), sub("S-POOL"), sub("S-CARRIER")]


def test_cgnat_translates_then_longest_prefix():
    r = resolver(CG_SUBS, CG_ROWS, CG_BLOCKS)
    link = one(r, "203.0.113.7", T, port=2500)
    assert link.status == "linked"
    (c,) = link.candidates
    assert c.subscriber_id == "S-CAROL" and c.network == "100.64.0.5/32"
    assert c.via_cgnat == "100.64.0.5" and c.cgnat_origin == Origin("cgnat.csv", 3)
    assert c.port_block_index == 0
    assert link.confidence == pytest.approx(0.95)
    assert "through CGNAT block 203.0.113.7:2048-3071 → 100.64.0.5" in link.reasons
    # Port in the other block: 100.64.0.6 has no /32 session, the static /24 holds it.
    link = one(r, "203.0.113.7", T, port=3072)
    assert [c.subscriber_id for c in link.candidates] == ["S-POOL"]
    assert link.candidates[0].via_cgnat == "100.64.0.6"
    # Port bounds are inclusive.
    assert one(r, "203.0.113.7", T, port=2048).candidates[0].subscriber_id == "S-CAROL"
    assert one(r, "203.0.113.7", T, port=3071).candidates[0].subscriber_id == "S-CAROL"


def test_cgnat_address_without_a_block_is_unlinked_with_the_port():
    r = resolver(CG_SUBS, CG_ROWS, CG_BLOCKS)
    # The carrier's static /24 covers 203.0.113.7, but a CGNAT address needs its block.
    link = one(r, "203.0.113.7", T, port=5000)
    assert link.status == "unlinked" and link.confidence == 0.0
    assert link.reasons == ("CGNAT address, no port block for port 5000 at 2026-11-24T10:00:00Z",)
    link = one(r, "203.0.113.7", T + 2 * DAY, port=2500)
    assert link.reasons == ("CGNAT address, no port block for port 2500 at 2026-11-26T10:00:00Z",)
    assert one(r, "203.0.113.7", T, port=None).status == "unlinked"
    # Another address of the carrier's /24 is no CGNAT address.
    assert one(r, "203.0.113.8", T, port=5000).candidates[0].subscriber_id == "S-CARRIER"


def test_cgnat_block_to_an_unassigned_private_address():
    r = resolver(CG_SUBS, CG_ROWS[2:], CG_BLOCKS)
    link = one(r, "203.0.113.7", T, port=2500)
    assert link.status == "unlinked"
    assert link.reasons == ("through CGNAT block 203.0.113.7:2048-3071 → 100.64.0.5, but no "
                            "assignment covers 100.64.0.5 at 2026-11-24T10:00:00Z",)


def test_overlapping_port_blocks_are_ambiguous():
    blocks = CG_BLOCKS + [blk("203.0.113.7", 2000, 2999, "100.64.0.9", T - HOUR, T + HOUR)]
    rows = CG_ROWS + [asg("100.64.0.9/32", T - DAY, T + DAY, "user", "dave")]
    r = resolver(CG_SUBS + [sub("S-DAVE", username="dave")], rows, blocks)
    link = one(r, "203.0.113.7", T, port=2500)
    assert link.status == "ambiguous"
    assert sorted(c.via_cgnat for c in link.candidates) == ["100.64.0.5", "100.64.0.9"]
    assert link.confidence == pytest.approx(0.95 / 2)


# ---------------------------------------------------------------------------------------
# Identities
# ---------------------------------------------------------------------------------------
def test_identity_kinds_map_to_subscribers():
    subs = [sub("S-1", username="Alice"), sub("S-2", **{"RADIUS user": "bob@isp"}),
            sub("S-3", mac="aa:bb:cc:00:00:03"), sub("S-4", dhcp_client_id="01:AA:BB"),
            sub("S-5", hostname="Printer-5"), sub("carol")]
    idents = [("subscriber", "S-1"), ("user", "ALICE"), ("user", "Bob@ISP"), ("user", "carol"),
              ("mac", "AA-BB-CC-00-00-03"), ("client_id", "01:aa:bb"), ("hostname", "printer-5")]
    rows = [asg(f"192.0.2.{k}/32", T - HOUR, T + HOUR, kind, ident)
            for k, (kind, ident) in enumerate(idents)]
    r = resolver(subs, rows)
    links = r.resolve([f"192.0.2.{k}" for k in range(len(idents))], [None] * len(idents),
                      [T] * len(idents))
    assert [link.candidates[0].subscriber_id for link in links] == \
        ["S-1", "S-1", "S-2", "carol", "S-3", "S-4", "S-5"]
    assert links[0].candidates[0].entity_id == "E-S-1"
    assert all(link.status == "linked" and link.confidence == 1.0 for link in links)


def test_unknown_identity_is_a_candidate_without_subscriber():
    r = resolver(SUBS, [asg("192.0.2.1/32", T - HOUR, T + HOUR, "user", "u17")])
    link = one(r, "192.0.2.1", T)
    assert link.status == "linked"
    (c,) = link.candidates
    assert c.subscriber_id is None and c.entity_id is None and c.identity == "u17"
    assert link.confidence == pytest.approx(0.5)
    assert "RADIUS user 'u17' is not in the registry" in link.reasons


def test_two_subscribers_with_one_mac_are_ambiguous():
    subs = [sub("S-1", mac="02:00:00:00:00:01"), sub("S-2", mac="02:00:00:00:00:01")]
    r = resolver(subs, [asg("192.0.2.1/32", T - HOUR, T + HOUR, "mac", "02:00:00:00:00:01",
                            "dhcp-isc")])
    link = one(r, "192.0.2.1", T)
    assert link.status == "ambiguous"
    assert [c.subscriber_id for c in link.candidates] == ["S-1", "S-2"]
    assert link.confidence == pytest.approx(0.5)


# ---------------------------------------------------------------------------------------
# Confidence and reasons
# ---------------------------------------------------------------------------------------
def test_corroboration_by_two_sources_costs_nothing():
    rows = [asg("192.0.2.1/32", T - DAY, math.inf, "subscriber", "S-1", "static"),
            asg("192.0.2.1/32", T - HOUR, T + HOUR, "user", "alice", "radius")]
    r = resolver([sub("S-1", username="alice")], rows)
    link = one(r, "192.0.2.1", T)
    assert link.status == "linked" and link.confidence == 1.0
    assert len(link.candidates) == 2
    assert "corroborated by radius and static" in link.reasons


def test_inferred_end_lowers_confidence():
    r = resolver(SUBS, [asg("192.0.2.1/32", T - HOUR, T + HOUR, "user", "alice",
                            inferred=True)])
    link = one(r, "192.0.2.1", T)
    assert link.confidence == pytest.approx(0.8)
    assert link.candidates[0].end_inferred
    assert any("was inferred" in x for x in link.reasons)


def test_near_an_interval_boundary_lowers_confidence():
    r = resolver(SUBS, [RADIUS])
    near_start = one(r, "198.51.100.7", T - HOUR + 30)
    assert near_start.confidence == pytest.approx(0.9)
    assert any("30 s after the start of 198.51.100.7/32" in x and "clock skew" in x
               for x in near_start.reasons)
    near_end = one(r, "198.51.100.7", T + HOUR - 60)
    assert near_end.confidence == pytest.approx(0.9)
    assert any("60 s before the end" in x for x in near_end.reasons)
    assert one(r, "198.51.100.7", T + HOUR - 61).confidence == 1.0


def test_factors_multiply_and_settings_change_them():
    rows = [asg("100.64.0.5/32", T - HOUR, T + HOUR, "user", "nobody", inferred=True)]
    r = resolver([], rows, CG_BLOCKS[:1])
    link = one(r, "203.0.113.7", T + HOUR - 10, port=2100)
    assert link.confidence == pytest.approx(0.95 * 0.8 * 0.5 * 0.9)
    assert len(link.reasons) == 4
    custom = LinkSettings(cgnat_factor=1.0, end_inferred_factor=1.0,
                          unknown_identity_factor=1.0, edge_seconds=0.0)
    r = resolver([], rows, CG_BLOCKS[:1], custom)
    assert one(r, "203.0.113.7", T + HOUR - 10, port=2100).confidence == 1.0
    with pytest.raises(ValueError):
        LinkSettings(edge_factor=1.5)


def test_defaults_are_documented_numbers():
    s = LinkSettings()
    assert (s.end_inferred_factor, s.cgnat_factor, s.unknown_identity_factor, s.edge_factor,
            s.edge_seconds) == (0.8, 0.95, 0.5, 0.9, 60.0)


# ---------------------------------------------------------------------------------------
# Arrays, empty inputs
# ---------------------------------------------------------------------------------------
def test_from_arrays_matches_from_rows_and_masks_host_bits():
    rows = [STATIC, RADIUS, asg("2001:db8:aa::/48", T - DAY, math.inf, "subscriber", "S-48",
                                "static")]
    h = [addr_to_halves("198.51.100.77"), addr_to_halves("198.51.100.7"),
         addr_to_halves("2001:db8:aa::99")]
    arr = AssignmentIndex.from_arrays(
        [x for x, _ in h], [y for _, y in h], [120, 128, 48], [a.start for a in rows],
        [a.end for a in rows], [0, 1, 2],
        [("subscriber", "S-BLOCK", "static"), ("user", "alice", "radius"),
         ("subscriber", "S-48")])
    subs = SUBS + [sub("S-48")]
    by_arrays = Resolver(subs, arr).resolve(["198.51.100.7", "198.51.100.1", "2001:db8:aa::1"],
                                            [None] * 3, [T] * 3)
    by_rows = resolver(subs, rows).resolve(["198.51.100.7", "198.51.100.1", "2001:db8:aa::1"],
                                           [None] * 3, [T] * 3)
    assert [link.candidates[0].subscriber_id for link in by_arrays] == \
        [link.candidates[0].subscriber_id for link in by_rows] == ["S-ALICE", "S-BLOCK", "S-48"]
    assert [link.candidates[0].network for link in by_arrays] == \
        ["198.51.100.7/32", "198.51.100.0/24", "2001:db8:aa::/48"]
    assert by_arrays[0].candidates[0].origin is None
    assert by_arrays[2].candidates[0].source == "unknown"


def test_port_blocks_from_arrays():
    pub, priv = addr_to_halves("203.0.113.7"), addr_to_halves("100.64.0.5")
    pidx = PortBlockIndex.from_arrays([pub[0]], [pub[1]], [2048], [3071], [T - DAY], [T + DAY],
                                      [priv[0]], [priv[1]])
    r = Resolver(CG_SUBS, AssignmentIndex.from_rows(CG_ROWS), pidx)
    link = one(r, "203.0.113.7", T, port=2222)
    assert link.candidates[0].subscriber_id == "S-CAROL"
    assert link.candidates[0].cgnat_origin is None


def test_empty_inputs():
    empty = Resolver([], AssignmentIndex.from_rows([]))
    assert empty.resolve([], [], []) == []
    pairs = empty.resolve_arrays(np.zeros(0, np.uint64), np.zeros(0, np.uint64),
                                 np.zeros(0, np.int64), np.zeros(0))
    assert isinstance(pairs, CandidatePairs) and all(len(a) == 0 for a in pairs)
    assert one(empty, "192.0.2.1", T).status == "unlinked"
    r = Resolver([], AssignmentIndex.from_rows([]), PortBlockIndex.from_rows(CG_BLOCKS))
    assert one(r, "203.0.113.7", T, 2500).reasons[0].startswith("through CGNAT block")
    r = resolver(SUBS, [RADIUS], [])
    assert r.resolve([], [], []) == []
    assert one(r, "198.51.100.7", T).status == "linked"


def test_bad_inputs_are_refused():
    with pytest.raises(ValueError, match="differ in length"):
        AssignmentIndex.from_arrays([0], [0], [128, 128], [0], [1], [0], [("user", "a")])
    with pytest.raises(ValueError, match="identity_idx"):
        AssignmentIndex.from_arrays([0], [0], [128], [0], [1], [3], [("user", "a")])
    with pytest.raises(ValueError, match="outside 0..128"):
        AssignmentIndex.from_arrays([0], [0], [129], [0], [1], [0], [("user", "a")])
    with pytest.raises(ValueError, match="NaN"):
        AssignmentIndex.from_arrays([0], [0], [128], [math.nan], [1], [0], [("user", "a")])
    r = resolver(SUBS, [RADIUS])
    with pytest.raises(ValueError):
        r.resolve(["not an address"], [None], [T])
