"""Detection knowledge as data: the files in ``fingerprints/``, loaded and validated once.

The detectors need reference facts (Stratum dialects, client agents, pool endpoints and
domains, ports, hardware efficiency, wallet formats), each with its sources. They live in
YAML and CSV files so that adding a pool, an agent or a dialect variant needs no code
change; this module checks those files (pydantic models, cross-references between files)
and compiles them into the matchers the detectors call. A broken file stops loading with a
``FingerprintError`` that names the file, the line or entry, and what is wrong.

It is a leaf module: it imports nothing from the other poolwatch stages but ``errors``.
The schema of every file is described in ``fingerprints/README.md``.
"""

from __future__ import annotations

import contextlib
import csv
import datetime
import functools
import gc
import hashlib
import ipaddress
import logging
import os
import pickle
import re
import statistics
import sys
from collections.abc import Collection, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Annotated, Any, Literal

import pydantic
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    field_validator,
    model_validator,
)

from poolwatch.errors import FingerprintError

__all__ = [
    "Agent",
    "AgentMatch",
    "CoinHint",
    "Dialect",
    "Domain",
    "EfficiencyRange",
    "EfficiencyRow",
    "Endpoint",
    "Fingerprints",
    "PortInfo",
    "ShareWork",
    "Signature",
    "Source",
    "Variant",
    "WalletFormat",
    "WalletMatch",
    "default_dir",
    "dump_fingerprints",
    "load_fingerprints",
    "normalize_name",
]

FILES = (
    "sources.yaml",
    "dialects.yaml",
    "agents.yaml",
    "wallets.yaml",
    "pools.csv",
    "domains.csv",
    "ports.csv",
    "efficiency.csv",
    "addresses.csv",
)
log = logging.getLogger(__name__)
_CACHE_FORMAT = 1  # bump when what a cache file holds changes shape
OPTIONAL_FILES = ("addresses.csv",)  # a bundled set without them still loads

Id = Annotated[str, StringConstraints(pattern=r"^[a-z0-9]+(?:-[a-z0-9]+)*$")]
Rev = Annotated[int, Field(ge=1)]
Port = Annotated[int, Field(ge=1, le=65535)]
Text = Annotated[str, StringConstraints(min_length=1)]
_SOURCE_KEY = re.compile(r"\{([a-z0-9-]+)\}")


def _compiles(pattern: str, flags: int = 0) -> str:
    try:
        re.compile(pattern, flags)
    except re.error as e:
        raise ValueError(f"bad regex {pattern!r}: {e}") from None
    return pattern


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, defer_build=True)


class _Entry(_Model):
    """Every YAML entry: a stable kebab-case id and a revision bumped on each change."""

    id: Id
    rev: Rev
    disabled: bool = False  # in an extra directory: drop the default entry of this id


# ---------------------------------------------------------------------------- dialects.yaml


class Signature(_Model):
    """How a first payload of one side looks. ``matches`` checks the byte-level parts;
    ``high_entropy`` (Stratum V2's Noise keys) is left to the caller.

    Signatures of dialects that do not frame JSON lines also decide which TCP flows the
    stream prefilter hands to Python (``detect.streams.start_rules``).
    """

    first_byte: str | None = Field(default=None, min_length=1, max_length=1)
    first_bytes: str | None = None
    first_hex: str | None = Field(default=None, pattern=r"^([0-9a-fA-F]{2})+$")
    contains: list[Text] = []
    payload_len: int | None = Field(default=None, ge=1)
    high_entropy: bool = False
    # The payload holds at least one whole binary-sv2 frame: its 6-byte header's U24 LE
    # length (bytes 3..5) fits in the segment.
    whole_frame: bool = False
    # Matches only the opening payload of the side that sent the SYN: binary shapes (a Noise
    # key, a zero prefix) also turn up in the middle of unrelated binary streams.
    opening_only: bool = False
    note: str | None = None

    @property
    def prefix(self) -> bytes:
        """The bytes every matching payload starts with (possibly none)."""
        if self.first_hex is not None:
            return bytes.fromhex(self.first_hex)
        return (self.first_bytes or self.first_byte or "").encode()

    @functools.cached_property
    def _test(self) -> tuple[bytes, int | None, bool, tuple[bytes, ...]]:
        # matches() runs for every signature of every dialect over a session's first lines
        # at its end (~100 calls a session): the test's parts encoded and gathered once
        return (self.prefix, self.payload_len, self.whole_frame,
                tuple(c.encode() for c in self.contains))

    def matches(self, payload: bytes) -> bool:
        prefix, payload_len, whole_frame, contains = self._test
        if not payload.startswith(prefix):
            return False
        if payload_len is not None and len(payload) != payload_len:
            return False
        if whole_frame and not (
            len(payload) >= 6 and 6 + int.from_bytes(payload[3:6], "little") <= len(payload)
        ):
            return False
        for needle in contains:
            if needle not in payload:
                return False
        return True

    @model_validator(mode="after")
    def _one_prefix(self) -> Signature:
        given = [f for f in ("first_byte", "first_bytes", "first_hex") if getattr(self, f)]
        if len(given) > 1:
            raise ValueError(f"give one of first_byte, first_bytes, first_hex, not {given}")
        return self


class Message(_Model):
    name: Text
    dir: Literal["c2s", "s2c"]
    params: str | None = None
    param_count: list[int] = []
    example: str | None = None
    note: str | None = None


class ShareWork(_Model):
    """Expected hashes (or Equihash solutions) behind one accepted share, from the
    difficulty or target the pool announced (hashrate-estimation.md)."""

    basis: Literal["difficulty", "target", "not-observable"]
    unit: Literal["hash", "solution"]
    hashes_per_difficulty: float | None = Field(default=None, gt=0)
    target_encoding: Literal["be256-hex", "le256-hex", "cryptonote-le", "u256-le"] | None = None
    formula: Text
    convention_dependent: bool = False
    unconfirmed: bool = False
    source: Text

    @model_validator(mode="after")
    def _complete(self) -> ShareWork:
        if (
            self.basis == "difficulty"
            and self.hashes_per_difficulty is None
            and not self.unconfirmed
        ):
            raise ValueError(
                "basis 'difficulty' needs hashes_per_difficulty (or unconfirmed: true)"
            )
        if self.basis == "target" and self.target_encoding is None:
            raise ValueError("basis 'target' needs target_encoding")
        return self

    def hashes(self, difficulty: float | None = None, target: str | None = None) -> float | None:
        """Work per share from a difficulty (times ``hashes_per_difficulty``) or a target
        hex string in this dialect's encoding; None when this entry cannot tell."""
        if target is not None and self.target_encoding is not None:
            try:
                return _work_from_target(target, self.target_encoding)
            except (ValueError, ZeroDivisionError):  # a pool's garbage or zero target
                return None
        if difficulty is not None and self.hashes_per_difficulty is not None:
            return difficulty * self.hashes_per_difficulty
        return None


def _work_from_target(target: str, encoding: str) -> float:
    raw = bytes.fromhex(target[2:] if target[:2].lower() == "0x" else target)
    if encoding == "be256-hex":
        t = int.from_bytes(raw, "big")
    elif encoding in ("le256-hex", "u256-le"):
        t = int.from_bytes(raw, "little")
    else:  # cryptonote-le: xmrig Job::setTarget / Job::toDiff
        t = int.from_bytes(raw, "little")
        if len(raw) == 4:
            t = (2**64 - 1) // ((2**32 - 1) // t)
        return (2**64 - 1) / t
    return 2**256 / t


class Sv2Frame(_Model):
    header_bytes: int
    encrypted_header_bytes: int
    mac_bytes: int
    max_chunk_payload: int
    handshake_client_bytes: int
    handshake_server_bytes: int
    layout: str
    # Messages whose payload has one size (no variable fields): encrypted, each is one
    # record of encrypted_header_bytes + size + mac_bytes, so shares show through Noise.
    fixed_payload_bytes: dict[str, int] = {}

    def record_bytes(self, message: str) -> int | None:
        size = self.fixed_payload_bytes.get(message)
        return None if size is None else self.encrypted_header_bytes + size + self.mac_bytes


