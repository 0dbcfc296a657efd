"""The sensor against a real lead API (`poolwatch serve` under uvicorn, SQLite in tmp, a
sensor-scope key from `poolwatch keys create`): the API stopped in the middle of a run and
started again, the sensor killed with SIGKILL between spool and push, a crash after a POST
before its spool file was deleted, SIGTERM flushing; rejected batches and bad keys.

Detections are counted in the store against an offline scan of the same capture files.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from .test_sensor import ROOT, canon, free_port, offline, pcap_pieces, wait_for

sys.path.insert(0, str(ROOT / "capture"))

from poolwatch_sensor.metrics import Metrics
from poolwatch_sensor.push import Outbox, Pusher, Spool

PY = [sys.executable, "-m", "poolwatch.cli"]


def _env() -> dict[str, str]:
    path = os.pathsep.join(p for p in (str(ROOT / "capture"), os.environ.get("PYTHONPATH"))
                           if p)
    return {**os.environ, "PYTHONPATH": path}


class Api:
    """`poolwatch serve` in a subprocess over a SQLite store; stop() and start() again keep
    the store and the port."""

    def __init__(self, tmp: Path) -> None:
        self.path = tmp / "leads.db"
        self.db = f"sqlite:///{self.path}"
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen | None = None
        self.log = tmp / "serve.log"

    def key(self, scope: str = "sensor") -> str:
        """A key from `poolwatch keys create` (which also creates the SQLite store)."""
        made = subprocess.run([*PY, "keys", "create", "--scope", scope, "--name", "edge-test",
                               "--db", self.db], check=True, capture_output=True, text=True,
                              env=_env())
        return made.stdout.strip().splitlines()[-1]

    def start(self, wait: bool = True) -> None:
        with open(self.log, "ab") as out:  # the child keeps its own copy of the descriptor
            self.proc = subprocess.Popen([*PY, "serve", "--db", self.db, "--port",
                                          str(self.port), "--rate", "1000"], stdout=out,
                                         stderr=subprocess.STDOUT, env=_env())

        if wait:
            self.wait()

    def wait(self) -> None:
        def up() -> bool:
            if self.proc.poll() is not None:
                raise AssertionError(f"serve exited: {self.log.read_text()[-2000:]}")
            try:
                return httpx.get(self.url + "/health", timeout=1).status_code == 200
            except httpx.TransportError:
                return False

        wait_for(up, 60, 0.1, "the API")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(20)
        self.proc = None

    def records(self) -> list[dict]:
        from poolwatch.store import Store

        with Store.open(self.db, create=False) as store:
            return store.records()

    def batches(self) -> list[tuple]:
        """(idempotency key, records, inserted, duplicates) of every ingest batch stored."""
        with sqlite3.connect(self.path) as db:
            return db.execute("SELECT idempotency_key, record_count, inserted, duplicates "
                              "FROM ingest_batches ORDER BY id").fetchall()


class SensorProcess:
    """`poolwatch sense --config FILE` in a subprocess, JSON logs to a file."""

    def __init__(self, tmp: Path, api_url: str, secret: str) -> None:
        self.tmp = tmp
        self.ring = tmp / "ring"
        self.ring.mkdir(exist_ok=True)
        (tmp / "sensor.key").write_text(secret + "\n")
        self.metrics_port = free_port()
        self.config = tmp / "sensor.toml"
        self.config.write_text(f"""
