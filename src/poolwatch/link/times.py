"""Timestamps as ISP systems write them, to float seconds since the epoch (UTC)."""

from __future__ import annotations

import math
from datetime import datetime, timezone, tzinfo
from zoneinfo import ZoneInfo

_OPEN = {"", "-", "never", "infinity", "inf", "null", "none", "open"}


def zone(name: str | None) -> tzinfo:
    """A time zone by IANA name ("UTC" when None): for formats that write local times."""
    if name is None or name.upper() == "UTC":
        return timezone.utc
    try:
        return ZoneInfo(name)
    except Exception as exc:  # ZoneInfoNotFoundError, ValueError on odd names
        raise ValueError(f"unknown time zone {name!r}") from exc


def parse_time(text: str, tz: tzinfo = timezone.utc, open_ok: bool = False) -> float:
    """ISO 8601 (with or without zone, ``T`` or space, fractions), or epoch seconds.

    A time without a zone is read in ``tz``. With ``open_ok`` the usual spellings of "no
    end" (empty, ``-``, ``never``, ``infinity``) give ``math.inf``. Raises ValueError with
    the text on anything else, for the loader to turn into a row issue.
    """
    value = text.strip()
    if open_ok and value.lower() in _OPEN:
        return math.inf
    if value and (value[0].isdigit() or value[0] == "-") and _is_number(value):
        return float(value)
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"not a time: {text!r}") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=tz)
    return moment.timestamp()


def _is_number(value: str) -> bool:
    try:
        float(value)
    except ValueError:
        return False
    return "-" not in value[1:] and ":" not in value


def iso(ts: float) -> str | None:
    """Seconds → ISO 8601 UTC with ``Z``; None for an open end."""
    if math.isinf(ts):
        return None
    return datetime.fromtimestamp(ts, timezone.utc).isoformat().replace("+00:00", "Z")
