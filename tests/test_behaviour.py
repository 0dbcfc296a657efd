"""The behaviour model: its kernel against the plain-Python twin, its settings, its verdicts'
reasons, block-time alignment, the held-out evaluation and the nDPI corpus."""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import math
import re
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings as hsettings, strategies as st

from poolwatch.detect.behaviour import (FEATURES, BehaviourScorer, BehaviourSettings,
                                        BehaviourVerdict)
from poolwatch.detect.records import flow_key
from poolwatch.kernels import flowstats as kf
from poolwatch.kernels._reference_flowstats import flow_stats_reference
from poolwatch.records import PACKET, PacketBatch, addr_to_halves
from poolwatch.scan import iter_batches

from .conftest import PCAPS, PEER_CORPUS, ROOT

NS = 10**9
BEHAVIOUR = PCAPS / "behaviour"
CORPUS_CAPTURES = (sorted((PEER_CORPUS / "pcap").iterdir())
                   if (PEER_CORPUS / "pcap").is_dir() else [])

# Figures measured on the held-out split (benchmarks/eval_behaviour.py, docs/behaviour.md):
# precision 0.875, recall 1.000, FP rate 0.111 (28 TP, 4 FP: the 4 iot-poisson flows). The test asserts
# minimums a little below them, so that a change that loses detections fails.
MIN_HELD_OUT_PRECISION = 0.80
MIN_HELD_OUT_RECALL = 0.95
MAX_HELD_OUT_FP_RATE = 0.15
CORPUS_FALSE_POSITIVES = 5  # flows flagged outside mining.pcapng (docs/behaviour.md)


