"""Controls for compute and identity: ECS Fargate, ECR, IAM policies, Lambda."""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

from .base import (
    GraphResource,
    Props,
    Registry,
    as_json,
    as_list,
    customer_key_findings,
    statements,
    truthy,
)
from .routing import public_route_findings
from .runtimes import runtime_finding, today

ECS_CLUSTER = "aws:ecs/cluster:Cluster"
ECS_SERVICE = "aws:ecs/service:Service"
ECS_TASK = "aws:ecs/taskDefinition:TaskDefinition"
ECR_REPO = "aws:ecr/repository:Repository"
ECR_LIFECYCLE = "aws:ecr/lifecyclePolicy:LifecyclePolicy"
ROLE_POLICY = "aws:iam/rolePolicy:RolePolicy"
ROLE_ATTACHMENT = "aws:iam/rolePolicyAttachment:RolePolicyAttachment"
LAMBDA = "aws:lambda/function:Function"

# ECS.8 names AWS credentials; plantstream extends it to anything that looks like a secret.
_SECRET_ENV = re.compile(
    r"(PASSWORD|PASSWD|SECRET|TOKEN|ACCESS_KEY|PRIVATE_KEY|API_KEY)", re.IGNORECASE
)
_URL_WITH_PASSWORD = re.compile(r"://[^/@:\s]+:[^/@\s]+@")
# A KMS key ARN or alias names where data is encrypted; it is no secret, even when the
# variable's name mentions one (PLANTSTREAM_API_KEY_KMS_KEY_ID). Only that name shape with
# only that value shape is let through.
_KMS_KEY_ENV_NAME = re.compile(r"_KMS_KEY_(ID|ARN)$", re.IGNORECASE)
_KMS_KEY_REFERENCE = re.compile(
    r"^(arn:aws[a-z-]*:kms:[a-z0-9-]+:\d{12}:(key|alias)/[\w/.-]+|alias/[\w/.-]+)$"
)
_PLACEHOLDER_IMAGES = re.compile(r"(^|/)(nginx|httpd|hello-world|busybox)(:|@|$)")
# Actions that only accept Resource "*" (no resource-level permissions).
STAR_RESOURCE_ACTIONS = frozenset(
    {
        "ecr:getauthorizationtoken",
        "kinesis:liststreams",
        "xray:puttracesegments",
        "xray:puttelemetryrecords",
        "cloudwatch:putmetricdata",
        "secretsmanager:getrandompassword",
    }
)

registry = Registry()
R = registry


def _containers(p: Props) -> list[Mapping[str, Any]]:
    defs = as_json(p.get("containerDefinitions"))
    return [c for c in as_list(defs) if isinstance(c, Mapping)]


# ---- ECS ------------------------------------------------------------------------------------


@R.resource(
    "ecs-2-no-public-ip",
    "Security Hub ECS.2",
    "ECS services must not assign public IPs.",
    [ECS_SERVICE],
)
def _ecs_public_ip(p: Props) -> Iterator[str]:
    net = p.get("networkConfiguration") or {}
    if truthy(net.get("assignPublicIp")):
        yield "networkConfiguration.assignPublicIp is true"


@R.stack(
    "ecs-private-subnets",
    "plantstream PS.3 (AWS FSBP network isolation)",
    "ECS tasks run only in private subnets (the seed-002 public-subnet mistake).",
    types=[ECS_SERVICE],
)
def _ecs_private(resources: Sequence[GraphResource]) -> Iterable[tuple[GraphResource, str]]:
    # Privateness comes from the routes, not from a tag the program writes itself.
    why_public = public_route_findings(resources)
    for svc in (r for r in resources if r.resource_type == ECS_SERVICE):
        net = svc.props.get("networkConfiguration") or {}
        subnets = [str(s) for s in as_list(net.get("subnets"))]
        if not subnets:
            yield svc, f"service {svc.props.get('name')} names no subnets"
        for subnet in subnets:
            if reason := why_public(subnet):
                yield svc, f"service {svc.props.get('name')}: {reason}"


