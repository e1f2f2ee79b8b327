"""PostgreSQL: Aurora Serverless v2 by default, or one RDS PostgreSQL instance (seeds 002-004).

The master password is generated, stored and rotated by RDS in Secrets Manager (never an input);
backups are kept 30 days; the stack stays destroyable (no final snapshot, no retain).
"""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from .context import StackContext

POSTGRES_PORT = 5432


@dataclass(frozen=True)
class DatabaseArgs:
    ctx: StackContext
    vpc_id: pulumi.Input[str]
    subnet_ids: list[pulumi.Output[str]]
    availability_zones: list[pulumi.Output[str]]
    key_arn: pulumi.Input[str]
    secrets_key_arn: pulumi.Input[str]
    logs_key_arn: pulumi.Input[str]


class Database(pulumi.ComponentResource):
    """The database and its security group; clients are allowed in by the services component."""

    endpoint: pulumi.Output[str]
    arn: pulumi.Output[str]
    secret_arn: pulumi.Output[str]
    security_group_id: pulumi.Output[str]

    def __init__(
        self, name: str, args: DatabaseArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("plantstream:database:Database", name, None, opts)
        ctx = args.ctx
        cfg = ctx.settings.database
        child = pulumi.ResourceOptions(parent=self)
        self.kind = cfg.kind
        self.port = POSTGRES_PORT
        self.database_name = cfg.database_name
        self.username = cfg.master_username

        subnet_group = aws.rds.SubnetGroup(
            f"{name}-subnets",
            name=ctx.name("db-subnet-group"),
            subnet_ids=args.subnet_ids,
            description="Private subnets for PostgreSQL",
            tags=ctx.tags(aws.rds.SubnetGroup, ctx.name("db-subnet-group")),
            opts=child,
        )
        sg = aws.ec2.SecurityGroup(
            f"{name}-sg",
            name=ctx.name("db-sg"),
            vpc_id=args.vpc_id,
            description="PostgreSQL; only the plantstream tasks may connect",
            tags=ctx.tags(aws.ec2.SecurityGroup, ctx.name("db-sg")),
            opts=child,
        )
        self.security_group_id = sg.id

        if cfg.kind == "aurora-serverless":
            self.identifier = ctx.name("aurora")
            self._log_groups(
                name, ctx, args, f"/aws/rds/cluster/{self.identifier}", ("postgresql",)
            )
            self._aurora(name, ctx, args, subnet_group=subnet_group, sg=sg, child=child)
        else:
            self.identifier = ctx.name("postgres")
            self._log_groups(
                name, ctx, args, f"/aws/rds/instance/{self.identifier}", ("postgresql", "upgrade")
            )
            self._instance(name, ctx, args, subnet_group=subnet_group, sg=sg)

        aws.secretsmanager.SecretRotation(
            f"{name}-master-secret-rotation",
            secret_id=self.secret_arn,
            rotation_rules={"automatically_after_days": cfg.secret_rotation_days},
            opts=child,
        )
        self.register_outputs(
            {
                "endpoint": self.endpoint,
                "arn": self.arn,
                "secret_arn": self.secret_arn,
            }
        )

    def _log_groups(
        self, name: str, ctx: StackContext, args: DatabaseArgs, prefix: str, kinds: tuple[str, ...]
    ) -> None:
        # Created before the database so RDS writes into KMS-encrypted groups with a retention,
        # instead of creating unencrypted never-expiring ones itself.
        self.log_groups = [
            aws.cloudwatch.LogGroup(
                f"{name}-{kind}-logs",
                name=f"{prefix}/{kind}",
                retention_in_days=ctx.settings.log_retention_days,
                kms_key_id=args.logs_key_arn,
                tags=ctx.tags(aws.cloudwatch.LogGroup),
                opts=pulumi.ResourceOptions(parent=self),
            )
            for kind in kinds
        ]

    def _aurora(
        self,
        name: str,
        ctx: StackContext,
        args: DatabaseArgs,
        *,
        subnet_group: aws.rds.SubnetGroup,
        sg: aws.ec2.SecurityGroup,
        child: pulumi.ResourceOptions,
    ) -> None:
        cfg = ctx.settings.database
        # The config pins the major ("16"); the newest minor RDS offers in the region at the
        # first deploy is resolved here, and AWS's automatic minor upgrades later are ignored
        # (no "downgrade" diff, and no pinned minor that RDS has stopped offering).
        offered = aws.rds.get_engine_version_output(
            engine="aurora-postgresql",
            version=cfg.aurora_engine_version,
            latest=True,
            opts=pulumi.InvokeOutputOptions(parent=self),
        )
        cluster = aws.rds.Cluster(
            f"{name}-cluster",
            cluster_identifier=self.identifier,
            engine="aurora-postgresql",
            engine_mode="provisioned",
            engine_version=offered.version_actual,
            database_name=cfg.database_name,
            master_username=cfg.master_username,
            manage_master_user_password=True,
            master_user_secret_kms_key_id=args.secrets_key_arn,
            storage_encrypted=True,
            kms_key_id=args.key_arn,
            iam_database_authentication_enabled=True,
            enabled_cloudwatch_logs_exports=["postgresql"],
            backup_retention_period=cfg.backup_retention_days,
            preferred_backup_window="03:00-04:00",
            preferred_maintenance_window="sun:05:00-sun:06:00",
            copy_tags_to_snapshot=True,
            deletion_protection=cfg.deletion_protection,
            skip_final_snapshot=True,
            db_subnet_group_name=subnet_group.name,
            vpc_security_group_ids=[sg.id],
            serverlessv2_scaling_configuration={
                "min_capacity": cfg.min_acu,
                "max_capacity": cfg.max_acu,
            },
            tags=ctx.tags(aws.rds.Cluster, self.identifier),
            opts=pulumi.ResourceOptions(
                parent=self, depends_on=self.log_groups, ignore_changes=["engineVersion"]
            ),
        )
        self.ready: list[pulumi.Resource] = []
        for i in range(cfg.aurora_instances):
            ident = ctx.name(f"aurora-{i + 1}")
            instance = aws.rds.ClusterInstance(
                f"{name}-instance-{i + 1}",
                identifier=ident,
                cluster_identifier=cluster.id,
                instance_class="db.serverless",
                engine=aws.rds.EngineType.AURORA_POSTGRESQL,
                engine_version=cluster.engine_version,
                publicly_accessible=False,
                auto_minor_version_upgrade=True,
                copy_tags_to_snapshot=True,
                db_subnet_group_name=subnet_group.name,
                promotion_tier=i,
                # One instance per AZ: the reader is the failover target (RDS.15).
                availability_zone=args.availability_zones[i % len(args.availability_zones)],
                tags=ctx.tags(aws.rds.ClusterInstance, ident),
                opts=pulumi.ResourceOptions(parent=self, ignore_changes=["engineVersion"]),
            )
            self.ready.append(instance)
        self.endpoint = cluster.endpoint
        self.reader_endpoint = cluster.reader_endpoint
        self.arn = cluster.arn
        self.secret_arn = cluster.master_user_secrets.apply(lambda s: str(s[0].secret_arn))

    def _instance(
        self,
        name: str,
        ctx: StackContext,
        args: DatabaseArgs,
        *,
        subnet_group: aws.rds.SubnetGroup,
        sg: aws.ec2.SecurityGroup,
    ) -> None:
        cfg = ctx.settings.database
        instance = aws.rds.Instance(
            f"{name}-instance",
            identifier=self.identifier,
            engine="postgres",
            engine_version=cfg.postgres_engine_version,
            auto_minor_version_upgrade=True,
            instance_class=cfg.instance_class,
            allocated_storage=cfg.allocated_storage_gb,
            max_allocated_storage=cfg.allocated_storage_gb * 5,
            storage_type="gp3",
            storage_encrypted=True,
            kms_key_id=args.key_arn,
            db_name=cfg.database_name,
            username=cfg.master_username,
            manage_master_user_password=True,
            master_user_secret_kms_key_id=args.secrets_key_arn,
            multi_az=cfg.multi_az,
            publicly_accessible=False,
            iam_database_authentication_enabled=True,
            enabled_cloudwatch_logs_exports=["postgresql", "upgrade"],
            backup_retention_period=cfg.backup_retention_days,
            backup_window="03:00-04:00",
            maintenance_window="sun:05:00-sun:06:00",
            copy_tags_to_snapshot=True,
            deletion_protection=cfg.deletion_protection,
            skip_final_snapshot=True,
            delete_automated_backups=True,
            db_subnet_group_name=subnet_group.name,
            vpc_security_group_ids=[sg.id],
            tags=ctx.tags(aws.rds.Instance, self.identifier),
            opts=pulumi.ResourceOptions(parent=self, depends_on=self.log_groups),
        )
        self.ready = [instance]
        self.endpoint = instance.address
        # "host:port", as RDS's own Endpoint attribute (and seed 002's rds_endpoint output)
        self.endpoint_with_port = instance.endpoint
        self.reader_endpoint = instance.address
        self.arn = instance.arn
        self.secret_arn = instance.master_user_secrets.apply(lambda s: str(s[0].secret_arn))
