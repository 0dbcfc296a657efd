"""Writers for record tables: CSV, JSON lines, Parquet, or a table for the terminal.

Records arrive in chunks (flows close while a scan runs); each writer appends chunk by chunk,
so output never waits for, or holds, the whole result. Only the terminal table keeps rows,
because a person reads it at the end.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import IO

import numpy as np
import pandas as pd

FORMATS = ("table", "csv", "jsonl", "parquet")
TABLE_MAX_ROWS = 200


def _json_default(value: object) -> object:
    if isinstance(value, pd.Timestamp):
        return value.isoformat().replace("+00:00", "Z")
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.floating):
        return float(value)
    raise TypeError(f"cannot write {type(value).__name__} as JSON")


class RecordWriter:
    """Appends DataFrame chunks to ``out`` (a path, or None for standard output)."""

    def __init__(self, fmt: str, out: Path | None, event_type: str | None = None) -> None:
        if fmt not in FORMATS:
            raise ValueError(f"unknown format {fmt!r} (possible values: {', '.join(FORMATS)})")
        if fmt == "parquet" and out is None:
            raise ValueError("parquet output needs --out FILE")
        self.fmt, self.out, self.event_type = fmt, out, event_type
        self.rows = 0
        self._stream: IO[str] | None = None
        self._parquet = None
        self._table: list[pd.DataFrame] = []

    def _text(self) -> IO[str]:
        if self._stream is None:
            self._stream = open(self.out, "w", newline="") if self.out else sys.stdout  # noqa: SIM115
        return self._stream

    def write(self, frame: pd.DataFrame) -> None:
        if frame.empty:
            return
        self.rows += len(frame)
        if self.fmt == "csv":
            stream = self._text()
            frame.to_csv(stream, index=False, header=self.rows == len(frame),
                         date_format="%Y-%m-%dT%H:%M:%S.%fZ")
        elif self.fmt == "jsonl":
            stream = self._text()
            for rec in frame.to_dict(orient="records"):
                if self.event_type:
                    rec = {"event_type": self.event_type, **rec}
                stream.write(json.dumps(rec, default=_json_default) + "\n")
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
        if self._stream is not None and self._stream is not sys.stdout:
            self._stream.close()
        elif self._stream is sys.stdout:
            sys.stdout.flush()
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
