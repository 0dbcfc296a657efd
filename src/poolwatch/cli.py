"""The ``poolwatch`` command. Thin: parses options, shows progress, writes records.

Exit status (documented in docs/cli.md):
  0  every input read to its end (warnings, such as a truncated last record, may be printed)
  1  some input could not be read, or not to its end; everything read before the damage
     was still processed and written
  2  the command line is wrong (unknown option, engine or format; no such path)
"""

from __future__ import annotations

import dataclasses
import datetime
import gc
import json
import contextlib
from contextlib import contextmanager
import logging
import os
import sys
import time
from enum import Enum
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import typer
from rich.console import Console
from rich.markup import escape

from . import __version__
from .errors import ConfigError, PoolwatchError
from .kernels import skip_blas_probe
from .flows import FLOW_COLUMNS, FlowSettings, flow_csv, flow_table
from .output import RecordWriter
from .records import FLOW
from .readers.source import expand_paths
from .scan import ScanSummary, scan_flows

app = typer.Typer(
    help="Find cryptocurrency mining in network traffic and say who is behind it.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    # Plain click help: rich's option table cuts long option names ("--community-id-s…")
    # at 80 columns, the width of pipes and most CI logs.
    rich_markup_mode=None,
)
err = Console(stderr=True)


def _error(message: str, status: int) -> typer.Exit:
    """Print ``error: message`` on one line (paths may hold rich markup such as "[/x]")."""
    err.print(f"[red]error[/red]: {escape(message)}", soft_wrap=True, highlight=False)
    return typer.Exit(status)


class _PlainStderr(logging.StreamHandler):
    """``warning: message``, one line per record, on whatever ``sys.stderr`` is now."""

    @property  # type: ignore[override]
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, value) -> None:
        pass

    def format(self, record: logging.LogRecord) -> str:
        text = f"{record.levelname.lower()}: {record.getMessage()}"
        if record.exc_info:
            text += "\n" + logging.Formatter().formatException(record.exc_info)
        return text


log = logging.getLogger("poolwatch")
OUTPUT_SLICE = 32_768


class Engine(str, Enum):
    fast = "fast"
    dpkt = "dpkt"
    scapy = "scapy"
    pyshark = "pyshark"


class Format(str, Enum):
    table = "table"
    csv = "csv"
    jsonl = "jsonl"
    parquet = "parquet"


# Options that every scanning command takes, declared once.
SubscribersOption = Annotated[list[Path] | None, typer.Option(
    "--subscribers", help="ISP record files or directories (registry, static assignments, "
                          "RADIUS detail, DHCP leases, CGNAT logs, meters; docs/linking.md): "
                          "link each detection to its subscriber and entity; repeatable.")]
PathsArg = Annotated[list[Path], typer.Argument(
    help="pcap/pcapng files (gzip, xz or zstd compressed too) or directories, read recursively.",
    show_default=False)]
OutOption = Annotated[Path | None, typer.Option(
    "--out", "-o", help="Write records here instead of standard output.")]
EngineOption = Annotated[Engine, typer.Option(
    help="fast (default) is poolwatch's numba engine; dpkt, scapy and pyshark (tshark) are "
         "slow reference engines for cross-checking.")]
ProgressOption = Annotated[bool | None, typer.Option(
    "--progress/--no-progress", help="Progress bar on stderr (default: when stderr is a terminal).",
    show_default=False)]
DbOption = Annotated[str | None, typer.Option(
    "--db", metavar="URL",
    help="the lead store (docs/store.md): sqlite:///FILE or postgresql://USER@HOST/DB "
         "(default: $POOLWATCH_DB, else sqlite:///poolwatch.db in this directory).",
    show_default=False)]


def _version(value: bool) -> None:
    if value:
        typer.echo(f"poolwatch {__version__}")
        raise typer.Exit()


@app.callback()
def main_options(
    ctx: typer.Context,
    verbose: Annotated[int, typer.Option("--verbose", "-v", count=True,
                                         help="More log output (-v info, -vv debug).")] = 0,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Only errors on stderr.")] = False,
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True,
                                          help="Print the version and exit.")] = False,
) -> None:
    level = logging.ERROR if quiet else (logging.WARNING, logging.INFO, logging.DEBUG)[min(verbose, 2)]
    # Rich's handler wraps messages at 80 columns when stderr is not a terminal, splitting
    # "file at offset N: reason" over lines; logs and scripts get one line per message.
    # force: a second run in the same process (tests, notebooks) sets its own level.
    if err.is_terminal:
        from rich.logging import RichHandler  # here: scripts and services log plain lines

        handler: logging.Handler = RichHandler(console=err, show_path=False, show_time=False)
    else:
        handler = _PlainStderr()
    logging.basicConfig(level=level, format="%(message)s", handlers=[handler], force=True)
    if ctx.invoked_subcommand not in _GC_AFTER_SETUP:
        _collect_garbage_again()


def _progress(enabled: bool, total_files: int):
    """A rich progress bar on stderr with files, packets and packet rate."""
    if not enabled:
        return None, None
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
    )

    progress = Progress(
        TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
        TextColumn("files · {task.fields[packets]:,} packets · {task.fields[rate]:,.0f} pkt/s"),
        TimeElapsedColumn(), console=err, transient=True,
    )
    task = progress.add_task("scanning", total=total_files, packets=0, rate=0.0)

    def hook(summary: ScanSummary, file_report) -> None:
        elapsed = max(time.perf_counter() - summary.started, 1e-9)
        done = sum(1 for _ in summary.files) - (1 if file_report is not None else 0)
        progress.update(task, completed=done, packets=summary.packets,
                        rate=summary.packets / elapsed)

    return progress, hook


def _summary_lines(summary: ScanSummary, found: str) -> list[str]:
    rate = summary.packets / summary.elapsed_s if summary.elapsed_s else 0.0
    lines = [
        f"{len(summary.files)} file(s), {summary.packets:,} packets, "
        f"{summary.bytes / 1e6:,.1f} MB, {found} in {summary.elapsed_s:.2f} s "
        f"({rate:,.0f} pkt/s, engine {summary.engine})"
    ]
    if summary.not_ip:
        lines.append(f"non-IP frames: {summary.not_ip:,}")
    weirds = summary.weirds
    if weirds.total():
        lines.append("weird: " + ", ".join(f"{k} {v:,}" for k, v in sorted(weirds.counts.items())))
    if summary.evicted_flows:
        lines.append(f"flow table full: {summary.evicted_flows:,} flows closed early (raise --max-flows)")
    failed = summary.failed_files
    if failed:
        lines.append(f"[red]{len(failed)} file(s) could not be read to the end[/red] (errors above); "
                     "what was read before the damage is in the output")
    return lines


