"""Stratum sessions from stream events (detect/stratum.py, detect/hashrate.py).

Message sequences for every dialect follow the shapes of stratum-dialects.md; they are fed
as StreamData events cut at awkward places (mid-token, several messages per chunk), with
varied whitespace, key order, id types and ``jsonrpc`` present or not. Hashrates are checked
against hand calculations from hashrate-estimation.md, and look-alikes must stay silent.
"""

from __future__ import annotations

import base64
import json
import math
import random
import struct
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as hs

from poolwatch.detect.hashrate import (
    ShareTally,
    estimate_hashrate,
    estimate_power,
    gamma_ppf,
    poisson_interval,
)
from poolwatch.detect.records import StratumSession
from poolwatch.detect.stratum import StratumTracker, split_login
from poolwatch.detect.streams import Chunk, Conversation, StreamData, StreamEnd
from poolwatch.fingerprints import load_fingerprints

T0 = 1_772_438_940_000_000_000
NS = 1_000_000_000
ROOT = Path(__file__).resolve().parent.parent
PEER = ROOT.parent / "shared" / "peer-corpus" / "ndpi" / "pcap"


@pytest.fixture(scope="module")
def fp():
    return load_fingerprints()


@pytest.fixture
def tracker(fp):
    return StratumTracker(fp)


# ---------------------------------------------------------------------------- event builder


def conversation(a="10.0.0.5", ap=50123, b="203.0.113.10", bp=3333, syn="a") -> Conversation:
    return Conversation("test.pcap", a, ap, b, bp, 0, 0, first_ts_ns=T0, last_ts_ns=T0,
                        syn_from=syn)


def dumps(obj: dict, rng: random.Random) -> bytes:
    """JSON as different clients write it: key order, whitespace, jsonrpc or not."""
    items = list(obj.items())
    if rng.random() < 0.3:
        items.reverse()
    style = rng.randrange(3)
    seps = [(",", ":"), (", ", ": "), (" ,  ", " :\t")][style]
    text = json.dumps(dict(items), separators=seps)
    return (text + ("\r\n" if rng.random() < 0.1 else "\n")).encode()


class Script:
    """Messages of both sides in time order; ``miner`` is the conversation side (0 = a)."""

    def __init__(self, conv: Conversation, miner: int = 0, seed: int = 1) -> None:
        self.conv, self.miner, self.rng = conv, miner, random.Random(seed)
        self.msgs: list[tuple[int, float, bytes]] = []
        self.split = True  # False: one chunk per message (segment sizes matter)

    def c(self, t: float, obj: dict) -> Script:
        self.msgs.append((self.miner, t, dumps(obj, self.rng)))
        return self

    def s(self, t: float, obj: dict) -> Script:
        self.msgs.append((1 - self.miner, t, dumps(obj, self.rng)))
        return self

    def raw(self, d: int, t: float, data: bytes) -> Script:
        self.msgs.append((d, t, data))
        return self

    def events(self, end: bool = True, offsets: tuple[int, int] = (0, 0)) -> list:
        """Chunks: messages split inside tokens, or several messages per chunk."""
        out, off, frame, i = [], list(offsets), 1, 0
        while i < len(self.msgs):
            d, t, data = self.msgs[i]
            i += 1
            while (self.split and self.rng.random() < 0.3 and i < len(self.msgs)
                   and self.msgs[i][0] == d and self.msgs[i][1] == t):
                data += self.msgs[i][2]
                i += 1
            cuts = sorted(self.rng.sample(range(1, len(data)), min(len(data) - 1, 3))) \
                if self.split and self.rng.random() < 0.5 and len(data) > 4 else []
            for a, b in zip([0, *cuts], [*cuts, len(data)], strict=True):
                ts = T0 + int(t * NS)
                out.append(StreamData(self.conv, d, Chunk(off[d], ts, frame, data[a:b])))
                off[d] += b - a
                frame += 1
        if end:
            out.append(StreamEnd(self.conv, "fin"))
        return out


def run(tracker: StratumTracker, *scripts: Script) -> list[StratumSession]:
    events = [e for s in scripts for e in s.events(end=False)]
    events.sort(key=lambda e: e.chunk.ts_ns)  # interleave conversations in time
    out = tracker.feed_all(events)
    for s in scripts:
        out += tracker.feed(StreamEnd(s.conv, "fin"))
    return out


def hexs(rng: random.Random, n: int) -> str:
    return "".join(rng.choice("0123456789abcdef") for _ in range(n))


def interval(n: int, mean_work: float, window: float) -> tuple[float, float]:
    low, high = poisson_interval(n)
    return low * mean_work / window, high * mean_work / window


# ---------------------------------------------------------------------------- dialects

BTC_WALLET = "bc1qw508d6qejxtdg4y5r3zarvary0c5xw7kv8f3t4"


def notify9(rng, job):
    return [job, hexs(rng, 64), hexs(rng, 100), hexs(rng, 80), [hexs(rng, 64)] * 2,
            "20000000", "17034219", "66a0c3e1", True]


def submit6(rng, worker, job):
    return [worker, job, "00000001", "66a0c3e1", hexs(rng, 8), "00402000"]


def btc_script(conv=None, seed=1) -> Script:
    """cgminer to a SHA-256d pool: difficulty 65536, then 131072 from the next job on."""
    rng = random.Random(seed)
    login = BTC_WALLET + ".rig01"
    s = Script(conv or conversation(), seed=seed)
    s.c(0, {"id": 1, "method": "mining.configure",
            "params": [["version-rolling"], {"version-rolling.mask": "1fffe000",
                                             "version-rolling.min-bit-count": 2}]})
    s.s(0, {"id": 1, "result": {"version-rolling": True, "version-rolling.mask": "1fffe000"},
            "error": None})
    s.c(0, {"id": 2, "method": "mining.subscribe", "params": ["cgminer/4.11.1"]})
    s.s(0, {"id": 2, "result": [[["mining.set_difficulty", "1f3a"], ["mining.notify", "1f3a"]],
                                "08000002", 4], "error": None})
    s.c(0, {"id": 3, "method": "mining.authorize", "params": [login, "x"]})
    s.s(0, {"id": 3, "result": True, "error": None})
    s.s(0, {"id": None, "method": "mining.set_difficulty", "params": [65536]})
    s.s(0, {"id": None, "method": "mining.notify", "params": notify9(rng, "j1")})
    for i in range(100):
        t = 1 + 4 * i
        s.c(t, {"params": submit6(rng, login, "j1"), "id": 10 + i, "method": "mining.submit"})
        s.s(t, {"id": 10 + i, "result": True, "error": None})
    s.c(420, {"id": 200, "method": "mining.submit", "params": submit6(rng, login, "j0")})
    s.s(420, {"id": 200, "result": None, "error": [21, "Job not found", None]})
    s.c(421, {"id": 201, "method": "mining.submit", "params": submit6(rng, login, "j1")})
    s.s(421, {"id": 201, "result": None, "error": [23, "Low difficulty share", None]})
    s.s(450, {"id": None, "method": "mining.set_difficulty", "params": [131072]})
    s.c(450, {"id": "s-202", "method": "mining.submit", "params": submit6(rng, login, "j1")})
    s.s(450, {"id": "s-202", "result": True, "error": None})
    s.s(451, {"id": None, "method": "mining.notify", "params": notify9(rng, "j2")})
    for i in range(20):
        t = 452 + 7 * i
        s.c(t, {"id": 300.0 + i, "method": "mining.submit", "params": submit6(rng, login, "j2")})
        s.s(t, {"id": 300 + i, "result": True, "error": None})
    s.s(600, {"id": None, "method": "client.show_message", "params": ["bye"]})
    return s


def test_stratum_v1_sha256d_difficulty_change_and_hashrate(tracker, fp):
    (sess,) = run(tracker, btc_script())
    assert (sess.dialect, sess.algorithm, sess.coin) == ("stratum-v1", "sha256d", "BTC")
    assert (sess.src_ip, sess.src_port, sess.dest_ip, sess.dest_port) == (
        "10.0.0.5", 50123, "203.0.113.10", 3333)
    assert sess.agent == "cgminer/4.11.1"
    assert (sess.login, sess.wallet, sess.worker) == (BTC_WALLET + ".rig01", BTC_WALLET, "rig01")
    assert (sess.shares_submitted, sess.shares_accepted, sess.shares_rejected) == (123, 121, 2)
    assert sess.difficulty == 131072
    # by hand: 100 shares on j1, the stale one (work done), the old-job share after the
    # difficulty change (still 65536: applies to the next job), 20 on j2 at 131072; the
    # low-difficulty reject stands for no work. Window 0 … 600 s.
    work = 2**32 * (102 * 65536 + 20 * 131072)
    assert sess.hashrate_hs == pytest.approx(work / 600, rel=1e-12)
    low, high = interval(122, work / 122, 600)
    assert (sess.hashrate_hs_low, sess.hashrate_hs_high) == (pytest.approx(low),
                                                             pytest.approx(high))
    assert sess.diff1_shares_per_s == pytest.approx((102 * 65536 + 20 * 131072) / 600)
    # one worker from cgminer (ASIC): the devices rated within the hashrate interval
    eff = fp.efficiency_range("sha256d", {"asic", "fpga"}, hashrate_between=(low, high))
    assert sess.evidence["power_devices"] == list(eff.devices) and 0 < eff.n < len(
        fp.efficiency_range("sha256d").devices)
    assert all(low <= fp.efficiency[d].hashrate_hs <= high for d in (
        r.id for r in fp.efficiency.values() if r.device in eff.devices))
    assert sess.power_w == pytest.approx(sess.hashrate_hs * eff.median)
    assert sess.power_w_low == pytest.approx(low * eff.min)
    assert sess.power_w_high == pytest.approx(high * eff.max)
    assert sess.power_w_low < sess.power_w < sess.power_w_high
    assert sess.hashrate_reason is None
    assert sess.community_id.startswith("1:") and len(sess.community_id) == 30
    assert sess.timestamp == sess.first_seen == T0
    assert sess.last_seen == T0 + 600 * NS
    ev = sess.evidence
    assert ev["capture"] == "test.pcap" and ev["frames"]
    assert ev["lines"][0]["dir"] == "c2s"
    assert json.loads(ev["lines"][0]["text"])["method"] == "mining.configure"
    assert ev["reject_reasons"] == {"21": 1, "23": 1}
    assert ev["agent_fingerprint"] == "cgminer"


