"""The detect stage in streaming mode (a sensor's): same records as an offline scan, contacts
decided as flows go quiet instead of at the end, nothing reported twice, memory let go."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from poolwatch.detect.records import PoolContact, StratumSession
from poolwatch.scan import DetectionPipeline, iter_batches, scan_detections

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = sorted((ROOT / "pcaps" / "stratum").glob("*.pcap")) + sorted(
    (ROOT / "pcaps" / "contacts").glob("*.pcap")) + [ROOT / "pcaps" / "behaviour"]
NS = 1_000_000_000


def _canon(records) -> list[str]:
    out = []
    for r in records:
        d = r.as_dict()
        d.get("evidence", {}).pop("capture_sha256", None)
        out.append(json.dumps(d, sort_keys=True, default=str))
    return sorted(out)


def _stream(paths, batch_packets: int = 64, **kw) -> tuple[list, DetectionPipeline]:
    pipe = DetectionPipeline(streaming=True, hash_captures=False, **kw)
    got = []
    for batch in iter_batches(paths, batch_packets=batch_packets):
        got += pipe.feed(batch)
    got += pipe.flush()
    pipe.close()
    return got, pipe


@pytest.mark.parametrize("path", SAMPLES, ids=lambda p: p.name)
def test_streaming_matches_offline(path: Path) -> None:
    offline = list(scan_detections([path]))
    streamed, pipe = _stream([path])
    assert _canon(streamed) == _canon(offline)
    assert pipe.summary.sessions + pipe.summary.contacts == len(offline)


@pytest.mark.parametrize("batch_packets", [16, 1 << 16])
def test_streaming_many_captures_in_one_run_matches_offline(batch_packets: int) -> None:
    """One pipeline over every sample: time jumps between captures, so earlier flows settle
    while later ones run, and whole sessions start and end inside one batch (a session's
    flow must then not also come out as a contact)."""
    offline = list(scan_detections(SAMPLES))
    streamed, _ = _stream(SAMPLES, batch_packets=batch_packets)
    assert _canon(streamed) == _canon(offline)


def test_streaming_one_capture_merged_by_time_matches_offline(tmp_path: Path) -> None:
    """Every sample merged into one capture by time, read in big batches: a batch then spans
    more than the settle time, and sessions end in the same batch in which their flows
    settle (a plaintext session's flow must not also come out as a contact)."""
    import dpkt

    packets = []
    for path in SAMPLES[:-1]:
        with open(path, "rb") as fh:
            reader = dpkt.pcap.Reader(fh)
            assert reader.datalink() == dpkt.pcap.DLT_EN10MB
            packets += [(ts, i, buf) for i, (ts, buf) in enumerate(reader)]
    merged = tmp_path / "merged.pcap"
    with open(merged, "wb") as fh:
        writer = dpkt.pcap.Writer(fh, nano=False)
        for ts, _i, buf in sorted(packets, key=lambda p: p[:2]):
            writer.writepkt(buf, ts)
    offline = list(scan_detections([merged]))
    streamed, _ = _stream([merged], batch_packets=1 << 16)
    assert len(streamed) == len(offline)
    assert _canon(streamed) == _canon(offline)


def test_contacts_come_out_when_quiet_not_at_the_end() -> None:
    path = ROOT / "pcaps" / "contacts" / "tls_pool_by_dns_and_sni.pcap"
    offline = [r for r in scan_detections([path]) if isinstance(r, PoolContact)]
    assert offline, "the sample has pool contacts"
    pipe = DetectionPipeline(streaming=True, hash_captures=False)
    early = []
    last = 0
    for batch in iter_batches([path]):
        early += pipe.feed(batch)
        last = int(batch.packets["ts_ns"][-1])
    assert not [r for r in early if isinstance(r, PoolContact)]  # still within settle time
    # the link goes quiet: the clock moves on past the settle time
    late = pipe.tick(last + pipe.settle_ns + 30 * NS)
    contacts = [r for r in late if isinstance(r, PoolContact)]
    assert _canon(contacts) == _canon(offline)
    assert not list(pipe.judge.pending())  # decided flows are let go
    assert not [r for r in pipe.flush() if isinstance(r, PoolContact)]  # never twice


def test_offline_mode_keeps_contacts_for_the_end() -> None:
    path = ROOT / "pcaps" / "contacts" / "tls_pool_by_dns_and_sni.pcap"
    pipe = DetectionPipeline(streaming=False, hash_captures=False)
    for batch in iter_batches([path]):
        pipe.feed(batch)
    assert not [r for r in pipe.tick(2**62) if isinstance(r, PoolContact)]
    assert [r for r in pipe.flush() if isinstance(r, PoolContact)]


def test_late_evidence_for_a_decided_flow_is_not_reported_again() -> None:
    path = ROOT / "pcaps" / "contacts" / "tls_pool_by_dns_and_sni.pcap"
    pipe = DetectionPipeline(streaming=True, hash_captures=False)
    batches = [b.copy() for b in iter_batches([path])]
    for b in batches:
        pipe.feed(b)
    end = int(batches[-1].packets["ts_ns"][-1])
    first = [r for r in pipe.tick(end + pipe.settle_ns + 30 * NS) if isinstance(r, PoolContact)]
    assert first
    # the same flows' packets again (a retransmitted tail, a replayed capture): their flows
    # were decided; within the forget window they add nothing new
    for b in batches:
        b.packets["ts_ns"] += pipe.settle_ns + 40 * NS
        pipe.feed(b)
    again = [r for r in pipe.flush() if isinstance(r, PoolContact)]
    assert not again
    assert pipe.judge.stats["late_evidence"] > 0


def test_pool_addresses_learnt_from_dns_and_sessions() -> None:
    pipe = DetectionPipeline(streaming=True, hash_captures=False)
    assert pipe.pool_addresses() == set()
    v0 = pipe.version_of_pool_addresses
    got = []
    for path in (ROOT / "pcaps" / "contacts" / "tls_pool_by_dns_and_sni.pcap",
                 ROOT / "pcaps" / "stratum" / "stratum_v1_cgminer_sha256d.pcap"):
        for batch in iter_batches([path]):
            got += pipe.feed(batch)
    got += pipe.flush()
    addrs = pipe.pool_addresses()
    assert pipe.version_of_pool_addresses > v0
    assert set(pipe.dns.preferred) <= addrs  # what pool names resolved to
    assert {r.dest_ip for r in got if isinstance(r, StratumSession)} <= addrs


def _parts(path: Path, every_s: float) -> list:
    pipe = DetectionPipeline(streaming=True, hash_captures=False, report_every_s=every_s)
    got = []
    for batch in iter_batches([path], batch_packets=8):
        got += pipe.feed(batch)
    return got + pipe.flush()


def test_a_long_session_is_reported_in_consecutive_parts() -> None:
    path = ROOT / "pcaps" / "stratum" / "stratum_v1_cgminer_sha256d.pcap"  # 105 s, 14 shares
    (whole,) = [r for r in scan_detections([path]) if isinstance(r, StratumSession)]
    parts = [r for r in _parts(path, 30.0) if isinstance(r, StratumSession)]
    assert len(parts) >= 3
    assert all(p.evidence.get("part") == "interim" for p in parts[:-1])
    assert "part" not in parts[-1].evidence  # the last one ends with the connection
    # consecutive, covering the session, shares never counted twice
    assert parts[0].first_seen == whole.first_seen and parts[-1].last_seen == whole.last_seen
    for a, b in zip(parts, parts[1:]):
        assert a.last_seen == b.first_seen
    assert sum(p.shares_submitted for p in parts) == whole.shares_submitted
    assert sum(p.shares_accepted for p in parts) == whole.shares_accepted
    # every part knows who mined and how (carried over from the login at the start)
    assert {(p.worker, p.wallet, p.dialect, p.coin, p.pool_host) for p in parts} == {
        (whole.worker, whole.wallet, whole.dialect, whole.coin, whole.pool_host)}
    rated = [p for p in parts if p.shares_submitted]
    assert rated and all(p.hashrate_hs for p in rated)
    # the parts' share-weighted hashrate is the session's, within the estimator's spread
    span = sum((p.last_seen - p.first_seen) * p.hashrate_hs for p in rated)
    assert span / (whole.last_seen - whole.first_seen) == pytest.approx(whole.hashrate_hs,
                                                                        rel=0.5)


def test_a_long_contact_is_reported_before_its_flow_ends() -> None:
    path = ROOT / "pcaps" / "behaviour"  # an encrypted mining flow of 14 minutes
    (whole,) = [r for r in scan_detections([path]) if isinstance(r, PoolContact)]
    parts = [r for r in _parts(path, 300.0) if isinstance(r, PoolContact)]
    assert len(parts) >= 2 and parts[0].evidence.get("part") == "interim"
    assert parts[0].first_seen == whole.first_seen
    assert parts[-1].last_seen == whole.last_seen
    for a, b in zip(parts, parts[1:]):
        assert a.last_seen == b.first_seen


def test_offline_scans_are_never_cut_into_parts() -> None:
    path = ROOT / "pcaps" / "stratum" / "stratum_v1_cgminer_sha256d.pcap"
    pipe = DetectionPipeline(streaming=False, report_every_s=1.0)
    got = []
    for batch in iter_batches([path], batch_packets=8):
        got += pipe.feed(batch)
    got += pipe.flush()
    assert len([r for r in got if isinstance(r, StratumSession)]) == 1


def test_a_session_under_way_teaches_its_pool_address() -> None:
    """Before any session is reported: the first client method names the server."""
    path = ROOT / "pcaps" / "stratum" / "stratum_zcash_equihash.pcap"
    (session,) = [r for r in scan_detections([path]) if isinstance(r, StratumSession)]
    pipe = DetectionPipeline(streaming=True, hash_captures=False)
    got = []
    learnt_before_report = False
    for batch in iter_batches([path], batch_packets=4):
        got += pipe.feed(batch)
        if not got and session.dest_ip in pipe.pool_addresses():
            learnt_before_report = True
    assert learnt_before_report
    assert session.src_ip not in pipe.pool_addresses()  # the miner is not a pool


def test_a_capture_gone_before_it_was_hashed_loses_no_record(tmp_path: Path, caplog) -> None:
    src = ROOT / "pcaps" / "stratum" / "stratum_v1_cgminer_sha256d.pcap"
    copy = tmp_path / "ring_00001.pcap"
    copy.write_bytes(src.read_bytes())
    pipe = DetectionPipeline(streaming=True)
    batches = [b.copy() for b in iter_batches([copy])]
    copy.unlink()  # a ring buffer rotated it away before the hash thread opened it
    got = []
    for b in batches:
        got += pipe.feed(b)
    got += pipe.flush()
    (session,) = [r for r in got if isinstance(r, StratumSession)]
    assert session.evidence["capture_sha256"] is None
    assert "No such file" in session.evidence["capture_sha256_error"]
    assert "cannot hash the capture" in caplog.text