class Dialect(_Entry):
    name: Text
    framing: Literal["ndjson", "binary-sv2", "http-json"]
    transport: Text
    url_schemes: list[Text] = []
    client_signatures: list[Signature]
    server_signatures: list[Signature] = []
    login_methods: list[Text] = []
    client_methods: list[Text] = []
    server_methods: list[Text] = []
    job_methods: list[Text] = []
    submit_methods: list[Text]
    difficulty_methods: list[Text] = []
    target_methods: list[Text] = []
    hashrate_methods: list[Text] = []
    agent_field: Text
    wallet_field: Text
    messages: list[Message] = []
    message_types: dict[int, Text] = {}
    frame: Sv2Frame | None = None
    share_work: ShareWork
    notes: str | None = None
    source: Text

    @model_validator(mode="after")
    def _frames_need_framing(self) -> Dialect:
        for s in self.client_signatures + self.server_signatures:
            if s.whole_frame and self.framing != "binary-sv2":
                raise ValueError("whole_frame is defined for binary-sv2 framing only")
        return self


class Recognise(_Model):
    notify_param_count: list[int] = []
    submit_param_count: list[int] = []
    markers: list[Text] = []
    # CryptoNote: coin ticker -> the block major versions (first varint of a job's hashing
    # blob) at which that coin hashed with this family, e.g. {XMR: [12, 13, …]} for RandomX.
    blob_major_versions: dict[str, list[int]] = {}
    notes: str | None = None

    @field_validator("blob_major_versions")
    @classmethod
    def _blob_versions(cls, v: dict[str, list[int]]) -> dict[str, list[int]]:
        for coin, versions in v.items():
            if not re.fullmatch(r"[A-Z0-9]{2,10}", coin):
                raise ValueError(f"blob_major_versions: {coin!r} is not a coin ticker (A-Z, 0-9)")
            if not versions:
                raise ValueError(f"blob_major_versions: no versions for {coin}")
            bad = [n for n in versions if isinstance(n, bool) or not 0 <= n <= 255]
            if bad:
                raise ValueError(f"blob_major_versions: {coin} {bad} not a block major "
                                 "version (0-255, a uint8)")
            if len(set(versions)) != len(versions):
                raise ValueError(f"blob_major_versions: {coin} lists a version twice")
        return v


class Variant(_Entry):
    """An algorithm family as it appears on one or more dialects."""

    name: Text
    dialects: list[Id] = Field(min_length=1)
    algorithms: list[Id] = Field(min_length=1)
    coins: list[Text] = []
    algo_patterns: list[str] = []
    recognise: Recognise = Recognise()
    share_work: ShareWork | None = None
    notes: str | None = None
    source: Text

    @field_validator("algo_patterns")
    @classmethod
    def _patterns(cls, v: list[str]) -> list[str]:
        return [_compiles(p, re.IGNORECASE) for p in v]


class CoinHint(_Entry):
    field: Literal["password", "login"]
    pattern: Text
    meaning: Text
    unconfirmed: bool = False
    source: Text

    @field_validator("pattern")
    @classmethod
    def _pattern(cls, v: str) -> str:
        if "coin" not in re.compile(_compiles(v)).groupindex:
            raise ValueError(f"pattern {v!r} has no (?P<coin>…) group")
        return v


class _DialectsFile(_Model):
    schema_: Literal[1] = Field(alias="schema")
    dialects: list[Dialect]
    variants: list[Variant] = []
    coin_hints: list[CoinHint] = []


# ---------------------------------------------------------------------------- agents.yaml


class AgentPattern(_Model):
    """Exactly one of prefix, contains, regex (``re.search``; a ``version`` group is reported)."""

    prefix: str | None = None
    contains: str | None = None
    regex: str | None = None
    case_sensitive: bool = False

    @model_validator(mode="after")
    def _one(self) -> AgentPattern:
        given = [k for k in ("prefix", "contains", "regex") if getattr(self, k)]
        if len(given) != 1:
            raise ValueError(f"give exactly one of prefix, contains, regex (got {given or 'none'})")
        if self.regex is not None:
            _compiles(self.regex)
        return self

    @property
    def text(self) -> str:
        return self.prefix or self.contains or self.regex or ""


class Agent(_Entry):
    software: Text
    match: AgentPattern
    priority: int = 0
    kind: Literal["miner", "firmware", "relay", "proxy"]
    hardware: list[Literal["asic", "gpu", "cpu", "fpga", "mcu", "proxy"]] = Field(min_length=1)
    dialects: list[Id] = []
    fields: list[Literal["subscribe", "get-version", "login-agent", "http-user-agent"]] = []
    example: Text
    example_synthetic: bool = False
    default_ports: list[Port] = []
    confidence: Literal["source", "decompiled", "pool-side", "3rd-party", "unconfirmed"]
    historic: bool = False
    notes: str | None = None
    source: Text

    @model_validator(mode="after")
    def _example_matches(self) -> Agent:
        if _agent_version(self, self.example) is None:
            raise ValueError(
                f"match {self.match.text!r} does not match its own example {self.example!r}"
            )
        return self


class _AgentsFile(_Model):
    schema_: Literal[1] = Field(alias="schema")
    agents: list[Agent]


# ---------------------------------------------------------------------------- wallets.yaml


class WalletFormat(_Entry):
    coins: list[Text] = Field(min_length=1)
    name: Text
    regex: Text
    case: Literal["sensitive", "lower-or-upper"] = "sensitive"
    encoding: Text
    examples: list[Text] = []
    constructed: bool = False
    unconfirmed: bool = False
    notes: str | None = None
    source: Text

    @model_validator(mode="after")
    def _examples_match(self) -> WalletFormat:
        _compiles(self.regex)
        for ex in self.examples:
            if not self.fullmatch(ex):
                raise ValueError(f"regex {self.regex!r} does not match its own example {ex!r}")
        return self

    def fullmatch(self, text: str) -> bool:
        if self.case == "lower-or-upper" and text == text.upper():
            text = text.lower()
        return _regex(self.regex).fullmatch(text) is not None


class _WalletsFile(_Model):
    schema_: Literal[1] = Field(alias="schema")
    wallets: list[WalletFormat]


# ---------------------------------------------------------------------------- sources.yaml


class Source(_Entry):
    text: Text
    note: str | None = None
    via: str | None = None


class _SourcesFile(_Model):
    schema_: Literal[1] = Field(alias="schema")
    sources: list[Source]


# ---------------------------------------------------------------------------- CSV rows


def _split(v: Any, sep: str | None = None) -> Any:
    if isinstance(v, str):
        return [x for x in (v.split(sep) if sep else v.split()) if x]
    return v


def _none_if_empty(v: Any) -> Any:
    return None if v == "" else v


PoolFlag = Literal[
    "historic",
    "unconfirmed",
    "dialect-unconfirmed",
    "multi-algo",
    "not-stratum",
    "self-signed-cert",
    "suspect",
    "solo",
    "disabled",
]
DomainFlag = Literal[
    "blocklist-only", "mixed", "historic", "tor", "host-level", "unconfirmed", "disabled"
]
AddressFlag = Literal["historic", "unconfirmed", "shared-hosting", "disabled"]
EfficiencyFlag = Literal[
    "unconfirmed", "low-authority", "derived", "historic", "announced", "tuned", "disabled"
]


