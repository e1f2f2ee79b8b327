"""AWS IoT Core: the registry (thing groups per facility, things), the device and bridge
policies, IoT Core logging, and the bridge's identity; the bridge service is in iot_bridge.py.

Devices publish Sparkplug B or plain JSON to IoT Core; ``plantstream serve mqtt`` consumes it
as an ECS service with shared subscriptions (docs/aws-iot.md says why not a topic rule).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_aws as aws

from .context import StackContext
from .iot_bridge import BridgeService
from .iot_policies import bridge_policies, device_policies, facility_chunks
from .secrets import SECRETS_MANAGER_1
from .services import ServicesArgs

# IoT Core writes every log event of an account and region to this group (AWS's name).
IOT_LOG_GROUP = "AWSIotLogsV2"
NO_ROTATION_REASON = (
    "an IoT client certificate is rotated by issuing a new certificate, attaching the bridge "
    "policy and redeploying (docs/aws-iot.md), not by a Secrets Manager rotation function"
)


@dataclass(frozen=True)
class IotArgs:
    ctx: StackContext
    services: ServicesArgs
    cluster_arn: pulumi.Input[str]
    logs_key_arn: pulumi.Input[str]
    secrets_key_arn: pulumi.Input[str]


def thing_name(ctx: StackContext, facility: str, device: str) -> str:
    """A thing's name is its MQTT client id: unique in the account, so it carries the suffix."""
    return ctx.name(f"{facility}-{device}")


