"""Soak: the laptop stack offered twice the rate it sustains, for minutes, on loopback.

The stack is ``plantstream serve all`` (ingest, processor and query API in one process, the
way ``plantstream demo`` runs) on the embedded PostgreSQL and Redis, with default settings.

1. Calibrate: closed-loop clients post batches of 500 unique readings as fast as answers
   come back -> the rate the stack sustains here, the *target*.
2. Soak: open-loop clients schedule requests at twice the target for ``--seconds``; each
   answer is tallied by status and code. The server's resident memory and Redis'
   ``used_memory`` are sampled once a second.
3. Drain: once the load stops, wait until the processor has stored every reading, then
   balance the books: readings answered 202 == rows in ``readings`` == the server's own
   ``plantstream_ingest_readings`` accepted counter.

Writes bench/results/soak.json. ``--check`` exits 1 when an invariant fails (no 5xx or
dropped connection, 429s while overloaded, memory flat, books balanced); the test suite
runs it that way for a shorter time. The facility quota on readings/s is lifted for this
run (``BENCH_SERVER_SETTINGS``): it measures the server's own push-back.

``--noisy-neighbour``: the quotas at their defaults. Facility A floods (closed-loop clients
past its readings/s quota, plus a client that names new sensors in every batch, past its
sensor quota) while facility B sends one small batch at a time; for each of B's batches,
the time from its 202 until /v1/latest shows it, alone first (baseline) and then under
the flood, with A's answers by code. Writes bench/results/soak_noisy.json.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import threading
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import psycopg
import redis

from plantstream.local.ports import free_port
from plantstream.store.keys import Role, create_key
from plantstream.testing import (
    BATCH,
    BENCH_SERVER_SETTINGS,
    FACILITY,
    SERVER_SECRET,
    fresh_services,
    in_processes,
    percentile,
    plantstream_server,
    run_clients,
    server_env,
    wait_for_readings,
    write_result,
)

RESULTS = Path(__file__).parent / "results"

# the generous bounds a flat server stays within: allocator slack, caches warming up
RSS_GROWTH_LIMIT = 1.25
RSS_GROWTH_SLACK_MB = 32


class Sampler(threading.Thread):
    """Once a second: the server's resident memory (MiB) and Redis' used_memory (MiB)."""

    def __init__(self, pid: int, redis_url: str) -> None:
        super().__init__(daemon=True)
        self.pid = pid
        self.redis = redis.Redis.from_url(redis_url)
        self.rss_mb: list[float] = []
        self.redis_mb: list[float] = []
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.wait(1.0):
            status = Path(f"/proc/{self.pid}/status").read_text()
            rss_kb = next(int(line.split()[1]) for line in status.splitlines() if "VmRSS" in line)
            self.rss_mb.append(rss_kb / 1024)
            self.redis_mb.append(int(self.redis.info("memory")["used_memory"]) / 2**20)


def server_accepted(url: str) -> int:
    """The server's own count of readings it answered 202 for."""
    total = 0.0
    for line in httpx.get(url + "/metrics", timeout=10).text.splitlines():
        if line.startswith("plantstream_ingest_readings_total{") and 'outcome="accepted"' in line:
            total += float(line.rsplit(" ", 1)[1])
    return int(total)


def _env(database_url: str, redis_url: str, **settings: str) -> dict[str, str]:
    return server_env(
        port=free_port(),
        database_url=database_url,
        redis_url=redis_url,
        **{**BENCH_SERVER_SETTINGS, **settings},
    )


