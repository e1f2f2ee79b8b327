"""Times in query strings: RFC 3339 with an offset, nothing looser (no epoch numbers)."""

from __future__ import annotations

from datetime import UTC, datetime

from plantstream.errors import ErrorCode, InvalidInputError


def parse_time(value: str) -> datetime:
    """An RFC 3339 time with its offset, in UTC; ``invalid_time`` otherwise."""
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise InvalidInputError(
            ErrorCode.INVALID_TIME, f"{value[:40]!r} is not an RFC 3339 time"
        ) from None
    if parsed.tzinfo is None:
        raise InvalidInputError(ErrorCode.INVALID_TIME, "times need a UTC offset, e.g. ...Z")
    try:
        return parsed.astimezone(UTC)
    except OverflowError:  # e.g. 0001-01-01T00:30+01:00 is in year 0 in UTC
        raise InvalidInputError(ErrorCode.INVALID_TIME, f"{value[:40]!r} is out of range") from None
