"""The subscriber registry and static assignments: who an ISP's customers are, and what they hold.

Formats: docs/inputs/registry.md. The first half of this module is a small CSV toolkit that the
``cgnat`` and ``meters`` loaders share (header spellings, BOM, gzip, delimiter, line numbers).

The csv module, not pandas: a bad row must become a :class:`LoadIssue` with its physical line
number while the rest of the file loads, each cell is checked by hand anyway (MACs, CIDRs,
times), and a quoted cell spanning lines would make pandas' row index differ from the line.
"""

from __future__ import annotations

import codecs
import csv
import functools
import gzip
import ipaddress
import math
import os
import re
import unicodedata
import zlib
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import tzinfo
from typing import IO

from ..errors import ConfigError
from .model import (
    normalise_mac,
    ENTITY_TYPES,
    Assignment,
    IpNetwork,
    LinkInputError,
    Loaded,
    LoadReport,
    Origin,
    Subscriber,
)
from .times import parse_time, zone

PathLike = str | os.PathLike
Paths = PathLike | Iterable[PathLike]

# --------------------------------------------------------------------------------------------
# CSV reading shared by the link loaders
# --------------------------------------------------------------------------------------------

_GZIP_MAGIC = b"\x1f\x8b"
_DELIMITERS = (",", ";", "\t", "|")


def as_paths(paths: Paths) -> list[str]:
    """One path or many, as strings (the form reports and origins carry)."""
    if isinstance(paths, (str, os.PathLike)):
        return [os.fspath(paths)]
    return [os.fspath(p) for p in paths]


def as_zone(tz: str | tzinfo | None) -> tzinfo:
    """The zone for times written without one: an IANA name, a tzinfo, or None for UTC."""
    if isinstance(tz, tzinfo):
        return tz
    try:
        return zone(tz)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None


def open_binary(path: str) -> IO[bytes]:
    """A file's bytes, gunzipped when it starts with the gzip magic.

    The magic decides, not the name: exports get renamed, and ``.csv.gz`` files get unpacked
    without losing the suffix.
    """
    try:
        with open(path, "rb") as probe:
            magic = probe.read(2)
        return gzip.open(path, "rb") if magic == _GZIP_MAGIC else open(path, "rb")
    except FileNotFoundError:
        raise LinkInputError(path, None, "no such file") from None
    except IsADirectoryError:
        raise LinkInputError(path, None, "is a directory, not a file") from None
    except OSError as exc:
        raise LinkInputError(path, None, f"cannot open: {exc.strerror or exc}") from None


def text_lines(raw: IO[bytes], path: str, report: LoadReport,
               errors: str = "strict") -> Iterator[str]:
    """The lines of ``raw`` as UTF-8 text (a BOM dropped), decoded one by one so that a bad
    byte is pinned to its line.

    Failing on line 1 means the file cannot be read at all (LinkInputError). A later line that
    is not UTF-8 is an issue and comes out blank (so later line numbers stay right); a
    truncated or corrupt .gz is an issue on the line it stops at, and reading stops there.
    """
    number = 0
    while True:
        try:
            data = raw.readline()
        except (EOFError, OSError, zlib.error) as exc:
            reason = ("the compressed file ends early (truncated .gz)"
                      if isinstance(exc, EOFError) else f"cannot read: {exc}")
            if number == 0:
                raise LinkInputError(path, 1, reason) from None
            report.issue(number + 1, f"stopped reading: {reason}")
            return
        if not data:
            return
        number += 1
        if number == 1 and data.startswith(codecs.BOM_UTF8):
            data = data[len(codecs.BOM_UTF8):]
        try:
            yield data.decode("utf-8", errors)
        except UnicodeDecodeError as exc:
            reason = (f"not UTF-8 text at byte {exc.start + 1} of the line (GBK/GB18030 or "
                      "Latin-1 exports must be saved as UTF-8)")
            if number == 1:
                raise LinkInputError(path, 1, reason) from None
            report.issue(number, reason)
            yield "\n"


def norm_key(name: str) -> str:
    """A header as compared: case, spaces, underscores, hyphens and punctuation ignored."""
    return re.sub(r"[\W_]+", "_", name.replace("\ufeff", "").casefold()).strip("_")


def sniff_delimiter(header_line: str) -> str:
    """The delimiter the header uses most: ``,`` unless ``;``, tab or ``|`` is commoner."""
    counts = {d: header_line.count(d) for d in _DELIMITERS}
    best = max(_DELIMITERS, key=lambda d: counts[d])
    return best if counts[best] > 0 else ","


