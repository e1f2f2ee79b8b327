"""Stopping a role: SIGTERM (ECS stops tasks with it) or SIGINT set one event, then drain."""

from __future__ import annotations

import logging
import signal
import threading

log = logging.getLogger("plantstream")


def stop_on_signals() -> threading.Event:
    """An event set by SIGTERM or SIGINT; the role drains and returns once it is set."""
    stop = threading.Event()

    def handler(signum: int, _frame: object) -> None:
        log.info("signal %d: draining", signum)
        stop.set()

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)
    return stop
