"""``poolwatch probe``: stub pools and non-pools on loopback, classified; rate limit,
timeouts, TLS with a certificate made here, the JSON lines record and its reader.

Every connection goes to 127.0.0.1 (or ::1) on an ephemeral port; name resolution is
"localhost" or a monkeypatched resolver, never a query that leaves the machine.
"""

from __future__ import annotations

import itertools
import json
import socket
import ssl
import time
from dataclasses import replace
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from poolwatch import probe as probe_mod
from poolwatch.cli import app
from poolwatch.detect.probes import (
    VERDICTS,
    ProbeResult,
    ProbeResultError,
    read_probe_results,
)
from poolwatch.errors import ConfigError
from poolwatch.fingerprints import load_fingerprints
from poolwatch.probe import (
    DIALECT_ORDER,
    Endpoint,
    ProbeSettings,
    RateLimiter,
    parse_endpoint,
    probe_endpoints,
    read_endpoints,
)

from . import stub_pool as sp

FAST = ProbeSettings(timeout_s=1.0, endpoint_timeout_s=10.0, rate=200, host_rate=200)
FAST_CLI = ["--rate", "200", "--host-rate", "200", "--timeout", "1"]


def probe_one(server_or_port, settings: ProbeSettings = FAST, host: str = sp.LOOPBACK
              ) -> ProbeResult:
    port = server_or_port if isinstance(server_or_port, int) else server_or_port.port
    (result,) = probe_endpoints([Endpoint(host, port)], settings)
    return result


def run_cli(*args):
    result = CliRunner().invoke(app, [str(a) for a in args], catch_exceptions=True)
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result


@pytest.fixture(scope="module")
def certs(tmp_path_factory):
    pytest.importorskip("cryptography")
    d = tmp_path_factory.mktemp("certs")
    ca_cert_path, _, ca_cert, ca_key = sp.make_cert(d, ("poolwatch test CA",))
    self_signed = sp.make_cert(d, ("pool.example.test",))
    signed = sp.make_cert(d, ("signed.example.test",), ca=(ca_cert, ca_key))
    return {"ca": ca_cert_path, "self_signed": self_signed[:2], "signed": signed[:2]}


# ---------------------------------------------------------------------------- classification


@pytest.mark.parametrize("dialect", ["stratum-v1", "ethereumstratum-1", "ethproxy", "cryptonote"])
def test_pools_answer_as_pools_in_their_dialect(dialect):
    with sp.StubServer(sp.pool({dialect})) as server:
        result = probe_one(server)
    assert result.verdict == "pool" and result.dialect == dialect
    assert result.evidence["strength"] == "strong"
    assert (result.address, result.port, result.tls) == (sp.LOOPBACK, server.port, False)
    # it stops at the first dialect that answered as a pool
    tried = [a["dialect"] for a in result.evidence["attempts"]]
    assert tried == list(DIALECT_ORDER[: DIALECT_ORDER.index(dialect) + 1])


def test_stratum_v1_evidence_names_extranonce_difficulty_and_job():
    with sp.StubServer(sp.pool({"stratum-v1"})) as server:
        result = probe_one(server)
    signs = " | ".join(result.evidence["signs"])
    assert "extranonce1 '08000002'" in signs and "extranonce2_size 4" in signs
    assert "mining.set_difficulty" in signs and "mining.notify job 'bf'" in signs


def test_cryptonote_and_ethproxy_evidence_is_a_job():
    with sp.StubServer(sp.pool({"cryptonote"})) as cn, sp.StubServer(sp.pool({"ethproxy"})) as eth:
        r_cn, r_eth = probe_endpoints([Endpoint(sp.LOOPBACK, cn.port),
                                       Endpoint(sp.LOOPBACK, eth.port)], FAST)
    assert any("job" in s and "b88d0600" in s for s in r_cn.evidence["signs"])
    assert "eth_submitLogin accepted" in r_eth.evidence["signs"]
    assert any(s.startswith("work package") for s in r_eth.evidence["signs"])


def test_getwork_pool_over_http():
    with sp.StubServer(sp.getwork_pool) as server:
        result = probe_one(server)
    assert (result.verdict, result.dialect) == ("pool", "getwork")
    assert "x-long-polling header '/LP'" in result.evidence["signs"]
    request = server.received[-1]
    assert request.startswith(b"POST / HTTP/1.1\r\n") and b'"getwork", "params": []' in request


