#!/usr/bin/env python3
"""Lead API load benchmark (issue 6): ``GET /v1/leads`` over a million stored leads.

The goal (issue text): with a million leads in the store, p99 latency of the main filtered
list query under 50 ms at 200 requests per second on this machine, on SQLite and on
PostgreSQL. Per backend this script:

1. **fills a store** with ``--leads`` leads over ``--weeks`` reporting weeks, written straight
   into ``leads``, ``lead_values`` and ``lead_addresses`` as ``Store.compute_leads`` writes
   them (each week's leads in ``build_leads`` order, ``-power_w`` then ``lead_id``; coins
   upper case and pools lower case, de-duplicated, coins first; one address row per
   ``src_ips`` entry, 16 bytes with IPv4 mapped into ``::ffff:0:0/96``; JSON as
   SQLAlchemy's ``json.dumps`` writes it). Schema by the real migrations (``Store.open``);
   rows by SQLite ``executemany`` or PostgreSQL ``COPY``, with the secondary indexes dropped
   during the load and made again from ``models.py`` afterwards. PostgreSQL then gets
   ``VACUUM ANALYZE`` (what autovacuum does after a load this size); SQLite gets no
   ``ANALYZE`` (the Store never runs one) unless ``--sqlite-analyze``.
   Filled stores are cached between runs under a key made of ``FILL_VERSION``, the
   options that shape the data and the schema revision: the SQLite file in ``--workdir``,
   the PostgreSQL schema ``--pg-schema`` (the key is the schema's comment);
2. **times ``Store.list_leads`` directly** (no HTTP), one query at a time, on the server's
   core, for the same query mix;
3. **starts the real API**: ``poolwatch serve --db URL`` (one uvicorn process, its default
   access log to a file in the work dir, the default per-key rate limit) on 127.0.0.1;
4. **drives it open-loop** at each ``--rates`` step for ``--duration`` seconds: request i is
   due at ``t0 + i / rate`` whatever happened to the earlier ones, and its latency runs from
   when it was *due*, not from when it was sent, so a server (or generator) that falls
   behind shows up in the figures instead of being hidden by coordinated omission. The
   generator is plain asyncio streams (``--connections`` keep-alive HTTP/1.1 connections,
   see ``Connection``), reading every body; ``--calibrate`` measures what it adds. Keys:
   ``--keys`` analyst keys used in turn, so no key passes the default 50 requests/s limit
   below 1,600 requests/s.

Queries (weights in ``MIX``): week + status; week + min_confidence + entity_type; region
(latest or a given week); coin; address (a /32, /24 or /16 of a stored IPv4 address, or a
/64 or /48 of an IPv6 one); a cursor follow-up (the next page of an earlier answer, same
filters); and the default first page. Weeks lean recent (70 % among the latest four).
Sort is the default ``-power_w`` except for a quarter of the default pages (``-last_seen``);
``limit`` is the default 50.

CPU placement (``--server-cpu``, ``--client-cpu``): by default the API server is pinned to
core 0 and this script (the generator) to core 1 with ``sched_setaffinity``/``taskset``;
PostgreSQL's own processes are not ours and stay unpinned. ``--server-cpu ''`` leaves the
server unpinned. Per step the script reports each core's busy share from ``/proc/stat``
and the server process's and generator's own CPU seconds.

    python benchmarks/bench_api.py                                 # 1 M leads, both backends
    python benchmarks/bench_api.py --leads 50000 --rates 50,200 --duration 10
    python benchmarks/bench_api.py --backends postgresql --rates 200 --json /tmp/api.json
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import ipaddress
import json
import os
import platform
import random
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from collections import deque
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "api"))

from poolwatch.leads import FIELDS as LEAD_FIELDS  # noqa: E402
from poolwatch.store import Store  # noqa: E402
from poolwatch.store.db import head_revision  # noqa: E402
from poolwatch.store.models import Lead, LeadAddress, LeadValue  # noqa: E402

FILL_VERSION = "bench-api-fill-1"  # change when the generated data change
PG_BASE = "postgresql://postgres@127.0.0.1:5432/test"
LATEST_WEEK = datetime(2026, 11, 23, tzinfo=timezone.utc)  # a Monday
WEEK = timedelta(days=7)
V4_MAPPED = b"\x00" * 10 + b"\xff\xff"
JSON_FIELDS = {"subscriber_ids", "src_ips", "pools", "coins", "wallets", "workers", "reasons",
               "candidates", "evidence"}
LEAD_COLUMNS = ["id", "week_start", "computed_at"] + list(LEAD_FIELDS)

# ---------------------------------------------------------------------------- the data
ENTITY_TYPES = (("residential", 0.62), ("enterprise", 0.16), ("datacentre", 0.04),
                ("internet_cafe", 0.06), ("education", 0.05), ("government", 0.02),
                ("other", 0.05))
REGIONS = ("Hebei", "Guangdong", "Sichuan", "Xinjiang", "Inner Mongolia", "Yunnan", "Shandong",
           "Henan", "Jiangsu", "Zhejiang", "Hubei", "Hunan", "Anhui", "Fujian", "Liaoning",
           "Shaanxi", "Shanxi", "Guangxi", "Guizhou", "Jiangxi", "Heilongjiang", "Jilin",
           "Gansu", "Qinghai", "Ningxia", "Chongqing", "Beijing", "Shanghai", "Tianjin",
           "Hainan", "Tibet")
REGION_W = np.array([1 / (i + 1) ** 0.8 for i in range(len(REGIONS))])
COINS = (("BTC", 55), ("XMR", 15), ("LTC", 8), ("ETC", 5), ("KAS", 5), ("DOGE", 4), ("ZEC", 3),
         ("RVN", 3), ("ERG", 2))
POOLS = ("AntPool", "F2Pool", "ViaBTC", "Foundry USA", "Binance Pool", "SupportXMR",
         "MoneroOcean", "2Miners", "Nanopool", "Poolin", "SpiderPool", "Braiins", "Luxor",
         "K1Pool", "HeroMiners", "NiceHash", "unMineable", "EMCD", "SBI Crypto", "OCEAN",
         "MARA Pool", "SECPOOL", "Ultimus", "Titan", "WoolyPooly", "Kryptex", "HashVault",
         "C3Pool", "LitecoinPool", "Flexpool")
POOL_W = np.array([1 / (i + 1) for i in range(len(POOLS))])
V4_BLOCKS = (36, 39, 42, 49, 58, 59, 60, 61, 101, 106, 110, 111, 112, 113, 114, 115, 116, 117,
             118, 119, 120, 121, 122, 123, 124, 125, 171, 175, 180, 182, 183, 202, 211, 218,
             219, 220, 221, 222, 223)
STATUS_CHANGE = {"new": ("none->new",), "active": ("unchanged", "new->active"),
                 "dormant": ("active->dormant", "unchanged"), "gone": ("dormant->gone",
                                                                      "unchanged")}


_DAYS: dict[int, str] = {}


def _iso(ns: int) -> str:
    """ISO 8601 UTC with microseconds, as ``link.times.iso`` writes detection times."""
    sec, frac = divmod(ns, 10**9)
    day, rest = divmod(sec, 86400)
    prefix = _DAYS.get(day)
    if prefix is None:
        prefix = _DAYS[day] = datetime.fromtimestamp(day * 86400, timezone.utc).strftime(
            "%Y-%m-%dT")
    h, rest = divmod(rest, 3600)
    m, s_ = divmod(rest, 60)
    return f"{prefix}{h:02d}:{m:02d}:{s_:02d}.{frac // 1000:06d}Z"


def week_starts(weeks: int) -> list[int]:
    """Monday 00:00 UTC of each reporting week, oldest first, in ns."""
    return [int((LATEST_WEEK - (weeks - 1 - i) * WEEK).timestamp()) * 10**9
            for i in range(weeks)]


class Population:
    """Entities and unattributed addresses that leads stand for. A lead identity recurs in
    consecutive weeks (each week's window of identities slides by a quarter), so statuses
    follow from where an identity sits in its week's window."""

    def __init__(self, per_week: int, weeks: int, seed: int) -> None:
        self.per_week = per_week
        self.step = max(1, per_week // 4)
        size = self.step * (weeks - 1) + per_week + 1
        rng = np.random.default_rng(seed)
        self.attributed = rng.random(size) >= 0.2
        names = [t for t, _ in ENTITY_TYPES]
        self.etype = rng.choice(len(names), size, p=[w for _, w in ENTITY_TYPES])
        self.region = rng.choice(len(REGIONS), size, p=REGION_W / REGION_W.sum())
        self.base_power = np.where(self.etype == names.index("datacentre"),
                                   rng.lognormal(np.log(60_000), 1.0, size),
                                   rng.lognormal(np.log(1_500), 1.0, size))
        self.has_hashrate = rng.random(size) >= 0.25
        self.n_ips = rng.choice([1, 2, 3, 4], size, p=[0.7, 0.2, 0.06, 0.04])
        self.v6 = rng.random(size) < 0.15
        self.seed = seed
        self.type_names = names

    def ips(self, key: int) -> list[str]:
        rnd = random.Random(self.seed * 7919 + key)
        out = []
        for _ in range(int(self.n_ips[key])):
            if self.v6[key]:
                out.append(str(ipaddress.IPv6Address(
                    (0x240E << 112) | (rnd.getrandbits(32) << 80) | rnd.getrandbits(16))))
            else:
                out.append(f"{rnd.choice(V4_BLOCKS)}.{rnd.randrange(256)}."
                           f"{rnd.randrange(256)}.{rnd.randrange(1, 255)}")
        return out


def week_leads(pop: Population, w: int, week_ns: int, count: int, seed: int,
               computed_at: int) -> list[dict[str, Any]]:
    """One reporting week's lead records, in ``build_leads`` order."""
    rnd = random.Random(seed * 1_000_003 + w)
    start = w * pop.step
    leads = []
    for j in range(count):
        key = start + j
        pos = j / max(1, count)
        status = ("new" if j >= count - pop.step else "gone" if pos < 0.15 else
                  "dormant" if pos < 0.40 else "active")
        leads.append(_lead(pop, key, status, week_ns, rnd, computed_at))
    leads.sort(key=lambda x: (-(x["power_w"] or 0.0), x["lead_id"]))
    return leads


def _lead(pop: Population, key: int, status: str, week_ns: int, rnd: random.Random,
          computed_at: int) -> dict[str, Any]:
    week_s = week_ns // 10**9
    attributed = bool(pop.attributed[key])
    etype = pop.type_names[int(pop.etype[key])] if attributed else None
    ips = pop.ips(key)
    # times: new = first seen this week; active = before and this week; dormant = last seen
    # in the 4 weeks before; gone = earlier than that
    if status == "new":
        first = week_s + rnd.uniform(0, 6.5 * 86400)
        last = min(week_s + 7 * 86400 - 1, first + rnd.uniform(600, 4 * 86400))
    elif status == "active":
        first = week_s - rnd.uniform(1, 20) * 86400
        last = week_s + rnd.uniform(0, 7 * 86400 - 1)
    elif status == "dormant":
        last = week_s - rnd.uniform(0.1, 27.9) * 86400
        first = last - rnd.uniform(600, 30 * 86400)
    else:
        last = week_s - rnd.uniform(28.1, 120) * 86400
        first = last - rnd.uniform(600, 60 * 86400)
    first_ns, last_ns = int(first * 1e9), int(last * 1e9)
    dc = etype == "datacentre"
    sessions = rnd.randint(8, 30) if dc else rnd.choices((1, 2, 3, 4, 5),
                                                        (55, 25, 8, 7, 5))[0]
    contacts = rnd.choices((0, 1, 2), (80, 15, 5))[0]
    if not pop.has_hashrate[key]:
        power = hashrate = None
    else:
        power = round(float(pop.base_power[key]) * rnd.uniform(0.7, 1.3), 3)
        hashrate = round(power / 29.5e-12, 3)  # ~29.5 J/TH, as an S19
    figures = {"hashrate_hs": hashrate,
               "hashrate_hs_low": None if hashrate is None else round(hashrate * 0.54, 3),
               "hashrate_hs_high": None if hashrate is None else round(hashrate * 1.69, 3),
               "power_w": power,
               "power_w_low": None if power is None else round(power * 0.37, 3),
               "power_w_high": None if power is None else round(power * 2.65, 3)}
    n_coins = rnd.choices((0, 1, 2), (22, 70, 8))[0]
    coins = sorted(set(rnd.choices([c for c, _ in COINS], [w for _, w in COINS], k=n_coins)))
    if "DOGE" in coins or (coins == ["LTC"] and rnd.random() < 0.5):
        coins = sorted(set(coins) | {"LTC", "DOGE"})
    n_pools = rnd.choices((0, 1, 2), (30, 60, 10))[0]
    pools = sorted(set(rnd.choices(POOLS, POOL_W, k=n_pools)))
    wallets = sorted({f"bc1q{rnd.getrandbits(160):040x}" for _ in range(rnd.choice((0, 1, 1, 2)))})
    workers = sorted({f"rig{rnd.randrange(1, 400):03d}" for _ in range(sessions)})
    windows: dict[str, list[list[str]]] = {ip: [] for ip in ips}
    evidence = []
    span = max(1, last_ns - first_ns)
    r = rnd.random
    link = ({"status": "linked", "confidence": 1.0, "reasons": []} if attributed else
            {"status": "unlinked", "confidence": 0.0,
             "reasons": ["no assignment covers the address at that time"]})
    for k in range(sessions + contacts):
        ip = ips[k % len(ips)]
        a = first_ns + (span * k) // (sessions + contacts)
        b = min(last_ns, a + int((300 + r() * 86100) * 1e9))
        ia, ib = _iso(a), _iso(b)
        windows[ip].append([ia, ib])
        sha = f"{rnd.getrandbits(256):064x}"
        frame = 1 + int(r() * 5_000_000)
        evidence.append({
            "event_type": "stratum_session" if k < sessions else "pool_contact",
            "community_id": "1:" + sha[:27] + "=",
            "src": f"{ip}:{1024 + int(r() * 64000)}",
            "dest": f"203.0.113.{1 + int(r() * 254)}:{(3333, 4444, 443, 1800)[k % 4]}",
            "first_seen": ia, "last_seen": ib,
            "capture": f"/var/lib/poolwatch/captures/edge_{1 + int(r() * 40):02d}_"
                       f"{ia[:4]}{ia[5:7]}{ia[8:10]}.pcap",
            "capture_sha256": sha,
            "frames": sorted(frame + int(r() * 60) for _ in range(8)),
            "link": link,
        })
    reasons: list[str] = []
    candidates: list[dict[str, Any]] = []
    if attributed:
        name = f"Entity {key} Co."
        reasons.append(f"{sessions + contacts} detection(s) linked to {name} (best link 1.00)")
        reasons.append(f"static record /var/lib/poolwatch/isp/static.csv:{key % 90000 + 2}: "
                       f"{ips[0]}/32 held by subscriber S-{key} from 2025-05-31T16:00:00Z to "
                       f"open end")
        confidence = (round(rnd.uniform(0.95, 1.0), 4) if rnd.random() < 0.55
                      else round(rnd.uniform(0.3, 0.95), 4))
    else:
        reasons.append("unattributed: no assignment covers the address at that time")
        confidence = 0.0
        if rnd.random() < 0.3:
            candidates = [{"subscriber_id": f"S-{key + d}", "entity_id": f"E-{key + d}",
                           "identity": f"mac:02:00:{(key + d) % 256:02x}:00:00:{d:02x}",
                           "source": "dhcp", "record": f"dhcpd.leases:{key % 5000 + d}",
                           "network": f"{ips[0]}/32", "from": _iso(first_ns),
                           "to": _iso(last_ns), "via_cgnat": None, "confidence": 0.5}
                          for d in (0, 1)]
    without = sessions if power is None else 0
    if without:
        reasons.append(f"{without} session(s) without a hashrate (algorithm unknown or "
                       "encrypted) are not in the totals")
    if contacts:
        reasons.append(f"{contacts} pool contact(s): mining without readable shares, no "
                       "hashrate from them")
    if power is not None:
        reasons.append("energy per day assumes the estimated draw runs all day, as mining "
                       "farms do")
    datacenter = dc or (power is not None and power >= 50_000)
    if dc:
        reasons.append("data centre: the registry's entity type")
    elif datacenter:
        reasons.append(f"data-centre scale: about {power / 1000:.0f} kW")
    meter_ratio = None
    if attributed and power is not None and rnd.random() < 0.2:
        meter_ratio = round(rnd.uniform(0.5, 1.4), 4)
        reasons.append(f"meter: {power * 168 / 1000 / meter_ratio:,.0f} kWh metered over 168 h "
                       f"of the reporting week (pro rata); the estimated draw would use "
                       f"{power * 168 / 1000:,.0f} kWh (ratio {meter_ratio:.2f})")
    ident = f"entity:E-{key}" if attributed else f"ip:{ips[0]}"
    return {
        "lead_id": hashlib.sha256(ident.encode()).hexdigest()[:16],
        "entity_id": f"E-{key}" if attributed else None,
        "entity_name": f"Entity {key} Co." if attributed else None,
        "entity_type": etype,
        "registration_number": f"9113{key:010d}MA0X" if attributed else None,
        "address": f"{key % 900 + 1} Harbour Road, District {key % 37}" if attributed else None,
        "region": REGIONS[int(pop.region[key])] if attributed else None,
        "subscriber_ids": [f"S-{key}"] + ([f"S-{key}-2"] if len(ips) > 2 else [])
        if attributed else [],
        "src_ips": [{"ip": ip, "windows": w} for ip, w in windows.items()],
        "sessions": sessions,
        "contacts": contacts,
        "pools": pools,
        "coins": coins,
        "wallets": wallets,
        "workers": workers,
        **figures,
        "energy_kwh_per_day": None if power is None else round(power * 24 / 1000, 3),
        "first_seen": first_ns,
        "last_seen": last_ns,
        "status": status,
        "status_change": rnd.choice(STATUS_CHANGE[status]),
        "confidence": confidence,
        "reasons": reasons,
        "datacenter": datacenter,
        "meter_ratio": meter_ratio,
        "candidates": candidates,
        "evidence": evidence,
        "_computed_at": computed_at,
    }


def side_rows(lead_pk: int, lead: dict[str, Any]) -> tuple[list[tuple], list[tuple]]:
    """``lead_values`` and ``lead_addresses`` rows, exactly as ``Store.compute_leads``."""
    values = [(lead_pk, "coin", c[:256]) for c in
              dict.fromkeys(str(c).upper() for c in lead.get("coins") or [])]
    values += [(lead_pk, "pool", p[:256]) for p in
               dict.fromkeys(str(p).lower() for p in lead.get("pools") or [])]
    addresses = []
    for entry in lead.get("src_ips") or []:
        ip = ipaddress.ip_address(entry["ip"])
        packed = V4_MAPPED + ip.packed if ip.version == 4 else ip.packed
        addresses.append((lead_pk, str(ip), packed))
    return values, addresses


def week_counts(n: int, weeks: int) -> list[int]:
    """Leads per week: n // weeks each, the remainder to the latest weeks."""
    per, extra = divmod(n, weeks)
    return [per + (1 if w >= weeks - extra else 0) for w in range(weeks)]


def lead_row(pk: int, ws: int, lead: dict[str, Any], sqlite_form: bool) -> tuple:
    row: list[Any] = [pk, ws, lead["_computed_at"]]
    for f in LEAD_FIELDS:
        v = lead[f]
        if f in JSON_FIELDS:
            v = json.dumps(v)  # SQLAlchemy's JSON serializer (json.dumps, defaults)
        elif f == "datacenter" and sqlite_form:
            v = int(v)
        row.append(v)
    return tuple(row)


_POP: dict[tuple, Population] = {}


def week_rows(job: tuple) -> tuple[int, int, list[tuple], list[tuple], list[tuple]]:
    """One week's rows for the three tables (run in a worker process): leads with their
    surrogate ids from ``first_pk`` on, in ``build_leads`` order."""
    n, weeks, seed, w, first_pk, sqlite_form = job
    counts = week_counts(n, weeks)
    pop = _POP.get((n, weeks, seed))
    if pop is None:
        pop = _POP[(n, weeks, seed)] = Population(max(counts), weeks, seed)
    ws = week_starts(weeks)[w]
    computed_at = int(LATEST_WEEK.timestamp() + 8 * 86400) * 10**9 + w * 10**9
    rows, values, addresses = [], [], []
    for i, lead in enumerate(week_leads(pop, w, ws, counts[w], seed, computed_at)):
        pk = first_pk + i
        rows.append(lead_row(pk, ws, lead, sqlite_form))
        v, a = side_rows(pk, lead)
        values += v
        addresses += a
    return w, ws, rows, values, addresses


def generate(n: int, weeks: int, seed: int, sqlite_form: bool, processes: int):
    """Each week's rows, oldest week first, made by ``processes`` worker processes."""
    import multiprocessing as mp

    counts = week_counts(n, weeks)
    firsts = np.concatenate([[1], 1 + np.cumsum(counts)[:-1]]).tolist()
    jobs = [(n, weeks, seed, w, int(firsts[w]), sqlite_form) for w in range(weeks)]
    if processes <= 1:
        yield from map(week_rows, jobs)
        return
    with mp.get_context("fork").Pool(processes) as pool:
        yield from pool.imap(week_rows, jobs)


# ---------------------------------------------------------------------------- filling
def _secondary_indexes():
    return [ix for t in (Lead.__table__, LeadValue.__table__, LeadAddress.__table__)
            for ix in sorted(t.indexes, key=lambda i: i.name)]


def fill_key(args) -> str:
    """The cache key of a filled store: the data's shape, the schema revision and the
    secondary indexes as ``models.py`` defines them now (an index edited without a new
    revision must not reuse a store built with the old one)."""
    from sqlalchemy.dialects import sqlite
    from sqlalchemy.schema import CreateIndex

    ddl = ";".join(str(CreateIndex(ix).compile(dialect=sqlite.dialect()))
                   for ix in _secondary_indexes())
    basis = f"{FILL_VERSION}|{args.leads}|{args.weeks}|{args.seed}|{head_revision()}|{ddl}"
    return hashlib.sha256(basis.encode()).hexdigest()[:12]


def fill_sqlite(args, path: Path) -> dict[str, float]:
    for suffix in ("", "-wal", "-shm"):
        Path(str(path) + suffix).unlink(missing_ok=True)
    t0 = time.perf_counter()
    store = Store.open(f"sqlite:///{path}")  # the real migrations
    with store.engine.begin() as conn:
        for ix in _secondary_indexes():
            ix.drop(conn)
    store.close()
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA journal_mode=OFF")
    db.execute("PRAGMA synchronous=OFF")
    db.execute("PRAGMA cache_size=-1000000")
    db.execute("PRAGMA foreign_keys=ON")
    lead_sql = (f"INSERT INTO leads ({', '.join(LEAD_COLUMNS)}) VALUES "
                f"({', '.join('?' * len(LEAD_COLUMNS))})")
    gen_s = 0.0
    pk = 0
    t_gen = time.perf_counter()
    for w, ws, rows, values, addresses in generate(args.leads, args.weeks, args.seed, True,
                                                   args.fill_processes):
        pk += len(rows)
        gen_s += time.perf_counter() - t_gen
        db.execute("BEGIN")
        db.executemany(lead_sql, rows)
        db.executemany("INSERT INTO lead_values (lead_pk, kind, value) VALUES (?, ?, ?)",
                       values)
        db.executemany("INSERT INTO lead_addresses (lead_pk, ip, packed) VALUES (?, ?, ?)",
                       addresses)
        db.execute("COMMIT")
        _progress(f"sqlite fill: week {w + 1}/{args.weeks}, {pk:,} leads")
        t_gen = time.perf_counter()
    t_rows = time.perf_counter()
    db.close()
    store = Store.open(f"sqlite:///{path}")
    with store.engine.begin() as conn:
        for ix in _secondary_indexes():
            ix.create(conn)
        if args.sqlite_analyze:
            conn.exec_driver_sql("ANALYZE")
    store.close()
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")  # as the Store leaves a file
    db.close()
    t_end = time.perf_counter()
    _progress("")
    return {"wait_for_rows_s": gen_s, "write_rows_s": t_rows - t0 - gen_s,
            "indexes_s": t_end - t_rows, "total_s": t_end - t0}


def _pg_admin():
    import psycopg

    return psycopg.connect(PG_BASE.replace("postgresql://", "postgresql://", 1),
                           autocommit=True)


def pg_schema_key(schema: str) -> str | None:
    with _pg_admin() as conn:
        row = conn.execute("SELECT obj_description(oid, 'pg_namespace') FROM pg_namespace "
                           "WHERE nspname = %s", (schema,)).fetchone()
    return row[0] if row else None


def fill_postgresql(args, url: str, key: str) -> dict[str, float]:
    from psycopg import sql

    schema = args.pg_schema
    with _pg_admin() as conn:
        conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))
        conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
    t0 = time.perf_counter()
    store = Store.open(url)  # the real migrations, in the schema
    with store.engine.begin() as conn:
        for ix in _secondary_indexes():
            ix.drop(conn)
    raw = store.engine.raw_connection()
    pg = raw.driver_connection
    pg.autocommit = False
    cur = pg.cursor()
    gen_s = 0.0
    pk = 0
    t_gen = time.perf_counter()
    for w, ws, rows, values, addresses in generate(args.leads, args.weeks, args.seed, False,
                                                   args.fill_processes):
        pk += len(rows)
        gen_s += time.perf_counter() - t_gen
        with cur.copy(f"COPY leads ({', '.join(LEAD_COLUMNS)}) FROM STDIN") as cp:
            for r in rows:
                cp.write_row(r)
        with cur.copy("COPY lead_values (lead_pk, kind, value) FROM STDIN") as cp:
            for r in values:
                cp.write_row(r)
        with cur.copy("COPY lead_addresses (lead_pk, ip, packed) FROM STDIN") as cp:
            for r in addresses:
                cp.write_row(r)
        pg.commit()
        _progress(f"postgresql fill: week {w + 1}/{args.weeks}, {pk:,} leads")
        t_gen = time.perf_counter()
    cur.execute("SELECT setval(pg_get_serial_sequence('leads', 'id'), %s)", (pk,))
    pg.commit()
    raw.close()
    t_rows = time.perf_counter()
    with store.engine.begin() as conn:
        conn.exec_driver_sql("SET maintenance_work_mem = '512MB'")
        for ix in _secondary_indexes():
            ix.create(conn)
    store.close()
    t_idx = time.perf_counter()
    with _pg_admin() as conn:
        conn.execute(sql.SQL("SET search_path = {}").format(sql.Identifier(schema)))
        for table in ("leads", "lead_values", "lead_addresses"):
            conn.execute(sql.SQL("VACUUM ANALYZE {}").format(sql.Identifier(table)))
        conn.execute(sql.SQL("COMMENT ON SCHEMA {} IS {}").format(
            sql.Identifier(schema), sql.Literal(key)))
    t_end = time.perf_counter()
    _progress("")
    return {"wait_for_rows_s": gen_s, "write_rows_s": t_rows - t0 - gen_s,
            "indexes_s": t_idx - t_rows,
            "vacuum_analyze_s": t_end - t_idx, "total_s": t_end - t0}


