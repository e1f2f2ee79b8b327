"""The controls mean what AWS means: AZs not instance counts, AWS-managed keys in any spelling,
execution logging per stage, AWS's runtime schedule, and privateness read from route tables."""

from __future__ import annotations

import gzip
import json
from datetime import date
from pathlib import Path

import botocore
import pytest
from plantstream_infra.policies.base import aws_managed_key
from plantstream_infra.policies.runtimes import (
    DEPRECATION,
    SCHEDULE_AS_OF,
    UNLISTED,
    runtime_finding,
    supported_on,
    today,
)
from test_policy_baseline import (
    ACCOUNT,
    TAGS,
    Graph,
    baseline,
    props,
    refusals,
    run,
    urn,
)

pytestmark = pytest.mark.infra


# ---- RDS.15: distinct Availability Zones ------------------------------------------------------


def _aurora_zones(*zones: str | None) -> Graph:
    graph = baseline()
    template = props(graph, "aurora-1")
    for name in [
        n for n, (t, _) in graph.items() if t == "aws:rds/clusterInstance:ClusterInstance"
    ]:
        del graph[name]
    for n, zone in enumerate(zones, start=1):
        p = {**template, "identifier": f"aurora-{n}-dev"}
        p.pop("availabilityZone")
        if zone:
            p["availabilityZone"] = zone
        graph[f"aurora-{n}"] = ("aws:rds/clusterInstance:ClusterInstance", p)
    return graph


@pytest.mark.parametrize(
    ("zones", "refused"),
    [
        (("us-east-1a", "us-east-1a"), True),
        (("us-east-1a", "us-east-1a", "us-east-1a"), True),
        (("us-east-1a", None), True),
        ((None, None), True),
        (("us-east-1a", "us-east-1b"), False),
        (("us-east-1a", "us-east-1a", "us-east-1c"), False),
        (("us-east-1a", "us-east-1b", None), False),
    ],
)
def test_rds_15_counts_availability_zones_not_instances(
    zones: tuple[str | None, ...], refused: bool
) -> None:
    messages = [r.message for r in refusals(run(_aurora_zones(*zones)), "rds-15-cluster-multi-az")]
    assert bool(messages) is refused, messages
    if refused:
        assert "needs instances in two AZs" in messages[0]


def test_rds_15_only_counts_the_instances_of_its_own_cluster() -> None:
    graph = _aurora_zones("us-east-1a")
    graph["other-reader"] = (
        "aws:rds/clusterInstance:ClusterInstance",
        {
            **props(graph, "aurora-1"),
            "clusterIdentifier": "other-dev",
            "availabilityZone": "us-east-1b",
        },
    )
    assert refusals(run(graph), "rds-15-cluster-multi-az")


# ---- CKV_AWS_185 / RDS.3 and friends: AWS-managed keys in every spelling ----------------------


@pytest.mark.parametrize(
    ("key", "managed"),
    [
        ("alias/aws/kinesis", True),
        ("alias/aws/rds", True),
        (f"arn:aws:kms:us-east-1:{ACCOUNT}:alias/aws/kinesis", True),
        (f"arn:aws:kms:sa-east-1:{ACCOUNT}:alias/aws/rds", True),
        (f"arn:aws-us-gov:kms:us-gov-west-1:{ACCOUNT}:alias/aws/rds", True),
        (" alias/aws/secretsmanager", True),
        ("alias/plantstream-dev", False),
        ("alias/awsome-dev", False),
        (f"arn:aws:kms:us-east-1:{ACCOUNT}:alias/plantstream/aws/dev", False),
        (f"arn:aws:kms:us-east-1:{ACCOUNT}:key/04a95788-c2ec-4972-804a-95788c2ec972", False),
        ("04a95788-c2ec-4972-804a-95788c2ec972", False),
    ],
)
def test_aws_managed_keys_are_recognised_bare_and_as_alias_arns(key: str, managed: bool) -> None:
    assert aws_managed_key(key) is managed