def test_a_login_rejected_in_a_pools_words_is_weak_evidence():
    with sp.StubServer(sp.rejecting_pool) as server:
        result = probe_one(server)
    assert (result.verdict, result.dialect) == ("pool", "cryptonote")
    assert result.evidence["strength"] == "weak"


@pytest.mark.parametrize("handler, kind", [
    (sp.http_server, "http"),
    (sp.json_rpc_node, "json-rpc"),
    (sp.garbage, "binary"),
    (sp.banner, "banner"),
])
def test_things_that_answer_are_not_pools(handler, kind):
    with sp.StubServer(handler) as server:
        result = probe_one(server)
    assert result.verdict == "not-pool" and result.dialect is None
    assert result.evidence["kind"] == kind
    assert "strength" not in result.evidence
    # every dialect was tried before saying so
    assert [a["dialect"] for a in result.evidence["attempts"]] == list(DIALECT_ORDER)


def test_http_server_detail_is_the_status_line():
    with sp.StubServer(sp.http_server) as server:
        result = probe_one(server)
    assert result.evidence["detail"] == "HTTP/1.1 400 Bad Request"


def test_closed_port_is_refused_after_one_connection():
    result = probe_one(sp.closed_port())
    assert result.verdict == "refused"
    assert len(result.evidence["attempts"]) == 1


def test_silent_server_is_no_answer_within_the_timeouts():
    settings = ProbeSettings(timeout_s=0.25, endpoint_timeout_s=5, rate=200, host_rate=200,
                             tls="no")
    with sp.StubServer(sp.silent) as server:
        started = time.monotonic()
        result = probe_one(server, settings)
        elapsed = time.monotonic() - started
    assert result.verdict == "no-answer" and result.evidence["kind"] == "timeout"
    assert len(result.evidence["attempts"]) == len(DIALECT_ORDER)
    assert 0.25 * len(DIALECT_ORDER) <= elapsed < 0.25 * len(DIALECT_ORDER) + 1.0


def test_endpoint_timeout_bounds_all_attempts():
    settings = ProbeSettings(timeout_s=0.4, endpoint_timeout_s=0.6, rate=200, host_rate=200)
    with sp.StubServer(sp.silent) as server:
        started = time.monotonic()
        result = probe_one(server, settings)
        elapsed = time.monotonic() - started
    assert result.verdict == "no-answer"
    assert elapsed < 1.2
    assert len(result.evidence["attempts"]) < len(DIALECT_ORDER)


def test_max_bytes_stops_reading():
    def flood(server, sock):
        sock.recv(4096)
        sock.sendall(b"{" + b"x" * 200_000)

    settings = ProbeSettings(timeout_s=1, endpoint_timeout_s=5, rate=200, host_rate=200,
                             max_bytes=1024, tls="no", dialects=("stratum-v1",))
    with sp.StubServer(flood) as server:
        result = probe_one(server, settings)
    (attempt,) = result.evidence["attempts"]
    assert attempt["received_bytes"] == 1024 and attempt["ended"] == "truncated"
    assert result.verdict == "not-pool"


def test_unresolvable_name_is_an_error(monkeypatch):
    def no_such_name(*args, **kwargs):
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    monkeypatch.setattr(probe_mod.socket, "getaddrinfo", no_such_name)
    (result,) = probe_endpoints(["pool.example.test:3333"], FAST)
    assert (result.verdict, result.host, result.address) == ("error", "pool.example.test",
                                                              "pool.example.test")
    assert result.evidence["kind"] == "resolve"


def test_localhost_is_resolved_and_the_address_reported():
    with sp.StubServer(sp.pool({"stratum-v1"})) as server:
        result = probe_one(server, host="localhost")
    assert result.host == "localhost" and result.address == sp.LOOPBACK
    assert result.verdict == "pool"


def _ipv6_loopback() -> bool:
    if not socket.has_ipv6:
        return False
    try:
        with socket.socket(socket.AF_INET6) as s:
            s.bind(("::1", 0))
    except OSError:
        return False
    return True


