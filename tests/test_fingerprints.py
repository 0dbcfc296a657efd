"""The fingerprint data files: they validate, keep their ids unique, survive a dump and reload,
reject bad edits with an error naming the file and the entry or line, and compile into
matchers that behave (domains, endpoints, agents, wallets, share work, efficiency, overrides)."""

from __future__ import annotations

import ast
import csv
import os
from pathlib import Path

import pytest
import yaml

from poolwatch import fingerprints as fpm
from poolwatch.errors import FingerprintError, PoolwatchError
from poolwatch.fingerprints import default_dir, dump_fingerprints, load_fingerprints, normalize_name

DIALECT_IDS = {
    "stratum-v1",
    "stratum-v1-zcash",
    "ethproxy",
    "ethereumstratum-1",
    "ethereumstratum-2",
    "cryptonote",
    "stratum-v2",
    "getwork",
}


@pytest.fixture(scope="module")
def fp():
    return load_fingerprints()


def write(directory: Path, name: str, text: str) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / name).write_text(text, encoding="utf-8")
    return directory


def csv_header(name: str) -> str:
    lines = (default_dir() / name).read_text(encoding="utf-8").splitlines()
    return next(line for line in lines if line and not line.startswith("#"))


# ---------------------------------------------------------------- the bundled files


def test_every_file_validates_and_is_counted(fp):
    assert set(fp.dialects) == DIALECT_IDS
    assert len(fp.variants) >= 10 and len(fp.agents) >= 30 and len(fp.wallets) >= 15
    assert len(fp.endpoints) > 10_000 and len(fp.domains) == 436
    assert len(fp.efficiency) == 52 and len(fp.ports) >= 30 and fp.coin_hints


def test_folder_stays_small():
    total = sum(p.stat().st_size for p in default_dir().iterdir())
    assert total < 1_000_000


def test_ids_unique_in_the_raw_files():
    """The loader refuses duplicates; this reads the files directly, as a reviewer would."""
    for name, keys in (
        ("dialects.yaml", ("dialects", "variants", "coin_hints")),
        ("agents.yaml", ("agents",)),
        ("wallets.yaml", ("wallets",)),
        ("sources.yaml", ("sources",)),
    ):
        doc = yaml.safe_load((default_dir() / name).read_text(encoding="utf-8"))
        ids = [e["id"] for key in keys for e in doc[key]]
        assert len(ids) == len(set(ids)), name
    for name, key in (
        ("ports.csv", ("id",)),
        ("efficiency.csv", ("id",)),
        ("domains.csv", ("domain",)),
    ):
        lines = (default_dir() / name).read_text(encoding="utf-8").splitlines()
        rows = list(csv.DictReader(line for line in lines if not line.startswith("#")))
        ids = [tuple(r[k] for k in key) for r in rows]
        assert len(ids) == len(set(ids)), name


def test_load_is_cached(fp):
    assert load_fingerprints() is fp
    assert load_fingerprints(extra_dirs=()) is fp


def test_load_dump_load_round_trip(fp, tmp_path):
    dump_fingerprints(fp, tmp_path / "a")
    again = load_fingerprints(base_dir=tmp_path / "a")
    assert again == fp
    dump_fingerprints(again, tmp_path / "b")
    for name in fpm.FILES:
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name


def test_sources_and_marks_are_kept(fp):
    for item in [*fp.endpoints.values(), *fp.domains.values(), *fp.efficiency.values()]:
        assert item.source and "{" not in fp.expand_source(item.source)
    for table in (fp.dialects, fp.variants, fp.agents, fp.wallets, fp.coin_hints):
        assert all(e.source for e in table.values())
    eth = fp.endpoints_for("eu1.ethermine.org", 5555)
    assert eth and all("historic" in e.flags for e in eth if e.coin == "ETH")
    f2pool = fp.endpoints_for("btc-na.f2pool.com", 1314)
    assert f2pool and "unconfirmed" in f2pool[0].flags
    assert "UNCONFIRMED" in fp.expand_source(f2pool[0].source)
    assert fp.agents["t-rex"].confidence == "unconfirmed"
    assert "unconfirmed" in fp.efficiency["bitmain-antminer-s17"].flags
    assert "blocklist-only" in fp.domains["ahashpool.com"].flags


