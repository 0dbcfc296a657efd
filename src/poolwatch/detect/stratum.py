"""Mining sessions from reassembled TCP streams, in every Stratum dialect.

:class:`StratumTracker` consumes the :class:`~poolwatch.detect.streams.StreamData` and
:class:`~poolwatch.detect.streams.StreamEnd` events of the stream collector and returns one
:class:`~poolwatch.detect.records.StratumSession` per conversation that really is mining.

Three layers, so that detection knowledge stays data:

* **Framing** (this module's code): newline-delimited JSON per direction (partial lines
  across chunks, several messages per chunk, resynchronisation at the next newline after a
  mid-stream join or a gap, line and buffer caps), HTTP/1.x JSON-RPC bodies for getwork,
  Stratum V2's plaintext binary frames, and the shape of its Noise handshake when encrypted.
* **Vocabulary** (``fingerprints/dialects.yaml``): which methods are client or server
  methods, logins, jobs, submits, difficulty and target changes; where agent and login sit
  (``agent_field``/``wallet_field``); parameter counts; variant markers; share-work rules.
  Adding a pool, an agent or a dialect variant is an edit of the fingerprint files.
* **Conclusions** (at the end of a conversation): which side is the miner (the side that
  sends client methods, never simply the first sender), the dialect (signatures and message
  shapes scored per dialect), the algorithm family (announced algorithms, pool endpoint,
  job shapes, markers, coin hints, wallet format, the block version of CryptoNote job blobs,
  each only as strong as its evidence), coin, pool, hashrate and power.

A conversation is a session only on real evidence: a login of a mining dialect, or jobs and
submits in a dialect's shapes. Plain JSON-RPC (node RPC, Electrum, chat) never becomes one.
"""

from __future__ import annotations

import base64
import binascii
import functools
import json
import math
import re
import struct
from collections import Counter, OrderedDict, deque
from collections.abc import Callable, Iterable
from typing import Any

from poolwatch.fingerprints import (
    AgentMatch,
    EfficiencyRange,
    Fingerprints,
    Variant,
    load_fingerprints,
)
from poolwatch.jsontext import loads as json_loads

from .hashrate import ShareTally, estimate_hashrate, estimate_power
from .records import StratumSession, community_id_of
from .streams import Conversation, StreamData, StreamEnd

__all__ = ["StratumSession", "StratumTracker", "split_login"]

# (dest_ip, dest_port, the session's first-seen time in ns or None) -> host name or None
HostLookup = Callable[[str, int, "int | None"], "str | None"]

_HEX = re.compile(r"(?:0x)?[0-9a-fA-F]+")
_HEX64 = re.compile(r"(?:0x)?[0-9a-fA-F]{64}")
_HOST = re.compile(r"(?=.{1,253}$)[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9-]+)+")
_LOC = re.compile(r"([A-Za-z_][\w.]*) params(?:\[(\d+)\]|\.(\w+))")
_REPLY = re.compile(r"reply to ([\w.]+)")
_TICKER = re.compile(r"[A-Z0-9]{2,10}")
_PAYMENT_ID = re.compile(r"[0-9a-fA-F]{16}|[0-9a-fA-F]{64}")
_SEPARATORS = "./+:"
_EXCLUDED_ERRORS = (22, 23)  # duplicate, low difficulty: no work behind the share (ZIP 301)
# A job blob's block major version, once the coin is known, says which algorithm hashes it:
# direct evidence, above a wallet format (3) and a pool endpoint's family with it (4 + 3).
# An announced algorithm (xmrig "algo" in the login or job) still wins: the version then
# does not vote.
_BLOB_VERSION_WEIGHT = 8
MARKER_SEARCH_BYTES = 32 * 1024  # lines searched for variant markers together (memory per session)
MEMO_ENTRIES = 4096  # logins and agents remembered by a tracker (see StratumTracker.__init__)
_MISSING = object()


def _is_hex(v: Any, exact64: bool = False) -> bool:
    return isinstance(v, str) and (_HEX64 if exact64 else _HEX).fullmatch(v) is not None


def _norm_hex(v: Any) -> str:
    s = str(v).lower()
    return s.removeprefix("0x")


def _number(v: Any) -> float | None:
    """A positive finite difficulty from a JSON number or numeric string, else None."""
    if isinstance(v, bool):
        return None
    try:
        x = float(v)
    except (TypeError, ValueError):
        return None
    return x if math.isfinite(x) and x > 0 else None


def _at(params: Any, loc: int | str | None) -> Any:
    if isinstance(loc, int) and isinstance(params, list) and len(params) > loc:
        return params[loc]
    if isinstance(loc, str) and isinstance(params, dict):
        return params.get(loc)
    return None


@functools.lru_cache(maxsize=4096)
def _ticker(token: str) -> str | None:
    """A plain coin ticker from a fingerprint coin token ("DGB-SCRYPT" → "DGB"). Cached:
    asked for the same few tokens of the fingerprints at every session's end."""
    head = token.split("-", 1)[0]
    return head if _TICKER.fullmatch(head) else None


# ---------------------------------------------------------------------------- logins


def split_login(fp: Fingerprints, login: str) -> tuple[str | None, str | None, str | None]:
    """(wallet, account, worker) of a login as sent.

    The wallet is the address a wallet format of ``fingerprints/wallets.yaml`` accepts (whole
    login, or its part before a separator), else None and the part before the first
    separator is an account name. The worker is what follows, without an e-mail part
    ("/me@example.com"), a payment id (16 or 64 hex) or a fixed-difficulty suffix ("+50000").
    """
    login = login.strip()
    matches = fp.match_wallet(login)
    if not matches and ":" in login:
        matches = fp.match_wallet(login.split(":", 1)[0])
    if matches:
        wallet = matches[0].address
        at = login.find(wallet)
        account, rest = wallet, login[at + len(wallet):] if at >= 0 else ""
    else:
        wallet = None
        cut = min((i for i in (login.find(s) for s in _SEPARATORS) if i > 0), default=-1)
        account, rest = (login, "") if cut < 0 else (login[:cut], login[cut:])
    sep, rest = rest[:1], rest[1:]
    rest = re.sub(r"\+\d+(?:\.\d+)?$", "", rest)
    if sep == "+" and re.fullmatch(r"\d+(?:\.\d+)?", rest):
        rest = ""
    parts = [p for p in rest.split("/") if p and "@" not in p]
    worker = parts[0] if parts else ""
    pieces = worker.split(".")
    while pieces and _PAYMENT_ID.fullmatch(pieces[0]):
        pieces.pop(0)
    return wallet, account or None, ".".join(pieces) or None


# ---------------------------------------------------------------------------- vocabulary


class _Vocabulary:
    """What the dialects in the fingerprints say about methods, compiled once."""

    def __init__(self, fp: Fingerprints) -> None:
        ds = list(fp.dialects.values())
        union = lambda attr: set().union(*(getattr(d, attr) for d in ds))
        client = union("client_methods") | union("login_methods") | union("submit_methods")
        server = union("server_methods")
        both = client & server  # a method both sides send cannot say who the miner is
        self.client, self.server = client - both, server - both
        self.login = union("login_methods")
        self.submit = union("submit_methods")
        jobs = union("job_methods")
        self.job_push, self.job_request = jobs & self.server, jobs & self.client
        self.difficulty = union("difficulty_methods")
        self.target_push = (union("target_methods") & self.server) - self.job_push
        self.hashrate = union("hashrate_methods")
        self.agent_at: dict[str, int | str] = {}
        self.login_at: dict[str, int | str] = {}
        self.version_requests: set[str] = set()
        for d in ds:
            for m in _LOC.finditer(d.agent_field):
                self.agent_at.setdefault(m[1], int(m[2]) if m[2] else m[3])
            for m in _LOC.finditer(d.wallet_field):
                self.login_at.setdefault(m[1], int(m[2]) if m[2] else m[3])
            self.version_requests.update(_REPLY.findall(d.agent_field))
        self.markers = [(mk.encode(), v.id) for v in fp.variants.values()
                        for mk in v.recognise.markers]
        # each marker text once, with every (text, variant) it stands for
        by_text: dict[bytes, list[tuple[bytes, str]]] = {}
        for mk in self.markers:
            by_text.setdefault(mk[0], []).append(mk)
        # a text with a newline can never be in one line (lines are split at newlines): left
        # out, so that searching lines joined by newlines finds exactly what each line holds
        self.marker_texts = [(text, tuple(mks)) for text, mks in by_text.items()
                             if b"\n" not in text]
        self.sv2_types: dict[int, str] = {}
        self.opaque: list[tuple[str, set[int], set[int]]] = []  # (dialect, client, server)
        self.share_records: dict[str, tuple[list[tuple[str, int]], list[tuple[str, int]]]] = {}
        for d in ds:
            if d.framing == "binary-sv2":
                self.sv2_types.update(d.message_types)
            client = {s.payload_len for s in d.client_signatures if s.high_entropy and s.payload_len}
            server = {s.payload_len for s in d.server_signatures if s.high_entropy and s.payload_len}
            if client and server:
                self.opaque.append((d.id, client, server))
                # encrypted records of fixed size: (message, bytes) client -> pool, pool -> client
                self.share_records[d.id] = (
                    [(m, d.frame.record_bytes(m)) for m in d.submit_methods
                     if d.frame and d.frame.record_bytes(m)],
                    [(m, d.frame.record_bytes(m)) for m in d.server_methods
                     if d.frame and d.frame.record_bytes(m)])
        self.opaque_lengths = set().union(*(c | s for _, c, s in self.opaque))
        # per dialect: every method it names, and accepted parameter counts per message
        self.methods: dict[str, set[str]] = {}
        self.counts: dict[str, dict[str, tuple[frozenset[int], bool]]] = {}
        for d in ds:
            self.methods[d.id] = (set(d.client_methods) | set(d.server_methods)
                                  | set(d.login_methods) | set(d.job_methods)
                                  | set(d.submit_methods) | set(d.difficulty_methods)
                                  | set(d.target_methods) | set(d.hashrate_methods))
            per = {}
            for msg in d.messages:
                if not msg.param_count:
                    continue
                accepted, complete = set(msg.param_count), True
                kind = ("notify" if msg.name in d.job_methods
                        else "submit" if msg.name in d.submit_methods else None)
                for v in fp.variants.values():
                    if kind is None or d.id not in v.dialects:
                        continue
                    counts = (v.recognise.notify_param_count if kind == "notify"
                              else v.recognise.submit_param_count)
                    accepted.update(counts)
                    if not counts and len(v.dialects) == 1:
                        complete = False  # a variant of this dialect alone, shape unknown
                per[msg.name] = (frozenset(accepted), complete)
            self.counts[d.id] = per
        self.variants_of = {d.id: [v for v in fp.variants.values() if d.id in v.dialects]
                            for d in ds}
        # CryptoNote: (coin, block major version of the job blob) -> the family it hashes with
        self.blob_variants: dict[tuple[str, int], Variant] = {
            (coin, n): v for v in fp.variants.values()
            for coin, versions in v.recognise.blob_major_versions.items() for n in versions}


