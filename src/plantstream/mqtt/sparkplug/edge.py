"""Sparkplug B payloads as an edge node writes them: births with aliases, data by alias.

For plantstream's own publishers (the demo's simulated plant, the benchmark, the tests'
QoS 1 edge node); the interoperability tests use Eclipse Tahu's client instead.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from plantstream.mqtt.sparkplug.datatypes import BOOLEAN, INT64
from plantstream.mqtt.sparkplug.sparkplug_b_pb2 import Payload

DOUBLE = 10


def node_birth(*, bdseq: int, timestamp_ms: int, metrics: Mapping[str, tuple[int, float]]) -> bytes:
    """An NBIRTH (seq 0) with ``bdSeq``, ``Node Control/Rebirth`` and ``name -> (alias, value)``
    double metrics."""
    p = Payload(timestamp=timestamp_ms, seq=0)
    p.metrics.add(name="bdSeq", datatype=INT64, long_value=bdseq, timestamp=timestamp_ms)
    p.metrics.add(name="Node Control/Rebirth", datatype=BOOLEAN, boolean_value=False)
    for name, (alias, value) in metrics.items():
        p.metrics.add(name=name, alias=alias, datatype=DOUBLE, double_value=value)
    return bytes(p.SerializeToString())


def device_birth(
    *,
    seq: int,
    timestamp_ms: int,
    metrics: Mapping[str, tuple[int, float]],
    units: Mapping[str, str] | None = None,
) -> bytes:
    """A DBIRTH of ``name -> (alias, value)`` double metrics, with ``engUnit`` properties."""
    p = Payload(timestamp=timestamp_ms, seq=seq % 256)
    for name, (alias, value) in metrics.items():
        m = p.metrics.add(name=name, alias=alias, datatype=DOUBLE, double_value=value)
        if units and name in units:
            m.properties.keys.append("engUnit")
            m.properties.values.add(type=12, string_value=units[name])
    return bytes(p.SerializeToString())


def data(*, seq: int, timestamp_ms: int, values: Sequence[tuple[int, float, int]]) -> bytes:
    """An NDATA/DDATA of ``(alias, value, timestamp_ms)`` metrics."""
    p = Payload(timestamp=timestamp_ms, seq=seq % 256)
    for alias, value, ts in values:
        p.metrics.add(alias=alias, timestamp=ts, double_value=value)
    return bytes(p.SerializeToString())


def node_death(*, bdseq: int, timestamp_ms: int) -> bytes:
    p = Payload(timestamp=timestamp_ms)
    p.metrics.add(name="bdSeq", datatype=INT64, long_value=bdseq)
    return bytes(p.SerializeToString())
