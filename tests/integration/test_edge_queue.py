"""The edge queue, config and register maps on their own: no peer needed, a real SQLite file."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from plantstream.edge.config import ModbusSignal, QueueConfig, ValueKind, load_config
from plantstream.edge.extras import require_edge_extra
from plantstream.edge.queue import HELD_HISTORY, HELD_TYPED, EdgeQueue, Lanes
from plantstream.edge.records import EdgeReading, opcua_quality
from plantstream.edge.registers import decode, encode
from plantstream.edge.schema import SCHEMA
from plantstream.edge.wire import wire_value
from plantstream.errors import ConfigError
from plantstream.model.readings import now_us


def reading(i: int, *, metric: str = "pressure", kind: ValueKind = ValueKind.DOUBLE,
            value: object = None, ts_us: int | None = None) -> EdgeReading:  # fmt: skip
    return EdgeReading(
        source="s", device="d-1", metric=metric, ts_us=ts_us if ts_us is not None else now_us() + i,
        value_type=kind, value=float(i) if value is None else value,  # type: ignore[arg-type]
    )  # fmt: skip


def queue(tmp_path: Path, **options: object) -> EdgeQueue:
    return EdgeQueue(QueueConfig(path=tmp_path / "q.db", **options))  # type: ignore[arg-type]


def test_typed_values_are_kept_natively_and_all_forwarded(tmp_path: Path) -> None:
    q = queue(tmp_path)
    q.append(
        [
            reading(0, kind=ValueKind.INT64, value=2**62 + 1),  # exact past 2**53
            reading(1, kind=ValueKind.BOOL, value=True),
            reading(2, kind=ValueKind.STATE, value="running"),
            reading(3, kind=ValueKind.STRING, value="lot 42"),
            reading(4),
        ],
        now_us=now_us(),
    )
    q.close()
    reopened = queue(tmp_path)  # what was committed is there after a restart
    rows = reopened.peek(10, now_us=now_us())
    assert [(r.value_type, r.value) for r in rows] == [
        ("int64", 2**62 + 1), ("bool", 1), ("state", "running"), ("string", "lot 42"),
        ("double", 4.0),
    ]  # fmt: skip
    assert [wire_value(r) for r in rows] == [2**62 + 1, True, "running", "lot 42", 4.0]
    assert (reopened.depth, reopened.stats().held) == (5, {})


def test_a_queue_of_the_previous_agent_opens_and_its_held_strings_are_sent(
    tmp_path: Path,
) -> None:
    """The agent before typed ingest held strings and states, and had no lanes."""
    import sqlite3

    from plantstream.edge.schema import COLUMNS

    old_schema = SCHEMA.replace(",\n    lane INTEGER NOT NULL DEFAULT 0", "")
    assert "lane" not in old_schema.split("CREATE INDEX")[0]
    conn = sqlite3.connect(tmp_path / "q.db", isolation_level=None)
    conn.executescript(old_schema)
    conn.executemany(
        f"INSERT INTO readings ({COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)",
        [("s", "m1", "machine_state", 10, None, None, "state", "idle", None, 0, 0, 1, HELD_TYPED),
         ("s", "m1", "pressure", 11, None, None, "double", 2.5, None, 0, 0, 1, None)],
    )  # fmt: skip
    conn.close()
    q = queue(tmp_path, live_window_hours=1e6)
    assert (q.depth, q.held) == (2, {})
    assert [r.value for r in q.peek(10, now_us=now_us())] == ["idle", 2.5]


def test_lanes_split_the_queue_by_signal_and_ack_only_their_own(tmp_path: Path) -> None:
    q = queue(tmp_path)
    metrics = ["pressure", "temperature", "flow_rate", "current", "power", "humidity"]
    q.append([reading(i, metric=metrics[i % 6]) for i in range(60)], now_us=now_us())
    lanes = [Lanes(i, 3) for i in range(3)]
    peeked = [q.peek(100, now_us=now_us(), lanes=lane) for lane in lanes]
    ids = [[r.id for r in rows] for rows in peeked]
    assert sorted(i for part in ids for i in part) == sorted({i for part in ids for i in part})
    assert sum(len(part) for part in ids) == 60  # every reading in exactly one lane
    for rows in peeked:  # a signal is in one lane only, in the order stored
        assert all(r.id == s for r, s in zip(rows, sorted(r.id for r in rows), strict=True))
    by_metric = {r.metric: n for n, rows in enumerate(peeked) for r in rows}
    assert len(by_metric) == 6
    assert all(by_metric[r.metric] == n for n, rows in enumerate(peeked) for r in rows)
    busy = next(n for n, part in enumerate(ids) if part)
    q.ack(ids[busy][:5], now_us=now_us(), lanes=lanes[busy])
    assert q.depth == 55
    left = [r.id for lane in lanes for r in q.peek(100, now_us=now_us(), lanes=lane)]
    assert sorted(left) == sorted(i for part in ids for i in part if i not in ids[busy][:5])


def test_ack_removes_delivered_and_dead_letters_the_rest_in_order(tmp_path: Path) -> None:
    q = queue(tmp_path)
    q.append([reading(i) for i in range(10)], now_us=now_us())
    rows = q.peek(4, now_us=now_us())
    assert [r.value for r in rows] == [0.0, 1.0, 2.0, 3.0]
    q.ack([rows[0].id, rows[1].id, rows[3].id], [(rows[2].id, "value_out_of_range", "x")],
          now_us=now_us())  # fmt: skip
    assert [r.value for r in q.peek(10, now_us=now_us())] == [float(i) for i in range(4, 10)]
    dead = q.dead_letter_rows()
    assert [(d[3], d[6]) for d in dead] == [(2.0, "value_out_of_range")]
    counters = q.stats().counters
    assert (counters["stored"], counters["delivered"], counters["dead_lettered"]) == (10, 3, 1)


def test_readings_older_than_the_live_window_are_set_aside_for_the_history_path(
    tmp_path: Path,
) -> None:
    q = queue(tmp_path, live_window_hours=1)
    old = now_us() - 2 * 3600 * 1_000_000
    q.append([reading(0, ts_us=old), reading(1)], now_us=now_us())
    assert [r.value for r in q.peek(10, now_us=now_us())] == [1.0]
    assert q.stats().held == {HELD_HISTORY: 1}
    history = q.peek_history(10)  # for the history path, which removes them once stored
    assert [r.ts_us for r in history] == [old]
    q.ack([history[0].id], now_us=now_us(), held=HELD_HISTORY)
    assert (q.stats().held, q.depth, q.peek_history(10)) == ({}, 1, [])


def test_refuse_policy_keeps_what_it_has_and_counts_the_refused(tmp_path: Path) -> None:
    q = queue(tmp_path, max_readings=100)
    first = q.append([reading(i) for i in range(80)], now_us=now_us())
    second = q.append([reading(i) for i in range(80, 160)], now_us=now_us())
    assert (first.stored, second.stored, second.refused, second.dropped) == (80, 20, 60, 0)
    assert q.peek(1, now_us=now_us())[0].value == 0.0  # the oldest is still there
    assert q.stats().counters["refused"] == 60


def test_byte_budget_is_a_bound_too(tmp_path: Path) -> None:
    q = queue(tmp_path, max_bytes=1024 * 1024)
    refused = 0
    for batch in range(200):
        result = q.append([reading(batch * 1000 + i) for i in range(1000)], now_us=now_us())
        refused += result.refused
        if refused:
            break
    assert refused > 0
    assert q.bytes() < 1.2 * 1024 * 1024


def test_drop_oldest_makes_room_and_counts(tmp_path: Path) -> None:
    q = queue(tmp_path, max_readings=100, overflow="drop_oldest")
    q.append([reading(i) for i in range(100)], now_us=now_us())
    result = q.append([reading(i) for i in range(100, 130)], now_us=now_us())
    assert (result.stored, result.refused, result.dropped) == (30, 0, 30)
    assert q.peek(1, now_us=now_us())[0].value == 30.0
    assert q.depth == 100


@pytest.mark.parametrize(
    ("data_type", "word", "byte", "raw"),
    [
        ("int16", "big", "big", -1234),
        ("uint16", "big", "little", 65000),
        ("int32", "little", "big", -2_000_000_000),
        ("uint32", "little", "little", 4_000_000_000),
        ("int64", "big", "big", -(2**62) - 7),
        ("uint64", "little", "big", 2**64 - 3),
        ("float32", "big", "big", 1.5),
        ("float64", "little", "little", -1234.56789),
    ],
)
def test_register_maps_round_trip(data_type: str, word: str, byte: str, raw: float) -> None:
    signal = ModbusSignal(device="d", metric="m", address=0, data_type=data_type,  # type: ignore[arg-type]
                          word_order=word, byte_order=byte)  # type: ignore[arg-type]  # fmt: skip
    assert decode(signal, encode(signal, raw)) == raw


def test_word_order_is_the_modbus_convention() -> None:
    signal = ModbusSignal(device="d", metric="m", address=0, data_type="float32")
    assert encode(signal, 12.5) == [0x4148, 0x0000]  # the high word first
    scaled = ModbusSignal(device="d", metric="m", address=0, data_type="int16", scale=0.1,
                          offset=-40)  # fmt: skip
    assert decode(scaled, [650]) == pytest.approx(25.0)


def test_opcua_status_severity_is_the_quality() -> None:
    assert [opcua_quality(c) for c in (0, 0x40900000, 0x808C0000, 0xC0000000)] == [0, 1, 2, 2]


GOOD_CONFIG = """\
facility: plant-01
destination:
  url: http://127.0.0.1:8080
