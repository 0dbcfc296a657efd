"""The CSV kernel writes the same values as the Arrow path (Parquet, JSON lines)."""

from __future__ import annotations

import io

import numpy as np
import pandas as pd
from hypothesis import given, settings, strategies as st

from poolwatch.flows import FLOW_COLUMNS, flow_csv, flow_frame
from poolwatch.kernels.csvtext import csv_bytes

from .conftest import SAMPLES, scan_frame  # noqa: F401 - scan_frame used through samples


def _flows(sample):
    from poolwatch.scan import scan_flows

    return np.concatenate(list(scan_flows([sample])))


def test_csv_lines_equal_the_arrow_table(sample):
    flows = _flows(sample)
    text = ",".join(FLOW_COLUMNS) + "\n" + flow_csv(flows).decode()
    got = pd.read_csv(io.StringIO(text), keep_default_na=False, dtype=str)
    want = flow_frame(flows)
    for col in FLOW_COLUMNS:
        if col in ("first_seen", "last_seen"):
            expected = np.datetime_as_string(want[col].to_numpy("datetime64[ns]"), unit="ns",
                                             timezone="UTC")
            assert list(got[col]) == list(expected), col
        elif col == "duration_s":
            assert np.allclose(got[col].astype(float), want[col].astype(float), rtol=0, atol=1e-12)
        else:
            assert list(got[col]) == [str(v) for v in want[col]], col


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.integers(-(2**62), 2**62), st.integers(-(10**15), 10**15)),
                min_size=1, max_size=40))
def test_integers_and_seconds_are_exact(rows):
    ints = np.array([r[0] for r in rows], np.int64)
    ns = np.array([r[1] for r in rows], np.int64)
    lines = csv_bytes({"n": ints, "s": ns, "t": np.array(["x"] * len(rows))},
                      seconds=("s",)).decode().splitlines()
    for line, (i, n) in zip(lines, rows):
        a, b, c = line.split(",")
        assert int(a) == i and c == "x"
        sign, mag = ("-", -n) if n < 0 else ("", n)
        whole, frac = divmod(mag, 10**9)
        want = f"{sign}{whole}" + (f".{frac:09d}".rstrip("0") if frac else "")
        assert b == want
