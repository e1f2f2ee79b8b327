"""``GET /v1/series`` of a signal the facility's model no longer declares: its stored history
still reads (in its stored unit); a name that was never stored is still unknown."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from fixtures.api import Api
from fixtures.pipeline import drain
from integration.test_declared_signals import _apply, _iso

from plantstream.processor import Processor
from plantstream.store.catalog import StoreCatalog

WITH = """\
facility: plant-01
signals:
  - {name: stroke_rate, unit: strokes/min}
  - {name: lot, type: string}
machines:
  - {id: press-1}
"""
WITHOUT = """\
facility: plant-01
machines:
  - {id: press-1}
"""


def test_a_removed_signal_s_history_still_reads(
    api: Api, make_processor: Callable[..., Processor], database_url: str
) -> None:
    admin, writer, reader = (
        api.make_key("admin", None),
        api.make_key("ingest"),
        api.make_key("read"),
    )
    _apply(api, admin, WITH)
    at = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=30)
    readings = [
        {"device": "press-1", "metric": "stroke_rate", "ts": _iso(at), "value": 42.0},
        {"device": "press-1", "metric": "lot", "ts": _iso(at), "value": "L-7"},
    ]
    answer = api.client.post(
        "/v1/readings",
        json={"facility": "plant-01", "readings": readings},
        headers=api.headers(writer),
    )
    assert (answer.status_code, answer.json()["accepted"]) == (202, 2), answer.text
    drain(
        make_processor(
            database_url, api.stream, None, catalog=StoreCatalog(api.state.pool, miss_refresh=0)
        )
    )
    _apply(api, admin, WITHOUT)

    def series(metric: str, **params: str) -> tuple[int, Any]:
        got = api.client.get(
            "/v1/series",
            params={"facility": "plant-01", "device": "press-1", "metric": metric, **params},
            headers=api.headers(reader),
        )
        return got.status_code, got.json()

    status, body = series("stroke_rate")
    assert status == 200, body
    assert (body["unit"], [p["value"] for p in body["points"]]) == ("strokes/min", [42.0])
    # a removed text signal still answers its raw changes, whatever the step asked
    status, body = series("lot", step="1h", **{"from": _iso(at - timedelta(days=1))})
    assert status == 200, body
    assert (body["step"], [p["value"] for p in body["points"]]) == ("raw", ["L-7"])
    status, body = series("never_sent")
    assert (status, body["error"]["code"]) == (400, "unknown_metric")
