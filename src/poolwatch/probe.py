"""Active confirmation: does an endpoint answer as a mining pool? (``poolwatch probe``)

Opt-in only: nothing in the scan connects anywhere. Given endpoints (``HOST:PORT``), the
prober connects to each (plain TCP, TLS, or plain first and then TLS), speaks the opening
messages of the Stratum dialects in ``fingerprints/dialects.yaml`` one fresh connection at a
time, and classifies what comes back:

- ``pool``: a pool's answer: a subscribe result with an extranonce, a difficulty or target,
  a job (``mining.notify``, a CryptoNote ``job`` with blob and target, an eth-proxy work
  package, a getwork ``data``/``target``), an accepted login (strength ``strong``); or only
  a rejected login worded as a pool words it (strength ``weak``);
- ``not-pool``: it answered something else: HTTP, a TLS alert, a banner, JSON-RPC "method
  not found", bytes that are none of these;
- ``no-answer``: connected (or the SYN went unanswered) but nothing came back in time;
- ``refused``: the port is closed;
- ``error``: no probe possible: the name did not resolve, the network is unreachable.

What is sent, in order, each on its own connection, until one answers as a pool:

1. stratum-v1: ``mining.subscribe ["poolwatch-probe/V"]``, and after a subscribe result
   without a job, ``mining.authorize ["poolwatch-probe", "x"]``;
2. EthereumStratum/1.0.0: ``mining.subscribe ["poolwatch-probe/V", "EthereumStratum/1.0.0"]``
   (and authorize as above);
3. ethproxy: ``eth_submitLogin ["poolwatch-probe", "x"]``, and after an accepted login
   ``eth_getWork []``;
4. cryptonote: ``login {"login": "poolwatch-probe", "pass": "x", "agent": "poolwatch-probe/V"}``;
5. getwork: ``POST /`` with ``{"method": "getwork", "params": [], "id": 0}`` (a work
   request; never a submission).

Methods come from the dialects in the fingerprints (their login and job methods), and
:func:`_guard` refuses any dialect's submit method, so no share, solution or hashrate is
ever sent. The exact bytes sent are kept in the result.

Limits: at most ``rate`` connections per second overall (default 2), ``host_rate`` per
second to one address (default 1) and one connection at a time per address; each wait for
connect, handshake or answer is bounded by ``timeout_s`` (default 5 s), the whole endpoint
by ``endpoint_timeout_s`` (default 30 s), and at most ``max_bytes`` (64 KiB) are read per
connection.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import ipaddress
import json
import queue
import re
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from . import __version__
from .detect.probes import ProbeResult, canonical_address
from .errors import ConfigError
from .fingerprints import Fingerprints, load_fingerprints

__all__ = [
    "DEFAULT_ENDPOINT_TIMEOUT",
    "DEFAULT_HOST_RATE",
    "DEFAULT_MAX_BYTES",
    "DEFAULT_RATE",
    "DEFAULT_TIMEOUT",
    "DIALECT_ORDER",
    "PROBE_LOGIN",
    "Endpoint",
    "ProbeSettings",
    "RateLimiter",
    "endpoints_from",
    "parse_endpoint",
    "probe_endpoints",
    "read_endpoints",
]

DEFAULT_RATE = 2.0  # new connections per second, all endpoints together
DEFAULT_HOST_RATE = 1.0  # new connections per second to one address
DEFAULT_TIMEOUT = 5.0  # seconds for one connect, handshake, or wait for an answer
DEFAULT_ENDPOINT_TIMEOUT = 30.0  # seconds for every attempt at one endpoint together
DEFAULT_MAX_BYTES = 65_536  # read per connection at most
DEFAULT_WORKERS = 8  # addresses probed at once (each one connection at a time)
PROBE_LOGIN = "poolwatch-probe"  # the login/worker name: says what it is, is no wallet
PROBE_AGENT = f"poolwatch-probe/{__version__}"
DIALECT_ORDER = ("stratum-v1", "ethereumstratum-1", "ethproxy", "cryptonote", "getwork")
TlsMode = Literal["no", "yes", "auto"]

_TLS_SCHEMES = re.compile(r"\+(ssl|tls)$|^https$|^ssl$|^tls$")
_POOL_WORDS = re.compile(r"login|wallet|worker|miner|mining|share|unauthori[sz]ed|"
                         r"not authori[sz]ed|subscri|stratum", re.IGNORECASE)
_UNKNOWN_METHOD = re.compile(r"unknown method|method not found|not supported|unsupported|"
                             r"does not exist|invalid method|no such method|not implemented",
                             re.IGNORECASE)
_HEX = re.compile(r"^(0x)?[0-9a-fA-F]+$")


# ---------------------------------------------------------------------------- endpoints


@dataclass(frozen=True, slots=True)
class Endpoint:
    """One ``HOST:PORT`` to probe; ``tls`` is set when its URL scheme says (``+ssl``)."""

    host: str
    port: int
    tls: bool | None = None

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"


def parse_endpoint(text: str) -> Endpoint:
    """``host:port``, ``1.2.3.4:port``, ``[2001:db8::1]:port``, or a pool URL
    (``stratum+tcp://host:port``, ``stratum+ssl://…`` asks for TLS). ValueError if not."""
    text = text.strip()
    tls = None
    if "://" in text:
        scheme, text = text.split("://", 1)
        tls = True if _TLS_SCHEMES.search(scheme.lower()) else None
        text = text.split("/", 1)[0]
    if text.startswith("["):
        host, sep, rest = text[1:].partition("]")
        if not sep or not rest.startswith(":"):
            raise ValueError(f"{text!r}: expected [IPv6]:PORT")
        port_text = rest[1:]
        try:
            ipaddress.IPv6Address(host.split("%", 1)[0])
        except ValueError:
            raise ValueError(f"{text!r}: {host!r} is not an IPv6 address") from None
    else:
        host, sep, port_text = text.rpartition(":")
        if not sep or not host:
            raise ValueError(f"{text!r}: expected HOST:PORT")
        if ":" in host:
            raise ValueError(f"{text!r}: write IPv6 addresses in brackets, [ADDRESS]:PORT")
        if not re.fullmatch(r"[A-Za-z0-9._-]+", host):
            raise ValueError(f"{text!r}: {host!r} is not a host name or address")
    if not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise ValueError(f"{text!r}: port {port_text!r} is not 1-65535")
    return Endpoint(host, int(port_text), tls)


def read_endpoints(path: str | Path) -> list[Endpoint]:
    """One endpoint per line; blank lines and ``#`` comments are skipped. A bad line raises
    ConfigError naming the file and line."""
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: {getattr(exc, 'strerror', None) or exc}") from None
    out = []
    for lineno, line in enumerate(lines, 1):
        line = line.split("#", 1)[0].strip()
        if line:
            try:
                out.append(parse_endpoint(line))
            except ValueError as exc:
                raise ConfigError(f"{path}, line {lineno}: {exc}") from None
    return out


# ---------------------------------------------------------------------------- settings, rate


@dataclass(frozen=True, slots=True)
class ProbeSettings:
    tls: TlsMode = "auto"
    timeout_s: float = DEFAULT_TIMEOUT
    endpoint_timeout_s: float = DEFAULT_ENDPOINT_TIMEOUT
    rate: float = DEFAULT_RATE
    host_rate: float = DEFAULT_HOST_RATE
    max_bytes: int = DEFAULT_MAX_BYTES
    workers: int = DEFAULT_WORKERS
    dialects: tuple[str, ...] = DIALECT_ORDER

    def __post_init__(self) -> None:
        if self.tls not in ("no", "yes", "auto"):
            raise ValueError(f"tls must be no, yes or auto, not {self.tls!r}")
        for name in ("timeout_s", "endpoint_timeout_s", "rate", "host_rate"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be > 0")
        if self.max_bytes < 64 or self.workers < 1:
            raise ValueError("max_bytes must be >= 64 and workers >= 1")
        unknown = set(self.dialects) - set(DIALECT_ORDER)
        if unknown or not self.dialects:
            raise ValueError(f"dialects to probe: some of {', '.join(DIALECT_ORDER)}")


class RateLimiter:
    """At most ``rate`` connection starts per second overall and ``host_rate`` per key.

    Each caller reserves the next free slot under a lock and sleeps outside it, so waiting
    threads are served in order and no burst exceeds the rates. ``log`` keeps (monotonic
    time, key) of every slot handed out.
    """

    def __init__(self, rate: float = DEFAULT_RATE, host_rate: float = DEFAULT_HOST_RATE,
                 clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.interval = 1.0 / rate
        self.host_interval = 1.0 / host_rate
        self._clock, self._sleep = clock, sleep
        self._lock = threading.Lock()
        self._next = float("-inf")
        self._next_host: dict[str, float] = {}
        self.log: list[tuple[float, str]] = []

    def wait(self, key: str) -> float:
        with self._lock:
            now = self._clock()
            slot = max(now, self._next, self._next_host.get(key, float("-inf")))
            self._next = slot + self.interval
            self._next_host[key] = slot + self.host_interval
            self.log.append((slot, key))
        if slot > now:
            self._sleep(slot - now)
        return slot


# ---------------------------------------------------------------------------- the plan


@dataclass(frozen=True)
class _Plan:
    """Method names from the fingerprints, and what a pool's server side may send."""

    subscribe: str
    authorize: str
    ethstratum_proto: str
    eth_login: str
    eth_getwork: str
    cn_login: str
    cn_job: str
    getwork: str
    server_methods: dict[str, tuple[str, ...]]  # method -> dialects that send it
    job_methods: frozenset[str]
    submit_methods: frozenset[str]


def _plan(fp: Fingerprints) -> _Plan:
    try:
        d = {i: fp.dialects[i] for i in DIALECT_ORDER}
    except KeyError as exc:
        raise ConfigError(f"fingerprints: probe needs dialect {exc.args[0]!r}") from None
    proto = next((c.strip('"') for s in d["ethereumstratum-1"].client_signatures
                  for c in s.contains if "EthereumStratum" in c), None)
    if proto is None:
        raise ConfigError("fingerprints: ethereumstratum-1 names no protocol string")
    server: dict[str, list[str]] = {}
    for dialect in fp.dialects.values():
        if dialect.framing != "ndjson":
            continue
        for m in (*dialect.server_methods, *dialect.difficulty_methods, *dialect.target_methods,
                  *dialect.job_methods):
            if m not in dialect.client_methods and dialect.id not in server.get(m, []):
                server.setdefault(m, []).append(dialect.id)
    return _Plan(
        subscribe=d["stratum-v1"].login_methods[0], authorize=d["stratum-v1"].login_methods[1],
        ethstratum_proto=proto, eth_login=d["ethproxy"].login_methods[0],
        eth_getwork=d["ethproxy"].job_methods[0], cn_login=d["cryptonote"].login_methods[0],
        cn_job=d["cryptonote"].job_methods[0], getwork=d["getwork"].job_methods[0],
        server_methods={k: tuple(v) for k, v in server.items()},
        job_methods=frozenset(m for x in fp.dialects.values() if x.framing == "ndjson"
                              for m in x.job_methods),
        submit_methods=frozenset(m for x in fp.dialects.values() for m in x.submit_methods),
    )


def _guard(plan: _Plan, method: str, params: Any) -> None:
    """Refuse anything that could pass for mining work: every dialect's submit method,
    except getwork with no parameters, which asks for work and submits none."""
    if method in plan.submit_methods and not (method == plan.getwork and params == []):
        raise AssertionError(f"the prober never sends {method!r} with {params!r}")


def _line(plan: _Plan, id_: int, method: str, params: Any, **extra: Any) -> bytes:
    _guard(plan, method, params)
    return (json.dumps({"id": id_, "method": method, "params": params, **extra}) + "\n").encode()


# ---------------------------------------------------------------------------- one connection


class _Refused(Exception):
    pass


class _Conn:
    """One connection's conversation: bytes sent, bytes received, how it ended."""

    def __init__(self, sock: socket.socket, deadline: float, settings: ProbeSettings) -> None:
        self.sock, self.deadline, self.settings = sock, deadline, settings
        self.sent: list[bytes] = []
        self.received = bytearray()
        self.ended: str | None = None  # closed, reset, timeout, truncated, deadline

    def send(self, data: bytes) -> None:
        self.sent.append(data)
        self.sock.settimeout(max(0.05, min(self.settings.timeout_s,
                                           self.deadline - time.monotonic())))
        try:
            self.sock.sendall(data)
        except (TimeoutError, OSError):
            self.ended = "reset"

    def read(self, done: Callable[[], bool]) -> None:
        """Read until ``done()``, the peer closes, ``timeout_s`` passes, or max bytes."""
        end = min(self.deadline, time.monotonic() + self.settings.timeout_s)
        while self.ended is None and not done():
            left = end - time.monotonic()
            if left <= 0:
                self.ended = "timeout" if end < self.deadline else "deadline"
                break
            room = self.settings.max_bytes - len(self.received)
            if room <= 0:
                self.ended = "truncated"
                break
            self.sock.settimeout(left)
            try:
                chunk = self.sock.recv(min(room, 16_384))
            except TimeoutError:
                continue
            except ssl.SSLError as exc:  # an alert, or a close without close_notify
                self.ended = "closed" if "EOF" in str(exc) else "tls-error"
                break
            except OSError:
                self.ended = "reset"
                break
            if not chunk:
                self.ended = "closed"
                break
            self.received += chunk

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.close()


def _json_messages(data: bytes, complete: bool) -> tuple[list[dict], bool]:
    """The JSON objects of newline-framed data, and whether every line was a JSON object."""
    lines = data.split(b"\n")
    if not complete:
        lines = lines[:-1]
    out, all_json = [], True
    for raw in lines:
        if not raw.strip():
            continue
        try:
            obj = json.loads(raw)
        except (ValueError, UnicodeDecodeError):
            all_json = False
            continue
        if isinstance(obj, dict):
            out.append(obj)
        else:
            all_json = False
    return out, all_json


def _preview(data: bytes, limit: int = 300) -> str:
    text = data[:limit].decode("utf-8", "backslashreplace")
    return text + ("…" if len(data) > limit else "")


def _is_tls_record(data: bytes) -> bool:
    return len(data) >= 3 and data[0] in (0x15, 0x16) and data[1] == 3 and data[2] <= 4


def _is_json_start(data: bytes) -> bool:
    return data.lstrip()[:1] == b"{"


# ---------------------------------------------------------------------------- classification


@dataclass
class _Outcome:
    verdict: str  # pool, not-pool, no-answer, refused, error
    kind: str
    dialect: str | None = None
    strength: str | None = None
    signs: list[str] = field(default_factory=list)
    detail: str | None = None


def _hexstr(v: Any) -> bool:
    return isinstance(v, str) and bool(_HEX.match(v))


def _subscribe_signs(result: Any, proto: str) -> tuple[str | None, list[str]]:
    """Shapes of a subscribe result: (dialect or None, signs)."""
    if not isinstance(result, list) or len(result) < 2:
        return None, []
    head, nonce = result[0], result[1]
    if (isinstance(head, list) and head and head[0] == "mining.notify" and proto in head
            and _hexstr(nonce)):
        return "ethereumstratum-1", [f"subscribe result names {proto}, extranonce {nonce!r}"]
    if result[0] is True and result[1] == proto:
        return "ethereumstratum-1", [f"subscribe result [true, {proto!r}] (kaspa bridge style)"]
    if isinstance(head, list) and any(isinstance(x, list) and x and x[0] in (
            "mining.notify", "mining.set_difficulty") for x in head) and _hexstr(nonce):
        size = result[2] if len(result) > 2 else None
        return "stratum-v1", [f"subscribe result with extranonce1 {nonce!r}"
                              + (f" and extranonce2_size {size}" if isinstance(size, int) else "")]
    if (head is None or isinstance(head, str)) and _hexstr(nonce) and len(result) == 2:
        return "stratum-v1-zcash", [f"subscribe result [session, nonce1 {nonce!r}]"]
    return None, []


def _cryptonote_job(job: Any) -> bool:
    return (isinstance(job, dict) and _hexstr(job.get("blob")) and _hexstr(job.get("target"))
            and "job_id" in job)


def _eth_work(result: Any) -> bool:
    return (isinstance(result, list) and len(result) >= 3
            and all(isinstance(x, str) and x.startswith("0x") and _hexstr(x) for x in result[:3]))


def _notification(method: str, params: Any, plan: _Plan) -> str:
    if method in plan.job_methods and isinstance(params, list) and params:
        return f"{method} job {str(params[0])[:24]!r} ({len(params)} params)"
    return f"{method} {json.dumps(params)[:60]}"


def _classify_json(messages: list[dict], sent_dialect: str, plan: _Plan,
                   sent_methods: dict[int, str]) -> _Outcome:
    dialect: str | None = None
    strong: list[str] = []
    weak: list[str] = []
    errors: list[str] = []
    for msg in messages:
        method, params = msg.get("method"), msg.get("params")
        if isinstance(method, str):
            if method == plan.cn_job and _cryptonote_job(params):
                dialect = dialect or "cryptonote"
                strong.append(f"{method} with blob, job_id and target {params['target']!r}")
            elif method in plan.server_methods and method != plan.cn_job:
                owners = plan.server_methods[method]
                dialect = dialect or (sent_dialect if sent_dialect in owners else owners[0])
                if method == "mining.set_target":
                    dialect = "stratum-v1-zcash" if dialect == "stratum-v1" else dialect
                strong.append(_notification(method, params, plan))
            continue
        if "result" not in msg and "error" not in msg:
            continue
        id_ = msg.get("id")
        asked = sent_methods.get(id_) if isinstance(id_, int) else None
        error, result = msg.get("error"), msg.get("result")
        if error not in (None, False, []):
            text = json.dumps(error) if not isinstance(error, dict) else str(error.get("message", error))
            code = error.get("code") if isinstance(error, dict) else (
                error[0] if isinstance(error, list) and error else None)
            errors.append(f"{asked or 'reply'}: {text[:120]}")
            if (code not in (-32601, -32600, -32700) and not _UNKNOWN_METHOD.search(text)
                    and _POOL_WORDS.search(text)):
                weak.append(f"{asked or 'request'} rejected in a pool's words: {text[:120]!r}")
                dialect = dialect or sent_dialect
            continue
        if asked in (plan.subscribe,):
            d, signs = _subscribe_signs(result, plan.ethstratum_proto)
            if d:
                dialect = dialect or d
                strong += signs
        elif asked == plan.authorize and result is True:
            strong.append(f"{asked} accepted")
        elif asked == plan.eth_login and result is True:
            dialect = dialect or "ethproxy"
            strong.append(f"{asked} accepted")
        elif _eth_work(result):  # eth_getWork's answer, or a job pushed with id 0
            dialect = dialect or "ethproxy"
            strong.append(f"work package [header, seed, boundary {result[2][:20]}…]")
        elif asked == plan.cn_login and isinstance(result, dict):
            if _cryptonote_job(result.get("job")):
                dialect = dialect or "cryptonote"
                strong.append(f"login result with a job (blob, target {result['job']['target']!r})")
            elif result.get("status") == "OK" and "id" in result:
                dialect = dialect or "cryptonote"
                strong.append("login result status OK with a session id")
    if strong:
        return _Outcome("pool", "stratum", dialect or sent_dialect, "strong", strong + weak)
    if weak:
        return _Outcome("pool", "stratum", dialect or sent_dialect, "weak", weak)
    return _Outcome("not-pool", "json-rpc", detail="; ".join(errors)[:300] or None)


def _http_response(data: bytes) -> tuple[str, dict[str, str], bytes] | None:
    head, _sep, body = data.partition(b"\r\n\r\n")
    if not data.startswith(b"HTTP/"):
        return None
    lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return lines[0], headers, body


def _http_done(data: bytes) -> bool:
    parsed = _http_response(data)
    if parsed is None:
        return bool(data) and not b"HTTP/".startswith(bytes(data[:5]))
    if b"\r\n\r\n" not in data:
        return False
    length = parsed[1].get("content-length")
    return length is not None and length.isdigit() and len(parsed[2]) >= int(length)


def _classify(conn: _Conn, sent_dialect: str, plan: _Plan,
              sent_methods: dict[int, str]) -> _Outcome:
    data = bytes(conn.received)
    if not data:
        if conn.ended == "tls-error":
            return _Outcome("not-pool", "tls-alert")
        kind = {"closed": "closed", "reset": "reset"}.get(conn.ended or "", "timeout")
        return _Outcome("no-answer", kind)
    if _is_tls_record(data):
        return _Outcome("not-pool", "tls-record", detail="a TLS record (alert or handshake) "
                                                         "in answer to plain text")
    http = _http_response(data)
    if http is not None:
        status, headers, body = http
        signs = [f"{h} header {headers[h]!r}" for h in ("x-stratum", "x-long-polling")
                 if h in headers]
        try:
            reply = json.loads(body) if body.strip() else None
        except ValueError:
            reply = None
        result = reply.get("result") if isinstance(reply, dict) else None
        if isinstance(result, dict) and _hexstr(result.get("data")) and _hexstr(result.get("target")):
            signs.append("getwork result with data and target")
        if signs:
            return _Outcome("pool", "http", "getwork", "strong", signs, detail=status)
        return _Outcome("not-pool", "http", detail=status)
    complete = conn.ended is not None
    if _is_json_start(data):
        messages, _ = _json_messages(data, complete)
        if messages:
            return _classify_json(messages, sent_dialect, plan, sent_methods)
        return _Outcome("not-pool", "json", detail="JSON that is no JSON-RPC message")
    first = data.split(b"\n", 1)[0]
    printable = all(32 <= b < 127 or b in (9, 13) for b in first[:200])
    return _Outcome("not-pool", "banner" if printable and first else "binary",
                    detail=_preview(first, 120))


# ---------------------------------------------------------------------------- the dialects


def _exchange(conn: _Conn, dialect: str, plan: _Plan, host_header: str) -> dict[int, str]:
    """Send the dialect's opening, read the answer; returns the request ids and methods."""
    methods: dict[int, str] = {}

    def replied(id_: int) -> Callable[[], bool]:
        def done() -> bool:
            data = bytes(conn.received)
            if data and not _is_json_start(data):
                return True  # not JSON lines: nothing more to wait for
            msgs, _ = _json_messages(data, False)
            return any(m.get("id") == id_ and ("result" in m or "error" in m) for m in msgs)
        return done

    def job_seen() -> bool:
        data = bytes(conn.received)
        if data and not _is_json_start(data):
            return True
        msgs, _ = _json_messages(data, False)
        return any(m.get("method") in ("mining.notify", plan.cn_job) or _eth_work(m.get("result"))
                   for m in msgs)

    def reply(id_: int) -> dict | None:
        msgs, _ = _json_messages(bytes(conn.received), conn.ended is not None)
        return next((m for m in msgs if m.get("id") == id_ and "result" in m), None)

    if dialect in ("stratum-v1", "ethereumstratum-1"):
        params = [PROBE_AGENT] + ([plan.ethstratum_proto] if dialect == "ethereumstratum-1" else [])
        methods[1] = plan.subscribe
        conn.send(_line(plan, 1, plan.subscribe, params))
        conn.read(replied(1))
        answer = reply(1)
        if answer is not None and answer.get("error") in (None, False) and not job_seen():
            methods[2] = plan.authorize
            conn.send(_line(plan, 2, plan.authorize, [PROBE_LOGIN, "x"]))
            conn.read(job_seen)
    elif dialect == "ethproxy":
        methods[1] = plan.eth_login
        conn.send(_line(plan, 1, plan.eth_login, [PROBE_LOGIN, "x"], jsonrpc="2.0",
                        worker=PROBE_LOGIN))
        conn.read(replied(1))
        answer = reply(1)
        if answer is not None and answer.get("result") is True and not job_seen():
            methods[2] = plan.eth_getwork
            conn.send(_line(plan, 2, plan.eth_getwork, [], jsonrpc="2.0"))
            conn.read(job_seen)
    elif dialect == "cryptonote":
        methods[1] = plan.cn_login
        conn.send(_line(plan, 1, plan.cn_login, {"login": PROBE_LOGIN, "pass": "x",
                                                 "agent": PROBE_AGENT}, jsonrpc="2.0"))
        conn.read(lambda: replied(1)() or job_seen())
    elif dialect == "getwork":
        body = json.dumps({"method": plan.getwork, "params": [], "id": 0}).encode()
        _guard(plan, plan.getwork, [])
        auth = base64.b64encode(f"{PROBE_LOGIN}:x".encode()).decode()
        conn.send(
            f"POST / HTTP/1.1\r\nHost: {host_header}\r\nUser-Agent: {PROBE_AGENT}\r\n"
            f"Authorization: Basic {auth}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode() + body)
        conn.read(lambda: _http_done(bytes(conn.received)))
        methods[0] = plan.getwork
    return methods


# ---------------------------------------------------------------------------- one endpoint


@dataclass
class _Target:
    endpoint: Endpoint
    addresses: list[tuple[int, tuple]]  # (family, sockaddr), system resolver order
    error: str | None = None

    @property
    def key(self) -> str:
        return (canonical_address(self.addresses[0][1][0]) if self.addresses
                else self.endpoint.host)


def _resolve(endpoint: Endpoint) -> _Target:
    try:
        infos = socket.getaddrinfo(endpoint.host, endpoint.port, type=socket.SOCK_STREAM,
                                   proto=socket.IPPROTO_TCP)
    except (socket.gaierror, UnicodeError, OSError) as exc:
        return _Target(endpoint, [], f"cannot resolve {endpoint.host}: {exc}")
    seen, addresses = set(), []
    for family, _, _, _, sockaddr in infos:
        if sockaddr[0] not in seen:
            seen.add(sockaddr[0])
            addresses.append((family, sockaddr))
    return _Target(endpoint, addresses)


class _Prober:
    def __init__(self, target: _Target, settings: ProbeSettings, plan: _Plan,
                 limiter: RateLimiter) -> None:
        self.target, self.settings, self.plan, self.limiter = target, settings, plan, limiter
        self.deadline = time.monotonic() + settings.endpoint_timeout_s
        self.candidates = list(target.addresses)
        self.address: str | None = None
        self.attempts: list[dict] = []
        self.certificate: dict | None = None
        self.tls_ok = False

    # -- connections
    def _connect(self) -> tuple[socket.socket, str]:
        """TCP to the first address that accepts (then only that one). Raises _Refused,
        TimeoutError, OSError."""
        last: Exception | None = None
        for family, sockaddr in list(self.candidates):
            self.limiter.wait(self.target.key)
            left = self.deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("endpoint timeout")
            sock = socket.socket(family, socket.SOCK_STREAM)
            sock.settimeout(min(self.settings.timeout_s, left))
            try:
                sock.connect(sockaddr)
            except ConnectionRefusedError as exc:
                sock.close()
                last = exc
                continue
            except BaseException:
                sock.close()
                raise
            self.candidates = [(family, sockaddr)]
            self.address = canonical_address(sockaddr[0])
            return sock, self.address
        raise _Refused(str(last) if last else "no address")

    def _wrap(self, sock: socket.socket, verify: bool) -> ssl.SSLSocket:
        if verify:
            ctx = ssl.create_default_context()
        else:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        sock.settimeout(min(self.settings.timeout_s, max(0.05, self.deadline - time.monotonic())))
        return ctx.wrap_socket(sock, server_hostname=self.target.endpoint.host)

    def _open(self, tls: bool) -> tuple[socket.socket | None, _Outcome | None]:
        """A ready connection, or the outcome that prevented one."""
        try:
            sock, _ = self._connect()
        except _Refused:
            return None, _Outcome("refused", "refused")
        except TimeoutError:
            return None, _Outcome("no-answer", "connect-timeout")
        except OSError as exc:
            return None, _Outcome("error", "connect", detail=str(exc))
        if not tls:
            return sock, None
        verify = self.certificate is None  # the first handshake checks the certificate
        try:
            ssock = self._wrap(sock, verify)
        except ssl.SSLCertVerificationError as exc:
            sock.close()
            if not verify:
                return None, _Outcome("error", "tls", detail=str(exc))
            self.certificate = {"verified": False,
                                "verify_error": exc.verify_message or str(exc)}
            return self._open(tls)
        except TimeoutError:
            sock.close()
            return None, _Outcome("no-answer", "tls-handshake-timeout")
        except (ssl.SSLError, OSError) as exc:
            sock.close()
            return None, _Outcome("not-pool", "tls-handshake-failed", detail=str(exc)[:200])
        if verify:
            self.certificate = {"verified": True, "verify_error": None}
        if "sha256" not in self.certificate:
            self.certificate.update(_certificate(ssock, self.certificate["verified"]))
        self.tls_ok = True
        return ssock, None

    # -- attempts
    def attempt(self, dialect: str, tls: bool) -> _Outcome:
        started = time.monotonic()
        sock, failed = self._open(tls)
        record: dict[str, Any] = {"dialect": dialect, "tls": tls}
        if failed is not None:
            outcome, conn = failed, None
        else:
            conn = _Conn(sock, self.deadline, self.settings)
            try:
                host = self.target.endpoint.host
                host_header = f"[{host}]" if ":" in host else host
                methods = _exchange(conn, dialect, self.plan,
                                    f"{host_header}:{self.target.endpoint.port}")
                outcome = _classify(conn, dialect, self.plan, methods)
            finally:
                conn.close()
            record.update(sent=[b.decode("utf-8", "backslashreplace") for b in conn.sent],
                          received_bytes=len(conn.received), ended=conn.ended,
                          answer=_preview(bytes(conn.received)) if conn.received else None)
        record.update(verdict=outcome.verdict, kind=outcome.kind,
                      elapsed_ms=round((time.monotonic() - started) * 1000, 1))
        if outcome.verdict == "pool":
            record.update(dialect_seen=outcome.dialect, strength=outcome.strength,
                          signs=outcome.signs)
        if outcome.detail:
            record["detail"] = outcome.detail
        self.attempts.append(record)
        outcome.dialect = outcome.dialect if outcome.verdict == "pool" else None
        return outcome

    def run(self) -> list[tuple[_Outcome, bool]]:
        mode = self.settings.tls if self.target.endpoint.tls is None else "yes"
        dialects = list(self.settings.dialects)
        done: list[tuple[_Outcome, bool]] = []

        def stop(o: _Outcome) -> bool:
            return ((o.verdict == "pool" and o.strength == "strong")
                    or o.verdict in ("refused", "error")
                    or time.monotonic() >= self.deadline)

        if mode == "auto":
            first = self.attempt(dialects[0], False)
            done.append((first, False))
            if stop(first):
                return done
            # Nothing, a reset or a TLS record in answer to plain text: a TLS port?
            if first.kind in ("tls-record", "tls-alert", "timeout", "closed", "reset"):
                outcome = self.attempt(dialects[0], True)
                done.append((outcome, True))
                if self.tls_ok:
                    mode = "yes"
                    dialects = dialects[1:]
                    if stop(outcome):
                        return done
            if mode == "auto":
                mode, dialects = "no", dialects[1:]
        tls = mode == "yes"
        for dialect in dialects:
            outcome = self.attempt(dialect, tls)
            done.append((outcome, tls))
            if stop(outcome) or (tls and not self.tls_ok):
                break  # with no TLS handshake, no dialect can be spoken
        return done


_RANK = {"pool": 0, "not-pool": 2, "no-answer": 3, "error": 4, "refused": 5}


def _verdict(outcomes: list[tuple[_Outcome, bool]], tls_ok: bool) -> tuple[_Outcome, bool]:
    def rank(item: tuple[_Outcome, bool]) -> int:
        o, over_tls = item
        if o.verdict == "pool":
            return 0 if o.strength == "strong" else 1
        if tls_ok and not over_tls and o.kind in ("tls-record", "tls-alert"):
            return 3  # plain text to a TLS port: says nothing once TLS worked
        return _RANK[o.verdict]

    return min(outcomes, key=rank)


def _probe_one(target: _Target, settings: ProbeSettings, plan: _Plan,
               limiter: RateLimiter) -> ProbeResult:
    ep = target.endpoint
    checked = time.time_ns()
    addresses = [canonical_address(a[1][0]) for a in target.addresses]
    if target.error is not None:
        return ProbeResult(ep.host, ep.host, ep.port, False, "error", None,
                           {"kind": "resolve", "detail": target.error, "attempts": []}, checked)
    prober = _Prober(target, settings, plan, limiter)
    outcomes = prober.run()
    best, over_tls = _verdict(outcomes, prober.tls_ok)
    evidence: dict[str, Any] = {"kind": best.kind}
    if best.verdict == "pool":
        evidence.update(strength=best.strength, signs=best.signs)
    if best.detail:
        evidence["detail"] = best.detail
    if len(addresses) > 1:
        evidence["addresses"] = addresses
    if prober.certificate is not None:
        evidence["certificate"] = prober.certificate
    evidence["attempts"] = prober.attempts
    return ProbeResult(ep.host, prober.address or addresses[0], ep.port, over_tls, best.verdict,
                       best.dialect if best.verdict == "pool" else None, evidence, checked)


def _certificate(ssock: ssl.SSLSocket, verified: bool) -> dict[str, Any]:
    """Names and facts of the peer certificate (verified or not)."""
    der = ssock.getpeercert(binary_form=True) or b""
    info: dict[str, Any] = {"sha256": hashlib.sha256(der).hexdigest() if der else None,
                            "tls_version": ssock.version(),
                            "cipher": (ssock.cipher() or (None,))[0]}
    names: list[str] = []
    parsed = ssock.getpeercert() if verified else None
    if parsed:
        names = [v for k, v in parsed.get("subjectAltName", ()) if k in ("DNS", "IP Address")]
        subject = dict(x for rdn in parsed.get("subject", ()) for x in rdn)
        issuer = dict(x for rdn in parsed.get("issuer", ()) for x in rdn)
        info.update(subject=", ".join(f"{k}={v}" for k, v in subject.items()),
                    issuer=", ".join(f"{k}={v}" for k, v in issuer.items()),
                    not_after=parsed.get("notAfter"), self_signed=subject == issuer)
        if subject.get("commonName") and subject["commonName"] not in names:
            names.append(subject["commonName"])
    elif der:
        try:  # an optional helper: present wherever pyOpenSSL or pip's TLS stack is
            from cryptography import x509
            from cryptography.x509.oid import NameOID
        except ImportError:
            info["names_unread"] = "install 'cryptography' to read unverified certificates"
        else:
            try:
                cert = x509.load_der_x509_certificate(der)
                with contextlib.suppress(x509.ExtensionNotFound):
                    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
                    names = [*san.value.get_values_for_type(x509.DNSName),
                             *map(str, san.value.get_values_for_type(x509.IPAddress))]
                for cn in cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME):
                    if cn.value not in names:
                        names.append(str(cn.value))
                info.update(subject=cert.subject.rfc4514_string(),
                            issuer=cert.issuer.rfc4514_string(),
                            not_after=cert.not_valid_after_utc.isoformat(),
                            self_signed=cert.subject == cert.issuer)
            except ValueError as exc:
                info["names_unread"] = f"certificate not readable: {exc}"
    info["names"] = names
    return info


# ---------------------------------------------------------------------------- many endpoints


def probe_endpoints(endpoints: Sequence[Endpoint | str], settings: ProbeSettings | None = None,
                    fingerprints: Fingerprints | None = None,
                    limiter: RateLimiter | None = None) -> Iterator[ProbeResult]:
    """Probe each endpoint and yield its :class:`ProbeResult`, in the order given.

    Names are resolved with the system resolver first; endpoints on one address are probed
    one after the other, different addresses up to ``settings.workers`` at once, all under
    one :class:`RateLimiter`.
    """
    settings = settings or ProbeSettings()
    plan = _plan(fingerprints or load_fingerprints())
    limiter = limiter or RateLimiter(settings.rate, settings.host_rate)
    targets = [_resolve(e if isinstance(e, Endpoint) else parse_endpoint(e)) for e in endpoints]
    if not targets:
        return
    groups: dict[str, list[int]] = {}
    for i, t in enumerate(targets):
        groups.setdefault(t.key, []).append(i)
    done: queue.Queue[tuple[int, ProbeResult | BaseException]] = queue.Queue()
    work: queue.Queue[list[int]] = queue.Queue()
    for indices in groups.values():
        work.put(indices)
    stop = threading.Event()

    def worker() -> None:
        while not stop.is_set():
            try:
                indices = work.get_nowait()
            except queue.Empty:
                return
            for i in indices:
                if stop.is_set():
                    return
                try:
                    done.put((i, _probe_one(targets[i], settings, plan, limiter)))
                except BaseException as exc:  # noqa: BLE001 (reported to the caller's thread)
                    done.put((i, exc))

    threads = [threading.Thread(target=worker, name=f"poolwatch-probe-{n}", daemon=True)
               for n in range(min(settings.workers, len(groups)))]
    for t in threads:
        t.start()
    ready: dict[int, ProbeResult] = {}
    try:
        for next_i in range(len(targets)):
            while next_i not in ready:
                i, result = done.get()
                if isinstance(result, BaseException):
                    raise result
                ready[i] = result
            yield ready.pop(next_i)
    finally:
        stop.set()


def endpoints_from(args: Iterable[str], files: Iterable[str | Path] = ()) -> list[Endpoint]:
    """Endpoints from arguments and ``--from`` files; ConfigError for a bad one."""
    out: list[Endpoint] = []
    for a in args:
        try:
            out.append(parse_endpoint(a))
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
    for f in files:
        out.extend(read_endpoints(f))
    return out