sources:
  - type: modbus
    name: pumps
    host: 10.0.0.5
    signals:
      - {device: pump-1, metric: pressure, address: 0}
"""


def test_config_errors_name_the_line(tmp_path: Path) -> None:
    path = tmp_path / "edge.yaml"
    path.write_text(GOOD_CONFIG.replace("address: 0", "address: 70000"))
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert f"{path}:9:" in str(caught.value)
    assert "sources.0.signals.0.address" in str(caught.value)
    path.write_text(GOOD_CONFIG.replace("    host:", "    hots:"))
    with pytest.raises(ConfigError, match=r"edge.yaml:7:\d+: sources.0.hots: unknown key"):
        load_config(path)
    opcua = (
        "  - {type: opcua, name: press, endpoint: 'opc.tcp://h:4840',\n"
        "     security: {mode: none}, signals: [{node: 'ns=2;i=1', device: p, metric: t}]}\n"
    )
    path.write_text(GOOD_CONFIG + opcua)
    with pytest.raises(
        ConfigError, match=r"edge.yaml:11:16: sources.1.security: .*set insecure: true"
    ):
        load_config(path)
    path.write_text(GOOD_CONFIG + "facility: again\n")
    with pytest.raises(ConfigError, match="'facility' is given twice"):
        load_config(path)


def test_edge_check_command(tmp_path: Path) -> None:
    path = tmp_path / "edge.yaml"
    path.write_text(GOOD_CONFIG)
    ok = subprocess.run([sys.executable, "-m", "plantstream", "edge", "check", str(path)],
                        capture_output=True, text=True, timeout=120, check=False)  # fmt: skip
    assert ok.returncode == 0, ok.stderr
    assert "ok: 1 sources, 1 signals" in ok.stdout
    path.write_text(GOOD_CONFIG.replace("url: http", "url: ftp"))
    bad = subprocess.run([sys.executable, "-m", "plantstream", "edge", "check", str(path)],
                         capture_output=True, text=True, timeout=120, check=False)  # fmt: skip
    assert bad.returncode == 2
    assert "edge.yaml:3:8: destination.url" in bad.stderr.replace("\n", " ")


def test_a_missing_extra_is_named() -> None:
    with pytest.raises(ConfigError, match=r"pip install plantstream\[edge\]"):
        require_edge_extra("asyncua_not_installed_here")


def test_the_wire_body_is_typed_and_says_only_what_is_not_the_default() -> None:
    import orjson

    from plantstream.edge.queue import Queued
    from plantstream.edge.wire import encode as encode_body

    rows = [
        Queued(1, "m1", "parts", 1_700_000_000_000_001, "int64", 2**62 + 1, None, 0, 0),
        Queued(2, "m1", "running", 1_700_000_000_000_002, "bool", 1, None, 0, None),
        Queued(3, "m1", "mode", 1_700_000_000_000_003, "state", "run", None, 1, 0x40920000),
        Queued(4, "m1", "pressure", 1_700_000_000_000_004, "double", 2.5, "bar", 0, 0),
    ]
    body = orjson.loads(encode_body("plant-01", rows))
    assert body["facility"] == "plant-01"
    assert body["readings"] == [
        {"device": "m1", "metric": "parts", "ts": "2023-11-14T22:13:20.000001+00:00",
         "value": 2**62 + 1},
        {"device": "m1", "metric": "running", "ts": "2023-11-14T22:13:20.000002+00:00",
         "value": True},
        {"device": "m1", "metric": "mode", "ts": "2023-11-14T22:13:20.000003+00:00",
         "value": "run", "quality": "uncertain", "quality_code": 0x40920000},
        {"device": "m1", "metric": "pressure", "ts": "2023-11-14T22:13:20.000004+00:00",
         "value": 2.5, "unit": "bar"},
    ]  # fmt: skip


def test_a_reading_dropped_while_in_flight_is_not_acked_twice(tmp_path: Path) -> None:
    """Under drop_oldest, readings peeked for sending can be dropped to make room before their
    ack: the books still balance (stored = delivered + dropped + waiting) and the depth is
    what waits."""
    q = queue(tmp_path, max_readings=10, overflow="drop_oldest")
    q.append([reading(i) for i in range(10)], now_us=now_us())
    in_flight = q.peek(10, now_us=now_us())
    assert q.append([reading(i) for i in range(10, 15)], now_us=now_us()).dropped == 5
    q.ack([r.id for r in in_flight], now_us=now_us())
    counters = q.stats().counters
    assert (counters["stored"], counters["delivered"], counters["dropped"]) == (15, 5, 5)
    assert q.depth == 5
    assert [r.value for r in q.peek(10, now_us=now_us())] == [float(i) for i in range(10, 15)]
    q.close()
    assert queue(tmp_path, max_readings=10, overflow="drop_oldest").depth == 5  # as counted


def test_after_an_upgrade_a_signal_s_old_readings_leave_before_its_new_ones(
    tmp_path: Path,
) -> None:
    """A queue of the agent before lanes: its rows take their signal's lane on open, so the
    sender of that lane forwards them first, before the readings queued after the upgrade."""
    import sqlite3

    from plantstream.edge.schema import COLUMNS, lane_of

    metrics = ["pressure", "temperature", "flow_rate", "current"]
    assert any(lane_of("d-1", m) % 4 for m in metrics)  # some signal is not in lane 0
    old_schema = SCHEMA.replace(",\n    lane INTEGER NOT NULL DEFAULT 0", "")
    conn = sqlite3.connect(tmp_path / "q.db", isolation_level=None)
    conn.executescript(old_schema)
    conn.executemany(
        f"INSERT INTO readings ({COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)",
        [("s", "d-1", m, 10, None, None, "double", 1.0, None, 0, 0, 1, None) for m in metrics],
    )
    conn.close()
    q = queue(tmp_path, live_window_hours=1e6)
    q.append([reading(i, metric=m, ts_us=20) for i, m in enumerate(metrics)], now_us=now_us())
    for lane in (Lanes(i, 4) for i in range(4)):
        rows = q.peek(100, now_us=now_us(), lanes=lane)
        for m in {r.metric for r in rows}:
            assert [r.ts_us for r in rows if r.metric == m] == [10, 20], (lane, m)
