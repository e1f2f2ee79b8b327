"""The demo's Sparkplug B path: some machines publish through the embedded broker, not HTTP.

``SparkplugPlant`` is one edge node per facility (``demo-edge``, its facility's broker login),
a device per machine given to it: NBIRTH and DBIRTH (each metric with an alias, its datatype
and its ``engUnit``, no value yet), then DDATA at QoS 1 as the simulator samples. It answers
the host's rebirth request (NCMD ``Node Control/Rebirth``). It counts the readings it
published and those whose message the broker acknowledged: what the bridge must account for.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Iterable, Sequence
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from plantstream.model import DEFAULT_SIGNALS, ValueType
from plantstream.mqtt.client import BrokerAddress
from plantstream.mqtt.sparkplug.datatypes import BOOLEAN, INT64
from plantstream.mqtt.sparkplug.sparkplug_b_pb2 import Payload
from plantstream.simulate.plant import Machine, SimReading

log = logging.getLogger(__name__)

EDGE_NODE = "demo-edge"
DOUBLE = 10
PUBLISH_TIMEOUT_S = 30.0


def _datatype(metric: str) -> int:
    spec = DEFAULT_SIGNALS.get(metric)
    return INT64 if spec is not None and spec.value_type is ValueType.INT64 else DOUBLE


class EdgeNode:
    """One facility's Sparkplug edge node, publishing its machines' readings as devices."""

    def __init__(
        self, address: BrokerAddress, facility: str, machines: Sequence[Machine], login: Any
    ) -> None:
        self.facility = facility
        self.machines = {m.device: m for m in machines}
        self.aliases = {
            (m.device, s.metric): i + 1
            for m in machines
            for i, s in enumerate(m.signals)  # aliases per device, as many edge nodes do
        }
        self.counts: Counter[str] = Counter()  # published, acked (readings)
        self._pending: dict[int, int] = {}  # mid -> readings in that message
        self._early: set[int] = set()  # mids acknowledged before _send recorded them
        self._lock = threading.Lock()
        self._seq = 0
        self._bdseq = int(time.time()) % 256
        self._rebirth = threading.Event()
        self.client = mqtt.Client(
            callback_api_version=CallbackAPIVersion.VERSION2,
            client_id=f"{EDGE_NODE}-{facility}",
            protocol=mqtt.MQTTv311,
        )
        user, password = login
        self.client.username_pw_set(user, password)
        self.client.max_inflight_messages_set(100)
        self.client.max_queued_messages_set(0)
        self.client.will_set(self._topic("NDEATH"), self._death(), qos=1)
        self.client.on_publish = self._on_publish
        self.client.on_message = self._on_message
        self.client.on_connect = self._on_connect
        self.client.connect(address.host, address.port)
        self.client.loop_start()

    def _topic(self, kind: str, device: str | None = None) -> str:
        tail = f"/{device}" if device else ""
        return f"spBv1.0/{self.facility}/{kind}/{EDGE_NODE}{tail}"

    def _death(self) -> bytes:
        p = Payload(timestamp=int(time.time() * 1000))
        p.metrics.add(name="bdSeq", datatype=INT64, long_value=self._bdseq)
        return bytes(p.SerializeToString())

    def _on_connect(self, client: mqtt.Client, *_args: Any) -> None:
        client.subscribe(self._topic("NCMD"), qos=1)
        self._rebirth.set()  # (re)connected: births first

    def _on_message(self, _c: mqtt.Client, _u: Any, msg: mqtt.MQTTMessage) -> None:
        try:
            p = Payload.FromString(msg.payload)
        except Exception:
            return
        if any(m.name == "Node Control/Rebirth" and m.boolean_value for m in p.metrics):
            self._rebirth.set()

    def _on_publish(self, _c: mqtt.Client, _u: Any, mid: int, *_args: Any) -> None:
        with self._lock:
            if mid in self._pending:
                self.counts["acked"] += self._pending.pop(mid)
            else:
                self._early.add(mid)

    def _send(self, topic: str, p: Payload, readings: int) -> None:
        # paho may call on_publish holding its own lock: never publish while holding ours
        info = self.client.publish(topic, p.SerializeToString(), qos=1)
        with self._lock:
            self.counts["published"] += readings
            if info.mid in self._early:
                self._early.discard(info.mid)
                self.counts["acked"] += readings
            else:
                self._pending[info.mid] = readings

    def _next_seq(self) -> int:
        self._seq = (self._seq + 1) % 256
        return self._seq

    def _births(self) -> None:
        self._rebirth.clear()
        now_ms = int(time.time() * 1000)
        self._seq = 0
        node = Payload(timestamp=now_ms, seq=0)
        node.metrics.add(name="bdSeq", datatype=INT64, long_value=self._bdseq)
        node.metrics.add(name="Node Control/Rebirth", datatype=BOOLEAN, boolean_value=False)
        self._send(self._topic("NBIRTH"), node, 0)
        for device, machine in self.machines.items():
            p = Payload(timestamp=now_ms, seq=self._next_seq())
            for signal in machine.signals:
                m = p.metrics.add(
                    name=signal.metric,
                    alias=self.aliases[(device, signal.metric)],
                    datatype=_datatype(signal.metric),
                    is_null=True,  # defined now, values come as DDATA
                )
                m.properties.keys.append("engUnit")
                m.properties.values.add(type=12, string_value=signal.unit)
            self._send(self._topic("DBIRTH", device), p, 0)

    def publish(self, readings: Iterable[SimReading]) -> None:
        """One DDATA per device of ``readings`` (births first, if asked for)."""
        if self._rebirth.is_set():
            self._births()
        by_device: dict[str, list[SimReading]] = {}
        for r in readings:
            by_device.setdefault(r.device, []).append(r)
        for device, items in by_device.items():
            p = Payload(timestamp=int(time.time() * 1000), seq=self._next_seq())
            for r in items:
                m = p.metrics.add(
                    alias=self.aliases[(device, r.metric)], timestamp=int(r.ts * 1000)
                )
                if _datatype(r.metric) == INT64:
                    m.long_value = round(r.value)
                else:
                    m.double_value = round(r.value, 4)
            self._send(self._topic("DDATA", device), p, len(items))

    def wait_acked(self, timeout: float = PUBLISH_TIMEOUT_S) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                if not self._pending:
                    return True
            time.sleep(0.05)
        return False

    def close(self) -> None:
        """A clean stop: the node's death, then disconnect."""
        try:
            self.client.publish(self._topic("NDEATH"), self._death(), qos=1).wait_for_publish(5)
        except (RuntimeError, ValueError):
            log.warning("the demo edge node of %s left without its NDEATH", self.facility)
        self.client.disconnect()
        self.client.loop_stop()


class SparkplugPlant:
    """The demo's Sparkplug B machines: an edge node per facility, on the embedded broker."""

    def __init__(self, address: BrokerAddress, machines: Sequence[Machine], logins: Any) -> None:
        by_facility: dict[str, list[Machine]] = {}
        for m in machines:
            by_facility.setdefault(m.facility, []).append(m)
        self.devices = {(m.facility, m.device) for m in machines}
        self.nodes = {
            f: EdgeNode(address, f, ms, logins(f)) for f, ms in sorted(by_facility.items())
        }

    def publish(self, facility: str, readings: list[SimReading]) -> None:
        self.nodes[facility].publish(readings)

    @property
    def published(self) -> int:
        return sum(n.counts["published"] for n in self.nodes.values())

    @property
    def acked(self) -> int:
        return sum(n.counts["acked"] for n in self.nodes.values())

    def wait_acked(self) -> bool:
        return all(n.wait_acked() for n in self.nodes.values())

    def close(self) -> None:
        for node in self.nodes.values():
            node.close()
