"""Results of ``poolwatch probe``, as the scan reads them back.

``poolwatch probe --format jsonl --out FILE`` writes one JSON line per endpoint with
``"event_type": "probe_result"`` and the fields of :class:`ProbeResult`. A scan given that
file (``poolwatch scan --probes FILE``) looks endpoints up by ``(address, port)``: pools
that answered as pools raise a contact's score, endpoints that answered as something else
lower it. This module is a leaf of the detect stage: the prober (``poolwatch.probe``, a
higher layer) builds these records, and nothing here opens a socket.
"""

from __future__ import annotations

import ipaddress
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal, get_args

from poolwatch.errors import ConfigError

__all__ = ["EVENT_TYPE", "VERDICTS", "ProbeResult", "ProbeResultError", "canonical_address",
           "read_probe_results"]

EVENT_TYPE = "probe_result"
Verdict = Literal["pool", "not-pool", "no-answer", "refused", "error"]
VERDICTS: tuple[str, ...] = get_args(Verdict)


@dataclass(frozen=True, slots=True)
class ProbeResult:
    """What one endpoint answered to the probe.

    ``host`` is the endpoint as given (a name or an address), ``address`` the IP address that
    was connected to (the name resolved at probe time; for names that did not resolve, the
    name itself). ``tls`` says whether the verdict came over TLS. ``verdict``:

    - ``pool``: it answered as a mining pool in ``dialect`` (``evidence["signs"]`` says how:
      a subscribe result with an extranonce, a difficulty, a job...).
    - ``not-pool``: it answered, but not as a pool (HTTP, a TLS alert, a banner, JSON-RPC
      errors only); ``evidence["kind"]`` says what.
    - ``no-answer``: it accepted the connection (or dropped the SYN) and said nothing in time.
    - ``refused``: the port is closed.
    - ``error``: the probe could not be made (name did not resolve, unreachable network).
    """

    host: str
    address: str
    port: int
    tls: bool
    verdict: Verdict
    dialect: str | None
    evidence: dict = field(hash=False)
    checked_at_ns: int

    @property
    def key(self) -> tuple[str, int]:
        return (self.address, self.port)

    @property
    def is_pool(self) -> bool:
        return self.verdict == "pool"

    def as_dict(self) -> dict[str, Any]:
        """The JSON lines record, ``event_type`` first."""
        return {"event_type": EVENT_TYPE, **asdict(self)}


class ProbeResultError(ConfigError, ValueError):
    """A probe results file could not be used. Names the file and the line. A ConfigError
    (bad input, exit status 2 at the command line) and a ValueError."""

    def __init__(self, path: str | Path, line: int | None, reason: str) -> None:
        self.path = str(path)
        self.line = line
        self.reason = reason
        where = self.path if line is None else f"{self.path}, line {line}"
        super().__init__(f"probe results {where}: {reason}")


def canonical_address(text: str) -> str:
    """The canonical text of an IP address (``::ffff:1.2.3.4`` → ``1.2.3.4``); names as given."""
    try:
        ip = ipaddress.ip_address(text.strip("[]").split("%", 1)[0])
    except ValueError:
        return text
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return str(ip)


def _result(record: Any) -> ProbeResult:
    """One decoded JSON line → a ProbeResult; ValueError names the field that is wrong."""
    if not isinstance(record, dict):
        raise ValueError("not a JSON object")

    def get(name: str, kind: type | tuple[type, ...], optional: bool = False) -> Any:
        if name not in record:
            raise ValueError(f"missing field {name!r}")
        value = record[name]
        if value is None and optional:
            return None
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            raise ValueError(f"field {name!r} is {json.dumps(value)[:60]}, "
                             f"not {getattr(kind, '__name__', kind)}")
        return value

    port = get("port", int)
    if not 0 < port < 65536:
        raise ValueError(f"port {port} out of range")
    verdict = get("verdict", str)
    if verdict not in VERDICTS:
        raise ValueError(f"verdict {verdict!r} is not one of {', '.join(VERDICTS)}")
    checked = get("checked_at_ns", int)
    return ProbeResult(
        host=get("host", str), address=canonical_address(get("address", str)), port=port,
        tls=get("tls", bool), verdict=verdict, dialect=get("dialect", str, optional=True),
        evidence=get("evidence", dict), checked_at_ns=checked,
    )


def read_probe_results(path: str | Path) -> dict[tuple[str, int], ProbeResult]:
    """The results in a JSON lines file of ``poolwatch probe``, keyed by ``(address, port)``.

    Lines of other event types and blank lines are passed over. When an endpoint appears
    more than once (probed again later, or by name and by address), the most recent check
    wins. A line that is not JSON or not a complete ``probe_result`` raises
    :class:`ProbeResultError` (a :class:`~poolwatch.errors.ConfigError`) naming the file and
    the line number.
    """
    path = Path(path)
    try:
        handle = path.open("r", encoding="utf-8")
    except OSError as exc:
        raise ProbeResultError(path, None, exc.strerror or str(exc)) from None
    results: dict[tuple[str, int], ProbeResult] = {}
    with handle:
        lineno = 0
        try:
            for lineno, line in enumerate(handle, 1):
                if not line.strip():
                    continue
                try:
                    record = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise ProbeResultError(path, lineno, f"not JSON ({exc.msg} at column "
                                                         f"{exc.colno})") from None
                if isinstance(record, dict) and record.get("event_type", EVENT_TYPE) != EVENT_TYPE:
                    continue
                try:
                    result = _result(record)
                except ValueError as exc:
                    raise ProbeResultError(path, lineno, str(exc)) from None
                old = results.get(result.key)
                if old is None or result.checked_at_ns >= old.checked_at_ns:
                    results[result.key] = result
        except UnicodeDecodeError:
            raise ProbeResultError(path, lineno + 1, "not UTF-8 text") from None
    return results
