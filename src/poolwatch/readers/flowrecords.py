"""NetFlow v5, v9 and IPFIX datagrams → one numpy ``FLOWREC`` array per batch.

Routers at an ISP's edge export flow records instead of mirroring packets. This reader turns
their UDP datagrams into the project's shapes: addresses as two big-endian ``uint64`` halves
(IPv4-mapped), ports, protocol, packets, bytes, start and end in ns since the epoch, the
exporter's address, the sampling interval it announced, direction, interfaces and TCP flags.

Why a numpy decode of our own rather than the ``netflow`` library (0.12.2, MIT): the
library is correct on softflowd and pmacct output (the exporter tests check both read the
same records), but builds a Python object and a dict per record and unpacks each field with
``struct``. Here only the few set headers are walked in Python; every template is compiled
once into a big-endian ``np.dtype`` (field offsets and widths, reduced-size encodings
included) and all data sets of one template in a batch of datagrams are joined and read with
one ``np.frombuffer``, so per record there is no Python at all. Measured on the same
datagrams (softflowd's, ~31 records each; ``benchmarks/bench_flowrecords.py``, one core of a
loaded 2-core machine): NetFlow v9 0.8-1.9 M records/s against 50-93 k/s for
``netflow.parse_packet`` (16-20x), IPFIX 1.0-1.2 M/s against 12-19 k/s (67-82x). The
library would cap a sensor far below one busy router, so it is only the tests' and the
benchmark's reference.

What the reader keeps per exporter and observation domain (v9 source id, IPFIX observation
domain; the key is exporter address, version, domain): data and options templates, the
sampling announced in options records (by sampler/selector id, by interface, or for the
whole domain), IPFIX ``systemInitTimeMilliseconds`` for ``flowStart/EndSysUpTime``, and the
sequence number (records or datagrams the exporter numbered but never arrived are counted).
Data sets whose template is not known yet wait, bounded in number, bytes and age, and are
decoded when the template arrives; those that expire are counted as ``unknown_template``.

Bad input never raises: truncated datagrams, wrong versions, impossible lengths, set lengths
that overrun, bad or zero-length template fields, reserved set ids are each counted under a
reason in :attr:`FlowDecoder.stats` and described (naming the exporter) in
:attr:`FlowDecoder.problems`; whatever whole records came before the damage are kept.
IPFIX variable-length fields (length 65535) are walked record by record (a slow path,
counted) and left out; every other field keeps the fast path.
"""

from __future__ import annotations

import ipaddress
import logging
import math
import struct
import time
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import numpy as np

from ..records import V4_MAPPED_LO_PREFIX

log = logging.getLogger(__name__)

# One row per (unidirectional) flow record, as exported.
FLOWREC = np.dtype(
    [
        ("src_hi", np.uint64),
        ("src_lo", np.uint64),
        ("dst_hi", np.uint64),
        ("dst_lo", np.uint64),
        ("exporter_hi", np.uint64),  # the exporter's address (the datagram's source)
        ("exporter_lo", np.uint64),
        ("first_ns", np.int64),  # first packet, ns since the Unix epoch
        ("last_ns", np.int64),
        ("packets", np.uint64),  # as exported: multiply by ``sampling`` for an estimate
        ("bytes", np.uint64),  # IP bytes, as exported
        ("rev_packets", np.uint64),  # RFC 5103 biflows: the reverse direction; else 0
        ("rev_bytes", np.uint64),
        ("domain", np.uint32),  # v9 source id, IPFIX observation domain, v5 engine type/id
        ("sampling", np.uint32),  # 1:N packet sampling announced for the record; 1 = none known
        ("ingress", np.uint32),  # input interface index (0 when not given)
        ("egress", np.uint32),
        ("src_port", np.uint16),
        ("dst_port", np.uint16),
        ("vlan", np.uint16),
        ("version", np.uint8),  # 5, 9 or 10 (IPFIX)
        ("proto", np.uint8),
        ("tcp_flags", np.uint8),  # OR of the flags of the record's packets
        ("direction", np.uint8),  # flowDirection: 0 ingress, 1 egress, 255 not given
        # IPFIX flowEndReason: 1 idle, 2 active timeout, 3 end, 4 forced, 5 lack of resources
        ("end_reason", np.uint8),  # 0: not given
    ],
    align=True,
)

DIRECTION_UNKNOWN = 255
END_ACTIVE_TIMEOUT = 2
VARIABLE = 65535
REVERSE_PEN = 29305  # RFC 5103 reverse information elements
NTP_EPOCH_OFFSET = 2_208_988_800  # seconds from 1900-01-01 to 1970-01-01

# Information elements read (IANA IPFIX numbers, equal to the NetFlow v9 field types).
IE_OCTETS, IE_PACKETS, IE_PROTO, IE_TCP_FLAGS, IE_SRC_PORT = 1, 2, 4, 6, 7
IE_SRC4, IE_INGRESS, IE_DST_PORT, IE_DST4, IE_EGRESS = 8, 10, 11, 12, 14
IE_END_UPTIME, IE_START_UPTIME, IE_POST_OCTETS, IE_POST_PACKETS = 21, 22, 23, 24
IE_SRC6, IE_DST6, IE_SAMPLING_INTERVAL, IE_SAMPLER_ID = 27, 28, 34, 48
IE_SAMPLER_RANDOM_INTERVAL, IE_VLAN, IE_DIRECTION = 50, 58, 61
IE_OCTETS_TOTAL, IE_PACKETS_TOTAL, IE_END_REASON = 85, 86, 136
IE_START_S, IE_END_S, IE_START_MS, IE_END_MS = 150, 151, 152, 153
IE_START_US, IE_END_US, IE_START_NS, IE_END_NS = 154, 155, 156, 157
IE_START_DELTA_US, IE_END_DELTA_US, IE_INIT_MS = 158, 159, 160
IE_UDP_SRC, IE_UDP_DST, IE_TCP_SRC, IE_TCP_DST = 180, 181, 182, 183
IE_DOT1Q_VLAN, IE_SELECTOR_ID = 243, 302
IE_PKT_INTERVAL, IE_PKT_SPACE, IE_SAMPLING_SIZE, IE_SAMPLING_POPULATION = 305, 306, 309, 310
V9_SCOPE_INTERFACE = 2  # NetFlow v9 options scope field types (RFC 3954 §6.1)

