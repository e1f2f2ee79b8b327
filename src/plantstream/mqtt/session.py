"""The bridge's side of the broker: connect, subscribe, the host's STATE, acks, commands.

paho runs its network loop on its own thread; every message goes to the bridge's inbox. On
each (re)connection the Sparkplug host publishes its retained STATE birth, after its
subscriptions, and leaves a retained STATE death as its will with the same timestamp.
An acknowledgement for a message of an earlier connection is not sent: the broker hands that
message over again on the new one.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.subscribeoptions import SubscribeOptions

from plantstream.errors import ServiceError
from plantstream.local.mqtt_broker import EmbeddedBroker
from plantstream.model import now_us
from plantstream.mqtt.bridge import Bridge, Inbound
from plantstream.mqtt.client import BrokerAddress, connect, make_client, subscriptions
from plantstream.mqtt.sparkplug.commands import rebirth_request, state_payload
from plantstream.mqtt.sparkplug.topics import ncmd_topic, state_topic
from plantstream.settings import Settings

log = logging.getLogger(__name__)


class BrokerSession:
    """One paho client, wired to a ``Bridge``."""

    def __init__(
        self,
        settings: Settings,
        address: BrokerAddress,
        *,
        username: str | None = None,
        password: str | None = None,
    ) -> None:
        self.settings = settings
        self.address = address
        self.client = make_client(settings, username=username, password=password)
        self.bridge: Bridge | None = None
        self.embedded: EmbeddedBroker | None = None  # the broker open_session started, if any
        self.connection = 0
        self.connected = threading.Event()
        self._state_ms = 0
        self._lock = threading.Lock()
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_message = self._on_message
        self.client.on_subscribe = self._on_subscribe

    @property
    def host_topic(self) -> str:
        return state_topic(self.settings.sparkplug_host_id)

    def _set_will(self) -> None:
        if not self.settings.mqtt_sparkplug:
            return
        self._state_ms = max(int(time.time() * 1000), self._state_ms + 1)
        will = state_payload(online=False, timestamp_ms=self._state_ms)
        self.client.will_set(self.host_topic, will, qos=1, retain=True)

    def start(self, bridge: Bridge, *, timeout: float = 30.0) -> None:
        """Connect and start paho's loop; ``ServiceError`` if the broker does not answer."""
        self.bridge = bridge
        self._set_will()
        try:
            connect(self.client, self.settings, self.address)
        except OSError as exc:
            raise ServiceError(
                f"MQTT broker {self.address.host}:{self.address.port} unreachable: {exc}"
            ) from None
        self.client.loop_start()
        if not self.connected.wait(timeout):
            self.client.loop_stop()
            raise ServiceError(f"MQTT broker {self.address.host} did not accept the connection")

    def _on_connect(self, client: mqtt.Client, _u: Any, flags: Any, reason: Any, _p: Any) -> None:
        if reason.is_failure:
            log.error("MQTT connection refused: %s", reason)
            return
        with self._lock:
            self.connection += 1
        log.info("MQTT connected (session present: %s)", flags.session_present)
        topics = subscriptions(self.settings)
        if self.settings.mqtt_protocol == "5":
            client.subscribe([(t, SubscribeOptions(qos=1)) for t in topics])
        else:
            client.subscribe([(t, 1) for t in topics])

    def _on_subscribe(self, client: mqtt.Client, *_args: Any) -> None:
        if self.settings.mqtt_sparkplug:
            birth = state_payload(online=True, timestamp_ms=self._state_ms)
            client.publish(self.host_topic, birth, qos=1, retain=True)
        self.connected.set()

    def _on_disconnect(self, _c: mqtt.Client, _u: Any, _f: Any, reason: Any, _p: Any) -> None:
        self.connected.clear()
        log.warning("MQTT disconnected: %s", reason)
        self._set_will()  # the next connection's will gets a new timestamp

    def _on_message(self, _c: mqtt.Client, _u: Any, msg: mqtt.MQTTMessage) -> None:
        if self.bridge is None:
            return
        self.bridge.put(
            Inbound(msg.topic, bytes(msg.payload), msg.mid, msg.qos, self.connection, now_us())
        )

    def ack(self, item: Inbound) -> None:
        """Acknowledge ``item`` if it came on this connection (else the broker resends it)."""
        if item.connection == self.connection:
            self.client.ack(item.mid, item.qos)

    def request_rebirth(self, group: str, edge_node: str) -> None:
        payload = rebirth_request(timestamp_ms=int(time.time() * 1000))
        self.client.publish(ncmd_topic(group, edge_node), payload, qos=0)
        log.info("rebirth requested of %s/%s", group, edge_node)

    def close(self) -> None:
        """Publish the host's STATE death (a clean stop), disconnect, stop the loop."""
        try:
            if self.settings.mqtt_sparkplug and self.connected.is_set():
                death = state_payload(online=False, timestamp_ms=self._state_ms)
                self.client.publish(self.host_topic, death, qos=1, retain=True).wait_for_publish(5)
            self.client.disconnect()
        except (RuntimeError, ValueError, OSError) as exc:
            log.warning("MQTT disconnect: %s", exc)
        finally:
            self.client.loop_stop()
            # paho has no public close: its loop can leave its wake-up socket pair open
            self.client._reset_sockets()
