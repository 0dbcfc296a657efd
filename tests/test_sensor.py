"""The edge sensor's body: configuration, the rotating-files source against an offline scan,
the spool's local guarantees, metrics over HTTP, and a whole sensor run in-process.

Pushing to a real lead API (stopped mid-run, kill -9, SIGTERM) is tests/test_sensor_push.py.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import socket
import struct
import sys
import threading
import time
import tomllib
from dataclasses import fields as dc_fields
from pathlib import Path

import httpx
import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "capture"))  # until pyproject ships capture/poolwatch_sensor

from poolwatch_sensor.config import SECTIONS, load_config
from poolwatch_sensor.metrics import Metrics
from poolwatch_sensor.push import Outbox, Pusher, Spool
from poolwatch_sensor.rotate import FileSource, RotatingDirectory

from poolwatch.errors import ConfigError

STRATUM = ROOT / "pcaps" / "stratum"
EXAMPLE = ROOT / "capture" / "sensor.example.toml"


# --------------------------------------------------------------------------- helpers
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def pcap_pieces(out: Path, per_file: int = 150) -> list[Path]:
    """The stratum samples merged by time into one stream (they share one timeline, ten
    minutes apart), cut into files of ``per_file`` packets as a ring buffer would: sessions
    run on from one file into the next."""
    header, records = None, []
    for path in sorted(STRATUM.glob("*.pcap")):
        data = path.read_bytes()
        header = header or data[:24]
        pos = 24
        while pos + 16 <= len(data):
            sec, usec, incl, _ = struct.unpack_from("<IIII", data, pos)
            records.append(((sec, usec), data[pos : pos + 16 + incl]))
            pos += 16 + incl
    records.sort(key=lambda r: r[0])  # stable: equal times keep their file order
    out.mkdir(parents=True, exist_ok=True)
    pieces = []
    for i in range(0, len(records), per_file):
        piece = out / f"edge_{i // per_file:05d}.pcap"
        piece.write_bytes(header + b"".join(r for _, r in records[i : i + per_file]))
        pieces.append(piece)
    return pieces


def count_packets(path: Path) -> int:
    data, pos, n = path.read_bytes(), 24, 0
    while pos + 16 <= len(data):
        pos += 16 + struct.unpack_from("<I", data, pos + 8)[0]
        n += 1
    return n


def _unordered(value):
    """Evidence lists of reasons in a canonical order: some are built from sets, whose order
    differs between processes (string hashing is seeded per process)."""
    if isinstance(value, dict):
        return {k: _unordered(v) for k, v in value.items()}
    if isinstance(value, list) and all(isinstance(x, str) for x in value):
        return sorted(value)
    if isinstance(value, list):
        return [_unordered(x) for x in value]
    return value


def canon(rows) -> list[str]:
    """Records as comparable text: the capture's path differs (copies), its SHA-256 not."""
    out = []
    for row in rows:
        row = json.loads(json.dumps(row.as_dict() if hasattr(row, "as_dict") else row,
                                    default=str))
        evidence = row.get("evidence") or {}
        evidence.pop("capture", None)
        row["evidence"] = _unordered(evidence)
        out.append(json.dumps(row, sort_keys=True))
    return sorted(out)


def offline(paths) -> list:
    from poolwatch.scan import scan_detections

    return list(scan_detections(paths))


def wait_for(what, timeout: float = 20.0, step: float = 0.05, why: str = ""):
    deadline = time.monotonic() + timeout
    while True:
        got = what()
        if got:
            return got
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {why or what}")
        time.sleep(step)


@pytest.fixture(scope="module")
def pieces(tmp_path_factory) -> list[Path]:
    return pcap_pieces(tmp_path_factory.mktemp("pieces"))