def soak(*, seconds: float, calibrate_seconds: float, clients: int) -> dict[str, Any]:
    with fresh_services("plantstream_bench_soak") as (database_url, redis_url):
        with psycopg.connect(database_url, autocommit=True) as conn:
            key, _ = create_key(
                conn, server_secret=SERVER_SECRET.encode(), role=Role.INGEST, facility=FACILITY
            )
        with plantstream_server("all", env=_env(database_url, redis_url)) as (url, proc):
            calibration = run_clients(
                url,
                key,
                first_id=0,
                count=clients,
                seconds=calibrate_seconds,
                rate=None,
                connections=1,
            )
            target = calibration["accepted"] / calibrate_seconds
            sampler = Sampler(proc.pid, redis_url)
            sampler.start()
            load = run_clients(
                url,
                key,
                first_id=100,
                count=clients,
                seconds=seconds,
                rate=2 * target / BATCH,
                connections=64,
            )
            sampler.done.set()
            sampler.join()
            accepted = calibration["accepted"] + load["accepted"]
            stored, drained_s = wait_for_readings(database_url, accepted, timeout=300, interval=0.5)
            counted = server_accepted(url)
    third = max(1, len(sampler.rss_mb) // 3)
    early, late = sampler.rss_mb[:third], sampler.rss_mb[-third:]
    return {
        "batch_size": BATCH,
        "clients": clients,
        "target_readings_per_s": round(target),
        "offered_readings_per_s": round(2 * target),
        "calibration": calibration,
        "soak": load,
        "accepted_readings_per_s": round(load["accepted"] / seconds),
        "books": {
            "answered_202": accepted,
            "stored_rows": stored,
            "server_counted": counted,
            "drain_seconds": round(drained_s, 1),
        },
        "memory_mb": {
            "server_rss_first_third_median": round(statistics.median(early), 1),
            "server_rss_last_third_max": round(max(late), 1),
            "server_rss_max": round(max(sampler.rss_mb), 1),
            "redis_used_start": round(sampler.redis_mb[0], 1),
            "redis_used_end": round(sampler.redis_mb[-1], 1),
            "server_rss_samples": [round(v, 1) for v in sampler.rss_mb],
        },
    }


# -- noisy neighbour -----------------------------------------------------------------------

NOISY, VICTIM = FACILITY, "plant-b"  # the load clients' facility floods


def _iso(ts: datetime) -> str:
    return ts.isoformat().replace("+00:00", "Z")


def _sensor_flood(url: str, key: str, seconds: float, out: Any) -> None:
    """Batches of 500 readings of sensors never seen before, as fast as answered."""
    answers: Counter[str] = Counter()
    headers = {"Authorization": f"Bearer {key}"}
    stamp = _iso(datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=1))
    deadline = time.monotonic() + seconds
    seq = 0
    with httpx.Client(base_url=url, headers=headers, timeout=60) as client:
        while time.monotonic() < deadline:
            readings = [
                {"device": f"new-{seq}-{i}", "metric": "pressure", "ts": stamp, "value": 2.0}
                for i in range(500)
            ]
            seq += 1
            try:
                answer = client.post("/v1/readings", json={"facility": NOISY, "readings": readings})
            except httpx.HTTPError as exc:
                answers[f"transport:{type(exc).__name__}"] += 1
                continue
            if answer.status_code == 202:
                codes = Counter(r["code"] for r in answer.json()["rejected"])
                answers["202"] += 1
                answers.update({f"202 reading rejected:{c}": n for c, n in codes.items()})
            else:
                answers[f"{answer.status_code}:{answer.json()['error']['code']}"] += 1
    out.put(dict(answers))


def _victim(url: str, writer: str, reader: str, *, seconds: float) -> dict[str, Any]:
    """B's batches one at a time: seconds from each 202 until /v1/latest shows it."""
    seen: list[float] = []
    answers: Counter[str] = Counter()
    deadline = time.monotonic() + seconds
    with httpx.Client(base_url=url, timeout=60) as client:
        while time.monotonic() < deadline:
            ts = datetime.now(UTC) - timedelta(seconds=1)
            stamp = _iso(ts)
            body = {
                "facility": VICTIM,
                "readings": [
                    {"device": f"victim-{d}", "metric": "temperature", "ts": stamp, "value": 40.0}
                    for d in range(10)
                ],
            }
            try:
                sent = client.post(
                    "/v1/readings", json=body, headers={"Authorization": f"Bearer {writer}"}
                )
            except httpx.HTTPError as exc:
                answers[f"transport:{type(exc).__name__}"] += 1
                continue
            answers[str(sent.status_code)] += 1
            if sent.status_code != 202:
                continue
            answered = time.monotonic()
            while time.monotonic() - answered < 120:  # a bound: a lost reading ends the wait
                try:
                    latest = client.get(
                        f"/v1/latest?facility={VICTIM}&device=victim-9",
                        headers={"Authorization": f"Bearer {reader}"},
                    )
                except httpx.HTTPError as exc:
                    answers[f"poll transport:{type(exc).__name__}"] += 1
                    continue
                if latest.status_code != 200:
                    answers[f"poll {latest.status_code}"] += 1
                elif any(
                    datetime.fromisoformat(v["ts"].replace("Z", "+00:00")) >= ts
                    for v in latest.json()["readings"]
                ):
                    seen.append(time.monotonic() - answered)
                    break
                time.sleep(0.01)  # a polling interval, not a timing assumption
            else:
                answers["never_visible"] += 1
    ordered = sorted(seen)
    return {
        "batches": len(seen),
        "answers": dict(answers),
        "visible_after_ms": {
            "p50": round((percentile(ordered, 0.5) or 0.0) * 1000, 1) if ordered else None,
            "p99": round((percentile(ordered, 0.99) or 0.0) * 1000, 1) if ordered else None,
            "max": round(ordered[-1] * 1000, 1) if ordered else None,
        },
    }


