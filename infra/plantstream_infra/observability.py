"""Alarms on what hurts first: stream lag, processor errors, database capacity, cache memory.

Alarms publish to a KMS-encrypted SNS topic (optionally mailed to ``plantstream:alarmEmail``).
"""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from .context import StackContext


@dataclass(frozen=True)
class ObservabilityArgs:
    ctx: StackContext
    logs_key_arn: pulumi.Input[str]
    stream_name: pulumi.Output[str]
    processor_log_group: pulumi.Output[str]
    database_kind: str
    database_identifier: str
    redis_group_id: str
    cluster_name: pulumi.Output[str]
    processor_service_name: pulumi.Output[str]
    api_gateway_name: str | None = None


class Observability(pulumi.ComponentResource):
    """The alarm topic and the alarms."""

    topic_arn: pulumi.Output[str]

    def __init__(
        self, name: str, args: ObservabilityArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("plantstream:observability:Observability", name, None, opts)
        ctx = args.ctx
        child = pulumi.ResourceOptions(parent=self)
        topic_name = ctx.name("plantstream-alarms")
        topic = aws.sns.Topic(
            f"{name}-alarms",
            name=topic_name,
            kms_master_key_id=args.logs_key_arn,
            tags=ctx.tags(aws.sns.Topic, topic_name),
            opts=child,
        )
        if ctx.settings.alarm_email:
            aws.sns.TopicSubscription(
                f"{name}-alarm-email",
                topic=topic.arn,
                protocol="email",
                endpoint=ctx.settings.alarm_email,
                opts=child,
            )
        self.topic_arn = topic.arn
        self.alarm_names: list[str] = []
        namespace = f"plantstream/{ctx.suffix}"

        self._alarm(
            name,
            ctx,
            "kinesis-iterator-age",
            "The processor lags the stream by more than a minute",
            namespace="AWS/Kinesis",
            metric="GetRecords.IteratorAgeMilliseconds",
            dimensions={"StreamName": args.stream_name},
            statistic="Maximum",
            threshold=60_000,
            periods=5,
        )

        aws.cloudwatch.LogMetricFilter(
            f"{name}-processor-errors",
            name=ctx.name("processor-errors"),
            log_group_name=args.processor_log_group,
            pattern="?ERROR ?error ?Traceback",
            metric_transformation={
                "name": "ProcessorErrors",
                "namespace": namespace,
                "value": "1",
                "default_value": "0",
            },
            opts=child,
        )
        self._alarm(
            name,
            ctx,
            "processor-errors",
            "The processor logs errors",
            namespace=namespace,
            metric="ProcessorErrors",
            dimensions={},
            statistic="Sum",
            threshold=5,
            periods=1,
            period=300,
        )
        self._alarm(
            name,
            ctx,
            "processor-running",
            "No processor task is running",
            namespace="ECS/ContainerInsights",
            metric="RunningTaskCount",
            dimensions={
                "ClusterName": args.cluster_name,
                "ServiceName": args.processor_service_name,
            },
            statistic="Minimum",
            threshold=1,
            periods=3,
            comparison="LessThanThreshold",
            missing="breaching",
        )

        if args.database_kind == "aurora-serverless":
            self._alarm(
                name,
                ctx,
                "aurora-capacity",
                "Aurora Serverless v2 runs at more than 90% of its maximum ACUs",
                namespace="AWS/RDS",
                metric="ACUUtilization",
                dimensions={"DBClusterIdentifier": args.database_identifier},
                statistic="Average",
                threshold=90,
                periods=3,
                period=300,
            )
        else:
            self._alarm(
                name,
                ctx,
                "postgres-cpu",
                "PostgreSQL CPU above 80%",
                namespace="AWS/RDS",
                metric="CPUUtilization",
                dimensions={"DBInstanceIdentifier": args.database_identifier},
                statistic="Average",
                threshold=80,
                periods=3,
                period=300,
            )
            self._alarm(
                name,
                ctx,
                "postgres-storage",
                "PostgreSQL has less than 2 GiB free",
                namespace="AWS/RDS",
                metric="FreeStorageSpace",
                dimensions={"DBInstanceIdentifier": args.database_identifier},
                statistic="Minimum",
                threshold=2 * 1024**3,
                periods=1,
                period=300,
                comparison="LessThanThreshold",
            )

        # Memory is per node. Every node is its own member cluster (-001, or -0001-001 per
        # shard in cluster mode), and CacheClusterId is the dimension its metrics carry.
        for member in ctx.settings.cache.member_cluster_ids:
            self._alarm(
                name,
                ctx,
                f"redis-memory-{member}",
                f"Redis node {member} uses more than 80% of its memory",
                namespace="AWS/ElastiCache",
                metric="DatabaseMemoryUsagePercentage",
                dimensions={"CacheClusterId": f"{args.redis_group_id}-{member}"},
                statistic="Maximum",
                threshold=80,
                periods=3,
                period=300,
            )

        if args.api_gateway_name:
            self._alarm(
                name,
                ctx,
                "ingest-api-5xx",
                "The ingest API answers 5xx",
                namespace="AWS/ApiGateway",
                metric="5XXError",
                dimensions={
                    "ApiName": args.api_gateway_name,
                    "Stage": ctx.settings.front_door.api_stage_name,
                },
                statistic="Sum",
                threshold=5,
                periods=1,
                period=300,
            )
        self.register_outputs({"topic_arn": self.topic_arn})

    def _alarm(
        self,
        name: str,
        ctx: StackContext,
        key: str,
        description: str,
        *,
        namespace: str,
        metric: str,
        dimensions: dict[str, pulumi.Input[str]],
        statistic: str,
        threshold: float,
        periods: int,
        period: int = 60,
        comparison: str = "GreaterThanOrEqualToThreshold",
        missing: str = "notBreaching",
    ) -> None:
        alarm_name = ctx.name(f"alarm-{key}")
        self.alarm_names.append(alarm_name)
        aws.cloudwatch.MetricAlarm(
            f"{name}-{key}",
            name=alarm_name,
            alarm_description=description,
            namespace=namespace,
            metric_name=metric,
            dimensions=dimensions or None,
            statistic=statistic,
            period=period,
            evaluation_periods=periods,
            threshold=threshold,
            comparison_operator=comparison,
            treat_missing_data=missing,
            alarm_actions=[self.topic_arn],
            ok_actions=[self.topic_arn],
            tags=ctx.tags(aws.cloudwatch.MetricAlarm, alarm_name),
            opts=pulumi.ResourceOptions(parent=self),
        )
