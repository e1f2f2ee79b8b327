"""The environment contract: every variable and secret a task definition passes is a
``Settings`` field, every setting a role needs is passed, and the values validate."""

from __future__ import annotations

import json
from typing import Any

import pytest
from infra_helpers import PRESETS, Report

from plantstream.settings import ENV_PREFIX, Settings

pytestmark = pytest.mark.infra

ROLES = ("ingest", "processor", "api", "bridge")
_COMMON = {
    "stream",
    "kinesis_stream_name",
    "aws_region",
    "database_url",
    "db_secret_arn",
    "database_password",
    "redis_url",
    "redis_auth_secret_arn",
    "redis_password",
}
_WEB = {
    "host",
    "port",
    "forwarded_allow_ips",
    "connection_cap_exempt_ips",
    "server_secret",
    "server_secret_previous",
}
# What each role's code reads to run on AWS (runtime/, local/services.py).
NEEDS = {
    "ingest": _COMMON | _WEB,
    "processor": _COMMON,
    "api": _COMMON | _WEB | {"api_key_kms_key_id"},
    # the MQTT bridge on AWS IoT Core: mutual TLS, so no password (docs/aws-iot.md)
    "bridge": _COMMON
    | {
        "mqtt_url",
        "mqtt_client_id",
        "mqtt_username",
        "mqtt_ca_file",
        "mqtt_cert_pem",
        "mqtt_key_pem",
        "mqtt_share_group",
        "sparkplug_host_id",
    },
}


def _field_of(env_name: str) -> str | None:
    for field, info in Settings.model_fields.items():
        alias = info.validation_alias if isinstance(info.validation_alias, str) else None
        if env_name == (alias or ENV_PREFIX + field.upper()):
            return field
    return None


def _container(report: Report, role: str) -> dict[str, Any]:
    inputs = report.one("aws:ecs/taskDefinition:TaskDefinition", f"-{role}-task")
    (container,) = json.loads(inputs["containerDefinitions"])
    return container


@pytest.mark.parametrize("preset", PRESETS)
@pytest.mark.parametrize("role", ROLES)
def test_every_passed_name_is_a_setting_and_every_needed_setting_is_passed(
    reports: dict[str, Report], preset: str, role: str
) -> None:
    container = _container(reports[preset], role)
    names = [e["name"] for e in container["environment"]] + [
        s["name"] for s in container["secrets"]
    ]
    assert len(names) == len(set(names))
    unknown = [n for n in names if _field_of(n) is None]
    assert unknown == []
    passed = {_field_of(n) for n in names}
    assert NEEDS[role] - passed == set()
    assert "PLANTSTREAM_ROLE" not in names


@pytest.mark.parametrize("role", ROLES)
def test_the_passed_values_make_valid_settings(
    reports: dict[str, Report], role: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    container = _container(reports["manufacturing-eu-west-2"], role)
    for entry in container["environment"]:
        monkeypatch.setenv(entry["name"], str(entry["value"]))
    for entry in container["secrets"]:  # ECS injects the secret's value; any string will do
        monkeypatch.setenv(entry["name"], "injected-by-ecs")
    settings = Settings()
    assert settings.stream == "kinesis"
    assert (
        settings.kinesis_stream_name
        == reports["manufacturing-eu-west-2"].outputs["kinesis_stream_name"]
    )
    assert settings.aws_region == "eu-west-2"


@pytest.mark.parametrize("preset", PRESETS)
def test_web_roles_get_the_previous_server_secret_version(
    reports: dict[str, Report], preset: str
) -> None:
    """ECS valueFrom ``<secret ARN>:<json-key>:<version-stage>:<version-id>``: the whole
    secret at stage AWSPREVIOUS, which the stack creates before any rotation."""
    report = reports[preset]
    arn = report.outputs["server_secret_arn"]
    for role in ("ingest", "api"):
        injected = {s["name"]: s["valueFrom"] for s in _container(report, role)["secrets"]}
        assert injected["PLANTSTREAM_SERVER_SECRET"] == arn
        assert injected["PLANTSTREAM_SERVER_SECRET_PREVIOUS"] == f"{arn}::AWSPREVIOUS:"
        assert len(injected["PLANTSTREAM_SERVER_SECRET_PREVIOUS"].split(":")) == 10
    processor = {s["name"] for s in _container(report, "processor")["secrets"]}
    assert not {"PLANTSTREAM_SERVER_SECRET", "PLANTSTREAM_SERVER_SECRET_PREVIOUS"} & processor
    versions = [
        r
        for r in report.of_type("aws:secretsmanager/secretVersion:SecretVersion")
        if "server-secret" in r["name"]
    ]
    assert len(versions) == 2  # the second put leaves the first at AWSPREVIOUS


def test_an_unknown_setting_name_fails_the_program() -> None:
    from plantstream_infra.environment import env_name, environment

    assert env_name("aws_region") == "AWS_REGION"
    assert environment({"stream": "kinesis"}) == [
        {"name": "PLANTSTREAM_STREAM", "value": "kinesis"}
    ]
    with pytest.raises(KeyError):
        env_name("role")


@pytest.mark.parametrize("preset", PRESETS)
def test_the_processor_runs_detection_in_a_child_only_with_a_core_for_it(
    reports: dict[str, Report], preset: str
) -> None:
    """A task of less than one vCPU gains nothing from a second process, only its memory:
    the stack says which way the processor runs detection, by its task size."""
    report = reports[preset]
    inputs = report.one("aws:ecs/taskDefinition:TaskDefinition", "-processor-task")
    env = {e["name"]: e["value"] for e in _container(report, "processor")["environment"]}
    wanted = "true" if int(inputs["cpu"]) >= 1024 else "false"
    assert env["PLANTSTREAM_DETECTION_PROCESS"] == wanted
    assert Settings.model_validate({"detection_process": wanted}).detection_process is (
        wanted == "true"
    )
