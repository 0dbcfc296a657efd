"""TLS handshakes seen passively: SNI, ALPN, versions, JA3, JA4, JA3S, certificate names.

Miners reach pools over TLS too (``stratum+ssl``); the pool is then named only by the
ClientHello's server_name (SNI) and, up to TLS 1.2, by the server's certificate. Nothing is
decrypted. :class:`TlsObserver` sees every batch of a scan and keeps one :class:`TlsInfo` per
TCP flow that sent a ClientHello; the caller takes them as the scan goes
(:meth:`TlsObserver.drain`, :meth:`TlsObserver.flush` at the end) or asks by flow key
(:meth:`TlsObserver.info`, :meth:`TlsObserver.pop` when the flow closes) and matches the names
against pool domains. With ``want`` (the SNI -> read this flow?) only the flows the caller
wants are read: the others are dropped as soon as their ClientHello's server name is known,
found by a direct walk to the extension (in the kernel, :func:`client_hello_sni` its twin),
before anything else is parsed and, usually, before any other segment of theirs is marked.

Selection happens in a numba kernel (:mod:`poolwatch.kernels.tlsselect`), never in a Python
loop over packets: a client segment that starts a handshake record holding a ClientHello
opens tracking of its flow, after which only the sequence ranges the handshake needs are
marked (the ClientHello's records one way; the server's handshake records up to its first
non-handshake record, at most ``max_handshake_bytes``, the other way). Application data
never reaches Python, even inside the batch in which the handshake ends. Python then runs
for the marked segments only: it puts each direction in sequence order (retransmissions and
overlaps dropped, segments ahead of a gap held until it fills), unwraps the handshake records
and parses the messages with ``struct``-style slicing. Once the ClientHello is parsed and the
server is done (ServerHelloDone, TLS 1.3 negotiated, a non-handshake record, or the byte
limit), the flow leaves the kernel's table and its :class:`TlsInfo` waits for the caller.

Fingerprints (computed on first access, from the parsed hellos a :class:`TlsInfo` keeps):

* JA3 (Salesforce): ``SSLVersion,Ciphers,Extensions,EllipticCurves,EllipticCurvePointFormats``
  of the ClientHello, decimal values joined by ``-``, GREASE values (``0x?a?a``) removed, MD5.
  JA3S: ``SSLVersion,Cipher,Extensions`` of the ServerHello, MD5.
* JA4 (FoxIO, ``technical_details/JA4.md``): ``t``, the highest non-GREASE
  supported_versions value (else the ClientHello's version) as ``13``/``12``/``11``/``10``/
  ``s3``/``s2`` (``00`` unknown), ``d``/``i`` for SNI present or not, the non-GREASE cipher
  and extension counts (2 digits, at most 99), the first and last characters of the first ALPN
  value (``00`` when none or empty; the hex digits' first and last when either byte is not
  alphanumeric), then the first 12 hex digits of SHA-256 of the sorted cipher list and of
  the sorted extension list without SNI and ALPN followed by ``_`` and the signature
  algorithms in their order (``000000000000`` for an empty list). GREASE values are
  removed everywhere, signature algorithms included, as the specification says.

Certificates: the leaf certificate's subject common name and subjectAltName dNSNames are
read by a minimal DER walker (:func:`certificate_names`, compiled for the observer as
:func:`certificate_names_compiled`); no X.509 library is needed, and
nothing in a certificate is verified (a passive observer has no reason to trust it: the
names say what the server claimed).

Known limits: a ClientHello segment captured before the opening segment and in an earlier
batch is lost (the window starts at the first handshake byte; within a batch the order does
not matter); after a HelloRetryRequest only the first ClientHello and the retry request are
read; TLS over UDP (DTLS, QUIC) is not read; ECH hides the inner SNI (the outer, public name
is reported).
"""

from __future__ import annotations

import hashlib
import struct
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from poolwatch.kernels.tlsselect import (
    DER_OK,
    EARLIER,
    FROM_CLIENT,
    SELECTED,
    SERVER_DONE,
    SNI_FOUND,
    SNI_NOT_WHOLE,
    certificate_name_spans,
    client_hello_snis,
    forget_tls_flows,
    mark_tls_packets,
    new_tables,
    open_tls_flows,
)
from poolwatch.records import PacketBatch

from .records import FlowKey, flow_key

__all__ = ["TlsInfo", "TlsObserver", "Want", "certificate_names", "certificate_names_compiled",
           "client_hello_sni", "ja3_string", "ja4_fingerprint", "parse_client_hello"]

NS = 1_000_000_000
MAX_FRAMES = 16
STAT_NAMES = (
    "packets",  # segments that reached Python (handshake bytes only)
    "flows",  # flows whose ClientHello opened tracking
    "client_hellos",  # ClientHellos parsed whole
    "server_hellos",  # ServerHellos parsed
    "certificates",  # leaf certificates read (TLS <= 1.2)
    "tls13",  # ServerHellos that negotiated TLS 1.3 (certificate encrypted)
    "complete",  # handshakes read to their end (ClientHello + the server's part)
    "incomplete",  # flows given up on before that (timeout, eviction, pop): partial info
    "malformed",  # flows with bytes that are not what TLS allows (see TlsInfo.errors)
    "truncated",  # flows whose handshake was cut (gaps, snap length, byte limit, timeout)
    "repeated_hellos",  # ClientHellos of flows already read (retransmissions after the end)
    "table_full",  # new flows the kernel's table had no room for (not read)
    "evicted",  # results dropped unread to stay within max_flows (oldest first)
    "timeouts",  # handshakes abandoned after handshake_timeout_s of capture time
    "unwanted",  # flows dropped because want(sni) said no (counted in flows, in nothing after)
)

Want = Callable[[str | None], bool]  # TlsObserver's filter: the ClientHello's SNI -> read it?

