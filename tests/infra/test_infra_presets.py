"""Every preset builds under mocks and passes the whole policy pack with zero violations."""

from __future__ import annotations

import re

import pytest
from infra_helpers import PRESETS, Report
from plantstream_infra.policies.network import AWS_DICTATED_NAMES, UNNAMED_TYPES

pytestmark = pytest.mark.infra

EXPECTED_PRESETS = {
    "iiot-sa-east-1",
    "manufacturing-eu-west-2",
    "secure-pipeline-us-east-1",
    "fedramp-moderate",
}
NAME_PROPS = ("name", "identifier", "clusterIdentifier", "replicationGroupId", "family")


def test_one_preset_per_seed_system() -> None:
    assert set(PRESETS) == EXPECTED_PRESETS


@pytest.mark.parametrize("preset", sorted(EXPECTED_PRESETS))
def test_preset_has_zero_policy_violations(reports: dict[str, Report], preset: str) -> None:
    report = reports[preset]
    violations = report.results("mandatory")
    assert violations == [], "\n".join(f"{v['policy']}: {v['message']}" for v in violations)
    assert report.code == 0
    assert report.data["summary"]["policies"] >= 60
    assert all(p["status"] in ("pass", "advisory") for p in report.data["policies"])


@pytest.mark.parametrize("preset", sorted(EXPECTED_PRESETS))
def test_every_physical_name_ends_with_the_suffix(reports: dict[str, Report], preset: str) -> None:
    report = reports[preset]
    suffix = report.outputs["environment_suffix"]
    checked = 0
    for res in report.resources:
        for prop in NAME_PROPS:
            value = res["inputs"].get(prop)
            # names AWS dictates: an API Gateway path part, IoT Core's log group, the private
            # zone and record named after the account's IoT data endpoint
            dictated = res["type"] in UNNAMED_TYPES or value in AWS_DICTATED_NAMES
            if isinstance(value, str) and not dictated:
                checked += 1
                assert re.search(rf"-{suffix}($|/)", value), f"{res['type']} {prop}={value}"
    assert checked > 40


@pytest.mark.parametrize("preset", sorted(EXPECTED_PRESETS))
def test_outputs_include_what_the_seeds_export(reports: dict[str, Report], preset: str) -> None:
    out = reports[preset].outputs
    for key in (
        "vpc_id",
        "kinesis_stream_name",
        "kinesis_stream_arn",
        "database_endpoint",
        "database_arn",
        "redis_endpoint",
        "redis_port",
        "kms_key_id",
        "db_secret_arn",
        "ecs_cluster_name",
        "ecs_cluster_arn",
        "api_url",
    ):
        assert out.get(key) not in (None, "", []), key
    assert out["redis_port"] == 6379
    assert out["kinesis_stream_arn"].endswith(f":stream/{out['kinesis_stream_name']}")
    if out["database_kind"] == "postgres-instance":
        assert out["rds_endpoint"]
        assert out["rds_arn"].startswith("arn:aws:rds:")
    else:
        assert out["aurora_cluster_arn"].startswith("arn:aws:rds:")


def test_fedramp_exports_the_api_url_and_tags_compliance(reports: dict[str, Report]) -> None:
    report = reports["fedramp-moderate"]
    assert report.outputs["ingest_api_url"].endswith("/v1/ingest")
    tagged = [
        r
        for r in report.resources
        if r["type"].startswith("aws:") and isinstance(r["inputs"].get("tags"), dict)
    ]
    assert tagged
    assert all(r["inputs"]["tags"].get("Compliance") == "FedRAMP-Moderate" for r in tagged)


def test_seed_deviations_are_reported_as_advisories_with_their_reason(
    reports: dict[str, Report],
) -> None:
    advisories = reports["iiot-sa-east-1"].results("advisory")
    kinesis = [a for a in advisories if "plantstream-kinesis-retention-7d" in a["message"]]
    assert len(kinesis) == 1
    assert "24 hours" in kinesis[0]["message"]
    assert "retentionPeriod is 24 h" in kinesis[0]["message"]
    assert all(a["policy"].startswith("plantstream-declared-deviations") for a in advisories)


def test_presets_reproduce_their_seed_shapes(reports: dict[str, Report]) -> None:
    iiot = reports["iiot-sa-east-1"]
    assert iiot.outputs["region"] == "sa-east-1"
    assert iiot.one("aws:kinesis/stream:Stream")["shardCount"] == 2
    scaling = iiot.one("aws:rds/cluster:Cluster")["serverlessv2ScalingConfiguration"]
    assert scaling == {"minCapacity": 0.5, "maxCapacity": 2.0}
    assert len(iiot.of_type("aws:kms/key:Key")) == 6  # one per service, plus the ECR key

    mfg = reports["manufacturing-eu-west-2"]
    assert mfg.one("aws:rds/instance:Instance")["multiAz"] is True
    assert mfg.one("aws:elasticache/replicationGroup:ReplicationGroup")["clusterMode"] == "enabled"

    secure = reports["secure-pipeline-us-east-1"]
    assert len(secure.of_type("aws:kms/key:Key")) == 1
    assert len(secure.of_type("aws:ec2/natGateway:NatGateway")) == 1
    redis = secure.one("aws:elasticache/replicationGroup:ReplicationGroup")
    assert redis["numCacheClusters"] == 2
    assert redis["automaticFailoverEnabled"] is True

    fed = reports["fedramp-moderate"]
    assert len(fed.of_type("aws:kms/key:Key")) == 1
    assert fed.of_type("aws:apigateway/restApi:RestApi")