def head_keys(head: str) -> set[str]:
    """The normalised column names of the first non-empty line of ``head`` (for sniffing)."""
    text = head.lstrip("\ufeff")
    first = next((ln for ln in text.splitlines() if ln.strip()), "")
    if not first:
        return set()
    try:
        cells = next(csv.reader([first], delimiter=sniff_delimiter(first)))
    except (csv.Error, StopIteration):
        return set()
    return {norm_key(c) for c in cells}


def has_column(keys: set[str], spec: Mapping[str, Sequence[str]], canon: str) -> bool:
    """Whether a header (as :func:`head_keys`) names ``canon`` or one of its spellings."""
    return canon in keys or any(alias in keys for alias in spec[canon])


@dataclass(slots=True)
class CsvRow:
    """One data row: known columns by their canonical name, every other column as written."""

    line: int
    cells: dict[str, str]
    extra: dict[str, str]

    def get(self, canon: str) -> str:
        return self.cells.get(canon, "")


class CsvTable:
    """A CSV file with a header row, its columns resolved against a spelling table.

    ``spec`` maps each canonical column to its accepted spellings (normalised). A canonical
    name takes the first header cell that matches it, its own name before any synonym, so
    ``entity_name`` beats ``name``; header cells that match nothing, or lose to another, are
    kept in each row's ``extra`` under the header as written.
    """

    def __init__(self, path: str, report: LoadReport, spec: Mapping[str, Sequence[str]]) -> None:
        self.path = path
        self.report = report
        self._stream = open_binary(path)
        self._lines = text_lines(self._stream, path, report)
        first = next(self._lines, None)
        if first is None or not first.strip():
            self._stream.close()
            raise LinkInputError(path, 1, "empty file: expected a header row")
        self.delimiter = sniff_delimiter(first)
        self.header = [h.replace("\ufeff", "").strip()
                       for h in next(csv.reader([first], delimiter=self.delimiter))]
        keys = [norm_key(h) for h in self.header]
        self.columns: dict[str, int] = {}
        taken: set[int] = set()
        for canon, aliases in spec.items():
            for alias in (canon, *aliases):
                index = next((i for i, k in enumerate(keys) if k == alias and i not in taken),
                             None)
                if index is not None:
                    self.columns[canon] = index
                    taken.add(index)
                    break
        self._extra = [(i, h) for i, h in enumerate(self.header) if i not in taken and h]

    def close(self) -> None:
        self._stream.close()

    def __contains__(self, canon: str) -> bool:
        return canon in self.columns

    def require(self, *needs: str | tuple[str, ...]) -> None:
        """Raise naming every missing column; a tuple means "at least one of these"."""
        missing = []
        for need in needs:
            options = need if isinstance(need, tuple) else (need,)
            if not any(o in self.columns for o in options):
                missing.append(" or ".join(options))
        if missing:
            self.close()
            raise LinkInputError(
                self.path, 1,
                f"missing required column(s): {', '.join(missing)} "
                f"(header has: {', '.join(self.header) or 'nothing'})")

    def rows(self) -> Iterator[CsvRow]:
        """Data rows with the line each starts on; blank rows skipped, malformed ones issued."""
        width = len(self.header)
        reader = csv.reader(self._lines, delimiter=self.delimiter, strict=True)
        previous = 1  # the header line
        try:
            while True:
                try:
                    cells = next(reader)
                except StopIteration:
                    return
                except csv.Error as exc:
                    hint = " (an unclosed quote here runs to the end of the file)" * (
                        "end of data" in str(exc))
                    self.report.issue(previous + 1, f"not CSV: {exc}{hint}")
                    previous = reader.line_num + 1
                    continue
                # reader.line_num counts from the first line after the header
                line, previous = previous + 1, reader.line_num + 1
                if not any(c.strip() for c in cells):
                    continue
                if len(cells) > width:
                    span = f" (lines {line}-{previous}: an unclosed quote?)" * (previous > line)
                    self.report.issue(line, f"{len(cells)} fields where the header has {width}"
                                            f"{span}")
                    continue
                values = [c.strip() for c in cells] + [""] * (width - len(cells))
                yield CsvRow(
                    line,
                    {canon: values[i] for canon, i in self.columns.items()},
                    {name: values[i] for i, name in self._extra if values[i]},
                )
        finally:
            self._stream.close()


# --------------------------------------------------------------------------------------------
# Column spellings
# --------------------------------------------------------------------------------------------

