"""The composition root: every part built from one ``Settings``, roles served by registration."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import psycopg
import pytest
from fastapi.testclient import TestClient
from fixtures.kinesis import MOTO_REGION
from fixtures.pipeline import drain, stored_readings

from plantstream.errors import ConfigError
from plantstream.model.plantfile import parse_model
from plantstream.runtime import ROLES, Runtime, server_config
from plantstream.settings import load_settings
from plantstream.store import assets
from plantstream.store.catalog import StoreCatalog
from plantstream.store.keys import Role, create_key
from plantstream.stream.kinesis import KinesisStream


@pytest.fixture
def runtime(database_url: str, redis_url: str, tmp_path: Path) -> Iterator[Runtime]:
    settings = load_settings(
        database_url=database_url,
        redis_url=redis_url,
        data_dir=tmp_path,
        stream_name="runtime-test",
        rate_limit_per_key=123.0,
        max_inflight_ingest=7,
        max_future_seconds=60,
        max_connections=50,
        keep_alive_seconds=61,
        forwarded_allow_ips="10.0.0.1",
        detection=False,
    )
    built = Runtime(settings)
    yield built
    built.close()


def test_every_part_takes_its_figures_from_the_settings(runtime: Runtime) -> None:
    state, settings = runtime.state, runtime.settings
    assert state.keys.ttl == settings.auth_cache_seconds == 5.0  # no second default
    assert state.limiter.rate == 123.0
    assert state.ingest_gate.limit == 7
    assert state.window.max_future_us == 60 * 1_000_000
    # one time window for ingest and processor: a reading ingest takes, the processor keeps
    assert runtime.processor.config.window is state.window
    stream = runtime.stream()
    assert stream.name == runtime.processor.stream.name == state.stream.name == "runtime-test"
    stream.close()


def test_every_web_server_gets_the_connection_cap_keep_alive_and_proxy_headers(
    runtime: Runtime,
) -> None:
    config = server_config(runtime.app(["ingest"]), runtime.settings)
    assert config.limit_concurrency == 50
    assert config.timeout_keep_alive == 61
    assert config.proxy_headers is True
    assert config.forwarded_allow_ips == "10.0.0.1"


def test_the_roles_are_registered_and_an_unknown_one_is_refused() -> None:
    assert list(ROLES) == ["ingest", "processor", "api", "all", "mqtt"]
    with pytest.raises(ConfigError, match="unknown role 'no-such-role'"):
        ROLES.get("no-such-role")


def test_a_web_role_serves_only_its_surfaces(runtime: Runtime) -> None:
    with TestClient(runtime.app(["ingest"])) as ingest_only:
        assert ingest_only.post("/v1/readings", json={}).status_code == 401
        assert ingest_only.get("/v1/latest?facility=plant-01").status_code == 404
    with TestClient(runtime.app(["query"])) as query_only:
        assert query_only.post("/v1/readings", json={}).status_code == 404
        assert query_only.get("/v1/latest?facility=plant-01").status_code == 401


def test_readings_go_through_the_runtimes_ingest_and_processor(
    runtime: Runtime, db: psycopg.Connection, make_reading: Callable[..., dict]
) -> None:
    key, _ = create_key(
        db, server_secret=runtime.server_secret, role=Role.INGEST, facility="plant-01"
    )
    now = datetime.now(UTC).replace(microsecond=0).isoformat()
    with TestClient(runtime.app(["ingest", "query"])) as client:
        answer = client.post(
            "/v1/readings",
            json={"facility": "plant-01", "readings": [make_reading(ts=now, value=7.5)]},
            headers={"Authorization": f"Bearer {key}"},
        )
    assert answer.status_code == 202, answer.text
    drain(runtime.processor)
    assert list(stored_readings(db).values()) == [7.5]


def test_the_stream_backend_is_chosen_by_its_name(
    make_kinesis_stream: Callable[..., KinesisStream],
    moto_endpoint: str,
    database_url: str,
    redis_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    existing = make_kinesis_stream(shards=3)
    for name, value in (
        ("AWS_REGION", MOTO_REGION),
        ("AWS_ACCESS_KEY_ID", "testing"),
        ("AWS_SECRET_ACCESS_KEY", "testing"),  # moto takes any credentials
    ):
        monkeypatch.setenv(name, value)
    settings = load_settings(
        database_url=database_url,
        redis_url=redis_url,
        data_dir=tmp_path,
        stream="kinesis",
        kinesis_stream_name=existing.name,
        kinesis_endpoint_url=moto_endpoint,
    )
    stream = Runtime(settings).stream()
    assert isinstance(stream, KinesisStream)
    assert (stream.name, len(stream.list_shards())) == (existing.name, 3)
    stream.close()
    with pytest.raises(ConfigError, match="KINESIS_STREAM_NAME"):
        Runtime(settings.model_copy(update={"kinesis_stream_name": None})).stream()


def test_the_runtimes_ingest_and_processor_take_a_facilitys_declared_signals(
    runtime: Runtime, db: psycopg.Connection, make_reading: Callable[..., dict]
) -> None:
    model = "facility: plant-01\nsignals: [{name: line_voltage, unit: kV, accepted_units: [V]}]\n"
    assets.apply_model(conn=db, model=parse_model(model.encode(), source="model").model)
    assert isinstance(runtime.state.catalog, StoreCatalog)
    assert runtime.processor.config.catalog is runtime.processor_catalog
    key, _ = create_key(
        db, server_secret=runtime.server_secret, role=Role.INGEST, facility="plant-01"
    )
    now = datetime.now(UTC).replace(microsecond=0).isoformat()
    reading = make_reading(ts=now, metric="line_voltage", value=400.0, unit="V")
    with TestClient(runtime.app(["ingest"])) as client:
        answer = client.post(
            "/v1/readings",
            json={"facility": "plant-01", "readings": [reading]},
            headers={"Authorization": f"Bearer {key}"},
        )
    assert answer.json() == {"accepted": 1, "rejected": []}
    drain(runtime.processor)
    assert list(stored_readings(db).values()) == [pytest.approx(0.4)]
    unit = db.execute("SELECT unit FROM sensors WHERE metric = 'line_voltage'").fetchone()
    assert unit == ("kV",)
