"""Controls for AWS IoT Core: device and bridge policies, logging, certificates, the bridge key.

Named after the AWS IoT Device Defender audit checks they enforce at deploy time (Security Hub
has no IoT control beyond tagging). ``allows`` evaluates an IoT policy document the way the
broker does (policy variables substituted, ``*``/``?`` wildcards), so the controls and the tests
reason about topics rather than strings.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

from .base import GraphResource, Props, Registry, as_json, as_list, aws_managed_key, statements
from .data import SECRET

IOT_POLICY = "aws:iot/policy:Policy"
LOGGING_OPTIONS = "aws:iot/loggingOptions:LoggingOptions"
PRINCIPAL_ATTACHMENT = "aws:iot/thingPrincipalAttachment:ThingPrincipalAttachment"
TASK_DEFINITION = "aws:ecs/taskDefinition:TaskDefinition"

SPARKPLUG = "spBv1.0"
PLAIN = "plantstream/v1"
THING_NAME = "${iot:Connection.Thing.ThingName}"
FACILITY_VAR = "${iot:Connection.Thing.Attributes[facility]}"
NODE_VAR = "${iot:Connection.Thing.Attributes[node]}"
IS_ATTACHED = "iot:Connection.Thing.IsAttached"
TOPIC_ACTIONS = frozenset({"iot:publish", "iot:retainpublish", "iot:subscribe", "iot:receive"})
LOG_LEVELS = ("ERROR", "WARN", "INFO", "DEBUG")
# Environment variables that carry the MQTT client identity (PEM text); they must come from a
# Secrets Manager secret on a customer key. ECS.8's name pattern does not see "KEY_PEM".
CLIENT_IDENTITY_ENV = ("PLANTSTREAM_MQTT_KEY_PEM", "PLANTSTREAM_MQTT_CERT_PEM")

# IoT Core refuses a policy document longer than this, whitespace not counted (CreatePolicy).
MAX_POLICY_CHARS = 2048

registry = Registry()
R = registry

_VARIABLE = re.compile(r"\$\{([^}]+)\}")


def policy_chars(doc: Any) -> int:
    """A document's size as IoT Core counts it: its JSON without whitespace."""
    text = doc if isinstance(doc, str) else json.dumps(doc)
    return len(re.sub(r"\s", "", text))


# ---- evaluation -----------------------------------------------------------------------------


def _pattern(resource: str, variables: Mapping[str, str]) -> re.Pattern[str] | None:
    """The resource as a regex, variables substituted; None when one is unknown (no match)."""
    missing = False

    def substitute(m: re.Match[str]) -> str:
        nonlocal missing
        if m.group(1) not in variables:
            missing = True
            return ""
        return re.escape(variables[m.group(1)])

    parts = []
    for chunk in re.split(r"(\$\{[^}]+\})", resource):
        if _VARIABLE.fullmatch(chunk):
            parts.append(_VARIABLE.sub(substitute, chunk))
        else:
            parts.append(re.escape(chunk).replace(r"\*", ".*").replace(r"\?", "."))
    return None if missing else re.compile("".join(parts) + r"\Z", re.DOTALL)


def _action_matches(pattern: str, action: str) -> bool:
    regex = re.escape(pattern.lower()).replace(r"\*", ".*").replace(r"\?", ".")
    return re.fullmatch(regex, action.lower()) is not None


def _conditions_hold(stmt: Mapping[str, Any], context: Mapping[str, str]) -> bool:
    for operator, clauses in (stmt.get("Condition") or {}).items():
        for key, expected in clauses.items():
            actual = context.get(key)
            wanted = [str(v).lower() for v in as_list(expected)]
            if operator not in ("Bool", "StringEquals") or actual is None:
                return False  # an unknown condition never grants
            if actual.lower() not in wanted:
                return False
    return True


def allows(doc: Any, action: str, resource: str, context: Mapping[str, str]) -> bool:
    """Whether ``doc`` allows ``action`` on ``resource`` for a connection described by
    ``context`` (policy variables by name, without ``${}``; condition keys too). An explicit
    Deny wins, as in IoT Core."""
    allowed = False
    for stmt in statements(doc):
        if not any(_action_matches(a, action) for a in as_list(stmt.get("Action"))):
            continue
        if not _conditions_hold(stmt, context):
            continue
        for res in as_list(stmt.get("Resource")):
            pattern = _pattern(str(res), context)
            if pattern is not None and pattern.match(resource):
                if stmt.get("Effect") == "Deny":
                    return False
                allowed = allowed or stmt.get("Effect") == "Allow"
    return allowed


