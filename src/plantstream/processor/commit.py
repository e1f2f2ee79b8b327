"""The transactional store commit: one PostgreSQL transaction per batch holding its raw rows,
rollups, dead letters, counters and the shard's checkpoint (the exactly-once half).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import numpy as np
import psycopg

from plantstream.processor.rows import Columns, RowBatch
from plantstream.processor.writer import CopyReady, copy_ready, rollup_buffer
from plantstream.store import batches
from plantstream.store.leases import CheckpointClaim, claim_checkpoint


@dataclass(frozen=True, slots=True)
class Committed:
    """What a commit stored: the new rows sorted by (sensor, time) and the counters added
    (the batch's own plus ``stored`` and ``duplicate`` per facility)."""

    stored: Columns
    counters: Counter[tuple[str, str]]


def commit_batch(
    conn: psycopg.Connection,
    batch: RowBatch,
    claim: CheckpointClaim,
    ready: CopyReady | None = None,
) -> Committed:
    """Write ``batch`` and move the shard's checkpoint as ``claim`` says, atomically.

    The order inside the transaction is the guarantee:

    1. the fenced checkpoint update, first, so it holds the lease row's lock for the whole
       transaction (raises ``LeaseLostError`` and writes nothing once the lease moved);
    2. the readings: one binary COPY, or, when some were stored before (a producer retry or
       a replay), staged and inserted with ``ON CONFLICT DO NOTHING``;
    3. the rollups of exactly the rows newly stored, so each reading is counted once;
    4. the dead letters, then the counters (received = accepted + rejected, accepted =
       stored + duplicate), so the books balance in every committed state.

    ``ready`` is ``copy_ready(batch.rows)`` when the caller made it already (the processor
    does, on its prefetch thread).
    """
    counters = Counter(batch.counters)
    ready = ready if ready is not None else copy_ready(batch.rows)
    with conn.transaction(), conn.cursor() as cur:
        claim_checkpoint(conn, claim)
        stored = _store_readings(cur, ready) if len(ready.unique) else ready.unique
        if len(stored):
            # the prepared rollups hold when every row was new, the usual case
            batches.merge_rollups(
                cur, ready.rollups if stored is ready.unique else rollup_buffer(stored)
            )
        if batch.dead_letters:
            batches.insert_dead_letters(
                cur,
                stream=claim.stream,
                letters=(
                    (d.shard_id, d.sequence, d.facility, d.reason_code, d.reason, d.payload)
                    for d in batch.dead_letters
                ),
            )
        accepted = batch.count_by_facility(batch.rows.facility)
        kept = batch.count_by_facility(stored.facility)
        for facility, n in accepted.items():
            if kept.get(facility):
                counters[(facility, "stored")] += kept[facility]
            if n - kept.get(facility, 0):
                counters[(facility, "duplicate")] += n - kept.get(facility, 0)
        batches.add_counters(cur, counters)
    return Committed(stored, counters)


def _store_readings(cur: psycopg.Cursor, ready: CopyReady) -> Columns:
    """Insert sorted, in-batch-unique rows; return those that were new."""
    if batches.copy_new_readings(cur, ready.readings):
        return ready.unique
    new = batches.insert_missing_readings(cur, ready.readings)
    rows = ready.unique
    keep = np.fromiter(
        ((s, t) in new for s, t in zip(rows.sensor_id.tolist(), rows.ts_us.tolist(), strict=True)),
        dtype=bool,
        count=len(rows),
    )
    return rows.take(keep)
