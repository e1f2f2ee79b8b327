"""Each compute and identity control (ECS, ECR, IAM, Lambda) refuses a resource that breaks it:
one row per way of breaking it, on the compliant baseline."""

from __future__ import annotations

import json

import pytest
from test_policy_baseline import (
    FailTable,
    Graph,
    Mutation,
    cases,
    change,
    check_refusal,
    container_change,
    container_drop,
    drop,
    props,
    refusing,
    remove,
    set_containers,
)

pytestmark = pytest.mark.infra

URL_WITH_PASSWORD = "postgresql://u:pw@db:5432/d"  # pragma: allowlist secret


def _network_config(**values: object) -> Mutation:
    def mutate(graph: Graph) -> str:
        props(graph, "service")["networkConfiguration"].update(values)
        return "service"

    return mutate


def _subnets(*ids: str) -> Mutation:
    return _network_config(subnets=list(ids))


def _igw_route_in_private_table(graph: Graph) -> str:
    # the subnet keeps its friendly name and tags; only its route table changes
    props(graph, "rtb-private")["routes"] = [
        {"cidrBlock": "0.0.0.0/0", "gatewayId": "igw-main"},
    ]
    return "service"


def _role_policy(*statements: dict[str, object]) -> Mutation:
    doc = json.dumps({"Version": "2012-10-17", "Statement": list(statements)})
    return change("role-policy", policy=doc)


def _allow(action: object, resource: object = "arn:aws:kinesis:us-east-1:1:stream/s") -> Mutation:
    return _role_policy({"Sid": "S", "Effect": "Allow", "Action": action, "Resource": resource})


def _no_containers(graph: Graph) -> str:
    set_containers(graph, [])
    return "task"


FAILS: FailTable = {
    "ecs-2-no-public-ip": {"public-ip": _network_config(assignPublicIp=True)},
    "ecs-private-subnets": {
        "public-subnets": _subnets("subnet-public-a", "subnet-public-b"),
        "one-public-subnet": _subnets("subnet-private-a", "subnet-public-b"),
        "private-table-routes-to-igw": _igw_route_in_private_table,
        "igw-route-resource-on-private-table": refusing(
            "service",
            change("route-private-default", natGatewayId=None, gatewayId="igw-main"),
        ),
        "no-route-table-association": remove("rta-private-b", "service"),
        "subnet-outside-the-stack": _subnets("subnet-0123456789abcdef0"),
        "no-subnets": _subnets(),
    },
    "ecs-3-no-host-pid": {"host-pid": change("task", pidMode="host")},
    "ecs-4-non-privileged": {"privileged": container_change(privileged=True)},
    "ecs-5-read-only-root": {
        "writable-root": container_change(readonlyRootFilesystem=False),
        "no-containers": _no_containers,
    },
    "ecs-8-no-secrets-in-env": {
        "password-in-env": container_change(environment=[{"name": "DB_PASSWORD", "value": "x"}]),
        "password-in-url": container_change(
            environment=[{"name": "DATABASE_URL", "value": URL_WITH_PASSWORD}]
        ),
    },
    "ecs-9-logging": {"no-log-config": container_drop("logConfiguration")},
    "ecs-10-fargate-latest-platform": {"pinned": change("service", platformVersion="1.3.0")},
    "ecs-12-container-insights": {
        "disabled": change(
            "cluster", settings=[{"name": "containerInsights", "value": "disabled"}]
        ),
        "unset": drop("cluster", "settings"),
    },
    "ecs-20-non-root-user": {
        "root": container_change(user="root"),
        "uid-0": container_change(user="0:0"),
        "image-default": container_drop("user"),
    },
    "plantstream-real-image": {
        "nginx": container_change(image="public.ecr.aws/docker/library/nginx:1.27"),
        "latest": container_change(image="1.dkr.ecr.us-east-1.amazonaws.com/plantstream:latest"),
        "untagged": container_change(image="1.dkr.ecr.us-east-1.amazonaws.com/plantstream"),
    },
    "ecr-1-scan-on-push": {"off": change("repo", imageScanningConfiguration={"scanOnPush": False})},
    "ecr-2-immutable-tags": {"mutable": change("repo", imageTagMutability="MUTABLE")},
    "ecr-kms": {
        "aes256": change("repo", encryptionConfigurations=[{"encryptionType": "AES256"}]),
        "aws-managed-alias": change(
            "repo", encryptionConfigurations=[{"encryptionType": "KMS", "kmsKey": "alias/aws/ecr"}]
        ),
    },
    "ecr-3-lifecycle-policy": {
        "none": remove("repo-lifecycle", "repo"),
        "for-another-repo": refusing("repo", change("repo-lifecycle", repository="other-dev")),
    },
    "iam-1-no-wildcard-permissions": {
        "star-action": _allow("*"),
        "service-star": _allow(["kinesis:*"]),
        "star-resource": _allow(["s3:GetObject"], "*"),
        "not-action": _role_policy(
            {"Sid": "N", "Effect": "Allow", "NotAction": "iam:*", "Resource": "arn:x"}
        ),
        "not-json": change("role-policy", policy="not a policy"),
    },
    "iam-no-broad-managed-policies": {
        "admin": change("role-attachment", policyArn="arn:aws:iam::aws:policy/AdministratorAccess"),
        "power-user": change(
            "role-attachment", policyArn="arn:aws:iam::aws:policy/PowerUserAccess"
        ),
    },
    "lambda-2-supported-runtime": {
        "python3.8": change("rotation-fn", runtime="python3.8"),
        "python3.9": change("rotation-fn", runtime="python3.9"),
        "nodejs16.x": change("rotation-fn", runtime="nodejs16.x"),
        "go1.x": change("rotation-fn", runtime="go1.x"),
        "unknown": change("rotation-fn", runtime="cobol85"),
        "unset": drop("rotation-fn", "runtime"),
    },
}


@pytest.mark.parametrize(("control", "mutate"), cases(FAILS))
def test_compute_control_refuses_the_broken_resource(control: str, mutate: Mutation) -> None:
    check_refusal(control, mutate)
