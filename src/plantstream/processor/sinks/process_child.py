"""The child side of ``ProcessSink`` (``process.py``): build the hook from its factory,
then evaluate the batches in order and acknowledge each one; nothing after a failed batch.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Protocol

from plantstream.local.process import become
from plantstream.processor.rows import Columns
from plantstream.processor.sinks.detection import BatchHook
from plantstream.store.sensors import SensorKey


class HookFactory(Protocol):
    """Builds the hook inside the child; must pickle small (settings, never clients)."""

    def __call__(self) -> BatchHook: ...


@dataclass(frozen=True, slots=True)
class Ack:
    """The child's word on one batch of an epoch, or on its start (``seq`` 0 or -1)."""

    epoch: int
    seq: int  # 0: the child built its hook; -1: it could not
    error: str | None  # "TypeName: message"
    cpu_s: float


def child_main(
    *,
    factory: HookFactory,
    batches: Connection,
    acks: Connection,
    name: str,
    parent: int,
    log_level: str,
) -> None:
    """The child: name itself, die with its parent, build the hook, evaluate in order."""
    become(name, parent, log_level)
    inbox: queue.Queue[tuple[int, int, Columns, dict[int, SensorKey]] | None] = queue.Queue()
    # a reader thread takes batches off the pipe while the hook works, so the parent's send
    # never waits for an evaluation; the inbox holds at most what the parent's bound allows
    threading.Thread(target=_read, args=(batches, inbox), name="inbox", daemon=True).start()
    try:
        hook = factory()
    except Exception as exc:
        logging.getLogger(__name__).exception("the hook could not be built")
        with contextlib.suppress(OSError):
            acks.send(Ack(-1, -1, _described(exc), 0.0))
        return
    try:
        acks.send(Ack(-1, 0, None, 0.0))  # ready
        _evaluate(hook, inbox, acks)
    except OSError as exc:  # the acknowledgements' pipe broke: the parent is gone
        logging.getLogger(__name__).info("the processor is gone (%s): stopping", exc)
    finally:
        close: Callable[[], None] | None = getattr(hook, "close", None)
        if close is not None:
            close()


def _evaluate(
    hook: BatchHook,
    inbox: queue.Queue[tuple[int, int, Columns, dict[int, SensorKey]] | None],
    acks: Connection,
) -> None:
    # id -> key, growing like the processor's own map (ids never change; sensors are bounded
    # by the per-facility quota): each key crosses the pipe once per child
    keys: dict[int, SensorKey] = {}
    failed_epoch = -1
    while (message := inbox.get()) is not None:
        epoch, seq, rows, new_keys = message
        keys.update(new_keys)
        if epoch <= failed_epoch:
            continue  # after a failure: the parent replays these in a new epoch
        started = time.thread_time()
        error = None
        try:
            hook(rows, keys)
        except Exception as exc:  # reported; the parent's catch-up replays from here
            logging.getLogger(__name__).warning(
                "batch %d failed: %s: %s", seq, type(exc).__name__, exc, exc_info=True
            )
            error = _described(exc)
            failed_epoch = epoch
        acks.send(Ack(epoch, seq, error, time.thread_time() - started))


def _read(
    batches: Connection, inbox: queue.Queue[tuple[int, int, Columns, dict[int, SensorKey]] | None]
) -> None:
    try:
        while True:
            inbox.put(batches.recv())
    except (EOFError, OSError):  # the parent closed its end (close) or is gone
        inbox.put(None)


# what an error about a connection may echo and the parent logs: a URL's user and password
# (everything between "://" and "@") and a libpq connection string's password value
_CREDENTIALS = re.compile(r"(://)[^@/\s]*@|(password\s*=\s*)\S+", re.IGNORECASE)


def _described(exc: BaseException) -> str:
    """The exception as the parent reports it: type and message, credentials blanked, at
    most 500 characters."""
    return _CREDENTIALS.sub(_blank, f"{type(exc).__name__}: {exc}")[:500]


def _blank(match: re.Match[str]) -> str:
    return f"{match.group(1)}***@" if match.group(1) else f"{match.group(2)}***"
