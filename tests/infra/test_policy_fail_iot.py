"""Each AWS IoT Core control refuses a resource that breaks it: one row per way of breaking it,
on the compliant baseline (device and bridge policies, logging, the bridge's certificate and
the bridge task that takes its key from a secret)."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from iot_baseline import ARN_PREFIX, CERT_ARN
from test_policy_baseline import (
    FailTable,
    Graph,
    Mutation,
    cases,
    change,
    check_refusal,
    drop,
    props,
    remove,
)

pytestmark = pytest.mark.infra

Statements = list[dict[str, Any]]


def _edit(policy: str, edit: Callable[[Statements], None]) -> Mutation:
    """Change the statements of one IoT policy document in place."""

    def mutate(graph: Graph) -> str:
        doc = json.loads(props(graph, policy)["policy"])
        edit(doc["Statement"])
        props(graph, policy)["policy"] = json.dumps(doc)
        return policy

    return mutate


def _by_sid(sid: str, **values: Any) -> Callable[[Statements], None]:
    def edit(statements: Statements) -> None:
        (stmt,) = [s for s in statements if s["Sid"] == sid]
        stmt.update(values)

    return edit


def _add(stmt: dict[str, Any]) -> Callable[[Statements], None]:
    return lambda statements: statements.append(stmt)


def _allow(action: str, *resources: str) -> Callable[[Statements], None]:
    return _add({"Sid": "X", "Effect": "Allow", "Action": [action], "Resource": list(resources)})


def _key_in_env(graph: Graph) -> str:
    (container,) = json.loads(props(graph, "bridge-task")["containerDefinitions"])
    container["secrets"] = [
        s for s in container["secrets"] if s["name"] != "PLANTSTREAM_MQTT_KEY_PEM"
    ]
    container["environment"].append({"name": "PLANTSTREAM_MQTT_KEY_PEM", "value": "pem text"})
    props(graph, "bridge-task")["containerDefinitions"] = json.dumps([container])
    return "bridge-task"


def _key_from(value_from: str) -> Mutation:
    def mutate(graph: Graph) -> str:
        (container,) = json.loads(props(graph, "bridge-task")["containerDefinitions"])
        for ref in container["secrets"]:
            if ref["name"] == "PLANTSTREAM_MQTT_KEY_PEM":
                ref["valueFrom"] = value_from
        props(graph, "bridge-task")["containerDefinitions"] = json.dumps([container])
        return "bridge-task"

    return mutate


def _key_secret_unencrypted(graph: Graph) -> str:
    props(graph, "bridge-identity").pop("kmsKeyId")
    return "bridge-task"


def _key_secret_aws_managed(graph: Graph) -> str:
    props(graph, "bridge-identity")["kmsKeyId"] = "alias/aws/secretsmanager"
    return "bridge-task"


def _second_thing(graph: Graph) -> str:
    graph["iot-other-principal"] = (
        "aws:iot/thingPrincipalAttachment:ThingPrincipalAttachment",
        {
            "thing": "plant-a-press-1-dev",
            "principal": CERT_ARN,
            "thingPrincipalType": "EXCLUSIVE_THING",
        },
    )
    return "iot-other-principal"


OTHER = "plant-b"
FAILS: FailTable = {
    "iot-policy-overly-permissive": {
        "iot-star-action": _edit("iot-device-policy", _allow("iot:*", f"{ARN_PREFIX}topic/a/b")),
        "action-prefix-wildcard": _edit(
            "iot-device-policy", _allow("iot:Pub*", f"{ARN_PREFIX}topic/spBv1.0/plant-a/x")
        ),
        "star-resource": _edit("iot-bridge-policy", _allow("iot:Publish", "*")),
        "whole-topic-namespace": _edit(
            "iot-bridge-policy", _allow("iot:Receive", f"{ARN_PREFIX}topic/*")
        ),
        "subscribe-everything": _edit(
            "iot-bridge-policy", _allow("iot:Subscribe", f"{ARN_PREFIX}topicfilter/#")
        ),
        "any-client": _edit("iot-device-policy", _allow("iot:Connect", f"{ARN_PREFIX}client/*")),
        "not-action": _edit(
            "iot-device-policy",
            _add({"Sid": "N", "Effect": "Allow", "NotAction": ["iot:Connect"], "Resource": []}),
        ),
        "not-json": change("iot-device-policy", policy="{not json"),
    },
    "iot-policy-size": {
        "one-facility-too-many": _edit(
            "iot-bridge-facilities-1-policy",
            _allow(
                "iot:Receive",
                *(f"{ARN_PREFIX}topic/spBv1.0/plant-{n:03d}/*" for n in range(40)),
            ),
        ),
    },
    "iot-policy-connect-client-id": {
        "no-is-attached-condition": _edit(
            "iot-device-policy", _by_sid("ConnectAsOwnThing", Condition={})
        ),
        "is-attached-false": _edit(
            "iot-device-policy",
            _by_sid(
                "ConnectAsOwnThing",
                Condition={"Bool": {"iot:Connection.Thing.IsAttached": "false"}},
            ),
        ),
        "thing-name-with-suffix": _edit(
            "iot-device-policy",
            _by_sid(
                "ConnectAsOwnThing",
                Resource=[f"{ARN_PREFIX}client/${{iot:Connection.Thing.ThingName}}*"],
            ),
        ),
        "short-client-prefix": _edit(
            "iot-bridge-policy",
            _by_sid("ConnectAsTheBridge", Resource=[f"{ARN_PREFIX}client/p*"]),
        ),
        "connect-on-a-topic": _edit(
            "iot-bridge-policy",
            _by_sid("ConnectAsTheBridge", Resource=[f"{ARN_PREFIX}topic/plantstream-bridge-dev"]),
        ),
    },
    "iot-policy-facility-confinement": {
        "publish-any-facility": _edit(
            "iot-device-policy", _allow("iot:Publish", f"{ARN_PREFIX}topic/spBv1.0/*")
        ),
        "facility-level-wildcard": _edit(
            "iot-device-policy", _allow("iot:Publish", f"{ARN_PREFIX}topic/spBv1.0/plant-*/NDATA/x")
        ),
        "subscribe-every-group": _edit(
            "iot-device-policy", _allow("iot:Subscribe", f"{ARN_PREFIX}topicfilter/spBv1.0/+/#")
        ),
        "receive-plain-namespace": _edit(
            "iot-bridge-policy", _allow("iot:Receive", f"{ARN_PREFIX}topic/plantstream/v1/*")
        ),
        "topic-outside-both-namespaces": _edit(
            "iot-device-policy", _allow("iot:Publish", f"{ARN_PREFIX}topic/$aws/things/x/shadow")
        ),
        "state-of-any-host": _edit(
            "iot-device-policy", _allow("iot:Receive", f"{ARN_PREFIX}topic/spBv1.0/STATE/*")
        ),
        "share-group-wildcard": _edit(
            "iot-bridge-policy",
            _allow("iot:Subscribe", f"{ARN_PREFIX}topicfilter/$share/*/spBv1.0/#"),
        ),
        "facility-level-only": _edit(
            "iot-bridge-policy", _allow("iot:Publish", f"{ARN_PREFIX}topic/spBv1.0/{OTHER}")
        ),
    },
    "iot-logging-enabled": {
        "no-logging-options": remove("iot-logging", "iot-device-policy"),
        "disabled-level": change("iot-logging", defaultLogLevel="DISABLED"),
        "all-logs-disabled": change("iot-logging", disableAllLogs=True),
        "no-role": drop("iot-logging", "roleArn"),
    },
    "iot-certificate-not-shared": {
        "two-things-one-certificate": _second_thing,
        "non-exclusive": change("iot-bridge-principal", thingPrincipalType="NON_EXCLUSIVE_THING"),
        "type-unset": drop("iot-bridge-principal", "thingPrincipalType"),
    },
    "iot-client-key-in-secret": {
        "key-as-plain-environment": _key_in_env,
        "secret-outside-the-stack": _key_from(
            "arn:aws:secretsmanager:us-east-1:123456789012:secret:elsewhere-AbCdEf:key_pem::"
        ),
        "secret-without-key": _key_secret_unencrypted,
        "secret-on-aws-managed-key": _key_secret_aws_managed,
    },
}


@pytest.mark.parametrize(("control", "mutate"), cases(FAILS))
def test_the_control_refuses(control: str, mutate: Mutation) -> None:
    check_refusal(control, mutate)
