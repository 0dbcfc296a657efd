"""Every ISP record file of a deployment, recognised by content and loaded by its loader.

``poolwatch scan --subscribers DIR_OR_FILES`` and ``poolwatch leads`` take a mix of files:
the registry, static assignments, RADIUS detail files, dhcpd.leases, Kea lease CSV, CGNAT
logs and meter readings. Names vary from one ISP to the next, so each file is recognised by
its first few kilobytes (each loader's ``looks_like``), and all files of one kind go to their
loader together (rotated RADIUS files pair Starts and Stops across the rotation).
"""

from __future__ import annotations

import gzip
import os
import zlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from . import cgnat, dhcp, meters, radius, registry
from .model import (Assignment, LinkInputError, Loaded, LoadReport, MeterReading, PortBlock,
                    Subscriber)
from .resolve import AssignmentIndex, LinkSettings, PortBlockIndex, Resolver

HEAD_BYTES = 4096

# (kind, recogniser) in the order they are tried: the specific formats first, the CSV
# shapes (which only look at column names) last.
_KINDS = (
    ("radius", radius.looks_like),
    ("dhcp-isc", dhcp.looks_like_isc),
    ("dhcp-kea", dhcp.looks_like_kea),
    ("cgnat", cgnat.looks_like),
    ("meters", meters.looks_like),
    ("static", registry.looks_like_static),
    ("registry", registry.looks_like_registry),
)
KNOWN = ("registry CSV, static assignments CSV, FreeRADIUS detail, ISC dhcpd.leases, "
         "Kea lease CSV, CGNAT CSV or Junos syslog, meter CSV")


@dataclass(slots=True)
class IspRecords:
    """What the ISP's files say, and what each file gave (``reports``)."""

    subscribers: list[Subscriber] = field(default_factory=list)
    assignments: list[Assignment] = field(default_factory=list)
    port_blocks: list[PortBlock] = field(default_factory=list)
    meters: list[MeterReading] = field(default_factory=list)
    reports: list[LoadReport] = field(default_factory=list)
    skipped_files: list[tuple[str, str]] = field(default_factory=list)  # (path, why)

    def resolver(self, settings: LinkSettings | None = None) -> Resolver:
        """A resolver over these records (indexes built once)."""
        return Resolver(self.subscribers, AssignmentIndex.from_rows(self.assignments),
                        PortBlockIndex.from_rows(self.port_blocks), settings)

    def summary(self) -> str:
        """One line per file kind: rows loaded and skipped."""
        by_kind: dict[str, list[int]] = {}
        for r in self.reports:
            tally = by_kind.setdefault(r.kind, [0, 0, 0])
            tally[0] += 1
            tally[1] += r.loaded
            tally[2] += r.skipped
        return "; ".join(f"{kind}: {n} file(s), {loaded:,} rows loaded, {skipped:,} skipped"
                         for kind, (n, loaded, skipped) in sorted(by_kind.items()))


def head_text(path: Path) -> str:
    """The first few KB of a file as text (gunzipped when it is gzip)."""
    try:
        with open(path, "rb") as raw:
            data = raw.read(HEAD_BYTES)
        if data[:2] == b"\x1f\x8b":
            with gzip.open(path, "rb") as unzipped:
                data = unzipped.read(HEAD_BYTES)
    except (OSError, EOFError, zlib.error) as exc:
        raise LinkInputError(str(path), None, f"cannot read: {exc}") from None
    return data.decode("utf-8-sig", errors="replace")


def classify(path: Path) -> str | None:
    head = head_text(path)
    return next((kind for kind, looks in _KINDS if looks(head)), None)


def _expand(paths: Iterable[str | os.PathLike]) -> list[tuple[Path, bool]]:
    """(file, named directly) for each path; directories recursively, sorted."""
    out: list[tuple[Path, bool]] = []
    for p in map(Path, paths):
        if p.is_dir():
            out += [(f, False) for f in sorted(p.rglob("*"))
                    if f.is_file() and not f.name.startswith(".")]
        elif p.exists():
            out.append((p, True))
        else:
            raise LinkInputError(str(p), None, "no such file or directory")
    return out


def load_isp_records(paths: Iterable[str | os.PathLike], tz: str | None = None) -> IspRecords:
    """Load every ISP record file under ``paths``. A file named directly that is none of the
    known formats is an error; one found in a directory is skipped and listed (directories
    hold READMEs and captures too). Bad rows are in the reports, never fatal."""
    groups: dict[str, list[str]] = {}
    records = IspRecords()
    for path, direct in _expand(paths):
        kind = classify(path)
        if kind is None:
            if direct:
                raise LinkInputError(str(path), None, f"not an ISP record file poolwatch "
                                                      f"knows ({KNOWN})")
            records.skipped_files.append((str(path), "not a known ISP record format"))
            continue
        groups.setdefault(kind, []).append(str(path))
    loaders = {
        "registry": lambda f: registry.load_registry(f, tz),
        "static": lambda f: registry.load_static(f, tz),
        "radius": lambda f: radius.load_radius_detail(f, tz),
        "dhcp-isc": lambda f: dhcp.load_isc_leases(f, tz),
        "dhcp-kea": dhcp.load_kea_leases,
        "cgnat": lambda f: cgnat.load_cgnat(f, tz),
        "meters": lambda f: meters.load_meters(f, tz),
    }
    for kind, files in groups.items():
        loaded: Loaded = loaders[kind](files)
        records.reports += loaded.reports
        if kind == "registry":
            records.subscribers += loaded.rows
        elif kind == "cgnat":
            records.port_blocks += loaded.rows
        elif kind == "meters":
            records.meters += loaded.rows
        else:
            records.assignments += loaded.rows
    return records