def test_community_id_matches_reference(tracker):
    communityid = pytest.importorskip("communityid")
    (sess,) = run(tracker, btc_script())
    cid = communityid.CommunityID().calc(communityid.FlowTuple.make_tcp(
        sess.src_ip, sess.dest_ip, sess.src_port, sess.dest_port))
    assert sess.community_id == cid


def simple_v1(conv, login, password, diff, n_shares, rng, agent="sgminer/5.1.1", seed=3):
    s = Script(conv, seed=seed)
    s.c(0, {"id": 1, "method": "mining.subscribe", "params": [agent]})
    s.s(0, {"id": 1, "result": [[["mining.notify", "ab"]], "0800", 4], "error": None})
    s.c(0, {"id": 2, "method": "mining.authorize", "params": [login, password]})
    s.s(0, {"id": 2, "result": True, "error": None})
    s.s(0, {"id": None, "method": "mining.set_difficulty", "params": [diff]})
    s.s(0, {"id": None, "method": "mining.notify", "params": notify9(rng, "a1")})
    for i in range(n_shares):
        s.c(1 + i, {"id": 4, "method": "mining.submit",
                    "params": submit6(rng, login, "a1")[:5]})
        s.s(1 + i, {"id": 4, "result": True, "error": None})
    s.s(300, {"id": 9, "method": "mining.ping", "params": []})
    return s


def test_scrypt_from_password_coin_hint(tracker):
    rng = random.Random(5)
    (sess,) = run(tracker, simple_v1(conversation(), "acct.worker1", "c=LTC,d=1024", 1024, 50,
                                     rng))
    assert (sess.algorithm, sess.coin, sess.wallet) == ("scrypt", "LTC", None)
    assert (sess.login, sess.worker) == ("acct.worker1", "worker1")
    assert sess.hashrate_hs == pytest.approx(50 * 1024 * 2**16 / 300)  # 2^16 per difficulty
    assert "yiimp-payout-coin" in sess.evidence["coin_from"]


def test_unknown_algorithm_gives_no_hashrate_but_diff1_rate(tracker):
    rng = random.Random(6)
    (sess,) = run(tracker, simple_v1(conversation(), "acct.worker1", "x", 2048, 30, rng))
    assert sess.dialect == "stratum-v1"
    assert sess.algorithm is None and sess.coin is None
    assert sess.hashrate_hs is None and sess.power_w is None
    assert "algorithm unknown" in sess.hashrate_reason
    assert sess.diff1_shares_per_s == pytest.approx(30 * 2048 / 300)
    assert sess.shares_submitted == sess.shares_accepted == 30


ZEC_TARGET = "0003" + "f" * 60


def test_zcash_equihash(tracker):
    rng = random.Random(7)
    login = "t1UYsZVJkLPeMjxEtACvSxfWuNmddpWfxzs.rig"
    s = Script(conversation(), seed=7)
    s.c(0, {"id": 1, "method": "mining.subscribe",
            "params": ["nheqminer/0.5c", None, "eu1-zcash.flypool.org", "3333"]})
    s.s(0, {"id": 1, "result": [None, "e3a1b2c4"], "error": None})
    s.c(0, {"id": 2, "method": "mining.authorize", "params": [login, "x"]})
    s.s(0, {"id": 2, "result": True, "error": None})
    s.s(0, {"id": None, "method": "mining.set_target", "params": [ZEC_TARGET]})
    s.s(0, {"id": None, "method": "mining.notify",
            "params": ["1a2b", "04000000", hexs(rng, 64), hexs(rng, 64), "0" * 64, "66a0c3e1",
                       "1c01f2b3", True]})
    for i in range(12):
        s.c(10 * i + 5, {"id": 4 + i, "method": "mining.submit",
                         "params": [login, "1a2b", "66a0c3e1", hexs(rng, 54),
                                    "fd4005" + hexs(rng, 2688)]})
        s.s(10 * i + 5, {"id": 4 + i, "result": True})
    s.s(240, {"id": None, "method": "mining.notify",
              "params": ["1a2c", "04000000", hexs(rng, 64), hexs(rng, 64), "0" * 64,
                         "66a0c3e2", "1c01f2b3", False]})
    (sess,) = run(tracker, s)
    # the 1344-byte solution (compactSize fd4005) is Equihash(200, 9)
    assert (sess.dialect, sess.coin, sess.algorithm) == ("stratum-v1-zcash", "ZEC",
                                                         "equihash-200-9")
    assert sess.agent == "nheqminer/0.5c"
    assert (sess.pool_host, sess.pool) == ("eu1-zcash.flypool.org", "Flypool")
    work = 2**256 / int(ZEC_TARGET, 16)  # solutions per share
    assert sess.difficulty == pytest.approx(work)
    assert sess.hashrate_hs == pytest.approx(12 * work / 240)


def test_kawpow_target_in_job(tracker):
    rng = random.Random(8)
    login = "RKxTdfmtxtfLDKZBgx6SvNkBtNu9jRYnLh.rig1"
    target = "00000000ff" + "0" * 54
    s = Script(conversation(bp=3636), seed=8)
    s.c(0, {"id": 1, "jsonrpc": "2.0", "method": "mining.subscribe",
            "params": ["kawpowminer/1.2.4"]})
    s.s(0, {"id": 1, "result": [None, "a3f1"], "error": None})
    s.c(0, {"id": 3, "jsonrpc": "2.0", "method": "mining.authorize", "params": [login, "x"]})
    s.s(0, {"id": 3, "result": True, "error": None})
    s.s(0, {"id": None, "method": "mining.set_target", "params": [target]})
    s.s(0, {"id": None, "method": "mining.notify",
            "params": ["8b2d", hexs(rng, 64), hexs(rng, 64), target, True, 3540123, "1b00f1a2"]})
    for i in range(25):
        s.c(4 * i + 1, {"id": 40 + i, "jsonrpc": "2.0", "method": "mining.submit",
                        "params": [login, "8b2d", "0x" + hexs(rng, 16), "0x" + hexs(rng, 64),
                                   "0x" + hexs(rng, 64)]})
        s.s(4 * i + 1, {"id": 40 + i, "result": True, "error": None})
    s.s(120, {"id": None, "method": "client.show_message", "params": ["hi"]})
    (sess,) = run(tracker, s)
    assert (sess.dialect, sess.algorithm, sess.coin) == ("stratum-v1", "kawpow", "RVN")
    assert sess.hashrate_hs == pytest.approx(25 * 2**256 / int(target, 16) / 120)
    assert sess.power_w is None  # no kawpow hardware in efficiency.csv