def _progress(text_: str) -> None:
    if sys.stderr.isatty():
        sys.stderr.write("\r" + text_.ljust(60) + ("" if text_ else "\r"))
        sys.stderr.flush()


def prepare(args, backend: str) -> tuple[str, dict[str, Any]]:
    """The store URL for ``backend``, filled (or reused from the cache)."""
    key = fill_key(args) + ("-an" if backend == "sqlite" and args.sqlite_analyze else "")
    if backend == "sqlite":
        path = Path(args.workdir) / f"leads-{key}.db"
        done = Path(str(path) + ".done")
        url = f"sqlite:///{path}"
        if done.exists() and path.exists() and not args.refill:
            return url, {"cached": True, "file_mb": path.stat().st_size / 1e6}
        info = fill_sqlite(args, path)
        done.write_text(json.dumps(info))
        return url, {"cached": False, **info, "file_mb": path.stat().st_size / 1e6}
    url = f"{PG_BASE}?options=-csearch_path%3D{args.pg_schema}"
    if pg_schema_key(args.pg_schema) == key and not args.refill:
        return url, {"cached": True}
    info = fill_postgresql(args, url, key)
    return url, {"cached": False, **info}


# ---------------------------------------------------------------------------- queries
MIX = (("week_status", 22), ("week_conf_type", 18), ("region", 14), ("coin", 12),
       ("address", 12), ("cursor", 15), ("default", 7))