def _allow_statements(p: Props) -> Iterator[Mapping[str, Any]]:
    for stmt in statements(as_json(p.get("policy"))):
        if stmt.get("Effect") == "Allow":
            yield stmt


def _resource_path(arn: str) -> tuple[str, str]:
    """``arn:aws:iot:r:a:topic/x/y`` -> ("topic", "x/y")."""
    tail = arn.split(":", 5)[-1] if arn.startswith("arn:") else arn
    kind, _, path = tail.partition("/")
    return kind, path


# ---- policies -------------------------------------------------------------------------------


@R.resource(
    "iot-policy-overly-permissive",
    "AWS IoT Device Defender IOT_POLICY_OVERLY_PERMISSIVE_CHECK",
    "IoT policies name their actions and resources: no iot:*, no '*' resource, no whole-"
    "namespace topic, filter or client wildcard.",
    [IOT_POLICY],
)
def _iot_overly_permissive(p: Props) -> Iterator[str]:
    doc = as_json(p.get("policy"))
    if not isinstance(doc, Mapping):
        yield "policy is not a JSON document"
        return
    for stmt in _allow_statements(p):
        sid = stmt.get("Sid", "?")
        if "NotAction" in stmt or "NotResource" in stmt:
            yield f"statement {sid} uses NotAction/NotResource"
        for action in as_list(stmt.get("Action")):
            if "*" in str(action) or "?" in str(action):
                yield f"statement {sid} allows the action wildcard {action}"
        for res in (str(r) for r in as_list(stmt.get("Resource"))):
            kind, path = _resource_path(res)
            whole = path.startswith(("*", "?", "#", "+/", "$share/*")) or path in ("+", "")
            if res == "*" or kind in ("*", "") or whole:
                yield f"statement {sid} allows {res}"


@R.resource(
    "iot-policy-size",
    "AWS IoT Core quota (CreatePolicy: 2048 characters, whitespace excluded)",
    f"IoT policy documents fit IoT Core's {MAX_POLICY_CHARS}-character limit (else up fails).",
    [IOT_POLICY],
)
def _iot_policy_size(p: Props) -> Iterator[str]:
    policy = p.get("policy")
    if isinstance(policy, str) and policy_chars(policy) > MAX_POLICY_CHARS:
        yield f"the document has {policy_chars(policy)} characters, over {MAX_POLICY_CHARS}"


@R.resource(
    "iot-policy-connect-client-id",
    "AWS IoT Device Defender CONFLICTING_CLIENT_IDS_CHECK",
    "iot:Connect only with the client id equal to the attached thing's name, or named ids.",
    [IOT_POLICY],
)
def _iot_connect(p: Props) -> Iterator[str]:
    for stmt in _allow_statements(p):
        if not any(_action_matches(str(a), "iot:Connect") for a in as_list(stmt.get("Action"))):
            continue
        sid = stmt.get("Sid", "?")
        for res in (str(r) for r in as_list(stmt.get("Resource"))):
            kind, client = _resource_path(res)
            if kind != "client":
                yield f"statement {sid} allows iot:Connect on {res}, not on a client id"
            elif THING_NAME in client:
                if client != THING_NAME:
                    yield f"statement {sid}: client id {client} is not exactly the thing name"
                attached = (stmt.get("Condition") or {}).get("Bool", {}).get(IS_ATTACHED)
                if [str(v).lower() for v in as_list(attached)] != ["true"]:
                    yield f"statement {sid} does not require {IS_ATTACHED}"
            elif "$" in client or len(client.split("*", 1)[0]) < 8:
                yield f"statement {sid}: client id pattern {client} is not a named id"


def _confined(kind: str, path: str) -> bool:
    """A topic or filter inside one facility (the thing's, or a named one), or the STATE topic
    of a named host; shared subscriptions may span the namespace (delivery is by Receive)."""
    levels = path.split("/")
    if kind == "topicfilter" and levels[0] == "$share":
        if len(levels) < 3 or any(c in levels[1] for c in "*?+#$"):
            return False
        rest = "/".join(levels[2:])
        return rest in (f"{SPARKPLUG}/#", f"{PLAIN}/#") or _confined(kind, rest)
    if path.startswith(f"{SPARKPLUG}/STATE/"):
        host = path[len(f"{SPARKPLUG}/STATE/") :]
        return bool(host) and not any(c in host for c in "*?+#/$")
    for namespace in (SPARKPLUG, PLAIN):
        if path.startswith(namespace + "/"):
            facility = path[len(namespace) + 1 :].split("/", 1)
            if len(facility) < 2 or not facility[1]:
                return False
            level = facility[0]
            return level == FACILITY_VAR or not any(c in level for c in "*?+#$")
    return False


