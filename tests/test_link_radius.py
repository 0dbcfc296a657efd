"""FreeRADIUS detail files → assignments: sessions rebuilt from Start/Interim/Stop, ends
inferred when a Stop is missing, bad blocks reported with their lines."""

from __future__ import annotations

import gzip
import ipaddress
import math
from datetime import datetime, timezone

import pytest

from poolwatch.link.model import LinkInputError
from poolwatch.link.radius import load_radius_detail, looks_like

DAY = 1795478400  # Tue 2026-11-24 00:00:00 UTC


def at(hour: int, minute: int = 0, second: int = 0) -> float:
    return DAY + hour * 3600 + minute * 60 + second


def header(ts: float) -> str:
    return datetime.fromtimestamp(ts, timezone.utc).strftime("%a %b %e %H:%M:%S %Y")


def block(ts: float, status: str, *, event: bool = True, **attrs: object) -> str:
    """A detail block at ``ts``: header, Acct-Status-Type, Event-Timestamp (unless
    ``event=False``) and the attributes given (underscores become dashes)."""
    lines = [header(ts), f"\tAcct-Status-Type = {status}"]
    if event:
        stamp = datetime.fromtimestamp(ts, timezone.utc).strftime("%b %e %Y %H:%M:%S UTC")
        lines.append(f'\tEvent-Timestamp = "{stamp}"')
    for name, value in attrs.items():
        name = name.replace("_", "-")
        lines.append(f'\t{name} = "{value}"' if isinstance(value, str) else f"\t{name} = {value}")
    return "\n".join(lines) + "\n\n"


def session(user: str, sid: str, ip: str, nas: str = "192.0.2.1", **more: object) -> dict:
    return {"User_Name": user, "Acct_Session_Id": sid, "Framed_IP_Address": ip,
            "NAS_IP_Address": nas, **more}


def write(tmp_path, text: str, name: str = "detail-20261124"):
    path = tmp_path / name
    path.write_text(text)
    return path


def by_user(loaded) -> dict[str, list]:
    out: dict[str, list] = {}
    for row in loaded.rows:
        out.setdefault(row.identity, []).append(row)
    return out


def test_start_interim_stop_is_one_closed_session(tmp_path):
    alice = session("alice@isp", "S1", "100.64.0.10",
                    Calling_Station_Id="00-11-22-33-44-55")
    path = write(tmp_path, block(at(10), "Start", **alice)
                 + block(at(10, 5), "Interim-Update", Acct_Session_Time=300, **alice)
                 + block(at(11), "Stop", Acct_Session_Time=3600, **alice))
    loaded = load_radius_detail([path])
    [row] = loaded.rows
    assert row.network == ipaddress.ip_network("100.64.0.10/32")
    assert (row.start, row.end, row.end_inferred) == (at(10), at(11), False)
    assert (row.identity_kind, row.identity, row.source, row.session) == (
        "user", "alice@isp", "radius", "S1")
    assert row.extra == {"nas": "192.0.2.1", "calling_station_id": "00:11:22:33:44:55"}
    assert (row.origin.path, row.origin.line) == (str(path), 1)
    [report] = loaded.reports
    assert (report.kind, report.loaded, report.skipped, report.issues) == ("radius", 1, 0, [])


def test_header_time_less_delay_when_no_event_timestamp(tmp_path):
    alice = session("alice", "S1", "100.64.0.10")
    # Received 30 s late; the header is the server's local time (Europe/Berlin, UTC+1).
    start = header(at(11, 0, 30)) + "\n\tAcct-Status-Type = Start\n\tAcct-Delay-Time = 30\n" + \
        "".join(f'\t{k.replace("_", "-")} = "{v}"\n' for k, v in alice.items()) + "\n"
    # A Stop with the server's epoch Timestamp: that wins over the header.
    stop = block(at(23), "Stop", event=False, Timestamp=int(at(12)), **alice)
    loaded = load_radius_detail([write(tmp_path, start + stop)], tz="Europe/Berlin")
    [row] = loaded.rows
    assert (row.start, row.end) == (at(10), at(12))


def test_missing_stop_ends_at_next_owner_of_the_address(tmp_path):
    alice = session("alice", "S1", "100.64.0.10")
    bob = session("bob", "S2", "100.64.0.10")
    path = write(tmp_path, block(at(10), "Start", **alice)
                 + block(at(12, 0, 7), "Start", **bob)
                 + block(at(13), "Stop", **bob))
    rows = by_user(load_radius_detail([path]))
    [a], [b] = rows["alice"], rows["bob"]
    assert (a.start, a.end, a.end_inferred) == (at(10), at(12, 0, 7), True)
    assert (b.start, b.end, b.end_inferred) == (at(12, 0, 7), at(13), False)


