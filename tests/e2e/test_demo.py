"""The README's first command: a 30-second demo whose books balance, leaving nothing behind."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import psycopg
import pytest
import redis

from plantstream.demo.books import totals
from plantstream.local import EmbeddedServices
from plantstream.local.mqtt_broker import EmbeddedBroker
from plantstream.local.ports import free_port
from plantstream.model import Reading, now_us
from plantstream.stream import RedisStream, pack_readings

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
    # one machine per facility published Sparkplug B through the embedded broker: every
    # reading the broker acknowledged was accepted by the bridge (none refused) and stored
    sparkplug = summary["paths"]["sparkplug"]
    assert sparkplug["machines"] == 2
    assert sparkplug["accepted"] > 2_000
    assert sparkplug["published"] == sparkplug["acked_by_broker"] == sparkplug["accepted"]
    assert summary["paths"]["http"]["accepted"] + sparkplug["accepted"] == summary["accepted"]
    assert "dashboard: http://127.0.0.1:" in result.stdout
    assert "read key for plant-01: ps_" in result.stdout
    # the demo started the servers, so it stopped them: no orphans
    assert [s.running for s in EmbeddedServices(data_dir).status()] == [False, False]
    assert not EmbeddedBroker(data_dir / "mqtt").is_running()


def demo_command(data_dir: Path, summary: Path, duration: int) -> list[str]:
    return [
        sys.executable,
        "-m",
        "plantstream",
        "demo",
        "--duration",
        str(duration),
        "--no-live",
        "--rate",
        "1000",
        "--facilities",
        "1",
        "--data-dir",
        str(data_dir),
        "--port",
        str(free_port()),
        "--summary-json",
        str(summary),
    ]


def assert_balanced(summary_path: Path, run: str) -> dict[str, object]:
    summary = json.loads(summary_path.read_text())
    counted = summary["stored"] + summary["dead_lettered"] + summary["duplicates"]
    assert summary["accepted"] == counted, f"{run}: {summary}"
    assert summary["balanced"] is True, f"{run}: {summary}"
    assert summary["accepted"] > 0, f"{run}: {summary}"
    return summary


def leave_readings_in_the_stream(data_dir: Path, count: int) -> None:
    """What a run killed before its processor caught up leaves behind: records nobody read."""
    services = EmbeddedServices(data_dir)
    _, redis_url = services.start()
    try:
        stream = RedisStream(redis.Redis.from_url(redis_url), "readings", retention_hours=24)
        received = now_us()
        readings = [
            Reading("leftover-1", "temperature", received - (count - i) * 1000, 20.0 + i % 7)
            for i in range(count)
        ]
        stream.put(pack_readings("plant-01", received, readings))
        stream.close()
    finally:
        services.stop()


def run_to_the_end(command: list[str], env: dict[str, str]) -> str:
    """Run a short demo to its end; its output (it must exit 0)."""
    result = subprocess.run(
        command, capture_output=True, text=True, timeout=300, check=False, env=env
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    return result.stdout


def test_every_run_on_one_data_dir_balances_even_after_ctrl_c(tmp_path: Path) -> None:
    """Three runs on one data dir: a whole one, one stopped with Ctrl-C, and one that finds
    an earlier run's readings still in the stream; each one's books count only its own."""
    data_dir = tmp_path / "data"
    env = {**os.environ, "PLANTSTREAM_LOG_LEVEL": "WARNING"}

    first = tmp_path / "first.json"
    run_to_the_end(demo_command(data_dir, first, 5), env)
    assert_balanced(first, "first run")

    second = tmp_path / "second.json"
    output = tmp_path / "second.out"
    with output.open("w") as out:
        proc = subprocess.Popen(
            demo_command(data_dir, second, 120),
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,  # a process group of its own, as a terminal's job has
        )
        try:
            wait_for_new_readings(data_dir, proc, output, more_than=2000)
            # ingest, API and processor run in processes of their own, as under serve all
            names = {c.name() for c in psutil.Process(proc.pid).children(recursive=True)}
            assert {"ps-web-0", "ps-processor"} <= names, names
            # Ctrl-C in a terminal signals the whole foreground process group
            os.killpg(proc.pid, signal.SIGINT)
            assert proc.wait(timeout=180) == 0, output.read_text()[-3000:]
        finally:
            if proc.poll() is None:
                proc.kill()
    assert "stopping (Ctrl-C)" in output.read_text()
    stopped = assert_balanced(second, "run stopped with Ctrl-C")
    assert float(str(stopped["duration_s"])) < 120  # it really was cut short

    leave_readings_in_the_stream(data_dir, 500)
    third = tmp_path / "third.json"
    assert "earlier runs left" in run_to_the_end(demo_command(data_dir, third, 5), env)
    assert_balanced(third, "run after leftovers")
    assert [s.running for s in EmbeddedServices(data_dir).status()] == [False, False]


def wait_for_new_readings(
    data_dir: Path, proc: subprocess.Popen[bytes], output: Path, *, more_than: int
) -> None:
    """Poll (with a deadline) until the running demo's processor received ``more_than``
    readings beyond what the data dir held when it started."""
    postgres = EmbeddedServices(data_dir).postgres
    deadline = time.monotonic() + 180
    start: int | None = None
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"the demo ended before it was stopped: {output.read_text()}"
        if postgres.is_running():
            try:
                with psycopg.connect(postgres.url(), autocommit=True, connect_timeout=2) as conn:
                    received = totals(conn)["received"]
            except psycopg.Error:
                received = None  # still starting or migrating
            if received is not None:
                start = received if start is None else start
                if received - start > more_than:
                    return
        time.sleep(0.2)
    raise AssertionError("the demo's processor never received readings")


def test_a_demo_with_an_opcua_machine_balances_across_three_paths(tmp_path: Path) -> None:
    """``--opcua``: one machine behind an asyncua server, collected by the edge agent."""
    summary_path = tmp_path / "summary.json"
    command = [*demo_command(tmp_path / "data", summary_path, 10), "--opcua"]
    output = run_to_the_end(command, {**os.environ, "PLANTSTREAM_LOG_LEVEL": "WARNING"})
    summary = assert_balanced(summary_path, "opcua run")
    opcua = summary["paths"]["opcua"]  # type: ignore[index]
    # every value written to the server that a subscription reports (a change) was collected
    # by the agent and accepted by ingest
    reported = opcua["written_to_server"] - opcua["unchanged_not_reported"]
    assert opcua["collected"] == reported == opcua["accepted"] > 100
    assert opcua["rejected"] == 0
    sparkplug = summary["paths"]["sparkplug"]  # type: ignore[index]
    assert sparkplug["accepted"] > 0
    http = summary["paths"]["http"]  # type: ignore[index]
    assert http["accepted"] + sparkplug["accepted"] + opcua["accepted"] == summary["accepted"]
    assert "the edge agent" in output  # it said it started the OPC UA machine's agent
