#!/usr/bin/env python3
"""Linking benchmark: "who held this IP (and port) at this time?" for a million observations.

The goal (issue text): link one million observations against ten million assignment
records in seconds, not minutes, on one core. This script builds a synthetic ISP week with
numpy (fixed seed, no Python loop per row), then times on the same input:

* poolwatch: ``AssignmentIndex.from_arrays`` + ``PortBlockIndex.from_arrays`` (index
  build) and ``Resolver.resolve_arrays`` (the numba kernel: CGNAT translation, then
  longest-prefix match in time), one thread;
* the peer: pandas ``merge_asof`` by exact address (direction backward on start), then
  ``end > ts``: the usual pandas way. It does no longest-prefix match and no CGNAT, so it
  is a lower bound on the work; its sort of both sides is reported as its "build".

It also checks, on a 20k-observation subsample, that the kernel gives exactly the pairs
of the plain-Python twin (``kernels._reference_interval_match``), and times the ``Link``
objects of ``Resolver.links`` on that subsample.

The records (``--assignments N`` counts all of them, port blocks included):

* ``--port-blocks`` CGNAT port blocks (default 200,000): public addresses in 13.0.0.0/16,
  64 slots of 1008 ports (1024..65535) each, 4 blocks per slot over the week, each to a
  private 100.64.0.0/10 address;
* 4,000 static blocks /24–/29 (open, named by subscriber id), 500 of them /24s laid over the
  dynamic pool (so a /32 session must win over them and they catch the gaps);
* the rest: dynamic /32s (60 %: 11.0.0.0/8, 30 intervals per address over the week, one
  after the other with short gaps, 1 % overlapping the next by 30 s, 5 % with an inferred
  end, half of the last ones open), private CGNAT-side /32s (10 %: 100.64.0.0/10, 10 per
  address), IPv6 delegated /56s (15 %) and /64s (15 %, inside the /56s), 10 per prefix.

Observations (``--observations M``, default 1,000,000): 55 % dynamic v4, 10 % static, 15 %
IPv6 (half in a delegated /64), 15 % CGNAT public address with a random port (ports under
1024 have no block), 5 % unknown addresses.

    python benchmarks/bench_linking.py                     # 10 M records, 1 M observations
    python benchmarks/bench_linking.py --assignments 1000000 --observations 100000
"""

from __future__ import annotations

import argparse
import gc
import platform
import resource
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from poolwatch.kernels import _reference_interval_match as ref  # noqa: E402
from poolwatch.kernels import interval_match as km  # noqa: E402
from poolwatch.link.resolve import AssignmentIndex, PortBlockIndex, Resolver  # noqa: E402

WEEK = 7 * 86400.0
T0 = datetime(2026, 11, 16, tzinfo=timezone.utc).timestamp()
V4 = np.uint64(0xFFFF00000000)  # lo half of ::ffff:0.0.0.0
N_STATIC = 4000
SLOTS_PER_IP = 64
SLOT_PORTS = 1008
BLOCKS_PER_SLOT = 4
TWIN_SAMPLE = 20_000


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # KiB on Linux


def ip4(base: str) -> int:
    a, b, c, d = (int(x) for x in base.split("."))
    return (a << 24) | (b << 16) | (c << 8) | d


def intervals(rng, n_keys: int, k: int, overlap: float = 0.01):
    """k intervals per key over the week, one after the other: (key index, start, end,
    end_inferred), key-major."""
    cuts = np.sort(rng.uniform(0, WEEK, (n_keys, k - 1)), axis=1)
    starts = np.concatenate([np.zeros((n_keys, 1)), cuts], axis=1)
    nxt = np.concatenate([cuts, np.full((n_keys, 1), WEEK)], axis=1)
    gap = rng.uniform(0, 600, (n_keys, k))
    ends = np.maximum(nxt - gap, starts + 1)
    ov = rng.random((n_keys, k)) < overlap
    ends = np.where(ov, nxt + 30.0, ends)
    last_open = rng.random(n_keys) < 0.5
    ends[last_open, -1] = np.inf
    inferred = rng.random((n_keys, k)) < 0.05
    key = np.repeat(np.arange(n_keys), k)
    return key, T0 + starts.ravel(), T0 + ends.ravel(), inferred.ravel()


