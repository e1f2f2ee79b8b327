"""The MQTT bridge: Sparkplug B DDATA of 50 metrics through Mosquitto into the stream.

(1) Throughput: one bridge process (``plantstream serve mqtt``) drains DDATA messages queued
    for its persistent session in a private Mosquitto (unbounded queue): readings/s from its
    first accepted reading to its last, read off its Prometheus counters.
(2) Latency: ``serve all`` (ingest, API, processor) and the bridge, a QoS 1 edge node at
    ``--latency-rate`` readings/s; probe DDATA on their own device, publish -> visible in
    ``/v1/latest``: p50 and p99; alternating with them, HTTP probes (``POST /v1/readings``,
    202 -> visible) on the same server under the same load, as the A/B pair.
Writes bench/results/mqtt.json.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import paho.mqtt.client as mqtt
import psycopg
from paho.mqtt.enums import CallbackAPIVersion

from plantstream.local.ports import free_port
from plantstream.mqtt.sparkplug import edge
from plantstream.store.keys import Role, create_key
from plantstream.testing import (
    BENCH_SERVER_SETTINGS,
    SERVER_SECRET,
    answers_ok,
    fresh_services,
    percentile,
    plantstream_server,
    server_env,
    start_process,
    stop_process,
    wait_until,
    write_result,
)

RESULTS = Path(__file__).parent / "results"
FACILITY = "plant-01"
METRICS = 50


@contextmanager
def private_mosquitto() -> Iterator[int]:
    """A Mosquitto of this run only, on a free loopback port, with no cap on queued messages."""
    binary = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
    home = Path(tempfile.mkdtemp(prefix="plantstream-bench-mosquitto-"))
    port = free_port()
    (home / "mosquitto.conf").write_text(
        f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n"
        "max_queued_messages 0\nmax_inflight_messages 0\n"
    )
    proc = subprocess.Popen(
        [binary, "-c", str(home / "mosquitto.conf")],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_until(lambda: _listening(port), timeout=10, what="mosquitto")
        yield port
    finally:
        proc.terminate()
        proc.wait(10)
        shutil.rmtree(home, ignore_errors=True)


def _listening(port: int) -> bool:
    import socket

    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


class EdgeNode:
    """A QoS 1 Sparkplug edge node: one device of ``metrics`` doubles, by alias."""

    def __init__(self, port: int, edge_node: str, device: str, names: dict[str, int]) -> None:
        self.topic = f"spBv1.0/{FACILITY}/DDATA/{edge_node}/{device}"
        self.edge_node, self.device, self.names = edge_node, device, names
        self.seq = 0
        self.client = mqtt.Client(
            callback_api_version=CallbackAPIVersion.VERSION2, client_id=f"edge-{edge_node}"
        )
        self.client.max_inflight_messages_set(1000)
        self.client.max_queued_messages_set(0)
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()

    def birth(self, now_ms: int) -> None:
        self.seq = 1
        birth = edge.node_birth(bdseq=0, timestamp_ms=now_ms, metrics={})
        self.client.publish(f"spBv1.0/{FACILITY}/NBIRTH/{self.edge_node}", birth, qos=1)
        metrics = {name: (alias, 0.0) for name, alias in self.names.items()}
        dbirth = edge.device_birth(seq=1, timestamp_ms=now_ms, metrics=metrics)
        topic = f"spBv1.0/{FACILITY}/DBIRTH/{self.edge_node}/{self.device}"
        self.client.publish(topic, dbirth, qos=1).wait_for_publish(30)

    def data(self, ts_ms: int, value: float) -> mqtt.MQTTMessageInfo:
        self.seq += 1
        values = [(alias, value, ts_ms) for alias in self.names.values()]
        payload = edge.data(seq=self.seq, timestamp_ms=ts_ms, values=values)
        return self.client.publish(self.topic, payload, qos=1)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def _names() -> dict[str, int]:
    return {f"m{i:02d}/temperature": i + 1 for i in range(METRICS)}


def _accepted(metrics_url: str) -> float:
    text = httpx.get(metrics_url, timeout=5).text
    pattern = r'plantstream_mqtt_readings_total\{outcome="accepted",path="sparkplug"\} (\S+)'
    match = re.search(pattern, text)
    return float(match.group(1)) if match else 0.0


def _bridge(env: dict[str, str]) -> tuple[subprocess.Popen[bytes], str]:
    metrics_url = f"http://127.0.0.1:{env['PLANTSTREAM_MQTT_METRICS_PORT']}/metrics"
    proc = start_process(
        [sys.executable, "-m", "plantstream", "serve", "mqtt"],
        ready=lambda: answers_ok(metrics_url),
        what="plantstream serve mqtt",
        env=env,
    )
    return proc, metrics_url


def _bridge_env(database_url: str, redis_url: str, port: int, **settings: str) -> dict[str, str]:
    options = {
        "mqtt_url": f"mqtt://127.0.0.1:{port}",
        "mqtt_client_id": "bench-bridge",
        "mqtt_metrics_port": str(free_port()),
        "mqtt_plain_topics": "false",
        **BENCH_SERVER_SETTINGS,
        **settings,
    }
    return server_env(port=free_port(), database_url=database_url, redis_url=redis_url, **options)


def throughput(database_url: str, redis_url: str, *, messages: int) -> dict[str, float]:
    """Readings/s of one bridge draining ``messages`` DDATA queued for its session."""
    with private_mosquitto() as port:
        env = _bridge_env(database_url, redis_url, port)
        bridge, metrics_url = _bridge(env)  # subscribes: the session exists from now on
        wait_until(lambda: _listening(port), timeout=10, what="the broker")
        stop_process(bridge)
        node = EdgeNode(port, "bench", "d1", _names())
        start_ms = int(time.time() * 1000) - messages - 60_000
        node.birth(start_ms)
        infos = [node.data(start_ms + 1 + i, 20.0 + i % 50) for i in range(messages)]
        for info in infos:
            info.wait_for_publish(60)
        node.close()
        expected = messages * METRICS + METRICS
        bridge, metrics_url = _bridge(env)
        try:
            first = last = 0.0
            started = finished = 0.0
            deadline = time.monotonic() + 600
            while last < expected and time.monotonic() < deadline:
                last = _accepted(metrics_url)
                now = time.perf_counter()
                if last > 0 and not started:
                    first, started = last, now
                finished = now
                time.sleep(0.05)
        finally:
            stop_process(bridge)
    seconds = finished - started
    return {
        "messages": messages,
        "metrics_per_message": METRICS,
        "readings": last,
        "readings_per_s": (last - first) / seconds if seconds > 0 else 0.0,
        "seconds": seconds,
    }


def latency(
    database_url: str, redis_url: str, *, rate: float, seconds: float, samples: int
) -> dict[str, float]:
    """p50/p99 of publish -> visible in /v1/latest under ``rate`` readings/s of Sparkplug load."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        read_key, _ = create_key(
            conn, server_secret=SERVER_SECRET.encode(), role=Role.READ, facility=FACILITY
        )
        ingest_key, _ = create_key(
            conn, server_secret=SERVER_SECRET.encode(), role=Role.INGEST, facility=FACILITY
        )
    with private_mosquitto() as port:
        web_env = server_env(
            port=free_port(),
            database_url=database_url,
            redis_url=redis_url,
            **BENCH_SERVER_SETTINGS,
        )
        with plantstream_server("all", env=web_env) as (url, _):
            bridge, _ = _bridge(_bridge_env(database_url, redis_url, port, mqtt_client_id="lat"))
            try:
                return _measure(
                    url, read_key, ingest_key, port, rate=rate, seconds=seconds, samples=samples
                )
            finally:
                stop_process(bridge)


