"""Targeted checks per component, on the resources the program actually declares."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from infra_helpers import Report

pytestmark = pytest.mark.infra

SUBNET = "aws:ec2/subnet:Subnet"
ENDPOINT = "aws:ec2/vpcEndpoint:VpcEndpoint"
TASK = "aws:ecs/taskDefinition:TaskDefinition"
ROLE_POLICY = "aws:iam/rolePolicy:RolePolicy"


def _containers(report: Report, role: str) -> dict[str, Any]:
    inputs = report.one(TASK, f"-{role}-task")
    (container,) = json.loads(inputs["containerDefinitions"])
    return container


def _actions(report: Report, policy_name: str) -> dict[str, set[str]]:
    """Sid -> actions of one inline role policy."""
    doc = json.loads(report.one(ROLE_POLICY, policy_name)["policy"])
    return {s["Sid"]: set(s["Action"]) for s in doc["Statement"]}


# ---- network --------------------------------------------------------------------------------


def test_vpc_spans_two_azs_with_pinned_subnets(reports: dict[str, Report]) -> None:
    report = reports["iiot-sa-east-1"]
    assert report.one("aws:ec2/vpc:Vpc")["cidrBlock"] == "10.0.0.0/16"
    subnets = {s["inputs"]["cidrBlock"]: s["inputs"] for s in report.of_type(SUBNET)}
    assert set(subnets) == {"10.0.1.0/24", "10.0.2.0/24", "10.0.11.0/24", "10.0.12.0/24"}
    assert {s["availabilityZone"] for s in subnets.values()} == {"sa-east-1a", "sa-east-1b"}
    assert not any(s.get("mapPublicIpOnLaunch") for s in subnets.values())
    assert {s["tags"]["Tier"] for s in subnets.values()} == {"public", "private"}


def test_endpoints_replace_nat_and_flow_logs_capture_everything(
    reports: dict[str, Report],
) -> None:
    report = reports["iiot-sa-east-1"]
    services = {e["inputs"]["serviceName"]: e["inputs"] for e in report.of_type(ENDPOINT)}
    for svc in ("kinesis-streams", "secretsmanager", "logs", "ecr.api", "ecr.dkr"):
        endpoint = services[f"com.amazonaws.sa-east-1.{svc}"]
        assert endpoint["vpcEndpointType"] == "Interface"
        assert endpoint["privateDnsEnabled"] is True
    # nothing in the tasks calls KMS or STS directly (KMS is used server-side by Kinesis and
    # Secrets Manager, credentials come from the ECS endpoint): no endpoints billed for them
    assert not {"com.amazonaws.sa-east-1.kms", "com.amazonaws.sa-east-1.sts"} & set(services)
    assert services["com.amazonaws.sa-east-1.s3"]["vpcEndpointType"] == "Gateway"
    assert report.of_type("aws:ec2/natGateway:NatGateway") == []
    flow = report.one("aws:ec2/flowLog:FlowLog")
    assert flow["trafficType"] == "ALL"
    assert flow["logDestinationType"] == "cloud-watch-logs"
    default_sg = report.one("aws:ec2/defaultSecurityGroup:DefaultSecurityGroup")
    assert "ingress" not in default_sg
    assert "egress" not in default_sg


def test_nat_per_az_gives_each_private_subnet_its_own_gateway(
    check_with: Callable[..., Report],
) -> None:
    report = check_with("iiot-sa-east-1", {"plantstream:network": {"nat": "per-az"}})
    assert report.code == 0
    assert len(report.of_type("aws:ec2/natGateway:NatGateway")) == 2
    nat_routes = [
        r["inputs"] for r in report.of_type("aws:ec2/route:Route") if "natGatewayId" in r["inputs"]
    ]
    assert len({r["natGatewayId"] for r in nat_routes}) == 2


# ---- keys -----------------------------------------------------------------------------------


def test_one_rotating_key_per_service_with_alias_and_explicit_policy(
    reports: dict[str, Report],
) -> None:
    report = reports["iiot-sa-east-1"]
    keys = report.of_type("aws:kms/key:Key")
    assert {k["name"].rsplit("-", 1)[-1] for k in keys} == {
        "stream",
        "database",
        "cache",
        "secrets",
        "logs",
        "images",
    }
    for key in keys:
        inputs = key["inputs"]
        assert inputs["enableKeyRotation"] is True
        assert inputs["deletionWindowInDays"] == 7
        policy = json.loads(inputs["policy"])
        principals = [s["Principal"] for s in policy["Statement"]]
        assert {"AWS": "arn:aws:iam::123456789012:root"} in principals
        assert "*" not in json.dumps(principals)
    aliases = {a["inputs"]["name"] for a in report.of_type("aws:kms/alias:Alias")}
    assert "alias/plantstream-stream-iiot" in aliases
    logs_policy = json.loads(
        next(k for k in keys if k["name"].endswith("-logs"))["inputs"]["policy"]
    )
    assert any(
        s.get("Principal") == {"Service": "logs.sa-east-1.amazonaws.com"}
        for s in logs_policy["Statement"]
    )


def test_single_key_mode_serves_every_service_from_one_key(reports: dict[str, Report]) -> None:
    report = reports["fedramp-moderate"]
    (key,) = report.of_type("aws:kms/key:Key")
    policy = json.loads(key["inputs"]["policy"])
    via = next(
        s for s in policy["Statement"] if s["Sid"] == "AccountPrincipalsUseKeyThroughServices"
    )["Condition"]["StringEquals"]["kms:ViaService"]
    assert {
        "kinesis.us-east-1.amazonaws.com",
        "rds.us-east-1.amazonaws.com",
        "elasticache.us-east-1.amazonaws.com",
        "secretsmanager.us-east-1.amazonaws.com",
    } <= set(via)
    key_arns = {
        r["inputs"].get("kmsKeyId") for r in report.resources if r["inputs"].get("kmsKeyId")
    }
    assert len(key_arns) == 1


# ---- stream ---------------------------------------------------------------------------------


def test_stream_uses_its_customer_key_not_the_aws_managed_one(
    reports: dict[str, Report],
) -> None:
    report = reports["manufacturing-eu-west-2"]
    stream = report.one("aws:kinesis/stream:Stream")
    assert stream["encryptionType"] == "KMS"
    assert stream["kmsKeyId"].startswith("arn:aws:kms:eu-west-2:")
    assert stream["kmsKeyId"] != "alias/aws/kinesis"
    assert stream["retentionPeriod"] == 24


def test_on_demand_stream_has_no_shard_count(check_with: Callable[..., Report]) -> None:
    report = check_with(
        "secure-pipeline-us-east-1",
        {"plantstream:stream": {"mode": "ON_DEMAND", "retentionHours": 168}},
    )
    stream = report.one("aws:kinesis/stream:Stream")
    assert stream["streamModeDetails"] == {"streamMode": "ON_DEMAND"}
    assert "shardCount" not in stream
    assert report.code == 0


# ---- database -------------------------------------------------------------------------------


def test_aurora_serverless_v2_is_private_encrypted_and_keeps_30_days(
    reports: dict[str, Report],
) -> None:
    report = reports["iiot-sa-east-1"]
    cluster = report.one("aws:rds/cluster:Cluster")
    assert cluster["engine"] == "aurora-postgresql"
    assert cluster["engineVersion"].startswith("16.")
    assert cluster["engineMode"] == "provisioned"
    assert cluster["backupRetentionPeriod"] == 30
    assert cluster["storageEncrypted"] is True
    assert cluster["kmsKeyId"].startswith("arn:aws:kms:")
    assert cluster["masterUsername"] == "dbadmin"
    assert cluster["manageMasterUserPassword"] is True
    assert "masterPassword" not in cluster
    assert cluster["iamDatabaseAuthenticationEnabled"] is True
    assert cluster["skipFinalSnapshot"] is True
    assert cluster["enabledCloudwatchLogsExports"] == ["postgresql"]
    instances = [i["inputs"] for i in report.of_type("aws:rds/clusterInstance:ClusterInstance")]
    assert len(instances) == 2
    assert all(i["instanceClass"] == "db.serverless" for i in instances)
    assert all(i["publiclyAccessible"] is False for i in instances)
    assert {i["availabilityZone"] for i in instances} == {"sa-east-1a", "sa-east-1b"}


@pytest.mark.parametrize(
    "preset", ["manufacturing-eu-west-2", "secure-pipeline-us-east-1", "fedramp-moderate"]
)
def test_rds_instance_alternative_fixes_the_seed_mistakes(
    reports: dict[str, Report],
    preset: str,
) -> None:
    db = reports[preset].one("aws:rds/instance:Instance")
    assert db["engine"] == "postgres"
    assert db["username"] == "dbadmin"
    assert "password" not in db
    assert db["manageMasterUserPassword"] is True
    assert db["backupRetentionPeriod"] == 30
    assert db["publiclyAccessible"] is False
    assert db["storageEncrypted"] is True
    assert db["skipFinalSnapshot"] is True
    assert db["deletionProtection"] is False


def test_master_secret_rotates(reports: dict[str, Report]) -> None:
    report = reports["iiot-sa-east-1"]
    rotations = {
        r["name"]: r["inputs"]
        for r in report.of_type("aws:secretsmanager/secretRotation:SecretRotation")
    }
    master = rotations["database-iiot-master-secret-rotation"]
    assert master["secretId"] == report.outputs["db_secret_arn"]
    assert master["rotationRules"]["automaticallyAfterDays"] <= 90


# ---- cache ----------------------------------------------------------------------------------


def test_redis_is_encrypted_authenticated_and_fails_over(reports: dict[str, Report]) -> None:
    report = reports["iiot-sa-east-1"]
    redis = report.one("aws:elasticache/replicationGroup:ReplicationGroup")
    assert redis["atRestEncryptionEnabled"] is True
    assert redis["kmsKeyId"].startswith("arn:aws:kms:")
    assert redis["transitEncryptionEnabled"] is True
    assert redis["transitEncryptionMode"] == "required"
    assert redis["authToken"] == "[secret]"
    assert redis["automaticFailoverEnabled"] is True
    assert redis["multiAzEnabled"] is True
    assert redis["snapshotRetentionLimit"] >= 1
    assert redis["parameterGroupName"] == "default.redis7"
    assert redis["replicationGroupId"] == "redis-iiot"


def test_cluster_mode_and_valkey_options(check_with: Callable[..., Report]) -> None:
    report = check_with(
        "iiot-sa-east-1",
        {
            "plantstream:cache": {
                "engine": "valkey",
                "engineVersion": "8.0",
                "clusterMode": True,
                "shards": 2,
                "replicasPerShard": 1,
            }
        },
    )
    redis = report.one("aws:elasticache/replicationGroup:ReplicationGroup")
    assert redis["engine"] == "valkey"
    assert redis["parameterGroupName"] == "default.valkey8.cluster.on"
    assert redis["numNodeGroups"] == 2
    assert report.outputs["redis_endpoint"].startswith("clustercfg.")
    memory_alarms = [a for a in report.outputs["alarm_names"] if "redis-memory" in a]
    assert len(memory_alarms) == 4
    assert report.code == 0


def test_auth_token_secret_is_kms_encrypted_and_rotated_by_lambda(
    reports: dict[str, Report],
) -> None:
    report = reports["iiot-sa-east-1"]
    secret = report.one("aws:secretsmanager/secret:Secret", "redis-auth")
    assert secret["kmsKeyId"].startswith("arn:aws:kms:")
    rotation = report.one("aws:secretsmanager/secretRotation:SecretRotation", "redis-auth")
    assert rotation["rotationLambdaArn"].endswith(":function:redis-auth-rotation-iiot")
    assert report.one("aws:lambda/function:Function")["runtime"] == "python3.12"


def test_shared_server_secret_is_injected_and_its_missing_rotation_declared(
    reports: dict[str, Report],
) -> None:
    report = reports["fedramp-moderate"]
    secret = report.one("aws:secretsmanager/secret:Secret", "server-secret")
    assert secret["kmsKeyId"].startswith("arn:aws:kms:")
    injected = {s["name"]: s["valueFrom"] for s in _containers(report, "api")["secrets"]}
    assert injected["PLANTSTREAM_SERVER_SECRET"] == report.outputs["server_secret_arn"]
    advisory = [
        a
        for a in report.results("advisory")
        if "secretsmanager-1-rotation-enabled" in a["message"] and "server-secret" in a["urn"]
    ]
    assert len(advisory) == 1
    assert "invalidate every issued key" in advisory[0]["message"]


# ---- services -------------------------------------------------------------------------------


@pytest.mark.parametrize("role", ["ingest", "processor", "api"])
def test_tasks_are_private_non_root_read_only_with_injected_secrets(
    reports: dict[str, Report],
    role: str,
) -> None:
    report = reports["manufacturing-eu-west-2"]
    container = _containers(report, role)
    assert container["command"] == ["serve", role]
    assert container["user"] == "10001:10001"
    assert container["readonlyRootFilesystem"] is True
    assert container["privileged"] is False
    assert "nginx" not in container["image"]
    assert "@sha256:" in container["image"]
    secrets = {s["name"]: s["valueFrom"] for s in container["secrets"]}
    assert secrets["PLANTSTREAM_DATABASE_PASSWORD"].endswith(":password::")
    env = {e["name"]: e["value"] for e in container["environment"]}
    assert "PASSWORD" not in " ".join(env)
    assert env["PLANTSTREAM_STREAM"] == "kinesis"
    assert env["PLANTSTREAM_REDIS_URL"].startswith("rediss://")
    service = report.one("aws:ecs/service:Service", f"-{role}")
    net = service["networkConfiguration"]
    assert net["assignPublicIp"] is False
    private = {s["name"]: s for s in report.of_type(SUBNET) if "private" in s["name"]}
    assert len(net["subnets"]) == len(private) == 2


def test_task_roles_are_least_privilege(reports: dict[str, Report]) -> None:
    report = reports["iiot-sa-east-1"]
    processor = set().union(*_actions(report, "ecs-task-processor").values())
    ingest = set().union(*_actions(report, "ecs-task-ingest").values())
    api = set().union(*_actions(report, "ecs-task-api").values())
    assert {"kinesis:GetRecords", "kinesis:GetShardIterator"} <= processor
    assert not {a for a in processor if a.startswith("kinesis:Put")}
    # the app batches (PutRecords only); test_infra_iam_calls.py checks the exact sets
    assert "kinesis:PutRecords" in ingest
    assert "kinesis:PutRecord" not in ingest
    assert "kinesis:GetRecords" not in ingest
    assert not {a for a in api if a.startswith(("kinesis:Put", "kinesis:Get"))}
    for name in ("ecs-task-processor", "ecs-task-ingest", "ecs-task-api"):
        doc = json.loads(report.one(ROLE_POLICY, name)["policy"])
        assert all(s["Resource"] != "*" for s in doc["Statement"]), name
    assert report.of_type("aws:iam/rolePolicyAttachment:RolePolicyAttachment") == []


# What store_key() needs (CreateSecret with tags also checks TagResource); nothing to read.
API_KEY_SECRET_ACTIONS = {
    "secretsmanager:CreateSecret",
    "secretsmanager:PutSecretValue",
    "secretsmanager:TagResource",
}


def _statements(report: Report, policy_name: str) -> list[dict[str, Any]]:
    return json.loads(report.one(ROLE_POLICY, policy_name)["policy"])["Statement"]


def _secrets_key_arn(report: Report) -> str:
    arn = report.one("aws:secretsmanager/secret:Secret", "redis-auth")["kmsKeyId"]
    assert arn.startswith("arn:aws:kms:")
    return arn


@pytest.mark.parametrize("preset", ["iiot-sa-east-1", "fedramp-moderate"])
def test_admin_task_role_may_only_write_api_key_secrets(
    reports: dict[str, Report], preset: str
) -> None:
    """`keys create --secret plantstream/api-keys/...` runs on the api task definition: it
    may create/update secrets under that prefix only, tagged, on the secrets key through
    Secrets Manager only, and never read them back."""
    report = reports[preset]
    region = report.outputs["region"]
    account = report.outputs["kinesis_stream_arn"].split(":")[4]
    pattern = f"arn:aws:secretsmanager:{region}:{account}:secret:plantstream/api-keys/*"
    statements = _statements(report, "ecs-task-api")
    on_prefix = [s for s in statements if pattern in json.dumps(s["Resource"])]
    assert all(s["Resource"] == pattern for s in on_prefix)
    assert set().union(*(s["Action"] for s in on_prefix)) == API_KEY_SECRET_ACTIONS
    assert "secretsmanager:GetSecretValue" not in {a for s in on_prefix for a in s["Action"]}
    # the write actions appear nowhere else in the policy
    writes = API_KEY_SECRET_ACTIONS - {"secretsmanager:DescribeSecret"}
    assert all(not writes & set(s["Action"]) for s in statements if s not in on_prefix)
    (create,) = [s for s in on_prefix if "secretsmanager:CreateSecret" in s["Action"]]
    assert create["Action"] == ["secretsmanager:CreateSecret"]
    assert create["Condition"] == {
        "StringEquals": {"aws:RequestTag/plantstream:purpose": "api-key"}
    }
    (kms,) = [s for s in statements if s["Sid"] == "EncryptApiKeySecrets"]
    assert set(kms["Action"]) == {"kms:GenerateDataKey", "kms:Decrypt"}
    assert kms["Resource"] == _secrets_key_arn(report)
    assert kms["Condition"] == {
        "StringEquals": {"kms:ViaService": f"secretsmanager.{region}.amazonaws.com"}
    }
    for other in ("ecs-task-ingest", "ecs-task-processor", "ecs-execution"):
        granted = {a for s in _statements(report, other) for a in s["Action"]}
        assert not writes & granted, other
        assert "plantstream/api-keys" not in report.one(ROLE_POLICY, other)["policy"], other


@pytest.mark.parametrize("preset", ["iiot-sa-east-1", "fedramp-moderate"])
def test_admin_task_knows_the_secrets_key_for_api_keys(
    reports: dict[str, Report], preset: str
) -> None:
    report = reports[preset]
    env = {e["name"]: e["value"] for e in _containers(report, "api")["environment"]}
    assert env["PLANTSTREAM_API_KEY_KMS_KEY_ID"] == _secrets_key_arn(report)
    assert "PLANTSTREAM_API_KEY_KMS_KEY_ID" not in {
        s["name"] for s in _containers(report, "api")["secrets"]
    }
    for role in ("ingest", "processor"):
        names = {e["name"] for e in _containers(report, role)["environment"]}
        assert "PLANTSTREAM_API_KEY_KMS_KEY_ID" not in names, role
    assert report.code == 0


def test_cluster_has_container_insights(reports: dict[str, Report]) -> None:
    cluster = reports["iiot-sa-east-1"].one("aws:ecs/cluster:Cluster")
    assert cluster["settings"] == [{"name": "containerInsights", "value": "enabled"}]


def test_configured_image_skips_the_build_and_the_repository(
    check_with: Callable[..., Report],
) -> None:
    image = "123456789012.dkr.ecr.sa-east-1.amazonaws.com/plantstream:1.2.3"
    report = check_with("iiot-sa-east-1", {"plantstream:image": image})
    assert report.of_type("aws:ecr/repository:Repository") == []
    assert report.of_type("docker-build:index:Image") == []
    assert len(report.of_type("aws:kms/key:Key")) == 5
    assert _containers(report, "api")["image"] == image
    pull = _actions(report, "ecs-execution")["PullImage"]
    assert pull == {
        "ecr:BatchGetImage",
        "ecr:GetDownloadUrlForLayer",
        "ecr:BatchCheckLayerAvailability",
    }
    doc = json.loads(report.one(ROLE_POLICY, "ecs-execution")["policy"])
    (statement,) = [s for s in doc["Statement"] if s["Sid"] == "PullImage"]
    assert statement["Resource"] == "arn:aws:ecr:sa-east-1:123456789012:repository/plantstream"
    assert report.code == 0


# ---- front door -----------------------------------------------------------------------------


def test_without_a_certificate_the_alb_is_internal_only(reports: dict[str, Report]) -> None:
    report = reports["iiot-sa-east-1"]
    assert report.one("aws:lb/loadBalancer:LoadBalancer")["internal"] is True
    assert report.one("aws:lb/listener:Listener")["protocol"] == "HTTP"
    ingress = [
        r["inputs"]
        for r in report.of_type("aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule")
    ]
    assert all(r.get("cidrIpv4") in (None, "10.0.0.0/16") for r in ingress)
    assert report.outputs["api_url"].startswith("http://")


def test_with_a_certificate_only_https_443_is_public(check_with: Callable[..., Report]) -> None:
    cert = "arn:aws:acm:sa-east-1:123456789012:certificate/0000"
    report = check_with("iiot-sa-east-1", {"plantstream:frontDoor": {"certificateArn": cert}})
    assert report.code == 0
    assert report.one("aws:lb/loadBalancer:LoadBalancer")["internal"] is False
    listener = report.one("aws:lb/listener:Listener")
    assert listener["protocol"] == "HTTPS"
    assert listener["sslPolicy"].startswith("ELBSecurityPolicy-TLS13")
    open_rules = [
        r["inputs"]
        for r in report.of_type("aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule")
        if r["inputs"].get("cidrIpv4") == "0.0.0.0/0"
    ]
    assert [(r["fromPort"], r["toPort"]) for r in open_rules] == [(443, 443)]
    assert report.outputs["api_url"].startswith("https://")


@pytest.mark.parametrize("stack", ["iiot-sa-east-1", "fedramp-moderate"])
def test_the_load_balancer_never_serves_metrics(reports: dict[str, Report], stack: str) -> None:
    """/metrics names facilities and their counts: the ALB answers it 404 itself, before any
    rule that forwards to a service."""
    report = reports[stack]
    rules = [r["inputs"] for r in report.of_type("aws:lb/listenerRule:ListenerRule")]
    (metrics,) = [r for r in rules if "/metrics" in r["conditions"][0]["pathPattern"]["values"]]
    assert metrics["priority"] == min(r["priority"] for r in rules)
    (action,) = metrics["actions"]
    assert action["type"] == "fixed-response"
    assert action["fixedResponse"]["statusCode"] == "404"


def test_api_gateway_ingest_writes_to_kinesis_with_iam_auth(reports: dict[str, Report]) -> None:
    report = reports["fedramp-moderate"]
    method = report.one("aws:apigateway/method:Method")
    assert method["httpMethod"] == "POST"
    assert method["authorization"] == "AWS_IAM"
    integration = report.one("aws:apigateway/integration:Integration")
    assert integration["type"] == "AWS"
    assert integration["uri"] == "arn:aws:apigateway:us-east-1:kinesis:action/PutRecord"
    template = integration["requestTemplates"]["application/json"]
    assert '"StreamName": "sensor-data-stream-fedramp"' in template
    stage = report.one("aws:apigateway/stage:Stage")
    assert stage["xrayTracingEnabled"] is True
    assert stage["accessLogSettings"]["destinationArn"].endswith(
        "log-group:/plantstream/apigateway-access-fedramp"
    )
    settings = report.one("aws:apigateway/methodSettings:MethodSettings")["settings"]
    assert settings["dataTraceEnabled"] is False
    put = _actions(report, "apigw-kinesis-put")
    assert put["WriteTheStream"] == {"kinesis:PutRecord", "kinesis:PutRecords"}


# ---- observability --------------------------------------------------------------------------


def test_alarms_cover_lag_errors_capacity_and_memory(reports: dict[str, Report]) -> None:
    aurora = reports["iiot-sa-east-1"].outputs["alarm_names"]
    for key in (
        "kinesis-iterator-age",
        "processor-errors",
        "aurora-capacity",
        "redis-memory-001",
        "redis-memory-002",
    ):
        assert f"alarm-{key}-iiot" in aurora
    instance = reports["fedramp-moderate"].outputs["alarm_names"]
    assert "alarm-postgres-cpu-fedramp" in instance
    assert "alarm-ingest-api-5xx-fedramp" in instance


@pytest.mark.parametrize("preset", ["iiot-sa-east-1", "fedramp-moderate"])
def test_every_log_group_is_kms_encrypted(reports: dict[str, Report], preset: str) -> None:
    groups = reports[preset].of_type("aws:cloudwatch/logGroup:LogGroup")
    assert len(groups) >= 6
    assert all(g["inputs"]["kmsKeyId"].startswith("arn:aws:kms:") for g in groups)
    topic = reports[preset].one("aws:sns/topic:Topic")
    assert topic["kmsMasterKeyId"].startswith("arn:aws:kms:")


# ---- configuration errors -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"plantstream:environmentSuffix": "Bad_Suffix"}, "environmentSuffix"),
        ({"plantstream:deviations": {"kinesis-1-encryption-at-rest": "cheaper"}}, "never waived"),
        ({"plantstream:database": {"masterUsername": "admin"}}, "reserved"),
        ({"plantstream:cache": {"nodez": 2}}, "unknown keys"),
        ({"plantstream:logRetentionDays": 10}, "CloudWatch's periods"),
    ],
)
def test_bad_config_is_refused_with_a_clear_message(
    overrides: dict[str, Any],
    message: str,
) -> None:
    from infra_helpers import run_check

    code, report, stderr = run_check("iiot-sa-east-1", overrides)
    assert code == 2
    assert report is None
    assert message in stderr