WANTED = frozenset({
    IE_OCTETS, IE_PACKETS, IE_PROTO, IE_TCP_FLAGS, IE_SRC_PORT, IE_SRC4, IE_INGRESS,
    IE_DST_PORT, IE_DST4, IE_EGRESS, IE_END_UPTIME, IE_START_UPTIME, IE_POST_OCTETS,
    IE_POST_PACKETS, IE_SRC6, IE_DST6, IE_SAMPLING_INTERVAL, IE_SAMPLER_ID,
    IE_SAMPLER_RANDOM_INTERVAL, IE_VLAN, IE_DIRECTION, IE_OCTETS_TOTAL, IE_PACKETS_TOTAL,
    IE_END_REASON, IE_START_S, IE_END_S, IE_START_MS, IE_END_MS, IE_START_US, IE_END_US,
    IE_START_NS, IE_END_NS, IE_START_DELTA_US, IE_END_DELTA_US, IE_INIT_MS, IE_UDP_SRC,
    IE_UDP_DST, IE_TCP_SRC, IE_TCP_DST, IE_DOT1Q_VLAN, IE_SELECTOR_ID, IE_PKT_INTERVAL,
    IE_PKT_SPACE, IE_SAMPLING_SIZE, IE_SAMPLING_POPULATION,
})
ADDRESS_IES = frozenset({IE_SRC4, IE_DST4, IE_SRC6, IE_DST6})

# NetFlow v5: 24-byte header, 48-byte records (Cisco's layout).
V5_HEADER = struct.Struct("!HHIIIIBBH")
V5_RECORD = np.dtype({
    "names": ["src", "dst", "input", "output", "pkts", "octets", "first", "last",
              "sport", "dport", "flags", "proto"],
    "formats": [">u4", ">u4", ">u2", ">u2", ">u4", ">u4", ">u4", ">u4", ">u2", ">u2", "u1",
                "u1"],
    "offsets": [0, 4, 12, 14, 16, 20, 24, 28, 32, 34, 37, 38],
    "itemsize": 48,
})
V9_HEADER = struct.Struct("!HHIIII")
IPFIX_HEADER = struct.Struct("!HHIII")
SET_HEADER = struct.Struct("!HH")

# Reasons a datagram or a part of one was (partly) refused; their sum is ``malformed``.
ERROR_REASONS = (
    "truncated",  # the datagram ends inside a header, set or template it announces
    "unsupported_version",  # not 5, 9 or 10
    "bad_length",  # a length field that cannot be true (IPFIX message length, v5 count)
    "bad_set_length",  # a set length under 4 bytes: the rest of the datagram is unreadable
    "bad_set_id",  # a reserved set id (IPFIX 0, 1, 4-255; v9 2-255)
    "bad_template",  # template id < 256, no fields, records of zero length, overrunning counts
    "zero_length_field",  # a template field of length 0 (left out; the template is kept)
)
COUNTERS = (
    "datagrams", "bytes", "records", "options_records", "v5_datagrams", "v9_datagrams",
    "ipfix_datagrams", "templates", "options_templates", "template_changes",
    "templates_withdrawn", "pending_sets", "late_sets", "unknown_template",
    "missed_sequence", "variable_length_records", "no_time_base", *ERROR_REASONS,
)


@lru_cache(maxsize=4096)
def exporter_halves(exporter: str) -> tuple[int, int]:
    """An exporter's address as (hi, lo) signed 64-bit values (kept in int64 context
    arrays; viewed as uint64 in the records), IPv4-mapped."""
    hi, lo = _halves(exporter)
    return _s64(hi), _s64(lo)


def _s64(v: int) -> int:
    return v - (1 << 64) if v >= 1 << 63 else v


def _halves(exporter: str) -> tuple[int, int]:
    """An exporter's address as the (hi, lo) halves records carry (IPv4-mapped)."""
    try:
        ip = ipaddress.ip_address(exporter.split("%")[0])
    except ValueError:
        return 0, 0
    if ip.version == 6 and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    if ip.version == 4:
        return 0, V4_MAPPED_LO_PREFIX | int(ip)
    value = int(ip)
    return value >> 64, value & 0xFFFFFFFFFFFFFFFF


# ----------------------------------------------------------------------------- templates
@dataclass(slots=True, eq=False)
class Template:
    """A data or options template compiled for ``np.frombuffer``.

    ``columns`` maps a name to ``(offset, length)`` within a (fixed-layout) record: ``"<ie>"``
    for enterprise-0 elements, ``"r<ie>"`` for RFC 5103 reverse ones, ``"s<type>"`` for
    NetFlow v9 options scope fields. For a template with variable-length fields ``reclen``
    is -1 and the dtype describes records with those fields cut out (``strip``).
    """

    tid: int
    fields: tuple[tuple[int, int, int], ...]  # (element id, length, enterprise number)
    options: bool = False
    scope_count: int = 0
    v9_scope: bool = False  # options scope fields are v9 scope types, not IPFIX elements
    reclen: int = 0
    columns: dict[str, tuple[int, int]] = field(default_factory=dict)
    dtype: np.dtype | None = None
    zero_length_fields: int = 0

    @property
    def variable(self) -> bool:
        return self.reclen < 0


