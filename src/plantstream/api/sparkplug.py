"""``GET /v1/sparkplug/nodes``: a facility's Sparkplug edge nodes and devices, live or stale.

What the MQTT bridge keeps of each birth in Redis (``store/sparkplug_state.py``): a node or
device whose death certificate came (or whose edge node died) is ``stale`` until it is born
again; its signals keep their definitions (datatype, engineering units, ranges).
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query
from pydantic import BaseModel

from plantstream.api.auth import State, check_facility
from plantstream.api.quotas import QuotaReader as Reader
from plantstream.store.sparkplug_state import facility_nodes

router = APIRouter(tags=["sparkplug"])

MAX_NODES = 1000


class SparkplugNode(BaseModel):
    node: str  # "{group}/{edge_node}" or "{group}/{edge_node}/{device}"
    machine: str
    online: bool
    stale: bool
    birth_ms: int
    death_ms: int | None
    bdseq: int
    signals: dict[str, dict[str, Any]]


class SparkplugNodes(BaseModel):
    facility: str
    nodes: list[SparkplugNode]


@router.get("/v1/sparkplug/nodes", response_model=SparkplugNodes)
def nodes(
    who: Reader,
    state: State,
    facility: Annotated[str, Query(min_length=1, max_length=64, description="facility id")],
) -> SparkplugNodes:
    """The Sparkplug B edge nodes and devices of ``facility`` (at most 1000), with whether
    each is stale (dead, not born again) and its signals' definitions from its birth."""
    check_facility(who, facility)
    found = facility_nodes(client=state.redis, facility=facility, limit=MAX_NODES)
    return SparkplugNodes(facility=facility, nodes=[SparkplugNode(**n) for n in found])
