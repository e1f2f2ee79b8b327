"""The real pulumi-policy analyzer (the gRPC servicer ``pulumi preview --policy-pack`` talks to)
agrees with the offline check: zero mandatory diagnostics for every preset, same advisories."""

from __future__ import annotations

from typing import Any

import pytest
from google.protobuf import json_format, struct_pb2
from infra_helpers import PRESETS, Report
from plantstream_infra.policies import PACK_NAME, pack_policies
from pulumi.runtime import proto
from pulumi_policy import EnforcementLevel
from pulumi_policy.policy import _PolicyAnalyzerServicer

pytestmark = pytest.mark.infra


def _struct(props: dict[str, Any]) -> struct_pb2.Struct:
    return json_format.ParseDict(props, struct_pb2.Struct())


@pytest.mark.parametrize("preset", PRESETS)
def test_real_analyzer_finds_no_mandatory_violation(
    reports: dict[str, Report], preset: str
) -> None:
    servicer = _PolicyAnalyzerServicer(
        PACK_NAME, "1.0.0", pack_policies(), EnforcementLevel.MANDATORY
    )
    report = reports[preset]
    diagnostics: list[Any] = []
    for res in report.resources:
        request = proto.AnalyzeRequest(
            type=res["type"], urn=res["urn"], name=res["name"], properties=_struct(res["inputs"])
        )
        diagnostics += servicer.Analyze(request, None).diagnostics
    stack = proto.AnalyzeStackRequest(
        resources=[
            proto.AnalyzerResource(
                type=r["type"], urn=r["urn"], name=r["name"], properties=_struct(r["state"])
            )
            for r in report.resources
        ]
    )
    diagnostics += servicer.AnalyzeStack(stack, None).diagnostics

    mandatory = [d.message for d in diagnostics if d.enforcementLevel == proto.MANDATORY]
    assert mandatory == []
    advisories = [d for d in diagnostics if d.enforcementLevel == proto.ADVISORY]
    assert len(advisories) == len(report.results("advisory"))
    assert all(d.policyName.startswith("plantstream-declared-deviations") for d in advisories)


def test_real_analyzer_reports_every_policy() -> None:
    servicer = _PolicyAnalyzerServicer(
        PACK_NAME, "1.0.0", pack_policies(), EnforcementLevel.MANDATORY
    )
    info = servicer.GetAnalyzerInfo(None, None)
    assert {p.name for p in info.policies} == {p.name for p in pack_policies()}


def test_real_analyzer_blocks_a_violation() -> None:
    servicer = _PolicyAnalyzerServicer(
        PACK_NAME, "1.0.0", pack_policies(), EnforcementLevel.MANDATORY
    )
    request = proto.AnalyzeRequest(
        type="aws:kinesis/stream:Stream",
        urn="urn:pulumi:s::p::aws:kinesis/stream:Stream::s",
        name="s",
        properties=_struct({"name": "s-dev", "encryptionType": "NONE"}),
    )
    failing = {
        d.policyName
        for d in servicer.Analyze(request, None).diagnostics
        if d.enforcementLevel == proto.MANDATORY
    }
    assert {"kinesis-1-encryption-at-rest", "kinesis-customer-managed-key"} <= failing
