"""Issue 12's "done when", on real PostgreSQL and Redis: a user declares a machine type with a
boolean, a state, a wrapping counter and signals in units plantstream's defaults never heard
of, sends them over HTTP, and reads them back typed in /v1/latest and rolled up in /v1/series
(time in each state, a counter's increase across its wrap, the boolean's time on and off)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import msgpack
import psycopg
import pytest
from fixtures.api import Api
from fixtures.pipeline import drain

from plantstream.processor import Processor
from plantstream.store import signal_defs
from plantstream.store.catalog import StoreCatalog

MODEL = """\
facility: plant-01
machine_types:
  - name: press
    signals:
      - {name: running, type: bool}
      - {name: state, type: state, states: [idle, run, fault]}
      - {name: parts, type: int64, kind: counter, wrap: uint16}
      - {name: line_voltage, unit: kV, accepted_units: [V]}   # pint converts V to kV
      - {name: stroke_rate, unit: strokes/min}                # a unit of the plant's own
machines:
  - {id: press-1, type: press}
"""


def _iso(ts: datetime) -> str:
    return ts.isoformat().replace("+00:00", "Z")


def _apply(api: Api, admin: str, document: str) -> dict[str, Any]:
    answer = api.client.put(
        "/v1/assets/model?facility=plant-01",
        content=document,
        headers={**api.headers(admin), "Content-Type": "application/yaml"},
    )
    assert answer.status_code == 200, answer.text
    return dict(answer.json())


def _post(api: Api, key: str, readings: list[dict[str, Any]]) -> dict[str, Any]:
    answer = api.client.post(
        "/v1/readings",
        json={"facility": "plant-01", "readings": readings},
        headers=api.headers(key),
    )
    assert answer.status_code == 202, answer.text
    return dict(answer.json())


def _r(metric: str, value: object, ts: datetime, **extra: object) -> dict[str, Any]:
    return {"device": "press-1", "metric": metric, "ts": _iso(ts), "value": value, **extra}


def test_declared_typed_signals_are_stored_and_rolled_up(
    api: Api, make_processor: Callable[..., Processor], database_url: str
) -> None:
    admin, writer, read = api.make_key("admin", None), api.make_key("ingest"), api.make_key("read")
    base = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(minutes=10)
    # before the model: the voltage channel is refused, as the issue found it
    before = _post(api, writer, [_r("line_voltage", 400.0, base, unit="V")])
    assert [r["code"] for r in before["rejected"]] == ["unknown_metric"]

    assert _apply(api, admin, MODEL)["changed"] is True
    s = timedelta(seconds=1)
    answer = _post(
        api,
        writer,
        [
            _r("state", "idle", base),
            _r("state", "run", base + 20 * s),
            _r("state", "fault", base + 50 * s),
            _r("state", "idle", base + 70 * s),
            _r("running", True, base),
            _r("running", False, base + 45 * s),
            _r("parts", 65530, base),
            _r("parts", 65535, base + 30 * s),
            _r("parts", 4, base + 50 * s),  # wrapped at 2**16: 5 parts
            _r("parts", 10, base + 70 * s),
            _r("line_voltage", 400.0, base, unit="V"),  # stored as 0.4 kV
            _r("line_voltage", 0.41, base + 30 * s),
            _r("stroke_rate", 12.0, base, unit="strokes/min"),
            _r("stroke_rate", 12.0, base + 10 * s, unit="strokes/h"),  # not its unit
            _r("state", "dancing", base + 80 * s),  # not one of its states
        ],
    )
    assert [(r["index"], r["code"]) for r in answer["rejected"]] == [
        (13, "unknown_unit"),
        (14, "unknown_state"),
    ]
    assert answer["accepted"] == 13

    catalog = StoreCatalog(api.state.pool, miss_refresh=0.0)  # as the runtime builds it
    drain(make_processor(database_url, api.stream, api.state.redis, catalog=catalog))

    latest = api.client.get(
        "/v1/latest?facility=plant-01&device=press-1", headers=api.headers(read)
    ).json()
    by_metric = {v["metric"]: v for v in latest["readings"]}
    assert {m: (v["value"], v["unit"]) for m, v in by_metric.items()} == {
        "state": ("idle", ""),
        "running": (False, ""),
        "parts": (10, ""),
        "line_voltage": (0.41, "kV"),
        "stroke_rate": (12.0, "strokes/min"),
    }
    assert by_metric["parts"]["value_type"] == "int64"
    assert by_metric["state"]["value_type"] == "state"
    assert by_metric["running"]["value_type"] == "bool"

    def buckets(metric: str) -> list[dict[str, Any]]:
        got = api.client.get(
            "/v1/series",
            params={
                "facility": "plant-01",
                "device": "press-1",
                "metric": metric,
                "from": _iso(base),
                "to": _iso(base + 120 * s),
                "step": "1m",
            },
            headers=api.headers(read),
        )
        assert got.status_code == 200, got.text
        return list(got.json()["points"])

    state = buckets("state")
    assert [p["states"] for p in state] == [
        {"idle": 20.0, "run": 30.0, "fault": 10.0},
        {"fault": 10.0, "idle": 50.0},  # fault carried in until idle at 70 s
    ]
    assert [p["increase"] for p in buckets("parts")] == [10.0, 6.0]  # across the wrap
    assert [p["states"] for p in buckets("running")] == [{"true": 45.0, "false": 15.0}]
    voltage = buckets("line_voltage")
    assert voltage[0]["twa"] == pytest.approx((0.4 * 30 + 0.41 * 30) / 60)
    assert voltage[0]["min"] == pytest.approx(0.4)


def test_every_ingest_format_takes_the_declared_signals(api: Api) -> None:
    admin, writer = api.make_key("admin", None), api.make_key("ingest")
    now = datetime.now(UTC).replace(microsecond=0)
    packed = msgpack.packb(
        {
            "facility": "plant-01",
            "readings": [
                {
                    "device": "press-1",
                    "metric": "stroke_rate",
                    "ts": _iso(now),
                    "value": 3.0,
                    "unit": "strokes/min",
                },
            ],
        }
    )
    line = f'press,device=press-1 stroke_rate=4,state="run",parts=7i {int(now.timestamp())}'

    def send() -> tuple[list[str], int]:
        mp = api.client.post(
            "/v1/readings",
            content=packed,
            headers={**api.headers(writer), "Content-Type": "application/msgpack"},
        )
        assert mp.status_code == 202, mp.text
        lp = api.client.post(
            "/api/v2/write?bucket=plant-01&precision=s",
            content=line,
            headers={"Authorization": f"Token {writer}"},
        )
        codes = [r["code"] for r in mp.json()["rejected"]]
        if lp.status_code == 400:
            codes += [r["code"] for r in lp.json()["rejected"]]
        return codes, lp.status_code

    assert send() == (["unknown_metric"] * 4, 400)  # nothing declared yet
    _apply(api, admin, MODEL)
    assert send() == ([], 204)


def test_the_register_policy_keeps_unknown_signals_for_review(
    api: Api, make_processor: Callable[..., Processor], database_url: str, db: psycopg.Connection
) -> None:
    admin, writer = api.make_key("admin", None), api.make_key("ingest")
    now = datetime.now(UTC).replace(microsecond=0) - timedelta(seconds=5)
    _apply(api, admin, MODEL.replace("machine_types:", "unknown_signals: register\nmachine_types:"))
    answer = _post(
        api,
        writer,
        [
            _r("spindle_load", 42.0, now, unit="%"),
            _r("spindle_load", 43.0, now + timedelta(seconds=1)),
            _r("coolant", "low", now),  # a register policy stores numbers: refused, with a code
        ],
    )
    assert answer["accepted"] == 2
    assert [r["code"] for r in answer["rejected"]] == ["invalid_reading"]
    drain(
        make_processor(
            database_url,
            api.stream,
            api.state.redis,
            catalog=StoreCatalog(api.state.pool, miss_refresh=0.0),
        )
    )
    assert db.execute(
        "SELECT r.value FROM readings r JOIN sensors s ON s.id = r.sensor_id "
        "WHERE s.metric = 'spindle_load' ORDER BY r.ts"
    ).fetchall() == [(42.0,), (43.0,)]

    review = api.client.get("/v1/assets/unclassified?facility=plant-01", headers=api.headers(admin))
    assert review.status_code == 200, review.text
    body = review.json()
    assert body["unknown_signals"] == "register"
    assert [(u["name"], u["devices"], u["sample_devices"]) for u in body["signals"]] == [
        ("spindle_load", 1, ["press-1"])
    ]
    reader = api.client.get(
        "/v1/assets/unclassified?facility=plant-01", headers=api.headers(api.make_key("read"))
    )
    assert reader.status_code == 403

    # declared: it leaves the review list and is held to its definition
    declared = MODEL.replace(
        "machines:", "signals:\n  - {name: spindle_load, unit: '%', range: [0, 100]}\nmachines:"
    )
    _apply(api, admin, declared)
    assert (
        api.client.get(
            "/v1/assets/unclassified?facility=plant-01", headers=api.headers(admin)
        ).json()["signals"]
        == []
    )
    again = _post(api, writer, [_r("spindle_load", 140.0, now + timedelta(seconds=2))])
    assert [r["code"] for r in again["rejected"]] == ["value_out_of_range"]
    # and the policy back to refuse: a signal nobody declared is refused again
    gone = _post(api, writer, [_r("coolant_flow", 1.0, now)])
    assert [r["code"] for r in gone["rejected"]] == ["unknown_metric"]


def test_past_its_bound_of_unclassified_signals_a_facility_refuses_new_ones(
    api: Api, db: psycopg.Connection
) -> None:
    admin, writer = api.make_key("admin", None), api.make_key("ingest")
    _apply(api, admin, "facility: plant-01\nunknown_signals: register\n")
    db.execute(
        "INSERT INTO signal_defs (facility, name, value_type, kind, unclassified) "
        "SELECT 'plant-01', 'x' || i, 'double', 'gauge', true FROM generate_series(1, %s) i",
        (signal_defs.MAX_UNCLASSIFIED,),
    )
    now = datetime.now(UTC).replace(microsecond=0)
    for _ in range(2):  # the second time from the catalog's memory, not PostgreSQL
        answer = _post(api, writer, [_r("x1", 1.0, now), _r("one_more", 2.0, now)])
        assert answer["accepted"] == 1  # x1 is registered already
        [refused] = answer["rejected"]
        assert (refused["index"], refused["code"]) == (1, "unknown_metric")
        assert "1000 unclassified signals" in refused["reason"]
    assert "plant-01" in api.state.catalog._full  # type: ignore[attr-defined]
