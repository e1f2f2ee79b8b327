"""Pulumi mocks that answer like AWS would: realistic ids, ARNs, endpoints and invoke results.

No cloud account and no Pulumi CLI are needed; every registered resource is recorded with its
inputs (what resource policies see) and its state (what stack policies see).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

import pulumi

ACCOUNT_ID = "123456789012"

_ID_PREFIX = {
    "aws:ec2/vpc:Vpc": "vpc-",
    "aws:ec2/subnet:Subnet": "subnet-",
    "aws:ec2/securityGroup:SecurityGroup": "sg-",
    "aws:ec2/defaultSecurityGroup:DefaultSecurityGroup": "sg-",
    "aws:ec2/internetGateway:InternetGateway": "igw-",
    "aws:ec2/routeTable:RouteTable": "rtb-",
    "aws:ec2/natGateway:NatGateway": "nat-",
    "aws:ec2/eip:Eip": "eipalloc-",
    "aws:ec2/vpcEndpoint:VpcEndpoint": "vpce-",
    "aws:ec2/flowLog:FlowLog": "fl-",
    "aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule": "sgr-",
    "aws:vpc/securityGroupEgressRule:SecurityGroupEgressRule": "sgr-",
}


def _hex(*parts: str, n: int = 17) -> str:
    return hashlib.sha256("/".join(parts).encode()).hexdigest()[:n]


@dataclass
class RecordedResource:
    type: str
    name: str
    custom: bool
    inputs: dict[str, Any]
    state: dict[str, Any]


class RecordingMonitor(pulumi.runtime.mocks.MockMonitor):
    """The mock monitor, also keeping each resource's dependencies and options by URN, so
    tests can check deploy ordering (``depends_on`` and input edges) and lifecycle options."""

    def __init__(self, mocks: pulumi.runtime.Mocks) -> None:
        super().__init__(mocks)
        self.dependencies: dict[str, list[str]] = {}
        self.options: dict[str, dict[str, Any]] = {}

    def RegisterResource(self, request: Any) -> Any:  # the gRPC method's name
        response = super().RegisterResource(request)  # type: ignore[no-untyped-call]
        urns = set(request.dependencies)
        for deps in request.propertyDependencies.values():
            urns |= set(deps.urns)
        self.dependencies[response.urn] = sorted(urns)
        self.options[response.urn] = {
            "retainOnDelete": bool(request.retainOnDelete),
            "deleteBeforeReplace": bool(request.deleteBeforeReplace),
            "ignoreChanges": sorted(request.ignoreChanges),
            "protect": bool(request.protect),
        }
        return response


@dataclass
class AwsMocks(pulumi.runtime.Mocks):
    region: str
    recorded: list[RecordedResource] = field(default_factory=list)

    # ---- invokes ----------------------------------------------------------------------------

    def call(
        self, args: pulumi.runtime.MockCallArgs
    ) -> tuple[dict[str, Any], list[tuple[str, str]]]:
        r = self.region
        answers: dict[str, dict[str, Any]] = {
            "aws:index/getAvailabilityZones:getAvailabilityZones": {
                "id": r,
                "names": [f"{r}a", f"{r}b", f"{r}c"],
                "zoneIds": [f"{r[:2]}{r[-1]}-az1", f"{r[:2]}{r[-1]}-az2", f"{r[:2]}{r[-1]}-az3"],
                "groupNames": [r],
                "state": "available",
            },
            "aws:index/getCallerIdentity:getCallerIdentity": {
                "id": ACCOUNT_ID,
                "accountId": ACCOUNT_ID,
                "userId": "AIDAMOCK",
                "arn": f"arn:aws:iam::{ACCOUNT_ID}:user/deployer",
            },
            "aws:index/getRegion:getRegion": {
                "id": r,
                "name": r,
                "region": r,
                "endpoint": f"ec2.{r}.amazonaws.com",
                "description": r,
            },
            "aws:index/getPartition:getPartition": {
                "id": "aws",
                "partition": "aws",
                "dnsSuffix": "amazonaws.com",
                "reverseDnsPrefix": "com.amazonaws",
            },
            "aws:ec2/getPrefixList:getPrefixList": {
                "id": "pl-6da54004",
                "name": f"com.amazonaws.{r}.s3",
                "cidrBlocks": ["52.95.128.0/21"],
            },
            "aws:ecr/getAuthorizationToken:getAuthorizationToken": {
                "id": r,
                "userName": "AWS",
                "password": "mock-ecr-password",
                "authorizationToken": "QVdTOm1vY2s=",
                "expiresAt": "2030-01-01T00:00:00Z",
                "proxyEndpoint": f"https://{ACCOUNT_ID}.dkr.ecr.{r}.amazonaws.com",
                "registryId": ACCOUNT_ID,
            },
            # the account's ATS data endpoint (one per account and region)
            "aws:iot/getEndpoint:getEndpoint": {
                "id": f"{_hex(ACCOUNT_ID, r, n=14)}-ats.iot.{r}.amazonaws.com",
                "endpointAddress": f"{_hex(ACCOUNT_ID, r, n=14)}-ats.iot.{r}.amazonaws.com",
                "endpointType": args.args.get("endpointType"),
            },
            # RDS's newest minor of the requested major (a fixed, plausible answer offline)
            "aws:rds/getEngineVersion:getEngineVersion": {
                "id": str(args.args.get("version")),
                "engine": args.args.get("engine"),
                "version": args.args.get("version"),
                "versionActual": f"{str(args.args.get('version')).split('.')[0]}.9",
                "status": "available",
            },
        }
        if args.token not in answers:
            raise NotImplementedError(f"mock has no answer for invoke {args.token}")
        return answers[args.token], []

    # ---- resources --------------------------------------------------------------------------

    def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str, dict[str, Any]]:
        inputs = dict(args.inputs)
        rid, computed = self._computed(args.typ, args.name, inputs)
        state = {**inputs, **computed, "id": rid}
        if args.custom:
            self.recorded.append(RecordedResource(args.typ, args.name, True, inputs, state))
        return rid, {**inputs, **computed}

    def _computed(self, typ: str, name: str, p: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        r, acct, h = self.region, ACCOUNT_ID, _hex(typ, name)
        service = typ.split(":")[1].split("/", maxsplit=1)[0]
        physical = str(
            p.get("name")
            or p.get("identifier")
            or p.get("clusterIdentifier")
            or p.get("replicationGroupId")
            or p.get("family")
            or name
        )
        arn = f"arn:aws:{service}:{r}:{acct}:{physical}"
        if typ in _ID_PREFIX:
            rid = _ID_PREFIX[typ] + h
            extra: dict[str, Any] = (
                {"prefixListId": "pl-6da54004"} if p.get("vpcEndpointType") == "Gateway" else {}
            )
            if p.get("vpcEndpointType") == "Interface":
                extra["dnsEntries"] = [
                    {"dnsName": f"{rid}-{h[:8]}.{p.get('serviceName')}", "hostedZoneId": "Z7HUB"}
                ]
            return rid, {"arn": f"arn:aws:ec2:{r}:{acct}:{rid}", **extra}
        if typ == "aws:iot/certificate:Certificate":
            cert_id = _hex(typ, name, n=64)
            return cert_id, {
                "arn": f"arn:aws:iot:{r}:{acct}:cert/{cert_id}",
                # placeholders, not PEM: nothing here may look like a key to a secret scanner
                "certificatePem": f"mock-certificate-pem-{cert_id[:8]}",
                "privateKey": f"mock-private-key-{cert_id[:8]}",
                "publicKey": f"mock-public-key-{cert_id[:8]}",
            }
        if typ in ("aws:iot/thing:Thing", "aws:iot/thingGroup:ThingGroup", "aws:iot/policy:Policy"):
            kind = {"Thing": "thing", "ThingGroup": "thinggroup", "Policy": "policy"}[
                typ.rsplit(":", 1)[-1]
            ]
            return physical, {"arn": f"arn:aws:iot:{r}:{acct}:{kind}/{physical}"}
        if typ == "aws:route53/zone:Zone":
            zone_id = "Z" + h.upper()[:13]
            return zone_id, {"zoneId": zone_id, "arn": f"arn:aws:route53:::hostedzone/{zone_id}"}
        if typ == "aws:kms/key:Key":
            key_id = f"{h[:8]}-{h[8:12]}-4{h[12:15]}-8{h[:3]}-{h[3:15]}"
            return key_id, {"keyId": key_id, "arn": f"arn:aws:kms:{r}:{acct}:key/{key_id}"}
        if typ == "aws:kms/alias:Alias":
            return physical, {"arn": f"arn:aws:kms:{r}:{acct}:{physical}"}
        if typ == "aws:kinesis/stream:Stream":
            arn = f"arn:aws:kinesis:{r}:{acct}:stream/{physical}"
            return arn, {"arn": arn}
        if typ in ("aws:rds/cluster:Cluster", "aws:rds/instance:Instance"):
            kind = "cluster" if typ.endswith("Cluster") else "db"
            host = (
                f"{physical}.cluster-c{h[:11]}.{r}.rds.amazonaws.com"
                if kind == "cluster"
                else f"{physical}.c{h[:11]}.{r}.rds.amazonaws.com"
            )
            secret = {
                "secretArn": f"arn:aws:secretsmanager:{r}:{acct}:secret:rds!{kind}-{h}",
                "kmsKeyId": p.get("masterUserSecretKmsKeyId"),
                "secretStatus": "active",
            }
            return physical, {
                "arn": f"arn:aws:rds:{r}:{acct}:{kind}:{physical}",
                # a cluster's Endpoint is a host name, an instance's is "host:port"
                "endpoint": host if kind == "cluster" else f"{host}:5432",
                "readerEndpoint": host.replace(".cluster-", ".cluster-ro-"),
                "address": host,
                "port": 5432,
                "masterUserSecrets": [secret],
                "engineVersionActual": p.get("engineVersion"),
            }
        if typ == "aws:rds/clusterInstance:ClusterInstance":
            return physical, {"arn": f"arn:aws:rds:{r}:{acct}:db:{physical}"}
        if typ == "aws:elasticache/replicationGroup:ReplicationGroup":
            host = f"{physical}.{h[:6]}.{r}.cache.amazonaws.com"
            return physical, {
                "arn": f"arn:aws:elasticache:{r}:{acct}:replicationgroup:{physical}",
                "primaryEndpointAddress": f"master.{host}",
                "readerEndpointAddress": f"replica.{host}",
                "configurationEndpointAddress": f"clustercfg.{host}",
            }
        if typ == "aws:secretsmanager/secret:Secret":
            arn = f"arn:aws:secretsmanager:{r}:{acct}:secret:{physical}-{h[:6]}"
            return arn, {"arn": arn}
        if typ == "aws:cloudwatch/logGroup:LogGroup":
            return physical, {"arn": f"arn:aws:logs:{r}:{acct}:log-group:{physical}"}
        if typ == "aws:iam/role:Role":
            return physical, {
                "arn": f"arn:aws:iam::{acct}:role/{physical}",
                "uniqueId": f"AROA{h.upper()}",
            }
        if typ == "aws:ecs/taskDefinition:TaskDefinition":
            arn = f"arn:aws:ecs:{r}:{acct}:task-definition/{physical}:1"
            return arn, {"arn": arn, "revision": 1}
        if typ in ("aws:ecs/cluster:Cluster", "aws:ecs/service:Service"):
            kind = "cluster" if typ.endswith("Cluster") else "service"
            arn = f"arn:aws:ecs:{r}:{acct}:{kind}/{physical}"
            return arn, {"arn": arn}
        if typ == "aws:ecr/repository:Repository":
            return physical, {
                "arn": f"arn:aws:ecr:{r}:{acct}:repository/{physical}",
                "registryId": acct,
                "repositoryUrl": f"{acct}.dkr.ecr.{r}.amazonaws.com/{physical}",
            }
        if typ.startswith("aws:lb/"):
            kind = {"LoadBalancer": "loadbalancer/app", "TargetGroup": "targetgroup"}.get(
                typ.rsplit(":", 1)[-1], "listener/app"
            )
            arn = f"arn:aws:elasticloadbalancing:{r}:{acct}:{kind}/{physical}/{h[:16]}"
            return arn, {
                "arn": arn,
                "arnSuffix": arn.split(":", 5)[-1].split("/", 1)[-1],
                "dnsName": f"{physical}-{h[:10]}.{r}.elb.amazonaws.com",
            }
        if typ == "aws:apigateway/restApi:RestApi":
            return h[:10], {
                "rootResourceId": h[10:16],
                "executionArn": f"arn:aws:execute-api:{r}:{acct}:{h[:10]}",
            }
        if typ == "aws:apigateway/stage:Stage":
            api = p.get("restApi")
            return f"ags-{api}-{p.get('stageName')}", {
                "invokeUrl": f"https://{api}.execute-api.{r}.amazonaws.com/{p.get('stageName')}",
                "arn": f"arn:aws:apigateway:{r}::/restapis/{api}/stages/{p.get('stageName')}",
            }
        if typ == "aws:lambda/function:Function":
            arn = f"arn:aws:lambda:{r}:{acct}:function:{physical}"
            return physical, {"arn": arn, "invokeArn": arn}
        if typ == "aws:sns/topic:Topic":
            arn = f"arn:aws:sns:{r}:{acct}:{physical}"
            return arn, {"arn": arn}
        if typ == "random:index/randomPassword:RandomPassword":
            return h, {"result": "Mock-Redis-Auth-Token-0123456789abcdefXYZ!&#$", "bcryptHash": ""}
        if typ == "docker-build:index:Image":
            tag = (p.get("tags") or ["image:latest"])[0]
            return h, {"ref": f"{tag}@sha256:{_hex(tag, n=64)}", "digest": f"sha256:{h}"}
        return h, {"arn": arn}
