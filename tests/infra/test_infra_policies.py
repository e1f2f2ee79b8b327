"""The policy pack catches each mistake the seed documents made, and honours only declared,
waivable deviations. Runs the very policy objects the real pack serves, on small graphs."""

from __future__ import annotations

import json
from typing import Any

import pytest
from plantstream_infra.policies import (
    CONTROLS,
    DEVIATION_TAG_PREFIX,
    GraphEntry,
    PolicyResult,
    evaluate,
    pack_policies,
)

pytestmark = pytest.mark.infra

TAGS = {"Project": "plantstream", "Environment": "dev", "Preset": "t", "ManagedBy": "pulumi"}


def _run(*resources: tuple[str, str, dict[str, Any]]) -> list[PolicyResult]:
    graph = [
        GraphEntry(t, n, f"urn:pulumi:t::plantstream::{t}::{n}", p, {**p, "id": n})
        for t, n, p in resources
    ]
    return evaluate(graph)


def _fails(results: list[PolicyResult], policy: str) -> list[str]:
    return [r.message for r in results if r.policy == policy and r.enforcement == "mandatory"]


def test_policy_names_are_unique_and_each_names_its_control() -> None:
    names = [p.name for p in pack_policies()]
    assert len(names) == len(set(names))
    assert all(c.control for c in CONTROLS)
    assert {
        "kinesis-1-encryption-at-rest",
        "rds-2-no-public-access",
        "rds-11-backups-30-days",
        "rds-12-cluster-iam-auth",
        "rds-27-cluster-encryption",
        "secretsmanager-1-rotation-enabled",
        "kms-4-key-rotation",
        "ec2-2-default-sg-closed",
        "ec2-6-vpc-flow-logs",
        "ecs-2-no-public-ip",
        "ecs-4-non-privileged",
        "ecs-5-read-only-root",
        "ecs-8-no-secrets-in-env",
        "ecs-12-container-insights",
        "apigateway-1-execution-logging",
        "cloudwatch-logs-kms",
    } <= set(names)
    for n in range(1, 8):
        assert any(name.startswith(f"elasticache-{n}-") for name in names)


def test_seed_002_kinesis_on_the_aws_managed_key_fails() -> None:
    results = _run(
        (
            "aws:kinesis/stream:Stream",
            "s",
            {
                "name": "sensor-data-stream-dev",
                "encryptionType": "KMS",
                "kmsKeyId": "alias/aws/kinesis",
                "retentionPeriod": 168,
                "tags": TAGS,
            },
        )
    )
    assert _fails(results, "kinesis-customer-managed-key")
    assert not _fails(results, "kinesis-1-encryption-at-rest")


def test_seed_mistakes_in_the_database_fail() -> None:
    results = _run(
        (
            "aws:rds/instance:Instance",
            "db",
            {
                "identifier": "iot-postgres-dev",
                "username": "admin",
                "password": "InitialPassword123!",
                "backupRetentionPeriod": 1,
                "storageEncrypted": True,
                "publiclyAccessible": True,
                "tags": TAGS,
            },
        )
    )
    assert _fails(results, "rds-24-25-custom-admin-user")
    assert _fails(results, "rds-managed-master-password")
    backups = _fails(results, "rds-11-backups-30-days")
    assert backups == ["backupRetentionPeriod is 1 days, below 30"]
    assert _fails(results, "rds-2-no-public-access")
    assert _fails(results, "rds-3-instance-encryption") == ["kmsKeyId is not set (AWS-managed key)"]


