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

from .policies.iot import FACILITY_VAR, IS_ATTACHED, NODE_VAR, PLAIN, SPARKPLUG, THING_NAME

# Sparkplug B 3.0 messages an edge node publishes (its NDEATH is its MQTT will, which IoT
# Core checks at CONNECT) and the commands it receives.
NODE_MESSAGES = ("NBIRTH", "NDEATH", "NDATA")
DEVICE_MESSAGES = ("DBIRTH", "DDEATH", "DDATA")


def _doc(*statements: dict[str, Any]) -> dict[str, Any]:
    return {"Version": "2012-10-17", "Statement": list(statements)}


def device_policy(*, arn_prefix: str, host_id: str) -> dict[str, Any]:
    """``arn_prefix`` is ``arn:<partition>:iot:<region>:<account>:``."""
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
    return _doc(
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


def bridge_policy(
    *,
    arn_prefix: str,
    client_id: str,
    facilities: Sequence[str],
    share_group: str,
    host_id: str,
) -> dict[str, Any]:
    """The Sparkplug primary host: shared subscriptions, delivery per served facility, node and
    device commands (rebirth requests) to those facilities, and its retained STATE."""
    topic, tfilter = f"{arn_prefix}topic/", f"{arn_prefix}topicfilter/"
    state = f"{SPARKPLUG}/STATE/{host_id}"
    namespaces = (SPARKPLUG, PLAIN)
    filters = [f"$share/{share_group}/{ns}/#" for ns in namespaces] + [
        f"$share/{share_group}/{ns}/{f}/#" for ns in namespaces for f in facilities
    ]
    return _doc(
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
            "Resource": [tfilter + f for f in [*filters, state]],
        },
        {
            "Sid": "ReceiveServedFacilities",
            "Effect": "Allow",
            "Action": ["iot:Receive"],
            "Resource": [topic + f"{ns}/{f}/*" for ns in namespaces for f in facilities]
            + [topic + state],
        },
        {
            "Sid": "CommandServedFacilities",
            "Effect": "Allow",
            "Action": ["iot:Publish"],
            "Resource": [
                topic + f"{SPARKPLUG}/{f}/{cmd}/*" for f in facilities for cmd in ("NCMD", "DCMD")
            ],
        },
        {
            "Sid": "HostState",
            "Effect": "Allow",
            "Action": ["iot:Publish", "iot:RetainPublish"],
            "Resource": [topic + state],
        },
    )
