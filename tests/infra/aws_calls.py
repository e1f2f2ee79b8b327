"""Recording the AWS API calls the app makes (botocore events) and checking them against IAM.

``CallRecorder`` hooks ``provide-client-params`` on a boto3 session, so every call any client
of that session makes is kept as (IAM action, request parameters). ``implied`` adds what AWS
itself does on the caller's behalf (KMS for encrypted streams and secrets, tagging on create),
as the botocore/AWS documentation of each operation states. ``allows`` is a small IAM
evaluator for the statement shapes the stack writes (Action/Resource wildcards, StringEquals).
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import boto3


@dataclass(frozen=True)
class Call:
    """One authorization AWS makes: an action on a resource, maybe through a service."""

    action: str
    resource: str
    via: str | None = None  # the kms:ViaService value when a service calls KMS for us
    tags: tuple[tuple[str, str], ...] = ()  # aws:RequestTag/* of the request


@dataclass
class CallRecorder:
    """Every (IAM action, parameters) made by clients of the sessions it is attached to."""

    calls: list[tuple[str, dict[str, Any]]] = field(default_factory=list)

    def session(self, region: str) -> boto3.Session:
        session = boto3.Session(
            aws_access_key_id="testing",
            aws_secret_access_key="testing",  # moto accepts any  # pragma: allowlist secret
            region_name=region,
        )
        session.events.register("provide-client-params.*.*", self._record)
        return session

    def _record(self, params: dict[str, Any], model: Any, **_: Any) -> None:
        prefix = model.service_model.signing_name
        self.calls.append((f"{prefix}:{model.name}", dict(params)))


def implied(call: Call, params: Mapping[str, Any], keys: Mapping[str, str]) -> list[Call]:
    """Authorizations AWS performs for ``call`` on the caller's behalf.

    ``keys`` maps "stream"/"secrets" to the stack's KMS key ARNs. Sources: the operation's
    "Required permissions" text in botocore's Secrets Manager model, and Kinesis server-side
    encryption (the producer needs kms:GenerateDataKey, the consumer kms:Decrypt).
    """
    region = call.resource.split(":")[3]
    kinesis = f"kinesis.{region}.amazonaws.com"
    secrets = f"secretsmanager.{region}.amazonaws.com"
    extra: list[Call] = []
    if call.action in ("kinesis:PutRecords", "kinesis:PutRecord"):
        extra.append(Call("kms:GenerateDataKey", keys["stream"], kinesis))
    elif call.action == "kinesis:GetRecords":
        extra.append(Call("kms:Decrypt", keys["stream"], kinesis))
    elif call.action == "secretsmanager:GetSecretValue":
        extra.append(Call("kms:Decrypt", keys["secrets"], secrets))
    elif call.action == "secretsmanager:PutSecretValue":
        extra.append(Call("kms:GenerateDataKey", keys["secrets"], secrets))
    elif call.action == "secretsmanager:CreateSecret":
        if params.get("Tags"):
            extra.append(Call("secretsmanager:TagResource", call.resource))
        if params.get("KmsKeyId"):
            extra += [
                Call("kms:GenerateDataKey", str(params["KmsKeyId"]), secrets),
                Call("kms:Decrypt", str(params["KmsKeyId"]), secrets),
            ]
    return extra


def _listed(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def _conditions_hold(condition: Mapping[str, Any], call: Call) -> bool:
    context: dict[str, str] = {f"aws:RequestTag/{k}": v for k, v in call.tags}
    if call.via:
        context["kms:ViaService"] = call.via
    for operator, tests in condition.items():
        if operator != "StringEquals":
            return False  # an operator this evaluator does not know never grants
        for key, wanted in tests.items():
            if context.get(key) not in _listed(wanted):
                return False
    return True


def allows(policy: Mapping[str, Any], call: Call) -> bool:
    """True when an Allow statement of the identity policy grants ``call`` (no Deny is used)."""
    for stmt in _listed(policy["Statement"]):
        if stmt.get("Effect") != "Allow":
            continue
        actions = [a.lower() for a in _listed(stmt["Action"])]
        if not any(fnmatch.fnmatchcase(call.action.lower(), a) for a in actions):
            continue
        if not any(fnmatch.fnmatchcase(call.resource, r) for r in _listed(stmt["Resource"])):
            continue
        if _conditions_hold(stmt.get("Condition", {}), call):
            return True
    return False


def granted_actions(policy: Mapping[str, Any]) -> set[str]:
    """Every action an Allow statement names (wildcards as written)."""
    return {
        a
        for stmt in _listed(policy["Statement"])
        if stmt.get("Effect") == "Allow"
        for a in _listed(stmt["Action"])
    }


def needed_actions(calls: Iterable[Call]) -> set[str]:
    return {c.action for c in calls}