class _PoolRow(_Model):
    """One pools.csv row: every host in ``hosts`` with every port in ``ports``."""

    pool: Text
    coin: str
    hosts: list[Text] = Field(min_length=1)
    ports: list[Port]
    tls: Literal["yes", "no", "unknown"]
    dialect: list[Id]
    variant: Id | None
    flags: frozenset[PoolFlag]
    rev: Rev
    source: Text

    @field_validator("hosts", "ports", "flags", mode="before")
    @classmethod
    def _words(cls, v: Any) -> Any:
        return _split(v)

    @field_validator("dialect", mode="before")
    @classmethod
    def _bars(cls, v: Any) -> Any:
        return _split(v, "|")

    @field_validator("variant", mode="before")
    @classmethod
    def _empty(cls, v: Any) -> Any:
        return _none_if_empty(v)

    @field_validator("coin")
    @classmethod
    def _coin(cls, v: str) -> str:
        if not re.fullmatch(r"[A-Za-z0-9._-]*", v):
            raise ValueError(f"coin {v!r}: letters, digits, '.', '_' and '-' only")
        return v

    @field_validator("hosts")
    @classmethod
    def _hosts(cls, v: list[str]) -> list[str]:
        out = []
        for h in v:
            wild = h.startswith("*.")
            name = normalize_name(h[2:] if wild else h)
            if name is None or "*" in name:
                raise ValueError(
                    f"host {h!r} is not a valid name ('*.' only as a leading wildcard)"
                )
            out.append("*." + name if wild else name)
        return out


class _AddressRow(_Model):
    """One addresses.csv row: a pool's address or prefix, the ports it was seen on, and when."""

    prefix: Text
    ports: list[Port]
    pool: Text
    coin: str
    last_seen: datetime.date
    flags: frozenset[AddressFlag]
    rev: Rev
    source: Text

    @field_validator("ports", "flags", mode="before")
    @classmethod
    def _words(cls, v: Any) -> Any:
        return _split(v)

    @field_validator("prefix")
    @classmethod
    def _prefix(cls, v: str) -> str:
        try:
            net = ipaddress.ip_network(v.strip(), strict=True)
        except ValueError as e:
            raise ValueError(f"prefix {v!r}: {e}") from None
        return str(net)


class _DomainRow(_Model):
    domain: Text
    pools: list[Text]
    flags: frozenset[DomainFlag]
    note: str
    rev: Rev
    source: Text

    @field_validator("flags", mode="before")
    @classmethod
    def _words(cls, v: Any) -> Any:
        return _split(v)

    @field_validator("pools", mode="before")
    @classmethod
    def _bars(cls, v: Any) -> Any:
        return [p.strip() for p in _split(v, "|") if p.strip()]

    @field_validator("domain")
    @classmethod
    def _domain(cls, v: str) -> str:
        name = normalize_name(v)
        if name is None or "." not in name or "*" in name:
            raise ValueError(f"domain {v!r} is not a valid registered domain or host name")
        return name


_PORT_SPEC = re.compile(r"^(\d+)(?:-(\d+))?$")


class _PortRow(_Model):
    id: Id
    rev: Rev
    ports: list[tuple[Port, Port]] = Field(min_length=1)
    mining_use: Text
    hiveos_endpoints: int | None
    hiveos_pools: int | None
    hiveos_tls: int | None
    nmap_service: str
    nmap_freq: float | None = Field(ge=0, le=1)
    legit_traffic: Literal["rare", "low", "moderate", "very-common"]
    note: str
    source: Text

    @field_validator("ports", mode="before")
    @classmethod
    def _ranges(cls, v: Any) -> Any:
        if not isinstance(v, str):
            return v
        out = []
        for spec in v.split():
            m = _PORT_SPEC.match(spec)
            if not m:
                raise ValueError(f"port spec {spec!r}: use N or N-M")
            lo, hi = int(m.group(1)), int(m.group(2) or m.group(1))
            if hi < lo:
                raise ValueError(f"port range {spec!r} runs backwards")
            out.append((lo, hi))
        return out

    @field_validator("hiveos_endpoints", "hiveos_pools", "hiveos_tls", "nmap_freq", mode="before")
    @classmethod
    def _empty(cls, v: Any) -> Any:
        return _none_if_empty(v)


HASH_UNITS = {
    "H/s": 1.0,
    "kH/s": 1e3,
    "MH/s": 1e6,
    "GH/s": 1e9,
    "TH/s": 1e12,
    "PH/s": 1e15,
    "Sol/s": 1.0,
    "kSol/s": 1e3,
}
EFF_UNITS = {"J/H": 1.0, "J/kH": 1e-3, "J/MH": 1e-6, "J/GH": 1e-9, "J/TH": 1e-12, "J/Sol": 1.0}


class EfficiencyRow(_Model):
    """One device at one algorithm: nameplate (or stated) hashrate, wall power, efficiency."""

    id: Id
    rev: Rev
    algorithm: Id
    device: Text
    class_: Literal["asic", "gpu", "cpu", "fpga"] = Field(alias="class")
    hashrate: float = Field(gt=0)
    hashrate_unit: Literal["H/s", "kH/s", "MH/s", "GH/s", "TH/s", "PH/s", "Sol/s", "kSol/s"]
    power_w: float | None = Field(gt=0)
    efficiency: float | None = Field(gt=0)
    efficiency_unit: Literal["J/H", "J/kH", "J/MH", "J/GH", "J/TH", "J/Sol"]
    year: int = Field(ge=2009, le=2100)
    flags: frozenset[EfficiencyFlag]
    source: Text

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True,
                              defer_build=True)

    @field_validator("power_w", "efficiency", mode="before")
    @classmethod
    def _empty(cls, v: Any) -> Any:
        return _none_if_empty(v)

    @field_validator("flags", mode="before")
    @classmethod
    def _words(cls, v: Any) -> Any:
        return _split(v)

    @model_validator(mode="after")
    def _consistent(self) -> EfficiencyRow:
        solutions = self.hashrate_unit.startswith(("Sol", "kSol"))
        if solutions != (self.efficiency_unit == "J/Sol"):
            raise ValueError(
                f"hashrate unit {self.hashrate_unit} and efficiency unit {self.efficiency_unit} disagree"
            )
        if (self.power_w is None) != (self.efficiency is None):
            raise ValueError("give both power_w and efficiency, or neither")
        if self.power_w is not None and self.efficiency is not None:
            derived = self.power_w / (self.hashrate * HASH_UNITS[self.hashrate_unit])
            stated = self.efficiency * EFF_UNITS[self.efficiency_unit]
            if abs(derived / stated - 1) > 0.05:
                raise ValueError(
                    f"efficiency {self.efficiency} {self.efficiency_unit} is not power_w/hashrate "
                    f"({derived / EFF_UNITS[self.efficiency_unit]:.4g}) within 5 %"
                )
        return self

    @property
    def hashrate_hs(self) -> float:
        """Nameplate rate in hashes (solutions) per second."""
        return self.hashrate * HASH_UNITS[self.hashrate_unit]

    @property
    def joules_per_hash(self) -> float | None:
        """Joules per hash (per solution for Equihash), or None without a power figure."""
        return (
            None if self.efficiency is None else self.efficiency * EFF_UNITS[self.efficiency_unit]
        )


# ---------------------------------------------------------------------------- compiled views


@dataclass(frozen=True, slots=True)
class Endpoint:
    """One pool host:port (port None = any/varies) as the detectors look it up."""

    pool: str
    coin: str
    host: str
    port: int | None
    tls: str
    dialects: tuple[str, ...]
    variant: str | None
    flags: frozenset[str]
    rev: int
    source: str
    line: int = field(default=0, compare=False)

    @property
    def key(self) -> tuple[str, str, int | None, str, str]:
        return (self.pool, self.host, self.port, self.coin, self.tls)

    def __reduce__(self):  # the constructor's arguments: 4x faster to unpickle than slots state
        return (Endpoint, (self.pool, self.coin, self.host, self.port, self.tls, self.dialects,
                           self.variant, self.flags, self.rev, self.source, self.line))


@dataclass(frozen=True, slots=True)
class Domain:
    domain: str
    pools: tuple[str, ...]
    flags: frozenset[str]
    note: str
    rev: int
    source: str


