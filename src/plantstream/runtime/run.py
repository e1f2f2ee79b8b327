"""Running one role to the end: migrate, watch the embedded servers, run, drain, close."""

from __future__ import annotations

import logging

from plantstream.runtime.roles import ROLES
from plantstream.runtime.runtime import Runtime
from plantstream.runtime.signals import stop_on_signals
from plantstream.settings import Settings


def run_role(name: str, settings: Settings, *, migrate: bool = True) -> None:
    """Run role ``name`` against the configured services until SIGTERM or SIGINT."""
    spec = ROLES.get(name)
    logging.basicConfig(
        level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    runtime = Runtime(settings)
    try:
        if migrate:
            runtime.migrate()
        stop = stop_on_signals()
        runtime.watch(stop)  # a full disk stops embedded servers; bring them back when it is not
        spec.run(runtime, stop)
    finally:
        runtime.close()