REFERENCE = Path(__file__).resolve().parent.parent.parent / "shared" / "reference"


@pytest.mark.skipif(
    not (REFERENCE / "pool-endpoints.csv").exists(), reason="needs ../shared/reference"
)
def test_every_reference_endpoint_is_kept(fp):
    """pools.csv is derived from both endpoint files: every endpoint of either is in it."""
    seen = set()
    for name in ("pool-endpoints.csv", "pool-endpoints-hiveos-all.csv"):
        lines = (REFERENCE / name).read_text(encoding="utf-8").splitlines()
        for r in csv.DictReader(line for line in lines if not line.startswith("#")):
            coin = r["coin"].replace("(multi-algo)", "").replace("(daggerhashimoto)", "").strip()
            port = int(r["port"]) if r["port"] else None
            seen.add((r["pool"], r["host"].lower(), port, coin, r["tls"]))
    assert seen == set(fp.endpoints)


def test_validated_sets_are_kept_on_disk_between_runs(fp, tmp_path, monkeypatch):
    """The second process loads the validated set from the cache (no file is validated),
    equal to the one built; an edited file, a damaged cache file or a cache that cannot be
    written all fall back to building it, and an empty POOLWATCH_CACHE_DIR turns it off."""
    import shutil

    base = tmp_path / "fp"
    shutil.copytree(default_dir(), base)
    monkeypatch.setenv("POOLWATCH_CACHE_DIR", str(tmp_path / "cache"))
    fpm._load_cached.cache_clear()
    built = load_fingerprints(base_dir=base)
    [cached] = (tmp_path / "cache").glob("fingerprints-*.pickle")

    def no_build(dirs):
        raise AssertionError("validated again")

    real_build = fpm._build
    monkeypatch.setattr(fpm, "_build", no_build)
    fpm._load_cached.cache_clear()
    again = load_fingerprints(base_dir=base)
    assert again == built == fp and again is not built
    assert again.endpoints_for("btc.f2pool.com") == fp.endpoints_for("btc.f2pool.com")

    # a cache file another user owns is not loaded (a pickle runs code): built again
    built_again: list[int] = []

    def counting_build(dirs):
        built_again.append(1)
        return real_build(dirs)

    monkeypatch.setattr(fpm, "_build", counting_build)
    monkeypatch.setattr(fpm.os, "getuid", lambda real=os.getuid(): real + 1)
    fpm._load_cached.cache_clear()
    assert load_fingerprints(base_dir=base) == fp and built_again == [1]
    monkeypatch.undo()
    monkeypatch.setenv("POOLWATCH_CACHE_DIR", str(tmp_path / "cache"))
    assert oct((tmp_path / "cache").stat().st_mode & 0o777) == "0o700"

    monkeypatch.setattr(fpm, "_build", real_build)
    with open(base / "ports.csv", "a", encoding="utf-8") as fh:
        fh.write("\n")  # same entries, other bytes: another cache file
    fpm._load_cached.cache_clear()
    assert load_fingerprints(base_dir=base) == fp
    assert len(list((tmp_path / "cache").glob("fingerprints-*.pickle"))) == 2

    cached.write_bytes(b"not a pickle")
    (base / "ports.csv").write_bytes((default_dir() / "ports.csv").read_bytes())
    fpm._load_cached.cache_clear()
    assert load_fingerprints(base_dir=base) == fp  # damaged: built again, and rewritten
    assert cached.read_bytes() != b"not a pickle"

    def unpicklable(obj, fh, protocol=None):
        fh.write(b"half")
        raise fpm.pickle.PicklingError("cannot")

    monkeypatch.setattr(fpm.pickle, "dump", unpicklable)
    monkeypatch.setenv("POOLWATCH_CACHE_DIR", str(tmp_path / "failing"))
    fpm._load_cached.cache_clear()
    assert load_fingerprints(base_dir=base) == fp  # built; the cache is not an error
    assert list((tmp_path / "failing").iterdir()) == []  # and no half-written file stays
    monkeypatch.undo()

    (tmp_path / "blocked").write_text("a file where the directory should be")
    monkeypatch.setenv("POOLWATCH_CACHE_DIR", str(tmp_path / "blocked"))
    fpm._load_cached.cache_clear()
    assert load_fingerprints(base_dir=base) == fp
    monkeypatch.setenv("POOLWATCH_CACHE_DIR", "")
    assert fpm.cache_dir() is None
    fpm._load_cached.cache_clear()