SUBSCRIBER_ID = ("subscriber", "subscriber_no", "subscriber_number", "sub_id", "customer_id",
                 "customer_no", "customer_number", "account_id", "account_no", "account_number",
                 "account", "contract_id", "contract_no", "contract_number")
ENTITY_ID = ("entity", "entity_no", "entity_number", "org_id", "organisation_id",
             "organization_id", "company_id", "holder_id")

REGISTRY_COLUMNS: dict[str, tuple[str, ...]] = {
    "subscriber_id": SUBSCRIBER_ID,
    "entity_id": ENTITY_ID,
    "entity_name": ("organisation_name", "organization_name", "org_name", "company_name",
                    "holder_name", "customer_name", "organisation", "organization", "company",
                    "holder", "name"),
    "entity_type": ("type", "category", "customer_type", "customer_category", "subscriber_type",
                    "business_type", "segment"),
    "registration_number": ("registration_no", "reg_no", "reg_number", "registration",
                            "company_number", "company_registration_number",
                            "business_registration_number", "business_licence_number",
                            "business_license_number", "licence_number", "license_number",
                            "unified_social_credit_code", "uscc", "tax_id", "vat_number"),
    "address": ("physical_address", "site_address", "service_address", "installation_address",
                "premises_address", "street_address"),
    "region": ("province", "state", "district", "county", "prefecture", "area"),
    "latitude": ("lat",),
    "longitude": ("lon", "lng", "long"),
    "cpe_mac": ("cpe_mac_address", "mac", "mac_address", "router_mac", "modem_mac", "ont_mac",
                "onu_mac"),
}

STATIC_COLUMNS: dict[str, tuple[str, ...]] = {
    "network": ("prefix", "cidr", "subnet", "ip_network", "ip_prefix", "ip_block", "ip",
                "ip_address"),
    "subscriber_id": SUBSCRIBER_ID,
    "valid_from": ("from", "start", "start_time", "since", "valid_since", "assigned_at",
                   "effective_from", "not_before", "begin"),
    "valid_to": ("to", "end", "end_time", "until", "valid_until", "unassigned_at",
                 "released_at", "effective_to", "expires", "not_after"),
}

# Spellings of entity types, compared with case, accents and everything but letters and
# digits removed ("Data-Centre", "data center" and "DATACENTER" are all "datacentre").
_ENTITY_SPELLINGS: dict[str, tuple[str, ...]] = {
    "residential": ("residential", "residence", "resident", "home", "household", "domestic",
                    "consumer", "individual", "personal", "住宅", "家庭", "个人", "居民"),
    "enterprise": ("enterprise", "company", "business", "corporate", "corporation",
                   "commercial", "sme", "firm", "企业", "公司", "商业"),
    "datacentre": ("datacentre", "datacenter", "dc", "idc", "colocation", "colo", "hosting",
                   "serverroom", "数据中心", "机房"),
    "internet_cafe": ("internetcafe", "cybercafe", "netcafe", "netbar", "lancafe", "gamingcafe",
                      "pcbang", "网吧", "网咖"),
    "government": ("government", "gov", "govt", "publicsector", "publicadministration",
                   "municipal", "政府", "机关"),
    "education": ("education", "school", "university", "college", "academy", "campus", "edu",
                  "学校", "大学", "教育"),
    "other": ("other", "others", "其他"),
}
_ENTITY_TYPE = {spelling: canon for canon, spellings in _ENTITY_SPELLINGS.items()
                for spelling in spellings}
assert set(_ENTITY_SPELLINGS) == set(ENTITY_TYPES)


@functools.lru_cache(maxsize=4096)  # a registry repeats a handful of spellings
def entity_type(text: str) -> str | None:
    """The ENTITY_TYPES name a spelling means, or None for a spelling we do not know."""
    folded = unicodedata.normalize("NFKD", text.casefold())
    key = "".join(c for c in folded if c.isalnum() and not unicodedata.combining(c))
    return _ENTITY_TYPE.get(key)


# --------------------------------------------------------------------------------------------
# Sniffing
# --------------------------------------------------------------------------------------------


def looks_like_registry(head: str) -> bool:
    """A header with a subscriber id, at least two entity columns, and no network column."""
    keys = head_keys(head)
    entity = sum(has_column(keys, REGISTRY_COLUMNS, c)
                 for c in ("entity_id", "entity_name", "entity_type"))
    return (has_column(keys, REGISTRY_COLUMNS, "subscriber_id") and entity >= 2
            and not has_column(keys, STATIC_COLUMNS, "network"))


