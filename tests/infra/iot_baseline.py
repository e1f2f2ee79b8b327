"""The AWS IoT Core part of the compliant baseline graph (test_policy_baseline.py): the device
and bridge policies as the program writes them, logging, the bridge's exclusive certificate
and the bridge task that takes its key from a secret on a customer key."""

from __future__ import annotations

import json
from typing import Any

from plantstream_infra.iot_policies import bridge_policies, device_policies

ACCOUNT = "123456789012"
ARN_PREFIX = f"arn:aws:iot:us-east-1:{ACCOUNT}:"
CERT_ARN = f"{ARN_PREFIX}cert/" + "c" * 64
FACILITIES = ("plant-a", "plant-b")


def iot_graph(
    tags: dict[str, str], key_arn: str, container: dict[str, Any]
) -> dict[str, tuple[str, dict[str, Any]]]:
    identity_arn = f"arn:aws:secretsmanager:us-east-1:{ACCOUNT}:secret:bridge-identity-dev-XyZ123"
    bridge_container = {
        **container,
        "name": "bridge",
        "secrets": [
            *container["secrets"],
            {"name": "PLANTSTREAM_MQTT_CERT_PEM", "valueFrom": f"{identity_arn}:cert_pem::"},
            {"name": "PLANTSTREAM_MQTT_KEY_PEM", "valueFrom": f"{identity_arn}:key_pem::"},
        ],
    }
    devices = device_policies(arn_prefix=ARN_PREFIX, host_id="plantstream")
    bridge = bridge_policies(
        arn_prefix=ARN_PREFIX,
        client_id="plantstream-bridge-dev",
        chunks=[list(FACILITIES)],
        share_group="plantstream",
        host_id="plantstream",
    )
    return {
        **{
            f"iot-{key}-policy": (
                "aws:iot/policy:Policy",
                {"name": f"iot-{key}-dev", "policy": json.dumps(doc), "tags": tags},
            )
            for key, doc in {**devices, **bridge}.items()
        },
        "iot-logging": (
            "aws:iot/loggingOptions:LoggingOptions",
            {
                "defaultLogLevel": "WARN",
                "disableAllLogs": False,
                "roleArn": f"arn:aws:iam::{ACCOUNT}:role/iot-logs-dev",
            },
        ),
        "iot-bridge-thing": (
            "aws:iot/thing:Thing",
            {"name": "plantstream-bridge-dev", "attributes": {"role": "sparkplug-host"}},
        ),
        "iot-bridge-principal": (
            "aws:iot/thingPrincipalAttachment:ThingPrincipalAttachment",
            {
                "thing": "plantstream-bridge-dev",
                "principal": CERT_ARN,
                "thingPrincipalType": "EXCLUSIVE_THING",
            },
        ),
        "bridge-identity": (
            "aws:secretsmanager/secret:Secret",
            {"name": "bridge-identity-dev", "arn": identity_arn, "kmsKeyId": key_arn, "tags": tags},
        ),
        "bridge-identity-rotation": (
            "aws:secretsmanager/secretRotation:SecretRotation",
            {
                "secretId": identity_arn,
                "rotationLambdaArn": "fn",
                "rotationRules": {"automaticallyAfterDays": 30},
            },
        ),
        "bridge-task": (
            "aws:ecs/taskDefinition:TaskDefinition",
            {
                "family": "bridge-dev",
                "networkMode": "awsvpc",
                "containerDefinitions": json.dumps([bridge_container]),
                "tags": tags,
            },
        ),
    }
