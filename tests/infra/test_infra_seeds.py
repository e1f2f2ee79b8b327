"""Seed fidelity and the way in: every explicit value a seed states is honoured by its preset
or declared (``plantstream:seedDeviations``) with a reason, never both, never silently; and
every preset offers devices outside the VPC a way in, or says ``internalOnly``."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path

import pytest
from infra_helpers import PRESETS, Report

from plantstream.ingest import gateway_partition_key
from plantstream.ingest.codecs import gateway_envelope
from plantstream.stream.hashing import partition_key
from plantstream.stream.kinesis import MAX_PARTITION_KEY_CHARS, MAX_RECORD_BYTES

pytestmark = pytest.mark.infra

README = Path(__file__).resolve().parents[2] / "infra" / "README.md"
CLUSTER = "aws:rds/cluster:Cluster"
INSTANCE = "aws:rds/instance:Instance"
REDIS = "aws:elasticache/replicationGroup:ReplicationGroup"
STREAM = "aws:kinesis/stream:Stream"
Check = Callable[[Report], bool]


def _db(report: Report) -> dict[str, object]:
    kind = CLUSTER if report.outputs["database_kind"] == "aurora-serverless" else INSTANCE
    return report.one(kind)


def _output(name: str, target: str) -> Check:
    return lambda r: r.outputs.get(name) not in (None, "") and r.outputs[name] == r.outputs[target]


def _iterator_age_scaling(report: Report) -> bool:
    policies = report.of_type("aws:appautoscaling/policy:Policy")
    return any(
        p["inputs"]["targetTrackingScalingPolicyConfiguration"]["customizedMetricSpecification"][
            "metricName"
        ]
        == "GetRecords.IteratorAgeMilliseconds"
        for p in policies
    )


def _db_sg_open_to_vpc(report: Report) -> bool:
    rules = report.of_type("aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule")
    return any("db-from" in r["name"] and r["inputs"].get("cidrIpv4") for r in rules)


def _gateway_paths(report: Report) -> list[str]:
    return [r["inputs"]["pathPart"] for r in report.of_type("aws:apigateway/resource:Resource")]


HOST_PORT = re.compile(r"^[a-z0-9.-]+:5432$")
# (preset, what the seed states, does the preset do it) - seeds 000/001, 002, 003, 004.
SEED_VALUES: list[tuple[str, str, Check]] = [
    (
        "iiot-sa-east-1",
        "database name sensordata",
        lambda r: _db(r)["databaseName"] == "sensordata",
    ),
    ("iiot-sa-east-1", "master user dbadmin", lambda r: _db(r)["masterUsername"] == "dbadmin"),
    ("iiot-sa-east-1", "aurora engine 15.4", lambda r: _db(r)["engineVersion"] == "15.4"),
    ("iiot-sa-east-1", "backups 30 days", lambda r: _db(r)["backupRetentionPeriod"] == 30),
    ("iiot-sa-east-1", "kinesis 2 shards", lambda r: r.one(STREAM)["shardCount"] == 2),
    ("iiot-sa-east-1", "kinesis 24 hours", lambda r: r.one(STREAM)["retentionPeriod"] == 24),
    ("iiot-sa-east-1", "redis engine 7.0", lambda r: r.one(REDIS)["engineVersion"] == "7.0"),
    ("iiot-sa-east-1", "redis 2 nodes", lambda r: r.one(REDIS)["numCacheClusters"] == 2),
    ("iiot-sa-east-1", "security groups from the VPC CIDR", _db_sg_open_to_vpc),
    ("manufacturing-eu-west-2", "database name iotdb", lambda r: _db(r)["dbName"] == "iotdb"),
    (
        "manufacturing-eu-west-2",
        "rds_endpoint host:port",
        lambda r: HOST_PORT.match(r.outputs["rds_endpoint"]) is not None,
    ),
    ("manufacturing-eu-west-2", "autoscaling on iterator age", _iterator_age_scaling),
    (
        "manufacturing-eu-west-2",
        "postgres engine 15.14",
        lambda r: _db(r)["engineVersion"] == "15.14",
    ),
    ("manufacturing-eu-west-2", "multi-AZ database", lambda r: _db(r)["multiAz"] is True),
    (
        "manufacturing-eu-west-2",
        "redis cluster mode",
        lambda r: r.one(REDIS)["clusterMode"] == "enabled",
    ),
    (
        "manufacturing-eu-west-2",
        "redis engine 7.0",
        lambda r: r.one(REDIS)["engineVersion"] == "7.0",
    ),
    ("manufacturing-eu-west-2", "backups 7 days", lambda r: _db(r)["backupRetentionPeriod"] == 7),
    (
        "manufacturing-eu-west-2",
        "tasks in public subnets",
        lambda r: all(
            s["inputs"]["networkConfiguration"]["assignPublicIp"]
            for s in r.of_type("aws:ecs/service:Service")
        ),
    ),
    (
        "manufacturing-eu-west-2",
        "nginx image",
        lambda r: "nginx" in r.outputs["image"],
    ),
    ("manufacturing-eu-west-2", "kinesis 2 shards", lambda r: r.one(STREAM)["shardCount"] == 2),
    ("secure-pipeline-us-east-1", "backups 1 day", lambda r: _db(r)["backupRetentionPeriod"] == 1),
    ("secure-pipeline-us-east-1", "kinesis 1 shard", lambda r: r.one(STREAM)["shardCount"] == 1),
    (
        "secure-pipeline-us-east-1",
        "single NAT gateway",
        lambda r: len(r.of_type("aws:ec2/natGateway:NatGateway")) == 1,
    ),
    (
        "secure-pipeline-us-east-1",
        "rds_endpoint host:port",
        lambda r: HOST_PORT.match(r.outputs["rds_endpoint"]) is not None,
    ),
    (
        "fedramp-moderate",
        "output ApiGatewayEndpoint",
        _output("ApiGatewayEndpoint", "ingest_api_url"),
    ),
    ("fedramp-moderate", "output apiGatewayUrl", _output("apiGatewayUrl", "api_gateway_url")),
    ("fedramp-moderate", "output EcsClusterArn", _output("EcsClusterArn", "ecs_cluster_arn")),
    ("fedramp-moderate", "output ecsClusterName", _output("ecsClusterName", "ecs_cluster_name")),
    ("fedramp-moderate", "output DbSecretArn", _output("DbSecretArn", "db_secret_arn")),
    ("fedramp-moderate", "output dbSecretArn", _output("dbSecretArn", "db_secret_arn")),
    (
        "fedramp-moderate",
        "output kinesisStreamName",
        _output("kinesisStreamName", "kinesis_stream_name"),
    ),
    (
        "fedramp-moderate",
        "api stage prod",
        lambda r: r.one("aws:apigateway/stage:Stage")["stageName"] == "prod",
    ),
    ("fedramp-moderate", "postgres engine 16.3", lambda r: _db(r)["engineVersion"] == "16.3"),
    ("fedramp-moderate", "backups 7 days", lambda r: _db(r)["backupRetentionPeriod"] == 7),
    (
        "fedramp-moderate",
        "logs 7 days",
        lambda r: all(
            g["inputs"]["retentionInDays"] == 7
            for g in r.of_type("aws:cloudwatch/logGroup:LogGroup")
        ),
    ),
    (
        "fedramp-moderate",
        "api data trace on",
        lambda r: (
            r.one("aws:apigateway/methodSettings:MethodSettings")["settings"]["dataTraceEnabled"]
            is True
        ),
    ),
    (
        "fedramp-moderate",
        "api POST /ingest",
        lambda r: _gateway_paths(r) == ["ingest"],
    ),
    ("fedramp-moderate", "kinesis 1 shard", lambda r: r.one(STREAM)["shardCount"] == 1),
    ("fedramp-moderate", "kinesis 24 hours", lambda r: r.one(STREAM)["retentionPeriod"] == 24),
]


@pytest.mark.parametrize(
    ("preset", "value", "check"), SEED_VALUES, ids=[f"{p}:{v}" for p, v, _ in SEED_VALUES]
)
def test_each_seed_value_is_honoured_or_declared_never_both(
    reports: dict[str, Report], preset: str, value: str, check: Check
) -> None:
    report = reports[preset]
    declared = report.outputs["seed_deviations"]
    honoured = check(report)
    assert honoured != (value in declared), (
        f"{value!r} is {'honoured' if honoured else 'not honoured'} and "
        f"{'declared' if value in declared else 'not declared'}"
    )
    if value in declared:
        assert len(declared[value]) > 20  # a reason, not a placeholder


@pytest.mark.parametrize("preset", PRESETS)
def test_no_declared_seed_deviation_is_unknown(reports: dict[str, Report], preset: str) -> None:
    known = {value for p, value, _ in SEED_VALUES if p == preset}
    assert set(reports[preset].outputs["seed_deviations"]) - known == set()


# ---- a way in from outside the VPC ----------------------------------------------------------


@pytest.mark.parametrize("preset", PRESETS)
def test_every_preset_has_a_way_in_from_outside_the_vpc(
    reports: dict[str, Report], preset: str
) -> None:
    report = reports[preset]
    https = report.one("aws:lb/listener:Listener")["protocol"] == "HTTPS"
    gateway = bool(report.of_type("aws:apigateway/restApi:RestApi"))
    assert https or gateway
    if gateway:
        assert report.outputs["ingest_api_url"].endswith("/ingest")
        assert report.one("aws:apigateway/method:Method")["authorization"] == "AWS_IAM"


def test_internal_only_must_be_said(check_with: Callable[..., Report]) -> None:
    from infra_helpers import run_check

    code, _, stderr = run_check("iiot-sa-east-1", {"plantstream:frontDoor": {"apiGateway": False}})
    assert code == 2
    assert "internalOnly" in stderr
    report = check_with(
        "iiot-sa-east-1", {"plantstream:frontDoor": {"apiGateway": False, "internalOnly": True}}
    )
    assert report.code == 0
    assert report.of_type("aws:apigateway/restApi:RestApi") == []
    assert report.one("aws:lb/loadBalancer:LoadBalancer")["internal"] is True


def _template(report: Report) -> str:
    integration = report.one("aws:apigateway/integration:Integration")
    return integration["requestTemplates"]["application/json"]


def test_the_gateway_partition_key_is_the_facility_part_of_the_app_rule(
    reports: dict[str, Report],
) -> None:
    """One body becomes one record with one key; the app keys records "<facility>/<device>"
    (stream/hashing.py), so the gateway keys by the facility: all its devices, and so each
    device, stay on one shard in order. (Point at core's ingest rule once it exports one.)"""
    template = _template(reports["fedramp-moderate"])
    # the key is the PATH facility (POST /ingest/plant-7), which the body must name
    path = "$input.params().path.get('facility')"
    assert f"#set($facility = $util.escapeJavaScript({path}))" in template
    assert '"PartitionKey": "$facility"' in template
    body = {"facility": "plant-7", "readings": [{"device": d} for d in ("press-1", "oven-2")]}
    gateway_key = body["facility"]  # what the path parameter is for /ingest/plant-7
    for reading in body["readings"]:
        app_key = partition_key(body["facility"], reading["device"])
        assert app_key.split("/", 1)[0] == gateway_key


def test_the_gateway_tells_the_caller_its_body_limit(reports: dict[str, Report]) -> None:
    from plantstream_infra.ingest_api import LIMIT_HEADER, MAX_BODY_BYTES

    # a body this size plus the longest partition key still fits one Kinesis record
    assert MAX_BODY_BYTES + MAX_PARTITION_KEY_CHARS <= MAX_RECORD_BYTES
    # and so does its envelope, keyed by the longest facility id the processor accepts
    longest = "f" * 64
    envelope = len(gateway_envelope(longest, b"x" * MAX_BODY_BYTES))
    assert envelope + len(gateway_partition_key(longest)) <= MAX_RECORD_BYTES
    report = reports["fedramp-moderate"]
    header = f"method.response.header.{LIMIT_HEADER}"
    responses = report.of_type("aws:apigateway/integrationResponse:IntegrationResponse")
    assert len(responses) == 3
    for response in responses:
        assert response["inputs"]["responseParameters"][header] == f"'{MAX_BODY_BYTES}'"
    (rejected,) = [r for r in responses if r["inputs"]["statusCode"] == "400"]
    template = rejected["inputs"]["responseTemplates"]["application/json"]
    assert f'"maxBodyBytes": {MAX_BODY_BYTES}' in template
    for method_response in report.of_type("aws:apigateway/methodResponse:MethodResponse"):
        assert method_response["inputs"]["responseParameters"] == {header: True}
    assert str(MAX_BODY_BYTES) in README.read_text()


def test_the_gateway_confines_a_writer_to_the_facility_of_its_path_and_says_how(
    reports: dict[str, Report],
) -> None:
    """Before: the only path was /ingest with the facility in the body, so whoever could invoke
    it could write for every facility. Now the facility is the path (POST /ingest/{facility}),
    IAM can grant one, the record carries it, and the processor refuses a body naming another.
    """
    report = reports["fedramp-moderate"]
    assert _gateway_paths(report) == ["ingest", "{facility}"]
    ingest, facility = report.of_type("aws:apigateway/resource:Resource")
    assert facility["inputs"]["parentId"] == ingest["state"]["id"]  # /ingest/{facility}
    (method,) = report.of_type("aws:apigateway/method:Method")  # none on /ingest itself
    assert method["inputs"]["resourceId"] == facility["state"]["id"]
    assert method["inputs"]["httpMethod"] == "POST"
    assert method["inputs"]["authorization"] == "AWS_IAM"
    assert method["inputs"]["requestParameters"] == {"method.request.path.facility": True}
    integration = report.one("aws:apigateway/integration:Integration")
    assert integration["resourceId"] == facility["state"]["id"]
    template = _template(report)
    assert "$input.params().path.get('facility')" in template
    assert "plantstream_gateway" in template
    assert "$input.body" in template  # the body goes as sent, inside the envelope
    stage = report.one("aws:apigateway/stage:Stage")
    assert json.loads(stage["accessLogSettings"]["format"])["path"] == "$context.path"
    text = " ".join(README.read_text().split())
    assert "may write for every facility" not in text
    assert "/POST/ingest/plant-a" in text  # the example policy of one facility
    assert "forbidden_facility" in text
