"""Which subnets route to the internet, read from the route tables in the resource graph.

A subnet is public when a route table it uses sends any route to an internet (or carrier)
gateway; the subnet's own tags play no part.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

from .base import GraphResource, as_list

SUBNET = "aws:ec2/subnet:Subnet"
IGW = "aws:ec2/internetGateway:InternetGateway"
ROUTE_TABLE = "aws:ec2/routeTable:RouteTable"
DEFAULT_ROUTE_TABLE = "aws:ec2/defaultRouteTable:DefaultRouteTable"
ROUTE = "aws:ec2/route:Route"
ASSOCIATION = "aws:ec2/routeTableAssociation:RouteTableAssociation"
MAIN_ASSOCIATION = "aws:ec2/mainRouteTableAssociation:MainRouteTableAssociation"

_PUBLIC_TARGETS = ("gatewayId", "carrierGatewayId")


def _of(resources: Sequence[GraphResource], token: str) -> Iterator[GraphResource]:
    return (r for r in resources if r.resource_type == token)


def _routes_by_table(resources: Sequence[GraphResource]) -> dict[str, list[Mapping[str, Any]]]:
    routes: dict[str, list[Mapping[str, Any]]] = {}
    for table in (*_of(resources, ROUTE_TABLE), *_of(resources, DEFAULT_ROUTE_TABLE)):
        routes.setdefault(str(table.props.get("id")), []).extend(
            r for r in as_list(table.props.get("routes")) if isinstance(r, Mapping)
        )
    for route in _of(resources, ROUTE):
        routes.setdefault(str(route.props.get("routeTableId")), []).append(route.props)
    return routes


def _main_tables(resources: Sequence[GraphResource]) -> dict[str, str]:
    """VPC id -> the route table the stack makes that VPC's main table."""
    main = {
        str(t.props.get("vpcId")): str(t.props.get("id"))
        for t in _of(resources, DEFAULT_ROUTE_TABLE)
    }
    for assoc in _of(resources, MAIN_ASSOCIATION):
        main[str(assoc.props.get("vpcId"))] = str(assoc.props.get("routeTableId"))
    return main


def public_route_findings(resources: Sequence[GraphResource]) -> Callable[[str], str | None]:
    """A function telling, for a subnet id, why it is not private (None when it is)."""
    subnets = {str(s.props.get("id")): s for s in _of(resources, SUBNET)}
    gateways = {str(g.props.get("id")) for g in _of(resources, IGW)}
    routes = _routes_by_table(resources)
    main = _main_tables(resources)
    explicit: dict[str, list[str]] = {}
    for assoc in _of(resources, ASSOCIATION):
        if assoc.props.get("subnetId"):
            explicit.setdefault(str(assoc.props.get("subnetId")), []).append(
                str(assoc.props.get("routeTableId"))
            )

    def to_internet(route: Mapping[str, Any]) -> str | None:
        for key in _PUBLIC_TARGETS:
            target = str(route.get(key) or "")
            if target in gateways or target.startswith(("igw-", "cagw-")):
                return target
        return None

    def why(subnet_id: str) -> str | None:
        subnet = subnets.get(subnet_id)
        if subnet is None:
            return f"subnet {subnet_id} is not in this stack, so its routes cannot be checked"
        tables = explicit.get(subnet_id) or [
            t for t in [main.get(str(subnet.props.get("vpcId")))] if t
        ]
        if not tables:
            return f"subnet {subnet_id} has no route table association in this stack"
        for table in tables:
            for route in routes.get(table, []):
                gateway = to_internet(route)
                if gateway:
                    return f"subnet {subnet_id} routes to internet gateway {gateway} via {table}"
        return None

    return why
