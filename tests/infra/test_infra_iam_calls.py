"""IAM matches the calls: what each role's code asks AWS (recorded on a moto server) is allowed
by that role's task policy, and the policy allows nothing the code never asks for.

The calls are recorded from the app's own code paths over real HTTP (botocore events), with
the names and ARNs each task definition passes; each recorded identifier is then translated
to the stack's ARN for the same resource and evaluated against the role's inline policy.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from aws_calls import Call, CallRecorder, allows, granted_actions, implied, needed_actions
from fixtures.kinesis import MOTO_REGION
from infra_helpers import Report

from plantstream.aws.keystore import store_key
from plantstream.aws.secrets import CredentialSource
from plantstream.model import Reading
from plantstream.stream.kinesis import KinesisStream, create_stream, kinesis_client
from plantstream.stream.records import pack_readings

pytestmark = [pytest.mark.infra, pytest.mark.integration]

# The MQTT bridge (iot_bridge.py) puts readings through the same ingest path as the HTTP
# ingest; its MQTT traffic to IoT Core is authorized by the IoT policy on its certificate (not
# IAM, and moto has no MQTT broker), see tests/infra/test_infra_iot.py for that policy.
ROLES = ("ingest", "processor", "api", "bridge")
# Actions a role may hold although the app never names them, and why.
REASONS: dict[str, dict[str, str]] = {role: {} for role in ROLES}

PW = "pw-1"  # pragma: allowlist secret (moto's secret in the test)


def _env(report: Report, role: str) -> dict[str, str]:
    inputs = report.one("aws:ecs/taskDefinition:TaskDefinition", f"-{role}-task")
    (container,) = json.loads(inputs["containerDefinitions"])
    return {e["name"]: e["value"] for e in container["environment"]}


def _policy(report: Report, role: str) -> dict[str, Any]:
    return json.loads(report.one("aws:iam/rolePolicy:RolePolicy", f"ecs-task-{role}")["policy"])


def _drive(role: str, env: dict[str, str], endpoint: str, recorder: CallRecorder) -> dict[str, str]:
    """Run what a task of ``role`` does against AWS; return moto id -> the stack's ARN."""
    session = recorder.session(MOTO_REGION)
    sm = session.client("secretsmanager", endpoint_url=endpoint)
    stack_ids: dict[str, str] = {}
    for key, value in (
        ("PLANTSTREAM_DB_SECRET_ARN", json.dumps({"username": "dbadmin", "password": PW})),
        ("PLANTSTREAM_REDIS_AUTH_SECRET_ARN", "token-1"),
    ):
        name = f"{role}-{key.lower()}-{env[key].rsplit(':', 1)[-1]}"[:60].replace("!", "-")
        try:
            arn = sm.create_secret(Name=name, SecretString=value)["ARN"]
        except sm.exceptions.ResourceExistsException:
            arn = sm.describe_secret(SecretId=name)["ARN"]
        stack_ids[arn] = env[key]
    recorder.calls.clear()  # the set-up above is the test's, not the app's

    # Every role: resolve_endpoints() reads both credentials (and re-reads them as they rotate).
    db_arn, redis_arn = list(stack_ids)
    CredentialSource("postgresql://dbadmin@db:5432/x", secret_arn=db_arn, client=sm)()
    CredentialSource("rediss://r:6379/0", secret_arn=redis_arn, client=sm, json_secret=False)()

    client = kinesis_client(MOTO_REGION, endpoint, session=session)
    name = env["PLANTSTREAM_KINESIS_STREAM_NAME"]
    setup = kinesis_client(MOTO_REGION, endpoint, session=CallRecorder().session(MOTO_REGION))
    if name not in setup.list_streams()["StreamNames"]:
        create_stream(setup, name, 2)
    stream = KinesisStream(client, name)
    shards = stream.list_shards()  # /readyz in ingest and api (api/health.py), leases in processor
    if role in ("ingest", "bridge"):
        readings = [
            Reading(f"dev-{i}", "temp", 1_700_000_000_000_000 + i, 20.0, 0) for i in range(3)
        ]
        stream.put(pack_readings("plant-1", 1_700_000_000_000_000, readings))
    elif role == "processor":
        for shard in shards:
            stream.read(shard.shard_id, None, 100)
    else:  # `plantstream keys create --secret NAME` runs on the api task definition
        for attempt in (1, 2):  # the second finds the secret and writes a new version
            store_key(
                sm,
                "plantstream/api-keys/line-3",
                f"psk_test_{attempt}",
                kms_key_id=env["PLANTSTREAM_API_KEY_KMS_KEY_ID"],
                description="test key",
            )
    return stack_ids