def write_toml(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


MINIMAL = """
[api]
url = "http://127.0.0.1:9"
key = "k"
[files]
directory = "{dir}"
"""


# ---------------------------------------------------------------------- configuration
@pytest.mark.parametrize("body, expected", [
    ("[api]\nurll = 'x'\n", "unknown key [api] urll (expected one of url, key"),
    ("[api]\nurll = 'x'\n", "did you mean 'url'?"),
    ("[capturee]\ninterface = 'eth0'\n", "unknown section [capturee]"),
    ("[api]\nbatch_size = 'many'\n", ("[api] batch_size: expected an integer from 1 to "
                                      "10,000, got 'many'")),
    ("[api]\nbatch_size = 20000\n", "[api] batch_size: expected an integer from 1 to 10,000"),
    ("[api]\nverify = 'yes'\n", "[api] verify: expected true or false, got 'yes'"),
    ("[capture]\nengine = 'pcap'\n", "[capture] engine: expected one of 'packet', 'pyshark'"),
    ("[spool]\nmax_bytes = 'lots'\n", "[spool] max_bytes: expected a size in bytes"),
    ("[sensor]\nname = 'edge 1/2'\n", "[sensor] name: expected 1 to 64 letters"),
    ("[metrics]\nport = 70000\n", "[metrics] port: expected an integer from 0 to 65,535"),
    ("[api]\nurl = 'ftp://x'\n", "[api] url: expected an http:// or https:// URL"),
    ("[api\n", "not valid TOML"),
    ("api = 3\n", "api must be a [api] table"),
])
def test_config_errors_name_file_key_and_what_was_expected(tmp_path, body, expected):
    path = write_toml(tmp_path / "bad.toml", body)
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert str(err.value).startswith(f"{path}: ")
    assert expected in str(err.value)


def test_config_cross_checks(tmp_path):
    watch = tmp_path / "ring"
    watch.mkdir()

    def error(text: str, over=None) -> str:
        with pytest.raises(ConfigError) as err:
            load_config(write_toml(tmp_path / "s.toml", text), over)
        return str(err.value)

    assert "[api] url: expected the lead API's URL" in error("[files]\ndirectory='ring'\n")
    assert "[api] key_file: expected the file holding" in error(
        "[api]\nurl='http://h'\n[files]\ndirectory='ring'\n")
    assert "[api] key and key_file: expected one of them" in error(
        "[api]\nurl='http://h'\nkey='a'\nkey_file='k'\n[files]\ndirectory='ring'\n")
    assert "nothing to read" in error("[api]\nurl='http://h'\nkey='a'\n")
    assert "[files] directory: expected a directory" in error(
        "[api]\nurl='http://h'\nkey='a'\n[files]\ndirectory='nowhere'\n")
    assert "[capture] block_kb: expected a power of two" in error(
        "[api]\nurl='http://h'\nkey='a'\n[capture]\ninterface='eth0'\nblock_kb=3000\n")
    # a value from a flag is blamed on the flag
    msg = error("[api]\nurl='http://h'\nkey='a'\n",
                {("files", "directory"): (str(tmp_path / "nope"), "--watch")})
    assert msg.startswith("command line (--watch): [files] directory")
    # a key file that cannot be read: named with where it was configured
    cfg = load_config(write_toml(tmp_path / "s.toml", "[api]\nurl='http://h'\nkey_file='k'\n"
                                 "[files]\ndirectory='ring'\n"))
    with pytest.raises(ConfigError, match=r"s\.toml: \[api\] key_file: cannot read .*/k"):
        cfg.api_key()


def test_config_flags_override_the_file_and_paths_are_relative_to_it(tmp_path):
    (tmp_path / "ring").mkdir()
    (tmp_path / "key").write_text("secret-1\n")
    (tmp_path / "key2").write_text("secret-2\n")
    path = write_toml(tmp_path / "s.toml", """
[sensor]
name = "edge-1"
state_directory = "state"
[api]
url = "https://leads.example:8443/"
key_file = "key"
[files]
directory = "ring"
[spool]
max_bytes = "2 MiB"
""")
    cfg = load_config(path)
    assert cfg.api.url == "https://leads.example:8443"  # no trailing slash
    assert cfg.files.directory == tmp_path / "ring"
    assert cfg.spool.directory == tmp_path / "state" / "spool"
    assert cfg.files.state_file == tmp_path / "state" / "files.json"
    assert cfg.spool.max_bytes == 2 << 20
    assert cfg.api_key() == "secret-1"
    assert cfg.sources() == ["files"]
    over = load_config(path, {("api", "key_file"): (str(tmp_path / "key2"), "--key-file"),
                              ("flows", "port"): (2055, "--flows"),
                              ("spool", "directory"): (str(tmp_path / "sp"), "--spool")})
    assert over.api_key() == "secret-2"
    assert over.sources() == ["files", "flows"]
    assert over.spool.directory == tmp_path / "sp"


def test_example_config_documents_every_key_and_loads(tmp_path, monkeypatch):
    text = EXAMPLE.read_text()
    raw = tomllib.loads(text)
    assert set(raw) == set(SECTIONS)
    for section, kind in SECTIONS.items():
        for f in dc_fields(kind):
            # every key is in the example, set or commented out, with a comment above it
            lines = text.splitlines()
            at = [i for i, line in enumerate(lines)
                  if line.lstrip("# ").startswith(f"{f.name} =")]
            assert at, f"[{section}] {f.name} is not in {EXAMPLE.name}"
            j = at[0] - 1
            while "=" in lines[j] and not lines[j].startswith("#"):  # keys set together
                j -= 1
            assert lines[j].startswith("#"), f"[{section}] {f.name} has no comment"
    with pytest.raises(ConfigError, match=r"\[api\] key_file: expected a path whose "
                                          r"variables are set"):
        load_config(EXAMPLE, {("files", "directory"): (str(tmp_path), "--watch")})
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(tmp_path))  # as the systemd unit sets it
    (tmp_path / "sensor.key").write_text("pw_secret\n")
    cfg = load_config(EXAMPLE, {("files", "directory"): (str(tmp_path), "--watch")})
    assert cfg.api_key() == "pw_secret"
    assert cfg.sources() == ["live", "files", "flows"]
    assert cfg.capture.block_count * cfg.capture.block_size == 128 << 20


