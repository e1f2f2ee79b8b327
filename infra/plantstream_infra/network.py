"""The VPC: two AZs, pinned public/private subnets, VPC endpoints instead of NAT, flow logs.

Subnet CIDRs are pinned by index so adding an AZ never replaces an existing subnet.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from .context import StackContext

VPC_CIDR = "10.0.0.0/16"
PUBLIC_CIDRS = ("10.0.1.0/24", "10.0.2.0/24")
PRIVATE_CIDRS = ("10.0.11.0/24", "10.0.12.0/24")
# What the tasks and the ECS agent call: the stream, secrets (the agent injects them, the app
# re-reads them), log delivery and the image pull (layers come through the S3 gateway). No
# kms endpoint: every KMS use is server-side, by Kinesis and Secrets Manager; no sts endpoint:
# tasks get credentials from the ECS credentials endpoint, never from STS.
INTERFACE_ENDPOINTS = (
    "kinesis-streams",
    "secretsmanager",
    "logs",
    "ecr.api",
    "ecr.dkr",
)


def _nth(i: int) -> Callable[[list[str]], str]:
    return lambda names: names[i]


@dataclass(frozen=True)
class NetworkArgs:
    ctx: StackContext
    logs_key_arn: pulumi.Input[str]


class Network(pulumi.ComponentResource):
    """VPC, subnets, routing, endpoints, flow logs; the default security group closed."""

    vpc_id: pulumi.Output[str]
    public_subnet_ids: list[pulumi.Output[str]]
    private_subnet_ids: list[pulumi.Output[str]]

    def __init__(
        self, name: str, args: NetworkArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("plantstream:network:Network", name, None, opts)
        ctx = args.ctx
        child = pulumi.ResourceOptions(parent=self)
        self.cidr = VPC_CIDR

        azs = aws.get_availability_zones_output(
            state="available", opts=pulumi.InvokeOutputOptions(parent=self)
        )
        vpc_name = ctx.name("vpc")
        vpc = aws.ec2.Vpc(
            f"{name}-vpc",
            cidr_block=VPC_CIDR,
            enable_dns_hostnames=True,
            enable_dns_support=True,
            tags=ctx.tags(aws.ec2.Vpc, vpc_name),
            opts=child,
        )
        aws.ec2.DefaultSecurityGroup(
            f"{name}-default-sg",
            vpc_id=vpc.id,
            tags=ctx.tags(aws.ec2.DefaultSecurityGroup, ctx.name("default-sg-closed")),
            opts=child,
        )
        igw = aws.ec2.InternetGateway(
            f"{name}-igw",
            vpc_id=vpc.id,
            tags=ctx.tags(aws.ec2.InternetGateway, ctx.name("igw")),
            opts=child,
        )

        public_rt = aws.ec2.RouteTable(
            f"{name}-public-rt",
            vpc_id=vpc.id,
            tags=ctx.tags(aws.ec2.RouteTable, ctx.name("public-rt")),
            opts=child,
        )
        aws.ec2.Route(
            f"{name}-public-default",
            route_table_id=public_rt.id,
            destination_cidr_block="0.0.0.0/0",
            gateway_id=igw.id,
            opts=child,
        )

        public: list[aws.ec2.Subnet] = []
        private: list[aws.ec2.Subnet] = []
        private_rts: list[aws.ec2.RouteTable] = []
        for i, (pub_cidr, priv_cidr) in enumerate(zip(PUBLIC_CIDRS, PRIVATE_CIDRS, strict=True)):
            az = azs.names.apply(_nth(i))
            n = i + 1
            pub = aws.ec2.Subnet(
                f"{name}-public-{n}",
                vpc_id=vpc.id,
                cidr_block=pub_cidr,
                availability_zone=az,
                map_public_ip_on_launch=False,
                tags={**ctx.tags(aws.ec2.Subnet, ctx.name(f"public-subnet-{n}")), "Tier": "public"},
                opts=child,
            )
            aws.ec2.RouteTableAssociation(
                f"{name}-public-{n}-rta", subnet_id=pub.id, route_table_id=public_rt.id, opts=child
            )
            priv = aws.ec2.Subnet(
                f"{name}-private-{n}",
                vpc_id=vpc.id,
                cidr_block=priv_cidr,
                availability_zone=az,
                map_public_ip_on_launch=False,
                tags={
                    **ctx.tags(aws.ec2.Subnet, ctx.name(f"private-subnet-{n}")),
                    "Tier": "private",
                },
                opts=child,
            )
            rt = aws.ec2.RouteTable(
                f"{name}-private-{n}-rt",
                vpc_id=vpc.id,
                tags=ctx.tags(aws.ec2.RouteTable, ctx.name(f"private-rt-{n}")),
                opts=child,
            )
            aws.ec2.RouteTableAssociation(
                f"{name}-private-{n}-rta", subnet_id=priv.id, route_table_id=rt.id, opts=child
            )
            public.append(pub)
            private.append(priv)
            private_rts.append(rt)

        self._nat(name, ctx, public, private_rts, child)

        endpoint_sg = aws.ec2.SecurityGroup(
            f"{name}-endpoints-sg",
            name=ctx.name("vpc-endpoints-sg"),
            vpc_id=vpc.id,
            description="HTTPS from inside the VPC to AWS interface endpoints",
            tags=ctx.tags(aws.ec2.SecurityGroup, ctx.name("vpc-endpoints-sg")),
            opts=child,
        )
        aws.vpc.SecurityGroupIngressRule(
            f"{name}-endpoints-https",
            security_group_id=endpoint_sg.id,
            ip_protocol="tcp",
            from_port=443,
            to_port=443,
            cidr_ipv4=VPC_CIDR,
            description="HTTPS to AWS APIs from the VPC",
            tags=ctx.tags(aws.vpc.SecurityGroupIngressRule, ctx.name("endpoints-https")),
            opts=child,
        )
        for service in INTERFACE_ENDPOINTS:
            slug = service.replace(".", "-")
            aws.ec2.VpcEndpoint(
                f"{name}-{slug}-endpoint",
                vpc_id=vpc.id,
                service_name=f"com.amazonaws.{ctx.region}.{service}",
                vpc_endpoint_type="Interface",
                private_dns_enabled=True,
                subnet_ids=[s.id for s in private],
                security_group_ids=[endpoint_sg.id],
                tags=ctx.tags(aws.ec2.VpcEndpoint, ctx.name(f"{slug}-endpoint")),
                opts=child,
            )
        s3 = aws.ec2.VpcEndpoint(
            f"{name}-s3-endpoint",
            vpc_id=vpc.id,
            service_name=f"com.amazonaws.{ctx.region}.s3",
            vpc_endpoint_type="Gateway",
            route_table_ids=[rt.id for rt in private_rts],
            tags=ctx.tags(aws.ec2.VpcEndpoint, ctx.name("s3-endpoint")),
            opts=child,
        )

        self._flow_logs(name, ctx, vpc, args.logs_key_arn, child)

        self.vpc_id = vpc.id
        self.availability_zones = [azs.names.apply(_nth(i)) for i in range(len(PRIVATE_CIDRS))]
        self.public_subnet_ids = [s.id for s in public]
        self.private_subnet_ids = [s.id for s in private]
        self.s3_prefix_list_id = s3.prefix_list_id
        self.register_outputs(
            {
                "vpc_id": self.vpc_id,
                "public_subnet_ids": self.public_subnet_ids,
                "private_subnet_ids": self.private_subnet_ids,
            }
        )

    def _nat(
        self,
        name: str,
        ctx: StackContext,
        public: list[aws.ec2.Subnet],
        private_rts: list[aws.ec2.RouteTable],
        child: pulumi.ResourceOptions,
    ) -> None:
        mode = ctx.settings.network.nat
        if mode == "none":
            return
        gateways: list[aws.ec2.NatGateway] = []
        for i, subnet in enumerate(public[: 1 if mode == "single" else len(public)]):
            n = i + 1
            eip = aws.ec2.Eip(
                f"{name}-nat-{n}-eip",
                domain="vpc",
                tags=ctx.tags(aws.ec2.Eip, ctx.name(f"nat-eip-{n}")),
                opts=child,
            )
            gateways.append(
                aws.ec2.NatGateway(
                    f"{name}-nat-{n}",
                    allocation_id=eip.id,
                    subnet_id=subnet.id,
                    tags=ctx.tags(aws.ec2.NatGateway, ctx.name(f"nat-{n}")),
                    opts=child,
                )
            )
        for i, rt in enumerate(private_rts):
            aws.ec2.Route(
                f"{name}-private-{i + 1}-nat",
                route_table_id=rt.id,
                destination_cidr_block="0.0.0.0/0",
                nat_gateway_id=gateways[min(i, len(gateways) - 1)].id,
                opts=child,
            )

    def _flow_logs(
        self,
        name: str,
        ctx: StackContext,
        vpc: aws.ec2.Vpc,
        logs_key_arn: pulumi.Input[str],
        child: pulumi.ResourceOptions,
    ) -> None:
        group_name = f"/plantstream/vpc-flow-logs-{ctx.suffix}"
        group = aws.cloudwatch.LogGroup(
            f"{name}-flow-logs",
            name=group_name,
            retention_in_days=ctx.settings.log_retention_days,
            kms_key_id=logs_key_arn,
            tags=ctx.tags(aws.cloudwatch.LogGroup),
            opts=child,
        )
        role = aws.iam.Role(
            f"{name}-flow-logs-role",
            name=ctx.name("vpc-flow-logs-role"),
            assume_role_policy=json.dumps(
                {
                    "Version": "2012-10-17",
                    "Statement": [
                        {
                            "Effect": "Allow",
                            "Action": "sts:AssumeRole",
                            "Principal": {"Service": "vpc-flow-logs.amazonaws.com"},
                        }
                    ],
                }
            ),
            tags=ctx.tags(aws.iam.Role, ctx.name("vpc-flow-logs-role")),
            opts=child,
        )
        aws.iam.RolePolicy(
            f"{name}-flow-logs-policy",
            name=ctx.name("vpc-flow-logs-write"),
            role=role.id,
            policy=group.arn.apply(
                lambda arn: json.dumps(
                    {
                        "Version": "2012-10-17",
                        "Statement": [
                            {
                                "Sid": "WriteFlowLogs",
                                "Effect": "Allow",
                                "Action": [
                                    "logs:CreateLogStream",
                                    "logs:PutLogEvents",
                                    "logs:DescribeLogStreams",
                                ],
                                "Resource": [arn, f"{arn}:*"],
                            },
                            {
                                # the service checks the destination group exists (AWS's
                                # documented flow-log role); a list call, so on all groups
                                "Sid": "FindTheLogGroup",
                                "Effect": "Allow",
                                "Action": ["logs:DescribeLogGroups"],
                                "Resource": arn.rsplit(":", 1)[0] + ":*",
                            },
                        ],
                    }
                )
            ),
            opts=child,
        )
        aws.ec2.FlowLog(
            f"{name}-flow-log",
            vpc_id=vpc.id,
            traffic_type="ALL",
            log_destination_type="cloud-watch-logs",
            log_destination=group.arn,
            iam_role_arn=role.arn,
            max_aggregation_interval=60,
            tags=ctx.tags(aws.ec2.FlowLog, ctx.name("vpc-flow-log")),
            opts=child,
        )
