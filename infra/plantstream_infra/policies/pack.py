"""Turns the controls into ``pulumi_policy`` policies, and runs them on a recorded graph.

The same ``Policy`` objects serve the real pack (``infra/policies/__main__.py``) and the offline
check, so a green offline check means the pack would pass on ``pulumi preview``/``up``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pulumi_policy import (
    EnforcementLevel,
    Policy,
    PolicyCustomTimeouts,
    PolicyResource,
    PolicyResourceOptions,
    ReportViolation,
    ResourceValidationArgs,
    ResourceValidationPolicy,
    StackValidationArgs,
    StackValidationPolicy,
)
from pulumi_policy.proxy import UnknownValueError, unknown_checking_proxy

from . import compute, data, iot, network
from .base import Control, waiver

PACK_NAME = "plantstream-aws"
DEVIATIONS_POLICY = "plantstream-declared-deviations"
DEVIATIONS_STACK_POLICY = "plantstream-declared-deviations-stack"

CONTROLS: tuple[Control, ...] = (
    *data.registry.controls,
    *compute.registry.controls,
    *network.registry.controls,
    *iot.registry.controls,
)
CONTROLS_BY_ID: Mapping[str, Control] = {c.id: c for c in CONTROLS}


def _resource_policy(control: Control) -> Policy:
    def validate(args: ResourceValidationArgs, report: ReportViolation) -> None:
        if not control.applies_to(args.resource_type):
            return
        if control.waivable and waiver(args.props, control.id):
            return  # reported by the advisory deviations policy instead
        for message in control.findings(args.resource_type, args.props):
            report(message, None)

    return ResourceValidationPolicy(
        name=control.id,
        description=f"{control.control}: {control.description}",
        validate=validate,
        enforcement_level=EnforcementLevel.MANDATORY,
        remediation_steps=control.remediation or None,
    )


def _stack_policy(control: Control) -> Policy:
    assert control.stack_check is not None

    def validate(args: StackValidationArgs, report: ReportViolation) -> None:
        for resource, message in control.stack_check(args.resources):  # type: ignore[misc]
            if control.waivable and waiver(resource.props, control.id):
                continue
            report(message, resource.urn)

    return StackValidationPolicy(
        name=control.id,
        description=f"{control.control}: {control.description}",
        validate=validate,
        enforcement_level=EnforcementLevel.MANDATORY,
        remediation_steps=control.remediation or None,
    )


def _deviation_message(control: Control, reason: str, findings: Sequence[str]) -> str:
    if not findings:
        return f"{control.id} ({control.control}): deviation declared but not needed: {reason}"
    return f"{control.id} ({control.control}) deviates on purpose: {reason} [{'; '.join(findings)}]"


def _deviations_policy() -> Policy:
    waivable = [c for c in CONTROLS if c.waivable and c.check is not None]

    def validate(args: ResourceValidationArgs, report: ReportViolation) -> None:
        for control in waivable:
            if not control.applies_to(args.resource_type):
                continue
            reason = waiver(args.props, control.id)
            if reason:
                findings = control.findings(args.resource_type, args.props)
                report(_deviation_message(control, reason, findings), None)

    return ResourceValidationPolicy(
        name=DEVIATIONS_POLICY,
        description="Deviations a preset declares on purpose, with the seed's reason.",
        validate=validate,
        enforcement_level=EnforcementLevel.ADVISORY,
    )


def _deviations_stack_policy() -> Policy:
    waivable = [c for c in CONTROLS if c.waivable and c.stack_check is not None]

    def validate(args: StackValidationArgs, report: ReportViolation) -> None:
        for control in waivable:
            assert control.stack_check is not None
            for resource, message in control.stack_check(args.resources):
                reason = waiver(resource.props, control.id)
                if reason:
                    report(_deviation_message(control, reason, [message]), resource.urn)

    return StackValidationPolicy(
        name=DEVIATIONS_STACK_POLICY,
        description="Stack-level deviations a preset declares on purpose, with the reason.",
        validate=validate,
        enforcement_level=EnforcementLevel.ADVISORY,
    )


def pack_policies() -> list[Policy]:
    """Every policy of the plantstream pack, in a stable order."""
    policies = [_resource_policy(c) if c.check else _stack_policy(c) for c in CONTROLS]
    return [*policies, _deviations_policy(), _deviations_stack_policy()]


# ---- offline evaluation ---------------------------------------------------------------------


@dataclass(frozen=True)
class GraphEntry:
    """One resource as the mocked engine saw it: inputs for resource policies, state for stack."""

    resource_type: str
    name: str
    urn: str
    inputs: Mapping[str, Any]
    state: Mapping[str, Any]


@dataclass(frozen=True)
class PolicyResult:
    policy: str
    enforcement: str  # "mandatory", "advisory", or "unknown" (value not known yet, as in preview)
    urn: str | None
    message: str


_OPTS = PolicyResourceOptions(False, [], None, [], PolicyCustomTimeouts(0, 0, 0), [])


def evaluate(graph: Sequence[GraphEntry]) -> list[PolicyResult]:
    """Run the pack on a resource graph, exactly as the policy analyzer would."""
    results: list[PolicyResult] = []
    # The analyzer hands policies read-only proxies (Mapping/Sequence, not dict/list) that
    # raise on values unknown during preview; so do we, so the offline run is the real one.
    stack_resources: list[PolicyResource] = [
        PolicyResource(
            g.resource_type,
            unknown_checking_proxy(dict(g.state)),
            g.urn,
            g.name,
            _OPTS,
            None,
            None,
            [],
            {},
        )
        for g in graph
    ]
    for policy in pack_policies():
        level = "advisory" if policy.enforcement_level == EnforcementLevel.ADVISORY else "mandatory"
        if isinstance(policy, ResourceValidationPolicy):
            for g in graph:

                def report(
                    msg: str,
                    urn: str | None,
                    _g: GraphEntry = g,
                    _p: Policy = policy,
                    _level: str = level,
                ) -> None:
                    results.append(PolicyResult(_p.name, _level, urn or _g.urn, msg))

                props = unknown_checking_proxy(dict(g.inputs))
                try:
                    policy.validate(
                        ResourceValidationArgs(g.resource_type, props, g.urn, g.name, _OPTS, None),
                        report,
                    )
                except UnknownValueError as exc:  # as in preview: checked again during `up`
                    results.append(PolicyResult(policy.name, "unknown", g.urn, exc.message))
        elif isinstance(policy, StackValidationPolicy):

            def report_stack(
                msg: str, urn: str | None, _p: Policy = policy, _level: str = level
            ) -> None:
                results.append(PolicyResult(_p.name, _level, urn, msg))

            try:
                policy.validate(StackValidationArgs(stack_resources), report_stack)
            except UnknownValueError as exc:
                results.append(PolicyResult(policy.name, "unknown", None, exc.message))
    return results
