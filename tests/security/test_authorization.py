"""The authorization matrix: every endpoint x role x own/other facility, and every kind of
bad key, with the status a user would see."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import psycopg
import pytest
from fixtures.api import Api

from plantstream.store.keys import parse_key, revoke_key

OWN, OTHER = "plant-01", "plant-02"


def request(api: Api, endpoint: str, facility: str, key: str | None) -> int:
    headers = api.headers(key) if key else {}
    if endpoint == "ingest":
        body = {
            "facility": facility,
            "readings": [
                {
                    "device": "m1",
                    "metric": "pressure",
                    "value": 5.0,
                    "ts": (datetime.now(UTC) - timedelta(seconds=2)).isoformat(),
                }
            ],
        }
        return api.client.post("/v1/readings", json=body, headers=headers).status_code
    if endpoint == "facilities":
        return api.client.get("/v1/facilities", headers=headers).status_code
    if endpoint == "series":
        return api.client.get(
            "/v1/series",
            params={"facility": facility, "device": "m1", "metric": "pressure"},
            headers=headers,
        ).status_code
    if endpoint == "config_get":
        return api.client.get("/v1/detection/config", headers=headers).status_code
    if endpoint == "config_put":
        return api.client.put("/v1/detection/config", json={}, headers=headers).status_code
    if endpoint == "model_put":
        document = {"facility": facility, "machines": [{"id": "m1"}]}
        return api.client.put(
            "/v1/assets/model", params={"facility": facility}, json=document, headers=headers
        ).status_code
    path = {
        "latest": "/v1/latest",
        "alerts": "/v1/alerts",
        "assets": "/v1/assets",
        "machines": "/v1/assets/machines",
        "model_get": "/v1/assets/model",
    }[endpoint]
    return api.client.get(path, params={"facility": facility}, headers=headers).status_code


# endpoint -> role -> (status for own facility, status for the other facility)
MATRIX = {
    "ingest": {"ingest": (202, 403), "read": (403, 403), "admin": (202, 202)},
    "latest": {"ingest": (403, 403), "read": (200, 403), "admin": (200, 200)},
    "series": {"ingest": (403, 403), "read": (200, 403), "admin": (200, 200)},
    "alerts": {"ingest": (403, 403), "read": (200, 403), "admin": (200, 200)},
    "facilities": {"ingest": (403, 403), "read": (200, 200), "admin": (200, 200)},
    "config_put": {"ingest": (403, 403), "read": (403, 403), "admin": (200, 200)},
    "assets": {"ingest": (403, 403), "read": (200, 403), "admin": (200, 200)},
    "machines": {"ingest": (403, 403), "read": (200, 403), "admin": (200, 200)},
    "model_get": {"ingest": (403, 403), "read": (200, 403), "admin": (200, 200)},
    "model_put": {"ingest": (403, 403), "read": (403, 403), "admin": (200, 200)},
    # no facility in the request: what a key sees of the answer is checked below
    "config_get": {"ingest": (403, 403), "read": (200, 200), "admin": (200, 200)},
}


@pytest.mark.parametrize("endpoint", sorted(MATRIX))
def test_roles_and_facilities(api: Api, endpoint: str) -> None:
    for role, (own, other) in MATRIX[endpoint].items():
        key = api.make_key(role, None if role == "admin" else OWN)
        assert request(api, endpoint, OWN, key) == own, (endpoint, role, "own")
        assert request(api, endpoint, OTHER, key) == other, (endpoint, role, "other")


def test_a_read_key_sees_only_its_facility_in_listings(api: Api, db: psycopg.Connection) -> None:
    admin = api.make_key("admin", None)
    for facility in (OWN, OTHER):
        db.execute(
            "INSERT INTO sensors (facility, device, metric, unit) "
            "VALUES (%s, 'm1', 'pressure', 'bar')",
            (facility,),
        )
    listed = api.client.get("/v1/facilities", headers=api.headers(api.make_key("read", OWN)))
    assert [f["facility"] for f in listed.json()["facilities"]] == [OWN]
    everything = api.client.get("/v1/facilities", headers=api.headers(admin))
    assert [f["facility"] for f in everything.json()["facilities"]] == [OWN, OTHER]


@pytest.mark.parametrize("endpoint", sorted(MATRIX))
def test_bad_keys_are_401_everywhere(api: Api, db: psycopg.Connection, endpoint: str) -> None:
    revoked = api.make_key("admin", None)
    assert revoke_key(db, parse_key(revoked)[0])
    expired = api.make_key("admin", None, expires_at=datetime.now(UTC) - timedelta(minutes=1))
    unknown = "ps_0123456789abcdef_" + "x" * 43
    wrong_secret = api.make_key("admin", None)[:-4] + "AAAA"
    for key in (None, "malformed", unknown, revoked, expired, wrong_secret):
        assert request(api, endpoint, OWN, key) == 401, (endpoint, key and key[:20])


def test_keys_survive_a_rotation_of_the_server_secret(api: Api, db: psycopg.Connection) -> None:
    """The old secret stays accepted beside the new one; each key used meanwhile is re-hashed,
    so dropping the old secret afterwards leaves it working."""
    used, idle = api.make_key("read"), api.make_key("read")
    old_hash = db.execute(
        "SELECT secret_hash FROM api_keys WHERE key_id = %s", (parse_key(used)[0],)
    ).fetchone()

    api.state.server_secret, api.state.previous_server_secret = b"rotated", api.state.server_secret
    assert request(api, "latest", OWN, used) == 200
    new_hash = db.execute(
        "SELECT secret_hash FROM api_keys WHERE key_id = %s", (parse_key(used)[0],)
    ).fetchone()
    assert new_hash != old_hash

    api.state.previous_server_secret = None  # the rotation is over
    assert request(api, "latest", OWN, used) == 200
    assert request(api, "latest", OWN, idle) == 401  # never used during the rotation
    api.state.server_secret, api.state.previous_server_secret = b"another", b"rotated"
    forged = "ps_" + parse_key(idle)[0] + "_" + "x" * 43
    assert request(api, "latest", OWN, forged) == 401


def test_a_read_key_sees_only_its_facility_in_the_detection_config(api: Api) -> None:
    admin = api.make_key("admin", None)
    rules = [
        {"device": "*", "metric": "temperature", "high": 90.0},
        {"facility": OWN, "device": "press-*", "high": 120.0},
        {"facility": OTHER, "device": "oven-7", "high": 987.5},
    ]
    put = api.client.put("/v1/detection/config", json={"rules": rules}, headers=api.headers(admin))
    assert put.status_code == 200, put.text

    def seen(key: str) -> list[str | None]:
        answer = api.client.get("/v1/detection/config", headers=api.headers(key))
        assert answer.status_code == 200
        return [rule["facility"] for rule in answer.json()["config"]["rules"]]

    assert seen(api.make_key("read", OWN)) == [None, OWN]
    assert seen(api.make_key("read", OTHER)) == [None, OTHER]
    assert seen(admin) == [None, OWN, OTHER]
