"""Customer-managed KMS keys: one per service (or one for all, as seeds 003/004 ask).

Each key rotates yearly, has a 7-day deletion window, an alias, and an explicit key policy: the
account may administer it (IAM decides who), and may use it only through its AWS service(s).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_aws as aws

from .context import StackContext

# Which AWS services may use each key (via kms:ViaService) on behalf of account principals.
SERVICE_KEYS: dict[str, tuple[str, ...]] = {
    "stream": ("kinesis",),
    "database": ("rds",),
    "cache": ("elasticache",),
    # RDS creates, stores and rotates the master-user secret on this key for us
    "secrets": ("secretsmanager", "rds"),
    "logs": (),
    "images": ("ecr",),
}
# AWS's "key administrators" statement, spelled out: kms:Create* would include CreateGrant and
# so hand out use of the key. PutKeyPolicy must stay, or the key can never be managed again.
ADMIN_ACTIONS = [
    "kms:CreateAlias",
    "kms:UpdateAlias",
    "kms:DeleteAlias",
    "kms:DescribeKey",
    "kms:GetKeyPolicy",
    "kms:PutKeyPolicy",
    "kms:ListKeyPolicies",
    "kms:GetKeyRotationStatus",
    "kms:EnableKeyRotation",
    "kms:DisableKeyRotation",
    "kms:RotateKeyOnDemand",
    "kms:ListKeyRotations",
    "kms:EnableKey",
    "kms:DisableKey",
    "kms:UpdateKeyDescription",
    "kms:ListAliases",
    "kms:ListGrants",
    "kms:RevokeGrant",
    "kms:ListResourceTags",
    "kms:TagResource",
    "kms:UntagResource",
    "kms:ScheduleKeyDeletion",
    "kms:CancelKeyDeletion",
]
# AWS's pattern for its own service keys: principals of this account may use the key only
# through the named services (kms:ViaService), and only from this account (kms:CallerAccount).
_USE_ACTIONS = [
    "kms:Encrypt",
    "kms:Decrypt",
    "kms:ReEncrypt*",
    "kms:GenerateDataKey*",
    "kms:DescribeKey",
    "kms:CreateGrant",
    "kms:ListGrants",
]


def key_policy(*, account: str, partition: str, region: str, purposes: tuple[str, ...]) -> str:
    """The explicit key policy for a key serving ``purposes`` (keys of SERVICE_KEYS)."""
    root = f"arn:{partition}:iam::{account}:root"
    log_groups = f"arn:{partition}:logs:{region}:{account}:log-group:*"
    statements: list[dict[str, Any]] = [
        {
            "Sid": "AccountAdministersKey",
            "Effect": "Allow",
            "Principal": {"AWS": root},
            "Action": ADMIN_ACTIONS,
            "Resource": "*",
        }
    ]
    via = sorted({f"{svc}.{region}.amazonaws.com" for p in purposes for svc in SERVICE_KEYS[p]})
    if via:
        statements.append(
            {
                "Sid": "AccountPrincipalsUseKeyThroughServices",
                "Effect": "Allow",
                "Principal": {"AWS": root},
                "Action": _USE_ACTIONS,
                "Resource": "*",
                "Condition": {
                    "StringEquals": {"kms:ViaService": via, "kms:CallerAccount": account}
                },
            }
        )
    if "logs" in purposes:
        statements.append(
            {
                "Sid": "CloudWatchLogsEncryptsLogGroups",
                "Effect": "Allow",
                "Principal": {"Service": f"logs.{region}.amazonaws.com"},
                "Action": [
                    "kms:Encrypt*",
                    "kms:Decrypt*",
                    "kms:ReEncrypt*",
                    "kms:GenerateDataKey*",
                    "kms:Describe*",
                ],
                "Resource": "*",
                "Condition": {"ArnLike": {"kms:EncryptionContext:aws:logs:arn": log_groups}},
            }
        )
        statements.append(
            {
                "Sid": "CloudWatchAlarmsPublishToEncryptedTopic",
                "Effect": "Allow",
                "Principal": {"Service": "cloudwatch.amazonaws.com"},
                "Action": ["kms:Decrypt", "kms:GenerateDataKey*"],
                "Resource": "*",
                "Condition": {"StringEquals": {"aws:SourceAccount": account}},
            }
        )
    return json.dumps({"Version": "2012-10-17", "Statement": statements})


def _policy_for(region: str, purposes: tuple[str, ...]) -> Callable[[list[str]], str]:
    def build(account_partition: list[str]) -> str:
        account, partition = account_partition
        return key_policy(account=account, partition=partition, region=region, purposes=purposes)

    return build


@dataclass(frozen=True)
class KeysArgs:
    ctx: StackContext
    purposes: tuple[str, ...]


class Keys(pulumi.ComponentResource):
    """The stack's KMS keys, addressed by purpose (``keys.arn("stream")``)."""

    def __init__(
        self, name: str, args: KeysArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("plantstream:keys:Keys", name, None, opts)
        ctx = args.ctx
        child = pulumi.ResourceOptions(parent=self)
        single = ctx.settings.key_mode == "single"
        groups: dict[str, tuple[str, ...]] = (
            {"data": args.purposes} if single else {p: (p,) for p in args.purposes}
        )
        self._keys: dict[str, aws.kms.Key] = {}
        for key_name, purposes in groups.items():
            policy = pulumi.Output.all(ctx.account_id, ctx.partition).apply(
                _policy_for(ctx.region, purposes)
            )
            key = aws.kms.Key(
                f"{name}-{key_name}",
                description=f"plantstream {key_name} key ({', '.join(purposes)}) for {ctx.suffix}",
                deletion_window_in_days=7,
                enable_key_rotation=True,
                rotation_period_in_days=365,
                policy=policy,
                tags=ctx.tags(aws.kms.Key, ctx.name(f"kms-{key_name}")),
                opts=child,
            )
            aws.kms.Alias(
                f"{name}-{key_name}-alias",
                name=f"alias/plantstream-{key_name}-{ctx.suffix}",
                target_key_id=key.key_id,
                opts=child,
            )
            for purpose in purposes:
                self._keys[purpose] = key
        first = self._keys[args.purposes[0]]
        self.primary_key_id = first.key_id
        self.register_outputs(
            {
                "key_arns": {p: k.arn for p, k in self._keys.items()},
            }
        )

    def arn(self, purpose: str) -> pulumi.Output[str]:
        return self._keys[purpose].arn

    def key_id(self, purpose: str) -> pulumi.Output[str]:
        return self._keys[purpose].key_id

    @property
    def key_ids(self) -> dict[str, pulumi.Output[str]]:
        return {p: k.key_id for p, k in self._keys.items()}
