"""Capture files as a ring buffer writes them (``dumpcap -b duration:N -w``, ``tcpdump -G``):
each file is read once it is complete, in order, exactly once across restarts.

When is a file complete? Its writer has let go of it: a newer file exists (dumpcap and
tcpdump close the old file before opening the next), or the kernel told us the writer
closed it (inotify ``IN_CLOSE_WRITE``, or ``IN_MOVED_TO`` for a writer that renames finished
files into the directory), or, only if ``idle_close_seconds`` is set, nothing has been
written to it for that long (a writer that has stopped for good). In every case its size and
modification time must also have stayed the same for ``settle_seconds``. The newest file is
therefore left alone while it is being written, however long that takes. A file whose last
record is cut short (a writer killed mid-write) is read up to the cut, counted as
``truncated`` and logged, never fatal; a file that is not a capture at all is counted as an
``error`` and skipped.

Files go through one :class:`~poolwatch.scan.DetectionPipeline` one after the other, so a
connection that runs on from one file into the next stays one session, and with
``hash_captures`` the evidence names each file and its SHA-256.

What has been read is remembered in a small JSON state file (name, inode, size, mtime), so
a restart carries on where it stopped: a file counts as done only after every detection the
pipeline had finished by then is in the spool (``sync``); a crash while a file is being read
reads that file again from its start (the store recognises detections it already has by
their natural key, which includes the file's SHA-256). A file that a ring buffer rewrote
under the same name has a new inode or mtime and is read as the new file it is.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import errno
import fnmatch
import json
import logging
import os
import select
import struct
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .logs import fields

log = logging.getLogger("poolwatch.sensor.files")

NS = 1_000_000_000

# linux/inotify.h
IN_MODIFY = 0x002
IN_CLOSE_WRITE = 0x008
IN_MOVED_TO = 0x080
IN_CREATE = 0x100
IN_NONBLOCK = 0o4000
IN_CLOEXEC = 0o2000000


class _Inotify:
    """The few inotify calls needed, through ctypes (no dependency): which files in one
    directory were closed after writing or moved in. None of it is required: without
    inotify the directory is polled every ``poll_seconds`` and completeness is decided by
    newer files and settling alone."""

    def __init__(self, directory: Path) -> None:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        fd = libc.inotify_init1(IN_NONBLOCK | IN_CLOEXEC)
        if fd < 0:
            raise OSError(ctypes.get_errno(), os.strerror(ctypes.get_errno()))
        wd = libc.inotify_add_watch(fd, os.fsencode(directory),
                                    IN_CLOSE_WRITE | IN_MOVED_TO | IN_CREATE | IN_MODIFY)
        if wd < 0:
            err = ctypes.get_errno()
            os.close(fd)
            raise OSError(err, os.strerror(err))
        self.fd = fd

    def wait(self, timeout: float) -> tuple[set[str], bool]:
        """Names closed-after-write or moved in, and whether anything happened at all,
        waiting at most ``timeout`` seconds for the first event."""
        ready, _, _ = select.select([self.fd], [], [], max(0.0, timeout))
        closed: set[str] = set()
        if not ready:
            return closed, False
        try:
            data = os.read(self.fd, 1 << 16)
        except BlockingIOError:
            return closed, False
        pos = 0
        while pos + 16 <= len(data):
            _, mask, _, size = struct.unpack_from("iIII", data, pos)
            name = data[pos + 16 : pos + 16 + size].split(b"\0", 1)[0].decode(errors="replace")
            if mask & (IN_CLOSE_WRITE | IN_MOVED_TO) and name:
                closed.add(name)
            pos += 16 + size
        return closed, True

    def close(self) -> None:
        with contextlib.suppress(OSError):
            os.close(self.fd)


@dataclass
class _Seen:
    """A file as last looked at: (size, mtime) and since when it has stayed so."""

    size: int
    mtime_ns: int
    ino: int
    since: float  # time.monotonic() when this size/mtime was first seen


class DoneFiles:
    """The state file: the files already read, by name, with what identified them then."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.files: dict[str, dict[str, Any]] = {}
        try:
            data = json.loads(self.path.read_text())
            files = data.get("files", {}) if isinstance(data, dict) else {}
            self.files = {str(k): v for k, v in files.items() if isinstance(v, dict)}
        except FileNotFoundError:
            pass
        except (OSError, ValueError) as exc:
            # Unreadable state: files are read again, and the store tells duplicates apart.
            log.error("cannot read the state file; files present will be read again",
                      extra=fields(path=str(self.path), error=str(exc)))

    def is_done(self, name: str, st: os.stat_result) -> bool:
        entry = self.files.get(name)
        return (entry is not None and entry.get("ino") == st.st_ino
                and entry.get("size") == st.st_size and entry.get("mtime_ns") == st.st_mtime_ns)

    def mark(self, name: str, st: os.stat_result, **info: Any) -> None:
        self.files[name] = {"ino": st.st_ino, "size": st.st_size, "mtime_ns": st.st_mtime_ns,
                            "done_at": time.time(), **info}

    def save(self, present: set[str]) -> None:
        """Write atomically, keeping only files still in the directory (the ring buffer
        deletes old ones, so the state stays small)."""
        self.files = {k: v for k, v in self.files.items() if k in present}
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(self.path.name + ".tmp")
        with open(tmp, "w") as fh:
            json.dump({"version": 1, "files": self.files}, fh, indent=1, sort_keys=True)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, self.path)