def _table_view(frame):
    """The flow columns that fit a terminal."""
    import pandas as pd

    return pd.DataFrame({
        "proto": frame["proto"],
        "src": frame["src_ip"] + ":" + frame["src_port"].astype(str),
        "dest": frame["dest_ip"] + ":" + frame["dest_port"].astype(str),
        "vlan": frame["vlan"],
        "first_seen": frame["first_seen"],
        "secs": frame["duration_s"],
        "pkts →/←": frame["pkts_toserver"].astype(str) + "/" + frame["pkts_toclient"].astype(str),
        "bytes →/←": frame["bytes_toserver"].astype(str) + "/" + frame["bytes_toclient"].astype(str),
        "flags →/←": frame["tcp_flags_toserver"] + "/" + frame["tcp_flags_toclient"],
        "bytes": frame["bytes_toserver"] + frame["bytes_toclient"],
    })


@app.command()
def flows(
    paths: PathsArg,
    fmt: Annotated[Format, typer.Option("--format", "-f",
                                        help="table for people; csv, jsonl or parquet for tools.")] = Format.table,
    out: OutOption = None,
    engine: EngineOption = Engine.fast,
    idle_timeout: Annotated[float, typer.Option(help="Close a flow after this many seconds without a packet.",
                                                min=0.001)] = 120.0,
    active_timeout: Annotated[float, typer.Option(help="Split a flow into a new record after this many seconds.",
                                                  min=0.001)] = 1800.0,
    max_flows: Annotated[int, typer.Option(help="Most flows held open at once; beyond it the least recently "
                                                "seen are closed early (bounds memory).", min=16)] = 1 << 20,
    community_id_seed: Annotated[int, typer.Option(help="Community ID seed (0 unless your Zeek/Suricata use another).",
                                                   min=0, max=65535)] = 0,
    progress: ProgressOption = None,
) -> None:
    """Write one record per bidirectional flow: 5-tuple, VLAN, times, packets and bytes each
    way, TCP flags seen, and the Community ID that Zeek and Suricata emit."""
    files = _input_files(paths, out)
    writer = _writer(fmt, out, "flow")
    try:
        settings = FlowSettings(idle_timeout_s=idle_timeout, active_timeout_s=active_timeout,
                                max_flows=max_flows)
    except ValueError as exc:
        raise _error(str(exc), 2) from None
    summary = ScanSummary(engine=engine.value)
    with _scanning(progress, len(files)) as hook:
        for closed in scan_flows(files, engine=engine.value, settings=settings, summary=summary,
                                 on_progress=hook):
            closed = closed[np.argsort(closed["first_ts_ns"], kind="stable")]
            # In slices: the flows still open at the end come out at once, and their text
            # form costs several times the records' own memory.
            for start in range(0, len(closed), OUTPUT_SLICE):
                part = closed[start : start + OUTPUT_SLICE]
                if fmt is Format.csv:  # the fast path: straight to bytes
                    writer.write_csv_lines(flow_csv(part, community_id_seed), FLOW_COLUMNS)
                else:
                    writer.write(flow_table(part, seed=community_id_seed))
        if writer.rows == 0:  # no flows: the output still gets its columns (CSV header...)
            if fmt is Format.csv:
                writer.write_csv_lines(b"", FLOW_COLUMNS)
            else:
                writer.write(flow_table(np.zeros(0, FLOW), seed=community_id_seed))
    writer.close(console=Console(width=None if sys.stdout.isatty() else 160), sort_by="bytes",
                 view=_table_view)
    summary.elapsed_s = time.perf_counter() - summary.started  # output included
    _finish(summary, f"{summary.flows:,} flows")


@contextmanager
def _scanning(progress: bool | None, total_files: int):
    """The progress bar around a scan (yields its hook), and library errors as exit codes."""
    show = sys.stderr.isatty() if progress is None else progress
    _compile_notice()
    bar, hook = _progress(show, total_files)
    try:
        if bar:
            bar.start()
        yield hook
    except ConfigError as exc:
        raise _error(str(exc), 2) from None
    except PoolwatchError as exc:
        raise _error(str(exc), 1) from None
    finally:
        if bar:
            bar.stop()


COMPILE_NOTICE = ("compiling poolwatch's packet kernels for this machine: the first run after "
                  "an install or upgrade takes tens of seconds more, later runs reuse them")


def _compile_notice() -> None:
    """Say so before a first run compiles the kernels, instead of sitting silent."""
    from .kernels import capture_records, cold_cache, headers

    if (logging.getLogger().level <= logging.WARNING
            and cold_cache(capture_records.walk_pcap, headers.tally_packets)):
        err.print(COMPILE_NOTICE, highlight=False, soft_wrap=True)


def _input_files(paths: list[Path], out: Path | None) -> list[Path]:
    """The capture files under ``paths``; exit 2 for a wrong path or --out, 1 for none."""
    missing = [str(p) for p in paths if not p.exists()]
    if missing:
        raise _error(f"no such file or directory: {', '.join(missing)}", 2)
    if out is not None and (out.is_dir() or not out.parent.is_dir()):
        what = "is a directory" if out.is_dir() else f"no such directory {out.parent}"
        raise _error(f"cannot write --out {out}: {what}", 2)
    files = list(expand_paths(paths))
    if not files:
        raise _error(f"no pcap or pcapng files under {', '.join(map(str, paths))}", 1)
    return files


def _writer(fmt: Format, out: Path | None, event_type: str) -> RecordWriter:
    try:
        return RecordWriter(fmt.value, out, event_type=event_type)
    except ValueError as exc:
        raise _error(str(exc), 2) from None


def _finish(summary: ScanSummary, found: str) -> None:
    """The summary on stderr, and exit status 1 when a file could not be read to its end."""
    if logging.getLogger().level <= logging.WARNING:
        for line in _summary_lines(summary, found):
            err.print(line, highlight=False, soft_wrap=True)
    if summary.failed_files:
        raise typer.Exit(1)