def _measure(
    url: str,
    read_key: str,
    ingest_key: str,
    port: int,
    *,
    rate: float,
    seconds: float,
    samples: int,
) -> dict[str, float]:
    """MQTT probes and, alternating with them, HTTP probes (POST /v1/readings, 202 -> visible)
    on the same server under the same Sparkplug load: the A/B pair a busy machine allows."""
    client = httpx.Client(timeout=30, headers={"Authorization": f"Bearer {read_key}"})
    poster = httpx.Client(timeout=30, headers={"Authorization": f"Bearer {ingest_key}"})
    load = EdgeNode(port, "load", "d1", _names())
    probe = EdgeNode(port, "probe", "d1", {"pressure": 1})
    now_ms = int(time.time() * 1000)
    load.birth(now_ms)
    probe.birth(now_ms)
    stop = threading.Event()
    sent = [0]

    def background() -> None:
        interval = METRICS / rate
        next_at = time.perf_counter()
        while not stop.is_set():
            load.data(int(time.time() * 1000), 20.0)
            sent[0] += METRICS
            next_at += interval
            time.sleep(max(0.0, next_at - time.perf_counter()))

    def visible(device: str, value: float, since: float, timeout: float) -> float:
        while time.perf_counter() - since < timeout:
            latest = client.get(url + f"/v1/latest?facility={FACILITY}&device={device}").json()[
                "readings"
            ]
            if latest and latest[0]["value"] == value:
                break
            time.sleep(0.002)
        return time.perf_counter() - since

    def one(value: float, timeout: float) -> float:
        published = time.perf_counter()
        probe.data(int(time.time() * 1000), value)
        return visible("probe.d1", value, published, timeout)

    def one_http(value: float, timeout: float) -> float:
        # to the microsecond: two probes in one second with a whole-second ts are one reading
        # (first write wins), the second never visible: the old probe's 10 s p99
        now = time.time()
        ts = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now)) + f".{int(now % 1 * 1e6):06d}Z"
        body = {
            "facility": FACILITY,
            "readings": [{"device": "probe-http", "metric": "pressure", "ts": ts, "value": value}],
        }
        answer = poster.post(url + "/v1/readings", json=body)
        acknowledged = time.perf_counter()
        assert answer.status_code == 202, answer.text
        return visible("probe-http", value, acknowledged, timeout)

    one(-1.0, 60)  # warm-up: the processor took its leases, the births are in
    one_http(-1.0, 60)
    worker = threading.Thread(target=background, daemon=True)
    started = time.perf_counter()
    worker.start()
    gap = seconds / (samples + 2)
    time.sleep(gap)
    delays, http_delays = [], []
    for n in range(samples):
        time.sleep(gap / 2)
        delays.append(one(float(n), 10.0))
        time.sleep(gap / 2)
        http_delays.append(one_http(float(n), 10.0))
    stop.set()
    worker.join()
    elapsed = time.perf_counter() - started
    load.close()
    probe.close()
    return {
        "background_readings_per_s": sent[0] / elapsed,
        "samples": len(delays),
        **_percentiles(delays, "mqtt_"),
        **_percentiles(http_delays, "http_"),
    }


