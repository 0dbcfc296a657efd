"""The sensor's settings: a TOML file (``capture/sensor.example.toml`` documents every key)
read into dataclasses, with command-line flags over it.

Every value is checked when the file is read, so a sensor that starts has a usable
configuration: an unknown section or key (a typo would otherwise be silently ignored for
months), a wrong type or a value out of range is a :class:`ConfigError` that names the
file (or the flag), the ``[section] key`` and what was expected.
"""

# ruff: noqa: RUF009 - _opt() returns a dataclasses.field() carrying the key's checks
from __future__ import annotations

import dataclasses
import difflib
import os
import re
import socket
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, get_type_hints
from urllib.parse import urlsplit

from poolwatch.errors import ConfigError

DEFAULT_STATE = Path("/var/lib/poolwatch-sensor")
MAX_BATCH = 10_000  # the API refuses larger ingest batches
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([KMGT]?)(i?B?)\s*$", re.IGNORECASE)


# --------------------------------------------------------------------------- sections
def _opt(default: Any = None, **check: Any) -> Any:
    """A field with its checks in metadata (kind, min, max, choices)."""
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda: type(default)(default), metadata=check)
    return field(default=default, metadata=check)


@dataclass
class SensorSettings:
    name: str = _opt("", kind="name")  # default: this host's name
    state_directory: Path = _opt(DEFAULT_STATE, kind="path")


