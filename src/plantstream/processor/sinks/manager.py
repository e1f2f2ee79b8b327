"""The sinks registered on a processor: each batch to every sink after its commit; a sink that
failed falls behind, is retried with backoff through ``catch_up``, and never stops the data.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import psycopg

from plantstream.model.values import TEXT_LUT
from plantstream.processor import metrics
from plantstream.processor.rows import Columns
from plantstream.processor.sinks.base import PostCommitSink, SinkBatch
from plantstream.store.sensors import SensorKey

log = logging.getLogger(__name__)
FIRST_RETRY_S = 0.1
MAX_RETRY_S = 5.0
# a catch-up from the store (a scan of every sensor) is retried less eagerly
MAX_REBUILD_RETRY_S = 60.0
# readings kept per sink while it is behind; beyond, it catches up from the store
MAX_MISSED_ROWS = 1_000_000


@dataclass(slots=True)
class _State:
    sink: PostCommitSink
    behind: bool = True  # every sink catches up once at start
    missed: list[SinkBatch] | None = None  # None: unknown, catch up from the store
    missed_rows: int = 0
    failures: int = 0  # since it was last up to date
    delay: float = FIRST_RETRY_S
    retry_at: float = 0.0


def numeric_rows(rows: Columns) -> Columns:
    """``rows`` without its text (string, state) readings."""
    if rows.vtype is None:
        return rows
    text = TEXT_LUT[rows.vtype]
    return rows.take(~text) if text.any() else rows


class SinkManager:
    """Post-commit sinks in registration order (quix-streams' ``SinkManager``)."""

    def __init__(
        self, *, max_missed_rows: int = MAX_MISSED_ROWS, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.max_missed_rows = max_missed_rows
        self._clock = clock
        self._states: list[_State] = []

    def register(self, sink: PostCommitSink) -> None:
        """Add a sink; it catches up (``missed=None``) before its first batch."""
        if any(state.sink.name == sink.name for state in self._states):
            raise ValueError(f"a sink named {sink.name!r} is registered already")
        self._states.append(_State(sink))
        metrics.SINK_BEHIND.labels(sink.name).set(1)

    @property
    def sinks(self) -> list[PostCommitSink]:
        return [state.sink for state in self._states]

    def behind(self) -> list[str]:
        """Names of the sinks waiting to catch up."""
        return [state.sink.name for state in self._states if state.behind]

    def committed(self, rows: Columns, keys: Mapping[int, SensorKey]) -> None:
        """Hand a committed batch to every sink that is up to date; remember it for the rest.

        A sink that does not declare ``typed_values = True`` (detection) gets the numeric
        readings only (double, int64, bool as 0/1): strings and states never reach it.
        """
        if not len(rows):
            return
        numeric = numeric_rows(rows)
        for state in self._states:
            if not getattr(state.sink, "typed_values", False):
                if not len(numeric):
                    continue
                self._hand(state, numeric, keys)
                continue
            self._hand(state, rows, keys)

    def _hand(self, state: _State, rows: Columns, keys: Mapping[int, SensorKey]) -> None:
        if state.behind:
            self._remember(state, SinkBatch(rows, keys))
            return
        try:
            state.sink.write(rows, keys)
        except Exception as exc:  # any sink fault: the data is committed, keep going
            self._fell_behind(state, exc, first=True)
            self._remember(state, SinkBatch(rows, keys))

    def catch_up(self, conn: psycopg.Connection) -> None:
        """Let every sink that is behind, and whose backoff has run out, catch up."""
        now = self._clock()
        for state in self._states:
            if not state.behind:
                self._check(state)
            if not state.behind or now < state.retry_at:
                continue
            try:
                state.sink.catch_up(conn, state.missed)
            except Exception as exc:  # the store failing too surfaces again at the commit
                self._fell_behind(state, exc, first=False)
                continue
            if state.failures:
                log.info("sink %s caught up", state.sink.name)
            state.behind, state.missed, state.missed_rows = False, None, 0
            state.failures, state.delay, state.retry_at = 0, FIRST_RETRY_S, 0.0
            metrics.SINK_BEHIND.labels(state.sink.name).set(0)

    def _check(self, state: _State) -> None:
        """A sink that works on its own (a process sink) may fail between two writes, after
        the last batch of a burst: its ``check`` raises then, and it falls behind at once."""
        check = getattr(state.sink, "check", None)
        if check is None:
            return
        try:
            check()
        except Exception as exc:
            self._fell_behind(state, exc, first=True)

    def flush(self, timeout: float) -> bool:
        """Wait until every sink that works on its own (a process sink) has evaluated what
        it was handed: True; False if ``timeout`` s ran out first. Sinks that apply a batch
        inside ``write`` are done already; one that is behind raises what it failed on."""
        deadline = self._clock() + timeout
        for state in self._states:
            flush = getattr(state.sink, "flush", None)
            if flush is not None and not flush(max(0.0, deadline - self._clock())):
                return False
        return True

    def close(self) -> None:
        """Close every sink that has a ``close`` (a process sink stops its child); idempotent."""
        for state in reversed(self._states):
            close = getattr(state.sink, "close", None)
            if close is None:
                continue
            try:
                close()
            except Exception:  # closing the others matters more
                log.exception("closing sink %s failed", state.sink.name)

    def _remember(self, state: _State, batch: SinkBatch) -> None:
        if state.missed is None:
            return  # the catch-up asks the store, which holds this batch too
        state.missed.append(batch)
        state.missed_rows += len(batch.rows)
        if state.missed_rows > self.max_missed_rows:
            log.error(
                "sink %s missed more than %d readings; it will catch up from the store",
                state.sink.name,
                self.max_missed_rows,
            )
            state.missed, state.missed_rows = None, 0

    def _fell_behind(self, state: _State, exc: Exception, *, first: bool) -> None:
        name = state.sink.name
        metrics.ERRORS.labels(name).inc()
        metrics.SINK_BEHIND.labels(name).set(1)
        if first:
            state.behind, state.missed, state.missed_rows = True, [], 0
        state.failures += 1
        # the first failure with its traceback (a sink bug shows where); retries in one line
        log.warning(
            "sink %s failed (%s: %s); committing goes on, catching up in %.1fs",
            name,
            type(exc).__name__,
            exc,
            state.delay,
            exc_info=state.failures == 1,
        )
        state.retry_at = self._clock() + state.delay
        ceiling = MAX_RETRY_S if state.missed is not None else MAX_REBUILD_RETRY_S
        state.delay = min(state.delay * 2, ceiling)
