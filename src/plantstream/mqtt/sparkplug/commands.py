"""What the host publishes: its STATE birth and death certificate, and rebirth requests."""

from __future__ import annotations

import json

from plantstream.mqtt.sparkplug.datatypes import BOOLEAN
from plantstream.mqtt.sparkplug.sparkplug_b_pb2 import Payload

REBIRTH = "Node Control/Rebirth"


def state_payload(*, online: bool, timestamp_ms: int) -> bytes:
    """``{"online": .., "timestamp": ..}`` of ``spBv1.0/STATE/{host_id}`` (Sparkplug 3.0): the
    birth and the will of one connection carry the same timestamp."""
    return json.dumps({"online": online, "timestamp": timestamp_ms}).encode()


def rebirth_request(*, timestamp_ms: int) -> bytes:
    """An NCMD payload asking an edge node for a new NBIRTH (and its devices' DBIRTHs)."""
    payload = Payload(timestamp=timestamp_ms)
    payload.metrics.add(name=REBIRTH, timestamp=timestamp_ms, datatype=BOOLEAN, boolean_value=True)
    return bytes(payload.SerializeToString())