CUSTOMER_KEY_CONTROLS = [
    ("kinesis-customer-managed-key", "stream", "kmsKeyId"),
    ("rds-3-instance-encryption", "postgres", "kmsKeyId"),
    ("rds-27-cluster-encryption", "aurora", "kmsKeyId"),
    ("rds-managed-master-password", "postgres", "masterUserSecretKmsKeyId"),
    ("elasticache-4-encryption-at-rest", "redis", "kmsKeyId"),
    ("secretsmanager-customer-managed-key", "secret", "kmsKeyId"),
    ("cloudwatch-logs-kms", "logs", "kmsKeyId"),
]


@pytest.mark.parametrize(("control", "resource", "prop"), CUSTOMER_KEY_CONTROLS)
def test_customer_key_controls_refuse_aws_aliases_and_accept_customer_aliases(
    control: str, resource: str, prop: str
) -> None:
    region_arn = f"arn:aws:kms:us-east-1:{ACCOUNT}"
    for key in ("alias/aws/kms", f"{region_arn}:alias/aws/kms"):
        graph = baseline()
        props(graph, resource)[prop] = key
        found = refusals(run(graph), control)
        assert [r.urn for r in found] == [urn(resource, graph)], key
        assert "AWS-managed" in found[0].message
    for key in ("alias/plantstream-dev", f"{region_arn}:alias/plantstream-dev"):
        graph = baseline()
        props(graph, resource)[prop] = key
        assert refusals(run(graph), control) == [], key


# ---- APIGateway.1: execution logging per stage ------------------------------------------------


def test_a_per_method_override_that_keeps_logging_on_passes() -> None:
    graph = baseline()
    graph["settings-v1-post"] = (
        "aws:apigateway/methodSettings:MethodSettings",
        {
            "restApi": "api-1",
            "stageName": "v1",
            "methodPath": "ingest/POST",
            "settings": {"loggingLevel": "ERROR", "throttlingRateLimit": 100},
        },
    )
    assert refusals(run(graph), "apigateway-1-execution-logging") == []


def test_only_the_stage_without_method_settings_is_refused() -> None:
    graph = baseline()
    graph["stage-v2"] = (
        "aws:apigateway/stage:Stage",
        {**props(graph, "stage-v1"), "stageName": "v2"},
    )
    graph["stage-other-api"] = (
        "aws:apigateway/stage:Stage",
        {**props(graph, "stage-v1"), "restApi": "api-2"},
    )
    found = refusals(run(graph), "apigateway-1-execution-logging")
    assert sorted(r.urn for r in found) == sorted(
        [urn("stage-v2", graph), urn("stage-other-api", graph)]
    )
    assert all("no method settings for */*" in r.message for r in found)


# ---- Lambda.2: AWS's runtime schedule ---------------------------------------------------------


def _botocore_runtimes() -> set[str]:
    models = Path(botocore.__file__).parent / "data" / "lambda"
    [model] = sorted(models.glob("*/service-2.json*"))[-1:]
    raw = gzip.decompress(model.read_bytes()) if model.suffix == ".gz" else model.read_bytes()
    return set(json.loads(raw)["shapes"]["Runtime"]["enum"])


def test_the_schedule_knows_every_runtime_botocore_knows_and_no_other() -> None:
    # A botocore upgrade that adds a runtime fails here until the schedule says what it is.
    known = _botocore_runtimes()
    assert set(DEPRECATION) | UNLISTED == known
    assert not set(DEPRECATION) & UNLISTED


@pytest.mark.parametrize(
    ("runtime", "on", "supported"),
    [
        ("python3.12", date(2026, 12, 1), True),
        ("python3.12", date(2028, 10, 30), True),
        ("python3.12", date(2028, 10, 31), False),
        ("python3.11", date(2026, 12, 1), True),
        ("nodejs22.x", date(2026, 12, 1), True),
        ("java21", date(2026, 12, 1), True),
        ("provided.al2023", date(2026, 12, 1), True),
        ("python3.10", date(2026, 12, 1), False),
        ("python3.9", date(2026, 12, 1), False),
        ("python3.8", date(2024, 10, 14), False),
        ("nodejs18.x", date(2026, 12, 1), False),
        ("nodejs16.x", date(2026, 12, 1), False),
        ("dotnet8", date(2026, 12, 1), False),
        ("nodejs26.x", date(2026, 12, 1), False),
    ],
)
def test_runtime_support_follows_the_deprecation_dates(
    runtime: str, on: date, supported: bool
) -> None:
    assert (runtime_finding(runtime, on) is None) is supported


