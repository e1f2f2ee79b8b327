"""The partition-key rule: which readings share a shard, and so keep their order.

Defined here once; every ingest path keys its stream records with these functions.
"""

from __future__ import annotations

from plantstream.model import Reading
from plantstream.stream.base import PutEntry
from plantstream.stream.hashing import partition_key
from plantstream.stream.records import pack_readings

__all__ = ["gateway_partition_key", "pack", "partition_key"]


def pack(facility: str, received_us: int, readings: list[Reading]) -> list[PutEntry]:
    """Stream records for ``readings``: one or more per device, each keyed by
    ``partition_key(facility, device)`` (``"facility/device"``), in request order."""
    return pack_readings(facility, received_us, readings)


def gateway_partition_key(facility: str) -> str:
    """The key the API Gateway proxy (``infra/.../ingest_api.py``) puts a batch under, for
    ``POST /ingest/{facility}``: the facility of the path, which the body must name.

    That path writes the client's whole body as ONE record (Kinesis ``PutRecord``): one
    record has one key, and a batch may hold many devices, so the key is the facility
    alone. Each device's readings still stay in order on that path (one facility, one
    shard); a device that also sends over HTTP lands on another shard there, which the
    processor tolerates (a reading's identity is (sensor, time), first write wins, and
    Redis "latest" never moves back in time).
    """
    return facility
