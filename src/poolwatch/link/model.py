"""What every ISP record loader produces, so the resolver and the lead builder read one shape.

Loaders (``registry``, ``radius``, ``dhcp``, ``cgnat``, ``meters``) each turn one real file
format into rows of the dataclasses below, plus a :class:`LoadReport` per file. A bad row
never stops a load: it becomes a :class:`LoadIssue` with the file and line, and the rest of
the file is kept. A file that cannot be read at all (missing, wrong format from the first
line) raises :class:`LinkInputError`, naming the file.

Times are float seconds since the Unix epoch, UTC. An open interval ends at ``math.inf``.
Addresses are ``ipaddress`` networks: one host is a /32 or /128. Inside the resolver they
become the (hi, lo) uint64 halves of ``records.addr_to_halves`` (IPv4 as ``::ffff:a.b.c.d``,
so an IPv4 /24 is a /120 there), which is why ``prefix_len128`` exists.
"""

from __future__ import annotations

import ipaddress
import math
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from ..errors import PoolwatchError

IpNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

# Entity types a registry may name (docs/inputs/registry.md). Spelling variants are mapped
# onto these by the registry loader; anything else is kept as "other" with a row issue.
ENTITY_TYPES = ("residential", "enterprise", "datacentre", "internet_cafe", "government",
                "education", "other")

# What an assignment says identifies the subscriber; the resolver maps each kind to a
# subscriber through the registry (subscriber id directly; RADIUS user names; CPE MACs;
# DHCP client ids / hostnames where a registry column names them).
IDENTITY_KINDS = ("subscriber", "user", "mac", "client_id", "hostname")


class LinkInputError(PoolwatchError):
    """An ISP record file cannot be used at all. Names the file (and line, if one)."""

    def __init__(self, path: str, line: int | None, reason: str) -> None:
        self.path = str(path)
        self.line = line
        self.reason = reason
        where = self.path if line is None else f"{self.path}:{line}"
        super().__init__(f"{where}: {reason}")


@dataclass(frozen=True, slots=True)
class Origin:
    """Where a row came from, for evidence and for error messages: ``path:line``."""

    path: str
    line: int

    def __str__(self) -> str:
        return f"{self.path}:{self.line}"


@dataclass(frozen=True, slots=True)
class LoadIssue:
    """One row that was skipped (or kept with a caveat), with why."""

    path: str
    line: int
    reason: str
    skipped: bool = True

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.reason}"


@dataclass(slots=True)
class LoadReport:
    """What one file gave: rows loaded, rows skipped, and each issue with its line."""

    path: str
    kind: str  # "registry", "static", "radius", "dhcp-isc", "dhcp-kea", "cgnat", "meters"
    loaded: int = 0
    skipped: int = 0
    issues: list[LoadIssue] = field(default_factory=list)

    def issue(self, line: int, reason: str, skipped: bool = True) -> None:
        self.issues.append(LoadIssue(self.path, line, reason, skipped))
        if skipped:
            self.skipped += 1


Row = TypeVar("Row")


@dataclass(slots=True)
class Loaded(Generic[Row]):
    """Rows from one or more files of one kind, and a report per file."""

    rows: list[Row] = field(default_factory=list)
    reports: list[LoadReport] = field(default_factory=list)

    def extend(self, other: "Loaded[Row]") -> None:
        self.rows.extend(other.rows)
        self.reports.extend(other.reports)


@dataclass(frozen=True, slots=True)
class Subscriber:
    """One line of the registry: a subscriber (an access line, a contract) and its entity."""

    subscriber_id: str
    entity_id: str
    entity_name: str
    entity_type: str  # one of ENTITY_TYPES
    registration_number: str | None
    address: str | None  # physical address as written
    region: str | None
    latitude: float | None
    longitude: float | None
    cpe_mac: str | None  # normalised "aa:bb:cc:dd:ee:ff"
    extra: dict[str, str]  # every other column, kept as written (e.g. username, meter_id)
    origin: Origin


@dataclass(frozen=True, slots=True)
class Assignment:
    """An address or prefix held by one identity over a time interval.

    ``identity_kind`` says what ``identity`` is (IDENTITY_KINDS); a static assignment names
    the subscriber directly, RADIUS a user name, DHCP a MAC (plus client id / hostname in
    ``extra``). ``end_inferred`` is set when the source did not say when it ended (a RADIUS
    session without a Stop, a lease cut short by a later one) and ``end`` was derived: the
    resolver lowers confidence for it. ``session`` is the source's own session or lease key
    (Acct-Session-Id, ...), for evidence.
    """

    network: IpNetwork
    start: float
    end: float
    identity_kind: str
    identity: str
    source: str  # "static", "radius", "dhcp-isc", "dhcp-kea"
    origin: Origin
    end_inferred: bool = False
    session: str | None = None
    extra: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class PortBlock:
    """A carrier-grade NAT allocation: ``public_ip`` ports ``port_low..port_high`` (inclusive)
    were translated for ``private_ip`` from ``start`` to ``end``."""

    public_ip: ipaddress.IPv4Address | ipaddress.IPv6Address
    port_low: int
    port_high: int
    private_ip: ipaddress.IPv4Address | ipaddress.IPv6Address
    start: float
    end: float
    source: str  # "cgnat-csv", "cgnat-junos", ...
    origin: Origin
    end_inferred: bool = False


@dataclass(frozen=True, slots=True)
class MeterReading:
    """Metered electricity over one period, for an entity or a meter the registry names."""

    meter_id: str | None
    entity_id: str | None
    start: float
    end: float
    kwh: float
    origin: Origin


_HEX_DIGITS = frozenset("0123456789abcdef")


def normalise_mac(text: str) -> str:
    """One spelling for a MAC, so DHCP, RADIUS and the registry compare equal.

    Accepts ``00:11:22:33:44:55``, ``00-11-22-33-44-55``, ``0011.2233.4455``,
    ``001122334455`` and ISC's unpadded ``0:11:22:3:44:55``; returns lower-case colon form.
    Raises ValueError for anything that is not six octets.
    """
    value = text.strip().lower()
    if ":" in value and "-" in value:
        raise ValueError(f"not a MAC address (mixed separators): {text!r}")
    if ":" in value or "-" in value:
        parts = value.replace("-", ":").split(":")
        if len(parts) != 6 or not all(1 <= len(p) <= 2 for p in parts):
            raise ValueError(f"not a MAC address: {text!r}")
        digits = "".join(p.zfill(2) for p in parts)
    elif "." in value:
        parts = value.split(".")
        if len(parts) != 3 or not all(len(p) == 4 for p in parts):
            raise ValueError(f"not a MAC address: {text!r}")
        digits = "".join(parts)
    else:
        digits = value
    if len(digits) != 12 or not set(digits) <= _HEX_DIGITS:
        raise ValueError(f"not a MAC address: {text!r}")
    return ":".join(digits[i:i + 2] for i in range(0, 12, 2))


def prefix_len128(network: IpNetwork) -> int:
    """The prefix length in the resolver's 128-bit space (IPv4 sits under ::ffff:0:0/96)."""
    return network.prefixlen + 96 if network.version == 4 else network.prefixlen


def is_open(end: float) -> bool:
    return math.isinf(end)