def compile_template(tid: int, fields: tuple[tuple[int, int, int], ...], *, options: bool = False,
                     scope_count: int = 0, v9_scope: bool = False) -> Template:
    """The dtype of a template's records: only elements this reader uses get a field."""
    t = Template(tid, fields, options, scope_count, v9_scope)
    names: list[str] = []
    formats: list[Any] = []
    offsets: list[int] = []
    off = 0
    variable = False
    for i, (ie, length, pen) in enumerate(fields):
        if length == VARIABLE:
            variable = True
            continue  # cut out by ``strip``: nothing after it moves in the stripped record
        if length == 0:
            t.zero_length_fields += 1
            continue
        if options and v9_scope and i < scope_count:
            name = f"s{ie}"
        elif pen == 0 and ie in WANTED:
            name = str(ie)
        elif pen == REVERSE_PEN and ie in (IE_OCTETS, IE_PACKETS):
            name = f"r{ie}"
        else:
            name = ""
        if name and name not in t.columns:
            t.columns[name] = (off, length)
            if length in (1, 2, 4, 8):
                names.append(name)
                formats.append(f">u{length}")
                offsets.append(off)
            elif length == 16 and name in (str(IE_SRC6), str(IE_DST6)):
                names += [name + "h", name + "l"]
                formats += [">u8", ">u8"]
                offsets += [off, off + 8]
            else:  # reduced-size or odd widths: bytes, combined later (up to 8 used)
                names.append(name)
                formats.append(("u1", (length,)))
                offsets.append(off)
        off += length
    t.reclen = -1 if variable else off
    t.dtype = np.dtype({"names": names, "formats": formats, "offsets": offsets,
                        "itemsize": max(off, 1)})
    return t


def strip(template: Template, body: memoryview, counters: dict[str, int]) -> tuple[bytes, int]:
    """Records of a template with variable-length fields, re-laid out without those fields
    (Python per record: such templates carry names and strings, rarely flow counters)."""
    parts: list[bytes] = []
    pos, end, n = 0, len(body), 0
    fields = template.fields
    while pos < end:
        rec: list[bytes] = []
        p = pos
        ok = True
        for _ie, length, _pen in fields:
            if length == VARIABLE:
                if p >= end:
                    ok = False
                    break
                vlen = body[p]
                p += 1
                if vlen == 255:
                    if p + 2 > end:
                        ok = False
                        break
                    vlen = body[p] << 8 | body[p + 1]
                    p += 2
                p += vlen
            else:
                if length:
                    rec.append(bytes(body[p:p + length]))
                p += length
            if p > end:
                ok = False
                break
        if not ok or p == pos:
            break  # padding, or a record cut short
        parts.append(b"".join(rec))
        n += 1
        pos = p
    counters["variable_length_records"] += n
    return b"".join(parts), n


def _uint(arr: np.ndarray, name: str) -> np.ndarray:
    """A column as uint64 whatever its encoded width (reduced-size encoding, RFC 7011 §6.2)."""
    col = arr[name]
    if col.ndim == 1:
        return col.astype(np.uint64)
    width = col.shape[1]
    out = np.zeros(len(col), np.uint64)
    for k in range(max(width - 8, 0), width):  # the low 8 bytes of wider fields
        out = (out << np.uint64(8)) | col[:, k].astype(np.uint64)
    return out


# ----------------------------------------------------------------------------- decoder
@dataclass(slots=True)
class _Domain:
    """What one exporter's observation domain has told us so far."""

    templates: dict[int, Template] = field(default_factory=dict)
    init_ms: int | None = None  # IPFIX systemInitTimeMilliseconds
    sampling: int = 0  # announced for the whole domain (0: none)
    samplers: dict[int, int] = field(default_factory=dict)  # sampler/selector id -> 1:N
    interfaces: dict[int, int] = field(default_factory=dict)  # ifindex -> 1:N
    next_seq: int | None = None


@dataclass(slots=True)
class _Group:
    """The data sets of one template in one batch, waiting for one ``frombuffer``."""

    template: Template
    domain: _Domain
    parts: list[Any] = field(default_factory=list)  # record bytes (memoryview or bytes)
    counts: list[int] = field(default_factory=list)  # records per part
    ctx: list[int] = field(default_factory=list)  # context index per part


# per datagram: version, sysUpTime ms, secs, nsecs, exporter hi, lo, domain, v5 sampling
Ctx = tuple[int, int, int, int, int, int, int, int]


