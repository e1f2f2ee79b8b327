"""Sparkplug B topics: ``spBv1.0/{group}/{type}/{edge_node}[/{device}]`` and the host STATE.

Parsed once per message; a topic that is not of this form is refused (``invalid_topic``).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from plantstream.errors import ErrorCode, InvalidInputError

NAMESPACE = "spBv1.0"


class MessageType(StrEnum):
    NBIRTH = "NBIRTH"
    NDEATH = "NDEATH"
    DBIRTH = "DBIRTH"
    DDEATH = "DDEATH"
    NDATA = "NDATA"
    DDATA = "DDATA"
    NCMD = "NCMD"
    DCMD = "DCMD"
    STATE = "STATE"


_DEVICE_TYPES = {MessageType.DBIRTH, MessageType.DDEATH, MessageType.DDATA, MessageType.DCMD}


@dataclass(frozen=True, slots=True)
class SparkplugTopic:
    group: str
    kind: MessageType
    edge_node: str
    device: str | None = None


def parse_topic(topic: str) -> SparkplugTopic:
    """The parts of a Sparkplug topic; ``InvalidInputError(invalid_topic)`` if it is not one.

    A host's ``spBv1.0/STATE/{host_id}`` comes back with the host id as ``edge_node``.
    """
    parts = topic.split("/")
    if len(parts) == 3 and parts[0] == NAMESPACE and parts[1] == "STATE" and parts[2]:
        return SparkplugTopic("", MessageType.STATE, parts[2])
    if len(parts) not in (4, 5) or parts[0] != NAMESPACE or not all(parts):
        raise InvalidInputError(ErrorCode.INVALID_TOPIC, f"not a Sparkplug B topic: {topic[:200]}")
    try:
        kind = MessageType(parts[2])
    except ValueError:
        raise InvalidInputError(
            ErrorCode.INVALID_TOPIC, f"unknown Sparkplug message type {parts[2][:16]!r}"
        ) from None
    device = parts[4] if len(parts) == 5 else None
    if (device is not None) != (kind in _DEVICE_TYPES):
        raise InvalidInputError(
            ErrorCode.INVALID_TOPIC, f"{kind} {'needs' if device is None else 'takes no'} device"
        )
    return SparkplugTopic(parts[1], kind, parts[3], device)


def state_topic(host_id: str) -> str:
    return f"{NAMESPACE}/STATE/{host_id}"


def ncmd_topic(group: str, edge_node: str) -> str:
    return f"{NAMESPACE}/{group}/NCMD/{edge_node}"
