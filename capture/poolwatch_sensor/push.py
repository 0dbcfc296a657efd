"""Detections to the lead API, exactly once, through a disk spool.

The path of a detection:

1. :meth:`Outbox.add` keeps it in memory until a batch is due (``batch_size`` records, or
   the oldest has waited ``flush_seconds``, or :meth:`Outbox.sync`).
2. The batch gets an idempotency key (``<sensor>-<ns>-<seq>-<random>``) and is written to
   the spool as one file named by that key: written to ``tmp/``, fsynced, renamed, and the
   directory fsynced, so after a crash the file is either whole or absent.
3. The :class:`Pusher` thread POSTs spool files in key (= time) order to
   ``{url}/v1/ingest`` with the ``Idempotency-Key`` header, and deletes a file only after
   a 2xx answer. A crash after the POST but before the delete re-sends the same key on the
   next start; the store answers it as a replay and stores nothing twice.

Failures: connection errors, timeouts, 408, 429 and 5xx are retried with capped exponential
backoff and jitter (honouring ``Retry-After``), for as long as it takes: the batch waits
on disk. 401/403 (a revoked or wrong key) are retried the same way, loudly: the batches are
fine and go through once the key is fixed. Any other 4xx means the API will never take
this batch; it moves to ``rejected/`` beside a ``.reason.json`` holding the API's answer
and is counted, never retried forever.

A full spool (``max_bytes``) refuses new batches rather than deleting old ones: old
detections are evidence that cannot be captured again, while a miner still mining is
detected again after the outage. Refused detections wait in memory (up to
``10 x batch_size``, at least 10,000) for room; beyond that they are dropped, counted in
``poolwatch_sensor_dropped_records_total`` and logged as errors, never silently.
"""

from __future__ import annotations

import json
import logging
import os
import random
import secrets
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .logs import fields
from .metrics import Metrics

log = logging.getLogger("poolwatch.sensor.push")

SUFFIX = ".json"
MAX_BODY = 4 << 20  # the API takes 8 MiB; half of it leaves room for any proxy's limit
RETRY_STATUSES = {408, 425, 429, 500, 502, 503, 504}
AUTH_STATUSES = {401, 403}


def _json_default(value: Any) -> Any:
    """numpy scalars and anything else a record may carry: as plain JSON values."""
    if hasattr(value, "item"):
        return value.item()
    if isinstance(value, (set, frozenset, tuple)):
        return list(value)
    return str(value)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


# ------------------------------------------------------------------------------ spool
class Spool:
    """Batches on disk, one file per batch named ``<idempotency key>.json``."""

    def __init__(self, directory: Path, max_bytes: int, metrics: Metrics | None = None) -> None:
        self.dir = Path(directory)
        self.tmp = self.dir / "tmp"
        self.rejected = self.dir / "rejected"
        for d in (self.dir, self.tmp, self.rejected):
            d.mkdir(parents=True, exist_ok=True)
        self.max_bytes = max_bytes
        self.metrics = metrics
        self._lock = threading.Lock()
        # A file in tmp/ is a write that never finished: its batch was never spooled (the
        # caller had not been told so), so removing it loses nothing that was promised.
        for stale in self.tmp.iterdir():
            stale.unlink(missing_ok=True)
        self._sizes = {p.name: p.stat().st_size for p in self.dir.glob(f"*{SUFFIX}")}
        self._total = sum(self._sizes.values())
        self._publish()

    # counts ---------------------------------------------------------------
    @property
    def batches(self) -> int:
        return len(self._sizes)

    @property
    def bytes(self) -> int:
        return self._total

    def _publish(self) -> None:
        if self.metrics is not None:
            self.metrics.spool_batches.set(len(self._sizes))
            self.metrics.spool_bytes.set(self._total)

    # writing --------------------------------------------------------------
    def write(self, key: str, body: bytes) -> bool:
        """Store a batch durably; False (nothing written) when it would pass max_bytes."""
        name = key + SUFFIX
        with self._lock:
            if self._total + len(body) > self.max_bytes:
                return False
            tmp = self.tmp / name
            with open(tmp, "wb") as fh:
                fh.write(body)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, self.dir / name)
            _fsync_dir(self.dir)
            self._sizes[name] = len(body)
            self._total += len(body)
            self._publish()
        return True

    # reading --------------------------------------------------------------
    def pending(self) -> list[Path]:
        """Spooled batches, oldest key first."""
        with self._lock:
            names = sorted(self._sizes)
        return [self.dir / n for n in names]

    def done(self, path: Path) -> None:
        """The API has the batch: forget it."""
        with self._lock:
            path.unlink(missing_ok=True)
            _fsync_dir(self.dir)
            self._total -= self._sizes.pop(path.name, 0)
            self._publish()

    def reject(self, path: Path, reason: dict[str, Any]) -> Path:
        """Move a batch the API will never take to ``rejected/`` with the API's reason."""
        with self._lock:
            target = self.rejected / path.name
            note = target.with_suffix(".reason.json")
            note.write_text(json.dumps(reason, indent=2, default=str) + "\n")
            os.replace(path, target)
            _fsync_dir(self.dir)
            _fsync_dir(self.rejected)
            self._total -= self._sizes.pop(path.name, 0)
            self._publish()
        return target