def noisy_neighbour(
    *,
    seconds: float,
    baseline_seconds: float,
    clients: int,
    floods: tuple[str, ...] = ("rate", "sensors"),
    quota_readings_per_second: float | None = None,
    quota_backlog_readings: int | None = None,
) -> dict[str, Any]:
    """B's 202 -> visible latency alone and while A floods past its quotas (``floods``: the
    readings/s flood, the new-sensors flood or both; quotas at their defaults unless given)."""
    readings_quota = quota_readings_per_second or _default("quota_readings_per_second")
    backlog_quota = quota_backlog_readings
    if backlog_quota is None:
        backlog_quota = _default("quota_backlog_readings")
    with fresh_services("plantstream_bench_noisy") as (database_url, redis_url):
        with psycopg.connect(database_url, autocommit=True) as conn:
            keys = {
                (role, facility): create_key(
                    conn, server_secret=SERVER_SECRET.encode(), role=role, facility=facility
                )[0]
                for role, facility in (
                    (Role.INGEST, NOISY),
                    (Role.INGEST, VICTIM),
                    (Role.READ, VICTIM),
                )
            }
        # the quotas at their defaults; B's own polling must not meet its read quota
        env = _env(
            database_url,
            redis_url,
            quota_readings_per_second=str(readings_quota),
            quota_read_requests_per_second="1000",
            quota_backlog_readings=str(backlog_quota),  # BENCH_SERVER_SETTINGS lift it
        )
        with plantstream_server("all", env=env) as (url, _proc):
            writer, reader = keys[(Role.INGEST, VICTIM)], keys[(Role.READ, VICTIM)]
            baseline = _victim(url, writer, reader, seconds=baseline_seconds)
            flood: dict[str, Any] = {}
            sensor_flood: list[Any] = []
            # A floods twice over: the load clients past its readings/s, one more client past
            # its sensor quota (every batch names 500 new sensors)
            rate_flood = threading.Thread(
                target=lambda: flood.update(
                    run_clients(
                        url,
                        keys[(Role.INGEST, NOISY)],
                        first_id=0,
                        count=clients,
                        seconds=seconds,
                        rate=None,
                        connections=16,
                    )
                )
            )
            registry_flood = threading.Thread(
                target=lambda: sensor_flood.extend(
                    in_processes(_sensor_flood, [(url, keys[(Role.INGEST, NOISY)], seconds)])
                )
            )
            started = [
                t
                for name, t in (("rate", rate_flood), ("sensors", registry_flood))
                if name in floods
            ]
            for thread in started:
                thread.start()
            noisy = _victim(url, writer, reader, seconds=seconds)
            for thread in started:
                thread.join()
            with psycopg.connect(database_url, autocommit=True) as conn:
                sensors = dict(
                    conn.execute(
                        "SELECT facility, count(*) FROM sensors GROUP BY facility"
                    ).fetchall()
                )
            refused = {
                line.split(" ")[0]: float(line.rsplit(" ", 1)[1])
                for line in httpx.get(url + "/metrics", timeout=10).text.splitlines()
                if line.startswith("plantstream_quota_refused_total{")
            }
    return {
        "note": "short run on a busy 2-core machine shared with other work; figures are "
        "indicative, the bound is what matters",
        "floods": list(floods),
        "detection": os.environ.get("PLANTSTREAM_DETECTION", "true"),
        "quotas": {
            "quota_readings_per_second": readings_quota,
            "quota_max_sensors_per_facility": _default("quota_max_sensors_per_facility"),
            "quota_new_sensors_per_second": _default("quota_new_sensors_per_second"),
            "quota_backlog_readings": backlog_quota,
        },
        "seconds": seconds,
        "victim_alone": baseline,
        "victim_while_flooded": noisy,
        "flood_rate": {
            "facility": NOISY,
            "answers": flood.get("answers"),
            "accepted": flood.get("accepted"),
        },
        "flood_new_sensors": {
            "facility": NOISY,
            "answers": sensor_flood[0] if sensor_flood else None,
        },
        "sensors_registered": sensors,
        "server_quota_refusals": refused,
    }