@pytest.mark.skipif(not _ipv6_loopback(), reason="no IPv6 loopback here")
def test_ipv6_loopback():
    with sp.StubServer(sp.pool({"stratum-v1"}), host="::1") as server:
        (result,) = probe_endpoints([f"[::1]:{server.port}"], FAST)
    assert (result.verdict, result.address, result.host) == ("pool", "::1", "::1")


# ---------------------------------------------------------------------------- what is sent


def test_only_opening_messages_are_sent_and_recorded_exactly():
    fp = load_fingerprints()
    submits = {m for d in fp.dialects.values() for m in d.submit_methods}
    with sp.StubServer(sp.json_rpc_node) as server:
        result = probe_one(server)
    sent = [line for a in result.evidence["attempts"] for line in a["sent"]]
    # the stub saw exactly the recorded lines (each JSON line without its newline)
    assert [s.encode().rstrip(b"\n") for s in sent if s.startswith("{")] == \
        [r for r in server.received if r.startswith(b"{")]
    methods = []
    for text in sent:
        body = text.split("\r\n\r\n", 1)[-1]
        msg = json.loads(body)
        methods.append(msg["method"])
        if msg["method"] in submits:
            assert msg["method"] == "getwork" and msg["params"] == []  # a request for work
    assert methods == ["mining.subscribe", "mining.subscribe", "eth_submitLogin", "login",
                       "getwork"]
    assert "poolwatch-probe" in sent[0]


def test_each_opening_is_recognised_by_the_fingerprints_as_its_dialect():
    """The probe speaks the dialects as the passive detector knows them."""
    fp = load_fingerprints()
    seen = {}
    for dialect in DIALECT_ORDER:
        with sp.StubServer(sp.silent) as server:
            settings = ProbeSettings(timeout_s=0.1, endpoint_timeout_s=2, rate=200,
                                     host_rate=200, tls="no", dialects=(dialect,))
            result = probe_one(server, settings)
        payload = result.evidence["attempts"][0]["sent"][0].encode()
        seen[dialect] = [d.id for d in fp.identify_client_payload(payload)]
    for dialect, ids in seen.items():
        assert dialect in ids, (dialect, ids)


def test_the_guard_refuses_work():
    plan = probe_mod._plan(load_fingerprints())
    for method, params in [("mining.submit", ["w", "j", "00", "00", "00"]),
                           ("submit", {"id": "x"}), ("eth_submitWork", ["0x1", "0x2", "0x3"]),
                           ("getwork", ["00" * 128]), ("submitblock", ["00"])]:
        with pytest.raises(AssertionError):
            probe_mod._line(plan, 9, method, params)
    probe_mod._line(plan, 0, "getwork", [])  # asking for work is allowed


# ---------------------------------------------------------------------------- TLS


def test_tls_pool_with_a_self_signed_certificate(certs):
    ctx = sp.server_context(*certs["self_signed"])
    with sp.StubServer(sp.pool({"stratum-v1"}), tls=ctx) as server:
        auto = probe_one(server)
        yes = probe_one(server, replace(FAST, tls="yes"))
        no = probe_one(server, replace(FAST, tls="no"))
    for result in (auto, yes):
        assert (result.verdict, result.dialect, result.tls) == ("pool", "stratum-v1", True)
        cert = result.evidence["certificate"]
        assert cert["verified"] is False and "self-signed" in cert["verify_error"]
        assert "pool.example.test" in cert["names"] and "127.0.0.1" in cert["names"]
        assert cert["self_signed"] is True and len(cert["sha256"]) == 64
    assert [a["tls"] for a in auto.evidence["attempts"]] == [False, True]  # plain, then TLS
    assert no.verdict != "pool" and no.tls is False and "certificate" not in no.evidence


def test_tls_certificate_that_verifies(certs, monkeypatch):
    """With the test CA trusted (in place of the system store), the certificate verifies."""
    real = ssl.create_default_context

    def trusting(*args, **kwargs):
        ctx = real()
        ctx.load_verify_locations(cafile=str(certs["ca"]))
        return ctx

    monkeypatch.setattr(probe_mod.ssl, "create_default_context", trusting)
    with sp.StubServer(sp.pool({"cryptonote"}), tls=sp.server_context(*certs["signed"])) as server:
        result = probe_one(server, replace(FAST, tls="yes"))
    assert (result.verdict, result.dialect, result.tls) == ("pool", "cryptonote", True)
    cert = result.evidence["certificate"]
    assert cert["verified"] is True and cert["verify_error"] is None
    assert "signed.example.test" in cert["names"] and cert["self_signed"] is False
    # one handshake checked the certificate: no extra connection for an unverified retry
    assert len(server.accepts) == len(result.evidence["attempts"])


