"""The OPC UA collector: one subscription per source, every data change into the queue.

Each signal is a monitored item with its own sampling interval, queue size and deadband. A
reading's time is the value's SourceTimestamp (``timestamp: source``, the default: when the
machine measured it) or its ServerTimestamp (``timestamp: server``); both are kept in the queue,
with the raw StatusCode beside the quality it maps to. EUInformation and EURange are read
once per connection into the signal's unit and range. On a lost connection the collector
reconnects with backoff, subscribes again and reports the gap (log, metric, health).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from plantstream.edge.config import OpcUaSignal, OpcUaSource, ValueKind
from plantstream.edge.extras import require_edge_extra
from plantstream.edge.ingress import Ingress
from plantstream.edge.opcua_security import SecurityRefusedError, explain, secure
from plantstream.edge.records import EdgeReading, opcua_quality
from plantstream.edge.status import EdgeStatus
from plantstream.model.readings import now_us

log = logging.getLogger("plantstream.edge")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass
class EngineeringInfo:
    """What the server says about a signal's units and range (None when it says nothing)."""

    unit: str | None = None
    low: float | None = None
    high: float | None = None


def epoch_us(ts: datetime | None) -> int | None:
    """Exact microseconds of an OPC UA DateTime (asyncua gives naive UTC or aware datetimes)."""
    if ts is None or ts.year < 1971:  # MinDateTime: the server sent no timestamp
        return None
    if ts.tzinfo is None:
        ts = ts.replace(tzinfo=UTC)
    return (ts - _EPOCH) // _MICRO


_MICRO = datetime(1970, 1, 1, 0, 0, 0, 1, tzinfo=UTC) - _EPOCH


def convert(value: Any, kind: ValueKind) -> float | int | str | None:
    """A Variant's Python value as the signal's type (None for a null or a mismatched value)."""
    if value is None:
        return None
    try:
        if kind is ValueKind.DOUBLE:
            return float(value)
        if kind is ValueKind.INT64:
            return int(value)
        if kind is ValueKind.BOOL:
            return int(bool(value))
        return str(value)
    except (TypeError, ValueError):
        return None


