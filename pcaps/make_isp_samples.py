#!/usr/bin/env python3
"""Regenerate the small synthetic ISP (pcaps/isp/), byte for byte, for the linking tests.

Usage::

    python pcaps/make_isp_samples.py [OUTDIR]

OUTDIR defaults to ``isp/`` next to this script. One day, 2026-03-02 (UTC), at a made-up ISP:

* the ISP's records, in the formats ``poolwatch.link`` reads (docs/inputs/*.md):
  ``registry.csv``, ``static.csv``, ``radius/detail-20260302`` (FreeRADIUS detail),
  ``dhcpd.leases`` (ISC), ``kea-leases4.csv`` (Kea memfile), ``cgnat.csv`` (poolwatch CGNAT
  CSV), ``junos-nat.log`` (Junos port-block syslog) and ``meters.csv`` (kWh per period);
* three captures of what the ISP's edge saw that day: plaintext Stratum v1 (sha256d) sessions
  from subscribers' addresses to pools in documentation ranges (``edge_access``: RADIUS,
  static, DHCP and Kea customers and one address nobody holds; ``edge_cgnat``: the outside of
  the CGNAT, public address + translated port; ``edge_dc``: two data-centre miners at once);
* ``expected.json``: the oracle. For every session, the subscriber and entity it must link to
  and the chain of records that says so (CGNAT block, assignment, registry row, each with its
  ``file:line``), or null and why; per entity, the sessions, workers, data-centre flag, true
  hashrate and metered energy.

Everything is recorded by the generator from what it wrote, never by running poolwatch. The
packets come from the project's own crafting code (``make_samples.py``: captures, Ethernet,
pcap writer, DNS; ``make_stratum_samples.py``: TCP with correct seq/acks, the session oracle,
share timing), imported as modules. Fixed seeds and timestamps: two runs give identical
bytes. Only documentation, test and private addresses appear (192.0.2.0/24,
198.51.100.0/24, 203.0.113.0/24, 2001:db8::/32, 10.0.0.0/8, 100.64.0.0/10).
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import heapq
import ipaddress
import itertools
import json
import math
import random
import sys
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import make_samples as ms  # noqa: E402  packets, links, pcap writer, DNS
import make_stratum_samples as mss  # noqa: E402  Conn, Sess, share timing, notify params

NS = ms.NS
MS = ms.MS
UTC = _dt.timezone.utc
DAY = _dt.datetime(2026, 3, 2, tzinfo=UTC)
DAY_S = int(DAY.timestamp())  # 2026-03-02T00:00:00Z
SHARE_SECONDS = 20.0  # difficulty is picked so that a share comes about this often
TOLERANCE = mss.TOLERANCE


def at(hms: str, day: int = 0) -> int:
    """'HH:MM:SS' on 2026-03-02 (+day) → epoch seconds."""
    h, m, s = (int(x) for x in hms.split(":"))
    return DAY_S + day * 86400 + h * 3600 + m * 60 + s


def iso(ts: float) -> str:
    """Epoch seconds → ISO 8601 UTC with Z (microseconds when not whole)."""
    moment = _dt.datetime.fromtimestamp(ts, UTC)
    text = moment.isoformat(timespec="microseconds" if ts != int(ts) else "seconds")
    return text.replace("+00:00", "Z")


def iso_ns(ns: int) -> str:
    sec, frac = divmod(ns, NS)
    return iso(sec).replace("Z", f".{frac // 1000:06d}Z")


# ---------------------------------------------------------------------------
# Who is who
# ---------------------------------------------------------------------------
REGISTRY_HEADER = ["subscriber_id", "entity_id", "entity_name", "entity_type",
                   "registration_number", "address", "region", "latitude", "longitude",
                   "cpe_mac", "username", "meter_id"]

# subscriber_id, entity_id, entity_name, entity_type (as the ISP's CRM spells it),
# registration_number, address, region, latitude, longitude, cpe_mac, username, meter_id
REGISTRY = [
    ("S-1001", "E-100", "Harbour Compute Ltd", "data centre", "91130230MA0HBR4C1X",
     "Hall B, 88 Harbour Road, Caofeidian, Tangshan", "Hebei", "39.2185", "118.4608", "", "",
     "M-1001"),
    ("S-1002", "E-100", "HARBOUR COMPUTE LTD", "IDC", "",
     "Hall C, 88 Harbour Road, Caofeidian, Tangshan", "Hebei", "", "", "", "", ""),
    ("S-1101", "E-110", "Northgate Logistics Co", "enterprise", "91130100MA0NGL2T7Q",
     "2 Depot Lane, Shijiazhuang", "Hebei", "38.0428", "114.5149", "", "", ""),
    ("S-2001", "E-200", "北京星辰网吧", "网吧", "92110108MA0XC0915B",
     "北京市海淀区中关村大街1号", "北京", "39.9834", "116.3162", "", "xingchen", ""),
    ("S-3001", "E-300", "Li Wei", "home", "", "12 Elm Street, Baoding", "Hebei", "", "", "",
     "liwei88", ""),
    ("S-4001", "E-400", "Hillside Primary School", "school", "", "3 Hill Lane, Chengde",
     "Hebei", "40.9515", "117.9634", "00-1A-2B-3C-4D-61", "", ""),
    ("S-5001", "E-500", "河北恒达机械制造有限公司", "企业", "91130600MA07HD5K8N",
     "河北省保定市莲池区工业路88号", "河北", "38.8671", "115.4845", "001a.2b3c.4d70", "",
     "M-5001"),
    ("S-6001", "E-600", "张敏", "个人", "", "河北省唐山市路北区建设路15号3单元502", "河北", "", "",
     "", "zhangmin", ""),
    ("S-6101", "E-610", "Chen Jie", "residential", "", "Flat 7, 40 River Road, Tangshan",
     "Hebei", "", "", "", "chenjie", ""),
    ("S-6201", "E-620", "Wang Fang", "household", "", "9 Willow Court, Tangshan", "Hebei", "",
     "", "", "wangfang", ""),
    ("S-6301", "E-630", "Liu Yang", "home", "", "21 Station Street, Tangshan", "Hebei", "", "",
     "", "liuyang", ""),
    ("S-7001", "E-700", "Oak Street Studio", "business", "91130100MA0OSS3D2K",
     "5 Oak Street, Shijiazhuang", "Hebei", "", "", "", "oakstudio", ""),
    ("S-9001", "E-900", "Greenfield Dental Clinic", "SME", "", "77 Market Road, Baoding",
     "Hebei", "", "", "", "greenfield", ""),
]
CANON_TYPE = {"data centre": "datacentre", "IDC": "datacentre", "enterprise": "enterprise",
              "网吧": "internet_cafe", "home": "residential", "school": "education",
              "企业": "enterprise", "个人": "residential", "residential": "residential",
              "household": "residential", "business": "enterprise", "SME": "enterprise"}

STATIC = [  # network, subscriber, valid_from, valid_to, circuit
    ("198.51.100.64/29", "S-1001", "2025-06-01T00:00:00+08:00", "", "HC-HALLB-RACK4-10G"),
    ("198.51.100.72/29", "S-1002", "2025-06-01T00:00:00+08:00", "2026-01-31T23:59:59+08:00",
     "HC-HALLC-RACK5-10G (ceased)"),
    ("2001:db8:4400::/48", "S-1101", "2024-09-01", "never", "NGL-FIBRE-1"),
]

# RADIUS sessions: user, NAS, Acct-Session-Id, Framed-IP, IPv6 prefixes, calling MAC,
# start, stop (None: the Stop was lost), terminate cause
NAS_ACCESS, NAS_CGN = "192.0.2.1", "192.0.2.2"
INTERIM = 7200


@dataclass
class Radius:
    user: str
    nas: str
    sid: str
    ip: str
    start: int
    stop: int | None
    calling: str
    v6: tuple[str, str] | None = None  # (Framed-IPv6-Prefix, Delegated-IPv6-Prefix)
    cause: str = "User-Request"
    last_interim: int | None = None  # for a lost Stop: the last record written
    line: int = 0  # line of the Start block in the detail file

    def records(self) -> list[tuple[int, str]]:
        out = [(self.start, "Start")]
        t = self.start + INTERIM
        end = self.stop if self.stop is not None else self.last_interim
        while t < end or (self.stop is None and t <= end):
            out.append((t, "Interim-Update"))
            t += INTERIM
        if self.stop is not None:
            out.append((self.stop, "Stop"))
        return out


RADIUS = [
    Radius("xingchen", NAS_ACCESS, "0b1e00a1", "192.0.2.50", at("00:00:00"), at("12:00:00"),
           "00-1a-2b-3c-4d-60", cause="Session-Timeout"),
    Radius("oakstudio", NAS_ACCESS, "0b1e00a7", "192.0.2.77", at("05:00:00"), at("23:00:00"),
           "00-1a-2b-3c-4d-80",
           v6=("2001:db8:56ff:12::/64", "2001:db8:5600:1200::/56")),
    Radius("chenjie", NAS_CGN, "7c0200f3", "100.64.1.21", at("06:00:10"), None,
           "00-1a-2b-3c-4d-91", last_interim=at("10:00:10")),
    Radius("zhangmin", NAS_CGN, "7c0200f5", "100.64.1.20", at("06:04:51"), at("21:00:00"),
           "00-1a-2b-3c-4d-90"),
    Radius("wangfang", NAS_CGN, "7c020101", "100.64.1.22", at("06:50:31"), at("11:00:55"),
           "00-1a-2b-3c-4d-92", cause="Lost-Carrier"),
    Radius("greenfield", NAS_ACCESS, "0b1e00b2", "192.0.2.60", at("08:00:00"), at("18:00:00"),
           "00-1a-2b-3c-4d-a0"),
    Radius("liuyang", NAS_CGN, "7c020109", "100.64.1.23", at("11:04:30"), at("22:10:00"),
           "00-1a-2b-3c-4d-93"),
    Radius("liwei88", NAS_ACCESS, "0b1e00c4", "192.0.2.50", at("12:00:05"), at("23:50:00"),
           "00-1a-2b-3c-4d-84"),
]

# CGNAT CSV rows: public, low, high, private, allocated, released (as written)
CGNAT_CSV = [
    ("198.51.100.20", 3072, 4095, "100.64.1.21", "2026-03-02 14:00:12+08:00",
     "2026-03-02 19:58:40+08:00"),
    ("198.51.100.20", 2048, 3071, "100.64.1.20", "2026-03-02T06:05:02Z",
     "2026-03-02T21:00:03Z"),
    ("198.51.100.20", 4096, 5119, "100.64.1.40", "2026-03-02T07:12:44Z", ""),
]
# Junos port blocks: public, low, high, private, ALLOC, RELEASE
JUNOS = [
    ("198.51.100.21", 1024, 1535, "100.64.1.22", at("06:50:40"), at("11:01:02")),
    ("198.51.100.21", 1024, 1535, "100.64.1.23", at("11:04:41"), at("22:10:03")),
]
JUNOS_INTERIM = 7200

# ISC leases (address, MAC, starts, ends, state, hostname); Kea rows
ISC = [
    ("10.20.0.37", "00:1a:2b:3c:99:01", at("19:00:04", -1), at("07:00:04"), "free", None),
    ("10.20.0.38", "00:1a:2b:3c:4d:62", at("07:12:40"), at("19:12:40"), "active", "hs-printer"),
    ("10.20.0.37", "00:1a:2b:3c:4d:61", at("07:30:12"), at("19:30:12"), "active", "hillside-gw"),
]
KEA_HEADER = ("address,hwaddr,client_id,valid_lifetime,expire,subnet_id,fqdn_fwd,fqdn_rev,"
              "hostname,state,user_context,pool_id")
KEA = [  # address, hwaddr, lifetime, start (client's last transaction), hostname
    ("198.51.100.131", "00:1a:2b:3c:4d:71", 43200, at("22:10:31", -1), "hengda-nvr"),
    ("198.51.100.130", "00:1a:2b:3c:4d:70", 43200, at("06:00:00"), "hengda-gw&#x2c plant 2"),
    ("198.51.100.130", "00:1a:2b:3c:4d:70", 43200, at("12:00:00"), "hengda-gw&#x2c plant 2"),
]

METER_FROM, METER_TO = "2026-03-02T00:00:00Z", "2026-03-09T00:00:00Z"
METER_HOURS = 7 * 24
METERS = [("M-1001", "E-100", 1089.4), ("M-5001", "E-500", 48760.0)]

POOL_A, POOL_B, POOL_C, POOL_D = "203.0.113.11", "203.0.113.45", "203.0.113.77", "203.0.113.31"
POOL_V6 = "2001:db8:f00d::45"
RESOLVER = "192.0.2.53"


# ---------------------------------------------------------------------------
# Mining sessions
# ---------------------------------------------------------------------------
@dataclass
class Spec:
    key: str
    capture: str
    start: str  # HH:MM:SS(.ffffff) of the SYN
    src: str
    sport: int
    dst: str
    agent: str
    account: str | None  # pool account (None: the login is wallet.worker)
    worker: str
    hashrate: float
    shares: int
    device: str  # what the generator pretends the miner is
    power_w: float  # that device's nameplate power
    subscriber: str | None
    chain: list[str]  # how the link goes: cgnat-csv/cgnat-junos, radius/static/dhcp-isc/dhcp-kea
    configure: bool = False
    dport: int = 3333
    dns_name: str | None = None
    why_unlinked: str | None = None
    seed: int = 0


CAP_ACCESS = "edge_access_20260302.pcap"
CAP_CGNAT = "edge_cgnat_20260302.pcap"
CAP_DC = "edge_dc_20260302.pcap"

SPECS = [
    Spec("kea-enterprise", CAP_ACCESS, "06:20:03.118204", "198.51.100.130", 50412, POOL_B,
         "whatsminer/v1.0", "hengda", "m30s-01", 88e12, 12, "Whatsminer M30S", 3344,
         "S-5001", ["dhcp-kea"], configure=True, seed=1),
    Spec("isc-school", CAP_ACCESS, "07:50:41.500032", "10.20.0.37", 38770, POOL_C,
         "bitaxe/BM1370/v2.14.2", None, "bitaxe-lab", 1.2e12, 12, "Bitaxe Gamma", 18,
         "S-4001", ["dhcp-isc"], seed=2),
    Spec("radius-cafe", CAP_ACCESS, "10:00:12.250117", "192.0.2.50", 51622, POOL_A,
         "cgminer/4.11.1", None, "cafe-s9", 13.5e12, 12, "Antminer S9", 1323,
         "S-2001", ["radius"], seed=3),
    Spec("radius-v6-pd", CAP_ACCESS, "11:15:30.004411", "2001:db8:5600:1207::1a", 43390,
         POOL_V6, "bosminer/23.08", "oakstudio", "s19-01", 95e12, 12, "Antminer S19", 3250,
         "S-7001", ["radius"], configure=True, seed=4),
    Spec("static-v6", CAP_ACCESS, "13:05:07.731009", "2001:db8:4400:10::25", 41152, POOL_V6,
         "cgminer/4.11.1", "northgate", "backroom", 50e12, 12, "Antminer S17 Pro", 1975,
         "S-1101", ["static"], configure=True, seed=5),
    Spec("radius-home", CAP_ACCESS, "14:00:02.090450", "192.0.2.50", 49180, POOL_D,
         "bmminer/2.0.0", "liwei88", "s19jpro", 96e12, 12, "Antminer S19j Pro (96T)", 2832,
         "S-3001", ["radius"], configure=True, dns_name="ss.antpool.com", seed=6),
    Spec("unattributed", CAP_ACCESS, "16:30:44.615503", "192.0.2.201", 55901, POOL_A,
         "cgminer/4.11.1", None, "rig7", 40e12, 12, "Antminer T17", 2200,
         None, [], seed=7,
         why_unlinked=("192.0.2.201 is in no static assignment, RADIUS session, DHCP lease "
                       "or CGNAT public pool on 2026-03-02: no record covers it")),
    Spec("cgnat-csv-a", CAP_CGNAT, "07:40:09.330871", "198.51.100.20", 2311, POOL_A,
         "NerdQAxe++/BM1370/v1.0", None, "nerdqaxe", 4.8e12, 12, "NerdQAxe++", 76,
         "S-6001", ["cgnat-csv", "radius"], seed=8),
    Spec("cgnat-csv-b", CAP_CGNAT, "09:10:18.808213", "198.51.100.20", 3517, POOL_B,
         "cgminer/4.11.1", None, "s9", 13.5e12, 12, "Antminer S9", 1323,
         "S-6101", ["cgnat-csv", "radius"], seed=9),
    Spec("cgnat-junos-a", CAP_CGNAT, "09:20:55.120094", "198.51.100.21", 1187, POOL_A,
         "whatsminer/v1.0", "wangfang", "m20s", 68e12, 12, "Whatsminer M20S", 3360,
         "S-6201", ["cgnat-junos", "radius"], configure=True, seed=10),
    Spec("cgnat-junos-b", CAP_CGNAT, "15:40:26.447760", "198.51.100.21", 1302, POOL_B,
         "cgminer/4.11.1", "liuyang", "s17", 56e12, 12, "Antminer S17", 2520,
         "S-6301", ["cgnat-junos", "radius"], configure=True, seed=11),
    Spec("dc-a", CAP_DC, "08:30:00.050260", "198.51.100.66", 45002, POOL_B,
         "bmminer/2.0.0", "harbourdc", "r4a01", 110e12, 16, "Antminer S19 Pro", 3250,
         "S-1001", ["static"], configure=True, seed=12),
    Spec("dc-b", CAP_DC, "08:31:10.410932", "198.51.100.67", 45118, POOL_B,
         "bmminer/2.0.0", "harbourdc", "r4a02", 96e12, 11, "Antminer S19j Pro (96T)", 2832,
         "S-1001", ["static"], configure=True, seed=13),
]


def difficulty_for(hashrate: float) -> int:
    """A power of two that gives a share every ~SHARE_SECONDS at this hashrate."""
    return 2 ** round(math.log2(hashrate * SHARE_SECONDS * 65535 / 2**48))


class Loop:
    """Events (time, callable) in time order; an event may schedule more. The capture's
    clock never goes backwards (an event due while another ran starts right after it)."""

    def __init__(self, cap: ms.Capture):
        self.cap, self.heap, self.n = cap, [], 0

    def at(self, t_ns: float, fn) -> None:
        heapq.heappush(self.heap, (int(t_ns) // 1000 * 1000, self.n, fn))
        self.n += 1

    def run(self) -> None:
        while self.heap:
            t, _, fn = heapq.heappop(self.heap)
            self.cap.t = max(self.cap.t + 30_000, t)
            fn()


class Miner:
    """One plaintext Stratum v1 sha256d session, as cgminer-style miners speak it
    (gen_cgminer_sha256d of make_stratum_samples.py, simplified): optional mining.configure,
    subscribe, authorize, set_difficulty + first job, shares at a fixed difficulty timed so
    that the work / window equals the chosen hashrate, a job every ~60 s, FIN close."""

    def __init__(self, cap: ms.Capture, link: ms.Link, spec: Spec, loop: Loop):
        self.cap, self.spec, self.loop = cap, spec, loop
        self.rng = random.Random(9000 + spec.seed)  # the session's own content
        rng = self.rng
        self.wallet = None
        if spec.account is None:
            self.wallet = mss.bech32_segwit("bc", mss.rbytes(rng, 20))
            self.login = f"{self.wallet}.{spec.worker}"
        else:
            self.login = f"{spec.account}.{spec.worker}"
        self.c = mss.Conn(cap, link, spec.src, spec.sport, spec.dst, spec.dport,
                          ttl_c=63, ttl_s=52)
        self.s = mss.Sess("stratum-v1", self.c, spec.hashrate, mss.F_SHA256,
                          "stratum-difficulty", agent=spec.agent, login=self.login,
                          worker=spec.worker, wallet=self.wallet, coin="BTC",
                          algorithm="sha256d")
        self.d = difficulty_for(spec.hashrate)
        self.ids = itertools.count(1)
        self.jobs: list[mss.Job] = []
        self.syn_ns = self.last_ns = 0
        self.rtt = rng.uniform(18, 45)

    def height(self) -> int:
        return 938_412 + (self.cap.t // NS - at("09:00:00")) // 600

    def new_job(self, clean: bool) -> bytes:
        jid = f"{0x61a0 + 17 * self.spec.seed + len(self.jobs):x}"
        ntime = self.cap.t // NS
        self.jobs.append(mss.Job(jid, self.d, ntime))
        return mss.jc({"id": None, "method": "mining.notify",
                       "params": mss.btc_notify_params(self.rng, jid, self.height(), ntime,
                                                       clean, "1701f303", b"/isp-sample/",
                                                       3)})

    def rtt_tick(self) -> None:
        self.cap.tick(self.rtt * 0.95, self.rtt * 1.05)

    def begin(self) -> None:
        cap, c, s, rng, spec = self.cap, self.c, self.s, self.rng, self.spec
        self.syn_ns = cap.t
        c.open(rtt_ms=self.rtt)
        cap.tick(0.3, 1)
        if spec.configure:
            cid = next(self.ids)
            c.write(True, mss.js({"id": cid, "method": "mining.configure",
                                  "params": [["version-rolling"],
                                             {"version-rolling.mask": "1fffe000",
                                              "version-rolling.min-bit-count": 2}]}),
                    ack=False)
            self.rtt_tick()
            c.write(False, mss.jc({"id": cid, "result": {"version-rolling": True,
                                                         "version-rolling.mask": "1fffe000"},
                                   "error": None}), ack=False)
            cap.tick(0.2, 0.8)
        sub = next(self.ids)
        c.write(True, mss.js({"id": sub, "method": "mining.subscribe", "params": [spec.agent]}),
                ack=False)
        self.rtt_tick()
        en1, sub_id = mss.rhex(rng, 4), mss.rhex(rng, 4)
        c.write(False, mss.jc({"id": sub, "result": [[["mining.set_difficulty", sub_id],
                                                      ["mining.notify", sub_id]], en1, 4],
                               "error": None}), ack=False)
        cap.tick(0.2, 0.8)
        auth = next(self.ids)
        c.write(True, mss.js({"id": auth, "method": "mining.authorize",
                              "params": [self.login, "x"]}), ack=False)
        self.rtt_tick()
        m_diff, m_job, _ = c.write(
            False, mss.jc({"id": None, "method": "mining.set_difficulty", "params": [self.d]}),
            self.new_job(True), mss.jc({"id": auth, "result": True, "error": None}))
        s.diff(m_diff, self.d)
        s.job(m_job)
        works = [mss.work_sha256(self.d)] * spec.shares
        times = mss.schedule(rng, m_job.ts, works, spec.hashrate)
        for t in times:
            self.loop.at(t, self.share)
        for t in mss.every(m_job.ts, times[-1], 60, rng, 0.15):
            self.loop.at(t, self.periodic_job)
        self.loop.at(times[-1] + rng.uniform(1.5, 4.0) * NS, self.close)

    def share(self) -> None:
        cap, c, rng, job = self.cap, self.c, self.rng, self.jobs[-1]
        sid = next(self.ids)
        params = [self.login, job.job_id, f"{rng.getrandbits(32):08x}", f"{job.ntime:08x}",
                  f"{rng.getrandbits(32):08x}"]
        if self.spec.configure:
            params.append(f"{rng.getrandbits(32) & 0x1FFFE000:08x}")
        m = c.write(True, mss.js({"params": params, "id": sid, "method": "mining.submit"}),
                    ack=False)[0]
        sh = self.s.share(m, mss.work_sha256(job.diff), self.spec.worker)
        self.rtt_tick()
        c.write(False, mss.jc({"id": sid, "result": True, "error": None}))
        sh["result"] = "accepted"

    def periodic_job(self) -> None:
        self.c.write(False, self.new_job(False))

    def close(self) -> None:
        self.c.close(True)
        self.last_ns = self.cap.t


def build_captures() -> tuple[list[ms.Capture], dict[str, Miner]]:
    caps: list[ms.Capture] = []
    miners: dict[str, Miner] = {}
    plans = [  # capture, seed, edge router MAC (local side), upstream MAC
        (CAP_ACCESS, 7301, "02:00:5e:20:00:0a", "02:00:5e:20:00:01"),
        (CAP_CGNAT, 7302, "02:00:5e:20:01:0a", "02:00:5e:20:01:01"),
        (CAP_DC, 7303, "02:00:5e:20:02:0a", "02:00:5e:20:02:01"),
    ]
    for name, seed, mac_in, mac_out in plans:
        specs = [s for s in SPECS if s.capture == name]
        first = min(at(s.start.split(".")[0]) for s in specs)
        cap = ms.Capture(name, seed=seed, start_ns=(first - 60) * NS)
        link = ms.EthLink(mac_in, mac_out)
        loop = Loop(cap)
        for spec in specs:
            hms, frac = spec.start.split(".")
            t0 = at(hms) * NS + int(frac) * 1000
            miner = miners[spec.key] = Miner(cap, link, spec, loop)
            if spec.dns_name:
                def lookup(spec=spec):
                    ms.dns_pair(cap, link, spec.src, 53211, RESOLVER, spec.dns_name, spec.dst,
                                txid=0x5a17)
                loop.at(t0 - 2 * NS, lookup)
            loop.at(t0, miner.begin)
        loop.run()
        caps.append(cap)
    return caps, miners


# ---------------------------------------------------------------------------
# ISP record files. Each writer returns the text and notes the lines the oracle cites.
# ---------------------------------------------------------------------------
def csv_cell(value: str) -> str:
    return f'"{value}"' if any(ch in value for ch in ',"\n') else value


def write_registry() -> tuple[str, dict[str, int]]:
    lines = [",".join(REGISTRY_HEADER)]
    where = {}
    for row in REGISTRY:
        lines.append(",".join(csv_cell(v) for v in row))
        where[row[0]] = len(lines)
    return "\n".join(lines) + "\n", where


def write_static() -> tuple[str, dict[str, int]]:
    lines = ["network,subscriber_id,valid_from,valid_to,circuit"]
    where = {}
    for row in STATIC:
        lines.append(",".join(csv_cell(v) for v in row))
        where[row[0]] = len(lines)
    return "\n".join(lines) + "\n", where


def ctime(ts: int) -> str:
    return _dt.datetime.fromtimestamp(ts, UTC).strftime("%a %b %e %H:%M:%S %Y")


def event_stamp(ts: int) -> str:
    return _dt.datetime.fromtimestamp(ts, UTC).strftime("%b %e %Y %H:%M:%S UTC")


def write_radius() -> str:
    """FreeRADIUS 3 detail: one block per accounting packet, in the order received."""
    rng = random.Random(7401)
    blocks = []
    for r in RADIUS:
        unique = hashlib.md5(f"{r.user}|{r.nas}|{r.sid}".encode()).hexdigest()
        octets_in = octets_out = 0
        for ts, status in r.records():
            attrs = [("Acct-Status-Type", status), ("User-Name", f'"{r.user}"'),
                     ("Acct-Session-Id", f'"{r.sid}"'), ("NAS-IP-Address", r.nas),
                     ("NAS-Identifier", '"bng-1"' if r.nas == NAS_ACCESS else '"bng-cgn-2"'),
                     ("NAS-Port-Type", "Ethernet"), ("Service-Type", "Framed-User"),
                     ("Framed-Protocol", "PPP"), ("Framed-IP-Address", r.ip)]
            if r.v6:
                attrs += [("Framed-IPv6-Prefix", r.v6[0]), ("Delegated-IPv6-Prefix", r.v6[1])]
            attrs.append(("Calling-Station-Id", f'"{r.calling}"'))
            if status == "Start":
                attrs.append(("Acct-Interim-Interval", str(INTERIM)))
            else:
                octets_in += rng.randrange(2_000_000, 90_000_000)
                octets_out += rng.randrange(20_000_000, 900_000_000)
                attrs += [("Acct-Session-Time", str(ts - r.start)),
                          ("Acct-Input-Octets", str(octets_in)),
                          ("Acct-Output-Octets", str(octets_out))]
            if status == "Stop":
                attrs.append(("Acct-Terminate-Cause", r.cause))
            delay = rng.choice((0, 0, 0, 1))
            attrs += [("Event-Timestamp", f'"{event_stamp(ts)}"'),
                      ("Acct-Delay-Time", str(delay)),
                      ("Acct-Unique-Session-Id", f'"{unique}"'),
                      ("Timestamp", str(ts + delay))]
            blocks.append((ts + delay, len(blocks), r, status, attrs))
    lines: list[str] = []
    for received, _, r, status, attrs in sorted(blocks, key=lambda b: (b[0], b[1])):
        if status == "Start":
            r.line = len(lines) + 1
        lines.append(ctime(received))
        lines += [f"\t{name} = {value}" for name, value in attrs]
        lines.append("")
    return "\n".join(lines)


def radius_end(r: Radius) -> tuple[float, bool]:
    """The end the loader must infer (docs/inputs/radius.md): the Stop, else the earliest of
    the next session on the same address and the last record + one interim interval."""
    if r.stop is not None:
        return r.stop, False
    bounds = [r.last_interim + INTERIM]
    bounds += [o.start for o in RADIUS if o.ip == r.ip and o.start > r.start]
    return min(bounds), True


def isc_octets(raw: bytes) -> str:
    return '"' + "".join(chr(b) if 0x20 < b < 0x7F and chr(b) not in '"\\' else f"\\{b:03o}"
                         for b in raw) + '"'


def isc_time(ts: int) -> str:
    moment = _dt.datetime.fromtimestamp(ts, UTC)
    return f"{(moment.weekday() + 1) % 7} {moment.strftime('%Y/%m/%d %H:%M:%S')}"


def write_isc() -> tuple[str, dict[str, int]]:
    lines = ["# The format of this file is documented in the dhcpd.leases(5) manual page.",
             "# This lease file was written by isc-dhcp-4.4.3", "",
             "# authoring-byte-order entry is generated, DO NOT DELETE",
             "authoring-byte-order little-endian;", "",
             'server-duid "\\000\\001\\000\\001/\\244\\342\\375\\002\\000^ \\003\\001";', ""]
    where = {}
    for address, mac, starts, ends, state, host in ISC:
        where[(address, mac)] = len(lines) + 1
        uid = bytes([1]) + bytes.fromhex(mac.replace(":", ""))
        lines += [f"lease {address} {{", f"  starts {isc_time(starts)};",
                  f"  ends {isc_time(ends)};"]
        if state == "free":
            lines.append(f"  tstp {isc_time(ends)};")
        lines += [f"  cltt {isc_time(starts)};", f"  binding state {state};"]
        if state == "active":
            lines += ["  next binding state free;", "  rewind binding state free;"]
        lines += [f"  hardware ethernet {mac};", f"  uid {isc_octets(uid)};"]
        if host:
            lines.append(f'  client-hostname "{host}";')
        lines.append("}")
    return "\n".join(lines) + "\n", where


def write_kea() -> tuple[str, dict[tuple[str, int], int]]:
    lines = [KEA_HEADER]
    where = {}
    for address, mac, life, start, host in KEA:
        client = "01:" + mac
        lines.append(f"{address},{mac},{client},{life},{start + life},2,0,0,{host},0,,0")
        where[(address, start)] = len(lines)
    return "\n".join(lines) + "\n", where


def write_cgnat_csv() -> tuple[str, dict[tuple[str, int], int]]:
    lines = ["public_ip,port_start,port_end,private_ip,allocated_at,released_at,protocol,pool"]
    where = {}
    for public, low, high, private, alloc, release in CGNAT_CSV:
        lines.append(f"{public},{low},{high},{private},{alloc},{release},all,cgn-pool-1")
        where[(public, low)] = len(lines)
    return "\n".join(lines) + "\n", where


def junos_line(ts: int, tag: str, private: str, public: str, low: int, high: int,
               token: int) -> str:
    stamp = _dt.datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%S") + ".000Z"
    return (f"{stamp} mx-cgn-1 (FPC Slot 5, PIC Slot 0) {{sset-cgn}}[jservices-nat]: "
            f"JSERVICES_NAT_PORT_BLOCK_{tag}: {private} -> {public}:{low}-{high} 0x{token:08x}")


def write_junos() -> tuple[str, dict[tuple[str, int, int], int]]:
    """rsyslog high-precision stamps (a year and a zone on every line): no year guessing."""
    events = [(at("06:00:02"), 0, "2026-03-02T06:00:02.000Z mx-cgn-1 rpd[2291]: "
               "RPD_BGP_NEIGHBOR_STATE_CHANGED: BGP peer 192.0.2.254 (External AS 64500) "
               "changed state from OpenConfirm to Established", None)]
    for n, (public, low, high, private, alloc, release) in enumerate(JUNOS):
        events.append((alloc, 1, junos_line(alloc, "ALLOC", private, public, low, high, alloc),
                       (public, low, alloc)))
        t = alloc + JUNOS_INTERIM
        while t < release:
            events.append((t, 2, junos_line(t, "ACTIVE", private, public, low, high, alloc),
                           None))
            t += JUNOS_INTERIM
        events.append((release, 3, junos_line(release, "RELEASE", private, public, low, high,
                                              alloc), None))
    events.append((at("12:30:00"), 0, "2026-03-02T12:30:00.000Z mx-cgn-1 mgd[40112]: "
                   "UI_COMMIT: User 'noc' requested 'commit' operation (comment: none)", None))
    lines, where = [], {}
    for ts, _, text, key in sorted(events, key=lambda e: (e[0], e[1])):
        lines.append(text)
        if key is not None:
            where[key] = len(lines)
    return "\n".join(lines) + "\n", where


def write_meters() -> str:
    lines = ["meter_id,entity_id,period_start,period_end,kwh"]
    lines += [f"{m},{e},{METER_FROM},{METER_TO},{kwh}" for m, e, kwh in METERS]
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------
# The oracle
# ---------------------------------------------------------------------------
def registry_row(sid: str) -> tuple:
    return next(r for r in REGISTRY if r[0] == sid)


def contains(network: str, address: str) -> bool:
    return ipaddress.ip_address(address) in ipaddress.ip_network(network)


def chain_for(spec: Spec, t: float, lines: dict) -> dict | None:
    """The records that tie (src, sport, t) to the subscriber, each with file:line."""
    if spec.subscriber is None:
        return None
    out: dict = {}
    address = spec.src
    if spec.chain[0] == "cgnat-csv":
        row = next(r for r in CGNAT_CSV if r[0] == spec.src and r[1] <= spec.sport <= r[2])
        out["cgnat"] = {"source": "cgnat-csv", "public_ip": row[0],
                        "ports": f"{row[1]}-{row[2]}", "private_ip": row[3],
                        "origin": f"cgnat.csv:{lines['cgnat'][(row[0], row[1])]}"}
        address = row[3]
    elif spec.chain[0] == "cgnat-junos":
        row = next(r for r in JUNOS if r[0] == spec.src and r[1] <= spec.sport <= r[2]
                   and r[4] <= t < r[5])
        out["cgnat"] = {"source": "cgnat-junos", "public_ip": row[0],
                        "ports": f"{row[1]}-{row[2]}", "private_ip": row[3],
                        "start": iso(row[4]), "end": iso(row[5]),
                        "origin": f"junos-nat.log:{lines['junos'][(row[0], row[1], row[4])]}"}
        address = row[3]
    kind = spec.chain[-1]
    if kind == "radius":
        cands = [r for r in RADIUS if (contains(f"{r.ip}/32", address) or (
            r.v6 and contains(r.v6[1], address)))]
        r = next(r for r in cands if r.start <= t < radius_end(r)[0])
        end, inferred = radius_end(r)
        network = f"{r.ip}/32" if ":" not in address else r.v6[1]
        out["assignment"] = {"source": "radius", "network": network, "identity_kind": "user",
                             "identity": r.user, "session": r.sid, "start": iso(r.start),
                             "end": iso(end), "end_inferred": inferred,
                             "origin": f"radius/detail-20260302:{r.line}"}
    elif kind == "static":
        row = next(s for s in STATIC if contains(s[0], address))
        out["assignment"] = {"source": "static", "network": row[0],
                             "identity_kind": "subscriber", "identity": row[1],
                             "end_inferred": False,
                             "origin": f"static.csv:{lines['static'][row[0]]}"}
    elif kind == "dhcp-isc":
        row = next(x for x in ISC if x[0] == address and x[2] <= t < x[3])
        out["assignment"] = {"source": "dhcp-isc", "network": f"{address}/32",
                             "identity_kind": "mac", "identity": row[1], "start": iso(row[2]),
                             "end": iso(row[3]), "end_inferred": False,
                             "origin": f"dhcpd.leases:{lines['isc'][(address, row[1])]}"}
    elif kind == "dhcp-kea":
        rows = [x for x in KEA if x[0] == address]
        first = rows[0]
        out["assignment"] = {"source": "dhcp-kea", "network": f"{address}/32",
                             "identity_kind": "mac", "identity": first[1],
                             "start": iso(first[3]), "end": iso(rows[-1][3] + rows[-1][2]),
                             "end_inferred": False,
                             "origin": f"kea-leases4.csv:{lines['kea'][(address, first[3])]}"}
    reg = registry_row(spec.subscriber)
    out["registry_origin"] = f"registry.csv:{lines['registry'][spec.subscriber]}"
    out["matched_by"] = {"static": "subscriber_id", "radius": "username",
                         "dhcp-isc": "cpe_mac", "dhcp-kea": "cpe_mac"}[kind]
    assert reg[0] == spec.subscriber
    return out


def oracle(miners: dict[str, Miner], lines: dict) -> dict:
    sessions = []
    for spec in SPECS:
        m = miners[spec.key]
        o = m.s.oracle()
        first_ns = m.c.msgs[True][0].ts  # the first payload: the scanner's first_seen
        t = first_ns / NS
        entry = {
            "key": spec.key, "capture": spec.capture,
            "src_ip": spec.src, "src_port": spec.sport, "dest_ip": spec.dst,
            "dest_port": spec.dport,
            "first_seen": iso_ns(first_ns), "first_seen_ns": first_ns,
            "syn_ns": m.syn_ns, "last_seen": iso_ns(m.last_ns), "last_seen_ns": m.last_ns,
            "subscriber_id": spec.subscriber,
            "entity_id": registry_row(spec.subscriber)[1] if spec.subscriber else None,
            "why_unlinked": spec.why_unlinked,
            "link": chain_for(spec, t, lines),
            "agent": spec.agent, "login": m.login, "worker": spec.worker, "wallet": m.wallet,
            "coin": "BTC", "algorithm": "sha256d", "pool_host": spec.dns_name,
            "device": spec.device, "device_power_w": spec.power_w,
            "difficulty": m.d,
            "shares_submitted": o["shares_submitted"], "shares_accepted": o["shares_accepted"],
            "expected_hashrate_hs": spec.hashrate, "hashrate_tolerance": TOLERANCE,
            "hashrate_window_frames": o["hashrate_window_frames"],
            "first_frame": o["first_frame"],
        }
        sessions.append(entry)
    sessions.sort(key=lambda e: (e["first_seen_ns"], e["src_port"]))

    entities: dict[str, dict] = {}
    for row in REGISTRY:
        sid, eid = row[0], row[1]
        e = entities.setdefault(eid, {
            "entity_name": row[2], "entity_type": CANON_TYPE[row[3]],
            "is_datacentre": CANON_TYPE[row[3]] == "datacentre", "subscribers": [],
            "sessions": 0, "workers": [], "distinct_workers": 0,
            "session_keys": [], "peak_concurrent_hashrate_hs": 0.0})
        e["subscribers"].append(sid)
    for s in sessions:
        if s["entity_id"] is None:
            continue
        e = entities[s["entity_id"]]
        e["sessions"] += 1
        e["session_keys"].append(s["key"])
        if s["worker"] not in e["workers"]:
            e["workers"].append(s["worker"])
        e["distinct_workers"] = len(e["workers"])
    for eid, e in entities.items():
        mine = [s for s in sessions if s["entity_id"] == eid]
        best, window = 0.0, None
        for s in mine:  # at each session's start: the sum of the sessions running then
            t = s["first_seen_ns"]
            running = [x for x in mine if x["first_seen_ns"] <= t < x["last_seen_ns"]]
            total = sum(x["expected_hashrate_hs"] for x in running)
            if total > best:
                best = total
                window = [iso_ns(max(x["first_seen_ns"] for x in running)),
                          iso_ns(min(x["last_seen_ns"] for x in running))]
        e["peak_concurrent_hashrate_hs"] = best
        e["peak_concurrent_window"] = window
        e["concurrent_sessions_at_peak"] = (
            sum(1 for x in mine if window and x["first_seen_ns"] <= _ns(window[0])
                and _ns(window[1]) <= x["last_seen_ns"]) if window else 0)
        e["meter"] = None
    for meter, eid, kwh in METERS:
        mine = [spec for spec in SPECS if spec.subscriber
                and registry_row(spec.subscriber)[1] == eid]
        watts = sum(spec.power_w for spec in mine)
        kwh_miners = round(watts * METER_HOURS / 1000, 1)
        ratio = round(kwh / kwh_miners, 2)
        entities[eid]["meter"] = {
            "meter_id": meter, "period_start": METER_FROM, "period_end": METER_TO,
            "metered_kwh": kwh, "miners_nameplate_w": watts,
            "miners_kwh_if_running_all_period": kwh_miners,
            "metered_over_miners": ratio,
            "verdict": "close to the miners' draw" if ratio < 1.25 else
                       "far above the miners' draw",
        }
    dc = entities["E-100"]
    assert dc["concurrent_sessions_at_peak"] == 2 and dc["peak_concurrent_hashrate_hs"] == 206e12
    return {
        "description": ("Oracle for pcaps/isp/: every mining session the captures hold, the "
                        "subscriber and entity it must link to (with the records that say so, "
                        "as file:line relative to pcaps/isp/), and per entity what a lead "
                        "builder must report. Written by make_isp_samples.py from what it "
                        "generated, not by running poolwatch."),
        "day": "2026-03-02",
        "time_zone": "UTC (every record file states its zone or is UTC; pass tz=None)",
        "loaders": {
            "registry.csv": "load_registry", "static.csv": "load_static",
            "radius/detail-20260302": "load_radius_detail",
            "dhcpd.leases": "load_isc_leases", "kea-leases4.csv": "load_kea_leases",
            "cgnat.csv": "load_cgnat", "junos-nat.log": "load_cgnat",
            "meters.csv": "load_meters",
        },
        "captures": sorted({s.capture for s in SPECS}),
        "hashrate_formula": mss.F_SHA256,
        "sessions": sessions,
        "entities": entities,
        "notes": [
            "first_seen is the first payload packet of the session's connection (the "
            "scanner's first_seen); syn_ns is its SYN",
            "192.0.2.50 is dynamic (RADIUS): xingchen (internet cafe, S-2001) 00:00:00-"
            "12:00:00, liwei88 (residential, S-3001) from 12:00:05",
            "chenjie's RADIUS session (100.64.1.21) has no Stop: its end is inferred "
            "(last Interim-Update + Acct-Interim-Interval), end_inferred true",
            "198.51.100.21:1024-1535 (Junos) belongs to 100.64.1.22 until 11:01:02 and to "
            "100.64.1.23 from 11:04:41: the two sessions through it link to different people",
            "meter ratios compare metered kWh with the nameplate power of the miners seen, "
            "run for the whole period (168 h)",
        ],
    }


def _ns(text: str) -> int:
    moment = _dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    return int(moment.replace(microsecond=0).timestamp()) * NS + moment.microsecond * 1000


def dump_json(obj) -> str:
    return json.dumps(obj, indent=1, ensure_ascii=False, allow_nan=False) + "\n"


README = """\
# A small synthetic ISP (2026-03-02)