def test_tls_yes_against_a_plain_server_is_not_a_pool():
    with sp.StubServer(sp.http_server) as server:
        result = probe_one(server, replace(FAST, tls="yes"))
    assert result.verdict == "not-pool" and result.evidence["kind"] == "tls-handshake-failed"
    assert len(result.evidence["attempts"]) == 1


def test_stratum_ssl_url_asks_for_tls(certs):
    with sp.StubServer(sp.pool({"stratum-v1"}),
                       tls=sp.server_context(*certs["self_signed"])) as server:
        (result,) = probe_endpoints([f"stratum+ssl://127.0.0.1:{server.port}"],
                                    replace(FAST, tls="no"))
    assert result.verdict == "pool" and result.tls is True


# ---------------------------------------------------------------------------- rate limit


def test_rate_limiter_spaces_slots_overall_and_per_host():
    now = [0.0]
    slept = []

    def sleep(s):
        slept.append(s)

    limiter = RateLimiter(rate=4, host_rate=1, clock=lambda: now[0], sleep=sleep)
    slots = [limiter.wait(k) for k in ("a", "b", "a", "c", "b")]
    assert slots == [0.0, 0.25, 1.0, 1.25, 1.5]
    assert [k for _, k in limiter.log] == ["a", "b", "a", "c", "b"]


def test_connections_to_one_host_respect_the_host_rate():
    settings = ProbeSettings(timeout_s=1, endpoint_timeout_s=10, rate=100, host_rate=8,
                             tls="no")
    with sp.StubServer(sp.json_rpc_node) as a, sp.StubServer(sp.json_rpc_node) as b:
        list(probe_endpoints([Endpoint(sp.LOOPBACK, a.port), Endpoint(sp.LOOPBACK, b.port)],
                             settings))
        accepts = sorted(a.accepts + b.accepts)
    assert len(accepts) == 2 * len(DIALECT_ORDER)
    gaps = [y - x for x, y in itertools.pairwise(accepts)]
    assert min(gaps) >= 1 / 8 - 0.02, gaps


def test_connections_overall_respect_the_rate():
    """Two addresses (127.0.0.1 and ::1 where there is IPv6) are probed in parallel; the
    overall rate still holds for both together."""
    settings = ProbeSettings(timeout_s=1, endpoint_timeout_s=10, rate=10, host_rate=100,
                             tls="no", dialects=("stratum-v1", "ethproxy"))
    limiter = RateLimiter(settings.rate, settings.host_rate)
    second = "::1" if _ipv6_loopback() else sp.LOOPBACK
    with sp.StubServer(sp.json_rpc_node) as a, sp.StubServer(sp.json_rpc_node, host=second) as b:
        started = time.monotonic()
        results = list(probe_endpoints([Endpoint(sp.LOOPBACK, a.port), Endpoint(second, b.port)],
                                       settings, limiter=limiter))
        elapsed = time.monotonic() - started
        accepts = sorted(a.accepts + b.accepts)
    assert [r.verdict for r in results] == ["not-pool", "not-pool"]
    assert len(accepts) == 4 and elapsed >= 0.3 - 0.02
    slots = sorted(t for t, _ in limiter.log)
    assert all(y - x >= 0.1 - 1e-9 for x, y in itertools.pairwise(slots))
    gaps = [y - x for x, y in itertools.pairwise(accepts)]
    assert min(gaps) >= 0.1 - 0.02, gaps


# ---------------------------------------------------------------------------- endpoints


@pytest.mark.parametrize("text, expected", [
    ("127.0.0.1:3333", Endpoint("127.0.0.1", 3333)),
    ("localhost:80", Endpoint("localhost", 80)),
    ("[::1]:4444", Endpoint("::1", 4444)),
    ("stratum+tcp://pool.example.test:3333", Endpoint("pool.example.test", 3333)),
    ("stratum+ssl://pool.example.test:443/", Endpoint("pool.example.test", 443, True)),
])
def test_parse_endpoint(text, expected):
    assert parse_endpoint(text) == expected


