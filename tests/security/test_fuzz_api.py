"""Schemathesis fuzzes every operation of our own OpenAPI document with real keys: no 5xx, no
crash, every refusal carries an error code, and answers match the schema where it declares one."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any, cast

import psycopg
import pytest
import schemathesis
from fixtures.api import Api
from fixtures.factories import iso
from fixtures.pipeline import drain
from hypothesis import HealthCheck, settings

from plantstream.api import AppState, create_app
from plantstream.processor import Processor

# psycopg_pool's worker threads draw from the global `random` (connection-lifetime jitter)
# when they open a connection, which can happen while Hypothesis draws a case in the test
# thread; Hypothesis then blames the strategy, which uses no `random` (CI, 2026-12-01).
pytestmark = pytest.mark.filterwarnings(
    "ignore:Do not use the `random` module inside strategies"
    ":hypothesis.errors.HypothesisDeprecationWarning"
)

OWN = "plant-01"
DEVICE = "line-1-cnc-01"
NOW = datetime.now(UTC).replace(microsecond=0)

# One app for the module, so pytest can collect a test per operation of its /openapi.json;
# each test hands it that test's state (fresh database and Redis), see `fuzzed`.
APP = create_app(cast(AppState, None))

CONFIG = schemathesis.Config.from_dict(
    {
        "seed": 7,
        # Half the time, use ids that exist so the fuzzer gets past "no such facility" and
        # "not your facility" into the handlers and their queries.
        "dictionaries": {
            "facilities": {"values": [OWN, "plant-02"]},
            "devices": {"values": [DEVICE, "line-1-cnc-02"]},
            "metrics": {"values": ["temperature", "pressure", "vibration"]},
            "times": {
                "values": [
                    iso(NOW - timedelta(minutes=5)),
                    iso(NOW - timedelta(days=1)),
                    iso(NOW - timedelta(days=10)),
                    NOW.isoformat(),
                    # the ends of the calendar, where arithmetic on times overflows
                    "0001-01-01T00:00:00+00:00",
                    "0001-01-01T00:30:00+01:00",
                    "9999-12-31T23:59:59-23:59",
                ]
            },
            "alert_ids": {"values": [1, 2, 3]},
            # Text that clients send by mistake and attackers on purpose: NUL (which
            # PostgreSQL cannot store), line breaks, a bidi override, SQL, a broken glob.
            "awkward": {"values": ["\x00", "a\x00b", "\r\n", "\u202eplant", "' OR 1=1 --", "*?["]},
        },
        "parameters": {
            "query.facility": {"dictionary": "facilities", "probability": 0.5},
            "query.device": {"dictionary": "devices", "probability": 0.5},
            "query.metric": {"dictionary": "metrics", "probability": 0.5},
            "query.from": {"dictionary": "times", "probability": 0.5},
            "query.to": {"dictionary": "times", "probability": 0.5},
            "path.alert_id": {"dictionary": "alert_ids", "probability": 0.5},
            "path.facility": {"dictionary": "facilities", "probability": 0.5},
            "path.machine": {"dictionary": "devices", "probability": 0.5},
            "body.from": {"dictionary": "times", "probability": 0.5},
            "body.to": {"dictionary": "times", "probability": 0.5},
            "body.signals[*]": {"dictionary": "metrics", "probability": 0.5},
            "body.facility": {"dictionary": "facilities", "probability": 0.5},
            "body.readings[*].device": {"dictionary": "devices", "probability": 0.5},
            "body.readings[*].metric": {"dictionary": "metrics", "probability": 0.5},
            "body.readings[*].ts": {"dictionary": "times", "probability": 0.5},
            "body.rules[*].metric": {"dictionary": "metrics", "probability": 0.5},
            "body.rules[*].facility": {"dictionary": "awkward", "probability": 0.2},
            "body.rules[*].device": {"dictionary": "awkward", "probability": 0.2},
            "query.comment": {"dictionary": "awkward", "probability": 0.2},
        },
        "checks": {
            # Schema-valid is not always acceptable here: ids are typed as strings but must
            # follow the id grammar, and a detection rule's low must be below its high. Those
            # refusals are 400s with a code, which refusals_carry_a_code asserts.
            "positive_data_acceptance": {"enabled": False},
        },
    }
)
SCHEMA = schemathesis.openapi.from_asgi("/openapi.json", APP, config=CONFIG)

FUZZ = settings(
    max_examples=40,
    deadline=None,  # the first request of a test opens pool connections
    derandomize=True,
    database=None,
    # function_scoped_fixture: one database and one key serve every example of an operation
    # on purpose; what earlier examples left behind is part of what the API must withstand.
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)


def refusals_carry_a_code(
    ctx: schemathesis.CheckContext, response: schemathesis.Response, case: schemathesis.Case
) -> None:
    """Every 4xx says why with ``{"error": {"code": ..., "message": ...}}``."""
    if 400 <= response.status_code < 500:
        error = response.json()["error"]
        assert isinstance(error["code"], str), f"{response.status_code} without a code"
        assert error["code"], f"{response.status_code} with an empty code"
        assert isinstance(error["message"], str)


@pytest.fixture
def seeded(
    api: Api,
    db: psycopg.Connection,
    make_processor: Callable[..., Processor],
    database_url: str,
) -> Api:
    """Readings of the last day stored and rolled up, latest values in Redis, three alerts."""
    key = api.make_key("ingest", OWN)
    for hours in (24, 1, 0):
        readings = [
            {
                "device": DEVICE,
                "metric": "temperature",
                "ts": iso(NOW - timedelta(hours=hours, seconds=60 - i)),
                "value": 40.0 + i,
            }
            for i in range(0, 60, 5)
        ]
        answer = api.client.post(
            "/v1/readings", json={"facility": OWN, "readings": readings}, headers=api.headers(key)
        )
        assert answer.json()["accepted"] == len(readings)
    drain(make_processor(database_url, api.stream, api.state.redis))
    for state, detector in (("open", "limit"), ("acknowledged", "spike"), ("resolved", "stuck")):
        db.execute(
            "INSERT INTO alerts (facility, device, metric, detector, severity, state, message, "
            "opened_at, last_seen_at, details) VALUES (%s, %s, 'temperature', %s, 'critical', "
            "%s, 'too hot', now(), now(), '{\"value\": 99.5}')",
            (OWN, DEVICE, detector, state),
        )
    return api


@pytest.fixture
def fuzzed(seeded: Api) -> Iterator[Api]:
    """The seeded test's state, served by the app the schema was loaded from."""
    APP.state.plantstream = seeded.state
    yield seeded
    APP.state.plantstream = None


