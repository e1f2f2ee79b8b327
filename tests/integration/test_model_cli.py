"""``plantstream model apply|show|export`` against a real PostgreSQL."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import psycopg

from plantstream.store import signal_defs

PRESS_SHOP = Path(__file__).parents[1] / "data" / "plant" / "press-shop.yaml"


def model_cli(*args: str, database_url: str, redis_url: str) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "PLANTSTREAM_DATABASE_URL": database_url,
        "PLANTSTREAM_REDIS_URL": redis_url,
        "PLANTSTREAM_SERVER_SECRET": "test-server-secret",  # pragma: allowlist secret
        "COLUMNS": "200",
    }
    return subprocess.run(
        [sys.executable, "-m", "plantstream", "model", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_apply_twice_then_show_and_export_round_trip(
    database_url: str, redis_url: str, tmp_path: Path
) -> None:
    urls = {"database_url": database_url, "redis_url": redis_url}
    first = model_cli("apply", str(PRESS_SHOP), **urls)
    assert first.returncode == 0, first.stderr
    assert "created machine press-001" in first.stdout
    assert "plant-a: applied: " in first.stdout
    assert "press-shop.yaml:18:" in first.stderr
    assert "strokes/min" in first.stderr
    second = model_cli("apply", str(PRESS_SHOP), **urls)
    assert second.returncode == 0, second.stderr
    assert "plant-a: no change" in second.stdout
    shown = model_cli("show", "--facility", "plant-a", **urls)
    assert "area stamping" in shown.stdout
    assert "press-001  [press]  Press 1" in shown.stdout
    exported = model_cli("export", "--facility", "plant-a", "--format", "json", **urls)
    path = tmp_path / "exported.json"
    path.write_text(exported.stdout)
    again = model_cli("apply", str(path), **urls)
    assert "no change" in again.stdout, again.stdout + again.stderr


def test_a_bad_file_exits_2_with_file_line_and_column(
    database_url: str, redis_url: str, tmp_path: Path
) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("facility: f\nmachines:\n  - {id: m1, type: lathe}\n")
    answer = model_cli("apply", str(bad), database_url=database_url, redis_url=redis_url)
    assert answer.returncode == 2
    assert f"{bad}:3:20: machines[0].type: machine type 'lathe' is not declared" in answer.stderr


def test_unclassified_lists_what_the_register_policy_let_in(
    database_url: str, redis_url: str
) -> None:
    urls = {"database_url": database_url, "redis_url": redis_url}
    assert model_cli("apply", str(PRESS_SHOP), **urls).returncode == 0  # register policy
    with psycopg.connect(database_url, autocommit=True) as conn:
        assert signal_defs.register_unclassified(conn=conn, facility="plant-a", name="coolant")
        conn.execute(
            "INSERT INTO sensors (facility, device, metric, unit) "
            "VALUES ('plant-a', 'press-001', 'coolant', '')"
        )
    listed = model_cli("unclassified", "--facility", "plant-a", **urls)
    assert listed.returncode == 0, listed.stderr
    assert "plant-a: unknown signals: register; 1 unclassified" in listed.stdout
    assert "coolant  first seen " in listed.stdout
    assert "from press-001" in listed.stdout