@R.resource(
    "ecs-3-no-host-pid",
    "Security Hub ECS.3",
    "Task definitions must not share the host's process namespace.",
    [ECS_TASK],
)
def _ecs_pid(p: Props) -> Iterator[str]:
    if p.get("pidMode") == "host":
        yield "pidMode is host"


@R.resource(
    "ecs-4-non-privileged", "Security Hub ECS.4", "Containers must not run privileged.", [ECS_TASK]
)
def _ecs_privileged(p: Props) -> Iterator[str]:
    for c in _containers(p):
        if truthy(c.get("privileged")):
            yield f"container {c.get('name')} is privileged"


@R.resource(
    "ecs-5-read-only-root",
    "Security Hub ECS.5",
    "Containers must have a read-only root filesystem.",
    [ECS_TASK],
)
def _ecs_readonly(p: Props) -> Iterator[str]:
    containers = _containers(p)
    if not containers:
        yield "no container definitions"
    for c in containers:
        if not truthy(c.get("readonlyRootFilesystem")):
            yield f"container {c.get('name')} has a writable root filesystem"


@R.resource(
    "ecs-8-no-secrets-in-env",
    "Security Hub ECS.8",
    "Secrets come from Secrets Manager (secrets/valueFrom), never plain environment.",
    [ECS_TASK],
)
def _ecs_env(p: Props) -> Iterator[str]:
    for c in _containers(p):
        for env in as_list(c.get("environment")):
            name, value = str(env.get("name", "")), str(env.get("value", ""))
            kms_key = _KMS_KEY_ENV_NAME.search(name) and _KMS_KEY_REFERENCE.match(value)
            if _SECRET_ENV.search(name) and not name.upper().endswith("_ARN") and not kms_key:
                yield f"container {c.get('name')} passes {name} as plain environment"
            if _URL_WITH_PASSWORD.search(value):
                yield f"container {c.get('name')} embeds a password in {name}"


@R.resource(
    "ecs-9-logging", "Security Hub ECS.9", "Containers must send logs to CloudWatch.", [ECS_TASK]
)
def _ecs_logging(p: Props) -> Iterator[str]:
    for c in _containers(p):
        if not (c.get("logConfiguration") or {}).get("logDriver"):
            yield f"container {c.get('name')} has no logConfiguration"


@R.resource(
    "ecs-10-fargate-latest-platform",
    "Security Hub ECS.10",
    "Fargate services must run on the latest platform version.",
    [ECS_SERVICE],
)
def _ecs_platform(p: Props) -> Iterator[str]:
    if p.get("platformVersion") not in (None, "LATEST"):
        yield f"platformVersion is {p.get('platformVersion')!r}"


@R.resource(
    "ecs-12-container-insights",
    "Security Hub ECS.12",
    "Clusters must have Container Insights enabled.",
    [ECS_CLUSTER],
)
def _ecs_insights(p: Props) -> Iterator[str]:
    settings = {s.get("name"): s.get("value") for s in as_list(p.get("settings"))}
    if settings.get("containerInsights") not in ("enabled", "enhanced"):
        yield "containerInsights is not enabled"


@R.resource(
    "ecs-20-non-root-user",
    "Security Hub ECS.20",
    "Containers must run as a non-root user.",
    [ECS_TASK],
)
def _ecs_user(p: Props) -> Iterator[str]:
    for c in _containers(p):
        user = str(c.get("user") or "")
        if not user or user.split(":", maxsplit=1)[0] in ("root", "0"):
            yield f"container {c.get('name')} runs as {user or 'the image default (root?)'}"


@R.resource(
    "plantstream-real-image",
    "plantstream PS.4",
    "Services run the plantstream image pinned by digest or tag, never a placeholder.",
    [ECS_TASK],
)
def _ecs_image(p: Props) -> Iterator[str]:
    for c in _containers(p):
        image = str(c.get("image") or "")
        if _PLACEHOLDER_IMAGES.search(image):
            yield f"container {c.get('name')} runs placeholder image {image}"
        elif "@sha256:" not in image and (
            ":" not in image.rsplit("/", 1)[-1] or image.endswith(":latest")
        ):
            yield f"container {c.get('name')} image {image} is not pinned"


# ---- ECR ------------------------------------------------------------------------------------


