#!/usr/bin/env python3
"""Corpus evaluation of ``poolwatch scan``: nDPI's 543 regression captures.

The goal (issue 3): on ``../shared/peer-corpus/ndpi/`` the session scan finds all 4 mining
flows of ``mining.pcapng`` with the right dialect and coin, and no session in any other
capture there.

``poolwatch.scan.scan_sessions`` runs once per capture (so each session is attributed to
its file). The 4 flows are matched by their endpoints against the flows nDPI's own
expected output (``expected/mining.pcapng.out``) labels ``Mining``, and their dialect and
coin (and algorithm, where the table gives one) against :data:`EXPECTED_MINING` below. Every
other capture must give no session.
Captures poolwatch cannot read (damaged files) are listed with the reader's error and do
not fail the goal; a capture on which the scan raises an exception does, because then
nothing is known about it.

The captures nDPI puts in the Crypto_Currency category or labels JSON-RPC (Bitcoin,
Ethereum, Monero and Nano peer-to-peer traffic, plain JSON-RPC) are listed as the negative
controls that matter most: JSON over TCP that is not mining.

The corpus lives beside the repository and is never copied into it. Usage::

    python benchmarks/eval_corpus_sessions.py                  # readable report
    python benchmarks/eval_corpus_sessions.py --json /tmp/eval.json

Exit status: 0 the goal holds, 1 it does not, 2 the corpus is absent.
``tests/test_peer_corpus.py`` loads this file and runs :func:`evaluate` as a test.
"""

from __future__ import annotations

import argparse
import json
import logging
import re
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_CORPUS = REPO_ROOT.parent / "shared" / "peer-corpus" / "ndpi"
MINING_CAPTURE = "mining.pcapng"
CAPTURE_SUFFIXES = (".pcap", ".pcapng", ".cap")

Endpoint = tuple[str, int]


@dataclass(frozen=True)
class ExpectedSession:
    """One mining flow of mining.pcapng as poolwatch must report it."""

    miner: Endpoint  # the session's src (the client)
    pool: Endpoint  # the session's dest
    dialect: str
    coin: str | None  # None: the traffic does not tell the coin, so the scan must say null
    ndpi_currency: str  # nDPI's label, for the report (a guess from the dialect, see below)
    algorithm: str | None = None  # checked when given