def looks_like_static(head: str) -> bool:
    """A header with a network (CIDR) column and a subscriber id."""
    keys = head_keys(head)
    return (has_column(keys, STATIC_COLUMNS, "network")
            and has_column(keys, STATIC_COLUMNS, "subscriber_id"))


# --------------------------------------------------------------------------------------------
# Registry
# --------------------------------------------------------------------------------------------

_ENTITY_FIELDS = ("entity_name", "entity_type", "registration_number")


@dataclass(slots=True)
class _Candidate:
    report: LoadReport
    row: CsvRow
    entity_type: str | None  # None: the cell was empty
    latitude: float | None
    longitude: float | None
    cpe_mac: str | None


def load_registry(paths: Paths, tz: str | tzinfo | None = None) -> Loaded[Subscriber]:
    """Subscribers and their entities from registry CSVs (``tz`` unused: no times in it).

    A subscriber id seen twice keeps its first row, across files too. The entity fields
    (name, type, registration number) are the entity's, not the row's: every subscriber of an
    entity gets the first non-empty value of each, and a row that disagrees is kept with an
    issue. That takes two passes, so the rows are held until every file is read.
    """
    loaded: Loaded[Subscriber] = Loaded()
    seen: dict[str, Origin] = {}
    candidates: list[_Candidate] = []
    for path in as_paths(paths):
        report = LoadReport(path, "registry")
        loaded.reports.append(report)
        table = CsvTable(path, report, REGISTRY_COLUMNS)
        table.require("subscriber_id", "entity_id", "entity_name", "entity_type")
        for row in table.rows():
            candidate = _registry_row(report, row, seen)
            if candidate is not None:
                candidates.append(candidate)

    entities = _reconcile_entities(candidates)
    for c in candidates:
        entity = entities[c.row.get("entity_id")]
        loaded.rows.append(Subscriber(
            subscriber_id=c.row.get("subscriber_id"),
            entity_id=c.row.get("entity_id"),
            entity_name=entity["entity_name"] or c.row.get("entity_name"),
            entity_type=entity["entity_type"] or "other",
            registration_number=entity["registration_number"] or None,
            address=c.row.get("address") or None,
            region=c.row.get("region") or None,
            latitude=c.latitude,
            longitude=c.longitude,
            cpe_mac=c.cpe_mac,
            extra=c.row.extra,
            origin=Origin(c.report.path, c.row.line),
        ))
        c.report.loaded += 1
    for report in loaded.reports:  # entity issues were found after the row issues
        report.issues.sort(key=lambda issue: issue.line)
    return loaded


def _registry_row(report: LoadReport, row: CsvRow, seen: dict[str, Origin]) -> _Candidate | None:
    empty = [c for c in ("subscriber_id", "entity_id", "entity_name") if not row.get(c)]
    if empty:
        report.issue(row.line, f"empty {', '.join(empty)}")
        return None
    sid = row.get("subscriber_id")
    if sid in seen:
        report.issue(row.line, f"duplicate subscriber_id {sid!r} (first at {seen[sid]}); "
                               "keeping the first")
        return None
    seen[sid] = Origin(report.path, row.line)

    raw_type = row.get("entity_type")
    kind: str | None = None
    if raw_type:
        kind = entity_type(raw_type)
        if kind is None:
            report.issue(row.line, f"entity_type {raw_type!r} is not one poolwatch knows; "
                                   "kept as 'other'", skipped=False)
            kind = "other"

    latitude = longitude = None
    try:
        latitude, longitude = _coordinates(row.get("latitude"), row.get("longitude"))
    except ValueError as exc:
        report.issue(row.line, f"{exc}; kept without coordinates", skipped=False)

    mac = None
    if row.get("cpe_mac"):
        try:
            mac = _normalise_mac(row.get("cpe_mac"))
        except ValueError as exc:
            report.issue(row.line, f"{exc}; kept without cpe_mac", skipped=False)
    return _Candidate(report, row, kind, latitude, longitude, mac)