@R.resource(
    "ecr-1-scan-on-push", "Security Hub ECR.1", "Repositories must scan images on push.", [ECR_REPO]
)
def _ecr_scan(p: Props) -> Iterator[str]:
    if not truthy((p.get("imageScanningConfiguration") or {}).get("scanOnPush")):
        yield "imageScanningConfiguration.scanOnPush is not true"


@R.resource(
    "ecr-2-immutable-tags",
    "Security Hub ECR.2",
    "Repositories must have immutable tags.",
    [ECR_REPO],
)
def _ecr_immutable(p: Props) -> Iterator[str]:
    if p.get("imageTagMutability") != "IMMUTABLE":
        yield f"imageTagMutability is {p.get('imageTagMutability')!r}"


@R.resource(
    "ecr-kms",
    "Checkov CKV_AWS_136",
    "Repositories must be encrypted with a customer-managed KMS key.",
    [ECR_REPO],
)
def _ecr_kms(p: Props) -> Iterator[str]:
    enc = as_list(p.get("encryptionConfigurations"))
    if not enc or enc[0].get("encryptionType") != "KMS":
        yield "encryptionConfigurations is not KMS with a customer key"
        return
    yield from customer_key_findings(enc[0], "kmsKey")


@R.stack(
    "ecr-3-lifecycle-policy",
    "Security Hub ECR.3",
    "Repositories must have a lifecycle policy.",
    types=[ECR_REPO],
)
def _ecr_lifecycle(resources: Sequence[GraphResource]) -> Iterable[tuple[GraphResource, str]]:
    covered = {
        str(r.props.get("repository")) for r in resources if r.resource_type == ECR_LIFECYCLE
    }
    for repo in (r for r in resources if r.resource_type == ECR_REPO):
        if str(repo.props.get("name")) not in covered:
            yield repo, f"repository {repo.props.get('name')} has no lifecycle policy"


# ---- IAM ------------------------------------------------------------------------------------


def _actions(stmt: Mapping[str, Any]) -> list[str]:
    return [str(a) for a in as_list(stmt.get("Action"))]


@R.resource(
    "iam-1-no-wildcard-permissions",
    "Security Hub IAM.1 / CKV_AWS_290 / CKV_AWS_355",
    "Inline policies grant named actions on named resources only.",
    [ROLE_POLICY],
)
def _iam_wildcards(p: Props) -> Iterator[str]:
    doc = as_json(p.get("policy"))
    if not isinstance(doc, dict):
        yield "policy is not a JSON document"
        return
    for stmt in statements(doc):
        if stmt.get("Effect") != "Allow":
            continue
        if "NotAction" in stmt or "NotResource" in stmt:
            yield f"statement {stmt.get('Sid', '?')} uses NotAction/NotResource"
        actions = _actions(stmt)
        for action in actions:
            if action == "*" or action.endswith(":*"):
                yield f"statement {stmt.get('Sid', '?')} allows {action}"
        if "*" in as_list(stmt.get("Resource")):
            loose = [a for a in actions if a.lower() not in STAR_RESOURCE_ACTIONS]
            if loose:
                yield f"statement {stmt.get('Sid', '?')} allows {loose} on Resource '*'"


@R.resource(
    "iam-no-broad-managed-policies",
    "Checkov CKV_AWS_274",
    "Roles must not carry AdministratorAccess-like managed policies.",
    [ROLE_ATTACHMENT],
)
def _iam_managed(p: Props) -> Iterator[str]:
    arn = str(p.get("policyArn") or "")
    if arn.endswith(
        (":policy/AdministratorAccess", ":policy/PowerUserAccess", ":policy/IAMFullAccess")
    ):
        yield f"attaches {arn}"


# ---- Lambda ---------------------------------------------------------------------------------


@R.resource(
    "lambda-2-supported-runtime",
    "Security Hub Lambda.2",
    "Functions must use a supported runtime.",
    [LAMBDA],
)
def _lambda_runtime(p: Props) -> Iterator[str]:
    if p.get("packageType") == "Image":
        return  # a container image brings its own runtime; Lambda.2 covers zip packages
    finding = runtime_finding(p.get("runtime"), today())
    if finding:
        yield finding