# The 4 mining flows of mining.pcapng. Endpoints: nDPI's expected output
# (expected/mining.pcapng.out, the 4 flows with [proto: 42/Mining]). Dialect and coin: what
# `poolwatch scan` reported on 2026-11-25 (commit 36c0709), each checked against the payload
# (`tshark -r mining.pcapng -qz follow,tcp,ascii,N`, N = the tshark stream number below).
# nDPI's "currency" is not a coin decision: its mining dissector labels a flow by the shape
# of the first JSON ("worker" or "eth1.0" -> Ethereum, "method"/"blob" -> ZCash and/or
# Monero), so it only corroborates the dialect family.
EXPECTED_MINING: tuple[ExpectedSession, ...] = (
    # Stream 0 (Jan 2017): {"worker": "eth1.0", "method": "eth_submitLogin", params
    # ["0x9c99…303b/tester.worker1/vvesely@mailinator"]}, then eth_getWork / eth_submitWork /
    # eth_submitHashrate with a "worker" member on every request: the Claymore EthProxy
    # dialect. Coin null: the login is a bare 0x address (the format of every EVM chain:
    # ETH, ETC, EXP, UBQ in 2017; the scan lists ETH ETC ETHW EXP UBQ CLO as
    # coin_candidates), the capture has no DNS or TLS name for 185.71.66.39, and port 9999
    # alone is ambiguous in fingerprints/ports.csv (Nanopool ETH, historic, or xmrpool.eu
    # TLS). The wallet/worker/email login and port 9999 point to Nanopool ETH, but nothing
    # in the traffic proves the chain, so null is the documented answer ("null when it
    # cannot be told", docs/records.md). The algorithm (ethash) is the same for all
    # candidates in 2017.
    ExpectedSession(("147.229.13.222", 49307), ("185.71.66.39", 9999),
                    dialect="ethproxy", coin=None, ndpi_currency="Ethereum"),
    # Stream 1 (Dec 2017): {"method":"login","params":{"login":"4BCe…CDm.<64 hex payment
    # id>.ryzen","agent":"xmr-stak-cpu/1.3.0-1.5.0"}}, jobs with "blob" and a 4-byte
    # "target" ("dc460300" = difficulty 20000), "submit" with nonce/result: the CryptoNote
    # (xmrig-style) JSON-RPC dialect. Coin XMR: the login starts with a 95-character
    # address beginning with 4, the Monero standard address format, and the job blobs start
    # with 0x06 0x06 (block major version 6, Monero's Sep 2017 fork). nDPI: "ZCash/Monero".
    # Algorithm cryptonight: Monero hashed block versions 1-6 with original CryptoNight
    # (cn/0) and moved to RandomX only at version 12 (Nov 2019); the scan reads the version
    # from the blob (fingerprints/dialects.yaml, recognise.blob_major_versions). Before that
    # it said randomx, from the wallet format alone.
    ExpectedSession(("192.168.2.92", 55190), ("178.32.196.217", 9050),
                    dialect="cryptonote", coin="XMR", ndpi_currency="ZCash/Monero",
                    algorithm="cryptonight"),
    # Stream 3: mining.subscribe ["EWBF 0.3.4b", null, "cn1-zcash.flypool.org", "3333"],
    # mining.authorize ["t1fJuHWrfcWnYMYyP9VAF96vRnvND2NziMG.c1"], mining.set_target with a
    # 256-bit target, mining.notify with 8 params (version "04000000", Zcash block header
    # fields), mining.submit with a 1344-byte Equihash(200,9) solution (fd4005…): the
    # Zcash variant of Stratum V1. Coin ZEC: the pool host the miner names is Flypool's
    # Zcash endpoint, and t1… is a Zcash transparent address. nDPI: "ZCash".
    ExpectedSession(("192.168.2.148", 53846), ("116.211.167.195", 3333),
                    dialect="stratum-v1-zcash", coin="ZEC", ndpi_currency="ZCash"),
    # Stream 2: the same miner (EWBF 0.3.4b) to eu1-zcash.flypool.org:3333 as
    # t1fAhZF5aUJdY7CikGULHmeYk7id8qmvbAd.rig4, 46 mining.submit (45 accepted, 1 rejected):
    # stratum-v1-zcash, ZEC, as stream 3. nDPI: "ZCash".
    ExpectedSession(("192.168.2.148", 46838), ("94.23.199.191", 3333),
                    dialect="stratum-v1-zcash", coin="ZEC", ndpi_currency="ZCash"),
)

# One flow line of ndpiReader's output, e.g.
#   1  TCP 192.168.2.148:46838 <-> 94.23.199.191:3333 [proto: 42/Mining][...][cat: Mining/99]
# IPv6 addresses are in brackets: [2001:db8::1]:443.
_NDPI_FLOW = re.compile(
    r"^\s*\d+\s+(?P<l4>TCP|UDP)\s+(?P<a>\[[^\]]+\]|[^\s:]+):(?P<ap>\d+)\s+<?->\s+"
    r"(?P<b>\[[^\]]+\]|[^\s:]+):(?P<bp>\d+)\s+\[proto:\s*(?P<proto>[^\]]+)\]")
_NDPI_CAT = re.compile(r"\[cat:\s*(?P<cat>[^/\]]+)")
_NDPI_CURRENCY = re.compile(r"\[currency:\s*(?P<cur>[^\]]+)\]")


def _ep(ip: str, port: int | str) -> Endpoint:
    return (ip.strip("[]"), int(port))


def fmt_ep(ep: Endpoint) -> str:
    ip, port = ep
    return f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}"


