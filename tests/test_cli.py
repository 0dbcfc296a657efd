"""The ``poolwatch`` command as users see it: options, output formats, exit statuses.

Most tests run the command in-process with typer's CliRunner; a few run it as a real
subprocess to check what a shell sees (exit status, no Python traceback on stderr).
"""

from __future__ import annotations

import io
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from poolwatch import __version__
from poolwatch.cli import app

from .conftest import PCAPS, SAMPLES, oracle

# The fields docs/cli.md documents, in order.
DOCUMENTED_COLUMNS = [
    "community_id", "proto", "src_ip", "src_port", "dest_ip", "dest_port", "vlan", "inner_vlan",
    "first_seen", "last_seen", "duration_s", "pkts_toserver", "pkts_toclient", "bytes_toserver",
    "bytes_toclient", "tcp_flags_toserver", "tcp_flags_toclient", "end_reason",
]
FLOW_OPTIONS = ["--format", "-f", "--out", "-o", "--engine", "--idle-timeout", "--active-timeout",
                "--max-flows", "--community-id-seed", "--progress", "--no-progress", "--help"]
ISO_Z = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,9})?Z$")
KEY = ["proto", "src_ip", "src_port", "dest_ip", "dest_port", "vlan", "inner_vlan",
       "pkts_toserver", "pkts_toclient", "bytes_toserver", "bytes_toclient"]


def run_cli(*args: str | Path, env: dict[str, str] | None = None):
    """Run ``poolwatch ARGS`` in-process; stdout and stderr come back separately."""
    result = CliRunner(env=env).invoke(app, [str(a) for a in args], catch_exceptions=True)
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception  # a crash, not an exit status: show its traceback
    return result


def run_subprocess(*args: str | Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "poolwatch.cli", *map(str, args)],
                          capture_output=True, text=True, timeout=120)


def oracle_flows(captures=SAMPLES) -> list[tuple]:
    return sorted(tuple(f[k] for k in KEY) for c in captures for f in oracle(c)["flows"])


def frame_rows(frame: pd.DataFrame) -> list[tuple]:
    return sorted(tuple(r) for r in frame[KEY].itertuples(index=False))


# ---------------------------------------------------------------------------- options, help

def test_version():
    result = run_cli("--version")
    assert result.exit_code == 0
    assert result.stdout.strip() == f"poolwatch {__version__}"


def test_main_help_lists_options_and_commands():
    result = run_cli("--help", env={"COLUMNS": "80"})
    assert result.exit_code == 0
    for word in ("--verbose", "-v", "--quiet", "-q", "--version", "--help", "flows"):
        assert word in result.stdout, word


@pytest.mark.parametrize("columns", ["80", "200"])
def test_flows_help_mentions_every_option_in_full(columns):
    """Even at 80 columns (pipes, CI logs) no option name is cut short."""
    result = run_cli("flows", "--help", env={"COLUMNS": columns})
    assert result.exit_code == 0
    words = set(re.findall(r"--?[a-z][a-z-]*", result.stdout))
    for option in FLOW_OPTIONS:
        assert option in words, option
    assert "…" not in result.stdout
    for choice in ("table", "csv", "jsonl", "parquet", "fast", "dpkt", "scapy", "pyshark"):
        assert choice in result.stdout


def test_no_arguments_shows_usage():
    result = run_cli()
    assert result.exit_code in (0, 2)
    assert "flows" in result.stdout + result.stderr


# ---------------------------------------------------------------------------- formats on pcaps/

@pytest.fixture(scope="module")
def csv_frame():
    # the samples with a flow oracle (pcaps/behaviour/ holds captures labelled otherwise)
    result = run_cli("flows", *SAMPLES, "-f", "csv", "--no-progress")
    assert result.exit_code == 0, result.stderr
    return pd.read_csv(io.StringIO(result.stdout), keep_default_na=False), result


def test_csv_has_the_documented_columns_and_every_oracle_flow(csv_frame):
    frame, _ = csv_frame
    assert list(frame.columns) == DOCUMENTED_COLUMNS
    total = sum(len(oracle(c)["flows"]) for c in SAMPLES)
    assert len(frame) == total
    assert frame_rows(frame) == oracle_flows()


