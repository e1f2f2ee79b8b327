"""Machine models as a user runs them, on real PostgreSQL and Redis: readings sent over HTTP,
the processor as ``serve`` builds it, a model trained through the API (or the CLI) on the
normal period, and a correlation break (each signal in its own range) alerting in
``/v1/alerts`` with the signals that contribute."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import psycopg
import pytest
from fixtures.api import Api
from fixtures.factories import iso
from fixtures.pipeline import drain

from plantstream.api import machine_models as machine_models_api
from plantstream.detect.engine import DetectionEngine
from plantstream.detect.machine_models import StoredMachines
from plantstream.processor import Processor
from plantstream.runtime.processing import detection_hooks
from plantstream.settings import load_settings

FACILITY = "plant-01"
PUMP = "line-1-pump-01"
SIGNALS = ["flow_rate", "pressure", "temperature"]
START = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=2)
NORMAL_S = 600  # the normal period: 10 minutes at 1 Hz, 60 buckets of 10


def pump(seconds: int, rng: np.random.Generator, *, broken: bool = False) -> np.ndarray:
    """Flow and pressure follow the pump's load together; temperature wanders on its own. In a
    break (a leak) flow is high and pressure low, each within its normal spread."""
    load = rng.normal(0, 1, seconds)
    flow = 50 + 5 * load + rng.normal(0, 0.3, seconds)
    pressure = 3 + 0.5 * load + rng.normal(0, 0.03, seconds)
    temperature = 60 + rng.normal(0, 0.5, seconds)
    if broken:
        flow = 56 + rng.normal(0, 0.3, seconds)
        pressure = 2.4 + rng.normal(0, 0.03, seconds)
    return np.column_stack([flow, pressure, temperature])


def send(api: Api, key: str, values: np.ndarray, first_s: int) -> None:
    """Each second's three readings at one timestamp, 33 seconds a request (99 readings)."""
    for a in range(0, len(values), 33):
        readings = [
            {
                "device": PUMP,
                "metric": metric,
                "ts": iso(START + timedelta(seconds=first_s + a + i)),
                "value": float(row[j]),
            }
            for i, row in enumerate(values[a : a + 33])
            for j, metric in enumerate(SIGNALS)
        ]
        answer = api.client.post(
            "/v1/readings",
            json={"facility": FACILITY, "readings": readings},
            headers=api.headers(key),
        )
        assert answer.status_code == 202, answer.text
        assert answer.json()["accepted"] == len(readings)


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def pipeline(
    api: Api, database_url: str, make_processor: Callable[..., Processor]
) -> Iterator[tuple[Processor, StoredMachines, Clock]]:
    """The processor with the detection ``serve`` builds, its machine watches on a clock the
    test moves (no sleeping for their refresh)."""
    hooks = detection_hooks(
        load_settings(), database_url=database_url, redis_client=api.state.redis
    )
    engine = hooks[0]
    assert isinstance(engine, DetectionEngine)
    machines = engine.machines
    assert isinstance(machines, StoredMachines)
    clock = Clock()
    machines.clock = clock
    processor = make_processor(database_url, api.stream, api.state.redis, hooks=hooks)
    yield processor, machines, clock
    engine.close()


def normal_period(api: Api) -> dict[str, str]:
    return {"from": iso(START), "to": iso(START + timedelta(seconds=NORMAL_S))}


def train(api: Api, key: str, body: dict[str, Any], machine: str = PUMP) -> Any:
    return api.client.put(
        f"/v1/detection/machines/{FACILITY}/{machine}", json=body, headers=api.headers(key)
    )


def error_code(answer: Any, status: int) -> str:
    assert answer.status_code == status, answer.text
    return str(answer.json()["error"]["code"])