[sensor]
name = "edge-t"
state_directory = "{tmp / 'state'}"
[files]
directory = "{self.ring}"
settle_seconds = 0.05
poll_seconds = 0.05
[capture]
tick_seconds = 0.5
[api]
url = "{api_url}"
key_file = "{tmp / 'sensor.key'}"
batch_size = 3
flush_seconds = 0.1
retry_min_seconds = 0.05
retry_max_seconds = 0.3
drain_seconds = 10
[metrics]
port = {self.metrics_port}
[log]
level = "debug"
""")
        self.spool = tmp / "state" / "spool"
        self.proc: subprocess.Popen | None = None
        self.runs = 0

    def start(self) -> None:
        self.runs += 1
        self.log = self.tmp / f"sensor-{self.runs}.log"
        with open(self.log, "wb") as err:
            self.proc = subprocess.Popen([*PY, "sense", "--config", str(self.config)],
                                         stdout=subprocess.DEVNULL, stderr=err, env=_env())
        wait_for(lambda: self._alive() and "watching a capture directory" in
                 self.log.read_text(), 60, 0.05, "the sensor to watch its directory")

    def _alive(self) -> bool:
        if self.proc.poll() is not None:
            raise AssertionError(f"sense exited {self.proc.returncode}: "
                                 f"{self.log.read_text()[-3000:]}")
        return True

    def lines(self) -> list[dict]:
        return [json.loads(line) for line in self.log.read_text().splitlines()
                if line.startswith("{")]

    def metric(self, name: str) -> float:
        text = httpx.get(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=5).text
        for line in text.splitlines():
            if line.split(" ")[0] == name:
                return float(line.rsplit(" ", 1)[1])
        return 0.0

    def spooled(self) -> list[Path]:
        return sorted(self.spool.glob("*.json"))

    def files_read(self) -> int:
        state = self.tmp / "state" / "files.json"
        return len(json.loads(state.read_text())["files"]) if state.exists() else 0

    def terminate(self, timeout: float = 30) -> tuple[int, float]:
        started = time.monotonic()
        self.proc.send_signal(signal.SIGTERM)
        code = self.proc.wait(timeout)
        return code, time.monotonic() - started

    def kill9(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def stop_quietly(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


@pytest.fixture
def api(tmp_path):
    server = Api(tmp_path)
    yield server
    server.stop()


@pytest.fixture(scope="module")
def pieces(tmp_path_factory) -> list[Path]:
    return pcap_pieces(tmp_path_factory.mktemp("pieces"))


def _copy(pieces: list[Path], ring: Path) -> None:
    for p in pieces:
        shutil.copy(p, ring / p.name)  # closed after writing: read at once


def test_api_stopped_mid_run_nothing_lost_nothing_duplicated(tmp_path, api, pieces):
    sensor = SensorProcess(tmp_path, api.url, api.key())
    api.start(wait=False)  # both start at once (the sensor retries until the API answers)
    used = pieces[:7]  # the seventh ends inside a session: only SIGTERM's flush reports it
    expected = canon(offline(used))
    try:
        sensor.start()
        api.wait()
        _copy(used[:3], sensor.ring)
        wait_for(lambda: sensor.files_read() == 3 and api.records() and not sensor.spooled(),
                 30, why="the first files delivered")
        delivered_before_outage = len(api.records())
        api.stop()
        _copy(used[3:], sensor.ring)
        wait_for(lambda: sensor.files_read() == 7 and sensor.spooled()
                 and sensor.metric('poolwatch_sensor_push_errors_total{reason="connect"}') > 0,
                 30, why="files read and spooled while the API is down")
        assert sensor.metric("poolwatch_sensor_spool_batches") == len(sensor.spooled()) > 0
        assert sensor.metric("poolwatch_sensor_spool_bytes") > 0
        assert len(api.records()) == delivered_before_outage  # (read from the store's file)
        api.start()
        wait_for(lambda: not sensor.spooled(), 30, why="the spool to drain after recovery")
        before_sigterm = api.records()
        assert before_sigterm
        # /metrics shows what happened
        assert sensor.metric('poolwatch_sensor_files_total{result="ok"}') == 7
        assert sensor.metric("poolwatch_sensor_pushed_records_total") == len(before_sigterm)
        assert sensor.metric('poolwatch_sensor_detections_total{kind="stratum_session"}') > 0
        assert sensor.metric("poolwatch_sensor_push_seconds_count") >= 1
        assert sensor.metric("poolwatch_sensor_spool_batches") == 0
        code, seconds = sensor.terminate()
    finally:
        sensor.stop_quietly()
    assert code == 0 and seconds < 15, sensor.log.read_text()[-2000:]
    stored = api.records()
    assert len(stored) > len(before_sigterm)  # SIGTERM flushed the session still open
    assert canon(stored) == expected  # nothing lost, nothing twice
    batches = api.batches()
    assert sum(b[1] for b in batches) == len(expected)  # every record sent in one batch only
    assert sum(b[3] for b in batches) == 0  # and none of them twice
    assert all(b[0].startswith("edge-t-") for b in batches)
    msgs = [x["msg"] for x in sensor.lines()]
    assert "cannot push to the API; batches stay spooled and are retried" in msgs
    assert any(m.startswith("pushing again after") for m in msgs)
    assert msgs[-1] == "sensor stopped"
    stop = next(x for x in sensor.lines() if x["msg"] == "sensor stopped")
    assert stop["fields"]["delivered"] is True and stop["level"] == "info"
    assert all(set(x) == {"ts", "level", "logger", "msg", "fields"} for x in sensor.lines())


def test_kill_9_between_spool_and_push_then_restart_delivers_exactly_once(tmp_path, api,
                                                                           pieces):
    secret = api.key()  # the API is not running yet: every push fails
    sensor = SensorProcess(tmp_path, api.url, secret)
    try:
        sensor.start()
        _copy(pieces, sensor.ring)
        wait_for(lambda: sensor.files_read() == len(pieces) and len(sensor.spooled()) >= 2
                 and sensor.metric("poolwatch_sensor_push_errors_total"
                                   '{reason="connect"}') > 0, 30, why="spooled, not pushed")
        sensor.kill9()  # no flush, no goodbye
        spooled = {p.name: p.read_bytes() for p in sensor.spooled()}
        records = [r for body in spooled.values() for r in json.loads(body)["records"]]
        assert records
        api.start(wait=False)
        sensor.start()  # the same spool and state: sends the spool, reads no file again
        wait_for(lambda: not sensor.spooled(), 30, why="the spool delivered")
        stored = api.records()
        assert canon(stored) == canon(records)
        assert sorted(k for k, *_ in api.batches()) == sorted(n[:-5] for n in spooled)
        assert sensor.metric('poolwatch_sensor_files_total{result="ok"}') == 0
        code, _ = sensor.terminate()
        assert code == 0
    finally:
        sensor.stop_quietly()
    batches = api.batches()
    assert sum(b[1] for b in batches) == len(records) and sum(b[3] for b in batches) == 0
    # (a crash after a POST but before its spool file was deleted: the next run sends it
    # again under the same key, and the API answers with a replay; see the next test)


def test_rejected_batches_bad_keys_and_replays(tmp_path, api):
    """In-process pusher, the API's app under uvicorn in a thread (a real socket): a 4xx
    moves the batch aside with the API's reason; a wrong key keeps it spooled; a batch sent
    again under its key after a crash between POST and delete is stored once."""
    from poolwatch_api import create_app

    from poolwatch.store import Store

    from .test_api import Server

    store = Store.open(api.db)
    secret = store.create_key("edge-test", "sensor")[1]
    with Server(create_app(store, rate=1000, burst=1000)) as url:
        api.url = url
        _rejected_bad_keys_and_replays(tmp_path, api, secret)
    store.close()


def _rejected_bad_keys_and_replays(tmp_path, api, secret):
    metrics = Metrics("t")
    spool = Spool(tmp_path / "spool", 1 << 20, metrics)
    good = {"event_type": "pool_contact", "src_ip": "10.0.0.1", "src_port": 5000,
            "dest_ip": "198.51.100.7", "dest_port": 3333, "first_seen": 1772446200000000000,
            "last_seen": 1772446260000000000, "evidence": {}}
    box = Outbox(spool, None, sensor_name="edge", batch_size=10, metrics=metrics)

    wrong = Pusher(spool, api.url, "pw_not-a-key", metrics=metrics)
    box.add([good])
    box.sync()
    [path] = spool.pending()
    attempt = wrong.send(path)
    assert (attempt.outcome, attempt.reason, attempt.status) == ("retry", "auth", 401)
    assert spool.pending() == [path]  # kept: the batch is fine, the key is not

    pusher = Pusher(spool, api.url, secret, metrics=metrics)
    body = path.read_bytes()
    assert pusher.send(path).outcome == "ok" and spool.pending() == []
    spool.write(path.stem, body)  # the same batch again, same key (a crash before delete)
    again = pusher.send(spool.pending()[0])
    assert again.outcome == "ok" and again.detail["replayed"] is True
    assert len(api.records()) == 1
    wrong.close()

    box.add([{"event_type": "bogus", "src_ip": "10.0.0.2", "first_seen": 1}])
    box.sync()
    spool.write("edge-0000000000000000000-000000-schema", b'{"records": "not a list"}')
    outcomes = [pusher.send(p) for p in spool.pending()]
    assert sorted((a.outcome, a.status) for a in outcomes) == [("rejected", 400),
                                                               ("rejected", 422)]
    assert spool.pending() == []
    reasons = {p.name: json.loads(p.read_text())
               for p in (tmp_path / "spool" / "rejected").glob("*.reason.json")}
    assert len(reasons) == 2
    assert any("event_type must be one of" in str(r["detail"]) for r in reasons.values())
    assert all(r["idempotency_key"] and r["status"] in (400, 422) for r in reasons.values())
    kept = [p for p in (tmp_path / "spool" / "rejected").glob("*.json")
            if not p.name.endswith(".reason.json")]
    assert len(kept) == 2
    text = metrics.text()
    assert "poolwatch_sensor_rejected_batches_total 2.0" in text
    assert 'poolwatch_sensor_push_errors_total{reason="auth"} 1.0' in text
    assert "poolwatch_sensor_replayed_batches_total 1.0" in text
    assert len(api.records()) == 1
    pusher.close()


def test_tls_with_a_private_ca_and_a_certificate_that_does_not_verify(tmp_path):
    """HTTPS to the API: ``ca_file`` trusts the API's own CA; without it the certificate does
    not verify, and the batch stays spooled (reason ``tls``), never sent in the clear."""
    import threading

    import uvicorn

    from poolwatch.store import Store
    from poolwatch_api import create_app

    if shutil.which("openssl") is None:
        if os.environ.get("CI") == "true":
            pytest.fail("openssl is not installed (CI must have it)")
        pytest.skip("openssl is not installed (needed to make a test certificate)")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
                    "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True)
    store = Store.open(f"sqlite:///{tmp_path / 'leads.db'}")
    secret = store.create_key("edge-tls", "sensor")[1]
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(store), host="127.0.0.1", port=port,
                                           log_level="warning", lifespan="off",
                                           ssl_certfile=str(cert), ssl_keyfile=str(key)))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        wait_for(lambda: server.started, 20, why="uvicorn with TLS")
        spool = Spool(tmp_path / "spool", 1 << 20)
        box = Outbox(spool, None, sensor_name="edge-tls")
        box.add([{"event_type": "pool_contact", "src_ip": "10.0.0.9", "first_seen": 5,
                  "dest_ip": "198.51.100.9", "dest_port": 443, "evidence": {}}])
        box.sync()
        url = f"https://127.0.0.1:{port}"
        pusher = Pusher(spool, url, secret)
        untrusted = pusher.send(spool.pending()[0])
        pusher.close()
        assert (untrusted.outcome, untrusted.reason) == ("retry", "tls")
        assert len(spool.pending()) == 1 and store.records() == []
        pusher = Pusher(spool, url, secret, verify=str(cert))
        trusted = pusher.send(spool.pending()[0])
        pusher.close()
        assert trusted.outcome == "ok" and spool.pending() == []
        assert len(store.records()) == 1
    finally:
        server.should_exit = True
        thread.join(10)
        store.close()