def test_missing_stop_ends_one_interim_interval_after_last_record(tmp_path):
    alice = session("alice", "S1", "100.64.0.10", Acct_Interim_Interval=300)
    text = (block(at(10), "Start", **alice) + block(at(10, 5), "Interim-Update", **alice)
            + block(at(10, 10), "Interim-Update", **alice))
    path = write(tmp_path, text)
    [row] = load_radius_detail([path]).rows
    assert (row.end, row.end_inferred) == (at(10, 15), True)
    # Collected at 10:12, the last update is within one interval: still running.
    [row] = load_radius_detail([path], now=at(10, 12)).rows
    assert (row.end, row.end_inferred) == (math.inf, False)
    # Collected at 10:30: the session went silent, it ended by 10:15.
    [row] = load_radius_detail([path], now=at(10, 30)).rows
    assert (row.end, row.end_inferred) == (at(10, 15), True)


def test_interval_observed_from_updates_when_not_sent(tmp_path):
    alice = session("alice", "S1", "100.64.0.10")
    # The NAS's extra update 2 s after Start is not taken for the interval; 10 min gaps are.
    text = (block(at(10), "Start", **alice) + block(at(10, 0, 2), "Interim-Update", **alice)
            + block(at(10, 10), "Interim-Update", **alice)
            + block(at(10, 20), "Interim-Update", **alice)
            + block(at(10, 30), "Interim-Update", **alice))
    [row] = load_radius_detail([write(tmp_path, text)]).rows
    assert (row.end, row.end_inferred) == (at(10, 40), True)


def test_start_only_session_without_interval_ends_at_last_record(tmp_path):
    path = write(tmp_path, block(at(10), "Start", **session("alice", "S1", "100.64.0.10")))
    [row] = load_radius_detail([path], now=at(10, 1)).rows
    assert (row.start, row.end, row.end_inferred) == (at(10), at(10), True)


def test_missing_start_is_rebuilt_from_session_time(tmp_path):
    alice = session("alice", "S1", "100.64.0.10")
    text = (block(at(11), "Interim-Update", Acct_Session_Time=3600, **alice)
            + block(at(12), "Stop", Acct_Session_Time=7200, **alice))
    [row] = load_radius_detail([write(tmp_path, text)]).rows
    assert (row.start, row.end, row.end_inferred) == (at(10), at(12), False)
    assert row.extra["start_inferred"] == "true"
    assert row.origin.line == 1


def test_accounting_on_closes_every_open_session_of_that_nas(tmp_path):
    a1 = session("a1", "1", "100.64.0.1", nas="192.0.2.1")
    a2 = session("a2", "2", "100.64.0.2", nas="192.0.2.1")
    b1 = session("b1", "1", "100.64.1.1", nas="192.0.2.2")  # same session id, other NAS
    a3 = session("a3", "1", "100.64.0.3", nas="192.0.2.1")  # id reused after the reboot
    text = (block(at(9), "Start", **a1) + block(at(9, 30), "Start", **a2)
            + block(at(9, 45), "Start", **b1)
            + block(at(10), "Accounting-On", NAS_IP_Address="192.0.2.1")
            + block(at(10, 5), "Start", **a3) + block(at(10, 20), "Stop", **a3)
            + block(at(12), "Stop", **b1))
    rows = by_user(load_radius_detail([write(tmp_path, text)]))
    assert [(r.end, r.end_inferred) for r in rows["a1"]] == [(at(10), True)]
    assert [(r.end, r.end_inferred) for r in rows["a2"]] == [(at(10), True)]
    assert [(r.start, r.end, r.end_inferred) for r in rows["b1"]] == [(at(9, 45), at(12), False)]
    assert [(r.start, r.end, r.end_inferred) for r in rows["a3"]] == [
        (at(10, 5), at(10, 20), False)]


def test_ipv6_prefixes_each_give_an_assignment(tmp_path):
    alice = session("alice", "S1", "100.64.0.10", Framed_IPv6_Prefix="2001:db8:1:2::/64",
                    Delegated_IPv6_Prefix="2001:db8:100::/56")
    text = block(at(10), "Start", **alice) + block(at(11), "Stop", **alice)
    rows = load_radius_detail([write(tmp_path, text)]).rows
    assert {str(r.network) for r in rows} == {
        "100.64.0.10/32", "2001:db8:1:2::/64", "2001:db8:100::/56"}
    assert {(r.start, r.end, r.identity) for r in rows} == {(at(10), at(11), "alice")}


def test_delegated_prefix_seen_only_in_interim_is_kept(tmp_path):
    alice = session("alice", "S1", "100.64.0.10")
    text = (block(at(10), "Start", **alice)
            + block(at(10, 5), "Interim-Update", Delegated_IPv6_Prefix="2001:db8:100::/56",
                    **alice)
            + block(at(11), "Stop", **alice))
    rows = load_radius_detail([write(tmp_path, text)]).rows
    assert {str(r.network): (r.start, r.end) for r in rows} == {
        "100.64.0.10/32": (at(10), at(11)), "2001:db8:100::/56": (at(10), at(11))}