@dataclass(frozen=True, slots=True)
class PoolAddress:
    """A pool's address or prefix from addresses.csv; ``last_seen`` dates the evidence."""

    prefix: str  # ipaddress network text, e.g. 65.108.57.232/32
    ports: tuple[int, ...]  # empty: any port
    pool: str
    coin: str
    last_seen: datetime.date
    flags: frozenset[str]
    rev: int
    source: str

    @property
    def network(self) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
        return ipaddress.ip_network(self.prefix)


@dataclass(frozen=True, slots=True)
class PortInfo:
    id: str
    rev: int
    ports: tuple[tuple[int, int], ...]
    mining_use: str
    hiveos_endpoints: int | None
    hiveos_pools: int | None
    hiveos_tls: int | None
    nmap_service: str
    nmap_freq: float | None
    legit_traffic: str
    note: str
    source: str


@dataclass(frozen=True, slots=True)
class AgentMatch:
    agent: Agent
    version: str | None
    groups: dict[str, str] = field(default_factory=dict, compare=False)


@dataclass(frozen=True, slots=True)
class WalletMatch:
    address: str
    format: WalletFormat

    @property
    def coins(self) -> list[str]:
        return self.format.coins


@dataclass(frozen=True, slots=True)
class EfficiencyRange:
    """Spread of device efficiency for an algorithm, in joules per hash (per solution)."""

    name: str
    unit: Literal["J/H", "J/Sol"]
    min: float
    median: float
    max: float
    devices: tuple[str, ...]

    @property
    def n(self) -> int:
        return len(self.devices)


@functools.lru_cache(maxsize=4096)
def _regex(pattern: str, flags: int = 0) -> re.Pattern[str]:
    return re.compile(pattern, flags)


def _agent_version(agent: Agent, ua: str) -> tuple[str | None, dict[str, str]] | None:
    """(version, named groups) when ``ua`` matches the agent's pattern, else None."""
    m = agent.match
    hay = ua if m.case_sensitive else ua.casefold()
    if m.prefix is not None:
        needle = m.prefix if m.case_sensitive else m.prefix.casefold()
        if not hay.startswith(needle):
            return None
        rest = re.match(r"v?([0-9][\w.+-]*)", ua[len(m.prefix) :])
        return (rest.group(1) if rest else None), {}
    if m.contains is not None:
        needle = m.contains if m.case_sensitive else m.contains.casefold()
        return (None, {}) if needle in hay else None
    found = _regex(m.regex or "", 0 if m.case_sensitive else re.IGNORECASE).search(ua)
    if not found:
        return None
    groups = {k: v for k, v in found.groupdict().items() if v is not None}
    return groups.get("version"), groups


def normalize_name(name: str) -> str | None:
    """A DNS name as compared here: no trailing dot, lower case, IDNA (punycode) ASCII.
    None for names that cannot be encoded (empty labels, labels over 63 characters)."""
    name = name.strip().rstrip(".")
    if not name:
        return None
    try:
        ascii_name = name.lower() if name.isascii() else name.encode("idna").decode("ascii").lower()
    except UnicodeError:
        return None
    labels = ascii_name.split(".")
    if any(not label or len(label) > 63 for label in labels) or len(ascii_name) > 253:
        return None
    if not re.fullmatch(r"[a-z0-9_-]+(?:\.[a-z0-9_-]+)*", ascii_name):
        return None
    return ascii_name


# ---------------------------------------------------------------------------- the set


_FINGERPRINT_KINDS = ("sources", "dialects", "variants", "coin_hints", "agents", "wallets",
                      "endpoints", "domains", "ports", "efficiency", "addresses")


def _restore(entries: dict[str, dict]) -> Fingerprints:
    return Fingerprints(**entries)


