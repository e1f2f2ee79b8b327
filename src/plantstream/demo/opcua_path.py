"""The demo's OPC UA path (``--opcua``): one simulated machine behind an asyncua server, and
the edge agent (``plantstream edge``) collecting from it into the demo's HTTP ingest.

``OpcUaPath.start`` serves one machine's signals as OPC UA variables (on 127.0.0.1, no
security: the agent is configured with ``insecure: true`` for it), writes each sampled value
with its source timestamp, and runs the edge agent (its durable queue under the data
directory) subscribed to every variable with a zero sampling interval, so each write is one
notification. The books: values written to the server, collected by the agent, forwarded
(answered 202) and dead-lettered by it.
"""

from __future__ import annotations

import asyncio
import threading
import time
from concurrent.futures import Future
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pydantic import SecretStr

from plantstream.edge.agent import Agent
from plantstream.edge.config import (
    Destination,
    EdgeConfig,
    HealthConfig,
    OpcUaSecurity,
    OpcUaSignal,
    OpcUaSource,
    QueueConfig,
)
from plantstream.edge.extras import require_edge_extra
from plantstream.local.ports import free_port
from plantstream.simulate.plant import Machine, Plant, SimReading

NAMESPACE = "urn:plantstream:demo-machine"
START_TIMEOUT_S = 90.0  # asyncua builds its whole standard address space first
DRAIN_TIMEOUT_S = 60.0


class _Server:
    """An asyncua server on its own event loop thread, one variable per signal."""

    def __init__(self, machine: Machine, port: int, initial: dict[str, SimReading]) -> None:
        self.machine = machine
        self.initial = initial
        self.last: dict[str, float] = {}
        self.unchanged = 0  # writes of the value a node already had: OPC UA reports changes
        self.endpoint = f"opc.tcp://127.0.0.1:{port}/plantstream/demo"
        self.loop = asyncio.new_event_loop()
        self.nodes: dict[str, Any] = {}
        self.ready = threading.Event()
        self.failed: BaseException | None = None
        self._stop: asyncio.Event | None = None
        self.thread = threading.Thread(target=self._run, name="opcua-server", daemon=True)

    def node_id(self, metric: str) -> str:
        return f"ns=2;s={self.machine.device}.{metric}"

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        try:
            self.loop.run_until_complete(self._serve())
        except BaseException as exc:
            self.failed = exc
            self.ready.set()

    async def _serve(self) -> None:
        asyncua = require_edge_extra("asyncua")
        ua = asyncua.ua
        server = asyncua.Server()
        await server.init()
        server.set_endpoint(self.endpoint)
        server.set_security_policy([ua.SecurityPolicyType.NoSecurity])
        idx = await server.register_namespace(NAMESPACE)
        obj = await server.nodes.objects.add_object(
            ua.NodeId(self.machine.device, idx), self.machine.device
        )
        for signal in self.machine.signals:
            node = ua.NodeId(f"{self.machine.device}.{signal.metric}", idx)
            self.nodes[signal.metric] = await obj.add_variable(
                node, signal.metric, ua.Variant(0.0, ua.VariantType.Double)
            )
        self._stop = asyncio.Event()
        async with server:
            self.server = server
            # the first values are the simulator's: a subscription starts with each one
            await self._write(list(self.initial.values()))
            self.ready.set()
            await self._stop.wait()

    async def _write(self, readings: list[SimReading]) -> None:
        ua = require_edge_extra("asyncua").ua
        for r in readings:
            when = datetime.fromtimestamp(r.ts, UTC)
            number = round(r.value, 4)
            if self.last.get(r.metric) == number:
                self.unchanged += 1
            self.last[r.metric] = number
            value = ua.DataValue(
                ua.Variant(number, ua.VariantType.Double),
                SourceTimestamp=when,
                ServerTimestamp=datetime.now(UTC),
            )
            await self.server.write_attribute_value(self.nodes[r.metric].nodeid, value)

    def write(self, readings: list[SimReading]) -> Future[None]:
        return asyncio.run_coroutine_threadsafe(self._write(readings), self.loop)

    def stop(self) -> None:
        if self._stop is not None:
            self.loop.call_soon_threadsafe(self._stop.set)
        self.thread.join(timeout=15)


