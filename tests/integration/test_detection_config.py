"""Detector settings through the API and the CLI: validated, versioned, admin-only changes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import psycopg
from fixtures.api import Api


def test_api_reads_validates_and_versions_settings(api: Api, db: psycopg.Connection) -> None:
    read, admin = api.make_key("read"), api.make_key("admin", None)
    current = api.client.get("/v1/detection/config", headers=api.headers(read)).json()
    assert current["version"] == 0
    assert current["config"]["tuning"]["zscore"] > 0

    new = {
        "tuning": {"zscore": 7.5},
        "rules": [{"device": "*-oven-*", "metric": "temperature", "high": 260.0}],
    }
    refused = api.client.put("/v1/detection/config", json=new, headers=api.headers(read))
    assert refused.status_code == 403
    invalid = api.client.put(
        "/v1/detection/config", json={"rules": [{"metric": "warp"}]}, headers=api.headers(admin)
    )
    assert invalid.status_code == 400
    assert invalid.json()["error"]["code"] == "invalid_request"

    saved = api.client.put(
        "/v1/detection/config?comment=ovens%20run%20hot", json=new, headers=api.headers(admin)
    )
    assert saved.status_code == 200
    assert saved.json()["version"] == 1
    after = api.client.get("/v1/detection/config", headers=api.headers(read)).json()
    assert after["config"]["tuning"]["zscore"] == 7.5
    assert after["config"]["rules"][0]["high"] == 260.0
    history = api.client.get("/v1/detection/config/history", headers=api.headers(admin)).json()
    assert [(v["version"], v["comment"]) for v in history["versions"]] == [(1, "ovens run hot")]
    assert history["versions"][0]["created_by"] == admin.split("_")[1]


def test_cli_sets_and_shows_settings(database_url: str, redis_url: str, tmp_path: Path) -> None:
    env = {
        **os.environ,
        "PLANTSTREAM_DATABASE_URL": database_url,
        "PLANTSTREAM_REDIS_URL": redis_url,
    }

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "plantstream", "detect", *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )

    settings = tmp_path / "detect.json"
    settings.write_text(
        json.dumps(
            {
                "rules": [
                    {"facility": "plant-01", "device": "press-1", "metric": "pressure", "high": 200}
                ]
            }
        )
    )
    assert cli("set", str(settings), "--comment", "press limit").returncode == 0
    shown = json.loads(cli("show").stdout)
    assert shown["version"] == 1
    assert shown["rules"][0]["high"] == 200
    settings.write_text(json.dumps({"rules": [{"low": 5, "high": 1}]}))
    bad = cli("set", str(settings))
    assert bad.returncode == 2
    assert "low must be below high" in bad.stderr
    settings.write_text('{"rules": [{"high": NaN}]}')  # Python's json reads it; jsonb cannot
    not_finite = cli("set", str(settings))
    assert not_finite.returncode == 2
    assert "finite" in not_finite.stderr
    settings.write_text('{"rules": [{"high": false}]}')
    assert cli("set", str(settings)).returncode == 2
    settings.write_text('{"rules": [')
    truncated = cli("set", str(settings))
    assert truncated.returncode == 2
    assert "not valid JSON" in truncated.stderr
    assert "press limit" in cli("history").stdout