def test_a_trained_machine_alerts_on_a_correlation_break_naming_its_signals(
    api: Api, pipeline: tuple[Processor, StoredMachines, Clock]
) -> None:
    processor, machines, clock = pipeline
    rng = np.random.default_rng(5)
    ingest, admin = api.make_key("ingest", FACILITY), api.make_key("admin", None)
    read = api.make_key("read", FACILITY)
    send(api, ingest, pump(NORMAL_S, rng), 0)
    drain(processor)

    trained = train(api, admin, normal_period(api))
    assert trained.status_code == 200, trained.text
    model = trained.json()
    assert model["version"] == 1
    assert model["signals"] == SIGNALS  # every numeric signal of the machine, by name
    assert (model["per_bucket"], model["buckets"], model["readings"]) == (10, 60, 3 * NORMAL_S)
    assert 1 <= model["components"] <= 3
    assert model["t2_limit"] > 0
    assert model["q_limit"] > 0
    assert model["created_by"] == admin.split("_")[1]

    # still normal, within the watches' refresh interval: the model is not in force yet
    send(api, ingest, pump(60, rng), NORMAL_S)
    drain(processor)
    assert machines.versions == {}
    clock.now += machines.refresh_s
    # normal, then a leak for 90 s, then normal again
    send(api, ingest, pump(120, rng), NORMAL_S + 60)
    assert machines.versions == {}
    drain(processor)
    assert machines.versions == {(FACILITY, PUMP): 1}
    broken_at = START + timedelta(seconds=NORMAL_S + 180)
    send(api, ingest, pump(90, rng, broken=True), NORMAL_S + 180)
    send(api, ingest, pump(60, rng), NORMAL_S + 270)
    drain(processor)

    answer = api.client.get(
        "/v1/alerts",
        params={"facility": FACILITY, "detector": "correlation_break"},
        headers=api.headers(read),
    )
    assert answer.status_code == 200, answer.text
    alerts = answer.json()["alerts"]
    assert len(alerts) == 1, alerts
    alert = alerts[0]
    assert alert["device"] == PUMP
    opened = datetime.fromisoformat(alert["opened_at"])
    assert broken_at <= opened <= broken_at + timedelta(seconds=20)
    assert alert["state"] == "resolved"
    details = alert["details"]
    top_two = [c["signal"] for c in details["contributing"][:2]]
    assert set(top_two) == {"flow_rate", "pressure"}
    assert "flow_rate" in alert["message"]
    assert "pressure" in alert["message"]
    assert details["statistic"] > details["threshold"]
    assert details["window"]["readings"] == 10


def test_training_refuses_what_it_cannot_use_with_a_code(
    api: Api, pipeline: tuple[Processor, StoredMachines, Clock]
) -> None:
    processor, _, _ = pipeline
    rng = np.random.default_rng(6)
    send(api, api.make_key("ingest", FACILITY), pump(NORMAL_S, rng), 0)
    drain(processor)
    admin = api.make_key("admin", None)
    period = normal_period(api)
    reversed_period = {"from": period["to"], "to": period["from"]}
    assert error_code(train(api, admin, reversed_period), 400) == "invalid_period"
    too_long = {"from": period["from"], "to": iso(START + timedelta(days=8))}
    assert error_code(train(api, admin, too_long), 400) == "invalid_period"
    no_offset = {"from": "2026-12-01T08:00:00", "to": period["to"]}
    assert error_code(train(api, admin, no_offset), 400) == "invalid_time"
    assert error_code(train(api, admin, {**period, "form": "x"}), 400) == "invalid_request"
    answer = train(api, admin, period, machine="line-9-pump-99")
    assert error_code(answer, 404) == "unknown_machine"
    answer = train(api, admin, {**period, "signals": ["flow_rate", "vibration"]})
    assert error_code(answer, 400) == "unknown_metric"
    assert "vibration" in answer.json()["error"]["message"]
    # 30 s at 1 Hz: 3 buckets of 10 where 10 are needed
    short = {"from": period["from"], "to": iso(START + timedelta(seconds=30))}
    answer = train(api, admin, short)
    assert error_code(answer, 400) == "insufficient_data"
    assert "3 buckets of 10, at least 10 are needed" in answer.json()["error"]["message"]
    before = {"from": iso(START - timedelta(hours=1)), "to": period["from"]}
    assert error_code(train(api, admin, before), 400) == "insufficient_data"
    # only an admin trains; a facility's read or ingest key cannot
    assert error_code(train(api, api.make_key("read", FACILITY), period), 403) == "forbidden_role"
    assert error_code(train(api, api.make_key("ingest", FACILITY), period), 403) == (
        "forbidden_role"
    )
    # nothing was recorded by any of these
    listed = api.client.get(
        f"/v1/detection/machines/{FACILITY}", headers=api.headers(api.make_key("read", FACILITY))
    )
    assert listed.json() == {"models": []}