# --------------------------------------------------------------------------------------------
# Records
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TlsInfo:
    """What one TCP flow's TLS handshake showed, in clear.

    ``client`` sent the ClientHello; endpoints are ``(address high half, low half, port)`` as
    in ``records.PACKET``. ``versions`` is the ClientHello's supported_versions list (GREASE
    removed) when sent, else its legacy version alone; ``server_version`` is what the server
    chose (None without a ServerHello). ``cert_names`` holds the leaf certificate's subject
    CN and SAN dNSNames, lower case, each once (TLS <= 1.2 only: TLS 1.3 encrypts it).
    ``errors`` says what could not be read (``client_hello_truncated``,
    ``certificate_malformed``...); nothing in a packet raises.

    The fingerprints (``ja3``, ``ja3_string``, ``ja4``, ``ja4_r``, ``ja3s``; None when the
    hello was cut or malformed, or absent) are computed on first access from the parsed
    hellos the record keeps, then cached: a scan reads them only for the few flows whose
    names say pool.
    """

    client: tuple[int, int, int]
    server: tuple[int, int, int]
    first_ts_ns: int
    frames: tuple[int, ...]
    sni: str | None
    alpn: tuple[str, ...]
    versions: tuple[int, ...]
    cert_names: tuple[str, ...]
    errors: tuple[str, ...]
    server_version: int | None = None
    # The parsed hellos the fingerprints come from (None: no fingerprint).
    client_hello: ClientHello | None = field(default=None, repr=False, hash=False)
    server_hello: ServerHello | None = field(default=None, repr=False, hash=False)
    _cache: dict | None = field(default=None, repr=False, compare=False, hash=False)

    def _get(self, name: str) -> str | None:
        cache = self._cache
        if cache is None:
            cache = {}
            object.__setattr__(self, "_cache", cache)
        if name not in cache:
            ch, sh = self.client_hello, self.server_hello
            if name == "ja3s":
                cache[name] = (hashlib.md5(ja3s_string(sh).encode()).hexdigest()
                               if sh is not None else None)
            elif ch is None:
                cache[name] = None
            elif name in ("ja3", "ja3_string"):
                text = ja3_string(ch)
                cache["ja3_string"] = text
                cache["ja3"] = hashlib.md5(text.encode()).hexdigest()
            else:
                cache["ja4"], cache["ja4_r"] = ja4_parts(ch)
        return cache[name]

    @property
    def ja3(self) -> str | None:
        """JA3 (Salesforce) of the ClientHello: MD5 of :attr:`ja3_string`."""
        return self._get("ja3")

    @property
    def ja3_string(self) -> str | None:
        return self._get("ja3_string")

    @property
    def ja4(self) -> str | None:
        """JA4 (FoxIO) of the ClientHello over TCP."""
        return self._get("ja4")

    @property
    def ja4_r(self) -> str | None:
        """JA4 before hashing (FoxIO's "ja4_r"), for checking by eye."""
        return self._get("ja4_r")

    @property
    def ja3s(self) -> str | None:
        """JA3S of the ServerHello."""
        return self._get("ja3s")

    FIELDS = ("client", "server", "first_ts_ns", "frames", "sni", "alpn", "versions", "ja3",
              "ja3_string", "ja4", "ja3s", "cert_names", "errors", "server_version", "ja4_r")

    def as_tuple(self) -> tuple:
        """Every public value, fingerprints included, in :attr:`FIELDS` order."""
        return tuple(getattr(self, n) for n in self.FIELDS)

    def __repr__(self) -> str:
        return "TlsInfo(" + ", ".join(f"{n}={getattr(self, n)!r}" for n in self.FIELDS) + ")"


# --------------------------------------------------------------------------------------------
# ClientHello / ServerHello parsing
# --------------------------------------------------------------------------------------------


class Malformed(Exception):
    """Bytes that TLS does not allow (caught inside this module, never raised out of it)."""


class _Cut(Exception):
    """The bytes end before the structure does."""


GREASE = frozenset(0x0A0A + 0x1010 * k for k in range(16))  # RFC 8701: 0x0a0a ... 0xfafa


def _grease(v: int) -> bool:
    return v in GREASE


def _u16s(data: bytes) -> tuple[int, ...]:
    return struct.unpack(f">{len(data) >> 1}H", data[: len(data) & ~1])


def _vec(data: bytes, off: int, width: int, end: int | None = None) -> tuple[bytes, int]:
    """A length-prefixed vector at ``off``: (its bytes, the offset after it)."""
    end = len(data) if end is None else end
    if off + width > end:
        raise _Cut
    n = int.from_bytes(data[off : off + width], "big")
    off += width
    if off + n > end:
        raise _Cut
    return data[off : off + n], off + n


_READ_EXTENSIONS = frozenset((0x0000, 0x0010, 0x002B, 0x000A, 0x000B, 0x000D))


@dataclass(slots=True)
class ClientHello:
    """The fields of a ClientHello the fingerprints and names use."""

    version: int = 0
    ciphers: tuple[int, ...] = ()
    extensions: tuple[int, ...] = ()  # types in order, GREASE included
    sni: str | None = None
    sni_present: bool = False
    alpn: tuple[bytes, ...] = ()
    supported_versions: tuple[int, ...] = ()  # GREASE included; () when not sent
    groups: tuple[int, ...] = ()
    point_formats: tuple[int, ...] = ()
    sig_algs: tuple[int, ...] = ()
    complete: bool = True  # False: the bytes ended early (fields after the cut are missing)
    error: str | None = None  # malformed: what was wrong


def _server_name(data: bytes) -> str | None:
    """The first host_name of a server_name extension, lower case, trailing dot stripped."""
    names, _ = _vec(data, 0, 2)
    off = 0
    while off + 3 <= len(names):
        kind = names[off]
        name, off = _vec(names, off + 1, 2)
        if kind == 0:
            try:
                text = name.decode("ascii")
            except UnicodeDecodeError:
                raise Malformed("sni_not_ascii") from None
            text = text.lower().rstrip(".")
            return text or None
    return None


