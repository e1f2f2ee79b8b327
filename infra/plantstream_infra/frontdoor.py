"""The front door: an ALB (HTTPS when a certificate is configured, otherwise internal only) and,
as seed 004 has, an API Gateway REST ``POST /ingest`` that writes straight to Kinesis (IAM auth).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from .context import StackContext
from .network import VPC_CIDR

TLS_POLICY = "ELBSecurityPolicy-TLS13-1-2-2021-06"
ACCESS_LOG_FORMAT = json.dumps(
    {
        "requestId": "$context.requestId",
        "ip": "$context.identity.sourceIp",
        "caller": "$context.identity.caller",
        "user": "$context.identity.user",
        "requestTime": "$context.requestTime",
        "httpMethod": "$context.httpMethod",
        "resourcePath": "$context.resourcePath",
        "status": "$context.status",
        "protocol": "$context.protocol",
        "responseLength": "$context.responseLength",
        "integrationStatus": "$context.integration.status",
    }
)
# The body is the plantstream batch ({"facility": ..., "readings": [...]}); keying by facility
# keeps every device of a facility, and so each device, on one shard in order.
PUT_RECORD_TEMPLATE = """{
  "StreamName": "%s",
  "Data": "$util.base64Encode($input.body)",
  "PartitionKey": "$util.escapeJavaScript($input.path('$.facility'))"
}"""


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
        if args.ctx.settings.front_door.api_gateway:
            self._api_gateway(name, args)
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
        aws.lb.ListenerRule(
            f"{name}-ingest-rule",
            listener_arn=self.listener.arn,
            priority=10,
            conditions=[{"path_pattern": {"values": ["/v1/readings"]}}],
            actions=[{"type": "forward", "target_group_arn": self.target_groups["ingest"].arn}],
            tags=ctx.tags(aws.lb.ListenerRule, ctx.name("alb-ingest-rule")),
            opts=child,
        )
        self.alb_security_group_id = sg.id
        self.alb_arn_suffix = alb.arn_suffix
        self.alb_dns_name = alb.dns_name
        self.url = pulumi.Output.concat(f"{scheme}://", alb.dns_name)

    def _api_gateway(self, name: str, args: FrontDoorArgs) -> None:
        ctx = args.ctx
        child = pulumi.ResourceOptions(parent=self)
        assume = json.dumps(
            {
                "Version": "2012-10-17",
                "Statement": [
                    {
                        "Effect": "Allow",
                        "Action": "sts:AssumeRole",
                        "Principal": {"Service": "apigateway.amazonaws.com"},
                    }
                ],
            }
        )
        role = aws.iam.Role(
            f"{name}-apigw-kinesis-role",
            name=ctx.name("apigw-kinesis-role"),
            assume_role_policy=assume,
            tags=ctx.tags(aws.iam.Role, ctx.name("apigw-kinesis-role")),
            opts=child,
        )
        aws.iam.RolePolicy(
            f"{name}-apigw-kinesis-put",
            name=ctx.name("apigw-kinesis-put"),
            role=role.id,
            policy=pulumi.Output.json_dumps(
                {
                    "Version": "2012-10-17",
                    "Statement": [
                        {
                            "Sid": "WriteTheStream",
                            "Effect": "Allow",
                            "Action": ["kinesis:PutRecord", "kinesis:PutRecords"],
                            "Resource": args.stream_arn,
                        },
                        {
                            "Sid": "EncryptRecords",
                            "Effect": "Allow",
                            "Action": ["kms:GenerateDataKey"],
                            "Resource": args.stream_key_arn,
                        },
                    ],
                }
            ),
            opts=child,
        )
        logs_role = aws.iam.Role(
            f"{name}-apigw-logs-role",
            name=ctx.name("apigw-cloudwatch-role"),
            assume_role_policy=assume,
            tags=ctx.tags(aws.iam.Role, ctx.name("apigw-cloudwatch-role")),
            opts=child,
        )
        aws.iam.RolePolicyAttachment(
            f"{name}-apigw-logs-managed",
            role=logs_role.name,
            policy_arn=pulumi.Output.concat(
                "arn:",
                ctx.partition,
                ":iam::aws:policy/service-role/AmazonAPIGatewayPushToCloudWatchLogs",
            ),
            opts=child,
        )
        # Region-wide singleton: the role API Gateway uses to write execution logs.
        account = aws.apigateway.Account(
            f"{name}-apigw-account", cloudwatch_role_arn=logs_role.arn, opts=child
        )
        access_logs = aws.cloudwatch.LogGroup(
            f"{name}-apigw-access-logs",
            name=f"/plantstream/apigateway-access-{ctx.suffix}",
            retention_in_days=ctx.settings.log_retention_days,
            kms_key_id=args.logs_key_arn,
            tags=ctx.tags(aws.cloudwatch.LogGroup),
            opts=child,
        )

        api_name = ctx.name("ingest-api")
        api = aws.apigateway.RestApi(
            f"{name}-ingest-api",
            name=api_name,
            description="IAM-authenticated ingest straight into Kinesis",
            endpoint_configuration={"types": "REGIONAL"},
            tags=ctx.tags(aws.apigateway.RestApi, api_name),
            opts=child,
        )
        resource = aws.apigateway.Resource(
            f"{name}-ingest-resource",
            rest_api=api.id,
            parent_id=api.root_resource_id,
            path_part="ingest",
            opts=child,
        )
        method = aws.apigateway.Method(
            f"{name}-ingest-post",
            rest_api=api.id,
            resource_id=resource.id,
            http_method="POST",
            authorization="AWS_IAM",
            opts=child,
        )
        template = args.stream_name.apply(lambda s: PUT_RECORD_TEMPLATE % s)
        uri = pulumi.Output.concat(
            "arn:", ctx.partition, f":apigateway:{ctx.region}:kinesis:action/PutRecord"
        )
        integration = aws.apigateway.Integration(
            f"{name}-ingest-kinesis",
            rest_api=api.id,
            resource_id=resource.id,
            http_method=method.http_method,
            type="AWS",
            integration_http_method="POST",
            uri=uri,
            credentials=role.arn,
            passthrough_behavior="NEVER",
            request_parameters={
                "integration.request.header.Content-Type": "'application/x-amz-json-1.1'"
            },
            request_templates={"application/json": template},
            opts=child,
        )
        responses = []
        for status, pattern in (("200", None), ("400", r"4\d{2}"), ("500", r"5\d{2}")):
            method_response = aws.apigateway.MethodResponse(
                f"{name}-ingest-{status}",
                rest_api=api.id,
                resource_id=resource.id,
                http_method=method.http_method,
                status_code=status,
                opts=child,
            )
            responses.append(
                aws.apigateway.IntegrationResponse(
                    f"{name}-ingest-{status}-integration",
                    rest_api=api.id,
                    resource_id=resource.id,
                    http_method=method.http_method,
                    status_code=method_response.status_code,
                    selection_pattern=pattern,
                    response_templates={
                        "application/json": (
                            '{"accepted": 1, "shardId": "$input.path(\'$.ShardId\')"}'
                            if status == "200"
                            else '{"error": {"code": "stream_rejected", '
                            '"message": "$util.escapeJavaScript($input.path(\'$.message\'))"}}'
                        )
                    },
                    opts=pulumi.ResourceOptions(parent=self, depends_on=[integration]),
                )
            )
        redeploy = template.apply(
            lambda t: hashlib.sha256((t + ACCESS_LOG_FORMAT).encode()).hexdigest()
        )
        deployment = aws.apigateway.Deployment(
            f"{name}-ingest-deployment",
            rest_api=api.id,
            triggers={"redeploy": redeploy},
            opts=pulumi.ResourceOptions(parent=self, depends_on=[method, integration, *responses]),
        )
        stage = aws.apigateway.Stage(
            f"{name}-ingest-stage",
            rest_api=api.id,
            deployment=deployment.id,
            stage_name="v1",
            xray_tracing_enabled=True,
            access_log_settings={"destination_arn": access_logs.arn, "format": ACCESS_LOG_FORMAT},
            tags=ctx.tags(aws.apigateway.Stage, ctx.name("ingest-api-v1")),
            opts=pulumi.ResourceOptions(parent=self, depends_on=[account]),
        )
        aws.apigateway.MethodSettings(
            f"{name}-ingest-settings",
            rest_api=api.id,
            stage_name=stage.stage_name,
            method_path="*/*",
            # Data trace would copy sensor payloads into logs (seed 004 enabled it): off.
            settings={
                "logging_level": "INFO",
                "metrics_enabled": True,
                "data_trace_enabled": False,
                "throttling_burst_limit": 500,
                "throttling_rate_limit": 1000,
            },
            opts=child,
        )
        self.api_gateway_id = api.id
        self.api_gateway_stage = stage.stage_name
        self.ingest_api_url = pulumi.Output.concat(stage.invoke_url, "/ingest")
