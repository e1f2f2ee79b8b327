"""The bridge's MQTT connection (paho-mqtt 2): TLS, credentials, a persistent session, manual acks.

MQTT 5 with clean start off and a session expiry, or 3.1.1 with clean session off: either way
the broker keeps the bridge's subscriptions and its unacknowledged QoS 1 messages while it is
away, and hands them over again when it reconnects with the same client id. Acknowledgements
are manual (``manual_ack=True``): the bridge acks a message only once what it carried is
durable. A client certificate comes as PEM text (as ECS injects it from Secrets Manager); it
is written to a private file only for as long as ``ssl`` needs to load it.
"""

from __future__ import annotations

import contextlib
import os
import ssl
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from plantstream.errors import ConfigError
from plantstream.settings import Settings


@dataclass(frozen=True, slots=True)
class BrokerAddress:
    host: str
    port: int
    tls: bool


def parse_url(url: str) -> BrokerAddress:
    """``mqtt://host[:1883]`` or ``mqtts://host[:8883]``."""
    parts = urlsplit(url)
    if parts.scheme not in ("mqtt", "mqtts") or not parts.hostname:
        raise ConfigError("invalid setting PLANTSTREAM_MQTT_URL: use mqtt://host:port or mqtts://")
    tls = parts.scheme == "mqtts"
    return BrokerAddress(parts.hostname, parts.port or (8883 if tls else 1883), tls)


@contextlib.contextmanager
def _pem_files(cert: str, key: str) -> Iterator[tuple[str, str]]:
    with tempfile.TemporaryDirectory(prefix="plantstream-mqtt-") as home:
        paths = []
        for name, text in (("cert.pem", cert), ("key.pem", key)):
            path = Path(home) / name
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as out:
                out.write(text)
            paths.append(str(path))
        yield paths[0], paths[1]


def tls_context(settings: Settings) -> ssl.SSLContext:
    """Verify the broker (``PLANTSTREAM_MQTT_CA_FILE`` or the system's CAs); a client
    certificate if one is configured. TLS 1.2 at least."""
    ctx = ssl.create_default_context(
        cafile=str(settings.mqtt_ca_file) if settings.mqtt_ca_file else None
    )
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    cert, key = settings.mqtt_cert_pem, settings.mqtt_key_pem
    if (cert is None) != (key is None):
        raise ConfigError("PLANTSTREAM_MQTT_CERT_PEM and PLANTSTREAM_MQTT_KEY_PEM go together")
    if cert is not None and key is not None:
        with _pem_files(cert.get_secret_value(), key.get_secret_value()) as (cert_path, key_path):
            ctx.load_cert_chain(cert_path, key_path)
    return ctx


def make_client(
    settings: Settings, *, username: str | None = None, password: str | None = None
) -> mqtt.Client:
    """A paho client for the bridge, not yet connected (``connect`` does that)."""
    v5 = settings.mqtt_protocol == "5"
    client = mqtt.Client(
        callback_api_version=CallbackAPIVersion.VERSION2,
        client_id=settings.mqtt_client_id,
        clean_session=None if v5 else False,
        protocol=MQTTProtocolVersion.MQTTv5 if v5 else MQTTProtocolVersion.MQTTv311,
        manual_ack=True,
        reconnect_on_failure=True,
    )
    client.reconnect_delay_set(min_delay=1, max_delay=30)
    user = username if username is not None else settings.mqtt_username
    secret = password
    if secret is None and settings.mqtt_password is not None:
        secret = settings.mqtt_password.get_secret_value()
    if user:
        client.username_pw_set(user, secret)
    return client


def connect(client: mqtt.Client, settings: Settings, address: BrokerAddress) -> None:
    """Connect with the persistent session: clean start off, session expiry, receive maximum."""
    if address.tls:
        client.tls_set_context(tls_context(settings))
    properties = None
    if settings.mqtt_protocol == "5":
        properties = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        properties.SessionExpiryInterval = settings.mqtt_session_expiry_seconds
        properties.ReceiveMaximum = settings.mqtt_receive_maximum
        client.connect(
            address.host,
            address.port,
            keepalive=settings.mqtt_keepalive_seconds,
            clean_start=False,
            properties=properties,
        )
    else:
        client.connect(address.host, address.port, keepalive=settings.mqtt_keepalive_seconds)


SPARKPLUG_STATE_TYPES = ("NBIRTH", "DBIRTH", "NDEATH", "DDEATH")


def subscriptions(settings: Settings) -> list[str]:
    """The topic filters of this bridge: plain JSON (shared if a group is set) and Sparkplug.

    Sparkplug is one unshared ``spBv1.0/#`` (a node's seq is checked across all its
    messages), or with ``sparkplug_shared`` its NDATA/DDATA under ``$share`` and its births
    and deaths unshared: every bridge sees every birth before the data published after it
    (the broker keeps one session's messages in order), so each can decode whatever data
    the broker gives it, and none can check seq (it sees only part of a node's messages).
    """
    topics = []
    if settings.mqtt_plain_topics:
        share = f"$share/{settings.mqtt_share_group}/" if settings.mqtt_share_group else ""
        topics.append(f"{share}plantstream/v1/#")
    if settings.mqtt_sparkplug and settings.sparkplug_shared:
        share = f"$share/{settings.mqtt_share_group or 'plantstream'}/"
        topics += [f"{share}spBv1.0/+/NDATA/#", f"{share}spBv1.0/+/DDATA/#"]
        topics += [f"spBv1.0/+/{kind}/#" for kind in SPARKPLUG_STATE_TYPES]
    elif settings.mqtt_sparkplug:
        topics.append("spBv1.0/#")
    return topics