class FlowDecoder:
    """Decodes NetFlow v5/v9 and IPFIX datagrams into ``FLOWREC`` arrays.

    ``decode([(datagram, exporter), ...])`` returns the records of those datagrams (and of
    earlier data sets whose template arrived in them). ``exporter`` is the sender's address
    as text. State (templates, sampling, sequence numbers) lives per exporter address,
    version and observation domain, for ``max_domains`` domains (least recently used out).

    Data sets waiting for their template: at most ``pending_sets`` sets, ``pending_bytes``
    bytes, ``pending_age_s`` seconds each (wall time passed to :meth:`decode`); older or
    excess sets are dropped and counted as ``unknown_template``.
    """

    def __init__(self, *, pending_sets: int = 4096, pending_bytes: int = 8 << 20,
                 pending_age_s: float = 60.0, max_domains: int = 4096,
                 source: str = "flow records") -> None:
        self.pending_sets = pending_sets
        self.pending_bytes = pending_bytes
        self.pending_age_s = pending_age_s
        self.max_domains = max_domains
        self.source = source
        self.stats: dict[str, int] = dict.fromkeys(COUNTERS, 0)
        self.problems: deque[str] = deque(maxlen=64)  # the latest, described
        self._domains: dict[tuple[str, int, int], _Domain] = {}
        # (domain key, template id) -> [(pending id, set body bytes, ctx)]
        self._pending: dict[tuple[tuple[str, int, int], int], deque] = {}
        self._pending_order: deque = deque()  # (received, domain key, template id, nbytes, id)
        self._pending_total = 0
        self._pending_id = 0
        self._logged: dict[str, tuple[int, float]] = {}  # reason -> (logged, when)

    # -- public ------------------------------------------------------------------------------
    @property
    def malformed(self) -> int:
        return sum(self.stats[r] for r in ERROR_REASONS)

    def decode_one(self, datagram: bytes | bytearray | memoryview, exporter: str = "0.0.0.0",
                   now: float | None = None) -> np.ndarray:
        return self.decode(((datagram, exporter),), now)

    def decode(self, datagrams: Iterable[tuple[bytes | bytearray | memoryview, str]],
               now: float | None = None) -> np.ndarray:
        """The flow records of a batch of datagrams, in template groups (not arrival order)."""
        now = time.monotonic() if now is None else now
        ctxs: list[Ctx] = []
        v5_parts: list[Any] = []
        v5_counts: list[int] = []
        v5_ctx: list[int] = []
        groups: dict[int, _Group] = {}
        st = self.stats
        for data, exporter in datagrams:
            mv = memoryview(data)
            n = len(mv)
            st["datagrams"] += 1
            st["bytes"] += n
            if n < 2:
                self._bad("truncated", exporter, f"datagram of {n} bytes")
                continue
            version = mv[0] << 8 | mv[1]
            if version == 9 or version == 10:
                self._decode_template_based(mv, version, exporter, ctxs, groups, now)
            elif version == 5:
                self._decode_v5(mv, exporter, ctxs, v5_parts, v5_counts, v5_ctx)
            else:
                self._bad("unsupported_version", exporter,
                          f"version {version} (expected 5, 9 or 10)")
        self._expire_pending(now)
        out = [self._records_v5(v5_parts, v5_counts, v5_ctx, ctxs)] if v5_parts else []
        for g in groups.values():
            out.append(self._records(g, ctxs))
        if not out:
            return np.zeros(0, FLOWREC)
        recs = out[0] if len(out) == 1 else np.concatenate(out)
        st["records"] += len(recs)
        return recs

    def flush(self) -> None:
        """End of input: data sets still waiting for a template count as unknown."""
        self._expire_pending(float("inf"))

    def forget(self) -> None:
        """Drop all templates and state (tests; an operator's reset)."""
        self._domains.clear()
        self.flush()

    def templates(self, exporter: str, version: int, domain: int) -> dict[int, Template]:
        d = self._domains.get((exporter, version, domain))
        return dict(d.templates) if d else {}

    # -- problems -----------------------------------------------------------------------------
    def _bad(self, reason: str, exporter: str, detail: str, n: int = 1) -> None:
        self.stats[reason] += n
        msg = f"{self.source} from {exporter}: {reason.replace('_', ' ')}: {detail}"
        self.problems.append(msg)
        seen, last = self._logged.get(reason, (0, -math.inf))
        now = time.monotonic()
        if seen < 5 or now - last >= 60.0:  # a broken exporter must not flood the log
            log.warning("%s (%d so far)", msg, self.stats[reason])
            last = now
        self._logged[reason] = (seen + 1, last)

    # -- v5 -------------------------------------------------------------------------------------
    def _decode_v5(self, mv: memoryview, exporter: str, ctxs: list[Ctx], parts: list[Any],
                   counts: list[int], ctx_idx: list[int]) -> None:
        n = len(mv)
        if n < V5_HEADER.size:
            self._bad("truncated", exporter, f"NetFlow v5 datagram of {n} bytes (header is 24)")
            return
        _, count, sysup, secs, nsecs, seq, etype, eid, sampling = V5_HEADER.unpack_from(mv)
        self.stats["v5_datagrams"] += 1
        whole = (n - V5_HEADER.size) // V5_RECORD.itemsize
        if count == 0 or count > 30:
            self._bad("bad_length", exporter, f"NetFlow v5 count {count} (1 to 30)")
            count = min(count, 30)
        if whole < count:
            self._bad("truncated", exporter, f"NetFlow v5 announces {count} records, "
                      f"{n} bytes hold {whole}")
            count = whole
        elif n != V5_HEADER.size + count * V5_RECORD.itemsize and count:
            self._bad("bad_length", exporter, f"NetFlow v5 datagram of {n} bytes for "
                      f"{count} records")
        key = (exporter, 5, etype << 8 | eid)
        dom = self._domain(key)
        self._sequence(dom, seq, count, exporter)
        if count <= 0:
            return
        hi, lo = exporter_halves(exporter)
        interval = sampling & 0x3FFF
        ctxs.append((5, sysup, secs, nsecs, hi, lo, etype << 8 | eid, interval))
        parts.append(mv[V5_HEADER.size:V5_HEADER.size + count * V5_RECORD.itemsize])
        counts.append(count)
        ctx_idx.append(len(ctxs) - 1)

    def _records_v5(self, parts: list[Any], counts: list[int], ctx_idx: list[int],
                    ctxs: list[Ctx]) -> np.ndarray:
        raw = np.frombuffer(b"".join(parts), V5_RECORD)
        ctx = np.array(ctxs, np.int64)[np.repeat(np.array(ctx_idx), counts)]
        out = np.zeros(len(raw), FLOWREC)
        out["src_lo"] = raw["src"].astype(np.uint64) | np.uint64(V4_MAPPED_LO_PREFIX)
        out["dst_lo"] = raw["dst"].astype(np.uint64) | np.uint64(V4_MAPPED_LO_PREFIX)
        out["src_port"], out["dst_port"] = raw["sport"], raw["dport"]
        out["proto"], out["tcp_flags"] = raw["proto"], raw["flags"]
        out["packets"], out["bytes"] = raw["pkts"], raw["octets"]
        out["ingress"], out["egress"] = raw["input"], raw["output"]
        base_ns = ctx[:, 2] * 1_000_000_000 + ctx[:, 3]
        out["first_ns"] = base_ns - _uptime_delta_ms(ctx[:, 1], raw["first"]) * 1_000_000
        out["last_ns"] = base_ns - _uptime_delta_ms(ctx[:, 1], raw["last"]) * 1_000_000
        out["exporter_hi"] = ctx[:, 4].copy().view(np.uint64)
        out["exporter_lo"] = ctx[:, 5].copy().view(np.uint64)
        out["domain"] = ctx[:, 6]
        out["sampling"] = np.maximum(ctx[:, 7], 1)
        out["version"] = 5
        out["direction"] = DIRECTION_UNKNOWN
        return out

    # -- v9 and IPFIX ---------------------------------------------------------------------------
    def _domain(self, key: tuple[str, int, int]) -> _Domain:
        d = self._domains.get(key)
        if d is None:
            if len(self._domains) >= self.max_domains:  # least recently created goes
                self._domains.pop(next(iter(self._domains)))
            d = self._domains[key] = _Domain()
        return d

    def _sequence(self, dom: _Domain, seq: int, step: int, exporter: str) -> None:
        """Count what an exporter numbered and we never got (v5 and IPFIX number records,
        v9 datagrams). Reordered or repeated datagrams are not counted as missed."""
        if dom.next_seq is not None and seq != dom.next_seq:
            gap = (seq - dom.next_seq) & 0xFFFFFFFF
            if gap < 1 << 30:
                self.stats["missed_sequence"] += gap
        dom.next_seq = (seq + step) & 0xFFFFFFFF

    def _decode_template_based(self, mv: memoryview, version: int, exporter: str,
                               ctxs: list[Ctx], groups: dict[int, _Group], now: float) -> None:
        n = len(mv)
        st = self.stats
        name = "IPFIX" if version == 10 else "NetFlow v9"
        if version == 10:
            if n < IPFIX_HEADER.size:
                self._bad("truncated", exporter, f"{name} message of {n} bytes (header is 16)")
                return
            _, length, secs, seq, domain = IPFIX_HEADER.unpack_from(mv)
            sysup = 0
            end = n
            if length < IPFIX_HEADER.size:
                self._bad("bad_length", exporter, f"{name} message length {length}")
                return
            if length > n:
                self._bad("truncated", exporter, f"{name} message says {length} bytes, "
                          f"{n} arrived")
            elif length < n:
                self._bad("bad_length", exporter, f"{name} message says {length} bytes, "
                          f"datagram has {n}: the rest is ignored")
                end = length
            pos = IPFIX_HEADER.size
            st["ipfix_datagrams"] += 1
            tmpl_set, opt_set = 2, 3
        else:
            if n < V9_HEADER.size:
                self._bad("truncated", exporter, f"{name} datagram of {n} bytes (header is 20)")
                return
            _, _count, sysup, secs, seq, domain = V9_HEADER.unpack_from(mv)
            end = n
            pos = V9_HEADER.size
            st["v9_datagrams"] += 1
            tmpl_set, opt_set = 0, 1
        key = (exporter, version, domain)
        dom = self._domains.get(key) or self._domain(key)
        templates = dom.templates
        hi, lo = exporter_halves(exporter)
        ctxs.append((version, sysup, secs, 0, hi, lo, domain, 0))
        ci = len(ctxs) - 1
        data_records = 0
        pended = False
        unpack_set = SET_HEADER.unpack_from
        while pos + 4 <= end:
            sid, slen = unpack_set(mv, pos)
            t = templates.get(sid)
            if t is not None and t.reclen > 0 and not t.options and 4 <= slen <= end - pos:
                # the common case, kept short: a whole data set of a known fixed template
                nrec = (slen - 4) // t.reclen
                if nrec:
                    g = groups.get(id(t))
                    if g is None:
                        g = groups[id(t)] = _Group(t, dom)
                    g.parts.append(mv[pos + 4:pos + 4 + nrec * t.reclen])
                    g.counts.append(nrec)
                    g.ctx.append(ci)
                    data_records += nrec
                pos += slen
                continue
            if slen < 4:
                self._bad("bad_set_length", exporter, f"{name} set {sid} at offset {pos} "
                          f"has length {slen}: rest of the datagram skipped")
                break
            cut = pos + slen > end
            if cut:
                self._bad("truncated", exporter, f"{name} set {sid} at offset {pos} claims "
                          f"{slen} bytes, {end - pos} remain: whole records kept")
            body = mv[pos + 4:min(pos + slen, end)]
            if sid >= 256:
                got = self._data_set(key, dom, sid, body, ci, groups, exporter, now, ctxs)
                pended |= got < 0
                data_records += max(got, 0)
            elif sid == tmpl_set:
                self._template_set(key, dom, body, version, False, exporter, groups, ctxs)
            elif sid == opt_set:
                self._template_set(key, dom, body, version, True, exporter, groups, ctxs)
            else:
                self._bad("bad_set_id", exporter, f"{name} set id {sid} at offset {pos} is "
                          f"reserved")
            if cut:
                break
            pos += slen
        else:
            if version == 10 and pos != end:
                self._bad("truncated", exporter, f"{name} message ends with {end - pos} "
                          f"bytes that are no set")
        if pended and version == 10:  # records of unknown count: start counting afresh
            dom.next_seq = None
        else:
            self._sequence(dom, seq, data_records if version == 10 else 1, exporter)

    def _template_set(self, key: tuple[str, int, int], dom: _Domain, body: memoryview,
                      version: int, options: bool, exporter: str, groups: dict[int, _Group],
                      ctxs: list[Ctx]) -> None:
        """Template or options template records of one set (v9 or IPFIX)."""
        st = self.stats
        pos, end = 0, len(body)
        name = "IPFIX" if version == 10 else "NetFlow v9"
        kind = "options template" if options else "template"
        while end - pos >= 4:
            if not any(body[pos:end]):
                break  # padding (IPFIX allows up to 7 bytes of it, v9 up to 3)
            if version == 9 and options:
                if end - pos < 6:
                    break  # padding
                tid, scope_len, opt_len = struct.unpack_from("!HHH", body, pos)
                pos += 6
                if scope_len % 4 or opt_len % 4 or scope_len + opt_len == 0:
                    self._bad("bad_template", exporter, f"{name} {kind} {tid}: scope length "
                              f"{scope_len}, option length {opt_len}")
                    return
                count, scope_count = (scope_len + opt_len) // 4, scope_len // 4
            elif version == 10 and options:
                if end - pos < 4:
                    break
                tid, count = SET_HEADER.unpack_from(body, pos)
                pos += 4
                if count == 0:
                    self._withdraw(dom, tid, True, 3, exporter)
                    continue
                if end - pos < 2:
                    self._bad("truncated", exporter, f"{name} {kind} {tid} cut short")
                    return
                scope_count = struct.unpack_from("!H", body, pos)[0]
                pos += 2
                if scope_count == 0 or scope_count > count:
                    self._bad("bad_template", exporter, f"{name} {kind} {tid}: {scope_count} "
                              f"scope fields of {count}")
                    return
            else:
                tid, count = SET_HEADER.unpack_from(body, pos)
                pos += 4
                scope_count = 0
                if count == 0:
                    if version == 10:
                        self._withdraw(dom, tid, False, 2, exporter)
                        continue
                    self._bad("bad_template", exporter, f"{name} {kind} {tid} has no fields")
                    return
            if tid < 256:
                self._bad("bad_template", exporter, f"{name} {kind} id {tid} (must be >= 256)")
                return
            fields: list[tuple[int, int, int]] = []
            for _ in range(count):
                if end - pos < 4:
                    self._bad("truncated", exporter, f"{name} {kind} {tid} announces {count} "
                              f"fields, the set ends after {len(fields)}")
                    return
                ie, length = SET_HEADER.unpack_from(body, pos)
                pos += 4
                pen = 0
                if version == 10 and ie & 0x8000:
                    if end - pos < 4:
                        self._bad("truncated", exporter, f"{name} {kind} {tid}: enterprise "
                                  f"number cut short")
                        return
                    pen = struct.unpack_from("!I", body, pos)[0]
                    pos += 4
                    ie &= 0x7FFF
                if length == VARIABLE and version == 9:
                    self._bad("bad_template", exporter, f"{name} {kind} {tid}: field {ie} of "
                              f"length 65535 (variable length is IPFIX only)")
                    return
                fields.append((ie, length, pen))
            t = compile_template(tid, tuple(fields), options=options, scope_count=scope_count,
                                 v9_scope=version == 9)
            if t.zero_length_fields:
                self._bad("zero_length_field", exporter, f"{name} {kind} {tid} has "
                          f"{t.zero_length_fields} field(s) of length 0", t.zero_length_fields)
            if t.reclen == 0:
                self._bad("bad_template", exporter, f"{name} {kind} {tid}: records of 0 bytes")
                continue
            old = dom.templates.get(tid)
            if old is not None and old.fields != t.fields:
                st["template_changes"] += 1
            if old is None or old.fields != t.fields or old.options != t.options:
                dom.templates[tid] = t
            st["options_templates" if options else "templates"] += 1
            self._resolve_pending(key, dom, tid, groups, exporter, ctxs)

    def _withdraw(self, dom: _Domain, tid: int, options: bool, all_id: int, exporter: str) -> None:
        """IPFIX template withdrawal (RFC 7011 §8.1): one id, or all of a kind."""
        if tid == all_id:
            gone = [k for k, t in dom.templates.items() if t.options == options]
        elif tid >= 256:
            gone = [tid] if tid in dom.templates else []
        else:
            self._bad("bad_template", exporter, f"IPFIX withdrawal of template id {tid}")
            return
        for k in gone:
            del dom.templates[k]
        self.stats["templates_withdrawn"] += len(gone)

    def _data_set(self, key: tuple[str, int, int], dom: _Domain, sid: int, body: memoryview,
                  ci: int, groups: dict[int, _Group], exporter: str, now: float,
                  ctxs: list[Ctx]) -> int:
        t = dom.templates.get(sid)
        if t is None:
            self._pend(key, sid, bytes(body), ctxs[ci], now)
            return -1
        return self._add_set(t, dom, body, ci, groups, exporter)

    def _add_set(self, t: Template, dom: _Domain, body: memoryview | bytes, ci: int,
                 groups: dict[int, _Group], exporter: str) -> int:
        if t.variable:
            data, nrec = strip(t, memoryview(body), self.stats)
        else:
            nrec = len(body) // t.reclen
            data = body[:nrec * t.reclen]
        if nrec == 0:
            return 0
        if t.options:
            self._options_records(t, dom, np.frombuffer(data, t.dtype, nrec))
            self.stats["options_records"] += nrec
            return nrec
        g = groups.get(id(t))
        if g is None:
            g = groups[id(t)] = _Group(t, dom)
        g.parts.append(data)
        g.counts.append(nrec)
        g.ctx.append(ci)
        return nrec

    # -- waiting for templates -----------------------------------------------------------------
    def _pend(self, key: tuple[str, int, int], tid: int, body: bytes, ctx: Ctx, now: float) -> None:
        self._pending_id += 1
        self._pending.setdefault((key, tid), deque()).append((self._pending_id, body, ctx))
        self._pending_order.append((now, key, tid, len(body), self._pending_id))
        self._pending_total += len(body)
        self.stats["pending_sets"] += 1
        while (self.stats["pending_sets"] > self.pending_sets
               or self._pending_total > self.pending_bytes):
            self._drop_oldest_pending()

    def _drop_oldest_pending(self) -> None:
        _, key, tid, nbytes, pid = self._pending_order.popleft()
        q = self._pending.get((key, tid))
        if not q or q[0][0] != pid:
            return  # already resolved
        q.popleft()
        if not q:
            del self._pending[(key, tid)]
        self._pending_total -= nbytes
        self.stats["pending_sets"] -= 1
        self._bad("unknown_template", key[0], f"data set for template {tid} (domain "
                  f"{key[2]}) dropped: its template never arrived")

    def _expire_pending(self, now: float) -> None:
        while self._pending_order and now - self._pending_order[0][0] > self.pending_age_s:
            self._drop_oldest_pending()
        if not self._pending:
            self._pending_order.clear()
            self._pending_total = 0

    def _resolve_pending(self, key: tuple[str, int, int], dom: _Domain, tid: int,
                         groups: dict[int, _Group], exporter: str, ctxs: list[Ctx]) -> None:
        q = self._pending.pop((key, tid), None)
        if not q:
            return
        t = dom.templates[tid]
        for _, body, ctx in q:
            ctxs.append(ctx)
            self._add_set(t, dom, body, len(ctxs) - 1, groups, exporter)
            self._pending_total -= len(body)
            self.stats["pending_sets"] -= 1
            self.stats["late_sets"] += 1
        # their entries in _pending_order are skipped when they come up

    # -- options: sampling and the clock --------------------------------------------------------
    def _options_records(self, t: Template, dom: _Domain, arr: np.ndarray) -> None:
        cols = t.columns
        values: dict[str, list[int]] = {name: _uint(arr, name).tolist()
                                        for name in cols if name in arr.dtype.names}
        for i in range(len(arr)):
            v = {name: col[i] for name, col in values.items()}
            if str(IE_INIT_MS) in v:
                dom.init_ms = v[str(IE_INIT_MS)]
            interval = _sampling_of(v)
            if interval is None:
                continue
            sampler = v.get(str(IE_SAMPLER_ID), v.get(str(IE_SELECTOR_ID)))
            ifindex = v.get(f"s{V9_SCOPE_INTERFACE}", v.get(str(IE_INGRESS)))
            if sampler is not None:
                dom.samplers[sampler] = interval
            elif ifindex is not None and ifindex != 0:
                dom.interfaces[ifindex] = interval
            else:
                dom.sampling = interval

    # -- data records → FLOWREC -----------------------------------------------------------------
    def _records(self, g: _Group, ctxs: list[Ctx]) -> np.ndarray:
        t, dom = g.template, g.domain
        raw = np.frombuffer(g.parts[0] if len(g.parts) == 1 else b"".join(g.parts), t.dtype)
        n = len(raw)
        ctx = np.array(ctxs, np.int64)[np.repeat(np.array(g.ctx), g.counts)]
        have = raw.dtype.names
        cols = t.columns
        out = np.zeros(n, FLOWREC)

        def col(ie: int) -> np.ndarray | None:
            return _uint(raw, str(ie)) if str(ie) in have else None

        for ie4, ie6, hi_name, lo_name in ((IE_SRC4, IE_SRC6, "src_hi", "src_lo"),
                                           (IE_DST4, IE_DST6, "dst_hi", "dst_lo")):
            v6 = f"{ie6}h"
            if v6 in have:
                out[hi_name] = raw[v6]
                out[lo_name] = raw[f"{ie6}l"]
            if str(ie4) in have:  # a template has one family; if both, IPv4 wins where set
                a4 = col(ie4)
                mapped = a4 | np.uint64(V4_MAPPED_LO_PREFIX)
                if v6 in have:
                    use = a4 != 0
                    out[hi_name][use] = 0
                    out[lo_name][use] = mapped[use]
                else:
                    out[lo_name] = mapped
        for name, options in (("src_port", (IE_SRC_PORT, IE_TCP_SRC, IE_UDP_SRC)),
                              ("dst_port", (IE_DST_PORT, IE_TCP_DST, IE_UDP_DST)),
                              ("packets", (IE_PACKETS, IE_PACKETS_TOTAL, IE_POST_PACKETS)),
                              ("bytes", (IE_OCTETS, IE_OCTETS_TOTAL, IE_POST_OCTETS)),
                              ("proto", (IE_PROTO,)), ("ingress", (IE_INGRESS,)),
                              ("egress", (IE_EGRESS,)), ("vlan", (IE_VLAN, IE_DOT1Q_VLAN)),
                              ("end_reason", (IE_END_REASON,))):
            for ie in options:
                if str(ie) in have:
                    out[name] = col(ie)
                    break
        if str(IE_TCP_FLAGS) in have:
            out["tcp_flags"] = col(IE_TCP_FLAGS) & np.uint64(0xFF)
        out["direction"] = col(IE_DIRECTION) if str(IE_DIRECTION) in have else DIRECTION_UNKNOWN
        if f"r{IE_PACKETS}" in have:
            out["rev_packets"] = _uint(raw, f"r{IE_PACKETS}")
        if f"r{IE_OCTETS}" in have:
            out["rev_bytes"] = _uint(raw, f"r{IE_OCTETS}")
        out["exporter_hi"] = ctx[:, 4].copy().view(np.uint64)
        out["exporter_lo"] = ctx[:, 5].copy().view(np.uint64)
        out["domain"] = ctx[:, 6]
        out["version"] = ctx[:, 0]
        self._times(out, raw, have, ctx, dom)
        self._sampling(out, raw, have, cols, dom)
        return out

    def _times(self, out: np.ndarray, raw: np.ndarray, have: tuple[str, ...], ctx: np.ndarray,
               dom: _Domain) -> None:
        """Start and end in ns from whichever clock the template carries (finest first)."""
        export_ns = ctx[:, 2] * 1_000_000_000

        def pick(start: bool) -> np.ndarray | None:
            ns_ie, us_ie, ms_ie, s_ie, d_ie, up_ie = (
                (IE_START_NS, IE_START_US, IE_START_MS, IE_START_S, IE_START_DELTA_US,
                 IE_START_UPTIME) if start else
                (IE_END_NS, IE_END_US, IE_END_MS, IE_END_S, IE_END_DELTA_US, IE_END_UPTIME))
            for ie in (ns_ie, us_ie):
                if str(ie) in have:
                    return _ntp_ns(_uint(raw, str(ie)))
            if str(ms_ie) in have:
                return _uint(raw, str(ms_ie)).astype(np.int64) * 1_000_000
            if str(s_ie) in have:
                return _uint(raw, str(s_ie)).astype(np.int64) * 1_000_000_000
            if str(d_ie) in have:
                return export_ns - _uint(raw, str(d_ie)).astype(np.int64) * 1_000
            if str(up_ie) in have:
                up = _uint(raw, str(up_ie)).astype(np.int64)
                v9 = ctx[:, 0] == 9
                result = np.empty(len(up), np.int64)
                result[v9] = export_ns[v9] - _uptime_delta_ms(ctx[v9, 1], up[v9]) * 1_000_000
                if (~v9).any():  # IPFIX: milliseconds since systemInitTimeMilliseconds
                    init = (_uint(raw, str(IE_INIT_MS)).astype(np.int64)
                            if str(IE_INIT_MS) in have else None)
                    if init is None and dom.init_ms is None:
                        self.stats["no_time_base"] += int(np.count_nonzero(~v9)) if start else 0
                        result[~v9] = export_ns[~v9]
                    else:
                        base = init[~v9] if init is not None else np.int64(dom.init_ms)
                        result[~v9] = (base + up[~v9]) * 1_000_000
                return result
            return None

        first, last = pick(True), pick(False)
        if first is None and last is None:
            first = last = export_ns
        elif first is None:
            first = last
        elif last is None:
            last = first
        out["first_ns"] = first
        out["last_ns"] = last

    def _sampling(self, out: np.ndarray, raw: np.ndarray, have: tuple[str, ...],
                  cols: dict[str, tuple[int, int]], dom: _Domain) -> None:
        """1:N per record: the record's own interval, else its sampler's or selector's, else
        its input interface's, else the domain's; 1 when nothing was announced."""
        n = len(out)
        rate = np.zeros(n, np.uint64)
        for ie in (IE_SAMPLING_INTERVAL, IE_SAMPLER_RANDOM_INTERVAL):
            if str(ie) in have:
                rate = _uint(raw, str(ie))
                break
        todo = rate == 0
        for ie in (IE_SAMPLER_ID, IE_SELECTOR_ID):
            if str(ie) in have and dom.samplers and todo.any():
                ids = _uint(raw, str(ie))
                rate[todo] = _lookup(ids[todo], dom.samplers)
                todo = rate == 0
                break
        if dom.interfaces and todo.any():
            rate[todo] = _lookup(out["ingress"][todo].astype(np.uint64), dom.interfaces)
            todo = rate == 0
        if dom.sampling:
            rate[todo] = dom.sampling
        out["sampling"] = np.clip(rate, 1, 0xFFFFFFFF)