def _human_rate(hs: float | None) -> str:
    if hs is None:
        return "?"
    for unit, scale in (("EH/s", 1e18), ("PH/s", 1e15), ("TH/s", 1e12), ("GH/s", 1e9),
                        ("MH/s", 1e6), ("kH/s", 1e3)):
        if hs >= scale:
            return f"{hs / scale:.2f} {unit}"
    return f"{hs:.0f} H/s"


def _detections_view(frame):
    """The session and contact columns that fit a terminal."""
    import pandas as pd

    contact = frame["event_type"] == "pool_contact"

    def power(row) -> str:
        if pd.isna(row["power_w"]):
            return "?" if row["event_type"] == "stratum_session" else ""
        return f"{row['power_w']:.0f} W ({row['power_w_low']:.0f}–{row['power_w_high']:.0f})"

    def what(row) -> str:
        if row["event_type"] == "pool_contact":
            return f"contact {row['score']:.2f} " + "+".join(json.loads(row["via"]))
        return row["dialect"]

    def shares(row) -> str:
        if row["event_type"] == "pool_contact" or pd.isna(row["shares_accepted"]):
            return ""
        return f"{int(row['shares_accepted'])}/{int(row['shares_rejected'])}"

    return pd.DataFrame({
        "miner": frame["src_ip"] + ":" + frame["src_port"].astype(str),
        "pool": frame["dest_ip"] + ":" + frame["dest_port"].astype(str),
        "pool host": frame["pool_host"].fillna(""),
        "seen as": [what(r) for _, r in frame.iterrows()],
        "coin": (frame["coin"].fillna("?") + "/" + frame["algorithm"].fillna("?")).where(
            ~contact, ""),
        "worker": frame["worker"].fillna(""),
        "shares ok/rej": [shares(r) for _, r in frame.iterrows()],
        "hashrate": [("" if c else _human_rate(None if pd.isna(v) else v))
                     for v, c in zip(frame["hashrate_hs"], contact)],
        "power": [power(r) for _, r in frame.iterrows()],
        "first_seen": frame["first_seen"],
        "shares": frame["shares_submitted"].fillna(0),
    })


@app.command()
def scan(
    paths: PathsArg,
    fmt: Annotated[Format, typer.Option("--format", "-f",
                                        help="table for people; jsonl, csv or parquet for tools.")] = Format.table,
    out: OutOption = None,
    engine: EngineOption = Engine.fast,
    progress: ProgressOption = None,
    contacts: Annotated[bool, typer.Option(
        "--contacts/--no-contacts",
        help="also report pool contacts: flows attributed to mining by DNS, TLS names, pool "
             "addresses, behaviour, Stratum V2's handshake or probes.")] = True,
    probes: Annotated[Path | None, typer.Option(
        "--probes", help="results of `poolwatch probe --format jsonl` to weigh contacts with."
    )] = None,
    contact_setting: Annotated[list[str] | None, typer.Option(
        "--contact-setting", metavar="NAME=VALUE",
        help="change a contact weight or threshold (docs/contacts.md); repeatable.")] = None,
    block_times: Annotated[list[str] | None, typer.Option(
        "--block-times", metavar="COIN=FILE",
        help="a coin's block times (one per line, Unix seconds or ISO 8601) for the behaviour "
             "model: pool job pushes that follow blocks are evidence (docs/behaviour.md); "
             "repeatable, up to 4 coins.")] = None,
    subscribers: SubscribersOption = None,
    db: DbOption = None,
    no_store: Annotated[bool, typer.Option(
        "--no-store", help="do not write the records into the lead store.")] = False,
) -> None:
    """Find mining: Stratum sessions in every dialect (who mined, to which pool, in which
    dialect and coin, with what hashrate and power draw) and pool contacts (flows attributed
    to mining without reading Stratum), each with its evidence."""
    from .detect.contacts import ContactSettings
    from .detect.records import PoolContact, StratumSession
    from .scan import scan_detections

    files = _input_files(paths, out)
    settings = None
    if contact_setting:
        pairs = {}
        for item in contact_setting:
            name, sep, value = item.partition("=")
            if not sep:
                raise _error(f"--contact-setting {item!r}: expected NAME=VALUE", 2)
            pairs[name.strip()] = value.strip()
        try:
            settings = ContactSettings.from_mapping(pairs)
        except ValueError as exc:
            raise _error(f"--contact-setting: {exc}", 2) from None
    probe_results = None
    if probes is not None:
        from .detect.probes import read_probe_results

        try:
            probe_results = read_probe_results(probes)
        except (OSError, ValueError) as exc:
            raise _error(str(exc), 2) from None
    series = None
    if block_times:
        from .detect.behaviour import read_block_times

        series = {}
        for item in block_times:
            coin, sep, file = item.partition("=")
            if not sep or not coin.strip() or not file.strip():
                raise _error(f"--block-times {item!r}: expected COIN=FILE", 2)
            try:
                series[coin.strip().upper()] = read_block_times(file.strip())
            except PoolwatchError as exc:
                raise _error(f"--block-times: {exc}", 2) from None
        if len(series) > 4:
            raise _error("--block-times: at most 4 coins", 2)
    isp = _isp_records(subscribers) if subscribers else None
    resolver = isp.resolver() if isp is not None else None
    sink = None if no_store else _StoreSink(_open_store(db))
    _freeze_setup()
    writer = _writer(fmt, out, "stratum_session")
    summary = ScanSummary(engine=engine.value)
    names = ("event_type", *dict.fromkeys(
        [f.name for f in dataclasses.fields(StratumSession)]
        + [f.name for f in dataclasses.fields(PoolContact)]))
    kinds = {**StratumSession.KINDS, **PoolContact.KINDS}
    if resolver is not None:
        from .leads import Detection, link_detections, link_fields

        names += LINK_FIELDS
        kinds.update(LINK_KINDS)
    with _scanning(progress, len(files)) as hook:
        for record in scan_detections(files, engine=engine.value, summary=summary,
                                      on_progress=sink.hook(hook) if sink else hook,
                                      contacts=contacts, contact_settings=settings,
                                      probes=probe_results, block_times=series,
                                      hashes=sink.hashes if sink else None):
            row = record.as_dict()
            if resolver is not None:
                found = [Detection.of(row)]
                link_detections(found, resolver)
                row.update(link_fields(found[0].link))
            writer.write_events([row], names, kinds)
            if sink is not None:
                sink.add(row)
        if writer.rows == 0 and fmt is not Format.jsonl:  # still a header / schema
            writer.write_events([], names, kinds)
    writer.close(console=Console(width=None if sys.stdout.isatty() else 200), sort_by="shares",
                 view=_detections_view)
    if sink is not None:
        sink.close([f.path for f in summary.files])
    summary.elapsed_s = time.perf_counter() - summary.started
    found = f"{summary.sessions:,} mining session(s)"
    if contacts:
        found += f", {summary.contacts:,} pool contact(s)"
    if sink is not None and logging.getLogger().level <= logging.WARNING:
        err.print(sink.summary(), highlight=False, soft_wrap=True)
    if sink is not None and sink.error:
        err.print(f"[red]error[/red]: {escape(sink.error)}", soft_wrap=True, highlight=False)
        _finish(summary, found)
        raise typer.Exit(1)
    _finish(summary, found)


