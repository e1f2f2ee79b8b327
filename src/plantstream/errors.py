"""The one exception tree of plantstream.

PlantstreamError
├── ConfigError                 invalid settings, reported at start-up
├── ServiceError                an embedded server failed to start or stop
├── StorageError                PostgreSQL or Redis misbehaved
│   └── LeaseLostError          this process no longer owns a shard; it must not commit
├── StreamError                 the stream backend failed
│   ├── StreamUnavailableError  nothing was written (HTTP 503)
│   └── StreamThrottledError    the stream pushes back (HTTP 429)
└── InvalidInputError           bad input; has a machine-readable ``code``
    └── AuthError               missing, bad, expired or out-of-scope key
"""

from __future__ import annotations


class PlantstreamError(Exception):
    """Root of every error plantstream raises on purpose."""


class ConfigError(PlantstreamError):
    """A setting is missing or invalid."""


class ServiceError(PlantstreamError):
    """An embedded PostgreSQL or Redis server could not be managed."""


class StorageError(PlantstreamError):
    """PostgreSQL or Redis failed in a way the caller should know about."""


class LeaseLostError(StorageError):
    """The shard lease moved to another processor; the batch was not committed."""


class StreamError(PlantstreamError):
    """The stream backend failed."""


class StreamUnavailableError(StreamError):
    """The stream cannot take writes now; nothing of the batch was written."""


class StreamThrottledError(StreamError):
    """Writes are pushed back; retry after ``retry_after`` seconds.

    ``code`` says who pushed: the stream itself, a full stream, this key's rate limit, or a
    server already busy with as many requests as it will hold.
    """

    def __init__(
        self, message: str, *, retry_after: float = 1.0, code: str = "stream_throttled"
    ) -> None:
        super().__init__(message)
        self.retry_after = retry_after
        self.code = code


class InvalidInputError(PlantstreamError):
    """Bad input, with a stable machine-readable ``code`` for clients."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class AuthError(InvalidInputError):
    """The key is missing, unknown, revoked, expired or not allowed here."""

    def __init__(self, code: str, message: str, *, status: int = 401) -> None:
        super().__init__(code, message)
        self.status = status