@pytest.fixture(params=["admin", "read", "ingest"])
def key(request: pytest.FixtureRequest, fuzzed: Api) -> str:
    """An admin key (every facility), or a read or ingest key of one facility."""
    role: str = request.param
    return fuzzed.make_key(role, None if role == "admin" else OWN)


@SCHEMA.parametrize()
@FUZZ
def test_every_operation_holds_up_to_fuzzing(
    case: schemathesis.Case, fuzzed: Api, key: str
) -> None:
    """Examples, coverage cases and fuzzing per operation; schemathesis' checks plus ours."""
    case.call_and_validate(headers=fuzzed.headers(key), additional_checks=[refusals_carry_a_code])


def test_linked_operations_hold_up_in_sequence(fuzzed: Api) -> None:
    """Follow the schema's links: list alerts then acknowledge one of them, change the detection
    settings then read them and their history back, on one database."""
    headers = fuzzed.headers(fuzzed.make_key("admin", None))

    class Workflow(SCHEMA.as_state_machine()):  # type: ignore[misc]
        def get_call_kwargs(self, case: schemathesis.Case) -> dict[str, Any]:
            return {"headers": headers}

        def validate_response(
            self,
            response: schemathesis.Response,
            case: schemathesis.Case,
            additional_checks: list[schemathesis.CheckFunction] | None = None,
            **kwargs: Any,
        ) -> None:
            super().validate_response(response, case, [refusals_carry_a_code], **kwargs)

    Workflow.run(settings=settings(FUZZ, max_examples=30, stateful_step_count=6))


# Regressions: what fuzzing turned up, one request at a time. NaN in a body and NUL in a key
# were found by hand next to it: schemathesis sends only valid JSON and our key header.


def error_code(answer: Any, status: int) -> str:
    assert answer.status_code == status, answer.text
    return str(answer.json()["error"]["code"])


