"""The post-commit sink contract: what runs after a batch is safely in PostgreSQL (Redis
latest values, detection, ...). Adding a sink is one module plus ``processor.register(sink)``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

import psycopg

from plantstream.processor.rows import Columns
from plantstream.store.sensors import SensorKey


@dataclass(frozen=True, slots=True)
class SinkBatch:
    """The readings one commit stored, sorted by (sensor, time), and their sensors' keys."""

    rows: Columns
    keys: Mapping[int, SensorKey]


class PostCommitSink(Protocol):
    """Receives every committed batch, in commit order per shard, at least once.

    The store commit is the truth; a sink is a view of it. So a sink must be idempotent (a
    replay after a crash hands it batches again) and may raise: the processor logs the
    failure, keeps committing, and calls ``catch_up`` with backoff until it succeeds. Data
    never waits for a sink.
    """

    name: str  # short and unique per processor: log lines and the metrics' ``kind`` label

    def write(self, rows: Columns, keys: Mapping[int, SensorKey]) -> None:
        """Apply one committed batch (``keys`` maps a sensor id to facility, device, metric)."""

    def catch_up(self, conn: psycopg.Connection, missed: Sequence[SinkBatch] | None) -> None:
        """Make up for what this sink did not take, then ``write`` resumes.

        ``missed`` are the batches committed since the sink fell behind, in commit order;
        None means unknown (at start-up, or more than the processor keeps for it): bring the
        sink up to date from the store through ``conn``, or accept the gap if it cannot.
        """
