"""uvicorn's httptools protocol with the connection limits of ``runtime.limits`` enforced in it:
a deadline for the request head, header size and count limits, per-address and total caps.

One class per server (``guarded_protocol(guard)``), because uvicorn builds protocols from a class.
"""

from __future__ import annotations

import asyncio
from typing import Any, ClassVar

import httptools
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from plantstream.errors import ErrorCode
from plantstream.runtime.limits import (
    CLOSED,
    HEALTH_PATHS,
    ConnectionGuard,
    Reason,
    error_response,
)


class _HeadRefusedError(Exception):
    """Raised inside a parser callback to stop parsing a head that breaks a limit."""

    def __init__(self, reason: Reason) -> None:
        super().__init__(reason.value)
        self.reason = reason


_ANSWERS = {
    Reason.PER_ADDRESS: error_response(
        ErrorCode.TOO_MANY_CONNECTIONS,
        "this client address holds as many connections as it may",
        retry_after=1,
    ),
    Reason.TOTAL: error_response(
        ErrorCode.TOO_MANY_CONNECTIONS,
        "the server holds as many connections as it will",
        retry_after=1,
    ),
    Reason.RESERVE_ONLY: error_response(
        ErrorCode.TOO_MANY_CONNECTIONS,
        "the server holds as many connections as it will; only health probes are answered",
        retry_after=1,
    ),
    Reason.HEAD_TIMEOUT: error_response(
        ErrorCode.HEAD_TIMEOUT, "the request head did not arrive in time"
    ),
    Reason.HEADERS_TOO_LARGE: error_response(
        ErrorCode.HEADERS_TOO_LARGE, "the request line and headers are larger than allowed"
    ),
    Reason.TOO_MANY_HEADERS: error_response(
        ErrorCode.HEADERS_TOO_LARGE, "the request has more header fields than allowed"
    ),
}


class GuardedHttpToolsProtocol(HttpToolsProtocol):
    """One HTTP/1.1 connection under the limits of ``guard`` (set on the subclass)."""

    guard: ClassVar[ConnectionGuard]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # uvicorn's own cap answers 503 to every request, health probes too: the guard caps
        self.limit_concurrency = None
        self._slot = ""
        self._busy = False
        self._head_pending = True
        self._head_bytes = 0  # bytes received while the head was incomplete
        self._header_bytes = 0  # bytes of the header fields parsed
        self._header_count = 0
        self._head_timer: asyncio.TimerHandle | None = None

    @property
    def busy(self) -> bool:
        return self._busy

    # connection life
    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        address = self.client[0] if self.client else ""
        admitted = self.guard.admit(self, address)
        if isinstance(admitted, Reason):
            self._close_with(admitted, count=False)
            return
        self._slot = admitted
        # a new connection has head_timeout to send its first head; between requests the
        # keep-alive timeout applies until the next head begins
        self._arm_head_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_head_timer()
        self.guard.release(self)
        super().connection_lost(exc)

    def evict(self) -> None:
        self._cancel_head_timer()
        if not self.transport.is_closing():
            self.transport.close()

    # reading
    def data_received(self, data: bytes) -> None:
        if self.transport.is_closing():
            return
        self._unset_keepalive_if_required()
        counting = self._head_pending
        try:
            self.parser.feed_data(data)
        except _HeadRefusedError as refused:
            self._close_with(refused.reason)
            return
        except httptools.HttpParserUpgrade:
            if self._should_upgrade():
                self.handle_websocket_upgrade()
            else:
                self._unsupported_upgrade_warning()
            return
        except httptools.HttpParserError as exc:
            if isinstance(exc.__context__, _HeadRefusedError):
                self._close_with(exc.__context__.reason)
                return
            msg = "Invalid HTTP request received."
            self.logger.warning(msg)
            self.send_400_response(msg)
            return
        if counting and self._head_pending:
            # the head is still incomplete: bound what the parser may be holding of it
            self._head_bytes += len(data)
            if self._head_bytes > self.guard.limits.max_header_bytes:
                self._close_with(Reason.HEADERS_TOO_LARGE)

    # parser callbacks
    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._head_pending = True
        self._head_bytes = self._header_bytes = self._header_count = 0
        if self._head_timer is None:
            self._arm_head_timer()

    def on_url(self, url: bytes) -> None:
        super().on_url(url)
        if len(self.url) > self.guard.limits.max_header_bytes:
            raise _HeadRefusedError(Reason.HEADERS_TOO_LARGE)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._header_count += 1
        if self._header_count > self.guard.limits.max_headers:
            raise _HeadRefusedError(Reason.TOO_MANY_HEADERS)
        self._header_bytes += len(name) + len(value) + 4
        if self._header_bytes + len(self.url) > self.guard.limits.max_header_bytes:
            raise _HeadRefusedError(Reason.HEADERS_TOO_LARGE)
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self._cancel_head_timer()
        self._head_pending = False
        if self._slot == "health_reserve":
            path = httptools.parse_url(self.url).path.decode("ascii", "replace")
            if path not in HEALTH_PATHS:
                raise _HeadRefusedError(Reason.RESERVE_ONLY)
        self._busy = True
        super().on_headers_complete()

    def on_response_complete(self) -> None:
        self._busy = False
        if self._slot == "health_reserve":
            # a reserve slot serves one probe, then frees itself for the next
            self.transport.close()
            return
        super().on_response_complete()

    # helpers
    def _arm_head_timer(self) -> None:
        self._head_timer = self.loop.call_later(
            self.guard.limits.head_timeout, self._head_timed_out
        )

    def _cancel_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_timed_out(self) -> None:
        self._head_timer = None
        if self._head_pending and not self.transport.is_closing():
            self._close_with(Reason.HEAD_TIMEOUT)

    def _close_with(self, reason: Reason, *, count: bool = True) -> None:
        """Answer with the limit's error and close (the guard counted refusals at admission)."""
        self._cancel_head_timer()
        if count:
            CLOSED.labels(reason.value).inc()
        self.guard.release(self)
        if not self.transport.is_closing():
            self.transport.write(_ANSWERS[reason])
            self.transport.close()


def guarded_protocol(guard: ConnectionGuard) -> type[GuardedHttpToolsProtocol]:
    """A protocol class for one server, bound to that server's ``guard``."""
    return type("GuardedHttpToolsProtocol", (GuardedHttpToolsProtocol,), {"guard": guard})