def test_module_is_a_leaf():
    """fingerprints.py may import errors and nothing else of poolwatch."""
    tree = ast.parse(Path(fpm.__file__).read_text(encoding="utf-8"))
    imported = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
    imported |= {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    assert {m for m in imported if m.startswith("poolwatch")} == {"poolwatch.errors"}


# ---------------------------------------------------------------- bad files

AGENT = """  - id: {id}
    rev: 1
    software: Test
    match: {{prefix: test/}}
    kind: miner
    hardware: [cpu]
    example: test/1.0
    confidence: source
    source: a test
"""


def expect_error(tmp_path, name, text, *fragments):
    extra = write(tmp_path / "extra", name, text)
    with pytest.raises(FingerprintError) as info:
        load_fingerprints(extra_dirs=[extra])
    message = str(info.value)
    assert isinstance(info.value, PoolwatchError)
    assert name in message, message
    for fragment in fragments:
        assert fragment in message, message
    return message


def test_missing_field_names_file_entry_and_line(tmp_path):
    text = (
        "schema: 1\nagents:\n"
        + AGENT.format(id="ok")
        + AGENT.format(id="bad").replace("    software: Test\n", "")
    )
    expect_error(
        tmp_path,
        "agents.yaml",
        text,
        "agents entry 2",
        "'bad'",
        "line 12",
        "software",
        "Field required",
    )


def test_bad_regex(tmp_path):
    text = """schema: 1
wallets:
  - id: broken
    rev: 1
    coins: [XMR]
    name: broken
    regex: '4[1-9AB'
    encoding: monero-base58
    source: a test
"""
    expect_error(tmp_path, "wallets.yaml", text, "'broken'", "line 3", "bad regex")


def test_regex_that_misses_its_own_example(tmp_path):
    text = """schema: 1
wallets:
  - id: strict
    rev: 1
    coins: [ETH]
    name: strict
    regex: '0x[0-9a-f]{40}'
    encoding: hex
    examples: ['0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed']
    source: a test
"""
    expect_error(tmp_path, "wallets.yaml", text, "'strict'", "does not match its own example")


def test_duplicate_id(tmp_path):
    text = "schema: 1\nagents:\n" + AGENT.format(id="twice") + AGENT.format(id="twice")
    expect_error(
        tmp_path,
        "agents.yaml",
        text,
        "agents entry 2",
        "'twice'",
        "line 12",
        "duplicate id",
        "first at agents entry 1",
    )


def test_malformed_csv_row(tmp_path):
    text = (
        "# comment\n" + csv_header("pools.csv") + "\nX,BTC,a.example.com,3333,no,stratum-v1,,,1\n"
    )
    expect_error(tmp_path, "pools.csv", text, "line 3", "malformed CSV row", "9 fields")


def test_unterminated_quote(tmp_path):
    text = (
        csv_header("pools.csv")
        + '\nX,BTC,a.example.com,3333,no,stratum-v1,,,1,"open\nY,,,,,,,,,end"\n'
    )
    expect_error(tmp_path, "pools.csv", text, "line 2", "runs past the line end")


def test_bad_csv_value(tmp_path):
    text = csv_header("pools.csv") + "\nX,BTC,a.example.com,3333 99999,no,stratum-v1,,,1,a test\n"
    expect_error(tmp_path, "pools.csv", text, "line 2", "ports.1")


def test_unknown_flag_and_missing_column(tmp_path):
    text = csv_header("pools.csv") + "\nX,BTC,a.example.com,3333,no,stratum-v1,,histroic,1,a test\n"
    expect_error(tmp_path / "a", "pools.csv", text, "line 2", "flags")
    expect_error(
        tmp_path / "b",
        "domains.csv",
        "domain,pools,flags,rev,source\n",
        "line 1",
        "missing ['note']",
    )


def test_reference_to_unknown_dialect_or_source(tmp_path):
    header = csv_header("pools.csv")
    expect_error(
        tmp_path / "a",
        "pools.csv",
        header + "\nX,BTC,a.example.com,3333,no,stratum-v9,,,1,a test\n",
        "line 2",
        "unknown dialect 'stratum-v9'",
    )
    expect_error(
        tmp_path / "b",
        "pools.csv",
        header + "\nX,BTC,a.example.com,3333,no,stratum-v1,,,1,{nosuch}x\n",
        "line 2",
        "{nosuch}",
    )


def test_inconsistent_efficiency(tmp_path):
    text = (
        csv_header("efficiency.csv")
        + "\nbad-miner,1,sha256d,Bad,asic,100,TH/s,3000,20,J/TH,2024,,a test\n"
    )
    expect_error(tmp_path, "efficiency.csv", text, "line 2", "within 5 %")


def test_invalid_yaml_and_unknown_file(tmp_path):
    expect_error(
        tmp_path / "a",
        "agents.yaml",
        "schema: 1\nagents:\n  - id: x\n   rev: [\n",
        "line",
        "not valid YAML",
    )
    expect_error(tmp_path / "b", "agent.yaml", "schema: 1\n", "unknown fingerprint file")


# ---------------------------------------------------------------- domains and endpoints


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("2miners.com", "2miners.com"),
        ("eu-etc.2miners.com", "2miners.com"),
        ("EU.2Miners.COM.", "2miners.com"),
        ("x.cryptopools.aod-tech.com", "cryptopools.aod-tech.com"),
        ("aod-tech.com", None),
        ("evil2miners.com", None),
        ("2miners.com.evil.example", None),
        ("com", None),
        ("", None),
        ("a..2miners.com", None),
    ],
)
def test_domain_matching(fp, name, expected):
    hit = fp.match_domain(name)
    assert (hit.domain if hit else None) == expected


