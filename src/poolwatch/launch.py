"""The ``poolwatch`` command's entry point: the garbage collector stays off while the command
loads, and :mod:`poolwatch.cli` turns it back on once the command is set up.

Loading numba, SQLAlchemy, pydantic and the detectors allocates hundreds of thousands of
long-lived objects; at Python's default thresholds the collector ran over and over during
those imports and freed nothing (the import of ``poolwatch.cli`` alone: 0.48-0.58 s with it,
0.37-0.50 s without, docs/performance.md). This module imports nothing else before that, so
that the whole start-up runs without it.
"""

from __future__ import annotations

import gc


def main() -> None:
    gc.disable()
    from .cli import main as run_command

    run_command()