# ---------------------------------------------------------------------------- state


class _Side:
    """Framing state of one direction of a conversation."""

    __slots__ = (
        "buf",
        "expect",
        "http_body",
        "http_head",
        "http_need",
        "line_frame",
        "mode",
        "resync",
        "skip",
        "skipping",
    )

    def __init__(self) -> None:
        self.buf = bytearray()
        self.expect: int | None = None  # next stream offset
        self.mode: str | None = None  # "json", "http", "sv2", "off"
        self.resync = False  # the next line may be the tail of a message: no error if bad
        self.skipping = False  # dropping an over-long line up to its newline
        self.line_frame = 0  # frame in which the line being buffered started
        self.http_head: tuple | None = None
        self.http_need: int | str | None = None
        self.http_body = bytearray()
        self.skip = 0  # bytes of an over-long HTTP body or SV2 frame still to drop


class _State:
    """Everything one conversation has shown so far (both directions)."""

    def __init__(self, conv: Conversation) -> None:
        self.conv = conv
        self.sides = (_Side(), _Side())
        self.first_ts = conv.first_ts_ns or 0
        self.last_ts = conv.last_ts_ns or 0
        self.bytes = 0
        self.messages = 0
        self.relevant = 0  # messages naming a method of some dialect
        self.dead = False
        self.framing: str | None = None
        self.votes = [0, 0]  # client-method messages minus server-method messages, per side
        self.feats: set[tuple[str, Any]] = set()  # (method, param count or "obj")
        self.lines: list[tuple[int, int, bytes]] = []  # evidence: (direction, frame, raw)
        self.sig_lines: tuple[list[bytes], list[bytes]] = ([], [])
        self.key_frames: list[int] = []
        self.marker_hits: set[tuple[bytes, str]] = set()  # see StratumTracker._markers
        self.marker_lines: list[bytes] = []  # lines not yet searched for markers
        self.marker_bytes = 0
        self.json_errors = self.partial_lines = self.long_lines = 0
        self.gaps = 0
        # protocol state
        self.pending: tuple[OrderedDict, OrderedDict] = (OrderedDict(), OrderedDict())
        self.http_pending: tuple[deque, deque] = (deque(maxlen=256), deque(maxlen=256))
        self.jobs: OrderedDict[str, tuple[float | None, str | None]] = OrderedDict()
        self.pending_diff: float | None = None
        self.pending_target: str | None = None
        self.in_effect: tuple[float | None, str | None] | None = None
        self.first_work_ts: int | None = None
        self.channels: dict[int, str] = {}  # SV2 channel -> target (LE hex)
        self.sv2_pending: OrderedDict[tuple[int, int], tuple] = OrderedDict()
        self.tallies: dict[tuple[float | None, str | None], list[int]] = {}
        self.submitted = self.accepted = self.rejected = 0
        self.error_codes: dict[str, int] = {}
        self.logins: list[str] = []
        self.workers: list[str] = []
        self.passwords: list[str] = []
        self.agent: str | None = None
        self.http_agent: str | None = None
        self.top_worker: str | None = None
        self.pool_host: str | None = None
        self.algos: list[tuple[str, int, str]] = []  # (announced name, weight, where)
        self.notify_counts: set[int] = set()
        self.submit_counts: set[int] = set()
        self.login_seen = self.login_strong = self.login_rejected = False
        self.server_confirmed = self.job_seen = self.submit_seen = False
        self.mining_hint = False  # HTTP mining headers (X-Mining-Extensions, X-Long-Polling …)
        self.eth_http = False
        self.sv2_protocol: int | None = None
        self.reported_hs: float | None = None
        self.device_id: str | None = None
        self.sv2_setup: dict[str, Any] | None = None
        self.solution_sizes: set[int] = set()  # Equihash solution bytes seen in submits
        self.blob_major: int | None = None  # block major version of the first CryptoNote job blob
        self.worker_shares: dict[str, int] = {}
        self.first_payload: list[tuple[int, bool] | None] = [None, None]  # (length, random?)
        self.records = [0, 0]  # segments of an opaque (encrypted) stream, per side
        self.record_sizes: list[dict[int, int]] = [{}, {}]  # segment bytes -> count, per side

    def touch(self, ts: int) -> None:
        if ts:
            self.first_ts = ts if not self.first_ts else min(self.first_ts, ts)
            self.last_ts = max(self.last_ts, ts)

    def pend(self, d: int, key: Any, entry: tuple) -> None:
        q = self.pending[d]
        q.setdefault(key, deque()).append(entry)
        q.move_to_end(key)
        while len(q) > 1024:
            q.popitem(last=False)

    def unpend(self, d: int, key: Any) -> tuple | None:
        q = self.pending[d].get(key)
        if not q:
            return None
        entry = q.popleft()
        if not q:
            del self.pending[d][key]
        return entry

    def add_name(self, names: list[str], name: Any, cap: int = 256) -> None:
        if isinstance(name, str) and name and name not in names and len(names) < cap:
            names.append(name)

    def record_job(self, key: Any, work: tuple[float | None, str | None], ts: int,
                   frame: int) -> None:
        self.job_seen = True
        if not self.key_frames or len(self.key_frames) < 16:
            self.key_frames.append(frame)
        if key is not None:
            self.jobs[str(key)] = work
            self.jobs.move_to_end(str(key))
            while len(self.jobs) > 512:
                self.jobs.popitem(last=False)
        if work != (None, None):
            self.in_effect = work
            if self.first_work_ts is None:
                self.first_work_ts = ts

    def count_share(self, key: tuple[float | None, str | None]) -> tuple:
        self.submitted += 1
        self.submit_seen = True
        if key not in self.tallies and len(self.tallies) >= 4096:
            key = (None, None)
        self.tallies.setdefault(key, [0, 0])[0] += 1
        return ("submit", key)

    def share_result(self, key: tuple, ok: bool | None, error: Any) -> None:
        if ok is None:
            return
        if ok:
            self.accepted += 1
            return
        self.rejected += 1
        code, text = _error_code(error)
        label = str(code if code is not None else text or "rejected")[:64]
        self.error_codes[label] = self.error_codes.get(label, 0) + 1
        low = (text or "").lower()
        if code in _EXCLUDED_ERRORS or any(w in low for w in ("duplicate", "low difficulty",
                                                             "too low")):
            self.tallies.setdefault(key, [0, 0])[1] += 1


def _error_code(error: Any) -> tuple[int | None, str | None]:
    if isinstance(error, list) and error:
        code = error[0] if isinstance(error[0], int) else None
        text = error[1] if len(error) > 1 and isinstance(error[1], str) else None
        return code, text
    if isinstance(error, dict):
        code = error.get("code")
        return (code if isinstance(code, int) else None), str(error.get("message") or "")
    if isinstance(error, str):
        return None, error
    return None, None


# ---------------------------------------------------------------------------- SV2 reader


class _Reader:
    """Little-endian Stratum V2 data types (sv2-spec §3.2)."""

    __slots__ = ("b", "i")

    def __init__(self, b: bytes) -> None:
        self.b, self.i = b, 0

    def _take(self, n: int) -> bytes:
        if self.i + n > len(self.b):
            raise ValueError("truncated SV2 message")
        out = self.b[self.i:self.i + n]
        self.i += n
        return out

    def u8(self) -> int:
        return self._take(1)[0]

    def u16(self) -> int:
        return int.from_bytes(self._take(2), "little")

    def u32(self) -> int:
        return int.from_bytes(self._take(4), "little")

    def f32(self) -> float:
        return struct.unpack("<f", self._take(4))[0]

    def u256(self) -> bytes:
        return self._take(32)

    def str0_255(self) -> str:
        return self._take(self.u8()).decode("utf-8", "replace")


