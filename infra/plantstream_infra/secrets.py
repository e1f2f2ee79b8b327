"""Secrets Manager: the cache AUTH token, KMS-encrypted, rotated by a small Lambda.

(The database master secret is created and rotated by RDS itself; see database.py.)
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pulumi
import pulumi_aws as aws
import pulumi_random as random

from .context import StackContext
from .rotation.redis_auth_rotation import ALLOWED_SPECIAL, TOKEN_LENGTH

SECRETS_MANAGER_1 = "secretsmanager-1-rotation-enabled"
# Why the API-key HMAC secret is the one secret without rotation (shown as an advisory).
NO_ROTATION_REASON = (
    "an automatic rotation of the API-key HMAC secret would invalidate every issued key if it "
    "ran twice before the tasks restart (ECS injects secrets at task start only): rotate it by "
    "hand with put-secret-value, then a new deployment; the previous version stays accepted"
)
ROTATION_SOURCE = Path(__file__).parent / "rotation" / "redis_auth_rotation.py"


@dataclass(frozen=True)
class SecretsArgs:
    ctx: StackContext
    key_arn: pulumi.Input[str]
    logs_key_arn: pulumi.Input[str]
    replication_group_id: str


class Secrets(pulumi.ComponentResource):
    """The cache AUTH token secret and its rotation."""

    redis_auth_secret_arn: pulumi.Output[str]
    redis_auth_token: pulumi.Output[str]

    def __init__(
        self, name: str, args: SecretsArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("plantstream:secrets:Secrets", name, None, opts)
        ctx = args.ctx
        child = pulumi.ResourceOptions(parent=self)

        token = random.RandomPassword(
            f"{name}-redis-auth-token",
            length=TOKEN_LENGTH,
            special=True,
            override_special=ALLOWED_SPECIAL,
            min_lower=4,
            min_upper=4,
            min_numeric=4,
            opts=child,
        )
        secret = aws.secretsmanager.Secret(
            f"{name}-redis-auth",
            # A deleted secret keeps its name for the recovery window: a fixed name would make
            # a redeploy after `pulumi destroy` fail for 7 days, so AWS appends a unique tail.
            name_prefix=f"plantstream/redis-auth-{ctx.suffix}-",
            description="ElastiCache AUTH token for plantstream (rotated)",
            kms_key_id=args.key_arn,
            recovery_window_in_days=7,
            tags=ctx.tags(aws.secretsmanager.Secret, ctx.name("redis-auth-secret")),
            opts=child,
        )
        aws.secretsmanager.SecretVersion(
            f"{name}-redis-auth-initial",
            secret_id=secret.id,
            secret_string=token.result,
            # Rotation writes new versions; the initial one must not be re-applied over them.
            opts=pulumi.ResourceOptions(parent=self, ignore_changes=["secretString"]),
        )

        function_name = ctx.name("redis-auth-rotation")
        log_group = aws.cloudwatch.LogGroup(
            f"{name}-rotation-logs",
            name=f"/aws/lambda/{function_name}",
            retention_in_days=ctx.settings.log_retention_days,
            kms_key_id=args.logs_key_arn,
            tags=ctx.tags(aws.cloudwatch.LogGroup),
            opts=child,
        )
        role = aws.iam.Role(
            f"{name}-rotation-role",
            name=ctx.name("redis-auth-rotation-role"),
            assume_role_policy=json.dumps(
                {
                    "Version": "2012-10-17",
                    "Statement": [
                        {
                            "Effect": "Allow",
                            "Action": "sts:AssumeRole",
                            "Principal": {"Service": "lambda.amazonaws.com"},
                        }
                    ],
                }
            ),
            tags=ctx.tags(aws.iam.Role, ctx.name("redis-auth-rotation-role")),
            opts=child,
        )
        group_arn = ctx.arn("elasticache", f"replicationgroup:{args.replication_group_id}")
        aws.iam.RolePolicy(
            f"{name}-rotation-policy",
            name=ctx.name("redis-auth-rotation"),
            role=role.id,
            policy=pulumi.Output.json_dumps(
                {
                    "Version": "2012-10-17",
                    "Statement": [
                        {
                            "Sid": "RotateTheSecret",
                            "Effect": "Allow",
                            "Action": [
                                "secretsmanager:DescribeSecret",
                                "secretsmanager:GetSecretValue",
                                "secretsmanager:PutSecretValue",
                                "secretsmanager:UpdateSecretVersionStage",
                            ],
                            "Resource": secret.arn,
                        },
                        {
                            "Sid": "GenerateTokens",
                            "Effect": "Allow",
                            "Action": ["secretsmanager:GetRandomPassword"],
                            "Resource": "*",
                        },
                        {
                            "Sid": "UseTheSecretsKey",
                            "Effect": "Allow",
                            "Action": ["kms:Decrypt", "kms:GenerateDataKey"],
                            "Resource": args.key_arn,
                        },
                        {
                            "Sid": "SetTheToken",
                            "Effect": "Allow",
                            "Action": ["elasticache:ModifyReplicationGroup"],
                            "Resource": group_arn,
                        },
                        {
                            "Sid": "Tracing",
                            "Effect": "Allow",
                            "Action": ["xray:PutTraceSegments", "xray:PutTelemetryRecords"],
                            "Resource": "*",
                        },
                        {
                            "Sid": "WriteOwnLogs",
                            "Effect": "Allow",
                            "Action": ["logs:CreateLogStream", "logs:PutLogEvents"],
                            "Resource": pulumi.Output.concat(log_group.arn, ":*"),
                        },
                    ],
                }
            ),
            opts=child,
        )
        function = aws.lambda_.Function(
            f"{name}-rotation",
            name=function_name,
            runtime="python3.12",
            handler="redis_auth_rotation.handler",
            role=role.arn,
            timeout=60,
            memory_size=128,
            code=pulumi.AssetArchive(
                {
                    "redis_auth_rotation.py": pulumi.FileAsset(str(ROTATION_SOURCE)),
                }
            ),
            environment={"variables": {"REPLICATION_GROUP_ID": args.replication_group_id}},
            logging_config={"log_format": "JSON", "log_group": log_group.name},
            tracing_config={"mode": "Active"},
            tags=ctx.tags(aws.lambda_.Function, function_name),
            opts=pulumi.ResourceOptions(parent=self, depends_on=[log_group]),
        )
        permission = aws.lambda_.Permission(
            f"{name}-rotation-invoke",
            action="lambda:InvokeFunction",
            function=function.name,
            principal="secretsmanager.amazonaws.com",
            source_arn=secret.arn,
            opts=child,
        )
        aws.secretsmanager.SecretRotation(
            f"{name}-redis-auth-rotation",
            secret_id=secret.id,
            rotation_lambda_arn=function.arn,
            rotate_immediately=False,
            rotation_rules={"automatically_after_days": ctx.settings.cache.auth_rotation_days},
            opts=pulumi.ResourceOptions(parent=self, depends_on=[permission]),
        )

        self.redis_auth_secret_arn = secret.arn
        self.redis_auth_token = token.result
        self.server_secret_arn = self._server_secret(name, args)
        self.register_outputs(
            {
                "redis_auth_secret_arn": self.redis_auth_secret_arn,
                "server_secret_arn": self.server_secret_arn,
            }
        )

    def _server_secret(self, name: str, args: SecretsArgs) -> pulumi.Output[str]:
        """The HMAC key every task hashes API keys with; it must be the same in all tasks."""
        ctx = args.ctx
        child = pulumi.ResourceOptions(parent=self)
        value = random.RandomPassword(
            f"{name}-server-secret-value", length=64, special=False, opts=child
        )
        secret = aws.secretsmanager.Secret(
            f"{name}-server-secret",
            name_prefix=f"plantstream/server-secret-{ctx.suffix}-",
            description="HMAC key for plantstream API key hashes (PLANTSTREAM_SERVER_SECRET)",
            kms_key_id=args.key_arn,
            recovery_window_in_days=7,
            tags=ctx.tags(
                aws.secretsmanager.Secret,
                ctx.name("server-secret"),
                deviations={SECRETS_MANAGER_1: NO_ROTATION_REASON},
            ),
            opts=child,
        )
        first = aws.secretsmanager.SecretVersion(
            f"{name}-server-secret-initial",
            secret_id=secret.id,
            secret_string=value.result,
            # the second version below moves AWSCURRENT off this one (and rotations later)
            opts=pulumi.ResourceOptions(
                parent=self, ignore_changes=["secretString", "versionStages"]
            ),
        )
        # The tasks take PLANTSTREAM_SERVER_SECRET_PREVIOUS from the AWSPREVIOUS stage, and ECS
        # refuses to start a task whose secret stage does not exist: a second put of the same
        # value makes the first version AWSPREVIOUS before any rotation has happened.
        aws.secretsmanager.SecretVersion(
            f"{name}-server-secret-current",
            secret_id=secret.id,
            secret_string=value.result,
            opts=pulumi.ResourceOptions(
                parent=self, depends_on=[first], ignore_changes=["secretString", "versionStages"]
            ),
        )
        return secret.arn
