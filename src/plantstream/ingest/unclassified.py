"""The ``register`` unknown-signal policy at ingest: record each new unknown signal of a batch
as unclassified (for an admin to review) before its readings are put, or refuse them."""

from __future__ import annotations

from plantstream.errors import ErrorCode
from plantstream.model import ParsedBatch, Reject
from plantstream.model.signals import SignalCatalog, UnknownSignalPolicy
from plantstream.store.catalog import BatchCatalog, StoreCatalog
from plantstream.store.signal_defs import MAX_UNCLASSIFIED


def register_unknown(
    view: SignalCatalog, catalog: SignalCatalog, batch: ParsedBatch, indexes: list[int]
) -> tuple[ParsedBatch, list[int]]:
    """``batch`` (and the request index of each reading) once its new unknown signals are
    recorded; readings of a signal past the facility's bound of unclassified signals are
    moved to the refusals (``unknown_metric``), never dropped.

    Costs nothing but under ``register`` with a signal never seen: one PostgreSQL transaction
    for the batch's new names (then they are in the catalog and the next batch pays nothing).
    """
    if not isinstance(view, BatchCatalog) or not isinstance(catalog, StoreCatalog):
        return batch, indexes
    names = view.new_unknown()
    if not names or view.policy(batch.facility) is not UnknownSignalPolicy.REGISTER:
        return batch, indexes
    sent = {r.metric for r in batch.readings}
    new = [name for name in names if name in sent]
    refused = catalog.register_many(batch.facility, new) if new else set()
    if not refused:
        return batch, indexes
    keep = [i for i, r in enumerate(batch.readings) if r.metric not in refused]
    reason = (
        f"the facility holds {MAX_UNCLASSIFIED} unclassified signals already: declare them "
        "in its model (unknown_metric)"
    )
    rejected = batch.rejected + [
        Reject(indexes[i], ErrorCode.UNKNOWN_METRIC, reason)
        for i, r in enumerate(batch.readings)
        if r.metric in refused
    ]
    rejected.sort(key=lambda r: r.index)
    readings = [batch.readings[i] for i in keep]
    return ParsedBatch(batch.facility, readings, rejected), [indexes[i] for i in keep]


__all__ = ["register_unknown"]