# ----------------------------------------------------------------------------- pusher
@dataclass
class Attempt:
    """What one POST of a batch came to."""

    outcome: str  # "ok", "retry", "rejected"
    reason: str = ""
    status: int | None = None
    detail: Any = None
    retry_after: float | None = None


class Pusher:
    """The background thread that empties the spool into the API, oldest batch first."""

    def __init__(self, spool: Spool, url: str, key: str, *, timeout: float = 10.0,
                 verify: bool | str | Any = True, retry_min: float = 0.5, retry_max: float = 60.0,
                 metrics: Metrics | None = None) -> None:
        import httpx

        if isinstance(verify, str):  # a CA file (PEM) that signed the API's certificate
            import ssl

            verify = ssl.create_default_context(cafile=verify)
        self.spool = spool
        self.endpoint = url.rstrip("/") + "/v1/ingest"
        self.metrics = metrics
        self.retry_min, self.retry_max = retry_min, retry_max
        self._client = httpx.Client(timeout=timeout, verify=verify,
                                    headers={"X-API-Key": key,
                                             "Content-Type": "application/json",
                                             "User-Agent": "poolwatch-sensor"})
        self._httpx = httpx
        self._wake = threading.Event()
        self._halt = threading.Event()
        self._draining = False
        self._failures = 0  # consecutive failed attempts (backoff exponent)
        self._down_since: float | None = None
        self._thread = threading.Thread(target=self._run, name="poolwatch-push", daemon=True)
        self.stats = {"pushed": 0, "replayed": 0, "rejected": 0, "errors": 0}

    def start(self) -> None:
        self._thread.start()

    def wake(self) -> None:
        self._wake.set()

    def close(self) -> None:
        """Close the HTTP connection (a pusher used without its thread)."""
        self._client.close()

    def stop(self, drain_seconds: float) -> bool:
        """Send what is spooled for up to ``drain_seconds``, then stop. True when the spool
        is empty; what is left is sent (under the same keys) on the next start."""
        self._draining = True
        self._wake.set()
        if self._thread.is_alive():
            self._thread.join(max(0.0, drain_seconds))
        self._halt.set()
        self._wake.set()
        if self._thread.is_alive():
            self._thread.join(0.5)  # a POST still in flight is left to the daemon thread
        if not self._thread.is_alive():
            self._client.close()
        return self.spool.batches == 0

    # the loop ---------------------------------------------------------------
    def _run(self) -> None:
        while not self._halt.is_set():
            batch = self.spool.pending()
            if not batch:
                if self._draining:
                    return
                self._wake.wait(1.0)
                self._wake.clear()
                continue
            for path in batch:
                if self._halt.is_set():
                    return
                attempt = self.send(path)
                if attempt.outcome == "retry":
                    self._sleep(self._backoff(attempt.retry_after))
                    break  # list again: order stays oldest first

    def _sleep(self, seconds: float) -> None:
        self._halt.wait(seconds)

    def _backoff(self, retry_after: float | None) -> float:
        """Capped exponential backoff with jitter ("equal jitter": half fixed, half random)."""
        ceiling = min(self.retry_max, self.retry_min * 2 ** min(self._failures - 1, 30))
        delay = ceiling / 2 + random.uniform(0, ceiling / 2)
        if retry_after is not None:
            delay = max(delay, min(retry_after, self.retry_max))
        return delay

    # one batch ----------------------------------------------------------------
    def send(self, path: Path) -> Attempt:
        """POST one spooled batch and act on the answer (delete, keep, or reject)."""
        key = path.name[: -len(SUFFIX)]
        try:
            body = path.read_bytes()
        except FileNotFoundError:
            return Attempt("ok", "gone")
        try:
            records = len(json.loads(body)["records"])
        except (ValueError, KeyError, TypeError):
            records = 0
        started = time.perf_counter()
        try:
            response = self._client.post(self.endpoint, content=body,
                                         headers={"Idempotency-Key": key})
        except self._httpx.TimeoutException as exc:
            return self._failed(key, Attempt("retry", "timeout", detail=str(exc) or "timeout"))
        except self._httpx.ConnectError as exc:
            reason = "tls" if "SSL" in str(exc) or "certificate" in str(exc) else "connect"
            return self._failed(key, Attempt("retry", reason, detail=str(exc)))
        except self._httpx.TransportError as exc:
            return self._failed(key, Attempt("retry", "transport", detail=str(exc)))
        elapsed = time.perf_counter() - started
        status = response.status_code
        detail = _detail(response)
        if 200 <= status < 300:
            replayed = bool(isinstance(detail, dict) and detail.get("replayed"))
            self.spool.done(path)
            self._recovered(key)
            self.stats["pushed"] += 1
            self.stats["replayed"] += replayed
            if self.metrics is not None:
                self.metrics.pushed_batches.inc()
                self.metrics.pushed_records.inc(records)
                self.metrics.push_seconds.observe(elapsed)
                if replayed:
                    self.metrics.replayed.inc()
            log.info("batch delivered" + (" (the API already had it)" if replayed else ""),
                     extra=fields(batch=key, records=records, status=status,
                                  seconds=round(elapsed, 4),
                                  **(detail if isinstance(detail, dict) else {})))
            return Attempt("ok", status=status, detail=detail)
        retry_after = _retry_after(response)
        if status in RETRY_STATUSES or 300 <= status < 400 or status >= 500:
            return self._failed(key, Attempt("retry", f"http_{status}", status, detail,
                                             retry_after))
        if status in AUTH_STATUSES:
            return self._failed(key, Attempt("retry", "auth", status, detail, retry_after))
        # Any other 4xx: the API will never take this batch as it is.
        self.stats["rejected"] += 1
        target = self.spool.reject(path, {"idempotency_key": key, "status": status,
                                          "detail": detail, "endpoint": self.endpoint,
                                          "records": records, "rejected_at": time.time()})
        if self.metrics is not None:
            self.metrics.rejected.inc()
            self.metrics.push_errors.labels("rejected").inc()
        log.error("the API rejected a batch; it is kept in %s and will not be retried",
                  target, extra=fields(batch=key, records=records, status=status,
                                       detail=detail))
        return Attempt("rejected", f"http_{status}", status, detail)

    def _failed(self, key: str, attempt: Attempt) -> Attempt:
        self._failures += 1
        self.stats["errors"] += 1
        if self.metrics is not None:
            self.metrics.push_errors.labels(attempt.reason).inc()
        now = time.monotonic()
        first = self._down_since is None
        if first:
            self._down_since = now
        # Loud on the first failure and on auth errors, then one line per failure at
        # debug: a long outage must not fill the disk with the same error.
        level = logging.ERROR if attempt.reason == "auth" else logging.WARNING
        if first or attempt.reason == "auth" and self._failures % 10 == 1:
            msg = ("the API refused the sensor's key; batches stay spooled until it is "
                   "fixed" if attempt.reason == "auth" else
                   "cannot push to the API; batches stay spooled and are retried")
            log.log(level, msg, extra=fields(batch=key, reason=attempt.reason,
                                             status=attempt.status, detail=attempt.detail,
                                             spooled=self.spool.batches))
        else:
            log.debug("push failed", extra=fields(batch=key, reason=attempt.reason,
                                                  status=attempt.status,
                                                  failures=self._failures))
        return attempt

    def _recovered(self, key: str) -> None:
        if self._down_since is not None:
            log.warning("pushing again after %.1f s of failures", time.monotonic()
                        - self._down_since, extra=fields(batch=key, failures=self._failures,
                                                         spooled=self.spool.batches))
        self._failures = 0
        self._down_since = None