def _freeze_setup() -> None:
    """Everything loaded so far (modules, the fingerprints every detector shares, ISP
    records) lives as long as the command: moved out of the garbage collector's sight, so
    that its full collections during the scan do not walk it again (gc.freeze). Only in
    the ``poolwatch`` process itself (:func:`main`), not where the app is called in-process
    (tests, embedding programs), whose heap is not ours to freeze.

    The collector was off during the set-up (launch.py), so the few cycles it left
    unreachable (1-5 thousand objects, measured on the bundled samples with and without ISP
    records) are frozen with the rest and kept until the command exits: a full collection
    first would cost about 0.1 s, as much as the start-up gains."""
    if not _OWN_PROCESS:
        return
    from .fingerprints import load_fingerprints

    load_fingerprints()
    gc.freeze()
    _collect_garbage_again()


# Commands that call _freeze_setup once they are set up: the garbage collector, off while
# the command loads (launch.py), comes back there; for every other command, at its start.
_GC_AFTER_SETUP = frozenset({"scan"})


def _collect_garbage_again() -> None:
    """The garbage collector on again after the start-up (:mod:`poolwatch.launch` and
    :func:`main` turn it off), in the ``poolwatch`` process itself only."""
    if _OWN_PROCESS:
        gc.enable()


# ------------------------------------------------------------------------------ store
def _open_store(db: str | None):
    """The lead store for scan and leads: a SQLite file is created (at the latest schema)
    when missing; any other store must be at the latest schema already (exit 2 saying to
    run `poolwatch db upgrade`), and so must a bad URL or a server that does not answer."""
    from .store import Store, StoreError, resolve_url

    url = resolve_url(db)
    try:
        return Store.open(url, create=url.startswith("sqlite"))
    except StoreError as exc:
        hint = "" if db or os.environ.get("POOLWATCH_DB") else " (--no-store: scan without one)"
        raise _error(f"{exc}{hint}", 2) from None


class _StoreSink:
    """``scan`` into the store: records as they come (a transaction per 500 records or per
    second, whichever is first), then a row per capture scanned, keyed by its SHA-256.
    Every capture is hashed once, by the scan's own :class:`CaptureHashes` (from the
    reader's windows, in the background), detections or not.
    A store that fails mid-scan stops storing; the scan and its output go on (exit 1)."""

    FLUSH_RECORDS = 500
    FLUSH_SECONDS = 1.0

    def __init__(self, store) -> None:
        from .scan import CaptureHashes

        self.store = store
        self.pending: list[dict] = []
        self.flushed_at = time.monotonic()
        self.inserted = self.duplicates = self.captures = 0
        self.sha: dict[str, str] = {}  # capture path -> SHA-256 (from the records)
        self.span: dict[str, list[int]] = {}  # capture path -> [first, last] ns of detections
        self.hashes = CaptureHashes(every_capture=True)  # the scan's too: one hash a file
        self.error: str | None = None

    def hook(self, inner):
        def on_progress(summary, report) -> None:
            if inner is not None:
                inner(summary, report)
            if report is None and summary.files:
                self.hashes.end(summary.files[-1].path)  # the scan has left this file
        return on_progress

    def add(self, row: dict) -> None:
        ev = row.get("evidence") or {}
        path = ev.get("capture")
        if path:
            if ev.get("capture_sha256"):
                self.sha[path] = ev["capture_sha256"]
            first, last = row.get("first_seen"), row.get("last_seen") or row.get("first_seen")
            if isinstance(first, int) and isinstance(last, int):
                span = self.span.setdefault(path, [first, last])
                span[0], span[1] = min(span[0], first), max(span[1], last)
        self.pending.append(row)
        if (len(self.pending) >= self.FLUSH_RECORDS
                or time.monotonic() - self.flushed_at >= self.FLUSH_SECONDS):
            self.flush()

    def flush(self) -> None:
        from sqlalchemy.exc import SQLAlchemyError

        from .store import StoreError

        if self.pending and self.error is None:
            try:
                result = self.store.ingest(self.pending, source="scan")
            except (StoreError, SQLAlchemyError, ValueError) as exc:
                self.error = (f"store {self.store.url}: {str(exc).splitlines()[0]}; from "
                              f"there on, records were not stored")
            else:
                self.inserted += result.inserted
                self.duplicates += result.duplicates
        self.pending = []
        self.flushed_at = time.monotonic()

    def close(self, paths: list[str]) -> None:
        from sqlalchemy.exc import SQLAlchemyError

        from .store import StoreError

        self.flush()
        try:
            for path in dict.fromkeys(paths):
                try:
                    sha = self.sha.get(path) or self.hashes.get(path)
                    size = os.path.getsize(path)
                except OSError:
                    continue  # gone since: nothing to key it by
                if self.error is None:
                    first, last = self.span.get(path, (None, None))
                    self.store.add_capture(sha, path, size, first, last)
                    self.captures += 1
        except (StoreError, SQLAlchemyError, ValueError) as exc:
            self.error = f"store {self.store.url}: {str(exc).splitlines()[0]}"
        finally:
            self.hashes.close()
            self.store.close()

    def summary(self) -> str:
        return (f"store {self.store.url}: {self.inserted:,} new detection(s), "
                f"{self.duplicates:,} already stored, {self.captures:,} capture(s) recorded")


