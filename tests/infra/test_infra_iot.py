"""AWS IoT Core under mocks: the registry per facility, the policies' exact statements and what
they allow once IoT Core substitutes the policy variables (a plant-a device never reaches
plant-b), logging, and the bridge service's identity, network and environment."""

from __future__ import annotations

import json
from typing import Any

import pytest
from infra_helpers import PRESETS, Report
from plantstream_infra.iot_policies import (
    DEVICE_MESSAGES,
    NODE_MESSAGES,
    bridge_policies,
    facility_chunks,
)
from plantstream_infra.policies.iot import MAX_POLICY_CHARS, allows, policy_chars
from plantstream_infra.settings import (
    FrontDoorSettings,
    IotSettings,
    SettingsError,
    StackSettings,
)

pytestmark = pytest.mark.infra

POLICY = "aws:iot/policy:Policy"
PRESET = "iiot-sa-east-1"


def _doc(report: Report, role: str) -> dict[str, Any]:
    """The statements of all of a role's documents (``device``: device and device-commands;
    ``bridge``: bridge and bridge-facilities-<n>), as IoT Core unites attached policies."""
    docs = [
        json.loads(p["inputs"]["policy"])
        for p in report.of_type(POLICY)
        if p["name"].split("-", 2)[-1].startswith(f"{role}-")
    ]
    assert docs, role
    return {"Version": "2012-10-17", "Statement": [s for d in docs for s in d["Statement"]]}


def _arn(report: Report, kind: str, path: str) -> str:
    account = report.outputs["kinesis_stream_arn"].split(":")[4]
    return f"arn:aws:iot:{report.outputs['region']}:{account}:{kind}/{path}"


def _device(report: Report, facility: str, node: str) -> dict[str, str]:
    """The connection context IoT Core evaluates for a device's attached certificate."""
    thing = report.outputs["iot_thing_names"][f"{facility}/{node}"]
    return {
        "iot:Connection.Thing.ThingName": thing,
        "iot:Connection.Thing.Attributes[facility]": facility,
        "iot:Connection.Thing.Attributes[node]": node,
        "iot:Connection.Thing.IsAttached": "true",
    }


@pytest.mark.parametrize("preset", PRESETS)
def test_each_facility_has_a_thing_group_and_its_devices_carry_the_policy_attributes(
    reports: dict[str, Report], preset: str
) -> None:
    report = reports[preset]
    suffix = report.outputs["environment_suffix"]
    groups = {
        g["inputs"]["name"]: g["inputs"] for g in report.of_type("aws:iot/thingGroup:ThingGroup")
    }
    assert set(groups) == {f"plantstream-{f}-{suffix}" for f in ("plant-a", "plant-b")}
    things = {t["inputs"]["name"]: t["inputs"] for t in report.of_type("aws:iot/thing:Thing")}
    members = {
        (m["inputs"]["thingName"], m["inputs"]["thingGroupName"])
        for m in report.of_type("aws:iot/thingGroupMembership:ThingGroupMembership")
    }
    for key, name in report.outputs["iot_thing_names"].items():
        facility, node = key.split("/")
        assert name == f"{facility}-{node}-{suffix}"
        assert things[name]["attributes"] == {"facility": facility, "node": node}
        assert (name, f"plantstream-{facility}-{suffix}") in members
    assert len(members) == len(report.outputs["iot_thing_names"])
    assert report.outputs["iot_endpoint"].endswith(
        f"-ats.iot.{report.outputs['region']}.amazonaws.com"
    )


