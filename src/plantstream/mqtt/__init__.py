"""The MQTT bridge: plain JSON topics and Sparkplug B 3.0 (primary host) into the stream.

``plantstream serve mqtt`` runs ``role.run``; docs/mqtt.md says how topics, names and acks work.
"""

from plantstream.mqtt.bridge import Bridge, Inbound, Route
from plantstream.mqtt.outcome import Outcome
from plantstream.mqtt.plain import PlainTopics
from plantstream.mqtt.role import build_bridge, open_session, run
from plantstream.mqtt.session import BrokerSession
from plantstream.mqtt.sparkplug.host import SparkplugHost
from plantstream.mqtt.sparkplug.mapping import NameRule

__all__ = [
    "Bridge",
    "BrokerSession",
    "Inbound",
    "NameRule",
    "Outcome",
    "PlainTopics",
    "Route",
    "SparkplugHost",
    "build_bridge",
    "open_session",
    "run",
]
