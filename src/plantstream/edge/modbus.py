"""The Modbus TCP collector: polls each signal at its rate and decodes it by its register map.

Signals with the same rate are read in one pass; a reading's time is when its pass started.
A slave that stops answering (timeout, closed connection) moves the source to
``unresponsive``: logged, counted and shown in health, and the gap is reported when it answers
again. A Modbus exception for one signal (illegal address, ...) is counted per signal.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import defaultdict
from typing import Any

from plantstream.edge.config import ModbusSignal, ModbusSource
from plantstream.edge.extras import require_edge_extra
from plantstream.edge.ingress import Ingress
from plantstream.edge.records import EdgeReading
from plantstream.edge.registers import REGISTERS, decode, value_kind
from plantstream.edge.status import EdgeStatus
from plantstream.model.readings import now_us

log = logging.getLogger("plantstream.edge")


class SlaveSilentError(Exception):
    """The slave did not answer a request in time, or the connection is gone."""


class ModbusCollector:
    def __init__(self, source: ModbusSource, ingress: Ingress, status: EdgeStatus) -> None:
        self.source, self.ingress, self.status = source, ingress, status
        self.st = status.source(source.name, "modbus")
        groups: dict[int, list[ModbusSignal]] = defaultdict(list)
        for signal in source.signals:
            groups[signal.poll_ms or source.poll_ms].append(signal)
        self.groups = dict(groups)
        self._failing: set[tuple[str, str]] = set()

    async def run(self, stop: asyncio.Event) -> None:
        require_edge_extra("pymodbus")
        from pymodbus.client import AsyncModbusTcpClient

        client = AsyncModbusTcpClient(
            self.source.host,
            port=self.source.port,
            timeout=self.source.timeout_seconds,
            retries=0,
            reconnect_delay=0.5,
            reconnect_delay_max=10,
        )
        lock = asyncio.Lock()  # one request at a time on the connection
        try:
            await asyncio.gather(
                *(self._poll(client, lock, ms, sigs, stop) for ms, sigs in self.groups.items())
            )
        finally:
            client.close()
            await asyncio.sleep(0.05)  # the transport closes its socket on the next loop turns

    async def _poll(
        self,
        client: Any,
        lock: asyncio.Lock,
        ms: int,
        signals: list[ModbusSignal],
        stop: asyncio.Event,
    ) -> None:
        loop = asyncio.get_running_loop()
        period = ms / 1000.0
        next_at = loop.time()
        while not stop.is_set():
            async with lock:
                await self._pass(client, signals)
            next_at += period
            if next_at < loop.time():  # fell behind (slow slave): skip, do not burst
                next_at = loop.time()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=max(0.0, next_at - loop.time()))

    async def _pass(self, client: Any, signals: list[ModbusSignal]) -> None:
        ts = now_us()
        readings: list[EdgeReading] = []
        try:
            if not client.connected and not await client.connect():
                raise SlaveSilentError(f"cannot connect to {self.source.host}:{self.source.port}")
            for signal in signals:
                reading = await self._read(client, signal, ts)
                if reading is not None:
                    readings.append(reading)
        except (SlaveSilentError, OSError, TimeoutError) as exc:
            self._silent(str(exc) or type(exc).__name__)
            return
        except Exception as exc:  # pymodbus raises ModbusException and its children
            if type(exc).__module__.startswith("pymodbus"):
                client.close()
                self._silent(f"{type(exc).__name__}: {exc}")
                return
            raise
        self.status.set_state(self.source.name, "connected")
        if readings:
            self.ingress.add(readings)
            self.status.collected(self.source.name, len(readings), ts)

    def _silent(self, error: str) -> None:
        self.status.metrics.source_errors.labels(self.source.name, "unresponsive").inc()
        self.status.set_state(self.source.name, "unresponsive", error)

    async def _read(self, client: Any, signal: ModbusSignal, ts: int) -> EdgeReading | None:
        unit = self.source.unit_id
        if signal.table == "coil":
            rr = await client.read_coils(signal.address, count=1, device_id=unit)
        elif signal.table == "discrete":
            rr = await client.read_discrete_inputs(signal.address, count=1, device_id=unit)
        elif signal.table == "input":
            rr = await client.read_input_registers(
                signal.address, count=REGISTERS[signal.data_type], device_id=unit
            )
        else:
            rr = await client.read_holding_registers(
                signal.address, count=REGISTERS[signal.data_type], device_id=unit
            )
        kind = value_kind(signal)
        key = (signal.device, signal.metric)
        if rr.isError():
            code = int(getattr(rr, "exception_code", 0) or 0)
            self.status.metrics.source_errors.labels(self.source.name, "exception").inc()
            if key not in self._failing:  # once per signal, again after it recovered
                self._failing.add(key)
                log.error(
                    "source %s: %s/%s at %s %d answers Modbus exception %d: not collected",
                    self.source.name, signal.device, signal.metric, signal.table, signal.address,
                    code,
                )  # fmt: skip
            return None
        self._failing.discard(key)
        value = (
            int(bool(rr.bits[0])) if signal.data_type == "bool" else decode(signal, rr.registers)
        )
        return EdgeReading(
            self.source.name, signal.device, signal.metric, ts, kind, value, 0, None, signal.unit
        )
