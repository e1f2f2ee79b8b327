"""Load clients for benchmarks and soak tests: batches of unique readings over real HTTP.

Every reading a run sends is unique (client, sequence, device and time), so what the server
stores can be counted against what it answered 202 for. Clients are asyncio + httpx in
processes of their own: closed loop (as fast as answers come back) or open loop (on a
schedule, whatever the answers, as gateways do).
"""

from __future__ import annotations

import asyncio
import itertools
import math
import multiprocessing as mp
import time
from collections import Counter
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from multiprocessing.queues import Queue
from typing import Any

import httpx
import msgspec
import orjson

BATCH = 500
DEVICES = 50  # per client; each request covers BATCH // DEVICES timestamps of every device
FACILITY = "plant-01"


# the wire formats a load client can send (the server's codecs), by their Content-Type
CONTENT_TYPES = {"json": "application/json", "msgpack": "application/msgpack"}


def unique_body(client: int, seq: int, origin: datetime, fmt: str = "json") -> bytes:
    """Batch ``seq`` of ``client``: readings no other request of the run repeats.

    ``fmt`` ``msgpack`` sends the same fields in MessagePack, timestamps as its own type.
    """
    slots = BATCH // DEVICES
    times = [origin + timedelta(milliseconds=seq * slots + k) for k in range(slots)]
    stamps: list[Any] = (
        times if fmt == "msgpack" else [t.isoformat().replace("+00:00", "Z") for t in times]
    )
    encode = msgspec.msgpack.encode if fmt == "msgpack" else orjson.dumps
    return encode(
        {
            "facility": FACILITY,
            "readings": [
                {
                    "device": f"soak-{client}-{i % DEVICES:02d}",
                    "metric": "temperature",
                    "ts": stamps[i // DEVICES],
                    "value": 40.0 + (seq + i) % 50 / 10,
                }
                for i in range(BATCH)
            ],
        }
    )


class Tally:
    def __init__(self) -> None:
        self.answers: Counter[str] = Counter()
        self.accepted = 0
        self.rejected = 0
        self.skipped = 0  # requests not sent: every connection of the client was waiting
        self.ms: dict[str, list[float]] = {"202": [], "429": []}

    def as_dict(self) -> dict[str, Any]:
        return {
            "answers": dict(self.answers),
            "accepted": self.accepted,
            "rejected": self.rejected,
            "skipped": self.skipped,
            "ms": self.ms,
        }


async def _post(
    client: httpx.AsyncClient, url: str, headers: dict[str, str], body: bytes, tally: Tally
) -> None:
    started = time.perf_counter()
    try:
        answer = await client.post(url, content=body, headers=headers)
    except httpx.HTTPError as exc:
        tally.answers[f"transport:{type(exc).__name__}"] += 1
        return
    elapsed = (time.perf_counter() - started) * 1000
    if answer.status_code == 202:
        result = answer.json()
        tally.accepted += result["accepted"]
        tally.rejected += len(result["rejected"])
        tally.answers["202"] += 1
        tally.ms["202"].append(elapsed)
    else:
        code = answer.json().get("error", {}).get("code", "?")
        tally.answers[f"{answer.status_code}:{code}"] += 1
        if answer.status_code == 429:
            tally.ms["429"].append(elapsed)


async def _run_client(
    url: str,
    key: str,
    client_id: int,
    origin: datetime,
    *,
    seconds: float,
    rate: float | None,
    connections: int,
    fmt: str = "json",
) -> Tally:
    """Closed loop when ``rate`` is None, else open loop at ``rate`` requests/s.

    Closed loop keeps ``connections`` requests in flight; open loop sends on schedule and
    counts as skipped a request due while all ``connections`` still wait for answers.
    """
    tally = Tally()
    headers = {"Authorization": f"Bearer {key}", "Content-Type": CONTENT_TYPES[fmt]}
    limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
    async with httpx.AsyncClient(timeout=60, limits=limits) as client:
        target = url + "/v1/readings"
        loop = asyncio.get_running_loop()
        start = loop.time()
        seq = 0
        if rate is None:
            numbers = itertools.count()

            async def one_connection() -> None:
                while loop.time() - start < seconds:
                    body = unique_body(client_id, next(numbers), origin, fmt)
                    await _post(client, target, headers, body, tally)

            await asyncio.gather(*(one_connection() for _ in range(connections)))
            return tally
        outstanding: set[asyncio.Task[None]] = set()
        while (now := loop.time()) - start < seconds:
            due = start + seq / rate
            if due > now:
                await asyncio.sleep(due - now)
            body = unique_body(client_id, seq, origin, fmt)
            seq += 1
            if len(outstanding) >= connections:
                tally.skipped += 1
                continue
            task = asyncio.create_task(_post(client, target, headers, body, tally))
            outstanding.add(task)
            task.add_done_callback(outstanding.discard)
        await asyncio.gather(*outstanding)
    return tally


def in_processes(target: Callable[..., None], arguments: Sequence[tuple[Any, ...]]) -> list[Any]:
    """Run ``target(*args, queue)`` once per ``args`` in its own process; what each put back.

    Load generators run in processes of their own so the client's GIL is not the limit.
    """
    queue: Queue[Any] = mp.Queue()
    procs = [mp.Process(target=target, args=(*args, queue)) for args in arguments]
    for proc in procs:
        proc.start()
    results = [queue.get() for _ in procs]
    for proc in procs:
        proc.join()
    return results


def _client_process(args: tuple[Any, ...], out: Queue[Any]) -> None:
    url, key, client_id, origin, seconds, rate, connections, fmt = args
    tally = _run_client(
        url, key, client_id, origin, seconds=seconds, rate=rate, connections=connections, fmt=fmt
    )
    out.put(asyncio.run(tally).as_dict())


def run_clients(
    url: str,
    key: str,
    *,
    first_id: int,
    count: int,
    seconds: float,
    rate: float | None,
    connections: int,
    fmt: str = "json",
) -> dict[str, Any]:
    """``count`` client processes of ``connections`` each; ``rate`` (requests/s) is shared.

    ``fmt`` is the wire format of the bodies (``CONTENT_TYPES``).

    ``first_id`` numbers the clients: runs against one database need ids of their own.
    """
    origin = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=6)
    each = None if rate is None else rate / count
    tallies = in_processes(
        _client_process,
        [
            ((url, key, first_id + n, origin, seconds, each, connections, fmt),)
            for n in range(count)
        ],
    )
    answers: Counter[str] = Counter()
    for t in tallies:
        answers.update(t["answers"])
    ms = {k: sorted(v for t in tallies for v in t["ms"][k]) for k in ("202", "429")}
    return {
        "seconds": seconds,
        "answers": dict(answers),
        "accepted": sum(t["accepted"] for t in tallies),
        "rejected": sum(t["rejected"] for t in tallies),
        "skipped": sum(t["skipped"] for t in tallies),
        "latency_ms": {
            k: {"p50": percentile(v, 0.5), "p99": percentile(v, 0.99), "max": v[-1] if v else None}
            for k, v in ms.items()
        },
    }


def percentile(ordered: list[float], q: float) -> float | None:
    """The ``q`` quantile of sorted values by nearest rank (the smallest value with at least
    ``q`` of them at or below it): of 100 samples, p99 is the 99th, not the largest. None
    for no values. Every benchmark's p99 is this one (medians are ``statistics.median``)."""
    if not ordered:
        return None
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]