def _reconcile_entities(candidates: list[_Candidate]) -> dict[str, dict[str, str | None]]:
    """Each entity's fields: the first non-empty value of each; a later different one is an
    issue on its row (names compare without case and repeated spaces)."""
    entities: dict[str, dict[str, str | None]] = {}
    first_at: dict[tuple[str, str], Origin] = {}
    first_row: dict[str, _Candidate] = {}
    for c in candidates:
        eid = c.row.get("entity_id")
        entity = entities.setdefault(eid, dict.fromkeys(_ENTITY_FIELDS))
        first_row.setdefault(eid, c)
        values = {"entity_name": c.row.get("entity_name"), "entity_type": c.entity_type,
                  "registration_number": c.row.get("registration_number")}
        for name, value in values.items():
            if not value:
                continue
            known = entity[name]
            if known is None:
                entity[name] = value
                first_at[eid, name] = Origin(c.report.path, c.row.line)
            elif not _same(name, known, value):
                c.report.issue(c.row.line, f"entity {eid!r}: {name} {value!r} differs from "
                                           f"{known!r} at {first_at[eid, name]}; keeping the "
                                           "first", skipped=False)
    for eid, entity in entities.items():
        if entity["entity_type"] is None:
            c = first_row[eid]
            c.report.issue(c.row.line, f"entity {eid!r} has no entity_type; kept as 'other'",
                           skipped=False)
    return entities


def _same(name: str, a: str, b: str) -> bool:
    if name == "registration_number":
        return re.sub(r"[\s\-./]", "", a).casefold() == re.sub(r"[\s\-./]", "", b).casefold()
    return " ".join(a.split()).casefold() == " ".join(b.split()).casefold()


def _coordinates(lat_text: str, lon_text: str) -> tuple[float | None, float | None]:
    if not lat_text and not lon_text:
        return None, None
    if not lat_text or not lon_text:
        raise ValueError("latitude and longitude come together (one of them is empty)")
    try:
        lat, lon = float(lat_text), float(lon_text)
    except ValueError:
        raise ValueError(f"coordinates are not numbers: {lat_text!r}, {lon_text!r}") from None
    if not (math.isfinite(lat) and -90.0 <= lat <= 90.0):
        raise ValueError(f"latitude {lat_text} is outside -90..90")
    if not (math.isfinite(lon) and -180.0 <= lon <= 180.0):
        raise ValueError(f"longitude {lon_text} is outside -180..180")
    return lat, lon


def _normalise_mac(text: str) -> str:
    """``aa:bb:cc:dd:ee:ff`` (model.normalise_mac), with the column named in the error."""
    try:
        return normalise_mac(text)
    except ValueError:
        raise ValueError(f"cpe_mac {text!r} is not a MAC address") from None


# --------------------------------------------------------------------------------------------
# Static assignments
# --------------------------------------------------------------------------------------------


def load_static(paths: Paths, tz: str | tzinfo | None = None) -> Loaded[Assignment]:
    """Static (contract) assignments: a network held by a subscriber over an interval.

    An empty ``valid_from`` means "since before any record" and is stored as 0.0 (1970),
    not -inf, so that nothing downstream has to special-case an infinite start; an empty
    ``valid_to`` is open (``math.inf``). Times without a zone are read in ``tz``.
    """
    where = as_zone(tz)
    loaded: Loaded[Assignment] = Loaded()
    for path in as_paths(paths):
        report = LoadReport(path, "static")
        loaded.reports.append(report)
        table = CsvTable(path, report, STATIC_COLUMNS)
        table.require("network", "subscriber_id")
        for row in table.rows():
            assignment = _static_row(report, row, where)
            if assignment is not None:
                loaded.rows.append(assignment)
                report.loaded += 1
    return loaded


def _static_row(report: LoadReport, row: CsvRow, where: tzinfo) -> Assignment | None:
    empty = [c for c in ("network", "subscriber_id") if not row.get(c)]
    if empty:
        report.issue(row.line, f"empty {', '.join(empty)}")
        return None
    try:
        network = parse_network(row.get("network"))
        start = parse_time(row.get("valid_from"), where) if row.get("valid_from") else 0.0
        end = parse_time(row.get("valid_to"), where, open_ok=True)
    except ValueError as exc:
        report.issue(row.line, str(exc))
        return None
    if end <= start:
        report.issue(row.line, f"valid_to {row.get('valid_to')!r} is not after valid_from "
                               f"{row.get('valid_from')!r}")
        return None
    return Assignment(network=network, start=start, end=end, identity_kind="subscriber",
                      identity=row.get("subscriber_id"), source="static",
                      origin=Origin(report.path, row.line), extra=row.extra)


def parse_network(text: str) -> IpNetwork:
    """A CIDR or a single address (a /32 or /128); host bits set is an error, not a guess."""
    try:
        return ipaddress.ip_network(text.strip(), strict=True)
    except ValueError:
        pass
    try:
        loose = ipaddress.ip_network(text.strip(), strict=False)
    except ValueError:
        raise ValueError(f"network {text!r} is not an IP address or CIDR prefix") from None
    raise ValueError(f"network {text!r} has host bits set (the prefix would be {loose})")