def _lookup(keys: np.ndarray, table: dict[int, int]) -> np.ndarray:
    uniq, inv = np.unique(keys, return_inverse=True)
    vals = np.array([table.get(int(k), 0) for k in uniq], np.uint64)
    return vals[inv]


def _sampling_of(v: dict[str, int]) -> int | None:
    """1:N from an options record (v9 sampling interval or sampler random interval; IPFIX
    samplingPacketInterval/Space or samplingSize/Population)."""
    for ie in (IE_SAMPLING_INTERVAL, IE_SAMPLER_RANDOM_INTERVAL):
        if v.get(str(ie)):
            return int(v[str(ie)])
    interval, space = v.get(str(IE_PKT_INTERVAL)), v.get(str(IE_PKT_SPACE))
    if interval:
        return max(1, round((interval + (space or 0)) / interval))
    size, population = v.get(str(IE_SAMPLING_SIZE)), v.get(str(IE_SAMPLING_POPULATION))
    if size and population:
        return max(1, round(population / size))
    return None


def _uptime_delta_ms(sysup: np.ndarray, at: np.ndarray) -> np.ndarray:
    """Milliseconds from a record's uptime stamp to the header's, across the 32-bit wrap
    (a stamp slightly after the header's, from clock skew, gives a small negative delta)."""
    d = (sysup.astype(np.int64) - at.astype(np.int64)) & 0xFFFFFFFF
    return np.where(d >= 1 << 31, d - (1 << 32), d)


def _ntp_ns(v: np.ndarray) -> np.ndarray:
    """IPFIX dateTimeMicro/Nanoseconds (NTP format: seconds since 1900 . fraction) → ns."""
    secs = (v >> np.uint64(32)).astype(np.int64) - NTP_EPOCH_OFFSET
    frac = (v & np.uint64(0xFFFFFFFF)).astype(np.int64)
    return secs * 1_000_000_000 + ((frac * 1_000_000_000) >> 32)
