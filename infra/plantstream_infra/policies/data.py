"""Controls for the data services: Kinesis, RDS/Aurora, ElastiCache, Secrets Manager, KMS, logs.

Each function yields one message per finding; an empty result means the resource complies.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence

from .base import (
    GraphResource,
    Props,
    Registry,
    as_json,
    as_list,
    customer_key_findings,
    number,
    statements,
    truthy,
)

KINESIS = "aws:kinesis/stream:Stream"
RDS_CLUSTER = "aws:rds/cluster:Cluster"
RDS_CLUSTER_INSTANCE = "aws:rds/clusterInstance:ClusterInstance"
RDS_INSTANCE = "aws:rds/instance:Instance"
REDIS = "aws:elasticache/replicationGroup:ReplicationGroup"
SECRET = "aws:secretsmanager/secret:Secret"  # noqa: S105 - a type token
SECRET_ROTATION = "aws:secretsmanager/secretRotation:SecretRotation"  # noqa: S105
KMS_KEY = "aws:kms/key:Key"
LOG_GROUP = "aws:cloudwatch/logGroup:LogGroup"
SNS_TOPIC = "aws:sns/topic:Topic"

MIN_BACKUP_DAYS = 30
MIN_STREAM_HOURS = 168
MIN_LOG_DAYS = 365
MAX_ROTATION_DAYS = 90
RESERVED_DB_USERS = frozenset({"admin", "postgres", "root", "rdsadmin", "master", "sa"})

registry = Registry()
R = registry


# ---- Kinesis --------------------------------------------------------------------------------


@R.resource(
    "kinesis-1-encryption-at-rest",
    "Security Hub Kinesis.1",
    "Kinesis streams must be encrypted at rest with KMS.",
    [KINESIS],
)
def _kinesis_encrypted(p: Props) -> Iterator[str]:
    if p.get("encryptionType") != "KMS":
        yield f"encryptionType is {p.get('encryptionType')!r}, expected 'KMS'"


@R.resource(
    "kinesis-customer-managed-key",
    "Checkov CKV_AWS_185",
    "Kinesis streams must use a customer-managed KMS key, not alias/aws/kinesis.",
    [KINESIS],
)
def _kinesis_cmk(p: Props) -> Iterator[str]:
    yield from customer_key_findings(p, "kmsKeyId")


@R.resource(
    "plantstream-kinesis-retention-7d",
    "plantstream PS.1",
    "Stream retention covers a 7-day processor outage so nothing accepted is lost.",
    [KINESIS],
    waivable=True,
)
def _kinesis_retention(p: Props) -> Iterator[str]:
    hours = number(p.get("retentionPeriod"), 24)
    if hours < MIN_STREAM_HOURS:
        yield f"retentionPeriod is {hours:g} h, below {MIN_STREAM_HOURS} h"


# ---- RDS / Aurora ---------------------------------------------------------------------------


@R.resource(
    "rds-2-no-public-access",
    "Security Hub RDS.2",
    "Database instances must not be publicly accessible.",
    [RDS_INSTANCE, RDS_CLUSTER_INSTANCE],
)
def _rds_private(p: Props) -> Iterator[str]:
    if p.get("publiclyAccessible") is not False:
        yield "publiclyAccessible must be explicitly false"


@R.resource(
    "rds-3-instance-encryption",
    "Security Hub RDS.3",
    "RDS instances must be encrypted at rest with a customer-managed key.",
    [RDS_INSTANCE],
)
def _rds_instance_encrypted(p: Props) -> Iterator[str]:
    if not truthy(p.get("storageEncrypted")):
        yield "storageEncrypted is not true"
    yield from customer_key_findings(p, "kmsKeyId")


@R.resource(
    "rds-27-cluster-encryption",
    "Security Hub RDS.27",
    "Aurora clusters must be encrypted at rest with a customer-managed key.",
    [RDS_CLUSTER],
)
def _rds_cluster_encrypted(p: Props) -> Iterator[str]:
    yield from _rds_instance_encrypted(p)


@R.resource(
    "rds-11-backups-30-days",
    "Security Hub RDS.11 (30-day plantstream minimum)",
    "Automated backups must be kept for at least 30 days.",
    [RDS_INSTANCE, RDS_CLUSTER],
)
def _rds_backups(p: Props) -> Iterator[str]:
    days = number(p.get("backupRetentionPeriod"), 1)
    if days < MIN_BACKUP_DAYS:
        yield f"backupRetentionPeriod is {days:g} days, below {MIN_BACKUP_DAYS}"


@R.resource(
    "rds-12-cluster-iam-auth",
    "Security Hub RDS.12",
    "Aurora clusters must have IAM database authentication enabled.",
    [RDS_CLUSTER],
)
def _rds_cluster_iam(p: Props) -> Iterator[str]:
    if not truthy(p.get("iamDatabaseAuthenticationEnabled")):
        yield "iamDatabaseAuthenticationEnabled is not true"


@R.resource(
    "rds-10-instance-iam-auth",
    "Security Hub RDS.10",
    "RDS instances must have IAM database authentication enabled.",
    [RDS_INSTANCE],
)
def _rds_instance_iam(p: Props) -> Iterator[str]:
    yield from _rds_cluster_iam(p)


@R.resource(
    "rds-5-instance-multi-az",
    "Security Hub RDS.5",
    "RDS instances must be Multi-AZ.",
    [RDS_INSTANCE],
    waivable=True,
)
def _rds_multi_az(p: Props) -> Iterator[str]:
    if not truthy(p.get("multiAz")):
        yield "multiAz is not true"


@R.stack(
    "rds-15-cluster-multi-az",
    "Security Hub RDS.15",
    "Aurora clusters must have instances in more than one Availability Zone.",
    types=[RDS_CLUSTER],
    waivable=True,
)
def _rds_cluster_multi_az(
    resources: Sequence[GraphResource],
) -> Iterable[tuple[GraphResource, str]]:
    instances = [r for r in resources if r.resource_type == RDS_CLUSTER_INSTANCE]
    for cluster in (r for r in resources if r.resource_type == RDS_CLUSTER):
        ident = cluster.props.get("clusterIdentifier") or cluster.props.get("id")
        members = [r for r in instances if r.props.get("clusterIdentifier") == ident]
        # An instance without a pinned AZ lands wherever RDS puts it, possibly beside the
        # writer, so only pinned (or, after `up`, actual) zones count.
        zones = {str(z) for m in members if (z := m.props.get("availabilityZone"))}
        if len(zones) < 2:
            yield (
                cluster,
                (
                    f"cluster {ident} has {len(members)} instance(s) in "
                    f"{len(zones)} known AZ(s) {sorted(zones)}; needs instances in two AZs"
                ),
            )


@R.resource(
    "rds-7-8-deletion-protection",
    "Security Hub RDS.7 / RDS.8",
    "Database clusters and instances should have deletion protection.",
    [RDS_CLUSTER, RDS_INSTANCE],
    waivable=True,
)
def _rds_deletion_protection(p: Props) -> Iterator[str]:
    if not truthy(p.get("deletionProtection")):
        yield "deletionProtection is not enabled"


@R.resource(
    "rds-9-instance-log-exports",
    "Security Hub RDS.9",
    "RDS PostgreSQL instances must publish postgresql and upgrade logs.",
    [RDS_INSTANCE],
)
def _rds_instance_logs(p: Props) -> Iterator[str]:
    missing = {"postgresql", "upgrade"} - set(as_list(p.get("enabledCloudwatchLogsExports")))
    if missing:
        yield f"enabledCloudwatchLogsExports lacks {sorted(missing)}"


@R.resource(
    "rds-37-cluster-log-exports",
    "Security Hub RDS.37",
    "Aurora PostgreSQL clusters must publish postgresql logs.",
    [RDS_CLUSTER],
)
def _rds_cluster_logs(p: Props) -> Iterator[str]:
    if "postgresql" not in as_list(p.get("enabledCloudwatchLogsExports")):
        yield "enabledCloudwatchLogsExports lacks 'postgresql'"


@R.resource(
    "rds-13-minor-upgrades",
    "Security Hub RDS.13",
    "Automatic minor version upgrades must be on.",
    [RDS_INSTANCE, RDS_CLUSTER_INSTANCE],
)
def _rds_minor(p: Props) -> Iterator[str]:
    if p.get("autoMinorVersionUpgrade") is False:
        yield "autoMinorVersionUpgrade is false"


@R.resource(
    "rds-16-17-copy-tags",
    "Security Hub RDS.16 / RDS.17",
    "Snapshots must inherit the resource tags.",
    [RDS_CLUSTER, RDS_INSTANCE],
)
def _rds_copy_tags(p: Props) -> Iterator[str]:
    if not truthy(p.get("copyTagsToSnapshot")):
        yield "copyTagsToSnapshot is not true"


@R.resource(
    "rds-24-25-custom-admin-user",
    "Security Hub RDS.24 / RDS.25",
    "The master user must have a custom name (not admin/postgres).",
    [RDS_CLUSTER, RDS_INSTANCE],
)
def _rds_admin_user(p: Props) -> Iterator[str]:
    user = str(p.get("masterUsername") or p.get("username") or "")
    if user.lower() in RESERVED_DB_USERS or not user:
        yield f"master user name {user!r} is a default or reserved name"


@R.resource(
    "rds-managed-master-password",
    "Checkov CKV_SECRET_6 / plantstream PS.2",
    "RDS generates and rotates the master password in Secrets Manager; never an input.",
    [RDS_CLUSTER, RDS_INSTANCE],
)
def _rds_managed_password(p: Props) -> Iterator[str]:
    if p.get("masterPassword") or p.get("password"):
        yield "a master password is passed in; use manageMasterUserPassword"
    if not truthy(p.get("manageMasterUserPassword")):
        yield "manageMasterUserPassword is not true"
    yield from customer_key_findings(p, "masterUserSecretKmsKeyId")


# ---- ElastiCache ----------------------------------------------------------------------------


@R.resource(
    "elasticache-1-backups",
    "Security Hub ElastiCache.1",
    "Redis replication groups must keep automatic snapshots.",
    [REDIS],
)
def _cache_backups(p: Props) -> Iterator[str]:
    if number(p.get("snapshotRetentionLimit")) < 1:
        yield "snapshotRetentionLimit is 0"


@R.resource(
    "elasticache-2-minor-upgrades",
    "Security Hub ElastiCache.2",
    "Automatic minor version upgrades must be on.",
    [REDIS],
)
def _cache_minor(p: Props) -> Iterator[str]:
    if p.get("autoMinorVersionUpgrade") is False or p.get("autoMinorVersionUpgrade") == "false":
        yield "autoMinorVersionUpgrade is false"


@R.resource(
    "elasticache-3-automatic-failover",
    "Security Hub ElastiCache.3",
    "Replication groups must fail over automatically, across AZs.",
    [REDIS],
)
def _cache_failover(p: Props) -> Iterator[str]:
    if not truthy(p.get("automaticFailoverEnabled")):
        yield "automaticFailoverEnabled is not true"
    if not truthy(p.get("multiAzEnabled")):
        yield "multiAzEnabled is not true"


@R.resource(
    "elasticache-4-encryption-at-rest",
    "Security Hub ElastiCache.4",
    "Replication groups must be encrypted at rest with a customer-managed key.",
    [REDIS],
)
def _cache_at_rest(p: Props) -> Iterator[str]:
    if not truthy(p.get("atRestEncryptionEnabled")):
        yield "atRestEncryptionEnabled is not true"
    yield from customer_key_findings(p, "kmsKeyId")


@R.resource(
    "elasticache-5-encryption-in-transit",
    "Security Hub ElastiCache.5",
    "Replication groups must require TLS.",
    [REDIS],
)
def _cache_in_transit(p: Props) -> Iterator[str]:
    if not truthy(p.get("transitEncryptionEnabled")):
        yield "transitEncryptionEnabled is not true"
    if p.get("transitEncryptionMode") not in (None, "required"):
        yield f"transitEncryptionMode is {p.get('transitEncryptionMode')!r}, expected 'required'"


@R.resource(
    "elasticache-6-auth",
    "Security Hub ElastiCache.6",
    "Replication groups must require AUTH (token or RBAC user group).",
    [REDIS],
)
def _cache_auth(p: Props) -> Iterator[str]:
    if not (p.get("authToken") or p.get("authTokenWo") or p.get("userGroupIds")):
        yield "neither an AUTH token nor a user group is configured"


@R.resource(
    "elasticache-7-custom-subnet-group",
    "Security Hub ElastiCache.7",
    "Replication groups must not use the default subnet group.",
    [REDIS],
)
def _cache_subnets(p: Props) -> Iterator[str]:
    if p.get("subnetGroupName") in (None, "", "default"):
        yield "subnetGroupName is the default subnet group"


# ---- Secrets Manager ------------------------------------------------------------------------


@R.resource(
    "secretsmanager-customer-managed-key",
    "Checkov CKV_AWS_149",
    "Secrets must be encrypted with a customer-managed KMS key.",
    [SECRET],
)
def _secret_cmk(p: Props) -> Iterator[str]:
    yield from customer_key_findings(p, "kmsKeyId")


@R.resource(
    "secretsmanager-4-rotation-period",
    "Security Hub SecretsManager.4",
    f"Secrets must rotate at least every {MAX_ROTATION_DAYS} days.",
    [SECRET_ROTATION],
)
def _secret_rotation_period(p: Props) -> Iterator[str]:
    rules = p.get("rotationRules") or {}
    days = number(rules.get("automaticallyAfterDays"), 0)
    if not rules.get("scheduleExpression") and not 0 < days <= MAX_ROTATION_DAYS:
        yield f"automaticallyAfterDays is {days:g}, expected 1..{MAX_ROTATION_DAYS}"


@R.stack(
    "secretsmanager-1-rotation-enabled",
    "Security Hub SecretsManager.1",
    "Every secret must have automatic rotation configured.",
    types=[SECRET],
    waivable=True,
)
def _secret_rotation(resources: Sequence[GraphResource]) -> Iterable[tuple[GraphResource, str]]:
    rotated = {
        str(r.props.get("secretId"))
        for r in resources
        if r.resource_type == SECRET_ROTATION and r.props.get("rotationEnabled") is not False
    }
    for secret in (r for r in resources if r.resource_type == SECRET):
        ids = {str(secret.props.get("arn")), str(secret.props.get("id"))}
        if not ids & rotated:
            yield secret, f"secret {secret.props.get('name')} has no rotation"


# ---- KMS ------------------------------------------------------------------------------------


@R.resource(
    "kms-4-key-rotation",
    "Security Hub KMS.4",
    "Customer-managed keys must rotate automatically.",
    [KMS_KEY],
)
def _kms_rotation(p: Props) -> Iterator[str]:
    if not truthy(p.get("enableKeyRotation")):
        yield "enableKeyRotation is not true"


@R.resource(
    "kms-explicit-policy-no-wildcard",
    "Checkov CKV_AWS_33",
    "Keys must have an explicit key policy with no unconditioned wildcard principal.",
    [KMS_KEY],
)
def _kms_policy(p: Props) -> Iterator[str]:
    doc = as_json(p.get("policy"))
    if not isinstance(doc, dict):
        yield "no explicit key policy"
        return
    for stmt in statements(doc):
        principal = stmt.get("Principal")
        aws_principal = principal.get("AWS") if isinstance(principal, dict) else principal
        if (
            stmt.get("Effect") == "Allow"
            and "*" in as_list(aws_principal)
            and not stmt.get("Condition")
        ):
            yield f"statement {stmt.get('Sid', '?')} allows any principal"


# ---- CloudWatch Logs and SNS ----------------------------------------------------------------


@R.resource(
    "cloudwatch-logs-kms",
    "Checkov CKV_AWS_158",
    "Log groups must be encrypted with a customer-managed KMS key.",
    [LOG_GROUP],
)
def _logs_kms(p: Props) -> Iterator[str]:
    yield from customer_key_findings(p, "kmsKeyId")


@R.resource(
    "cloudwatch-16-log-retention-1-year",
    "Security Hub CloudWatch.16 / CKV_AWS_338",
    f"Log groups must keep logs for at least {MIN_LOG_DAYS} days.",
    [LOG_GROUP],
    waivable=True,
)
def _logs_retention(p: Props) -> Iterator[str]:
    days = number(p.get("retentionInDays"), 0)
    if days and days < MIN_LOG_DAYS:
        yield f"retentionInDays is {days:g}, below {MIN_LOG_DAYS}"


@R.resource(
    "sns-1-kms", "Security Hub SNS.1", "Alarm topics must be encrypted with KMS.", [SNS_TOPIC]
)
def _sns_kms(p: Props) -> Iterator[str]:
    if not p.get("kmsMasterKeyId"):
        yield "kmsMasterKeyId is not set"