def test_normalize_name_idna():
    assert normalize_name("Bücher.Example.") == "xn--bcher-kva.example"
    assert normalize_name("XN--BCHER-KVA.example") == "xn--bcher-kva.example"
    assert normalize_name("a" * 64 + ".com") is None


def test_endpoint_lookup(fp):
    antpool = fp.endpoints_for("STRATUM.antpool.com", 3333)
    assert {e.pool for e in antpool} == {"AntPool"} and {"BTC", "BCH"} <= {e.coin for e in antpool}
    assert all(e.dialects == ("stratum-v1",) for e in antpool)
    assert fp.endpoints_for("stratum.antpool.com", 1) == []
    assert {e.port for e in fp.endpoints_for("stratum.antpool.com")} >= {3333, 443}
    both = {e.tls for e in fp.endpoints_for("pool.hashvault.pro", 443) if e.coin == "XMR"}
    assert both == {"yes", "no"}
    zerg = fp.endpoints_for("kawpow.mine.zergpool.com", 4638)
    assert zerg and zerg[0].host == "*.mine.zergpool.com" and "multi-algo" in zerg[0].flags
    on_3333 = fp.endpoints_on_port(3333)
    assert len(on_3333) > 200 and all(e.port == 3333 for e in on_3333)
    for dialect in ("stratum-v1", "cryptonote", "stratum-v2"):
        listed = [e for e in fp.endpoints.values() if dialect in e.dialects]
        assert listed and fp.endpoints_of_dialect(dialect) == listed
    assert fp.endpoints_of_dialect("no-such-dialect") == []
    assert fp.port_info(3333).legit_traffic == "rare"
    assert fp.port_info(443).legit_traffic == "very-common"
    assert fp.port_info(3360).id == "port-3353" and fp.port_info(2) is None
    assert fp.port_info(15555).id == "port-15555" and fp.port_info(10016).id == "port-10000"


# ---------------------------------------------------------------- agents and dialects


