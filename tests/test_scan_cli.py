"""`poolwatch scan`: mining sessions from the sample captures, in every output format."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
from typer.testing import CliRunner

from poolwatch.cli import app

ROOT = Path(__file__).resolve().parent.parent
STRATUM = ROOT / "pcaps" / "stratum"


def _run(*args: str):
    result = CliRunner().invoke(app, ["scan", *args, "--no-progress"])
    assert "Traceback" not in result.output
    return result


def _expected(encrypted: bool) -> list[tuple]:
    """Oracle sessions: plaintext ones are sessions; an encrypted one (Stratum V2 under
    Noise) comes out as a pool contact."""
    want = []
    for oracle in sorted(STRATUM.glob("*.expected.json")):
        for s in json.loads(oracle.read_text())["sessions"]:
            if bool(s.get("encrypted")) == encrypted:
                want.append((s["src_ip"], s["src_port"], s["dest_ip"], s["dest_port"]))
    return sorted(want)


def _expected_sessions() -> list[tuple]:
    return _expected(encrypted=False)


def test_jsonl_sessions_and_contacts_match_the_generator_oracles():
    result = _run(str(STRATUM), "-f", "jsonl")
    assert result.exit_code == 0, result.output
    records = [json.loads(line) for line in result.stdout.splitlines()]
    sessions = [r for r in records if r["event_type"] == "stratum_session"]
    contacts = [r for r in records if r["event_type"] == "pool_contact"]
    assert len(sessions) + len(contacts) == len(records)
    key = lambda r: (r["src_ip"], r["src_port"], r["dest_ip"], r["dest_port"])  # noqa: E731
    assert sorted(map(key, sessions)) == _expected_sessions()
    assert sorted(map(key, contacts)) == _expected(encrypted=True)
    assert all(c["via"] == ["stratum-v2"] and c["score"] >= 0.5 and c["reasons"]
               for c in contacts)
    for r in records:
        assert r["first_seen"].endswith("Z") and r["evidence"]["capture"].startswith(str(STRATUM))
        assert len(r["evidence"]["capture_sha256"]) == 64
    for r in sessions:
        assert r["shares_submitted"] >= r["shares_accepted"] + r["shares_rejected"]
    without = [json.loads(line) for line in _run(str(STRATUM), "-f", "jsonl",
                                                 "--no-contacts").stdout.splitlines()]
    assert all(r["event_type"] == "stratum_session" for r in without)
    assert len(without) == len(sessions) + len(contacts)  # the encrypted one as a session


def test_csv_and_parquet_hold_the_same_sessions(tmp_path):
    csv, parquet = tmp_path / "s.csv", tmp_path / "s.parquet"
    assert _run(str(STRATUM), "-f", "csv", "-o", str(csv)).exit_code == 0
    assert _run(str(STRATUM), "-f", "parquet", "-o", str(parquet)).exit_code == 0
    from_csv, from_parquet = pd.read_csv(csv), pq.read_table(parquet).to_pandas()
    assert len(from_csv) == len(from_parquet) == len(_expected_sessions()) + len(
        _expected(encrypted=True))
    assert set(from_csv["event_type"]) == {"stratum_session", "pool_contact"}
    assert list(from_csv.columns) == list(from_parquet.columns)
    assert str(from_parquet["first_seen"].dtype) == "datetime64[ns, UTC]"
    assert json.loads(from_csv["evidence"][0])["capture_sha256"]


def test_benign_captures_and_no_sessions_give_an_empty_result_with_columns(tmp_path):
    out = tmp_path / "none.csv"
    benign = [str(p) for p in sorted(STRATUM.glob("benign_*.pcap"))]
    result = _run(*benign, "-f", "csv", "-o", str(out))
    assert result.exit_code == 0
    frame = pd.read_csv(out)
    assert len(frame) == 0 and "hashrate_hs" in frame.columns and "dialect" in frame.columns


def test_table_for_people():
    result = _run(str(STRATUM / "stratum_v1_cgminer_sha256d.pcap"))
    assert result.exit_code == 0
    assert "stratum-v1" in result.stdout and "TH/s" in result.stdout and "BTC/sha256d" in result.stdout


def test_each_session_carries_the_sha256_of_its_own_capture():
    """Hashes are computed in the background; sessions wait for theirs."""
    import hashlib

    from poolwatch.scan import ScanSummary, scan_sessions

    captures = sorted(STRATUM.glob("*.pcap"))
    summary = ScanSummary()
    got = list(scan_sessions(captures, summary=summary))
    assert summary.sessions == len(got) == len(_expected_sessions()) + len(
        _expected(encrypted=True))
    for s in got:
        path = s.evidence["capture"]
        assert s.evidence["capture_sha256"] == hashlib.sha256(Path(path).read_bytes()).hexdigest()


def test_block_times_feed_the_behaviour_model(tmp_path):
    capture = ROOT / "pcaps" / "behaviour" / "xmr_tls_session.pcap"
    labels = json.loads(capture.with_suffix(".labels.json").read_text())
    blocks = tmp_path / "xmr-blocks.txt"
    blocks.write_text("# XMR blocks, Unix seconds\n" + "".join(
        f"{t / 1e9:.3f}\n" for t in labels["block_times_ns"]["XMR"]))
    plain = [json.loads(x) for x in _run(str(capture), "-f", "jsonl").stdout.splitlines()]
    aligned = [json.loads(x) for x in _run(str(capture), "-f", "jsonl", "--block-times",
                                           f"xmr={blocks}").stdout.splitlines()]
    assert len(plain) == len(aligned) == 1
    assert plain[0]["evidence"]["behaviour_features"]["block_alignment"] == 0
    assert aligned[0]["evidence"]["behaviour_features"]["block_alignment"] > 0.5
    assert "after a XMR block" in aligned[0]["reasons"][0]
    assert aligned[0]["score"] > plain[0]["score"]
    bad = tmp_path / "bad.txt"
    bad.write_text("1700000000\nyesterday\n")
    result = _run(str(capture), "--block-times", f"XMR={bad}")
    assert result.exit_code == 2 and f"{bad}:2: 'yesterday' is not a block time" in result.output
    assert "Traceback" not in result.output