class OpcUaCollector:
    def __init__(self, source: OpcUaSource, ingress: Ingress, status: EdgeStatus) -> None:
        self.source, self.ingress, self.status = source, ingress, status
        self.st = status.source(source.name, "opcua")
        self.by_node: dict[str, OpcUaSignal] = {s.node: s for s in source.signals}
        self.engineering: dict[str, EngineeringInfo] = {}
        self.subscriptions = 0  # how many times a subscription was set up (resubscribes + 1)

    # called by asyncua for every data change of every monitored item
    def datachange_notification(self, node: Any, val: Any, data: Any) -> None:
        signal = self.by_node.get(node.nodeid.to_string())
        if signal is None:
            return
        dv = data.monitored_item.Value
        status_code = int(dv.StatusCode.value) if dv.StatusCode is not None else 0
        source_us, server_us = epoch_us(dv.SourceTimestamp), epoch_us(dv.ServerTimestamp)
        first, second = (source_us, server_us)
        if self.source.timestamp == "server":
            first, second = second, first
        ts = first or second or now_us()
        unit = signal.unit or self.engineering.get(signal.node, EngineeringInfo()).unit
        reading = EdgeReading(
            source=self.source.name,
            device=signal.device,
            metric=signal.metric,
            ts_us=ts,
            value_type=signal.type,
            value=convert(val, signal.type),
            quality=opcua_quality(status_code),
            raw_status=status_code,
            unit=unit,
            source_ts_us=source_us,
            server_ts_us=server_us,
        )
        self.ingress.add([reading])
        self.status.collected(self.source.name, 1, ts)

    def status_change_notification(self, status: Any) -> None:
        self.status.set_state(self.source.name, "disconnected", f"subscription status {status}")

    async def run(self, stop: asyncio.Event) -> None:
        """Collect until ``stop``: connect, subscribe, watch; on a loss, back off and redo."""
        delay = 0.5
        while not stop.is_set():
            try:
                await self._session(stop)
                delay = 0.5
            except SecurityRefusedError as exc:
                self._refused(str(exc))
            except (OSError, TimeoutError, ConnectionError) as exc:
                self._down(f"{type(exc).__name__}: {exc}")
            except Exception as exc:  # asyncua raises its own UaError tree too
                reason = explain(exc, self.source)
                if reason is not None:
                    self._refused(reason)
                else:
                    self._down(f"{type(exc).__name__}: {exc}")
            if stop.is_set():
                break
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=delay)
            delay = min(self.source.reconnect_max_seconds, delay * 2)

    def _refused(self, reason: str) -> None:
        """A security refusal: an error (it needs a person), logged again only if it changes."""
        self.status.metrics.source_errors.labels(self.source.name, "security").inc()
        if reason != self.st.last_error:
            log.error("source %s: %s", self.source.name, reason, extra={"source": self.source.name})
        self.status.set_state(self.source.name, "disconnected", reason)

    def _down(self, error: str) -> None:
        self.status.metrics.source_errors.labels(self.source.name, "connection").inc()
        self.status.set_state(self.source.name, "disconnected", error)

    async def _session(self, stop: asyncio.Event) -> None:
        asyncua = require_edge_extra("asyncua")
        from asyncua.client.ua_client import UaClientState

        client = asyncua.Client(url=self.source.endpoint, timeout=self.source.timeout_seconds)
        await secure(client, asyncua, self.source)
        await client.connect()
        try:
            await self._read_engineering(client)
            await self._subscribe(client, asyncua.ua)
            self.subscriptions += 1
            self.status.set_state(self.source.name, "connected")
            log.info("source %s subscribed to %d nodes", self.source.name, len(self.by_node))
            while not stop.is_set() and client.state is UaClientState.CONNECTED:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), timeout=0.2)
            if not stop.is_set():
                raise ConnectionError("the connection to the server was lost")
        finally:
            # the connection may be gone already: there is nothing left to close then
            with contextlib.suppress(Exception):
                await asyncio.wait_for(client.disconnect(), timeout=2)

    async def _read_engineering(self, client: Any) -> None:
        for signal in self.source.signals:
            node = client.get_node(signal.node)
            info = EngineeringInfo()
            for prop in await node.get_properties():
                name = (await prop.read_browse_name()).Name
                if name == "EngineeringUnits":
                    eu = await prop.read_value()
                    info.unit = eu.DisplayName.Text if eu and eu.DisplayName else None
                elif name == "EURange":
                    rng = await prop.read_value()
                    info.low, info.high = (rng.Low, rng.High) if rng else (None, None)
            self.engineering[signal.node] = info
            self.st.engineering[f"{signal.device}/{signal.metric}"] = {
                "unit": info.unit,
                "low": info.low,
                "high": info.high,
            }

    async def _subscribe(self, client: Any, ua: Any) -> None:
        sub = await client.create_subscription(self.source.publishing_ms, self)
        requests = []
        for signal in self.source.signals:
            mfilter = None
            if signal.deadband is not None:
                mfilter = ua.DataChangeFilter(
                    Trigger=ua.DataChangeTrigger.StatusValueTimestamp,
                    DeadbandType=1 if signal.deadband.type == "absolute" else 2,
                    DeadbandValue=signal.deadband.value,
                )
            requests.append(
                sub._make_monitored_item_request(  # the public helper takes no filter
                    client.get_node(signal.node),
                    ua.AttributeIds.Value,
                    mfilter,
                    signal.queue_size,
                    ua.MonitoringMode.Reporting,
                    signal.sampling_ms,
                )
            )
        results = await sub.create_monitored_items(requests)
        for signal, result in zip(self.source.signals, results, strict=True):
            if isinstance(result, ua.StatusCode):
                self.status.metrics.source_errors.labels(self.source.name, "monitor").inc()
                log.error(
                    "source %s: node %s cannot be monitored: %s",
                    self.source.name,
                    signal.node,
                    result,
                )
