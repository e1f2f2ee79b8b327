"""Twice the sustainable rate for two minutes: the stack pushes back with 429 instead of
queueing, its memory stays flat, and every reading it answered 202 for is stored once.

Runs ``bench/soak.py`` (the same tool that records bench/results/soak.json over five
minutes) for a shorter time on its own embedded servers, then reads its findings.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from plantstream.local import EmbeddedServices

SOAK = Path(__file__).parents[2] / "bench" / "soak.py"


@pytest.fixture
def data_dir() -> Iterator[Path]:
    # outside pytest's 0700 base directory: the embedded PostgreSQL runs as its own user
    path = Path(tempfile.mkdtemp(prefix="plantstream-soak-"))
    try:
        yield path
    finally:
        EmbeddedServices(path).stop()
        shutil.rmtree(path, ignore_errors=True)


@pytest.mark.e2e
@pytest.mark.slow
def test_twice_the_sustained_rate_is_pushed_back_and_nothing_accepted_is_lost(
    tmp_path: Path, data_dir: Path
) -> None:
    env = {**os.environ, "PLANTSTREAM_DATA_DIR": str(data_dir)}
    env.pop("PLANTSTREAM_BENCH_DATABASE_URL", None)
    run = subprocess.run(
        [
            sys.executable,
            str(SOAK),
            "--seconds",
            "120",
            "--calibrate-seconds",
            "10",
            "--results",
            str(tmp_path),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    result = json.loads((tmp_path / "soak.json").read_text())

    answers = result["soak"]["answers"]
    assert answers.get("429:overloaded", 0) > 0, answers  # pushed back, not queued
    assert set(answers) <= {"202", "429:overloaded"}, answers  # no 5xx, no dropped connection
    books = result["books"]
    assert books["answered_202"] > 0
    assert books["answered_202"] == books["stored_rows"] == books["server_counted"], books
    assert result["problems"] == [], result["problems"]
