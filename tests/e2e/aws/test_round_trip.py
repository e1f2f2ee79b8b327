"""A reading pushed through the front door becomes visible in the query API.

Needs API keys created once with ``plantstream keys create`` (run as an ECS task) and handed in:
``PLANTSTREAM_E2E_FACILITY``, ``PLANTSTREAM_E2E_INGEST_KEY``, ``PLANTSTREAM_E2E_READ_KEY``.
An internal ALB (no certificate configured) is reachable only from inside the VPC: point
``PLANTSTREAM_E2E_BASE_URL`` at a tunnel to it.
"""

from __future__ import annotations

import json
import os
import time
import uuid
from datetime import UTC, datetime
from typing import Any

import pytest

pytestmark = pytest.mark.e2e

DEADLINE_SECONDS = 180
POLL_SECONDS = 2.0


@pytest.fixture(scope="module")
def api(outputs: dict[str, Any]) -> dict[str, str]:
    needed = ("PLANTSTREAM_E2E_FACILITY", "PLANTSTREAM_E2E_INGEST_KEY", "PLANTSTREAM_E2E_READ_KEY")
    missing = [v for v in needed if not os.environ.get(v)]
    if missing:
        pytest.skip(f"set {', '.join(missing)} (keys from `plantstream keys create`)")
    base = os.environ.get("PLANTSTREAM_E2E_BASE_URL")
    if not base and outputs.get("alb_internal"):
        pytest.skip(
            "the ALB is internal (no certificate configured): set "
            "PLANTSTREAM_E2E_BASE_URL to a tunnel into the VPC"
        )
    return {
        "base": (base or outputs["api_url"]).rstrip("/"),
        "facility": os.environ["PLANTSTREAM_E2E_FACILITY"],
        "ingest_key": os.environ["PLANTSTREAM_E2E_INGEST_KEY"],
        "read_key": os.environ["PLANTSTREAM_E2E_READ_KEY"],
        "header": os.environ.get("PLANTSTREAM_E2E_AUTH_HEADER", "Authorization"),
    }


def _auth(api: dict[str, str], key: str) -> dict[str, str]:
    value = f"Bearer {key}" if api["header"].lower() == "authorization" else key
    return {api["header"]: value}


def _batch(facility: str) -> tuple[str, float, dict[str, Any]]:
    device = f"e2e-{uuid.uuid4().hex[:12]}"
    value = round(20 + uuid.uuid4().int % 1000 / 100, 2)
    body = {
        "facility": facility,
        "readings": [
            {
                "device": device,
                "metric": "temperature",
                "value": value,
                "unit": "degC",
                "quality": "good",
                "ts": datetime.now(UTC).isoformat().replace("+00:00", "Z"),
            }
        ],
    }
    return device, value, body


def _wait_until_visible(api: dict[str, str], device: str, value: float) -> None:
    import httpx

    deadline = time.monotonic() + DEADLINE_SECONDS
    last: Any = None
    while time.monotonic() < deadline:
        resp = httpx.get(
            f"{api['base']}/v1/latest",
            params={"facility": api["facility"], "device": device},
            headers=_auth(api, api["read_key"]),
            timeout=10,
        )
        if resp.status_code == 200:
            last = resp.json()
            if str(value) in json.dumps(last):
                return
        time.sleep(POLL_SECONDS)  # bounded poll of an eventually consistent pipeline
    pytest.fail(f"reading of {device} not visible within {DEADLINE_SECONDS}s; last: {last}")


def test_reading_through_the_load_balancer_shows_up_in_the_api(api: dict[str, str]) -> None:
    import httpx

    device, value, body = _batch(api["facility"])
    resp = httpx.post(
        f"{api['base']}/v1/readings", json=body, headers=_auth(api, api["ingest_key"]), timeout=10
    )
    assert resp.status_code == 202, resp.text
    assert resp.json()["accepted"] == 1
    _wait_until_visible(api, device, value)


def test_reading_through_api_gateway_shows_up_in_the_api(
    api: dict[str, str], outputs: dict[str, Any], session: Any
) -> None:
    if "ingest_api_url" not in outputs:
        pytest.skip("this preset has no API Gateway ingest (frontDoor.apiGateway is false)")
    import httpx
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest

    device, value, body = _batch(api["facility"])
    url = f"{outputs['ingest_api_url']}/{api['facility']}"  # POST /ingest/{facility}
    request = AWSRequest(
        method="POST",
        url=url,
        data=json.dumps(body),
        headers={"Content-Type": "application/json"},
    )
    SigV4Auth(session.get_credentials(), "execute-api", outputs["region"]).add_auth(request)
    resp = httpx.post(url, content=request.body, headers=dict(request.headers), timeout=10)
    assert resp.status_code == 200, resp.text
    _wait_until_visible(api, device, value)
