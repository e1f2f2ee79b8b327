"""The bridge's work loop: MQTT messages in, durable readings and state, then acknowledgements.

paho's network thread only queues each message; one worker takes up to
``PLANTSTREAM_MQTT_BATCH_MESSAGES`` of them (waiting at most ``..._BATCH_WAIT_MS``), turns each
into an ``Outcome`` in order, puts the readings through the ingest service (which returns once
the stream holds them), writes the births, deaths and dead letters to Redis, and only then
acknowledges the messages, in the order they came. Anything that fails on the way is retried
with backoff and nothing is acked meanwhile: a bridge killed at any moment loses nothing the
broker accepted, and the broker's redelivery is stored once (readings are keyed by sensor and
timestamp).
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import redis

from plantstream.errors import ErrorCode, PlantstreamError
from plantstream.ingest import IngestService
from plantstream.model import ParsedBatch, Reading, now_us
from plantstream.mqtt import metrics
from plantstream.mqtt.history import HistorySink
from plantstream.mqtt.outcome import Outcome
from plantstream.store import sparkplug_state as state_store
from plantstream.store.keys import Principal, Role
from plantstream.store.sparkplug_state import BirthState

log = logging.getLogger(__name__)

Handle = Callable[[str, bytes, int], Outcome]


@dataclass(frozen=True, slots=True)
class Inbound:
    """One message as paho handed it over, with the connection it came on."""

    topic: str
    payload: bytes
    mid: int
    qos: int
    connection: int
    received_us: int


@dataclass(frozen=True, slots=True)
class Route:
    """Topics starting with ``prefix`` go to ``handle``; ``path`` labels the metrics."""

    prefix: str
    path: str
    handle: Handle


@dataclass(slots=True)
class _Batch:
    items: list[Inbound] = field(default_factory=list)
    readings: dict[str, list[Reading]] = field(default_factory=dict)
    history: dict[str, list[Reading]] = field(default_factory=dict)
    letters: list[tuple[str, str, str, bytes, int]] = field(default_factory=list)
    births: dict[str, BirthState] = field(default_factory=dict)
    deaths: dict[str, int] = field(default_factory=dict)
    seqs: dict[str, int] = field(default_factory=dict)
    rebirths: list[tuple[str, str]] = field(default_factory=list)
    parked: list[tuple[str, str, bytes, int]] = field(default_factory=list)
    replay: list[str] = field(default_factory=list)
    unparked: dict[str, list[bytes]] = field(default_factory=dict)  # node -> entries taken
    counts: Counter[str] = field(default_factory=Counter)  # readings accepted, rejected


class Bridge:
    """Queue, batch, make durable, acknowledge. ``ack`` and ``rebirth`` are the MQTT side."""

    def __init__(
        self,
        *,
        ingest: IngestService,
        redis_client: redis.Redis,
        routes: Sequence[Route],
        ack: Callable[[Inbound], None],
        rebirth: Callable[[str, str], None],
        client_id: str,
        batch_messages: int = 400,
        batch_wait_s: float = 0.005,
        dead_letter_max: int = 10_000,
        on_batch: Callable[[], None] = lambda: None,
        ready: Callable[[str], bool] = lambda topic: True,
        history: HistorySink | None = None,
    ) -> None:
        self.ingest = ingest
        self.redis = redis_client
        self.routes = list(routes)
        self.ack = ack
        self.rebirth = rebirth
        self.client_id = client_id
        self.batch_messages = batch_messages
        self.batch_wait_s = batch_wait_s
        self.dead_letter_max = dead_letter_max
        self.on_batch = on_batch
        self.ready = ready
        self.history = history  # None: historical readings go with the live ones
        self.inbox: queue.SimpleQueue[Inbound] = queue.SimpleQueue()
        self.taken: Counter[str] = Counter()  # messages handled by this bridge, per path
        # readings made durable (accepted) or refused one by one (rejected): the demo's books
        self.readings: Counter[str] = Counter()
        self._principals: dict[str, Principal] = {}

    def put(self, item: Inbound) -> None:
        """Called on paho's thread for every message: queue it, nothing more."""
        self.inbox.put(item)

    def run(self, stop: threading.Event) -> None:
        """Work until ``stop`` is set and what was taken is durable and acked."""
        while not stop.is_set():
            items = self._take(stop)
            if items:
                self.process(items, stop)

    def _take(self, stop: threading.Event) -> list[Inbound]:
        try:
            first = self.inbox.get(timeout=0.2)
        except queue.Empty:
            return []
        items = [first]
        deadline = time.monotonic() + self.batch_wait_s
        while len(items) < self.batch_messages:
            try:
                items.append(self.inbox.get_nowait())
            except queue.Empty:
                left = deadline - time.monotonic()
                if left <= 0 or stop.is_set():
                    break
                try:
                    items.append(self.inbox.get(timeout=left))
                except queue.Empty:
                    break
        return items

    def process(self, items: list[Inbound], stop: threading.Event | None = None) -> None:
        """Make ``items`` durable (retrying until it is, or ``stop``), then ack them in order."""
        batch = _Batch(items=items)
        for item in items:
            self._route(item, batch)
        delay = 0.05
        while not self._commit(batch):
            if stop is not None and stop.wait(delay):
                return  # not acked: the broker hands these over again
            delay = min(delay * 2, 5.0)
        self.readings.update(batch.counts)
        for item in items:
            if item.qos > 0:
                self.ack(item)
        metrics.ACKED.inc(sum(1 for item in items if item.qos > 0))
        for group, edge_node in batch.rebirths:
            self.rebirth(group, edge_node)
            metrics.REBIRTHS.inc()
        self.on_batch()
        for node in batch.replay:
            self._replay(node, stop)

    def _replay(self, node: str, stop: threading.Event | None) -> None:
        """Take the messages parked for ``node`` that its births now let through; the others
        stay parked. Replayed messages were acked when parked: nothing is acked here."""
        try:
            waiting = state_store.parked(client=self.redis, node=node)
        except redis.RedisError as exc:
            log.warning("parked messages of %s not read (kept): %s", node, exc)
            return
        if not waiting:
            return
        ready = [w for w in waiting if self.ready(w[0])]
        if not ready:
            return
        batch = _Batch(items=[Inbound(t, p, 0, 0, -1, r) for t, p, r, _ in ready])
        for item in batch.items:
            self._route(item, batch)
        batch.replay.clear()
        batch.unparked[node] = [entry for *_, entry in ready]
        delay = 0.05
        while not self._commit(batch):
            if stop is not None and stop.wait(delay):
                return
            delay = min(delay * 2, 5.0)
        self.readings.update(batch.counts)
        metrics.REPLAYED.inc(len(ready))

    def _route(self, item: Inbound, batch: _Batch) -> None:
        route = next((r for r in self.routes if item.topic.startswith(r.prefix)), None)
        if route is None:
            return  # a topic of no path (our own STATE echo, ...): nothing to do
        try:
            out = route.handle(item.topic, item.payload, item.received_us)
        except Exception as exc:  # a bug must not stop the bridge; the message is kept
            log.exception("handling a message on %s failed", item.topic[:200])
            out = Outcome.refused(ErrorCode.INTERNAL_ERROR, f"internal error: {type(exc).__name__}")
        metrics.MESSAGES.labels(route.path).inc()
        self.taken[route.path] += 1
        accepted, rejected = len(out.readings) + len(out.history), sum(out.rejected.values())
        metrics.READINGS.labels(route.path, "received").inc(accepted + rejected)
        metrics.READINGS.labels(route.path, "accepted").inc(accepted)
        batch.counts["accepted"] += accepted
        batch.counts["rejected"] += rejected
        if out.rejected:
            metrics.READINGS.labels(route.path, "rejected").inc(sum(out.rejected.values()))
            for code, n in out.rejected.items():
                metrics.REJECTED.labels(route.path, code).inc(n)
        if out.dead_letter is not None:
            code, reason = out.dead_letter
            metrics.DEAD_LETTERED.labels(route.path, code).inc()
            batch.letters.append((item.topic, str(code), reason, item.payload, item.received_us))
        metrics.HISTORICAL.inc(out.historical)
        if out.readings and out.facility is not None:
            batch.readings.setdefault(out.facility, []).extend(out.readings)
        if out.history and out.facility is not None:
            into = batch.readings if self.history is None else batch.history
            into.setdefault(out.facility, []).extend(out.history)
        batch.births.update(out.births)
        for key in out.births:
            batch.deaths.pop(key, None)  # born again after dying in the same batch
        batch.deaths.update(out.deaths)
        batch.seqs.update(out.seqs)
        batch.rebirths.extend(out.rebirths)
        if out.park is not None:
            batch.parked.append((out.park, item.topic, item.payload, item.received_us))
        batch.replay.extend(k for k in out.replay if k not in batch.replay)

    def _commit(self, batch: _Batch) -> bool:
        """Put the readings and write the state; False (logged, counted) if it must be retried."""
        try:
            received = now_us()
            # history first: a history write that must be retried (a facility's history lock,
            # PostgreSQL away) puts nothing on the stream meanwhile; a retry after the live put
            # failed writes the history again, which PostgreSQL takes as duplicates
            if self.history is not None:
                for facility, readings in batch.history.items():
                    self.history.write_history(
                        self._principal(facility),
                        ParsedBatch(facility, readings, []),
                        received_us=received,
                    )
            for facility, readings in batch.readings.items():
                who = self._principal(facility)
                self.ingest.accept_decoded(
                    who, ParsedBatch(facility, readings, []), received_us=received
                )
            state_store.save_births(client=self.redis, births=batch.births)
            state_store.mark_dead(client=self.redis, keys=batch.deaths)
            state_store.save_progress(client=self.redis, seqs=batch.seqs)
            dropped = state_store.push_dead_letters(
                client=self.redis, letters=batch.letters, max_len=self.dead_letter_max
            )
            metrics.DEAD_LETTERS_DROPPED.inc(dropped)
            over = state_store.park(
                client=self.redis, messages=batch.parked, max_len=self.dead_letter_max
            )
            metrics.PARKED.inc(len(batch.parked) - over)
            metrics.DEAD_LETTERS_DROPPED.inc(over)
            for node, entries in batch.unparked.items():
                state_store.unpark(client=self.redis, node=node, entries=entries)
        except (PlantstreamError, redis.RedisError, OSError) as exc:
            metrics.COMMIT_RETRIES.labels(type(exc).__name__).inc()
            log.warning("MQTT batch not durable yet, retrying: %s", exc)
            return False
        return True

    def _principal(self, facility: str) -> Principal:
        who = self._principals.get(facility)
        if who is None:
            who = Principal(f"mqtt:{self.client_id}", Role.INGEST, facility)
            self._principals[facility] = who
        return who
