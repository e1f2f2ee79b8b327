"""The demo's MQTT side: the embedded broker, a bridge in this process, the Sparkplug machines.

``SparkplugPath.start`` starts (or reuses) the embedded broker under the data directory with
a login per facility, runs the bridge (``plantstream serve mqtt``'s, on its own thread) and
connects one Sparkplug edge node per facility; ``SplitGateway`` sends the readings of the
machines given to Sparkplug through them and the others over HTTP. ``finish`` waits until
the broker acknowledged every message and the bridge accounted for every reading.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Any

import redis

from plantstream.demo.opcua_path import OpcUaPath
from plantstream.demo.sparkplug import SparkplugPlant
from plantstream.local.mqtt_broker import EmbeddedBroker
from plantstream.model import TimeWindow
from plantstream.mqtt import build_bridge, open_session
from plantstream.mqtt.bridge import Bridge
from plantstream.mqtt.session import BrokerSession
from plantstream.runtime import Runtime
from plantstream.settings import Settings
from plantstream.simulate import Gateway, Plant
from plantstream.simulate.plant import SimReading
from plantstream.stream.base import Stream

ACCOUNT_TIMEOUT_S = 60.0


@dataclass
class _BridgeRuntime:
    """The demo's runtime with the bridge's settings (its broker, facilities, name rule)."""

    settings: Settings
    runtime: Runtime

    @property
    def window(self) -> TimeWindow:
        return self.runtime.window

    def redis(self, purpose: str) -> redis.Redis:
        return self.runtime.redis(purpose)

    def stream(self) -> Stream:
        return self.runtime.stream()


class SparkplugPath:
    """The broker, the bridge and the edge nodes of the demo's Sparkplug machines."""

    def __init__(
        self,
        session: BrokerSession,
        bridge: Bridge,
        plant: SparkplugPlant,
        stop: threading.Event,
        *,
        broker_was_running: bool,
    ) -> None:
        self.broker_was_running = broker_was_running
        self.session = session
        self.bridge = bridge
        self.plant = plant
        self.stop = stop
        self.thread = threading.Thread(target=bridge.run, args=(stop,), name="mqtt-bridge")

    @classmethod
    def start(cls, runtime: Runtime, plant: Plant, per_facility: int) -> SparkplugPath:
        """Give the last ``per_facility`` machines of each facility to Sparkplug and start."""
        chosen = []
        for facility in plant.facilities:
            machines = [m for m in plant.machines if m.facility == facility]
            chosen += machines[-per_facility:]
        settings = runtime.settings.model_copy(
            update={
                "mqtt_url": "",  # the embedded broker
                "mqtt_client_id": "plantstream-demo-bridge",
                "mqtt_facilities": ",".join(plant.facilities),
                "sparkplug_host_id": "plantstream-demo",
                "sparkplug_machine": "{device}",  # the same machine ids as over HTTP
            }
        )
        was_running = EmbeddedBroker(settings.data_dir / "mqtt").is_running()
        session = open_session(settings)
        bridge, _ = build_bridge(_BridgeRuntime(settings, runtime), session)
        stop = threading.Event()
        session.start(bridge)
        broker = session.embedded
        if broker is None:  # open_session always starts it without a URL
            raise RuntimeError("the embedded MQTT broker did not start")
        edge = SparkplugPlant(session.address, chosen, broker.facility_credentials)
        path = cls(session, bridge, edge, stop, broker_was_running=was_running)
        path.thread.start()
        return path

    def finish(self) -> bool:
        """Wait until every published message is acknowledged by the broker and its readings
        are accounted for by the bridge (accepted or rejected); False on timeout."""
        if not self.plant.wait_acked():
            return False
        deadline = time.monotonic() + ACCOUNT_TIMEOUT_S
        while time.monotonic() < deadline:
            counted = self.bridge.readings["accepted"] + self.bridge.readings["rejected"]
            if counted >= self.plant.acked:
                return True
            time.sleep(0.1)
        return False

    def books(self) -> dict[str, int]:
        return {
            "published": self.plant.published,
            "acked_by_broker": self.plant.acked,
            "accepted": self.bridge.readings["accepted"],
            "rejected": self.bridge.readings["rejected"],
            "machines": len(self.plant.devices),
        }

    def close(self) -> None:
        self.plant.close()
        self.stop.set()
        self.thread.join(timeout=30)
        self.session.close()
        if self.session.embedded is not None and not self.broker_was_running:
            self.session.embedded.stop()  # the demo started it: it stops it, like its Redis


class SplitGateway(Gateway):
    """The simulator's gateway, with the Sparkplug machines' readings sent over MQTT and the
    OPC UA machine's written into its server (the edge agent collects them)."""

    def __init__(
        self, *, sparkplug: SparkplugPath | None, opcua: OpcUaPath | None = None, **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        self.sparkplug = sparkplug
        self.opcua = opcua

    def post(self, facility: str, readings: list[SimReading]) -> None:
        if self.opcua is not None:
            m = self.opcua.machine
            mine = facility == m.facility
            opcua_part = [r for r in readings if mine and r.device == m.device]
            if opcua_part:
                self.opcua.write(opcua_part)
                readings = [r for r in readings if r.device != m.device]
        if self.sparkplug is not None:
            devices = self.sparkplug.plant.devices
            mqtt_part = [r for r in readings if (facility, r.device) in devices]
            readings = [r for r in readings if (facility, r.device) not in devices]
            if mqtt_part:
                self.sparkplug.plant.publish(facility, mqtt_part)
        if readings:
            super().post(facility, readings)