class Fingerprints:
    """Every fingerprint file of one load, validated and compiled into matchers."""

    def __init__(
        self,
        *,
        sources: dict[str, Source],
        dialects: dict[str, Dialect],
        variants: dict[str, Variant],
        coin_hints: dict[str, CoinHint],
        agents: dict[str, Agent],
        wallets: dict[str, WalletFormat],
        endpoints: dict[tuple, Endpoint],
        domains: dict[str, Domain],
        ports: dict[str, PortInfo],
        efficiency: dict[str, EfficiencyRow],
        addresses: dict[tuple[str, str], PoolAddress] | None = None,
    ) -> None:
        # read-only views: one cached set is shared by every detector
        self.sources = MappingProxyType(sources)
        self.dialects = MappingProxyType(dialects)
        self.variants = MappingProxyType(variants)
        self.coin_hints = MappingProxyType(coin_hints)
        self.agents = MappingProxyType(agents)
        self.wallets = MappingProxyType(wallets)
        self.endpoints = MappingProxyType(endpoints)
        self.domains = MappingProxyType(domains)
        self.ports = MappingProxyType(ports)
        self.efficiency = MappingProxyType(efficiency)
        self.addresses = MappingProxyType(addresses or {})
        self._compile()

    def __reduce__(self):  # pickled for the on-disk cache: the entries; matchers are rebuilt
        return (_restore, (self._entries(),))

    def _entries(self) -> dict[str, dict]:
        return {name: dict(getattr(self, name)) for name in _FINGERPRINT_KINDS}

    def _compile(self) -> None:
        self._by_host: dict[str, list[Endpoint]] = {}
        self._by_wildcard: dict[str, list[Endpoint]] = {}
        self._by_port: dict[int, list[Endpoint]] = {}
        self._by_dialect: dict[str, list[Endpoint]] = {}
        for ep in self.endpoints.values():
            for dialect in dict.fromkeys(ep.dialects):
                self._by_dialect.setdefault(dialect, []).append(ep)
            if ep.host.startswith("*."):
                self._by_wildcard.setdefault(ep.host[2:], []).append(ep)
            else:
                self._by_host.setdefault(ep.host, []).append(ep)
            if ep.port is not None:
                self._by_port.setdefault(ep.port, []).append(ep)
        self._agent_order = sorted(
            self.agents.values(), key=lambda a: (-a.priority, -len(a.match.text), a.id)
        )
        self._coin_variants: dict[str, list[Variant]] = {}
        for v in self.variants.values():
            for coin in v.coins:
                self._coin_variants.setdefault(coin.upper(), []).append(v)
        self._algorithms = {a: v for v in self.variants.values() for a in v.algorithms}

    # -- equality: same content, whatever the files' layout or line numbers
    def _content(self) -> tuple:
        return (
            self.sources,
            self.dialects,
            self.variants,
            self.coin_hints,
            self.agents,
            self.wallets,
            self.endpoints,
            self.domains,
            self.ports,
            self.efficiency,
            self.addresses,
        )

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Fingerprints) and self._content() == other._content()

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return (
            f"<Fingerprints {len(self.dialects)} dialects, {len(self.variants)} variants, "
            f"{len(self.agents)} agents, {len(self.endpoints)} endpoints, {len(self.domains)} domains, "
            f"{len(self.wallets)} wallet formats, {len(self.efficiency)} devices>"
        )

    # -- domains (DNS queries, TLS SNI, certificate names)
    def match_domain(self, name: str) -> Domain | None:
        """The most specific listed domain that ``name`` equals or ends with ("." + domain).
        Case-insensitive and IDNA-normalised; a look-alike such as evil2miners.com does not
        match 2miners.com."""
        norm = normalize_name(name)
        if norm is None:
            return None
        labels = norm.split(".")
        for i in range(len(labels) - 1):
            hit = self.domains.get(".".join(labels[i:]))
            if hit is not None:
                return hit
        return None

    # -- endpoints
    def endpoints_for(self, host: str, port: int | None = None) -> list[Endpoint]:
        """Endpoints listed for this host (exact, then "*." wildcards), optionally on one port
        (rows whose port varies match any port)."""
        norm = normalize_name(host)
        if norm is None:
            return []
        found = list(self._by_host.get(norm, ()))
        labels = norm.split(".")
        for i in range(1, len(labels) - 1):
            found.extend(self._by_wildcard.get(".".join(labels[i:]), ()))
        if port is not None:
            found = [ep for ep in found if ep.port is None or ep.port == port]
        return found

    def endpoints_of_dialect(self, dialect: str) -> list[Endpoint]:
        """Every endpoint listed as speaking this dialect."""
        return list(self._by_dialect.get(dialect, ()))

    def endpoints_on_port(self, port: int) -> list[Endpoint]:
        """Every endpoint listed on this port (a prior, not evidence: see ``port_info``)."""
        return list(self._by_port.get(port, ()))

    def port_info(self, port: int) -> PortInfo | None:
        """What ports.csv says about a port: its mining use and how common benign traffic is.
        The narrowest listed range wins (C3Pool's 15555 inside MoneroOcean's 10000-28192)."""
        best = None
        for info in self.ports.values():
            for lo, hi in info.ports:
                if lo <= port <= hi and (best is None or hi - lo < best[0]):
                    best = (hi - lo, info)
        return best[1] if best else None

    # -- agents
    def match_agent(self, user_agent: str) -> AgentMatch | None:
        """The most specific agent entry matching a user-agent string (higher priority, then the
        longer pattern, wins). A hint only: agents are trivially spoofed."""
        matches = self.match_agents(user_agent)
        return matches[0] if matches else None

    def match_agents(self, user_agent: str) -> list[AgentMatch]:
        out = []
        for agent in self._agent_order:
            hit = _agent_version(agent, user_agent)
            if hit is not None:
                out.append(AgentMatch(agent, hit[0], hit[1]))
        return out

    # -- dialects and variants
    def identify_client_payload(self, payload: bytes) -> list[Dialect]:
        """Dialects whose client signature matches a first client payload, most specific first."""
        scored = []
        for d in self.dialects.values():
            best = max(
                (
                    len(s.contains) + (s.payload_len is not None)
                    for s in d.client_signatures
                    if s.matches(payload)
                ),
                default=None,
            )
            if best is not None:
                scored.append((-best, d.id, d))
        return [d for _, _, d in sorted(scored)]

    def variants_for_coin(self, coin: str) -> list[Variant]:
        return list(self._coin_variants.get(coin.strip().upper(), ()))

    def variant_for_algorithm(self, name: str) -> Variant | None:
        """The variant whose algorithm id or announced-algorithm pattern matches ``name``
        (xmrig "rx/0", "kawpow", NiceHash "daggerhashimoto", ...)."""
        key = name.strip()
        if key.lower() in self._algorithms:
            return self._algorithms[key.lower()]
        for v in self.variants.values():
            if any(_regex(p, re.IGNORECASE).search(key) for p in v.algo_patterns):
                return v
        return None

    def share_work(self, dialect: str, variant: str | None = None) -> ShareWork:
        """The work-per-share rule for a session: the variant's own rule, else the dialect's.

        A dialect whose pools send targets keeps its own rule whatever the variant: a hash
        below target T takes 2^256 / T tries on average for any algorithm. Variants differ
        only in how pools scale a *difficulty*.
        """
        if self.dialects[dialect].share_work.basis == "target":
            return self.dialects[dialect].share_work
        if variant is not None and self.variants[variant].share_work is not None:
            return self.variants[variant].share_work  # type: ignore[return-value]
        return self.dialects[dialect].share_work

    def coin_hints_in(self, text: str, where: str = "password") -> list[tuple[CoinHint, str]]:
        """Coins named in a password (or login) by pool conventions such as c=LTC."""
        out = []
        for hint in self.coin_hints.values():
            if hint.field == where:
                out.extend(
                    (hint, m.group("coin").upper()) for m in _regex(hint.pattern).finditer(text)
                )
        return out

    # -- wallets
    def match_wallet(self, login: str) -> list[WalletMatch]:
        """Wallet formats matching a login or worker name: the whole text, then the part
        before a worker separator ("." "+" "/")."""
        candidates = [login.strip()]
        for sep in ".+/":
            head = candidates[0].split(sep, 1)[0]
            if head and head not in candidates:
                candidates.append(head)
        out = []
        for text in candidates:
            out.extend(
                WalletMatch(text, fmt) for fmt in self.wallets.values() if fmt.fullmatch(text)
            )
            if out:
                break
        return out

    def coins_for_wallet(self, login: str) -> list[str]:
        coins: list[str] = []
        for m in self.match_wallet(login):
            coins.extend(c for c in m.coins if c not in coins)
        return coins

    # -- efficiency
    def efficiency_range(
        self,
        name: str,
        device_class: str | Collection[str] | None = None,
        *,
        include_unconfirmed: bool = True,
        hashrate_between: tuple[float, float] | None = None,
    ) -> EfficiencyRange | None:
        """Min / median / max joules per hash over the devices of an algorithm. ``name`` is an
        algorithm id (exact) or a variant id (all its algorithms, e.g. ethash + etchash).
        ``device_class`` keeps one class or several; ``hashrate_between`` (H/s or Sol/s) the
        devices whose nameplate rate lies in that interval."""
        algos = set(self.variants[name].algorithms) if name in self.variants else {name}
        classes = {device_class} if isinstance(device_class, str) else device_class
        rows = [
            r
            for r in self.efficiency.values()
            if r.algorithm in algos
            and r.joules_per_hash is not None
            and (classes is None or r.class_ in classes)
            and (include_unconfirmed or "unconfirmed" not in r.flags)
            and (hashrate_between is None
                 or hashrate_between[0] <= r.hashrate_hs <= hashrate_between[1])
        ]
        if not rows:
            return None
        values = sorted(r.joules_per_hash for r in rows)  # type: ignore[misc]
        unit: Literal["J/H", "J/Sol"] = "J/Sol" if rows[0].efficiency_unit == "J/Sol" else "J/H"
        return EfficiencyRange(
            name,
            unit,
            values[0],
            statistics.median(values),
            values[-1],
            tuple(r.device for r in rows),
        )

    # -- sources
    def expand_source(self, text: str) -> str:
        """A source cell with its {key} abbreviations written out (sources.yaml)."""
        return _SOURCE_KEY.sub(lambda m: self.sources[m.group(1)].text, text)


# ---------------------------------------------------------------------------- reading files


def default_dir() -> Path:
    """The bundled fingerprints: a packaged copy next to this module if a wheel ships one
    (``poolwatch/fingerprints_data/``), else the repository's ``fingerprints/``."""
    packaged = Path(__file__).with_name("fingerprints_data")
    if packaged.is_dir():
        return packaged
    return Path(__file__).resolve().parent.parent.parent / "fingerprints"


def _yaml_doc(path: Path) -> tuple[dict, dict[tuple[str, int], int]]:
    """The document and the line of every list item under a top-level key."""
    import yaml  # here: a run that finds its fingerprints in the cache file reads no YAML

    # libyaml's loader when PyYAML was built with it: ten times faster, same nodes and marks
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    text = path.read_text(encoding="utf-8")
    try:
        node = yaml.compose(text, Loader=loader)
        doc = loader(text).construct_document(node) if node is not None else None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"line {mark.line + 1}" if mark is not None else None
        raise FingerprintError(
            str(path), where, f"not valid YAML: {getattr(e, 'problem', None) or e}"
        ) from None
    if not isinstance(doc, dict):
        raise FingerprintError(
            str(path), None, "expected a mapping with 'schema' and entry lists at the top"
        )
    lines: dict[tuple[str, int], int] = {}
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            if isinstance(value, yaml.SequenceNode):
                for i, item in enumerate(value.value):
                    lines[(key.value, i)] = item.start_mark.line + 1
    return doc, lines