def test_csv_times_are_iso8601_utc_with_nanoseconds(csv_frame):
    frame, _ = csv_frame
    assert frame["first_seen"].map(lambda s: bool(ISO_Z.match(s))).all()
    assert frame["last_seen"].map(lambda s: bool(ISO_Z.match(s))).all()
    starts = sorted(pd.to_datetime(frame["first_seen"], utc=True).astype("int64"))
    assert starts == sorted(f["first_ts_ns"] for c in SAMPLES for f in oracle(c)["flows"])
    ends = sorted(pd.to_datetime(frame["last_seen"], utc=True).astype("int64"))
    assert ends == sorted(f["last_ts_ns"] for c in SAMPLES for f in oracle(c)["flows"])


def test_summary_goes_to_stderr(csv_frame):
    _, result = csv_frame
    n_files = len(SAMPLES)
    assert f"{n_files} file(s)" in result.stderr
    assert f"{sum(oracle(c)['packets'] for c in SAMPLES):,} packets" in result.stderr
    assert "file(s)" not in result.stdout
    assert "Traceback" not in result.stderr


def test_community_ids_match_the_communityid_package(csv_frame):
    communityid = pytest.importorskip("communityid")
    frame, _ = csv_frame
    cid = communityid.CommunityID(seed=0)
    checked = 0
    for row in frame.itertuples(index=False):
        if row.proto in (6, 17):
            ft = communityid.FlowTuple
            make = ft.make_tcp if row.proto == 6 else ft.make_udp
            tpl = make(row.src_ip, row.dest_ip, row.src_port, row.dest_port)
        elif (row.proto, row.src_port) in ((1, 8), (1, 0), (58, 128), (58, 129)):
            # echo request/reply, code 0 in the samples
            ft = communityid.FlowTuple
            make = ft.make_icmp if row.proto == 1 else ft.make_icmp6
            tpl = make(row.src_ip, row.dest_ip, row.src_port, 0)
        else:
            continue
        assert row.community_id == cid.calc(tpl), row
        checked += 1
    assert checked >= 30


def test_community_id_seed_option():
    communityid = pytest.importorskip("communityid")
    sample = PCAPS / "stratum_v1_plain_3333.pcap"
    result = run_cli("flows", sample, "-f", "csv", "--community-id-seed", "4242", "--no-progress")
    assert result.exit_code == 0
    frame = pd.read_csv(io.StringIO(result.stdout), keep_default_na=False)
    row = frame.iloc[0]
    tpl = communityid.FlowTuple.make_tcp(row.src_ip, row.dest_ip, int(row.src_port),
                                         int(row.dest_port))
    assert row.community_id == communityid.CommunityID(seed=4242).calc(tpl)
    assert row.community_id != communityid.CommunityID(seed=0).calc(tpl)


def test_jsonl_records(tmp_path):
    result = run_cli("flows", *SAMPLES, "-f", "jsonl", "--no-progress")
    assert result.exit_code == 0, result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) == sum(len(oracle(c)["flows"]) for c in SAMPLES)
    records = [json.loads(line) for line in lines]
    for rec in records:
        assert next(iter(rec)) == "event_type"
        assert rec["event_type"] == "flow"
        assert ISO_Z.match(rec["first_seen"]), rec["first_seen"]
        assert ISO_Z.match(rec["last_seen"]), rec["last_seen"]
        assert list(rec)[1:] == DOCUMENTED_COLUMNS
    frame = pd.DataFrame(records)
    assert frame_rows(frame) == oracle_flows()
    # the nanosecond capture keeps its nanosecond digits
    starts = set(pd.to_datetime(frame["first_seen"], utc=True).astype("int64"))
    assert starts == {f["first_ts_ns"] for c in SAMPLES for f in oracle(c)["flows"]}
    assert '\\/' not in result.stdout  # Community IDs are greppable as written


def test_parquet_reads_back(tmp_path):
    pq = pytest.importorskip("pyarrow.parquet")
    import pyarrow as pa

    out = tmp_path / "flows.parquet"
    result = run_cli("flows", *SAMPLES, "-f", "parquet", "--out", out, "--no-progress")
    assert result.exit_code == 0, result.stderr
    assert result.stdout == ""
    table = pq.read_table(out)
    assert table.column_names == DOCUMENTED_COLUMNS
    assert pa.types.is_timestamp(table.schema.field("first_seen").type)
    frame = table.to_pandas()
    assert len(frame) == sum(len(oracle(c)["flows"]) for c in SAMPLES)
    assert frame_rows(frame) == oracle_flows()


