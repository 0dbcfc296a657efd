"""Shared fixtures: the sample captures and their generator-written oracles."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parent.parent
PCAPS = ROOT / "pcaps"
# Every capture under pcaps/ (subfolders too: `poolwatch flows pcaps/` reads recursively) that
# has a generator-written oracle next to it, e.g. pcaps/stratum/*.pcap.
SAMPLES = sorted(p for p in PCAPS.rglob("*") if p.suffix in (".pcap", ".pcapng")
                 and p.with_suffix(".expected.json").is_file())
PEER_CORPUS = ROOT.parent / "shared" / "peer-corpus" / "ndpi"


def oracle(capture: Path) -> dict:
    """The generator's record of what a sample capture holds (pcaps/<name>.expected.json)."""
    return json.loads(capture.with_suffix(".expected.json").read_text())


def flow_rows(frame) -> list[tuple]:
    """Flow records as comparable, sorted tuples (no end reason, no community id)."""
    cols = ["proto", "src_ip", "src_port", "dest_ip", "dest_port", "vlan", "inner_vlan",
            "pkts_toserver", "pkts_toclient", "bytes_toserver", "bytes_toclient"]
    return sorted(tuple(r) for r in frame[cols].itertuples(index=False))


def scan_frame(paths, **kw):
    """Run the library scan and return (flow DataFrame, summary)."""
    from poolwatch.flows import flow_frame
    from poolwatch.records import FLOW
    from poolwatch.scan import ScanSummary, scan_flows

    summary = ScanSummary()
    parts = list(scan_flows(paths, summary=summary, **kw))
    flows = np.concatenate(parts) if parts else np.zeros(0, FLOW)
    return flow_frame(flows), summary


@pytest.fixture(params=SAMPLES, ids=[p.relative_to(PCAPS).as_posix() for p in SAMPLES])
def sample(request) -> Path:
    return request.param


@pytest.fixture(autouse=True)
def _store_in_tmp(tmp_path, monkeypatch):
    """`poolwatch scan` writes into a lead store (./poolwatch.db by default): tests keep
    theirs in their own temporary directory, never in the tree."""
    monkeypatch.setenv("POOLWATCH_DB", f"sqlite:///{tmp_path / 'poolwatch.db'}")