def _first_values(machine: Machine, plant: Plant) -> dict[str, SimReading]:
    """One value of each of ``machine``'s signals (a dropout may leave one out: sample on)."""
    first: dict[str, SimReading] = {}
    t = time.time()
    for _ in range(100):
        for r in plant.sample(t):
            if (r.facility, r.device) == (machine.facility, machine.device):
                first.setdefault(r.metric, r)
        if len(first) == len(machine.signals):
            break
        t += 0.01
    return first


class OpcUaPath:
    """The OPC UA server of one machine and the edge agent collecting from it."""

    def __init__(self, server: _Server, agent: Agent, stop: threading.Event) -> None:
        self.server = server
        self.agent = agent
        self.stop = stop
        self.written = 0
        self.machine = server.machine
        self._lock = threading.Lock()
        self.thread = threading.Thread(target=agent.run, args=(stop,), name="edge-agent")

    @classmethod
    def start(
        cls, machine: Machine, plant: Plant, *, url: str, key: str, data_dir: Path
    ) -> OpcUaPath:
        """Serve ``machine`` (its first values sampled from ``plant``), run the agent and
        return once it has subscribed (it collected the first values)."""
        require_edge_extra("asyncua")  # a ConfigError naming the extra to install
        server = _Server(machine, free_port(), _first_values(machine, plant))
        server.thread.start()
        if not server.ready.wait(START_TIMEOUT_S) or server.failed is not None:
            raise RuntimeError(f"the demo's OPC UA server did not start: {server.failed}")
        source = OpcUaSource(
            type="opcua",
            name="demo-opcua",
            endpoint=server.endpoint,
            security=OpcUaSecurity(mode="none", insecure=True),  # loopback, the demo's own
            signals=[
                OpcUaSignal(
                    device=machine.device,
                    metric=s.metric,
                    node=server.node_id(s.metric),
                    unit=s.unit,
                    sampling_ms=0,  # every write is one notification
                    queue_size=10_000,
                )
                for s in machine.signals
            ],
        )
        home = data_dir / "edge"
        home.mkdir(parents=True, exist_ok=True)
        config = EdgeConfig(
            facility=machine.facility,
            destination=Destination(url=url),
            queue=QueueConfig(path=home / "demo-queue.db"),
            health=HealthConfig(listen=f"127.0.0.1:{free_port()}"),
            sources=[source],
        )
        path = cls(server, Agent(config, SecretStr(key)), threading.Event())
        path.written = len(server.initial)
        path.thread.start()
        deadline = time.monotonic() + START_TIMEOUT_S
        while path.books()["collected"] < path.written:  # subscribed: the first values came
            if time.monotonic() > deadline:
                path.close()
                raise RuntimeError("the demo's edge agent did not subscribe to its OPC UA server")
            time.sleep(0.1)
        return path

    def write(self, readings: list[SimReading]) -> None:
        """Write ``readings`` into the server (waits until written: they are counted then)."""
        self.server.write(readings).result(timeout=30)
        with self._lock:
            self.written += len(readings)

    def _metric(self, name: str, **labels: str) -> int:
        value = self.agent.status.metrics.registry.get_sample_value(name, labels or None)
        return int(value or 0)

    def books(self) -> dict[str, int]:
        rejected = sum(
            int(s.value)
            for m in self.agent.status.metrics.registry.collect()
            if m.name == "plantstream_edge_readings_dead_lettered"
            for s in m.samples
            if s.name.endswith("_total")
        )
        return {
            "written_to_server": self.written,
            # a subscription reports a value that changed (the data-change trigger): writes of
            # the same value again (a stuck sensor, a counter between parts) are not readings
            "unchanged_not_reported": self.server.unchanged,
            "collected": self._metric(
                "plantstream_edge_readings_collected_total", source="demo-opcua"
            ),
            "accepted": self._metric("plantstream_edge_readings_forwarded_total"),
            "rejected": rejected,
            "machines": 1,
        }

    def finish(self) -> bool:
        """Wait until the agent collected every value written and forwarded or refused them."""
        deadline = time.monotonic() + DRAIN_TIMEOUT_S
        while time.monotonic() < deadline:
            b = self.books()
            expected = self.written - b["unchanged_not_reported"]
            if b["collected"] >= expected and b["accepted"] + b["rejected"] >= b["collected"]:
                return True
            time.sleep(0.2)
        return False

    def close(self) -> None:
        self.stop.set()
        self.thread.join(timeout=30)
        self.server.stop()