def _describe(err: dict) -> str:
    loc = ".".join(str(p) for p in err["loc"])
    msg = err["msg"].removeprefix("Value error, ")
    return f"{loc}: {msg}" if loc else msg


def _validate_yaml(path: Path, model: type[BaseModel]) -> tuple[Any, dict[tuple[str, int], int]]:
    """The validated file and its item line numbers, or a FingerprintError naming the entry."""
    doc, lines = _yaml_doc(path)
    try:
        return model.model_validate(doc), lines
    except ValidationError as e:
        err = e.errors()[0]
        loc = err["loc"]
        where = None
        if len(loc) >= 2 and isinstance(loc[1], int):
            entries = doc.get(loc[0]) or []
            entry = entries[loc[1]] if loc[1] < len(entries) else None
            ident = entry.get("id") if isinstance(entry, dict) else None
            line = lines.get((str(loc[0]), loc[1]))
            where = (
                f"{loc[0]} entry {loc[1] + 1}"
                + (f" (id {ident!r})" if ident else "")
                + (f", line {line}" if line else "")
            )
            err = dict(err, loc=loc[2:])
        more = f" (and {e.error_count() - 1} more)" if e.error_count() > 1 else ""
        raise FingerprintError(str(path), where, _describe(err) + more) from None


def _entries(
    path: Path,
    kind: str,
    items: Sequence[_Entry],
    lines: dict[tuple[str, int], int],
    where: dict[tuple[str, Any], tuple[str, str]],
) -> dict[str, Any]:
    """Entries by id, refusing duplicates; records each entry's file and line for later errors."""
    out: dict[str, Any] = {}
    for i, item in enumerate(items):
        loc = f"{kind} entry {i + 1} (id {item.id!r}), line {lines.get((kind, i), '?')}"
        if item.id in out:
            raise FingerprintError(
                str(path), loc, f"duplicate id (first at {where[(kind, item.id)][1]})"
            )
        out[item.id] = item
        where[(kind, item.id)] = (str(path), loc)
    return out


def _csv_rows(path: Path, columns: Sequence[str]) -> Iterator[tuple[int, dict[str, str]]]:
    """(line number, row) for each data line; '#' lines are comments. Rows must not span lines."""
    numbered = [
        (n, line)
        for n, line in enumerate(path.read_text(encoding="utf-8-sig").splitlines(), 1)
        if line.strip() and not line.startswith("#")
    ]
    if not numbered:
        raise FingerprintError(str(path), None, "no header line")
    reader = csv.reader([line for _, line in numbered])
    try:
        header = next(reader)
        if sorted(header) != sorted(columns) or len(header) != len(columns):
            missing = [c for c in columns if c not in header]
            extra = [c for c in header if c not in columns]
            raise FingerprintError(
                str(path),
                f"line {numbered[0][0]}",
                f"header must have the columns {', '.join(columns)}"
                + (f"; missing {missing}" if missing else "")
                + (f"; unknown {extra}" if extra else ""),
            )
        for i, fields in enumerate(reader, 1):
            lineno = numbered[i][0]
            if reader.line_num != i + 1:
                raise FingerprintError(
                    str(path),
                    f"line {lineno}",
                    "malformed CSV row: a quoted field runs past the line end",
                )
            if len(fields) != len(header):
                raise FingerprintError(
                    str(path),
                    f"line {lineno}",
                    f"malformed CSV row: {len(fields)} fields, the header has {len(header)}",
                )
            yield lineno, dict(zip(header, fields, strict=True))
    except csv.Error as e:
        raise FingerprintError(
            str(path),
            f"line {numbered[min(reader.line_num, len(numbered)) - 1][0]}",
            f"malformed CSV: {e}",
        ) from None


def _csv_models(
    path: Path, model: type[BaseModel], columns: Sequence[str]
) -> list[tuple[int, Any]]:
    out = []
    for lineno, row in _csv_rows(path, columns):
        try:
            out.append((lineno, model.model_validate(row)))
        except ValidationError as e:
            more = f" (and {e.error_count() - 1} more)" if e.error_count() > 1 else ""
            raise FingerprintError(
                str(path), f"line {lineno}", _describe(e.errors()[0]) + more
            ) from None
    return out


POOL_COLUMNS = (
    "pool",
    "coin",
    "hosts",
    "ports",
    "tls",
    "dialect",
    "variant",
    "flags",
    "rev",
    "source",
)
DOMAIN_COLUMNS = ("domain", "pools", "flags", "note", "rev", "source")
ADDRESS_COLUMNS = ("prefix", "ports", "pool", "coin", "last_seen", "flags", "rev", "source")
PORT_COLUMNS = (
    "id",
    "rev",
    "ports",
    "mining_use",
    "hiveos_endpoints",
    "hiveos_pools",
    "hiveos_tls",
    "nmap_service",
    "nmap_freq",
    "legit_traffic",
    "note",
    "source",
)
EFFICIENCY_COLUMNS = (
    "id",
    "rev",
    "algorithm",
    "device",
    "class",
    "hashrate",
    "hashrate_unit",
    "power_w",
    "efficiency",
    "efficiency_unit",
    "year",
    "flags",
    "source",
)


@dataclass
class _Layer:
    """What one directory contributes, keyed by id, with where each entry came from."""

    where: dict[tuple[str, Any], tuple[str, str]] = field(default_factory=dict)
    sources: dict[str, Source] = field(default_factory=dict)
    dialects: dict[str, Dialect] = field(default_factory=dict)
    variants: dict[str, Variant] = field(default_factory=dict)
    coin_hints: dict[str, CoinHint] = field(default_factory=dict)
    agents: dict[str, Agent] = field(default_factory=dict)
    wallets: dict[str, WalletFormat] = field(default_factory=dict)
    endpoints: dict[tuple, Endpoint] = field(default_factory=dict)
    domains: dict[str, Domain] = field(default_factory=dict)
    ports: dict[str, PortInfo] = field(default_factory=dict)
    efficiency: dict[str, EfficiencyRow] = field(default_factory=dict)
    addresses: dict[tuple[str, str], PoolAddress] = field(default_factory=dict)


