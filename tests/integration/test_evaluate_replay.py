"""``plantstream evaluate`` through the real detection engine on PostgreSQL and Redis: a slow
recording (one reading per 5 minutes) with a labeled collapse is found, nothing is left
behind, and the command line prints the scores."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from pathlib import Path

import psycopg
import redis

from plantstream.detect.evaluate.dataset import load_csv
from plantstream.detect.evaluate.replay import Replay
from plantstream.detect.evaluate.scoring import score


def recording(path: Path, *, shift_s: int = 0) -> Path:
    """Two days of a machine temperature every 5 minutes; a collapse labeled as a window."""
    rng = random.Random(4)
    rows = ["timestamp,value"]
    start = 1_700_000_000 + shift_s
    for i in range(576):
        value = 98.7 + rng.gauss(0, 1.0)
        if 400 <= i < 430:
            value = 2.1 + rng.gauss(0, 0.3)
        rows.append(f"{start + i * 300},{value:.3f}")
    path.write_text("\n".join(rows) + "\n")
    (path.parent / "windows.json").write_text(
        json.dumps({path.name: [[str(start + 390 * 300), str(start + 440 * 300)]]})
    )
    return path


def test_a_collapse_in_a_slow_recording_is_found_and_nothing_is_left(
    tmp_path: Path, database_url: str, redis_client: redis.Redis, db: psycopg.Connection
) -> None:
    scores = []
    for shift in (0, 7):  # the same data a few seconds later scores the same
        csv = recording(tmp_path / f"temp{shift}.csv", shift_s=shift)
        series = load_csv(csv, windows=tmp_path / "windows.json", train_rows=100)
        result = Replay(database_url=database_url, redis_client=redis_client).run([series])
        scores.append(score([series], result.alarms))
    nab = scores[0]["nab"]
    assert (nab["windows"], nab["windows_detected"], nab["false_positives"]) == (1, 1, 0)
    assert scores[0] == scores[1]
    assert scores[0]["pointwise"]["recall"] > 0.5
    assert db.execute("SELECT count(*) FROM alerts").fetchone() == (0,)
    assert db.execute("SELECT count(*) FROM sensors").fetchone() == (0,)
    assert not redis_client.keys("ps:*evaluate-*")


def test_the_command_line_scores_a_labeled_csv(
    tmp_path: Path, database_url: str, redis_url: str
) -> None:
    csv = recording(tmp_path / "temp.csv")
    out = tmp_path / "scores.json"
    env = {
        **os.environ,
        "PLANTSTREAM_DATABASE_URL": database_url,
        "PLANTSTREAM_REDIS_URL": redis_url,
        "PLANTSTREAM_SERVER_SECRET": "test-server-secret",  # pragma: allowlist secret
    }
    ran = subprocess.run(
        [
            sys.executable,
            "-m",
            "plantstream",
            "evaluate",
            str(csv),
            "--windows",
            str(tmp_path / "windows.json"),
            "--train-rows",
            "100",
            "--json",
            str(out),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert ran.returncode == 0, ran.stderr
    assert "windows detected 1/1" in ran.stdout
    assert json.loads(out.read_text())["nab"]["false_positives"] == 0
    bad = subprocess.run(
        [sys.executable, "-m", "plantstream", "evaluate", str(csv)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert bad.returncode == 2
    assert "labels" in bad.stderr
