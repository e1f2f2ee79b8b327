"""``GET /v1/alerts`` past 1,000 alerts: paged with a cursor, filtered by time range, machine,
detector and state, the v1 answer unchanged."""

from __future__ import annotations

import psycopg
from fixtures.api import Api


def test_alerts_are_paged_and_filtered(api: Api, db: psycopg.Connection) -> None:
    key = api.make_key("read", "plant-01")
    db.execute(
        "INSERT INTO alerts (facility, device, metric, detector, severity, state, message, "
        "opened_at, last_seen_at, resolved_at) "
        "SELECT 'plant-01', 'm' || (i % 3), 'pressure', "
        "CASE WHEN i % 2 = 0 THEN 'level_shift' ELSE 'spike' END, 'warning', 'resolved', 'x', "
        "timestamptz '2026-11-01 00:00Z' + i * interval '1 minute', "
        "timestamptz '2026-11-01 00:00Z' + i * interval '1 minute', "
        "timestamptz '2026-11-01 00:00Z' + i * interval '1 minute' "
        "FROM generate_series(1, 1500) AS i"
    )
    seen: list[int] = []
    cursor = None
    pages = 0
    while True:
        query = "/v1/alerts?facility=plant-01&limit=1000" + (f"&cursor={cursor}" if cursor else "")
        page = api.client.get(query, headers=api.headers(key)).json()
        seen += [a["id"] for a in page["alerts"]]
        pages += 1
        cursor = page.get("next_cursor")
        if cursor is None:
            break
    assert pages == 2
    assert len(seen) == len(set(seen)) == 1500
    first = api.client.get("/v1/alerts?facility=plant-01", headers=api.headers(key)).json()
    assert len(first["alerts"]) == 200  # the v1 default
    assert first["alerts"][0]["opened_at"] > first["alerts"][-1]["opened_at"]  # newest first
    filtered = api.client.get(
        "/v1/alerts?facility=plant-01&device=m1&detector=spike&state=resolved"
        "&from=2026-11-01T10:00:00Z&to=2026-11-01T12:00:00Z&limit=1000",
        headers=api.headers(key),
    ).json()["alerts"]
    # minutes 600..719, odd (spike), i % 3 == 1
    assert len(filtered) == len([i for i in range(600, 720) if i % 2 and i % 3 == 1])
    assert {(a["device"], a["detector"]) for a in filtered} == {("m1", "spike")}
    bad = api.client.get("/v1/alerts?facility=plant-01&cursor=nope", headers=api.headers(key))
    assert bad.status_code == 400
    assert bad.json()["error"]["code"] == "invalid_request"


def test_a_time_range_must_be_rfc_3339_with_an_offset(api: Api) -> None:
    key = api.make_key("read", "plant-01")
    for value in ("0", "1767225600", "2026-11-01T10:00:00", "yesterday"):
        answer = api.client.get(
            f"/v1/alerts?facility=plant-01&from={value}", headers=api.headers(key)
        )
        assert answer.status_code == 400, value
        assert answer.json()["error"]["code"] == "invalid_time", value
    ok = api.client.get(
        "/v1/alerts?facility=plant-01&from=2026-11-01T10:00:00%2B01:00", headers=api.headers(key)
    )
    assert ok.status_code == 200