def _read_dir(directory: Path, required: bool) -> _Layer:
    if not directory.is_dir():
        raise FingerprintError(str(directory), None, "fingerprint directory not found")
    present = {p.name for p in directory.iterdir() if p.is_file()}
    unknown = sorted(n for n in present if n.endswith((".yaml", ".yml", ".csv")) and n not in FILES)
    if unknown:
        raise FingerprintError(
            str(directory / unknown[0]),
            None,
            f"unknown fingerprint file (expected one of {', '.join(FILES)})",
        )
    if required:
        missing = [n for n in FILES if n not in present and n not in OPTIONAL_FILES]
        if missing:
            raise FingerprintError(
                str(directory / missing[0]), None, "required fingerprint file is missing"
            )
    layer = _Layer()
    p = directory / "sources.yaml"
    if p.exists():
        f, lines = _validate_yaml(p, _SourcesFile)
        layer.sources = _entries(p, "sources", f.sources, lines, layer.where)
    p = directory / "dialects.yaml"
    if p.exists():
        f, lines = _validate_yaml(p, _DialectsFile)
        layer.dialects = _entries(p, "dialects", f.dialects, lines, layer.where)
        layer.variants = _entries(p, "variants", f.variants, lines, layer.where)
        layer.coin_hints = _entries(p, "coin_hints", f.coin_hints, lines, layer.where)
        clash = set(layer.dialects) & set(layer.variants)
        if clash:
            raise FingerprintError(
                str(p), None, f"id used by both a dialect and a variant: {min(clash)!r}"
            )
    p = directory / "agents.yaml"
    if p.exists():
        f, lines = _validate_yaml(p, _AgentsFile)
        layer.agents = _entries(p, "agents", f.agents, lines, layer.where)
    p = directory / "wallets.yaml"
    if p.exists():
        f, lines = _validate_yaml(p, _WalletsFile)
        layer.wallets = _entries(p, "wallets", f.wallets, lines, layer.where)
    p = directory / "pools.csv"
    if p.exists():
        for lineno, row in _csv_models(p, _PoolRow, POOL_COLUMNS):
            for host in row.hosts:
                for port in row.ports or [None]:
                    ep = Endpoint(
                        row.pool,
                        row.coin,
                        host,
                        port,
                        row.tls,
                        tuple(row.dialect),
                        row.variant,
                        row.flags,
                        row.rev,
                        row.source,
                        lineno,
                    )
                    if ep.key in layer.endpoints:
                        raise FingerprintError(
                            str(p),
                            f"line {lineno}",
                            f"duplicate endpoint {host}:{port} for {row.pool} {row.coin} tls={row.tls} "
                            f"(also on line {layer.endpoints[ep.key].line})",
                        )
                    layer.endpoints[ep.key] = ep
                    layer.where[("endpoints", ep.key)] = (str(p), f"line {lineno}")
    p = directory / "addresses.csv"
    if p.exists():
        for lineno, row in _csv_models(p, _AddressRow, ADDRESS_COLUMNS):
            key = (row.prefix, row.pool)
            if key in layer.addresses:
                raise FingerprintError(str(p), f"line {lineno}",
                                       f"duplicate prefix {row.prefix} for {row.pool}")
            layer.addresses[key] = PoolAddress(row.prefix, tuple(row.ports), row.pool, row.coin,
                                               row.last_seen, row.flags, row.rev, row.source)
            layer.where[("addresses", key)] = (str(p), f"line {lineno}")
    p = directory / "domains.csv"
    if p.exists():
        for lineno, row in _csv_models(p, _DomainRow, DOMAIN_COLUMNS):
            if row.domain in layer.domains:
                raise FingerprintError(str(p), f"line {lineno}", f"duplicate domain {row.domain!r}")
            layer.domains[row.domain] = Domain(
                row.domain, tuple(row.pools), row.flags, row.note, row.rev, row.source
            )
            layer.where[("domains", row.domain)] = (str(p), f"line {lineno}")
    p = directory / "ports.csv"
    if p.exists():
        for lineno, row in _csv_models(p, _PortRow, PORT_COLUMNS):
            if row.id in layer.ports:
                raise FingerprintError(str(p), f"line {lineno}", f"duplicate id {row.id!r}")
            layer.ports[row.id] = PortInfo(
                row.id,
                row.rev,
                tuple(row.ports),
                row.mining_use,
                row.hiveos_endpoints,
                row.hiveos_pools,
                row.hiveos_tls,
                row.nmap_service,
                row.nmap_freq,
                row.legit_traffic,
                row.note,
                row.source,
            )
    p = directory / "efficiency.csv"
    if p.exists():
        for lineno, row in _csv_models(p, EfficiencyRow, EFFICIENCY_COLUMNS):
            if row.id in layer.efficiency:
                raise FingerprintError(str(p), f"line {lineno}", f"duplicate id {row.id!r}")
            layer.efficiency[row.id] = row
            layer.where[("efficiency", row.id)] = (str(p), f"line {lineno}")
    return layer


def _merge(base: _Layer, extra: _Layer) -> None:
    """Entries of ``extra`` replace those of ``base`` with the same id (key); disabled ones are dropped."""
    for name in (
        "sources",
        "dialects",
        "variants",
        "coin_hints",
        "agents",
        "wallets",
        "endpoints",
        "domains",
        "ports",
        "efficiency",
        "addresses",
    ):
        getattr(base, name).update(getattr(extra, name))
    base.where.update(extra.where)


def _drop_disabled(layer: _Layer) -> None:
    for name in ("sources", "dialects", "variants", "coin_hints", "agents", "wallets"):
        table = getattr(layer, name)
        for key in [k for k, v in table.items() if v.disabled]:
            del table[key]
    for name in ("endpoints", "domains", "efficiency", "addresses"):
        table = getattr(layer, name)
        for key in [k for k, v in table.items() if "disabled" in v.flags]:
            del table[key]


def _check_references(layer: _Layer) -> None:
    """Ids that one file names in another must exist (after extra directories were merged)."""

    def fail(kind: str, key: Any, reason: str) -> None:
        path, loc = layer.where.get((kind, key), (kind, str(key)))
        raise FingerprintError(path, loc, reason)

    blob_versions: dict[tuple[str, int], str] = {}
    for v in layer.variants.values():
        for d in v.dialects:
            if d not in layer.dialects:
                fail("variants", v.id, f"unknown dialect {d!r}")
        for coin, versions in v.recognise.blob_major_versions.items():
            for n in versions:
                other = blob_versions.setdefault((coin, n), v.id)
                if other != v.id:
                    fail("variants", v.id,
                         f"blob major version {n} of {coin} is also claimed by {other!r}")
    for a in layer.agents.values():
        for d in a.dialects:
            if d not in layer.dialects:
                fail("agents", a.id, f"unknown dialect {d!r}")
    for key, ep in layer.endpoints.items():
        for d in ep.dialects:
            if d not in layer.dialects:
                fail("endpoints", key, f"unknown dialect {d!r}")
        if ep.variant is not None and ep.variant not in layer.variants:
            fail("endpoints", key, f"unknown variant {ep.variant!r}")
    algorithms = {a for v in layer.variants.values() for a in v.algorithms}
    for rid, row in layer.efficiency.items():
        if row.algorithm not in algorithms:
            fail(
                "efficiency",
                rid,
                f"algorithm {row.algorithm!r} is not listed by any variant in dialects.yaml",
            )
    for kind in ("endpoints", "domains", "efficiency"):
        for key, item in getattr(layer, kind).items():
            for ref in _SOURCE_KEY.findall(item.source):
                if ref not in layer.sources:
                    fail(kind, key, f"source abbreviation {{{ref}}} is not in sources.yaml")


def _stamp(directory: Path) -> tuple:
    """Names, sizes and mtimes of a directory's fingerprint files: a changed file is re-read."""
    if not directory.is_dir():
        return ()
    return tuple(
        sorted(
            (p.name, p.stat().st_size, p.stat().st_mtime_ns)
            for p in directory.iterdir()
            if p.is_file()
        )
    )


@functools.lru_cache(maxsize=32)
def _read_dir_cached(directory: Path, required: bool, stamp: tuple) -> _Layer:
    return _read_dir(directory, required)


def _layer(directory: Path, required: bool) -> _Layer:
    """A directory's entries, read once per content; a copy, so merging never changes the cache."""
    cached = _read_dir_cached(directory, required, _stamp(directory))
    return _Layer(**{name: dict(getattr(cached, name)) for name in _Layer.__dataclass_fields__})


def _build(dirs: Sequence[Path]) -> Fingerprints:
    layer = _layer(dirs[0], required=True)
    for extra in dirs[1:]:
        _merge(layer, _layer(extra, required=False))
    _drop_disabled(layer)
    _check_references(layer)
    return Fingerprints(
        sources=layer.sources,
        dialects=layer.dialects,
        variants=layer.variants,
        coin_hints=layer.coin_hints,
        agents=layer.agents,
        wallets=layer.wallets,
        endpoints=layer.endpoints,
        domains=layer.domains,
        ports=layer.ports,
        efficiency=layer.efficiency,
        addresses=layer.addresses,
    )


@functools.lru_cache(maxsize=8)
def _load_cached(dirs: tuple[Path, ...], stamps: tuple) -> Fingerprints:
    cache = _disk_cache_path(dirs)
    if cache is not None:
        try:
            with open(cache, "rb") as fh, _no_gc():
                # a pickle runs code when loaded: only one this user wrote is trusted
                if hasattr(os, "getuid") and os.fstat(fh.fileno()).st_uid != os.getuid():
                    raise PermissionError("the cache file belongs to another user")
                found = pickle.load(fh)
            if isinstance(found, Fingerprints):
                return found
        except FileNotFoundError:
            pass
        except Exception as exc:  # noqa: BLE001 - any damage means: build it again
            log.debug("fingerprint cache %s unusable (%s): rebuilt", cache, exc)
    fp = _build(dirs)
    if cache is not None:
        _write_disk_cache(cache, fp)
    return fp


