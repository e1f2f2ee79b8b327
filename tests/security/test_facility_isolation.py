"""Over every route of the app: nothing plant-b holds reaches a plant-a key.

Data of two facilities is seeded through the real pipeline (readings into PostgreSQL and
Redis, alerts, a detector rule each); every route found in ``app.routes`` is then called
with plant-a's read and ingest keys, with plant-a's and plant-b's identifiers as parameters,
and no answer may carry anything of plant-b's. A route added later is covered without
editing this test.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute
from fixtures.api import Api
from fixtures.pipeline import drain
from starlette.routing import Mount, Route

from plantstream.model import Reading, now_us
from plantstream.processor import Processor
from plantstream.store import alerts as alert_store
from plantstream.store import machine_models as machine_store
from plantstream.stream import pack_readings

OWN, OTHER = "iso-plant-a", "iso-plant-b"
OWN_DEVICE, OTHER_DEVICE = "line-1-press-01", "line-9-oven-77"
OTHER_VALUE = 77.03125  # in range for a temperature, found nowhere else
OTHER_LIMIT = 987.125
OTHER_MESSAGE = "plant-b only: the oven door is open"
# what no plant-a answer may carry (the facility's name is matched as a whole word)
SECRETS = [OTHER_DEVICE, str(OTHER_VALUE), str(OTHER_LIMIT), OTHER_MESSAGE]


@pytest.fixture
def seeded(
    api: Api,
    db: psycopg.Connection,
    make_processor: Callable[..., Processor],
    database_url: str,
) -> dict[str, int]:
    """Readings, latest values, an alert and a detector rule for each facility; alert ids."""
    now = now_us()
    for facility, device, value in ((OWN, OWN_DEVICE, 21.5), (OTHER, OTHER_DEVICE, OTHER_VALUE)):
        readings = [
            Reading(device, "temperature", now - (30 - i) * 1_000_000, value, 0) for i in range(30)
        ]
        api.stream.put(pack_readings(facility, now, readings))
    drain(make_processor(database_url, api.stream, api.state.redis))
    alert_ids = {}
    for facility, device, message in (
        (OWN, OWN_DEVICE, "plant-a: warm"),
        (OTHER, OTHER_DEVICE, OTHER_MESSAGE),
    ):
        alert_ids[facility], _ = alert_store.open_alert(
            conn=db,
            facility=facility,
            device=device,
            metric="temperature",
            sensor_id=None,
            kind="limit",
            severity="warning",
            message=message,
            at_us=now,
            details={"device": device},
        )
    rules = [
        {"facility": OWN, "device": OWN_DEVICE, "high": 80.0},
        {"facility": OTHER, "device": OTHER_DEVICE, "high": OTHER_LIMIT},
    ]
    admin = api.make_key("admin", None)
    put = api.client.put("/v1/detection/config", json={"rules": rules}, headers=api.headers(admin))
    assert put.status_code == 200, put.text
    for facility, device in ((OWN, OWN_DEVICE), (OTHER, OTHER_DEVICE)):  # a plant model each
        model = {"facility": facility, "machines": [{"id": device, "name": f"{device} name"}]}
        put = api.client.put(
            "/v1/assets/model",
            params={"facility": facility},
            json=model,
            headers=api.headers(admin),
        )
        assert put.status_code == 200, put.text
    own_model = (OWN, OWN_DEVICE, 21.5, 12.5)
    for facility, device, center, limit in (
        own_model,
        (OTHER, OTHER_DEVICE, OTHER_VALUE, OTHER_LIMIT),
    ):
        trained_to = datetime.now(UTC)
        machine_store.insert(
            conn=db,
            facility=facility,
            machine=device,
            model={
                "signals": ["temperature", "pressure"],
                "center": [center, 1.0],
                "scale": [1.0, 1.0],
                "components": [[1.0, 0.0]],
                "variances": [1.0],
                "t2_limit": limit,
                "q_limit": 1.0,
            },
            author="seed",
            per_bucket=10,
            trained_from=trained_to - timedelta(hours=1),
            trained_to=trained_to,
            readings=200,
            buckets=10,
        )
    return alert_ids


def _routes(routes: list[Any], prefix: str = "") -> Iterator[tuple[str, Any]]:
    """(full path, route) of every route, inside included routers too."""
    for route in routes:
        included = getattr(route, "original_router", None)  # FastAPI keeps routers included
        if included is not None:
            yield from _routes(included.routes, prefix + route.include_context.prefix)
        else:
            yield prefix + route.path, route


def _query_names(dependant: Dependant) -> Iterator[str]:
    for param in dependant.query_params:
        yield param.alias
    for sub in dependant.dependencies:
        yield from _query_names(sub)


_CHOICES = {"facility": (OWN, OTHER), "device": (OWN_DEVICE, OTHER_DEVICE)}


def _calls(
    full_path: str, route: Any, alert_ids: dict[str, int]
) -> Iterator[tuple[str, str, dict[str, str]]]:
    """(method, path, query) for every way of calling ``route`` with either plant's ids."""
    if isinstance(route, Mount):
        yield "GET", full_path + "/js/api.js", {}
        return
    assert isinstance(route, Route), route
    paths = [full_path]
    if "{alert_id}" in full_path:
        paths = [full_path.replace("{alert_id}", str(i)) for i in alert_ids.values()]
    if "{facility}" in full_path:  # either plant's ids in the path, in every combination
        paths = [
            full_path.replace("{facility}", facility).replace("{machine}", device)
            for facility in _CHOICES["facility"]
            for device in (_CHOICES["device"] if "{machine}" in full_path else ("",))
        ]
    names = sorted(set(_query_names(route.dependant))) if isinstance(route, APIRoute) else []
    varied = [n for n in names if n in _CHOICES]
    fixed = {"metric": "temperature"} if "metric" in names else {}
    for method in sorted(route.methods or {"GET"}):
        if method == "HEAD":
            continue
        for path in paths:
            for values in itertools.product(*(_CHOICES[n] for n in varied)):
                yield method, path, {**fixed, **dict(zip(varied, values, strict=True))}