def parse_client_hello(body: bytes, complete: bool = True) -> ClientHello:
    """A ClientHello's body (after the 4-byte handshake header). ``complete`` False: the body
    is cut (what is whole before the cut is read). Never raises."""
    ch = ClientHello(complete=complete)
    exts: list[int] = []
    try:
        if len(body) < 2:
            raise _Cut
        ch.version = (body[0] << 8) | body[1]
        off = 2 + 32
        _, off = _vec(body, off, 1)  # session id
        suites, off = _vec(body, off, 2)
        if len(suites) % 2:
            raise Malformed("cipher_suites_odd_length")
        ch.ciphers = tuple(_u16s(suites))
        _, off = _vec(body, off, 1)  # compression methods
        if off == len(body) and complete:
            return ch  # no extensions (SSL 3.0 style)
        block, _ = _vec(body, off, 2) if complete else (body[off + 2 :], 0)
        if complete and len(block) + off + 2 != len(body):
            pass  # bytes after the extensions: tolerated (some stacks pad)
        pos, size = 0, len(block)
        while pos < size:
            if pos + 4 > size:
                raise _Cut
            etype = (block[pos] << 8) | block[pos + 1]
            end = pos + 4 + ((block[pos + 2] << 8) | block[pos + 3])
            if end > size:
                raise _Cut
            data, pos = block[pos + 4 : end], end
            exts.append(etype)
            if etype not in _READ_EXTENSIONS:
                continue
            if etype == 0x0000:
                if not ch.sni_present:  # a repeated server_name (RFC 8446 forbids it): the first
                    ch.sni_present = True
                    ch.sni = _server_name(data)
            elif etype == 0x0010:
                protos, _ = _vec(data, 0, 2)
                values, k = [], 0
                while k < len(protos):
                    v, k = _vec(protos, k, 1)
                    values.append(v)
                ch.alpn = tuple(values)
            elif etype == 0x002B:
                vers, _ = _vec(data, 0, 1)
                ch.supported_versions = tuple(_u16s(vers))
            elif etype == 0x000A:
                groups, _ = _vec(data, 0, 2)
                ch.groups = tuple(_u16s(groups))
            elif etype == 0x000B:
                formats, _ = _vec(data, 0, 1)
                ch.point_formats = tuple(formats)
            elif etype == 0x000D:
                algs, _ = _vec(data, 0, 2)
                ch.sig_algs = tuple(_u16s(algs))
    except _Cut:
        if complete:
            ch.error = "client_hello_malformed"
        ch.complete = False
    except Malformed as exc:
        ch.error = str(exc)
    ch.extensions = tuple(exts)
    return ch


def client_hello_sni(body: bytes, complete: bool = True) -> str | None:
    """The ``sni`` :func:`parse_client_hello` gives for the same arguments, found by walking
    straight to the server_name extension: nothing is kept or decoded on the way, and the
    walk stops there. To agree with the full parser on bad input it checks what that parser
    checks before the extension (lengths of the fixed fields, of each extension, and the
    inner vectors of the extensions it reads: a bad one ends the parse before the name).
    Never raises."""
    try:
        n = len(body)
        if n < 35:
            return None
        off = 35 + body[34]  # after the session id
        if off + 2 > n:
            return None
        k = (body[off] << 8) | body[off + 1]
        if k & 1:
            return None  # cipher_suites_odd_length: the parse ends there
        off += 2 + k
        if off >= n:
            return None
        off += 1 + body[off]  # compression methods
        if off > n or off == n and complete:
            return None
        if complete:
            if off + 2 > n:
                return None
            end = off + 2 + ((body[off] << 8) | body[off + 1])
            if end > n:
                return None
        else:
            end = n
        pos = off + 2
        while pos < end:
            if pos + 4 > end:
                return None
            etype = (body[pos] << 8) | body[pos + 1]
            nxt = pos + 4 + ((body[pos + 2] << 8) | body[pos + 3])
            if nxt > end:
                return None
            if etype == 0x0000:
                return _server_name(body[pos + 4 : nxt])
            if etype in _READ_EXTENSIONS:  # the full parser reads it: its inner vector must fit
                at = pos + 4
                if etype == 0x000B or etype == 0x002B:
                    if at + 1 > nxt or at + 1 + body[at] > nxt:
                        return None
                else:
                    if at + 2 > nxt:
                        return None
                    inner = at + 2 + ((body[at] << 8) | body[at + 1])
                    if inner > nxt:
                        return None
                    if etype == 0x0010:  # ALPN: each protocol's length must fit too
                        at += 2
                        while at < inner:
                            at += 1 + body[at]
                            if at > inner:
                                return None
            pos = nxt
    except (_Cut, Malformed, IndexError):
        return None
    return None


def ja3_string(ch: ClientHello) -> str:
    """Salesforce JA3 text of a ClientHello (GREASE removed)."""
    g = GREASE
    return ",".join((str(ch.version), "-".join([str(v) for v in ch.ciphers if v not in g]),
                     "-".join([str(v) for v in ch.extensions if v not in g]),
                     "-".join([str(v) for v in ch.groups if v not in g]),
                     "-".join([str(v) for v in ch.point_formats])))


_JA4_VERSIONS = {0x0304: "13", 0x0303: "12", 0x0302: "11", 0x0301: "10", 0x0300: "s3",
                 0x0002: "s2", 0xFEFF: "d1", 0xFEFD: "d2", 0xFEFC: "d3"}


def _alnum(c: int) -> bool:
    return 0x30 <= c <= 0x39 or 0x41 <= c <= 0x5A or 0x61 <= c <= 0x7A


def _alpn_chars(first: bytes | None) -> str:
    if not first:
        return "00"
    if _alnum(first[0]) and _alnum(first[-1]):
        return chr(first[0]) + chr(first[-1])
    text = first.hex()
    return text[0] + text[-1]


def _hash12(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:12] if text else "000000000000"


def _hex_list(values: list[int]) -> str:
    """``0a0b,1301,...``: each value as 4 hex digits, comma-separated."""
    return struct.pack(f">{len(values)}H", *values).hex(",", 2)


