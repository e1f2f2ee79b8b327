"""The transactional store commit: one PostgreSQL transaction per batch holding its raw rows,
rollups, dead letters, counters and the shard's checkpoint (the exactly-once half).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import numpy as np
import psycopg

from plantstream.model import from_epoch_us
from plantstream.processor.rollups import state_deltas
from plantstream.processor.rows import Columns, RowBatch
from plantstream.processor.writer import CopyReady, copy_ready, rollups_of
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
       stored + duplicate), so the books balance in every committed state. ``conflict``
       counts the duplicates whose value differed from the stored one (each is kept in
       ``reading_conflicts``); it is part of ``duplicate``, not beside it.

    ``ready`` is ``copy_ready(batch.rows)`` when the caller made it already (the processor
    does, on its prefetch thread).
    """
    counters = Counter(batch.counters)
    ready = ready if ready is not None else copy_ready(batch.rows)
    with conn.transaction(), conn.cursor() as cur:
        claim_checkpoint(conn, claim)
        conflicts: Counter[str] = Counter()
        stored = (
            _store_readings(cur, ready, batch, conflicts) if len(ready.unique) else ready.unique
        )
        if ready.conflicts is not None and len(ready.conflicts):
            batches.insert_conflicts(cur, _conflict_rows(ready.conflicts))
            conflicts.update(batch.facilities[f] for f in ready.conflicts.facility.tolist())
        for facility, n in conflicts.items():
            counters[(facility, "conflict")] += n
        if len(stored):
            # the prepared rollups hold when every row was new, the usual case
            if stored is ready.unique:  # the prepared rollups hold
                batches.merge_rollups(cur, ready.rollups, ready.states)
            else:
                batches.merge_rollups(cur, rollups_of(stored), state_deltas(stored))
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


def _store_readings(
    cur: psycopg.Cursor, ready: CopyReady, batch: RowBatch, conflicts: Counter[str]
) -> Columns:
    """Insert sorted, in-batch-unique rows; return those that were new (and count, per
    facility, those stored before with another value)."""
    parts = ready.parts or (ready.readings,)
    if batches.copy_new_readings(cur, parts):
        return ready.unique
    new, conflicting = batches.insert_missing_readings(cur, parts)
    rows = ready.unique
    if conflicting:
        facility_of = dict(zip(rows.sensor_id.tolist(), rows.facility.tolist(), strict=True))
        conflicts.update(batch.facilities[facility_of[s]] for s in conflicting)
    keep = np.fromiter(
        ((s, t) in new for s, t in zip(rows.sensor_id.tolist(), rows.ts_us.tolist(), strict=True)),
        dtype=bool,
        count=len(rows),
    )
    return rows.take(keep)


def _conflict_rows(
    rows: Columns,
) -> list[tuple[int, object, float | None, int | None, str | None, int, int | None]]:
    values = rows.values()
    return [
        (
            sensor,
            from_epoch_us(ts),
            None if isinstance(v, str) else float(v),
            v if isinstance(v, int) and not isinstance(v, bool) else None,
            v if isinstance(v, str) else None,
            quality,
            code,
        )
        for sensor, ts, v, quality, code in zip(
            rows.sensor_id.tolist(),
            rows.ts_us.tolist(),
            values,
            rows.quality.tolist(),
            rows.quality_codes(),
            strict=True,
        )
    ]
