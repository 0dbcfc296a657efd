#!/usr/bin/env python3
"""Regenerate poolwatch's pool-contact sample captures (pcaps/contacts/), byte for byte.

Usage::

    python pcaps/make_contact_samples.py [OUTDIR]

Encrypted mining (``stratum+ssl``) and its look-alikes, built with the helpers of
``make_samples.py`` and ``make_stratum_samples.py`` (fixed seeds, fixed times, documentation
addresses only; nothing is sent anywhere). Each ``<name>.pcap`` gets ``<name>.expected.json``
with the flow oracle and a ``"contacts"`` list: what a correct detector must report, from
what the generator built:

* ``src_ip``/``src_port`` (the miner), ``dest_ip``/``dest_port`` (the pool);
* ``via``: the kinds of evidence the capture holds for it (a detector may find more);
* ``pool``, ``pool_host``, ``tls``, ``sni``.

A capture whose contacts list is empty holds only look-alikes (a pool's web site over HTTPS).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import make_samples as ms  # noqa: E402
import make_stratum_samples as mss  # noqa: E402
from scapy.layers.tls.all import (  # noqa: E402
    TLS,
    ProtocolName,
    ServerName,
    TLS_Ext_ALPN,
    TLS_Ext_ServerName,
    TLS_Ext_SupportedGroups,
    TLS_Ext_SupportedVersion_CH,
    TLS_Ext_SupportedVersion_SH,
    TLSClientHello,
    TLSServerHello,
)

NS = ms.NS
BASE_NS = ms.START_NS + 6 * 3600 * NS  # 2026-03-02T14:00:00Z


def start(k: int) -> int:
    return BASE_NS + k * 600 * NS


def client_hello(rng, sni: str | None, alpn: list[bytes] | None = None) -> bytes:
    ext = []
    if sni:
        ext.append(TLS_Ext_ServerName(servernames=[ServerName(servername=sni.encode())]))
    ext.append(TLS_Ext_SupportedGroups(groups=[0x001D, 0x0017]))
    if alpn:
        ext.append(TLS_Ext_ALPN(protocols=[ProtocolName(protocol=p) for p in alpn]))
    ext.append(TLS_Ext_SupportedVersion_CH(versions=[0x0304, 0x0303]))
    hello = TLSClientHello(version=0x0303, gmt_unix_time=rng.getrandbits(32),
                           random_bytes=mss.rbytes(rng, 28), sid=mss.rbytes(rng, 32),
                           ciphers=[0x1301, 0x1302, 0x1303, 0xC02F, 0xC030], comp=[0], ext=ext)
    return bytes(TLS(version=0x0301, msg=[hello]))


def server_hello(rng) -> bytes:
    hello = TLSServerHello(version=0x0303, gmt_unix_time=rng.getrandbits(32),
                           random_bytes=mss.rbytes(rng, 28), sid=mss.rbytes(rng, 32),
                           cipher=0x1301, ext=[TLS_Ext_SupportedVersion_SH(version=0x0304)])
    ccs = b"\x14\x03\x03\x00\x01\x01"
    return bytes(TLS(version=0x0303, msg=[hello])) + ccs + app_data(rng, 2400)


def app_data(rng, n: int) -> bytes:
    """One TLS 1.3 application-data record of n encrypted bytes (random: nothing to read)."""
    return b"\x17\x03\x03" + n.to_bytes(2, "big") + mss.rbytes(rng, n)


def say(cap, c, side: bool, *datas: bytes) -> None:
    cap.tick(1, 40)
    c.write(side, *datas)


def gen_tls_pool_by_dns_and_sni():
    """A miner resolves bch.2miners.com, then mines over TLS to its listed TLS port."""
    cap = ms.Capture("tls_pool_by_dns_and_sni.pcap", seed=5101, start_ns=start(0))
    rng = cap.rng
    link = ms.EthLink("02:00:5e:51:01:0a", mss.MAC_GW)
    host, pool_ip, port = "bch.2miners.com", "203.0.113.60", 17373
    ms.dns_pair(cap, link, "10.2.1.10", 53001, "10.2.0.53", host, pool_ip, txid=0x5101)
    cap.tick(5, 30)
    c = mss.Conn(cap, link, "10.2.1.10", 50110, pool_ip, port)
    cap.tick(1, 10)
    c.open()
    say(cap, c, True, client_hello(rng, host))
    say(cap, c, False, server_hello(rng))
    say(cap, c, True, b"\x14\x03\x03\x00\x01\x01" + app_data(rng, 90))  # Finished
    say(cap, c, True, app_data(rng, 180))  # subscribe + authorize
    say(cap, c, False, app_data(rng, 610))  # result, set_difficulty, first job
    t = cap.t
    for k in range(16):  # ~8 minutes: shares every ~30 s, a job every ~60 s
        cap.t = max(cap.t + 1000, t + int((k + 1) * 30 * NS + rng.randint(-9, 9) * NS))
        say(cap, c, True, app_data(rng, 171 + rng.randint(0, 6)))
        cap.tick(30, 90)
        say(cap, c, False, app_data(rng, 38))  # {"id":..,"result":true}
        if k % 2:
            cap.tick(100, 4000)
            say(cap, c, False, app_data(rng, 540 + rng.randint(0, 40)))
    cap.tick(100, 900)
    c.close()
    contacts = [{"src_ip": "10.2.1.10", "src_port": 50110, "dest_ip": pool_ip, "dest_port": port,
                 "via": ["dns", "sni"], "pool": "2Miners", "pool_host": host, "tls": True,
                 "sni": host}]
    return cap, contacts


def gen_pool_website_https():
    """A person opens the pool's web site: same names, web port. Not a miner."""
    cap = ms.Capture("pool_website_https.pcap", seed=5102, start_ns=start(1))
    rng = cap.rng
    link = ms.EthLink("02:00:5e:51:02:0a", mss.MAC_GW)
    host, web_ip = "2miners.com", "203.0.113.61"
    ms.dns_pair(cap, link, "10.2.2.10", 53002, "10.2.0.53", host, web_ip, txid=0x5102)
    cap.tick(5, 30)
    c = mss.Conn(cap, link, "10.2.2.10", 50220, web_ip, 443)
    cap.tick(1, 10)
    c.open()
    say(cap, c, True, client_hello(rng, host, [b"h2", b"http/1.1"]))
    say(cap, c, False, server_hello(rng))
    for _ in range(6):
        say(cap, c, True, app_data(rng, 400 + rng.randint(0, 300)))
        say(cap, c, False, app_data(rng, 1200), app_data(rng, 1200), app_data(rng, 900))
        cap.tick(300, 3000)
    cap.tick(100, 900)
    c.close()
    return cap, []


SCENARIOS = [gen_tls_pool_by_dns_and_sni, gen_pool_website_https]


def main(argv: list[str]) -> int:
    outdir = Path(argv[1]) if len(argv) > 1 else HERE / "contacts"
    outdir.mkdir(parents=True, exist_ok=True)
    for gen in SCENARIOS:
        cap, contacts = gen()
        ms.write_pcap(outdir / cap.name, ms.LINKTYPE_ETHERNET, cap.pkts)
        exp = ms.expected(cap.name, [ms.LINKTYPE_ETHERNET], cap.pkts)
        exp["sessions"] = []
        exp["contacts"] = contacts
        stem = cap.name.rsplit(".", 1)[0]
        (outdir / f"{stem}.expected.json").write_text(json.dumps(exp, indent=1) + "\n")
        print(f"{cap.name}: {len(cap.pkts)} packets, {(outdir / cap.name).stat().st_size} bytes,"
              f" {len(contacts)} contact(s)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