def test_cli_sense_check_and_errors(tmp_path):
    from typer.testing import CliRunner

    from poolwatch.cli import app

    (tmp_path / "ring").mkdir()
    (tmp_path / "key").write_text("k\n")
    runner = CliRunner()
    ok = runner.invoke(app, ["sense", "--watch", str(tmp_path / "ring"), "--api",
                             "http://127.0.0.1:9", "--key-file", str(tmp_path / "key"),
                             "--flows", "127.0.0.1:2055", "--check"])
    assert ok.exit_code == 0, ok.output
    assert "sources files, flows" in ok.stdout
    bad = runner.invoke(app, ["sense", "--watch", str(tmp_path / "ring"), "--api",
                              "http://127.0.0.1:9", "--key-file", str(tmp_path / "key"),
                              "--metrics", "here", "--check"])
    assert bad.exit_code == 2
    assert "--metrics 'here': expected HOST:PORT" in bad.output
    assert "Traceback" not in bad.output
    conf = write_toml(tmp_path / "s.toml", "[api]\nbatch_size = -1\n")
    bad = runner.invoke(app, ["sense", "--config", str(conf), "--check"])
    assert bad.exit_code == 2 and f"{conf}: [api] batch_size" in bad.output


def test_systemd_unit_verifies(tmp_path):
    unit = (ROOT / "capture" / "poolwatch-sensor.service").read_text()
    if shutil.which("systemd-analyze") is None:
        if os.environ.get("CI") == "true":
            pytest.fail("systemd-analyze is not installed (CI must have it)")
        pytest.skip("systemd-analyze is not installed")
    for key in ("KillSignal=SIGTERM", "Restart=on-failure", "TimeoutStopSec=",
                "CapabilityBoundingSet=CAP_NET_RAW CAP_NET_ADMIN", "AmbientCapabilities=",
                "DynamicUser=yes", "StateDirectory=poolwatch-sensor", "ProtectSystem=strict"):
        assert key in unit
    # the unit names the installed command; verify checks that it exists
    script = shutil.which("poolwatch") or str(Path(sys.executable).with_name("poolwatch"))
    path = tmp_path / "poolwatch-sensor.service"
    path.write_text(unit.replace("/usr/local/bin/poolwatch", script))
    import subprocess

    run = subprocess.run(["systemd-analyze", "verify", str(path)], capture_output=True,
                         text=True, timeout=60, check=False)
    assert run.returncode == 0 and "poolwatch-sensor" not in run.stderr, run.stderr