# ------------------------------------------------------------------------------ leads
LINK_FIELDS = ("link_status", "subscriber_id", "entity_id", "link_confidence", "link_reasons",
               "link_candidates")
LINK_KINDS = {"link_confidence": "float", "link_reasons": "json", "link_candidates": "json"}


def _isp_records(paths: list[Path]):
    """ISP record files loaded; bad rows listed on stderr (file:line: why), never fatal."""
    from .link.inputs import load_isp_records

    try:
        isp = load_isp_records(paths)
    except PoolwatchError as exc:
        raise _error(str(exc), 2) from None
    for report in isp.reports:
        for issue in report.issues[:20]:
            err.print(f"[yellow]warning[/yellow]: {escape(str(issue))}", soft_wrap=True,
                      highlight=False)
        if len(report.issues) > 20:
            err.print(f"[yellow]warning[/yellow]: {escape(report.path)}: "
                      f"{len(report.issues) - 20} more issue(s)", highlight=False)
    for path, why in isp.skipped_files:
        err.print(f"note: {escape(path)}: skipped ({why})", highlight=False)
    err.print(f"ISP records: {escape(isp.summary()) or 'none'}", highlight=False)
    return isp


def _detections_in(paths: list[Path], summary: ScanSummary, progress) -> list[dict]:
    """Detection records from scan output (.jsonl/.json) and captures (scanned now)."""
    from .scan import scan_detections

    records: list[dict] = []
    captures: list[Path] = []
    for p in paths:
        if p.is_file() and p.suffix.lower() in (".jsonl", ".json", ".ndjson"):
            with p.open(encoding="utf-8") as fh:
                for lineno, line in enumerate(fh, 1):
                    if not line.strip():
                        continue
                    try:
                        row = json.loads(line)
                    except json.JSONDecodeError as exc:
                        raise _error(f"{p}:{lineno}: not JSON ({exc.msg})", 2) from None
                    if isinstance(row, dict) and row.get("event_type") in (
                            "stratum_session", "pool_contact"):
                        records.append(row)
        else:
            captures.append(p)
    if captures:
        files = _input_files(captures, None)
        with _scanning(progress, len(files)) as hook:
            records += [r.as_dict() for r in scan_detections(files, summary=summary,
                                                             on_progress=hook)]
    return records


@app.command()
def leads(
    paths: Annotated[list[Path] | None, typer.Argument(
        help="captures (scanned now) or JSON lines written by `poolwatch scan -f jsonl`; "
             "optional with --db.", show_default=False)] = None,
    subscribers: SubscribersOption = None,
    week: Annotated[str | None, typer.Option(
        "--week", help="first day (UTC) of the reporting week, YYYY-MM-DD (default: the Monday "
                       "of the latest detection's week).")] = None,
    fmt: Annotated[Format, typer.Option("--format", "-f",
                                        help="table for people; jsonl, csv or parquet for tools.")] = Format.table,
    out: OutOption = None,
    progress: ProgressOption = None,
    db: Annotated[str | None, typer.Option(
        "--db", metavar="URL",
        help="also take every detection stored in this lead store (docs/store.md); the "
             "detections of PATHS are stored there and the week's leads saved.",
        show_default=False)] = None,
    no_store: Annotated[bool, typer.Option(
        "--no-store", help="with --db: only read the store, write nothing to it.")] = False,
) -> None:
    """Leads: every session and pool contact linked to the subscriber and entity behind it
    (ISP records: registry, static assignments, RADIUS, DHCP, CGNAT, meters), one record per
    entity with hashrate, power, status for the week and confidence, with reasons."""
    from .leads import FIELDS, KINDS, build_leads
    from .link.inputs import IspRecords

    paths = paths or []
    if not paths and db is None:
        raise _error("give captures or scan output (JSON lines), or --db URL to take the "
                     "detections of a lead store", 2)
    missing = [str(p) for p in paths if not p.exists()]
    if missing:
        raise _error(f"no such file or directory: {', '.join(missing)}", 2)
    week_start = None
    if week is not None:
        try:
            week_start = datetime.datetime.fromisoformat(week).replace(
                tzinfo=datetime.timezone.utc).timestamp()
        except ValueError:
            raise _error(f"--week {week!r}: expected a date, YYYY-MM-DD", 2) from None
    store = _open_store(db) if db is not None else None
    isp = _isp_records(subscribers) if subscribers else IspRecords()
    summary = ScanSummary(engine="fast")
    records = _detections_in(paths, summary, progress)
    writer = _writer(fmt, out, "lead")
    if store is None:
        rows, taken = build_leads(records, isp, week_start=week_start), len(records)
    else:
        rows, taken = _leads_from_store(store, records, isp, week_start, save=not no_store)
    writer.write_events(rows, ("event_type", *FIELDS), KINDS)
    writer.close(console=Console(width=None if sys.stdout.isatty() else 200), view=_leads_view)
    attributed = sum(1 for r in rows if r["entity_id"])
    err.print(f"{taken:,} detection(s) -> {len(rows):,} lead(s), {attributed:,} "
              f"attributed to an entity", highlight=False)


def _leads_from_store(store, records: list[dict], isp, week_start: float | None, *,
                      save: bool) -> tuple[list[dict], int]:
    """``leads --db``: leads of the stored detections and those of the paths, and how many
    detections that was. The paths' detections are stored and the week's leads saved,
    unless --no-store."""
    from sqlalchemy.exc import SQLAlchemyError

    from .store import StoreError
    from .store.db import detection_key

    try:
        with store:
            if save:
                if records:
                    store.ingest(records, source="leads")
                rows = store.compute_leads(isp, week_start)
                taken = store.counts()["detections"]
            else:
                known = {detection_key(r) for r in store.records()}
                extra = [r for r in records if detection_key(r) not in known]
                taken = len(known) + len(extra)
                rows = store.compute_leads(isp, week_start, save=False, extra=extra)
    except ValueError as exc:
        raise _error(str(exc), 2) from None
    except (StoreError, SQLAlchemyError) as exc:
        raise _error(f"store {store.url}: {str(exc).splitlines()[0]}", 1) from None
    if save and rows:
        week = datetime.datetime.fromtimestamp(rows[0]["week_start"] / 1e9,
                                               datetime.timezone.utc)
        err.print(f"store {store.url}: {len(rows):,} lead(s) of the week of {week:%Y-%m-%d} "
                  "saved", highlight=False, soft_wrap=True)
    drop = ("week_start", "computed_at")
    return [{k: v for k, v in r.items() if k not in drop} for r in rows], taken