class RotatingDirectory:
    """Which files of a ring-buffer directory are complete and not read yet, in order."""

    def __init__(self, directory: Path, *, pattern: str = "*.pcap*", settle_seconds: float = 2.0,
                 order: str = "name", idle_close_seconds: float = 0.0,
                 state_file: Path | None = None, use_inotify: bool = True) -> None:
        self.dir = Path(directory)
        self.pattern = pattern
        self.settle = settle_seconds
        self.order = order
        self.idle_close = idle_close_seconds
        self.done = DoneFiles(state_file or self.dir / ".poolwatch-sensor-files.json")
        self._seen: dict[str, _Seen] = {}
        self._closed: set[str] = set()  # inotify: the writer closed these
        self._skip = {self.done.path.name, self.done.path.name + ".tmp"}
        self.listing: list[tuple[str, os.stat_result]] = []
        self._inotify: _Inotify | None = None
        if use_inotify:
            try:
                self._inotify = _Inotify(self.dir)
            except (OSError, AttributeError) as exc:  # not Linux, or out of watches
                log.info("no inotify; polling the directory", extra=fields(error=str(exc)))

    def scan(self) -> list[tuple[str, os.stat_result]]:
        """The directory's capture files (pattern, not hidden), oldest first."""
        found = []
        try:
            entries = list(os.scandir(self.dir))
        except OSError as exc:
            log.error("cannot list the watched directory", extra=fields(
                directory=str(self.dir), error=exc.strerror or str(exc)))
            return []
        for entry in entries:
            if entry.name.startswith(".") or entry.name in self._skip:
                continue
            if not fnmatch.fnmatch(entry.name, self.pattern):
                continue
            try:
                st = entry.stat()
            except FileNotFoundError:
                continue
            if not entry.is_file():
                continue
            found.append((entry.name, st))
        if self.order == "mtime":
            found.sort(key=lambda x: (x[1].st_mtime_ns, x[0]))
        else:
            found.sort(key=lambda x: x[0])
        self.listing = found
        return found

    def ready(self) -> list[Path]:
        """Complete files not read yet, in order. Stops at the first file that is not
        complete: a later file never goes before an earlier one."""
        now, wall = time.monotonic(), time.time_ns()
        files = self.scan()
        names = {n for n, _ in files}
        self._seen = {k: v for k, v in self._seen.items() if k in names}
        self._closed &= names
        out = []
        for i, (name, st) in enumerate(files):
            seen = self._seen.get(name)
            if (seen is None or seen.size != st.st_size or seen.mtime_ns != st.st_mtime_ns
                    or seen.ino != st.st_ino):
                seen = self._seen[name] = _Seen(st.st_size, st.st_mtime_ns, st.st_ino, now)
            if self.done.is_done(name, st):
                continue
            settled = max(now - seen.since, (wall - st.st_mtime_ns) / NS) >= self.settle \
                and now - seen.since >= min(self.settle, 0.05)
            let_go = (i < len(files) - 1 or name in self._closed
                      or (self.idle_close > 0 and (wall - st.st_mtime_ns) / NS
                          >= self.idle_close and now - seen.since >= self.idle_close))
            if not (settled and let_go):
                break
            out.append(self.dir / name)
        return out

    def waiting(self) -> int:
        """Files present and not read yet (the one being written included)."""
        return sum(1 for name, st in self.listing if not self.done.is_done(name, st))

    def wait(self, timeout: float) -> None:
        """Sleep until something happens in the directory, or ``timeout``."""
        if self._inotify is None:
            time.sleep(timeout)
            return
        closed, _ = self._inotify.wait(timeout)
        self._closed |= closed

    def mark_done(self, path: Path, **info: Any) -> os.stat_result | None:
        try:
            st = path.stat()
        except FileNotFoundError:
            return None
        self.done.mark(path.name, st, **info)
        self.done.save({n for n, _ in self.scan()})
        return st

    def close(self) -> None:
        if self._inotify is not None:
            self._inotify.close()
            self._inotify = None


