"""Deploying for real: ordering races, redeploys after a destroy, version pins, and the
account-wide settings a destroy must leave alone, checked on the mocked resource graph.

The offline check records each resource's dependencies (``depends_on`` and input edges) and
options as the Pulumi engine receives them; the engine creates nothing before its dependencies.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from infra_helpers import PRESETS, Report

pytestmark = pytest.mark.infra

SERVICE = "aws:ecs/service:Service"


def _resource(report: Report, token: str, name_contains: str = "") -> dict[str, Any]:
    (found,) = [r for r in report.of_type(token) if name_contains in r["name"]]
    return found


def _depends_on(resource: dict[str, Any], token: str) -> bool:
    """Whether ``resource`` waits for some resource of type ``token``."""
    return any(urn.split("::")[-2].endswith(token) for urn in resource["dependencies"])


@pytest.mark.parametrize("preset", PRESETS)
def test_api_gateway_account_waits_for_its_role_policy(
    reports: dict[str, Report], preset: str
) -> None:
    """Else UpdateAccount can see the role before its policy: "The role ARN does not have
    required permissions set to API Gateway"."""
    account = _resource(reports[preset], "aws:apigateway/account:Account")
    policies = [urn for urn in account["dependencies"] if urn.endswith("apigw-logs-policy")]
    assert policies
    assert _depends_on(account, "aws:iam/role:Role")


@pytest.mark.parametrize("preset", PRESETS)
def test_the_ingest_service_waits_for_the_rule_that_routes_to_it(
    reports: dict[str, Report], preset: str
) -> None:
    report = reports[preset]
    assert _depends_on(_resource(report, SERVICE, "-ingest"), "aws:lb/listenerRule:ListenerRule")
    # the check is not vacuous: the processor has no target group and does not wait for it
    assert not _depends_on(
        _resource(report, SERVICE, "-processor"), "aws:lb/listenerRule:ListenerRule"
    )


@pytest.mark.parametrize("preset", PRESETS)
@pytest.mark.parametrize("role", ["ingest", "processor", "api"])
def test_every_service_waits_for_a_database_instance(
    reports: dict[str, Report], preset: str, role: str
) -> None:
    """An Aurora cluster endpoint exists before any instance accepts connections; tasks that
    start then fail their migration into the deployment circuit breaker."""
    report = reports[preset]
    service = _resource(report, SERVICE, f"-{role}")
    if report.outputs["database_kind"] == "aurora-serverless":
        assert _depends_on(service, "aws:rds/clusterInstance:ClusterInstance")
    else:
        assert _depends_on(service, "aws:rds/instance:Instance")


@pytest.mark.parametrize("preset", PRESETS)
def test_secrets_get_unique_names_so_a_redeploy_after_destroy_works(
    reports: dict[str, Report], preset: str
) -> None:
    """A deleted secret keeps its name for its recovery window (7 days here)."""
    report = reports[preset]
    suffix = report.outputs["environment_suffix"]
    secrets = report.of_type("aws:secretsmanager/secret:Secret")
    # the Redis AUTH token, the server secret, and on IoT stacks the MQTT bridge's identity
    assert len(secrets) == 2 + ("mqtt_bridge_identity_secret_arn" in report.outputs)
    for secret in secrets:
        inputs = secret["inputs"]
        assert "name" not in inputs
        assert inputs["namePrefix"].startswith("plantstream/")
        assert inputs["namePrefix"].endswith(f"-{suffix}-")
        assert inputs["recoveryWindowInDays"] == 7


@pytest.mark.parametrize("preset", PRESETS)
def test_a_destroy_leaves_the_account_wide_api_gateway_logging_role(
    reports: dict[str, Report], preset: str
) -> None:
    report = reports[preset]
    account = _resource(report, "aws:apigateway/account:Account")
    role = _resource(report, "aws:iam/role:Role", "apigw-logs-role")
    policy = _resource(report, "aws:iam/rolePolicy:RolePolicy", "apigw-logs-policy")
    for retained in (account, role, policy):
        assert retained["options"]["retainOnDelete"] is True, retained["name"]
    # the retained role must not block the next deploy's role: a generated name
    assert "name" not in role["inputs"]
    assert role["inputs"]["namePrefix"]


@pytest.mark.parametrize("preset", PRESETS)
def test_engine_versions_pin_the_major_and_let_aws_upgrade_the_minor(
    reports: dict[str, Report], preset: str
) -> None:
    report = reports[preset]
    if report.outputs["database_kind"] == "aurora-serverless":
        cluster = _resource(report, "aws:rds/cluster:Cluster")
        # resolved from the configured major by rds.getEngineVersion (latest offered minor)
        assert cluster["inputs"]["engineVersion"] == "16.9"
        assert "engineVersion" in cluster["options"]["ignoreChanges"]
        for instance in report.of_type("aws:rds/clusterInstance:ClusterInstance"):
            assert instance["inputs"]["autoMinorVersionUpgrade"] is True
            assert "engineVersion" in instance["options"]["ignoreChanges"]
    else:
        instance = _resource(report, "aws:rds/instance:Instance")
        assert "." not in instance["inputs"]["engineVersion"]  # a major prefix
        assert instance["inputs"]["autoMinorVersionUpgrade"] is True


@pytest.mark.parametrize("preset", PRESETS)
def test_the_flow_log_role_can_find_its_log_group(reports: dict[str, Report], preset: str) -> None:
    policy = _resource(reports[preset], "aws:iam/rolePolicy:RolePolicy", "flow-logs-policy")
    doc = json.loads(policy["inputs"]["policy"])
    actions = {a for s in doc["Statement"] for a in s["Action"]}
    assert {"logs:DescribeLogGroups", "logs:CreateLogStream", "logs:PutLogEvents"} <= actions