class Queries:
    """The query mix: ``next()`` gives (kind, params) with API parameter spellings."""

    def __init__(self, weeks: list[str], samples: dict[str, list[str]], seed: int) -> None:
        self.rnd = random.Random(seed)
        self.weeks = weeks
        self.v4 = samples["v4"]
        self.v6 = samples["v6"]
        self.kinds = [k for k, _ in MIX]
        self.weights = [w for _, w in MIX]

    def week(self) -> str:
        if self.rnd.random() < 0.7:
            return self.rnd.choice(self.weeks[-4:])
        return self.rnd.choice(self.weeks)

    def maybe_week(self, p: dict[str, Any]) -> dict[str, Any]:
        if self.rnd.random() < 0.5:
            p["week"] = self.week()
        return p

    def address(self) -> str:
        r = self.rnd
        if self.v6 and r.random() < 0.15:
            net = ipaddress.ip_network(r.choice(self.v6) + "/" + r.choice(("64", "48")),
                                       strict=False)
            return str(net)
        ip = r.choice(self.v4)
        prefix = r.choices((32, 24, 16), (40, 40, 20))[0]
        return ip if prefix == 32 else str(ipaddress.ip_network(f"{ip}/{prefix}",
                                                                 strict=False))

    def next(self) -> tuple[str, dict[str, Any]]:
        r = self.rnd
        kind = r.choices(self.kinds, self.weights)[0]
        if kind == "week_status":
            return kind, {"week": self.week(),
                          "status": r.choices(("new", "active", "dormant", "gone"),
                                              (35, 35, 20, 10))[0]}
        if kind == "week_conf_type":
            types, weights = zip(*ENTITY_TYPES)
            return kind, {"week": self.week(),
                          "min_confidence": r.choice((0.5, 0.8, 0.9, 0.95)),
                          "entity_type": r.choices(types, weights)[0]}
        if kind == "region":
            region = REGIONS[r.choices(range(len(REGIONS)), REGION_W)[0]]
            return kind, self.maybe_week({"region": region})
        if kind == "coin":
            return kind, self.maybe_week({"coin": r.choices([c for c, _ in COINS],
                                                            [w for _, w in COINS])[0]})
        if kind == "address":
            return kind, self.maybe_week({"address": self.address()})
        if kind == "cursor":
            return kind, {}  # filled by the caller from an earlier answer
        return kind, ({"sort": "-last_seen"} if r.random() < 0.25 else {})