def test_table_prints():
    result = run_cli("flows", PCAPS / "stratum_v1_plain_3333.pcap", "--no-progress")
    assert result.exit_code == 0, result.stderr
    assert "10.0.0.5" in result.stdout
    assert "203.0.113.10:3333" in result.stdout
    result = run_cli("flows", *SAMPLES, "-f", "table", "--no-progress")
    assert result.exit_code == 0
    assert "proto" in result.stdout


@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
def test_out_writes_a_file_and_nothing_to_stdout(tmp_path, fmt):
    out = tmp_path / f"flows.{fmt}"
    result = run_cli("flows", PCAPS / "raw_ip.pcap", "-f", fmt, "-o", out, "--no-progress")
    assert result.exit_code == 0
    assert result.stdout == ""
    want = len(oracle(PCAPS / "raw_ip.pcap")["flows"])
    if fmt == "csv":
        assert len(pd.read_csv(out)) == want
    else:
        assert len(out.read_text().splitlines()) == want


@pytest.mark.parametrize("fmt", ["csv", "jsonl", "parquet"])
def test_no_flows_still_writes_the_out_file(tmp_path, fmt):
    """A capture without flows leaves a file scripts can open (CSV: the header)."""
    capture = tmp_path / "header_only.pcap"
    capture.write_bytes((PCAPS / "raw_ip.pcap").read_bytes()[:24])
    out = tmp_path / f"flows.{fmt}"
    result = run_cli("flows", capture, "-f", fmt, "-o", out, "--no-progress")
    assert result.exit_code == 0, result.stderr
    assert out.exists()
    if fmt == "csv":
        frame = pd.read_csv(out)
        assert list(frame.columns) == DOCUMENTED_COLUMNS and len(frame) == 0
    elif fmt == "jsonl":
        assert out.read_text() == ""
    else:
        import pyarrow.parquet as pq

        table = pq.read_table(out)
        assert table.num_rows == 0 and table.column_names == DOCUMENTED_COLUMNS


def test_out_overwrites_an_existing_file(tmp_path):
    out = tmp_path / "flows.csv"
    out.write_text("old content\n" * 1000)
    result = run_cli("flows", PCAPS / "raw_ip.pcap", "-f", "csv", "-o", out, "--no-progress")
    assert result.exit_code == 0
    assert "old content" not in out.read_text()


def test_timeouts_and_max_flows_options():
    sample = PCAPS / "benign_tls_and_dns.pcap"
    base = run_cli("flows", sample, "-f", "csv", "--no-progress")
    split = run_cli("flows", sample, "-f", "csv", "--no-progress", "--idle-timeout", "0.001",
                    "--active-timeout", "0.001", "--max-flows", "16")
    assert base.exit_code == split.exit_code == 0
    a = pd.read_csv(io.StringIO(base.stdout), keep_default_na=False)
    b = pd.read_csv(io.StringIO(split.stdout), keep_default_na=False)
    assert len(b) > len(a)  # flows were split by the 1 ms timeouts
    assert b[["pkts_toserver", "pkts_toclient"]].to_numpy().sum() == \
        a[["pkts_toserver", "pkts_toclient"]].to_numpy().sum()
    assert set(b["end_reason"]) <= {"eof", "idle", "active", "evicted"}
    assert set(b["end_reason"]) - {"eof"}


def test_quiet_hides_the_summary_but_not_errors(tmp_path):
    bad = tmp_path / "notes.txt"
    bad.write_text("not a capture\n")
    result = run_cli("-q", "flows", PCAPS / "raw_ip.pcap", bad, "-f", "csv", "--no-progress")
    assert result.exit_code == 1
    assert "packets" not in result.stderr
    assert str(bad) in result.stderr


