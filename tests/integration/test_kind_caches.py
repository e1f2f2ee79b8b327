"""The processor's rollup kind of a signal follows the facility's model: a signal re-declared
(a gauge made a counter, in another process) is rolled up as its new kind once the catalog's
ttl has passed, not as the kind the processor saw first for as long as it runs."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import psycopg
from fixtures.api import Api
from fixtures.pipeline import drain

from plantstream.model import SignalDef, SignalKind
from plantstream.processor import Processor
from plantstream.processor.prepare import KindCache
from plantstream.store import signal_defs
from plantstream.store.catalog import StoreCatalog


def _post(api: Api, key: str, value: float, ts: datetime) -> None:
    reading = {"device": "m1", "metric": "flow", "ts": ts.isoformat(), "value": value}
    answer = api.client.post(
        "/v1/readings",
        json={"facility": "plant-01", "readings": [reading]},
        headers=api.headers(key),
    )
    assert (answer.status_code, answer.json()["accepted"]) == (202, 1), answer.text


def test_a_kind_changed_by_a_model_apply_reaches_the_running_processor(
    api: Api, db: psycopg.Connection, make_processor: Callable[..., Processor], database_url: str
) -> None:
    signal_defs.upsert_signals(conn=db, facility="plant-01", signals=[SignalDef("flow")])
    now = [0.0]
    catalog = StoreCatalog(api.state.pool, ttl=5.0, clock=lambda: now[0])
    processor = make_processor(database_url, api.stream, None, catalog=catalog)
    writer = api.make_key("ingest")
    start = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(minutes=5)
    _post(api, writer, 1.0, start)
    drain(processor)
    signal_defs.upsert_signals(
        conn=db, facility="plant-01", signals=[SignalDef("flow", kind=SignalKind.COUNTER)]
    )
    now[0] += 6.0  # past the processor catalog's ttl
    _post(api, writer, 2.0, start + timedelta(minutes=2))
    drain(processor)
    kinds = db.execute("SELECT kind FROM rollup_1m ORDER BY bucket").fetchall()
    assert kinds == [(0,), (1,)]  # gauge, then counter


def test_the_kind_cache_is_bounded(api: Api, db: psycopg.Connection) -> None:
    cache: KindCache[int] = KindCache(StoreCatalog(api.state.pool), max_entries=10)
    for sensor in range(25):
        cache.fresh()
        assert cache.get(sensor, "plant-01", "temperature") == (0, 0.0)
        assert len(cache) <= 10
