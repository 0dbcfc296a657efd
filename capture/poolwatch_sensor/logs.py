"""JSON log lines for the sensor: one object per line on stderr, so journald, Loki or any
log shipper takes them without a parsing rule.

Each line is ``{"ts", "level", "logger", "msg", "fields"}``; ``fields`` holds what the
caller passed as ``extra={"fields": {...}}`` (numbers stay numbers, for queries), and the
exception text when there is one. ``format = "text"`` gives the same content on one
human-readable line for a terminal.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import Any

LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING,
          "error": logging.ERROR, "critical": logging.CRITICAL}


def _iso(created: float) -> str:
    whole = int(created)
    return (time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(whole))
            + f".{int((created - whole) * 1000):03d}Z")


def _fields(record: logging.LogRecord) -> dict[str, Any]:
    fields = dict(getattr(record, "fields", None) or {})
    if record.exc_info and record.exc_info[0] is not None:
        fields["exc"] = logging.Formatter().formatException(record.exc_info)
    return fields


class JsonFormatter(logging.Formatter):
    """One JSON object per record; anything not JSON-native is written as its str()."""

    def format(self, record: logging.LogRecord) -> str:
        return json.dumps({"ts": _iso(record.created), "level": record.levelname.lower(),
                           "logger": record.name, "msg": record.getMessage(),
                           "fields": _fields(record)},
                          ensure_ascii=False, default=str, separators=(",", ":"))


class TextFormatter(logging.Formatter):
    """``ts level logger: msg key=value ...`` for people at a terminal."""

    def format(self, record: logging.LogRecord) -> str:
        fields = _fields(record)
        exc = fields.pop("exc", None)
        tail = "".join(f" {k}={json.dumps(v, default=str, ensure_ascii=False)}"
                       for k, v in fields.items())
        line = (f"{_iso(record.created)} {record.levelname.lower()} {record.name}: "
                f"{record.getMessage()}{tail}")
        return line + ("\n" + exc if exc else "")


def setup(level: str = "info", fmt: str = "json", stream=None) -> None:
    """Replace the root logger's handlers with one that writes ``fmt`` lines to stderr."""
    handler = logging.StreamHandler(stream if stream is not None else sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    logging.basicConfig(level=LEVELS[level], handlers=[handler], force=True)
    # httpx logs every request at info: the pusher logs each delivery itself, with its key
    logging.getLogger("httpx").setLevel(max(logging.WARNING, LEVELS[level]))
    logging.getLogger("httpcore").setLevel(max(logging.WARNING, LEVELS[level]))


def fields(**values: Any) -> dict[str, Any]:
    """``log.info("msg", extra=fields(batch=key, records=n))``."""
    return {"fields": values}