def _default(name: str) -> Any:
    from plantstream.settings import Settings

    return Settings.model_fields[name].default


def failures(result: dict[str, Any]) -> list[str]:
    """The invariants a user relies on under overload, as readable failures."""
    problems = []
    answers = {**result["calibration"]["answers"], **result["soak"]["answers"]}
    bad = {k: v for k, v in answers.items() if not k.startswith(("202", "429"))}
    if bad:
        problems.append(f"answers other than 202/429: {bad}")
    if result["soak"]["answers"].get("429:overloaded", 0) == 0:
        problems.append("no 429 overloaded at twice the sustained rate: requests were queued")
    books = result["books"]
    if not books["answered_202"] == books["stored_rows"] == books["server_counted"]:
        problems.append(f"books do not balance: {books}")
    if result["calibration"]["rejected"] or result["soak"]["rejected"]:
        problems.append("valid readings were rejected")
    memory = result["memory_mb"]
    limit = memory["server_rss_first_third_median"] * RSS_GROWTH_LIMIT + RSS_GROWTH_SLACK_MB
    if memory["server_rss_last_third_max"] > limit:
        problems.append(f"server memory grew: {memory['server_rss_samples']}")
    return problems


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=300)
    parser.add_argument("--calibrate-seconds", type=float, default=15)
    parser.add_argument("--clients", type=int, default=2)
    parser.add_argument("--check", action="store_true", help="exit 1 if an invariant fails")
    parser.add_argument("--results", type=Path, default=RESULTS, help="where soak.json goes")
    parser.add_argument(
        "--noisy-neighbour",
        action="store_true",
        help="one facility floods past its quotas, another's latency is measured",
    )
    parser.add_argument(
        "--floods", default="rate,sensors", help="noisy neighbour: rate, sensors or both"
    )
    parser.add_argument(
        "--quota-readings-per-second",
        type=float,
        default=None,
        help="noisy neighbour: the facility readings quota (default: the settings' default)",
    )
    parser.add_argument(
        "--quota-backlog-readings",
        type=int,
        default=None,
        help="noisy neighbour: the facility backlog quota (default: the settings' default; 0 off)",
    )
    parser.add_argument("--name", default="soak_noisy", help="noisy neighbour: result file name")
    args = parser.parse_args()
    if args.noisy_neighbour:
        noisy = noisy_neighbour(
            seconds=args.seconds,
            baseline_seconds=args.calibrate_seconds,
            clients=args.clients,
            floods=tuple(args.floods.split(",")),
            quota_readings_per_second=args.quota_readings_per_second,
            quota_backlog_readings=args.quota_backlog_readings,
        )
        path = write_result(args.name, noisy, args.results)
        print(
            f"victim alone: {noisy['victim_alone']['visible_after_ms']}; while flooded: "
            f"{noisy['victim_while_flooded']['visible_after_ms']} "
            f"({noisy['victim_while_flooded']['answers']})\n"
            f"rate flood answers {noisy['flood_rate']['answers']}\n"
            f"sensor flood answers {noisy['flood_new_sensors']['answers']}\n"
            f"sensors {noisy['sensors_registered']}\n-> {path}"
        )
        return

    result = soak(
        seconds=args.seconds, calibrate_seconds=args.calibrate_seconds, clients=args.clients
    )
    problems = failures(result)
    result["problems"] = problems
    path = write_result("soak", result, args.results)
    soaked, books, memory = result["soak"], result["books"], result["memory_mb"]
    print(
        f"target {result['target_readings_per_s']:,} readings/s (sustained, closed loop); "
        f"offered {result['offered_readings_per_s']:,}/s for {args.seconds:.0f} s\n"
        f"answers {soaked['answers']}, not sent (client full) {soaked['skipped']}\n"
        f"accepted {result['accepted_readings_per_s']:,} readings/s; "
        f"202 p99 {soaked['latency_ms']['202']['p99']:.0f} ms, "
        f"429 p99 {soaked['latency_ms']['429']['p99'] or 0:.0f} ms\n"
        f"books: {books}\n"
        f"server RSS {memory['server_rss_first_third_median']} MiB early -> "
        f"{memory['server_rss_last_third_max']} MiB late (max {memory['server_rss_max']}); "
        f"Redis {memory['redis_used_start']} -> {memory['redis_used_end']} MiB\n"
        f"-> {path}"
    )
    for problem in problems:
        print("FAIL:", problem)
    if args.check and problems:
        sys.exit(1)


if __name__ == "__main__":
    main()