def _body(method: str, path: str, facility: str) -> dict[str, Any] | None:
    if path == "/v1/readings":
        ts = (datetime.now(UTC) - timedelta(seconds=3)).isoformat()
        reading = {"device": OWN_DEVICE, "metric": "temperature", "ts": ts, "value": 20.0}
        return {"facility": facility, "readings": [reading]}
    return {} if method in ("POST", "PUT") else None


def _leaks(text: str, path: str, sent: dict[str, str]) -> list[str]:
    """What of plant-b's is in ``text``, less what the caller sent itself (an echo)."""
    found = [secret for secret in SECRETS if secret in text and secret not in sent.values()]
    names = re.findall(rf"(?<![\w-]){re.escape(OTHER)}(?![\w-])", text)
    if path == "/metrics":
        # the scraper's page (no key) labels counters by facility, never carries their data
        names = [] if _only_as_labels(text) else names
    return found + names


def _only_as_labels(text: str) -> bool:
    return text.count(OTHER) == text.count(f'facility="{OTHER}"')


def test_no_answer_to_a_plant_a_key_carries_plant_b_data(api: Api, seeded: dict[str, int]) -> None:
    keys = {role: api.make_key(role, OWN) for role in ("read", "ingest")}
    admin = api.make_key("admin", None)
    called: set[str] = set()
    leaks: list[tuple[str, str, str, dict[str, str], list[str]]] = []
    for full_path, route in _routes(api.client.app.routes):
        for method, path, query in _calls(full_path, route, seeded):
            called.add(full_path)
            for role, key in keys.items():
                answer = api.client.request(
                    method,
                    path,
                    params=query,
                    json=_body(method, path, query.get("facility", OWN)),
                    headers=api.headers(key),
                )
                assert answer.status_code < 500, (method, path, query, answer.text)
                # what the caller sent in the path is an echo too, not a leak
                sent = {**query, **{f"path:{part}": part for part in path.split("/")}}
                found = _leaks(answer.text, path, sent)
                if found:
                    leaks.append((role, method, path, query, found))
    assert leaks == []
    # the seed is really there: an admin sees plant-b's data on the same routes
    everything = api.client.get(
        "/v1/latest", params={"facility": OTHER}, headers=api.headers(admin)
    )
    assert str(OTHER_VALUE) in everything.text
    config = api.client.get("/v1/detection/config", headers=api.headers(admin))
    assert str(OTHER_LIMIT) in config.text
    alerts = api.client.get("/v1/alerts", params={"facility": OTHER}, headers=api.headers(admin))
    assert OTHER_MESSAGE in alerts.text
    tree = api.client.get("/v1/assets", params={"facility": OTHER}, headers=api.headers(admin))
    assert OTHER_DEVICE in tree.text
    machines = api.client.get(f"/v1/detection/machines/{OTHER}", headers=api.headers(admin))
    assert OTHER_DEVICE in machines.text
    assert str(OTHER_LIMIT) in machines.text
    # and every route of the app was called, whatever routes are added later
    assert {
        "/v1/readings",
        "/v1/facilities",
        "/v1/latest",
        "/v1/series",
        "/v1/alerts",
        "/v1/alerts/{alert_id}/ack",
        "/v1/detection/config",
        "/v1/detection/config/history",
        "/v1/detection/machines/{facility}",
        "/v1/detection/machines/{facility}/{machine}",
        "/v1/assets",
        "/v1/assets/machines",
        "/v1/assets/model",
        "/healthz",
        "/readyz",
        "/metrics",
        "/openapi.json",
        "/docs",
        "/",
        "/static",
    } <= called
