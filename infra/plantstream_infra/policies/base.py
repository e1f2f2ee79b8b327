"""The small control model behind the policy pack: one control per Security Hub / Checkov id.

Controls are plain Python over Pulumi property maps (camelCase, as the engine sends them), so
the real pack (``infra/policies``) and the offline check run exactly the same code.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

DEVIATION_TAG_PREFIX = "plantstream:deviation:"

Props = Mapping[str, Any]
ResourceCheck = Callable[[Props], Iterable[str]]


class GraphResource(Protocol):
    """What a stack check needs of a resource (``pulumi_policy.PolicyResource`` fits)."""

    resource_type: str
    props: Mapping[str, Any]
    urn: str
    name: str


StackCheck = Callable[[Sequence[GraphResource]], Iterable[tuple[GraphResource, str]]]


@dataclass(frozen=True)
class Control:
    """One compliance rule, named after the control it enforces.

    ``waivable`` controls may be relaxed by a preset that declares a deviation with a reason
    (the program writes it as a ``plantstream:deviation:<id>`` tag); the pack then reports the
    finding as advisory instead of mandatory. Security-critical controls are never waivable.
    """

    id: str
    control: str
    description: str
    resource_types: tuple[str, ...] = ()
    check: ResourceCheck | None = None
    stack_check: StackCheck | None = None
    waivable: bool = False
    remediation: str = ""

    def applies_to(self, resource_type: str) -> bool:
        return resource_type in self.resource_types

    def findings(self, resource_type: str, props: Props) -> list[str]:
        if self.check is None or not self.applies_to(resource_type):
            return []
        return list(self.check(props))


@dataclass
class Registry:
    controls: list[Control] = field(default_factory=list)

    def add(self, control: Control) -> Control:
        if any(c.id == control.id for c in self.controls):
            raise ValueError(f"duplicate control id {control.id}")
        self.controls.append(control)
        return control

    def resource(
        self,
        id: str,
        control: str,
        description: str,
        types: Sequence[str],
        *,
        waivable: bool = False,
        remediation: str = "",
    ) -> Callable[[ResourceCheck], ResourceCheck]:
        def register(fn: ResourceCheck) -> ResourceCheck:
            self.add(
                Control(
                    id,
                    control,
                    description,
                    tuple(types),
                    check=fn,
                    waivable=waivable,
                    remediation=remediation,
                )
            )
            return fn

        return register

    def stack(
        self,
        id: str,
        control: str,
        description: str,
        *,
        types: Sequence[str] = (),
        waivable: bool = False,
        remediation: str = "",
    ) -> Callable[[StackCheck], StackCheck]:
        def register(fn: StackCheck) -> StackCheck:
            self.add(
                Control(
                    id,
                    control,
                    description,
                    tuple(types),
                    stack_check=fn,
                    waivable=waivable,
                    remediation=remediation,
                )
            )
            return fn

        return register


# ---- helpers shared by the control modules -------------------------------------------------


def truthy(value: Any) -> bool:
    return value is True or (isinstance(value, str) and value.lower() == "true")


def tags_of(props: Props) -> Mapping[str, str]:
    tags = props.get("tags") or {}
    return tags if isinstance(tags, Mapping) else {}


def waiver(props: Props, control_id: str) -> str | None:
    """The declared reason for deviating from ``control_id``, if this resource carries one."""
    return tags_of(props).get(DEVIATION_TAG_PREFIX + control_id)


def as_json(value: Any) -> Any:
    """Parse a JSON document property (IAM/KMS policies, container definitions)."""
    if isinstance(value, str):
        try:
            return json.loads(value)
        except ValueError:
            return None
    return value


def as_list(value: Any) -> list[Any]:
    """A property as a list: the engine hands lists over as read-only Sequence proxies."""
    if value is None:
        return []
    if isinstance(value, Sequence) and not isinstance(value, (str, bytes)):
        return list(value)
    return [value]


def statements(doc: Any) -> Iterator[Mapping[str, Any]]:
    if isinstance(doc, Mapping):
        for stmt in as_list(doc.get("Statement")):
            if isinstance(stmt, Mapping):
                yield stmt


def number(value: Any, default: float = 0.0) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return default


# AWS reserves alias names under ``alias/aws/`` for its own managed keys; a key given by such
# an alias (bare or as an alias ARN) is an AWS-managed key, whatever the property is called.
_AWS_MANAGED_ALIAS = re.compile(r"^(arn:aws[a-z-]*:kms:[^:]*:[^:]*:)?alias/aws/", re.IGNORECASE)


def aws_managed_key(value: Any) -> bool:
    """Whether a KMS key reference names an AWS-managed key (``alias/aws/...`` or its ARN)."""
    return isinstance(value, str) and _AWS_MANAGED_ALIAS.match(value.strip()) is not None


def customer_key_findings(p: Props, prop: str) -> Iterator[str]:
    """Findings when ``prop`` does not name a customer-managed KMS key."""
    key = p.get(prop)
    if not key:
        yield f"{prop} is not set (AWS-managed key)"
    elif aws_managed_key(key):
        yield f"{prop} {key} is an AWS-managed key, not a customer-managed one"


def ends_with_suffix(value: str, suffix: str) -> bool:
    """``x-<suffix>``; names AWS dictates (``/aws/rds/cluster/<id>/postgresql``) need only
    carry the suffix inside the resource id they name."""
    if value.startswith("/aws/"):
        return re.search(rf"-{re.escape(suffix)}(/|$)", value) is not None
    return re.search(rf"(^|[-/_.]){re.escape(suffix)}$", value) is not None
