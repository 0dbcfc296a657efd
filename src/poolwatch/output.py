"""Writers for record tables: CSV, JSON lines, Parquet, or a table for the terminal.

Records arrive in chunks (flows close while a scan runs) as Arrow tables; each writer
appends chunk by chunk, so output never waits for, or holds, the whole result. Only the
terminal table keeps rows, because a person reads it at the end. CSV and Parquet are
written by Arrow without pandas; JSON lines and the terminal table go through pandas.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import IO

import json
from typing import TYPE_CHECKING

import numpy as np

from .kernels.text import iso8601_text

if TYPE_CHECKING:  # Arrow is imported when a table is written: the CSV fast path needs none
    import pyarrow as pa

FORMATS = ("table", "csv", "jsonl", "parquet")
TABLE_MAX_ROWS = 200


def text_times(table: pa.Table) -> pa.Table:
    """Timestamp columns as ISO 8601 UTC text with nanoseconds (``…T08:00:00.002190000Z``)."""
    import pyarrow as pa

    for i, col in enumerate(table.schema):
        if pa.types.is_timestamp(col.type):
            ns = table.column(i).cast(pa.int64()).to_numpy()
            table = table.set_column(i, col.name, pa.array(iso8601_text(ns)))
    return table


def records_table(records: list[dict], names: tuple[str, ...],
                  kinds: dict[str, str]) -> pa.Table:
    """Event dicts → an Arrow table with one fixed schema, whatever is null in this chunk.

    ``kinds`` gives each column's kind (``time``: ns ints → UTC timestamps, ``int``,
    ``float``, ``bool``, ``json``: nested values as JSON text); every other column is a
    string. Records of several event types share one table: each leaves the columns it does
    not have null. Flat
    columns are what CSV and Parquet need; JSON lines keep the nesting (:func:`json_line`).
    """
    import pyarrow as pa

    types = {"time": pa.timestamp("ns", tz="UTC"), "int": pa.int64(), "float": pa.float64(),
             "bool": pa.bool_(), "json": pa.string()}
    arrays = {}
    for name in names:
        kind = kinds.get(name, "str")
        values = [rec.get(name) for rec in records]
        if kind == "json":
            values = [None if v is None else json.dumps(v, default=str, separators=(",", ":"))
                      for v in values]
        arrays[name] = pa.array(values, types.get(kind, pa.string()))
    return pa.table(arrays)


def json_line(record: dict, time_fields: tuple[str, ...]) -> str:
    """One event as a JSON line, ns times as ISO 8601 UTC text."""
    out = dict(record)
    for key in time_fields:
        if isinstance(out.get(key), int):
            out[key] = str(iso8601_text(np.array([out[key]], np.int64))[0])
    return json.dumps(out, default=str, separators=(",", ":"))


class RecordWriter:
    """Appends Arrow tables to ``out`` (a path, or None for standard output)."""

    def __init__(self, fmt: str, out: Path | None, event_type: str | None = None) -> None:
        if fmt not in FORMATS:
            raise ValueError(f"unknown format {fmt!r} (possible values: {', '.join(FORMATS)})")
        if fmt == "parquet" and out is None:
            raise ValueError("parquet output needs --out FILE")
        self.fmt, self.out, self.event_type = fmt, out, event_type
        self.rows = 0
        self._stream: IO[bytes] | None = None
        self._parquet = None
        self._kept: list = []
        self._started = False

    def _binary(self) -> IO[bytes]:
        if self._stream is None:
            self._stream = open(self.out, "wb") if self.out else sys.stdout.buffer  # noqa: SIM115
        return self._stream

    def write_csv_lines(self, lines: bytes, columns: tuple[str, ...]) -> None:
        """Append ready-made CSV lines (from a kernel); the header goes first, once."""
        if self.fmt != "csv":
            raise ValueError("CSV lines can only be written as CSV")
        if not self._started:
            self._binary().write((",".join(columns) + "\n").encode())
            self._started = True
        self.rows += lines.count(b"\n")
        self._binary().write(lines)

    def write_events(self, records: list[dict], names: tuple[str, ...],
                     kinds: dict[str, str]) -> None:
        """Append event dicts (few per scan: sessions, contacts): JSON lines written as they
        are, nested evidence kept; other formats through :func:`records_table`."""
        if self.fmt == "jsonl":
            self._started = True
            self.rows += len(records)
            times = tuple(n for n in names if kinds.get(n) == "time")
            text = "".join(json_line(r, times) + "\n" for r in records)
            self._binary().write(text.encode())
        else:
            self.write(records_table(records, names, kinds))

    def write(self, table: pa.Table) -> None:
        """Append rows. An empty table before any rows still writes the CSV header or the
        Parquet schema, so an input without flows gives a valid, empty file."""
        first = self.rows == 0 and not self._started
        if table.num_rows == 0 and not first:
            return
        self._started = True
        self.rows += table.num_rows
        if self.fmt == "csv":
            import pyarrow.csv as pacsv

            pacsv.write_csv(text_times(table), self._binary(),
                            pacsv.WriteOptions(include_header=first, quoting_style="needed"))
        elif self.fmt == "jsonl":
            frame = text_times(table).to_pandas()
            if self.event_type:
                frame.insert(0, "event_type", self.event_type)
            text = frame.to_json(orient="records", lines=True)
            # pandas escapes every "/" as "\/" (valid JSON, but Community IDs stop matching a
            # grep); a slash is always escaped there, so the swap cannot touch anything else.
            text = text.replace("\\/", "/")
            stream = self._binary()  # created even without rows: an empty file, no blank line
            if table.num_rows:
                stream.write(text.encode() + (b"" if text.endswith("\n") else b"\n"))
        elif self.fmt == "parquet":
            import pyarrow.parquet as pq

            if self._parquet is None:
                self._parquet = pq.ParquetWriter(str(self.out), table.schema)
            self._parquet.write_table(table)
        else:
            self._kept.append(table)

    def close(self, console=None, sort_by: str | None = None, view=None) -> None:
        """Finish the output; for ``table``, print the rows (largest first over the limit).

        ``view`` turns the kept rows (a DataFrame) into the columns that fit a terminal.
        """
        if self.out and self._stream is None and self.fmt in ("csv", "jsonl"):
            open(self.out, "wb").close()  # nothing to write still leaves the promised file
        if self._parquet is not None:
            self._parquet.close()
        if self._stream is not None:
            if self.out:
                self._stream.close()
            else:
                self._stream.flush()
        if self.fmt == "table":
            self._print_table(console, sort_by, view)

    def _print_table(self, console, sort_by: str | None, view) -> None:
        import pandas as pd
        import pyarrow as pa
        from rich.console import Console
        from rich.table import Table

        console = console or Console()
        frame = pa.concat_tables(self._kept).to_pandas() if self._kept else pd.DataFrame()
        if view is not None and len(frame.columns):
            frame = view(frame)
        note = ""
        if len(frame) > TABLE_MAX_ROWS and sort_by:
            frame = frame.nlargest(TABLE_MAX_ROWS, sort_by)
            note = (f"the {TABLE_MAX_ROWS} largest of {self.rows} rows by {sort_by}; "
                    "use --format csv/jsonl/parquet for all")
        table = Table(caption=note or None)
        for col in frame.columns:
            table.add_column(col, overflow="fold")
        for row in frame.itertuples(index=False):
            table.add_row(*[_cell(v) for v in row])
        console.print(table)


def _cell(value: object) -> str:
    if hasattr(value, "strftime"):
        return value.strftime("%Y-%m-%d %H:%M:%S.%f")
    if isinstance(value, float | np.floating):
        return f"{value:.3f}"
    return str(value)