def ndpi_flows(expected_file: Path) -> list[dict[str, Any]]:
    """The flows of one nDPI expected-output file: endpoints, protocol, category, currency."""
    flows = []
    try:
        text = expected_file.read_text(errors="replace")
    except OSError:
        return flows
    for line in text.splitlines():
        m = _NDPI_FLOW.match(line)
        if not m:
            continue
        cat = _NDPI_CAT.search(line)
        cur = _NDPI_CURRENCY.search(line)
        flows.append({
            "l4": m["l4"], "client": _ep(m["a"], m["ap"]), "server": _ep(m["b"], m["bp"]),
            "proto": m["proto"].strip(), "category": cat["cat"].strip() if cat else None,
            "currency": cur["cur"].strip() if cur else None,
        })
    return flows


def _is_mining(flow: dict[str, Any]) -> bool:
    return "Mining" in flow["proto"].split("/", 1)[-1].split(".") or flow["category"] == "Mining"


def _session_row(s: Any) -> dict[str, Any]:
    """The fields the report shows, plus how coin and algorithm were decided."""
    ev = s.evidence or {}
    return {
        "miner": fmt_ep((s.src_ip, s.src_port)), "pool": fmt_ep((s.dest_ip, s.dest_port)),
        "src_ip": s.src_ip, "src_port": s.src_port, "dest_ip": s.dest_ip,
        "dest_port": s.dest_port, "community_id": s.community_id, "dialect": s.dialect,
        "coin": s.coin, "algorithm": s.algorithm, "agent": s.agent, "worker": s.worker,
        "wallet": s.wallet, "pool_name": s.pool, "pool_host": s.pool_host,
        "shares_submitted": s.shares_submitted, "shares_accepted": s.shares_accepted,
        "shares_rejected": s.shares_rejected, "hashrate_hs": s.hashrate_hs,
        "coin_from": ev.get("coin_from"), "coin_candidates": ev.get("coin_candidates"),
        "algorithm_from": ev.get("algorithm_from"),
    }


def corpus_present(corpus: Path) -> bool:
    return (corpus / "pcap").is_dir() and any((corpus / "pcap").iterdir())