def test_the_device_policy_statements_are_exactly_these(reports: dict[str, Report]) -> None:
    report = reports[PRESET]
    doc = _doc(report, "device")
    prefix = _arn(report, "topic", "")
    facility, node = (
        "${iot:Connection.Thing.Attributes[facility]}",
        "${iot:Connection.Thing.Attributes[node]}",
    )
    by_sid = {s["Sid"]: s for s in doc["Statement"]}
    assert set(by_sid) == {
        "ConnectAsOwnThing",
        "PublishOwnFacilityAndNode",
        "SubscribeOwnCommandsAndHostState",
        "ReceiveOwnCommandsAndHostState",
    }
    assert all(s["Effect"] == "Allow" for s in doc["Statement"])
    assert by_sid["ConnectAsOwnThing"]["Resource"] == [
        _arn(report, "client", "${iot:Connection.Thing.ThingName}")
    ]
    assert by_sid["ConnectAsOwnThing"]["Condition"] == {
        "Bool": {"iot:Connection.Thing.IsAttached": "true"}
    }
    assert by_sid["PublishOwnFacilityAndNode"]["Action"] == ["iot:Publish"]
    assert sorted(by_sid["PublishOwnFacilityAndNode"]["Resource"]) == sorted(
        [f"{prefix}spBv1.0/{facility}/{m}/{node}" for m in NODE_MESSAGES]
        + [f"{prefix}spBv1.0/{facility}/{m}/{node}/*" for m in DEVICE_MESSAGES]
        + [
            f"{prefix}plantstream/v1/{facility}/{node}",
            f"{prefix}plantstream/v1/{facility}/{node}/*",
        ]
    )
    assert sorted(by_sid["ReceiveOwnCommandsAndHostState"]["Resource"]) == sorted(
        [
            f"{prefix}spBv1.0/{facility}/NCMD/{node}",
            f"{prefix}spBv1.0/{facility}/DCMD/{node}/*",
            f"{prefix}spBv1.0/STATE/plantstream",
        ]
    )


def test_a_plant_a_device_reaches_its_own_topics_and_nothing_of_plant_b(
    reports: dict[str, Report],
) -> None:
    report = reports[PRESET]
    doc = _doc(report, "device")
    press = _device(report, "plant-a", "press-1")

    def topic(path: str) -> str:
        return _arn(report, "topic", path)

    own = [
        "spBv1.0/plant-a/NBIRTH/press-1",
        "spBv1.0/plant-a/NDATA/press-1",
        "spBv1.0/plant-a/NDEATH/press-1",
        "spBv1.0/plant-a/DDATA/press-1/spindle",
        "plantstream/v1/plant-a/press-1",
        "plantstream/v1/plant-a/press-1/temperature",
    ]
    for path in own:
        assert allows(doc, "iot:Publish", topic(path), press), path
    foreign = [
        "spBv1.0/plant-b/NDATA/press-1",  # the same node id in another facility
        "spBv1.0/plant-b/NDATA/line-1",
        "spBv1.0/plant-b/DDATA/line-1/x",
        "plantstream/v1/plant-b/line-1",
        "spBv1.0/plant-a/NDATA/oven-2",  # another device of its own facility
        "spBv1.0/plant-a/NCMD/press-1",  # commands come from the host only
        "spBv1.0/STATE/plantstream",  # a device never speaks for the host
        "spBv1.0/plant-a",
        "$aws/things/plant-a-press-1/shadow/update",
    ]
    for path in foreign:
        assert not allows(doc, "iot:Publish", topic(path), press), path
    assert allows(doc, "iot:Receive", topic("spBv1.0/plant-a/NCMD/press-1"), press)
    assert allows(doc, "iot:Receive", topic("spBv1.0/STATE/plantstream"), press)
    assert not allows(doc, "iot:Receive", topic("spBv1.0/plant-b/NCMD/line-1"), press)
    assert not allows(doc, "iot:Receive", topic("spBv1.0/plant-b/NDATA/line-1"), press)
    tfilter = _arn(report, "topicfilter", "spBv1.0/plant-a/DCMD/press-1/+")
    assert allows(doc, "iot:Subscribe", tfilter, press)
    assert not allows(doc, "iot:Subscribe", _arn(report, "topicfilter", "spBv1.0/#"), press)
    assert not allows(doc, "iot:Subscribe", _arn(report, "topicfilter", "spBv1.0/plant-b/#"), press)
    # the plant-b device is confined the same way, by the same document
    line = _device(report, "plant-b", "line-1")
    assert allows(doc, "iot:Publish", topic("spBv1.0/plant-b/NDATA/line-1"), line)
    assert not allows(doc, "iot:Publish", topic("spBv1.0/plant-a/NDATA/press-1"), line)


