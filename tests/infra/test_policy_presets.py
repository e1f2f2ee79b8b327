"""The stricter controls read the real program's graph correctly: each preset passes as built,
and the same graph with one thing broken (public subnets, one AZ, no method settings) fails."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import pytest
from infra_helpers import PRESETS, Report
from plantstream_infra.policies import GraphEntry, PolicyResult, evaluate

pytestmark = pytest.mark.infra

Resources = list[dict[str, Any]]


def _evaluate(resources: Resources) -> list[PolicyResult]:
    return evaluate(
        [GraphEntry(r["type"], r["name"], r["urn"], r["inputs"], r["state"]) for r in resources]
    )


def _refused(resources: Resources, control: str) -> set[str]:
    return {
        r.urn for r in _evaluate(resources) if r.policy == control and r.enforcement == "mandatory"
    }


def _of(resources: Resources, token: str) -> list[dict[str, Any]]:
    return [r for r in resources if r["type"] == token]


def _both(r: dict[str, Any], change: Callable[[dict[str, Any]], None]) -> None:
    change(r["inputs"])
    change(r["state"])


@pytest.mark.parametrize("preset", PRESETS)
def test_services_in_public_subnets_are_refused_by_their_routes(
    reports: dict[str, Report], preset: str
) -> None:
    resources = copy.deepcopy(reports[preset].resources)
    subnets = _of(resources, "aws:ec2/subnet:Subnet")
    public = [s["state"]["id"] for s in subnets if s["state"]["tags"].get("Tier") == "public"]
    for s in subnets:  # the control must not need the program's own Tier tag
        _both(s, lambda p: p["tags"].pop("Tier", None))
    assert _refused(resources, "ecs-private-subnets") == set()
    services = _of(resources, "aws:ecs/service:Service")
    assert services
    for svc in services:
        _both(svc, lambda p: p["networkConfiguration"].update(subnets=public))
    assert _refused(resources, "ecs-private-subnets") == {svc["urn"] for svc in services}


def test_an_aurora_cluster_in_one_az_is_refused(reports: dict[str, Report]) -> None:
    checked = []
    for preset in PRESETS:
        resources = copy.deepcopy(reports[preset].resources)
        instances = _of(resources, "aws:rds/clusterInstance:ClusterInstance")
        if not instances:
            continue  # an RDS instance preset (RDS.5 applies instead)
        assert len({i["state"]["availabilityZone"] for i in instances}) >= 2, preset
        zone = instances[0]["state"]["availabilityZone"]
        for i in instances:
            _both(i, lambda p, zone=zone: p.update(availabilityZone=zone))
        [cluster] = _of(resources, "aws:rds/cluster:Cluster")
        assert _refused(resources, "rds-15-cluster-multi-az") == {cluster["urn"]}, preset
        checked.append(preset)
    assert checked, "no preset runs Aurora any more; this check needs another graph"


def test_an_api_stage_without_method_settings_is_refused(reports: dict[str, Report]) -> None:
    checked = []
    for preset in PRESETS:
        resources = reports[preset].resources
        stages = _of(resources, "aws:apigateway/stage:Stage")
        if not stages:
            continue  # this preset has no API Gateway front door
        assert _refused(resources, "apigateway-1-execution-logging") == set(), preset
        settings = "aws:apigateway/methodSettings:MethodSettings"
        without = [r for r in resources if r["type"] != settings]
        assert _refused(without, "apigateway-1-execution-logging") == {s["urn"] for s in stages}, (
            preset
        )
        checked.append(preset)
    assert checked, "no preset has an API Gateway stage any more; this check needs another graph"
