"""The plant simulator as a gateway: posts readings over HTTP at a target rate, never drops.

A request the server pushes back on (429), cannot take (503) or that fails on the way (a
reset connection) is sent again after the delay it asked for; a repeat is harmless because
readings are identified by (sensor, time). Only a batch refused for good, or still not taken
after ``give_up_after`` seconds, counts as failed.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import httpx
import orjson

from plantstream.simulate.faults import Fault
from plantstream.simulate.plant import Plant, SimReading

BATCH_LIMIT = 500


@dataclass
class LoadStats:
    """What the simulator sent and what the server said, updated as it runs."""

    sent: int = 0
    accepted: int = 0
    rejected: int = 0
    requests: int = 0
    retries: int = 0
    batches: int = 0  # batches finished, taken or not (a batch split on 413 counts its parts)
    failed_batches: int = 0  # of those, refused for good or given up on
    rejected_by_code: Counter[str] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)  # why batches failed for good
    transient: Counter[str] = field(default_factory=Counter)  # failed attempts, then retried
    faults: list[Fault] = field(default_factory=list)

    def summary(self) -> str:
        """One line: how many batches were not accepted and why ("" when all were)."""
        if not self.failed_batches:
            return ""
        why = ", ".join(f"{code}: {n}" for code, n in sorted(self.errors.items()))
        return f"{self.failed_batches} of {self.batches} batches were not accepted ({why})"

    def as_dict(self) -> dict[str, object]:
        return {
            "sent": self.sent,
            "accepted": self.accepted,
            "rejected": self.rejected,
            "requests": self.requests,
            "retries": self.retries,
            "batches": self.batches,
            "failed_batches": self.failed_batches,
            "rejected_by_code": dict(self.rejected_by_code),
            "errors": dict(self.errors),
            "transient": dict(self.transient),
            "faults": [f.as_dict() for f in self.faults],
        }


def _payload(facility: str, readings: list[SimReading]) -> bytes:
    return orjson.dumps(
        {
            "facility": facility,
            "readings": [
                {
                    "device": r.device,
                    "metric": r.metric,
                    "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(r.ts))
                    + f".{int(r.ts * 1e6) % 1_000_000:06d}Z",
                    "value": round(r.value, 4),
                    "unit": r.unit,
                }
                for r in readings
            ],
        }
    )


class Gateway:
    """Posts a plant's readings to ``url`` with one key per facility (or one admin key)."""

    def __init__(
        self,
        *,
        url: str,
        keys: Mapping[str, str],
        plant: Plant,
        rate: float,
        stats: LoadStats | None = None,
        client: httpx.Client | None = None,
        give_up_after: float = 60.0,
    ) -> None:
        self.url = url.rstrip("/") + "/v1/readings"
        self.keys = keys
        self.plant = plant
        self.rate = rate
        self.stats = stats or LoadStats()
        self.client = client or httpx.Client(timeout=30.0)
        self.give_up_after = give_up_after
        sensors = sum(len(m.signals) for m in plant.machines)
        # sample the plant often enough that it emits ``rate`` readings a second in total
        self.interval = max(sensors / rate, 0.01)

    def _key(self, facility: str) -> str:
        return self.keys.get(facility) or self.keys["*"]

    def post(self, facility: str, readings: list[SimReading]) -> None:
        """Send one batch until the server takes it (or ``give_up_after`` seconds pass)."""
        body = _payload(facility, readings)
        headers = {
            "Authorization": f"Bearer {self._key(facility)}",
            "Content-Type": "application/json",
        }
        deadline = time.monotonic() + self.give_up_after
        delay = 0.2
        while True:
            self.stats.requests += 1
            try:
                response = self.client.post(self.url, content=body, headers=headers)
            except httpx.HTTPError as exc:
                self.stats.transient[type(exc).__name__] += 1  # failed for good only at the end
                response = None
            if response is not None and response.status_code == 202:
                answer = response.json()
                self.stats.batches += 1
                self.stats.sent += len(readings)
                self.stats.accepted += answer["accepted"]
                self.stats.rejected += len(answer["rejected"])
                for reject in answer["rejected"]:
                    self.stats.rejected_by_code[reject.get("code", "unknown")] += 1
                return
            if response is not None and response.status_code == 413 and len(readings) > 1:
                # the server takes smaller batches than ours: halve and send both parts
                half = len(readings) // 2
                self.post(facility, readings[:half])
                self.post(facility, readings[half:])
                return
            if response is not None and response.status_code not in (429, 502, 503, 504):
                self._failed(readings, f"http_{response.status_code}")
                return  # the server refused the batch for good: counted, not retried
            if time.monotonic() > deadline:
                self._failed(readings, "gave_up")
                return
            if response is not None:
                self.stats.transient[f"http_{response.status_code}"] += 1
            retry_after = response.headers.get("Retry-After") if response is not None else None
            self.stats.retries += 1
            time.sleep(float(retry_after) if retry_after else delay)
            delay = min(delay * 2, 5.0)

    def _failed(self, readings: list[SimReading], why: str) -> None:
        self.stats.batches += 1
        self.stats.failed_batches += 1
        self.stats.sent += len(readings)
        self.stats.errors[why] += 1

    def backfill(self, *, seconds: float, interval: float = 0.5) -> None:
        """Send the last ``seconds`` of history at once, as a gateway catching up would."""
        now = time.time()
        pending: dict[str, list[SimReading]] = {}
        t = now - seconds
        while t < now:
            for reading in self.plant.sample(t):
                pending.setdefault(reading.facility, []).append(reading)
            t += interval
        for facility, readings in pending.items():
            for i in range(0, len(readings), BATCH_LIMIT):
                self.post(facility, readings[i : i + BATCH_LIMIT])

    def run(
        self,
        *,
        duration: float,
        stop: threading.Event | None = None,
        on_tick: Callable[[LoadStats], None] | None = None,
    ) -> LoadStats:
        """Emit readings in real time for ``duration`` seconds (or until ``stop``)."""
        stop = stop or threading.Event()
        start = time.time()
        next_sample = start
        pending: dict[str, list[SimReading]] = {}
        last_flush = time.monotonic()
        while not stop.is_set() and time.time() - start < duration:
            now = time.time()
            while next_sample <= now:
                for reading in self.plant.sample(next_sample):
                    pending.setdefault(reading.facility, []).append(reading)
                next_sample += self.interval
            if time.monotonic() - last_flush >= 0.25 or any(
                len(v) >= BATCH_LIMIT for v in pending.values()
            ):
                for facility, readings in pending.items():
                    for i in range(0, len(readings), BATCH_LIMIT):
                        self.post(facility, readings[i : i + BATCH_LIMIT])
                pending.clear()
                last_flush = time.monotonic()
                if on_tick:
                    on_tick(self.stats)
            stop.wait(max(0.0, min(next_sample - time.time(), 0.05)))
        for facility, readings in pending.items():
            for i in range(0, len(readings), BATCH_LIMIT):
                self.post(facility, readings[i : i + BATCH_LIMIT])
        return self.stats
