"""TLS handshakes seen passively (``detect.tls``) and their selection kernel (``kernels.tlsselect``).

Handshakes are built byte by byte with ``struct`` (TLS records, ClientHello, ServerHello,
Certificate), wrapped in TCP/IP/Ethernet by scapy (bytes only: nothing is sent), written to
nanosecond pcaps and read back through ``scan.iter_batches``, as the scan will.

Published values the fingerprints are checked against:

* JA4: FoxIO's specification, github.com/FoxIO-LLC/ja4 ``technical_details/JA4.md``
  (t13d1516h2_8daaf6152771_e5627efa2ab1, its raw form, the 6d807ffa2a79 hash without
  signature algorithms, the ALPN examples) and the Rust implementation's test
  ``test_client_stats_into_out`` in ``rust/ja4/src/tls.rs`` (same values);
* JA3: Salesforce's README, github.com/salesforce/ja3 (769,47-53-5-10-...  ->
  ada70206e40642a3e4461f35503241d5);
* a Chrome 143 ClientHello as fingerprinted by browserleaks.com (published in
  github.com/service0427/v2_cp_app ``tls.md``): JA3 98487aa16281980e7d1120d399efb6a4 and
  JA4 t13d1516h2_8daaf6152771_d8a2da3f94cd from the same hello.
"""

from __future__ import annotations

import hashlib
import random
import re
import shutil
import struct
import subprocess
from pathlib import Path

import numpy as np
import pytest

from poolwatch.detect.records import flow_key
from poolwatch.detect.tls import (
    ClientHello,
    TlsObserver,
    certificate_names,
    certificate_names_compiled,
    client_hello_sni,
    ja3_string,
    ja4_fingerprint,
    parse_client_hello,
)
from poolwatch.kernels import tlsselect as ts
from poolwatch.kernels._reference_tlsselect import TlsSelectReference, as_arrays
from poolwatch.records import addr_to_halves, halves_to_addr
from poolwatch.scan import iter_batches

from .conftest import PEER_CORPUS

pytest.importorskip("scapy.layers.inet")
from scapy.layers.inet import IP, TCP
from scapy.layers.l2 import Dot1Q, Ether
from scapy.packet import Raw

T0 = 1_772_438_400 * 10**9
MS = 10**6
S = 10**9

# ---------------------------------------------------------------------------------------------
# Handshake bytes
# ---------------------------------------------------------------------------------------------


def u16(v: int) -> bytes:
    return struct.pack(">H", v)


def u24(v: int) -> bytes:
    return struct.pack(">I", v)[1:]


def ext(etype: int, data: bytes = b"") -> bytes:
    return u16(etype) + u16(len(data)) + data


def sni_ext(name: str) -> bytes:
    entry = b"\x00" + u16(len(name)) + name.encode()
    return ext(0, u16(len(entry)) + entry)


def alpn_ext(*protos: bytes) -> bytes:
    body = b"".join(bytes([len(p)]) + p for p in protos)
    return ext(0x10, u16(len(body)) + body)


def u16_list_ext(etype: int, values, width: int = 2) -> bytes:
    body = b"".join(u16(v) for v in values)
    return ext(etype, (bytes([len(body)]) if width == 1 else u16(len(body))) + body)


def handshake(mtype: int, body: bytes) -> bytes:
    return bytes([mtype]) + u24(len(body)) + body


def client_hello_body(ciphers, exts: list[bytes], version: int = 0x0303,
                      session_id: bytes = b"\x11" * 32) -> bytes:
    suites = b"".join(u16(c) for c in ciphers)
    return (u16(version) + b"\x42" * 32 + bytes([len(session_id)]) + session_id
            + u16(len(suites)) + suites + b"\x01\x00" + u16(sum(map(len, exts))) + b"".join(exts))


def record(payload: bytes, ctype: int = 0x16, version: int = 0x0301) -> bytes:
    return bytes([ctype]) + u16(version) + u16(len(payload)) + payload


def records(message: bytes, size: int = 16384, ctype: int = 0x16) -> bytes:
    """A handshake message in records of at most ``size`` bytes each."""
    return b"".join(record(message[k : k + size], ctype) for k in range(0, len(message), size))


# Chrome 143 as browserleaks.com saw it (see the module docstring): its ja3_text and ja4_ro.
CHROME_CIPHERS = [0x1301, 0x1302, 0x1303, 0xC02B, 0xC02F, 0xC02C, 0xC030, 0xCCA9, 0xCCA8, 0xC013,
                  0xC014, 0x009C, 0x009D, 0x002F, 0x0035]
CHROME_SIGS = [0x0403, 0x0804, 0x0401, 0x0503, 0x0805, 0x0501, 0x0806, 0x0601]


def chrome_hello(name: str | None = "tls.browserleaks.com", grease: bool = True,
                 key_share: int = 1216) -> bytes:
    """A ClientHello message with Chrome's lists (and GREASE, which every hash ignores)."""
    exts = [
        ext(0x2A2A) if grease else b"",
        ext(45, b"\x01\x01"),
        ext(51, u16(key_share + 4) + u16(4588) + u16(key_share) + b"\x07" * key_share),
        alpn_ext(b"h2", b"http/1.1"),
        ext(65037, b"\x00" * 40),
        ext(23),
        ext(17613, b"\x00\x03\x02h2"),
        sni_ext(name) if name else b"",
        ext(11, b"\x01\x00"),
        u16_list_ext(10, ([0x8A8A] if grease else []) + [4588, 29, 23, 24]),
        u16_list_ext(43, ([0x6A6A] if grease else []) + [0x0304, 0x0303], width=1),
        ext(65281, b"\x00"),
        ext(35),
        ext(18),
        ext(5, b"\x01\x00\x00\x00\x00"),
        u16_list_ext(13, CHROME_SIGS),
        ext(27, b"\x02\x00\x02"),
        ext(0xFAFA, b"\x00") if grease else b"",
    ]
    ciphers = ([0x9A9A] if grease else []) + CHROME_CIPHERS
    return handshake(1, client_hello_body(ciphers, [e for e in exts if e]))


CHROME_JA3 = "98487aa16281980e7d1120d399efb6a4"
CHROME_JA4 = "t13d1516h2_8daaf6152771_d8a2da3f94cd"


