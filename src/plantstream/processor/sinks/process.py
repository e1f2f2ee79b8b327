"""A detached sink: a ``BatchHook`` (detection) evaluated in a child process of its own, so the
processor's thread only hands each committed batch over (issue 18 item 2).

Why: detection costs about as much CPU as the processor and both shared one GIL; a thread does
not help. The child builds its hook from a small picklable factory (no engine, connection or
client crosses the pipe), evaluates batches in commit order and acknowledges each one.
"""

from __future__ import annotations

import logging
import multiprocessing as mp
import os
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from multiprocessing.connection import Connection, wait
from multiprocessing.process import BaseProcess

import numpy as np
import psycopg

from plantstream.errors import SinkProcessError
from plantstream.processor.rows import Columns
from plantstream.processor.sinks.base import SinkBatch
from plantstream.processor.sinks.process_child import Ack, HookFactory, child_main
from plantstream.store.sensors import SensorKey

log = logging.getLogger(__name__)

# the bound on what is handed over and not yet acknowledged: a write beyond it blocks (the
# processor slows to detection's pace), so the child's inbox and the batches kept here for a
# replay hold at most this much: 16 batches of the default 500 records, or 400k readings
# (about 16 MB of columns), whichever comes first
MAX_IN_FLIGHT_BATCHES = 16
MAX_IN_FLIGHT_READINGS = 400_000
# a blocked write that sees no acknowledgement this long gives up: the child is taken for
# hung, the sink falls behind and its catch-up starts a new child (data never waits for ever)
STALL_TIMEOUT_S = 60.0
CLOSE_TIMEOUT_S = 10.0  # close: how long the child may take to drain what it was handed
_KILL_WAIT_S = 5.0


@dataclass(slots=True)
class _Handed:
    batch: SinkBatch
    seq: int
    sent: bool = False  # to the current child, in the current epoch


