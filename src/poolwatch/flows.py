"""Flow stage: decoded packets → bidirectional flow records (``records.FLOW``).

:class:`FlowTable` drives the numba kernel in ``kernels.flowtable`` batch by batch. It keeps
memory bounded: idle flows are closed at sweep points, the table grows up to ``max_flows``
and, when full, closes its least recently seen quarter (counted as evictions).

:func:`merge_flows` combines flow records computed apart (other files, other chunks, other
machines): records of the same flow whose time spans touch within the idle timeout become
one. The combination is a monoid (sums, min, max, OR), so merging is associative and
commutative.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from .kernels import flowtable as kt
from .kernels.text import ipv4_text, ipv6_text, iso8601_text
from .records import FLOW, PacketBatch

if TYPE_CHECKING:
    import pandas as pd
    import pyarrow as pa

log = logging.getLogger(__name__)

NS = 1_000_000_000


@dataclass(frozen=True, slots=True)
class FlowSettings:
    """Timeouts and limits; defaults follow nfstream (idle 120 s, active 1800 s)."""

    idle_timeout_s: float = 120.0
    active_timeout_s: float = 1800.0
    max_flows: int = 1 << 20
    initial_flows: int = 1 << 14
    sweep_interval_s: float = 10.0

    def __post_init__(self) -> None:
        for name in ("idle_timeout_s", "active_timeout_s", "sweep_interval_s"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be a positive number of seconds")
        if self.max_flows < 16:
            raise ValueError("max_flows must be at least 16")


class FlowTable:
    """Aggregates PacketBatch values into FLOW records; closed records come out of update()."""

    def __init__(self, settings: FlowSettings | None = None) -> None:
        self.settings = s = settings or FlowSettings()
        self.idle_ns = int(s.idle_timeout_s * NS)
        self.active_ns = int(s.active_timeout_s * NS)
        self.sweep_ns = int(s.sweep_interval_s * NS)
        self._alloc(min(s.initial_flows, s.max_flows))
        self.n_flows = 0
        self.state = np.zeros(2, np.int64)
        self.evicted = 0

    def _alloc(self, capacity: int) -> None:
        self.flows = np.zeros(capacity, FLOW)
        size = 1 << int(np.ceil(np.log2(max(2 * capacity, 16))))
        self.index = np.full(size, -1, np.int64)

    def __len__(self) -> int:
        return self.n_flows

    def update(self, batch: PacketBatch) -> Iterator[np.ndarray]:
        """Add a batch; yield arrays of the flows it closed (idle, active, evicted)."""
        packets = batch.packets
        pos = 0
        while True:
            out = np.zeros(4096, FLOW)
            code, pos, self.n_flows, n_out = kt.aggregate(
                packets, pos, self.flows, self.n_flows, self.index, out, 0, self.state,
                self.idle_ns, self.active_ns, self.sweep_ns,
            )
            if n_out:
                yield out[:n_out]
            if code == kt.DONE:
                return
            if code == kt.NEED_SWEEP:
                now = int(packets[pos]["ts_ns"])
                yield self._close(kt.idle_mask(self.flows, self.n_flows, now, self.idle_ns),
                                  kt.END_IDLE)
                self.state[0] = now + self.sweep_ns
            elif code == kt.TABLE_FULL:
                if len(self.flows) < self.settings.max_flows:
                    self._grow(min(2 * len(self.flows), self.settings.max_flows))
                else:
                    yield self._evict_oldest()

    def _close(self, mask: np.ndarray, reason: int) -> np.ndarray:
        out = np.zeros(int(mask.sum()), FLOW)
        self.n_flows, n_out = kt.close_where(
            self.flows, self.n_flows, self.index, mask, reason, out, 0
        )
        return out[:n_out]

    def _grow(self, capacity: int) -> None:
        old = self.flows[: self.n_flows]
        self._alloc(capacity)
        self.flows[: len(old)] = old
        kt.rebuild_index(self.flows, self.n_flows, self.index)

    def _evict_oldest(self) -> np.ndarray:
        last = self.flows["last_ts_ns"][: self.n_flows]
        k = self.n_flows // 4
        closed = self._close(last <= np.partition(last, k)[k], kt.END_EVICTED)
        self.evicted += len(closed)
        log.debug("flow table full: evicted %d flows", len(closed))
        return closed

    def expire(self, now_ns: int) -> np.ndarray:
        """Close the flows idle at ``now_ns`` (a live sensor's clock moves on when no packet
        comes; a batch only sweeps at its own packets' times)."""
        closed = self._close(kt.idle_mask(self.flows, self.n_flows, now_ns, self.idle_ns),
                             kt.END_IDLE)
        self.state[0] = now_ns + self.sweep_ns
        return closed

    def open_rows(self) -> np.ndarray:
        """The open flows (a view: valid until the next update)."""
        return self.flows[: self.n_flows]

    def flush(self) -> np.ndarray:
        """Close every open flow (end of input) and return them."""
        return self._close(np.ones(self.n_flows, np.bool_), kt.END_EOF)


def canonical_order(flows: np.ndarray) -> np.ndarray:
    """Indices that sort FLOW records by first timestamp, then by their key (for stable output)."""
    keys = [flows[k] for k in ("dest_port", "src_port", "dst_lo", "dst_hi", "src_lo", "src_hi",
                               "proto", "inner_vlan", "vlan", "first_ts_ns")]
    return np.lexsort(keys)


def _direction_free_key(flows: np.ndarray) -> np.ndarray:
    """Per row, a structured key that is the same for both directions of a flow."""
    src = (flows["src_hi"], flows["src_lo"], flows["src_port"])
    dst = (flows["dst_hi"], flows["dst_lo"], flows["dest_port"])
    swap = (dst[0] < src[0]) | (
        (dst[0] == src[0]) & ((dst[1] < src[1]) | ((dst[1] == src[1]) & (dst[2] < src[2])))
    )
    key = np.zeros(len(flows), [("vlan", "u2"), ("inner_vlan", "u2"), ("proto", "u1"),
                                ("a_hi", "u8"), ("a_lo", "u8"), ("a_port", "u2"),
                                ("b_hi", "u8"), ("b_lo", "u8"), ("b_port", "u2")])
    for k in ("vlan", "inner_vlan", "proto"):
        key[k] = flows[k]
    for j, name in enumerate(("hi", "lo", "port")):
        key[f"a_{name}"] = np.where(swap, dst[j], src[j])
        key[f"b_{name}"] = np.where(swap, src[j], dst[j])
    return key


def merge_flows(*parts: np.ndarray, idle_timeout_s: float = 120.0) -> np.ndarray:
    """Combine FLOW records computed apart into the records one pass would have made.

    Records of the same flow (direction-free key) whose spans overlap or lie within the idle
    timeout of each other become one; the earliest record's orientation names src and dest.
    Exact when no active timeout or eviction split a flow inside one of the parts.
    """
    flows = np.concatenate([np.asarray(p, FLOW) for p in parts]) if parts else np.zeros(0, FLOW)
    if len(flows) == 0:
        return flows
    key = _direction_free_key(flows)
    # Within a flow: earliest first; equal starts broken by the src endpoint, so that the
    # result does not depend on the order of the parts.
    tie = (flows["src_port"], flows["src_lo"], flows["src_hi"], flows["first_ts_ns"])
    order = np.lexsort((*tie, *[key[k] for k in reversed(key.dtype.names)]))
    flows, key = flows[order], key[order]
    merged = []
    cur = flows[0].copy()
    for i in range(1, len(flows)):
        f = flows[i]
        if key[i] == key[i - 1] and f["first_ts_ns"] - cur["last_ts_ns"] <= idle_timeout_s * NS:
            _absorb(cur, f)
        else:
            merged.append(cur)
            cur = f.copy()
    merged.append(cur)
    out = np.array(merged, FLOW)
    return out[canonical_order(out)]


def _absorb(cur: np.void, f: np.void) -> None:
    src = ("src_hi", "src_lo", "src_port")
    same = all(f[k] == cur[k] for k in src)
    fwd, rev = ("toserver", "toclient") if same else ("toclient", "toserver")
    cur["pkts_toserver"] += f[f"pkts_{fwd}"]
    cur["pkts_toclient"] += f[f"pkts_{rev}"]
    cur["bytes_toserver"] += f[f"bytes_{fwd}"]
    cur["bytes_toclient"] += f[f"bytes_{rev}"]
    cur["tcp_flags_toserver"] |= f[f"tcp_flags_{fwd}"]
    cur["tcp_flags_toclient"] |= f[f"tcp_flags_{rev}"]
    if f["last_ts_ns"] > cur["last_ts_ns"]:
        cur["last_ts_ns"], cur["end_reason"] = f["last_ts_ns"], f["end_reason"]
    elif f["last_ts_ns"] == cur["last_ts_ns"]:
        cur["end_reason"] = max(cur["end_reason"], f["end_reason"])


FLOW_COLUMNS = (
    "community_id", "proto", "src_ip", "src_port", "dest_ip", "dest_port", "vlan", "inner_vlan",
    "first_seen", "last_seen", "duration_s", "pkts_toserver", "pkts_toclient",
    "bytes_toserver", "bytes_toclient", "tcp_flags_toserver", "tcp_flags_toclient", "end_reason",
)
END_REASONS = ("eof", "idle", "active", "evicted")
END_REASONS_TEXT = np.array(END_REASONS)
_TCP_FLAG_LETTERS = "FSRPAUEC"


def addresses_text(hi: np.ndarray, lo: np.ndarray) -> np.ndarray:
    """Address text for (hi, lo) columns: dotted quads for IPv4-mapped, RFC 5952 otherwise."""
    v4 = (hi == 0) & ((lo >> np.uint64(32)) == np.uint64(0xFFFF))
    if v4.all():
        return ipv4_text(lo)
    return np.where(v4, ipv4_text(lo), ipv6_text(hi, lo))


def _flag_letters() -> np.ndarray:
    return np.array(["".join(c for bit, c in enumerate(_TCP_FLAG_LETTERS) if value & (1 << bit))
                     for value in range(256)])


TCP_FLAGS_TEXT = _flag_letters()  # OR-ed flags → letters in tcpdump's order ("S", "SA", "FSPA")


def flow_columns(flows: np.ndarray, seed: int = 0) -> dict[str, np.ndarray]:
    """FLOW records → the columns analysts see, as numpy arrays in FLOW_COLUMNS order.

    Text (Community ID, addresses, flags, end reason) is made by kernels as numpy ``U``
    arrays; ``first_seen``, ``last_seen`` and ``duration_s`` are still integer nanoseconds
    here, for :func:`flow_table` (timestamps, float seconds) and :func:`flow_csv` (text).
    """
    from .kernels.communityid import community_ids

    f = flows
    tcp = f["proto"] == 6
    return {
        "community_id": community_ids(f["src_hi"], f["src_lo"], f["dst_hi"], f["dst_lo"],
                                      f["src_port"], f["dest_port"], f["proto"], seed),
        "proto": f["proto"].astype(np.int64),
        "src_ip": addresses_text(f["src_hi"], f["src_lo"]),
        "src_port": f["src_port"].astype(np.int64),
        "dest_ip": addresses_text(f["dst_hi"], f["dst_lo"]),
        "dest_port": f["dest_port"].astype(np.int64),
        "vlan": f["vlan"].astype(np.int64),
        "inner_vlan": f["inner_vlan"].astype(np.int64),
        "first_seen": f["first_ts_ns"].astype(np.int64),
        "last_seen": f["last_ts_ns"].astype(np.int64),
        "duration_s": (f["last_ts_ns"] - f["first_ts_ns"]).astype(np.int64),
        "pkts_toserver": f["pkts_toserver"].astype(np.int64),
        "pkts_toclient": f["pkts_toclient"].astype(np.int64),
        "bytes_toserver": f["bytes_toserver"].astype(np.int64),
        "bytes_toclient": f["bytes_toclient"].astype(np.int64),
        "tcp_flags_toserver": np.where(tcp, TCP_FLAGS_TEXT[f["tcp_flags_toserver"]], ""),
        "tcp_flags_toclient": np.where(tcp, TCP_FLAGS_TEXT[f["tcp_flags_toclient"]], ""),
        "end_reason": END_REASONS_TEXT[f["end_reason"]],
    }


TIME_COLUMNS = ("first_seen", "last_seen")


def flow_table(flows: np.ndarray, seed: int = 0) -> pa.Table:
    """The analysts' flow table as Arrow: UTC timestamps, float seconds (Parquet, JSON)."""
    import pyarrow as pa

    columns = flow_columns(flows, seed)
    stamp = pa.timestamp("ns", tz="UTC")
    for name in TIME_COLUMNS:
        columns[name] = pa.array(columns[name], stamp)
    columns["duration_s"] = columns["duration_s"] / 1e9
    return pa.table(columns)


def flow_csv(flows: np.ndarray, seed: int = 0) -> bytes:
    """The analysts' flow table as CSV lines (no header), written by a kernel.

    Times are ISO 8601 UTC with nanoseconds, ``duration_s`` exact decimal seconds.
    """
    from .kernels.csvtext import csv_bytes

    columns = flow_columns(flows, seed)
    for name in TIME_COLUMNS:
        columns[name] = iso8601_text(columns[name])
    return csv_bytes(columns, seconds=("duration_s",))


def flow_frame(flows: np.ndarray, seed: int = 0) -> pd.DataFrame:
    """The same table as :func:`flow_table`, as a pandas DataFrame (UTC timestamps)."""
    return flow_table(flows, seed).to_pandas()
