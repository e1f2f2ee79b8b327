"""The edge agent: queue, collectors, forwarder and health endpoint built from one config.

Threads: the forwarder (blocking HTTP), the ingress flusher (SQLite commits) and the health
server; the collectors share one asyncio loop. ``run`` returns once ``stop`` is set and what
was collected is committed.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable, Coroutine
from typing import Any

from pydantic import SecretStr

from plantstream.edge.config import EdgeConfig, ModbusSource, OpcUaSource, warnings_for
from plantstream.edge.forward import Forwarder
from plantstream.edge.health import serve_health
from plantstream.edge.ingress import Ingress
from plantstream.edge.modbus import ModbusCollector
from plantstream.edge.opcua import OpcUaCollector
from plantstream.edge.opcua_security import check_files
from plantstream.edge.queue import EdgeQueue
from plantstream.edge.status import EdgeStatus, Gap
from plantstream.errors import ConfigError

log = logging.getLogger("plantstream.edge")

Collector = OpcUaCollector | ModbusCollector
COLLECTORS: dict[type[Any], Callable[[Any, Ingress, EdgeStatus], Collector]] = {
    OpcUaSource: OpcUaCollector,
    ModbusSource: ModbusCollector,
}


class Agent:
    def __init__(self, config: EdgeConfig, key: SecretStr) -> None:
        """Raises ``ConfigError`` when a certificate or key file of the config cannot be read."""
        unreadable = check_files(config)
        if unreadable:
            raise ConfigError("cannot start the edge agent:\n" + "\n".join(unreadable))
        self.config = config
        self.status = EdgeStatus()
        self.queue = EdgeQueue(config.queue)
        self.status.on_gap = self._keep_gap
        self.ingress = Ingress(self.queue, self.status)
        self.forwarder = Forwarder(
            queue=self.queue,
            status=self.status,
            destination=config.destination,
            facility=config.facility,
            key=key,
        )
        self.collectors = [
            COLLECTORS[type(s)](s, self.ingress, self.status) for s in config.sources
        ]
        self.health_port: int | None = None

    def _keep_gap(self, gap: Gap) -> None:
        self.queue.record_gap(gap.source, gap.start_us, gap.end_us, gap.reason)

    def run(self, stop: threading.Event) -> None:
        for note in warnings_for(self.config):
            log.warning(note)
        host, _, port = self.config.health.listen.rpartition(":")
        server, _ = serve_health(self.queue, self.status, host, int(port))
        self.health_port = server.server_address[1]
        log.info(
            "edge agent started: %d sources, queue %s (depth %d), health on %s:%d",
            len(self.collectors), self.config.queue.path, self.queue.depth, host,
            self.health_port,
        )  # fmt: skip
        threads = [
            threading.Thread(target=self.ingress.run, args=(stop,), name="edge-ingress"),
            threading.Thread(target=self.forwarder.run, args=(stop,), name="edge-forward"),
            threading.Thread(target=self._age_watch, args=(stop,), name="edge-age", daemon=True),
        ]
        for thread in threads:
            thread.start()
        try:
            asyncio.run(self._collect(stop))
        finally:
            stop.set()
            for thread in threads:
                thread.join(timeout=30)
            server.shutdown()
            server.server_close()
            self.forwarder.close()
            self.queue.close()
            log.info("edge agent stopped")

    def _age_watch(self, stop: threading.Event) -> None:
        from plantstream.model.readings import now_us

        while not stop.wait(10.0):
            dropped = self.queue.enforce_age(now_us=now_us())
            if dropped:
                self.status.metrics.dropped.inc(dropped)
                log.error("dropped %d readings queued past max_age_hours (drop_oldest)", dropped)

    async def _collect(self, stop: threading.Event) -> None:
        done = asyncio.Event()
        loop = asyncio.get_running_loop()
        threading.Thread(
            target=lambda: (stop.wait(), loop.call_soon_threadsafe(done.set)), daemon=True
        ).start()
        tasks: list[Coroutine[Any, Any, None]] = [c.run(done) for c in self.collectors]
        await asyncio.gather(*tasks)
