"""The front door: an ALB (HTTPS when a certificate is configured, otherwise internal only) and,
as seed 004 has, an API Gateway REST ``POST /ingest`` that writes straight to Kinesis (IAM auth).
"""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from .context import StackContext
from .ingest_api import IngestApiArgs, ingest_api
from .network import VPC_CIDR

TLS_POLICY = "ELBSecurityPolicy-TLS13-1-2-2021-06"


@dataclass(frozen=True)
class FrontDoorArgs:
    ctx: StackContext
    vpc_id: pulumi.Input[str]
    public_subnet_ids: list[pulumi.Output[str]]
    private_subnet_ids: list[pulumi.Output[str]]
    container_port: int
    stream_name: pulumi.Output[str]
    stream_arn: pulumi.Output[str]
    stream_key_arn: pulumi.Input[str]
    logs_key_arn: pulumi.Input[str]


class FrontDoor(pulumi.ComponentResource):
    """Load balancer, target groups per HTTP role, optional API Gateway ingest proxy."""

    alb_security_group_id: pulumi.Output[str]
    target_groups: dict[str, aws.lb.TargetGroup]
    listener: aws.lb.Listener
    url: pulumi.Output[str]
    ingest_api_url: pulumi.Output[str] | None

    def __init__(
        self, name: str, args: FrontDoorArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("plantstream:frontdoor:FrontDoor", name, None, opts)
        self._alb(name, args)
        self.ingest_api_url = None
        self.api_gateway_id: pulumi.Output[str] | None = None
        self.api_gateway_stage: pulumi.Output[str] | None = None
        self.ingest_api_base_url: pulumi.Output[str] | None = None
        if args.ctx.settings.front_door.api_gateway:
            api = ingest_api(
                self,
                name,
                IngestApiArgs(
                    args.ctx,
                    args.stream_name,
                    args.stream_arn,
                    args.stream_key_arn,
                    args.logs_key_arn,
                ),
            )
            self.ingest_api_url = api.url
            self.ingest_api_base_url = api.base_url
            self.api_gateway_id = api.api_id
            self.api_gateway_stage = api.stage_name
        self.register_outputs({"url": self.url, "ingest_api_url": self.ingest_api_url})

    def _alb(self, name: str, args: FrontDoorArgs) -> None:
        ctx = args.ctx
        cfg = ctx.settings.front_door
        child = pulumi.ResourceOptions(parent=self)
        public = bool(cfg.certificate_arn)
        sg = aws.ec2.SecurityGroup(
            f"{name}-alb-sg",
            name=ctx.name("alb-sg"),
            vpc_id=args.vpc_id,
            description="Load balancer: HTTPS from clients"
            if public
            else "Internal load balancer: HTTP from inside the VPC",
            tags=ctx.tags(aws.ec2.SecurityGroup, ctx.name("alb-sg")),
            opts=child,
        )
        if public:
            for i, cidr in enumerate(cfg.alb_ingress_cidrs):
                rule_name = ctx.name(f"alb-https-{i + 1}")
                aws.vpc.SecurityGroupIngressRule(
                    f"{name}-alb-https-{i + 1}",
                    security_group_id=sg.id,
                    ip_protocol="tcp",
                    from_port=443,
                    to_port=443,
                    cidr_ipv4=cidr,
                    description="HTTPS from plant gateways and dashboard users",
                    tags={
                        **ctx.tags(aws.vpc.SecurityGroupIngressRule, rule_name),
                        "plantstream:exposure": "public-listener",
                    },
                    opts=child,
                )
        else:
            aws.vpc.SecurityGroupIngressRule(
                f"{name}-alb-http-vpc",
                security_group_id=sg.id,
                ip_protocol="tcp",
                from_port=80,
                to_port=80,
                cidr_ipv4=VPC_CIDR,
                description="HTTP from inside the VPC (no certificate configured)",
                tags=ctx.tags(aws.vpc.SecurityGroupIngressRule, ctx.name("alb-http-vpc")),
                opts=child,
            )
        alb = aws.lb.LoadBalancer(
            f"{name}-alb",
            name=ctx.name("alb"),
            load_balancer_type="application",
            internal=not public,
            security_groups=[sg.id],
            subnets=args.public_subnet_ids if public else args.private_subnet_ids,
            drop_invalid_header_fields=True,
            enable_deletion_protection=False,
            idle_timeout=60,
            tags=ctx.tags(aws.lb.LoadBalancer, ctx.name("alb")),
            opts=child,
        )
        self.target_groups = {}
        for role in ("ingest", "api"):
            tg_name = ctx.name(f"tg-{role}")
            self.target_groups[role] = aws.lb.TargetGroup(
                f"{name}-{role}-tg",
                name=tg_name,
                port=args.container_port,
                protocol="HTTP",
                target_type="ip",
                vpc_id=args.vpc_id,
                deregistration_delay=30,
                health_check={
                    "path": "/healthz",
                    "matcher": "200",
                    "interval": 15,
                    "healthy_threshold": 2,
                    "unhealthy_threshold": 3,
                },
                tags=ctx.tags(aws.lb.TargetGroup, tg_name),
                opts=child,
            )
        forward_api: list[aws.lb.ListenerDefaultActionArgsDict] = [
            {"type": "forward", "target_group_arn": self.target_groups["api"].arn}
        ]
        if public:
            self.listener = aws.lb.Listener(
                f"{name}-https",
                load_balancer_arn=alb.arn,
                port=443,
                protocol="HTTPS",
                ssl_policy=TLS_POLICY,
                certificate_arn=cfg.certificate_arn,
                default_actions=forward_api,
                tags=ctx.tags(aws.lb.Listener, ctx.name("alb-https")),
                opts=child,
            )
            scheme = "https"
        else:
            self.listener = aws.lb.Listener(
                f"{name}-http",
                load_balancer_arn=alb.arn,
                port=80,
                protocol="HTTP",
                default_actions=forward_api,
                tags=ctx.tags(aws.lb.Listener, ctx.name("alb-http")),
                opts=child,
            )
            scheme = "http"
        # The ingest service must wait for this rule, not only the listener: until it exists
        # /v1/readings goes to the api target group.
        self.ingest_rule = aws.lb.ListenerRule(
            f"{name}-ingest-rule",
            listener_arn=self.listener.arn,
            priority=10,
            conditions=[{"path_pattern": {"values": ["/v1/readings"]}}],
            actions=[{"type": "forward", "target_group_arn": self.target_groups["ingest"].arn}],
            tags=ctx.tags(aws.lb.ListenerRule, ctx.name("alb-ingest-rule")),
            opts=child,
        )
        # /metrics (Prometheus, per-facility counters) is for scrapers inside the VPC, never
        # for whoever reaches the load balancer: one facility must not read another's figures.
        self.metrics_rule = aws.lb.ListenerRule(
            f"{name}-metrics-rule",
            listener_arn=self.listener.arn,
            priority=1,
            conditions=[{"path_pattern": {"values": ["/metrics", "/metrics/*"]}}],
            actions=[
                {
                    "type": "fixed-response",
                    "fixed_response": {
                        "content_type": "text/plain",
                        "status_code": "404",
                        "message_body": "not found",
                    },
                }
            ],
            tags=ctx.tags(aws.lb.ListenerRule, ctx.name("alb-metrics-rule")),
            opts=child,
        )
        self.alb_security_group_id = sg.id
        self.alb_arn_suffix = alb.arn_suffix
        self.alb_dns_name = alb.dns_name
        self.url = pulumi.Output.concat(f"{scheme}://", alb.dns_name)