def store_kwargs(params: dict[str, Any]) -> dict[str, Any]:
    """API parameters as ``Store.list_leads`` arguments (as ``create_app`` passes them)."""
    out = dict(params)
    if "week" in out:
        out["week_start"] = datetime.fromisoformat(out.pop("week")).replace(
            tzinfo=timezone.utc).timestamp()
    return out


def sample_addresses(url: str, n: int, seed: int) -> dict[str, list[str]]:
    """Addresses of stored leads of the latest weeks, for the address queries."""
    from sqlalchemy import text

    store = Store.open(url)
    try:
        with store.engine.connect() as conn:
            top = conn.execute(text("SELECT max(id) FROM leads")).scalar() or 0
            rnd = random.Random(seed)
            lo = max(1, int(top * 0.9))
            ids = sorted(rnd.randint(lo, top) for _ in range(n))
            rows = conn.execute(text("SELECT ip FROM lead_addresses WHERE lead_pk IN "
                                     f"({', '.join(str(i) for i in ids)})")).all()
    finally:
        store.close()
    ips = [r[0] for r in rows]
    return {"v4": [i for i in ips if ":" not in i] or ["36.1.2.3"],
            "v6": [i for i in ips if ":" in i]}


# ---------------------------------------------------------------------------- measuring
def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    return float(np.percentile(np.asarray(values), q, method="higher"))