# ---------------------------------------------------------------------------- the tracker


class StratumTracker:
    """Per-conversation Stratum parsers fed with stream events; sessions out at the end.

    ``feed`` takes one event and returns the sessions of conversations that ended with it;
    ``flush`` ends every conversation still open. ``host_of(dest_ip, dest_port, first_ts_ns)``
    may name the host the miner connected to (the scan's passive DNS map) when the protocol
    itself does not. ``stats`` counts what the caps and error paths did.
    """

    def __init__(
        self,
        fingerprints: Fingerprints | None = None,
        *,
        host_of: HostLookup | None = None,
        max_line: int = 64 * 1024,
        max_body: int = 1 << 20,
        evidence_lines: int = 6,
        evidence_chars: int = 1024,
        give_up_bytes: int = 64 * 1024,
        give_up_messages: int = 1000,
    ) -> None:
        self.fp = fingerprints if fingerprints is not None else load_fingerprints()
        self.vocab = _Vocabulary(self.fp)
        self.host_of = host_of
        self.max_line = max_line
        self.max_body = max_body
        self.evidence_lines = evidence_lines
        self.evidence_chars = evidence_chars
        self.give_up_bytes = give_up_bytes
        self.give_up_messages = give_up_messages
        self._convs: dict[Conversation, _State] = {}
        self._dialect_coins: dict[str, frozenset[str | None]] = {}  # see _coin
        # servers that received a client method of some dialect, as they are met (before any
        # session is reported): a sensor's prefilter lets their traffic through in full
        self.servers: dict[str, None] = {}
        # logins and user agents as read at sessions' ends, remembered (a farm's miners
        # send the same ones on every connection); cleared when full
        self._split_logins: dict[str, tuple[str | None, str | None, str | None]] = {}
        self._agent_matches: dict[str, AgentMatch | None] = {}
        self.max_servers = 4096
        self.stats: dict[str, int] = dict.fromkeys(
            ("conversations", "sessions", "messages", "json_errors", "partial_lines",
             "long_lines", "gaps", "given_up", "sv2_errors", "http_errors", "servers"), 0)

    def __len__(self) -> int:
        return len(self._convs)

    # -- events -------------------------------------------------------------------------

    def feed(self, event: StreamData | StreamEnd) -> list[StratumSession]:
        """Parse new bytes, or conclude a conversation that ended."""
        if isinstance(event, StreamEnd):
            st = self._convs.pop(event.conversation, None)
            if st is None:
                return []
            st.touch(event.conversation.last_ts_ns)
            session = self._finish(st)
            return [session] if session is not None else []
        st = self._convs.get(event.conversation)
        if st is None:
            st = self._convs[event.conversation] = _State(event.conversation)
            self.stats["conversations"] += 1
        if not st.dead:
            self._chunk(st, event.direction, event.chunk)
        return []

    def _note_server(self, ip: str) -> None:
        if ip not in self.servers:
            self.servers[ip] = None
            self.stats["servers"] += 1
            if len(self.servers) > self.max_servers:
                del self.servers[next(iter(self.servers))]

    def feed_all(self, events: Iterable[StreamData | StreamEnd]) -> list[StratumSession]:
        out: list[StratumSession] = []
        for e in events:
            out.extend(self.feed(e))
        return out

    def report_open(self, every_ns: int) -> list[StratumSession]:
        """A sensor's interim reports: every open session that has run ``every_ns`` since its
        last report is reported as it stands (``evidence["part"] = "interim"``) and counts
        afresh from there. A miner that stays connected for weeks is thus on record within
        ``every_ns``; the parts cover consecutive times, so shares and hashrate are never
        counted twice. What the session has shown (login, agent, difficulty in effect, jobs,
        pool name) carries over."""
        out = []
        for st in self._convs.values():
            if st.dead or not st.first_ts or st.last_ts - st.first_ts < every_ns:
                continue
            session = self._finish(st)
            if session is None:
                continue
            session.evidence["part"] = "interim"
            out.append(session)
            st.pool_host = st.pool_host or session.pool_host
            st.first_ts = st.last_ts
            if st.first_work_ts is not None:
                st.first_work_ts = st.last_ts
            st.tallies = {}
            st.submitted = st.accepted = st.rejected = 0
            st.error_codes = {}
            st.worker_shares = {}
            st.key_frames = []
            st.record_sizes = [{}, {}]
        return out

    def flush(self) -> list[StratumSession]:
        """End of input: conclude every conversation still open."""
        out = []
        for st in list(self._convs.values()):
            session = self._finish(st)
            if session is not None:
                out.append(session)
        self._convs.clear()
        return out

    # -- framing ------------------------------------------------------------------------

    def _chunk(self, st: _State, d: int, chunk) -> None:
        side = st.sides[d]
        data = chunk.data
        if ts := chunk.ts_ns:  # st.touch(), inline: this runs for every segment
            if not st.first_ts or ts < st.first_ts:
                st.first_ts = ts
            if ts > st.last_ts:
                st.last_ts = ts
        if side.expect is None:
            side.expect = chunk.offset
            at_start = chunk.offset == 0 and st.conv.syn_from is not None
            side.resync = not at_start
            if at_start:
                st.first_payload[d] = (len(data), _random_looking(data))
        if chunk.offset > side.expect:  # bytes missing: resynchronise at the next newline
            st.gaps += 1
            self.stats["gaps"] += 1
            side.buf.clear()
            side.skipping = False
            side.resync = True
            side.http_head, side.http_need, side.skip = None, None, 0
            if side.mode in ("http", "sv2"):
                side.mode = "off"
            side.expect = chunk.offset
        elif chunk.offset < side.expect:  # already delivered
            cut = side.expect - chunk.offset
            if cut >= len(data):
                return
            data = data[cut:]
        side.expect += len(data)
        st.bytes += len(data)
        if side.mode is None:
            side.mode = self._mode(st, d, bytes(side.buf) + data)
            if side.mode is None:
                side.buf += data
                return
            data, side.buf = bytes(side.buf) + data, bytearray()
        if side.mode == "json":
            self._json(st, d, side, data, chunk.ts_ns, chunk.frame)
        elif side.mode == "http":
            self._http(st, d, side, data, chunk.ts_ns, chunk.frame)
        elif side.mode == "sv2":
            self._sv2(st, d, side, data, chunk.ts_ns, chunk.frame)
        elif side.mode == "opaque":
            st.records[d] += 1
            sizes = st.record_sizes[d]
            if len(sizes) < 64 or len(data) in sizes:  # bounded: encrypted sizes vary a lot
                sizes[len(data)] = sizes.get(len(data), 0) + 1
        if not st.dead and (
            (st.messages == 0 and st.bytes > self.give_up_bytes)
            or (st.relevant == 0 and st.messages > self.give_up_messages)
            or st.sides[0].mode == st.sides[1].mode == "off"
        ):
            st.dead = True  # not a protocol of ours: stop spending time on it
            self.stats["given_up"] += 1
            for s in st.sides:
                s.buf = bytearray()

    def _mode(self, st: _State, d: int, data: bytes) -> str | None:
        head = data.lstrip()
        if not head:
            return None if len(data) < self.max_line else "off"
        if head[:1] in (b"{", b"["):
            return "json" if st.framing in (None, "ndjson") else "off"
        if head.startswith((b"POST ", b"GET ", b"HTTP/1.")):
            return "http" if st.framing in (None, "http-json") else "off"
        if len(data) >= 6 and self._sv2_start(st, d, data):
            st.framing = "binary-sv2"
            return "sv2"
        if len(data) < 6 and not st.sides[d].resync:
            return None
        if st.sides[d].resync:
            return "json" if st.framing in (None, "ndjson") else "off"
        first = st.first_payload[d]
        if first is not None and first[1] and first[0] in self.vocab.opaque_lengths:
            return "opaque"  # maybe a Noise handshake (encrypted Stratum V2): count segments
        return "off"

    def _sv2_start(self, st: _State, d: int, data: bytes) -> bool:
        """A plaintext SV2 connection starts with SetupConnection (or its answer)."""
        if st.sides[d].resync:
            return False
        ext, mtype, length = data[0] | data[1] << 8, data[2], data[3] | data[4] << 8 | data[5] << 16
        name = self.vocab.sv2_types.get(mtype)
        if ext != 0 or name is None or length > 4096:
            return False
        if name == "SetupConnection":
            return length >= 16 and len(data) >= 7 and data[6] <= 2
        return st.framing == "binary-sv2" and name.startswith("SetupConnection.")

    def _json(self, st: _State, d: int, side: _Side, data: bytes, ts: int, frame: int) -> None:
        if side.skipping:  # the rest of an over-long line: drop it up to its newline
            nl = data.find(b"\n")
            if nl < 0:
                return
            data, side.skipping, side.resync = data[nl + 1:], False, False
        buf = side.buf
        if not buf:
            side.line_frame = frame
        buf += data
        start = 0
        while (nl := buf.find(b"\n", start)) >= 0:
            line, line_frame = bytes(buf[start:nl]), side.line_frame
            start = nl + 1
            side.line_frame = frame
            self._line(st, d, line, ts, line_frame)
            if st.dead:
                return
        del buf[:start]
        if len(buf) > self.max_line:
            buf.clear()
            side.skipping = True
            st.long_lines += 1
            self.stats["long_lines"] += 1

    def _line(self, st: _State, d: int, line: bytes, ts: int, frame: int) -> None:
        side = st.sides[d]
        line = line.strip()
        if not line:
            return
        lenient, side.resync = side.resync, False
        try:
            obj = json_loads(line)
        except (ValueError, RecursionError):
            if lenient:
                st.partial_lines += 1
                self.stats["partial_lines"] += 1
            else:
                st.json_errors += 1
                self.stats["json_errors"] += 1
            return
        if isinstance(obj, dict):
            st.framing = st.framing or "ndjson"
            self._message(st, d, obj, line, ts, frame)

    def _http(self, st: _State, d: int, side: _Side, data: bytes, ts: int, frame: int) -> None:
        """HTTP/1.x messages with JSON bodies (getwork, getblocktemplate, eth_getWork)."""
        side.buf += data
        buf = side.buf
        while True:
            if side.http_head is None:
                end = buf.find(b"\r\n\r\n")
                if end < 0:
                    if len(buf) > 16384:
                        side.mode = "off"
                        buf.clear()
                        self.stats["http_errors"] += 1
                    return
                lines = bytes(buf[:end]).decode("latin-1").split("\r\n")
                del buf[:end + 4]
                headers = {}
                for h in lines[1:]:
                    k, _, v = h.partition(":")
                    headers[k.strip().lower()] = v.strip()
                side.http_head = (lines[0], headers, frame)
                if "chunked" in headers.get("transfer-encoding", "").lower():
                    side.http_need = "chunked"
                else:
                    try:
                        side.http_need = max(0, int(headers.get("content-length", "0")))
                    except ValueError:
                        side.http_need = 0
                    if side.http_need > self.max_body:
                        side.skip, side.http_need = side.http_need, 0
                side.http_body = bytearray()
            if side.skip:
                n = min(side.skip, len(buf))
                del buf[:n]
                side.skip -= n
                if side.skip:
                    return
                body = None
            elif side.http_need == "chunked":
                while (eol := buf.find(b"\r\n")) >= 0:
                    try:
                        size = int(bytes(buf[:eol]).split(b";")[0], 16)
                    except ValueError:
                        side.mode = "off"
                        self.stats["http_errors"] += 1
                        return
                    if len(buf) < eol + 2 + size + 2:
                        return
                    side.http_body += buf[eol + 2:eol + 2 + size]
                    del buf[:eol + 2 + size + 2]
                    if size == 0 or len(side.http_body) > self.max_body:
                        break
                else:
                    return
                body = bytes(side.http_body) if len(side.http_body) <= self.max_body else None
            else:
                if len(buf) < side.http_need:
                    return
                body = bytes(buf[:side.http_need])
                del buf[:side.http_need]
            start, headers, head_frame = side.http_head
            side.http_head, side.http_need = None, None
            self._http_message(st, d, start, headers, body, ts, head_frame)
            if st.dead:
                return

    def _http_message(self, st: _State, d: int, start: str, headers: dict, body: bytes | None,
                      ts: int, frame: int) -> None:
        st.framing = st.framing or "http-json"
        if not start.startswith("HTTP/"):
            agent = headers.get("user-agent")
            if agent and st.http_agent is None:
                st.http_agent = agent
            auth = headers.get("authorization", "")
            if auth.lower().startswith("basic "):
                try:
                    user, _, password = base64.b64decode(auth[6:].strip()).decode(
                        "utf-8", "replace").partition(":")
                except (binascii.Error, ValueError):
                    user = password = ""
                st.add_name(st.logins, user)
                st.add_name(st.passwords, password, cap=8)
            host = headers.get("host", "").rsplit(":", 1)[0].strip("[]")
            if _HOST.fullmatch(host) and st.pool_host is None:
                st.pool_host = host
            if "x-mining-extensions" in headers:
                st.mining_hint = True
        elif any(h in headers for h in ("x-long-polling", "x-stratum", "x-roll-ntime")):
            st.mining_hint = True
        obj: Any = None
        if body:
            try:
                obj = json_loads(body)
            except (ValueError, RecursionError):
                st.json_errors += 1
                self.stats["json_errors"] += 1
        raw = (start + " " + (body or b"").decode("utf-8", "replace")).encode()
        if isinstance(obj, dict):
            self._message(st, d, obj, raw, ts, frame, http=True)
        elif not start.startswith("HTTP/"):
            st.http_pending[d].append(("", ("job",)))  # a long-poll GET: answered with work
        elif st.http_pending[1 - d]:
            st.http_pending[1 - d].popleft()

    def _sv2(self, st: _State, d: int, side: _Side, data: bytes, ts: int, frame: int) -> None:
        """Plaintext Stratum V2 frames: 6-byte header, then the payload (sv2-spec §3.2)."""
        buf = side.buf
        buf += data
        while True:
            if side.skip:
                n = min(side.skip, len(buf))
                del buf[:n]
                side.skip -= n
                if side.skip:
                    return
            if len(buf) < 6:
                return
            ext = buf[0] | buf[1] << 8
            mtype, length = buf[2], buf[3] | buf[4] << 8 | buf[5] << 16
            if 6 + length > self.max_line:
                side.skip = 6 + length
                continue
            if len(buf) < 6 + length:
                return
            payload = bytes(buf[6:6 + length])
            del buf[:6 + length]
            name = self.vocab.sv2_types.get(mtype) if ext & 0x7FFF == 0 else None
            if name is None:
                continue
            st.messages += 1
            self.stats["messages"] += 1
            try:
                self._sv2_message(st, d, name, _Reader(payload), ts, frame)
            except (ValueError, struct.error):
                self.stats["sv2_errors"] += 1

    # -- messages -----------------------------------------------------------------------

    def _evidence_line(self, st: _State, d: int, raw: bytes, frame: int) -> None:
        if len(st.lines) < self.evidence_lines:
            st.lines.append((d, frame, raw[: self.evidence_chars]))
        if len(st.sig_lines[d]) < 8:
            st.sig_lines[d].append(raw[:4096])
        if st.messages <= 500:
            st.marker_lines.append(raw)
            st.marker_bytes += len(raw)
            if st.marker_bytes > MARKER_SEARCH_BYTES:
                self._markers(st)

    def _markers(self, st: _State) -> set[tuple[bytes, str]]:
        """The (marker, variant) pairs found in the conversation's first 500 messages.

        Lines wait and are searched together, joined by newlines: one search per marker over
        ~32 KB instead of one per marker per line (the benchmark input's 42,000 Stratum
        lines, 14 markers, in isolation: 0.42 s line by line, 0.12 s joined). No marker text
        holds a newline (``_Vocabulary``), so a marker is in the joined text exactly when it
        is in a line."""
        if st.marker_lines:
            joined = b"\n".join(st.marker_lines)
            st.marker_lines, st.marker_bytes = [], 0
            hits = st.marker_hits
            for text, mks in self.vocab.marker_texts:
                if mks[0] not in hits and text in joined:
                    hits.update(mks)
        return st.marker_hits

    def _message(self, st: _State, d: int, obj: dict, raw: bytes, ts: int, frame: int,
                 http: bool = False) -> None:
        v = self.vocab
        st.messages += 1
        self.stats["messages"] += 1
        method = obj.get("method")
        if isinstance(method, str):
            params = obj.get("params")
            role = "c" if method in v.client else "s" if method in v.server else None
            if role is None and method not in v.version_requests:
                if http:
                    st.http_pending[d].append((method, None))
                return
            st.relevant += 1
            self._evidence_line(st, d, raw, frame)
            st.votes[d] += 1 if role == "c" else -1 if role == "s" else 0
            if role == "c" and st.votes[d] == 1:
                self._note_server(st.conv.b_ip if d == 0 else st.conv.a_ip)
            n = len(params) if isinstance(params, list) else "obj" if isinstance(params, dict) else None
            st.feats.add((method, n))
            if http and method.startswith("eth_"):
                st.eth_http = True
            extra: tuple | None = None
            if method in v.login:
                extra = self._login(st, method, params, obj)
            elif method in v.submit and (params or method not in v.job_request):
                extra = self._submit(st, params, obj, frame)
            elif method in v.job_request:
                extra = ("job",)
            elif method in v.job_push:
                self._job_push(st, params, ts, frame)
            elif method in v.difficulty:
                if (x := _number(_at(params, 0))) is not None:
                    st.pending_diff, st.server_confirmed = x, True
            elif method in v.target_push:
                self._target_push(st, params)
            elif method in v.version_requests:
                extra = ("version",)
            if method in v.hashrate:
                rate = _at(params, 0) if isinstance(params, list) else None
                try:
                    st.reported_hs = float(int(rate, 16)) if isinstance(rate, str) else st.reported_hs
                except ValueError:
                    pass
            # BIP 310 mining.configure info.connection-url (looked for only in lines that can
            # hold it: the key as written, or escaped)
            if isinstance(params, list) and (b"connection-url" in raw or b"\\u" in raw):
                for p in params:
                    url = p.get("info.connection-url") if isinstance(p, dict) else None
                    if isinstance(url, str) and st.pool_host is None:
                        host = re.sub(r"^[\w+]+://", "", url).split("/")[0].rsplit(":", 1)[0]
                        st.pool_host = host if _HOST.fullmatch(host) else None
            if http:
                st.http_pending[d].append((method, extra))
            elif obj.get("id") is not None and extra is not None:
                st.pend(d, _id_key(obj["id"]), (method, extra))
            return
        if "result" not in obj and "error" not in obj:
            return
        result, error = obj.get("result"), obj.get("error")
        if http:
            req = st.http_pending[1 - d].popleft() if st.http_pending[1 - d] else None
        else:
            req = st.unpend(1 - d, _id_key(obj.get("id")))
        if req is not None and req[1] is not None:
            self._evidence_line(st, d, raw, frame)
            self._response(st, req, result, error, ts, frame)
        elif req is None and self._job_result(st, result, ts, frame):
            self._evidence_line(st, d, raw, frame)  # ETH-PROXY pushes work as a bare result
            st.relevant += 1
            st.votes[d] -= 1

    def _login(self, st: _State, method: str, params: Any, obj: dict) -> tuple | None:
        v = self.vocab
        agent_loc, login_loc = v.agent_at.get(method), v.login_at.get(method)
        if not isinstance(params, (list, dict)):
            return None
        locs = [x for x in (agent_loc, login_loc) if x is not None]
        if locs and not any(isinstance(x, int) == isinstance(params, list) for x in locs):
            return None
        agent, login = _at(params, agent_loc), _at(params, login_loc)
        if isinstance(params, dict) and login_loc is not None and not isinstance(login, str):
            return None
        if isinstance(agent, str) and agent and st.agent is None:
            st.agent = agent
        if isinstance(login, str) and login:
            st.add_name(st.logins, login)
            st.add_name(st.workers, login)
            password = (params.get("pass") if isinstance(params, dict)
                        else _at(params, login_loc + 1) if isinstance(login_loc, int) else None)
            st.add_name(st.passwords, password, cap=8)
        if isinstance(params, list) and len(params) >= 4 and agent_loc == 0:
            host = params[2]  # ZIP 301: [agent, session_id, connect_host, connect_port]
            if isinstance(host, str) and _HOST.fullmatch(host) and st.pool_host is None:
                st.pool_host = host
        if isinstance(params, dict):
            host = params.get("host")
            if isinstance(host, str) and _HOST.fullmatch(host) and st.pool_host is None:
                st.pool_host = host
            algos = params.get("algo")
            if isinstance(algos, list) and algos and isinstance(algos[0], str):
                st.algos.append((algos[0], 3, f"{method} algo list"))
            rigid = params.get("rigid")
            if isinstance(rigid, str) and rigid and st.top_worker is None:
                st.top_worker = rigid
        worker = obj.get("worker")
        if isinstance(worker, str) and worker and st.top_worker is None:
            st.top_worker = worker
        st.login_seen = True
        # a namespaced method (mining.subscribe, eth_submitLogin) is mining by itself; a
        # plain "login" needs a known miner agent, a wallet, or the pool's answer
        if "." in method or "_" in method or isinstance(agent, str) and self.fp.match_agent(agent) is not None or isinstance(login, str) and self.fp.match_wallet(login):
            st.login_strong = True
        return ("login",)

    def _submit(self, st: _State, params: Any, obj: dict, frame: int) -> tuple | None:
        if isinstance(params, dict):  # CryptoNote: {id, job_id, nonce, result}
            job = params.get("job_id")
            if job is None or not _is_hex(params.get("nonce")):
                return None
            key = self._share_work(st, [str(job)])
        elif isinstance(params, list) and params and all(
                p is None or isinstance(p, (str, int)) for p in params):
            if len(params) == 1:  # getwork: the solved header, job = its first 76 bytes
                if not _is_hex(params[0]) or len(params[0]) < 160:
                    return None
                key = self._share_work(st, [_norm_hex(params[0])[:152]])
            elif len(params) == 3 and all(_is_hex(p) and str(p).startswith("0x") for p in params):
                key = self._share_work(st, [_norm_hex(params[1])])  # eth_submitWork
            else:
                if len(params) < 3 or not any(_is_hex(p) for p in params[1:]):
                    return None
                first, second = str(params[0]), str(params[1])
                if first in st.jobs and second not in st.jobs:  # EthereumStratum/2.0.0
                    key = self._share_work(st, [first])
                    st.add_name(st.workers, params[2] if isinstance(params[2], str) else None)
                else:
                    key = self._share_work(st, [second])
                    st.add_name(st.workers, params[0] if isinstance(params[0], str) else None)
                    if isinstance(params[0], str) and len(st.worker_shares) < 256:
                        st.worker_shares[params[0]] = st.worker_shares.get(params[0], 0) + 1
                for p in params[2:]:
                    if (n := _solution_size(p)) is not None:
                        st.solution_sizes.add(n)
            st.submit_counts.add(len(params))
        else:
            return None
        worker = obj.get("worker")
        if isinstance(worker, str) and worker:
            st.add_name(st.workers, worker)
        if len(st.key_frames) < 16:
            st.key_frames.append(frame)
        return st.count_share(key)

    def _share_work(self, st: _State, keys: list[str]) -> tuple[float | None, str | None]:
        """The difficulty/target of the job a share names, else the one last in effect."""
        for k in keys:
            work = st.jobs.get(k)
            if work is not None and work != (None, None):
                return work
        return st.in_effect or (None, None)

    def _job_push(self, st: _State, params: Any, ts: int, frame: int) -> None:
        if isinstance(params, dict):
            self._job_result(st, params, ts, frame)
            return
        if not isinstance(params, list) or len(params) < 2:
            return
        job = params[0]
        if not isinstance(job, (str, int)) or isinstance(job, bool):
            return
        st.notify_counts.add(len(params))
        target = None
        # KawPow and ethash "plain stratum": [job, header, seed, share_target, …]
        if len(params) not in (9,) and len(params) >= 4 and all(
                _is_hex(p, exact64=True) for p in params[1:4]):
            target = _norm_hex(params[3])
        st.server_confirmed = True
        st.record_job(job, (st.pending_diff, target or st.pending_target), ts, frame)

    def _target_push(self, st: _State, params: Any) -> None:
        target = _at(params, 0) if isinstance(params, list) else None
        if isinstance(params, dict):  # EthereumStratum/2.0.0 mining.set
            target = params.get("target")
            algo = params.get("algo")
            if isinstance(algo, str):
                st.algos.append((algo, 5, "mining.set algo"))
        if _is_hex(target):
            st.pending_target = _norm_hex(target)
            st.server_confirmed = True

    def _job_result(self, st: _State, result: Any, ts: int, frame: int) -> bool:
        """Work handed out as data: ETH-PROXY [header, seed, boundary], CryptoNote job,
        getwork {data, target}, getblocktemplate. False when ``result`` is none of them."""
        if isinstance(result, list):
            if len(result) >= 3 and all(_is_hex(p, exact64=True) for p in result[:3]):
                st.record_job(_norm_hex(result[0]), (None, _norm_hex(result[2])), ts, frame)
                st.server_confirmed = True
                return True
            return False
        if not isinstance(result, dict):
            return False
        if _is_hex(result.get("blob")) or ("job_id" in result and _is_hex(result.get("target"))):
            target = result.get("target")
            algo = result.get("algo")
            if isinstance(algo, str):
                st.algos.append((algo, 5, "job algo"))
            if st.blob_major is None:
                st.blob_major = _blob_major_version(result.get("blob"))
            st.record_job(result.get("job_id"),
                          (None, _norm_hex(target) if _is_hex(target) else None), ts, frame)
        elif _is_hex(result.get("data")) and len(result["data"]) >= 152:
            target = result.get("target")
            st.record_job(_norm_hex(result["data"])[:152],
                          (None, _norm_hex(target) if _is_hex(target) else None), ts, frame)
        elif isinstance(result.get("previousblockhash"), str):
            st.record_job(None, (None, None), ts, frame)  # a block template: no share target
        else:
            return False
        st.server_confirmed = True
        return True

    def _response(self, st: _State, req: tuple, result: Any, error: Any, ts: int,
                  frame: int) -> None:
        method, extra = req
        kind = extra[0]
        failed = error not in (None, False) or result is False
        if kind == "submit":
            ok = False if failed else (True if result is True or (
                isinstance(result, dict) and str(result.get("status", "")).upper() == "OK")
                else None)
            if ok and len(st.key_frames) < 16:
                st.key_frames.append(frame)
            st.share_result(extra[1], ok, error)
        elif kind == "login":
            if failed:
                st.login_rejected = True
            else:
                # any answer confirms a namespaced mining login; a plain "login" only
                # counts when the answer carries work (CryptoNote's login result job)
                st.server_confirmed |= "." in method or "_" in method
                if isinstance(result, dict) and isinstance(result.get("job"), dict):
                    self._job_result(st, result["job"], ts, frame)
        elif kind == "job" and not failed:
            self._job_result(st, result, ts, frame)
        elif kind == "version" and isinstance(result, str) and result and st.agent is None:
            st.agent = result

    # -- Stratum V2 -----------------------------------------------------------------------

    def _sv2_message(self, st: _State, d: int, name: str, r: _Reader, ts: int,
                     frame: int) -> None:
        v = self.vocab
        role = "c" if name in v.client else "s" if name in v.server else None
        st.votes[d] += 1 if role == "c" else -1 if role == "s" else 0
        st.feats.add((name, None))
        st.relevant += 1
        raw = name.encode()
        if name == "SetupConnection":
            protocol, _minv, _maxv, _flags = r.u8(), r.u16(), r.u16(), r.u32()
            host, _port = r.str0_255(), r.u16()
            vendor, hardware, firmware = r.str0_255(), r.str0_255(), r.str0_255()
            st.device_id = r.str0_255() or None
            st.sv2_protocol = protocol
            st.agent = firmware or st.agent  # the software; vendor and hardware go to evidence
            st.sv2_setup = {"vendor": vendor, "hardware_version": hardware,
                            "firmware": firmware, "device_id": st.device_id}
            if _HOST.fullmatch(host) and st.pool_host is None:
                st.pool_host = host
            if protocol == 0:
                st.login_seen = True
            raw = (f"SetupConnection protocol={protocol} endpoint={host} vendor={vendor!r} "
                   f"hardware={hardware!r} firmware={firmware!r}").encode()
        elif name in ("OpenStandardMiningChannel", "OpenExtendedMiningChannel"):
            _request, user, rate = r.u32(), r.str0_255(), r.f32()
            st.add_name(st.logins, user)
            st.add_name(st.workers, user)
            if math.isfinite(rate) and rate > 0:
                st.reported_hs = rate
            st.login_seen = st.login_strong = st.sv2_protocol in (None, 0)
            raw = f"{name} user_identity={user!r} nominal_hash_rate={rate:g}".encode()
        elif name in ("OpenStandardMiningChannel.Success", "OpenExtendedMiningChannel.Success"):
            _request, channel, target = r.u32(), r.u32(), r.u256()
            st.channels[channel] = target.hex()
            st.server_confirmed = True
            if st.first_work_ts is None:
                st.first_work_ts = ts
        elif name == "SetTarget":
            channel, target = r.u32(), r.u256()
            st.channels[channel] = target.hex()
            st.server_confirmed = True
            if st.first_work_ts is None:
                st.first_work_ts = ts
            raw = f"SetTarget channel={channel} maximum_target={target[::-1].hex()}".encode()
        elif name in ("NewMiningJob", "NewExtendedMiningJob"):
            channel, job = r.u32(), r.u32()
            target = st.channels.get(channel)
            st.record_job(f"{channel}:{job}", (None, target), ts, frame)
            st.server_confirmed = True
        elif name in ("SubmitSharesStandard", "SubmitSharesExtended"):
            channel, seq, _job = r.u32(), r.u32(), r.u32()
            target = st.channels.get(channel)
            share = st.count_share((None, target))
            st.sv2_pending[(channel, seq)] = share[1]
            while len(st.sv2_pending) > 4096:
                st.sv2_pending.popitem(last=False)
            if len(st.key_frames) < 16:
                st.key_frames.append(frame)
        elif name == "SubmitShares.Success":
            channel, last_seq, count = r.u32(), r.u32(), r.u32()
            st.accepted += count
            for k in [k for k in st.sv2_pending if k[0] == channel and k[1] <= last_seq]:
                del st.sv2_pending[k]
        elif name == "SubmitShares.Error":
            channel, seq, code = r.u32(), r.u32(), r.str0_255()
            key = st.sv2_pending.pop((channel, seq), (None, st.channels.get(channel)))
            st.share_result(key, False, code.replace("-", " "))
        self._evidence_line(st, d, raw, frame)

    # -- conclusions ----------------------------------------------------------------------

    def _finish(self, st: _State) -> StratumSession | None:
        if st.framing is None:
            return self._opaque_session(st)
        if st.relevant == 0:
            return None
        miner = self._miner_side(st)
        ranked = self._rank_dialects(st, miner)
        if not ranked or not self._is_mining(st):
            return None
        src, sport, dst, dport = self._endpoints(st.conv, miner)
        login = st.logins[0] if st.logins else (st.workers[0] if st.workers else None)
        wallet, _account, worker = self._split_login(login) if login else (None, None, None)
        worker = worker or st.top_worker
        pool_host = st.pool_host or (self.host_of(dst, dport, st.first_ts or None)
                                       if self.host_of else None)
        endpoints = self.fp.endpoints_for(pool_host, dport) if pool_host else []
        if pool_host and not endpoints:
            endpoints = self.fp.endpoints_for(pool_host)
        pool = self._pool(pool_host, endpoints)
        evidence: dict[str, Any] = {}
        dialect, variant = self._choose(st, ranked, endpoints, wallet, evidence)
        coin = self._coin(st, dialect, variant, wallet, endpoints, evidence)
        algorithm = self._algorithm(st, variant, coin)
        # hashrate from the shares, with the rule of the dialect and algorithm family
        rule_dialect = "ethproxy" if (dialect == "getwork" and st.eth_http
                                      and "ethproxy" in self.fp.dialects) else dialect
        rule = self.fp.share_work(rule_dialect, variant.id if variant else None)
        first, last = st.first_ts, st.last_ts
        start = max(first, st.first_work_ts or first)
        window = (last - start) / 1e9
        tallies = [ShareTally(k[0], k[1], c[0] - c[1]) for k, c in st.tallies.items()]
        unknown = None
        # without the algorithm the work is still known when no candidate family of the
        # dialect has a rule of its own (targets read as 2^256/T, CryptoNote difficulty)
        work_known = variant is not None or all(
            self.fp.share_work(rule_dialect, x.id) == rule
            for x in self.vocab.variants_of.get(rule_dialect, []))
        if variant is None:
            unknown = "algorithm unknown: " + (evidence.get("variant_conflict")
                                               or "no announced algorithm, pool, wallet or "
                                                  "coin hint tells it")
        last_work = ShareTally(*(st.in_effect or (st.pending_diff, st.pending_target)), 1)
        est = estimate_hashrate(tallies, window, rule, work_known=work_known,
                                unknown_reason=unknown, last=last_work)
        eff = None
        if variant is not None:
            eff = self._efficiency(st, algorithm, variant, est, evidence)
        power = estimate_power(est, eff)
        if est.hashrate_hs is not None and power.power_w is None:
            evidence["power_reason"] = ("algorithm unknown" if variant is None else
                                        f"no efficiency figures for {algorithm}")
        difficulty = self._difficulty(st, rule)
        evidence.update(self._evidence(st, miner, est, rule, eff, dialect))
        workers = []
        for name in st.workers:
            st.add_name(workers, self._split_login(name)[2] or name)
        if len(st.logins) > 1:
            evidence["logins"] = list(st.logins)
        if len(st.worker_shares) > 1:
            shares: dict[str, int] = {}
            for name, n in st.worker_shares.items():
                key = self._split_login(name)[2] or name
                shares[key] = shares.get(key, 0) + n
            evidence["worker_shares"] = shares
        self.stats["sessions"] += 1
        return StratumSession(
            timestamp=first, src_ip=src, src_port=sport, dest_ip=dst, dest_port=dport,
            community_id=_community_id(src, sport, dst, dport), first_seen=first,
            last_seen=last, dialect=dialect,
            agent=st.agent or st.http_agent, login=login, worker=worker, wallet=wallet,
            coin=coin, algorithm=algorithm, pool=pool, pool_host=pool_host,
            shares_submitted=st.submitted, shares_accepted=st.accepted,
            shares_rejected=st.rejected, difficulty=difficulty,
            hashrate_hs=est.hashrate_hs, hashrate_hs_low=est.low, hashrate_hs_high=est.high,
            power_w=power.power_w, power_w_low=power.low, power_w_high=power.high,
            evidence=evidence, workers=tuple(workers), hashrate_reason=est.reason,
            diff1_shares_per_s=est.diff1_shares_per_s,
        )

    def _split_login(self, login: str) -> tuple[str | None, str | None, str | None]:
        """:func:`split_login`, remembered: its wallet formats are tried one by one."""
        hit = self._split_logins.get(login, _MISSING)
        if hit is _MISSING:
            if len(self._split_logins) >= MEMO_ENTRIES:
                self._split_logins.clear()
            hit = self._split_logins[login] = split_login(self.fp, login)
        return hit  # type: ignore[return-value]

    def _agent_match(self, agent: str) -> AgentMatch | None:
        """``Fingerprints.match_agent``, remembered: every agent pattern is tried in turn."""
        hit = self._agent_matches.get(agent, _MISSING)
        if hit is _MISSING:
            if len(self._agent_matches) >= MEMO_ENTRIES:
                self._agent_matches.clear()
            hit = self._agent_matches[agent] = self.fp.match_agent(agent)
        return hit  # type: ignore[return-value]

    def _efficiency(self, st: _State, algorithm: str | None, variant: Variant, est,
                    evidence: dict) -> EfficiencyRange | None:
        """The devices this session's power is estimated over, as narrow as the traffic allows.

        The agent's hardware classes (xmrig: CPU; ethminer: GPU) keep devices of those classes.
        A connection with one worker and no proxy agent is usually one machine, so devices
        whose nameplate rate lies in the session's 95 % hashrate interval are kept too. Each
        narrowing is dropped again when no device of the table passes it.
        """
        has_rows = any(r.algorithm == algorithm for r in self.fp.efficiency.values())
        name = algorithm if has_rows and algorithm else variant.id
        agent = st.agent or st.http_agent
        hit = self._agent_match(agent) if agent else None
        hardware = set(hit.agent.hardware) if hit else set()
        classes = (hardware & {"asic", "gpu", "cpu", "fpga"}) or None
        one_machine = "proxy" not in hardware and len(st.workers) <= 1 and len(st.logins) <= 1
        tries: list[tuple[set[str] | None, tuple[float, float] | None, str]] = []
        if one_machine and est.low is not None and est.high is not None:
            tries.append((classes, (est.low, est.high), (
                "one worker on the connection: devices rated within the session's 95 % "
                "hashrate interval")))
        if classes:
            tries.append((classes, None, f"devices of the agent's hardware ({', '.join(sorted(classes))})"))
        tries.append((None, None, f"every {name} device in the efficiency table"))
        for cls, between, basis in tries:
            eff = self.fp.efficiency_range(name, cls, hashrate_between=between)
            if eff is not None:
                if cls and between:
                    basis += f" and of the agent's hardware ({', '.join(sorted(cls))})"
                evidence["power_basis"] = basis
                evidence["power_devices"] = list(eff.devices[:12])
                return eff
        return None

    @staticmethod
    def _endpoints(conv: Conversation, miner: int) -> tuple[str, int, str, int]:
        if miner == 0:
            return conv.a_ip, conv.a_port, conv.b_ip, conv.b_port
        return conv.b_ip, conv.b_port, conv.a_ip, conv.a_port

    def _opaque_session(self, st: _State) -> StratumSession | None:
        """Encrypted Stratum V2: nothing readable, but the Noise handshake has a shape (first
        client payload 64 random bytes, first server payload 234, then AEAD records)."""
        a, b = st.first_payload
        if a is None or b is None or min(st.records) < 2:
            return None
        for dialect, client, server in self.vocab.opaque:
            for miner, (mine, pools) in enumerate(((a, b), (b, a))):
                if mine[0] in client and pools[0] in server and mine[1] and pools[1]:
                    break
            else:
                continue
            src, sport, dst, dport = self._endpoints(st.conv, miner)
            cands = self.vocab.variants_of.get(dialect, [])
            variant = cands[0] if len(cands) == 1 else None
            evidence: dict[str, Any] = {
                "capture": st.conv.path, "encrypted": True, "vlan": st.conv.vlan,
                "handshake_bytes": [mine[0], pools[0]], "records": list(st.records),
                "frames": sorted(st.key_frames)}
            # Shares show through the encryption: a fixed-size message is a fixed-size record
            # (a segment may carry several back to back).
            client_fixed, server_fixed = self.vocab.share_records.get(dialect, ([], []))
            miner_sizes, pool_sizes = st.record_sizes[miner], st.record_sizes[1 - miner]
            counted = {}
            for name, size in (*client_fixed, *server_fixed):
                sizes = miner_sizes if (name, size) in client_fixed else pool_sizes
                counted[name] = {"record_bytes": size, "records": sum(
                    n * (length // size) for length, n in sizes.items()
                    if length and length % size == 0 and length // size <= 8)}
            if counted:
                evidence["fixed_size_records"] = counted
            coin = self._coin(st, dialect, variant, None, [], evidence)
            pool_host = self.host_of(dst, dport, st.first_ts or None) if self.host_of else None
            endpoints = self.fp.endpoints_for(pool_host, dport) if pool_host else []
            self.stats["sessions"] += 1
            return StratumSession(
                timestamp=st.first_ts, src_ip=src, src_port=sport, dest_ip=dst,
                dest_port=dport, community_id=_community_id(src, sport, dst, dport),
                first_seen=st.first_ts, last_seen=st.last_ts, dialect=dialect, agent=None,
                login=None, worker=None, wallet=None, coin=coin,
                algorithm=self._algorithm(st, variant, coin), pool=self._pool(pool_host, endpoints),
                pool_host=pool_host, shares_submitted=None, shares_accepted=None,
                shares_rejected=None, difficulty=None, hashrate_hs=None, hashrate_hs_low=None,
                hashrate_hs_high=None, power_w=None, power_w_low=None, power_w_high=None,
                evidence=evidence, workers=(),
                hashrate_reason="encrypted (Noise): shares and their difficulty are not visible",
                diff1_shares_per_s=None)
        return None

    def _miner_side(self, st: _State) -> int:
        """The side that sends client methods; the SYN sender breaks a tie."""
        if st.votes[0] != st.votes[1]:
            return 0 if st.votes[0] > st.votes[1] else 1
        return 1 if st.conv.syn_from == "b" else 0

    def _is_mining(self, st: _State) -> bool:
        """Real evidence: a mining login, or jobs and submits in a dialect's shapes."""
        if st.framing == "binary-sv2" and st.sv2_protocol not in (None, 0):
            return False  # Job Declaration or Template Distribution, not a miner
        if st.job_seen and st.submit_seen:
            return True
        if st.framing == "http-json":
            return st.job_seen and (st.mining_hint or self._known_agent(st.http_agent))
        return st.login_seen and (st.login_strong or st.server_confirmed)

    def _known_agent(self, agent: str | None) -> bool:
        return bool(agent) and self.fp.match_agent(agent) is not None

    def _rank_dialects(self, st: _State, miner: int) -> list[tuple[int, str]]:
        """Dialects scored on signatures and message shapes, best first (score > 0)."""
        v = self.vocab
        client_lines, server_lines = st.sig_lines[miner], st.sig_lines[1 - miner]
        out = []
        for dl in self.fp.dialects.values():
            if dl.framing != st.framing:
                continue
            score = 0
            spec = [len(s.contains) + (s.payload_len is not None)
                    for s in dl.client_signatures for line in client_lines if s.matches(line)]
            if spec:
                score += 3 + max(spec)
            if any(s.matches(line) for s in dl.server_signatures for line in server_lines):
                score += 2
            names = v.methods[dl.id]
            counts = v.counts[dl.id]
            for method, n in st.feats:
                if method not in names:
                    continue
                score += 1
                accepted, complete = counts.get(method, (frozenset(), False))
                if accepted and isinstance(n, int):
                    score += 3 if n in accepted else -3 if complete else 0
            if score > 0:
                out.append((score, dl.id))
        out.sort(key=lambda x: (-x[0], x[1]))
        return out

    def _variant_votes(self, st: _State, endpoints: list, wallet: str | None,
                       why: dict[str, list[str]]) -> dict[str, int]:
        """Weighted evidence for each algorithm family, each source named in ``why``."""
        fp = self.fp
        votes: dict[str, int] = {}

        def add(ids: Iterable[str], weight: int, source: str) -> None:
            for vid in set(ids):
                votes[vid] = votes.get(vid, 0) + weight
                why.setdefault(vid, []).append(source)

        announced = False
        for name, weight, where in st.algos:
            if (var := fp.variant_for_algorithm(name)) is not None:
                add([var.id], weight, f"{where} {name!r}")
                announced = True
        if not announced and (blob := self._blob_family(st, endpoints, wallet)) is not None:
            add([blob[0].id], _BLOB_VERSION_WEIGHT, blob[1])
        for ep in endpoints:
            if "multi-algo" in ep.flags:
                continue
            if ep.variant:
                add([ep.variant], 4, f"pool endpoint {ep.host}:{ep.port} ({ep.pool})")
            elif ep.coin:
                add([x.id for x in fp.variants_for_coin(ep.coin)], 3,
                    f"pool endpoint coin {ep.coin}")
        for n in sorted(st.notify_counts):
            add([x.id for x in fp.variants.values() if n in x.recognise.notify_param_count], 3,
                f"job with {n} params")
        for n in sorted(st.submit_counts):
            add([x.id for x in fp.variants.values() if n in x.recognise.submit_param_count], 1,
                f"submit with {n} params")
        for marker, vid in sorted(self._markers(st)):  # same order in every process
            add([vid], 2, f"marker {marker.decode()}")
        for password in st.passwords:
            for hint, coin in fp.coin_hints_in(password, "password"):
                weight = 2 if "payout" in hint.meaning else 4
                add([x.id for x in fp.variants_for_coin(coin)], weight, f"{hint.id} {coin}")
        for login in st.logins:
            for hint, coin in fp.coin_hints_in(login, "login"):
                add([x.id for x in fp.variants_for_coin(coin)], 4, f"{hint.id} {coin}")
        if wallet:
            ids = {x.id for c in fp.coins_for_wallet(wallet) for x in fp.variants_for_coin(c)}
            add(ids, 3, f"wallet format of {wallet[:12]}…")
        return votes

    def _choose(self, st: _State, ranked: list[tuple[int, str]], endpoints: list,
                wallet: str | None, evidence: dict) -> tuple[str, Variant | None]:
        """The dialect and algorithm family that agree best with everything seen."""
        why: dict[str, list[str]] = {}
        votes = self._variant_votes(st, endpoints, wallet, why)
        best = None
        for score, did in ranked:
            cands = self.vocab.variants_of.get(did, [])
            top = max((votes.get(x.id, 0) for x in cands), default=0)
            total = score + 2 * top
            if best is None or total > best[0]:
                best = (total, did, cands, top)
        assert best is not None
        _, dialect, cands, top = best
        evidence["dialect_scores"] = {did: s for s, did in ranked[:4]}
        variant = None
        if len(cands) == 1:
            variant = cands[0]
        elif top > 0:
            leaders = [x for x in cands if votes.get(x.id, 0) == top]
            if len(leaders) == 1:
                variant = leaders[0]
            else:
                evidence["variant_conflict"] = ("evidence fits " + " and ".join(
                    sorted(x.id for x in leaders)) + " equally")
        if variant is not None and why.get(variant.id):
            evidence["algorithm_from"] = why[variant.id]
        elif variant is not None:
            evidence["algorithm_from"] = [f"the only algorithm family of {dialect}"]
        if st.blob_major is not None:
            evidence["blob_major_version"] = st.blob_major
            blob = self._blob_family(st, endpoints, wallet)
            if blob is not None and variant is not None and blob[0].id != variant.id:
                evidence["blob_major_version_overruled"] = (
                    f"{blob[1]}; outweighed by " + "; ".join(why.get(variant.id, ())))
        return dialect, variant

    def _blob_family(self, st: _State, endpoints: list,
                     wallet: str | None) -> tuple[Variant, str] | None:
        """The algorithm family the first job blob's block major version means (CryptoNote),
        with its description, when the coin is known: the mine-coin hints, the pool endpoint
        and the wallet format name one coin together, and a variant's
        ``recognise.blob_major_versions`` lists that version for it. Else None."""
        n = st.blob_major
        if n is None:
            return None
        fp = self.fp
        named = [c for p in st.passwords for h, c in fp.coin_hints_in(p, "password")
                 if "payout" not in h.meaning]
        named += [c for lg in st.logins for _, c in fp.coin_hints_in(lg, "login")]
        named += [ep.coin for ep in endpoints if ep.coin and "multi-algo" not in ep.flags]
        named += fp.coins_for_wallet(wallet) if wallet else []
        coins = {t for c in named if (t := _ticker(c))}  # as _coin reads them
        if len(coins) != 1:
            return None
        coin = next(iter(coins))
        var = self.vocab.blob_variants.get((coin, n))
        if var is None:
            return None
        return var, f"job blob major version {n}: {coin} hashed it with {var.id}"

    def _coin(self, st: _State, dialect: str, variant: Variant | None, wallet: str | None,
              endpoints: list, evidence: dict) -> str | None:
        """Coin: a mine-coin hint, the pool endpoint (if the wallet allows it), a wallet
        format that fits one coin only, a payout hint, the only coin of the algorithm family,
        or the only coin of every pool of the dialect. A wallet format shared by several
        coins (0x addresses of all EVM chains, legacy Bitcoin forms) decides nothing alone."""
        fp = self.fp
        # a family's coins, and those its blob major versions name (XMR's CryptoNight years)
        allowed = ({t for c in variant.coins if (t := _ticker(c))}
                   | set(variant.recognise.blob_major_versions)) if variant else None

        def fits(coin: str | None) -> bool:
            return coin is not None and (not allowed or coin in allowed)

        hints = [(h, c) for p in st.passwords for h, c in fp.coin_hints_in(p, "password")]
        hints += [(h, c) for lg in st.logins for h, c in fp.coin_hints_in(lg, "login")]
        for hint, coin in hints:
            if "payout" not in hint.meaning and fits(coin):
                evidence["coin_from"] = f"{hint.id} hint"
                return coin
        wallet_coins: list[str] = []
        for c in fp.coins_for_wallet(wallet) if wallet else ():
            if fits(t := _ticker(c)) and t not in wallet_coins:
                wallet_coins.append(t)  # type: ignore[arg-type]
        pool_coins = {_ticker(ep.coin) for ep in endpoints
                      if ep.coin and "multi-algo" not in ep.flags} - {None}
        if len(pool_coins) == 1:
            coin = next(iter(pool_coins))
            if fits(coin) and (not wallet_coins or coin in wallet_coins):
                evidence["coin_from"] = "pool endpoint"
                return coin
        if len(wallet_coins) == 1:
            evidence["coin_from"] = "wallet format"
            return wallet_coins[0]
        if len(wallet_coins) > 1:
            evidence["coin_candidates"] = wallet_coins
        for hint, coin in hints:
            if fits(coin):
                evidence["coin_from"] = f"{hint.id} hint ({hint.meaning})"
                return coin
        if allowed is not None and len(allowed) == 1:
            evidence["coin_from"] = f"the only coin of {variant.id}"  # type: ignore[union-attr]
            return next(iter(allowed))
        coins = self._dialect_coins.get(dialect)
        if coins is None:  # every endpoint of the dialect, walked once per tracker
            coins = self._dialect_coins[dialect] = frozenset(
                _ticker(ep.coin) for ep in fp.endpoints_of_dialect(dialect))
        if len(coins) == 1 and fits(coin := next(iter(coins))) and not wallet_coins:
            evidence["coin_from"] = f"every pool of {dialect} in the fingerprints"
            return coin
        return None

    def _algorithm(self, st: _State, variant: Variant | None, coin: str | None) -> str | None:
        """The algorithm id within the family: the only one, the announced one, the Equihash
        (n, k) whose solution size the submits show, the one named after the coin (ETC →
        etchash); else the family's id."""
        if variant is None:
            return None
        algos = variant.algorithms
        if len(algos) == 1:
            return algos[0]
        for name, _, _ in st.algos:
            if name.lower() in algos:
                return name.lower()
        for a in algos:  # Equihash(n, k) solutions are 2^k (n/(k+1) + 1) bits long
            m = re.fullmatch(r"equihash-(\d+)-(\d+)", a)
            if m and (2 ** int(m[2]) * (int(m[1]) // (int(m[2]) + 1) + 1)) // 8 in st.solution_sizes:
                return a
        named = [a for a in algos if coin and a.startswith(coin.lower())]
        return named[0] if len(named) == 1 else variant.id

    def _pool(self, host: str | None, endpoints: list) -> str | None:
        names = {ep.pool.lower(): ep.pool for ep in endpoints}
        if len(names) == 1:
            return next(iter(names.values()))
        dom = self.fp.match_domain(host) if host else None
        if dom is not None and len({p.lower() for p in dom.pools}) == 1:
            return dom.pools[0]
        return None

    def _difficulty(self, st: _State, rule) -> float | None:
        diff, target = st.in_effect or (st.pending_diff, st.pending_target)
        if diff is not None and not (target is not None and rule.target_encoding):
            return diff
        if target is not None and rule.target_encoding is not None:
            return rule.hashes(target=target)
        return diff

    def _evidence(self, st: _State, miner: int, est, rule, eff, dialect: str) -> dict:
        conv = st.conv
        lines = [{"frame": f, "dir": "c2s" if d == miner else "s2c",
                  "text": raw.decode("utf-8", "replace")} for d, f, raw in st.lines]
        frames = sorted({f for _, f, _ in st.lines} | set(st.key_frames))[:32]
        out: dict[str, Any] = {
            "capture": conv.path,
            "frames": frames,
            "lines": lines,
            "vlan": conv.vlan,
        }
        agent = st.agent or st.http_agent
        if agent and (m := self.fp.match_agent(agent)) is not None:
            out["agent_fingerprint"] = m.agent.id
        out["share_work"] = rule.formula
        if rule.convention_dependent or rule.unconfirmed:
            out["share_work_caveat"] = ("pools differ in this convention" if
                                        rule.convention_dependent else "unconfirmed convention")
        out["window_s"] = round(est.window_s, 6)
        out["shares_used"] = est.shares
        if est.shares_unknown:
            out["shares_without_difficulty"] = est.shares_unknown
        if eff is not None:
            out["efficiency_devices"] = eff.n
        if st.reported_hs is not None:
            out["reported_hashrate_hs"] = st.reported_hs
        if st.error_codes:
            out["reject_reasons"] = dict(st.error_codes)
        if st.sv2_setup:
            out["sv2_setup"] = st.sv2_setup
        for name in ("json_errors", "partial_lines", "long_lines", "gaps"):
            if getattr(st, name):
                out[name] = getattr(st, name)
        if st.login_rejected:
            out["login_rejected"] = True
        return out


def _random_looking(data: bytes) -> bool:
    """Byte entropy close to the maximum for the length: keys and ciphertext, not text."""
    if len(data) < 16:
        return False
    n = len(data)
    h = -sum(c / n * math.log2(c / n) for c in Counter(data).values())
    return h >= 0.85 * math.log2(min(n, 256))


def _blob_major_version(blob: Any) -> int | None:
    """The block major version a CryptoNote hashing blob starts with: its first varint (7 bits
    a byte, least significant first; a uint8 in the block header, so at most 2 bytes and 255).
    None when the hex does not start with one."""
    if not _is_hex(blob):
        return None
    h, value = _norm_hex(blob), 0
    for i in range(2):
        if len(h) < 2 * i + 2:
            return None
        b = int(h[2 * i:2 * i + 2], 16)
        value |= (b & 0x7F) << (7 * i)
        if b < 0x80:
            return value if value <= 255 else None
    return None


def _solution_size(p: Any) -> int | None:
    """Byte length of an Equihash solution written with its compactSize prefix, else None."""
    if not isinstance(p, str) or len(p) < 64 or len(p) % 2 or p[:2] in ("0x", "0X") \
            or not _is_hex(p):
        return None
    first = int(p[:2], 16)
    size, prefix = (first, 1) if first < 0xFD else (
        (int.from_bytes(bytes.fromhex(p[2:6]), "little"), 3) if first == 0xFD else (0, 0))
    return size if prefix and len(p) // 2 == prefix + size else None


def _community_id(src: str, sport: int, dst: str, dport: int) -> str:
    return community_id_of(src, sport, dst, dport)


def _id_key(v: Any) -> tuple:
    """JSON-RPC ids of any type as a dict key (1 and 1.0 match; "1" does not)."""
    if isinstance(v, bool):
        return ("b", v)
    if isinstance(v, (int, float)):
        return ("n", float(v))
    if isinstance(v, str):
        return ("s", v)
    return ("j", json.dumps(v, sort_keys=True))