def build_input(n_records: int, n_blocks: int, n_obs: int, seed: int = 20261124):
    rng = np.random.default_rng(seed)
    n_assign = n_records - n_blocks
    rest = n_assign - N_STATIC
    parts = []  # (hi, lo, plen, start, end, identity_idx, end_inferred)
    n_ident = 0

    def add(hi, lo, plen, start, end, ident, inferred):
        parts.append((hi, lo, np.full(len(start), plen, np.uint8) if np.isscalar(plen) else plen,
                      start, end, ident, inferred))

    # Dynamic public /32s: 30 intervals per address.
    k_dyn = 30
    n_dyn = int(rest * 0.60) // k_dyn
    dyn_base = ip4("11.0.0.0")
    key, s, e, inf = intervals(rng, n_dyn, k_dyn)
    ident = rng.integers(0, max(n_dyn * 2, 1), len(key))  # users move between addresses
    add(np.zeros(len(key), np.uint64), V4 | (dyn_base + key).astype(np.uint64), 128, s, e,
        ident, inf)
    n_ident += max(n_dyn * 2, 1)

    # Private (CGNAT inside) /32s: 10 per address.
    k_priv = 10
    n_priv = int(rest * 0.10) // k_priv
    priv_base = ip4("100.64.0.0")
    key, s, e, inf = intervals(rng, n_priv, k_priv)
    add(np.zeros(len(key), np.uint64), V4 | (priv_base + key).astype(np.uint64), 128, s, e,
        n_ident + rng.integers(0, n_priv, len(key)), inf)
    n_ident += n_priv

    # IPv6 delegated /56s and /64s (the /64s inside random /56s).
    k6 = 10
    n56 = int(rest * 0.15) // k6
    n64 = int(rest * 0.15) // k6
    v6_base = np.uint64(0x20010DB8 << 32)
    hi56 = v6_base | (np.arange(n56, dtype=np.uint64) << np.uint64(8))
    key, s, e, inf = intervals(rng, n56, k6)
    add(hi56[key], np.zeros(len(key), np.uint64), 56, s, e, n_ident + key, inf)
    n_ident += n56
    hi64 = hi56[rng.integers(0, n56, n64)] | rng.integers(0, 256, n64).astype(np.uint64)
    key, s, e, inf = intervals(rng, n64, k6)
    add(hi64[key], np.zeros(len(key), np.uint64), 64, s, e, n_ident + key, inf)
    n_ident += n64

    # Static blocks /24–/29: 500 /24s over the dynamic pool, the rest in 12.0.0.0/8.
    n_over = 500
    over = dyn_base + (rng.choice(max(n_dyn // 256, 1), n_over) * 256)
    other = ip4("12.0.0.0") + np.arange(N_STATIC - n_over) * 256
    net = np.concatenate([over, other]).astype(np.uint64)
    plen = np.concatenate([np.full(n_over, 24), rng.integers(24, 30, N_STATIC - n_over)])
    add(np.zeros(N_STATIC, np.uint64), V4 | net, (plen + 96).astype(np.uint8),
        np.full(N_STATIC, T0 - 365 * 86400.0), np.full(N_STATIC, np.inf),
        n_ident + np.arange(N_STATIC), np.zeros(N_STATIC, bool))
    static_net, static_plen = net, plen
    n_ident += N_STATIC

    cols = [np.concatenate([p[i] for p in parts]) for i in range(7)]
    del parts
    identities = [("user", f"u{i}", "radius") for i in range(n_ident)]

    # CGNAT port blocks: public 13.0.x.y, 64 slots of 1008 ports, 4 blocks per slot.
    n_slots = max(n_blocks // BLOCKS_PER_SLOT, 1)
    slot, bs, be, binf = intervals(rng, n_slots, BLOCKS_PER_SLOT, overlap=0.0)
    pub = ip4("13.0.0.0") + slot // SLOTS_PER_IP
    port_low = 1024 + (slot % SLOTS_PER_IP) * SLOT_PORTS
    blocks = dict(pub_hi=np.zeros(len(slot), np.uint64), pub_lo=V4 | pub.astype(np.uint64),
                  port_low=port_low, port_high=port_low + SLOT_PORTS - 1, start=bs, end=be,
                  priv_hi=np.zeros(len(slot), np.uint64),
                  priv_lo=V4 | (priv_base + rng.integers(0, max(n_priv, 1), len(slot))
                                ).astype(np.uint64),
                  end_inferred=binf)
    n_pub = int(pub.max() - pub.min()) + 1

    # Observations.
    kinds = rng.choice(5, n_obs, p=[0.55, 0.10, 0.15, 0.15, 0.05])
    ohi = np.zeros(n_obs, np.uint64)
    olo = np.zeros(n_obs, np.uint64)
    oport = rng.integers(1024, 65536, n_obs)
    ots = T0 + rng.uniform(0, WEEK, n_obs)
    m = kinds == 0
    olo[m] = V4 | (dyn_base + rng.integers(0, max(n_dyn, 1), m.sum())).astype(np.uint64)
    m = kinds == 1
    pick = rng.integers(0, N_STATIC, m.sum())
    host = rng.integers(0, 1 << 30, m.sum()) % (1 << (32 - static_plen[pick]))
    olo[m] = V4 | (static_net[pick] + host.astype(np.uint64))
    m = kinds == 2
    half = rng.random(m.sum()) < 0.5
    ohi[m] = np.where(half, hi64[rng.integers(0, n64, m.sum())],
                      hi56[rng.integers(0, n56, m.sum())] | rng.integers(0, 256, m.sum())
                      .astype(np.uint64))
    olo[m] = rng.integers(0, 2**63, m.sum(), dtype=np.int64).astype(np.uint64)
    m = kinds == 3
    olo[m] = V4 | (ip4("13.0.0.0") + rng.integers(0, n_pub, m.sum())).astype(np.uint64)
    oport[m] = rng.integers(0, 65536, m.sum())
    m = kinds == 4
    olo[m] = V4 | (ip4("14.0.0.0") + rng.integers(0, 1 << 24, m.sum())).astype(np.uint64)
    obs = dict(hi=ohi, lo=olo, port=oport, ts=ots)
    return cols, identities, blocks, obs


def run_pandas(cols, obs):
    """merge_asof by exact address, backward on start, then end > ts."""
    import pandas as pd

    hi, lo, _plen, start, end = cols[:5]
    t = time.perf_counter()
    right = pd.DataFrame({"hi": hi, "lo": lo, "start": start, "end": end,
                          "row": np.arange(len(start))}).sort_values("start", kind="stable")
    left = pd.DataFrame({"hi": obs["hi"], "lo": obs["lo"], "ts": obs["ts"],
                         "obs": np.arange(len(obs["ts"]))}).sort_values("ts", kind="stable")
    t_sort = time.perf_counter() - t
    t = time.perf_counter()
    merged = pd.merge_asof(left, right, left_on="ts", right_on="start", by=["hi", "lo"],
                           direction="backward")
    hits = merged[merged["end"] > merged["ts"]]
    t_merge = time.perf_counter() - t
    return t_sort, t_merge, len(hits)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--assignments", type=int, default=10_000_000,
                    help="records in all, port blocks included (default 10,000,000)")
    ap.add_argument("--observations", type=int, default=1_000_000)
    ap.add_argument("--port-blocks", type=int, default=200_000)
    ap.add_argument("--no-pandas", action="store_true", help="skip the pandas peer")
    ap.add_argument("--repeat", type=int, default=3, help="resolve_arrays runs (best is shown)")
    args = ap.parse_args(argv)
    if args.assignments < args.port_blocks + N_STATIC + 1000:
        ap.error("--assignments must exceed --port-blocks by a few thousand")

    print(f"python {platform.python_version()}, numpy {np.__version__}, "
          f"{platform.machine()}, {platform.node()}")
    # Compile (or load the cached kernels) before anything is timed.
    small = build_input(20_000, 2_000, 100)
    w = Resolver([], AssignmentIndex.from_arrays(*small[0][:6], small[1]),
                 PortBlockIndex.from_arrays(**small[2]))
    w.resolve_arrays(**small[3])
    w.links(w.resolve_arrays(**small[3]), **small[3])
    km.lpm_pairs(*w.assignments.kernel_args(), small[3]["hi"], small[3]["lo"], small[3]["ts"])
    del small, w
    gc.collect()

    t = time.perf_counter()
    cols, identities, blocks, obs = build_input(args.assignments, args.port_blocks,
                                                args.observations)
    t_gen = time.perf_counter() - t
    n_assign, n_blocks, n_obs = len(cols[0]), len(blocks["start"]), len(obs["ts"])
    plens = np.unique(cols[2])
    print(f"input: {n_assign:,} assignments ({len(plens)} prefix lengths) + {n_blocks:,} "
          f"port blocks = {n_assign + n_blocks:,} records; {n_obs:,} observations; "
          f"generated in {t_gen:.1f} s; peak RSS {peak_rss_mb():,.0f} MB")

    t = time.perf_counter()
    aidx = AssignmentIndex.from_arrays(*cols[:6], identities, end_inferred=cols[6])
    pidx = PortBlockIndex.from_arrays(**blocks)
    t_build = time.perf_counter() - t
    rss_build = peak_rss_mb()
    resolver = Resolver([], aidx, pidx)

    best = np.inf
    for _ in range(max(args.repeat, 1)):
        t = time.perf_counter()
        pairs = resolver.resolve_arrays(**obs)
        best = min(best, time.perf_counter() - t)
    t_resolve = best
    rss_resolve = peak_rss_mb()
    n_linked_obs = len(np.unique(pairs.obs))
    n_cgnat = int((pairs.via_block >= 0).sum())
    multi = np.bincount(pairs.obs, minlength=n_obs) > 1
    print(f"poolwatch: {len(pairs.obs):,} candidate pairs, {n_linked_obs:,} observations with "
          f"a candidate ({n_linked_obs / n_obs:.1%}), {n_cgnat:,} pairs through CGNAT, "
          f"{int(multi.sum()):,} observations with several candidates")

    # Kernel vs plain-Python twin on a subsample.
    rng = np.random.default_rng(7)
    sub = np.sort(rng.choice(n_obs, min(TWIN_SAMPLE, n_obs), replace=False))
    sobs = {k: v[sub] for k, v in obs.items()}
    kernel = resolver.resolve_arrays(**sobs)
    t = time.perf_counter()
    twin = ref.resolve_pairs(*aidx.kernel_args(), *pidx.kernel_args(), pidx.s_priv_hi,
                             pidx.s_priv_lo, sobs["hi"], sobs["lo"], sobs["port"], sobs["ts"],
                             np.arange(len(sub)))
    t_twin = time.perf_counter() - t
    agree = all(np.array_equal(a, b) for a, b in zip(kernel, twin))
    print(f"kernel vs plain-Python twin on {len(sub):,} observations: "
          f"{'AGREE' if agree else 'DIFFER'} ({len(kernel.obs):,} pairs; twin took "
          f"{t_twin:.1f} s)")
    t = time.perf_counter()
    links = resolver.links(kernel, **sobs)
    t_links = time.perf_counter() - t
    status = {s: sum(1 for x in links if x.status == s) for s in ("linked", "ambiguous",
                                                                   "unlinked")}
    print(f"Resolver.links on the subsample: {t_links:.2f} s "
          f"({len(sub) / t_links:,.0f} Link/s); {status}")

    rows = [("poolwatch index build", t_build, None),
            ("poolwatch resolve_arrays (1 thread)", t_resolve, n_obs / t_resolve),
            ("poolwatch build + resolve", t_build + t_resolve, n_obs / (t_build + t_resolve))]
    if not args.no_pandas:
        del links, kernel, twin
        gc.collect()
        t_sort, t_merge, n_hits = run_pandas(cols, obs)
        rows += [("pandas sort both sides", t_sort, None),
                 ("pandas merge_asof + end > ts", t_merge, n_obs / t_merge),
                 ("pandas sort + merge", t_sort + t_merge, n_obs / (t_sort + t_merge))]
        print(f"pandas: {n_hits:,} matches by exact address (no LPM, no CGNAT)")
    rss_end = peak_rss_mb()

    print()
    print(f"{'step':40s} {'seconds':>9s} {'obs/s':>14s}")
    for name, sec, rate in rows:
        print(f"{name:40s} {sec:9.2f} {'' if rate is None else f'{rate:,.0f}':>14s}")
    if not args.no_pandas:
        print(f"ratio pandas merge / poolwatch resolve:           "
              f"{t_merge / t_resolve:.1f}x")
        print(f"ratio pandas sort+merge / poolwatch build+resolve: "
              f"{(t_sort + t_merge) / (t_build + t_resolve):.1f}x")
    print(f"peak RSS: after build {rss_build:,.0f} MB, after resolve {rss_resolve:,.0f} MB, "
          f"at the end{'' if args.no_pandas else ' (pandas included)'} {rss_end:,.0f} MB")
    return 0 if agree else 1


if __name__ == "__main__":
    sys.exit(main())