def ja4_parts(ch: ClientHello) -> tuple[str, str]:
    """FoxIO JA4 of a ClientHello over TCP, and its unhashed form (FoxIO's ``ja4_r``)."""
    g = GREASE
    versions = [v for v in ch.supported_versions if v not in g]
    version = _JA4_VERSIONS.get(max(versions) if versions else ch.version, "00")
    ciphers = sorted([v for v in ch.ciphers if v not in g])
    exts = [v for v in ch.extensions if v not in g]
    head = (f"t{version}{'d' if 0 in exts else 'i'}{min(len(ciphers), 99):02d}"
            f"{min(len(exts), 99):02d}{_alpn_chars(ch.alpn[0] if ch.alpn else None)}")
    cipher_text = _hex_list(ciphers)
    ext_text = _hex_list(sorted([v for v in exts if v != 0 and v != 0x10]))
    sigs = _hex_list([v for v in ch.sig_algs if v not in g])
    ext_part = f"{ext_text}_{sigs}" if ext_text and sigs else ext_text
    hashed = f"{head}_{_hash12(cipher_text)}_{_hash12(ext_part) if ext_text else '000000000000'}"
    return hashed, f"{head}_{cipher_text}_{ext_part}"


def ja4_fingerprint(ch: ClientHello, *, raw: bool = False) -> str:
    """FoxIO JA4 of a ClientHello over TCP (``raw``: the unhashed ``ja4_r`` form)."""
    return ja4_parts(ch)[1 if raw else 0]


@dataclass(slots=True)
class ServerHello:
    version: int = 0  # legacy_version
    selected: int = 0  # supported_versions' choice, else the legacy version
    cipher: int = 0
    extensions: tuple[int, ...] = ()
    error: str | None = None


def parse_server_hello(body: bytes) -> ServerHello:
    sh = ServerHello()
    exts: list[int] = []
    try:
        if len(body) < 2 + 32 + 1:
            raise _Cut
        sh.version = sh.selected = (body[0] << 8) | body[1]
        _, off = _vec(body, 34, 1)
        if off + 3 > len(body):
            raise _Cut
        sh.cipher = (body[off] << 8) | body[off + 1]
        off += 3
        if off < len(body):
            block, _ = _vec(body, off, 2)
            pos = 0
            while pos < len(block):
                if pos + 4 > len(block):
                    raise _Cut
                etype = (block[pos] << 8) | block[pos + 1]
                data, pos = _vec(block, pos + 2, 2)
                exts.append(etype)
                if etype == 0x002B and len(data) == 2:
                    sh.selected = (data[0] << 8) | data[1]
    except _Cut:
        sh.error = "server_hello_malformed"
    sh.extensions = tuple(exts)
    return sh


def ja3s_string(sh: ServerHello) -> str:
    return f"{sh.version},{sh.cipher},{'-'.join(str(v) for v in sh.extensions)}"


# --------------------------------------------------------------------------------------------
# Certificates: a minimal DER walker
# --------------------------------------------------------------------------------------------

_CN = b"\x55\x04\x03"  # 2.5.4.3
_SAN = b"\x55\x1d\x11"  # 2.5.29.17
_STRING_CODECS = {0x0C: "utf-8", 0x13: "latin-1", 0x16: "latin-1", 0x14: "latin-1",
                  0x1A: "latin-1", 0x1E: "utf-16-be", 0x1C: "utf-32-be"}


def _tlv(d: bytes, off: int, end: int) -> tuple[int, int, int]:
    """(tag, value start, value end) of the DER element at ``off``."""
    if off + 2 > end:
        raise _Cut
    tag, n = d[off], d[off + 1]
    if tag & 0x1F == 0x1F:
        raise Malformed("der_high_tag")
    off += 2
    if n & 0x80:
        k = n & 0x7F
        if k == 0 or k > 4 or off + k > end:
            raise Malformed("der_length")
        n = int.from_bytes(d[off : off + k], "big")
        off += k
    if off + n > end:
        raise _Cut
    return tag, off, off + n


def _children(d: bytes, start: int, end: int) -> list[tuple[int, int, int]]:
    """The elements from ``start`` to ``end``: :func:`_tlv` of each, inlined (hot)."""
    out = []
    append = out.append
    while start < end:
        if start + 2 > end:
            raise _Cut
        tag, n = d[start], d[start + 1]
        if tag & 0x1F == 0x1F:
            raise Malformed("der_high_tag")
        s = start + 2
        if n & 0x80:
            k = n & 0x7F
            if k == 0 or k > 4 or s + k > end:
                raise Malformed("der_length")
            n = int.from_bytes(d[s : s + k], "big")
            s += k
        start = s + n
        if start > end:
            raise _Cut
        append((tag, s, start))
    return out


def _der_text(tag: int, raw: bytes) -> str | None:
    codec = _STRING_CODECS.get(tag)
    return raw.decode(codec, "replace") if codec else None


def certificate_names(der: bytes) -> tuple[str, ...]:
    """Subject commonName(s) then subjectAltName dNSNames of a DER certificate, lower case,
    trailing dots stripped, each once. Raises ``ValueError`` on bytes that are not a
    certificate (the observer catches it and records the error)."""
    try:
        tag, s, e = _tlv(der, 0, len(der))
        if tag != 0x30:
            raise Malformed("not_a_certificate")
        tag, s, e = _tlv(der, s, e)  # tbsCertificate
        if tag != 0x30:
            raise Malformed("not_a_certificate")
        fields = _children(der, s, e)
        if fields and fields[0][0] == 0xA0:
            fields = fields[1:]
        if len(fields) < 6:
            raise Malformed("not_a_certificate")
        names: list[str] = []
        _, s, e = fields[4]  # subject Name: SEQUENCE OF SET OF AttributeTypeAndValue
        for tag, rs, re_ in _children(der, s, e):
            for _, as_, ae in _children(der, rs, re_):
                atv = _children(der, as_, ae)
                if len(atv) >= 2 and atv[0][0] == 0x06 and der[atv[0][1] : atv[0][2]] == _CN:
                    text = _der_text(atv[1][0], der[atv[1][1] : atv[1][2]])
                    if text:
                        names.append(text)
        for tag, s, e in fields[6:]:
            if tag != 0xA3:
                continue
            _, s, e = _tlv(der, s, e)  # SEQUENCE OF Extension
            for _, xs, xe in _children(der, s, e):
                ext = _children(der, xs, xe)
                if not ext or ext[0][0] != 0x06 or der[ext[0][1] : ext[0][2]] != _SAN:
                    continue
                _, vs, ve = ext[-1]  # extnValue OCTET STRING
                _, gs, ge = _tlv(der, vs, ve)  # GeneralNames
                for gtag, ns, ne in _children(der, gs, ge):
                    if gtag == 0x82:  # dNSName [2] IA5String
                        names.append(der[ns:ne].decode("latin-1"))
    except (_Cut, Malformed, IndexError) as exc:
        raise ValueError(str(exc) or "certificate_truncated") from None
    seen: dict[str, None] = {}
    for name in names:
        name = name.strip().lower().rstrip(".")
        if name:
            seen.setdefault(name, None)
    return tuple(seen)