def test_ethproxy(fp):
    """The 0x address fits every EVM chain: the coin comes from the pool the scan layer
    names (DNS), and the algorithm from the coin (ETC → etchash)."""
    names = {("203.0.113.10", 1010): "etc.2miners.com"}
    tracker = StratumTracker(fp, host_of=lambda ip, port, ts: names.get((ip, port)))
    rng = random.Random(9)
    wallet = "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed"
    boundary = "0x0000000112e0be826d694b2e62d01511f12a6061fbaec8bc02357593e70e52ba"
    s = Script(conversation(bp=1010), seed=9)
    s.c(0, {"id": 1, "jsonrpc": "2.0", "method": "eth_submitLogin", "worker": "eth1.0",
            "params": [wallet + ".rig1", "x"]})
    s.s(0, {"id": 1, "jsonrpc": "2.0", "result": True})
    s.c(0, {"id": 5, "jsonrpc": "2.0", "method": "eth_getWork", "params": []})
    header = "0x" + hexs(rng, 64)
    s.s(0, {"id": 5, "jsonrpc": "2.0", "result": [header, "0x" + hexs(rng, 64), boundary]})
    for i in range(8):
        if i == 4:
            header = "0x" + hexs(rng, 64)
            s.s(50, {"id": 0, "jsonrpc": "2.0", "result": [header, "0x" + hexs(rng, 64),
                                                           boundary]})
        s.c(12 * i + 3, {"id": 40 + i, "jsonrpc": "2.0", "method": "eth_submitWork",
                         "params": ["0x" + hexs(rng, 16), header, "0x" + hexs(rng, 64)],
                         "worker": "rig1"})
        s.s(12 * i + 3, {"id": 40 + i, "jsonrpc": "2.0", "result": i != 6})
    s.c(100, {"id": 9, "jsonrpc": "2.0", "method": "eth_submitHashrate",
              "params": ["0x" + "0" * 56 + "1dcd6500", "0x" + hexs(rng, 64)]})
    (sess,) = run(tracker, s)
    assert (sess.dialect, sess.algorithm, sess.coin) == ("ethproxy", "etchash", "ETC")
    assert (sess.pool, sess.pool_host) == ("2Miners", "etc.2miners.com")
    assert (sess.wallet, sess.worker) == (wallet, "rig1")
    assert (sess.shares_submitted, sess.shares_accepted, sess.shares_rejected) == (8, 7, 1)
    work = 2**256 / int(boundary, 16)
    assert sess.hashrate_hs == pytest.approx(8 * work / 100)
    assert sess.evidence["reported_hashrate_hs"] == 0x1DCD6500
    assert sess.power_w == pytest.approx(sess.hashrate_hs * fp.efficiency_range("etchash").median)
    # without the pool's name the address alone does not tell the chain
    (bare,) = run(StratumTracker(fp), s)
    assert (bare.coin, bare.algorithm) == (None, "ethash")
    assert bare.evidence["coin_candidates"][:2] == ["ETH", "ETC"]


def test_ethereumstratum_1(tracker):
    rng = random.Random(10)
    login = "0xfB6916095ca1df60bB79Ce92cE3Ea74c37c5d359.rig2"
    s = Script(conversation(bp=3353), seed=10)
    s.c(0, {"id": 1, "method": "mining.subscribe",
            "params": ["ethminer-0.19.0", "EthereumStratum/1.0.0"]})
    s.s(0, {"id": 1, "result": [["mining.notify", "ae6812eb4cd7735a302a8a9dd95cf71f",
                                 "EthereumStratum/1.0.0"], "a2eea0"], "error": None})
    s.c(0, {"id": 2, "method": "mining.extranonce.subscribe", "params": []})
    s.c(0, {"id": 3, "method": "mining.authorize", "params": [login, "x"]})
    s.s(0, {"id": 3, "result": True, "error": None})
    s.s(0, {"id": None, "method": "mining.set_difficulty", "params": [0.5]})
    s.s(0, {"id": None, "method": "mining.set_extranonce", "params": ["af4c"]})
    s.s(0, {"id": None, "method": "mining.notify",
            "params": ["bf0488aa", hexs(rng, 64), hexs(rng, 64), True]})
    for i in range(16):
        s.c(3 * i + 1, {"id": 10 + i, "method": "mining.submit",
                        "params": [login, "bf0488aa", hexs(rng, 10)]})
        s.s(3 * i + 1, {"id": 10 + i, "result": True, "error": None})
    s.s(64, {"id": None, "method": "mining.notify",
             "params": ["bf0488ab", hexs(rng, 64), hexs(rng, 64), True]})
    (sess,) = run(tracker, s)
    assert (sess.dialect, sess.algorithm, sess.coin) == ("ethereumstratum-1", "ethash", None)
    assert sess.agent == "ethminer-0.19.0"
    assert sess.hashrate_hs == pytest.approx(16 * 0.5 * 2**32 / 64)


def test_ethereumstratum_2(tracker):
    rng = random.Random(11)
    target = "0000000112e0be826d694b2e62d01511f12a6061fbaec8bc02357593e70e52ba"
    s = Script(conversation(bp=4444), seed=11)
    s.c(0, {"id": 1, "method": "mining.hello",
            "params": {"agent": "ethminer-0.19.0", "host": "eth.example.com", "port": "115c",
                       "proto": "EthereumStratum/2.0.0"}})
    s.s(0, {"id": 1, "result": {"proto": "EthereumStratum/2.0.0", "encoding": "plain",
                                "resume": "1", "timeout": "b4", "maxerrors": "5"}})
    s.c(0, {"id": 2, "method": "mining.subscribe", "params": []})
    s.s(0, {"id": 2, "result": "s-12345"})
    s.c(0, {"id": 3, "method": "mining.authorize",
            "params": ["0xfB6916095ca1df60bB79Ce92cE3Ea74c37c5d359.rig3", "x"]})
    s.s(0, {"id": 3, "result": "rig3"})
    s.s(0, {"method": "mining.set", "params": {"epoch": "dc", "target": target, "algo": "ethash",
                                               "extranonce": "af4c", "timeout": "b4"}})
    s.s(0, {"method": "mining.notify", "params": ["j1", "b2a1c3", hexs(rng, 64), True]})
    for i in range(10):
        s.c(5 * i + 2, {"id": 20 + i, "method": "mining.submit",
                        "params": ["j1", hexs(rng, 12), "rig3"]})
        s.s(5 * i + 2, {"id": 20 + i, "result": True})
    s.c(60, {"id": 7, "method": "mining.hashrate", "params": ["1dcd6500", "rig3"]})
    (sess,) = run(tracker, s)
    assert (sess.dialect, sess.algorithm) == ("ethereumstratum-2", "ethash")
    assert (sess.agent, sess.pool_host) == ("ethminer-0.19.0", "eth.example.com")
    assert sess.hashrate_hs == pytest.approx(10 * 2**256 / int(target, 16) / 60)
    assert "rig3" in sess.workers


def test_kaspa_bridge(tracker):
    login = "kaspa:qpauqsvk7yf9unexwmxsnmg547mhyga37csh0kj53q6xxgl24ydxjsgzthw5j.rig"
    s = Script(conversation(bp=5555), seed=12)
    s.c(0, {"id": 1, "method": "mining.subscribe", "params": ["SomeMiner/1.0"]})
    s.s(0, {"id": 1, "jsonrpc": "2.0", "result": [True, "EthereumStratum/1.0.0"]})
    s.c(0, {"id": 2, "method": "mining.authorize", "params": [login, "x"]})
    s.s(0, {"id": 2, "jsonrpc": "2.0", "result": True})
    s.s(0, {"id": None, "jsonrpc": "2.0", "method": "set_extranonce", "params": ["2f"]})
    s.s(0, {"id": None, "jsonrpc": "2.0", "method": "mining.set_difficulty", "params": [4]})
    s.s(0, {"id": 17, "jsonrpc": "2.0", "method": "mining.notify",
            "params": ["17", [1234, 5678, 9012, 3456], 1719400000123]})
    for i in range(40):
        s.c(i + 1, {"id": 100 + i, "method": "mining.submit",
                    "params": [login, "17", "0x2f00a1b2c3d4e5f6"]})
        s.s(i + 1, {"id": 100 + i, "jsonrpc": "2.0", "result": True})
    s.s(50, {"id": 18, "jsonrpc": "2.0", "method": "mining.notify",
             "params": ["18", [1, 2, 3, 4], 1719400050123]})
    (sess,) = run(tracker, s)
    assert (sess.dialect, sess.algorithm, sess.coin) == ("stratum-v1", "kheavyhash", "KAS")
    assert sess.wallet == login.rsplit(".", 1)[0] and sess.worker == "rig"
    assert sess.hashrate_hs == pytest.approx(40 * 4 * 2**32 / 50)


XMR_WALLET = ("48edfHu7V9Z84YzzMa6fUueoELZ9ZRXq9VetWzYGzKt52XU5xvqgzYnDK9URnRoJMk1j8nLwEVsaSWJ4"
              "fhdUyZijBGUicoD")


def xmrig_script(conv, seed=13, shares=20) -> Script:
    rng = random.Random(seed)
    s = Script(conv, seed=seed)
    s.c(0, {"id": 1, "jsonrpc": "2.0", "method": "login",
            "params": {"login": XMR_WALLET, "pass": "x",
                       "agent": "XMRig/6.26.0 (Linux x86_64) libuv/1.48.0 gcc/13.2.0",
                       "rigid": "rig01", "algo": ["rx/0", "cn/2", "cn/r", "rx/wow"]}})
    s.s(0, {"id": 1, "jsonrpc": "2.0", "error": None,
            "result": {"id": "479a7e6b-6f2c", "job": {
                "blob": hexs(rng, 152), "job_id": "2b6f", "target": "b88d0600", "algo": "rx/0",
                "height": 3312345, "seed_hash": hexs(rng, 64)},
                "extensions": ["algo", "nicehash", "keepalive"], "status": "OK"}})
    for i in range(shares):
        if i == shares // 2:
            s.s(5 * i, {"jsonrpc": "2.0", "method": "job", "params": {
                "blob": hexs(rng, 152), "job_id": "2b70", "target": "b88d0600", "algo": "rx/0",
                "height": 3312346, "seed_hash": hexs(rng, 64)}})
        job = "2b6f" if i < shares // 2 else "2b70"
        s.c(5 * i + 1, {"id": 4 + i, "jsonrpc": "2.0", "method": "submit",
                        "params": {"id": "479a7e6b-6f2c", "job_id": job,
                                   "nonce": hexs(rng, 8), "result": hexs(rng, 64),
                                   "algo": "rx/0"}})
        if i == 3:
            s.s(5 * i + 1, {"id": 4 + i, "jsonrpc": "2.0", "result": None,
                            "error": {"code": -1, "message": "Low difficulty share"}})
        else:
            s.s(5 * i + 1, {"id": 4 + i, "jsonrpc": "2.0", "error": None,
                            "result": {"status": "OK"}})
    s.c(5 * shares, {"id": 99, "jsonrpc": "2.0", "method": "keepalived",
                     "params": {"id": "479a7e6b-6f2c"}})
    return s