def test_models_are_versioned_listed_and_removed_through_api_and_cli(
    api: Api,
    pipeline: tuple[Processor, StoredMachines, Clock],
    database_url: str,
    redis_url: str,
    db: psycopg.Connection,
) -> None:
    processor, machines, clock = pipeline
    rng = np.random.default_rng(7)
    send(api, api.make_key("ingest", FACILITY), pump(NORMAL_S, rng), 0)
    drain(processor)
    admin, read = api.make_key("admin", None), api.make_key("read", FACILITY)
    other = api.make_key("read", "plant-02")
    path = f"/v1/detection/machines/{FACILITY}/{PUMP}"
    first = train(api, admin, {**normal_period(api), "signals": ["pressure", "flow_rate"]})
    assert first.json()["signals"] == ["pressure", "flow_rate"]

    env = {
        **os.environ,
        "PLANTSTREAM_DATABASE_URL": database_url,
        "PLANTSTREAM_REDIS_URL": redis_url,
    }

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "plantstream", "detect", "machine", *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )

    period = normal_period(api)
    done = cli("train", FACILITY, PUMP, "--from", period["from"], "--to", period["to"])
    assert done.returncode == 0, done.stderr
    assert "model version 2: 3 signals" in done.stdout
    bad = cli("train", FACILITY, PUMP, "--from", period["to"], "--to", period["from"])
    assert bad.returncode == 2
    assert "must end after it starts" in bad.stderr

    shown = api.client.get(path, headers=api.headers(read)).json()
    assert shown["version"] == 2
    assert shown["signals"] == SIGNALS
    assert shown["created_by"].startswith("cli:")
    assert [v["version"] for v in shown["versions"]] == [2, 1]
    listed = api.client.get(f"/v1/detection/machines/{FACILITY}", headers=api.headers(read))
    assert [(m["machine"], m["version"]) for m in listed.json()["models"]] == [(PUMP, 2)]
    assert error_code(api.client.get(path, headers=api.headers(other)), 403) == (
        "forbidden_facility"
    )
    # the processor takes version 2 up on its next refresh
    clock.now += machines.refresh_s
    send(api, api.make_key("ingest", FACILITY), pump(30, rng), NORMAL_S)
    drain(processor)
    assert machines.versions == {(FACILITY, PUMP): 2}

    assert error_code(api.client.delete(path, headers=api.headers(read)), 403) == "forbidden_role"
    removed = api.client.delete(path, headers=api.headers(admin))
    assert removed.status_code == 200, removed.text
    assert removed.json()["version"] == 3
    assert error_code(api.client.get(path, headers=api.headers(read)), 404) == "not_found"
    assert error_code(api.client.delete(path, headers=api.headers(admin)), 404) == "not_found"
    gone = cli("delete", FACILITY, PUMP)
    assert gone.returncode == 2
    assert "has no model" in gone.stderr
    assert cli("list", FACILITY).stdout.strip() == "[]"
    clock.now += machines.refresh_s
    send(api, api.make_key("ingest", FACILITY), pump(30, rng), NORMAL_S + 30)
    drain(processor)
    assert machines.versions == {}
    assert machines.machines == []
    # parameters are JSON arrays, not a pickled object
    stored = db.execute(
        "SELECT jsonb_typeof(model -> 'components'), jsonb_typeof(model -> 'center') "
        "FROM machine_models WHERE version = 2"
    ).fetchone()
    assert stored == ("array", "array")


def test_removing_a_model_resolves_its_open_alert(
    api: Api, pipeline: tuple[Processor, StoredMachines, Clock]
) -> None:
    processor, machines, clock = pipeline
    rng = np.random.default_rng(8)
    ingest, admin = api.make_key("ingest", FACILITY), api.make_key("admin", None)
    read = api.make_key("read", FACILITY)
    send(api, ingest, pump(NORMAL_S, rng), 0)
    drain(processor)
    assert train(api, admin, normal_period(api)).status_code == 200
    clock.now += machines.refresh_s
    send(api, ingest, pump(60, rng, broken=True), NORMAL_S)  # the leak goes on
    drain(processor)

    def alert_states() -> list[str]:
        answer = api.client.get(
            "/v1/alerts",
            params={"facility": FACILITY, "detector": "correlation_break"},
            headers=api.headers(read),
        )
        return [a["state"] for a in answer.json()["alerts"]]

    assert alert_states() == ["open"]
    removed = api.client.delete(
        f"/v1/detection/machines/{FACILITY}/{PUMP}", headers=api.headers(admin)
    )
    assert removed.status_code == 200, removed.text
    clock.now += machines.refresh_s
    send(api, ingest, pump(30, rng, broken=True), NORMAL_S + 60)
    drain(processor)
    assert alert_states() == ["resolved"]  # no model judges the machine: nothing holds it open


def test_one_training_at_a_time_per_process_the_next_one_is_told_to_come_back(
    api: Api, pipeline: tuple[Processor, StoredMachines, Clock]
) -> None:
    """Each training holds a pool connection and up to 2,000,000 readings: while one runs, the
    next is refused 429 ``overloaded`` with a Retry-After, and trains once it is over."""
    processor, _, _ = pipeline
    send(api, api.make_key("ingest", FACILITY), pump(NORMAL_S, np.random.default_rng(7)), 0)
    drain(processor)
    admin = api.make_key("admin", None)
    assert machine_models_api._TRAINING.acquire(blocking=False)  # another training runs
    try:
        answer = train(api, admin, normal_period(api))
        assert error_code(answer, 429) == "overloaded"
        assert float(answer.headers["retry-after"]) > 0
    finally:
        machine_models_api._TRAINING.release()
    assert train(api, admin, normal_period(api)).status_code == 200