def certificate_names_compiled(der: bytes) -> tuple[str, ...]:
    """:func:`certificate_names` with the DER walk compiled
    (:func:`~poolwatch.kernels.tlsselect.certificate_name_spans`, ~1 µs rather than ~15):
    the same names, or ``ValueError`` on the same inputs. The observer uses this one."""
    status, spans, count = certificate_name_spans(np.frombuffer(der, np.uint8))
    if status != DER_OK:
        raise ValueError("certificate_malformed")
    seen: dict[str, None] = {}
    for tag, s, e in spans[:count].tolist():
        text = der[s:e].decode("latin-1") if tag == 0x82 else _der_text(tag, der[s:e])
        name = text.strip().lower().rstrip(".") if text else ""
        if name:
            seen.setdefault(name, None)
    return tuple(seen)


# --------------------------------------------------------------------------------------------
# Reassembly
# --------------------------------------------------------------------------------------------


class _Stream:
    """One direction's bytes from stream offset 0, in order; segments after a gap held."""

    __slots__ = ("data", "held", "limit")

    def __init__(self, limit: int) -> None:
        self.data = bytearray()
        self.held: dict[int, bytes] = {}
        self.limit = limit

    def add(self, rel: int, payload: bytes) -> bool:
        """Put a segment at stream offset ``rel``; True when it brought new bytes."""
        if rel < 0:
            payload, rel = payload[-rel:], 0
        payload = payload[: self.limit - rel]
        if not payload:
            return False
        have = len(self.data)
        if rel > have:
            if len(payload) > len(self.held.get(rel, b"")):
                self.held[rel] = payload
                return True
            return False
        if rel + len(payload) <= have:
            return False  # retransmission
        self.data += payload[have - rel :]
        while self.held:
            have = len(self.data)
            ready = [k for k in self.held if k <= have]
            if not ready:
                break
            for k in sorted(ready):
                part = self.held.pop(k)
                if k + len(part) > len(self.data):
                    self.data += part[len(self.data) - k :]
        return True


def _unwrap(stream: bytes) -> tuple[bytes, bool, int]:
    """Handshake bytes of a record stream: (bytes, a non-handshake record was reached,
    error: 0 none, 1 a record's header is not TLS)."""
    out = bytearray()
    off = 0
    while off + 5 <= len(stream):
        ctype = stream[off]
        if stream[off + 1] != 3:
            return bytes(out), True, 1
        if ctype != 0x16:
            return bytes(out), True, 0 if ctype in (0x14, 0x15, 0x17) else 1
        n = (stream[off + 3] << 8) | stream[off + 4]
        out += stream[off + 5 : off + 5 + n]
        off += 5 + n
    return bytes(out), False, 0


