"""The README's first command: a 30-second demo whose books balance, leaving nothing behind."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from plantstream.local import EmbeddedServices
from plantstream.local.ports import free_port

pytestmark = pytest.mark.e2e


def test_a_thirty_second_demo_balances_and_cleans_up(tmp_path: Path) -> None:
    summary_path = tmp_path / "summary.json"
    data_dir = tmp_path / "data"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "plantstream",
            "demo",
            "--duration",
            "30",
            "--no-live",
            "--rate",
            "1500",
            "--data-dir",
            str(data_dir),
            "--port",
            str(free_port()),
            "--summary-json",
            str(summary_path),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        env={**os.environ, "PLANTSTREAM_LOG_LEVEL": "WARNING"},
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    summary = json.loads(summary_path.read_text())
    assert summary["accepted"] > 20_000
    assert summary["readings_sent"] == summary["accepted"] + summary["rejected"]
    assert summary["accepted"] == summary["stored"] + summary["dead_lettered"]
    assert summary["balanced"] is True
    assert summary["errors"] == {}
    assert len(summary["faults_injected"]) >= 1
    assert "dashboard: http://127.0.0.1:" in result.stdout
    assert "read key for plant-01: ps_" in result.stdout
    # the demo started the servers, so it stopped them: no orphans
    assert [s.running for s in EmbeddedServices(data_dir).status()] == [False, False]