def evaluate(corpus: Path = DEFAULT_CORPUS, *, engine: str = "fast") -> dict[str, Any]:
    """Scan every capture of the corpus for sessions and check the goal; a JSON-able dict.

    ``result["goal_met"]`` is the verdict and ``result["failures"]`` says what broke it.
    Raises FileNotFoundError when the corpus (``CORPUS/pcap``) is absent.
    """
    if not corpus_present(corpus):
        raise FileNotFoundError(f"nDPI's captures are not at {corpus / 'pcap'}")
    from poolwatch.detect.records import PoolContact
    from poolwatch.scan import ScanSummary, scan_detections

    started = time.perf_counter()
    captures = sorted(p for p in (corpus / "pcap").iterdir()
                      if p.is_file() and p.suffix.lower() in CAPTURE_SUFFIXES)
    per_capture: dict[str, list[dict[str, Any]]] = {}
    contacts_by_capture: dict[str, list[dict[str, Any]]] = {}
    read_errors: dict[str, str] = {}
    crashes: dict[str, str] = {}
    packets = 0
    slowest: list[tuple[float, str]] = []
    for capture in captures:
        summary = ScanSummary(engine=engine)
        t0 = time.perf_counter()
        try:
            records = list(scan_detections([capture], engine=engine, summary=summary))
            found = [r for r in records if not isinstance(r, PoolContact)]
            contacts = [r for r in records if isinstance(r, PoolContact)]
        except Exception as exc:  # noqa: BLE001 - a crash is reported, not raised
            crashes[capture.name] = f"{type(exc).__name__}: {exc}"
            continue
        slowest.append((time.perf_counter() - t0, capture.name))
        packets += summary.packets
        errors = [f.error for f in summary.files if f.error]
        if errors:
            read_errors[capture.name] = "; ".join(errors)
        if found:
            per_capture[capture.name] = [_session_row(s) for s in found]
        if contacts:
            contacts_by_capture[capture.name] = [
                {"client": f"{c.src_ip}:{c.src_port}", "pool": f"{c.dest_ip}:{c.dest_port}",
                 "via": list(c.via), "score": c.score, "pool_host": c.pool_host}
                for c in contacts]

    # nDPI's view: the Mining flows of every capture, and the crypto/JSON-RPC captures.
    ndpi_mining: dict[str, list[dict[str, Any]]] = {}
    controls: dict[str, list[str]] = {}
    for capture in captures:
        flows = ndpi_flows(corpus / "expected" / (capture.name + ".out"))
        mining = [f for f in flows if _is_mining(f)]
        if mining:
            ndpi_mining[capture.name] = [
                {"client": fmt_ep(f["client"]), "server": fmt_ep(f["server"]),
                 "proto": f["proto"], "currency": f["currency"]} for f in mining]
        labels = sorted({f["proto"] for f in flows if f["category"] == "Crypto_Currency"
                         or "JSON-RPC" in f["proto"]})
        if labels and capture.name != MINING_CAPTURE:
            controls[capture.name] = labels

    failures: list[str] = []
    found_mining = per_capture.get(MINING_CAPTURE, [])
    if MINING_CAPTURE not in {c.name for c in captures}:
        failures.append(f"{MINING_CAPTURE} is not in the corpus")
    if MINING_CAPTURE in crashes:
        failures.append(f"the scan crashed on {MINING_CAPTURE}: {crashes[MINING_CAPTURE]}")

    # The expected table against nDPI's own Mining flows: same 4 connections?
    ndpi_pairs = {frozenset((f["client"], f["server"])): f
                  for f in ndpi_mining.get(MINING_CAPTURE, [])}
    table_pairs = {frozenset((fmt_ep(e.miner), fmt_ep(e.pool))) for e in EXPECTED_MINING}
    if set(ndpi_pairs) != table_pairs:
        failures.append("the expected table and nDPI's Mining flows of "
                        f"{MINING_CAPTURE} differ: nDPI {sorted(map(sorted, ndpi_pairs))}")

    matches = []
    used: set[int] = set()
    for exp in EXPECTED_MINING:
        miner, pool = fmt_ep(exp.miner), fmt_ep(exp.pool)
        ndpi = ndpi_pairs.get(frozenset((miner, pool)))
        hit = next(((i, s) for i, s in enumerate(found_mining)
                    if i not in used and {s["miner"], s["pool"]} == {miner, pool}), None)
        row: dict[str, Any] = {
            "miner": miner, "pool": pool, "expected_dialect": exp.dialect,
            "expected_coin": exp.coin, "expected_algorithm": exp.algorithm,
            "ndpi_proto": ndpi["proto"] if ndpi else None,
            "ndpi_currency": ndpi["currency"] if ndpi else None,
            "ndpi_client_is_miner": (ndpi["client"] == miner) if ndpi else None,
            "found": hit is not None, "dialect": None, "coin": None, "algorithm": None,
            "roles_right": None, "ok": False,
        }
        if hit is None:
            failures.append(f"{MINING_CAPTURE}: no session for {miner} <-> {pool}")
        else:
            i, s = hit
            used.add(i)
            row.update(dialect=s["dialect"], coin=s["coin"], algorithm=s["algorithm"],
                       worker=s["worker"], roles_right=s["miner"] == miner)
            wrong = []
            if not row["roles_right"]:
                wrong.append(f"miner is {s['miner']}, expected {miner}")
            if s["dialect"] != exp.dialect:
                wrong.append(f"dialect {s['dialect']}, expected {exp.dialect}")
            if s["coin"] != exp.coin:
                wrong.append(f"coin {s['coin']}, expected {exp.coin}")
            if exp.algorithm is not None and s["algorithm"] != exp.algorithm:
                wrong.append(f"algorithm {s['algorithm']}, expected {exp.algorithm}")
            row["ok"] = not wrong
            if wrong:
                failures.append(f"{MINING_CAPTURE}: {miner} -> {pool}: " + "; ".join(wrong))
        matches.append(row)
    extra_mining = [s for i, s in enumerate(found_mining) if i not in used]
    for s in extra_mining:
        failures.append(f"{MINING_CAPTURE}: unexpected session {s['miner']} -> {s['pool']} "
                        f"({s['dialect']})")

    others = {name: rows for name, rows in per_capture.items() if name != MINING_CAPTURE}
    other_count = sum(len(rows) for rows in others.values())
    if other_count:
        failures.append(f"{other_count} session(s) in {len(others)} other capture(s): "
                        + ", ".join(sorted(others)))
    for name, err in crashes.items():
        if name != MINING_CAPTURE:
            failures.append(f"the scan crashed on {name}: {err}")

    return {
        "corpus": str(corpus),
        "engine": engine,
        "captures": len(captures),
        "packets": packets,
        "runtime_s": round(time.perf_counter() - started, 3),
        "slowest": [{"capture": n, "seconds": round(t, 3)} for t, n in sorted(slowest)[-5:][::-1]],
        "sessions_total": sum(len(rows) for rows in per_capture.values()),
        "sessions_by_capture": per_capture,
        "mining_capture": MINING_CAPTURE,
        "mining_expected": matches,
        "mining_unexpected": extra_mining,
        "other_sessions": other_count,
        "other_captures_with_sessions": sorted(others),
        # pool contacts (issue 4): none is expected outside mining.pcapng, whose 4 mining
        # flows are plaintext sessions; any contact elsewhere is a false positive, reported
        "contacts_by_capture": contacts_by_capture,
        "contacts_total": sum(len(rows) for rows in contacts_by_capture.values()),
        "other_contacts": sum(len(rows) for name, rows in contacts_by_capture.items()
                              if name != MINING_CAPTURE),
        "read_errors": read_errors,
        "crashes": crashes,
        "ndpi_mining_flows": ndpi_mining,
        "ndpi_mining_elsewhere": sorted(n for n in ndpi_mining if n != MINING_CAPTURE),
        "negative_controls": controls,
        "failures": failures,
        "goal_met": not failures,
    }