class _Flow:
    __slots__ = (
        "cert_names",
        "ch",
        "client",
        "client_side",
        "errors",
        "first_ts",
        "frames",
        "hash",
        "key",
        "last_ts",
        "server",
        "server_done",
        "server_end",
        "server_side",
        "sh",
        "wanted",
        "asked_name",
    )

    def __init__(self, h: int, key: FlowKey, client, server, ts: int, max_hs: int,
                 wanted: bool | None = None) -> None:
        self.hash, self.key, self.client, self.server = h, key, client, server
        self.first_ts = self.last_ts = ts
        self.frames: list[int] = []
        self.client_side, self.server_side = _Stream(max_hs), _Stream(max_hs)
        self.ch: ClientHello | None = None
        self.sh: ServerHello | None = None
        self.cert_names: tuple[str, ...] = ()
        self.errors: list[str] = []
        self.server_done = False
        self.server_end: int | None = None  # where the kernel saw the server's handshake end
        self.wanted = wanted  # the caller's answer about this flow; None: not asked yet
        self.asked_name: str | None = None  # the server name ``want`` was asked about

    def error(self, text: str) -> None:
        if text not in self.errors:
            self.errors.append(text)

    def _ask(self, want: Want | None, body: bytes | None, complete: bool) -> bool:
        """Whether the caller wants this flow, asked once (with the SNI, read cheaply)."""
        if self.wanted is None:
            self.asked_name = None if body is None else client_hello_sni(body, complete)
            self.wanted = want is None or bool(want(self.asked_name))
        return self.wanted

    # Parsing, called after each batch that brought this flow bytes (and once at the end).

    def hello(self, want: Want | None, final: bool = False) -> None:
        """Read the ClientHello once it is whole (or, ``final``, what there is of it). The
        caller's ``want`` is asked first; when it says no, nothing is parsed (``wanted``
        False) and the flow is to be dropped."""
        if not (self.ch is None or not self.ch.complete and final) or self.wanted is False:
            return
        hs, stop, bad = _unwrap(bytes(self.client_side.data))
        if len(hs) >= 4:
            need = 4 + int.from_bytes(hs[1:4], "big")
            if hs[0] != 1:
                if self._ask(want, None, False):
                    self.error("client_hello_malformed")
                    self.ch = ClientHello(complete=False, error="client_hello_malformed")
            elif len(hs) >= need:
                if self._ask(want, hs[4:need], True):
                    self.ch = parse_client_hello(hs[4:need])
                    if self.ch.error:
                        self.error(self.ch.error)
            elif (final or stop or bad) and self._ask(want, hs[4:], False):
                self.ch = parse_client_hello(hs[4:], complete=False)
                self.error("client_hello_truncated")
                if self.ch.error:
                    self.error(self.ch.error)
        elif final and self._ask(want, None, False):
            self.error("client_hello_truncated")

    def advance(self, want: Want | None, final: bool = False) -> bool:
        """Parse what is in order so far; True when the handshake is read to its end. The
        server's part is parsed only once the flow is known to be wanted."""
        self.hello(want, final)
        if not self.server_done and self.wanted:
            self._server(final)
        return self.ch is not None and self.server_done

    def _server(self, final: bool) -> None:
        data = bytes(self.server_side.data)
        hs, stop, bad = _unwrap(data)
        if bad:
            self.error("server_records_malformed")
        pos = 0
        while pos + 4 <= len(hs):
            mtype = hs[pos]
            n = int.from_bytes(hs[pos + 1 : pos + 4], "big")
            body = hs[pos + 4 : pos + 4 + n]
            whole = len(body) == n
            if mtype == 2 and whole and self.sh is None:
                self.sh = parse_server_hello(body)
                if self.sh.error:
                    self.error(self.sh.error)
                if self.sh.selected == 0x0304:
                    self.server_done = True  # the rest is encrypted
                    return
            elif mtype == 11 and not self.cert_names and "certificate_malformed" not in self.errors:
                self._certificate(body, whole or final)
            elif mtype == 14 and whole:
                self.server_done = True
                return
            if not whole:
                break
            pos += 4 + n
        limit = self.server_side.limit
        if (stop or bad or len(data) >= limit
                or (self.server_end is not None and len(data) >= self.server_end)):
            self.server_done = True
            if len(data) >= limit and self.sh is not None and not stop:
                self.error("server_handshake_over_limit")

    def _certificate(self, body: bytes, last_chance: bool) -> None:
        """The leaf of a (TLS <= 1.2) Certificate message; ``body`` may be cut short."""
        if len(body) < 6:
            if last_chance:
                self.error("certificate_truncated")
            return
        n = int.from_bytes(body[3:6], "big")
        der = body[6 : 6 + n]
        if len(der) < n:
            if last_chance:
                self.error("certificate_truncated")
            return
        try:
            self.cert_names = certificate_names_compiled(der) or ("",)
        except ValueError:
            self.error("certificate_malformed")

    def info(self) -> TlsInfo:
        ch, sh = self.ch, self.sh
        sni, alpn, versions = None, (), ()
        if ch is not None:
            sni = ch.sni
            alpn = tuple(v.decode("ascii", "backslashreplace") for v in ch.alpn)
            sv = tuple(v for v in ch.supported_versions if not _grease(v))
            versions = sv or ((ch.version,) if ch.version else ())
        return TlsInfo(
            client=self.client, server=self.server, first_ts_ns=self.first_ts,
            frames=tuple(self.frames), sni=sni, alpn=alpn, versions=versions,
            cert_names=tuple(n for n in self.cert_names if n), errors=tuple(self.errors),
            server_version=sh.selected if sh is not None else None,
            client_hello=ch if ch is not None and ch.complete and ch.error is None else None,
            server_hello=sh if sh is not None and sh.error is None else None)


# --------------------------------------------------------------------------------------------
# The observer
# --------------------------------------------------------------------------------------------