def _authorizations(report: Report, recorder: CallRecorder, ids: dict[str, str]) -> list[Call]:
    """The recorded calls as IAM sees them on the stack, plus what AWS does on their behalf."""
    outputs = report.outputs
    region, account = outputs["region"], outputs["kinesis_stream_arn"].split(":")[4]
    keys = {
        "stream": report.one("aws:kinesis/stream:Stream")["kmsKeyId"],
        "secrets": report.one("aws:secretsmanager/secret:Secret", "redis-auth")["kmsKeyId"],
    }
    out: list[Call] = []
    for action, params in recorder.calls:
        if action.startswith("kinesis:"):
            resource = outputs["kinesis_stream_arn"]
        else:
            secret = str(params.get("SecretId") or params.get("Name"))
            resource = ids.get(secret) or (
                f"arn:aws:secretsmanager:{region}:{account}:secret:{secret}-AbCdEf"
            )
        tags = tuple((t["Key"], t["Value"]) for t in params.get("Tags", []))
        call = Call(action, resource, tags=tags)
        out += [call, *implied(call, params, keys)]
    return out


@pytest.fixture(scope="module")
def recorded(reports: dict[str, Report], moto_endpoint: str) -> Callable[[str, str], list[Call]]:
    cache: dict[tuple[str, str], list[Call]] = {}

    def get(preset: str, role: str) -> list[Call]:
        if (preset, role) not in cache:
            report = reports[preset]
            recorder = CallRecorder()
            ids = _drive(role, _env(report, role), moto_endpoint, recorder)
            cache[(preset, role)] = _authorizations(report, recorder, ids)
        return cache[(preset, role)]

    return get


@pytest.mark.parametrize("preset", ["iiot-sa-east-1", "fedramp-moderate"])
@pytest.mark.parametrize("role", ROLES)
def test_every_call_a_role_makes_is_allowed_by_its_task_role(
    reports: dict[str, Report], recorded: Callable[[str, str], list[Call]], preset: str, role: str
) -> None:
    calls = recorded(preset, role)
    assert "kinesis:ListShards" in needed_actions(calls)
    policy = _policy(reports[preset], role)
    denied = [c for c in calls if not allows(policy, c)]
    assert denied == []


@pytest.mark.parametrize("preset", ["iiot-sa-east-1", "fedramp-moderate"])
@pytest.mark.parametrize("role", ROLES)
def test_no_task_role_allows_what_its_code_never_calls(
    reports: dict[str, Report], recorded: Callable[[str, str], list[Call]], preset: str, role: str
) -> None:
    unused = granted_actions(_policy(reports[preset], role)) - needed_actions(
        recorded(preset, role)
    )
    assert unused - set(REASONS[role]) == set()


def test_the_evaluator_refuses_what_the_old_api_policy_lacked(reports: dict[str, Report]) -> None:
    """Finding 3: readiness calls ListShards; DescribeStreamSummary alone does not allow it."""
    stream = reports["iiot-sa-east-1"].outputs["kinesis_stream_arn"]
    old = {
        "Statement": [
            {"Effect": "Allow", "Action": ["kinesis:DescribeStreamSummary"], "Resource": stream}
        ]
    }
    assert not allows(old, Call("kinesis:ListShards", stream))
    tagged = {
        "Statement": [
            {
                "Effect": "Allow",
                "Action": "secretsmanager:CreateSecret",
                "Resource": "arn:aws:secretsmanager:*:*:secret:plantstream/api-keys/*",
                "Condition": {"StringEquals": {"aws:RequestTag/plantstream:purpose": "api-key"}},
            }
        ]
    }
    arn = "arn:aws:secretsmanager:r:1:secret:plantstream/api-keys/a-AbCdEf"
    assert not allows(tagged, Call("secretsmanager:CreateSecret", arn))
    assert allows(
        tagged, Call("secretsmanager:CreateSecret", arn, tags=(("plantstream:purpose", "api-key"),))
    )