def test_the_schedule_as_taken_supports_the_current_runtimes_of_each_language() -> None:
    supported = supported_on(date(2026, 12, 1))
    for runtime in ("python3.14", "python3.13", "python3.12", "python3.11", "nodejs24.x"):
        assert runtime in supported
    assert supported_on(SCHEDULE_AS_OF) >= supported


@pytest.mark.parametrize("runtime", sorted(supported_on(today())))
def test_lambda_2_accepts_every_runtime_supported_today(runtime: str) -> None:
    graph = baseline()
    props(graph, "rotation-fn")["runtime"] = runtime
    assert refusals(run(graph), "lambda-2-supported-runtime") == []


def test_lambda_2_leaves_container_image_functions_alone() -> None:
    graph = baseline()
    fn = props(graph, "rotation-fn")
    fn.pop("runtime")
    fn.update(
        packageType="Image", imageUri="1.dkr.ecr.us-east-1.amazonaws.com/f@sha256:" + "b" * 64
    )
    assert refusals(run(graph), "lambda-2-supported-runtime") == []


# ---- ecs-private-subnets: route tables decide, tags do not ------------------------------------


def _retag(graph: Graph, subnet: str, tier: str) -> None:
    props(graph, subnet)["tags"] = {**TAGS, "Tier": tier}


def test_a_subnet_tagged_private_that_routes_to_the_internet_gateway_is_refused() -> None:
    graph = baseline()
    for subnet in ("subnet-public-a", "subnet-public-b"):
        _retag(graph, subnet, "private")
    props(graph, "service")["networkConfiguration"]["subnets"] = ["subnet-public-a"]
    [found] = refusals(run(graph), "ecs-private-subnets")
    assert found.urn == urn("service", graph)
    assert "routes to internet gateway igw-main via rtb-public" in found.message


def test_a_subnet_tagged_public_whose_routes_stay_private_passes() -> None:
    graph = baseline()
    for subnet in ("subnet-private-a", "subnet-private-b"):
        _retag(graph, subnet, "public")
    assert refusals(run(graph), "ecs-private-subnets") == []


def test_ipv6_egress_only_gateway_and_nat_routes_keep_a_subnet_private() -> None:
    graph = baseline()
    props(graph, "rtb-private")["routes"] = [
        {"ipv6CidrBlock": "::/0", "egressOnlyGatewayId": "eigw-0123"},
        {"cidrBlock": "10.1.0.0/16", "transitGatewayId": "tgw-0123"},
    ]
    assert refusals(run(graph), "ecs-private-subnets") == []


@pytest.mark.parametrize("main_table", ["rtb-private", "rtb-public"])
def test_a_subnet_without_an_association_uses_the_main_route_table(main_table: str) -> None:
    graph = baseline()
    del graph["rta-private-a"]
    graph["main-rta"] = (
        "aws:ec2/mainRouteTableAssociation:MainRouteTableAssociation",
        {"vpcId": "vpc-main", "routeTableId": main_table},
    )
    found = refusals(run(graph), "ecs-private-subnets")
    assert bool(found) is (main_table == "rtb-public")


def test_a_default_route_table_with_an_internet_route_makes_unassociated_subnets_public() -> None:
    graph = baseline()
    del graph["rta-private-b"]
    graph["rtb-main"] = (
        "aws:ec2/defaultRouteTable:DefaultRouteTable",
        {
            "defaultRouteTableId": "rtb-main",
            "vpcId": "vpc-main",
            "routes": [{"cidrBlock": "0.0.0.0/0", "gatewayId": "igw-main"}],
            "tags": TAGS,
        },
    )
    [found] = refusals(run(graph), "ecs-private-subnets")
    assert "subnet-private-b routes to internet gateway igw-main via rtb-main" in found.message
