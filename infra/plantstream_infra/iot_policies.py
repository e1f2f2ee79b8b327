"""The AWS IoT Core policy documents: one for every device, one for the bridge.

A device is a thing with the attributes ``facility`` (its Sparkplug group id) and ``node``
(its edge node id, or its device id on ``plantstream/v1``); one policy serves all of them
through thing policy variables, so a device's certificate grants its own facility's topics and
nothing else, and only when it connects with the client id equal to its thing name. The bridge
(``plantstream serve mqtt``) subscribes through a shared subscription and receives only the
facilities this stack serves (IoT Core checks ``iot:Receive`` on every delivery).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from .policies.iot import (
    FACILITY_VAR,
    IS_ATTACHED,
    MAX_POLICY_CHARS,
    NODE_VAR,
    PLAIN,
    SPARKPLUG,
    THING_NAME,
    policy_chars,
)

# Sparkplug B 3.0 messages an edge node publishes (its NDEATH is its MQTT will, which IoT
# Core checks at CONNECT) and the commands it receives.
NODE_MESSAGES = ("NBIRTH", "NDEATH", "NDATA")
DEVICE_MESSAGES = ("DBIRTH", "DDEATH", "DDATA")


def _doc(*statements: dict[str, Any]) -> dict[str, Any]:
    return {"Version": "2012-10-17", "Statement": list(statements)}


def device_policies(*, arn_prefix: str, host_id: str) -> dict[str, dict[str, Any]]:
    """The device's two documents (IoT Core allows 2048 characters per document): connecting
    and publishing, and the commands and host state it subscribes to and receives. Both are
    attached to every facility's thing group. ``arn_prefix``: ``arn:<p>:iot:<region>:<acct>:``."""
    topic, tfilter = f"{arn_prefix}topic/", f"{arn_prefix}topicfilter/"
    sp, plain = f"{SPARKPLUG}/{FACILITY_VAR}", f"{PLAIN}/{FACILITY_VAR}"
    state = f"{SPARKPLUG}/STATE/{host_id}"
    own_topics = [
        *(f"{sp}/{m}/{NODE_VAR}" for m in NODE_MESSAGES),
        *(f"{sp}/{m}/{NODE_VAR}/*" for m in DEVICE_MESSAGES),
        f"{plain}/{NODE_VAR}",
        f"{plain}/{NODE_VAR}/*",
    ]
    commands = [f"{sp}/NCMD/{NODE_VAR}", f"{sp}/DCMD/{NODE_VAR}/*"]
    publish = _doc(
        {
            "Sid": "ConnectAsOwnThing",
            "Effect": "Allow",
            "Action": ["iot:Connect"],
            "Resource": [f"{arn_prefix}client/{THING_NAME}"],
            "Condition": {"Bool": {IS_ATTACHED: "true"}},
        },
        {
            "Sid": "PublishOwnFacilityAndNode",
            "Effect": "Allow",
            "Action": ["iot:Publish"],
            "Resource": [topic + t for t in own_topics],
        },
    )
    commands_doc = _doc(
        {
            "Sid": "SubscribeOwnCommandsAndHostState",
            "Effect": "Allow",
            "Action": ["iot:Subscribe"],
            # a filter is matched literally: the device subscribes to DCMD/<node>/+ or per device
            "Resource": [tfilter + t for t in (*commands, f"{sp}/DCMD/{NODE_VAR}/+", state)],
        },
        {
            "Sid": "ReceiveOwnCommandsAndHostState",
            "Effect": "Allow",
            "Action": ["iot:Receive"],
            "Resource": [topic + t for t in (*commands, state)],
        },
    )
    return {"device": publish, "device-commands": commands_doc}


def _facility_statements(
    arn_prefix: str, facilities: Sequence[str], share_group: str
) -> dict[str, Any]:
    topic, tfilter = f"{arn_prefix}topic/", f"{arn_prefix}topicfilter/"
    namespaces = (SPARKPLUG, PLAIN)
    return _doc(
        {
            "Sid": "SharedSubscriptionsPerFacility",
            "Effect": "Allow",
            "Action": ["iot:Subscribe"],
            "Resource": [
                tfilter + f"$share/{share_group}/{ns}/{f}/#"
                for ns in namespaces
                for f in facilities
            ],
        },
        {
            "Sid": "ReceiveServedFacilities",
            "Effect": "Allow",
            "Action": ["iot:Receive"],
            "Resource": [topic + f"{ns}/{f}/*" for ns in namespaces for f in facilities],
        },
        {
            "Sid": "CommandServedFacilities",
            "Effect": "Allow",
            "Action": ["iot:Publish"],
            "Resource": [
                topic + f"{SPARKPLUG}/{f}/{cmd}/*" for f in facilities for cmd in ("NCMD", "DCMD")
            ],
        },
    )


def facility_chunks(facilities: Sequence[str], *, region: str, share_group: str) -> list[list[str]]:
    """Facilities grouped so that each bridge document fits IoT Core's size limit, decided at
    program time (the number of policies must not depend on an output) with the longest ARN
    prefix the region can have."""
    widest = f"arn:aws-iso-b:iot:{region}:000000000000:"
    chunks: list[list[str]] = []
    for facility in sorted(facilities):
        if (
            chunks
            and policy_chars(_facility_statements(widest, [*chunks[-1], facility], share_group))
            <= MAX_POLICY_CHARS
        ):
            chunks[-1].append(facility)
        else:
            chunks.append([facility])
    return chunks


def bridge_policies(
    *,
    arn_prefix: str,
    client_id: str,
    chunks: Sequence[Sequence[str]],
    share_group: str,
    host_id: str,
) -> dict[str, dict[str, Any]]:
    """The Sparkplug primary host: ``bridge`` (connect, shared subscriptions, its retained
    STATE) and one ``bridge-facilities-<n>`` per chunk of served facilities (delivery, node
    and device commands such as rebirth requests). All attach to the bridge's certificate."""
    topic, tfilter = f"{arn_prefix}topic/", f"{arn_prefix}topicfilter/"
    state = f"{SPARKPLUG}/STATE/{host_id}"
    base = _doc(
        {
            "Sid": "ConnectAsTheBridge",
            "Effect": "Allow",
            "Action": ["iot:Connect"],
            # one id per bridge task when several run (<id>-<n>), each its own session
            "Resource": [f"{arn_prefix}client/{client_id}", f"{arn_prefix}client/{client_id}-*"],
        },
        {
            "Sid": "SharedSubscriptions",
            "Effect": "Allow",
            "Action": ["iot:Subscribe"],
            # delivery is checked per message by iot:Receive, which names the served facilities
            "Resource": [
                tfilter + f"$share/{share_group}/{SPARKPLUG}/#",
                tfilter + f"$share/{share_group}/{PLAIN}/#",
                tfilter + state,
            ],
        },
        {
            "Sid": "HostState",
            "Effect": "Allow",
            "Action": ["iot:Publish", "iot:RetainPublish", "iot:Receive"],
            "Resource": [topic + state],
        },
    )
    docs = {"bridge": base}
    for n, chunk in enumerate(chunks, start=1):
        docs[f"bridge-facilities-{n}"] = _facility_statements(arn_prefix, chunk, share_group)
    return docs
