"""The plantstream edge agent: OPC UA and Modbus collectors, store-and-forward to HTTP ingest.

It runs at the plant (``plantstream edge --config edge.yaml``) and is a client of the HTTP API
only: it knows model, settings and errors, never the server's packages.
"""

from plantstream.edge.agent import Agent
from plantstream.edge.config import EdgeConfig, load_config, resolve_key, warnings_for
from plantstream.edge.forward import Forwarder
from plantstream.edge.ingress import Ingress
from plantstream.edge.queue import EdgeQueue
from plantstream.edge.records import EdgeReading
from plantstream.edge.status import EdgeStatus

__all__ = [
    "Agent",
    "EdgeConfig",
    "EdgeQueue",
    "EdgeReading",
    "EdgeStatus",
    "Forwarder",
    "Ingress",
    "load_config",
    "resolve_key",
    "warnings_for",
]