def server_hello(version: int = 0x0303, cipher: int = 0xC02F, tls13: bool = False) -> bytes:
    exts = [ext(0xFF01, b"\x00"), ext(11, b"\x01\x00")]
    if tls13:
        exts = [ext(0x33, u16(29) + u16(32) + b"\x05" * 32), ext(0x2B, u16(0x0304))]
    body = (u16(version) + b"\x24" * 32 + b"\x20" + b"\x11" * 32 + u16(cipher) + b"\x00"
            + u16(sum(map(len, exts))) + b"".join(exts))
    return handshake(2, body)


def certificate_message(*ders: bytes) -> bytes:
    chain = b"".join(u24(len(d)) + d for d in ders)
    return handshake(11, u24(len(chain)) + chain)


CCS = record(b"\x01", ctype=0x14, version=0x0303)


def app_data(n: int) -> bytes:
    return record(bytes(random.Random(n).randbytes(n)), ctype=0x17, version=0x0303)


def make_cert(cn: str, sans: list[str]) -> bytes:
    crypto = pytest.importorskip("cryptography")  # noqa: F841
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Pool Ltd"),
                      x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    now = datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC)
    builder = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
               .public_key(key.public_key()).serial_number(12345)
               .not_valid_before(now).not_valid_after(now + datetime.timedelta(days=90)))
    if sans:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.DNSName(s) for s in sans]
                                        + [x509.IPAddress(__import__("ipaddress").ip_address("192.0.2.1"))]),
            critical=False)
    builder = builder.add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
    cert = builder.sign(key, hashes.SHA256())
    return cert.public_bytes(serialization.Encoding.DER)


# ---------------------------------------------------------------------------------------------
# Captures
# ---------------------------------------------------------------------------------------------


