"""No secret (API keys, passwords, tokens) shows up in logs, errors or metrics."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from urllib.parse import urlsplit

import pytest
from fixtures.api import Api


def test_keys_and_passwords_never_reach_logs_errors_or_metrics(
    api: Api, caplog: pytest.LogCaptureFixture, database_url: str, redis_url: str
) -> None:
    caplog.set_level(logging.DEBUG)
    key = api.make_key("ingest")
    read = api.make_key("read")
    secrets = [key.split("_", 2)[2], read.split("_", 2)[2]]
    secrets += [urlsplit(url).password or "" for url in (database_url, redis_url)]
    secrets = [s for s in secrets if len(s) >= 8]
    ts = (datetime.now(UTC) - timedelta(seconds=1)).isoformat()
    texts = []
    for headers in (api.headers(key), api.headers(key[:-3] + "zzz"), {"X-API-Key": read + "x"}):
        answer = api.client.post(
            "/v1/readings",
            headers=headers,
            json={
                "facility": "plant-01",
                "readings": [{"device": "m1", "metric": "pressure", "ts": ts, "value": 5.0}],
            },
        )
        texts.append(answer.text)
    texts.append(api.client.get("/v1/latest?facility=plant-02", headers=api.headers(read)).text)
    texts.append(api.client.get("/metrics").text)
    texts.append(api.client.get("/readyz").text)
    texts.append(caplog.text)
    texts.append(repr(api.state.settings))
    for secret in secrets:
        for text in texts:
            assert secret not in text