def test_seed_002_ecs_tasks_in_public_subnets_with_nginx_fail() -> None:
    container = {
        "name": "iot-processor",
        "image": "public.ecr.aws/docker/library/nginx:latest",
        "environment": [{"name": "DB_PASSWORD", "value": "x"}],
    }
    # public by its routes (the policy ignores the Tier tag): its table routes to the IGW
    results = _run(
        (
            "aws:ec2/subnet:Subnet",
            "subnet-public",
            {"tags": {**TAGS, "Tier": "public"}, "mapPublicIpOnLaunch": True},
        ),
        ("aws:ec2/internetGateway:InternetGateway", "igw-1", {"tags": TAGS}),
        (
            "aws:ec2/routeTable:RouteTable",
            "rtb-public",
            {"tags": TAGS, "routes": [{"cidrBlock": "0.0.0.0/0", "gatewayId": "igw-1"}]},
        ),
        (
            "aws:ec2/routeTableAssociation:RouteTableAssociation",
            "rta-public",
            {"subnetId": "subnet-public", "routeTableId": "rtb-public"},
        ),
        (
            "aws:ecs/service:Service",
            "svc",
            {
                "name": "iot-processor-service-dev",
                "tags": TAGS,
                "networkConfiguration": {"subnets": ["subnet-public"], "assignPublicIp": True},
            },
        ),
        (
            "aws:ecs/taskDefinition:TaskDefinition",
            "task",
            {
                "family": "iot-processor-dev",
                "tags": TAGS,
                "containerDefinitions": json.dumps([container]),
            },
        ),
    )
    assert _fails(results, "ecs-2-no-public-ip")
    assert _fails(results, "ecs-private-subnets") == [
        "service iot-processor-service-dev: subnet subnet-public routes to internet gateway"
        " igw-1 via rtb-public"
    ]
    assert _fails(results, "ec2-15-no-auto-public-ip")
    assert _fails(results, "plantstream-real-image")
    assert _fails(results, "ecs-8-no-secrets-in-env")
    assert _fails(results, "ecs-5-read-only-root")
    assert _fails(results, "ecs-20-non-root-user")
    assert _fails(results, "ecs-9-logging")


def test_open_ingress_only_allowed_for_https_on_the_public_listener() -> None:
    def rule(port: int, public: bool) -> dict[str, Any]:
        tags = {**TAGS, **({"plantstream:exposure": "public-listener"} if public else {})}
        return {
            "cidrIpv4": "0.0.0.0/0",
            "ipProtocol": "tcp",
            "fromPort": port,
            "toPort": port,
            "description": "x",
            "tags": tags,
        }

    results = _run(
        ("aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule", "https", rule(443, True)),
        ("aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule", "pg", rule(5432, True)),
        ("aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule", "sneaky", rule(443, False)),
    )
    failing = {
        r.urn.rsplit("::", 1)[-1] for r in results if r.policy == "ec2-18-19-no-open-ingress"
    }
    assert failing == {"pg", "sneaky"}


def test_iam_wildcards_fail_but_tokenless_actions_may_use_star() -> None:
    doc = {
        "Version": "2012-10-17",
        "Statement": [
            {"Sid": "Bad", "Effect": "Allow", "Action": "kinesis:*", "Resource": "arn:x"},
            {"Sid": "AlsoBad", "Effect": "Allow", "Action": ["s3:GetObject"], "Resource": "*"},
            {
                "Sid": "Fine",
                "Effect": "Allow",
                "Action": ["ecr:GetAuthorizationToken"],
                "Resource": "*",
            },
        ],
    }
    results = _run(
        ("aws:iam/rolePolicy:RolePolicy", "p", {"name": "p-dev", "policy": json.dumps(doc)})
    )
    messages = _fails(results, "iam-1-no-wildcard-permissions")
    assert len(messages) == 2
    assert "Bad" in messages[0]
    assert "AlsoBad" in messages[1]


def test_iam_resources_scoped_to_a_name_prefix_pass() -> None:
    doc = {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "WriteApiKeySecrets",
                "Effect": "Allow",
                "Action": ["secretsmanager:PutSecretValue", "secretsmanager:TagResource"],
                "Resource": (
                    "arn:aws:secretsmanager:us-east-1:123456789012:secret:plantstream/api-keys/*"
                ),
            }
        ],
    }
    results = _run(
        ("aws:iam/rolePolicy:RolePolicy", "p", {"name": "p-dev", "policy": json.dumps(doc)})
    )
    assert _fails(results, "iam-1-no-wildcard-permissions") == []


def _task_env(*env: tuple[str, str]) -> list[PolicyResult]:
    container = {"name": "c", "environment": [{"name": n, "value": v} for n, v in env]}
    return _run(
        (
            "aws:ecs/taskDefinition:TaskDefinition",
            "task",
            {"family": "t-dev", "tags": TAGS, "containerDefinitions": json.dumps([container])},
        )
    )


