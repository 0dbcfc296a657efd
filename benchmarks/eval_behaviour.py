#!/usr/bin/env python3
"""Evaluation of the behaviour model (``poolwatch.detect.behaviour``).

Three measurements, printed:

1. **Labelled set**: precision, recall and false-positive rate on the generated set
   (``pcaps/make_behaviour_set.py``), written to a temporary directory. The ``eval`` split
   (seeds 2000+) is held out: the weights were set looking at the ``tune`` split only.
   Both are reported, the held-out one is the figure. Each split runs twice: without block
   times, and with the split's block-time series for BTC, XMR, ETC and KAS.
2. **nDPI corpus**: every flow scored at or above the threshold in
   ``../shared/peer-corpus/ndpi/pcap`` (543 captures; only ``mining.pcapng`` holds mining,
   4 plaintext flows), listed with its reasons.
3. **Cost**: the scorer's ``update`` over every batch of the benchmark capture
   (``/tmp/poolwatch-bench/bench-1e219308c357-20x.pcap``, from ``iter_batches``), in ns per
   packet, and the time to read and decode the same batches for comparison.

Usage::

    python benchmarks/eval_behaviour.py                      # all three
    python benchmarks/eval_behaviour.py --skip-corpus --skip-cost
    python benchmarks/eval_behaviour.py --json /tmp/eval-behaviour.json

``tests/test_behaviour.py`` loads this file and asserts the held-out figures and the corpus
false-positive count.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT / "pcaps"))
DEFAULT_CORPUS = REPO_ROOT.parent / "shared" / "peer-corpus" / "ndpi"
DEFAULT_BENCH = Path("/tmp/poolwatch-bench/bench-1e219308c357-20x.pcap")

from poolwatch.detect.behaviour import BehaviourScorer, BehaviourSettings  # noqa: E402
from poolwatch.records import addr_to_halves, halves_to_addr  # noqa: E402
from poolwatch.scan import iter_batches  # noqa: E402


def score_capture(paths, settings: BehaviourSettings, block_times=None) -> tuple[list, dict]:
    scorer = BehaviourScorer(settings, block_times=block_times)
    for batch in iter_batches(paths):
        scorer.update(batch)
    return scorer.flush(), scorer.stats


def _endpoint(ip: str, port: int) -> tuple[int, int, int]:
    return (*addr_to_halves(ip), int(port))


def evaluate_split(outdir: Path, split: str, settings: BehaviourSettings | None = None,
                   with_blocks: bool = False) -> dict[str, Any]:
    """Generate ``split`` into ``outdir`` (if absent) and score every flow of it."""
    import make_behaviour_set as gen

    pcap = outdir / f"behaviour-{split}.pcap"
    lab_path = outdir / f"behaviour-{split}.labels.json"
    if not pcap.exists():
        gen.write_split(outdir, split)
    labels = json.loads(lab_path.read_text())
    settings = settings or BehaviourSettings()
    threshold = settings.report_threshold
    everything = BehaviourSettings.from_dict({**settings.as_dict(), "report_threshold": 0.0})
    blocks = ({c: np.array(v, np.int64) for c, v in labels["block_times_ns"].items()}
              if with_blocks else None)
    verdicts, stats = score_capture([pcap], everything, blocks)
    by_pair = {(v.client, v.server): v for v in verdicts}
    by_pair.update({(v.server, v.client): v for v in verdicts})
    rows = []
    for f in labels["flows"]:
        v = by_pair.get((_endpoint(*f["client"]), _endpoint(*f["server"])))
        rows.append({"category": f["category"], "label": f["label"],
                     "score": None if v is None else round(v.score, 4),
                     "client_right": None if v is None else v.client == _endpoint(*f["client"]),
                     "predicted": v is not None and v.score >= threshold})
    tp = sum(r["predicted"] and r["label"] for r in rows)
    fp = sum(r["predicted"] and not r["label"] for r in rows)
    pos = sum(r["label"] for r in rows)
    neg = len(rows) - pos
    per_cat: dict[str, dict[str, int]] = {}
    for r in rows:
        c = per_cat.setdefault(r["category"], {"flows": 0, "flagged": 0, "label": r["label"]})
        c["flows"] += 1
        c["flagged"] += int(r["predicted"])
    return {
        "split": split, "block_times": with_blocks, "flows": len(rows), "mining": pos,
        "benign": neg, "true_positives": tp, "false_positives": fp,
        "precision": tp / (tp + fp) if tp + fp else 1.0, "recall": tp / pos if pos else 0.0,
        "fp_rate": fp / neg if neg else 0.0, "per_category": per_cat, "rows": rows,
        "client_side_right": sum(bool(r["client_right"]) for r in rows if r["score"] is not None),
        "scored": sum(r["score"] is not None for r in rows),
    }


def corpus_false_positives(corpus: Path, settings: BehaviourSettings | None = None) -> dict:
    """Flows at or above the threshold in every capture of the nDPI corpus, per capture."""
    settings = settings or BehaviourSettings()
    captures = sorted((corpus / "pcap").iterdir())
    flagged = []
    scored = 0
    for cap in captures:
        verdicts, stats = score_capture([cap], settings)
        scored += stats["scored"]
        for v in verdicts:
            flagged.append({
                "capture": cap.name,
                "client": f"{halves_to_addr(*v.client[:2])}:{v.client[2]}",
                "server": f"{halves_to_addr(*v.server[:2])}:{v.server[2]}",
                "score": round(v.score, 3), "reasons": list(v.reasons)})
    return {"captures": len(captures), "flows_scored": scored,
            "flagged": flagged,
            "flagged_outside_mining": [f for f in flagged if f["capture"] != "mining.pcapng"]}


def kernel_cost(bench: Path, settings: BehaviourSettings | None = None) -> dict:
    """ns per packet of BehaviourScorer.update over every batch of ``bench``."""
    scorer = BehaviourScorer(settings)
    # Warm numba's cache on a tiny prefix so compilation is not timed.
    for batch in iter_batches([REPO_ROOT / "pcaps" / "benign_tls_and_dns.pcap"]):
        scorer.update(batch)
    scorer = BehaviourScorer(settings)
    packets = 0
    spent = 0.0
    t0 = time.perf_counter()
    for batch in iter_batches([bench]):
        t = time.perf_counter()
        scorer.update(batch)
        spent += time.perf_counter() - t
        packets += len(batch)
    total = time.perf_counter() - t0
    t = time.perf_counter()
    verdicts = scorer.flush()
    flush_s = time.perf_counter() - t
    return {"capture": str(bench), "packets": packets, "update_s": round(spent, 4),
            "ns_per_packet": round(spent / packets * 1e9, 2),
            "read_decode_s": round(total - spent, 4), "flush_s": round(flush_s, 4),
            "flows": scorer.stats["flows"], "scored": scorer.stats["scored"],
            "reported": len(verdicts), "stats": dict(scorer.stats)}


def render(result: dict) -> str:
    lines = []
    for e in result.get("labelled", []):
        lines.append(f"{e['split']:>5} split, block times {'on ' if e['block_times'] else 'off'}: "
                     f"{e['flows']} flows ({e['mining']} mining, {e['benign']} benign): "
                     f"precision {e['precision']:.3f}, recall {e['recall']:.3f}, "
                     f"FP rate {e['fp_rate']:.3f} ({e['true_positives']} TP, "
                     f"{e['false_positives']} FP); client side right "
                     f"{e['client_side_right']}/{e['scored']} scored")
        for cat, c in e["per_category"].items():
            kind = "mining" if c["label"] else "benign"
            lines.append(f"        {cat:<16} {kind}: {c['flagged']}/{c['flows']} flagged")
    if "corpus" in result:
        c = result["corpus"]
        lines.append(f"nDPI corpus: {c['captures']} captures, {c['flows_scored']} flows scored, "
                     f"{len(c['flagged'])} flagged, {len(c['flagged_outside_mining'])} outside "
                     "mining.pcapng")
        for f in c["flagged"]:
            lines.append(f"  {f['capture']}: {f['client']} -> {f['server']} score {f['score']}")
            lines += [f"      {r}" for r in f["reasons"]]
    if "cost" in result:
        k = result["cost"]
        lines.append(f"cost on {k['capture']}: {k['packets']} packets, update {k['update_s']} s "
                     f"= {k['ns_per_packet']} ns/packet (reading+decoding {k['read_decode_s']} s,"
                     f" flush {k['flush_s']} s); {k['flows']} TCP flows kept, {k['scored']} "
                     f"scored, {k['reported']} reported")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--corpus", type=Path, default=DEFAULT_CORPUS)
    ap.add_argument("--bench", type=Path, default=DEFAULT_BENCH)
    ap.add_argument("--skip-corpus", action="store_true")
    ap.add_argument("--skip-cost", action="store_true")
    ap.add_argument("--splits", default="tune,eval")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args(argv)
    result: dict[str, Any] = {"labelled": []}
    with tempfile.TemporaryDirectory(prefix="poolwatch-behaviour-") as tmp:
        for split in args.splits.split(","):
            for blocks in (False, True):
                result["labelled"].append(evaluate_split(Path(tmp), split, with_blocks=blocks))
    if not args.skip_corpus and (args.corpus / "pcap").is_dir():
        result["corpus"] = corpus_false_positives(args.corpus)
    if not args.skip_cost and args.bench.is_file():
        result["cost"] = kernel_cost(args.bench)
    print(render(result))
    if args.json:
        args.json.write_text(json.dumps(result, indent=1, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
