"""Passive DNS: the names the capture's own DNS answers gave to each address.

A miner usually connects to a pool by name (``etc.2miners.com:1010``), and the name says more
than the address: which pool, often which coin (``fingerprints/pools.csv``). The name is on
the wire only in the DNS answer that came just before the connection, so the scan keeps a map
address → names from every DNS answer it reads, and the Stratum tracker asks it for the name
of a session's pool address at the session's first-seen time
(:meth:`PassiveDns.host_of`, the tracker's ``host_of``).

Selection is one numba pass over the batch (:mod:`poolwatch.kernels.dnsselect`): the rows
with port 53, then the OK UDP/TCP ones with a whole DNS header whose QR bit says
"response", with answers, and whose question asks for A, AAAA or ANY (the question name is
walked label by label). Python runs only for those responses. Queries and answers to other
questions (PTR, TXT, MX, NULL...) are counted, never parsed: they give no address a name.

What is read from a response: the questions and the answer section, walked by
:mod:`poolwatch.kernels.dnsparse` for a batch's UDP responses at once, and by
:meth:`PassiveDns._message` (its twin) for DNS over TCP; both read names as dpkt's
``dpkt.dns.unpack_name`` does (it follows compression pointers, accepts only
pointers backwards, so no loops, and refuses names over 255 bytes) and ``struct`` for the
fixed fields; A, AAAA and CNAME records of class IN are used. The authority and additional
sections are not parsed: an EDNS OPT record, RRSIGs, glue and anything else there cannot
break the answers before them. (dpkt's ``DNS`` class parses every section and gives up on the
whole message at any record type it does not know, RRSIG, HTTPS and SVCB among them, and its
record objects cost more to build than the parsing itself.)

An address maps to the name the client **asked for** (the question), with the CNAME chain
that led to the address: ``pool.example`` → CNAME ``lb.cdn.example`` → A ``192.0.2.7`` maps
``192.0.2.7`` to ``pool.example`` with chain ``("pool.example", "lb.cdn.example")``. An
address record that no question leads to maps to its own owner name.

Known limits:

* DNS over TCP is put back in order per direction (retransmissions skipped, a message
  split over segments joined); after a lost segment the stream restarts at the next one,
  taken to begin a message (``tcp_gaps``). At most ``max_tcp_streams`` directions with an
  incomplete message are kept.
* DNS over TLS (853), over HTTPS and over QUIC is encrypted: no names from those.
* The map is global, not per client: geo-DNS that gives different clients different
  addresses is fine (each address maps to its name); an address shared by several names is
  resolved by ``prefer`` and recency (:meth:`PassiveDns.host_of`).
* Answers are taken as the client saw them: a forged answer in the capture names its
  address too.
"""

from __future__ import annotations

import functools
import struct
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from poolwatch.fingerprints import Fingerprints, normalize_name
from poolwatch.kernels.dnsparse import (K_QUESTION, M_BAD, M_FULL, M_NEED_DATA, M_NO_ANSWERS,
                                        TYPE_CNAME, parse_dns_messages)
from poolwatch.kernels.dnsselect import (C_MALFORMED, C_NO_ADDRESSES, C_PACKETS, C_QUERIES,
                                         C_TRUNCATED, select_dns_messages)
from poolwatch.records import PacketBatch, addr_to_halves, halves_to_addr

__all__ = ["DEFAULT_GRACE_S", "DnsName", "PassiveDns", "pool_name_matcher"]