@contextlib.contextmanager
def _no_gc() -> Iterator[None]:
    """Unpickling makes ~100,000 objects and no garbage: the collections their allocation
    triggers (each walking every object made so far) were half the load's time."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def cache_dir() -> Path | None:
    """Where validated fingerprint sets are kept between runs: ``POOLWATCH_CACHE_DIR``,
    else ``$XDG_CACHE_HOME/poolwatch``, else ``~/.cache/poolwatch``; ``POOLWATCH_CACHE_DIR``
    set to an empty string turns the cache off (None)."""
    chosen = os.environ.get("POOLWATCH_CACHE_DIR")
    if chosen is not None:
        return Path(chosen) if chosen else None
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "poolwatch"


def _disk_cache_path(dirs: tuple[Path, ...]) -> Path | None:
    """The cache file of this set of directories as they are now: named by a SHA-256 of
    every fingerprint file's name and bytes (and of the versions whose objects it holds), so
    an edited, added or removed file, or another version of this module (whose classes the
    file holds), of pydantic or of Python makes another name. Validating the files took a
    fifth of a second of every command that detects anything."""
    where = cache_dir()
    if where is None:
        return None
    digest = hashlib.sha256(f"{_CACHE_FORMAT} {pydantic.VERSION} {sys.version_info[:2]}".encode())
    try:
        digest.update(Path(__file__).read_bytes())
        for directory in dirs:
            digest.update(b"\0dir " + str(directory).encode())
            if not directory.is_dir():
                continue
            for path in sorted(directory.iterdir()):
                if path.is_file() and path.name in FILES:
                    data = path.read_bytes()
                    digest.update(b"\0%s %d\0" % (path.name.encode(), len(data)) + data)
    except OSError:
        return None  # the build that follows says what cannot be read
    return where / f"fingerprints-{digest.hexdigest()[:32]}.pickle"


def _write_disk_cache(path: Path, fp: Fingerprints) -> None:
    """Written to a temporary file and renamed: a reader never sees half a file. A cache
    that cannot be written is not an error (a read-only home, a full disk)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        with open(tmp, "wb") as fh:
            pickle.dump(fp, fh, protocol=pickle.HIGHEST_PROTOCOL)
        os.replace(tmp, path)
    except (OSError, pickle.PicklingError) as exc:
        log.debug("fingerprint cache %s not written: %s", path, exc)
        with contextlib.suppress(OSError):
            tmp.unlink()  # no half-written file left behind


def load_fingerprints(
    extra_dirs: Iterable[str | Path] = (), base_dir: str | Path | None = None
) -> Fingerprints:
    """The validated fingerprint set: the bundled files (or ``base_dir``), then each extra
    directory in order, whose entries add to or replace bundled ones with the same id
    (pools: the same pool, host, port, coin and tls). Loaded and validated once per set of
    directories and their content: an edited file is read again on the next call."""
    if isinstance(extra_dirs, (str, Path)):
        extra_dirs = (extra_dirs,)
    base = Path(base_dir) if base_dir is not None else default_dir()
    dirs = tuple(Path(d).resolve() for d in (base, *extra_dirs))
    return _load_cached(dirs, tuple(_stamp(d) for d in dirs))


# ---------------------------------------------------------------------------- writing files


def _yaml_dump(path: Path, header: dict, lists: dict[str, Iterable[BaseModel]]) -> None:
    import yaml

    doc = dict(header)
    for key, items in lists.items():
        doc[key] = [m.model_dump(mode="json", by_alias=True, exclude_defaults=True) for m in items]
    path.write_text(
        yaml.safe_dump(doc, sort_keys=False, allow_unicode=True, width=120), encoding="utf-8"
    )


def _csv_dump(path: Path, columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> None:
    with path.open("w", newline="", encoding="utf-8") as fh:
        fh.write(
            "# poolwatch fingerprints, written by poolwatch.fingerprints.dump_fingerprints; see README.md\n"
        )
        writer = csv.writer(fh, lineterminator="\n")
        writer.writerow(columns)
        writer.writerows(["" if v is None else v for v in row] for row in rows)


def _num(v: float | None) -> str:
    return "" if v is None else repr(v)


def dump_fingerprints(fp: Fingerprints, directory: str | Path) -> None:
    """Write a fingerprint set in the files' own schema (pools grouped host x port again),
    so that loading the directory gives an equal set."""
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    _yaml_dump(out / "sources.yaml", {"schema": 1}, {"sources": fp.sources.values()})
    _yaml_dump(
        out / "dialects.yaml",
        {"schema": 1},
        {
            "dialects": fp.dialects.values(),
            "variants": fp.variants.values(),
            "coin_hints": fp.coin_hints.values(),
        },
    )
    _yaml_dump(out / "agents.yaml", {"schema": 1}, {"agents": fp.agents.values()})
    _yaml_dump(out / "wallets.yaml", {"schema": 1}, {"wallets": fp.wallets.values()})

    groups: dict[tuple, dict[str, list[int | None]]] = {}
    for ep in fp.endpoints.values():
        k = (
            ep.pool,
            ep.coin,
            ep.tls,
            "|".join(ep.dialects),
            ep.variant or "",
            " ".join(sorted(ep.flags)),
            ep.rev,
            ep.source,
        )
        groups.setdefault(k, {}).setdefault(ep.host, []).append(ep.port)
    pool_rows = []
    for k, hosts in groups.items():
        by_ports: dict[tuple, list[str]] = {}
        for host, ports in hosts.items():
            by_ports.setdefault(tuple(sorted(ports, key=lambda p: p or 0)), []).append(host)
        for ports, hs in by_ports.items():
            port_text = "" if ports == (None,) else " ".join(str(p) for p in ports)
            pool_rows.append([k[0], k[1], " ".join(sorted(hs)), port_text, *k[2:]])
    pool_rows.sort(key=lambda r: (r[0].lower(), r[1], r[2], r[3], r[4]))
    _csv_dump(out / "pools.csv", POOL_COLUMNS, pool_rows)
    _csv_dump(
        out / "domains.csv",
        DOMAIN_COLUMNS,
        (
            [d.domain, "|".join(d.pools), " ".join(sorted(d.flags)), d.note, d.rev, d.source]
            for d in fp.domains.values()
        ),
    )
    _csv_dump(
        out / "ports.csv",
        PORT_COLUMNS,
        (
            [
                p.id,
                p.rev,
                " ".join(str(lo) if lo == hi else f"{lo}-{hi}" for lo, hi in p.ports),
                p.mining_use,
                p.hiveos_endpoints,
                p.hiveos_pools,
                p.hiveos_tls,
                p.nmap_service,
                _num(p.nmap_freq),
                p.legit_traffic,
                p.note,
                p.source,
            ]
            for p in fp.ports.values()
        ),
    )
    _csv_dump(
        out / "efficiency.csv",
        EFFICIENCY_COLUMNS,
        (
            [
                r.id,
                r.rev,
                r.algorithm,
                r.device,
                r.class_,
                repr(r.hashrate),
                r.hashrate_unit,
                _num(r.power_w),
                _num(r.efficiency),
                r.efficiency_unit,
                r.year,
                " ".join(sorted(r.flags)),
                r.source,
            ]
            for r in fp.efficiency.values()
        ),
    )
    _csv_dump(
        out / "addresses.csv",
        ADDRESS_COLUMNS,
        (
            [a.prefix, " ".join(str(p) for p in a.ports), a.pool, a.coin, a.last_seen.isoformat(),
             " ".join(sorted(a.flags)), a.rev, a.source]
            for a in fp.addresses.values()
        ),
    )