@pytest.mark.parametrize(
    ("ua", "agent", "version"),
    [
        ("cgminer/4.11.1", "cgminer", "4.11.1"),
        ("cgminer/2.0.0", "bitmain-x17-cgminer", None),
        ("cgminer 4.11.1", "cgminer-http", "4.11.1"),
        ("bfgminer/5.5.0", "bfgminer", "5.5.0"),
        ("cpuminer/2.5.1", "cpuminer", "2.5.1"),
        ("cpuminer-opt-26.1-x64W", "cpuminer-opt", "26.1"),
        ("XMRig/6.26.0 (Windows NT 10.0; Win64; x64) libuv/1.51.0 msvc/2022", "xmrig", "6.26.0"),
        ("xmrig-proxy/6.26.0 (Linux x86_64) libuv/1.51.0 gcc/13.3.0", "xmrig-proxy", "6.26.0"),
        ("xmr-stak/2.10.8/abc123/master/lin/cpu/20", "xmr-stak", "2.10.8"),
        ("ethminer-0.19.0", "ethminer", "0.19.0"),
        ("kawpowminer-1.2.4", "kawpowminer", "1.2.4"),
        ("bitaxe/BM1370/v2.14.2", "bitaxe", "v2.14.2"),
        ("NiceHash/1.0.0", "nicehash-relay", "1.0.0"),
        ("lolminer/1.98a", "lolminer", "1.98a"),
    ],
)
def test_agent_matching(fp, ua, agent, version):
    hit = fp.match_agent(ua)
    assert hit is not None and hit.agent.id == agent
    assert hit.version == version


def test_agent_non_matches(fp):
    assert fp.match_agent("Mozilla/5.0 (X11; Linux x86_64)") is None
    assert fp.match_agent("") is None
    assert fp.match_agent("XMRig/6.26.0").groups.get("platform") is None


def test_every_dialect_recognises_its_own_first_message(fp):
    for d in fp.dialects.values():
        firsts = [m.example.encode() for m in d.messages if m.dir == "c2s" and m.example]
        if d.id == "stratum-v2":
            firsts = [os.urandom(64)]
        elif d.id == "getwork":
            firsts = [b"POST / HTTP/1.1\r\n\r\n" + firsts[0]]
        assert any(d in fp.identify_client_payload(p) for p in firsts), d.id
    assert fp.identify_client_payload(b"GET / HTTP/1.1\r\n") == []


def test_variants_and_coin_hints(fp):
    assert [v.id for v in fp.variants_for_coin("ltc")] == ["scrypt"]
    assert fp.variant_for_algorithm("rx/0").id == "randomx"
    assert fp.variant_for_algorithm("cn-heavy/xhv").id == "cryptonight"
    assert fp.variant_for_algorithm("daggerhashimoto").id == "ethash"
    assert fp.variant_for_algorithm("etchash").id == "ethash"
    assert fp.variant_for_algorithm("no-such-algo") is None
    hints = {(h.id, coin) for h, coin in fp.coin_hints_in("c=LTC,zap=PYRK-lyra2z330")}
    assert hints == {("yiimp-payout-coin", "LTC"), ("yiimp-mine-coin", "PYRK")}
    assert fp.coin_hints_in("x") == []


def test_share_work_worked_examples(fp):
    """The worked examples of hashrate-estimation.md."""
    cn = fp.share_work("cryptonote")
    assert cn.hashes(target="b88d0600") == pytest.approx(10_000, rel=1e-6)
    assert cn.hashes(target="e4a63d00") == pytest.approx(1_063, rel=1e-3)
    assert cn.hashes(target="ffffffffff3f0000") == pytest.approx(262_144, rel=1e-6)
    v1 = fp.share_work("stratum-v1")
    assert 120 * v1.hashes(difficulty=65536) / 600 == pytest.approx(56.3e12, rel=1e-3)
    assert fp.share_work("stratum-v1", "scrypt").hashes(difficulty=1) == 65536
    boundary = "0x0000000112e0be826d694b2e62d01511f12a6061fbaec8bc02357593e70e52ba"
    assert fp.share_work("ethproxy").hashes(target=boundary) == pytest.approx(4.0e9, rel=0.01)
    assert fp.share_work("stratum-v1", "kaspa").hashes(difficulty=4096) == pytest.approx(
        17.59e12, rel=1e-3
    )
    zec = fp.share_work("stratum-v1-zcash")
    assert zec.unit == "solution" and zec.hashes(target="0007" + "f" * 60) == pytest.approx(
        8192, rel=1e-3
    )
    assert fp.share_work("stratum-v2").basis == "not-observable"


# ---------------------------------------------------------------- wallets