def summary_ms(lat_s: list[float], failed: int = 0) -> dict[str, float]:
    """Percentiles in ms. ``failed`` requests (errors, timeouts) count as infinitely slow,
    so a p99 over a run with more than 1 % failures is inf ("fail" in the tables)."""
    every = list(lat_s) + [float("inf")] * failed
    return {"n": len(lat_s), "p50_ms": pct(every, 50) * 1e3, "p90_ms": pct(every, 90) * 1e3,
            "p99_ms": pct(every, 99) * 1e3, "p999_ms": pct(every, 99.9) * 1e3,
            "max_ms": max(every) * 1e3 if every else float("nan"),
            "mean_ms": float(np.mean(lat_s)) * 1e3 if lat_s else float("nan")}


def ms(value: float, width: int = 7) -> str:
    return ("fail" if value == float("inf") else f"{value:.1f}").rjust(width)


def direct(url: str, queries: Queries, n: int) -> dict[str, Any]:
    """``Store.list_leads`` in this process, one call at a time (no HTTP, no key check).
    Wall time and this thread's CPU time per call: on a shared machine the two part where
    other work took the core (SQLite works in this thread; PostgreSQL's server does not)."""
    store = Store.open(url)
    cursors: deque = deque(maxlen=500)
    by_kind: dict[str, list[float]] = {}
    cpu: list[float] = []
    sizes = []
    try:
        for i in range(n + 50):
            kind, params = queries.next()
            if kind == "cursor":
                if not cursors:
                    continue
                base, cur = cursors[queries.rnd.randrange(len(cursors))]
                params = {**base, "cursor": cur}
            t, c = time.perf_counter(), time.thread_time()
            page = store.list_leads(**store_kwargs(params))
            dt, dc = time.perf_counter() - t, time.thread_time() - c
            if page.next_cursor:
                cursors.append(({k: v for k, v in params.items() if k != "cursor"},
                                page.next_cursor))
            if i >= 50:  # the first 50 warm caches
                by_kind.setdefault(kind, []).append(dt)
                cpu.append(dc)
                sizes.append(len(page.items))
    finally:
        store.close()
    every = [x for v in by_kind.values() for x in v]
    return {"all": summary_ms(every), "cpu": summary_ms(cpu),
            "items_mean": float(np.mean(sizes)),
            "by_kind": {k: summary_ms(v) for k, v in sorted(by_kind.items())}}