def test_every_reference_in_the_schema_resolves_and_errors_are_documented(api: Api) -> None:
    document = api.client.get("/openapi.json").json()

    def refs(node: object) -> Iterator[str]:
        if isinstance(node, dict):
            if isinstance(node.get("$ref"), str):
                yield node["$ref"]
            for value in node.values():
                yield from refs(value)
        elif isinstance(node, list):
            for value in node:
                yield from refs(value)

    for ref in set(refs(document)):  # the readings body once pointed at a missing #/$defs
        target: Any = document
        for part in ref.removeprefix("#/").split("/"):
            target = target[part.replace("~1", "/").replace("~0", "~")]
    body = document["paths"]["/v1/readings"]["post"]["requestBody"]["content"]
    assert body["application/json"]["schema"] == {"$ref": "#/components/schemas/BatchIn"}
    for path, item in document["paths"].items():
        for method, operation in item.items():
            # refusals are 400 with the error shape, never FastAPI's undocumented 422 body
            assert "422" not in operation["responses"], (method, path)
            error = operation["responses"]["4XX"]["content"]["application/json"]["schema"]
            assert error == {"$ref": "#/components/schemas/ErrorBody"}, (method, path)
    assert set(document["components"]["securitySchemes"]) == {"HTTPBearer", "APIKeyHeader"}


def test_405_lists_every_method_of_the_path(api: Api) -> None:
    answer = api.client.delete("/v1/detection/config")
    assert error_code(answer, 405) == "method_not_allowed"
    assert answer.headers["Allow"] == "GET, PUT"


@pytest.mark.parametrize(
    "body",
    [
        b'{"rules": [{"high_critical": false}]}',  # a boolean is not a limit of 0
        b'{"tuning": {"zscore": "5"}}',
        b'{"rules": [{"device": "line-\\u0000"}]}',  # jsonb cannot hold NUL
        b'{"rules": [{"facility": "\\u0000"}]}',
        b'{"rules": [{"high": NaN}]}',  # Python's JSON reader takes these; jsonb does not
        b'{"rules": [{"low": -Infinity}]}',
        b'{"rules": [{"high": 1e400}]}',
    ],
    ids=["bool", "string-number", "nul-device", "nul-facility", "nan", "infinity", "overflow"],
)
def test_detection_settings_refuse_what_they_cannot_hold(api: Api, body: bytes) -> None:
    admin = api.headers(api.make_key("admin", None))
    answer = api.client.put(
        "/v1/detection/config", content=body, headers={**admin, "Content-Type": "application/json"}
    )
    assert error_code(answer, 400) == "invalid_request"
    assert api.client.get("/v1/detection/config", headers=admin).json()["version"] == 0


def test_a_detection_comment_with_nul_is_refused(api: Api) -> None:
    admin = api.headers(api.make_key("admin", None))
    answer = api.client.put(
        "/v1/detection/config", params={"comment": "a\x00b"}, json={}, headers=admin
    )
    assert error_code(answer, 400) == "invalid_request"
    assert api.client.get("/v1/detection/config", headers=admin).json()["version"] == 0


@pytest.mark.parametrize(
    "key",
    ["ps_" + "\x00" * 16 + "_secret", "ps_0123456789abcdef_\x00", "ps_" + "\xe9" * 16 + "_x"],
    ids=["nul-id", "nul-secret", "latin-1"],
)
def test_keys_no_key_could_be_are_malformed(api: Api, key: str) -> None:
    for header in ({"Authorization": f"Bearer {key}"}, {"X-API-Key": key}):
        encoded = {name: value.encode("latin-1") for name, value in header.items()}
        answer = api.client.get("/v1/facilities", headers=encoded)
        assert error_code(answer, 401) == "malformed_key"


@pytest.mark.parametrize(
    ("times", "status"),
    [
        ({"to": "0001-01-01T00:00:00Z"}, 400),  # "an hour before" is not a time
        ({"to": "0001-01-01T00:30:00+01:00"}, 400),  # year 0 in UTC, and 10000 below
        ({"from": "9999-12-31T23:00:00-23:59", "to": "9999-12-31T23:59:59-23:59"}, 400),
        ({"to": "0001-01-01T02:00:00Z"}, 200),
        ({"from": "0001-01-01T00:00:00Z", "to": "9999-12-31T23:59:59Z"}, 200),
    ],
)
def test_series_at_the_ends_of_the_calendar(api: Api, times: dict[str, str], status: int) -> None:
    params = {"facility": OWN, "device": DEVICE, "metric": "temperature", **times}
    answer = api.client.get(
        "/v1/series", params=params, headers=api.headers(api.make_key("read", OWN))
    )
    assert answer.status_code == status, answer.text
    if status == 400:
        assert answer.json()["error"]["code"] == "invalid_time"