def test_cryptonote_xmrig(tracker, fp):
    (sess,) = run(tracker, xmrig_script(conversation(bp=10128)))
    assert (sess.dialect, sess.algorithm, sess.coin) == ("cryptonote", "randomx", "XMR")
    assert (sess.wallet, sess.worker) == (XMR_WALLET, "rig01")
    assert sess.agent.startswith("XMRig/6.26.0")
    assert (sess.shares_submitted, sess.shares_accepted, sess.shares_rejected) == (20, 19, 1)
    t32 = int.from_bytes(bytes.fromhex("b88d0600"), "little")  # xmrig Job::toDiff by hand
    diff = (2**64 - 1) / ((2**64 - 1) // ((2**32 - 1) // t32))
    assert diff == pytest.approx(10000, rel=1e-6) and sess.difficulty == pytest.approx(diff)
    assert sess.hashrate_hs == pytest.approx(19 * diff / 100)  # low-difficulty reject left out
    # XMRig is CPU software; one worker: CPUs rated within the session's interval
    eff = fp.efficiency_range("randomx", "cpu",
                              hashrate_between=(sess.hashrate_hs_low, sess.hashrate_hs_high))
    assert eff is not None and sess.power_w == pytest.approx(sess.hashrate_hs * eff.median)
    assert sess.evidence["power_basis"].startswith("one worker")


# ---------------------------------------------------------------------------- Stratum V2


def sv2_frame(msg_type: int, payload: bytes, channel_msg: bool = False) -> bytes:
    ext = 0x8000 if channel_msg else 0
    return struct.pack("<HB", ext, msg_type) + len(payload).to_bytes(3, "little") + payload


def s0_255(text: str) -> bytes:
    b = text.encode()
    return bytes([len(b)]) + b


def u32(x: int) -> bytes:
    return struct.pack("<I", x)


def sv2_script(protocol: int = 0) -> tuple[Script, int, int]:
    t1, t2 = 2**224 - 1, 2**223
    s = Script(conversation(bp=3336), seed=14)
    setup = (bytes([protocol]) + struct.pack("<HHI", 2, 2, 0) + s0_255("v2.stratum.braiins.com")
             + struct.pack("<H", 3336) + s0_255("Bitmain") + s0_255("S9i 13.5")
             + s0_255("braiins-os-2018-09-22-1-hash") + s0_255("some-device-uuid"))
    s.raw(0, 0, sv2_frame(0x00, setup))
    s.raw(1, 0, sv2_frame(0x01, struct.pack("<HI", 2, 0)))
    s.raw(0, 0, sv2_frame(0x10, u32(1) + s0_255("braiinstest.worker1") + struct.pack("<f", 14e12)
                          + b"\xff" * 32))
    s.raw(1, 0, sv2_frame(0x11, u32(1) + u32(7) + t1.to_bytes(32, "little") + b"\x00" + u32(0)))
    s.raw(1, 0, sv2_frame(0x15, u32(7) + u32(1) + b"\x00" + u32(0x20000000) + b"\x11" * 32, True))
    for seq in range(1, 16):
        if seq == 11:
            s.raw(1, 100, sv2_frame(0x21, u32(7) + t2.to_bytes(32, "little"), True))
        s.raw(0, 10 * seq, sv2_frame(0x1A, u32(7) + u32(seq) + u32(1) + u32(seq) + u32(0)
                                     + u32(0x20000000), True))
    s.raw(1, 150, sv2_frame(0x1C, u32(7) + u32(14) + u32(14) + struct.pack("<Q", 14), True))
    s.raw(1, 150, sv2_frame(0x1D, u32(7) + u32(15) + s0_255("stale-share"), True))
    s.raw(1, 200, sv2_frame(0x20, u32(7) + u32(2) + b"\x22" * 32 + u32(0) + u32(0), True))
    return s, t1, t2


def test_stratum_v2_plaintext(tracker):
    s, t1, t2 = sv2_script()
    (sess,) = run(tracker, s)
    assert (sess.dialect, sess.algorithm) == ("stratum-v2", "sha256d")
    assert sess.login == "braiinstest.worker1" and sess.worker == "worker1"
    assert sess.agent == "braiins-os-2018-09-22-1-hash"
    assert sess.evidence["sv2_setup"]["hardware_version"] == "S9i 13.5"
    assert sess.pool_host == "v2.stratum.braiins.com"
    assert (sess.shares_submitted, sess.shares_accepted, sess.shares_rejected) == (15, 14, 1)
    # SetTarget applies at once to the channel: 10 shares at t1, 5 at t2; window 0 … 200 s
    assert sess.hashrate_hs == pytest.approx((10 * 2**256 / t1 + 5 * 2**256 / t2) / 200)
    assert sess.evidence["reported_hashrate_hs"] == pytest.approx(14e12, rel=1e-6)


def noise_script(rng: random.Random, client: int = 64, server: int = 234) -> Script:
    s = Script(conversation(bp=3336), seed=40)
    s.split = False
    s.raw(0, 0, rng.randbytes(client))
    s.raw(1, 0, rng.randbytes(server))
    for i in range(6):
        s.raw(0, 10 * i + 1, rng.randbytes(22 + 60 + 16))
        s.raw(1, 10 * i + 2, rng.randbytes(22 + 40 + 16))
    return s


def test_stratum_v2_noise_handshake_shape(fp):
    """Encrypted: only the Noise NX sizes of dialects.yaml (64 then 234 random bytes) show."""
    (sess,) = run(StratumTracker(fp), noise_script(random.Random(41)))
    assert (sess.dialect, sess.algorithm, sess.coin) == ("stratum-v2", "sha256d", "BTC")
    assert sess.shares_submitted is None and sess.hashrate_hs is None
    assert "encrypted" in sess.hashrate_reason
    assert run(StratumTracker(fp), noise_script(random.Random(42), 64, 233)) == []
    quiet = noise_script(random.Random(43))
    quiet.msgs[0] = (0, 0, b"A" * 64)  # right size, but text: not a key
    assert run(StratumTracker(fp), quiet) == []


def test_cryptonote_without_algorithm_still_has_a_hashrate(tracker):
    """Every CryptoNote family reads the target the same way (xmrig difficulty), so the work
    per share is known although the algorithm is not; the power is not."""
    s = Script(conversation(bp=7777), seed=44)
    s.c(0, {"id": 1, "method": "login",
            "params": {"login": "pooluser", "pass": "x", "agent": "xmr-stak/2.10.8"}})
    s.s(0, {"id": 1, "error": None, "result": {
        "id": "7", "job": {"blob": "0" * 152, "job_id": "a", "target": "b88d0600"},
        "status": "OK"}})
    for i in range(10):
        s.c(10 * i + 5, {"id": 2, "method": "submit", "params": {
            "id": "7", "job_id": "a", "nonce": "0000abcd", "result": "00" * 32}})
        s.s(10 * i + 5, {"id": 2, "error": None, "result": {"status": "OK"}})
    s.c(100, {"id": 3, "method": "keepalived", "params": {"id": "7"}})
    (sess,) = run(tracker, s)
    assert (sess.dialect, sess.algorithm, sess.coin) == ("cryptonote", None, None)
    assert sess.hashrate_hs == pytest.approx(10 * 10000 / 100, rel=1e-6)
    assert sess.power_w is None and sess.evidence["power_reason"] == "algorithm unknown"


def blob_script(head: str, *, login: str = XMR_WALLET + ".rig", login_algo=None,
                job_algo=None, seed: int = 45) -> Script:
    """xmr-stak (2017 style: no "algo" anywhere unless given) mining with job blobs that
    start with ``head``: the login result's job, then a "job" notification at 50 s."""
    rng = random.Random(seed)
    s = Script(conversation(bp=9050), seed=seed)
    params = {"login": login, "pass": "x", "agent": "xmr-stak-cpu/1.3.0-1.5.0"}
    if login_algo:
        params["algo"] = login_algo
    s.c(0, {"id": 1, "method": "login", "params": params})

    def job(job_id: str) -> dict:
        out = {"blob": head + hexs(rng, 152 - len(head)), "job_id": job_id,
               "target": "b88d0600"}
        return out | ({"algo": job_algo} if job_algo else {})

    s.s(0, {"id": 1, "jsonrpc": "2.0", "error": None,
            "result": {"id": "7", "job": job("a"), "status": "OK"}})
    for i in range(10):
        if i == 5:
            s.s(50, {"jsonrpc": "2.0", "method": "job", "params": job("b")})
        s.c(10 * i + 5, {"id": 2 + i, "method": "submit", "params": {
            "id": "7", "job_id": "a" if i < 5 else "b", "nonce": hexs(rng, 8),
            "result": hexs(rng, 64)}})
        s.s(10 * i + 5, {"id": 2 + i, "jsonrpc": "2.0", "error": None,
                         "result": {"status": "OK"}})
    s.c(100, {"id": 99, "method": "keepalived", "params": {"id": "7"}})
    return s


def test_cryptonote_blob_version_6_is_cryptonight(tracker):
    """Monero blobs of block major version 6 (2017) were hashed with original CryptoNight:
    the job contents tell the algorithm, above the wallet format (which fits RandomX today)."""
    (sess,) = run(tracker, blob_script("0606"))
    assert (sess.dialect, sess.coin, sess.algorithm) == ("cryptonote", "XMR", "cryptonight")
    assert sess.evidence["blob_major_version"] == 6
    assert sess.evidence["algorithm_from"] == [
        "job blob major version 6: XMR hashed it with cryptonight"]
    assert sess.evidence["coin_from"] == "wallet format"
    # the work per share comes from the target whatever the algorithm: hashrate kept
    assert sess.hashrate_hs == pytest.approx(10 * 10000 / 100, rel=1e-6)
    # efficiency.csv has no CryptoNight rows: no power, and it says why
    assert sess.power_w is None and sess.power_w_low is None and sess.power_w_high is None
    assert sess.evidence["power_reason"] == "no efficiency figures for cryptonight"


def test_cryptonote_blob_version_12_is_randomx(tracker, fp):
    (sess,) = run(tracker, blob_script("0c0c"))
    assert (sess.coin, sess.algorithm) == ("XMR", "randomx")
    assert sess.evidence["blob_major_version"] == 12
    assert "job blob major version 12: XMR hashed it with randomx" in \
        sess.evidence["algorithm_from"]
    assert sess.hashrate_hs == pytest.approx(10 * 10000 / 100, rel=1e-6)
    assert sess.power_w is not None and "power_reason" not in sess.evidence


@pytest.mark.parametrize("head, login_algo, job_algo, algorithm", [
    ("0606", ["rx/0"], None, "randomx"),         # xmrig's login algo list
    ("0606", None, "rx/0", "randomx"),           # the pool's job algo
    ("0c0c", None, "cn/r", "cryptonight"),
])
def test_cryptonote_announced_algorithm_beats_blob_version(tracker, head, login_algo,
                                                           job_algo, algorithm):
    (sess,) = run(tracker, blob_script(head, login_algo=login_algo, job_algo=job_algo))
    assert (sess.coin, sess.algorithm) == ("XMR", algorithm)
    assert not any("blob" in why for why in sess.evidence["algorithm_from"])
    assert sess.evidence["blob_major_version"] == int(head[:2], 16)
    assert sess.evidence["blob_major_version_overruled"].startswith(
        f"job blob major version {int(head[:2], 16)}: XMR hashed it with ")


@pytest.mark.parametrize("head, version", [
    ("ffff", None),   # no varint: a uint8 takes at most 2 bytes, both continue here
    ("ff80", None),
    ("6363", 99),     # a varint, but a version no fingerprint lists for XMR
    ("0000", 0),
])
def test_cryptonote_unknown_blob_version_falls_back_to_the_wallet(tracker, head, version):
    """A blob whose first byte tells nothing leaves the choice to the other evidence: the
    Monero wallet format, whose families today are RandomX."""
    (sess,) = run(tracker, blob_script(head, seed=46))
    assert (sess.coin, sess.algorithm) == ("XMR", "randomx")
    assert sess.evidence["algorithm_from"] == [f"wallet format of {XMR_WALLET[:12]}…"]
    assert sess.evidence.get("blob_major_version") == version
    assert "blob_major_version_overruled" not in sess.evidence


def test_cryptonote_blob_version_needs_the_coin(tracker):
    """Version 6 means CryptoNight for Monero only: with a pool user name instead of a wallet
    the coin, and so what the version means, is not known."""
    (sess,) = run(tracker, blob_script("0606", login="pooluser"))
    assert (sess.coin, sess.algorithm) == (None, None)
    assert sess.evidence["blob_major_version"] == 6
    assert sess.power_w is None and sess.evidence["power_reason"] == "algorithm unknown"


def test_blob_major_versions_in_the_fingerprints(fp, tmp_path):
    from pydantic import ValidationError

    from poolwatch.errors import FingerprintError
    from poolwatch.fingerprints import Recognise

    table = {n: v.id for v in fp.variants.values()
             for n in v.recognise.blob_major_versions.get("XMR", ())}
    assert table == {**dict.fromkeys(range(1, 12), "cryptonight"),
                     **dict.fromkeys(range(12, 17), "randomx")}
    for bad in ({"XMR": [256]}, {"XMR": [-1]}, {"xmr": [6]}, {"XMR": []}, {"XMR": [6, 6]}):
        with pytest.raises(ValidationError):
            Recognise(blob_major_versions=bad)
    extra = tmp_path / "site"
    extra.mkdir()
    (extra / "dialects.yaml").write_text(
        "schema: 1\ndialects: []\nvariants:\n"
        "  - {id: cn-copy, rev: 1, name: copy, dialects: [cryptonote], algorithms: [cryptonight],"
        " recognise: {blob_major_versions: {XMR: [6]}}, source: test}\n")
    with pytest.raises(FingerprintError, match="blob major version 6 of XMR"):
        load_fingerprints(extra_dirs=[extra])


def test_stratum_v2_other_subprotocol_is_no_session(tracker):
    s, _, _ = sv2_script(protocol=2)  # Template Distribution: not a miner
    assert run(tracker, s) == []


# ---------------------------------------------------------------------------- getwork (HTTP)


def http(start: str, headers: dict, body: dict) -> bytes:
    data = json.dumps(body).encode()
    head = [start] + [f"{k}: {v}" for k, v in headers.items()] + [f"Content-Length: {len(data)}"]
    return ("\r\n".join(head) + "\r\n\r\n").encode() + data


def test_getwork_over_http(tracker):
    rng = random.Random(15)
    auth = base64.b64encode(b"user.rig7:secret").decode()
    target = "ffffffffffffffffffffffffffffffffffffffffffffffffffffffff00000000"  # LE, diff 1
    s = Script(conversation(bp=8332), seed=15)
    req = {"User-Agent": "cpuminer/2.5.1", "Authorization": f"Basic {auth}",
           "Host": "pool.example.net:8332", "X-Mining-Extensions": "midstate",
           "Content-Type": "application/json"}
    data = hexs(rng, 256)
    s.raw(0, 0, http("POST / HTTP/1.1", req, {"method": "getwork", "params": [], "id": 0}))
    s.raw(1, 0, http("HTTP/1.1 200 OK", {"X-Long-Polling": "/LP"},
                     {"result": {"data": data, "target": target}, "error": None, "id": 0}))
    for i in range(5):
        solved = data[:152] + hexs(rng, 8) + data[160:]
        s.raw(0, 20 * i + 10, http("POST / HTTP/1.1", req,
                                   {"method": "getwork", "params": [solved], "id": 1}))
        s.raw(1, 20 * i + 10, http("HTTP/1.1 200 OK", {}, {"result": True, "error": None,
                                                            "id": 1}))
    s.raw(0, 100, http("POST / HTTP/1.1", req, {"method": "getwork", "params": [], "id": 0}))
    (sess,) = run(tracker, s)
    # cpuminer speaks getwork for scrypt and SHA-256d alike and nothing here names either:
    # no algorithm and no power, but the target still says how much work a share took.
    assert (sess.dialect, sess.algorithm, sess.coin) == ("getwork", None, None)
    assert (sess.agent, sess.login, sess.worker) == ("cpuminer/2.5.1", "user.rig7", "rig7")
    assert sess.pool_host == "pool.example.net"
    assert (sess.shares_submitted, sess.shares_accepted) == (5, 5)
    work = 2**256 / int.from_bytes(bytes.fromhex(target), "little")
    assert sess.hashrate_hs == pytest.approx(5 * work / 100)
    assert sess.power_w is None and sess.evidence["power_reason"] == "algorithm unknown"


# ---------------------------------------------------------------------------- stream handling


def test_split_at_every_byte_and_one_chunk_give_the_same_session(fp):
    script = btc_script(seed=2)
    whole = b"".join(m[2] for m in script.msgs if m[0] == 0), b"".join(
        m[2] for m in script.msgs if m[0] == 1)
    results = []
    for step in (1, 7, 10**9):
        conv = conversation()
        events, off = [], [0, 0]
        # per direction in order; each side's timestamps are kept monotonic
        for d in (0, 1):
            data = whole[d]
            for i in range(0, len(data), step):
                events.append(StreamData(conv, d, Chunk(off[d], T0 + i, i + 1,
                                                        data[i:i + step])))
                off[d] += len(data[i:i + step])
        tr = StratumTracker(fp)
        out = tr.feed_all(events) + tr.feed(StreamEnd(conv, "fin"))
        (sess,) = out
        results.append((sess.dialect, sess.shares_submitted, sess.shares_accepted,
                        sess.shares_rejected, sess.login, sess.agent, sess.difficulty))
    assert results[0] == results[1] == results[2] == (
        "stratum-v1", 123, 121, 2, BTC_WALLET + ".rig01", "cgminer/4.11.1", 131072)


def test_midstream_join_skips_to_the_first_newline(tracker):
    """No SYN, no subscribe or authorize: the capture starts inside lines on both sides."""
    rng = random.Random(16)
    conv = conversation(syn=None)
    s = Script(conv, seed=16)
    s.raw(1, 0, b'9b1f","07e2"],"20000000","17034219","66a0c3e1",true]}\n')
    s.raw(0, 0, b'e2":"x"}, "id": 77, "method": "mining.submit"}\n')
    s.s(1, {"id": 77, "result": True, "error": None})
    s.s(2, {"id": None, "method": "mining.set_difficulty", "params": [8192]})
    s.s(2, {"id": None, "method": "mining.notify", "params": notify9(rng, "m1")})
    for i in range(12):
        s.c(3 + 10 * i, {"id": 80 + i, "method": "mining.submit",
                         "params": submit6(rng, "acct.w9", "m1")[:5]})
        s.s(3 + 10 * i, {"id": 80 + i, "result": True, "error": None})
    events = s.events(offsets=(123456, 987654))
    out = tracker.feed_all(events)
    (sess,) = out
    assert sess.dialect == "stratum-v1"
    assert sess.shares_submitted == 12 and sess.shares_accepted == 12
    assert (sess.login, sess.worker) == ("acct.w9", "w9")
    assert sess.evidence["partial_lines"] == 2 and "json_errors" not in sess.evidence
    assert sess.diff1_shares_per_s == pytest.approx(12 * 8192 / (113 - 2))
    assert tracker.stats["json_errors"] == 0


def test_gap_in_the_stream_resynchronises(tracker):
    s = btc_script(seed=4)
    events = s.events()
    # drop one chunk of the pool's side in the middle: the line it belonged to is lost
    pool_chunks = [i for i, e in enumerate(events)
                   if isinstance(e, StreamData) and e.direction == 1]
    del events[pool_chunks[len(pool_chunks) // 2]]
    (sess,) = tracker.feed_all(events)
    assert sess.dialect == "stratum-v1" and sess.evidence["gaps"] == 1
    assert 115 <= sess.shares_accepted <= 121


def test_miner_is_src_even_when_the_pool_speaks_first(tracker):
    """The capture begins with the pool's packets, so the pool is side a."""
    rng = random.Random(17)
    conv = conversation(a="198.51.100.7", ap=3333, b="192.168.1.20", bp=40001, syn=None)
    s = Script(conv, miner=1, seed=17)
    s.s(0, {"id": None, "method": "mining.set_difficulty", "params": [16]})
    s.s(0, {"id": None, "method": "mining.notify", "params": notify9(rng, "q1")})
    for i in range(5):
        s.c(i + 1, {"id": i + 1, "method": "mining.submit",
                    "params": submit6(rng, "acct.pi", "q1")[:5]})
        s.s(i + 1, {"id": i + 1, "result": True, "error": None})
    (sess,) = run(tracker, s)
    assert (sess.src_ip, sess.src_port, sess.dest_ip, sess.dest_port) == (
        "192.168.1.20", 40001, "198.51.100.7", 3333)


def test_proxy_with_many_workers(tracker):
    rng = random.Random(18)
    workers = [f"farm.rig{i:02d}" for i in range(6)]
    s = Script(conversation(), seed=18)
    s.c(0, {"id": 1, "method": "mining.subscribe", "params": ["btccom-agent/1.0"]})
    s.s(0, {"id": 1, "result": [[["mining.notify", "ab"]], "0800", 4], "error": None})
    for i, w in enumerate(workers):
        s.c(0, {"id": 2 + i, "method": "mining.authorize", "params": [w, ""]})
        s.s(0, {"id": 2 + i, "result": True, "error": None})
    s.s(0, {"id": None, "method": "mining.set_difficulty", "params": [1000]})
    s.s(0, {"id": None, "method": "mining.notify", "params": notify9(rng, "p1")})
    for i in range(60):
        w = workers[i % 6]
        s.c(i + 1, {"id": 100 + i, "method": "mining.submit", "params": submit6(rng, w, "p1")})
        s.s(i + 1, {"id": 100 + i, "result": i % 10 != 0, "error": None})
    (sess,) = run(tracker, s)
    assert list(sess.workers) == [w.split(".")[1] for w in workers]
    assert sess.evidence["logins"] == workers
    assert sess.evidence["worker_shares"] == {w.split(".")[1]: 10 for w in workers}
    assert (sess.login, sess.worker) == ("farm.rig00", "rig00")
    assert (sess.shares_submitted, sess.shares_accepted, sess.shares_rejected) == (60, 54, 6)


def test_results_matched_to_ids_of_any_type(tracker):
    rng = random.Random(19)
    s = Script(conversation(), seed=19)
    s.c(0, {"id": "auth", "method": "mining.authorize", "params": ["acct.x", "x"]})
    s.s(0, {"id": "auth", "result": True, "error": None})
    s.s(0, {"id": None, "method": "mining.set_difficulty", "params": ["256.0"]})
    s.s(0, {"id": None, "method": "mining.notify", "params": notify9(rng, "z1")})
    ids = [7, 7.0, "7", [7], {"n": 7}, True]
    answers = [True, False, {"status": "OK"}, None, True, True]
    errors = [None, None, None, [24, "Unauthorized worker", None], None, None]
    for i, (id_, ok, err) in enumerate(zip(ids, answers, errors, strict=True)):
        s.c(i + 1, {"id": id_, "method": "mining.submit", "params": submit6(rng, "acct.x", "z1")})
        s.s(i + 1, {"id": id_, "result": ok, "error": err})
    s.c(10, {"id": 99, "method": "mining.submit", "params": submit6(rng, "acct.x", "z1")})
    s.s(10, {"id": 99, "result": None, "error": None})  # neither: not counted either way
    (sess,) = run(tracker, s)
    assert sess.shares_submitted == 7
    assert (sess.shares_accepted, sess.shares_rejected) == (4, 2)
    assert sess.difficulty == 256


def test_several_sessions_and_flush(tracker):
    a = btc_script(conversation(ap=50001), seed=20)
    b = xmrig_script(conversation(ap=50002, bp=3333), seed=21)
    events = sorted(a.events(end=False) + b.events(end=False), key=lambda e: e.chunk.ts_ns)
    assert tracker.feed_all(events) == []
    assert len(tracker) == 2
    out = tracker.flush()
    assert sorted(s.dialect for s in out) == ["cryptonote", "stratum-v1"]
    assert len(tracker) == 0


def test_over_long_lines_are_skipped(fp):
    tracker = StratumTracker(fp, max_line=4096)
    s = btc_script(seed=22)
    s.msgs.insert(3, (1, 0, b'{"id":null,"method":"client.show_message","params":["'
                  + b"A" * 20000 + b'"]}\n'))
    (sess,) = run(tracker, s)
    assert sess.evidence["long_lines"] == 1 and sess.shares_submitted == 123
    assert tracker.stats["json_errors"] == 0


# ---------------------------------------------------------------------------- no false sessions


def lookalike_scripts() -> list[Script]:
    out = []
    s = Script(conversation(bp=8332), seed=30)  # Bitcoin Core RPC
    for i, m in enumerate(["getblockchaininfo", "getnetworkinfo", "getblocktemplate"]):
        s.raw(0, i, http("POST / HTTP/1.1", {"Authorization": "Basic dTpw"},
                         {"jsonrpc": "1.0", "id": "curltest", "method": m, "params": []}))
        s.raw(1, i, http("HTTP/1.1 200 OK", {}, {"result": {"chain": "main", "blocks": 1,
                                                            "previousblockhash": "00" * 32},
                                                 "error": None, "id": "curltest"}))
    out.append(s)
    s = Script(conversation(bp=8545), seed=31)  # Ethereum node JSON-RPC, line-delimited
    for i, m in enumerate(["eth_blockNumber", "eth_getBalance", "eth_subscribe", "net_version"]):
        s.c(i, {"jsonrpc": "2.0", "id": i, "method": m, "params": ["0x" + "1" * 40, "latest"]})
        s.s(i, {"jsonrpc": "2.0", "id": i, "result": "0x10d4f"})
    s.s(9, {"jsonrpc": "2.0", "method": "eth_subscription",
            "params": {"subscription": "0x9ce5", "result": {"number": "0x1b4"}}})
    out.append(s)
    s = Script(conversation(bp=50001), seed=32)  # Electrum server
    s.c(0, {"id": 0, "method": "server.version", "params": ["electrum/4.5.5", "1.4"]})
    s.s(0, {"id": 0, "result": ["ElectrumX 1.16.0", "1.4"], "jsonrpc": "2.0"})
    s.c(1, {"id": 1, "method": "blockchain.headers.subscribe", "params": []})
    s.s(1, {"id": 1, "result": {"hex": "00" * 80, "height": 840000}})
    s.c(2, {"id": 2, "method": "blockchain.scripthash.get_balance", "params": ["ab" * 32]})
    s.s(2, {"id": 2, "result": {"confirmed": 0, "unconfirmed": 0}})
    s.s(3, {"method": "blockchain.headers.subscribe", "params": [{"hex": "00" * 80,
                                                                  "height": 840001}]})
    out.append(s)
    s = Script(conversation(bp=5222), seed=33)  # chat over JSON lines, with a login
    s.c(0, {"id": 1, "method": "login", "params": {"login": "alice", "pass": "pw",
                                                   "agent": "Mozilla/5.0"}})
    s.s(0, {"id": 1, "result": {"token": "abc", "status": "OK"}, "error": None})
    for i in range(5):
        s.c(i + 1, {"type": "message", "to": "bob", "text": f"hello {i}"})
        s.s(i + 1, {"type": "message", "from": "bob", "text": "hi"})
    s.c(9, {"id": 2, "method": "submit", "params": {"form": "survey", "answers": [1, 2]}})
    s.s(9, {"id": 2, "result": {"status": "OK"}})
    s.s(9, {"method": "job", "params": {"name": "backup", "state": "done"}})
    out.append(s)
    return out


@pytest.mark.parametrize("index", range(4), ids=["bitcoind", "eth-node", "electrum", "chat"])
def test_lookalikes_are_not_sessions(tracker, index):
    assert run(tracker, lookalike_scripts()[index]) == []


GARBAGE = [
    b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + bytes(range(256)) * 4,  # TLS-ish
    b'{"id":1,"method":"mining.subscribe","params":[' + b"[" * 5000 + b"\n",  # deep nesting
    b'{"id":1e999,"method":"mining.notify","params":[NaN, Infinity, -1]}\n',
    b'{"method":"mining.submit","params":[1,2,3]}\n{"method":"mining.notify","params":{}}\n',
    b'{"method":"login","params":[]}\n{"method":"job","params":"x"}\n{"result":[1,2,3]}\n',
    b'{"id":2,"method":"mining.set_difficulty","params":[-5]}\n{"\xff\xfe": "\xc3\x28"}\n',
    b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
    b"HTTP/1.1 200 OK\r\nContent-Length: 99999999999\r\n\r\n{",
    b"\x00\x00\x00\xff\xff\xff" + b"\x00" * 64,  # SV2 header with an absurd length
    b"\x00\x00\x00\x11\x00\x00\x00\x00\x02\x00\x02\x00" + b"\xff" * 5,  # truncated SetupConnection
]


@pytest.mark.parametrize("blob", GARBAGE, ids=range(len(GARBAGE)))
def test_garbage_never_raises(tracker, blob):
    for syn in ("a", None):
        conv = conversation(syn=syn)
        events = [StreamData(conv, i % 2, Chunk(0, T0, i + 1, blob[: len(blob) // 2 + i]))
                  for i in range(2)]
        events.append(StreamData(conv, 0, Chunk(len(blob) // 2, T0, 3, blob[len(blob) // 2:])))
        out = tracker.feed_all(events) + tracker.feed(StreamEnd(conv, "rst"))
        assert all(isinstance(s, StratumSession) for s in out)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(hs.lists(hs.tuples(hs.integers(0, 1), hs.binary(max_size=300)), max_size=12),
       hs.booleans())
def test_random_bytes_never_raise(fp, chunks, mined):
    tracker = StratumTracker(fp, max_line=512, give_up_bytes=2048)
    conv = conversation(syn="a" if mined else None)
    off = [0, 0]
    prefix = b'{"id":1,"method":"mining.subscribe","params":[]}\n' if mined else b""
    for i, (d, data) in enumerate(chunks):
        data = (prefix if i == 0 else b"") + data
        tracker.feed(StreamData(conv, d, Chunk(off[d], T0 + i, i + 1, data)))
        off[d] += len(data)
    tracker.feed(StreamEnd(conv, "eof"))


# ---------------------------------------------------------------------------- pieces


def test_split_login(fp):
    cases = {
        "acct.rig01": (None, "acct", "rig01"),
        BTC_WALLET + "/rig02": (BTC_WALLET, BTC_WALLET, "rig02"),
        BTC_WALLET + "+rig03": (BTC_WALLET, BTC_WALLET, "rig03"),
        XMR_WALLET + "+50000": (XMR_WALLET, XMR_WALLET, None),
        XMR_WALLET + "." + "ab" * 32 + ".ryzen": (XMR_WALLET, XMR_WALLET, "ryzen"),
        "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed/tester.w1/me@example.com":
            ("0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed",
             "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed", "tester.w1"),
        "user:worker": (None, "user", "worker"),
        "plainuser": (None, "plainuser", None),
        "1NotAWalletBecauseTooShort.rig": (None, "1NotAWalletBecauseTooShort", "rig"),
    }
    for login, expected in cases.items():
        assert split_login(fp, login) == expected, login


def test_poisson_interval_against_scipy_or_table():
    try:
        from scipy.stats import chi2
    except ImportError:  # the reference's table: N = 10 → 4.8 … 18.4 shares
        assert poisson_interval(10) == (pytest.approx(4.795, abs=1e-3),
                                        pytest.approx(18.390, abs=1e-3))
    else:
        for n in (1, 2, 10, 100, 1000, 50000):
            low, high = poisson_interval(n)
            assert low == pytest.approx(chi2.ppf(0.025, 2 * n) / 2, rel=1e-9)
            assert high == pytest.approx(chi2.ppf(0.975, 2 * n + 2) / 2, rel=1e-9)
    assert poisson_interval(0) == (0.0, pytest.approx(3.689, abs=1e-3))
    assert gamma_ppf(0.5, 1.0) == pytest.approx(math.log(2))


def test_hashrate_and_power_estimates(fp):
    rule = fp.share_work("stratum-v1", "sha256d")
    # the reference's example: 120 shares at 65536 in 600 s ≈ 56.3 TH/s
    est = estimate_hashrate([ShareTally(65536, None, 120)], 600, rule, work_known=True)
    assert est.hashrate_hs == pytest.approx(56.3e12, rel=1e-3)
    assert est.low < est.hashrate_hs < est.high
    eff = fp.efficiency_range("sha256d")
    power = estimate_power(est, eff)
    assert (power.power_w, power.low, power.high) == (
        pytest.approx(est.hashrate_hs * eff.median), pytest.approx(est.low * eff.min),
        pytest.approx(est.high * eff.max))
    none = estimate_hashrate([ShareTally(65536, None, 120)], 600, rule, work_known=False)
    assert none.hashrate_hs is None and none.diff1_shares_per_s == pytest.approx(120 * 65536 / 600)
    empty = estimate_hashrate([], 600, rule, work_known=True,
                              last=ShareTally(65536, None, 1))
    assert empty.hashrate_hs is None and empty.high == pytest.approx(
        3.6889 * 65536 * 2**32 / 600, rel=1e-4)
    assert estimate_power(none, eff).power_w is None


def test_method_roles_are_unambiguous(fp):
    from poolwatch.detect.stratum import _Vocabulary

    v = _Vocabulary(fp)
    assert {"mining.subscribe", "mining.submit", "login", "eth_submitLogin"} <= v.client
    assert {"mining.notify", "mining.set_difficulty", "job"} <= v.server
    assert not v.client & v.server
    assert v.agent_at["mining.subscribe"] == 0 and v.login_at["login"] == "login"


# ---------------------------------------------------------------------------- captures


def dns_names(path: Path) -> dict[str, str]:
    """Address → name from the capture's DNS answers, as the scan's passive DNS map learns
    them (the latest name per address; tests/test_dns.py checks the validity times)."""
    from poolwatch.detect.dns import PassiveDns
    from poolwatch.scan import iter_batches

    dns = PassiveDns()
    for batch in iter_batches([path]):
        dns.update(batch)
    return {ip: name for ip in dns.addresses() if (name := dns.host_of(ip, 0, None))}


def scan_sessions(paths, host_of=None) -> tuple[list[StratumSession], int]:
    """iter_batches → StreamCollector → StratumTracker; also the conversations collected."""
    from poolwatch.detect.streams import StreamCollector, start_rules
    from poolwatch.scan import iter_batches

    tracker, out = StratumTracker(host_of=host_of), []
    collector = StreamCollector(rules=start_rules(tracker.fp))
    for batch in iter_batches(paths):
        for event in collector.update(batch):
            out += tracker.feed(event)
    for event in collector.flush():
        out += tracker.feed(event)
    return out + tracker.flush(), tracker.stats["conversations"]


def dpkt_events(path: Path) -> list:
    """Plain in-order TCP reassembly with dpkt, for flows the prefilter does not select
    (HTTP getwork, binary Stratum V2): checks the parsers on those samples all the same."""
    import socket

    import dpkt

    convs: dict[tuple, tuple[Conversation, list]] = {}
    with open(path, "rb") as f:
        for frame, (ts, buf) in enumerate(dpkt.pcap.Reader(f), 1):
            ip = dpkt.ethernet.Ethernet(buf).data
            tcp = getattr(ip, "data", None)
            if not isinstance(tcp, dpkt.tcp.TCP):
                continue
            src = (socket.inet_ntoa(ip.src), tcp.sport)
            dst = (socket.inet_ntoa(ip.dst), tcp.dport)
            key = tuple(sorted((src, dst)))
            if key not in convs:
                conv = Conversation(str(path), *src, *dst, 0, 0, first_ts_ns=int(ts * NS),
                                    last_ts_ns=int(ts * NS))
                convs[key] = (conv, [{}, {}], [None, None])
            conv, segs, isn = convs[key]
            d = 0 if src == (conv.a_ip, conv.a_port) else 1
            if tcp.flags & dpkt.tcp.TH_SYN:
                isn[d] = tcp.seq + 1
                if not tcp.flags & dpkt.tcp.TH_ACK:
                    conv.syn_from = "a" if d == 0 else "b"
            if tcp.data:
                base = isn[d] if isn[d] is not None else tcp.seq
                isn[d] = base
                segs[d].setdefault((tcp.seq - base) % 2**32, (int(ts * NS), frame, tcp.data))
    events = []
    for conv, segs, _ in convs.values():
        for d in (0, 1):
            off = 0
            for pos, (ts, frame, data) in sorted(segs[d].items()):
                if pos + len(data) <= off:
                    continue
                data = data[max(0, off - pos):]
                events.append(StreamData(conv, d, Chunk(max(pos, off), ts, frame, data)))
                off = max(pos, off) + len(data)
    events.sort(key=lambda e: e.chunk.ts_ns)
    return events + [StreamEnd(c, "eof") for c, _, _ in convs.values()]


@pytest.mark.corpus
@pytest.mark.skipif(not (PEER / "mining.pcapng").exists(), reason="nDPI corpus not present")
def test_ndpi_mining_capture():
    sessions, _ = scan_sessions([PEER / "mining.pcapng"])
    found = sorted((s.dest_port, s.dialect, s.coin) for s in sessions)
    # the ETH-PROXY flow names neither pool nor chain: its 0x address fits every EVM chain
    assert found == [(3333, "stratum-v1-zcash", "ZEC"), (3333, "stratum-v1-zcash", "ZEC"),
                     (9050, "cryptonote", "XMR"), (9999, "ethproxy", None)]
    eth = next(s for s in sessions if s.dialect == "ethproxy")
    assert eth.evidence["coin_candidates"][0] == "ETH"
    # xmr-stak, Dec 2017: blobs "0606…" (Monero block major version 6) were hashed with
    # original CryptoNight, not RandomX (v12, Nov 2019); no efficiency figures for it
    xmr = next(s for s in sessions if s.dest_port == 9050)
    assert xmr.algorithm == "cryptonight" and xmr.evidence["blob_major_version"] == 6
    assert xmr.hashrate_hs is not None  # from the targets, whatever the algorithm
    assert xmr.power_w is None
    assert xmr.evidence["power_reason"] == "no efficiency figures for cryptonight"


SAMPLES = sorted((ROOT / "pcaps" / "stratum").glob("*.expected.json")) \
    if (ROOT / "pcaps" / "stratum").is_dir() else []
COMPARED = ("dialect", "src_ip", "src_port", "dest_ip", "dest_port", "agent", "login", "worker",
            "wallet", "coin", "algorithm", "pool_host", "shares_submitted", "shares_accepted",
            "shares_rejected", "workers")


# Where this detector and a generated oracle disagree on purpose: none at present.
KNOWN_DIFFERENCES: set[tuple[str, str]] = set()


def check_oracle(oracle: Path, got: list[StratumSession]) -> None:
    expected = json.loads(oracle.read_text())["sessions"]
    key = lambda d: (d.get("src_ip"), d.get("src_port"), d.get("dest_port"))
    have_all = [s.as_dict() for s in got]
    assert sorted(map(key, have_all)) == sorted(map(key, expected)), oracle.name
    for want in expected:
        have = next(h for h in have_all if key(h) == key(want))
        for field in COMPARED:
            if field in want and (oracle.name.split(".")[0], field) not in KNOWN_DIFFERENCES:
                assert have[field] == want[field], (oracle.name, field)
        if want.get("expected_hashrate_hs"):
            assert have["hashrate_hs"] == pytest.approx(want["expected_hashrate_hs"],
                                                        rel=want["hashrate_tolerance"])


def capture_of(oracle: Path) -> Path:
    return oracle.with_name(oracle.name.replace(".expected.json", ".pcap"))


@pytest.mark.skipif(not SAMPLES, reason="pcaps/stratum/ has no generated samples yet")
@pytest.mark.parametrize("oracle", SAMPLES, ids=[p.name.split(".")[0] for p in SAMPLES])
def test_generated_samples(oracle):
    """The whole path: iter_batches → StreamCollector → StratumTracker, DNS as host_of."""
    capture = capture_of(oracle)
    names = dns_names(capture)
    got, conversations = scan_sessions([capture], host_of=lambda ip, port, ts: names.get(ip))
    check_oracle(oracle, got)


NOT_JSON_LINES = [o for o in SAMPLES if o.name.split(".")[0] in
                  ("getwork_http", "stratum_v2_plain", "stratum_v2_noise")]


@pytest.mark.skipif(not NOT_JSON_LINES, reason="pcaps/stratum/ has no HTTP or SV2 samples")
@pytest.mark.parametrize("oracle", NOT_JSON_LINES,
                         ids=[p.name.split(".")[0] for p in NOT_JSON_LINES])
def test_http_and_sv2_samples_through_plain_reassembly(fp, oracle):
    """The same oracles with dpkt's reassembly instead of the prefilter and collector:
    the tracker reads these framings whatever hands it the bytes."""
    tracker = StratumTracker(fp)
    got = tracker.feed_all(dpkt_events(capture_of(oracle))) + tracker.flush()
    check_oracle(oracle, got)


def test_record_fields_and_kinds():
    import dataclasses

    names = [f.name for f in dataclasses.fields(StratumSession)]
    assert names[:8] == ["timestamp", "src_ip", "src_port", "dest_ip", "dest_port",
                         "community_id", "first_seen", "last_seen"]
    assert set(StratumSession.KINDS) <= set(names)
    assert StratumSession.__slots__ and StratumSession.__dataclass_params__.frozen


def test_variant_markers_found_in_any_of_the_first_500_messages(tracker):
    """Markers are searched in lines joined by newlines, some at a time: what is found is
    exactly what a search of each line finds, in the first 500 messages, whatever the flush
    points; a marker split over two lines is not found."""
    from poolwatch.detect.stratum import MARKER_SEARCH_BYTES, _State

    texts = [t for t, _ in tracker.vocab.marker_texts]
    assert texts and not any(b"\n" in t for t in texts)
    rng = random.Random(7)
    filler = b'{"id":1,"method":"mining.notify","params":["' + b"ab" * 200 + b'"]}'
    lines = [filler] * 600
    lines[3] = filler + texts[0]  # early, before any flush
    lines[450] = texts[1] + filler  # late, after several flushes
    lines[520] = texts[2] + filler  # past the first 500 messages: not searched
    half = len(texts[3]) // 2
    lines[100], lines[101] = filler + texts[3][:half], texts[3][half:] + filler  # split
    st = _State(conversation())
    for i, line in enumerate(lines):
        st.messages = i + 1
        tracker._evidence_line(st, 0, line, i + 1)
        assert st.marker_bytes <= MARKER_SEARCH_BYTES + len(line)  # bounded while waiting
    found = {t for t, _ in tracker._markers(st)}
    expected = {t for t in texts if any(t in line for line in lines[:500])}
    assert found == expected
    assert texts[0] in found and texts[1] in found  # before and after flushes
    if not any(texts[2] in x for x in lines[:500]):
        assert texts[2] not in found  # only in message 521: past the limit
    if not any(texts[3] in x for x in lines[:500]):
        assert texts[3] not in found  # split over two lines
    # and on random lines made of marker pieces
    for _ in range(20):
        st = _State(conversation())
        pieces = [t[: rng.randrange(1, len(t) + 1)] for t in texts] + [b"x", b'"', b":"]
        rand = [b"".join(rng.choices(pieces, k=rng.randrange(1, 6))) for _ in range(300)]
        for i, line in enumerate(rand):
            st.messages = i + 1
            tracker._evidence_line(st, 0, line, i + 1)
        assert {t for t, _ in tracker._markers(st)} == {t for t in texts if any(t in x for x in rand)}


def test_logins_and_agents_read_at_sessions_ends_are_remembered_within_bounds():
    """A farm's miners send the same login and agent on every connection: a tracker reads
    each once (same answer as split_login / match_agent), and forgets when full."""
    from poolwatch.detect import stratum

    fp = load_fingerprints()
    tracker = StratumTracker()
    wallet = "44AFFq5kSiGBoZ4NMDwYtN18obc8AemS33DBLWs3H7otXft3XjrpDtQGv7SqSsaBYBb98uNbr2VBBEt7f2wfn3RVGQBEP3A"
    logins = [f"{wallet}.rig{i}" for i in range(stratum.MEMO_ENTRIES + 10)]
    for login in logins:
        assert tracker._split_login(login) == split_login(fp, login)
        assert tracker._split_login(login)[2] == login.rsplit(".", 1)[1]
    assert 0 < len(tracker._split_logins) <= stratum.MEMO_ENTRIES
    assert tracker._agent_match("XMRig/6.21.0 (Linux x86_64) libuv/1.44.2 gcc/12.2.0") == \
        fp.match_agent("XMRig/6.21.0 (Linux x86_64) libuv/1.44.2 gcc/12.2.0")
    assert len(tracker._agent_matches) == 1