NS = 1_000_000_000
DEFAULT_GRACE_S = 3600.0
DNS_PORT = 53
_HEADER = struct.Struct(">HHHHHH")  # id, flags, qdcount, ancount, nscount, arcount
_QTAIL = struct.Struct(">HH")  # qtype, qclass
_RRHEAD = struct.Struct(">HHIH")  # type, class, ttl, rdlength
_TC = 0x0200
_ANY = 255
_MISSING = object()
# RFC 1035 / 3596 numbers, as dpkt.dns names them (a test compares): dpkt itself is imported
# only by the Python walk (DNS over TCP, names too long for the kernel's buffer), not by every
# scan's start-up (0.05 s)
_CLASS_IN = 1
_A, _AAAA, _CNAME = 1, 28, 5
_OPCODE_QUERY = 0
_MAX_CHAIN = 16  # CNAME hops followed from a question (resolvers stop at 8-16 as well)

STAT_NAMES = (
    "packets",  # port-53 UDP/TCP packets with payload
    "queries",  # messages with the QR bit clear (counted, not parsed)
    "no_addresses",  # responses without answers, or to other questions (counted, not parsed)
    "messages",  # responses parsed
    "answers",  # A/AAAA records learnt (address -> name)
    "cnames",  # CNAME records in answer sections
    "malformed",  # not DNS: bad labels or pointers, counts past the end of a whole message...
    "truncated",  # cut by the capture (snap length, IP fragments); records before the cut used
    "tc",  # responses the server truncated (TC bit); their complete records are used
    "tcp_reassembled",  # TCP segments that ended inside a message continued in a later one
    "tcp_retransmitted",  # TCP segments whose bytes were already read
    "tcp_gaps",  # TCP streams where a segment was missing: read again from the next segment
    "tcp_dropped",  # TCP streams forgotten with a message incomplete (max_tcp_streams)
    "other_opcodes",  # responses to NOTIFY, UPDATE...: not name lookups
    "bad_names",  # names that are not host names (non-ASCII, illegal characters), skipped
    "bad_records",  # A/AAAA records whose data is not 4/16 bytes
    "evicted",  # addresses forgotten to stay within max_entries (least recently updated)
    "names_dropped",  # names forgotten for one address beyond max_names (earliest expiry)
)


class _TcpStream:
    """One direction of a DNS-over-TCP connection with a message not complete yet."""

    __slots__ = ("data", "last_ts", "next_seq", "skip")

    def __init__(self, seq: int) -> None:
        self.next_seq = seq
        self.data = bytearray()
        self.skip = 0  # bytes still to skip: the rest of a message the capture cut short
        self.last_ts = 0


def _seq_diff(a: int, b: int) -> int:
    """a - b in TCP sequence space (wraps at 2^32)."""
    return ((a - b + 0x80000000) & 0xFFFFFFFF) - 0x80000000


@dataclass(frozen=True, slots=True)
class DnsName:
    """One name of an address: what was asked, the CNAME chain, when it held.

    ``first_answer_ns``/``last_answer_ns`` are the capture times of the first and latest
    answer of a run of answers whose validity windows overlap; the name is taken as valid
    from ``first_answer_ns`` to ``valid_until_ns`` (latest answer time + TTL + grace), both
    included.
    """

    name: str
    chain: tuple[str, ...]
    first_answer_ns: int
    last_answer_ns: int
    valid_until_ns: int


class _Run:
    """Mutable form of :class:`DnsName` inside the map."""

    __slots__ = ("chain", "end", "first", "last", "name")

    def __init__(self, name: str, chain: tuple[str, ...], first: int, end: int) -> None:
        self.name, self.chain, self.first, self.last, self.end = name, chain, first, first, end

    def public(self) -> DnsName:
        return DnsName(self.name, self.chain, self.first, self.last, self.end)


def pool_name_matcher(fp: Fingerprints) -> Callable[[str], bool]:
    """``prefer`` for :class:`PassiveDns`: names under a listed pool domain
    (``domains.csv``) or listed as a pool endpoint host (``pools.csv``). Asked for every
    address of every answer, mostly about the same few names (normalising and looking up a
    name each time was a quarter of a scan's main thread on the benchmark input), so the
    answers are cached: the fingerprints do not change while the matcher lives."""

    @functools.lru_cache(maxsize=1 << 16)
    def is_pool_name(name: str) -> bool:
        return fp.match_domain(name) is not None or bool(fp.endpoints_for(name))

    return is_pool_name


