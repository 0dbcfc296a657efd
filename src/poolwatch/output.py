"""Writers for record tables: CSV, JSON lines, Parquet, or a table for the terminal.

Records arrive in chunks (flows close while a scan runs); each writer appends chunk by chunk,
so output never waits for, or holds, the whole result. Only the terminal table keeps rows,
because a person reads it at the end.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import IO

import numpy as np
import pandas as pd

FORMATS = ("table", "csv", "jsonl", "parquet")
TABLE_MAX_ROWS = 200


def _text_times(frame: pd.DataFrame) -> pd.DataFrame:
    """A copy with timestamp columns as ISO 8601 UTC text with nanoseconds (CSV, JSON)."""
    from .kernels.text import iso8601_text

    frame = frame.copy()
    for col in frame.columns:
        if isinstance(frame[col].dtype, pd.DatetimeTZDtype):
            ns = frame[col].to_numpy(dtype="datetime64[ns]").view(np.int64)
            frame[col] = iso8601_text(ns)
    return frame


class RecordWriter:
    """Appends DataFrame chunks to ``out`` (a path, or None for standard output)."""

    def __init__(self, fmt: str, out: Path | None, event_type: str | None = None) -> None:
        if fmt not in FORMATS:
            raise ValueError(f"unknown format {fmt!r} (possible values: {', '.join(FORMATS)})")
        if fmt == "parquet" and out is None:
            raise ValueError("parquet output needs --out FILE")
        self.fmt, self.out, self.event_type = fmt, out, event_type
        self.rows = 0
        self._stream: IO[bytes] | None = None
        self._parquet = None
        self._table: list[pd.DataFrame] = []

    def _binary(self) -> IO[bytes]:
        if self._stream is None:
            self._stream = open(self.out, "wb") if self.out else sys.stdout.buffer  # noqa: SIM115
        return self._stream

    def write(self, frame: pd.DataFrame) -> None:
        if frame.empty:
            return
        first = self.rows == 0
        self.rows += len(frame)
        if self.fmt == "csv":
            import pyarrow as pa
            import pyarrow.csv as pacsv

            table = pa.Table.from_pandas(_text_times(frame), preserve_index=False)
            pacsv.write_csv(table, self._binary(),
                            pacsv.WriteOptions(include_header=first, quoting_style="needed"))
        elif self.fmt == "jsonl":
            frame = _text_times(frame)
            if self.event_type:
                frame.insert(0, "event_type", self.event_type)
            text = frame.to_json(orient="records", lines=True)
            # pandas escapes every "/" as "\/" (valid JSON, but Community IDs stop matching a
            # grep); a slash is always escaped there, so the swap cannot touch anything else.
            text = text.replace("\\/", "/")
            self._binary().write(text.encode() + (b"" if text.endswith("\n") else b"\n"))
        elif self.fmt == "parquet":
            import pyarrow as pa
            import pyarrow.parquet as pq

            table = pa.Table.from_pandas(frame, preserve_index=False)
            if self._parquet is None:
                self._parquet = pq.ParquetWriter(str(self.out), table.schema)
            self._parquet.write_table(table)
        else:
            self._table.append(frame)

    def close(self, console=None, sort_by: str | None = None) -> None:
        """Finish the file; for ``table``, print the rows (largest first when over the limit)."""
        if self._parquet is not None:
            self._parquet.close()
        if self._stream is not None:
            if self.out:
                self._stream.close()
            else:
                self._stream.flush()
        if self.fmt == "table":
            self._print_table(console, sort_by)

    def _print_table(self, console, sort_by: str | None) -> None:
        from rich.console import Console
        from rich.table import Table

        console = console or Console()
        frame = pd.concat(self._table, ignore_index=True) if self._table else pd.DataFrame()
        note = ""
        if len(frame) > TABLE_MAX_ROWS and sort_by:
            frame = frame.nlargest(TABLE_MAX_ROWS, sort_by)
            note = (f"the {TABLE_MAX_ROWS} largest of {self.rows} rows by {sort_by}; "
                    "use --format csv/jsonl/parquet for all")
        table = Table(caption=note or None, show_lines=False)
        for col in frame.columns:
            table.add_column(col, overflow="fold")
        for row in frame.itertuples(index=False):
            table.add_row(*[_cell(v) for v in row])
        console.print(table)


def _cell(value: object) -> str:
    if isinstance(value, pd.Timestamp):
        return value.strftime("%Y-%m-%d %H:%M:%S.%f")
    if isinstance(value, float):
        return f"{value:.3f}"
    return str(value)
