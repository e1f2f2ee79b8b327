"""A ``POST /v1/readings/history`` body as history candidates: the /v1/readings body (JSON or
MessagePack), validated against the facility's signals with no lower time bound (the
retention horizon is ``HistoryStore.screen``'s), then stored synchronously.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from psycopg_pool import ConnectionPool

from plantstream.history.chunk import Candidates, RowReject
from plantstream.history.store import HistoryStore, Written
from plantstream.ingest.codecs import CODECS
from plantstream.model import ParsedBatch, SignalCatalog, TimeWindow
from plantstream.model.values import INT_CODE, TEXT_CODES, TYPE_CODES

_ANY_AGE_US = 2**62  # no lower bound on a history reading's time here: retention decides


def history_window(max_future_us: int) -> TimeWindow:
    return TimeWindow(max_past_us=_ANY_AGE_US, max_future_us=max_future_us)


def parse_history_body(
    body: bytes,
    fmt: str,
    *,
    received_us: int,
    max_future_us: int,
    max_readings: int,
    catalog: SignalCatalog,
) -> ParsedBatch:
    """Decode and validate a body of format ``fmt`` (``json`` or ``msgpack``)."""
    # the /v1/readings codecs, with the history window; any other format reads as JSON
    codec = CODECS.get("msgpack" if fmt == "msgpack" else "json")
    return codec.decode(
        body,
        received_us=received_us,
        window=history_window(max_future_us),
        max_readings=max_readings,
        catalog=catalog,
    )


def candidates_of(batch: ParsedBatch) -> Candidates:
    """The valid readings of ``batch`` column-wise; ``row`` is each one's request index."""
    refused = {r.index for r in batch.rejected}
    total = len(batch.readings) + len(batch.rejected)
    index = np.array([i for i in range(total) if i not in refused], dtype=np.int64)
    readings = batch.readings
    devices: dict[str, int] = {}
    metrics: dict[str, int] = {}
    device = np.array([devices.setdefault(r.device, len(devices)) for r in readings], np.int32)
    metric = np.array([metrics.setdefault(r.metric, len(metrics)) for r in readings], np.int32)
    vtype = np.array([TYPE_CODES[r.value_type] for r in readings], dtype=np.uint8)
    qcode = np.array(
        [-1 if r.quality_code is None else r.quality_code for r in readings], dtype=np.int64
    )
    typed = bool(vtype.any()) or bool((qcode >= 0).any())
    value = np.array(
        [np.nan if isinstance(r.value, str) else float(r.value) for r in readings], np.float64
    )
    return Candidates(
        list(devices),
        list(metrics),
        device,
        metric,
        np.array([r.ts_us for r in readings], dtype=np.int64),
        value,
        vtype if typed else None,
        np.array(
            [
                r.value if c == INT_CODE else 0
                for r, c in zip(readings, vtype.tolist(), strict=True)
            ],
            dtype=np.int64,
        )
        if typed
        else None,
        np.array(
            [
                r.value if c in TEXT_CODES else None
                for r, c in zip(readings, vtype.tolist(), strict=True)
            ],
            dtype=object,
        )
        if typed
        else None,
        index,
        ["readings"] * len(metrics),
        [RowReject(r.index, "readings", str(r.code), r.reason) for r in batch.rejected],
        quality=np.array([r.quality for r in readings], dtype=np.int16),
        qcode=qcode if typed else None,
    )


@dataclass(frozen=True, slots=True)
class HistoryAnswer:
    """``accepted`` readings newly stored, ``duplicates`` stored before (or repeated in the
    request), ``rejected`` refused each with its request index: the three add up to the
    readings sent."""

    accepted: int
    duplicates: int
    rejected: list[RowReject]


def store_history_batch(
    pool: ConnectionPool, store: HistoryStore, batch: ParsedBatch
) -> HistoryAnswer:
    """Store ``batch``'s valid readings durably (committed in PostgreSQL) before returning.

    Raises ``PushBackError(history_busy)`` when another history write of the facility is
    under way (nothing of the batch is written).
    """
    candidates = candidates_of(batch)
    written = Written()
    if len(candidates):
        with pool.connection() as conn:
            written = store.write(conn, batch.facility, candidates, wait=False)
    rejected = sorted(candidates.rejects, key=lambda r: r.row)
    return HistoryAnswer(written.stored, written.duplicates, rejected)