def test_a_device_connects_only_as_its_own_attached_thing(reports: dict[str, Report]) -> None:
    report = reports[PRESET]
    doc = _doc(report, "device")
    press = _device(report, "plant-a", "press-1")
    own = _arn(report, "client", press["iot:Connection.Thing.ThingName"])
    assert allows(doc, "iot:Connect", own, press)
    assert not allows(doc, "iot:Connect", _arn(report, "client", "plant-b-line-1-iiot"), press)
    assert not allows(
        doc, "iot:Connect", own, {**press, "iot:Connection.Thing.IsAttached": "false"}
    )
    # a certificate without the facility attribute resolves no topic: nothing is allowed
    bare = {k: v for k, v in press.items() if "facility" not in k}
    assert not allows(
        doc, "iot:Publish", _arn(report, "topic", "spBv1.0/plant-a/NDATA/press-1"), bare
    )


def test_the_bridge_receives_and_commands_only_the_served_facilities(
    reports: dict[str, Report],
) -> None:
    report = reports[PRESET]
    doc = _doc(report, "bridge")
    suffix = report.outputs["environment_suffix"]
    ctx: dict[str, str] = {}
    client = f"plantstream-bridge-{suffix}"
    assert allows(doc, "iot:Connect", _arn(report, "client", client), ctx)
    assert allows(doc, "iot:Connect", _arn(report, "client", f"{client}-2"), ctx)
    assert not allows(doc, "iot:Connect", _arn(report, "client", "plant-a-press-1-iiot"), ctx)
    for tfilter in ("$share/plantstream/spBv1.0/#", "$share/plantstream/plantstream/v1/plant-a/#"):
        assert allows(doc, "iot:Subscribe", _arn(report, "topicfilter", tfilter), ctx)
    assert not allows(doc, "iot:Subscribe", _arn(report, "topicfilter", "spBv1.0/#"), ctx)
    assert allows(doc, "iot:Receive", _arn(report, "topic", "spBv1.0/plant-a/DDATA/press-1/x"), ctx)
    assert allows(doc, "iot:Receive", _arn(report, "topic", "plantstream/v1/plant-b/line-1"), ctx)
    # another environment's facility in the same account is never delivered to this bridge
    assert not allows(doc, "iot:Receive", _arn(report, "topic", "spBv1.0/plant-z/NDATA/n"), ctx)
    assert allows(doc, "iot:Publish", _arn(report, "topic", "spBv1.0/plant-a/NCMD/press-1"), ctx)
    assert not allows(
        doc, "iot:Publish", _arn(report, "topic", "spBv1.0/plant-a/NDATA/press-1"), ctx
    )
    assert not allows(doc, "iot:Publish", _arn(report, "topic", "spBv1.0/plant-z/NCMD/n"), ctx)
    state = _arn(report, "topic", "spBv1.0/STATE/plantstream")
    assert allows(doc, "iot:RetainPublish", state, ctx)
    assert not allows(
        doc, "iot:RetainPublish", _arn(report, "topic", "spBv1.0/plant-a/NCMD/x"), ctx
    )


@pytest.mark.parametrize("preset", PRESETS)
def test_no_iot_policy_uses_a_wildcard_action_or_resource(
    reports: dict[str, Report], preset: str
) -> None:
    named = {"iot:Connect", "iot:Publish", "iot:RetainPublish", "iot:Subscribe", "iot:Receive"}
    for policy in reports[preset].of_type(POLICY):
        for stmt in json.loads(policy["inputs"]["policy"])["Statement"]:
            assert set(stmt["Action"]) <= named, stmt
            assert "*" not in stmt["Resource"], stmt
            paths = [r.split(":", 5)[-1].split("/", 1)[1] for r in stmt["Resource"]]
            assert not {"*", "#"} & set(paths), stmt


@pytest.mark.parametrize("preset", PRESETS)
def test_iot_logs_go_to_cloudwatch_on_the_logs_key_and_outlive_a_destroy(
    reports: dict[str, Report], preset: str
) -> None:
    report = reports[preset]
    (options,) = report.of_type("aws:iot/loggingOptions:LoggingOptions")
    assert options["inputs"]["defaultLogLevel"] in ("WARN", "INFO")
    assert options["inputs"]["disableAllLogs"] is False
    assert options["options"]["retainOnDelete"] is True
    (group,) = [
        g
        for g in report.of_type("aws:cloudwatch/logGroup:LogGroup")
        if g["inputs"]["name"] == "AWSIotLogsV2"
    ]
    assert group["options"]["retainOnDelete"] is True  # one per account and region
    flow_logs = report.one("aws:cloudwatch/logGroup:LogGroup", "flow-logs")
    assert group["inputs"]["kmsKeyId"] == flow_logs["kmsKeyId"]  # the logs key
    role_policy = json.loads(report.one("aws:iam/rolePolicy:RolePolicy", "-logging")["policy"])
    (stmt,) = role_policy["Statement"]
    assert all(r.startswith("arn:aws:logs:") and "AWSIotLogsV2" in r for r in stmt["Resource"])


