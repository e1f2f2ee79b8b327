"""The live stack matches what the policy pack promises: encryption, retention, backups,
network exposure, task hardening and names. Reads only; changes nothing."""

from __future__ import annotations

import json
from typing import Any

import pytest

pytestmark = pytest.mark.e2e

MIN_BACKUP_DAYS = 30


def _client(session: Any, name: str) -> Any:
    return session.client(name)


def test_stream_is_encrypted_with_a_customer_key(session: Any, outputs: dict[str, Any]) -> None:
    summary = _client(session, "kinesis").describe_stream_summary(
        StreamName=outputs["kinesis_stream_name"]
    )["StreamDescriptionSummary"]
    assert summary["EncryptionType"] == "KMS"
    assert not summary["KeyId"].startswith("alias/aws/")
    assert summary["RetentionPeriodHours"] >= 24
    assert summary["StreamARN"] == outputs["kinesis_stream_arn"]


def test_every_key_is_customer_managed_and_rotates(session: Any, outputs: dict[str, Any]) -> None:
    kms = _client(session, "kms")
    for key_id in set(outputs["kms_key_ids"].values()):
        meta = kms.describe_key(KeyId=key_id)["KeyMetadata"]
        assert meta["KeyManager"] == "CUSTOMER"
        assert kms.get_key_rotation_status(KeyId=key_id)["KeyRotationEnabled"] is True
        policy = json.loads(kms.get_key_policy(KeyId=key_id, PolicyName="default")["Policy"])
        for stmt in policy["Statement"]:
            principal = stmt.get("Principal", {})
            aws_principal = principal.get("AWS") if isinstance(principal, dict) else principal
            assert aws_principal != "*"


def test_database_is_private_encrypted_and_keeps_30_days(
    session: Any, outputs: dict[str, Any]
) -> None:
    rds = _client(session, "rds")
    ident = outputs["database_identifier"]
    if outputs["database_kind"] == "aurora-serverless":
        db = rds.describe_db_clusters(DBClusterIdentifier=ident)["DBClusters"][0]
        members = [m["DBInstanceIdentifier"] for m in db["DBClusterMembers"]]
        instances = [
            rds.describe_db_instances(DBInstanceIdentifier=m)["DBInstances"][0] for m in members
        ]
        assert len({i["AvailabilityZone"] for i in instances}) >= 2
    else:
        db = rds.describe_db_instances(DBInstanceIdentifier=ident)["DBInstances"][0]
        instances = [db]
    assert db["StorageEncrypted"] is True
    assert db["BackupRetentionPeriod"] >= MIN_BACKUP_DAYS
    assert db["IAMDatabaseAuthenticationEnabled"] is True
    assert db["MasterUsername"] == "dbadmin"
    assert db["MasterUserSecret"]["SecretArn"] == outputs["db_secret_arn"]
    assert all(i["PubliclyAccessible"] is False for i in instances)


def test_redis_is_encrypted_authenticated_and_multi_az(
    session: Any, outputs: dict[str, Any]
) -> None:
    group = _client(session, "elasticache").describe_replication_groups(
        ReplicationGroupId=outputs["redis_replication_group_id"]
    )["ReplicationGroups"][0]
    assert group["AtRestEncryptionEnabled"] is True
    assert group["TransitEncryptionEnabled"] is True
    assert group["AuthTokenEnabled"] is True
    assert group["AutomaticFailover"] == "enabled"
    assert group["MultiAZ"] == "enabled"
    assert group["SnapshotRetentionLimit"] >= 1
    assert group["KmsKeyId"]


def test_secrets_are_encrypted_and_rotating(session: Any, outputs: dict[str, Any]) -> None:
    sm = _client(session, "secretsmanager")
    for arn in (outputs["db_secret_arn"], outputs["redis_auth_secret_arn"]):
        meta = sm.describe_secret(SecretId=arn)
        assert meta["KmsKeyId"]
        assert meta["RotationEnabled"] is True
        assert meta["RotationRules"]["AutomaticallyAfterDays"] <= 90