class TlsObserver:
    """TLS handshakes of the TCP flows of a scan, by flow key.

    :meth:`update` takes every batch in order (done before it returns: the reader may reuse
    the arrays). :meth:`drain` hands over the handshakes finished since its last call, in the
    order they finished; :meth:`info` answers for a flow whose ClientHello was seen (partial
    while its handshake is still being read) and not handed over yet; :meth:`pop` answers and
    forgets it; :meth:`flush` closes everything at the end of input and hands over the rest.

    ``want`` (optional) is called once per flow with the ClientHello's server name (None when
    it has none, or when it cannot be read), as soon as the ClientHello is whole (or, for one
    cut short, when the flow is given up on). The name is found by a direct walk to the
    server_name extension (:func:`client_hello_sni`), nothing else is parsed first. When
    ``want`` returns False the flow is dropped at once: no parsing, no fingerprints, no
    server side, no result, and its hash leaves the kernel's table so its later segments are
    not marked and never reach Python (when the ClientHello is whole in its first segment,
    before the kernel marks anything else of the batch). ``want=None``: every flow is read.

    Memory is bounded: at most ``max_flows`` handshakes being read (new ones beyond are
    counted in ``stats["table_full"]`` and not read) and ``max_flows`` results waiting (the
    oldest go first, ``stats["evicted"]``); a handshake not finished within
    ``handshake_timeout_s`` of capture time is closed with what it has. At most
    ``max_handshake_bytes`` are read each way. Finished and dropped flows are remembered (by
    hash, at most ``max_flows``, for ``handshake_timeout_s`` of capture time) so that a
    retransmitted ClientHello is neither read nor asked about again.
    """

    def __init__(self, *, max_flows: int = 65536, max_handshake_bytes: int = 16384,
                 handshake_timeout_s: float = 60.0, want: Want | None = None) -> None:
        if max_flows < 1 or max_handshake_bytes < 64:
            raise ValueError("max_flows must be >= 1 and max_handshake_bytes >= 64")
        self.max_flows = max_flows
        self.max_hs = max_handshake_bytes
        self.timeout_ns = round(handshake_timeout_s * NS)
        self.want = want
        self._keys, self._dirs, self._state = new_tables(max_flows)
        self._fill = 0
        # kernel hash -> flow being read, least recently active first
        self._flows: OrderedDict[int, _Flow] = OrderedDict()
        self._by_key: dict[FlowKey, int] = {}
        self._done: OrderedDict[FlowKey, TlsInfo] = OrderedDict()  # finished, in that order
        # kernel hash of each flow finished or dropped -> capture time: a ClientHello
        # retransmitted later (within handshake_timeout_s) is not read again
        self._recent: OrderedDict[int, int] = OrderedDict()
        # (kernel hash, server name) of flows ``want`` declined, until :meth:`declined`
        self._declined: list[tuple[int, str]] = []
        self.stats: dict[str, int] = dict.fromkeys(STAT_NAMES, 0)

    def __len__(self) -> int:
        return len(self._flows) + len(self._done)

    # -- reading ------------------------------------------------------------------------------

    def update(self, batch: PacketBatch) -> None:
        pk = batch.packets
        if len(pk) == 0:
            return
        buf = batch.buf
        marks, hashes, self._fill, refused = open_tls_flows(
            buf, pk, self._keys, self._dirs, self._state, self._fill, self.max_flows, self.max_hs)
        self.stats["table_full"] += int(refused)
        new = np.flatnonzero(marks)  # NEW_FLOW (and EARLIER) only, so far
        if len(new):
            self._open(batch, new, hashes[new], marks)
        rel = mark_tls_packets(buf, pk, self._keys, self._dirs, self._state, marks, hashes)
        idx = np.flatnonzero(marks & (SELECTED | SERVER_DONE))
        if len(idx):
            self._read(batch, idx, marks[idx], hashes[idx], rel[idx])
        self._expire(int(pk["ts_ns"][-1]))

    def _open(self, batch: PacketBatch, new: np.ndarray, hashes: np.ndarray,
              marks: np.ndarray) -> None:
        """The flows the kernel just opened: repeated ClientHellos are forgotten; with a
        ``want``, a ClientHello whole in its opening segment is judged here (its server name
        located by the kernel, :func:`~poolwatch.kernels.tlsselect.client_hello_snis`),
        before the kernel marks the rest of the batch, and an unwanted flow is forgotten at
        once."""
        pk, buf = batch.packets, batch.buf
        want, st = self.want, self.stats
        recent, flows = self._recent, self._flows
        ts_l = pk["ts_ns"][new].tolist()
        hashes_l = hashes.tolist()
        forget: list[int] = []  # hashes leaving the kernel's table
        gone: list[int] = []  # their positions in ``new``
        keep: list[int] = []  # positions in ``new`` of the flows to read
        answers: list[bool | None] = []
        repeated = unwanted = 0
        if want is None:
            for k, h in enumerate(hashes_l):
                if h in recent or h in flows:
                    repeated += 1
                    gone.append(k)
                else:
                    keep.append(k)
            answers = [None] * len(keep)
        else:
            state, off, length = client_hello_snis(buf, pk, new, self.max_hs)
            # A segment of the flow captured earlier in the batch may give the stream other
            # first bytes than this one: judged on the reassembled hello, as without want.
            state[(marks[new] & EARLIER) != 0] = SNI_NOT_WHOLE
            for k, h, sst, o, n in zip(range(len(hashes_l)), hashes_l, state.tolist(),
                                       off.tolist(), length.tolist()):
                if h in recent or h in flows:
                    repeated += 1
                    gone.append(k)
                elif sst == SNI_NOT_WHOLE:  # asked once the ClientHello is reassembled
                    keep.append(k)
                    answers.append(None)
                else:
                    name = (buf[o : o + n].tobytes().decode("ascii", "replace").lower()
                            .rstrip(".") or None) if sst == SNI_FOUND else None
                    if want(name):
                        keep.append(k)
                        answers.append(True)
                        continue
                    unwanted += 1
                    recent[h] = ts_l[k]
                    gone.append(k)
                    if name is not None:
                        self._declined.append((h, name))
        if gone:
            forget = [hashes_l[k] for k in gone]
            marks[new[gone]] = 0
        st["repeated_hellos"] += repeated
        st["unwanted"] += unwanted
        st["flows"] += unwanted
        st["packets"] += unwanted  # their opening segment: read for its server name only
        if keep:
            rows = pk[new[keep]]
            cols = zip(keep, answers, rows["vlan"].tolist(), rows["inner_vlan"].tolist(),
                       rows["src_hi"].tolist(), rows["src_lo"].tolist(), rows["sport"].tolist(),
                       rows["dst_hi"].tolist(), rows["dst_lo"].tolist(), rows["dport"].tolist())
            by_key, max_hs = self._by_key, self.max_hs
            for k, wanted, vlan, inner, shi, slo, sp, dhi, dlo, dp in cols:
                client, server = (shi, slo, sp), (dhi, dlo, dp)
                key = flow_key(vlan, inner, 6, client, server)
                h = hashes_l[k]
                if key in by_key:  # a second hash for a flow being read (cannot happen)
                    st["repeated_hellos"] += 1
                    forget.append(h)
                    marks[new[k]] = 0
                    continue
                flows[h] = _Flow(h, key, client, server, ts_l[k], max_hs, wanted)
                by_key[key] = h
                st["flows"] += 1
        if forget:
            self._forget(forget)
            self._trim_recent()

    def _read(self, batch: PacketBatch, idx, marks, hashes, rel) -> None:
        """The marked segments, column-wise, then one short Python step per segment."""
        pk, buf = batch.packets, batch.buf
        rows = pk[idx]
        start = (rows["data_off"].astype(np.int64) + rows["payload_off"]).tolist()
        cols = zip(hashes.tolist(), marks.tolist(), rel.tolist(), start,
                   rows["payload_len"].tolist(), rows["ts_ns"].tolist(), rows["frame"].tolist())
        want = self.want
        flows = self._flows
        touched: dict[int, _Flow] = {}
        dropped: list[_Flow] = []
        packets = 0
        for h, m, r, s, n, ts, frame in cols:
            flow = flows.get(h)
            if flow is None:
                continue
            if m & SELECTED:
                if not m & FROM_CLIENT and flow.wanted is None and want is not None:
                    # The server answers: the ClientHello is likely whole; judge it first.
                    flow.hello(want)
                    if flow.wanted is False:
                        self._drop(flow, ts)
                        dropped.append(flow)
                        touched.pop(h, None)
                        continue
                packets += 1
                side = flow.client_side if m & FROM_CLIENT else flow.server_side
                if side.add(r, buf[s : s + n].tobytes()) and len(flow.frames) < MAX_FRAMES:
                    flow.frames.append(frame)
            elif m & SERVER_DONE:
                flow.server_end = r if flow.server_end is None else min(flow.server_end, r)
            flow.last_ts = max(flow.last_ts, ts)
            touched[h] = flow
        self.stats["packets"] += packets
        forget = [f.hash for f in dropped]
        for flow in touched.values():
            flows.move_to_end(flow.hash)  # least recently active first, for _expire
            done = flow.advance(want)
            if flow.wanted is False:
                self._drop(flow, flow.last_ts)
                forget.append(flow.hash)
            elif done:
                self._store(self._finish(flow), flow)
                forget.append(flow.hash)
        if forget:
            self._forget(forget)
            self._trim_recent()

    def _drop(self, flow: _Flow, ts: int) -> None:
        """Forget an unwanted flow here (the caller removes its hash from the kernel)."""
        del self._flows[flow.hash]
        self._by_key.pop(flow.key, None)
        self._recent[flow.hash] = ts
        self.stats["unwanted"] += 1
        if flow.asked_name is not None:
            self._declined.append((flow.hash, flow.asked_name))

    def _trim_recent(self) -> None:
        recent = self._recent
        while len(recent) > self.max_flows:
            recent.popitem(last=False)

    def _finish(self, flow: _Flow, final: bool = False) -> TlsInfo | None:
        """The flow's result, its bookkeeping removed; None when, read to the end, it turned
        out unwanted (then dropped; the caller removes its hash from the kernel)."""
        if final:
            flow.advance(self.want, final=True)
            if flow.wanted is False:
                self._drop(flow, flow.last_ts)
                return None
        info = flow.info()
        st = self.stats
        if flow.ch is not None and flow.ch.complete and flow.ch.error is None:
            st["client_hellos"] += 1
        if flow.sh is not None:
            st["server_hellos"] += 1
            if flow.sh.selected == 0x0304:
                st["tls13"] += 1
        if info.cert_names:
            st["certificates"] += 1
        st["incomplete" if final else "complete"] += 1
        if any(e.endswith("malformed") or e == "sni_not_ascii" or e == "cipher_suites_odd_length"
               for e in info.errors):
            st["malformed"] += 1
        if any(e.endswith(("truncated", "over_limit")) for e in info.errors):
            st["truncated"] += 1
        del self._flows[flow.hash]
        self._by_key.pop(flow.key, None)
        return info

    def _store(self, info: TlsInfo | None, flow: _Flow) -> None:
        if info is None:
            return
        self._recent[flow.hash] = flow.last_ts
        self._trim_recent()
        self._done[flow.key] = info
        if len(self._done) > self.max_flows:
            self._done.popitem(last=False)
            self.stats["evicted"] += 1

    def _forget(self, hashes: list[int]) -> None:
        removed = forget_tls_flows(self._keys, self._dirs, self._state,
                                   np.array(hashes, np.uint64))
        self._fill -= int(removed)

    def _expire(self, now_ns: int) -> None:
        """Close handshakes idle for longer than the timeout (checked once per batch), and
        stop remembering dropped and handed-over flows as old."""
        recent = self._recent
        while recent and now_ns - next(iter(recent.values())) > self.timeout_ns:
            recent.popitem(last=False)
        if not self._flows:
            return
        stale = []
        for flow in self._flows.values():  # least recently active first
            if now_ns - flow.last_ts <= self.timeout_ns:
                break
            stale.append(flow)
        for flow in stale:
            self.stats["timeouts"] += 1
            self._store(self._finish(flow, final=True), flow)
        if stale:
            self._forget([f.hash for f in stale])

    # -- answers ------------------------------------------------------------------------------

    def info(self, key: FlowKey) -> TlsInfo | None:
        """The handshake of flow ``key`` (``detect.records.flow_key(vlan, inner_vlan, 6, a, b)``),
        or None when no ClientHello was seen, the flow was not wanted, or its result was
        already handed over (:meth:`drain`, :meth:`pop`); partial while still being read."""
        done = self._done.get(key)
        if done is not None:
            return done
        h = self._by_key.get(key)
        if h is None:
            return None
        return self._flows[h].info()

    def pop(self, key: FlowKey) -> TlsInfo | None:
        """:meth:`info`, then forget the flow (call it when the flow closes). A flow still
        being read is closed with what it has (and, if ``want`` had not been asked yet and
        says no now, dropped: None)."""
        done = self._done.pop(key, None)
        if done is not None:
            return done
        h = self._by_key.get(key)
        if h is None:
            return None
        info = self._finish(self._flows[h], final=True)
        self._forget([h])
        return info

    def declined(self) -> list[tuple[int, str]]:
        """The flows ``want`` turned down since the last call, with the server name they
        asked for, as (flow hash, name). The hash is the direction-free flow hash the
        behaviour model keys its rows by (``kernels.prefilter.canonical_hash``), so a flow it
        flags can say which (non-pool) name its ClientHello asked for."""
        out, self._declined = self._declined, []
        return out

    def drain(self) -> list[tuple[FlowKey, TlsInfo]]:
        """The handshakes finished (read to their end, or closed by timeout) since the last
        call and not popped, in the order they finished, as (flow key, result); they are
        handed over: :meth:`info` and :meth:`pop` no longer know them."""
        out = list(self._done.items())
        self._done.clear()
        return out

    def flush(self) -> list[tuple[FlowKey, TlsInfo]]:
        """Close every handshake still being read (end of input) and hand over every result
        not drained or popped yet, as :meth:`drain` does (those finished earlier first); the
        observer is empty afterwards."""
        for flow in list(self._flows.values()):
            self._store(self._finish(flow, final=True), flow)
        self._keys[:] = 0
        self._dirs[:] = 0
        self._fill = 0
        out = self.drain()
        self._recent.clear()
        return out