def test_runs_in_one_process_do_not_leak_log_settings(tmp_path):
    """Logging is set up per run: a quiet run does not silence the warnings of the next."""
    cut = tmp_path / "cut.pcap"
    cut.write_bytes((PCAPS / "raw_ip.pcap").read_bytes()[:-5])
    first = run_cli("-q", "flows", cut, "-f", "csv", "--no-progress")
    second = run_cli("flows", cut, "-f", "csv", "--no-progress")
    assert first.exit_code == second.exit_code == 0
    assert "truncated" not in first.stderr
    assert "truncated" in second.stderr


def test_progress_bar_forced_on_does_not_touch_the_records():
    plain = run_cli("flows", *SAMPLES, "-f", "csv", "--no-progress")
    bar = run_cli("-v", "flows", *SAMPLES, "-f", "csv", "--progress")
    assert plain.exit_code == bar.exit_code == 0
    assert bar.stdout == plain.stdout
    assert "Traceback" not in bar.stderr


def test_reference_engine_through_the_cli():
    """The dpkt engine gives the same records (the engines' own tests go much further)."""
    pytest.importorskip("dpkt")
    fast = run_cli("flows", *SAMPLES, "-f", "csv", "--no-progress")
    ref = run_cli("flows", *SAMPLES, "-f", "csv", "--no-progress", "--engine", "dpkt")
    assert fast.exit_code == ref.exit_code == 0, ref.stderr
    assert ref.stdout == fast.stdout
    assert "engine dpkt" in ref.stderr


# ---------------------------------------------------------------------------- command-line errors

def test_parquet_without_out_is_a_usage_error():
    result = run_cli("flows", PCAPS / "raw_ip.pcap", "-f", "parquet", "--no-progress")
    assert result.exit_code == 2
    assert "--out" in result.stderr
    assert result.stdout == ""


@pytest.mark.parametrize("args", [["--engine", "warp"], ["--format", "xml"], ["-f", "XML"],
                                  ["--bogus-option"], ["--max-flows", "3"],
                                  ["--community-id-seed", "70000"], ["--idle-timeout", "0"]])
def test_bad_options_exit_2(args):
    result = run_cli("flows", PCAPS / "raw_ip.pcap", *args, "--no-progress")
    assert result.exit_code == 2, result.stdout + result.stderr
    assert result.stdout == ""
    assert "Traceback" not in result.stderr


def test_unknown_engine_names_the_choices():
    result = run_cli("flows", PCAPS / "raw_ip.pcap", "--engine", "warp")
    assert result.exit_code == 2
    assert "warp" in result.stderr and "fast" in result.stderr


def test_nonexistent_path_exits_2_naming_it(tmp_path):
    missing = tmp_path / "no_such_capture.pcap"
    result = run_cli("flows", PCAPS / "raw_ip.pcap", missing, "--no-progress")
    assert result.exit_code == 2
    assert str(missing) in result.stderr
    assert result.stdout == ""


def test_path_with_markup_characters_is_printed_verbatim(tmp_path):
    """Error messages carry paths as typed; "[/x]" in a name is not rich markup."""
    missing = tmp_path / "cap[/x][bold].pcap"
    result = run_cli("flows", missing, "--no-progress")
    assert result.exit_code == 2
    assert str(missing) in result.stderr
    (tmp_path / "a[").mkdir()
    bad = tmp_path / "a[" / "y][red].pcap"  # the path reads ".../a[/y][red].pcap"
    bad.write_text("hello")
    result = run_cli("flows", bad, "-f", "csv", "--no-progress")
    assert result.exit_code == 1
    assert str(bad) in result.stderr


def test_out_in_a_missing_directory_exits_2(tmp_path):
    out = tmp_path / "no" / "such" / "dir" / "flows.csv"
    result = run_cli("flows", PCAPS / "raw_ip.pcap", "-f", "csv", "-o", out, "--no-progress")
    assert result.exit_code == 2
    assert str(out) in result.stderr


def test_out_that_is_a_directory_exits_2(tmp_path):
    result = run_cli("flows", PCAPS / "raw_ip.pcap", "-f", "csv", "-o", tmp_path, "--no-progress")
    assert result.exit_code == 2
    assert str(tmp_path) in result.stderr