def _percentiles(delays: list[float], prefix: str) -> dict[str, float]:
    delays = sorted(delays)
    return {
        f"{prefix}p50_ms": statistics.median(delays) * 1000,
        f"{prefix}p99_ms": (percentile(delays, 0.99) or 0.0) * 1000,
        f"{prefix}max_ms": delays[-1] * 1000,
    }


def in_process(messages: int = 1000, repeats: int = 9) -> dict[str, float]:
    """The bridge's two CPU steps alone, best of ``repeats`` (a busy machine's noise is one
    way): Sparkplug decode + host rules (``SparkplugHost.handle``) and the stream packing of
    ``accept_decoded`` (``pack_readings``), readings/s of each."""
    from plantstream.model import TimeWindow
    from plantstream.mqtt.sparkplug.host import SparkplugHost
    from plantstream.mqtt.sparkplug.mapping import NameRule
    from plantstream.stream.records import pack_readings

    class NoBirths:
        def load(self, key: str) -> None:
            return None

        def devices(self, facility: str, node: str) -> list[str]:
            return []

    host = SparkplugHost(rule=NameRule(), window=TimeWindow(), store=NoBirths())
    names = {f"m{i:02d}/temperature": (i + 1, 20.0) for i in range(METRICS)}
    now_ms = int(time.time() * 1000)
    host.handle("spBv1.0/f/NBIRTH/e", edge.node_birth(bdseq=0, timestamp_ms=now_ms, metrics={}), 0)
    birth = edge.device_birth(seq=1, timestamp_ms=now_ms, metrics=names)
    host.handle("spBv1.0/f/DBIRTH/e/d", birth, now_ms * 1000)
    payloads = [
        edge.data(
            seq=2 + i,
            timestamp_ms=now_ms + i,
            values=[(a, 20.0 + i % 100 / 10, now_ms + i) for a, _ in names.values()],
        )
        for i in range(messages)
    ]
    best_handle = best_pack = 0.0
    for _ in range(repeats):
        start = time.perf_counter()
        outs = [host.handle("spBv1.0/f/DDATA/e/d", p, now_ms * 1000) for p in payloads]
        handled = time.perf_counter()
        readings = [r for o in outs for r in o.readings]
        for i in range(0, len(readings), 20_000):
            pack_readings("f", now_ms * 1000, readings[i : i + 20_000])
        packed = time.perf_counter()
        best_handle = max(best_handle, len(readings) / (handled - start))
        best_pack = max(best_pack, len(readings) / (packed - handled))
    return {"handle_readings_per_s": best_handle, "pack_readings_per_s": best_pack}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--messages", type=int, default=4000, help="DDATA queued for the drain")
    parser.add_argument("--seconds", type=float, default=15)
    parser.add_argument("--latency-rate", type=float, default=10_000)
    parser.add_argument("--latency-samples", type=int, default=100)
    args = parser.parse_args()
    load_before = os.getloadavg()
    steps = in_process()
    print(
        f"in process, best of 9: decode + host {steps['handle_readings_per_s']:,.0f} "
        f"readings/s, packing {steps['pack_readings_per_s']:,.0f} readings/s"
    )
    with fresh_services("plantstream_bench_mqtt") as (database_url, redis_url):
        through = throughput(database_url, redis_url, messages=args.messages)
        print(
            f"bridge: {through['readings_per_s']:,.0f} readings/s into the stream "
            f"(DDATA of {METRICS} metrics, one bridge process)"
        )
        lat = latency(
            database_url,
            redis_url,
            rate=args.latency_rate,
            seconds=args.seconds,
            samples=args.latency_samples,
        )
        print(
            f"publish -> visible in /v1/latest at {lat['background_readings_per_s']:,.0f} "
            f"readings/s: p50 {lat['mqtt_p50_ms']:.0f} ms, p99 {lat['mqtt_p99_ms']:.0f} ms "
            f"(HTTP 202 -> visible, alternating, same load: p50 {lat['http_p50_ms']:.0f} ms, "
            f"p99 {lat['http_p99_ms']:.0f} ms)"
        )
    path = write_result(
        "mqtt",
        {
            "machine_note": "shared, busy: 2 cores used by several engineers at once",
            "load_average_before": [round(x, 1) for x in load_before],
            "load_average_after": [round(x, 1) for x in os.getloadavg()],
            "broker": "Mosquitto 2 (a private instance per run, no queue cap)",
            "bridge_processes": 1,
            "throughput": {k: round(v, 1) for k, v in through.items()},
            "in_process_best_of_9": {k: round(v, 1) for k, v in steps.items()},
            "latency": {k: round(v, 1) for k, v in lat.items()},
            "probe_timeout_s": 10,
            "goal": {"readings_per_s": 150_000, "p99_ms": 250},
        },
        RESULTS,
    )
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
