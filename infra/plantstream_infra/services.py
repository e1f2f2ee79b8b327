"""ECS Fargate: the ingest, processor and api services from one image, in private subnets.

Tasks run as a non-root user on a read-only root filesystem, get secrets injected by ECS from
Secrets Manager, and each role has its own least-privilege task role.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_aws as aws

from .context import StackContext
from .environment import PREVIOUS_STAGE, environment
from .environment import secrets as environment_secrets
from .network import VPC_CIDR
from .task_roles import ADMIN_ROLE, task_statements

ROLES = ("ingest", "processor", "api")
FULL_VCPU = 1024  # ECS CPU units of one vCPU
WEB_ROLES = ("ingest", "api")  # serve HTTP behind the load balancer, verify API keys
CONTAINER = "plantstream"
CONTAINER_USER = "10001:10001"


@dataclass(frozen=True)
class ServicesArgs:
    ctx: StackContext
    vpc_id: pulumi.Input[str]
    private_subnet_ids: list[pulumi.Output[str]]
    s3_prefix_list_id: pulumi.Input[str]
    image: pulumi.Input[str]
    image_repository_arn: pulumi.Input[str] | None
    images_key_arn: pulumi.Input[str] | None
    stream_name: pulumi.Output[str]
    stream_arn: pulumi.Output[str]
    stream_key_arn: pulumi.Input[str]
    secrets_key_arn: pulumi.Input[str]
    logs_key_arn: pulumi.Input[str]
    db_endpoint: pulumi.Output[str]
    db_port: int
    db_name: str
    db_username: str
    db_secret_arn: pulumi.Output[str]
    db_security_group_id: pulumi.Output[str]
    redis_endpoint: pulumi.Output[str]
    redis_port: int
    redis_auth_secret_arn: pulumi.Output[str]
    server_secret_arn: pulumi.Output[str]
    redis_security_group_id: pulumi.Output[str]
    alb_security_group_id: pulumi.Output[str]
    target_groups: dict[str, aws.lb.TargetGroup]
    listener: aws.lb.Listener
    # What must exist before a task starts: the rule that routes /v1/readings to the ingest
    # target group, and a database instance (a cluster endpoint alone takes no connections,
    # and the start-up migration would fail the tasks into the deployment circuit breaker).
    listener_rules: Sequence[aws.lb.ListenerRule]
    database_ready: Sequence[pulumi.Resource]


def _doc(*statements: dict[str, Any]) -> pulumi.Output[str]:
    return pulumi.Output.json_dumps({"Version": "2012-10-17", "Statement": list(statements)})


def sg_ingress(
    parent: pulumi.Resource,
    name: str,
    ctx: StackContext,
    *,
    key: str,
    group: pulumi.Input[str],
    from_sg: pulumi.Input[str],
    port: int,
    description: str,
) -> aws.vpc.SecurityGroupIngressRule:
    """TCP ``port`` into ``group`` from the security group ``from_sg`` only."""
    return aws.vpc.SecurityGroupIngressRule(
        f"{name}-{key}",
        security_group_id=group,
        referenced_security_group_id=from_sg,
        ip_protocol="tcp",
        from_port=port,
        to_port=port,
        description=description,
        tags=ctx.tags(aws.vpc.SecurityGroupIngressRule, ctx.name(key)),
        opts=pulumi.ResourceOptions(parent=parent),
    )


def sg_egress(
    parent: pulumi.Resource,
    name: str,
    ctx: StackContext,
    *,
    key: str,
    group: pulumi.Input[str],
    port: int,
    description: str,
    **target: pulumi.Input[str],
) -> aws.vpc.SecurityGroupEgressRule:
    """TCP ``port`` out of ``group`` to one target (a security group, CIDR or prefix list)."""
    return aws.vpc.SecurityGroupEgressRule(
        f"{name}-{key}",
        security_group_id=group,
        ip_protocol="tcp",
        from_port=port,
        to_port=port,
        description=description,
        tags=ctx.tags(aws.vpc.SecurityGroupEgressRule, ctx.name(key)),
        opts=pulumi.ResourceOptions(parent=parent),
        **target,
    )


def task_role(parent: pulumi.Resource, name: str, ctx: StackContext, key: str) -> aws.iam.Role:
    """A role ECS tasks of this account (and only those) assume."""
    role_name = ctx.name(key)
    assume = ctx.account_id.apply(
        lambda account: json.dumps(
            {
                "Version": "2012-10-17",
                "Statement": [
                    {
                        "Effect": "Allow",
                        "Action": "sts:AssumeRole",
                        "Principal": {"Service": "ecs-tasks.amazonaws.com"},
                        "Condition": {"StringEquals": {"aws:SourceAccount": account}},
                    }
                ],
            }
        )
    )
    return aws.iam.Role(
        f"{name}-{key}",
        name=role_name,
        assume_role_policy=assume,
        tags=ctx.tags(aws.iam.Role, role_name),
        opts=pulumi.ResourceOptions(parent=parent),
    )


def execution_statements(
    *,
    log_group_arns: Sequence[pulumi.Input[str]],
    secret_arns: Sequence[pulumi.Input[str]],
    secrets_key_arn: pulumi.Input[str],
    image_repository_arn: pulumi.Input[str] | None,
    images_key_arn: pulumi.Input[str] | None,
) -> list[dict[str, Any]]:
    """What ECS itself needs to start a task: pull the image, write logs, inject secrets."""
    statements: list[dict[str, Any]] = [
        {
            "Sid": "WriteTaskLogs",
            "Effect": "Allow",
            "Action": ["logs:CreateLogStream", "logs:PutLogEvents"],
            "Resource": [pulumi.Output.concat(arn, ":*") for arn in log_group_arns],
        },
        {
            "Sid": "InjectSecrets",
            "Effect": "Allow",
            "Action": ["secretsmanager:GetSecretValue"],
            "Resource": list(secret_arns),
        },
        {
            "Sid": "DecryptSecrets",
            "Effect": "Allow",
            "Action": ["kms:Decrypt"],
            "Resource": secrets_key_arn,
        },
    ]
    if image_repository_arn is not None:
        statements += [
            {
                "Sid": "EcrLogin",
                "Effect": "Allow",
                "Action": ["ecr:GetAuthorizationToken"],
                "Resource": "*",
            },
            {
                "Sid": "PullImage",
                "Effect": "Allow",
                "Action": [
                    "ecr:BatchGetImage",
                    "ecr:GetDownloadUrlForLayer",
                    "ecr:BatchCheckLayerAvailability",
                ],
                "Resource": image_repository_arn,
            },
        ]
    if image_repository_arn is not None and images_key_arn is not None:
        statements.append(
            {
                "Sid": "DecryptImage",
                "Effect": "Allow",
                "Action": ["kms:Decrypt"],
                "Resource": images_key_arn,
            }
        )
    return statements


def data_plane_settings(args: ServicesArgs) -> tuple[dict[str, Any], dict[str, Any]]:
    """(environment, secrets) by Settings field that every role connecting to the stream,
    PostgreSQL and Redis gets."""
    db_url = pulumi.Output.concat(
        "postgresql://",
        args.db_username,
        "@",
        args.db_endpoint,
        f":{args.db_port}/",
        args.db_name,
        "?sslmode=require",
    )
    redis_url = pulumi.Output.concat("rediss://", args.redis_endpoint, f":{args.redis_port}/0")
    env: dict[str, Any] = {
        "stream": "kinesis",
        "kinesis_stream_name": args.stream_name,
        "database_url": db_url,
        "db_secret_arn": args.db_secret_arn,
        "redis_url": redis_url,
        "redis_auth_secret_arn": args.redis_auth_secret_arn,
        "aws_region": args.ctx.region,
    }
    secrets: dict[str, Any] = {
        "database_password": pulumi.Output.concat(args.db_secret_arn, ":password::"),
        "redis_password": args.redis_auth_secret_arn,
    }
    return env, secrets


def hardened_container(
    *,
    image: pulumi.Input[str],
    command: list[str],
    env: dict[str, Any],
    secrets: dict[str, Any],
    log_group: aws.cloudwatch.LogGroup,
    region: str,
    prefix: str,
) -> dict[str, Any]:
    """Non-root, read-only root with a /tmp scratch volume, no capabilities, awslogs."""
    return {
        "name": CONTAINER,
        "image": image,
        "essential": True,
        "command": command,
        "user": CONTAINER_USER,
        "readonlyRootFilesystem": True,
        "privileged": False,
        "linuxParameters": {"initProcessEnabled": True, "capabilities": {"drop": ["ALL"]}},
        "mountPoints": [
            {
                "sourceVolume": "tmp",
                "containerPath": "/tmp",  # noqa: S108
                "readOnly": False,
            }
        ],
        "environment": environment(env),
        "secrets": environment_secrets(secrets),
        "stopTimeout": 30,
        "logConfiguration": {
            "logDriver": "awslogs",
            "options": {
                "awslogs-group": log_group.name,
                "awslogs-region": region,
                "awslogs-stream-prefix": prefix,
            },
        },
    }


class Services(pulumi.ComponentResource):
    """The cluster, one task definition and service per role, and their IAM roles."""

    cluster_name: pulumi.Output[str]
    cluster_arn: pulumi.Output[str]

    def __init__(
        self, name: str, args: ServicesArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("plantstream:services:Services", name, None, opts)
        ctx = args.ctx
        child = pulumi.ResourceOptions(parent=self)
        cluster_name = ctx.name("plantstream-cluster")
        cluster = aws.ecs.Cluster(
            f"{name}-cluster",
            name=cluster_name,
            settings=[{"name": "containerInsights", "value": "enabled"}],
            tags=ctx.tags(aws.ecs.Cluster, cluster_name),
            opts=child,
        )
        self.tasks_sg = self._security_groups(name, args)
        self.log_groups = {
            role: aws.cloudwatch.LogGroup(
                f"{name}-{role}-logs",
                name=f"/plantstream/ecs/{role}-{ctx.suffix}",
                retention_in_days=ctx.settings.log_retention_days,
                kms_key_id=args.logs_key_arn,
                tags=ctx.tags(aws.cloudwatch.LogGroup),
                opts=child,
            )
            for role in ROLES
        }
        execution_role = self._execution_role(name, args)
        self.task_roles = {role: self._task_role(name, args, role) for role in ROLES}
        self.services: dict[str, aws.ecs.Service] = {}
        self.task_definitions: dict[str, aws.ecs.TaskDefinition] = {}
        for role in ROLES:
            self._service(name, args, role, cluster, execution_role)

        self.cluster = cluster
        self.cluster_name = cluster.name
        self.cluster_arn = cluster.arn
        self.tasks_security_group_id = self.tasks_sg.id
        self.register_outputs({"cluster_name": self.cluster_name, "cluster_arn": self.cluster_arn})

    # ---- network ----------------------------------------------------------------------------

    def _security_groups(self, name: str, args: ServicesArgs) -> aws.ec2.SecurityGroup:
        ctx = args.ctx
        child = pulumi.ResourceOptions(parent=self)
        port = ctx.settings.services.container_port
        sg = aws.ec2.SecurityGroup(
            f"{name}-tasks-sg",
            name=ctx.name("ecs-tasks-sg"),
            vpc_id=args.vpc_id,
            description="plantstream ECS tasks: HTTP from the load balancer only",
            tags=ctx.tags(aws.ec2.SecurityGroup, ctx.name("ecs-tasks-sg")),
            opts=child,
        )

        def ingress(
            key: str, group: pulumi.Input[str], from_sg: pulumi.Input[str], p: int, description: str
        ) -> None:
            sg_ingress(
                self,
                name,
                ctx,
                key=key,
                group=group,
                from_sg=from_sg,
                port=p,
                description=description,
            )

        def egress(
            key: str,
            group: pulumi.Input[str],
            p: int,
            description: str,
            **target: pulumi.Input[str],
        ) -> None:
            sg_egress(
                self, name, ctx, key=key, group=group, port=p, description=description, **target
            )

        ingress(
            "tasks-from-alb", sg.id, args.alb_security_group_id, port, "HTTP from the load balancer"
        )
        egress(
            "alb-to-tasks",
            args.alb_security_group_id,
            port,
            "HTTP to the plantstream tasks",
            referenced_security_group_id=sg.id,
        )
        ingress(
            "db-from-tasks",
            args.db_security_group_id,
            sg.id,
            args.db_port,
            "PostgreSQL from the plantstream tasks",
        )
        egress(
            "tasks-to-db",
            sg.id,
            args.db_port,
            "PostgreSQL",
            referenced_security_group_id=args.db_security_group_id,
        )
        ingress(
            "redis-from-tasks",
            args.redis_security_group_id,
            sg.id,
            args.redis_port,
            "Redis from the plantstream tasks",
        )
        egress(
            "tasks-to-redis",
            sg.id,
            args.redis_port,
            "Redis",
            referenced_security_group_id=args.redis_security_group_id,
        )
        egress(
            "tasks-to-endpoints",
            sg.id,
            443,
            "AWS APIs through the VPC endpoints",
            cidr_ipv4=VPC_CIDR,
        )
        egress(
            "tasks-to-s3",
            sg.id,
            443,
            "ECR image layers through the S3 gateway endpoint",
            prefix_list_id=args.s3_prefix_list_id,
        )
        if ctx.settings.network.nat != "none":
            egress(
                "tasks-to-internet",
                sg.id,
                443,
                "HTTPS through the NAT gateway",
                cidr_ipv4="0.0.0.0/0",
            )
        return sg

    # ---- IAM --------------------------------------------------------------------------------

    def _role(self, name: str, ctx: StackContext, key: str) -> aws.iam.Role:
        return task_role(self, name, ctx, key)

    def _execution_role(self, name: str, args: ServicesArgs) -> aws.iam.Role:
        """What ECS itself needs to start a task: pull the image, write logs, inject secrets."""
        ctx = args.ctx
        role = self._role(name, ctx, "ecs-execution-role")
        statements = execution_statements(
            log_group_arns=[g.arn for g in self.log_groups.values()],
            secret_arns=[args.db_secret_arn, args.redis_auth_secret_arn, args.server_secret_arn],
            secrets_key_arn=args.secrets_key_arn,
            image_repository_arn=args.image_repository_arn,
            images_key_arn=args.images_key_arn,
        )
        aws.iam.RolePolicy(
            f"{name}-ecs-execution",
            name=ctx.name("ecs-execution"),
            role=role.id,
            policy=_doc(*statements),
            opts=pulumi.ResourceOptions(parent=self),
        )
        return role

    def _task_role(self, name: str, args: ServicesArgs, role_name: str) -> aws.iam.Role:
        """The processor may read the stream, the ingest may write it; all read their secrets."""
        ctx = args.ctx
        role = self._role(name, ctx, f"ecs-task-{role_name}-role")
        statements = task_statements(
            role_name,
            ctx=ctx,
            stream_arn=args.stream_arn,
            stream_key_arn=args.stream_key_arn,
            secrets_key_arn=args.secrets_key_arn,
            read_secrets=[args.db_secret_arn, args.redis_auth_secret_arn],
        )
        aws.iam.RolePolicy(
            f"{name}-ecs-task-{role_name}",
            name=ctx.name(f"ecs-task-{role_name}"),
            role=role.id,
            policy=_doc(*statements),
            opts=pulumi.ResourceOptions(parent=self),
        )
        return role

    # ---- tasks and services -----------------------------------------------------------------

    def _container(self, args: ServicesArgs, role: str) -> dict[str, Any]:
        ctx = args.ctx
        cfg = ctx.settings.services
        env, secrets = data_plane_settings(args)
        if role in WEB_ROLES:
            env["host"] = "0.0.0.0"  # noqa: S104 - inside the task's private ENI
            env["port"] = str(cfg.container_port)
            # Only the load balancer reaches the tasks (tasks-from-alb), from inside the VPC.
            env["forwarded_allow_ips"] = VPC_CIDR
            # every connection comes from an ALB node: a per-address cap would throttle the ALB
            env["connection_cap_exempt_ips"] = VPC_CIDR
            # API keys are verified against the current secret and, after a rotation
            # (put-secret-value), against the previous version until keys are re-hashed.
            secrets["server_secret"] = args.server_secret_arn
            secrets["server_secret_previous"] = pulumi.Output.concat(
                args.server_secret_arn, f"::{PREVIOUS_STAGE}:"
            )
        if role == ADMIN_ROLE:  # a key identifier, not a secret: where `keys create` encrypts
            env["api_key_kms_key_id"] = args.secrets_key_arn
        if role == "processor":
            # detection in a process of its own needs a core of its own: a task of less than
            # one vCPU would only pay the second interpreter's memory
            env["detection_process"] = "true" if cfg.cpu >= FULL_VCPU else "false"
        container = hardened_container(
            image=args.image,
            command=["serve", role],
            env=env,
            secrets=secrets,
            log_group=self.log_groups[role],
            region=ctx.region,
            prefix=role,
        )
        if role != "processor":
            container["portMappings"] = [{"containerPort": cfg.container_port, "protocol": "tcp"}]
        return container

    def _service(
        self,
        name: str,
        args: ServicesArgs,
        role: str,
        cluster: aws.ecs.Cluster,
        execution_role: aws.iam.Role,
    ) -> None:
        ctx = args.ctx
        cfg = ctx.settings.services
        family = ctx.name(f"plantstream-{role}")
        task = aws.ecs.TaskDefinition(
            f"{name}-{role}-task",
            family=family,
            cpu=str(cfg.cpu),
            memory=str(cfg.memory),
            network_mode="awsvpc",
            requires_compatibilities=["FARGATE"],
            runtime_platform={"operating_system_family": "LINUX", "cpu_architecture": "X86_64"},
            execution_role_arn=execution_role.arn,
            task_role_arn=self.task_roles[role].arn,
            volumes=[{"name": "tmp"}],
            container_definitions=pulumi.Output.json_dumps([self._container(args, role)]),
            tags=ctx.tags(aws.ecs.TaskDefinition, family),
            opts=pulumi.ResourceOptions(parent=self),
        )
        count = {
            "ingest": cfg.ingest_count,
            "processor": cfg.processor_count,
            "api": cfg.api_count,
        }[role]
        lb: dict[str, Any] = {}
        if role in args.target_groups:
            lb = {
                "load_balancers": [
                    {
                        "target_group_arn": args.target_groups[role].arn,
                        "container_name": CONTAINER,
                        "container_port": cfg.container_port,
                    }
                ],
                "health_check_grace_period_seconds": 60,
            }
        service_name = ctx.name(f"plantstream-{role}")
        self.task_definitions[role] = task
        autoscaled = role == "processor" and cfg.processor_max_count is not None
        after: list[pulumi.Resource] = [args.listener, *args.database_ready]
        if role in args.target_groups:
            after += list(args.listener_rules)
        self.services[role] = aws.ecs.Service(
            f"{name}-{role}",
            name=service_name,
            cluster=cluster.arn,
            task_definition=task.arn,
            desired_count=count,
            launch_type="FARGATE",
            platform_version="LATEST",
            network_configuration={
                "subnets": args.private_subnet_ids,
                "security_groups": [self.tasks_sg.id],
                "assign_public_ip": False,
            },
            deployment_circuit_breaker={"enable": True, "rollback": True},
            propagate_tags="SERVICE",
            enable_ecs_managed_tags=True,
            wait_for_steady_state=False,
            tags=ctx.tags(aws.ecs.Service, service_name),
            opts=pulumi.ResourceOptions(
                parent=self,
                depends_on=after,
                # the scaling policy owns the count once it runs
                ignore_changes=["desiredCount"] if autoscaled else None,
            ),
            **lb,
        )
        if autoscaled:
            self._processor_scaling(name, args, cluster, self.services[role])

    def _processor_scaling(
        self, name: str, args: ServicesArgs, cluster: aws.ecs.Cluster, service: aws.ecs.Service
    ) -> None:
        """Target tracking on the stream's iterator age (seed 002): more processors when they
        lag, fewer when idle, never more than there are shards to lease."""
        cfg = args.ctx.settings.services
        child = pulumi.ResourceOptions(parent=self)
        target = aws.appautoscaling.Target(
            f"{name}-processor-scaling",
            service_namespace="ecs",
            scalable_dimension="ecs:service:DesiredCount",
            resource_id=pulumi.Output.concat("service/", cluster.name, "/", service.name),
            min_capacity=cfg.processor_min_count,
            max_capacity=cfg.processor_max_count,
            tags=args.ctx.tags(aws.appautoscaling.Target),
            opts=child,
        )
        aws.appautoscaling.Policy(
            f"{name}-processor-iterator-age",
            name=args.ctx.name("processor-iterator-age"),
            policy_type="TargetTrackingScaling",
            service_namespace=target.service_namespace,
            scalable_dimension=target.scalable_dimension,
            resource_id=target.resource_id,
            target_tracking_scaling_policy_configuration={
                "target_value": float(cfg.processor_target_iterator_age_ms),
                "customized_metric_specification": {
                    "namespace": "AWS/Kinesis",
                    "metric_name": "GetRecords.IteratorAgeMilliseconds",
                    "dimensions": [{"name": "StreamName", "value": args.stream_name}],
                    "statistic": "Maximum",
                },
                "scale_out_cooldown": 60,
                "scale_in_cooldown": 300,
            },
            opts=child,
        )