@pytest.mark.parametrize("text", ["3333", "host", "host:0", "host:70000", "::1:3333",
                                  "[::1]3333", "[nothost]:1", "a b:1", ":3333"])
def test_parse_endpoint_rejects(text):
    with pytest.raises(ValueError):
        parse_endpoint(text)


def test_read_endpoints_skips_comments_and_names_bad_lines(tmp_path):
    good = tmp_path / "eps.txt"
    good.write_text("# pools seen today\n127.0.0.1:3333\n\n[::1]:4444  # v6\n")
    assert read_endpoints(good) == [Endpoint("127.0.0.1", 3333), Endpoint("::1", 4444)]
    bad = tmp_path / "bad.txt"
    bad.write_text("127.0.0.1:3333\n127.0.0.1:99999\n")
    with pytest.raises(ConfigError, match=r"bad\.txt, line 2"):
        read_endpoints(bad)


# ---------------------------------------------------------------------------- results file


def _result(**kw) -> ProbeResult:
    base = {"host": "pool.example.test", "address": "127.0.0.1", "port": 3333, "tls": True,
                "verdict": "pool", "dialect": "stratum-v1",
                "evidence": {"kind": "stratum", "signs": ["x"], "attempts": []},
                "checked_at_ns": 1_700_000_000_123_456_789}
    return ProbeResult(**{**base, **kw})


def test_read_probe_results_round_trip(tmp_path):
    results = [_result(), _result(port=4444, verdict="not-pool", dialect=None, tls=False),
               _result(address="::ffff:127.0.0.1", port=5555, verdict="refused", dialect=None)]
    path = tmp_path / "probes.jsonl"
    lines = [json.dumps(r.as_dict()) for r in results]
    lines.insert(1, json.dumps({"event_type": "flow", "src_ip": "10.0.0.1"}))  # passed over
    lines.insert(2, "")
    path.write_text("\n".join(lines) + "\n")
    read = read_probe_results(path)
    assert read[("127.0.0.1", 3333)] == results[0]
    assert read[("127.0.0.1", 4444)] == results[1]
    assert read[("127.0.0.1", 5555)].verdict == "refused"  # IPv4-mapped → IPv4
    assert len(read) == 3
    assert hash(results[0]) == hash(read[("127.0.0.1", 3333)])


def test_read_probe_results_latest_check_wins(tmp_path):
    old, new = _result(verdict="no-answer", dialect=None), _result(checked_at_ns=2 * 10**18)
    path = tmp_path / "p.jsonl"
    path.write_text(json.dumps(new.as_dict()) + "\n" + json.dumps(old.as_dict()) + "\n")
    assert read_probe_results(path)[("127.0.0.1", 3333)].verdict == "pool"


@pytest.mark.parametrize("line, reason", [
    ("{not json", "not JSON"),
    ('["a list"]', "not a JSON object"),
    (json.dumps({**_result().as_dict(), "verdict": "maybe"}), "verdict 'maybe'"),
    (json.dumps({k: v for k, v in _result().as_dict().items() if k != "port"}), "missing field 'port'"),
    (json.dumps({**_result().as_dict(), "port": 0}), "port 0 out of range"),
    (json.dumps({**_result().as_dict(), "tls": "yes"}), "field 'tls'"),
    (json.dumps({**_result().as_dict(), "checked_at_ns": "today"}), "field 'checked_at_ns'"),
])
def test_bad_result_lines_are_named_with_their_number(tmp_path, line, reason):
    path = tmp_path / "bad.jsonl"
    path.write_text(json.dumps(_result().as_dict()) + "\n\n" + line + "\n")
    with pytest.raises(ProbeResultError) as info:
        read_probe_results(path)
    assert info.value.line == 3 and str(path) in str(info.value) and "line 3" in str(info.value)
    assert reason in str(info.value)
    assert isinstance(info.value, ConfigError) and isinstance(info.value, ValueError)


def test_missing_results_file(tmp_path):
    with pytest.raises(ProbeResultError, match="no.jsonl"):
        read_probe_results(tmp_path / "no.jsonl")


def test_verdicts_are_the_documented_ones():
    assert VERDICTS == ("pool", "not-pool", "no-answer", "refused", "error")
    doc = (Path(__file__).resolve().parent.parent / "docs" / "cli.md").read_text()
    section = doc.split("## `poolwatch probe", 1)[1]
    for v in VERDICTS:
        assert f"`{v}`" in section