def _leads_view(frame):
    """The columns a person reads first; unattributed leads by their address."""
    out = frame.copy()

    def first_ip(ips) -> str:
        ips = json.loads(ips) if isinstance(ips, str) else ips
        return ips[0]["ip"] if isinstance(ips, list) and ips else ""

    out["entity"] = [name if isinstance(name, str) else f"(unattributed) {first_ip(ips)}"
                     for name, ips in zip(out["entity_name"], out["src_ips"])]
    keep = [c for c in ("entity", "entity_type", "region", "sessions", "contacts",
                        "hashrate_hs", "power_w", "status", "confidence", "datacenter",
                        "meter_ratio") if c in out.columns]
    return out[keep]


# ------------------------------------------------------------------------------ db
db_app = typer.Typer(help="The lead store: schema migrations and what it holds (docs/store.md).",
                     no_args_is_help=True)
app.add_typer(db_app, name="db")


@db_app.command("upgrade")
def db_upgrade(db: DbOption = None) -> None:
    """Bring the store's schema to the latest migration (creates a SQLite file, or the
    tables of an empty PostgreSQL database or schema)."""
    from .store import Store, StoreError

    try:
        store = Store.open(db, create=True, check=False)
        with store:
            before = store.revision()
            if not store.created:
                store.upgrade()
            after = store.revision()
    except StoreError as exc:
        raise _error(str(exc), 2) from None
    if store.created:
        typer.echo(f"{store.url}: created at schema revision {after} (latest)")
    elif before == after:
        typer.echo(f"{store.url}: already at schema revision {after} (latest)")
    else:
        typer.echo(f"{store.url}: schema revision {before or 'none'} -> {after} (latest)")


@db_app.command("status")
def db_status(db: DbOption = None) -> None:
    """The store's URL, schema revision and row counts; exit 1 when the schema is not the
    latest (`poolwatch db upgrade`)."""
    from .store import Store, StoreError
    from .store.db import head_revision  # looked up now: tests stand in a newer head

    try:
        store = Store.open(db, create=False, check=False)
        with store:
            current, head = store.revision(), head_revision()
            counts = store.counts() if current == head else {}
    except StoreError as exc:
        raise _error(str(exc), 2) from None
    typer.echo(f"store: {store.url} ({store.backend})")
    typer.echo(f"schema: {current or 'none'}, latest {head}"
               + ("" if current == head else " - run `poolwatch db upgrade`"))
    for table, n in counts.items():
        typer.echo(f"{table}: {n:,}")
    if current != head:
        raise typer.Exit(1)


# ------------------------------------------------------------------------------ keys, serve
keys_app = typer.Typer(help="API keys of the lead service (docs/api.md).", no_args_is_help=True)
app.add_typer(keys_app, name="keys")


class Scope(str, Enum):
    sensor = "sensor"
    analyst = "analyst"
    investigator = "investigator"
    admin = "admin"


@keys_app.command("create")
def keys_create(
    scope: Annotated[Scope, typer.Option("--scope", help="sensor (ingest only), analyst "
                                         "(personal data redacted), investigator, admin.")],
    name: Annotated[str, typer.Option("--name", help="who or what the key is for.")],
    db: DbOption = None,
) -> None:
    """Issue an API key. The secret is printed once; the store keeps only its hash."""
    store = _open_store(db)
    with store:
        key_id, secret = store.create_key(name, scope.value)
    err.print(f"key {key_id} ({scope.value}, {escape(name)}) created; the secret below is "
              "shown only now", highlight=False)
    typer.echo(secret)


@keys_app.command("list")
def keys_list(db: DbOption = None) -> None:
    """Keys with their scope and state (never their secrets)."""
    store = _open_store(db)
    with store:
        for key in store.list_keys():
            state = "revoked" if key.get("revoked_at") else "active"
            typer.echo(f"{key['key_id']}\t{key['scope']}\t{state}\t{key['name']}")


@keys_app.command("revoke")
def keys_revoke(key_id: int, db: DbOption = None) -> None:
    """Revoke a key: it gets 401 from then on."""
    store = _open_store(db)
    with store:
        if not store.revoke_key(key_id):
            raise _error(f"no active key {key_id}", 1)
    typer.echo(f"key {key_id} revoked")


@app.command()
def serve(
    db: DbOption = None,
    host: Annotated[str, typer.Option(help="address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port.")] = 8080,
    certfile: Annotated[Path | None, typer.Option(help="TLS certificate (PEM): serve HTTPS.")] = None,
    keyfile: Annotated[Path | None, typer.Option(help="TLS private key (PEM).")] = None,
    subscribers: SubscribersOption = None,
    rate: Annotated[float, typer.Option(help="requests per second per key (burst: 2x).")] = 50.0,
    workers: Annotated[int, typer.Option(
        min=1, max=64, help="server processes sharing the port (one per core); each gets "
        "rate/workers of every key's rate.")] = 1,
) -> None:
    """Run the lead API (FastAPI under uvicorn; docs/api.md). With --subscribers, the ISP
    records answer `GET /v1/addresses/{ip}`."""
    if (certfile is None) != (keyfile is None):
        raise _error("--certfile and --keyfile go together", 2)
    for f in (certfile, keyfile):
        if f is not None and not f.is_file():
            raise _error(f"{f}: no such file", 2)
    import uvicorn
    from poolwatch_api import create_app

    store = _open_store(db)
    isp = _isp_records(subscribers) if subscribers else None
    share = rate / workers  # the kernel spreads connections over the workers
    app_ = create_app(store, rate=share, burst=max(1, int(2 * share)),
                      isp_loader=(lambda: isp) if isp is not None else None)
    # What is loaded now (fingerprints, ISP records, the app) lives as long as the server:
    # frozen out of the collector, full collections stop walking it (they were the 60-70 ms
    # tail of the load benchmark).
    import gc

    gc.collect()
    gc.freeze()
    scheme = "https" if certfile else "http"
    err.print(f"serving {escape(store.url)} on {scheme}://{host}:{port} (docs at /docs)",
              highlight=False)
    tls = {"ssl_certfile": str(certfile) if certfile else None,
           "ssl_keyfile": str(keyfile) if keyfile else None}
    try:
        if workers == 1:
            uvicorn.run(app_, host=host, port=port, log_level="info", **tls)
        else:
            _serve_forked(app_, store, host, port, workers, tls)
    finally:
        store.close()


