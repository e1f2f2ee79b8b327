"""Secrets Manager rotation for the ElastiCache AUTH token (runs as a Lambda function).

Uses the ROTATE strategy: the new token is added next to the old one, so running clients keep
working until they re-read the secret (plantstream re-reads it on an authentication failure).
"""

from __future__ import annotations

import os
import string
from typing import Any, Protocol

# ElastiCache AUTH tokens: 16-128 printable characters, no spaces, '"', '/' or '@'.
ALLOWED_SPECIAL = "!&#$^<>-"
TOKEN_LENGTH = 64


class SecretsClient(Protocol):
    def describe_secret(self, **kwargs: Any) -> dict[str, Any]: ...
    def get_secret_value(self, **kwargs: Any) -> dict[str, Any]: ...
    def put_secret_value(self, **kwargs: Any) -> dict[str, Any]: ...
    def get_random_password(self, **kwargs: Any) -> dict[str, Any]: ...
    def update_secret_version_stage(self, **kwargs: Any) -> dict[str, Any]: ...


class ElastiCacheClient(Protocol):
    def modify_replication_group(self, **kwargs: Any) -> dict[str, Any]: ...


def valid_token(token: str) -> bool:
    allowed = set(string.ascii_letters + string.digits + ALLOWED_SPECIAL)
    return 16 <= len(token) <= 128 and set(token) <= allowed


def rotate(
    event: dict[str, str],
    *,
    secrets: SecretsClient,
    elasticache: ElastiCacheClient,
    replication_group_id: str,
) -> None:
    """One step (createSecret, setSecret, testSecret, finishSecret) of a rotation."""
    arn, token, step = event["SecretId"], event["ClientRequestToken"], event["Step"]
    versions = secrets.describe_secret(SecretId=arn).get("VersionIdsToStages", {})
    if token not in versions:
        raise ValueError(f"version {token} is not staged for rotation")
    if "AWSCURRENT" in versions[token]:
        return
    if step == "createSecret":
        try:
            secrets.get_secret_value(SecretId=arn, VersionId=token, VersionStage="AWSPENDING")
        except Exception:
            exclude = "".join(c for c in string.punctuation if c not in ALLOWED_SPECIAL)
            new = secrets.get_random_password(
                PasswordLength=TOKEN_LENGTH,
                ExcludeCharacters=exclude + " ",
            )["RandomPassword"]
            secrets.put_secret_value(
                SecretId=arn,
                ClientRequestToken=token,
                SecretString=new,
                VersionStages=["AWSPENDING"],
            )
    elif step == "setSecret":
        pending = secrets.get_secret_value(
            SecretId=arn, VersionId=token, VersionStage="AWSPENDING"
        )["SecretString"]
        elasticache.modify_replication_group(
            ReplicationGroupId=replication_group_id,
            AuthToken=pending,
            AuthTokenUpdateStrategy="ROTATE",
            ApplyImmediately=True,
        )
    elif step == "testSecret":
        pending = secrets.get_secret_value(
            SecretId=arn, VersionId=token, VersionStage="AWSPENDING"
        )["SecretString"]
        if not valid_token(pending):
            raise ValueError("pending AUTH token does not meet ElastiCache's rules")
    elif step == "finishSecret":
        current = next(v for v, stages in versions.items() if "AWSCURRENT" in stages)
        secrets.update_secret_version_stage(
            SecretId=arn,
            VersionStage="AWSCURRENT",
            MoveToVersionId=token,
            RemoveFromVersionId=current,
        )
    else:
        raise ValueError(f"unknown rotation step {step}")


def handler(event: dict[str, str], _context: object) -> None:
    import boto3  # the Lambda runtime provides it

    rotate(
        event,
        secrets=boto3.client("secretsmanager"),
        elasticache=boto3.client("elasticache"),
        replication_group_id=os.environ["REPLICATION_GROUP_ID"],
    )
