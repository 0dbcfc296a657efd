"""Engines: interchangeable ways to turn one capture file into decoded PacketBatch values.

``fast`` (the default) is poolwatch's own chunked reader and numba decoder. ``dpkt``,
``scapy`` and ``pyshark`` decode the same captures with those libraries; they are slow and
exist to cross-check the fast engine (tests/test_engines.py) and to read what it cannot.
Each engine module exposes ``iter_batches(path, report, batch_packets)``.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterator
from pathlib import Path

from ..errors import ConfigError
from ..records import FileReport, PacketBatch

ENGINES = {
    "fast": "poolwatch.engines.fast",
    "dpkt": "poolwatch.engines.dpkt_engine",
    "scapy": "poolwatch.engines.scapy_engine",
    "pyshark": "poolwatch.engines.pyshark_engine",
}

BatchReader = Callable[..., Iterator[PacketBatch]]


def get_engine(name: str) -> BatchReader:
    """The ``iter_batches`` function of an engine, imported on first use."""
    if name not in ENGINES:
        raise ConfigError(f"unknown engine {name!r} (possible values: {', '.join(ENGINES)})")
    try:
        module = importlib.import_module(ENGINES[name])
    except ImportError as exc:
        extra = {"scapy": "scapy", "pyshark": "pyshark"}.get(name, name)
        raise ConfigError(
            f"engine {name!r} needs {exc.name or 'a missing package'}: "
            f"pip install 'poolwatch[{extra}]'"
        ) from None
    return module.iter_batches


def read_file(engine: str, path: Path, report: FileReport, batch_packets: int = 1 << 16):
    """Decoded batches of one file through the named engine."""
    return get_engine(engine)(path, report, batch_packets=batch_packets)