def test_only_the_public_listener_is_open_to_the_internet(
    session: Any, outputs: dict[str, Any]
) -> None:
    ec2 = _client(session, "ec2")
    groups = ec2.describe_security_groups(
        Filters=[{"Name": "vpc-id", "Values": [outputs["vpc_id"]]}]
    )["SecurityGroups"]
    for group in groups:
        for perm in group["IpPermissions"]:
            open_ranges = [r for r in perm.get("IpRanges", []) if r["CidrIp"] == "0.0.0.0/0"]
            open_ranges += [r for r in perm.get("Ipv6Ranges", []) if r["CidrIpv6"] == "::/0"]
            if open_ranges:
                assert group["GroupName"].startswith("alb-sg-")
                assert (perm["FromPort"], perm["ToPort"]) == (443, 443)
        if group["GroupName"] == "default":
            assert group["IpPermissions"] == []
            assert group["IpPermissionsEgress"] == []


def test_vpc_flow_logs_capture_all_traffic(session: Any, outputs: dict[str, Any]) -> None:
    logs = _client(session, "ec2").describe_flow_logs(
        Filters=[{"Name": "resource-id", "Values": [outputs["vpc_id"]]}]
    )["FlowLogs"]
    assert any(f["TrafficType"] == "ALL" and f["FlowLogStatus"] == "ACTIVE" for f in logs)


def test_services_run_private_non_root_read_only_tasks(
    session: Any, outputs: dict[str, Any]
) -> None:
    ecs = _client(session, "ecs")
    cluster = outputs["ecs_cluster_name"]
    info = ecs.describe_clusters(clusters=[cluster], include=["SETTINGS"])["clusters"][0]
    assert {"name": "containerInsights", "value": "enabled"} in info["settings"]
    names = list(outputs["ecs_service_names"].values())
    for svc in ecs.describe_services(cluster=cluster, services=names)["services"]:
        net = svc["networkConfiguration"]["awsvpcConfiguration"]
        assert net["assignPublicIp"] == "DISABLED"
        assert set(net["subnets"]) <= set(outputs["private_subnet_ids"])
        task = ecs.describe_task_definition(taskDefinition=svc["taskDefinition"])
        for container in task["taskDefinition"]["containerDefinitions"]:
            assert container["readonlyRootFilesystem"] is True
            assert container["user"] not in ("", "root", "0")
            assert "nginx" not in container["image"]
            injected = {s["name"] for s in container["secrets"]}
            server = {"PLANTSTREAM_SERVER_SECRET", "PLANTSTREAM_SERVER_SECRET_PREVIOUS"}
            if container["command"][-1] == "processor":  # verifies no API keys
                assert not server & injected
            else:
                assert injected >= server


def test_the_server_secret_has_the_previous_stage_tasks_read(
    session: Any, outputs: dict[str, Any]
) -> None:
    """ECS refuses to start a task whose secret names a stage that does not exist."""
    sm = _client(session, "secretsmanager")
    versions = sm.list_secret_version_ids(SecretId=outputs["server_secret_arn"])["Versions"]
    stages = {stage for v in versions for stage in v.get("VersionStages", [])}
    assert {"AWSCURRENT", "AWSPREVIOUS"} <= stages


def test_every_service_reaches_a_steady_state(session: Any, outputs: dict[str, Any]) -> None:
    """Readiness (/readyz, ListShards on the stream) passes, so the ALB keeps the tasks and
    the deployments complete instead of rolling back."""
    ecs = _client(session, "ecs")
    names = list(outputs["ecs_service_names"].values())
    cluster = outputs["ecs_cluster_name"]
    for svc in ecs.describe_services(cluster=cluster, services=names)["services"]:
        (primary,) = [d for d in svc["deployments"] if d["status"] == "PRIMARY"]
        assert primary["rolloutState"] == "COMPLETED", svc["serviceName"]
        assert svc["runningCount"] >= 1, svc["serviceName"]


def test_log_groups_are_encrypted(session: Any, outputs: dict[str, Any]) -> None:
    logs = _client(session, "logs")
    for name in outputs["log_group_names"].values():
        (group,) = [
            g
            for g in logs.describe_log_groups(logGroupNamePrefix=name)["logGroups"]
            if g["logGroupName"] == name
        ]
        assert group.get("kmsKeyId")
        assert group.get("retentionInDays")


def test_names_carry_the_environment_suffix(outputs: dict[str, Any]) -> None:
    suffix = outputs["environment_suffix"]
    for key in (
        "kinesis_stream_name",
        "ecs_cluster_name",
        "database_identifier",
        "redis_replication_group_id",
    ):
        assert outputs[key].endswith(f"-{suffix}"), key
    assert all(n.endswith(f"-{suffix}") for n in outputs["ecs_service_names"].values())
