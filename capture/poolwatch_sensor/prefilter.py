"""The in-kernel prefilter: a classic BPF program, generated from the fingerprints, that lets
through only the packets detection can use.

What passes (IPv4 and IPv6, untagged or 802.1Q/802.1ad tagged):

- TCP segments whose payload starts like a mining message: the first bytes of every dialect's
  signatures in ``fingerprints/dialects.yaml`` (``{`` for the JSON dialects, with leading
  whitespace; ``POST``/``GET`` for getwork), the start of an HTTP response for dialects framed
  as HTTP, a plaintext Stratum V2 frame header (extension type 0, a known message type), and
  the exact payload sizes the fingerprints give for Stratum V2's Noise handshake and its
  fixed-size encrypted records;
- TLS handshake records (first payload byte 0x16): ClientHello for SNI, the server's
  certificate;
- DNS (port 53, UDP and TCP), so pool names are learnt;
- TCP SYN, FIN and RST, so the flow table sees every connection open and close;
- everything to or from a pool address: the prefixes of ``fingerprints/addresses.csv`` and
  the addresses learnt so far (``DetectionPipeline.pool_addresses()``). The sensor rebuilds
  the filter when that set changes.

Why libpcap compiles it: its filter language is what operators already read and write
(``tcpdump -d`` shows the same program), and its optimiser and code generator are the
reference implementation for classic BPF; hand-written bytecode would be harder to review
and to extend. libpcap is called in-process through ``ctypes`` (``pcap_open_dead`` +
``pcap_compile``, which, unlike ``pcap_compile_nopcap``, reports why an expression is
wrong); only ``libpcap.so`` is needed, no headers and no build step. The program is compiled
for the link type of the capture: Ethernet, or raw IP for cooked sockets and tunnels.

Limits, by construction of a stateless per-packet filter:

- a message split over several TCP segments loses its later segments unless the flow is to a
  known pool address; so does a TLS certificate spread over segments (the SNI suffices for a
  pool name, the certificate is read only for flows without one);
- TCP payload checks assume no IPv6 extension header before TCP (libpcap's ``tcp[]`` is
  IPv4-only, the IPv6 part reads ``ip6[]`` at fixed offsets); such packets still pass when
  they are SYN/FIN/RST-free only if an address rule matches;
- flow sizes and timing seen by the behaviour model and flow records are those of the
  packets that passed: per-flow packet and byte counts are lower than on the wire.

At most ``max_addresses`` pool addresses go in as they are; beyond that, addresses are
merged into covering prefixes (/24 for IPv4, /48 for IPv6, then /16 and /32) until they fit,
so the filter passes more traffic but never misses a pool. If the compiled program is still
longer than the kernel accepts (4096 instructions), the limit is halved and the merge redone.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import ipaddress
import threading
from collections.abc import Iterable

import numpy as np

from poolwatch.errors import ConfigError
from poolwatch.records import LINKTYPE_ETHERNET

SOCK_FILTER = np.dtype([("code", "<u2"), ("jt", "u1"), ("jf", "u1"), ("k", "<u4")])
BPF_MAXINSNS = 4096  # the kernel's limit for a classic socket filter
BPF_RET_K = 0x06
DEFAULT_MAX_ADDRESSES = 256
PCAP_NETMASK_UNKNOWN = 0xFFFFFFFF
JSON_LEAD = b" \t\r\n"  # whitespace may come before a JSON object's brace: let it all pass
TLS_HANDSHAKE = b"\x16"
HTTP_RESPONSE = b"HTTP"


class _Insn(ctypes.Structure):
    _fields_ = [("code", ctypes.c_ushort), ("jt", ctypes.c_ubyte), ("jf", ctypes.c_ubyte),
                ("k", ctypes.c_uint32)]


class _Program(ctypes.Structure):
    _fields_ = [("bf_len", ctypes.c_uint), ("bf_insns", ctypes.POINTER(_Insn))]


class _PktHdr(ctypes.Structure):
    _fields_ = [("tv_sec", ctypes.c_long), ("tv_usec", ctypes.c_long),
                ("caplen", ctypes.c_uint32), ("len", ctypes.c_uint32)]


_lock = threading.Lock()
_lib: ctypes.CDLL | None = None


def _libpcap() -> ctypes.CDLL:
    global _lib
    if _lib is None:
        names = [ctypes.util.find_library("pcap"), "libpcap.so.1", "libpcap.so.0.8", "libpcap.so"]
        for name in filter(None, names):
            try:
                lib = ctypes.CDLL(name)
                break
            except OSError:
                continue
        else:
            raise ConfigError("the BPF prefilter needs libpcap (Debian: libpcap0.8), not found")
        lib.pcap_open_dead.restype = ctypes.c_void_p
        lib.pcap_open_dead.argtypes = [ctypes.c_int, ctypes.c_int]
        lib.pcap_compile.argtypes = [ctypes.c_void_p, ctypes.POINTER(_Program), ctypes.c_char_p,
                                     ctypes.c_int, ctypes.c_uint32]
        lib.pcap_geterr.restype = ctypes.c_char_p
        lib.pcap_geterr.argtypes = [ctypes.c_void_p]
        lib.pcap_freecode.argtypes = [ctypes.POINTER(_Program)]
        lib.pcap_close.argtypes = [ctypes.c_void_p]
        lib.pcap_offline_filter.argtypes = [ctypes.POINTER(_Program), ctypes.POINTER(_PktHdr),
                                            ctypes.c_char_p]
        _lib = lib
    return _lib


def compile_filter(expression: str, *, linktype: int = LINKTYPE_ETHERNET,
                   snaplen: int = 262_144, optimize: bool = True) -> np.ndarray:
    """A filter expression (tcpdump syntax) → classic BPF instructions (``SOCK_FILTER``
    array, the layout of ``struct sock_filter``), as libpcap compiles it for ``linktype``."""
    lib = _libpcap()
    with _lock:  # older libpcaps keep the parser's state in globals
        handle = lib.pcap_open_dead(linktype, snaplen)
        if not handle:
            raise ConfigError(f"libpcap cannot compile for link type {linktype}")
        prog = _Program()
        try:
            if lib.pcap_compile(handle, ctypes.byref(prog), expression.encode(), int(optimize),
                                PCAP_NETMASK_UNKNOWN) != 0:
                why = lib.pcap_geterr(handle).decode(errors="replace")
                raise ConfigError(f"BPF filter {_short(expression)!r}: {why}")
            raw = ctypes.string_at(prog.bf_insns, prog.bf_len * SOCK_FILTER.itemsize)
            lib.pcap_freecode(ctypes.byref(prog))
        finally:
            lib.pcap_close(handle)
    program = np.frombuffer(raw, SOCK_FILTER).copy()
    if len(program) > BPF_MAXINSNS:
        raise ConfigError(f"BPF filter {_short(expression)!r} compiles to {len(program)} "
                          f"instructions; the kernel takes at most {BPF_MAXINSNS}")
    return program


def accept_all(snaplen: int) -> np.ndarray:
    """The one-instruction program that keeps ``snaplen`` bytes of every packet."""
    return np.array([(BPF_RET_K, 0, 0, snaplen)], SOCK_FILTER)


def run_filter(program: np.ndarray, frame: bytes, wirelen: int | None = None) -> int:
    """Run ``program`` over one frame with libpcap's BPF interpreter (``pcap_offline_filter``):
    the bytes the kernel would keep, 0 when rejected. For tests and for checking a filter
    against a capture file; the live filter runs in the kernel."""
    lib = _libpcap()
    insns = (_Insn * len(program)).from_buffer_copy(program.tobytes())
    prog = _Program(len(program), insns)
    hdr = _PktHdr(0, 0, len(frame), wirelen if wirelen is not None else len(frame))
    return lib.pcap_offline_filter(ctypes.byref(prog), ctypes.byref(hdr), frame)


def _short(expression: str) -> str:
    return expression if len(expression) <= 120 else expression[:117] + "..."


# --------------------------------------------------------------------------- the expression
def payload_shapes(fp) -> tuple[list[bytes], list[int], list[tuple[int, list[int]]]]:
    """What mining payloads start with, per the fingerprints: (prefixes of at most 4 bytes,
    exact payload sizes, binary frame rules as (header bytes, known message types))."""
    prefixes: set[bytes] = {TLS_HANDSHAKE}
    sizes: set[int] = set()
    frames: list[tuple[int, list[int]]] = []
    for dialect in fp.dialects.values():
        for sig in (*dialect.client_signatures, *dialect.server_signatures):
            prefix = sig.prefix
            if prefix and dialect.framing != "binary-sv2":
                prefixes.add(prefix[:4])
                if prefix[:1] == b"{":
                    prefixes.update(bytes([c]) for c in JSON_LEAD)
            elif sig.payload_len is not None:
                sizes.add(sig.payload_len)
        if dialect.framing == "http-json":
            prefixes.add(HTTP_RESPONSE)  # the pool's answers
        if dialect.framing == "binary-sv2" and dialect.frame is not None:
            frame = dialect.frame
            sizes.update((frame.handshake_client_bytes, frame.handshake_server_bytes))
            sizes.update(frame.record_bytes(m) for m in frame.fixed_payload_bytes)
            if dialect.message_types:
                frames.append((frame.header_bytes, sorted(dialect.message_types)))
    # a prefix that starts with a shorter one adds nothing
    kept = sorted(p for p in prefixes if not any(q != p and p.startswith(q) for q in prefixes))
    return kept, sorted(s for s in sizes if s), frames


def _byte_tests(load, prefix: bytes) -> str:
    """``load(offset, size)`` comparisons that say the payload starts with ``prefix``."""
    tests, at = [], 0
    while at < len(prefix):
        size = 4 if len(prefix) - at >= 4 else 2 if len(prefix) - at >= 2 else 1
        tests.append(f"{load(at, size)} = 0x{prefix[at:at + size].hex()}")
        at += size
    return " and ".join(tests)


def _payload_clause(fp, load, length: str) -> str:
    """The payload part for one IP version; ``load(offset, size)`` reads the payload and
    ``length`` is the payload size. Every load is guarded by a length test: a classic BPF
    load past the end of the packet rejects the whole packet, whatever the other branches."""
    prefixes, sizes, frames = payload_shapes(fp)
    by_len: dict[int, list[str]] = {}
    for p in prefixes:
        by_len.setdefault(len(p), []).append(f"({_byte_tests(load, p)})")
    alts = [f"({length} >= {n} and ({' or '.join(tests)}))" for n, tests in sorted(by_len.items())]
    if sizes:
        alts.append("(" + " or ".join(f"{length} = {s}" for s in sizes) + ")")
    for header, types in frames:
        lo, hi = min(types), max(types)
        alts.append(f"({length} >= {header} and ({load(0, 2)} & 0xff7f) = 0 and "
                    f"{load(2, 1)} >= {lo} and {load(2, 1)} <= {hi})")
    return " or ".join(alts)


def _ipv4_tcp(fp) -> str:
    hdr = "((tcp[12] & 0xf0) >> 2)"
    length = f"(ip[2:2] - ((ip[0] & 0x0f) << 2) - {hdr})"

    def load(off: int, size: int) -> str:
        return f"tcp[{hdr} + {off}:{size}]" if off else f"tcp[{hdr}:{size}]"

    flags = "(tcp[tcpflags] & (tcp-syn|tcp-fin|tcp-rst) != 0)"
    return f"(ip and tcp and ({flags} or {_payload_clause(fp, load, length)}))"


def _ipv6_tcp(fp) -> str:
    hdr = "((ip6[52] & 0xf0) >> 2)"  # TCP right after the fixed header: data offset at 40+12
    length = f"(ip6[4:2] - {hdr})"

    def load(off: int, size: int) -> str:
        return f"ip6[40 + {hdr} + {off}:{size}]"

    flags = "(ip6[53] & 0x07 != 0)"
    return f"(ip6 and ip6[6] = 6 and ({flags} or {_payload_clause(fp, load, length)}))"


def pool_networks(fp, addresses: Iterable[str], max_addresses: int = DEFAULT_MAX_ADDRESSES,
                  ) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    """Pool prefixes of the fingerprints and the learnt addresses, at most ``max_addresses``
    of them: past that, merged into wider covering prefixes (never dropped)."""
    nets: list[ipaddress.IPv4Network | ipaddress.IPv6Network] = []
    for a in fp.addresses.values():
        nets.append(a.network)
    for text in addresses:
        try:
            nets.append(ipaddress.ip_network(text, strict=False))
        except ValueError:
            continue  # not an address: nothing to filter on
    nets = _collapse(nets)
    for v4, v6 in ((24, 48), (16, 32), (8, 16), (0, 0)):
        if len(nets) <= max_addresses:
            break
        nets = _collapse(n if n.prefixlen <= (v4 if n.version == 4 else v6)
                         else n.supernet(new_prefix=v4 if n.version == 4 else v6) for n in nets)
    return nets


def _collapse(nets) -> list:
    nets = list(nets)
    v4 = [n for n in nets if n.version == 4]
    v6 = [n for n in nets if n.version == 6]
    return [*ipaddress.collapse_addresses(v4), *ipaddress.collapse_addresses(v6)]


def _address_clause(nets) -> str | None:
    """``ip host``/``ip6 net`` terms: qualified by family, libpcap tests two words per IPv4
    address instead of also matching ARP and RARP, a third of the code and far less compile
    time."""
    terms = []
    for n in nets:
        family = "ip" if n.version == 4 else "ip6"
        if n.prefixlen == 0:
            terms.append(family)
        elif n.prefixlen == n.max_prefixlen:
            terms.append(f"{family} host {n.network_address}")
        else:
            terms.append(f"{family} net {n}")
    return "(" + " or ".join(terms) + ")" if terms else None


def prefilter_expression(fp, pool_addresses: Iterable[str] = (), *,
                         max_addresses: int = DEFAULT_MAX_ADDRESSES, vlan: bool = True) -> str:
    """The filter expression for the fingerprints ``fp`` and the pool addresses known so far.

    With ``vlan``, the same test is repeated behind one 802.1Q/802.1ad tag: Linux strips the
    outer tag before the filter runs, so this matches QinQ traffic, and tagged frames on
    kernels or drivers that leave the tag in place (compile for Ethernet only)."""
    parts = ["(port 53)", _ipv4_tcp(fp), _ipv6_tcp(fp)]
    addrs = _address_clause(pool_networks(fp, pool_addresses, max_addresses))
    if addrs:
        parts.insert(1, addrs)
    body = " or ".join(parts)
    return f"({body}) or (vlan and ({body}))" if vlan else body


def prefilter_program(fp, pool_addresses: Iterable[str] = (), *, linktype: int = LINKTYPE_ETHERNET,
                      snaplen: int = 262_144, max_addresses: int = DEFAULT_MAX_ADDRESSES,
                      ) -> tuple[str, np.ndarray]:
    """(expression, compiled program) that fits the kernel's limit: the address limit is
    halved until it does. ``vlan`` rules only for Ethernet."""
    pool_addresses = list(pool_addresses)
    while True:
        expr = prefilter_expression(fp, pool_addresses, max_addresses=max_addresses,
                                    vlan=linktype == LINKTYPE_ETHERNET)
        try:
            return expr, compile_filter(expr, linktype=linktype, snaplen=snaplen)
        except ConfigError:
            if max_addresses <= 1:
                raise
            max_addresses //= 2


class PrefilterUpdater:
    """Keeps a socket's prefilter in step with the pool addresses a pipeline has learnt.

    :meth:`refresh` is cheap when nothing changed (one integer compared); when the pipeline's
    ``version_of_pool_addresses`` moved, and at least ``min_interval_s`` after the last
    rebuild (DNS teaches addresses in bursts; a compile takes 10–200 ms), the filter is
    rebuilt and swapped in. Packets between a pool's DNS answer and the swap are filtered by
    the old program: a connection made in that moment may lose segments (see the limits above).
    """

    def __init__(self, sock, fp, *, max_addresses: int = DEFAULT_MAX_ADDRESSES,
                 min_interval_s: float = 2.0) -> None:
        self.sock, self.fp = sock, fp
        self.max_addresses = max_addresses
        self.min_interval_s = min_interval_s
        self.version = -1
        self.rebuilds = 0
        self._last = float("-inf")

    def refresh(self, pipe, now_s: float | None = None) -> bool:
        """Rebuild if the pipeline's pool addresses changed; whether the filter was replaced."""
        import time

        version = pipe.version_of_pool_addresses
        if version == self.version:
            return False
        now_s = time.monotonic() if now_s is None else now_s
        if now_s - self._last < self.min_interval_s:
            return False
        expr, program = prefilter_program(self.fp, pipe.pool_addresses(),
                                          linktype=self.sock.filter_linktype,
                                          snaplen=self.sock.snaplen,
                                          max_addresses=self.max_addresses)
        self.sock.set_program(program, expr)
        self.version, self._last = version, now_s
        self.rebuilds += 1
        return True