def _serve_forked(app_: Any, store: Any, host: str, port: int, workers: int,
                  tls: dict[str, Any]) -> None:
    """Pre-forked workers on one listening socket: the app, fingerprints and ISP records
    are loaded once and shared copy-on-write; each child opens its own database
    connections. SIGTERM or SIGINT to the parent stops every worker."""
    import signal
    import socket

    import uvicorn

    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.create_server((host, port), family=family, backlog=2048)
    sock.set_inheritable(True)
    children: list[int] = []
    for _ in range(workers):
        pid = os.fork()
        if pid == 0:  # a worker
            code = 0
            try:
                store.engine.dispose(close=False)  # the parent's connections stay its own
                uvicorn.Server(uvicorn.Config(app_, log_level="info", **tls)).run(
                    sockets=[sock])
            except BaseException:  # noqa: BLE001 - a worker reports and exits
                logging.getLogger("poolwatch.serve").exception("worker failed")
                code = 1
            os._exit(code)
        children.append(pid)
    sock.close()

    def stop(signum: int, _frame: Any) -> None:
        for pid in children:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    failed = 0
    for pid in children:
        _, status = os.waitpid(pid, 0)
        failed += os.waitstatus_to_exitcode(status) not in (0, -signal.SIGTERM)
    if failed:
        raise typer.Exit(1)


@app.command()
def sense(
    config: Annotated[Path | None, typer.Option(
        "--config", "-c", help="the sensor's TOML file (capture/sensor.example.toml).",
        show_default=False)] = None,
    interface: Annotated[str | None, typer.Option(
        help="capture live on this interface ([capture] interface).", show_default=False)] = None,
    watch: Annotated[Path | None, typer.Option(
        help="read capture files as a ring buffer writes them into DIR ([files] directory).",
        metavar="DIR", show_default=False)] = None,
    flows: Annotated[str | None, typer.Option(
        help="collect NetFlow v5/v9 and IPFIX on HOST:PORT (UDP) ([flows]).",
        metavar="HOST:PORT", show_default=False)] = None,
    api: Annotated[str | None, typer.Option(
        help="the lead API to push detections to ([api] url).", metavar="URL",
        show_default=False)] = None,
    key_file: Annotated[Path | None, typer.Option(
        help="file holding the sensor's API key ([api] key_file).", show_default=False)] = None,
    spool: Annotated[Path | None, typer.Option(
        help="spool directory ([spool] directory).", metavar="DIR", show_default=False)] = None,
    metrics: Annotated[str | None, typer.Option(
        help="serve Prometheus /metrics on HOST:PORT; port 0: none ([metrics]).",
        metavar="HOST:PORT", show_default=False)] = None,
    check: Annotated[bool, typer.Option(
        "--check", help="check the configuration and exit (0: usable).")] = False,
) -> None:
    """Run an edge sensor (docs/sensor.md): live capture, rotating capture files and flow
    records in; detections pushed to the lead API exactly once, spooled to disk while it is
    unreachable. Flags override the file. SIGTERM flushes and exits 0."""
    try:
        from poolwatch_sensor.config import host_port, load_config
    except ImportError:
        raise _error("the sensor package (poolwatch_sensor, capture/ in the source tree) is "
                     "not installed", 2) from None
    try:
        overrides = {("capture", "interface"): (interface, "--interface"),
                     ("files", "directory"): (str(watch) if watch else None, "--watch"),
                     ("api", "url"): (api, "--api"),
                     ("api", "key_file"): (str(key_file) if key_file else None, "--key-file"),
                     ("spool", "directory"): (str(spool) if spool else None, "--spool")}
        if flows is not None:
            host, port = host_port(flows, "--flows")
            overrides |= {("flows", "host"): (host, "--flows"),
                          ("flows", "port"): (port, "--flows")}
        if metrics is not None:
            host, port = host_port(metrics, "--metrics")
            overrides |= {("metrics", "host"): (host, "--metrics"),
                          ("metrics", "port"): (port, "--metrics")}
        if config is not None and not config.is_file():
            raise ConfigError(f"--config {config}: no such file")
        cfg = load_config(config, overrides)
        cfg.api_key()  # a key file that cannot be read is a configuration error, now
    except ConfigError as exc:
        raise _error(str(exc), 2) from None
    if check:
        typer.echo(f"configuration usable: sensor {cfg.sensor.name}, sources "
                   f"{', '.join(cfg.sources())}, api {cfg.api.url}, spool {cfg.spool.directory}")
        return
    from poolwatch_sensor import logs
    from poolwatch_sensor.sensor import Sensor

    logs.setup(cfg.log.level, cfg.log.format)
    try:
        code = Sensor(cfg).run()
    except (ConfigError, OSError) as exc:  # a source that cannot start: interface, port...
        logging.getLogger("poolwatch.sensor").error("cannot run the sensor: %s", exc)
        raise typer.Exit(1) from None
    raise typer.Exit(code)


# ---------------------------------------------------------------------------- probe (opt-in)
# The one command that connects anywhere. Defaults mirror poolwatch.probe's DEFAULT_* (a
# test checks); the module is imported when the command runs, not at start-up.


class ProbeFormat(str, Enum):
    table = "table"
    jsonl = "jsonl"


class ProbeTls(str, Enum):
    no = "no"
    yes = "yes"
    auto = "auto"


def _probe_why(result) -> str:
    ev = result.evidence
    if result.verdict == "pool":
        return f"{ev.get('strength')}: " + "; ".join(s[:70] for s in ev.get("signs", [])[:3])
    return " ".join(x for x in (ev.get("kind"), (ev.get("detail") or "")[:80]) if x)


