"""ElastiCache Redis/Valkey: encrypted at rest with the cache key, TLS required, AUTH token from
Secrets Manager, Multi-AZ automatic failover, daily snapshots; cluster mode optional.
"""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from .context import StackContext

REDIS_PORT = 6379


@dataclass(frozen=True)
class CacheArgs:
    ctx: StackContext
    vpc_id: pulumi.Input[str]
    subnet_ids: list[pulumi.Output[str]]
    key_arn: pulumi.Input[str]
    logs_key_arn: pulumi.Input[str]
    auth_token: pulumi.Input[str]


class Cache(pulumi.ComponentResource):
    """The replication group and its security group (clients are added by the services)."""

    endpoint: pulumi.Output[str]
    security_group_id: pulumi.Output[str]

    def __init__(
        self, name: str, args: CacheArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("plantstream:cache:Cache", name, None, opts)
        ctx = args.ctx
        cfg = ctx.settings.cache
        child = pulumi.ResourceOptions(parent=self)
        self.port = REDIS_PORT
        self.replication_group_id = ctx.name("redis")

        subnet_group = aws.elasticache.SubnetGroup(
            f"{name}-subnets",
            name=ctx.name("redis-subnet-group"),
            subnet_ids=args.subnet_ids,
            description="Private subnets for the cache",
            tags=ctx.tags(aws.elasticache.SubnetGroup, ctx.name("redis-subnet-group")),
            opts=child,
        )
        sg = aws.ec2.SecurityGroup(
            f"{name}-sg",
            name=ctx.name("redis-sg"),
            vpc_id=args.vpc_id,
            description="Redis; only the plantstream tasks may connect",
            tags=ctx.tags(aws.ec2.SecurityGroup, ctx.name("redis-sg")),
            opts=child,
        )
        slow_log = aws.cloudwatch.LogGroup(
            f"{name}-slow-log",
            name=f"/plantstream/redis-slow-log-{ctx.suffix}",
            retention_in_days=ctx.settings.log_retention_days,
            kms_key_id=args.logs_key_arn,
            tags=ctx.tags(aws.cloudwatch.LogGroup),
            opts=child,
        )

        clustered = cfg.cluster_mode
        group = aws.elasticache.ReplicationGroup(
            f"{name}-redis",
            replication_group_id=self.replication_group_id,
            description=f"plantstream hot state ({ctx.suffix})",
            engine=cfg.engine,
            engine_version=cfg.engine_version,
            node_type=cfg.node_type,
            port=REDIS_PORT,
            parameter_group_name=cfg.parameter_group,
            subnet_group_name=subnet_group.name,
            security_group_ids=[sg.id],
            at_rest_encryption_enabled=True,
            kms_key_id=args.key_arn,
            transit_encryption_enabled=True,
            transit_encryption_mode="required",
            auth_token=args.auth_token,
            auth_token_update_strategy="ROTATE",  # noqa: S106 - a strategy, not a token
            automatic_failover_enabled=True,
            multi_az_enabled=True,
            snapshot_retention_limit=cfg.snapshot_retention_days,
            snapshot_window="02:00-03:00",
            maintenance_window="sun:04:00-sun:05:00",
            auto_minor_version_upgrade=True,
            apply_immediately=True,
            log_delivery_configurations=[
                {
                    "destination": slow_log.name,
                    "destination_type": "cloudwatch-logs",
                    "log_format": "json",
                    "log_type": "slow-log",
                }
            ],
            tags=ctx.tags(aws.elasticache.ReplicationGroup, self.replication_group_id),
            # The rotation Lambda changes the token in place; Pulumi must not put the old one back.
            opts=pulumi.ResourceOptions(parent=self, ignore_changes=["authToken"]),
            cluster_mode="enabled" if clustered else "disabled",
            num_node_groups=cfg.shards if clustered else None,
            replicas_per_node_group=cfg.replicas_per_shard if clustered else None,
            num_cache_clusters=None if clustered else cfg.nodes,
        )
        self.endpoint = (
            group.configuration_endpoint_address
            if cfg.cluster_mode
            else group.primary_endpoint_address
        )
        self.arn = group.arn
        self.security_group_id = sg.id
        self.register_outputs({"endpoint": self.endpoint, "port": self.port})