def render(result: dict[str, Any]) -> str:
    """The readable report."""
    out = ["poolwatch scan: corpus evaluation", "=" * 33, ""]
    out.append(f"corpus: {result['corpus']} ({result['captures']} captures, "
               f"{result['packets']:,} packets read, engine {result['engine']})")
    out.append(f"runtime: {result['runtime_s']:.2f} s for one scan_detections call per capture")
    out.append("slowest (the first capture includes loading the numba kernels): "
               + ", ".join(f"{s['capture']} {s['seconds']:.2f} s" for s in result["slowest"][:3]))
    out.append("")
    out.append(f"sessions per capture ({result['sessions_total']} in "
               f"{len(result['sessions_by_capture'])} of {result['captures']} captures):")
    if not result["sessions_by_capture"]:
        out.append("  (none)")
    for name, rows in sorted(result["sessions_by_capture"].items()):
        out.append(f"  {name}: {len(rows)}")
        for s in rows:
            shares = ("-" if s["shares_submitted"] is None else
                      f"{s['shares_accepted']}/{s['shares_rejected']} of {s['shares_submitted']}")
            out.append(f"    {s['miner']} -> {s['pool']}  dialect {s['dialect']}  coin "
                       f"{s['coin'] or 'null'}  algorithm {s['algorithm'] or 'null'}  worker "
                       f"{s['worker'] or '-'}  shares ok/rej {shares}"
                       + (f"  pool {s['pool_name']} ({s['pool_host']})" if s["pool_name"] else ""))
            if s["coin"] is None and s["coin_candidates"]:
                out.append(f"      coin null: the wallet fits {', '.join(s['coin_candidates'])}")
    out.append("")
    out.append(f"{result['mining_capture']}: the {len(result['mining_expected'])} flows nDPI "
               "labels Mining, against the scan:")
    for m in result["mining_expected"]:
        verdict = "OK" if m["ok"] else ("MISSING" if not m["found"] else "WRONG")
        got = (f"got {m['dialect']} / {m['coin'] or 'null'} / {m['algorithm'] or 'null'}"
               if m["found"] else "no session")
        out.append(f"  [{verdict}] {m['miner']} -> {m['pool']}: expected {m['expected_dialect']}"
                   f" / {m['expected_coin'] or 'null'}"
                   + (f" / {m['expected_algorithm']}" if m["expected_algorithm"] else "")
                   + f", {got}; nDPI {m['ndpi_proto'] or '-'}, "
                   f"currency {m['ndpi_currency'] or '-'}")
    for s in result["mining_unexpected"]:
        out.append(f"  [EXTRA] {s['miner']} -> {s['pool']}: {s['dialect']} / {s['coin']}")
    out.append("")
    out.append(f"sessions in the other {result['captures'] - 1} captures: "
               f"{result['other_sessions']} (must be 0)"
               + (": " + ", ".join(result["other_captures_with_sessions"])
                  if result["other_sessions"] else ""))
    elsewhere = result["ndpi_mining_elsewhere"]
    out.append("other captures nDPI labels Mining: " + (", ".join(elsewhere) or "none"))
    if result["negative_controls"]:
        out.append("negative controls (nDPI Crypto_Currency or JSON-RPC, no mining): "
                   + ", ".join(f"{n} ({', '.join(p)})"
                               for n, p in sorted(result["negative_controls"].items())))
    out.append("")
    out.append(f"pool contacts (issue 4): {result['contacts_total']}, of which "
               f"{result['other_contacts']} outside {result['mining_capture']} "
               "(false positives: this corpus has no other mining)")
    for name, rows in sorted(result["contacts_by_capture"].items()):
        for c in rows:
            out.append(f"  {name}: {c['client']} -> {c['pool']}  via {'+'.join(c['via'])}  "
                       f"score {c['score']:.2f}" + (f"  {c['pool_host']}" if c["pool_host"]
                                                     else ""))
    out.append("")
    out.append(f"captures poolwatch could not read completely: {len(result['read_errors'])} "
               "(listed, not a failure)")
    for name, err in sorted(result["read_errors"].items()):
        out.append(f"  {name}: {err}")
    if result["crashes"]:
        out.append(f"captures the scan crashed on: {len(result['crashes'])}")
        for name, err in sorted(result["crashes"].items())[:20]:
            out.append(f"  {name}: {err}")
        if len(result["crashes"]) > 20:
            out.append(f"  … and {len(result['crashes']) - 20} more")
    out.append("")
    if result["goal_met"]:
        out.append(f"GOAL MET: all {len(result['mining_expected'])} mining flows of "
                   f"{result['mining_capture']} found with the right dialect and coin, and no "
                   "session in any other capture.")
    else:
        out.append("GOAL NOT MET:")
        shown = result["failures"][:30]
        out += [f"  - {f}" for f in shown]
        if len(result["failures"]) > len(shown):
            out.append(f"  … and {len(result['failures']) - len(shown)} more")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        description="Run `poolwatch scan` (scan_sessions) over every capture of nDPI's "
                    "regression corpus and check that it finds the 4 mining flows of "
                    "mining.pcapng with the right dialect and coin and no other session. "
                    "Exit 0: goal met, 1: not met, 2: corpus absent.")
    p.add_argument("--corpus", type=Path, default=DEFAULT_CORPUS,
                   help="the nDPI corpus, with pcap/ and expected/ (default: %(default)s)")
    p.add_argument("--engine", default="fast", help="packet engine (default: %(default)s)")
    p.add_argument("--json", type=Path, metavar="FILE",
                   help="also write the full result as JSON to FILE")
    args = p.parse_args(argv)
    if not corpus_present(args.corpus):
        print(f"eval_corpus_sessions: the nDPI corpus is absent: no captures in "
              f"{args.corpus / 'pcap'} (expected beside the repository as "
              "../shared/peer-corpus/ndpi; pass --corpus DIR). Nothing was evaluated.",
              file=sys.stderr)
        return 2
    # Damaged captures are reported in the result; the scan's own log lines would repeat them.
    logging.getLogger("poolwatch").setLevel(logging.CRITICAL)
    if str(REPO_ROOT / "src") not in sys.path:
        try:
            import poolwatch  # noqa: F401
        except ImportError:  # not installed: use the checkout's sources
            sys.path.insert(0, str(REPO_ROOT / "src"))
    result = evaluate(args.corpus, engine=args.engine)
    print(render(result))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2, default=str) + "\n")
        print(f"\nresult saved to {args.json}", file=sys.stderr)
    return 0 if result["goal_met"] else 1


if __name__ == "__main__":
    sys.exit(main())
