"""Detection quality: the simulator's labeled faults through the real pipeline, scored.

Every fault type is injected on several machines of a simulated plant (realistic noise and
daily cycle); the readings go through the Redis stream, the processor and the detection
engine on real PostgreSQL and Redis, in accelerated simulated time. Each alert is matched to
the injected faults; per fault type we report precision, recall and the median detection
delay in simulated time. Writes bench/results/detection.json.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import psycopg
import redis

from plantstream.detect import DetectionEngine
from plantstream.model import Reading, now_us
from plantstream.processor import DetectionSink, Processor, ProcessorConfig, RedisLatestSink
from plantstream.simulate import FaultKind, Plant
from plantstream.simulate.faults import Fault
from plantstream.store.alerts import opened_since
from plantstream.stream import RedisStream, pack_readings
from plantstream.testing import fresh_services, write_result

RESULTS = Path(__file__).parent / "results"

GRACE_S = 120.0  # an alert up to this long after a fault ended still belongs to it


def produce(
    stream: RedisStream,
    plant: Plant,
    start: float,
    seconds: int,
    step: float,
    request_seconds: float,
) -> int:
    """Readings as gateways send them: each facility posts every ``request_seconds``, and a
    reading is received when its request is (true time, whatever the device clock says)."""
    produced = 0
    pending = []
    batch: dict[str, list[Reading]] = {}
    t = start
    end = start + seconds
    next_request = start + request_seconds
    while t < end:
        for r in plant.sample(t):
            batch.setdefault(r.facility, []).append(
                Reading(r.device, r.metric, int(r.ts * 1e6), r.value, 0)
            )
        t += step
        if t >= next_request or t >= end:
            received = int(t * 1e6)
            for facility, readings in batch.items():
                pending.extend(pack_readings(facility, received, readings))
                produced += len(readings)
            batch = {}
            next_request += request_seconds
        if len(pending) >= 2000:
            stream.put(pending)
            pending = []
    stream.put(pending)
    return produced


def score(faults: list[Fault], alerts: list[tuple[str, str, str, str, float]]) -> dict[str, object]:
    per_kind: dict[str, dict[str, object]] = {}
    matched_alerts: set[int] = set()
    for kind in FaultKind:
        injected = [f for f in faults if f.kind == kind]
        detected, delays = 0, []
        for fault in injected:
            hits = [
                (i, opened)
                for i, (facility, device, metric, alert_kind, opened) in enumerate(alerts)
                if alert_kind == str(kind)
                and facility == fault.facility
                and device == fault.device
                and metric == fault.metric
                and fault.start - 1 <= opened <= fault.end + GRACE_S
            ]
            if hits:
                detected += 1
                delays.append(min(opened for _, opened in hits) - fault.start)
                matched_alerts.update(i for i, _ in hits)
        raised = [i for i, a in enumerate(alerts) if a[3] == str(kind)]
        true = [i for i in raised if i in matched_alerts]
        per_kind[str(kind)] = {
            "injected": len(injected),
            "detected": detected,
            "alerts": len(raised),
            "true_alerts": len(true),
            "recall": round(detected / len(injected), 3) if injected else None,
            "precision": round(len(true) / len(raised), 3) if raised else None,
            "median_delay_s": round(statistics.median(delays), 1) if delays else None,
        }
    other = [
        a
        for i, a in enumerate(alerts)
        if i not in matched_alerts and a[3] not in {str(k) for k in FaultKind}
    ]
    return {
        "by_fault_type": per_kind,
        "other_alerts": len(other),
        "other_alert_kinds": sorted({a[3] for a in other}),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--hours", type=float, default=2.0)
    parser.add_argument("--facilities", type=int, default=3)
    parser.add_argument("--machines", type=int, default=12)
    parser.add_argument("--faults", type=int, default=30, help="spread over the fault types")
    parser.add_argument("--step", type=float, default=1.0, help="sampling interval, seconds")
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument(
        "--request-seconds", type=float, default=5.0, help="how often each gateway posts"
    )
    parser.add_argument(
        "--batch-records",
        type=int,
        default=10,
        help="small batches keep the shards' data clocks close in accelerated replay",
    )
    args = parser.parse_args()

    seconds = int(args.hours * 3600)
    start = now_us() / 1e6 - seconds - 600
    plant = Plant(seed=args.seed, facilities=args.facilities, machines=args.machines)
    faults = plant.schedule_faults(start=start, duration=seconds, count=args.faults)
    with fresh_services("plantstream_bench_detection") as (database_url, redis_url):
        client = redis.Redis.from_url(redis_url)
        stream = RedisStream(client, "detection", retention_hours=0)
        stream.create(4)
        started = time.perf_counter()
        produced = produce(stream, plant, start, seconds, args.step, args.request_seconds)
        print(
            f"produced {produced:,} readings ({args.hours} h simulated) "
            f"in {time.perf_counter() - started:.0f}s; {len(faults)} faults injected"
        )
        engine = DetectionEngine(database_url=database_url, redis_client=client)
        processor = Processor(
            database_url=database_url,
            stream=stream,
            config=ProcessorConfig(stream_name=stream.name, batch_records=args.batch_records),
            sinks=[RedisLatestSink(client), DetectionSink(engine)],
        )
        started = time.perf_counter()
        idle = 0
        while idle < 2:  # drained: two passes in a row found nothing (duplicates never count)
            if processor.step():
                idle = 0
            else:
                processor.rebalance()
                idle += 1
        elapsed = time.perf_counter() - started
        processor.shutdown()
        engine.close()
        print(f"processed with detection at {produced / elapsed:,.0f} readings/s")
        with psycopg.connect(database_url) as conn:
            alerts = opened_since(conn=conn, since_s=0)
    result = score(faults, alerts)
    by_kind: dict[str, dict[str, object]] = result["by_fault_type"]  # type: ignore[assignment]
    print(f"{'fault type':<14}{'injected':>9}{'recall':>8}{'precision':>10}{'delay s':>9}")
    for kind, entry in by_kind.items():
        print(
            f"{kind:<14}{entry['injected']:>9}{entry['recall']!s:>8}"
            f"{entry['precision']!s:>10}{entry['median_delay_s']!s:>9}"
        )
    print(f"other alerts (no fault type): {result['other_alerts']} {result['other_alert_kinds']}")
    meets = all(
        e["recall"] is not None
        and float(e["recall"]) >= 0.95  # type: ignore[arg-type]
        and e["precision"] is not None
        and float(e["precision"]) >= 0.90  # type: ignore[arg-type]
        and e["median_delay_s"] is not None
        and float(e["median_delay_s"]) <= 60  # type: ignore[arg-type]
        for e in by_kind.values()
    )
    path = write_result(
        "detection",
        {
            "simulated_hours": args.hours,
            "facilities": args.facilities,
            "machines_per_facility": args.machines,
            "readings": produced,
            "sampling_interval_s": args.step,
            "seed": args.seed,
            "processing_readings_per_s": round(produced / elapsed),
            **result,
            "goal": {"recall": 0.95, "precision": 0.90, "median_delay_s": 60},
            "meets_goal": meets,
        },
        RESULTS,
    )
    print(f"goal met: {meets}; written to {path}")


if __name__ == "__main__":
    main()