@app.command()
def probe(
    endpoints: Annotated[list[str] | None, typer.Argument(
        help="HOST:PORT, [IPv6]:PORT or a pool URL (stratum+ssl://HOST:PORT asks for TLS).",
        show_default=False)] = None,
    from_file: Annotated[Path | None, typer.Option(
        "--from", help="Also probe the endpoints in FILE, one HOST:PORT per line (# comments).",
        show_default=False)] = None,
    tls: Annotated[ProbeTls, typer.Option(
        help="no: plain TCP; yes: TLS; auto: plain first, then TLS when plain text got "
             "nothing or a TLS record back. Certificates are not required to verify (pools "
             "use self-signed ones); whether they did is reported.")] = ProbeTls.auto,
    timeout: Annotated[float, typer.Option(
        help="Seconds for each connect, TLS handshake or wait for an answer.", min=0.01)] = 5.0,
    endpoint_timeout: Annotated[float, typer.Option(
        help="Seconds for all attempts at one endpoint together.", min=0.01)] = 30.0,
    rate: Annotated[float, typer.Option(
        help="New connections per second, all endpoints together.", min=0.01)] = 2.0,
    host_rate: Annotated[float, typer.Option(
        help="New connections per second to one address (one connection at a time).",
        min=0.01)] = 1.0,
    fmt: Annotated[ProbeFormat, typer.Option(
        "--format", "-f", help="table for people; jsonl for tools and `scan --probes`.")
    ] = ProbeFormat.table,
    out: OutOption = None,
) -> None:
    """Opt-in: connect to the given endpoints and check whether they answer as mining pools
    (Stratum v1, EthereumStratum, eth-proxy, CryptoNote, getwork; plain and TLS). Sends
    opening messages only (subscribe, login as "poolwatch-probe", a work request), never a
    share. Feed the JSON lines to `poolwatch scan --probes FILE`."""
    from .detect.probes import EVENT_TYPE, ProbeResult
    from .probe import ProbeSettings, endpoints_from, probe_endpoints

    if not endpoints and from_file is None:
        raise _error("give endpoints (HOST:PORT...) or --from FILE", 2)
    if from_file is not None and not from_file.is_file():
        raise _error(f"--from {from_file}: no such file", 2)
    if out is not None and (out.is_dir() or not out.parent.is_dir()):
        what = "is a directory" if out.is_dir() else f"no such directory {out.parent}"
        raise _error(f"cannot write --out {out}: {what}", 2)
    try:
        targets = endpoints_from(endpoints or [], [from_file] if from_file else [])
        settings = ProbeSettings(tls=tls.value, timeout_s=timeout,
                                 endpoint_timeout_s=endpoint_timeout, rate=rate,
                                 host_rate=host_rate)
    except (ConfigError, ValueError) as exc:
        raise _error(str(exc), 2) from None
    if not targets:
        raise _error(f"nothing to probe: no endpoints in {from_file}", 1)
    err.print(f"[yellow]notice[/yellow]: poolwatch probe connects to {len(targets)} endpoint(s) "
              f"named on its command line and sends them mining-protocol opening messages "
              f"(subscribe, login as \"poolwatch-probe\", a work request; never a share), at "
              f"most {rate:g} connection(s)/s, {host_rate:g}/s and one at a time per address, "
              f"tls {tls.value}.", highlight=False, soft_wrap=True)
    writer = _writer(Format(fmt.value), out, EVENT_TYPE)
    names = ("event_type", *(f.name for f in dataclasses.fields(ProbeResult)), "checked_at")
    kinds = {"port": "int", "checked_at_ns": "int", "checked_at": "time", "evidence": "json"}
    table_names = ("endpoint", "address", "tls", "verdict", "dialect", "why", "certificate")
    counts: dict[str, int] = {}
    try:
        for result in probe_endpoints(targets, settings):
            counts[result.verdict] = counts.get(result.verdict, 0) + 1
            log.info("%s:%d %s %s", result.host, result.port, result.verdict, result.dialect or "")
            if fmt is ProbeFormat.jsonl:
                writer.write_events([{**result.as_dict(), "checked_at": result.checked_at_ns}],
                                    names, kinds)
            else:
                cert = result.evidence.get("certificate") or {}
                host = f"[{result.host}]" if ":" in result.host else result.host
                writer.write_events([{
                    "endpoint": f"{host}:{result.port}", "address": result.address,
                    "tls": "yes" if result.tls else "no", "verdict": result.verdict,
                    "dialect": result.dialect or "", "why": _probe_why(result),
                    "certificate": (("verified " if cert.get("verified") else "unverified ")
                                    + ",".join(cert.get("names") or []) if cert else ""),
                }], table_names, {})
    except ConfigError as exc:
        raise _error(str(exc), 2) from None
    except PoolwatchError as exc:
        raise _error(str(exc), 1) from None
    writer.close(console=Console(width=None if sys.stdout.isatty() else 200))
    if logging.getLogger().level <= logging.WARNING:
        err.print(f"{len(targets)} endpoint(s) probed: " + ", ".join(
            f"{counts[v]} {v}" for v in ("pool", "not-pool", "no-answer", "refused", "error")
            if v in counts), highlight=False, soft_wrap=True)
    if counts.get("error", 0) == len(targets):
        raise typer.Exit(1)  # not one endpoint could be probed (names that do not resolve...)


_OWN_PROCESS = False  # set by main(): the process is the poolwatch command


def main() -> None:
    """The ``poolwatch`` command. Exits without the interpreter's teardown.

    Unloading numba and llvmlite at exit took 0.17 s of every run. Every file the command
    writes is closed and the standard streams are flushed before ``os._exit``; nothing of
    poolwatch's registers an ``atexit`` hook.
    """
    skip_blas_probe()  # a third of the start-up; see its docstring
    # A scan keeps many small objects alive (conversations, passive DNS, the fingerprints):
    # collecting the young generation every 700 allocations traversed them over and over
    # (0.15 s of a one-core scan of 10 M packets; 0.06 s with these thresholds).
    gc.set_threshold(10_000, 10, 10)
    gc.disable()  # until the command is set up (launch.py; _collect_garbage_again)
    global _OWN_PROCESS
    _OWN_PROCESS = True
    try:
        app()
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        if isinstance(exc.code, str):
            print(exc.code, file=sys.stderr)
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a closed pipe (| head): nothing more to say there
            code = code or 1
    os._exit(code)


if __name__ == "__main__":
    main()