@pytest.mark.parametrize("preset", PRESETS)
def test_the_bridge_runs_serve_mqtt_with_its_certificate_from_secrets_manager(
    reports: dict[str, Report], preset: str
) -> None:
    report = reports[preset]
    task = report.one("aws:ecs/taskDefinition:TaskDefinition", "-bridge-task")
    (container,) = json.loads(task["containerDefinitions"])
    assert container["command"] == ["serve", "mqtt"]
    ingest = report.one("aws:ecs/taskDefinition:TaskDefinition", "-ingest-task")
    assert container["image"] == json.loads(ingest["containerDefinitions"])[0]["image"]
    env = {e["name"]: e["value"] for e in container["environment"]}
    assert env["PLANTSTREAM_MQTT_URL"] == f"mqtts://{report.outputs['iot_endpoint']}:8883"
    assert (
        env["PLANTSTREAM_MQTT_CLIENT_ID"]
        == f"plantstream-bridge-{report.outputs['environment_suffix']}"
    )
    assert env["PLANTSTREAM_MQTT_SHARE_GROUP"] == "plantstream"
    assert env["PLANTSTREAM_SPARKPLUG_HOST_ID"] == "plantstream"
    secret_arn = report.outputs["mqtt_bridge_identity_secret_arn"]
    injected = {s["name"]: s["valueFrom"] for s in container["secrets"]}
    assert injected["PLANTSTREAM_MQTT_CERT_PEM"] == f"{secret_arn}:cert_pem::"
    assert injected["PLANTSTREAM_MQTT_KEY_PEM"] == f"{secret_arn}:key_pem::"
    assert "PLANTSTREAM_MQTT_PASSWORD" not in injected | env
    identity = report.one("aws:secretsmanager/secret:Secret", "bridge-identity")
    redis = report.one("aws:secretsmanager/secret:Secret", "redis-auth")
    assert identity["kmsKeyId"] == redis["kmsKeyId"]  # the stack's secrets key
    execution = json.loads(
        report.one("aws:iam/rolePolicy:RolePolicy", "ecs-bridge-execution")["policy"]
    )
    inject = next(s for s in execution["Statement"] if s["Sid"] == "InjectSecrets")
    assert secret_arn in inject["Resource"]
    (advisory,) = [
        a
        for a in report.results("advisory")
        if "secretsmanager-1-rotation-enabled" in a["message"] and "bridge-identity" in a["urn"]
    ]
    assert "issuing a new certificate" in advisory["message"]  # declared, with its reason
    suffix = report.outputs["environment_suffix"]
    cert = report.one("aws:iot/thingPrincipalAttachment:ThingPrincipalAttachment")["principal"]
    on_cert = {
        a["inputs"]["policy"]
        for a in report.of_type("aws:iot/policyAttachment:PolicyAttachment")
        if a["inputs"]["target"] == cert
    }
    assert on_cert == {f"iot-bridge-{suffix}", f"iot-bridge-facilities-1-{suffix}"}


