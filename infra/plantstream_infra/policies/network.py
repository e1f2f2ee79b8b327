"""Controls for the network edge: VPC, security groups, load balancer, API Gateway, names, tags."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence

from .base import GraphResource, Props, Registry, as_list, ends_with_suffix, tags_of, truthy

VPC = "aws:ec2/vpc:Vpc"
SUBNET = "aws:ec2/subnet:Subnet"
DEFAULT_SG = "aws:ec2/defaultSecurityGroup:DefaultSecurityGroup"
FLOW_LOG = "aws:ec2/flowLog:FlowLog"
SG = "aws:ec2/securityGroup:SecurityGroup"
SG_RULE = "aws:ec2/securityGroupRule:SecurityGroupRule"
SG_INGRESS = "aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule"
SG_EGRESS = "aws:vpc/securityGroupEgressRule:SecurityGroupEgressRule"
LB = "aws:lb/loadBalancer:LoadBalancer"
LISTENER = "aws:lb/listener:Listener"
API_STAGE = "aws:apigateway/stage:Stage"
API_METHOD = "aws:apigateway/method:Method"
API_METHOD_SETTINGS = "aws:apigateway/methodSettings:MethodSettings"

EXECUTION_LOG_LEVELS = ("ERROR", "INFO")
OPEN_CIDRS = frozenset({"0.0.0.0/0", "::/0"})
PUBLIC_LISTENER_TAG = "plantstream:exposure"
PUBLIC_LISTENER_PORTS = frozenset({443})
REQUIRED_TAGS = ("Project", "Environment", "Preset", "ManagedBy")
NAME_PROPS = ("name", "identifier", "clusterIdentifier", "replicationGroupId", "family")
# Types whose "name" is not a free-form physical name we choose.
UNNAMED_TYPES = frozenset(
    {
        "aws:apigateway/resource:Resource",
        "aws:ec2/defaultSecurityGroup:DefaultSecurityGroup",
        # a private zone and its record are named after the IoT data endpoint they answer for
        "aws:route53/zone:Zone",
        "aws:route53/record:Record",
    }
)
# Physical names AWS dictates: IoT Core writes its logs to this log group, one per region.
AWS_DICTATED_NAMES = frozenset({"AWSIotLogsV2"})
TAGGABLE_TYPES = frozenset(
    {
        VPC,
        SUBNET,
        DEFAULT_SG,
        FLOW_LOG,
        SG,
        SG_INGRESS,
        SG_EGRESS,
        LB,
        "aws:ec2/internetGateway:InternetGateway",
        "aws:ec2/routeTable:RouteTable",
        "aws:ec2/vpcEndpoint:VpcEndpoint",
        "aws:ec2/natGateway:NatGateway",
        "aws:ec2/eip:Eip",
        "aws:kms/key:Key",
        "aws:kinesis/stream:Stream",
        "aws:rds/cluster:Cluster",
        "aws:rds/clusterInstance:ClusterInstance",
        "aws:rds/instance:Instance",
        "aws:rds/subnetGroup:SubnetGroup",
        "aws:elasticache/replicationGroup:ReplicationGroup",
        "aws:elasticache/subnetGroup:SubnetGroup",
        "aws:secretsmanager/secret:Secret",
        "aws:ecs/cluster:Cluster",
        "aws:ecs/service:Service",
        "aws:ecs/taskDefinition:TaskDefinition",
        "aws:appautoscaling/target:Target",
        "aws:ecr/repository:Repository",
        "aws:iam/role:Role",
        "aws:lb/targetGroup:TargetGroup",
        "aws:lb/listener:Listener",
        "aws:lb/listenerRule:ListenerRule",
        "aws:apigateway/restApi:RestApi",
        "aws:apigateway/stage:Stage",
        "aws:cloudwatch/logGroup:LogGroup",
        "aws:cloudwatch/metricAlarm:MetricAlarm",
        "aws:sns/topic:Topic",
        "aws:lambda/function:Function",
        "aws:iot/thingGroup:ThingGroup",
        "aws:iot/policy:Policy",
        "aws:route53/zone:Zone",
    }
)

registry = Registry()
R = registry


# ---- VPC ------------------------------------------------------------------------------------


@R.stack(
    "ec2-2-default-sg-closed",
    "Security Hub EC2.2",
    "Each VPC's default security group allows no traffic.",
    types=[VPC],
)
def _default_sg(resources: Sequence[GraphResource]) -> Iterable[tuple[GraphResource, str]]:
    closed = {
        str(r.props.get("vpcId"))
        for r in resources
        if r.resource_type == DEFAULT_SG
        and not r.props.get("ingress")
        and not r.props.get("egress")
    }
    for vpc in (r for r in resources if r.resource_type == VPC):
        if str(vpc.props.get("id")) not in closed:
            yield vpc, "the default security group is not managed closed"


@R.stack(
    "ec2-6-vpc-flow-logs",
    "Security Hub EC2.6",
    "Each VPC has flow logging of all traffic.",
    types=[VPC],
)
def _flow_logs(resources: Sequence[GraphResource]) -> Iterable[tuple[GraphResource, str]]:
    logged = {
        str(r.props.get("vpcId"))
        for r in resources
        if r.resource_type == FLOW_LOG and r.props.get("trafficType") == "ALL"
    }
    for vpc in (r for r in resources if r.resource_type == VPC):
        if str(vpc.props.get("id")) not in logged:
            yield vpc, "no flow log with trafficType ALL"


@R.resource(
    "ec2-15-no-auto-public-ip",
    "Security Hub EC2.15",
    "Subnets must not assign public IPs on launch.",
    [SUBNET],
)
def _subnet_public_ip(p: Props) -> Iterator[str]:
    if truthy(p.get("mapPublicIpOnLaunch")):
        yield "mapPublicIpOnLaunch is true"


def _open_rule(cidrs: Iterable[str]) -> bool:
    return any(c in OPEN_CIDRS for c in cidrs)


@R.resource(
    "ec2-18-19-no-open-ingress",
    "Security Hub EC2.18 / EC2.19 / CKV_AWS_260",
    "No ingress from 0.0.0.0/0 or ::/0 except HTTPS on the public listener.",
    [SG, SG_INGRESS, SG_RULE],
)
def _open_ingress(p: Props) -> Iterator[str]:
    for rule in as_list(p.get("ingress")):
        if _open_rule(as_list(rule.get("cidrBlocks")) + as_list(rule.get("ipv6CidrBlocks"))):
            yield "inline ingress rule is open to the internet"
    if p.get("type") == "ingress" and _open_rule(
        as_list(p.get("cidrBlocks")) + as_list(p.get("ipv6CidrBlocks"))
    ):
        yield "ingress rule is open to the internet"
    if _open_rule([p.get("cidrIpv4") or "", p.get("cidrIpv6") or ""]):
        public = tags_of(p).get(PUBLIC_LISTENER_TAG) == "public-listener"
        port_ok = (
            p.get("ipProtocol") == "tcp"
            and p.get("fromPort") == p.get("toPort")
            and int(p.get("fromPort") or -1) in PUBLIC_LISTENER_PORTS
        )
        if not (public and port_ok):
            yield f"ingress open to the internet on {p.get('ipProtocol')}/{p.get('fromPort')}"


@R.resource(
    "ec2-sg-descriptions",
    "Checkov CKV_AWS_23",
    "Security groups and their rules carry a description.",
    [SG, SG_INGRESS, SG_EGRESS],
)
def _sg_descriptions(p: Props) -> Iterator[str]:
    if not p.get("description"):
        yield "description is empty"


# ---- Load balancer --------------------------------------------------------------------------


@R.resource(
    "elb-4-drop-invalid-headers",
    "Security Hub ELB.4",
    "Application load balancers drop invalid HTTP headers.",
    [LB],
)
def _lb_headers(p: Props) -> Iterator[str]:
    if not truthy(p.get("dropInvalidHeaderFields")):
        yield "dropInvalidHeaderFields is not true"


@R.resource(
    "elb-tls-1-2",
    "Checkov CKV_AWS_103",
    "HTTPS listeners use a TLS 1.2+ security policy.",
    [LISTENER],
)
def _lb_tls(p: Props) -> Iterator[str]:
    if p.get("protocol") == "HTTPS":
        policy = str(p.get("sslPolicy") or "")
        if "TLS13" not in policy and "TLS-1-2" not in policy:
            yield f"sslPolicy {policy or '(default)'} allows TLS < 1.2"


@R.stack(
    "elb-public-https-only",
    "Security Hub ELB.1 / CKV_AWS_2",
    "Internet-facing load balancers serve HTTPS only.",
    types=[LB],
)
def _lb_https(resources: Sequence[GraphResource]) -> Iterable[tuple[GraphResource, str]]:
    public = {
        str(r.props.get("arn")): r
        for r in resources
        if r.resource_type == LB and r.props.get("internal") is not True
    }
    for listener in (r for r in resources if r.resource_type == LISTENER):
        lb = public.get(str(listener.props.get("loadBalancerArn")))
        if lb is not None and listener.props.get("protocol") != "HTTPS":
            actions = as_list(listener.props.get("defaultActions"))
            if not all(a.get("type") == "redirect" for a in actions):
                yield lb, f"public listener on port {listener.props.get('port')} is not HTTPS"


# ---- API Gateway ----------------------------------------------------------------------------


def _method_settings_findings(p: Props) -> Iterator[str]:
    settings = p.get("settings") or {}
    if settings.get("loggingLevel") not in EXECUTION_LOG_LEVELS:
        yield f"{p.get('methodPath')}: loggingLevel is {settings.get('loggingLevel')!r}"
    if truthy(settings.get("cachingEnabled")) and not truthy(settings.get("cacheDataEncrypted")):
        yield f"{p.get('methodPath')}: cache data is not encrypted (APIGateway.5)"


@R.stack(
    "apigateway-1-execution-logging",
    "Security Hub APIGateway.1",
    "REST API stages log execution at ERROR or INFO.",
    types=[API_STAGE, API_METHOD_SETTINGS],
)
def _api_logging(resources: Sequence[GraphResource]) -> Iterable[tuple[GraphResource, str]]:
    # Execution logging is a method setting: a stage without `*/*` settings logs nothing, and
    # a per-method override may switch it off again, so every override is checked too.
    settings = [r for r in resources if r.resource_type == API_METHOD_SETTINGS]
    for ms in settings:
        for message in _method_settings_findings(ms.props):
            yield ms, message
    for stage in (r for r in resources if r.resource_type == API_STAGE):
        key = (str(stage.props.get("restApi")), str(stage.props.get("stageName")))
        covered = [
            ms
            for ms in settings
            if (str(ms.props.get("restApi")), str(ms.props.get("stageName"))) == key
            and ms.props.get("methodPath") == "*/*"
        ]
        if not covered:
            yield stage, f"stage {key[1]} has no method settings for */* (execution logging off)"


@R.resource(
    "apigateway-3-xray",
    "Security Hub APIGateway.3",
    "REST API stages have X-Ray tracing enabled.",
    [API_STAGE],
)
def _api_xray(p: Props) -> Iterator[str]:
    if not truthy(p.get("xrayTracingEnabled")):
        yield "xrayTracingEnabled is not true"


@R.resource(
    "apigateway-9-access-logging",
    "Security Hub APIGateway.9",
    "REST API stages write access logs.",
    [API_STAGE],
)
def _api_access_logs(p: Props) -> Iterator[str]:
    if not (p.get("accessLogSettings") or {}).get("destinationArn"):
        yield "accessLogSettings.destinationArn is not set"


@R.resource(
    "apigateway-iam-auth",
    "Checkov CKV_AWS_59",
    "API methods require authorization (IAM for the ingest proxy).",
    [API_METHOD],
)
def _api_auth(p: Props) -> Iterator[str]:
    if p.get("authorization") in (None, "NONE") and p.get("httpMethod") != "OPTIONS":
        yield "authorization is NONE"


# ---- Names and tags -------------------------------------------------------------------------


def _suffix(resources: Sequence[GraphResource]) -> str | None:
    for r in resources:
        env = tags_of(r.props).get("Environment")
        if env:
            return str(env)
    return None


@R.stack(
    "plantstream-names-carry-suffix",
    "plantstream PS.5 (seed naming rule)",
    "Every physical name is resource-type-<environment suffix>.",
)
def _names(resources: Sequence[GraphResource]) -> Iterable[tuple[GraphResource, str]]:
    suffix = _suffix(resources)
    for r in resources:
        if not r.resource_type.startswith("aws:") or r.resource_type in UNNAMED_TYPES:
            continue
        if suffix is None:
            yield r, "no Environment tag anywhere in the stack to take the suffix from"
            return
        for prop in NAME_PROPS:
            value = r.props.get(prop)
            if value in AWS_DICTATED_NAMES:
                continue
            if isinstance(value, str) and value and not ends_with_suffix(value, suffix):
                yield r, f"{prop} {value!r} does not end with -{suffix}"
        name_tag = tags_of(r.props).get("Name")
        if name_tag and not ends_with_suffix(str(name_tag), suffix):
            yield r, f"Name tag {name_tag!r} does not end with -{suffix}"


@R.resource(
    "plantstream-required-tags",
    "plantstream PS.6 (AWS tagging best practice)",
    f"Every taggable resource carries {', '.join(REQUIRED_TAGS)}.",
    sorted(TAGGABLE_TYPES),
)
def _tags(p: Props) -> Iterator[str]:
    missing = [t for t in REQUIRED_TAGS if not tags_of(p).get(t)]
    if missing:
        yield f"missing tags {missing}"
