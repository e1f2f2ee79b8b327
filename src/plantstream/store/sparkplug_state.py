"""Sparkplug B birth state and MQTT dead letters in Redis: what any bridge reads after a restart.

One hash per edge node and per device (its birth: aliases, metric definitions with their
properties, bdSeq, last seq, online or stale since when), a set per facility to list them,
and one bounded list of dead letters (a refused message with its topic). Every key is spelled
here and nowhere else; every write is a few keys, never growing with a plant's size.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, cast

import redis

_PREFIX = "sparkplug:"
DEAD_LETTERS_KEY = "mqtt:dead_letters"


def _members(client: redis.Redis, key: str) -> list[str]:
    return [m.decode() for m in cast("set[bytes]", client.smembers(key))]


def node_key(group: str, edge_node: str, device: str | None = None) -> str:
    """The hash of an edge node (``device`` None) or of one of its devices."""
    base = f"{_PREFIX}node:{group}/{edge_node}"
    return base if device is None else f"{base}/{device}"


def _facility_key(facility: str) -> str:
    return f"{_PREFIX}facility:{facility}"


@dataclass(slots=True)
class BirthState:
    """A node's or device's birth as a host keeps it.

    ``aliases`` maps an alias to its metric name; ``metrics`` maps a name to its definition
    (``datatype`` and the scalar ``properties`` of the birth certificate: engineering units,
    ranges, ...). ``online`` is False from its death (or its node's) on: its signals are stale.
    """

    facility: str
    machine: str
    bdseq: int
    seq: int
    online: bool
    birth_ms: int
    death_ms: int = 0
    aliases: dict[int, str] = field(default_factory=dict)
    metrics: dict[str, dict[str, Any]] = field(default_factory=dict)

    def to_fields(self) -> dict[str, str]:
        return {
            "facility": self.facility,
            "machine": self.machine,
            "bdseq": str(self.bdseq),
            "seq": str(self.seq),
            "online": "1" if self.online else "0",
            "birth_ms": str(self.birth_ms),
            "death_ms": str(self.death_ms),
            "aliases": json.dumps({str(k): v for k, v in self.aliases.items()}),
            "metrics": json.dumps(self.metrics, sort_keys=True),
        }

    @classmethod
    def from_fields(cls, raw: Mapping[bytes, bytes]) -> BirthState:
        f = {k.decode(): v.decode() for k, v in raw.items()}
        return cls(
            facility=f["facility"],
            machine=f["machine"],
            bdseq=int(f["bdseq"]),
            seq=int(f["seq"]),
            online=f["online"] == "1",
            birth_ms=int(f["birth_ms"]),
            death_ms=int(f.get("death_ms", "0")),
            aliases={int(k): v for k, v in json.loads(f["aliases"]).items()},
            metrics=json.loads(f["metrics"]),
        )


def save_births(*, client: redis.Redis, births: Mapping[str, BirthState]) -> None:
    """Write each ``node_key -> state`` whole, and list it under its facility (one pipeline)."""
    if not births:
        return
    pipe = client.pipeline(transaction=False)
    for key, state in births.items():
        pipe.hset(key, mapping=state.to_fields())  # type: ignore[arg-type]
        pipe.sadd(_facility_key(state.facility), key)
    pipe.execute()


def save_progress(*, client: redis.Redis, seqs: Mapping[str, int]) -> None:
    """Record the last seq taken of each node (``node_key -> seq``)."""
    if not seqs:
        return
    pipe = client.pipeline(transaction=False)
    for key, seq in seqs.items():
        pipe.hset(key, "seq", str(seq))
    pipe.execute()


def mark_dead(*, client: redis.Redis, keys: Mapping[str, int]) -> None:
    """Mark each ``node_key`` stale from ``death_ms`` on (its birth kept, for the catalog)."""
    if not keys:
        return
    pipe = client.pipeline(transaction=False)
    for key, death_ms in keys.items():
        pipe.hset(key, mapping={"online": "0", "death_ms": str(death_ms)})
    pipe.execute()


def load_birth(*, client: redis.Redis, key: str) -> BirthState | None:
    """The birth stored under ``key``, or None if there is none (or it is unreadable)."""
    raw = cast("dict[bytes, bytes]", client.hgetall(key))
    if not raw:
        return None
    try:
        return BirthState.from_fields(raw)
    except (KeyError, ValueError):
        return None


def facility_nodes(
    *, client: redis.Redis, facility: str, limit: int = 1000
) -> list[dict[str, Any]]:
    """The nodes and devices of ``facility`` (at most ``limit``), each with its online state,
    its machine and its signals (names, datatypes and properties), for the API."""
    keys = sorted(_members(client, _facility_key(facility)))[:limit]
    out: list[dict[str, Any]] = []
    for key in keys:
        state = load_birth(client=client, key=key)
        if state is None or state.facility != facility:
            continue
        out.append(
            {
                "node": key.removeprefix(f"{_PREFIX}node:"),
                "machine": state.machine,
                "online": state.online,
                "stale": not state.online,
                "birth_ms": state.birth_ms,
                "death_ms": state.death_ms or None,
                "bdseq": state.bdseq,
                "signals": state.metrics,
            }
        )
    return out


def stale_count(*, client: redis.Redis, facilities: list[str]) -> int:
    """How many nodes and devices of ``facilities`` are stale now."""
    return sum(
        1 for f in facilities for n in facility_nodes(client=client, facility=f) if n["stale"]
    )


def push_dead_letters(
    *, client: redis.Redis, letters: list[tuple[str, str, str, bytes, int]], max_len: int
) -> int:
    """Keep refused messages ``(topic, code, reason, payload, received_us)``, newest first, in a
    list of at most ``max_len``; returns how many older letters that pushed out (count them)."""
    if not letters:
        return 0
    pipe = client.pipeline(transaction=False)
    for topic, code, reason, payload, received_us in letters:
        entry = {
            "topic": topic,
            "code": code,
            "reason": reason[:500],
            "payload_b64": base64.b64encode(payload[:65536]).decode(),
            "payload_bytes": len(payload),
            "received_us": received_us,
        }
        pipe.lpush(DEAD_LETTERS_KEY, json.dumps(entry))
    pipe.llen(DEAD_LETTERS_KEY)
    pipe.ltrim(DEAD_LETTERS_KEY, 0, max_len - 1)
    results = pipe.execute()
    length = int(results[len(letters)])
    return max(0, length - max_len)


def dead_letters(*, client: redis.Redis, limit: int = 100) -> list[dict[str, Any]]:
    """The newest ``limit`` dead letters (topic, code, reason, base64 payload, received_us)."""
    return [json.loads(raw) for raw in client.lrange(DEAD_LETTERS_KEY, 0, limit - 1)]


def device_keys(*, client: redis.Redis, facility: str, node: str) -> list[str]:
    """The devices of edge node ``node`` (its ``node_key``) that ``facility`` lists."""
    prefix = node + "/"
    return [k for k in _members(client, _facility_key(facility)) if k.startswith(prefix)]


class RedisBirthStore:
    """The ``BirthStore`` of the Sparkplug host on Redis."""

    def __init__(self, client: redis.Redis) -> None:
        self.client = client

    def load(self, key: str) -> BirthState | None:
        return load_birth(client=self.client, key=key)

    def devices(self, facility: str, node: str) -> list[str]:
        return device_keys(client=self.client, facility=facility, node=node)


def _parked_key(node: str) -> str:
    return f"{_PREFIX}parked:{node.removeprefix(_PREFIX + 'node:')}"


def park(*, client: redis.Redis, messages: list[tuple[str, str, bytes, int]], max_len: int) -> int:
    """Keep ``(node_key, topic, payload, received_us)`` messages that wait for their node's
    birth, at most ``max_len`` per node (oldest first); returns how many did not fit."""
    if not messages:
        return 0
    pipe = client.pipeline(transaction=False)
    for node, topic, payload, received_us in messages:
        entry = {
            "topic": topic,
            "payload_b64": base64.b64encode(payload).decode(),
            "received_us": received_us,
        }
        pipe.rpush(_parked_key(node), json.dumps(entry))
    lengths = pipe.execute()
    over = sum(1 for n in lengths if int(n) > max_len)
    if over:
        pipe = client.pipeline(transaction=False)
        for node in {m[0] for m in messages}:
            pipe.ltrim(_parked_key(node), 0, max_len - 1)
        pipe.execute()
    return over


def parked(*, client: redis.Redis, node: str) -> list[tuple[str, bytes, int, bytes]]:
    """The messages parked for ``node``: (topic, payload, received_us, entry), oldest first;
    ``entry`` is the stored item, for ``unpark``."""
    raw = cast("list[bytes]", client.lrange(_parked_key(node), 0, -1))
    out = []
    for item in raw:
        entry = json.loads(item)
        out.append(
            (entry["topic"], base64.b64decode(entry["payload_b64"]), entry["received_us"], item)
        )
    return out


def unpark(*, client: redis.Redis, node: str, entries: list[bytes]) -> None:
    """Remove ``entries`` (taken now) from ``node``'s parked messages, one occurrence each.

    Only those: a message parked meanwhile (by this bridge or another sharing the load) stays,
    and two bridges replaying the same list at once remove each entry once.
    """
    if not entries:
        return
    pipe = client.pipeline(transaction=True)
    for item in entries:
        pipe.lrem(_parked_key(node), 1, item)  # type: ignore[arg-type]  # redis takes bytes too
    pipe.execute()