class Iot(pulumi.ComponentResource):
    """Things and groups per facility, the policies, logging, the bridge and its certificate."""

    endpoint: pulumi.Output[str]

    def __init__(self, name: str, args: IotArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("plantstream:iot:Iot", name, None, opts)
        ctx = args.ctx
        iot = ctx.settings.iot
        child = pulumi.ResourceOptions(parent=self)
        arn_prefix = pulumi.Output.concat(
            "arn:", ctx.partition, f":iot:{ctx.region}:", ctx.account_id, ":"
        )
        self.endpoint = aws.iot.get_endpoint_output(
            endpoint_type="iot:Data-ATS", opts=pulumi.InvokeOutputOptions(parent=self)
        ).endpoint_address
        self.device_policies = self._policies(
            name,
            ctx,
            arn_prefix.apply(lambda p: device_policies(arn_prefix=p, host_id=iot.host_id)),
            ("device", "device-commands"),
        )
        self.groups: dict[str, aws.iot.ThingGroup] = {}
        self.things: dict[str, aws.iot.Thing] = {}
        for facility, devices in iot.facilities.items():
            self._facility(name, ctx, facility, devices)
        self._logging(name, args)

        client_id = ctx.name("plantstream-bridge")
        chunks = facility_chunks(
            list(iot.facilities), region=ctx.region, share_group=iot.share_group
        )
        self.bridge_policies = self._policies(
            name,
            ctx,
            arn_prefix.apply(
                lambda p: bridge_policies(
                    arn_prefix=p,
                    client_id=client_id,
                    chunks=chunks,
                    share_group=iot.share_group,
                    host_id=iot.host_id,
                )
            ),
            ("bridge", *(f"bridge-facilities-{n}" for n in range(1, len(chunks) + 1))),
        )
        identity_secret_arn = self._bridge_identity(name, args)
        self.bridge = BridgeService(
            f"{name}-bridge",
            args.services,
            cluster_arn=args.cluster_arn,
            endpoint=self.endpoint,
            client_id=client_id,
            identity_secret_arn=identity_secret_arn,
            opts=child,
        )
        self.bridge_identity_secret_arn = identity_secret_arn
        self.register_outputs(
            {
                "endpoint": self.endpoint,
                "device_policy_names": [p.name for p in self.device_policies.values()],
                "thing_group_names": {f: g.name for f, g in self.groups.items()},
            }
        )

    def _policies(
        self,
        name: str,
        ctx: StackContext,
        documents: pulumi.Output[dict[str, dict[str, Any]]],
        keys: tuple[str, ...],
    ) -> dict[str, aws.iot.Policy]:
        """One IoT policy per document; ``keys`` are known at program time (no resource is
        created inside an apply), the documents once the account and partition are."""

        def document(key: str) -> pulumi.Output[str]:
            return documents.apply(lambda docs: json.dumps(docs[key]))

        return {
            key: aws.iot.Policy(
                f"{name}-{key}-policy",
                name=ctx.name(f"iot-{key}"),
                policy=document(key),
                tags=ctx.tags(aws.iot.Policy, ctx.name(f"iot-{key}")),
                opts=pulumi.ResourceOptions(parent=self),
            )
            for key in keys
        }

    def _facility(
        self, name: str, ctx: StackContext, facility: str, devices: tuple[str, ...]
    ) -> None:
        """One thing group per facility (devices provisioned later join it too), one thing per
        listed device, its attributes the policy variables the device policy confines by."""
        child = pulumi.ResourceOptions(parent=self)
        group_name = ctx.name(f"plantstream-{facility}")
        group = aws.iot.ThingGroup(
            f"{name}-{facility}-group",
            name=group_name,
            properties={
                "description": f"plantstream facility {facility}",
                "attribute_payload": {"attributes": {"facility": facility}},
            },
            tags=ctx.tags(aws.iot.ThingGroup, group_name),
            opts=child,
        )
        self.groups[facility] = group
        # the device policies apply to every thing of the group (client id = thing name)
        for key, policy in self.device_policies.items():
            aws.iot.PolicyAttachment(
                f"{name}-{facility}-{key}-attachment",
                policy=policy.name,
                target=group.arn,
                opts=child,
            )
        for device in devices:
            thing = aws.iot.Thing(
                f"{name}-{facility}-{device}",
                name=thing_name(ctx, facility, device),
                attributes={"facility": facility, "node": device},
                opts=child,
            )
            aws.iot.ThingGroupMembership(
                f"{name}-{facility}-{device}-membership",
                thing_group_name=group.name,
                thing_name=thing.name,
                opts=child,
            )
            self.things[f"{facility}/{device}"] = thing

    def _logging(self, name: str, args: IotArgs) -> None:
        """IoT Core logs (connects, auth failures, publish errors) into a KMS-encrypted group.
        Both are one per account and region, so a destroy keeps them (retain_on_delete), as
        the API Gateway logging setting (infra/README.md)."""
        ctx = args.ctx
        retained = pulumi.ResourceOptions(parent=self, retain_on_delete=True)
        group = aws.cloudwatch.LogGroup(
            f"{name}-logs",
            name=IOT_LOG_GROUP,
            retention_in_days=ctx.settings.log_retention_days,
            kms_key_id=args.logs_key_arn,
            tags=ctx.tags(aws.cloudwatch.LogGroup),
            opts=retained,
        )
        assume = ctx.account_id.apply(
            lambda account: json.dumps(
                {
                    "Version": "2012-10-17",
                    "Statement": [
                        {
                            "Effect": "Allow",
                            "Action": "sts:AssumeRole",
                            "Principal": {"Service": "iot.amazonaws.com"},
                            "Condition": {"StringEquals": {"aws:SourceAccount": account}},
                        }
                    ],
                }
            )
        )
        role = aws.iam.Role(
            f"{name}-logging-role",
            name_prefix=ctx.name("iot-logs")[:30] + "-",
            assume_role_policy=assume,
            tags=ctx.tags(aws.iam.Role, ctx.name("iot-logs")),
            opts=retained,
        )
        policy = aws.iam.RolePolicy(
            f"{name}-logging",
            name=ctx.name("iot-logs"),
            role=role.id,
            policy=pulumi.Output.json_dumps(
                {
                    "Version": "2012-10-17",
                    "Statement": [
                        {
                            "Sid": "WriteIotLogs",
                            "Effect": "Allow",
                            "Action": [
                                "logs:CreateLogGroup",
                                "logs:CreateLogStream",
                                "logs:PutLogEvents",
                                "logs:DescribeLogStreams",
                            ],
                            "Resource": [group.arn, pulumi.Output.concat(group.arn, ":*")],
                        }
                    ],
                }
            ),
            opts=retained,
        )
        self.logging = aws.iot.LoggingOptions(
            f"{name}-logging-options",
            default_log_level=ctx.settings.iot.log_level,
            disable_all_logs=False,
            role_arn=role.arn,
            opts=pulumi.ResourceOptions(
                parent=self, depends_on=[policy, group], retain_on_delete=True
            ),
        )

    def _bridge_identity(self, name: str, args: IotArgs) -> pulumi.Output[str]:
        """An IoT-issued certificate and key for the bridge, kept only in Secrets Manager (on
        the secrets key) and in the encrypted Pulumi state; ECS injects them as secrets."""
        ctx = args.ctx
        child = pulumi.ResourceOptions(parent=self)
        cert = aws.iot.Certificate(f"{name}-bridge-certificate", active=True, opts=child)
        # a registered thing for the certificate, exclusively (Device Defender: not shared)
        thing = aws.iot.Thing(
            f"{name}-bridge-thing",
            name=ctx.name("plantstream-bridge"),
            attributes={"role": "sparkplug-host"},
            opts=child,
        )
        aws.iot.ThingPrincipalAttachment(
            f"{name}-bridge-thing-principal",
            thing=thing.name,
            principal=cert.arn,
            thing_principal_type="EXCLUSIVE_THING",
            opts=child,
        )
        for key, policy in self.bridge_policies.items():
            aws.iot.PolicyAttachment(
                f"{name}-{key}-attachment", policy=policy.name, target=cert.arn, opts=child
            )
        secret = aws.secretsmanager.Secret(
            f"{name}-bridge-identity",
            name_prefix=f"plantstream/mqtt-bridge-{ctx.suffix}-",
            description="plantstream MQTT bridge client certificate and key (AWS IoT Core)",
            kms_key_id=args.secrets_key_arn,
            recovery_window_in_days=7,
            tags=ctx.tags(
                aws.secretsmanager.Secret,
                ctx.name("mqtt-bridge-identity"),
                deviations={SECRETS_MANAGER_1: NO_ROTATION_REASON},
            ),
            opts=child,
        )
        aws.secretsmanager.SecretVersion(
            f"{name}-bridge-identity-value",
            secret_id=secret.id,
            secret_string=pulumi.Output.json_dumps(
                {"cert_pem": cert.certificate_pem, "key_pem": cert.private_key}
            ),
            opts=child,
        )
        return secret.arn