@dataclass
class CaptureSettings:
    interface: str | None = _opt(None, kind="str")
    engine: str = _opt("packet", kind="choice", choices=("packet", "pyshark"))
    prefilter: bool = _opt(True, kind="bool")
    snaplen: int = _opt(262_144, kind="int", min=64, max=262_144)
    ring_mb: int = _opt(64, kind="int", min=1, max=65_536)
    block_kb: int = _opt(1024, kind="int", min=4, max=1 << 20)
    timeout_ms: int = _opt(200, kind="int", min=1, max=60_000)
    tick_seconds: float = _opt(1.0, kind="float", min=0.05, max=3600)

    @property
    def block_size(self) -> int:
        return self.block_kb * 1024

    @property
    def block_count(self) -> int:
        return max(1, self.ring_mb * 1024 // self.block_kb)


@dataclass
class FilesSettings:
    directory: Path | None = _opt(None, kind="path")
    pattern: str = _opt("*.pcap*", kind="str")
    settle_seconds: float = _opt(2.0, kind="float", min=0, max=86_400)
    after: str = _opt("keep", kind="choice", choices=("keep", "delete"))
    order: str = _opt("name", kind="choice", choices=("name", "mtime"))
    poll_seconds: float = _opt(1.0, kind="float", min=0.01, max=3600)
    idle_close_seconds: float = _opt(0.0, kind="float", min=0, max=86_400 * 7)
    state_file: Path | None = _opt(None, kind="path")  # default: state_directory/files.json


@dataclass
class FlowsSettings:
    host: str = _opt("0.0.0.0", kind="host")
    port: int | None = _opt(None, kind="int", min=1, max=65_535)


@dataclass
class ApiSettings:
    url: str = _opt("", kind="url")
    key: str | None = _opt(None, kind="str")
    key_file: Path | None = _opt(None, kind="path")
    batch_size: int = _opt(500, kind="int", min=1, max=MAX_BATCH)
    flush_seconds: float = _opt(5.0, kind="float", min=0.01, max=3600)
    timeout_seconds: float = _opt(10.0, kind="float", min=0.1, max=600)
    verify: bool = _opt(True, kind="bool")
    ca_file: Path | None = _opt(None, kind="path")
    retry_min_seconds: float = _opt(0.5, kind="float", min=0.001, max=3600)
    retry_max_seconds: float = _opt(60.0, kind="float", min=0.01, max=86_400)
    drain_seconds: float = _opt(10.0, kind="float", min=0, max=3600)


@dataclass
class SpoolSettings:
    directory: Path | None = _opt(None, kind="path")  # default: state_directory/spool
    max_bytes: int = _opt(1 << 30, kind="size", min=1 << 16)


@dataclass
class MetricsSettings:
    host: str = _opt("127.0.0.1", kind="host")
    port: int = _opt(9477, kind="int", min=0, max=65_535)  # 0: no metrics endpoint


@dataclass
class LogSettings:
    level: str = _opt("info", kind="choice", choices=("debug", "info", "warning", "error"))
    format: str = _opt("json", kind="choice", choices=("json", "text"))


@dataclass
class SensorConfig:
    """The whole configuration; ``source`` is the file it came from (or None)."""

    sensor: SensorSettings = field(default_factory=SensorSettings)
    capture: CaptureSettings = field(default_factory=CaptureSettings)
    files: FilesSettings = field(default_factory=FilesSettings)
    flows: FlowsSettings = field(default_factory=FlowsSettings)
    api: ApiSettings = field(default_factory=ApiSettings)
    spool: SpoolSettings = field(default_factory=SpoolSettings)
    metrics: MetricsSettings = field(default_factory=MetricsSettings)
    log: LogSettings = field(default_factory=LogSettings)
    source: str | None = None
    origins: dict[tuple[str, str], str] = field(default_factory=dict, repr=False)

    def api_key(self) -> str:
        """The API key: ``key``, or the first line of ``key_file`` (read when asked, so a
        rotated key file is picked up on restart without editing the configuration)."""
        if self.api.key:
            return self.api.key
        assert self.api.key_file is not None
        where = self.origins.get(("api", "key_file"), self.source or "command line")
        try:
            text = self.api.key_file.read_text().strip()
        except OSError as exc:
            raise ConfigError(f"{where}: [api] key_file: cannot read {self.api.key_file} "
                              f"({exc.strerror or exc})") from None
        if not text:
            raise ConfigError(f"{where}: [api] key_file: {self.api.key_file} is empty")
        return text.splitlines()[0].strip()

    def sources(self) -> list[str]:
        return [name for name, on in (("live", self.capture.interface),
                                      ("files", self.files.directory),
                                      ("flows", self.flows.port)) if on]


SECTIONS: dict[str, type] = {name: kind for name, kind in get_type_hints(SensorConfig).items()
                             if name not in ("source", "origins")}


# ------------------------------------------------------------------------- checking
def _size(text: str) -> int:
    match = _SIZE.match(text)
    if not match:
        raise ValueError
    number, unit, binary = float(match[1]), match[2].upper(), match[3].lower().startswith("i")
    power = "KMGT".find(unit) + 1 if unit else 0
    return int(number * (1024 if binary or not unit else 1000) ** power)


def _convert(value: Any, meta: dict[str, Any], base: Path | None) -> Any:
    """The value checked and converted, or ValueError(what was expected)."""
    kind = meta["kind"]
    if kind == "bool":
        if not isinstance(value, bool):
            raise ValueError("true or false")
        return value
    if kind in ("int", "size"):
        if kind == "size" and isinstance(value, str):
            try:
                value = _size(value)
            except ValueError:
                raise ValueError("a size in bytes such as 1073741824 or \"1 GiB\"") from None
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(_range("an integer", meta))
        if value < meta.get("min", value) or value > meta.get("max", value):
            raise ValueError(_range("an integer", meta))
        return value
    if kind == "float":
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError(_range("a number", meta))
        if value < meta.get("min", value) or value > meta.get("max", value):
            raise ValueError(_range("a number", meta))
        return float(value)
    if not isinstance(value, str):
        expected = {"choice": "one of " + ", ".join(map(repr, meta.get("choices", ()))),
                    "path": "a path (text)", "url": "an http:// or https:// URL"}.get(kind, "text")
        raise ValueError(expected)  # noqa: TRY004 - ValueError carries what was expected
    if kind == "choice" and value not in meta["choices"]:
        raise ValueError("one of " + ", ".join(repr(c) for c in meta["choices"]))
    if kind == "name" and value and not _NAME.match(value):
        raise ValueError("1 to 64 letters, digits, '.', '_' or '-' (it prefixes idempotency "
                         "keys)")
    if kind == "url":
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("an http:// or https:// URL with a host")
        return value.rstrip("/")
    if kind == "host" and not value.strip():
        raise ValueError("an address or host name")
    if kind == "path":
        if not value:
            raise ValueError("a non-empty path")
        expanded = os.path.expandvars(value)
        if "$" in expanded:
            raise ValueError(f"a path whose variables are set (not in the environment: "
                             f"{expanded})")
        path = Path(expanded).expanduser()
        return path if path.is_absolute() or base is None else base / path
    return value


def _range(what: str, meta: dict[str, Any]) -> str:
    if "min" in meta and "max" in meta:
        return f"{what} from {meta['min']:,} to {meta['max']:,}"
    if "min" in meta:
        return f"{what} of at least {meta['min']:,}"
    return what


def _unknown(name: str, known: list[str]) -> str:
    close = difflib.get_close_matches(name, known, n=1)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    return f"expected one of {', '.join(known)}{hint}"


Origin = dict[tuple[str, str], str]


def _build(raw: dict[str, Any], origins: Origin, file_label: str, base: Path | None
           ) -> SensorConfig:
    cfg = SensorConfig()
    for section, body in raw.items():
        if section not in SECTIONS:
            raise ConfigError(f"{file_label}: unknown section [{section}] "
                              f"({_unknown(section, list(SECTIONS))})")
        if not isinstance(body, dict):
            raise ConfigError(f"{file_label}: {section} must be a [{section}] table")
        target = getattr(cfg, section)
        fields = {f.name: f for f in dataclasses.fields(target)}
        for key, value in body.items():
            where = origins.get((section, key), file_label)
            if key not in fields:
                raise ConfigError(f"{where}: unknown key [{section}] {key} "
                                  f"({_unknown(key, list(fields))})")
            meta = dict(fields[key].metadata)
            try:
                converted = _convert(value, meta, None if where != file_label else base)
            except ValueError as exc:
                raise ConfigError(f"{where}: [{section}] {key}: expected {exc}, "
                                  f"got {value!r}") from None
            setattr(target, key, converted)
    return cfg


def _finish(cfg: SensorConfig, file_label: str, origins: Origin) -> SensorConfig:
    """Cross-field checks and defaults that depend on other fields."""

    def where(section: str, key: str) -> str:
        return origins.get((section, key), file_label)

    if not cfg.sensor.name:
        name = re.sub(r"[^A-Za-z0-9._-]", "-", socket.gethostname())[:64].strip("-.")
        cfg.sensor.name = name or "sensor"
    if cfg.spool.directory is None:
        cfg.spool.directory = cfg.sensor.state_directory / "spool"
    if cfg.files.state_file is None:
        cfg.files.state_file = cfg.sensor.state_directory / "files.json"
    if not cfg.api.url:
        raise ConfigError(f"{file_label}: [api] url: expected the lead API's URL "
                          f"(https://HOST:PORT), which the sensor pushes detections to "
                          f"(or --api URL)")
    if cfg.api.key and cfg.api.key_file:
        raise ConfigError(f"{where('api', 'key_file')}: [api] key and key_file: expected "
                          f"one of them, not both")
    if not cfg.api.key and not cfg.api.key_file:
        raise ConfigError(f"{file_label}: [api] key_file: expected the file holding the "
                          f"sensor's API key (`poolwatch keys create --scope sensor`), or "
                          f"[api] key (or --key-file FILE)")
    if cfg.api.ca_file is not None and not cfg.api.ca_file.is_file():
        raise ConfigError(f"{where('api', 'ca_file')}: [api] ca_file: expected a CA "
                          f"certificate file (PEM), but {cfg.api.ca_file} is not a file")
    if cfg.api.retry_max_seconds < cfg.api.retry_min_seconds:
        raise ConfigError(f"{where('api', 'retry_max_seconds')}: [api] retry_max_seconds: "
                          f"expected at least retry_min_seconds "
                          f"({cfg.api.retry_min_seconds:g})")
    block = cfg.capture.block_kb
    if block & (block - 1) or block * 1024 > cfg.capture.ring_mb * (1 << 20):
        raise ConfigError(f"{where('capture', 'block_kb')}: [capture] block_kb: expected a "
                          f"power of two no larger than ring_mb, got {block}")
    if not cfg.sources():
        raise ConfigError(f"{file_label}: nothing to read: expected at least one source: "
                          f"[capture] interface, [files] directory or [flows] port "
                          f"(or --interface, --watch, --flows)")
    if cfg.files.directory is not None and not cfg.files.directory.is_dir():
        raise ConfigError(f"{where('files', 'directory')}: [files] directory: expected a "
                          f"directory, but {cfg.files.directory} is not one")
    return cfg


def host_port(text: str, flag: str) -> tuple[str, int]:
    """``HOST:PORT`` or ``[IPv6]:PORT`` from a flag; ConfigError naming the flag."""
    match = re.fullmatch(r"\[([^\]]+)\]:(\d+)|([^:\[\]]*):(\d+)", text.strip())
    if not match:
        raise ConfigError(f"command line: {flag} {text!r}: expected HOST:PORT")
    host = match[1] or match[3] or "0.0.0.0"
    port = int(match[2] or match[4])
    if not 0 <= port <= 65_535:
        raise ConfigError(f"command line: {flag} {text!r}: expected a port from 0 to 65,535")
    return host, port


def load_config(path: str | Path | None = None,
                overrides: dict[tuple[str, str], tuple[Any, str]] | None = None
                ) -> SensorConfig:
    """Read ``path`` (TOML) and apply ``overrides`` ({(section, key): (value, "--flag")}),
    which win over the file. Relative paths in the file are relative to the file."""
    raw: dict[str, Any] = {}
    label = "command line"
    base: Path | None = None
    if path is not None:
        path = Path(path)
        label = str(path)
        base = path.resolve().parent
        try:
            raw = tomllib.loads(path.read_text(encoding="utf-8"))
        except OSError as exc:
            raise ConfigError(f"{path}: cannot read the configuration "
                              f"({exc.strerror or exc})") from None
        except UnicodeDecodeError:
            raise ConfigError(f"{path}: not UTF-8 text (a TOML file is expected)") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    origins: Origin = {}
    for (section, key), (value, flag) in (overrides or {}).items():
        if value is None:
            continue
        body = raw.setdefault(section, {})
        if not isinstance(body, dict):
            raise ConfigError(f"{label}: {section} must be a [{section}] table")
        body[key] = value
        origins[(section, key)] = f"command line ({flag})"
        if (section, key) == ("api", "key_file"):
            body.pop("key", None)  # a key file given on the command line replaces the key
    cfg = _build(raw, origins, label, base)
    cfg.source = str(path) if path is not None else None
    cfg.origins = origins
    return _finish(cfg, label, origins)
