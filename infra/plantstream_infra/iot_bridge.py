"""The MQTT bridge (``plantstream serve mqtt``) as an ECS Fargate service on AWS IoT Core.

It runs like the ingest service (same image, hardening, secrets by ECS, least-privilege task
role that may only write the stream and read its connection secrets) and reaches IoT Core's
data endpoint through an interface VPC endpoint on 8883 only: IoT Core's endpoint does not
offer private DNS, so a private hosted zone answers the account's ``-ats`` name with it.
"""

from __future__ import annotations

from typing import Any

import pulumi
import pulumi_aws as aws

from .network import VPC_CIDR
from .services import (
    CONTAINER,
    ServicesArgs,
    data_plane_settings,
    execution_statements,
    hardened_container,
    sg_egress,
    sg_ingress,
    task_role,
)
from .task_roles import task_statements

ROLE = "bridge"
MQTTS_PORT = 8883
# Debian's bundle in the image (python:3.11-slim) includes Amazon Root CA 1, IoT Core's ATS CA.
CA_FILE = "/etc/ssl/certs/ca-certificates.crt"


def _doc(*statements: dict[str, Any]) -> pulumi.Output[str]:
    return pulumi.Output.json_dumps({"Version": "2012-10-17", "Statement": list(statements)})


class BridgeService(pulumi.ComponentResource):
    """Security groups, the IoT data VPC endpoint and its DNS, roles, task and service."""

    def __init__(
        self,
        name: str,
        args: ServicesArgs,
        *,
        cluster_arn: pulumi.Input[str],
        endpoint: pulumi.Output[str],
        client_id: str,
        identity_secret_arn: pulumi.Output[str],
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__("plantstream:iot:Bridge", name, None, opts)
        ctx = args.ctx
        child = pulumi.ResourceOptions(parent=self)
        self.log_group = aws.cloudwatch.LogGroup(
            f"{name}-logs",
            name=f"/plantstream/ecs/{ROLE}-{ctx.suffix}",
            retention_in_days=ctx.settings.log_retention_days,
            kms_key_id=args.logs_key_arn,
            tags=ctx.tags(aws.cloudwatch.LogGroup),
            opts=child,
        )
        self.security_group = self._network(name, args)
        record = self._endpoint(name, args, endpoint)

        execution_role = task_role(self, name, ctx, "ecs-bridge-execution-role")
        aws.iam.RolePolicy(
            f"{name}-ecs-bridge-execution",
            name=ctx.name("ecs-bridge-execution"),
            role=execution_role.id,
            policy=_doc(
                *execution_statements(
                    log_group_arns=[self.log_group.arn],
                    secret_arns=[
                        args.db_secret_arn,
                        args.redis_auth_secret_arn,
                        identity_secret_arn,
                    ],
                    secrets_key_arn=args.secrets_key_arn,
                    image_repository_arn=args.image_repository_arn,
                    images_key_arn=args.images_key_arn,
                )
            ),
            opts=child,
        )
        self.task_role = task_role(self, name, ctx, f"ecs-task-{ROLE}-role")
        aws.iam.RolePolicy(
            f"{name}-ecs-task-{ROLE}",
            name=ctx.name(f"ecs-task-{ROLE}"),
            role=self.task_role.id,
            policy=_doc(
                *task_statements(
                    ROLE,
                    ctx=ctx,
                    stream_arn=args.stream_arn,
                    stream_key_arn=args.stream_key_arn,
                    secrets_key_arn=args.secrets_key_arn,
                    read_secrets=[args.db_secret_arn, args.redis_auth_secret_arn],
                )
            ),
            opts=child,
        )

        env, secrets = data_plane_settings(args)
        iot = ctx.settings.iot
        env |= {
            "mqtt_url": pulumi.Output.concat("mqtts://", endpoint, f":{MQTTS_PORT}"),
            "mqtt_client_id": client_id,
            # mutual TLS: IoT Core authenticates the certificate; no user name or password
            "mqtt_username": "",
            "mqtt_ca_file": CA_FILE,
            "mqtt_share_group": iot.share_group,
            "sparkplug_host_id": iot.host_id,
        }
        secrets |= {
            "mqtt_cert_pem": pulumi.Output.concat(identity_secret_arn, ":cert_pem::"),
            "mqtt_key_pem": pulumi.Output.concat(identity_secret_arn, ":key_pem::"),
        }
        container = hardened_container(
            image=args.image,
            command=["serve", "mqtt"],
            env=env,
            secrets=secrets,
            log_group=self.log_group,
            region=ctx.region,
            prefix=ROLE,
        )
        cfg = ctx.settings.services
        family = ctx.name(f"plantstream-{ROLE}")
        self.task_definition = aws.ecs.TaskDefinition(
            f"{name}-task",
            family=family,
            cpu=str(cfg.cpu),
            memory=str(cfg.memory),
            network_mode="awsvpc",
            requires_compatibilities=["FARGATE"],
            runtime_platform={"operating_system_family": "LINUX", "cpu_architecture": "X86_64"},
            execution_role_arn=execution_role.arn,
            task_role_arn=self.task_role.arn,
            volumes=[{"name": "tmp"}],
            container_definitions=pulumi.Output.json_dumps([container]),
            tags=ctx.tags(aws.ecs.TaskDefinition, family),
            opts=child,
        )
        service_name = ctx.name(f"plantstream-{ROLE}")
        self.service = aws.ecs.Service(
            f"{name}-service",
            name=service_name,
            cluster=cluster_arn,
            task_definition=self.task_definition.arn,
            desired_count=iot.bridge_count,
            launch_type="FARGATE",
            platform_version="LATEST",
            network_configuration={
                "subnets": args.private_subnet_ids,
                "security_groups": [self.security_group.id],
                "assign_public_ip": False,
            },
            # one session per client id: stop the old task before the new one connects
            deployment_maximum_percent=100,
            deployment_minimum_healthy_percent=0,
            deployment_circuit_breaker={"enable": True, "rollback": True},
            propagate_tags="SERVICE",
            enable_ecs_managed_tags=True,
            wait_for_steady_state=False,
            tags=ctx.tags(aws.ecs.Service, service_name),
            opts=pulumi.ResourceOptions(parent=self, depends_on=[record, *args.database_ready]),
        )
        assert container["name"] == CONTAINER
        self.register_outputs({"service_name": self.service.name})

    def _network(self, name: str, args: ServicesArgs) -> aws.ec2.SecurityGroup:
        """The bridge's own group: out to IoT Core (8883), PostgreSQL, Redis and the AWS API
        endpoints only; nothing comes in."""
        ctx = args.ctx
        sg_name = ctx.name("ecs-bridge-sg")
        sg = aws.ec2.SecurityGroup(
            f"{name}-sg",
            name=sg_name,
            vpc_id=args.vpc_id,
            description="plantstream MQTT bridge: outbound to IoT Core, the database and cache",
            tags=ctx.tags(aws.ec2.SecurityGroup, sg_name),
            opts=pulumi.ResourceOptions(parent=self),
        )
        rules: list[tuple[str, pulumi.Input[str], int, str]] = [
            ("db", args.db_security_group_id, args.db_port, "PostgreSQL"),
            ("redis", args.redis_security_group_id, args.redis_port, "Redis"),
        ]
        for key, peer, port, what in rules:
            sg_ingress(
                self,
                name,
                ctx,
                key=f"{key}-from-bridge",
                group=peer,
                from_sg=sg.id,
                port=port,
                description=f"{what} from the MQTT bridge",
            )
            sg_egress(
                self,
                name,
                ctx,
                key=f"bridge-to-{key}",
                group=sg.id,
                port=port,
                description=what,
                referenced_security_group_id=peer,
            )
        sg_egress(
            self,
            name,
            ctx,
            key="bridge-to-endpoints",
            group=sg.id,
            port=443,
            description="AWS APIs through the VPC endpoints",
            cidr_ipv4=VPC_CIDR,
        )
        sg_egress(
            self,
            name,
            ctx,
            key="bridge-to-s3",
            group=sg.id,
            port=443,
            description="ECR image layers through the S3 gateway endpoint",
            prefix_list_id=args.s3_prefix_list_id,
        )
        return sg

    def _endpoint(
        self, name: str, args: ServicesArgs, endpoint: pulumi.Output[str]
    ) -> aws.route53.Record:
        """IoT Core's data plane inside the VPC: the endpoint (8883 from the bridge only) and
        a private zone that resolves the account's ATS host name to it."""
        ctx = args.ctx
        child = pulumi.ResourceOptions(parent=self)
        sg_name = ctx.name("iot-endpoint-sg")
        endpoint_sg = aws.ec2.SecurityGroup(
            f"{name}-endpoint-sg",
            name=sg_name,
            vpc_id=args.vpc_id,
            description="AWS IoT Core data endpoint: MQTT over TLS from the bridge only",
            tags=ctx.tags(aws.ec2.SecurityGroup, sg_name),
            opts=child,
        )
        sg_ingress(
            self,
            name,
            ctx,
            key="iot-endpoint-from-bridge",
            group=endpoint_sg.id,
            from_sg=self.security_group.id,
            port=MQTTS_PORT,
            description="MQTT over TLS from the bridge",
        )
        sg_egress(
            self,
            name,
            ctx,
            key="bridge-to-iot",
            group=self.security_group.id,
            port=MQTTS_PORT,
            description="MQTT over TLS to AWS IoT Core",
            referenced_security_group_id=endpoint_sg.id,
        )
        vpce = aws.ec2.VpcEndpoint(
            f"{name}-iot-data-endpoint",
            vpc_id=args.vpc_id,
            service_name=f"com.amazonaws.{ctx.region}.iot.data",
            vpc_endpoint_type="Interface",
            private_dns_enabled=False,  # IoT Core's data endpoint has none: the zone below
            subnet_ids=args.private_subnet_ids,
            security_group_ids=[endpoint_sg.id],
            tags=ctx.tags(aws.ec2.VpcEndpoint, ctx.name("iot-data-endpoint")),
            opts=child,
        )
        zone = aws.route53.Zone(
            f"{name}-iot-zone",
            name=endpoint,
            comment=f"AWS IoT Core data endpoint inside the VPC ({ctx.suffix})",
            vpcs=[{"vpc_id": args.vpc_id}],
            tags=ctx.tags(aws.route53.Zone),
            opts=child,
        )
        first = vpce.dns_entries.apply(lambda entries: entries[0])
        return aws.route53.Record(
            f"{name}-iot-record",
            zone_id=zone.zone_id,
            name=endpoint,
            type="A",
            aliases=[
                aws.route53.RecordAliasArgs(
                    name=first.apply(lambda e: e.dns_name or ""),
                    zone_id=first.apply(lambda e: e.hosted_zone_id or ""),
                    evaluate_target_health=True,
                )
            ],
            opts=child,
        )