@pytest.mark.parametrize("preset", PRESETS)
def test_the_bridge_reaches_iot_core_over_8883_through_its_vpc_endpoint_only(
    reports: dict[str, Report], preset: str
) -> None:
    report = reports[preset]
    service = report.one("aws:ecs/service:Service", "bridge-service")
    net = service["networkConfiguration"]
    assert net["assignPublicIp"] is False
    assert net["subnets"] == report.outputs["private_subnet_ids"]
    (sg,) = net["securityGroups"]
    egress = [
        r
        for r in report.of_type("aws:vpc/securityGroupEgressRule:SecurityGroupEgressRule")
        if r["inputs"]["securityGroupId"] == sg
    ]
    ingress = [
        r
        for r in report.of_type("aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule")
        if r["inputs"]["securityGroupId"] == sg
    ]
    assert egress
    assert ingress == []  # nothing connects to the bridge
    ports = sorted(int(r["inputs"]["fromPort"]) for r in egress)
    assert ports == sorted([8883, 443, 443, 5432, 6379])
    assert all("0.0.0.0/0" not in json.dumps(r["inputs"]) for r in egress)
    (mqtts,) = [r["inputs"] for r in egress if int(r["inputs"]["fromPort"]) == 8883]
    endpoint = report.one("aws:ec2/vpcEndpoint:VpcEndpoint", "iot-data-endpoint")
    assert endpoint["serviceName"] == f"com.amazonaws.{report.outputs['region']}.iot.data"
    assert mqtts["referencedSecurityGroupId"] == endpoint["securityGroupIds"][0]
    zone = report.one("aws:route53/zone:Zone")
    record = report.one("aws:route53/record:Record")
    assert zone["name"] == record["name"] == report.outputs["iot_endpoint"]
    assert zone["vpcs"] == [{"vpcId": report.outputs["vpc_id"]}]


@pytest.mark.parametrize(
    ("iot", "key"),
    [
        (IotSettings(facilities={"plant/a": ()}), "iot.facilities.plant/a"),
        (IotSettings(facilities={"plant-#": ()}), "iot.facilities.plant-#"),
        (IotSettings(facilities={"plant-a": ("press+1",)}), "iot.facilities.plant-a"),
        (IotSettings(facilities={"a": ()}, log_level="DISABLED"), "iot.logLevel"),  # type: ignore[arg-type]
        (IotSettings(facilities={"a": ()}, share_group="*"), "iot.shareGroup"),
        (IotSettings(facilities={"a": ()}, bridge_count=0), "iot.bridgeCount"),
    ],
)
def test_a_topic_breaking_or_unlogged_iot_config_is_refused_with_its_key(
    iot: IotSettings, key: str
) -> None:
    settings = StackSettings(
        project="plantstream",
        preset="t",
        environment_suffix="t",
        region="us-east-1",
        front_door=FrontDoorSettings(api_gateway=True),
        iot=iot,
    )
    with pytest.raises(SettingsError, match=f"plantstream:{key}"):
        settings.validate()


@pytest.mark.parametrize("preset", PRESETS)
def test_every_facility_group_carries_both_device_policies_and_each_fits_iot_core(
    reports: dict[str, Report], preset: str
) -> None:
    report = reports[preset]
    suffix = report.outputs["environment_suffix"]
    names = set(report.outputs["iot_device_policy_names"])
    assert names == {f"iot-device-{suffix}", f"iot-device-commands-{suffix}"}
    groups = {
        g["state"]["arn"]: g["inputs"]["name"]
        for g in report.of_type("aws:iot/thingGroup:ThingGroup")
    }
    attached: dict[str, set[str]] = {}
    for a in report.of_type("aws:iot/policyAttachment:PolicyAttachment"):
        if a["inputs"]["target"] in groups:
            attached.setdefault(groups[a["inputs"]["target"]], set()).add(a["inputs"]["policy"])
    assert attached == dict.fromkeys(groups.values(), names)
    for policy in report.of_type(POLICY):
        assert policy_chars(policy["inputs"]["policy"]) <= MAX_POLICY_CHARS, policy["name"]


def test_many_facilities_split_over_bridge_documents_that_each_fit() -> None:
    facilities = [f"facility-{n:02d}-{'x' * 20}" for n in range(30)]
    chunks = facility_chunks(facilities, region="ap-southeast-2", share_group="plantstream")
    assert len(chunks) > 1
    assert sorted(f for c in chunks for f in c) == sorted(facilities)
    docs = bridge_policies(
        arn_prefix="arn:aws:iot:ap-southeast-2:123456789012:",
        client_id="plantstream-bridge-x",
        chunks=chunks,
        share_group="plantstream",
        host_id="plantstream",
    )
    assert len(docs) == len(chunks) + 1
    assert all(policy_chars(d) <= MAX_POLICY_CHARS for d in docs.values())
    every = {"Statement": [s for d in docs.values() for s in d["Statement"]]}
    for facility in facilities:
        topic = f"arn:aws:iot:ap-southeast-2:123456789012:topic/spBv1.0/{facility}/NDATA/n"
        assert allows(every, "iot:Receive", topic, {})