Made by `../make_isp_samples.py` (fixed seeds and times; `python pcaps/make_isp_samples.py
pcaps/isp` rewrites this folder byte for byte). Nothing here is real: documentation, test and
private addresses only, invented people and companies, random wallets nobody owns.

| file | format (docs/inputs/) | what is in it |
| --- | --- | --- |
| `registry.csv` | registry.md | 13 subscribers of 12 entities (a data centre with two lines, an internet cafe and an enterprise with Chinese names and addresses, homes, a school); `username` (RADIUS), `cpe_mac` (DHCP), `meter_id` |
| `static.csv` | registry.md | the data centre's 198.51.100.64/29 (and a ceased /29), an enterprise's 2001:db8:4400::/48 |
| `radius/detail-20260302` | radius.md | FreeRADIUS detail, Start/Interim/Stop; 192.0.2.50 held by the cafe 00:00:00-12:00:00 and by a home from 12:00:05; a Delegated-IPv6-Prefix /56; the CGNAT customers' 100.64.1.x; one session without its Stop |
| `dhcpd.leases` | dhcp.md | ISC dhcpd: the school's CPE holds 10.20.0.37 (an earlier client freed it at 07:00:04) |
| `kea-leases4.csv` | dhcp.md | Kea memfile v4: the enterprise's gateway holds 198.51.100.130 (renewed at noon) |
| `cgnat.csv` | cgnat.md | 198.51.100.20 ports 2048-3071 -> 100.64.1.20, 3072-4095 -> 100.64.1.21 |
| `junos-nat.log` | cgnat.md | Junos ALLOC/ACTIVE/RELEASE: 198.51.100.21:1024-1535 -> 100.64.1.22, later -> 100.64.1.23 |
| `meters.csv` | meters.md | kWh for the week 2026-03-02..09: the data centre (close to its miners' draw), the enterprise (far above) |
| `edge_*.pcap` | Ethernet, microsecond pcap | 13 plaintext Stratum v1 sha256d sessions as the edge saw them (see `expected.json`) |
| `expected.json` | - | the oracle: per session the subscriber/entity and the records (file:line) that link it, or null and why; per entity sessions, workers, data-centre flag, peak hashrate, meter |
"""


def main(argv: list[str]) -> int:
    outdir = Path(argv[1]) if len(argv) > 1 else HERE / "isp"
    (outdir / "radius").mkdir(parents=True, exist_ok=True)
    lines: dict = {}
    text, lines["registry"] = write_registry()
    files = {"registry.csv": text}
    text, lines["static"] = write_static()
    files["static.csv"] = text
    files["radius/detail-20260302"] = write_radius()
    files["dhcpd.leases"], lines["isc"] = write_isc()
    files["kea-leases4.csv"], lines["kea"] = write_kea()
    files["cgnat.csv"], lines["cgnat"] = write_cgnat_csv()
    files["junos-nat.log"], lines["junos"] = write_junos()
    files["meters.csv"] = write_meters()
    caps, miners = build_captures()
    files["expected.json"] = dump_json(oracle(miners, lines))
    files["README.md"] = README
    for name, content in files.items():
        (outdir / name).write_bytes(content.encode("utf-8"))
    for cap in caps:
        ms.write_pcap(outdir / cap.name, ms.LINKTYPE_ETHERNET, cap.pkts)
    total = 0
    for path in sorted(p for p in outdir.rglob("*") if p.is_file()):
        size = path.stat().st_size
        total += size
        print(f"{path.relative_to(outdir)}: {size} bytes")
    print(f"total {total} bytes, {len(SPECS)} sessions")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