@R.resource(
    "iot-policy-facility-confinement",
    "plantstream PS.7 (one facility never sees another)",
    "Publish/Subscribe/Receive stay inside one facility's spBv1.0/ and plantstream/v1/ topics.",
    [IOT_POLICY],
)
def _iot_confinement(p: Props) -> Iterator[str]:
    for stmt in _allow_statements(p):
        actions = {str(a).lower() for a in as_list(stmt.get("Action"))}
        if not actions & TOPIC_ACTIONS:
            continue
        for res in (str(r) for r in as_list(stmt.get("Resource"))):
            kind, path = _resource_path(res)
            if kind not in ("topic", "topicfilter") or not _confined(kind, path):
                yield f"statement {stmt.get('Sid', '?')}: {res} is not inside one facility"


# ---- logging, certificates, the bridge's key ------------------------------------------------


@R.stack(
    "iot-logging-enabled",
    "AWS IoT Device Defender LOGGING_DISABLED_CHECK",
    f"A stack with IoT policies sets IoT Core logging to {'/'.join(LOG_LEVELS)} with a role.",
    types=[IOT_POLICY, LOGGING_OPTIONS],
)
def _iot_logging(resources: Sequence[GraphResource]) -> Iterable[tuple[GraphResource, str]]:
    policies = [r for r in resources if r.resource_type == IOT_POLICY]
    options = [r for r in resources if r.resource_type == LOGGING_OPTIONS]
    if policies and not options:
        yield policies[0], "IoT Core is used but no aws.iot.LoggingOptions sets its logging"
    for opt in options:
        level = opt.props.get("defaultLogLevel")
        if level not in LOG_LEVELS:
            yield opt, f"defaultLogLevel is {level!r}, expected one of {LOG_LEVELS}"
        if opt.props.get("disableAllLogs") in (True, "true"):
            yield opt, "disableAllLogs is true"
        if not opt.props.get("roleArn"):
            yield opt, "roleArn is not set (IoT Core cannot write to CloudWatch)"


@R.stack(
    "iot-certificate-not-shared",
    "AWS IoT Device Defender DEVICE_CERTIFICATE_SHARED_CHECK",
    "Each certificate is attached to one thing, exclusively: a shared certificate is a shared "
    "identity.",
    types=[PRINCIPAL_ATTACHMENT],
)
def _iot_shared_cert(resources: Sequence[GraphResource]) -> Iterable[tuple[GraphResource, str]]:
    seen: dict[str, str] = {}
    for att in (r for r in resources if r.resource_type == PRINCIPAL_ATTACHMENT):
        principal, thing = str(att.props.get("principal")), str(att.props.get("thing"))
        if att.props.get("thingPrincipalType") != "EXCLUSIVE_THING":
            yield att, f"certificate {principal} is not attached exclusively (EXCLUSIVE_THING)"
        if principal in seen and seen[principal] != thing:
            yield att, f"certificate {principal} is attached to {seen[principal]} and {thing}"
        seen.setdefault(principal, thing)


def _secret_arn(value_from: str) -> str:
    """``<secret ARN>:<json-key>:<stage>:<version>`` -> the secret's ARN (7 fields)."""
    return ":".join(value_from.split(":")[:7])


@R.stack(
    "iot-client-key-in-secret",
    "plantstream PS.8 (AWS IoT security best practice: protect device credentials)",
    "The MQTT client key and certificate reach the task from a secret on a customer key.",
    types=[TASK_DEFINITION],
)
def _iot_client_key(resources: Sequence[GraphResource]) -> Iterable[tuple[GraphResource, str]]:
    secrets = {str(r.props.get("arn")): r for r in resources if r.resource_type == SECRET} | {
        str(r.props.get("id")): r for r in resources if r.resource_type == SECRET
    }
    for task in (r for r in resources if r.resource_type == TASK_DEFINITION):
        for c in as_list(as_json(task.props.get("containerDefinitions"))):
            if not isinstance(c, Mapping):
                continue
            for env in as_list(c.get("environment")):
                if str(env.get("name")) in CLIENT_IDENTITY_ENV:
                    yield task, f"container {c.get('name')} passes {env.get('name')} as plain env"
            for ref in as_list(c.get("secrets")):
                if str(ref.get("name")) not in CLIENT_IDENTITY_ENV:
                    continue
                secret = secrets.get(_secret_arn(str(ref.get("valueFrom"))))
                if secret is None:
                    yield task, f"{ref.get('name')} comes from a secret outside this stack"
                elif not secret.props.get("kmsKeyId") or aws_managed_key(
                    secret.props.get("kmsKeyId")
                ):
                    yield task, f"{ref.get('name')} comes from a secret without a customer key"
