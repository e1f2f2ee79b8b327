"""A small stack that complies with every control of the pack, and the helpers to break it.

The failure tables (``test_policy_fail_*.py``) each change one thing in this graph and expect
exactly the control that forbids it to refuse the changed resource.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from typing import Any

import pytest
from iot_baseline import iot_graph
from plantstream_infra.policies import CONTROLS, GraphEntry, PolicyResult, evaluate

pytestmark = pytest.mark.infra

TAGS = {"Project": "plantstream", "Environment": "dev", "Preset": "t", "ManagedBy": "pulumi"}
ACCOUNT = "123456789012"
KEY_ARN = f"arn:aws:kms:us-east-1:{ACCOUNT}:key/04a95788-c2ec-4972-804a-95788c2ec972"
LB_ARN = f"arn:aws:elasticloadbalancing:us-east-1:{ACCOUNT}:loadbalancer/app/alb-dev/1"
SECRET_ARN = f"arn:aws:secretsmanager:us-east-1:{ACCOUNT}:secret:app-secret-dev-AbCdEf"
IMAGE = f"{ACCOUNT}.dkr.ecr.us-east-1.amazonaws.com/plantstream-dev:1.4.0@sha256:" + "a" * 64

# logical name (also the resource id) -> (type token, properties)
Graph = dict[str, tuple[str, dict[str, Any]]]
Mutation = Callable[[Graph], str]  # changes the graph, returns the name that must be refused


def _container(**overrides: Any) -> dict[str, Any]:
    return {
        "name": "app",
        "image": IMAGE,
        "essential": True,
        "readonlyRootFilesystem": True,
        "user": "10001:10001",
        "logConfiguration": {"logDriver": "awslogs", "options": {"awslogs-group": "/app-dev"}},
        "environment": [{"name": "PLANTSTREAM_LOG_LEVEL", "value": "INFO"}],
        "secrets": [{"name": "PLANTSTREAM_SERVER_SECRET", "valueFrom": SECRET_ARN}],
        **overrides,
    }


def _policy(*statements: dict[str, Any]) -> str:
    return json.dumps({"Version": "2012-10-17", "Statement": list(statements)})


def _network() -> Graph:
    return {
        "vpc-main": ("aws:ec2/vpc:Vpc", {"cidrBlock": "10.0.0.0/16", "tags": TAGS}),
        "sg-default": (
            "aws:ec2/defaultSecurityGroup:DefaultSecurityGroup",
            {"vpcId": "vpc-main", "ingress": [], "egress": [], "tags": TAGS},
        ),
        "fl-main": (
            "aws:ec2/flowLog:FlowLog",
            {"vpcId": "vpc-main", "trafficType": "ALL", "tags": TAGS},
        ),
        "igw-main": (
            "aws:ec2/internetGateway:InternetGateway",
            {"vpcId": "vpc-main", "tags": TAGS},
        ),
        "rtb-public": ("aws:ec2/routeTable:RouteTable", {"vpcId": "vpc-main", "tags": TAGS}),
        "rtb-private": ("aws:ec2/routeTable:RouteTable", {"vpcId": "vpc-main", "tags": TAGS}),
        "route-public-default": (
            "aws:ec2/route:Route",
            {
                "routeTableId": "rtb-public",
                "destinationCidrBlock": "0.0.0.0/0",
                "gatewayId": "igw-main",
            },
        ),
        "route-private-default": (
            "aws:ec2/route:Route",
            {
                "routeTableId": "rtb-private",
                "destinationCidrBlock": "0.0.0.0/0",
                "natGatewayId": "nat-main",
            },
        ),
        **{
            f"subnet-{tier}-{az}": (
                "aws:ec2/subnet:Subnet",
                {
                    "vpcId": "vpc-main",
                    "availabilityZone": f"us-east-1{az}",
                    "mapPublicIpOnLaunch": False,
                    "tags": {**TAGS, "Name": f"{tier}-{az}-dev"},
                },
            )
            for tier in ("public", "private")
            for az in ("a", "b")
        },
        **{
            f"rta-{tier}-{az}": (
                "aws:ec2/routeTableAssociation:RouteTableAssociation",
                {"subnetId": f"subnet-{tier}-{az}", "routeTableId": f"rtb-{tier}"},
            )
            for tier in ("public", "private")
            for az in ("a", "b")
        },
        "sg-app": (
            "aws:ec2/securityGroup:SecurityGroup",
            {"name": "app-dev", "description": "app tasks", "vpcId": "vpc-main", "tags": TAGS},
        ),
        "sgr-https": (
            "aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule",
            {
                "securityGroupId": "sg-app",
                "cidrIpv4": "0.0.0.0/0",
                "ipProtocol": "tcp",
                "fromPort": 443,
                "toPort": 443,
                "description": "devices reach the public listener",
                "tags": {**TAGS, "plantstream:exposure": "public-listener"},
            },
        ),
        "sgr-egress": (
            "aws:vpc/securityGroupEgressRule:SecurityGroupEgressRule",
            {
                "securityGroupId": "sg-app",
                "cidrIpv4": "10.0.0.0/16",
                "ipProtocol": "tcp",
                "fromPort": 5432,
                "toPort": 5432,
                "description": "tasks reach the database",
                "tags": TAGS,
            },
        ),
        "sgr-legacy": (
            "aws:ec2/securityGroupRule:SecurityGroupRule",
            {
                "type": "ingress",
                "securityGroupId": "sg-app",
                "cidrBlocks": ["10.0.0.0/16"],
                "protocol": "tcp",
                "fromPort": 8080,
                "toPort": 8080,
                "description": "health checks from inside the VPC",
            },
        ),
    }


def _edge() -> Graph:
    return {
        "alb": (
            "aws:lb/loadBalancer:LoadBalancer",
            {
                "name": "alb-dev",
                "arn": LB_ARN,
                "internal": False,
                "dropInvalidHeaderFields": True,
                "tags": TAGS,
            },
        ),
        "listener-https": (
            "aws:lb/listener:Listener",
            {
                "loadBalancerArn": LB_ARN,
                "port": 443,
                "protocol": "HTTPS",
                "sslPolicy": "ELBSecurityPolicy-TLS13-1-2-2021-06",
                "defaultActions": [{"type": "forward", "targetGroupArn": "arn:tg"}],
                "tags": TAGS,
            },
        ),
        "listener-http": (
            "aws:lb/listener:Listener",
            {
                "loadBalancerArn": LB_ARN,
                "port": 80,
                "protocol": "HTTP",
                "defaultActions": [{"type": "redirect", "redirect": {"port": "443"}}],
                "tags": TAGS,
            },
        ),
        "stage-v1": (
            "aws:apigateway/stage:Stage",
            {
                "restApi": "api-1",
                "stageName": "v1",
                "deployment": "dep-1",
                "xrayTracingEnabled": True,
                "accessLogSettings": {
                    "destinationArn": f"arn:aws:logs:us-east-1:{ACCOUNT}:log-group:/api-dev",
                    "format": "$context.requestId",
                },
                "tags": TAGS,
            },
        ),
        "settings-v1": (
            "aws:apigateway/methodSettings:MethodSettings",
            {
                "restApi": "api-1",
                "stageName": "v1",
                "methodPath": "*/*",
                "settings": {"loggingLevel": "INFO", "metricsEnabled": True},
            },
        ),
        "method-post": (
            "aws:apigateway/method:Method",
            {"restApi": "api-1", "httpMethod": "POST", "authorization": "AWS_IAM"},
        ),
    }


def _data() -> Graph:
    engine = {
        "storageEncrypted": True,
        "kmsKeyId": KEY_ARN,
        "backupRetentionPeriod": 30,
        "iamDatabaseAuthenticationEnabled": True,
        "deletionProtection": True,
        "copyTagsToSnapshot": True,
        "manageMasterUserPassword": True,
        "masterUserSecretKmsKeyId": KEY_ARN,
        "tags": TAGS,
    }
    return {
        "stream": (
            "aws:kinesis/stream:Stream",
            {
                "name": "sensor-data-stream-dev",
                "encryptionType": "KMS",
                "kmsKeyId": KEY_ARN,
                "retentionPeriod": 168,
                "tags": TAGS,
            },
        ),
        "aurora": (
            "aws:rds/cluster:Cluster",
            {
                **engine,
                "clusterIdentifier": "aurora-dev",
                "masterUsername": "plantstream_admin",
                "enabledCloudwatchLogsExports": ["postgresql"],
            },
        ),
        **{
            f"aurora-{n}": (
                "aws:rds/clusterInstance:ClusterInstance",
                {
                    "identifier": f"aurora-{n}-dev",
                    "clusterIdentifier": "aurora-dev",
                    "availabilityZone": f"us-east-1{az}",
                    "publiclyAccessible": False,
                    "autoMinorVersionUpgrade": True,
                    "tags": TAGS,
                },
            )
            for n, az in ((1, "a"), (2, "b"))
        },
        "postgres": (
            "aws:rds/instance:Instance",
            {
                **engine,
                "identifier": "postgres-dev",
                "username": "plantstream_admin",
                "multiAz": True,
                "publiclyAccessible": False,
                "autoMinorVersionUpgrade": True,
                "enabledCloudwatchLogsExports": ["postgresql", "upgrade"],
            },
        ),
        "redis": (
            "aws:elasticache/replicationGroup:ReplicationGroup",
            {
                "replicationGroupId": "redis-dev",
                "snapshotRetentionLimit": 7,
                "autoMinorVersionUpgrade": True,
                "automaticFailoverEnabled": True,
                "multiAzEnabled": True,
                "atRestEncryptionEnabled": True,
                "kmsKeyId": KEY_ARN,
                "transitEncryptionEnabled": True,
                "transitEncryptionMode": "required",
                "authToken": "a-long-mock-auth-token-0123456789",
                "subnetGroupName": "redis-subnets-dev",
                "tags": TAGS,
            },
        ),
        "secret": (
            "aws:secretsmanager/secret:Secret",
            {"name": "app-secret-dev", "arn": SECRET_ARN, "kmsKeyId": KEY_ARN, "tags": TAGS},
        ),
        "secret-rotation": (
            "aws:secretsmanager/secretRotation:SecretRotation",
            {"secretId": SECRET_ARN, "rotationRules": {"automaticallyAfterDays": 30}},
        ),
        "key": (
            "aws:kms/key:Key",
            {
                "enableKeyRotation": True,
                "policy": _policy(
                    {
                        "Sid": "Account",
                        "Effect": "Allow",
                        "Principal": {"AWS": f"arn:aws:iam::{ACCOUNT}:root"},
                        "Action": "kms:*",
                        "Resource": "*",
                    }
                ),
                "tags": TAGS,
            },
        ),
        "logs": (
            "aws:cloudwatch/logGroup:LogGroup",
            {
                "name": "/plantstream/app-dev",
                "kmsKeyId": KEY_ARN,
                "retentionInDays": 365,
                "tags": TAGS,
            },
        ),
        "alarms": (
            "aws:sns/topic:Topic",
            {"name": "alarms-dev", "kmsMasterKeyId": KEY_ARN, "tags": TAGS},
        ),
    }


def _compute() -> Graph:
    return {
        "cluster": (
            "aws:ecs/cluster:Cluster",
            {
                "name": "cluster-dev",
                "settings": [{"name": "containerInsights", "value": "enabled"}],
                "tags": TAGS,
            },
        ),
        "service": (
            "aws:ecs/service:Service",
            {
                "name": "app-dev",
                "platformVersion": "LATEST",
                "networkConfiguration": {
                    "subnets": ["subnet-private-a", "subnet-private-b"],
                    "assignPublicIp": False,
                    "securityGroups": ["sg-app"],
                },
                "tags": TAGS,
            },
        ),
        "task": (
            "aws:ecs/taskDefinition:TaskDefinition",
            {
                "family": "app-dev",
                "networkMode": "awsvpc",
                "containerDefinitions": json.dumps([_container()]),
                "tags": TAGS,
            },
        ),
        "repo": (
            "aws:ecr/repository:Repository",
            {
                "name": "plantstream-dev",
                "imageScanningConfiguration": {"scanOnPush": True},
                "imageTagMutability": "IMMUTABLE",
                "encryptionConfigurations": [{"encryptionType": "KMS", "kmsKey": KEY_ARN}],
                "tags": TAGS,
            },
        ),
        "repo-lifecycle": (
            "aws:ecr/lifecyclePolicy:LifecyclePolicy",
            {"repository": "plantstream-dev", "policy": json.dumps({"rules": []})},
        ),
        "role-policy": (
            "aws:iam/rolePolicy:RolePolicy",
            {
                "name": "app-dev",
                "role": "app-role-dev",
                "policy": _policy(
                    {
                        "Sid": "Write",
                        "Effect": "Allow",
                        "Action": ["kinesis:PutRecords"],
                        "Resource": f"arn:aws:kinesis:us-east-1:{ACCOUNT}:stream/s-dev",
                    }
                ),
            },
        ),
        "role-attachment": (
            "aws:iam/rolePolicyAttachment:RolePolicyAttachment",
            {
                "role": "exec-role-dev",
                "policyArn": (
                    "arn:aws:iam::aws:policy/service-role/AmazonECSTaskExecutionRolePolicy"
                ),
            },
        ),
        "rotation-fn": (
            "aws:lambda/function:Function",
            {"name": "rotation-dev", "runtime": "python3.12", "tags": TAGS},
        ),
    }


def baseline() -> Graph:
    """A fresh copy of the compliant graph (mutate it freely)."""
    iot = iot_graph(TAGS, KEY_ARN, _container())
    return copy.deepcopy({**_network(), **_edge(), **_data(), **_compute(), **iot})


def urn(name: str, graph: Graph) -> str:
    return f"urn:pulumi:t::plantstream::{graph[name][0]}::{name}"


def run(graph: Graph) -> list[PolicyResult]:
    """Evaluate the pack on ``graph``; each resource's id is its logical name."""
    return evaluate(
        [
            GraphEntry(t, name, urn(name, graph), props, {"id": name, **props})
            for name, (t, props) in graph.items()
        ]
    )