# --------------------------------------------------------------------- rotating files
def test_a_file_is_read_only_once_its_writer_has_let_go(tmp_path, pieces):
    ring = tmp_path / "ring"
    ring.mkdir()
    state = tmp_path / "files.json"
    watch = RotatingDirectory(ring, settle_seconds=0.2, state_file=state, use_inotify=False)
    first = ring / pieces[0].name
    with open(first, "wb") as fh:  # dumpcap writing the newest file
        fh.write(pieces[0].read_bytes())
        fh.flush()
        time.sleep(0.3)
        assert watch.ready() == []  # settled, but nothing newer: the writer may add more
    shutil.copy(pieces[1], ring / pieces[1].name)  # the writer moved on
    assert watch.ready() == []  # first is complete, but not observed for settle seconds yet
    assert wait_for(watch.ready, 5) == [first]  # the newest is still not ready
    watch.mark_done(first)
    assert watch.ready() == []
    # a restart remembers what was read
    again = RotatingDirectory(ring, settle_seconds=0.0, state_file=state, use_inotify=False)
    assert again.ready() == []
    # ... and a ring buffer rewriting the same name makes a new file
    time.sleep(0.01)
    first.write_bytes(pieces[2].read_bytes())
    shutil.copy(pieces[3], ring / pieces[3].name)
    assert wait_for(again.ready, 5) == [first, ring / pieces[1].name]
    # a hidden or non-matching file is never a capture
    (ring / ".partial.pcap").write_bytes(b"x")
    (ring / "notes.txt").write_text("x")
    assert {n for n, _ in again.scan()} == {first.name, pieces[1].name, pieces[3].name}


def test_inotify_close_write_lets_the_newest_file_go(tmp_path, pieces):
    ring = tmp_path / "ring"
    ring.mkdir()
    watch = RotatingDirectory(ring, settle_seconds=0.05, state_file=tmp_path / "s.json")
    if watch._inotify is None:
        if os.environ.get("CI") == "true":
            pytest.fail("inotify is not available under CI")
        pytest.skip("inotify is not available on this system")
    target = ring / "moved.pcap"
    (tmp_path / "moved.pcap").write_bytes(pieces[0].read_bytes())
    os.rename(tmp_path / "moved.pcap", target)  # a writer that renames finished files in
    watch.wait(1.0)
    assert wait_for(lambda: (watch.wait(0.05), watch.ready())[1], 5) == [target]


def _run_source(source, stop):
    abort = threading.Event()
    thread = threading.Thread(target=source.run, args=(stop, abort), daemon=True)
    thread.start()
    return thread