class ProcessSink:
    """Runs a ``BatchHook`` in a child process; implements ``PostCommitSink``.

    Guarantees: batches are evaluated in the order written; at most ``max_batches`` batches and
    ``max_readings`` readings are handed over and unacknowledged (``write`` blocks beyond: one
    batch larger than ``max_readings`` still goes, alone); a batch the child failed, and every
    one sent after it, is kept and replayed in order by ``catch_up`` before the manager's
    ``missed`` (the child evaluates nothing after a failure until then), and so are the
    unacknowledged batches of a child that died. A batch acknowledged is never sent again.

    One thread at a time (the processor's) calls ``write``, ``catch_up``, ``flush``, ``close``.
    """

    def __init__(
        self,
        factory: HookFactory,
        *,
        name: str = "detection",
        process_name: str = "ps-detect",
        log_level: str = "INFO",
        max_batches: int = MAX_IN_FLIGHT_BATCHES,
        max_readings: int = MAX_IN_FLIGHT_READINGS,
        stall_timeout: float = STALL_TIMEOUT_S,
        close_timeout: float = CLOSE_TIMEOUT_S,
    ) -> None:
        if max_batches < 1 or max_readings < 1:
            raise ValueError("a process sink needs room for at least one batch")
        self.factory = factory
        self.name = name
        self.process_name = process_name
        self.log_level = log_level
        self.max_batches = max_batches
        self.max_readings = max_readings
        self.stall_timeout = stall_timeout
        self.close_timeout = close_timeout
        # the same choice as the process layout (runtime/layout.py): a fork server, safe with
        # this process's threads and pools, children forked from it in a fraction of a second
        self._ctx = mp.get_context("forkserver")
        self._ctx.set_forkserver_preload(["plantstream.runtime.children"])  # as the layout's
        self._process: BaseProcess | None = None
        self._batches: Connection | None = None  # parent -> child
        self._acks: Connection | None = None  # child -> parent
        self._epoch = 0
        self._seq = 0
        self._pending: deque[_Handed] = deque()  # handed over, not acknowledged, in order
        self._in_flight = 0  # the leading ``_pending`` entries sent to the current child
        self._in_flight_rows = 0
        self._known_ids: set[int] = set()  # sensor ids whose keys the current child has
        self._failure: str | None = None  # why the current child stopped evaluating
        self._stalled = False
        self._dead = False  # the current child exited (or its pipe closed)
        self._closed = False
        self._ready = False  # the current child has built its hook
        self._missed: Sequence[SinkBatch] | None = None  # the manager's list, and how much
        self._missed_taken = 0  # of it is in ``_pending`` already (a catch-up that failed)
        self.waiting = False  # a write is blocked for room (backpressure), for a look in
        self.cpu_s = 0.0  # the child's CPU seconds in the hook, over acknowledged batches
        self.evaluated = 0  # batches acknowledged
        self.restarts = 0

    # -- the sink contract ------------------------------------------------------------

    def write(self, rows: Columns, keys: Mapping[int, SensorKey]) -> None:
        """Hand a batch over; blocks while the bound is full. Raises ``SinkProcessError``
        (the batch not handed over) once a batch failed or the child is gone."""
        if not len(rows):
            return
        self._raise_if_failed()
        self._pending.append(_Handed(SinkBatch(rows, keys), self._next_seq()))
        try:
            self._send_pending()
        except BaseException:
            # not handed over: the manager keeps it (as missed) and gives it to catch_up
            self._pending.pop()
            raise

    def catch_up(self, conn: psycopg.Connection, missed: Sequence[SinkBatch] | None) -> None:
        """Start a child if there is none (or it died, hung); replay what was handed over and
        not evaluated, in order, then ``missed``. None (unknown) adds nothing: the child's
        hook takes it as ``DetectionSink.catch_up`` does (state rebuilt from the store)."""
        if self._closed:
            raise SinkProcessError(f"{self.name}: closed")
        self._collect(block=0.0)
        if self._process is None or self._dead or self._stalled or not self._process.is_alive():
            self._restart()
        elif self._failure is not None:
            self._next_epoch()  # the child skips the rest of the failed epoch
        if missed is None and self._pending:
            # unknown (more missed than the manager keeps): as in this process, the readings
            # not evaluated stay unevaluated and the state is rebuilt from the store, so a
            # batch that keeps failing cannot hold detection back for good
            log.error(
                "%s: %d batches handed over and not evaluated are dropped (the manager "
                "lost count); detection goes on from the store",
                self.name,
                len(self._pending),
            )
            self._pending.clear()
            self._next_epoch()  # what the child still acknowledges of them is ignored
            self._missed, self._missed_taken = None, 0
        if missed is not None:
            start = self._missed_taken if missed is self._missed else 0
            for batch in missed[start:]:
                if len(batch.rows):
                    self._pending.append(_Handed(batch, self._next_seq()))
            self._missed, self._missed_taken = missed, len(missed)
        self._send_pending()
        # done only once all of it is evaluated: a batch that keeps failing makes every
        # catch-up raise, so the manager's backoff grows as for a sink in this process
        self._wait_until(lambda: not self._pending)
        self._missed, self._missed_taken = None, 0  # the manager starts afresh once we return

    # -- beyond the contract: check, flush and close ------------------------------------

    def check(self) -> None:
        """Raise ``SinkProcessError`` if a batch failed or the child died since the last
        write (the manager asks on every step: an idle processor learns it too)."""
        if self._process is not None:  # before the first catch-up there is nothing to check
            self._raise_if_failed()

    def flush(self, timeout: float) -> bool:
        """Wait until everything handed over is acknowledged: True; False on ``timeout``;
        ``SinkProcessError`` if a batch failed or the child died (``catch_up`` replays)."""
        deadline = time.monotonic() + timeout
        while True:
            self._raise_if_failed()
            if not self._pending:
                return True
            if self._in_flight < len(self._pending):
                raise SinkProcessError(f"{self.name}: batches wait for a catch-up")
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            self._collect(block=left)

    def close(self, timeout: float | None = None) -> None:
        """Stop the child: it drains what it was handed (within ``timeout``, by default
        ``close_timeout``), then it is terminated. Idempotent."""
        self._closed = True
        process, self._process = self._process, None
        if process is None:
            return
        timeout = self.close_timeout if timeout is None else timeout
        if self._batches is not None:
            self._batches.close()  # end of input: the child evaluates its inbox and exits
            self._batches = None
        deadline = time.monotonic() + timeout
        while process.is_alive() and time.monotonic() < deadline and not self._dead:
            self._collect(block=deadline - time.monotonic(), sentinel=process.sentinel)
        _stop(process, timeout=max(0.0, deadline - time.monotonic()))
        self._collect(block=0.0)
        if self._acks is not None:
            self._acks.close()
            self._acks = None
        if self._pending:
            log.warning(
                "sink %s closed with %d batch(es) not evaluated (%s)",
                self.name,
                len(self._pending),
                self._failure or "the child did not finish in time",
            )

    @property
    def pid(self) -> int | None:
        """The child's pid (None before the first catch-up and after close)."""
        return self._process.pid if self._process is not None else None

    @property
    def in_flight(self) -> tuple[int, int]:
        """(batches, readings) sent to the child and not acknowledged."""
        return self._in_flight, self._in_flight_rows

    # -- the parent's side ------------------------------------------------------------

    def _next_seq(self) -> int:
        self._seq += 1
        return self._seq

    def _next_epoch(self) -> None:
        self._epoch += 1
        self._failure, self._stalled = None, False
        for handed in self._pending:
            handed.sent = False
        self._in_flight = self._in_flight_rows = 0

    def _restart(self) -> None:
        old = self._process
        if old is not None:
            self.restarts += 1
            log.warning(
                "sink %s: starting a new child (%s)",
                self.name,
                self._failure or ("hung" if self._stalled else f"exit code {old.exitcode}"),
            )
        self._drop_child()
        self._next_epoch()
        self._known_ids.clear()
        self._dead = False
        batches_in, batches_out = self._ctx.Pipe(duplex=False)
        acks_in, acks_out = self._ctx.Pipe(duplex=False)
        process = self._ctx.Process(
            target=child_main,
            kwargs={
                "factory": self.factory,
                "batches": batches_in,
                "acks": acks_out,
                "name": self.process_name,
                "parent": os.getpid(),
                "log_level": self.log_level,
            },
            name=self.process_name,
            daemon=True,  # multiprocessing terminates it at this interpreter's exit, too
        )
        process.start()
        batches_in.close()  # the child's ends: its death shows here as EOF
        acks_out.close()
        self._process, self._batches, self._acks = process, batches_out, acks_in
        self._ready = False
        # a child that cannot build its hook (no database) fails this catch-up, so the
        # manager retries with a growing backoff rather than start a child per batch
        self._wait_until(lambda: self._ready)

    def _drop_child(self) -> None:
        process, self._process = self._process, None
        for end in (self._batches, self._acks):
            if end is not None:
                end.close()
        self._batches = self._acks = None
        if process is not None:
            _stop(process, timeout=0.0)

    def _raise_if_failed(self) -> None:
        if self._closed:
            raise SinkProcessError(f"{self.name}: closed")
        self._collect(block=0.0)
        if self._failure is not None:
            raise SinkProcessError(f"{self.name}: {self._failure}")
        if self._stalled:
            raise SinkProcessError(f"{self.name}: no acknowledgement for {self.stall_timeout}s")
        if self._process is None:
            raise SinkProcessError(f"{self.name}: no child (closed, or not caught up yet)")

    def _send_pending(self) -> None:
        """Send every pending batch not sent to this child yet, in order, each once there is
        room; raise if the child fails or dies meanwhile."""
        while self._in_flight < len(self._pending):
            # the first one not sent; acknowledgements taken while waiting pop from the left
            handed = self._pending[self._in_flight]
            rows = len(handed.batch.rows)
            self._wait_for_room(rows)
            self._send(handed)
            handed.sent = True
            self._in_flight += 1
            self._in_flight_rows += rows

    def _wait_for_room(self, rows: int) -> None:
        def room() -> bool:
            return self._in_flight == 0 or (
                self._in_flight < self.max_batches
                and self._in_flight_rows + rows <= self.max_readings
            )

        self._raise_if_failed()
        if room():
            return
        self.waiting = True
        try:
            self._wait_until(room)
        finally:
            self.waiting = False

    def _wait_until(self, condition: Callable[[], bool]) -> None:
        """Take acknowledgements until ``condition``; raise if the child fails or dies, or
        (taken for hung) sends nothing for ``stall_timeout`` s."""
        last = time.monotonic()
        while True:
            self._raise_if_failed()
            if condition():
                return
            before = (self.evaluated, self._ready)
            self._collect(block=max(0.0, last + self.stall_timeout - time.monotonic()))
            if (self.evaluated, self._ready) != before:
                last = time.monotonic()
            elif time.monotonic() - last >= self.stall_timeout:
                self._stalled = True

    def _send(self, handed: _Handed) -> None:
        rows = handed.batch.rows
        ids = np.unique(rows.sensor_id).tolist()
        new = [i for i in ids if i not in self._known_ids]
        new_keys = {i: handed.batch.keys[i] for i in new}
        # text readings never reach this sink (it declares no ``typed_values``): its object
        # column is left behind, the numeric ones pickle as raw buffers
        message = (self._epoch, handed.seq, replace(rows, text=None), new_keys)
        if self._batches is None:
            raise SinkProcessError(f"{self.name}: no child (closed)")
        try:
            self._batches.send(message)
        except OSError as exc:  # the child is gone (EPIPE)
            self._gone(f"the child is gone ({type(exc).__name__}: {exc})")
            raise SinkProcessError(f"{self.name}: {self._failure}") from exc
        self._known_ids.update(new)

    def _collect(self, *, block: float, sentinel: int | None = None) -> None:
        """Take the acknowledgements that arrived (waiting up to ``block`` s for one, or
        for the child's end); note a failure or the child's death."""
        if self._acks is None:
            return
        process = self._process
        watch: list[Connection | int] = [self._acks]
        if sentinel is None and process is not None:
            sentinel = process.sentinel
        if sentinel is not None:
            watch.append(sentinel)
        ready = wait(watch, timeout=max(0.0, block))
        while self._acks is not None and self._acks.poll():
            try:
                ack: Ack = self._acks.recv()
            except (EOFError, OSError):  # its end closed: the child exited or is exiting
                self._gone("the child closed its pipe")
                break
            self._take(ack)
        if process is not None and sentinel in ready and not process.is_alive():
            self._gone(f"the child exited with code {process.exitcode}")

    def _gone(self, why: str) -> None:
        self._dead = True
        if self._failure is None:
            self._failure = why

    def _take(self, ack: Ack) -> None:
        if ack.seq <= 0:  # the child's first word: its hook is built (0) or could not be
            if ack.error is None:
                self._ready = True
            else:  # and it exits: the next catch-up starts another
                self._gone(f"could not start: {ack.error}")
            return
        if ack.epoch != self._epoch or self._failure is not None:
            return  # an earlier epoch's, or after a failure: replayed anyway
        if ack.error is not None:
            self._failure = f"batch failed in the child: {ack.error}"
            return
        head = self._pending[0] if self._pending else None
        if head is None or head.seq != ack.seq or not head.sent:  # pragma: no cover - a bug
            self._failure = f"acknowledgement out of order ({ack.seq})"
            return
        self._pending.popleft()
        self._in_flight -= 1
        self._in_flight_rows -= len(head.batch.rows)
        self.evaluated += 1
        self.cpu_s += ack.cpu_s


def _stop(process: BaseProcess, *, timeout: float) -> None:
    process.join(timeout)
    if process.is_alive():
        process.terminate()
        process.join(_KILL_WAIT_S)
    if process.is_alive():  # pragma: no cover - SIGTERM ignored
        process.kill()
        process.join(_KILL_WAIT_S)