# ------------------------------------------------------------------------ the file source
class FileSource:
    """Reads the directory's complete files through one streaming pipeline, handing the
    records it finishes to ``emit``; ``sync`` must make them durable (the spool) before a
    file is marked done.

    The pipeline's clock: while files keep coming it is their packets' time; when none has
    come for ``tick_seconds`` it moves on by the wall time since the last packet was read
    (never to the wall clock itself: replayed or late files keep their own time), so idle
    sessions and contacts are finished when the writer has nothing to write.
    """

    def __init__(self, settings, pipeline, *, emit: Callable[[list, str], None],
                 sync: Callable[[], bool], metrics=None, tick_seconds: float = 1.0) -> None:
        self.s = settings
        self.pipe = pipeline
        self.emit = emit
        self.sync = sync
        self.metrics = metrics
        self.tick_seconds = tick_seconds
        self.watch = RotatingDirectory(settings.directory, pattern=settings.pattern,
                                       settle_seconds=settings.settle_seconds,
                                       order=settings.order,
                                       idle_close_seconds=settings.idle_close_seconds,
                                       state_file=settings.state_file)
        self.stats = {"files": 0, "truncated": 0, "errors": 0, "packets": 0, "bytes": 0,
                      "records": 0}
        self._last_ts = 0  # capture time of the last packet read
        self._last_read = time.monotonic()
        self._last_tick = time.monotonic()
        self._to_delete: list[tuple[Path, int]] = []  # (file, capture ns after which it may go)
        self.heartbeat = time.monotonic()

    # ------------------------------------------------------------------ loop
    def run(self, stop: threading.Event, abort: threading.Event) -> None:
        """Until ``stop``: read complete files, tick when quiet. The file being read when
        ``stop`` comes is read to its end (``abort`` cuts it short, not marked done)."""
        if self.s.after == "delete":  # read before a restart, not deleted yet: nothing needs them
            self._to_delete += [(self.watch.dir / name, 0) for name, st in self.watch.scan()
                                if self.watch.done.is_done(name, st)]
        while not stop.is_set():
            self.heartbeat = time.monotonic()
            ready = self.watch.ready()
            for path in ready:
                if stop.is_set():
                    break
                self.process(path, abort)
            if self.metrics is not None:
                self.metrics.files_pending.set(self.watch.waiting())
            now = time.monotonic()
            if now - self._last_read >= self.tick_seconds and now - self._last_tick >= \
                    self.tick_seconds:
                self.tick()
            self._delete_expired()
            if not ready:  # after a file, look again at once: the next may be waiting
                self.watch.wait(min(self.s.poll_seconds, self.tick_seconds))

    def clock(self) -> int:
        """The capture clock: last packet time plus the wall time since it was read."""
        return self._last_ts + int((time.monotonic() - self._last_read) * NS)

    def tick(self) -> None:
        self._last_tick = time.monotonic()
        if self._last_ts:
            self._emit(self.pipe.tick(self.clock()))

    def process(self, path: Path, abort: threading.Event | None = None) -> bool:
        """Read one complete file through the pipeline; mark it done once its records are
        spooled. False when ``abort`` cut it short."""
        from poolwatch.scan import ScanSummary, iter_batches

        summary = ScanSummary()
        started = time.perf_counter()
        packets = nbytes = 0
        for batch in iter_batches([path], summary=summary):
            n = len(batch)
            packets += n
            if n:
                nbytes += int(batch.packets["caplen"].sum())
                self._last_ts = max(self._last_ts, int(batch.packets["ts_ns"][-1]))
            self._emit(self.pipe.feed(batch))
            self.heartbeat = self._last_read = time.monotonic()
            if abort is not None and abort.is_set():
                log.warning("stopped in the middle of a file; it will be read again",
                            extra=fields(file=str(path)))
                return False
        report = summary.files[0] if summary.files else None
        truncated = bool(report and any("truncated" in w for w in report.warnings))
        result = "error" if report and report.error else ("truncated" if truncated else "ok")
        self.stats["files"] += 1
        self.stats["packets"] += packets
        self.stats["bytes"] += nbytes
        if result != "ok":
            self.stats["truncated" if result == "truncated" else "errors"] += 1
        if self.metrics is not None:
            self.metrics.files.labels(result).inc()
            self.metrics.packets.labels("files").inc(packets)
            self.metrics.bytes.labels("files").inc(nbytes)
        info = fields(file=str(path), packets=packets, bytes=nbytes,
                      seconds=round(time.perf_counter() - started, 3))
        if result == "error":
            log.error("capture file could not be read to its end: %s", report.error,
                      extra=info)
        elif result == "truncated":
            log.warning("capture file's last record is cut short; read up to it: %s",
                        "; ".join(report.warnings), extra=info)
        else:
            log.info("capture file read", extra=info)
        self.sync()  # every record finished so far is in the spool before the file is done
        self.watch.mark_done(path, packets=packets, result=result)
        if self.s.after == "delete":
            # records may still name this file (and need its SHA-256) until its flows have
            # settled in the pipeline: deleted once the clock is past that, or at the end
            settle = int(getattr(self.pipe, "settle_ns", 0))
            self._to_delete.append((path, self._last_ts + 2 * settle))
        return True

    def _emit(self, records: list) -> None:
        if records:
            self.stats["records"] += len(records)
            self.emit(records, "files")

    def _delete_expired(self, everything: bool = False) -> None:
        clock = self.clock()
        keep = []
        for path, after in self._to_delete:
            if everything or clock > after:
                try:
                    path.unlink()
                    log.info("capture file deleted (after = \"delete\")",
                             extra=fields(file=str(path)))
                except FileNotFoundError:
                    pass
                except OSError as exc:
                    log.error("cannot delete a capture file that was read",
                              extra=fields(file=str(path), error=exc.strerror or str(exc)))
                    if exc.errno not in (errno.EACCES, errno.EPERM, errno.EROFS):
                        keep.append((path, after))
            else:
                keep.append((path, after))
        self._to_delete = keep

    def finish(self) -> None:
        """End of the run: everything open in the pipeline out, spooled, files let go."""
        self._emit(self.pipe.flush())
        self.sync()
        self._delete_expired(everything=True)
        self.watch.close()