class Capture:
    """Frames with capture times; written as a nanosecond Ethernet pcap (as test_streams)."""

    def __init__(self, start_ns: int = T0, step_ns: int = MS) -> None:
        self.frames: list[tuple[int, bytes]] = []
        self.now, self.step = start_ns, step_ns

    def add(self, frame: bytes) -> None:
        self.now += self.step
        self.frames.append((self.now, frame))

    def write(self, path: Path) -> Path:
        out = bytearray(struct.pack("<IHHiIII", 0xA1B23C4D, 2, 4, 0, 0, 262144, 1))
        for t, data in self.frames:
            out += struct.pack("<IIII", t // S, t % S, len(data), len(data)) + data
        path.write_bytes(bytes(out))
        return path


class Conn:
    """One TCP connection: side 0 the client, side 1 the server; sequence numbers tracked."""

    def __init__(self, cap: Capture, client=("10.0.0.5", 40001), server=("203.0.113.10", 443),
                 isn=(1000, 4294967000), vlan: int = 0) -> None:
        self.cap, self.ends, self.seq, self.vlan = cap, (client, server), list(isn), vlan

    def frame(self, side: int, flags: str, data: bytes, seq: int) -> bytes:
        (src, sport), (dst, dport) = self.ends[side], self.ends[1 - side]
        l4 = TCP(sport=sport, dport=dport, flags=flags, seq=seq % 2**32,
                 ack=self.seq[1 - side] % 2**32 if "A" in flags else 0)
        eth = Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02")
        if self.vlan:
            eth = eth / Dot1Q(vlan=self.vlan)
        pkt = eth / IP(src=src, dst=dst) / l4
        return bytes(pkt / Raw(data)) if data else bytes(pkt)

    def seg(self, side: int, data: bytes = b"", flags: str = "PA", seq: int | None = None) -> None:
        if seq is None:
            seq = self.seq[side]
            self.seq[side] += len(data) + ("S" in flags) + ("F" in flags)
        self.cap.add(self.frame(side, flags, data, seq))

    def send(self, side: int, data: bytes, mss: int = 1400) -> None:
        for k in range(0, len(data), mss):
            self.seg(side, data[k : k + mss])

    def open(self) -> None:
        self.seg(0, flags="S")
        self.seg(1, flags="SA")
        self.seg(0, flags="A")

    def close(self) -> None:
        self.seg(0, flags="FA")
        self.seg(1, flags="FA")
        self.seg(0, flags="A")

    def key(self):
        (c, cp), (s, sp) = self.ends
        return flow_key(self.vlan, 0, 6, (*addr_to_halves(c), cp), (*addr_to_halves(s), sp))


def observe(path: Path, batch_packets: int = 1 << 16, **kw) -> TlsObserver:
    obs = TlsObserver(**kw)
    for batch in iter_batches([path], batch_packets=batch_packets):
        obs.update(batch)
    return obs


# ---------------------------------------------------------------------------------------------
# Fingerprints against published values
# ---------------------------------------------------------------------------------------------

SPEC_CIPHERS = [0x1301, 0x1302, 0x1303, 0xC02B, 0xC02F, 0xC02C, 0xC030, 0xCCA9, 0xCCA8, 0xC013,
                0xC014, 0x009C, 0x009D, 0x002F, 0x0035]
SPEC_EXTS = [0x001B, 0x0000, 0x0033, 0x0010, 0x4469, 0x0017, 0x002D, 0x000D, 0x0005, 0x0023,
             0x0012, 0x002B, 0xFF01, 0x000B, 0x000A, 0x0015]


def spec_hello(**kw) -> ClientHello:
    base = {"version": 0x0303, "ciphers": tuple(SPEC_CIPHERS), "extensions": tuple(SPEC_EXTS),
                "sni": "example.com", "sni_present": True, "alpn": (b"h2",),
                "supported_versions": (0x0304, 0x0303), "sig_algs": tuple(CHROME_SIGS)}
    base.update(kw)
    return ClientHello(**base)


def test_ja4_matches_the_foxio_specification():
    ch = spec_hello()
    assert ja4_fingerprint(ch) == "t13d1516h2_8daaf6152771_e5627efa2ab1"
    assert ja4_fingerprint(ch, raw=True) == (
        "t13d1516h2_002f,0035,009c,009d,1301,1302,1303,c013,c014,c02b,c02c,c02f,c030,cca8,cca9_"
        "0005,000a,000b,000d,0012,0015,0017,001b,0023,002b,002d,0033,4469,ff01_"
        "0403,0804,0401,0503,0805,0501,0806,0601")
    # "If there are no signature algorithms ... the string ends without an underscore"
    assert ja4_fingerprint(spec_hello(sig_algs=())).endswith("_6d807ffa2a79")
    # GREASE anywhere changes nothing
    greasy = spec_hello(ciphers=(0x0A0A,) + tuple(SPEC_CIPHERS), sig_algs=(0x1A1A, *CHROME_SIGS),
                        extensions=(0x2A2A,) + tuple(SPEC_EXTS) + (0xFAFA,),
                        supported_versions=(0x7A7A, 0x0304, 0x0303))
    assert ja4_fingerprint(greasy) == "t13d1516h2_8daaf6152771_e5627efa2ab1"
    # no ciphers / no extensions: twelve zeros, not the hash of nothing
    assert ja4_fingerprint(spec_hello(ciphers=(), extensions=(), sig_algs=(), alpn=(),
                                      supported_versions=())) == "t12i000000_000000000000_000000000000"


@pytest.mark.parametrize("alpn, chars", [
    ((), "00"), ((b"",), "00"), ((b"h2",), "h2"), ((b"http/1.1", b"h2"), "h1"),
    ((b"\xab",), "ab"), ((b"\xab\xcd",), "ad"), ((b"\x30\xab",), "3b"),
    ((b"\x30\x31\xab\xcd",), "3d"), ((b"\x30\xab\xcd\x31",), "01"), ((b"x",), "xx"),
])
def test_ja4_alpn_characters_follow_the_specification(alpn, chars):
    assert ja4_fingerprint(spec_hello(alpn=alpn))[8:10] == chars


@pytest.mark.parametrize("versions, legacy, text", [
    ((0x0304, 0x0303), 0x0303, "13"), ((), 0x0303, "12"), ((), 0x0301, "10"), ((), 0x0300, "s3"),
    ((0x0302,), 0x0303, "11"), ((), 0x1234, "00"), ((0x0A0A,), 0x0303, "12"),
])
def test_ja4_version(versions, legacy, text):
    assert ja4_fingerprint(spec_hello(supported_versions=versions, version=legacy))[1:3] == text


def test_ja3_matches_the_salesforce_example():
    ch = ClientHello(version=769, ciphers=(47, 53, 5, 10, 49161, 49162, 49171, 49172, 50, 56, 19, 4),
                     extensions=(0, 10, 11), groups=(23, 24, 25), point_formats=(0,))
    text = ja3_string(ch)
    assert text == "769,47-53-5-10-49161-49162-49171-49172-50-56-19-4,0-10-11,23-24-25,0"
    assert hashlib.md5(text.encode()).hexdigest() == "ada70206e40642a3e4461f35503241d5"


def test_chrome_hello_from_the_wire_matches_published_ja3_and_ja4():
    msg = chrome_hello()
    ch = parse_client_hello(msg[4:])
    assert ch.complete and ch.error is None
    assert hashlib.md5(ja3_string(ch).encode()).hexdigest() == CHROME_JA3
    assert ja4_fingerprint(ch) == CHROME_JA4
    assert ch.sni == "tls.browserleaks.com" and ch.alpn == (b"h2", b"http/1.1")


# ---------------------------------------------------------------------------------------------
# The observer on captures
# ---------------------------------------------------------------------------------------------


def tls13_flow(cap: Capture, hello: bytes, app_packets: int = 0, mss: int = 1400, **kw) -> Conn:
    c = Conn(cap, **kw)
    c.open()
    c.send(0, records(hello), mss)
    c.seg(1, record(server_hello(tls13=True), version=0x0303) + CCS + app_data(900))
    c.seg(1, app_data(1200))
    c.seg(0, CCS + app_data(53))
    for k in range(app_packets):
        c.seg(k % 2, app_data(1300))
    c.close()
    return c


def test_tls13_handshake_one_segment_and_its_application_data_stays_out(tmp_path):
    cap = Capture()
    c = tls13_flow(cap, chrome_hello(), app_packets=2000)
    obs = observe(cap.write(tmp_path / "t.pcap"), batch_packets=256)
    info = obs.pop(c.key())
    assert info is not None and info.errors == ()
    assert info.sni == "tls.browserleaks.com"
    assert info.alpn == ("h2", "http/1.1")
    assert info.versions == (0x0304, 0x0303)
    assert info.server_version == 0x0304
    assert (info.ja3, info.ja4) == (CHROME_JA3, CHROME_JA4)
    assert info.ja3s is not None and info.cert_names == ()
    assert info.client == (*addr_to_halves("10.0.0.5"), 40001)
    assert info.server == (*addr_to_halves("203.0.113.10"), 443)
    # the ClientHello (~1.8 KB) in frames 4 and 5, the ServerHello in 6
    assert info.first_ts_ns == T0 + 4 * MS and info.frames == (4, 5, 6)
    # Only those reached Python, of 2011 packets.
    assert obs.stats["packets"] == 3
    assert obs.stats["client_hellos"] == obs.stats["server_hellos"] == obs.stats["tls13"] == 1
    assert obs.pop(c.key()) is None


def test_post_quantum_hello_over_three_segments_out_of_order_with_retransmission(tmp_path):
    hello = records(chrome_hello(key_share=1216 + 1520))  # ~3 KB: a large post-quantum share
    assert 2800 < len(hello) < 4200
    cap = Capture()
    c = Conn(cap)
    c.open()
    base = c.seq[0]
    parts = [hello[:1400], hello[1400:2800], hello[2800:]]
    c.seg(0, parts[0], seq=base)
    c.seg(0, parts[2], seq=base + 2800)
    c.seg(0, parts[1][:700], seq=base + 1400)  # a piece, then the whole (overlap)
    c.seg(0, parts[1], seq=base + 1400)
    c.seg(0, parts[0], seq=base)  # retransmission
    c.seq[0] = base + len(hello)
    c.seg(1, record(server_hello(tls13=True), version=0x0303) + CCS)
    c.seg(1, app_data(3000))
    c.close()
    obs = observe(cap.write(tmp_path / "pq.pcap"))
    info = obs.info(c.key())
    assert info is not None and info.errors == ()
    assert (info.ja3, info.ja4, info.sni) == (CHROME_JA3, CHROME_JA4, "tls.browserleaks.com")
    assert info.frames == (4, 5, 6, 7, 9)
    assert obs.stats["packets"] == 6  # five client segments and the ServerHello


def test_out_of_order_within_a_batch_before_the_first_segment(tmp_path):
    """A later ClientHello segment captured before the first one, in the same batch."""
    hello = records(chrome_hello())
    cap = Capture()
    c = Conn(cap)
    c.open()
    base = c.seq[0]
    c.seg(0, hello[1000:], seq=base + 1000)
    c.seg(0, hello[:1000], seq=base)
    c.seq[0] = base + len(hello)
    c.seg(1, record(server_hello(tls13=True), version=0x0303) + CCS)
    obs = observe(cap.write(tmp_path / "ooo.pcap"))
    info = obs.info(c.key())
    assert info.ja4 == CHROME_JA4 and info.first_ts_ns == T0 + 5 * MS


def test_no_sni_grease_free_hello_and_vlan(tmp_path):
    cap = Capture()
    c = tls13_flow(cap, chrome_hello(name=None, grease=False), vlan=42)
    info = observe(cap.write(tmp_path / "nosni.pcap")).info(c.key())
    assert info.sni is None
    assert info.ja4.startswith("t13i1515h2_8daaf6152771_")
    assert info.ja3_string.split(",")[2].split("-").count("0") == 0


def tls12_flow(cap: Capture, der: bytes, mss: int = 1400, **kw) -> Conn:
    hello = handshake(1, client_hello_body(
        [0xC02F, 0xC030, 0x009C], [sni_ext("eu1.Pool.Example."), u16_list_ext(10, [29, 23]),
                                   ext(11, b"\x01\x00"), u16_list_ext(13, [0x0401, 0x0804]),
                                   alpn_ext(b"stratum")]))
    c = Conn(cap, **kw)
    c.open()
    c.send(0, records(hello), mss)
    flight = (records(server_hello()) + records(certificate_message(der, b"\x30\x03\x02\x01\x00"))
              + records(handshake(14, b"")))
    c.send(1, flight, mss)
    c.seg(0, records(handshake(16, b"\x20" + b"\x09" * 32)) + CCS + app_data(40))
    c.seg(1, CCS + app_data(40))
    for k in range(50):
        c.seg(k % 2, app_data(1000))
    c.close()
    return c


def test_tls12_certificate_names_and_application_data_stays_out(tmp_path):
    der = make_cert("stratum.pool.example", ["pool.example", "*.Pool.Example", "pool.example"])
    cap = Capture()
    c = tls12_flow(cap, der, mss=500)  # the certificate spans segments
    obs = observe(cap.write(tmp_path / "t12.pcap"), batch_packets=5)
    info = obs.pop(c.key())
    assert info.errors == ()
    assert info.sni == "eu1.pool.example"
    assert info.alpn == ("stratum",)
    assert info.versions == (0x0303,) and info.server_version == 0x0303
    assert info.cert_names == ("stratum.pool.example", "pool.example", "*.pool.example")
    assert info.ja4.startswith("t12d0305sm_")  # "stratum": s...m
    assert info.ja3s == hashlib.md5(b"771,49199,65281-11").hexdigest()
    assert obs.stats["certificates"] == 1
    client_segs = 1
    server_segs = -(-(len(records(server_hello())) + len(records(certificate_message(
        der, b"\x30\x03\x02\x01\x00"))) + 9) // 500)
    assert obs.stats["packets"] == client_segs + server_segs  # nothing after ServerHelloDone


def test_certificate_walker_agrees_with_cryptography():
    x509 = pytest.importorskip("cryptography.x509")
    from cryptography.x509.oid import NameOID
    for cn, sans in [("a.example", []), ("b.example", ["c.example", "D.example."]),
                     ("ü.example", ["xn--tda.example"])]:
        der = make_cert(cn, sans)
        cert = x509.load_der_x509_certificate(der)
        want = [a.value for a in cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)]
        if sans:
            want += cert.extensions.get_extension_for_class(
                x509.SubjectAlternativeName).value.get_values_for_type(x509.DNSName)
        assert certificate_names(der) == tuple(dict.fromkeys(
            w.lower().rstrip(".") for w in want))


def test_truncated_hello_is_reported_not_raised(tmp_path):
    hello = records(chrome_hello())
    cap = Capture()
    c = Conn(cap)
    c.open()
    c.seg(0, hello[:-60])  # the rest never comes
    c.seg(1, flags="A")
    obs = observe(cap.write(tmp_path / "cut.pcap"))
    info = obs.pop(c.key())
    assert "client_hello_truncated" in info.errors
    assert info.ja3 is None and info.ja4 is None
    assert info.sni == "tls.browserleaks.com"  # what came before the cut is still read
    assert obs.stats["truncated"] == 1 and obs.stats["incomplete"] == 1


def test_malformed_hello_is_counted(tmp_path):
    body = bytearray(client_hello_body([0xC02F], [sni_ext("x.example")]))
    body[2 + 32 + 33 : 2 + 32 + 33 + 2] = b"\x00\x03"  # odd cipher suites length
    cap = Capture()
    c = tls13_flow(cap, handshake(1, bytes(body)))
    obs = observe(cap.write(tmp_path / "bad.pcap"))
    info = obs.pop(c.key())
    assert info.errors and info.ja3 is None
    assert obs.stats["malformed"] == 1


def test_timeout_and_limits(tmp_path):
    cap = Capture(step_ns=10 * S)
    a = Conn(cap, client=("10.0.0.7", 5000))
    a.seg(0, records(chrome_hello())[:200])  # never completed
    for k in range(10):  # other traffic moves capture time on
        Conn(cap, client=("10.0.0.8", 6000 + k)).seg(0, b"x" * 10)
    obs = observe(cap.write(tmp_path / "idle.pcap"), handshake_timeout_s=30)
    assert obs.stats["timeouts"] == 1
    assert "client_hello_truncated" in obs.info(a.key()).errors
    assert obs._fill == 0  # the kernel's table is empty again


def test_table_full_and_eviction(tmp_path):
    cap = Capture()
    conns = [tls13_flow(cap, chrome_hello(), client=("10.0.0.9", 7000 + k)) for k in range(5)]
    obs = observe(cap.write(tmp_path / "many.pcap"), max_flows=2, batch_packets=1 << 16)
    # all five open in one batch: two tracked at once; their results evict each other
    assert obs.stats["table_full"] == 3
    assert obs.stats["complete"] == 2
    obs = observe(cap.write(tmp_path / "many.pcap"), max_flows=2, batch_packets=4)
    assert obs.stats["complete"] == 5 and obs.stats["evicted"] == 3
    assert obs.info(conns[-1].key()) is not None and obs.info(conns[0].key()) is None


# ---------------------------------------------------------------------------------------------
# Robustness
# ---------------------------------------------------------------------------------------------


def test_parsers_never_raise_on_cut_or_random_bytes():
    msg = chrome_hello()[4:]
    no_extensions = 2 + 32 + 33 + 2 + 2 * 16 + 2  # a hello may end after its compression
    for n in range(len(msg)):
        ch = parse_client_hello(msg[:n], complete=True)
        assert not ch.complete or ch.error or n == no_extensions
        parse_client_hello(msg[:n], complete=False)
    der = make_cert("a.example", ["b.example"])
    for n in range(len(der)):
        with pytest.raises(ValueError):
            certificate_names(der[:n])
    rng = random.Random(7)
    for _ in range(3000):
        blob = rng.randbytes(rng.randrange(0, 300))
        parse_client_hello(blob)
        parse_client_hello(blob, complete=False)
        try:
            certificate_names(b"\x30\x82" + blob)
        except ValueError:
            pass


def test_observer_on_random_handshake_payloads(tmp_path):
    rng = random.Random(3)
    cap = Capture()
    conns = []
    for k in range(150):
        c = Conn(cap, client=("10.1.0.1", 10000 + k))
        body = rng.randbytes(rng.randrange(0, 400))
        if k % 3 == 0:
            body = client_hello_body([1, 2], [rng.randbytes(rng.randrange(0, 60))])
        msg = handshake(1, body)
        rec = bytes([0x16, 3, rng.randrange(5)]) + u16(max(4, len(msg) + rng.randrange(-8, 9))) + msg
        c.seg(0, rec)
        c.seg(1, rng.choice([b"", rng.randbytes(200), b"\x16\x03\x03" + rng.randbytes(100),
                             records(handshake(2, rng.randbytes(50))) + CCS,
                             records(handshake(11, rng.randbytes(80)))]))
        conns.append(c)
    obs = observe(cap.write(tmp_path / "fuzz.pcap"), batch_packets=17)
    infos = [obs.pop(c.key()) for c in conns]
    assert all(i is not None for i in infos)
    assert obs.stats["flows"] == 150
    assert obs._fill == 0


# ---------------------------------------------------------------------------------------------
# The kernel and its twin
# ---------------------------------------------------------------------------------------------


def twin_capture(tmp_path) -> Path:
    cap = Capture()
    tls13_flow(cap, chrome_hello(), app_packets=30)
    tls12_flow(cap, make_cert("x.example", ["y.example"]), mss=300, client=("10.0.0.6", 4444))
    tls13_flow(cap, chrome_hello(key_share=3000), mss=900, client=("10.0.0.7", 4445), vlan=9)
    c = Conn(cap, client=("10.0.0.8", 4446), isn=(2**32 - 100, 5))  # sequence numbers wrap
    c.seg(0, records(chrome_hello())[:500], flags="P")  # no ACK: server base from its data
    c.seg(0, records(chrome_hello())[500:], flags="P")
    c.seg(1, records(server_hello()) + records(handshake(14, b"")))
    c.seg(1, b"\x16\x03")  # a header cut by the segment's end
    c.seg(1, b"\x03\x00\x04" + handshake(14, b""))
    return cap.write(tmp_path / "twin.pcap")


@pytest.mark.parametrize("batch_packets", [1, 5, 64])
def test_kernel_matches_its_twin(tmp_path, batch_packets):
    path = twin_capture(tmp_path)
    keys, dirs, state = ts.new_tables(8)
    fill = 0
    ref = TlsSelectReference(max_fill=8, max_hs=4096)
    total = 0
    for batch in iter_batches([path], batch_packets=batch_packets):
        marks, hashes, rel, fill, refused = ts.select_tls_packets(
            batch.buf, batch.packets, keys, dirs, state, fill, 8, 4096)
        r_marks, r_hashes, r_rel = as_arrays(ref.select(batch.buf.tobytes(), batch.packets))
        np.testing.assert_array_equal(marks, r_marks)
        np.testing.assert_array_equal(hashes, r_hashes)
        np.testing.assert_array_equal(rel, r_rel)
        assert refused == ref.refused and fill == len(ref.flows)
        total += int(np.count_nonzero(marks & ts.SELECTED))
        done = np.unique(hashes[(marks & ts.SERVER_DONE) != 0])
        assert ts.forget_tls_flows(keys, dirs, state, done) == ref.forget(done.tolist())
        fill -= len(done)
        assert np.count_nonzero(keys) == fill
    assert total > 0


def test_kernel_table_deletion_keeps_probe_runs():
    keys, dirs, state = ts.new_tables(8)  # 16 slots
    hashes = [np.uint64(16 * k + 3) for k in range(1, 7)] + [np.uint64(4), np.uint64(5)]
    for h in hashes:
        s = ts._insert(keys, h)
        dirs[s], state[s, 0] = h, int(h)
    rng = random.Random(1)
    rng.shuffle(hashes)
    while hashes:
        gone = hashes.pop()
        assert ts.forget_tls_flows(keys, dirs, state, np.array([gone], np.uint64)) == 1
        for h in hashes:
            s = ts.find_slot(keys, h)
            assert s >= 0 and dirs[s] == h and state[s, 0] == int(h)
    assert not keys.any()


# ---------------------------------------------------------------------------------------------
# nDPI's captures: SNI and JA3 against tshark, JA4 against nDPI
# ---------------------------------------------------------------------------------------------

CORPUS_PCAPS = PEER_CORPUS / "pcap"
EXPECTED = PEER_CORPUS / "expected"
JA4_LINE = re.compile(r"TCP \[?([0-9a-f.:]+?)\]?:(\d+) <-> \[?([0-9a-f.:]+?)\]?:(\d+) .*\[JA4: (\w+)\]")


def _corpus_files(limit: int = 60) -> list[Path]:
    if not EXPECTED.is_dir():
        return []
    out = []
    for exp in sorted(EXPECTED.glob("*.out")):
        pcap = CORPUS_PCAPS / exp.name[: -len(".out")]
        if pcap.is_file() and "[JA4: " in exp.read_text(errors="replace"):
            out.append(pcap)
    return out[:limit]


@pytest.mark.corpus
@pytest.mark.slow
@pytest.mark.skipif(not CORPUS_PCAPS.is_dir(), reason=f"nDPI's captures are not at {CORPUS_PCAPS}")
@pytest.mark.skipif(shutil.which("tshark") is None, reason="needs Wireshark's tshark")
def test_sni_ja3_ja4_on_ndpi_captures():
    """SNI and JA3 as tshark computes them; JA4's hashed parts as nDPI's expected output gives
    them. nDPI's JA4 prefix differs where its implementation departs from the specification
    (first two ALPN characters, "ht" for http/1.1; d/i from the flow's host name rather than
    the SNI extension), so only the ``_b_c`` parts are compared."""
    counts = {"tshark": 0, "missing": 0, "sni": 0, "ja3": 0, "ja4": 0, "ja4_same": 0}
    for pcap in _corpus_files():
        obs = TlsObserver()
        for batch in iter_batches([pcap]):
            obs.update(batch)
        ours = {}
        for _, info in obs.flush():
            k = (halves_to_addr(*info.client[:2]), info.client[2],
                 halves_to_addr(*info.server[:2]), info.server[2])
            ours.setdefault(k, info)
        run = subprocess.run(
            ["tshark", "-r", str(pcap), "-Y", "tls.handshake.type==1 && tcp", "-T", "fields",
             "-E", "occurrence=f", "-e", "ip.src", "-e", "ipv6.src", "-e", "tcp.srcport",
             "-e", "ip.dst", "-e", "ipv6.dst", "-e", "tcp.dstport", "-e", "tls.handshake.ja3",
             "-e", "tls.handshake.extensions_server_name"],
            check=False, capture_output=True, text=True, timeout=120)
        seen = set()
        for line in run.stdout.splitlines():
            a, a6, sp, d, d6, dp, ja3, sni = (line.split("\t") + [""] * 8)[:8]
            k = (a or a6, int(sp), d or d6, int(dp))
            if k in seen:
                continue
            seen.add(k)
            counts["tshark"] += 1
            info = ours.get(k)
            if info is None:
                counts["missing"] += 1  # tunnels (the decoder keys the outer header)
                continue
            counts["sni"] += (info.sni or "") == sni.lower().rstrip(".")
            if not any("malformed" in e for e in info.errors):
                assert info.ja3 == ja3, (pcap.name, k, info.ja3_string)
                counts["ja3"] += 1
        for line in (EXPECTED / (pcap.name + ".out")).read_text(errors="replace").splitlines():
            m = JA4_LINE.search(line)
            if not m:
                continue
            a, ap, b, bp, ja4 = m.groups()
            info = ours.get((a, int(ap), b, int(bp))) or ours.get((b, int(bp), a, int(ap)))
            if info is None or info.ja4 is None:
                continue
            counts["ja4"] += 1
            counts["ja4_same"] += info.ja4.split("_")[1:] == ja4.split("_")[1:]
    assert counts["tshark"] > 200, counts
    assert counts["sni"] >= counts["tshark"] - counts["missing"] - 1, counts
    assert counts["ja3"] >= 0.98 * (counts["tshark"] - counts["missing"]), counts
    assert counts["ja4_same"] >= 0.98 * counts["ja4"] > 100, counts


# ---------------------------------------------------------------------------------------------
# Wanted-only reading: want(sni), drain()
# ---------------------------------------------------------------------------------------------


def mixed_capture(cap: Capture, only: tuple[str, ...] | None = None) -> dict[str, Conn]:
    """Flows of every kind (or those named in ``only``): hellos in one, two and three
    segments with an SNI nobody wants, a pool's TLS 1.2 flow (certificate), a hello without
    SNI, a pool's hello cut short."""
    def cut_pool(cap, client):
        c = Conn(cap, client=client)
        c.open()
        c.seg(0, records(chrome_hello(name="cut.pool.example"))[:-60])  # the rest never comes
        return c

    makers = {
        "web": lambda: tls13_flow(cap, chrome_hello(key_share=32), app_packets=40,
                                  client=("10.2.0.1", 1001)),
        "pool": lambda: tls12_flow(cap, make_cert("stratum.pool.example", ["pool.example"]),
                                   mss=500, client=("10.2.0.2", 1002)),
        "big_web": lambda: tls13_flow(cap, chrome_hello(key_share=1216 + 1520), app_packets=5,
                                      client=("10.2.0.3", 1003)),
        "no_sni": lambda: tls13_flow(cap, chrome_hello(name=None), client=("10.2.0.4", 1004)),
        "other": lambda: tls13_flow(cap, chrome_hello(name="mail.example.org"), mss=1000,
                                    client=("10.2.0.5", 1005)),
        "cut_pool": lambda: cut_pool(cap, ("10.2.0.6", 1006)),
    }
    return {k: make() for k, make in makers.items() if only is None or k in only}


def pool_or_none(sni):
    return sni is None or sni.endswith("pool.example")


WANTED = ("pool", "no_sni", "cut_pool")


@pytest.mark.parametrize("batch_packets", [1, 7, 1 << 16])
def test_unwanted_flows_are_never_parsed_and_never_reach_python_again(tmp_path, monkeypatch,
                                                                       batch_packets):
    from poolwatch.detect import tls as tls_mod

    cap = Capture()
    conns = mixed_capture(cap)
    path = cap.write(tmp_path / "mixed.pcap")
    full = observe(path, batch_packets=batch_packets)
    # Only the wanted flows, read in full: the segments they alone bring to Python.
    only = Capture()
    assert len(mixed_capture(only, WANTED)) == 3
    alone = observe(only.write(tmp_path / "only.pcap"), batch_packets=batch_packets)

    asked, parsed = [], []
    real_parse = tls_mod.parse_client_hello
    monkeypatch.setattr(tls_mod, "parse_client_hello",
                        lambda body, complete=True: parsed.append(1) or real_parse(body, complete))

    def want(sni):
        asked.append(sni)
        return pool_or_none(sni)

    obs = observe(path, batch_packets=batch_packets, want=want)
    assert sorted(asked, key=str) == sorted(  # once per flow; the cut hello is still waiting
        ["tls.browserleaks.com", "eu1.pool.example", "tls.browserleaks.com", None,
         "mail.example.org"], key=str)
    assert len(parsed) == 2  # the wanted ClientHellos only (the cut one: at flush)
    st = obs.stats
    assert st["unwanted"] == 3 and st["flows"] == 6
    assert st["client_hellos"] == 2 and st["server_hellos"] == 2  # pool and no_sni
    # The unwanted flows brought their ClientHello's segments and nothing else: one for the
    # one-segment hello, three for the post-quantum one (~3 KB), two for "other" (mss 1000).
    assert st["packets"] == alone.stats["packets"] + 1 + 3 + 2
    assert full.stats["packets"] == st["packets"] + 3  # their ServerHello segments stayed out
    for name in ("web", "big_web", "other"):
        assert obs.info(conns[name].key()) is None and obs.pop(conns[name].key()) is None
    got = dict(obs.flush())
    assert asked[5:] == ["cut.pool.example"]  # asked when given up on
    assert set(got) == {conns[k].key() for k in WANTED}
    assert obs._fill == 0 and len(obs) == 0


def test_a_cut_unwanted_hello_is_asked_about_when_given_up_on(tmp_path):
    cap = Capture()
    c = Conn(cap)
    c.open()
    c.seg(0, records(chrome_hello())[:-60])  # the rest never comes
    path = cap.write(tmp_path / "cut.pcap")
    asked = []
    obs = observe(path, want=lambda sni: asked.append(sni) or False)
    assert asked == [] and obs.info(c.key()) is not None  # still waiting: partial
    assert obs.flush() == [] and asked == ["tls.browserleaks.com"]
    assert obs.stats["unwanted"] == 1 and obs.stats["incomplete"] == 0


def test_drain_hands_over_each_result_once_in_the_order_they_finished(tmp_path):
    cap = Capture()
    conns = [tls13_flow(cap, chrome_hello(name=f"s{k}.pool.example"), app_packets=k,
                        client=("10.3.0.1", 2000 + k)) for k in range(6)]
    c = Conn(cap, client=("10.3.0.9", 2999))  # interleaved, finished last: server answers late
    c.open()
    c.send(0, records(chrome_hello(name="late.pool.example")))
    tls13_flow(cap, chrome_hello(name="www.example.com"), client=("10.3.0.8", 2998))  # unwanted
    c.seg(1, record(server_hello(tls13=True), version=0x0303) + CCS)
    cut = Conn(cap, client=("10.3.0.7", 2997))  # never finished: flush hands it over
    cut.seg(0, records(chrome_hello(name="cut.pool.example"))[:-60])
    path = cap.write(tmp_path / "drain.pcap")
    obs = TlsObserver(want=pool_or_none)
    seen: list = []
    for batch in iter_batches([path], batch_packets=9):
        obs.update(batch)
        out = obs.drain()
        assert all(obs.info(k) is None for k, _ in out)  # handed over
        seen += out
    assert obs.drain() == []
    rest = obs.flush()
    assert [k for k, _ in seen] == [x.key() for x in conns] + [c.key()]
    assert [k for k, _ in rest] == [cut.key()]
    assert [i.sni for _, i in seen + rest] == (
        [f"s{k}.pool.example" for k in range(6)] + ["late.pool.example", "cut.pool.example"])
    assert all(i.ja4 == CHROME_JA4.replace("t13d1516h2_8daaf6152771_", i.ja4[:24])
               for _, i in seen)
    # Without draining, flush hands over the same results in the same order.
    again = observe(path, batch_packets=9, want=pool_or_none).flush()
    assert [(k, i.as_tuple()) for k, i in again] == [(k, i.as_tuple()) for k, i in seen + rest]


def test_pop_and_drain_do_not_double_count(tmp_path):
    cap = Capture()
    a = tls13_flow(cap, chrome_hello(name="a.pool.example"), client=("10.4.0.1", 3001))
    b = tls13_flow(cap, chrome_hello(name="b.pool.example"), client=("10.4.0.2", 3002))
    obs = observe(cap.write(tmp_path / "pd.pcap"))
    assert obs.pop(a.key()).sni == "a.pool.example"
    assert [k for k, _ in obs.drain()] == [b.key()]
    assert obs.pop(b.key()) is None and obs.flush() == []


def _results(path: Path, batch_packets: int, want=None) -> dict:
    obs = observe(path, batch_packets=batch_packets, want=want)
    return {k: i.as_tuple() for k, i in obs.flush()}


@pytest.mark.parametrize("batch_packets", [3, 1 << 16])
def test_wanted_only_results_equal_the_full_results(tmp_path, batch_packets):
    cap = Capture()
    mixed_capture(cap)
    tls12_flow(cap, make_cert("x.example", ["y.example"]), mss=300, client=("10.0.0.6", 4444))
    path = cap.write(tmp_path / "eq.pcap")
    full = _results(path, batch_packets)
    part = _results(path, batch_packets, want=pool_or_none)
    assert len(full) == 7 and len(part) == 4  # pool, no_sni, cut_pool, eu1.pool.example
    assert part == {k: v for k, v in full.items() if pool_or_none(v[4])}
    everything = _results(path, batch_packets, want=lambda sni: True)
    assert everything == full


def test_wanted_only_results_on_random_handshakes(tmp_path):
    """The fuzzed flows of test_observer_on_random_handshake_payloads: the same results for
    the flows a filter keeps (random hellos: many without a readable SNI)."""
    rng = random.Random(11)
    cap = Capture()
    for k in range(200):
        c = Conn(cap, client=("10.1.0.1", 10000 + k))
        names = [sni_ext(rng.choice(["a.pool.example", "b.example", "", "x" * 40]))] * (k % 4 > 0)
        body = (client_hello_body([1, 2], names + [rng.randbytes(rng.randrange(0, 60))])
                if k % 3 else rng.randbytes(rng.randrange(0, 400)))
        msg = handshake(1, body)
        c.seg(0, bytes([0x16, 3, rng.randrange(5)]) + u16(max(4, len(msg) + rng.randrange(-8, 9)))
              + msg)
        c.seg(1, rng.choice([b"", records(server_hello()) + CCS, records(handshake(2, b"x"))]))
    path = cap.write(tmp_path / "fz.pcap")
    for bp in (5, 1 << 16):
        full = _results(path, bp)
        part = _results(path, bp, want=pool_or_none)
        assert part == {k: v for k, v in full.items() if pool_or_none(v[4])}
        assert 0 < len(part) < len(full)


# ---------------------------------------------------------------------------------------------
# The cheap SNI walk and the compiled certificate walk against the full parsers
# ---------------------------------------------------------------------------------------------


def _span_sni(body: bytes) -> str | None | bool:
    """The kernel's SNI of a ClientHello body wrapped in one record (False: not whole)."""
    payload = record(handshake(1, body))
    if len(payload) > 5 + 0xFFFF:
        return False
    state, off, n = ts.client_hello_sni_span(np.frombuffer(payload, np.uint8), 0, len(payload))
    if state == ts.SNI_NOT_WHOLE:
        return False
    if state == ts.SNI_NONE:
        return None
    return payload[off : off + n].decode("ascii").lower().rstrip(".") or None


def _hello_variants(rng: random.Random):
    base = [chrome_hello()[4:], chrome_hello(name=None)[4:], chrome_hello(name="A.Pool.Example.")[4:],
            handshake(1, client_hello_body([0xC02F], [alpn_ext(b"h2"), sni_ext("x.example")]))[4:],
            handshake(1, client_hello_body([0xC02F], [sni_ext("first.example"),
                                                       sni_ext("second.example")]))[4:],
            handshake(1, client_hello_body([0xC02F], [sni_ext("ün.example")]))[4:],
            handshake(1, client_hello_body([0xC02F], [sni_ext("...")]))[4:]]
    for body in base:
        yield body
        for n in range(0, len(body), 7):
            yield body[:n]
        for _ in range(300):
            m = bytearray(body)
            for _ in range(rng.randrange(1, 4)):
                m[rng.randrange(len(m))] = rng.randrange(256)
            yield bytes(m)
    for _ in range(2000):
        yield rng.randbytes(rng.randrange(0, 200))


def test_sni_walk_agrees_with_the_full_parser():
    rng = random.Random(5)
    counts = {"found": 0, "none": 0}
    for body in _hello_variants(rng):
        for complete in (True, False):
            want = parse_client_hello(body, complete).sni
            assert client_hello_sni(body, complete) == want, (body.hex(), complete)
        want = parse_client_hello(body).sni
        assert _span_sni(body) == want, body.hex()
        counts["found" if want else "none"] += 1
    assert counts["found"] > 500 and counts["none"] > 1000
    assert client_hello_sni(handshake(1, client_hello_body(
        [1], [sni_ext("first.example"), sni_ext("second.example")]))[4:]) == "first.example"


def test_compiled_certificate_walk_agrees_with_the_python_walker():
    rng = random.Random(9)

    def both(der):
        out = []
        for f in (certificate_names, certificate_names_compiled):
            try:
                out.append(f(der))
            except ValueError:
                out.append("error")
        return out

    ders = [make_cert("a.Example", ["b.example", "c.example."]), make_cert("ü.example", []),
            make_cert("x.example", ["y.example"] * 3)]
    for der in ders:
        assert both(der)[0] == both(der)[1] != "error"
        for n in range(len(der)):
            assert both(der[:n]) == ["error", "error"]
        for _ in range(1500):
            m = bytearray(der)
            for _ in range(rng.randrange(1, 4)):
                m[rng.randrange(len(m))] = rng.randrange(256)
            a, b = both(bytes(m))
            assert a == b, bytes(m).hex()
    for _ in range(2000):
        a, b = both(b"\x30\x82" + rng.randbytes(rng.randrange(0, 300)))
        assert a == b


@pytest.mark.parametrize("batch_packets", [1, 5, 64])
def test_kernel_passes_apart_with_flows_forgotten_between_them(tmp_path, batch_packets):
    """open_tls_flows, forget every other new flow, mark_tls_packets: as the twin does."""
    path = twin_capture(tmp_path)
    keys, dirs, state = ts.new_tables(8)
    fill = 0
    ref = TlsSelectReference(max_fill=8, max_hs=4096)
    for batch in iter_batches([path], batch_packets=batch_packets):
        marks, hashes, fill, _ = ts.open_tls_flows(batch.buf, batch.packets, keys, dirs,
                                                   state, fill, 8, 4096)
        r_marks, r_hashes = ref.open(batch.buf.tobytes(), batch.packets)
        np.testing.assert_array_equal(marks, np.array(r_marks, np.uint8))
        np.testing.assert_array_equal(hashes, np.array(r_hashes, np.uint64))
        drop = np.unique(hashes[(marks & ts.NEW_FLOW) != 0])[::2]
        assert ts.forget_tls_flows(keys, dirs, state, drop) == ref.forget(drop.tolist())
        fill -= len(drop)
        rel = ts.mark_tls_packets(batch.buf, batch.packets, keys, dirs, state, marks, hashes)
        r_rel = ref.mark(batch.buf.tobytes(), batch.packets, r_marks, r_hashes)
        np.testing.assert_array_equal(marks, np.array(r_marks, np.uint8))
        np.testing.assert_array_equal(hashes, np.array(r_hashes, np.uint64))
        np.testing.assert_array_equal(rel, np.array(r_rel, np.int64))
        for h in drop.tolist():  # nothing of a forgotten flow is marked
            assert not marks[(hashes == h)].any()


@pytest.mark.corpus
@pytest.mark.slow
@pytest.mark.skipif(not CORPUS_PCAPS.is_dir(), reason=f"nDPI's captures are not at {CORPUS_PCAPS}")
def test_wanted_only_results_equal_the_full_results_on_ndpi_captures():
    """Every capture with TLS, three filters: the flows kept read exactly as without one (the
    SNI walk names what the full parser names, on every hello of the corpus)."""
    filters = [lambda s: s is None or "google" in s, lambda s: s is not None and s.endswith(".com"),
               lambda s: s is None]
    kept = 0
    for pcap in _corpus_files(10**6):
        full = _results(pcap, 1 << 16)
        for f in filters:
            part = _results(pcap, 1 << 16, want=f)
            assert part == {k: v for k, v in full.items() if f(v[4])}, pcap.name
            kept += len(part)
    assert kept > 500
