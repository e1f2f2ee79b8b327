"""Each network-edge control (VPC, security groups, load balancer, API Gateway, names, tags)
refuses a resource that breaks it: one row per way of breaking it, on the compliant baseline."""

from __future__ import annotations

from typing import Any

import pytest
from test_policy_baseline import (
    TAGS,
    FailTable,
    Graph,
    Mutation,
    cases,
    change,
    check_refusal,
    drop,
    props,
    refusing,
    remove,
)

pytestmark = pytest.mark.infra


def _open_rule(**values: Any) -> Mutation:
    return change("sgr-https", **values)


def _method_settings(**settings: Any) -> Mutation:
    return change("settings-v1", settings=settings)


def _only_an_override(graph: Graph) -> str:
    props(graph, "settings-v1")["methodPath"] = "ingest/POST"
    return "stage-v1"


def _override_switches_logging_off(graph: Graph) -> str:
    graph["settings-v1-post"] = (
        "aws:apigateway/methodSettings:MethodSettings",
        {
            "restApi": "api-1",
            "stageName": "v1",
            "methodPath": "ingest/POST",
            "settings": {"loggingLevel": "OFF"},
        },
    )
    return "settings-v1-post"


def _untagged(graph: Graph) -> str:
    props(graph, "stream")["tags"] = {k: v for k, v in TAGS.items() if k != "Preset"}
    return "stream"


FAILS: FailTable = {
    "ec2-2-default-sg-closed": {
        "allows-ingress": refusing(
            "vpc-main",
            change(
                "sg-default",
                ingress=[{"protocol": "-1", "fromPort": 0, "toPort": 0, "self": True}],
            ),
        ),
        "not-managed": remove("sg-default", "vpc-main"),
    },
    "ec2-6-vpc-flow-logs": {
        "rejects-only": refusing("vpc-main", change("fl-main", trafficType="REJECT")),
        "none": remove("fl-main", "vpc-main"),
    },
    "ec2-15-no-auto-public-ip": {"public-ip": change("subnet-public-a", mapPublicIpOnLaunch=True)},
    "ec2-18-19-no-open-ingress": {
        "postgres-to-the-world": _open_rule(fromPort=5432, toPort=5432),
        "https-not-the-listener": _open_rule(tags=TAGS),
        "port-range": _open_rule(fromPort=0, toPort=65535),
        "ipv6-ssh": _open_rule(cidrIpv4=None, cidrIpv6="::/0", fromPort=22, toPort=22),
        "inline-ingress": change(
            "sg-app",
            ingress=[
                {"protocol": "tcp", "fromPort": 22, "toPort": 22, "cidrBlocks": ["0.0.0.0/0"]}
            ],
        ),
        "legacy-rule": change("sgr-legacy", cidrBlocks=["0.0.0.0/0"]),
    },
    "ec2-sg-descriptions": {
        "group": change("sg-app", description=""),
        "egress-rule": drop("sgr-egress", "description"),
    },
    "elb-4-drop-invalid-headers": {"kept": change("alb", dropInvalidHeaderFields=False)},
    "elb-tls-1-2": {
        "tls-1-0": change("listener-https", sslPolicy="ELBSecurityPolicy-2016-08"),
        "default-policy": drop("listener-https", "sslPolicy"),
    },
    "elb-public-https-only": {
        "http-forward": refusing(
            "alb", change("listener-http", defaultActions=[{"type": "forward"}])
        ),
    },
    "apigateway-1-execution-logging": {
        "logging-off": _method_settings(loggingLevel="OFF"),
        "logging-unset": _method_settings(metricsEnabled=True),
        "stage-without-method-settings": remove("settings-v1", "stage-v1"),
        "settings-for-another-stage": refusing("stage-v1", change("settings-v1", stageName="v2")),
        "only-a-per-method-override": _only_an_override,
        "override-switches-it-off": _override_switches_logging_off,
        "unencrypted-cache": _method_settings(loggingLevel="ERROR", cachingEnabled=True),
    },
    "apigateway-3-xray": {"off": change("stage-v1", xrayTracingEnabled=False)},
    "apigateway-9-access-logging": {"none": drop("stage-v1", "accessLogSettings")},
    "apigateway-iam-auth": {"open": change("method-post", authorization="NONE")},
    "plantstream-names-carry-suffix": {
        "name": change("stream", name="sensor-data-stream"),
        "name-tag": change("subnet-private-a", tags={**TAGS, "Name": "private-a-prod"}),
    },
    "plantstream-required-tags": {"no-preset": _untagged},
}


@pytest.mark.parametrize(("control", "mutate"), cases(FAILS))
def test_network_control_refuses_the_broken_resource(control: str, mutate: Mutation) -> None:
    check_refusal(control, mutate)