# ---------------------------------------------------------------------------- the command


def test_cli_jsonl_round_trips_through_read_probe_results(tmp_path):
    out = tmp_path / "probes.jsonl"
    eps = tmp_path / "eps.txt"
    with sp.StubServer(sp.pool({"stratum-v1"})) as pool, sp.StubServer(sp.http_server) as web:
        eps.write_text(f"# from a scan\nlocalhost:{web.port}\n")
        closed = sp.closed_port()
        run = run_cli("probe", f"127.0.0.1:{pool.port}", f"127.0.0.1:{closed}", "--from", eps,
                      "-f", "jsonl", "-o", out, *FAST_CLI)
    assert run.exit_code == 0, run.output
    assert "notice" in run.stderr and "connects to 3 endpoint(s)" in run.stderr
    lines = [json.loads(x) for x in out.read_text().splitlines()]
    assert [x["event_type"] for x in lines] == ["probe_result"] * 3
    assert [x["verdict"] for x in lines] == ["pool", "refused", "not-pool"]
    assert lines[0]["checked_at"].endswith("Z") and isinstance(lines[0]["checked_at_ns"], int)
    results = read_probe_results(out)
    assert results[(sp.LOOPBACK, pool.port)].dialect == "stratum-v1"
    assert results[(sp.LOOPBACK, pool.port)].evidence["attempts"][0]["sent"][0].startswith(
        '{"id": 1, "method": "mining.subscribe"')
    assert results[(sp.LOOPBACK, web.port)].host == "localhost"
    assert results[(sp.LOOPBACK, closed)].verdict == "refused"


def test_cli_table(tmp_path):
    with sp.StubServer(sp.pool({"cryptonote"})) as pool:
        run = run_cli("probe", f"127.0.0.1:{pool.port}", *FAST_CLI)
    assert run.exit_code == 0
    assert "cryptonote" in run.stdout and "pool" in run.stdout
    assert "1 endpoint(s) probed: 1 pool" in run.stderr


@pytest.mark.parametrize("args, status, message", [
    ([], 2, "give endpoints"),
    (["127.0.0.1"], 2, "expected HOST:PORT"),
    (["::1:3333"], 2, "brackets"),
    (["127.0.0.1:1", "--from", "/no/such/file"], 2, "no such file"),
    (["127.0.0.1:1", "--tls", "maybe"], 2, ""),
    (["127.0.0.1:1", "--rate", "0"], 2, ""),
    (["127.0.0.1:1", "-f", "csv"], 2, ""),
    (["127.0.0.1:1", "-o", "/no/such/dir/x.jsonl"], 2, "no such directory"),
])
def test_cli_bad_usage(args, status, message):
    run = run_cli("probe", *args)
    assert run.exit_code == status
    assert message in run.output + run.stderr
    assert "Traceback" not in run.output + run.stderr


def test_cli_bad_from_line_is_named(tmp_path):
    eps = tmp_path / "eps.txt"
    eps.write_text("127.0.0.1:3333\nnot an endpoint\n")
    run = run_cli("probe", "--from", eps)
    assert run.exit_code == 2 and "eps.txt, line 2" in run.stderr


def test_cli_nothing_probed(tmp_path, monkeypatch):
    empty = tmp_path / "empty.txt"
    empty.write_text("# nothing today\n")
    run = run_cli("probe", "--from", empty)
    assert run.exit_code == 1 and "nothing to probe" in run.stderr

    def no_such_name(*args, **kwargs):
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    monkeypatch.setattr(probe_mod.socket, "getaddrinfo", no_such_name)
    run = run_cli("probe", "pool.example.test:3333", *FAST_CLI)
    assert run.exit_code == 1 and "1 error" in run.stderr


def test_cli_defaults_are_the_probers():
    command = typer.main.get_command(app).commands["probe"]
    defaults = {p.name: p.default for p in command.params}
    assert defaults["timeout"] == probe_mod.DEFAULT_TIMEOUT
    assert defaults["endpoint_timeout"] == probe_mod.DEFAULT_ENDPOINT_TIMEOUT
    assert defaults["rate"] == probe_mod.DEFAULT_RATE
    assert defaults["host_rate"] == probe_mod.DEFAULT_HOST_RATE
