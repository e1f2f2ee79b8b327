"""Where the bridge sends ``is_historical`` readings: a ``HistorySink``, given by the runtime.

A Sparkplug metric flagged ``is_historical`` (an edge node's store-and-forward replay) is not
live data: it may be far older than the live time window. The host judges it by the sink's
``window`` and the bridge hands it over with ``write_history`` before acknowledging the
message, exactly as live readings go to the stream. The default, ``LiveHistory``, puts it on
the live path (the stream) with the live window: older readings are refused
``timestamp_too_old`` and counted, never silently dropped. A history writer (the
``POST /v1/readings/history`` path) plugs in as another ``HistorySink``.
"""

from __future__ import annotations

from typing import Protocol

from plantstream.ingest import IngestService
from plantstream.model import ParsedBatch, TimeWindow
from plantstream.store.keys import Principal


class HistorySink(Protocol):
    """Takes historical readings durably; the bridge acks their messages only after it."""

    @property
    def window(self) -> TimeWindow:
        """How far from the arrival time a historical reading may be."""
        ...

    def write_history(self, who: Principal, batch: ParsedBatch, *, received_us: int) -> None:
        """Make ``batch`` durable, or raise (``PlantstreamError``, ``OSError``) to be retried;
        the bridge acknowledges nothing of the batch meanwhile."""
        ...


class LiveHistory:
    """The default sink: historical readings go on the live path, in the live window."""

    def __init__(self, ingest: IngestService, window: TimeWindow) -> None:
        self.ingest = ingest
        self._window = window

    @property
    def window(self) -> TimeWindow:
        return self._window

    def write_history(self, who: Principal, batch: ParsedBatch, *, received_us: int) -> None:
        self.ingest.accept_decoded(who, batch, received_us=received_us)