@pytest.mark.parametrize(
    ("login", "coin"),
    [
        (
            "48edfHu7V9Z84YzzMa6fUueoELZ9ZRXq9VetWzYGzKt52XU5xvqgzYnDK9URnRoJMk1j8nLwEVsaSWJ4fhdUyZijBGUicoD",
            "XMR",
        ),
        (
            "48edfHu7V9Z84YzzMa6fUueoELZ9ZRXq9VetWzYGzKt52XU5xvqgzYnDK9URnRoJMk1j8nLwEVsaSWJ4fhdUyZijBGUicoD.rig01",
            "XMR",
        ),
        (
            "4Byr22j9M2878Mtyb3fEPcBNwBZf5EXqn1Yi6VzR46618SFBrYysab2Cs1474CVDbsh94AJq7vuV3Z2DRq4zLcY3LHzo1Nbv3d8J6VhvCV",
            "XMR",
        ),
        ("1A1zP1eP5QGefi2DMPTfTL5SLmv7DivfNa.worker", "BTC"),
        ("bc1qw508d6qejxtdg4y5r3zarvary0c5xw7kv8f3t4", "BTC"),
        ("BC1QW508D6QEJXTDG4Y5R3ZARVARY0C5XW7KV8F3T4", "BTC"),
        ("bc1p5cyxnuxmeuwuvkwfem96lqzszd02n6xdcjrs20cac6yqjjwudpxqkedrcr", "BTC"),
        ("LNSQDXTcvRvQZNu2PmMDRSVbk4PA3V3iKM", "LTC"),
        ("ltc1q5r0fy6ht74mrlaqtcw5duple2ppjppgf6qehm7", "LTC"),
        ("0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed.rig1", "ETH"),
        ("kaspa:qpauqsvk7yf9unexwmxsnmg547mhyga37csh0kj53q6xxgl24ydxjsgzthw5j.rig", "KAS"),
        ("qpauqsvk7yf9unexwmxsnmg547mhyga37csh0kj53q6xxgl24ydxjsgzthw5j", "KAS"),
        ("9fWj4meAF1bnGA5FiGfh2ZXyaXXjEUZ4hTaX7vzrGo4BZdqpLFX", "ERG"),
        ("bitcoincash:qpm2qsznhks23z7629mms6s4cwef74vcwvy22gdx6a", "BCH"),
    ],
)
def test_wallets_accept_real_examples(fp, login, coin):
    assert coin in fp.coins_for_wallet(login)


@pytest.mark.parametrize(
    "near_miss",
    [
        "48edfHu7V9Z84YzzMa6fUueoELZ9ZRXq9VetWzYGzKt52XU5xvqgzYnDK9URnRoJMk1j8nLwEVsaSWJ4fhdUyZijBGUico",  # 94
        "48edfHu7V9Z84YzzMa6fUueoELZ9ZRXq9VetWzYGzKt52XU5xvqgzYnDK9URnRoJMk1j8nLwEVsaSWJ4fhdUyZijBGUicoI",  # I
        "58edfHu7V9Z84YzzMa6fUueoELZ9ZRXq9VetWzYGzKt52XU5xvqgzYnDK9URnRoJMk1j8nLwEVsaSWJ4fhdUyZijBGUicoD",  # 5…
        "1A1zP1eP5QGefi2DMPTfTL5SLmv7DivfN0",  # 0 is not base58
        "bc1qw508d6qejxtdg4y5r3zarvary0c5xw7kv8f3t",  # one short
        "bc1qW508d6qejxtdg4y5r3zarvary0c5xw7kv8f3t4",  # mixed case
        "bc1qw508d6qejxtdg4y5r3zarvary0c5xw7kv8f3tb",  # b is not bech32
        "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAe",  # 39 hex
        "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAeg",
        "kaspa:qpauqsvk7yf9unexwmxsnmg547mhyga37csh0kj53q6xxgl24ydxjsgzthw5",  # 60 after the prefix
        "kaspb:qpauqsvk7yf9unexwmxsnmg547mhyga37csh0kj53q6xxgl24ydxjsgzthw5j",
        "LNSQDXTcvRvQZNu2PmMDRSVbk4PA3V3iKO",  # O is not base58
        "RXyz…abc.rig1",  # the reference sheets' shortened shapes are not addresses
        "t1Abc.rig",
        "x",
    ],
)
def test_wallets_reject_near_misses(fp, near_miss):
    assert fp.match_wallet(near_miss) == []


# ---------------------------------------------------------------- efficiency