def refusals(results: list[PolicyResult], control: str) -> list[PolicyResult]:
    return [r for r in results if r.policy == control and r.enforcement == "mandatory"]


def props(graph: Graph, name: str) -> dict[str, Any]:
    return graph[name][1]


def containers(graph: Graph) -> list[dict[str, Any]]:
    return list(json.loads(props(graph, "task")["containerDefinitions"]))


def set_containers(graph: Graph, defs: list[dict[str, Any]]) -> None:
    props(graph, "task")["containerDefinitions"] = json.dumps(defs)


# ---- the baseline itself ----------------------------------------------------------------------


def test_the_baseline_stack_passes_the_whole_pack() -> None:
    results = run(baseline())
    assert [r for r in results if r.enforcement != "advisory"] == []
    assert results == []  # no deviation declared, so no advisory either


@pytest.mark.parametrize("control", CONTROLS, ids=lambda c: c.id)
def test_each_control_passes_a_compliant_resource_it_applies_to(control: Any) -> None:
    graph = baseline()
    applicable = [
        n for n, (t, _) in graph.items() if not control.resource_types or control.applies_to(t)
    ]
    assert applicable, f"the baseline has nothing {control.id} checks, so its pass proves nothing"
    assert refusals(run(graph), control.id) == []


# ---- building blocks for the failure tables ---------------------------------------------------