def test_empty_directory_exits_1_with_a_message(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    result = run_cli("flows", empty, "--no-progress")
    assert result.exit_code == 1
    assert "no pcap or pcapng files" in result.stderr
    assert str(empty) in result.stderr


def test_directory_without_captures_exits_1(tmp_path):
    (tmp_path / "README.txt").write_text("notes")
    (tmp_path / "x.expected.json").write_text("{}")
    result = run_cli("flows", tmp_path, "--no-progress")
    assert result.exit_code == 1
    assert "no pcap or pcapng files" in result.stderr


# ---------------------------------------------------------------------------- real processes

def test_subprocess_csv_on_the_samples():
    run = run_subprocess("flows", *SAMPLES, "-f", "csv", "--no-progress")
    assert run.returncode == 0, run.stderr
    assert "Traceback" not in run.stderr
    frame = pd.read_csv(io.StringIO(run.stdout), keep_default_na=False)
    assert list(frame.columns) == DOCUMENTED_COLUMNS
    assert frame_rows(frame) == oracle_flows()
    assert "packets" in run.stderr  # the summary


def test_subprocess_damaged_inputs_exit_1_without_traceback(tmp_path):
    notes = tmp_path / "notes.txt"
    notes.write_text("definitely not a capture")
    broken_zstd = tmp_path / "broken.pcap.zst"
    broken_zstd.write_bytes(b"\x28\xb5\x2f\xfd" + b"\x00garbage" * 20)
    good = PCAPS / "raw_ip.pcap"
    run = run_subprocess("flows", good, notes, broken_zstd, "-f", "csv", "--no-progress")
    assert run.returncode == 1
    assert "Traceback" not in run.stderr
    assert str(notes) in run.stderr and str(broken_zstd) in run.stderr
    frame = pd.read_csv(io.StringIO(run.stdout), keep_default_na=False)
    assert frame_rows(frame) == oracle_flows([good])
    # each problem is one line, whatever the path length and the terminal width
    for path in (notes, broken_zstd):
        lines = [ln for ln in run.stderr.splitlines() if str(path) in ln]
        assert len(lines) == 1 and lines[0].startswith("error"), run.stderr


def test_subprocess_usage_errors_exit_2():
    run = run_subprocess("flows", PCAPS / "raw_ip.pcap", "--engine", "warp")
    assert run.returncode == 2
    assert "Traceback" not in run.stderr
    run = run_subprocess("flows", "/definitely/not/here.pcap")
    assert run.returncode == 2
    assert "/definitely/not/here.pcap" in run.stderr
    assert "Traceback" not in run.stderr


def test_poolwatch_script_version():
    script = Path(sys.executable).with_name("poolwatch")
    if not script.exists():
        if os.environ.get("CI") == "true":  # .ci/run installs the package, script included
            pytest.fail("poolwatch script not installed next to this python")
        pytest.skip("poolwatch script not installed next to this python")
    run = subprocess.run([str(script), "--version"], capture_output=True, text=True, timeout=60)
    assert run.returncode == 0
    assert run.stdout.strip() == f"poolwatch {__version__}"


# ---------------------------------------------------------------------------- first run


@pytest.mark.parametrize("cold", [True, False])
def test_a_first_run_says_it_compiles_the_kernels(monkeypatch, cold):
    """A new install's first scan compiles the kernels (tens of seconds): the command says
    so before it starts instead of looking hung, and says nothing once they are cached."""
    import poolwatch.kernels
    from poolwatch.cli import COMPILE_NOTICE

    monkeypatch.setattr(poolwatch.kernels, "cold_cache", lambda *kernels: cold)
    for command in ("flows", "scan"):
        result = run_cli(command, PCAPS / "raw_ip.pcap", "-f", "jsonl", "--no-progress",
                         *(["--no-store"] if command == "scan" else []))
        assert result.exit_code == 0, result.stderr
        assert (COMPILE_NOTICE in result.stderr) is cold
        if command == "flows":
            assert result.stdout.count("\n") >= 1  # the records are there all the same
    quiet = run_cli("-q", "flows", PCAPS / "raw_ip.pcap", "-f", "jsonl", "--no-progress")
    assert COMPILE_NOTICE not in quiet.stderr


def test_cold_cache_reads_numbas_own_cache(tmp_path):
    """``cold_cache`` is true for a kernel numba would compile, false once numba has cached
    it (in a new process, as the next command runs), and false for what it cannot read."""
    code = (
        "import numpy as np\n"
        "from poolwatch.kernels import cold_cache\n"
        "from poolwatch.kernels.prefilter import table_contains\n"
        "print(cold_cache(table_contains), cold_cache(len), cold_cache())\n"
        "table_contains(np.zeros(8, np.uint64), np.uint64(3))\n"
        "print(cold_cache(table_contains))\n")
    env = {**os.environ, "NUMBA_CACHE_DIR": str(tmp_path)}
    runs = [subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                           env=env, timeout=300, check=True).stdout.split()
            for _ in range(2)]
    assert runs[0] == ["True", "False", "False", "False"]  # compiled and cached by the call
    assert runs[1] == ["False", "False", "False", "False"]  # the next process finds it