def cpu_times() -> list[tuple[int, int]]:
    """(busy, total) jiffies per core from /proc/stat."""
    out = []
    with open("/proc/stat") as f:
        for line in f:
            if line.startswith("cpu") and line[3].isdigit():
                v = [int(x) for x in line.split()[1:]]
                idle = v[3] + v[4]
                out.append((sum(v[:8]) - idle, sum(v[:8])))
    return out


def proc_cpu_s(pid: int) -> float:
    """CPU seconds of a process and its live children (``serve --workers``)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    total = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        children = []
    return total + sum(proc_cpu_s(int(c)) for c in children)


class Connection:
    """One keep-alive HTTP/1.1 connection: GET, then read the status line, the headers and
    a Content-Length or chunked body. asyncio streams do the buffering in C, where httpx +
    h11 spend ~5 ms of Python per 300 kB answer and would cap the generator near 150/s."""

    IDLE_S = 3.0  # uvicorn closes a keep-alive connection idle for 5 s: reopen before that

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None
        self.used = 0.0

    async def open(self) -> None:
        self.reader, self.writer = await asyncio.open_connection(self.host, self.port,
                                                                 limit=1 << 20)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None

    async def get(self, target: str, headers: dict[str, str]) -> tuple[int, bytes]:
        now = time.monotonic()
        if self.writer is not None and now - self.used > self.IDLE_S:
            self.close()
        if self.writer is None:
            await self.open()
        self.used = now
        head = f"GET {target} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n" + "".join(
            f"{k}: {v}\r\n" for k, v in headers.items()) + "\r\n"
        self.writer.write(head.encode())
        status_line = await self.reader.readuntil(b"\r\n")
        status = int(status_line.split(b" ", 2)[1])
        raw = await self.reader.readuntil(b"\r\n\r\n")
        fields = {}
        for line in raw.split(b"\r\n"):
            if b":" in line:
                k, v = line.split(b":", 1)
                fields[k.strip().lower()] = v.strip()
        if b"content-length" in fields:
            body = await self.reader.readexactly(int(fields[b"content-length"]))
        elif fields.get(b"transfer-encoding", b"").lower() == b"chunked":
            parts = []
            while True:
                size = int((await self.reader.readuntil(b"\r\n")).split(b";")[0], 16)
                if size == 0:
                    await self.reader.readuntil(b"\r\n")
                    break
                parts.append(await self.reader.readexactly(size))
                await self.reader.readexactly(2)
            body = b"".join(parts)
        else:
            body = await self.reader.read()
            self.close()
        if fields.get(b"connection", b"").lower() == b"close":
            self.close()
        self.used = time.monotonic()
        return status, body


async def load_step(base: str, keys: list[str], queries: Queries, cursors: deque,
                    rate: float, duration: float, connections: int,
                    timeout: float) -> dict[str, Any]:
    """One open-loop step: ``rate * duration`` requests, request i due at t0 + i / rate.
    At most ``connections`` requests are in flight, on as many keep-alive connections; a
    request not answered within ``timeout`` of its due time, whether still waiting for a
    connection or sent, counts as failed (and its connection is dropped and reopened)."""
    from urllib.parse import urlencode, urlsplit

    n = int(round(rate * duration))
    lat: list[float] = []
    service: list[float] = []
    lag: list[float] = []
    by_kind: dict[str, list[float]] = {}
    errors: dict[str, int] = {}
    sizes: list[int] = []
    loop = asyncio.get_running_loop()
    where = urlsplit(base)
    idle: asyncio.LifoQueue = asyncio.LifoQueue()  # the most recently used first
    pool = [Connection(where.hostname, where.port) for _ in range(connections)]
    await asyncio.gather(*(c.open() for c in pool))  # before the clock starts
    for c in pool:
        c.used = time.monotonic()
    for c in pool:
        idle.put_nowait(c)

    def fail(name: str) -> None:
        errors[name] = errors.get(name, 0) + 1

    try:
        async def one(i: int, due: float) -> None:
            kind, params = queries.next()
            if kind == "cursor":
                if cursors:
                    base_p, cur = cursors[queries.rnd.randrange(len(cursors))]
                    params = {**base_p, "cursor": cur}
                else:
                    kind, params = "default", {}
            deadline = due + timeout
            try:
                conn = await asyncio.wait_for(idle.get(), max(0.0, deadline - loop.time()))
            except TimeoutError:
                fail("timeout (never sent)")
                return
            target = "/v1/leads" + ("?" + urlencode(params) if params else "")
            try:
                sent = loop.time()
                lag.append(sent - due)
                status, body = await asyncio.wait_for(
                    conn.get(target, {"X-API-Key": keys[i % len(keys)]}),
                    max(0.001, deadline - sent))
                end = loop.time()
            except TimeoutError:
                conn.close()
                fail("timeout")
                return
            except (OSError, asyncio.IncompleteReadError, ValueError) as exc:
                conn.close()
                fail(type(exc).__name__)
                return
            finally:
                idle.put_nowait(conn)
            if status != 200:
                fail(str(status))
                return
            lat.append(end - due)
            service.append(end - sent)
            by_kind.setdefault(kind, []).append(end - due)
            sizes.append(len(body))
            tail = body[-200:]
            at = tail.rfind(b'"next_cursor":"')
            if at >= 0:
                cur = tail[at + 15:tail.index(b'"', at + 15)].decode()
                cursors.append(({k: v for k, v in params.items() if k != "cursor"}, cur))

        cpu0, t_cpu0 = cpu_times(), time.process_time()
        t0 = loop.time() + 0.05
        tasks = []
        for i in range(n):
            due = t0 + i / rate
            delay = due - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one(i, due)))
        await asyncio.gather(*tasks)
        t_end = loop.time()
        cpu1, t_cpu1 = cpu_times(), time.process_time()
    finally:
        for c in pool:
            c.close()
    ok = len(lat)
    busy = [round(100.0 * (b1 - b0) / max(1, (t1 - t0_)), 1)
            for (b0, t0_), (b1, t1) in zip(cpu0, cpu1)]
    return {"rate": rate, "duration_s": duration, "sent": n, "ok": ok,
            "errors": sum(errors.values()), "error_kinds": errors,
            "achieved_rps": ok / (t_end - t0), "elapsed_s": t_end - t0,
            **summary_ms(lat, sum(errors.values())), "ok_only": summary_ms(lat),
            "service_p99_ms": pct(service, 99) * 1e3,
            "send_lag_p99_ms": pct(lag, 99) * 1e3,
            "send_lag_max_ms": max(lag) * 1e3 if lag else float("nan"),
            "body_kb_mean": float(np.mean(sizes)) / 1e3 if sizes else float("nan"),
            "core_busy_pct": busy, "client_cpu_s": t_cpu1 - t_cpu0,
            "by_kind": {k: summary_ms(v) for k, v in sorted(by_kind.items())}}


def drain(pid: int, pause: float, limit: float = 180.0) -> float:
    """Wait until the server has worked off what the last step left (its CPU under 10 %
    over a second), then ``pause`` seconds more. Returns the seconds waited."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < limit:
        c0 = proc_cpu_s(pid)
        time.sleep(1.0)
        if proc_cpu_s(pid) - c0 < 0.1:
            break
    time.sleep(pause)
    return time.monotonic() - t0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