def _detail(response) -> Any:
    try:
        body = response.json()
    except ValueError:
        return response.text[:2000]
    return body.get("detail", body) if isinstance(body, dict) and "detail" in body else body


def _retry_after(response) -> float | None:
    value = response.headers.get("retry-after")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None


# ----------------------------------------------------------------------------- outbox
class Outbox:
    """Records in, durable batches out: the front of the spool and its pusher.

    ``add`` is called by the source threads; ``poll`` (the main loop, a few times a
    second) cuts batches that are due. Spool writes happen in the caller's thread (a few
    small files a second at most); the network only in the pusher's.
    """

    def __init__(self, spool: Spool, pusher: Pusher | None, *, sensor_name: str,
                 batch_size: int = 500, flush_seconds: float = 5.0,
                 metrics: Metrics | None = None, max_pending: int | None = None) -> None:
        self.spool = spool
        self.pusher = pusher
        self.name = sensor_name
        self.source = f"sensor:{sensor_name}"
        self.batch_size = batch_size
        self.flush_seconds = flush_seconds
        self.metrics = metrics
        self.max_pending = max_pending or max(10 * batch_size, 10_000)
        self._pending: list[bytes] = []  # records, each already encoded
        self._oldest: float | None = None
        self._lock = threading.Lock()
        self._seq = 0
        self._full_since: float | None = None
        self._dropped_logged = 0.0
        self.dropped = 0

    def key(self) -> str:
        """A new idempotency key: sensor name, time, sequence, randomness (unique across
        restarts and sensors; sorts by time)."""
        self._seq = (self._seq + 1) % 1_000_000
        return f"{self.name}-{time.time_ns():019d}-{self._seq:06d}-{secrets.token_hex(4)}"

    def add(self, records: Iterable[dict[str, Any]]) -> None:
        encoded = [json.dumps(r, default=_json_default, ensure_ascii=False,
                              separators=(",", ":")).encode() for r in records]
        if not encoded:
            return
        with self._lock:
            room = self.max_pending - len(self._pending)
            if room < len(encoded):
                self._drop(len(encoded) - max(room, 0), "spool_full" if self._full_since
                           else "backlog")
                encoded = encoded[: max(room, 0)]
            if encoded and self._oldest is None:
                self._oldest = time.monotonic()
            self._pending.extend(encoded)

    def poll(self) -> None:
        """Spool the batches that are due (full, or old enough)."""
        with self._lock:
            due = len(self._pending) >= self.batch_size or (
                self._oldest is not None
                and time.monotonic() - self._oldest >= self.flush_seconds)
            if due:
                self._spool_pending()

    def sync(self) -> bool:
        """Spool everything pending now; True when nothing is left in memory."""
        with self._lock:
            self._spool_pending()
            return not self._pending

    @property
    def pending(self) -> int:
        return len(self._pending)

    def _spool_pending(self) -> None:
        while self._pending:
            count, size = 0, 0
            for item in self._pending[: self.batch_size]:
                if count and size + len(item) + 1 > MAX_BODY:
                    break
                count += 1
                size += len(item) + 1
            body = (b'{"records":[' + b",".join(self._pending[:count]) + b'],"source":'
                    + json.dumps(self.source).encode() + b"}")
            key = self.key()
            try:
                written = self.spool.write(key, body)
            except OSError as exc:
                self._trouble("cannot write to the spool; detections wait in memory",
                              reason="spool_error", error=str(exc))
                return
            if not written:
                self._trouble("the spool is full (max_bytes); new detections wait in "
                              "memory and are dropped when that is full too",
                              reason="spool_full")
                return
            if self._full_since is not None:
                log.warning("the spool has room again", extra=fields(
                    seconds_full=round(time.monotonic() - self._full_since, 1),
                    dropped=self.dropped))
                self._full_since = None
                if self.metrics is not None:
                    self.metrics.spool_full.set(0)
            del self._pending[:count]
            log.debug("batch spooled", extra=fields(batch=key, records=count, bytes=len(body)))
            if self.pusher is not None:
                self.pusher.wake()
        self._oldest = None

    def _trouble(self, message: str, **extra: Any) -> None:
        if self._full_since is None:
            self._full_since = time.monotonic()
            if self.metrics is not None:
                self.metrics.spool_full.set(1)
            log.error(message, extra=fields(spool_bytes=self.spool.bytes,
                                            max_bytes=self.spool.max_bytes,
                                            waiting=len(self._pending), **extra))

    def _drop(self, n: int, reason: str) -> None:
        self.dropped += n
        if self.metrics is not None:
            self.metrics.dropped.labels(reason).inc(n)
        now = time.monotonic()
        if now - self._dropped_logged >= 10:
            self._dropped_logged = now
            log.error("detections dropped: the spool and the memory backlog are full",
                      extra=fields(dropped_now=n, dropped_total=self.dropped, reason=reason,
                                   spool_bytes=self.spool.bytes,
                                   max_bytes=self.spool.max_bytes))

    def close(self, drain_seconds: float) -> bool:
        """Spool what is pending and give the pusher ``drain_seconds`` to deliver it.
        True when everything was delivered."""
        self.sync()
        if self.pusher is None:
            return False
        return self.pusher.stop(drain_seconds) and not self._pending