def test_unique_session_id_keys_sessions(tmp_path):
    one = session("alice", "X", "100.64.0.10", Acct_Unique_Session_Id="u1")
    two = session("bob", "X", "100.64.0.11", Acct_Unique_Session_Id="u2")
    text = (block(at(10), "Start", **one) + block(at(10), "Start", **two)
            + block(at(11), "Stop", **one) + block(at(12), "Stop", **two))
    rows = by_user(load_radius_detail([write(tmp_path, text)]))
    assert (rows["alice"][0].end, rows["bob"][0].end) == (at(11), at(12))


def test_record_without_unique_id_joins_its_session_by_session_id(tmp_path):
    alice = session("alice", "S1", "100.64.0.10")
    text = (block(at(10), "Start", Acct_Unique_Session_Id="u1", **alice)
            + block(at(11), "Stop", **alice))
    [row] = load_radius_detail([write(tmp_path, text)]).rows
    assert (row.start, row.end, row.end_inferred) == (at(10), at(11), False)


def test_back_to_back_sessions_of_one_user_merge(tmp_path):
    s1 = session("alice", "S1", "100.64.0.10")
    s2 = session("alice", "S2", "100.64.0.10")
    text = (block(at(10), "Start", **s1) + block(at(11), "Stop", **s1)
            + block(at(11), "Start", **s2) + block(at(12), "Stop", **s2))
    [row] = load_radius_detail([write(tmp_path, text)]).rows
    assert (row.start, row.end, row.session) == (at(10), at(12), "S1")
    assert row.extra["sessions"] == "S1,S2"


def test_session_across_rotated_files_and_gzip(tmp_path):
    alice = session("alice", "S1", "100.64.0.10")
    first = tmp_path / "detail-20261124.gz"
    first.write_bytes(gzip.compress(block(at(23), "Start", **alice).encode()))
    second = write(tmp_path, block(at(25), "Stop", **alice), "detail-20261125")
    loaded = load_radius_detail([first, second])
    [row] = loaded.rows
    assert (row.start, row.end, row.end_inferred) == (at(23), at(25), False)
    assert row.origin.path == str(first)
    assert [r.loaded for r in loaded.reports] == [1, 0]


def test_bad_blocks_are_reported_with_their_line_and_the_rest_loads(tmp_path):
    alice = session("alice", "S1", "100.64.0.10")
    good = block(at(10), "Start", **alice)
    bad_date = "Tue Nov 99 10:00:00 2026\n\tAcct-Status-Type = Start\n\n"
    no_status = header(at(10, 1)) + '\n\tUser-Name = "bob"\n\tAcct-Session-Id = "S2"\n\n'
    bad_ip = block(at(10, 2), "Start", **session("carol", "S3", "100.64.0.999"))
    no_user = block(at(10, 3), "Start", Acct_Session_Id="S4", Framed_IP_Address="100.64.0.40")
    stop = block(at(11), "Stop", **alice)
    text = good + bad_date + no_status + bad_ip + no_user + stop
    lines = text.split("\n")
    starts = [i + 1 for i, line in enumerate(lines) if line and line[0] != "\t"]
    loaded = load_radius_detail([write(tmp_path, text)])
    [row] = loaded.rows
    assert (row.identity, row.end) == ("alice", at(11))
    [report] = loaded.reports
    found = [(i.line, i.reason.split(" ")[0]) for i in report.issues]
    assert found == [(starts[1], "unreadable"), (starts[2], "no"), (starts[3], "bad"),
                     (starts[4], "session")]
    assert "100.64.0.999" in report.issues[2].reason
    assert report.skipped == 4 and report.loaded == 1


def test_unreadable_event_timestamp_falls_back_with_a_caveat(tmp_path):
    alice = session("alice", "S1", "100.64.0.10")
    text = block(at(10), "Start", event=False, Event_Timestamp="yesterday-ish", **alice)
    loaded = load_radius_detail([write(tmp_path, text)])
    assert loaded.rows[0].start == at(10)
    [issue] = loaded.reports[0].issues
    assert issue.line == 1 and not issue.skipped


def test_wrong_format_names_the_file(tmp_path):
    path = write(tmp_path, "address,hwaddr,client_id,valid_lifetime,expire\n", "leases.csv")
    with pytest.raises(LinkInputError, match="leases.csv"):
        load_radius_detail([path])
    with pytest.raises(LinkInputError, match="missing"):
        load_radius_detail([tmp_path / "missing"])


def test_looks_like():
    head = block(at(10), "Start", **session("alice", "S1", "100.64.0.10"))
    assert looks_like(head)
    assert looks_like("\n" + head)
    assert not looks_like("lease 10.0.0.5 {\n  starts 2 2026/11/24 10:00:00;\n")
    assert not looks_like("address,hwaddr,client_id\n")
    assert not looks_like("")