STUB = """
import sys, uvicorn
body = b'{"items":["' + b'x' * int(sys.argv[2]) + b'"],"next_cursor":null}'
async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"application/json")]})
    await send({"type": "http.response.body", "body": body})
uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), log_level="warning")
"""


class Server:
    """``poolwatch serve --db URL`` in a process of its own, pinned with taskset. With
    ``stub_bytes``, a bare uvicorn app that answers every request with that many bytes of
    JSON instead (to measure the generator itself)."""

    def __init__(self, url: str, cpu: str, log: Path, stub_bytes: int = 0,
                 workers: int = 1) -> None:
        self.port = free_port()
        cmd = [sys.executable, "-m", "poolwatch.cli", "serve", "--db", url, "--host",
               "127.0.0.1", "--port", str(self.port), "--workers", str(workers)]
        if stub_bytes:
            cmd = [sys.executable, "-c", STUB, str(self.port), str(stub_bytes)]
        if cpu:
            cmd = ["taskset", "-c", cpu] + cmd
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(
            [str(ROOT / "src"), str(ROOT / "api"), os.environ.get("PYTHONPATH", "")])}
        self.log = open(log, "w")
        self.proc = subprocess.Popen(cmd, stdout=self.log, stderr=subprocess.STDOUT, env=env)
        self.base = f"http://127.0.0.1:{self.port}"

    def wait(self, timeout: float = 90.0) -> None:
        import httpx

        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if self.proc.poll() is not None:
                raise SystemExit(f"the server exited ({self.proc.returncode}): see "
                                 f"{self.log.name}")
            try:
                if httpx.get(self.base + "/health", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.3)
        raise SystemExit(f"the server did not answer in {timeout:.0f} s: see {self.log.name}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()


def pin(cpu: str) -> None:
    if cpu:
        os.sched_setaffinity(0, {int(c) for c in cpu.split(",")})
    else:
        os.sched_setaffinity(0, set(range(os.cpu_count() or 1)))


# ---------------------------------------------------------------------------- main
def calibrate(args) -> list[dict[str, Any]]:
    """The generator against a server that does nothing: the floor under every figure."""
    server = Server("", args.server_cpu, Path(args.workdir) / "stub.log",
                    stub_bytes=int(args.calibrate * 1000))
    weeks = [datetime.fromtimestamp(ws / 1e9, timezone.utc).strftime("%Y-%m-%d")
             for ws in week_starts(args.weeks)]
    queries = Queries(weeks, {"v4": ["36.1.2.3"], "v6": []}, args.seed)
    steps = []
    try:
        server.wait()
        pin(args.client_cpu)
        print(f"\n== generator calibration: a bare uvicorn app answering {args.calibrate:.0f} kB "
              f"to every request")
        print("     rate   achieved    ok  errors    p50     p90     p99     max   "
              "send-lag-p99  gen-CPU")
        for rate in args.rates:
            step = asyncio.run(load_step(server.base, ["-"], queries, deque(), rate,
                                         args.duration, args.connections, args.timeout))
            steps.append(step)
            print(f"     {rate:>4.0f} {step['achieved_rps']:>9.1f} {step['ok']:>6} "
                  f"{step['errors']:>6} {ms(step['p50_ms'])} {ms(step['p90_ms'])} "
                  f"{ms(step['p99_ms'])} {ms(step['max_ms'], 8)}   "
                  f"{ms(step['send_lag_p99_ms'], 10)}   "
                  f"{100 * step['client_cpu_s'] / step['elapsed_s']:>5.0f} %")
            time.sleep(args.pause)
    finally:
        pin("")
        server.stop()
    return steps


def run_backend(args, backend: str) -> dict[str, Any]:
    pin("")
    t = time.perf_counter()
    url, fill = prepare(args, backend)
    fill["prepare_s"] = time.perf_counter() - t
    print(f"\n== {backend}: {args.leads:,} leads over {args.weeks} weeks "
          f"({'cached store' if fill['cached'] else 'filled in %.0f s' % fill['total_s']})")
    if not fill["cached"]:
        print("   fill: " + ", ".join(f"{k} {v:.1f}" for k, v in fill.items()
                                      if isinstance(v, float)))
    weeks = [datetime.fromtimestamp(ws / 1e9, timezone.utc).strftime("%Y-%m-%d")
             for ws in week_starts(args.weeks)]
    samples = sample_addresses(url, 400, args.seed)
    out: dict[str, Any] = {"backend": backend, "fill": fill}

    if args.direct:
        pin(args.server_cpu)
        d = direct(url, Queries(weeks, samples, args.seed + 1), args.direct)
        out["direct"] = d
        a = d["all"]
        print(f"   Store.list_leads direct ({a['n']} calls, one at a time, "
              f"{d['items_mean']:.0f} items/page): p50 {a['p50_ms']:.1f} ms, "
              f"p90 {a['p90_ms']:.1f}, p99 {a['p99_ms']:.1f}, max {a['max_ms']:.1f}, "
              f"mean {a['mean_ms']:.1f}")
        c = d["cpu"]
        print(f"     this thread's CPU per call: p50 {c['p50_ms']:.1f} ms, p90 {c['p90_ms']:.1f}, "
              f"p99 {c['p99_ms']:.1f}, mean {c['mean_ms']:.1f}")
        for k, s in d["by_kind"].items():
            print(f"     {k:<15} n={s['n']:<5} p50 {s['p50_ms']:7.1f}  p99 {s['p99_ms']:7.1f}"
                  f"  max {s['max_ms']:7.1f}")
    if not args.rates:
        return out

    pin("")
    store = Store.open(url)
    for k in store.list_keys():  # left by a run that was killed
        if k["name"].startswith("bench-api-") and k["revoked_at"] is None:
            store.revoke_key(k["key_id"])
    keys = [store.create_key(f"bench-api-{i}", args.scope) for i in range(args.keys)]
    store.close()
    log = Path(args.workdir) / f"serve-{backend}.log"
    server = Server(url, args.server_cpu, log, workers=args.workers)
    steps = []
    try:
        server.wait()
        pin(args.client_cpu)
        queries = Queries(weeks, samples, args.seed + 2)
        cursors: deque = deque(maxlen=1000)
        secrets_ = [s for _, s in keys]
        asyncio.run(load_step(server.base, secrets_, queries, cursors, min(10.0, args.rates[0]),
                              args.warmup, args.connections, args.timeout))  # warm-up
        drain(server.proc.pid, 1.0)
        print(f"   HTTP, open loop, {args.duration:.0f} s per step, server "
              f"{'on core ' + args.server_cpu if args.server_cpu else 'unpinned'}, generator "
              f"{'on core ' + args.client_cpu if args.client_cpu else 'unpinned'}:")
        print("     rate   achieved    ok  errors    p50     p90     p99   p99.9     max   "
              "server-CPU  cores-busy%  gen-CPU  body-kB")
        saturated = None
        for n_step, rate in enumerate(args.rates, 1):
            if saturated is not None and not args.keep_going:
                print(f"     {rate:>4.0f}   skipped: more than half the requests failed at "
                      f"{saturated:.0f}/s")
                steps.append({"rate": rate, "skipped": True, "saturated_at": saturated})
                continue
            s0 = proc_cpu_s(server.proc.pid)
            step = asyncio.run(load_step(server.base, secrets_, queries, cursors, rate,
                                         args.duration, args.connections, args.timeout))
            step["server_cpu_s"] = proc_cpu_s(server.proc.pid) - s0
            steps.append(step)
            print(f"     {rate:>4.0f} {step['achieved_rps']:>9.1f} {step['ok']:>6} "
                  f"{step['errors']:>6} {ms(step['p50_ms'])} {ms(step['p90_ms'])} "
                  f"{ms(step['p99_ms'])} {ms(step['p999_ms'])} {ms(step['max_ms'], 8)}   "
                  f"{100 * step['server_cpu_s'] / step['elapsed_s']:>6.0f} %   "
                  f"{'/'.join(f'{b:.0f}' for b in step['core_busy_pct']):>11}  "
                  f"{100 * step['client_cpu_s'] / step['elapsed_s']:>5.0f} %  "
                  f"{step['body_kb_mean']:>6.1f}"
                  + (f"   {step['error_kinds']}" if step["errors"] else ""))
            if step["errors"] > step["sent"] / 2:
                saturated = rate
            if n_step < len(args.rates) and (saturated is None or args.keep_going):
                # the next step starts on an idle server (a saturated one has a backlog
                # to work off: it does not notice that the generator gave up waiting)
                step["drain_s"] = drain(server.proc.pid, args.pause)
        done = [x for x in steps if not x.get("skipped") and x["ok"]]
        focus = min(done or steps, key=lambda s: abs(s["rate"] - 200))
        print(f"   by query kind at {focus['rate']:.0f}/s (ms from due time):")
        for k, s in focus.get("by_kind", {}).items():
            print(f"     {k:<15} n={s['n']:<5} p50 {s['p50_ms']:7.1f}  p90 {s['p90_ms']:7.1f}"
                  f"  p99 {s['p99_ms']:7.1f}")
    finally:
        pin("")
        server.stop()
        store = Store.open(url)
        for key_id, _ in keys:
            store.revoke_key(key_id)
        store.close()
    out["steps"] = steps
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--leads", type=int, default=1_000_000)
    ap.add_argument("--weeks", type=int, default=50)
    ap.add_argument("--backends", default="sqlite,postgresql")
    ap.add_argument("--keep-going", action="store_true",
                    help="run every rate even after one where most requests failed")
    ap.add_argument("--rates", default="50,100,200,400",
                    help="requests per second, comma-separated ('' for none)")
    ap.add_argument("--duration", type=float, default=25.0, help="seconds per rate step")
    ap.add_argument("--warmup", type=float, default=5.0, help="seconds at 10/s first")
    ap.add_argument("--pause", type=float, default=3.0, help="seconds between steps")
    ap.add_argument("--direct", type=int, default=2000,
                    help="Store.list_leads calls timed without HTTP (0: none)")
    ap.add_argument("--connections", type=int, default=128)
    ap.add_argument("--timeout", type=float, default=10.0,
                    help="seconds from a request's due time after which it counts as failed")
    ap.add_argument("--keys", type=int, default=32)
    ap.add_argument("--scope", default="analyst", choices=("analyst", "investigator"),
                    help="investigator: every list is also an audit-log write")
    ap.add_argument("--server-cpu", default="0", help="taskset list for the server ('': none)")
    ap.add_argument("--client-cpu", default="1", help="cores for the generator ('': none)")
    ap.add_argument("--workers", type=int, default=1,
                    help="poolwatch serve --workers (with 2, also pass --server-cpu '' "
                         "--client-cpu '' to let them use both cores)")
    ap.add_argument("--workdir", default="/tmp/poolwatch-bench-api")
    ap.add_argument("--pg-schema", default="pwbench")
    ap.add_argument("--seed", type=int, default=6)
    ap.add_argument("--sqlite-analyze", action="store_true",
                    help="run ANALYZE on the SQLite store after filling (the Store never does)")
    ap.add_argument("--refill", action="store_true", help="ignore the cached stores")
    ap.add_argument("--fill-processes", type=int, default=2,
                    help="worker processes that make the rows")
    ap.add_argument("--calibrate", type=float, default=0.0, metavar="KB",
                    help="first drive a bare uvicorn app answering KB kilobytes, at the same "
                         "rates: what the generator itself adds")
    ap.add_argument("--json", help="write every figure to this file")
    args = ap.parse_args(argv)
    args.rates = [float(r) for r in args.rates.split(",") if r.strip()]
    workdir = Path(args.workdir).resolve()
    if workdir == ROOT or ROOT in workdir.parents:
        ap.error("--workdir must be outside the repository")
    workdir.mkdir(parents=True, exist_ok=True)
    args.workdir = str(workdir)
    if not args.pg_schema.isidentifier() or args.pg_schema.lower() == "public":
        ap.error("--pg-schema: a plain identifier other than public")

    with open("/proc/loadavg") as f:
        load = f.read().split()[:3]
    cpu = next((ln.split(":", 1)[1].strip() for ln in open("/proc/cpuinfo")
                if ln.startswith("model name")), platform.processor())
    print(f"machine: {cpu}, {os.cpu_count()} CPUs, Python {platform.python_version()}, "
          f"load average {' '.join(load)}")
    results = {"argv": sys.argv[1:], "started": datetime.now(timezone.utc).isoformat(),
               "machine": cpu, "load_average": load, "backends": []}
    if args.calibrate:
        results["calibration"] = calibrate(args)
    for backend in [b.strip() for b in args.backends.split(",") if b.strip()]:
        if backend not in ("sqlite", "postgresql"):
            ap.error(f"unknown backend {backend!r}")
        results["backends"].append(run_backend(args, backend))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))
    print()
    for b in results["backends"]:
        for s in b.get("steps", []):
            if s["rate"] == 200 and s.get("skipped"):
                print(f"goal p99 < 50 ms at 200/s, {b['backend']}: NOT met (saturated at "
                      f"{s['saturated_at']:.0f}/s already)")
            elif s["rate"] == 200:
                met = s["p99_ms"] < 50 and s["errors"] == 0 and s["achieved_rps"] >= 190
                print(f"goal p99 < 50 ms at 200/s, {b['backend']}: "
                      f"{'met' if met else 'NOT met'} (p99 {s['p99_ms']:.1f} ms, "
                      f"{s['achieved_rps']:.0f}/s achieved, {s['errors']} errors)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
