"""Each data-service control (Kinesis, RDS, ElastiCache, Secrets Manager, KMS, logs, SNS)
refuses a resource that breaks it: one row per way of breaking it, on the compliant baseline."""

from __future__ import annotations

import json

import pytest
from test_policy_baseline import (
    ACCOUNT,
    SECRET_ARN,
    FailTable,
    Graph,
    Mutation,
    cases,
    change,
    check_refusal,
    drop,
    props,
    refusing,
    remove,
)

pytestmark = pytest.mark.infra


def _alias_arn(service: str) -> str:
    return f"arn:aws:kms:us-east-1:{ACCOUNT}:alias/aws/{service}"


def _aurora_in_one_az(graph: Graph) -> str:
    props(graph, "aurora-2")["availabilityZone"] = "us-east-1a"
    return "aurora"


def _aurora_unpinned_reader(graph: Graph) -> str:
    props(graph, "aurora-2").pop("availabilityZone")
    return "aurora"


def _wildcard_key_policy(graph: Graph) -> str:
    stmt = {"Sid": "Anyone", "Effect": "Allow", "Principal": {"AWS": "*"}, "Action": "kms:*"}
    props(graph, "key")["policy"] = json.dumps({"Version": "2012-10-17", "Statement": [stmt]})
    return "key"


FAILS: FailTable = {
    "kinesis-1-encryption-at-rest": {"unencrypted": change("stream", encryptionType="NONE")},
    "kinesis-customer-managed-key": {
        "alias": change("stream", kmsKeyId="alias/aws/kinesis"),
        "alias-arn": change("stream", kmsKeyId=_alias_arn("kinesis")),
        "no-key": drop("stream", "kmsKeyId"),
    },
    "plantstream-kinesis-retention-7d": {"24h": change("stream", retentionPeriod=24)},
    "rds-2-no-public-access": {
        "public-reader": change("aurora-1", publiclyAccessible=True),
        "unset": drop("postgres", "publiclyAccessible"),
    },
    "rds-3-instance-encryption": {
        "unencrypted": change("postgres", storageEncrypted=False),
        "no-key": drop("postgres", "kmsKeyId"),
        "alias": change("postgres", kmsKeyId="alias/aws/rds"),
        "alias-arn": change("postgres", kmsKeyId=_alias_arn("rds")),
    },
    "rds-27-cluster-encryption": {
        "unencrypted": change("aurora", storageEncrypted=False),
        "alias-arn": change("aurora", kmsKeyId=_alias_arn("rds")),
    },
    "rds-11-backups-30-days": {
        "instance-7d": change("postgres", backupRetentionPeriod=7),
        "cluster-1d": change("aurora", backupRetentionPeriod=1),
    },
    "rds-12-cluster-iam-auth": {"off": change("aurora", iamDatabaseAuthenticationEnabled=False)},
    "rds-10-instance-iam-auth": {"off": change("postgres", iamDatabaseAuthenticationEnabled=False)},
    "rds-5-instance-multi-az": {"single-az": change("postgres", multiAz=False)},
    "rds-15-cluster-multi-az": {
        "two-instances-one-az": _aurora_in_one_az,
        "reader-az-unpinned": _aurora_unpinned_reader,
        "writer-only": remove("aurora-2", "aurora"),
    },
    "rds-7-8-deletion-protection": {
        "cluster": change("aurora", deletionProtection=False),
        "instance": drop("postgres", "deletionProtection"),
    },
    "rds-9-instance-log-exports": {
        "no-upgrade-log": change("postgres", enabledCloudwatchLogsExports=["postgresql"])
    },
    "rds-37-cluster-log-exports": {"none": change("aurora", enabledCloudwatchLogsExports=[])},
    "rds-13-minor-upgrades": {
        "cluster-instance": change("aurora-2", autoMinorVersionUpgrade=False),
        "instance": change("postgres", autoMinorVersionUpgrade=False),
    },
    "rds-16-17-copy-tags": {
        "cluster": change("aurora", copyTagsToSnapshot=False),
        "instance": drop("postgres", "copyTagsToSnapshot"),
    },
    "rds-24-25-custom-admin-user": {
        "cluster-postgres": change("aurora", masterUsername="postgres"),
        "instance-admin": change("postgres", username="admin"),
    },
    "rds-managed-master-password": {
        "password-input": change("postgres", password="InitialPassword123!"),
        "unmanaged": change("aurora", manageMasterUserPassword=False),
        "secret-on-aws-key": change(
            "aurora", masterUserSecretKmsKeyId=_alias_arn("secretsmanager")
        ),
    },
    "elasticache-1-backups": {"no-snapshots": change("redis", snapshotRetentionLimit=0)},
    "elasticache-2-minor-upgrades": {
        "off": change("redis", autoMinorVersionUpgrade=False),
        "off-as-string": change("redis", autoMinorVersionUpgrade="false"),
    },
    "elasticache-3-automatic-failover": {
        "no-failover": change("redis", automaticFailoverEnabled=False),
        "single-az": change("redis", multiAzEnabled=False),
    },
    "elasticache-4-encryption-at-rest": {
        "unencrypted": change("redis", atRestEncryptionEnabled=False),
        "no-key": drop("redis", "kmsKeyId"),
        "alias": change("redis", kmsKeyId="alias/aws/elasticache"),
    },
    "elasticache-5-encryption-in-transit": {
        "no-tls": change("redis", transitEncryptionEnabled=False),
        "preferred": change("redis", transitEncryptionMode="preferred"),
    },
    "elasticache-6-auth": {"no-auth": drop("redis", "authToken")},
    "elasticache-7-custom-subnet-group": {
        "default": change("redis", subnetGroupName="default"),
        "unset": drop("redis", "subnetGroupName"),
    },
    "secretsmanager-customer-managed-key": {
        "no-key": drop("secret", "kmsKeyId"),
        "alias": change("secret", kmsKeyId="alias/aws/secretsmanager"),
        "alias-arn": change("secret", kmsKeyId=_alias_arn("secretsmanager")),
    },
    "secretsmanager-4-rotation-period": {
        "yearly": change("secret-rotation", rotationRules={"automaticallyAfterDays": 365}),
        "no-period": change("secret-rotation", rotationRules={}),
    },
    "secretsmanager-1-rotation-enabled": {
        "no-rotation": remove("secret-rotation", "secret"),
        "rotation-disabled": refusing("secret", change("secret-rotation", rotationEnabled=False)),
        "rotation-of-another-secret": refusing(
            "secret", change("secret-rotation", secretId=SECRET_ARN + "-other")
        ),
    },
    "kms-4-key-rotation": {"off": change("key", enableKeyRotation=False)},
    "kms-explicit-policy-no-wildcard": {
        "any-principal": _wildcard_key_policy,
        "no-policy": drop("key", "policy"),
    },
    "cloudwatch-logs-kms": {
        "no-key": drop("logs", "kmsKeyId"),
        "alias-arn": change("logs", kmsKeyId=_alias_arn("logs")),
    },
    "cloudwatch-16-log-retention-1-year": {"30-days": change("logs", retentionInDays=30)},
    "sns-1-kms": {"unencrypted": drop("alarms", "kmsMasterKeyId")},
}


@pytest.mark.parametrize(("control", "mutate"), cases(FAILS))
def test_data_control_refuses_the_broken_resource(control: str, mutate: Mutation) -> None:
    check_refusal(control, mutate)