def test_rotating_files_give_the_offline_scan_s_detections(tmp_path, pieces):
    """Pieces appear one by one, the last one still being written for a while; one piece has
    its last record cut short (a writer killed mid-record); a file that is no capture sits
    among them. The sensor's file source gives the same records as an offline scan of the
    same files in the same order, evidence SHA-256 included."""
    from poolwatch_sensor.config import FilesSettings

    from poolwatch.scan import DetectionPipeline

    src_dir = tmp_path / "src"
    src_dir.mkdir()
    files = [shutil.copy(p, src_dir / p.name) for p in pieces]
    files = [Path(f) for f in files]
    cut = files[3]
    cut.write_bytes(cut.read_bytes()[:-20])  # the last record loses its tail
    junk = src_dir / "edge_00003x.pcap"  # sorts between pieces 3 and 4
    junk.write_text("not a capture\n")
    order = sorted(files + [junk])
    expected = canon(offline(order))
    assert len(expected) >= 15

    ring = tmp_path / "ring"
    ring.mkdir()
    settings = FilesSettings(directory=ring, settle_seconds=0.1, poll_seconds=0.05,
                             state_file=tmp_path / "files.json")
    got = []
    synced = []
    pipe = DetectionPipeline(contacts=True, streaming=True, hash_captures=True)
    source = FileSource(settings, pipe, emit=lambda rows, _: got.extend(rows),
                        sync=lambda: synced.append(len(got)) or True, tick_seconds=0.3)
    stop = threading.Event()
    thread = _run_source(source, stop)
    for f in order[:-1]:
        shutil.copy(f, ring / f.name)
        time.sleep(0.05)
    last = order[-1]
    data = last.read_bytes()
    with open(ring / last.name, "wb") as fh:  # still being written
        fh.write(data[: len(data) // 2 + 7])
        fh.flush()
        wait_for(lambda: source.stats["files"] == len(order) - 1, 20, why="files read")
        time.sleep(0.5)  # longer than settle: unchanged, but not let go by its writer
        assert source.stats["files"] == len(order) - 1
        fh.write(data[len(data) // 2 + 7 :])
    wait_for(lambda: source.stats["files"] == len(order), 20, why="the last file")
    stop.set()
    thread.join(10)
    source.finish()
    pipe.close()
    assert source.stats["truncated"] == 1 and source.stats["errors"] == 1
    assert canon(got) == expected
    assert all(len(r.evidence["capture_sha256"]) == 64 for r in got)
    assert len(synced) >= len(order)  # records spooled before each file was marked done
    done = json.loads((tmp_path / "files.json").read_text())["files"]
    assert set(done) == {f.name for f in order}
    assert done[cut.name]["result"] == "truncated" and done[junk.name]["result"] == "error"


def test_after_delete_removes_files_once_nothing_can_name_them(tmp_path, pieces):
    """``after = "delete"``: a file goes once the pipeline's clock is past the time its flows
    could still be reported in (their evidence needs the file for its SHA-256), the rest at
    the end of the run."""
    from poolwatch.scan import DetectionPipeline
    from poolwatch_sensor.config import FilesSettings

    ring = tmp_path / "ring"
    ring.mkdir()
    settings = FilesSettings(directory=ring, settle_seconds=0.05, poll_seconds=0.05,
                             after="delete", state_file=tmp_path / "files.json")
    got = []
    pipe = DetectionPipeline(contacts=True, streaming=True, hash_captures=True)
    source = FileSource(settings, pipe, emit=lambda rows, _: got.extend(rows),
                        sync=lambda: True, tick_seconds=0.2)
    stop = threading.Event()
    thread = _run_source(source, stop)
    used = pieces[:4]
    for p in used:
        shutil.copy(p, ring / p.name)
    wait_for(lambda: source.stats["files"] == len(used), 20, why="the files read")
    # the first piece ends more than twice the settle time before the last: gone already
    wait_for(lambda: not (ring / used[0].name).exists(), 10, why="the first file deleted")
    assert (ring / used[-1].name).exists()  # its flows may still be reported
    stop.set()
    thread.join(10)
    source.finish()
    pipe.close()
    assert sorted(ring.iterdir()) == []
    assert got and all(len(r.evidence["capture_sha256"]) == 64 for r in got)


# --------------------------------------------------------------------------- spool
def test_spool_is_atomic_and_survives_restarts(tmp_path):
    spool = Spool(tmp_path / "spool", 1 << 20)
    assert spool.write("edge-1-0001", b'{"records":[],"source":"s"}')
    (tmp_path / "spool" / "tmp" / "edge-1-0002.json").write_bytes(b'{"rec')  # a torn write
    again = Spool(tmp_path / "spool", 1 << 20)
    assert [p.name for p in again.pending()] == ["edge-1-0001.json"]
    assert again.bytes == len(b'{"records":[],"source":"s"}')
    assert not list((tmp_path / "spool" / "tmp").iterdir())


def test_a_full_spool_refuses_new_batches_keeps_old_ones_and_says_so(tmp_path, caplog):
    metrics = Metrics("t")
    spool = Spool(tmp_path / "spool", 1 << 16, metrics)
    box = Outbox(spool, None, sensor_name="edge", batch_size=10, flush_seconds=60,
                 metrics=metrics, max_pending=25)
    record = {"event_type": "pool_contact", "src_ip": "10.0.0.1", "first_seen": 1,
              "pad": "x" * 900}
    caplog.set_level(logging.ERROR, logger="poolwatch.sensor.push")
    for _ in range(10):
        box.add([record] * 10)
        box.poll()
    kept = [p.name for p in spool.pending()]
    assert 0 < len(kept) and spool.bytes <= 1 << 16
    assert box.pending == 25 and box.dropped == 100 - 25 - 10 * len(kept)
    assert metrics.spool_full._value.get() == 1
    assert any("spool is full" in r.getMessage() for r in caplog.records)
    assert any("detections dropped" in r.getMessage() for r in caplog.records)
    text = metrics.text()
    assert f'poolwatch_sensor_dropped_records_total{{reason="spool_full"}} {box.dropped}.0' in text
    # room again (the API took the three oldest): what waited in memory goes in after them
    for p in spool.pending()[:3]:
        spool.done(p)
    assert box.sync() is True and box.pending == 0
    names = [p.name for p in spool.pending()]
    assert names[: len(kept) - 3] == kept[3:] and len(names) == len(kept) - 3 + 3
    assert metrics.spool_full._value.get() == 0


def test_backoff_is_capped_exponential_with_jitter(tmp_path):
    pusher = Pusher(Spool(tmp_path / "s", 1 << 20), "http://127.0.0.1:9", "k", retry_min=1.0,
                    retry_max=8.0)
    for failures, ceiling in [(1, 1), (2, 2), (3, 4), (4, 8), (9, 8), (200, 8)]:
        pusher._failures = failures
        delays = [pusher._backoff(None) for _ in range(200)]
        assert all(ceiling / 2 <= d <= ceiling for d in delays)
        assert len(set(delays)) > 100  # jitter: sensors do not retry in step
    pusher._failures = 1
    assert 5.0 <= pusher._backoff(5.0) <= 8.0  # Retry-After is honoured, within the cap
    assert pusher._backoff(3600.0) == 8.0


# ------------------------------------------------------------- a sensor, in-process
def test_sensor_spools_while_the_api_is_unreachable_and_shows_metrics(tmp_path, pieces):
    """A whole Sensor (files source) with nothing listening at the API's address: capture goes
    on, every detection lands in the spool, /metrics tells the story, stop() flushes."""
    from poolwatch_sensor.sensor import Sensor

    ring = tmp_path / "ring"
    ring.mkdir()
    (tmp_path / "key").write_text("k\n")
    dead, mport = free_port(), free_port()
    cfg = load_config(write_toml(tmp_path / "s.toml", f"""
[sensor]
name = "edge-t"
state_directory = "state"
[files]
directory = "ring"
settle_seconds = 0.05
poll_seconds = 0.05
[capture]
tick_seconds = 0.3
[api]
url = "http://127.0.0.1:{dead}"
key_file = "key"
flush_seconds = 0.1
retry_min_seconds = 0.05
retry_max_seconds = 0.2
drain_seconds = 0.5
[metrics]
port = {mport}
"""))
    sensor = Sensor(cfg)
    code = []
    thread = threading.Thread(target=lambda: code.append(sensor.run()), daemon=True)
    thread.start()
    wait_for(lambda: "files" in sensor.stats, 20, why="the file source")  # watching now
    for p in pieces:
        shutil.copy(p, ring / p.name)  # closed after writing: inotify lets even the last go
    base = f"http://127.0.0.1:{mport}/metrics"

    def metric(text: str, name: str) -> float:
        for line in text.splitlines():
            if line.startswith(name + " ") or line.startswith(name + "{") and \
                    line.split(" ")[0] == name:
                return float(line.rsplit(" ", 1)[1])
        return 0.0

    def scraped():
        try:
            return httpx.get(base, timeout=2).text
        except httpx.TransportError:
            return ""

    text = wait_for(lambda: (t := scraped()) and metric(
        t, 'poolwatch_sensor_files_total{result="ok"}') == len(pieces) and metric(
        t, 'poolwatch_sensor_push_errors_total{reason="connect"}') > 0 and t, 30,
        why="all files read and a failed push")
    assert metric(text, 'poolwatch_sensor_packets_total{source="files"}') == sum(
        count_packets(p) for p in pieces)
    assert metric(text, 'poolwatch_sensor_detections_total{kind="stratum_session"}') > 0
    assert metric(text, "poolwatch_sensor_pushed_batches_total") == 0
    sensor.stop()
    thread.join(30)
    assert code == [0]
    expected = canon(offline(pieces))
    spooled = []
    for path in sorted((cfg.spool.directory).glob("*.json")):
        body = json.loads(path.read_bytes())
        assert body["source"] == "sensor:edge-t"
        assert path.stem.startswith("edge-t-")
        spooled += body["records"]
    assert canon(spooled) == expected  # everything, once, waiting for the API
    text = sensor.metrics.text()
    assert metric(text, "poolwatch_sensor_spool_batches") == len(
        list(cfg.spool.directory.glob("*.json")))
    assert metric(text, "poolwatch_sensor_spool_bytes") > 0


# ---------------------------------------------------------------- live, through a veth
def _need_live_tools() -> None:
    missing = [t for t in ("ip", "tcpreplay") if shutil.which(t) is None]
    why = (f"{', '.join(missing)} not installed" if missing else
           "needs root for network namespaces and packet sockets" if os.geteuid() else "")
    if why:
        if os.environ.get("CI") == "true":
            pytest.fail(f"live sensor test: {why} (CI must have it)")
        pytest.skip(why)


def _identity(rows, shares: bool = True) -> list[tuple]:
    """What a live capture must agree on with the offline scan: who, to whom, what. Times
    (and what is computed from them, hashrate) are the replay's, not the capture file's."""
    keys = ("event_type", "src_ip", "src_port", "dest_ip", "dest_port", "dialect", "coin",
            "worker", "wallet", "pool") + (("shares_submitted", "shares_accepted") if shares
                                           else ())
    out = []
    for row in rows:
        row = row.as_dict() if hasattr(row, "as_dict") else row
        out.append(tuple(str(row.get(k)) for k in keys))
    return sorted(out)


@pytest.mark.parametrize("prefilter", [True, False], ids=["prefilter", "everything"])
def test_live_capture_through_a_veth_pair_matches_the_offline_scan(tmp_path, pieces,
                                                                   prefilter):
    """The stratum samples replayed (tcpreplay, top speed) from a network namespace through a
    veth pair to a sensor capturing on the other end: the same sessions and contacts as an
    offline scan; with the prefilter, it is replaced once DNS and sessions taught it pool
    addresses, and the kernel counters and the prefilter ratio are in /metrics.

    With the prefilter, share counts are not compared: a submit longer than one segment
    (equihash's 2.8 kB) continues in a segment that does not start like a message, which
    the filter passes only once the pool's address is known, and at top speed a whole
    session is over before that."""
    import subprocess

    from poolwatch_sensor.sensor import Sensor

    _need_live_tools()
    merged = tmp_path / "merged.pcap"
    merged.write_bytes(pieces[0].read_bytes()[:24] + b"".join(
        p.read_bytes()[24:] for p in pieces))
    ns, host, peer = f"pwsens{os.getpid() % 100000}", f"pws{os.getpid() % 100000}a", \
        f"pws{os.getpid() % 100000}b"

    def sh(*cmd: str) -> None:
        subprocess.run(cmd, check=True, capture_output=True)

    sh("ip", "netns", "add", ns)
    try:
        sh("ip", "link", "add", host, "type", "veth", "peer", "name", peer)
        sh("ip", "link", "set", peer, "netns", ns)
        sh("ip", "link", "set", host, "mtu", "9000", "up")
        sh("ip", "netns", "exec", ns, "ip", "link", "set", peer, "mtu", "9000", "up")
        (tmp_path / "key").write_text("k\n")
        cfg = load_config(write_toml(tmp_path / "s.toml", f"""
[sensor]
name = "edge-live"
state_directory = "state"
[capture]
interface = "{host}"
prefilter = {"true" if prefilter else "false"}
ring_mb = 8
block_kb = 1024
timeout_ms = 50
[api]
url = "http://127.0.0.1:{free_port()}"
key_file = "key"
drain_seconds = 0
[metrics]
port = 0
"""))
        sensor = Sensor(cfg)
        code = []
        started = time.monotonic()
        thread = threading.Thread(target=lambda: code.append(sensor.run()), daemon=True)
        thread.start()
        wait_for(lambda: "live" in sensor.stats and sensor.beats.get("live", 0) > started,
                 30, why="the capture to start")
        sh("ip", "netns", "exec", ns, "tcpreplay", "-i", peer, "--topspeed", str(merged))
        total = count_packets(merged)
        wait_for(lambda: sensor.stats.get("live", {}).get("kernel", {}).get("packets", 0)
                 and sensor.metrics.link_packets._value.get() >= total, 20,
                 why="the kernel counters")
        if prefilter:
            wait_for(lambda: sensor.metrics.prefilter_updates._value.get() >= 2, 20,
                     why="pool addresses learnt into the prefilter")
        sensor.stop()
        thread.join(30)
    finally:
        subprocess.run(["ip", "netns", "del", ns], capture_output=True, check=False)
        subprocess.run(["ip", "link", "del", host], capture_output=True, check=False)
    assert code == [0]
    spooled = [r for p in sorted(cfg.spool.directory.glob("*.json"))
               for r in json.loads(p.read_bytes())["records"]]
    assert _identity(spooled, not prefilter) == _identity(offline(pieces), not prefilter)
    assert all(r["evidence"].get("capture") in (None, f"live:{host}") for r in spooled)
    text = sensor.metrics.text()
    kernel = sensor.stats["live"]["kernel"]
    assert kernel["drops"] == 0
    assert f"poolwatch_sensor_kernel_packets_total {float(kernel['packets'])}" in text
    ratio = sensor.metrics.prefilter_ratio._value.get()
    if prefilter:  # the prefilter let the mining through, and not everything
        assert 0.2 < ratio < 0.9 and sensor.metrics.pool_addresses._value.get() > 0
    else:
        assert ratio > 0.95 and kernel["packets"] >= total


def test_flow_source_wired_in_counts_records_and_bad_datagrams(tmp_path):
    """The flows source in a whole sensor: NetFlow v5 records decoded and counted, a
    truncated datagram and an unknown version counted by reason, never fatal."""
    from poolwatch_sensor.sensor import Sensor

    (tmp_path / "key").write_text("k\n")
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    cfg = load_config(write_toml(tmp_path / "s.toml", f"""
[sensor]
state_directory = "state"
[flows]
host = "127.0.0.1"
port = {port}
[api]
url = "http://127.0.0.1:{free_port()}"
key = "k"
drain_seconds = 0
[metrics]
port = 0
"""))
    sensor = Sensor(cfg)
    code = []
    thread = threading.Thread(target=lambda: code.append(sensor.run()), daemon=True)
    thread.start()
    wait_for(lambda: "flows" in sensor.stats, 20, why="the collector")
    now = int(time.time())
    header = struct.pack("!HHIIIIBBH", 5, 2, 60_000, now, 0, 1, 0, 0, 0)
    record = struct.pack("!4s4s4sHHIIIIHHBBBBHHBBH", socket.inet_aton("10.0.0.5"),
                         socket.inet_aton("198.51.100.20"), bytes(4), 1, 2, 10, 900,
                         50_000, 59_000, 41414, 3333, 0, 0x1b, 6, 0, 0, 0, 24, 24, 0)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as tx:
        tx.sendto(header + record + record, ("127.0.0.1", port))
        tx.sendto(b"\x00\x09\x00\x01short", ("127.0.0.1", port))
        tx.sendto(b"\x00\x63" + bytes(30), ("127.0.0.1", port))
    m = sensor.metrics
    wait_for(lambda: m.flow_datagrams._value.get() == 3, 20, why="three datagrams")
    sensor.stop()
    thread.join(20)
    assert code == [0]
    assert m.flow_records._value.get() == 2
    assert m.flow_bad.labels("truncated")._value.get() == 1
    assert m.flow_bad.labels("unsupported_version")._value.get() == 1