def _canonical(ip: str) -> str | None:
    """An address in the form ``records.halves_to_addr`` writes (IPv4 dotted, IPv6
    compressed, IPv4-mapped IPv6 as IPv4), or None when ``ip`` is not an address."""
    try:
        return halves_to_addr(*addr_to_halves(ip))
    except ValueError:
        return None


class PassiveDns:
    """Address → names from the DNS answers of a capture, valid for TTL + grace.

    :meth:`update` reads the DNS responses of a batch (see the module docstring for what is
    selected and parsed). Each A/AAAA answer makes its address map to the name the client
    asked for, valid from the answer's capture time to that time + TTL + ``grace_s``, both
    ends included, to the nanosecond. The TTL of an answer reached through CNAMEs is the
    smallest TTL along its chain (the client forgets the chain when its first link expires);
    a TTL with the top bit set counts as 0 (RFC 2181, 8).

    ``grace_s`` (default :data:`DEFAULT_GRACE_S`, one hour) extends every validity because
    clients use answers well past their TTL: a miner resolves its pool once at start and
    reconnects to the same address after a drop, stub resolvers and language runtimes cache
    past the TTL, and pool load balancers announce short TTLs (30-300 s) that say how often to
    re-ask, not when the address stops being the pool. The cost of a longer grace is a wrong
    name when an address changes hands within it (CDNs, shared hosting), which ``prefer`` and
    recency mitigate; 0 gives strict TTL semantics.

    Answers of one name for one address whose windows overlap (or touch) are merged into one
    run; within a run the name counts as answered at every moment up to its latest answer.
    Memory is bounded: at most ``max_entries`` addresses (the least recently updated address
    goes first, counted in ``stats["evicted"]``; about 0.5 KB each, 35 MB when full) and
    ``max_names`` names per address (the one expiring first goes, ``stats["names_dropped"]``).

    The TTL semantics need capture time to move forward: an answer is only looked up at
    times after it. Several capture files are read in the order given (``scan`` sorts
    directories), so files out of time order can leave a session unnamed.

    ``stats`` counts what was read and what was wrong with it (:data:`STAT_NAMES`); nothing
    in a packet ever raises.
    """

    def __init__(
        self,
        *,
        grace_s: float = DEFAULT_GRACE_S,
        max_entries: int = 1 << 16,
        max_names: int = 16,
        prefer: Callable[[str], bool] | None = None,
        max_tcp_streams: int = 1024,
    ) -> None:
        if max_entries < 1 or max_names < 1:
            raise ValueError("max_entries and max_names must be at least 1")
        if grace_s < 0:
            raise ValueError("grace_s must not be negative")
        self.grace_ns = round(grace_s * NS)
        self.max_entries = max_entries
        self.max_names = max_names
        self.prefer = prefer
        self.max_tcp_streams = max_tcp_streams
        # DNS-over-TCP directions with a message incomplete, least recently added first
        self._streams: OrderedDict[tuple, _TcpStream] = OrderedDict()
        self._map: OrderedDict[str, list[_Run]] = OrderedDict()  # least recently updated first
        # addresses a name ``prefer`` accepts (a pool name) resolved to, as they are learnt:
        # the contact judge watches flows to these
        self.preferred: dict[str, str] = {}  # address -> the pool name
        self._names: dict[str, str | None] = {}  # raw name -> normalised (a bounded cache)
        self.stats: dict[str, int] = dict.fromkeys(STAT_NAMES, 0)

    def __len__(self) -> int:
        return len(self._map)

    def addresses(self) -> list[str]:
        """Every address with a name, least recently updated first."""
        return list(self._map)

    # -- reading ------------------------------------------------------------------------------

    def update(self, batch: PacketBatch) -> None:
        """Learn from the DNS responses in one batch (done before this returns: the reader may
        reuse the batch's arrays afterwards)."""
        pk = batch.packets
        if len(pk) == 0:
            return
        rows, start, cap, wire, tcp, counts = select_dns_messages(batch.buf, pk, DNS_PORT)
        stats = self.stats
        stats["packets"] += int(counts[C_PACKETS])
        stats["queries"] += int(counts[C_QUERIES])
        stats["no_addresses"] += int(counts[C_NO_ADDRESSES])
        stats["truncated"] += int(counts[C_TRUNCATED])
        stats["malformed"] += int(counts[C_MALFORMED])
        if len(rows) == 0:
            return
        # TCP: length-prefixed messages in a byte stream, put back in order per direction
        # (rare: big answers, zone transfers). UDP: the message is the whole payload.
        if tcp.any():
            self._tcp_rows(batch, rows[tcp], start[tcp], cap[tcp], wire[tcp])
            udp = ~tcp
            rows, start, cap, wire = rows[udp], start[udp], cap[udp], wire[udp]
        if len(rows):
            self._messages(batch.buf, start, cap, cap < wire, pk["ts_ns"][rows].tolist())

    def _messages(self, buf: np.ndarray, start: np.ndarray, cap: np.ndarray,
                  cut: np.ndarray, ts: list[int]) -> None:
        """The UDP responses of a batch, walked by ``kernels.dnsparse`` (what
        :meth:`_message` does, for all of them in one call); Python turns names into text
        and learns the answers, with :meth:`_message`'s outcome for every kind of damage."""
        names = np.empty(int(cap.sum()) * 4 + 4096, np.uint8)
        (status, flags, first, count, kind, ttl, name_at, name_len, data_at, data_len,
         used) = parse_dns_messages(buf, start, cap, names)
        text = names[:used].tobytes()
        stats = self.stats
        cols = zip(status.tolist(), flags.tolist(), first.tolist(), count.tolist(),
                   cut.tolist(), ts)
        kind_l, ttl_l = kind.tolist(), ttl.tolist()
        name_at_l, name_len_l = name_at.tolist(), name_len.tolist()
        data_at_l, data_len_l = data_at.tolist(), data_len.tolist()
        for i, (st, fl, lo, n, was_cut, t) in enumerate(cols):
            if st == M_NO_ANSWERS:
                stats["no_addresses"] += 1
                continue
            if st == M_FULL:  # names too long for the buffer: the Python walk
                s = int(start[i])
                self._message(buf[s : s + int(cap[i])].tobytes(), bool(was_cut), t)
                continue
            stats["messages"] += 1
            if st == M_BAD or (st == M_NEED_DATA and not was_cut):
                stats["malformed"] += 1
                continue
            questions: list[str] = []
            records: list[tuple[str, int, int, bytes | str]] = []
            try:
                for j in range(lo, lo + n):
                    a = name_at_l[j]
                    name = text[a : a + name_len_l[j]].decode("utf-8")
                    k = kind_l[j]
                    if k == K_QUESTION:
                        questions.append(name)
                    elif k == TYPE_CNAME:
                        d = data_at_l[j]
                        records.append((name, k, ttl_l[j],
                                        text[d : d + data_len_l[j]].decode("utf-8")))
                    elif k > 0:  # A, AAAA
                        d = data_at_l[j]
                        records.append((name, k, ttl_l[j], buf[d : d + data_len_l[j]].tobytes()))
            except UnicodeError:
                stats["malformed"] += 1
                continue
            if was_cut:
                stats["truncated"] += 1
            if fl & _TC:
                stats["tc"] += 1
            if (fl >> 11) & 0xF != _OPCODE_QUERY:
                stats["other_opcodes"] += 1
                continue
            if records:
                self._learn(questions, records, t)

    def _tcp_rows(self, batch: PacketBatch, rows: np.ndarray, start: np.ndarray,
                  cap: np.ndarray, wire: np.ndarray) -> None:
        """Port-53 TCP segments with payload, each added to its direction's stream."""
        pk, buf = batch.packets, batch.buf
        seq_at = pk["data_off"][rows].astype(np.int64) + pk["l4_off"][rows] + 4
        seq = np.zeros(len(rows), np.int64)
        for k in range(4):
            seq = (seq << 8) | buf[seq_at + k]
        cols = zip(pk["src_hi"][rows].tolist(), pk["src_lo"][rows].tolist(),
                   pk["sport"][rows].tolist(), pk["dst_hi"][rows].tolist(),
                   pk["dst_lo"][rows].tolist(), pk["dport"][rows].tolist(),
                   pk["vlan"][rows].tolist(), seq.tolist(), start.tolist(), cap.tolist(),
                   wire.tolist(), pk["ts_ns"][rows].tolist())
        for shi, slo, sp, dhi, dlo, dp, vlan, sq, s, c, w, ts in cols:
            self._tcp_segment((vlan, shi, slo, sp, dhi, dlo, dp), sq, buf[s : s + c].tobytes(),
                              w, ts)
        if len(self._streams) > self.max_tcp_streams:  # partial messages nobody finished
            while len(self._streams) > self.max_tcp_streams:
                self._streams.popitem(last=False)
                self.stats["tcp_dropped"] += 1

    def _tcp_segment(self, key: tuple, seq: int, seg: bytes, wire: int, ts: int) -> None:
        """One segment of one direction: in-order bytes are appended, retransmitted ones
        skipped, and every whole length-prefixed message is read. A stream is kept only while
        a message is incomplete, so the usual one-segment answer leaves no state."""
        st = self._streams.pop(key, None)
        if st is None:
            st = _TcpStream(seq)  # a new stream starts at a message boundary
        elif _seq_diff(seq, st.next_seq) > 0:  # a segment was lost: boundaries are lost too
            self.stats["tcp_gaps"] += 1
            st = _TcpStream(seq)
        elif (overlap := _seq_diff(st.next_seq, seq)) > 0:  # retransmission (in part)
            if overlap >= wire:
                self.stats["tcp_retransmitted"] += 1
                self._streams[key] = st
                return
            seg, wire, seq = seg[overlap:], wire - overlap, st.next_seq
        if st.skip:  # the rest of a message the capture cut short
            drop = min(st.skip, wire)
            seg, wire, st.skip = seg[drop:], wire - drop, st.skip - drop
            if drop and len(seg) == 0 and wire == 0:
                st.next_seq = (seq + drop) & 0xFFFFFFFF
                if st.skip:
                    self._streams[key] = st
                return
            seq = (seq + drop) & 0xFFFFFFFF
        st.data += seg
        st.next_seq = (seq + wire) & 0xFFFFFFFF
        st.last_ts = ts
        data, off = st.data, 0
        while off + 2 <= len(data):
            n = (data[off] << 8) | data[off + 1]
            if off + 2 + n > len(data):
                break
            self._tcp_message(bytes(data[off + 2 : off + 2 + n]), False, ts)
            off += 2 + n
        del data[:off]
        if len(seg) < wire:  # the capture lost this segment's end (snap length)
            if len(data) >= 2:
                n = (data[0] << 8) | data[1]
                self._tcp_message(bytes(data[2:]), True, ts)
                st.skip = max(2 + n - (len(data) + wire - len(seg)), 0)
            else:
                self.stats["tcp_gaps"] += 1
                return  # even the length is lost: the stream cannot be followed
            data.clear()
        if data or st.skip:
            self._streams[key] = st
            self.stats["tcp_reassembled"] += 1 if data else 0

    def _tcp_message(self, body: bytes, cut: bool, ts: int) -> None:
        if len(body) < 12:
            self.stats["truncated" if cut else "malformed"] += 1
        elif body[2] & 0x80:
            self._message(body, cut, ts)
        else:
            self.stats["queries"] += 1

    def _message(self, msg: bytes, cut: bool, ts: int) -> None:
        """One DNS response (header known to be there). ``cut``: the capture lost its end."""
        import dpkt  # here, not at the top: see _CLASS_IN
        import dpkt.dns

        _unpack_name = dpkt.dns.unpack_name
        _id, flags, qdcount, ancount, _ns, _ar = _HEADER.unpack_from(msg)
        if ancount == 0:
            self.stats["no_addresses"] += 1
            return
        self.stats["messages"] += 1
        questions: list[str] = []
        records: list[tuple[str, int, int, bytes | str]] = []  # (owner, type, ttl, data)
        off, size = 12, len(msg)
        # Names decoded so far by offset: an owner that is only a pointer to one of them (the
        # usual answer: c0 0c) is not decoded again.
        seen: dict[int, str] = {}
        try:
            for _ in range(qdcount):
                name, end = _unpack_name(msg, off)
                seen[off] = name
                _QTAIL.unpack_from(msg, end)
                off = end + 4
                questions.append(name)
            for _ in range(ancount):
                if (off + 1 < size and msg[off] >= 0xC0
                        and (owner := seen.get(((msg[off] & 0x3F) << 8) | msg[off + 1]))):
                    off += 2  # seen holds only offsets before this one: a backward pointer
                else:
                    owner, end = _unpack_name(msg, off)
                    seen[off], off = owner, end
                rtype, rclass, ttl, rdlen = _RRHEAD.unpack_from(msg, off)
                off += 10
                if off + rdlen > size:
                    raise dpkt.NeedData("record data past the end")
                if rclass == _CLASS_IN:
                    if rtype == _CNAME:
                        target, _ = _unpack_name(msg, off)
                        seen[off] = target
                        records.append((owner, rtype, ttl, target))
                    elif rtype == _A or rtype == _AAAA:
                        records.append((owner, rtype, ttl, msg[off : off + rdlen]))
                off += rdlen
        except (dpkt.NeedData, struct.error):
            if not cut:  # a whole message that claims more than it holds
                self.stats["malformed"] += 1
                return
        except (dpkt.UnpackError, UnicodeError):
            self.stats["malformed"] += 1
            return
        if cut:
            self.stats["truncated"] += 1
        if flags & _TC:
            self.stats["tc"] += 1
        if (flags >> 11) & 0xF != _OPCODE_QUERY:
            self.stats["other_opcodes"] += 1
            return
        if records:
            self._learn(questions, records, ts)

    def _name(self, raw: str) -> str | None:
        """A name as compared everywhere (``fingerprints.normalize_name``), None (counted)
        for what is not a host name."""
        name = self._names.get(raw, _MISSING)
        if name is _MISSING:
            name = normalize_name(raw) if raw.isascii() else None
            if len(self._names) >= 4096:
                self._names.clear()
            self._names[raw] = name
        if name is None:
            self.stats["bad_names"] += 1
        return name  # type: ignore[return-value]

    def _learn(self, questions: list[str], records: list, ts: int) -> None:
        """Follow each question through the CNAMEs; map every address record to its name."""
        name_of = self._name
        cnames: dict[str, tuple[str, int]] = {}
        addresses: list[tuple[str, str, int]] = []  # (owner, address, ttl)
        for raw, rtype, ttl, data in records:
            owner = name_of(raw)
            if owner is None:
                continue
            if ttl >= 1 << 31:
                ttl = 0
            if rtype == _A:
                if len(data) == 4:
                    addresses.append((owner, f"{data[0]}.{data[1]}.{data[2]}.{data[3]}", ttl))
                    continue
            elif rtype == _CNAME:
                self.stats["cnames"] += 1
                if (target := name_of(data)) is not None:
                    cnames.setdefault(owner, (target, ttl))
                continue
            elif len(data) == 16:  # AAAA
                addresses.append((owner, halves_to_addr(int.from_bytes(data[:8], "big"),
                                                        int.from_bytes(data[8:], "big")), ttl))
                continue
            self.stats["bad_records"] += 1
        if not addresses:
            return
        # owner name -> (asked name, chain up to the owner, smallest CNAME TTL on the way)
        reach: dict[str, tuple[str, tuple[str, ...], int]] = {}
        for raw in questions:
            if (asked := name_of(raw)) is None:
                continue
            chain, ttl = (asked,), 1 << 31
            while True:
                reach.setdefault(chain[-1], (asked, chain, ttl))
                hop = cnames.get(chain[-1]) if cnames else None
                if hop is None or hop[0] in chain or len(chain) >= _MAX_CHAIN:
                    break
                chain, ttl = chain + (hop[0],), min(ttl, hop[1])
        grace = self.grace_ns
        self.stats["answers"] += len(addresses)
        for owner, addr, ttl in addresses:
            reached = reach.get(owner)
            if reached is None:
                self._add(addr, owner, (owner,), ts, ts + ttl * NS + grace)
            else:
                asked, chain, chain_ttl = reached
                self._add(addr, asked, chain, ts,
                          ts + min(ttl, chain_ttl) * NS + grace)

    def _add(self, addr: str, name: str, chain: tuple[str, ...], ts: int, end: int) -> None:
        if self.prefer is not None and addr not in self.preferred:
            prefer, hit = self.prefer, None
            if prefer(name):
                hit = name
            else:
                for n in chain:
                    if prefer(n):
                        hit = n
                        break
            if hit is not None:
                if len(self.preferred) >= self.max_entries:
                    del self.preferred[next(iter(self.preferred))]
                self.preferred[addr] = hit
        runs = self._map.get(addr)
        if runs is None:
            if len(self._map) >= self.max_entries:
                self._map.popitem(last=False)
                self.stats["evicted"] += 1
            self._map[addr] = [_Run(name, chain, ts, end)]
            return
        self._map.move_to_end(addr)
        for run in runs:
            if run.name == name and ts <= run.end and end >= run.first:
                if ts >= run.last:
                    run.last, run.chain = ts, chain
                run.first, run.end = min(run.first, ts), max(run.end, end)
                return
        runs.append(_Run(name, chain, ts, end))
        if len(runs) > self.max_names:
            runs.remove(min(runs, key=lambda r: (r.end, r.last)))
            self.stats["names_dropped"] += 1

    # -- looking up ---------------------------------------------------------------------------

    def lookup(self, ip: str, ts_ns: int | None = None) -> list[DnsName]:
        """The names valid for ``ip`` at capture time ``ts_ns`` (every name held when None),
        best first: names ``prefer`` accepts (the asked name or any name of its chain), then
        the most recent answer as of ``ts_ns``."""
        key = ip if ip in self._map else _canonical(ip)
        runs = self._map.get(key) if key is not None else None
        if not runs:
            return []
        if ts_ns is None:
            cands = [(r.last, r) for r in runs]
        else:
            cands = [(min(r.last, ts_ns), r) for r in runs if r.first <= ts_ns <= r.end]
        if len(cands) > 1 and self.prefer is not None:
            prefer = self.prefer
            ranked = sorted(cands, key=lambda c: (any(prefer(n) for n in c[1].chain), c[0]),
                            reverse=True)
        else:
            ranked = sorted(cands, key=lambda c: c[0], reverse=True)
        return [r.public() for _, r in ranked]

    def host_of(self, ip: str, port: int, ts_ns: int | None = None) -> str | None:
        """The name ``ip`` was reached by at capture time ``ts_ns`` (None: the latest answer,
        whatever its validity), or None. ``port`` is not used (DNS answers name addresses,
        not ports); it is there for the Stratum tracker's ``host_of`` signature."""
        best = self.lookup(ip, ts_ns)
        return best[0].name if best else None
