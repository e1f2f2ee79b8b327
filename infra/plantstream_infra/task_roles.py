"""What each ECS task role may do: exactly the AWS calls its code makes.

``tests/infra/test_infra_iam_calls.py`` records those calls on a moto server and checks them
against these statements, both ways (every call allowed, every allowed action called).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pulumi

from .context import StackContext

# Exactly what the code calls (tests/infra/test_infra_iam_calls.py records it on moto):
# KinesisStream.list_shards (the processor's shard discovery, and /readyz in the web roles:
# ListShards allows 1000 calls/s per stream, DescribeStreamSummary only 20/s per account),
# read() -> GetShardIterator + GetRecords, put() -> PutRecords.
STREAM_READ = ["kinesis:ListShards", "kinesis:GetShardIterator", "kinesis:GetRecords"]
STREAM_WRITE = ["kinesis:PutRecords", "kinesis:ListShards"]
STREAM_READINESS = ["kinesis:ListShards"]
# Roles that put readings on the stream: the HTTP ingest, and the MQTT bridge (iot_bridge.py),
# which runs the same ingest path and acknowledges to the broker once PutRecords succeeded.
# The bridge's MQTT traffic is authorized by its IoT policy on its certificate, not by IAM.
WRITER_ROLES = ("ingest", "bridge")
# One-off admin tasks (``plantstream keys create --secret NAME``) run on the api task
# definition and store each new API key as its own secret under this prefix, never in logs.
ADMIN_ROLE = "api"
# pragma: allowlist nextline secret
API_KEY_SECRET_PREFIX = "plantstream/api-keys/"  # noqa: S105 - a name prefix
# store_key() calls CreateSecret (tagged; AWS then also checks TagResource) and, for an
# existing name, PutSecretValue; Secrets Manager needs GenerateDataKey + Decrypt on the key.
API_KEY_SECRET_ACTIONS = [
    "secretsmanager:CreateSecret",
    "secretsmanager:PutSecretValue",
    "secretsmanager:TagResource",
]
API_KEY_KMS_ACTIONS = ["kms:GenerateDataKey", "kms:Decrypt"]
API_KEY_PURPOSE_TAG = ("plantstream:purpose", "api-key")


def task_statements(
    role_name: str,
    *,
    ctx: StackContext,
    stream_arn: pulumi.Input[str],
    stream_key_arn: pulumi.Input[str],
    secrets_key_arn: pulumi.Input[str],
    read_secrets: Sequence[pulumi.Input[str]],
) -> list[dict[str, Any]]:
    """The processor reads the stream, the ingest writes it, the api only lists its shards
    (readiness); all read the credentials they connect with."""
    statements: list[dict[str, Any]] = [
        {
            "Sid": "ReadOwnSecrets",
            "Effect": "Allow",
            # CredentialSource re-reads both as they rotate (GetSecretValue only)
            "Action": ["secretsmanager:GetSecretValue"],
            "Resource": list(read_secrets),
        },
        {
            "Sid": "DecryptOwnSecrets",
            "Effect": "Allow",
            "Action": ["kms:Decrypt"],
            "Resource": secrets_key_arn,
        },
    ]
    if role_name in WRITER_ROLES:
        statements += [
            {
                "Sid": "WriteTheStream",
                "Effect": "Allow",
                "Action": STREAM_WRITE,
                "Resource": stream_arn,
            },
            {
                "Sid": "EncryptRecords",
                "Effect": "Allow",
                "Action": ["kms:GenerateDataKey"],
                "Resource": stream_key_arn,
            },
        ]
    elif role_name == "processor":
        statements += [
            {
                "Sid": "ReadTheStream",
                "Effect": "Allow",
                "Action": STREAM_READ,
                "Resource": stream_arn,
            },
            {
                "Sid": "DecryptRecords",
                "Effect": "Allow",
                "Action": ["kms:Decrypt"],
                "Resource": stream_key_arn,
            },
        ]
    else:  # api: readiness only lists the shards, it never reads or writes records
        statements.append(
            {
                "Sid": "StreamReadiness",
                "Effect": "Allow",
                "Action": STREAM_READINESS,
                "Resource": stream_arn,
            }
        )
    if role_name == ADMIN_ROLE:
        statements += _api_key_statements(ctx, secrets_key_arn)
    return statements


def _api_key_statements(
    ctx: StackContext, secrets_key_arn: pulumi.Input[str]
) -> list[dict[str, Any]]:
    """``keys create --secret plantstream/api-keys/...`` writes the new key to its own
    secret (on the secrets key) and prints only its ARN: write-only, under one prefix."""
    secrets = ctx.arn("secretsmanager", f"secret:{API_KEY_SECRET_PREFIX}*")
    tag_key, tag_value = API_KEY_PURPOSE_TAG
    via = f"secretsmanager.{ctx.region}.amazonaws.com"
    return [
        {
            "Sid": "CreateApiKeySecretsTagged",
            "Effect": "Allow",
            "Action": ["secretsmanager:CreateSecret"],
            "Resource": secrets,
            "Condition": {"StringEquals": {f"aws:RequestTag/{tag_key}": tag_value}},
        },
        {
            "Sid": "WriteApiKeySecrets",
            "Effect": "Allow",
            "Action": [a for a in API_KEY_SECRET_ACTIONS if a != "secretsmanager:CreateSecret"],
            "Resource": secrets,
        },
        {
            "Sid": "EncryptApiKeySecrets",
            "Effect": "Allow",
            "Action": API_KEY_KMS_ACTIONS,
            "Resource": secrets_key_arn,
            "Condition": {"StringEquals": {"kms:ViaService": via}},
        },
    ]
