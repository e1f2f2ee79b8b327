"""Connection-level limits of the web server: what may be open at once, from whom, and how long
a client may take to send its request head; the bookkeeping shared by all connections.

The rules (SECURITY.md, "Connection limits"): a client address holds at most
``max_connections_per_address`` connections; the process holds at most ``max_connections``
ordinary ones, and at that cap a new connection closes the oldest one that is not working on
a request (a keep-alive idle one, or one still sending its head); when none is, it is let in on
one of ``health_reserve_connections`` further slots that serve only ``/healthz`` and
``/readyz``. Past that, a connection is refused at once.
"""

from __future__ import annotations

import ipaddress
import json
from collections import Counter
from dataclasses import dataclass
from enum import StrEnum
from http import HTTPStatus
from typing import Protocol

from prometheus_client import Counter as MetricCounter
from prometheus_client import Gauge

from plantstream.errors import ErrorCode
from plantstream.settings import Settings

HEALTH_PATHS = frozenset({"/healthz", "/readyz"})

OPEN = Gauge("plantstream_connections_open", "HTTP connections open, by slot.", ["slot"])
CLOSED = MetricCounter(
    "plantstream_connections_refused",
    "HTTP connections refused or closed by a connection limit, by reason.",
    ["reason"],
)
for _slot in ("ordinary", "health_reserve"):
    OPEN.labels(_slot)


class Reason(StrEnum):
    """Why a connection was refused or closed by a limit (the ``reason`` label)."""

    PER_ADDRESS = "per_address"  # the client address holds its cap
    TOTAL = "total"  # the process holds its cap and the health reserve is full
    EVICTED = "evicted"  # an idle or incomplete connection closed to make room
    RESERVE_ONLY = "reserve_only"  # a request other than a health probe on a reserve slot
    HEAD_TIMEOUT = "head_timeout"  # the request head did not arrive in time
    HEADERS_TOO_LARGE = "headers_too_large"  # request line + headers over the byte limit
    TOO_MANY_HEADERS = "too_many_headers"  # more header fields than allowed


for _reason in Reason:
    CLOSED.labels(_reason.value)


@dataclass(frozen=True, slots=True)
class ConnectionLimits:
    """The figures of the connection rules; ``0`` per address means no per-address cap."""

    head_timeout: float
    max_header_bytes: int
    max_headers: int
    max_connections: int
    max_per_address: int
    health_reserve: int
    exempt: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = ()

    @classmethod
    def from_settings(cls, settings: Settings) -> ConnectionLimits:
        return cls(
            head_timeout=settings.head_timeout_seconds,
            max_header_bytes=settings.max_header_bytes,
            max_headers=settings.max_headers,
            max_connections=settings.max_connections,
            max_per_address=settings.max_connections_per_address,
            health_reserve=settings.health_reserve_connections,
            exempt=parse_networks(settings.connection_cap_exempt_ips),
        )

    def is_exempt(self, address: str) -> bool:
        """True for an address the per-address cap does not apply to (a trusted proxy)."""
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return False
        return any(ip in network for network in self.exempt)


def parse_networks(spec: str) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    """``"10.0.0.0/16, 127.0.0.2"`` as networks; raises ``ValueError`` on a malformed entry."""
    return tuple(ipaddress.ip_network(part.strip()) for part in spec.split(",") if part.strip())


def error_response(code: ErrorCode, message: str, *, retry_after: int | None = None) -> bytes:
    """A complete HTTP/1.1 response with our error body that closes the connection."""
    body = json.dumps({"error": {"code": code.value, "message": message}}).encode()
    head = [
        f"HTTP/1.1 {code.status} {HTTPStatus(code.status).phrase}",
        "content-type: application/json",
        f"content-length: {len(body)}",
        "connection: close",
    ]
    if retry_after is not None:
        head.append(f"retry-after: {retry_after}")
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


class Guarded(Protocol):
    """What the guard needs of a connection."""

    @property
    def busy(self) -> bool:
        """True while a request is being worked on (its head is in, its response not out)."""

    def evict(self) -> None:
        """Close the connection because the process needs its slot."""


class ConnectionGuard:
    """The open connections of one server (one event loop): admits, evicts, counts.

    Not thread-safe; every call comes from the server's event loop.
    """

    def __init__(self, limits: ConnectionLimits) -> None:
        self.limits = limits
        self._ordinary: dict[Guarded, str] = {}  # insertion order: oldest first
        self._reserve: dict[Guarded, str] = {}
        self._per_address: Counter[str] = Counter()

    def admit(self, conn: Guarded, address: str) -> str | Reason:
        """Its slot (``"ordinary"`` or ``"health_reserve"``), or why it is refused."""
        limits = self.limits
        if (
            limits.max_per_address
            and self._per_address[address] >= limits.max_per_address
            and not limits.is_exempt(address)
        ):
            return self._refused(Reason.PER_ADDRESS)
        if len(self._ordinary) >= limits.max_connections:
            idle = next((c for c in self._ordinary if not c.busy), None)
            if idle is not None:
                self.release(idle)
                CLOSED.labels(Reason.EVICTED.value).inc()
                idle.evict()
            elif len(self._reserve) < limits.health_reserve:
                self._reserve[conn] = address
                return self._opened(address, "health_reserve")
            else:
                return self._refused(Reason.TOTAL)
        self._ordinary[conn] = address
        return self._opened(address, "ordinary")

    def release(self, conn: Guarded) -> None:
        """Forget ``conn`` (closed); idempotent."""
        for slot, table in (("ordinary", self._ordinary), ("health_reserve", self._reserve)):
            address = table.pop(conn, None)
            if address is not None:
                OPEN.labels(slot).dec()
                self._per_address[address] -= 1
                if self._per_address[address] <= 0:
                    del self._per_address[address]

    def open_counts(self) -> dict[str, int]:
        """Connections held now, by slot."""
        return {"ordinary": len(self._ordinary), "health_reserve": len(self._reserve)}

    def _opened(self, address: str, slot: str) -> str:
        self._per_address[address] += 1
        OPEN.labels(slot).inc()
        return slot

    @staticmethod
    def _refused(reason: Reason) -> Reason:
        CLOSED.labels(reason.value).inc()
        return reason