def test_a_kms_key_arn_is_not_a_secret_even_under_an_api_key_name() -> None:
    key = "arn:aws:kms:us-east-1:123456789012:key/04a95788-c2ec-4972-804a-95788c2ec972"
    assert (
        _fails(_task_env(("PLANTSTREAM_API_KEY_KMS_KEY_ID", key)), "ecs-8-no-secrets-in-env") == []
    )
    alias = "alias/plantstream-secrets-dev"
    assert (
        _fails(_task_env(("PLANTSTREAM_API_KEY_KMS_KEY_ID", alias)), "ecs-8-no-secrets-in-env")
        == []
    )
    # the exemption needs both the name shape and a KMS reference as the value
    for name, value in (
        ("PLANTSTREAM_API_KEY_KMS_KEY_ID", "psk_live_0123456789abcdef"),
        ("PLANTSTREAM_API_KEY_KMS_KEY_ID", "arn:aws:secretsmanager:us-east-1:1:secret:x"),
        ("PLANTSTREAM_API_KEY", key),
        ("PLANTSTREAM_API_KEY_ID", key),
    ):
        assert _fails(_task_env((name, value)), "ecs-8-no-secrets-in-env"), (name, value)


def test_missing_flow_logs_and_open_default_sg_fail() -> None:
    results = _run(("aws:ec2/vpc:Vpc", "vpc-1", {"cidrBlock": "10.0.0.0/16", "tags": TAGS}))
    assert _fails(results, "ec2-6-vpc-flow-logs")
    assert _fails(results, "ec2-2-default-sg-closed")


def test_unrotated_secret_fails() -> None:
    results = _run(
        (
            "aws:secretsmanager/secret:Secret",
            "arn:secret",
            {"name": "x-dev", "kmsKeyId": "arn:k", "tags": TAGS, "arn": "arn:secret"},
        )
    )
    assert _fails(results, "secretsmanager-1-rotation-enabled")


def test_names_without_the_suffix_fail() -> None:
    results = _run(
        ("aws:kinesis/stream:Stream", "s", {"name": "sensor-data-stream", "tags": TAGS}),
        ("aws:ecs/cluster:Cluster", "c", {"name": "cluster-dev", "tags": TAGS}),
    )
    assert _fails(results, "plantstream-names-carry-suffix") == [
        "name 'sensor-data-stream' does not end with -dev"
    ]


def test_declared_deviation_turns_a_waivable_finding_into_an_advisory() -> None:
    reason = "seed 000 keeps 24 hours of stream"
    stream = {
        "name": "s-dev",
        "encryptionType": "KMS",
        "kmsKeyId": "arn:k",
        "retentionPeriod": 24,
        "tags": {**TAGS, DEVIATION_TAG_PREFIX + "plantstream-kinesis-retention-7d": reason},
    }
    results = _run(("aws:kinesis/stream:Stream", "s", stream))
    assert _fails(results, "plantstream-kinesis-retention-7d") == []
    advisories = [r for r in results if r.enforcement == "advisory"]
    assert len(advisories) == 1
    assert reason in advisories[0].message


def test_a_deviation_tag_cannot_waive_a_protective_control() -> None:
    stream = {
        "name": "s-dev",
        "encryptionType": "NONE",
        "retentionPeriod": 168,
        "tags": {**TAGS, DEVIATION_TAG_PREFIX + "kinesis-1-encryption-at-rest": "cheaper"},
    }
    results = _run(("aws:kinesis/stream:Stream", "s", stream))
    assert _fails(results, "kinesis-1-encryption-at-rest")
    assert [r for r in results if r.enforcement == "advisory"] == []


def test_the_policy_pack_entry_point_serves_these_policies() -> None:
    from pathlib import Path

    import yaml

    pack_dir = Path(__file__).resolve().parents[2] / "infra" / "policies"
    assert yaml.safe_load((pack_dir / "PulumiPolicy.yaml").read_text())["runtime"]["name"] == (
        "python"
    )
    source = (pack_dir / "__main__.py").read_text()
    assert "pack_policies()" in source
    assert "PolicyPack(" in source


def test_readme_policy_table_lists_every_policy() -> None:
    from pathlib import Path

    from plantstream_infra.check import policy_table

    readme = (Path(__file__).resolve().parents[2] / "infra" / "README.md").read_text()
    assert policy_table() in readme
    for policy in pack_policies():
        assert f"`{policy.name}`" in readme


def test_values_unknown_during_preview_are_skipped_not_failed() -> None:
    from pulumi_policy.proxy import UNKNOWN_STRING_VALUE

    results = _run(
        ("aws:iam/rolePolicy:RolePolicy", "p", {"name": "p-dev", "policy": UNKNOWN_STRING_VALUE})
    )
    assert _fails(results, "iam-1-no-wildcard-permissions") == []
    assert [r.enforcement for r in results if r.policy == "iam-1-no-wildcard-permissions"] == [
        "unknown"
    ]