# The garbage collector during start-up (poolwatch.launch): off while the command loads, on
# again once it is set up, in the poolwatch process itself. The subprocess records what the
# collector's state was at three moments and writes it out before the command's os._exit.
_GC_PROBE = r"""
import gc, json, os, sys
seen = {}
import poolwatch.cli as cli
import poolwatch.scan as scan

real_open, real_feed, real_exit = cli._open_store, scan.DetectionPipeline.feed, os._exit

def open_store(db):
    seen["store_opened_with_gc"] = gc.isenabled()
    return real_open(db)

def feed(self, batch):
    seen.setdefault("scanning_with_gc", gc.isenabled())
    seen.setdefault("frozen_objects", gc.get_freeze_count())
    return real_feed(self, batch)

def exit_(code):
    seen["at_exit_gc"] = gc.isenabled()
    with open(os.environ["GC_PROBE_OUT"], "w") as f:
        json.dump(seen, f)
    real_exit(code)

cli._open_store, scan.DetectionPipeline.feed, os._exit = open_store, feed, exit_
gc.enable()  # as a fresh interpreter starts; the launcher must turn it off itself
from poolwatch.launch import main
sys.argv = ["poolwatch", *sys.argv[1:]]
main()
"""


def _gc_probe(tmp_path: Path, *args: str | Path) -> dict:
    out = tmp_path / "gc.json"
    run = subprocess.run([sys.executable, "-c", _GC_PROBE, *map(str, args)], check=False,
                         capture_output=True, text=True, timeout=300, cwd=tmp_path,
                         env={**os.environ, "GC_PROBE_OUT": str(out)})
    assert run.returncode == 0, run.stderr
    return json.loads(out.read_text())


def test_the_command_loads_without_the_garbage_collector_and_scans_with_it(tmp_path):
    seen = _gc_probe(tmp_path, "scan", PCAPS / "stratum" / "cryptonote_xmrig.pcap",
                     "--db", f"sqlite:///{tmp_path / 'store.db'}", "--no-progress",
                     "--format", "jsonl", "--out", tmp_path / "out.jsonl")
    assert seen["store_opened_with_gc"] is False  # set-up: SQLAlchemy loads without it
    assert seen["scanning_with_gc"] is True  # the scan's own work: collected as usual
    assert seen["frozen_objects"] > 10_000  # what the set-up loaded, out of its sight
    assert seen["at_exit_gc"] is True


def test_other_commands_run_with_the_garbage_collector(tmp_path):
    seen = _gc_probe(tmp_path, "db", "upgrade", "--db", f"sqlite:///{tmp_path / 'store.db'}")
    assert seen == {"at_exit_gc": True}  # on again at the command's start (not a scan)


def test_the_launcher_imports_the_command_without_collecting(tmp_path):
    """``poolwatch --version`` loads all of poolwatch.cli (numba, typer, rich, pydantic)
    and stops before any command runs: no collection at all on the way."""
    probe = ("import gc, sys\n"
             "runs = []\n"
             "gc.callbacks.append(lambda phase, info: runs.append(1) if phase == 'start' "
             "else None)\n"
             "import os\n"
             "real_exit = os._exit\n"
             "os._exit = lambda code: (print('collections', len(runs)), sys.stdout.flush(), "
             "real_exit(code))\n"
             "sys.argv = ['poolwatch', '--version']\n"
             "from poolwatch.launch import main\n"
             "main()\n")
    run = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                         timeout=120, cwd=tmp_path, check=False)
    assert run.returncode == 0, run.stderr
    assert "poolwatch " in run.stdout and "collections 0" in run.stdout, run.stdout