def change(name: str, /, **values: Any) -> Mutation:
    """Set properties of one resource; that resource must then be refused."""

    def mutate(graph: Graph) -> str:
        props(graph, name).update(values)
        return name

    return mutate


def drop(name: str, *keys: str) -> Mutation:
    """Remove properties of one resource; that resource must then be refused."""

    def mutate(graph: Graph) -> str:
        for key in keys:
            props(graph, name).pop(key)
        return name

    return mutate


def remove(gone: str, refused: str) -> Mutation:
    """Delete resource ``gone`` from the stack; ``refused`` must then be refused."""

    def mutate(graph: Graph) -> str:
        del graph[gone]
        return refused

    return mutate


def refusing(refused: str, *mutations: Mutation) -> Mutation:
    """Apply ``mutations`` (to other resources); ``refused`` must then be refused."""

    def mutate(graph: Graph) -> str:
        for m in mutations:
            m(graph)
        return refused

    return mutate


def container_change(**values: Any) -> Mutation:
    def mutate(graph: Graph) -> str:
        set_containers(graph, [{**containers(graph)[0], **values}])
        return "task"

    return mutate


def container_drop(key: str) -> Mutation:
    def mutate(graph: Graph) -> str:
        defs = containers(graph)
        defs[0].pop(key)
        set_containers(graph, defs)
        return "task"

    return mutate


FailTable = dict[str, dict[str, Mutation]]


def check_refusal(control: str, mutate: Mutation) -> None:
    """Apply ``mutate`` to a fresh baseline and require ``control`` to refuse its resource."""
    graph = baseline()
    name = mutate(graph)
    found = refusals(run(graph), control)
    assert urn(name, graph) in {r.urn for r in found}, (
        f"{control} did not refuse {name}; it reported {[(r.urn, r.message) for r in found]}"
    )


def cases(table: FailTable) -> list[Any]:
    return [
        pytest.param(control, mutate, id=f"{control}:{label}")
        for control, variants in table.items()
        for label, mutate in variants.items()
    ]