def test_efficiency_ranges(fp):
    sha = fp.efficiency_range("sha256d")
    assert sha.unit == "J/H" and sha.n == 27
    assert sha.min == pytest.approx(15.0e-12) and sha.max == pytest.approx(314.0e-12)
    assert sha.min <= sha.median <= sha.max
    s19 = fp.efficiency["bitmain-antminer-s19-pro"]
    assert 110e12 * s19.joules_per_hash == pytest.approx(3245, rel=1e-3)  # 110 TH/s at 29.5 J/TH
    gpu = fp.efficiency_range("ethash", "gpu")
    assert (gpu.min, gpu.max) == (pytest.approx(2.0e-6), pytest.approx(2.42e-6))
    assert fp.efficiency_range("ethash").min == pytest.approx(
        0.6e-6
    )  # the variant includes etchash
    kas, kh = fp.efficiency_range("kaspa"), fp.efficiency_range("kheavyhash")
    assert (kas.min, kas.median, kas.max, kas.devices) == (kh.min, kh.median, kh.max, kh.devices)
    assert fp.efficiency_range("equihash-200-9").unit == "J/Sol"
    confirmed = fp.efficiency_range("sha256d", include_unconfirmed=False)
    assert confirmed.n < sha.n and "Bitmain Antminer S17" not in confirmed.devices
    assert fp.efficiency_range("kawpow") is None  # no power figures in the sheet
    assert fp.efficiency_range("no-such") is None


# ---------------------------------------------------------------- extra directories


def test_extra_directory_adds_and_overrides(fp, tmp_path):
    extra = tmp_path / "site"
    write(
        extra,
        "agents.yaml",
        "schema: 1\nagents:\n"
        + AGENT.format(id="cgminer").replace("rev: 1", "rev: 2")
        + AGENT.format(id="sgminer").replace("    rev: 1\n", "    rev: 2\n    disabled: true\n"),
    )
    write(
        extra,
        "domains.csv",
        csv_header("domains.csv")
        + "\nbücher-pool.example,Bücher Pool,,,1,site list\n2miners.com,,disabled,,2,site list\n",
    )
    ph = csv_header("pools.csv")
    write(
        extra,
        "pools.csv",
        ph + "\nMyPool,XMR,eu.mypool.example,3333 443,no,cryptonote,randomx,,1,site list\n"
        "AntPool,BTC,stratum.antpool.com,3333,no,stratum-v1,sha256d,suspect,2,site list\n",
    )
    site = load_fingerprints(extra_dirs=[extra])
    assert site is load_fingerprints(extra_dirs=[str(extra)])
    assert site.agents["cgminer"].rev == 2 and site.match_agent("test/1.0").agent.id == "cgminer"
    assert "sgminer" not in site.agents and "sgminer" in fp.agents
    assert site.match_domain("stratum.BÜCHER-pool.example").pools == ("Bücher Pool",)
    assert site.match_domain("eu.xn--bcher-pool-9db.example") is not None
    assert (
        site.match_domain("eu.2miners.com") is None
        and fp.match_domain("eu.2miners.com") is not None
    )
    mine = site.endpoints_for("eu.mypool.example", 443)
    assert [(e.pool, e.variant) for e in mine] == [("MyPool", "randomx")]
    overridden = [e for e in site.endpoints_for("stratum.antpool.com", 3333) if e.coin == "BTC"]
    assert [(e.rev, e.variant, e.flags) for e in overridden] == [
        (2, "sha256d", frozenset({"suspect"}))
    ]
    assert len(site.endpoints) == len(fp.endpoints) + 2
    assert fp.agents["cgminer"].rev == 1  # the cached default set is untouched


def test_efficiency_ranges_narrowed_by_class_and_rated_hashrate(fp):
    s19_class = fp.efficiency_range("sha256d", {"asic"}, hashrate_between=(90e12, 110e12))
    rows = [r for r in fp.efficiency.values() if r.device in s19_class.devices]
    assert rows and all(90e12 <= r.hashrate_hs <= 110e12 for r in rows)
    assert "Bitmain Antminer S19 Pro" in s19_class.devices
    assert "Bitmain Antminer S9" not in s19_class.devices  # 13.5 TH/s
    assert fp.efficiency_range("sha256d", "gpu") is None
    assert fp.efficiency_range("sha256d", hashrate_between=(1e20, 2e20)) is None
    both = fp.efficiency_range("ethash", {"gpu", "asic"})
    assert both.n == fp.efficiency_range("ethash").n
