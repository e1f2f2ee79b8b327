"""Names, tags and account facts shared by every component.

Every physical name is ``<resource-type>-<environment suffix>``; every taggable resource gets the
same base tags plus the deviation tags a preset declares for the controls that apply to it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

import pulumi
import pulumi_aws as aws
from pulumi.type_token import get_type_token

from .policies import CONTROLS_BY_ID, DEVIATION_TAG_PREFIX
from .settings import SettingsError, StackSettings

_TAG_VALUE_UNSAFE = re.compile(r"[^\w\s.:/=+\-@]")


def tag_safe(value: str) -> str:
    """AWS tag values allow letters, digits, spaces and ``_.:/=+-@`` only, up to 256 chars."""
    return " ".join(_TAG_VALUE_UNSAFE.sub(" ", value).split())[:256]


@dataclass(frozen=True)
class StackContext:
    settings: StackSettings
    account_id: pulumi.Output[str]
    partition: pulumi.Output[str]

    @property
    def suffix(self) -> str:
        return self.settings.environment_suffix

    @property
    def region(self) -> str:
        return self.settings.region

    def name(self, kind: str) -> str:
        """The physical name for a resource of this kind: ``kind-<suffix>``."""
        return f"{kind}-{self.suffix}"

    def tags(
        self,
        resource: type,
        name: str | None = None,
        *,
        deviations: Mapping[str, str] | None = None,
    ) -> dict[str, str]:
        """Base tags, a Name, and the deviations relevant to ``resource``'s type: those the
        preset declares, plus ``deviations`` the program declares for this one resource."""
        token = get_type_token(resource) or ""
        tags = {
            "Project": self.settings.project,
            "Environment": self.suffix,
            "Preset": self.settings.preset,
            "ManagedBy": "pulumi",
            **{k: str(v) for k, v in self.settings.extra_tags.items()},
        }
        if name:
            tags["Name"] = name
        for control_id, reason in {**self.settings.deviations, **(deviations or {})}.items():
            if CONTROLS_BY_ID[control_id].applies_to(token):
                tags[DEVIATION_TAG_PREFIX + control_id] = tag_safe(str(reason))
        return tags

    def arn(self, service: str, resource: str, *, region: bool = True) -> pulumi.Output[str]:
        where = self.region if region else ""
        return pulumi.Output.concat(
            "arn:", self.partition, f":{service}:{where}:", self.account_id, f":{resource}"
        )


def validate_deviations(deviations: Mapping[str, str]) -> None:
    """A preset may only relax waivable controls, and must say why."""
    for control_id, reason in deviations.items():
        control = CONTROLS_BY_ID.get(control_id)
        if control is None:
            raise SettingsError(f"plantstream:deviations names unknown policy {control_id!r}")
        if not control.waivable:
            raise SettingsError(
                f"plantstream:deviations cannot relax {control_id} ({control.control}): "
                "it protects data and is never waived"
            )
        if not str(reason).strip():
            raise SettingsError(f"plantstream:deviations.{control_id} needs a reason")


def make_context(settings: StackSettings) -> StackContext:
    validate_deviations(settings.deviations)
    identity = aws.get_caller_identity_output()
    partition = aws.get_partition_output()
    return StackContext(settings, identity.account_id, partition.partition)
