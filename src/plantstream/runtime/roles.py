"""The roles ``plantstream serve ROLE`` runs, registered by name in one registry.

Adding a role (``mqtt``, ``edge``) is one module with a ``run(runtime, stop)`` function and one
``ROLES.register(...)`` line at the bottom of this file.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

from plantstream.errors import ConfigError
from plantstream.mqtt import run as run_mqtt
from plantstream.runtime.layout import layout_of, serve_layout
from plantstream.runtime.runtime import Runtime
from plantstream.runtime.web import serve_web

RunRole = Callable[[Runtime, threading.Event], None]


@dataclass(frozen=True, slots=True)
class RoleSpec:
    """A role: its name on the command line, one line of help, and how it runs.

    ``run`` returns once ``stop`` is set (SIGTERM) and its work is drained.
    """

    name: str
    help: str
    run: RunRole


class RoleRegistry:
    def __init__(self) -> None:
        self._roles: dict[str, RoleSpec] = {}

    def register(self, spec: RoleSpec) -> RoleSpec:
        if spec.name in self._roles:
            raise ValueError(f"a role {spec.name!r} is already registered")
        self._roles[spec.name] = spec
        return spec

    def get(self, name: str) -> RoleSpec:
        try:
            return self._roles[name]
        except KeyError:
            raise ConfigError(f"unknown role {name!r}; one of: {', '.join(self)}") from None

    def __iter__(self) -> Iterator[str]:
        return iter(self._roles)


def web_role(
    surfaces: Sequence[str], *, processor: bool = False, default_workers: int | None = 1
) -> RunRole:
    """A role serving the web ``surfaces``, with the processor beside it if asked.

    With more than one web worker (``PLANTSTREAM_WEB_WORKERS``; ``default_workers`` when it
    is 0, None for one per CPU) or a processor, and ``PLANTSTREAM_PROCESS_LAYOUT=processes``,
    each runs in a process of its own under a supervisor (``runtime.layout``); otherwise all
    of it runs in this process, the processor on a thread.
    """

    def run(runtime: Runtime, stop: threading.Event) -> None:
        layout = layout_of(
            runtime.settings, surfaces, processor=processor, default_workers=default_workers
        )
        split = layout.web_workers > 1 or layout.processors
        if split and runtime.settings.process_layout == "processes":
            serve_layout(runtime.settings, stop, layout)
            return
        app = runtime.app(surfaces)  # the state (pool, stream) before anything is served
        worker = runtime.start_processor(stop) if processor else None
        try:
            serve_web(app, runtime.settings)
        finally:
            stop.set()
            if worker is not None:
                worker.join(timeout=30)

    return run


def run_processor(runtime: Runtime, stop: threading.Event) -> None:
    """One processor here, or ``PLANTSTREAM_PROCESSOR_PROCESSES`` of them under a supervisor
    (each leases its fair share of the shards)."""
    settings = runtime.settings
    if settings.processor_processes > 1 and settings.process_layout == "processes":
        serve_layout(settings, stop, layout_of(settings, [], processor=True, default_workers=1))
        return
    runtime.processor.run(stop)


ROLES = RoleRegistry()
ROLES.register(RoleSpec("ingest", "POST /v1/readings into the stream", web_role(["ingest"])))
ROLES.register(RoleSpec("processor", "the stream into PostgreSQL and Redis", run_processor))
ROLES.register(RoleSpec("api", "queries, alerts and the dashboard", web_role(["query"])))
ROLES.register(
    RoleSpec(
        "all",
        "ingest and api in one web worker per CPU, and the processor, each in its own process",
        web_role(["ingest", "query"], processor=True, default_workers=None),
    )
)
ROLES.register(RoleSpec("mqtt", "MQTT and Sparkplug B (primary host) into the stream", run_mqtt))