def _load_eval():
    path = ROOT / "benchmarks" / "eval_behaviour.py"
    spec = importlib.util.spec_from_file_location("eval_behaviour", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


# ---------------------------------------------------------------------------------------
# Crafted packets
# ---------------------------------------------------------------------------------------
HOSTS = [addr_to_halves(a) for a in ("10.0.0.1", "10.0.0.2", "192.0.2.7", "2001:db8::5")]


def packets_from(events) -> np.ndarray:
    """PACKET rows from (ts_ns, src host, sport, dst host, dport, flags, payload bytes)."""
    arr = np.zeros(len(events), PACKET)
    for i, (ts, s, sp, d, dp, flags, size) in enumerate(events):
        r = arr[i]
        r["ts_ns"] = ts
        r["src_hi"], r["src_lo"] = HOSTS[s]
        r["dst_hi"], r["dst_lo"] = HOSTS[d]
        r["sport"], r["dport"] = sp, dp
        r["proto"] = 6
        r["tcp_flags"] = flags
        r["l3_off"] = 0
        r["l4_off"] = 20
        r["payload_off"] = 40
        r["ip_len"] = 40 + size
        r["payload_len"] = size
    return arr


def batch_of(arr: np.ndarray, buf: np.ndarray | None = None) -> PacketBatch:
    return PacketBatch("crafted", np.zeros(0, np.uint8) if buf is None else buf, arr)


def give_payload_bytes(arr: np.ndarray) -> np.ndarray:
    """Bytes for crafted packets: 40 header bytes, then a payload opening that differs by
    packet (TLS-like for every third). Sets ``data_off``; returns the buffer."""
    chunks = []
    for i in range(len(arr)):
        arr[i]["data_off"] = 43 * i
        head = bytes([0x16, 0x03, i % 5]) if i % 3 == 0 else bytes([i % 256, 0x7B, 0x22])
        chunks.append(bytes(40) + head)
    return np.frombuffer(b"".join(chunks), np.uint8).copy()


def _head(value: int):
    """The kernel's packed head bytes in the twin's shape."""
    if value < 0:
        return -1
    n = value >> 24
    return (n, bytes([(value >> 16) & 255, (value >> 8) & 255, value & 255][:n]))


def kernel_rows(scorer: BehaviourScorer) -> dict[tuple, dict]:
    """The kernel's open rows in the twin's shape."""
    out = {}
    for r in range(scorer.n_rows):
        ints, flts, e = scorer.ints[r], scorer.flts[r], scorer.ends[r]
        a = (int(e[0]), int(e[1]), int(e[2]))
        b = (int(e[3]), int(e[4]), int(e[5]))
        pair = lambda base: [int(ints[base]), int(ints[base + 1])]  # noqa: E731
        fpair = lambda base: [float(flts[base]), float(flts[base + 1])]  # noqa: E731
        out[(int(ints[kf.I_VLAN]), int(ints[kf.I_INNER]), a, b)] = {
            "client": int(ints[kf.I_CLIENT]), "first": int(ints[kf.I_FIRST]),
            "last": int(ints[kf.I_LAST]), "npay": pair(kf.I_NPAY), "bytes": pair(kf.I_BYTES),
            "nburst": pair(kf.I_NBURST), "ndone": pair(kf.I_NDONE),
            "nanswered": pair(kf.I_NANSWERED), "nanswer": pair(kf.I_NANSWER),
            "nunsol": pair(kf.I_NUNSOL), "ssize": fpair(kf.F_SSIZE),
            "ssize2": fpair(kf.F_SSIZE2), "sgap": fpair(kf.F_SGAP), "sgap2": fpair(kf.F_SGAP2),
            "sugap": fpair(kf.F_SUGAP), "sugap2": fpair(kf.F_SUGAP2),
            "hist_all": [scorer.hist[r, kf.H_ALL, d].tolist() for d in (0, 1)],
            "hist_answer": [scorer.hist[r, kf.H_ANSWER, d].tolist() for d in (0, 1)],
            "hits": [scorer.hits[r, d, : len(scorer.coins)].tolist() for d in (0, 1)],
            "head": [_head(int(ints[kf.I_HEAD + d])) for d in (0, 1)],
        }
    return out


COMPARED = ("client", "first", "last", "npay", "bytes", "nburst", "ndone", "nanswered",
            "nanswer", "nunsol", "hist_all", "hist_answer", "hits", "head")
FLOATS = ("ssize", "ssize2", "sgap", "sgap2", "sugap", "sugap2")


def assert_same(kernel: dict, twin: dict) -> None:
    assert set(kernel) == set(twin)
    for key, t in twin.items():
        k = kernel[key]
        for name in COMPARED:
            assert k[name] == t[name], (key, name)
        for name in FLOATS:
            assert k[name] == pytest.approx(t[name], rel=1e-9, abs=1e-9), (key, name)


events_strategy = st.lists(
    st.tuples(st.integers(0, 3_000_000_000),  # gap to the previous packet, ns
              st.sampled_from([(0, 40001, 2, 443), (2, 443, 0, 40001), (1, 40002, 3, 3333),
                               (3, 3333, 1, 40002), (0, 40003, 3, 3333)]),
              st.sampled_from([0x18, 0x10, 0x02, 0x12, 0x11]),
              st.sampled_from([0, 0, 1, 36, 60, 200, 517, 1448])),
    min_size=1, max_size=300)


@hsettings(max_examples=60, deadline=None)
@given(events_strategy, st.integers(1, 7))
def test_kernel_matches_twin(events, n_batches):
    ts = 1_700_000_000 * NS
    rows = []
    for gap, (s, sp, d, dp), flags, size in events:
        ts += gap
        rows.append((ts, s, sp, d, dp, flags, size))
    arr = packets_from(rows)
    buf = give_payload_bytes(arr)
    blocks = {"XMR": np.array([rows[0][0] + k * 2 * NS for k in range(-2, 200)], np.int64)}
    st_ = BehaviourSettings(idle_timeout_s=1e6, sweep_interval_s=1e6, initial_flows=2)
    scorer = BehaviourScorer(st_, block_times=blocks)
    for part in np.array_split(arr, n_batches):
        scorer.update(batch_of(part, buf))
    twin = flow_stats_reference(arr, burst_gap_ns=int(st_.burst_gap_s * NS),
                                reply_ns=int(st_.reply_window_s * NS),
                                block_tol_ns=int(st_.block_tolerance_s * NS),
                                block_times=[blocks["XMR"]], buf=buf.tobytes())
    assert_same(kernel_rows(scorer), twin)


def test_kernel_matches_twin_on_a_sample_capture():
    capture = BEHAVIOUR / "xmr_tls_session.pcap"
    expected = json.loads(capture.with_suffix(".labels.json").read_text())
    blocks = {c: np.array(v, np.int64) for c, v in expected["block_times_ns"].items()}
    scorer = BehaviourScorer(BehaviourSettings(idle_timeout_s=1e6), block_times=blocks)
    parts, bufs, base = [], [], 0
    for batch in iter_batches([capture]):
        scorer.update(batch)
        part = batch.packets.copy()
        part["data_off"] += base  # one buffer for the twin
        parts.append(part)
        bufs.append(batch.buf.tobytes())
        base += len(batch.buf)
    st_ = scorer.settings
    twin = flow_stats_reference(np.concatenate(parts), burst_gap_ns=int(st_.burst_gap_s * NS),
                                reply_ns=int(st_.reply_window_s * NS),
                                block_tol_ns=int(st_.block_tolerance_s * NS),
                                block_times=[blocks[c] for c in scorer.coins],
                                buf=b"".join(bufs))
    assert_same(kernel_rows(scorer), twin)
    assert len(twin) == 1
    (flow,) = twin.values()
    client = 0 if flow["client"] == 1 else 1
    assert flow["head"][client][1][:2] == b"\x16\x03"  # the miner opens with a TLS record


def test_syn_decides_the_client_and_syn_floods_take_no_rows():
    t = 1_700_000_000 * NS
    ev = [(t, 2, 443, 0, 40001, 0x12, 0),  # SYN-ACK from the server first
          (t + 1000, 2, 443, 0, 40001, 0x18, 100)]  # then the server speaks first
    ev += [(t + 2000 + k, 1, 50000 + k, 3, 80, 0x02, 0) for k in range(500)]  # a SYN flood
    scorer = BehaviourScorer()
    scorer.update(batch_of(packets_from(ev)))
    assert scorer.n_rows == 1
    (row,) = kernel_rows(scorer).values()
    a, b = sorted([(*HOSTS[0], 40001), (*HOSTS[2], 443)])
    assert row["client"] == (1 if a == (*HOSTS[0], 40001) else 2)


def test_table_full_evicts_and_idle_flows_expire():
    t = 1_700_000_000 * NS
    ev = [(t + k * 1000, 0, 30000 + k, 2, 443, 0x18, 50) for k in range(100)]
    scorer = BehaviourScorer(BehaviourSettings(max_flows=16, initial_flows=4))
    scorer.update(batch_of(packets_from(ev)))
    assert scorer.stats["evicted"] > 0 and scorer.n_rows <= 16
    assert scorer.expire(t + 10_000 * NS) == []  # nothing eligible: short flows
    assert scorer.n_rows == 0 and scorer.stats["expired"] > 0


# ---------------------------------------------------------------------------------------
# Settings
# ---------------------------------------------------------------------------------------
def test_every_setting_is_documented_with_its_default():
    doc = (ROOT / "docs" / "behaviour.md").read_text()
    for f in dataclasses.fields(BehaviourSettings):
        default = f.default
        text = (f"({', '.join(f'{v:g}' for v in default)})" if isinstance(default, tuple)
                else f"{default:g}" if isinstance(default, float) else str(default))
        assert re.search(rf"`{f.name}`\s*\|\s*`?{re.escape(text)}`?", doc), (f.name, text)


def test_settings_validate_and_load_from_a_dict():
    s = BehaviourSettings.from_dict({"report_threshold": 0.7, "client_band_ramp": [0.2, 0.9],
                                     "min_client_bursts": "12"})
    assert s.report_threshold == 0.7 and s.client_band_ramp == (0.2, 0.9)
    assert s.min_client_bursts == 12
    assert BehaviourSettings.from_dict(s.as_dict()) == s
    with pytest.raises(ValueError, match="unknown"):
        BehaviourSettings.from_dict({"threshold": 0.5})
    for bad in ({"report_threshold": 1.5}, {"client_band_ramp": (0.9, 0.2)},
                {"syn_cache": 1000}, {"idle_timeout_s": 0}, {"band_bins": 0},
                {"w_pushes": float("nan")}):
        with pytest.raises(ValueError):
            BehaviourSettings(**bad)


# ---------------------------------------------------------------------------------------
# Verdicts
# ---------------------------------------------------------------------------------------
def _scan(capture: Path, settings=None, blocks=None) -> list[BehaviourVerdict]:
    scorer = BehaviourScorer(settings, block_times=blocks)
    for batch in iter_batches([capture]):
        scorer.update(batch)
    return scorer.flush()


def _contributions(v: BehaviourVerdict) -> list[float]:
    return [float(re.search(r"-> ([+-]\d+\.\d+)", r).group(1)) for r in v.reasons]


def test_reasons_add_up_to_the_score():
    exp = json.loads((BEHAVIOUR / "xmr_tls_session.labels.json").read_text())
    blocks = {c: np.array(v, np.int64) for c, v in exp["block_times_ns"].items()}
    for v in (_scan(BEHAVIOUR / "xmr_tls_session.pcap", blocks=blocks)
              + _scan(BEHAVIOUR / "ws_ticker_benign.pcap",
                      BehaviourSettings(report_threshold=0.0))):
        assert len(v.reasons) == len(FEATURES) + 1
        assert [r.split(":")[0] for r in v.reasons[:-1]] == list(FEATURES)
        logit = sum(_contributions(v))
        assert logit == pytest.approx(v.features["logit"], abs=0.006)
        assert 1 / (1 + math.exp(-logit)) == pytest.approx(v.score, abs=0.002)


def test_sample_captures_score_as_labelled():
    for name in ("xmr_tls_session", "ws_ticker_benign"):
        exp = json.loads((BEHAVIOUR / f"{name}.labels.json").read_text())
        (flow,) = exp["flows"]
        verdicts = _scan(BEHAVIOUR / f"{name}.pcap", BehaviourSettings(report_threshold=0.0))
        (v,) = verdicts
        client = (*addr_to_halves(flow["client"][0]), flow["client"][1])
        server = (*addr_to_halves(flow["server"][0]), flow["server"][1])
        assert v.client == client and v.server == server
        assert v.key == flow_key(0, 0, 6, client, server)
        assert (v.score >= 0.5) == bool(flow["label"]), v.reasons


def test_block_times_raise_the_score_when_pushes_follow_them():
    exp = json.loads((BEHAVIOUR / "xmr_tls_session.labels.json").read_text())
    real = np.array(exp["block_times_ns"]["XMR"], np.int64)
    (plain,) = _scan(BEHAVIOUR / "xmr_tls_session.pcap")
    (aligned,) = _scan(BEHAVIOUR / "xmr_tls_session.pcap", blocks={"XMR": real})
    (shifted,) = _scan(BEHAVIOUR / "xmr_tls_session.pcap", blocks={"XMR": real - 47 * NS})
    assert aligned.features["block_alignment"] > 0.8
    assert aligned.score > plain.score
    assert shifted.features["block_alignment"] < 0.3
    assert "XMR block" in aligned.reasons[FEATURES.index("block_alignment")]
    assert "no block times supplied" in plain.reasons[FEATURES.index("block_alignment")]


def test_peek_scores_open_flows_without_closing_them():
    scorer = BehaviourScorer(BehaviourSettings(report_threshold=0.0))
    for batch in iter_batches([BEHAVIOUR / "xmr_tls_session.pcap"]):
        scorer.update(batch)
    (open_now,) = scorer.peek()
    assert scorer.n_rows == 1
    (final,) = scorer.flush()
    assert open_now.score == final.score


# ---------------------------------------------------------------------------------------
# Evaluation
# ---------------------------------------------------------------------------------------
@pytest.mark.slow
def test_held_out_precision_and_recall(tmp_path):
    evaluation = _load_eval()
    result = evaluation.evaluate_split(tmp_path, "eval")
    assert result["flows"] >= 60 and result["mining"] >= 25
    assert result["precision"] >= MIN_HELD_OUT_PRECISION, result["per_category"]
    assert result["recall"] >= MIN_HELD_OUT_RECALL, result["per_category"]
    assert result["fp_rate"] <= MAX_HELD_OUT_FP_RATE, result["per_category"]


@pytest.mark.corpus
@pytest.mark.slow
@pytest.mark.skipif(not CORPUS_CAPTURES, reason=f"nDPI's captures are not at {PEER_CORPUS}/pcap")
def test_false_positives_on_the_ndpi_corpus():
    result = _load_eval().corpus_false_positives(PEER_CORPUS)
    assert result["captures"] >= 500
    assert len(result["flagged_outside_mining"]) == CORPUS_FALSE_POSITIVES, \
        result["flagged_outside_mining"]
